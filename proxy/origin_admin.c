/*
 * origin_admin.c — the admin API's origin states across reloads. See origin_admin.h.
 *
 * A list of upstreams by name under one process-wide lock, each with its balancers (one per
 * generation that lists it, newest first) and the states set on its origins. Only a change of
 * the admin API, a generation's creation, serving and end take the lock: the picks read the
 * balancers' atomics.
 */
#include "portico/origin_admin.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/log.h"
#include "portico/util.h"

/* A state set on one origin of an upstream. */
struct kept_state {
    struct kept_state *next;
    enum origin_admin state;
    bool weight_set;                   /* a weight was set at run time ... */
    unsigned weight;                   /* ... this one ... */
    unsigned file_weight;              /* ... while the file gave it this one */
    char origin[];                     /* host:port as written */
};

struct member {
    struct member *next;
    struct balancer *b;                /* borrowed: leaves before it is freed */
};

struct kept_upstream {
    struct kept_upstream *next;
    struct member *members;            /* newest first */
    struct kept_state *states;
    char name[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept_upstream *upstreams;

static struct kept_upstream *upstream_find(const char *name)
{
    struct kept_upstream *u = upstreams;
    while (u && strcmp(u->name, name) != 0)
        u = u->next;
    return u;
}

static struct kept_state *state_find(struct kept_upstream *u, const char *origin)
{
    struct kept_state *k = u->states;
    while (k && strcmp(k->origin, origin) != 0)
        k = k->next;
    return k;
}

static void state_remove(struct kept_upstream *u, struct kept_state *k)
{
    for (struct kept_state **pp = &u->states; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            free(k);
            return;
        }
}

/* Applies k to every listing of its origin in b at now. */
static void apply(struct balancer *b, const struct kept_state *k, uint64_t now_ms)
{
    const struct upstream_conf *up = balancer_upstream(b);
    for (int o = 0; o < up->norigins; o++) {
        if (strcmp(up->origins[o].text, k->origin) != 0)
            continue;
        balancer_set_admin(b, o, k->state, now_ms);
        /* a file that changed the origin's weight wins over the one set at run time */
        if (k->weight_set && up->origins[o].weight == k->file_weight)
            balancer_set_weight(b, o, k->weight, now_ms);
    }
}

int origin_admin_join(struct balancer *b)
{
    const struct upstream_conf *up = balancer_upstream(b);
    struct member *m = malloc(sizeof(*m));
    if (!m)
        return -1;
    pthread_mutex_lock(&lock);
    struct kept_upstream *u = upstream_find(up->name);
    if (!u) {
        size_t len = strlen(up->name) + 1;
        if (!(u = calloc(1, sizeof(*u) + len))) {
            pthread_mutex_unlock(&lock);
            free(m);
            return -1;
        }
        memcpy(u->name, up->name, len);
        u->next = upstreams;
        upstreams = u;
    }
    m->b = b;
    m->next = u->members;
    u->members = m;
    uint64_t now_ms = now_us() / 1000;
    for (const struct kept_state *k = u->states; k; k = k->next)
        apply(b, k, now_ms);
    pthread_mutex_unlock(&lock);
    return 0;
}

void origin_admin_serve(struct balancer *b)
{
    const struct upstream_conf *up = balancer_upstream(b);
    pthread_mutex_lock(&lock);
    struct kept_upstream *u = upstream_find(up->name);
    for (struct kept_state *k = u ? u->states : NULL, *next; k; k = next) {
        next = k->next;
        bool listed = false;
        for (int o = 0; o < up->norigins && !listed; o++)
            listed = strcmp(up->origins[o].text, k->origin) == 0;
        if (!listed) {
            log_info("admin: origin %s of upstream %s is no longer listed: its state (%s) "
                     "forgotten", k->origin, u->name, origin_admin_name(k->state));
            state_remove(u, k);
        }
    }
    pthread_mutex_unlock(&lock);
}

void origin_admin_leave(struct balancer *b)
{
    if (!b)
        return;
    const struct upstream_conf *up = balancer_upstream(b);
    pthread_mutex_lock(&lock);
    struct kept_upstream **pu = &upstreams;
    while (*pu && strcmp((*pu)->name, up->name) != 0)
        pu = &(*pu)->next;
    struct kept_upstream *u = *pu;
    for (struct member **pm = u ? &u->members : NULL; pm && *pm; pm = &(*pm)->next)
        if ((*pm)->b == b) {
            struct member *m = *pm;
            *pm = m->next;
            free(m);
            break;
        }
    if (u && !u->members) { /* no generation lists the upstream any more */
        *pu = u->next;
        while (u->states)
            state_remove(u, u->states);
        free(u);
    }
    pthread_mutex_unlock(&lock);
}

/* The newest member's listing of origin: what it had (the state and weight reported). */
static bool newest_listing(const struct kept_upstream *u, const char *origin,
                           enum origin_admin *state, unsigned *weight, unsigned *file_weight)
{
    for (const struct member *m = u->members; m; m = m->next) {
        const struct upstream_conf *up = balancer_upstream(m->b);
        for (int o = 0; o < up->norigins; o++)
            if (strcmp(up->origins[o].text, origin) == 0) {
                *state = balancer_origin_admin(m->b, o);
                *weight = balancer_weight(m->b, o);
                *file_weight = up->origins[o].weight;
                return true;
            }
    }
    return false;
}

enum origin_admin_rc origin_admin_set(const char *upstream, const char *origin, bool state_set,
                                      enum origin_admin state, bool weight_set, unsigned weight,
                                      uint64_t now_ms, enum origin_admin *was_state,
                                      unsigned *was_weight)
{
    enum origin_admin_rc rc = ORIGIN_ADMIN_OK;
    unsigned file_weight = 0;
    pthread_mutex_lock(&lock);
    struct kept_upstream *u = upstream_find(upstream);
    if (!u || !newest_listing(u, origin, was_state, was_weight, &file_weight)) {
        rc = ORIGIN_ADMIN_NO_ORIGIN;
        goto out;
    }
    struct kept_state *k = state_find(u, origin);
    if (!k) {
        size_t len = strlen(origin) + 1;
        if (!(k = calloc(1, sizeof(*k) + len))) {
            rc = ORIGIN_ADMIN_NO_MEMORY;
            goto out;
        }
        memcpy(k->origin, origin, len);
        k->state = ORIGIN_ADMIN_READY;
        k->next = u->states;
        u->states = k;
    }
    if (state_set)
        k->state = state;
    if (weight_set) {
        k->weight_set = weight != file_weight;
        k->weight = weight;
        k->file_weight = file_weight;
    }
    for (struct member *m = u->members; m; m = m->next)
        apply(m->b, k, now_ms);
    if (!k->weight_set) /* back to the file's weight: every member has it again */
        for (struct member *m = u->members; m; m = m->next) {
            const struct upstream_conf *up = balancer_upstream(m->b);
            for (int o = 0; weight_set && o < up->norigins; o++)
                if (strcmp(up->origins[o].text, origin) == 0)
                    balancer_set_weight(m->b, o, up->origins[o].weight, now_ms);
        }
    /* said once the pickers see it: a script that read the line finds the origin out */
    if (state_set)
        log_info("admin: origin %s of upstream %s set to %s (was %s)", origin, upstream,
                   origin_admin_name(state), origin_admin_name(*was_state));
    if (weight_set)
        log_info("admin: origin %s of upstream %s weight set to %u (was %u; %u in the file)",
                   origin, upstream, weight, *was_weight, file_weight);
    if (k->state == ORIGIN_ADMIN_READY && !k->weight_set)
        state_remove(u, k); /* as the file says: nothing to keep */
out:
    pthread_mutex_unlock(&lock);
    return rc;
}
