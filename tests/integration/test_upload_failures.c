/*
 * test_upload_failures.c — request bodies (POST, PUT) meeting origins that fail or close, on the
 * real `portico`, with a raw client that sends a second request on the same connection:
 *
 *   1. a body read whole by Portico before the origin failed (refused connect, closed without
 *      an answer, failed TLS handshake) is answered with the gateway status and the connection
 *      stays open for the next request (Content-Length and chunked); the rest of a Content-Length
 *      body still coming is read and dropped first (the connection closes when it does not come
 *      within client_body_timeout); a chunked one not all sent yet still closes it, as its rest
 *      would be read as the next request
 *   2. the same for the answers Portico makes itself to such a request: 404 (no route), a fault
 *      rule's status answer (a request it refuses as bad, 417 or 508, still closes: test_parsing)
 *   (1 and 2 counted by how the rest ended in portico_request_body_discards_total, the bytes
 *   dropped after the answer in portico_request_body_discarded_bytes_total, and the answer's
 *   access line says body_unread=yes)
 *   3. a client that sends its body slowly does not make total_timeout blame the origin: the
 *      timer does not expire while the exchange waits on the client's body, and runs anew once
 *      the body is in (an origin silent after it still gets its 504); nor does send_timeout,
 *      which limits the origin's silence, not the whole upload
 *
 * Portico runs with these routes: /dead/ (and /dead-ignore/, expect = ignore) to the failing
 * origin of the case, /ok/ to an origin that answers 200 and records what it got (the next
 * request must arrive intact, not after a body), /fault/ whose fault rule answers 503; anything
 * else has no route.
 * No sleeps: reads are bounded, the origins' counters are waited for.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define IO_MS 5000 /* bound of reads that must succeed */

static struct {
    struct fake_origin *ok;
    struct fake_origin *dead;
    struct harness *h;
    struct raw_conn *c;
} fx;

static int teardown(void **state)
{
    (void)state;
    raw_close(fx.c);
    /* a graceful stop, so that valgrind and the exit status see the end of each run */
    int stopped = fx.h ? harness_stop(fx.h) : 0;
    harness_free(fx.h);
    fake_origin_stop(fx.dead);
    fake_origin_stop(fx.ok);
    memset(&fx, 0, sizeof(fx));
    return stopped == 0 ? 0 : -1;
}

/* Portico with /dead/ to fx.dead (no retries: one failure is the answer) and / to fx.ok, and an
 * admin port; upstream_extra goes to the dead upstream's section. */
static void start_with(const char *proxy_extra, enum fo_kind dead, const char *upstream_extra)
{
    char extra[256];
    snprintf(extra, sizeof(extra), "admin_listen = 127.0.0.1:{{port:admin}}\n%s",
             proxy_extra ? proxy_extra : "");
    fx.ok = fake_origin_start_kind(FO_OK);
    fx.dead = fake_origin_start_kind(dead);
    assert_non_null(fx.ok);
    assert_non_null(fx.dead);
    fx.h = px_start(extra,
                    "[upstream dead]\norigin = 127.0.0.1:%u\nretries = 0\n%s"
                    "[upstream ok]\norigin = 127.0.0.1:%u\n"
                    "[route dead]\nprefix = /dead/\nupstream = dead\n"
                    "[route dead-ignore]\nprefix = /dead-ignore/\nupstream = dead\n"
                    "expect = ignore\n"
                    "[route ok]\nprefix = /ok/\nupstream = ok\n"
                    "[route fault]\nprefix = /fault/\nupstream = ok\n"
                    "[fault answer]\nprefix = /fault/\nstatus = 503\n",
                    fake_origin_port(fx.dead), upstream_extra ? upstream_extra : "",
                    fake_origin_port(fx.ok));
    fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
    assert_non_null(fx.c);
}

static void start(enum fo_kind dead, const char *upstream_extra)
{
    start_with(NULL, dead, upstream_extra);
}

/* Sends request, reads its answer: status expected, and whether it says Connection: close. */
static void expect_answer(const char *request, int status, bool closes)
{
    assert_int_equal(raw_send_str(fx.c, request), 0);
    struct raw_response r = {0};
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, status);
    const char *conn = raw_header(&r, "Connection");
    if (closes)
        assert_true(conn && strcmp(conn, "close") == 0);
    else
        assert_true(!conn || strcmp(conn, "close") != 0);
    raw_response_free(&r);
}

