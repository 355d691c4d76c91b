/*
 * test_request.c — request checks before routing: target forms, dot segments, loops, request
 * ids, idempotent methods.
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
    const char *path;    /* forwarded target */
    size_t route_len;    /* what routes see */
};

static const struct target_row target_rows[] = {
    {"origin-form", "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL, "/a/b?x=1", 4},
    {"absolute-form: the authority replaces Host",
     "GET http://Api.Example:8080/v1?q HTTP/1.1\r\nHost: h\r\n\r\n", 0, "Api.Example:8080", "/v1?q",
     3},
    {"absolute-form without a path is /", "GET https://a.example HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     "a.example", "/", 1},
    {"absolute-form without a host", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL,
     0},
    {"OPTIONS * is the server as a whole: routed as /", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     NULL, "*", 1},
    {"* is only for OPTIONS", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, 0},
    {"CONNECT is not tunnelled", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501, NULL, NULL,
     0},
    {"dot-dot segment", "GET /api/../admin HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, 0},
    {"encoded dot-dot segment", "GET /api/%2e%2E/admin HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL,
     NULL, 0},
    {"dot segment at the end", "GET /api/. HTTP/1.1\r\nHost: h\r\n\r\n", 400, NULL, NULL, 0},
    {"dots inside a name are fine", "GET /a..b/.well-known/x HTTP/1.1\r\nHost: h\r\n\r\n", 0, NULL,
     "/a..b/.well-known/x", 19},
    {"dot segments in the query do not matter", "GET /a?p=/../x HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     NULL, "/a?p=/../x", 2},
};

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
        if (row->host) {
            assert_non_null(t.host);
            assert_int_equal(t.host_len, strlen(row->host));
            assert_memory_equal(t.host, row->host, t.host_len);
        } else {
            assert_null(t.host);
        }
        assert_int_equal(t.path_len, strlen(row->path));
        assert_memory_equal(t.path, row->path, t.path_len);
        if (strcmp(row->path, "*") == 0)
            assert_memory_equal(t.route, "/", 1); /* the server as a whole is routed as "/" */
        else
            assert_ptr_equal(t.route, t.path);
        if (t.route_len != row->route_len)
            fail_msg("%s: route_len %zu, want %zu", row->why, t.route_len, row->route_len);
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
        cmocka_unit_test(test_portico_hops),
        cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
