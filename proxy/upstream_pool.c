/*
 * upstream_pool.c — the loop's keep-alive pool of origin connections: one pool per upstream of
 * its configuration, which an exchange's connection enters when released (upconn_release),
 * settles in, waits idle in, and leaves when a request takes it (upconn_take_idle), when it
 * speaks or closes, outstays keepalive_timeout, or the pool is over keepalive. Opening a
 * connection is upstream.c's job; both share upstream_int.h.
 *
 * THE POOL AND STRAY BYTES. An origin that sends more than its framing says (a body after a
 * response to HEAD, bytes after a 204 or 304 or past Content-Length) often sends it a few
 * milliseconds after the response. Bytes that arrive while a connection is idle get it closed (and
 * counted); the danger is a connection taken again before they arrive: they would then be read as
 * the response to the next request, maybe another client's. So a released connection first settles
 * (settle_time, default 10 ms) before another client connection may take it, and requests take the
 * oldest settled connection. One exception costs nothing and keeps keep-alive traffic on warm
 * connections: the client connection that released it takes it back at once, for a request that
 * was not already waiting (pipelined) when the response ended, i.e. the user's next request sent
 * after reading the answer; bytes that come later still only reach that same client. Not after a
 * response with no body (HEAD, 204, 304: where a body wrongly sent is the classic stray): the
 * exchange releases those with no owner, and they settle for everyone (a client that sends HEAD,
 * then GET within 5 ms, read the stray bytes). A settling connection is not one of the `keepalive`
 * idle ones yet: the pool holds up to `keepalive` settled connections plus those settling, so that
 * connection-per-request traffic finds settled connections instead of opening new ones; it costs
 * rate x settle_time more origin connections (120 at 12k req/s). At most SETTLING_MAX_FACTOR times
 * keepalive settle: past that the oldest settles early, after that bound / rate, if that is at
 * least half of settle_time (counted); else the one released is closed. Closing it always opened
 * an origin connection for 4.5-7.7% of connection-per-request requests at 24k req/s (keepalive
 * 64); 68-76% with keepalive 8, at a third less rate. The number settling goes up and down with
 * the rate from one moment to the next, so the settled ones beyond keepalive stay for
 * SURPLUS_HOLD_FACTOR settle_times before they go: closed the moment they settled, 19-22% of
 * connection-per-request requests at 16k req/s opened an origin connection (keepalive 64), 2-4%
 * with the hold. Settling and the surplus's end share one timer per connection.
 */
#include "upstream_int.h"

#include <event2/buffer.h>
#include <stdlib.h>

#include "portico/balance.h"
#include "portico/generation.h"
#include "portico/log.h"
#include "portico/util.h"

/* Connections settling at once, in multiples of keepalive (see THE POOL AND STRAY BYTES). */
#define SETTLING_MAX_FACTOR 4
/* How long a settled connection beyond keepalive stays, in multiples of settle_time. */
#define SURPLUS_HOLD_FACTOR 10
/* Most chains of pooled connections by owner: a pool holds about keepalive x (1 +
 * SETTLING_MAX_FACTOR) connections, one chain each up to this. Right after a burst it may hold
 * more until (1 + SURPLUS_HOLD_FACTOR) settle_times after their release: SETTLING_MAX_FACTOR x
 * keepalive may be pooled per half settle_time (each settles early after half of it), so up to
 * keepalive x (1 + SETTLING_MAX_FACTOR x (1 + 2 x (1 + SURPLUS_HOLD_FACTOR))), 93 x keepalive:
 * 300 clients at once on keepalive 1, settle_time 20ms, answered over 220 ms, pooled 64-75. */
#define OWNER_CHAINS_MAX 4096

int upstream_pools_init(struct loop *l)
{
    int n = l->cfg->nupstreams;
    struct upstream_pools *p = calloc(1, sizeof(*p) + (size_t)n * sizeof(p->pool[0]));
    if (!p)
        return -1;
    p->n = n;
    p->spare[0] = p->spare[1] = -1;
    l->pools = p;
    if (l->id == 0) /* said once, by the first worker (or the probe) */
        upconn_rcvbuf_check(l);
    for (int i = 0; i < n; i++) {
        struct upstream_pool *pool = &p->pool[i];
        TAILQ_INIT(&pool->settling);
        TAILQ_INIT(&pool->idle);
        uint64_t most = l->cfg->upstreams[i].keepalive * (1 + SETTLING_MAX_FACTOR), chains = 1;
        while (chains < most && chains < OWNER_CHAINS_MAX)
            chains *= 2;
        pool->owner_mask = chains - 1;
        pool->by_owner = calloc(chains, sizeof(*pool->by_owner)); /* all-zero: empty chains */
        if (!pool->by_owner) {
            upstream_pools_free(l);
            return -1;
        }
    }
    return 0;
}

