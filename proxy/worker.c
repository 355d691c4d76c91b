/*
 * worker.c — worker threads: one event loop each, their listeners, the resolver and the pools.
 *
 * Workers come in groups, one per configuration generation. A reload starts the new group first
 * on the old group's listening sockets (taken over, queues included; new SO_REUSEPORT sockets
 * only for new addresses or extra workers), waits until the old workers stop accepting, then
 * lets them drain: idle connections closed, exchanges in flight finished.
 *
 * A worker's lifecycle is its loop's state: RUNNING → DRAINING (listeners closed, the group
 * told, keep-alive off) → STOPPING (everything closed, the loop ends). leave_running is the one
 * transition out of RUNNING.
 */
#include "portico/worker.h"

#include <dirent.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "portico/client.h"
#include "portico/config.h"
#include "portico/deadline.h"
#include "portico/evbase.h"
#include "portico/evmem.h"
#include "portico/exchange.h"
#include "portico/fault_table.h"
#include "portico/generation.h"
#include "portico/health.h"
#include "portico/heap.h"
#include "portico/listener.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/mirror.h"
#include "portico/proxyproto.h"
#include "portico/recent.h"
#include "portico/sock.h"
#include "portico/upgrade.h"
#include "portico/upstream.h"
#include "portico/util.h"
#include "portico/waitset.h"
#include "portico/wakebox.h"
#include "portico/watchdog.h"

struct worker {
    struct loop loop;                      /* what the request path sees of us */
    pthread_t thread;
    struct listener **listeners;           /* one per socket: an address can have several */
    int nlisteners, caplisteners;
    struct event *stop_ev;                 /* reads stop_pipe: another thread asks us to stop */
    int stop_pipe[2];
    struct worker_group *group;            /* told when our listeners are closed */
    struct event *drain_timer;             /* drain deadline: then everything is closed */
    uint64_t drain_deadline_us;            /* when it fires (now_us clock) */
    struct event *log_timer;               /* every second: the access-log buffer out, the
                                              heap trimmed after a burst (trim_after_burst),
                                              unarmed health checks armed (health_tick) */
    struct health *health;                 /* worker 0: the generation's active health checks */
    bool accept_held;                      /* max_connections reached: listeners held */
    bool admin_held;                       /* ADMIN_CONNS_MAX reached: admin listener held */
    int *given;                            /* sockets given to an upgrade's new process, closed */
    int ngiven;                            /* a loop turn after their listeners (close_given) */
    struct event *beat_timer;              /* systemd's watchdog: stamps beat_us; NULL when off */
    _Atomic uint64_t beat_us;              /* when the loop last turned for it; 0: not watched */
    uint64_t stall_beat_us;                /* main thread: the stale stamp said; 0: no stall */
    bool trim_tail_streams;                /* trimmed with streams open: again once none is */
    bool trim_tail_conns;                  /* likewise with client connections open */
};

struct worker_group {
    struct worker *workers;
    int n;
    pthread_mutex_t lock;                  /* guards unlistened, signalled through closed */
    pthread_cond_t closed;
    int unlistened;                        /* workers whose listeners are closed */
};

static void close_given(struct worker *w)
{
    for (int i = 0; i < w->ngiven; i++)
        close(w->given[i]);
    w->ngiven = 0;
}

static void close_given_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    close_given(arg);
}

/* Closes the listeners. The sockets given to an upgrade's new process are closed a loop turn
 * later: by then the epoll changelist has dropped their registration, which would otherwise
 * outlive them (the new process holds them open), and closing them then, not when the drain
 * ends, lets the new process's own stop, or its reload's dropped address, refuse connections
 * (they queued with nobody to accept until this process exited, then were reset), and a new
 * start bind them. */
