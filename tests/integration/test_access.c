/*
 * test_access.c — allow and deny per route with the real binary on loopback, 127.0.0.1 and
 * 127.0.0.2 as two clients (the client socket bound to each) and ::1 as a third: rules in file
 * order, the first match deciding, no match the opposite of the last rule; IPv6 and v4-mapped
 * clients; [proxy]'s rules and a route's own in their place; the client real_ip takes from a
 * trusted X-Forwarded-For and a PROXY header's source; HTTP/2 streams on an h2c listener; the
 * 403's body, its access line, error-log line and portico_requests_denied_total; error_detail =
 * minimal; refused before client_rate; a route that answers itself judged first; a reload that
 * swaps the rules and a bad one that keeps them; the keys' errors at FILE:LINE.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/scrape.h"
#include "proxy_helpers.h"

/* Portico with the sim origin, an admin listener, an info-level error log, `proxy_extra` in
 * [proxy] and `routes` after the upstream. */
static struct harness *start(const char *proxy_extra, const char *routes)
{
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:{{port:admin}}\n"
             "error_log = {{dir}}/error.log\nlog_level = info\n%s",
             proxy_extra ? proxy_extra : "");
    return px_start(extra, "[upstream s]\norigin = sim\n%s", routes);
}

/* A route's path answered 200 by the sim origin. */
#define TO_200 "rewrite_prefix = /status/200\n"

/* A connection to the listener from src: "127.0.0.x", or "::1" to the [::1] listener `v6`. */
static struct raw_conn *connect_as(struct harness *h, const char *src)
{
    struct raw_conn *c = strchr(src, ':') ? raw_connect_ip("::1", harness_port(h, "v6"), PX_IO_MS)
                                          : raw_connect_from(src, px_port(h), PX_IO_MS);
    if (!c)
        fail_msg("connect from %s: %s", src, raw_last_error());
    return c;
}

/* One GET of path on c, with an X-Forwarded-For of xff unless NULL. The status; the response
 * in *r when r is not NULL (free it). */
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
    if (!r && rc == 0)
        raw_response_free(&own);
    return status;
}

/* The line of the configuration file that reads `text` whole (the first), for the reasons
 * that name a rule's line. */
static int line_of(struct harness *h, const char *text)
{
    FILE *f = fopen(harness_config_path(h), "r");
    assert_non_null(f);
    char buf[4096];
    int n = 0, found = 0;
    while (!found && fgets(buf, sizeof(buf), f)) {
        n++;
        buf[strcspn(buf, "\n")] = '\0';
        if (strcmp(buf, text) == 0)
            found = n;
    }
    fclose(f);
    if (!found)
        fail_msg("no line '%s' in the configuration", text);
    return found;
}

struct verdict_row {
    const char *why;
    const char *client;       /* the connection's source, "::1" over IPv6 */
    const char *path;
    int want;
    const char *rule;         /* in the 403's reason: the rule that decided, NULL: no rule
                                 named the client */
    const char *written;      /* the configuration line that wrote it, for its number */
};

/* Rules in file order, the first naming the client deciding; a client none names gets the
 * opposite of the last rule (where nginx lets every client none names in). */
