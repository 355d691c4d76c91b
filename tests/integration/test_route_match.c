/*
 * test_route_match.c — routes that match on method, header and cookie, end to end: three fake
 * origins on loopback each answering its own name (stable, canary, write), one Portico with a
 * plain and an h2c listener in front. X-Canary: 1 or the cookie canary=1 (HTTP/1.1, and HTTP/2
 * crumbs) reach the canary, a request without them or with another value the stable route of the
 * same prefix; POST /api/ goes to the write pool and GET (HEAD with it) to the read one, other
 * methods to a route without conditions; conditions failing at a longer prefix fall back to a
 * shorter one; a return route with a method condition answers itself; at load, duplicates with
 * the same conditions refused and bad condition lines at FILE:LINE.
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

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

enum pool { STABLE, CANARY, WRITE, NPOOLS };

static const char *const pool_names[NPOOLS] = {"stable\n", "canary\n", "write\n"};

struct pools {
    struct fake_origin *o[NPOOLS];
};

/* The canary routes first in the file: at one prefix, a route with conditions ranks before one
 * without wherever it stands. */
#define MATCH_ROUTES                                                                               \
    "[upstream stable]\norigin = 127.0.0.1:%u\n"                                                   \
    "[upstream canary]\norigin = 127.0.0.1:%u\n"                                                   \
    "[upstream write]\norigin = 127.0.0.1:%u\n"                                                    \
    "[route stable]\nupstream = stable\n"                                                          \
    "[route canary]\nheader = X-Canary: 1\nupstream = canary\n"                                    \
    "[route canary_cookie]\ncookie = canary=1\nupstream = canary\n"                                \
    "[route api_write]\nprefix = /api/\nmethod = POST PUT PATCH DELETE\nupstream = write\n"        \
    "[route api_read]\nprefix = /api/\nmethod = GET\nupstream = stable\n"                          \
    "[route api_other]\nprefix = /api/\nreturn = 405\n"                                            \
    "[route deep_canary]\nprefix = /deep/er/\nheader = X-Canary: 1\nupstream = canary\n"           \
    "[route no_trace]\nmethod = TRACE\nreturn = 405 no TRACE here\n"

static struct harness *start(struct pools *p)
{
    unsigned port[NPOOLS];
    for (int i = 0; i < NPOOLS; i++) {
        struct fake_origin_opts opts = {.kind = FO_OK, .body = pool_names[i]};
        p->o[i] = px_origin_start(&opts);
        port[i] = fake_origin_port(p->o[i]);
    }
    return px_start("listen = 127.0.0.1:{{port:h2c}} h2c\n", MATCH_ROUTES, port[STABLE],
                    port[CANARY], port[WRITE]);
}

static void stop(struct harness *h, struct pools *p)
{
    px_stop(h);
    for (int i = 0; i < NPOOLS; i++)
        fake_origin_stop(p->o[i]);
}

/* ---- HTTP/1.1 ---- */