void upstream_pools_close_idle(struct loop *l)
{
    struct upstream_pools *p = l->pools;
    for (int i = 0; p && i < p->n; i++) {
        struct upconn *c;
        while ((c = TAILQ_FIRST(&p->pool[i].settling)) != NULL ||
               (c = TAILQ_FIRST(&p->pool[i].idle)) != NULL) {
            upstream_pool_remove(c);
            upconn_free(c);
        }
    }
    for (size_t i = 0; p && i < sizeof(p->spare) / sizeof(p->spare[0]); i++) {
        if (p->spare[i] >= 0)
            evutil_closesocket(p->spare[i]);
        p->spare[i] = -1;
    }
}

void upstream_pools_free(struct loop *l)
{
    upstream_pools_close_idle(l);
    for (int i = 0; l->pools && i < l->pools->n; i++)
        free(l->pools->pool[i].by_owner);
    free(l->pools);
    l->pools = NULL;
}

size_t upstream_pools_idle(const struct loop *l)
{
    size_t n = 0;
    for (int i = 0; l->pools && i < l->pools->n; i++)
        n += l->pools->pool[i].nsettling + l->pools->pool[i].nidle;
    return n;
}

size_t upstream_pool_idle(const struct loop *l, int upstream)
{
    if (!l->pools || upstream < 0 || upstream >= l->pools->n)
        return 0;
    return l->pools->pool[upstream].nsettling + l->pools->pool[upstream].nidle;
}

void upstream_pool_remove(struct upconn *c)
{
    struct upstream_pool *pool = &c->loop->pools->pool[c->upstream];
    if (c->owner)
        LIST_REMOVE(c, owner_link);
    if (c->private_owner)
        c->loop->pools->nprivate--;
    if (c->state == UC_SETTLING) {
        TAILQ_REMOVE(&pool->settling, c, link);
        pool->nsettling--;
    } else {
        TAILQ_REMOVE(&pool->idle, c, link);
        pool->nidle--;
    }
}

/* The oldest settling connection c joins the idle ones. */
static void join_idle(struct upstream_pool *pool, struct upconn *c)
{
    TAILQ_REMOVE(&pool->settling, c, link);
    pool->nsettling--;
    set_state(c, UC_IDLE);
    TAILQ_INSERT_TAIL(&pool->idle, c, link);
    pool->nidle++;
}

/* Connections released settle_time ago or more join the idle ones; beyond keepalive of those,
 * the oldest go once released SURPLUS_HOLD_FACTOR settle_times before that. */
static void pool_settle(struct upstream_pool *pool, const struct upstream_conf *up, uint64_t now)
{
    struct upconn *c;
    while ((c = TAILQ_FIRST(&pool->settling)) != NULL &&
           c->released_us + up->settle_ms * 1000 <= now)
        join_idle(pool, c);
    while (pool->nidle > up->keepalive && (c = TAILQ_FIRST(&pool->idle)) != NULL &&
           c->released_us + up->settle_ms * 1000 * (1 + SURPLUS_HOLD_FACTOR) <= now) {
        upstream_pool_remove(c);
        upconn_free(c);
    }
}

/* Counts and logs bytes from the origin that no request asked for, found `when`: past the end
 * of a response, or on an idle connection. The caller closes the connection. */
static void report_unsolicited(struct upconn *c, const char *when)
{
    metrics_add(c->loop->metrics, M_UPSTREAM_UNSOLICITED, 1);
    size_t n = evbuffer_get_length(c->sock.in);
    if (n) {
        log_info("upstream %s: %s sent %zu bytes %s, which no request asked for; closed",
                 c->up->name, c->addr_text, n, when);
    } else if (c->sock.ssl) { /* OpenSSL holds the start of a record, nothing decrypted yet */
        log_info("upstream %s: %s sent part of a TLS record %s, which no request asked for; "
                 "closed", c->up->name, c->addr_text, when);
    } else { /* still in the kernel (spoiled) */
        log_info("upstream %s: %s sent bytes %s, which no request asked for; closed",
                 c->up->name, c->addr_text, when);
    }
}

/* An idle connection that speaks, closes, fails or outstays keepalive_timeout goes: an origin
 * has nothing valid to say between requests. */
