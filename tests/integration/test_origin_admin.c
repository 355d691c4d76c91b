/*
 * test_origin_admin.c — origins out of rotation at run time through the admin API
 * (/upstreams, admin_upstreams.h), with the real binary and fake origins on loopback that
 * answer their own names: drain keeps the sticky clients only, maint closes the pooled
 * connections and stops the checks, ready brings it back, a weight shifts round robin's split,
 * the state survives a SIGHUP and goes with an origin the file drops, the guards and errors
 * are the fault API's, and every origin out answers 503 saying so.
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
#include <time.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define NORIGINS 2
#define TOKEN "s3cret"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"

static const char *const names[NORIGINS] = {"o0\n", "o1\n"};

struct origins {
    struct fake_origin *o[NORIGINS];
    uint16_t port[NORIGINS];
};

static void origins_start(struct origins *os)
{
    for (int i = 0; i < NORIGINS; i++) {
        struct fake_origin_opts opts = {.kind = FO_OK, .body = names[i]};
        assert_int_equal(tu_free_port(&opts.port), 0); /* the range PORTICO_TEST_PORTS gives */
        os->o[i] = px_origin_start(&opts);
        os->port[i] = fake_origin_port(os->o[i]);
    }
}

/* The configuration: two workers (a change must reach both), `proxy_extra` in [proxy], then
 * [upstream u] with `extra` and the origin lines. */
static const char config[] = "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nworkers = 2\n"
                             "admin_listen = 127.0.0.1:{{port:admin}}\n"
                             "access_log = {{dir}}/access.log\naccess_log_format = text\n%s"
                             "[upstream u]\n%s%s";

static void write_config(struct harness *h, const char *proxy_extra, const char *extra,
                         const char *origins)
{
    assert_int_equal(harness_write_config(h, config, proxy_extra ? proxy_extra : "",
                                          extra ? extra : "", origins),
                     0);
}

static struct harness *start(struct origins *os, const char *proxy_extra, const char *extra)
{
    origins_start(os);
    char lines[128];
    snprintf(lines, sizeof(lines), "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n",
             os->port[0], os->port[1]);
    struct harness *h = harness_new();
    assert_non_null(h);
    write_config(h, proxy_extra, extra, lines);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

static void stop(struct harness *h, struct origins *os)
{
    px_stop(h);
    for (int i = 0; i < NORIGINS; i++)
        fake_origin_stop(os->o[i]);
}

/* One admin request on a new connection (head lines in extra, a body); the response in r. */
static int admin(struct harness *h, const char *method, const char *path, const char *extra,
                 const char *body, struct raw_response *r)
{
    char req[4096];
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, path, extra ? extra : "", body ? strlen(body) : 0, body ? body : "");
    assert_int_equal(raw_send_str(c, req), 0);
    if (raw_read_response(c, r, PX_IO_MS) != 0)
        fail_msg("%s %s: %s", method, path, r->error);
    raw_close(c);
    return r->status;
}

/* POST form to origin i of u: its status, the body checked against want. */
static void set_origin(struct harness *h, const struct origins *os, int i, const char *form,
                       int want)
{
    char path[128];
    snprintf(path, sizeof(path), "/upstreams/u/origins/127.0.0.1:%u", os->port[i]);
    struct raw_response r;
    int got = admin(h, "POST", path, "Content-Type: application/x-www-form-urlencoded\r\n", form,
                    &r);
    if (got != want)
        fail_msg("POST %s %s: %d, want %d: %s", path, form, got, want, r.body);
    raw_response_free(&r);
}

/* What a GET /k answered: its status, which origin (-1: none), its Set-Cookie's pair. */
struct answer {
    int status;
    int origin;
    char pair[128];
    char body[512];
};

