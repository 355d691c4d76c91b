/*
 * metrics.c — per-worker shards and their Prometheus exposition. See metrics.h.
 *
 * A shard is a set of arrays sized when its worker starts: counters per (route, pair) where a
 * pair is a (status code, failure type) seen by this shard, histograms per (upstream, phase),
 * counters per (fault, action), and small fixed tables for interim responses and connection
 * gauges. Rendering (and retiring a shard) turns them into rows keyed by label *names*, so that
 * shards of different configuration generations add up by name; the rows are sorted, equal
 * keys summed, and printed family by family.
 */
#include "portico/metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/origin_admin_state.h"
#include "portico/util.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "unknown"
#endif

#define CODE_MIN 100
#define CODE_MAX 999
#define NCODES (CODE_MAX - CODE_MIN + 1)
#define PAIR_CAP 128                   /* distinct (code, failure) pairs a shard keeps apart */
#define NSLOTS (PAIR_CAP + FAILURE_COUNT) /* then one "other code" slot per failure type */
#define CODE_OTHER 0                   /* the code of an overflow slot: rendered "other" */
#define NINTERIM 100                   /* codes 100-199 */
#define NBUCKETS (METRICS_BUCKETS + 1) /* + Inf */

const uint64_t metrics_bucket_us[METRICS_BUCKETS] = {
    1000,    2500,    5000,     10000,    25000,    50000,    100000,  250000,
    500000,  1000000, 2500000,  5000000,  10000000, 30000000, 60000000,
};

static const char *const bucket_le[NBUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5",   "1",      "2.5",   "5",    "10",    "30",   "60",  "+Inf",
};

/* ---- names ---- */

static const struct {
    const char *name;
    const char *help;
} metric_rows[METRIC_COUNT] = {
#define X(id, nm, hp) [id] = {nm, hp},
    METRIC_LIST(X)
#undef X
};

static const char *const interim_dir_names[INTERIM_DIR_COUNT] = {
#define X(id, nm) [id] = nm,
    INTERIM_DIR_LIST(X)
#undef X
};

static const char *const conn_side_names[CONN_SIDE_COUNT] = {
#define X(id, nm) [id] = nm,
    CONN_SIDE_LIST(X)
#undef X
};

static const char *const conn_state_names[CONN_STATE_COUNT] = {
#define X(id, nm) [id] = nm,
    CONN_STATE_LIST(X)
#undef X
};

static const char *const fault_action_names[FAULT_ACTION_COUNT] = {
#define X(id, nm) [id] = nm,
    FAULT_ACTION_LIST(X)
#undef X
};

static const char *const tls_key_names[TLS_KEY_COUNT] = {
#define X(id, nm) [id] = nm,
    TLS_KEY_LIST(X)
#undef X
};

static const char *const reload_result_names[RELOAD_RESULT_COUNT] = {
#define X(id, nm) [id] = nm,
    RELOAD_RESULT_LIST(X)
#undef X
};

static const char *const dns_tcp_outcome_names[DNS_TCP_OUTCOME_COUNT] = {
#define X(id, nm) [id] = nm,
    DNS_TCP_OUTCOME_LIST(X)
#undef X
};

static const char *const discard_end_names[DISCARD_END_COUNT] = {
#define X(id, nm) [id] = nm,
    DISCARD_END_LIST(X)
#undef X
};

/* portico_request_body_discards_total's protocol label: [http2]. */
static const char *const discard_protocols[2] = {"http1", "http2"};

static const char *const accept_error_names[ACCEPT_ERROR_COUNT] = {
#define X(id, nm) [id] = nm,
    ACCEPT_ERROR_LIST(X)
#undef X
};

static const char *const conn_refusal_names[CONN_REFUSAL_COUNT] = {
#define X(id, nm) [id] = nm,
    CONN_REFUSAL_LIST(X)
#undef X
};

static const char *const tunnel_end_labels[TUNNEL_END_COUNT] = {
#define X(id, label, words) [id] = label,
    TUNNEL_END_LIST(X)
#undef X
};

static const char *const tunnel_end_texts[TUNNEL_END_COUNT] = {
#define X(id, label, words) [id] = words,
    TUNNEL_END_LIST(X)
#undef X
};

static const char *const pp_error_labels[PP_ERROR_COUNT] = {
#define X(id, label, words) [id] = label,
    PP_ERROR_LIST(X)
#undef X
};

static const char *const pp_error_texts[PP_ERROR_COUNT] = {
#define X(id, label, words) [id] = words,
    PP_ERROR_LIST(X)
#undef X
};

static const char *const cert_refusal_labels[CERT_REFUSAL_COUNT] = {
#define X(id, label, words) [id] = label,
    CERT_REFUSAL_LIST(X)
#undef X
};

static const char *const cert_refusal_texts[CERT_REFUSAL_COUNT] = {
#define X(id, label, words) [id] = words,
    CERT_REFUSAL_LIST(X)
#undef X
};

static const char *const h2_refused_labels[H2_REFUSED_COUNT] = {
#define X(id, label, words) [id] = label,
    H2_REFUSED_LIST(X)
#undef X
};

static const char *const h2_refused_texts[H2_REFUSED_COUNT] = {
#define X(id, label, words) [id] = words,
    H2_REFUSED_LIST(X)
#undef X
};

#define NAME_OF(table, count, v) ((unsigned)(v) < (count) ? (table)[v] : "?")

const char *interim_direction_name(enum interim_direction d)
{
    return NAME_OF(interim_dir_names, INTERIM_DIR_COUNT, d);
}

const char *conn_side_name(enum conn_side s)
{
    return NAME_OF(conn_side_names, CONN_SIDE_COUNT, s);
}

const char *conn_state_name(enum conn_state s)
{
    return NAME_OF(conn_state_names, CONN_STATE_COUNT, s);
}

const char *fault_action_name(enum fault_action a)
{
    return NAME_OF(fault_action_names, FAULT_ACTION_COUNT, a);
}

const char *tls_key_name(enum tls_key_type k)
{
    return NAME_OF(tls_key_names, TLS_KEY_COUNT, k);
}

const char *reload_result_name(enum reload_result r)
{
    return NAME_OF(reload_result_names, RELOAD_RESULT_COUNT, r);
}

const char *tunnel_end_words(enum tunnel_end e)
{
    return NAME_OF(tunnel_end_texts, TUNNEL_END_COUNT, e);
}

const char *pp_error_label(enum pp_error e)
{
    return NAME_OF(pp_error_labels, PP_ERROR_COUNT, e);
}

const char *pp_error_words(enum pp_error e)
{
    return NAME_OF(pp_error_texts, PP_ERROR_COUNT, e);
}

const char *cert_refusal_label(enum cert_refusal r)
{
    return NAME_OF(cert_refusal_labels, CERT_REFUSAL_COUNT, r);
}

const char *cert_refusal_words(enum cert_refusal r)
{
    return NAME_OF(cert_refusal_texts, CERT_REFUSAL_COUNT, r);
}

const char *h2_refused_label(enum h2_refused r)
{
    return NAME_OF(h2_refused_labels, H2_REFUSED_COUNT, r);
}

const char *h2_refused_words(enum h2_refused r)
{
    return NAME_OF(h2_refused_texts, H2_REFUSED_COUNT, r);
}

/* ---- shards ---- */

struct hist {
    _Atomic uint64_t buckets[NBUCKETS]; /* not cumulative: one bucket per observation */
    _Atomic uint64_t sum_us;
};

struct shard {
    struct metrics pub;                /* first: what metrics.h's inline writers touch */
    _Atomic int64_t conns[CONN_SIDE_COUNT][CONN_STATE_COUNT];
    _Atomic uint64_t interim[NINTERIM][INTERIM_DIR_COUNT];
    _Atomic uint64_t tunnel_ends[TUNNEL_END_COUNT];
    _Atomic uint64_t pp_errors[PP_ERROR_COUNT];
    _Atomic uint64_t cert_refusals[CERT_REFUSAL_COUNT];
    _Atomic uint64_t dns_tcp[DNS_TCP_OUTCOME_COUNT];
    _Atomic uint64_t h2_refused[H2_REFUSED_COUNT];
    _Atomic uint64_t accept_errors[ACCEPT_ERROR_COUNT];
    _Atomic uint64_t conn_refusals[CONN_REFUSAL_COUNT];
    _Atomic uint64_t discards[2][DISCARD_END_COUNT]; /* [http2][end] */
    _Atomic uint64_t discarded_bytes[2];

    /* portico_requests_total */
    uint8_t pair_of[NCODES][FAILURE_COUNT]; /* writer only: slot + 1 of a pair, 0 none yet */
    _Atomic unsigned npairs;           /* slots in use: published with release */
    uint16_t pair_code[PAIR_CAP];      /* written once, before npairs covers the slot */
    uint8_t pair_failure[PAIR_CAP];
    _Atomic uint64_t *requests;        /* [(nroutes + 1) * NSLOTS]; route 0 is "not routed" */

