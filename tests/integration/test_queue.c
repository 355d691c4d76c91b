/*
 * test_queue.c — max_conns and its queue with the real binary and a fake origin that counts the
 * requests it holds at once: the limit holds under 50 concurrent clients over two workers (the
 * most seen at once is max_conns), waiters are served in the order they came, queue_timeout
 * answers with its status per profile and says why (response, Server-Timing, access log,
 * metrics), a full queue refuses at once, a client that leaves its place gives it up (the
 * queue back to 0, no slot lost), a slot freed in one worker wakes a waiter of the other with
 * no polling tick (the gaps are measured), HTTP/2 streams queue one by one, and a reload keeps
 * the origin's count: the new generation's requests wait for the old one's slots (an unchanged
 * file, a lowered max_conns, an origin dropped and listed again).
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
    int let_go;                        /* held requests to answer while hold stays (release_one) */
    unsigned done;                     /* requests answered */
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
    seen.let_go = 0;
    seen.done = 0;
    seen.delay_ms = delay_ms;
    pthread_mutex_unlock(&seen.lock);
}

/* The origin's records are read by the test after the responses: the lock orders them after
 * the origin's writes (ThreadSanitizer saw the bare reads as races). */
static void seen_sync(void)
{
    pthread_mutex_lock(&seen.lock);
    pthread_mutex_unlock(&seen.lock);
}

static void release_hold(void)
{
    pthread_mutex_lock(&seen.lock);
    seen.hold = false;
    pthread_cond_broadcast(&seen.cond);
    pthread_mutex_unlock(&seen.lock);
}

/* Lets one held request go (whichever the origin wakes first), the others held on; waits until
 * the origin answered it. */
static void release_one(void)
{
    pthread_mutex_lock(&seen.lock);
    unsigned before = seen.done;
    seen.let_go++;
    pthread_cond_broadcast(&seen.cond);
    int64_t end = tu_now_ms() + PX_IO_MS;
    while (seen.done == before && tu_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&seen.cond, &seen.lock, &ts);
    }
    unsigned done = seen.done;
    int now = seen.now;
    pthread_mutex_unlock(&seen.lock);
    if (done == before)
        fail_msg("the origin answered none of the %d requests it holds", now);
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
    while (seen.hold && seen.let_go == 0)
        pthread_cond_wait(&seen.cond, &seen.lock);
    if (seen.hold)
        seen.let_go--; /* this one is let go alone */
    int delay = seen.delay_ms;
    pthread_mutex_unlock(&seen.lock);
    if (delay)
        usleep((useconds_t)delay * 1000);
    pthread_mutex_lock(&seen.lock);
    seen.now--;
    seen.done++;
    if (*slot < MAX_SEEN)
        seen.ended[*slot] = tu_now_ms();
    pthread_cond_broadcast(&seen.cond);
    pthread_mutex_unlock(&seen.lock);
    return 0;
}

static unsigned slots[MAX_SEEN + 1];
static struct fo_step scripts[MAX_SEEN + 1][3];

static const struct fo_step healthz_500[] = {FO_RESPOND(500, NULL, "sick\n", FO_LENGTH),
                                             FO_END()};
static const struct fo_step respond_ok[] = {FO_RESPOND_OK(), FO_END()};
static atomic_bool healthz_failing;

/* The step after the hold, by the request's path: /reset... resets (a network failure, for
 * max_fails), /close... closes without an answer; any other path is answered 200. */
static struct fo_step step_after_hold(const char *head)
{
    static const struct {
        const char *prefix;
        struct fo_step step;
    } by_prefix[] = {
        {"/reset", FO_RST()},
        {"/close", FO_CLOSE()},
    };
    const char *sp = strchr(head, ' ');
    const char *path = sp ? sp + 1 : "";
    for (size_t i = 0; i < sizeof(by_prefix) / sizeof(by_prefix[0]); i++)
        if (strncmp(path, by_prefix[i].prefix, strlen(by_prefix[i].prefix)) == 0)
            return by_prefix[i].step;
    return (struct fo_step)FO_RESPOND_OK();
}

