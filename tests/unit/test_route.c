/*
 * test_route.c — route_match(): longest prefix first, then exact host > wildcard > any host;
 * hosts compared without port, case or root dot; paths as an origin that normalises reads them;
 * the implicit route of a one-upstream config; a route's scheme; its method, header and cookie
 * conditions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/config.h"
#include "portico/route.h"
#include "portico/route_cond.h"
#include "portico/route_prefix.h"

#include "config_helpers.h"

static const char route_ini[] = UP
    "[route any_root]\nupstream = app\n"
    "[route any_api]\nupstream = app\nprefix = /api/\n"
    "[route v1]\nupstream = app\nprefix = /api/v1/\n"
    "[route wild_api]\nupstream = app\nhost = *.example.com\nprefix = /api/\n"
    "[route wild_b_api]\nupstream = app\nhost = *.b.example.com\nprefix = /api/\n"
    "[route exact_api]\nupstream = app\nhost = api.example.com\nprefix = /api/\n"
    "[route exact_root]\nupstream = app\nhost = api.example.com\n"
    "[route wild_root]\nupstream = app\nhost = *.example.com\n"
    "[route org]\nupstream = app\nhost = WWW.Example.ORG.\nprefix = /www/\n"
    "[route esc]\nupstream = app\nprefix = /e%73c//x/\n"
    "[route tilde]\nupstream = app\nprefix = /~user/\n";

static const struct {
    const char *host; /* NULL: no Host */
    const char *path;
    const char *route; /* NULL: no match */
} route_rows[] = {
    {NULL, "/", "any_root"},                          /* no Host: host-less routes only */
    {NULL, "/api/x", "any_api"},                      /* longest host-less prefix */
    {"api.example.com", "/api/x", "exact_api"},       /* exact > wildcard > any, equal prefix */
    {"other.example.com", "/api/x", "wild_api"},      /* wildcard > any at equal prefix */
    {"a.c.example.com", "/api/x", "wild_api"},        /* wildcard covers deeper names */
    {"a.b.example.com", "/api/x", "wild_b_api"},      /* the longer wildcard, though later */
    {"b.example.com", "/api/x", "wild_api"},          /* *.b.example.com is not b.example.com */
    {"example.com", "/api/x", "any_api"},             /* *.example.com is not example.com */
    {"xexample.com", "/api/x", "any_api"},            /* nor a name merely ending the same */
    {".example.com", "/api/x", "any_api"},            /* nor the bare suffix: no label before it */
    {"unknown.test", "/api/x", "any_api"},            /* no host route: host-less */
    {"api.example.com", "/api/v1/x", "v1"},           /* longer prefix beats a better host */
    {"api.example.com", "/", "exact_root"},           /* exact host at "/" */
    {"api.example.com", "/api", "exact_root"},        /* "/api" does not match "/api/" */
    {"w.example.com", "/other", "wild_root"},         /* wildcard at "/" */
    {"API.Example.COM", "/api/", "exact_api"},        /* hosts are case-insensitive */
    {"api.example.com:8080", "/api/", "exact_api"},   /* port stripped */
    {"api.example.com.", "/api/", "exact_api"},       /* trailing root dot ignored */
    {"API.example.com.:443", "/api/", "exact_api"},   /* all three at once */
    {"www.example.org", "/www/a", "org"},             /* pattern was lowercased and undotted */
    {"www.example.org", "/ww", "any_root"},           /* path shorter than the prefix */
    {"[::1]:8080", "/api/x", "any_api"},              /* IPv6 Host: host-less routes */
    {"[::1]", "/", "any_root"},                       /* IPv6 Host without port */
    {"", "/api/x", "any_api"},                        /* empty Host */
    {":8080", "/", "any_root"},                       /* Host that is only a port */
    /* the path as an origin that normalises reads it: another route is not reached by
     * spelling its prefix otherwise */
    {NULL, "//api/x", "any_api"},                     /* a run of slashes is one */
    {NULL, "/api//x", "any_api"},
    {NULL, "/%61pi/x", "any_api"},                    /* %61 is 'a', unreserved */
    {NULL, "/%41pi/x", "any_root"},                   /* %41 is 'A': paths are case-sensitive */
    {NULL, "/%7Euser/x", "tilde"},                    /* %7E is '~', unreserved too */
    {NULL, "/api%2Fx", "any_api"},                    /* encoded slash */
    {NULL, "/api%5cx", "any_api"},                    /* backslash, encoded or not */
    {NULL, "/\\api\\x", "any_api"},
    {NULL, "/api%2x", "any_root"},                    /* a broken escape is itself */
    {NULL, "/api%", "any_root"},
    {NULL, "/%2541pi/", "any_root"},                  /* decoded once, not twice */
    {"api.example.com", "//api//v1//x", "v1"},
    /* where the byte-by-byte start hands over to the normalised reading */
    {"api.example.com", "/api/v1%2fx", "v1"},         /* an encoded slash at the prefix's last */
    {"api.example.com", "/api/%76%31/x", "v1"},       /* escapes right after a slash */
    {"api.example.com", "/api/v1\\\\x", "v1"},        /* a run of backslashes at its end */
    {"api.example.com", "/api/v2/x", "exact_api"},    /* differs at a plain byte */
    /* a prefix written otherwise than it reads is normalised too, for a plain path as well */
    {NULL, "/esc/x/1", "esc"},
    {NULL, "/e%73c//x/", "esc"},
    {NULL, "/esc/y/", "any_root"},
};

