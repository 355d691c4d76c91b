/*
 * main.c — command line, start-up and signals.
 *
 *   portico -c FILE         run
 *   portico -t -c FILE      check the configuration (exit 0, or 1 with FILE:LINE: messages)
 *   portico codes           list the status-code registry
 *   portico --version | --help
 *
 * Signals are blocked in every thread and taken synchronously by the main thread (sigwait), so
 * no handler ever runs inside the event loops.
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <openssl/opensslv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/codes.h"
#include "portico/config.h"
#include "portico/generation.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/sim.h"
#include "portico/util.h"
#include "portico/worker.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "0.0.0"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: portico [-t] [-c FILE]   run (or, with -t, check) the configuration FILE\n"
            "       portico codes            list the HTTP status codes Portico knows\n"
            "       portico --version        print the version\n"
            "       portico --help           this text\n"
            "\n"
            "FILE defaults to conf/portico.ini. See README.md for the configuration keys.\n");
}

/* `origin = sim` becomes the simulator's loopback address, once, before the workers see the
 * configuration: the request path never asks the simulator anything. The simulator starts
 * with the first configuration that uses it and serves every later one. 0, or -1. */
static int resolve_sim(struct config *cfg)
{
    for (int u = 0; u < cfg->nupstreams; u++) {
        for (int o = 0; o < cfg->upstreams[u].norigins; o++) {
            struct origin_conf *oc = &cfg->upstreams[u].origins[o];
            if (!oc->is_sim)
                continue;
            uint16_t port = sim_port();
            if (!port && sim_start(&port) != 0)
                return -1;
            oc->port = port;
            numeric_sockaddr("127.0.0.1", port, &oc->addr, &oc->addrlen);
        }
    }
    return 0;
}

/* The configuration and its runtime state; NULL (cfg freed) when either cannot be set up. */
static struct generation *prepare(struct config *cfg, unsigned number)
{
    if (resolve_sim(cfg) != 0) {
        cfg_free(cfg);
        return NULL;
    }
    return generation_new(cfg, number);
}

#define DRAIN_MS 30000 /* how long a reload lets the old workers finish their exchanges */
#define UNLISTEN_MS 5000 /* how long a reload waits for the old workers to stop accepting */

/* A replaced worker group finishing its exchanges in the background, so that the main thread
 * keeps taking signals (another reload, or a shutdown that cuts the drain short). */
struct drain {
    struct worker_group *group;
    struct generation *gen;
    pthread_t thread;
    struct drain *next;
};

static struct drain *drains;

static void *drain_main(void *arg)
{
    workers_join(((struct drain *)arg)->group);
    log_info("reload: the previous workers have finished their exchanges");
    return NULL;
}

/* Frees drains whose workers are gone; with `hurry`, first tells the others to stop now. */
static void reap_drains(bool hurry)
{
    for (struct drain **pp = &drains; *pp;) {
        struct drain *d = *pp;
        if (hurry)
            workers_signal_stop(d->group, 0);
        if (hurry ? pthread_join(d->thread, NULL) != 0 : pthread_tryjoin_np(d->thread, NULL) != 0) {
            pp = &d->next;
            continue;
        }
        workers_free(d->group);
        generation_free(d->gen);
        *pp = d->next;
        free(d);
    }
}

/* SIGHUP: load the file again; only a configuration that loads, prepares and binds replaces the
 * running one, which otherwise keeps serving untouched. */
