/*
 * test_diag.c — issue 9's diagnostics end to end against the real binary: the JSON access log
 * (a success with every field, each failure type, a client that leaves: 499 with its phase),
 * timings that add up, trace context kept or started, /metrics line by line with exact increases
 * (and admin traffic counted nowhere), /status parsed (a failure a fault rule simulated named
 * there as in the access log), Server-Timing on proxied responses per route, and
 * error_detail = minimal.
 *
 * Every log line and /status is parsed by a strict JSON reader (tests/support/json.h) before a
 * field is looked at. The failure cases use the fake origins of tests/support (as
 * test_failures.c does for the statuses); connect_unreachable plays an ICMP router with raw
 * sockets (tests/support/misbehave.h) and is skipped with a message without CAP_NET_RAW.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>

#include <cmocka.h>

#include "../support/fake_dns.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/misbehave.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define BIG_BODY (16 * 1024 * 1024)

/* ---- the origins: tests/support/misbehave.h ---- */

static struct mb_world w;

static int world_up(void **state)
{
    (void)state;
    return mb_world_start(&w, "hello, diagnostics\n", NULL, 0);
}

static int world_down(void **state)
{
    (void)state;
    mb_world_stop(&w);
    return 0;
}

/* ---- the cases: one route and upstream each ---- */

struct dcase {
    const char *name;          /* route /name/, upstream name */
    enum mb_origin origin;
    const char *host;          /* resolved through the fake DNS; NULL: 127.0.0.1 */
    int dns_mode;              /* -1: DNS not used */
    const char *extra;         /* more [upstream] lines */
    const char *failure;       /* expected "failure" (NULL: success) */
    const char *phase;         /* expected "phase" */
    int status;                /* standard profile */
    int limit_ms;              /* expected limit_ms, 0: null */
    enum mb_how how;
};

static const struct dcase cases[] = {
    {"ok", MB_OK, NULL, -1, "", NULL, "done", 200, 0, MB_GET},
    {"dns_error", MB_OK, "nx.portico.test", FAKE_DNS_NXDOMAIN, "", "dns_error", "dns", 502, 0,
     MB_GET},
    {"dns_timeout", MB_OK, "slow.portico.test", FAKE_DNS_SILENT, "dns_timeout = 200ms\n",
     "dns_timeout", "dns", 504, 200, MB_GET},
    {"refused", MB_REFUSE, NULL, -1, "", "connect_refused", "connect", 502, 0, MB_GET},
    {"blackhole", MB_BLACKHOLE, NULL, -1, "connect_timeout = 200ms\n", "connect_timeout",
     "connect", 504, 200, MB_GET},
    {"tls_garbage", MB_TLS_GARBAGE, NULL, -1, MB_CONF_TLS_CA, "tls_handshake_failed", "tls", 502,
     0, MB_GET},
    {"tls_silent", MB_TLS_SILENT, NULL, -1, MB_CONF_TLS_CA "tls_timeout = 200ms\n",
     "tls_handshake_timeout", "tls", 504, 200, MB_GET},
    {"cert_self", MB_CERT_SELF, NULL, -1, MB_CONF_TLS_CA, "tls_certificate_invalid", "tls", 502,
     0, MB_GET},
    {"send_timeout", MB_NO_READ, NULL, -1, "send_timeout = 250ms\n", "send_timeout", "send", 504,
     250, MB_BODY},
    {"send_error", MB_RST_AFTER_HEAD, NULL, -1, "", "send_error", "send", 502, 0, MB_BODY},
    {"silent", MB_SILENT, NULL, -1, "first_byte_timeout = 200ms\n", "first_byte_timeout",
     "first_byte", 504, 200, MB_GET},
    {"partial", MB_PARTIAL_HEAD, NULL, -1, "read_timeout = 200ms\n", "read_timeout", "read", 504,
     200, MB_GET},
    {"close", MB_CLOSE_EMPTY, NULL, -1, "", "empty_response", "first_byte", 502, 0, MB_GET},
    {"reset", MB_RESET, NULL, -1, "", "connection_reset", "first_byte", 502, 0, MB_GET},
    {"garbage", MB_GARBAGE, NULL, -1, "", "invalid_response", "read", 502, 0, MB_GET},
    {"total", MB_SILENT, NULL, -1, "total_timeout = 200ms\nfirst_byte_timeout = 2s\n",
     "total_timeout", "first_byte", 504, 200, MB_GET},
    {"down", MB_REFUSE, NULL, -1, "max_fails = 1\nfail_timeout = 1m\n", "no_healthy_origin",
     "route", 503, 0, MB_TWICE},
    {"unreachable", MB_UNREACH, NULL, -1, "", "connect_unreachable", "connect", 502, 0, MB_ICMP},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* The configuration: one route per case, `server_timing = on` on /ok/ only, /abort/, and
 * /cont/ (to the ok origin) answering Expect: 100-continue itself. */
static struct harness *start(const char *proxy_extra)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = mb_conf_open(&text, &len, fake_dns_port(w.dns), proxy_extra);
    assert_non_null(f);
    fputc('\n', f);
    for (size_t i = 0; i < NCASES; i++) {
        const struct dcase *c = &cases[i];
        mb_conf_case(f, c->name, c->host, w.port[c->origin], c->extra);
        fprintf(f, "%s\n", i == 0 ? "server_timing = on\n" : "");
    }
    fprintf(f, "[route plain]\nprefix = /plain/\nupstream = ok\n"
               "[upstream hang]\norigin = 127.0.0.1:%u\n[route abort]\nprefix = /abort/\n"
               "upstream = hang\n[route cont]\nprefix = /cont/\nupstream = ok\n"
               "expect = synthesize\n", w.port[MB_SILENT]);
    fclose(f);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, "%s", text), 0);
    free(text);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* Sends one request for a case; returns the response (caller frees). */
static void request(struct harness *h, const struct dcase *c, struct raw_response *r)
{
    char req[512];
    if (c->how == MB_BODY)
        snprintf(req, sizeof(req), "POST /%s/x HTTP/1.1\r\nHost: diag.test\r\nUser-Agent: "
                 "diag-test/1\r\nContent-Length: %d\r\n\r\n", c->name, BIG_BODY);
    else
        snprintf(req, sizeof(req), "GET /%s/x?q=1 HTTP/1.1\r\nHost: diag.test\r\nUser-Agent: "
                 "diag-test/1\r\nAccept: application/json\r\nConnection: close\r\n\r\n", c->name);
    const struct mb_request mr = {req, c->how, BIG_BODY, w.port[c->origin], PX_IO_MS};
    struct raw_conn *conn = px_connect_port(harness_port(h, "listen"));
    struct mb_reply rep;
    if (mb_provoke(conn, &mr, &rep) != 0)
        fail_msg("%s: no response: %s", c->name, rep.r.error);
    *r = rep.r;
    /* Its close comes after it is counted, its answer may not (ds_sent_none): /metrics or
     * /status, served by worker 0, could otherwise miss the count of another worker. */
    assert_int_equal(raw_wait_closed(conn, PX_IO_MS), 1);
    raw_close(conn);
}

/* The access-log line holding `"request_id":"rid"`, parsed (the test fails if it is not JSON).
 * Most tests read it once Portico has stopped: a worker writes its buffered lines once a second
 * and when it exits, so a wait for each line right after its request costs up to a second. */
static struct tj *log_entry(struct harness *h, const char *rid)
{
    char needle[128], err[128];
    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", rid);
    char *line = px_log_line(h, needle);
    struct tj *j = tj_parse(line, err, sizeof(err));
    if (!j || j->type != TJ_OBJECT)
        fail_msg("access-log line is not a JSON object (%s): %s", err, line);
    free(line);
    return j;
}