    struct hist *hist;                 /* [nupstreams * TIMING_COUNT] */
    _Atomic uint64_t *faults;          /* [nfaults * FAULT_ACTION_COUNT] */
    _Atomic uint64_t *handshakes;      /* [nserved]: full handshakes per certificate served */
    uint8_t *served_key;               /* [nserved]: enum tls_key_type */
    _Atomic uint64_t *rate_limited;    /* [nroutes]: portico_requests_rate_limited_total */
    _Atomic uint64_t *denied;          /* [nroutes]: portico_requests_denied_total */
    _Atomic uint64_t *mirrored;        /* [nroutes * MIRROR_OUTCOME_COUNT]:
                                          portico_mirror_requests_total */

    int nroutes, nupstreams, nfaults, nserved;
    char **names;                      /* routes, then upstreams, then faults, then the served
                                          files (owned copies) */
};

static struct shard *shard_of(struct metrics *m)
{
    return (struct shard *)m; /* pub is the first member */
}

static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)(uintptr_t)c, memory_order_relaxed);
}

/* Zeroed memory on its own cache lines: shards of different workers never share a line. */
static void *zalloc_lines(size_t size)
{
    size = ((size ? size : 1) + 63) & ~(size_t)63; /* aligned_alloc wants a multiple */
    void *p = aligned_alloc(64, size);
    if (p)
        memset(p, 0, size);
    return p;
}

static void shard_free(struct shard *s)
{
    if (!s)
        return;
    if (s->names)
        for (int i = 0; i < s->nroutes + s->nupstreams + s->nfaults + s->nserved; i++)
            free(s->names[i]);
    free(s->names);
    free(s->requests);
    free(s->hist);
    free(s->faults);
    free(s->handshakes);
    free(s->served_key);
    free(s->rate_limited);
    free(s->denied);
    free(s->mirrored);
    free(s);
}

static int copy_names(char **dst, const char *const *src, int n)
{
    for (int i = 0; i < n; i++)
        if (!(dst[i] = strdup(src[i] ? src[i] : "")))
            return -1;
    return 0;
}

static struct shard *shard_alloc(const struct metrics_labels *l)
{
    struct shard *s = zalloc_lines(sizeof(*s));
    if (!s)
        return NULL;
    if (l) {
        s->nroutes = MAX(l->nroutes, 0);
        s->nupstreams = MAX(l->nupstreams, 0);
        s->nfaults = MAX(l->nfaults, 0);
        s->nserved = MAX(l->nserved, 0);
    }
    int nnames = s->nroutes + s->nupstreams + s->nfaults + s->nserved;
    s->names = calloc((size_t)nnames + 1, sizeof(*s->names));
    s->requests = zalloc_lines((size_t)(s->nroutes + 1) * NSLOTS * sizeof(*s->requests));
    s->hist = zalloc_lines((size_t)s->nupstreams * TIMING_COUNT * sizeof(*s->hist));
    s->faults = zalloc_lines((size_t)s->nfaults * FAULT_ACTION_COUNT * sizeof(*s->faults));
    s->handshakes = zalloc_lines((size_t)s->nserved * sizeof(*s->handshakes));
    s->served_key = calloc((size_t)s->nserved + 1, sizeof(*s->served_key));
    s->rate_limited = zalloc_lines((size_t)s->nroutes * sizeof(*s->rate_limited));
    s->denied = zalloc_lines((size_t)s->nroutes * sizeof(*s->denied));
    s->mirrored = zalloc_lines((size_t)s->nroutes * MIRROR_OUTCOME_COUNT * sizeof(*s->mirrored));
    if (!s->names || !s->requests || !s->hist || !s->faults || !s->handshakes || !s->served_key ||
        !s->rate_limited || !s->denied || !s->mirrored ||
        (l && (copy_names(s->names, l->routes, s->nroutes) != 0 ||
               copy_names(s->names + s->nroutes, l->upstreams, s->nupstreams) != 0 ||
               copy_names(s->names + s->nroutes + s->nupstreams, l->faults, s->nfaults) != 0))) {
        shard_free(s);
        return NULL;
    }
    char **files = s->names + s->nroutes + s->nupstreams + s->nfaults;
    for (int i = 0; i < s->nserved; i++) {
        s->served_key[i] = (uint8_t)((unsigned)l->served[i].key < TLS_KEY_COUNT ? l->served[i].key
                                                                                : TLS_KEY_OTHER);
        if (!(files[i] = strdup(l->served[i].file ? l->served[i].file : ""))) {
            shard_free(s);
            return NULL;
        }
    }
    return s;
}

/* ---- process totals and the registry ---- */

/* A row of a labelled family, keyed by label names (borrowed, or owned by the retired
 * totals). */
struct req_row {
    const char *route;                 /* "" when not routed */
    int code;                          /* CODE_OTHER for an overflow slot */
    int failure;
    uint64_t n;
};

struct hist_row {
    const char *upstream;
    int phase;
    uint64_t buckets[NBUCKETS];
    uint64_t sum_us;
};

/* A row of portico_faults_injected_total, or (action RATE_LIMITED_ROW, DENIED_ROW) of
 * portico_requests_rate_limited_total or portico_requests_denied_total, whose fault is then the
 * route: all are a name and a count, summed, sorted and copied alike. */
#define RATE_LIMITED_ROW FAULT_ACTION_COUNT
#define DENIED_ROW (FAULT_ACTION_COUNT + 1)
#define MIRROR_ROW (FAULT_ACTION_COUNT + 2) /* + the outcome: portico_mirror_requests_total */
struct fault_row {
    const char *fault;
    int action;
    uint64_t n;
};

struct served_row {
    const char *file;
    int key;                           /* enum tls_key_type */
    uint64_t n;
};

