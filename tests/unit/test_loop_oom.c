/*
 * test_loop_oom.c — a worker's loop out of memory, each libevent allocation failing in turn
 * (alloc_fail.h), the loop set up as the probe sets one up:
 *  - the responses Portico writes itself, through an exchange whose downstream records what it
 *    is given: a response whose head said a length carries that many bytes or ends cut short
 *    (END_ABORT: the client's connection closes), never complete with fewer (a keep-alive
 *    client would read the next response as the rest of this one), and its access record's
 *    bytes are those that went;
 *  - an active health check against an origin that answers 200: it passes or gives no verdict
 *    (our own shortage), never fails, which would count toward marking the origin down;
 *  - a health check whose next check's timer could not be armed (event_add failing, through
 *    --wrap=event_add): its checks stop, and resume from the worker's tick once the timer can
 *    be armed again, the origin's state following the origin (down, then up).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "alloc_fail.h"
#include "portico/config.h"
#include "portico/deadline.h"
#include "portico/downstream.h"
#include "portico/exchange.h"
#include "portico/balance.h"
#include "portico/generation.h"
#include "portico/health.h"
#include "portico/http1.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/recent.h"
#include "portico/trace.h"
#include "portico/upstream.h"
#include "portico/util.h"
#include "portico/worker.h"

#define MAX_ALLOCS 400 /* an answer of Portico's own makes fewer allocations than this */

static long allocs_seen; /* by the last run, from its alloc_fail_at on */

/* ---- a downstream that records ---- */

struct recorder {
    struct event_base *base;
    struct evbuffer *out, *in;
    bool got_head, sized, done;
    uint64_t length;                   /* the head's Content-Length, when sized */
    uint64_t body;                     /* body bytes given */
    enum exchange_end end;
    bool reported;                     /* the access record came (report) */
    uint64_t bytes_out;                /* the body bytes it says went */
};

static void ds_interim(void *arg, const struct resp_head *head)
{
    (void)arg, (void)head;
}

static void ds_head(void *arg, const struct resp_head *head, struct body_sink *sink)
{
    struct recorder *r = arg;
    r->got_head = true;
    r->sized = head->framing == H1_BODY_LENGTH;
    r->length = head->content_length;
    *sink = (struct body_sink){.out = r->out};
}

static void ds_body(void *arg)
{
    struct recorder *r = arg;
    size_t n = evbuffer_get_length(r->out);
    r->body += n;
    evbuffer_drain(r->out, n);
}

static size_t ds_pending(void *arg)
{
    (void)arg;
    return 0;
}

static struct evbuffer *ds_request_input(void *arg)
{
    return ((struct recorder *)arg)->in;
}

static void ds_request_taken(void *arg, size_t queued)
{
    (void)arg, (void)queued;
}

static void ds_request_wait(void *arg, uint64_t body_timeout_ms)
{
    (void)arg, (void)body_timeout_ms;
}

static void ds_done(void *arg, enum exchange_end end)
{
    struct recorder *r = arg;
    ds_body(r); /* the last bytes come with done() */
    r->done = true;
    r->end = end;
    event_base_loopbreak(r->base);
}

static void ds_report(void *arg, const struct access_record *rec)
{
    struct recorder *r = arg;
    r->reported = true;
    r->bytes_out = rec->bytes_out;
}

static const struct downstream_ops recorder_ops = {
    .interim = ds_interim,
    .head = ds_head,
    .body = ds_body,
    .pending = ds_pending,
    .request_input = ds_request_input,
    .request_taken = ds_request_taken,
    .request_wait = ds_request_wait,
    .done = ds_done,
    .report = ds_report,
};

/* ---- a worker's loop, as the probe sets one up (no resolver: nothing here looks up) ---- */

static struct generation *gen;

static int gen_setup(void **state)
{
    (void)state;
    struct config *cfg = cfg_load_string("[proxy]\naccess_log = off\n"
                                         "[upstream u]\norigin = 127.0.0.1:9\n"
                                         "[fault f503]\nprefix = /fault/\nstatus = 503\n",
                                         "oom.ini", NULL, stderr, NULL);
    gen = cfg ? generation_new(cfg, 1) : NULL;
    return gen ? 0 : -1;
}

