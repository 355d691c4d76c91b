/*
 * route_return.h — a route that answers itself (return = CODE [TEXT-or-URL], proxy/
 * route_return.c). The answer is sent through exchange_int.h's route_return_answer; the
 * redirect's Location is built here alone so that a unit row or a fuzz target can reach it.
 */
#ifndef PORTICO_ROUTE_RETURN_H
#define PORTICO_ROUTE_RETURN_H

#include <event2/buffer.h>

#include "portico/config.h"
#include "portico/header_rules.h"

/* A redirect's Location into out: a's URL with its variables expanded from vals, the client's
 * words percent-encoded where they are no URL byte, a leading run of '/' or '\' made one '/'.
 * 0; -1 out of memory; -2 when an absolute URL's authority came out empty (its $host, of a
 * request without a Host: no Location to send). */
int route_return_location(const struct route_return *a, const struct hrule_values *vals,
                          struct evbuffer *out);

#endif