struct totals {
    bool owns;                         /* row names are strdup'd (the retired totals) */
    bool oom;                          /* a row could not be added */
    uint64_t counters[METRIC_COUNT];
    uint64_t interim[NINTERIM][INTERIM_DIR_COUNT];
    uint64_t tunnel_ends[TUNNEL_END_COUNT];
    uint64_t pp_errors[PP_ERROR_COUNT];
    uint64_t cert_refusals[CERT_REFUSAL_COUNT];
    uint64_t dns_tcp[DNS_TCP_OUTCOME_COUNT];
    uint64_t h2_refused[H2_REFUSED_COUNT];
    uint64_t accept_errors[ACCEPT_ERROR_COUNT];
    uint64_t conn_refusals[CONN_REFUSAL_COUNT];
    uint64_t discards[2][DISCARD_END_COUNT];
    uint64_t discarded_bytes[2];
    int64_t conns[CONN_SIDE_COUNT][CONN_STATE_COUNT];
    struct req_row *req;
    size_t nreq, capreq;
    struct hist_row *hist;
    size_t nhist, caphist;
    struct fault_row *faults;
    size_t nfaults, capfaults;
    struct served_row *served;
    size_t nserved, capserved;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shard **shards;          /* the live workers' shards */
static size_t nshards, capshards;
static struct totals retired = {.owns = true}; /* what the shards of workers gone counted */
static _Atomic unsigned config_generation;
static _Atomic uint64_t reloads[RELOAD_RESULT_COUNT];

/* arr with room for element n (moved when it grew), or NULL when out of memory (arr kept). */
static void *reserve(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *grown = realloc(arr, ncap * elem);
    if (grown)
        *cap = ncap;
    return grown;
}

static const char *row_name(struct totals *t, const char *name)
{
    if (!t->owns)
        return name;
    char *copy = strdup(name);
    if (!copy)
        t->oom = true;
    return copy;
}

static void add_req(struct totals *t, const char *route, int code, int failure, uint64_t n)
{
    struct req_row *rows = reserve(t->req, &t->capreq, t->nreq, sizeof(*rows));
    if (!rows) {
        t->oom = true;
        return;
    }
    t->req = rows; /* at once: a grown array freed the old one, whatever comes next */
    const char *name = row_name(t, route);
    if (name)
        rows[t->nreq++] = (struct req_row){name, code, failure, n};
}

static struct hist_row *add_hist(struct totals *t, const char *upstream, int phase)
{
    struct hist_row *rows = reserve(t->hist, &t->caphist, t->nhist, sizeof(*rows));
    if (!rows) {
        t->oom = true;
        return NULL;
    }
    t->hist = rows; /* at once: a grown array freed the old one */
    const char *name = row_name(t, upstream);
    if (!name)
        return NULL;
    struct hist_row *h = &rows[t->nhist];
    memset(h, 0, sizeof(*h));
    h->upstream = name;
    h->phase = phase;
    t->nhist++;
    return h;
}

static void add_fault(struct totals *t, const char *fault, int action, uint64_t n)
{
    struct fault_row *rows = reserve(t->faults, &t->capfaults, t->nfaults, sizeof(*rows));
    if (!rows) {
        t->oom = true;
        return;
    }
    t->faults = rows; /* at once: a grown array freed the old one */
    const char *name = row_name(t, fault);
    if (name)
        rows[t->nfaults++] = (struct fault_row){name, action, n};
}

static void add_served(struct totals *t, const char *file, int key, uint64_t n)
{
    struct served_row *rows = reserve(t->served, &t->capserved, t->nserved, sizeof(*rows));
    if (!rows) {
        t->oom = true;
        return;
    }
    t->served = rows; /* at once: a grown array freed the old one */
    const char *name = row_name(t, file);
    if (name)
        rows[t->nserved++] = (struct served_row){name, key, n};
}

static const char *route_label(const struct shard *s, int route)
{
    return route == 0 ? "" : s->names[route - 1];
}

/* Adds everything a shard counted to t. `live`: the worker still runs, so the gauges count. */
static void totals_add_shard(struct totals *t, struct shard *s, bool live)
{
    for (int i = 0; i < METRIC_COUNT; i++)
        t->counters[i] += get(&s->pub.counters[i]);
    for (int c = 0; c < NINTERIM; c++)
        for (int d = 0; d < INTERIM_DIR_COUNT; d++)
            t->interim[c][d] += get(&s->interim[c][d]);
    for (int e = 0; e < TUNNEL_END_COUNT; e++)
        t->tunnel_ends[e] += get(&s->tunnel_ends[e]);
    for (int e = 0; e < PP_ERROR_COUNT; e++)
        t->pp_errors[e] += get(&s->pp_errors[e]);
    for (int r = 0; r < CERT_REFUSAL_COUNT; r++)
        t->cert_refusals[r] += get(&s->cert_refusals[r]);
    for (int o = 0; o < DNS_TCP_OUTCOME_COUNT; o++)
        t->dns_tcp[o] += get(&s->dns_tcp[o]);
    for (int r = 0; r < H2_REFUSED_COUNT; r++)
        t->h2_refused[r] += get(&s->h2_refused[r]);
    for (int e = 0; e < ACCEPT_ERROR_COUNT; e++)
        t->accept_errors[e] += get(&s->accept_errors[e]);
    for (int r = 0; r < CONN_REFUSAL_COUNT; r++)
        t->conn_refusals[r] += get(&s->conn_refusals[r]);
    for (int p = 0; p < 2; p++) {
        for (int e = 0; e < DISCARD_END_COUNT; e++)
            t->discards[p][e] += get(&s->discards[p][e]);
        t->discarded_bytes[p] += get(&s->discarded_bytes[p]);
    }
    if (live) {
        for (int side = 0; side < CONN_SIDE_COUNT; side++)
            for (int st = 0; st < CONN_STATE_COUNT; st++)
                t->conns[side][st] +=
                    atomic_load_explicit(&s->conns[side][st], memory_order_relaxed);
    }
    unsigned npairs = atomic_load_explicit(&s->npairs, memory_order_acquire);
    for (int route = 0; route <= s->nroutes; route++) {
        const _Atomic uint64_t *row = s->requests + (size_t)route * NSLOTS;
        for (unsigned slot = 0; slot < NSLOTS; slot++) {
            uint64_t n = get(&row[slot]);
            if (!n)
                continue;
            if (slot < PAIR_CAP && slot >= npairs)
                continue; /* not published yet: counted at the next scrape */
            int code = slot < PAIR_CAP ? s->pair_code[slot] : CODE_OTHER;
            int failure = slot < PAIR_CAP ? s->pair_failure[slot] : (int)(slot - PAIR_CAP);
            add_req(t, route_label(s, route), code, failure, n);
        }
    }
    for (int u = 0; u < s->nupstreams; u++) {
        for (int p = 0; p < TIMING_COUNT; p++) {
            struct hist *src = &s->hist[u * TIMING_COUNT + p];
            uint64_t count = 0;
            for (int b = 0; b < NBUCKETS; b++)
                count += get(&src->buckets[b]);
            if (!count)
                continue;
            struct hist_row *h = add_hist(t, s->names[s->nroutes + u], p);
            if (!h)
                continue;
            for (int b = 0; b < NBUCKETS; b++)
                h->buckets[b] = get(&src->buckets[b]);
            h->sum_us = get(&src->sum_us);
        }
    }
    for (int r = 0; r < s->nroutes; r++) {
        uint64_t n = get(&s->rate_limited[r]);
        if (n)
            add_fault(t, s->names[r], RATE_LIMITED_ROW, n);
        if ((n = get(&s->denied[r])) != 0)
            add_fault(t, s->names[r], DENIED_ROW, n);
        for (int o = 0; o < MIRROR_OUTCOME_COUNT; o++)
            if ((n = get(&s->mirrored[r * MIRROR_OUTCOME_COUNT + o])) != 0)
                add_fault(t, s->names[r], MIRROR_ROW + o, n);
    }
    for (int f = 0; f < s->nfaults; f++)
        for (int a = 0; a < FAULT_ACTION_COUNT; a++) {
            uint64_t n = get(&s->faults[f * FAULT_ACTION_COUNT + a]);
            if (n)
                add_fault(t, s->names[s->nroutes + s->nupstreams + f], a, n);
        }
    for (int i = 0; i < s->nserved; i++) {
        uint64_t n = get(&s->handshakes[i]);
        if (n)
            add_served(t, s->names[s->nroutes + s->nupstreams + s->nfaults + i], s->served_key[i],
                       n);
    }
}

static int cmp_req(const void *a, const void *b)
{
    const struct req_row *x = a, *y = b;
    int c = strcmp(x->route, y->route);
    if (c)
        return c;
    int xc = x->code == CODE_OTHER ? CODE_MAX + 1 : x->code;
    int yc = y->code == CODE_OTHER ? CODE_MAX + 1 : y->code;
    if (xc != yc)
        return xc < yc ? -1 : 1;
    return (x->failure > y->failure) - (x->failure < y->failure);
}

static int cmp_hist(const void *a, const void *b)
{
    const struct hist_row *x = a, *y = b;
    int c = strcmp(x->upstream, y->upstream);
    return c ? c : (x->phase > y->phase) - (x->phase < y->phase);
}

static int cmp_fault(const void *a, const void *b)
{
    const struct fault_row *x = a, *y = b;
    int c = strcmp(x->fault, y->fault);
    return c ? c : (x->action > y->action) - (x->action < y->action);
}

static int cmp_served(const void *a, const void *b)
{
    const struct served_row *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : (x->key > y->key) - (x->key < y->key);
}

static void sort(void *rows, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1) /* qsort's array may not be NULL, even empty */
        qsort(rows, n, size, cmp);
}

static void drop_name(struct totals *t, const char *name)
{
    if (t->owns)
        free((char *)(uintptr_t)name);
}

/* Sorts the rows and sums those with equal labels (shards of several generations, or a live
 * shard and the retired totals, count the same series). */
static void totals_merge(struct totals *t)
{
    size_t n = 0;
    sort(t->req, t->nreq, sizeof(*t->req), cmp_req);
    for (size_t i = 0; i < t->nreq; i++) {
        if (n && cmp_req(&t->req[n - 1], &t->req[i]) == 0) {
            t->req[n - 1].n += t->req[i].n;
            drop_name(t, t->req[i].route);
        } else {
            t->req[n++] = t->req[i];
        }
    }
    t->nreq = n;
    n = 0;
    sort(t->hist, t->nhist, sizeof(*t->hist), cmp_hist);
    for (size_t i = 0; i < t->nhist; i++) {
        if (n && cmp_hist(&t->hist[n - 1], &t->hist[i]) == 0) {
            for (int b = 0; b < NBUCKETS; b++)
                t->hist[n - 1].buckets[b] += t->hist[i].buckets[b];
            t->hist[n - 1].sum_us += t->hist[i].sum_us;
            drop_name(t, t->hist[i].upstream);
        } else {
            t->hist[n++] = t->hist[i];
        }
    }
    t->nhist = n;
    n = 0;
    sort(t->faults, t->nfaults, sizeof(*t->faults), cmp_fault);
    for (size_t i = 0; i < t->nfaults; i++) {
        if (n && cmp_fault(&t->faults[n - 1], &t->faults[i]) == 0) {
            t->faults[n - 1].n += t->faults[i].n;
            drop_name(t, t->faults[i].fault);
        } else {
            t->faults[n++] = t->faults[i];
        }
    }
    t->nfaults = n;
    n = 0;
    sort(t->served, t->nserved, sizeof(*t->served), cmp_served);
    for (size_t i = 0; i < t->nserved; i++) {
        if (n && cmp_served(&t->served[n - 1], &t->served[i]) == 0) {
            t->served[n - 1].n += t->served[i].n;
            drop_name(t, t->served[i].file);
        } else {
            t->served[n++] = t->served[i];
        }
    }
    t->nserved = n;
}

