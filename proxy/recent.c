/*
 * recent.c — the last minutes of each worker, read at scrape time. See recent.h.
 *
 * The seqlocks follow Boehm, "Can seqlocks get along with programming language memory models?"
 * (2012): the writer makes the sequence odd, issues a release fence, stores the payload words
 * with relaxed stores and publishes the even sequence with a release store; the reader loads
 * the sequence with acquire, the words relaxed, issues an acquire fence and loads the sequence
 * again. Every shared word is atomic, so a torn copy is detected, never undefined.
 */
#include "portico/recent.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define FAILURE_WORDS ((sizeof(struct recent_failure) + 7) / 8)
#define NCOUNTS (1 + RECENT_CLASSES + FAILURE_COUNT) /* requests, classes, failures */
#define READ_TRIES 4                                 /* copies of a busy slot before giving up */

struct failure_slot {
    _Atomic unsigned seq;              /* odd while written; 0: never written */
    _Atomic uint64_t words[FAILURE_WORDS];
};

struct minute_slot {
    _Atomic unsigned seq;              /* odd while the minute starts anew */
    _Atomic uint64_t minute;
    _Atomic uint64_t counts[NCOUNTS];
};

struct recent {
    struct minute_slot minutes[RECENT_MINUTES];
    struct failure_slot failures[RECENT_FAILURES];
    unsigned next_failure;             /* writer only: the slot written next */
    unsigned generation;
    int nupstreams;
    _Atomic uint64_t *pool_idle;       /* [nupstreams] */
};

