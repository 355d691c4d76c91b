/*
 * test_body_rate.c — client_body_min_rate with the real binary on loopback: a request body that
 * trickles ("slow POST": each byte well within client_body_timeout) is ended when its deadline
 * comes, client_body_rate_grace plus a second per client_body_min_rate bytes received, with 408
 * naming the rate (or its response cut short when that had started), its origin connection
 * closed, the access line, the error log and portico_request_bodies_too_slow_total saying so;
 * over HTTP/1.1 (Content-Length and chunked, plain and TLS, spliced or copied) and on an HTTP/2
 * stream, whose siblings go on. A body just above the rate, and a large fast one, are never cut.
 *
 * Times: a trickle sends to a schedule (piece k at k x TICK_MS from the head), so that its pace
 * is the schedule's whatever this process's pauses; the cut is the 408's first byte, found by
 * poll() on the connection. It must come no earlier than the deadline the bytes sent put it
 * at (less CUT_EARLY_MS, the schedule's first piece), and within CUT_LATE_MS after it (a loaded
 * machine's delay; the deadline itself is exact to the loop's clock).
 */
#include <poll.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

#define PY "/usr/bin/python3" /* Debian's, where python3-h2 is installed */
#define FRAMES "tests/integration/h2_frames.py"
#define TICK_MS 100       /* a trickle's pace: a piece every TICK_MS */
#define CUT_EARLY_MS 20   /* the cut may come this much before the predicted deadline */
#define CUT_LATE_MS 1000  /* ... and this much after it, at most */

/* The [proxy] lines of these tests: the rate and its grace, an admin port, the error log. */
#define RATE_CONF(rate, grace)                                                                     \
    "client_body_min_rate = " rate "\nclient_body_rate_grace = " grace "\n"                       \
    "admin_listen = 127.0.0.1:{{port:admin}}\nerror_log = {{dir}}/error.log\n"

/* When a body trickling `per_tick` bytes every TICK_MS (the first piece with the head) is
 * due, in ms from the head: grace, then a second per rate bytes, the bytes growing with it. */
static double due_ms(double grace_ms, double rate, double per_tick)
{
    double per_ms = per_tick / TICK_MS;
    return (grace_ms + per_tick * 1000.0 / rate) / (1.0 - per_ms * 1000.0 / rate);
}

/* Sends `piece` every TICK_MS (to a schedule from now) until the connection has a byte to read
 * (the answer) or max pieces went; the ms from the start to that byte, -1 when none came. */
static int64_t trickle(struct raw_conn *c, const char *piece, int max)
{
    int64_t start = tu_now_ms();
    for (int sent = 0; sent < max;) {
        int64_t next = start + (int64_t)sent * TICK_MS;
        if (tu_now_ms() >= next) {
            if (raw_send_str(c, piece) != 0)
                break; /* closed: the answer may be there */
            sent++;
            continue;
        }
        struct pollfd p = {.fd = raw_fd(c), .events = POLLIN};
        if (poll(&p, 1, (int)(next - tu_now_ms())) > 0)
            return tu_now_ms() - start;
    }
    struct pollfd p = {.fd = raw_fd(c), .events = POLLIN};
    return poll(&p, 1, PX_IO_MS) > 0 ? tu_now_ms() - start : -1;
}

/* trickle() over TLS, where the connection is readable for the session tickets too: the
 * answer's head is read (into hd) as the wait between pieces. */
static int64_t trickle_head(struct raw_conn *c, const char *piece, int max, struct raw_head *hd)
{
    int64_t start = tu_now_ms();
    for (int sent = 0; sent < max;) {
        int64_t next = start + (int64_t)sent * TICK_MS;
        if (tu_now_ms() >= next) {
            if (raw_send_str(c, piece) != 0)
                break;
            sent++;
            continue;
        }
        if (raw_read_one_head(c, hd, (int)(next - tu_now_ms())) == 0)
            return hd->at_ms - start;
    }
    return raw_read_one_head(c, hd, PX_IO_MS) == 0 ? hd->at_ms - start : -1;
}

/* Sends head, then `pieces` of piece every TICK_MS on a new connection: the body goes whole and
 * is answered 200 (never cut). */
static void trickle_answered(struct harness *h, const char *head, const char *piece, int pieces)
{
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, head), 0);
    assert_true(trickle(c, piece, pieces) >= 0); /* the answer once the last piece is in */
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
}