static void totals_free(struct totals *t)
{
    for (size_t i = 0; i < t->nreq; i++)
        drop_name(t, t->req[i].route);
    for (size_t i = 0; i < t->nhist; i++)
        drop_name(t, t->hist[i].upstream);
    for (size_t i = 0; i < t->nfaults; i++)
        drop_name(t, t->faults[i].fault);
    for (size_t i = 0; i < t->nserved; i++)
        drop_name(t, t->served[i].file);
    free(t->req);
    free(t->hist);
    free(t->faults);
    free(t->served);
    bool owns = t->owns;
    memset(t, 0, sizeof(*t));
    t->owns = owns;
}

/* A copy of t whose row names are borrowed from it (valid while the registry is locked). */
static int totals_borrow(struct totals *dst, const struct totals *src)
{
    *dst = *src;
    dst->owns = false;
    dst->oom = false; /* rows the retired totals lost are lost: no reason to fail every scrape */
    dst->req = NULL, dst->hist = NULL, dst->faults = NULL, dst->served = NULL;
    dst->nreq = dst->nhist = dst->nfaults = dst->nserved = 0;
    dst->capreq = dst->caphist = dst->capfaults = dst->capserved = 0;
    for (size_t i = 0; i < src->nreq; i++)
        add_req(dst, src->req[i].route, src->req[i].code, src->req[i].failure, src->req[i].n);
    for (size_t i = 0; i < src->nhist; i++) {
        struct hist_row *h = add_hist(dst, src->hist[i].upstream, src->hist[i].phase);
        if (h)
            *h = src->hist[i];
    }
    for (size_t i = 0; i < src->nfaults; i++)
        add_fault(dst, src->faults[i].fault, src->faults[i].action, src->faults[i].n);
    for (size_t i = 0; i < src->nserved; i++)
        add_served(dst, src->served[i].file, src->served[i].key, src->served[i].n);
    return dst->oom ? -1 : 0;
}

struct metrics *metrics_shard_create(const struct metrics_labels *labels)
{
    struct shard *s = shard_alloc(labels);
    if (!s)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    struct shard **grown = reserve(shards, &capshards, nshards, sizeof(*shards));
    if (grown) {
        shards = grown;
        shards[nshards++] = s;
    }
    pthread_mutex_unlock(&registry_lock);
    if (!grown) {
        shard_free(s);
        return NULL;
    }
    return &s->pub;
}

void metrics_shard_retire(struct metrics *m)
{
    if (!m)
        return;
    struct shard *s = shard_of(m);
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < nshards; i++) {
        if (shards[i] == s) {
            /* out of memory here loses labelled rows of this shard, never other counts */
            totals_add_shard(&retired, s, false);
            totals_merge(&retired);
            shards[i] = shards[--nshards];
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    shard_free(s);
}

void metrics_free_all(void)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < nshards; i++)
        shard_free(shards[i]);
    free(shards);
    shards = NULL;
    nshards = capshards = 0;
    totals_free(&retired);
    atomic_store(&config_generation, 0);
    for (int i = 0; i < RELOAD_RESULT_COUNT; i++)
        atomic_store(&reloads[i], 0);
    pthread_mutex_unlock(&registry_lock);
}

/* ---- writers ---- */

/* The slot of (code, failure) in this shard: assigned on first sight, published for readers
 * with a release store of npairs; past PAIR_CAP pairs, the failure's "other code" slot. */
static unsigned pair_slot(struct shard *s, int code, enum failure_type failure)
{
    if (code < CODE_MIN || code > CODE_MAX)
        return PAIR_CAP + failure;
    uint8_t *e = &s->pair_of[code - CODE_MIN][failure];
    if (*e)
        return *e - 1u;
    unsigned n = atomic_load_explicit(&s->npairs, memory_order_relaxed);
    if (n == PAIR_CAP)
        return PAIR_CAP + failure;
    s->pair_code[n] = (uint16_t)code;
    s->pair_failure[n] = (uint8_t)failure;
    atomic_store_explicit(&s->npairs, n + 1, memory_order_release);
    *e = (uint8_t)(n + 1);
    return n;
}

static unsigned bucket_of(uint64_t us)
{
    unsigned b = 0;
    while (b < METRICS_BUCKETS && us > metrics_bucket_us[b])
        b++;
    return b;
}

void metrics_request_done(struct metrics *m, const struct metrics_sample *x)
{
    struct shard *s = shard_of(m);
    enum failure_type failure = (unsigned)x->failure < FAILURE_COUNT ? x->failure : FAIL_NONE;
    int route = x->route >= 0 && x->route < s->nroutes ? x->route + 1 : 0;
    bump(&s->requests[(size_t)route * NSLOTS + pair_slot(s, x->status, failure)], 1);
    if (!x->timings || x->upstream < 0 || x->upstream >= s->nupstreams)
        return;
    struct hist *h = &s->hist[x->upstream * TIMING_COUNT];
    /* the phases present only: a request walks 4 or 5 of the TIMING_COUNT */
    for (unsigned left = x->timings->present & ((1u << TIMING_COUNT) - 1); left;
         left &= left - 1) {
        int p = __builtin_ctz(left);
        uint64_t us = x->timings->us[p];
        bump(&h[p].buckets[bucket_of(us)], 1);
        bump(&h[p].sum_us, us);
    }
}

void metrics_tunnel_end(struct metrics *m, enum tunnel_end end)
{
    if ((unsigned)end < TUNNEL_END_COUNT)
        bump(&shard_of(m)->tunnel_ends[end], 1);
}

void metrics_proxy_protocol_error(struct metrics *m, int reason)
{
    if ((unsigned)reason < PP_ERROR_COUNT)
        bump(&shard_of(m)->pp_errors[reason], 1);
}

void metrics_cert_refusal(struct metrics *m, enum cert_refusal reason)
{
    if ((unsigned)reason < CERT_REFUSAL_COUNT)
        bump(&shard_of(m)->cert_refusals[reason], 1);
}

enum accept_error accept_error_of(int err)
{
    switch (err) {
    case EMFILE:
    case ENFILE:
        return ACCEPT_ERR_DESCRIPTORS;
    case ENOBUFS:
    case ENOMEM:
        return ACCEPT_ERR_MEMORY;
    default:
        return ACCEPT_ERR_OTHER;
    }
}

void metrics_accept_error(struct metrics *m, enum accept_error reason)
{
    if ((unsigned)reason < ACCEPT_ERROR_COUNT)
        bump(&shard_of(m)->accept_errors[reason], 1);
}

void metrics_dns_tcp(struct metrics *m, enum dns_tcp_outcome outcome)
{
    if ((unsigned)outcome < DNS_TCP_OUTCOME_COUNT)
        bump(&shard_of(m)->dns_tcp[outcome], 1);
}

void metrics_h2_refused(struct metrics *m, enum h2_refused reason)
{
    if ((unsigned)reason < H2_REFUSED_COUNT)
        bump(&shard_of(m)->h2_refused[reason], 1);
}

void metrics_discard_end(struct metrics *m, bool http2, enum discard_end end, uint64_t bytes)
{
    struct shard *s = shard_of(m);
    if ((unsigned)end >= DISCARD_END_COUNT)
        return;
    bump(&s->discards[http2][end], 1);
    bump(&s->discarded_bytes[http2], bytes);
}

void metrics_interim(struct metrics *m, int code, enum interim_direction dir)
{
    if (code < 100 || code > 199 || (unsigned)dir >= INTERIM_DIR_COUNT)
        return;
    bump(&shard_of(m)->interim[code - 100][dir], 1);
}

void metrics_fault(struct metrics *m, int fault, enum fault_action action)
{
    struct shard *s = shard_of(m);
    if (fault < 0 || fault >= s->nfaults || (unsigned)action >= FAULT_ACTION_COUNT)
        return;
    bump(&s->faults[fault * FAULT_ACTION_COUNT + action], 1);
}

void metrics_tls_handshake(struct metrics *m, int served)
{
    struct shard *s = shard_of(m);
    if (served >= 0 && served < s->nserved)
        bump(&s->handshakes[served], 1);
}

void metrics_rate_limited(struct metrics *m, int route)
{
    struct shard *s = shard_of(m);
    if (route >= 0 && route < s->nroutes)
        bump(&s->rate_limited[route], 1);
}

