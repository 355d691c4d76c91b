/*
 * test_balance.c — issue 10's balancing, health and retries with the real binary and fake
 * origins on loopback: round-robin counts within 1 over three origins, weights, random_two
 * spreading over all three, a down origin's turns spread over the others, least_conn
 * steering around a busy origin and keeping the weights when origins are idle, passive health (a refusing origin skipped after max_fails,
 * probed after down_time by one request alone, back once it answers; one that accepts and drops
 * every connection marked down too), the active health check (an origin failing
 * /healthz gets no requests until it passes; the gauge follows), retries (a refused connect
 * goes to the next origin for any method and the log shows both attempts; after the request
 * was sent only with retry_sent and only for idempotent requests; once a body byte went, only
 * with the body still whole in Portico's copy (up to 64 KiB: a PUT of 2 KiB, Content-Length
 * or chunked, goes again byte for byte; one of 200 KiB, or one still arriving, does not, and
 * its 502 says why), also
 * on a TLS refusal after the send), and every origin down: 503
 * no_healthy_origin at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "../support/certs.h"
#include "../support/fake_dns.h"
#include "../support/json.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

/* GET path on a fresh connection (Connection: close); the status, the response in *r. */
static int get(struct harness *h, const char *method, const char *path, const char *body,
               struct raw_response *r)
{
    char req[512];
    if (body)
        snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                 method, path, strlen(body), body);
    else
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 method, path);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, req), 0);
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("%s %s: no response: %s", method, path, r->error);
    raw_close(c);
    return r->status;
}

static int status_of(struct harness *h, const char *path)
{
    struct raw_response r;
    int status = get(h, "GET", path, NULL, &r);
    raw_response_free(&r);
    return status;
}

/* Fails unless portico_upstream_origin_up says want (1 up, 0 down) for 127.0.0.1:port of
 * upstream u. */
static void assert_origin_up(struct harness *h, uint16_t port, double want)
{
    char series[160];
    snprintf(series, sizeof(series),
             "portico_upstream_origin_up{upstream=\"u\",origin=\"127.0.0.1:%u\"}", port);
    double up = scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
    if (up != want)
        fail_msg("%s is %g, want %g", series, up, want);
}

/* px_start with upstream u of two origins, 127.0.0.1:a then 127.0.0.1:b, and the upstream's
 * further lines (extra_fmt, printf-formatted with the rest). */
static struct harness *start_two(const char *proxy_extra, uint16_t a, uint16_t b,
                                 const char *extra_fmt, ...) __attribute__((format(printf, 4, 5)));

static struct harness *start_two(const char *proxy_extra, uint16_t a, uint16_t b,
                                 const char *extra_fmt, ...)
{
    char extra[2048];
    va_list ap;
    va_start(ap, extra_fmt);
    vsnprintf(extra, sizeof(extra), extra_fmt, ap);
    va_end(ap);
    return px_start(proxy_extra,
                    "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n%s", a, b,
                    extra);
}

/* ---- round robin, weights, random_two ---- */

/* `requests` sequential GETs over three origins (the upstream's extra lines, then each origin's
 * weight text); how many each origin got, into got. */
static void spread(const char *extra, const char *weights[3], int requests, unsigned got[3])
{
    struct fake_origin *o[3];
    for (int i = 0; i < 3; i++)
        o[i] = px_origin(FO_OK);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\n%sorigin = 127.0.0.1:%u%s\n"
                                 "origin = 127.0.0.1:%u%s\norigin = 127.0.0.1:%u%s\n",
                                 extra, fake_origin_port(o[0]), weights[0], fake_origin_port(o[1]),
                                 weights[1], fake_origin_port(o[2]), weights[2]);
    for (int k = 0; k < requests; k++)
        assert_int_equal(status_of(h, "/rr"), 200);
    for (int i = 0; i < 3; i++) {
        got[i] = fake_origin_requests(o[i]);
        fake_origin_stop(o[i]);
    }
    print_message("  %d requests: %u %u %u\n", requests, got[0], got[1], got[2]);
    px_stop(h);
}

/* Round robin (weighted or not) is exact: each origin within 1 of its share. */
static void spread_exactly(const char *weights[3], int requests, const unsigned want[3])
{
    unsigned got[3];
    spread("", weights, requests, got);
    for (int i = 0; i < 3; i++)
        if (got[i] + 1 < want[i] || got[i] > want[i] + 1)
            fail_msg("origin %d got %u requests, want %u (within 1)", i, got[i], want[i]);
}

static void test_round_robin(void **state)
{
    (void)state;
    spread_exactly((const char *[]){"", "", ""}, 31, (const unsigned[]){11, 10, 10});
}

static void test_weights(void **state)
{
    (void)state;
    spread_exactly((const char *[]){" weight=1", " weight=2", " weight=3"}, 60,
                   (const unsigned[]){10, 20, 30});
}

/* random_two with nothing in flight is a random draw: over 300 requests every origin gets
 * some and none more than 60% (each expects 100; 180 is ten standard deviations away). */
static void test_random_two(void **state)
{
    (void)state;
    enum { N = 300 };
    unsigned got[3];
    spread("balance = random_two\n", (const char *[]){"", "", ""}, N, got);
    for (int i = 0; i < 3; i++)
        if (got[i] == 0 || got[i] > N * 60 / 100)
            fail_msg("origin %d got %u of %d requests", i, got[i], N);
    assert_int_equal(got[0] + got[1] + got[2], N);
}

/* One of four equal origins down: its turns go round the other three, 100 requests each of 300
 * (within 1), for round_robin and for least_conn's ties between idle origins. They all went to
 * the origin after it in the cycle: 150 75 75 (5000 2500 2500 of 10,000 with curl). */
static void test_down_origin_share(void **state)
{
    (void)state;
    static const char *const policies[] = {"round_robin", "least_conn"};
    enum { N = 300, NPOLICIES = sizeof(policies) / sizeof(policies[0]) };
    for (int p = 0; p < NPOLICIES; p++) {
        struct fake_origin *o[3];
        for (int i = 0; i < 3; i++)
            o[i] = px_origin(FO_OK);
        struct fake_origin *refusing = px_origin(FO_REFUSE);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\nbalance = %s\nmax_fails = 1\ndown_time = 1h\n"
                                     "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n",
                                     policies[p], fake_origin_port(o[0]), fake_origin_port(o[1]),
                                     fake_origin_port(o[2]), fake_origin_port(refusing));
        /* until the refusing origin has had its turn (a retry answers) and is down */
        for (int k = 0; k < 4; k++)
            assert_int_equal(status_of(h, "/warm"), 200);
        assert_int_equal(harness_wait_log(h, "marked down", PX_IO_MS), 0);
        unsigned before[3], got[3];
        for (int i = 0; i < 3; i++)
            before[i] = fake_origin_requests(o[i]);
        for (int k = 0; k < N; k++)
            assert_int_equal(status_of(h, "/share"), 200);
        for (int i = 0; i < 3; i++)
            got[i] = fake_origin_requests(o[i]) - before[i];
        print_message("  %s, one of four down: %u %u %u\n", policies[p], got[0], got[1], got[2]);
        for (int i = 0; i < 3; i++)
            if (got[i] + 1 < N / 3 || got[i] > N / 3 + 1)
                fail_msg("%s: origin %d got %u of %d requests, want %d (within 1)", policies[p],
                         i, got[i], N, N / 3);
        px_stop(h);
        for (int i = 0; i < 3; i++)
            fake_origin_stop(o[i]);
        fake_origin_stop(refusing);
    }
}

/* ---- least_conn ---- */

/* Sequential requests leave every origin idle: each pick is a tie, and ties follow the weighted
 * round-robin order, so least_conn keeps the weights' shares (it used to give 24 23 23 here,
 * ignoring weight=5). */
static void test_least_conn_weights(void **state)
{
    (void)state;
    unsigned got[3];
    spread("balance = least_conn\n", (const char *[]){" weight=5", "", ""}, 70, got);
    const unsigned want[3] = {50, 10, 10};
    for (int i = 0; i < 3; i++)
        if (got[i] + 1 < want[i] || got[i] > want[i] + 1)
            fail_msg("origin %d got %u requests, want %u (within 1)", i, got[i], want[i]);
}

/* One request held on the slow origin: least_conn sends every other request to the idle one
 * (round robin would send every second one to the slow origin and wait). The ten requests take
 * a few milliseconds each, far less than the second the slow origin holds the first. */
static void test_least_conn(void **state)
{
    (void)state;
    struct fake_origin_opts slow_opts = {.kind = FO_SLOW_FIRST_BYTE, .delay_ms = 1000};
    struct fake_origin *slow = fake_origin_start(&slow_opts);
    struct fake_origin *fast = px_origin(FO_OK);
    assert_non_null(slow);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\nbalance = least_conn\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\n",
                                 fake_origin_port(slow), fake_origin_port(fast));
    struct raw_conn *held = px_connect(h);
    assert_int_equal(raw_send_str(held, "GET /held HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_requests(slow, 1, PX_IO_MS), 0); /* it is in flight */
    for (int k = 0; k < 10; k++)
        assert_int_equal(status_of(h, "/lc"), 200);
    assert_int_equal(fake_origin_requests(fast), 10);
    struct raw_response r;
    assert_int_equal(raw_read_response(held, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(held);
    assert_int_equal(fake_origin_requests(slow), 1);
    px_stop(h);
    fake_origin_stop(slow);
    fake_origin_stop(fast);
}

/* ---- an origin that refuses, then comes back on the same port ---- */

struct revivable {
    int fd;                            /* bound; listening once revived */
    uint16_t port;
    int stop[2];
    pthread_t thread;
    bool serving;
    _Atomic unsigned served;
};

static void revivable_init(struct revivable *r)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    *r = (struct revivable){.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    assert_true(r->fd >= 0);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(r->fd, (struct sockaddr *)&sa, &len), 0);
    r->port = ntohs(sa.sin_port); /* bound, not listening: a connect gets RST */
    assert_int_equal(pipe(r->stop), 0);
}

/* Answers 200 to each request head, one connection at a time, until stopped. */
static void *revivable_main(void *arg)
{
    struct revivable *r = arg;
    for (;;) {
        struct pollfd pf[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = r->stop[0], .events = POLLIN}};
        if (poll(pf, 2, 10000) <= 0 || pf[1].revents)
            return NULL;
        int c = accept(r->fd, NULL, NULL);
        if (c < 0)
            continue;
        char buf[4096];
        size_t len = 0;
        while (len < sizeof(buf) - 1) {
            struct pollfd cp = {.fd = c, .events = POLLIN};
            if (poll(&cp, 1, 2000) <= 0)
                break;
            ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            if (strstr(buf, "\r\n\r\n")) {
                static const char ok[] =
                    "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nrevived\n";
                atomic_fetch_add(&r->served, 1); /* before the answer: the test counts on it */
                ssize_t w = write(c, ok, sizeof(ok) - 1);
                (void)w;
                break;
            }
        }
        close(c);
    }
}

static void revivable_listen(struct revivable *r)
{
    assert_int_equal(listen(r->fd, 16), 0);
    assert_int_equal(pthread_create(&r->thread, NULL, revivable_main, r), 0);
    r->serving = true;
}

static void revivable_free(struct revivable *r)
{
    close(r->stop[1]);
    if (r->serving)
        pthread_join(r->thread, NULL);
    close(r->stop[0]);
    close(r->fd);
}

/* down_time of the passive health test. Requests sent in its first half are the ones that must
 * skip the origin: the log wait, a /metrics scrape and a request fit there many times over also
 * on a slow sanitized host (with 400 ms and a 300 ms window, a host 5x slower could send none). */
#define PASSIVE_DOWN_MS 800

/* An origin that never answers and tells when Portico closed a connection to it (within
 * PX_IO_MS). */
static int closed_cb(int fd, void *arg)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    char buf[512];
    short rev;
    while (tu_poll_until(fd, POLLIN, deadline, &rev) > 0)
        if (read(fd, buf, sizeof(buf)) <= 0) {
            sem_post(arg);
            break;
        }
    return 1;
}

/* /status shows each origin's requests in flight (what least_conn compares) with its passive
 * state and check: clients that leave while their requests wait on the origin take theirs back
 * (4 in flight, then 0). The old /status said "up" and nothing else: neither the count nor why
 * an origin was out. */