/* Fails unless the cut came at ms within [due - CUT_EARLY_MS, due + CUT_LATE_MS]. */
static void cut_in_time(const char *what, int64_t ms, double due)
{
    if (ms < 0 || (double)ms < due - CUT_EARLY_MS || (double)ms > due + CUT_LATE_MS)
        fail_msg("%s: cut after %lld ms, its deadline %.0f ms", what, (long long)ms, due);
}

/* Checks that a 408's "arrived at R B/s (N bytes in S.T s)" adds up: R is N over S.T (within
 * the tenth S.T is truncated to, and R's own rounding), and S.T is the time the client saw
 * (cut_ms from its head to the answer: the measure starts once connected, a little later, and
 * S.T drops the hundredths), when cut_ms >= 0. */
static unsigned long long rate_adds_up(const char *text, int64_t cut_ms)
{
    const char *p = strstr(text, "request body arrived at ");
    unsigned long long rate, bytes, secs, tenths;
    if (!p || sscanf(p, "request body arrived at %llu B/s (%llu bytes in %llu.%llu s)", &rate,
                     &bytes, &secs, &tenths) != 4 || tenths > 9)
        fail_msg("the 408 does not say the rate: %s", text);
    double span = (double)secs + (double)tenths / 10; /* truncated: the span is under +0.1 s */
    if (bytes == 0 || span == 0 || (double)rate > bytes / span + 1 ||
        (double)rate < bytes / (span + 0.1) - 1)
        fail_msg("%llu B/s is not %llu bytes in %.1f s: %s", rate, bytes, span, text);
    if (cut_ms >= 0 && (span * 1000 > (double)cut_ms || span * 1000 < (double)cut_ms - 300))
        fail_msg("%.1f s is not the %lld ms the client saw: %s", span, (long long)cut_ms, text);
    return bytes;
}

/* Reads the 408 of a body too slow and checks its one-line reason (its figures adding up, and
 * to cut_ms when >= 0) and close; the bytes it names. */
static unsigned long long want_408_at(struct raw_conn *c, const char *rate, int64_t cut_ms)
{
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 408);
    char want[96];
    snprintf(want, sizeof(want), "below client_body_min_rate = %s B/s", rate);
    if (!strstr(r.body, "request body arrived at ") || !strstr(r.body, want))
        fail_msg("the 408 does not say the rate: %s", r.body);
    unsigned long long bytes = rate_adds_up(r.body, cut_ms);
    assert_string_equal(raw_header(&r, "Connection"), "close");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    return bytes;
}

static void want_408(struct raw_conn *c, const char *rate)
{
    want_408_at(c, rate, -1);
}

static double admin_metric(struct harness *h, const char *name)
{
    return scrape_metric(harness_port(h, "admin"), name, PX_IO_MS);
}

/* ---- HTTP/1.1 ---- */

/* A Content-Length body at 10 B/s against client_body_min_rate = 100 (grace 500 ms): 408 when
 * the deadline its bytes put it at came (~567 ms), each byte well within client_body_timeout
 * (60 s, the default), which alone let it go on for as long as it trickled. The access line,
 * the error log and the counter say it; the origin connection, half a request on it, is closed
 * and the next request goes on a new one. */
static void test_trickle_cut_in_time(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin_pooled(fake_origin_port(o), RATE_CONF("100", "500ms"));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /slow HTTP/1.1\r\nHost: a\r\nX-Request-Id: "
                                     "rate-trickle\r\nContent-Length: 1000\r\n\r\n"), 0);
    int64_t ms = trickle(c, "x", 100);
    cut_in_time("content-length", ms, due_ms(500, 100, 1));
    want_408_at(c, "100", ms);
    raw_close(c);
    assert_true(scrape_wait(harness_port(h, "admin"), "portico_request_bodies_too_slow_total", 1,
                            PX_IO_MS) == 1);
    /* its rest, not read, is counted as a timeout's (as client_body_timeout's), not a close */
    assert_true(scrape_wait(harness_port(h, "admin"),
                            "portico_request_body_discards_total{protocol=\"http1\","
                            "result=\"timeout\"}", 1, PX_IO_MS) == 1);
    /* the next request: a new origin connection, the first one closed with the 408 */
    c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(fake_origin_connections(o), 2);
    assert_true(admin_metric(h, "portico_upstream_reused_total") == 0);
    assert_int_equal(harness_stop(h), 0); /* then the logs are complete */
    char *line = px_log_line_for_id(h, "rate-trickle");
    if (!strstr(line, " status=408 ") || !strstr(line, " phase=send ") ||
        !strstr(line, "below client_body_min_rate = 100 B/s") || !strstr(line, " limit_ms="))
        fail_msg("the 408's access line: %s", line);
    free(line);
    assert_true(harness_file_contains(h, "error.log", "request rate-trickle: request body "
                                                      "arrived at "));
    harness_free(h);
    fake_origin_stop(o);
}

