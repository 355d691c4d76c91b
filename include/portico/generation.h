/*
 * generation.h — one loaded configuration and the runtime state its workers share: a balancer
 * per upstream (round robin, passive health), a learned-hints cache per route that learns, and
 * the fault rules with their state (enabled, overrides, counters, rules added at run time).
 * The configuration itself stays immutable; everything that changes while serving lives here,
 * and a reload starts a new generation (health, learned hints and fault rules start afresh with
 * it: the INI's rules come back).
 */
#ifndef PORTICO_GENERATION_H
#define PORTICO_GENERATION_H

struct config;
struct balancer;
struct hint_cache;
struct fault_table;

struct generation {
    const struct config *cfg;          /* owned: freed with the generation */
    unsigned number;                   /* 1 for the configuration started with, +1 per reload */
    struct balancer **balancers;       /* one per upstream */
    struct hint_cache **hints;         /* one per route; NULL where the route does not learn */
    struct fault_table *faults;        /* the fault rules and their shared state */
};

/* Takes cfg over and creates its runtime state. NULL when out of memory (cfg is then freed). */
struct generation *generation_new(struct config *cfg, unsigned number);

/* Frees the state and the configuration. NULL is fine. */
void generation_free(struct generation *g);

#endif
