/*
 * test_route_scheme.c — routes by scheme (scheme = http|https per [route]), end to end: one
 * Portico with a plain, an h2c and a TLS listener on loopback, the simulator origin behind it.
 * Plain HTTP/1.1 and h2c are redirected to HTTPS by a `scheme = http` return route, the same host
 * and path over TLS (HTTP/1.1 and HTTP/2) forwarded; a route naming the scheme before one that
 * does not at equal prefix, a longer prefix first all the same; $scheme agreeing with the route;
 * the duplicates refused or let through by scheme, a scheme no listener speaks warned about, and
 * the keys a return route would leave idle refused at their lines.
 *
 * No sleeps: every wait is a bounded read or a command's exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

/* The forwarding route first in the file: the order of the file is not what picks. */
#define SCHEME_ROUTES                                                                              \
    "[upstream u]\norigin = sim\n"                                                                 \
    "[route app]\nupstream = u\n"                                                                  \
    "[route tohttps]\nscheme = http\nreturn = 308 https://$host$request_uri\n"                     \
    "[route status]\nprefix = /status/\nupstream = u\n"                                            \
    "[route which]\nprefix = /which/\nreturn = 200 any $scheme\n"                                  \
    "[route which_https]\nprefix = /which/\nscheme = https\nreturn = 200 tls $scheme\n"

/* Portico with a plain listener ("listen"), an h2c one ("h2c") and a TLS one ("tls"). */
static struct harness *start_three(void)
{
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "listen = 127.0.0.1:{{port:h2c}} h2c\nlisten = 127.0.0.1:{{port:tls}} tls\n"
             "tls_cert = %s\ntls_key = %s\n",
             certs->server_cert, certs->server_key);
    return px_start(extra, SCHEME_ROUTES);
}

/* ---- plain HTTP/1.1: redirected, but for the longer prefix ---- */

static const struct {
    const char *why;
    const char *request;
    int status;
    const char *location; /* NULL: none */
    const char *body;     /* NULL: not checked */
} plain_rows[] = {
    {"plain GET: 308 to https with the host, path and query",
     "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.test\r\n\r\n", 308, "https://app.test/a/b?x=1&y=2",
     NULL},
    {"a longer prefix without a scheme still wins: forwarded",
     "GET /status/204 HTTP/1.1\r\nHost: app.test\r\n\r\n", 204, NULL, NULL},
    {"$scheme is the scheme the route matched on",
     "GET /which/ HTTP/1.1\r\nHost: app.test\r\n\r\n", 200, NULL, "any http\n"},
};

static void test_plain_redirected(void **state)
{
    (void)state;
    struct harness *h = start_three();
    struct raw_conn *c = px_connect(h);
    for (size_t i = 0; i < ARRAY_SIZE(plain_rows); i++) {
        print_message("%s\n", plain_rows[i].why);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, plain_rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        if (r.status != plain_rows[i].status)
            fail_msg("%s: %d, not %d:\n%s", plain_rows[i].why, r.status, plain_rows[i].status,
                     r.head.text);
        const char *loc = raw_header(&r, "Location");
        const char *want = plain_rows[i].location;
        if ((want == NULL) != (loc == NULL) || (want && strcmp(loc, want) != 0))
            fail_msg("%s: Location %s, not %s:\n%s", plain_rows[i].why, loc ? loc : "(none)",
                     want ? want : "(none)", r.head.text);
        if (plain_rows[i].body && (r.body_len != strlen(plain_rows[i].body) ||
                                   memcmp(r.body, plain_rows[i].body, r.body_len) != 0))
            fail_msg("%s: body '%.*s', not '%s'", plain_rows[i].why, (int)r.body_len, r.body,
                     plain_rows[i].body);
        raw_response_free(&r);
    }
    raw_close(c);
    px_stop(h);
}

/* ---- curl over TLS (HTTP/1.1, HTTP/2) and h2c ---- */

static const struct {
    const char *why;
    const char *listener;   /* harness port name */
    const char *scheme;     /* of the URL */
    const char *version;    /* curl's option */
    const char *path;
    const char *want[3];    /* in curl's -D - output and body (the simulator's 404 for a path
                               it has not: the origin answered) */
    const char *absent;     /* NULL: none */
} curl_rows[] = {
    {"the same host and path over TLS: forwarded to the origin", "tls", "https", "--http1.1",
     "/a/b?x=1", {"HTTP/1.1 404", "portico-sim", NULL}, "ocation"},
    {"HTTP/2 over TLS: forwarded", "tls", "https", "--http2", "/a/b?x=1",
     {"HTTP/2 404", "portico-sim", NULL}, "location"},
    {"h2c: redirected", "h2c", "http", "--http2-prior-knowledge", "/a/b?x=1",
     {"HTTP/2 308", "\r\nlocation: https://app.test/a/b?x=1\r\n", NULL}, NULL},
    {"over TLS, the route naming https before the one naming none; $scheme https", "tls",
     "https", "--http2", "/which/", {"HTTP/2 200", "\r\n\r\ntls https\n", NULL}, NULL},
    {"h2c: the route naming none, $scheme http", "h2c", "http", "--http2-prior-knowledge",
     "/which/", {"HTTP/2 200", "\r\n\r\nany http\n", NULL}, NULL},
};

