/*
 * upstream_int.h — an origin connection's private parts, shared by upstream.c (opening one: DNS,
 * connect, TLS handshake, the addresses of a name) and upstream_pool.c (the loop's pool of idle
 * ones): the connection's states and layout, the pools, and the state setter. Not a public
 * header: nothing else includes it; the rest of Portico sees upstream.h.
 */
#ifndef PORTICO_UPSTREAM_INT_H
#define PORTICO_UPSTREAM_INT_H

#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "portico/config.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/sock.h"
#include "portico/upstream.h"

struct upconn_addrs; /* upstream.c */
struct dns_tcp;      /* dns_tcp.h */

#define UPCONN_STATE_LIST(X)                                                                       \
    X(UC_OPENING, "opening")       /* created; the start runs from the loop */                    \
    X(UC_RESOLVING, "resolving")                                                                   \
    X(UC_CONNECTING, "connecting")                                                                 \
    X(UC_HANDSHAKE, "handshake")                                                                   \
    X(UC_ACTIVE, "active")         /* owned by an exchange */                                     \
    X(UC_SETTLING, "settling")     /* in the pool, released less than settle_time ago */         \
    X(UC_IDLE, "idle")             /* in the pool, settled */                                     \
    X(UC_CANCELLED, "cancelled")   /* aborted while the resolver still owes its callback */

enum upconn_state {
#define X(id, name) id,
    UPCONN_STATE_LIST(X)
#undef X
};

union upconn_sa {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

struct upconn {
    TAILQ_ENTRY(upconn) link;              /* settling or idle list of the pool */
    LIST_ENTRY(upconn) owner_link;         /* its owner's chain of the pool, when owner != 0 */
    struct loop *loop;                     /* borrowed */
    int upstream;
    int origin;
    const struct upstream_conf *up;        /* borrowed from the config */
    const struct origin_conf *oc;          /* borrowed from the config */
    enum upconn_state state;               /* changed by set_state only */
    evutil_socket_t fd;                    /* while connecting; then owned by sock */
    struct event io_ev;                    /* EV_WRITE while connecting */
    struct event defer_ev;                 /* the start, and results that must not be
                                              delivered inside a caller's call */
    struct evdns_getaddrinfo_request *dns_req;
    struct dns_tcp *dns_tcp;               /* the name asked over TCP (upstream.c: ASKED OVER
                                              TCP); cancelled by upconn_free */
    int udp_failure;                       /* the EAI error of the lookup asked over TCP */
    bool every_family;                     /* resolving again, without AI_ADDRCONFIG */
    int first_failure;                     /* the first round's EAI error while the second
                                              round runs; 0: none */
    uint64_t asked_us;                     /* when the current lookup was asked (now_us) */
    struct upconn_addrs *addrs;            /* a name's addresses until connected; NULL: a
                                              numeric origin */
    struct sock sock;                      /* once connected */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char addr_text[64];
    const struct upconn_events *ev;        /* borrowed */
    void *arg;
    unsigned requests;
    uint64_t released_us;                  /* when it last entered the pool */
    uint64_t owner;                        /* client connection that released it */
    uint64_t private_owner;                /* the one client connection that may take it
                                              (upconn_make_private); 0: any */
    int64_t acked_at_take;                 /* sock_bytes_acked when taken from the pool for a
                                              request that cannot be resent by its method; -1:
                                              not asked (upconn_request_unseen) */
};

TAILQ_HEAD(upconn_list, upconn);
LIST_HEAD(owner_chain, upconn);

/* Addresses of an upstream's origin names remembered as failed, per loop. */
#define ADDR_FAILURES_MAX 8
_Static_assert(CFG_MAX_ORIGINS <= 64, "upstream_pool.every_family has a bit per origin");

/* An address of an origin's name that failed to connect: until `until_us`, later connections
 * try the name's other addresses first (upstream.c: THE ADDRESSES OF A NAME). */
struct addr_failure {
    union upconn_sa a;
    int origin;                            /* its index in the upstream */
    uint64_t until_us;                     /* 0: a free slot */
};

struct upstream_pool {
    struct addr_failure failed[ADDR_FAILURES_MAX];
    /* Origins whose name gave more addresses asked for every family than for the host's own
     * families: they are asked for every family from then on, so that the failed addresses
     * remembered can be tried after the others (bit i: origin i). */
    uint64_t every_family;
    /* When each origin's name may be asked again for every family (µs; 0: now): a question
     * that found no other address, or none in time, is not asked again for down_time, so a
     * resolver that never answers AAAA costs a connect_timeout once per down_time, not on every
     * failed connect of an IPv4-only name. */
    uint64_t ask_again_at[CFG_MAX_ORIGINS];
    /* When each origin's name may be asked over TCP again (µs; 0: now): a lookup over TCP that
     * gave nothing better than the UDP failure (the nameserver failed there too, has no TCP, or
     * no answer came within a request's dns_timeout) is not repeated for down_time, so a name
     * that SERVFAILs costs a TCP exchange once per down_time, not per request, and a nameserver
     * that drops TCP a dns_timeout once, not on every request (upstream.c: ASKED OVER TCP). */
    uint64_t tcp_again_at[CFG_MAX_ORIGINS];
    struct upconn_list settling;           /* oldest release first */
    struct upconn_list idle;               /* settled; oldest release first */
    unsigned nsettling;
    unsigned nidle;
    /* Settling and idle connections by the client connection that released them (its
     * conn_id, sequential in a loop: the low bits spread them), newest release first: the same
     * client's next request finds its own connection without walking the pool (256 clients: 6%
     * of the CPU per request). */
    struct owner_chain *by_owner;
    uint64_t owner_mask;
};

struct upstream_pools {
    evutil_socket_t spare[2];              /* kept from failed connects: IPv4, IPv6; -1: none */
    int spare_rcvbuf[2];                   /* the origin_rcvbuf each was set with */
    unsigned nprivate;                     /* pooled connections private to a client
                                              (upstream_pool_owner_gone) */
    int n;
    struct upstream_pool pool[];
};

/* What the connections gauge calls each state. */
static const enum conn_state gauge_state[] = {
    [UC_OPENING] = CONN_HANDSHAKE, [UC_RESOLVING] = CONN_HANDSHAKE,
    [UC_CONNECTING] = CONN_HANDSHAKE, [UC_HANDSHAKE] = CONN_HANDSHAKE,
    [UC_ACTIVE] = CONN_ACTIVE, [UC_SETTLING] = CONN_IDLE, [UC_IDLE] = CONN_IDLE,
    [UC_CANCELLED] = CONN_HANDSHAKE,
};

/* The single setter, which keeps the gauge in step. */
static inline void set_state(struct upconn *c, enum upconn_state s)
{
    if (gauge_state[c->state] != gauge_state[s]) {
        metrics_conn_add(c->loop->metrics, CONN_UPSTREAM, gauge_state[c->state], -1);
        metrics_conn_add(c->loop->metrics, CONN_UPSTREAM, gauge_state[s], 1);
    }
    c->state = s;
}

/* Closes and frees c, which is in no pool list. */
void upconn_free(struct upconn *c);

/* Takes c (UC_SETTLING or UC_IDLE) out of its pool's lists. */
void upstream_pool_remove(struct upconn *c);

/* Says in the error log which upstreams' origin_rcvbuf the kernel cuts down (net.core.rmem_max,
 * silently): read back once from a socket of its own, which costs each upstream with a cap
 * three system calls per start or reload, and no origin connection any. Every socket of the
 * host is cut alike. */
void upconn_rcvbuf_check(const struct loop *l);

#endif
