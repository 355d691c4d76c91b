/*
 * generation.h — one loaded configuration and the runtime state its workers share: a balancer
 * per upstream (round robin, passive health), a learned-hints cache per route that learns, and
 * the fault rules with their state (enabled, overrides, counters, rules added at run time).
 * The configuration itself stays immutable; everything that changes while serving lives here,
 * and a reload starts a new generation (learned hints and fault rules start afresh with it: the
 * INI's rules come back; the origins' health is carried over, generation_inherit).
 */
#ifndef PORTICO_GENERATION_H
#define PORTICO_GENERATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct config;
struct balancer;
struct hint_cache;
struct fault_table;
struct climit;

struct generation {
    const struct config *cfg;          /* owned: freed with the generation */
    unsigned number;                   /* 1 for the configuration started with, +1 per reload */
    struct balancer **balancers;       /* one per upstream */
    struct hint_cache **hints;         /* one per route; NULL where the route does not learn */
    struct fault_table *faults;        /* the fault rules and their shared state */
    struct climit *climit;             /* per-client counts (client_rate,
                                          max_connections_per_client); NULL when no limit is
                                          set. A reload starts a new one (climit.h) */
    _Atomic bool retired;              /* a reload replaced it (its workers drain): a change to
                                          its fault rules would act on no new request */
};

/* Takes cfg over and creates its runtime state. NULL when out of memory (cfg is then freed). */
struct generation *generation_new(struct config *cfg, unsigned number);

/* A reload: g's upstreams take over the origins' health from the same-named upstreams of prev,
 * the generation still serving (balancer_inherit). Call before g's workers start. */
void generation_inherit(struct generation *g, const struct generation *prev, uint64_t now_ms);

/* A reload's g serves (its workers started): its max_conns become the limits of the in-flight
 * counts its origins share with the generations still draining (balancer_serve). */
void generation_serve(struct generation *g, uint64_t now_ms);

/* Frees the state and the configuration. NULL is fine. */
void generation_free(struct generation *g);

#endif