static void test_status_in_flight(void **state)
{
    (void)state;
    sem_t closed;
    assert_int_equal(sem_init(&closed, 0, 0), 0);
    const struct fo_step hold_then_tell[] = {FO_CALL(closed_cb, &closed), FO_END()};
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = hold_then_tell};
    struct fake_origin *slow = fake_origin_start(&opts);
    assert_non_null(slow);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\norigin = 127.0.0.1:%u\nbalance = least_conn\n",
                                 fake_origin_port(slow));
    struct raw_conn *c[4];
    for (int k = 0; k < 4; k++) {
        c[k] = px_connect(h);
        assert_int_equal(raw_send_str(c[k], "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    }
    assert_int_equal(fake_origin_wait_requests(slow, 4, PX_IO_MS), 0);
    struct tj *doc;
    const struct tj *o = px_status_origin(h, 0, &doc);
    double v;
    assert_int_equal(tj_num(o, "in_flight", &v), 0);
    assert_int_equal((int)v, 4);
    assert_non_null(tj_str(o, "passive"));
    assert_string_equal(tj_str(o, "passive"), "up");
    assert_true(tj_is_null(o, "check"));
    assert_true(tj_is_null(o, "checks_stopped")); /* no check to stop */
    tj_free(doc);
    for (int k = 0; k < 4; k++)
        raw_close(c[k]);
    /* Portico closed each origin connection after the attempt gave its origin back */
    for (int k = 0; k < 4; k++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += PX_IO_MS / 1000;
        assert_int_equal(sem_timedwait(&closed, &until), 0);
    }
    o = px_status_origin(h, 0, &doc);
    assert_int_equal(tj_num(o, "in_flight", &v), 0);
    assert_int_equal((int)v, 0);
    tj_free(doc);
    px_stop(h);
    fake_origin_stop(slow);
    sem_destroy(&closed);
}

/* An origin's answer: 101 and the connection held open to an upgrade, 200 to anything else. */
static const struct fo_step *switch_or_ok(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    static const struct fo_step switched[] = {
        FO_SEND("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n\r\n"),
        FO_HOLD(), FO_END()};
    static const struct fo_step ok[] = {FO_RESPOND_OK(), FO_END()};
    return strcasestr(req->head, "\r\nUpgrade:") ? switched : ok;
}

/* An open tunnel (a WebSocket after its 101) is a connection least_conn weighs, as in nginx and
 * HAProxy: every request goes to the other origin while it lasts, and its place is given back
 * when it closes. The old code gave the place back at the 101: the tunnel's origin took its
 * turns as if idle (in flight 0, every other request). */
static void test_least_conn_counts_tunnels(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = switch_or_ok};
    struct fake_origin *o[2] = {fake_origin_start(&opts), fake_origin_start(&opts)};
    assert_non_null(o[0]);
    assert_non_null(o[1]);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\nbalance = least_conn\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\n",
                                 fake_origin_port(o[0]), fake_origin_port(o[1]));
    struct raw_conn *ws = px_connect(h);
    assert_int_equal(raw_send_str(ws, "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                                      "Upgrade: websocket\r\n\r\n"),
                     0);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(ws, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 101);
    raw_head_free(&head);
    int t = fake_origin_requests(o[0]) == 1 ? 0 : 1; /* the tunnel's origin */
    assert_int_equal(fake_origin_requests(o[t]), 1);
    assert_int_equal(px_in_flight(h, t), 1);
    for (int k = 0; k < 10; k++)
        assert_int_equal(status_of(h, "/lc"), 200);
    print_message("  tunnel on origin %d: requests %u and %u\n", t, fake_origin_requests(o[t]),
                  fake_origin_requests(o[!t]));
    assert_int_equal(fake_origin_requests(o[t]), 1);
    assert_int_equal(fake_origin_requests(o[!t]), 10);
    raw_close(ws);
    /* the tunnel ends once Portico has read the client's close: bounded wait for its count */
    int64_t until = tu_now_ms() + PX_IO_MS;
    while (px_in_flight(h, t) != 0 && tu_now_ms() < until)
        poll(NULL, 0, 10);
    assert_int_equal(px_in_flight(h, t), 0);
    px_stop(h);
    fake_origin_stop(o[0]);
    fake_origin_stop(o[1]);
}

/* max_fails refused connects within fail_window: skipped; after down_time one request probes
 * it (and fails: down again); once it answers, it takes its share again. retries = 0, so that
 * each attempt is one request. */
static void test_passive_health(void **state)
{
    (void)state;
    struct revivable bad;
    revivable_init(&bad);
    struct fake_origin *good = px_origin(FO_OK);
    struct harness *h = start_two("admin_listen = 127.0.0.1:{{port:admin}}", bad.port,
                                  fake_origin_port(good),
                                  "retries = 0\nmax_fails = 2\nfail_window = 10s\n"
                                  "down_time = %dms\n",
                                  PASSIVE_DOWN_MS);
    /* round robin: bad, good, bad → marked down */
    assert_int_equal(status_of(h, "/p/1"), 502);
    assert_int_equal(status_of(h, "/p/2"), 200);
    /* before the request that marks it down: down_time starts after this, however long the
     * 502 takes to reach us */
    int64_t down_at = tu_now_ms();
    assert_int_equal(status_of(h, "/p/3"), 502);
    char marked[64];
    snprintf(marked, sizeof(marked), "marked down for %d ms after 2 failures", PASSIVE_DOWN_MS);
    assert_int_equal(harness_wait_log(h, marked, PX_IO_MS), 0);
    assert_origin_up(h, bad.port, 0);
    /* skipped: every request goes to the good one while it is down */
    unsigned before = fake_origin_requests(good);
    for (int k = 0; k < 6 && tu_now_ms() - down_at < PASSIVE_DOWN_MS / 2; k++)
        assert_int_equal(status_of(h, "/skip"), 200);
    assert_true(fake_origin_requests(good) > before);
    /* after down_time, one request probes it: refused again, down for another down_time */
    int64_t probed = 0;
    for (int64_t end = tu_now_ms() + 5000; !probed && tu_now_ms() < end;) {
        int st = status_of(h, "/probe");
        if (st == 502)
            probed = tu_now_ms();
        else
            assert_int_equal(st, 200);
        poll(NULL, 0, 20); /* requests spread over time: down_time is time */
    }
    assert_true(probed);
    print_message("  probed %lld ms after it was marked down (down_time %d ms)\n",
                  (long long)(probed - down_at), PASSIVE_DOWN_MS);
    /* less a few ms: Portico's loop clock may be a jiffy behind ours */
    assert_true(probed - down_at >= PASSIVE_DOWN_MS - 10);
    assert_int_equal(harness_wait_log(h, "failed its probe after down_time", PX_IO_MS), 0);
    /* it comes back: the next probe gets an answer, and it takes requests again */
    revivable_listen(&bad);
    for (int64_t end = tu_now_ms() + 5000; atomic_load(&bad.served) == 0 && tu_now_ms() < end;) {
        assert_int_equal(status_of(h, "/back"), 200);
        poll(NULL, 0, 20);
    }
    assert_true(atomic_load(&bad.served) > 0);
    assert_int_equal(harness_wait_log(h, "answered; back up", PX_IO_MS), 0);
    unsigned served = atomic_load(&bad.served);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/shared"), 200);
    assert_int_equal(atomic_load(&bad.served), served + 2); /* its share of round robin */
    assert_origin_up(h, bad.port, 1);
    px_stop(h);
    revivable_free(&bad);
    fake_origin_stop(good);
}

/* An origin that accepts every connection and drops it without a byte of answer: its process
 * gone behind a port still open (docker-proxy's, a crashing worker). README: a network failure
 * of the origin counts toward max_fails; nginx counts these too. Before, empty_response and
 * connection_reset never counted: the origin kept half of the requests, each a 502, for ever
 * (5 of 10 here; now the 2 that mark it down). */
static void test_passive_health_dropped(void **state)
{
    (void)state;
    static const struct {
        enum fo_kind kind;
        const char *failure; /* the 502s' Portico-Error */
    } rows[] = {
        {FO_CLOSE_EMPTY, "empty_response"}, /* reads the request, closes without a byte */
        {FO_RESET, "connection_reset"},     /* reads the request, resets */
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin *bad = px_origin(rows[i].kind);
        struct fake_origin *good = px_origin(FO_OK);
        struct harness *h = start_two(NULL, fake_origin_port(bad), fake_origin_port(good),
                                      "retries = 0\nmax_fails = 2\ndown_time = 1m\n");
        int failed = 0;
        for (int k = 0; k < 10; k++) {
            struct raw_response r;
            int st = get(h, "GET", "/drop", NULL, &r);
            if (st == 502) {
                const char *err = raw_header(&r, "Portico-Error");
                assert_string_equal(err ? err : "", rows[i].failure);
                failed++;
            } else {
                assert_int_equal(st, 200);
            }
            raw_response_free(&r);
        }
        print_message("  %s: %d of 10 requests got 502\n", rows[i].failure, failed);
        assert_int_equal(failed, 2);
        assert_int_equal(harness_wait_log(h, "marked down for 60000 ms after 2 failures",
                                          PX_IO_MS), 0);
        px_stop(h);
        fake_origin_stop(bad);
        fake_origin_stop(good);
    }
}

/* ---- a probe that is answered, with a long body ---- */

static sem_t probe_body_cue; /* the test: the probe's body may end now */

static int hold_probe_body(int fd, void *arg)
{
    (void)fd, (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PX_IO_MS / 1000;
    return sem_timedwait(&probe_body_cue, &until) == 0 ? 0 : -1;
}

static const struct fo_step hold_no_answer[] = { FO_HOLD(), FO_END() };
static const struct fo_step long_body[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlo"), FO_CALL(hold_probe_body, NULL),
    FO_SEND("ng"), FO_END(),
};
static const struct fo_step answer_ok[] = { FO_RESPOND_OK(), FO_END() };

static const struct fo_step *pick_probe(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strstr(req->head, "/fail") ? hold_no_answer
           : strstr(req->head, "/long") ? long_body : answer_ok;
}

/* README: after down_time "the next request that would go to it is let through alone
 * (half-open): an answer brings it back up". The probe's answer is its response head: the
 * origin is up from then on, not once a long body (a download, a stream) has ended. The binary
 * before the fix kept the only origin out until the probe's exchange ended: every other request
 * got 503 no_healthy_origin meanwhile. */
static void test_probe_answer_brings_back_up(void **state)
{
    (void)state;
    assert_int_equal(sem_init(&probe_body_cue, 0, 0), 0);
    struct fake_origin_opts opts = { .kind = FO_SCRIPT, .pick_script = pick_probe };
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\nretries = 0\n"
                                 "max_fails = 1\ndown_time = 200ms\nfirst_byte_timeout = 100ms\n",
                                 fake_origin_port(o));
    assert_int_equal(status_of(h, "/fail"), 504); /* first_byte_timeout: marked down */
    assert_int_equal(harness_wait_log(h, "marked down for 200 ms", PX_IO_MS), 0);
    /* until down_time is over every request gets 503 at once; then one is the probe */
    struct raw_conn *probe = NULL;
    struct raw_head head = {0};
    for (int64_t end = tu_now_ms() + 5000; !probe && tu_now_ms() < end;) {
        struct raw_conn *c = px_connect(h);
        assert_int_equal(raw_send_str(c, "GET /long HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
        if (head.status == 200) {
            probe = c;
            break;
        }
        assert_int_equal(head.status, 503);
        raw_head_free(&head);
        raw_close(c);
        poll(NULL, 0, 20); /* requests spread over time: down_time is time */
    }
    assert_non_null(probe);
    raw_head_free(&head);
    /* the probe was answered; its body is still coming */
    struct raw_response r;
    int st = get(h, "GET", "/after", NULL, &r);
    const char *err = raw_header(&r, "Portico-Error");
    if (st != 200)
        fail_msg("the probe was answered, yet: %d %s", st, err ? err : "");
    raw_response_free(&r);
    sem_post(&probe_body_cue);
    size_t len = 0;
    char *rest = raw_read_all(probe, 500, &len);
    assert_non_null(rest);
    assert_true(len >= 4 && memcmp(rest, "long", 4) == 0);
    free(rest);
    raw_close(probe);
    px_stop(h);
    fake_origin_stop(o);
    sem_destroy(&probe_body_cue);
}

/* ---- the probe goes alone ---- */

/* Which of the client connection c (Portico answered) and the listener l (Portico connected to
 * the origin) is readable first: 'c', 'l', or 0 when neither within timeout_ms. */
static int first_readable(struct raw_conn *c, int l, int timeout_ms)
{
    struct pollfd pf[2] = {{.fd = raw_fd(c), .events = POLLIN}, {.fd = l, .events = POLLIN}};
    if (poll(pf, 2, timeout_ms) <= 0)
        return 0;
    return pf[1].revents ? 'l' : 'c';
}

/* A listener on 127.0.0.1 (port in *port) that can listen again on that port after a shutdown
 * while a connection it accepted is open: bound to the port by number (a socket bound to port 0
 * gives its port up at the shutdown), with SO_REUSEADDR (else EADDRINUSE). */
static int listen_again_able(uint16_t *port)
{
    int one = 1, fd = px_listen(port); /* a free port, learnt */
    close(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons(*port)};
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

/* Requests until one is let through to the origin behind listener l after its down_time (the
 * others get 503): the probe, left unanswered (its client connection). */
static struct raw_conn *probe_out(struct harness *h, int l)
{
    for (int64_t end = tu_now_ms() + 5000; tu_now_ms() < end;) {
        struct raw_conn *c = px_connect(h);
        assert_int_equal(raw_send_str(c, "GET /probe HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        int first = first_readable(c, l, PX_IO_MS);
        if (first == 'l')
            return c;
        assert_int_equal(first, 'c');
        struct raw_head head;
        assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
        assert_int_equal(head.status, 503);
        raw_head_free(&head);
        raw_close(c);
        poll(NULL, 0, 20); /* requests spread over time: down_time is time */
    }
    fail_msg("no probe went to the origin within 5 s");
    return NULL;
}

/* Waits until Portico closed its side of the origin connection fd. */
static void wait_closed(int fd)
{
    char buf[512];
    bool closed = false;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    for (int64_t end = tu_now_ms() + PX_IO_MS; !closed && tu_now_ms() < end;)
        closed = poll(&pf, 1, 100) == 1 && read(fd, buf, sizeof(buf)) <= 0;
    assert_true(closed);
}

/* A probe is out: the next request gets its 503 without reaching the origin behind l. */
static void expect_not_let_through(struct harness *h, int l)
{
    struct raw_conn *next = px_connect(h);
    assert_int_equal(raw_send_str(next, "GET /next HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    int first = first_readable(next, l, PX_IO_MS);
    if (first == 'l')
        fail_msg("a second probe went to the origin while the first was out");
    assert_int_equal(first, 'c');
    struct raw_head head;
    assert_int_equal(raw_read_one_head(next, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 503);
    raw_head_free(&head);
    raw_close(next);
}

/* The scene of the probe rows: an origin the test plays (a listener it accepts from, or shuts to
 * refuse), max_fails = 1, down_time 200 ms; an attempt on it, unanswered (*older, the origin's
 * side *older_fd), from before it went down; then the probe after down_time (*probe, *probe_fd),
 * unanswered too. Returns the Portico; *l is the listener. */
static struct harness *probe_scene(int *l, struct raw_conn **older, int *older_fd,
                                   struct raw_conn **probe, int *probe_fd)
{
    uint16_t port;
    *l = listen_again_able(&port);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\nretries = 0\n"
                                 "max_fails = 1\ndown_time = 200ms\nkeepalive = 0\n",
                                 port);
    *older = px_connect(h);
    assert_int_equal(raw_send_str(*older, "GET /older HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(first_readable(*older, *l, PX_IO_MS), 'l');
    *older_fd = accept(*l, NULL, NULL);
    assert_true(*older_fd >= 0);
    /* the origin refuses (Linux: a listener shut down stops listening): marked down */
    assert_int_equal(shutdown(*l, SHUT_RDWR), 0);
    assert_int_equal(status_of(h, "/refused"), 502);
    assert_int_equal(harness_wait_log(h, "marked down for 200 ms", PX_IO_MS), 0);
    assert_int_equal(listen(*l, 16), 0);
    /* after down_time one request is the probe: Portico connects, and it gets no answer */
    *probe = probe_out(h, *l);
    *probe_fd = accept(*l, NULL, NULL);
    assert_true(*probe_fd >= 0);
    return h;
}

/* README: after down_time "the next request that would go to it is let through alone". An
 * attempt picked before the origin went down, whose client leaves while the probe is out, ends
 * without a verdict: that gave the probe's turn back, and the next request probed the origin
 * beside the probe still out (by hand, 10 such clients let 8 requests at once into an origin
 * that hung). The test plays the origin: a listener it accepts from, or shuts to refuse. */
static void test_probe_goes_alone(void **state)
{
    (void)state;
    int l, older_fd, probe_fd;
    struct raw_conn *older, *probe;
    struct harness *h = probe_scene(&l, &older, &older_fd, &probe, &probe_fd);
    /* the older attempt's client leaves: Portico closes its origin connection */
    raw_close(older);
    wait_closed(older_fd);
    /* the probe is still out: the next request is not let through */
    expect_not_let_through(h, l);
    raw_close(probe);
    px_stop(h);
    close(older_fd);
    close(probe_fd);
    close(l);
}

/* A probe outlives its turn: an attempt picked before the origin went down is answered (back
 * up), the origin goes down again and the request after that down_time probes it. The first
 * probe, still out, is then one of the older attempts: its client leaving gave the turn of the
 * probe now out to the next request, which went to the origin beside it (its failure would
 * have marked the origin down again under the probe). first_byte_timeout (60 s) outlasts
 * down_time (10 s) by default: a probe to an origin that hangs now and then does. */
static void test_stale_probe_leaves_the_next_alone(void **state)
{
    (void)state;
    int l, older_fd, first_probe_fd;
    struct raw_conn *older, *first_probe;
    struct harness *h = probe_scene(&l, &older, &older_fd, &first_probe, &first_probe_fd);
    /* the older attempt is answered: the origin is back up, the first probe still out */
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(write(older_fd, ok, sizeof(ok) - 1), (ssize_t)sizeof(ok) - 1);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(older, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 200);
    raw_head_free(&head);
    assert_int_equal(harness_wait_log(h, "answered; back up", PX_IO_MS), 0);
    /* down again, and probed again */
    assert_int_equal(shutdown(l, SHUT_RDWR), 0);
    assert_int_equal(status_of(h, "/refused-again"), 502);
    assert_int_equal(harness_wait_log_count(h, "marked down for 200 ms", 2, PX_IO_MS), 0);
    assert_int_equal(listen(l, 16), 0);
    struct raw_conn *probe = probe_out(h, l);
    int probe_fd = accept(l, NULL, NULL);
    assert_true(probe_fd >= 0);
    /* the first probe's client leaves */
    raw_close(first_probe);
    wait_closed(first_probe_fd);
    expect_not_let_through(h, l);
    raw_close(probe);
    raw_close(older);
    px_stop(h);
    close(older_fd);
    close(first_probe_fd);
    close(probe_fd);
    close(l);
}

/* ---- active health check ---- */

static _Atomic bool healthz_failing;

static const struct fo_step healthz_500[] = {FO_RESPOND(500, NULL, "sick\n", FO_LENGTH), FO_END()};
static const struct fo_step respond_ok[] = {FO_RESPOND_OK(), FO_END()};

static const struct fo_step *pick_healthz(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    bool check = strncmp(req->head, "GET /healthz ", 13) == 0;
    return check && atomic_load(&healthz_failing) ? healthz_500 : respond_ok;
}

/* Requests that are not health checks, among the first n an origin read. */
static unsigned non_checks(struct fake_origin *o)
{
    unsigned n = fake_origin_requests(o), other = 0;
    for (unsigned i = 0; i < n; i++) {
        char *head = fake_origin_request_head(o, i);
        other += head && strncmp(head, "GET /healthz ", 13) != 0;
        free(head);
    }
    return other;
}

static void test_active_health(void **state)
{
    (void)state;
    atomic_store(&healthz_failing, true);
    struct fake_origin_opts sick_opts = {.kind = FO_SCRIPT, .pick_script = pick_healthz};
    struct fake_origin *sick = fake_origin_start(&sick_opts);
    struct fake_origin *well = px_origin(FO_OK);
    assert_non_null(sick);
    struct harness *h = start_two("admin_listen = 127.0.0.1:{{port:admin}}",
                                  fake_origin_port(sick), fake_origin_port(well),
                                  "health_check = GET /healthz every 100ms expect 2xx\n");
    assert_int_equal(harness_wait_log(h, "failed its health check (GET /healthz answered 500)",
                                      PX_IO_MS), 0);
    uint16_t admin = harness_port(h, "admin");
    assert_origin_up(h, fake_origin_port(sick), 0);
    for (int k = 0; k < 8; k++)
        assert_int_equal(status_of(h, "/a"), 200);
    assert_int_equal(non_checks(sick), 0);
    assert_true(non_checks(well) >= 8);
    struct tj *doc;
    const struct tj *so = px_status_origin(h, 0, &doc);
    assert_non_null(tj_str(so, "check"));
    assert_string_equal(tj_str(so, "check"), "failing");
    assert_string_equal(tj_str(so, "passive"), "up");
    tj_free(doc);
    /* the check as the origin saw it */
    char *head = fake_origin_request_head(sick, 0);
    assert_non_null(head);
    assert_true(px_starts(head, "GET /healthz HTTP/1.1\r\n"));
    assert_non_null(strstr(head, "\r\nUser-Agent: portico-health-check\r\n"));
    free(head);
    /* it heals: the next check passes and it takes its share again */
    atomic_store(&healthz_failing, false);
    assert_int_equal(harness_wait_log(h, "passed its health check", PX_IO_MS), 0);
    for (int k = 0; k < 8; k++)
        assert_int_equal(status_of(h, "/b"), 200);
    assert_int_equal(non_checks(sick), 4);
    assert_origin_up(h, fake_origin_port(sick), 1);
    assert_true(scrape_metric(admin, "portico_health_checks_total", PX_IO_MS) >= 2);
    assert_true(scrape_metric(admin, "portico_health_checks_failed_total", PX_IO_MS) >= 1);
    px_stop(h);
    fake_origin_stop(sick);
    fake_origin_stop(well);
}

/* A check of a TLS origin goes as requests do, SNI and certificate checked against `sni` (an
 * origin whose certificate names another host fails it), and its Host names the host the
 * connection was made for: the old binary sent Host: 127.0.0.1:PORT on a connection whose SNI
 * was localhost, which a name-based virtual host answers 404 or 421 (Misdirected Request):
 * every such origin failed its check, and clients got 503 no_healthy_origin while their own
 * requests (their Host) would have been answered. */
static void test_health_check_tls_host(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts good_opts = {.kind = FO_OK, .tls_cert = certs->server_cert,
                                         .tls_key = certs->server_key};
    struct fake_origin_opts wrong_opts = {.kind = FO_OK, .tls_cert = certs->wrong_name_cert,
                                          .tls_key = certs->wrong_name_key};
    struct fake_origin *good = fake_origin_start(&good_opts);
    struct fake_origin *wrong = fake_origin_start(&wrong_opts);
    assert_non_null(good);
    assert_non_null(wrong);
    struct harness *h = start_two(NULL, fake_origin_port(good), fake_origin_port(wrong),
                                  "tls = on\nca_file = {{certs}}/ca.pem\nsni = localhost\n"
                                  "health_check = GET /healthz every 1m expect 200\n");
    char line[200];
    snprintf(line, sizeof(line), "origin 127.0.0.1:%u failed its health check (",
             fake_origin_port(wrong));
    assert_int_equal(harness_wait_log(h, line, PX_IO_MS), 0);
    assert_true(harness_log_contains(h, "hostname mismatch"));
    assert_int_equal(fake_origin_wait_requests(good, 1, PX_IO_MS), 0);
    char sni[64];
    fake_origin_last_sni(good, sni, sizeof(sni));
    assert_string_equal(sni, "localhost");
    char *head = fake_origin_request_head(good, 0);
    assert_non_null(head);
    char host[80];
    snprintf(host, sizeof(host), "\r\nHost: localhost:%u\r\n", fake_origin_port(good));
    assert_non_null(strstr(head, host));
    free(head);
    assert_false(harness_log_contains(h, "failed its health check (GET"));
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/tls"), 200);
    px_stop(h);
    fake_origin_stop(good);
    fake_origin_stop(wrong);
}

/* When the checks of test_health_check_every_start reached the origin (tu_now_ms). */
static _Atomic int64_t slow_check_at[3];
static atomic_uint slow_checks;

static void slow_check_came(void *arg)
{
    (void)arg;
    unsigned i = atomic_fetch_add(&slow_checks, 1);
    if (i < 3)
        atomic_store(&slow_check_at[i], tu_now_ms());
}

static const struct fo_step slow_answer[] = {FO_WAIT(400), FO_RESPOND_OK(), FO_END()};

/* Checks start an interval apart, however long each took (README: health_check, `every`): an
 * origin answering its checks in 400 ms of a 500 ms interval is checked every 500 ms, not every
 * 900. The gap measured is between the second and third checks, both after a slow one. */
static void test_health_check_every_start(void **state)
{
    (void)state;
    atomic_store(&slow_checks, 0);
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = slow_answer,
                                    .on_head = slow_check_came};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "health_check = GET /healthz every 500ms expect 200\n",
                                 fake_origin_port(o));
    int64_t end = tu_now_ms() + PX_IO_MS;
    while (atomic_load(&slow_checks) < 3 && tu_now_ms() < end)
        fake_origin_wait_requests(o, fake_origin_requests(o) + 1, PX_IO_MS);
    px_stop(h);
    fake_origin_stop(o);
    assert_true(atomic_load(&slow_checks) >= 3);
    int64_t gap = atomic_load(&slow_check_at[2]) - atomic_load(&slow_check_at[1]);
    print_message("  checks answered in 400 ms, every 500 ms: %lld ms apart\n", (long long)gap);
    if (gap >= 850) /* the mutant's at least 900: 400 + 500; 350 ms of room for a loaded host */
        fail_msg("the third check came %lld ms after the second one started: an interval "
                 "after it ended", (long long)gap);
}

/* The namespace test_health_check_tls_host_443 entered (its setup), left by its teardown even
 * when the row failed; -1: none, the row skips. */
static int netns_old = -1;
static const char *netns_why;

static int netns_enter(void **state)
{
    (void)state;
    netns_old = tu_netns_enter(false, &netns_why);
    return 0;
}

static int netns_leave(void **state)
{
    (void)state;
    int rc = netns_old >= 0 ? tu_netns_leave(netns_old) : 0;
    netns_old = -1;
    return rc;
}

/* A check of a TLS origin on port 443 says Host: localhost, the `sni` alone, as a browser
 * writes a URL's default port (RFC 9110 7.2: "localhost:443" is another spelling a strict
 * virtual host may not take). Port 443 needs root to bind: the row runs in a network namespace
 * of its own (tu_netns_enter, root), whose 127.0.0.1:443 no other test or program holds. */
static void test_health_check_tls_host_443(void **state)
{
    (void)state;
    if (netns_old < 0) {
        print_message("  skipped: %s\n", netns_why);
        skip();
    }
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts opts = {.kind = FO_OK, .tls_cert = certs->server_cert,
                                    .tls_key = certs->server_key, .port = 443};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:443\n"
                                 "tls = on\nca_file = {{certs}}/ca.pem\nsni = localhost\n"
                                 "health_check = GET /healthz every 1m expect 200\n");
    assert_int_equal(fake_origin_wait_requests(o, 1, PX_IO_MS), 0);
    char *host = fake_origin_request_header(o, 0, "Host");
    print_message("  the check's Host: %s\n", host ? host : "(none)");
    bool bare = host && strcmp(host, "localhost") == 0;
    free(host);
    px_stop(h);
    fake_origin_stop(o);
    if (!bare)
        fail_msg("the check of 127.0.0.1:443 did not say Host: localhost");
}

/* An origin that requires a client certificate and gets none fails its check for that reason,
 * as a request to it does (502 tls_handshake_failed, "certificate required"). Over TLS 1.3 the
 * refusal is an alert after our Finished, which the check's request has followed: the old binary
 * logged "failed its health check (connection error)" (or the reset its write met), and as the
 * check kept the origin down, no request ever showed the reason. TLS 1.2, whose handshake
 * itself fails, said it already (for comparison). */
static const struct {
    int version;
    const char *why;     /* in the check's line */
} tls_refused_rows[] = {
    {TLS1_3_VERSION, "alert certificate_required (116): it requires a client certificate"},
    {TLS1_2_VERSION, "alert handshake_failure (40): it may require a client certificate"},
};

static void test_health_check_tls_refused(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    for (size_t i = 0; i < ARRAY_SIZE(tls_refused_rows); i++) {
        struct fake_origin_opts opts = {.kind = FO_OK, .tls_cert = certs->server_cert,
                                        .tls_key = certs->server_key,
                                        .tls_client_ca = certs->ca_cert,
                                        .tls_max_version = tls_refused_rows[i].version};
        struct fake_origin *o = fake_origin_start(&opts);
        assert_non_null(o);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "tls = on\nca_file = {{certs}}/ca.pem\nsni = localhost\n"
                                     "health_check = GET /healthz every 1m expect 200\n",
                                     fake_origin_port(o));
        char prefix[120];
        snprintf(prefix, sizeof(prefix), "origin 127.0.0.1:%u failed its health check (",
                 fake_origin_port(o));
        assert_int_equal(harness_wait_log(h, prefix, PX_IO_MS), 0);
        char *err = harness_stderr(h);
        assert_non_null(err);
        char *line = strstr(err, prefix);
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        print_message("  %s: %s\n", tls_refused_rows[i].version == TLS1_3_VERSION ? "TLS 1.3"
                                                                                 : "TLS 1.2",
                      line + strlen(prefix));
        bool named = strstr(line, tls_refused_rows[i].why) != NULL;
        free(err);
        px_stop(h);
        fake_origin_stop(o);
        if (!named)
            fail_msg("the check's failure does not say \"%s\"", tls_refused_rows[i].why);
    }
}

static const struct fo_step hold[] = {FO_HOLD(), FO_END()};

/* The gray origin: its checks pass, its requests are never answered. */
static const struct fo_step *pick_check_only(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strncmp(req->head, "GET /healthz ", 13) == 0 ? respond_ok : hold;
}

/* Passive health judges requests, the check judges checks: an origin that passes its check
 * while its requests time out is marked down by max_fails and stays down for down_time. The old
 * binary let each passing check start the failure count over (and end a down_time): with a check
 * every 100 ms between failures, max_fails = 2 never marked it down, and every request sent
 * there failed (5 of 10 here; by hand, a check every 1 s and max_fails = 3: 15 of 30 requests
 * got 504, against 3 of 30 without the check). */
static void test_check_keeps_passive_verdict(void **state)
{
    (void)state;
    struct fake_origin_opts gray_opts = {.kind = FO_SCRIPT, .pick_script = pick_check_only};
    struct fake_origin *gray = fake_origin_start(&gray_opts);
    struct fake_origin *well = px_origin(FO_OK);
    assert_non_null(gray);
    struct harness *h = start_two(NULL, fake_origin_port(gray), fake_origin_port(well),
                                  "max_fails = 2\ndown_time = 1m\nfirst_byte_timeout = 200ms\n"
                                  "health_check = GET /healthz every 100ms expect 200\n");
    int failed = 0;
    for (int round = 0; round < 5; round++) {
        for (int k = 0; k < 2; k++)
            failed += status_of(h, "/gray") != 200;
        /* two more checks reached it: the first one's verdict is in */
        unsigned seen = fake_origin_requests(gray);
        assert_int_equal(fake_origin_wait_requests(gray, seen + 2, PX_IO_MS), 0);
    }
    print_message("  %d of 10 requests failed\n", failed);
    assert_int_equal(failed, 2);
    assert_true(harness_log_contains(h, "marked down for 60000 ms after 2 failures"));
    px_stop(h);
    fake_origin_stop(gray);
    fake_origin_stop(well);
}

/* 1000 interim responses in one go, then nothing. */
static char flood_1xx[1000 * 27 + 1];
static const struct fo_step flood_then_hold[] = {FO_SEND(flood_1xx), FO_HOLD(), FO_END()};

static const struct fo_step *pick_flood_check(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strncmp(req->head, "GET /healthz ", 13) == 0 ? flood_then_hold : respond_ok;
}

/* A check answered by a stream of 1xx fails at once (a check has no use for more than an
 * exchange relays), instead of parsing them until its timeout: the old binary spent 4.4 CPU
 * seconds of the worker that also serves clients on a 5 s check of a flooding origin, and then
 * said "no answer within 5000 ms". */
static void test_health_check_1xx_flood(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++)
        memcpy(flood_1xx + i * 27, "HTTP/1.1 102 Processing\r\n\r\n", 27);
    struct fake_origin_opts flood_opts = {.kind = FO_SCRIPT, .pick_script = pick_flood_check};
    struct fake_origin *flood = fake_origin_start(&flood_opts);
    assert_non_null(flood);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "health_check = GET /healthz every 1m expect 200\n",
                                 fake_origin_port(flood));
    assert_int_equal(harness_wait_log(h, "failed its health check (", PX_IO_MS), 0);
    assert_true(harness_log_contains(h, "failed its health check (more than 32 interim "
                                        "responses)"));
    px_stop(h);
    fake_origin_stop(flood);
}

/* The answers of test_health_check_answer_edges' checks: 32 interim responses (as many as a
 * check reads) then the final 200; an interim status alone. */
static char interim_32[32 * 27 + 40];
static const struct fo_step interim_32_then_ok[] = {FO_SEND(interim_32), FO_HOLD(), FO_END()};
static const struct fo_step processing_only[] = {FO_SEND("HTTP/1.1 102 Processing\r\n\r\n"),
                                                 FO_HOLD(), FO_END()};

static const struct {
    const char *why;
    const struct fo_step *check_answer;
    const char *expect;
} answer_rows[] = {
    {"32 x 102, then 200 (the count starts over each check)", interim_32_then_ok, "200"},
    {"102, the status expected", processing_only, "102"},
};

static const struct fo_step *pick_answer_row(const struct fo_request_info *req, void *arg)
{
    if (strncmp(req->head, "GET /healthz ", 13) != 0)
        return respond_ok;
    return answer_rows[(uintptr_t)arg].check_answer;
}

/* Checks that pass at the edges of reading an answer: the 32nd interim response is one a
 * check reads, and a check that expects an interim status passes on it (it is final to the
 * check). Each origin's first two checks pass, which the third one's arrival tells (a check is
 * armed by the end of the one before). */
static void test_health_check_answer_edges(void **state)
{
    (void)state;
    for (int i = 0; i < 32; i++)
        memcpy(interim_32 + i * 27, "HTTP/1.1 102 Processing\r\n\r\n", 27);
    strcpy(interim_32 + 32 * 27, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    for (size_t i = 0; i < sizeof(answer_rows) / sizeof(answer_rows[0]); i++) {
        struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_answer_row,
                                        .pick_arg = (void *)(uintptr_t)i};
        struct fake_origin *o = fake_origin_start(&opts);
        assert_non_null(o);
        struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "health_check = GET /healthz every 500ms expect %s\n",
                                     fake_origin_port(o), answer_rows[i].expect);
        assert_int_equal(fake_origin_wait_requests(o, 3, PX_IO_MS), 0);
        double failed = scrape_metric(harness_port(h, "admin"),
                                      "portico_health_checks_failed_total", PX_IO_MS);
        print_message("  %s: %.0f failed\n", answer_rows[i].why, failed);
        if (failed != 0)
            fail_msg("%s: a check failed", answer_rows[i].why);
        px_stop(h);
        fake_origin_stop(o);
    }
}

/* ---- rise and fall: checks answered one at a time ---- */

/* The origin of the rise/fall tests. Each check waits at a gate until the test lets it answer,
 * with the result scripted for it (P: 200, F: 500); other requests get 200. A check that has
 * arrived tells the test that Portico has the results of every check before it (one check at a
 * time per origin), and it holds the next result back while the test sends its requests: no
 * race with the interval, whose timeout (500 ms: the step between two checks, 4 requests and
 * a look at /status, takes a few ms even under ASan) only bounds the test's requests. */
static struct {
    const char *results;     /* each check's answer, in order; P after the end */
    _Atomic unsigned checks; /* checks arrived */
    sem_t arrived;           /* posted by each check as it arrives */
    sem_t answer;            /* posted by the test: the check held may answer */
} gate;

static int gate_check(int fd, void *arg)
{
    (void)fd, (void)arg;
    sem_post(&gate.arrived);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PX_IO_MS / 1000;
    return sem_timedwait(&gate.answer, &until) == 0 ? 0 : -1;
}

static const struct fo_step gated_pass[] = {FO_CALL(gate_check, NULL), FO_RESPOND_OK(), FO_END()};
static const struct fo_step gated_fail[] = {
    FO_CALL(gate_check, NULL), FO_RESPOND(500, NULL, "sick\n", FO_LENGTH), FO_END()};

static const struct fo_step *pick_gated(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strncmp(req->head, "GET /healthz ", 13) != 0)
        return respond_ok;
    unsigned k = atomic_fetch_add(&gate.checks, 1);
    return k < strlen(gate.results) && gate.results[k] == 'F' ? gated_fail : gated_pass;
}

struct gated {
    struct harness *h;
    struct fake_origin *sick; /* the gated origin (the first) */
    struct fake_origin *well; /* always answers */
    unsigned checks;          /* checks the test let answer */
};

/* Portico with the gated origin and a well one, `health_check = ... every 500ms expect 200 OPTS`.
 */
static void gated_start(struct gated *g, const char *results, const char *opts)
{
    gate.results = results;
    atomic_store(&gate.checks, 0);
    assert_int_equal(sem_init(&gate.arrived, 0, 0), 0);
    assert_int_equal(sem_init(&gate.answer, 0, 0), 0);
    struct fake_origin_opts sick_opts = {.kind = FO_SCRIPT, .pick_script = pick_gated};
    g->checks = 0;
    assert_non_null(g->sick = fake_origin_start(&sick_opts));
    g->well = px_origin(FO_OK);
    g->h = start_two("admin_listen = 127.0.0.1:{{port:admin}}", fake_origin_port(g->sick),
                     fake_origin_port(g->well),
                     "health_check = GET /healthz every 500ms expect 200 %s\n",
                     opts);
}

/* Waits for the next check to arrive (Portico has the results of those before it). */
static void gated_next(struct gated *g)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PX_IO_MS / 1000;
    if (sem_timedwait(&gate.arrived, &until) != 0)
        fail_msg("check %u did not arrive", g->checks + 1);
}

/* Lets the check held answer as scripted. */
static void gated_answer(struct gated *g)
{
    g->checks++;
    sem_post(&gate.answer);
}

/* Of 4 requests (2 rounds of round robin), how many the gated origin took. */
static unsigned gated_share(struct gated *g)
{
    unsigned before = non_checks(g->sick);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(g->h, "/work"), 200);
    return non_checks(g->sick) - before;
}