static void test_first_match_in_order(void **state)
{
    (void)state;
    TU_SKIP_WITHOUT_IPV6_LOOPBACK();
    struct harness *h = start("listen = [::1]:{{free_port:v6}}\n",
                              "[route carve]\nprefix = /carve\nupstream = s\n" TO_200
                              "allow = 127.0.0.1\n"
                              "deny = 127.0.0.0/8\n"
                              "[route only]\nprefix = /only\nupstream = s\n" TO_200
                              "deny = 127.0.0.3, 127.0.0.2\n"
                              "allow = 127.0.0.0/8\n"
                              "[route v6]\nprefix = /v6\nupstream = s\n" TO_200
                              "allow = ::1\n"
                              "deny = all\n");
    static const struct verdict_row rows[] = {
        {"the carve-out first", "127.0.0.1", "/carve", 200, NULL, NULL},
        {"then the block", "127.0.0.2", "/carve", 403, "deny 127.0.0.0/8", "deny = 127.0.0.0/8"},
        {"ends in deny: the rest in", "::1", "/carve", 200, NULL, NULL},
        {"a list's second element", "127.0.0.2", "/only", 403, "deny 127.0.0.2",
         "deny = 127.0.0.3, 127.0.0.2"},
        {"the allow after the denies", "127.0.0.1", "/only", 200, NULL, NULL},
        {"ends in allow: the rest out", "::1", "/only", 403, NULL, NULL},
        {"IPv6 allowed", "::1", "/v6", 200, NULL, NULL},
        {"IPv4 by deny all", "127.0.0.1", "/v6", 403, "deny all", "deny = all"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct raw_conn *c = connect_as(h, rows[i].client);
        struct raw_response r;
        int got = get(c, rows[i].path, NULL, &r);
        if (got != rows[i].want)
            fail_msg("%s: %d, want %d", rows[i].why, got, rows[i].want);
        if (got == 403) {
            const char *route = rows[i].path + 1;
            char want[256];
            if (rows[i].rule) {
                snprintf(want, sizeof(want), "client %s denied by route %s (%s, line %d)",
                         rows[i].client, route, rows[i].rule, line_of(h, rows[i].written));
            } else {
                snprintf(want, sizeof(want), "client %s denied by route %s (matches no rule; "
                         "after allow 127.0.0.0/8, line %d, the rest are denied)", rows[i].client,
                         route, line_of(h, "allow = 127.0.0.0/8"));
            }
            if (!strstr(r.body, want))
                fail_msg("%s: body %s; want %s", rows[i].why, r.body, want);
        }
        raw_response_free(&r);
        raw_close(c);
    }
    px_stop(h);
}

/* The 403: Portico's one-line answer with the reason and X-Request-Id; the connection stays,
 * a body sent with a denied request read and dropped; the access line (phase route, the
 * reason in detail, the route, no upstream), the error log's info line, and
 * portico_requests_denied_total{route}. */
static void test_403_answer_line_metric(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route admin]\nprefix = /admin\nupstream = s\n"
                                    "deny = 127.0.0.0/24\n"
                                    "[route rest]\nprefix = /\nupstream = s\n");
    uint16_t admin = harness_port(h, "admin");
    char reason[160];
    snprintf(reason, sizeof(reason),
             "client 127.0.0.2 denied by route admin (deny 127.0.0.0/24, line %d)",
             line_of(h, "deny = 127.0.0.0/24"));
    struct raw_conn *c = connect_as(h, "127.0.0.2");
    struct raw_response r;
    assert_int_equal(get(c, "/admin/x", NULL, &r), 403);
    char want[256];
    snprintf(want, sizeof(want), "403 Forbidden: %s", reason);
    if (!strstr(r.body, want))
        fail_msg("403 body: %s; want %s", r.body, want);
    assert_non_null(raw_header(&r, "X-Request-Id"));
    raw_response_free(&r);
    /* a body with it: read and dropped, the connection goes on */
    assert_int_equal(raw_send_str(c, "POST /admin/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                                     "\r\nhello"),
                     0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 403);
    assert_null(raw_header(&r, "Connection"));
    raw_response_free(&r);
    assert_int_equal(get(c, "/status/200", NULL, NULL), 200);
    raw_close(c);
    char *line = px_log_line(h, "status=403");
    if (!strstr(line, "phase=route") || !strstr(line, reason) || !strstr(line, "route=admin") ||
        strstr(line, "upstream=s"))
        fail_msg("access line: %s", line);
    free(line);
    char logged[256];
    snprintf(logged, sizeof(logged), ": %s", reason);
    assert_int_equal(harness_wait_file(h, "error.log", logged, PX_IO_MS), 0);
    assert_true(scrape_wait(admin, "portico_requests_denied_total{route=\"admin\"}", 2,
                            PX_IO_MS) == 2);
    char *page = scrape_metrics(admin, PX_IO_MS);
    assert_non_null(page);
    if (strstr(page, "portico_requests_denied_total{route=\"rest\"}"))
        fail_msg("a route that denied nothing has a series:\n%s", page);
    free(page);
    px_stop(h);
}

