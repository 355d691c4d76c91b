/*
 * worker.c — worker threads: one event_base each, listeners with SO_REUSEPORT, evdns, pools.
 *
 * Workers come in groups, one per loaded configuration. A reload starts the new group first on
 * the old group's listening sockets (taken over, queues included; new SO_REUSEPORT sockets only
 * for new addresses or extra workers), waits until the old workers stop accepting, then lets
 * them drain: idle connections closed, exchanges in flight finished.
 */
#include "portico/worker.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "portico/client.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/upstream.h"
#include "portico/util.h"

/* One listening socket of one worker. A reload's new group may share the socket (same fd) with
 * the old one; whoever owns it closes it. */
struct listener_ctx {
    struct worker *w;
    struct evconnlistener *lis;
    bool tls;
    bool admin;
    int fd;
    struct sockaddr_storage addr;          /* what it is bound to: the next group looks here */
    socklen_t addrlen;
    struct listener_ctx *inherited;        /* the previous group's listener sharing our socket */
    atomic_bool owns_fd;                   /* closes it; passes to a newer group that shares it */
    bool accept_failing;                   /* accept() failed since it last worked: said once */
    struct event *resume;                  /* re-enables the listener after a failed accept */
};

#define ACCEPT_PAUSE_MS 100

struct worker_group {
    struct worker *workers;
    int n;
    pthread_mutex_t lock;                  /* guards unlistened, signalled through closed */
    pthread_cond_t closed;
    int unlistened;                        /* workers whose listeners are closed */
};

static uint32_t process_salt;

/* 17 hex digits: salt (8), worker (2), counter (7). Formatted by hand: one per request. */
void worker_request_id(struct worker *w, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = ((uint64_t)w->id_salt << 8) | ((unsigned)w->id & 0xff);
    uint64_t lo = ++w->next_request & 0xfffffff;
    char id[18];
    for (int i = 9; i >= 0; i--, hi >>= 4)
        id[i] = hex[hi & 15];
    for (int i = 16; i >= 10; i--, lo >>= 4)
        id[i] = hex[lo & 15];
    id[17] = '\0';
    snprintf(buf, size, "%s", id);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    struct listener_ctx *ctx = arg;
    ctx->accept_failing = false;
    struct client *c = client_new(ctx->w, fd, sa, salen, ctx->tls);
    if (c && ctx->admin)
        client_set_admin(c);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct listener_ctx *ctx = arg;
    evconnlistener_enable(ctx->lis);
}

/* accept() failed, typically out of descriptors (EMFILE, ENFILE) or memory: the connection
 * stays queued and the socket readable, so libevent would call us again at once, forever.
 * Pause this listener for ACCEPT_PAUSE_MS instead (what nginx does), and say it once until an
 * accept succeeds again. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct listener_ctx *ctx = arg;
    int err = errno;
    if (!ctx->accept_failing)
        log_error("accept: %s; pausing accepts on this socket for %d ms at a time until it works",
                  strerror(err), ACCEPT_PAUSE_MS);
    ctx->accept_failing = true;
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    if (!ctx->resume)
        ctx->resume = evtimer_new(ctx->w->base, accept_resume_cb, ctx);
    if (ctx->resume && evtimer_add(ctx->resume, &pause) == 0)
        evconnlistener_disable(l);
}

/* Takes the connections still queued on listeners whose socket closes with us: with
 * SO_REUSEPORT each socket has its own queue, and closing it would reset them. A socket a newer
 * group shares stays open, and its queue is the newer group's to serve. */