static void close_listeners(struct worker *w)
{
    for (int i = 0; i < w->nlisteners && !w->given; i++)
        if (listener_given(w->listeners[i])) /* once: a worker leaves RUNNING once */
            w->given = malloc((size_t)w->nlisteners * sizeof(*w->given));
    for (int i = 0; i < w->nlisteners; i++) {
        if (w->given && listener_given(w->listeners[i]))
            w->given[w->ngiven++] = listener_fd(w->listeners[i]);
        listener_close(w->listeners[i]); /* out of memory: given ones stay open till the exit */
    }
    struct timeval now = {0, 0};
    if (w->ngiven && event_base_once(w->loop.base, -1, EV_TIMEOUT, close_given_cb, w, &now) != 0)
        log_warn("worker %d: the sockets handed over stay open until it ends", w->loop.id);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = w->caplisteners = 0;
}

/* The one way out of RUNNING: listeners closed and the group told (a reload waits for every old
 * worker to get here before it calls the new configuration live). */
static void leave_running(struct worker *w, enum loop_state next)
{
    if (w->loop.state == LOOP_RUNNING) {
        health_stop(w->health);
        w->health = NULL;
        close_listeners(w);
        pthread_mutex_lock(&w->group->lock);
        w->group->unlistened++;
        pthread_cond_broadcast(&w->group->closed);
        pthread_mutex_unlock(&w->group->lock);
    }
    w->loop.state = next;
}

/* Closes every client connection: those still reading their PROXY header, then the others. */
static void close_connections(struct loop *l)
{
    proxyproto_close_all(l);
    clients_close_all(l);
}

/* Closes every connection and ends the loop. */
static void stop_now(struct worker *w)
{
    if (w->loop.state == LOOP_STOPPING)
        return;
    leave_running(w, LOOP_STOPPING);
    close_connections(&w->loop);
    mirror_loop_free(&w->loop); /* mirror requests under way are cut (counted) */
    upstream_pools_free(&w->loop);
    event_base_loopbreak(w->loop.base);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    stop_now(arg);
}

/* Admin connections a worker keeps open at once: they take no client's place, but neither may
 * they take every descriptor from the clients (a scraper gone wrong, or a flood where
 * admin_listen is reachable: 4,000 were accepted in 1.2 s, each one a descriptor the proxy
 * listeners then lacked). Past it the admin listener stops accepting until one closes, as
 * HAProxy's stats socket does at its maxconn (10); scrapes and probes need a few. */
#define ADMIN_CONNS_MAX 64

/* The loop's on_conns, max_connections: at the limit the proxy listeners stop accepting (new
 * clients wait in the kernel's backlog instead of being accepted and failed); below it they
 * accept again. While a connection is idle between requests they go on accepting: the one idle
 * longest gives way to the newcomer (client_new), as in nginx. The admin listener has its own
 * bound, ADMIN_CONNS_MAX. */
static void conns_changed(struct loop *l)
{
    struct worker *w = (struct worker *)l; /* loop is the first member */
    unsigned max = l->cfg->max_connections;
    /* Admin connections take no client's place: they count neither toward the limit (one in
     * the middle of a scrape held the listener with a place free) nor among the idle ones that
     * give way (client.c). A failed attempt to make room takes one place more: the proxy
     * listeners' connections are bounded at max + 1. */
    unsigned conns = l->conns - l->admin_conns;
    bool full = max && (conns > max || (conns >= max && TAILQ_EMPTY(&l->idle)));
    bool admin_full = l->admin_conns >= ADMIN_CONNS_MAX;
    if ((full == w->accept_held && admin_full == w->admin_held) || l->state != LOOP_RUNNING)
        return;
    if (full && !w->accept_held)
        metrics_add(l->metrics, M_ACCEPT_PAUSES, 1);
    w->accept_held = full;
    w->admin_held = admin_full;
    for (int i = 0; i < w->nlisteners; i++)
        listener_hold(w->listeners[i], listener_kind(w->listeners[i]) == CLIENT_ADMIN ? admin_full
                                                                                       : full);
}

/* The loop's on_idle: a draining worker ends with its last connection. */
static void drained(struct loop *l)
{
    stop_now((struct worker *)l); /* loop is the first member */
}