/* The connection serves a next request: 200 from fx.ok, which got it intact. */
static void expect_next_served(void)
{
    expect_answer("GET /ok/next HTTP/1.1\r\nHost: t\r\n\r\n", 200, false);
    assert_int_equal(fake_origin_wait_requests(fx.ok, 1, IO_MS), 0);
    char *head = fake_origin_request_head(fx.ok, 0);
    assert_non_null(head);
    assert_true(strncmp(head, "GET /ok/next HTTP/1.1\r\n", 23) == 0);
    free(head);
}

/* An HTTP/1.1 series of the discard metrics: portico_request_body_discards_total{...,result=
 * `result`}, or with result NULL the bytes, once it reached want (a rest the client cut is
 * counted once Portico read its close), else as it is after IO_MS. */
static double discards(const char *result, double want)
{
    char series[128];
    if (result)
        snprintf(series, sizeof(series),
                 "portico_request_body_discards_total{protocol=\"http1\",result=\"%s\"}", result);
    else
        snprintf(series, sizeof(series),
                 "portico_request_body_discarded_bytes_total{protocol=\"http1\"}");
    return scrape_wait(harness_port(fx.h, "admin"), series, want, IO_MS);
}

/* Every HTTP/1.1 result counted so far (reset is HTTP/2's only), then the bytes. */
static void expect_discards(double read, double closed, double timeout, double client_closed,
                            double bytes)
{
    assert_true(discards("read", read) == read);
    assert_true(discards("closed", closed) == closed);
    assert_true(discards("timeout", timeout) == timeout);
    assert_true(discards("client_closed", client_closed) == client_closed);
    assert_true(discards("reset", 0) == 0); /* HTTP/2's only */
    assert_true(discards(NULL, bytes) == bytes);
}

/* Fails unless the access line with needle says body_unread=yes, or says nothing of it. */
static void expect_line_unread(const char *needle, bool unread)
{
    char *line = px_log_line(fx.h, needle);
    if ((strstr(line, " body_unread=yes") != NULL) != unread)
        fail_msg("body_unread%s wanted in: %s", unread ? "=yes" : " absent", line);
    free(line);
}

static const char post_length[] = "POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
                                   "0123456789";
static const char post_chunked[] = "POST /dead/x HTTP/1.1\r\nHost: t\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n"
                                   "a\r\n0123456789\r\n0\r\n\r\n";

/* 1. Refused connect: 502, and the connection goes on (the whole body had come with the head). */
static void test_refused_keeps_connection(void **state)
{
    (void)state;
    start(FO_REFUSE, NULL);
    expect_answer(post_length, 502, false);
    expect_answer(post_chunked, 502, false);
    expect_next_served();
}

/* ... and after a failed TLS handshake (the origin answers its ClientHello with garbage). */
static void test_tls_failure_keeps_connection(void **state)
{
    (void)state;
    start(FO_TLS_GARBAGE, "tls = on\n");
    expect_answer(post_length, 502, false);
    expect_answer(post_chunked, 502, false);
    expect_next_served();
}

/* ... and when the origin took the request and closed without a byte of answer (the body had
 * gone to it: this one held before the fix too). */
static void test_closed_keeps_connection(void **state)
{
    (void)state;
    start(FO_CLOSE_EMPTY, NULL);
    expect_answer(post_length, 502, false);
    expect_answer(post_chunked, 502, false);
    expect_next_served();
}

/* ... and when the body was not all there when the answer went: a Content-Length rest is read
 * and dropped when it comes, then the next request is served. */
static void test_partial_body_discarded(void **state)
{
    (void)state;
    start(FO_REFUSE, NULL);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n012345678", 502,
                  false);
    assert_int_equal(raw_send_str(fx.c, "9"), 0); /* the last byte of the body, after the answer */
    expect_next_served();
    /* read, its 1 byte: the line had its 9 (bytes_in), written before the rest came */
    expect_discards(1, 0, 0, 0, 1);
    expect_line_unread("bytes_in=9 ", true);
    expect_line_unread("target=\"/ok/next\"", false);
}

/* ... a client that closes instead of sending the rest: client_closed. */
static void test_partial_body_client_closes(void **state)
{
    (void)state;
    start(FO_REFUSE, NULL);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n012345678", 502,
                  false);
    assert_int_equal(raw_send_str(fx.c, "9"), 0); /* the last byte of the body, after the answer */
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n01234", 502,
                  false);
    assert_int_equal(raw_send_str(fx.c, "56789"), 0);
    raw_close(fx.c);
    fx.c = NULL;
    expect_discards(1, 0, 0, 1, 1 + 5);
}