/* A pause between two looks at a figure the admin endpoint serves (polled: not a sync on time). */
static void poll_pause(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void expect_type(const struct tj *j, const char *key, enum tj_type t, bool or_null)
{
    const struct tj *m = tj_get(j, key);
    if (!m)
        fail_msg("access-log field %s missing", key);
    if (m->type != t && !(or_null && m->type == TJ_NULL))
        fail_msg("access-log field %s has JSON type %d", key, (int)m->type);
}

/* Every field of the issue, with its type; the phases of timing_ms never add up past total. */
static void check_shape(const struct tj *j)
{
    static const char *const strings[] = {"time", "request_id", "trace_id", "client", "method",
                                          "host", "path", "proto", "phase"};
    static const char *const maybe_strings[] = {"failure", "route", "upstream", "origin",
                                                "fault", "user_agent", "forwarded_for", "detail",
                                                "peer"};
    for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
        expect_type(j, strings[i], TJ_STRING, false);
    for (size_t i = 0; i < ARRAY_SIZE(maybe_strings); i++)
        expect_type(j, maybe_strings[i], TJ_STRING, true);
    expect_type(j, "status", TJ_NUMBER, false);
    expect_type(j, "upstream_status", TJ_NUMBER, true);
    expect_type(j, "attempts", TJ_NUMBER, false);
    expect_type(j, "bytes_in", TJ_NUMBER, false);
    expect_type(j, "bytes_out", TJ_NUMBER, false);
    expect_type(j, "interim", TJ_ARRAY, false);
    expect_type(j, "timing_ms", TJ_OBJECT, false);
    /* RFC 3339 with milliseconds, UTC */
    const char *t = tj_str(j, "time");
    assert_int_equal(strlen(t), 24);
    assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
    assert_int_equal(strspn(tj_str(j, "trace_id"), "0123456789abcdef"), 32);
    assert_non_null(strstr(tj_str(j, "client"), "127.0.0.1:"));
    assert_int_equal(tj_get(j, "peer")->type, TJ_NULL); /* no real_ip: the peer is the client */
    double total = -1, sum = 0;
    const struct tj *tm = tj_get(j, "timing_ms");
    for (size_t i = 0; i < tm->n; i++) {
        const struct tj *p = tm->items[i];
        assert_int_equal(p->type, TJ_NUMBER);
        assert_true(p->number >= 0);
        if (strcmp(p->key, "total") == 0)
            total = p->number;
        else
            sum += p->number;
    }
    assert_true(total >= 0);
    if (sum > total + 0.0015) /* three decimals each: rounding only */
        fail_msg("phases add up to %.3f ms, more than total %.3f ms", sum, total);
}

/* The phases an exchange walked are in timing_ms; those it never entered are absent. */
static void check_phases(const struct tj *j, const char *const *present, size_t n)
{
    const struct tj *tm = tj_get(j, "timing_ms");
    size_t want = n + 1; /* + total */
    for (size_t i = 0; i < n; i++)
        if (!tj_get(tm, present[i]))
            fail_msg("timing_ms lacks %s", present[i]);
    assert_int_equal(tm->n, want);
}

static void test_access_log_success(void **state)
{
    (void)state;
    struct harness *h = start("");
    struct raw_response r;
    request(h, &cases[0], &r);
    assert_int_equal(r.status, 200);
    /* server_timing = on: the proxied response says where the time went */
    const char *st = raw_header(&r, "Server-Timing");
    assert_non_null(st);
    assert_non_null(strstr(st, "connect;dur="));
    assert_non_null(strstr(st, "first_byte;dur="));
    char rid[48];
    snprintf(rid, sizeof(rid), "%s", raw_header(&r, "X-Request-Id"));
    raw_response_free(&r);

    /* a route without server_timing: no Server-Timing on its proxied responses */
    struct dcase plain = cases[0];
    plain.name = "plain";
    request(h, &plain, &r);
    assert_int_equal(r.status, 200);
    assert_null(raw_header(&r, "Server-Timing"));
    raw_response_free(&r);
    assert_int_equal(harness_stop(h), 0);

    /* the access-log line, complete once Portico has stopped (see log_entry) */
    struct tj *j = log_entry(h, rid);
    check_shape(j);
    double v;
    assert_string_equal(tj_str(j, "method"), "GET");
    assert_string_equal(tj_str(j, "host"), "diag.test");
    assert_string_equal(tj_str(j, "path"), "/ok/x?q=1");
    assert_string_equal(tj_str(j, "proto"), "HTTP/1.1");
    assert_int_equal(tj_num(j, "status", &v), 0);
    assert_int_equal((int)v, 200);
    assert_int_equal(tj_num(j, "upstream_status", &v), 0);
    assert_int_equal((int)v, 200);
    assert_true(tj_is_null(j, "failure"));
    assert_string_equal(tj_str(j, "phase"), "done");
    assert_string_equal(tj_str(j, "route"), "ok");
    assert_string_equal(tj_str(j, "upstream"), "ok");
    char origin[64];
    snprintf(origin, sizeof(origin), "127.0.0.1:%u", w.port[MB_OK]);
    assert_string_equal(tj_str(j, "origin"), origin);
    assert_int_equal(tj_num(j, "attempts", &v), 0);
    assert_int_equal((int)v, 1);
    assert_int_equal(tj_num(j, "bytes_in", &v), 0);
    assert_int_equal((int)v, 0);
    assert_int_equal(tj_num(j, "bytes_out", &v), 0);
    assert_int_equal((size_t)v, strlen("hello, diagnostics\n"));
    assert_int_equal(tj_get(j, "interim")->n, 0);
    assert_true(tj_is_null(j, "fault"));
    assert_string_equal(tj_str(j, "user_agent"), "diag-test/1");
    static const char *const walked[] = {"connect", "send", "first_byte", "body"};
    check_phases(j, walked, ARRAY_SIZE(walked));
    tj_free(j);
    harness_free(h);
}

/* Each failure type: its JSON line names the failure, the phase it happened in, the status,
 * no upstream status, the limit that expired and a detail; timings add up. */
static void test_access_log_failures(void **state)
{
    (void)state;
    struct harness *h = start("");
    char rids[NCASES][48] = {{0}}; /* "": the case was skipped */
    for (size_t i = 1; i < NCASES; i++) {
        const struct dcase *c = &cases[i];
        struct raw_response r;
        if (c->how == MB_ICMP && !mb_icmp_available(w.port[MB_UNREACH])) {
            print_message("  %-12s SKIPPED: no raw sockets (CAP_NET_RAW)\n", c->name);
            continue;
        }
        if (c->dns_mode >= 0)
            fake_dns_set_mode(w.dns, (enum fake_dns_mode)c->dns_mode);
        if (c->how == MB_TWICE) { /* the failure that marks the only origin down */
            request(h, c, &r);
            assert_int_equal(r.status, 502);
            raw_response_free(&r);
        }
        print_message("  %-12s %s\n", c->name, c->failure);
        request(h, c, &r);
        if (r.status != c->status)
            fail_msg("%s: status %d, expected %d", c->name, r.status, c->status);
        assert_non_null(raw_header(&r, "X-Request-Id"));
        snprintf(rids[i], sizeof(rids[i]), "%s", raw_header(&r, "X-Request-Id"));
        raw_response_free(&r);
    }
    fake_dns_set_mode(w.dns, FAKE_DNS_ANSWER);
    assert_int_equal(harness_stop(h), 0);

    for (size_t i = 1; i < NCASES; i++) {
        const struct dcase *c = &cases[i];
        if (!rids[i][0])
            continue;
        struct tj *j = log_entry(h, rids[i]);
        check_shape(j);
        double v;
        assert_int_equal(tj_num(j, "status", &v), 0);
        assert_int_equal((int)v, c->status);
        if (!tj_str(j, "failure") || strcmp(tj_str(j, "failure"), c->failure) != 0)
            fail_msg("%s: failure %s, expected %s", c->name, tj_str(j, "failure"), c->failure);
        if (strcmp(tj_str(j, "phase"), c->phase) != 0)
            fail_msg("%s: phase %s, expected %s", c->name, tj_str(j, "phase"), c->phase);
        assert_true(tj_is_null(j, "upstream_status"));
        assert_string_equal(tj_str(j, "route"), c->name);
        assert_non_null(tj_str(j, "detail"));
        if (c->limit_ms) {
            assert_int_equal(tj_num(j, "limit_ms", &v), 0);
            assert_int_equal((int)v, c->limit_ms);
            /* the phase that timed out lasted at least its limit */
            const char *slot = strcmp(c->phase, "read") == 0 ? "body" : c->phase;
            if (strcmp(c->failure, "total_timeout") != 0) {
                assert_int_equal(tj_num(tj_get(j, "timing_ms"), slot, &v), 0);
                assert_true(v >= c->limit_ms);
            }
            assert_int_equal(tj_num(tj_get(j, "timing_ms"), "total", &v), 0);
            assert_true(v >= c->limit_ms);
        } else {
            assert_true(tj_is_null(j, "limit_ms"));
        }
        if (c->how == MB_TWICE)
            assert_true(tj_is_null(j, "origin")); /* no origin was chosen */
        tj_free(j);
    }
    harness_free(h);
}

/* A client that leaves while the origin is silent: 499, in phase first_byte, no failure. */
static void test_access_log_client_abort(void **state)
{
    (void)state;
    struct harness *h = start("");
    unsigned before = fake_origin_requests(w.origin[MB_SILENT]);
    struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
    assert_int_equal(raw_send_str(c, "GET /abort/x HTTP/1.1\r\nHost: a\r\n"
                                     "X-Request-Id: diag-abort-1\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_requests(w.origin[MB_SILENT], before + 1, PX_IO_MS), 0);
    raw_close(c);
    struct tj *j = log_entry(h, "diag-abort-1");
    check_shape(j);
    double v;
    assert_int_equal(tj_num(j, "status", &v), 0);
    assert_int_equal((int)v, 499);
    assert_string_equal(tj_str(j, "phase"), "first_byte");
    assert_true(tj_is_null(j, "failure"));
    assert_true(tj_is_null(j, "upstream_status"));
    tj_free(j);
    px_stop(h);
}

/* A client that leaves while its request head is coming in is logged as 499 at client_header
 * (README: "the phase a leaving client was in (client_header, ...)") and counted as a client
 * abort: it left no line and no count at all. Empty lines before a request, and a connection
 * that sent nothing, are no request. */
static void test_access_log_client_leaves_mid_head(void **state)
{
    (void)state;
    struct harness *h = start("");
    static const char *const sends[] = {
        "GET /plain/mid-head HTTP/1.1\r\nHost: a\r\n", /* a request begun */
        "\r\n\r\n",                                   /* empty lines only */
        "",                                           /* nothing */
    };
    for (size_t i = 0; i < ARRAY_SIZE(sends); i++) {
        struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
        if (sends[i][0])
            assert_int_equal(raw_send_str(c, sends[i]), 0);
        raw_close(c);
    }
    /* counted once Portico has seen the client go: awaited, then exactly one; the line is
     * read once Portico has stopped (complete then, without the worker's once-a-second write) */
    assert_true(scrape_wait(harness_port(h, "admin"), "portico_client_aborts_total", 1,
                            PX_IO_MS) == 1);
    assert_int_equal(harness_stop(h), 0);
    char *line = px_log_line(h, "\"status\":499");
    char err[128];
    struct tj *j = tj_parse(line, err, sizeof(err));
    if (!j)
        fail_msg("not JSON (%s): %s", err, line);
    assert_true(tj_is_null(j, "method") && tj_is_null(j, "proto"));
    assert_string_equal(tj_str(j, "phase"), "client_header");
    assert_string_equal(tj_str(j, "detail"), "client closed the connection");
    tj_free(j);
    free(line);
    char path[512];
    snprintf(path, sizeof(path), "%s/access.log", harness_dir(h));
    size_t len = 0;
    char *text = tu_read_file(path, &len);
    assert_non_null(text);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 1); /* the one request begun; nothing for the other two */
    free(text);
    harness_free(h);
}

/* The origin's head and 3 of its 10 body bytes, sent before it reads the request body. */
static const struct fo_step head_then_wait[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
    FO_END(),
};

/* A request body that stalls while the origin waits for it: the 408's line names the phase the
 * exchange was in (send), as for a client that leaves there; it said done. */
static void test_body_stall_phase(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), "client_body_timeout = 200ms");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: "
                                     "diag-stall-send\r\nContent-Length: 100\r\n\r\nabc"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 408);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line_for_id(h, "diag-stall-send");
    if (!strstr(line, " phase=send "))
        fail_msg("the 408 of a body stalled while the origin waited is not in send: %s", line);
    free(line);
    harness_free(h);
    fake_origin_stop(o);
}