/* /status of the gated origin: its check verdict and the checks in a row. */
static void gated_status(struct gated *g, const char *check, int passed, int failed)
{
    struct tj *doc;
    const struct tj *o = px_status_origin(g->h, 0, &doc);
    double p = -1, f = -1;
    assert_int_equal(tj_num(o, "checks_passed_in_row", &p), 0);
    assert_int_equal(tj_num(o, "checks_failed_in_row", &f), 0);
    const struct tj *stopped = tj_get(o, "checks_stopped"); /* armed: its checks run */
    assert_true(stopped && stopped->type == TJ_BOOL && !stopped->boolean);
    if (strcmp(tj_str(o, "check"), check) != 0 || (int)p != passed || (int)f != failed)
        fail_msg("after check %u: check %s, %d passed and %d failed in a row; want %s, %d, %d",
                 g->checks, tj_str(o, "check"), (int)p, (int)f, check, passed, failed);
    tj_free(doc);
}

static void gated_stop(struct gated *g)
{
    assert_false(harness_log_contains(g->h, "no answer within")); /* no check outran the test */
    px_stop(g->h);
    sem_post(&gate.answer); /* the check held, if any, ends */
    fake_origin_stop(g->sick);
    fake_origin_stop(g->well);
    sem_destroy(&gate.arrived);
    sem_destroy(&gate.answer);
}

