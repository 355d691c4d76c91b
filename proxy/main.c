/*
 * main.c — command line, start-up and signals.
 *
 *   portico -c FILE         run
 *   portico -t -c FILE      check the configuration (exit 0, or 1 with FILE:LINE: messages)
 *   portico codes           list the status-code registry
 *   portico probe URL       one request through the request path, with its timeline
 *   portico --version | --help
 *
 * Signals are blocked in every thread and taken synchronously by the main thread (sigwait), so
 * no handler ever runs inside the event loops:
 *   SIGHUP                   reload the configuration file
 *   SIGUSR1                  reopen the access and error logs (after a rotation)
 *   SIGTERM, SIGINT, SIGQUIT stop: accept nothing more, close idle connections, let exchanges in
 *                            flight finish within shutdown_timeout, exit 0
 *   SIGTERM or SIGINT again  stop now: close every connection, exit 0
 *   SIGUSR2                  binary upgrade: start the binary again (the path it was started
 *                            from), hand it every listening socket and address claim, and
 *                            once it serves, stop as on SIGTERM (upgrade.h)
 *
 * Start-up: the configuration is loaded, the soft descriptor limit raised to the hard one, the
 * listen addresses claimed (addrlock.h: no other process may hold them), the sockets bound and
 * the files opened, the pid file written, then root's privileges dropped, and only then do the
 * workers run. Under systemd (NOTIFY_SOCKET) the start, each reload and the stop are told to it
 * (notify.h), and with WatchdogSec= the signal wait times out to tell its watchdog that every
 * loop turns (watchdog.h).
 */
#include <event2/event.h>
#include <event2/thread.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "portico/addrlock.h"
#include "portico/codes.h"
#include "portico/config.h"
#include "portico/evmem.h"
#include "portico/generation.h"
#include "portico/heap.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/notify.h"
#include "portico/pidfile.h"
#include "portico/privileges.h"
#include "portico/probe.h"
#include "portico/recent.h"
#include "portico/sim.h"
#include "portico/ticket.h"
#include "portico/upgrade.h"
#include "portico/util.h"
#include "portico/watchdog.h"
#include "portico/worker.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "0.0.0"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: portico [-t] [-c FILE]   run (or, with -t, check) the configuration FILE\n"
            "       portico codes            list the HTTP status codes Portico knows\n"
            "       portico probe URL        one request the way Portico sends it, timed by phase\n"
            "       portico -v | --version   print the version\n"
            "       portico -h | --help      this text\n"
            "\n"
            "-c is also --config=FILE, -t --test. FILE defaults to conf/portico.ini.\n"
            "The configuration keys: portico(8), README.md.\n");
}

/* The configuration and its runtime state; NULL (cfg freed) when either cannot be set up. */
static struct generation *prepare(struct config *cfg, unsigned number)
{
    if (sim_resolve(cfg) != 0) {
        cfg_free(cfg);
        return NULL;
    }
    return generation_new(cfg, number);
}

#define UNLISTEN_MS 5000 /* how long a reload or stop waits for workers to stop accepting */
#define STOP_SLACK_MS 5000 /* asked of systemd beyond that and shutdown_timeout: the joins */

/* The process: serving; stopping gracefully (SIGTERM, SIGINT, SIGQUIT: nothing accepted,
 * exchanges in flight finish within shutdown_timeout); stopping now (a second SIGTERM/SIGINT). */
#define RUN_STATE_LIST(X)                                                                          \
    X(RUN_SERVING, "serving")                                                                      \
    X(RUN_STOPPING, "stopping")                                                                    \
    X(RUN_HURRYING, "stopping now")

enum run_state {
#define X(id, name) id,
    RUN_STATE_LIST(X)
#undef X
};

static const char *const run_state_names[] = {
#define X(id, name) [id] = name,
    RUN_STATE_LIST(X)
#undef X
};

/* A drain thread tells the main thread it is done with this signal (blocked everywhere, taken
 * by sigwait like the others): the main thread keeps taking signals while groups drain. One
 * sent from outside only makes the main thread look at its drains. */
#define WAKE_SIGNAL SIGRTMIN

/* A worker group finishing its exchanges in the background: a reload's previous workers, or
 * every group once Portico stops. */
struct drain {
    struct worker_group *group;
    struct generation *gen;
    const char *done_msg;                  /* logged when its workers are gone; NULL: nothing */
    pthread_t thread;
    pthread_t wake;                        /* the main thread */
    atomic_bool done;                      /* set before the wake: the thread is about to end */
    struct drain *next;
};

struct process {
    const char *path;                      /* the configuration file */
    struct generation *gen;                /* the serving generation; NULL once stopping */
    struct worker_group *group;            /* its workers */
    struct drain *drains;
    struct addr_locks *locks;              /* the listen and admin addresses we hold */
    char *pid_file;                        /* written at start; NULL: none */
    int pid_claim;                         /* pidfile_claim's, while pid_file is ours; or -1 */
    enum run_state state;
    int handed[UPGRADE_MAX_FDS];           /* an upgrade's descriptors: the listening sockets */
    int nhanded_sockets;                   /* first (once ready: those the new one took), then
                                              the claims */
    int nhanded;
    bool handed_over;                      /* the new process serves: our sockets are its */
    bool stalled;                          /* a worker's loop stands: no WATCHDOG=1 (watchdog.h) */
    char status[512];                      /* the last STATUS= but a stall's: said again after it */
};