/* The same in the chunked coding: a chunk of one byte every TICK_MS. */
static void test_trickle_chunked(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), RATE_CONF("100", "500ms"));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /slow HTTP/1.1\r\nHost: a\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n"), 0);
    int64_t ms = trickle(c, "1\r\nx\r\n", 100);
    cut_in_time("chunked", ms, due_ms(500, 100, 1));
    want_408(c, "100");
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
}

/* The same over TLS. */
static void test_trickle_tls(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    char extra[1024];
    snprintf(extra, sizeof(extra),
             RATE_CONF("100", "500ms") "listen = 127.0.0.1:{{port:tls}} tls\n"
                                       "tls_cert = %s\ntls_key = %s\n",
             certs->server_cert, certs->server_key);
    struct harness *h = px_start_origin(fake_origin_port(o), extra);
    struct raw_tls_opts tls = {.ca_file = certs->ca_cert, .require_valid = true};
    struct raw_conn *c = raw_connect_tls(harness_port(h, "tls"), &tls, PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "POST /slow HTTP/1.1\r\nHost: a\r\n"
                                     "Content-Length: 1000\r\n\r\n"), 0);
    struct raw_head hd = {0};
    int64_t ms = trickle_head(c, "x", 100, &hd);
    cut_in_time("tls", ms, due_ms(500, 100, 1));
    assert_int_equal(hd.status, 408);
    assert_string_equal(raw_head_field(&hd, "Connection"), "close");
    raw_head_free(&hd);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
}

/* A body that stops (5 bytes, then silence within client_body_timeout, 5 s here) is cut when
 * the deadline of its bytes comes (~550 ms), by the rate, with no byte after it to wake Portico. */
static void test_stopped_body_cut_at_deadline(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o),
                                        RATE_CONF("100", "500ms") "client_body_timeout = 5s\n");
    struct raw_conn *c = px_connect(h);
    int64_t start = tu_now_ms();
    assert_int_equal(raw_send_str(c, "POST /stop HTTP/1.1\r\nHost: a\r\n"
                                     "Content-Length: 1000\r\n\r\nxxxxx"), 0);
    struct pollfd p = {.fd = raw_fd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000 - 500), 1); /* before client_body_timeout's */
    int64_t ms = tu_now_ms() - start;
    cut_in_time("stopped", ms, 500 + 5 * 1000.0 / 100);
    want_408_at(c, "100", ms);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
}

/* A spliced body is counted: 64 KiB sent at once once the origin connection is up (spliced,
 * socket to socket), then a trickle. Under 64k B/s and a 500 ms grace, those bytes are due a
 * second later: the cut comes at ~1.5 s, not at 0.5 s as it would were they not counted. */
