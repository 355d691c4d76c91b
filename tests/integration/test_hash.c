/*
 * test_hash.c — `balance = hash KEY` with the real binary and four fake origins on loopback,
 * each answering its own name: the same client address always reaches the same origin (bound
 * to 127.0.0.1 or 127.0.0.2, or named by a trusted X-Forwarded-For), many clients spread over
 * all four, an origin taken down moves only its own clients (its failed request retried on the
 * next origin of the ring, the one its key goes to while it is down) and they come back with
 * it, a reload that leaves an origin out moves only its clients (and back), and $cookie_sid
 * keeps a session on one origin over HTTP/1.1 and HTTP/2 alike, requests without the cookie
 * going round robin.
 */
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
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define NORIGINS 4
#define CLIENTS 64

static const char *const names[NORIGINS] = {"o0\n", "o1\n", "o2\n", "o3\n"};

/* An origin's switch: down, it resets every request (a fresh connection dropped before any
 * response byte counts toward max_fails, and retry_sent retries a GET). */
struct origin_ctl {
    atomic_bool down;
    struct fo_step up_script[2], down_script[2];
};

struct origins {
    struct fake_origin *o[NORIGINS];
    uint16_t port[NORIGINS];
    struct origin_ctl ctl[NORIGINS];
};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)req;
    struct origin_ctl *c = arg;
    return atomic_load(&c->down) ? c->down_script : c->up_script;
}

/* Origin i, answering its name until told to go down. */
static struct fake_origin *origin_start(struct origin_ctl *c, int i)
{
    atomic_init(&c->down, false);
    c->up_script[0] = (struct fo_step)FO_RESPOND(200, NULL, names[i], FO_LENGTH);
    c->up_script[1] = (struct fo_step)FO_END();
    c->down_script[0] = (struct fo_step)FO_RST();
    c->down_script[1] = (struct fo_step)FO_END();
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick, .pick_arg = c};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    return o;
}

/* Four origins and Portico with `balance = hash KEY` over them; proxy_extra in [proxy]. */
static struct harness *start(struct origins *os, const char *key, const char *proxy_extra,
                             const char *upstream_extra)
{
    for (int i = 0; i < NORIGINS; i++) {
        os->o[i] = origin_start(&os->ctl[i], i);
        os->port[i] = fake_origin_port(os->o[i]);
    }
    return px_start(proxy_extra,
                    "[upstream u]\nbalance = hash %s\n%s"
                    "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                    "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n",
                    key, upstream_extra ? upstream_extra : "", os->port[0], os->port[1],
                    os->port[2], os->port[3]);
}

static void stop(struct harness *h, struct origins *os)
{
    px_stop(h);
    for (int i = 0; i < NORIGINS; i++)
        fake_origin_stop(os->o[i]);
}

/* Which origin answered a GET from source address src (NULL: 127.0.0.1) with the extra header
 * lines `fields`; -1 for anything but 200 from one of them. */
static int which(struct harness *h, const char *src, const char *fields)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
             fields ? fields : "");
    struct raw_conn *c = raw_connect_from(src ? src : "127.0.0.1", harness_port(h, "listen"),
                                          PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    int got = -1;
    if (raw_read_response(c, &r, PX_IO_MS) == 0 && r.status == 200)
        for (int i = 0; i < NORIGINS; i++)
            if (strcmp(r.body, names[i]) == 0)
                got = i;
    raw_response_free(&r);
    raw_close(c);
    return got;
}

/* Which origin answered client k of the trusted X-Forwarded-For (127.0.1.k). */
static int which_client(struct harness *h, int k)
{
    char xff[64];
    snprintf(xff, sizeof(xff), "X-Forwarded-For: 127.0.1.%d\r\n", k);
    return which(h, NULL, xff);
}

#define TRUST_XFF "trusted_proxies = 127.0.0.1\nreal_ip = x-forwarded-for\n"

/* hash $client_addr: each of 127.0.0.1 and 127.0.0.2 reaches one origin, every time (round
 * robin gave each of them all four). */
static void test_client_addr_sticks(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "$client_addr", NULL, NULL);
    static const char *const srcs[] = {"127.0.0.1", "127.0.0.2"};
    for (size_t s = 0; s < ARRAY_SIZE(srcs); s++) {
        int first = which(h, srcs[s], NULL);
        assert_true(first >= 0);
        for (int k = 0; k < 8; k++)
            if (which(h, srcs[s], NULL) != first)
                fail_msg("client %s left origin %d at request %d", srcs[s], first, k + 2);
        print_message("  client %s: origin %d, 9 of 9\n", srcs[s], first);
    }
    stop(h, &os);
}