/* A request body that stalls after the origin's head went to the client: the response is cut
 * short, and portico_responses_aborted_total counts it like every other response cut short
 * after its head (the log line says aborted; the counter stayed at 0). The client's timers name
 * themselves as limit_ms, as an origin's do: client_body_timeout here, and
 * client_header_timeout for a head never finished. */
static void test_body_stall_after_head_counted(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = head_then_wait,
                                    .respond_before_body = true};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), "admin_listen = 127.0.0.1:"
                                        "{{port:admin}}\nclient_body_timeout = 200ms\n"
                                        "client_header_timeout = 300ms");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "POST /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: "
                                     "diag-stall-1\r\nContent-Length: 100\r\n\r\nabc"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), -1); /* 3 of 10 body bytes, then */
    assert_int_equal(r.status, 200);
    assert_true(r.peer_closed);
    raw_response_free(&r);
    raw_close(c);
    /* counted once the exchange has ended: awaited, then exactly one (the lines are read once
     * Portico has stopped, complete then) */
    assert_true(scrape_wait(harness_port(h, "admin"), "portico_responses_aborted_total", 1,
                            PX_IO_MS) == 1);
    c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /y HTTP/1.1\r\nHost: a\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 408);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0);
    char *line = px_log_line_for_id(h, "diag-stall-1");
    assert_non_null(strstr(line, "status=200"));
    assert_non_null(strstr(line, "client_body_timeout"));
    assert_non_null(strstr(line, " limit_ms=200 aborted=after_head "));
    free(line);
    line = px_log_line(h, " status=408 ");
    if (!strstr(line, " limit_ms=300 "))
        fail_msg("the 408's log line lacks limit_ms=300: %s", line);
    free(line);
    harness_free(h);
    fake_origin_stop(o);
}

/* ---- /metrics and /status ---- */

static char *admin_get(struct harness *h, const char *path, int want_status)
{
    char req[128];
    struct raw_response r;
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n"
                               "Host: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, want_status);
    char *body = strdup(r.body);
    raw_response_free(&r);
    raw_close(c);
    return body;
}

/* /status as a JSON tree (the test fails when it is not JSON). */
static struct tj *status_doc(struct harness *h)
{
    char *text = admin_get(h, "/status", 200), err[128];
    struct tj *s = tj_parse(text, err, sizeof(err));
    free(text);
    if (!s)
        fail_msg("/status is not JSON: %s", err);
    return s;
}

/* /status once its recent failures number n or more (the exchanges have ended: each is recorded
 * as its line is logged), or at PX_IO_MS; the caller checks what it holds. Awaiting the access-log
 * line instead costs up to a second while Portico runs (the worker's once-a-second write). */
static struct tj *status_with_failures(struct harness *h, size_t n)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    for (;;) {
        struct tj *s = status_doc(h);
        const struct tj *recent = tj_get(s, "recent_failures");
        if ((recent && recent->n >= n) || tu_now_ms() >= deadline)
            return s;
        tj_free(s);
        poll_pause();
    }
}


/* The value of the sample line "series value" (series with its labels, as written), -1 when
 * absent. Every line must be a comment or a well-formed sample of a declared family. */
static double sample(const char *text, const char *series)
{
    double found = -1;
    char family[128] = "";
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends */
        size_t n = (size_t)(nl - p);
        if (n > 7 && strncmp(p, "# TYPE ", 7) == 0) {
            snprintf(family, sizeof(family), "%.*s", (int)strcspn(p + 7, " "), p + 7);
        } else if (*p != '#') {
            const char *sp = memrchr(p, ' ', n);
            assert_non_null(sp);
            if (strncmp(p, family, strlen(family)) != 0 || !family[0])
                fail_msg("sample outside its family %s: %.*s", family, (int)n, p);
            char *end;
            double v = strtod(sp + 1, &end);
            assert_true(end == nl);
            if ((size_t)(sp - p) == strlen(series) && strncmp(p, series, strlen(series)) == 0) {
                assert_true(found < 0); /* each series once */
                found = v;
            }
        }
        p = nl + 1;
    }
    return found;
}