/* route_match for a request over plain HTTP: these routes name no scheme, so any would do. */
static const struct route_conf *match_http(const struct config *cfg, const char *host,
                                           size_t host_len, const char *path, size_t path_len)
{
    return route_match(cfg, ROUTE_SCHEME_HTTP, host, host_len, path, path_len, NULL);
}

static void test_route(void **state)
{
    (void)state;
    struct config *cfg = load_ok(route_ini);
    for (size_t i = 0; i < sizeof(route_rows) / sizeof(route_rows[0]); i++) {
        const char *h = route_rows[i].host;
        const struct route_conf *r = match_http(cfg, h, h ? strlen(h) : 0, route_rows[i].path,
                                                 strlen(route_rows[i].path));
        const char *got = r ? r->name : "(none)";
        const char *want = route_rows[i].route ? route_rows[i].route : "(none)";
        if (strcmp(got, want) != 0)
            fail_msg("Host '%s' path '%s': %s, want %s", h ? h : "(null)", route_rows[i].path,
                     got, want);
    }

    /* host_len bounds the host: bytes after it are not part of it */
    const struct route_conf *r = match_http(cfg, "api.example.comXYZ", 15, "/api/", 5);
    assert_string_equal(r->name, "exact_api");
    /* a Host too long for the buffer matches only host-less routes */
    char longhost[400];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost + sizeof(longhost) - 12, ".example.com", 12);
    r = match_http(cfg, longhost, sizeof(longhost), "/api/x", 6);
    assert_string_equal(r->name, "any_api");
    cfg_free(cfg);
}

static void test_route_no_match(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP "[route only]\nupstream = app\nhost = a.test\nprefix = /x\n");
    static const struct {
        const char *host;
        const char *path;
    } rows[] = {
        {"b.test", "/x"},   /* other host */
        {"a.test", "/y"},   /* other path */
        {NULL, "/x"},       /* no Host and no host-less route */
        {"a.test", ""},     /* empty path */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_null(match_http(cfg, rows[i].host, rows[i].host ? strlen(rows[i].host) : 0,
                              rows[i].path, strlen(rows[i].path)));
    assert_non_null(match_http(cfg, "a.test", 6, "/x/y", 4));
    cfg_free(cfg);
}

/* "Longest" is the length a prefix reads as: "/%61pi/" reads as "/api/" (5), shorter than
 * "/api/v" (6), which it outran by its 7 bytes; "/api//" reads as "/api/" too. */