static void test_spliced_counted(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o),
                                        RATE_CONF("64k", "500ms") "splice = on\n");
    struct raw_conn *c = px_connect(h);
    int64_t head_at = tu_now_ms(); /* the measure starts a little later, once connected */
    assert_int_equal(raw_send_str(c, "POST /slow HTTP/1.1\r\nHost: a\r\n"
                                     "Content-Length: 300000\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_connections(o, 1, PX_IO_MS), 0);
    static char block[65536];
    memset(block, 's', sizeof(block));
    assert_int_equal(raw_send(c, block, sizeof(block)), 0);
    int64_t trickle_at = tu_now_ms();
    int64_t ms = trickle(c, "x", 100);
    /* 500 ms, 1 s for the block, a few ms for the trickle's bytes */
    cut_in_time("spliced", ms < 0 ? ms : ms + trickle_at - head_at, 500 + 1000 + 20);
    want_408_at(c, "65536", ms + trickle_at - head_at);
    raw_close(c);
    if (admin_metric(h, "portico_spliced_bytes_total") < 65536)
        fail_msg("the body was not spliced: %.0f bytes",
                 admin_metric(h, "portico_spliced_bytes_total"));
    px_stop(h);
    fake_origin_stop(o);
}

/* A body just above the rate (120 B/s against 100, sent to a schedule) is never cut: the
 * deadline, 1 s + 1.2 s per second, stays ahead of it; it goes whole and gets its 200. */
static void test_above_rate_not_cut(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), RATE_CONF("100", "1s"));
    /* 20 x 12 bytes over 2 s: all of it */
    trickle_answered(h, "POST /steady HTTP/1.1\r\nHost: a\r\nContent-Length: 240\r\n\r\n",
                     "xxxxxxxxxxxx", 20);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 0);
    px_stop(h);
    fake_origin_stop(o);
}

/* A large upload sent as fast as loopback takes it is never cut, spliced or copied: 32 MiB
 * against 8m B/s (due 4.1 s; it takes well under a second). */
static void test_fast_upload_not_cut(void **state)
{
    (void)state;
    static const char *const splice[] = {"splice = on\n", "splice = off\n"};
    static char body[32 << 20];
    memset(body, 'u', sizeof(body));
    for (size_t i = 0; i < ARRAY_SIZE(splice); i++) {
        struct fake_origin *o = fake_origin_start_kind(FO_OK);
        assert_non_null(o);
        char extra[512];
        snprintf(extra, sizeof(extra), "%s%s", RATE_CONF("8m", "100ms"), splice[i]);
        struct harness *h = px_start_origin(fake_origin_port(o), extra);
        struct raw_conn *c = px_connect(h);
        char head[128];
        snprintf(head, sizeof(head), "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
                 sizeof(body));
        raw_set_send_timeout(c, 20000);
        assert_int_equal(raw_send_str(c, head), 0);
        assert_int_equal(raw_send(c, body, sizeof(body)), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, 20000), 0);
        if (r.status != 200)
            fail_msg("%s: %d %s", splice[i], r.status, r.body);
        raw_response_free(&r);
        raw_close(c);
        assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 0);
        px_stop(h);
        fake_origin_stop(o);
    }
}

/* A body the origin does not take (FO_NO_READ: Portico's output to it stays full, and the
 * client's socket with it) is held back by the origin, not by its client: no 408 at the grace,
 * the measure starts again; the origin's send_timeout ends it (504), as without the rate. */
static void test_origin_held_not_cut(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_NO_READ);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o),
                                        RATE_CONF("100m", "200ms") "send_timeout = 1500ms\n");
    struct raw_conn *c = px_connect(h);
    static char body[8 << 20];
    memset(body, 'n', sizeof(body));
    char head[128];
    snprintf(head, sizeof(head), "POST /held HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
             sizeof(body));
    assert_int_equal(raw_send_str(c, head), 0);
    raw_set_send_timeout(c, 300); /* the rest stays unsent: the kernel's buffers are full */
    (void)raw_send(c, body, sizeof(body));
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    if (r.status != 504 || !strstr(r.body, "send_timeout"))
        fail_msg("wanted the origin's send_timeout: %d %s", r.status, r.body);
    raw_response_free(&r);
    raw_close(c);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 0);
    px_stop(h);
    fake_origin_stop(o);
}

/* The origin reads nothing for HOLD_MS (a small receive buffer: Portico's output to it stays
 * full), then reads all and never answers. */
#define HOLD_MS 1500
static const struct fo_step hold_then_read[] = {FO_WAIT(HOLD_MS), FO_HOLD(), FO_END()};

/* A body the origin held back past its deadline is measured again from there: once the origin
 * takes it, a client that then sends nothing more is cut by the rate (its deadline moved with
 * each one that came while held: grace 300 ms at 64m B/s), long before client_body_timeout
 * (5 s); and the wait costs no CPU (a deadline in the past, never moved, would come up at
 * every turn of the loop). */
