/*
 * test_header_rules.c — a route's header rules (request_header, request_header_remove,
 * response_header, response_header_remove) and its rewrite_prefix, end to end: the real portico
 * binary between the raw client (or curl over HTTP/2) and a fake origin that records the exact
 * bytes it received. The refusals at load go through `portico -t`; a reload swaps the rules.
 *
 * No sleeps: every wait is a bounded read, a fake-origin counter or a log line.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/oom.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

/* The routes every request row goes through: rules on /rules/, none on the rest, a rewrite on
 * /api/ and on /ab (whose rewrite ends in '/': "/ab." would join into a dot segment). */
#define RULES_ROUTES                                                                               \
    "[upstream u]\norigin = 127.0.0.1:%u\n"                                                        \
    "[route plain]\nprefix = /\nupstream = u\n"                                                    \
    "[route rules]\nprefix = /rules/\nupstream = u\n"                                              \
    "request_header = X-User: static\n"                                                            \
    "request_header = X-Real-IP: $client_addr\n"                                                   \
    "request_header = X-Info: ${scheme}://$host/$request_id $$5\n"                                 \
    "request_header_remove = Cookie\n"                                                             \
    "request_header = Host: origin.internal\n"                                                     \
    "request_header = X-Forwarded-Prefix: /rules\n"                                                \
    "[route api]\nprefix = /api/\nupstream = u\nrewrite_prefix = /\n"                              \
    "[route ab]\nprefix = /ab\nupstream = u\nrewrite_prefix = /b/\n"

/* How many lines of head name the field (any case, '_' for '-'): one, not the client's beside
 * Portico's. */
static unsigned field_lines(const char *head, const char *name)
{
    unsigned n = 0;
    size_t len = strlen(name);
    for (const char *line = head; line && *line; line = strstr(line, "\r\n")) {
        if (line[0] == '\r')
            line += 2;
        bool same = strlen(line) > len && line[len] == ':';
        for (size_t i = 0; same && i < len; i++) {
            char a = line[i] == '_' ? '-' : line[i], b = name[i] == '_' ? '-' : name[i];
            same = (a | 0x20) == (b | 0x20);
        }
        n += same;
    }
    return n;
}

/* ---- request rules over HTTP/1.1 ---- */

static const struct {
    const char *why;
    const char *request;       /* sent as is */
    const char *want[6];       /* lines the origin's head holds */
    const char *absent[4];     /* ... and does not */
    const char *once;          /* a field name the origin sees exactly once */
} request_rows[] = {
    {"set replaces the client's field, its '_' twin too, and variables expand",
     "GET /rules/x?q=1 HTTP/1.1\r\nHost: t\r\nX-User: evil\r\nX_User: evil2\r\n"
     "X-Request-Id: rid-1\r\nCookie: a=1\r\nX-Real-IP: 127.6.6.6\r\n\r\n",
     {"GET /rules/x?q=1 HTTP/1.1\r\n", "\r\nX-User: static\r\n", "\r\nX-Real-IP: 127.0.0.1\r\n",
      "\r\nX-Info: http://t/rid-1 $5\r\n", "\r\nX-Forwarded-Host: t\r\n", NULL},
     {"evil", "Cookie", "127.6.6.6", NULL},
     "X-User"},
    {"Host is set in the client's Host's place; X-Forwarded-Prefix replaces the client's",
     "GET /rules/h HTTP/1.1\r\nHost: t\r\nX-Forwarded-Prefix: /evil\r\n\r\n",
     {"GET /rules/h HTTP/1.1\r\nHost: origin.internal\r\n", "\r\nX-Forwarded-Prefix: /rules\r\n",
      NULL},
     {"\r\nHost: t\r\n", "/evil", NULL},
     "Host"},
    {"a route without rules forwards the same fields untouched",
     "GET /plain HTTP/1.1\r\nHost: t\r\nX-User: evil\r\nCookie: a=1\r\n\r\n",
     {"\r\nHost: t\r\n", "\r\nX-User: evil\r\n", "\r\nCookie: a=1\r\n", NULL},
     {"static", "X-Info", NULL},
     "X-User"},
};

