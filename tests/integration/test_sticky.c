/*
 * test_sticky.c — `sticky = cookie NAME` with the real binary and three fake origins on
 * loopback, each answering its own name: the first response sets the cookie of the origin that
 * answered and the next requests with it land there, 20 of 20, while round robin alternates;
 * the origin never sees Portico's cookie but every other one, byte for byte (HTTP/1.1 fields
 * and HTTP/2 crumbs); an origin down sends its clients to another with a new cookie; an unknown
 * value gets a new one; a reload that reorders the origins keeps the pinning; the options are
 * rendered as written; Portico's own errors carry no cookie; and curl's cookie jar, as a
 * browser, stays on one origin.
 */
#include <pthread.h>
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
#include <time.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define NORIGINS 3

static const char *const names[NORIGINS] = {"o0\n", "o1\n", "o2\n"};

/* An origin's switches: down, it resets every request; gated, it holds each request at the
 * gate until the test opens it. */
struct origin_ctl {
    atomic_bool down;
    atomic_bool gated;
    struct fo_step up_script[2], down_script[2], gated_script[3];
};

/* The gate: requests held at it, and whether it is shut. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int held;
    bool shut;
} gate = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int at_gate(int fd, void *arg)
{
    (void)fd;
    (void)arg;
    pthread_mutex_lock(&gate.lock);
    gate.held++;
    pthread_cond_broadcast(&gate.cond);
    while (gate.shut)
        pthread_cond_wait(&gate.cond, &gate.lock);
    gate.held--;
    pthread_mutex_unlock(&gate.lock);
    return 0;
}

static void gate_set(bool shut)
{
    pthread_mutex_lock(&gate.lock);
    gate.shut = shut;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

/* Waits (bounded) until n requests are held at the gate. */
static void gate_wait_held(int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += PX_IO_MS / 1000;
    pthread_mutex_lock(&gate.lock);
    while (gate.held != n)
        if (pthread_cond_timedwait(&gate.cond, &gate.lock, &until) != 0)
            break;
    int held = gate.held;
    pthread_mutex_unlock(&gate.lock);
    if (held != n)
        fail_msg("%d requests at the gate, not %d", held, n);
}

struct origins {
    struct fake_origin *o[NORIGINS];
    uint16_t port[NORIGINS];
    struct origin_ctl ctl[NORIGINS];
};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)req;
    struct origin_ctl *c = arg;
    if (atomic_load(&c->gated))
        return c->gated_script;
    return atomic_load(&c->down) ? c->down_script : c->up_script;
}

/* Origin i answering its name, with the header lines hdrs (NULL: none). */
static void origins_start(struct origins *os, const char *hdrs)
{
    for (int i = 0; i < NORIGINS; i++) {
        struct origin_ctl *c = &os->ctl[i];
        atomic_init(&c->down, false);
        atomic_init(&c->gated, false);
        c->gated_script[0] = (struct fo_step)FO_CALL(at_gate, NULL);
        c->gated_script[1] = (struct fo_step)FO_RESPOND(200, hdrs, names[i], FO_LENGTH);
        c->gated_script[2] = (struct fo_step)FO_END();
        c->up_script[0] = (struct fo_step)FO_RESPOND(200, hdrs, names[i], FO_LENGTH);
        c->up_script[1] = (struct fo_step)FO_END();
        c->down_script[0] = (struct fo_step)FO_RST();
        c->down_script[1] = (struct fo_step)FO_END();
        struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick, .pick_arg = c};
        os->o[i] = fake_origin_start(&opts);
        assert_non_null(os->o[i]);
        os->port[i] = fake_origin_port(os->o[i]);
    }
}

/* The [upstream u] of the tests: the origins in the order `order` (indices), `sticky` and
 * `extra` lines. */
static void upstream_text(char *buf, size_t size, const struct origins *os, const int *order,
                          const char *sticky, const char *extra)
{
    size_t len = (size_t)snprintf(buf, size, "[upstream u]\nsticky = %s\n%s", sticky,
                                  extra ? extra : "");
    for (int i = 0; i < NORIGINS; i++)
        len += (size_t)snprintf(buf + len, size - len, "origin = 127.0.0.1:%u\n",
                                os->port[order[i]]);
}

static const int in_order[NORIGINS] = {0, 1, 2};