/* Records the request's path, and gives it a script whose step knows its number. A health
 * check is answered at once, uncounted. */
static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strncmp(req->head, "GET /healthz ", 13) == 0)
        return respond_ok;
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
    scripts[k][1] = step_after_hold(req->head);
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

/* Sends GET path and waits until the origin holds n requests: this one is under way. */
static struct raw_conn *send_held(struct harness *h, const char *path, int n)
{
    struct raw_conn *c = send_get(h, path);
    wait_held(n);
    return c;
}

/* Sends GET path and waits until the queue is qlen long: this one waits in it. */
static struct raw_conn *send_queued(struct harness *h, const char *path, double qlen)
{
    struct raw_conn *c = send_get(h, path);
    assert_true(metric(h, QLEN, qlen) == qlen);
    return c;
}

/* Lets the origin answer what it holds; the request it held first is answered 200. */
static void release_first(struct raw_conn *first)
{
    release_hold();
    expect_status(first, 200);
}

/* Portico first: it holds connections to the origin. Stopped by its signals and its exit
 * checked, not killed: under valgrind (scripts/valgrind.sh) a SIGKILL skips the leak check. */
static void stop_both(struct harness *h, struct fake_origin *fo)
{
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(fo);
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
    seen_sync();
    print_message("  %d clients, max_conns 4: the origin held %d at most\n", CLIENTS, seen.max);
    assert_int_equal(seen.max, 4);
    assert_true(metric(h, QLEN, 0) == 0);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QUEUED, 46) >= 40); /* most of them waited */
    stop_both(h, fo);
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
    c[0] = send_held(h, "/first", 1);
    for (int i = 1; i <= 5; i++) {
        char path[16];
        snprintf(path, sizeof(path), "/q%d", i);
        c[i] = send_queued(h, path, i);
    }
    release_hold();
    for (int i = 0; i <= 5; i++)
        expect_status(c[i], 200);
    seen_sync();
    assert_int_equal(seen.n, 6);
    const char *want[] = {"/first", "/q1", "/q2", "/q3", "/q4", "/q5"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(seen.path[i], want[i]);
    assert_int_equal(seen.max, 1);
    stop_both(h, fo);
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
        struct raw_conn *first = send_held(h, "/first", 1);
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
        release_first(first);
        in_flight_is(h, fo, 0);
        stop_both(h, fo);
    }
}

/* ---- queue_full ---- */

/* max_queue = 1: the one waiter waits, the next request is refused at once with queue_full. */
static void test_queue_full(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 1, NULL, "max_conns=1", "max_queue = 1\nqueue_timeout = 30s\n");
    struct raw_conn *first = send_held(h, "/first", 1);
    struct raw_conn *waiter = send_queued(h, "/waiter", 1);
    struct raw_response r;
    int64_t t0 = tu_now_ms();
    assert_int_equal(read_status(send_get(h, "/refused"), &r), 503);
    assert_true(tu_now_ms() - t0 < 2000);
    assert_string_equal(raw_header(&r, "Portico-Error"), "queue_full");
    assert_non_null(strstr(raw_header(&r, "Proxy-Status"),
                           "the queue of upstream u is full (max_queue 1): all 1 origin at "
                           "max_conns 1"));
    raw_response_free(&r);
    release_first(first);
    expect_status(waiter, 200);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
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
    struct raw_conn *first = send_held(h, "/first", 1);
    struct raw_conn *gone = send_queued(h, "/gone", 1);
    raw_abort(gone);
    assert_true(metric(h, QLEN, 0) == 0);
    struct raw_conn *next = send_queued(h, "/next", 1); /* the place was given back */
    release_first(first);
    expect_status(next, 200);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QLEN, 0) == 0);
    struct raw_response r;
    assert_int_equal(read_status(send_get(h, "/after"), &r), 200);
    raw_response_free(&r);
    seen_sync();
    for (unsigned i = 0; i < seen.n && i < MAX_SEEN; i++)
        assert_string_not_equal(seen.path[i], "/gone");
    stop_both(h, fo);
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
    seen_sync();
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
    stop_both(h, fo);
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
    seen_sync();
    assert_int_equal(seen.max, 1);
    assert_int_equal(seen.n, 4);
    assert_true(metric(h, QUEUED, 3) >= 2); /* streams waited, on one connection */
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
}

