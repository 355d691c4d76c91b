/*
 * metrics.c — per-worker counter shards and their Prometheus exposition. See metrics.h.
 */
#include "portico/metrics.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdlib.h>

#include "portico/status.h"

static const struct {
    const char *name;
    const char *help;
} metric_rows[METRIC_COUNT] = {
#define X(id, nm, hp) [id] = {nm, hp},
    METRIC_LIST(X)
#undef X
};

static pthread_mutex_t shards_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics **shards; /* the live workers' shards */
static int nshards, capshards;
static struct metrics retired;  /* what the shards of workers gone since counted */

struct metrics *metrics_shard_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_lock(&shards_lock);
    if (nshards == capshards) {
        int cap = capshards ? capshards * 2 : 16;
        struct metrics **grown = realloc(shards, (size_t)cap * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&shards_lock);
            free(m);
            return NULL;
        }
        shards = grown;
        capshards = cap;
    }
    shards[nshards++] = m;
    pthread_mutex_unlock(&shards_lock);
    return m;
}

/* Adds every counter of from into to (the gauge is not a count: it stays). */
static void fold(struct metrics *to, struct metrics *from)
{
    for (int i = 0; i < METRIC_COUNT; i++)
        atomic_fetch_add_explicit(&to->counters[i], atomic_load(&from->counters[i]),
                                  memory_order_relaxed);
    for (int i = 0; i < 1000; i++)
        atomic_fetch_add_explicit(&to->status[i], atomic_load(&from->status[i]),
                                  memory_order_relaxed);
    for (int i = 0; i < FAILURE_COUNT; i++)
        atomic_fetch_add_explicit(&to->failures[i], atomic_load(&from->failures[i]),
                                  memory_order_relaxed);
}

void metrics_shard_retire(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&shards_lock);
    for (int i = 0; i < nshards; i++) {
        if (shards[i] == m) {
            fold(&retired, m);
            shards[i] = shards[--nshards];
            break;
        }
    }
    pthread_mutex_unlock(&shards_lock);
    free(m);
}

void metrics_free_all(void)
{
    pthread_mutex_lock(&shards_lock);
    for (int i = 0; i < nshards; i++)
        free(shards[i]);
    free(shards);
    shards = NULL;
    nshards = capshards = 0;
    pthread_mutex_unlock(&shards_lock);
}

void metrics_response(struct metrics *m, int status, enum failure_type failure)
{
    if (status >= 0 && status < 1000)
        atomic_fetch_add_explicit(&m->status[status], 1, memory_order_relaxed);
    if (failure != FAIL_NONE && (unsigned)failure < FAILURE_COUNT)
        atomic_fetch_add_explicit(&m->failures[failure], 1, memory_order_relaxed);
}

static uint64_t sum(size_t offset)
{
    uint64_t total = atomic_load_explicit((_Atomic uint64_t *)((char *)&retired + offset),
                                          memory_order_relaxed);
    for (int i = 0; i < nshards; i++)
        total += atomic_load_explicit((_Atomic uint64_t *)((char *)shards[i] + offset),
                                      memory_order_relaxed);
    return total;
}

void metrics_render(struct evbuffer *out)
{
    pthread_mutex_lock(&shards_lock);
    for (int id = 0; id < METRIC_COUNT; id++) {
        evbuffer_add_printf(out, "# HELP %s %s.\n# TYPE %s counter\n%s %llu\n",
                            metric_rows[id].name, metric_rows[id].help, metric_rows[id].name,
                            metric_rows[id].name,
                            (unsigned long long)sum(offsetof(struct metrics, counters) +
                                                    (size_t)id * sizeof(_Atomic uint64_t)));
    }
    int64_t active = 0;
    for (int i = 0; i < nshards; i++)
        active += atomic_load_explicit(&shards[i]->active_connections, memory_order_relaxed);
    evbuffer_add_printf(out,
                        "# HELP portico_client_connections_active Open client connections.\n"
                        "# TYPE portico_client_connections_active gauge\n"
                        "portico_client_connections_active %lld\n",
                        (long long)active);

    evbuffer_add_printf(out, "# HELP portico_responses_total Responses sent to clients by "
                             "status code.\n# TYPE portico_responses_total counter\n");
    for (int code = 100; code < 1000; code++) {
        uint64_t n = sum(offsetof(struct metrics, status) + (size_t)code * sizeof(uint64_t));
        if (n)
            evbuffer_add_printf(out, "portico_responses_total{code=\"%d\",class=\"%dxx\"} %llu\n",
                                code, code / 100, (unsigned long long)n);
    }
    evbuffer_add_printf(out, "# HELP portico_upstream_failures_total Upstream failures by "
                             "failure type.\n# TYPE portico_upstream_failures_total counter\n");
    for (int f = FAIL_NONE + 1; f < FAILURE_COUNT; f++) {
        uint64_t n = sum(offsetof(struct metrics, failures) + (size_t)f * sizeof(uint64_t));
        evbuffer_add_printf(out, "portico_upstream_failures_total{failure=\"%s\"} %llu\n",
                            failure_name((enum failure_type)f), (unsigned long long)n);
    }
    pthread_mutex_unlock(&shards_lock);
}