static void *drain_main(void *arg)
{
    struct drain *d = arg;
    workers_join(d->group);
    if (d->done_msg)
        log_info("%s", d->done_msg);
    atomic_store(&d->done, true);
    pthread_kill(d->wake, WAKE_SIGNAL);
    return NULL;
}

/* Frees the drains whose workers are gone; with `all`, waits for every one (they end by their
 * own deadline). */
static void reap_drains(struct process *p, bool all)
{
    for (struct drain **pp = &p->drains; *pp;) {
        struct drain *d = *pp;
        if (!all && !atomic_load(&d->done)) {
            pp = &d->next;
            continue;
        }
        pthread_join(d->thread, NULL);
        workers_free(d->group);
        generation_free(d->gen);
        *pp = d->next;
        free(d);
    }
}

/* Tells a group to stop accepting and finish its exchanges within drain_ms (0: close everything
 * now), waits until its listeners are closed, and lets it drain in a thread of its own. Takes
 * group and gen over. Returns whether the listeners closed in time. */
static bool start_drain(struct process *p, struct worker_group *group, struct generation *gen,
                        uint64_t drain_ms, const char *done_msg)
{
    workers_signal_stop(group, drain_ms);
    bool closed = workers_wait_unlistened(group, UNLISTEN_MS) == 0;
    struct drain *d = calloc(1, sizeof(*d));
    if (d) {
        *d = (struct drain){.group = group, .gen = gen, .done_msg = done_msg,
                            .wake = pthread_self()};
        atomic_init(&d->done, false);
    }
    if (!d || pthread_create(&d->thread, NULL, drain_main, d) != 0) {
        workers_join(group); /* drain in this thread, then */
        workers_free(group);
        generation_free(gen);
        free(d);
        return closed;
    }
    d->next = p->drains;
    p->drains = d;
    return closed;
}

static bool same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Loads the file for a reload, its FILE:LINE messages written to stderr as at start and to the
 * error log file (log_problem): a daemon's stderr may lead nowhere, and those lines say what to
 * fix. Without memory to collect them they go to stderr alone. */
static struct config *reload_load(const char *path, int *nerrors)
{
    char *text = NULL;
    size_t len = 0;
    FILE *messages = open_memstream(&text, &len);
    struct config *cfg = cfg_load(path, messages ? messages : stderr, nerrors);
    if (messages && fclose(messages) == 0) {
        for (char *line = text, *end; *line; line = end + 1) {
            if (!(end = strchr(line, '\n'))) /* cfg_report ends every message with one */
                break;
            log_problem("%.*s", (int)(end - line), line);
        }
    }
    free(text);
    return cfg;
}

/* Several certificates served: how many, which says the pairs were all taken, and for how
 * many sets of names when some serve one name with several key types. */
static void certs_served(const struct config *cfg, char *buf, size_t size)
{
    int certs = cfg->server_ssl_ctx ? cfg->ntls_pairs : 0, entries = 0;
    for (int i = 0; i < certs; i++)
        entries += cfg->tls_pairs[i].entry == i;
    if (certs > 1 && entries == certs)
        snprintf(buf, size, ", %d certificates chosen by SNI", certs);
    else if (certs > 1)
        snprintf(buf, size, ", %d certificates for %d set%s of names, chosen by SNI and key type",
                 certs, entries, entries == 1 ? "" : "s");
}

/* `portico -t` names each certificate served, when there are several: where, its key and its
 * names (the operator sees which one an old client, RSA only, gets). */
static void certs_list(const struct config *cfg)
{
    for (int i = 0; cfg->server_ssl_ctx && i < cfg->ntls_pairs; i++)
        if (cfg->tls_pairs[i].listing)
            printf("portico: %s\n", cfg->tls_pairs[i].listing);
    for (int i = 0; cfg->server_ssl_ctx && i < cfg->ntls_pairs; i++)
        if (cfg->tls_pairs[i].ocsp_listing)
            printf("portico: %s\n", cfg->tls_pairs[i].ocsp_listing);
}

/* Says the warnings of a loaded configuration (certificates that expired or soon will) in the
 * error log, at a start and at each reload, so they are heard until someone acts. */
static void log_warnings(const struct config *cfg)
{
    for (int i = 0; i < cfg->nwarnings; i++)
        log_warn("%s", cfg->warnings[i]);
}

/* SIGHUP: load the file again; only a configuration that loads, prepares and binds replaces the
 * running one, which otherwise keeps serving untouched. */