/* ---- reload ---- */

/* Waits until the origin has seen n requests in all. */
static void wait_seen(unsigned n)
{
    int64_t end = tu_now_ms() + PX_IO_MS;
    pthread_mutex_lock(&seen.lock);
    while (seen.n < n && tu_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&seen.cond, &seen.lock, &ts);
    }
    unsigned got = seen.n;
    pthread_mutex_unlock(&seen.lock);
    if (got < n)
        fail_msg("the origin saw %u requests, want %u", got, n);
}

/* The requests the origin saw in all, and the most it held at once, now. */
static unsigned seen_count(int *max)
{
    pthread_mutex_lock(&seen.lock);
    unsigned n = seen.n;
    *max = seen.max;
    pthread_mutex_unlock(&seen.lock);
    return n;
}

/* Writes upstream u anew (its origin lines and options after `[upstream u]`), the rest as
 * start() wrote it, and reloads: back once generation gen is live. */
static void reload_to(struct harness *h, int workers, unsigned gen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reload_to(struct harness *h, int workers, unsigned gen, const char *fmt, ...)
{
    char upstream[512], live[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(upstream, sizeof(upstream), fmt, ap);
    va_end(ap);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "workers = %d\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n"
                                          "[upstream u]\n%s",
                                          workers, upstream),
                     0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    snprintf(live, sizeof(live), "is live (generation %u", gen);
    assert_int_equal(harness_wait_log(h, live, PX_IO_MS), 0);
}

/* The path of the kth request the origin saw. */
static const char *seen_path(unsigned k)
{
    seen_sync();
    return seen.path[k];
}

/* A reload that keeps the upstream as it was keeps its origin's count: two requests held at
 * max_conns=2 (and one waiting in the old generation's queue) hold the origin full for the new
 * generation too, whose request waits instead of going to the origin as a third (the count
 * was the generation's: the origin then held 3). Each slot freed goes to the oldest waiter,
 * the old generation's first, then the new one's; the origin never holds more than 2. */
static void test_reload_mid_flight(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=2", "queue_timeout = 30s\n");
    struct raw_conn *old[2] = {send_held(h, "/old-1", 1), send_held(h, "/old-2", 2)};
    struct raw_conn *queued = send_queued(h, "/old-queued", 1);
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u max_conns=2\nqueue_timeout = 30s\n",
              fake_origin_port(fo));
    in_flight_is(h, fo, 2); /* the old generation's requests, counted by the new one */
    assert_true(metric(h, QUEUED, 1) == 1); /* carried over */
    struct raw_conn *fresh = send_queued(h, "/new", 1);
    int max;
    assert_int_equal(seen_count(&max), 2); /* it waits: not sent */
    release_one(); /* an old request ends: its slot goes to the old generation's waiter */
    wait_seen(3);
    assert_string_equal(seen_path(2), "/old-queued");
    assert_true(metric(h, QLEN, 1) == 1); /* the new one waits on */
    release_one(); /* the next slot is the new generation's waiter's */
    wait_seen(4);
    assert_string_equal(seen_path(3), "/new");
    assert_true(metric(h, QLEN, 0) == 0);
    assert_int_equal(seen_count(&max), 4);
    assert_int_equal(max, 2);
    release_hold();
    expect_status(old[0], 200);
    expect_status(old[1], 200);
    expect_status(queued, 200);
    expect_status(fresh, 200);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QUEUED, 2) == 2);
    stop_both(h, fo);
}

/* A reload that lowers max_conns from 4 to 2 with 4 requests in flight: the new limit is over
 * every generation's requests, so a new request waits while 4, then 3, then 2 are in flight,
 * and goes to the origin only when an end leaves a slot under the new limit (it went at once:
 * the new generation counted from 0). */