static void accept_queued(struct worker *w)
{
    for (int i = 0; i < w->nlisteners; i++) {
        struct listener_ctx *ctx = w->listeners[i];
        if (!atomic_load(&ctx->owns_fd))
            continue;
        for (int n = 0; n < 1024; n++) {
            struct sockaddr_storage sa;
            socklen_t salen = sizeof(sa);
            int fd = accept4(ctx->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            accept_cb(ctx->lis, fd, (struct sockaddr *)&sa, (int)salen, ctx);
        }
    }
}

/* Closes the listeners and, the first time, tells the group: a reload waits for every old
 * worker to get here before it calls the new configuration live. */
static void close_listeners(struct worker *w)
{
    for (int i = 0; i < w->nlisteners; i++) {
        struct listener_ctx *ctx = w->listeners[i];
        evconnlistener_free(ctx->lis);
        if (ctx->resume)
            event_free(ctx->resume);
        if (atomic_load(&ctx->owns_fd))
            close(ctx->fd);
        free(ctx);
    }
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = w->caplisteners = 0;
    if (w->group && !w->unlistened) {
        w->unlistened = true;
        pthread_mutex_lock(&w->group->lock);
        w->group->unlistened++;
        pthread_cond_broadcast(&w->group->closed);
        pthread_mutex_unlock(&w->group->lock);
    }
}

/* Closes every connection and ends the loop. */
static void stop_now(struct worker *w)
{
    w->draining = false; /* client_free must not call back in here */
    close_listeners(w);
    struct client *c;
    while ((c = TAILQ_FIRST(&w->clients)) != NULL)
        client_free(c);
    upstream_pools_free(w);
    event_base_loopbreak(w->base);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    stop_now(arg);
}

void worker_client_gone(struct worker *w)
{
    if (w->draining && TAILQ_EMPTY(&w->clients))
        stop_now(w);
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
    if (w->draining)
        return; /* already draining: only a stop without delay changes anything */
    w->draining = true; /* from now on, upconn_release closes instead of pooling */
    accept_queued(w);
    close_listeners(w);
    /* Connections between requests go now; the others close after their exchange. */
    clients_drain(w);
    if (TAILQ_EMPTY(&w->clients)) {
        stop_now(w);
        return;
    }
    struct timeval tv = {(time_t)(drain_ms / 1000), (suseconds_t)(drain_ms % 1000) * 1000};
    w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
    if (!w->drain_timer || evtimer_add(w->drain_timer, &tv) != 0)
        stop_now(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    /* Cancelled DNS lookups report back through the loop: let them land before freeing. */
    for (int i = 0; i < 50 && event_base_loop(w->base, EVLOOP_NONBLOCK) == 0; i++)
        ;
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
                       const struct sockaddr *sa, socklen_t salen, struct listener_ctx **out,
                       int max)
{
    int k = 0, n = 0;
    for (int j = 0; prev && j < prev->n; j++) {
        const struct worker *old = &prev->workers[j];
        for (int i = 0; i < old->nlisteners; i++) {
            struct listener_ctx *cand = old->listeners[i];
            if (cand->addrlen != salen || memcmp(&cand->addr, sa, salen) != 0)
                continue;
            if (k % targets == index && n < max)
                out[n++] = cand;
            k++;
        }
    }
    return n;
}

static int add_listener(struct worker *w, struct listener_ctx *ctx)
{
    if (w->nlisteners == w->caplisteners) {
        int cap = w->caplisteners ? w->caplisteners * 2 : 4;
        struct listener_ctx **grown = realloc(w->listeners, (size_t)cap * sizeof(*grown));
        if (!grown)
            return -1;
        w->listeners = grown;
        w->caplisteners = cap;
    }
    w->listeners[w->nlisteners++] = ctx;
    return 0;
}

/* One listener of worker w on sa: on fd `from->fd` when from is given, else on a new
 * SO_REUSEPORT socket. The same descriptor, not a dup: the old worker's epoll applies its
 * event_del a loop turn late (changelist); on a dup already closed by then, the registration
 * would outlive it. */
static int listen_on(struct worker *w, struct listener_ctx *from, bool tls, bool admin,
                     const struct sockaddr *sa, socklen_t salen, const char *text)
{
    struct listener_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return -1;
    ctx->w = w;
    ctx->tls = tls;
    ctx->admin = admin;
    unsigned flags = LEV_OPT_CLOSE_ON_EXEC; /* close_listeners closes what it owns */
    if (from) {
        ctx->lis = evconnlistener_new(w->base, accept_cb, ctx, flags, 0, from->fd);
        ctx->inherited = from;
    } else {
        flags |= LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT;
        ctx->lis = evconnlistener_new_bind(w->base, accept_cb, ctx, flags, 1024, sa, (int)salen);
        atomic_store(&ctx->owns_fd, true);
    }
    if (!ctx->lis) {
        fprintf(stderr, "portico: cannot listen on %s: %s\n", text, strerror(errno));
        free(ctx);
        return -1;
    }
    evconnlistener_set_error_cb(ctx->lis, accept_error_cb);
    ctx->fd = evconnlistener_get_fd(ctx->lis);
    memcpy(&ctx->addr, sa, salen);
    ctx->addrlen = salen;
    if (add_listener(w, ctx) != 0) {
        evconnlistener_free(ctx->lis);
        if (atomic_load(&ctx->owns_fd))
            close(ctx->fd);
        free(ctx);
        return -1;
    }
    return 0;
}

/* Worker w's listeners for one address: the previous group's sockets it takes over, or a new
 * one when there are none for it. */
static int listen_address(struct worker *w, const struct worker_group *prev, int targets,
                          bool tls, bool admin, const struct sockaddr *sa, socklen_t salen,
                          const char *text)
{
    struct listener_ctx *from[CFG_MAX_WORKERS]; /* a group never has more sockets per address */
    int n = inheritable(prev, w->id, targets, sa, salen, from, CFG_MAX_WORKERS);
    if (n == 0)
        return listen_on(w, NULL, tls, admin, sa, salen, text);
    for (int i = 0; i < n; i++)
        if (listen_on(w, from[i], tls, admin, sa, salen, text) != 0)
            return -1;
    return 0;
}

static int worker_init(struct worker *w, struct worker_group *g, int id, const struct config *cfg)
{
    w->group = g;
    w->id = id;
    w->cfg = cfg;
    w->id_salt = process_salt;
    w->stop_pipe[0] = w->stop_pipe[1] = -1;
    TAILQ_INIT(&w->clients);
    /* Each base is touched by its own thread only, so it needs no locks (they cost ~6% of CPU
     * under load); the stop request crosses threads through a pipe instead of event_active.
     * The epoll changelist folds the add/del churn of bufferevents into fewer syscalls.
     * Precise timers: the coarse clock lets phase timers fire up to a tick (4 ms) early. */
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST |
                                  EVENT_BASE_FLAG_PRECISE_TIMER);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->metrics = metrics_shard_new();
    if (!w->base || !w->metrics || upstream_pools_init(w) != 0)
        return -1;
    if (pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    /* persistent: a drain can be followed by a stop without delay (shutdown during a reload) */
    w->stop_ev = event_new(w->base, w->stop_pipe[0], EV_READ | EV_PERSIST, stop_cb, w);
    if (!w->stop_ev || event_add(w->stop_ev, NULL) != 0)
        return -1;
    /* The resolver: the configured nameserver, or resolv.conf; /etc/hosts either way. */
    w->dns = evdns_base_new(w->base, cfg->resolver ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns)
        return -1;
    if (cfg->resolver) {
        if (evdns_base_nameserver_ip_add(w->dns, cfg->resolver) != 0) {
            fprintf(stderr, "portico: resolver %s: cannot use it\n", cfg->resolver);
            return -1;
        }
        evdns_base_load_hosts(w->dns, NULL);
    }
    /* Our dns_timeout decides; evdns must not give up first and blur timeout into failure. */
    uint64_t longest = 0;
    for (int i = 0; i < cfg->nupstreams; i++)
        longest = MAX(longest, cfg->upstreams[i].timers_ms[TIMER_DNS]);
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%llu", (unsigned long long)(longest / 1000 + 2));
    evdns_base_set_option(w->dns, "timeout:", timeout);
    evdns_base_set_option(w->dns, "attempts:", "1");
    evdns_base_set_option(w->dns, "randomize-case:", "0");
    return 0;
}

static void worker_free(struct worker *w)
{
    close_listeners(w);
    upstream_pools_free(w);
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->stop_pipe[0] >= 0) {
        close(w->stop_pipe[0]);
        close(w->stop_pipe[1]);
    }
    if (w->base)
        event_base_free(w->base);
    metrics_shard_retire(w->metrics); /* last: nothing of this worker counts any more */
    w->metrics = NULL;
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
        if (listen_address(w, prev, cfg->workers, lc->tls, false,
                           (const struct sockaddr *)&lc->addr, lc->addrlen, lc->text) != 0)
            return -1;
    }
    if (cfg->admin_listen_text && w->id == 0) /* one admin listener is plenty */
        return listen_address(w, prev, 1, false, true, (const struct sockaddr *)&cfg->admin_addr,
                              cfg->admin_addrlen, cfg->admin_listen_text);
    return 0;
}

