/*
 * upstream.h — connections to origins: DNS (evdns), TCP connect, TLS handshake (upstream.c), and
 * the per-worker keep-alive pool (upstream_pool.c).
 *
 * Opening a connection walks dns → connect → tls and reports each phase to the caller, who owns
 * the timers (the exchange arms one timer per phase and calls upconn_abort on expiry). Every
 * report comes from the event loop, never from inside upconn_open. Once ready, the caller owns
 * the connection's sock (its callback included) until it gives the connection back with
 * upconn_release or closes it with upconn_abort.
 */
#ifndef PORTICO_UPSTREAM_H
#define PORTICO_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"

struct loop;
struct upconn;
struct sock;

struct upconn_events {
    void (*on_phase)(void *arg, enum phase phase);                  /* entering dns/connect/tls */
    void (*on_ready)(void *arg);                                    /* connected (+ handshake) */
    void (*on_error)(void *arg, enum cause cause, const char *detail); /* the phase failed */
    /* The connect moves on to another address of the origin's name, the last one having failed
     * (why: how, "connect to 127.0.0.1:3000 failed: Connection refused"): the connect phase goes
     * on, with a fresh connect_timeout. why NULL: the name is being asked again for its other
     * addresses, within a fresh connect_timeout too; a move is announced if it finds one. The
     * member may be NULL: nothing to do. */
    void (*on_next_address)(void *arg, const char *why);
};

/* Creates the pools of a loop (one per upstream of its config). 0 or -1. */
int upstream_pools_init(struct loop *l);

/* Closes every idle connection and frees the pools. */
void upstream_pools_free(struct loop *l);

/* Closes every idle connection now, and the sockets kept from failed connects (a draining
 * worker keeps none). */
void upstream_pools_close_idle(struct loop *l);

/* Closes the idle and settling connections to origins in maint (the admin API): each worker's
 * tick (LOG_FLUSH_MS) calls it, so they are closed within a second of the change. */
void upstream_pools_close_maint(struct loop *l);

/* An idle pooled connection to (upstream, origin), or NULL: the one the client connection owner
 * released (owner 0: none, for a request that was pipelined), else the oldest that has settled
 * (see upstream_pool.c on stray bytes). resendable: the request may be sent again on a fresh
 * connection if this one proves stale; if not, the kernel is asked whether the origin closed it.
 * now_us: the monotonic clock. The caller sets the callback. */
struct upconn *upconn_take_idle(struct loop *l, int upstream, int origin, uint64_t owner,
                                bool resendable, uint64_t now_us);

/* Whether upconn_take_idle would give a connection now, leaving it pooled (a simulated failure
 * walks the phases a real exchange would: none before SEND on a pooled connection). */
bool upconn_idle_ready(struct loop *l, int upstream, int origin, uint64_t owner, bool resendable,
                       uint64_t now_us);

/* Starts opening a connection; events arrive through ev with arg, always from the loop. NULL
 * when out of memory. */
struct upconn *upconn_open(struct loop *l, int upstream, int origin,
                           const struct upconn_events *ev, void *arg);

/* Gives a healthy connection with nothing in flight back to the pool (or closes it if the pool
 * is full or the loop is draining, or counts, logs and closes it if the origin sent bytes past
 * the response), released by client connection owner at now_us (0: by no one, so it settles
 * for everyone). Its callback is replaced; the caller must forget it. */
void upconn_release(struct upconn *c, uint64_t owner, uint64_t now_us);

/* Closes and frees the connection in whatever phase it is (pending DNS is cancelled). */
void upconn_abort(struct upconn *c);

/* connect_timeout ended the connect to one address of the origin's name: true when the name's
 * next address is tried (on_next_address, then the usual events, from the loop), or, while the
 * name was being asked again for its other addresses, the last address's own failure is
 * reported (on_error); the caller waits for that. false: no other address is left, the timeout
 * is the attempt's failure. */
bool upconn_connect_next(struct upconn *c);

/* Appends "; 2 of 3 addresses of NAME tried" to the detail buf[len] (size in all) of a connect
 * failure, when the origin's name had more than one address; nothing when it does not fit.
 * The new length. */
size_t upconn_tried_note(const struct upconn *c, char *buf, size_t size, size_t len);

/* The words for a failed lookup of host's getaddrinfo error (0: an answer without addresses),
 * the same for a real failure and a simulated one: "no such name (NXDOMAIN)", "no address" ...;
 * for a name of one label, why no search domain completed it. */
const char *upconn_dns_error_text(int eai, const char *host);

/* While a name is asked again for every family: the failure the resolver gave the first round
 * (upconn_dns_error_text's words), which a timeout of that second round reports; else NULL. */
const char *upconn_dns_failure(const struct upconn *c);

/* The owner's timer ended the lookup. While the name is asked over TCP after a UDP answer that
 * may have been truncated: appends to the detail buf[len] (size in all) " over TCP (no answer
 * from 127.0.0.1:53; ...)" (nothing when it does not fit) and ends that lookup; with in_vain (the
 * timer was a request's dns_timeout, not a health check's timeout, which may be shorter than
 * the nameserver takes) the name is not asked over TCP again for down_time. Nothing otherwise.
 * The new length. */
size_t upconn_dns_timeout(struct upconn *c, bool in_vain, char *buf, size_t size, size_t len);

/* The connection's sock (valid once ready). */
struct sock *upconn_sock(struct upconn *c);

/* "127.0.0.1:3000": the address actually used (after DNS), or the origin as configured. */
const char *upconn_addr(const struct upconn *c);

/* Requests sent on this connection so far, the current one included once upconn_mark_used was
 * called: above 1, the connection came from the pool. */
unsigned upconn_requests(const struct upconn *c);

/* A pooled connection taken for a request its method does not let go again (upconn_take_idle
 * with resendable false), and closed by the origin: whether the origin's kernel had acknowledged
 * none of the bytes written since. An origin that read the request and closed acknowledged it
 * with its FIN (sent only once all it received was read; a close with bytes unread is a reset).
 * None acked: the origin closed before the request reached it, or with it unread in its buffer
 * (an idle timeout meeting the request), and it may go again, whatever its method. The one
 * case left: an origin that read a part of it while its kernel delayed the acknowledgement,
 * then closed on the rest, a wager every browser and curl make on any reused connection. */
bool upconn_request_unseen(const struct upconn *c);
void upconn_mark_used(struct upconn *c);

/* Binds c to one client connection (owner, its conn_id) for good: the origin authenticates the
 * connection itself (NTLM, Negotiate), so no other client may take it from the pool. */
void upconn_make_private(struct upconn *c, uint64_t owner);

/* The client connection owner (its conn_id) ended: the pooled connections private to it
 * (upconn_make_private) are closed, as HAProxy kills a session's private connections with it.
 * Nobody else could take them; kept, they held an authenticated origin connection open until
 * keepalive_timeout. Nothing to do, and no walk, while the loop pools none. */
void upstream_pool_owner_gone(struct loop *l, uint64_t owner);

/* Idle pooled connections of a loop, for metrics. */
size_t upstream_pools_idle(const struct loop *l);

/* Idle pooled connections (settling ones included) of one upstream, by index in the loop's
 * configuration; 0 for none. */
size_t upstream_pool_idle(const struct loop *l, int upstream);

#endif
