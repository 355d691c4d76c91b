/*
 * route.h — which [route] a request goes to. Pure: the loaded config's routes in, one route out.
 */
#ifndef PORTICO_ROUTE_H
#define PORTICO_ROUTE_H

#include <stddef.h>

#include "portico/config.h"

/*
 * The route for a request: longest matching prefix among routes whose host matches (exact
 * hosts before wildcards before host-less routes at equal prefix length). host is the Host field
 * value (port stripped by the function), may be NULL. Returns the route, or NULL for no match.
 */
const struct route_conf *route_match(const struct config *cfg, const char *host, size_t host_len,
                                     const char *path, size_t path_len);

#endif
