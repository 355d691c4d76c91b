/*
 * test_return.c — a route that answers itself (return = CODE [TEXT-or-URL]), end to end: the real
 * portico binary and the raw client (or curl over HTTP/2) on loopback, no origin at all. A
 * redirect's Location from $host and $request_uri, what a hostile Host or target cannot add, a
 * text, an empty answer, the error page, HEAD, a body discarded on a connection kept, HTTP/2,
 * client_rate first, response_header rules, the access line and the metrics, the refusals at
 * load and a reload.
 *
 * No sleeps: every wait is a bounded read, a log line or a scrape.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

/* The routes of most rows: no [upstream] at all, every route answers itself. */
#define RETURN_ROUTES                                                                              \
    "[route tohttps]\nreturn = 301 https://$host$request_uri\n"                                    \
    "response_header = Strict-Transport-Security: max-age=63072000\n"                              \
    "[route relative]\nhost = rel.test\nreturn = 302 /$request_uri\n"                              \
    "[route health]\nprefix = /healthz\nreturn = 200 ok $host\n"                                   \
    "[route empty]\nprefix = /empty\nreturn = 200\n"                                               \
    "[route nocontent]\nprefix = /nc\nreturn = 204\n"                                              \
    "[route retired]\nprefix = /old/\nreturn = 410\n"                                              \
    "response_header = X-Rule: set\n"

/* ---- redirects ---- */

static const struct {
    const char *why;
    const char *request;
    int status;
    const char *location;      /* NULL: none */
} redirect_rows[] = {
    {"HTTP to HTTPS: the host and the target, query included",
     "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.test\r\n\r\n", 301,
     "https://app.test/a/b?x=1&y=2"},
    {"a Host with its port keeps it",
     "GET /p HTTP/1.1\r\nHost: 127.0.0.1:18180\r\n\r\n", 301, "https://127.0.0.1:18180/p"},
    {"absolute-form: the authority is $host, the path and query $request_uri",
     "GET http://app.test/abs?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", 301,
     "https://app.test/abs?q=1"},
    {"absolute-form with a query and no path: $request_uri is /?q",
     "GET http://app.test?q=2 HTTP/1.1\r\nHost: app.test\r\n\r\n", 301, "https://app.test/?q=2"},
    {"a relative redirect of //host is one slash: no other host of the client's choosing",
     "GET //evil.example/x HTTP/1.1\r\nHost: rel.test\r\n\r\n", 302, "/evil.example/x"},
    {"... nor by backslashes", "GET /\\evil.example/x HTTP/1.1\r\nHost: rel.test\r\n\r\n", 302,
     "/evil.example/x"},
    {"HTTP/1.0 keeps its target", "GET /ten HTTP/1.0\r\nHost: app.test\r\n\r\n", 301,
     "https://app.test/ten"},
};

static void test_redirects(void **state)
{
    (void)state;
    struct harness *h = px_start(NULL, RETURN_ROUTES);
    struct raw_conn *c = px_connect(h); /* one connection: each answer keeps it */
    for (size_t i = 0; i < ARRAY_SIZE(redirect_rows); i++) {
        print_message("%s\n", redirect_rows[i].why);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, redirect_rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, redirect_rows[i].status);
        const char *loc = raw_header(&r, "Location");
        if (!loc || strcmp(loc, redirect_rows[i].location) != 0)
            fail_msg("%s: Location %s, not %s:\n%s", redirect_rows[i].why, loc ? loc : "(none)",
                     redirect_rows[i].location, r.head.text);
        assert_int_equal(raw_head_field_count(&r.head, "Location"), 1);
        assert_string_equal(raw_header(&r, "Content-Length"), "0");
        assert_int_equal(r.body_len, 0);
        /* the route's response_header rule, on its own answer */
        bool hsts = raw_header(&r, "Strict-Transport-Security") != NULL;
        assert_true(hsts == (redirect_rows[i].status == 301));
        if (!strstr(redirect_rows[i].request, "HTTP/1.0")) /* that one closes (the last row) */
            assert_false(r.peer_closed);
        raw_response_free(&r);
    }
    raw_close(c);
    px_stop(h);
}

