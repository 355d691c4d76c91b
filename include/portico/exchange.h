/*
 * exchange.h — one request/response exchange: route, interim policy, upstream phases with their
 * timers, body relay both ways, failure classification, error response, access log.
 *
 * The exchange talks to its owner through the downstream interface (downstream.h) and ends
 * itself: every entry point below may end it, in which case the owner's done() is called (and
 * the exchange freed) before the entry point returns. The owner must not use its pointer after
 * any of these calls until it knows the exchange is still running (done() was not called).
 */
#ifndef PORTICO_EXCHANGE_H
#define PORTICO_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/downstream.h"
#include "portico/http1.h"
#include "portico/status.h"

struct loop;
struct access_record;
struct exchange;

/*
 * Creates an exchange for a parsed request head. head[0..head_len) holds the head bytes (still in
 * the owner's input buffer: the exchange copies them) and req points into it. ds is copied.
 * received_us: when the head's first byte arrived. NULL when out of memory.
 */
struct exchange *exchange_start(struct loop *l, const struct downstream *ds, const char *head,
                                size_t head_len, const struct h1_request *req,
                                uint64_t received_us);

/* Runs it: semantic checks, routing, interim policy, then the upstream. */
void exchange_run(struct exchange *ex);

/* Request body bytes arrived in the downstream's request input. */
void exchange_request_readable(struct exchange *ex);

/* The request body ended (HTTP/2 END_STREAM): what is in the request input is all of it. A body
 * of a known length that ends short is refused (400). */
void exchange_request_eof(struct exchange *ex);

/* Whether the exchange needs nothing more from its client's connection: its request is whole
 * (the body all read, or all waiting in the request input), no body rest is owed to be dropped,
 * and no upgrade is offered (a tunnel would need the client's side). */
bool exchange_request_whole(struct exchange *ex);

/* Whether the exchange goes on to its end after its client's FIN (an HTTP/1.1 half-close): its
 * configuration says client_half_close = answer, and its request is whole
 * (exchange_request_whole). */
bool exchange_answers_half_close(struct exchange *ex);

/* The downstream's output drained: response bytes may flow again. */
void exchange_drained(struct exchange *ex);

/* The downstream's resp_read_max (downstream.h) is max from now on: the origin's next reads
 * take no more (an HTTP/2 stream's share of its connection's budget, which falls as streams
 * open). Only sets a limit: never reads, never ends the exchange. */
void exchange_read_max(struct exchange *ex, size_t max);

/* The client sent no request body byte for client_body_timeout: 408, or an abort when the
 * response has started. */
void exchange_request_timeout(struct exchange *ex);

/* The downstream is going away (client closed, reset, stopped reading, or Portico stops): the
 * exchange is logged with why as its detail and, when nothing was answered, status (499, or 400
 * for a request found malformed after it started: an HTTP/2 content-length that disagrees with
 * its DATA); its origin connection is closed, and it is freed. done() is not called. */
void exchange_cancel(struct exchange *ex, enum http_status status, const char *why);

struct fault_addr;

/*
 * The client a trusted proxy names ([proxy] real_ip, realip.h) in the fields of a request from
 * peer, all of them (a prefix could lack the proxy's own element): true with *client when peer
 * is one of trusted_proxies and names one, else false (the peer is the client). from_trusted
 * (may be NULL): whether peer is one of them. An element naming the client that is not an
 * address is counted (portico_real_ip_invalid_total) and said in the error log. An exchange's
 * client, and that of a request refused before one existed (HTTP/2's refused streams).
 */
bool exchange_real_client(struct loop *l, const struct peer *peer, const struct h1_field *fields,
                          size_t nfields, bool *from_trusted, struct fault_addr *client);

/* A request's id into buf (>= 48 bytes): the client's first X-Request-Id when it is well-formed
 * (request_id_valid), so that traces join up, else a new one (loop_request_id). An exchange's,
 * and that of a request refused before one existed whose fields were read (client.c,
 * h2_stream.c). */
void exchange_request_id(struct loop *l, const struct h1_field *fields, size_t nfields,
                         char *buf, size_t size);

/* Counts and writes one ended exchange: portico_requests_total and the phase histograms (route,
 * upstream: configuration indexes, -1 for none), the status page's last minutes, the access
 * line. For the record an exchange handed to its downstream's keep_log (downstream.h). */
void exchange_log_record(struct loop *l, const struct access_record *r, int route, int upstream);

/* Frees the allocations the loop keeps for its next exchanges (loop.h), if any: when the loop
 * is torn down, after its last exchange ended. */
void exchange_spare_free(struct loop *l);

#endif
