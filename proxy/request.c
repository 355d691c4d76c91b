/*
 * request.c — request checks before routing. See request.h.
 */
#include "portico/request.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "portico/status.h"

size_t request_separator_at(const char *p, size_t n, size_t i)
{
    if (p[i] == '/' || p[i] == '\\')
        return 1;
    if (i + 2 < n && p[i] == '%' &&
        ((p[i + 1] == '2' && (p[i + 2] == 'f' || p[i + 2] == 'F')) ||
         (p[i + 1] == '5' && (p[i + 2] == 'c' || p[i + 2] == 'C'))))
        return 3;
    return 0;
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* A byte's high bit set in the result when some byte of w is c (exact as to whether one is). */
static inline uint64_t bytes_equal(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (ONES * c);
    return (x - ONES) & ~x & HIGHS;
}

/* Whether p holds a '.' or a '%', eight bytes a step: a dot segment needs one ("." or "%2e"),
 * and most paths hold neither, which spares them the walk from separator to separator below
 * (~140 instructions for "/small", ~200 for "/fault/x"). The last bytes are read as a word
 * that overlaps the one before (or, under eight, as two 4-byte halves that overlap): a byte
 * loop cost ~11 instructions a byte. */
static bool dot_or_percent(const char *p, size_t n)
{
    uint64_t w;
    if (n < 4) {
        for (size_t i = 0; i < n; i++)
            if (p[i] == '.' || p[i] == '%')
                return true;
        return false;
    }
    if (n < 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, sizeof(lo));
        memcpy(&hi, p + n - 4, sizeof(hi));
        w = lo | (uint64_t)hi << 32;
        return (bytes_equal(w, '.') | bytes_equal(w, '%')) != 0;
    }
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&w, p + i, sizeof(w));
        if (bytes_equal(w, '.') | bytes_equal(w, '%'))
            return true;
    }
    memcpy(&w, p + n - 8, sizeof(w));
    return (bytes_equal(w, '.') | bytes_equal(w, '%')) != 0;
}

/* Each segment after a separator read for one or two dots, plain or encoded, and what ends it.
 * Out of line: inlined, its registers were saved and restored on every path, which most often
 * holds no '.' and no '%' and needs no walk. */
__attribute__((noinline)) static bool dot_segment_walk(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t sep = request_separator_at(p, n, i);
        if (!sep)
            continue;
        size_t j = i + sep, dots = 0;
        while (j < n && p[j] != '?' && !request_separator_at(p, n, j)) {
            if (p[j] == '.')
                dots++, j++;
            else if (j + 2 < n && p[j] == '%' && p[j + 1] == '2' &&
                     (p[j + 2] == 'e' || p[j + 2] == 'E'))
                dots++, j += 3;
            else
                break;
        }
        if ((dots == 1 || dots == 2) &&
            (j == n || p[j] == '?' || p[j] == ';' || request_separator_at(p, n, j)))
            return true;
        i += sep - 1;
    }
    return false;
}

/* Dot segments would let "/api/../admin" match the route of "/api/"; refuse them, encoded too
 * ("%2e", and "/api/..%2fadmin" for an origin that decodes "%2f"), and with a path parameter
 * ("/api/..;/admin": Tomcat and other servlet containers strip ";..." and go up). */
bool request_has_dot_segment(const char *p, size_t n)
{
    return dot_or_percent(p, n) && dot_segment_walk(p, n);
}

/* Whether the path holds "%00". */
static bool encoded_nul(const char *p, size_t n)
{
    for (const char *e = p + n; (p = memchr(p, '%', (size_t)(e - p))) != NULL && e - p >= 3; p++)
        if (p[1] == '0' && p[2] == '0')
            return true;
    return false;
}

