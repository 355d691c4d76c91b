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
struct evconnlistener;
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
    struct evconnlistener *listeners[CFG_MAX_LISTEN];
    int nlisteners;
    pthread_t thread;
    struct upstream_pools *pools;          /* idle origin connections (upstream.c) */
    struct metrics *metrics;               /* this worker's shard (metrics.c) */
    struct client_list clients;            /* open client connections, for shutdown */
    uint64_t next_request;                 /* request counter, part of generated request ids */
    uint32_t id_salt;                      /* random per process: ids differ across restarts */
    struct event *stop_ev;                 /* reads stop_pipe: another thread asks us to stop */
    int stop_pipe[2];
};

/* Creates cfg->workers workers, binds their listeners (errors go to stderr) and starts their
 * threads. Returns 0, or -1 when a listener cannot be bound (nothing left running). */
int workers_start(const struct config *cfg);

/* Writes a new request id ("5f1c9a2e01000002a"): process salt, worker, counter. */
void worker_request_id(struct worker *w, char *buf, size_t size);

/* Asks every worker to stop, closes all connections, joins and frees them. */
void workers_stop(void);

#endif
