/*
 * test_http1.c — table-driven tests of the HTTP/1.1 parser (proxy/http1.c).
 *
 * Every input is copied into a malloc'd buffer of exactly its length so that ASan reports any
 * read past the bytes the parser was given. Every row is also parsed at every split point:
 * a strict prefix of a valid head must say "again" (-2), a prefix of an invalid one either
 * "again" or the very same error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/http1.h"

#define AGAIN (-2)
#define DEF_LINE 8192
#define DEF_HEAD 16384

/* Flags of the expected h1_info. */
#define KA 1u     /* keep_alive */
#define CONT 2u   /* expect_continue */
#define OTHER 4u  /* expect_other */
#define NOHOST 8u /* host == NULL */

static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n);
    assert_true(p != NULL || n == 0);
    if (n > 0)
        memcpy(p, s, n);
    return p;
}

static size_t in_len(const char *in, size_t len)
{
    return len != 0 ? len : strlen(in);
}

/* ---- requests ---- */

struct req_case {
    const char *why;
    const char *in;
    size_t len;               /* 0: strlen(in); set when the input holds a NUL */
    int parse;                /* 0: the whole input is one head, AGAIN, or the error status */
    int info;                 /* 0 or the status h1_request_info must refuse with */
    enum h1_framing framing;  /* when info == 0 */
    uint64_t cl;              /* when framing is H1_BODY_LENGTH */
    unsigned flags;           /* KA, CONT, OTHER, NOHOST */
    size_t max_line;          /* 0: DEF_LINE */
    size_t max_head;          /* 0: DEF_HEAD */
};

#define OK(w, i, f, c, fl) {.why = w, .in = i, .framing = f, .cl = c, .flags = fl}
#define BAD(w, i, st) {.why = w, .in = i, .parse = st}
#define BADN(w, i, n, st) {.why = w, .in = i, .len = n, .parse = st}
#define SEM(w, i, st) {.why = w, .in = i, .info = st}
#define LIM(w, i, st, ml, mh, fl)                                                              \
    {.why = w, .in = i, .parse = st, .max_line = ml, .max_head = mh, .flags = fl}

#define H11 "Host: example.com\r\n"
#define GET11 "GET / HTTP/1.1\r\n" H11
#define POST11 "POST /up HTTP/1.1\r\n" H11
#define TE_ "Transfer-Encoding: "
#define CL_ "Content-Length: "