static struct harness *start(struct origins *os, const char *hdrs, const char *sticky,
                             const char *proxy_extra, const char *extra)
{
    origins_start(os, hdrs);
    char up[1024];
    upstream_text(up, sizeof(up), os, in_order, sticky, extra);
    return px_start(proxy_extra, "%s", up);
}

static void stop(struct harness *h, struct origins *os)
{
    px_stop(h);
    for (int i = 0; i < NORIGINS; i++)
        fake_origin_stop(os->o[i]);
}

/* What a response said: which origin (-1: none of them), its Set-Cookie and Cache-Control. */
struct answer {
    int status;
    int origin;
    char set_cookie[512];                /* "" when none */
    unsigned set_cookies;                /* how many Set-Cookie fields */
    char cache_control[128];             /* "" when none: the first */
    unsigned cache_controls;             /* how many Cache-Control fields */
    bool private_field;                  /* a Cache-Control field is "private" alone */
};

/* GET path with the extra header lines `fields` over HTTP/1.1. */
static struct answer get_at(struct harness *h, const char *path, const char *fields)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
             path, fields ? fields : "");
    struct raw_conn *c = raw_connect(harness_port(h, "listen"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    struct answer a = {.status = r.status, .origin = -1};
    for (int i = 0; i < NORIGINS; i++)
        if (r.status == 200 && strcmp(r.body, names[i]) == 0)
            a.origin = i;
    const char *sc = raw_header(&r, "set-cookie");
    snprintf(a.set_cookie, sizeof(a.set_cookie), "%s", sc ? sc : "");
    a.set_cookies = raw_head_field_count(&r.head, "set-cookie");
    const char *cc = raw_header(&r, "cache-control");
    snprintf(a.cache_control, sizeof(a.cache_control), "%s", cc ? cc : "");
    a.cache_controls = raw_head_field_count(&r.head, "cache-control");
    a.private_field = strstr(r.head.text, "\r\nCache-Control: private\r\n") != NULL;
    raw_response_free(&r);
    raw_close(c);
    return a;
}

/* GET /k with the extra header lines `fields`. */
static struct answer get(struct harness *h, const char *fields)
{
    return get_at(h, "/k", fields);
}

/* "SRV=value" of a Set-Cookie (up to its first ';') into buf. */
static const char *pair_of(const char *set_cookie, char *buf, size_t size)
{
    snprintf(buf, size, "%.*s", (int)strcspn(set_cookie, ";"), set_cookie);
    return buf;
}

/* A GET with Cookie: pair. */
static struct answer get_with(struct harness *h, const char *pair)
{
    char f[600];
    snprintf(f, sizeof(f), "Cookie: %s\r\n", pair);
    return get(h, f);
}

/* The first response sets the cookie of the origin that answered, kept from shared caches;
 * with it, 20 requests of 20 land on that origin with no cookie set again, where round robin
 * without it goes round the three; /status shows the setting and the metric counts. */
static void test_first_sets_then_sticks(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "admin_listen = 127.0.0.1:{{port:admin}}\n",
                              NULL);
    struct answer first = get(h, NULL);
    assert_int_equal(first.status, 200);
    assert_true(first.origin >= 0);
    assert_int_equal(first.set_cookies, 1);
    assert_true(strncmp(first.set_cookie, "SRV=", 4) == 0);
    assert_non_null(strstr(first.set_cookie, "; Path=/"));
    assert_string_equal(first.cache_control, "private");
    char pair[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    /* the value is not the address in clear */
    char port[8];
    snprintf(port, sizeof(port), "%u", os.port[first.origin]);
    assert_null(strstr(pair, "127.0.0.1"));
    assert_null(strstr(pair, port));
    for (int k = 0; k < 20; k++) {
        struct answer a = get_with(h, pair);
        if (a.origin != first.origin)
            fail_msg("request %d with %s went to origin %d, not %d", k + 1, pair, a.origin,
                     first.origin);
        if (a.set_cookies || a.cache_control[0])
            fail_msg("request %d with the right cookie got Set-Cookie '%s', Cache-Control '%s'",
                     k + 1, a.set_cookie, a.cache_control);
    }
    /* without it: round robin, three requests on three origins, each with its own cookie */
    unsigned seen = 0;
    for (int k = 0; k < NORIGINS; k++) {
        struct answer a = get(h, NULL);
        assert_true(a.origin >= 0 && a.set_cookies == 1);
        seen |= 1u << a.origin;
    }
    assert_int_equal(seen, 7u);
    char *line = px_log_line(h, "sticky=hit");
    free(line);
    line = px_log_line(h, "sticky=new");
    free(line);
    char *status = px_admin_body(h, "/status");
    assert_non_null(strstr(status, "\"sticky\":\"cookie SRV path=/\""));
    free(status);
    char *metrics = px_admin_body(h, "/metrics");
    assert_non_null(strstr(metrics, "portico_upstream_sticky_total{upstream=\"u\",outcome=\"hit\"} 20"));
    assert_non_null(strstr(metrics, "portico_upstream_sticky_total{upstream=\"u\",outcome=\"new\"} 4"));
    free(metrics);
    stop(h, &os);
}

/* The origin gets the client's other cookies, byte for byte, and never Portico's: in the middle
 * of a field, alone in a field (which then goes), first and last. */
static void test_origin_never_sees_it(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", NULL, NULL);
    struct answer first = get(h, NULL);
    char pair[128], fields[1024];
    pair_of(first.set_cookie, pair, sizeof(pair));
    unsigned before = fake_origin_requests(os.o[first.origin]);
    snprintf(fields, sizeof(fields),
             "Cookie: a=1; %s;  b=\"x y\"\r\nCookie: %s\r\nCookie: %s; c=3\r\n"
             "Cookie: d=4;%s\r\nCookie: SRVX=keep; e=5\r\n",
             pair, pair, pair, pair);
    struct answer a = get(h, fields);
    assert_int_equal(a.origin, first.origin);
    assert_int_equal(a.set_cookies, 0);
    char *head = fake_origin_request_head(os.o[first.origin], before);
    assert_non_null(head);
    if (strstr(head, "SRV=") || !strstr(head, "\r\nCookie: a=1;  b=\"x y\"\r\n") ||
        !strstr(head, "\r\nCookie: c=3\r\n") || !strstr(head, "\r\nCookie: d=4\r\n") ||
        !strstr(head, "\r\nCookie: SRVX=keep; e=5\r\n"))
        fail_msg("the origin got:\n%s", head);
    /* four Cookie fields: the one of SRV alone went */
    unsigned n = 0;
    for (const char *p = head; (p = strstr(p, "\r\nCookie:")) != NULL; p++)
        n++;
    assert_int_equal(n, 4);
    free(head);
    /* the cookie in the second Cookie field still names its origin */
    snprintf(fields, sizeof(fields), "Cookie: a=1\r\nCookie: %s\r\n", pair);
    struct answer second = get(h, fields);
    if (second.origin != first.origin || second.set_cookies)
        fail_msg("%s in a second field: origin %d, not %d (%u Set-Cookie)", pair, second.origin,
                 first.origin, second.set_cookies);
    stop(h, &os);
}

/* The cookie's origin down (it resets; max_fails = 1): its client is answered by another, which
 * sets its own cookie, and stays there; every origin down: Portico's 502 and 503 carry none. */
static void test_down_redispatches(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "admin_listen = 127.0.0.1:{{port:admin}}\n",
                              "max_fails = 1\ndown_time = 60s\nretries = 2\nretry_sent = on\n");
    struct answer first = get(h, NULL);
    char pair[128], pair2[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    atomic_store(&os.ctl[first.origin].down, true);
    struct answer moved = get_with(h, pair); /* reset, retried on another */
    assert_int_equal(moved.status, 200);
    assert_true(moved.origin >= 0 && moved.origin != first.origin);
    assert_int_equal(moved.set_cookies, 1);
    pair_of(moved.set_cookie, pair2, sizeof(pair2));
    assert_string_not_equal(pair, pair2);
    char *line = px_log_line(h, "sticky=redispatched");
    free(line);
    /* marked down now: the old cookie goes elsewhere at once, with a new cookie */
    struct answer again = get_with(h, pair);
    assert_true(again.origin >= 0 && again.origin != first.origin && again.set_cookies == 1);
    char *metrics = px_admin_body(h, "/metrics");
    if (!strstr(metrics, "portico_upstream_sticky_total{upstream=\"u\",outcome=\"redispatched\"} 2"))
        fail_msg("two redispatched not counted:\n%s", metrics);
    free(metrics);
    for (int k = 0; k < 5; k++) {
        struct answer a = get_with(h, pair2);
        assert_int_equal(a.origin, moved.origin);
        assert_int_equal(a.set_cookies, 0);
    }
    /* all down: the errors are Portico's, no cookie */
    for (int i = 0; i < NORIGINS; i++)
        atomic_store(&os.ctl[i].down, true);
    struct answer err = get_with(h, pair2);
    assert_true(err.status == 502 || err.status == 503);
    assert_int_equal(err.set_cookies, 0);
    struct answer none = get(h, NULL);
    assert_int_equal(none.status, 503);
    assert_int_equal(none.set_cookies, 0);
    stop(h, &os);
}

/* A value no origin has (forged, or of an origin removed): the policy picks, a new cookie. So
 * does an origin's value cut short by a byte, and an unknown value in the request's first
 * Cookie field ahead of a right one in the next (the first of its name decides). */
static void test_unknown_value(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", NULL, NULL);
    struct answer a = get_with(h, "SRV=0123456789abcdef");
    assert_true(a.origin >= 0);
    assert_int_equal(a.set_cookies, 1);
    assert_true(strncmp(a.set_cookie, "SRV=", 4) == 0);
    assert_string_not_equal(a.set_cookie, "SRV=0123456789abcdef");
    char *line = px_log_line(h, "sticky=new");
    free(line);
    char pair[128], cut[128], fields[320];
    pair_of(a.set_cookie, pair, sizeof(pair));
    snprintf(cut, sizeof(cut), "%.*s", (int)strlen(pair) - 1, pair);
    snprintf(fields, sizeof(fields), "Cookie: SRV=0123456789abcdef\r\nCookie: %s\r\n", pair);
    struct answer cut_short = get_with(h, cut), second = get(h, fields);
    if (cut_short.set_cookies != 1 || second.set_cookies != 1)
        fail_msg("%s cut short: %u Set-Cookie; after an unknown one: %u", pair,
                 cut_short.set_cookies, second.set_cookies);
    stop(h, &os);
}

/* A reload that lists the origins the other way round: each cookie still reaches its origin
 * (values are of the origin, not of its place), none set again. */
static void test_reload_reorders(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", NULL, NULL);
    char pairs[NORIGINS][128];
    int home[NORIGINS];
    for (int k = 0; k < NORIGINS; k++) {
        struct answer a = get(h, NULL);
        home[k] = a.origin;
        pair_of(a.set_cookie, pairs[k], sizeof(pairs[k]));
    }
    static const int reversed[NORIGINS] = {2, 0, 1};
    char up[1024];
    upstream_text(up, sizeof(up), &os, reversed, "cookie SRV", NULL);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\naccess_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n%s",
                                          up),
                     0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < NORIGINS; k++) {
            struct answer a = get_with(h, pairs[k]);
            if (a.origin != home[k] || a.set_cookies)
                fail_msg("%s: origin %d (Set-Cookie %u) after the reload, %d before", pairs[k],
                         a.origin, a.set_cookies, home[k]);
        }
    stop(h, &os);
}

