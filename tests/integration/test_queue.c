/*
 * test_queue.c — max_conns and its queue with the real binary and a fake origin that counts the
 * requests it holds at once: the limit holds under 50 concurrent clients over two workers (the
 * most seen at once is max_conns), waiters are served in the order they came, queue_timeout
 * answers with its status per profile and says why (response, Server-Timing, access log,
 * metrics), a full queue refuses at once, a client that leaves its place gives it up (the
 * queue back to 0, no slot lost), a slot freed in one worker wakes a waiter of the other with
 * no polling tick (the gaps are measured), HTTP/2 streams queue one by one, and a reload with
 * requests in flight and queued leaves both generations' counts right.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/scrape.h"
#include "proxy_helpers.h"

#define MAX_SEEN 64

/* What the origin saw: requests held at once, the most of them, their paths in order, and when
 * each began and ended (ms). hold keeps every request waiting until the test lets them go. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int now, max;
    bool hold;
    int delay_ms;
    unsigned n;
    char path[MAX_SEEN][32];
    int64_t began[MAX_SEEN], ended[MAX_SEEN];
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void seen_reset(int delay_ms, bool hold)
{
    pthread_mutex_lock(&seen.lock);
    seen.now = seen.max = 0;
    seen.n = 0;
    seen.hold = hold;
    seen.delay_ms = delay_ms;
    pthread_mutex_unlock(&seen.lock);
}

static void release_hold(void)
{
    pthread_mutex_lock(&seen.lock);
    seen.hold = false;
    pthread_cond_broadcast(&seen.cond);
    pthread_mutex_unlock(&seen.lock);
}

/* The origin's step for each request: counted while it lasts. */
static int counted(int fd, void *arg)
{
    (void)fd;
    unsigned *slot = arg;
    pthread_mutex_lock(&seen.lock);
    seen.now++;
    if (seen.now > seen.max)
        seen.max = seen.now;
    pthread_cond_broadcast(&seen.cond);
    while (seen.hold)
        pthread_cond_wait(&seen.cond, &seen.lock);
    int delay = seen.delay_ms;
    pthread_mutex_unlock(&seen.lock);
    if (delay)
        usleep((useconds_t)delay * 1000);
    pthread_mutex_lock(&seen.lock);
    seen.now--;
    if (*slot < MAX_SEEN)
        seen.ended[*slot] = tu_now_ms();
    pthread_mutex_unlock(&seen.lock);
    return 0;
}

static unsigned slots[MAX_SEEN + 1];
static struct fo_step scripts[MAX_SEEN + 1][3];

/* Records the request's path, and gives it a script whose step knows its number. */
static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&seen.lock);
    unsigned k = seen.n < MAX_SEEN ? seen.n : MAX_SEEN;
    if (seen.n < MAX_SEEN) {
        const char *p = strchr(req->head, ' ');
        size_t len = p ? strcspn(p + 1, " ") : 0;
        snprintf(seen.path[k], sizeof(seen.path[k]), "%.*s", (int)len, p ? p + 1 : "");
        seen.began[k] = tu_now_ms();
    }
    seen.n++;
    pthread_mutex_unlock(&seen.lock);
    slots[k] = k;
    scripts[k][0] = (struct fo_step)FO_CALL(counted, &slots[k]);
    scripts[k][1] = (struct fo_step)FO_RESPOND_OK();
    scripts[k][2] = (struct fo_step)FO_END();
    return scripts[k];
}

static struct fake_origin *origin_start(int delay_ms, bool hold)
{
    seen_reset(delay_ms, hold);
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .pick_script = pick};
    struct fake_origin *fo = fake_origin_start(&o);
    assert_non_null(fo);
    return fo;
}

/* Waits until the origin holds n requests. */
static void wait_held(int n)
{
    int64_t end = tu_now_ms() + PX_IO_MS;
    pthread_mutex_lock(&seen.lock);
    while (seen.now < n && tu_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&seen.cond, &seen.lock, &ts);
    }
    int now = seen.now;
    pthread_mutex_unlock(&seen.lock);
    if (now < n)
        fail_msg("the origin holds %d requests, want %d", now, n);
}

/* Portico with one upstream u of the origin (workers: 1 or 2), its options on the origin line
 * and `upstream` lines after it; an admin endpoint and a text access log. */
static struct harness *start(struct fake_origin *fo, int workers, const char *proxy_extra,
                             const char *origin_opts, const char *upstream)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "workers = %d\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n%s\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u %s\n%s",
                                          workers, proxy_extra ? proxy_extra : "",
                                          fake_origin_port(fo), origin_opts,
                                          upstream ? upstream : ""),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    assert_int_equal(harness_wait_port(h, harness_port(h, "admin"), PX_IO_MS), 0);
    return h;
}

