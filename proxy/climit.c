/*
 * climit.c — per-client limits in one bounded table. See climit.h.
 *
 * Shared by the workers of a generation (threads): nginx's one shared zone, not HAProxy's or a
 * per-worker table with the limit divided, which would let a client that spreads its
 * connections over the workers (SO_REUSEPORT hashes each to one) have the limit once per
 * worker, and refuse one that does not too early. Sets of CLIMIT_WAYS entries under striped
 * locks keep the locks held for two sets' walk (a key's two: the emptier takes a new one); two
 * full sets give up, of their entries that hold no connection (a count dropped would let a
 * client open more), the one that owes the fewest requests, the least recent of those: a client
 * held back by its burst keeps its debt while a flood of one-request clients churns past it.
 */
#include "portico/climit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "portico/util.h"

#define CLIMIT_LOCKS 256 /* stripes: at most this many sets are walked at once */

/* ::ffff:0:0/96, the prefix of an IPv4 address in IPv6 form (RFC 4291 2.5.5.2). */
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct entry {
    struct climit_key key;
    uint32_t conns;                    /* its open connections (scope CLIMIT_SCOPE_CONN) */
    uint64_t tat_ns;                   /* GCRA's theoretical arrival time of the next request */
    uint64_t interval_ns;              /* its rate's interval: what tat_ns is owed in */
    uint64_t used_ns;                  /* last touched; 0: a free entry */
};

/* One lock per cache line: stripes taken by different workers share none. */
struct stripe {
    pthread_mutex_t lock;
    char pad[64 - sizeof(pthread_mutex_t) % 64];
};

struct climit {
    struct entry *entries;             /* [nsets * CLIMIT_WAYS] */
    uint64_t nsets;
    uint64_t seed;                     /* hashes differ per table: no set chosen from afar */
    _Atomic uint64_t evictions;
    _Atomic uint64_t no_place;         /* connections and requests let through uncounted */
    _Atomic uint64_t connections;      /* counted now, all clients: /metrics shows it */
    struct stripe locks[CLIMIT_LOCKS];
};

struct climit *climit_new(uint64_t entries)
{
    struct climit *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->nsets = (entries + CLIMIT_WAYS - 1) / CLIMIT_WAYS;
    if (t->nsets == 0)
        t->nsets = 1;
    /* calloc: untouched sets cost no resident memory until clients come */
    t->entries = calloc(t->nsets * CLIMIT_WAYS, sizeof(*t->entries));
    if (!t->entries) {
        free(t);
        return NULL;
    }
    t->seed = now_us() ^ (uint64_t)(uintptr_t)t;
    for (int i = 0; i < CLIMIT_LOCKS; i++)
        pthread_mutex_init(&t->locks[i].lock, NULL);
    atomic_init(&t->evictions, 0);
    atomic_init(&t->no_place, 0);
    atomic_init(&t->connections, 0);
    return t;
}

void climit_free(struct climit *t)
{
    if (!t)
        return;
    for (int i = 0; i < CLIMIT_LOCKS; i++)
        pthread_mutex_destroy(&t->locks[i].lock);
    free(t->entries);
    free(t);
}

void climit_key_addr(const struct fault_addr *a, int32_t scope, struct climit_key *k)
{
    memset(k, 0, sizeof(*k));
    k->scope = scope;
    if (a->v6) {
        memcpy(k->addr, a->bytes, 8); /* its /64 */
        return;
    }
    memcpy(k->addr, v4_mapped, sizeof(v4_mapped)); /* ::ffff:a.b.c.d: no IPv6 /64 */
    memcpy(k->addr + 12, a->bytes, 4);
}

int climit_sockaddr_addr(const struct sockaddr *sa, struct fault_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        memcpy(out->bytes, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family != AF_INET6)
        return -1;
    const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    /* an IPv4 client on a dual-stack socket */
    if (memcmp(b, v4_mapped, sizeof(v4_mapped)) == 0) {
        memcpy(out->bytes, b + 12, 4);
    } else {
        memcpy(out->bytes, b, 16);
        out->v6 = true;
    }
    return 0;
}