struct metric_row {
    const char *why;
    const char *series;
    double delta;             /* exact increase after the traffic below */
};

static const struct metric_row metric_rows[] = {
    {"the three successes of route ok", "portico_requests_total{route=\"ok\",code=\"200\","
     "failure=\"\"}", 3},
    {"the two refused connects", "portico_requests_total{route=\"refused\",code=\"502\","
     "failure=\"connect_refused\"}", 2},
    {"one first-byte timeout", "portico_requests_total{route=\"silent\",code=\"504\","
     "failure=\"first_byte_timeout\"}", 1},
    {"sum by status code", "portico_responses_total{code=\"200\",class=\"2xx\"}", 3},
    {"sum by failure type", "portico_upstream_failures_total{failure=\"connect_refused\"}", 2},
    {"admin requests are not client traffic", "portico_requests_started_total", 6},
    {"one histogram observation per exchange", "portico_phase_duration_seconds_count{"
     "upstream=\"ok\",phase=\"total\"}", 3},
    {"first_byte of the silent origin took more than 100 ms",
     "portico_phase_duration_seconds_bucket{upstream=\"silent\",phase=\"first_byte\","
     "le=\"0.1\"}", 0},
    {"and is in the 0.25 s bucket", "portico_phase_duration_seconds_bucket{upstream=\"silent\","
     "phase=\"first_byte\",le=\"0.25\"}", 1},
    {"refused connects observed in the connect phase",
     "portico_phase_duration_seconds_count{upstream=\"refused\",phase=\"connect\"}", 2},
};

/* Known traffic moves the counters by exactly what it is; the histograms put each phase in its
 * bucket; then /status says the same as JSON, with origins, pools and recent failures. */
static void test_metrics_and_status(void **state)
{
    (void)state;
    struct harness *h = start("");
    /* warm-up: series exist before the first scrape (a missing one reads as 0 anyway) */
    char *before = admin_get(h, "/metrics", 200);
    struct raw_response r;
    for (int i = 0; i < 3; i++) {
        request(h, &cases[0], &r);
        raw_response_free(&r);
    }
    for (int i = 0; i < 2; i++) {
        request(h, &cases[3], &r);
        raw_response_free(&r);
    }
    request(h, &cases[10], &r); /* silent: first_byte_timeout 200 ms */
    char silent_rid[64];
    snprintf(silent_rid, sizeof(silent_rid), "%s", raw_header(&r, "X-Request-Id"));
    raw_response_free(&r);
    char *after = admin_get(h, "/metrics", 200);
    for (size_t i = 0; i < ARRAY_SIZE(metric_rows); i++) {
        double a = sample(before, metric_rows[i].series), b = sample(after, metric_rows[i].series);
        double delta = b - (a < 0 ? 0 : a);
        if (b < 0 || delta != metric_rows[i].delta)
            fail_msg("%s: %s moved by %g, expected %g", metric_rows[i].why,
                     metric_rows[i].series, delta, metric_rows[i].delta);
    }
    assert_true(sample(after, "portico_config_generation") == 1);
    /* the version this tree builds (the Makefile passes VERSION to every object) */
    assert_true(sample(after, "portico_build_info{version=\"" PORTICO_VERSION "\"}") == 1);

    /* /status: one JSON document with the same families, and what only it has */
    char *text = admin_get(h, "/status", 200), err[128];
    struct tj *s = tj_parse(text, err, sizeof(err));
    if (!s)
        fail_msg("/status is not JSON: %s", err);
    double v;
    assert_int_equal(tj_num(s, "generation", &v), 0);
    assert_int_equal((int)v, 1);
    assert_string_equal(tj_str(s, "profile"), "standard");
    const struct tj *metrics = tj_get(s, "metrics");
    assert_non_null(metrics);
    bool found = false;
    for (size_t i = 0; i < metrics->n; i++) {
        const struct tj *fam = metrics->items[i];
        if (strcmp(tj_str(fam, "name"), "portico_requests_total") != 0)
            continue;
        assert_string_equal(tj_str(fam, "type"), "counter");
        const struct tj *samples = tj_get(fam, "samples");
        for (size_t k = 0; k < samples->n; k++) {
            const struct tj *x = samples->items[k];
            if (strcmp(tj_str(x, "labels.route"), "refused") == 0 &&
                strcmp(tj_str(x, "labels.failure"), "connect_refused") == 0) {
                assert_int_equal(tj_num(x, "value", &v), 0);
                assert_int_equal((int)v, 2);
                found = true;
            }
        }
    }
    assert_true(found);
    /* every upstream of the configuration, its origins, and its own recent failures */
    const struct tj *ups = tj_get(s, "upstreams");
    assert_int_equal(ups->n, NCASES + 1);
    const struct tj *silent = NULL;
    for (size_t i = 0; i < ups->n; i++)
        if (strcmp(tj_str(ups->items[i], "name"), "silent") == 0)
            silent = ups->items[i];
    assert_non_null(silent);
    assert_int_equal(tj_get(silent, "origins")->n, 1);
    /* by name: members come and go around it (sticky's "cookie" came before it) */
    const struct tj *up = tj_get(tj_get(silent, "origins")->items[0], "up");
    assert_true(up && up->type == TJ_BOOL && up->boolean);
    assert_int_equal(tj_num(silent, "pool_idle", &v), 0);
    const struct tj *fails = tj_get(silent, "recent_failures");
    assert_int_equal(fails->n, 1);
    assert_string_equal(tj_str(fails->items[0], "request_id"), silent_rid);
    assert_string_equal(tj_str(fails->items[0], "failure"), "first_byte_timeout");
    assert_string_equal(tj_str(fails->items[0], "phase"), "first_byte");
    assert_int_equal(tj_num(fails->items[0], "limit_ms", &v), 0);
    assert_int_equal((int)v, 200);
    /* the minutes add up to the traffic; newest failure first */
    const struct tj *minutes = tj_get(s, "minutes");
    assert_int_equal(minutes->n, 15);
    double requests = 0, fivexx = 0, refused = 0;
    for (size_t i = 0; i < minutes->n; i++) {
        assert_int_equal(tj_num(minutes->items[i], "requests", &v), 0);
        requests += v;
        assert_int_equal(tj_num(minutes->items[i], "classes.5xx", &v), 0);
        fivexx += v;
        if (tj_num(minutes->items[i], "failures.connect_refused", &v) == 0)
            refused += v;
    }
    assert_true(requests == 6 && fivexx == 3 && refused == 2);
    const struct tj *recent = tj_get(s, "recent_failures");
    assert_int_equal(recent->n, 3);
    assert_string_equal(tj_str(recent->items[0], "failure"), "first_byte_timeout");
    assert_string_equal(tj_str(recent->items[2], "failure"), "connect_refused");
    tj_free(s);
    free(text);
    free(before);
    free(after);

    /* pools: after the once-a-second tick, the ok upstream's idle connection is counted */
    int64_t deadline = tu_now_ms() + 3000;
    double idle = 0;
    while (idle < 1 && tu_ms_left(deadline) > 0) {
        text = admin_get(h, "/status", 200);
        s = tj_parse(text, err, sizeof(err));
        assert_non_null(s);
        ups = tj_get(s, "upstreams");
        assert_int_equal(tj_num(ups->items[0], "pool_idle", &idle), 0);
        tj_free(s);
        free(text);
        if (idle < 1) /* bounded: the tick is due within a second */
            poll(NULL, 0, 100);
    }
    assert_true(idle >= 1);
    px_stop(h);
}

/* /status names each upstream's balance policy and, for hash, its key as nginx spells it: which
 * origin a client reaches follows from them (it showed neither). */