/* HTTP/2 (h2c, curl): the cookie in a crumb of its own beside others lands on its origin, which
 * gets the other crumbs as one Cookie and not Portico's. */
static void test_h2_crumbs(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "listen = 127.0.0.1:{{port:h2c}} h2c\n",
                              NULL);
    struct answer first = get(h, NULL);
    char pair[128], crumb[160], url[64];
    pair_of(first.set_cookie, pair, sizeof(pair));
    snprintf(crumb, sizeof(crumb), "Cookie: %s", pair);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/k", harness_port(h, "h2c"));
    for (int k = 0; k < 5; k++) {
        unsigned before = fake_origin_requests(os.o[first.origin]);
        const char *const argv[] = {"curl", "-sS", "--http2-prior-knowledge", "--max-time", "5",
                                    "-D", "-", "-H", "Cookie: a=1", "-H", crumb, "-H",
                                    "Cookie: b=2", url, NULL};
        struct tu_cmd_result res;
        assert_int_equal(tu_run_command(argv, 10000, &res), 0);
        if (!strstr(res.out, names[first.origin]) || strstr(res.out, "set-cookie"))
            fail_msg("h2 request %d got:\n%s", k, res.out);
        tu_cmd_result_free(&res);
        char *head = fake_origin_request_head(os.o[first.origin], before);
        assert_non_null(head);
        if (strstr(head, "SRV=") || !strstr(head, "a=1; b=2"))
            fail_msg("the origin got:\n%s", head);
        free(head);
    }
    /* an h2 client without it is given one */
    const char *const argv[] = {"curl", "-sS", "--http2-prior-knowledge", "--max-time", "5",
                                "-D", "-", url, NULL};
    struct tu_cmd_result res;
    assert_int_equal(tu_run_command(argv, 10000, &res), 0);
    assert_non_null(strstr(res.out, "set-cookie: SRV="));
    tu_cmd_result_free(&res);
    stop(h, &os);
}