static const struct req_case req_cases[] = {
    /* -- valid heads and what the semantic pass learns from them -- */
    OK("minimal HTTP/1.1 request", GET11 "\r\n", H1_BODY_NONE, 0, KA),
    OK("HTTP/1.0 may omit Host and defaults to close", "GET / HTTP/1.0\r\n\r\n", H1_BODY_NONE, 0,
       NOHOST),
    OK("HTTP/1.0 keep-alive on request", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
       H1_BODY_NONE, 0, KA | NOHOST),
    OK("HTTP/1.0 Connection tokens are case-insensitive",
       "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", H1_BODY_NONE, 0, KA | NOHOST),
    OK("Connection: close ends HTTP/1.1 keep-alive", GET11 "Connection: close\r\n\r\n",
       H1_BODY_NONE, 0, 0),
    OK("close found inside a Connection list", GET11 "Connection: upgrade, CLOSE\r\n\r\n",
       H1_BODY_NONE, 0, 0),
    OK("close wins over keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
       H1_BODY_NONE, 0, NOHOST),
    OK("close in a second Connection field", GET11 "Connection: te\r\nConnection: close\r\n\r\n",
       H1_BODY_NONE, 0, 0),
    OK("Content-Length frames the body", POST11 CL_ "5\r\n\r\n", H1_BODY_LENGTH, 5, KA),
    OK("Content-Length zero is a length", POST11 CL_ "0\r\n\r\n", H1_BODY_LENGTH, 0, KA),
    OK("leading zeros are still 1*DIGIT", POST11 CL_ "007\r\n\r\n", H1_BODY_LENGTH, 7, KA),
    OK("Content-Length of exactly 2^62 is the limit",
       POST11 CL_ "4611686018427387904\r\n\r\n", H1_BODY_LENGTH, UINT64_C(1) << 62, KA),
    OK("duplicate identical Content-Length fields are one length",
       POST11 CL_ "5\r\n" CL_ "5\r\n\r\n", H1_BODY_LENGTH, 5, KA),
    OK("identical Content-Length list (RFC 9110 8.6)", POST11 CL_ "5, 5,5\r\n\r\n",
       H1_BODY_LENGTH, 5, KA),
    OK("Content-Length trailing OWS is not part of the value", POST11 CL_ "5 \t\r\n\r\n",
       H1_BODY_LENGTH, 5, KA),
    OK("field names are case-insensitive", POST11 "content-LENGTH: 3\r\n\r\n", H1_BODY_LENGTH,
       3, KA),
    OK("chunked request", POST11 TE_ "chunked\r\n\r\n", H1_BODY_CHUNKED, 0, KA),
    OK("chunked is case-insensitive", POST11 TE_ "ChUnKeD\r\n\r\n", H1_BODY_CHUNKED, 0, KA),
    OK("HTAB as OWS before the TE value is fine", POST11 "Transfer-Encoding:\tchunked\r\n\r\n",
       H1_BODY_CHUNKED, 0, KA),
    OK("empty list elements around chunked are skipped", POST11 TE_ ", chunked ,\r\n\r\n",
       H1_BODY_CHUNKED, 0, KA),
    OK("Expect: 100-continue", POST11 CL_ "1\r\nExpect: 100-continue\r\n\r\n", H1_BODY_LENGTH, 1,
       KA | CONT),
    OK("100-continue is case-insensitive", POST11 CL_ "1\r\nExpect: 100-Continue\r\n\r\n",
       H1_BODY_LENGTH, 1, KA | CONT),
    OK("any other expectation is 417 material", GET11 "Expect: fancy\r\n\r\n", H1_BODY_NONE, 0,
       KA | OTHER),
    OK("an empty Expect expects nothing", GET11 "Expect:\r\n\r\n", H1_BODY_NONE, 0, KA),
    OK("leading empty lines are skipped (RFC 9112 2.2)", "\r\n\r\n" GET11 "\r\n", H1_BODY_NONE,
       0, KA),
    OK("absolute-form target", "GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n",
       H1_BODY_NONE, 0, KA),
    OK("asterisk-form target", "OPTIONS * HTTP/1.1\r\n" H11 "\r\n", H1_BODY_NONE, 0, KA),
    OK("authority-form target", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
       H1_BODY_NONE, 0, KA),
    OK("methods are any token, case kept", "get / HTTP/1.1\r\n" H11 "\r\n", H1_BODY_NONE, 0,
       KA),
    OK("extension method with tchar punctuation", "M-S_E.A!RCH~ / HTTP/1.1\r\n" H11 "\r\n",
       H1_BODY_NONE, 0, KA),
    OK("obs-text and HTAB are allowed in values",
       GET11 "X-A: caf\xc3\xa9\tnoir\r\nX-B: \xff\r\n\r\n", H1_BODY_NONE, 0, KA),
    OK("empty field value", GET11 "X-Empty:\r\nX-Ows: \t \r\n\r\n", H1_BODY_NONE, 0, KA),
    OK("value of exactly eight bytes ends on a word boundary", GET11 "X: 12345678\r\n\r\n",
       H1_BODY_NONE, 0, KA),
    OK("long value crosses many eight-byte words",
       GET11 "Cookie: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=bbbbbbbbbbbbbbbbb\r\n\r\n",
       H1_BODY_NONE, 0, KA),
    OK("Host with port", "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", H1_BODY_NONE, 0, KA),
    OK("Host IPv6 literal with port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", H1_BODY_NONE,
       0, KA),
    OK("Host IPv4", "GET / HTTP/1.1\r\nHost: 127.0.0.22\r\n\r\n", H1_BODY_NONE, 0, KA),
    OK("Host pct-encoded reg-name", "GET / HTTP/1.1\r\nHost: ex%41mple\r\n\r\n", H1_BODY_NONE, 0,
       KA),
    OK("empty Host is what a client sends without authority (RFC 9112 3.2)",
       "GET / HTTP/1.1\r\nHost:\r\n\r\n", H1_BODY_NONE, 0, KA),
    OK("empty port is allowed by RFC 3986", "GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n",
       H1_BODY_NONE, 0, KA),
    OK("HTTP/1.0 with one Host", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", H1_BODY_NONE, 0, 0),

    /* -- request line -- */
    BAD("empty method", " / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("method with a non-token byte", "G(T / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("method followed by HTAB", "GET\t/ HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("two spaces after the method", "GET  / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("two spaces after the target", "GET /  HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("space after the version", "GET / HTTP/1.1 \r\n" H11 "\r\n", 400),
    BAD("HTTP/0.9 request line without version", "GET /\r\n\r\n", 400),
    BAD("CTL in the target", "GET /a\x01 HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("DEL in the target", "GET /a\x7f HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("byte >= 0x80 in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("HTAB in the target", "GET /a\tb HTTP/1.1\r\n" H11 "\r\n", 400),
    BADN("NUL in the target, seen before the head is complete", "GET /\0", 6, 400),
    BAD("lowercase protocol name", "GET / http/1.1\r\n" H11 "\r\n", 400),
    BAD("version with two minor digits", "GET / HTTP/1.10\r\n" H11 "\r\n", 400),
    BAD("version without minor", "GET / HTTP/1\r\n" H11 "\r\n", 400),
    BAD("version with a letter", "GET / HTTP/1.x\r\n" H11 "\r\n", 400),
    BAD("HTTP/1.2 is valid syntax but not supported", "GET / HTTP/1.2\r\n" H11 "\r\n", 505),
    BAD("HTTP/2.0 on an HTTP/1 connection", "GET / HTTP/2.0\r\n" H11 "\r\n", 505),
    BAD("HTTP/0.9 spelled as a version", "GET / HTTP/0.9\r\n\r\n", 505),
    BAD("bare LF ends the request line", "GET / HTTP/1.1\n" H11 "\r\n", 400),
    BAD("bare CR ends the request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
    BAD("bare LF before the request line", "\nGET / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("bare CR before the request line", "\rGET / HTTP/1.1\r\n" H11 "\r\n", 400),
    BAD("invalid byte reported early, head incomplete", "GE\x01", 400),
    BAD("invalid version reported before the CRLF", "GET / HTTX", 400),

    /* -- field lines -- */
    BAD("whitespace before colon (RFC 9112 5.1)", GET11 "Foo : bar\r\n\r\n", 400),
    BAD("HTAB before colon", GET11 "Foo\t: bar\r\n\r\n", 400),
    BAD("space inside a field name", GET11 "Foo Bar: x\r\n\r\n", 400),
    BAD("empty field name", GET11 ": x\r\n\r\n", 400),
    BAD("non-token byte in a field name", GET11 "Fo\"o: x\r\n\r\n", 400),
    BAD("field line without colon", GET11 "Foo\r\n\r\n", 400),
    BAD("obs-fold (RFC 9112 5.2)", GET11 "X: a\r\n b\r\n\r\n", 400),
    BAD("obs-fold with HTAB", GET11 "X: a\r\n\tb\r\n\r\n", 400),
    BAD("whitespace before the first field line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    BADN("NUL in a value", GET11 "X: a\0b\r\n\r\n", sizeof(GET11 "X: a\0b\r\n\r\n") - 1, 400),
    BAD("other CTL in a value", GET11 "X: a\x1f" "b\r\n\r\n", 400),
    BAD("DEL in a value", GET11 "X: a\x7f\r\n\r\n", 400),
    BAD("bare CR inside a value", GET11 "X: a\rb\r\n\r\n", 400),
    BAD("bare LF ends a field line", GET11 "X: a\n\r\n", 400),
    BAD("bare LF as the final empty line", GET11 "\n", 400),
    BAD("bare CR as the final empty line", GET11 "\rX", 400),
    BAD("NUL in a value of an incomplete head is reported at once", GET11 "X: a\x01", 400),

    /* -- limits -- */
    LIM("request line over the limit, even incomplete", "GET /abcdefghijklmnop", 414, 17, 0, 0),
    LIM("request line one over the limit", "GET /abcd HTTP/1.1\r\n\r\n", 414, 17, 0, 0),
    LIM("request line exactly at the limit (17)", "GET /abc HTTP/1.1\r\n" H11 "\r\n", 0, 17, 0,
        KA),
    LIM("limit hit inside the version", "GET /abcdefgh HTTP/1.1\r\n\r\n", 414, 17, 0, 0),
    LIM("leading empty lines do not count in the request line", "\r\n\r\nGET /abc HTTP/1.1\r\n"
        H11 "\r\n", 0, 17, 0, KA),
    LIM("incomplete head at max_head", "GET / HTTP/1.1\r\nHost: aaaaaaaa", 431, 0, 30, 0),
    LIM("head exactly max_head bytes", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 0, 27, KA),
    LIM("head one byte over max_head", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 431, 0, 26, 0),
    LIM("leading empty lines count in max_head", "\r\n\r\n\r\n\r\n\r\n", 431, 0, 8, 0),
    LIM("invalid byte before the limit wins over 414", "GET /a\x01" "cdefghijklmnopq", 400, 17, 0,
        0),

    /* -- body framing and request smuggling (RFC 9112 6.1, 6.3) -- */
    SEM("CL.TE: both Content-Length and Transfer-Encoding",
        POST11 CL_ "6\r\n" TE_ "chunked\r\n\r\n", 400),
    SEM("TE.CL: the same, other order", POST11 TE_ "chunked\r\n" CL_ "6\r\n\r\n", 400),
    /* a Content-Length of 0 beside chunked is no harmless exception: a hop that frames by it
     * sees an empty body and the chunks as the next request */
    SEM("CL.TE with Content-Length: 0", POST11 CL_ "0\r\n" TE_ "chunked\r\n\r\n", 400),
    SEM("TE.TE: xchunked is an unknown coding", POST11 TE_ "xchunked\r\n\r\n", 501),
    SEM("TE.TE: chunked followed by identity", POST11 TE_ "chunked, identity\r\n\r\n", 400),
    SEM("TE.TE: duplicate Transfer-Encoding fields", POST11 TE_ "chunked\r\n" TE_ "chunked\r\n\r\n",
        400),
    SEM("chunked listed twice in one field", POST11 TE_ "chunked, chunked\r\n\r\n", 400),
    SEM("chunked not last across two fields", POST11 TE_ "chunked\r\n" TE_ "gzip\r\n\r\n", 400),
    SEM("gzip then chunked: gzip is not supported", POST11 TE_ "gzip, chunked\r\n\r\n", 501),
    SEM("gzip and chunked in two fields", POST11 TE_ "gzip\r\n" TE_ "chunked\r\n\r\n", 501),
    SEM("identity is no longer a transfer coding", POST11 TE_ "identity\r\n\r\n", 501),
    SEM("chunked with a parameter is a different coding", POST11 TE_ "chunked;q=1\r\n\r\n", 501),
    SEM("quoted chunked is not a token", POST11 TE_ "\"chunked\"\r\n\r\n", 400),
    SEM("chunked followed by garbage in the element", POST11 TE_ "chunked x\r\n\r\n", 400),
    SEM("empty Transfer-Encoding", POST11 TE_ "\r\n\r\n", 400),
    SEM("Transfer-Encoding of commas only", POST11 TE_ " , ,\r\n\r\n", 400),
    SEM("empty TE field next to a good one", POST11 TE_ "\r\n" TE_ "chunked\r\n\r\n", 400),
    SEM("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\n" TE_ "chunked\r\n\r\n", 400),
    SEM("differing Content-Length fields", POST11 CL_ "5\r\n" CL_ "6\r\n\r\n", 400),
    SEM("differing Content-Length list", POST11 CL_ "5, 6\r\n\r\n", 400),
    SEM("Content-Length with plus sign", POST11 CL_ "+5\r\n\r\n", 400),
    SEM("Content-Length with minus sign", POST11 CL_ "-5\r\n\r\n", 400),
    SEM("Content-Length with a space inside", POST11 CL_ "5 5\r\n\r\n", 400),
    SEM("Content-Length in hex", POST11 CL_ "0x5\r\n\r\n", 400),
    SEM("Content-Length with a fraction", POST11 CL_ "5.0\r\n\r\n", 400),
    SEM("empty Content-Length", POST11 CL_ "\r\n\r\n", 400),
    SEM("Content-Length list with an empty element", POST11 CL_ "5,\r\n\r\n", 400),
    SEM("Content-Length of 2^62 + 1", POST11 CL_ "4611686018427387905\r\n\r\n", 400),
    SEM("Content-Length that overflows 64 bits", POST11 CL_ "99999999999999999999999\r\n\r\n",
        400),
    SEM("valid then invalid Content-Length", POST11 CL_ "5\r\n" CL_ "x\r\n\r\n", 400),

    /* -- Host (RFC 9112 3.2) -- */
    SEM("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
    SEM("two Host fields", GET11 H11 "\r\n", 400),
    SEM("two Host fields in HTTP/1.0 too", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    SEM("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    SEM("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n", 400),
    SEM("Host with a path", "GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", 400),
    SEM("Host with a non-numeric port", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
    SEM("Host with two colons", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400),
    SEM("Host with truncated pct-encoding", "GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400),
    SEM("Host with an unclosed IP literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    SEM("Host with an empty IP literal", "GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400),
    SEM("Host with garbage after the IP literal", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400),
    SEM("Host with obs-text", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", 400),
    SEM("Host IP literal with a non-literal byte", "GET / HTTP/1.1\r\nHost: [::1/64]\r\n\r\n", 400),
};

static const struct h1_limits *limits_of(const struct req_case *rc, struct h1_limits *lim)
{
    lim->max_request_line = rc->max_line != 0 ? rc->max_line : DEF_LINE;
    lim->max_head = rc->max_head != 0 ? rc->max_head : DEF_HEAD;
    return lim;
}

static int parse_req_copy(const char *in, size_t n, const struct h1_limits *lim,
                          struct h1_request *req, struct h1_error *err)
{
    char *buf = dup_exact(in, n);
    int rc = h1_parse_request(buf, n, lim, req, err);
    if (rc > 0) {
        /* Spans must lie inside the head. */
        assert_true(req->method >= buf && req->method + req->method_len <= buf + rc);
        assert_true(req->target >= buf && req->target + req->target_len <= buf + rc);
        assert_true(req->nfields <= H1_MAX_FIELDS);
        for (size_t i = 0; i < req->nfields; i++) {
            const struct h1_field *f = &req->fields[i];
            assert_true(f->name >= buf && f->name + f->name_len <= buf + rc);
            assert_true(f->value >= buf && f->value + f->value_len <= buf + rc);
        }
    }
    free(buf);
    return rc;
}

static void check_request_row(const struct req_case *rc)
{
    struct h1_limits lim;
    struct h1_request req;
    struct h1_error err = {0};
    size_t n = in_len(rc->in, rc->len);

    limits_of(rc, &lim);
    int got = parse_req_copy(rc->in, n, &lim, &req, &err);
    if (rc->parse == 0) {
        if (got != (int)n)
            fail_msg("%s: parse returned %d (%d %s at %zu), want %zu", rc->why, got, err.status,
                     err.reason, err.offset, n);
    } else if (rc->parse == AGAIN) {
        if (got != AGAIN)
            fail_msg("%s: parse returned %d, want -2", rc->why, got);
    } else {
        if (got != -1 || err.status != rc->parse)
            fail_msg("%s: parse returned %d status %d, want -1 status %d", rc->why, got,
                     err.status, rc->parse);
        assert_non_null(err.reason);
        assert_true(err.offset <= n);
    }

    /* Every split point: a prefix is "again" or the same error. */
    struct h1_error full = err;
    for (size_t k = 0; k < n; k++) {
        struct h1_error e2 = {0};
        int r2 = parse_req_copy(rc->in, k, &lim, &req, &e2);
        if (rc->parse == 0 && r2 != AGAIN)
            fail_msg("%s: prefix %zu returned %d, want -2", rc->why, k, r2);
        if (rc->parse != 0 && r2 != AGAIN &&
            (r2 != -1 || e2.status != full.status || e2.offset != full.offset))
            fail_msg("%s: prefix %zu returned %d/%d@%zu, full input %d/%d@%zu", rc->why, k, r2,
                     e2.status, e2.offset, got, full.status, full.offset);
    }
    if (rc->parse != 0)
        return;

    /* The head ends where it ends, whatever follows it (pipelining, body). */
    {
        static const char more[] = "XYZ\r\n";
        char *both = malloc(n + sizeof more - 1);
        assert_non_null(both);
        memcpy(both, rc->in, n);
        memcpy(both + n, more, sizeof more - 1);
        assert_int_equal(parse_req_copy(both, n + sizeof more - 1, &lim, &req, &err), (int)n);
        free(both);
    }

    char *buf = dup_exact(rc->in, n);
    assert_int_equal(h1_parse_request(buf, n, &lim, &req, &err), (int)n);
    for (size_t i = 0; i < req.nfields; i++) /* the parser names every field it knows */
        assert_int_equal(req.fields[i].id, h1_field_id_of(req.fields[i].name, req.fields[i].name_len));
    struct h1_info info;
    int ir = h1_request_info(&req, &info, &err);
    if (rc->info != 0) {
        if (ir != -1 || err.status != rc->info)
            fail_msg("%s: info returned %d status %d, want status %d", rc->why, ir, err.status,
                     rc->info);
        assert_non_null(err.reason);
        free(buf);
        return;
    }
    if (ir != 0)
        fail_msg("%s: info refused with %d %s", rc->why, err.status, err.reason);
    if (info.framing != rc->framing)
        fail_msg("%s: framing %d, want %d", rc->why, info.framing, rc->framing);
    if (rc->framing == H1_BODY_LENGTH && info.content_length != rc->cl)
        fail_msg("%s: content_length %llu, want %llu", rc->why,
                 (unsigned long long)info.content_length, (unsigned long long)rc->cl);
    if (info.keep_alive != ((rc->flags & KA) != 0))
        fail_msg("%s: keep_alive %d", rc->why, info.keep_alive);
    if (info.expect_continue != ((rc->flags & CONT) != 0))
        fail_msg("%s: expect_continue %d", rc->why, info.expect_continue);
    if (info.expect_other != ((rc->flags & OTHER) != 0))
        fail_msg("%s: expect_other %d", rc->why, info.expect_other);
    if ((info.host == NULL) != ((rc->flags & NOHOST) != 0))
        fail_msg("%s: host %p", rc->why, (const void *)info.host);
    free(buf);
}

static void test_request_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof req_cases / sizeof req_cases[0]; i++)
        check_request_row(&req_cases[i]);
}

/* Spans: what the parser hands back for a request, one row per field checked. */
struct span_case {
    const char *why;
    const char *in;
    const char *method;
    const char *target;
    int minor;
    size_t nfields;
    size_t field;      /* index of the field checked */
    const char *name;
    const char *value; /* after OWS trimming */
};

static const struct span_case span_cases[] = {
    {"plain field", "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/a?b", 1, 1, 0, "Host", "x"},
    {"OWS on both sides is trimmed", "PUT /p HTTP/1.0\r\nX: \t a b \t\r\n\r\n", "PUT", "/p", 0, 1,
     0, "X", "a b"},
    {"inner HTAB is kept", "GET / HTTP/1.1\r\nA: 1\r\nB:x\ty\r\n\r\n", "GET", "/", 1, 2, 1, "B",
     "x\ty"},
    {"only OWS gives an empty value", "GET / HTTP/1.1\r\nE:   \r\n\r\n", "GET", "/", 1, 1, 0, "E",
     ""},
    {"leading CRLF are not part of the method", "\r\nGET / HTTP/1.1\r\nH: v\r\n\r\n", "GET", "/",
     1, 1, 0, "H", "v"},
    {"long value with obs-text", "GET / HTTP/1.1\r\nU: Mozilla/5.0 (X11; \xe2\x82\xac)  \r\n\r\n",
     "GET", "/", 1, 1, 0, "U", "Mozilla/5.0 (X11; \xe2\x82\xac)"},
};

static void test_request_spans(void **state)
{
    (void)state;
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t i = 0; i < sizeof span_cases / sizeof span_cases[0]; i++) {
        const struct span_case *sc = &span_cases[i];
        struct h1_request req;
        struct h1_error err;
        size_t n = strlen(sc->in);
        char *buf = dup_exact(sc->in, n);
        int rc = h1_parse_request(buf, n, &lim, &req, &err);
        if (rc != (int)n)
            fail_msg("%s: parse %d", sc->why, rc);
        assert_int_equal(req.method_len, strlen(sc->method));
        assert_memory_equal(req.method, sc->method, req.method_len);
        assert_int_equal(req.target_len, strlen(sc->target));
        assert_memory_equal(req.target, sc->target, req.target_len);
        assert_int_equal(req.minor, sc->minor);
        assert_int_equal(req.nfields, sc->nfields);
        const struct h1_field *f = &req.fields[sc->field];
        assert_int_equal(f->name_len, strlen(sc->name));
        assert_memory_equal(f->name, sc->name, f->name_len);
        if (f->value_len != strlen(sc->value) || memcmp(f->value, sc->value, f->value_len) != 0)
            fail_msg("%s: value '%.*s'", sc->why, (int)f->value_len, f->value);
        free(buf);
    }
}

/* The method is looked up once, case-sensitively (RFC 9110 9.1), and decides response framing. */
static const struct method_case {
    const char *why;
    const char *method;
    enum http_method want;
} method_cases[] = {
    {"GET", "GET", METHOD_GET},
    {"HEAD: its responses have no body", "HEAD", METHOD_HEAD},
    {"POST", "POST", METHOD_POST},
    {"PUT", "PUT", METHOD_PUT},
    {"DELETE", "DELETE", METHOD_DELETE},
    {"CONNECT: 2xx starts a tunnel", "CONNECT", METHOD_CONNECT},
    {"OPTIONS", "OPTIONS", METHOD_OPTIONS},
    {"TRACE", "TRACE", METHOD_TRACE},
    {"PATCH (RFC 5789)", "PATCH", METHOD_PATCH},
    {"methods are case-sensitive: get is an extension method", "get", METHOD_OTHER},
    {"lowercase head is not HEAD: its response has a body", "head", METHOD_OTHER},
    {"mixed case is not CONNECT", "Connect", METHOD_OTHER},
    {"a registered method Portico does not name (WebDAV)", "PROPFIND", METHOD_OTHER},
    {"a prefix of a known method", "GE", METHOD_OTHER},
    {"a known method with a suffix", "GETS", METHOD_OTHER},
    {"a known method with a longer suffix", "HEADERS", METHOD_OTHER},
    {"tchar punctuation in an extension method", "M-SEARCH", METHOD_OTHER},
    {"one-byte method", "G", METHOD_OTHER},
};

static void test_methods(void **state)
{
    (void)state;
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    static const char resp_in[] = "HTTP/1.1 200 OK\r\n" CL_ "5\r\n\r\n";
    struct h1_response resp;
    struct h1_error err;
    assert_int_equal(h1_parse_response(resp_in, strlen(resp_in), DEF_HEAD, &resp, &err),
                     (int)strlen(resp_in));
    for (size_t i = 0; i < sizeof method_cases / sizeof method_cases[0]; i++) {
        const struct method_case *mc = &method_cases[i];
        char in[128];
        int n = snprintf(in, sizeof in, "%s / HTTP/1.1\r\n" H11 "\r\n", mc->method);
        char *buf = dup_exact(in, (size_t)n);
        struct h1_request req;
        assert_int_equal(h1_parse_request(buf, (size_t)n, &lim, &req, &err), n);
        if (req.method_id != mc->want)
            fail_msg("%s: method_id %d, want %d", mc->why, req.method_id, mc->want);
        /* The token as sent stays what is forwarded. */
        assert_int_equal(req.method_len, strlen(mc->method));
        assert_memory_equal(req.method, mc->method, req.method_len);
        assert_int_equal(h1_method_of(mc->method, strlen(mc->method)), mc->want);
        free(buf);
        /* Only a real HEAD (or a 2xx to a real CONNECT) takes the body away. */
        struct h1_info info;
        assert_int_equal(h1_response_info(&resp, mc->want, &info, &err), 0);
        bool bodyless = mc->want == METHOD_HEAD || mc->want == METHOD_CONNECT;
        if ((info.framing == H1_BODY_NONE) != bodyless)
            fail_msg("%s: response framing %d", mc->why, info.framing);
    }
    /* The name table and the lookup agree on every known method. */
    for (int m = METHOD_OTHER + 1; m < METHOD_COUNT; m++) {
        const char *name = h1_method_name((enum http_method)m);
        assert_true(name[0] != '\0');
        assert_int_equal(h1_method_of(name, strlen(name)), m);
    }
    assert_string_equal(h1_method_name(METHOD_OTHER), "");
    assert_string_equal(h1_method_name(METHOD_COUNT), "");
    assert_int_equal(h1_method_of("", 0), METHOD_OTHER);
    /* The packed compare: a NUL after a name is not the name (nor is an h2 :method "GET\0"),
     * 8 and 9 bytes that begin with one are not it either. */
    assert_int_equal(h1_method_of("GET\0", 4), METHOD_OTHER);
    assert_int_equal(h1_method_of("OPTIONS\0", 8), METHOD_OTHER);
    assert_int_equal(h1_method_of("OPTIONSX", 8), METHOD_OTHER);
    assert_int_equal(h1_method_of("CONNECTED", 9), METHOD_OTHER);
    assert_int_equal(h1_method_of("GETGETGET", 3), METHOD_GET);
}

/* Field-count limit, built rather than spelled out: one row per count. */
struct count_case {
    const char *why;
    size_t nfields;
    int want_req;  /* 0 ok or status */
    int want_resp; /* 0 ok or status */
};

static const struct count_case count_cases[] = {
    {"no fields at all", 0, 0, 0},
    {"exactly H1_MAX_FIELDS fields fit", H1_MAX_FIELDS, 0, 0},
    {"one field too many", H1_MAX_FIELDS + 1, 431, 502},
    {"far too many fields", 3 * H1_MAX_FIELDS, 431, 502},
};

static char *build_head(const char *start, size_t nfields, size_t *len)
{
    size_t cap = strlen(start) + nfields * 16 + 3;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "%s", start);
    for (size_t i = 0; i < nfields; i++)
        n += (size_t)snprintf(s + n, cap - n, "X-%zu: v\r\n", i);
    n += (size_t)snprintf(s + n, cap - n, "\r\n");
    *len = n;
    return s;
}

static void test_field_count(void **state)
{
    (void)state;
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t i = 0; i < sizeof count_cases / sizeof count_cases[0]; i++) {
        const struct count_case *cc = &count_cases[i];
        size_t n;
        char *s = build_head("GET / HTTP/1.0\r\n", cc->nfields, &n);
        char *buf = dup_exact(s, n);
        struct h1_request req;
        struct h1_error err = {0};
        int rc = h1_parse_request(buf, n, &lim, &req, &err);
        if (cc->want_req == 0 ? rc != (int)n : (rc != -1 || err.status != cc->want_req))
            fail_msg("%s: request %d/%d", cc->why, rc, err.status);
        if (cc->want_req == 0)
            assert_int_equal(req.nfields, cc->nfields);
        free(buf);
        free(s);

        s = build_head("HTTP/1.1 200 OK\r\n", cc->nfields, &n);
        buf = dup_exact(s, n);
        struct h1_response resp;
        rc = h1_parse_response(buf, n, DEF_HEAD, &resp, &err);
        if (cc->want_resp == 0 ? rc != (int)n : (rc != -1 || err.status != cc->want_resp))
            fail_msg("%s: response %d/%d", cc->why, rc, err.status);
        free(buf);
        free(s);
    }
}

/* ---- responses ---- */

struct resp_case {
    const char *why;
    const char *in;
    enum http_method method; /* the request's method */
    int parse;               /* 0: the whole input is one head, AGAIN, or 502 */
    int info;                /* 0 or 502 */
    enum h1_framing framing;
    uint64_t cl;
    bool keep_alive;
    int status;         /* expected status code when parse == 0 */
    const char *reason; /* expected reason when parse == 0 and not NULL */
};

#define ROK(w, i, m, f, c, ka, st, rs)                                                          \
    {.why = w, .in = i, .method = m, .framing = f, .cl = c, .keep_alive = ka, .status = st,     \
     .reason = rs}
#define RBAD(w, i) {.why = w, .in = i, .parse = 502}
#define RSEM(w, i, m) {.why = w, .in = i, .method = m, .info = 502}

static const struct resp_case resp_cases[] = {
    ROK("Content-Length response", "HTTP/1.1 200 OK\r\n" CL_ "5\r\n\r\n", METHOD_GET,
        H1_BODY_LENGTH, 5, true, 200, "OK"),
    ROK("chunked response", "HTTP/1.1 200 OK\r\n" TE_ "chunked\r\n\r\n", METHOD_GET,
        H1_BODY_CHUNKED, 0, true, 200, "OK"),
    ROK("no framing: read to close", "HTTP/1.1 200 OK\r\n\r\n", METHOD_GET, H1_BODY_CLOSE, 0, false,
        200, "OK"),
    ROK("no reason and no space", "HTTP/1.1 200\r\n" CL_ "0\r\n\r\n", METHOD_GET, H1_BODY_LENGTH, 0,
        true, 200, ""),
    ROK("empty reason after the space", "HTTP/1.1 404 \r\n" CL_ "0\r\n\r\n", METHOD_GET,
        H1_BODY_LENGTH, 0, true, 404, ""),
    ROK("reason with HTAB and obs-text", "HTTP/1.1 200 Tr\xe8s\tbien\r\n" CL_ "0\r\n\r\n",
        METHOD_GET, H1_BODY_LENGTH, 0, true, 200, "Tr\xe8s\tbien"),
    ROK("HTTP/1.0 response closes by default", "HTTP/1.0 200 OK\r\n" CL_ "2\r\n\r\n", METHOD_GET,
        H1_BODY_LENGTH, 2, false, 200, "OK"),
    ROK("HTTP/1.0 keep-alive response",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n" CL_ "2\r\n\r\n", METHOD_GET, H1_BODY_LENGTH,
        2, true, 200, "OK"),
    ROK("Connection: close response", "HTTP/1.1 200 OK\r\nConnection: close\r\n" CL_ "2\r\n\r\n",
        METHOD_GET, H1_BODY_LENGTH, 2, false, 200, "OK"),
    ROK("status 100 has no body", "HTTP/1.1 100 Continue\r\n\r\n", METHOD_GET, H1_BODY_NONE, 0,
        true, 100, "Continue"),
    ROK("101 has no body", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", METHOD_GET,
        H1_BODY_NONE, 0, true, 101, NULL),
    ROK("204 ignores Content-Length", "HTTP/1.1 204 No Content\r\n" CL_ "10\r\n\r\n", METHOD_GET,
        H1_BODY_NONE, 0, true, 204, NULL),
    ROK("304 ignores Content-Length", "HTTP/1.1 304 Not Modified\r\n" CL_ "99\r\n\r\n", METHOD_GET,
        H1_BODY_NONE, 0, true, 304, NULL),
    ROK("HEAD response ignores Content-Length", "HTTP/1.1 200 OK\r\n" CL_ "99\r\n\r\n", METHOD_HEAD,
        H1_BODY_NONE, 0, true, 200, NULL),
    ROK("HEAD response ignores Transfer-Encoding", "HTTP/1.1 200 OK\r\n" TE_ "chunked\r\n\r\n",
        METHOD_HEAD, H1_BODY_NONE, 0, true, 200, NULL),
    ROK("2xx to CONNECT is a tunnel (RFC 9112 6.3)", "HTTP/1.1 200 OK\r\n\r\n", METHOD_CONNECT,
        H1_BODY_NONE, 0, true, 200, NULL),
    ROK("status 999 is in range", "HTTP/1.1 999 Odd\r\n" CL_ "0\r\n\r\n", METHOD_GET,
        H1_BODY_LENGTH, 0, true, 999, "Odd"),
    ROK("gzip only: body runs to the close", "HTTP/1.1 200 OK\r\n" TE_ "gzip\r\n\r\n", METHOD_GET,
        H1_BODY_CLOSE, 0, false, 200, NULL),
    ROK("chunked not last: close-delimited (RFC 9112 6.3 item 4)",
        "HTTP/1.1 200 OK\r\n" TE_ "chunked, gzip\r\n\r\n", METHOD_GET, H1_BODY_CLOSE, 0, false, 200,
        NULL),
    ROK("gzip then chunked: chunked framing", "HTTP/1.1 200 OK\r\n" TE_ "gzip, chunked\r\n\r\n",
        METHOD_GET, H1_BODY_CHUNKED, 0, true, 200, NULL),
    ROK("identical Content-Length twice", "HTTP/1.1 200 OK\r\n" CL_ "3\r\n" CL_ "3\r\n\r\n",
        METHOD_GET, H1_BODY_LENGTH, 3, true, 200, NULL),

    RBAD("HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n"),
    RBAD("HTTP/1.2 is not a version Portico speaks", "HTTP/1.2 200 OK\r\n\r\n"),
    RBAD("lowercase protocol", "http/1.1 200 OK\r\n\r\n"),
    RBAD("two-digit status", "HTTP/1.1 20 OK\r\n\r\n"),
    RBAD("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"),
    RBAD("status below 100", "HTTP/1.1 099 Low\r\n\r\n"),
    RBAD("status with a letter", "HTTP/1.1 2x0 OK\r\n\r\n"),
    RBAD("two spaces before the status", "HTTP/1.1  200 OK\r\n\r\n"),
    RBAD("HTAB before the status", "HTTP/1.1\t200 OK\r\n\r\n"),
    RBAD("NUL in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n"),
    RBAD("bare LF after the status line", "HTTP/1.1 200 OK\n\r\n"),
    RBAD("bare CR after the status line", "HTTP/1.1 200 OK\rX: y\r\n\r\n"),
    RBAD("empty lines before a status line are not skipped", "\r\nHTTP/1.1 200 OK\r\n\r\n"),
    RBAD("obs-fold in a response", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
    RBAD("whitespace before colon in a response", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
    RBAD("bare LF in response fields", "HTTP/1.1 200 OK\r\nX: a\n\r\n"),
    RBAD("CTL in a response value", "HTTP/1.1 200 OK\r\nX: a\x02\r\n\r\n"),

    RSEM("both Transfer-Encoding and Content-Length",
        "HTTP/1.1 200 OK\r\n" TE_ "chunked\r\n" CL_ "5\r\n\r\n", METHOD_GET),
    RSEM("differing Content-Length", "HTTP/1.1 200 OK\r\n" CL_ "5\r\n" CL_ "6\r\n\r\n", METHOD_GET),
    RSEM("invalid Content-Length", "HTTP/1.1 200 OK\r\n" CL_ "-1\r\n\r\n", METHOD_GET),
    RSEM("garbage Content-Length is refused even on 304",
        "HTTP/1.1 304 Not Modified\r\n" CL_ "x\r\n\r\n", METHOD_GET),
    RSEM("garbage Content-Length is refused even for HEAD", "HTTP/1.1 200 OK\r\n" CL_ "1 2\r\n\r\n",
        METHOD_HEAD),
    RSEM("chunked twice", "HTTP/1.1 200 OK\r\n" TE_ "chunked, chunked\r\n\r\n", METHOD_GET),
    RSEM("empty Transfer-Encoding", "HTTP/1.1 200 OK\r\n" TE_ "\r\n\r\n", METHOD_GET),
    RSEM("Transfer-Encoding in an HTTP/1.0 response", "HTTP/1.0 200 OK\r\n" TE_ "chunked\r\n\r\n",
        METHOD_GET),
};

static int parse_resp_copy(const char *in, size_t n, struct h1_response *resp,
                           struct h1_error *err)
{
    char *buf = dup_exact(in, n);
    int rc = h1_parse_response(buf, n, DEF_HEAD, resp, err);
    if (rc > 0) {
        assert_true(resp->reason >= buf && resp->reason + resp->reason_len <= buf + rc);
        for (size_t i = 0; i < resp->nfields; i++) {
            const struct h1_field *f = &resp->fields[i];
            assert_true(f->name >= buf && f->name + f->name_len <= buf + rc);
            assert_true(f->value >= buf && f->value + f->value_len <= buf + rc);
        }
    }
    free(buf);
    return rc;
}

static void check_response_row(const struct resp_case *rc)
{
    struct h1_response resp;
    struct h1_error err = {0};
    size_t n = strlen(rc->in);

    int got = parse_resp_copy(rc->in, n, &resp, &err);
    if (rc->parse == 0 && got != (int)n)
        fail_msg("%s: parse returned %d (%s)", rc->why, got, err.reason);
    if (rc->parse != 0 && (got != -1 || err.status != 502))
        fail_msg("%s: parse returned %d status %d, want 502", rc->why, got, err.status);

    struct h1_error full = err;
    for (size_t k = 0; k < n; k++) {
        struct h1_error e2 = {0};
        int r2 = parse_resp_copy(rc->in, k, &resp, &e2);
        if (rc->parse == 0 && r2 != AGAIN)
            fail_msg("%s: prefix %zu returned %d, want -2", rc->why, k, r2);
        if (rc->parse != 0 && r2 != AGAIN && (r2 != -1 || e2.offset != full.offset))
            fail_msg("%s: prefix %zu returned %d@%zu", rc->why, k, r2, e2.offset);
    }
    if (rc->parse != 0)
        return;

    char *buf = dup_exact(rc->in, n);
    assert_int_equal(h1_parse_response(buf, n, DEF_HEAD, &resp, &err), (int)n);
    if (rc->status != 0)
        assert_int_equal(resp.status, rc->status);
    if (rc->reason != NULL &&
        (resp.reason_len != strlen(rc->reason) ||
         memcmp(resp.reason, rc->reason, resp.reason_len) != 0))
        fail_msg("%s: reason '%.*s'", rc->why, (int)resp.reason_len, resp.reason);
    struct h1_info info;
    int ir = h1_response_info(&resp, rc->method, &info, &err);
    if (rc->info != 0) {
        if (ir != -1 || err.status != 502)
            fail_msg("%s: info returned %d status %d, want 502", rc->why, ir, err.status);
        free(buf);
        return;
    }
    if (ir != 0)
        fail_msg("%s: info refused: %s", rc->why, err.reason);
    if (info.framing != rc->framing)
        fail_msg("%s: framing %d, want %d", rc->why, info.framing, rc->framing);
    if (rc->framing == H1_BODY_LENGTH)
        assert_int_equal(info.content_length, rc->cl);
    if (info.keep_alive != rc->keep_alive)
        fail_msg("%s: keep_alive %d", rc->why, info.keep_alive);
    free(buf);
}

static void test_response_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof resp_cases / sizeof resp_cases[0]; i++)
        check_response_row(&resp_cases[i]);
}

/* The response head limit is max_head, and exceeding it is 502. */
static void test_response_limits(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const char *in;
        size_t max_head;
        int want;
    } rows[] = {
        {"head exactly max_head", "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25, 25},
        {"head one byte over", "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 24, -1},
        {"incomplete head already at max_head", "HTTP/1.1 200 OK\r\nA: bbbbbbb", 20, -1},
        {"incomplete head below max_head", "HTTP/1.1 200 OK\r\nA: bbbbbbb", 200, AGAIN},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t n = strlen(rows[i].in);
        char *buf = dup_exact(rows[i].in, n);
        struct h1_response resp;
        struct h1_error err = {0};
        int rc = h1_parse_response(buf, n, rows[i].max_head, &resp, &err);
        if (rc != rows[i].want || (rc == -1 && err.status != 502))
            fail_msg("%s: %d/%d", rows[i].why, rc, err.status);
        free(buf);
    }
}

/* ---- helpers ---- */

static void test_list_next(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const char *value;
        const char *want[4];
    } rows[] = {
        {"single element", "close", {"close"}},
        {"OWS and empty elements are skipped", " , a ,\t, b\t,,", {"a", "b"}},
        {"element keeps inner spaces", "a b , c", {"a b", "c"}},
        {"comma in a quoted-string stays inside", "x=\"1,2\", y", {"x=\"1,2\"", "y"}},
        {"escaped quote in a quoted-string", "x=\"a\\\",b\",c", {"x=\"a\\\",b\"", "c"}},
        {"empty value has no element", "", {NULL}},
        {"only separators", " ,\t, ", {NULL}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t n = strlen(rows[i].value), pos = 0, k = 0, elen;
        char *buf = dup_exact(rows[i].value, n);
        const char *e;
        while (h1_list_next(buf, n, &pos, &e, &elen)) {
            assert_true(k < 4 && rows[i].want[k] != NULL);
            if (elen != strlen(rows[i].want[k]) || memcmp(e, rows[i].want[k], elen) != 0)
                fail_msg("%s: element %zu '%.*s'", rows[i].why, k, (int)elen, e);
            k++;
        }
        assert_true(k == 4 || rows[i].want[k] == NULL);
        free(buf);
    }
}

static void test_field_helpers(void **state)
{
    (void)state;
    static const struct h1_field f[] = {
        {"Host", 4, "a", 1, H1_F_OTHER},
        {"Connection", 10, "Upgrade, Keep-Alive", 19, H1_F_OTHER},
        {"HOSTS", 5, "x", 1, H1_F_OTHER},
        {"connection", 10, "foo", 3, H1_F_OTHER},
        {"Host", 4, "b", 1, H1_F_OTHER},
    };
    /* name matching: exact length, case-insensitive */
    assert_true(h1_name_is(&f[0], "host"));
    assert_false(h1_name_is(&f[0], "hos"));
    assert_false(h1_name_is(&f[2], "host"));
    assert_true(h1_name_is(&f[2], "hosts"));
    /* find from an index */
    assert_int_equal(h1_find_field(f, 5, "host", 0), 0);
    assert_int_equal(h1_find_field(f, 5, "host", 1), 4);
    assert_int_equal(h1_find_field(f, 5, "host", 5), -1);
    assert_int_equal(h1_find_field(f, 5, "connection", 2), 3);
    assert_int_equal(h1_find_field(f, 5, "te", 0), -1);
    /* ids: any case, exact length; names Portico has no use for are H1_F_OTHER */
    assert_int_equal(h1_field_id_of("Host", 4), H1_F_HOST);
    assert_int_equal(h1_field_id_of("X-FORWARDED-FOR", 15), H1_F_X_FORWARDED_FOR);
    assert_int_equal(h1_field_id_of("traceparent", 11), H1_F_TRACEPARENT);
    assert_int_equal(h1_field_id_of("Hosts", 5), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("Hos", 3), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("T", 1), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("Tf", 2), H1_F_OTHER);
    static const char *const names[H1_F_COUNT] = {
#define X(id, name) [id] = name,
        H1_FIELD_LIST(X)
#undef X
    };
    for (int id = H1_F_OTHER + 1; id < H1_F_COUNT; id++) /* every name is found: no slot shared */
        if (names[id][0])
            assert_int_equal(h1_field_id_of(names[id], strlen(names[id])), id);
    static const char *const claims[] = {
#define X(name) name,
        H1_PROXY_CLAIM_LIST(X)
#undef X
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++)
        assert_int_equal(h1_field_id_of(claims[i], strlen(claims[i])), H1_F_PROXY_CLAIM);
    /* X-Forwarded-* but -For, -Proto and -Host, at any length; the bare prefix too */
    assert_int_equal(h1_field_id_of("X-Forwarded-Port", 16), H1_F_PROXY_CLAIM);
    assert_int_equal(h1_field_id_of("x-forwarded-ssl", 15), H1_F_PROXY_CLAIM);
    assert_int_equal(h1_field_id_of("X-FORWARDED-PREFIX", 18), H1_F_PROXY_CLAIM);
    assert_int_equal(h1_field_id_of("X-Forwarded-", 12), H1_F_PROXY_CLAIM);
    assert_int_equal(h1_field_id_of("X-Forwarded-A-Name-Longer-Than-Any-Known", 40),
                     H1_F_PROXY_CLAIM);
    assert_int_equal(h1_field_id_of("X-Forwarded-Proto", 17), H1_F_X_FORWARDED_PROTO);
    assert_int_equal(h1_field_id_of("X-Forwarded", 11), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("X-Forwardee-Port", 16), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("Y-Forwarded-Port", 16), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("X-Client-IPs", 12), H1_F_OTHER);
    assert_int_equal(h1_field_id_of("X-URL-SCHEME", 12), H1_F_PROXY_CLAIM);
    assert_int_equal(h1_field_id_of("X-Request-ID", 12), H1_F_X_REQUEST_ID);
    struct h1_field g[5];
    for (size_t i = 0; i < 5; i++) {
        g[i] = f[i];
        g[i].id = h1_field_id_of(f[i].name, f[i].name_len);
    }
    assert_int_equal(h1_find(g, 5, H1_F_HOST, 0), 0);
    assert_int_equal(h1_find(g, 5, H1_F_HOST, 1), 4);
    assert_int_equal(h1_find(g, 5, H1_F_CONNECTION, 2), 3);
    assert_int_equal(h1_find(g, 5, H1_F_TE, 0), -1);
    /* Connection tokens over all Connection fields */
    assert_true(h1_connection_has(f, 5, "keep-alive"));
    assert_true(h1_connection_has(f, 5, "upgrade"));
    assert_true(h1_connection_has(f, 5, "foo"));
    assert_false(h1_connection_has(f, 5, "close"));
    assert_false(h1_connection_has(f, 5, "keep"));
    /* tchar: the RFC 9110 set exactly */
    static const char tchars[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (unsigned c = 0; c < 256; c++) {
        bool want = c != 0 && memchr(tchars, (int)c, sizeof tchars - 1) != NULL;
        if (h1_is_tchar((unsigned char)c) != want)
            fail_msg("tchar 0x%02x", c);
    }
}

/* "HTTP/1.1" is matched whole first: every byte value at every position of it, in a request
 * and in a response, is still judged where a byte-by-byte reading judges it (refused at its
 * offset when the syntax breaks, 505 or refused for another version, taken for 1.0 and 1.1). */
static void test_version_each_byte(void **state)
{
    (void)state;
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (int resp = 0; resp < 2; resp++) {
        const char *pre = resp ? "" : "GET / ";
        const char *post = resp ? " 200 OK\r\n\r\n" : "\r\nHost: x\r\n\r\n";
        size_t at = strlen(pre);
        for (size_t pos = 0; pos < 8; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                char v[9] = "HTTP/1.1";
                v[pos] = (char)c;
                char head[64];
                int n = snprintf(head, sizeof(head), "%s%.8s%s", pre, v, post);
                assert_true(n > 0 && (size_t)n < sizeof(head));
                head[at + pos] = (char)c; /* a NUL too */
                bool syntax = memcmp(v, "HTTP/", 5) == 0 && v[6] == '.' && v[5] >= '0' &&
                              v[5] <= '9' && v[7] >= '0' && v[7] <= '9';
                bool spoken = syntax && v[5] == '1' && (v[7] == '0' || v[7] == '1');
                char *buf = dup_exact(head, (size_t)n);
                struct h1_error err = {0};
                int rc;
                int minor = -1;
                if (resp) {
                    struct h1_response r;
                    rc = h1_parse_response(buf, (size_t)n, DEF_HEAD, &r, &err);
                    minor = rc > 0 ? r.minor : -1;
                } else {
                    struct h1_request r;
                    rc = h1_parse_request(buf, (size_t)n, &lim, &r, &err);
                    minor = rc > 0 ? r.minor : -1;
                }
                free(buf);
                if (spoken ? rc != n || minor != v[7] - '0'
                           : rc != -1 || (!syntax && err.offset != at + pos) ||
                                 (!resp && err.status != (syntax ? 505 : 400)))
                    fail_msg("%s, 0x%02x at %zu: %d (%d at %zu)", resp ? "response" : "request",
                             c, pos, rc, err.status, err.offset);
            }
        }
    }
}

/* Field values are read eight bytes a step, the first CTL found from the word's mask: every
 * byte value at every position of values of 1 to 20 bytes (so at each place in a word and in
 * the tail) is taken exactly when it is a value byte (HTAB included), the value whole, and
 * refused otherwise; copies of exact size. */
static void test_field_value_each_byte(void **state)
{
    (void)state;
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t len = 1; len <= 20; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                char head[96];
                int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nX: %.*s\r\nHost: h\r\n\r\n",
                                 (int)len, "vvvvvvvvvvvvvvvvvvvv");
                assert_true(n > 0 && (size_t)n < sizeof(head));
                size_t at = 19; /* "GET / HTTP/1.1\r\nX: " */
                head[at + pos] = (char)c;
                bool value_byte = (c >= 0x20 && c != 0x7f) || c == '\t';
                bool edge_ows = (c == ' ' || c == '\t') && (pos == 0 || pos == len - 1);
                struct h1_request req;
                struct h1_error err = {0};
                char *buf = dup_exact(head, (size_t)n);
                int rc = h1_parse_request(buf, (size_t)n, &lim, &req, &err);
                bool whole = rc == n && req.nfields == 2 && req.fields[0].value_len == len &&
                             memcmp(req.fields[0].value, head + at, len) == 0;
                free(buf);
                if (value_byte ? rc != n || (!edge_ows && !whole) : rc != -1 || err.status != 400)
                    fail_msg("len %zu, 0x%02x at %zu: %d", len, c, pos, rc);
            }
        }
    }
}

/* The list tokens the semantic pass knows (close, keep-alive, chunked, 100-continue) are told
 * apart by length, then compared a word at a time: each tchar at each position of each, and
 * each one byte short or long, is taken exactly when it spells the token in some case. */
static void test_known_tokens_each_byte(void **state)
{
    (void)state;
    static const struct {
        const char *line;  /* request line and field name */
        const char *token;
    } rows[] = {
        {"GET / HTTP/1.1\r\nConnection: ", "close"},
        {"GET / HTTP/1.0\r\nConnection: ", "keep-alive"},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: ", "chunked"},
        {"POST / HTTP/1.1\r\nContent-Length: 0\r\nExpect: ", "100-continue"},
    };
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        size_t len = strlen(rows[r].token);
        for (size_t variant = 0; variant < len * 256 + 2; variant++) {
            char tok[32];
            size_t tlen = len;
            memcpy(tok, rows[r].token, len);
            bool match;
            if (variant < len * 256) {
                size_t pos = variant / 256;
                unsigned c = variant % 256;
                if (!h1_is_tchar((unsigned char)c))
                    continue;
                tok[pos] = (char)c;
                match = c == (unsigned char)rows[r].token[pos] ||
                        (c >= 'A' && c <= 'Z' && c + 32 == (unsigned char)rows[r].token[pos]);
            } else if (variant == len * 256) {
                tlen = len - 1; /* one short */
                match = false;
            } else {
                tok[len] = rows[r].token[len - 1]; /* one long */
                tlen = len + 1;
                match = false;
            }
            char head[160];
            int n = snprintf(head, sizeof(head), "%s%.*s\r\nHost: h\r\n\r\n", rows[r].line,
                             (int)tlen, tok);
            assert_true(n > 0 && (size_t)n < sizeof(head));
            struct h1_request req;
            struct h1_info info;
            struct h1_error err = {0};
            assert_int_equal(h1_parse_request(head, (size_t)n, &lim, &req, &err), n);
            int rc = h1_request_info(&req, &info, &err);
            bool ok;
            switch (r) {
            case 0:
                ok = rc == 0 && info.keep_alive == !match;
                break;
            case 1:
                ok = rc == 0 && info.keep_alive == match;
                break;
            case 2:
                ok = match ? rc == 0 && info.framing == H1_BODY_CHUNKED
                           : rc == -1 && err.status == 501;
                break;
            default:
                ok = rc == 0 && info.expect_continue == match && info.expect_other == !match;
                break;
            }
            if (!ok)
                fail_msg("%s\"%.*s\": rc %d", rows[r].line, (int)tlen, tok, rc);
        }
    }
}

/* Field names are read several bytes a step: every byte value at every position of names of 1
 * to 9 bytes still ends or refuses the name exactly where a byte-by-byte reading would, and
 * every prefix of a good head asks for more (copies of exact size: ASan sees any overread). */
static void test_field_name_each_byte(void **state)
{
    (void)state;
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t len = 1; len <= 9; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                if (c == ':')
                    continue; /* ends the name early: another head */
                char head[64];
                int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\n%.*s: v\r\n\r\n",
                                 (int)len, "aaaaaaaaa");
                assert_true(n > 0 && (size_t)n < sizeof(head));
                head[16 + pos] = (char)c;
                struct h1_request req;
                struct h1_error err = {0};
                char *buf = dup_exact(head, (size_t)n);
                int rc = h1_parse_request(buf, (size_t)n, &lim, &req, &err);
                free(buf);
                if (h1_is_tchar((unsigned char)c)) {
                    if (rc != n || req.nfields != 1 || req.fields[0].name_len != len)
                        fail_msg("len %zu, 0x%02x at %zu: %d", len, c, pos, rc);
                    for (int k = 0; k < n; k++) {
                        buf = dup_exact(head, (size_t)k);
                        rc = h1_parse_request(buf, (size_t)k, &lim, &req, &err);
                        free(buf);
                        if (rc != -2)
                            fail_msg("len %zu, 0x%02x at %zu, prefix %d: %d", len, c, pos, k, rc);
                    }
                } else if (rc != -1 || err.status != 400) {
                    fail_msg("len %zu, 0x%02x at %zu: %d, want refused", len, c, pos, rc);
                }
            }
        }
    }
}

/* Field ids, every byte value at every position of every known name: found exactly when the
 * byte is the name's letter in either ASCII case (no other byte, 0x80-0xff or CR included,
 * passes for a letter or a dash). */
static void test_field_id_each_byte(void **state)
{
    (void)state;
    static const char *const names[H1_F_COUNT] = {
#define X(id, name) [id] = name,
        H1_FIELD_LIST(X)
#undef X
    };
    for (int id = H1_F_OTHER + 1; id < H1_F_COUNT; id++) {
        size_t len = strlen(names[id]);
        char buf[32];
        assert_true(len < sizeof(buf));
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                memcpy(buf, names[id], len);
                buf[pos] = (char)c;
                bool same = c == (unsigned char)names[id][pos] ||
                            (c >= 'A' && c <= 'Z' && c + 32 == (unsigned char)names[id][pos]);
                int got = (int)h1_field_id_of(buf, len);
                if (same ? got != id : got == id)
                    fail_msg("%s with 0x%02x at %zu: id %d", names[id], c, pos, got);
            }
        }
    }
}

/* The one scanner behind lists and parameters: delimiters inside quoted-strings (escapes
 * included) and, for Link values, inside <...> do not count. */
static void test_skip_to(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        char delim;
        bool angles;
        size_t want;
    } rows[] = {
        {"a,b", ',', false, 1},
        {"\"a,b\",c", ',', false, 5},          /* in a quoted-string */
        {"\"a\\\",b\",c", ',', false, 7},      /* an escaped quote does not end it */
        {"<a,b>,c", ',', true, 5},              /* in a Link URI */
        {"<a,b>,c", ',', false, 2},             /* angles only when asked */
        {"abc", ',', false, 3},                 /* none: the length */
        {"\"open,", ',', false, 6},             /* unterminated: none */
        {"x;q=1", ';', false, 1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_int_equal(h1_skip_to(rows[i].in, strlen(rows[i].in), rows[i].delim,
                                    rows[i].angles),
                         rows[i].want);
}

/* The byte-at-a-time state machine h1_skip_to was before it skipped quoted-strings and <...>
 * in loops of their own: the reference for the exhaustive comparison below. */
static size_t skip_to_reference(const char *p, size_t len, char delim, bool angles)
{
    bool quoted = false, in_angles = false;
    size_t i = 0;
    for (; i < len; i++) {
        char c = p[i];
        if (quoted) {
            if (c == '\\' && i + 1 < len)
                i++;
            else if (c == '"')
                quoted = false;
        } else if (in_angles) {
            in_angles = c != '>';
        } else if (c == '"') {
            quoted = true;
        } else if (angles && c == '<') {
            in_angles = true;
        } else if (c == delim) {
            break;
        }
    }
    return i;
}

/* Every string of up to 7 bytes over the bytes that matter, every delimiter (quote and angle
 * included) and both modes: the same answer as the reference. */
static void test_skip_to_exhaustive(void **state)
{
    (void)state;
    static const char alphabet[] = {'"', '\\', '<', '>', ',', ';', 'a'};
    static const char delims[] = {',', ';', '"', '<', '>', '\\'};
    enum { K = sizeof(alphabet), MAXLEN = 7 };
    char buf[MAXLEN];
    for (size_t len = 0; len <= MAXLEN; len++) {
        size_t total = 1;
        for (size_t k = 0; k < len; k++)
            total *= K;
        for (size_t n = 0; n < total; n++) {
            size_t x = n;
            for (size_t k = 0; k < len; k++, x /= K)
                buf[k] = alphabet[x % K];
            for (size_t d = 0; d < sizeof(delims); d++)
                for (int angles = 0; angles < 2; angles++) {
                    size_t want = skip_to_reference(buf, len, delims[d], angles);
                    size_t got = h1_skip_to(buf, len, delims[d], angles);
                    if (got != want)
                        fail_msg("\"%.*s\" delim %c angles %d: %zu, want %zu", (int)len, buf,
                                 delims[d], angles, got, want);
                }
        }
    }
}

/* A refused request says whether it was a HEAD, once its method is read: its answer then has
 * no body. */
static void test_error_names_head(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        bool head_method;
    } rows[] = {
        {"HEAD /a b HTTP/1.1\r\n\r\n", true},          /* bad target */
        {"HEAD / HTTP/1.1\r\nX y\r\n\r\n", true},       /* bad field */
        {"\r\nHEAD / HTTP/1.1\r\nX y\r\n\r\n", true},   /* after an empty line */
        {"GET / HTTP/1.1\r\nX y\r\n\r\n", false},
        {"HE@D / HTTP/1.1\r\n\r\n", false},            /* no method read */
        {"head / HTTP/1.1\r\nX y\r\n\r\n", false},      /* methods are case-sensitive */
    };
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct h1_request req;
        struct h1_error err;
        assert_int_equal(h1_parse_request(rows[i].head, strlen(rows[i].head), &lim, &req, &err),
                         -1);
        if (err.head_method != rows[i].head_method)
            fail_msg("row %zu: head_method %d", i, err.head_method);
    }
}