static const struct {
    const char *upstream;
    const char *balance_line; /* in [upstream NAME]; "" for the default */
    const char *balance;
    const char *hash_key;     /* NULL: JSON null */
} balance_rows[] = {
    {"rr", "", "round_robin", NULL},
    {"lc", "balance = least_conn\n", "least_conn", NULL},
    {"r2", "balance = random_two\n", "random_two", NULL},
    {"ha", "balance = hash $client_addr\n", "hash", "$client_addr"},
    {"hu", "balance = hash $uri\n", "hash", "$uri"},
    /* a field is matched as X-User: shown back as nginx writes it */
    {"hx", "balance = hash $http_X_User\n", "hash", "$http_x_user"},
    {"hc", "balance = hash $cookie_SID\n", "hash", "$cookie_SID"},
};

static void test_status_balance(void **state)
{
    (void)state;
    char rest[2048];
    size_t len = 0;
    for (size_t i = 0; i < ARRAY_SIZE(balance_rows); i++)
        len += (size_t)snprintf(rest + len, sizeof(rest) - len,
                                "[upstream %s]\norigin = sim\n%s[route %s]\nprefix = /%s/\n"
                                "upstream = %s\n",
                                balance_rows[i].upstream, balance_rows[i].balance_line,
                                balance_rows[i].upstream, balance_rows[i].upstream,
                                balance_rows[i].upstream);
    assert_true(len < sizeof(rest));
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n", "%s", rest);
    struct tj *s = status_doc(h);
    const struct tj *ups = tj_get(s, "upstreams");
    assert_non_null(ups);
    assert_int_equal(ups->n, ARRAY_SIZE(balance_rows));
    for (size_t i = 0; i < ARRAY_SIZE(balance_rows); i++) {
        const struct tj *u = ups->items[i];
        assert_string_equal(tj_str(u, "name"), balance_rows[i].upstream);
        const char *balance = tj_str(u, "balance"), *key = tj_str(u, "hash_key");
        if (!balance || strcmp(balance, balance_rows[i].balance) != 0)
            fail_msg("[upstream %s]: balance %s, expected %s", balance_rows[i].upstream,
                     balance ? balance : "(absent)", balance_rows[i].balance);
        if (balance_rows[i].hash_key ? !key || strcmp(key, balance_rows[i].hash_key) != 0
                                     : !tj_is_null(u, "hash_key"))
            fail_msg("[upstream %s]: hash_key %s, expected %s", balance_rows[i].upstream,
                     key ? key : "(absent or null)",
                     balance_rows[i].hash_key ? balance_rows[i].hash_key : "null");
    }
    tj_free(s);
    px_stop(h);
}

/* ---- trace context ---- */

struct trace_row {
    const char *why;
    const char *traceparent; /* what the client sends */
    const char *trace_id;    /* the trace logged and forwarded; NULL: one Portico started */
};

static const struct trace_row trace_rows[] = {
    {"a valid traceparent is kept", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
     "4bf92f3577b34da6a3ce929d0e0e4736"},
    {"an all-zero trace id is invalid: a new trace",
     "00-00000000000000000000000000000000-00f067aa0ba902b7-01", NULL},
};

/* The client's valid traceparent keeps its trace id in the log and towards the origin; an
 * invalid one is replaced by a trace Portico starts, the same in the log and at the origin. */
/* Names of up to a section header's length are valid: /status must file a failure under its
 * upstream, and show its route and upstream whole, however long the names (it cut them at 63
 * bytes, and the upstream's own list, matched by name, stayed empty); the access log must
 * name them whole too (it cut them at 128 bytes). */
static void test_long_names(void **state)
{
    (void)state;
    char up[201], route[202];
    memset(up, 'u', sizeof(up) - 1);
    up[sizeof(up) - 1] = '\0';
    snprintf(route, sizeof(route), "r%s", up);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\nworkers = 1\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "[upstream %s]\norigin = 127.0.0.1:%u\n"
                                          "[route %s]\nupstream = %s\n",
                                          up, w.port[MB_REFUSE], route, up),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                     0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 502);
    char rid[64];
    snprintf(rid, sizeof(rid), "%s", raw_header(&r, "X-Request-Id"));
    raw_response_free(&r);
    raw_close(c);

    struct tj *s = status_doc(h);
    const struct tj *ups = tj_get(s, "upstreams"), *recent = tj_get(s, "recent_failures");
    assert_true(ups && ups->n == 1 && recent && recent->n == 1);
    assert_string_equal(tj_str(recent->items[0], "upstream"), up);
    assert_string_equal(tj_str(recent->items[0], "route"), route);
    const struct tj *mine = tj_get(ups->items[0], "recent_failures");
    assert_non_null(mine);
    if (mine->n != 1)
        fail_msg("upstream of %zu characters lists %zu recent failures, expected 1", strlen(up),
                 mine->n);
    tj_free(s);
    assert_int_equal(harness_stop(h), 0); /* the log is complete once stopped */
    struct tj *j = log_entry(h, rid);
    assert_string_equal(tj_str(j, "route"), route);
    assert_string_equal(tj_str(j, "upstream"), up);
    tj_free(j);
    harness_free(h);
}

/* The minutes of /status add up to `requests` requests, `c4xx` of them 4xx (a minute may have
 * turned meanwhile: all of them are summed). */
static void expect_minutes(struct harness *h, double want, double want_4xx)
{
    struct tj *s = status_doc(h);
    const struct tj *minutes = tj_get(s, "minutes");
    assert_non_null(minutes);
    double requests = 0, c4xx = 0, v;
    for (size_t i = 0; i < minutes->n; i++) {
        assert_int_equal(tj_num(minutes->items[i], "requests", &v), 0);
        requests += v;
        assert_int_equal(tj_num(minutes->items[i], "classes.4xx", &v), 0);
        c4xx += v;
    }
    if (requests != want || c4xx != want_4xx)
        fail_msg("minutes: %g requests, %g 4xx; %g requests were answered, %g with a 4xx",
                 requests, c4xx, want, want_4xx);
    tj_free(s);
}

/* The last minutes of /status (the status page's tiles and bars) count every request answered,
 * as portico_requests_total does: also those Portico refuses before an exchange (a bad head, a
 * 408), which it left out, so a flood of 400s showed as no request at all. */
static void test_minutes_count_refusals(void **state)
{
    (void)state;
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\norigin = 127.0.0.1:%u\n", w.port[MB_OK]);
    enum { REFUSED = 3 };
    for (int i = 0; i < REFUSED; i++) {
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nBad Name: y\r\n\r\n"), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 400);
        raw_response_free(&r);
        raw_close(c);
    }
    expect_minutes(h, REFUSED, REFUSED);
    px_stop(h);
}

/* A Portico with an h2c listener and max_header_size = 1k, its admin address, the OK origin. */
static struct harness *start_h2c_1k(void)
{
    return px_start("admin_listen = 127.0.0.1:{{port:admin}}\n"
                    "listen = 127.0.0.1:{{port:h2c}} h2c\nmax_header_size = 1k",
                    "[upstream u]\norigin = 127.0.0.1:%u\n", w.port[MB_OK]);
}

/* A request over h's h2c listener (max_header_size = 1k) with a 2 KiB head: curl gets 431. */
static void h2_head_refused(struct harness *h)
{
    char url[64], big[2100] = "X-Big: ";
    memset(big + 7, 'a', sizeof(big) - 8);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", harness_port(h, "h2c"));
    const char *const argv[] = {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                "--http2-prior-knowledge", "--max-time", "5", "-H", big, url,
                                NULL};
    struct tu_cmd_result res;
    assert_int_equal(tu_run_command(argv, 10000, &res), 0);
    assert_string_equal(res.out, "431");
    tu_cmd_result_free(&res);
}

/* The same for a request Portico refuses on an HTTP/2 stream (a head over max_header_size:
 * 431): counted in portico_requests_total and the access log, it was left out of the minutes,
 * as HTTP/1.1's were before. */
static void test_minutes_count_h2_refusals(void **state)
{
    (void)state;
    struct harness *h = start_h2c_1k();
    enum { REFUSED = 2 };
    for (int i = 0; i < REFUSED; i++)
        h2_head_refused(h);
    char *text = admin_get(h, "/metrics", 200);
    assert_non_null(strstr(text, "portico_requests_total{route=\"\",code=\"431\",failure=\"\"} 2\n"));
    free(text);
    expect_minutes(h, REFUSED, REFUSED);
    px_stop(h);
}

