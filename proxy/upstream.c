/*
 * upstream.c — origin connections: choice, DNS, connect, TLS handshake, keep-alive pool.
 *
 * A connection walks RESOLVING → CONNECTING → HANDSHAKE → ACTIVE, and between requests IDLE
 * in its worker's pool. The caller (the exchange) owns the phase timers; this module only
 * reports where it is and what went wrong, with a cause the failure table understands. Connect
 * is done by hand (non-blocking connect + EV_WRITE) rather than through bufferevent_socket_connect
 * so that the TCP and TLS phases are distinct and the TLS bufferevent is created on an already
 * connected socket.
 */
#include "portico/upstream.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/sim.h"
#include "portico/tls.h"
#include "portico/util.h"
#include "portico/worker.h"

#define UPSTREAM_NOTSENT_LOWAT (1024 * 1024) /* unsent bytes the kernel queues for an origin */

#define UPCONN_STATE_LIST(X)                                                                       \
    X(UC_NEW, "new")                                                                               \
    X(UC_RESOLVING, "resolving")                                                                   \
    X(UC_CONNECTING, "connecting")                                                                 \
    X(UC_HANDSHAKE, "handshake")                                                                   \
    X(UC_ACTIVE, "active")                                                                         \
    X(UC_IDLE, "idle")

enum upconn_state {
#define X(id, name) id,
    UPCONN_STATE_LIST(X)
#undef X
};

struct upconn {
    TAILQ_ENTRY(upconn) link;              /* idle list of the pool */
    struct worker *w;                      /* borrowed */
    int upstream;
    int origin;
    const struct upstream_conf *up;        /* borrowed from the config */
    const struct origin_conf *oc;          /* borrowed from the config */
    enum upconn_state state;
    evutil_socket_t fd;                    /* while connecting; then owned by bev */
    struct event io_ev;                    /* EV_WRITE while connecting */
    struct event defer_ev;                 /* delivers results that were ready too early */
    struct event idle_timer;               /* keepalive_timeout while idle */
    struct evdns_getaddrinfo_request *dns_req;
    bool in_open;                          /* inside upconn_open: callbacks must be deferred */
    bool dead;                             /* aborted while a DNS callback is still owed */
    struct bufferevent *bev;
    SSL *ssl;                              /* owned by bev once it exists */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char addr_text[64];
    const struct upconn_events *ev;        /* borrowed */
    void *arg;
    enum cause deferred_cause;             /* CAUSE_NONE: deferred success */
    char deferred_detail[160];
    bool reused;
    unsigned requests;
};

TAILQ_HEAD(upconn_list, upconn);

struct upstream_pool {
    struct upconn_list idle;
    unsigned nidle;
};

struct upstream_pools {
    int n;
    struct upstream_pool pool[];
};

static void start_connect(struct upconn *c);
static void upconn_free(struct upconn *c);

/* ---- origin choice and passive health ---- */

static bool origin_down(const struct upstream_conf *up, const struct origin_conf *o, uint64_t now)
{
    if (up->max_fails == 0)
        return false;
    return atomic_load_explicit(&o->fails, memory_order_relaxed) >= up->max_fails &&
           now < atomic_load_explicit(&o->down_until_ms, memory_order_relaxed);
}

int upstream_pick(const struct upstream_conf *up)
{
    struct upstream_conf *mut = (struct upstream_conf *)(uintptr_t)up; /* rr is runtime state */
    unsigned start = atomic_fetch_add_explicit(&mut->rr, 1, memory_order_relaxed);
    uint64_t now = up->max_fails ? now_us() / 1000 : 0;
    for (int i = 0; i < up->norigins; i++) {
        int o = (int)((start + (unsigned)i) % (unsigned)up->norigins);
        if (!origin_down(up, &up->origins[o], now))
            return o;
    }
    return -1;
}