static double metric(struct harness *h, const char *series, double want)
{
    return scrape_wait(harness_port(h, "admin"), series, want, PX_IO_MS);
}

#define QLEN "portico_upstream_queue_length{upstream=\"u\"}"
#define QUEUED "portico_upstream_queued_total{upstream=\"u\"}"
#define QTIMEOUTS "portico_upstream_queue_timeouts_total{upstream=\"u\"}"

static void in_flight_is(struct harness *h, struct fake_origin *fo, double want)
{
    char series[160];
    snprintf(series, sizeof(series),
             "portico_upstream_origin_in_flight{upstream=\"u\",origin=\"127.0.0.1:%u\"}",
             fake_origin_port(fo));
    assert_true(metric(h, series, want) == want);
}

/* Sends GET path on a new connection and returns it, the response unread. */
static struct raw_conn *send_get(struct harness *h, const char *path)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, req), 0);
    return c;
}

static int read_status(struct raw_conn *c, struct raw_response *r)
{
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("no response: %s", r->error);
    raw_close(c);
    return r->status;
}

static void expect_status(struct raw_conn *c, int want)
{
    struct raw_response r;
    assert_int_equal(read_status(c, &r), want);
    raw_response_free(&r);
}

/* ---- the limit ---- */

#define CLIENTS 50

struct client_arg {
    struct harness *h;
    int status;
};