/* What a client can put in its Host and target reaches Location only as URL bytes: no field of
 * its own, no second line. */
static const struct {
    const char *why;
    const char *request;
    int status;
    const char *location;      /* NULL: no answer of the route's (refused first) */
} hostile_rows[] = {
    {"an encoded CRLF stays encoded",
     "GET /x%0d%0aSet-Cookie:%20a=1 HTTP/1.1\r\nHost: app.test\r\n\r\n", 301,
     "https://app.test/x%0d%0aSet-Cookie:%20a=1"},
    {"a Host with a CR is refused before any route", "GET /x HTTP/1.1\r\nHost: a\rSet-Cookie: a=1"
     "\r\n\r\n", 400, NULL},
    {"a Host with a blank is refused", "GET /x HTTP/1.1\r\nHost: a Set-Cookie:a=1\r\n\r\n", 400,
     NULL},
    {"a target with a raw byte >= 0x80 is refused", "GET /x\xc2\x85y HTTP/1.1\r\nHost: a\r\n\r\n",
     400, NULL},
    {"a Host with a quote and sub-delims goes as it came (URL bytes)",
     "GET /q HTTP/1.1\r\nHost: a!$&'()*+,;=b\r\n\r\n", 301, "https://a!$&'()*+,;=b/q"},
    {"no Host (HTTP/1.0): no authority for https://$host, 400 (not https:////evil.example/x, "
     "which browsers read as host evil.example)", "GET //evil.example/x HTTP/1.0\r\n\r\n", 400,
     NULL},
    {"... nor an empty Host", "GET /x HTTP/1.1\r\nHost: \r\n\r\n", 400, NULL},
};

static void test_hostile_host_and_target(void **state)
{
    (void)state;
    struct harness *h = px_start(NULL, RETURN_ROUTES);
    for (size_t i = 0; i < ARRAY_SIZE(hostile_rows); i++) {
        print_message("%s\n", hostile_rows[i].why);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, hostile_rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, hostile_rows[i].status);
        const char *loc = raw_header(&r, "Location");
        if (hostile_rows[i].location ? !loc || strcmp(loc, hostile_rows[i].location) != 0 : !!loc)
            fail_msg("%s: Location %s:\n%s", hostile_rows[i].why, loc ? loc : "(none)",
                     r.head.text);
        assert_int_equal(raw_head_field_count(&r.head, "Set-Cookie"), 0);
        raw_response_free(&r);
        raw_close(c);
    }
    px_stop(h);
}

/* ---- texts, empty answers and the error page, HEAD, a body discarded ---- */

static const struct {
    const char *why;
    const char *request;
    bool head;                 /* a HEAD: no body to read */
    int status;
    const char *body;          /* exactly */
    const char *length;        /* Content-Length, NULL: none */
    const char *type;          /* Content-Type, NULL: none */
} answer_rows[] = {
    {"200 with its text, $host expanded", "GET /healthz HTTP/1.1\r\nHost: app.test\r\n\r\n", false,
     200, "ok app.test\n", "12", "text/plain; charset=utf-8"},
    {"HEAD: the length of the body, no body", "HEAD /healthz HTTP/1.1\r\nHost: app.test\r\n\r\n",
     true, 200, "", "12", "text/plain; charset=utf-8"},
    {"a POST's body is read and dropped, the connection kept",
     "POST /healthz HTTP/1.1\r\nHost: b.test\r\nContent-Length: 5\r\n\r\nhello", false, 200,
     "ok b.test\n", "10", "text/plain; charset=utf-8"},
    {"... a chunked one too",
     "POST /healthz HTTP/1.1\r\nHost: c.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\r\nhello\r\n0\r\n\r\n", false, 200, "ok c.test\n", "10", "text/plain; charset=utf-8"},
    {"200 without text: empty", "GET /empty HTTP/1.1\r\nHost: a\r\n\r\n", false, 200, "", "0",
     NULL},
    {"204: no body, no Content-Length", "POST /nc HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
     "abc", false, 204, "", NULL, NULL},
    {"410 without text: Portico's error page, no rule's field",
     "GET /old/page HTTP/1.1\r\nHost: a\r\n\r\n", false, 410,
     "410 Gone: answered by the route (return 410)\n", "45", "text/plain; charset=utf-8"},
};