static void test_route_read_length(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP "[route escaped]\nupstream = app\nprefix = /%61pi/\n"
                                    "[route longer]\nupstream = app\nprefix = /api/v\n");
    static const struct {
        const char *path;
        const char *route;
    } rows[] = {
        {"/api/v1", "longer"},
        {"/api//x", "escaped"}, /* ("/api//" beside it would read the same: refused) */
        {"/%61pi/%76", "longer"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct route_conf *r = match_http(cfg, NULL, 0, rows[i].path, strlen(rows[i].path));
        if (!r || strcmp(r->name, rows[i].route) != 0)
            fail_msg("path '%s': %s, want %s", rows[i].path, r ? r->name : "(none)",
                     rows[i].route);
    }
    assert_int_equal(route_prefix_read_len("/%61pi/"), 5);
    assert_int_equal(route_prefix_read_len("/a%2Fb"), 4); /* an encoded slash is one */
    assert_int_equal(route_prefix_read_len("/%2x"), 4);   /* a broken escape is itself */
    cfg_free(cfg);
}

/* scheme = http|https: a route takes only its scheme's requests; at equal prefix and host, the
 * one naming the scheme first; a longer prefix, or a more specific host, still first. */
static void test_route_scheme(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP "[route http_root]\nupstream = app\nscheme = http\n"
                                    "[route any_root]\nupstream = app\n"
                                    "[route https_api]\nupstream = app\nscheme = https\n"
                                    "prefix = /api/\n"
                                    "[route http_api]\nupstream = app\nscheme = http\n"
                                    "prefix = /api/\n"
                                    "[route any_v1]\nupstream = app\nprefix = /api/v1/\n"
                                    "[route exact_https]\nupstream = app\nhost = a.test\n"
                                    "scheme = https\n"
                                    "[route exact_any]\nupstream = app\nhost = b.test\n"
                                    "[route wild_https]\nupstream = app\nhost = *.test\n"
                                    "scheme = https\n");
    static const struct {
        enum route_scheme scheme;
        const char *host;
        const char *path;
        const char *route;
    } rows[] = {
        {ROUTE_SCHEME_HTTP, NULL, "/x", "http_root"},   /* named before any */
        {ROUTE_SCHEME_HTTPS, NULL, "/x", "any_root"},   /* http_root is not https's */
        {ROUTE_SCHEME_HTTPS, NULL, "/api/x", "https_api"},
        {ROUTE_SCHEME_HTTP, NULL, "/api/x", "http_api"},
        {ROUTE_SCHEME_HTTP, NULL, "/api/v1/x", "any_v1"}, /* the longer prefix still first */
        {ROUTE_SCHEME_HTTPS, NULL, "/api/v1/x", "any_v1"},
        {ROUTE_SCHEME_HTTPS, "a.test", "/x", "exact_https"},
        {ROUTE_SCHEME_HTTP, "a.test", "/x", "http_root"}, /* its host's routes are https's */
        {ROUTE_SCHEME_HTTPS, "b.test", "/x", "exact_any"}, /* an exact host before a scheme */
        {ROUTE_SCHEME_HTTPS, "c.test", "/x", "wild_https"},
        {ROUTE_SCHEME_HTTP, "c.test", "/x", "http_root"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *h = rows[i].host;
        const struct route_conf *r = route_match(cfg, rows[i].scheme, h, h ? strlen(h) : 0,
                                                 rows[i].path, strlen(rows[i].path), NULL);
        if (!r || strcmp(r->name, rows[i].route) != 0)
            fail_msg("%s Host '%s' path '%s': %s, want %s",
                     rows[i].scheme == ROUTE_SCHEME_HTTPS ? "https" : "http", h ? h : "(null)",
                     rows[i].path, r ? r->name : "(none)", rows[i].route);
    }
    cfg_free(cfg);
}

/* method, header and cookie: conditions filter the candidates, the ranking picks among those
 * that hold; at equal prefix, host and scheme a route with conditions before one without, the
 * first in the file among those with. */
