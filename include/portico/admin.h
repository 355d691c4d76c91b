/*
 * admin.h — the admin endpoint (`admin_listen`): Prometheus metrics, a health check, /status and
 * the status page (admin_status.h), served by worker 0 through the ordinary client connection
 * code.
 */
#ifndef PORTICO_ADMIN_H
#define PORTICO_ADMIN_H

#include <stdbool.h>

#include "portico/http1.h"

struct evbuffer;
struct generation;

/* Appends the complete response to an admin request about the generation gen serves: GET
 * /metrics, GET /healthz, GET /status, GET /, else 404, or
 * 405 with Allow; with `Connection: close` when *close is set. Returns the status sent. When
 * memory runs out it sends a 503 and sets *close; when there is not even room for that, it
 * appends nothing, sets *close and returns -1. Whenever *close is set on return the caller
 * closes the connection after flushing out. */
int admin_respond(struct evbuffer *out, const struct h1_request *req, bool *close,
                  const struct generation *gen);

#endif