static const struct {
    const char *why;
    const char *request;
    int status;
    const char *body; /* the pool's name, or Portico's own answer; "" for HEAD */
} h1_rows[] = {
    {"X-Canary: 1: the canary upstream", "GET /x HTTP/1.1\r\nHost: a\r\nX-Canary: 1\r\n\r\n",
     200, "canary\n"},
    {"no X-Canary: the route of the same prefix without conditions",
     "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 200, "stable\n"},
    {"X-Canary: 2: not the value, stable", "GET /x HTTP/1.1\r\nHost: a\r\nX-Canary: 2\r\n\r\n",
     200, "stable\n"},
    {"the name in any case", "GET /x HTTP/1.1\r\nHost: a\r\nx-canary:   1  \r\n\r\n", 200,
     "canary\n"},
    {"cookie canary=1 among others", "GET /x HTTP/1.1\r\nHost: a\r\nCookie: a=1; canary=1; "
     "b=2\r\n\r\n", 200, "canary\n"},
    {"cookie canary=0: stable", "GET /x HTTP/1.1\r\nHost: a\r\nCookie: canary=0\r\n\r\n", 200,
     "stable\n"},
    {"POST /api/: the write pool",
     "POST /api/items HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", 200, "write\n"},
    {"GET /api/: the read pool", "GET /api/items HTTP/1.1\r\nHost: a\r\n\r\n", 200, "stable\n"},
    {"HEAD /api/ goes with GET", "HEAD /api/items HTTP/1.1\r\nHost: a\r\n\r\n", 200, ""},
    {"OPTIONS /api/: the route without conditions (405)",
     "OPTIONS /api/items HTTP/1.1\r\nHost: a\r\n\r\n", 405, NULL},
    {"conditions failing at /deep/er/: the shorter prefix /",
     "GET /deep/er/x HTTP/1.1\r\nHost: a\r\n\r\n", 200, "stable\n"},
    {"and holding: the longer prefix", "GET /deep/er/x HTTP/1.1\r\nHost: a\r\nX-Canary: 1\r\n"
     "\r\n", 200, "canary\n"},
    {"a return route with a condition: TRACE answered", "TRACE /x HTTP/1.1\r\nHost: a\r\n\r\n",
     405, "no TRACE here\n"},
};

static void test_h1_conditions(void **state)
{
    (void)state;
    struct pools p;
    struct harness *h = start(&p);
    struct raw_conn *c = px_connect(h);
    for (size_t i = 0; i < ARRAY_SIZE(h1_rows); i++) {
        print_message("%s\n", h1_rows[i].why);
        struct raw_response r;
        bool head = strncmp(h1_rows[i].request, "HEAD ", 5) == 0;
        assert_int_equal(raw_send_str(c, h1_rows[i].request), 0);
        assert_int_equal(head ? raw_read_head_response(c, &r, PX_IO_MS)
                              : raw_read_response(c, &r, PX_IO_MS),
                         0);
        if (r.status != h1_rows[i].status)
            fail_msg("%s: %d, not %d:\n%s", h1_rows[i].why, r.status, h1_rows[i].status,
                     r.head.text);
        const char *want = h1_rows[i].body;
        if (want && (r.body_len != strlen(want) || memcmp(r.body, want, r.body_len) != 0))
            fail_msg("%s: body '%.*s', not '%s'", h1_rows[i].why, (int)r.body_len, r.body, want);
        raw_response_free(&r);
    }
    raw_close(c);
    /* the HEAD went to the read pool's origin: its only HEAD */
    unsigned n = fake_origin_requests(p.o[STABLE]);
    bool head_seen = false;
    for (unsigned i = 0; i < n && !head_seen; i++) {
        char *rq = fake_origin_request_head(p.o[STABLE], i);
        head_seen = rq && strncmp(rq, "HEAD /api/items ", 16) == 0;
        free(rq);
    }
    assert_true(head_seen);
    stop(h, &p);
}

/* ---- HTTP/2 (h2c, curl): the header, and the cookie as crumbs ---- */

static const struct {
    const char *why;
    const char *fields[3]; /* curl -H values; NULL: no more */
    const char *body;
} h2_rows[] = {
    {"h2: x-canary: 1", {"X-Canary: 1", NULL}, "canary\n"},
    {"h2: none", {NULL}, "stable\n"},
    {"h2: canary=1 in a crumb of its own", {"Cookie: a=1", "Cookie: canary=1", NULL},
     "canary\n"},
    {"h2: crumbs without it", {"Cookie: a=1", "Cookie: canary=2", NULL}, "stable\n"},
};

static void test_h2_conditions(void **state)
{
    (void)state;
    struct pools p;
    struct harness *h = start(&p);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", harness_port(h, "h2c"));
    for (size_t i = 0; i < ARRAY_SIZE(h2_rows); i++) {
        const char *argv[16] = {"curl", "-sS", "--http2-prior-knowledge", "--max-time", "10"};
        int n = 5;
        for (int k = 0; k < 3 && h2_rows[i].fields[k]; k++) {
            argv[n++] = "-H";
            argv[n++] = h2_rows[i].fields[k];
        }
        argv[n++] = url;
        argv[n] = NULL;
        struct tu_cmd_result res = {0};
        px_run_ok(argv, &res);
        print_message("%s: %s", h2_rows[i].why, res.out);
        if (strcmp(res.out, h2_rows[i].body) != 0)
            fail_msg("%s: '%s', not '%s'", h2_rows[i].why, res.out, h2_rows[i].body);
        tu_cmd_result_free(&res);
    }
    stop(h, &p);
}

/* ---- at load ---- */

static const struct {
    const char *routes;
    int rc;              /* of portico -t */
    int line;            /* where the message is */
    const char *message; /* after "FILE:LINE: "; NULL: none looked for */
} load_rows[] = {
    {"[route a]\nheader = X-Canary: 1\nupstream = u\n"
     "[route b]\nheader = x-canary: 1\nupstream = u", 1, 8,
     "[route b] has the same host and prefix as [route a], and the same method, header and "
     "cookie conditions"},
    {"[route a]\nmethod = GET\nupstream = u\n[route b]\nmethod = HEAD GET\nupstream = u", 1, 8,
     "[route b] has the same host and prefix as [route a], and the same method, header and "
     "cookie conditions"},
    {"[route a]\nupstream = u\n[route b]\nheader = X-Canary: 1\nupstream = u\n"
     "[route c]\ncookie = canary=1\nupstream = u\n[route d]\nmethod = POST\nupstream = u", 0, 0,
     NULL},
    {"[route a]\nmethod = GET P(ST\nupstream = u", 1, 6,
     "method: 'P(ST' is not a method token"},
    {"[route a]\nheader = X Canary: 1\nupstream = u", 1, 6,
     "header: 'X Canary' is not a field name"},
    {"[route a]\nheader = X-Canary: 1\x7f\nupstream = u", 1, 6,
     "header: control character 0x7f in the value of x-canary"},
    {"[route a]\ncookie = can@ry=1\nupstream = u", 1, 6,
     "cookie: 'can@ry' is not a cookie name"},
    {"[route a]\nheader = !X-Canary\nupstream = u", 1, 6, "header: '!X-Canary': no negation"},
    /* HTTP/2's pseudo-header fields and HTTP/1.1's connection-specific ones: said for what
     * they are (a Connection route would take HTTP/1.1 requests and never HTTP/2 ones) */
    {"[route a]\nupstream = u\nheader = :method: POST", 1, 7,
     "header: ':method' is an HTTP/2 pseudo-header field"},
    {"[route a]\nheader = Connection: upgrade\nupstream = u", 1, 6,
     "header: Connection is connection-specific"},
    /* CONNECT is answered 501 before routing, HTTP/1.1 and HTTP/2 alike: a route by it is dead */
    {"[route a]\nmethod = CONNECT\nreturn = 200", 1, 6,
     "method: CONNECT is answered 501 before any route is chosen"},
    /* b after a, whose conditions hold whenever b's do: b is dead, said once at its line */
    {"[route a]\nmethod = GET\nupstream = u\n[route b]\nmethod = HEAD\nupstream = u\n"
     "[route c]\nmethod = HEAD\nupstream = u", 1, 8,
     "[route b] is never taken: [route a] before it"},
    {"[route a]\nheader = X-A\nupstream = u\n[route b]\nheader = X-A\nupstream = u\n"
     "[route c]\nheader = X-A\nupstream = u", 1, 11,
     "[route c] has the same host and prefix as [route a]"},
    {"[route a]\nheader = X-Canary\nupstream = u\n[route b]\nheader = X-Canary: 1\n"
     "cookie = c=1\nupstream = u", 1, 8, "[route b] is never taken: [route a] before it"},
};

static void test_load(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(load_rows); i++) {
        print_message("%s\n", load_rows[i].routes);
        px_check_routes(load_rows[i].routes, load_rows[i].rc, load_rows[i].line,
                   load_rows[i].message);
    }
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h1_conditions),
        cmocka_unit_test(test_h2_conditions),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