/* `fall 3`: an origin that fails two checks in a row still takes its share (each failure
 * logged, with the count), the third marks it down. One check decided before: an origin whose
 * /healthz failed once was out until a check passed. */
static void test_health_check_fall(void **state)
{
    (void)state;
    struct gated g;
    gated_start(&g, "FFF", "fall 3");
    for (unsigned k = 0; k < 3; k++) {
        gated_next(&g);
        if (k > 0) {
            char line[160];
            snprintf(line, sizeof(line), "failed its health check (GET /healthz answered 500); "
                                         "%u of 3 in a row, not marked down yet", k);
            assert_int_equal(harness_wait_log(g.h, line, PX_IO_MS), 0);
        }
        unsigned got = gated_share(&g);
        print_message("  after %u failed check%s: %u of 4 requests to the origin\n", k,
                      k == 1 ? "" : "s", got);
        assert_int_equal(got, 2);
        gated_status(&g, "passing", 0, (int)k);
        gated_answer(&g);
    }
    gated_next(&g);
    assert_int_equal(harness_wait_log(g.h, "failed its health check (GET /healthz answered 500); "
                                           "3 in a row, marked down", PX_IO_MS), 0);
    unsigned got = gated_share(&g);
    print_message("  after 3 failed checks: %u of 4 requests to the origin\n", got);
    assert_int_equal(got, 0);
    gated_status(&g, "failing", 0, 3);
    gated_stop(&g);
}