/* Every option as written, and an origin's own value (cookie=); an origin that keeps its
 * response from shared caches already gets no Cache-Control of ours. */
static void test_options_rendered(void **state)
{
    (void)state;
    struct origins os;
    origins_start(&os, "Cache-Control: no-store\r\n");
    struct harness *h = px_start(NULL,
                                 "[upstream u]\nsticky = cookie app_srv path=/shop "
                                 "domain=example.test max_age=1h httponly secure samesite=lax\n"
                                 "origin = 127.0.0.1:%u cookie=alpha\n"
                                 "origin = 127.0.0.1:%u cookie=beta\n"
                                 "origin = 127.0.0.1:%u cookie=gamma\n",
                                 os.port[0], os.port[1], os.port[2]);
    static const char *const values[NORIGINS] = {"alpha", "beta", "gamma"};
    for (int k = 0; k < NORIGINS; k++) {
        struct answer a = get(h, NULL);
        assert_true(a.origin >= 0);
        char want[256];
        snprintf(want, sizeof(want), "app_srv=%s; Path=/shop; Domain=example.test; "
                 "Max-Age=3600; HttpOnly; Secure; SameSite=Lax", values[a.origin]);
        assert_string_equal(a.set_cookie, want);
        assert_string_equal(a.cache_control, "no-store");
    }
    struct answer b = get_with(h, "app_srv=beta");
    assert_int_equal(b.origin, 1);
    assert_int_equal(b.set_cookies, 0);
    stop(h, &os);
}