/* An upstream may list one origin twice (the same address, another weight): the exposition
 * must still hold each series once, or Prometheus refuses the duplicate sample. */
static void test_origin_listed_twice(void **state)
{
    (void)state;
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u weight=3\n",
                                 w.port[MB_OK], w.port[MB_OK]);
    char *text = admin_get(h, "/metrics", 200), series[128];
    snprintf(series, sizeof(series), "\nportico_upstream_origin_up{upstream=\"u\","
             "origin=\"127.0.0.1:%u\"} 1\n", w.port[MB_OK]);
    int n = 0;
    for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
        n++;
    if (n != 1)
        fail_msg("%s appears %d times in /metrics", series + 1, n);
    free(text);
    px_stop(h);
}

/* The sum of one family's samples "prefix{...} value" in a scrape. */
static double family_sum(const char *text, const char *prefix)
{
    double sum = 0;
    size_t n = strlen(prefix);
    for (const char *line = text; *line;) {
        const char *end = strchrnul(line, '\n');
        const char *sp = memrchr(line, ' ', (size_t)(end - line));
        if (strncmp(line, prefix, n) == 0 && line[n] == '{' && sp)
            sum += strtod(sp + 1, NULL);
        line = *end ? end + 1 : end;
    }
    return sum;
}

/* Past the (code, failure) pairs a worker keeps apart, portico_requests_total counts code
 * "other"; portico_responses_total, "the same by status code", left those out, so the two
 * families no longer agreed (400 requests, 128 responses). */
static void test_responses_sum_past_pair_cap(void **state)
{
    (void)state;
    enum { CODES = 200 };              /* more than a worker's 128 pairs */
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream s]\norigin = sim\n");
    for (int code = 400; code < 400 + CODES; code++) {
        char req[128];
        snprintf(req, sizeof(req), "GET /status/%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                 code);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, code);
        raw_response_free(&r);
        raw_close(c);
    }
    char *text = admin_get(h, "/metrics", 200);
    double requests = family_sum(text, "portico_requests_total");
    double responses = family_sum(text, "portico_responses_total");
    if (requests != CODES || responses != CODES)
        fail_msg("portico_requests_total sums to %g, portico_responses_total to %g; %d requests",
                 requests, responses, CODES);
    free(text);
    px_stop(h);
}

/* portico_requests_started_total - portico_requests_total is what is in flight: a request
 * Portico refuses before an exchange (a bad head: 400; a client that leaves mid-head: 499; an
 * HTTP/2 head over max_header_size: 431) counts in both. It counted only as ended, so the
 * difference went below 0 for good, by one per refusal. */
static void test_started_counts_refusals(void **state)
{
    (void)state;
    struct harness *h = start_h2c_1k();
    enum { REFUSED = 3 };
    char *text = admin_get(h, "/metrics", 200);
    double started0 = sample(text, "portico_requests_started_total");
    double ended0 = family_sum(text, "portico_requests_total");
    free(text);

    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nBad Name: y\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 400);
    raw_response_free(&r);
    raw_close(c);
    c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\n"), 0); /* then leaves */
    raw_close(c);
    h2_head_refused(h);

    /* the 499 is counted once Portico sees the client gone: polled */
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    double started, ended;
    for (;;) {
        text = admin_get(h, "/metrics", 200);
        started = sample(text, "portico_requests_started_total") - started0;
        ended = family_sum(text, "portico_requests_total") - ended0;
        free(text);
        if (ended >= REFUSED || tu_now_ms() >= deadline)
            break;
        poll_pause();
    }
    if (started != REFUSED || ended != REFUSED)
        fail_msg("%d refused requests: portico_requests_started_total moved by %g, "
                 "portico_requests_total by %g", REFUSED, started, ended);
    px_stop(h);
}

/* An upstream failure after the response head went to the client (the origin stalls mid-body:
 * read_timeout): its entry in /status's recent failures has status null, as the README says,
 * since the client got the origin's 200 and then a cut, no status of Portico's; it showed 200.
 * The minute still counts the request under 2xx, what the client was sent. */
static void test_failure_after_head_status_null(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = head_then_wait};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), "admin_listen = 127.0.0.1:"
                                        "{{port:admin}}\nread_timeout = 200ms");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: "
                                     "diag-cut-1\r\n\r\n"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), -1); /* 3 of 10 body bytes, then */
    assert_int_equal(r.status, 200);
    assert_true(r.peer_closed);
    raw_response_free(&r);
    raw_close(c);
    struct tj *s = status_with_failures(h, 1); /* the exchange has ended */
    const struct tj *recent = tj_get(s, "recent_failures");
    assert_non_null(recent);
    assert_int_equal(recent->n, 1);
    assert_string_equal(tj_str(recent->items[0], "failure"), "read_timeout");
    assert_string_equal(tj_str(recent->items[0], "request_id"), "diag-cut-1");
    double v = 0;
    if (!tj_is_null(recent->items[0], "status")) {
        tj_num(recent->items[0], "status", &v);
        fail_msg("a failure after the head has status %g in /status, not null", v);
    }
    tj_free(s);
    expect_minutes(h, 1, 0);
    px_stop(h);
    fake_origin_stop(o);
}

/* A failure a fault rule simulated is the real one on the wire, but the operator's views say it
 * was injected: the access log's fault field, and /status's recent failures (and so the status
 * page) too, by the same rule name; a real failure beside it has "fault": null. Before, the
 * recent failures had no fault field: a drill's failures read there as the origin's. */
static void test_recent_failure_names_fault(void **state)
{
    (void)state;
    struct harness *h = px_start_origin(w.port[MB_REFUSE], "admin_listen = 127.0.0.1:"
                                        "{{port:admin}}\n[faults]\nheader_control = on");
    static const char *const reqs[] = {
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: diag-inj-1\r\n"
        "Portico-Fault: failure=connect_refused\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: diag-real-1\r\n\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        struct raw_conn *c = px_connect(h);
        assert_int_equal(raw_send_str(c, reqs[i]), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 502);
        raw_response_free(&r);
        raw_close(c);
    }
    struct tj *s = status_with_failures(h, 2); /* both exchanges have ended */
    const struct tj *recent = tj_get(s, "recent_failures");
    assert_non_null(recent);
    assert_int_equal(recent->n, 2);
    for (size_t i = 0; i < recent->n; i++) {
        const struct tj *f = recent->items[i];
        assert_string_equal(tj_str(f, "failure"), "connect_refused");
        bool injected = strcmp(tj_str(f, "request_id"), "diag-inj-1") == 0;
        if (!tj_get(f, "fault"))
            fail_msg("recent failure %s has no fault field", tj_str(f, "request_id"));
        if (injected)
            assert_string_equal(tj_str(f, "fault"), "header");
        else
            assert_true(tj_is_null(f, "fault"));
    }
    tj_free(s);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    char *line = px_log_line_for_id(h, "diag-inj-1");
    assert_non_null(strstr(line, " fault=header"));
    free(line);
    harness_free(h);
}

/* ---- phase timings that add up: a 1xx read slowly, an attempt moved to another origin ---- */

/* A 103 whose head takes 200 ms to arrive, then silence (first_byte_timeout), or a close. */
static const struct fo_step trickled_103_hold[] = {
    FO_SEND("HTTP/1.1 103 Early Hints\r\n"), FO_WAIT(200),
    FO_SEND("Link: </a.css>; rel=preload\r\n\r\n"), FO_HOLD(), FO_END(),
};
static const struct fo_step trickled_103_close[] = {
    FO_SEND("HTTP/1.1 103 Early Hints\r\n"), FO_WAIT(200),
    FO_SEND("Link: </a.css>; rel=preload\r\n\r\n"), FO_WAIT(100), FO_CLOSE(), FO_END(),
};

/* Server-Timing "a;dur=1.0, b;dur=2.0;desc=\"x\"": the sum of the durations, the duration of
 * entry name (-1 when absent) and whether the desc is on that entry. */