static int gen_teardown(void **state)
{
    (void)state;
    generation_free(gen);
    return 0;
}

static void loop_up(struct loop *l, struct generation *g)
{
    *l = (struct loop){.cfg = g->cfg, .gen = g, .state = LOOP_RUNNING, .id_salt = 1};
    TAILQ_INIT(&l->clients);
    TAILQ_INIT(&l->idle);
    TAILQ_INIT(&l->proxy_waiting);
    l->base = event_base_new();
    assert_non_null(l->base);
    l->clock = deadline_clock_new(l->base);
    l->metrics = metrics_shard_create(NULL);
    l->recent = recent_shard_create(g->number, 0);
    assert_non_null(l->clock);
    assert_non_null(l->metrics);
    assert_non_null(l->recent);
    assert_int_equal(upstream_pools_init(l), 0);
    trace_rng_init(&l->rng, 1);
}

static void loop_down(struct loop *l)
{
    upstream_pools_free(l);
    for (int i = 0; i < 50 && event_base_loop(l->base, EVLOOP_NONBLOCK) == 0; i++)
        ;
    deadline_clock_free(l->clock);
    event_base_free(l->base);
    metrics_shard_retire(l->metrics);
    recent_shard_retire(l->recent);
    exchange_spare_free(l);
}

/* One turn of the loop without waiting, then a millisecond's pause: event_base_loopexit would
 * need an allocation of its own (event_base_once), which the sweep may fail, and a loop left
 * to wait could then wait for ever. */
static void turn(struct event_base *base)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    poll(NULL, 0, 1);
}

/* Runs request text through an exchange with allocation fail_at failing (-1: none); false when
 * the exchange could not even start (an allocation of its own failed). */
static bool run(const char *text, long fail_at, struct recorder *r)
{
    static const struct peer peer = {.conn_id = 1, .ip = "127.0.0.1"};
    struct loop l;
    loop_up(&l, gen);
    *r = (struct recorder){.base = l.base, .out = evbuffer_new(), .in = evbuffer_new()};
    assert_non_null(r->out);
    assert_non_null(r->in);
    struct h1_request req;
    struct h1_error err;
    struct h1_limits lim = {8192, 16384};
    size_t n = strlen(text);
    assert_int_equal(h1_parse_request(text, n, &lim, &req, &err), (int)n);
    struct downstream ds = {.ops = &recorder_ops, .ctx = r, .peer = &peer,
                            .proto = PROTO_HTTP11};
    alloc_fail_at(fail_at);
    struct exchange *ex = exchange_start(&l, &ds, text, n, &req, now_us());
    if (ex) {
        exchange_run(ex);
        for (uint64_t until = now_us() + 2000000; !r->done && now_us() < until;)
            turn(l.base);
        if (!r->done)
            exchange_cancel(ex, HTTP_CLIENT_CLOSED_REQUEST, "test stopped");
    }
    allocs_seen = alloc_fail_count;
    alloc_fail_at(-1);
    evbuffer_free(r->out);
    evbuffer_free(r->in);
    loop_down(&l);
    return ex != NULL;
}

static const struct {
    const char *why;
    const char *request;
    int status;
} rows[] = {
    {"TRACE with Max-Forwards: 0 (answered 405 with a body)",
     "TRACE / HTTP/1.1\r\nHost: t\r\nMax-Forwards: 0\r\n\r\n", 405},
    {"a fault's 503 (an error page)", "GET /fault/x HTTP/1.1\r\nHost: t\r\n\r\n", 503},
};