/* Sends a GET with Cookie: pair on a connection of its own, not waiting for the answer. */
static struct raw_conn *send_with(struct harness *h, const char *pair)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "Cookie: %s\r\n\r\n", pair);
    struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
    assert_int_equal(raw_send_str(c, req), 0);
    return c;
}

/* Its answer: which origin, and whether it set a cookie. */
static struct answer answer_of(struct raw_conn *c)
{
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    struct answer a = {.status = r.status, .origin = -1};
    for (int i = 0; i < NORIGINS; i++)
        if (r.status == 200 && strcmp(r.body, names[i]) == 0)
            a.origin = i;
    a.set_cookies = raw_head_field_count(&r.head, "set-cookie");
    raw_response_free(&r);
    raw_close(c);
    return a;
}

/* Waits (bounded) until a request is in the queue: the upstream's queue length says so. */
static void wait_queued(struct harness *h)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    for (;;) {
        char *status = px_admin_body(h, "/status");
        bool queued = strstr(status, "\"queue_length\":1") != NULL;
        free(status);
        if (queued)
            return;
        if (tu_now_ms() > deadline)
            fail_msg("the request for a full origin never queued");
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the queue is Portico's: polled, bounded */
    }
}

/* The cookie's origin at max_conns: its client waits in the queue for that origin (HAProxy
 * queues a persistent request on its server), while a client without the cookie is served by
 * another at once; the slot freed goes to the waiter, on its origin, no cookie set. */
static void test_full_origin_waits(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "admin_listen = 127.0.0.1:{{port:admin}}\n",
                              "max_conns = 1\nqueue_timeout = 5s\n");
    struct answer first = get(h, NULL);
    int x = first.origin;
    assert_true(x >= 0);
    char pair[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    gate_set(true);
    atomic_store(&os.ctl[x].gated, true);
    struct raw_conn *holder = send_with(h, pair);
    gate_wait_held(1); /* x is at max_conns */
    unsigned others = 0;
    for (int i = 0; i < NORIGINS; i++)
        others += i != x ? fake_origin_requests(os.o[i]) : 0;
    struct raw_conn *waiter = send_with(h, pair);
    wait_queued(h);
    /* a client without the cookie goes elsewhere at once */
    struct answer other = get(h, NULL);
    assert_true(other.origin >= 0 && other.origin != x);
    atomic_store(&os.ctl[x].gated, false);
    gate_set(false);
    struct answer held = answer_of(holder), waited = answer_of(waiter);
    assert_int_equal(held.origin, x);
    assert_int_equal(waited.origin, x);
    assert_int_equal(waited.set_cookies, 0);
    unsigned after = 0;
    for (int i = 0; i < NORIGINS; i++)
        after += i != x ? fake_origin_requests(os.o[i]) : 0;
    assert_int_equal(after, others + 1); /* the cookieless one only */
    char *line = px_log_line(h, "timing=queue:");
    assert_non_null(strstr(line, "sticky=hit"));
    free(line);
    stop(h, &os);
}