static void reload(struct process *p)
{
    int nerrors = 0;
    const struct config *old = p->gen->cfg;
    log_info("SIGHUP: reloading %s", p->path);
    struct config *cfg = reload_load(p->path, &nerrors);
    if (!cfg) {
        log_error("reload: %s has %d error%s; still serving the previous configuration", p->path,
                  nerrors, nerrors == 1 ? "" : "s");
        metrics_config_reload(RELOAD_INVALID);
        return;
    }
    log_warnings(cfg);
    if (!same_text(cfg->pid_file, old->pid_file) || !same_text(cfg->user, old->user) ||
        !same_text(cfg->group, old->group))
        log_warn("reload: pid_file, user and group keep their values until the next start");
    /* An address the new file adds must be free, as at start. */
    if (addr_locks_claim(p->locks, cfg) != 0) {
        /* why (in use, permission) was said per address just above */
        log_error("reload: a new listen address cannot be taken; still serving the previous "
                  "configuration");
        metrics_config_reload(RELOAD_FAILED);
        cfg_free(cfg);
        return;
    }
    struct generation *next = prepare(cfg, p->gen->number + 1);
    if (!next) {
        log_error("reload: cannot prepare the new configuration; still serving the previous one");
        metrics_config_reload(RELOAD_FAILED);
        addr_locks_keep_only(p->locks, old);
        return;
    }
    generation_inherit(next, p->gen, now_us() / 1000); /* known-down origins stay down */
    struct worker_group *started = workers_start(next, p->group);
    if (!started) {
        log_error("reload: cannot start workers for the new configuration; still serving the "
                  "previous one");
        metrics_config_reload(RELOAD_FAILED);
        addr_locks_keep_only(p->locks, old);
        generation_free(next);
        return;
    }
    atomic_store(&p->gen->retired, true); /* the new workers take every new request */
    generation_serve(next, now_us() / 1000); /* its max_conns over the draining requests too */
    metrics_config_reload(RELOAD_OK);
    metrics_config_generation(next->number);
    const char *failed = NULL;
    if (log_switch(next->cfg->access_log, next->cfg->error_log, next->cfg->log_level,
                   &failed) != 0)
        log_error("reload: %s %s: %s; keeping the previous logs", failed,
                  strcmp(failed, "error_log") == 0 ? next->cfg->error_log
                                                   : next->cfg->access_log,
                  strerror(errno));
    /* The new workers accept already; the old ones finish what they have, then go. */
    bool closed = start_drain(p, p->group, p->gen, next->cfg->shutdown_timeout_ms,
                              "reload: the previous workers have finished their exchanges");
    p->gen = next;
    p->group = started;
    addr_locks_keep_only(p->locks, next->cfg); /* the old sockets of dropped addresses are closed */
    /* The generation tells one reload's line from the next (1 is the configuration started). */
    const struct config *c = next->cfg;
    if (!closed) /* only a worker stuck in its loop would do that: say so, not "live" */
        log_error("reload: %s serves (generation %u), but the previous workers still accept "
                  "connections after %d ms",
                  p->path, next->number, UNLISTEN_MS);
    else
        log_info("reload: %s is live (generation %u, %d worker%s, %s profile)", p->path,
                 next->number, c->workers, c->workers > 1 ? "s" : "", profile_name(c->profile));
}

/* What `systemctl status` shows, kept for watchdog_check: once a stall is over, the state it
 * hid (a refused reload, a stop) is said again, not a plain "serving". */
static void set_status(struct process *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_status(struct process *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->status, sizeof(p->status), fmt, ap);
    va_end(ap);
}

/* A reload as systemd sees it: reloading until the new configuration is live or refused, with
 * the generation serving afterwards in `systemctl status`. */
static void reload_notified(struct process *p)
{
    unsigned before = p->gen->number;
    set_status(p, "reloading %s", p->path);
    notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s", (unsigned long long)now_us(),
                p->status);
    reload(p);
    if (p->gen->number == before)
        set_status(p, "reload of %s refused (see the error log); serving generation %u", p->path,
                   before);
    else
        set_status(p, "serving %s (generation %u)", p->path, p->gen->number);
    notify_send("READY=1\nSTATUS=%s", p->status);
    p->stalled = false; /* a stall that goes on (a draining worker's) is said again, not hidden */
}

/* systemd's watchdog (watchdog.h): WATCHDOG=1 only when every worker still running, of the
 * serving generation or draining, has turned its loop lately. A draining worker counts: its
 * shutdown_timeout is a timer on its own loop, so a stuck one would never end, holding its
 * clients and, at the stop, the whole process. The main thread's own turning is this call. */
static void watchdog_check(struct process *p)
{
    char why[256] = "";
    uint64_t now = now_us(), stale = watchdog_stale_us();
    bool turning = !p->group || workers_turning(p->group, now, stale, why, sizeof(why));
    for (struct drain *d = p->drains; d; d = d->next) /* each stall is logged: no short cut */
        turning = workers_turning(d->group, now, stale, turning ? why : NULL, sizeof(why)) &&
                  turning;
    if (!turning && !p->stalled)
        notify_send("STATUS=%s", why);
    else if (turning && p->stalled)
        notify_send("WATCHDOG=1\nSTATUS=%s", p->status);
    else if (turning)
        notify_send("WATCHDOG=1");
    p->stalled = !turning;
    watchdog_checked(now);
}

