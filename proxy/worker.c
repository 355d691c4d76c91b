/*
 * worker.c — worker threads: one event_base each, listeners with SO_REUSEPORT, evdns, pools.
 */
#include "portico/worker.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "portico/client.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/upstream.h"
#include "portico/util.h"

struct listener_ctx {
    struct worker *w;
    bool tls;
    bool admin;
};

static struct worker *workers;
static struct listener_ctx *contexts; /* [worker][listen + admin] */
static int nworkers;
static uint32_t process_salt;

void worker_request_id(struct worker *w, char *buf, size_t size)
{
    snprintf(buf, size, "%08x%02x%07llx", w->id_salt, (unsigned)w->id & 0xff,
             (unsigned long long)(++w->next_request & 0xfffffff));
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    struct listener_ctx *ctx = arg;
    struct client *c = client_new(ctx->w, fd, sa, salen, ctx->tls);
    if (c && ctx->admin)
        client_set_admin(c);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l, (void)arg;
    /* EMFILE and friends: libevent keeps the listener; say it once per event. */
    log_error("accept: %s", strerror(errno));
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct worker *w = arg;
    for (int i = 0; i < w->nlisteners; i++) {
        evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    w->nlisteners = 0;
    struct client *c;
    while ((c = TAILQ_FIRST(&w->clients)) != NULL)
        client_free(c);
    upstream_pools_free(w);
    event_base_loopbreak(w->base);
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

static struct evconnlistener *bind_listener(struct worker *w, struct listener_ctx *ctx,
                                            const struct sockaddr *sa, socklen_t salen,
                                            const char *text)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
                     LEV_OPT_CLOSE_ON_EXEC;
    struct evconnlistener *l =
        evconnlistener_new_bind(w->base, accept_cb, ctx, flags, 1024, sa, (int)salen);
    if (!l) {
        fprintf(stderr, "portico: cannot listen on %s: %s\n", text, strerror(errno));
        return NULL;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    return l;
}

static int worker_init(struct worker *w, int id, const struct config *cfg)
{
    w->id = id;
    w->cfg = cfg;
    w->id_salt = process_salt;
    TAILQ_INIT(&w->clients);
    /* Each base is touched by its own thread only, so it needs no locks (they cost ~6% of CPU
     * under load); the stop request crosses threads through a pipe instead of event_active.
     * The epoll changelist folds the add/del churn of bufferevents into fewer syscalls. */
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    /* Precise timers: the coarse clock lets phase timers fire up to a tick (4 ms) early. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST |
                                  EVENT_BASE_FLAG_PRECISE_TIMER);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->metrics = metrics_shard_new();
    if (!w->base || !w->metrics || upstream_pools_init(w) != 0)
        return -1;
    if (pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    w->stop_ev = event_new(w->base, w->stop_pipe[0], EV_READ, stop_cb, w);
    if (w->stop_ev)
        event_add(w->stop_ev, NULL);
    /* The resolver: the configured nameserver, or resolv.conf; /etc/hosts either way. */
    w->dns = evdns_base_new(w->base, cfg->resolver ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns || !w->stop_ev)
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
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->stop_pipe[0] > 0) {
        close(w->stop_pipe[0]);
        close(w->stop_pipe[1]);
    }
    upstream_pools_free(w);
    if (w->base)
        event_base_free(w->base);
}

int workers_start(const struct config *cfg)
{
    int per = cfg->nlisten + (cfg->admin_listen_text ? 1 : 0);
    if (RAND_bytes((unsigned char *)&process_salt, sizeof(process_salt)) != 1)
        process_salt = (uint32_t)now_us();
    nworkers = cfg->workers;
    workers = calloc((size_t)nworkers, sizeof(*workers));
    contexts = calloc((size_t)(nworkers * per), sizeof(*contexts));
    if (!workers || !contexts)
        goto fail;
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        if (worker_init(w, i, cfg) != 0) {
            fprintf(stderr, "portico: cannot set up worker %d\n", i);
            goto fail;
        }
        for (int l = 0; l < per; l++) {
            struct listener_ctx *ctx = &contexts[i * per + l];
            ctx->w = w;
            if (l < cfg->nlisten) {
                const struct listen_conf *lc = &cfg->listens[l];
                ctx->tls = lc->tls;
                w->listeners[w->nlisteners] = bind_listener(
                    w, ctx, (const struct sockaddr *)&lc->addr, lc->addrlen, lc->text);
            } else if (i == 0) { /* one admin listener is plenty */
                ctx->admin = true;
                w->listeners[w->nlisteners] =
                    bind_listener(w, ctx, (const struct sockaddr *)&cfg->admin_addr,
                                  cfg->admin_addrlen, cfg->admin_listen_text);
            } else {
                continue;
            }
            if (!w->listeners[w->nlisteners])
                goto fail;
            w->nlisteners++;
        }
    }
    for (int i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            fprintf(stderr, "portico: cannot start worker thread %d: %s\n", i, strerror(errno));
            exit(1); /* at startup only: nothing is serving yet */
        }
    }
    return 0;
fail:
    for (int i = 0; i < nworkers && workers; i++)
        for (int l = 0; l < workers[i].nlisteners; l++)
            evconnlistener_free(workers[i].listeners[l]);
    for (int i = 0; i < nworkers && workers; i++)
        worker_free(&workers[i]);
    free(workers);
    free(contexts);
    workers = NULL;
    contexts = NULL;
    nworkers = 0;
    return -1;
}

void workers_stop(void)
{
    for (int i = 0; i < nworkers; i++) {
        ssize_t n = write(workers[i].stop_pipe[1], "x", 1);
        (void)n; /* the pipe is empty: one byte always fits */
    }
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < nworkers; i++)
        worker_free(&workers[i]);
    free(workers);
    free(contexts);
    workers = NULL;
    contexts = NULL;
    nworkers = 0;
}