static const char cond_ini[] = UP
    "[route root]\nupstream = app\n"
    "[route canary]\nheader = X-Canary: 1\nupstream = app\n"
    "[route canary_ck]\ncookie = canary=1\nupstream = app\n"
    "[route write]\nprefix = /api/\nmethod = POST PUT\nupstream = app\n"
    "[route read]\nprefix = /api/\nmethod = GET\nupstream = app\n"
    "[route api]\nprefix = /api/\nupstream = app\n"
    "[route dav]\nprefix = /dav/\nmethod = PROPFIND\nupstream = app\n"
    "[route trace]\nmethod = TRACE\nreturn = 405\n"
    "[route env]\nprefix = /env/\nheader = X-Env: a\nheader = x-env: b\nheader = X-On\n"
    "upstream = app\n"
    "[route s_canary]\nprefix = /s/\nheader = X-Canary: 1\nupstream = app\n"
    "[route s_long]\nprefix = /s/long/\nupstream = app\n"
    "[route fb_canary]\nprefix = /fb/long/\nheader = X-Canary: 1\nupstream = app\n"
    "[route sch_https]\nprefix = /sch/\nscheme = https\nupstream = app\n"
    "[route sch_cond]\nprefix = /sch/\nheader = X-Canary: 1\nupstream = app\n"
    "[route ord_a]\nprefix = /ord/\nheader = X-A: 1\nupstream = app\n"
    "[route ord_b]\nprefix = /ord/\nheader = X-B: 1\nupstream = app\n"
    "[route present]\nprefix = /p/\ncookie = sid\nupstream = app\n";

