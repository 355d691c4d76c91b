/*
 * test_rewrite.c — rewrite_target() (a route's rewrite_prefix: the raw span its prefix matched
 * replaced, the rest and the query kept, a dot segment at the joint refused) and the header
 * rules' parser and name matching (header_rules.h), and the Location of a return route
 * (route_return_location), row by row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/header_rules.h"
#include "portico/request.h"
#include "portico/rewrite.h"
#include "portico/route_prefix.h"
#include "portico/route_return.h"
#include "portico/status.h"

#define ROWS(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *target;  /* origin-form, query included */
    const char *prefix;
    const char *repl;
    const char *want;    /* NULL: refused (400) */
} rewrite_rows[] = {
    {"/api/x?q=1", "/api/", "/", "/x?q=1"},
    {"/api/", "/api/", "/", "/"},
    {"/api/x", "/api/", "/v2/", "/v2/x"},
    {"//api//x?q", "/api/", "/", "/x?q"},           /* the whole run of slashes is the prefix's */
    {"/%61pi/x", "/api/", "/", "/x"},               /* an escaped unreserved character */
    {"/api%2Fx", "/api/", "/", "/x"},               /* an escaped slash */
    {"/api%5c%5Cx", "/api/", "/n/", "/n/x"},        /* escaped backslashes, a run */
    {"/api\\x", "/api/", "/", "/x"},                /* a backslash */
    {"/api/x?/api/", "/api/", "/", "/x?/api/"},     /* the query goes on as it came */
    {"/apix", "/api", "/v1", "/v1x"},               /* no slash at the end of either: nginx's */
    {"/ab./x", "/ab", "/b/", NULL},                 /* "/b/./x" */
    {"/ab../x", "/ab", "/b/", NULL},                /* "/b/../x" */
    {"/ab%2e/x", "/ab", "/b/", NULL},               /* "/b/%2e/x" */
    {"/ab.;p/x", "/ab", "/b/", NULL},               /* "/b/.;p/x": Tomcat's parameter */
    {"/ab.c", "/ab", "/b/", "/b/.c"},               /* a dot inside a segment is not one */
    {"/ab.?x=..", "/ab", "/b/", NULL},              /* "/b/.": the query ends the segment */
    /* a replacement ending in '/' takes the separators after the cut: never "//host/..." */
    {"/api//evil.example/x", "/api", "/", "/evil.example/x"},
    {"/api\\evil.example/x", "/api", "/", "/evil.example/x"},
    {"/api/%2F/evil.example", "/api", "/b/", "/b/evil.example"},
    {"/api//x", "/api", "/b", "/b//x"},             /* not at the start: left as it came */
    {"/api/?q", "/api", "/", "/?q"},                /* separators eaten, the query kept */
    {"/api/x?a=/../b", "/api/", "/", "/x?a=/../b"}, /* dots in the query are not the path's */
};

static void test_rewrite_target(void **state)
{
    (void)state;
    for (size_t i = 0; i < ROWS(rewrite_rows); i++) {
        const char *t = rewrite_rows[i].target;
        const char *q = strchr(t, '?');
        size_t route_len = q ? (size_t)(q - t) : strlen(t);
        char *out = NULL;
        size_t out_len = 0;
        const char *why = NULL;
        int rc = rewrite_target(t, strlen(t), t, route_len, rewrite_rows[i].prefix,
                                rewrite_rows[i].repl, strlen(rewrite_rows[i].repl), &out,
                                &out_len, &why);
        if (!rewrite_rows[i].want) {
            if (rc != HTTP_BAD_REQUEST || out || !why)
                fail_msg("%s: not refused (%d, %s)", t, rc, out ? out : "");
            continue;
        }
        if (rc != 0 || !out || strcmp(out, rewrite_rows[i].want) != 0 ||
            out_len != strlen(rewrite_rows[i].want))
            fail_msg("%s: '%s', not '%s'", t, out ? out : "(none)", rewrite_rows[i].want);
        free(out);
    }
}

/* "http://h?q" routes as "/" and forwards "?q"; "OPTIONS *" goes as it came. */
static void test_rewrite_synthetic_paths(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    const char *why = NULL;
    assert_int_equal(rewrite_target("?q", 2, "/", 1, "/", "/new/", 5, &out, &len, &why), 0);
    assert_string_equal(out, "/new/?q");
    free(out);
    assert_int_equal(rewrite_target("*", 1, "/", 1, "/", "/new/", 5, &out, &len, &why), 0);
    assert_null(out);
}

