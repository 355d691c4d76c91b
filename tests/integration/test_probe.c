/*
 * test_probe.c — `portico probe` against the fake origins: for each kind of origin, the failure
 * type, the phase, the status of each profile and the exit status, in JSON (parsed strictly)
 * and in the text timeline; with -c, the configuration's route, upstream and resolver; and bad
 * usage, exit 2 with one line on stderr.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "../support/fake_dns.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/misbehave.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static struct {
    struct mb_world mb;                /* the misbehaving origins and the fake DNS */
    struct harness *h;                 /* only for its temp dir and PORTICO_BIN */
} w;

static int world_up(void **state)
{
    (void)state;
    if (mb_world_start(&w.mb, "probe me\n", NULL, 0) != 0)
        return -1;
    w.h = harness_new();
    return w.h ? 0 : -1;
}

static int world_down(void **state)
{
    (void)state;
    mb_world_stop(&w.mb);
    harness_free(w.h);
    memset(&w, 0, sizeof(w));
    return 0;
}

struct probe_row {
    const char *why;
    enum mb_origin origin;
    const char *scheme;
    const char *opt;              /* one extra option, or NULL */
    const char *optval;
    int exit_code;
    const char *failure;          /* NULL: answered */
    const char *phase;
    int statuses[3];              /* standard, cloudflare, proxy */
};

static const struct probe_row rows[] = {
    {"the origin answers", MB_OK, "http", NULL, NULL, 0, NULL, "done", {0, 0, 0}},
    {"nothing listens", MB_REFUSE, "http", NULL, NULL, 1, "connect_refused", "connect",
     {502, 521, 502}},
    {"SYN never answered", MB_BLACKHOLE, "http", "--connect-timeout", "200ms", 1,
     "connect_timeout", "connect", {504, 522, 599}},
    {"the app never answers", MB_SILENT, "http", "--first-byte-timeout", "200ms", 1,
     "first_byte_timeout", "first_byte", {504, 524, 598}},
    {"half a head, then silence", MB_PARTIAL_HEAD, "http", "--read-timeout", "200ms", 1,
     "read_timeout", "read", {504, 524, 598}},
    {"closed without a byte", MB_CLOSE_EMPTY, "http", NULL, NULL, 1, "empty_response",
     "first_byte", {502, 520, 502}},
    {"not HTTP", MB_GARBAGE, "http", NULL, NULL, 1, "invalid_response", "read", {502, 520, 502}},
    {"not TLS", MB_TLS_GARBAGE, "https", NULL, NULL, 1, "tls_handshake_failed", "tls",
     {502, 525, 502}},
    {"a self-signed certificate", MB_CERT_SELF, "https", NULL, NULL, 1,
     "tls_certificate_invalid", "tls", {502, 526, 502}},
};

static const char *const profiles[3] = {"standard", "cloudflare", "proxy"};

static int probe(const char *const *args, struct tu_cmd_result *res)
{
    return harness_run(w.h, args, res);
}

static struct tj *parse_json(const struct tu_cmd_result *res)
{
    char err[128];
    struct tj *j = tj_parse(res->out, err, sizeof(err));
    if (!j)
        fail_msg("probe --json printed no JSON (%s): %s", err, res->out);
    return j;
}

/* Whether path is a JSON boolean of value want. */
static bool json_bool_is(const struct tj *j, const char *path, bool want)
{
    const struct tj *v = tj_path(j, path);
    return v && v->type == TJ_BOOL && v->boolean == want;
}

static void test_json(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        const struct probe_row *r = &rows[i];
        char url[128];
        snprintf(url, sizeof(url), "%s://127.0.0.1:%u/p", r->scheme, w.mb.port[r->origin]);
        const char *args[] = {"probe", url, "--json", r->opt, r->optval, NULL};
        struct tu_cmd_result res = {0};
        int rc = probe(args, &res);
        if (rc != r->exit_code)
            fail_msg("%s: exit %d, expected %d: %s%s", r->why, rc, r->exit_code, res.out,
                     res.err);
        struct tj *j = parse_json(&res);
        double v;
        assert_string_equal(tj_str(j, "phase"), r->phase);
        assert_true(tj_is_null(j, "fault")); /* no fault rule here */
        assert_true(json_bool_is(j, "aborted", false));
        if (!r->failure) {
            assert_string_equal(tj_str(j, "outcome"), "answered");
            assert_true(tj_is_null(j, "failure"));
            assert_int_equal(tj_num(j, "upstream_status", &v), 0);
            assert_int_equal((int)v, 200);
            assert_int_equal(tj_num(j, "body_bytes", &v), 0);
            assert_int_equal((int)v, 9);
            assert_int_equal(tj_num(j, "phases.first_byte", &v), 0);
        } else {
            assert_string_equal(tj_str(j, "outcome"), "failed");
            if (!tj_str(j, "failure") || strcmp(tj_str(j, "failure"), r->failure) != 0)
                fail_msg("%s: failure %s, expected %s", r->why, tj_str(j, "failure"),
                         r->failure);
            for (int p = 0; p < 3; p++) {
                char key[64];
                snprintf(key, sizeof(key), "statuses.%s", profiles[p]);
                assert_int_equal(tj_num(j, key, &v), 0);
                assert_int_equal((int)v, r->statuses[p]);
            }
            assert_int_equal(tj_num(j, "status", &v), 0);
            assert_int_equal((int)v, r->statuses[0]);
            assert_true(tj_is_null(j, "upstream_status"));
            assert_non_null(tj_str(j, "detail"));
            if (r->opt) { /* the timer given on the command line is the one that expired */
                assert_int_equal(tj_num(j, "limit_ms", &v), 0);
                assert_int_equal((int)v, 200);
            }
        }
        /* phases never add up past the total */
        const struct tj *ph = tj_get(j, "phases");
        double sum = 0, total = -1;
        for (size_t k = 0; k < ph->n; k++) {
            if (ph->items[k]->type != TJ_NUMBER)
                continue;
            if (strcmp(ph->items[k]->key, "total") == 0)
                total = ph->items[k]->number;
            else
                sum += ph->items[k]->number;
        }
        assert_true(total >= 0 && sum <= total + 0.0015);
        tj_free(j);
        tu_cmd_result_free(&res);
    }
}

/* The text timeline: the failed phase marked with its failure type and limit, every profile's
 * status, and --profile choosing the status Portico sends. */