/* ... the same while a reload's drain waits for it (the old worker's connection): the client
 * closed it, not the stop (main: closed, as at stop_now's close). */
static void test_partial_body_client_closes_draining(void **state)
{
    (void)state;
    start_with("client_body_timeout = 10s", FO_REFUSE, NULL);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n012345678", 502,
                  false);
    assert_int_equal(harness_signal(fx.h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(fx.h, "is live (generation 2", IO_MS), 0);
    raw_close(fx.c);
    fx.c = NULL;
    expect_discards(0, 0, 0, 1, 0);
}

/* ... a rest that never comes: closed after client_body_timeout. A chunked rest cannot be
 * dropped without reading it as a body: closed at once. */
static void test_partial_body_closes(void **state)
{
    (void)state;
    start_with("client_body_timeout = 300ms", FO_REFUSE, NULL);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n012345678", 502,
                  false);
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    assert_true(tu_now_ms() - t0 >= 250); /* client_body_timeout, not at once */
    expect_discards(0, 0, 1, 0, 0);
    raw_close(fx.c);
    fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
    assert_non_null(fx.c);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "a\r\n01234", 502, true);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    /* A client that asked for 100 Continue and got none (expect = ignore) may take the answer
     * as the end of its request and send its next one: no body of it is awaited. */
    raw_close(fx.c);
    fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
    assert_non_null(fx.c);
    expect_answer("POST /dead-ignore/x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  "Content-Length: 10\r\n\r\n", 502, true);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    expect_discards(0, 2, 1, 0, 0); /* both closed on their rest, unread */
}

/* A rest past DISCARD_MAX (1 MiB), and a body past max_body_size (413), are not read: the
 * connection closes on them (lingering, so that the client reads its answer), counted closed. */
static void test_partial_body_past_max_closes(void **state)
{
    (void)state;
    start_with("max_body_size = 4m", FO_REFUSE, NULL);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234", 502,
                  false);
    assert_int_equal(raw_send_str(fx.c, "56789"), 0); /* read: 5 bytes */
    expect_answer("POST /ok/up HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n01234", 413,
                  true);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    raw_close(fx.c);
    fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
    assert_non_null(fx.c);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n01234",
                  502, true);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    expect_discards(1, 2, 0, 0, 5);
    expect_line_unread("status=413", true);
}

/* Answers that end the exchange with its body half read say so on their line and count how its
 * rest ended, as any answer before the body's end does: the 408 of a body that stopped coming
 * (client_body_timeout: timeout, as HTTP/2's), a chunked body past max_body_size (413 mid-body:
 * closed). Main had neither: each set the body read ("nothing more will be read") first. */
static void test_cut_body_answers_counted(void **state)
{
    (void)state;
    start_with("client_body_timeout = 300ms\nmax_body_size = 1k", FO_SILENT, NULL);
    expect_answer("POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234", 408,
                  true);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    expect_discards(0, 0, 1, 0, 0);
    expect_line_unread("status=408", true);
    raw_close(fx.c);
    fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
    assert_non_null(fx.c);
    char chunk[1100];
    memset(chunk, 'c', sizeof(chunk));
    char request[1300];
    snprintf(request, sizeof(request),
             "POST /dead/y HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n%.*s",
             (int)sizeof(chunk), chunk);
    expect_answer(request, 413, true);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    expect_discards(0, 1, 1, 0, 0);
    expect_line_unread("status=413", true);
}