static void test_route_conditions(void **state)
{
    (void)state;
    struct config *cfg = load_ok(cond_ini);
    static const struct {
        const char *why;
        enum route_scheme scheme;
        const char *method;
        const char *path;
        const char *fields[3][2]; /* name, value; NULL name: no more */
        const char *route;
    } rows[] = {
        {"X-Canary: 1 takes the canary", ROUTE_SCHEME_HTTP, "GET", "/x", {{"X-Canary", "1"}},
         "canary"},
        {"its name in any case", ROUTE_SCHEME_HTTP, "GET", "/x", {{"x-CANARY", "1"}}, "canary"},
        {"no X-Canary: the route without conditions", ROUTE_SCHEME_HTTP, "GET", "/x", {{NULL}},
         "root"},
        {"another value: the route without", ROUTE_SCHEME_HTTP, "GET", "/x", {{"X-Canary", "2"}},
         "root"},
        {"the value is case-sensitive", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"X-Canary", "1 "}, {"X-Other", "1"}}, "root"}, /* (a parser trims OWS: not here) */
        {"a second field line of the name matches", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"X-Canary", "0"}, {"X-Canary", "1"}}, "canary"},
        {"a list is one value: not split at commas", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"X-Canary", "0, 1"}}, "root"},
        {"cookie canary=1 alone", ROUTE_SCHEME_HTTP, "GET", "/x", {{"Cookie", "a=b; canary=1"}},
         "canary_ck"},
        {"HTTP/2's crumbs as fields of their own", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"cookie", "a=b"}, {"cookie", "canary=1"}}, "canary_ck"},
        {"a quoted cookie value is its value", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"Cookie", "canary=\"1\""}}, "canary_ck"},
        {"canary=10 is not canary=1, xcanary=1 not canary", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"Cookie", "canary=10; xcanary=1; canary"}}, "root"},
        {"header and cookie both: the first in the file", ROUTE_SCHEME_HTTP, "GET", "/x",
         {{"Cookie", "canary=1"}, {"X-Canary", "1"}}, "canary"},
        {"POST to the write pool", ROUTE_SCHEME_HTTP, "POST", "/api/x", {{NULL}}, "write"},
        {"PUT too", ROUTE_SCHEME_HTTP, "PUT", "/api/x", {{NULL}}, "write"},
        {"GET to the read pool", ROUTE_SCHEME_HTTP, "GET", "/api/x", {{NULL}}, "read"},
        {"HEAD goes with GET", ROUTE_SCHEME_HTTP, "HEAD", "/api/x", {{NULL}}, "read"},
        {"DELETE: the route without", ROUTE_SCHEME_HTTP, "DELETE", "/api/x", {{NULL}}, "api"},
        {"methods are case-sensitive: get is no GET", ROUTE_SCHEME_HTTP, "get", "/api/x", {{NULL}},
         "api"},
        {"an extension method by its token", ROUTE_SCHEME_HTTP, "PROPFIND", "/dav/x", {{NULL}},
         "dav"},
        {"another one: not it", ROUTE_SCHEME_HTTP, "PROPPATCH", "/dav/x", {{NULL}}, "root"},
        {"a return route with a condition", ROUTE_SCHEME_HTTP, "TRACE", "/x", {{NULL}}, "trace"},
        {"two values of one name: either", ROUTE_SCHEME_HTTP, "GET", "/env/",
         {{"X-Env", "b"}, {"X-On", ""}}, "env"},
        {"and every name: X-On missing", ROUTE_SCHEME_HTTP, "GET", "/env/", {{"X-Env", "a"}},
         "root"},
        {"a longer prefix first, whatever the conditions", ROUTE_SCHEME_HTTP, "GET",
         "/s/long/x", {{"X-Canary", "1"}}, "s_long"},
        {"conditions failing: a shorter prefix", ROUTE_SCHEME_HTTP, "GET", "/fb/long/x",
         {{NULL}}, "root"},
        {"conditions holding at the longer prefix", ROUTE_SCHEME_HTTP, "GET", "/fb/long/x",
         {{"X-Canary", "1"}}, "fb_canary"},
        {"a scheme named before conditions", ROUTE_SCHEME_HTTPS, "GET", "/sch/",
         {{"X-Canary", "1"}}, "sch_https"},
        {"conditions where the scheme is not the route's", ROUTE_SCHEME_HTTP, "GET", "/sch/",
         {{"X-Canary", "1"}}, "sch_cond"},
        {"both hold: the first in the file", ROUTE_SCHEME_HTTP, "GET", "/ord/",
         {{"X-B", "1"}, {"X-A", "1"}}, "ord_a"},
        {"the second alone", ROUTE_SCHEME_HTTP, "GET", "/ord/", {{"X-B", "1"}}, "ord_b"},
        {"cookie present, any value", ROUTE_SCHEME_HTTP, "GET", "/p/", {{"Cookie", "sid="}},
         "present"},
        {"cookie absent", ROUTE_SCHEME_HTTP, "GET", "/p/", {{"Cookie", "sidx=1"}}, "root"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct h1_field f[3];
        size_t n = 0;
        for (; n < 3 && rows[i].fields[n][0]; n++)
            f[n] = (struct h1_field){rows[i].fields[n][0], strlen(rows[i].fields[n][0]),
                                     rows[i].fields[n][1], strlen(rows[i].fields[n][1]),
                                     H1_F_OTHER};
        const char *m = rows[i].method;
        struct route_request rq = {h1_method_of(m, strlen(m)), m, strlen(m), f, n};
        const struct route_conf *r = route_match(cfg, rows[i].scheme, NULL, 0, rows[i].path,
                                                 strlen(rows[i].path), &rq);
        if (!r || strcmp(r->name, rows[i].route) != 0)
            fail_msg("%s: %s, want %s", rows[i].why, r ? r->name : "(none)", rows[i].route);
    }
    /* no request to read (route_match's callers that have none): conditions hold for none */
    const struct route_conf *r = route_match(cfg, ROUTE_SCHEME_HTTP, NULL, 0, "/x", 2, NULL);
    assert_string_equal(r->name, "root");
    cfg_free(cfg);
}

/* Condition lines refused at FILE:LINE, and routes alike but for their conditions: refused
 * only when those are the same too (in any order, GET standing for GET HEAD). */