static void test_text(void **state)
{
    (void)state;
    char url[128], want[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", w.mb.port[MB_SILENT]);
    const char *args[] = {"probe", url, "--first-byte-timeout", "200ms", "--profile",
                          "cloudflare", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(args, &res), 1);
    assert_non_null(strstr(res.out, "<- first_byte_timeout (limit 200 ms)"));
    assert_non_null(strstr(res.out, "failed: first_byte_timeout in phase first_byte"));
    assert_non_null(strstr(res.out, "standard 504, cloudflare 524, proxy 598"));
    assert_non_null(strstr(res.out, "Portico sends 524 A Timeout Occurred"));
    snprintf(want, sizeof(want), "origin 127.0.0.1:%u", w.mb.port[MB_SILENT]);
    assert_non_null(strstr(res.out, want));
    tu_cmd_result_free(&res);

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", w.mb.port[MB_OK]);
    const char *ok[] = {"probe", url, NULL};
    assert_int_equal(probe(ok, &res), 0);
    assert_non_null(strstr(res.out, "answered: 200 OK, 9 body bytes"));
    assert_non_null(strstr(res.out, "  connect "));
    tu_cmd_result_free(&res);
}

/* What a hostile origin sends after its first bytes: piece every 50 ms, never a silence
 * read_timeout would see, for 8 s at most (or until the probe leaves). */
static int drip_forever(int fd, void *arg)
{
    const char *piece = arg;
    int64_t end = tu_now_ms() + 8000;
    while (tu_now_ms() < end) {
        if (send(fd, piece, strlen(piece), MSG_NOSIGNAL) < 0)
            return 1;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* An origin that never finishes its head (a byte of it at a time, or 1xx after 1xx) keeps no
 * timer from seeing progress, and total_timeout is off by default: the probe stops waiting once
 * every timer of the upstream could have run out on each attempt ((retries + 1) x the sum of
 * the others: 2 x 800 ms here), and says so. Before, it waited for as long as the origin went
 * on (here 8 s, then a connection_reset; a real one: for ever). */
static void test_endless_head(void **state)
{
    (void)state;
    static const struct fo_step trickle[] = {FO_SEND("HTTP/1.1 200 OK\r\nX-Slow: "),
                                             FO_CALL(drip_forever, "x"), FO_END()};
    static const struct fo_step interims[] = {
        FO_CALL(drip_forever, "HTTP/1.1 102 Processing\r\n\r\n"), FO_END()};
    const struct fo_step *const scripts[] = {trickle, interims};
    for (size_t i = 0; i < ARRAY_SIZE(scripts); i++) {
        struct fake_origin *o =
            fake_origin_start(&(struct fake_origin_opts){.kind = FO_SCRIPT, .script = scripts[i]});
        assert_non_null(o);
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/", fake_origin_port(o));
        const char *args[] = {"probe", url, "--json", "--dns-timeout", "100ms",
                              "--connect-timeout", "100ms", "--tls-timeout", "100ms",
                              "--send-timeout", "100ms", "--first-byte-timeout", "200ms",
                              "--read-timeout", "200ms", NULL};
        struct tu_cmd_result res = {0};
        int64_t t0 = tu_now_ms();
        int rc = probe(args, &res);
        int64_t took = tu_now_ms() - t0;
        struct tj *j = parse_json(&res);
        const char *detail = tj_str(j, "detail");
        if (rc != 1 || !detail || !strstr(detail, "the probe stopped waiting after 1600 ms"))
            fail_msg("%s: exit %d after %lld ms: %s", i ? "endless 1xx" : "endless head", rc,
                     (long long)took, res.out);
        assert_string_equal(tj_str(j, "outcome"), "failed");
        assert_true(tj_is_null(j, "failure"));
        assert_true(took >= 1600 && took < 6000);
        tj_free(j);
        tu_cmd_result_free(&res);
        fake_origin_stop(o);
    }
}

/* -c: the route for the URL's host and path picks the upstream; its resolver and timers are
 * the configuration's, and the command line overrides a timer. */
static void test_config(void **state)
{
    (void)state;
    assert_int_equal(harness_write_config(w.h,
        "[proxy]\nlisten = 127.0.0.1:{{free_port:unused}}\nresolver = 127.0.0.1:%u\n"
        "error_profile = proxy\n"
        "[upstream named]\norigin = nx.portico.test:%u\n"
        "[upstream app]\norigin = 127.0.0.1:%u\n"
        "[route named]\nprefix = /named/\nupstream = named\n"
        "[route app]\nhost = app.test\nprefix = /\nupstream = app\n",
        fake_dns_port(w.mb.dns), w.mb.port[MB_OK], w.mb.port[MB_SILENT]), 0);
    fake_dns_set_mode(w.mb.dns, FAKE_DNS_NXDOMAIN);
    struct tu_cmd_result res = {0};
    const char *nx[] = {"probe", "-c", harness_config_path(w.h), "http://any.test/named/x",
                        "--json", NULL};
    assert_int_equal(probe(nx, &res), 1);
    struct tj *j = parse_json(&res);
    assert_string_equal(tj_str(j, "route"), "named");
    assert_string_equal(tj_str(j, "failure"), "dns_error");
    assert_string_equal(tj_str(j, "phase"), "dns");
    assert_string_equal(tj_str(j, "profile"), "proxy");
    tj_free(j);
    tu_cmd_result_free(&res);

    /* a SERVFAIL is the outcome's dns_error and its detail, nothing else: libevent's own
     * notices ("[msg] Nameserver ... has failed", "[msg] All nameservers have failed") came
     * after it on stderr */
    fake_dns_set_mode(w.mb.dns, FAKE_DNS_SERVFAIL);
    assert_int_equal(probe(nx, &res), 1);
    j = parse_json(&res);
    assert_string_equal(tj_str(j, "failure"), "dns_error");
    if (res.err[0])
        fail_msg("SERVFAIL: stderr \"%s\"", res.err);
    tj_free(j);
    tu_cmd_result_free(&res);

    fake_dns_set_mode(w.mb.dns, FAKE_DNS_ANSWER); /* nx.portico.test is 127.0.0.1 now */
    assert_int_equal(probe(nx, &res), 0);
    j = parse_json(&res);
    double v;
    assert_int_equal(tj_num(j, "phases.dns", &v), 0); /* the name was resolved */
    assert_string_equal(tj_str(j, "outcome"), "answered");
    tj_free(j);
    tu_cmd_result_free(&res);

    const char *app[] = {"probe", "-c", harness_config_path(w.h), "http://app.test:8080/x",
                         "--first-byte-timeout", "150ms", "--json", NULL};
    assert_int_equal(probe(app, &res), 1);
    j = parse_json(&res);
    assert_string_equal(tj_str(j, "upstream"), "app");
    assert_string_equal(tj_str(j, "failure"), "first_byte_timeout");
    assert_int_equal(tj_num(j, "limit_ms", &v), 0);
    assert_int_equal((int)v, 150);
    assert_int_equal(tj_num(j, "status", &v), 0);
    assert_int_equal((int)v, 598); /* the configuration's proxy profile */
    tj_free(j);
    tu_cmd_result_free(&res);

    /* an IPv6 literal names its host with or without a port (the route, not the URL, picks the
     * origin here), a URL with a query and no path asks for "/?..." and --total-timeout 0 is
     * total_timeout off, as in the configuration */
    assert_int_equal(harness_write_config(w.h, "[upstream a]\norigin = 127.0.0.1:%u\n"
                                               "[route a]\nupstream = a\n",
                                          w.mb.port[MB_OK]), 0);
    static const char *const v6[] = {"http://[::1]/x", "http://[::1]:8080/x", "http://[::1]?q=1"};
    for (size_t i = 0; i < ARRAY_SIZE(v6); i++) {
        const char *args[] = {"probe", "-c", harness_config_path(w.h), v6[i], "--total-timeout",
                              "0", NULL};
        int rc = probe(args, &res);
        if (rc != 0)
            fail_msg("%s: exit %d, stderr \"%s\"", v6[i], rc, res.err);
        tu_cmd_result_free(&res);
    }
}

/* A failure once the head went out cannot change the status: every profile sends the origin's
 * 200 and cuts the body short. The probe listed the failure table's 502, 520, 502 as what each
 * profile sends, under "Portico sends 200 OK here", and the text never said the head had come. */
static void test_after_head(void **state)
{
    (void)state;
    static const struct fo_step cut[] = {
        FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nhello"), FO_WAIT(50), FO_RST(),
        FO_END()};
    struct fake_origin *o =
        fake_origin_start(&(struct fake_origin_opts){.kind = FO_SCRIPT, .script = cut});
    assert_non_null(o);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", fake_origin_port(o));
    const char *text[] = {"probe", url, NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(text, &res), 1);
    if (!strstr(res.out, "failed: connection_reset in phase read, after the head: 200 OK and 5 "
                         "body bytes had gone out") ||
        !strstr(res.out, "standard 200, cloudflare 200, proxy 200  (Portico sends 200 OK here, "
                         "then cuts the body short)"))
        fail_msg("after the head: %s", res.out);
    tu_cmd_result_free(&res);

    const char *json[] = {"probe", url, "--json", NULL};
    assert_int_equal(probe(json, &res), 1);
    struct tj *j = parse_json(&res);
    double v;
    assert_string_equal(tj_str(j, "failure"), "connection_reset");
    assert_true(json_bool_is(j, "aborted", true));
    for (int p = 0; p < 3; p++) {
        char key[64];
        snprintf(key, sizeof(key), "statuses.%s", profiles[p]);
        assert_int_equal(tj_num(j, key, &v), 0);
        assert_int_equal((int)v, 200);
    }
    assert_int_equal(tj_num(j, "body_bytes", &v), 0);
    assert_int_equal((int)v, 5);
    tj_free(j);
    tu_cmd_result_free(&res);
    fake_origin_stop(o);
}

/* A fault rule's failure is the real one on the wire, timer, detail and all: the probe names the
 * rule, as the access log and /status do (it showed a connect_timeout of the origin's and nothing
 * else, for an origin never contacted). */
static void test_fault_named(void **state)
{
    (void)state;
    assert_int_equal(harness_write_config(w.h, "[upstream u]\norigin = 127.0.0.1:%u\n"
                                                "[route r]\nupstream = u\n"
                                                "[fault refuse-all]\nfailure = connect_refused\n",
                                          w.mb.port[MB_OK]), 0);
    const char *text[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/x", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(text, &res), 1);
    if (!strstr(res.out, "failed: connect_refused") ||
        !strstr(res.out, "  fault       refuse-all (a fault rule shaped this exchange)"))
        fail_msg("fault rule: %s", res.out);
    tu_cmd_result_free(&res);
    const char *json[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/x", "--json",
                          NULL};
    assert_int_equal(probe(json, &res), 1);
    struct tj *j = parse_json(&res);
    assert_string_equal(tj_str(j, "fault"), "refuse-all");
    tj_free(j);
    tu_cmd_result_free(&res);
}

/* A fault rule's status is Portico's own answer: the probe says so, with the status and body the
 * client would get (it said "failed: no answer in phase done" for a 503 that went out); a drop
 * sends nothing, and is no answer still. */
static void test_fault_status(void **state)
{
    (void)state;
    assert_int_equal(harness_write_config(w.h, "[upstream u]\norigin = 127.0.0.1:%u\n"
                                                "[route r]\nupstream = u\n"
                                                "[fault busy]\nprefix = /busy\nstatus = 503\n"
                                                "[fault gone]\nprefix = /gone\ndrop = on\n",
                                          w.mb.port[MB_OK]), 0);
    const char *busy[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/busy", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(busy, &res), 1);
    if (!strstr(res.out, "  outcome     failed: Portico's own answer: 503 Service Unavailable, "
                         "24 body bytes (the origin was not asked)\n") ||
        !strstr(res.out, "  detail      fault busy answered 503\n") || strstr(res.out, "no answer"))
        fail_msg("status rule: %s", res.out);
    tu_cmd_result_free(&res);
    const char *gone[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/gone", NULL};
    assert_int_equal(probe(gone, &res), 1);
    if (!strstr(res.out, "  outcome     failed: no answer in phase done\n"))
        fail_msg("drop rule: %s", res.out);
    tu_cmd_result_free(&res);
}

struct usage_row {
    const char *why;
    const char *args[6];
    const char *err;              /* part of stderr */
};

static const struct usage_row usage_rows[] = {
    {"no URL", {"probe", NULL}, "which URL"},
    {"two URLs", {"probe", "http://a/", "http://b/", NULL}, "one URL at a time"},
    {"not http", {"probe", "ftp://127.0.0.1/", NULL}, "http:// or https://"},
    {"no host", {"probe", "http:///x", NULL}, "no host"},
    {"bad port", {"probe", "http://127.0.0.1:99999/", NULL}, "port"},
    {"bad duration", {"probe", "http://127.0.0.1/", "--connect-timeout", "soon", NULL},
     "not a duration"},
    {"zero duration", {"probe", "http://127.0.0.1/", "--tls-timeout", "0", NULL},
     "not a duration"},
    {"unknown profile", {"probe", "http://127.0.0.1/", "--profile", "akamai", NULL},
     "unknown profile"},
    {"unknown option", {"probe", "http://127.0.0.1/", "--frobnicate", NULL},
     "unknown option --frobnicate"},
    /* the option itself is named, not the word before it (it said "unknown option probe") */
    {"unknown short options grouped", {"probe", "-xy", "http://127.0.0.1/", NULL},
     "unknown option -x"},
    {"unknown short option", {"probe", "-q", "http://127.0.0.1/", NULL}, "unknown option -q"},
    {"value for a flag", {"probe", "--json=yes", "http://127.0.0.1/", NULL},
     "unknown option --json=yes"},
    {"missing value", {"probe", "http://127.0.0.1/", "--connect-timeout", NULL}, "needs a value"},
    {"a space in the URL", {"probe", "http://127.0.0.1/a b", NULL}, "spaces or control"},
    {"user information", {"probe", "http://user@127.0.0.1/", NULL}, "user information"},
    {"missing config", {"probe", "-c", "/nonexistent/portico.ini", "http://127.0.0.1/", NULL},
     "/nonexistent/portico.ini"},
};

static void test_usage(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(usage_rows); i++) {
        struct tu_cmd_result res = {0};
        int rc = probe(usage_rows[i].args, &res);
        if (rc != 2 || !strstr(res.err, usage_rows[i].err) || res.out[0])
            fail_msg("%s: exit %d, stdout \"%s\", stderr \"%s\"", usage_rows[i].why, rc, res.out,
                     res.err);
        tu_cmd_result_free(&res);
    }
    /* a configuration whose routes do not cover the URL */
    assert_int_equal(harness_write_config(w.h, "[upstream a]\norigin = 127.0.0.1:1\n"
                                                "[route a]\nhost = only.test\nupstream = a\n"), 0);
    const char *args[] = {"probe", "-c", harness_config_path(w.h), "http://other.test/", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(args, &res), 2);
    assert_non_null(strstr(res.err, "no route"));
    tu_cmd_result_free(&res);
    /* a URL longer than the configuration's max_request_line: Portico would refuse it (414),
     * so it is bad usage with the reason, not an upstream failure (it was exit 1, no reason) */
    assert_int_equal(harness_write_config(w.h, "[proxy]\nmax_request_line = 256\n"
                                                "[upstream a]\norigin = 127.0.0.1:1\n"
                                                "[route a]\nupstream = a\n"), 0);
    char long_url[512];
    int n = snprintf(long_url, sizeof(long_url), "http://a.test/");
    memset(long_url + n, 'p', 300);
    long_url[n + 300] = '\0';
    const char *too_long[] = {"probe", "-c", harness_config_path(w.h), long_url, NULL};
    int rc = probe(too_long, &res);
    if (rc != 2 || !strstr(res.err, "414") || res.out[0])
        fail_msg("URL over max_request_line: exit %d, stdout \"%s\", stderr \"%s\"", rc, res.out,
                 res.err);
    tu_cmd_result_free(&res);
    /* a path Portico refuses after parsing the head (dot segments, however spelled): bad usage
     * with the reason too, as the README says (it was exit 1, "failed: no answer in phase
     * done", with no status) */
    static const char *const dotted[] = {"http://a.test/x/../y", "http://a.test/x/%2e%2E/y",
                                         "http://a.test/x/..;/y", "http://a.test/.."};
    for (size_t i = 0; i < ARRAY_SIZE(dotted); i++) {
        const char *dot[] = {"probe", "-c", harness_config_path(w.h), dotted[i], NULL};
        rc = probe(dot, &res);
        if (rc != 2 || !strstr(res.err, "400 Bad Request (dot segments") || res.out[0])
            fail_msg("%s: exit %d, stdout \"%s\", stderr \"%s\"", dotted[i], rc, res.out,
                     res.err);
        tu_cmd_result_free(&res);
    }
    const char *help[] = {"probe", "--help", NULL};
    assert_int_equal(probe(help, &res), 0);
    assert_non_null(strstr(res.out, "usage: portico probe"));
    tu_cmd_result_free(&res);
}

/* --json names the URL as typed, whole: a long path and bytes JSON escapes (it cut it at 300). */
static void test_json_long_url(void **state)
{
    (void)state;
    char url[1024];
    int n = snprintf(url, sizeof(url), "http://127.0.0.1:%u/a\"b\\c/", w.mb.port[MB_OK]);
    memset(url + n, 'p', 600);
    url[n + 600] = '\0';
    const char *args[] = {"probe", url, "--json", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(args, &res), 0);
    struct tj *j = parse_json(&res);
    assert_string_equal(tj_str(j, "url"), url);
    tj_free(j);
    tu_cmd_result_free(&res);
}

/* A path as long as Portico takes from a client (under the default 8k max_request_line) is
 * probed: it was "the path is too long" (exit 2) from 2 KiB on, so a URL with a long query,
 * which every client could fetch, could not be probed. */
static void test_long_path(void **state)
{
    (void)state;
    static char url[8192];
    int n = snprintf(url, sizeof(url), "http://127.0.0.1:%u/p?q=", w.mb.port[MB_OK]);
    memset(url + n, 'q', 6000);
    url[n + 6000] = '\0';
    const char *args[] = {"probe", url, NULL};
    struct tu_cmd_result res = {0};
    int rc = probe(args, &res);
    if (rc != 0 || !strstr(res.out, "answered: 200 OK"))
        fail_msg("a 6 KB path: exit %d, stdout \"%.200s\", stderr \"%.200s\"", rc, res.out,
                 res.err);
    tu_cmd_result_free(&res);
}

/* The interim responses listed are every one Portico relays (the access log's list): the
 * simulator sends 24 x 102, Portico relays them all, the probe listed the first 16. */
static void test_interim_all(void **state)
{
    (void)state;
    char url[256];
    int n = snprintf(url, sizeof(url), "http://sim.test/interim/102");
    for (int i = 1; i < 24; i++)
        n += snprintf(url + n, sizeof(url) - (size_t)n, ",102");
    snprintf(url + n, sizeof(url) - (size_t)n, "?delay_ms=0");
    assert_int_equal(harness_write_config(w.h, "[upstream sim]\norigin = sim\n"
                                                "[route sim]\nupstream = sim\n"), 0);
    const char *args[] = {"probe", "-c", harness_config_path(w.h), url, "--json", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(args, &res), 0);
    struct tj *j = parse_json(&res);
    const struct tj *interim = tj_get(j, "interim");
    assert_non_null(interim);
    assert_int_equal(interim->type, TJ_ARRAY);
    assert_int_equal(interim->n, 24);
    for (size_t i = 0; i < interim->n; i++)
        assert_int_equal((int)interim->items[i]->number, 102);
    tj_free(j);
    tu_cmd_result_free(&res);
}

/* ---- the request the user means: -X, -H, -d, --data-binary ---- */

/* A fake origin on a port of the test range (PORTICO_TEST_PORTS). */
static struct fake_origin *origin_on(struct fake_origin_opts opts)
{
    uint16_t port;
    assert_int_equal(tu_free_port(&port), 0);
    opts.port = port;
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    return o;
}

/* Runs args (NULL-ended) and returns the JSON it printed; fails unless it exits want. */
static struct tj *probe_json(const char *const *args, int want, struct tu_cmd_result *res)
{
    int rc = probe(args, res);
    const char *url = args[1];
    for (size_t i = 1; args[i]; i++) /* named by its URL */
        if (strncmp(args[i], "http", 4) == 0)
            url = args[i];
    if (rc != want)
        fail_msg("%s: exit %d, expected %d: %s%s", url, rc, want, res->out, res->err);
    return parse_json(res);
}

/* Whether the JSON array at key holds the string want. */
static bool json_list_has(const struct tj *j, const char *key, const char *want)
{
    const struct tj *a = tj_get(j, key);
    for (size_t i = 0; a && a->type == TJ_ARRAY && i < a->n; i++)
        if (a->items[i]->type == TJ_STRING && strcmp(a->items[i]->string, want) == 0)
            return true;
    return false;
}

/* A route chosen by a header condition is reached with -H and missed without it: the probe
 * sent a GET with no field of the user's, so a canary route could not be probed at all. */
static void test_header_route(void **state)
{
    (void)state;
    struct fake_origin *a = origin_on((struct fake_origin_opts){.kind = FO_OK});
    struct fake_origin *b = origin_on((struct fake_origin_opts){.kind = FO_OK});
    assert_int_equal(harness_write_config(w.h,
        "[upstream stable]\norigin = 127.0.0.1:%u\n[upstream canary]\norigin = 127.0.0.1:%u\n"
        "[route canary]\nheader = X-Canary: 1\nupstream = canary\n"
        "[route stable]\nupstream = stable\n", fake_origin_port(a), fake_origin_port(b)), 0);
    struct tu_cmd_result res = {0};
    const char *plain[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/x", "--json",
                           NULL};
    struct tj *j = probe_json(plain, 0, &res);
    assert_string_equal(tj_str(j, "route"), "stable");
    assert_string_equal(tj_str(j, "method"), "GET");
    assert_false(json_list_has(j, "fields", "X-Canary"));
    tj_free(j);
    tu_cmd_result_free(&res);
    const char *canary[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/x", "--json",
                            "-H", "X-Canary: 1", NULL};
    j = probe_json(canary, 0, &res);
    assert_string_equal(tj_str(j, "route"), "canary");
    assert_string_equal(tj_str(j, "upstream"), "canary");
    assert_true(json_list_has(j, "fields", "X-Canary"));
    tj_free(j);
    tu_cmd_result_free(&res);
    /* the field reached the canary's origin; the stable one had only the plain probe */
    assert_int_equal(fake_origin_wait_requests(b, 1, 2000), 0);
    char *v = fake_origin_request_header(b, 0, "X-Canary");
    assert_non_null(v);
    assert_string_equal(v, "1");
    free(v);
    assert_int_equal(fake_origin_requests(a), 1);
    /* the text says the method and the fields sent */
    const char *text[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/x", "-H",
                          "X-Canary: 1", NULL};
    assert_int_equal(probe(text, &res), 0);
    if (!strstr(res.out, "  request     GET with Host, User-Agent, Accept, X-Canary, Connection; "
                         "no body\n") || !strstr(res.out, "via         route canary, upstream "
                                                          "canary"))
        fail_msg("-H X-Canary: %s", res.out);
    tu_cmd_result_free(&res);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* The body arrives at the origin byte for byte: a binary file with NULs, CR and LF through
 * --data-binary @FILE (with -X POST), -d DATA implying POST, -d @FILE without its CR and LF as
 * curl sends it, Content-Type curl's unless a -H gives one. */
static void test_body(void **state)
{
    (void)state;
    struct fake_origin *o = origin_on((struct fake_origin_opts){.kind = FO_ECHO});
    static const char bin[] = "a\0b\r\n\0\xff\x80 end\n";
    char path[512];
    snprintf(path, sizeof(path), "%s/body.bin", harness_dir(w.h));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bin, 1, sizeof(bin) - 1, f), sizeof(bin) - 1);
    fclose(f);
    char url[128], at[600];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/upload", fake_origin_port(o));
    snprintf(at, sizeof(at), "@%s", path);
    struct tu_cmd_result res = {0};
    double v;
    const char *binary[] = {"probe", url, "--json", "-X", "POST", "--data-binary", at, NULL};
    struct tj *j = probe_json(binary, 0, &res);
    assert_string_equal(tj_str(j, "method"), "POST");
    assert_int_equal(tj_num(j, "request_body_bytes", &v), 0);
    assert_int_equal((int)v, (int)sizeof(bin) - 1);
    assert_int_equal(tj_num(j, "body_bytes", &v), 0); /* FO_ECHO sends it back */
    assert_int_equal((int)v, (int)sizeof(bin) - 1);
    tj_free(j);
    tu_cmd_result_free(&res);
    size_t len = 0;
    char *got = fake_origin_request_body(o, 0, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof(bin) - 1);
    assert_memory_equal(got, bin, len);
    free(got);
    char *head = fake_origin_request_head(o, 0);
    assert_non_null(head);
    if (strncmp(head, "POST /upload HTTP/1.1\r\n", 23) != 0 ||
        !strstr(head, "Content-Type: application/x-www-form-urlencoded\r\n"))
        fail_msg("--data-binary: %s", head);
    free(head);

    const char *data[] = {"probe", url, "-d", "k=v&x=1", "-H", "Content-Type: text/plain",
                          NULL};
    assert_int_equal(probe(data, &res), 0);
    if (!strstr(res.out, "  request     POST with Host, User-Agent, Accept, Content-Type, "
                         "Content-Length, Connection; a body of 7 bytes\n"))
        fail_msg("-d: %s", res.out);
    tu_cmd_result_free(&res);
    got = fake_origin_request_body(o, 1, &len);
    head = fake_origin_request_head(o, 1);
    assert_non_null(got);
    assert_non_null(head);
    assert_int_equal(len, 7);
    assert_memory_equal(got, "k=v&x=1", 7);
    if (strncmp(head, "POST /upload ", 13) != 0 || !strstr(head, "Content-Type: text/plain\r\n") ||
        strstr(head, "x-www-form-urlencoded"))
        fail_msg("-d with a Content-Type: %s", head);
    free(got);
    free(head);

    const char *strip[] = {"probe", url, "-X", "PUT", "-d", at, NULL};
    assert_int_equal(probe(strip, &res), 0);
    tu_cmd_result_free(&res);
    got = fake_origin_request_body(o, 2, &len);
    head = fake_origin_request_head(o, 2);
    assert_non_null(got);
    assert_int_equal(len, sizeof(bin) - 1 - 3); /* its CR, LF and the last LF dropped */
    assert_memory_equal(got, "a\0b\0\xff\x80 end", len);
    assert_int_equal(strncmp(head, "PUT /upload ", 12), 0);
    free(got);
    free(head);
    fake_origin_stop(o);
}

/* -X HEAD: the origin is asked HEAD and its Content-Length frames nothing, so the probe reads no
 * body and ends at once (waiting for 9 bytes that never come would be a read_timeout). */
static void test_head(void **state)
{
    (void)state;
    static const struct fo_step head_only[] = {
        FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"), FO_HOLD(), FO_END()};
    struct fake_origin *o =
        origin_on((struct fake_origin_opts){.kind = FO_SCRIPT, .script = head_only});
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/h", fake_origin_port(o));
    /* -X HEAD, and curl's -I and --head (which getopt took for an abbreviation of --header) */
    const char *spellings[][2] = {{"-X", "HEAD"}, {"-I", NULL}, {"--head", NULL}};
    for (int k = 0; k < 3; k++) {
        const char *args[] = {"probe", url, "--json", "--read-timeout", "5s", spellings[k][0],
                              spellings[k][1], NULL};
        struct tu_cmd_result res = {0};
        struct tj *j = probe_json(args, 0, &res);
        double v;
        assert_string_equal(tj_str(j, "method"), "HEAD");
        assert_string_equal(tj_str(j, "outcome"), "answered");
        assert_int_equal(tj_num(j, "body_bytes", &v), 0);
        assert_int_equal((int)v, 0);
        tj_free(j);
        tu_cmd_result_free(&res);
        char *head = fake_origin_request_head(o, k);
        assert_non_null(head);
        if (strncmp(head, "HEAD /h HTTP/1.1\r\n", 18) != 0)
            fail_msg("%s: %.40s", spellings[k][0], head);
        free(head);
    }
    fake_origin_stop(o);
}

/* A route chosen by a cookie, and a sticky upstream's pin: the cookie's origin takes the probe
 * (via names it, "sticky hit"), every time, whatever round robin would say; none is "new". */
static void test_cookie_sticky(void **state)
{
    (void)state;
    struct fake_origin *a = origin_on((struct fake_origin_opts){.kind = FO_OK});
    struct fake_origin *b = origin_on((struct fake_origin_opts){.kind = FO_OK});
    assert_int_equal(harness_write_config(w.h,
        "[upstream pair]\norigin = 127.0.0.1:%u cookie=one\norigin = 127.0.0.1:%u cookie=two\n"
        "sticky = cookie SRV\n[upstream beta]\norigin = 127.0.0.1:%u\n"
        "[route beta]\ncookie = beta=1\nupstream = beta\n[route pair]\nupstream = pair\n",
        fake_origin_port(a), fake_origin_port(b), fake_origin_port(a)), 0);
    struct tu_cmd_result res = {0};
    const char *beta[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", "--json",
                          "-H", "Cookie: theme=dark; beta=1", NULL};
    struct tj *j = probe_json(beta, 0, &res);
    assert_string_equal(tj_str(j, "route"), "beta");
    assert_true(tj_is_null(j, "sticky"));
    tj_free(j);
    tu_cmd_result_free(&res);

    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", fake_origin_port(b));
    for (int i = 0; i < 3; i++) {
        const char *pinned[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/",
                                "--json", "-H", "Cookie: SRV=two", NULL};
        j = probe_json(pinned, 0, &res);
        assert_string_equal(tj_str(j, "route"), "pair");
        assert_string_equal(tj_str(j, "origin"), want);
        assert_string_equal(tj_str(j, "sticky"), "hit");
        tj_free(j);
        tu_cmd_result_free(&res);
    }
    const char *text[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", "-H",
                          "Cookie: SRV=two", NULL};
    assert_int_equal(probe(text, &res), 0);
    char line[160];
    snprintf(line, sizeof(line), "  via         route pair, upstream pair, origin %s, sticky hit, "
                                 "standard profile\n", want);
    if (!strstr(res.out, line))
        fail_msg("sticky: %s", res.out);
    tu_cmd_result_free(&res);
    const char *none[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", "--json",
                          NULL};
    j = probe_json(none, 0, &res);
    assert_string_equal(tj_str(j, "sticky"), "new");
    /* the cookie Portico set names the origin that answered: the pin for the next probe */
    bool on_b = strcmp(tj_str(j, "origin"), want) == 0;
    assert_string_equal(tj_str(j, "sticky_cookie"), on_b ? "SRV=two" : "SRV=one");
    tj_free(j);
    tu_cmd_result_free(&res);
    assert_int_equal(fake_origin_requests(b), on_b ? 5 : 4);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* A Portico-Fault header rehearses a fault when FILE's header_control allows it, and is only
 * removed when it does not: the probe acts as a client of this host, as the proxy would. */
static void test_fault_header(void **state)
{
    (void)state;
    struct fake_origin *o = origin_on((struct fake_origin_opts){.kind = FO_OK});
    static const char *const control[] = {"on", "off"};
    for (size_t i = 0; i < ARRAY_SIZE(control); i++) {
        assert_int_equal(harness_write_config(w.h, "[faults]\nheader_control = %s\n"
                                                   "[upstream u]\norigin = 127.0.0.1:%u\n"
                                                   "[route r]\nupstream = u\n",
                                              control[i], fake_origin_port(o)), 0);
        const char *args[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/x",
                              "-H", "Portico-Fault: status=503", NULL};
        struct tu_cmd_result res = {0};
        int rc = probe(args, &res);
        bool on = i == 0;
        if (rc != (on ? 1 : 0) ||
            !strstr(res.out, on ? "failed: Portico's own answer: 503 Service Unavailable"
                                : "answered: 200 OK"))
            fail_msg("header_control = %s: exit %d: %s%s", control[i], rc, res.out, res.err);
        tu_cmd_result_free(&res);
    }
    assert_int_equal(fake_origin_requests(o), 1); /* only with header_control off */
    char *v = fake_origin_request_header(o, 0, "Portico-Fault");
    assert_null(v); /* removed before the origin, honoured or not */
    fake_origin_stop(o);
}

/* A route that answers itself (return) is probed: Portico's own answer, the redirect's Location
 * and exit 0 (it was refused, exit 2: "no origin to probe"). */
static void test_return_route(void **state)
{
    (void)state;
    assert_int_equal(harness_write_config(w.h, "[route old]\nprefix = /old\n"
                                               "return = 301 https://$host/new$request_uri\n"), 0);
    const char *text[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/old?q=1", NULL};
    struct tu_cmd_result res = {0};
    int rc = probe(text, &res);
    if (rc != 0 ||
        !strstr(res.out, "  via         route old, return 301 (Portico answers itself, no "
                         "upstream), standard profile\n") ||
        !strstr(res.out, "  outcome     answered: Portico's own answer: 301 Moved Permanently, 0 "
                         "body bytes (route old's return, no origin)\n") ||
        !strstr(res.out, "  location    https://a.test/new/old?q=1\n"))
        fail_msg("return: exit %d: %s%s", rc, res.out, res.err);
    tu_cmd_result_free(&res);
    const char *json[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/old", "--json",
                          NULL};
    struct tj *j = probe_json(json, 0, &res);
    double v;
    assert_int_equal(tj_num(j, "return", &v), 0);
    assert_int_equal((int)v, 301);
    assert_true(tj_is_null(j, "upstream"));
    assert_string_equal(tj_str(j, "location"), "https://a.test/new/old");
    tj_free(j);
    tu_cmd_result_free(&res);
}

/* An https:// URL is a request over TLS for the routes, as the report's route said: the probe's
 * exchange matched it as http, so `scheme = https` named the route and the http route's origin
 * answered. */
static void test_scheme_route(void **state)
{
    (void)state;
    struct fake_origin *a = origin_on((struct fake_origin_opts){.kind = FO_OK});
    struct fake_origin *b = origin_on((struct fake_origin_opts){.kind = FO_OK});
    assert_int_equal(harness_write_config(w.h,
        "[upstream sec]\norigin = 127.0.0.1:%u\n[upstream plain]\norigin = 127.0.0.1:%u\n"
        "[route sec]\nscheme = https\nupstream = sec\n"
        "[route plain]\nscheme = http\nupstream = plain\n",
        fake_origin_port(a), fake_origin_port(b)), 0);
    const char *args[] = {"probe", "-c", harness_config_path(w.h), "https://a.test/", "--json",
                          NULL};
    struct tu_cmd_result res = {0};
    struct tj *j = probe_json(args, 0, &res);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", fake_origin_port(a));
    assert_string_equal(tj_str(j, "route"), "sec");
    assert_string_equal(tj_str(j, "origin"), want);
    tj_free(j);
    tu_cmd_result_free(&res);
    char *proto = fake_origin_request_header(a, 0, "X-Forwarded-Proto");
    assert_non_null(proto);
    assert_string_equal(proto, "https");
    free(proto);
    assert_int_equal(fake_origin_requests(b), 0);
    fake_origin_stop(a);
    fake_origin_stop(b);
}

/* Requests Portico would refuse from a client, and options that make none: exit 2, one line. */
static void test_request_refusals(void **state)
{
    (void)state;
    assert_int_equal(harness_write_config(w.h, "[proxy]\nmax_body_size = 4\n"
                                               "[upstream a]\norigin = 127.0.0.1:1\n"
                                               "[route a]\nupstream = a\n"), 0);
    const char *cfg = harness_config_path(w.h);
    static const struct {
        const char *why;
        const char *opt, *val;
        const char *err;          /* part of stderr */
    } refusals[] = {
        {"CONNECT, refused by Portico", "-X", "CONNECT", "-X 'CONNECT': Portico refuses CONNECT"},
        {"a method that is no token", "-X", "GE T", "a method is a token"},
        {"a field name with a blank", "-H", "X Canary: 1", "a field name is a token"},
        {"no colon", "-H", "X-Canary", "not 'Name: value'"},
        {"a CR LF in the value", "-H", "X-A: 1\r\nX-B: 2", "-H 'X-A...': a CR or LF"},
        {"a control byte in the value", "-H", "X-A: 1\x01", "400 Bad Request (invalid character"},
        {"Content-Length", "-H", "Content-Length: 5", "its body's length itself"},
        {"Transfer-Encoding", "-H", "Transfer-Encoding: chunked", "never chunked"},
        {"no Host", "-H", "Host:", "400 Bad Request (missing Host"},
        {"an expectation Portico refuses", "-H", "Expect: later", "417 Expectation Failed"},
        {"over max_body_size", "-d", "12345", "413 Content Too Large"},
        {"no such file", "--data-binary", "@/nonexistent/body", "@/nonexistent/body: No such"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(refusals); i++) {
        const char *args[] = {"probe", "-c", cfg, "http://a.test/", refusals[i].opt,
                              refusals[i].val, NULL};
        struct tu_cmd_result res = {0};
        int rc = probe(args, &res);
        if (rc != 2 || !strstr(res.err, refusals[i].err) || res.out[0] ||
            strchr(res.err, '\n') != res.err + strlen(res.err) - 1)
            fail_msg("%s: exit %d, stdout \"%s\", stderr \"%s\"", refusals[i].why, rc, res.out,
                     res.err);
        tu_cmd_result_free(&res);
    }
    const char *two[] = {"probe", "-c", cfg, "http://a.test/", "-d", "1", "--data-binary", "2",
                         NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(two, &res), 2);
    assert_non_null(strstr(res.err, "one body a probe"));
    tu_cmd_result_free(&res);
    const char *help[] = {"probe", "--help", NULL};
    assert_int_equal(probe(help, &res), 0);
    if (!strstr(res.out, "[-X METHOD | -I] [-H 'Name: value']...") ||
        !strstr(res.out, "--data-binary"))
        fail_msg("--help: %s", res.out);
    tu_cmd_result_free(&res);
}

/* A retry_on status sends the probe to the next origin: via names the one that answered and
 * says it was the second attempt (the text said nothing of the first; only --json's attempts). A
 * POST is not retried: the 503 is the answer. */
static void test_retry_on(void **state)
{
    (void)state;
    struct fake_origin *busy = origin_on((struct fake_origin_opts){.kind = FO_OK, .status = 503});
    struct fake_origin *ok = origin_on((struct fake_origin_opts){.kind = FO_OK});
    assert_int_equal(harness_write_config(w.h,
        "[upstream app]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\nretries = 1\n"
        "retry_on = 503\n[route app]\nupstream = app\n",
        fake_origin_port(busy), fake_origin_port(ok)), 0);
    const char *get[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", NULL};
    struct tu_cmd_result res = {0};
    assert_int_equal(probe(get, &res), 0);
    char line[160];
    snprintf(line, sizeof(line), "origin 127.0.0.1:%u, standard profile, attempt 2\n",
             fake_origin_port(ok));
    if (!strstr(res.out, line) || !strstr(res.out, "answered: 200 OK") ||
        !strstr(res.err, "answered 503; retrying on"))
        fail_msg("retry_on: %s%s", res.out, res.err);
    tu_cmd_result_free(&res);
    const char *post[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", "-d", "x",
                          NULL};
    assert_int_equal(probe(post, &res), 0);
    snprintf(line, sizeof(line), "origin 127.0.0.1:%u, standard profile\n",
             fake_origin_port(busy));
    if (!strstr(res.out, line) || !strstr(res.out, "answered: 503 Service Unavailable"))
        fail_msg("retry_on, POST: %s%s", res.out, res.err);
    tu_cmd_result_free(&res);
    fake_origin_stop(busy);
    fake_origin_stop(ok);
}

/* A refused -H is named, never echoed whole: its value may be a Cookie or an Authorization, and
 * a script's stderr lands in CI logs (it printed the argument up to its CR or LF). */
static void test_refusal_hides_value(void **state)
{
    (void)state;
    static const char *const fields[] = {
        "Cookie: session=hunter2\r\nX-B: 2", /* a CR or LF */
        "Authorization Bearer hunter2",       /* no colon */
        "Cookie : session=hunter2",           /* a blank before the colon */
        "Content-Length: hunter2",            /* the probe's own field */
    };
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        const char *args[] = {"probe", "http://127.0.0.1:1/", "-H", fields[i], NULL};
        struct tu_cmd_result res = {0};
        int rc = probe(args, &res);
        if (rc != 2 || strstr(res.err, "hunter2") || !strstr(res.err, "portico probe: -H '"))
            fail_msg("-H #%zu: exit %d, stderr \"%s\"", i, rc, res.err);
        tu_cmd_result_free(&res);
    }
}

/* OPTIONS with Max-Forwards: 0 is Portico's to answer (RFC 9110 7.6.2): a 200 with nothing
 * failed, exit 0 (it read "failed: Portico's own answer: 200 OK", exit 1, an upstream failure). */
static void test_final_answer(void **state)
{
    (void)state;
    struct fake_origin *o = origin_on((struct fake_origin_opts){.kind = FO_OK});
    assert_int_equal(harness_write_config(w.h, "[upstream u]\norigin = 127.0.0.1:%u\n"
                                               "[route r]\nupstream = u\n",
                                          fake_origin_port(o)), 0);
    const char *text[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", "-X",
                          "OPTIONS", "-H", "Max-Forwards: 0", NULL};
    struct tu_cmd_result res = {0};
    int rc = probe(text, &res);
    if (rc != 0 || !strstr(res.out, "  outcome     answered: Portico's own answer: 200 OK, 0 body "
                                    "bytes (the origin was not asked)\n"))
        fail_msg("Max-Forwards: 0: exit %d: %s%s", rc, res.out, res.err);
    tu_cmd_result_free(&res);
    const char *json[] = {"probe", "-c", harness_config_path(w.h), "http://a.test/", "-X",
                          "OPTIONS", "-H", "Max-Forwards: 0", "--json", NULL};
    struct tj *j = probe_json(json, 0, &res);
    assert_string_equal(tj_str(j, "outcome"), "answered");
    tj_free(j);
    tu_cmd_result_free(&res);
    assert_int_equal(fake_origin_requests(o), 0);
    fake_origin_stop(o);
}

/* As many fields as Portico takes from a client can be sent: 80 -H reach the origin (the probe
 * refused more than 64 -H, so such a request could not be probed), and past Portico's 100 fields
 * the refusal is Portico's own, 431, as the README says. */
static void test_many_fields(void **state)
{
    (void)state;
    struct fake_origin *o = origin_on((struct fake_origin_opts){.kind = FO_OK});
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/f", fake_origin_port(o));
    static char names[100][32];
    /* past harness_run's argument bound (HARNESS_MAX_ARGS): run as it does, argv whole */
    const char *args[3 + 2 * 100 + 1] = {getenv("PORTICO_BIN"), "probe", url};
    assert_non_null(args[0]);
    size_t n = 3;
    for (int i = 0; i < 80; i++) {
        snprintf(names[i], sizeof(names[i]), "X-F%d: %d", i, i);
        args[n++] = "-H";
        args[n++] = names[i];
    }
    args[n] = NULL;
    struct tu_cmd_result res = {0};
    int rc = tu_run_command(args, 10000, &res);
    if (rc != 0 || !strstr(res.out, "answered: 200 OK"))
        fail_msg("80 -H: exit %d: %s%s", rc, res.out, res.err);
    tu_cmd_result_free(&res);
    char *head = fake_origin_request_head(o, 0);
    assert_non_null(head);
    if (!strstr(head, "\r\nX-F0: 0\r\n") || !strstr(head, "\r\nX-F79: 79\r\n"))
        fail_msg("80 -H, the origin got: %s", head);
    free(head);
    for (int i = 80; i < 100; i++) {
        snprintf(names[i], sizeof(names[i]), "X-F%d: %d", i, i);
        args[n++] = "-H";
        args[n++] = names[i];
    }
    args[n] = NULL;
    rc = tu_run_command(args, 10000, &res);
    if (rc != 2 || !strstr(res.err, "Portico would refuse this request: 431"))
        fail_msg("100 -H: exit %d: %s%s", rc, res.out, res.err);
    tu_cmd_result_free(&res);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_long_url),
        cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_endless_head),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_after_head),
        cmocka_unit_test(test_fault_named),
        cmocka_unit_test(test_fault_status),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_interim_all),
        cmocka_unit_test(test_header_route),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_cookie_sticky),
        cmocka_unit_test(test_fault_header),
        cmocka_unit_test(test_return_route),
        cmocka_unit_test(test_scheme_route),
        cmocka_unit_test(test_request_refusals),
        cmocka_unit_test(test_retry_on),
        cmocka_unit_test(test_refusal_hides_value),
        cmocka_unit_test(test_final_answer),
        cmocka_unit_test(test_many_fields),
    };
    return cmocka_run_group_tests(tests, world_up, world_down);
}