static void test_answers(void **state)
{
    (void)state;
    struct harness *h = px_start(NULL, RETURN_ROUTES);
    struct raw_conn *c = px_connect(h); /* one connection for all: keep-alive holds */
    for (size_t i = 0; i < ARRAY_SIZE(answer_rows); i++) {
        print_message("%s\n", answer_rows[i].why);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, answer_rows[i].request), 0);
        if (answer_rows[i].head)
            assert_int_equal(raw_read_head_response(c, &r, PX_IO_MS), 0);
        else
            assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, answer_rows[i].status);
        if (strcmp(r.body, answer_rows[i].body) != 0)
            fail_msg("%s: body \"%s\", not \"%s\"", answer_rows[i].why, r.body,
                     answer_rows[i].body);
        const char *len = raw_header(&r, "Content-Length");
        if (answer_rows[i].length ? !len || strcmp(len, answer_rows[i].length) != 0 : !!len)
            fail_msg("%s: Content-Length %s:\n%s", answer_rows[i].why, len ? len : "(none)",
                     r.head.text);
        const char *type = raw_header(&r, "Content-Type");
        if (answer_rows[i].type ? !type || strcmp(type, answer_rows[i].type) != 0 : !!type)
            fail_msg("%s: Content-Type %s", answer_rows[i].why, type ? type : "(none)");
        assert_null(raw_header(&r, "X-Rule"));
        assert_non_null(raw_header(&r, "X-Request-Id"));
        assert_null(raw_header(&r, "Connection"));
        assert_false(r.peer_closed);
        raw_response_free(&r);
    }
    raw_close(c);
    px_stop(h);
}

/* ---- HTTP/2 ---- */

static void test_http2(void **state)
{
    (void)state;
    struct harness *h = px_start("listen = 127.0.0.1:{{port:h2c}} h2c\n", RETURN_ROUTES);
    static const struct {
        const char *path;
        const char *extra;     /* a curl option, or NULL */
        const char *want[3];   /* in curl's -D output and body */
        const char *absent;
    } rows[] = {
        {"/a?b=1", NULL, {"HTTP/2 301", "\r\nlocation: https://127.0.0.1:", "/a?b=1\r\n"}, NULL},
        {"/healthz", NULL, {"HTTP/2 200", "\r\ncontent-length: 19\r\n", "\r\n\r\nok 127.0.0.1:"},
         NULL},
        {"/healthz", "-I", {"HTTP/2 200", "\r\ncontent-length: 19\r\n", NULL}, "ok 127"},
        {"/nc", NULL, {"HTTP/2 204", NULL, NULL}, "content-length"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", harness_port(h, "h2c"), rows[i].path);
        const char *argv[10] = {"curl", "-sS", "--max-time", "10", "--http2-prior-knowledge",
                                "-D", "-"};
        size_t n = 7;
        if (rows[i].extra)
            argv[n++] = rows[i].extra;
        argv[n++] = url;
        argv[n] = NULL;
        struct tu_cmd_result res = {0};
        px_run_ok(argv, &res);
        print_message("h2 %s %s:\n%s\n", rows[i].path, rows[i].extra ? rows[i].extra : "",
                      res.out);
        for (size_t k = 0; k < 3 && rows[i].want[k]; k++)
            if (!tu_contains(res.out, rows[i].want[k]))
                fail_msg("%s: no \"%s\" in:\n%s", rows[i].path, rows[i].want[k], res.out);
        if (rows[i].absent && tu_contains(res.out, rows[i].absent))
            fail_msg("%s: \"%s\" in:\n%s", rows[i].path, rows[i].absent, res.out);
        tu_cmd_result_free(&res);
    }
    px_stop(h);
}

/* ---- client_rate first, the access line and the metrics ---- */

static void test_rate_log_and_metrics(void **state)
{
    (void)state;
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n",
                                 "[route tohttps]\nreturn = 301 https://$host$request_uri\n"
                                 "client_rate = 1/m\n");
    static const int want[] = {301, 429};
    struct raw_conn *c = px_connect(h);
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET /r%zu HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: "
                 "ret-%zu\r\n\r\n", i, i);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, want[i]);
        assert_true((raw_header(&r, "Location") != NULL) == (want[i] == 301));
        raw_response_free(&r);
    }
    raw_close(c);
    char *line = px_log_line_for_id(h, "ret-0");
    print_message("%s\n", line);
    assert_true(tu_contains(line, " status=301 "));
    assert_true(tu_contains(line, " route=tohttps upstream=- "));
    assert_true(tu_contains(line, "answered by the route (return 301)"));
    assert_false(tu_contains(line, "origin="));
    free(line);
    line = px_log_line_for_id(h, "ret-1");
    assert_true(tu_contains(line, " status=429 "));
    free(line);
    uint16_t admin = harness_port(h, "admin");
    assert_true(scrape_wait(admin, "portico_requests_total{route=\"tohttps\",code=\"301\","
                                   "failure=\"\"}", 1, PX_IO_MS) == 1);
    assert_true(scrape_wait(admin, "portico_requests_total{route=\"tohttps\",code=\"429\","
                                   "failure=\"\"}", 1, PX_IO_MS) == 1);
    px_stop(h);
}