/* A head refused or not yet complete keeps the field lines read whole before the one that
 * stopped it (a refused request's X-Request-Id, client.c): none when the request line did. */
static void test_fields_before_stop(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        int rc;
        size_t nfields;     /* the lines read whole */
        const char *last;   /* the last one's value, if any */
    } rows[] = {
        {"GET / HTTP/1.1\r\nA: 1\r\nX-Request-Id: r-1\r\nB c\r\n\r\n", -1, 2, "r-1"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-2\r\nB: \x01\r\n\r\n", -1, 1, "r-2"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-3\r\nB: b\n\r\n", -1, 1, "r-3"}, /* bare LF */
        {"GET / HTTP/1.1\r\nX-Request-Id: r-4\r\nB: b", -2, 1, "r-4"},    /* more to come */
        {"GET / HTTP/1.1\r\nX-Request-Id: r-5\r\nB: b\r", -2, 1, "r-5"},  /* its CR, no LF */
        {"GET / HTTP/1.1\r\nX-Request-Id: r-6", -2, 0, NULL},        /* the line not ended */
        {"GET / HTTP/1.1\r\nX-Request-Id: r-7\r\n: b\r\n\r\n", -1, 1, "r-7"},
        {"GET /a b HTTP/1.1\r\nX-Request-Id: r-8\r\n\r\n", -1, 0, NULL}, /* request line */
        {"GET / HTTP/2.0\r\nX-Request-Id: r-9\r\n\r\n", -1, 0, NULL},    /* 505 */
        {"GET / HTT", -2, 0, NULL},
        /* obs-fold: the line before it goes on, its value is not read whole */
        {"GET / HTTP/1.1\r\nA: 1\r\nX-Request-Id: r-10\r\n more\r\n\r\n", -1, 1, "1"},
        {"GET / HTTP/1.1\r\n more\r\n\r\n", -1, 0, NULL},
        /* stopped at the empty line's CR, at a name without its colon or with a byte no name
         * has, at a name not ended yet, at a line not begun: the lines before it are whole */
        {"GET / HTTP/1.1\r\nX-Request-Id: r-11\r\n\r", -2, 1, "r-11"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-12\r\n\rx", -1, 1, "r-12"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-13\r\nB\r\n\r\n", -1, 1, "r-13"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-14\r\nB(: b\r\n\r\n", -1, 1, "r-14"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-15\r\nB", -2, 1, "r-15"},
        {"GET / HTTP/1.1\r\nX-Request-Id: r-16\r\n", -2, 1, "r-16"},
    };
    struct h1_limits lim = {DEF_LINE, DEF_HEAD};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct h1_request req;
        struct h1_error err;
        req.nfields = 99; /* not what the parser leaves */
        int rc = h1_parse_request(rows[i].head, strlen(rows[i].head), &lim, &req, &err);
        if (rc != rows[i].rc || req.nfields != rows[i].nfields)
            fail_msg("row %zu: rc %d, %zu fields", i, rc, req.nfields);
        const struct h1_field *last = rows[i].last ? &req.fields[req.nfields - 1] : NULL;
        if (last && (last->value_len != strlen(rows[i].last) ||
                     memcmp(last->value, rows[i].last, last->value_len) != 0))
            fail_msg("row %zu: last field %.*s", i, (int)last->value_len, last->value);
    }
    /* past H1_MAX_FIELDS (431), and past max_head (431): the lines before it */
    size_t n;
    char *s = build_head("GET / HTTP/1.1\r\n", H1_MAX_FIELDS + 5, &n);
    struct h1_request req;
    struct h1_error err;
    assert_int_equal(h1_parse_request(s, n, &lim, &req, &err), -1);
    assert_int_equal(err.status, 431);
    assert_int_equal(req.nfields, H1_MAX_FIELDS);
    struct h1_limits small = {DEF_LINE, 60};
    assert_int_equal(h1_parse_request(s, n, &small, &req, &err), -1);
    assert_int_equal(err.status, 431);
    assert_int_equal(req.nfields, 5); /* 16 + 5 * 8 = 56 bytes of 60; the sixth passes it */
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_request_spans),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_error_names_head),
        cmocka_unit_test(test_field_count),
        cmocka_unit_test(test_fields_before_stop),
        cmocka_unit_test(test_response_table),
        cmocka_unit_test(test_response_limits),
        cmocka_unit_test(test_list_next),
        cmocka_unit_test(test_version_each_byte),
        cmocka_unit_test(test_known_tokens_each_byte),
        cmocka_unit_test(test_field_name_each_byte),
        cmocka_unit_test(test_field_value_each_byte),
        cmocka_unit_test(test_field_id_each_byte),
        cmocka_unit_test(test_skip_to),
        cmocka_unit_test(test_skip_to_exhaustive),
        cmocka_unit_test(test_field_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
