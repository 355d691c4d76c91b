/*
 * test_log.c — the access log and the error log: printf-free appenders (numbers, times, JSON and
 * key=value strings over every byte), exact JSON and text lines, the length cap of hostile
 * records, the per-worker buffer (batches, threshold, off), reopening under writers (rotation,
 * FIFO chunks, threads), write failures, the error log's levels, target and errno.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/fmt.h"
#include "portico/log.h"
#include "portico/util.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a strict JSON validator (RFC 8259), for lines whatever bytes went into them ---- */

struct jp {
    const unsigned char *p, *end;
};

static bool j_value(struct jp *j, int depth);

static void j_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool j_lit(struct jp *j, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, s, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool j_string(struct jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return false;
            unsigned char e = *j->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++, j->p++)
                    if (j->p >= j->end || !strchr("0123456789abcdefABCDEF", *j->p) || !*j->p)
                        return false;
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                return false;
            }
            continue;
        }
        size_t k = fmt_utf8_len(j->p, (size_t)(j->end - j->p)); /* raw bytes must be UTF-8 */
        if (k == 0)
            return false;
        j->p += k;
    }
    return false;
}

static bool j_number(struct jp *j)
{
    const unsigned char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return false;
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return j->p > s;
}

static bool j_container(struct jp *j, int depth, char close, bool object)
{
    j->p++;
    j_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
    }
    for (;;) {
        j_ws(j);
        if (object) {
            if (!j_string(j))
                return false;
            j_ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return false;
        }
        if (!j_value(j, depth + 1))
            return false;
        j_ws(j);
        if (j->p >= j->end)
            return false;
        if (*j->p == close) {
            j->p++;
            return true;
        }
        if (*j->p++ != ',')
            return false;
    }
}

static bool j_value(struct jp *j, int depth)
{
    j_ws(j);
    if (depth > 8 || j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{': return j_container(j, depth, '}', true);
    case '[': return j_container(j, depth, ']', false);
    case '"': return j_string(j);
    case 't': return j_lit(j, "true");
    case 'f': return j_lit(j, "false");
    case 'n': return j_lit(j, "null");
    default: return j_number(j);
    }
}

/* True when s[n] is exactly one JSON object (and nothing else). */
static bool json_object_ok(const char *s, size_t n)
{
    struct jp j = {(const unsigned char *)s, (const unsigned char *)s + n};
    j_ws(&j);
    if (j.p >= j.end || *j.p != '{' || !j_value(&j, 0))
        return false;
    j_ws(&j);
    return j.p == j.end;
}

/* ---- fmt ---- */

static const char *json_of(const char *in, size_t n, size_t max)
{
    static char out[512];
    struct fmt_buf b;
    fmt_init(&b, out, sizeof(out) - 1);
    fmt_json_str(&b, in, n, max);
    assert_false(b.overflow);
    out[b.len] = '\0';
    return out;
}

#define S(lit) lit, sizeof(lit) - 1

static const struct {
    const char *in;
    size_t n;
    size_t max;
    const char *want;
    const char *why;
} json_rows[] = {
    {S("/index.html?a=1"), 100, "\"/index.html?a=1\"", "printable ASCII is copied"},
    {S("say \"hi\" \\o/"), 100, "\"say \\\"hi\\\" \\\\o/\"", "quote and backslash escaped"},
    {S("a\nb\rc\td"), 100, "\"a\\u000ab\\u000dc\\u0009d\"", "control bytes as \\u00XX"},
    {S("\x00\x1f\x7f"), 100, "\"\\u0000\\u001f\\u007f\"", "NUL, 0x1f and DEL"},
    {S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), 100,
     "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "valid 2, 3 and 4-byte UTF-8 copied"},
    {S("\xef\xbf\xbf\xf4\x8f\xbf\xbf"), 100, "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"",
     "U+FFFF and U+10FFFF are valid"},
    {S("\x80"), 100, "\"\\u0080\"", "a lone continuation byte"},
    /* a sequence that the end of the field cuts: its bytes past the end are not read */
    {"a\xc3\xa9", 2, 100, "\"a\\u00c3\"", "a 2-byte sequence cut by the end"},
    {"\xe2\x82\xac", 2, 100, "\"\\u00e2\\u0082\"", "a 3-byte sequence cut by the end"},
    {S("\xc0\xaf"), 100, "\"\\u00c0\\u00af\"", "overlong '/' (C0 AF)"},
    {S("\xc1\xbf"), 100, "\"\\u00c1\\u00bf\"", "C1 is always overlong"},
    {S("\xe0\x80\xaf"), 100, "\"\\u00e0\\u0080\\u00af\"", "overlong 3-byte form"},
    {S("\xf0\x80\x80\xaf"), 100, "\"\\u00f0\\u0080\\u0080\\u00af\"", "overlong 4-byte form"},
    {S("\xed\xa0\x80"), 100, "\"\\u00ed\\u00a0\\u0080\"", "UTF-16 surrogate D800"},
    {S("\xf4\x90\x80\x80"), 100, "\"\\u00f4\\u0090\\u0080\\u0080\"", "past U+10FFFF"},
    {S("\xf5\xff\xfe"), 100, "\"\\u00f5\\u00ff\\u00fe\"", "bytes never valid in UTF-8"},
    {S("a\xe2\x82"), 100, "\"a\\u00e2\\u0082\"", "a sequence cut by the end"},
    {S("\xe2\x82z"), 100, "\"\\u00e2\\u0082z\"", "a sequence cut by ASCII resumes there"},
    {S("\xc3\xa9\xa9"), 100, "\"\xc3\xa9\\u00a9\"", "a stray continuation after a valid one"},
    {S("abcdef"), 3, "\"abc\"", "cut at max"},
    {S("ab\"c"), 3, "\"ab\"", "an escape that would pass max is left out whole"},
    {S("ab\x01"), 7, "\"ab\"", "\\u0001 needs 6 bytes, 5 are left"},
    {S("a\xe2\x82\xac"), 3, "\"a\"", "a character is never cut"},
    {S(""), 100, "\"\"", "empty"},
};

static void test_json_strings(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(json_rows); i++) {
        const char *got = json_of(json_rows[i].in, json_rows[i].n, json_rows[i].max);
        if (strcmp(got, json_rows[i].want) != 0)
            fail_msg("%s: got %s, want %s", json_rows[i].why, got, json_rows[i].want);
    }
}

/* Every single byte, every pair of bytes and a few thousand random strings give a valid JSON
 * string, inside its cap. */
static void test_json_any_bytes(void **state)
{
    (void)state;
    char in[64], line[512];
    for (int a = 0; a < 256; a++) {
        for (int c = 0; c < 256; c++) {
            in[0] = (char)a;
            in[1] = (char)c;
            struct fmt_buf b;
            fmt_init(&b, line, sizeof(line));
            fmt_json_str(&b, in, 2, 100);
            struct jp j = {(unsigned char *)line, (unsigned char *)line + b.len};
            if (!j_string(&j) || j.p != j.end)
                fail_msg("bytes %02x %02x: %.*s", a, c, (int)b.len, line);
        }
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 5000; round++) {
        size_t n = (size_t)(round % (int)sizeof(in));
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[k] = (char)(x >> 24);
        }
        size_t max = (size_t)(round % 50);
        struct fmt_buf b;
        fmt_init(&b, line, sizeof(line));
        fmt_json_str(&b, in, n, max);
        struct jp j = {(unsigned char *)line, (unsigned char *)line + b.len};
        if (!j_string(&j) || j.p != j.end || b.len > max + 2)
            fail_msg("round %d: %.*s", round, (int)b.len, line);
    }
}

static const struct {
    const char *in;
    size_t n;
    size_t max;
    const char *want;
    const char *why;
} quoted_rows[] = {
    {S("/a b"), 100, "\"/a b\"", "spaces stay inside the quotes"},
    {S("x\"y\\z"), 100, "\"x\\\"y\\\\z\"", "quote and backslash escaped"},
    {S("a\r\nb=1 c=\x7f"), 100, "\"ab=1 c=\"", "no byte of a value may start a new line"},
    {S("\xff\xfe"), 100, "\"\xff\xfe\"", "other bytes are kept (today's text format)"},
    {S("abc\"d"), 4, "\"abc\"", "an escape that would pass max is left out"},
};