static void test_route_condition_errors(void **state)
{
    (void)state;
    static const struct {
        const char *route; /* lines 3.. after UP and "[route r]" */
        const char *message; /* NULL: loads */
    } rows[] = {
        {"method = GET P@ST", "test.ini:4: method: 'P@ST' is not a method token"},
        {"method =", "test.ini:4: method: expected one or more methods"},
        {"method = post", "test.ini:4: method: 'post': methods are case-sensitive, write POST"},
        {"method = GET, CONNECT", "test.ini:4: method: CONNECT is answered 501 before any "
                                  "route is chosen"},
        {"header = X Canary: 1", "test.ini:4: header: 'X Canary' is not a field name"},
        {"header = X-Canary : 1", "test.ini:4: header: 'X-Canary ' is not a field name"},
        {"header = : 1", "test.ini:4: header: '' is not a field name"},
        {"header = X-A: a\x01" "b", "test.ini:4: header: control character 0x01 in the value"},
        {"header = !X-Canary", "test.ini:4: header: '!X-Canary': no negation"},
        {"header = Host: a.test", "test.ini:4: header: Host: use host ="},
        {"header = Cookie: a=1", "test.ini:4: header: Cookie: use cookie = name=value"},
        {"header = X-A\nheader = X-A: 1", "test.ini:5: header: header x-a is already named "
                                          "without a value at line 4"},
        {"header = X-A: 1\nheader = x-a", "test.ini:5: header: header x-a already named at "
                                          "line 4"},
        {"header = X-A: 1\nheader = X-A: 1", "test.ini:5: header: header x-a: value '1' named "
                                             "twice"},
        {"cookie = a b=1", "test.ini:4: cookie: 'a b' is not a cookie name"},
        {"cookie = =1", "test.ini:4: cookie: '' is not a cookie name"},
        {"cookie = a=x;y", "test.ini:4: cookie: a: 'x;y' is not a cookie value"},
        {"cookie = a=\"1\"", "test.ini:4: cookie: a: '\"1\"' is not a cookie value"},
        {"cookie = !a", "test.ini:4: cookie: '!a': no negation"},
        /* a pseudo-header field is named for what it is, not as an empty name */
        {"header = :method: GET", "test.ini:4: header: ':method' is an HTTP/2 pseudo-header "
                                  "field: method ="},
        {"header = :authority", "test.ini:4: header: ':authority' is an HTTP/2 pseudo-header"},
        /* fields HTTP/2 requests lack where HTTP/1.1 ones have them: the protocols apart */
        {"header = Connection: keep-alive", "test.ini:4: header: Connection is "
                                            "connection-specific"},
        {"header = keep-alive", "test.ini:4: header: Keep-Alive is connection-specific"},
        {"header = Proxy-Connection", "test.ini:4: header: Proxy-Connection is "
                                      "connection-specific"},
        {"header = Transfer-Encoding: chunked", "test.ini:4: header: Transfer-Encoding is "
                                                "connection-specific"},
        {"header = TE: trailers", "test.ini:4: header: TE is connection-specific"},
        {"header = Content-Length: 0", "test.ini:4: header: Content-Length frames the body"},
        {"header = X-A: 1\nheader = X-A: 2\nheader = X-B\ncookie = c=1\ncookie = c=\n"
         "method = GET MKCOL", NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), UP "[route r]\n%s\nupstream = app\n", rows[i].route);
        int n;
        char *errors;
        struct config *cfg = load(text, "/etc/portico", &n, &errors);
        if (rows[i].message ? cfg || !strstr(errors, rows[i].message) : !cfg)
            fail_msg("%s: want %s, got (%d errors):\n%s", rows[i].route,
                     rows[i].message ? rows[i].message : "a load", n, errors);
        cfg_free(cfg);
        free(errors);
    }
    /* what becomes of route b beside an earlier route a of the same host, prefix and scheme */
    enum { LOADS, SAME, NEVER_TAKEN };
    static const struct {
        const char *a, *b; /* the two routes' condition lines, both at prefix / */
        int verdict;
    } pairs[] = {
        {"header = X-A: 1", "header = x-a: 1", SAME},
        {"header = X-A: 1\nheader = X-A: 2", "header = X-A: 2\nheader = X-A: 1", SAME},
        {"method = GET", "method = HEAD GET", SAME},
        {"method = GET POST", "method = POST\nmethod = GET", SAME},
        {"cookie = c=1\nheader = X-A", "header = X-A\ncookie = c=1", SAME},
        {"header = X-A: 1", "header = X-A: 2", LOADS},
        {"header = X-A: 1", "header = X-A: 1\nheader = X-A: 2", LOADS},
        {"method = HEAD", "method = GET", LOADS},
        {"header = X-A", "cookie = X-A", LOADS},
        {"method = MKCOL", "method = COPY", LOADS},
        {"", "header = X-A", LOADS},
        {"header = X-A: 1", "header = X-A", LOADS},
        {"header = X-A: 1\ncookie = c=1", "header = X-A: 1", LOADS},
        {"method = POST", "header = X-A", LOADS},
        /* (mutants18) the first route's names a superset of the second's: b holds without X-B */
        {"header = X-A\nheader = X-B", "header = X-A", LOADS},
        /* the first in the file wins among conditions that hold: a's hold whenever b's do */
        {"method = GET", "method = HEAD", NEVER_TAKEN},
        {"method = GET POST", "method = POST", NEVER_TAKEN},
        {"method = MKCOL COPY", "method = COPY", NEVER_TAKEN},
        {"header = X-A: 1\nheader = X-A: 2", "header = X-A: 1", NEVER_TAKEN},
        {"header = X-A", "header = X-A: 1", NEVER_TAKEN},
        {"header = X-A: 1", "header = X-A: 1\ncookie = c=1", NEVER_TAKEN},
        {"cookie = c", "cookie = c=1\nmethod = POST", NEVER_TAKEN},
        {"method = POST", "method = POST\nheader = X-A", NEVER_TAKEN},
    };
    static const char *const messages[] = {
        [SAME] = "[route b] has the same host and prefix as [route a], and the same "
                 "method, header and cookie conditions",
        [NEVER_TAKEN] = "[route b] is never taken: [route a] before it, of the same "
                        "host, prefix and scheme, has conditions that hold whenever its do",
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), UP "[route a]\n%s\nupstream = app\n[route b]\n%s\n"
                 "upstream = app\n", pairs[i].a, pairs[i].b);
        int n;
        char *errors;
        struct config *cfg = load(text, "/etc/portico", &n, &errors);
        const char *want = messages[pairs[i].verdict];
        if ((pairs[i].verdict == LOADS) != !!cfg || (want && (n != 1 || !strstr(errors, want))))
            fail_msg("'%s' and '%s': want %s, got (%d errors):\n%s", pairs[i].a, pairs[i].b,
                     want ? want : "a load", n, errors);
        cfg_free(cfg);
        free(errors);
    }
}