static void check_head(const char *why, const char *head, const char *const want[],
                       const char *const absent[], const char *once)
{
    for (size_t k = 0; want[k]; k++)
        if (!tu_contains(head, want[k]))
            fail_msg("%s: the origin's head lacks \"%s\":\n%s", why, want[k], head);
    for (size_t k = 0; absent[k]; k++)
        if (tu_contains(head, absent[k]))
            fail_msg("%s: the origin's head holds \"%s\":\n%s", why, absent[k], head);
    if (once && field_lines(head, once) != 1)
        fail_msg("%s: %u %s fields, not one:\n%s", why, field_lines(head, once), once, head);
}

static void test_request_rules(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(NULL, RULES_ROUTES, fake_origin_port(o));
    for (size_t i = 0; i < ARRAY_SIZE(request_rows); i++) {
        print_message("%s\n", request_rows[i].why);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, request_rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(fake_origin_wait_requests(o, (unsigned)i + 1, PX_IO_MS), 0);
        char *head = fake_origin_request_head(o, (unsigned)i);
        assert_non_null(head);
        check_head(request_rows[i].why, head, request_rows[i].want, request_rows[i].absent,
                   request_rows[i].once);
        free(head);
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* A chunked upload's trailer section is no way around the rules: a trailer of a name a rule sets
 * or removes goes (an application that merges trailers would take it for the head's). */
static void test_request_trailer_rules(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(NULL, RULES_ROUTES, fake_origin_port(o));
    static const struct {
        const char *path;
        const char *kept;      /* in the origin's trailers */
        const char *dropped;   /* not; NULL: none */
    } rows[] = {
        {"/rules/t", "X-Other: ok", "evil"},
        {"/plain-t", "X-User: evil", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        char req[512];
        snprintf(req, sizeof(req),
                 "POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "2\r\nhi\r\n0\r\nX-User: evil\r\nx_user: evil2\r\nCookie: c=1\r\n"
                 "X-Other: ok\r\n\r\n",
                 rows[i].path);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(fake_origin_wait_requests(o, (unsigned)i + 1, PX_IO_MS), 0);
        size_t len = 0;
        char *all = fake_origin_request(o, (unsigned)i, &len);
        assert_non_null(all);
        const char *trailers = strstr(all, "\r\n0\r\n");
        if (!trailers || !tu_contains(trailers, rows[i].kept) ||
            (rows[i].dropped && tu_contains(trailers, rows[i].dropped)))
            fail_msg("%s: the origin got:\n%s", rows[i].path, all);
        free(all);
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- request rules and the rewrite over HTTP/2 (names arrive lowercase) ---- */

static const struct {
    const char *why;
    const char *path;
    const char *headers[4];    /* curl -H lines */
    const char *want[4];
    const char *absent[3];
    const char *once;
} h2_rows[] = {
    {"h2: x-user from the client goes, the rule's X-User is the one field",
     "/rules/h2", {"x-user: evil", "x_user: evil2", "cookie: a=1", NULL},
     {"GET /rules/h2 HTTP/1.1\r\n", "\r\nX-User: static\r\n", "\r\nHost: origin.internal\r\n",
      NULL},
     {"evil", "ookie", NULL},
     "x-user"},
    {"h2: the rewrite keeps the query", "/api/v/h2?x=1", {NULL}, {"GET /v/h2?x=1 HTTP/1.1\r\n",
     NULL}, {NULL}, NULL},
};

static void test_request_rules_http2(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start("listen = 127.0.0.1:{{port:h2c}} h2c\n", RULES_ROUTES,
                                 fake_origin_port(o));
    for (size_t i = 0; i < ARRAY_SIZE(h2_rows); i++) {
        print_message("%s\n", h2_rows[i].why);
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", harness_port(h, "h2c"),
                 h2_rows[i].path);
        const char *argv[20];
        size_t n = 0;
        argv[n++] = "curl";
        argv[n++] = "-sS";
        argv[n++] = "--max-time";
        argv[n++] = "10";
        argv[n++] = "--http2-prior-knowledge";
        argv[n++] = "-o";
        argv[n++] = "/dev/null";
        argv[n++] = "-w";
        argv[n++] = "%{http_code} %{http_version}";
        for (size_t k = 0; h2_rows[i].headers[k]; k++) {
            argv[n++] = "-H";
            argv[n++] = h2_rows[i].headers[k];
        }
        argv[n++] = url;
        argv[n] = NULL;
        struct tu_cmd_result res = {0};
        px_run_ok(argv, &res);
        assert_string_equal(res.out, "200 2");
        tu_cmd_result_free(&res);
        assert_int_equal(fake_origin_wait_requests(o, (unsigned)i + 1, PX_IO_MS), 0);
        char *head = fake_origin_request_head(o, (unsigned)i);
        assert_non_null(head);
        check_head(h2_rows[i].why, head, h2_rows[i].want, h2_rows[i].absent, h2_rows[i].once);
        free(head);
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- rewrite_prefix over HTTP/1.1 ---- */

static const struct {
    const char *why;
    const char *target;        /* request-target sent */
    int status;                /* Portico's answer */
    const char *line;          /* the origin's request line; NULL: it got nothing */
} rewrite_rows[] = {
    {"the prefix goes, the query stays", "/api/x?q=1", 200, "GET /x?q=1 HTTP/1.1"},
    {"the prefix alone is '/'", "/api/", 200, "GET / HTTP/1.1"},
    {"a run of slashes is cut as the prefix matched it", "//api//x?q", 200, "GET /x?q HTTP/1.1"},
    {"an escaped unreserved character is cut as matched", "/%61pi/x", 200, "GET /x HTTP/1.1"},
    {"an escaped slash is cut as matched", "/api%2Fx", 200, "GET /x HTTP/1.1"},
    {"absolute-form: the path of its URI", "http://t/api/y?z", 200, "GET /y?z HTTP/1.1"},
    {"no match of /api/: the route of / forwards as is", "/apix", 200, "GET /apix HTTP/1.1"},
    {"dot segments are refused before any route", "/api/../admin", 400, NULL},
    {"encoded dot segments too", "/api%2F..%2Fx", 400, NULL},
    {"a dot segment made by the joint is refused", "/ab./x", 400, NULL},
    {"a dot inside a segment is not one", "/ab.c", 200, "GET /b/.c HTTP/1.1"},
};

static void test_rewrite_prefix(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(NULL, RULES_ROUTES, fake_origin_port(o));
    unsigned forwarded = 0;
    for (size_t i = 0; i < ARRAY_SIZE(rewrite_rows); i++) {
        print_message("%s: %s\n", rewrite_rows[i].why, rewrite_rows[i].target);
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 rewrite_rows[i].target);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        if (r.status != rewrite_rows[i].status)
            fail_msg("%s: %d, not %d", rewrite_rows[i].why, r.status, rewrite_rows[i].status);
        raw_response_free(&r);
        raw_close(c);
        if (!rewrite_rows[i].line)
            continue;
        assert_int_equal(fake_origin_wait_requests(o, ++forwarded, PX_IO_MS), 0);
        char *head = fake_origin_request_head(o, forwarded - 1);
        assert_non_null(head);
        if (!px_starts(head, rewrite_rows[i].line))
            fail_msg("%s: the origin got:\n%s", rewrite_rows[i].why, head);
        free(head);
    }
    assert_int_equal(fake_origin_requests(o), forwarded); /* the refused went nowhere */
    px_stop(h);
    fake_origin_stop(o);
}

/* Out of memory for the rewritten target: a 500 (internal_error, as any allocation of an
 * exchange that fails after its start), the log saying why, and the next request is served. */
static void test_rewrite_out_of_memory(void **state)
{
    (void)state;
    if (!oom_possible())
        skip(); /* PORTICO_BIN is valgrind's wrapper (scripts/valgrind.sh) */
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    char err[256];
    if (oom_arm("rewrite_target", 0, 0, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    struct harness *h = px_start(NULL, RULES_ROUTES, fake_origin_port(o));
    oom_disarm();
    for (int i = 0; i < 2; i++) {
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, "GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        if (i == 0 && (r.status != 500 || !strstr(r.body, "internal_error")))
            fail_msg("status %d, body %s", r.status, r.body);
        if (i == 1)
            assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
    }
    assert_int_equal(fake_origin_requests(o), 1);
    char *head = fake_origin_request_head(o, 0);
    assert_true(px_starts(head, "GET /x HTTP/1.1\r\n"));
    free(head);
    char *line = px_log_line(h, " status=500 ");
    if (!strstr(line, " detail=\"out of memory\"") || !strstr(line, " target=\"/api/x\" "))
        fail_msg("wanted the detail and the client's target in %s", line);
    free(line);
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- response rules ---- */

static const struct fo_step resp_length[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Powered-By: php\r\n"
            "Cache-Control: no-store\r\nx_powered_by: php2\r\nX-Kept: yes\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nok"),
    FO_END(),
};
static const struct fo_step resp_chunked[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Powered-By: php\r\n"
            "Cache-Control: no-store\r\nX-Kept: yes\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
            "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\nX-Powered-By: trailer\r\n\r\n"),
    FO_END(),
};

static const struct fo_step *pick_resp(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strstr(req->head, "chunked") ? resp_chunked : resp_length;
}

#define RESP_ROUTES                                                                                \
    "[upstream u]\norigin = 127.0.0.1:%u\n"                                                        \
    "[upstream down]\norigin = 127.0.0.1:%u\nconnect_timeout = 1s\n"                               \
    "[route plain]\nprefix = /\nupstream = u\n"                                                    \
    "[route rules]\nprefix = /rules/\nupstream = u\n"                                              \
    "response_header = Cache-Control: public, max-age=60\n"                                        \
    "response_header_remove = X-Powered-By\n"                                                      \
    "response_header = Strict-Transport-Security: max-age=63072000\n"                              \
    "[route down]\nprefix = /down/\nupstream = down\n"                                             \
    "response_header = Cache-Control: public, max-age=60\n"

static const struct {
    const char *why;
    const char *path;
    const char *head;          /* the exact head the client gets */
    const char *body;
} response_rows[] = {
    {"a 200 with a length: removed, replaced, added after the origin's fields", "/rules/len",
     "HTTP/1.1 200 OK\r\n"
     "X-Kept: yes\r\n"
     "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
     "Cache-Control: public, max-age=60\r\n"
     "Strict-Transport-Security: max-age=63072000\r\n"
     "Via: 1.1 portico\r\n"
     "X-Request-Id: rid-r\r\n"
     "Content-Length: 2\r\n"
     "\r\n",
     "ok"},
    {"a chunked response, streamed: the same head, the body and trailers untouched",
     "/rules/chunked",
     "HTTP/1.1 200 OK\r\n"
     "X-Kept: yes\r\n"
     "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
     "Cache-Control: public, max-age=60\r\n"
     "Strict-Transport-Security: max-age=63072000\r\n"
     "Via: 1.1 portico\r\n"
     "X-Request-Id: rid-r\r\n"
     "Transfer-Encoding: chunked\r\n"
     "\r\n",
     "hello world"},
    {"a route without rules: the origin's fields as they came", "/len",
     "HTTP/1.1 200 OK\r\n"
     "Content-Length: 2\r\n"
     "X-Powered-By: php\r\n"
     "Cache-Control: no-store\r\n"
     "x_powered_by: php2\r\n"
     "X-Kept: yes\r\n"
     "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
     "\r\n",
     "ok"},
};

static void test_response_rules(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_resp};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct fake_origin *down = fake_origin_start_kind(FO_REFUSE);
    assert_non_null(down);
    struct harness *h = px_start(NULL, RESP_ROUTES, fake_origin_port(o), fake_origin_port(down));
    for (size_t i = 0; i < ARRAY_SIZE(response_rows); i++) {
        print_message("%s\n", response_rows[i].why);
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-r\r\n\r\n",
                 response_rows[i].path);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        /* the origin's own head (no rules) is compared up to Portico's fields */
        if (i == 2 ? !px_starts(r.head.text, "HTTP/1.1 200 OK\r\nX-Powered-By: php\r\n"
                                             "Cache-Control: no-store\r\nx_powered_by: php2\r\n")
                   : strcmp(r.head.text, response_rows[i].head) != 0)
            fail_msg("%s: got\n%s", response_rows[i].why, r.head.text);
        assert_string_equal(r.body, response_rows[i].body);
        if (r.framing == RAW_CHUNKED) { /* a removed name goes from the trailers too */
            assert_true(tu_contains(r.trailers, "X-Sum: 11"));
            assert_false(tu_contains(r.trailers, "X-Powered-By"));
        }
        raw_response_free(&r);
        raw_close(c);
    }
    /* Portico's own answer (a 502: the origin refuses) carries no response rule */
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /down/x HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 502);
    assert_false(tu_contains(r.head.text, "max-age=60"));
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(down);
    fake_origin_stop(o);
}

/* Learned early hints are the Link fields the client got: a Link the route's rules remove is
 * not sent back as a 103 to the next client (it was learned from the origin's own head). */
static const struct fo_step resp_link[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            "Link: </internal.css>; rel=preload; as=style\r\n\r\nok"),
    FO_END(),
};

static const struct fo_step *pick_link(const struct fo_request_info *req, void *arg)
{
    (void)req;
    (void)arg;
    return resp_link;
}

static void test_learned_hints_after_rules(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_link};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[route plain]\nprefix = /\nupstream = u\n"
                                 "early_hints_learn = on\n"
                                 "[route rules]\nprefix = /rules/\nupstream = u\n"
                                 "early_hints_learn = on\nresponse_header_remove = Link\n",
                                 fake_origin_port(o));
    static const struct {
        const char *path;
        size_t hints; /* 103s the second request gets */
    } rows[] = {{"/rules/page", 0}, {"/page", 1}};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        for (int round = 0; round < 2; round++) {
            char req[256];
            snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", rows[i].path);
            struct raw_conn *c = px_connect(h);
            struct raw_response r;
            assert_int_equal(raw_send_str(c, req), 0);
            assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
            assert_int_equal(r.status, 200);
            if (round == 1 && r.ninterim != rows[i].hints)
                fail_msg("%s: %zu 103s, not %zu", rows[i].path, r.ninterim, rows[i].hints);
            if (i == 0 && tu_contains(r.head.text, "internal.css"))
                fail_msg("%s: the removed Link reached the client:\n%s", rows[i].path,
                         r.head.text);
            raw_response_free(&r);
            raw_close(c);
        }
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* A relayed 1xx and a 101 lose the fields a response rule names, as trailers do: the origin's
 * X-Powered-By was sent in its 103 and its 101 whatever response_header_remove said. */
static const struct fo_step resp_interim[] = {
    FO_SEND("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
            "X-Powered-By: php\r\nX-Set: origin\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Powered-By: php\r\n\r\nok"),
    FO_END(),
};
static const struct fo_step resp_switch[] = {
    FO_SEND("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Powered-By: php\r\n\r\n"),
    FO_HOLD(),
};

static const struct fo_step *pick_interim(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strstr(req->head, "Upgrade: websocket") ? resp_switch : resp_interim;
}

static void test_interim_after_rules(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_interim};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[route plain]\nprefix = /\nupstream = u\n"
                                 "[route rules]\nprefix = /rules/\nupstream = u\n"
                                 "response_header_remove = X-Powered-By\n"
                                 "response_header = X-Set: rule\n",
                                 fake_origin_port(o));
    static const struct {
        const char *path;
        unsigned powered; /* X-Powered-By fields in the 103 and the 101 */
    } rows[] = {{"/rules/i", 0}, {"/plain-i", 1}};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        print_message("103 and 101 of %s\n", rows[i].path);
        char req[512];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", rows[i].path);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.ninterim, 1);
        assert_int_equal(r.interim[0].status, 103);
        assert_non_null(raw_head_field(&r.interim[0], "Link"));
        assert_int_equal(raw_head_field_count(&r.interim[0], "X-Powered-By"), rows[i].powered);
        assert_int_equal(raw_head_field_count(&r.interim[0], "X-Set"), rows[i].powered);
        raw_response_free(&r);
        raw_close(c);
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                 rows[i].path);
        c = px_connect(h);
        struct raw_head head;
        assert_int_equal(raw_send_str(c, req), 0);
        assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
        assert_int_equal(head.status, 101);
        assert_int_equal(raw_head_field_count(&head, "X-Powered-By"), rows[i].powered);
        assert_int_equal(raw_head_field_count(&head, "X-Set"), 0); /* drop-only, as a 1xx */
        raw_head_free(&head);
        raw_close(c);
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* A prefix and a rewrite_prefix that end differently in '/' load with a warning that shows the
 * joint; alike, none. */
