/*
 * fuzz_log.c — a client's bytes in the access log: the JSON and key=value string writers
 * (fmt_json_str, fmt_quoted) against byte-at-a-time references, and whole access lines
 * (log_format_access) whose method, Host, target and User-Agent are the input.
 *
 * The first byte is a mode byte (room left in the buffer, the cap, the record's numbers); the
 * rest is split on 0xFF into method, Host, target and User-Agent, each an exact-size heap copy.
 * Checked: each writer gives exactly what its reference gives (same bytes, same length, same
 * overflow) and never writes past its room; an access line fits LOG_LINE_MAX, ends with its
 * only newline, holds no control byte, and in JSON is one well-formed object of valid UTF-8.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "portico/fmt.h"
#include "portico/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- references: one byte at a time, as fmt.h says ---- */

static void ref_json(struct fmt_buf *b, const unsigned char *s, size_t n, size_t max)
{
    if (b->cap - b->len < 2) {
        b->overflow = true;
        return;
    }
    size_t limit = b->cap - b->len - 2;
    if (max < limit)
        limit = max;
    char *o = b->p + b->len + 1;
    size_t used = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t seq = c >= 0x80 ? fmt_utf8_len(s + i, n - i) : 0;
        char esc[6];
        size_t need;
        const char *from;
        if (seq) {
            need = seq, from = (const char *)s + i;
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, need = 2, from = esc, seq = 1;
        } else if (c < 0x20 || c >= 0x7f) {
            static const char hex[] = "0123456789abcdef";
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15], need = 6, from = esc, seq = 1;
        } else {
            from = (const char *)s + i, need = 1, seq = 1;
        }
        if (need > limit - used)
            break;
        memcpy(o + used, from, need);
        used += need;
        i += seq;
    }
    b->p[b->len] = '"';
    o[used] = '"';
    b->len += used + 2;
}

static void ref_quoted(struct fmt_buf *b, const unsigned char *s, size_t n, size_t max)
{
    if (b->cap - b->len < 2) {
        b->overflow = true;
        return;
    }
    size_t limit = b->cap - b->len - 2;
    if (max < limit)
        limit = max;
    char *o = b->p + b->len + 1;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            continue;
        bool esc = s[i] == '"' || s[i] == '\\';
        if ((esc ? 2u : 1u) > limit - used)
            break;
        if (esc)
            o[used++] = '\\';
        o[used++] = (char)s[i];
    }
    b->p[b->len] = '"';
    o[used] = '"';
    b->len += used + 2;
}

/* Runs a writer and its reference into buffers of cap bytes already holding `pre` of them, each
 * buffer an exact-size heap block, and compares. */
static void compare(bool json, const char *s, size_t n, size_t cap, size_t pre, size_t max)
{
    char *a = malloc(cap ? cap : 1), *b = malloc(cap ? cap : 1);
    CHECK(a && b);
    memset(a, 'x', cap);
    memset(b, 'x', cap);
    struct fmt_buf fa, fb;
    fmt_init(&fa, a, cap);
    fmt_init(&fb, b, cap);
    fa.len = fb.len = pre;
    if (json) {
        fmt_json_str(&fa, s, n, max);
        ref_json(&fb, (const unsigned char *)s, n, max);
    } else {
        fmt_quoted(&fa, s, n, max);
        ref_quoted(&fb, (const unsigned char *)s, n, max);
    }
    CHECK(fa.len == fb.len && fa.overflow == fb.overflow);
    CHECK(fa.len <= cap && memcmp(a, b, cap) == 0);
    CHECK(fa.len == pre || fa.len - pre - 2 <= max);
    free(a);
    free(b);
}

/* ---- a minimal JSON reader, enough for one access line ---- */

static void skip_value(const char *p, size_t n, size_t *i);

static void skip_string(const char *p, size_t n, size_t *i)
{
    CHECK(*i < n && p[*i] == '"');
    for ((*i)++; *i < n && p[*i] != '"';) {
        unsigned char c = (unsigned char)p[*i];
        CHECK(c >= 0x20);
        if (c == '\\') {
            CHECK(*i + 1 < n);
            char e = p[*i + 1];
            if (e == 'u') {
                CHECK(*i + 5 < n);
                for (int k = 2; k < 6; k++)
                    CHECK(strchr("0123456789abcdefABCDEF", p[*i + k]) && p[*i + k]);
                *i += 6;
            } else {
                CHECK(strchr("\"\\/bfnrt", e) && e);
                *i += 2;
            }
        } else if (c >= 0x80) {
            size_t l = fmt_utf8_len((const unsigned char *)p + *i, n - *i);
            CHECK(l > 0);
            *i += l;
        } else {
            (*i)++;
        }
    }
    CHECK(*i < n);
    (*i)++;
}