static void test_quoted(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(quoted_rows); i++) {
        char out[128];
        struct fmt_buf b;
        fmt_init(&b, out, sizeof(out) - 1);
        fmt_quoted(&b, quoted_rows[i].in, quoted_rows[i].n, quoted_rows[i].max);
        out[b.len] = '\0';
        if (strcmp(out, quoted_rows[i].want) != 0)
            fail_msg("%s: got %s", quoted_rows[i].why, out);
    }
}

/* Every byte value at every place of a 17-byte value (two 8-byte words and a tail): the word-
 * at-a-time scan must hand each byte that needs an escape to the byte-by-byte path, at any
 * offset, and copy every other byte as it is. */
static void test_json_escape_each_byte(void **state)
{
    (void)state;
    enum { LEN = 17 };
    for (int c = 0; c < 256; c++) {
        for (int at = 0; at < LEN; at++) {
            char in[LEN], want[LEN + 8], out[LEN + 8];
            memset(in, 'a', sizeof(in));
            in[at] = (char)c;
            size_t w = 0;
            want[w++] = '"';
            memcpy(want + w, in, (size_t)at);
            w += (size_t)at;
            if (c == '"' || c == '\\') {
                want[w++] = '\\';
                want[w++] = (char)c;
            } else if (c < 0x20 || c >= 0x7f) { /* a lone byte >= 0x80 is not UTF-8 */
                w += (size_t)snprintf(want + w, 7, "\\u%04x", c);
            } else {
                want[w++] = (char)c;
            }
            memcpy(want + w, in + at + 1, (size_t)(LEN - at - 1));
            w += (size_t)(LEN - at - 1);
            want[w++] = '"';
            struct fmt_buf b;
            fmt_init(&b, out, sizeof(out));
            fmt_json_str(&b, in, LEN, 100);
            if (b.len != w || memcmp(out, want, w) != 0)
                fail_msg("byte 0x%02x at %d: got %.*s, want %.*s", c, at, (int)b.len, out, (int)w,
                         want);
        }
    }
}

static void test_numbers_and_times(void **state)
{
    (void)state;
    static const struct {
        int kind; /* 0 u64, 1 ms3, 2 time */
        uint64_t v;
        const char *want;
    } rows[] = {
        {0, 0, "0"},                                   /* zero has one digit */
        {0, 18446744073709551615ull, "18446744073709551615"}, /* the largest value */
        {1, 0, "0.000"},                               /* no time is 0.000 ms */
        {1, 7, "0.007"},                               /* microseconds keep their zeros */
        {1, 1234567, "1234.567"},                      /* ms and µs */
        {1, 60000000, "60000.000"},                    /* a minute */
        {2, 0, "1970-01-01T00:00:00.000Z"},            /* the epoch */
        {2, 1709251199999ull, "2024-02-29T23:59:59.999Z"}, /* leap day, last ms */
        {2, 1709251200000ull, "2024-03-01T00:00:00.000Z"}, /* the next second */
        {2, 1709251199001ull, "2024-02-29T23:59:59.001Z"}, /* back: the cache follows */
        {2, 4102444800123ull, "2100-01-01T00:00:00.123Z"}, /* a century with no leap day */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char out[64];
        struct fmt_buf b;
        fmt_init(&b, out, sizeof(out) - 1);
        if (rows[i].kind == 0)
            fmt_u64(&b, rows[i].v);
        else if (rows[i].kind == 1)
            fmt_ms3(&b, rows[i].v);
        else
            fmt_time(&b, rows[i].v);
        out[b.len] = '\0';
        assert_string_equal(out, rows[i].want);
    }
    /* a piece that does not fit is left out whole */
    char small[4];
    struct fmt_buf b;
    fmt_init(&b, small, sizeof(small));
    fmt_u64(&b, 123);
    fmt_u64(&b, 45);
    assert_int_equal(b.len, 3);
    assert_true(b.overflow);
    assert_memory_equal(small, "123", 3);
    fmt_init(&b, small, 1);
    fmt_json_str(&b, "x", 1, 10);
    assert_true(b.overflow);
    assert_int_equal(b.len, 0);
}

/* fmt_hex: each byte value against snprintf, widths 1..8, and nothing written past the digits. */
static void test_hex(void **state)
{
    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        char out[3] = {'x', 'x', 'x'}, want[3];
        fmt_hex(out, v, 1);
        snprintf(want, sizeof want, "%02x", v);
        assert_memory_equal(out, want, 2);
        assert_int_equal(out[2], 'x');
    }
    static const uint64_t vals[] = {0, 1, 0x0123456789abcdefull, 0xfedcba9876543210ull,
                                    UINT64_MAX, 0x8000000000000001ull};
    for (size_t i = 0; i < ARRAY_LEN(vals); i++) {
        for (unsigned bytes = 1; bytes <= 8; bytes++) {
            char out[18], want[17];
            memset(out, 'x', sizeof out);
            fmt_hex(out, vals[i], bytes);
            uint64_t low = bytes == 8 ? vals[i] : vals[i] & ((1ull << (8 * bytes)) - 1);
            snprintf(want, sizeof want, "%0*llx", (int)(2 * bytes), (unsigned long long)low);
            assert_memory_equal(out, want, 2 * bytes);
            assert_int_equal(out[2 * bytes], 'x');
        }
    }
}

/* ---- access lines ---- */

#define T0 1764030530248ull /* 2025-11-25T00:28:50.248Z */

static const uint16_t interim_103_100[] = {103, 100};

/* A proxied success with every field set. */
static struct access_record success_record(void)
{
    struct access_record r = {
        .time_ms = T0,
        .request_id = "5bc4ab41000000002",
        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        .client = "127.0.0.1:42616",
        .method = "GETX",
        .method_len = 3,
        .host = "api.example.com",
        .host_len = 15,
        .target = "/v1/items?q=\"x\"",
        .target_len = 15,
        .proto = LOG_PROTO_HTTP11,
        .status = 200,
        .upstream_status = 200,
        .failure = FAIL_NONE,
        .phase = PHASE_DONE,
        .route = "api",
        .upstream = "app",
        .origin = "127.0.0.1:3000",
        .attempts = 1,
        .bytes_in = 0,
        .bytes_out = 1234,
        .interim_codes = interim_103_100,
        .ninterim = 2,
        .user_agent = "curl/7.88.1",
        .user_agent_len = 11,
        .forwarded_for = "127.9.9.9, \"x\"",
        .forwarded_for_len = 14,
        .client_subject = "CN=alice,O=Example",
        .reused = true,
        .body_unread = true, /* the origin answered before the request's body all came */
    };
    timings_set(&r.timings, TIMING_CONNECT, 120);
    timings_set(&r.timings, TIMING_SEND, 8);
    timings_set(&r.timings, TIMING_FIRST_BYTE, 2345);
    timings_set(&r.timings, TIMING_BODY, 10);
    timings_set(&r.timings, TIMING_TOTAL, 2600);
    return r;
}

/* A first_byte_timeout from a fault rule, and a client that left while waiting (499). */
static struct access_record failure_record(void)
{
    struct access_record r = {
        .time_ms = T0 + 1,
        .request_id = "r2",
        .client = "127.0.0.5", /* named by a trusted proxy (real_ip): its own address as peer */
        .peer = "[::1]:5000",
        .method = "POST",
        .method_len = 4,
        .target = "/silent",
        .target_len = 7,
        .proto = LOG_PROTO_HTTP10,
        .status = 524,
        .failure = FAIL_FIRST_BYTE_TIMEOUT,
        .phase = PHASE_FIRST_BYTE,
        .route = "b",
        .upstream = "silent",
        .origin = "127.0.0.1:18999",
        .attempts = 2,
        .bytes_in = 5,
        .bytes_out = 291,
        .fault = "slow-checkout",
        .limit_ms = 400,
        .detail = "no response from 127.0.0.1:18999 within 400 ms of the request",
        .retried = true,
    };
    timings_set(&r.timings, TIMING_DNS, 1);
    timings_set(&r.timings, TIMING_FIRST_BYTE, 400512);
    timings_set(&r.timings, TIMING_TOTAL, 400600);
    return r;
}

static const struct access_record empty_record = {.time_ms = T0, .phase = PHASE_CLIENT_HEADER};

static const struct access_record client_gone = {
    .time_ms = T0,
    .request_id = "r3",
    .client = "127.0.0.1:1",
    .method = "GET",
    .method_len = 3,
    .target = "/slow",
    .target_len = 5,
    .proto = LOG_PROTO_HTTP11,
    .status = 499,
    .phase = PHASE_FIRST_BYTE,
    .route = "r",
    .upstream = "u",
    .origin = "127.0.0.1:1",
    .attempts = 1,
};