static void test_rewrite_joint_warning(void **state)
{
    (void)state;
    static const struct {
        const char *keys;
        const char *warning; /* NULL: none */
    } rows[] = {
        {"prefix = /api/\nrewrite_prefix = /v1",
         "warning: [route r]: rewrite_prefix = /v1 and prefix = /api/ end differently in '/': "
         "/api/x goes to the origin as /v1x (end both with '/' or neither)"},
        {"prefix = /api\nrewrite_prefix = /", "/apix goes to the origin as /x"},
        {"prefix = /api/\nrewrite_prefix = /", NULL},
        {"prefix = /api\nrewrite_prefix = /v1", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                              "[upstream u]\norigin = sim\n"
                                              "[route r]\n%s\nupstream = u\n",
                                              rows[i].keys),
                         0);
        struct tu_cmd_result res = {0};
        assert_int_equal(harness_check_config(h, &res), 0);
        char line[512]; /* at the line of rewrite_prefix */
        snprintf(line, sizeof(line), "%s:7: warning: [route r]: rewrite_prefix",
                 harness_config_path(h));
        if (rows[i].warning ? !tu_contains(res.err, line) || !tu_contains(res.err, rows[i].warning)
                            : tu_contains(res.err, "rewrite_prefix"))
            fail_msg("%s: stderr:\n%s", rows[i].keys, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
}

/* The response rules over HTTP/2: one cache-control, the origin's x-powered-by gone. */
static void test_response_rules_http2(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_resp};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct fake_origin *down = fake_origin_start_kind(FO_REFUSE);
    assert_non_null(down);
    struct harness *h = px_start("listen = 127.0.0.1:{{port:h2c}} h2c\n", RESP_ROUTES,
                                 fake_origin_port(o), fake_origin_port(down));
    static const char *const paths[] = {"/rules/len", "/rules/chunked"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", harness_port(h, "h2c"), paths[i]);
        const char *const argv[] = {"curl", "-sS", "--max-time", "10", "--http2-prior-knowledge",
                                    "-D", "-", url, NULL};
        struct tu_cmd_result res = {0};
        px_run_ok(argv, &res);
        print_message("h2 %s:\n%s\n", paths[i], res.out);
        assert_true(px_starts(res.out, "HTTP/2 200"));
        assert_int_equal(field_lines(res.out, "cache-control"), 1);
        assert_true(tu_contains(res.out, "\r\ncache-control: public, max-age=60\r\n"));
        assert_true(tu_contains(res.out, "\r\nstrict-transport-security: max-age=63072000\r\n"));
        assert_false(tu_contains(res.out, "php"));
        tu_cmd_result_free(&res);
    }
    px_stop(h);
    fake_origin_stop(down);
    fake_origin_stop(o);
}

