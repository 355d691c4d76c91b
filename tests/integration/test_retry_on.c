/*
 * test_retry_on.c — `retry_on` of an upstream (README, Retries) with the real binary and fake
 * origins on loopback: an origin's final status of the list sends an idempotent request to the
 * next origin, its head and body dropped with its connection (Content-Length, chunked, HEAD, a
 * 1xx before it, an HTTP/2 client's stream); what stays relayed (a POST, a body over 64 KiB,
 * retries = 0, every origin answering so: the last answer); a network failure of the retry is
 * the last attempt's outcome; listed statuses count toward max_fails; the refusals of a bad
 * list, FILE:LINE. Every row here failed on the binary before retry_on (an unknown key).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include <linux/sockios.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

#define ADMIN "admin_listen = 127.0.0.1:{{port:admin}}\n"

/* A request on a fresh connection (Connection: close): method, path, optional body (len bytes,
 * Content-Length) and extra head lines; the status, the response in *r. */
static int ask(struct harness *h, const char *method, const char *path, const char *extra,
               const char *body, size_t len, struct raw_response *r)
{
    size_t cap = len + 1024;
    char *req = malloc(cap);
    assert_non_null(req);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s", method,
                     path, extra ? extra : "");
    if (body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(req + n, body, len);
        n += (int)len;
    }
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send(c, req, (size_t)n), 0);
    free(req);
    int rc = strcmp(method, "HEAD") == 0 ? raw_read_head_response(c, r, PX_IO_MS)
                                         : raw_read_response(c, r, PX_IO_MS);
    if (rc != 0)
        fail_msg("%s %s: no response: %s", method, path, r->error);
    raw_close(c);
    return r->status;
}

/* The value of a plain counter on the admin endpoint. */
static double counter(struct harness *h, const char *name)
{
    return scrape_metric(harness_port(h, "admin"), name, PX_IO_MS);
}

/* ---- the first origin's status is retried ---- */

static const struct fo_step a503_length[] = {
    FO_RESPOND(503, "X-From: a\r\n", "A-SAYS-DEPLOYING\n", FO_LENGTH), FO_END()};
static const struct fo_step a503_chunked[] = {
    FO_RESPOND(503, "X-From: a\r\n", "A-SAYS-DEPLOYING\n", FO_CHUNKED), FO_END()};
static const struct fo_step a502_close[] = {
    FO_RESPOND(502, "X-From: a\r\n", "A-SAYS-DYING\n", FO_CLOSE_DELIMITED), FO_CLOSE(),
    FO_END()};
static const struct fo_step a103_then_503[] = {
    FO_INTERIM(103, "Link: </a.css>; rel=preload\r\n"),
    FO_RESPOND(503, "X-From: a\r\n", "A-SAYS-DEPLOYING\n", FO_LENGTH), FO_END()};
static const struct fo_step a503_head[] = {
    FO_RESPOND(503, "X-From: a\r\nContent-Length: 17\r\n", NULL, FO_NO_FRAMING), FO_END()};

/* Origin A answers a status of retry_on, B 200: the client gets B's answer, nothing of A's (its
 * X-From, its body), the access log counts 2 attempts with B the origin, the error log says
 * why, the counters count the move, and A's connection is closed, not leaked: Portico's
 * descriptors are back to what they were (keepalive = 0: B's closes too). Before, retry_on was
 * an unknown key. */