void upstream_report(const struct upstream_conf *up, int origin, bool network_failure)
{
    if (up->max_fails == 0 || origin < 0 || origin >= up->norigins)
        return;
    struct origin_conf *o = (struct origin_conf *)(uintptr_t)&up->origins[origin];
    if (!network_failure) {
        atomic_store_explicit(&o->fails, 0, memory_order_relaxed);
        return;
    }
    unsigned fails = atomic_fetch_add_explicit(&o->fails, 1, memory_order_relaxed) + 1;
    if (fails >= up->max_fails) {
        atomic_store_explicit(&o->down_until_ms, now_us() / 1000 + up->fail_timeout_ms,
                              memory_order_relaxed);
        if (fails == up->max_fails)
            log_error("upstream %s: origin %s marked down for %llu ms after %u failures",
                      up->name, o->text, (unsigned long long)up->fail_timeout_ms, fails);
    }
}

/* ---- pools ---- */

int upstream_pools_init(struct worker *w)
{
    int n = w->cfg->nupstreams;
    struct upstream_pools *p = calloc(1, sizeof(*p) + (size_t)n * sizeof(p->pool[0]));
    if (!p)
        return -1;
    p->n = n;
    for (int i = 0; i < n; i++)
        TAILQ_INIT(&p->pool[i].idle);
    w->pools = p;
    return 0;
}

void upstream_pools_free(struct worker *w)
{
    struct upstream_pools *p = w->pools;
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        struct upconn *c;
        while ((c = TAILQ_FIRST(&p->pool[i].idle)) != NULL) {
            TAILQ_REMOVE(&p->pool[i].idle, c, link);
            upconn_free(c);
        }
    }
    free(p);
    w->pools = NULL;
}

static void pool_remove(struct upconn *c)
{
    struct upstream_pool *pool = &c->w->pools->pool[c->upstream];
    TAILQ_REMOVE(&pool->idle, c, link);
    pool->nidle--;
    event_del(&c->idle_timer);
}

/* An idle connection that speaks or closes has nothing valid to say: drop it. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct upconn *c = arg;
    pool_remove(c);
    upconn_free(c);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what;
    struct upconn *c = arg;
    pool_remove(c);
    upconn_free(c);
}

static void idle_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct upconn *c = arg;
    pool_remove(c);
    upconn_free(c);
}

struct upconn *upconn_take_idle(struct worker *w, int upstream, int origin)
{
    struct upstream_pool *pool = &w->pools->pool[upstream];
    struct upconn *c;
    TAILQ_FOREACH(c, &pool->idle, link) {
        if (c->origin != origin)
            continue;
        pool_remove(c);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
            upconn_free(c); /* unsolicited bytes: not safe to reuse */
            return upconn_take_idle(w, upstream, origin);
        }
        c->state = UC_ACTIVE;
        c->reused = true;
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        return c;
    }
    return NULL;
}

void upconn_release(struct upconn *c)
{
    struct upstream_pool *pool = &c->w->pools->pool[c->upstream];
    if (pool->nidle >= c->up->keepalive || !c->bev || c->w->draining) {
        upconn_free(c);
        return;
    }
    c->state = UC_IDLE;
    bufferevent_setcb(c->bev, idle_read_cb, NULL, idle_event_cb, c);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_setwatermark(c->bev, EV_READ | EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    struct timeval tv = {(time_t)(c->up->keepalive_timeout_ms / 1000),
                         (suseconds_t)(c->up->keepalive_timeout_ms % 1000) * 1000};
    evtimer_assign(&c->idle_timer, c->w->base, idle_timeout_cb, c);
    evtimer_add(&c->idle_timer, &tv);
    TAILQ_INSERT_HEAD(&pool->idle, c, link); /* LIFO keeps the warmest connections busy */
    pool->nidle++;
}

/* ---- opening ---- */

static void upconn_free(struct upconn *c)
{
    if (event_initialized(&c->io_ev))
        event_del(&c->io_ev);
    if (event_initialized(&c->defer_ev))
        event_del(&c->defer_ev);
    if (event_initialized(&c->idle_timer))
        event_del(&c->idle_timer);
    if (c->bev) {
        if (c->ssl)
            SSL_set_shutdown(c->ssl, SSL_RECEIVED_SHUTDOWN); /* no close_notify wait */
        bufferevent_free(c->bev); /* closes fd, frees ssl (BEV_OPT_CLOSE_ON_FREE) */
    } else {
        if (c->ssl)
            SSL_free(c->ssl);
        if (c->fd >= 0)
            evutil_closesocket(c->fd);
    }
    free(c);
}

void upconn_abort(struct upconn *c)
{
    if (!c)
        return;
    if (c->state == UC_IDLE)
        pool_remove(c);
    if (c->dns_req) {
        /* The cancel runs our callback (now or later) with EAI_CANCEL; it frees us there. */
        c->dead = true;
        struct evdns_getaddrinfo_request *req = c->dns_req;
        c->dns_req = NULL;
        evdns_getaddrinfo_cancel(req);
        return;
    }
    upconn_free(c);
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct upconn *c = arg;
    if (c->deferred_cause == CAUSE_NONE)
        c->ev->on_ready(c->arg);
    else
        c->ev->on_error(c->arg, c->deferred_cause, c->deferred_detail);
}

/* Reports a result now, or from the loop when we are still inside upconn_open. */
static void report(struct upconn *c, enum cause cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct upconn *c, enum cause cause, const char *fmt, ...)
{
    c->deferred_cause = cause;
    c->deferred_detail[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->deferred_detail, sizeof(c->deferred_detail), fmt, ap);
        va_end(ap);
    }
    if (c->in_open) {
        event_assign(&c->defer_ev, c->w->base, -1, 0, deliver, c);
        event_active(&c->defer_ev, EV_TIMEOUT, 1);
        return;
    }
    deliver(-1, 0, c);
}