static const char *line_of(const struct access_record *r, enum log_format f)
{
    static char line[LOG_LINE_MAX + 1];
    size_t n = log_format_access(r, f, line, LOG_LINE_MAX);
    assert_true(n > 0 && n <= LOG_LINE_MAX);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));
    line[n] = '\0';
    return line;
}

static void test_json_lines(void **state)
{
    (void)state;
    struct access_record ok = success_record(), failed = failure_record();
    static const struct {
        const struct access_record *r;
        const char *want;
        const char *why;
    } rows[] = {
        {NULL,
         "{\"time\":\"2025-11-25T00:28:50.248Z\",\"request_id\":\"5bc4ab41000000002\","
         "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"client\":\"127.0.0.1:42616\","
         "\"peer\":null,\"method\":\"GET\",\"host\":\"api.example.com\","
         "\"path\":\"/v1/items?q=\\\"x\\\"\","
         "\"proto\":\"HTTP/1.1\",\"status\":200,\"upstream_status\":200,\"failure\":null,"
         "\"phase\":\"done\",\"route\":\"api\",\"upstream\":\"app\",\"origin\":\"127.0.0.1:3000\","
         "\"attempts\":1,\"sticky\":null,\"bytes_in\":0,\"bytes_out\":1234,\"interim\":[103,100],\"fault\":null,"
         "\"user_agent\":\"curl/7.88.1\",\"forwarded_for\":\"127.9.9.9, \\\"x\\\"\","
         "\"client_subject\":\"CN=alice,O=Example\","
         "\"timing_ms\":{\"connect\":0.120,\"send\":0.008,"
         "\"first_byte\":2.345,\"body\":0.010,\"total\":2.600},\"limit_ms\":null,"
         "\"detail\":null,\"aborted\":false,\"reused\":true,\"retried\":false,"
         "\"body_unread\":true}\n",
         "a success: every field, spans cut to their length, absent phases left out"},
        {NULL,
         "{\"time\":\"2025-11-25T00:28:50.249Z\",\"request_id\":\"r2\",\"trace_id\":null,"
         "\"client\":\"127.0.0.5\",\"peer\":\"[::1]:5000\",\"method\":\"POST\",\"host\":null,"
         "\"path\":\"/silent\","
         "\"proto\":\"HTTP/1.0\",\"status\":524,\"upstream_status\":null,"
         "\"failure\":\"first_byte_timeout\",\"phase\":\"first_byte\",\"route\":\"b\","
         "\"upstream\":\"silent\",\"origin\":\"127.0.0.1:18999\",\"attempts\":2,\"sticky\":null,\"bytes_in\":5,"
         "\"bytes_out\":291,\"interim\":[],\"fault\":\"slow-checkout\",\"user_agent\":null,"
         "\"forwarded_for\":null,\"client_subject\":null,"
         "\"timing_ms\":{\"dns\":0.001,\"first_byte\":400.512,\"total\":400.600},"
         "\"limit_ms\":400,\"detail\":\"no response from 127.0.0.1:18999 within 400 ms of the "
         "request\",\"aborted\":false,\"reused\":false,\"retried\":true,"
         "\"body_unread\":false}\n",
         "a failure: the origin never answered (null), a fault rule, the timer"},
        {&empty_record,
         "{\"time\":\"2025-11-25T00:28:50.248Z\",\"request_id\":null,\"trace_id\":null,"
         "\"client\":null,\"peer\":null,\"method\":null,\"host\":null,\"path\":null,"
         "\"proto\":null,"
         "\"status\":null,\"upstream_status\":null,\"failure\":null,\"phase\":\"client_header\","
         "\"route\":null,\"upstream\":null,\"origin\":null,\"attempts\":0,\"sticky\":null,\"bytes_in\":0,"
         "\"bytes_out\":0,\"interim\":[],\"fault\":null,\"user_agent\":null,"
         "\"forwarded_for\":null,\"client_subject\":null,\"timing_ms\":{},"
         "\"limit_ms\":null,\"detail\":null,\"aborted\":false,\"reused\":false,"
         "\"retried\":false,\"body_unread\":false}\n",
         "nothing known: every key is still there, with null"},
        {&client_gone,
         "{\"time\":\"2025-11-25T00:28:50.248Z\",\"request_id\":\"r3\",\"trace_id\":null,"
         "\"client\":\"127.0.0.1:1\",\"peer\":null,\"method\":\"GET\",\"host\":null,"
         "\"path\":\"/slow\","
         "\"proto\":\"HTTP/1.1\",\"status\":499,\"upstream_status\":null,\"failure\":null,"
         "\"phase\":\"first_byte\",\"route\":\"r\",\"upstream\":\"u\",\"origin\":\"127.0.0.1:1\","
         "\"attempts\":1,\"sticky\":null,\"bytes_in\":0,\"bytes_out\":0,\"interim\":[],\"fault\":null,"
         "\"user_agent\":null,\"forwarded_for\":null,\"client_subject\":null,\"timing_ms\":{},"
         "\"limit_ms\":null,"
         "\"detail\":null,"
         "\"aborted\":false,\"reused\":false,\"retried\":false,\"body_unread\":false}\n",
         "the client left: 499 and the phase it was in"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        const struct access_record *r = rows[i].r ? rows[i].r : i == 0 ? &ok : &failed;
        const char *got = line_of(r, LOG_FORMAT_JSON);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("%s:\n got %s\nwant %s", rows[i].why, got, rows[i].want);
        assert_true(json_object_ok(got, strlen(got) - 1));
    }
}

static void test_text_lines(void **state)
{
    (void)state;
    struct access_record ok = success_record(), failed = failure_record();
    failed.aborted = true;
    static const struct {
        int which;
        const char *want;
        const char *why;
    } rows[] = {
        {0,
         "2025-11-25T00:28:50.248Z id=5bc4ab41000000002 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
         " client=127.0.0.1:42616 method=\"GET\" target=\"/v1/items?q=\\\"x\\\"\""
         " host=\"api.example.com\" proto=HTTP/1.1 status=200 upstream_status=200 bytes_out=1234"
         " bytes_in=0 dur_ms=2.600 route=api upstream=app origin=127.0.0.1:3000 reused=yes"
         " attempts=1 body_unread=yes interim=103,100 user_agent=\"curl/7.88.1\""
         " forwarded_for=\"127.9.9.9, \\\"x\\\"\""
         " client_subject=\"CN=alice,O=Example\""
         " timing=connect:0.120,send:0.008,first_byte:2.345,body:0.010\n",
         "a success: today's keys in today's order, the new ones beside them"},
        {1,
         "2025-11-25T00:28:50.249Z id=r2 client=127.0.0.5 peer=[::1]:5000 method=\"POST\""
         " target=\"/silent\""
         " proto=HTTP/1.0 status=524 bytes_out=291 bytes_in=5 dur_ms=400.600 route=b"
         " upstream=silent origin=127.0.0.1:18999 reused=no retried=yes attempts=2"
         " failure=first_byte_timeout phase=first_byte limit_ms=400 aborted=after_head"
         " fault=slow-checkout detail=\"no response from 127.0.0.1:18999 within 400 ms of the"
         " request\" timing=dns:0.001,first_byte:400.512\n",
         "a failure keeps \"failure=F phase=P limit_ms=N\" and \"reused=no retried=yes\" together"},
        {2, "2025-11-25T00:28:50.248Z id=- client=- method=\"\" target=\"\" proto=- status=0"
            " bytes_out=0 bytes_in=0 phase=client_header\n",
         "nothing known: the phase is not done, as the JSON line says"},
        {3,
         "2025-11-25T00:28:50.248Z id=r3 client=127.0.0.1:1 method=\"GET\" target=\"/slow\""
         " proto=HTTP/1.1 status=499 bytes_out=0 bytes_in=0 route=r upstream=u origin=127.0.0.1:1"
         " reused=no attempts=1 phase=first_byte\n",
         "a 499 names the phase the client left in"},
        {4,
         "2025-11-25T00:28:50.248Z id=- client=- method=\"\" target=\"\" proto=- status=200"
         " bytes_out=0 bytes_in=0 phase=read aborted=after_head detail=\"request body stalled\"\n",
         "a response cut short by a refusal of the client's body says so, with no failure type, "
         "and the phase it stalled in"},
        {5,
         "2025-11-25T00:28:50.248Z id=r3 client=127.0.0.1:1 method=\"GET\" target=\"/slow\""
         " proto=HTTP/1.1 status=499 bytes_out=0 bytes_in=0 route=r upstream=u origin=127.0.0.1:1"
         " reused=no attempts=1 phase=done fault=slowcheckout\n",
         "a 499 names its phase even when it is done; a raw field loses its spaces and DEL (no "
         "key=value can be forged into the line)"},
    };
    struct access_record refused = empty_record;
    refused.status = 200;
    refused.aborted = true;
    refused.detail = "request body stalled";
    refused.phase = PHASE_READ;
    struct access_record gone_done = client_gone;
    gone_done.phase = PHASE_DONE;
    gone_done.fault = "slow check\x7fout";
    const struct access_record *recs[] = {&ok,          &failed,  &empty_record,
                                          &client_gone, &refused, &gone_done};
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        const char *got = line_of(recs[rows[i].which], LOG_FORMAT_TEXT);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("%s:\n got %s\nwant %s", rows[i].why, got, rows[i].want);
    }
}