static void reload(const char *path, struct generation **gen, struct worker_group **group)
{
    int nerrors = 0;
    log_info("SIGHUP: reloading %s", path);
    struct config *cfg = cfg_load(path, stderr, &nerrors);
    if (!cfg) {
        log_error("reload: %s has %d error%s; still serving the previous configuration", path,
                  nerrors, nerrors == 1 ? "" : "s");
        metrics_config_reload(RELOAD_INVALID);
        return;
    }
    struct generation *next = prepare(cfg, (*gen)->number + 1);
    if (!next) {
        log_error("reload: cannot prepare the new configuration; still serving the previous one");
        metrics_config_reload(RELOAD_FAILED);
        return;
    }
    struct worker_group *started = workers_start(next, *group);
    if (!started) {
        log_error("reload: cannot start workers for the new configuration; still serving the "
                  "previous one");
        metrics_config_reload(RELOAD_FAILED);
        generation_free(next);
        return;
    }
    metrics_config_reload(RELOAD_OK);
    metrics_config_generation(next->number);
    if (log_error_open(next->cfg->error_log, next->cfg->log_level) != 0)
        log_error("reload: error_log %s: %s; keeping the previous one", next->cfg->error_log,
                  strerror(errno));
    if (log_open(next->cfg->access_log) != 0)
        log_error("reload: access_log %s: %s; keeping the previous log", next->cfg->access_log,
                  strerror(errno));
    /* The new workers accept already; the old ones finish what they have, then go. */
    bool still_listening = false;
    struct drain *d = calloc(1, sizeof(*d));
    if (d) {
        d->group = *group;
        d->gen = *gen;
        workers_signal_stop(d->group, DRAIN_MS);
        still_listening = workers_wait_unlistened(d->group, UNLISTEN_MS) != 0;
        if (pthread_create(&d->thread, NULL, drain_main, d) != 0) {
            workers_join(d->group); /* drain in this thread, then */
            workers_free(d->group);
            generation_free(d->gen);
            free(d);
        } else {
            d->next = drains;
            drains = d;
        }
    } else {
        workers_stop(*group, DRAIN_MS);
        generation_free(*gen);
    }
    *gen = next;
    *group = started;
    /* The generation tells one reload's line from the next (1 is the configuration started). */
    const struct config *c = next->cfg;
    if (still_listening) /* only a worker stuck in its loop would do that: say so, not "live" */
        log_error("reload: %s serves (generation %u), but the previous workers still accept "
                  "connections after %d ms",
                  path, next->number, UNLISTEN_MS);
    else
        log_info("reload: %s is live (generation %u, %d worker%s, %s profile)", path,
                 next->number, c->workers, c->workers > 1 ? "s" : "", profile_name(c->profile));
}

static int run(const char *path, struct config *cfg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread created below */
    signal(SIGPIPE, SIG_IGN);

    if (log_error_open(cfg->error_log, cfg->log_level) != 0) {
        fprintf(stderr, "portico: error_log %s: %s\n", cfg->error_log, strerror(errno));
        cfg_free(cfg);
        return 1;
    }
    if (log_open(cfg->access_log) != 0) {
        log_error("access_log %s: %s", cfg->access_log, strerror(errno));
        cfg_free(cfg);
        return 1;
    }
    struct generation *gen = prepare(cfg, 1);
    if (!gen) {
        sim_stop();
        return 1;
    }
    struct worker_group *group = workers_start(gen, NULL);
    if (!group) {
        sim_stop();
        generation_free(gen);
        return 1;
    }
    cfg = NULL; /* the generation's now */
    metrics_config_generation(gen->number);
    const struct config *c = gen->cfg;
    for (int i = 0; i < c->nlisten; i++)
        log_info("portico %s listening on %s (%d worker%s, %s profile)", PORTICO_VERSION,
                 c->listens[i].text, c->workers, c->workers > 1 ? "s" : "",
                 profile_name(c->profile));
    if (sim_port())
        log_info("simulator origin on 127.0.0.1:%u (origin = sim)", sim_port());
    if (c->admin_listen_text)
        log_info("admin endpoint on %s (/metrics, /healthz)", c->admin_listen_text);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reap_drains(false);
            reload(path, &gen, &group);
            continue;
        }
        if (sig == SIGUSR1) { /* logrotate's postrotate: the files were renamed */
            if (log_reopen() != 0)
                log_error("SIGUSR1: cannot reopen the logs: %s", strerror(errno));
            else
                log_info("SIGUSR1: logs reopened");
            continue;
        }
        log_info("signal %d: shutting down", sig);
        break;
    }
    workers_stop(group, 0);
    reap_drains(true);
    sim_stop();
    metrics_free_all();
    log_close();
    generation_free(gen);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = "conf/portico.ini";
    bool test_only = false;
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    if (argc >= 2 && strcmp(argv[1], "codes") == 0)
        return codes_main(argc - 1, argv + 1);
    int opt;
    while ((opt = getopt_long(argc, argv, "c:thv", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'v':
            printf("portico %s (libevent %s, %s)\n", PORTICO_VERSION, event_get_version(),
                   OPENSSL_VERSION_TEXT);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "portico: libevent without thread support\n");
        return 1;
    }
    int nerrors = 0;
    struct config *cfg = cfg_load(path, stderr, &nerrors);
    if (!cfg) {
        fprintf(stderr, "portico: %s: %d error%s\n", path, nerrors, nerrors == 1 ? "" : "s");
        return 1;
    }
    if (test_only) {
        printf("portico: %s: configuration ok (%d upstream%s, %d route%s)\n", path,
               cfg->nupstreams, cfg->nupstreams == 1 ? "" : "s", cfg->nroutes,
               cfg->nroutes == 1 ? "" : "s");
        cfg_free(cfg);
        return 0;
    }
    return run(path, cfg);
}