/* (qcount) A sticky request the old generation still serves after a reload is counted where
 * /metrics reads it: the counters are the share's, every generation's. Before, the reload copied
 * the old generation's totals once, and the hit it answered after it never showed (0 hits). */
static void test_reload_old_generation_hit_counted(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "admin_listen = 127.0.0.1:{{port:admin}}\n",
                              NULL);
    struct answer first = get(h, NULL);
    int x = first.origin;
    assert_true(x >= 0);
    char pair[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    gate_set(true);
    atomic_store(&os.ctl[x].gated, true);
    struct raw_conn *held = send_with(h, pair); /* the old generation's, at the gate */
    gate_wait_held(1);
    char up[1024];
    upstream_text(up, sizeof(up), &os, in_order, "cookie SRV", NULL);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\naccess_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n%s",
                                          up),
                     0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    atomic_store(&os.ctl[x].gated, false);
    gate_set(false);
    struct answer a = answer_of(held);
    assert_int_equal(a.origin, x);
    double hits = scrape_wait(harness_port(h, "admin"),
                              "portico_upstream_sticky_total{upstream=\"u\",outcome=\"hit\"}", 1,
                              PX_IO_MS);
    if (hits != 1)
        fail_msg("the old generation answered a hit after the reload; the counter says %.0f", hits);
    assert_true(scrape_wait(harness_port(h, "admin"),
                            "portico_upstream_sticky_total{upstream=\"u\",outcome=\"new\"}", 1,
                            PX_IO_MS) == 1);
    stop(h, &os);
}

/* The cookie's origin goes down while a request waits for its slot (the holder's request timed
 * out: max_fails = 1): the waiter is not failed but redispatched, answered by another origin
 * with a new cookie, and logged so. */
static void test_full_origin_down_redispatches(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "admin_listen = 127.0.0.1:{{port:admin}}\n",
                              "max_conns = 1\nqueue_timeout = 5s\nmax_fails = 1\n"
                              "down_time = 60s\nfirst_byte_timeout = 300ms\n");
    struct answer first = get(h, NULL);
    int x = first.origin;
    assert_true(x >= 0);
    char pair[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    gate_set(true);
    atomic_store(&os.ctl[x].gated, true);
    struct raw_conn *holder = send_with(h, pair);
    gate_wait_held(1); /* x is at max_conns */
    struct raw_conn *waiter = send_with(h, pair);
    wait_queued(h);
    struct answer held = answer_of(holder), waited = answer_of(waiter);
    atomic_store(&os.ctl[x].gated, false);
    gate_set(false);
    assert_int_equal(held.status, 504);
    if (waited.status != 200 || waited.origin == x || waited.set_cookies != 1)
        fail_msg("the waiter: status %d from origin %d (the cookie's %d), %u Set-Cookie",
                 waited.status, waited.origin, x, waited.set_cookies);
    char *line = px_log_line(h, "timing=queue:");
    if (!strstr(line, "sticky=redispatched"))
        fail_msg("the waiter's line: %s", line);
    free(line);
    stop(h, &os);
}

/* The cookie's origin stays full past queue_timeout: the waiter's error names that one origin,
 * the one it waited for, not the upstream's others (free all along). */