/* A switched exchange's line, written when its tunnel ended: the tunnel's life among the
 * phases, before the total (which includes it), in both formats; a text line with no other
 * phase still has it. */
static void test_tunnel_lines(void **state)
{
    (void)state;
    struct access_record r = success_record();
    r.status = r.upstream_status = 101;
    r.ninterim = 0;
    r.bytes_in = 123457;
    r.bytes_out = 1234567;
    r.tunnel = true;
    r.tunnel_us = 61000123;
    r.detail = "tunnel: client closed";
    timings_set(&r.timings, TIMING_TOTAL, 61002723);
    const char *got = line_of(&r, LOG_FORMAT_JSON);
    assert_true(json_object_ok(got, strlen(got) - 1));
    static const char json[] =
        "\"bytes_in\":123457,\"bytes_out\":1234567,\"interim\":[],\"fault\":null,"
        "\"user_agent\":\"curl/7.88.1\",\"forwarded_for\":\"127.9.9.9, \\\"x\\\"\","
        "\"client_subject\":\"CN=alice,O=Example\","
        "\"timing_ms\":{\"connect\":0.120,\"send\":0.008,"
        "\"first_byte\":2.345,\"body\":0.010,\"tunnel\":61000.123,\"total\":61002.723},"
        "\"limit_ms\":null,\"detail\":\"tunnel: client closed\",";
    if (!strstr(got, json))
        fail_msg("got %s\nwant %s in it", got, json);
    got = line_of(&r, LOG_FORMAT_TEXT);
    static const char text[] =
        " status=101 upstream_status=101 bytes_out=1234567 bytes_in=123457 dur_ms=61002.723 ";
    static const char text_end[] = " detail=\"tunnel: client closed\" user_agent=\"curl/7.88.1\""
                                   " forwarded_for=\"127.9.9.9, \\\"x\\\"\""
                                   " client_subject=\"CN=alice,O=Example\""
                                   " timing=connect:0.120,send:0.008,first_byte:2.345,body:0.010,"
                                   "tunnel:61000.123\n";
    if (!strstr(got, text) || strcmp(got + strlen(got) - strlen(text_end), text_end) != 0)
        fail_msg("got %s", got);
    r.timings.present = 1u << TIMING_TOTAL; /* no phase but the total */
    got = line_of(&r, LOG_FORMAT_TEXT);
    if (!strstr(got, " timing=tunnel:61000.123\n"))
        fail_msg("got %s", got);
    got = line_of(&r, LOG_FORMAT_JSON);
    if (!strstr(got, "\"timing_ms\":{\"tunnel\":61000.123,\"total\":61002.723}"))
        fail_msg("got %s", got);
}

/* A record kept for a tunnel's end owns copies of all it points to: its line, once the
 * originals are overwritten and freed, is the line the originals made. */
static void test_record_copy(void **state)
{
    (void)state;
    static uint16_t codes[] = {103, 100};
    char *strs[11];
    const char *const texts[] = {"rid-1", "4bf92f3577b34da6a3ce929d0e0e4736", "127.0.0.1:1",
                                 "GET",   "h.example",                        "/p?q=1",
                                 "api",   "app",                              "curl/8",
                                 "127.9.9.9", "127.0.0.2:2"};
    for (size_t i = 0; i < ARRAY_LEN(strs); i++) {
        strs[i] = strdup(texts[i]);
        assert_non_null(strs[i]);
    }
    struct access_record r = success_record();
    r.request_id = strs[0];
    r.trace_id = strs[1];
    r.client = strs[2];
    r.method = strs[3];
    r.host = strs[4];
    r.host_len = strlen(strs[4]);
    r.target = strs[5];
    r.target_len = strlen(strs[5]);
    r.route = strs[6];
    r.upstream = strs[7];
    r.user_agent = strs[8];
    r.user_agent_len = strlen(strs[8]);
    r.forwarded_for = strs[9];
    r.forwarded_for_len = strlen(strs[9]);
    r.peer = strs[10];
    r.interim_codes = codes;
    r.fault = NULL; /* NULL stays NULL */
    r.detail = NULL;
    for (int f = 0; f < LOG_FORMAT_COUNT; f++) {
        char want[LOG_LINE_MAX + 1];
        snprintf(want, sizeof(want), "%s", line_of(&r, (enum log_format)f));
        struct access_record *c = log_record_copy(&r);
        assert_non_null(c);
        codes[0] = 199;
        for (size_t i = 0; i < ARRAY_LEN(strs); i++)
            memset(strs[i], '#', strlen(strs[i]));
        const char *got = line_of(c, (enum log_format)f);
        if (strcmp(got, want) != 0)
            fail_msg("the copy's line:\n got %s\nwant %s", got, want);
        assert_null(c->fault);
        assert_null(c->detail);
        free(c);
        codes[0] = 103;
        for (size_t i = 0; i < ARRAY_LEN(strs); i++)
            memcpy(strs[i], texts[i], strlen(texts[i]));
    }
    for (size_t i = 0; i < ARRAY_LEN(strs); i++)
        free(strs[i]);
}

/* Every string field far too long and full of hostile bytes: the line is still one valid JSON
 * object (or one text line), no longer than LOG_LINE_MAX, with nothing cut in the middle. */
static void test_hostile_record(void **state)
{
    (void)state;
    static char junk[20000];
    static uint16_t many[1000];
    for (size_t i = 0; i < ARRAY_LEN(many); i++)
        many[i] = 102;
    /* pattern 0: bytes that need escaping; pattern 1: plain ones, the longest text line */
    for (int pattern = 0; pattern < 2; pattern++) {
        for (size_t i = 0; i < sizeof(junk) - 1; i++)
            junk[i] = pattern ? 'x' : "\"\\\n\r\x01\x7f\xff\xc3\xe2\x82 a"[i % 13];
        junk[sizeof(junk) - 1] = '\0';
        struct access_record r = {
            .request_id = junk, .trace_id = junk, .client = junk, .peer = junk,
            .method = junk, .method_len = sizeof(junk) - 1,
            .host = junk, .host_len = sizeof(junk) - 1,
            .target = junk, .target_len = sizeof(junk) - 1,
            .proto = LOG_PROTO_HTTP20, .status = 999, .upstream_status = 999,
            .failure = FAIL_TLS_CERTIFICATE_INVALID, .phase = PHASE_CLIENT_HEADER,
            .route = junk, .upstream = junk, .origin = junk, .attempts = UINT32_MAX,
            .bytes_in = UINT64_MAX, .bytes_out = UINT64_MAX,
            .interim_codes = many, .ninterim = ARRAY_LEN(many),
            .fault = junk, .user_agent = junk, .user_agent_len = sizeof(junk) - 1,
            .forwarded_for = junk, .forwarded_for_len = sizeof(junk) - 1,
            .client_subject = junk, .limit_ms = UINT64_MAX, .detail = junk, .aborted = true, .reused = true,
            .retried = true, .body_unread = true, .tunnel = true, .tunnel_us = UINT64_MAX,
        };
        for (int p = 0; p < TIMING_COUNT; p++)
            timings_set(&r.timings, (enum timing_phase)p, UINT64_MAX);
        char line[LOG_LINE_MAX];
        size_t n = log_format_access(&r, LOG_FORMAT_JSON, line, sizeof(line));
        if (n < 3000 || n > LOG_LINE_MAX || line[n - 1] != '\n' || !json_object_ok(line, n - 1))
            fail_msg("pattern %d, %zu bytes: %.*s", pattern, n, (int)n, line);
        assert_non_null(memmem(line, n, "\"body_unread\":true}", 19)); /* the last field is there */
        n = log_format_access(&r, LOG_FORMAT_TEXT, line, sizeof(line));
        if (n < 2000 || n > LOG_LINE_MAX || memchr(line, '\n', n - 1) || memchr(line, '\r', n))
            fail_msg("pattern %d, %zu bytes: %.*s", pattern, n, (int)n, line);
        assert_non_null(memmem(line, n, "forwarded_for=", 14)); /* a late field is there */
        assert_non_null(memmem(line, n, " peer=", 6));
        assert_int_equal(log_format_access(&r, LOG_FORMAT_JSON, line, LOG_LINE_MAX - 1), 0);
    }
}