static void test_origin_held_then_taken_cut(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = hold_then_read,
                                    .respond_before_body = true, .rcvbuf = 4096};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), RATE_CONF("64m", "300ms")
                                        "client_body_timeout = 5s\n");
    long cpu_before = px_cpu_ms(harness_pid(h));
    struct raw_conn *c = px_connect(h);
    static char body[4 << 20];
    memset(body, 'h', sizeof(body));
    char head[128];
    snprintf(head, sizeof(head), "POST /held HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
             sizeof(body) + 1000); /* its last 1000 bytes never come */
    int64_t start = tu_now_ms();
    assert_int_equal(raw_send_str(c, head), 0);
    raw_set_send_timeout(c, 20000);
    assert_int_equal(raw_send(c, body, sizeof(body)), 0); /* all in once the origin reads */
    struct pollfd p = {.fd = raw_fd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000 - 500), 1); /* before client_body_timeout's */
    int64_t ms = tu_now_ms() - start;
    if (ms < HOLD_MS)
        fail_msg("cut after %lld ms, while the origin held the body", (long long)ms);
    /* the bytes since the measure started again: not those taken before (Portico's output
     * and the origin's buffer held some), as if they had all come since */
    if (want_408_at(c, "67108864", -1) >= sizeof(body))
        fail_msg("the 408 counts the bytes from before the origin held them");
    raw_close(c);
    long cpu = px_cpu_ms(harness_pid(h)) - cpu_before;
    if (cpu > 500)
        fail_msg("Portico used %ld ms of CPU in %lld ms", cpu, (long long)ms);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 1);
    px_stop(h);
    fake_origin_stop(o);
}

/* The origin's head and 3 of its 10 body bytes, sent before it reads the request body. */
static const struct fo_step head_then_wait[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
    FO_END(),
};

/* A trickle whose response already started: cut short as at client_body_timeout (no 408 can
 * follow a 200's head), logged aborted with the rate as its detail. */
static void test_response_started_cut(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = head_then_wait,
                                    .respond_before_body = true};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), RATE_CONF("100", "500ms"));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: "
                                     "rate-started\r\nContent-Length: 1000\r\n\r\n"), 0);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 200);
    raw_head_free(&head);
    int64_t start = tu_now_ms();
    for (int i = 0; i < 100 && raw_send_str(c, "x") == 0; i++) {
        struct pollfd p = {.fd = raw_fd(c), .events = POLLIN};
        if (poll(&p, 1, TICK_MS) > 0) {
            char buf[64];
            if (recv(raw_fd(c), buf, sizeof(buf), 0) <= 0)
                break; /* the close (the 3 body bytes came before it) */
        }
    }
    if (tu_now_ms() - start > 10 * TICK_MS + CUT_LATE_MS)
        fail_msg("not cut: %lld ms", (long long)(tu_now_ms() - start));
    raw_close(c);
    assert_true(scrape_wait(harness_port(h, "admin"), "portico_request_bodies_too_slow_total", 1,
                            PX_IO_MS) == 1);
    assert_int_equal(harness_stop(h), 0);
    char *line = px_log_line_for_id(h, "rate-started");
    if (!strstr(line, " status=200 ") || !strstr(line, "aborted=after_head") ||
        !strstr(line, "below client_body_min_rate = 100 B/s"))
        fail_msg("the cut's access line: %s", line);
    free(line);
    harness_free(h);
    fake_origin_stop(o);
}

/* client_body_min_rate = 0 is off: a body at 10 B/s, for twice the grace, goes whole. */
static void test_rate_off_not_cut(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), RATE_CONF("0", "200ms"));
    /* 400 ms */
    trickle_answered(h, "POST /off HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", "x", 5);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 0);
    px_stop(h);
    fake_origin_stop(o);
}

/* A route overrides [proxy]'s rate and grace: 0 turns it off for a streaming route (a body at
 * 10 B/s past [proxy]'s deadline goes whole), and another route's grace moves its deadline
 * (its rate [proxy]'s). */
static void test_route_overrides_rate(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(RATE_CONF("100", "300ms"),
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[route stream]\nprefix = /stream\nupstream = u\n"
                                 "client_body_min_rate = 0\n"
                                 "[route rest]\nprefix = /\nupstream = u\n"
                                 "client_body_rate_grace = 500ms\n",
                                 fake_origin_port(o));
    /* 500 ms, past [proxy]'s ~344 ms */
    trickle_answered(h, "POST /stream HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n", "x",
                     6);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /other HTTP/1.1\r\nHost: a\r\n"
                                     "Content-Length: 1000\r\n\r\n"), 0);
    int64_t ms = trickle(c, "x", 100);
    cut_in_time("the route's grace", ms, due_ms(500, 100, 1));
    want_408_at(c, "100", ms);
    raw_close(c);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 1);
    px_stop(h);
    fake_origin_stop(o);
}