/* error_detail = minimal: the client is told its address was refused, not by which route
 * nor rule (the configuration's); the access line's route and the error log keep them. */
static void test_minimal_detail(void **state)
{
    (void)state;
    struct harness *h = start("error_detail = minimal\n",
                              "[route internal-billing]\nprefix = /\nupstream = s\n"
                              "allow = 127.0.0.1\n");
    struct raw_conn *c = connect_as(h, "127.0.0.2");
    struct raw_response r;
    assert_int_equal(get(c, "/", NULL, &r), 403);
    if (!strstr(r.body, "403 Forbidden: client 127.0.0.2 denied\n") ||
        strstr(r.body, "internal-billing") || strstr(r.body, "allow") || strstr(r.body, "line"))
        fail_msg("403 body under error_detail = minimal: %s", r.body);
    raw_response_free(&r);
    raw_close(c);
    char *line = px_log_line(h, "status=403");
    assert_non_null(strstr(line, "route=internal-billing"));
    free(line);
    assert_int_equal(harness_wait_file(h, "error.log",
                                       "client 127.0.0.2 denied by route internal-billing "
                                       "(matches no rule; after allow 127.0.0.1",
                                       PX_IO_MS),
                     0);
    px_stop(h);
}

/* [proxy]'s rules are every route's that has none of its own; a route with any replaces them
 * whole (nginx's inheritance of allow/deny into a location). */