static void *client_main(void *arg)
{
    struct client_arg *a = arg;
    char req[128];
    snprintf(req, sizeof(req), "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    struct raw_conn *c = raw_connect(px_port(a->h), PX_IO_MS);
    if (!c)
        return NULL;
    struct raw_response r;
    if (raw_send_str(c, req) == 0 && raw_read_response(c, &r, 3 * PX_IO_MS) == 0) {
        a->status = r.status;
        raw_response_free(&r);
    }
    raw_close(c);
    return NULL;
}

/* Runs n clients at once; each must get 200. */
static void run_clients(struct harness *h, int n)
{
    pthread_t t[CLIENTS];
    struct client_arg a[CLIENTS];
    for (int i = 0; i < n; i++) {
        a[i] = (struct client_arg){h, 0};
        assert_int_equal(pthread_create(&t[i], NULL, client_main, &a[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < n; i++)
        if (a[i].status != 200)
            fail_msg("client %d: status %d", i, a[i].status);
}

/* 50 clients at once over two workers, max_conns=4: the origin never holds more than 4, every
 * client is answered, and the counts are back to 0 after. */
static void test_limit_held(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(20, false);
    struct harness *h = start(fo, 2, NULL, "max_conns=4", "queue_timeout = 30s\n");
    run_clients(h, CLIENTS);
    print_message("  %d clients, max_conns 4: the origin held %d at most\n", CLIENTS, seen.max);
    assert_int_equal(seen.max, 4);
    assert_true(metric(h, QLEN, 0) == 0);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QUEUED, 46) >= 40); /* most of them waited */
    harness_free(h);
    fake_origin_stop(fo);
}

/* ---- the order ---- */

/* Waiters are served in the order they came: five queued one after the other, across two
 * workers, reach the origin in that order. */
static void test_fifo_order(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=1", "queue_timeout = 30s\n");
    struct raw_conn *c[6];
    c[0] = send_get(h, "/first");
    wait_held(1);
    for (int i = 1; i <= 5; i++) {
        char path[16];
        snprintf(path, sizeof(path), "/q%d", i);
        c[i] = send_get(h, path);
        assert_true(metric(h, QLEN, i) == i);
    }
    release_hold();
    for (int i = 0; i <= 5; i++)
        expect_status(c[i], 200);
    assert_int_equal(seen.n, 6);
    const char *want[] = {"/first", "/q1", "/q2", "/q3", "/q4", "/q5"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(seen.path[i], want[i]);
    assert_int_equal(seen.max, 1);
    harness_free(h);
    fake_origin_stop(fo);
}

/* ---- queue_timeout ---- */

static const struct {
    const char *proxy;                 /* [proxy] lines */
    const char *errors;                /* an [errors] section, or "" */
    int status;
} timeout_rows[] = {
    {"error_profile = standard\n", "", 503},
    {"error_profile = cloudflare\n", "", 503},
    {"error_profile = proxy\n", "", 503},
    {"error_profile = standard\n", "[errors]\nqueue_timeout = 504\n", 504},
};

/* queue_timeout: the profile's status, the reason on the response, Proxy-Status and
 * Server-Timing, the access log's failure and phase with the time queued, the counter. */
static void test_queue_timeout_profiles(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(timeout_rows) / sizeof(timeout_rows[0]); i++) {
        struct fake_origin *fo = origin_start(0, true);
        char up[256];
        snprintf(up, sizeof(up), "queue_timeout = 300ms\n%s", timeout_rows[i].errors);
        struct harness *h = start(fo, 1, timeout_rows[i].proxy, "max_conns=1", up);
        struct raw_conn *first = send_get(h, "/first");
        wait_held(1);
        struct raw_response r;
        int64_t t0 = tu_now_ms();
        assert_int_equal(read_status(send_get(h, "/late"), &r), timeout_rows[i].status);
        int64_t waited = tu_now_ms() - t0;
        assert_true(waited >= 290 && waited < 3000);
        assert_string_equal(raw_header(&r, "Portico-Error"), "queue_timeout");
        const char *ps = raw_header(&r, "Proxy-Status");
        assert_non_null(ps);
        assert_non_null(strstr(ps, "error=connection_limit_reached"));
        assert_non_null(strstr(ps, "in the queue of upstream u: all 1 origin at max_conns 1"));
        assert_true(strstr(ps, "waited 0.3s") || strstr(ps, "waited 0.4s")); /* a slow turn */
        const char *st = raw_header(&r, "Server-Timing");
        assert_non_null(st);
        assert_true(px_starts(st, "queue;dur=3"));
        assert_non_null(strstr(st, "desc=\"timeout\""));
        raw_response_free(&r);
        char *line = harness_file_line(h, "access.log", "target=\"/late\"", PX_IO_MS);
        assert_non_null(line);
        assert_non_null(strstr(line, "failure=queue_timeout"));
        assert_non_null(strstr(line, "phase=queue"));
        assert_non_null(strstr(line, "timing=queue:3"));
        free(line);
        assert_true(metric(h, QTIMEOUTS, 1) == 1);
        assert_true(metric(h, QLEN, 0) == 0);
        release_hold();
        expect_status(first, 200);
        in_flight_is(h, fo, 0);
        harness_free(h);
        fake_origin_stop(fo);
    }
}

/* ---- queue_full ---- */

/* max_queue = 1: the one waiter waits, the next request is refused at once with queue_full. */
static void test_queue_full(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 1, NULL, "max_conns=1", "max_queue = 1\nqueue_timeout = 30s\n");
    struct raw_conn *first = send_get(h, "/first");
    wait_held(1);
    struct raw_conn *waiter = send_get(h, "/waiter");
    assert_true(metric(h, QLEN, 1) == 1);
    struct raw_response r;
    int64_t t0 = tu_now_ms();
    assert_int_equal(read_status(send_get(h, "/refused"), &r), 503);
    assert_true(tu_now_ms() - t0 < 2000);
    assert_string_equal(raw_header(&r, "Portico-Error"), "queue_full");
    assert_non_null(strstr(raw_header(&r, "Proxy-Status"),
                           "the queue of upstream u is full (max_queue 1): all 1 origin at "
                           "max_conns 1"));
    raw_response_free(&r);
    release_hold();
    expect_status(first, 200);
    expect_status(waiter, 200);
    in_flight_is(h, fo, 0);
    harness_free(h);
    fake_origin_stop(fo);
}

/* ---- leaving ---- */

/* A client that leaves while it waits leaves the queue (back to 0); with max_queue = 1 the
 * place is free for the next, and no slot was lost: the origin's in-flight count returns to
 * 0 and a request after is served at once. */
static void test_client_leaves_queue(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 1, NULL, "max_conns=1", "max_queue = 1\nqueue_timeout = 30s\n");
    struct raw_conn *first = send_get(h, "/first");
    wait_held(1);
    struct raw_conn *gone = send_get(h, "/gone");
    assert_true(metric(h, QLEN, 1) == 1);
    raw_abort(gone);
    assert_true(metric(h, QLEN, 0) == 0);
    struct raw_conn *next = send_get(h, "/next");
    assert_true(metric(h, QLEN, 1) == 1); /* the place was given back */
    release_hold();
    expect_status(first, 200);
    expect_status(next, 200);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QLEN, 0) == 0);
    struct raw_response r;
    assert_int_equal(read_status(send_get(h, "/after"), &r), 200);
    raw_response_free(&r);
    for (unsigned i = 0; i < seen.n && i < MAX_SEEN; i++)
        assert_string_not_equal(seen.path[i], "/gone");
    harness_free(h);
    fake_origin_stop(fo);
}

