/*
 * addrlock.c — exclusive listen addresses. See addrlock.h.
 *
 * Claiming an address takes two steps, because SO_REUSEPORT admits any socket of the same user
 * that also asks for it:
 *   1. A lock that dies with the process: an abstract unix socket named after the user and the
 *      address, bound by the main process and kept across reloads. Binding it is atomic, so of
 *      two Porticos starting at once exactly one gets the address; abstract names live in the
 *      network namespace, like the port itself; the user id in the name keeps another user from
 *      squatting our names (a different user could never join our SO_REUSEPORT group anyway).
 *   2. A probe: a socket bound to the address *without* SO_REUSEPORT (SO_REUSEADDR only, as
 *      the workers' sockets, so TIME_WAIT and connections left by a previous process do not
 *      count), then closed. Linux refuses it when any socket listens on the address or one that
 *      covers it (0.0.0.0 vs 127.0.0.1, [::] vs 0.0.0.0), whoever owns it: a Portico already
 *      serving, nginx, a test's plain socket with or without SO_REUSEPORT.
 * A probe kept open instead of the lock would do step 2 only: a bound, non-listening socket with
 * SO_REUSEADDR lets a second one bind beside it, so two Porticos starting together could both
 * pass. Addresses the set already holds are not probed again: our own workers listen there, and
 * a reload hands their sockets over (worker.c); an address a reload adds is claimed like at
 * start. A binary upgrade hands the locks to the new process with the sockets (upgrade.h).
 */
#include "portico/addrlock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/upgrade.h"
#include "portico/util.h"

#define LOCK_PREFIX "portico" /* the lock's name: LOCK_PREFIX/uid/address */

/* Listen addresses and the admin one, twice: a reload holds the old and the new set at once. */
#define MAX_HELD (2 * (CFG_MAX_LISTEN + 1))

struct held {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int lock;                              /* the abstract unix socket */
};

struct addr_locks {
    struct held held[MAX_HELD];
    int n;
};

/* One address of a configuration, with the key that names it and where (for messages: an
 * address in use is a problem of the file, said as FILE:LINE like its other problems). */
struct wanted {
    const struct sockaddr_storage *addr;
    socklen_t addrlen;
    const char *key;
    const char *file;
    int line;
};

struct addr_locks *addr_locks_new(void)
{
    return calloc(1, sizeof(struct addr_locks));
}

static bool same(const struct held *h, const struct wanted *w)
{
    return h->addrlen == w->addrlen && memcmp(&h->addr, w->addr, w->addrlen) == 0;
}

static bool holds(const struct addr_locks *set, const struct wanted *w)
{
    for (int i = 0; i < set->n; i++)
        if (same(&set->held[i], w))
            return true;
    return false;
}

/* The configuration's addresses into out (at most CFG_MAX_LISTEN + 1); their count. */
static int wanted_of(const struct config *cfg, struct wanted *out)
{
    const char *file = cfg->path ? cfg->path : "(configuration)";
    int n = 0;
    for (int i = 0; i < cfg->nlisten; i++)
        out[n++] = (struct wanted){&cfg->listens[i].addr, cfg->listens[i].addrlen, "listen", file,
                                   cfg->listens[i].line};
    if (cfg->admin_listen_text)
        out[n++] = (struct wanted){&cfg->admin_addr, cfg->admin_addrlen, "admin_listen",
                                   file, cfg->admin_listen_line};
    return n;
}

/* Step 1: the lock. Its fd, or -1 with errno (EADDRINUSE: another Portico holds it). */
static int take_lock(const struct sockaddr_storage *a)
{
    char text[INET6_ADDRSTRLEN + 16], name[INET6_ADDRSTRLEN + 48];
    snprintf(name, sizeof(name), LOCK_PREFIX "/%u/%s", (unsigned)geteuid(),
             sockaddr_str((const struct sockaddr *)a, text, sizeof(text)));
    return abstract_lock(name);
}

/* Step 2: the probe. 0, or -1 with errno (EADDRINUSE: another process's socket is there). */
static int probe(const struct sockaddr_storage *a, socklen_t alen)
{
    int one = 1;
    int fd = socket(a->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (rc == 0)
        rc = bind(fd, (const struct sockaddr *)a, alen);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

/* Claims one address into the set. 0, or -1 after a message. */
static int claim_one(struct addr_locks *set, const struct wanted *w)
{
    char text[INET6_ADDRSTRLEN + 16];
    sockaddr_str((const struct sockaddr *)w->addr, text, sizeof(text));
    /* Handed over by the Portico this one upgrades (upgrade.h): its sockets are there, ours
     * now, so the probe would find them; the name's uid is the old process's, maybe root. */
    int fd = upgrade_take_claim(LOCK_PREFIX, text);
    if (fd >= 0)
        goto hold;
    fd = take_lock(w->addr);
    if (fd < 0) {
        if (errno == EADDRINUSE)
            log_problem("%s:%d: cannot listen on %s (%s): address already in use by another "
                        "Portico", w->file, w->line, text, w->key);
        else
            log_problem("%s:%d: cannot lock %s (%s): %s", w->file, w->line, text, w->key,
                        strerror(errno));
        return -1;
    }
    if (probe(w->addr, w->addrlen) != 0) {
        int err = errno;
        close(fd);
        if (err == EADDRINUSE)
            log_problem("%s:%d: cannot listen on %s (%s): address already in use by another "
                        "process", w->file, w->line, text, w->key);
        else
            log_problem("%s:%d: cannot listen on %s (%s): %s", w->file, w->line, text, w->key,
                        strerror(err));
        return -1;
    }
hold:;
    struct held *h = &set->held[set->n++];
    memcpy(&h->addr, w->addr, w->addrlen);
    h->addrlen = w->addrlen;
    h->lock = fd;
    return 0;
}

static void release(struct addr_locks *set, int i)
{
    close(set->held[i].lock);
    set->held[i] = set->held[--set->n];
}

int addr_locks_claim(struct addr_locks *set, const struct config *cfg)
{
    struct wanted want[CFG_MAX_LISTEN + 1];
    int nwant = wanted_of(cfg, want);
    int before = set->n, rc = 0;
    for (int i = 0; i < nwant; i++) {
        if (holds(set, &want[i]))
            continue; /* ours already: held since start or an earlier reload */
        if (set->n == MAX_HELD) { /* a reload holds old and new at most: cannot happen */
            log_problem("too many addresses held");
            rc = -1;
            break;
        }
        if (claim_one(set, &want[i]) != 0)
            rc = -1; /* go on: every refused address is told */
    }
    while (rc != 0 && set->n > before)
        release(set, set->n - 1);
    return rc;
}

void addr_locks_keep_only(struct addr_locks *set, const struct config *cfg)
{
    struct wanted want[CFG_MAX_LISTEN + 1];
    int nwant = cfg ? wanted_of(cfg, want) : 0;
    for (int i = set->n - 1; i >= 0; i--) {
        bool named = false;
        for (int j = 0; j < nwant && !named; j++)
            named = same(&set->held[i], &want[j]);
        if (!named)
            release(set, i);
    }
}

int addr_locks_fds(const struct addr_locks *set, int *out, int max)
{
    if (set->n > max)
        return -1;
    for (int i = 0; i < set->n; i++)
        out[i] = set->held[i].lock;
    return set->n;
}

void addr_locks_free(struct addr_locks *set)
{
    if (!set)
        return;
    addr_locks_keep_only(set, NULL);
    free(set);
}