static void test_proxy_default_and_route_override(void **state)
{
    (void)state;
    struct harness *h = start("deny = 127.0.0.2\n",
                              "[route plain]\nprefix = /plain\nupstream = s\n" TO_200
                              "[route own]\nprefix = /own\nupstream = s\n" TO_200
                              "allow = 127.0.0.0/8\n");
    static const struct verdict_row rows[] = {
        {"[proxy]'s deny", "127.0.0.2", "/plain", 403, NULL, NULL},
        {"[proxy]'s: the rest in", "127.0.0.1", "/plain", 200, NULL, NULL},
        {"the route's own: [proxy]'s deny gone", "127.0.0.2", "/own", 200, NULL, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct raw_conn *c = connect_as(h, rows[i].client);
        struct raw_response r;
        int got = get(c, rows[i].path, NULL, &r);
        if (got != rows[i].want)
            fail_msg("%s: %d, want %d", rows[i].why, got, rows[i].want);
        if (got == 403) {
            char want[160];
            snprintf(want, sizeof(want), "client 127.0.0.2 denied by route plain "
                     "(deny 127.0.0.2, line %d)", line_of(h, "deny = 127.0.0.2"));
            if (!strstr(r.body, want))
                fail_msg("%s: %s", rows[i].why, r.body);
        }
        raw_response_free(&r);
        raw_close(c);
    }
    px_stop(h);
}

/* The client real_ip takes from a trusted proxy's X-Forwarded-For is the one judged; an
 * untrusted peer's claim is not taken (its own address is judged); a v4-mapped element is its
 * IPv4 client. */
static void test_real_ip_client(void **state)
{
    (void)state;
    struct harness *h = start("trusted_proxies = 127.0.0.1\nreal_ip = x-forwarded-for\n",
                              "[route api]\nprefix = /\nupstream = s\n"
                              "allow = 127.0.0.7\n"
                              "deny = 127.0.0.9\n"
                              "allow = 127.0.0.0/8\n"
                              "deny = all\n");
    static const struct {
        const char *why, *peer, *xff;
        int want;
        const char *in_body;
    } rows[] = {
        {"named by a trusted proxy: denied", "127.0.0.1", "127.0.0.9", 403,
         "client 127.0.0.9 denied by route api (deny 127.0.0.9, line "},
        {"named by a trusted proxy: allowed", "127.0.0.1", "127.0.0.8", 200, NULL},
        {"the proxy named as its client", "127.0.0.1", "::1", 403,
         "client ::1 denied by route api (deny all, line "},
        {"v4-mapped is its IPv4", "127.0.0.1", "::ffff:127.0.0.9", 403,
         "client 127.0.0.9 denied by route api (deny 127.0.0.9, line "},
        {"v4-mapped allowed as IPv4", "127.0.0.1", "::ffff:127.0.0.8", 200, NULL},
        {"an untrusted peer's claim is its own address", "127.0.0.9", "127.0.0.7", 403,
         "client 127.0.0.9 denied"},
        {"the trusted proxy itself, no field", "127.0.0.1", NULL, 200, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct raw_conn *c = connect_as(h, rows[i].peer);
        struct raw_response r;
        int got = get(c, "/", rows[i].xff, &r);
        if (got != rows[i].want || (rows[i].in_body && !strstr(r.body, rows[i].in_body)))
            fail_msg("%s: %d %s, want %d %s", rows[i].why, got, got > 0 ? r.body : "",
                     rows[i].want, rows[i].in_body ? rows[i].in_body : "");
        raw_response_free(&r);
        raw_close(c);
    }
    px_stop(h);
}

/* On a proxy_protocol listener the PROXY header's source is the client judged (v1 TCP4 and
 * TCP6); a LOCAL-less v1 UNKNOWN keeps the socket's address. */
static void test_proxy_protocol_client(void **state)
{
    (void)state;
    struct harness *h = start("listen = 127.0.0.1:{{port:pp}} proxy_protocol\n",
                              "[route api]\nprefix = /\nupstream = s\n"
                              "deny = 127.0.113.0/24, ::1\n");
    static const struct {
        const char *why, *header;
        int want;
        const char *in_body;
    } rows[] = {
        {"TCP4 source in the block", "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n", 403,
         "client 127.0.113.7 denied by route api (deny 127.0.113.0/24, line "},
        {"TCP4 source outside", "PROXY TCP4 127.0.100.9 127.0.0.10 4242 80\r\n", 200, NULL},
        {"TCP6 source", "PROXY TCP6 ::1 ::1 4243 443\r\n", 403,
         "client ::1 denied by route api (deny ::1, line "},
        {"UNKNOWN: the socket's 127.0.0.1", "PROXY UNKNOWN\r\n", 200, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct raw_conn *c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
        assert_non_null(c);
        assert_int_equal(raw_send_str(c, rows[i].header), 0);
        struct raw_response r;
        int got = get(c, "/", NULL, &r);
        if (got != rows[i].want || (rows[i].in_body && !strstr(r.body, rows[i].in_body)))
            fail_msg("%s: %d %s", rows[i].why, got, got > 0 ? r.body : "");
        raw_response_free(&r);
        raw_close(c);
    }
    px_stop(h);
}

/* Over HTTP/2 (an h2c listener, three streams at once from 127.0.0.2, h2_frames.py) each
 * stream is judged: the two to the denied route get 403, the other its answer, and the
 * connection goes on (no GOAWAY). */
static void test_http2_streams(void **state)
{
    (void)state;
    struct harness *h = start("listen = 127.0.0.1:{{port:h2c}} h2c\n",
                              "[route admin]\nprefix = /admin\nupstream = s\n"
                              "deny = 127.0.0.2\n"
                              "[route rest]\nprefix = /\nupstream = s\n");
    char port[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "h2c"));
    const char *const argv[] = {"/usr/bin/python3", "tests/integration/h2_frames.py", port,
                                "heads_from", "127.0.0.2", "/admin,/status/200,/admin/x", NULL};
    struct tu_cmd_result res = {0};
    if (tu_run_command(argv, 20000, &res) != 0 || res.exit_code != 0)
        fail_msg("h2_frames.py: %s%s", res.out, res.err);
    if (!strstr(res.out, "path=/admin status=[403]") ||
        !strstr(res.out, "path=/status/200 status=[200]") ||
        !strstr(res.out, "path=/admin/x status=[403]") || !strstr(res.out, "goaway=None"))
        fail_msg("h2_frames.py: %s", res.out);
    tu_cmd_result_free(&res);
    char *line = px_log_line(h, "status=403");
    if (!strstr(line, "proto=HTTP/2.0") || !strstr(line, "phase=route") ||
        !strstr(line, "client 127.0.0.2 denied by route admin (deny 127.0.0.2, line "))
        fail_msg("access line: %s", line);
    free(line);
    px_stop(h);
}

/* A denied client is refused before client_rate: it spends no token, and is told 403 however
 * often it comes, never 429; an allowed one is limited as before. */
static void test_before_client_rate(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route api]\nprefix = /\nupstream = s\n"
                                    "client_rate = 1/m\n"
                                    "deny = 127.0.0.2\n");
    struct raw_conn *denied = connect_as(h, "127.0.0.2");
    for (int i = 0; i < 3; i++)
        assert_int_equal(get(denied, "/", NULL, NULL), 403);
    raw_close(denied);
    struct raw_conn *c = connect_as(h, "127.0.0.1");
    assert_int_equal(get(c, "/", NULL, NULL), 200);
    assert_int_equal(get(c, "/", NULL, NULL), 429);
    raw_close(c);
    px_stop(h);
}