/* The next signal; 0 when the watchdog's check came due first (or a wait was interrupted). */
static int next_signal(const sigset_t *set)
{
    uint64_t due = watchdog_due_us();
    int sig = 0;
    if (due == UINT64_MAX)
        return sigwait(set, &sig) == 0 ? sig : 0;
    uint64_t now = now_us(), wait = due > now ? due - now : 0;
    struct timespec ts = {.tv_sec = (time_t)(wait / 1000000),
                          .tv_nsec = (long)(wait % 1000000) * 1000};
    sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

/* Removes the pid file written at start, unless another process wrote its own since. */
static void release_pid_file(struct process *p)
{
    if (p->pid_file && pidfile_remove(p->pid_file) != 0)
        log_warn("pid_file %s: cannot remove it: %s", p->pid_file, strerror(errno));
    free(p->pid_file);
    p->pid_file = NULL;
    if (p->pid_claim >= 0)
        close(p->pid_claim);
    p->pid_claim = -1;
}

/* The first SIGTERM, SIGINT or SIGQUIT, or an upgrade's new process serving (cause
 * "upgrade"): every group stops accepting and drains within shutdown_timeout; the addresses and
 * the pid file are released at once, so a successor can start meanwhile (the pid file names the
 * Portico that serves: the successor writes its own). */
static void begin_stop(struct process *p, const char *cause)
{
    uint64_t ms = p->gen->cfg->shutdown_timeout_ms;
    /* systemd kills at TimeoutStopSec: a longer shutdown_timeout is asked for, not assumed */
    set_status(p, "stopping: exchanges in flight have %llu ms to finish", (unsigned long long)ms);
    notify_send("STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\nSTATUS=%s",
                (unsigned long long)(ms + UNLISTEN_MS + STOP_SLACK_MS) * 1000, p->status);
    for (struct drain *d = p->drains; d; d = d->next)
        workers_signal_stop(d->group, ms); /* a reload's drain ends by then too */
    if (p->handed_over) /* the sockets it took and their queues are the new process's */
        workers_disown(p->group, p->handed, p->nhanded_sockets);
    else
        upgrade_cancel(); /* a new process still starting would serve beside nobody */
    bool closed = start_drain(p, p->group, p->gen, ms, NULL);
    p->group = NULL;
    p->gen = NULL;
    p->state = RUN_STOPPING;
    addr_locks_keep_only(p->locks, NULL);
    release_pid_file(p);
    if (!closed)
        log_error("%s: stopping, but some workers still accept connections after %d ms", cause,
                  UNLISTEN_MS);
    else
        log_info("%s: stopping: listeners closed, exchanges in flight have %llu ms to finish "
                 "(SIGTERM or SIGINT again: stop now)",
                 cause, (unsigned long long)ms);
}

/* SIGUSR2: the binary again, by the path it was started from, with every listening socket and
 * claim; until it says it serves (or fails) this process serves on, and refuses a reload or a
 * second upgrade. */
static void begin_upgrade(struct process *p)
{
    if (upgrade_state(NULL) != UPGRADE_IDLE) {
        log_warn("SIGUSR2 ignored: an upgrade is under way (new process pid %ld)",
                 (long)upgrade_child());
        return;
    }
    int n = workers_listen_fds(p->group, p->handed, UPGRADE_MAX_FDS);
    int nclaims = n < 0 ? -1 : addr_locks_fds(p->locks, p->handed + n, UPGRADE_MAX_FDS - n);
    if (n < 0 || nclaims < 0 || (p->pid_claim >= 0 && n + nclaims == UPGRADE_MAX_FDS)) {
        log_error("upgrade failed: more than %d listening sockets and claims to hand over; "
                  "still serving", UPGRADE_MAX_FDS);
        return;
    }
    p->nhanded_sockets = n;
    p->nhanded = n + nclaims;
    if (p->pid_claim >= 0)
        p->handed[p->nhanded++] = p->pid_claim;
    char why[PATH_MAX + 128];
    log_info("SIGUSR2: upgrading: starting %s with %d listening socket%s", upgrade_binary(), n,
             n == 1 ? "" : "s");
    if (upgrade_begin(p->handed, p->nhanded, pthread_self(), WAKE_SIGNAL, why, sizeof(why)) !=
        0) {
        log_error("upgrade failed: %s; still serving", why);
        p->nhanded = p->nhanded_sockets = 0;
        return;
    }
    /* A binary that cannot run may have failed the upgrade already (its thread let go of the
     * child): then the status settle_upgrade writes is the next one, not "pid 0 is starting". */
    pid_t child = upgrade_child();
    if (child <= 0)
        return;
    set_status(p, "upgrading: new process pid %ld is starting; serving meanwhile", (long)child);
    notify_send("STATUS=%s", p->status);
}

/* The upgrade's outcome, once its thread woke us. Ready: systemd is told the new main pid, and
 * this process stops as on SIGTERM, its sockets left to the new one. Failed: it serves on as
 * if nothing happened (a pid file the new process wrote names us again). */
static void settle_upgrade(struct process *p)
{
    const char *why;
    enum upgrade_state s = upgrade_state(&why);
    if (s != UPGRADE_READY && s != UPGRADE_FAILED)
        return;
    pid_t child = upgrade_child();
    if (s == UPGRADE_FAILED) {
        /* the new process's FILE:LINE lines, as a reload says them */
        for (const char *line = upgrade_messages(), *end; *line; line = end + 1) {
            if (!(end = strchr(line, '\n'))) /* cfg_report ends every message with one */
                break;
            log_problem("%.*s", (int)(end - line), line);
        }
        if (p->state != RUN_SERVING)
            log_info("upgrade: cancelled by the stop: %s", why);
        else
            log_error("upgrade failed: %s; still serving", why);
        if (p->state == RUN_SERVING && p->pid_file && !pidfile_names_us(p->pid_file) &&
            pidfile_write(p->pid_file) != 0)
            log_warn("pid_file %s: cannot name this process again", p->pid_file);
        upgrade_end();
        p->nhanded = p->nhanded_sockets = 0;
        if (p->state == RUN_SERVING) {
            set_status(p, "upgrade failed (see the error log); serving %s (generation %u)",
                       p->path, p->gen->number);
            notify_send("STATUS=%s", p->status);
        }
        return;
    }
    /* Those of addresses its file dropped stay ours, to close at the stop after taking their
     * queues, as a reload does: the new process closed its copies. */
    int kept = 0;
    for (int i = 0; i < p->nhanded_sockets; i++)
        if (upgrade_taken(i))
            p->handed[kept++] = p->handed[i];
    p->nhanded_sockets = kept;
    upgrade_end();
    if (p->state != RUN_SERVING) { /* told to stop meanwhile: it was told too */
        log_info("upgrade: the new process (pid %ld) serves, but this one was stopping "
                 "already and told it to stop", (long)child);
        return;
    }
    /* NotifyAccess=main: only the main pid may name the next one; from then on systemd hears
     * the new process, and nothing of ours. */
    notify_send("MAINPID=%ld\nSTATUS=serving %s (upgraded: pid %ld)", (long)child, p->path,
                (long)child);
    notify_close();
    p->handed_over = true;
    log_info("upgrade: the new process (pid %ld) serves; stopping", (long)child);
    begin_stop(p, "upgrade");
}

/* A second SIGTERM or SIGINT: every connection is closed now. */
static void hurry(struct process *p, int sig)
{
    log_info("SIG%s again: stopping now, closing every connection", sigabbrev_np(sig));
    set_status(p, "stopping now: closing every connection");
    notify_send("STATUS=%s", p->status);
    for (struct drain *d = p->drains; d; d = d->next)
        workers_signal_stop(d->group, 0);
    p->state = RUN_HURRYING;
}

static void on_signal(struct process *p, int sig)
{
    if (sig == WAKE_SIGNAL) {
        reap_drains(p, false);
        settle_upgrade(p);
    } else if (sig == SIGUSR1) { /* logrotate's postrotate: the files were renamed */
        struct log_reopen_failure failed[2];
        int n = log_reopen(failed);
        for (int i = 0; i < n; i++) /* which file, and where its lines go meanwhile */
            log_error("SIGUSR1: cannot reopen %s %s: %s; still writing to the previous file",
                      failed[i].log, failed[i].path, strerror(failed[i].err));
        if (n == 0)
            log_info("SIGUSR1: logs reopened");
    } else if (p->state == RUN_SERVING) {
        if (sig == SIGUSR2) {
            begin_upgrade(p);
        } else if (sig == SIGHUP && upgrade_state(NULL) != UPGRADE_IDLE) {
            /* the sockets named to the new process must stay what they are */
            log_warn("SIGHUP ignored: an upgrade is under way (new process pid %ld); the new "
                     "process reads the file as it starts", (long)upgrade_child());
        } else if (sig == SIGHUP) {
            reap_drains(p, false);
            reload_notified(p);
        } else {
            char cause[16];
            snprintf(cause, sizeof(cause), "SIG%s", sigabbrev_np(sig));
            begin_stop(p, cause);
        }
    } else if (p->state == RUN_STOPPING && (sig == SIGTERM || sig == SIGINT)) {
        hurry(p, sig);
    } else {
        log_info("SIG%s ignored: %s", sigabbrev_np(sig), run_state_names[p->state]);
    }
}

/* A regular file log (not stderr/stdout) becomes the user's, so that SIGUSR1 and reloads can
 * still open it by name once we are no longer root. */
static void chown_log(const char *target, uid_t uid, gid_t gid)
{
    if (log_target_is_file(target) && chown(target, uid, gid) != 0)
        log_warn("cannot give %s to uid %u: %s", target, (unsigned)uid, strerror(errno));
}

/* Says one warning about what `user` may do: log_warn at the start, stderr under -t. */
typedef void say_fn(const struct config *cfg, const char *text);

/* A log file in a directory the user cannot add files to: once logrotate has renamed it,
 * SIGUSR1 and reloads cannot create the new one and go on writing to the renamed file. A FIFO
 * or device is opened, never created. */
static void warn_log_dir(const struct config *cfg, say_fn *say, const char *key, const char *target)
{
    struct stat st;
    if (!log_target_is_file(target) || (stat(target, &st) == 0 && !S_ISREG(st.st_mode)) ||
        dir_takes_files(target))
        return;
    char text[PATH_MAX + 512];
    snprintf(text, sizeof(text),
             "%s %s: user %s cannot create files in its directory, so once logrotate has "
             "renamed it, SIGUSR1 and reloads go on writing to the renamed file: give the "
             "directory to %s (such as /var/log/portico), or rotate with copytruncate",
             key, target, cfg->user, cfg->user);
    say(cfg, text);
}

/* A file the configuration names (or the configuration itself) that the user cannot read: the
 * start reads it as root, but every reload and binary upgrade reads it as the user and is
 * refused ("Permission denied" at its line), a key of root's with mode 0600 the usual case.
 * Only a regular file or a directory. */
static void warn_unreadable(const struct config *cfg, say_fn *say, const char *key,
                            const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) ||
        access(path, S_ISDIR(st.st_mode) ? R_OK | X_OK : R_OK) == 0)
        return;
    char text[PATH_MAX + 512];
    snprintf(text, sizeof(text),
             "%s %s: user %s cannot read it (%s), so every reload and binary upgrade will be "
             "refused: let %s read it (its group, mode 0640)",
             key, path, cfg->user, strerror(errno), cfg->user);
    say(cfg, text);
}