static void test_own_answer_whole_or_cut(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct recorder r;
        assert_true(run(rows[i].request, -1, &r));
        assert_true(r.done && r.got_head && r.sized && r.length > 0);
        assert_int_equal(r.body, r.length);
        assert_int_equal(r.end, END_KEEP);
        unsigned cut = 0;
        bool reached = true;
        long swept = 0;
        for (long n = 0; n < MAX_ALLOCS && reached; n++, swept++) {
            bool started = run(rows[i].request, n, &r);
            reached = allocs_seen > n; /* the nth allocation came */
            if (!started || !r.got_head || !r.sized || r.body == r.length)
                continue;
            if (r.end != END_ABORT)
                fail_msg("%s, allocation %ld failing: %llu body bytes of %llu, yet ended %d "
                         "(not cut short)", rows[i].why, n, (unsigned long long)r.body,
                         (unsigned long long)r.length, (int)r.end);
            if (r.reported && r.bytes_out != r.body) /* the access log's bytes: what went */
                fail_msg("%s, allocation %ld failing: %llu body bytes went, logged %llu",
                         rows[i].why, n, (unsigned long long)r.body,
                         (unsigned long long)r.bytes_out);
            cut++;
        }
        assert_false(reached); /* the sweep went past the last allocation */
        print_message("%s: %u of the %ld allocations failing cut the body short, each "
                      "END_ABORT\n", rows[i].why, cut, swept);
        assert_true(cut > 0); /* the sweep did reach the body's addition */
    }
}

/* ---- an active health check ---- */

/* The origin: a thread with blocking sockets (no libevent: every allocation the sweep counts
 * is the worker loop's), answering each connection's request 200 (or 500 while failing) and
 * closing. */
struct origin {
    int lfd;
    uint16_t port;
    volatile bool stop;
    _Atomic bool failing;              /* answers 500 */
    _Atomic unsigned accepted;         /* connections accepted: the checks made */
    pthread_t thread;
};