/* Arms (or brings forward) the drain deadline: drain_ms from now, unless it is set earlier. */
static void drain_until(struct worker *w, uint64_t drain_ms)
{
    uint64_t deadline = now_us() + drain_ms * 1000;
    if (w->drain_timer && deadline >= w->drain_deadline_us)
        return;
    if (!w->drain_timer)
        w->drain_timer = evtimer_new(w->loop.base, drain_timeout_cb, w);
    struct timeval tv = tv_from_ms(drain_ms);
    if (!w->drain_timer || evtimer_add(w->drain_timer, &tv) != 0) {
        stop_now(w);
        return;
    }
    w->drain_deadline_us = deadline;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    uint64_t drain_ms = 0;
    if (read(fd, &drain_ms, sizeof(drain_ms)) != sizeof(drain_ms) || drain_ms == 0) {
        stop_now(w);
        return;
    }
    if (w->loop.state != LOOP_RUNNING) {
        /* Already draining (a reload's old workers when Portico stops): a shorter time wins. */
        if (w->loop.state == LOOP_DRAINING)
            drain_until(w, drain_ms);
        return;
    }
    for (int i = 0; i < w->nlisteners; i++)
        listener_accept_queued(w->listeners[i]);
    leave_running(w, LOOP_DRAINING); /* from now on, no keep-alive, no pooling */
    upstream_pools_close_idle(&w->loop);
    /* Connections between requests go now; the others close after their exchange. */
    clients_drain(&w->loop);
    if (w->loop.conns == 0) {
        stop_now(w);
        return;
    }
    drain_until(w, drain_ms);
}

/* Once a burst is over (HEAP_TRIM_STREAMS or more HTTP/2 streams, or HEAP_TRIM_CONNS or more
 * client connections, open at once since the last trim, an eighth of that or fewer now: long-lived
 * streams and connections, such as event streams and tunnels, do not hold it off), the free memory
 * their buffers left in pieces goes back to the kernel (heap.h); what those still open then free is
 * handed back once none is open, if that comes. Checked once a second, not as they close: a client
 * that opens its next ones at once would fault the pages in again, and a trim of a heap that held
 * 3,000 streams takes 4-25 ms. */
static bool burst_over(unsigned open, unsigned *peak, unsigned at_least, bool *tail)
{
    bool over = *peak >= at_least && open <= *peak / 8;
    if (!over && !(*tail && open == 0))
        return false;
    *tail = open != 0;
    *peak = open;
    return true;
}

static void trim_after_burst(struct worker *w)
{
    struct loop *l = &w->loop;
    /* both are looked at (no short-circuit): each whose burst is over starts its peak again */
    bool streams = burst_over(l->h2_streams, &l->h2_streams_peak, HEAP_TRIM_STREAMS,
                              &w->trim_tail_streams);
    bool conns = burst_over(l->conns, &l->conns_peak, HEAP_TRIM_CONNS, &w->trim_tail_conns);
    if (!streams && !conns)
        return;
    heap_release_thread();
    metrics_add(l->metrics, M_HEAP_TRIMS, 1);
}

static void log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    trim_after_burst(w);
    log_buffer_flush(w->loop.log);
    health_tick(w->health); /* a check whose timer could not be armed: again (health.h) */
    upstream_pools_close_maint(&w->loop); /* origins the admin API put in maint */
    /* the status page's pool sizes: only this thread may look at its pools */
    for (int u = 0; u < w->loop.cfg->nupstreams; u++)
        recent_set_pool(w->loop.recent, u, upstream_pool_idle(&w->loop, u));
}

/* The watchdog's beat: the loop turns (watchdog.h). */
static void beat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    atomic_store_explicit(&w->beat_us, now_us(), memory_order_relaxed);
}

