/*
 * client.h — one downstream connection: TLS handshake, reading request heads, keep-alive,
 * pipelining (one exchange at a time, answered in order), lingering close.
 */
#ifndef PORTICO_CLIENT_H
#define PORTICO_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

struct worker;
struct client;
struct bufferevent;

/* Takes ownership of an accepted socket. NULL (socket closed) when out of memory. */
struct client *client_new(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                          bool tls);

/* Marks a connection accepted on admin_listen: its requests are answered by admin.c. */
void client_set_admin(struct client *c);

/* The worker is draining: close its connections that are between requests now; the others
 * close after their current exchange. */
void clients_drain(struct worker *w);

/* Tears the connection down at once (exchange included). */
void client_free(struct client *c);

/* For the exchange: the connection's bufferevent, peer address and scheme. */
struct bufferevent *client_bev(struct client *c);
const char *client_peer(const struct client *c);     /* "127.0.0.1:50312" */
const char *client_ip(const struct client *c);       /* "127.0.0.1" */
bool client_is_tls(const struct client *c);

/* Called by the exchange when it is over (logged and freed). keep_alive: the connection can
 * serve the next request; otherwise it is flushed and closed. */
void client_exchange_done(struct client *c, bool keep_alive);

#endif