static const struct {
    enum hrule_dir dir;
    enum hrule_op op;
    const char *text;
    const char *why;     /* start of the refusal; NULL: taken */
} parse_rows[] = {
    {HRULE_REQUEST, HRULE_SET, "X-User: a", NULL},
    {HRULE_REQUEST, HRULE_SET, "X-Empty:", NULL},                  /* an empty value is one */
    {HRULE_REQUEST, HRULE_SET, "X-V: $client_addr ${host}x $$ $scheme$request_id", NULL},
    {HRULE_REQUEST, HRULE_SET, "Host: app.internal:8080", NULL},
    {HRULE_REQUEST, HRULE_SET, "X-Real-IP: $client_addr", NULL},   /* Portico removes, a rule sets */
    {HRULE_REQUEST, HRULE_SET, "X-Forwarded-Prefix: /api", NULL},
    {HRULE_RESPONSE, HRULE_SET, "X-Cost: $5", NULL},               /* literal in a response */
    {HRULE_RESPONSE, HRULE_SET, "Host: x", "Host is not for rules"},
    {HRULE_REQUEST, HRULE_REMOVE, "Host", "Host is not for rules"},
    {HRULE_REQUEST, HRULE_SET, "Content_Length: 1", "Content_Length is not for rules"},
    {HRULE_REQUEST, HRULE_SET, "TE: trailers", "TE is not for rules"},
    {HRULE_REQUEST, HRULE_SET, "x-request-id: a", "x-request-id is not for rules"},
    {HRULE_REQUEST, HRULE_SET, "traceparent: a", "traceparent is not for rules"},
    {HRULE_RESPONSE, HRULE_SET, "traceparent: a", NULL},          /* the request's alone */
    {HRULE_RESPONSE, HRULE_REMOVE, "Server-Timing", "Server-Timing is not for rules"},
    {HRULE_REQUEST, HRULE_SET, "X-V: $request_uri", NULL},
    {HRULE_REQUEST, HRULE_SET, "X-V: $hostx", "unknown variable"},
    {HRULE_REQUEST, HRULE_SET, "X-V: ${client_addr", "unknown variable"},
    {HRULE_REQUEST, HRULE_SET, "X-V: $", "unknown variable"},
    {HRULE_REQUEST, HRULE_SET, "X-V: a\rb", "control byte"},
    {HRULE_REQUEST, HRULE_SET, "X-V: a\nb", "control byte"},
    {HRULE_REQUEST, HRULE_SET, "X-V", "expected 'Name: value'"},
    {HRULE_REQUEST, HRULE_SET, "X\"V: a", "'X\"V' is not a field name"},
    {HRULE_REQUEST, HRULE_SET, "Host: a/b", "Host: 'a/b' is not a host[:port]"},
    {HRULE_REQUEST, HRULE_SET, "Host:", "Host: '' is not a host[:port]"},
    {HRULE_REQUEST, HRULE_SET, "X-V: a\tb", NULL},                 /* HTAB is a value's byte */
    {HRULE_RESPONSE, HRULE_SET, "X-V: a\177", "control byte \\x7f"},
    {HRULE_REQUEST, HRULE_SET, "Host: $host", "Host: '$host' is not a host[:port]"},
    {HRULE_REQUEST, HRULE_SET, "X-V: ${host x", "unknown variable at '${host x'"},
};

static void test_rule_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < ROWS(parse_rows); i++) {
        struct hrule r;
        char why[200] = "";
        int rc = hrule_parse(parse_rows[i].dir, parse_rows[i].op, parse_rows[i].text, &r, why,
                             sizeof(why));
        if (!parse_rows[i].why) {
            if (rc != 0)
                fail_msg("%s: refused: %s", parse_rows[i].text, why);
            free(r.name);
            free(r.value);
            continue;
        }
        if (rc == 0 || strncmp(why, parse_rows[i].why, strlen(parse_rows[i].why)) != 0)
            fail_msg("%s: '%s', not '%s...'", parse_rows[i].text, rc ? why : "taken",
                     parse_rows[i].why);
    }
}