/* What the process, switched to `user`, will not be able to do that a start as root did: remove
 * the pid file at the stop, create the logs anew after a rotation, read again the files a reload
 * reads. Asked as the user (the kernel decides, ACLs included): after the switch at the start,
 * and by -t run as root, in a child that switches (so that `portico -t` in systemd's
 * ExecReload, run as root, says what the reload run as the user will meet). */
static void user_warnings(const struct config *cfg, say_fn *say)
{
    const char *user = cfg->user;
    /* Said now, not only when the stop fails to remove it: a script (logrotate's postrotate, an
     * init script) that signals the pid of a file left behind hits whatever process has it. */
    if (cfg->pid_file && !pidfile_removable(cfg->pid_file)) {
        char text[PATH_MAX + 512];
        snprintf(text, sizeof(text),
                 "pid_file %s: user %s cannot remove it from its directory, so it will stay "
                 "after the stop, naming a gone process: put it in a directory of %s's (such as "
                 "/run/portico, or systemd's RuntimeDirectory)",
                 cfg->pid_file, user, user);
        say(cfg, text);
    }
    warn_log_dir(cfg, say, "access_log", cfg->access_log);
    warn_log_dir(cfg, say, "error_log", cfg->error_log);
    warn_unreadable(cfg, say, "configuration", cfg->path);
    for (int i = 0; i < cfg->ntls_pairs; i++) {
        warn_unreadable(cfg, say, "tls_cert", cfg->tls_pairs[i].cert);
        warn_unreadable(cfg, say, "tls_key", cfg->tls_pairs[i].key);
        /* the staple a reload reads again, after a cron job replaced it */
        warn_unreadable(cfg, say, "tls_ocsp_response", cfg->tls_pairs[i].ocsp);
    }
    if (cfg->tls_verify_client) { /* read again by each reload, as the user */
        warn_unreadable(cfg, say, "tls_client_ca", cfg->tls_client_ca);
        warn_unreadable(cfg, say, "tls_client_crl", cfg->tls_client_crl);
    }
    warn_unreadable(cfg, say, "error_page_dir", cfg->error_page_dir);
    for (int i = 0; i < cfg->nupstreams; i++) {
        const struct upstream_conf *u = &cfg->upstreams[i];
        const char *const files[][2] = {
            {"ca_file", u->verify ? u->ca_file : NULL},
            {"client_cert", u->client_cert},
            {"client_key", u->client_key},
        };
        for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
            char key[CFG_NAME_MAX + 32];
            snprintf(key, sizeof(key), "[upstream %s] %s", u->name, files[f][0]);
            warn_unreadable(cfg, say, key, files[f][1]);
        }
    }
}

