/*
 * loop.h — what the request path needs of the thread it runs on, and nothing more: the event
 * base, the resolver, the configuration generation with its shared runtime state, this thread's
 * metrics shard and keep-alive pools, request ids, and whether the thread is draining.
 *
 * A leaf of the runtime layer: client, upstream and exchange include it instead of worker.h, so
 * the worker (process layer) sits above them and nothing calls up into it except through the
 * on_idle hook it installs.
 */
#ifndef PORTICO_LOOP_H
#define PORTICO_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "portico/trace.h"

struct deadline_clock;
struct waitset;
struct evdns_base;
struct config;
struct generation;
struct metrics;
struct upstream_pools;
struct log_buffer;
struct recent;
struct client;
struct mirror_set;

TAILQ_HEAD(client_list, client);
struct pp_wait;
TAILQ_HEAD(pp_wait_list, pp_wait);

/* Ended exchanges' allocations a loop keeps for the next ones: about as many as it has requests
 * in flight at once, so a burst over several connections reuses them too (exchange.c). */
#define LOOP_SPARE_EXCHANGES 16

/* The worker's lifecycle: serving; finishing what is in flight (accepting nothing, keep-alive
 * off, pooled connections closed); tearing everything down. */
#define LOOP_STATE_LIST(X)                                                                         \
    X(LOOP_RUNNING, "running")                                                                     \
    X(LOOP_DRAINING, "draining")                                                                   \
    X(LOOP_STOPPING, "stopping")

enum loop_state {
#define X(id, name) id,
    LOOP_STATE_LIST(X)
#undef X
};

struct loop {
    struct event_base *base;           /* owned by the worker */
    struct waitset *first_wait;        /* owned by the worker: clients whose read at the accept
                                          missed (sock_read_now); NULL: they wait in libevent */
    struct evdns_base *dns;            /* owned by the worker */
    uint64_t dns_attempt_us;           /* how long evdns waits for a lookup's answer */
    unsigned dns_tcp_inflight;         /* names asked over TCP under way (dns_tcp.h) */
    struct deadline_clock *clock;      /* owned by the worker: every deadline on this loop */
    const struct config *cfg;          /* borrowed: gen's configuration */
    struct generation *gen;            /* borrowed: outlives the worker */
    struct metrics *metrics;           /* this thread's shard, owned by the worker */
    struct log_buffer *log;            /* this thread's access-log buffer, owned by the worker */
    struct recent *recent;             /* this thread's last minutes (recent.h), owned likewise */
    struct trace_rng rng;              /* trace and span ids */
    struct upstream_pools *pools;      /* idle origin connections (upstream_pool.c) */
    struct wakebox *wakebox;           /* owned: work posted by other workers (a slot handed
                                          over, exchange_queue.c); made at its first use */
    enum loop_state state;             /* changed by the worker only */
    int id;                            /* worker index, part of request ids */
    uint32_t id_salt;                  /* random per worker group: ids differ across restarts */
    uint64_t next_request;             /* request counter, part of request ids */
    uint64_t next_conn;                /* client connection counter (peer conn_id) */
    struct client_list clients;        /* open client connections (client.c) */
    struct client_list idle;           /* those idle between requests, longest idle first */
    struct pp_wait_list proxy_waiting; /* accepted, their PROXY header not all in yet
                                          (proxyproto.c): counted in conns too */
    unsigned conns;                    /* how many */
    unsigned admin_conns;              /* of them, the admin listener's (max_connections) */
    unsigned conns_peak;               /* most at once since the worker last trimmed the heap */
    void (*on_idle)(struct loop *l);   /* draining and the last connection closed */
    void (*on_conns)(struct loop *l);  /* conns changed (max_connections); NULL: no one asks */
    struct {                           /* owned: ended exchanges' allocations, kept for the */
        void *p;                       /* next ones (exchange.c); freed by exchange_spare_free */
        size_t size;
    } spare_exchange[LOOP_SPARE_EXCHANGES];
    unsigned spare_exchanges;          /* how many are kept */
    void *spare_fault;                 /* owned: an ended fault's allocation, kept for the next
                                          (fault_exec.c); freed by exchange_spare_free */
    unsigned h2_streams;               /* HTTP/2 streams open on this loop (h2_stream.c) */
    unsigned h2_streams_peak;          /* most at once since the worker last trimmed the heap */
    struct mirror_set *mirror;         /* owned: mirror requests under way, sampling (mirror.h);
                                          NULL: none made on this loop */
};

/* Writes a new request id ("5f1c9a2e0100000000002a": salt, worker, a 48-bit counter) into buf
 * (>= 23 bytes; cut to size otherwise). */
void loop_request_id(struct loop *l, char *buf, size_t size);

/* Client connections opening and closing: the count lets a draining worker end when it is 0. */
void loop_conn_opened(struct loop *l);
void loop_conn_closed(struct loop *l);

/* Creates l->dns on l->base for l->cfg: its `resolver` (else resolv.conf), /etc/hosts, and
 * evdns's own timeout (l->dns_attempt_us) at 9/10 of the longest dns_timeout. 0, or -1 (a
 * message on stderr for a resolver it cannot use). */
int loop_dns_init(struct loop *l);

/* Name of a state, for logs. */
const char *loop_state_name(enum loop_state s);

#endif