/* A shard labelled with the names of the worker's configuration. */
static struct metrics *shard_for(const struct config *cfg)
{
    int nfaults = cfg->nfault_rules + 2; /* the rules, then the header's and the admin's labels */
    const char **names = calloc((size_t)(cfg->nroutes + cfg->nupstreams + nfaults) + 1,
                                sizeof(*names));
    if (!names)
        return NULL;
    for (int i = 0; i < cfg->nroutes; i++)
        names[i] = cfg->routes[i].name;
    for (int i = 0; i < cfg->nupstreams; i++)
        names[cfg->nroutes + i] = cfg->upstreams[i].name;
    const char **faults = names + cfg->nroutes + cfg->nupstreams;
    /* the certificates served, by their index in the configuration (sni_served's) */
    int nserved = cfg->server_ssl_ctx ? cfg->ntls_pairs : 0;
    struct metrics_served *served = calloc((size_t)nserved + 1, sizeof(*served));
    if (!served) {
        free(names);
        return NULL;
    }
    for (int i = 0; i < nserved; i++)
        served[i] = (struct metrics_served){cfg->tls_pairs[i].cert,
                                            (enum tls_key_type)cfg->tls_pairs[i].key_type};
    struct metrics_labels labels = {
        .routes = names,
        .nroutes = cfg->nroutes,
        .upstreams = names + cfg->nroutes,
        .nupstreams = cfg->nupstreams,
        .faults = faults,
        .nfaults = fault_table_labels(cfg, faults, nfaults),
        .served = served,
        .nserved = nserved,
    };
    struct metrics *m = metrics_shard_create(&labels);
    free(names); /* the shard copied them */
    free(served);
    return m;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16]; /* the kernel's limit: "worker 255" in ps -L, top -H, gdb */
    snprintf(name, sizeof(name), "worker %d", w->loop.id);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(w->loop.base);
    /* The loop is over: the watchdog stops counting on it (its group may drain on for long). The
     * beat goes first: when it came due in the turn that ended the loop, it would run in the turns
     * below and stamp the ended loop again, and that stamp, aging, would read as a stall. */
    if (w->beat_timer)
        event_del(w->beat_timer);
    atomic_store_explicit(&w->beat_us, 0, memory_order_relaxed);
    /* Cancelled DNS lookups report back through the loop: let them land before freeing. */
    for (int i = 0; i < 50 && event_base_loop(w->loop.base, EVLOOP_NONBLOCK) == 0; i++)
        ;
    /* The thread's arena outlives it, with whatever was freed there (heap.h): what the thread
     * keeps for its next requests is freed first, then the free memory goes back. */
    exchange_spare_free(&w->loop);
    evmem_flush();
    heap_release_thread();
    return NULL;
}

/* Which of the previous group's sockets on sa worker `index` of `targets` takes over. They are
 * pooled over the old workers in order; socket k goes to worker k, and when there are more
 * sockets than workers (fewer workers now) to worker k % targets, so that none is closed with
 * connections in its queue: a worker may listen on several sockets of one address, and the next
 * reload spreads them evenly again. (Closing the extras and letting net.ipv4.tcp_migrate_req
 * move their queues lost connections when several closed at once: review, 4 runs in 30.)
 * Returns how many were stored in out (at most max). */
static int inheritable(const struct worker_group *prev, int index, int targets,
                       const struct sockaddr *sa, socklen_t salen, struct listener **out, int max)
{
    int k = 0, n = 0;
    for (int j = 0; prev && j < prev->n; j++) {
        const struct worker *old = &prev->workers[j];
        for (int i = 0; i < old->nlisteners; i++) {
            struct listener *cand = old->listeners[i];
            if (!listener_is_on(cand, sa, salen))
                continue;
            if (k % targets == index && n < max)
                out[n++] = cand;
            k++;
        }
    }
    return n;
}

static int add_listener(struct worker *w, struct listener *lis)
{
    if (w->nlisteners == w->caplisteners) {
        int cap = w->caplisteners ? w->caplisteners * 2 : 4;
        struct listener **grown = realloc(w->listeners, (size_t)cap * sizeof(*grown));
        if (!grown)
            return -1;
        w->listeners = grown;
        w->caplisteners = cap;
    }
    w->listeners[w->nlisteners++] = lis;
    return 0;
}