static struct answer get(struct harness *h, const char *cookie)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s%s%s\r\n",
             cookie ? "Cookie: " : "", cookie ? cookie : "", cookie ? "\r\n" : "");
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    struct answer a = {.status = r.status, .origin = -1};
    for (int i = 0; i < NORIGINS; i++)
        if (r.status == 200 && strcmp(r.body, names[i]) == 0)
            a.origin = i;
    const char *sc = raw_header(&r, "set-cookie");
    if (sc)
        snprintf(a.pair, sizeof(a.pair), "%.*s", (int)strcspn(sc, ";"), sc);
    snprintf(a.body, sizeof(a.body), "%s", r.body ? r.body : "");
    raw_response_free(&r);
    raw_close(c);
    return a;
}

/* The admin state /upstreams/u shows for origin i. */
static void expect_state(struct harness *h, int i, const char *state, int weight)
{
    char *text = px_admin_body(h, "/upstreams/u"), err[128];
    struct tj *doc = tj_parse(text, err, sizeof(err));
    if (!doc)
        fail_msg("/upstreams/u is not JSON: %s: %s", err, text);
    const struct tj *origins = tj_get(doc, "origins");
    assert_true(origins && origins->n == NORIGINS);
    const char *got = tj_str(origins->items[i], "state");
    double w = -1;
    assert_int_equal(tj_num(origins->items[i], "weight", &w), 0);
    if (!got || strcmp(got, state) != 0 || (int)w != weight)
        fail_msg("origin %d: state %s weight %d, want %s %d: %s", i, got ? got : "(none)",
                 (int)w, state, weight, text);
    tj_free(doc);
    free(text);
}

/* drain: new clients go to the other origin, a client whose cookie names the drained one stays
 * there (HAProxy's drain keeps persistent traffic); said in the error log, /upstreams, /status
 * (with each origin's cookie) and the metrics; ready brings new clients back. */
static void test_drain_keeps_sticky(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, "sticky = cookie SRV\n");
    struct answer first = get(h, NULL);
    assert_true(first.origin >= 0 && first.pair[0]);
    int d = first.origin, other = 1 - d;
    set_origin(h, &os, d, "state=drain", 200);
    char line[160];
    snprintf(line, sizeof(line), "admin: origin 127.0.0.1:%u of upstream u set to drain (was "
                                 "ready)", os.port[d]);
    assert_int_equal(harness_wait_log(h, line, PX_IO_MS), 0);
    expect_state(h, d, "drain", 1);
    for (int k = 0; k < 10; k++) {
        struct answer a = get(h, NULL);
        if (a.origin != other)
            fail_msg("new client %d went to origin %d, the drained one", k + 1, a.origin);
        struct answer s = get(h, first.pair);
        if (s.origin != d || s.pair[0])
            fail_msg("sticky client %d went to origin %d (cookie '%s'), not the drained %d",
                     k + 1, s.origin, s.pair, d);
    }
    char *status = px_admin_body(h, "/status");
    assert_non_null(strstr(status, "\"admin\":\"drain\""));
    assert_non_null(strstr(status, "\"cookie\":\"")); /* each origin's sticky value */
    free(status);
    char *metrics = px_admin_body(h, "/metrics"), want[200];
    snprintf(want, sizeof(want), "portico_upstream_origin_admin_state{upstream=\"u\",origin="
                                 "\"127.0.0.1:%u\",state=\"drain\"} 1", os.port[d]);
    assert_non_null(strstr(metrics, want));
    free(metrics);
    set_origin(h, &os, d, "state=ready", 200);
    unsigned seen = 0;
    for (int k = 0; k < 4; k++)
        seen |= 1u << get(h, NULL).origin;
    assert_int_equal(seen, 3u);
    stop(h, &os);
}

/* The established connections Portico holds to port. */
static int conns_to(uint16_t port)
{
    long q[64];
    return px_queues(PX_RECV_Q, &port, 1, q, 64);
}

/* maint: no request at all (a sticky client goes elsewhere with a new cookie), its pooled
 * keep-alive connections closed, its health checks stopped while the other's go on; ready
 * brings it back. */