static double server_timing_sum(const char *st, const char *name, double *dur, bool *desc)
{
    double sum = 0;
    *dur = -1;
    *desc = false;
    for (const char *e = st; e && *e;) {
        while (*e == ' ' || *e == ',')
            e++;
        size_t n = strcspn(e, ";,");
        const char *d = strstr(e, ";dur=");
        const char *next = strchr(e, ',');
        assert_non_null(d);
        double v = strtod(d + 5, NULL);
        sum += v;
        if (strlen(name) == n && strncmp(e, name, n) == 0) {
            *dur = v;
            const char *ds = strstr(e, ";desc=");
            *desc = ds && (!next || ds < next);
        }
        e = next;
    }
    return sum;
}

/* Every phase an exchange spent time in is reported once: the Server-Timing of its error
 * response and the access log's timing_ms add up to no more than the exchange lasted, and all
 * of it is there. A 1xx head read slowly is part of the wait for the first byte, not time of
 * its own on top of it (first_byte 500 ms and read 200 ms in a 500 ms exchange before); two
 * connects of 200 ms each (retries = 1) are 400 ms of connect, not the last one's 200. */
static void test_timings_add_up(void **state)
{
    (void)state;
    struct fake_origin_opts hold = {.kind = FO_SCRIPT, .script = trickled_103_hold};
    struct fake_origin_opts closes = {.kind = FO_SCRIPT, .script = trickled_103_close};
    struct fake_origin *oh = fake_origin_start(&hold), *oc = fake_origin_start(&closes);
    assert_non_null(oh);
    assert_non_null(oc);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
        "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nworkers = 1\n"
        "access_log = {{dir}}/access.log\n"
        "[upstream hold]\norigin = 127.0.0.1:%u\nfirst_byte_timeout = 300ms\n"
        "[upstream closes]\norigin = 127.0.0.1:%u\n"
        "[upstream twice]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
        "connect_timeout = 200ms\nretries = 1\n"
        "[route hold]\nprefix = /hold/\nupstream = hold\n"
        "[route closes]\nprefix = /closes/\nupstream = closes\n"
        "[route twice]\nprefix = /twice/\nupstream = twice\n",
        fake_origin_port(oh), fake_origin_port(oc), w.port[MB_BLACKHOLE], w.port[MB_UNREACH]), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    static const struct {
        const char *path, *failure, *phase, *slot; /* slot: the phase's timing_ms name */
        int status;
        double at_least; /* ms the failed phase lasted at least */
    } rows[] = {
        {"/hold/x", "first_byte_timeout", "first_byte", "first_byte", 504, 300},
        {"/closes/x", "connection_reset", "read", "body", 502, 0},
        {"/twice/x", "connect_timeout", "connect", "connect", 504, 400},
    };
    char rids[ARRAY_SIZE(rows)][64];
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\n"
                 "Connection: close\r\n\r\n", rows[i].path);
        assert_int_equal(raw_send_str(c, req), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, rows[i].status);
        assert_string_equal(raw_header(&r, "Portico-Error"), rows[i].failure);
        const char *st = raw_header(&r, "Server-Timing");
        double elapsed, dur;
        bool desc;
        assert_int_equal(tu_json_get_number(r.body, "elapsed_ms", &elapsed), 0);
        double sum = server_timing_sum(st, rows[i].phase, &dur, &desc);
        print_message("  %-10s elapsed %.1f ms, Server-Timing %s\n", rows[i].path, elapsed, st);
        /* one decimal each: rounding only */
        if (sum > elapsed + 0.1 * 7)
            fail_msg("%s: Server-Timing \"%s\" adds up to %.1f ms, the exchange lasted %.1f",
                     rows[i].path, st, sum, elapsed);
        if (dur < rows[i].at_least || !desc)
            fail_msg("%s: Server-Timing \"%s\": %s should last %.0f ms or more and say why",
                     rows[i].path, st, rows[i].phase, rows[i].at_least);
        snprintf(rids[i], sizeof(rids[i]), "%s", raw_header(&r, "X-Request-Id"));
        raw_response_free(&r);
        raw_close(c);
    }
    assert_int_equal(harness_stop(h), 0);
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct tj *j = log_entry(h, rids[i]);
        check_shape(j); /* the phases add up to no more than total */
        assert_string_equal(tj_str(j, "phase"), rows[i].phase);
        double v;
        assert_int_equal(tj_num(tj_get(j, "timing_ms"), rows[i].slot, &v), 0);
        if (v < rows[i].at_least)
            fail_msg("%s: timing_ms.%s %.3f ms, at least %.0f expected", rows[i].path,
                     rows[i].slot, v, rows[i].at_least);
        tj_free(j);
    }
    harness_free(h);
    fake_origin_stop(oh);
    fake_origin_stop(oc);
}

static void test_trace_context(void **state)
{
    (void)state;
    struct harness *h = start("");
    char *sent[ARRAY_SIZE(trace_rows)];
    for (size_t i = 0; i < ARRAY_SIZE(trace_rows); i++) {
        unsigned before = fake_origin_requests(w.origin[MB_OK]);
        char req[512];
        snprintf(req, sizeof(req), "GET /ok/x HTTP/1.1\r\nHost: diag.test\r\n"
                 "X-Request-Id: diag-trace-%zu\r\ntraceparent: %s\r\nConnection: close\r\n\r\n",
                 i, trace_rows[i].traceparent);
        struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
        assert_int_equal(raw_send_str(c, req), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
        sent[i] = fake_origin_request_header(w.origin[MB_OK], before, "traceparent");
    }
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete (see log_entry) */
    for (size_t i = 0; i < ARRAY_SIZE(trace_rows); i++) {
        const struct trace_row *row = &trace_rows[i];
        print_message("  %s\n", row->why);
        char rid[32];
        snprintf(rid, sizeof(rid), "diag-trace-%zu", i);
        struct tj *j = log_entry(h, rid);
        const char *logged = tj_str(j, "trace_id");
        assert_non_null(logged);
        if (row->trace_id)
            assert_string_equal(logged, row->trace_id);
        else if (strlen(logged) != 32 || strspn(logged, "0123456789abcdef") != 32 ||
                 strspn(logged, "0") == 32)
            fail_msg("started trace id '%s'", logged);
        /* the origin got version-traceid-parentid-flags with the logged trace id */
        if (!sent[i] || strlen(sent[i]) != 55 || strncmp(sent[i], "00-", 3) != 0 ||
            strncmp(sent[i] + 3, logged, 32) != 0 || sent[i][35] != '-')
            fail_msg("the origin got traceparent '%s', logged trace id %s", sent[i], logged);
        free(sent[i]);
        tj_free(j);
    }
    harness_free(h);
}

/* ---- connections, interim responses, reloads; the admin listener counted nowhere ---- */

static double scrape(struct harness *h, const char *series)
{
    char *text = admin_get(h, "/metrics", 200);
    double v = sample(text, series);
    free(text);
    return v;
}

/* Polls /metrics until every series reads its value: the workers apply a connect, a head byte
 * or a close within milliseconds of the test's step, which has no event of its own to wait for.
 * Bounded by PX_IO_MS. */
static void wait_series(struct harness *h, const char *const series[], const double want[],
                        size_t n)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    for (;;) {
        char *text = admin_get(h, "/metrics", 200);
        size_t i = 0;
        while (i < n && sample(text, series[i]) == want[i])
            i++;
        if (i == n) {
            free(text);
            return;
        }
        if (tu_ms_left(deadline) <= 0)
            fail_msg("%s is %g, expected %g", series[i], sample(text, series[i]), want[i]);
        free(text);
        poll(NULL, 0, 10);
    }
}

#define CLIENT_GAUGE(st) "portico_connections{side=\"client\",state=\"" st "\"}"
#define UPSTREAM_GAUGE(st) "portico_connections{side=\"upstream\",state=\"" st "\"}"

static const char *const conn_series[] = {
    CLIENT_GAUGE("handshake"),   CLIENT_GAUGE("active"),   CLIENT_GAUGE("idle"),
    UPSTREAM_GAUGE("handshake"), UPSTREAM_GAUGE("active"), UPSTREAM_GAUGE("idle"),
    "portico_client_connections_active",
};

/* The connection gauges read exactly: client handshake, active, idle, upstream handshake,
 * active, idle, and the open client connections. */