/* ---- $request_uri in a request_header rule: the one expander ---- */

/* The origin gets the target as the client sent it in the rule's field, whatever rewrite_prefix
 * sends as the path. */
static void test_request_uri_in_rule(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[route api]\nprefix = /api/\nupstream = u\nrewrite_prefix = /\n"
                                 "request_header = X-Original-URI: ${request_uri}\n",
                                 fake_origin_port(o));
    static const struct {
        const char *request;
        const char *line;      /* the origin's head holds it */
    } rows[] = {
        {"GET /api/x?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
         "GET /x?q=1 HTTP/1.1\r\n"},
        {"GET /api/x?q=1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
         "\r\nX-Original-URI: /api/x?q=1\r\n"},
        {"GET http://app.test/api/y HTTP/1.1\r\nHost: app.test\r\n\r\n",
         "\r\nX-Original-URI: /api/y\r\n"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(fake_origin_wait_requests(o, (unsigned)i + 1, PX_IO_MS), 0);
        char *head = fake_origin_request_head(o, (unsigned)i);
        assert_non_null(head);
        if (!tu_contains(head, rows[i].line))
            fail_msg("no \"%s\" in the origin's head:\n%s", rows[i].line, head);
        free(head);
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- refused at load ---- */

static const struct {
    const char *lines;         /* in [route r], from line 4 */
    int line;                  /* where the message is */
    const char *message;       /* after "FILE:LINE: " */
} refusal_rows[] = {
    {"return = 2x0", 4, "return: '2x0': expected a status code (200-599)"},
    {"return = 99 x", 4, "return: '99 x': expected a status code"},
    {"return = 101", 4, "return: 101: an interim answer (1xx, 101 included)"},
    {"return = 103 /x", 4, "return: 103: an interim answer"},
    {"return = 600", 4, "return: 600: a final status is 200-599"},
    {"return = 301", 4, "return: 301 is a redirect: give the URL"},
    {"return = 304", 4, "return: 304: of 3xx, only the redirects"},
    {"return = 204 gone", 4, "return: 204 No Content has no content: no text with it"},
    {"return = 302 /a\001b", 4, "return: the URL holds a blank, a control or a non-ASCII byte"},
    {"return = 302 /a\tb", 4, "return: the URL holds a blank"},
    {"return = 302 https://$hots/", 4, "return: unknown variable at '$hots/'"},
    {"return = 302 //evil.example/", 4, "return: '//evil.example/' is no URL to send clients to"},
    {"return = 302 app.test/x", 4, "return: 'app.test/x' is no URL to send clients to"},
    {"return = 200 a\033b", 4, "return: control byte \\x1b in the value"},
    {"return = 200 $nope", 4, "return: unknown variable at '$nope'"},
    {"return = 301 https://app.test/\nupstream = u", 5,
     "[route r]: upstream with return (line 4): the route answers itself"},
    {"return = 410\nrewrite_prefix = /x/", 5, "[route r]: rewrite_prefix with return (line 4)"},
    {"return = 410\nrequest_header = X-A: b", 5, "[route r]: request_header with return (line 4)"},
    {"return = 410\n[fault f]\nroute = r\nstatus = 503", 6,
     "[fault f]: [route r] answers itself (return): the rule would never act"},
};

static void test_refused_at_load(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(refusal_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                              "[route r]\n%s\n[upstream u]\norigin = sim\n",
                                              refusal_rows[i].lines),
                         0);
        struct tu_cmd_result res = {0};
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[1200];
        snprintf(want, sizeof(want), "%s:%d: %s", harness_config_path(h), refusal_rows[i].line,
                 refusal_rows[i].message);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", refusal_rows[i].lines, want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
    /* a file of return routes alone needs no [upstream]; one forwarding route does */
    static const struct {
        const char *routes;
        int rc;
    } files[] = {
        {"[route a]\nreturn = 204\n[route b]\nprefix = /b/\nreturn = 302 /\n", 0},
        {"[route a]\nreturn = 204\n[route b]\nprefix = /b/\nupstream = u\n", 1},
    };
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n%s",
                                              files[i].routes),
                         0);
        struct tu_cmd_result res = {0};
        int rc = harness_check_config(h, &res);
        if (rc != files[i].rc)
            fail_msg("%s: exit %d:\n%s%s", files[i].routes, rc, res.out, res.err);
        if (rc == 0 && !tu_contains(res.out, "configuration ok (0 upstreams, 2 routes)"))
            fail_msg("%s", res.out);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
}