static void test_reload_lowers_max_conns(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=4", "queue_timeout = 30s\n");
    struct raw_conn *old[4];
    for (int i = 0; i < 4; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/old-%d", i);
        old[i] = send_held(h, path, i + 1);
    }
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u max_conns=2\nqueue_timeout = 30s\n",
              fake_origin_port(fo));
    in_flight_is(h, fo, 4);
    struct raw_conn *fresh = send_queued(h, "/new", 1);
    int max;
    for (int left = 3; left >= 2; left--) {
        release_one(); /* an old one ends: still at or over the new max_conns */
        in_flight_is(h, fo, left);
        assert_true(metric(h, QLEN, 1) == 1);
        assert_int_equal(seen_count(&max), 4);
    }
    release_one(); /* 2 - 1 is under 2: the slot is the waiter's */
    wait_seen(5);
    assert_string_equal(seen_path(4), "/new");
    assert_true(metric(h, QLEN, 0) == 0);
    in_flight_is(h, fo, 2);
    release_hold();
    for (int i = 0; i < 4; i++)
        expect_status(old[i], 200);
    expect_status(fresh, 200);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
}

/* An origin a reload drops keeps its count while its requests are under way, and a second
 * reload that lists it again counts on from them: its max_conns=1 is held by the first
 * generation's request, and the third generation's waits for it (it went to the origin at
 * once, which then held 2). */
static void test_reload_origin_back(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct fake_origin_opts other_opts = {.kind = FO_OK};
    struct fake_origin *other = fake_origin_start(&other_opts);
    assert_non_null(other);
    struct harness *h = start(fo, 2, NULL, "max_conns=1", "queue_timeout = 30s\n");
    struct raw_conn *held = send_held(h, "/gen-1", 1);
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u max_conns=1\nqueue_timeout = 30s\n",
              fake_origin_port(other));
    expect_status(send_get(h, "/gen-2"), 200); /* the other origin's */
    reload_to(h, 2, 3, "origin = 127.0.0.1:%u max_conns=1\nqueue_timeout = 30s\n",
              fake_origin_port(fo));
    in_flight_is(h, fo, 1);
    struct raw_conn *fresh = send_queued(h, "/gen-3", 1);
    int max;
    assert_int_equal(seen_count(&max), 1);
    release_one();
    in_flight_is(h, fo, 1); /* the slot is the waiter's */
    wait_seen(2);
    assert_string_equal(seen_path(1), "/gen-3");
    assert_true(metric(h, QLEN, 0) == 0);
    release_hold();
    expect_status(held, 200);
    expect_status(fresh, 200);
    in_flight_is(h, fo, 0);
    assert_int_equal(seen_count(&max), 2);
    assert_int_equal(max, 1);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(other);
    fake_origin_stop(fo);
}

/* (fixes19) An origin listed twice at max_conns=1 holds 2 requests; a reload lists it once at
 * max_conns=2: the dropped listing's request drains into the one count, so the new generation
 * sees the origin full (2 of 2) and its request waits; it goes when one of the two ends, and
 * the origin never holds more than 2. Before, the new count had only the first listing's
 * request, the new one went at once, and the origin held 3. */
static void test_reload_drops_a_listing(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    char second[96];
    snprintf(second, sizeof(second), "origin = 127.0.0.1:%u max_conns=1\nqueue_timeout = 30s\n",
             fake_origin_port(fo));
    struct harness *h = start(fo, 2, NULL, "max_conns=1", second);
    struct raw_conn *old[2] = {send_held(h, "/old-1", 1), send_held(h, "/old-2", 2)};
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u max_conns=2\nqueue_timeout = 30s\n",
              fake_origin_port(fo));
    struct raw_conn *fresh = send_get(h, "/new");
    int max;
    if (metric(h, QLEN, 1) != 1) { /* it went at once */
        wait_seen(3);
        unsigned n = seen_count(&max);
        fail_msg("the new request did not wait: the origin saw %u requests, %d at once", n, max);
    }
    assert_int_equal(seen_count(&max), 2); /* it waits: not sent */
    in_flight_is(h, fo, 2); /* both listings' requests, on the one count */
    release_one();
    wait_seen(3);
    assert_string_equal(seen_path(2), "/new");
    assert_true(metric(h, QLEN, 0) == 0);
    in_flight_is(h, fo, 2);
    release_hold();
    expect_status(old[0], 200);
    expect_status(old[1], 200);
    expect_status(fresh, 200);
    in_flight_is(h, fo, 0);
    assert_int_equal(seen_count(&max), 3);
    assert_int_equal(max, 2);
    stop_both(h, fo);
}

