/*
 * fault_table.c — a generation's fault rules and their shared state. See fault_table.h.
 */
#include "portico/fault_table.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/util.h"

struct fault_table {
    pthread_mutex_t lock;              /* writers only */
    struct fault_rng rng;
    int nini;                          /* the INI's rules come first */
    int cap;                           /* nini + FAULT_TABLE_ADDED */
    _Atomic int n;                     /* published entries (release / acquire) */
    struct fault_entry *entries[];     /* owned; [n, cap) not yet */
};

static const char *const rc_texts[] = {
#define X(id, text) [id] = text,
    FAULT_TABLE_RC_LIST(X)
#undef X
};

const char *fault_table_rc_text(enum fault_table_rc rc)
{
    return (unsigned)rc < ARRAY_LEN(rc_texts) ? rc_texts[rc] : "unknown";
}

int fault_table_labels(const struct config *cfg, const char **names, int max)
{
    int n = 0;
    for (int i = 0; i < cfg->nfault_rules && n < max; i++)
        names[n++] = fault_text(&cfg->fault_rules[i].rule, cfg->fault_rules[i].rule.name);
    if (n < max)
        names[n++] = FAULT_LABEL_HEADER;
    if (n < max)
        names[n++] = FAULT_LABEL_ADMIN;
    return n;
}

int fault_table_header_label(const struct config *cfg)
{
    return cfg->nfault_rules;
}

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
        return seed;
    return now_us() ^ ((uint64_t)getpid() << 32); /* no entropy yet: still differs per run */
}

struct fault_table *fault_table_new(const struct config *cfg, uint64_t now_ms)
{
    int cap = cfg->nfault_rules + FAULT_TABLE_ADDED;
    struct fault_table *t = calloc(1, sizeof(*t) + (size_t)cap * sizeof(t->entries[0]));
    if (!t)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    t->cap = cap;
    t->nini = cfg->nfault_rules;
    for (int i = 0; i < t->nini; i++) {
        struct fault_entry *e = malloc(sizeof(*e));
        if (!e) {
            atomic_store(&t->n, i);
            fault_table_free(t);
            return NULL;
        }
        e->rule = cfg->fault_rules[i].rule;
        fault_state_init(&e->state, &e->rule, now_ms);
        e->label = i;
        e->added = false;
        t->entries[i] = e;
    }
    atomic_store(&t->n, t->nini);
    fault_rng_init(&t->rng, cfg->faults.seeded ? cfg->faults.seed : random_seed());
    return t;
}

void fault_table_free(struct fault_table *t)
{
    if (!t)
        return;
    int n = atomic_load(&t->n);
    for (int i = 0; i < n; i++)
        free(t->entries[i]);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int fault_table_count(const struct fault_table *t)
{
    return atomic_load_explicit(&t->n, memory_order_acquire);
}

struct fault_entry *fault_table_entry(const struct fault_table *t, int i)
{
    return t->entries[i];
}

struct fault_rng *fault_table_rng(struct fault_table *t)
{
    return &t->rng;
}

struct fault_entry *fault_table_find(const struct fault_table *t, const char *name)
{
    int n = fault_table_count(t);
    for (int i = 0; i < n; i++) {
        struct fault_entry *e = t->entries[i];
        if (!atomic_load_explicit(&e->state.deleted, memory_order_relaxed) &&
            strcmp(fault_text(&e->rule, e->rule.name), name) == 0)
            return e;
    }
    return NULL;
}

enum fault_table_rc fault_table_add(struct fault_table *t, const struct fault_rule *r,
                                    uint64_t now_ms)
{
    enum fault_table_rc rc = FAULT_TABLE_OK;
    pthread_mutex_lock(&t->lock);
    int n = atomic_load_explicit(&t->n, memory_order_relaxed);
    struct fault_entry *e = NULL;
    if (fault_table_find(t, fault_text(r, r->name)))
        rc = FAULT_TABLE_EXISTS;
    else if (n >= t->cap)
        rc = FAULT_TABLE_FULL;
    else if (!(e = malloc(sizeof(*e))))
        rc = FAULT_TABLE_NO_MEMORY;
    if (rc == FAULT_TABLE_OK) {
        e->rule = *r;
        fault_state_init(&e->state, &e->rule, now_ms);
        e->label = t->nini + 1; /* FAULT_LABEL_ADMIN */
        e->added = true;
        t->entries[n] = e;
        atomic_store_explicit(&t->n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

enum fault_table_rc fault_table_delete(struct fault_table *t, const char *name)
{
    pthread_mutex_lock(&t->lock);
    struct fault_entry *e = fault_table_find(t, name);
    if (e)
        atomic_store_explicit(&e->state.deleted, true, memory_order_relaxed);
    pthread_mutex_unlock(&t->lock);
    return e ? FAULT_TABLE_OK : FAULT_TABLE_NOT_FOUND;
}

enum fault_table_rc fault_table_change(struct fault_table *t, const char *name, uint64_t now_ms,
                                       const struct fault_change *c)
{
    pthread_mutex_lock(&t->lock);
    struct fault_entry *e = fault_table_find(t, name);
    if (e)
        fault_state_change(&e->state, now_ms, c);
    pthread_mutex_unlock(&t->lock);
    return e ? FAULT_TABLE_OK : FAULT_TABLE_NOT_FOUND;
}