/* `rise 2`: an origin down by its check that passes one check still takes none (the pass
 * logged, with the count); the second in a row brings it back. */
static void test_health_check_rise(void **state)
{
    (void)state;
    struct gated g;
    gated_start(&g, "FPP", "rise 2");
    gated_next(&g);
    gated_answer(&g); /* F: marked down at once (fall 1) */
    gated_next(&g);
    assert_int_equal(harness_wait_log(g.h, "failed its health check (GET /healthz answered 500); "
                                           "marked down", PX_IO_MS), 0);
    assert_int_equal(gated_share(&g), 0);
    gated_status(&g, "failing", 0, 1);
    gated_answer(&g); /* P */
    gated_next(&g);
    assert_int_equal(harness_wait_log(g.h, "passed its health check; 1 of 2 in a row, still down",
                                      PX_IO_MS), 0);
    unsigned got = gated_share(&g);
    print_message("  after 1 passed check: %u of 4 requests to the origin\n", got);
    assert_int_equal(got, 0);
    gated_status(&g, "failing", 1, 0);
    gated_answer(&g); /* P */
    gated_next(&g);
    assert_int_equal(harness_wait_log(g.h, "passed its health check; 2 in a row, up", PX_IO_MS), 0);
    got = gated_share(&g);
    print_message("  after 2 passed checks: %u of 4 requests to the origin\n", got);
    assert_int_equal(got, 2);
    gated_status(&g, "passing", 2, 0);
    gated_stop(&g);
}

/* `rise 2 fall 2` and an origin failing every other check: never two failures in a row, so it
 * never goes down (with one check deciding, it was out after every failure). */
static void test_health_check_alternating(void **state)
{
    (void)state;
    struct gated g;
    const char *results = "FPFPF";
    gated_start(&g, results, "rise 2 fall 2");
    unsigned total = 0;
    for (unsigned k = 0; k <= strlen(results); k++) {
        gated_next(&g);
        if (k > 0 && results[k - 1] == 'F')
            assert_int_equal(harness_wait_log(g.h, "1 of 2 in a row, not marked down yet",
                                              PX_IO_MS), 0);
        unsigned got = gated_share(&g);
        total += got;
        assert_int_equal(got, 2);
        gated_status(&g, "passing", k > 0 && results[k - 1] == 'P',
                     k > 0 && results[k - 1] == 'F');
        if (k < strlen(results))
            gated_answer(&g);
    }
    print_message("  %u checks, every other one failed: %u of %zu requests to the origin\n",
                  (unsigned)strlen(results), total, 4 * (strlen(results) + 1));
    char *err = harness_stderr(g.h);
    assert_int_equal(px_count(err, "1 of 2 in a row, not marked down yet"), 3);
    assert_null(strstr(err, "marked down\n"));
    free(err);
    gated_stop(&g);
}

/* The sick origin of the reload test: its first check answers 500, the later ones never
 * answer (the new generation's first check is still out when the requests go); other requests
 * get 200, so a request sent there shows in non_checks. */

static const struct fo_step *pick_first_check_500(const struct fo_request_info *req, void *arg)
{
    _Atomic unsigned *checks = arg;
    if (strncmp(req->head, "GET /healthz ", 13) != 0)
        return respond_ok;
    return atomic_fetch_add(checks, 1) == 0 ? healthz_500 : hold;
}

/* A reload keeps the verdicts of the origins it keeps: the old binary started every origin up
 * again, and an origin known to fail its check took its share of the requests until the new
 * generation's first check ended (4 of 8 here; a hung origin's requests waited for
 * first_byte_timeout and got 504, for up to the check's timeout after every reload). */
static void test_reload_keeps_verdicts(void **state)
{
    (void)state;
    _Atomic unsigned checks = 0;
    struct fake_origin_opts sick_opts = {
        .kind = FO_SCRIPT, .pick_script = pick_first_check_500, .pick_arg = &checks};
    struct fake_origin *sick = fake_origin_start(&sick_opts);
    struct fake_origin *well = px_origin(FO_OK);
    assert_non_null(sick);
    struct harness *h = start_two("admin_listen = 127.0.0.1:{{port:admin}}",
                                  fake_origin_port(sick), fake_origin_port(well),
                                  "health_check = GET /healthz every 1m expect 2xx\n");
    assert_int_equal(harness_wait_log(h, "failed its health check (GET /healthz answered 500)",
                                      PX_IO_MS), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (int k = 0; k < 8; k++)
        assert_int_equal(status_of(h, "/after-reload"), 200);
    print_message("  after the reload: %u of 8 requests to the failing origin\n",
                  non_checks(sick));
    assert_int_equal(non_checks(sick), 0);
    assert_origin_up(h, fake_origin_port(sick), 0);
    px_stop(h);
    fake_origin_stop(sick);
    fake_origin_stop(well);
}

/* A reload that keeps the check keeps the run of failures toward fall: each reload's first check
 * runs at once (the interval, 1m, brings no other), and the third failure in a row, two reloads
 * on, marks the origin down. Counting afresh would say "1 of 3" after every reload, and an
 * origin failing its checks would never go down if reloads came more often than fall checks. */
static void test_reload_keeps_check_run(void **state)
{
    (void)state;
    atomic_store(&healthz_failing, true);
    struct fake_origin_opts sick_opts = {.kind = FO_SCRIPT, .pick_script = pick_healthz};
    struct fake_origin *sick = fake_origin_start(&sick_opts);
    struct fake_origin *well = px_origin(FO_OK);
    assert_non_null(sick);
    struct harness *h = start_two("admin_listen = 127.0.0.1:{{port:admin}}",
                                  fake_origin_port(sick), fake_origin_port(well),
                                  "health_check = GET /healthz every 1m expect 2xx fall 3\n");
    assert_int_equal(harness_wait_log(h, "answered 500); 1 of 3 in a row, not marked down yet",
                                      PX_IO_MS), 0);
    /* The requests go once the new workers alone accept: the check's line can come first, and
     * a request to the old generation's round robin made it 3 to the sick origin of 4 */
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "answered 500); 2 of 3 in a row, not marked down yet",
                                      PX_IO_MS), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/still-up"), 200);
    assert_int_equal(non_checks(sick), 2);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "answered 500); 3 in a row, marked down", PX_IO_MS), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 3", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/down"), 200);
    assert_int_equal(non_checks(sick), 2);
    struct tj *doc;
    const struct tj *so = px_status_origin(h, 0, &doc);
    double failed = 0;
    assert_int_equal(tj_num(so, "checks_failed_in_row", &failed), 0);
    assert_int_equal((int)failed, 3);
    tj_free(doc);
    char *err = harness_stderr(h);
    assert_int_equal(px_count(err, "1 of 3 in a row"), 1);
    free(err);
    px_stop(h);
    fake_origin_stop(sick);
    fake_origin_stop(well);
}

/* A check that runs out of time before its request went out says in which phase, as an
 * exchange's timeout does, naming the host for dns and the address otherwise: the binary before
 * the fix logged "no answer within 200 ms" for all three rows, and a resolver that never answered
 * read as an origin that did not answer its HTTP request. */
struct stuck_row {
    int kind;               /* fake origin kind; -1: the origin is a name the resolver ignores */
    const char *why;        /* the log's reason; %u: the origin's port */
};

static const struct stuck_row stuck_rows[] = {
    /* the resolver reads the query and never answers */
    {-1, "failed its health check (resolving silent.portico.test exceeded 200 ms)"},
    /* the SYN is dropped: a full accept queue */
    {FO_BLACKHOLE, "failed its health check (connect to 127.0.0.1:%u exceeded 200 ms)"},
    /* connected, the request read, never answered */
    {FO_SILENT, "failed its health check (no answer within 200 ms)"},
};

static void test_health_check_stuck_phase(void **state)
{
    (void)state;
    struct fake_dns_opts dopts = {.mode = FAKE_DNS_SILENT};
    struct fake_dns *d = fake_dns_start(&dopts);
    assert_non_null(d);
    enum { NROWS = sizeof(stuck_rows) / sizeof(stuck_rows[0]) };
    struct fake_origin *o[NROWS] = {0};
    char proxy[64], ups[1024];
    size_t n = 0;
    snprintf(proxy, sizeof(proxy), "resolver = 127.0.0.1:%u", fake_dns_port(d));
    for (size_t i = 0; i < NROWS; i++) {
        if (stuck_rows[i].kind >= 0)
            o[i] = px_origin((enum fo_kind)stuck_rows[i].kind);
        if (o[i])
            n += (size_t)snprintf(ups + n, sizeof(ups) - n, "[upstream u%zu]\norigin = 127.0.0.1:%u\n",
                                  i, fake_origin_port(o[i]));
        else
            n += (size_t)snprintf(ups + n, sizeof(ups) - n,
                                  "[upstream u%zu]\norigin = silent.portico.test:1\n", i);
        n += (size_t)snprintf(ups + n, sizeof(ups) - n,
                              "health_check = GET /healthz every 200ms expect 200\n");
    }
    struct harness *h = px_start(proxy, "%s[route r]\nprefix = /\nupstream = u0\n", ups);
    for (size_t i = 0; i < NROWS; i++) {
        char why[200];
        snprintf(why, sizeof(why), stuck_rows[i].why, o[i] ? fake_origin_port(o[i]) : 0);
        if (harness_wait_log(h, why, PX_IO_MS) != 0) {
            char *err = harness_stderr(h);
            fail_msg("no \"%s\" in:\n%s", why, err ? err : "");
        }
    }
    px_stop(h);
    for (size_t i = 0; i < NROWS; i++)
        fake_origin_stop(o[i]);
    fake_dns_stop(d);
}

/* A check whose name the resolver failed (SERVFAIL) says so when its time runs out while the
 * name is asked again for every family, as an exchange does (test_failures): the answer takes
 * 400 ms, so the second round's is due at 800 ms, after the check's 600 ms; 200 ms either way
 * (150 ms against 200 left 50, which valgrind's slower start of the check took). The binary
 * before the fix logged "resolving servfail.portico.test exceeded 200 ms". */
static void test_health_check_dns_failure(void **state)
{
    (void)state;
    struct fake_dns_opts dopts = {.mode = FAKE_DNS_SERVFAIL, .delay_ms = 400};
    struct fake_dns *d = fake_dns_start(&dopts);
    assert_non_null(d);
    char proxy[64];
    snprintf(proxy, sizeof(proxy), "resolver = 127.0.0.1:%u", fake_dns_port(d));
    struct harness *h = px_start(proxy, "[upstream u]\norigin = servfail.portico.test:1\n"
                                        "health_check = GET /healthz every 1s expect 200 "
                                        "timeout 600ms\n");
    const char *why = "failed its health check (resolving servfail.portico.test failed: no "
                      "address, or the resolver failed (SERVFAIL";
    if (harness_wait_log(h, why, PX_IO_MS) != 0) {
        char *err = harness_stderr(h);
        fail_msg("no \"%s\" in:\n%s", why, err ? err : "");
    }
    px_stop(h);
    fake_dns_stop(d);
}

/* ---- retries ---- */

/* The issue's case: the first origin refuses, the second answers; the client gets 200 and the
 * logs show both attempts. Any method: nothing reached the refusing origin. */