static void say_log(const struct config *cfg, const char *text)
{
    (void)cfg;
    log_warn("%s", text);
}

/* -t: as the configuration's other warnings, "FILE:0: warning: ..." (the whole file's line). */
static void say_check(const struct config *cfg, const char *text)
{
    fprintf(stderr, "%s:0: warning: %s\n", cfg->path, text);
}

/* -t with `user`: user_warnings as that user. Run by it, here; run by root, in a child that
 * switches (the check itself stays root's, as a start is); run by another user, nothing can be
 * asked (a start would not switch either). */
static void check_as_user(const struct config *cfg)
{
    if (!cfg->user)
        return;
    if (geteuid() == cfg->uid) {
        user_warnings(cfg, say_check);
        return;
    }
    if (geteuid() != 0)
        return;
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid == 0) {
        if (privileges_drop(cfg->user, cfg->uid, cfg->gid) == 0)
            user_warnings(cfg, say_check);
        fflush(stderr);
        _exit(0);
    }
    if (pid < 0) {
        fprintf(stderr, "%s:0: warning: user %s: cannot check its access to the files (fork: "
                        "%s)\n", cfg->path, cfg->user, strerror(errno));
        return;
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Started as root with `user`: the sockets are bound and the files open, the workers not yet
 * running; switch now. 0, or -1 after a message. */
static int drop_privileges(struct worker_group *group, const struct config *cfg)
{
    if (!cfg->user)
        return 0;
    if (geteuid() != 0) {
        if (geteuid() != cfg->uid)
            log_warn("user %s: not started as root; running as uid %u", cfg->user,
                     (unsigned)geteuid());
        return 0;
    }
    if (workers_chown(group, cfg->uid, cfg->gid) != 0) {
        fprintf(stderr, "portico: user %s: cannot give the listening sockets to it: %s\n",
                cfg->user, strerror(errno));
        return -1;
    }
    chown_log(cfg->access_log, cfg->uid, cfg->gid);
    chown_log(cfg->error_log, cfg->uid, cfg->gid);
    if (privileges_drop(cfg->user, cfg->uid, cfg->gid) != 0)
        return -1;
    log_info("running as user %s (uid %u, gid %u)", cfg->user, (unsigned)cfg->uid,
             (unsigned)cfg->gid);
    user_warnings(cfg, say_log);
    return 0;
}

/* The start of evdns's warning about a datagram on a resolver socket from another address than
 * its nameserver's: anyone who can reach that port writes one per datagram. */
#define EVDNS_STRAY_DATAGRAM "Address mismatch on received DNS packet"

/* libevent's own messages (evdns: a nameserver failed, or is back up) go to error_log with
 * log_level, like ours, instead of straight to stderr; a stray datagram's is about what someone
 * else sent, so it is rate-limited as a client's trouble is (a flood of them wrote a line each). */
static void libevent_log(int severity, const char *msg)
{
    if (strncmp(msg, EVDNS_STRAY_DATAGRAM, strlen(EVDNS_STRAY_DATAGRAM)) == 0) {
        log_client("libevent: %s", msg);
        return;
    }
    switch (severity) {
    case EVENT_LOG_DEBUG:
        log_debug("libevent: %s", msg);
        break;
    case EVENT_LOG_MSG:
        log_info("libevent: %s", msg);
        break;
    case EVENT_LOG_WARN:
        log_warn("libevent: %s", msg);
        break;
    default:
        log_error("libevent: %s", msg);
        break;
    }
}

/* SIGTERM and SIGINT: blocked only once the waits of the start are over. */
static void stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

/* Blocks SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT and the wake signal, and puts every signal the main
 * thread takes with sigwait into set. Done before the configuration loads: a SIGHUP or SIGUSR1
 * sent meanwhile (a reload right after the service started, a log rotation) then waits for the
 * signal loop instead of ending the process by its default action (SIGQUIT's dumps core).
 * SIGTERM and SIGINT keep theirs until start() has opened the logs (block_stop_signals): a FIFO
 * log waits there for its reader, and SIGTERM or Ctrl-C must still end that wait. */
static void block_signals(sigset_t *set)
{
    sigset_t early;
    sigemptyset(&early);
    sigaddset(&early, SIGHUP);
    sigaddset(&early, SIGUSR1);
    sigaddset(&early, SIGUSR2);
    sigaddset(&early, SIGQUIT);
    sigaddset(&early, WAKE_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &early, NULL);
    stop_signals(set);
    sigorset(set, set, &early);
}

/* From here on a stop waits for the signal loop, to be graceful: done before the first thread
 * is created (each inherits the mask) and before anything is bound or written (the pid file). */
static void block_stop_signals(void)
{
    sigset_t set;
    stop_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Everything start-up needs before serving; 0, or -1 after a message (what was set up is left
 * in p for the caller to undo). */
static int start(struct process *p, struct config *cfg)
{
    if (log_error_open(cfg->error_log, cfg->log_level) != 0) {
        fprintf(stderr, "portico: error_log %s: %s\n", cfg->error_log, strerror(errno));
        cfg_free(cfg);
        return -1;
    }
    if (log_open(cfg->access_log) != 0) {
        log_error("access_log %s: %s", cfg->access_log, strerror(errno));
        cfg_free(cfg);
        return -1;
    }
    log_warnings(cfg);
    block_stop_signals();
    if (!(p->locks = addr_locks_new()))
        fprintf(stderr, "portico: out of memory\n");
    /* The file names the Portico this one upgrades, when it handed its claim over: checked
     * only otherwise. A start checks first, to name the running Portico in its message. */
    bool upgraded = upgrade_inherited(), handed = false;
    if (!p->locks ||
        (cfg->pid_file &&
         ((!upgraded && pidfile_check(cfg->pid_file) != 0) ||
          (p->pid_claim = pidfile_claim(cfg->pid_file, &handed)) < 0 ||
          (upgraded && !handed && pidfile_check(cfg->pid_file) != 0))) ||
        addr_locks_claim(p->locks, cfg) != 0) {
        cfg_free(cfg);
        return -1;
    }
    struct worker_group *bound;
    if (!(p->gen = prepare(cfg, 1)) || !(bound = workers_bind(p->gen, NULL)))
        return -1;
    cfg = NULL; /* the generation's now */
    const struct config *c = p->gen->cfg;
    if (c->pid_file) {
        if (pidfile_write(c->pid_file) != 0) {
            workers_free(bound);
            return -1;
        }
        p->pid_file = strdup(c->pid_file); /* removed by the stop, whatever a reload says */
    }
    if (drop_privileges(bound, c) != 0) {
        workers_free(bound);
        return -1;
    }
    if (workers_run(bound) != 0) /* frees the group */
        return -1;
    p->group = bound;
    return 0;
}

/* What start() left behind, and what serving leaves: nothing runs once this returns. */
static void finish(struct process *p)
{
    reap_drains(p, true);
    if (p->group) {
        workers_stop(p->group, 0);
        p->group = NULL;
    }
    p->nhanded_sockets = p->nhanded = 0; /* the workers closed those they gave (worker.c) */
    generation_free(p->gen);
    p->gen = NULL;
    ticket_wipe_all(); /* the contexts that used the keys are gone */
    sim_stop();
    release_pid_file(p);
    addr_locks_free(p->locks);
    metrics_free_all();
    recent_free_all();
}

/* Each client and origin connection holds a descriptor, and a shell's soft limit is often
 * 1024: the hard limit is the operator's real bound, so the soft one is raised to it, as HAProxy
 * does (nothing here uses select(), which needs descriptors below 1024). Returns the old soft
 * limit when it was raised, 0 otherwise. */
static rlim_t raise_descriptor_limit(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max)
        return 0;
    rlim_t old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &lim) == 0 ? old : 0;
}

