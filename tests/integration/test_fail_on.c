/*
 * test_fail_on.c — `fail_on` of an upstream (README, Passive health) with the real binary and
 * fake origins on loopback: an origin's final status of the list counts toward max_fails while
 * the response is relayed as it is (its body intact); max_fails of them mark the origin down
 * (logged with the status, /status's down_why, kept by a reload, the counter) and the next
 * requests go to the other origin; a 2xx between them starts the count over; a status also in
 * retry_on is retried and counted once; the probe after down_time answered so is down again; an
 * HTTP/2 client's streams count alike; the refusals of a bad list, FILE:LINE. Every row here
 * failed on the binary before fail_on (an unknown key).
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

#include "../support/certs.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

#define ADMIN "admin_listen = 127.0.0.1:{{port:admin}}\n"

/* GET path on a fresh connection: the status, the response in *r. */
static int get(struct harness *h, const char *path, struct raw_response *r)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     path);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send(c, req, (size_t)n), 0);
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("GET %s: no response: %s", path, r->error);
    raw_close(c);
    return r->status;
}

/* The value of a counter or gauge series on the admin endpoint. */
static double metric(struct harness *h, const char *name)
{
    return scrape_metric(harness_port(h, "admin"), name, PX_IO_MS);
}

/* portico_upstream_origin_up of origin o (1 up, 0 down). */
static double origin_up(struct harness *h, struct fake_origin *o)
{
    char series[160];
    snprintf(series, sizeof(series),
             "portico_upstream_origin_up{upstream=\"u\",origin=\"127.0.0.1:%u\"}",
             fake_origin_port(o));
    return metric(h, series);
}

/* The origins' answers by request number (fo_request_info.index): a string of '5' (500 with
 * body A-BROKEN) and '2' (200 with body A-FINE); past its end, the last one's. */
static const struct fo_step *answer_by_index(const struct fo_request_info *req, void *arg)
{
    static const struct fo_step broken[] = {
        FO_RESPOND(500, "X-From: a\r\n", "A-BROKEN\n", FO_LENGTH), FO_END()};
    static const struct fo_step fine[] = {
        FO_RESPOND(200, "X-From: a\r\n", "A-FINE\n", FO_LENGTH), FO_END()};
    const char *plan = arg;
    size_t len = strlen(plan);
    char c = plan[req->index < len ? req->index : len - 1];
    return c == '5' ? broken : fine;
}

/* A scripted origin A answering by plan. */
static struct fake_origin *origin_a(const char *plan)
{
    struct fake_origin_opts ao = {.kind = FO_SCRIPT, .pick_script = answer_by_index,
                                  .pick_arg = (void *)(uintptr_t)plan};
    return px_origin_start(&ao);
}

/* ---- counted toward max_fails, relayed as it is ---- */

/* A answers by its plan, B 200 to everything; round robin alternates, so requests go until A
 * has had its plan's answers. With max_fails = 3: three 500s in a row mark A down (logged with
 * the status, /status says why, the counter counts them) and the next 4 requests go to B alone;
 * every 500 reaches the client whole (A's body, its X-From) with a detail that says it counted;
 * a 200 between them starts the count over (the existing rule: failures with no answer between
 * them, as Envoy's consecutive_5xx), so 5 5 2 5 5 leaves A up; without fail_on (today) A is
 * never judged by its answers. */