/* 2. Portico's own answers: no route, a fault's status. */
static void test_own_answers_keep_connection(void **state)
{
    (void)state;
    start(FO_REFUSE, NULL);
    expect_answer("POST /none HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789", 404,
                  false);
    expect_answer("POST /fault/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "a\r\n0123456789\r\n0\r\n\r\n", 503, false);
    expect_next_served();
    expect_discards(0, 0, 0, 0, 0); /* each body was all in: read with its answer, no rest */
    expect_line_unread("status=404", false);
}

/* 1 and 2 have a rest only for an answer that went whole: a head refused for its framing (400,
 * its body of no known length), a request a fault rule drops (444, nothing sent), a client that
 * leaves before the answer (499) end with the connection, their lines without body_unread and
 * nothing counted (the lines of unanswered requests said body_unread, and a 400 or 444 counted a
 * rest closed, when body_unread left out the bodiless check or the outcome check). */
static void test_unanswered_no_rest(void **state)
{
    (void)state;
    static const struct {
        const char *request;
        int status;       /* the answer's, 0: none (the connection closes) */
        bool client_goes; /* the client closes after its request (499) */
        const char *line; /* its access line's */
    } rows[] = {
        {"POST /ok/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n01234", 400, false,
         "status=400"},
        {"POST /ok/drop HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234", 0, false,
         "status=444"},
        {"POST /dead/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234", 0, true,
         "status=499"},
    };
    start(FO_SILENT, "[fault drop]\nprefix = /ok/drop\ndrop = on\n");
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        if (rows[i].status) {
            expect_answer(rows[i].request, rows[i].status, true);
        } else {
            assert_int_equal(raw_send_str(fx.c, rows[i].request), 0);
        }
        if (!rows[i].client_goes)
            assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
        raw_close(fx.c);
        fx.c = NULL; /* (teardown closes fx.c) */
        expect_line_unread(rows[i].line, false);
        fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
        assert_non_null(fx.c);
    }
    expect_next_served();
    expect_discards(0, 0, 0, 0, 0);
}

/* 3. total_timeout = 300ms; the body takes ~600 ms to come (the client's own pauses). */
#define TOTAL_MS 300

static void send_trickled(const char *path)
{
    char head[128];
    snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n", path);
    assert_int_equal(raw_send_str(fx.c, head), 0);
    assert_int_equal(raw_send_slowly(fx.c, "0123", 4, 1, TOTAL_MS / 2), 0);
}

static void test_slow_upload_not_total_timeout(void **state)
{
    (void)state;
    char extra[64];
    snprintf(extra, sizeof(extra), "total_timeout = %dms", TOTAL_MS);
    start_with(extra, FO_SILENT, NULL);
    /* the origin answers once the body is in: 200, however long the client took */
    send_trickled("/ok/up");
    struct raw_response r = {0};
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    /* an origin that never answers: total_timeout after the body, blamed on it */
    int64_t t0 = tu_now_ms();
    send_trickled("/dead/up");
    int64_t body_end = raw_last_send_ms(fx.c);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, 504);
    assert_string_equal(raw_header(&r, "Portico-Error"), "total_timeout");
    assert_true(body_end - t0 >= TOTAL_MS); /* the client's pauses outlasted the timer */
    raw_response_free(&r);
}

/* send_timeout limits how long the origin takes no request bytes, not the whole send: a body
 * the client trickles over twice send_timeout, each byte taken at once, is no send_timeout.
 * Armed as the send phase's timer, it cut the upload short with 504 send_timeout. */
static void test_slow_upload_not_send_timeout(void **state)
{
    (void)state;
    char extra[64];
    snprintf(extra, sizeof(extra), "send_timeout = %dms", TOTAL_MS);
    start_with(extra, FO_SILENT, NULL);
    int64_t t0 = tu_now_ms();
    send_trickled("/ok/up");
    int64_t body_end = raw_last_send_ms(fx.c);
    struct raw_response r = {0};
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_true(body_end - t0 >= TOTAL_MS); /* the upload outlasted send_timeout */
    raw_response_free(&r);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_refused_keeps_connection, teardown),
        cmocka_unit_test_teardown(test_tls_failure_keeps_connection, teardown),
        cmocka_unit_test_teardown(test_closed_keeps_connection, teardown),
        cmocka_unit_test_teardown(test_partial_body_discarded, teardown),
        cmocka_unit_test_teardown(test_partial_body_client_closes, teardown),
        cmocka_unit_test_teardown(test_partial_body_client_closes_draining, teardown),
        cmocka_unit_test_teardown(test_partial_body_closes, teardown),
        cmocka_unit_test_teardown(test_partial_body_past_max_closes, teardown),
        cmocka_unit_test_teardown(test_cut_body_answers_counted, teardown),
        cmocka_unit_test_teardown(test_own_answers_keep_connection, teardown),
        cmocka_unit_test_teardown(test_unanswered_no_rest, teardown),
        cmocka_unit_test_teardown(test_slow_upload_not_total_timeout, teardown),
        cmocka_unit_test_teardown(test_slow_upload_not_send_timeout, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