void metrics_denied(struct metrics *m, int route)
{
    struct shard *s = shard_of(m);
    if (route >= 0 && route < s->nroutes)
        bump(&s->denied[route], 1);
}

void metrics_mirror(struct metrics *m, int route, enum mirror_outcome o)
{
    struct shard *s = shard_of(m);
    if (route >= 0 && route < s->nroutes && (unsigned)o < MIRROR_OUTCOME_COUNT)
        bump(&s->mirrored[route * MIRROR_OUTCOME_COUNT + o], 1);
}

void metrics_conn_refused(struct metrics *m, enum conn_refusal reason)
{
    if ((unsigned)reason < CONN_REFUSAL_COUNT)
        bump(&shard_of(m)->conn_refusals[reason], 1);
}

void metrics_conn_add(struct metrics *m, enum conn_side side, enum conn_state state, int delta)
{
    if ((unsigned)side >= CONN_SIDE_COUNT || (unsigned)state >= CONN_STATE_COUNT)
        return;
    _Atomic int64_t *g = &shard_of(m)->conns[side][state];
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

void metrics_config_generation(unsigned generation)
{
    atomic_store_explicit(&config_generation, generation, memory_order_relaxed);
}

void metrics_config_reload(enum reload_result result)
{
    if ((unsigned)result < RELOAD_RESULT_COUNT)
        atomic_fetch_add_explicit(&reloads[result], 1, memory_order_relaxed);
}

/* ---- snapshots ---- */

/*
 * A scrape in progress. Its rows are taken under the registry lock at once and their names
 * copied into one block it owns: a scrape written out over many turns of its worker's loop
 * reads nothing that a retiring worker (metrics_shard_retire) or a reload can free meanwhile,
 * and holds the lock for no longer than the copy. Every series is in the rows once, so a page
 * written in slices has each series exactly once.
 */
struct metrics_cursor {
    struct totals t;                   /* names point into `names` */
    char *names;                       /* owned: every distinct name of the rows and origins */
    struct metrics_origin *origins;    /* owned copy of the scrape's origin rows */
    size_t norigins;
    struct metrics_cert *certs;        /* owned copy of the scrape's certificate rows */
    size_t ncerts;
    uint64_t log_dropped_lines;
    uint64_t error_log_dropped_lines;
    uint64_t client_limit[4];          /* entries, connections, evictions, uncounted
                                          (metrics_scrape) */
    unsigned stage;                    /* the part of the page written next (stages[]) */
    size_t row;                        /* its next row */
};

/* Bytes of the names of n rows of `size` bytes whose name is at `off`, sorted by name (equal
 * names, which are adjacent, count once); with `into`, copies them there and points the rows at
 * the copies. */
static size_t names_own(void *rows, size_t n, size_t size, size_t off, char **into)
{
    size_t total = 0;
    const char *prev = NULL, *prev_copy = NULL;
    for (size_t i = 0; i < n; i++) {
        const char **name = (const char **)(void *)((char *)rows + i * size + off);
        const char *orig = *name;
        if (prev && strcmp(prev, orig) == 0) {
            if (into)
                *name = prev_copy;
            continue;
        }
        size_t len = strlen(orig) + 1;
        total += len;
        prev = orig;
        if (into) {
            memcpy(*into, orig, len);
            prev_copy = *name = *into;
            *into += len;
        }
    }
    return total;
}

/* Copies the rows' names (borrowed from the shards and the retired totals) and the origins'
 * into c->names. 0, or -1 when out of memory. */
static int cursor_own(struct metrics_cursor *c, const struct metrics_scrape *sc)
{
    struct totals *t = &c->t;
    size_t n = names_own(t->req, t->nreq, sizeof(*t->req), offsetof(struct req_row, route), NULL) +
               names_own(t->hist, t->nhist, sizeof(*t->hist),
                         offsetof(struct hist_row, upstream), NULL) +
               names_own(t->faults, t->nfaults, sizeof(*t->faults),
                         offsetof(struct fault_row, fault), NULL) +
               names_own(t->served, t->nserved, sizeof(*t->served),
                         offsetof(struct served_row, file), NULL);
    size_t norigins = sc ? sc->norigins : 0;
    for (size_t i = 0; i < norigins; i++)
        n += strlen(sc->origins[i].upstream ? sc->origins[i].upstream : "") +
             strlen(sc->origins[i].origin ? sc->origins[i].origin : "") + 2;
    size_t ncerts = sc ? sc->ncerts : 0;
    for (size_t i = 0; i < ncerts; i++)
        n += strlen(sc->certs[i].file ? sc->certs[i].file : "") + 1;
    c->names = malloc(n ? n : 1);
    c->origins = calloc(norigins ? norigins : 1, sizeof(*c->origins));
    c->certs = calloc(ncerts ? ncerts : 1, sizeof(*c->certs));
    if (!c->names || !c->origins || !c->certs)
        return -1;
    char *p = c->names;
    names_own(t->req, t->nreq, sizeof(*t->req), offsetof(struct req_row, route), &p);
    names_own(t->hist, t->nhist, sizeof(*t->hist), offsetof(struct hist_row, upstream), &p);
    names_own(t->faults, t->nfaults, sizeof(*t->faults), offsetof(struct fault_row, fault), &p);
    names_own(t->served, t->nserved, sizeof(*t->served), offsetof(struct served_row, file), &p);
    for (size_t i = 0; i < norigins; i++) {
        const char *texts[2] = {sc->origins[i].upstream ? sc->origins[i].upstream : "",
                                sc->origins[i].origin ? sc->origins[i].origin : ""};
        const char *copies[2];
        for (int k = 0; k < 2; k++) {
            size_t len = strlen(texts[k]) + 1;
            memcpy(p, texts[k], len);
            copies[k] = p;
            p += len;
        }
        c->origins[i] = sc->origins[i];
        c->origins[i].upstream = copies[0];
        c->origins[i].origin = copies[1];
    }
    c->norigins = norigins;
    for (size_t i = 0; i < ncerts; i++) {
        const char *file = sc->certs[i].file ? sc->certs[i].file : "";
        size_t len = strlen(file) + 1;
        memcpy(p, file, len);
        c->certs[i] = (struct metrics_cert){p, sc->certs[i].not_after};
        p += len;
    }
    c->ncerts = ncerts;
    c->log_dropped_lines = sc ? sc->log_dropped_lines : 0;
    c->error_log_dropped_lines = sc ? sc->error_log_dropped_lines : 0;
    if (sc) {
        c->client_limit[0] = sc->client_limit_entries;
        c->client_limit[1] = sc->client_limit_connections;
        c->client_limit[2] = sc->client_limit_evictions;
        c->client_limit[3] = sc->client_limit_no_place;
    }
    return 0;
}

struct metrics_cursor *metrics_cursor_new(const struct metrics_scrape *sc)
{
    struct metrics_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_lock(&registry_lock);
    int rc = totals_borrow(&c->t, &retired);
    for (size_t i = 0; i < nshards; i++)
        totals_add_shard(&c->t, shards[i], true);
    totals_merge(&c->t);
    if (c->t.oom || cursor_own(c, sc) != 0)
        rc = -1;
    pthread_mutex_unlock(&registry_lock); /* the rows borrowed names from the shards until here */
    if (rc != 0) {
        metrics_cursor_free(c);
        return NULL;
    }
    return c;
}

void metrics_cursor_free(struct metrics_cursor *c)
{
    if (!c)
        return;
    totals_free(&c->t); /* not `owns`: the arrays only */
    free(c->names);
    free(c->origins);
    free(c->certs);
    free(c);
}

/* ---- exposition ---- */

#define RENDER_TEXT 16384 /* text gathered before it goes into the evbuffer in one append */

/* The text is gathered in a buffer of its own and goes into the evbuffer a block at a time (an
 * append per piece cost more than the formatting). Appends can fail: the first failure is
 * remembered, so that a scrape answers an error instead of a silently truncated page. */
struct render {
    struct evbuffer *buf;
    bool failed;
    size_t len;                        /* bytes in text */
    size_t sent;                       /* bytes moved into buf by this render */
    char text[RENDER_TEXT];
};

static void flush(struct render *r)
{
    if (r->len && evbuffer_add(r->buf, r->text, r->len) != 0)
        r->failed = true;
    r->sent += r->len;
    r->len = 0;
}

static void put_raw(struct render *r, const void *p, size_t n)
{
    if (n > RENDER_TEXT - r->len) {
        flush(r);
        if (n > RENDER_TEXT) {
            if (evbuffer_add(r->buf, p, n) != 0)
                r->failed = true;
            r->sent += n;
            return;
        }
    }
    memcpy(r->text + r->len, p, n);
    r->len += n;
}

#define PUT_LIT(r, s) put_raw((r), (s), sizeof(s) - 1)

static void put(struct render *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct render *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) {
        r->failed = true;
        return;
    }
    if ((size_t)n < sizeof(line)) {
        put_raw(r, line, (size_t)n);
        return;
    }
    flush(r); /* longer than any line of ours: formatted straight into the evbuffer */
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(r->buf, fmt, ap) < 0)
        r->failed = true;
    va_end(ap);
    r->sent += (size_t)n;
}