/* ---- refused at load ---- */

static const struct {
    const char *line;          /* in [route r], at line 6 */
    const char *message;       /* after "FILE:6: " */
} refusal_rows[] = {
    {"request_header = Content-Length: 5", "request_header: Content-Length is not for rules"},
    {"request_header = Transfer-Encoding: chunked",
     "request_header: Transfer-Encoding is not for rules"},
    {"response_header_remove = Content-Length",
     "response_header_remove: Content-Length is not for rules"},
    {"request_header = Connection: close", "request_header: Connection is not for rules"},
    {"request_header_remove = Keep-Alive", "request_header_remove: Keep-Alive is not for rules"},
    {"request_header = Upgrade: websocket", "request_header: Upgrade is not for rules"},
    {"request_header_remove = Host", "request_header_remove: Host is not for rules"},
    {"request_header = Host: a b", "request_header: Host: 'a b' is not a host[:port]"},
    {"request_header = Host: $host", "request_header: Host: '$host' is not a host[:port]"},
    {"request_header = Portico-Fault: status=503", "request_header: Portico-Fault is not for"},
    {"request_header = X-Portico-Mirror: 1", "request_header: X-Portico-Mirror is not for rules"},
    {"request_header = Client-Cert: :AA==:", "request_header: Client-Cert is not for rules"},
    {"request_header = Client_Cert_Verify: SUCCESS",
     "request_header: Client_Cert_Verify is not for rules"},
    {"request_header = X-Forwarded-For: 127.1.2.3", "request_header: X-Forwarded-For is not for"},
    {"request_header = X-Forwarded-Proto: https", "request_header: X-Forwarded-Proto is not for"},
    {"request_header = Forwarded: for=127.1.2.3", "request_header: Forwarded is not for rules"},
    {"response_header = Via: 1.1 cdn", "response_header: Via is not for rules"},
    {"response_header = Date: x", "response_header: Date is not for rules"},
    {"request_header = X-A: a\001b", "request_header: control byte \\x01 in the value"},
    {"request_header = X-A: a\177", "request_header: control byte \\x7f in the value"},
    {"response_header = X-A: a\tb\033", "response_header: control byte \\x1b in the value"},
    {"request_header = X-A: $nope", "request_header: unknown variable at '$nope'"},
    {"request_header = X-A: ${host", "request_header: unknown variable at '${host'"},
    {"request_header = X A: b", "request_header: 'X A' is not a field name"},
    {"request_header = X-A b", "request_header: expected 'Name: value'"},
    {"request_header_remove = X-A b", "request_header_remove: 'X-A b' is not a field name"},
    {"request_header = : b", "request_header: empty field name"},
    {"request_header = (X): b", "request_header: '(X)' is not a field name"},
    {"rewrite_prefix = new/", "rewrite_prefix: 'new/' must start with '/'"},
    {"rewrite_prefix = /x/../", "rewrite_prefix: '/x/../' holds a dot segment"},
    {"rewrite_prefix = /x?y", "rewrite_prefix: '/x?y' holds a blank, a control"},
};

