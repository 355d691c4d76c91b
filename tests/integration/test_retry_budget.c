/*
 * test_retry_budget.c — `retry_budget`, `retry_budget_min` and `retry_timeout` of an upstream
 * (README, Retries) with the real binary and fake origins on loopback: a storm of requests to
 * failing origins retries no more than the budget lets be in flight at once (the attempts the
 * origins see are counted), across two workers, and the gauge of retries in flight is back to 0
 * after the clients vanished mid-retry, and across a reload mid-storm (the refusals of the old
 * generation after it counted too); retry_budget_min lets a lone request retry; a retry is
 * refused once the request ran retry_timeout (a first_byte_timeout failure) and allowed before;
 * an HTTP/2 client's stream the same; the refusals of bad values, FILE:LINE. Every row here
 * failed on the binary before retry_budget (an unknown key).
 */
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

#define STORM 20 /* concurrent requests: 20% of them is 4 retries, above the minimum of 3 */
#define STORM_BUDGET 4

/* ---- a gate the origins' attempts wait at ---- */

/* Attempts arrive at the gate (both origins' connection threads); the first STORM wait for
 * wave 1, the later ones (retries) for wave 2, so every first attempt is in flight at once and
 * every retry stays in flight until the test lets it go. Waits are bounded (PX_IO_MS). */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned arrived;
    unsigned wave;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void gate_reset(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.arrived = 0;
    gate.wave = 0;
    pthread_mutex_unlock(&gate.lock);
}

static struct timespec deadline_in(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* FO_CALL: an attempt arrives and waits for its wave. */
static int gate_pass(int fd, void *arg)
{
    (void)fd;
    (void)arg;
    struct timespec until = deadline_in(2 * PX_IO_MS);
    pthread_mutex_lock(&gate.lock);
    unsigned wave = gate.arrived++ < STORM ? 1 : 2;
    pthread_cond_broadcast(&gate.changed);
    while (gate.wave < wave && pthread_cond_timedwait(&gate.changed, &gate.lock, &until) == 0)
        ;
    pthread_mutex_unlock(&gate.lock);
    return 0;
}

/* Waits (bounded) until n attempts arrived; their number. */
static unsigned gate_wait_arrived(unsigned n)
{
    struct timespec until = deadline_in(PX_IO_MS);
    pthread_mutex_lock(&gate.lock);
    while (gate.arrived < n && pthread_cond_timedwait(&gate.changed, &gate.lock, &until) == 0)
        ;
    unsigned arrived = gate.arrived;
    pthread_mutex_unlock(&gate.lock);
    return arrived;
}

static unsigned gate_arrived(void)
{
    pthread_mutex_lock(&gate.lock);
    unsigned arrived = gate.arrived;
    pthread_mutex_unlock(&gate.lock);
    return arrived;
}

static void gate_open(unsigned wave)
{
    pthread_mutex_lock(&gate.lock);
    gate.wave = wave;
    pthread_cond_broadcast(&gate.changed);
    pthread_mutex_unlock(&gate.lock);
}

static const struct fo_step gated_503[] = {
    FO_CALL(gate_pass, NULL), FO_RESPOND(503, "X-From: origin\r\n", "BUSY\n", FO_LENGTH),
    FO_END()};

/* ---- helpers ---- */

/* A GET of path on a fresh connection: its status. */
static int get_status(struct harness *h, const char *path)
{
    struct raw_conn *c = px_connect(h);
    char req[160];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     path);
    assert_int_equal(raw_send(c, req, (size_t)n), 0);
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("GET %s: no response: %s", path, r.error);
    int status = r.status;
    raw_response_free(&r);
    raw_close(c);
    return status;
}

static double metric(struct harness *h, const char *series)
{
    return scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
}

#define REFUSED_BUDGET "portico_upstream_retries_refused_total{upstream=\"u\",reason=\"retry_budget\"}"
#define REFUSED_TIMEOUT                                                                            \
    "portico_upstream_retries_refused_total{upstream=\"u\",reason=\"retry_timeout\"}"
#define IN_FLIGHT "portico_upstream_retries_in_flight{upstream=\"u\"}"

/* Portico with two workers in front of two gated origins answering 503, retry_on = 503 and a
 * budget of 20% (minimum 3). */