static void put_str(struct render *r, const char *s)
{
    put_raw(r, s, strlen(s));
}

static void put_u64(struct render *r, uint64_t v)
{
    char d[20];
    size_t i = sizeof(d);
    do
        d[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    put_raw(r, d + i, sizeof(d) - i);
}

/* Bytes written by this render so far. */
static size_t written(const struct render *r)
{
    return r->sent + r->len;
}

static void family(struct render *out, const char *name, const char *type, const char *help)
{
    put(out, "# HELP %s %s.\n# TYPE %s %s\n", name, help, name, type);
}

/* value escaped per the exposition format (backslash, double quote, line feed). */
static void escaped(struct render *out, const char *value)
{
    for (const char *p = value;;) {
        size_t run = strcspn(p, "\\\"\n");
        put_raw(out, p, run);
        p += run;
        if (!*p)
            break;
        put_raw(out, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n", 2);
        p++;
    }
}

/* A label: {name="value" for the first, ,name="value" for the next. */
static void label(struct render *out, const char *name, const char *value, bool first)
{
    put_raw(out, first ? "{" : ",", 1);
    put_str(out, name);
    PUT_LIT(out, "=\"");
    escaped(out, value);
    PUT_LIT(out, "\"");
}

static void value_u64(struct render *out, uint64_t v)
{
    PUT_LIT(out, "} ");
    put_u64(out, v);
    PUT_LIT(out, "\n");
}

static void simple(struct render *out, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    family(out, name, type, help);
    put(out, "%s %llu\n", name, (unsigned long long)v);
}

/* A stage writes one part of the page: rows from c->row on, until its rows are done (true) or
 * budget bytes were written by this render (false; c->row says where it stopped). At least one
 * row is written per call. */
typedef bool stage_fn(struct metrics_cursor *c, struct render *out, size_t budget);

/* Whether a stage with rows left stops here: the slice is full. */
static bool slice_full(const struct metrics_cursor *c, size_t nrows, const struct render *out,
                       size_t budget)
{
    return c->row < nrows && written(out) >= budget;
}

static bool stage_counters(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    for (int id = 0; id < METRIC_COUNT; id++)
        simple(out, metric_rows[id].name, "counter", metric_rows[id].help, c->t.counters[id]);
    return true;
}

static bool stage_requests(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_requests_total", "counter",
               "Requests answered (or given up by the client, 499), by route, status code sent "
               "and failure type");
    while (c->row < t->nreq) {
        const struct req_row *r = &t->req[c->row++];
        char code[8];
        snprintf(code, sizeof(code), "%d", r->code);
        PUT_LIT(out, "portico_requests_total");
        label(out, "route", r->route, true);
        label(out, "code", r->code == CODE_OTHER ? "other" : code, false);
        label(out, "failure", r->failure ? failure_name((enum failure_type)r->failure) : "",
              false);
        value_u64(out, r->n);
        if (slice_full(c, t->nreq, out, budget))
            return false;
    }
    return true;
}

/* today's two families, now sums of portico_requests_total */
static bool stage_request_sums(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    const struct totals *t = &c->t;
    family(out, "portico_responses_total", "counter", "Responses sent to clients by status code");
    uint64_t by_code[NCODES] = {0}, other = 0;
    for (size_t i = 0; i < t->nreq; i++) {
        if (t->req[i].code != CODE_OTHER)
            by_code[t->req[i].code - CODE_MIN] += t->req[i].n;
        else
            other += t->req[i].n;
    }
    for (int code = 0; code < NCODES; code++)
        if (by_code[code])
            put(out, "portico_responses_total{code=\"%d\",class=\"%dxx\"} %llu\n",
                code + CODE_MIN, (code + CODE_MIN) / 100, (unsigned long long)by_code[code]);
    /* the overflow rows too: the family sums to portico_requests_total, as documented */
    if (other)
        put(out, "portico_responses_total{code=\"other\",class=\"other\"} %llu\n",
            (unsigned long long)other);
    family(out, "portico_upstream_failures_total", "counter",
           "Upstream failures by failure type");
    uint64_t by_failure[FAILURE_COUNT] = {0};
    for (size_t i = 0; i < t->nreq; i++)
        by_failure[t->req[i].failure] += t->req[i].n;
    for (int f = FAIL_NONE + 1; f < FAILURE_COUNT; f++)
        put(out, "portico_upstream_failures_total{failure=\"%s\"} %llu\n",
            failure_name((enum failure_type)f), (unsigned long long)by_failure[f]);
    return true;
}

/* An upstream name escaped for a label: at most twice its length, and the rest of the labels
 * of a histogram line. */
#define HIST_LABELS (2 * 256 + 64)

/* The labels common to a histogram row's 18 lines, {upstream="...",phase="...", escaped once
 * into buf[HIST_LABELS]: their length, or 0 when a name is too long for buf (then each line
 * escapes them itself). */
static size_t hist_labels(char *buf, const struct hist_row *h)
{
    const char *phase = timing_name((enum timing_phase)h->phase);
    if (2 * (strlen(h->upstream) + strlen(phase)) + 32 > HIST_LABELS)
        return 0;
    size_t n = 0;
    const char *const parts[] = {"{upstream=\"", h->upstream, "\",phase=\"", phase, "\""};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (const char *p = parts[i]; *p; p++) {
            bool value = i % 2 == 1; /* the names are escaped, the text around them is not */
            if (value && (*p == '\\' || *p == '"' || *p == '\n')) {
                buf[n++] = '\\';
                buf[n++] = *p == '\n' ? 'n' : *p;
            } else {
                buf[n++] = *p;
            }
        }
    return n;
}

static void put_hist_labels(struct render *out, const struct hist_row *h, const char *text,
                            size_t len)
{
    if (len) {
        put_raw(out, text, len);
        return;
    }
    label(out, "upstream", h->upstream, true);
    label(out, "phase", timing_name((enum timing_phase)h->phase), false);
}

/* One histogram row: its 16 buckets, _sum and _count. */
static void histogram(struct render *out, const struct hist_row *h)
{
    char labels[HIST_LABELS];
    size_t len = hist_labels(labels, h);
    uint64_t cumulative = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        cumulative += h->buckets[b];
        PUT_LIT(out, "portico_phase_duration_seconds_bucket");
        put_hist_labels(out, h, labels, len);
        PUT_LIT(out, ",le=\"");
        put_str(out, bucket_le[b]);
        PUT_LIT(out, "\"");
        value_u64(out, cumulative);
    }
    PUT_LIT(out, "portico_phase_duration_seconds_sum");
    put_hist_labels(out, h, labels, len);
    put(out, "} %llu.%06llu\n", (unsigned long long)(h->sum_us / 1000000),
        (unsigned long long)(h->sum_us % 1000000));
    PUT_LIT(out, "portico_phase_duration_seconds_count");
    put_hist_labels(out, h, labels, len);
    value_u64(out, cumulative);
}

static bool stage_histograms(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_phase_duration_seconds", "histogram",
               "Duration of each phase of the exchanges, by upstream (total: the whole "
               "exchange)");
    while (c->row < t->nhist) {
        histogram(out, &t->hist[c->row++]);
        if (slice_full(c, t->nhist, out, budget))
            return false;
    }
    return true;
}

static bool stage_origins(struct metrics_cursor *c, struct render *out, size_t budget)
{
    if (c->row == 0)
        family(out, "portico_upstream_origin_up", "gauge",
               "1 when the origin takes requests (not down by passive or active health), else 0");
    while (c->row < c->norigins) {
        const struct metrics_origin *o = &c->origins[c->row++];
        PUT_LIT(out, "portico_upstream_origin_up");
        label(out, "upstream", o->upstream, true);
        label(out, "origin", o->origin, false);
        value_u64(out, o->up ? 1 : 0);
        if (slice_full(c, c->norigins, out, budget))
            return false;
    }
    return true;
}

/* The in-flight gauge per origin and the queue's families per upstream (max_conns): a row or
 * two per origin, written whole. */
