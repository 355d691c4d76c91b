/*
 * test_client_limits.c — per-client limits with the real binary on loopback: client_rate (a
 * burst, then 429 with Retry-After and the reason, in the access line, the error log and
 * portico_requests_rate_limited_total; the refill after one interval; clients counted apart,
 * IPv6 by its /64; HTTP/2 streams counted as requests; a route without a rate untouched; a
 * reload starts afresh; error_detail = minimal leaves the route's name out),
 * max_connections_per_client (closed at the accept, nothing sent, counted; with the PROXY
 * protocol the header's source is the client; two workers count together and every close gives
 * its count back), the table bounded under 200,000 distinct clients (trusted X-Forwarded-For)
 * and a client held at its burst kept through a flood, and the keys' errors at FILE:LINE; then
 * routes counted apart, Retry-After of a whole wait, [proxy]'s burst inherited, a unit of one
 * letter, and a rate of more digits than its bound refused with the bound.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/scrape.h"
#include "proxy_helpers.h"

/* Portico with the sim origin, an admin listener, trusted X-Forwarded-For from loopback (so a
 * test names its clients), `proxy_extra` in [proxy] and `routes` after the upstream. */
static struct harness *start(const char *proxy_extra, const char *routes)
{
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:{{port:admin}}\n"
             "error_log = {{dir}}/error.log\nlog_level = info\n"
             "trusted_proxies = 127.0.0.1\nreal_ip = x-forwarded-for\n%s",
             proxy_extra ? proxy_extra : "");
    return px_start(extra, "[upstream s]\norigin = sim\n%s", routes ? routes : "");
}

/* One GET of path on c as client `xff` (NULL: the connection's own address). The status; the
 * response in *r when r is not NULL (free it), else freed here. */
static int get(struct raw_conn *c, const char *path, const char *xff, struct raw_response *r)
{
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%s%s%s\r\n", path,
             xff ? "X-Forwarded-For: " : "", xff ? xff : "", xff ? "\r\n" : "");
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response own;
    struct raw_response *resp = r ? r : &own;
    int rc = raw_read_response(c, resp, PX_IO_MS);
    int status = rc == 0 ? resp->status : -1;
    if (!r)
        raw_response_free(&own);
    return status;
}

/* How many times needle occurs in s. */
static unsigned count_of(const char *s, const char *needle)
{
    unsigned n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ---- client_rate ---- */

/* Retry-After is one interval less the time since the first admission (at or after since),
 * rounded up: the interval exactly unless the requests took over a second (valgrind: 1-2 s,
 * asserted only there), then as many seconds fewer as they took. */
static void want_retry_after(struct harness *h, const char *retry, long interval_s,
                             int64_t since)
{
    long took_ms = (long)(tu_now_ms() - since);
    print_message("  Retry-After %s after %ld ms\n", retry, took_ms);
    if (px_under_valgrind(harness_pid(h))) {
        long low = interval_s - (took_ms + 999) / 1000;
        assert_in_range(strtol(retry, NULL, 10), low > 1 ? low : 1, interval_s);
    } else {
        char exact[16];
        snprintf(exact, sizeof(exact), "%ld", interval_s);
        assert_string_equal(retry, exact);
    }
}

/* client_rate = 2/m with a burst of 4: five at once, the sixth gets 429 with Retry-After (30 s,
 * one interval), the reason in its body, in the access line (phase route) and in an info line,
 * counted by route. */
static void test_burst_then_429(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route api]\nprefix = /\nupstream = s\n"
                                    "client_rate = 2/m\nclient_rate_burst = 4\n");
    uint16_t admin = harness_port(h, "admin");
    struct raw_conn *c = px_connect(h);
    int64_t t0 = tu_now_ms();
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(c, "/", NULL, NULL), 200);
    struct raw_response r;
    assert_int_equal(get(c, "/", NULL, &r), 429);
    const char *retry = raw_header(&r, "Retry-After");
    assert_non_null(retry);
    want_retry_after(h, retry, 30, t0);
    static const char reason[] = "client 127.0.0.1 over client_rate = 2/m on route api (burst 4)";
    if (!strstr(r.body, reason))
        fail_msg("429 body: %s", r.body);
    assert_non_null(raw_header(&r, "X-Request-Id"));
    raw_response_free(&r);
    /* the connection stays: the next one is refused too */
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    char *line = px_log_line(h, "status=429");
    assert_true(strstr(line, "phase=route") != NULL);
    assert_true(strstr(line, reason) != NULL);
    assert_true(strstr(line, "route=api") != NULL);
    free(line);
    assert_int_equal(harness_wait_file(h, "error.log", reason, PX_IO_MS), 0);
    /* valgrind: 15 s (its count was not read in 5 s once, in a full run on a loaded host) */
    int scrape_ms = px_under_valgrind(harness_pid(h)) ? 3 * PX_IO_MS : PX_IO_MS;
    int64_t t1 = tu_now_ms();
    double limited = scrape_wait(admin, "portico_requests_rate_limited_total{route=\"api\"}", 2,
                                 scrape_ms);
    print_message("  rate_limited_total %.0f after %lld ms\n", limited,
                  (long long)(tu_now_ms() - t1));
    assert_true(limited == 2);
    raw_close(c);
    px_stop(h);
}