static void test_retry_connect(void **state)
{
    (void)state;
    struct fake_origin *refuse = px_origin(FO_REFUSE);
    struct fake_origin *ok = px_origin(FO_ECHO);
    struct harness *h = start_two("admin_listen = 127.0.0.1:{{port:admin}}",
                                  fake_origin_port(refuse), fake_origin_port(ok),
                                  "keepalive = 0\n");
    struct raw_response r;
    assert_int_equal(get(h, "GET", "/retry/get", NULL, &r), 200);
    raw_response_free(&r);
    char want[64];
    snprintf(want, sizeof(want), "attempt 1 on 127.0.0.1:%u failed (connect_refused: ",
             fake_origin_port(refuse));
    assert_int_equal(harness_wait_log(h, want, PX_IO_MS), 0);
    /* the retry took no turn of round robin: the next request goes to the answering origin,
     * and the one after it to the refusing one again: a POST, retried with its body intact */
    assert_int_equal(get(h, "GET", "/retry/next", NULL, &r), 200);
    raw_response_free(&r);
    assert_int_equal(get(h, "POST", "/retry/post", "payload", &r), 200);
    assert_string_equal(r.body, "payload");
    raw_response_free(&r);
    assert_true(scrape_metric(harness_port(h, "admin"), "portico_upstream_next_origin_total",
                              PX_IO_MS) == 2);
    /* the access-log lines, complete once Portico has stopped (a worker writes them once a
     * second and when it exits: waiting for each while it runs costs up to a second) */
    assert_int_equal(harness_stop(h), 0);
    char *line = px_log_line(h, "target=\"/retry/get\"");
    snprintf(want, sizeof(want), " origin=127.0.0.1:%u ", fake_origin_port(ok));
    assert_non_null(strstr(line, want));
    assert_non_null(strstr(line, " attempts=2"));
    free(line);
    line = px_log_line(h, "target=\"/retry/next\"");
    assert_non_null(strstr(line, " attempts=1"));
    free(line);
    line = px_log_line(h, "target=\"/retry/post\"");
    assert_non_null(strstr(line, " attempts=2"));
    free(line);
    harness_free(h);
    fake_origin_stop(refuse);
    fake_origin_stop(ok);
}

/* An origin listed twice (a weight by repetition) is one origin to a retry: a refused connect
 * goes to an origin at another address. The old binary took the second listing for another
 * origin and tried the same address again: with A A B and A refusing, 4 of 12 requests got 502
 * while B answered. */
static void test_retry_origin_listed_twice(void **state)
{
    (void)state;
    struct fake_origin *refuse = px_origin(FO_REFUSE);
    struct fake_origin *ok = px_origin(FO_OK);
    struct harness *h = start_two(NULL, fake_origin_port(refuse), fake_origin_port(refuse),
                                  "origin = 127.0.0.1:%u\n",
                                  fake_origin_port(ok));
    int failed = 0;
    for (int k = 0; k < 12; k++)
        failed += status_of(h, "/twice") != 200;
    print_message("  %d of 12 requests failed\n", failed);
    assert_int_equal(failed, 0);
    assert_int_equal(fake_origin_requests(ok), 12);
    px_stop(h);
    fake_origin_stop(refuse);
    fake_origin_stop(ok);
}

/* An origin listed twice is one series of portico_upstream_origin_up, up only while every
 * listing of it is: once the first listing is marked down (round robin starts there), the
 * series says 0, though the second listing has not failed yet. */
static void test_origin_listed_twice_down(void **state)
{
    (void)state;
    struct fake_origin *refuse = px_origin(FO_REFUSE);
    struct fake_origin *ok = px_origin(FO_OK);
    struct harness *h = start_two("admin_listen = 127.0.0.1:{{port:admin}}",
                                  fake_origin_port(refuse), fake_origin_port(refuse),
                                  "origin = 127.0.0.1:%u\nretries = 0\nmax_fails = 1\n",
                                  fake_origin_port(ok));
    assert_int_equal(status_of(h, "/first"), 502);
    assert_int_equal(harness_wait_log(h, "after 1 failure", PX_IO_MS), 0);
    assert_origin_up(h, fake_origin_port(refuse), 0);
    px_stop(h);
    fake_origin_stop(refuse);
    fake_origin_stop(ok);
}

/* total_timeout spent waiting for an origin that never answers is that origin's failure: a hung
 * origin is marked down by max_fails as it is with first_byte_timeout. The old binary took
 * total_timeout for no verdict: with total_timeout shorter than first_byte_timeout (60 s by
 * default), a hung origin was never marked down and got every other request (5 of 10 here, 10
 * of 20 by hand, each a 504 after total_timeout). */
static void test_total_timeout_marks_down(void **state)
{
    (void)state;
    struct fake_origin *hung = px_origin(FO_SILENT);
    struct fake_origin *ok = px_origin(FO_OK);
    struct harness *h = start_two(NULL, fake_origin_port(hung), fake_origin_port(ok),
                                  "max_fails = 2\ndown_time = 1m\ntotal_timeout = 200ms\n");
    int failed = 0;
    for (int k = 0; k < 10; k++)
        failed += status_of(h, "/hung") != 200;
    print_message("  %d of 10 requests failed\n", failed);
    assert_int_equal(failed, 2);
    assert_true(harness_log_contains(h, "marked down for 60000 ms after 2 failures"));
    px_stop(h);
    fake_origin_stop(hung);
    fake_origin_stop(ok);
}

/* When a failed attempt stands: retries = 0; after the request was sent (the origin closed
 * without answering) unless retry_sent = on, and then only for an idempotent request (with a
 * body Portico holds whole: test_retry_sent_whole_body); total_timeout, whatever retry_sent
 * says. The first origin fails, the second answers. */
static void test_retry_rules(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        enum fo_kind first;
        const char *config;
        const char *method;
        const char *body;
        int status;
        const char *failure;
    } rows[] = {
        {"retries = 0: the refused connect is the answer", FO_REFUSE, "retries = 0", "GET", NULL,
         502, "connect_refused"},
        {"retry_sent off: the empty response stands", FO_CLOSE_EMPTY, "retry_sent = off", "GET",
         NULL, 502, "empty_response"},
        {"retry_sent on, GET: the next origin answers", FO_CLOSE_EMPTY, "retry_sent = on", "GET",
         NULL, 200, NULL},
        {"retry_sent on, POST: not idempotent", FO_CLOSE_EMPTY, "retry_sent = on", "POST", "x",
         502, "empty_response"},
        {"retry_sent on, POST without a body: still not idempotent", FO_CLOSE_EMPTY,
         "retry_sent = on", "POST", NULL, 502, "empty_response"},
        {"retry_sent on, PUT with a body: kept whole, it goes again", FO_CLOSE_EMPTY,
         "retry_sent = on", "PUT", "x", 200, NULL},
        /* total_timeout is the request's, not the origin's: no other origin would beat it */
        {"retry_sent on, GET, total_timeout: the timeout stands", FO_SILENT,
         "retry_sent = on\ntotal_timeout = 200ms", "GET", NULL, 504, "total_timeout"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin *first = px_origin(rows[i].first);
        struct fake_origin *ok = px_origin(FO_OK);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\n%s\n",
                                     fake_origin_port(first), fake_origin_port(ok),
                                     rows[i].config);
        struct raw_response r;
        int status = get(h, rows[i].method, "/rule", rows[i].body, &r);
        if (status != rows[i].status)
            fail_msg("%s: status %d, want %d", rows[i].why, status, rows[i].status);
        if (rows[i].failure)
            assert_string_equal(raw_header(&r, "Portico-Error"), rows[i].failure);
        raw_response_free(&r);
        assert_int_equal(fake_origin_requests(ok), status == 200 ? 1 : 0);
        px_stop(h);
        fake_origin_stop(first);
        fake_origin_stop(ok);
    }
}

/* ---- a request body Portico holds whole goes again (README, Retries) ---- */

/* n bytes of a JSON document, the same every time; malloc'd, NUL-terminated. */
static char *json_body(size_t n)
{
    static const char word[] = "{\"k\":\"abcdefghijklmnopqrstuvwxyz0123456789\"},";
    char *b = malloc(n + 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = word[i % (sizeof(word) - 1)];
    b[0] = '[';
    b[n - 1] = ']';
    b[n] = '\0';
    return b;
}

/* A request for `path` with body (len bytes), on a fresh connection: with a Content-Length, or
 * chunked (pieces of 700 bytes) and then a trailer field. The request, malloc'd; its length in
 * *n. */
static char *body_request(const char *method, const char *path, const char *body, size_t len,
                          bool chunked, size_t *n)
{
    size_t cap = len + len / 700 * 16 + 512, at = 0;
    char *req = malloc(cap);
    assert_non_null(req);
    if (!chunked) {
        at = (size_t)snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              "Content-Length: %zu\r\n\r\n", method, path, len);
        memcpy(req + at, body, len);
        *n = at + len;
        return req;
    }
    at = (size_t)snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                          "Transfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\r\n", method, path);
    for (size_t off = 0; off < len; off += 700) {
        size_t piece = len - off < 700 ? len - off : 700;
        at += (size_t)snprintf(req + at, cap - at, "%zx\r\n", piece);
        memcpy(req + at, body + off, piece);
        at += piece;
        memcpy(req + at, "\r\n", 2);
        at += 2;
    }
    at += (size_t)snprintf(req + at, cap - at, "0\r\nX-Digest: sha-256=x\r\n\r\n");
    *n = at;
    return req;
}

/* Sends req (len bytes) on a new connection; the status, the response in *r. */
static int send_request(struct harness *h, const char *req, size_t len, struct raw_response *r)
{
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send(c, req, len), 0);
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("no response: %s", r->error);
    raw_close(c);
    return r->status;
}

/* With retry_sent = on, an idempotent request whose body Portico took whole and still holds
 * (up to 64 KiB) goes to the next origin after the first one read it and reset the connection:
 * a PUT of 2 KiB of JSON with a Content-Length, and one chunked with a trailer field. The next
 * origin gets the very bytes the first one did (head, body, framing and trailer: the one request
 * sent twice), and the client its answer. The old binary answered 502 connection_reset: the body
 * had gone to the failed connection. */
static void test_retry_sent_whole_body(void **state)
{
    (void)state;
    char *body = json_body(2048);
    for (int chunked = 0; chunked <= 1; chunked++) {
        struct fake_origin *reset = px_origin(FO_RESET);
        struct fake_origin *echo = px_origin(FO_ECHO);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\nretry_sent = on\n",
                                     fake_origin_port(reset), fake_origin_port(echo));
        size_t n;
        char *req = body_request("PUT", "/doc", body, 2048, chunked, &n);
        struct raw_response r;
        int status = send_request(h, req, n, &r); /* round robin: the resetting one first */
        const char *err = raw_header(&r, "Portico-Error");
        print_message("  %s: %d %s\n", chunked ? "chunked" : "Content-Length", status,
                      err ? err : "-");
        assert_int_equal(status, 200);
        assert_int_equal(r.body_len, 2048);
        assert_memory_equal(r.body, body, 2048);
        raw_response_free(&r);
        size_t first_len, second_len;
        char *first = fake_origin_request(reset, 0, &first_len);
        char *second = fake_origin_request(echo, 0, &second_len);
        assert_non_null(first);
        assert_non_null(second);
        assert_int_equal(second_len, first_len);
        assert_memory_equal(second, first, first_len);
        if (chunked)
            assert_non_null(strstr(second, "\r\n0\r\nX-Digest: sha-256=x\r\n\r\n"));
        free(first);
        free(second);
        char want[80];
        snprintf(want, sizeof(want), "attempt 1 on 127.0.0.1:%u failed (connection_reset: ",
                 fake_origin_port(reset));
        assert_int_equal(harness_wait_log(h, want, PX_IO_MS), 0);
        free(req);
        px_stop(h);
        fake_origin_stop(reset);
        fake_origin_stop(echo);
    }
    free(body);
}

/* With retries = 2 the kept body goes again twice: a PUT of 2 KiB (chunked) meets two origins
 * that read it and reset, then a third that answers; each gets the same bytes. The copy stays
 * while a later retry may want it (relay.c's resend_replay): moved to the second origin, none
 * was left for the third, and the second reset was the answer (502, as the old binary's first). */
static void test_retry_sent_body_twice(void **state)
{
    (void)state;
    struct fake_origin *reset1 = px_origin(FO_RESET);
    struct fake_origin *reset2 = px_origin(FO_RESET);
    struct fake_origin *echo = px_origin(FO_ECHO);
    struct harness *h = start_two(NULL, fake_origin_port(reset1), fake_origin_port(reset2),
                                  "origin = 127.0.0.1:%u\nretry_sent = on\nretries = 2\n",
                                  fake_origin_port(echo));
    char *body = json_body(2048);
    size_t n;
    char *req = body_request("PUT", "/twice", body, 2048, true, &n);
    struct raw_response r;
    int status = send_request(h, req, n, &r);
    const char *err = raw_header(&r, "Portico-Error");
    print_message("  PUT, two resets: %d %s\n", status, err ? err : "-");
    assert_int_equal(status, 200);
    assert_int_equal(r.body_len, 2048);
    assert_memory_equal(r.body, body, 2048);
    raw_response_free(&r);
    size_t len[3];
    char *got[3] = {fake_origin_request(reset1, 0, &len[0]),
                    fake_origin_request(reset2, 0, &len[1]), fake_origin_request(echo, 0, &len[2])};
    for (int i = 0; i < 3; i++)
        assert_non_null(got[i]);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(len[i], len[0]);
        assert_memory_equal(got[i], got[0], len[0]);
    }
    for (int i = 0; i < 3; i++)
        free(got[i]);
    free(req);
    free(body);
    px_stop(h);
    fake_origin_stop(reset1);
    fake_origin_stop(reset2);
    fake_origin_stop(echo);
}

