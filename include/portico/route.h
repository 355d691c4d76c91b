/*
 * route.h — which [route] a request goes to. Pure: the loaded config's routes in, one route out.
 * A prefix is read against a path by route_prefix.h: pure, below the config, whose loader reads
 * prefixes too.
 */
#ifndef PORTICO_ROUTE_H
#define PORTICO_ROUTE_H

#include <stddef.h>

#include "portico/config.h"
#include "portico/route_cond.h"

/*
 * The route for a request: longest matching prefix (route_prefix_matches, its length as it
 * reads: route_prefix_read_len) among routes whose host and scheme match (exact hosts before
 * wildcards, the longer wildcard first, before host-less routes at equal prefix length; at equal
 * prefix and host, a route naming the scheme before one that does not). scheme is the request's
 * (ROUTE_SCHEME_HTTP or _HTTPS: the connection's, route_scheme_of in config.h). host is the Host
 * field value (port stripped by the function), may be NULL. A route with conditions (method,
 * header, cookie: route_cond.h) is a candidate only when they hold for rq (NULL: they hold for
 * none), and at equal prefix, host and scheme it ranks before one without; among candidates of
 * equal rank the first in the file wins. Returns the route, or NULL for no match.
 */
const struct route_conf *route_match(const struct config *cfg, enum route_scheme scheme,
                                     const char *host, size_t host_len, const char *path,
                                     size_t path_len, const struct route_request *rq);

/* route_match for a path whose route_plain_len the caller has already (the exchange reads it
 * once for the routes and the fault rules). */
const struct route_conf *route_match_plain(const struct config *cfg, enum route_scheme scheme,
                                           const char *host, size_t host_len, const char *path,
                                           size_t path_len, size_t plain,
                                           const struct route_request *rq);

#endif
