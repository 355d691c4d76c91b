/*
 * fault_decide.c — which requests a fault rule takes and what it draws for them: the matchers,
 * the shared generator, the delay distributions, the runtime state (its sequence-counted
 * control and its counters) and the decision. See fault.h.
 *
 * The control is written under a sequence count, the way the kernel's seqlocks work: the writer
 * makes the count odd, stores, and makes it even again; a reader retries while it is odd or
 * changed. Workers never wait on an admin request, and never see half a change (enabled from
 * one, probability from another).
 */
#include "portico/fault.h"

#include <math.h>
#include <string.h>

#include "portico/route_prefix.h"
#include "portico/util.h"

#define Z_99 2.3263478740408408 /* the standard normal's 99th percentile */
#define TWO_PI 6.283185307179586

static const char *const phase_names[] = {
#define X(id, nm) [id] = nm,
    FAULT_PHASE_LIST(X)
#undef X
};

const char *fault_phase_name(enum fault_phase p)
{
    return (unsigned)p < ARRAY_LEN(phase_names) ? phase_names[p] : "unknown";
}

/* ---- matching ---- */

static bool host_matches(const char *pattern, const char *host, size_t len)
{
    char h[256];
    size_t n = host ? host_key(host, len, h, sizeof(h)) : 0;
    if (!n)
        return false;
    if (pattern[0] == '*') {
        size_t plen = strlen(pattern) - 1; /* ".example.com" */
        return n > plen && memcmp(h + n - plen, pattern + 1, plen) == 0;
    }
    return strlen(pattern) == n && memcmp(pattern, h, n) == 0;
}

/* "name" holds when the request has the field; "name=value" when one has exactly that value. */
static bool header_matches(const char *m, const struct fault_request *q)
{
    const char *eq = strchr(m, '=');
    size_t nlen = eq ? (size_t)(eq - m) : strlen(m);
    char name[256];
    if (nlen >= sizeof(name))
        return false;
    memcpy(name, m, nlen);
    name[nlen] = '\0';
    for (int i = h1_find_field(q->fields, q->nfields, name, 0); i >= 0;
         i = h1_find_field(q->fields, q->nfields, name, (size_t)i + 1)) {
        const struct h1_field *f = &q->fields[i];
        if (!eq || (f->value_len == strlen(eq + 1) && memcmp(f->value, eq + 1, f->value_len) == 0))
            return true;
    }
    return false;
}

/* As routes read the path (route_prefix_matches), at memcmp's cost where the prefix and the
 * path read as themselves: reading a normalised character at a time cost 750 instructions for
 * "/fault/" against "/fault/x", most of an injected fault's matching, and 250 for it against
 * "/small", a request the rule does not take. */
static bool prefix_holds(const struct fault_rule *r, const struct fault_request *q)
{
    return route_prefix_holds(q->path, q->path_len, q->path_plain, fault_text(r, r->prefix),
                              r->prefix_len, r->prefix_plain);
}

bool fault_match(const struct fault_rule *r, const struct fault_request *q)
{
    if (r->route && (!q->route || strcmp(q->route, fault_text(r, r->route)) != 0))
        return false;
    if (r->host && !host_matches(fault_text(r, r->host), q->host, q->host_len))
        return false;
    if (r->prefix && !prefix_holds(r, q))
        return false;
    if (r->nmethods) {
        bool any = false;
        for (int i = 0; i < r->nmethods && !any; i++)
            any = r->methods[i] == q->method;
        if (!any)
            return false;
    }
    for (int i = 0; i < r->nmatch_headers; i++)
        if (!header_matches(fault_text(r, r->match_headers[i]), q))
            return false;
    if (r->nclients && (!q->client || !fault_cidr_contains(r->clients, r->nclients, q->client)))
        return false;
    return true;
}

/* ---- randomness and delays ---- */

void fault_rng_init(struct fault_rng *g, uint64_t seed)
{
    atomic_init(&g->state, seed);
}