/* Expect: 100-continue relayed (expect = relay): the client owes its body from the origin's
 * 100, not before; a trickle after it is cut when its deadline, counted from the 100, came. */
static void test_expect_gate_counted_from_100(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK); /* sends 100, then reads the body */
    assert_non_null(o);
    struct harness *h = px_start(RATE_CONF("100", "500ms"),
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[route r]\nprefix = /\nupstream = u\nexpect = relay\n",
                                 fake_origin_port(o));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /gated HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                     "Content-Length: 1000\r\n\r\n"), 0);
    struct raw_head hd = {0};
    assert_int_equal(raw_read_one_head(c, &hd, PX_IO_MS), 0);
    assert_int_equal(hd.status, 100);
    raw_head_free(&hd);
    int64_t ms = trickle(c, "x", 100);
    cut_in_time("after 100 Continue", ms, due_ms(500, 100, 1));
    want_408_at(c, "100", ms);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
}

/* A fault rule that simulates an origin failure past sending (empty_response) reads the body
 * first, as the real origin would: a trickle is cut by the rate there too, with no origin
 * connection to hold it back. */
static void test_fault_body_cut(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(RATE_CONF("100", "500ms"),
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[fault f]\nprefix = /f\nfailure = empty_response\n",
                                 fake_origin_port(o));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /f HTTP/1.1\r\nHost: a\r\n"
                                     "Content-Length: 1000\r\n\r\n"), 0);
    int64_t ms = trickle(c, "x", 100);
    cut_in_time("simulated failure", ms, due_ms(500, 100, 1));
    want_408_at(c, "100", ms);
    raw_close(c);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 1);
    px_stop(h);
    fake_origin_stop(o);
}

/* The origin's scripts by request: the first (a GET) answered, the PUT that follows on the
 * same pooled connection left unread for RESEND_AFTER_MS and then reset, its resend (on a fresh
 * connection, its body's copy first) read and never answered. */
#define RESEND_AFTER_MS 1000
static const struct fo_step answer_ok[] = {FO_RESPOND_OK(), FO_END()};
static const struct fo_step wait_then_reset[] = {FO_WAIT(RESEND_AFTER_MS), FO_RST(), FO_END()};
static const struct fo_step read_no_answer[] = {FO_HOLD(), FO_END()};

static const struct fo_step *pick_resend(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return req->index == 0 ? answer_ok : req->index == 1 ? wait_then_reset : read_no_answer;
}

/* A body resent on a fresh connection (its pooled one reset while it came) keeps its measure:
 * its deadline is where its bytes since the first connection put it, not a new grace from the
 * resend. 200 bytes with the head earn 2 s at 100 B/s, then a trickle: due ~2.8 s from the
 * head, the resend at ~1 s (a new measure from there would cut it at ~1.6 s). */
static void test_resend_keeps_measure(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_resend,
                                    .respond_before_body = true};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin_pooled(fake_origin_port(o), RATE_CONF("100", "500ms"));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    char head[512];
    static char burst[201];
    memset(burst, 'b', 200);
    snprintf(head, sizeof(head), "PUT /resent HTTP/1.1\r\nHost: a\r\nX-Request-Id: rate-resent\r\n"
             "Content-Length: 1000\r\n\r\n%s", burst);
    assert_int_equal(raw_send_str(c, head), 0);
    int64_t ms = trickle(c, "x", 100);
    /* 201 bytes at once (the trickle's first with the burst), then 10 B/s of the 100 */
    double due = (500 + 201 * 1000.0 / 100) / (1.0 - 10.0 / 100);
    cut_in_time("resent", ms, due);
    want_408_at(c, "100", ms);
    raw_close(c);
    assert_int_equal(fake_origin_connections(o), 2); /* the pooled one, then the resend's */
    assert_true(admin_metric(h, "portico_upstream_retries_total") == 1);
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- HTTP/2 ---- */

