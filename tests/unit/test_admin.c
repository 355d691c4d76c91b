/*
 * test_admin.c — admin_respond without sockets: each endpoint's response parsed back (status,
 * framing, HEAD, Allow on 405, Connection: close), and the regression of issue 7: when memory
 * runs out the client still gets an answer (a 503 and a close) or the caller is told to close;
 * never a status returned with nothing written, which left the client waiting forever; and
 * which Host values the admin listener answers (DNS rebinding).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "alloc_fail.h"
#include "portico/admin.h"
#include "portico/admin_status.h"
#include "portico/config.h"
#include "portico/failure.h"
#include "portico/generation.h"
#include "portico/http1.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ALLOCS 256 /* an admin answer makes fewer allocations than this */

/* The configuration the admin endpoint reports on (its origins' health in /metrics). */
static struct generation *gen;

static int gen_setup(void **state)
{
    (void)state;
    struct config *cfg = cfg_load_string("[upstream u]\norigin = 127.0.0.1:1\n", "admin.ini",
                                         NULL, stderr, NULL);
    gen = cfg ? generation_new(cfg, 1) : NULL;
    return gen ? 0 : -1;
}

static int gen_teardown(void **state)
{
    (void)state;
    generation_free(gen);
    return 0;
}

static const char fallback[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n";

struct admin_row {
    const char *why;
    const char *request;
    int status;
    const char *allow;     /* the Allow value, NULL: no Allow */
    const char *body;      /* part of the body, NULL: no body (HEAD) */
};

static const struct admin_row rows[] = {
    { "health", "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200, NULL, "ok\n" },
    { "health, HEAD: no body", "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200, NULL, NULL },
    { "metrics", "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 200, NULL,
      "# TYPE portico_requests_total counter" },
    { "unknown path", "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", 404, NULL, "/metrics, /healthz" },
    { "other method: 405 must say what is allowed", "DELETE /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
      405, "GET, HEAD", "only GET and HEAD" },
};

/* Parses what admin_respond wrote: exactly one response, framed by its Content-Length. */
static void check_response(const struct admin_row *row, struct evbuffer *out, bool close)
{
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    struct h1_response resp;
    struct h1_error err;
    struct h1_info info;
    int head;
    bool is_head = strncmp(row->request, "HEAD", 4) == 0;

    assert_non_null(text);
    evbuffer_copyout(out, text, n);
    text[n] = '\0';
    head = h1_parse_response(text, n, 16384, &resp, &err);
    if (head < 0)
        fail_msg("%s: no complete response head in:\n%s", row->why, text);
    assert_int_equal(resp.status, row->status);
    assert_int_equal(h1_response_info(&resp, is_head ? METHOD_HEAD : METHOD_GET, &info, &err), 0);
    assert_int_equal(info.keep_alive, !close);
    int allow = h1_find_field(resp.fields, resp.nfields, "allow", 0);
    if (row->allow) {
        assert_true(allow >= 0);
        assert_int_equal(resp.fields[allow].value_len, strlen(row->allow));
        assert_memory_equal(resp.fields[allow].value, row->allow, strlen(row->allow));
    } else {
        assert_int_equal(allow, -1);
    }
    if (is_head) {
        assert_int_equal((size_t)head, n); /* the head alone ... */
        assert_int_equal(info.framing, H1_BODY_NONE);
        int cl = h1_find_field(resp.fields, resp.nfields, "content-length", 0);
        assert_true(cl >= 0 && resp.fields[cl].value[0] != '0'); /* ... saying how long */
    } else {
        assert_int_equal(info.framing, H1_BODY_LENGTH);
        assert_int_equal(info.content_length, n - (size_t)head);
        if (!strstr(text + head, row->body))
            fail_msg("%s: body lacks \"%s\":\n%s", row->why, row->body, text + head);
    }
    free(text);
}

static void parse_request(const char *text, struct h1_request *req)
{
    static const struct h1_limits lim = { 8192, 16384 };
    struct h1_error err;
    assert_true(h1_parse_request(text, strlen(text), &lim, req, &err) > 0);
}

static void test_endpoints(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        for (int c = 0; c < 2; c++) {
            struct evbuffer *out = evbuffer_new();
            struct h1_request req;
            bool close = c == 1;

            assert_non_null(out);
            print_message("%s%s\n", rows[i].why, close ? ", closing" : "");
            parse_request(rows[i].request, &req);
            assert_int_equal(admin_respond(out, &req, NULL, 0, &close, gen), rows[i].status);
            assert_int_equal(close, c == 1); /* as asked: nothing failed */
            check_response(&rows[i], out, close);
            evbuffer_free(out);
        }
    }
}

/* Fail each allocation of a response in turn. Three outcomes are allowed: the whole response
 * (the failure hit nothing essential), the fallback 503 with *close set, or nothing with -1
 * and *close set. The first allocation is the one the old code failed on (evbuffer_new of the
 * body): it returned 500 with nothing written and the connection kept open. */
static void test_allocation_failures(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        bool done = false;
        unsigned fallbacks = 0;
        for (long n = 0; n < MAX_ALLOCS && !done; n++) {
            struct evbuffer *out = evbuffer_new();
            struct h1_request req;
            bool close = false;
            int status;

            assert_non_null(out);
            parse_request(rows[i].request, &req);
            alloc_fail_at(n);
            status = admin_respond(out, &req, NULL, 0, &close, gen);
            done = alloc_fail_count <= n; /* the nth allocation never came */
            alloc_fail_at(-1);
            if (status == rows[i].status && !close) {
                check_response(&rows[i], out, close);
            } else if (status == 503 && close) {
                char got[sizeof(fallback)] = "";
                assert_int_equal(evbuffer_get_length(out), sizeof(fallback) - 1);
                evbuffer_copyout(out, got, sizeof(got) - 1);
                assert_string_equal(got, fallback);
                fallbacks++;
            } else if (status == -1 && close) {
                assert_int_equal(evbuffer_get_length(out), 0);
            } else {
                fail_msg("%s, allocation %ld failing: status %d, close %d, %zu bytes written",
                         rows[i].why, n, status, close, evbuffer_get_length(out));
            }
            if (done)
                assert_int_equal(status, rows[i].status);
            evbuffer_free(out);
        }
        assert_true(done);
        assert_true(fallbacks > 0); /* the sweep did reach the fallback path */
    }
}

/* The reported bug exactly: evbuffer_new of the body fails (the allocation right after the
 * fallback's room is reserved) on a keep-alive request. */
static void test_body_buffer_fails(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct h1_request req;
    bool close = false;
    char got[sizeof(fallback)] = "";

    (void)state;
    assert_non_null(out);
    parse_request("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", &req);
    alloc_fail_at(1); /* 0: the reserved room, 1: the body buffer */
    assert_int_equal(admin_respond(out, &req, NULL, 0, &close, gen), 503);
    alloc_fail_at(-1);
    assert_true(close);
    evbuffer_copyout(out, got, sizeof(got) - 1);
    assert_string_equal(got, fallback);
    evbuffer_free(out);
}

/* Every allocation failing: not even room for the fallback, so the caller must close. */
static void test_nothing_allocates(void **state)
{
    struct evbuffer *out = evbuffer_new();
    struct h1_request req;
    bool close = false;

    (void)state;
    assert_non_null(out);
    parse_request("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &req);
    alloc_fail_all();
    assert_int_equal(admin_respond(out, &req, NULL, 0, &close, gen), -1);
    alloc_fail_at(-1);
    assert_true(close);
    assert_int_equal(evbuffer_get_length(out), 0);
    evbuffer_free(out);
}

/* /status out of memory: each libevent allocation of the page's writing fails in turn, and the
 * page is whole (the same bytes as with nothing failing) or refused (-1: the caller closes the
 * connection), never a JSON with a hole. The old writer left ~60 additions unchecked: a failed
 * one dropped its piece and the page was said complete. */
static char *status_text(long fail_at, int *rc)
{
    struct admin_page *p = admin_page_status(gen, 1764720000000);
    struct evbuffer *out = evbuffer_new();
    assert_non_null(p);
    assert_non_null(out);
    alloc_fail_at(fail_at);
    *rc = admin_page_next(p, out, SIZE_MAX);
    alloc_fail_at(-1);
    admin_page_free(p);
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    assert_non_null(text);
    evbuffer_copyout(out, text, n);
    text[n] = '\0';
    evbuffer_free(out);
    return text;
}

static void test_status_out_of_memory(void **state)
{
    (void)state;
    int rc;
    char *whole = status_text(-1, &rc);
    unsigned refused = 0;
    assert_int_equal(rc, 0);
    for (long n = 0; n < MAX_ALLOCS; n++) {
        char *text = status_text(n, &rc);
        bool reached = alloc_fail_count > n;
        if (rc == 0)
            assert_string_equal(text, whole);
        else
            assert_int_equal(rc, -1);
        refused += rc != 0;
        free(text);
        if (!reached)
            break;
    }
    assert_true(refused > 0); /* the sweep did fail some of them */
    free(whole);
}

/* admin_host_allowed, the guard against DNS rebinding: a Host value (NULL: none) under a
 * configuration with (listed) or without (bare) admin_hosts, or with admin_token (token). */
struct host_row {
    const char *why;
    const char *host;
    bool bare, listed, token;       /* answered under each configuration */
};

static const struct host_row host_rows[] = {
    {"a rebound name", "attacker.example:9901", false, false, true},
    {"IPv4", "127.0.0.1:9901", true, true, true},
    {"IPv4 without port", "127.0.0.1", true, true, true},
    {"another IPv4 address", "127.1.2.3", true, true, true},  /* a name in DNS cannot be one */
    {"IPv6 in brackets", "[::1]:9901", true, true, true},
    {"IPv4-mapped IPv6", "[::ffff:127.0.0.1]", true, true, true},
    {"brackets around a name", "[attacker.example]", false, false, true},
    {"an IPv6 zone", "[fe80::1%25lo]", false, false, true},  /* no browser sends one */
    {"a name that starts like an address", "127.0.0.1.attacker.example", false, false, true},
    {"an address with a fifth part", "127.0.0.1.1", false, false, true},
    {"localhost", "localhost:9901", true, true, true},
    {"localhost, any case, root dot", "LocalHost.", true, true, true},
    {"under localhost", "portico.localhost", true, true, true}, /* RFC 6761 6.3 */
    {"localhost as a label of another name", "localhost.attacker.example", false, false, true},
    {"a name ending in localhost", "evillocalhost", false, false, true},
    {"a listed name", "portico.internal:9901", false, true, true},
    {"a listed name, other case", "Portico.Internal.", false, true, true},
    {"under a listed name", "x.portico.internal", false, false, true},
    {"empty", "", false, false, true},
    {"no Host (HTTP/1.0)", NULL, true, true, true},
};

static struct config *host_config(const char *text)
{
    struct config *cfg = cfg_load_string(text, "admin.ini", NULL, stderr, NULL);
    assert_non_null(cfg);
    return cfg;
}

static void test_host_allowed(void **state)
{
    (void)state;
    struct config *bare = host_config("[upstream u]\norigin = 127.0.0.1:1\n");
    struct config *listed = host_config("[proxy]\nadmin_hosts = portico.internal\n"
                                        "[upstream u]\norigin = 127.0.0.1:1\n");
    struct config *token = host_config("[proxy]\nadmin_token = t0ken\n"
                                       "[upstream u]\norigin = 127.0.0.1:1\n");
    struct config *any = host_config("[proxy]\nadmin_hosts = other.internal *\n"
                                     "[upstream u]\norigin = 127.0.0.1:1\n");
    for (size_t i = 0; i < ARRAY_LEN(host_rows); i++) {
        const struct host_row *row = &host_rows[i];
        size_t len = row->host ? strlen(row->host) : 0;
        const struct {
            const struct config *cfg;
            bool want;
            const char *name;
        } cases[] = {{bare, row->bare, "bare"}, {listed, row->listed, "listed"},
                     {token, row->token, "token"}, {any, true, "*"}};
        for (size_t c = 0; c < ARRAY_LEN(cases); c++)
            if (admin_host_allowed(cases[c].cfg, row->host, len) != cases[c].want)
                fail_msg("%s (%s), %s: %s", row->why, row->host ? row->host : "NULL",
                         cases[c].name, cases[c].want ? "refused" : "answered");
    }
    cfg_free(bare);
    cfg_free(listed);
    cfg_free(token);
    cfg_free(any);
}

/* /status reads the exposition back: a HELP's sentence becomes the family's help without its
 * final stop, and a label value's escapes (\n, \", \\) are undone before JSON escapes them
 * again (a line feed as \u000a). */
static void test_metrics_json(void **state)
{
    (void)state;
    static const char text[] = "# HELP portico_x Things counted.\n"
                               "# TYPE portico_x counter\n"
                               "portico_x{route=\"a\\nb\",path=\"q\\\"x\\\\y\"} 3\n";
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    assert_int_equal(admin_metrics_json(out, text, sizeof(text) - 1), 0);
    evbuffer_add(out, "", 1);
    const char *json = (const char *)evbuffer_pullup(out, -1);
    assert_string_equal(json, "[{\"name\":\"portico_x\",\"type\":\"counter\",\"help\":\"Things "
                              "counted\",\"samples\":[{\"name\":\"portico_x\",\"labels\":{"
                              "\"route\":\"a\\u000ab\",\"path\":\"q\\\"x\\\\y\"},\"value\":3}]}]");
    evbuffer_free(out);
}

/* A minute of /status lists the failure types it saw, not the 17 it did not: with no traffic,
 * every minute's failures are an empty object. */
static void test_status_minutes_no_zeros(void **state)
{
    (void)state;
    struct admin_page *p = admin_page_status(gen, 1764720000000);
    assert_non_null(p);
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    assert_int_equal(admin_page_next(p, out, SIZE_MAX), 0);
    admin_page_free(p);
    evbuffer_add(out, "", 1);
    const char *json = (const char *)evbuffer_pullup(out, -1);
    assert_non_null(strstr(json, "\"requests\":0,"));
    assert_non_null(strstr(json, "\"failures\":{}}"));
    assert_null(strstr(json, "\"connect_refused\":"));
    evbuffer_free(out);
}

/* The status page says what each failure type it lists means: every type of FAILURE_LIST has its
 * line in the page's MEANING table (internal_error had none: a 500 for no free local port showed
 * with an empty explanation), and no_healthy_origin names both kinds of health that mark an
 * origin down, as README's Failures says (it said passive health only). */
static void test_status_page_explains_every_failure(void **state)
{
    (void)state;
    struct evbuffer *body = evbuffer_new();
    assert_non_null(body);
    const char *type = NULL, *fields = NULL;
    assert_int_equal(admin_status_render("/", 1, body, &type, &fields), 1);
    evbuffer_add(body, "", 1);
    const char *page = (const char *)evbuffer_pullup(body, -1);
    const char *table = strstr(page, "var MEANING = {");
    assert_non_null(table);
    const char *end = strstr(table, "};");
    assert_non_null(end);
    for (int t = FAIL_NONE + 1; t < FAILURE_COUNT; t++) {
        char key[64];
        snprintf(key, sizeof(key), "\n  %s: '", failure_name((enum failure_type)t));
        const char *at = strstr(table, key);
        if (at == NULL || at > end)
            fail_msg("the status page does not explain %s", failure_name((enum failure_type)t));
    }
    const char *noh = strstr(table, "no_healthy_origin: '");
    assert_non_null(noh);
    const char *line_end = strstr(noh, "',");
    if (line_end == NULL || line_end > end)
        line_end = end;
    const char *check = strstr(noh, "health_check");
    if (check == NULL || check > line_end)
        fail_msg("no_healthy_origin's meaning leaves out the active check: %.*s",
                 (int)(line_end - noh), noh);
    evbuffer_free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_body_buffer_fails),
        cmocka_unit_test(test_nothing_allocates),
        cmocka_unit_test(test_status_out_of_memory),
        cmocka_unit_test(test_host_allowed),
        cmocka_unit_test(test_metrics_json),
        cmocka_unit_test(test_status_minutes_no_zeros),
        cmocka_unit_test(test_status_page_explains_every_failure),
    };

    alloc_fail_install(); /* before libevent allocates anything */
    return cmocka_run_group_tests(tests, gen_setup, gen_teardown);
}
