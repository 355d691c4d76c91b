/*
 * listener.h — one listening socket of one worker: bound with SO_REUSEPORT, or taken over from
 * the previous worker group on a reload (the same descriptor, its queue included), accepting
 * into client connections of the worker's loop.
 */
#ifndef PORTICO_LISTENER_H
#define PORTICO_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "portico/client.h"

struct loop;
struct listener;

/* Listens on sa for loop l: on from's socket when from is given (a reload takes it over), else
 * on a new SO_REUSEPORT socket, with l's client_sndbuf (proxy and h2c listeners). tls and kind
 * say what its connections are, proxy_protocol that each begins with a PROXY header (read
 * before anything else: proxyproto.h); text is the address as configured (borrowed from l's config,
 * for messages). NULL after a message on stderr when it cannot listen. */
struct listener *listener_open(struct loop *l, struct listener *from, bool tls,
                               bool proxy_protocol, enum client_kind kind,
                               const struct sockaddr *sa, socklen_t salen, const char *text);

/* Listens on fd, a socket an upgrade handed over (upgrade.h) already listening on sa, its
 * queue included; the rest as listener_open. fd is the listener's (closed on failure too). */
struct listener *listener_adopt(struct loop *l, int fd, bool tls, bool proxy_protocol,
                                enum client_kind kind, const struct sockaddr *sa,
                                socklen_t salen, const char *text);

/* The listening socket (an upgrade hands it to the new process). */
int listener_fd(const struct listener *lis);

/* The old process of an upgrade: the new process serves the socket's queue, and listener_close
 * leaves the socket open for its worker to close a loop turn later (listener_given), once the
 * epoll changelist has dropped its registration: another process still holds the socket open,
 * and epoll drops a registration by itself only when the socket itself closes. */
void listener_disown(struct listener *lis);

/* Whether listener_disown gave the socket away. */
bool listener_given(const struct listener *lis);

/* Stops accepting and frees the listener; its socket is closed unless a newer group owns it. */
void listener_close(struct listener *lis);

/* Accepts what is queued on the socket when it closes with us (with SO_REUSEPORT each socket has
 * its own queue, and closing it would reset those connections). */
void listener_accept_queued(struct listener *lis);

/* Gives the socket to uid/gid (fchown), so that sockets bound later by that user may join its
 * SO_REUSEPORT group. 0, or -1 (errno). */
int listener_chown(struct listener *lis, uid_t uid, gid_t gid);
/* At a limit (max_connections; the admin listener's own): hold (stop accepting, new clients
 * wait in the kernel's backlog) or accept again. */
void listener_hold(struct listener *lis, bool hold);

/* What the listener's connections are: proxy, h2c or admin. */
enum client_kind listener_kind(const struct listener *lis);

/* Whether the listener is bound to sa. */
bool listener_is_on(const struct listener *lis, const struct sockaddr *sa, socklen_t salen);

/* A started group takes over the sockets it shares with the previous one: from now on this
 * listener closes the socket, the one it inherited it from does not, and the socket takes this
 * group's client_sndbuf (a group that does not start leaves the old one's sockets as they
 * were). */
void listener_take_over(struct listener *lis);

#endif