/* error_detail = minimal: the 429 keeps its reason about the client (its address, the rate, the
 * burst) but not the route's name, which is the configuration's; the access line (its route
 * field) and the error log keep it. */
static void test_429_minimal_detail(void **state)
{
    (void)state;
    struct harness *h = start("error_detail = minimal\n",
                              "[route internal-billing]\nprefix = /\nupstream = s\n"
                              "client_rate = 1/m\n");
    struct raw_conn *c = px_connect(h);
    int64_t t0 = tu_now_ms();
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    struct raw_response r;
    assert_int_equal(get(c, "/", NULL, &r), 429);
    if (strstr(r.body, "internal-billing") ||
        !strstr(r.body, "client 127.0.0.1 over client_rate = 1/m (burst 0)"))
        fail_msg("429 body under error_detail = minimal: %s", r.body);
    assert_non_null(raw_header(&r, "Retry-After"));
    want_retry_after(h, raw_header(&r, "Retry-After"), 60, t0);
    raw_response_free(&r);
    char *line = px_log_line(h, "status=429");
    assert_true(strstr(line, "route=internal-billing") != NULL);
    free(line);
    assert_int_equal(harness_wait_file(h, "error.log",
                                       "client 127.0.0.1 over client_rate = 1/m on route "
                                       "internal-billing (burst 0)",
                                       PX_IO_MS),
                     0);
    raw_close(c);
    px_stop(h);
}

/* 20/s without a burst: one admitted every 50 ms. A request sent one interval after the one
 * refused is admitted: the limiter's clock (CLOCK_MONOTONIC, read when Portico handles the
 * request) is the test's, so no margin is needed (its last admission came before that refusal
 * was sent). */
static void test_refill_after_interval(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route api]\nprefix = /\nupstream = s\n"
                                    "client_rate = 20/s\n");
    struct raw_conn *c = px_connect(h);
    int64_t refused_sent = -1;
    for (int i = 0; i < 50 && refused_sent < 0; i++) { /* a loaded host may space them out */
        int64_t sent = tu_now_ms();
        int status = get(c, "/", NULL, NULL);
        assert_true(status == 200 || status == 429);
        if (status == 429)
            refused_sent = sent;
    }
    assert_true(refused_sent >= 0);
    while (tu_now_ms() < refused_sent + 50 + 1) { /* + 1: the ms clock rounds down */
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the refill is time itself: waited for on the limiter's clock */
    }
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    raw_close(c);
    px_stop(h);
}

/* Clients are counted apart: two X-Forwarded-For addresses each have their budget; IPv6
 * addresses of one /64 share one, another /64 has its own. */