static int listen_one(struct worker *w, struct listener *from, bool tls, bool proxy_protocol,
                      enum client_kind kind, const struct sockaddr *sa, socklen_t salen,
                      const char *text)
{
    struct listener *lis =
        listener_open(&w->loop, from, tls, proxy_protocol, kind, sa, salen, text);
    if (!lis)
        return -1;
    if (add_listener(w, lis) != 0) {
        listener_close(lis);
        return -1;
    }
    return 0;
}

/* Worker w's listeners for one address: the previous group's sockets it takes over, or a new
 * one when there are none for it. */
static int listen_address(struct worker *w, const struct worker_group *prev, int targets,
                          bool tls, bool proxy_protocol, enum client_kind kind,
                          const struct sockaddr *sa, socklen_t salen, const char *text)
{
    struct listener *from[CFG_MAX_WORKERS]; /* a group never has more sockets per address */
    int n = inheritable(prev, w->loop.id, targets, sa, salen, from, CFG_MAX_WORKERS);
    if (n == 0 && !prev) { /* the first group of a process an upgrade started (upgrade.h) */
        int handed[UPGRADE_MAX_FDS];
        int nh = upgrade_take_sockets(sa, salen, w->loop.id, targets, handed, UPGRADE_MAX_FDS);
        for (int i = 0; i < nh; i++) {
            struct listener *lis = listener_adopt(&w->loop, handed[i], tls, proxy_protocol, kind,
                                                  sa, salen, text);
            if (!lis || add_listener(w, lis) != 0) {
                if (lis)
                    listener_close(lis);
                while (++i < nh)
                    close(handed[i]);
                return -1;
            }
        }
        if (nh > 0)
            return 0;
    }
    if (n == 0)
        return listen_one(w, NULL, tls, proxy_protocol, kind, sa, salen, text);
    for (int i = 0; i < n; i++)
        if (listen_one(w, from[i], tls, proxy_protocol, kind, sa, salen, text) != 0)
            return -1;
    return 0;
}