static void test_full_origin_times_out(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV", "admin_listen = 127.0.0.1:{{port:admin}}\n",
                              "max_conns = 1\nqueue_timeout = 300ms\n");
    struct answer first = get(h, NULL);
    int x = first.origin;
    assert_true(x >= 0);
    char pair[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    gate_set(true);
    atomic_store(&os.ctl[x].gated, true);
    struct raw_conn *holder = send_with(h, pair);
    gate_wait_held(1); /* x is at max_conns */
    struct answer waited = answer_of(send_with(h, pair));
    atomic_store(&os.ctl[x].gated, false);
    gate_set(false);
    assert_int_equal(answer_of(holder).origin, x);
    assert_int_equal(waited.status, 503);
    char *line = px_log_line(h, "timing=queue:");
    if (!strstr(line, "in the queue of upstream u: all 1 origin at max_conns 1"))
        fail_msg("the waiter's line: %s", line);
    free(line);
    stop(h, &os);
}

/* A WebSocket upgrade is a response too: the 101 sets the cookie of the origin that switched,
 * as HAProxy's does, so the client's next requests land there. */
static const struct fo_step switched[] = {
    FO_SEND("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
    FO_HOLD(),
};

static void test_upgrade_sets_it(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = switched};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL, "[upstream u]\nsticky = cookie SRV\norigin = 127.0.0.1:%u\n",
                                 fake_origin_port(o));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                                     "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"),
                     0);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 101);
    const char *sc = raw_head_field(&head, "Set-Cookie");
    if (!sc || strncmp(sc, "SRV=", 4) != 0)
        fail_msg("the 101's Set-Cookie: %s", sc ? sc : "(none)");
    raw_head_free(&head);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
}

/* The origin's Cache-Control keeps the response from shared caches already (private or no-store,
 * any case, with an argument, in any of its fields): no Cache-Control of ours; a directive
 * that only begins so, or public, gets our private. */
static const struct {
    const struct fo_step script[2];
    bool ours; /* Portico adds Cache-Control: private */
} cc_rows[] = {
    {{FO_RESPOND(200, "Cache-Control: no-store\r\n", "o", FO_LENGTH), FO_END()}, false},
    {{FO_RESPOND(200, "Cache-Control: max-age=60, PRIVATE\r\n", "o", FO_LENGTH), FO_END()},
     false},
    {{FO_RESPOND(200, "Cache-Control: private =\"Set-Cookie\"\r\n", "o", FO_LENGTH), FO_END()},
     false},
    {{FO_RESPOND(200, "Cache-Control: max-age=60\r\nCache-Control: no-store\r\n", "o",
                 FO_LENGTH),
      FO_END()},
     false},
    {{FO_RESPOND(200, "Cache-Control: privately, no-stored\r\n", "o", FO_LENGTH), FO_END()},
     true},
    {{FO_RESPOND(200, "Cache-Control: public\r\n", "o", FO_LENGTH), FO_END()}, true},
};

static const struct fo_step *pick_cc(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    const char *at = strstr(req->head, "/cc/");
    size_t i = at ? (size_t)atoi(at + 4) : 0;
    return cc_rows[i < ARRAY_SIZE(cc_rows) ? i : 0].script;
}