static const struct fo_step reset_steps[] = {FO_RST(), FO_END()};

/* GET /warm is answered (its connection kept), anything else read whole and reset. */
static const struct fo_step *warm_then_reset(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strncmp(req->head, "GET /warm", 9) == 0 ? respond_ok : reset_steps;
}

static const struct fo_step idle_408_close[] = {
    FO_SEND("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
    FO_CLOSE(), FO_END(),
};

/* Portico over two origins, flaky (its answers chosen by pick) then echo, with retry_sent on and
 * no settling, after one request to each (round robin): flaky's connection is pooled, so the next
 * request meets it reused. */
static struct harness *start_warmed_pair(
    const struct fo_step *(*pick)(const struct fo_request_info *req, void *arg),
    struct fake_origin **flaky, struct fake_origin **echo)
{
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick};
    *flaky = fake_origin_start(&opts);
    *echo = px_origin(FO_ECHO);
    assert_non_null(*flaky);
    struct harness *h = start_two(NULL, fake_origin_port(*flaky), fake_origin_port(*echo),
                                  "retry_sent = on\nsettle_time = 0\n");
    assert_int_equal(status_of(h, "/warm/1"), 200); /* flaky, its connection kept */
    assert_int_equal(status_of(h, "/warm/2"), 200); /* echo */
    return h;
}

/* GET /warm is answered; anything else gets a 408 on a reused connection, a reset on a new one. */
static const struct fo_step *warm_then_408(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strncmp(req->head, "GET /warm", 9) == 0)
        return respond_ok;
    return req->index_in_conn > 0 ? idle_408_close : reset_steps;
}

/* The 408 resend and a retry on another origin, one after the other: the 408 a pooled connection
 * answers is no answer to the request (ex_resend_408), so when the fresh connection is reset the
 * request may still go to the next origin, and the client gets its 200. */
static void test_retry_after_408_resend(void **state)
{
    (void)state;
    struct fake_origin *flaky, *echo;
    struct harness *h = start_warmed_pair(warm_then_408, &flaky, &echo);
    int status = status_of(h, "/doc");              /* flaky: 408, resent, reset; then echo */
    assert_int_equal(status, 200);
    assert_int_equal(fake_origin_connections(flaky), 2);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line(h, "target=\"/doc\"");
    assert_non_null(strstr(line, " attempts=3"));
    free(line);
    harness_free(h);
    fake_origin_stop(flaky);
    fake_origin_stop(echo);
}

/* The resend of a stale pooled connection and a retry on another origin, one after the other:
 * a PUT of 2 KiB meets a pooled connection its origin resets (taken for stale: sent again on a
 * fresh connection to it), that one reset too (retry_sent: the next origin). The kept body
 * goes with each: the three requests are the same bytes, and the client gets the echo. The old
 * binary answered 502 connection_reset. */
static void test_retry_after_stale_resend(void **state)
{
    (void)state;
    struct fake_origin *flaky, *echo;
    struct harness *h = start_warmed_pair(warm_then_reset, &flaky, &echo);
    char *body = json_body(2048);
    size_t n;
    char *req = body_request("PUT", "/doc", body, 2048, false, &n);
    struct raw_response r;
    int status = send_request(h, req, n, &r); /* flaky, on its pooled connection */
    const char *err = raw_header(&r, "Portico-Error");
    print_message("  PUT after a stale resend: %d %s\n", status, err ? err : "-");
    assert_int_equal(status, 200);
    assert_int_equal(r.body_len, 2048);
    assert_memory_equal(r.body, body, 2048);
    raw_response_free(&r);
    assert_int_equal(fake_origin_connections(flaky), 2);
    size_t len[3];
    char *got[3] = {fake_origin_request(flaky, 1, &len[0]),
                    fake_origin_request(flaky, 2, &len[1]), fake_origin_request(echo, 1, &len[2])};
    for (int i = 0; i < 3; i++)
        assert_non_null(got[i]);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(len[i], len[0]);
        assert_memory_equal(got[i], got[0], len[0]);
    }
    for (int i = 0; i < 3; i++)
        free(got[i]);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line(h, "target=\"/doc\"");
    assert_non_null(strstr(line, " attempts=3"));
    free(line);
    harness_free(h);
    free(req);
    free(body);
    fake_origin_stop(flaky);
    fake_origin_stop(echo);
}

/* What is not sent again after the request went, retry_sent = on: a POST (not idempotent),
 * whatever Portico holds of its body; a PUT of 200 KiB, with a Content-Length or chunked,
 * streamed to the origin past the 64 KiB Portico keeps: its 502 says why it was not retried.
 * The old binary said nothing of the body. */
static void test_retry_sent_body_not_kept(void **state)
{
    (void)state;
    static const struct {
        const char *method;
        size_t len;
        bool chunked;
        const char *note; /* in the access log's detail, or NULL for no "not retried" */
    } rows[] = {
        {"POST", 2048, false, NULL},
        {"PUT", 200 * 1024, false, "; not retried: its body was streamed (over 64 KiB)"},
        {"PUT", 200 * 1024, true,
         "; not retried: its body was streamed (over 64 KiB with its chunk framing)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct fake_origin *reset = px_origin(FO_RESET);
        struct fake_origin *ok = px_origin(FO_OK);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "origin = 127.0.0.1:%u\nretry_sent = on\n",
                                     fake_origin_port(reset), fake_origin_port(ok));
        char *body = json_body(rows[i].len);
        size_t n;
        char *req = body_request(rows[i].method, "/big", body, rows[i].len, rows[i].chunked, &n);
        struct raw_response r;
        int status = send_request(h, req, n, &r);
        const char *err = raw_header(&r, "Portico-Error");
        print_message("  %s %zu%s: %d %s\n", rows[i].method, rows[i].len,
                      rows[i].chunked ? " chunked" : "", status, err ? err : "-");
        /* the reset may meet the request's last bytes (send_error) or the wait for the answer */
        assert_int_equal(status, 502);
        assert_true(strcmp(err ? err : "", "connection_reset") == 0 ||
                    strcmp(err ? err : "", "send_error") == 0);
        raw_response_free(&r);
        assert_int_equal(fake_origin_requests(ok), 0);
        assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
        char *line = px_log_line(h, "target=\"/big\"");
        if (rows[i].note && !strstr(line, rows[i].note))
            fail_msg("no \"%s\" in %s", rows[i].note, line);
        if (!rows[i].note)
            assert_null(strstr(line, "not retried"));
        free(line);
        harness_free(h);
        free(req);
        free(body);
        fake_origin_stop(reset);
        fake_origin_stop(ok);
    }
}

/* A chunked body's copy counts the chunk lines it goes on with, one per chunk: 12,000 bytes sent
 * in 1-byte chunks are 72,005 bytes of them, past the 64 KiB kept. Not retried, its 502 says so
 * as it is: "(over 64 KiB with its chunk framing)". The old binary said "(over 64 KiB)" of a
 * body of 12 KB. */
static void test_retry_sent_body_tiny_chunks(void **state)
{
    (void)state;
    enum { CHUNKS = 12000 };
    struct fake_origin *reset = px_origin(FO_RESET);
    struct fake_origin *ok = px_origin(FO_OK);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\nretry_sent = on\n",
                                 fake_origin_port(reset), fake_origin_port(ok));
    static const char head[] =
        "PUT /tiny HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    size_t n = sizeof(head) - 1;
    char *req = malloc(n + CHUNKS * 6 + 5);
    assert_non_null(req);
    memcpy(req, head, n);
    for (int i = 0; i < CHUNKS; i++) {
        memcpy(req + n, "1\r\nx\r\n", 6);
        n += 6;
    }
    memcpy(req + n, "0\r\n\r\n", 5);
    n += 5;
    struct raw_response r;
    int status = send_request(h, req, n, &r);
    const char *ps = raw_header(&r, "Proxy-Status");
    print_message("  PUT of 12,000 1-byte chunks: %d %s\n", status, ps ? ps : "-");
    assert_int_equal(status, 502);
    raw_response_free(&r);
    assert_int_equal(fake_origin_requests(ok), 0);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line(h, "target=\"/tiny\"");
    if (!strstr(line, "; not retried: its body was streamed (over 64 KiB with its chunk framing)"))
        fail_msg("no reason as it is in %s", line);
    free(line);
    harness_free(h);
    free(req);
    fake_origin_stop(reset);
    fake_origin_stop(ok);
}

/* A failure that no other origin could take is not blamed on the body: the one origin listed
 * twice (a retry never tries its other listing), retry_sent = on, a PUT of 200 KiB it resets
 * gets 502 with the plain detail. The old binary said "; not retried: its body was streamed
 * (over 64 KiB)": it took the other listing for an origin not tried. */
static void test_retry_sent_body_one_origin_twice(void **state)
{
    (void)state;
    struct fake_origin *reset = px_origin(FO_RESET);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\nretry_sent = on\n",
                                 fake_origin_port(reset), fake_origin_port(reset));
    char *body = json_body(200 * 1024);
    size_t n;
    char *req = body_request("PUT", "/twice", body, 200 * 1024, false, &n);
    struct raw_response r;
    int status = send_request(h, req, n, &r);
    const char *ps = raw_header(&r, "Proxy-Status");
    print_message("  PUT of 200 KiB, one origin listed twice: %d %s\n", status, ps ? ps : "-");
    assert_int_equal(status, 502);
    assert_null(strstr(ps ? ps : "", "not retried"));
    raw_response_free(&r);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line(h, "target=\"/twice\"");
    if (strstr(line, "not retried"))
        fail_msg("a retry blamed on the body in %s", line);
    free(line);
    harness_free(h);
    free(req);
    free(body);
    fake_origin_stop(reset);
}

/* An origin that takes one connection and resets it once the request head and a byte of its
 * body came, before the rest: nothing is answered. */
struct reset_early {
    int fd;
    uint16_t port;
    pthread_t thread;
};

static void *reset_early_main(void *arg)
{
    struct reset_early *o = arg;
    int c = accept(o->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[8192];
    size_t have = 0;
    struct pollfd p = {.fd = c, .events = POLLIN};
    while (have < sizeof(buf) - 1 && poll(&p, 1, PX_IO_MS) == 1) {
        ssize_t n = read(c, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        if (end && have > (size_t)(end + 4 - buf))
            break; /* the head and a body byte */
    }
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(c);
    return NULL;
}

static void reset_early_start(struct reset_early *o)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    o->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(o->fd >= 0);
    assert_int_equal(bind(o->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(o->fd, 4), 0);
    assert_int_equal(getsockname(o->fd, (struct sockaddr *)&a, &len), 0);
    o->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&o->thread, NULL, reset_early_main, o), 0);
}

static void reset_early_stop(struct reset_early *o)
{
    shutdown(o->fd, SHUT_RDWR); /* wakes an accept still waiting */
    pthread_join(o->thread, NULL);
    close(o->fd);
}

/* A body still arriving when the origin failed is not whole in Portico's copy: with retry_sent
 * = on, a PUT whose origin reset the connection after the first of its 2,048 body bytes, 1,000
 * of them not sent yet by the client, is not retried, and its 502's detail says why. The old
 * binary said nothing of the body. */
static void test_retry_sent_body_still_arriving(void **state)
{
    (void)state;
    struct reset_early early;
    reset_early_start(&early);
    struct fake_origin *ok = px_origin(FO_OK);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\nretry_sent = on\n",
                                 early.port, fake_origin_port(ok));
    char *body = json_body(2048);
    size_t n;
    char *req = body_request("PUT", "/half", body, 2048, false, &n);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send(c, req, n - 1000), 0);
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("no response: %s", r.error);
    const char *err = raw_header(&r, "Portico-Error");
    print_message("  PUT, half its body: %d %s\n", r.status, err ? err : "-");
    assert_int_equal(r.status, 502);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(fake_origin_requests(ok), 0);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line(h, "target=\"/half\"");
    if (!strstr(line, "; not retried: its body was still arriving"))
        fail_msg("no reason in %s", line);
    free(line);
    harness_free(h);
    free(req);
    free(body);
    reset_early_stop(&early);
    fake_origin_stop(ok);
}

/* An origin that takes one connection, says when the request head came alone (no body byte
 * with it), reads the body's `len` bytes, and resets: nothing is answered. */
struct head_alone {
    int fd;
    uint16_t port;
    size_t len;
    bool alone;      /* the head's read had no body byte with it */
    sem_t head_came; /* posted once the head was read */
    pthread_t thread;
};

static void *head_alone_main(void *arg)
{
    struct head_alone *o = arg;
    int c = accept(o->fd, NULL, NULL);
    if (c < 0) {
        sem_post(&o->head_came);
        return NULL;
    }
    char buf[4096];
    size_t have = 0, body = 0;
    const char *end = NULL;
    struct pollfd p = {.fd = c, .events = POLLIN};
    while (!end && have < sizeof(buf) - 1 && poll(&p, 1, PX_IO_MS) == 1) {
        ssize_t n = read(c, buf + have, sizeof(buf) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end) {
        body = have - (size_t)(end + 4 - buf);
        o->alone = body == 0;
    }
    sem_post(&o->head_came);
    while (end && body < o->len && poll(&p, 1, PX_IO_MS) == 1) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0)
            break;
        body += (size_t)n;
    }
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(c);
    return NULL;
}