static void wait_conns(struct harness *h, const double want[ARRAY_SIZE(conn_series)])
{
    wait_series(h, conn_series, want, ARRAY_SIZE(conn_series));
}

static void test_connections_interim_reload(void **state)
{
    (void)state;
    struct harness *h = start("");
    /* Admin requests, each on its own connection, move no client counter or gauge; nor does
     * the scrape that reads them, an open admin connection itself. (The harness's readiness
     * probe was a client connection: counted once, and closed.) */
    char *before = admin_get(h, "/metrics", 200);
    static const char *const admin_paths[] = {"/healthz", "/status", "/", "/metrics"};
    for (size_t i = 0; i < ARRAY_SIZE(admin_paths); i++)
        free(admin_get(h, admin_paths[i], 200));
    char *after = admin_get(h, "/metrics", 200);
    static const char *const unmoved[] = {"portico_client_connections_total",
                                          "portico_requests_started_total"};
    for (size_t i = 0; i < ARRAY_SIZE(unmoved); i++)
        if (sample(before, unmoved[i]) != sample(after, unmoved[i]))
            fail_msg("admin traffic moved %s: %g, then %g", unmoved[i],
                     sample(before, unmoved[i]), sample(after, unmoved[i]));
    double accepted = sample(after, "portico_client_connections_total");
    free(before);
    free(after);
    wait_conns(h, (const double[]){0, 0, 0, 0, 0, 0, 0});

    /* One client connection through its states, and the origin connection of its exchange. */
    struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
    wait_conns(h, (const double[]){0, 0, 1, 0, 0, 0, 1}); /* accepted: waits for a head */
    assert_int_equal(raw_send_str(c, "GET /abort/x HTTP/1.1\r\nHost: a\r\n"), 0);
    wait_conns(h, (const double[]){0, 1, 0, 0, 0, 0, 1}); /* part of a head: active */
    unsigned silent = fake_origin_requests(w.origin[MB_SILENT]);
    assert_int_equal(raw_send_str(c, "X-Request-Id: diag-gauge-1\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_requests(w.origin[MB_SILENT], silent + 1, PX_IO_MS), 0);
    wait_conns(h, (const double[]){0, 1, 0, 0, 1, 0, 1}); /* waiting for the first byte */
    raw_close(c);
    wait_conns(h, (const double[]){0, 0, 0, 0, 0, 0, 0}); /* both sides closed */
    assert_true(scrape(h, "portico_client_connections_total") == accepted + 1);

    /* Expect: 100-continue on /cont/ (expect = synthesize): Portico's own 100. */
    c = px_connect_port(harness_port(h, "listen"));
    assert_int_equal(raw_send_str(c, "POST /cont/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                     "Expect: 100-continue\r\nConnection: close\r\n\r\n"), 0);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 100);
    raw_head_free(&head);
    assert_int_equal(raw_send_str(c, "hello"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_true(scrape(h, "portico_interim_responses_total{code=\"100\",direction=\"synthesized\"}")
                == 1);
    assert_true(scrape(h, "portico_interim_responses_total{code=\"100\",direction=\"relayed\"}")
                == -1); /* no such series: nothing was relayed */
    assert_true(scrape(h, "portico_continue_synthesized_total") == 1);

    /* A client that asked to close, its request read to its end, is closed at once (FIN), even
     * while it keeps its own end open: no lingering for its FIN (up to 2 s otherwise). */
    c = px_connect_port(harness_port(h, "listen"));
    assert_int_equal(
        raw_send_str(c, "GET /plain/q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    int64_t t0 = tu_now_ms();
    static const char *const open_series[] = {"portico_client_connections_active"};
    wait_series(h, open_series, (const double[]){0}, 1);
    if (tu_now_ms() - t0 > 1000)
        fail_msg("the connection stayed %lld ms after its answer", (long long)(tu_now_ms() - t0));
    raw_close(c);

    /* A reload (SIGHUP) of the same file: counted as ok, the generation moves to 2. */
    assert_true(scrape(h, "portico_config_reloads_total{result=\"ok\"}") == 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    static const char *const reload_series[] = {
        "portico_config_reloads_total{result=\"ok\"}",
        "portico_config_reloads_total{result=\"invalid\"}",
        "portico_config_reloads_total{result=\"failed\"}",
        "portico_config_generation",
    };
    static const double reload_want[] = {1, 0, 0, 2};
    for (size_t i = 0; i < ARRAY_SIZE(reload_series); i++)
        if (scrape(h, reload_series[i]) != reload_want[i])
            fail_msg("after one reload %s is %g, expected %g", reload_series[i],
                     scrape(h, reload_series[i]), reload_want[i]);
    px_stop(h);
}

/* error_detail = minimal: the client learns the failure type and phase, not the topology; the
 * access log still has everything. */
static void test_minimal_detail(void **state)
{
    (void)state;
    struct harness *h = start("error_detail = minimal");
    struct raw_response r;
    request(h, &cases[3], &r);
    assert_int_equal(r.status, 502);
    char origin[64];
    snprintf(origin, sizeof(origin), "127.0.0.1:%u", w.port[MB_REFUSE]);
    assert_null(strstr(r.body, origin));
    assert_null(strstr(r.body, "\"refused\""));
    assert_non_null(strstr(r.body, "\"error\":\"connect_refused\""));
    assert_non_null(strstr(r.body, "\"phase\":\"connect\""));
    assert_string_equal(raw_header(&r, "Proxy-Status"), "portico; error=connection_refused");
    assert_string_equal(raw_header(&r, "Portico-Error"), "connect_refused");
    assert_int_equal(harness_stop(h), 0);
    struct tj *j = log_entry(h, raw_header(&r, "X-Request-Id"));
    assert_string_equal(tj_str(j, "origin"), origin);
    assert_non_null(strstr(tj_str(j, "detail"), "refused"));
    tj_free(j);
    raw_response_free(&r);
    harness_free(h);
}

/* The test's JSON reader refuses what is not JSON, or the checks above prove nothing. */
static void test_json_reader(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "{", "{\"a\":1,}", "{\"a\":01}", "{a:1}", "{\"a\":\"x\ty\"}", "{\"a\":\"\\q\"}",
        "{\"a\":tru}", "{\"a\":1} x", "[1 2]", "{\"a\":\"\\ud800\"}", "-", "1.", "1e",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct tj *j = tj_parse(bad[i], NULL, 0);
        if (j)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    struct tj *j = tj_parse(" {\"a\": [1, -2.5e1, true, null], \"b\": {\"c\": \"\\u00e9\\n\"}} ",
                            NULL, 0);
    assert_non_null(j);
    assert_int_equal(tj_get(j, "a")->n, 4);
    assert_true(tj_get(j, "a")->items[1]->number == -25);
    assert_string_equal(tj_str(j, "b.c"), "\xc3\xa9\n");
    tj_free(j);
}

int main(void)
{
    /* TEST_FILTER=test_timings* runs the matching tests only */
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_reader),
        cmocka_unit_test(test_access_log_success),
        cmocka_unit_test(test_access_log_failures),
        cmocka_unit_test(test_access_log_client_abort),
        cmocka_unit_test(test_access_log_client_leaves_mid_head),
        cmocka_unit_test(test_body_stall_phase),
        cmocka_unit_test(test_body_stall_after_head_counted),
        cmocka_unit_test(test_metrics_and_status),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_status_balance),
        cmocka_unit_test(test_minutes_count_refusals),
        cmocka_unit_test(test_minutes_count_h2_refusals),
        cmocka_unit_test(test_failure_after_head_status_null),
        cmocka_unit_test(test_recent_failure_names_fault),
        cmocka_unit_test(test_origin_listed_twice),
        cmocka_unit_test(test_responses_sum_past_pair_cap),
        cmocka_unit_test(test_started_counts_refusals),
        cmocka_unit_test(test_trace_context),
        cmocka_unit_test(test_connections_interim_reload),
        cmocka_unit_test(test_minimal_detail),
        cmocka_unit_test(test_timings_add_up),
    };
    return cmocka_run_group_tests(tests, world_up, world_down);
}
