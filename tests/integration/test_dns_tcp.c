/*
 * test_dns_tcp.c — origin names whose UDP answer is truncated (TC) are asked again over TCP
 * (README: `resolver`; upstream.c: ASKED OVER TCP). The fake DNS answers A queries with 40
 * records (all 127.0.0.1), which a 512-byte UDP reply cannot hold: it sends TC with the question
 * only, and serves the whole answer, or a misbehaviour, over TCP on the same port. The binary
 * before the change answered every row 502 dns_error ("no address, or the resolver failed
 * (SERVFAIL, REFUSED, a truncated or unreadable answer)") and never connected over TCP.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/fake_dns.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"

#define IO_MS 3000           /* bound of reads that must succeed */
#define A_RECORDS 40         /* 12 + 22 + 40 * 16 = 674 bytes: over UDP's 512 */
#define DNS_TIMEOUT_MS 300

struct tcp_row {
    const char *why;
    enum fake_dns_tcp tcp;
    bool ipv6;               /* the nameserver on [::1] */
    int status;
    const char *failure;     /* in Portico-Error; NULL: the origin's answer */
    const char *detail;      /* in the error body */
};

static const struct tcp_row tcp_rows[] = {
    /* the whole answer over TCP: the name resolves, the origin answers */
    { "answered over TCP", FAKE_DNS_TCP_ANSWER, false, 200, NULL, NULL },
    /* each answer in three reads, the first one byte of its length */
    { "answered in pieces", FAKE_DNS_TCP_PIECES, false, 200, NULL, NULL },
    /* the same nameserver address as evdns asked, IPv6 included */
    { "nameserver on ::1", FAKE_DNS_TCP_ANSWER, true, 200, NULL, NULL },
    /* connected, never answered: the owner's dns_timeout ends it, and says what was late */
    { "TCP silent", FAKE_DNS_TCP_SILENT, false, 504, "dns_timeout",
      "exceeded 300 ms over TCP (no answer from 127.0.0.1:" },
    /* nothing listens on TCP: the UDP answer's words, then why TCP gave nothing */
    { "TCP refused", FAKE_DNS_TCP_OFF, false, 502, "dns_error",
      "truncated or unreadable answer); over TCP: connect to 127.0.0.1:" },
    { "TCP closed", FAKE_DNS_TCP_CLOSE, false, 502, "dns_error",
      "closed the connection before answering" },
    /* an answer whose first record's name is a pointer to itself */
    { "TCP malformed", FAKE_DNS_TCP_MALFORMED, false, 502, "dns_error",
      "failed over TCP: answer record 1 of 40: a compression pointer that does not point back from "
      "127.0.0.1:" },
    /* ... or its last record's: the 39 addresses before it are not used either */
    { "TCP malformed last record", FAKE_DNS_TCP_MALFORMED_LAST, false, 502, "dns_error",
      "failed over TCP: answer record 40 of 40: a compression pointer that does not point back "
      "from 127.0.0.1:" },
    /* the same answer twice: the second answers no query left */
    { "TCP answer twice", FAKE_DNS_TCP_TWICE, false, 502, "dns_error",
      "to no query asked from 127.0.0.1:" },
    /* NXDOMAIN to one question, no address to the other: the name does not exist */
    { "TCP NXDOMAIN to A only", FAKE_DNS_TCP_NXDOMAIN_A, false, 502, "dns_error",
      "no such name (NXDOMAIN) from 127.0.0.1:" },
};

static struct fake_dns *dns_start(enum fake_dns_tcp tcp, bool ipv6)
{
    struct fake_dns_opts dopts = { .mode = FAKE_DNS_ANSWER, .a_records = A_RECORDS, .tcp = tcp,
                                   .ipv6 = ipv6 };
    struct fake_dns *d = fake_dns_start(&dopts);
    assert_non_null(d);
    return d;
}