static enum cause errno_cause(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return CAUSE_REFUSED;
    case ETIMEDOUT:
        return CAUSE_TIMEOUT;
    case ECONNRESET:
    case EPIPE:
        return CAUSE_RESET;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
    case ENETDOWN:
    case EHOSTDOWN:
        return CAUSE_UNREACHABLE;
    default:
        return CAUSE_IO;
    }
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct upconn *c = arg;
    char why[200];
    if (what & BEV_EVENT_CONNECTED) {
        c->state = UC_ACTIVE;
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        report(c, CAUSE_NONE, NULL);
        return;
    }
    /* with verify off OpenSSL still records a verdict: it is not why the handshake failed */
    if (c->up->verify && tls_verify_failed(c->ssl, why, sizeof(why))) {
        report(c, CAUSE_CERT, "certificate of %s rejected: %s", c->addr_text, why);
        return;
    }
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    if (e) {
        ERR_error_string_n(e, why, sizeof(why));
        report(c, CAUSE_TLS, "TLS handshake with %s failed: %s", c->addr_text, why);
    } else if (what & BEV_EVENT_EOF) {
        report(c, CAUSE_TLS, "%s closed the connection during the TLS handshake", c->addr_text);
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        report(c, CAUSE_TLS, "TLS handshake with %s failed: %s", c->addr_text,
               err ? strerror(err) : "protocol error");
    }
}

static void connected(struct upconn *c)
{
    struct event_base *base = c->w->base;
    metrics_add(c->w->metrics, M_UPSTREAM_CONNECTS, 1);
    if (!c->up->tls) {
        c->bev = bufferevent_socket_new(base, c->fd, BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev) {
            report(c, CAUSE_IO, "out of memory");
            return;
        }
        c->fd = -1;
        c->state = UC_ACTIVE;
        report(c, CAUSE_NONE, NULL);
        return;
    }
    c->state = UC_HANDSHAKE;
    c->ev->on_phase(c->arg, PHASE_TLS);
    c->ssl = tls_client_ssl(c->up->ssl_ctx, c->oc->host, c->up->sni, c->up->verify);
    if (!c->ssl) {
        report(c, CAUSE_TLS, "cannot create a TLS session");
        return;
    }
    c->bev = bufferevent_openssl_socket_new(base, c->fd, c->ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!c->bev) {
        report(c, CAUSE_IO, "out of memory");
        return;
    }
    c->fd = -1;
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, NULL, NULL, tls_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct upconn *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        report(c, errno_cause(err), "connect to %s failed: %s", c->addr_text, strerror(err));
        return;
    }
    connected(c);
}