static int run(const char *path, struct config *cfg, const sigset_t *set)
{
    heap_tune();
    rlim_t raised_from = raise_descriptor_limit();
    signal(SIGPIPE, SIG_IGN);
    /* A log that reaches the file size limit (ulimit -f, systemd's LimitFSIZE=): its write then
     * fails with EFBIG, and the lines are dropped and counted as on a full disk, where the
     * default action of SIGXFSZ ended the process at its first write past the limit. */
    signal(SIGXFSZ, SIG_IGN);

    struct process p = {.path = path, .pid_claim = -1, .state = RUN_SERVING};
    bool upgraded = upgrade_inherited();
    watchdog_init(); /* before the workers: their loops beat for it */
    if (start(&p, cfg) != 0) {
        finish(&p);
        return 1;
    }
    metrics_config_generation(p.gen->number);
    if (raised_from) {
        struct rlimit lim;
        getrlimit(RLIMIT_NOFILE, &lim);
        log_info("file descriptor limit (ulimit -n) raised from %llu to its hard limit %llu",
                 (unsigned long long)raised_from, (unsigned long long)lim.rlim_cur);
    }
    const struct config *c = p.gen->cfg;
    for (int i = 0; i < c->nlisten; i++)
        log_info("portico %s listening on %s (%d worker%s, %s profile)", PORTICO_VERSION,
                 c->listens[i].text, c->workers, c->workers > 1 ? "s" : "",
                 profile_name(c->profile));
    if (sim_port())
        log_info("simulator origin on 127.0.0.1:%u (origin = sim)", sim_port());
    if (c->admin_listen_text)
        log_info("admin endpoint on %s (/, /status, /metrics, /healthz, /faults)",
                 c->admin_listen_text);
    set_status(&p, "serving %s (generation 1)", path);
    upgrade_drop_unused(); /* addresses the file no longer names: the old process closes them */
    /* Started by an upgrade, systemd hears us once the old process names us its main pid
     * (NotifyAccess=main): it was ready already, and is told the new STATUS by the old. */
    if (notify_open() == 0 && !upgraded)
        notify_send("READY=1\nSTATUS=%s", p.status);
    if (upgraded) {
        log_info("upgrade: serving in place of pid %ld", (long)getppid());
        upgrade_tell_ready();
    }

    /* Serving, then stopping until the last group has drained. A storm of signals does not
     * hold the watchdog's check back. */
    while (p.state == RUN_SERVING || p.drains || upgrade_state(NULL) != UPGRADE_IDLE) {
        int sig = next_signal(set);
        if (sig > 0)
            on_signal(&p, sig);
        if (watchdog_due_us() <= now_us())
            watchdog_check(&p);
    }
    finish(&p);
    notify_close();
    log_info("stopped");
    log_close();
    return 0;
}