static struct harness *px_start(const struct fake_dns *d, bool ipv6, uint16_t origin_port,
                                unsigned dns_timeout_ms, const char *upstream_extra,
                                const char *proxy_extra)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "resolver = %s:%u\n"
                                          "dns_timeout = %ums\n"
                                          "%s"
                                          "[upstream u]\n"
                                          "origin = many.portico.test:%u\n"
                                          "%s"
                                          "[route r]\nprefix = /\nupstream = u\n",
                                          ipv6 ? "[::1]" : "127.0.0.1", fake_dns_port(d),
                                          dns_timeout_ms, proxy_extra, origin_port,
                                          upstream_extra),
                     0);
    assert_int_equal(harness_start(h), 0);
    return h;
}

static void test_truncated_rows(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    for (size_t i = 0; i < sizeof(tcp_rows) / sizeof(tcp_rows[0]); i++) {
        const struct tcp_row *row = &tcp_rows[i];
        if (row->ipv6 && !tu_ipv6_loopback()) { /* the others still run */
            print_message("  %s: skipped: no IPv6 loopback (::1)\n", row->why);
            continue;
        }
        struct fake_dns *d = dns_start(row->tcp, row->ipv6);
        struct harness *h = px_start(d, row->ipv6, fake_origin_port(o), DNS_TIMEOUT_MS, "", "");
        struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
        assert_non_null(c);
        int64_t t0 = tu_now_ms();
        assert_int_equal(raw_send_str(c, "GET /many HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        int64_t took = tu_now_ms() - t0;
        const char *err = raw_header(&r, "Portico-Error");
        print_message("  %s: %d %s after %lld ms, %u UDP and %u TCP queries; %.*s\n", row->why,
                      r.status, err ? err : "-", (long long)took, fake_dns_queries(d),
                      fake_dns_tcp_queries(d), r.body ? (int)r.body_len : 0,
                      r.body ? r.body : "");
        assert_int_equal(r.status, row->status);
        if (row->failure) {
            assert_non_null(err);
            assert_non_null(strstr(err, row->failure));
            assert_non_null(r.body);
            assert_non_null(strstr(r.body, "resolving many.portico.test "));
            assert_non_null(strstr(r.body, row->detail));
        } else {
            assert_null(err);
        }
        if (row->tcp != FAKE_DNS_TCP_OFF) /* A and AAAA, on one connection */
            assert_int_equal(fake_dns_wait_tcp_queries(d, row->tcp == FAKE_DNS_TCP_CLOSE ? 1 : 2,
                                                       IO_MS),
                             0);
        if (row->status == 504) /* the owner's timer ended it, no sooner */
            assert_true(took >= DNS_TIMEOUT_MS);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(harness_stop(h), 0);
        harness_free(h);
        fake_dns_stop(d);
    }
    fake_origin_stop(o);
}

/* The client leaves while the name is asked over TCP: the lookup is cancelled with the
 * exchange (its connection to the nameserver closed, nothing leaked: ASan's leak check runs at
 * Portico's exit, which harness_stop requires to be 0). */
static void test_cancel_mid_tcp(void **state)
{
    (void)state;
    struct fake_dns *d = dns_start(FAKE_DNS_TCP_SILENT, false);
    struct harness *h = px_start(d, false, 1, 5000, "",
                                 "admin_listen = 127.0.0.1:{{port:admin}}\n");
    struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET /gone HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(fake_dns_wait_tcp_queries(d, 2, IO_MS), 0);
    raw_close(c);
    assert_int_equal(fake_dns_wait_tcp_closed(d, IO_MS), 0);
    assert_true(scrape_metric(harness_port(h, "admin"),
                              "portico_dns_tcp_lookups_total{result=\"cancelled\"}", IO_MS) == 1);
    assert_int_equal(harness_stop(h), 0);
    assert_true(harness_file_contains(h, "access.log", "\"path\":\"/gone\""));
    assert_true(harness_file_contains(h, "access.log", "\"status\":499"));
    harness_free(h);
    fake_dns_stop(d);
}

/* A health check of the name meets the same: its failure says the TCP answer was late (and the
 * lookup is cancelled with the check). A check's timeout may be shorter than the nameserver
 * takes: a request after it still asks over TCP, and waits its own dns_timeout for the answer,
 * rather than being told the name was asked in vain. */
static void test_health_check_over_tcp(void **state)
{
    (void)state;
    struct fake_dns *d = dns_start(FAKE_DNS_TCP_SILENT, false);
    struct harness *h = px_start(d, false, 1, 600,
                                 "health_check = GET /healthz every 1s expect 200 timeout 200ms "
                                 "fall 100\n",
                                 "");
    const char *why = "failed its health check (resolving many.portico.test exceeded 200 ms over "
                      "TCP (no answer from 127.0.0.1:";
    if (harness_wait_log(h, why, IO_MS) != 0) {
        char *err = harness_stderr(h);
        fail_msg("no \"%s\" in:\n%s", why, err ? err : "");
    }
    struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    print_message("  after the check: %d %.*s\n", r.status, r.body ? (int)r.body_len : 0,
                  r.body ? r.body : "");
    assert_int_equal(r.status, 504);
    assert_non_null(r.body);
    assert_non_null(strstr(r.body, "exceeded 600 ms over TCP (no answer from 127.0.0.1:"));
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_dns_stop(d);
}

/* Portico stops, or reloads, while names are asked over TCP (a health check's too): the lookups
 * go with their exchanges when the drain cuts them (shutdown_timeout = 0), nothing is leaked
 * (ASan's leak check at exit) and no connection to the nameserver stays open. */
static void test_stop_and_reload_mid_tcp(void **state)
{
    (void)state;
    for (int reload = 0; reload < 2; reload++) {
        struct fake_dns *d = dns_start(FAKE_DNS_TCP_SILENT, false);
        struct harness *h = px_start(d, false, 1, 5000,
                                     "health_check = GET /healthz every 5s expect 200 timeout 5s\n",
                                     "shutdown_timeout = 0\n");
        struct raw_conn *c[3];
        for (int i = 0; i < 3; i++) {
            c[i] = raw_connect(harness_port(h, "listen"), IO_MS);
            assert_non_null(c[i]);
            assert_int_equal(raw_send_str(c[i], "GET /mid HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        }
        /* three requests and the health check, A and AAAA each */
        assert_int_equal(fake_dns_wait_tcp_queries(d, 8, IO_MS), 0);
        if (reload) {
            assert_int_equal(harness_signal(h, SIGHUP), 0);
            for (int i = 0; i < 3; i++) /* the old worker's drain cuts them */
                assert_int_equal(raw_wait_closed(c[i], IO_MS), 1);
        }
        assert_int_equal(harness_stop(h), 0);
        assert_int_equal(fake_dns_wait_tcp_closed(d, IO_MS), 0);
        for (int i = 0; i < 3; i++)
            raw_close(c[i]);
        harness_free(h);
        fake_dns_stop(d);
    }
}

/* A lookup over TCP that gave nothing better than the UDP failure. */
struct vain_row {
    const char *why;
    enum fake_dns_mode mode;     /* what UDP (and TCP) answers */
    enum fake_dns_tcp tcp;
    int first_status;            /* the first request's, which asks over TCP */
    const char *first_detail;
    const char *first_result;    /* its portico_dns_tcp_lookups_total{result} */
};

static const struct vain_row vain_rows[] = {
    /* a name that fails (its authoritative servers down): SERVFAIL over TCP too */
    { "SERVFAIL over TCP too", FAKE_DNS_SERVFAIL, FAKE_DNS_TCP_ANSWER, 502,
      "failed over TCP: the resolver answered SERVFAIL from 127.0.0.1:", "answered" },
    /* a nameserver without TCP */
    { "TCP refused", FAKE_DNS_ANSWER, FAKE_DNS_TCP_OFF, 502, "over TCP: connect to 127.0.0.1:",
      "failed" },
    /* a nameserver whose TCP port drops everything: the first request waits dns_timeout */
    { "TCP silent", FAKE_DNS_ANSWER, FAKE_DNS_TCP_SILENT, 504, "over TCP (no answer from ",
      "timeout" },
};

#define VAIN_REQUESTS 4

/* A name asked over TCP in vain (the nameserver failed there too, has no TCP, or never answered
 * it) is not asked over TCP again for the upstream's down_time: its later requests get the UDP
 * failure at once, saying why TCP was not asked. The binary before asked over TCP for every
 * request: 4 TCP lookups (8 queries) for 4 requests of a name that SERVFAILs, and each request
 * to a nameserver dropping TCP waited a whole dns_timeout (4 x 504). */
static void test_tcp_in_vain_not_asked_again(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vain_rows) / sizeof(vain_rows[0]); i++) {
        const struct vain_row *row = &vain_rows[i];
        struct fake_dns_opts dopts = { .mode = row->mode, .a_records = A_RECORDS,
                                       .tcp = row->tcp };
        struct fake_dns *d = fake_dns_start(&dopts);
        assert_non_null(d);
        struct harness *h = px_start(d, false, 1, DNS_TIMEOUT_MS, "down_time = 1h\n",
                                     "admin_listen = 127.0.0.1:{{port:admin}}\n");
        struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
        assert_non_null(c);
        for (int n = 0; n < VAIN_REQUESTS; n++) {
            assert_int_equal(raw_send_str(c, "GET /vain HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
            struct raw_response r;
            assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
            const char *err = raw_header(&r, "Portico-Error");
            print_message("  %s, request %d: %d %s, %u TCP queries; %.*s\n", row->why, n + 1,
                          r.status, err ? err : "-", fake_dns_tcp_queries(d),
                          r.body ? (int)r.body_len : 0, r.body ? r.body : "");
            assert_non_null(r.body);
            if (n == 0) {
                assert_int_equal(r.status, row->first_status);
                assert_non_null(strstr(r.body, row->first_detail));
            } else {
                assert_int_equal(r.status, 502);
                assert_non_null(strstr(err, "dns_error"));
                assert_non_null(strstr(r.body, "; over TCP: asked in vain within down_time"));
            }
            raw_response_free(&r);
        }
        /* one lookup over TCP: its A and AAAA queries (the one refused: none) */
        assert_int_equal(fake_dns_tcp_queries(d), row->tcp == FAKE_DNS_TCP_OFF ? 0 : 2);
        /* counted: the first as it ended, the others skipped */
        char series[100];
        snprintf(series, sizeof(series), "portico_dns_tcp_lookups_total{result=\"%s\"}",
                 row->first_result);
        assert_true(scrape_metric(harness_port(h, "admin"), series, IO_MS) == 1);
        assert_true(scrape_metric(harness_port(h, "admin"),
                                  "portico_dns_tcp_lookups_total{result=\"skipped\"}",
                                  IO_MS) == VAIN_REQUESTS - 1);
        raw_close(c);
        assert_int_equal(harness_stop(h), 0);
        harness_free(h);
        fake_dns_stop(d);
    }
}

/* A name whose lookup over TCP fails (refused: dns_error; silent: dns_timeout) is a failure
 * before anything reached the origin: retries tries the next origin, which answers. */
static void test_retry_after_tcp_failure(void **state)
{
    (void)state;
    static const enum fake_dns_tcp modes[] = { FAKE_DNS_TCP_OFF, FAKE_DNS_TCP_SILENT };
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct fake_dns *d = dns_start(modes[i], false);
        char extra[100];
        snprintf(extra, sizeof(extra), "origin = 127.0.0.1:%u\nretries = 1\n",
                 fake_origin_port(o));
        struct harness *h = px_start(d, false, 1, DNS_TIMEOUT_MS, extra, "");
        struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
        assert_non_null(c);
        assert_int_equal(raw_send_str(c, "GET /retry HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(harness_stop(h), 0);
        assert_true(harness_file_contains(h, "access.log", "\"status\":200"));
        assert_true(harness_file_contains(h, "access.log", "\"attempts\":2"));
        harness_free(h);
        fake_dns_stop(d);
    }
    fake_origin_stop(o);
}

/* Runs Portico with /etc/resolv.conf replaced, in a mount namespace of its own, by the file
 * resolv.conf of h's directory (the nameservers a test lists). false: this host cannot (not
 * root, no unshare). */
static bool own_resolv_conf(struct harness *h, const char *bin)
{
    if (geteuid() != 0 || system("unshare -m --propagation private true 2>/dev/null") != 0)
        return false;
    char script[PATH_MAX + 600];
    snprintf(script, sizeof(script),
             "#!/bin/sh\nexec unshare -m --propagation private sh -c "
             "'mount --bind %s/resolv.conf /etc/resolv.conf && exec \"$0\" \"$@\"' %s \"$@\"\n",
             harness_dir(h), bin);
    assert_int_equal(harness_write_file(h, "portico.sh", script), 0);
    static char path[PATH_MAX]; /* harness_set_bin borrows it */
    snprintf(path, sizeof(path), "%s/portico.sh", harness_dir(h));
    assert_int_equal(chmod(path, 0755), 0);
    harness_set_bin(h, path);
    return true;
}

/* Of two nameservers in resolv.conf, the first dead (it answers neither UDP nor TCP) and the
 * second giving the name's 40 addresses over TCP: the name is asked over TCP of the nameserver
 * evdns asked last (the one that answered), not of the head of its ring, which is the one after
 * it: the dead one. The first request loses 9/10 of dns_timeout to the dead one's silence over
 * UDP (evdns then marks it failed and skips it); the others, each resolving anew (keepalive 0),
 * must be answered. The binary before asked the dead one over TCP every time: 3 x 504
 * dns_timeout. down_time 1ms: a first request late over TCP does not keep the others off TCP. */
static void test_tcp_asks_the_nameserver_that_answered(void **state)
{
    (void)state;
    struct fake_dns_opts dead_opts = { .mode = FAKE_DNS_SILENT, .tcp = FAKE_DNS_TCP_SILENT };
    struct fake_dns *dead = fake_dns_start(&dead_opts);
    struct fake_dns *live = dns_start(FAKE_DNS_TCP_ANSWER, false);
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(dead);
    assert_non_null(o);
    struct harness *h = harness_new();
    assert_non_null(h);
    const char *bin = getenv("PORTICO_BIN") ? getenv("PORTICO_BIN") : "build/portico";
    char abs_bin[PATH_MAX];
    assert_non_null(realpath(bin, abs_bin));
    if (!own_resolv_conf(h, abs_bin)) {
        print_message("  skipped: no mount namespace here (needs root and unshare)\n");
        harness_free(h);
        fake_origin_stop(o);
        fake_dns_stop(live);
        fake_dns_stop(dead);
        skip();
    }
    char conf[200];
    snprintf(conf, sizeof(conf), "nameserver 127.0.0.1:%u\nnameserver 127.0.0.1:%u\n",
             fake_dns_port(dead), fake_dns_port(live));
    assert_int_equal(harness_write_file(h, "resolv.conf", conf), 0);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\n"
                                          "dns_timeout = 400ms\n"
                                          "[upstream u]\n"
                                          "origin = many.portico.test:%u\n"
                                          "keepalive = 0\n"
                                          "down_time = 1ms\n"
                                          "[route r]\nprefix = /\nupstream = u\n",
                                          fake_origin_port(o)),
                     0);
    assert_int_equal(harness_start(h), 0);
    struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(c);
    for (int n = 0; n < 3; n++) {
        assert_int_equal(raw_send_str(c, "GET /two HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        const char *err = raw_header(&r, "Portico-Error");
        print_message("  request %d: %d %s; %u TCP queries to the dead one, %u to the live one\n",
                      n + 1, r.status, err ? err : "-", fake_dns_tcp_queries(dead),
                      fake_dns_tcp_queries(live));
        if (n > 0)
            assert_int_equal(r.status, 200);
        raw_response_free(&r);
    }
    assert_int_equal(fake_dns_tcp_queries(dead), 0);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
    fake_dns_stop(live);
    fake_dns_stop(dead);
}

#define FLOOD_CLIENTS 40 /* at once, each to a name the nameserver never answers over TCP */
#define TCP_INFLIGHT_MAX 16 /* dns_tcp.c's DNS_TCP_INFLIGHT_MAX (one worker) */

/* Lookups over TCP at once are bounded per worker: a flood of requests for a name that fails
 * does not open a connection to the nameserver for each. Past the bound the UDP answer's
 * failure stands at once (502 dns_error); the others wait for dns_timeout (504). The binary
 * before opened 40 connections and answered 40 x 504. */
static void test_tcp_lookups_bounded(void **state)
{
    (void)state;
    struct fake_dns *d = dns_start(FAKE_DNS_TCP_SILENT, false);
    struct harness *h = px_start(d, false, 1, DNS_TIMEOUT_MS, "", "");
    struct raw_conn *c[FLOOD_CLIENTS];
    for (int i = 0; i < FLOOD_CLIENTS; i++) {
        c[i] = raw_connect(harness_port(h, "listen"), IO_MS);
        assert_non_null(c[i]);
        assert_int_equal(raw_send_str(c[i], "GET /many HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    }
    unsigned timeouts = 0, errors = 0;
    for (int i = 0; i < FLOOD_CLIENTS; i++) {
        struct raw_response r;
        assert_int_equal(raw_read_response(c[i], &r, IO_MS), 0);
        timeouts += r.status == 504;
        errors += r.status == 502;
        raw_response_free(&r);
        raw_close(c[i]);
    }
    print_message("  %u x 504, %u x 502, %u TCP queries\n", timeouts, errors,
                  fake_dns_tcp_queries(d));
    assert_int_equal(timeouts + errors, FLOOD_CLIENTS);
    if (timeouts > TCP_INFLIGHT_MAX || fake_dns_tcp_queries(d) > 2 * TCP_INFLIGHT_MAX)
        fail_msg("%u lookups waited over TCP (%u queries); at most %u at once", timeouts,
                 fake_dns_tcp_queries(d), TCP_INFLIGHT_MAX);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_dns_stop(d);
}

#define GIVEN_BACK_LOOKUPS (TCP_INFLIGHT_MAX + 2)

/* Each lookup over TCP gives its place back when it ends: one after another, more of them than
 * may run at once are each asked over TCP and answered (no pooling: every request resolves). */
static void test_tcp_lookups_given_back(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct fake_dns *d = dns_start(FAKE_DNS_TCP_ANSWER, false);
    struct harness *h = px_start(d, false, fake_origin_port(o), DNS_TIMEOUT_MS, "keepalive = 0\n",
                                 "");
    struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(c);
    for (int i = 0; i < GIVEN_BACK_LOOKUPS; i++) {
        assert_int_equal(raw_send_str(c, "GET /many HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        if (r.status != 200)
            fail_msg("lookup %d: %d %.*s", i + 1, r.status, r.body ? (int)r.body_len : 0,
                     r.body ? r.body : "");
        raw_response_free(&r);
    }
    assert_int_equal(fake_dns_tcp_queries(d), 2 * GIVEN_BACK_LOOKUPS);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_dns_stop(d);
    fake_origin_stop(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_rows),
        cmocka_unit_test(test_cancel_mid_tcp),
        cmocka_unit_test(test_health_check_over_tcp),
        cmocka_unit_test(test_tcp_lookups_bounded),
        cmocka_unit_test(test_tcp_lookups_given_back),
        cmocka_unit_test(test_stop_and_reload_mid_tcp),
        cmocka_unit_test(test_tcp_in_vain_not_asked_again),
        cmocka_unit_test(test_retry_after_tcp_failure),
        cmocka_unit_test(test_tcp_asks_the_nameserver_that_answered),
    };
    tu_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