static void test_maint_closes_and_stops_checks(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL,
                              "sticky = cookie SRV\nsettle_time = 0\n"
                              "health_check = GET /hc every 100ms expect 200\n");
    struct answer first = get(h, NULL);
    int m = first.origin, other = 1 - m;
    for (int k = 0; k < 6; k++)
        get(h, NULL);
    assert_true(conns_to(os.port[m]) >= 1); /* pooled */
    set_origin(h, &os, m, "state=maint", 200);
    int64_t until = tu_now_ms() + PX_IO_MS;
    while (conns_to(os.port[m]) > 0 && tu_now_ms() < until) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* sampling the kernel's sockets: nothing else tells */
    }
    assert_int_equal(conns_to(os.port[m]), 0);
    /* no check of it while three of the other's come */
    unsigned before = fake_origin_requests(os.o[m]);
    unsigned other_before = fake_origin_requests(os.o[other]);
    assert_int_equal(fake_origin_wait_requests(os.o[other], other_before + 3, PX_IO_MS), 0);
    assert_int_equal(fake_origin_requests(os.o[m]), before);
    struct answer s = get(h, first.pair);
    assert_int_equal(s.origin, other);
    assert_true(s.pair[0] && strcmp(s.pair, first.pair) != 0); /* redispatched */
    set_origin(h, &os, m, "state=ready", 200);
    assert_int_equal(fake_origin_wait_requests(os.o[m], before + 1, PX_IO_MS), 0); /* checked */
    struct answer back = get(h, first.pair);
    assert_int_equal(back.origin, m);
    stop(h, &os);
}

/* weight: 3 to 1 gives round robin a 3:1 split over 40 requests; weight 0 takes it out. */
static void test_weight_shifts_split(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, NULL);
    set_origin(h, &os, 0, "weight=3", 200);
    expect_state(h, 0, "ready", 3);
    int n[NORIGINS] = {0};
    for (int k = 0; k < 40; k++) {
        struct answer a = get(h, NULL);
        assert_true(a.origin >= 0);
        n[a.origin]++;
    }
    if (n[0] < 28 || n[0] > 32)
        fail_msg("weight 3 to 1: %d and %d of 40", n[0], n[1]);
    set_origin(h, &os, 1, "weight=0", 200);
    for (int k = 0; k < 6; k++)
        assert_int_equal(get(h, NULL).origin, 0);
    set_origin(h, &os, 0, "weight=1", 200);
    set_origin(h, &os, 1, "weight=1", 200);
    n[0] = n[1] = 0;
    for (int k = 0; k < 10; k++)
        n[get(h, NULL).origin]++;
    assert_int_equal(n[0], 5);
    stop(h, &os);
}

/* An origin drained before a SIGHUP stays drained after it (both files list it); a file that
 * drops it forgets its state, and the next one that lists it again has it ready. */
static void test_state_across_sighup(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, NULL);
    set_origin(h, &os, 0, "state=drain", 200);
    char both[128], one[64];
    snprintf(both, sizeof(both), "origin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n", os.port[0],
             os.port[1]);
    snprintf(one, sizeof(one), "origin = 127.0.0.1:%u\n", os.port[1]);
    write_config(h, NULL, "max_fails = 3\n", both); /* the file changed, the origins not */
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    expect_state(h, 0, "drain", 1);
    for (int k = 0; k < 6; k++)
        assert_int_equal(get(h, NULL).origin, 1);
    /* a file without it: its state goes */
    write_config(h, NULL, NULL, one);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 3", PX_IO_MS), 0);
    assert_int_equal(harness_wait_log(h, "its state (drain) forgotten", PX_IO_MS), 0);
    write_config(h, NULL, NULL, both);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 4", PX_IO_MS), 0);
    expect_state(h, 0, "ready", 1);
    unsigned seen = 0;
    for (int k = 0; k < 4; k++)
        seen |= 1u << get(h, NULL).origin;
    assert_int_equal(seen, 3u);
    stop(h, &os);
}