static int worker_init(struct worker *w, struct worker_group *g, int id, struct generation *gen,
                       uint32_t salt)
{
    const struct config *cfg = gen->cfg;
    w->group = g;
    w->stop_pipe[0] = w->stop_pipe[1] = -1;
    w->loop = (struct loop){
        .cfg = cfg,
        .gen = gen,
        .state = LOOP_RUNNING,
        .id = id,
        .id_salt = salt,
        .on_idle = drained,
        .on_conns = conns_changed,
    };
    TAILQ_INIT(&w->loop.clients);
    TAILQ_INIT(&w->loop.idle);
    TAILQ_INIT(&w->loop.proxy_waiting);
    /* Each base is touched by its own thread only, so it needs no locks (they cost ~6% of CPU
     * under load); the stop request crosses threads through a pipe instead of event_active.
     * The epoll changelist folds the add/del churn into fewer syscalls; its event_del reaches
     * epoll a loop turn late, after the close, under a descriptor number another thread may
     * have reused by then: the late delete fails harmlessly (ThreadSanitizer reports it as a
     * race on the number; tests/tsan.supp says why not). No precise timers: they cost a
     * timerfd_settime per loop turn (0.3 per small request), and the deadline clock checks the
     * real time when woken, so a coarse wake-up up to a tick (4 ms) early only re-arms it. */
    w->loop.base = evbase_new(EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->loop.clock = w->loop.base ? deadline_clock_new(w->loop.base) : NULL;
    /* Without it (no descriptor or memory for it), first waits are libevent's, as before. */
    w->loop.first_wait = w->loop.base ? waitset_new(w->loop.base, sock_first_ready) : NULL;
    w->loop.metrics = shard_for(cfg);
    w->loop.log = log_buffer_new(cfg->access_log_format);
    w->loop.recent = recent_shard_create(gen->number, cfg->nupstreams);
    if (!w->loop.clock || !w->loop.metrics || !w->loop.log || !w->loop.recent ||
        upstream_pools_init(&w->loop) != 0 || mirror_loop_init(&w->loop) != 0)
        return -1;
    if (trace_rng_seed(&w->loop.rng) != 0)
        trace_rng_init(&w->loop.rng, now_us() ^ (uint64_t)(uintptr_t)w);
    w->log_timer = event_new(w->loop.base, -1, EV_PERSIST, log_flush_cb, w);
    struct timeval flush = tv_from_ms(LOG_FLUSH_MS);
    if (!w->log_timer || event_add(w->log_timer, &flush) != 0)
        return -1;
    if (pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    /* Only under systemd's watchdog: nothing is added to a loop that nobody watches. */
    atomic_init(&w->beat_us, 0);
    if (watchdog_beat_us()) {
        struct timeval beat = tv_from_us(watchdog_beat_us());
        w->beat_timer = event_new(w->loop.base, -1, EV_PERSIST, beat_cb, w);
        if (!w->beat_timer || event_add(w->beat_timer, &beat) != 0)
            return -1;
        atomic_store(&w->beat_us, now_us()); /* a new worker starts fresh */
    }
    /* persistent: a drain can be followed by a stop without delay (shutdown during a reload) */
    w->stop_ev = event_new(w->loop.base, w->stop_pipe[0], EV_READ | EV_PERSIST, stop_cb, w);
    if (!w->stop_ev || event_add(w->stop_ev, NULL) != 0)
        return -1;
    if (loop_dns_init(&w->loop) != 0)
        return -1;
    if (id == 0 && health_start(&w->loop, &w->health) != 0) /* one worker checks for all */
        return -1;
    return 0;
}

static void worker_free(struct worker *w)
{
    health_stop(w->health);
    close_listeners(w);
    close_connections(&w->loop);
    mirror_loop_free(&w->loop);
    if (w->loop.pools)
        upstream_pools_free(&w->loop);
    if (w->loop.dns)
        evdns_base_free(w->loop.dns, 0);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->log_timer)
        event_free(w->log_timer);
    if (w->beat_timer)
        event_free(w->beat_timer);
    close_given(w); /* the loop is gone: no registration of theirs is left */
    free(w->given);
    log_buffer_free(w->loop.log); /* writes what it holds */
    w->loop.log = NULL;
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->stop_pipe[0] >= 0) {
        close(w->stop_pipe[0]);
        close(w->stop_pipe[1]);
    }
    wakebox_free(w->loop.wakebox); /* its waiters ended with their clients */
    w->loop.wakebox = NULL;
    deadline_clock_free(w->loop.clock); /* every deadline on it has stopped with its owner */
    waitset_free(w->loop.first_wait); /* its sockets closed with their clients */
    w->loop.first_wait = NULL;
    if (w->loop.base)
        event_base_free(w->loop.base);
    metrics_shard_retire(w->loop.metrics); /* last: nothing of this worker counts any more */
    w->loop.metrics = NULL;
    recent_shard_retire(w->loop.recent);
    w->loop.recent = NULL;
    exchange_spare_free(&w->loop); /* every exchange ended with its client */
}