static bool stage_queues(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    family(out, "portico_upstream_origin_in_flight", "gauge",
           "Requests in flight on the origin, all workers together (max_conns bounds it)");
    for (size_t i = 0; i < c->norigins; i++) {
        PUT_LIT(out, "portico_upstream_origin_in_flight");
        label(out, "upstream", c->origins[i].upstream, true);
        label(out, "origin", c->origins[i].origin, false);
        value_u64(out, c->origins[i].in_flight);
    }
    /* the admin API's state (balance.h's names): one row per state, 1 for the origin's */
    static const char *const admin_states[] = {
#define X(id, name) [id] = name,
        ORIGIN_ADMIN_LIST(X)
#undef X
    };
    family(out, "portico_upstream_origin_admin_state", "gauge",
           "1 for the state the admin API set on the origin (ready, drain, maint), else 0");
    for (size_t i = 0; i < c->norigins; i++)
        for (int a = 0; a < (int)ARRAY_LEN(admin_states); a++) {
            PUT_LIT(out, "portico_upstream_origin_admin_state");
            label(out, "upstream", c->origins[i].upstream, true);
            label(out, "origin", c->origins[i].origin, false);
            label(out, "state", admin_states[a], false);
            value_u64(out, c->origins[i].admin == a);
        }
    family(out, "portico_upstream_origin_weight", "gauge",
           "The origin's weight now: the configured one, or the admin API's (0: out)");
    for (size_t i = 0; i < c->norigins; i++) {
        PUT_LIT(out, "portico_upstream_origin_weight");
        label(out, "upstream", c->origins[i].upstream, true);
        label(out, "origin", c->origins[i].origin, false);
        value_u64(out, c->origins[i].weight);
    }
    static const struct {
        const char *name, *type, *help;
    } families[] = {
        {"portico_upstream_queue_length", "gauge",
         "Requests waiting for a slot of the upstream's origins (all at max_conns)"},
        {"portico_upstream_queued_total", "counter",
         "Requests that waited in the upstream's queue for a slot (max_conns)"},
        {"portico_upstream_queue_timeouts_total", "counter",
         "Requests that waited queue_timeout in the upstream's queue without a slot (503)"},
    };
    for (size_t f = 0; f < ARRAY_LEN(families); f++) {
        family(out, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < c->norigins; i++) {
            const struct metrics_origin *o = &c->origins[i];
            if (!o->first)
                continue;
            put_str(out, families[f].name);
            label(out, "upstream", o->upstream, true);
            value_u64(out, f == 0 ? o->queue_length : f == 1 ? o->queued : o->queue_timeouts);
        }
    }
    /* sticky's outcomes, per upstream that has it (sticky.h's names, in its order) */
    static const char *const outcomes[] = {"hit", "new", "redispatched"};
    family(out, "portico_upstream_sticky_total", "counter",
           "Requests of a sticky upstream by what its cookie did: hit (its origin took it), new "
           "(no cookie, or an unknown one), redispatched (its origin could not)");
    for (size_t i = 0; i < c->norigins; i++) {
        const struct metrics_origin *o = &c->origins[i];
        for (size_t k = 0; o->first && o->sticky && k < ARRAY_LEN(outcomes); k++) {
            PUT_LIT(out, "portico_upstream_sticky_total");
            label(out, "upstream", o->upstream, true);
            label(out, "outcome", outcomes[k], false);
            value_u64(out, o->sticky_counts[k]);
        }
    }
    /* retry_budget and retry_timeout, per upstream that has either (balance.h's order) */
    static const char *const reasons[] = {"retry_budget", "retry_timeout"};
    family(out, "portico_upstream_retries_refused_total", "counter",
           "Retries not started by reason: retry_budget (its retries in flight at the limit), "
           "retry_timeout (the request ran that long)");
    for (size_t i = 0; i < c->norigins; i++) {
        const struct metrics_origin *o = &c->origins[i];
        for (size_t k = 0; o->first && o->bounded && k < ARRAY_LEN(reasons); k++) {
            PUT_LIT(out, "portico_upstream_retries_refused_total");
            label(out, "upstream", o->upstream, true);
            label(out, "reason", reasons[k], false);
            value_u64(out, o->retries_refused[k]);
        }
    }
    family(out, "portico_upstream_retries_in_flight", "gauge",
           "Requests of the upstream on a retry now, every worker's (retry_budget)");
    for (size_t i = 0; i < c->norigins; i++) {
        const struct metrics_origin *o = &c->origins[i];
        if (!o->first || !o->budget)
            continue;
        PUT_LIT(out, "portico_upstream_retries_in_flight");
        label(out, "upstream", o->upstream, true);
        value_u64(out, o->retries_in_flight);
    }
    return true;
}

static bool stage_certs(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget; /* a few rows: one per certificate file */
    family(out, "portico_tls_certificate_expiry_seconds", "gauge",
           "When a certificate Portico serves (tls_cert) or presents to origins (client_cert) "
           "expires: its notAfter, Unix time");
    for (size_t i = 0; i < c->ncerts; i++) {
        PUT_LIT(out, "portico_tls_certificate_expiry_seconds");
        label(out, "file", c->certs[i].file, true);
        put(out, "} %lld\n", (long long)c->certs[i].not_after);
    }
    return true;
}

static bool stage_gauges(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    const struct totals *t = &c->t;
    family(out, "portico_connections", "gauge", "Open connections by side and state");
    for (int side = 0; side < CONN_SIDE_COUNT; side++)
        for (int st = 0; st < CONN_STATE_COUNT; st++)
            put(out, "portico_connections{side=\"%s\",state=\"%s\"} %lld\n",
                conn_side_names[side], conn_state_names[st], (long long)t->conns[side][st]);
    int64_t clients = 0; /* today's family: every state of the client side */
    for (int st = 0; st < CONN_STATE_COUNT; st++)
        clients += t->conns[CONN_CLIENT][st];
    family(out, "portico_client_connections_active", "gauge", "Open client connections");
    put(out, "portico_client_connections_active %lld\n", (long long)clients);
    return true;
}

static bool stage_interim(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    const struct totals *t = &c->t;
    family(out, "portico_interim_responses_total", "counter",
           "Interim (1xx) responses by code and direction: relayed from the origin, synthesized "
           "by Portico, or dropped");
    uint64_t dir_sum[INTERIM_DIR_COUNT] = {0};
    for (int code = 0; code < NINTERIM; code++)
        for (int d = 0; d < INTERIM_DIR_COUNT; d++) {
            dir_sum[d] += t->interim[code][d];
            if (t->interim[code][d])
                put(out, "portico_interim_responses_total{code=\"%d\",direction=\"%s\"} %llu\n",
                    code + 100, interim_dir_names[d], (unsigned long long)t->interim[code][d]);
        }
    /* today's families, now sums of the one above */
    simple(out, "portico_interim_relayed_total", "counter", "1xx responses relayed from origins",
           dir_sum[INTERIM_RELAYED]);
    simple(out, "portico_interim_dropped_total", "counter",
           "1xx responses from origins not relayed (HTTP/1.0 client, duplicate hints)",
           dir_sum[INTERIM_DROPPED]);
    simple(out, "portico_continue_synthesized_total", "counter", "100 Continue sent by Portico",
           t->interim[0][INTERIM_SYNTHESIZED]);
    simple(out, "portico_processing_synthesized_total", "counter",
           "102 Processing heartbeats sent by Portico", t->interim[2][INTERIM_SYNTHESIZED]);
    simple(out, "portico_early_hints_synthesized_total", "counter",
           "103 Early Hints sent by Portico (configured or learned)",
           t->interim[3][INTERIM_SYNTHESIZED]);
    family(out, "portico_tunnels_closed_total", "counter",
           "Tunnels (after 101 Switching Protocols) ended, by why");
    for (int e = 0; e < TUNNEL_END_COUNT; e++)
        put(out, "portico_tunnels_closed_total{reason=\"%s\"} %llu\n", tunnel_end_labels[e],
            (unsigned long long)t->tunnel_ends[e]);
    family(out, "portico_proxy_protocol_errors_total", "counter",
           "Connections of proxy_protocol listeners closed unanswered for their PROXY header, by "
           "why");
    for (int e = 0; e < PP_ERROR_COUNT; e++)
        put(out, "portico_proxy_protocol_errors_total{reason=\"%s\"} %llu\n", pp_error_label(e),
            (unsigned long long)t->pp_errors[e]);
    family(out, "portico_client_cert_refusals_total", "counter",
           "Client TLS handshakes refused for their certificate (tls_verify_client = on), by "
           "why");
    for (int r = 0; r < CERT_REFUSAL_COUNT; r++)
        put(out, "portico_client_cert_refusals_total{reason=\"%s\"} %llu\n",
            cert_refusal_label(r), (unsigned long long)t->cert_refusals[r]);
    family(out, "portico_accept_errors_total", "counter",
           "Client connections a listener failed to accept, by errno class (the connection "
           "stays queued, accepts pause 100 ms)");
    for (int e = 0; e < ACCEPT_ERROR_COUNT; e++)
        put(out, "portico_accept_errors_total{reason=\"%s\"} %llu\n", accept_error_names[e],
            (unsigned long long)t->accept_errors[e]);
    family(out, "portico_client_connections_refused_total", "counter",
           "Client connections closed at once, unread and unanswered, by why "
           "(max_connections_per_client)");
    for (int r = 0; r < CONN_REFUSAL_COUNT; r++)
        put(out, "portico_client_connections_refused_total{reason=\"%s\"} %llu\n",
            conn_refusal_names[r], (unsigned long long)t->conn_refusals[r]);
    family(out, "portico_dns_tcp_lookups_total", "counter",
           "Origin names asked over TCP after a UDP answer that may have been truncated, by how "
           "it ended");
    for (int o = 0; o < DNS_TCP_OUTCOME_COUNT; o++)
        put(out, "portico_dns_tcp_lookups_total{result=\"%s\"} %llu\n",
            dns_tcp_outcome_names[o], (unsigned long long)t->dns_tcp[o]);
    family(out, "portico_http2_refused_streams_total", "counter",
           "HTTP/2 streams not processed (the client may retry them), by why: past "
           "http2_max_concurrent_streams (REFUSED_STREAM), or past a drain's GOAWAY");
    for (int r = 0; r < H2_REFUSED_COUNT; r++)
        put(out, "portico_http2_refused_streams_total{reason=\"%s\"} %llu\n",
            h2_refused_labels[r], (unsigned long long)t->h2_refused[r]);
    family(out, "portico_request_body_discards_total", "counter",
           "Request bodies answered before they all came whose rest Portico read and dropped, "
           "by protocol and how the rest ended");
    for (int p = 0; p < 2; p++)
        for (int e = 0; e < DISCARD_END_COUNT; e++)
            put(out, "portico_request_body_discards_total{protocol=\"%s\",result=\"%s\"} %llu\n",
                discard_protocols[p], discard_end_names[e],
                (unsigned long long)t->discards[p][e]);
    family(out, "portico_request_body_discarded_bytes_total", "counter",
           "Bytes of those rests read and dropped after the answer, by protocol");
    for (int p = 0; p < 2; p++)
        put(out, "portico_request_body_discarded_bytes_total{protocol=\"%s\"} %llu\n",
            discard_protocols[p], (unsigned long long)t->discarded_bytes[p]);
    return true;
}