/* Two uploads on one connection (h2_frames.py slow_body): the trickling stream gets 408 and
 * RST_STREAM (NO_ERROR, its rest not read) when its deadline came; the other, above the rate,
 * goes on to its 200 on the same connection, no GOAWAY. */
static void test_h2_stream_cut_sibling_completes(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    char extra[1024];
    snprintf(extra, sizeof(extra),
             RATE_CONF("100", "500ms") "listen = 127.0.0.1:{{port:tls}} tls\n"
                                       "tls_cert = %s\ntls_key = %s\n",
             certs->server_cert, certs->server_key);
    struct harness *h = px_start(extra, "[upstream sim]\norigin = sim\n");
    char port[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "tls"));
    const char *const argv[] = {PY, FRAMES, port, "slow_body", "500", "100", NULL};
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    static const char *const want = "slow_body s1=[408] s1_end=True s1_rst=0 cut_in_time=True "
                                    "s3=[200] s3_end=True s3_rst=None s3_sent=400 goaway=None";
    if (!tu_contains(r.out, want))
        fail_msg("wanted '%s' in:\n%s%s", want, r.out, r.err);
    tu_cmd_result_free(&r);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 1);
    px_stop(h);
}

/* 99 uploads to an origin that reads nothing beside one to an origin that reads, on one
 * connection, the client sending on each stream in turn as its windows allow (h2_frames.py
 * uploads): the streams late in its turn get nothing while the first take the connection's
 * window, and were cut as too slow (41 of 99 with a grace of 2 s) though the connection carried
 * megabytes a second. A body starved by its siblings is not slow while the connection keeps
 * client_body_min_rate for every body it carries: none is reset. */
static void test_h2_starved_stream_not_cut(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin *stall = fake_origin_start_kind(FO_NO_READ);
    struct fake_origin *reader = fake_origin_start_kind(FO_OK);
    assert_non_null(stall);
    assert_non_null(reader);
    char extra[1024];
    snprintf(extra, sizeof(extra),
             RATE_CONF("1k", "300ms") "listen = 127.0.0.1:{{port:tls}} tls\n"
                                      "tls_cert = %s\ntls_key = %s\n",
             certs->server_cert, certs->server_key);
    struct harness *h = px_start(extra,
                                 "[upstream stall]\norigin = 127.0.0.1:%u\n"
                                 "[upstream read]\norigin = 127.0.0.1:%u\n"
                                 "[route stall]\nprefix = /stall/\nupstream = stall\n"
                                 "[route read]\nprefix = /\nupstream = read\n",
                                 fake_origin_port(stall), fake_origin_port(reader));
    char port[16], pid[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "tls"));
    snprintf(pid, sizeof(pid), "%d", (int)harness_pid(h));
    const char *const argv[] = {PY, FRAMES, port, "uploads", pid, "norss", "99", "4194304", NULL};
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    if (!tu_contains(r.out, "stream=199 status=[200] end=True") ||
        !tu_contains(r.out, " resets=0 goaway=None"))
        fail_msg("wanted the read upload whole and no reset in:\n%s%s", r.out, r.err);
    tu_cmd_result_free(&r);
    assert_true(admin_metric(h, "portico_request_bodies_too_slow_total") == 0);
    px_stop(h);
    fake_origin_stop(stall);
    fake_origin_stop(reader);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickle_cut_in_time),
        cmocka_unit_test(test_trickle_chunked),
        cmocka_unit_test(test_trickle_tls),
        cmocka_unit_test(test_stopped_body_cut_at_deadline),
        cmocka_unit_test(test_spliced_counted),
        cmocka_unit_test(test_above_rate_not_cut),
        cmocka_unit_test(test_fast_upload_not_cut),
        cmocka_unit_test(test_origin_held_not_cut),
        cmocka_unit_test(test_origin_held_then_taken_cut),
        cmocka_unit_test(test_response_started_cut),
        cmocka_unit_test(test_rate_off_not_cut),
        cmocka_unit_test(test_route_overrides_rate),
        cmocka_unit_test(test_expect_gate_counted_from_100),
        cmocka_unit_test(test_fault_body_cut),
        cmocka_unit_test(test_resend_keeps_measure),
        cmocka_unit_test(test_h2_stream_cut_sibling_completes),
        cmocka_unit_test(test_h2_starved_stream_not_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
