/*
 * slotshare.c — origins' in-flight counts shared across generations. See slotshare.h.
 *
 * The shares are a list under registry_lock, walked at a generation's creation and end only (a
 * handful of upstreams). A share's lock is taken after registry_lock, never before.
 */
#include "portico/slotshare.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A count with its identity; the count first, so that a slot_count is one of these. */
struct shared_count {
    struct slot_count c;               /* first: what the members hold */
    unsigned holders;                  /* the members' origins that count on it */
    unsigned listing;                  /* its listing among the origins of its text */
    struct shared_count *next;         /* the share's list */
    char origin[];                     /* host:port as written */
};

struct slot_share {
    pthread_mutex_t lock;              /* the members' queues, the list, the counts' list */
    unsigned refs;                     /* slot_share_join's, under registry_lock */
    struct slot_member *oldest, *newest; /* the members, by generation */
    struct shared_count *counts;       /* every count a member holds */
    bool limited;                      /* its upstreams have max_conns (and queues) */
    _Atomic unsigned retries;          /* retry_budget: its requests on a retry now */
    struct slot_tally tally;           /* its generations' counters */
    struct slot_share *next;           /* the registry's list */
    char upstream[];                   /* the upstream's name */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot_share *shares;

static struct slot_share *share_find(const char *upstream, bool limited)
{
    for (struct slot_share *s = shares; s; s = s->next)
        if (s->limited == limited && strcmp(s->upstream, upstream) == 0)
            return s;
    return NULL;
}

static struct slot_share *share_new(const char *upstream, bool limited)
{
    size_t len = strlen(upstream) + 1;
    struct slot_share *s = calloc(1, sizeof(*s) + len);
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    memcpy(s->upstream, upstream, len);
    s->limited = limited;
    s->next = shares;
    shares = s;
    return s;
}

struct slot_share *slot_share_join(const char *upstream, bool limited)
{
    pthread_mutex_lock(&registry_lock);
    struct slot_share *s = share_find(upstream, limited);
    if (!s)
        s = share_new(upstream, limited);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&registry_lock);
    return s;
}

void slot_share_enter(struct slot_share *s, struct slot_member *m)
{
    pthread_mutex_lock(&s->lock);
    m->next = NULL;
    m->prev = s->newest;
    if (s->newest)
        s->newest->next = m;
    else
        s->oldest = m;
    s->newest = m;
    m->entered = true;
    pthread_mutex_unlock(&s->lock);
}

void slot_share_leave(struct slot_share *s, struct slot_member *m)
{
    pthread_mutex_lock(&registry_lock);
    if (m && m->entered) {
        pthread_mutex_lock(&s->lock);
        if (m->prev)
            m->prev->next = m->next;
        else
            s->oldest = m->next;
        if (m->next)
            m->next->prev = m->prev;
        else
            s->newest = m->prev;
        m->next = m->prev = NULL;
        m->entered = false;
        pthread_mutex_unlock(&s->lock);
    }
    if (--s->refs == 0) {
        for (struct slot_share **pp = &shares; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        pthread_mutex_destroy(&s->lock);
        free(s); /* its counts went with their last holders */
    }
    pthread_mutex_unlock(&registry_lock);
}

struct slot_count *slot_share_count(struct slot_share *s, const char *origin, unsigned listing,
                                    unsigned max)
{
    pthread_mutex_lock(&s->lock);
    struct shared_count *c = s->counts;
    while (c && (c->listing != listing || strcmp(c->origin, origin) != 0 ||
                 atomic_load_explicit(&c->c.into, memory_order_relaxed))) /* drained: not it */
        c = c->next;
    if (!c) {
        size_t len = strlen(origin) + 1;
        if ((c = calloc(1, sizeof(*c) + len))) {
            atomic_init(&c->c.in_flight, 0);
            atomic_init(&c->c.max, max);
            atomic_init(&c->c.into, NULL);
            c->listing = listing;
            memcpy(c->origin, origin, len);
            c->next = s->counts;
            s->counts = c;
        }
    }
    if (c)
        c->holders++;
    pthread_mutex_unlock(&s->lock);
    return c ? &c->c : NULL;
}

void slot_share_drain(struct slot_share *s, const char *origin, unsigned listings,
                      struct slot_count *into)
{
    struct shared_count *to = (struct shared_count *)(uintptr_t)into;
    for (struct shared_count *c = s->counts; c; c = c->next) {
        if (c == to || c->listing < listings || strcmp(c->origin, origin) != 0 ||
            atomic_load_explicit(&c->c.into, memory_order_relaxed))
            continue;
        to->holders++; /* into lives while c points to it */
        atomic_store_explicit(&c->c.into, into, memory_order_release);
        /* frees take the lock, claims only add: what c holds is moved before it closes */
        unsigned moved = 0, n = atomic_load(&c->c.in_flight);
        for (;;) {
            if (n > moved)
                atomic_fetch_add(&into->in_flight, n - moved);
            moved = n > moved ? n : moved;
            if (atomic_compare_exchange_weak(&c->c.in_flight, &n, SLOT_DRAINED))
                break;
        }
    }
}

void slot_share_put(struct slot_share *s, struct slot_count *count)
{
    struct shared_count *c = (struct shared_count *)(uintptr_t)count;
    pthread_mutex_lock(&s->lock);
    while (c && --c->holders == 0) { /* a drained count held the one it went into */
        for (struct shared_count **pp = &s->counts; *pp; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        struct shared_count *into =
            (struct shared_count *)(uintptr_t)atomic_load_explicit(&c->c.into,
                                                                   memory_order_relaxed);
        free(c);
        c = into;
    }
    pthread_mutex_unlock(&s->lock);
}

_Atomic unsigned *slot_share_retries(struct slot_share *s)
{
    return &s->retries;
}

struct slot_tally *slot_share_tally(struct slot_share *s)
{
    return &s->tally;
}

pthread_mutex_t *slot_share_lock(struct slot_share *s)
{
    return &s->lock;
}

struct slot_member *slot_share_oldest(struct slot_share *s)
{
    return s->oldest;
}