static void test_rule_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(refusal_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                              "[upstream u]\norigin = sim\n"
                                              "[route r]\n%s\nupstream = u\n",
                                              refusal_rows[i].line),
                         0);
        struct tu_cmd_result res = {0};
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[1200];
        snprintf(want, sizeof(want), "%s:6: %s", harness_config_path(h), refusal_rows[i].message);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", refusal_rows[i].line, want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
    /* one rule a name and direction, '_' for '-' included */
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                             "[upstream u]\norigin = sim\n[route r]\n"
                                             "request_header = X-User: a\n"
                                             "request_header_remove = x_user\nupstream = u\n"),
                     0);
    struct tu_cmd_result res = {0};
    assert_int_equal(harness_check_config(h, &res), 1);
    char want[1200];
    snprintf(want, sizeof(want), "%s:7: request_header_remove: x_user already has a rule at "
             "line 6", harness_config_path(h));
    if (!tu_contains(res.err, want))
        fail_msg("no \"%s\" in:\n%s", want, res.err);
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* ---- a reload changes the rules ---- */

static void write_reload_config(struct harness *h, uint16_t port, const char *rules)
{
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n"
                                          "[route r]\nprefix = /\nupstream = u\n%s",
                                          port, rules),
                     0);
}

/* What the origin got for one request: its head. */
static char *origin_head_of(struct harness *h, struct fake_origin *o, const char *target)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nX-V: client\r\n\r\n", target);
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    unsigned n = fake_origin_requests(o);
    assert_true(n > 0);
    return fake_origin_request_head(o, n - 1);
}