/* forwarded_for is cut at 160 bytes in both formats (the record's room is counted on it), and
 * an empty X-Forwarded-For is said as one: "" in JSON, forwarded_for="" in text (absent:
 * null, and no key). */
static void test_forwarded_for_bounds(void **state)
{
    (void)state;
    char xff[201], want[200], line[LOG_LINE_MAX];
    memset(xff, 'f', 200);
    xff[200] = '\0';
    struct access_record r = success_record();
    r.forwarded_for = xff;
    r.forwarded_for_len = 200;
    size_t n = log_format_access(&r, LOG_FORMAT_JSON, line, sizeof(line));
    line[n] = '\0';
    snprintf(want, sizeof(want), "\"forwarded_for\":\"%.160s\",", xff);
    if (!strstr(line, want))
        fail_msg("JSON: no 160-byte forwarded_for in %s", line);
    n = log_format_access(&r, LOG_FORMAT_TEXT, line, sizeof(line));
    line[n] = '\0';
    snprintf(want, sizeof(want), " forwarded_for=\"%.160s\" ", xff);
    if (!strstr(line, want))
        fail_msg("text: no 160-byte forwarded_for in %s", line);
    r.forwarded_for_len = 0;
    n = log_format_access(&r, LOG_FORMAT_JSON, line, sizeof(line));
    line[n] = '\0';
    assert_non_null(strstr(line, "\"forwarded_for\":\"\","));
    n = log_format_access(&r, LOG_FORMAT_TEXT, line, sizeof(line));
    line[n] = '\0';
    assert_non_null(strstr(line, " forwarded_for=\"\" "));
}

/* ---- writing: buffers, reopen, error log ---- */

struct dir {
    char path[64];
};

static int dir_setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    snprintf(d->path, sizeof(d->path), "/tmp/portico-test-log-XXXXXX");
    if (!mkdtemp(d->path)) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int dir_teardown(void **state)
{
    struct dir *d = *state;
    log_close();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d->path);
    int rc = system(cmd);
    free(d);
    return rc == 0 ? 0 : -1;
}

static const char *in_dir(const struct dir *d, const char *name)
{
    static char path[4][128];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", d->path, name);
    return p;
}

/* The whole file, NUL-terminated, malloc'd ("" when absent); *len gets its length. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        n = (size_t)ftell(f);
        rewind(f);
        buf = malloc(n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, n, f), n);
        fclose(f);
    } else {
        buf = malloc(1);
        assert_non_null(buf);
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Checks that text holds only whole JSON lines; returns how many, and ORs each line's
 * request id (a number) into seen[] when given. */
static size_t check_lines(const char *text, size_t len, unsigned char *seen, size_t nseen)
{
    size_t lines = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            fail_msg("a line without its newline: %.60s", p);
        if (!json_object_ok(p, (size_t)(nl - p)))
            fail_msg("not one JSON object: %.*s", (int)(nl - p), p);
        if (seen) {
            /* within the line: a strstr over the rest of the text is quadratic (ASan's strstr
             * measures the whole haystack on every call) */
            const char *id = memmem(p, (size_t)(nl - p), "\"request_id\":\"", 14);
            assert_non_null(id);
            size_t k = strtoul(id + 14, NULL, 10);
            assert_true(k < nseen);
            if (seen[k])
                fail_msg("line %zu written twice", k);
            seen[k] = 1;
        }
        lines++;
        p = nl + 1;
    }
    return lines;
}

static void append_id(struct log_buffer *lb, unsigned long id)
{
    char rid[24];
    snprintf(rid, sizeof(rid), "%lu", id);
    struct access_record r = success_record();
    r.request_id = rid;
    log_buffer_append(lb, &r);
}

/* Lines wait in the buffer until a flush, then go out whole and in order; a full buffer
 * writes itself; "off" logs nothing; free flushes. */
static void test_buffer(void **state)
{
    struct dir *d = *state;
    const char *path = in_dir(d, "access.log");
    assert_int_equal(log_open(path), 0);
    assert_true(log_enabled());
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
    assert_non_null(lb);
    append_id(lb, 0);
    append_id(lb, 1);
    size_t len;
    char *text = slurp(path, &len);
    assert_int_equal(len, 0); /* nothing written on the request path */
    free(text);
    size_t pending = log_buffer_pending(lb);
    assert_true(pending > 0);
    log_buffer_flush(lb);
    assert_int_equal(log_buffer_pending(lb), 0);
    text = slurp(path, &len);
    assert_int_equal(len, pending);
    assert_int_equal(check_lines(text, len, NULL, 0), 2);
    assert_non_null(strstr(text, "\"request_id\":\"0\""));
    assert_true(strstr(text, "\"request_id\":\"0\"") < strstr(text, "\"request_id\":\"1\""));
    free(text);

    /* enough lines to fill the buffer: it writes by itself, whole lines only */
    unsigned long n = 0;
    for (; n < 10000; n++) {
        append_id(lb, 2 + n);
        text = slurp(path, &len);
        free(text);
        if (len > pending)
            break;
    }
    assert_true(n > 50 && n < 10000); /* batches of many lines */
    text = slurp(path, &len);
    assert_int_equal(check_lines(text, len, NULL, 0), 2 + n);
    free(text);
    log_buffer_free(lb); /* flushes the last line */
    text = slurp(path, &len);
    assert_int_equal(check_lines(text, len, NULL, 0), 3 + n);
    free(text);

    assert_int_equal(log_open("off"), 0);
    assert_false(log_enabled());
    lb = log_buffer_new(LOG_FORMAT_TEXT);
    append_id(lb, 1);
    assert_int_equal(log_buffer_pending(lb), 0);
    log_buffer_free(lb);
    log_buffer_free(NULL);
}

/* logrotate: the file is renamed, log_reopen() makes the next flushes go to a new file at the
 * path; the lines buffered before the reopen are not lost. */
static void test_reopen_after_rename(void **state)
{
    struct dir *d = *state;
    const char *path = in_dir(d, "access.log"), *rotated = in_dir(d, "access.log.1");
    mode_t mask = umask(022); /* a service's usual umask: what the file mode becomes */
    assert_int_equal(log_open(path), 0);
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
    append_id(lb, 0);
    log_buffer_flush(lb);
    append_id(lb, 1); /* buffered across the rotation */
    assert_int_equal(rename(path, rotated), 0);
    struct log_reopen_failure failed[2];
    assert_int_equal(log_reopen(failed), 0);
    append_id(lb, 2);
    log_buffer_free(lb);
    size_t len;
    char *old = slurp(rotated, &len);
    assert_int_equal(check_lines(old, len, NULL, 0), 1);
    free(old);
    char *cur = slurp(path, &len);
    assert_int_equal(check_lines(cur, len, NULL, 0), 2);
    free(cur);
    /* created as logrotate's `create 0640` makes them: not readable by every local user */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 0777) != 0640)
        fail_msg("a new log file has mode %o, want 640", (unsigned)(st.st_mode & 0777));
    /* a reload to another path; the old path is left alone from then on */
    const char *other = in_dir(d, "other.log");
    assert_int_equal(log_open(other), 0);
    lb = log_buffer_new(LOG_FORMAT_TEXT);
    append_id(lb, 3);
    log_buffer_free(lb);
    cur = slurp(path, &len);
    assert_int_equal(check_lines(cur, len, NULL, 0), 2);
    free(cur);
    cur = slurp(other, &len);
    assert_non_null(strstr(cur, " id=3 "));
    free(cur);
    /* a path that cannot be opened keeps the previous log */
    assert_int_equal(log_open("/nonexistent-dir/x.log"), -1);
    assert_int_equal(errno, ENOENT);
    assert_true(log_enabled());
    umask(mask);
}