static void idle_cb(void *arg, enum sock_event ev)
{
    struct upconn *c = arg;
    if (ev == SOCK_DEADLINE) { /* its hold beyond keepalive is over: it stays idle, or goes */
        pool_settle(&c->loop->pools->pool[c->upstream], c->up, event_now_us());
        return;
    }
    if (ev == SOCK_READABLE)
        report_unsolicited(c, "on an idle connection");
    upstream_pool_remove(c);
    upconn_free(c);
}

/* ask_kernel: the request cannot be resent by its method, and whether its bytes reached the
 * origin may decide (upconn_request_unseen): what the origin has acknowledged so far is noted. */
static struct upconn *take(struct upconn *c, bool ask_kernel)
{
    upstream_pool_remove(c);
    c->acked_at_take = ask_kernel ? sock_bytes_acked(&c->sock) : -1;
    set_state(c, UC_ACTIVE);
    sock_set_deadline(&c->sock, 0);
    sock_set_timeouts(&c->sock, 0, 0);
    return c;
}

/* Bytes or a close that arrived before idle_cb could run (in this very loop turn, or while the
 * loop was busy): not safe to reuse. With ask_kernel, the kernel is asked too (one recv with
 * MSG_PEEK): an origin's close that is already there but not yet read would otherwise meet a
 * request that cannot be resent (a POST), which would fail although the origin never saw it.
 * A resendable request skips that call, as nginx and HAProxy do for all: a stale connection
 * costs it a resend (stale_pooled in exchange.c), not a failure. */
static bool spoiled(struct upconn *c, bool ask_kernel)
{
    bool input = sock_has_input(&c->sock), bytes = false;
    if (!input && c->sock.state == SOCK_OPEN &&
        (!ask_kernel || !sock_peer_pending(&c->sock, &bytes)))
        return false;
    /* Over TLS a waiting record may be the origin's close_notify: only plain bytes are
     * known to be unasked for. */
    if (input || (bytes && !c->sock.ssl))
        report_unsolicited(c, "on an idle connection");
    upstream_pool_remove(c);
    upconn_free(c);
    return true;
}

/* The most recent connection to origin that owner released, still usable, or NULL. */
static struct upconn *find_owned(struct upstream_pool *pool, int origin, uint64_t owner,
                                 bool ask_kernel)
{
    struct upconn *c = LIST_FIRST(&pool->by_owner[owner & pool->owner_mask]), *next;
    for (; c; c = next) {
        next = LIST_NEXT(c, owner_link);
        if (c->owner == owner && c->origin == origin && !spoiled(c, ask_kernel))
            return c;
    }
    return NULL;
}

/* The oldest settled connection to origin, still usable, or NULL; never one private to a
 * client connection (upconn_make_private), which only its owner takes (find_owned). */
static struct upconn *find_settled(struct upstream_pool *pool, int origin, bool ask_kernel)
{
    struct upconn *c = TAILQ_FIRST(&pool->idle), *next;
    for (; c; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->origin == origin && !c->private_owner && !spoiled(c, ask_kernel))
            return c;
    }
    return NULL;
}

struct upconn *upconn_take_idle(struct loop *l, int upstream, int origin, uint64_t owner,
                                bool resendable, uint64_t now_us_)
{
    struct upstream_pool *pool = &l->pools->pool[upstream];
    struct upconn *c = NULL;
    pool_settle(pool, &l->cfg->upstreams[upstream], now_us_);
    /* The same client's next request takes its own connection back, settled or not: the most
     * recent one it released. */
    if (owner && (c = find_owned(pool, origin, owner, !resendable)))
        return take(c, !resendable);
    /* Anyone else: the oldest that has settled, which had the longest to show stray bytes. */
    if ((c = find_settled(pool, origin, !resendable)))
        return take(c, !resendable);
    return NULL;
}

bool upconn_idle_ready(struct loop *l, int upstream, int origin, uint64_t owner, bool resendable,
                       uint64_t now_us_)
{
    struct upstream_pool *pool = &l->pools->pool[upstream];
    pool_settle(pool, &l->cfg->upstreams[upstream], now_us_);
    return (owner && find_owned(pool, origin, owner, !resendable)) ||
           find_settled(pool, origin, !resendable);
}

/* Whether released c may settle: below the bound, or the oldest settling connection has settled
 * half of settle_time and settles early to make room (see THE POOL AND STRAY BYTES). */