/* hrule_expand, the one expander of request_header and return: each variable, the client's
 * words flagged as such (where a Location percent-encodes them). */
struct expand_out {
    char text[256];
    size_t len;
    unsigned client_pieces; /* pieces put as a variable's (the client's words) */
};

static void expand_put(void *ctx, const char *p, size_t n, bool variable)
{
    struct expand_out *o = ctx;
    assert_true(o->len + n < sizeof(o->text));
    memcpy(o->text + o->len, p, n);
    o->len += n;
    o->text[o->len] = '\0';
    o->client_pieces += variable;
}

static void test_rule_expand(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *uri;         /* $request_uri, NULL: none */
        const char *host;        /* $host, NULL: none */
        const char *want;
        unsigned client_pieces;
    } rows[] = {
        {"https://$host$request_uri", "/a?b", "app.test", "https://app.test/a?b", 2},
        /* $host is nginx's: no port, lowercase; $http_host as the client wrote it */
        {"${scheme}://${host}${request_uri}", "/x", "h:8080", "http://h/x", 2},
        {"${scheme}://${http_host}${request_uri}", "/x", "h:8080", "http://h:8080/x", 2},
        {"$host|$http_host", "/", "App.Test:8080", "app.test|App.Test:8080", 2},
        {"$host|$http_host", "/", "[::1]:8443", "[::1]|[::1]:8443", 2},
        {"$host|$http_host", "/", "[::1]", "[::1]|[::1]", 2},
        {"$host|$http_host", "/", "h:", "h|h:", 2},
        {"$host|$http_host", "/", "App.Test.:80", "app.test|App.Test.:80", 2},
        {"$host|$http_host", "/", "127.0.0.1", "127.0.0.1|127.0.0.1", 2},
        {"<$host><$http_host>", "/", NULL, "<><>", 0},
        {"$request_uri", "?q", "h", "/?q", 1},      /* absolute-form "http://h?q" is "/?q" */
        {"$request_uri", "*", "h", "*", 1},         /* OPTIONS * */
        {"<$host>", "/", NULL, "<>", 0},            /* HTTP/1.0 without Host: empty */
        {"$$request_uri $client_addr $request_id", "/", "h", "$request_uri 127.0.0.1 rid", 2},
    };
    for (size_t i = 0; i < ROWS(rows); i++) {
        struct hrule_values vals = {
            .client_addr = "127.0.0.1",
            .request_id = "rid",
            .host = rows[i].host,
            .host_len = rows[i].host ? strlen(rows[i].host) : 0,
            .request_uri = rows[i].uri,
            .request_uri_len = rows[i].uri ? strlen(rows[i].uri) : 0,
        };
        bool vars;
        char why[200];
        assert_int_equal(hrule_check_value(rows[i].value, strlen(rows[i].value), true, &vars, why,
                                           sizeof(why)),
                         0);
        assert_true(vars);
        struct expand_out o = {.len = 0};
        hrule_expand(rows[i].value, strlen(rows[i].value), &vals, expand_put, &o);
        if (strcmp(o.text, rows[i].want) != 0 || o.client_pieces != rows[i].client_pieces)
            fail_msg("%s: '%s' (%u of the client's), not '%s' (%u)", rows[i].value, o.text,
                     o.client_pieces, rows[i].want, rows[i].client_pieces);
    }
}

/* A return route's Location: the client's words percent-encoded where they are no URL byte; a
 * leading run of '/' or '\' one '/' (no host of the client's choosing), counted within the
 * expansion: one of slashes alone, of every length up to 4 KiB, once filled its evbuffer chain
 * to the last byte and strspn read past it (ASan; uninitialised bytes under valgrind). */