/* A waiter of the old generation that times out after a reload lowered max_conns from 4 to 2
 * names the limit that held it, 2 (it said 4: its own generation's file). */
static void test_reload_timeout_names_live_max(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=4", "queue_timeout = 4s\n");
    struct raw_conn *old[4];
    for (int i = 0; i < 4; i++)
        old[i] = send_held(h, "/old", i + 1);
    struct raw_conn *waiter = send_queued(h, "/old-queued", 1);
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u max_conns=2\nqueue_timeout = 4s\n",
              fake_origin_port(fo));
    struct raw_response r;
    assert_int_equal(read_status(waiter, &r), 503);
    assert_string_equal(raw_header(&r, "Portico-Error"), "queue_timeout");
    const char *ps = raw_header(&r, "Proxy-Status");
    assert_non_null(ps);
    assert_non_null(strstr(ps, "in the queue of upstream u: all 1 origin at max_conns 2\""));
    raw_response_free(&r);
    release_hold();
    for (int i = 0; i < 4; i++)
        expect_status(old[i], 200);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
}

/* (qcount) A waiter of the old generation that times out after a reload is counted where
 * /metrics reads it: the counters are the share's, every generation's. Before, a reload copied
 * the old generation's totals once, and its timeout after it left the counter at 0. */
static void test_reload_old_waiter_timeout_counted(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=1", "queue_timeout = 3s\n");
    struct raw_conn *held = send_held(h, "/old", 1);
    struct raw_conn *waiter = send_queued(h, "/old-queued", 1);
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u max_conns=1\nqueue_timeout = 3s\n",
              fake_origin_port(fo));
    assert_true(metric(h, QTIMEOUTS, 0) == 0); /* it waits on, in the old generation */
    struct raw_response r;
    assert_int_equal(read_status(waiter, &r), 503);
    assert_string_equal(raw_header(&r, "Portico-Error"), "queue_timeout");
    raw_response_free(&r);
    double timeouts = metric(h, QTIMEOUTS, 1);
    if (timeouts != 1)
        fail_msg("the old generation's waiter timed out; the counter says %.0f", timeouts);
    assert_true(metric(h, QUEUED, 1) == 1);
    release_hold();
    expect_status(held, 200);
    stop_both(h, fo);
}

/* (qcount) Reloads that lose max_conns and gain it back (each a new share) keep the counters:
 * a queued request and a timeout before them are still counted after (the reload without
 * max_conns had no queue, copied nothing, and the third generation's counters began at 0). */
static void test_reload_max_conns_off_and_on_keeps_counters(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=1", "queue_timeout = 1s\n");
    struct raw_conn *held = send_held(h, "/held", 1);
    struct raw_response r;
    assert_int_equal(read_status(send_queued(h, "/queued", 1), &r), 503);
    raw_response_free(&r);
    assert_true(metric(h, QTIMEOUTS, 1) == 1);
    release_hold();
    expect_status(held, 200);
    in_flight_is(h, fo, 0);
    reload_to(h, 2, 2, "origin = 127.0.0.1:%u\n", fake_origin_port(fo));
    reload_to(h, 2, 3, "origin = 127.0.0.1:%u max_conns=1\nqueue_timeout = 1s\n",
              fake_origin_port(fo));
    double queued = metric(h, QUEUED, 1), timeouts = metric(h, QTIMEOUTS, 1);
    if (queued != 1 || timeouts != 1)
        fail_msg("after max_conns off and on: queued %.0f, timeouts %.0f, want 1 and 1", queued,
                 timeouts);
    stop_both(h, fo);
}

