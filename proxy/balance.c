/*
 * balance.c — origin choice and passive health. See balance.h.
 */
#include "portico/balance.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "portico/config.h"
#include "portico/log.h"

struct origin_health {
    _Atomic unsigned fails;            /* consecutive network failures */
    _Atomic uint64_t down_until_ms;    /* marked down until this monotonic time */
};

struct balancer {
    const struct upstream_conf *up;    /* borrowed */
    _Atomic unsigned next;             /* round-robin position */
    struct origin_health origins[];    /* one per origin of up */
};

struct balancer *balancer_new(const struct upstream_conf *up)
{
    struct balancer *b = calloc(1, sizeof(*b) + (size_t)up->norigins * sizeof(b->origins[0]));
    if (b)
        b->up = up;
    return b;
}

void balancer_free(struct balancer *b)
{
    free(b);
}

bool balancer_origin_down(const struct balancer *b, int origin, uint64_t now_ms)
{
    if (b->up->max_fails == 0 || origin < 0 || origin >= b->up->norigins)
        return false;
    const struct origin_health *o = &b->origins[origin];
    return atomic_load_explicit(&o->fails, memory_order_relaxed) >= b->up->max_fails &&
           now_ms < atomic_load_explicit(&o->down_until_ms, memory_order_relaxed);
}

int balancer_pick(struct balancer *b, uint64_t now_ms)
{
    int n = b->up->norigins;
    unsigned start = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        int o = (int)((start + (unsigned)i) % (unsigned)n);
        if (!balancer_origin_down(b, o, now_ms))
            return o;
    }
    return -1;
}

void balancer_report(struct balancer *b, int origin, bool network_failure, uint64_t now_ms)
{
    const struct upstream_conf *up = b->up;
    if (up->max_fails == 0 || origin < 0 || origin >= up->norigins)
        return;
    struct origin_health *o = &b->origins[origin];
    if (!network_failure) {
        if (atomic_load_explicit(&o->fails, memory_order_relaxed)) /* no store on the hot path */
            atomic_store_explicit(&o->fails, 0, memory_order_relaxed);
        return;
    }
    unsigned fails = atomic_fetch_add_explicit(&o->fails, 1, memory_order_relaxed) + 1;
    if (fails >= up->max_fails) {
        atomic_store_explicit(&o->down_until_ms, now_ms + up->fail_timeout_ms,
                              memory_order_relaxed);
        if (fails == up->max_fails)
            log_error("upstream %s: origin %s marked down for %llu ms after %u failures",
                      up->name, up->origins[origin].text, (unsigned long long)up->fail_timeout_ms,
                      fails);
    }
}
