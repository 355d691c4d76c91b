/*
 * test_admin.c — the admin endpoint (admin_listen): /healthz and /metrics over keep-alive,
 * HEAD, 404 and 405 (with Allow), and the connection rules of HTTP/1.1: Connection: close, HTTP/1.0, and a
 * request with a body (answered, then the connection closed rather than the body parsed as the
 * next request).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static struct harness *start_admin(void)
{
    return px_start("admin_listen = 127.0.0.1:{{port:admin}}", "[upstream u]\norigin = sim\n");
}

/* Sends req on c and reads one response; its status. */
static int ask(struct raw_conn *c, const char *req, struct raw_response *r)
{
    assert_int_equal(raw_send_str(c, req), 0);
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("no response to %.40s: %s", req, r->error);
    return r->status;
}

/* Several requests on one connection, each answered in full. */
static void test_admin_keep_alive(void **state)
{
    (void)state;
    struct harness *h = start_admin();
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    struct raw_response r;

    assert_int_equal(ask(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "ok\n");
    assert_null(raw_header(&r, "Connection"));
    raw_response_free(&r);
    assert_int_equal(ask(c, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &r), 200);
    assert_true(tu_contains(r.body, "# TYPE portico_requests_total counter"));
    raw_response_free(&r);
    assert_int_equal(raw_send_str(c, "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(raw_read_head_response(c, &r, PX_IO_MS), 0); /* no body follows */
    assert_int_equal(r.status, 200);
    assert_string_equal(raw_header(&r, "Content-Length"), "3");
    raw_response_free(&r);
    assert_int_equal(ask(c, "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n", &r), 404);
    raw_response_free(&r);
    assert_int_equal(ask(c, "DELETE /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &r), 405);
    assert_string_equal(r.head.reason, "Method Not Allowed");
    assert_string_equal(raw_header(&r, "Allow"), "GET, HEAD"); /* RFC 9110 15.5.6 */
    raw_response_free(&r);
    /* still open after the errors */
    assert_int_equal(ask(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &r), 200);
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
}

struct closing_row {
    const char *why;
    const char *request;
    int status;
};

static const struct closing_row closing_rows[] = {
    {"Connection: close", "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200},
    {"HTTP/1.0 without keep-alive", "GET /healthz HTTP/1.0\r\n\r\n", 200},
    /* the body would otherwise be read as the next request head */
    {"a body", "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 25\r\n\r\n"
               "GET /healthz HTTP/1.1\r\n\r\n", 405},
    {"a chunked body", "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n0\r\n\r\n", 405},
};

/* The connection closes after the response, which says so. */
static void test_admin_closes(void **state)
{
    (void)state;
    struct harness *h = start_admin();

    for (size_t i = 0; i < ARRAY_SIZE(closing_rows); i++) {
        const struct closing_row *row = &closing_rows[i];
        struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
        struct raw_response r;

        if (ask(c, row->request, &r) != row->status)
            fail_msg("%s: status %d, expected %d", row->why, r.status, row->status);
        const char *conn = raw_header(&r, "Connection");
        if (conn == NULL || strcmp(conn, "close") != 0)
            fail_msg("%s: Connection \"%s\"", row->why, conn ? conn : "(none)");
        raw_response_free(&r);
        if (raw_wait_closed(c, PX_IO_MS) != 1)
            fail_msg("%s: still open", row->why);
        raw_close(c);
    }
    px_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_keep_alive),
        cmocka_unit_test(test_admin_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