static bool stage_faults(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_faults_injected_total", "counter",
               "Faults injected by fault rules, by rule and action");
    while (c->row < t->nfaults) {
        const struct fault_row *f = &t->faults[c->row++];
        if (f->action >= FAULT_ACTION_COUNT) /* a route's refusals */
            continue;
        PUT_LIT(out, "portico_faults_injected_total");
        label(out, "fault", f->fault, true);
        label(out, "action", fault_action_names[f->action], false);
        value_u64(out, f->n);
        if (slice_full(c, t->nfaults, out, budget))
            return false;
    }
    return true;
}

static bool stage_handshakes(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_tls_handshakes_total", "counter",
               "Full client TLS handshakes by the certificate sent (tls_cert file) and its key "
               "type; resumptions send none (portico_client_tls_resumed_total)");
    while (c->row < t->nserved) {
        const struct served_row *r = &t->served[c->row++];
        PUT_LIT(out, "portico_tls_handshakes_total");
        label(out, "file", r->file, true);
        label(out, "key", tls_key_name((enum tls_key_type)r->key), false);
        value_u64(out, r->n);
        if (slice_full(c, t->nserved, out, budget))
            return false;
    }
    return true;
}

static bool stage_rate_limited(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_requests_rate_limited_total", "counter",
               "Requests refused with 429 for their client's client_rate, by route");
    while (c->row < t->nfaults) {
        const struct fault_row *f = &t->faults[c->row++];
        if (f->action != RATE_LIMITED_ROW)
            continue;
        PUT_LIT(out, "portico_requests_rate_limited_total");
        label(out, "route", f->fault, true);
        value_u64(out, f->n);
        if (slice_full(c, t->nfaults, out, budget))
            return false;
    }
    return true;
}

static bool stage_denied(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_requests_denied_total", "counter",
               "Requests refused with 403 by their route's allow and deny rules, by route");
    while (c->row < t->nfaults) {
        const struct fault_row *f = &t->faults[c->row++];
        if (f->action != DENIED_ROW)
            continue;
        PUT_LIT(out, "portico_requests_denied_total");
        label(out, "route", f->fault, true);
        value_u64(out, f->n);
        if (slice_full(c, t->nfaults, out, budget))
            return false;
    }
    return true;
}

static bool stage_mirror(struct metrics_cursor *c, struct render *out, size_t budget)
{
    const struct totals *t = &c->t;
    if (c->row == 0)
        family(out, "portico_mirror_requests_total", "counter",
               "Mirror requests (mirror = UPSTREAM) by route and what became of them");
    while (c->row < t->nfaults) {
        const struct fault_row *f = &t->faults[c->row++];
        if (f->action < MIRROR_ROW || f->action >= MIRROR_ROW + MIRROR_OUTCOME_COUNT)
            continue;
        PUT_LIT(out, "portico_mirror_requests_total");
        label(out, "route", f->fault, true);
        label(out, "outcome", mirror_outcome_name((enum mirror_outcome)(f->action - MIRROR_ROW)),
              false);
        value_u64(out, f->n);
        if (slice_full(c, t->nfaults, out, budget))
            return false;
    }
    return true;
}

/* The per-client table of the serving configuration (climit.h): how full it may get, the
 * connections it counts (back to 0 when every client went: a count lost would show), what its
 * eviction gave away and what it let through uncounted (a table too small for the clients it
 * sees). */
static bool stage_client_limit(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    simple(out, "portico_client_limit_table_entries", "gauge",
           "Entries of the per-client table (client_limit_table; 0: no per-client limit)",
           c->client_limit[0]);
    simple(out, "portico_client_limit_connections", "gauge",
           "Client connections counted for max_connections_per_client now, all workers",
           c->client_limit[1]);
    simple(out, "portico_client_limit_evictions_total", "counter",
           "Per-client entries evicted to make room for new clients (a reload starts anew)",
           c->client_limit[2]);
    simple(out, "portico_client_limit_uncounted_total", "counter",
           "Connections and requests let through uncounted: no place in the per-client table",
           c->client_limit[3]);
    return true;
}

static bool stage_process(struct metrics_cursor *c, struct render *out, size_t budget)
{
    (void)budget;
    simple(out, "portico_access_log_dropped_lines_total", "counter",
           "Access-log lines lost because a write failed", c->log_dropped_lines);
    simple(out, "portico_error_log_dropped_lines_total", "counter",
           "Error-log lines lost because a write failed", c->error_log_dropped_lines);
    simple(out, "portico_config_generation", "gauge",
           "Configuration generation serving (1 at start, one more per successful reload)",
           atomic_load_explicit(&config_generation, memory_order_relaxed));
    family(out, "portico_config_reloads_total", "counter", "Reload attempts by result");
    for (int r = 0; r < RELOAD_RESULT_COUNT; r++)
        put(out, "portico_config_reloads_total{result=\"%s\"} %llu\n", reload_result_names[r],
            (unsigned long long)atomic_load_explicit(&reloads[r], memory_order_relaxed));
    family(out, "portico_build_info", "gauge", "Always 1; the version of the running binary");
    PUT_LIT(out, "portico_build_info");
    label(out, "version", PORTICO_VERSION, true);
    value_u64(out, 1);
    return true;
}

/* The page, part by part, in order. */
static stage_fn *const stages[] = {
    stage_counters, stage_requests, stage_request_sums, stage_histograms, stage_origins,
    stage_queues,
    stage_certs,    stage_gauges,   stage_interim,      stage_faults,     stage_rate_limited,
    stage_denied,   stage_mirror,   stage_client_limit, stage_handshakes, stage_process,
};
#define NSTAGES (sizeof(stages) / sizeof(stages[0]))

int metrics_cursor_next(struct metrics_cursor *c, struct evbuffer *out, size_t budget)
{
    struct render rend = {.buf = out}, *r = &rend;
    while (c->stage < NSTAGES && written(r) < budget) {
        if (!stages[c->stage](c, r, budget))
            break;
        c->stage++;
        c->row = 0;
    }
    flush(r);
    return r->failed ? -1 : c->stage < NSTAGES ? 1 : 0;
}

int metrics_render(struct evbuffer *buf, const struct metrics_scrape *sc)
{
    struct metrics_cursor *c = metrics_cursor_new(sc);
    if (!c)
        return -1;
    int rc;
    while ((rc = metrics_cursor_next(c, buf, SIZE_MAX)) > 0)
        continue;
    metrics_cursor_free(c);
    return rc;
}