static struct harness *storm_start(struct fake_origin **a, struct fake_origin **b)
{
    gate_reset();
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .script = gated_503};
    *a = px_origin_start(&o);
    *b = px_origin_start(&o);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 2\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n"
                                          "origin = 127.0.0.1:%u\nkeepalive = 0\n"
                                          "retry_on = 503\nretry_budget = 20%%\n",
                                          fake_origin_port(*a), fake_origin_port(*b)),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* STORM GETs on connections of their own, sent at once; every first attempt is then at the
 * gate. */
static void storm_send(struct harness *h, struct raw_conn **c)
{
    for (int i = 0; i < STORM; i++) {
        c[i] = px_connect(h);
        char req[128];
        int n = snprintf(req, sizeof(req),
                         "GET /storm/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", i);
        assert_int_equal(raw_send(c[i], req, (size_t)n), 0);
    }
    if (gate_wait_arrived(STORM) != STORM)
        fail_msg("%u of %d first attempts reached the origins", gate_arrived(), STORM);
}

/* Lets the first attempts answer 503 and waits until each was retried or refused (one error
 * log line each); the retries then wait at the gate. Returns the retries started. */
static unsigned storm_answer_first(struct harness *h)
{
    gate_open(1);
    for (unsigned seen = 0;;) {
        char *err = harness_stderr(h);
        unsigned retried = 0, refused = 0;
        for (const char *p = err; p && (p = strstr(p, "; retrying on ")); p++)
            retried++;
        for (const char *p = err; p && (p = strstr(p, "; not retried: retry budget (")); p++)
            refused++;
        free(err);
        if (retried + refused == STORM)
            return retried;
        /* each line is waited for, bounded: the log's own wait, not a sleep */
        if (harness_wait_log_count(h, "not retried", refused + 1, PX_IO_MS / 10) != 0 &&
            ++seen > 20)
            fail_msg("%u retried and %u refused of %d after 503s", retried, refused, STORM);
    }
}

/* ---- a storm bounded ---- */

/* 20 requests in flight at once to two origins that answer 503 (two workers): 20% of 20 is 4
 * retries at once, and the origins see at most 24 attempts, where without the budget they saw
 * 40. Each refused request gets the origin's 503 with its detail saying why (the access log
 * and the error log), the refusals are counted, and once all is answered no retry is left in
 * flight. Before, retry_budget was an unknown key. */
