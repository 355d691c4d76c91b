/*
 * metrics.h — counters declared once (X-macro), one shard per worker thread, summed when the
 * admin endpoint renders the Prometheus exposition. Writers touch only their own shard, with
 * relaxed atomics, so the request path never contends.
 */
#ifndef PORTICO_METRICS_H
#define PORTICO_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "portico/failure.h"

struct evbuffer;

/* Plain counters: id, name, help. */
#define METRIC_LIST(X)                                                                             \
    X(M_CONNECTIONS, "portico_client_connections_total", "Client connections accepted")           \
    X(M_TLS_HANDSHAKE_FAILURES, "portico_client_tls_handshake_failures_total",                    \
      "Client TLS handshakes that failed")                                                         \
    X(M_REQUESTS, "portico_requests_total", "Requests received (complete heads)")                 \
    X(M_CLIENT_ABORTS, "portico_client_aborts_total",                                              \
      "Exchanges ended because the client went away (logged as 499)")                              \
    X(M_UPSTREAM_CONNECTS, "portico_upstream_connects_total", "New connections opened to origins") \
    X(M_UPSTREAM_REUSED, "portico_upstream_reused_total",                                          \
      "Requests sent on a pooled keep-alive connection")                                           \
    X(M_UPSTREAM_UNSOLICITED, "portico_upstream_unsolicited_total",                                \
      "Pooled origin connections closed because the origin sent bytes no request asked for")      \
    X(M_UPSTREAM_RETRIES, "portico_upstream_retries_total",                                        \
      "Requests resent on a fresh connection after a pooled one turned out closed")                \
    X(M_ABORTED_AFTER_HEAD, "portico_responses_aborted_total",                                     \
      "Responses cut short after their head was forwarded")                                        \
    X(M_INTERIM_RELAYED, "portico_interim_relayed_total", "1xx responses relayed from origins")   \
    X(M_INTERIM_DROPPED, "portico_interim_dropped_total",                                          \
      "1xx responses from origins not relayed (HTTP/1.0 client, duplicate hints)")                 \
    X(M_CONTINUE_SENT, "portico_continue_synthesized_total", "100 Continue sent by Portico")      \
    X(M_PROCESSING_SENT, "portico_processing_synthesized_total",                                   \
      "102 Processing heartbeats sent by Portico")                                                 \
    X(M_EARLY_HINTS_SENT, "portico_early_hints_synthesized_total",                                 \
      "103 Early Hints sent by Portico (configured or learned)")

enum metric_id {
#define X(id, name, help) id,
    METRIC_LIST(X)
#undef X
    METRIC_COUNT
};

struct metrics {
    _Atomic uint64_t counters[METRIC_COUNT];
    _Atomic uint64_t status[1000];              /* responses sent to clients, by status */
    _Atomic uint64_t failures[FAILURE_COUNT];   /* upstream failures, by failure type */
    _Atomic int64_t active_connections;
};

/* Allocates a zeroed shard for one worker (registered for rendering). NULL on failure. */
struct metrics *metrics_shard_new(void);

/* A worker is gone (its group freed after a reload): folds its counts into the process totals
 * and frees its shard, so that reloads do not pile up shards. NULL is a no-op. */
void metrics_shard_retire(struct metrics *m);

/* Frees every shard (at shutdown, after the workers stopped). */
void metrics_free_all(void);

/* Adds n to a counter of shard m. */
static inline void metrics_add(struct metrics *m, enum metric_id id, uint64_t n)
{
    atomic_fetch_add_explicit(&m->counters[id], n, memory_order_relaxed);
}

/* Counts one response sent with status, and the failure type that produced it (FAIL_NONE ok). */
void metrics_response(struct metrics *m, int status, enum failure_type failure);

/* Renders every shard summed in Prometheus text format into out. */
void metrics_render(struct evbuffer *out);

#endif
