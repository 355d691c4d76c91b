/*
 * route.c — route matching: longest prefix, then the most specific host. See route.h.
 */
#include "portico/route.h"

#include <ctype.h>
#include <string.h>

#include "portico/request.h"
#include "portico/util.h"

/* How well a route's host pattern matches a Host key: the higher the more specific. A wildcard
 * ranks by its suffix's length too, so that *.b.example.com takes a.b.example.com from
 * *.example.com wherever each stands in the file, as nginx picks the longest wildcard. */
enum host_rank {
    HOST_NO_MATCH,
    HOST_ANY,             /* the route names no host */
    HOST_WILDCARD,        /* *.example.com: + the length of ".example.com" */
    HOST_EXACT = 2 + 256, /* above every wildcard (a host is at most 253 bytes) */
};

static unsigned host_rank(const char *pattern, const char *host, size_t hlen)
{
    if (!pattern)
        return HOST_ANY;
    if (!hlen)
        return HOST_NO_MATCH;
    if (pattern[0] == '*') {
        size_t plen = strlen(pattern) - 1; /* ".example.com" */
        return hlen > plen && memcmp(host + hlen - plen, pattern + 1, plen) == 0
                   ? HOST_WILDCARD + (unsigned)plen
                   : HOST_NO_MATCH;
    }
    return strlen(pattern) == hlen && memcmp(pattern, host, hlen) == 0 ? HOST_EXACT : HOST_NO_MATCH;
}

/* A path read one normalised character at a time (route_prefix_matches). */
struct path_reader {
    const char *p;
    size_t n, i;
};

static int hex_value(unsigned char c)
{
    return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* The next character of the normalised path, -1 at its end. */
static int path_next(struct path_reader *r)
{
    if (r->i >= r->n)
        return -1;
    size_t sep = request_separator_at(r->p, r->n, r->i);
    if (sep) {
        do
            r->i += sep;
        while (r->i < r->n && (sep = request_separator_at(r->p, r->n, r->i)) != 0);
        return '/';
    }
    unsigned char c = (unsigned char)r->p[r->i++];
    if (c == '%' && r->i + 1 < r->n && isxdigit((unsigned char)r->p[r->i]) &&
        isxdigit((unsigned char)r->p[r->i + 1])) {
        int v = hex_value((unsigned char)r->p[r->i]) * 16 +
                hex_value((unsigned char)r->p[r->i + 1]);
        if (isalnum(v) || v == '-' || v == '.' || v == '_' || v == '~') {
            r->i += 2;
            return v;
        }
    }
    return c;
}

bool route_prefix_matches(const char *path, size_t path_len, const char *prefix)
{
    struct path_reader in = {path, path_len, 0}, want = {prefix, strlen(prefix), 0};
    for (int c; (c = path_next(&want)) >= 0;)
        if (path_next(&in) != c)
            return false;
    return true;
}

size_t route_prefix_read_len(const char *prefix)
{
    struct path_reader r = {prefix, strlen(prefix), 0};
    size_t n = 0;
    while (path_next(&r) >= 0)
        n++;
    return n;
}

/* A byte's high bit set where the byte of x is zero, and nowhere else (no borrow runs into the
 * next byte, as in the shorter test that says only whether one is). */
static inline uint64_t zero_bytes(uint64_t x)
{
    const uint64_t lows = UINT64_C(0x7f7f7f7f7f7f7f7f);
    return ~(((x & lows) + lows) | x | lows);
}

size_t route_plain_len(const char *p, size_t n)
{
    /* Eight bytes a step while a word holds no '%', no '\\' and no "//" (also across into the
     * next word): byte by byte, the bounds and the look-ahead cost ~12 instructions a byte, and
     * every request's path is read (once, for the routes and the fault rules). The word
     * that holds one ends the scan byte by byte. */
    const uint64_t ones = UINT64_C(0x0101010101010101);
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        uint64_t slash = zero_bytes(w ^ (ones * '/'));
        uint64_t stop = zero_bytes(w ^ (ones * '%')) | zero_bytes(w ^ (ones * '\\')) |
                        (slash & (slash >> 8)); /* a '/' whose next byte is one too */
        if (stop || ((slash >> 63) && i + 8 < n && p[i + 8] == '/'))
            break;
    }
    for (; i < n; i++)
        if (p[i] == '%' || p[i] == '\\' || (p[i] == '/' && i + 1 < n && p[i + 1] == '/'))
            return i;
    return n;
}

bool route_prefix_holds(const char *path, size_t path_len, size_t plain, const char *prefix,
                        size_t prefix_len, bool prefix_plain)
{
    if (prefix_plain && (prefix_len <= plain || plain == path_len))
        return prefix_len <= path_len && memcmp(prefix, path, prefix_len) == 0;
    return route_prefix_matches(path, path_len, prefix);
}

const struct route_conf *route_match(const struct config *cfg, const char *host, size_t host_len,
                                     const char *path, size_t path_len)
{
    return route_match_plain(cfg, host, host_len, path, path_len, route_plain_len(path, path_len));
}

const struct route_conf *route_match_plain(const struct config *cfg, const char *host,
                                           size_t host_len, const char *path, size_t path_len,
                                           size_t plain)
{
    char h[256];
    size_t hlen = 0;
    bool keyed = false; /* h is made for the first route that names a host: most name none */
    const struct route_conf *best = NULL;
    size_t best_len = 0;
    unsigned best_rank = HOST_NO_MATCH;
    for (int i = 0; i < cfg->nroutes; i++) {
        const struct route_conf *r = &cfg->routes[i];
        if (r->host && !keyed) {
            hlen = host ? host_key(host, host_len, h, sizeof(h)) : 0;
            keyed = true;
        }
        unsigned rank = host_rank(r->host, h, hlen);
        if (rank == HOST_NO_MATCH)
            continue;
        /* Where both read as themselves, memcmp says it at once: every request is matched
         * against every route (up to 1024), and reading a normalised character at a time cost
         * 1024 routes sharing "/api/v1/" 4 times the CPU */
        if (!route_prefix_holds(path, path_len, plain, r->prefix, r->prefix_len,
                                r->prefix_plain))
            continue;
        size_t plen = r->prefix_read_len; /* "/%61pi/" is no longer than "/api/" */
        if (!best || plen > best_len || (plen == best_len && rank > best_rank)) {
            best = r;
            best_len = plen;
            best_rank = rank;
        }
    }
    return best;
}