static void test_origin_cache_control(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_cc};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL, "[upstream u]\nsticky = cookie SRV\norigin = 127.0.0.1:%u\n",
                                 fake_origin_port(o));
    for (size_t i = 0; i < ARRAY_SIZE(cc_rows); i++) {
        char path[16];
        snprintf(path, sizeof(path), "/cc/%zu", i);
        struct answer a = get_at(h, path, NULL);
        assert_int_equal(a.set_cookies, 1);
        if (a.private_field != cc_rows[i].ours)
            fail_msg("%s: %s Cache-Control: private of ours, want %s", path,
                     a.private_field ? "a" : "no", cc_rows[i].ours ? "one" : "none");
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* A host:port listed twice (a weight by repetition) is one origin to its cookie: both listings'
 * slots are its (max_conns = 1 each), each answers with no cookie set again, and the request
 * that finds both full waits for either. */
static void test_listed_twice(void **state)
{
    (void)state;
    struct origins os;
    origins_start(&os, NULL);
    static const int twice[NORIGINS] = {0, 0, 1};
    char up[1024];
    upstream_text(up, sizeof(up), &os, twice, "cookie SRV", "max_conns = 1\nqueue_timeout = 2s\n");
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n", "%s", up);
    struct answer first = get(h, NULL);
    for (int k = 0; k < 3 && first.origin != 0; k++)
        first = get(h, NULL);
    assert_int_equal(first.origin, 0);
    char pair[128];
    pair_of(first.set_cookie, pair, sizeof(pair));
    gate_set(true);
    atomic_store(&os.ctl[0].gated, true);
    struct raw_conn *c[3];
    c[0] = send_with(h, pair);
    gate_wait_held(1);
    c[1] = send_with(h, pair); /* the other listing's slot */
    gate_wait_held(2);
    c[2] = send_with(h, pair);
    wait_queued(h);
    atomic_store(&os.ctl[0].gated, false);
    gate_set(false);
    for (int k = 0; k < 3; k++) {
        struct answer a = answer_of(c[k]);
        if (a.origin != 0 || a.set_cookies)
            fail_msg("request %d with %s: status %d from origin %d, %u Set-Cookie", k + 1, pair,
                     a.status, a.origin, a.set_cookies);
    }
    stop(h, &os);
}

/* Cache-Control is judged as the client gets it, after the route's rules: an origin's no-store
 * that a `response_header` replaces with `public` leaves a Set-Cookie a shared cache may keep,
 * so the response gets `private` too; a rule that removes the origin's private likewise. */
static void test_private_after_rules(void **state)
{
    (void)state;
    static const char *const rules[] = {
        "response_header = Cache-Control: public, max-age=600\n",
        "response_header_remove = Cache-Control\n",
    };
    static const char *const origin_says[] = {"Cache-Control: no-store\r\n",
                                              "Cache-Control: private\r\n"};
    static const char *const client_gets[] = {"public, max-age=600", "private"};
    for (size_t k = 0; k < 2; k++) {
        struct origins os;
        origins_start(&os, origin_says[k]);
        char up[1024];
        upstream_text(up, sizeof(up), &os, in_order, "cookie SRV", NULL);
        struct harness *h = px_start(NULL, "%s[route r]\nprefix = /\nupstream = u\n%s", up,
                                     rules[k]);
        struct answer a = get(h, NULL);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.set_cookies, 1);
        if (a.cache_controls != 2 - k || strcmp(a.cache_control, client_gets[k]) != 0 ||
            !a.private_field)
            fail_msg("rule %zu: %u Cache-Control fields, the first '%s'%s", k, a.cache_controls,
                     a.cache_control, a.private_field ? "" : ", none 'private'");
        stop(h, &os);
    }
}

/* A browser's view: curl with a cookie jar, 10 requests, one origin, the cookie set once. */
static void test_curl_cookie_jar(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "cookie SRV max_age=10m httponly", NULL, NULL);
    char url[64], jar[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/k", harness_port(h, "listen"));
    snprintf(jar, sizeof(jar), "%s/jar.txt", harness_dir(h));
    int home = -1;
    unsigned set = 0;
    for (int k = 0; k < 10; k++) {
        const char *const argv[] = {"curl", "-sS", "--max-time", "5", "-D", "-", "-b", jar,
                                    "-c", jar, url, NULL};
        struct tu_cmd_result res;
        assert_int_equal(tu_run_command(argv, 10000, &res), 0);
        int o = -1;
        for (int i = 0; i < NORIGINS; i++)
            if (strstr(res.out, names[i]))
                o = i;
        assert_true(o >= 0);
        if (home < 0)
            home = o;
        if (o != home)
            fail_msg("request %d went to origin %d, not %d", k + 1, o, home);
        set += strstr(res.out, "Set-Cookie: SRV=") != NULL;
        tu_cmd_result_free(&res);
    }
    assert_int_equal(set, 1);
    stop(h, &os);
}

int main(void)
{
    tu_test_filter(); /* TEST_FILTER=test_h2* runs the matching rows only */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_sets_then_sticks),
        cmocka_unit_test(test_origin_never_sees_it),
        cmocka_unit_test(test_down_redispatches),
        cmocka_unit_test(test_unknown_value),
        cmocka_unit_test(test_reload_reorders),
        cmocka_unit_test(test_reload_old_generation_hit_counted),
        cmocka_unit_test(test_h2_crumbs),
        cmocka_unit_test(test_options_rendered),
        cmocka_unit_test(test_curl_cookie_jar),
        cmocka_unit_test(test_full_origin_waits),
        cmocka_unit_test(test_full_origin_down_redispatches),
        cmocka_unit_test(test_full_origin_times_out),
        cmocka_unit_test(test_upgrade_sets_it),
        cmocka_unit_test(test_origin_cache_control),
        cmocka_unit_test(test_listed_twice),
        cmocka_unit_test(test_private_after_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