/* A route that answers itself (return) is judged before it answers, where nginx's return
 * comes before its allow and deny and answers everyone. */
static void test_return_route_judged(void **state)
{
    (void)state;
    struct harness *h = start(NULL, "[route fixed]\nprefix = /\nreturn = 200 hello\n"
                                    "deny = 127.0.0.2\n");
    struct raw_conn *c = connect_as(h, "127.0.0.2");
    struct raw_response r;
    assert_int_equal(get(c, "/", NULL, &r), 403);
    if (!strstr(r.body, "client 127.0.0.2 denied by route fixed (deny 127.0.0.2, line "))
        fail_msg("403 body: %s", r.body);
    raw_response_free(&r);
    raw_close(c);
    c = connect_as(h, "127.0.0.1");
    assert_int_equal(get(c, "/", NULL, &r), 200);
    assert_non_null(strstr(r.body, "hello"));
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
}

/* The [proxy] section with a route's rules, written for the reload test. */
static int write_rules(struct harness *h, const char *rules)
{
    return harness_write_config(h,
                                "[proxy]\n"
                                "listen = 127.0.0.1:{{port:listen}}\n"
                                "workers = 1\n"
                                "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                "error_log = {{dir}}/error.log\n"
                                "[upstream s]\norigin = sim\n"
                                "[route api]\nprefix = /\nupstream = s\n%s",
                                rules);
}

/* A status for one GET from src on a new connection (the generation serving it). */
static int status_from(struct harness *h, const char *src)
{
    struct raw_conn *c = connect_as(h, src);
    int status = get(c, "/", NULL, NULL);
    raw_close(c);
    return status;
}