static void test_tls_forwarded_h2c_redirected(void **state)
{
    (void)state;
    struct harness *h = start_three();
    for (size_t i = 0; i < ARRAY_SIZE(curl_rows); i++) {
        char url[128];
        snprintf(url, sizeof(url), "%s://127.0.0.1:%u%s", curl_rows[i].scheme,
                 harness_port(h, curl_rows[i].listener), curl_rows[i].path);
        const char *argv[] = {"curl",          "-sS", "-k", "--max-time", "10",
                              curl_rows[i].version, "-H", "Host: app.test", "-D", "-",
                              url,           NULL};
        struct tu_cmd_result res = {0};
        px_run_ok(argv, &res);
        print_message("%s:\n%s\n", curl_rows[i].why, res.out);
        for (size_t k = 0; k < 3 && curl_rows[i].want[k]; k++)
            if (!tu_contains(res.out, curl_rows[i].want[k]))
                fail_msg("%s: no \"%s\" in:\n%s", curl_rows[i].why, curl_rows[i].want[k],
                         res.out);
        if (curl_rows[i].absent && tu_contains(res.out, curl_rows[i].absent))
            fail_msg("%s: \"%s\" in:\n%s", curl_rows[i].why, curl_rows[i].absent, res.out);
        tu_cmd_result_free(&res);
    }
    px_stop(h);
}

/* ---- at load ---- */

static const struct {
    const char *routes;
    int rc;              /* of portico -t */
    int line;            /* where the message is */
    const char *message; /* after "FILE:LINE: "; NULL: none looked for */
} duplicate_rows[] = {
    {"[route a]\nscheme = https\nupstream = u\n"
     "[route b]\nscheme = https\nupstream = u",
     1, 8, "[route b] has the same host and prefix as [route a], and the same scheme = https"},
    {"[route a]\nhost = app.test\nprefix = /x/\nscheme = http\nreturn = 204\n"
     "[route b]\nhost = app.test\nprefix = /%78/\nscheme = http\nreturn = 204",
     1, 10, "[route b] has the same host and prefix as [route a], and the same scheme = http"},
    {"[route a]\nupstream = u\n[route b]\nupstream = u", 1, 7,
     "[route b] has the same host and prefix as [route a]"},
    {"[route a]\nscheme = http\nupstream = u\n[route b]\nscheme = https\n"
     "upstream = u", 0, 9, "warning: [route b]: scheme = https and no `listen ... tls` listener: "
     "no request will take the route"},
    {"[route a]\nscheme = http\nreturn = 308 https://$host$request_uri\n"
     "[route b]\nupstream = u", 0, 0, NULL},
    {"[route a]\nscheme = ftp\nupstream = u", 1, 6,
     "scheme: 'ftp' is not one of any, http, https"},
};

static void test_duplicates_by_scheme(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(duplicate_rows); i++) {
        print_message("%s\n", duplicate_rows[i].routes);
        px_check_routes(duplicate_rows[i].routes, duplicate_rows[i].rc, duplicate_rows[i].line,
                   duplicate_rows[i].message);
    }
}

/* The route keys a return route would leave idle: refused at their lines (line 7, after
 * "return" on line 6). */
static const char *const idle_rows[] = {
    "early_hints = </a.css>; rel=preload",
    "early_hints_learn = on",
    "early_hints_cache = 10",
    "expect = synthesize",
    "continue_timeout = 1s",
    "processing_interval = 1s",
    "server_timing = on",
    "client_body_min_rate = 1k",
    "client_body_rate_grace = 1s",
};

static void test_idle_keys_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(idle_rows); i++) {
        char routes[256], message[256], key[64];
        snprintf(key, sizeof(key), "%.*s", (int)strcspn(idle_rows[i], " "), idle_rows[i]);
        snprintf(routes, sizeof(routes), "[route r]\nreturn = 410\n%s",
                 idle_rows[i]);
        snprintf(message, sizeof(message), "[route r]: %s with return (line 6): the route "
                 "answers itself, no origin is asked", key);
        print_message("%s\n", idle_rows[i]);
        px_check_routes(routes, 1, 7, message);
    }
    /* and what a return route does use loads */
    px_check_routes("[route r]\nreturn = 410\nresponse_header = X-A: b\nclient_rate = 5/s"
               "\nclient_rate_burst = 2\nscheme = http\nallow = 127.0.0.1\ndeny = all",
               0, 0, NULL);
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_redirected),
        cmocka_unit_test(test_tls_forwarded_h2c_redirected),
        cmocka_unit_test(test_duplicates_by_scheme),
        cmocka_unit_test(test_idle_keys_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
