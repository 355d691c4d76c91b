/*
 * waitset.h — an epoll of the worker's own for sockets that wait once, outside libevent.
 *
 * A client whose read at the accept found nothing waits here for its first bytes
 * (EPOLLIN | EPOLLRDHUP | EPOLLONESHOT) instead of in libevent's epoll: when it fires, the entry
 * disarms itself, and the close that ends the connection removes it, so no epoll_ctl DEL is
 * ever made for it. Entries are named by descriptor, and the waitset keeps which owner armed each:
 * an entry the close did not remove (another process held the descriptor, between a fork and
 * its exec) reports at most once, to no owner or to the descriptor's next one, which finds
 * nothing to read and waits again. libevent registers each descriptor it watched until an event_del reaches
 * epoll, which its changelist applies after our close (and which fails EBADF); it has no call
 * that forgets a descriptor without one. The waitset's own descriptor is one persistent event in
 * the worker's base (BENCHMARKS.md, epollown).
 */
#ifndef PORTICO_WAITSET_H
#define PORTICO_WAITSET_H

#include <event2/event.h>
#include <stdbool.h>

struct waitset;

/* Called, from the waitset's event, once for each armed entry that became ready; arg is the
 * one given to waitset_arm. */
typedef void waitset_ready(void *arg);

/* A waitset on base whose entries are reported to ready: NULL when out of memory or
 * descriptors. */
struct waitset *waitset_new(struct event_base *base, waitset_ready *ready);

/* Frees ws (NULL is fine). Entries still armed are forgotten with its descriptor. */
void waitset_free(struct waitset *ws);

/* Arms fd for one report of readability, a hang-up or an error, to arg: added the first time,
 * modified (rearmed) when known (a fired entry stays registered, disarmed, until fd's close). 0,
 * or -1 with errno when epoll refused it or no memory was left for the owner's place. */
int waitset_arm(struct waitset *ws, int fd, void *arg, bool known);

/* fd, still armed, is about to close: its report, if one comes, goes to no owner. No system
 * call: the close removes the entry. */
void waitset_forget(struct waitset *ws, int fd);

#endif