/* The logs' directory gone (a lost mount, an rm -r): log_reopen names each log it could not
 * open again, with its path and errno, and that log goes on into its previous file; once the
 * directory is back, the next reopen moves both. */
static void test_reopen_dir_gone(void **state)
{
    struct dir *d = *state;
    char logs[128], gone[128], access[160], errors[160];
    snprintf(logs, sizeof(logs), "%s", in_dir(d, "logs"));
    snprintf(gone, sizeof(gone), "%s", in_dir(d, "logs.gone"));
    snprintf(access, sizeof(access), "%s/access.log", logs);
    snprintf(errors, sizeof(errors), "%s/error.log", logs);
    assert_int_equal(mkdir(logs, 0700), 0);
    assert_int_equal(log_open(access), 0);
    assert_int_equal(log_error_open(errors, LOG_INFO), 0);
    assert_int_equal(rename(logs, gone), 0);

    struct log_reopen_failure failed[2];
    assert_int_equal(log_reopen(failed), 2);
    assert_string_equal(failed[0].log, "access_log");
    assert_string_equal(failed[0].path, access);
    assert_int_equal(failed[0].err, ENOENT);
    assert_string_equal(failed[1].log, "error_log");
    assert_string_equal(failed[1].path, errors);
    assert_int_equal(failed[1].err, ENOENT);
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_TEXT);
    append_id(lb, 7);
    log_buffer_free(lb);
    log_info("still %s", "here");
    char path[192];
    snprintf(path, sizeof(path), "%s/access.log", gone);
    char *text = slurp(path, NULL);
    assert_non_null(strstr(text, " id=7 "));
    free(text);
    snprintf(path, sizeof(path), "%s/error.log", gone);
    text = slurp(path, NULL);
    assert_non_null(strstr(text, "still here"));
    free(text);

    assert_int_equal(mkdir(logs, 0700), 0); /* back: both move */
    assert_int_equal(log_reopen(failed), 0);
    lb = log_buffer_new(LOG_FORMAT_TEXT);
    append_id(lb, 8);
    log_buffer_free(lb);
    text = slurp(access, NULL);
    assert_non_null(strstr(text, " id=8 "));
    free(text);
}

#define WRITERS 4
#define LINES_EACH 6000

struct writer {
    int id;
    pthread_t thread;
};

static atomic_int writers_done;

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
    assert_non_null(lb);
    for (unsigned long i = 0; i < LINES_EACH; i++) {
        append_id(lb, (unsigned long)w->id * LINES_EACH + i);
        if (i % 500 == 0)
            log_buffer_flush(lb); /* the timer's flushes, between the threshold's */
    }
    log_buffer_free(lb);
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

static void run_writers(struct writer *w)
{
    atomic_store(&writers_done, 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&w[i].thread, NULL, writer_main, &w[i]), 0);
    }
}

/* Workers write while the log is rotated over and over: every line lands exactly once, whole,
 * in one of the files. */
static void test_reopen_under_writers(void **state)
{
    struct dir *d = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s", in_dir(d, "busy.log"));
    assert_int_equal(log_open(path), 0);
    struct writer w[WRITERS];
    run_writers(w);
    int rotations = 0;
    for (; rotations < 5000 && atomic_load(&writers_done) < WRITERS; rotations++) {
        char name[32];
        snprintf(name, sizeof(name), "busy.log.%d", rotations);
        assert_int_equal(rename(path, in_dir(d, name)), 0);
        struct log_reopen_failure failed[2];
        assert_int_equal(log_reopen(failed), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i].thread, NULL);
    print_message("%d rotations during the writes\n", rotations);
    static unsigned char seen[WRITERS * LINES_EACH];
    memset(seen, 0, sizeof(seen));
    size_t total = 0;
    for (int r = 0; r <= rotations; r++) {
        char name[32];
        snprintf(name, sizeof(name), r < rotations ? "busy.log.%d" : "busy.log", r);
        size_t len;
        char *text = slurp(in_dir(d, name), &len);
        total += check_lines(text, len, seen, ARRAY_LEN(seen));
        free(text);
    }
    assert_int_equal(total, WRITERS * LINES_EACH);
}

struct fifo_reader {
    const char *path;
    char *data;
    size_t len;
};

static void *fifo_main(void *arg)
{
    struct fifo_reader *fr = arg;
    int fd = open(fr->path, O_RDONLY);
    assert_true(fd >= 0);
    size_t cap = 1 << 20;
    fr->data = malloc(cap);
    for (;;) {
        if (fr->len == cap) {
            cap *= 2;
            fr->data = realloc(fr->data, cap);
        }
        ssize_t n = read(fd, fr->data + fr->len, cap - fr->len);
        if (n <= 0)
            break;
        fr->len += (size_t)n;
    }
    close(fd);
    return NULL;
}

/* On a pipe the kernel keeps only writes of up to PIPE_BUF whole: flushes are cut at line ends
 * so that the lines of concurrent workers still never mix. A reader the machine starves past
 * the writers' wait for room loses lines by design; those are counted, never cut or mixed. */
static void test_fifo_lines_whole(void **state)
{
    struct dir *d = *state;
    const char *path = in_dir(d, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    struct fifo_reader fr = {.path = path};
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, fifo_main, &fr), 0);
    assert_int_equal(log_open(path), 0); /* blocks until the reader opened its end */
    uint64_t dropped = log_dropped_lines();
    struct writer w[WRITERS];
    run_writers(w);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i].thread, NULL);
    log_close(); /* the reader sees the end */
    pthread_join(reader, NULL);
    static unsigned char seen[WRITERS * LINES_EACH];
    memset(seen, 0, sizeof(seen));
    size_t arrived = check_lines(fr.data, fr.len, seen, ARRAY_LEN(seen));
    dropped = log_dropped_lines() - dropped;
    if (dropped)
        print_message("    %zu lines arrived, %" PRIu64 " dropped for a starved reader\n", arrived,
                      dropped);
    assert_int_equal(arrived + dropped, WRITERS * LINES_EACH);
    free(fr.data);
}

/* A loopback TCP connection with small buffers: *writer and *reader. */
static void tcp_pair(int *writer, int *reader)
{
    int small = 4096;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    *reader = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(setsockopt(*reader, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(connect(*reader, (struct sockaddr *)&a, sizeof(a)), 0);
    *writer = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*writer >= 0);
    assert_int_equal(setsockopt(*writer, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    close(l);
}

/* Appends what the reader has, up to max bytes, until nothing came for wait_ms. */
static void read_some(int fd, char **data, size_t *len, size_t *cap, size_t max, int wait_ms)
{
    for (int i = 0; i < 100000 && max > 0; i++) {
        if (*cap - *len < 65536) {
            *cap = *cap * 2 + 65536;
            *data = realloc(*data, *cap);
            assert_non_null(*data);
        }
        struct pollfd in = {.fd = fd, .events = POLLIN};
        if (poll(&in, 1, wait_ms) <= 0)
            return;
        ssize_t n = recv(fd, *data + *len, MIN(max, *cap - *len), 0);
        if (n <= 0)
            return;
        *len += (size_t)n;
        max -= (size_t)n;
    }
}

/* Checks that text holds only whole lines, each a JSON object or an error line with nothing of
 * an access line in it; returns how many JSON lines, and ORs their ids into seen[] as check_lines. */
static size_t check_mixed_lines(const char *text, size_t len, unsigned char *seen, size_t nseen)
{
    size_t json = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            fail_msg("a line without its newline: %.60s", p);
        if (*p == '{') {
            json += check_lines(p, (size_t)(nl - p) + 1, seen, nseen);
        } else if (nl - p < 26 || p[4] != '-' || memcmp(p + 23, "Z [", 3) != 0 ||
                   memmem(p, (size_t)(nl - p), "{\"time\"", 8)) {
            fail_msg("not an error line: %.*s", (int)(nl - p), p);
        }
        p = nl + 1;
    }
    return json;
}

/* stdout is a socket (a log collector's): a send that never blocks may take only part of a
 * flush. The rest of the line it cut goes out first next time, never a line glued to half of
 * another, nor an error line when the error log shares the socket (stderr for both is the
 * default); access lines that could not go are counted. The reader drains a little at a time,
 * so that flushes keep meeting a buffer with some room, but not enough. */
static void test_socket_lines_whole(void **state)
{
    struct dir *d = *state;
    static const struct {
        bool errors;                   /* the error log writes a line a round to the socket too */
    } cases[] = {{false}, {true}};
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        int writer, reader;
        tcp_pair(&writer, &reader);
        int saved = dup(STDOUT_FILENO);
        assert_true(saved >= 0);
        assert_int_equal(dup2(writer, STDOUT_FILENO), STDOUT_FILENO);
        close(writer);
        int rc = log_open("stdout");
        int erc = log_error_open(cases[c].errors ? "stdout" : in_dir(d, "error.log"), LOG_INFO);
        assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO); /* the logs have their own */
        close(saved);
        assert_int_equal(rc, 0);
        assert_int_equal(erc, 0);
        uint64_t dropped = log_dropped_lines();
        enum { ROUNDS = 60, EACH = 40 };
        static unsigned char seen[ROUNDS * EACH + 1];
        memset(seen, 0, sizeof(seen));
        char *data = NULL;
        size_t len = 0, cap = 0;
        struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
        for (unsigned long r = 0; r < ROUNDS; r++) {
            for (unsigned long i = 0; i < EACH; i++)
                append_id(lb, r * EACH + i);
            log_buffer_flush(lb);
            read_some(reader, &data, &len, &cap, 1000, 0);
            if (cases[c].errors) /* into the room just made, while a cut line may wait */
                log_error("round %lu", r);
        }
        read_some(reader, &data, &len, &cap, SIZE_MAX, 200); /* room for the rest of a line */
        append_id(lb, ROUNDS * EACH);
        log_buffer_free(lb);
        log_close();
        read_some(reader, &data, &len, &cap, SIZE_MAX, 2000);
        close(reader);
        size_t arrived = check_mixed_lines(data, len, seen, ARRAY_LEN(seen));
        dropped = log_dropped_lines() - dropped;
        print_message("    %s: %zu lines arrived, %" PRIu64 " dropped\n",
                      cases[c].errors ? "with the error log" : "alone", arrived, dropped);
        assert_int_equal(arrived + dropped, ROUNDS * EACH + 1);
        free(data);
    }
}