/* One upstream and no route: the implicit route takes every host and path. */
static void test_implicit_route(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP);
    assert_int_equal(cfg->nroutes, 1);
    const struct route_conf *r = &cfg->routes[0];
    assert_ptr_equal(match_http(cfg, "any.host", 8, "/whatever", 9), r);
    assert_ptr_equal(match_http(cfg, NULL, 0, "/", 1), r);
    assert_ptr_equal(match_http(cfg, "x", 1, "", 0), NULL); /* a path is never empty: no "/" */
    cfg_free(cfg);
}

/* route_plain_len byte by byte, as it was: the reference for the word-at-a-time scan. */
static size_t plain_len_ref(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '%' || p[i] == '\\' || (p[i] == '/' && i + 1 < n && p[i + 1] == '/'))
            return i;
    return n;
}

/* Every path of up to 9 bytes over "a/%\\." (every place of every stop, "//" across a word's
 * end included, and "/." which a borrowing zero test would take for "//"), alone and behind 7
 * bytes of "a" (its stops in the second word, at an odd offset of the buffer): the same length
 * as byte by byte. */
static void test_plain_len(void **state)
{
    (void)state;
    static const char alphabet[] = "a/%\\.";
    char buf[32];
    for (size_t lead = 0; lead <= 7; lead += 7) {
        memset(buf, 'a', lead);
        for (size_t n = 0; n <= 9; n++) {
            size_t combos = 1;
            for (size_t i = 0; i < n; i++)
                combos *= 5;
            for (size_t c = 0; c < combos; c++) {
                size_t x = c;
                for (size_t i = 0; i < n; i++, x /= 5)
                    buf[lead + i] = alphabet[x % 5];
                size_t len = lead + n;
                if (route_plain_len(buf, len) != plain_len_ref(buf, len))
                    fail_msg("'%.*s': %zu, byte by byte %zu", (int)len, buf,
                             route_plain_len(buf, len), plain_len_ref(buf, len));
            }
        }
    }
    /* past two words, a stop in the third, and none */
    const char *longer[] = {"/api/v1/users/12345/orders", "/api/v1/users//12345", "/api/v1/%75sers",
                            "/api/v1//", "/api/v1/", "/api/v1\\users/x/y/z/w"};
    for (size_t i = 0; i < sizeof(longer) / sizeof(longer[0]); i++)
        assert_int_equal(route_plain_len(longer[i], strlen(longer[i])),
                         plain_len_ref(longer[i], strlen(longer[i])));
}