static void test_return_location(void **state)
{
    (void)state;
    static const struct {
        const char *url;         /* return = 301 URL */
        const char *uri;         /* $request_uri */
        const char *host;        /* $host */
        const char *want;
    } rows[] = {
        {"/$request_uri", "//evil.example/x", "h", "/evil.example/x"},
        {"/$request_uri", "/\\evil.example/x", "h", "/evil.example/x"},
        {"/$request_uri", "?q", "h", "/?q"},                /* "/" "/" "?q": one slash */
        {"/$request_uri", "/", "h", "/"},
        {"https://$host$request_uri", "/a b\x7f\x80", "h\r\n", "https://h%0D%0A/a%20b%7F%80"},
        {"/x/$host", "/", "\x01/", "/x/%01/"},
        {"$scheme://$host/", "/", "h", "http://h/"},
    };
    for (size_t i = 0; i < ROWS(rows); i++) {
        char url[64];
        snprintf(url, sizeof(url), "%s", rows[i].url);
        struct route_return a = {.status = 301, .text = url, .text_len = strlen(url),
                                 .vars = true};
        struct hrule_values vals = {
            .client_addr = "127.0.0.1", .request_id = "rid",
            .host = rows[i].host, .host_len = strlen(rows[i].host),
            .request_uri = rows[i].uri, .request_uri_len = strlen(rows[i].uri),
        };
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        assert_int_equal(route_return_location(&a, &vals, out), 0);
        size_t len = evbuffer_get_length(out);
        const char *p = (const char *)evbuffer_pullup(out, -1);
        if (len != strlen(rows[i].want) || memcmp(p, rows[i].want, len) != 0)
            fail_msg("%s of %s: '%.*s', not '%s'", rows[i].url, rows[i].uri, (int)len, p,
                     rows[i].want);
        evbuffer_free(out);
    }
    /* an absolute URL whose $host came out empty (a request without a Host) has no
     * authority: "https:////evil.example/x" is a URL of host evil.example to a browser */
    static const char *const no_host[] = {"https://$host$request_uri", "$scheme://$host/",
                                          "http://$host"};
    for (size_t i = 0; i < ROWS(no_host); i++) {
        char url[64];
        snprintf(url, sizeof(url), "%s", no_host[i]);
        struct route_return a = {.status = 308, .text = url, .text_len = strlen(url),
                                 .vars = true};
        struct hrule_values vals = {.client_addr = "127.0.0.1", .request_id = "rid",
                                    .request_uri = "//evil.example/x", .request_uri_len = 16};
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        if (route_return_location(&a, &vals, out) != -2)
            fail_msg("%s without a host: not -2", no_host[i]);
        evbuffer_free(out);
    }
    /* nor one whose Host is a port alone (":80": RFC 3986 lets the reg-name be empty), which
     * made "https://:80/x" (on the old code: sent) */
    for (size_t i = 0; i < ROWS(no_host); i++) {
        char url[64];
        snprintf(url, sizeof(url), "%s", no_host[i]);
        struct route_return a = {.status = 308, .text = url, .text_len = strlen(url),
                                 .vars = true};
        struct hrule_values vals = {.client_addr = "127.0.0.1", .request_id = "rid",
                                    .host = ":80", .host_len = 3,
                                    .request_uri = "/x", .request_uri_len = 2};
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        if (route_return_location(&a, &vals, out) != -2)
            fail_msg("%s of Host :80: not -2", no_host[i]);
        evbuffer_free(out);
    }
    static char slashes[4096];
    memset(slashes, '/', sizeof(slashes));
    char url[] = "/$request_uri";
    for (size_t n = 1; n <= sizeof(slashes); n++) {
        struct route_return a = {.status = 308, .text = url, .text_len = strlen(url),
                                 .vars = true};
        struct hrule_values vals = {.client_addr = "127.0.0.1", .request_id = "rid",
                                    .request_uri = slashes, .request_uri_len = n};
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        assert_int_equal(route_return_location(&a, &vals, out), 0);
        assert_int_equal(evbuffer_get_length(out), 1);
        evbuffer_free(out);
    }
}

/* hrule_check_value judges n bytes, which need not end with a NUL (fuzz_return's input): an
 * unknown variable at the very end is shown from those bytes alone (on main, "%.24s" read on past
 * them: a heap-buffer-overflow under ASan, fuzz_return's first crash). */