/* ---- rehearsals ---- */

/* A [fault] failure rehearsed while the origin is at max_conns waits in the queue as a real
 * request would (it used to fail at once with no_healthy_origin, "marked down": an origin that
 * is up), then fails as rehearsed on the slot it was handed, which it gives back. */
static void test_rehearsal_queues(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 1, NULL, "max_conns=1",
                              "queue_timeout = 30s\n"
                              "[faults]\n[fault refuse]\nprefix = /rehearse\n"
                              "failure = connect_refused\n");
    struct raw_conn *first = send_held(h, "/first", 1);
    struct raw_conn *rehearsal = send_queued(h, "/rehearse", 1); /* it waits, as a real request */
    release_first(first);
    struct raw_response r;
    assert_int_equal(read_status(rehearsal, &r), 502);
    assert_string_equal(raw_header(&r, "Portico-Error"), "connect_refused");
    assert_non_null(raw_header(&r, "Portico-Fault"));
    raw_response_free(&r);
    char *line = harness_file_line(h, "access.log", "target=\"/rehearse\"", PX_IO_MS);
    assert_non_null(line);
    assert_non_null(strstr(line, "timing=queue:"));
    free(line);
    in_flight_is(h, fo, 0);
    assert_true(metric(h, QLEN, 0) == 0);
    stop_both(h, fo);
}

/* ---- /status ---- */

/* /status shows the queue as the metrics do: the upstream's max_queue, length, waited and
 * timed-out totals, each origin's in-flight count beside its max_conns; null without a limit;
 * the status page renders them. */
static void test_status_shows_queue(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 1, NULL, "max_conns=1",
                              "max_queue = 7\nqueue_timeout = 30s\n"
                              "[upstream free]\norigin = 127.0.0.1:1\n"
                              "[route r]\nupstream = u\n");
    struct raw_conn *c[3];
    c[0] = send_held(h, "/first", 1);
    c[1] = send_get(h, "/q1");
    c[2] = send_queued(h, "/q2", 2);
    char *text = px_admin_body(h, "/status"), err[128];
    struct tj *doc = tj_parse(text, err, sizeof(err));
    free(text);
    assert_non_null(doc);
    const struct tj *ups = tj_get(doc, "upstreams");
    assert_true(ups && ups->n == 2);
    const struct tj *u = ups->items[0], *free_up = ups->items[1];
    double v = -1;
    assert_int_equal(tj_num(u, "max_queue", &v), 0);
    assert_true(v == 7);
    assert_int_equal(tj_num(u, "queue_length", &v), 0);
    assert_true(v == 2);
    assert_int_equal(tj_num(u, "queued_total", &v), 0);
    assert_true(v == 2);
    assert_int_equal(tj_num(u, "queue_timeouts_total", &v), 0);
    assert_true(v == 0);
    const struct tj *o = tj_get(u, "origins")->items[0];
    assert_int_equal(tj_num(o, "in_flight", &v), 0);
    assert_true(v == 1);
    assert_int_equal(tj_num(o, "max_conns", &v), 0);
    assert_true(v == 1);
    assert_true(tj_is_null(free_up, "max_queue") && tj_is_null(free_up, "queue_length"));
    assert_true(tj_is_null(tj_get(free_up, "origins")->items[0], "max_conns"));
    tj_free(doc);
    char *page = px_admin_body(h, "/");
    assert_non_null(strstr(page, "' of max_conns '"));
    assert_non_null(strstr(page, "', queue '"));
    free(page);
    release_hold();
    for (int i = 0; i < 3; i++)
        expect_status(c[i], 200);
    stop_both(h, fo);
}

/* ---- health while waiting ---- */

/* The origin is marked down (max_fails = 1) by the request holding its one slot while two wait:
 * they fail no_healthy_origin at once, as a new request would, instead of waiting out their
 * queue_timeout (30 s) for an origin that takes nothing; no slot is kept. */