static void *origin_main(void *arg)
{
    struct origin *o = arg;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n";
    static const char failing[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
    while (!o->stop) {
        struct pollfd pfd = {.fd = o->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(o->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        o->accepted++;
        const char *answer = o->failing ? failing : ok;
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char req[2048];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof(req) - 1 && (n = recv(fd, req + got, sizeof(req) - 1 - got, 0)) > 0) {
            got += (size_t)n;
            req[got] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        if (got && strstr(req, "\r\n\r\n"))
            (void)!write(fd, answer, strlen(answer));
        close(fd);
    }
    return NULL;
}

static void origin_start(struct origin *o)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    o->stop = false;
    o->failing = false;
    o->accepted = 0;
    o->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(o->lfd >= 0);
    assert_int_equal(bind(o->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(o->lfd, 16), 0);
    assert_int_equal(getsockname(o->lfd, (struct sockaddr *)&sa, &len), 0);
    o->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&o->thread, NULL, origin_main, o), 0);
}

static void origin_stop(struct origin *o)
{
    o->stop = true;
    pthread_join(o->thread, NULL);
    close(o->lfd);
}

/* The error log (stderr by default) read back: no_verdict says "not made" and nothing else
 * shows that a check ended without a verdict. */
static int log_pipe[2] = {-1, -1};

static bool log_says(const char *needle)
{
    static char text[8192];
    static size_t len;
    ssize_t n;
    while (len < sizeof(text) - 1 &&
           (n = read(log_pipe[0], text + len, sizeof(text) - 1 - len)) > 0)
        len += (size_t)n;
    text[len] = '\0';
    bool found = strstr(text, needle) != NULL;
    if (found || len == sizeof(text) - 1)
        len = 0; /* read from here on */
    return found;
}

enum check_end { CHECK_END_NONE, CHECK_END_PASSED, CHECK_END_FAILED, CHECK_END_NO_VERDICT };

/* One health check of o with allocation fail_at failing (-1: none): how it ended. */
static enum check_end check_once(struct origin *o, long fail_at)
{
    char text[512];
    snprintf(text, sizeof(text),
             "[proxy]\naccess_log = off\n[upstream u]\norigin = 127.0.0.1:%u\n"
             "health_check = GET /healthz every 10s expect 200 timeout 3s\n", o->port);
    struct config *cfg = cfg_load_string(text, "health.ini", NULL, stderr, NULL);
    assert_non_null(cfg);
    struct generation *g = generation_new(cfg, 1);
    assert_non_null(g);
    struct loop l;
    loop_up(&l, g);
    struct health *h = NULL;
    (void)log_says("\n"); /* what came before this check */
    alloc_fail_at(fail_at);
    enum check_end end = CHECK_END_NONE;
    if (health_start(&l, &h) != 0) {
        end = CHECK_END_NO_VERDICT;
    } else {
        /* past the check's timeout: a check that hangs ends failed, never NONE; 3 s, not
         * 300 ms, as a loaded machine (load 15) kept the origin's thread from answering */
        uint64_t until = now_us() + 5000000;
        while (end == CHECK_END_NONE && now_us() < until) {
            turn(l.base);
            int run = balancer_checks_in_row(g->balancers[0], 0);
            end = run > 0                        ? CHECK_END_PASSED
                  : run < 0                      ? CHECK_END_FAILED
                  : log_says("health check of ") ? CHECK_END_NO_VERDICT
                                                 : CHECK_END_NONE;
        }
    }
    allocs_seen = alloc_fail_count;
    alloc_fail_at(-1);
    health_stop(h);
    loop_down(&l);
    generation_free(g);
    return end;
}

static void test_health_check_request_whole_or_no_verdict(void **state)
{
    (void)state;
    struct origin o;
    origin_start(&o);
    assert_int_equal(check_once(&o, -1), CHECK_END_PASSED);
    unsigned no_verdict = 0;
    bool reached = true;
    long swept = 0;
    for (long n = 0; n < MAX_ALLOCS && reached; n++, swept++) {
        enum check_end end = check_once(&o, n);
        reached = allocs_seen > n;
        if (end == CHECK_END_FAILED || end == CHECK_END_NONE)
            fail_msg("allocation %ld failing: the check %s", n,
                     end == CHECK_END_FAILED ? "failed, counted against the origin"
                                             : "never ended");
        no_verdict += end == CHECK_END_NO_VERDICT;
    }
    assert_false(reached);
    print_message("a health check: %u of the %ld allocations failing gave no verdict, the "
                  "others passed\n", no_verdict, swept);
    assert_true(no_verdict > 0);
    origin_stop(&o);
}

/* ---- a health check whose timer could not be armed ---- */

/* event_add, wrapped (the Makefile's --wrap=event_add): the health check's timer is told apart
 * by its callback, the one of the first timer health_start arms. From its add number
 * health_timer_fail_from (counted from health_start's, 0) on, its adds fail as libevent's do
 * out of memory; -1: none fails. */
int __real_event_add(struct event *ev, const struct timeval *tv);
int __wrap_event_add(struct event *ev, const struct timeval *tv);

static bool health_timer_record;       /* the next timer added is the health check's */
static event_callback_fn health_timer_cb;
/* atomic: a worker's thread adds the timer while the test's reads them */
static _Atomic long health_timer_adds;         /* adds of it since health_start */
static _Atomic long health_timer_fail_from = -1;
static _Atomic long health_timer_fail_to = LONG_MAX; /* the last add that fails */
static _Atomic long health_timer_refused;      /* adds of it that failed */
static _Atomic long health_timer_last_ms = -1; /* the delay the last add of it asked for */

int __wrap_event_add(struct event *ev, const struct timeval *tv)
{
    if (health_timer_record && tv && event_get_fd(ev) == -1) {
        health_timer_cb = event_get_callback(ev);
        health_timer_record = false;
    }
    if (health_timer_cb && event_get_callback(ev) == health_timer_cb) {
        health_timer_last_ms = tv ? (long)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1;
        long add = health_timer_fail_from >= 0 ? health_timer_adds++ : -1;
        if (add >= 0 && add >= health_timer_fail_from && add <= health_timer_fail_to) {
            health_timer_refused++;
            errno = ENOMEM; /* a timer heap that could not grow */
            return -1;
        }
    }
    return __real_event_add(ev, tv);
}

/* Turns the loop until the origin's check state is want (checks_in_row's sign: > 0 passing,
 * < 0 failing) or 3 s have passed; whether it got there. */
static bool turn_until_in_row(struct loop *l, int want)
{
    const struct balancer *b = l->gen->balancers[0];
    uint64_t until = now_us() + 3000000;
    while (now_us() < until) {
        int run = balancer_checks_in_row(b, 0);
        if ((want > 0 && run > 0) || (want < 0 && run < 0))
            return true;
        turn(l->base);
    }
    return false;
}

/* A generation of config text (name: the file it is said to come from), its checks started on
 * l with the check timer's adds fail_from to fail_to refused (counted from 0), the log read up
 * to now. */
static struct generation *health_up(const char *text, const char *name, struct loop *l,
                                    long fail_from, long fail_to, struct health **h)
{
    struct config *cfg = cfg_load_string(text, name, NULL, stderr, NULL);
    assert_non_null(cfg);
    struct generation *g = generation_new(cfg, 1);
    assert_non_null(g);
    loop_up(l, g);
    (void)log_says("\n"); /* what came before */
    health_timer_record = true;
    health_timer_cb = NULL;
    health_timer_adds = health_timer_refused = 0;
    health_timer_fail_from = fail_from;
    health_timer_fail_to = fail_to;
    *h = NULL;
    assert_int_equal(health_start(l, h), 0);
    assert_non_null(health_timer_cb);
    return g;
}

/* health_up's undone, no add refused any more. */
static void health_down(struct generation *g, struct loop *l, struct health *h)
{
    health_stop(h);
    health_timer_cb = NULL;
    health_timer_fail_from = -1;
    health_timer_fail_to = LONG_MAX;
    loop_down(l);
    generation_free(g);
}

static void test_health_check_unarmed_checks_again(void **state)
{
    (void)state;
    struct origin o;
    origin_start(&o);
    o.failing = true;
    char text[512];
    snprintf(text, sizeof(text),
             "[proxy]\naccess_log = off\n[upstream u]\norigin = 127.0.0.1:%u\n"
             "health_check = GET /healthz every 100ms expect 200\n", o.port);
    /* the adds: the first check's (health_start), its deadline, then the next check's: it fails */
    struct loop l;
    struct health *h;
    struct generation *g = health_up(text, "health.ini", &l, 2, LONG_MAX, &h);
    const struct balancer *b = g->balancers[0];

    /* the first check fails (500): down, and its next check could not be armed */
    if (!turn_until_in_row(&l, -1))
        fail_msg("the first check of an origin answering 500 never failed");
    assert_true(balancer_origin_down(b, 0));
    assert_int_equal(health_timer_refused, 1);
    assert_true(log_says("checks of it stopped"));
    assert_true(balancer_checks_are_stopped(b, 0));

    /* the origin recovers; memory does not yet: the ticks try in vain, said no more */
    o.failing = false;
    for (int i = 0; i < 3; i++) {
        health_tick(h);
        turn(l.base);
    }
    assert_int_equal(health_timer_refused, 4);
    assert_int_equal(o.accepted, 1); /* no check without its timer */
    assert_true(balancer_origin_down(b, 0));
    assert_false(log_says("health check of "));

    /* memory back: the next tick arms the check, which finds the origin up */
    health_timer_fail_from = -1;
    health_tick(h);
    if (!turn_until_in_row(&l, 1))
        fail_msg("the origin answers 200 again and its checks can be armed, yet it is still "
                 "down 3 s later: its checks never resumed");
    assert_false(balancer_origin_down(b, 0));
    assert_false(balancer_checks_are_stopped(b, 0));
    assert_true(o.accepted >= 2);
    assert_true(log_says("checks of it resumed"));
    assert_int_equal(health_timer_refused, 4);

    health_down(g, &l, h);
    origin_stop(&o);
}

/* A check whose timer is armed again is armed for when it was due, not at once: of checks
 * every hour, stopped after the first, the one the tick arms waits out the rest of that hour
 * (a check at each resumption would be a check whenever memory came back, its interval
 * unheeded; a delay computed backwards would wrap to ~49 days). */
static void test_health_check_unarmed_resumes_when_due(void **state)
{
    (void)state;
    struct origin o;
    origin_start(&o);
    char text[512];
    snprintf(text, sizeof(text),
             "[proxy]\naccess_log = off\n[upstream u]\norigin = 127.0.0.1:%u\n"
             "health_check = GET /healthz every 1h expect 200\n", o.port);
    /* the next check's add fails, after the first check's and its deadline's */
    struct loop l;
    struct health *h;
    struct generation *g = health_up(text, "due.ini", &l, 2, LONG_MAX, &h);
    const struct balancer *b = g->balancers[0];
    if (!turn_until_in_row(&l, 1))
        fail_msg("the first check of an origin answering 200 never passed");
    assert_int_equal(health_timer_refused, 1);
    assert_true(balancer_checks_are_stopped(b, 0));
    assert_true(log_says("checks of it stopped"));

    health_timer_fail_from = -1;
    health_tick(h);
    assert_false(balancer_checks_are_stopped(b, 0));
    assert_true(log_says("checks of it resumed"));
    long ms = health_timer_last_ms;
    print_message("  the resumed check armed for %ld ms\n", ms);
    if (ms < 3500000 || ms > 3600000)
        fail_msg("the resumed check was armed for %ld ms, not the rest of its hour", ms);
    for (int i = 0; i < 20; i++)
        turn(l.base);
    assert_int_equal(o.accepted, 1); /* no second check at the resumption */

    health_down(g, &l, h);
    origin_stop(&o);
}

/* The tick arms the checks that are stopped, and only those: of two origins checked every
 * hour, whose first checks passed, the one whose next timer was refused is armed again, the
 * other (armed for its hour) left alone. Armed again too, it would be checked at once (no due
 * time of its kept), and a running check's deadline (the same timer) would be cut short. */
static void test_health_check_unarmed_tick_spares_armed(void **state)
{
    (void)state;
    struct origin o[2];
    origin_start(&o[0]);
    origin_start(&o[1]);
    char text[512];
    snprintf(text, sizeof(text),
             "[proxy]\naccess_log = off\n[upstream u]\norigin = 127.0.0.1:%u\n"
             "origin = 127.0.0.1:%u\nhealth_check = GET /healthz every 1h expect 200\n",
             o[0].port, o[1].port);
    /* the adds: the first checks' (0, 1), their deadlines (2, 3), the next checks' (4, 5): the
     * first of those fails, and only it */
    struct loop l;
    struct health *h;
    struct generation *g = health_up(text, "two.ini", &l, 4, 4, &h);
    const struct balancer *b = g->balancers[0];
    uint64_t until = now_us() + 3000000;
    while ((balancer_checks_in_row(b, 0) <= 0 || balancer_checks_in_row(b, 1) <= 0 ||
            health_timer_adds < 6) && now_us() < until)
        turn(l.base);
    if (balancer_checks_in_row(b, 0) <= 0 || balancer_checks_in_row(b, 1) <= 0)
        fail_msg("the first checks of two origins answering 200 did not both pass in 3 s");
    assert_int_equal(health_timer_adds, 6);
    assert_int_equal(health_timer_refused, 1);
    assert_true(balancer_checks_are_stopped(b, 0) != balancer_checks_are_stopped(b, 1));

    health_tick(h);
    print_message("  adds of the checks' timer after the tick: %ld\n", (long)health_timer_adds);
    if (health_timer_adds != 7)
        fail_msg("the tick made %ld adds of the checks' timer: want 1, the stopped check's",
                 (long)health_timer_adds - 6);
    assert_false(balancer_checks_are_stopped(b, 0));
    assert_false(balancer_checks_are_stopped(b, 1));

    health_down(g, &l, h);
    origin_stop(&o[0]);
    origin_stop(&o[1]);
}

/* The same through a running worker: its own 1-second tick (log_flush_cb) arms the check
 * again, nobody calling health_tick for it. */
static void test_health_check_unarmed_worker_tick(void **state)
{
    (void)state;
    /* the health timer's callback, learnt from a check started on a scratch loop */
    struct loop scratch;
    loop_up(&scratch, gen);
    struct generation *sg = NULL;
    {
        struct config *cfg = cfg_load_string("[proxy]\naccess_log = off\n[upstream u]\n"
                                             "origin = 127.0.0.1:9\n"
                                             "health_check = GET / every 1h expect 200\n",
                                             "scratch.ini", NULL, stderr, NULL);
        assert_non_null(cfg);
        sg = generation_new(cfg, 1);
        assert_non_null(sg);
        scratch.cfg = sg->cfg;
        scratch.gen = sg;
    }
    health_timer_record = true;
    health_timer_cb = NULL;
    struct health *sh = NULL;
    assert_int_equal(health_start(&scratch, &sh), 0);
    assert_non_null(health_timer_cb);
    health_stop(sh);
    scratch.cfg = gen->cfg;
    scratch.gen = gen;
    loop_down(&scratch);
    generation_free(sg);

    struct origin o;
    origin_start(&o);
    o.failing = true;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    close(s); /* a port the kernel just gave out, for the worker's listener */
    char text[512];
    snprintf(text, sizeof(text),
             "[proxy]\nlisten = 127.0.0.1:%u\nworkers = 1\naccess_log = off\n"
             "[upstream u]\norigin = 127.0.0.1:%u\n"
             "health_check = GET /healthz every 100ms expect 200\n",
             (unsigned)ntohs(sin.sin_port), o.port);
    struct config *cfg = cfg_load_string(text, "worker.ini", NULL, stderr, NULL);
    assert_non_null(cfg);
    struct generation *g = generation_new(cfg, 2);
    assert_non_null(g);
    const struct balancer *b = g->balancers[0];
    (void)log_says("\n"); /* what came before */
    health_timer_adds = health_timer_refused = 0;
    health_timer_fail_from = 2; /* the next check's, after the first check and its deadline */
    struct worker_group *wg = workers_start(g, NULL);
    assert_non_null(wg);

    /* down by its first check, whose next one could not be armed; then a tick tries in vain */
    uint64_t until = now_us() + 3000000;
    while ((balancer_checks_in_row(b, 0) >= 0 || health_timer_refused < 2) && now_us() < until)
        poll(NULL, 0, 1);
    if (balancer_checks_in_row(b, 0) >= 0 || health_timer_refused < 2)
        fail_msg("in 3 s: %d checks in a row, %ld adds of the check's timer refused; want the "
                 "origin down and a tick's retry refused", balancer_checks_in_row(b, 0),
                 (long)health_timer_refused);
    assert_true(balancer_origin_down(b, 0));
    assert_true(balancer_checks_are_stopped(b, 0));
    assert_int_equal(o.accepted, 1);
    assert_true(log_says("checks of it stopped")); /* written before the verdict was given */

    /* the origin and memory back: the worker's next tick resumes the checks, the origin up */
    o.failing = false;
    health_timer_fail_from = -1;
    until = now_us() + 3000000;
    while (balancer_checks_in_row(b, 0) <= 0 && now_us() < until)
        poll(NULL, 0, 1);
    if (balancer_checks_in_row(b, 0) <= 0)
        fail_msg("the origin answers 200 and its timer can be armed, yet it is still down 3 s "
                 "later: the worker's tick did not resume its checks");
    assert_false(balancer_origin_down(b, 0));
    assert_false(balancer_checks_are_stopped(b, 0));
    workers_stop(wg, 0);
    assert_true(log_says("checks of it resumed"));
    health_timer_cb = NULL;
    generation_free(g);
    origin_stop(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_answer_whole_or_cut),
        cmocka_unit_test(test_health_check_request_whole_or_no_verdict),
        cmocka_unit_test(test_health_check_unarmed_checks_again),
        cmocka_unit_test(test_health_check_unarmed_resumes_when_due),
        cmocka_unit_test(test_health_check_unarmed_tick_spares_armed),
        cmocka_unit_test(test_health_check_unarmed_worker_tick),
    };

    (void)alloc_fail_all;
    alloc_fail_install(); /* before libevent allocates anything */
    /* the error log into a pipe the health check's rows read (through /proc, as a path) */
    char log_path[64];
    if (pipe2(log_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return 1;
    snprintf(log_path, sizeof(log_path), "/proc/self/fd/%d", log_pipe[1]);
    if (log_error_open(log_path, LOG_INFO) != 0)
        return 1;
    return cmocka_run_group_tests(tests, gen_setup, gen_teardown);
}
