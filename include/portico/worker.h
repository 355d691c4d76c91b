/*
 * worker.h — worker threads. Each worker has its own event loop (struct loop: event_base,
 * evdns_base, upstream pools, metrics shard) and listening sockets (SO_REUSEPORT, so the kernel
 * spreads connections): nothing on the request path is shared between threads except the
 * immutable configuration and the generation's atomics.
 */
#ifndef PORTICO_WORKER_H
#define PORTICO_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct generation;

/* The workers serving one configuration generation. A reload starts a new group beside the old
 * one and drains the old. */
struct worker_group;

/* Creates the generation's workers, binds their listeners (errors go to stderr) and starts their
 * threads. Worker i shares prev's sockets for each address both listen on (prev may be NULL),
 * so that a reload never closes a socket with connections queued. Returns the group, or NULL
 * when a listener cannot be bound or a thread cannot start (nothing left running, prev
 * untouched). */
struct worker_group *workers_start(struct generation *gen, struct worker_group *prev);

/* The two halves of workers_start, for a start that drops privileges in between: the workers
 * are set up and their sockets bound (queueing connections), but no thread runs yet. */
struct worker_group *workers_bind(struct generation *gen, struct worker_group *prev);

/* Starts the threads of a bound group. 0, or -1 (the group is then freed, nothing runs). */
int workers_run(struct worker_group *g);

/* Gives the group's listening sockets to uid/gid, before the process switches to them: a later
 * reload (as that user) can then add SO_REUSEPORT sockets to the same addresses, which Linux
 * allows only to the owner of the sockets already there. 0, or -1 (errno). */
int workers_chown(struct worker_group *g, uid_t uid, gid_t gid);

/* The listening sockets of a running group (every SO_REUSEPORT socket of every worker, the
 * admin one included), for an upgrade to hand over: their count, stored in out, or -1 when
 * there are more than max. Called by the main thread while the group serves (the workers
 * change their listeners only when they stop). */
int workers_listen_fds(const struct worker_group *g, int *out, int max);

/* The old process of an upgrade, before the group drains: its listeners on fds[0..n) leave
 * their sockets (and queues) to the new process and do not close them (listener_disown); the
 * others (addresses the new process dropped) take their queues and close as at a stop. */
void workers_disown(struct worker_group *g, const int *fds, int n);

/* Stops a group and frees it. drain_ms = 0: close every connection now. Otherwise stop
 * accepting, close idle connections, let exchanges in flight finish (their connections close
 * afterwards) for at most drain_ms, then close what is left. Blocks until the threads ended. */
void workers_stop(struct worker_group *g, uint64_t drain_ms);

/* Asks the workers of a group to stop (drain_ms as for workers_stop) without waiting. A group
 * already draining stops at once when asked again with 0, and sooner when asked again with a
 * drain_ms that ends before its own. */
void workers_signal_stop(struct worker_group *g, uint64_t drain_ms);

/* Waits (at most timeout_ms) until every worker of a group asked to stop has closed its
 * listeners, so that new connections reach only the other group. 0, or -1 on timeout. */
int workers_wait_unlistened(struct worker_group *g, int timeout_ms);

/* systemd's watchdog (watchdog.h), main thread only: whether every worker of g still running
 * (serving or draining) has turned its loop within stale_us of now. A worker found stuck is
 * logged once per stall, with how long its loop has stood, and once more when it turns again;
 * the first one stuck is described in why[size] for systemd's STATUS= (why untouched when all
 * turn). Always true while the watchdog is off. */
bool workers_turning(struct worker_group *g, uint64_t now, uint64_t stale_us, char *why,
                     size_t size);

/* Waits for the threads of a group that was asked to stop; then workers_free frees it. The
 * two halves of workers_stop, for a drain that runs in its own thread. */
void workers_join(struct worker_group *g);
void workers_free(struct worker_group *g);

#endif
