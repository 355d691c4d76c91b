/*
 * test_h2_request.c — HTTP/2 request fields to an HTTP/1.1 head (h2_request.c): one row per
 * rule of RFC 9113 8.1-8.3, with the head it must build or why the request is malformed, and
 * every head built is then accepted by Portico's own HTTP/1.1 parser.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/h2_request.h"
#include "portico/http1.h"

#define MAX_FIELDS 8

struct field {
    const char *name;
    const char *value;
    size_t value_len;                  /* 0: strlen(value) (a value with a NUL sets it) */
};

struct row {
    const char *why;
    struct field fields[MAX_FIELDS];
    int rc;                            /* of finish: 0, 431, or -1 (malformed) */
    const char *head;                  /* the head built (rc 0), or the error (rc -1) */
};

#define GET_ROOT {":method", "GET", 0}, {":scheme", "https", 0}, {":path", "/", 0}
#define AUTH {":authority", "a.example", 0}

static const struct row rows[] = {
    {"the usual request: :authority becomes Host, first",
     {GET_ROOT, AUTH, {"accept", "*/*", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\naccept: */*\r\n\r\n"},
    {"pseudo-header fields in any order among themselves",
     {AUTH, {":path", "/x?y=1", 0}, {":method", "POST", 0}, {":scheme", "http", 0}},
     0, "POST /x?y=1 HTTP/1.1\r\nHost: a.example\r\n\r\n"},
    {"Host alone stands in for :authority",
     {GET_ROOT, {"host", "b.example", 0}},
     0, "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n"},
    {"Host equal to :authority (case aside) is kept once",
     {GET_ROOT, AUTH, {"host", "A.Example", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"},
    {"cookie crumbs are joined with '; ' (RFC 9113 8.2.3)",
     {GET_ROOT, AUTH, {"cookie", "a=1", 0}, {"x-b", "2", 0}, {"cookie", "c=3", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\nx-b: 2\r\ncookie: a=1; c=3\r\n\r\n"},
    {"te: trailers is the one TE allowed",
     {GET_ROOT, AUTH, {"te", "trailers", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\nte: trailers\r\n\r\n"},
    {"TE: Trailers, case aside, is still trailers", {GET_ROOT, AUTH, {"te", "Trailers", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\nte: Trailers\r\n\r\n"},
    /* Names are told apart by the HTTP/1.1 parser's look-up (length and first letter, then one
     * compare): a name in the slot of a connection-specific one, or near one, is an ordinary
     * field, and so are the fields Portico knows by id and names too long for the table. */
    {"names beside connection-specific ones are ordinary fields",
     {GET_ROOT, AUTH, {"tx", "1", 0}, {"upgradx", "2", 0}, {"connections", "3", 0},
      {"keep-alive-x", "4", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\ntx: 1\r\nupgradx: 2\r\nconnections: 3\r\n"
        "keep-alive-x: 4\r\n\r\n"},
    {"fields Portico knows by id go through as they came",
     {GET_ROOT, AUTH, {"user-agent", "t/1", 0}, {"x-request-id", "r1", 0},
      {"content-length", "0", 0}, {"x-a-name-longer-than-any-known-one", "5", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\nuser-agent: t/1\r\nx-request-id: r1\r\n"
        "content-length: 0\r\nx-a-name-longer-than-any-known-one: 5\r\n\r\n"},
    {"cookies is not cookie: not joined", {GET_ROOT, AUTH, {"cookies", "a=1", 0}},
     0, "GET / HTTP/1.1\r\nHost: a.example\r\ncookies: a=1\r\n\r\n"},
    {"OPTIONS * keeps its asterisk",
     {{":method", "OPTIONS", 0}, {":scheme", "https", 0}, {":path", "*", 0}, AUTH},
     0, "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n"},
    {"CONNECT has :authority only, as authority-form",
     {{":method", "CONNECT", 0}, {":authority", "a.example:443", 0}},
     0, "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"},
    {"no Host at all: the HTTP/1.1 rules answer that (400)",
     {GET_ROOT},
     0, "GET / HTTP/1.1\r\n\r\n"},
    {"Connection is connection-specific", {GET_ROOT, AUTH, {"connection", "close", 0}},
     -1, "connection-specific field"},
    {"Transfer-Encoding would smuggle a second framing",
     {GET_ROOT, AUTH, {"transfer-encoding", "chunked", 0}}, -1, "connection-specific field"},
    {"Keep-Alive", {GET_ROOT, AUTH, {"keep-alive", "5", 0}}, -1, "connection-specific field"},
    {"Proxy-Connection", {GET_ROOT, AUTH, {"proxy-connection", "x", 0}}, -1,
     "connection-specific field"},
    {"Upgrade", {GET_ROOT, AUTH, {"upgrade", "h2c", 0}}, -1, "connection-specific field"},
    {"TE other than trailers", {GET_ROOT, AUTH, {"te", "gzip", 0}}, -1,
     "TE other than trailers"},
    {"an uppercase name", {GET_ROOT, AUTH, {"X-Up", "1", 0}}, -1,
     "field name that is not a lowercase token"},
    {"a name whose only capital is Z", {GET_ROOT, AUTH, {"x-z-Z", "1", 0}}, -1,
     "field name that is not a lowercase token"},
    /* The look-up ignores case; HTTP/2 does not (RFC 9113 8.2.1): these are refused for their
     * case before anything looks at what they name. */
    {"Host in uppercase", {GET_ROOT, {"Host", "a.example", 0}}, -1,
     "field name that is not a lowercase token"},
    {"Connection in uppercase", {GET_ROOT, AUTH, {"Connection", "close", 0}}, -1,
     "field name that is not a lowercase token"},
    {"an empty name", {GET_ROOT, AUTH, {"", "1", 0}}, -1,
     "field name that is not a lowercase token"},
    {"a name that is not a token", {GET_ROOT, AUTH, {"a b", "1", 0}}, -1,
     "field name that is not a lowercase token"},
    {"CR in a value", {GET_ROOT, AUTH, {"x", "a\rb", 0}}, -1, "NUL, CR or LF in a field value"},
    {"LF in a value: a second request line", {GET_ROOT, AUTH, {"x", "a\nGET /evil", 0}}, -1,
     "NUL, CR or LF in a field value"},
    {"NUL in a value", {GET_ROOT, AUTH, {"x", "a\0b", 3}}, -1, "NUL, CR or LF in a field value"},
    {"CR in a pseudo-header value", {{":method", "GET", 0}, {":scheme", "https", 0},
                                     {":path", "/a\r\nX: y", 0}, AUTH},
     -1, "NUL, CR or LF in a field value"},
    {"leading whitespace", {GET_ROOT, AUTH, {"x", " a", 0}}, -1,
     "whitespace at the start or end of a field value"},
    {"trailing tab", {GET_ROOT, AUTH, {"x", "a\t", 0}}, -1,
     "whitespace at the start or end of a field value"},
    {"trailing space", {GET_ROOT, AUTH, {"x", "a ", 0}}, -1,
     "whitespace at the start or end of a field value"},
    {"a pseudo-header field after a regular one",
     {{":method", "GET", 0}, {":scheme", "https", 0}, {"x", "1", 0}, {":path", "/", 0}}, -1,
     "pseudo-header field after a regular field"},
    {"a repeated pseudo-header field", {GET_ROOT, {":path", "/b", 0}}, -1, "repeated :path"},
    {"a repeated host", {GET_ROOT, {"host", "a", 0}, {"host", "a", 0}}, -1, "repeated host"},
    {"an unknown pseudo-header field", {GET_ROOT, {":proto", "websocket", 0}}, -1,
     "unknown pseudo-header field"},
    {":protocol on a GET (RFC 8441 4: CONNECT only)",
     {GET_ROOT, AUTH, {":protocol", "websocket", 0}}, -1,
     ":protocol on a method other than CONNECT"},
    {"an extended CONNECT needs :scheme and :path",
     {{":method", "CONNECT", 0}, {":protocol", "websocket", 0}, AUTH}, -1, "no :scheme or :path"},
    {"an extended CONNECT needs :authority",
     {{":method", "CONNECT", 0}, {":protocol", "websocket", 0}, {":scheme", "https", 0},
      {":path", "/chat", 0}},
     -1, "extended CONNECT without :protocol or :authority"},
    {"an extended CONNECT with an empty :protocol",
     {{":method", "CONNECT", 0}, {":protocol", "", 0}, {":scheme", "https", 0},
      {":path", "/chat", 0}, AUTH},
     -1, "extended CONNECT without :protocol or :authority"},
    {"an extended CONNECT of another protocol is left as it is (501 is the caller's)",
     {{":method", "CONNECT", 0}, {":protocol", "bytestream", 0}, {":scheme", "https", 0},
      {":path", "/x", 0}, AUTH},
     0, "CONNECT /x HTTP/1.1\r\nHost: a.example\r\n\r\n"},
    {"a pseudo-header field name with more after it", {GET_ROOT, {":paths", "/", 0}}, -1,
     "unknown pseudo-header field"},
    {"a lone colon", {GET_ROOT, {":", "x", 0}}, -1, "unknown pseudo-header field"},
    {"a pseudo-header field in uppercase", {{":METHOD", "GET", 0}}, -1,
     "unknown pseudo-header field"},
    {"a response pseudo-header field", {GET_ROOT, {":status", "200", 0}}, -1,
     "unknown pseudo-header field"},
    {"no :method", {{":scheme", "https", 0}, {":path", "/", 0}, AUTH}, -1,
     "no :method, or one that is not a token"},
    {"a method that is not a token", {{":method", "G T", 0}, {":scheme", "https", 0},
                                      {":path", "/", 0}, AUTH},
     -1, "no :method, or one that is not a token"},
    /* Found by fuzz_h2_request (seed empty_method_only, clang UBSan): nothing kept, values.p NULL. */
    {"only an empty :method", {{":method", "", 0}}, -1, "no :method, or one that is not a token"},
    {"no :path", {{":method", "GET", 0}, {":scheme", "https", 0}, AUTH}, -1,
     "no :scheme or :path"},
    {"an empty :path", {{":method", "GET", 0}, {":scheme", "https", 0}, {":path", "", 0}, AUTH},
     -1, "no :scheme or :path"},
    {"no :scheme", {{":method", "GET", 0}, {":path", "/", 0}, AUTH}, -1, "no :scheme or :path"},
    {"a scheme Portico does not proxy", {{":method", "GET", 0}, {":scheme", "ftp", 0},
                                         {":path", "/", 0}, AUTH},
     -1, ":scheme other than http or https"},
    {"a relative :path", {{":method", "GET", 0}, {":scheme", "https", 0}, {":path", "a", 0}}, -1,
     ":path is neither absolute nor *"},
    {"a space in :path would split the request line",
     {{":method", "GET", 0}, {":scheme", "https", 0}, {":path", "/a b", 0}}, -1,
     "space, control or non-ASCII byte in :path"},
    {"CONNECT without :authority", {{":method", "CONNECT", 0}}, -1,
     "CONNECT takes :authority and neither :scheme nor :path"},
    {"CONNECT with a :path", {{":method", "CONNECT", 0}, {":path", "/", 0}, AUTH}, -1,
     "CONNECT takes :authority and neither :scheme nor :path"},
    {"an empty :authority", {GET_ROOT, {":authority", "", 0}}, -1, "empty :authority"},
    {"userinfo in :authority", {GET_ROOT, {":authority", "u:p@a.example", 0}}, -1,
     "userinfo in :authority"},
    {"an '@' ending :authority", {GET_ROOT, {":authority", "a.example@", 0}}, -1,
     "userinfo in :authority"},
    {"Host naming another site than :authority", {GET_ROOT, AUTH, {"host", "evil.example", 0}},
     -1, "host differs from :authority"},
    {"Host a prefix of :authority is another site",
     {GET_ROOT, AUTH, {"host", "a.examp", 0}}, -1, "host differs from :authority"},
    {"OPTIONS * is a request line", {{":method", "OPTIONS", 0}, {":scheme", "https", 0},
                                     {":path", "*", 0}, AUTH},
     0, "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n"},
    {"'*' is a :path only alone", {{":method", "OPTIONS", 0}, {":scheme", "https", 0},
                                   {":path", "*x", 0}, AUTH},
     -1, ":path is neither absolute nor *"},
    {"a tab before a value", {GET_ROOT, AUTH, {"x-a", "\tv", 0}}, -1,
     "whitespace at the start or end of a field value"},
    {"a tab after a value", {GET_ROOT, AUTH, {"x-a", "v\t", 0}}, -1,
     "whitespace at the start or end of a field value"},
};

static void build(const struct row *r, struct h2_request *req, size_t limit, int *field_rc)
{
    h2_request_init(req, limit);
    *field_rc = 0;
    for (size_t i = 0; i < MAX_FIELDS && r->fields[i].name && *field_rc == 0; i++) {
        const struct field *f = &r->fields[i];
        size_t vlen = f->value_len ? f->value_len : strlen(f->value);
        *field_rc = h2_request_field(req, f->name, strlen(f->name), f->value, vlen);
    }
}

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct h2_request req;
        int field_rc;
        build(r, &req, 16384, &field_rc);
        char *head = NULL;
        size_t len = 0;
        int rc = h2_request_finish(&req, NULL, &head, &len);
        if (rc != r->rc)
            fail_msg("%s: finish %d, want %d (%s)", r->why, rc, r->rc,
                     req.error ? req.error : "");
        if (rc == -1) {
            if (!req.error || strcmp(req.error, r->head) != 0)
                fail_msg("%s: error '%s', want '%s'", r->why, req.error, r->head);
        } else {
            if (len != strlen(r->head) || memcmp(head, r->head, len) != 0)
                fail_msg("%s: head\n%.*s\nwant\n%s", r->why, (int)len, head, r->head);
            /* Every head built must be one Portico's parser takes whole. */
            struct h1_limits lim = {8192, 16384};
            struct h1_request h1;
            struct h1_error err;
            if (h1_parse_request(head, len, &lim, &h1, &err) != (int)len)
                fail_msg("%s: the HTTP/1.1 parser refuses the head", r->why);
        }
        free(head);
        h2_request_free(&req);
    }
}

/* An extended CONNECT for a WebSocket (RFC 8441 5) becomes the HTTP/1.1 upgrade with the key
 * given; the client's own key and version fields are dropped (the key is Portico's), its
 * subprotocols and extensions pass. */
static void test_extended_connect(void **state)
{
    (void)state;
    static const struct row r = {
        "websocket",
        {{":method", "CONNECT", 0}, {":protocol", "websocket", 0}, {":scheme", "https", 0},
         {":path", "/chat?room=1", 0}, AUTH, {"sec-websocket-version", "13", 0},
         {"sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==", 0},
         {"sec-websocket-protocol", "chat, superchat", 0}},
        0, NULL};
    struct h2_request req;
    int field_rc;
    build(&r, &req, 16384, &field_rc);
    assert_int_equal(h2_request_protocol(&req), H2_PROTOCOL_WEBSOCKET);
    char *head = NULL;
    size_t len = 0;
    assert_int_equal(h2_request_finish(&req, "dGhlIHNhbXBsZSBub25jZQ==", &head, &len), 0);
    const char *want = "GET /chat?room=1 HTTP/1.1\r\nHost: a.example\r\n"
                       "sec-websocket-protocol: chat, superchat\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    if (len != strlen(want) || memcmp(head, want, len) != 0)
        fail_msg("head\n%.*s\nwant\n%s", (int)len, head, want);
    free(head);
    h2_request_free(&req);
    /* RFC 6455 1.3's example, and what is not it */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_true(ws_accept_matches(key, 24, " s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ", 30));
    assert_false(ws_accept_matches(key, 24, "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=", 28));
    assert_false(ws_accept_matches(key, 24, "s3pPLMBiTxaQ9kYGzzhZRbK+xOoA", 28)); /* its last */
    assert_false(ws_accept_matches(key, 24, "", 0));
    char fresh[WS_KEY_LEN + 1], other[WS_KEY_LEN + 1];
    assert_true(ws_key_new(fresh) && ws_key_new(other));
    assert_int_equal(strlen(fresh), WS_KEY_LEN);
    assert_string_not_equal(fresh, other);
}

/* Past the limit nothing more is kept (an HPACK bomb cannot grow it) and finish says 431; past
 * H2_REQUEST_ABANDON_FACTOR times the limit, the caller is told to stop reading the block. */
static void test_too_large(void **state)
{
    (void)state;
    struct h2_request req;
    h2_request_init(&req, 1024);
    char big[600];
    memset(big, 'v', sizeof(big));
    assert_int_equal(h2_request_field(&req, ":method", 7, "GET", 3), 0);
    assert_int_equal(h2_request_field(&req, ":scheme", 7, "https", 5), 0);
    assert_int_equal(h2_request_field(&req, ":path", 5, "/", 1), 0);
    int i = 0, rc = 0;
    while (i < 1000 && (rc = h2_request_field(&req, "x-big", 5, big, sizeof(big))) == 0)
        i++;
    assert_int_equal(rc, 1);
    /* the fields decoded before: 12 bytes of pseudo-headers and i + 1 of 605 */
    assert_int_equal(i, (H2_REQUEST_ABANDON_FACTOR * 1024 - 12) / 605);
    assert_true(req.lines.cap <= 2048);
    char *head = NULL;
    size_t len = 0;
    assert_int_equal(h2_request_finish(&req, NULL, &head, &len), 431);
    assert_null(head);
    const char *m, *p;
    size_t ml, pl;
    h2_request_line(&req, &m, &ml, &p, &pl);
    assert_int_equal(ml, 3);
    assert_memory_equal(m, "GET", 3);
    h2_request_free(&req);
    h2_request_free(&req); /* twice is fine */
}

/* The block is read to its end while what was decoded is at most H2_REQUEST_ABANDON_FACTOR
 * times the limit: at exactly that it is still read, one byte past it abandoned. */
static void test_abandon_boundary(void **state)
{
    (void)state;
    struct h2_request req;
    h2_request_init(&req, 1024);
    char v[2048];
    memset(v, 'v', sizeof(v));
    /* 1024 decoded, 1028 to keep: past the limit, nothing more kept */
    assert_int_equal(h2_request_field(&req, "x-big", 5, v, 1019), 0);
    assert_true(req.too_large);
    assert_int_equal(h2_request_field(&req, "x", 1, v, 2047), 0);             /* 3072 */
    assert_int_equal(h2_request_field(&req, "x", 1, v, 1023), 0);             /* 4096 */
    assert_int_equal(req.decoded, H2_REQUEST_ABANDON_FACTOR * 1024);
    assert_int_equal(h2_request_field(&req, "x", 1, "", 0), 1);               /* 4097 */
    h2_request_free(&req);
}

/* The limit is on what the head keeps: a head of exactly the limit is whole, one byte more 431. */
static void test_limit_boundary(void **state)
{
    (void)state;
    /* values: GET https / a.example (18 bytes); the line "x-big: V\r\n" 9 more than V */
    static char big[1024];
    for (size_t extra = 0; extra < 2; extra++) {
        struct h2_request req;
        h2_request_init(&req, 1024);
        size_t vlen = 1024 - 18 - 9 + extra;
        memset(big, 'v', vlen);
        assert_int_equal(h2_request_field(&req, ":method", 7, "GET", 3), 0);
        assert_int_equal(h2_request_field(&req, ":scheme", 7, "https", 5), 0);
        assert_int_equal(h2_request_field(&req, ":path", 5, "/", 1), 0);
        assert_int_equal(h2_request_field(&req, ":authority", 10, "a.example", 9), 0);
        assert_int_equal(h2_request_field(&req, "x-big", 5, big, vlen), 0);
        char *head = NULL;
        size_t len = 0;
        assert_int_equal(h2_request_finish(&req, NULL, &head, &len), extra ? 431 : 0);
        free(head);
        h2_request_free(&req);
    }
}

/* Why nghttp2 refused a head: a content-length that announces a body on a stream ended with its
 * head says so; "0" announces none. */
static void test_messaging_error(void **state)
{
    (void)state;
    static const struct {
        const char *length;
        bool announces;
    } lengths[] = {{"0", false}, {"00", false}, {"10", true}, {"01", true}};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        struct h2_request req;
        h2_request_init(&req, 16384);
        assert_int_equal(h2_request_field(&req, ":method", 7, "POST", 4), 0);
        assert_int_equal(h2_request_field(&req, ":scheme", 7, "https", 5), 0);
        assert_int_equal(h2_request_field(&req, ":path", 5, "/", 1), 0);
        assert_int_equal(h2_request_field(&req, ":authority", 10, "a.example", 9), 0);
        assert_int_equal(h2_request_field(&req, "content-length", 14, lengths[i].length,
                                          strlen(lengths[i].length)),
                         0);
        const char *why = h2_request_messaging_error(&req, true);
        if ((strstr(why, "content-length announces a body") != NULL) != lengths[i].announces)
            fail_msg("content-length: %s: %s", lengths[i].length, why);
        h2_request_free(&req);
    }
}

/* The content-length's value, which h2_stream holds the body's last byte by: as written, and
 * saturated at UINT64_MAX past what any valid one is (nghttp2 refuses those, and non-digits). */
static void test_content_length_value(void **state)
{
    (void)state;
    static const struct {
        const char *length;
        uint64_t value;
        bool announces;
    } lengths[] = {{"0", 0, false},
                   {"007", 7, true},
                   {"1024", 1024, true},
                   {"9223372036854775807", 9223372036854775807u, true},
                   {"18446744073709551615", UINT64_MAX, true},
                   {"99999999999999999999999", UINT64_MAX, true},
                   {"1x", UINT64_MAX, true}};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        struct h2_request req;
        h2_request_init(&req, 16384);
        assert_int_equal(h2_request_field(&req, "content-length", 14, lengths[i].length,
                                          strlen(lengths[i].length)),
                         0);
        assert_true(req.declares_length);
        if (req.content_length != lengths[i].value || req.announces_body != lengths[i].announces)
            fail_msg("content-length: %s: %" PRIu64 " (announces %d)", lengths[i].length,
                     req.content_length, req.announces_body);
        h2_request_free(&req);
    }
}

static bool span_eq_lit(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* The regular fields, for real_ip's reading of a refused stream: in order, ids set, the same
 * spans the HTTP/1.1 parse of the head built gives; pseudo-header fields, host and cookie are
 * not among them; with less room, the count is still all of them. */
static void test_fields(void **state)
{
    (void)state;
    static const char *const in[][2] = {
        {":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"},
        {"x-forwarded-for", "127.9.9.9, 127.0.0.2"}, {"cookie", "a=1"}, {"host", "a.test"},
        {"x-empty", ""}, {"cf-connecting-ip", "::1"}, {"x-forwarded-for", "127.0.0.3"}};
    struct h2_request req;
    h2_request_init(&req, 16384);
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        assert_int_equal(h2_request_field(&req, in[i][0], strlen(in[i][0]), in[i][1],
                                          strlen(in[i][1])), 0);
    struct h1_field got[8];
    assert_int_equal(h2_request_fields(&req, got, 8), 4);
    static const struct {
        const char *name, *value;
        enum h1_field_id id;
    } want[] = {{"x-forwarded-for", "127.9.9.9, 127.0.0.2", H1_F_X_FORWARDED_FOR},
                {"x-empty", "", H1_F_OTHER},
                {"cf-connecting-ip", "::1", H1_F_PROXY_CLAIM},
                {"x-forwarded-for", "127.0.0.3", H1_F_X_FORWARDED_FOR}};
    char *head;
    size_t len;
    assert_int_equal(h2_request_finish(&req, NULL, &head, &len), 0);
    struct h1_limits lim = {.max_request_line = 8192, .max_head = 16384};
    static struct h1_request parsed;
    struct h1_error err;
    assert_int_equal(h1_parse_request(head, len, &lim, &parsed, &err), (int)len);
    size_t k = 0;
    for (size_t i = 0; i < parsed.nfields; i++) {
        const struct h1_field *f = &parsed.fields[i];
        if (f->id == H1_F_HOST || span_eq_lit(f->name, f->name_len, "cookie"))
            continue;
        assert_true(k < 4);
        assert_int_equal(got[k].id, f->id);
        assert_int_equal(got[k].id, want[k].id);
        assert_true(got[k].name_len == strlen(want[k].name) &&
                    memcmp(got[k].name, want[k].name, got[k].name_len) == 0);
        assert_true(got[k].value_len == f->value_len &&
                    memcmp(got[k].value, f->value, f->value_len) == 0);
        assert_true(got[k].value_len == strlen(want[k].value) &&
                    memcmp(got[k].value, want[k].value, got[k].value_len) == 0);
        k++;
    }
    assert_int_equal(k, 4);
    free(head);
    /* max 1: the count of all, one written, nothing past it (the caller's array ends there) */
    got[1] = (struct h1_field){0};
    assert_int_equal(h2_request_fields(&req, got, 1), 4);
    assert_true(got[0].value_len == strlen(want[0].value));
    assert_null(got[1].name);
    h2_request_free(&req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_extended_connect),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_abandon_boundary),
        cmocka_unit_test(test_limit_boundary),
        cmocka_unit_test(test_messaging_error),
        cmocka_unit_test(test_content_length_value),
        cmocka_unit_test(test_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
