/*
 * route.c — route matching: longest prefix, then the most specific host. See route.h.
 */
#include "portico/route.h"

#include <string.h>

#include "portico/util.h"

/* How well a route's host pattern matches a Host key: the higher the more specific. */
enum host_rank {
    HOST_NO_MATCH,
    HOST_ANY,      /* the route names no host */
    HOST_WILDCARD, /* *.example.com */
    HOST_EXACT,
};

static enum host_rank host_rank(const char *pattern, const char *host, size_t hlen)
{
    if (!pattern)
        return HOST_ANY;
    if (!hlen)
        return HOST_NO_MATCH;
    if (pattern[0] == '*') {
        size_t plen = strlen(pattern) - 1; /* ".example.com" */
        return hlen > plen && memcmp(host + hlen - plen, pattern + 1, plen) == 0 ? HOST_WILDCARD
                                                                                 : HOST_NO_MATCH;
    }
    return strlen(pattern) == hlen && memcmp(pattern, host, hlen) == 0 ? HOST_EXACT : HOST_NO_MATCH;
}

const struct route_conf *route_match(const struct config *cfg, const char *host, size_t host_len,
                                     const char *path, size_t path_len)
{
    char h[256];
    size_t hlen = host ? host_key(host, host_len, h, sizeof(h)) : 0;
    const struct route_conf *best = NULL;
    size_t best_len = 0;
    enum host_rank best_rank = HOST_NO_MATCH;
    for (int i = 0; i < cfg->nroutes; i++) {
        const struct route_conf *r = &cfg->routes[i];
        enum host_rank rank = host_rank(r->host, h, hlen);
        if (rank == HOST_NO_MATCH)
            continue;
        size_t plen = strlen(r->prefix);
        if (plen > path_len || memcmp(r->prefix, path, plen) != 0)
            continue;
        if (!best || plen > best_len || (plen == best_len && rank > best_rank)) {
            best = r;
            best_len = plen;
            best_rank = rank;
        }
    }
    return best;
}
