/*
 * generation.c — a configuration with its shared runtime state. See generation.h.
 */
#include "portico/generation.h"

#include <stdlib.h>
#include <string.h>

#include "portico/balance.h"
#include "portico/climit.h"
#include "portico/config.h"
#include "portico/fault_table.h"
#include "portico/hints.h"
#include "portico/origin_admin.h"
#include "portico/util.h"

/* Whether a per-client limit is set anywhere: without one no table is made, and nothing is
 * counted. */
static bool generation_limits_clients(const struct config *cfg)
{
    if (cfg->max_connections_per_client)
        return true;
    for (int i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].client_rate.count)
            return true;
    return false;
}

void generation_free(struct generation *g)
{
    if (!g)
        return;
    const struct config *cfg = g->cfg;
    for (int i = 0; g->balancers && i < cfg->nupstreams; i++) {
        origin_admin_leave(g->balancers[i]);
        balancer_free(g->balancers[i]);
    }
    for (int i = 0; g->hints && i < cfg->nroutes; i++)
        hint_cache_free(g->hints[i]);
    free(g->balancers);
    free(g->hints);
    fault_table_free(g->faults);
    climit_free(g->climit);
    cfg_free((struct config *)(uintptr_t)cfg); /* ours: const only for the workers */
    free(g);
}

struct generation *generation_new(struct config *cfg, unsigned number)
{
    struct generation *g = calloc(1, sizeof(*g));
    if (!g) {
        cfg_free(cfg);
        return NULL;
    }
    g->cfg = cfg;
    g->number = number;
    atomic_init(&g->retired, false);
    g->balancers = calloc((size_t)cfg->nupstreams, sizeof(*g->balancers));
    g->hints = calloc((size_t)cfg->nroutes + 1, sizeof(*g->hints));
    g->faults = fault_table_new(cfg, now_us() / 1000);
    if (!g->balancers || !g->hints || !g->faults)
        goto fail;
    if (generation_limits_clients(cfg) && !(g->climit = climit_new(cfg->client_limit_table)))
        goto fail;
    for (int i = 0; i < cfg->nupstreams; i++)
        if (!(g->balancers[i] = balancer_new(&cfg->upstreams[i])) ||
            balancer_share(g->balancers[i]) != 0 || /* the same origins of other generations */
            origin_admin_join(g->balancers[i]) != 0) /* drained before a reload, still */
            goto fail; /* origin_admin_leave of one that never joined finds nothing */
    for (int i = 0; i < cfg->nroutes; i++) {
        const struct route_conf *r = &cfg->routes[i];
        if (r->early_hints_learn && !(g->hints[i] = hint_cache_new(r->early_hints_cache)))
            goto fail;
    }
    return g;
fail:
    generation_free(g);
    return NULL;
}

void generation_inherit(struct generation *g, const struct generation *prev, uint64_t now_ms)
{
    const struct config *cfg = g->cfg, *old = prev->cfg;
    for (int i = 0; i < cfg->nupstreams; i++)
        for (int j = 0; j < old->nupstreams; j++)
            if (strcmp(cfg->upstreams[i].name, old->upstreams[j].name) == 0) {
                balancer_inherit(g->balancers[i], prev->balancers[j], now_ms);
                balancer_inherit_queue(g->balancers[i], prev->balancers[j]);
            }
}

void generation_serve(struct generation *g, uint64_t now_ms)
{
    for (int i = 0; i < g->cfg->nupstreams; i++) {
        balancer_serve(g->balancers[i], now_ms);
        origin_admin_serve(g->balancers[i]);
    }
}