const char *climit_key_text(const struct climit_key *k, char *buf, size_t size)
{
    char text[INET6_ADDRSTRLEN];
    if (memcmp(k->addr, v4_mapped, sizeof(v4_mapped)) == 0) {
        inet_ntop(AF_INET, k->addr + 12, text, sizeof(text));
        snprintf(buf, size, "%s", text);
    } else {
        inet_ntop(AF_INET6, k->addr, text, sizeof(text));
        snprintf(buf, size, "%s/64", text);
    }
    return buf;
}

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* k's two sets (the same one in a table of one set): its entry is in either, a new one goes to
 * the emptier. Of clients that each hold a connection (an entry never evicted), one set per key
 * left 0.9% of them without a place at half the table and 5.1% at 3/4; two, none at half and
 * 0.003% at 3/4 (test_climit.c's test_connections_fill_the_table_evenly). */
struct sets {
    uint64_t set[2];
};

static struct sets sets_of(const struct climit *t, const struct climit_key *k)
{
    uint64_t w0, w1;
    memcpy(&w0, k->addr, 8);
    memcpy(&w1, k->addr + 8, 8);
    uint64_t h = mix(w0 ^ t->seed);
    h = mix(h ^ w1);
    h = mix(h ^ (uint64_t)(uint32_t)k->scope);
    return (struct sets){{h % t->nsets, mix(h ^ t->seed) % t->nsets}};
}

static bool key_eq(const struct climit_key *a, const struct climit_key *b)
{
    return a->scope == b->scope && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* The requests e's client owes at now_ns (its debt to the rate, whole intervals rounded up):
 * what evicting it would give back. 0 for a client at rest or a connection count. */
static uint64_t owed(const struct entry *e, uint64_t now_ns)
{
    if (e->tat_ns <= now_ns || e->interval_ns == 0)
        return 0;
    return (e->tat_ns - now_ns + e->interval_ns - 1) / e->interval_ns;
}

/* k's entry in its two sets (locked by the caller): found, else a free one of the set with
 * more free, else of those that hold no connection the one that owes the fewest requests (the
 * least recent of them), given to k (tat 0, no connection). NULL when all 16 entries hold
 * connections, or (create false) when k has none. An entry evicted by LRU alone would let a
 * client held at its burst start afresh each time a few one-request clients came to its sets
 * between two of its requests. */
static struct entry *entry_of(struct climit *t, struct sets s, const struct climit_key *k,
                              bool create, uint64_t now_ns)
{
    struct entry *e = NULL;
    int nsets = s.set[0] == s.set[1] ? 1 : 2, most_free = 0;
    for (int i = 0; i < nsets; i++) {
        struct entry *set = &t->entries[s.set[i] * CLIMIT_WAYS], *first_free = NULL;
        int nfree = 0;
        for (int w = 0; w < CLIMIT_WAYS; w++) {
            if (set[w].used_ns == 0) {
                first_free = first_free ? first_free : &set[w];
                nfree++;
            } else if (key_eq(&set[w].key, k)) {
                return &set[w];
            }
        }
        if (nfree > most_free) { /* the emptier set: what keeps both from filling */
            e = first_free;
            most_free = nfree;
        }
    }
    if (!create)
        return NULL;
    if (!e) { /* full: the victim is chosen only here, off the path of a client found */
        uint64_t e_cost = 0;
        for (int i = 0; i < nsets; i++) {
            struct entry *set = &t->entries[s.set[i] * CLIMIT_WAYS];
            for (int w = 0; w < CLIMIT_WAYS; w++) {
                if (set[w].conns > 0)
                    continue;
                uint64_t cost = owed(&set[w], now_ns);
                if (!e || cost < e_cost || (cost == e_cost && set[w].used_ns < e->used_ns)) {
                    e = &set[w];
                    e_cost = cost;
                }
            }
        }
        if (!e)
            return NULL;
        atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
    }
    *e = (struct entry){.key = *k};
    return e;
}

/* The stripes of k's two sets, taken in the order of their index (two workers taking the same
 * two never wait on each other crosswise), one only when both sets share it. */
static void lock_sets(struct climit *t, struct sets s)
{
    uint64_t a = s.set[0] % CLIMIT_LOCKS, b = s.set[1] % CLIMIT_LOCKS;
    pthread_mutex_lock(&t->locks[a < b ? a : b].lock);
    if (a != b)
        pthread_mutex_lock(&t->locks[a < b ? b : a].lock);
}

static void unlock_sets(struct climit *t, struct sets s)
{
    uint64_t a = s.set[0] % CLIMIT_LOCKS, b = s.set[1] % CLIMIT_LOCKS;
    if (a != b)
        pthread_mutex_unlock(&t->locks[b].lock);
    pthread_mutex_unlock(&t->locks[a].lock);
}

uint64_t climit_take(struct climit *t, const struct climit_key *k, uint64_t interval_ns,
                     uint64_t burst, uint64_t now_ns)
{
    struct sets s = sets_of(t, k);
    uint64_t wait = 0;
    lock_sets(t, s);
    struct entry *e = entry_of(t, s, k, true, now_ns);
    if (e) {
        e->used_ns = now_ns ? now_ns : 1;
        e->interval_ns = interval_ns;
        uint64_t tat = e->tat_ns > now_ns ? e->tat_ns : now_ns;
        uint64_t tolerance = burst * interval_ns;
        if (tat - now_ns > tolerance)
            wait = tat - now_ns - tolerance;
        else
            e->tat_ns = tat + interval_ns;
    } else {
        atomic_fetch_add_explicit(&t->no_place, 1, memory_order_relaxed);
    }
    unlock_sets(t, s);
    return wait;
}

int climit_conn_open(struct climit *t, const struct climit_key *k, uint64_t max,
                     uint64_t now_ns)
{
    struct sets s = sets_of(t, k);
    int rc = -1;
    lock_sets(t, s);
    struct entry *e = entry_of(t, s, k, true, now_ns);
    if (e) {
        e->used_ns = now_ns ? now_ns : 1;
        rc = e->conns >= max ? 0 : 1;
        if (rc == 1) {
            e->conns++;
            atomic_fetch_add_explicit(&t->connections, 1, memory_order_relaxed);
        }
    } else {
        atomic_fetch_add_explicit(&t->no_place, 1, memory_order_relaxed);
    }
    unlock_sets(t, s);
    return rc;
}

void climit_conn_close(struct climit *t, const struct climit_key *k)
{
    struct sets s = sets_of(t, k);
    lock_sets(t, s);
    struct entry *e = entry_of(t, s, k, false, 0);
    if (e && e->conns > 0) { /* held: a counted entry is never evicted */
        e->conns--;
        atomic_fetch_sub_explicit(&t->connections, 1, memory_order_relaxed);
    }
    unlock_sets(t, s);
}

uint64_t climit_capacity(const struct climit *t)
{
    return t->nsets * CLIMIT_WAYS;
}

uint64_t climit_evictions(const struct climit *t)
{
    return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)&t->evictions,
                                memory_order_relaxed);
}

uint64_t climit_no_place(const struct climit *t)
{
    return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)&t->no_place,
                                memory_order_relaxed);
}

uint64_t climit_connections(const struct climit *t)
{
    return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)&t->connections,
                                memory_order_relaxed);
}