static void test_counted_and_down(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const char *plan;   /* A's answers */
        const char *config; /* beside max_fails = 3 */
        bool down;
        int counted;        /* portico_upstream_status_failures_total */
    } rows[] = {
        {"three 500s in a row: down", "555", "fail_on = 500 502 503 504", true, 3},
        {"a 200 between starts the count over", "55255", "fail_on = 500", false, 4},
        {"500 not listed", "555", "fail_on = 502 503", false, 0},
        {"no fail_on: today (control, passes on main too)", "555", "", false, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin *a = origin_a(rows[i].plan);
        struct fake_origin_opts bo = {.kind = FO_OK, .body = "B-FINE\n",
                                      .extra_headers = "X-From: b\r\n"};
        struct fake_origin *b = px_origin_start(&bo);
        struct harness *h = px_start(ADMIN,
                                     "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "max_fails = 3\nfail_window = 60s\ndown_time = 60s\n%s\n",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].config);
        size_t want_a = strlen(rows[i].plan);
        for (unsigned sent = 0; fake_origin_requests(a) < want_a && sent < 20; sent++) {
            unsigned before = fake_origin_requests(a);
            char path[32];
            snprintf(path, sizeof(path), "/r%u", sent);
            struct raw_response r;
            int status = get(h, path, &r);
            if (fake_origin_requests(a) > before) { /* A's answer, relayed as it is */
                char c = rows[i].plan[before];
                const char *want_body = c == '5' ? "A-BROKEN\n" : "A-FINE\n";
                if (status != (c == '5' ? 500 : 200) || !r.body ||
                    strcmp(r.body, want_body) != 0)
                    fail_msg("%s: %s: %d \"%s\", want A's answer", rows[i].why, path, status,
                             r.body ? r.body : "");
                char *line = px_log_line(h, path);
                char detail[128];
                snprintf(detail, sizeof(detail),
                         "detail=\"127.0.0.1:%u answered 500; counted toward max_fails "
                         "(fail_on)\"", fake_origin_port(a));
                bool counted = c == '5' && rows[i].counted > 0;
                if (tu_contains(line, detail) != counted)
                    fail_msg("%s: %s: detail %s: %s", rows[i].why, path,
                             counted ? "missing" : "unwanted", line);
                free(line);
            } else {
                assert_int_equal(status, 200);
            }
            raw_response_free(&r);
        }
        assert_int_equal(fake_origin_requests(a), want_a);
        if (metric(h, "portico_upstream_status_failures_total") != rows[i].counted)
            fail_msg("%s: %g counted, want %d", rows[i].why,
                     metric(h, "portico_upstream_status_failures_total"), rows[i].counted);
        if (rows[i].down) { /* the last attempt's end marks it down: its line says so */
            char want[200];
            snprintf(want, sizeof(want), "upstream u: origin 127.0.0.1:%u answered 500 (fail_on); "
                     "marked down for 60000 ms after 3 failures within 60000 ms",
                     fake_origin_port(a));
            if (harness_wait_log(h, want, PX_IO_MS) != 0)
                fail_msg("%s: no \"%s\" in the error log", rows[i].why, want);
        }
        if (origin_up(h, a) != (rows[i].down ? 0 : 1))
            fail_msg("%s: A's origin_up %g", rows[i].why, origin_up(h, a));
        struct tj *doc;
        const struct tj *o = px_status_origin(h, 0, &doc);
        if (rows[i].down) {
            assert_non_null(tj_str(o, "down_why"));
            assert_string_equal(tj_str(o, "down_why"), "passive: answered 500");
            for (int k = 0; k < 4; k++) { /* A is skipped now */
                struct raw_response r;
                assert_int_equal(get(h, "/after", &r), 200);
                assert_string_equal(r.body, "B-FINE\n");
                raw_response_free(&r);
            }
            assert_int_equal(fake_origin_requests(a), want_a);
            /* a reload keeps A down for the rest of its down_time, and why */
            assert_int_equal(harness_signal(h, SIGHUP), 0);
            assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
            tj_free(doc);
            o = px_status_origin(h, 0, &doc);
            assert_non_null(tj_str(o, "down_why"));
            assert_string_equal(tj_str(o, "down_why"), "passive: answered 500");
        } else {
            assert_false(harness_log_contains(h, "marked down"));
            assert_true(tj_is_null(o, "down_why"));
        }
        tj_free(doc);
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* ---- with retry_on ---- */

/* 503 in both retry_on and fail_on: each GET is retried on B (the client gets B's 200) and the
 * 503 counts once: with max_fails = 2, A is still up after the first (counted twice, it would
 * be down), down after the second, the line naming fail_on. */
static void test_both_lists_count_once(void **state)
{
    (void)state;
    struct fake_origin_opts ao = {.kind = FO_OK, .status = 503, .body = "A-DEPLOYING\n"};
    struct fake_origin *a = px_origin_start(&ao);
    struct fake_origin *b = px_origin(FO_OK);
    struct harness *h = px_start(ADMIN,
                                 "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                 "retry_on = 503\nfail_on = 503\nmax_fails = 2\n"
                                 "fail_window = 60s\ndown_time = 60s\n",
                                 fake_origin_port(a), fake_origin_port(b));
    for (unsigned sent = 0; fake_origin_requests(a) < 1 && sent < 4; sent++) {
        struct raw_response r;
        assert_int_equal(get(h, "/first", &r), 200);
        raw_response_free(&r);
    }
    assert_int_equal(fake_origin_requests(a), 1);
    assert_true(metric(h, "portico_upstream_status_failures_total") == 1);
    assert_true(origin_up(h, a) == 1); /* one failure of 2 */
    for (unsigned sent = 0; fake_origin_requests(a) < 2 && sent < 4; sent++) {
        struct raw_response r;
        assert_int_equal(get(h, "/second", &r), 200);
        raw_response_free(&r);
    }
    assert_int_equal(fake_origin_requests(a), 2);
    assert_true(metric(h, "portico_upstream_status_failures_total") == 2);
    assert_true(metric(h, "portico_upstream_status_retries_total") == 2);
    assert_true(origin_up(h, a) == 0);
    char want[160];
    snprintf(want, sizeof(want), "origin 127.0.0.1:%u answered 503 (fail_on); marked down",
             fake_origin_port(a));
    assert_int_equal(harness_wait_log(h, want, PX_IO_MS), 0);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- the probe ---- */

/* max_fails = 1, down_time = 200ms: A's first 500 marks it down; the probe after down_time is
 * answered 500 too (relayed to its client), and A is down again at once, the line naming the
 * status; the next probe, answered 200, brings it back. Requests go until A has had each one
 * (B takes the rest), bounded in count. */
static void test_probe_answered_500(void **state)
{
    (void)state;
    struct fake_origin *a = origin_a("552");
    struct fake_origin *b = px_origin(FO_OK);
    struct harness *h = px_start(ADMIN,
                                 "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                 "fail_on = 500\nmax_fails = 1\nfail_window = 60s\n"
                                 "down_time = 200ms\n",
                                 fake_origin_port(a), fake_origin_port(b));
    static const struct {
        const char *log; /* after A's answer, with its port */
        int status;
    } steps[] = {
        {"origin 127.0.0.1:%u answered 500 (fail_on); marked down for 200 ms after 1 failure",
         500},
        {"origin 127.0.0.1:%u answered 500 (fail_on) to its probe after down_time; down for "
         "another 200 ms", 500},
        {"origin 127.0.0.1:%u answered; back up", 200},
    };
    for (size_t s = 0; s < ARRAY_SIZE(steps); s++) {
        int a_status = 0;
        for (unsigned sent = 0; fake_origin_requests(a) <= s && sent < 2000; sent++) {
            unsigned before = fake_origin_requests(a);
            struct raw_response r;
            int status = get(h, "/probe", &r);
            if (fake_origin_requests(a) > before)
                a_status = status;
            else
                assert_int_equal(status, 200);
            raw_response_free(&r);
        }
        assert_int_equal(fake_origin_requests(a), s + 1);
        assert_int_equal(a_status, steps[s].status);
        char want[200];
        snprintf(want, sizeof(want), steps[s].log, fake_origin_port(a));
        if (harness_wait_log(h, want, PX_IO_MS) != 0)
            fail_msg("step %zu: no \"%s\" in the error log", s, want);
    }
    assert_true(origin_up(h, a) == 1);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- an HTTP/2 client's streams ---- */

/* Over HTTP/2 as over HTTP/1.1: four streams on one connection, round robin, A's two 500s are
 * relayed whole (its body) and mark it down at max_fails = 2. */
static void test_http2_counted(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts ao = {.kind = FO_OK, .status = 500, .body = "A-BROKEN\n"};
    struct fake_origin *a = px_origin_start(&ao);
    struct fake_origin_opts bo = {.kind = FO_OK, .body = "B-FINE\n"};
    struct fake_origin *b = px_origin_start(&bo);
    struct harness *h = px_start_tls("[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\nfail_on = 500\n"
                                     "max_fails = 2\nfail_window = 60s\n"
                                     "down_time = 60s\n",
                                     fake_origin_port(a), fake_origin_port(b));
    char u[128];
    snprintf(u, sizeof(u), "https://localhost:%u/h2fail", harness_port(h, "tls"));
    const char *const argv[] = {"curl", "-sS", "--http2", "--max-time", "20", "--cacert",
                                certs->ca_cert, "-w", "[%{http_version} %{http_code}]\n",
                                u, u, u, u, NULL};
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    if (!tu_contains(r.out, "A-BROKEN\n[2 500]") || !tu_contains(r.out, "B-FINE\n[2 200]"))
        fail_msg("want A's 500s and B's 200s over HTTP/2, got:\n%s", r.out);
    tu_cmd_result_free(&r);
    assert_int_equal(fake_origin_requests(a), 2);
    char want[160];
    snprintf(want, sizeof(want), "origin 127.0.0.1:%u answered 500 (fail_on); marked down",
             fake_origin_port(a));
    assert_int_equal(harness_wait_log(h, want, PX_IO_MS), 0);
    /* (A's lines are the ones with its status) */
    px_log_line_has(h, " status=500", "/h2fail", "proto=HTTP/2.0", "counted toward max_fails",
                    NULL);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- the list's refusals ---- */

static const struct {
    const char *why;
    const char *lines; /* from line 5 */
    const char *error;
} config_error_rows[] = {
    {"a client's error", "fail_on = 500 404\nmax_fails = 3",
     "fail_on: 404 is the client's error, not the origin's"},
    {"429 too", "fail_on = 429\nmax_fails = 3", "fail_on: 429 is the client's error"},
    {"501: the method's", "fail_on = 501\nmax_fails = 3",
     "fail_on: 501 answers the request's method"},
    {"505: the version's", "fail_on = 505\nmax_fails = 3",
     "fail_on: 505 answers the request's HTTP version"},
    {"a redirect", "fail_on = 302\nmax_fails = 3", "fail_on: 302 is not an error status"},
    {"beyond the set", "fail_on = 507\nmax_fails = 3", "fail_on: 507 cannot be counted"},
    {"a class", "fail_on = 5xx\nmax_fails = 3", "fail_on: '5xx' is not a status code"},
    {"twice", "fail_on = 500 503 500\nmax_fails = 3", "fail_on: 500 is listed twice"},
    {"no max_fails: it would count nothing", "fail_on = 500",
     "fail_on: its statuses count toward max_fails, which is 0 (off)"},
    {"max_fails = 0", "fail_on = 500\nmax_fails = 0",
     "fail_on: its statuses count toward max_fails, which is 0 (off)"},
};

static void test_fail_on_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(config_error_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                                 "[upstream u]\norigin = 127.0.0.1:9\n"
                                                 "%s\norigin = 127.0.0.1:10\n",
                                              config_error_rows[i].lines),
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

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counted_and_down),
        cmocka_unit_test(test_both_lists_count_once),
        cmocka_unit_test(test_probe_answered_500),
        cmocka_unit_test(test_http2_counted),
        cmocka_unit_test(test_fail_on_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