/* Descriptors a worker opens besides its listeners: epoll, timerfd, libevent's signal
 * socketpair, the stop pipe, the resolver's socket, and a margin for the sockets its first
 * clients take before the group is up. */
#define FDS_PER_WORKER 12

/* Whether `need` more descriptors fit under RLIMIT_NOFILE: libevent exits the whole process
 * when a new event_base cannot get its own (evsig_init_), so a reload must not start one
 * without. Counted, not probed: opening them would take them from the live workers. */
static bool descriptors_available(int need)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return true;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return true; /* no /proc: nothing to count with, libevent decides */
    long open = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        open += e->d_name[0] != '.';
    closedir(d);
    return open + need <= (long)lim.rlim_cur;
}

struct worker_group *workers_start(const struct config *cfg, struct worker_group *prev)
{
    int need = cfg->workers * (FDS_PER_WORKER + cfg->nlisten) + 1;
    if (!descriptors_available(need)) {
        fprintf(stderr, "portico: %d worker%s about %d free file descriptors, which the "
                        "limit (ulimit -n) does not leave\n",
                cfg->workers, cfg->workers > 1 ? "s need" : " needs", need);
        return NULL;
    }
    /* A new salt per group: request ids stay unique across reloads. */
    if (RAND_bytes((unsigned char *)&process_salt, sizeof(process_salt)) != 1)
        process_salt = (uint32_t)now_us();
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
        if (worker_init(w, g, i, cfg) != 0) {
            fprintf(stderr, "portico: cannot set up worker %d\n", i);
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
    for (int i = 0; i < g->n; i++) {
        int err = pthread_create(&g->workers[i].thread, NULL, worker_main, &g->workers[i]);
        if (err != 0) {
            /* The previous group (if any) still owns its sockets and keeps serving. */
            fprintf(stderr, "portico: cannot start worker thread %d: %s\n", i, strerror(err));
            workers_signal_stop(g, 0);
            for (int j = 0; j < i; j++)
                pthread_join(g->workers[j].thread, NULL);
            group_free(g);
            return NULL;
        }
    }
    /* Only a group that starts takes over the sockets it shares (and their queues). */
    for (int i = 0; i < g->n; i++) {
        for (int l = 0; l < g->workers[i].nlisteners; l++) {
            struct listener_ctx *ctx = g->workers[i].listeners[l];
            if (ctx->inherited) {
                atomic_store(&ctx->inherited->owns_fd, false);
                atomic_store(&ctx->owns_fd, true);
                ctx->inherited = NULL; /* the old group may go: no pointer into it is kept */
            }
        }
    }
    return g;
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