/* The fault API's guards and errors: the token, a web page's Origin, 400 naming the bad part,
 * 404 for an unknown upstream or origin, 405 with Allow; the path percent-decoded. */
static void test_refusals(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "admin_token = " TOKEN "\n", NULL);
    char path[128], enc[128];
    snprintf(path, sizeof(path), "/upstreams/u/origins/127.0.0.1:%u", os.port[0]);
    snprintf(enc, sizeof(enc), "/upstreams/%%75/origins/127.0.0.1%%3A%u", os.port[0]);
    static const struct {
        const char *method, *path_kind, *extra, *body;
        int status;
        const char *says;
    } rows[] = {
        /* no token: 401, before anything */
        {"POST", "plain", "", "state=drain", 401, "Bearer"},
        {"GET", "all", "", NULL, 401, "Bearer"},
        /* bad bodies: the key named */
        {"POST", "plain", AUTH, "state=sleep", 400, "state=sleep: expected state=ready"},
        {"POST", "plain", AUTH, "weight=101", 400, "weight=101"},
        {"POST", "plain", AUTH, "weight=-1", 400, "weight=-1"},
        {"POST", "plain", AUTH, "colour=red", 400, "colour=red"},
        {"POST", "plain", AUTH, "state=drain\nstate=maint", 400, "state given twice"},
        {"POST", "plain", AUTH, "", 400, "nothing to change"},
        {"POST", "badpct", AUTH, "state=drain", 400, "bad %XX"},
        /* unknown names */
        {"POST", "noup", AUTH, "state=drain", 404, "no upstream nope"},
        {"POST", "noorigin", AUTH, "state=drain", 404, "has no origin 127.0.0.1:1"},
        {"GET", "noup", AUTH, NULL, 404, "no upstream nope"},
        {"GET", "deeper", AUTH, NULL, 404, "no such path"},
        /* methods */
        {"DELETE", "plain", AUTH, NULL, 405, "GET, HEAD or POST"},
        {"POST", "all", AUTH, "state=drain", 405, "GET or HEAD"},
        {"POST", "up", AUTH, "state=drain", 405, "GET or HEAD"},
        /* percent-decoded: the same origin */
        {"POST", "enc", AUTH, "state=drain", 200, "\"state\":\"drain\""},
        {"POST", "plain", AUTH, "state=ready&weight=1", 200, "\"state\":\"ready\""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        const char *p = strcmp(rows[i].path_kind, "plain") == 0 ? path
                        : strcmp(rows[i].path_kind, "enc") == 0 ? enc
                        : strcmp(rows[i].path_kind, "all") == 0 ? "/upstreams"
                        : strcmp(rows[i].path_kind, "up") == 0 ? "/upstreams/u"
                        : strcmp(rows[i].path_kind, "noup") == 0 ? "/upstreams/nope/origins/x:1"
                        : strcmp(rows[i].path_kind, "noorigin") == 0
                            ? "/upstreams/u/origins/127.0.0.1:1"
                        : strcmp(rows[i].path_kind, "deeper") == 0 ? "/upstreams/u/other/x"
                                                                    : "/upstreams/u/origins/%zz";
        char extra[256];
        snprintf(extra, sizeof(extra), "%sContent-Type: application/x-www-form-urlencoded\r\n",
                 rows[i].extra);
        struct raw_response r;
        int got = admin(h, rows[i].method, p, extra, rows[i].body, &r);
        if (got != rows[i].status ||
            (!strstr(r.body, rows[i].says) && !strstr(r.head.text, rows[i].says)))
            fail_msg("row %zu: %s %s %s: %d, want %d with '%s':\n%s%s", i, rows[i].method, p,
                         rows[i].body ? rows[i].body : "", got, rows[i].status, rows[i].says,
                         r.head.text, r.body);
        if (rows[i].status == 405 && !raw_header(&r, "allow"))
            fail_msg("row %zu: a 405 without Allow", i);
        raw_response_free(&r);
    }
    px_stop(h);
    for (int i = 0; i < NORIGINS; i++)
        fake_origin_stop(os.o[i]);
    /* without the token: a web page's change (Origin) is refused, a script's taken */
    h = start(&os, NULL, NULL);
    snprintf(path, sizeof(path), "/upstreams/u/origins/127.0.0.1:%u", os.port[0]);
    struct raw_response r;
    assert_int_equal(admin(h, "POST", path, "Origin: http://evil.example\r\n", "state=maint", &r),
                     403);
    raw_response_free(&r);
    expect_state(h, 0, "ready", 1);
    stop(h, &os);
}