static void test_down_fails_waiters(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h = start(fo, 2, NULL, "max_conns=1",
                              "max_fails = 1\ndown_time = 30s\nretries = 0\n"
                              "queue_timeout = 30s\n");
    struct raw_conn *c[3];
    c[0] = send_held(h, "/reset-first", 1);
    c[1] = send_get(h, "/q1");
    c[2] = send_queued(h, "/q2", 2);
    int64_t t0 = tu_now_ms();
    release_hold();
    expect_status(c[0], 502);
    for (int i = 1; i <= 2; i++) {
        struct raw_response r;
        assert_int_equal(read_status(c[i], &r), 503);
        assert_string_equal(raw_header(&r, "Portico-Error"), "no_healthy_origin");
        raw_response_free(&r);
    }
    int64_t waited = tu_now_ms() - t0;
    print_message("  origin marked down with 2 waiting: both answered in %lld ms\n",
                  (long long)waited);
    assert_true(waited < 3000);
    assert_true(metric(h, QLEN, 0) == 0);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
}

/* A second origin whose checks fail, then pass: its checks answer 500 until told. */
static const struct fo_step *pick_healthz(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    bool check = strncmp(req->head, "GET /healthz ", 13) == 0;
    return check && atomic_load(&healthz_failing) ? healthz_500 : respond_ok;
}

/* A waiter is handed a slot of an origin its health check brings back up: the held origin is
 * full, the other failing its checks, and once that one passes the waiter is served there at
 * once (it used to wait for the held one's slot, here for ever, while a new request would have
 * taken the free one). */
static void test_check_up_wakes_waiters(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    atomic_store(&healthz_failing, true);
    struct fake_origin_opts sick_opts = {.kind = FO_SCRIPT, .pick_script = pick_healthz};
    struct fake_origin *sick = fake_origin_start(&sick_opts);
    assert_non_null(sick);
    char up[256];
    snprintf(up, sizeof(up),
             "origin = 127.0.0.1:%u max_conns=1\nqueue_timeout = 30s\n"
             "health_check = GET /healthz every 100ms expect 2xx\n",
             fake_origin_port(sick));
    struct harness *h = start(fo, 1, NULL, "max_conns=1", up);
    assert_int_equal(harness_wait_log(h, "failed its health check", PX_IO_MS), 0);
    struct raw_conn *first = send_held(h, "/first", 1);
    struct raw_conn *waiter = send_queued(h, "/waiter", 1);
    atomic_store(&healthz_failing, false);
    expect_status(waiter, 200); /* served by the origin back up, the first one still held */
    seen_sync();
    assert_int_equal(seen.now, 1);
    assert_true(metric(h, QLEN, 0) == 0);
    release_first(first);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
    fake_origin_stop(sick);
}

/* ---- the detail's origins ---- */

/* GET /late, which waits out queue_timeout (300 ms): its detail from "in the queue" on. */
static const char *late_detail(struct harness *h, char *buf, size_t size)
{
    struct raw_response r;
    assert_int_equal(read_status(send_get(h, "/late"), &r), 503);
    assert_string_equal(raw_header(&r, "Portico-Error"), "queue_timeout");
    const char *ps = raw_header(&r, "Proxy-Status");
    assert_non_null(ps);
    const char *at = strstr(ps, "in the queue of upstream u: ");
    assert_non_null(at);
    snprintf(buf, size, "%.*s", (int)strcspn(at, "\""), at);
    assert_non_null(strstr(r.body, "\nlimit: 300 ms\n")); /* queue_timeout's */
    raw_response_free(&r);
    return buf;
}

/* The Proxy-Status detail of a queue_timeout: the origins the request could use, "their
 * max_conns" when those differ (an origin listed twice at two limits); the in-flight gauge of an
 * origin listed twice sums both listings. */