int request_target(const struct h1_request *req, struct req_target *t, const char **why)
{
    const char *s = req->target;
    size_t n = req->target_len;
    *t = (struct req_target){0};
    /* CONNECT asks for a tunnel whatever its target looks like: forwarded, its 2xx would have
     * no body (RFC 9112 6.3), so the origin's Content-Length would frame nothing. */
    if (req->method_id == METHOD_CONNECT) {
        *why = "CONNECT is not supported";
        return HTTP_NOT_IMPLEMENTED;
    }
    /* A fragment is never sent (RFC 9110 7.1; RFC 9112 3.2 has no room for one). An origin that
     * strips it routes another path than ours: "/api/..#" is "/" to a WHATWG URL parser, and the
     * dot segment before '#' ends no segment we look for (HAProxy's CVE-2023-45539). */
    if (memchr(s, '#', n)) {
        *why = "fragment (#) in the request-target";
        return HTTP_BAD_REQUEST;
    }
    if (n && s[0] == '/') {
        t->path = s;
        t->path_len = n;
    } else if (n == 1 && s[0] == '*' && req->method_id == METHOD_OPTIONS) {
        t->path = s; /* "OPTIONS *" asks about the server as a whole: routed like "/" */
        t->path_len = 1;
        t->route = "/";
        t->route_len = 1;
        return 0;
    } else if (n > 7 && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0)) {
        /* absolute-form (RFC 9112 3.2.2): the authority replaces Host, so it is held to the
         * rules of a Host field; it ends at the path or, without one, at the query */
        size_t skip = s[4] == ':' ? 7 : 8;
        const char *auth = s + skip;
        size_t alen = 0;
        while (skip + alen < n && auth[alen] != '/' && auth[alen] != '?')
            alen++;
        if (alen == 0) {
            *why = "absolute-form target without a host";
            return HTTP_BAD_REQUEST;
        }
        if (!h1_host_valid(auth, alen)) {
            *why = "invalid host in the absolute-form target";
            return HTTP_BAD_REQUEST;
        }
        t->host = auth;
        t->host_len = alen;
        if (alen == n - skip && req->method_id == METHOD_OPTIONS) {
            /* no path and no query: the server as a whole, which the last proxy forwards as
             * "OPTIONS *" (RFC 9112 3.2.4); routed like "/" as above */
            t->path = "*";
            t->path_len = 1;
            t->route = "/";
            t->route_len = 1;
            return 0;
        }
        t->path = alen < n - skip ? auth + alen : "/";
        t->path_len = alen < n - skip ? n - skip - alen : 1;
    } else {
        *why = "request-target must be an absolute path";
        return HTTP_BAD_REQUEST;
    }
    const char *q = memchr(t->path, '?', t->path_len);
    t->route = t->path;
    t->route_len = q ? (size_t)(q - t->path) : t->path_len;
    if (t->route_len == 0) { /* "http://h?q" asks for "/?q" */
        t->route = "/";
        t->route_len = 1;
    }
    if (request_has_dot_segment(t->route, t->route_len)) {
        *why = "dot segments in the path are not accepted";
        return HTTP_BAD_REQUEST;
    }
    /* An origin written in C that decodes the path reads "/api/..%00/x" as "/api/.." and goes
     * up, out of the route that matched it; nginx refuses an encoded NUL in a path too. */
    if (memchr(t->route, '%', t->route_len) && encoded_nul(t->route, t->route_len)) {
        *why = "an encoded NUL (%00) in the path is not accepted";
        return HTTP_BAD_REQUEST;
    }
    return 0;
}

int request_portico_hops(const struct h1_request *req)
{
    int hops = 0;
    for (int i = h1_find(req->fields, req->nfields, H1_F_VIA, 0); i >= 0;
         i = h1_find(req->fields, req->nfields, H1_F_VIA, (size_t)i + 1)) {
        size_t pos = 0;
        const char *e;
        size_t n;
        while (h1_list_next(req->fields[i].value, req->fields[i].value_len, &pos, &e, &n))
            if (n >= 7 && strncasecmp(e + n - 7, "portico", 7) == 0)
                hops++;
    }
    return hops;
}

long request_max_forwards(const struct h1_request *req)
{
    if (req->method_id != METHOD_OPTIONS && req->method_id != METHOD_TRACE)
        return -1;
    int i = h1_find(req->fields, req->nfields, H1_F_MAX_FORWARDS, 0);
    /* a second field makes the value a list ("5" and "0" are "5, 0", RFC 9110 5.3), as a
     * proxy before us may have joined them: not a number either way */
    if (i < 0 || req->fields[i].value_len == 0 ||
        h1_find(req->fields, req->nfields, H1_F_MAX_FORWARDS, (size_t)i + 1) >= 0)
        return -1;
    long v = 0;
    for (size_t k = 0; k < req->fields[i].value_len; k++) {
        char c = req->fields[i].value[k];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
        if (v > REQUEST_MAX_FORWARDS_CAP)
            v = REQUEST_MAX_FORWARDS_CAP; /* "99999999999999999999" is as good as unbounded */
    }
    return v;
}

bool request_id_valid(const char *v, size_t n)
{
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!(isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

bool request_idempotent(enum http_method method)
{
    switch (method) {
    case METHOD_GET:
    case METHOD_HEAD:
    case METHOD_OPTIONS:
    case METHOD_TRACE:
    case METHOD_PUT:
    case METHOD_DELETE:
        return true;
    default: /* POST, PATCH, CONNECT, and what we cannot know of an extension method */
        return false;
    }
}