/* ---- a reload swaps ---- */

static int status_of(struct harness *h, const char *target, char *location, size_t size)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: app.test\r\n\r\n", target);
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    const char *loc = raw_header(&r, "Location");
    snprintf(location, size, "%s", loc ? loc : "");
    int status = r.status;
    raw_response_free(&r);
    raw_close(c);
    return status;
}

static void test_reload_swaps(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    static const char base[] = "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nworkers = 1\n"
                               "[upstream u]\norigin = sim\n";
    assert_int_equal(harness_write_config(h, "%s[route r]\nreturn = 302 /one$request_uri\n", base),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    char loc[256];
    assert_int_equal(status_of(h, "/status/200", loc, sizeof(loc)), 302);
    assert_string_equal(loc, "/one/status/200");

    assert_int_equal(harness_write_config(h, "%s[route r]\nreturn = 308 https://$host/two\n",
                                          base),
                     0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "the previous workers have finished", PX_IO_MS), 0);
    assert_int_equal(status_of(h, "/status/200", loc, sizeof(loc)), 308);
    assert_string_equal(loc, "https://app.test/two");

    /* and back to forwarding: the same route, its origin answers */
    assert_int_equal(harness_write_config(h, "%s[route r]\nupstream = u\n", base), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log_count(h, "the previous workers have finished", 2, PX_IO_MS),
                     0);
    assert_int_equal(status_of(h, "/status/200", loc, sizeof(loc)), 200);
    assert_string_equal(loc, "");
    px_stop(h);
}

/* $client_addr in a return's text is the client real_ip took from a trusted proxy, as in
 * header rules (on the old code: the proxy's own address, 127.0.0.1). */