/* A write that fails (a full disk) drops the batch, counts its lines and does not stop us.
 * The error log says so once when the losing starts, and once when writes go through again:
 * a full disk must not be a silent one, nor a flood of lines. */
static void test_write_failure(void **state)
{
    struct dir *d = *state;
    const char *errors = in_dir(d, "error.log"), *good = in_dir(d, "access.log");
    assert_int_equal(log_error_open(errors, LOG_INFO), 0);
    assert_int_equal(log_open(good), 0);
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
    append_id(lb, 0);
    log_buffer_flush(lb); /* a write that works: whatever came before is over */
    assert_int_equal(log_open("/dev/full"), 0);
    uint64_t before = log_dropped_lines();
    for (unsigned long batch = 0; batch < 3; batch++) {
        for (unsigned long i = 0; i < 3; i++)
            append_id(lb, i);
        errno = 4242;
        log_buffer_flush(lb);
        assert_int_equal(errno, 4242); /* flushes run in callbacks: errno is left alone */
    }
    assert_int_equal(log_dropped_lines() - before, 9);
    size_t len;
    char *text = slurp(errors, &len);
    const char *said = strstr(text, "[warn] access_log: a write failed (No space left on device)");
    assert_non_null(said);
    assert_null(strstr(said + 8, "access_log: a write failed")); /* once */
    assert_null(strstr(text, "written again"));
    free(text);
    assert_int_equal(log_open(good), 0);
    append_id(lb, 1);
    log_buffer_flush(lb);
    text = slurp(errors, &len);
    said = strstr(text, "access_log: a write failed");
    assert_non_null(said);
    assert_non_null(strstr(said, "[info] access_log: written again"));
    free(text);
    log_buffer_free(lb);
    log_close();
}