static void head_alone_start(struct head_alone *o, size_t len)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    o->len = len;
    o->alone = false;
    assert_int_equal(sem_init(&o->head_came, 0, 0), 0);
    o->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(o->fd >= 0);
    assert_int_equal(bind(o->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(o->fd, 4), 0);
    assert_int_equal(getsockname(o->fd, (struct sockaddr *)&a, &alen), 0);
    o->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&o->thread, NULL, head_alone_main, o), 0);
}

/* Whether the origin read the head with no body byte, once it did (the thread's semaphore
 * orders its write of alone before this read: a log line Portico wrote does not). */
static bool head_alone_came_alone(struct head_alone *o)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PX_IO_MS / 1000 + 1;
    assert_int_equal(sem_timedwait(&o->head_came, &until), 0);
    return o->alone;
}

static void head_alone_stop(struct head_alone *o)
{
    shutdown(o->fd, SHUT_RDWR); /* wakes an accept still waiting */
    pthread_join(o->thread, NULL);
    close(o->fd);
    sem_destroy(&o->head_came);
}

/* A body of exactly 64 KiB (Content-Length) is one Portico holds whole, however it arrives: with
 * retry_sent = on, a PUT whose head went to the origin alone, its 65,536 body bytes after, goes
 * to the next origin when the first read it all and reset. The old binary spliced such a body
 * (`splice`, on by default, moves a rest of 64 KiB or more), which let its copy go: 502
 * connection_reset, "not retried: its body went out without a copy kept". */
static void test_retry_sent_body_exactly_kept(void **state)
{
    (void)state;
    enum { LEN = 64 * 1024 };
    struct head_alone first;
    head_alone_start(&first, LEN);
    struct fake_origin *echo = px_origin(FO_ECHO);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\nretry_sent = on\n",
                                 first.port, fake_origin_port(echo));
    char *body = json_body(LEN);
    size_t n;
    char *req = body_request("PUT", "/exact", body, LEN, false, &n);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send(c, req, n - LEN), 0); /* the head alone */
    assert_true(head_alone_came_alone(&first)); /* the head went before any body byte was in */
    assert_int_equal(raw_send(c, req + n - LEN, LEN), 0);
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("no response: %s", r.error);
    const char *err = raw_header(&r, "Portico-Error");
    const char *ps = raw_header(&r, "Proxy-Status");
    print_message("  PUT of 64 KiB, its head alone: %d %s %s\n", r.status, err ? err : "-",
                  ps ? ps : "");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, LEN);
    assert_memory_equal(r.body, body, LEN);
    raw_response_free(&r);
    raw_close(c);
    size_t got_len;
    char *got = fake_origin_request_body(echo, 0, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, LEN);
    assert_memory_equal(got, body, LEN);
    free(got);
    free(req);
    free(body);
    px_stop(h);
    head_alone_stop(&first);
    fake_origin_stop(echo);
}

/* A retry whose first attempt failed before any body byte went (its head alone) has an empty
 * copy to send again: the body follows from the client on the next origin. With retries = 2 and
 * retry_sent = on, a PUT whose head alone reached an origin that reset, its 100 body bytes sent
 * once that failure was logged, is answered by the next origin with them. No row sent a retry
 * an empty copy while a later one might still want it: a mutant that pulled up the empty copy
 * anyway (mutants8's R10, NULL from evbuffer_pullup) failed it "out of memory": 500. */
static void test_retry_sent_head_alone(void **state)
{
    (void)state;
    struct head_alone first;
    head_alone_start(&first, 0);
    struct fake_origin *echo = px_origin(FO_ECHO);
    struct fake_origin *spare = px_origin(FO_ECHO);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                 "retries = 2\nretry_sent = on\n",
                                 first.port, fake_origin_port(echo), fake_origin_port(spare));
    char *body = json_body(100);
    size_t n;
    char *req = body_request("PUT", "/alone", body, 100, false, &n);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send(c, req, n - 100), 0); /* the head alone */
    char want[80];
    snprintf(want, sizeof(want), "attempt 1 on 127.0.0.1:%u failed", first.port);
    assert_int_equal(harness_wait_log(h, want, PX_IO_MS), 0);
    assert_true(head_alone_came_alone(&first));
    assert_int_equal(raw_send(c, req + n - 100, 100), 0);
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("no response: %s", r.error);
    const char *err = raw_header(&r, "Portico-Error");
    print_message("  PUT, its head alone to a resetting origin: %d %s\n", r.status,
                  err ? err : "-");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 100);
    assert_memory_equal(r.body, body, 100);
    raw_response_free(&r);
    raw_close(c);
    free(req);
    free(body);
    px_stop(h);
    head_alone_stop(&first);
    fake_origin_stop(echo);
    fake_origin_stop(spare);
}

/* An origin that asks for a client certificate refuses it with a TLS 1.3 alert that comes after
 * the request (head and body) went out: the failure is the TLS phase's, but the body was taken
 * from the client and went to the refusing connection. A POST was once retried on the next
 * origin without its body, which waited for it: 504 first_byte_timeout after 2 s; then its
 * answer was the refusal (502 tls_handshake_failed), unless the alert came before the send. Now
 * Portico keeps the body it sends to a TLS upstream (up to 64 KiB) while a retry may want it:
 * the POST, which reached no origin, goes to the next one whole either way; a GET, which has no
 * body to lose, still moves to the next origin. */
static void test_retry_tls_refused_body(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts wants_cert = {.kind = FO_ECHO, .tls_cert = certs->server_cert,
                                          .tls_key = certs->server_key,
                                          .tls_client_ca = certs->ca_cert};
    struct fake_origin_opts plain = {.kind = FO_ECHO, .tls_cert = certs->server_cert,
                                     .tls_key = certs->server_key};
    struct fake_origin *refusing = fake_origin_start(&wants_cert);
    struct fake_origin *ok = fake_origin_start(&plain);
    assert_non_null(refusing);
    assert_non_null(ok);
    struct harness *h = start_two(NULL, fake_origin_port(refusing), fake_origin_port(ok),
                                  "tls = on\nca_file = {{certs}}/ca.pem\nkeepalive = 0\n"
                                  "first_byte_timeout = 2s\n");
    struct raw_response r;
    int status = get(h, "POST", "/tls/post", "payload", &r); /* round robin: the refusing one */
    const char *err = raw_header(&r, "Portico-Error");
    print_message("  POST: %d %s\n", status, err ? err : "-");
    assert_int_equal(status, 200);
    assert_string_equal(r.body, "payload");
    raw_response_free(&r);
    assert_int_equal(get(h, "GET", "/tls/skip", NULL, &r), 200); /* the next turn: ok */
    raw_response_free(&r);
    assert_int_equal(get(h, "GET", "/tls/get", NULL, &r), 200); /* refused, then retried */
    raw_response_free(&r);
    assert_int_equal(fake_origin_requests(refusing), 0);
    assert_int_equal(fake_origin_requests(ok), 3);
    px_stop(h);
    fake_origin_stop(refusing);
    fake_origin_stop(ok);
}

/* A record the origin's TLS layer could not have sent (its MAC does not check), written under
 * the session on the TCP socket once the request is in. */
static int send_bad_record(int fd, void *arg)
{
    static const char rec[] = "\x17\x03\x03\x00\x20" "0123456789abcdef0123456789abcdef";
    (void)arg;
    return write(fd, rec, sizeof(rec) - 1) == (ssize_t)(sizeof(rec) - 1) ? 0 : -1;
}

static const struct fo_step bad_record_steps[] = {FO_CALL(send_bad_record, NULL), FO_HOLD(),
                                                  FO_END()};

/* README, retries: retry_sent retries send_timeout, send_error, first_byte_timeout,
 * empty_response and connection_reset, not an invalid response: a TLS record error in the
 * answer (invalid_response) stands, even for a GET with retry_sent = on. */
static void test_retry_tls_record_error(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts bad = {.kind = FO_SCRIPT, .script = bad_record_steps,
                                   .tls_cert = certs->server_cert, .tls_key = certs->server_key};
    struct fake_origin_opts plain = {.kind = FO_OK, .tls_cert = certs->server_cert,
                                     .tls_key = certs->server_key};
    struct fake_origin *broken = fake_origin_start(&bad);
    struct fake_origin *ok = fake_origin_start(&plain);
    assert_non_null(broken);
    assert_non_null(ok);
    struct harness *h = start_two(NULL, fake_origin_port(broken), fake_origin_port(ok),
                                  "tls = on\nca_file = {{certs}}/ca.pem\nretry_sent = on\n");
    struct raw_response r;
    int status = get(h, "GET", "/tls/record", NULL, &r); /* round robin: the broken one */
    const char *err = raw_header(&r, "Portico-Error");
    print_message("  GET: %d %s\n", status, err ? err : "-");
    assert_int_equal(status, 502);
    assert_string_equal(err ? err : "(none)", "invalid_response");
    raw_response_free(&r);
    assert_int_equal(fake_origin_requests(broken), 1);
    assert_int_equal(fake_origin_requests(ok), 0);
    px_stop(h);
    fake_origin_stop(broken);
    fake_origin_stop(ok);
}

/* Every origin down: 503 no_healthy_origin at once, without touching them. */
static void test_all_down(void **state)
{
    (void)state;
    struct fake_origin *a = px_origin(FO_REFUSE);
    struct fake_origin *b = px_origin(FO_REFUSE);
    struct harness *h = start_two(NULL, fake_origin_port(a), fake_origin_port(b),
                                  "max_fails = 1\ndown_time = 1m\n");
    struct raw_response r;
    assert_int_equal(get(h, "GET", "/first", NULL, &r), 502); /* both tried (retries = 1) */
    raw_response_free(&r);
    int64_t t0 = tu_now_ms();
    assert_int_equal(get(h, "GET", "/second", NULL, &r), 503);
    int64_t took = tu_now_ms() - t0;
    assert_string_equal(raw_header(&r, "Portico-Error"), "no_healthy_origin");
    raw_response_free(&r);
    print_message("  503 no_healthy_origin in %lld ms\n", (long long)took);
    assert_true(took < 500);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line(h, "target=\"/first\"");
    assert_non_null(strstr(line, " attempts=2"));
    free(line);
    line = px_log_line(h, "target=\"/second\"");
    assert_non_null(strstr(line, "failure=no_healthy_origin"));
    assert_null(strstr(line, "attempts="));
    free(line);
    harness_free(h);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

int main(void)
{
    tu_ignore_sigpipe();
    /* TEST_FILTER=test_reload* runs the matching tests only */
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_random_two),
        cmocka_unit_test(test_down_origin_share),
        cmocka_unit_test(test_least_conn),
        cmocka_unit_test(test_least_conn_weights),
        cmocka_unit_test(test_status_in_flight),
        cmocka_unit_test(test_least_conn_counts_tunnels),
        cmocka_unit_test(test_passive_health),
        cmocka_unit_test(test_passive_health_dropped),
        cmocka_unit_test(test_probe_answer_brings_back_up),
        cmocka_unit_test(test_probe_goes_alone),
        cmocka_unit_test(test_stale_probe_leaves_the_next_alone),
        cmocka_unit_test(test_active_health),
        cmocka_unit_test(test_reload_keeps_verdicts),
        cmocka_unit_test(test_reload_keeps_check_run),
        cmocka_unit_test(test_health_check_tls_host),
        cmocka_unit_test(test_health_check_every_start),
        cmocka_unit_test_setup_teardown(test_health_check_tls_host_443, netns_enter, netns_leave),
        cmocka_unit_test(test_health_check_tls_refused),
        cmocka_unit_test(test_check_keeps_passive_verdict),
        cmocka_unit_test(test_health_check_1xx_flood),
        cmocka_unit_test(test_health_check_answer_edges),
        cmocka_unit_test(test_health_check_stuck_phase),
        cmocka_unit_test(test_health_check_dns_failure),
        cmocka_unit_test(test_health_check_fall),
        cmocka_unit_test(test_health_check_rise),
        cmocka_unit_test(test_health_check_alternating),
        cmocka_unit_test(test_retry_connect),
        cmocka_unit_test(test_retry_origin_listed_twice),
        cmocka_unit_test(test_origin_listed_twice_down),
        cmocka_unit_test(test_total_timeout_marks_down),
        cmocka_unit_test(test_retry_rules),
        cmocka_unit_test(test_retry_sent_whole_body),
        cmocka_unit_test(test_retry_sent_body_twice),
        cmocka_unit_test(test_retry_after_stale_resend),
        cmocka_unit_test(test_retry_after_408_resend),
        cmocka_unit_test(test_retry_sent_body_not_kept),
        cmocka_unit_test(test_retry_sent_body_one_origin_twice),
        cmocka_unit_test(test_retry_sent_body_tiny_chunks),
        cmocka_unit_test(test_retry_sent_body_still_arriving),
        cmocka_unit_test(test_retry_sent_body_exactly_kept),
        cmocka_unit_test(test_retry_sent_head_alone),
        cmocka_unit_test(test_retry_tls_refused_body),
        cmocka_unit_test(test_retry_tls_record_error),
        cmocka_unit_test(test_all_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