static void test_clients_apart(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route api]\nprefix = /\nupstream = s\n"
                                    "client_rate = 1/m\nclient_rate_burst = 1\n");
    struct raw_conn *c = px_connect(h);
    static const struct {
        const char *why, *client;
        int want;
    } rows[] = {
        {"a: first", "127.0.7.1", 200},
        {"a: its burst", "127.0.7.1", 200},
        {"a: over", "127.0.7.1", 429},
        {"b: its own budget", "127.0.7.2", 200},
        {"b: its burst", "127.0.7.2", 200},
        {"b: over", "127.0.7.2", 429},
        {"::1", "::1", 200},
        {"::2, the same /64", "::2", 200},
        {"::3, the same /64: over", "::3", 429},
        {"0:0:0:1::1, another /64", "0:0:0:1::1", 200},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        int got = get(c, "/", rows[i].client, NULL);
        if (got != rows[i].want)
            fail_msg("%s: %d, want %d", rows[i].why, got, rows[i].want);
    }
    char *line = px_log_line(h, "::/64 over client_rate");
    free(line);
    raw_close(c);
    px_stop(h);
}

/* Over HTTP/2 each stream is a request: four at once on one connection (h2_frames.py, TLS
 * with ALPN h2) with a budget of three: three answered, one 429, the connection goes on. */
static void test_http2_streams(void **state)
{
    (void)state;
    struct harness *h = start("listen = 127.0.0.1:{{port:tls}} tls\n"
                              "tls_cert = {{certs}}/server.pem\ntls_key = {{certs}}/server.key\n",
                              "[route api]\nprefix = /\nupstream = s\n"
                              "client_rate = 1/m\nclient_rate_burst = 2\n");
    char port[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "tls"));
    const char *const argv[] = {"/usr/bin/python3", "tests/integration/h2_frames.py", port,
                                "heads", "/,/,/,/", NULL};
    struct tu_cmd_result res = {0};
    if (tu_run_command(argv, 20000, &res) != 0)
        fail_msg("h2_frames.py: %s%s", res.out, res.err);
    assert_int_equal(count_of(res.out, "status=[200]"), 3);
    assert_int_equal(count_of(res.out, "status=[429]"), 1);
    assert_int_equal(count_of(res.out, "goaway=None"), 1);
    tu_cmd_result_free(&res);
    char *line = px_log_line(h, "status=429");
    assert_true(strstr(line, "proto=HTTP/2.0") != NULL);
    free(line);
    px_stop(h);
}

/* A route without client_rate pays nothing and refuses nothing, while the next one's client is
 * over its rate. */
static void test_route_without_rate(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route limited]\nprefix = /limited\nupstream = s\n"
                                    "client_rate = 1/m\n"
                                    "[route free]\nprefix = /\nupstream = s\n");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(get(c, "/limited", NULL, NULL), 404); /* the sim's answer: admitted */
    assert_int_equal(get(c, "/limited", NULL, NULL), 429);
    for (int i = 0; i < 50; i++)
        assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/limited", NULL, NULL), 429);
    raw_close(c);
    px_stop(h);
}

/* [proxy]'s client_rate is every route's, but a route's `off`. */
static void test_proxy_default_and_off(void **state)
{
    (void)state;
    struct harness *h = start("client_rate = 1/m\n",
                              "[route open]\nprefix = /open\nupstream = s\nclient_rate = off\n"
                              "[route rest]\nprefix = /\nupstream = s\n");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(c, "/open", NULL, NULL), 404);
    raw_close(c);
    px_stop(h);
}

/* A reload starts the table afresh (a new generation): the client over its rate before is
 * admitted after it. */
static void test_reload_starts_afresh(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route api]\nprefix = /\nupstream = s\n"
                                    "client_rate = 1/m\n");
    uint16_t admin = harness_port(h, "admin");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    raw_close(c);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_true(scrape_wait(admin, "portico_config_generation", 2, PX_IO_MS) == 2);
    c = px_connect(h); /* accepted by the new generation's worker */
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    raw_close(c);
    px_stop(h);
}

/* ---- max_connections_per_client ---- */

/* Two connections of a client are served; its third is closed at once, unanswered, and
 * counted; once one of the two closes, a new one is served again. Another client (its PROXY
 * header's source, on a proxy_protocol listener) is counted apart. */