/* Clients named by a trusted X-Forwarded-For: each stays on its origin, and 64 of them spread
 * over all four (none with more than half). */
static void test_clients_spread(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "$client_addr", TRUST_XFF, NULL);
    int count[NORIGINS] = {0};
    for (int k = 0; k < CLIENTS; k++) {
        int o = which_client(h, k);
        assert_true(o >= 0);
        if (which_client(h, k) != o || which_client(h, k) != o)
            fail_msg("client 127.0.1.%d moved off origin %d", k, o);
        count[o]++;
    }
    print_message("  %d clients: %d %d %d %d\n", CLIENTS, count[0], count[1], count[2], count[3]);
    for (int o = 0; o < NORIGINS; o++)
        if (count[o] == 0 || count[o] > CLIENTS / 2)
            fail_msg("origin %d has %d of %d clients", o, count[o], CLIENTS);
    stop(h, &os);
}

/* An origin taken down (it resets every request; max_fails = 1, retry_sent): its clients' first
 * request is retried on the next origin of the ring, which then keeps them while it is down;
 * every other client stays where it was; once it answers again and its down_time is over, a
 * request of one of its clients probes it and they are all back. */
static void test_down_moves_only_its_keys(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "$client_addr", TRUST_XFF "error_log = {{dir}}/error.log\n",
                              "max_fails = 1\ndown_time = 200ms\nretries = 1\nretry_sent = on\n");
    int home[CLIENTS], victim = -1, moved = 0;
    for (int k = 0; k < CLIENTS; k++) {
        home[k] = which_client(h, k);
        assert_true(home[k] >= 0);
    }
    victim = home[0];
    atomic_store(&os.ctl[victim].down, true);
    int retried_to[CLIENTS];
    for (int k = 0; k < CLIENTS; k++) {
        retried_to[k] = which_client(h, k); /* the first of its clients: reset, then retried */
        if (home[k] != victim && retried_to[k] != home[k])
            fail_msg("client %d moved from %d to %d while only %d is down", k, home[k],
                     retried_to[k], victim);
        if (home[k] == victim) {
            assert_true(retried_to[k] >= 0 && retried_to[k] != victim);
            moved++;
        }
    }
    char *line = harness_file_line(h, "error.log", "retrying on", PX_IO_MS);
    assert_non_null(line);
    free(line);
    /* while it is down: its clients where their retry went (the next origin on the ring) */
    for (int k = 0; k < CLIENTS; k++)
        if (home[k] == victim && which_client(h, k) != retried_to[k])
            fail_msg("client %d: retried to %d, then elsewhere", k, retried_to[k]);
    print_message("  origin %d down: %d of %d clients moved, the others stayed\n", victim, moved,
                  CLIENTS);
    /* back: answering again; its first client probes it after down_time */
    atomic_store(&os.ctl[victim].down, false);
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    while (which_client(h, 0) != victim) {
        if (tu_now_ms() > deadline)
            fail_msg("origin %d's clients never came back", victim);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* down_time is a clock Portico keeps: polled, bounded */
    }
    for (int k = 0; k < CLIENTS; k++)
        if (which_client(h, k) != home[k])
            fail_msg("client %d not back on %d", k, home[k]);
    stop(h, &os);
}

/* The configuration of start() with $client_addr and a trusted X-Forwarded-For, the origins of
 * mask only (bit i: origin i), written for a reload. */
static void write_config(struct harness *h, const struct origins *os, unsigned mask)
{
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; i < NORIGINS; i++)
        if (mask & (1u << i))
            len += (size_t)snprintf(list + len, sizeof(list) - len, "origin = 127.0.0.1:%u\n",
                                    os->port[i]);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\naccess_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n" TRUST_XFF
                                          "[upstream u]\nbalance = hash $client_addr\n%s",
                                          list),
                     0);
}

/* A reload builds the ring of the new configuration: one origin of four left out moves only
 * its clients, each to where the ring without it sends them; listed again, every client is
 * back on its first origin. */
static void test_reload_rebuilds_ring(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "$client_addr", TRUST_XFF, NULL);
    int home[CLIENTS], moved = 0;
    for (int k = 0; k < CLIENTS; k++)
        assert_true((home[k] = which_client(h, k)) >= 0);
    int gone = home[0];
    write_config(h, &os, 0xfu & ~(1u << gone));
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (int k = 0; k < CLIENTS; k++) {
        int o = which_client(h, k);
        assert_true(o >= 0 && o != gone);
        if (home[k] != gone && o != home[k])
            fail_msg("client %d moved from %d to %d when only %d left", k, home[k], o, gone);
        moved += home[k] == gone;
    }
    print_message("  origin %d left out: %d of %d clients moved, the others stayed\n", gone,
                  moved, CLIENTS);
    write_config(h, &os, 0xf);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 3", PX_IO_MS), 0);
    for (int k = 0; k < CLIENTS; k++)
        if (which_client(h, k) != home[k])
            fail_msg("client %d not back on %d after the second reload", k, home[k]);
    stop(h, &os);
}