uint64_t fault_rng_next(struct fault_rng *g)
{
    const uint64_t golden = UINT64_C(0x9E3779B97F4A7C15);
    uint64_t z = atomic_fetch_add_explicit(&g->state, golden, memory_order_relaxed) + golden;
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

double fault_rng_unit(struct fault_rng *g)
{
    return (double)(fault_rng_next(g) >> 11) * 0x1.0p-53;
}

/* A draw in [lo, hi] ms. */
static uint64_t uniform_ms(struct fault_rng *g, uint64_t lo, uint64_t hi)
{
    return lo + (uint64_t)(fault_rng_unit(g) * (double)(hi - lo + 1));
}

uint64_t fault_delay_draw(const struct fault_delay *d, struct fault_rng *g)
{
    switch (d->kind) {
    case FAULT_DELAY_NONE:
        return 0;
    case FAULT_DELAY_FIXED: {
        if (!d->b_ms)
            return d->a_ms;
        uint64_t lo = d->a_ms > d->b_ms ? d->a_ms - d->b_ms : 0;
        return uniform_ms(g, lo, d->a_ms + d->b_ms);
    }
    case FAULT_DELAY_UNIFORM:
        return uniform_ms(g, d->a_ms, d->b_ms);
    case FAULT_DELAY_LOGNORMAL: {
        /* median = e^mu; p99 = e^(mu + sigma z99); one normal draw by Box-Muller */
        double mu = log((double)d->a_ms);
        double sigma = (log((double)d->b_ms) - mu) / Z_99;
        double u1 = 1.0 - fault_rng_unit(g), u2 = fault_rng_unit(g);
        double z = sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
        double ms = exp(mu + sigma * z);
        double cap = (double)d->b_ms * FAULT_DELAY_CAP;
        return (uint64_t)(MIN(ms, cap) + 0.5);
    }
    }
    return 0;
}

/* ---- the runtime state ---- */

void fault_state_init(struct fault_state *s, const struct fault_rule *r, uint64_t now_ms)
{
    atomic_init(&s->seq, 0);
    atomic_init(&s->enabled, r->enabled);
    atomic_init(&s->probability, r->probability);
    atomic_init(&s->since_ms, now_ms);
    atomic_init(&s->revert_at_ms, 0);
    atomic_init(&s->saved_enabled, r->enabled);
    atomic_init(&s->saved_probability, r->probability);
    atomic_init(&s->deleted, false);
    atomic_init(&s->matched, 0);
    atomic_init(&s->hits, 0);
    atomic_init(&s->active, 0);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

void fault_state_read(struct fault_state *s, uint64_t now_ms, struct fault_control *out)
{
    unsigned seq;
    bool saved_enabled;
    double saved_probability;
    for (;;) {
        seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (seq & 1)
            continue; /* a change is being written: a few stores, no wait worth sleeping on */
        out->enabled = LOAD(s->enabled);
        out->probability = LOAD(s->probability);
        out->since_ms = LOAD(s->since_ms);
        out->revert_at_ms = LOAD(s->revert_at_ms);
        saved_enabled = LOAD(s->saved_enabled);
        saved_probability = LOAD(s->saved_probability);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == seq)
            break;
    }
    if (out->revert_at_ms && now_ms >= out->revert_at_ms) {
        out->enabled = saved_enabled;
        out->probability = saved_probability;
        out->revert_at_ms = 0;
    }
}

void fault_state_change(struct fault_state *s, uint64_t now_ms, const struct fault_change *c)
{
    struct fault_control now;
    fault_state_read(s, now_ms, &now); /* a revert that is due happens first */
    unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (c->for_ms) {
        /* the state to come back to is the one before the first of overlapping changes */
        if (!now.revert_at_ms) {
            STORE(s->saved_enabled, now.enabled);
            STORE(s->saved_probability, now.probability);
        }
        STORE(s->revert_at_ms, now_ms + c->for_ms);
    } else {
        STORE(s->revert_at_ms, 0); /* a lasting change cancels a pending revert */
    }
    bool enabled = c->enabled >= 0 ? c->enabled != 0 : now.enabled;
    STORE(s->enabled, enabled);
    STORE(s->probability, c->probability >= 0 ? c->probability : now.probability);
    if (c->enabled > 0) {
        STORE(s->since_ms, now_ms);
        STORE(s->matched, 0);
    }
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

enum fault_phase fault_state_phase(const struct fault_rule *r, struct fault_state *s,
                                   uint64_t now_ms)
{
    struct fault_control c;
    fault_state_read(s, now_ms, &c);
    uint64_t open = c.since_ms + r->after_ms;
    if (LOAD(s->deleted))
        return FAULT_DELETED;
    if (!c.enabled)
        return FAULT_DISABLED;
    if (now_ms < open)
        return FAULT_WAITING;
    if (r->for_ms && now_ms >= open + r->for_ms)
        return FAULT_EXPIRED;
    if (r->first && LOAD(s->matched) >= r->first)
        return FAULT_SPENT;
    return FAULT_ARMED;
}

/* ---- the decision ---- */

/* Takes a place under max_active; false when they are all taken. */
static bool take_active(const struct fault_rule *r, struct fault_state *s)
{
    uint64_t n = LOAD(s->active);
    do {
        if (r->max_active && n >= r->max_active)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&s->active, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* One status of a weighted list, or the lone one; 0 to pass the request to the origin. */
static int draw_status(const struct fault_rule *r, struct fault_rng *g)
{
    if (r->nstatuses == 1 && !r->statuses[0].pass && r->statuses[0].weight >= 1)
        return r->statuses[0].code;
    double u = r->nstatuses ? fault_rng_unit(g) : 1.0, acc = 0;
    for (int i = 0; i < r->nstatuses; i++) {
        acc += r->statuses[i].weight;
        if (u < acc)
            return r->statuses[i].pass ? 0 : r->statuses[i].code;
    }
    return 0; /* the weights leave the rest to the origin */
}

/* Nothing of the rule applies to a request with this pick: it passes untouched. */
static bool idle(const struct fault_rule *r, const struct fault_pick *pick)
{
    return !pick->status && !pick->delay_ms && !r->ninterim && r->failure == FAIL_NONE &&
           !r->drop && !r->reset && !fault_rule_needs_response(r);
}

bool fault_decide(const struct fault_rule *r, struct fault_state *s, uint64_t now_ms,
                  struct fault_rng *g, struct fault_pick *pick)
{
    double p = r->probability;
    if (s) {
        struct fault_control c;
        fault_state_read(s, now_ms, &c);
        uint64_t open = c.since_ms + r->after_ms;
        if (LOAD(s->deleted) || !c.enabled || now_ms < open ||
            (r->for_ms && now_ms >= open + r->for_ms))
            return false;
        uint64_t n = atomic_fetch_add_explicit(&s->matched, 1, memory_order_relaxed) + 1;
        if ((r->first && n > r->first) || (r->every && n % r->every != 0))
            return false;
        p = c.probability;
    }
    if (p <= 0 || (p < 1 && fault_rng_unit(g) >= p))
        return false;
    struct fault_delay d = r->delay;
    if (d.kind == FAULT_DELAY_FIXED)
        d.b_ms = r->jitter_ms;
    *pick = (struct fault_pick){
        .status = draw_status(r, g),
        .delay_ms = fault_delay_draw(&d, g),
        .response_delay_ms = fault_delay_draw(&r->response_delay, g),
    };
    if (idle(r, pick)) /* a weighted list chose the origin and nothing else applies */
        return false;
    if (s) {
        if (!take_active(r, s))
            return false;
        atomic_fetch_add_explicit(&s->hits, 1, memory_order_relaxed);
    }
    return true;
}

void fault_release(struct fault_state *s)
{
    if (s)
        atomic_fetch_sub_explicit(&s->active, 1, memory_order_relaxed);
}