/* Process totals of retired shards, and the live shards: under registry_lock. */
struct totals {
    struct recent_minute minutes[RECENT_MINUTES];
    struct recent_failure failures[RECENT_FAILURES];
    unsigned nfailures;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct recent **shards;
static size_t nshards, capshards;
static struct totals retired;

int recent_class_of(int status)
{
    return status >= 100 && status <= 599 ? status / 100 - 1 : RECENT_CLASSES - 1;
}

static void bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- shards ---- */

static void shard_free(struct recent *r)
{
    if (r) {
        free(r->pool_idle);
        free(r);
    }
}

struct recent *recent_shard_create(unsigned generation, int nupstreams)
{
    struct recent *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->generation = generation;
    r->nupstreams = nupstreams > 0 ? nupstreams : 0;
    r->pool_idle = calloc((size_t)r->nupstreams + 1, sizeof(*r->pool_idle));
    if (!r->pool_idle) {
        shard_free(r);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    bool ok = nshards < capshards;
    if (!ok) {
        size_t cap = capshards ? capshards * 2 : 8;
        struct recent **grown = realloc(shards, cap * sizeof(*grown));
        if (grown) {
            shards = grown;
            capshards = cap;
            ok = true;
        }
    }
    if (ok)
        shards[nshards++] = r;
    pthread_mutex_unlock(&registry_lock);
    if (!ok) {
        shard_free(r);
        return NULL;
    }
    return r;
}

/* ---- the writer ---- */

/* Copies src (cut to size - 1 bytes, NULL as "") into dst; returns the bytes before its NUL. */
static size_t copy_cut(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

/* The minute's slot, started anew (zeroed under its seqlock) when it held an older minute. */
static struct minute_slot *minute_of(struct recent *r, uint64_t minute)
{
    struct minute_slot *m = &r->minutes[minute % RECENT_MINUTES];
    if (atomic_load_explicit(&m->minute, memory_order_relaxed) == minute)
        return m;
    unsigned seq = atomic_load_explicit(&m->seq, memory_order_relaxed);
    atomic_store_explicit(&m->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int i = 0; i < NCOUNTS; i++)
        atomic_store_explicit(&m->counts[i], 0, memory_order_relaxed);
    atomic_store_explicit(&m->minute, minute, memory_order_relaxed);
    atomic_store_explicit(&m->seq, seq + 2, memory_order_release);
    return m;
}

/* copy_cut into a field of rec; returns the offset past the copy's NUL in rec. */
static size_t copy_cut_at(const struct recent_failure *rec, char *dst, size_t size,
                          const char *src)
{
    return (size_t)(dst - (const char *)rec) + copy_cut(dst, size, src) + 1;
}

/* The words of slot holding bytes [from, to) of rec. */
static void store_span(struct failure_slot *slot, const uint64_t *rec, size_t from, size_t to)
{
    for (size_t i = from / 8; i < (to + 7) / 8; i++)
        atomic_store_explicit(&slot->words[i], rec[i], memory_order_relaxed);
}

/* Only the words that hold the numbers and each string up to its NUL are stored: a failure's
 * strings fill a fraction of their fields (1,160 bytes), and storing every word cost ~900
 * instructions per failed request. What lies past a NUL in a field is an older failure's, never
 * read. */
static void keep_failure(struct recent *r, const struct recent_sample *s)
{
    union {
        struct recent_failure f;
        uint64_t words[FAILURE_WORDS];
    } u = {.f = {
               .time_ms = s->time_ms,
               .total_us = s->total_us,
               .limit_ms = s->limit_ms,
               .status = s->after_head ? 0 : s->status, /* the client got the origin's, then a cut */
               .failure = s->failure,
               .phase = s->phase,
               .tls_alert = s->tls_alert,
           }};
    struct recent_failure *f = &u.f;
    size_t ends[] = {
        copy_cut_at(f, f->request_id, sizeof(f->request_id), s->request_id),
        copy_cut_at(f, f->route, sizeof(f->route), s->route),
        copy_cut_at(f, f->upstream, sizeof(f->upstream), s->upstream),
        copy_cut_at(f, f->origin, sizeof(f->origin), s->origin),
        copy_cut_at(f, f->detail, sizeof(f->detail), s->detail),
        copy_cut_at(f, f->fault, sizeof(f->fault), s->fault),
    };
    const char *starts[] = {f->request_id, f->route, f->upstream, f->origin, f->detail, f->fault};

    struct failure_slot *slot = &r->failures[r->next_failure];
    r->next_failure = (r->next_failure + 1) % RECENT_FAILURES;
    unsigned seq = atomic_load_explicit(&slot->seq, memory_order_relaxed);
    atomic_store_explicit(&slot->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    store_span(slot, u.words, 0, offsetof(struct recent_failure, request_id));
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        store_span(slot, u.words, (size_t)(starts[i] - (const char *)f), ends[i]);
    atomic_store_explicit(&slot->seq, seq + 2, memory_order_release);
}

void recent_record(struct recent *r, const struct recent_sample *s)
{
    struct minute_slot *m = minute_of(r, s->time_ms / 60000);
    bump(&m->counts[0]);
    bump(&m->counts[1 + recent_class_of(s->status)]);
    if ((unsigned)s->failure < FAILURE_COUNT && s->failure != FAIL_NONE) {
        bump(&m->counts[1 + RECENT_CLASSES + s->failure]);
        keep_failure(r, s);
    }
}

void recent_set_pool(struct recent *r, int upstream, uint64_t idle)
{
    if (upstream >= 0 && upstream < r->nupstreams)
        atomic_store_explicit(&r->pool_idle[upstream], idle, memory_order_relaxed);
}

/* ---- readers (under registry_lock) ---- */

/* A consistent copy of a minute slot; false when it is being rewritten. */
static bool read_minute(const struct minute_slot *m, struct recent_minute *out)
{
    struct minute_slot *w = (struct minute_slot *)(uintptr_t)m; /* loads only */
    for (int t = 0; t < READ_TRIES; t++) {
        unsigned s1 = atomic_load_explicit(&w->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        uint64_t c[NCOUNTS];
        uint64_t minute = atomic_load_explicit(&w->minute, memory_order_relaxed);
        for (int i = 0; i < NCOUNTS; i++)
            c[i] = atomic_load_explicit(&w->counts[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&w->seq, memory_order_relaxed) != s1)
            continue;
        out->minute = minute;
        out->requests = c[0];
        memcpy(out->classes, c + 1, sizeof(out->classes));
        memcpy(out->failures, c + 1 + RECENT_CLASSES, sizeof(out->failures));
        return true;
    }
    return false;
}

static bool read_failure(const struct failure_slot *slot, struct recent_failure *out)
{
    struct failure_slot *w = (struct failure_slot *)(uintptr_t)slot; /* loads only */
    for (int t = 0; t < READ_TRIES; t++) {
        unsigned s1 = atomic_load_explicit(&w->seq, memory_order_acquire);
        if (s1 == 0)
            return false; /* never written */
        if (s1 & 1)
            continue;
        uint64_t words[FAILURE_WORDS];
        for (size_t i = 0; i < FAILURE_WORDS; i++)
            words[i] = atomic_load_explicit(&w->words[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&w->seq, memory_order_relaxed) != s1)
            continue;
        memcpy(out, words, sizeof(*out));
        return true;
    }
    return false;
}

/* Adds a minute's counts into the view's slot for it, when it is one of the view's minutes. */
static void add_minute(struct recent_view *v, const struct recent_minute *m)
{
    for (int i = 0; i < RECENT_MINUTES; i++) {
        struct recent_minute *d = &v->minutes[i];
        if (d->minute != m->minute)
            continue;
        d->requests += m->requests;
        for (int c = 0; c < RECENT_CLASSES; c++)
            d->classes[c] += m->classes[c];
        for (int f = 0; f < FAILURE_COUNT; f++)
            d->failures[f] += m->failures[f];
        return;
    }
}

/* Keeps f among the view's newest failures (sorted newest first, at most the view's size). */
static void add_failure(struct recent_view *v, const struct recent_failure *f)
{
    size_t n = v->nfailures, at = n;
    while (at > 0 && v->failures[at - 1].time_ms < f->time_ms)
        at--;
    if (at == RECENT_VIEW_FAILURES)
        return;
    if (n == RECENT_VIEW_FAILURES)
        n--; /* the oldest falls off */
    memmove(&v->failures[at + 1], &v->failures[at], (n - at) * sizeof(*f));
    v->failures[at] = *f;
    v->nfailures = n + 1;
}

void recent_snapshot(struct recent_view *v, uint64_t now_ms, unsigned generation)
{
    uint64_t now_minute = now_ms / 60000;
    for (int i = 0; i < RECENT_MINUTES; i++)
        v->minutes[i] = (struct recent_minute){
            .minute = now_minute - (uint64_t)(RECENT_MINUTES - 1 - i)};
    v->nfailures = 0;
    for (int u = 0; u < v->npools; u++)
        v->pool_idle[u] = 0;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < RECENT_MINUTES; i++)
        add_minute(v, &retired.minutes[i]);
    for (unsigned i = 0; i < retired.nfailures; i++)
        add_failure(v, &retired.failures[i]);
    for (size_t s = 0; s < nshards; s++) {
        const struct recent *r = shards[s];
        struct recent_minute m;
        struct recent_failure f;
        for (int i = 0; i < RECENT_MINUTES; i++)
            if (read_minute(&r->minutes[i], &m))
                add_minute(v, &m);
        for (int i = 0; i < RECENT_FAILURES; i++)
            if (read_failure(&r->failures[i], &f))
                add_failure(v, &f);
        if (r->generation != generation)
            continue;
        for (int u = 0; u < v->npools && u < r->nupstreams; u++)
            v->pool_idle[u] += atomic_load_explicit(&r->pool_idle[u], memory_order_relaxed);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* ---- retiring ---- */

static void fold_minute(const struct recent_minute *m)
{
    struct recent_minute *d = &retired.minutes[m->minute % RECENT_MINUTES];
    if (d->minute != m->minute) {
        if (d->minute > m->minute)
            return; /* older than what the slot holds: out of the window anyway */
        *d = (struct recent_minute){.minute = m->minute};
    }
    d->requests += m->requests;
    for (int c = 0; c < RECENT_CLASSES; c++)
        d->classes[c] += m->classes[c];
    for (int f = 0; f < FAILURE_COUNT; f++)
        d->failures[f] += m->failures[f];
}

/* Keeps f among the retired failures: the newest RECENT_FAILURES of all retired shards. */
static void fold_failure(const struct recent_failure *f)
{
    if (retired.nfailures < RECENT_FAILURES) {
        retired.failures[retired.nfailures++] = *f;
        return;
    }
    unsigned oldest = 0;
    for (unsigned i = 1; i < RECENT_FAILURES; i++)
        if (retired.failures[i].time_ms < retired.failures[oldest].time_ms)
            oldest = i;
    if (retired.failures[oldest].time_ms < f->time_ms)
        retired.failures[oldest] = *f;
}

void recent_shard_retire(struct recent *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&registry_lock);
    for (size_t s = 0; s < nshards; s++) {
        if (shards[s] != r)
            continue;
        struct recent_minute m;
        struct recent_failure f;
        for (int i = 0; i < RECENT_MINUTES; i++)
            if (read_minute(&r->minutes[i], &m) && m.minute)
                fold_minute(&m);
        for (int i = 0; i < RECENT_FAILURES; i++) {
            if (!read_failure(&r->failures[i], &f))
                continue;
            fold_failure(&f);
        }
        shards[s] = shards[--nshards];
        break;
    }
    pthread_mutex_unlock(&registry_lock);
    shard_free(r);
}

void recent_free_all(void)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t s = 0; s < nshards; s++)
        shard_free(shards[s]);
    free(shards);
    shards = NULL;
    nshards = capshards = 0;
    memset(&retired, 0, sizeof(retired));
    pthread_mutex_unlock(&registry_lock);
}