/* (mutants18) A request's header value and cookie name compared exactly, a cookie's OWS
 * before ';' not part of its value, an extension method by its whole token; and a refused
 * condition line one error (a second route, alike but for that line, is no duplicate). */
static const char exact_ini[] = UP
    "[route root]\nupstream = app\n"
    "[route mode]\nprefix = /m/\nheader = X-Mode: on\nupstream = app\n"
    "[route canary_ck]\nprefix = /c/\ncookie = canary=1\nupstream = app\n"
    "[route dav]\nprefix = /dav/\nmethod = PROPFIND\nupstream = app\n";

static void test_route_conditions_exact(void **state)
{
    (void)state;
    struct config *cfg = load_ok(exact_ini);
    static const struct {
        const char *why;
        const char *method;
        const char *path;
        const char *field[2];
        const char *route;
    } rows[] = {
        {"the header value as written", "GET", "/m/", {"X-Mode", "on"}, "mode"},
        {"a header value in another case is another value", "GET", "/m/", {"X-Mode", "ON"},
         "root"},
        {"the cookie as written", "GET", "/c/", {"Cookie", "canary=1"}, "canary_ck"},
        {"a cookie name in another case is another cookie", "GET", "/c/", {"Cookie", "CANARY=1"},
         "root"},
        {"spaces before ';' are not the cookie's value", "GET", "/c/",
         {"Cookie", "canary=1 ; a=b"}, "canary_ck"},
        {"an extension method by its token", "PROPFIND", "/dav/", {NULL}, "dav"},
        {"a method that begins it is another", "PROPFI", "/dav/", {NULL}, "root"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct h1_field f[1];
        size_t n = 0;
        if (rows[i].field[0])
            f[n++] = (struct h1_field){rows[i].field[0], strlen(rows[i].field[0]),
                                       rows[i].field[1], strlen(rows[i].field[1]), H1_F_OTHER};
        const char *m = rows[i].method;
        struct route_request rq = {h1_method_of(m, strlen(m)), m, strlen(m), f, n};
        const struct route_conf *r = route_match(cfg, ROUTE_SCHEME_HTTP, NULL, 0, rows[i].path,
                                                 strlen(rows[i].path), &rq);
        if (!r || strcmp(r->name, rows[i].route) != 0)
            fail_msg("%s: %s, want %s", rows[i].why, r ? r->name : "(none)", rows[i].route);
    }
    cfg_free(cfg);
    static const char *const one_error[] = {
        UP "[route a]\nheader = X-A: 1\nheader = X-A: \x01\nupstream = app\n"
           "[route b]\nheader = X-A: 1\nupstream = app\n",
    };
    for (size_t i = 0; i < sizeof(one_error) / sizeof(one_error[0]); i++) {
        int n;
        char *errors;
        struct config *bad = load(one_error[i], "/etc/portico", &n, &errors);
        if (bad || n != 1 || !strstr(errors, "control character 0x01"))
            fail_msg("%s: want one error (control character), got %d:\n%s", one_error[i], n,
                     errors);
        cfg_free(bad);
        free(errors);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_route_no_match),
        cmocka_unit_test(test_route_read_length),
        cmocka_unit_test(test_route_scheme),
        cmocka_unit_test(test_route_conditions),
        cmocka_unit_test(test_route_condition_errors),
        cmocka_unit_test(test_implicit_route),
        cmocka_unit_test(test_plain_len),
        cmocka_unit_test(test_route_conditions_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