static void test_connections_per_client(void **state)
{
    (void)state;
    /* (no trusted_proxies: a peer of theirs carries many clients and is never counted) */
    struct harness *h = px_start("max_connections_per_client = 2\n"
                                 "listen = 127.0.0.1:{{port:pp}} proxy_protocol\n"
                                 "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                 "error_log = {{dir}}/error.log\nlog_level = info\n",
                                 "[upstream s]\norigin = sim\n");
    uint16_t admin = harness_port(h, "admin");
    struct raw_conn *a = px_connect(h), *b = px_connect(h);
    assert_int_equal(get(a, "/", NULL, NULL), 200);
    assert_int_equal(get(b, "/", NULL, NULL), 200);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    size_t len = 0;
    char *got = raw_read_all(c, 100, &len);
    assert_int_equal(len, 0); /* not a byte */
    free(got);
    raw_close(c);
    assert_true(scrape_wait(admin,
                            "portico_client_connections_refused_total{reason=\"per_client\"}", 1,
                            PX_IO_MS) == 1);
    assert_int_equal(harness_wait_file(h, "error.log", "client 127.0.0.1: connection closed at "
                                       "its accept: it holds max_connections_per_client = 2",
                                       PX_IO_MS), 0);
    /* one of them goes: its place is free (the close is seen by Portico, then the new one) */
    raw_close(a);
    static const char active[] = "portico_connections{side=\"client\",state=\"idle\"}";
    assert_true(scrape_wait(admin, active, 1, PX_IO_MS) == 1);
    c = px_connect(h);
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    raw_close(c);

    /* through the PROXY protocol: 127.0.9.9 is its header's source, not 127.0.0.1 (which holds
     * two now) */
    uint16_t pp = harness_port(h, "pp");
    struct raw_conn *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = raw_connect(pp, PX_IO_MS);
        assert_non_null(p[i]);
        assert_int_equal(raw_send_str(p[i], "PROXY TCP4 127.0.9.9 127.0.0.1 4000 80\r\n"), 0);
    }
    int served = 0, closed = 0;
    for (int i = 0; i < 3; i++) {
        struct raw_response r;
        char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        raw_send_str(p[i], req); /* the refused one may have closed already */
        if (raw_read_response(p[i], &r, PX_IO_MS) == 0 && r.status == 200)
            served++;
        else if (r.peer_closed && r.status == 0)
            closed++;
        raw_response_free(&r);
    }
    assert_int_equal(served, 2);
    assert_int_equal(closed, 1);
    for (int i = 0; i < 3; i++)
        raw_close(p[i]);
    assert_true(scrape_wait(admin,
                            "portico_client_connections_refused_total{reason=\"per_client\"}", 2,
                            PX_IO_MS) == 2);
    raw_close(b);
    px_stop(h);
}

/* Two workers (SO_REUSEPORT spreads the connections): one client's 40 connections, 8 served
 * whichever worker took them, and portico_client_limit_connections reads 8; then every way a
 * counted connection ends gives its count back, to 0: the client's close, a TLS handshake that
 * fails, client_header_timeout, a PROXY header's client closing. */