static void group_free(struct worker_group *g)
{
    for (int i = 0; i < g->n; i++)
        worker_free(&g->workers[i]);
    free(g->workers);
    pthread_cond_destroy(&g->closed);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static int bind_all(const struct worker_group *prev, struct worker *w, const struct config *cfg)
{
    for (int l = 0; l < cfg->nlisten; l++) {
        const struct listen_conf *lc = &cfg->listens[l];
        if (listen_address(w, prev, cfg->workers, lc->tls, lc->proxy_protocol,
                           lc->h2c ? CLIENT_H2C : CLIENT_PROXY,
                           (const struct sockaddr *)&lc->addr, lc->addrlen, lc->text) != 0)
            return -1;
    }
    if (cfg->admin_listen_text && w->loop.id == 0) /* one admin listener is plenty */
        return listen_address(w, prev, 1, false, false, CLIENT_ADMIN,
                              (const struct sockaddr *)&cfg->admin_addr, cfg->admin_addrlen,
                              cfg->admin_listen_text);
    return 0;
}

/* Descriptors a worker opens besides its listeners: epoll, timerfd, libevent's signal
 * socketpair, the stop pipe, the resolver's socket, and a margin for the sockets its first
 * clients take before the group is up. */
#define FDS_PER_WORKER 12

/* Whether `need` more descriptors fit under RLIMIT_NOFILE, so that a reload at the limit is
 * refused with a message saying why rather than by whichever call runs short (evbase.h: the
 * old workers may still take the last ones meanwhile). Counted, not probed: opening them would
 * take them from the live workers. */
static bool descriptors_available(int need)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return true;
    DIR *d = opendir("/proc/self/fd");
    if (!d) /* not even one descriptor to count with: that says it all; no /proc: libevent
             * decides */
        return errno != EMFILE && errno != ENFILE;
    long open = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        open += e->d_name[0] != '.';
    closedir(d);
    return open + need <= (long)lim.rlim_cur;
}

/* Descriptors a new group opens: FDS_PER_WORKER a worker, the admin listener, and a socket per
 * worker and address, less those an upgrade handed over, which the first group takes as they are
 * (already open, so already counted: 35 workers on 15 addresses asked for 946 more on top of the
 * 526 handed over, and a new process refused under the 1,024 a fresh start fits in). */
static int descriptors_needed(const struct config *cfg, const struct worker_group *prev)
{
    int need = cfg->workers * FDS_PER_WORKER + 1;
    for (int l = 0; l < cfg->nlisten; l++) {
        const struct listen_conf *lc = &cfg->listens[l];
        int held = prev ? 0 : upgrade_sockets_on((const struct sockaddr *)&lc->addr, lc->addrlen);
        need += cfg->workers > held ? cfg->workers - held : 0;
    }
    return need;
}

struct worker_group *workers_bind(struct generation *gen, struct worker_group *prev)
{
    const struct config *cfg = gen->cfg;
    int need = descriptors_needed(cfg, prev);
    if (!descriptors_available(need)) {
        log_problem("%d worker%s about %d free file descriptors, which the "
                    "limit (ulimit -n) does not leave",
                    cfg->workers, cfg->workers > 1 ? "s need" : " needs", need);
        return NULL;
    }
    /* A new salt per group: request ids stay unique across reloads. */
    uint32_t salt;
    if (RAND_bytes((unsigned char *)&salt, sizeof(salt)) != 1)
        salt = (uint32_t)now_us();
    struct worker_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t monotonic; /* a wall-clock step must not stretch a reload's wait */
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&g->closed, &monotonic);
    pthread_condattr_destroy(&monotonic);
    g->n = cfg->workers;
    g->workers = calloc((size_t)g->n, sizeof(*g->workers));
    if (!g->workers) {
        g->n = 0;
        group_free(g);
        return NULL;
    }
    for (int i = 0; i < g->n; i++) {
        struct worker *w = &g->workers[i];
        if (worker_init(w, g, i, gen, salt) != 0) {
            log_problem("cannot set up worker %d", i);
            g->n = i + 1;
            group_free(g);
            return NULL;
        }
        if (bind_all(prev, w, cfg) != 0) {
            g->n = i + 1;
            group_free(g);
            return NULL;
        }
    }
    return g;
}

int workers_run(struct worker_group *g)
{
    for (int i = 0; i < g->n; i++) {
        int err = pthread_create(&g->workers[i].thread, NULL, worker_main, &g->workers[i]);
        if (err != 0) {
            /* The previous group (if any) still owns its sockets and keeps serving. */
            log_problem("cannot start worker thread %d: %s", i, strerror(err));
            workers_signal_stop(g, 0);
            for (int j = 0; j < i; j++)
                pthread_join(g->workers[j].thread, NULL);
            group_free(g);
            return -1;
        }
    }
    /* Only a group that starts takes over the sockets it shares (and their queues). */
    for (int i = 0; i < g->n; i++)
        for (int l = 0; l < g->workers[i].nlisteners; l++)
            listener_take_over(g->workers[i].listeners[l]);
    return 0;
}