static void test_reload_changes_rules(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = harness_new();
    assert_non_null(h);
    write_reload_config(h, fake_origin_port(o),
                        "request_header = X-V: one\nrewrite_prefix = /one/\n");
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    char *head = origin_head_of(h, o, "/x?q");
    assert_true(px_starts(head, "GET /one/x?q HTTP/1.1\r\n"));
    assert_true(tu_contains(head, "\r\nX-V: one\r\n"));
    assert_int_equal(field_lines(head, "X-V"), 1);
    free(head);

    write_reload_config(h, fake_origin_port(o), "request_header_remove = X-V\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "the previous workers have finished", PX_IO_MS), 0);
    head = origin_head_of(h, o, "/x?q");
    assert_true(px_starts(head, "GET /x?q HTTP/1.1\r\n"));
    assert_int_equal(field_lines(head, "X-V"), 0);
    free(head);
    px_stop(h);
    fake_origin_stop(o);
}

/* $scheme is the client's: https over a TLS listener (the rows above come over plain HTTP). */
static void test_request_rules_over_tls(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start("listen = 127.0.0.1:{{port:tls}} tls\n"
                                 "tls_cert = {{certs}}/server.pem\n"
                                 "tls_key = {{certs}}/server.key\n",
                                 RULES_ROUTES, fake_origin_port(o));
    struct raw_tls_opts tls = {.host = "localhost"};
    struct raw_conn *c = raw_connect_tls(harness_port(h, "tls"), &tls, PX_IO_MS);
    assert_non_null(c);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /rules/s HTTP/1.1\r\nHost: t\r\n"
                                     "X-Request-Id: rid-2\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(fake_origin_wait_requests(o, 1, PX_IO_MS), 0);
    char *head = fake_origin_request_head(o, 0);
    assert_non_null(head);
    static const char *const want[] = {"\r\nX-Info: https://t/rid-2 $5\r\n", NULL};
    static const char *const absent[] = {"http://", NULL};
    check_head("over TLS", head, want, absent, "X-Info");
    free(head);
    px_stop(h);
    fake_origin_stop(o);
}

/* A trailer of a name longer than the filter holds (32 bytes) that a rule names goes too: judged
 * by its first 32 bytes against the rules' names. */
static void test_long_trailer_name_ruled(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start(NULL,
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "[route r]\nprefix = /\nupstream = u\n"
                                 "request_header_remove = X-Checksum-Of-The-Whole-Body-Sha256\n",
                                 fake_origin_port(o));
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "POST /t HTTP/1.1\r\nHost: t\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
                                     "X-Checksum-Of-The-Whole-Body-Sha256: evil\r\n"
                                     "X-Other: ok\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(fake_origin_wait_requests(o, 1, PX_IO_MS), 0);
    size_t len = 0;
    char *all = fake_origin_request(o, 0, &len);
    assert_non_null(all);
    const char *trailers = strstr(all, "\r\n0\r\n");
    if (!trailers || !tu_contains(trailers, "X-Other: ok") || tu_contains(trailers, "evil"))
        fail_msg("the origin got:\n%s", all);
    free(all);
    px_stop(h);
    fake_origin_stop(o);
}

/* $client_addr is the client Portico decided on: behind a trusted proxy, the address real_ip
 * took from it (nginx's realip module makes $remote_addr so), not the proxy's; X-Forwarded-For's
 * last element stays the connection's. On the old code X-Real-IP was 127.0.0.1, the proxy. */
static void test_client_addr_behind_trusted_proxy(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start("trusted_proxies = 127.0.0.1\nreal_ip = x-forwarded-for\n",
                                 RULES_ROUTES, fake_origin_port(o));
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /rules/r HTTP/1.1\r\nHost: t\r\n"
                                     "X-Forwarded-For: 127.9.9.9\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(fake_origin_wait_requests(o, 1, PX_IO_MS), 0);
    char *head = fake_origin_request_head(o, 0);
    assert_non_null(head);
    static const char *const want[] = {"\r\nX-Real-IP: 127.9.9.9\r\n",
                                       "\r\nX-Forwarded-For: 127.9.9.9, 127.0.0.1\r\n", NULL};
    static const char *const absent[] = {"X-Real-IP: 127.0.0.1", NULL};
    check_head("behind a trusted proxy", head, want, absent, "X-Real-IP");
    free(head);
    px_stop(h);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_rules),
        cmocka_unit_test(test_request_trailer_rules),
        cmocka_unit_test(test_request_rules_http2),
        cmocka_unit_test(test_rewrite_prefix),
        cmocka_unit_test_teardown(test_rewrite_out_of_memory, oom_teardown),
        cmocka_unit_test(test_response_rules),
        cmocka_unit_test(test_response_rules_http2),
        cmocka_unit_test(test_learned_hints_after_rules),
        cmocka_unit_test(test_interim_after_rules),
        cmocka_unit_test(test_rule_refusals),
        cmocka_unit_test(test_rewrite_joint_warning),
        cmocka_unit_test(test_reload_changes_rules),
        cmocka_unit_test(test_request_rules_over_tls),
        cmocka_unit_test(test_long_trailer_name_ruled),
        cmocka_unit_test(test_client_addr_behind_trusted_proxy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