static void test_queue_detail_origins(void **state)
{
    (void)state;
    char opts[160], detail[160];
    struct fake_origin *fo = origin_start(0, true);
    /* the origin listed twice, at max_conns 1 and 2: three held, the fourth waits */
    snprintf(opts, sizeof(opts), "max_conns=1\norigin = 127.0.0.1:%u max_conns=2",
             fake_origin_port(fo));
    struct harness *h = start(fo, 1, NULL, opts, "queue_timeout = 300ms\n");
    struct raw_conn *held[3];
    for (int i = 0; i < 3; i++)
        held[i] = send_get(h, "/held");
    wait_held(3);
    in_flight_is(h, fo, 3); /* both listings' counts, summed in one row */
    assert_string_equal(late_detail(h, detail, sizeof(detail)),
                        "in the queue of upstream u: all 2 origins at their max_conns");
    release_hold();
    for (int i = 0; i < 3; i++)
        expect_status(held[i], 200);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
}

/* ---- a handed slot is a pick's ---- */

/* A waiter handed the slot of the only origin tried it as a pick would: with retry_sent its
 * attempt, closed without an answer, is not retried on that origin (502, two requests seen). */
static void test_queue_granted_is_tried(void **state)
{
    (void)state;
    struct fake_origin *fo = origin_start(0, true);
    struct harness *h =
        start(fo, 1, NULL, "max_conns=1", "retry_sent = on\nqueue_timeout = 30s\n");
    struct raw_conn *first = send_held(h, "/first", 1);
    struct raw_conn *closed = send_queued(h, "/close", 1);
    release_first(first);
    struct raw_response r;
    assert_int_equal(read_status(closed, &r), 502);
    assert_string_equal(raw_header(&r, "Portico-Error"), "empty_response");
    raw_response_free(&r);
    seen_sync();
    assert_int_equal(seen.n, 2);
    in_flight_is(h, fo, 0);
    stop_both(h, fo);
}

/* ---- the metrics' rows ---- */

/* The queue's families have one row per upstream, however many origins it has; the in-flight
 * gauge one per origin. */
static void test_queue_metrics_one_row(void **state)
{
    (void)state;
    uint16_t other;
    assert_int_equal(tu_free_port(&other), 0); /* listed, never asked */
    struct fake_origin *fo = origin_start(0, false);
    char opts[96];
    snprintf(opts, sizeof(opts), "max_conns=1\norigin = 127.0.0.1:%u max_conns=1", other);
    struct harness *h = start(fo, 1, NULL, opts, NULL);
    char *text = scrape_metrics(harness_port(h, "admin"), PX_IO_MS);
    assert_non_null(text);
    static const char *const rows[][2] = {
        {"portico_upstream_queue_length{upstream=\"u\"} ", "1"},
        {"portico_upstream_queued_total{upstream=\"u\"} ", "1"},
        {"portico_upstream_queue_timeouts_total{upstream=\"u\"} ", "1"},
        {"portico_upstream_origin_in_flight{upstream=\"u\",", "2"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int n = 0;
        for (const char *at = text; (at = strstr(at, rows[i][0])); at++)
            n++;
        if (n != atoi(rows[i][1]))
            fail_msg("%d rows of %s, want %s", n, rows[i][0], rows[i][1]);
    }
    free(text);
    stop_both(h, fo);
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
        cmocka_unit_test(test_reload_lowers_max_conns),
        cmocka_unit_test(test_reload_origin_back),
        cmocka_unit_test(test_reload_timeout_names_live_max),
        cmocka_unit_test(test_reload_drops_a_listing),
        cmocka_unit_test(test_reload_old_waiter_timeout_counted),
        cmocka_unit_test(test_reload_max_conns_off_and_on_keeps_counters),
        cmocka_unit_test(test_rehearsal_queues),
        cmocka_unit_test(test_status_shows_queue),
        cmocka_unit_test(test_down_fails_waiters),
        cmocka_unit_test(test_check_up_wakes_waiters),
        cmocka_unit_test(test_queue_detail_origins),
        cmocka_unit_test(test_queue_granted_is_tried),
        cmocka_unit_test(test_queue_metrics_one_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