static void test_rule_check_unterminated(void **state)
{
    (void)state;
    static const char *const rows[] = {"/to/$hostquest", "$x", "/a$"};
    for (size_t i = 0; i < ROWS(rows); i++) {
        size_t n = strlen(rows[i]);
        char *v = malloc(n); /* exact size, no NUL */
        assert_non_null(v);
        memcpy(v, rows[i], n);
        bool vars;
        char why[200];
        assert_int_equal(hrule_check_value(v, n, true, &vars, why, sizeof(why)), -1);
        const char *at = strchr(rows[i], '$');
        char want[64];
        snprintf(want, sizeof(want), "unknown variable at '%s' (", at);
        if (strncmp(why, want, strlen(want)) != 0)
            fail_msg("%s: '%s'", rows[i], why);
        free(v);
    }
}

/* Names match in any case and with '_' for '-'; one rule a name; Host apart; a prefix of a
 * long trailer name matches the rules it may be. */
static void test_rule_names(void **state)
{
    (void)state;
    struct hrules *rules = NULL;
    static const char *const texts[] = {"X-User: a", "Host: h", "Cross-Origin-Embedder-Policy"
                                                                "-Report-Only: x"};
    char why[200];
    for (size_t i = 0; i < ROWS(texts); i++) {
        struct hrule r;
        assert_int_equal(hrule_parse(HRULE_REQUEST, HRULE_SET, texts[i], &r, why, sizeof(why)),
                         0);
        assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), 0);
    }
    struct hrule again;
    assert_int_equal(hrule_parse(HRULE_REQUEST, HRULE_REMOVE, "x_USER", &again, why, sizeof(why)),
                     0);
    assert_int_equal(hrules_add(&rules, &again, why, sizeof(why)), -1);
    assert_string_equal(why, "x_USER already has a rule at line 0 (one rule a name)");
    assert_int_equal(rules->n, 2);
    assert_string_equal(rules->host, "h");
    assert_true(hrules_names(rules, "x-user", 6));
    assert_true(hrules_names(rules, "X_USER", 6));
    assert_false(hrules_names(rules, "X-Users", 7));
    assert_false(hrules_names(rules, "Host", 4)); /* sent in Host's place, not as a field */
    assert_true(hrules_names_start(rules, "cross-origin-embedder-policy-rep", 32, false));
    assert_false(hrules_names_start(rules, "cross-origin-embedder-policy-rep", 32, true));
    hrules_free(rules);
}

/* Every name Portico owns, and the rules each refuses (README "Header rules"): a name missing
 * from the table, or one refused in the wrong direction, fails here by name. */
enum { REQ_SET = 1, REQ_REMOVE = 2, RESP_SET = 4, RESP_REMOVE = 8, REQ = 3, RESP = 12, BOTH = 15 };
static const struct {
    const char *name;
    unsigned refused;  /* bits: which of the four rules refuse it */
} owned_rows[] = {
    {"Content-Length", BOTH}, {"Transfer-Encoding", BOTH}, {"Connection", BOTH},
    {"Keep-Alive", BOTH},     {"Proxy-Connection", BOTH},  {"TE", BOTH},
    {"Trailer", BOTH},        {"Upgrade", BOTH},           {"Portico-Fault", BOTH},
    {"Client-Cert", BOTH},    {"Client-Cert-Chain", BOTH}, {"Client-Cert-Verify", BOTH},
    {"Via", BOTH},            {"X-Request-Id", BOTH},      {"Forwarded", BOTH},
    {"X-Forwarded-For", BOTH}, {"X-Forwarded-Proto", BOTH}, {"X-Forwarded-Host", BOTH},
    {"Host", REQ_REMOVE | RESP}, {"Expect", REQ},          {"Max-Forwards", REQ},
    {"Traceparent", REQ},     {"Tracestate", REQ},         {"Date", RESP},
    {"Proxy-Status", RESP},   {"Server-Timing", RESP},
    {"X-Via", 0},             {"TEs", 0},                  {"Date-X", 0},
};