static void test_connections_counted_back_to_zero(void **state)
{
    (void)state;
    enum { MAX = 8, OPEN = 40 };
    static const char gauge[] = "portico_client_limit_connections";
    struct harness *h = harness_new();
    assert_non_null(h);
    /* valgrind (scripts/valgrind.sh sets PORTICO_TEST_START_MS): 2 s, where 200 ms ran out
     * between the accepts and the test's requests (408 to 7 of the 8 admitted) */
    const char *header_timeout = getenv("PORTICO_TEST_START_MS") ? "2s" : "200ms";
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "listen = 127.0.0.1:{{port:tls}} tls\n"
                                          "listen = 127.0.0.1:{{port:pp}} proxy_protocol\n"
                                          "tls_cert = {{certs}}/server.pem\n"
                                          "tls_key = {{certs}}/server.key\n"
                                          "workers = 2\naccess_log = off\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "client_header_timeout = %s\n"
                                          "max_connections_per_client = 8\n"
                                          "[upstream s]\norigin = sim\n",
                                          header_timeout),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    uint16_t admin = harness_port(h, "admin"), port = harness_port(h, "listen");
    assert_true(scrape_metric(admin, "portico_client_limit_table_entries", PX_IO_MS) >= 1024);

    /* the client's close */
    struct raw_conn *c[OPEN];
    int served = 0;
    for (int i = 0; i < OPEN; i++) {
        c[i] = raw_connect(port, PX_IO_MS);
        assert_non_null(c[i]);
    }
    for (int i = 0; i < OPEN; i++) {
        struct raw_response r;
        raw_send_str(c[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n"); /* refused: may fail */
        if (raw_read_response(c[i], &r, PX_IO_MS) == 0 && r.status == 200)
            served++;
        raw_response_free(&r);
    }
    assert_int_equal(served, MAX);
    assert_true(scrape_wait(admin, gauge, MAX, PX_IO_MS) == MAX);
    for (int i = 0; i < OPEN; i++)
        raw_close(c[i]);
    assert_true(scrape_wait(admin, gauge, 0, PX_IO_MS) == 0);

    /* a TLS handshake that fails (a request where the ClientHello should be), and
     * client_header_timeout (nothing sent): Portico closes them */
    uint16_t tls = harness_port(h, "tls");
    for (int i = 0; i < MAX; i++) {
        c[i] = raw_connect(i % 2 ? tls : port, PX_IO_MS);
        assert_non_null(c[i]);
        if (i % 2)
            assert_int_equal(raw_send_str(c[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    }
    for (int i = 0; i < MAX; i++) {
        assert_int_equal(raw_wait_closed(c[i], PX_IO_MS), 1);
        raw_close(c[i]);
    }
    assert_true(scrape_wait(admin, gauge, 0, PX_IO_MS) == 0);

    /* through the PROXY protocol: counted by its header's source, given back at its close */
    uint16_t pp = harness_port(h, "pp");
    for (int i = 0; i < MAX; i++) {
        c[i] = raw_connect(pp, PX_IO_MS);
        assert_non_null(c[i]);
        assert_int_equal(raw_send_str(c[i], "PROXY TCP4 127.0.9.9 127.0.0.1 4000 80\r\n"
                                            "GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
                         0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c[i], &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
    }
    assert_true(scrape_wait(admin, gauge, MAX, PX_IO_MS) == MAX);
    for (int i = 0; i < MAX; i++)
        raw_close(c[i]);
    assert_true(scrape_wait(admin, gauge, 0, PX_IO_MS) == 0);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
}

/* A peer of trusted_proxies (an HTTP balancer) carries many clients: its connections are never
 * counted, while its clients' requests are (client_rate keys on real_ip's client). */
static void test_connections_trusted_proxy(void **state)
{
    (void)state;
    struct harness *h = start("max_connections_per_client = 1\n",
                              "[route api]\nprefix = /\nupstream = s\nclient_rate = 1/m\n");
    struct raw_conn *a = px_connect(h), *b = px_connect(h), *c = px_connect(h);
    assert_int_equal(get(a, "/", "127.0.8.1", NULL), 200);
    assert_int_equal(get(b, "/", "127.0.8.2", NULL), 200);
    assert_int_equal(get(c, "/", "127.0.8.1", NULL), 429);
    raw_close(a);
    raw_close(b);
    raw_close(c);
    px_stop(h);
}

/* ---- the table's bounds ---- */

/* 200,000 distinct clients (trusted X-Forwarded-For, pipelined) through a table of 1,024
 * entries: memory stays bounded, the first clients were evicted (admitted afresh: the price of
 * the bound), the last one is still counted. */
static void test_table_full(void **state)
{
    (void)state;
    enum { BATCH = 200 };
    struct harness *h = start("client_limit_table = 1024\n",
                              "[route api]\nprefix = /\nupstream = s\nclient_rate = 1/m\n");
    pid_t pid = harness_pid(h);
    /* valgrind: 20,000 (350 s for 200,000 there), still each entry evicted some 19 times over;
     * its RSS is not Portico's, so the bound is asserted without it */
    const int clients = px_under_valgrind(pid) ? 20000 : 200000;
    struct raw_conn *c = px_connect(h);
    size_t cap = BATCH * 96;
    char *batch = malloc(cap);
    assert_non_null(batch);
    long rss_warm = -1;
    int64_t t0 = tu_now_ms();
    for (int base = 0; base < clients; base += BATCH) {
        size_t n = 0;
        for (int i = base; i < base + BATCH; i++)
            n += (size_t)snprintf(batch + n, cap - n,
                                  "GET / HTTP/1.1\r\nHost: t\r\n"
                                  "X-Forwarded-For: 127.%d.%d.%d\r\n\r\n",
                                  1 + (i >> 16), (i >> 8) & 255, i & 255);
        assert_int_equal(raw_send(c, batch, n), 0);
        for (int i = 0; i < BATCH; i++) {
            struct raw_response r;
            assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
            if (r.status != 200)
                fail_msg("client %d: %d", base + i, r.status);
            raw_response_free(&r);
        }
        if (base + BATCH == 10000)
            rss_warm = px_proc_kb(pid, "VmRSS");
    }
    long rss_end = px_proc_kb(pid, "VmRSS");
    print_message("  %d clients in %lld ms; RSS %ld kB after 10,000, %ld kB after %d\n", clients,
                  (long long)(tu_now_ms() - t0), rss_warm, rss_end, clients);
    /* 190,000 more clients: not a byte per client (ASan's quarantine holds what the exchanges
     * freed: no bound on RSS there) */
    if (px_rss_is_portico(pid))
        assert_true(rss_end - rss_warm < 2048);
    free(batch);
    /* the first was evicted long ago: admitted afresh; the last is remembered */
    assert_int_equal(get(c, "/", "127.1.0.0", NULL), 200);
    char last[32];
    int i = clients - 1;
    snprintf(last, sizeof(last), "127.%d.%d.%d", 1 + (i >> 16), (i >> 8) & 255, i & 255);
    assert_int_equal(get(c, "/", last, NULL), 429);
    raw_close(c);
    px_stop(h);
}

/* A client held at its rate (1/m, burst 4: its five taken) stays held while 40,000 other
 * clients (one request each) go through a table of 1,024 entries: 2,000 of them between each
 * two of its 20 tries, some 16 to its set of 8. The table evicts what owes the least; by LRU
 * alone it was evicted at nearly every try and started afresh each time. */
static void test_flood_keeps_held_client(void **state)
{
    (void)state;
    enum { PER_ROUND = 2000, BATCH = 200 };
    struct harness *h = start("client_limit_table = 1024\n",
                              "[route api]\nprefix = /\nupstream = s\nclient_rate = 1/m\n"
                              "client_rate_burst = 4\n");
    /* valgrind: 5 tries (10,000 others, some 20 s there), so that no minute passes and the
     * held client's next request is not due by its rate */
    const int rounds = px_under_valgrind(harness_pid(h)) ? 5 : 20;
    int64_t t0 = tu_now_ms();
    struct raw_conn *c = px_connect(h);
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(c, "/", "127.9.9.9", NULL), 200);
    size_t cap = BATCH * 96;
    char *batch = malloc(cap);
    assert_non_null(batch);
    unsigned extra = 0;
    for (int round = 0, next = 0; round < rounds; round++) {
        for (int b = 0; b < PER_ROUND / BATCH; b++) {
            size_t n = 0;
            for (int i = 0; i < BATCH; i++, next++)
                n += (size_t)snprintf(batch + n, cap - n,
                                      "GET / HTTP/1.1\r\nHost: t\r\n"
                                      "X-Forwarded-For: 127.%d.%d.%d\r\n\r\n",
                                      1 + (next >> 16), (next >> 8) & 255, next & 255);
            assert_int_equal(raw_send(c, batch, n), 0);
            for (int i = 0; i < BATCH; i++) {
                struct raw_response r;
                assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
                assert_int_equal(r.status, 200);
                raw_response_free(&r);
            }
        }
        int status = get(c, "/", "127.9.9.9", NULL);
        assert_true(status == 200 || status == 429);
        extra += status == 200;
    }
    print_message("  the held client: %u more of %d tries past its rate (%lld ms)\n", extra,
                  rounds, (long long)(tu_now_ms() - t0));
    assert_int_equal(extra, 0);
    free(batch);
    raw_close(c);
    px_stop(h);
}

/* ---- configuration ---- */

/* Each bad value is refused at its line. */
static void test_config_errors(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"                               /* 1 */
                                          "listen = 127.0.0.1:{{port:listen}}\n"    /* 2 */
                                          "client_rate = 0/s\n"                     /* 3 */
                                          "client_rate_burst = 5\n"                 /* 4 */
                                          "max_connections_per_client = -1\n"       /* 5 */
                                          "client_limit_table = 10\n"               /* 6 */
                                          "[upstream s]\norigin = sim\n"            /* 7, 8 */
                                          "[route a]\nupstream = s\nprefix = /a\n"  /* 9-11 */
                                          "client_rate = 20/x\n"                    /* 12 */
                                          "[route b]\nupstream = s\nprefix = /b\n"  /* 13-15 */
                                          "client_rate_burst = 3\n"                 /* 16 */
                                          "[route c]\nupstream = s\nprefix = /c\n"  /* 17-19 */
                                          "client_rate = 2000000/s\n"               /* 20 */
                                          "client_rate = 20/s \n"),                 /* 21 */
                     0);
    struct tu_cmd_result res = {0};
    assert_int_equal(harness_check_config(h, &res), 1);
    const char *path = harness_config_path(h);
    static const struct {
        int line;
        const char *text;
    } want[] = {
        {3, "client_rate: '0/s': must be between 1 and 1000000 requests per second (off turns it "
            "off)"},
        {4, "client_rate_burst without client_rate in [proxy]: it would limit nothing"},
        {5, "max_connections_per_client"},
        {6, "client_limit_table"},
        {12, "client_rate: '20/x' is not N/s or N/m (requests per second or minute) nor off"},
        {16, "client_rate_burst without client_rate (in [route b] or [proxy]): it would limit "
             "nothing"},
        {20, "client_rate: '2000000/s': must be between 1 and 1000000 requests per second"},
        {21, "'client_rate' set twice in this section"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        char line[1200];
        snprintf(line, sizeof(line), "%s:%d: %s", path, want[i].line, want[i].text);
        if (!tu_contains(res.err, line))
            fail_msg("no '%s' in:\n%s", line, res.err);
    }
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* A rate of more digits than the bound holds is out of bounds at its line, said with the bound,
 * in [proxy] and in a route: it read as "not N/s" (the digits past the bound were left unread). */
static void test_rate_too_large(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"                                 /* 1 */
                                          "listen = 127.0.0.1:{{port:listen}}\n"      /* 2 */
                                          "client_rate = 99999999999/s\n"             /* 3 */
                                          "[upstream s]\norigin = sim\n"              /* 4, 5 */
                                          "[route a]\nupstream = s\nprefix = /a\n"    /* 6-8 */
                                          "client_rate = 18446744073709551617/m\n"),  /* 9 */
                     0);
    struct tu_cmd_result res = {0};
    assert_int_equal(harness_check_config(h, &res), 1);
    const char *path = harness_config_path(h);
    static const struct {
        int line;
        const char *text;
    } want[] = {
        {3, "client_rate: '99999999999/s': must be between 1 and 1000000 requests per second "
            "(off turns it off)"},
        {9, "client_rate: '18446744073709551617/m': must be between 1 and 1000000 requests per "
            "minute"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        char line[1200];
        snprintf(line, sizeof(line), "%s:%d: %s", path, want[i].line, want[i].text);
        if (!tu_contains(res.err, line))
            fail_msg("no '%s' in:\n%s", line, res.err);
    }
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* Routes count apart: a client over its rate on one route is admitted on another that has a
 * rate of its own (each route is its own key in the table). */
static void test_routes_count_apart(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route a]\nprefix = /a\nupstream = s\nclient_rate = 1/m\n"
                                    "[route b]\nprefix = /\nupstream = s\nclient_rate = 1/m\n");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(get(c, "/a", NULL, NULL), 404); /* the sim's answer: admitted */
    assert_int_equal(get(c, "/a", NULL, NULL), 429);
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    raw_close(c);
    px_stop(h);
}

/* Retry-After is the wait rounded up to whole seconds, and a whole wait is not rounded further:
 * two streams read at once (one clock reading) with 1/m and no burst, the second waits exactly
 * one interval: 60, not 61. */
static void test_retry_after_whole_interval(void **state)
{
    (void)state;
    struct harness *h = start("listen = 127.0.0.1:{{port:tls}} tls\n"
                              "tls_cert = {{certs}}/server.pem\ntls_key = {{certs}}/server.key\n",
                              "[route api]\nprefix = /\nupstream = s\nclient_rate = 1/m\n");
    char port[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "tls"));
    const char *const argv[] = {"/usr/bin/python3", "tests/integration/h2_frames.py", port,
                                "heads", "/,/", NULL};
    struct tu_cmd_result res = {0};
    if (tu_run_command(argv, 20000, &res) != 0)
        fail_msg("h2_frames.py: %s%s", res.out, res.err);
    print_message("%s", res.out);
    assert_int_equal(count_of(res.out, "status=[200]"), 1);
    assert_int_equal(count_of(res.out, "status=[429]"), 1);
    assert_int_equal(count_of(res.out, "retry_after=60\n"), 1);
    tu_cmd_result_free(&res);
    px_stop(h);
}

/* [proxy]'s client_rate_burst is every route's too, with its client_rate: a route setting
 * neither admits the burst + 1 at once. */
static void test_proxy_burst_inherited(void **state)
{
    (void)state;
    struct harness *h = start("client_rate = 1/m\nclient_rate_burst = 2\n",
                              "[route rest]\nprefix = /\nupstream = s\n");
    struct raw_conn *c = px_connect(h);
    for (int i = 0; i < 3; i++)
        assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    raw_close(c);
    px_stop(h);
}

/* The unit is one letter and the value ends there: "20/sec" is refused at its line, not read
 * as 20/s. */
static void test_rate_unit_whole(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"                            /* 1 */
                                          "listen = 127.0.0.1:{{port:listen}}\n" /* 2 */
                                          "client_rate = 20/sec\n"               /* 3 */
                                          "[upstream s]\norigin = sim\n"),
                     0);
    struct tu_cmd_result res = {0};
    assert_int_equal(harness_check_config(h, &res), 1);
    char line[1200];
    snprintf(line, sizeof(line), "%s:3: client_rate: '20/sec' is not N/s or N/m",
             harness_config_path(h));
    if (!tu_contains(res.err, line))
        fail_msg("no '%s' in:\n%s", line, res.err);
    tu_cmd_result_free(&res);
    harness_free(h);
}

int main(void)
{
    tu_ignore_sigpipe();
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_429),
        cmocka_unit_test(test_429_minimal_detail),
        cmocka_unit_test(test_refill_after_interval),
        cmocka_unit_test(test_clients_apart),
        cmocka_unit_test(test_http2_streams),
        cmocka_unit_test(test_route_without_rate),
        cmocka_unit_test(test_proxy_default_and_off),
        cmocka_unit_test(test_reload_starts_afresh),
        cmocka_unit_test(test_connections_per_client),
        cmocka_unit_test(test_connections_trusted_proxy),
        cmocka_unit_test(test_connections_counted_back_to_zero),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_flood_keeps_held_client),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_rate_too_large),
        cmocka_unit_test(test_routes_count_apart),
        cmocka_unit_test(test_retry_after_whole_interval),
        cmocka_unit_test(test_proxy_burst_inherited),
        cmocka_unit_test(test_rate_unit_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