/* The error log: its own target, its level, errno kept, never the access log's file. */
static void test_error_log(void **state)
{
    struct dir *d = *state;
    const char *errors = in_dir(d, "error.log"), *access = in_dir(d, "access.log");
    assert_int_equal(log_open(access), 0);
    assert_int_equal(log_error_open(errors, LOG_WARN), 0);
    assert_false(log_level_enabled(LOG_INFO));
    assert_true(log_level_enabled(LOG_ERROR));
    errno = 4242;
    log_debug("debug %d", 1);
    log_info("info %d", 2);
    log_warn("warn %d", 3);
    log_error("error %s", "four");
    assert_int_equal(errno, 4242);
    size_t len;
    char *text = slurp(errors, &len);
    assert_null(strstr(text, "debug 1"));
    assert_null(strstr(text, "info 2"));
    const char *warn = strstr(text, "Z [warn] warn 3\n");
    const char *err = strstr(text, "Z [error] error four\n");
    assert_non_null(warn);
    assert_non_null(err);
    assert_true(warn < err);
    assert_int_equal(text[4], '-'); /* lines start with the time */
    free(text);
    text = slurp(access, &len);
    assert_int_equal(len, 0); /* nothing of the error log in the access log */
    free(text);

    /* the two logs may not share a file, whichever is opened second */
    assert_int_equal(log_error_open(access, LOG_INFO), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(log_open(errors), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(log_error_open("off", LOG_INFO), -1); /* errors always go somewhere */

    /* debug shows everything; rotation reopens the error log too */
    assert_int_equal(log_error_open(errors, LOG_DEBUG), 0);
    assert_int_equal(rename(errors, in_dir(d, "error.log.1")), 0);
    struct log_reopen_failure failed[2];
    assert_int_equal(log_reopen(failed), 0);
    log_debug("after %s", "rotation");
    text = slurp(errors, &len);
    assert_non_null(strstr(text, "[debug] after rotation\n"));
    free(text);

    /* a message too long for a line is cut, still one line */
    static char big[5000];
    memset(big, 'y', sizeof(big) - 1);
    log_error("%s", big);
    text = slurp(errors, &len);
    assert_int_equal(text[len - 1], '\n');
    assert_true(len < 2 * 2048);
    free(text);
    log_close();
    log_info("back on stderr"); /* after close, messages still have a place to go */
}

#define OFF_WRITERS 4
#define OFF_SWITCHES 200

static atomic_bool off_stop;

/* While set (on the main thread), each lock that thread takes is held a while before it goes on
 * (the lock a reload closes the old file under, in particular): a worker that starts a flush
 * meanwhile is there between reading the descriptor and writing to it, which no sleep could line
 * up reliably. */
static _Thread_local bool slow_locks;

int pthread_mutex_lock(pthread_mutex_t *m)
{
    typedef int (*lock_fn)(pthread_mutex_t *);
    static _Atomic(lock_fn) real;
    lock_fn lock = atomic_load_explicit(&real, memory_order_relaxed);
    if (!lock) {
        lock = (lock_fn)dlsym(RTLD_NEXT, "pthread_mutex_lock");
        atomic_store_explicit(&real, lock, memory_order_relaxed);
    }
    int rc = lock(m);
    if (rc == 0 && slow_locks) {
        struct timespec hold = {0, 300 * 1000};
        nanosleep(&hold, NULL);
    }
    return rc;
}

/* A worker of test_off_under_writers: a line, held a moment as a worker holds its lines until its
 * flush timer, then flushed: a reload often finds no sender in a write, and closes the file. */
static void *off_writer_main(void *arg)
{
    struct writer *w = arg;
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
    assert_non_null(lb);
    for (unsigned long i = 0; !atomic_load(&off_stop); i++) {
        append_id(lb, (unsigned long)w->id * 1000000 + i); /* nothing once the log is off */
        struct timespec pause = {0, 20 * 1000}; /* lines held, as a worker's until its timer */
        nanosleep(&pause, NULL);
        log_buffer_flush(lb);
    }
    log_buffer_free(lb);
    return NULL;
}

/* Workers flush while reloads turn the access log off and on again: the file `off` closes must
 * never be written after its close. A worker read the descriptor before the close and wrote to
 * its number after (a Bad file descriptor counted as a lost line, or a line in whatever file the
 * number went to next: here a file opened right after each switch, which must stay empty). */
static void test_off_under_writers(void **state)
{
    struct dir *d = *state;
    char access[256], errors[256];
    snprintf(access, sizeof(access), "%s", in_dir(d, "access.log"));
    snprintf(errors, sizeof(errors), "%s", in_dir(d, "error.log"));
    assert_int_equal(log_error_open(errors, LOG_INFO), 0);
    assert_int_equal(log_open(access), 0);
    struct writer w[OFF_WRITERS];
    atomic_store(&off_stop, false);
    for (int i = 0; i < OFF_WRITERS; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&w[i].thread, NULL, off_writer_main, &w[i]), 0);
    }
    uint64_t lost_before = log_dropped_lines();
    int victim_fds[OFF_SWITCHES];
    const char *failed = NULL;
    for (int k = 0; k < OFF_SWITCHES; k++) {
        assert_int_equal(log_switch(access, errors, LOG_INFO, &failed), 0);
        struct timespec on = {0, 200 * 1000}; /* lines are appended while it is on */
        nanosleep(&on, NULL);
        slow_locks = true;
        assert_int_equal(log_switch("off", errors, LOG_INFO, &failed), 0);
        slow_locks = false;
        char name[32];
        snprintf(name, sizeof(name), "victim.%d", k);
        /* the lowest free number: the access log's, when the switch closed it */
        victim_fds[k] = open(in_dir(d, name), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        assert_true(victim_fds[k] >= 0);
        struct timespec hold = {0, 100 * 1000};
        nanosleep(&hold, NULL);
        close(victim_fds[k]);
    }
    atomic_store(&off_stop, true);
    for (int i = 0; i < OFF_WRITERS; i++)
        pthread_join(w[i].thread, NULL);
    uint64_t lost = log_dropped_lines() - lost_before;
    size_t stray = 0, files = 0;
    for (int k = 0; k < OFF_SWITCHES; k++) {
        char name[32];
        snprintf(name, sizeof(name), "victim.%d", k);
        struct stat st;
        assert_int_equal(stat(in_dir(d, name), &st), 0);
        stray += (size_t)st.st_size;
        files += st.st_size > 0;
    }
    size_t len;
    char *text = slurp(errors, &len);
    bool ebadf = strstr(text, "Bad file descriptor") != NULL;
    free(text);
    log_close();
    print_message("%d switches to off: %zu bytes in %zu files opened after, %" PRIu64
                  " lines lost, EBADF said: %s\n",
                  OFF_SWITCHES, stray, files, lost, ebadf ? "yes" : "no");
    assert_int_equal(stray, 0);
    assert_int_equal(lost, 0);
    assert_false(ebadf);
}

/* A reload may trade the two logs' files: each is checked against the other's new file, not
 * its current one (which refused both moves, and kept both logs where they were); the two may
 * still not be one file. */
static void test_switch_trades_files(void **state)
{
    struct dir *d = *state;
    const char *one = in_dir(d, "one.log"), *two = in_dir(d, "two.log");
    assert_int_equal(log_open(one), 0);
    assert_int_equal(log_error_open(two, LOG_INFO), 0);
    const char *failed = NULL;
    assert_int_equal(log_switch(two, one, LOG_INFO, &failed), 0);
    log_error("an error %s", "line");
    struct log_buffer *lb = log_buffer_new(LOG_FORMAT_JSON);
    append_id(lb, 77);
    log_buffer_free(lb); /* flushes */
    size_t len;
    char *text = slurp(one, &len);
    assert_non_null(strstr(text, "[error] an error line"));
    assert_null(strstr(text, "\"request_id\":\"77\""));
    free(text);
    text = slurp(two, &len);
    assert_non_null(strstr(text, "\"request_id\":\"77\""));
    assert_null(strstr(text, "an error line"));
    free(text);

    assert_int_equal(log_switch(one, one, LOG_INFO, &failed), -1);
    assert_int_equal(errno, EINVAL);
    assert_string_equal(failed, "access_log");
    assert_int_equal(log_switch(one, in_dir(d, "nodir/e.log"), LOG_INFO, &failed), -1);
    assert_string_equal(failed, "error_log");
    log_error("still %s", "here"); /* both kept as they were */
    text = slurp(one, &len);
    assert_non_null(strstr(text, "[error] still here"));
    free(text);
    log_close();
}

/* Both logs on stderr (the defaults) while stderr is a regular file (`portico 2>>portico.log`, the
 * test harness): a reload takes them as they are. Both named one file, so the reload was refused
 * ("access_log stderr: Invalid argument; keeping the previous logs" at every SIGHUP) and its
 * log_level never applied; at start the same two were accepted, only paths being compared. */
static void test_switch_both_stderr_file(void **state)
{
    struct dir *d = *state;
    const char *file = in_dir(d, "stderr.log");
    int saved = dup(STDERR_FILENO);
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    assert_int_equal(log_open("stderr"), 0);
    assert_int_equal(log_error_open("stderr", LOG_INFO), 0);
    const char *failed = NULL;
    int rc = log_switch("stderr", "stderr", LOG_DEBUG, &failed);
    log_debug("a debug %s", "line");
    log_close();
    dup2(saved, STDERR_FILENO); /* cmocka's own output goes there again */
    close(saved);
    assert_int_equal(rc, 0);
    size_t len;
    char *text = slurp(file, &len);
    assert_non_null(strstr(text, "[debug] a debug line"));
    free(text);
}

/* Lines about one client's doings are rate-limited per thread: a flood of 200 bad connections
 * writes the burst (20 lines), not 200; the next line written once the bucket refills (10 a
 * second) says how many were left out. */
static void test_client_lines_limited(void **state)
{
    struct dir *d = *state;
    const char *errors = in_dir(d, "error.log");
    assert_int_equal(log_error_open(errors, LOG_INFO), 0);
    for (int i = 0; i < 200; i++)
        log_client("client 127.0.0.1:%d: TLS handshake failed", 40000 + i);
    size_t len;
    char *text = slurp(errors, &len);
    unsigned lines = 0;
    for (const char *p = text; (p = strstr(p, "TLS handshake failed")) != NULL; p++)
        lines++;
    free(text);
    print_message("200 client lines at once: %u written\n", lines);
    assert_int_equal(lines, 20);
    /* the bucket refills at 10 lines a second: within 1 s a line goes out, saying the count */
    int64_t until = (int64_t)now_us() + 1000000;
    bool said = false;
    while (!said && (int64_t)now_us() < until) {
        log_client("client 127.0.0.1:1: %s", "later");
        text = slurp(errors, &len);
        const char *line = strstr(text, "[info] client 127.0.0.1:1: later (");
        if (line) {
            assert_non_null(strstr(line, " more such lines left out before this one)\n"));
            said = true;
        }
        free(text);
    }
    assert_true(said);
    log_close();
}

static void test_names(void **state)
{
    (void)state;
    for (int f = 0; f < LOG_FORMAT_COUNT; f++) {
        enum log_format out;
        assert_int_equal(log_format_from_name(log_format_name((enum log_format)f), &out), 0);
        assert_int_equal(out, f);
    }
    for (int l = 0; l < LOG_LEVEL_COUNT; l++) {
        enum log_level out;
        assert_int_equal(log_level_from_name(log_level_name((enum log_level)l), &out), 0);
        assert_int_equal(out, l);
    }
    enum log_format f;
    enum log_level l;
    assert_int_equal(log_format_from_name("JSON", &f), -1);   /* values are lowercase */
    assert_int_equal(log_format_from_name("logfmt", &f), -1); /* unknown */
    assert_int_equal(log_level_from_name("warning", &l), -1); /* the key is "warn" */
    assert_int_equal(log_level_from_name(NULL, &l), -1);
    assert_string_equal(log_proto_name(LOG_PROTO_HTTP20), "HTTP/2.0");
    assert_string_equal(log_format_name((enum log_format)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_any_bytes),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_json_escape_each_byte),
        cmocka_unit_test(test_numbers_and_times),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_json_lines),
        cmocka_unit_test(test_text_lines),
        cmocka_unit_test(test_tunnel_lines),
        cmocka_unit_test(test_record_copy),
        cmocka_unit_test(test_hostile_record),
        cmocka_unit_test(test_forwarded_for_bounds),
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_buffer, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_dir_gone, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_under_writers, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_fifo_lines_whole, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_socket_lines_whole, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_error_log, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_client_lines_limited, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_switch_trades_files, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_off_under_writers, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_switch_both_stderr_file, dir_setup, dir_teardown),
    };
    cmocka_set_test_filter(getenv("TEST_FILTER")); /* TEST_FILTER=test_off* runs those rows */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