/* ---- waking across workers ---- */

/* workers = 2, max_conns = 1, 16 clients at once: each request's slot goes to a waiter, half of
 * the time one of the other worker. The origin measures the gap from one request's end to the
 * next one's start (the response's way back, the handover, the wake, the next request's way
 * there): with no polling tick it stays far under a tick's length (0.3-0.4 ms on average, 1-3
 * ms at most here). */
static void test_cross_worker_wake(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(10, false);
    struct harness *h = start(fo, 2, NULL, "max_conns=1", "queue_timeout = 30s\n");
    run_clients(h, 16);
    assert_int_equal(seen.max, 1);
    assert_int_equal(seen.n, 16);
    int64_t worst = 0, sum = 0;
    for (unsigned i = 1; i < 16; i++) {
        int64_t gap = seen.began[i] - seen.ended[i - 1];
        worst = gap > worst ? gap : worst;
        sum += gap;
    }
    print_message("  slot handed on: gap %.2f ms on average, %lld ms at most (15 handovers)\n",
                  (double)sum / 15, (long long)worst);
    /* a wake left to a tick waited up to 1 s a handover (event_active on the lockless bases,
     * before the wakebox); scheduling on a loaded machine stays far under these */
    assert_true(sum / 15 < 20 && worst < 250);
    in_flight_is(h, fo, 0);
    harness_free(h);
    fake_origin_stop(fo);
}

/* ---- HTTP/2 ---- */

/* Four streams of one HTTP/2 connection with max_conns = 1: each stream waits alone, all are
 * answered, one at a time at the origin. */
static void test_h2_streams_queue(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(50, false);
    struct harness *h = start(fo, 1, "listen = 127.0.0.1:{{port:h2c}} h2c\n", "max_conns=1",
                              "queue_timeout = 30s\n");
    char url[4][64];
    for (int i = 0; i < 4; i++)
        snprintf(url[i], sizeof(url[i]), "http://127.0.0.1:%u/s%d", harness_port(h, "h2c"), i);
    const char *const argv[] = {"curl", "-sS", "--http2-prior-knowledge", "--parallel",
                                "--parallel-immediate", "--max-time", "10", "-o", "/dev/null",
                                "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                                "-w", "%{http_code} %{http_version}\\n", url[0], url[1], url[2],
                                url[3], NULL};
    struct tu_cmd_result res;
    assert_int_equal(tu_run_command(argv, 15000, &res), 0);
    assert_string_equal(res.out, "200 2\n200 2\n200 2\n200 2\n");
    tu_cmd_result_free(&res);
    assert_int_equal(seen.max, 1);
    assert_int_equal(seen.n, 4);
    assert_true(metric(h, QUEUED, 3) >= 2); /* streams waited, on one connection */
    in_flight_is(h, fo, 0);
    harness_free(h);
    fake_origin_stop(fo);
}

/* ---- reload ---- */

/* A reload with one request in flight and one queued: both are served by the old generation
 * (its slot handed over during the drain), the new one counts from 0 (never below: the gauge
 * is unsigned, a negative count would read 4294967295), limits and queues its own requests,
 * and the queue counters go on. */
static void test_reload_mid_flight(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 1, NULL, "max_conns=1", "queue_timeout = 30s\n");
    struct raw_conn *first = send_get(h, "/old-first");
    wait_held(1);
    struct raw_conn *queued = send_get(h, "/old-queued");
    assert_true(metric(h, QLEN, 1) == 1);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    in_flight_is(h, fo, 0); /* the new generation's count */
    assert_true(metric(h, QLEN, 0) == 0);
    assert_true(metric(h, QUEUED, 1) == 1); /* carried over */
    /* the new generation limits on its own: one more held, one more queued */
    struct raw_conn *second = send_get(h, "/new-first");
    wait_held(2);
    in_flight_is(h, fo, 1);
    struct raw_conn *third = send_get(h, "/new-queued");
    assert_true(metric(h, QLEN, 1) == 1);
    release_hold();
    expect_status(first, 200);
    expect_status(queued, 200);
    expect_status(second, 200);
    expect_status(third, 200);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QLEN, 0) == 0);
    assert_true(metric(h, QUEUED, 2) == 2);
    harness_free(h);
    fake_origin_stop(fo);
}

int main(void)
{
    tu_test_filter(); /* TEST_FILTER=test_fifo* runs the matching rows only */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_held),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_queue_timeout_profiles),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_client_leaves_queue),
        cmocka_unit_test(test_cross_worker_wake),
        cmocka_unit_test(test_h2_streams_queue),
        cmocka_unit_test(test_reload_mid_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
