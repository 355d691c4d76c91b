/*
 * test_admin.c — the admin endpoint (admin_listen): /healthz and /metrics over keep-alive,
 * HEAD, 404 and 405 (with Allow), and the connection rules of HTTP/1.1: Connection: close, HTTP/1.0, and a
 * request with a body (answered, then the connection closed rather than the body parsed as the
 * next request); requests it refuses are not client traffic either.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static struct harness *start_admin(void)
{
    return px_start("admin_listen = 127.0.0.1:{{port:admin}}", "[upstream u]\norigin = sim\n");
}

/* Sends req on c and reads one response; its status. Every answer carries a Date (RFC 9110
 * 6.6.1: an origin server with a clock must send one in 2xx, 3xx and 4xx responses). */
static int ask(struct raw_conn *c, const char *req, struct raw_response *r)
{
    assert_int_equal(raw_send_str(c, req), 0);
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("no response to %.40s: %s", req, r->error);
    if (!raw_header(r, "Date"))
        fail_msg("no Date in the answer %d to %.40s", r->status, req);
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
    /* the absolute-form, which a server must accept (RFC 9112 3.2.2): it was 404 */
    assert_int_equal(ask(c, "GET http://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "ok\n");
    raw_response_free(&r);
    /* an HTTP/1.0 client asking to keep the connection is told it is kept, as the proxy
     * listeners tell it: without the field, HTTP/1.0 means the server closes */
    assert_int_equal(ask(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r), 200);
    const char *kept = raw_header(&r, "Connection");
    if (!kept || strcasecmp(kept, "keep-alive") != 0)
        fail_msg("HTTP/1.0 keep-alive: Connection \"%s\"", kept ? kept : "(none)");
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

enum refused_send {
    SEND_REQUEST,                     /* the row's request */
    SEND_BIG_HEAD,                    /* a head over max_header_size */
    SEND_NOTHING,                     /* wait for client_header_timeout */
};

struct refused_row {
    const char *why;
    enum refused_send send;
    const char *request;
    int status;
    const char *series;               /* portico_responses_total series that must stay absent */
    const char *logged;               /* what its access-log line would hold */
};

static const struct refused_row refused_rows[] = {
    {"a field name with a space", SEND_REQUEST, "GET /metrics HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400,
     "portico_responses_total{code=\"400\",class=\"4xx\"}", "status=400"},
    {"a transfer coding other than chunked", SEND_REQUEST,
     "POST /status HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "portico_responses_total{code=\"501\",class=\"5xx\"}", "status=501"},
    {"a head over max_header_size", SEND_BIG_HEAD, NULL, 431,
     "portico_responses_total{code=\"431\",class=\"4xx\"}", "status=431"},
    /* a TCP health check of the admin port that connects and waits */
    {"no request within client_header_timeout", SEND_NOTHING, NULL, 408,
     "portico_responses_total{code=\"408\",class=\"4xx\"}", "status=408"},
    /* the fault API reads a body only with a Content-Length, of at most 16 KiB */
    {"a fault API body without Content-Length", SEND_REQUEST,
     "POST /faults HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411,
     "portico_responses_total{code=\"411\",class=\"4xx\"}", "status=411"},
    {"a fault API body over 16 KiB", SEND_REQUEST,
     "POST /faults HTTP/1.1\r\nHost: a\r\nContent-Length: 16385\r\n\r\n", 413,
     "portico_responses_total{code=\"413\",class=\"4xx\"}", "status=413"},
};

/* Requests the admin listener refuses (bad heads, its client_header_timeout, fault API bodies it
 * does not read) are answered, but they are no more client traffic than those it serves: no
 * client counter moves, no access-log line is written (README: "Requests and connections to the
 * admin listener are not counted"); and they say nosniff, as every admin answer does. */
static void test_admin_refusals_not_counted(void **state)
{
    (void)state;
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n"
                                 "client_header_timeout = 300ms",
                                 "[upstream u]\norigin = sim\n");
    uint16_t admin = harness_port(h, "admin");
    char big[20000];
    int n = snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(big + n, 'a', sizeof(big) - (size_t)n - 5);
    memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5); /* over the default 16k, NUL included */

    for (size_t i = 0; i < ARRAY_SIZE(refused_rows); i++) {
        const struct refused_row *row = &refused_rows[i];
        struct raw_conn *c = px_connect_port(admin);
        struct raw_response r;
        if (row->send != SEND_NOTHING)
            assert_int_equal(raw_send_str(c, row->send == SEND_BIG_HEAD ? big : row->request), 0);
        if (raw_read_response(c, &r, PX_IO_MS) != 0)
            fail_msg("%s: no response: %s", row->why, r.error);
        if (r.status != row->status)
            fail_msg("%s: status %d, expected %d", row->why, r.status, row->status);
        if (!raw_header(&r, "Date"))
            fail_msg("%s: no Date field", row->why);
        /* README: every admin answer says nosniff, its refusals too */
        const char *nosniff = raw_header(&r, "X-Content-Type-Options");
        if (!nosniff || strcmp(nosniff, "nosniff") != 0)
            fail_msg("%s: X-Content-Type-Options \"%s\"", row->why, nosniff ? nosniff : "(none)");
        raw_response_free(&r);
        raw_close(c);
    }
    char *text = scrape_metrics(admin, PX_IO_MS);
    assert_non_null(text);
    for (size_t i = 0; i < ARRAY_SIZE(refused_rows); i++)
        if (scrape_value(text, refused_rows[i].series) >= 0)
            fail_msg("%s: counted as client traffic: %s %.0f", refused_rows[i].why,
                     refused_rows[i].series, scrape_value(text, refused_rows[i].series));
    free(text);
    assert_int_equal(harness_stop(h), 0); /* the access log is complete once stopped */
    for (size_t i = 0; i < ARRAY_SIZE(refused_rows); i++)
        if (harness_file_contains(h, "access.log", refused_rows[i].logged))
            fail_msg("%s: logged as client traffic (%s)", refused_rows[i].why,
                     refused_rows[i].logged);
    harness_free(h);
}

struct web_row {
    const char *why;
    const char *request;
    int status;
};

/* In order on one listener: a rule a page tries to add, then one curl adds, then a page tries to
 * delete it. */
static const struct web_row web_rows[] = {
    /* what a hidden, self-submitting <form> of any site sends */
    {"a form of another site", "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     "Origin: http://evil.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
     "Content-Length: 29\r\n\r\nname=csrf&prefix=/&status=503", 403},
    {"curl (no Origin)", "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 30\r\n\r\n"
     "name=mine&prefix=/z&status=503", 201},
    /* DNS rebinding makes the page same-origin; the browser still says where it comes from */
    {"a rebound page", "DELETE /faults/mine HTTP/1.1\r\nHost: evil.test\r\n"
     "Origin: http://evil.test\r\n\r\n", 403},
    {"the rule curl added is still there", "GET /faults/mine HTTP/1.1\r\nHost: a\r\n\r\n", 200},
    {"the page's rule was never added", "GET /faults/csrf HTTP/1.1\r\nHost: a\r\n\r\n", 404},
};

/* Without admin_token, the fault API changes what every client gets, and browsers let any web
 * page send POST and DELETE to a loopback address: a request that carries Origin (every
 * browser POST or DELETE does) changes nothing. */
static void test_admin_refuses_web_pages(void **state)
{
    (void)state;
    struct harness *h = start_admin();
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    for (size_t i = 0; i < ARRAY_SIZE(web_rows); i++) {
        struct raw_response r;
        int status = ask(c, web_rows[i].request, &r);
        if (status != web_rows[i].status)
            fail_msg("%s: status %d, expected %d: %s", web_rows[i].why, status,
                     web_rows[i].status, r.body);
        raw_response_free(&r);
    }
    raw_close(c);
    px_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_keep_alive),
        cmocka_unit_test(test_admin_closes),
        cmocka_unit_test(test_admin_refusals_not_counted),
        cmocka_unit_test(test_admin_refuses_web_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