static void skip_value(const char *p, size_t n, size_t *i)
{
    CHECK(*i < n);
    char c = p[*i];
    if (c == '"') {
        skip_string(p, n, i);
    } else if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        (*i)++;
        CHECK(*i < n);
        if (p[*i] == close) {
            (*i)++;
            return;
        }
        for (;;) {
            if (c == '{') {
                skip_string(p, n, i);
                CHECK(*i < n && p[*i] == ':');
                (*i)++;
            }
            skip_value(p, n, i);
            CHECK(*i < n);
            if (p[*i] == close) {
                (*i)++;
                return;
            }
            CHECK(p[*i] == ',');
            (*i)++;
        }
    } else if (n - *i >= 4 && (memcmp(p + *i, "true", 4) == 0 || memcmp(p + *i, "null", 4) == 0)) {
        *i += 4;
    } else if (n - *i >= 5 && memcmp(p + *i, "false", 5) == 0) {
        *i += 5;
    } else {
        size_t start = *i;
        while (*i < n && ((p[*i] >= '0' && p[*i] <= '9') || p[*i] == '.'))
            (*i)++;
        CHECK(*i > start);
    }
}

static void check_line(const char *line, size_t len, bool json)
{
    CHECK(len >= 1 && len <= LOG_LINE_MAX && line[len - 1] == '\n');
    for (size_t i = 0; i + 1 < len; i++)
        CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    if (json) {
        size_t i = 0;
        CHECK(line[0] == '{');
        skip_value(line, len - 1, &i);
        CHECK(i == len - 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    int mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;

    /* the writers, on the whole input, with little or much room and cap */
    static const size_t caps[] = {0, 1, 2, 3, 7, 40, 1024, 70000};
    size_t cap = caps[mode & 7];
    size_t pre = (mode & 8) && cap ? cap / 2 : 0;
    size_t max = (mode & 16) ? (size_t)(mode >> 5) * 3 : SIZE_MAX;
    char *whole = dup_exact(in, len);
    compare(true, whole, len, cap, pre, max);
    compare(false, whole, len, cap, pre, max);
    free(whole);

    /* an access line: method, Host, target and User-Agent from the input */
    char *part[4] = {NULL, NULL, NULL, NULL};
    size_t plen[4] = {0, 0, 0, 0};
    size_t at = 0;
    for (int k = 0; k < 4 && at <= len; k++) {
        const char *ff = memchr(in + at, 0xff, len - at);
        size_t l = ff ? (size_t)(ff - (in + at)) : len - at;
        part[k] = dup_exact(in + at, l);
        plen[k] = l;
        at += l + 1;
    }
    uint16_t codes[70];
    for (size_t k = 0; k < 70; k++)
        codes[k] = (uint16_t)(100 + k % 4);
    struct access_record r = {
        .time_ms = 1764892800000 + (uint64_t)mode,
        .request_id = "0123456789abcdef",
        .client = "127.0.0.1:50312",
        .method = part[0],
        .method_len = plen[0],
        .host = (mode & 1) ? part[1] : NULL,
        .host_len = plen[1],
        .target = part[2] ? part[2] : "",
        .target_len = plen[2],
        .proto = (enum log_proto)(mode % LOG_PROTO_COUNT),
        .status = 200 + mode,
        .route = (mode & 2) ? "r" : NULL,
        .upstream = "u",
        .origin = (mode & 4) ? "127.0.0.1:8080" : NULL,
        .interim_codes = codes,
        .ninterim = (unsigned)(mode & 8 ? 70 : mode & 3),
        .user_agent = part[3],
        .user_agent_len = plen[3],
        .forwarded_for = (mode & 2) ? part[1] : NULL,
        .forwarded_for_len = plen[1],
        .tunnel = mode & 16,
        .tunnel_us = UINT64_MAX,
        .limit_ms = (uint64_t)(mode & 32) * UINT64_C(1000000000000),
        .detail = (mode & 64) ? "detail \"quoted\" \\ \x01" : NULL,
        .aborted = mode & 128,
    };
    r.timings.present = (unsigned)mode;
    for (size_t k = 0; k < TIMING_COUNT; k++)
        r.timings.us[k] = UINT64_MAX - k;
    static char line[LOG_LINE_MAX];
    size_t n = log_format_access(&r, LOG_FORMAT_TEXT, line, sizeof(line));
    check_line(line, n, false);
    n = log_format_access(&r, LOG_FORMAT_JSON, line, sizeof(line));
    check_line(line, n, true);
    for (int k = 0; k < 4; k++)
        free(part[k]);
    return 0;
}
