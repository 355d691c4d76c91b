/*
 * upstream.h — connections to origins: origin choice with passive health, DNS (evdns), TCP
 * connect, TLS handshake, and the per-worker keep-alive pool.
 *
 * Opening a connection walks dns → connect → tls and reports each phase to the caller, who owns
 * the timers (the exchange arms one timer per phase and calls upconn_abort on expiry). Once
 * ready, the caller owns the bufferevent's callbacks until it gives the connection back with
 * upconn_release or closes it with upconn_abort.
 */
#ifndef PORTICO_UPSTREAM_H
#define PORTICO_UPSTREAM_H

#include <stdbool.h>

#include "portico/failure.h"

struct worker;
struct upconn;
struct bufferevent;
struct upstream_conf;

struct upconn_events {
    void (*on_phase)(void *arg, enum phase phase);                  /* entering dns/connect/tls */
    void (*on_ready)(void *arg);                                    /* connected (+ handshake) */
    void (*on_error)(void *arg, enum cause cause, const char *detail); /* the phase failed */
};

/* Creates the pools of a worker (one per upstream of its config). 0 or -1. */
int upstream_pools_init(struct worker *w);

/* Closes every idle connection and frees the pools. */
void upstream_pools_free(struct worker *w);

/* Picks an origin of upstream `up` (round robin over origins not marked down). Returns its index,
 * or -1 when every origin is marked down (no_healthy_origin). */
int upstream_pick(const struct upstream_conf *up);

/* Records the outcome of an exchange with an origin for passive health: a network failure counts
 * toward max_fails, a success clears the count. */
void upstream_report(const struct upstream_conf *up, int origin, bool network_failure);

/* An idle pooled connection to (upstream, origin), or NULL. The caller sets the callbacks. */
struct upconn *upconn_take_idle(struct worker *w, int upstream, int origin);

/* Starts opening a connection; events arrive through ev with arg. on_phase may be called before
 * this returns (to say where it starts); on_ready and on_error never are. NULL when out of
 * memory. */
struct upconn *upconn_open(struct worker *w, int upstream, int origin,
                           const struct upconn_events *ev, void *arg);

/* Gives a healthy connection with nothing in flight back to the pool (or closes it if the pool
 * is full). Its callbacks are replaced; the caller must forget it. */
void upconn_release(struct upconn *c);

/* Closes and frees the connection in whatever phase it is (pending DNS is cancelled). */
void upconn_abort(struct upconn *c);

/* The connection's bufferevent (valid once ready). */
struct bufferevent *upconn_bev(struct upconn *c);

/* "127.0.0.1:3000": the address actually used (after DNS), or the origin as configured. */
const char *upconn_addr(const struct upconn *c);

/* True when the connection came from the pool (a failure before any response byte may be
 * retried on a fresh connection). */
bool upconn_reused(const struct upconn *c);

/* Number of requests already sent on this connection. Incremented by upconn_mark_used. */
unsigned upconn_requests(const struct upconn *c);
void upconn_mark_used(struct upconn *c);

#endif