static void start_connect(struct upconn *c)
{
    c->state = UC_CONNECTING;
    c->ev->on_phase(c->arg, PHASE_CONNECT);
    sockaddr_str((struct sockaddr *)&c->addr, c->addr_text, sizeof(c->addr_text));
    c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int err = errno;
        report(c, errno_cause(err), "socket: %s", strerror(err));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The kernel takes no more than this beyond what the origin's window lets out: once the
     * origin stops reading, our writes stop too, and send_timeout counts from there instead
     * of from the end of a send buffer Linux keeps growing (+40 ms on loopback). */
    int notsent = UPSTREAM_NOTSENT_LOWAT;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent, sizeof(notsent));
    if (connect(c->fd, (struct sockaddr *)&c->addr, c->addrlen) == 0) {
        connected(c);
        return;
    }
    if (errno != EINPROGRESS) {
        int err = errno;
        report(c, errno_cause(err), "connect to %s failed: %s", c->addr_text, strerror(err));
        return;
    }
    event_assign(&c->io_ev, c->w->base, c->fd, EV_WRITE, connect_cb, c);
    event_add(&c->io_ev, NULL);
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct upconn *c = arg;
    c->dns_req = NULL;
    if (c->dead || result == EVUTIL_EAI_CANCEL) {
        if (res)
            evutil_freeaddrinfo(res);
        if (c->dead)
            upconn_free(c);
        return;
    }
    if (result != 0 || !res) {
        enum cause cause = result == EVUTIL_EAI_NONAME ? CAUSE_NXDOMAIN : CAUSE_DNS_FAIL;
        report(c, cause, "resolving %s failed: %s", c->oc->host,
               result ? evutil_gai_strerror(result) : "no address");
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    /* IPv4 first: "localhost" maps to both, and origins more often listen on 127.0.0.1. */
    const struct evutil_addrinfo *pick = res;
    for (const struct evutil_addrinfo *a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    memcpy(&c->addr, pick->ai_addr, pick->ai_addrlen);
    c->addrlen = (socklen_t)pick->ai_addrlen;
    if (c->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&c->addr)->sin_port = htons(c->oc->port);
    else
        ((struct sockaddr_in6 *)&c->addr)->sin6_port = htons(c->oc->port);
    evutil_freeaddrinfo(res);
    start_connect(c);
}

struct upconn *upconn_open(struct worker *w, int upstream, int origin,
                           const struct upconn_events *ev, void *arg)
{
    struct upconn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = w;
    c->upstream = upstream;
    c->origin = origin;
    c->up = &w->cfg->upstreams[upstream];
    c->oc = &c->up->origins[origin];
    c->fd = -1;
    c->ev = ev;
    c->arg = arg;
    c->in_open = true;
    snprintf(c->addr_text, sizeof(c->addr_text), "%s", c->oc->text);

    if (c->oc->is_sim) {
        numeric_sockaddr("127.0.0.1", sim_port(), &c->addr, &c->addrlen);
        start_connect(c);
    } else if (c->oc->numeric) {
        memcpy(&c->addr, &c->oc->addr, sizeof(c->addr));
        c->addrlen = c->oc->addrlen;
        start_connect(c);
    } else {
        c->state = UC_RESOLVING;
        ev->on_phase(arg, PHASE_DNS);
        struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                        .ai_protocol = IPPROTO_TCP,
                                        .ai_flags = EVUTIL_AI_ADDRCONFIG};
        /* The callback may run before evdns_getaddrinfo returns (hosts file): in_open defers
         * what it reports. */
        c->dns_req = evdns_getaddrinfo(w->dns, c->oc->host, NULL, &hints, dns_cb, c);
    }
    c->in_open = false;
    return c;
}

struct bufferevent *upconn_bev(struct upconn *c)
{
    return c->bev;
}

const char *upconn_addr(const struct upconn *c)
{
    return c->addr_text;
}

bool upconn_reused(const struct upconn *c)
{
    return c->reused;
}

unsigned upconn_requests(const struct upconn *c)
{
    return c->requests;
}

void upconn_mark_used(struct upconn *c)
{
    c->requests++;
}