static void test_client_addr_behind_trusted_proxy(void **state)
{
    (void)state;
    struct harness *h = px_start("trusted_proxies = 127.0.0.1\nreal_ip = x-forwarded-for\n",
                                 "[route who]\nreturn = 200 you are $client_addr\n");
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: a\r\n"
                                     "X-Forwarded-For: 127.9.9.9\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "you are 127.9.9.9\n");
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
}

/* Edges of the answer: "/$request_uri" of a target "/p" is "//p" before the cut (a run of two
 * is cut as a longer one is: "//p" is host p to a browser); "https://$host" of no Host is no
 * authority at all (refused, not read past its end); a client's Connection: close is honoured
 * by the route's answer as by any other; a rule's Server replaces ours, never adds a second. */
static void test_return_edges(void **state)
{
    (void)state;
    struct harness *h = px_start(NULL, RETURN_ROUTES "[route bare]\nprefix = /bare\n"
                                                      "return = 302 https://$host\n"
                                                      "response_header = Server: edge\n");
    static const struct {
        const char *why, *request;
        int status;
        const char *location;  /* NULL: none */
        bool closes;
    } rows[] = {
        {"two slashes are one", "GET /p HTTP/1.1\r\nHost: rel.test\r\n\r\n", 302, "/p", false},
        {"https:// and nothing", "GET /bare HTTP/1.0\r\n\r\n", 400, NULL, true},
        {"https://$host of a Host", "GET /bare HTTP/1.1\r\nHost: app.test\r\n\r\n", 302,
         "https://app.test", false},
        {"Connection: close", "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
         200, NULL, true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        print_message("%s\n", rows[i].why);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, rows[i].status);
        const char *loc = raw_header(&r, "Location");
        if (rows[i].location ? !loc || strcmp(loc, rows[i].location) != 0 : !!loc)
            fail_msg("%s: Location %s:\n%s", rows[i].why, loc ? loc : "(none)", r.head.text);
        assert_int_equal(raw_head_field_count(&r.head, "Server"), 1); /* the rule's, or ours */
        const char *conn = raw_header(&r, "Connection"); /* said, not only done */
        if (rows[i].closes != (conn && strcmp(conn, "close") == 0))
            fail_msg("%s: Connection %s", rows[i].why, conn ? conn : "(none)");
        if (raw_wait_closed(c, rows[i].closes ? PX_IO_MS : 0) != rows[i].closes)
            fail_msg("%s: the connection %s", rows[i].why, rows[i].closes ? "stayed" : "closed");
        raw_response_free(&r);
        raw_close(c);
    }
    px_stop(h);
}

/* The access line counts the body sent: a HEAD's answer has none (bytes_out=0), where the GET
 * of the same route sent its 12 bytes. */
static void test_head_logs_no_body(void **state)
{
    (void)state;
    struct harness *h = px_start(NULL, RETURN_ROUTES);
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "HEAD /healthz HTTP/1.1\r\nHost: app.test\r\n"
                                     "X-Request-Id: ret-head\r\n\r\n"), 0);
    assert_int_equal(raw_read_head_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    assert_int_equal(raw_send_str(c, "GET /healthz HTTP/1.1\r\nHost: app.test\r\n"
                                     "X-Request-Id: ret-get\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    char *line = px_log_line_for_id(h, "ret-head");
    if (!tu_contains(line, " bytes_out=0 "))
        fail_msg("HEAD: %s", line);
    free(line);
    line = px_log_line_for_id(h, "ret-get");
    if (!tu_contains(line, " bytes_out=12 "))
        fail_msg("GET: %s", line);
    free(line);
    px_stop(h);
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_hostile_host_and_target),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_http2),
        cmocka_unit_test(test_rate_log_and_metrics),
        cmocka_unit_test(test_request_uri_in_rule),
        cmocka_unit_test(test_refused_at_load),
        cmocka_unit_test(test_reload_swaps),
        cmocka_unit_test(test_client_addr_behind_trusted_proxy),
        cmocka_unit_test(test_return_edges),
        cmocka_unit_test(test_head_logs_no_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
