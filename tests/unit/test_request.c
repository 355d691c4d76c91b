/*
 * test_request.c — request checks before routing: target forms, absolute-form authorities held to
 * the Host rules, dot segments, loops, request ids, idempotent methods.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/request.h"
#include "portico/util.h"

static void parse(const char *text, struct h1_request *req)
{
    static const struct h1_limits lim = {8192, 16384};
    struct h1_error err;
    assert_true(h1_parse_request(text, strlen(text), &lim, req, &err) > 0);
}

struct target_row {
    const char *why;
    const char *request;
    int status;          /* 0: accepted */
    const char *host;    /* absolute-form authority, or NULL */
    const char *path;    /* forwarded target as request_target gives it */
    const char *route;   /* what routes see */
};

static const struct target_row target_rows[] = {
    {"origin-form", "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL, "/a/b?x=1", "/a/b"},
    {"absolute-form: the authority replaces Host",
     "GET http://Api.Example:8080/v1?q HTTP/1.1\r\nHost: h\r\n\r\n", 0, "Api.Example:8080", "/v1?q",
     "/v1"},
    {"absolute-form without a path is /", "GET https://a.example HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     "a.example", "/", "/"},
    {"absolute-form query without a path: the authority ends at ?, the path is / (issue 13)",
     "GET http://other.example?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 0, "other.example", "?x=1",
     "/"},
    {"the same over https, with a port", "GET HTTPS://a.example:8443?p=/../x HTTP/1.1\r\nHost: "
     "h\r\n\r\n", 0, "a.example:8443", "?p=/../x", "/"},
    {"absolute-form IPv6 literal", "GET http://[::1]:8080/x HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     "[::1]:8080", "/x", "/x"},
    {"absolute-form without a host", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"absolute-form with only a query", "GET http://?x HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"userinfo in the authority (RFC 9110 4.2.4), as in a Host field",
     "GET http://user@evil.example/vec HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, NULL},
    {"user and password in the authority",
     "GET http://u:p@a.example/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, NULL},
    {"userinfo before a query", "GET http://u@a.example?x HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"non-numeric port in the authority", "GET http://a.example:x/ HTTP/1.1\r\nHost: h\r\n\r\n",
     400, NULL, NULL, NULL},
    {"fragment in an absolute-form target", "GET http://a.example#f HTTP/1.1\r\nHost: h\r\n\r\n",
     400, NULL, NULL, NULL},
    {"unclosed IP literal in the authority", "GET http://[::1/x HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"OPTIONS * is the server as a whole: routed as /", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     NULL, "*", "/"},
    {"OPTIONS in absolute-form without path or query is the server as a whole (RFC 9112 3.2.4)",
     "OPTIONS http://a.example HTTP/1.1\r\nHost: h\r\n\r\n", 0, "a.example", "*", "/"},
    {"OPTIONS with a path is about that resource",
     "OPTIONS http://a.example/ HTTP/1.1\r\nHost: h\r\n\r\n", 0, "a.example", "/", "/"},
    {"* is only for OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, NULL},
    {"* with lowercase options: an extension method (RFC 9110 9.1)",
     "options * HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, NULL},
    {"CONNECT is not tunnelled", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501, NULL, NULL,
     NULL},
    /* Whatever its target's form: Portico answers a CONNECT 2xx without its body (RFC 9112 6.3
     * item 2), so a forwarded one left the origin's Content-Length with no body behind it. */
    {"CONNECT in absolute-form is not tunnelled either",
     "CONNECT http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 501, NULL, NULL, NULL},
    {"CONNECT in origin-form is not tunnelled either", "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n",
     501, NULL, NULL, NULL},
    {"an authority-form target for another method is not an absolute path",
     "connect h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 400, NULL, NULL, NULL},
    {"dot-dot segment", "GET /api/../admin HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, NULL},
    {"encoded dot-dot segment", "GET /api/%2e%2E/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"dot segment at the end", "GET /api/. HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, NULL},
    {"dot segment in an absolute-form path", "GET http://h/a/../b HTTP/1.1\r\nHost: h\r\n\r\n",
     400, NULL, NULL, NULL},
    {"dots inside a name are fine", "GET /a..b/.well-known/x HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL,
     "/a..b/.well-known/x", "/a..b/.well-known/x"},
    {"dot segments in the query do not matter", "GET /a?p=/../x HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     NULL, "/a?p=/../x", "/a"},
    /* an origin that decodes %2f (or %5c) before it normalises would see /api/../admin */
    {"dot-dot before an encoded slash", "GET /api/..%2Fadmin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"dot-dot between encoded slashes", "GET /api%2f..%2fadmin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"dot-dot before an encoded backslash", "GET /api/%2e.%5cadmin HTTP/1.1\r\nHost: h\r\n\r\n",
     400, NULL, NULL, NULL},
    {"an encoded slash alone is fine", "GET /a%2Fb/c..d%2f.e HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL,
     "/a%2Fb/c..d%2f.e", "/a%2Fb/c..d%2f.e"},
    /* WHATWG URL parsers (Node, Deno) and IIS take a backslash for a slash: /admin there */
    {"dot-dot before a backslash", "GET /api/..\\admin HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"dot-dot between backslashes", "GET /api\\..\\admin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"a backslash alone is fine", "GET /a\\b/c.. HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL,
     "/a\\b/c..", "/a\\b/c.."},
    /* an origin that strips the fragment sees /api/.., which is / to a WHATWG URL parser */
    {"dot-dot before a fragment", "GET /api/..#/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"a fragment is never sent", "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL,
     NULL},
    {"a fragment after the query", "GET /a?x=1#f HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
    {"a fragment in an absolute-form path", "GET http://h/a/..#x HTTP/1.1\r\nHost: h\r\n\r\n",
     400, NULL, NULL, NULL},
    /* Tomcat and other servlet containers strip path parameters: /api/..;/admin is /admin */
    {"dot-dot with a path parameter", "GET /api/..;/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"dot with a path parameter", "GET /api/.;x=1/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"a path parameter alone is fine", "GET /a;jsessionid=1/b..;c HTTP/1.1\r\nHost: h\r\n\r\n",
     0, NULL, "/a;jsessionid=1/b..;c", "/a;jsessionid=1/b..;c"},
    /* a C origin that decodes the path reads /api/..%00/x as /api/.. and goes up */
    {"an encoded NUL after dots", "GET /api/..%00/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400,
     NULL, NULL, NULL},
    {"an encoded NUL at the end", "GET /a%00 HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL,
     NULL},
    {"%00 in the query is the origin's", "GET /a%2500?q=%00 HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     NULL, "/a%2500?q=%00", "/a%2500"},
    {"an encoded NUL after a lone '%'", "GET /a%%00 HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, NULL},
};

static void assert_span(const char *why, const char *what, const char *p, size_t n,
                        const char *want)
{
    if (p == NULL || n != strlen(want) || memcmp(p, want, n) != 0)
        fail_msg("%s: %s '%.*s', want '%s'", why, what, p ? (int)n : 0, p ? p : "", want);
}

static void test_targets(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(target_rows); i++) {
        const struct target_row *row = &target_rows[i];
        struct h1_request req;
        struct req_target t;
        const char *why = NULL;
        parse(row->request, &req);
        int status = request_target(&req, &t, &why);
        if (status != row->status)
            fail_msg("%s: status %d, want %d", row->why, status, row->status);
        if (status) {
            assert_non_null(why);
            continue;
        }
        if (row->host)
            assert_span(row->why, "host", t.host, t.host_len, row->host);
        else
            assert_null(t.host);
        assert_span(row->why, "path", t.path, t.path_len, row->path);
        assert_span(row->why, "route", t.route, t.route_len, row->route);
    }
}

/* One validator for Host fields and absolute-form authorities: each value is accepted or
 * refused the same way in both places (issue 13: userinfo reached the origin through the
 * absolute form while the same value in Host was refused). */
static void test_authority_like_host(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        bool valid;
    } rows[] = {
        {"a.example", true},
        {"a.example:8080", true},
        {"A.Example.", true},
        {"127.0.0.1:80", true},
        {"[::1]", true},
        {"[::1]:8443", true},
        {"ex%41mple", true},
        {"a.example:", true},        /* empty port: allowed by RFC 3986 */
        {"user@evil.example", false}, /* userinfo (RFC 9110 4.2.4) */
        {"u:p@a.example", false},
        {"@a.example", false},
        {"a.example:x", false},
        {"a:1:2", false},
        {"a%4", false},
        {"[::1", false},
        {"[]", false},
        {"[::1]x", false},
        {"a\"b", false},
        {"a{b}", false},
        {"a.example#f", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char text[256];
        struct h1_request req;
        struct h1_info info;
        struct h1_error err;
        snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", rows[i].value);
        parse(text, &req);
        bool host_ok = h1_request_info(&req, &info, &err) == 0;
        snprintf(text, sizeof(text), "GET http://%s/x HTTP/1.1\r\nHost: h\r\n\r\n",
                 rows[i].value);
        parse(text, &req);
        struct req_target t;
        const char *why = NULL;
        int status = request_target(&req, &t, &why);
        if (host_ok != rows[i].valid || (status == 0) != rows[i].valid)
            fail_msg("%s: Host field %s, absolute-form %d, want %s", rows[i].value,
                     host_ok ? "accepted" : "refused", status,
                     rows[i].valid ? "accepted" : "refused");
        if (!rows[i].valid)
            assert_int_equal(status, 400);
        assert_int_equal(h1_host_valid(rows[i].value, strlen(rows[i].value)), rows[i].valid);
    }
}

static void test_portico_hops(void **state)
{
    (void)state;
    struct h1_request req;
    parse("GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred, 1.1 portico\r\nVia: 1.1 Portico, 1.1 "
          "other\r\n\r\n",
          &req);
    assert_int_equal(request_portico_hops(&req), 2);
    parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &req);
    assert_int_equal(request_portico_hops(&req), 0);
}

/* The refusals before routing, each for its reason, and nothing for a request that is fine. */
/* Max-Forwards counts on OPTIONS and TRACE only; a value that is not 1*DIGIT counts as none,
 * and so do two fields. */
static void test_max_forwards(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        long want;
    } rows[] = {
        {"OPTIONS * HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n", 0},
        {"TRACE / HTTP/1.1\r\nHost: h\r\nmax-forwards: 007\r\n\r\n", 7},
        /* two fields are a list ("3, 0", RFC 9110 5.3): no number, whatever they say */
        {"TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 3\r\nMax-Forwards: 0\r\n\r\n", -1},
        {"TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nMax-Forwards: 3\r\n\r\n", -1},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 2\r\nmax-forwards: 2\r\n\r\n", -1},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 99999999999999999999999\r\n\r\n",
         REQUEST_MAX_FORWARDS_CAP},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n", -1},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards:\r\n\r\n", -1},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 1, 2\r\n\r\n", -1},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: -1\r\n\r\n", -1},
        {"OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: +1\r\n\r\n", -1},
        {"GET / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n", -1},
        {"options / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n", -1}, /* not OPTIONS */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct h1_request req;
        parse(rows[i].head, &req);
        if (request_max_forwards(&req) != rows[i].want)
            fail_msg("%s: %ld, want %ld", rows[i].head, request_max_forwards(&req),
                     rows[i].want);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        int status;
        const char *why;
    } rows[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 0, "nothing to refuse"},
        {"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
         0, "the one expectation Portico meets"},
        {"PUT / HTTP/1.1\r\nHost: h\r\nExpect: telepathy\r\nContent-Length: 1\r\n\r\n",
         417, "any other expectation"},
        {"PUT / HTTP/1.0\r\nExpect: telepathy\r\nContent-Length: 1\r\n\r\n", 0,
         "HTTP/1.0: Expect is ignored (RFC 9110 10.1.1)"},
        {"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", 413,
         "a body known too large from its Content-Length"},
        {"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n", 0,
         "exactly the limit"},
        {"GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 portico, 1.1 portico, 1.1 portico, "
         "1.1 portico, 1.1 portico, 1.1 portico, 1.1 portico, 1.1 portico\r\n\r\n",
         508, "eight hops of ours: a loop"},
        {"GET / HTTP/1.1\r\nHost: h\r\nVia: 1.1 portico, 1.1 portico, 1.1 portico, "
         "1.1 portico, 1.1 portico, 1.1 portico, 1.1 portico\r\n\r\n",
         0, "seven are a long chain, not yet a loop"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct h1_request req;
        struct h1_info info;
        struct h1_error err;
        const char *why = NULL;
        parse(rows[i].head, &req);
        assert_int_equal(h1_request_info(&req, &info, &err), 0);
        int status = request_refusal(&req, &info, 100, &why);
        if (status != rows[i].status)
            fail_msg("%s: %d, want %d", rows[i].why, status, rows[i].status);
        assert_true(status == 0 || (why && *why));
    }
}

static void test_request_ids(void **state)
{
    (void)state;
    assert_true(request_id_valid("abc-123_x.y:z", 13));
    assert_false(request_id_valid("", 0));
    assert_false(request_id_valid("a b", 3));          /* space */
    assert_false(request_id_valid("a\"b", 3));         /* would break a header or a log line */
    char long_id[41];
    memset(long_id, 'a', sizeof(long_id));
    assert_true(request_id_valid(long_id, 40));
    assert_false(request_id_valid(long_id, 41));
}

/* RFC 9110 9.2.2: only idempotent methods may be sent twice after a stale pooled connection. */
static void test_idempotent(void **state)
{
    (void)state;
    static const struct {
        const char *method;
        bool idempotent;
    } rows[] = {
        {"GET", true},
        {"HEAD", true},
        {"OPTIONS", true},
        {"TRACE", true},
        {"PUT", true},
        {"DELETE", true},
        {"POST", false},
        {"PATCH", false},
        {"CONNECT", false},
        {"get", false},      /* an extension method: we cannot know what it does */
        {"LOCK", false},     /* WebDAV: not idempotent */
        {"PROPFIND", false}, /* idempotent by its RFC, but not one Portico knows */
        {"GETS", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        enum http_method m = h1_method_of(rows[i].method, strlen(rows[i].method));
        if (request_idempotent(m) != rows[i].idempotent)
            fail_msg("%s: idempotent %d", rows[i].method, !rows[i].idempotent);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_authority_like_host),
        cmocka_unit_test(test_portico_hops),
        cmocka_unit_test(test_max_forwards),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
