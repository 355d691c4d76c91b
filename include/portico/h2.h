/*
 * h2.h — HTTP/2 client connections (RFC 9113) on nghttp2: one server session per connection,
 * each stream an exchange (downstream.h), the request translated to HTTP/1.1 (h2_request.h) and
 * checked by Portico's own parser, the response streamed as DATA within the client's flow-control
 * windows, request bodies let in only as fast as they leave for the origin. Floods (rapid reset,
 * control frames, CONTINUATION, acknowledgements piling up, windows kept shut) end the
 * connection with GOAWAY and are counted.
 *
 * The connection belongs to client.c, which accepts it, completes the TLS handshake and hands
 * the sock over when ALPN chose h2 (or on an h2c listener). From then on the sock's events come
 * here; when the connection is over, h2 tells its owner through done(), last of all, from one of
 * its own callbacks: the owner frees it (h2_free) and closes the sock its own way.
 */
#ifndef PORTICO_H2_H
#define PORTICO_H2_H

#include <stdbool.h>
#include <stdint.h>

#include "portico/sock.h"

struct loop;
struct peer;
struct h2_conn;

/* The owner of the connection. done() ends HTTP/2 on it: the owner calls h2_free, takes its sock
 * back (sock_set_cb) and flushes what is queued before it closes. lost(): the sock reported the
 * client gone (EOF, error, write timeout): the owner closes it at once (h2_free included).
 * idle_changed(): h2_idle() changed (told before done(), never from h2_free). */
struct h2_owner {
    void (*done)(void *arg, const char *why);
    void (*lost)(void *arg, enum sock_event ev);
    void (*idle_changed)(void *arg);
    void *arg;
};

/* Starts HTTP/2 on s (open: TLS done, or plain), whose input may already hold the client's
 * preface, with the limits of l's configuration. s and peer are borrowed for the connection's
 * life; the sock's events come here from now on. accepted_us: when the connection was accepted,
 * from which its SETTINGS ACK and first request are due within client_header_timeout (a TLS
 * handshake is part of that wait). NULL when out of memory (s untouched). */
struct h2_conn *h2_start(struct loop *l, struct sock *s, const struct peer *peer,
                         const struct h2_owner *owner, uint64_t accepted_us);

/* Frees the connection: exchanges still running are cancelled (logged as 499 with why). The sock
 * is left to the owner. */
void h2_free(struct h2_conn *h, const char *why);

/* The worker drains: GOAWAY with the last stream id taken; the streams in flight finish, then
 * the connection ends (done()). A connection that has sent no request yet gets to send one
 * (within client_header_timeout), and frames that have arrived are taken first. */
void h2_drain(struct h2_conn *h);

/* How many of its streams are WebSocket tunnels (RFC 8441), for the worker's line when a stop
 * cuts them. */
size_t h2_tunnels(const struct h2_conn *h);

/* Idle between requests: a stream was taken, none is open and the connection is not ending. Such
 * a connection may give way to a new client at max_connections (h2_reclaim). */
bool h2_idle(const struct h2_conn *h);

/* An idle connection gives way to a new client: GOAWAY (no error, the last stream taken), then
 * done(), from this call. */
void h2_reclaim(struct h2_conn *h, const char *why);

#endif