static void test_status_retried(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const struct fo_step *a;
        const char *method;
        const char *extra; /* head lines */
        const char *body;
        const char *list;
        int status; /* A's */
    } rows[] = {
        {"503 with a Content-Length body", a503_length, "GET", NULL, NULL, "502 503 504", 503},
        {"503 with a chunked body", a503_chunked, "GET", NULL, NULL, "503", 503},
        {"502 with a body to the close", a502_close, "GET", NULL, NULL, "502", 502},
        {"HEAD: a 503 without a body", a503_head, "HEAD", NULL, NULL, "503", 503},
        {"a 103 relayed before the 503: the client has a 1xx, not the final head", a103_then_503,
         "GET", NULL, NULL, "503", 503},
        {"PUT with a body held whole: it goes again", a503_length, "PUT", NULL, "put-body", "503",
         503},
        {"PUT with a body, a 103 before the 503: the body still goes again", a103_then_503, "PUT",
         NULL, "put-body", "503", 503},
        {"DELETE, 429 listed", NULL, "DELETE", NULL, NULL, "429 503", 429},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin_opts ao = {.kind = rows[i].a ? FO_SCRIPT : FO_OK,
                                      .script = rows[i].a,
                                      .status = rows[i].status,
                                      .body = "A-SAYS-NO\n",
                                      .extra_headers = "X-From: a\r\n"};
        struct fake_origin *a = px_origin_start(&ao);
        struct fake_origin_opts bo = {.kind = FO_ECHO, .extra_headers = "X-From: b\r\n"};
        struct fake_origin *b = px_origin_start(&bo);
        struct harness *h = px_start(ADMIN,
                                     "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "keepalive = 0\nretry_on = %s\n",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].list);
        struct px_fds base = px_count_fds(harness_pid(h));
        struct raw_response r;
        size_t blen = rows[i].body ? strlen(rows[i].body) : 0;
        int status = ask(h, rows[i].method, "/deploying", rows[i].extra, rows[i].body, blen, &r);
        if (status != 200)
            fail_msg("%s: status %d, want B's 200", rows[i].why, status);
        const char *from = raw_header(&r, "X-From");
        if (!from || strcmp(from, "b") != 0)
            fail_msg("%s: X-From %s, want b", rows[i].why, from ? from : "(none)");
        if (tu_contains(r.body, "A-SAYS"))
            fail_msg("%s: A's body reached the client: %s", rows[i].why, r.body);
        if (rows[i].body && (!r.body || !tu_contains(r.body, rows[i].body)))
            fail_msg("%s: B did not get the body again: %s", rows[i].why, r.body ? r.body : "");
        if (rows[i].a == a103_then_503 && r.ninterim != 1)
            fail_msg("%s: %zu interim responses, want A's 103", rows[i].why, r.ninterim);
        raw_response_free(&r);
        assert_int_equal(fake_origin_requests(a), 1);
        assert_int_equal(fake_origin_requests(b), 1);
        char want[160];
        snprintf(want, sizeof(want), "attempt 1 on 127.0.0.1:%u answered %d; retrying on "
                 "127.0.0.1:%u", fake_origin_port(a), rows[i].status, fake_origin_port(b));
        if (harness_wait_log(h, want, PX_IO_MS) != 0)
            fail_msg("%s: no \"%s\" in the error log", rows[i].why, want);
        char origin[64];
        snprintf(origin, sizeof(origin), "origin=127.0.0.1:%u", fake_origin_port(b));
        px_log_line_has(h, "/deploying", "status=200", "upstream_status=200", origin,
                        "attempts=2", NULL);
        assert_true(counter(h, "portico_upstream_status_retries_total") == 1);
        assert_true(counter(h, "portico_upstream_next_origin_total") == 1);
        struct px_fds now = px_wait_fds(harness_pid(h), base);
        if (now.all != base.all)
            fail_msg("%s: %d descriptors, %d before: A's connection left open?", rows[i].why,
                     now.all, base.all);
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* ---- what stays relayed ---- */

/* A status of retry_on that may not be retried is relayed as it is, body and all: a POST (not
 * idempotent: the origin may have acted on it), a PUT whose body went over 64 KiB (no copy
 * kept), retries = 0, a status not listed, and every origin answering it (the last answer, B's,
 * with its body, as nginx passes the last). Then nothing counts as a move. */
static void test_status_relayed(void **state)
{
    (void)state;
    static char big[70 * 1024];
    memset(big, 'x', sizeof(big));
    static const struct {
        const char *why;
        const char *method;
        const char *body;
        size_t len;
        const char *config;
        int b_status; /* 0: B answers 200 */
        const char *want_from;
        int want;
        const char *detail; /* the access log's, after "answered 503; not retried: " */
    } rows[] = {
        {"POST: not idempotent", "POST", "form=1", 6, "retry_on = 503", 0, "a", 503,
         "its method is not idempotent"},
        {"POST without a body: still not idempotent", "POST", NULL, 0, "retry_on = 503", 0, "a",
         503, "its method is not idempotent"},
        {"PUT of 70 KiB: its body was not kept", "PUT", big, sizeof(big), "retry_on = 503", 0,
         "a", 503, "its body was streamed (over 64 KiB)"},
        {"retries = 0", "GET", NULL, 0, "retry_on = 503\nretries = 0", 0, "a", 503,
         "retries = 0"},
        {"503 not listed", "GET", NULL, 0, "retry_on = 502 504", 0, "a", 503, NULL},
        {"no retry_on: today's relay", "GET", NULL, 0, "", 0, "a", 503, NULL},
        {"both origins 503: the last one's answer", "GET", NULL, 0, "retry_on = 503", 503, "b",
         503, "no retries left"},
        {"both origins 503, retries = 2: every origin was tried", "GET", NULL, 0,
         "retry_on = 503\nretries = 2", 503, "b", 503, "every origin was tried"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin_opts ao = {.kind = FO_ECHO, .status = 503,
                                      .extra_headers = "X-From: a\r\n"};
        struct fake_origin_opts bo = {.kind = FO_ECHO, .status = rows[i].b_status,
                                      .extra_headers = "X-From: b\r\n"};
        struct fake_origin *a = px_origin_start(&ao);
        struct fake_origin *b = px_origin_start(&bo);
        struct harness *h = px_start(ADMIN,
                                     "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "%s\n",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].config);
        struct raw_response r;
        int status = ask(h, rows[i].method, "/relayed", NULL, rows[i].body, rows[i].len, &r);
        if (status != rows[i].want)
            fail_msg("%s: status %d, want %d", rows[i].why, status, rows[i].want);
        const char *from = raw_header(&r, "X-From");
        if (!from || strcmp(from, rows[i].want_from) != 0)
            fail_msg("%s: X-From %s, want %s", rows[i].why, from ? from : "(none)",
                     rows[i].want_from);
        /* the echo's body is the request's: whole, the relayed answer's own */
        if (rows[i].body && (r.body_len != rows[i].len || memcmp(r.body, rows[i].body,
                                                                 rows[i].len) != 0))
            fail_msg("%s: the relayed body is not the answer's (%zu bytes)", rows[i].why,
                     r.body_len);
        raw_response_free(&r);
        char *line = px_log_line(h, "/relayed");
        if (rows[i].detail) {
            char want[200];
            snprintf(want, sizeof(want), "detail=\"127.0.0.1:%u answered 503; not retried: %s\"",
                     fake_origin_port(strcmp(rows[i].want_from, "b") == 0 ? b : a),
                     rows[i].detail);
            if (!tu_contains(line, want))
                fail_msg("%s: no %s in: %s", rows[i].why, want, line);
        } else if (tu_contains(line, "detail=")) {
            fail_msg("%s: a detail: %s", rows[i].why, line);
        }
        free(line);
        bool moved = strcmp(rows[i].want_from, "b") == 0;
        assert_int_equal(fake_origin_requests(b), moved ? 1 : 0);
        assert_true(counter(h, "portico_upstream_status_retries_total") == (moved ? 1 : 0));
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* The retry itself fails with a network failure: the client gets that, the last attempt's
 * outcome (B refused: 502 connect_refused), as nginx answers for its last try; and the retry
 * runs within the request's total_timeout (B silent: 504 total_timeout, not first_byte's). */
static void test_retry_fails(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        enum fo_kind b;
        const char *config;
        int want;
        const char *failure;
    } rows[] = {
        {"B refuses the connect", FO_REFUSE, "", 502, "connect_refused"},
        {"B is silent past total_timeout", FO_SILENT, "total_timeout = 300ms\n", 504,
         "total_timeout"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin_opts ao = {.kind = FO_OK, .status = 503, .body = "A-SAYS-NO\n"};
        struct fake_origin *a = px_origin_start(&ao);
        struct fake_origin *b = px_origin(rows[i].b);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "retry_on = 503\n%s",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].config);
        struct raw_response r;
        int status = ask(h, "GET", "/fails", NULL, NULL, 0, &r);
        if (status != rows[i].want)
            fail_msg("%s: status %d, want %d", rows[i].why, status, rows[i].want);
        assert_string_equal(raw_header(&r, "Portico-Error"), rows[i].failure);
        raw_response_free(&r);
        px_log_line_has(h, "/fails", "attempts=2", rows[i].failure, NULL);
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* A's 503 came after 300 ms: the log's first_byte counts every attempt's wait, A's with it; and
 * a retry that meets a network failure goes on to the next origin while retries last (B
 * refusing, C answering: 3 attempts), as the first attempt's failure would. */
static const struct fo_step a503_slow[] = {
    FO_WAIT(300), FO_RESPOND(503, "X-From: a\r\n", "A-SAYS-NO\n", FO_LENGTH), FO_END()};

static void test_retry_goes_on(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        enum fo_kind b;
        bool c; /* a third origin, answering */
        const char *attempts;
    } rows[] = {
        {"B answers", FO_OK, false, "attempts=2"},
        {"B refuses, C answers", FO_REFUSE, true, "attempts=3"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin_opts ao = {.kind = FO_SCRIPT, .script = a503_slow};
        struct fake_origin *a = px_origin_start(&ao);
        struct fake_origin *b = px_origin(rows[i].b);
        struct fake_origin *c = rows[i].c ? px_origin(FO_OK) : NULL;
        char third[48] = "";
        if (c)
            snprintf(third, sizeof(third), "origin = 127.0.0.1:%u\n", fake_origin_port(c));
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "%sretry_on = 503\nretries = 2\n",
                                     fake_origin_port(a), fake_origin_port(b), third);
        struct raw_response r;
        int status = ask(h, "GET", "/goes-on", NULL, NULL, 0, &r);
        raw_response_free(&r);
        if (status != 200)
            fail_msg("%s: status %d, want 200", rows[i].why, status);
        char *line = px_log_line(h, "/goes-on");
        const char *fb = strstr(line, "first_byte:");
        if (!strstr(line, rows[i].attempts) || !fb || strtod(fb + 11, NULL) < 290)
            fail_msg("%s: want %s and A's 300 ms in first_byte: %s", rows[i].why,
                     rows[i].attempts, line);
        free(line);
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
        if (c)
            fake_origin_stop(c);
    }
}

/* ---- passive health ---- */

/* Listed statuses count toward max_fails, as network failures do, and once each: A answers 503
 * twice (max_fails = 2), both requests retried on B, and A is marked down (logged, the gauge 0);
 * the next requests go to B alone. A 404 of the list is retried but does not count (the origin
 * is up: it has no such page): three of them leave A up. A alone, its statuses are relayed (no
 * other origin) and judged the same: its 503s mark it down, its 404s do not. */
static void test_status_counts(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        int status;
        const char *list;
        int requests;
        double up_after; /* A's portico_upstream_origin_up */
        bool alone;      /* A the only origin: its 503 relayed, Portico's 503 once it is down */
    } rows[] = {
        {"503 counts: down after 2", 503, "503", 2, 0, false},
        {"404 does not count", 404, "404 503", 3, 1, false},
        {"503 relayed, A alone: counts all the same", 503, "503", 2, 0, true},
        {"404 relayed, A alone: does not count either", 404, "404", 3, 1, true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin_opts ao = {.kind = FO_OK, .status = rows[i].status};
        struct fake_origin *a = px_origin_start(&ao);
        struct fake_origin *b = px_origin(FO_OK);
        char second[48] = "";
        if (!rows[i].alone)
            snprintf(second, sizeof(second), "origin = 127.0.0.1:%u\n", fake_origin_port(b));
        struct harness *h = px_start(ADMIN,
                                     "[upstream u]\norigin = 127.0.0.1:%u\n%s"
                                     "retry_on = %s\nmax_fails = 2\nfail_window = 60s\n"
                                     "down_time = 60s\n",
                                     fake_origin_port(a), second, rows[i].list);
        int want = rows[i].alone ? rows[i].status : 200;
        /* round robin: each request starts on A while A is up (a retry takes no turn) */
        unsigned sent = 0;
        while (fake_origin_requests(a) < (unsigned)rows[i].requests && sent < 10) {
            struct raw_response r;
            assert_int_equal(ask(h, "GET", "/count", NULL, NULL, 0, &r), want);
            raw_response_free(&r);
            sent++;
        }
        assert_int_equal(fake_origin_requests(a), rows[i].requests);
        char series[160], down[160];
        snprintf(series, sizeof(series),
                 "portico_upstream_origin_up{upstream=\"u\",origin=\"127.0.0.1:%u\"}",
                 fake_origin_port(a));
        /* the mark-down line names the answer that tipped it */
        snprintf(down, sizeof(down), "origin 127.0.0.1:%u answered %d (retry_on); marked down",
                 fake_origin_port(a), rows[i].status);
        if (counter(h, series) != rows[i].up_after)
            fail_msg("%s: %s is %g", rows[i].why, series, counter(h, series));
        if (rows[i].up_after == 0) {
            assert_int_equal(harness_wait_log(h, down, PX_IO_MS), 0);
            for (int k = 0; k < 4; k++) { /* A is skipped now */
                struct raw_response r;
                assert_int_equal(ask(h, "GET", "/after", NULL, NULL, 0, &r), want);
                raw_response_free(&r);
            }
            assert_int_equal(fake_origin_requests(a), rows[i].requests);
        } else {
            assert_false(harness_log_contains(h, down)); /* A alone: a warning says "marked down" */
        }
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* ---- rehearsals ---- */

/* A [fault] that answers 503 is Portico's own answer, not an origin's: relayed, never retried
 * (no origin is asked). The simulator origin answering /status/503 is an origin's answer: listed
 * first beside a real origin, its 503 is retried there. Two requests: one meets the simulator
 * first, one the real origin; both get 200 and one move is counted. */
static void test_rehearsals(void **state)
{
    (void)state;
    struct fake_origin *b = px_origin(FO_OK);
    struct harness *h = px_start(ADMIN,
                                 "[upstream u]\norigin = 127.0.0.1:%u\nretry_on = 503\n"
                                 "[upstream s]\norigin = sim\norigin = 127.0.0.1:%u\n"
                                 "retry_on = 503\n"
                                 "[route faulty]\nprefix = /faulty\nupstream = u\n"
                                 "[route sim]\nprefix = /\nupstream = s\n"
                                 "[fault outage]\nroute = faulty\nstatus = 503\n",
                                 fake_origin_port(b), fake_origin_port(b));
    struct raw_response r;
    assert_int_equal(ask(h, "GET", "/faulty", NULL, NULL, 0, &r), 503);
    assert_non_null(raw_header(&r, "Portico-Fault"));
    raw_response_free(&r);
    assert_int_equal(fake_origin_requests(b), 0);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ask(h, "GET", "/status/503", NULL, NULL, 0, &r), 200);
        raw_response_free(&r);
    }
    assert_int_equal(fake_origin_requests(b), 2);
    assert_true(counter(h, "portico_upstream_status_retries_total") == 1);
    assert_int_equal(harness_wait_log(h, "answered 503; retrying on", PX_IO_MS), 0);
    px_stop(h);
    fake_origin_stop(b);
}

/* ---- an HTTP/2 client's stream ---- */

/* Over HTTP/2 as over HTTP/1.1: A's 503 is dropped, the stream gets B's 200, and B's body. */
static void test_status_retried_http2(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts ao = {.kind = FO_OK, .status = 503, .body = "A-SAYS-NO\n"};
    struct fake_origin *a = px_origin_start(&ao);
    struct fake_origin_opts bo = {.kind = FO_OK, .body = "B-ANSWERS\n"};
    struct fake_origin *b = px_origin_start(&bo);
    struct harness *h = px_start_tls("[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\nretry_on = 503\n",
                                     fake_origin_port(a), fake_origin_port(b));
    char u[128];
    snprintf(u, sizeof(u), "https://localhost:%u/h2retry", harness_port(h, "tls"));
    const char *const argv[] = {"curl", "-sS", "-i", "--http2", "--max-time", "20", "--cacert",
                                certs->ca_cert, u, NULL};
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    if (!tu_contains(r.out, "HTTP/2 200") || !tu_contains(r.out, "B-ANSWERS") ||
        tu_contains(r.out, "A-SAYS"))
        fail_msg("want B's 200 over HTTP/2, got:\n%s", r.out);
    tu_cmd_result_free(&r);
    px_log_line_has(h, "/h2retry", "proto=HTTP/2.0", "status=200", "attempts=2", NULL);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- the list's refusals ---- */

static const struct {
    const char *why;
    const char *line;
    const char *error;
} config_error_rows[] = {
    {"a redirect", "retry_on = 503 302", "retry_on: 302 is not an error status"},
    {"a 1xx", "retry_on = 100", "retry_on: 100 is not an error status"},
    {"not a code", "retry_on = 5xx", "retry_on: '5xx' is not a status code"},
    {"a word", "retry_on = http_503", "retry_on: 'http_503' is not a status code"},
    {"out of HAProxy's set", "retry_on = 418", "retry_on: 418 cannot be retried on"},
    {"twice", "retry_on = 503 502 503", "retry_on: 503 is listed twice"},
};

static void test_retry_on_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(config_error_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                                 "[upstream u]\norigin = 127.0.0.1:9\n%s\n",
                                              config_error_rows[i].line),
                         0);
        struct tu_cmd_result res;
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[600];
        snprintf(want, sizeof(want), "%s:5: %s", harness_config_path(h),
                 config_error_rows[i].error);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", config_error_rows[i].why, want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
}

/* ---- the timings of a retried request ---- */

#define HEAD_PAUSE_MS 300 /* between the two parts of A's head */

/* Returns once the bytes sent on fd have left it (the peer's kernel acknowledged them), bounded:
 * the first part of the head is Portico's to read before the pause starts. */
static int sent_out(int fd, void *arg)
{
    (void)arg;
    int64_t until = tu_now_ms() + PX_IO_MS;
    int queued = 1;
    while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 && tu_now_ms() < until) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static const struct fo_step a503_split_head[] = {
    FO_SEND("HTTP/1.1 503 Service Unavailable\r\nX-From: a\r\n"), FO_CALL(sent_out, NULL),
    FO_WAIT(HEAD_PAUSE_MS), FO_SEND("Content-Length: 0\r\n\r\n"), FO_END()};
static const struct fo_step a_wait_then_reset[] = {FO_WAIT(HEAD_PAUSE_MS), FO_RST(), FO_END()};

/* The milliseconds of phase name in the text access line's timing= (-1: not there). */
static double timing_of(const char *line, const char *name)
{
    const char *t = strstr(line, " timing=");
    char key[32];
    int n = snprintf(key, sizeof(key), "%s:", name);
    for (const char *p = t ? t + 8 : NULL; p && *p && *p != ' ';) {
        if (strncmp(p, key, (size_t)n) == 0)
            return strtod(p + n, NULL);
        size_t len = strcspn(p, ", ");
        p = p[len] == ',' ? p + len + 1 : NULL;
    }
    return -1;
}

/* (fixes19) A's head came in two parts HEAD_PAUSE_MS apart, then the request went to B, which
 * answered at once: B's `body` in timing= is its own (a few ms), A's head time counts as
 * first_byte (the client waited for its answer's first byte through it), and the phases still
 * add up to no more than total. Before, A's split head time was in B's body (~300 ms). And a
 * network failure's retry (A waits as long, then resets, no byte sent): first_byte has A's wait,
 * body B's own. */
static void test_retry_timings_own(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const struct fo_step *a;
        const char *config;
    } rows[] = {
        {"503 of retry_on", a503_split_head, "retry_on = 503\n"},
        {"a reset before any byte (a network failure: a head begun is not retried)",
         a_wait_then_reset, "retry_sent = on\n"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin_opts ao = {.kind = FO_SCRIPT, .script = rows[i].a};
        struct fake_origin *a = px_origin_start(&ao);
        struct fake_origin_opts bo = {.kind = FO_OK, .extra_headers = "X-From: b\r\n"};
        struct fake_origin *b = px_origin_start(&bo);
        struct harness *h = px_start(ADMIN,
                                     "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "balance = round_robin\nkeepalive = 0\n%s",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].config);
        struct raw_response r;
        int status = ask(h, "GET", "/split", NULL, NULL, 0, &r);
        const char *from = raw_header(&r, "X-From");
        if (status != 200 || !from || strcmp(from, "b") != 0)
            fail_msg("%s: status %d from %s, want B's 200", rows[i].why, status,
                     from ? from : "(none)");
        raw_response_free(&r);
        char *line = px_log_line(h, "/split");
        double body = timing_of(line, "body"), first = timing_of(line, "first_byte");
        const char *dur = strstr(line, " dur_ms="); /* the text line's total */
        double total = dur ? strtod(dur + 8, NULL) : -1;
        if (!tu_contains(line, "attempts=2") || body < 0 || first < 0)
            fail_msg("%s: not two attempts with body and first_byte: %s", rows[i].why, line);
        if (body >= HEAD_PAUSE_MS / 3)
            fail_msg("%s: B's body took %.3f ms, A's head in it: %s", rows[i].why, body, line);
        if (first < HEAD_PAUSE_MS)
            fail_msg("%s: first_byte %.3f ms, A's %d ms head not in it: %s", rows[i].why, first,
                     HEAD_PAUSE_MS, line);
        if (total < 0 || first + body > total + 0.002)
            fail_msg("%s: first_byte and body add up to more than total: %s", rows[i].why, line);
        free(line);
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_retried),
        cmocka_unit_test(test_status_relayed),
        cmocka_unit_test(test_retry_fails),
        cmocka_unit_test(test_retry_goes_on),
        cmocka_unit_test(test_status_counts),
        cmocka_unit_test(test_rehearsals),
        cmocka_unit_test(test_status_retried_http2),
        cmocka_unit_test(test_retry_on_config_errors),
        cmocka_unit_test(test_retry_timings_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