/* The file loaded by a process an upgrade started: its FILE:LINE messages, when it has errors,
 * go to the old process, which says them in its error log as well as on stderr (log_problem,
 * as for a reload's); only when they cannot, to stderr from here. */
static struct config *upgrade_load(const char *path, int *nerrors)
{
    char *text = NULL;
    size_t len = 0;
    FILE *messages = open_memstream(&text, &len);
    struct config *cfg = cfg_load(path, messages ? messages : stderr, nerrors);
    if (messages && fclose(messages) == 0 && text && *text &&
        (cfg || upgrade_tell_failure(text) != 0))
        fputs(text, stderr);
    free(text);
    return cfg;
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
    if (argc >= 2 && strcmp(argv[1], "probe") == 0)
        return probe_main(argc - 1, argv + 1);
    int opt, info = 0; /* 'h' or 'v': print that once the whole command line is found good */
    while ((opt = getopt_long(argc, argv, "c:thv", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'h':
        case 'v':
            info = info ? info : opt;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) { /* `portico FILE`, -c forgotten, is the usual one: say which */
        fprintf(stderr, "%s: unexpected argument '%s' (the configuration file goes after -c)\n",
                argv[0], argv[optind]);
        usage(stderr);
        return 2;
    }
    if (info == 'h') {
        usage(stdout);
        return 0;
    }
    if (info == 'v') {
        printf("portico %s (libevent %s, %s)\n", PORTICO_VERSION, event_get_version(),
               OPENSSL_VERSION_TEXT);
        return 0;
    }
    evmem_init(); /* before libevent allocates anything */
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "portico: libevent without thread support\n");
        return 1;
    }
    event_set_log_callback(libevent_log);
    /* OpenSSL's error strings, which the first SSL_CTX would load: a simulated
     * tls_handshake_failed words its detail as a real one ("wrong version number"), also where no
     * listener or upstream speaks TLS (it said "reason(267)") */
    OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
    sigset_t set;
    if (!test_only)
        block_signals(&set);
    int nerrors = 0;
    /* Started by an upgrade: what it hands over is taken before anything is claimed or bound */
    bool upgraded = !test_only && upgrade_inherit();
    struct config *cfg = upgraded ? upgrade_load(path, &nerrors) : cfg_load(path, stderr, &nerrors);
    if (!cfg) {
        fprintf(stderr, "portico: %s: %d error%s\n", path, nerrors, nerrors == 1 ? "" : "s");
        return 1;
    }
    if (test_only) {
        cfg_print_warnings(cfg, stderr); /* they fail nothing: the exit stays 0 */
        check_as_user(cfg);
        char served[96] = "";
        certs_served(cfg, served, sizeof(served));
        printf("portico: %s: configuration ok (%d upstream%s, %d route%s%s)\n", path,
               cfg->nupstreams, cfg->nupstreams == 1 ? "" : "s", cfg->nroutes,
               cfg->nroutes == 1 ? "" : "s", served);
        certs_list(cfg);
        cfg_free(cfg);
        return 0;
    }
    if (upgrade_init(argv[0], argv) != 0) /* now: an upgrade may replace the file later */
        fprintf(stderr, "portico: the path of this binary cannot be resolved; SIGUSR2 (binary "
                        "upgrade) will be refused\n");
    int rc = run(path, cfg, &set);
    evmem_flush(); /* the read buffers the main thread kept */
    return rc;
}
