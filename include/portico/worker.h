/*
 * worker.h — worker threads. Each worker has its own event_base, evdns_base, listening sockets
 * (SO_REUSEPORT, so the kernel spreads connections), upstream pools and metrics shard: nothing
 * on the request path is shared between threads except the immutable config and atomics.
 */
#ifndef PORTICO_WORKER_H
#define PORTICO_WORKER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "portico/config.h"

struct event_base;
struct evdns_base;
struct listener_ctx;
struct event;
struct metrics;
struct upstream_pools;
struct client;

TAILQ_HEAD(client_list, client);

struct worker {
    int id;
    struct event_base *base;
    struct evdns_base *dns;
    const struct config *cfg;              /* borrowed; outlives the worker */
    struct listener_ctx **listeners;       /* one per socket: an address can have several */
    int nlisteners, caplisteners;
    pthread_t thread;
    struct upstream_pools *pools;          /* idle origin connections (upstream.c) */
    struct metrics *metrics;               /* this worker's shard (metrics.c) */
    struct client_list clients;            /* open client connections, for shutdown */
    uint64_t next_request;                 /* request counter, part of generated request ids */
    uint32_t id_salt;                      /* random per process: ids differ across restarts */
    struct event *stop_ev;                 /* reads stop_pipe: another thread asks us to stop */
    int stop_pipe[2];
    struct worker_group *group;            /* told when our listeners are closed */
    bool unlistened;                       /* listeners closed, group told */
    bool draining;                         /* finishing in-flight exchanges, accepting nothing */
    struct event *drain_timer;             /* drain deadline: then everything is closed */
};

/* The workers serving one configuration. A reload starts a new group beside the old one and
 * drains the old. */
struct worker_group;

/* Creates cfg->workers workers, binds their listeners (errors go to stderr) and starts their
 * threads. Worker i shares prev's worker i socket for each address both listen on (prev may be
 * NULL), so that a reload never closes a socket with connections queued. Returns the group, or
 * NULL when a listener cannot be bound (nothing left running, prev untouched). */
struct worker_group *workers_start(const struct config *cfg, struct worker_group *prev);

/* Stops a group and frees it. drain_ms = 0: close every connection now. Otherwise stop
 * accepting, close idle connections, let exchanges in flight finish (their connections close
 * afterwards) for at most drain_ms, then close what is left. Blocks until the threads ended. */
void workers_stop(struct worker_group *g, uint64_t drain_ms);

/* Asks the workers of a group to stop (drain_ms as for workers_stop) without waiting: a group
 * already draining stops at once when asked again with 0. */
void workers_signal_stop(struct worker_group *g, uint64_t drain_ms);

/* Waits (at most timeout_ms) until every worker of a group asked to stop has closed its
 * listeners, so that new connections reach only the other group. 0, or -1 on timeout. */
int workers_wait_unlistened(struct worker_group *g, int timeout_ms);

/* Waits for the threads of a group that was asked to stop; then workers_free frees it. The
 * two halves of workers_stop, for a drain that runs in its own thread. */
void workers_join(struct worker_group *g);
void workers_free(struct worker_group *g);

/* Writes a new request id ("5f1c9a2e01000002a"): process salt, worker, counter. */
void worker_request_id(struct worker *w, char *buf, size_t size);

/* Called by client_free: a draining worker ends once its last connection is gone. */
void worker_client_gone(struct worker *w);

#endif