/* Every origin out: 503, and the error log says the admin API took them out. */
static void test_all_out_503(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, NULL, NULL);
    set_origin(h, &os, 0, "state=maint", 200);
    set_origin(h, &os, 1, "state=drain", 200);
    struct answer a = get(h, NULL);
    assert_int_equal(a.status, 503);
    /* the detail, in the access log's line of the 503 */
    px_log_line_has(h, "no_healthy_origin", "no origin of upstream u takes requests: 2 of 2 out "
                    "by the admin API (1 in maintenance, 1 draining, 0 at weight 0)", NULL);
    set_origin(h, &os, 1, "state=ready", 200);
    assert_int_equal(get(h, NULL).origin, 1);
    stop(h, &os);
}

/* curl argv (an HTTP/2 request) answered by origin a, three times. One stream a connection:
 * curl 7.88.1 fails its second request on a reused prior-knowledge connection with "Error in
 * the HTTP2 framing layer" (exit 16), with main's binary too, whatever the origin. */
static void expect_h2(const char *const argv[], int a)
{
    for (int k = 0; k < 3; k++) {
        struct tu_cmd_result res;
        int rc = tu_run_command(argv, 10000, &res);
        if (rc != 0 || strcmp(res.out, names[a]) != 0)
            fail_msg("h2 request %d answered (curl %d):\n%s%s\nnot\n%s", k + 1, rc, res.out,
                     res.err, names[a]);
        tu_cmd_result_free(&res);
    }
}

/* HTTP/2 clients (h2c, curl): a drained origin gets only the streams whose cookie names it, as
 * HTTP/1.1 clients; in maint, none of them. */
static void test_h2_drain(void **state)
{
    (void)state;
    struct origins os;
    struct harness *h = start(&os, "listen = 127.0.0.1:{{port:h2c}} h2c\n",
                              "sticky = cookie SRV\n");
    struct answer first = get(h, NULL);
    int d = first.origin, other = 1 - d;
    set_origin(h, &os, d, "state=drain", 200);
    char url[64], crumb[160];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/k", harness_port(h, "h2c"));
    snprintf(crumb, sizeof(crumb), "Cookie: %s", first.pair);
    const char *const with[] = {"curl", "-sS", "--http2-prior-knowledge", "--max-time", "5",
                                "-H", crumb, url, NULL};
    const char *const without[] = {"curl", "-sS", "--http2-prior-knowledge", "--max-time", "5",
                                   url, NULL};
    expect_h2(with, d);
    expect_h2(without, other);
    set_origin(h, &os, d, "state=maint", 200);
    expect_h2(with, other); /* redispatched */
    expect_h2(without, other);
    stop(h, &os);
}

int main(void)
{
    tu_test_filter(); /* TEST_FILTER=test_drain* runs the matching rows only */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drain_keeps_sticky),
        cmocka_unit_test(test_maint_closes_and_stops_checks),
        cmocka_unit_test(test_weight_shifts_split),
        cmocka_unit_test(test_state_across_sighup),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_all_out_503),
        cmocka_unit_test(test_h2_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
