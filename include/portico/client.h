/*
 * client.h — one HTTP/1.1 client connection: TLS handshake, reading request heads, keep-alive,
 * pipelining (one exchange at a time, answered in order, the next head parsed only once the
 * previous answer left our memory), lingering close. It implements the downstream interface of
 * its exchange (downstream.h).
 */
#ifndef PORTICO_CLIENT_H
#define PORTICO_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct client;

/* What a listening socket accepts: proxied traffic, or the admin endpoint. */
enum client_kind {
    CLIENT_PROXY,
    CLIENT_H2C,       /* proxied traffic in cleartext HTTP/2 with prior knowledge */
    CLIENT_ADMIN,
};

/* Takes ownership of an accepted socket (closed here on failure). tls: terminate TLS with the
 * configuration's server context. A plain client's first bytes are read in this loop turn, not
 * after epoll says so (most clients send at once); a TLS one's only when deferred: the listener
 * defers accepts (defer_accept), so they are most likely there already. NULL when out of
 * memory. */
struct client *client_new(struct loop *l, int fd, const struct sockaddr *sa, bool tls,
                          enum client_kind kind, bool deferred);

/* The same for a connection accepted at accepted_us (event_now_us) and read since by someone
 * else (a PROXY header, proxyproto.h): its first head (or TLS handshake) is due
 * client_header_timeout after then; sa is whom it is from. */
struct client *client_new_at(struct loop *l, int fd, const struct sockaddr *sa, bool tls,
                             enum client_kind kind, bool deferred, uint64_t accepted_us);

/* The loop is draining: close its connections that are between requests now; the others
 * close after their current exchange. */
void clients_drain(struct loop *l);

/* Closes every client connection of the loop at once (exchanges included, logged as 499);
 * those still reading a PROXY header are proxyproto_close_all's. */
void clients_close_all(struct loop *l);

#endif