/* HTTP/2 (h2c, curl) GET with cookie crumbs: which origin answered, -1 for none. */
static int which_h2(struct harness *h, const char *cookie)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/k", harness_port(h, "h2c"));
    const char *const argv[] = {"curl", "-sS", "--http2-prior-knowledge", "--max-time", "5",
                                "-H", "Cookie: a=1", "-H", cookie, url, NULL};
    struct tu_cmd_result res;
    assert_int_equal(tu_run_command(argv, 10000, &res), 0);
    int got = -1;
    for (int i = 0; i < NORIGINS; i++)
        if (strcmp(res.out, names[i]) == 0)
            got = i;
    tu_cmd_result_free(&res);
    return got;
}

/* hash $cookie_sid: a session stays on one origin over HTTP/1.1 and HTTP/2 (whose cookie
 * crumbs are one Cookie); sessions spread; requests without the cookie go round robin. */
static void test_cookie_h1_h2(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "$cookie_sid", "listen = 127.0.0.1:{{port:h2c}} h2c\n", NULL);
    unsigned seen = 0;
    for (int s = 0; s < 24; s++) {
        char h1[64], h2[64];
        snprintf(h1, sizeof(h1), "Cookie: a=1; sid=session-%d; b=2\r\n", s);
        snprintf(h2, sizeof(h2), "Cookie: sid=session-%d", s);
        int o = which(h, NULL, h1);
        assert_true(o >= 0);
        seen |= 1u << o;
        if (which(h, NULL, h1) != o)
            fail_msg("session %d moved over HTTP/1.1", s);
        int o2 = which_h2(h, h2);
        if (o2 != o)
            fail_msg("session %d: origin %d over HTTP/1.1, %d over HTTP/2", s, o, o2);
    }
    /* sessions spread: 24 on fewer than 3 of 4 origins has odds of 4 in 10 million (all 4
     * would fail 1 run in 60 or so: the origins' ports place them on the ring) */
    if (__builtin_popcount(seen) < 3)
        fail_msg("24 sessions on origins %#x only", seen);
    /* no sid: round robin, one request to each of four */
    unsigned rr = 0;
    for (int k = 0; k < NORIGINS; k++)
        rr |= 1u << which(h, NULL, "Cookie: other=1\r\n");
    assert_int_equal(rr, 0xf);
    stop(h, &os);
}

/* Which origin answered a GET of target. */
static int which_target(struct harness *h, const char *target)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", target);
    struct raw_conn *c = raw_connect(harness_port(h, "listen"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    int got = -1;
    if (raw_read_response(c, &r, PX_IO_MS) == 0 && r.status == 200)
        for (int i = 0; i < NORIGINS; i++)
            if (strcmp(r.body, names[i]) == 0)
                got = i;
    raw_response_free(&r);
    raw_close(c);
    return got;
}

/* $uri is the path without its query (nginx's $uri): a page asked with any query goes where
 * the page goes. Keyed with the query, 8 queries of one path would all land on its origin 1 run
 * in 16,384. */
static void test_uri_without_query(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "$uri", NULL, NULL);
    static const char *const paths[] = {"/img/a.png", "/img/b.png", "/doc"};
    for (size_t p = 0; p < ARRAY_SIZE(paths); p++) {
        int home = which_target(h, paths[p]);
        assert_true(home >= 0);
        for (int q = 0; q < 8; q++) {
            char target[64];
            snprintf(target, sizeof(target), "%s?v=%d", paths[p], q);
            int o = which_target(h, target);
            if (o != home)
                fail_msg("%s went to origin %d, %s to %d", target, o, paths[p], home);
        }
    }
    stop(h, &os);
}

int main(void)
{
    tu_test_filter(); /* TEST_FILTER=test_cookie* runs the matching rows only */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_addr_sticks),
        cmocka_unit_test(test_clients_spread),
        cmocka_unit_test(test_down_moves_only_its_keys),
        cmocka_unit_test(test_reload_rebuilds_ring),
        cmocka_unit_test(test_cookie_h1_h2),
        cmocka_unit_test(test_uri_without_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