static void test_rule_owned_names(void **state)
{
    (void)state;
    static const struct {
        enum hrule_dir dir;
        enum hrule_op op;
        unsigned bit;
    } kinds[] = {
        {HRULE_REQUEST, HRULE_SET, REQ_SET},   {HRULE_REQUEST, HRULE_REMOVE, REQ_REMOVE},
        {HRULE_RESPONSE, HRULE_SET, RESP_SET}, {HRULE_RESPONSE, HRULE_REMOVE, RESP_REMOVE},
    };
    for (size_t i = 0; i < ROWS(owned_rows); i++) {
        for (int spelling = 0; spelling < 3; spelling++) {
            char name[64], text[128], why[200], want[128];
            size_t k = 0;
            for (const char *c = owned_rows[i].name; *c; c++) /* as is, lower, '_' upper */
                name[k++] = spelling == 0   ? *c
                            : spelling == 1 ? (char)(*c | 0x20)
                            : *c == '-'     ? '_'
                                            : (char)(*c & ~0x20);
            name[k] = '\0';
            for (size_t m = 0; m < ROWS(kinds); m++) {
                if (kinds[m].op == HRULE_SET)
                    snprintf(text, sizeof(text), "%s: a.example", name);
                else
                    snprintf(text, sizeof(text), "%s", name);
                struct hrule r;
                int rc = hrule_parse(kinds[m].dir, kinds[m].op, text, &r, why, sizeof(why));
                bool refused = owned_rows[i].refused & kinds[m].bit;
                snprintf(want, sizeof(want), "%s is not for rules: ", name);
                if (refused && (rc == 0 || strncmp(why, want, strlen(want)) != 0))
                    fail_msg("%s (kind %zu): '%s', not '%s...'", text, m, rc ? why : "taken",
                             want);
                if (!refused && rc != 0)
                    fail_msg("%s (kind %zu): refused: %s", text, m, why);
                if (rc == 0) {
                    free(r.name);
                    free(r.value);
                }
            }
        }
    }
}

/* A rule's own name matched with '_' for '-'; its value trimmed of OWS; one Host rule; at most
 * HRULE_MAX rules; a trailer name held at TRAILER_NAME_HOLD bytes matching a rule of as many. */
static void test_rule_names_more(void **state)
{
    (void)state;
    struct hrules *rules = NULL;
    char why[200], text[64];
    struct hrule r;
    assert_int_equal(hrule_parse(HRULE_REQUEST, HRULE_SET, "X_Trace:  a b \t ", &r, why,
                                 sizeof(why)), 0);
    assert_int_equal(r.value_len, 3);
    assert_string_equal(r.value, "a b");
    assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), 0);
    assert_true(hrules_names(rules, "x-trace", 7));
    assert_true(hrules_names_start(rules, "X-TRACE", 7, true));
    assert_int_equal(hrule_parse(HRULE_REQUEST, HRULE_SET, "Host: a", &r, why, sizeof(why)), 0);
    assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), 0);
    assert_int_equal(hrule_parse(HRULE_REQUEST, HRULE_SET, "host: b", &r, why, sizeof(why)), 0);
    assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), -1);
    assert_string_equal(why, "Host already has a rule at line 0");
    assert_string_equal(rules->host, "a");
    /* 32 bytes, the trailer filter's hold: a name of exactly that length, its ':' unseen */
    static const char name32[] = "X-Thirty-Two-Bytes-Of-Field-Nam";
    _Static_assert(sizeof(name32) - 1 == 31, "31 + 'e'");
    snprintf(text, sizeof(text), "%se: v", name32);
    assert_int_equal(hrule_parse(HRULE_REQUEST, HRULE_SET, text, &r, why, sizeof(why)), 0);
    assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), 0);
    assert_true(hrules_names_start(rules, "x-thirty-two-bytes-of-field-name", 32, false));
    while (rules->n < HRULE_MAX) {
        snprintf(text, sizeof(text), "X-R%d", rules->n);
        assert_int_equal(hrule_parse(HRULE_RESPONSE, HRULE_REMOVE, text, &r, why, sizeof(why)),
                         0);
        assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), 0);
    }
    assert_int_equal(hrule_parse(HRULE_RESPONSE, HRULE_REMOVE, "X-One-Too-Many", &r, why,
                                 sizeof(why)), 0);
    assert_int_equal(hrules_add(&rules, &r, why, sizeof(why)), -1);
    assert_string_equal(why, "at most 32 rules a route and direction");
    hrules_free(rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_target),
        cmocka_unit_test(test_rewrite_synthetic_paths),
        cmocka_unit_test(test_rule_parse),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_rule_owned_names),
        cmocka_unit_test(test_rule_names_more),
        cmocka_unit_test(test_rule_expand),
        cmocka_unit_test(test_return_location),
        cmocka_unit_test(test_rule_check_unterminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