static void test_storm_bounded(void **state)
{
    (void)state;
    struct fake_origin *a, *b;
    struct harness *h = storm_start(&a, &b);
    struct raw_conn *c[STORM];
    storm_send(h, c);
    unsigned retried = storm_answer_first(h);
    if (retried > STORM_BUDGET || retried == 0)
        fail_msg("%u retries started, want 1 to %d", retried, STORM_BUDGET);
    if (gate_wait_arrived(STORM + retried) != STORM + retried)
        fail_msg("%u attempts at the origins, want %u", gate_arrived(), STORM + retried);
    /* the retries hold their places: the in-flight gauge shows them, every worker's */
    assert_true(metric(h, IN_FLIGHT) == retried);
    gate_open(2);
    for (int i = 0; i < STORM; i++) {
        struct raw_response r;
        if (raw_read_response(c[i], &r, PX_IO_MS) != 0)
            fail_msg("request %d: no response: %s", i, r.error);
        assert_int_equal(r.status, 503); /* the origin's, relayed (retries = 1) */
        raw_response_free(&r);
        raw_close(c[i]);
    }
    unsigned attempts = gate_arrived();
    print_message("%u of %d requests retried, %u attempts at the origins\n", retried, STORM,
                  attempts);
    if (attempts > STORM + STORM_BUDGET)
        fail_msg("%u attempts at the origins, want at most %d", attempts, STORM + STORM_BUDGET);
    assert_int_equal(attempts, STORM + retried);
    assert_int_equal(fake_origin_requests(a) + fake_origin_requests(b), attempts);
    assert_true(scrape_wait(harness_port(h, "admin"), REFUSED_BUDGET, STORM - retried,
                            PX_IO_MS) == STORM - retried);
    assert_true(metric(h, REFUSED_TIMEOUT) == 0);
    assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
    /* a refused one's access line: the origin's 503, one attempt, and why */
    px_log_line_has(h, "not retried: retry budget (", "status=503", "attempts=1",
                    " retries in flight; 20% of ", NULL);
    char *err = harness_stderr(h);
    if (!tu_contains(err, "answered 503; not retried: retry budget ("))
        fail_msg("no refusal in the error log:\n%s", err);
    free(err);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* The clients of a storm vanish while their retries wait at the origins: each retry's place
 * is given back as its exchange ends, and the gauge goes back to 0 (not left counting retries
 * that are gone, which would refuse every later one). A request afterwards may retry again. */
static void test_storm_clients_vanish(void **state)
{
    (void)state;
    struct fake_origin *a, *b;
    struct harness *h = storm_start(&a, &b);
    struct raw_conn *c[STORM];
    storm_send(h, c);
    unsigned retried = storm_answer_first(h);
    if (gate_wait_arrived(STORM + retried) != STORM + retried)
        fail_msg("%u attempts at the origins, want %u", gate_arrived(), STORM + retried);
    assert_true(metric(h, IN_FLIGHT) == retried);
    for (int i = 0; i < STORM; i++)
        raw_close(c[i]);
    assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
    gate_open(2);
    /* the budget is whole again: a lone request retries (and meets the other 503) */
    struct raw_conn *one = px_connect(h);
    const char req[] = "GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_int_equal(raw_send(one, req, sizeof(req) - 1), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(one, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 503);
    raw_response_free(&r);
    raw_close(one);
    px_log_line_has(h, "/after", "attempts=2", NULL);
    assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* A reload mid-storm: the new generation counts the old one's retries still in flight (the
 * count is the upstream's, not the generation's: a reload hands a storm no fresh budget), and
 * as the old generation's retries end the count goes back to 0, not below it. */
static void test_storm_reload(void **state)
{
    (void)state;
    struct fake_origin *a, *b;
    struct harness *h = storm_start(&a, &b);
    struct raw_conn *c[STORM];
    storm_send(h, c);
    unsigned retried = storm_answer_first(h);
    if (gate_wait_arrived(STORM + retried) != STORM + retried)
        fail_msg("%u attempts at the origins, want %u", gate_arrived(), STORM + retried);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live", PX_IO_MS), 0);
    /* the admin endpoint reads the new generation's balancer now */
    assert_true(metric(h, IN_FLIGHT) == retried);
    gate_open(2);
    for (int i = 0; i < STORM; i++) {
        struct raw_response r;
        if (raw_read_response(c[i], &r, PX_IO_MS) != 0)
            fail_msg("request %d: no response: %s", i, r.error);
        assert_int_equal(r.status, 503);
        raw_response_free(&r);
        raw_close(c[i]);
    }
    assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
    /* the refusals counted before the reload go on (metrics counters never go back) */
    assert_true(metric(h, REFUSED_BUDGET) == STORM - retried);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* A reload before the storm's first attempts answer: the draining generation's refusals after
 * the reload are counted where /metrics reads them (the serving generation's counter). Before,
 * each generation counted its own and a reload copied the old one's total once, so the old
 * generation's later refusals were lost: the counter said 0 of 16 refused. */
static void test_storm_refusals_after_reload(void **state)
{
    (void)state;
    struct fake_origin *a, *b;
    struct harness *h = storm_start(&a, &b);
    struct raw_conn *c[STORM];
    storm_send(h, c);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live", PX_IO_MS), 0);
    unsigned retried = storm_answer_first(h); /* by the old generation, after the reload */
    if (gate_wait_arrived(STORM + retried) != STORM + retried)
        fail_msg("%u attempts at the origins, want %u", gate_arrived(), STORM + retried);
    gate_open(2);
    for (int i = 0; i < STORM; i++) {
        struct raw_response r;
        if (raw_read_response(c[i], &r, PX_IO_MS) != 0)
            fail_msg("request %d: no response: %s", i, r.error);
        assert_int_equal(r.status, 503);
        raw_response_free(&r);
        raw_close(c[i]);
    }
    double refused = scrape_wait(harness_port(h, "admin"), REFUSED_BUDGET, STORM - retried,
                                 PX_IO_MS);
    print_message("%u retried, %u refused by the old generation; the counter says %.0f\n",
                  retried, STORM - retried, refused);
    assert_true(refused == STORM - retried);
    assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- retry_budget_min: a lone request ---- */

/* A lone request whose first origin refuses the connection: 10% of 1 request in flight is 0
 * retries, but retry_budget_min = 1 (or the default 3) lets it retry (200 from the second); with
 * retry_budget_min = 0 it is refused, the connect failure's 502 answered with why. A network
 * failure is bounded as a status of retry_on is. */
static void test_budget_min(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const char *keys;
        int want;
        const char *detail; /* in the 502's access line */
    } rows[] = {
        {"retry_budget_min = 1", "retry_budget = 10%\nretry_budget_min = 1", 200, NULL},
        {"the default minimum, 3", "retry_budget = 10%", 200, NULL},
        {"retry_budget_min = 0: 10% of 1 is none", "retry_budget = 10%\nretry_budget_min = 0",
         502, "Connection refused; not retried: retry budget (0 of 0 retries in flight; 10% of 1 "
              "requests)\""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin *a = px_origin(FO_REFUSE);
        struct fake_origin *b = px_origin(FO_OK);
        struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n",
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\n%s\n",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].keys);
        int status = get_status(h, "/lone");
        if (status != rows[i].want)
            fail_msg("%s: status %d, want %d", rows[i].why, status, rows[i].want);
        if (rows[i].detail) {
            px_log_line_has(h, "/lone", "attempts=1", rows[i].detail, NULL);
            assert_int_equal(fake_origin_requests(b), 0);
            assert_true(scrape_wait(harness_port(h, "admin"), REFUSED_BUDGET, 1, PX_IO_MS) == 1);
            assert_int_equal(harness_wait_log(h, "failed (connect_refused: connect to "
                                                 "127.0.0.1:", PX_IO_MS), 0);
            assert_int_equal(harness_wait_log(h, "; not retried: retry budget (0 of 0", PX_IO_MS),
                             0);
        } else {
            px_log_line_has(h, "/lone", "attempts=2", NULL);
            assert_true(metric(h, REFUSED_BUDGET) == 0);
        }
        assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* A refusal counts only a retry that would have gone: the other origin down (max_fails = 1),
 * the request's failure stands as it would without the budget, its detail naming no budget, and
 * the counter counts the one refusal made while the other origin was up. Before, the budget was
 * asked whenever an origin was untried, down or not: the second request's 502 said "not retried:
 * retry budget (0 of 0 ...)" and the counter said 2. */
static void test_refused_only_when_retry_would_go(void **state)
{
    (void)state;
    struct fake_origin *a = px_origin(FO_REFUSE);
    struct fake_origin *b = px_origin(FO_REFUSE);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n",
                                 "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                 "max_fails = 1\ndown_time = 60s\nretry_budget = 10%%\n"
                                 "retry_budget_min = 0\n",
                                 fake_origin_port(a), fake_origin_port(b));
    /* the first: its retry refused while the other origin was up (counted); its origin down */
    assert_int_equal(get_status(h, "/first"), 502);
    px_log_line_has(h, "/first", "attempts=1", "; not retried: retry budget (0 of 0", NULL);
    assert_true(scrape_wait(harness_port(h, "admin"), REFUSED_BUDGET, 1, PX_IO_MS) == 1);
    /* the second: the other origin, its first down: no retry would go, none was refused */
    assert_int_equal(get_status(h, "/second"), 502);
    char *line = px_log_line(h, "/second");
    if (!tu_contains(line, "attempts=1") || !tu_contains(line, "failure=connect_refused") ||
        tu_contains(line, "not retried"))
        fail_msg("the second request's line: %s", line);
    free(line);
    double refused = metric(h, REFUSED_BUDGET);
    print_message("refusals counted: %.0f (want 1: the second had no origin to retry on)\n",
                  refused);
    assert_true(refused == 1);
    assert_true(scrape_wait(harness_port(h, "admin"), IN_FLIGHT, 0, PX_IO_MS) == 0);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- retry_timeout ---- */

/* The first origin never answers; first_byte_timeout (300 ms) fails the attempt, and with
 * retry_sent a GET would go to the next origin. retry_timeout = 200ms has passed by then: the
 * 504 of the timeout is answered, saying why; retry_timeout = 10s has not: the retry answers
 * 200. */
static void test_retry_timeout(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        const char *timeout;
        int want;
    } rows[] = {
        {"passed after the slow first attempt", "200ms", 504},
        {"not yet passed", "10s", 200},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin *a = px_origin(FO_SILENT);
        struct fake_origin *b = px_origin(FO_OK);
        struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n",
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\nfirst_byte_timeout = 300ms\n"
                                     "retry_sent = on\nretry_timeout = %s\n",
                                     fake_origin_port(a), fake_origin_port(b), rows[i].timeout);
        int status = get_status(h, "/slow");
        if (status != rows[i].want)
            fail_msg("%s: status %d, want %d", rows[i].why, status, rows[i].want);
        if (rows[i].want == 504) {
            px_log_line_has(h, "/slow", "attempts=1",
                            "; not retried: retry_timeout 200 ms passed\"", NULL);
            assert_int_equal(fake_origin_requests(b), 0);
            assert_true(scrape_wait(harness_port(h, "admin"), REFUSED_TIMEOUT, 1, PX_IO_MS) ==
                        1);
            assert_int_equal(harness_wait_log(h, "not retried: retry_timeout 200 ms passed",
                                              PX_IO_MS),
                             0);
        } else {
            px_log_line_has(h, "/slow", "attempts=2", NULL);
            assert_true(metric(h, REFUSED_TIMEOUT) == 0);
        }
        px_stop(h);
        fake_origin_stop(a);
        fake_origin_stop(b);
    }
}

/* ---- an HTTP/2 client's stream ---- */

/* Over HTTP/2 as over HTTP/1.1: the stream's retry is refused by the budget (minimum 0, 10%
 * of one request), and the stream gets the connect failure's 502 with why. */
static void test_refused_http2(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin *a = px_origin(FO_REFUSE);
    struct fake_origin *b = px_origin(FO_OK);
    struct harness *h = px_start_tls("[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\nretry_budget = 10%%\n"
                                     "retry_budget_min = 0\n",
                                     fake_origin_port(a), fake_origin_port(b));
    char u[128];
    snprintf(u, sizeof(u), "https://localhost:%u/h2budget", harness_port(h, "tls"));
    const char *const argv[] = {"curl", "-sS", "-i", "--http2", "--max-time", "20", "--cacert",
                                certs->ca_cert, u, NULL};
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    if (!tu_contains(r.out, "HTTP/2 502"))
        fail_msg("want the 502 over HTTP/2, got:\n%s", r.out);
    tu_cmd_result_free(&r);
    px_log_line_has(h, "/h2budget", "proto=HTTP/2.0", "status=502", "attempts=1",
                    "not retried: retry budget (0 of 0 retries in flight; 10% of 1 requests)",
                    NULL);
    assert_int_equal(fake_origin_requests(b), 0);
    px_stop(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* ---- refusals ---- */

static const struct {
    const char *why;
    const char *lines; /* from line 5 on */
    int line;          /* the refusal's */
    const char *error;
} config_error_rows[] = {
    {"over 100%", "retry_budget = 150%", 5,
     "retry_budget: '150%' is not a whole percentage from 0% to 100% (or off)"},
    {"a fraction", "retry_budget = 20.5%", 5,
     "retry_budget: '20.5%' is not a whole percentage from 0% to 100% (or off)"},
    {"negative", "retry_budget = -1%", 5,
     "retry_budget: '-1%' is not a whole percentage from 0% to 100% (or off)"},
    {"a word", "retry_budget = on", 5,
     "retry_budget: 'on' is not a whole percentage from 0% to 100% (or off)"},
    {"a minimum without a budget", "retry_budget_min = 5", 5,
     "retry_budget_min: without retry_budget it bounds nothing"},
    {"a minimum with the budget off", "retry_budget = off\nretry_budget_min = 5", 6,
     "retry_budget_min: without retry_budget it bounds nothing"},
    {"no retry at all", "retry_budget = 0%\nretry_budget_min = 0", 6,
     "retry_budget: 0% with retry_budget_min = 0 allows no retry at all"},
    {"a minimum not a number", "retry_budget = 20%\nretry_budget_min = many", 6,
     "retry_budget_min:"},
    {"a budget with retries = 0", "retries = 0\nretry_budget = 20%", 6,
     "retry_budget: retries = 0 leaves no retry to bound"},
    {"a timeout with retries = 0", "retries = 0\nretry_timeout = 2s", 6,
     "retry_timeout: retries = 0 leaves no retry to bound"},
    {"a timeout not a duration", "retry_timeout = soon", 5, "retry_timeout:"},
};

static void test_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(config_error_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                                 "[upstream u]\norigin = 127.0.0.1:9\n%s\n",
                                              config_error_rows[i].lines),
                         0);
        struct tu_cmd_result res;
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[600];
        snprintf(want, sizeof(want), "%s:%d: %s", harness_config_path(h),
                 config_error_rows[i].line, config_error_rows[i].error);
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
        cmocka_unit_test(test_storm_bounded),
        cmocka_unit_test(test_storm_clients_vanish),
        cmocka_unit_test(test_storm_reload),
        cmocka_unit_test(test_storm_refusals_after_reload),
        cmocka_unit_test(test_budget_min),
        cmocka_unit_test(test_refused_only_when_retry_would_go),
        cmocka_unit_test(test_retry_timeout),
        cmocka_unit_test(test_refused_http2),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