/* A reload swaps the rules whole; one whose rules are refused keeps the running ones. */
static void test_reload_swaps_rules(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_rules(h, "deny = 127.0.0.2\n"), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    uint16_t admin = harness_port(h, "admin");
    assert_int_equal(status_from(h, "127.0.0.2"), 403);
    assert_int_equal(status_from(h, "127.0.0.3"), 200);

    assert_int_equal(write_rules(h, "deny = 127.0.0.3\n"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_true(scrape_wait(admin, "portico_config_generation", 2, PX_IO_MS) == 2);
    assert_int_equal(status_from(h, "127.0.0.2"), 200);
    assert_int_equal(status_from(h, "127.0.0.3"), 403);

    /* host bits set: refused, the running rules kept */
    assert_int_equal(write_rules(h, "deny = 127.0.0.2/8\n"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_true(scrape_wait(admin, "portico_config_reloads_total{result=\"invalid\"}", 1,
                            PX_IO_MS) == 1);
    assert_int_equal(harness_wait_file(h, "error.log", "127.0.0.2/8 has bits set past its /8",
                                       PX_IO_MS),
                     0);
    assert_true(scrape_metric(admin, "portico_config_generation", PX_IO_MS) == 2);
    assert_int_equal(status_from(h, "127.0.0.2"), 200);
    assert_int_equal(status_from(h, "127.0.0.3"), 403);
    px_stop(h);
}

/* Refused at FILE:LINE: host bits set, a prefix length out of range, no address, `all` in a
 * list, more than 1024 rules a route; warned at its line: a rule an earlier one shadows. */
static void test_config_errors(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    size_t size = 64 * 1024, len = 0;
    char *many = malloc(size);
    assert_non_null(many);
    for (int i = 0; i < 1025; i++) /* lines 20 to 1044 */
        len += (size_t)snprintf(many + len, size - len, "allow = 127.0.%d.%d\n", i / 256,
                                i % 256);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"                               /* 1 */
                                          "listen = 127.0.0.1:{{port:listen}}\n"    /* 2 */
                                          "deny = 127.0.0.1/8\n"                    /* 3 */
                                          "allow = 127.0.0.0/33\n"                  /* 4 */
                                          "[upstream s]\norigin = sim\n"            /* 5, 6 */
                                          "[route a]\nupstream = s\nprefix = /a\n"  /* 7-9 */
                                          "allow = ::1/129\n"                       /* 10 */
                                          "deny = localhost\n"                      /* 11 */
                                          "allow = all, 127.0.0.1\n"                /* 12 */
                                          "allow = 127.0.0.0/8\n"                   /* 13 */
                                          "deny = 127.0.0.1\n"                      /* 14 */
                                          "deny = ::1/64\n"                         /* 15 */
                                          "allow =\n"                               /* 16 */
                                          "[route b]\nupstream = s\nprefix = /b\n"  /* 17-19 */
                                          "%s",                                     /* 20- */
                                          many),
                     0);
    free(many);
    struct tu_cmd_result res = {0};
    assert_int_equal(harness_check_config(h, &res), 1);
    const char *path = harness_config_path(h);
    static const struct {
        int line;
        const char *text;
    } want[] = {
        {3, "deny: 127.0.0.1/8 has bits set past its /8: write 127.0.0.0/8 for the block or "
            "127.0.0.1 for the one address"},
        {4, "allow: '127.0.0.0/33' is not an address or CIDR block"},
        {10, "allow: '::1/129' is not an address or CIDR block"},
        {11, "deny: 'localhost' is not an address or CIDR block"},
        {12, "allow: 'all' is not an address or CIDR block"},
        {14, "warning: deny 127.0.0.1 never decides: allow 127.0.0.0/8 (line 13) names every "
             "client it does"},
        {15, "deny: ::1/64 has bits set past its /64: write ::/64 for the block or ::1 for the "
             "one address"},
        {16, "allow: "},
        {1044, "allow: at most 1024 rules a route (allow and deny together)"},
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

int main(void)
{
    tu_ignore_sigpipe();
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_match_in_order),
        cmocka_unit_test(test_403_answer_line_metric),
        cmocka_unit_test(test_minimal_detail),
        cmocka_unit_test(test_proxy_default_and_route_override),
        cmocka_unit_test(test_real_ip_client),
        cmocka_unit_test(test_proxy_protocol_client),
        cmocka_unit_test(test_http2_streams),
        cmocka_unit_test(test_before_client_rate),
        cmocka_unit_test(test_return_route_judged),
        cmocka_unit_test(test_reload_swaps_rules),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
