/*
 * route.c — route matching: the request's scheme, longest prefix, then the most specific host,
 * then a route naming the scheme before one that does not, then one with conditions (method,
 * header, cookie) that hold before one without. See route.h.
 */
#include "portico/route.h"

#include <string.h>

#include "portico/route_prefix.h"
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

const struct route_conf *route_match(const struct config *cfg, enum route_scheme scheme,
                                     const char *host, size_t host_len, const char *path,
                                     size_t path_len, const struct route_request *rq)
{
    return route_match_plain(cfg, scheme, host, host_len, path, path_len,
                             route_plain_len(path, path_len), rq);
}

const struct route_conf *route_match_plain(const struct config *cfg, enum route_scheme scheme,
                                           const char *host, size_t host_len, const char *path,
                                           size_t path_len, size_t plain,
                                           const struct route_request *rq)
{
    char h[256];
    size_t hlen = 0;
    bool keyed = false; /* h is made for the first route that names a host: most name none */
    const struct route_conf *best = NULL;
    size_t best_len = 0;
    unsigned best_rank = HOST_NO_MATCH;
    /* the bounds in locals: the conditions' call below could, for all the compiler knows,
     * change cfg, which would have it load both anew for every route (+5 instructions a route) */
    const struct route_conf *end = cfg->routes + cfg->nroutes;
    for (const struct route_conf *r = cfg->routes; r < end; r++) {
        /* one test for a route of neither host nor scheme, as the host's alone was before */
        unsigned rank = HOST_ANY;
        if (r->narrowed) {
            if (r->scheme != ROUTE_SCHEME_ANY && r->scheme != scheme)
                continue;
            if (r->host && !keyed) {
                hlen = host ? host_key(host, host_len, h, sizeof(h)) : 0;
                keyed = true;
            }
            rank = host_rank(r->host, h, hlen);
            if (rank == HOST_NO_MATCH)
                continue;
        }
        /* Where both read as themselves, memcmp says it at once: every request is matched
         * against every route (up to 1024), and reading a normalised character at a time cost
         * 1024 routes sharing "/api/v1/" 4 times the CPU */
        if (!route_prefix_holds(path, path_len, plain, r->prefix, r->prefix_len,
                                r->prefix_plain))
            continue;
        size_t plen = r->prefix_read_len; /* "/%61pi/" is no longer than "/api/" */
        /* at equal prefix and host rank, the route that names the scheme before the one that
         * does not, then one with conditions before one without (tie_rank); at an equal one
         * the first in the file stays (routes alike but for their conditions are refused only
         * when those are the same too) */
        bool tie = plen == best_len && rank == best_rank;
        if (!best || plen > best_len || (plen == best_len && rank > best_rank) ||
            (tie && r->tie_rank > best->tie_rank)) {
            /* conditions are read only of a route that would win: most lose on the prefix */
            if (r->conds && !route_conds_hold(r->conds, rq))
                continue;
            best = r;
            best_len = plen;
            best_rank = rank;
        }
    }
    return best;
}