struct worker_group *workers_start(struct generation *gen, struct worker_group *prev)
{
    struct worker_group *g = workers_bind(gen, prev);
    return g && workers_run(g) == 0 ? g : NULL;
}

int workers_listen_fds(const struct worker_group *g, int *out, int max)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        for (int l = 0; l < g->workers[i].nlisteners; l++) {
            if (n == max)
                return -1;
            out[n++] = listener_fd(g->workers[i].listeners[l]);
        }
    return n;
}

void workers_disown(struct worker_group *g, const int *fds, int n)
{
    for (int i = 0; i < g->n; i++)
        for (int l = 0; l < g->workers[i].nlisteners; l++)
            for (int k = 0; k < n; k++)
                if (fds[k] == listener_fd(g->workers[i].listeners[l]))
                    listener_disown(g->workers[i].listeners[l]);
}

int workers_chown(struct worker_group *g, uid_t uid, gid_t gid)
{
    for (int i = 0; i < g->n; i++)
        for (int l = 0; l < g->workers[i].nlisteners; l++)
            if (listener_chown(g->workers[i].listeners[l], uid, gid) != 0)
                return -1;
    return 0;
}

void workers_signal_stop(struct worker_group *g, uint64_t drain_ms)
{
    for (int i = 0; i < g->n; i++) {
        ssize_t n = write(g->workers[i].stop_pipe[1], &drain_ms, sizeof(drain_ms));
        (void)n; /* a few eight-byte requests always fit in the pipe */
    }
}

int workers_wait_unlistened(struct worker_group *g, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&g->lock);
    while (g->unlistened < g->n && rc == 0)
        rc = pthread_cond_timedwait(&g->closed, &g->lock, &deadline);
    int done = g->unlistened == g->n;
    pthread_mutex_unlock(&g->lock);
    return done ? 0 : -1;
}

bool workers_turning(struct worker_group *g, uint64_t now, uint64_t stale_us, char *why,
                     size_t size)
{
    bool turning = true;
    for (int i = 0; i < g->n; i++) {
        struct worker *w = &g->workers[i];
        uint64_t beat = atomic_load_explicit(&w->beat_us, memory_order_relaxed);
        unsigned gen = w->loop.gen->number;
        if (beat && now > beat && now - beat > stale_us) {
            if (turning && why && size) {
                snprintf(why, size, "worker %d (generation %u) has not turned its event loop "
                         "for %llu ms: systemd's watchdog is not told",
                         i, gen, (unsigned long long)(now - beat) / 1000);
                why = NULL; /* the first one is named */
            }
            turning = false;
            if (w->stall_beat_us == beat) /* said already */
                continue;
            w->stall_beat_us = beat;
            log_error("watchdog: worker %d (generation %u) has not turned its event loop for "
                      "%llu ms: not telling systemd WATCHDOG=1 while it stands",
                      i, gen, (unsigned long long)(now - beat) / 1000);
        } else if (w->stall_beat_us) {
            log_info("watchdog: worker %d (generation %u) turns its event loop again, after "
                     "standing about %llu ms: telling systemd WATCHDOG=1 again",
                     i, gen, (unsigned long long)((beat ? beat : now) - w->stall_beat_us) / 1000);
            w->stall_beat_us = 0;
        }
    }
    return turning;
}

void workers_join(struct worker_group *g)
{
    for (int i = 0; i < g->n; i++)
        pthread_join(g->workers[i].thread, NULL);
}

void workers_free(struct worker_group *g)
{
    group_free(g);
}

void workers_stop(struct worker_group *g, uint64_t drain_ms)
{
    if (!g)
        return;
    workers_signal_stop(g, drain_ms);
    workers_join(g);
    group_free(g);
}