static bool settling_room(struct upconn *c, uint64_t now_us_)
{
    struct upstream_pool *pool = &c->loop->pools->pool[c->upstream];
    struct upconn *oldest = TAILQ_FIRST(&pool->settling);
    if (pool->nsettling < c->up->keepalive * SETTLING_MAX_FACTOR)
        return true;
    if (oldest->released_us + c->up->settle_ms * 1000 / 2 > now_us_) {
        metrics_add(c->loop->metrics, M_UPSTREAM_SETTLING_FULL, 1);
        return false;
    }
    join_idle(pool, oldest);
    metrics_add(c->loop->metrics, M_UPSTREAM_SETTLED_EARLY, 1);
    return true;
}

/* Not at upconn_release: its test cost every request 5 instructions (callgrind), and a
 * connection an attempt still in flight releases to the pool after the change is closed by the
 * next tick, a second at most later, as the pooled ones are. */
void upstream_pools_close_maint(struct loop *l)
{
    struct upstream_pools *p = l->pools;
    for (int i = 0; p && l->gen && i < p->n; i++) {
        uint32_t maint = balancer_admin_maint(l->gen->balancers[i]);
        if (!maint)
            continue;
        struct upconn_list *lists[] = {&p->pool[i].settling, &p->pool[i].idle};
        for (size_t k = 0; k < ARRAY_LEN(lists); k++)
            for (struct upconn *c = TAILQ_FIRST(lists[k]), *next; c; c = next) {
                next = TAILQ_NEXT(c, link);
                if (maint & (1u << c->origin)) {
                    upstream_pool_remove(c);
                    upconn_free(c);
                }
            }
    }
}

void upconn_release(struct upconn *c, uint64_t owner, uint64_t now_us_)
{
    struct upstream_pool *pool = &c->loop->pools->pool[c->upstream];
    const struct upstream_conf *up = c->up;
    if (sock_has_input(&c->sock)) { /* read with the response's end, or OpenSSL read ahead */
        report_unsolicited(c, "past the end of its response");
        upconn_free(c);
        return;
    }
    /* An end read with the response (a close_notify read ahead behind its last record) is
     * reported a loop turn later: pooled meanwhile, the connection could take a request of
     * this turn, which would then fail on it (a POST is not sent twice). Those settled since
     * the pool was last used are moved first: settling is seen lazily, and they are not
     * settling any more for the bound. */
    pool_settle(pool, up, now_us_);
    /* A private connection released to no owner or another (after a response with no body)
     * would wait for no one: it goes. */
    if (up->keepalive == 0 || c->state != UC_ACTIVE || c->sock.state != SOCK_OPEN ||
        (c->private_owner && owner != c->private_owner) ||
        sock_peer_closed(&c->sock) || c->loop->state != LOOP_RUNNING ||
        !settling_room(c, now_us_)) {
        upconn_free(c);
        return;
    }
    c->released_us = now_us_;
    c->owner = owner;
    if (owner)
        LIST_INSERT_HEAD(&pool->by_owner[owner & pool->owner_mask], c, owner_link);
    if (c->private_owner) /* its owner, as checked above */
        c->loop->pools->nprivate++;
    sock_set_cb(&c->sock, idle_cb, c);
    sock_set_read_limit(&c->sock, 0);
    sock_read(&c->sock, true);
    /* The surplus ends on its own clock too, not only when the pool is next used: a pool whose
     * traffic stopped would keep up to SETTLING_MAX_FACTOR x keepalive connections beyond
     * keepalive until keepalive_timeout. Settling itself is seen when the pool is next used.
     * Set before the later keepalive deadline: one timer operation. */
    if (up->settle_ms)
        sock_set_deadline(&c->sock, now_us_ + up->settle_ms * 1000 * (1 + SURPLUS_HOLD_FACTOR));
    sock_set_timeouts(&c->sock, up->keepalive_timeout_ms, 0);
    set_state(c, UC_SETTLING);
    TAILQ_INSERT_TAIL(&pool->settling, c, link);
    pool->nsettling++;
    pool_settle(pool, up, now_us_); /* settle_time 0: idle at once */
}

void upstream_pool_owner_gone(struct loop *l, uint64_t owner)
{
    struct upstream_pools *p = l->pools;
    for (int i = 0; p && p->nprivate && owner && i < p->n; i++) {
        struct upconn *c = LIST_FIRST(&p->pool[i].by_owner[owner & p->pool[i].owner_mask]), *next;
        for (; c; c = next) {
            next = LIST_NEXT(c, owner_link);
            if (c->owner == owner && c->private_owner == owner) {
                upstream_pool_remove(c);
                upconn_free(c);
            }
        }
    }
}
