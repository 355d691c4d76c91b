/*
 * exchange.h — one request/response exchange: route, interim policy, upstream phases with their
 * timers, body relay both ways, failure classification, error response, access log.
 */
#ifndef PORTICO_EXCHANGE_H
#define PORTICO_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "portico/http1.h"

struct client;
struct worker;
struct exchange;

/*
 * Starts an exchange for a parsed request head. head[0..head_len) holds the head bytes (still in
 * the client's input buffer; the exchange copies them before the caller drains them) and req
 * points into it. received_us: when the head's first byte arrived. Returns the exchange, or NULL
 * when it could not even start (out of memory: the caller closes the connection).
 */
struct exchange *exchange_start(struct worker *w, struct client *c, const char *head,
                                size_t head_len, const struct h1_request *req,
                                uint64_t received_us);

/* Runs the exchange: semantic checks, routing, interim policy, then the upstream. Called by the
 * client once it has stored the pointer, because the exchange may finish (and be freed through
 * client_exchange_done) before this returns. */
void exchange_run(struct exchange *ex);

/* The client connection's events, forwarded while the exchange runs. */
void exchange_client_read(struct exchange *ex);
void exchange_client_write(struct exchange *ex);
void exchange_client_gone(struct exchange *ex, const char *why);

/* The client sent no request body bytes for client_body_timeout: 408, or an abort when the
 * response has started. */
void exchange_client_body_timeout(struct exchange *ex);

/* Frees an exchange; logs it first if it was never logged (client gone: 499). */
void exchange_free(struct exchange *ex);

#endif
