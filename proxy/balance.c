/*
 * balance.c — origin choice and health. See balance.h.
 *
 * The round-robin cycle is nginx's smooth weighted round robin run once at creation: each turn
 * every origin's current weight grows by its weight, the largest takes the turn and gives back
 * the total. Weights 5, 1, 1 give a a b a c a a rather than a a a a a b c. Workers share one
 * position in that cycle (an atomic counter), so the spread holds across threads too. The turns
 * of an origin that cannot take the attempt are used up as well, so its share goes round the
 * others by weight instead of to its neighbour in the cycle.
 *
 * balance = hash keys a ring (ketama's, as nginx's `hash ... consistent`): each origin has
 * RING_POINTS per unit of weight on a 32-bit circle, placed by the hash of its host:port, and a
 * key goes to the origin of the first point at or after its hash. Origins are placed by name,
 * not by index: adding or removing one moves only the keys of its own points (~1/N). A down,
 * excluded or already tried origin is passed over to the next point of another origin, so its
 * keys spread over the others and come back when it does, and a retry goes to the next distinct
 * origin on the ring. Maglev's table evens the shares better and jump hash needs no memory, but
 * both pick one slot: skipping an origin there means hashing again or rebuilding, where the
 * ring's walk is the fallback order itself.
 *
 * Backup origins are a second tier: a pick looks among the primaries first, the backups left
 * out, and among the backups only when no primary will do (down, failing its check, or tried
 * by this request already), by the same policy. They keep their turns in the one cycle and
 * their points on the one ring, skipped as excluded origins are: the primaries' order and keys
 * are the same as without them (a ring walk past an excluded point is the ring without it).
 *
 * slow_start ramps an origin back from down (or new to the upstream on a reload) from ~0 to its
 * weight over the duration, linearly, from the first pick that finds it usable: round robin
 * lets it take that fraction of its turns (the rest go round the others, as a down origin's
 * do), least_conn lets it run for that fraction of its picks and scales its weight by it,
 * random_two scales its weight by it. Unset, it costs one load and branch a
 * pick.
 *
 * The admin API (origin_admin.h) takes origins out of balancing: two masks, `out` (drain,
 * maint, weight 0) and `maint`, recomputed by the one writer at each change. A pick ORs `out`
 * into its exclude mask, so every policy and the backups' tier pass over such an origin as over
 * a tried one (one load and an OR a pick, callgrind +5 instructions); balancer_pick_origin
 * (sticky) ORs `maint` only, so a drained origin keeps its sticky clients. A weight changed at
 * run time acts through weight_now (least_conn, random_two) and, for round robin, through each
 * origin's turn_scale: the cycle stays the configured weights', and the origins take that share
 * of their turns (as slow_start's ramp does), the one raised most over its configured weight
 * taking all of its own.
 */
#include "portico/balance.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/hashkey.h"
#include "portico/log.h"
#include "portico/retry_budget.h"
#include "portico/retry_on.h"
#include "portico/slotshare.h"
#include "portico/util.h"

_Static_assert(CFG_MAX_ORIGINS <= 32, "exclude masks are 32 bits");

/* An origin's state word: enum origin_state in its low bits, and above them the number of the
 * last probe taken (take), which a probe's end must name to decide: an attempt that was the
 * probe of an earlier down_time is an older attempt once another probe is out. */
#define STATE_BITS 2
#define STATE_MASK ((UINT64_C(1) << STATE_BITS) - 1)
_Static_assert(ORIGIN_STATE_COUNT <= STATE_MASK + 1, "origin states fit in STATE_BITS");

struct origin_slot {
    _Atomic uint64_t state;            /* state word (STATE_MASK); release/acquire with
                                          down_until */
    _Atomic int check;                 /* enum check_state: the checks' verdict */
    _Atomic int checks_in_row;         /* the checks in a row that ended as the last one did:
                                          > 0 passed, < 0 failed, 0 before the first */
    _Atomic unsigned fails;            /* network failures in a row within the window */
    _Atomic bool checks_stopped;       /* its health check's next check could not be armed
                                          (in fails' padding) */
    _Atomic uint16_t down_status;      /* the status whose count marked it down last (fail_on,
                                          retry_on), 0 for a network failure (/status; in the
                                          same padding) */
    _Atomic uint64_t window_start_ms;  /* the first of those failures */
    _Atomic uint64_t down_until_ms;    /* DOWN: when the probe may go */
    struct slot_count *count;          /* attempts picked and not done, and the limit:
                                          own, or shared with other generations (slotshare.h) */
    uint32_t same;                     /* the origins listed with its host:port, itself included */
    _Atomic unsigned ramp_turns;       /* slow_start: its turns seen while ramping */
    _Atomic unsigned ramp_runs;        /* ... and least_conn's picks it ran in, not its turn
                                          (in ramp_turns' padding) */
    _Atomic uint64_t ramp_until_ms;    /* slow_start: when its ramp ends; 0 none, RAMP_PENDING
                                          from its next pick */
    struct slot_count own;             /* count's until the balancer shares (balancer_share) */
    _Atomic unsigned weight;           /* its weight now: the configured one, or the admin API's
                                          (balancer_set_weight) */
    _Atomic uint32_t turn_scale;       /* the share of its round-robin turns it takes, in
                                          SCALE_FULLths: below it when another origin's weight was
                                          raised past its configured one */
    _Atomic int admin;                 /* enum origin_admin (balancer_set_admin) */
};

/* A turn's share: TURN_FULL is every turn (RAMP_FULL times SCALE_FULL). */
#define SCALE_FULL 65536u
#define TURN_FULL ((uint64_t)RAMP_FULL * SCALE_FULL)

/* An origin back up whose ramp starts at the first pick that finds it usable: an answered probe
 * or a passing check has no clock of its own, and a ramp begun while the other health still
 * kept it out would be spent before it took a request. */
#define RAMP_PENDING UINT64_MAX
#define RAMP_FULL 1000u /* permille */

/* One point of the hash ring: 8 bytes. */
struct ring_point {
    uint32_t at;                       /* its place on the circle */
    uint32_t origin;                   /* whose it is */
};

/* Points per unit of weight, as nginx's 160 a unit. An origin's share varies by about
 * 1/sqrt(points) from its due: nginx's 160 gave four equal origins 22,007 to 27,363 of 100,000
 * keys (max/min 1.24), 256 gives 23,744 to 26,349 (1.11). RING_MAX_POINTS bounds a ring of large
 * weights (32 origins of weight 100 would be 819,200 points, 6 MiB): past it, 1,024 units of
 * weight, each origin has its share of that many, by weight, and a change of weights moves more
 * than its own share of keys. */
#define RING_POINTS 256
#define RING_MAX_POINTS 262144 /* 2 MiB */

struct balancer {
    const struct upstream_conf *up;    /* borrowed */
    unsigned npoints;                  /* balance = hash: points on the ring (else 0) */
    struct ring_point *ring;           /* ... sorted by at */
    _Atomic unsigned next;             /* position in the cycle (least_conn: where ties start) */
    unsigned ncycle;                   /* sum of the weights */
    uint8_t *cycle;                    /* the round-robin order, one origin index per turn */
    uint32_t backups;                  /* the backup origins (bit i: origin i) */
    uint32_t primaries;                /* the others */
    bool ramps;                        /* slow_start is set: read by each pick */
    _Atomic bool shares_turns;         /* ramps, or a weight changed at run time: round robin
                                          takes a share of an origin's turns (ramped_turn) */
    _Atomic uint32_t out;              /* origins the admin API took out of balancing (drain,
                                          maint, weight 0): no pick but a sticky one takes them */
    _Atomic uint32_t maint;            /* ... those in maint: not even a sticky one */
    struct balance_queue *queue;       /* up->limited: the waiters for a slot, else NULL */
    struct slot_share *share;          /* balancer_share: the counts of other generations */
    struct slot_member member;         /* ... and this balancer among their balancers */
    _Atomic unsigned *retries;         /* retry_budget: retries in flight, own_retries or the
                                          share's (every generation's) */
    _Atomic unsigned own_retries;
    struct slot_tally *tally;          /* its counters: own_tally, or the share's (every
                                          generation's) */
    struct slot_tally own_tally;
    struct origin_slot origins[];      /* one per origin of up */
};

static const char *const origin_state_names[] = {
#define X(id, name) [id] = name,
    ORIGIN_STATE_LIST(X)
#undef X
};

static const char *const check_state_names[] = {
#define X(id, name) [id] = name,
    CHECK_STATE_LIST(X)
#undef X
};

static const char *const origin_admin_names[] = {
#define X(id, name) [id] = name,
    ORIGIN_ADMIN_LIST(X)
#undef X
};

static const char *const balance_result_names[] = {
#define X(id, name) [id] = name,
    BALANCE_RESULT_LIST(X)
#undef X
};

const char *origin_state_name(enum origin_state s)
{
    return (unsigned)s < ARRAY_LEN(origin_state_names) ? origin_state_names[s] : "unknown";
}

const char *check_state_name(enum check_state s)
{
    return (unsigned)s < ARRAY_LEN(check_state_names) ? check_state_names[s] : "unknown";
}

const char *origin_admin_name(enum origin_admin a)
{
    return (unsigned)a < ARRAY_LEN(origin_admin_names) ? origin_admin_names[a] : "unknown";
}

int origin_admin_from_name(const char *name, enum origin_admin *out)
{
    for (unsigned a = 0; a < ARRAY_LEN(origin_admin_names); a++)
        if (strcmp(name, origin_admin_names[a]) == 0) {
            *out = (enum origin_admin)a;
            return 0;
        }
    return -1;
}

const char *balance_result_name(enum balance_result r)
{
    return (unsigned)r < ARRAY_LEN(balance_result_names) ? balance_result_names[r] : "unknown";
}

/* ---- max_conns and the queue (the end of this file) ---- */

static struct balance_queue *queue_new(void);
static void queue_free(struct balance_queue *q);
/* Out of line: an upstream without max_conns pays a test of b->queue only. */
static __attribute__((noinline)) bool take_limited(struct balancer *b, int o, uint64_t *probe);
static __attribute__((noinline)) void done_limited(struct balancer *b, int origin, uint64_t probe,
                                                   enum balance_result r, uint64_t now_ms);
static void slot_free(struct balancer *b, int o);
static void queue_rescan(struct balancer *b, uint64_t now_ms);
static enum balance_room room_of(const struct balancer *b, uint64_t now_ms, uint32_t exclude,
                                 bool pinned);
static inline __attribute__((always_inline)) bool take_probe(struct balancer *b, int o,
                                                            uint64_t *probe);
static inline __attribute__((always_inline)) void verdict(struct balancer *b, int origin,
                                                          uint64_t probe, enum balance_result r,
                                                          uint64_t now_ms);

/* ---- creation ---- */

/* An origin's weight; 1 for an upstream built without weights. */
static unsigned weight_of(const struct balancer *b, int o)
{
    return b->up->origins[o].weight ? b->up->origins[o].weight : 1;
}

/* Smooth weighted round robin, one whole cycle. */
static void build_cycle(struct balancer *b)
{
    const struct upstream_conf *up = b->up;
    int64_t current[CFG_MAX_ORIGINS] = {0};
    for (unsigned turn = 0; turn < b->ncycle; turn++) {
        int best = 0;
        for (int o = 0; o < up->norigins; o++) {
            current[o] += weight_of(b, o);
            if (current[o] > current[best])
                best = o;
        }
        current[best] -= b->ncycle;
        b->cycle[turn] = (uint8_t)best;
    }
}

static int point_order(const void *a, const void *c)
{
    const struct ring_point *pa = a, *pc = c;
    if (pa->at != pc->at)
        return pa->at < pc->at ? -1 : 1;
    return pa->origin < pc->origin ? -1 : pa->origin > pc->origin; /* the same on every load */
}

/* The ring of balance = hash: each origin's points placed by the hash of "host:port#listing-i",
 * listing counting the earlier origins of the same host:port (a weight by repetition). An
 * origin's count is its own weight's alone: divided by the weights' greatest common divisor, one
 * origin added, removed or reweighted changed every origin's count (four of weight 2 and a fifth
 * of 1 moved 43% of the keys, 32% between origins that had not changed). 0, or -1 when out of
 * memory. */
static int build_ring(struct balancer *b)
{
    const struct upstream_conf *up = b->up;
    unsigned units = 0;
    for (int o = 0; o < up->norigins; o++)
        units += weight_of(b, o);
    unsigned per_unit = RING_POINTS, n = 0;
    if ((uint64_t)units * per_unit > RING_MAX_POINTS)
        per_unit = 0; /* shares of RING_MAX_POINTS instead */
    unsigned points[CFG_MAX_ORIGINS];
    for (int o = 0; o < up->norigins; o++) {
        unsigned w = weight_of(b, o);
        points[o] = per_unit ? per_unit * w : MAX(1u, (unsigned)((uint64_t)RING_MAX_POINTS * w /
                                                                 units));
        n += points[o];
    }
    b->ring = malloc((size_t)n * sizeof(*b->ring));
    if (!b->ring)
        return -1;
    b->npoints = n;
    unsigned at = 0;
    for (int o = 0; o < up->norigins; o++) {
        unsigned listing = 0;
        for (int f = 0; f < o; f++)
            listing += strcmp(up->origins[f].text, up->origins[o].text) == 0;
        /* "host:port#listing-" once, the point's number after it: a snprintf per point was
         * most of a 262,144-point ring's build */
        char name[CFG_ORIGIN_TEXT_MAX + 32];
        int prefix = snprintf(name, sizeof(name), "%s#%u-", up->origins[o].text, listing);
        for (unsigned i = 0; i < points[o]; i++) {
            char digits[10];
            size_t nd = 0;
            for (unsigned v = i; nd == 0 || v; v /= 10)
                digits[nd++] = (char)('0' + v % 10);
            for (size_t d = 0; d < nd; d++)
                name[prefix + (int)d] = digits[nd - 1 - d];
            b->ring[at].at = (uint32_t)(hashkey_bytes(name, (size_t)prefix + nd, 0) >> 32);
            b->ring[at++].origin = (uint32_t)o;
        }
    }
    qsort(b->ring, n, sizeof(*b->ring), point_order);
    return 0;
}

struct balancer *balancer_new(const struct upstream_conf *up)
{
    struct balancer *b = calloc(1, sizeof(*b) + (size_t)up->norigins * sizeof(b->origins[0]));
    if (!b)
        return NULL;
    b->up = up;
    b->ramps = up->slow_start_ms > 0;
    atomic_init(&b->shares_turns, b->ramps);
    b->retries = &b->own_retries;
    b->tally = &b->own_tally;
    for (int o = 0; o < up->norigins; o++) {
        atomic_init(&b->origins[o].own.max, up->origins[o].max_conns);
        atomic_init(&b->origins[o].own.into, NULL);
        b->origins[o].count = &b->origins[o].own;
        atomic_init(&b->origins[o].weight, weight_of(b, o));
        atomic_init(&b->origins[o].turn_scale, SCALE_FULL);
        atomic_init(&b->origins[o].admin, ORIGIN_ADMIN_READY);
    }
    for (int o = 0; o < up->norigins; o++)
        b->ncycle += weight_of(b, o);
    b->cycle = calloc(b->ncycle ? b->ncycle : 1, sizeof(*b->cycle));
    if (!b->cycle) {
        free(b);
        return NULL;
    }
    build_cycle(b);
    if (up->balance == BALANCE_HASH && up->norigins > 0 && build_ring(b) != 0) {
        free(b->cycle);
        free(b);
        return NULL;
    }
    for (int o = 0; o < up->norigins; o++) {
        for (int f = 0; f < up->norigins; f++)
            if (strcmp(up->origins[o].text, up->origins[f].text) == 0)
                b->origins[o].same |= 1u << f;
        if (up->origins[o].backup)
            b->backups |= 1u << o;
        else
            b->primaries |= 1u << o;
    }
    if (up->limited && !(b->queue = queue_new())) {
        balancer_free(b);
        return NULL;
    }
    return b;
}

void balancer_free(struct balancer *b)
{
    if (!b)
        return;
    if (b->share) {
        for (int o = 0; o < b->up->norigins; o++)
            if (b->origins[o].count != &b->origins[o].own)
                slot_share_put(b->share, b->origins[o].count);
        slot_share_leave(b->share, &b->member);
    }
    queue_free(b->queue);
    free(b->ring);
    free(b->cycle);
    free(b);
}

/* ---- picking ---- */

static enum origin_state state_of(const struct origin_slot *s)
{
    return (enum origin_state)(atomic_load_explicit(&s->state, memory_order_acquire) & STATE_MASK);
}

static uint64_t state_word(enum origin_state st, uint64_t probe)
{
    return probe << STATE_BITS | (uint64_t)st;
}

/* May origin o take an attempt at now: up, or down with its down_time over (the probe). */
__attribute__((always_inline)) static inline bool usable(const struct balancer *b, int o,
                                                        uint64_t now_ms)
{
    const struct origin_slot *s = &b->origins[o];
    if (atomic_load_explicit(&s->check, memory_order_relaxed) == CHECK_FAILING)
        return false;
    enum origin_state st = state_of(s);
    return st == ORIGIN_UP ||
           (st == ORIGIN_DOWN &&
            now_ms >= atomic_load_explicit(&s->down_until_ms, memory_order_relaxed));
}

/* A DOWN origin is taken by one attempt only, the one that turns it PROBING, with the next
 * probe number (*probe; 0 for any other): false when another attempt took the probe. */
static inline bool take_probe(struct balancer *b, int o, uint64_t *probe)
{
    struct origin_slot *s = &b->origins[o];
    uint64_t word = atomic_load_explicit(&s->state, memory_order_acquire);
    *probe = 0;
    if ((word & STATE_MASK) == ORIGIN_DOWN) {
        uint64_t number = (word >> STATE_BITS) + 1; /* 62 bits: never back to 0 */
        if (!atomic_compare_exchange_strong_explicit(&s->state, &word,
                                                     state_word(ORIGIN_PROBING, number),
                                                     memory_order_acq_rel, memory_order_relaxed))
            return false;
        *probe = number;
    }
    return true;
}

/* Takes origin o for an attempt: counted in flight (take_limited with max_conns). */
static bool take(struct balancer *b, int o, uint64_t now_ms, uint64_t *probe)
{
    if (!usable(b, o, now_ms))
        return false;
    if (__builtin_expect(b->queue != NULL, 0))
        return take_limited(b, o, probe);
    if (!take_probe(b, o, probe))
        return false;
    atomic_fetch_add_explicit(&b->origins[o].count->in_flight, 1, memory_order_relaxed);
    return true;
}

/* ---- slow start ---- */

/* The share of its weight an origin whose ramp ends at until has at now, in permille: from 1
 * (never 0: an origin alone must still be drawn) to RAMP_FULL. */
static unsigned ramp_share(uint64_t slow_ms, uint64_t until, uint64_t now_ms)
{
    if (until == 0 || now_ms >= until)
        return RAMP_FULL;
    uint64_t left = MIN(until - now_ms, slow_ms);
    return MAX(1u, (unsigned)(RAMP_FULL - left * RAMP_FULL / slow_ms));
}

/* Origin o's share of its weight at now (slow_start set), its pending ramp started. */
static unsigned ramp_permille(struct balancer *b, int o, uint64_t now_ms)
{
    struct origin_slot *s = &b->origins[o];
    uint64_t until = atomic_load_explicit(&s->ramp_until_ms, memory_order_relaxed);
    if (until == 0)
        return RAMP_FULL;
    if (until == RAMP_PENDING) {
        uint64_t start = now_ms + b->up->slow_start_ms;
        if (atomic_compare_exchange_strong_explicit(&s->ramp_until_ms, &until, start,
                                                    memory_order_relaxed, memory_order_relaxed))
            until = start; /* else another thread started it: until holds its end */
    }
    unsigned share = ramp_share(b->up->slow_start_ms, until, now_ms);
    if (share == RAMP_FULL) /* over: later picks read a 0 */
        atomic_compare_exchange_strong_explicit(&s->ramp_until_ms, &until, 0,
                                                memory_order_relaxed, memory_order_relaxed);
    return share;
}

/* Whether the kth time counted in *seen is a ramping origin's at now: it takes its ramp's share
 * of them, evenly (the kth when k * share crosses a whole RAMP_FULL). */
static bool ramp_takes(struct balancer *b, int o, _Atomic unsigned *seen, uint64_t now_ms)
{
    unsigned share = ramp_permille(b, o, now_ms);
    if (share >= RAMP_FULL)
        return true;
    uint64_t k = atomic_fetch_add_explicit(seen, 1, memory_order_relaxed);
    return (k + 1) * share / RAMP_FULL > k * share / RAMP_FULL;
}

/* Whether round robin's turn of origin o at now is its own: its ramp's share of its turns,
 * scaled by turn_scale when weights changed at run time (balancer_set_weight). */
static bool ramp_takes_turn(struct balancer *b, int o, uint64_t now_ms)
{
    struct origin_slot *s = &b->origins[o];
    uint64_t share = (uint64_t)(b->ramps ? ramp_permille(b, o, now_ms) : RAMP_FULL) *
                     atomic_load_explicit(&s->turn_scale, memory_order_relaxed);
    if (share >= TURN_FULL)
        return true;
    uint64_t k = atomic_fetch_add_explicit(&s->ramp_turns, 1, memory_order_relaxed);
    return (k + 1) * share / TURN_FULL > k * share / TURN_FULL;
}

/* Origin o's weight at now in thousandths: its weight now (the admin API may have changed it),
 * its ramp's share of it under slow_start. */
static uint64_t weight_now(struct balancer *b, int o, uint64_t now_ms)
{
    return (uint64_t)atomic_load_explicit(&b->origins[o].weight, memory_order_relaxed) *
           (b->up->slow_start_ms ? ramp_permille(b, o, now_ms) : RAMP_FULL);
}

/* Marks origin o back up (from down, failing, or new on a reload): under slow_start its ramp
 * starts at its next pick. */
static void ramp_from_next_pick(struct balancer *b, int o)
{
    if (b->up->slow_start_ms) {
        atomic_store_explicit(&b->origins[o].ramp_turns, 0, memory_order_relaxed);
        atomic_store_explicit(&b->origins[o].ramp_runs, 0, memory_order_relaxed);
        atomic_store_explicit(&b->origins[o].ramp_until_ms, RAMP_PENDING, memory_order_relaxed);
    }
}

/* Whether a is less busy than c relative to their weights at now: in_flight/weight compared. */
static bool less_busy(struct balancer *b, int a, int c, uint64_t now_ms)
{
    uint64_t fa = slot_count_in_flight(b->origins[a].count);
    uint64_t fc = slot_count_in_flight(b->origins[c].count);
    return fa * weight_now(b, c, now_ms) < fc * weight_now(b, a, now_ms);
}

/* Whether any origin outside exclude may take an attempt at now. */
static bool any_usable(const struct balancer *b, uint64_t now_ms, uint32_t exclude)
{
    for (int o = 0; o < b->up->norigins; o++)
        if (!(exclude & (1u << o)) && usable(b, o, now_ms))
            return true;
    return false;
}

/* The first usable origin outside exclude in the cycle from the current turn on, which it does
 * not take. */
static int turn_at(struct balancer *b, uint64_t now_ms, uint32_t exclude)
{
    unsigned start = atomic_load_explicit(&b->next, memory_order_relaxed);
    for (unsigned i = 0; i < b->ncycle; i++) {
        int o = b->cycle[(start + i) % b->ncycle];
        if (!(exclude & (1u << o)) && usable(b, o, now_ms))
            return o;
    }
    return -1;
}

/* The origin of the next turn of the shared cycle that is usable and outside exclude, or -1.
 * Each turn looked at is taken from the shared position, the skipped ones too: a down origin's
 * turns then go round the others by weight. Walking the cycle from one taken turn instead gave
 * all of them to the origin after it (4 equal origins, one down: 5000 2500 2500 of 10,000).
 * ramped: a ramping origin's turn may pass on too (slow_start). */
__attribute__((always_inline)) static inline int turn_walk(struct balancer *b, uint64_t now_ms,
                                                         uint32_t exclude, bool ramped)
{
    for (unsigned i = 0; i < b->ncycle; i++) {
        unsigned turn = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
        int o = b->cycle[turn % b->ncycle];
        if (!(exclude & (1u << o)) && usable(b, o, now_ms) &&
            (!ramped || ramp_takes_turn(b, o, now_ms)))
            return o;
        if (i == 0 && !any_usable(b, now_ms, exclude))
            return -1; /* every origin down: no walk over the whole cycle */
    }
    return turn_at(b, now_ms, exclude); /* other threads took the turns between ours */
}

/* turn_walk under slow_start or changed weights: a function of its own, so that the walk
 * without it keeps its registers (the call inside cost every pick 8 instructions). */
__attribute__((noinline)) static int ramped_turn(struct balancer *b, uint64_t now_ms,
                                                 uint32_t exclude)
{
    return turn_walk(b, now_ms, exclude, true);
}

static int next_turn(struct balancer *b, uint64_t now_ms, uint32_t exclude)
{
    return atomic_load_explicit(&b->shares_turns, memory_order_relaxed)
               ? ramped_turn(b, now_ms, exclude)
               : turn_walk(b, now_ms, exclude, false);
}

/* The least busy usable origin outside exclude; ties go to the first in index order from start,
 * whose turn it is. Under slow_start a ramping origin whose turn it is not runs in its ramp's
 * share of the picks only (its own count, ramp_runs: its turns' count is the tie's): idle beside
 * a busy origin, it was the least busy at every pick, its ramp's weight no help (0 in flight is
 * less than any share of one). It is taken still when no other is usable. */
static int least_busy(struct balancer *b, uint64_t now_ms, uint32_t exclude, unsigned start)
{
    int n = b->up->norigins, best = -1, passed = -1;
    for (int i = 0; i < n; i++) {
        int o = (int)((start + (unsigned)i) % (unsigned)n);
        if ((exclude & (1u << o)) || !usable(b, o, now_ms))
            continue;
        if (b->ramps && i > 0 && !ramp_takes(b, o, &b->origins[o].ramp_runs, now_ms)) {
            passed = passed < 0 ? o : passed;
            continue;
        }
        if (best < 0 || less_busy(b, o, best, now_ms))
            best = o;
    }
    return best >= 0 ? best : passed;
}

/* One origin of the usable ones outside exclude, drawn with probability weight / total. The
 * usable ones are read once: read again for the walk, an origin another thread took out
 * meanwhile (its probe taken, marked down, its check failing) left the walk short of the draw,
 * and the pick found none, 503 no_healthy_origin beside origins up. take() has the last word. */
static int draw(struct balancer *b, uint64_t now_ms, uint32_t exclude, uint32_t r)
{
    int n = b->up->norigins;
    uint64_t total = 0, weights[CFG_MAX_ORIGINS];
    uint32_t in = 0;
    for (int o = 0; o < n; o++) {
        if (!(exclude & (1u << o)) && usable(b, o, now_ms)) {
            in |= 1u << o;
            weights[o] = weight_now(b, o, now_ms); /* read once, as usable is */
            total += weights[o];
        }
    }
    if (total == 0)
        return -1;
    uint64_t at = r % total;
    for (int o = 0; o < n; o++) {
        if (!(in & (1u << o)))
            continue;
        if (at < weights[o])
            return o;
        at -= weights[o];
    }
    return -1; /* not reached: the weights of `in` add up to total */
}

/* balancer_pick among the origins outside exclude (their listings included), a retry's or a
 * first attempt's. */
__attribute__((always_inline)) static inline int pick_among(struct balancer *b, uint64_t now_ms,
                                                          uint64_t rnd, uint32_t exclude,
                                                          bool retry, uint64_t *probe)
{
    /* A retry (origins already tried) takes no turn of the cycle: it goes to the origin whose
     * turn comes, and so does the next request. Taking one put the next request back on the
     * origin that failed: with one refusing origin of two, every request tried it first. */
    int (*turn)(struct balancer *, uint64_t, uint32_t) = retry ? turn_at : next_turn;
    /* A candidate another thread takes first (the probe of a DOWN origin) is left out and the
     * choice made again: at most once per origin. */
    for (int tries = 0; tries < b->up->norigins; tries++) {
        int o;
        if (b->up->balance == BALANCE_ROUND_ROBIN || b->up->balance == BALANCE_HASH) {
            o = turn(b, now_ms, exclude);
        } else if (b->up->balance == BALANCE_LEAST_CONN) {
            /* Ties start at this turn's origin of the weighted cycle: idle origins (the usual
             * case at low load) then share the requests by weight, as round_robin does. */
            int first = turn(b, now_ms, exclude);
            o = first < 0 ? -1 : least_busy(b, now_ms, exclude, (unsigned)first);
        } else {
            o = draw(b, now_ms, exclude, (uint32_t)rnd);
            int other = o < 0 ? -1 : draw(b, now_ms, exclude | (1u << o), (uint32_t)(rnd >> 32));
            if (other >= 0 && less_busy(b, other, o, now_ms))
                o = other;
            rnd = rnd * 6364136223846793005u + 1442695040888963407u; /* the next draw differs */
        }
        if (o < 0)
            return -1;
        if (take(b, o, now_ms, probe))
            return o;
        exclude |= 1u << o;
    }
    return -1;
}

/* pick_among in an upstream with backups: the backups when no primary will do, a retry after
 * the last primary failed included (as nginx's backup servers take the tries the primaries
 * could not). No primary usable is asked first, so that a pick among none takes no turn of the
 * cycle (the turn after a backup's is a primary's: each request then took the same backup's). */
__attribute__((noinline)) static int pick_tier(struct balancer *b, uint64_t now_ms, uint64_t rnd,
                                               uint32_t exclude, bool retry, uint64_t *probe)
{
    if (any_usable(b, now_ms, exclude | b->backups)) {
        int o = pick_among(b, now_ms, rnd, exclude | b->backups, retry, probe);
        if (o >= 0)
            return o; /* else the primaries went between any_usable and the pick */
    }
    return pick_among(b, now_ms, rnd, exclude | b->primaries, retry, probe);
}

int balancer_pick(struct balancer *b, uint64_t now_ms, uint64_t rnd, uint32_t exclude,
                  uint64_t *probe)
{
    uint64_t probe_unwanted;
    if (!probe)
        probe = &probe_unwanted;
    *probe = 0;
    bool retry = exclude != 0;
    /* An origin tried is tried at every listing of its address: a retry on the second listing
     * of a refusing origin (a weight by repetition) failed again while another answered. */
    exclude = balancer_listings(b, exclude) |
              atomic_load_explicit(&b->out, memory_order_relaxed); /* drained, in maint */
    if (b->backups) /* a call of its own: without backups a pick pays a load and a branch */
        return pick_tier(b, now_ms, rnd, exclude, retry, probe);
    return pick_among(b, now_ms, rnd, exclude, retry, probe);
}

int balancer_pick_origin(struct balancer *b, uint64_t now_ms, int origin, uint32_t exclude,
                         uint64_t *probe)
{
    uint64_t probe_unwanted;
    if (!probe)
        probe = &probe_unwanted;
    *probe = 0;
    uint32_t mine = balancer_listings(b, 1u << origin); /* its listings are one origin */
    /* a drained origin keeps its sticky clients (HAProxy's drain); one in maint takes none */
    exclude = balancer_listings(b, exclude) |
              atomic_load_explicit(&b->maint, memory_order_relaxed);
    if (exclude & mine)
        return BALANCE_PICK_UNUSABLE;
    /* a backup only when the pick would take backups: no primary outside exclude usable */
    if ((mine & b->backups) &&
        any_usable(b, now_ms,
                   exclude | b->backups | atomic_load_explicit(&b->out, memory_order_relaxed)))
        return BALANCE_PICK_UNUSABLE;
    int o = pick_among(b, now_ms, 0, ~mine, true, probe); /* a retry's: no turn of the cycle */
    if (o >= 0)
        return o;
    return room_of(b, now_ms, ~mine, true) == BALANCE_ROOM_FULL ? BALANCE_PICK_FULL
                                                          : BALANCE_PICK_UNUSABLE;
}

/* The origin of the first point at or after key on the ring that is usable and outside
 * exclude (which it does not take), or -1: one binary search, then a walk that ends at the
 * first origin that will do, or once every origin was seen. */
static int ring_next(const struct balancer *b, uint64_t now_ms, uint32_t key, uint32_t exclude)
{
    unsigned lo = 0, hi = b->npoints;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (b->ring[mid].at < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    int n = b->up->norigins;
    uint32_t all = n >= 32 ? UINT32_MAX : (1u << n) - 1, seen = exclude & all;
    for (unsigned i = 0; i < b->npoints && seen != all; i++) {
        unsigned at = lo + i < b->npoints ? lo + i : lo + i - b->npoints; /* round the circle */
        int o = (int)b->ring[at].origin;
        if (seen & (1u << o))
            continue;
        if (usable(b, o, now_ms))
            return o;
        seen |= 1u << o;
    }
    return -1;
}

/* The first origin on key's walk of the ring outside exclude that it takes, or -1. */
static int ring_pick(struct balancer *b, uint64_t now_ms, uint64_t key, uint32_t exclude,
                     uint64_t *probe)
{
    for (int tries = 0; tries < b->up->norigins; tries++) {
        int o = ring_next(b, now_ms, (uint32_t)(key >> 32), exclude);
        if (o < 0)
            return -1;
        if (take(b, o, now_ms, probe))
            return o;
        exclude |= 1u << o; /* another thread took its probe first */
    }
    return -1;
}

int balancer_pick_hash(struct balancer *b, uint64_t now_ms, uint64_t key, uint32_t exclude,
                       uint64_t *probe)
{
    uint64_t probe_unwanted;
    if (!probe)
        probe = &probe_unwanted;
    *probe = 0;
    if (!b->npoints) /* not an upstream of balance = hash */
        return balancer_pick(b, now_ms, key, exclude, probe);
    /* the points of an origin out are passed over: its keys go to the next point's origin,
     * the others' keys stay where they were */
    exclude = balancer_listings(b, exclude) | atomic_load_explicit(&b->out, memory_order_relaxed);
    /* the backups' points are passed over while a primary will do, as pick_tier's turns are */
    if (b->backups && !any_usable(b, now_ms, exclude | b->backups))
        return ring_pick(b, now_ms, key, exclude | b->primaries, probe);
    int o = ring_pick(b, now_ms, key, exclude | b->backups, probe);
    return o >= 0 || !b->backups ? o : ring_pick(b, now_ms, key, exclude | b->primaries, probe);
}

unsigned balancer_ring_points(const struct balancer *b)
{
    return b->npoints;
}

/* ---- health ---- */

/* Marks origin o down from the state word `from` (UP, or PROBING by the probe that failed);
 * status is the answer that failed last (0: a network failure), named in the log line. */
static void mark_down(struct balancer *b, int o, uint64_t now_ms, uint64_t from, unsigned fails,
                      int status)
{
    const struct upstream_conf *up = b->up;
    struct origin_slot *s = &b->origins[o];
    uint64_t expected = from;
    atomic_store_explicit(&s->down_until_ms, now_ms + up->down_time_ms, memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&s->state, &expected,
                                                 state_word(ORIGIN_DOWN, from >> STATE_BITS),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return; /* another thread got there first, and said so */
    atomic_store_explicit(&s->down_status, (uint16_t)status, memory_order_relaxed);
    if (b->queue) /* its waiters that have no other origin now fail, or take another's slot */
        queue_rescan(b, now_ms);
    /* "answered 500 (fail_on); " when an answer, not the network, tipped it */
    char answered[64] = "";
    if (status)
        snprintf(answered, sizeof(answered), "answered %d (%s)%s", status,
                 retry_on_listed(up->fail_on, status) ? "fail_on" : "retry_on",
                 (from & STATE_MASK) == ORIGIN_PROBING ? " to" : ";");
    if ((from & STATE_MASK) == ORIGIN_PROBING)
        log_warn("upstream %s: origin %s %s its probe after down_time; down for another "
                 "%llu ms", up->name, up->origins[o].text, status ? answered : "failed",
                 (unsigned long long)up->down_time_ms);
    else
        log_warn("upstream %s: origin %s %s%smarked down for %llu ms after %u failure%s within "
                 "%llu ms", up->name, up->origins[o].text, answered, status ? " " : "",
                 (unsigned long long)up->down_time_ms, fails, fails == 1 ? "" : "s",
                 (unsigned long long)up->fail_window_ms);
}

/* A network failure: counted within fail_window; a failed probe is down again at once. Another
 * attempt's failure while the probe is out is left to the probe: marking the origin down again
 * let the next request past down_time probe it beside the first. So is the failure of a probe
 * of an earlier down_time (probe names it, not the one out). */
static void count_failure(struct balancer *b, int o, uint64_t probe, uint64_t now_ms, int status)
{
    const struct upstream_conf *up = b->up;
    struct origin_slot *s = &b->origins[o];
    uint64_t word = atomic_load_explicit(&s->state, memory_order_acquire);
    enum origin_state st = (enum origin_state)(word & STATE_MASK);
    if (up->max_fails == 0 || st == ORIGIN_DOWN)
        return;
    if (st == ORIGIN_PROBING) {
        if (word == state_word(ORIGIN_PROBING, probe))
            mark_down(b, o, now_ms, word, 0, status);
        return;
    }
    unsigned fails;
    uint64_t start = atomic_load_explicit(&s->window_start_ms, memory_order_relaxed);
    if (atomic_load_explicit(&s->fails, memory_order_relaxed) == 0 ||
        (now_ms > start && now_ms - start >= up->fail_window_ms)) {
        /* the window starts with this failure: older ones are too old to count */
        atomic_store_explicit(&s->window_start_ms, now_ms, memory_order_relaxed);
        atomic_store_explicit(&s->fails, 1, memory_order_relaxed);
        fails = 1;
    } else {
        fails = atomic_fetch_add_explicit(&s->fails, 1, memory_order_relaxed) + 1;
    }
    if (fails >= up->max_fails) {
        atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
        mark_down(b, o, now_ms, word, fails, status);
    }
}

/* The origin answered: its count starts over, and a DOWN or PROBING origin is up again. */
static void answered(struct balancer *b, int o)
{
    struct origin_slot *s = &b->origins[o];
    if (atomic_load_explicit(&s->fails, memory_order_relaxed)) /* no store on the hot path */
        atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
    if (state_of(s) == ORIGIN_UP)
        return;
    /* up, the probe number kept: a probe still out is an older attempt from now on */
    _Static_assert(ORIGIN_UP == 0, "clearing the state bits makes the word UP");
    uint64_t was = atomic_fetch_and_explicit(&s->state, ~STATE_MASK, memory_order_acq_rel);
    if ((was & STATE_MASK) != ORIGIN_UP) {
        ramp_from_next_pick(b, o);
        if (b->queue) /* its free slots go to the waiters first, not to the next pick */
            queue_rescan(b, event_now_us() / 1000);
        log_info("upstream %s: origin %s answered; back up", b->up->name,
                 b->up->origins[o].text);
    }
}

void balancer_answered(struct balancer *b, int origin)
{
    if (origin >= 0 && origin < b->up->norigins)
        answered(b, origin);
}

/* What an attempt on origin that ended with r says of its health (balancer_done). */
static inline void verdict(struct balancer *b, int origin, uint64_t probe,
                           enum balance_result r, uint64_t now_ms)
{
    struct origin_slot *s = &b->origins[origin];
    switch (r) {
    case BALANCE_ANSWERED:
        answered(b, origin);
        break;
    case BALANCE_FAILED:
        count_failure(b, origin, probe, now_ms, 0);
        break;
    case BALANCE_NO_VERDICT: {
        /* A probe that showed nothing gives its turn to the next attempt (down_time is over).
         * Only the probe: each client that left an attempt picked before the origin went down
         * let one more request probe it, all of them at once (8 beside the probe here). */
        uint64_t probing = state_word(ORIGIN_PROBING, probe);
        if (probe)
            atomic_compare_exchange_strong_explicit(&s->state, &probing,
                                                    state_word(ORIGIN_DOWN, probe),
                                                    memory_order_acq_rel, memory_order_relaxed);
        break;
    }
    default: /* an answer whose status counts as a failure: the status is the result */
        count_failure(b, origin, probe, now_ms, (int)r);
        break;
    }
}

void balancer_done(struct balancer *b, int origin, uint64_t probe, enum balance_result r,
                   uint64_t now_ms)
{
    if (origin < 0 || origin >= b->up->norigins)
        return;
    if (__builtin_expect(b->queue != NULL, 0)) {
        done_limited(b, origin, probe, r, now_ms);
        return;
    }
    atomic_fetch_sub_explicit(&b->origins[origin].count->in_flight, 1, memory_order_relaxed);
    verdict(b, origin, probe, r, now_ms);
}

void balancer_release(struct balancer *b, int origin)
{
    if (origin < 0 || origin >= b->up->norigins)
        return;
    if (__builtin_expect(b->queue != NULL, 0))
        slot_free(b, origin);
    else
        atomic_fetch_sub_explicit(&b->origins[origin].count->in_flight, 1, memory_order_relaxed);
}

/* The run of checks ending with one that ended as cs: one longer, or a new run of one. Capped
 * (a check a millisecond would take 24 days to reach it). */
static int run_after(int run, enum check_state cs)
{
    if (cs == CHECK_PASSING)
        return run > 0 ? (run < INT_MAX ? run + 1 : run) : 1;
    return run < 0 ? (run > -INT_MAX ? run - 1 : run) : -1;
}

void balancer_check(struct balancer *b, int origin, enum check_state cs, const char *why)
{
    const struct upstream_conf *up = b->up;
    if (origin < 0 || origin >= up->norigins)
        return;
    struct origin_slot *s = &b->origins[origin];
    const char *name = up->origins[origin].text;
    /* Only the worker running this generation's checks writes check and checks_in_row: a load
     * and a store each, no read-modify-write. */
    int run = run_after(atomic_load_explicit(&s->checks_in_row, memory_order_relaxed), cs);
    atomic_store_explicit(&s->checks_in_row, run, memory_order_relaxed);
    unsigned in_row = (unsigned)(run < 0 ? -run : run);
    unsigned fall = MAX(up->health.fall, 1u), rise = MAX(up->health.rise, 1u);
    if (atomic_load_explicit(&s->check, memory_order_relaxed) == (int)cs)
        return; /* the verdict stands; a failing origin's failures were said when it went down */
    const char *reason = why ? why : "no reason";
    if (cs == CHECK_FAILING) {
        if (in_row < fall) { /* said, so that an origin about to go is seen going */
            log_warn("upstream %s: origin %s failed its health check (%s); %u of %u in a row, "
                     "not marked down yet", up->name, name, reason, in_row, fall);
            return;
        }
        /* marked down before it is said: a client that read the line finds it down */
        atomic_store_explicit(&s->check, CHECK_FAILING, memory_order_relaxed);
        if (b->queue)
            queue_rescan(b, event_now_us() / 1000);
        if (fall == 1)
            log_warn("upstream %s: origin %s failed its health check (%s); marked down",
                     up->name, name, reason);
        else
            log_warn("upstream %s: origin %s failed its health check (%s); %u in a row, marked "
                     "down", up->name, name, reason, in_row);
        return;
    }
    if (in_row < rise) {
        log_info("upstream %s: origin %s passed its health check; %u of %u in a row, still down",
                 up->name, name, in_row, rise);
        return;
    }
    ramp_from_next_pick(b, origin); /* before it is usable: its first pick starts the ramp */
    atomic_store_explicit(&s->check, CHECK_PASSING, memory_order_relaxed);
    if (b->queue)
        queue_rescan(b, event_now_us() / 1000);
    /* Passive health is left alone: it judges requests, and a check passing between them
     * started its count over (and ended its down_time), so an origin that answers /healthz
     * while its requests time out was never marked down with checks more frequent than the
     * failures. It takes requests once both agree. */
    const char *state =
        state_of(s) == ORIGIN_UP ? "up" : "still down by passive health (down_time)";
    if (rise == 1)
        log_info("upstream %s: origin %s passed its health check; %s", up->name, name, state);
    else
        log_info("upstream %s: origin %s passed its health check; %u in a row, %s", up->name,
                 name, in_row, state);
}

/* Whether two upstreams ask their origins the same health question (a verdict of one stands
 * for the other). */
static bool same_check(const struct health_check_conf *a, const struct health_check_conf *c)
{
    return a->interval_ms && c->interval_ms && strcmp(a->method, c->method) == 0 &&
           strcmp(a->path, c->path) == 0 && a->expect_lo == c->expect_lo &&
           a->expect_hi == c->expect_hi;
}

/* The origin of from's upstream listed as origins[o] of b's, or -1. */
static int same_origin(const struct balancer *b, const struct balancer *from, int o)
{
    const struct origin_conf *oc = &b->up->origins[o];
    for (int f = 0; f < from->up->norigins; f++)
        if (!oc->is_sim && strcmp(from->up->origins[f].text, oc->text) == 0)
            return f;
    return -1;
}

/* A reload: origin o of b ramps on from where old was in its ramp (a pending one stays
 * pending), for at most b's slow_start from now. */
static void inherit_ramp(struct balancer *b, int o, const struct origin_slot *old,
                         uint64_t now_ms)
{
    uint64_t until = atomic_load_explicit(&old->ramp_until_ms, memory_order_relaxed);
    if (!b->up->slow_start_ms || until == 0 || (until != RAMP_PENDING && until <= now_ms))
        return;
    if (until != RAMP_PENDING)
        until = MIN(until, now_ms + b->up->slow_start_ms);
    atomic_store_explicit(&b->origins[o].ramp_until_ms, until, memory_order_relaxed);
}

void balancer_inherit(struct balancer *b, const struct balancer *from, uint64_t now_ms)
{
    const struct upstream_conf *up = b->up;
    bool check = same_check(&up->health, &from->up->health);
    for (int o = 0; o < up->norigins; o++) {
        int f = same_origin(b, from, o);
        if (f < 0) { /* new to the upstream: cold, as one back from down */
            ramp_from_next_pick(b, o);
            continue;
        }
        const struct origin_slot *old = &from->origins[f];
        struct origin_slot *s = &b->origins[o];
        inherit_ramp(b, o, old, now_ms);
        if (check) { /* the run too: the next check counts on toward the new rise or fall */
            atomic_store_explicit(&s->check, atomic_load_explicit(&old->check,
                                                                  memory_order_relaxed),
                                  memory_order_relaxed);
            atomic_store_explicit(&s->checks_in_row,
                                  atomic_load_explicit(&old->checks_in_row, memory_order_relaxed),
                                  memory_order_relaxed);
        }
        if (up->max_fails == 0) /* passive health off: nothing would bring a DOWN origin back */
            continue;
        atomic_store_explicit(&s->fails, atomic_load_explicit(&old->fails, memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&s->window_start_ms,
                              atomic_load_explicit(&old->window_start_ms, memory_order_relaxed),
                              memory_order_relaxed);
        enum origin_state st = state_of(old);
        if (st == ORIGIN_UP)
            continue;
        /* Down for what is left of its down_time (at most the new one); a probe in flight
         * belongs to the old workers, so a probing origin is probed again by the new ones. */
        uint64_t until = st == ORIGIN_PROBING
                             ? now_ms
                             : atomic_load_explicit(&old->down_until_ms, memory_order_relaxed);
        atomic_store_explicit(&s->down_until_ms, MIN(until, now_ms + up->down_time_ms),
                              memory_order_relaxed);
        atomic_store_explicit(&s->down_status, /* why it is down, for /status */
                              atomic_load_explicit(&old->down_status, memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&s->state, state_word(ORIGIN_DOWN, 0), memory_order_release);
    }
}

uint32_t balancer_listings(const struct balancer *b, uint32_t origins)
{
    uint32_t all = origins;
    for (int o = 0; o < b->up->norigins; o++)
        if (origins & (1u << o))
            all |= b->origins[o].same;
    return all;
}

bool balancer_origin_down(const struct balancer *b, int origin)
{
    if (origin < 0 || origin >= b->up->norigins)
        return false;
    const struct origin_slot *s = &b->origins[origin];
    return state_of(s) != ORIGIN_UP ||
           atomic_load_explicit(&s->check, memory_order_relaxed) == CHECK_FAILING;
}

enum origin_state balancer_origin_state(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins ? state_of(&b->origins[origin]) : ORIGIN_UP;
}

int balancer_down_status(const struct balancer *b, int origin)
{
    if (origin < 0 || origin >= b->up->norigins)
        return 0;
    return atomic_load_explicit(&b->origins[origin].down_status, memory_order_relaxed);
}

enum check_state balancer_check_state(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins
               ? (enum check_state)atomic_load_explicit(&b->origins[origin].check,
                                                        memory_order_relaxed)
               : CHECK_PASSING;
}

int balancer_checks_in_row(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins
               ? atomic_load_explicit(&b->origins[origin].checks_in_row, memory_order_relaxed)
               : 0;
}

void balancer_checks_stopped(struct balancer *b, int origin, bool stopped)
{
    if (origin >= 0 && origin < b->up->norigins)
        atomic_store_explicit(&b->origins[origin].checks_stopped, stopped, memory_order_relaxed);
}

bool balancer_checks_are_stopped(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins &&
           atomic_load_explicit(&b->origins[origin].checks_stopped, memory_order_relaxed);
}

unsigned balancer_in_flight(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins
               ? slot_count_in_flight(b->origins[origin].count)
               : 0;
}

unsigned balancer_max_conns(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins
               ? atomic_load_explicit(&slot_count_live(b->origins[origin].count)->max,
                                      memory_order_relaxed)
               : 0;
}

/* ---- max_conns and the queue ----
 *
 * An origin with max_conns takes an attempt only while fewer than that many are in flight on it
 * (claim_slot, a compare-and-swap on in_flight: every worker's attempts count). When every usable
 * origin is full the request waits in its upstream's queue, one FIFO list shared by the workers
 * under a mutex. A slot that frees goes straight to the oldest waiter that may use it: in_flight
 * stays, the waiter's origin is set and its wake called (a post to its worker's wakebox: an
 * eventfd its loop wakes on, no polling tick). Handing the slot over, rather than
 * freeing it for whoever picks next, keeps the order FIFO: a new request finds no room while
 * anyone waits for it. Slots of a limited upstream are freed under the mutex, and a request
 * queues under it only once it saw no room there, so no wake is lost between the two. An origin
 * going down or back up walks the queue again (queue_rescan): free slots go to the waiters, and
 * a waiter left with no usable origin is woken without one (no_healthy_origin).
 *
 * Across a reload the counts are shared (balancer_share, slotshare.h): the generations of an
 * upstream take one lock, the share's, for their queues, so a slot one frees may go to another's
 * waiter (the oldest generation's first) with no lock order between queues. A count over its
 * max_conns (the new file lowered it) goes down on a free instead of handing the slot on. A
 * listing the new file dropped of an origin it still lists is drained into the origin's first
 * listing (slot_share_drain), so every access here goes through slot_count_live.
 */

struct balance_queue {
    pthread_mutex_t *lock;             /* own_lock, or the share's (balancer_share) */
    pthread_mutex_t own_lock;
    struct balance_waiter *head, *tail; /* oldest first */
    _Atomic unsigned length;           /* waiters in the list (read without the lock: metrics) */
};

static struct balance_queue *queue_new(void)
{
    struct balance_queue *q = calloc(1, sizeof(*q));
    if (q && pthread_mutex_init(&q->own_lock, NULL) != 0) {
        free(q);
        return NULL;
    }
    if (q)
        q->lock = &q->own_lock;
    return q;
}

static void queue_free(struct balance_queue *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->own_lock);
    free(q);
}

/* Counts an attempt on o against its max_conns: false when the origin is full. A count drained
 * meanwhile (slot_share_drain: its in_flight SLOT_DRAINED) fails the compare-and-swap, and the
 * claim goes on the count it went into. */
static bool claim_slot(struct balancer *b, int o)
{
    for (;;) {
        struct slot_count *c = slot_count_live(b->origins[o].count);
        unsigned max = atomic_load_explicit(&c->max, memory_order_relaxed);
        unsigned now = atomic_load_explicit(&c->in_flight, memory_order_acquire);
        while (now != SLOT_DRAINED && (!max || now < max))
            if (atomic_compare_exchange_weak_explicit(&c->in_flight, &now, now + 1,
                                                      memory_order_acquire, memory_order_acquire))
                return true;
        if (now != SLOT_DRAINED)
            return false;
    }
}

/* take() of a limited upstream: a slot of o claimed under max_conns (false: full, which is no
 * failure), then the probe's turn as without a limit. */
static bool take_limited(struct balancer *b, int o, uint64_t *probe)
{
    if (!claim_slot(b, o))
        return false;
    if (take_probe(b, o, probe))
        return true;
    slot_free(b, o); /* the probe was another's: the slot goes back, or to a waiter */
    return false;
}

/* balancer_done of a limited upstream: the verdict first, so that a slot handed on does not go
 * to an origin this attempt found down; then the slot. */
static void done_limited(struct balancer *b, int origin, uint64_t probe, enum balance_result r,
                         uint64_t now_ms)
{
    verdict(b, origin, probe, r, now_ms);
    slot_free(b, origin);
}

/* Whether a waiter may be handed a slot of o: up by both healths (a probe is a pick's to take). */
static bool hands_over(const struct balancer *b, int o)
{
    const struct origin_slot *s = &b->origins[o];
    return state_of(s) == ORIGIN_UP &&
           atomic_load_explicit(&s->check, memory_order_relaxed) != CHECK_FAILING;
}

/* The origins the admin API took out for a request: in maint for a sticky one (pinned: a
 * drained origin keeps its sticky clients), drained too for any other. */
static uint32_t admin_out(const struct balancer *b, bool pinned)
{
    return atomic_load_explicit(pinned ? &b->maint : &b->out, memory_order_relaxed);
}

static void unlink_waiter(struct balance_queue *q, struct balance_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
    atomic_fetch_sub_explicit(&q->length, 1, memory_order_relaxed);
}

/* The oldest waiter of b that may take its origin o, or NULL. */
static struct balance_waiter *waiter_for(const struct balancer *b, int o)
{
    if (!b->queue || !hands_over(b, o))
        return NULL;
    struct balance_waiter *w = b->queue->head;
    while (w && ((balancer_listings(b, w->exclude) | admin_out(b, w->pinned)) & (1u << o)))
        w = w->next;
    return w;
}

/* b's origin counting on c (its own count, or one drained into c), or -1. */
static int origin_counting(const struct balancer *b, const struct slot_count *c)
{
    for (int o = 0; o < b->up->norigins; o++)
        if (slot_count_live(b->origins[o].count) == c)
            return o;
    return -1;
}

/* The oldest waiter that may take the slot of c, among the generations sharing it (oldest
 * generation first: its waiters came before any of a newer one's), with its balancer and its
 * origin counting on c; NULL when none. Under the share's lock, which every member's waiters
 * and frees take: a member is not freed meanwhile, nor is a waiter still in its queue. */
static struct balance_waiter *shared_waiter_for(const struct balancer *b,
                                                const struct slot_count *c,
                                                struct balancer **to, int *to_origin)
{
    for (struct slot_member *m = slot_share_oldest(b->share); m; m = m->next) {
        struct balancer *other = m->owner;
        int o;
        struct balance_waiter *w;
        if (other->queue && other->queue->head && (o = origin_counting(other, c)) >= 0 &&
            (w = waiter_for(other, o))) {
            *to = other;
            *to_origin = o;
            return w;
        }
    }
    return NULL;
}

/* An attempt on o ended: its slot goes to the oldest waiter that may take o, else back. A
 * count above its max (a reload lowered it) goes down first: the slot is no free one. */
static void slot_free(struct balancer *b, int o)
{
    struct balance_queue *q = b->queue;
    pthread_mutex_lock(q->lock);
    struct slot_count *c = slot_count_live(b->origins[o].count); /* drains take the lock too */
    unsigned max = atomic_load_explicit(&c->max, memory_order_relaxed);
    struct balancer *to = b;
    int to_origin = o;
    struct balance_waiter *w = NULL;
    if (!max || atomic_load_explicit(&c->in_flight, memory_order_relaxed) <= max)
        w = b->share ? shared_waiter_for(b, c, &to, &to_origin) : waiter_for(b, o);
    if (w) {
        unlink_waiter(to->queue, w);
        w->origin = to_origin;
        w->wake(w); /* under the lock: the waiter cannot leave before it is told */
    } else {
        atomic_fetch_sub_explicit(&c->in_flight, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(q->lock);
}

/* An origin went down or came back up: each waiter, oldest first, is handed a free slot of an
 * origin it may take, or, when no origin outside its exclude is usable any more, woken without
 * one (origin -1: no_healthy_origin, as a new request gets). A slot is otherwise handed over
 * only as one frees: waiters of an origin gone down waited out their queue_timeout, and those
 * of one back up (its slots all free) waited while new requests took them. */
static void rescan_locked(struct balancer *b, uint64_t now_ms)
{
    struct balance_queue *q = b->queue;
    for (struct balance_waiter *w = q->head, *next; w; w = next) {
        next = w->next;
        uint32_t exclude = balancer_listings(b, w->exclude) | admin_out(b, w->pinned);
        int slot = -1;
        bool any = false;
        for (int o = 0; o < b->up->norigins && slot < 0; o++) {
            if ((exclude & (1u << o)) || !usable(b, o, now_ms))
                continue;
            any = true;
            if (hands_over(b, o) && claim_slot(b, o))
                slot = o;
        }
        if (slot >= 0 || !any) {
            unlink_waiter(q, w);
            w->origin = slot;
            w->wake(w);
        }
    }
}

static void queue_rescan(struct balancer *b, uint64_t now_ms)
{
    pthread_mutex_lock(b->queue->lock);
    rescan_locked(b, now_ms);
    pthread_mutex_unlock(b->queue->lock);
}

/* What the origins outside exclude offer: a free slot, only full ones, or none usable.
 * pinned: a sticky request's, which a drained origin still takes. */
static enum balance_room room_of(const struct balancer *b, uint64_t now_ms, uint32_t exclude,
                                 bool pinned)
{
    enum balance_room room = BALANCE_ROOM_NONE;
    exclude = balancer_listings(b, exclude) | admin_out(b, pinned);
    for (int o = 0; o < b->up->norigins; o++) {
        if ((exclude & (1u << o)) || !usable(b, o, now_ms))
            continue;
        struct slot_count *c = slot_count_live(b->origins[o].count);
        unsigned max = atomic_load_explicit(&c->max, memory_order_relaxed);
        if (!max || slot_count_in_flight(c) < max)
            return BALANCE_ROOM_FREE;
        room = BALANCE_ROOM_FULL;
    }
    return room;
}

bool balancer_limited(const struct balancer *b)
{
    return b->queue != NULL;
}

enum balance_room balancer_room(const struct balancer *b, uint64_t now_ms, uint32_t exclude)
{
    return room_of(b, now_ms, exclude, false);
}

enum balance_room balancer_queue(struct balancer *b, struct balance_waiter *w, uint64_t now_ms)
{
    struct balance_queue *q = b->queue;
    if (!q)
        return room_of(b, now_ms, w->exclude, w->pinned);
    pthread_mutex_lock(q->lock);
    enum balance_room room = room_of(b, now_ms, w->exclude, w->pinned);
    if (room == BALANCE_ROOM_FULL) {
        if (atomic_load_explicit(&q->length, memory_order_relaxed) >= b->up->max_queue) {
            room = BALANCE_ROOM_QUEUE_FULL;
        } else {
            w->origin = -1;
            w->next = NULL;
            w->prev = q->tail;
            if (q->tail)
                q->tail->next = w;
            else
                q->head = w;
            q->tail = w;
            w->queued = true;
            atomic_fetch_add_explicit(&q->length, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&b->tally->queued, 1, memory_order_relaxed);
            room = BALANCE_ROOM_QUEUED;
        }
    }
    pthread_mutex_unlock(q->lock);
    return room;
}

int balancer_unqueue(struct balancer *b, struct balance_waiter *w, bool timed_out)
{
    struct balance_queue *q = b->queue;
    if (!q)
        return -1;
    pthread_mutex_lock(q->lock);
    int o = w->origin;
    if (w->queued) {
        unlink_waiter(q, w);
        if (timed_out)
            atomic_fetch_add_explicit(&b->tally->queue_timeouts, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(q->lock);
    return o;
}

unsigned balancer_queue_length(const struct balancer *b)
{
    return b->queue ? atomic_load_explicit(&b->queue->length, memory_order_relaxed) : 0;
}

uint64_t balancer_queued_total(const struct balancer *b)
{
    return b->queue ? atomic_load_explicit(&b->tally->queued, memory_order_relaxed) : 0;
}

uint64_t balancer_queue_timeouts(const struct balancer *b)
{
    return b->queue ? atomic_load_explicit(&b->tally->queue_timeouts, memory_order_relaxed) : 0;
}

void balancer_sticky_count(struct balancer *b, unsigned outcome)
{
    if (outcome < BALANCE_STICKY_OUTCOMES)
        atomic_fetch_add_explicit(&b->tally->sticky[outcome], 1, memory_order_relaxed);
}

uint64_t balancer_sticky_total(const struct balancer *b, unsigned outcome)
{
    return outcome < BALANCE_STICKY_OUTCOMES
               ? atomic_load_explicit(&b->tally->sticky[outcome], memory_order_relaxed)
               : 0;
}

/* One tally when both share it (a copy would lose what the old generation counts meanwhile: a
 * waiter's timeout, a sticky request it still serves); carried over when max_conns gained or lost
 * made a new share, the old generation's later counts then its own. */
static void tally_copy(struct slot_tally *to, const struct slot_tally *from)
{
    for (unsigned r = 0; r < SLOT_TALLY_REFUSALS; r++)
        atomic_store_explicit(&to->refused[r], atomic_load(&from->refused[r]),
                              memory_order_relaxed);
    atomic_store_explicit(&to->queued, atomic_load(&from->queued), memory_order_relaxed);
    atomic_store_explicit(&to->queue_timeouts, atomic_load(&from->queue_timeouts),
                          memory_order_relaxed);
    for (unsigned s = 0; s < SLOT_TALLY_STICKY; s++)
        atomic_store_explicit(&to->sticky[s], atomic_load(&from->sticky[s]),
                              memory_order_relaxed);
}

void balancer_inherit_queue(struct balancer *b, const struct balancer *from)
{
    if (b->tally != from->tally)
        tally_copy(b->tally, from->tally);
}

/* ---- retry_budget ---- */

bool balancer_retry_take(struct balancer *b, struct retry_budget_use *use)
{
    const struct upstream_conf *up = b->up;
    unsigned in_flight = 0;
    for (int o = 0; o < up->norigins; o++) { /* each listing has a count of its own */
        unsigned n = atomic_load_explicit(&b->origins[o].count->in_flight, memory_order_relaxed);
        in_flight += n != SLOT_DRAINED ? n : 0; /* a dropped listing's: in its first's now */
    }
    unsigned limit = retry_budget_limit(up->retry_budget_percent, (unsigned)up->retry_budget_min,
                                        in_flight);
    unsigned held = atomic_load_explicit(b->retries, memory_order_relaxed);
    do {
        if (held >= limit) {
            *use = (struct retry_budget_use){.held = held, .limit = limit,
                                             .percent = up->retry_budget_percent,
                                             .in_flight = in_flight};
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(b->retries, &held, held + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void balancer_retry_done(struct balancer *b)
{
    atomic_fetch_sub_explicit(b->retries, 1, memory_order_relaxed);
}

void balancer_retry_refused(struct balancer *b, enum retry_refusal why)
{
    if (why < RETRY_REFUSALS)
        atomic_fetch_add_explicit(&b->tally->refused[why], 1, memory_order_relaxed);
}

uint64_t balancer_retry_refused_total(const struct balancer *b, enum retry_refusal why)
{
    return why < RETRY_REFUSALS
               ? atomic_load_explicit(&b->tally->refused[why], memory_order_relaxed)
               : 0;
}

unsigned balancer_retries_in_flight(const struct balancer *b)
{
    return atomic_load_explicit(b->retries, memory_order_relaxed);
}

bool balancer_origin_is_backup(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins && (b->backups & (1u << origin));
}

unsigned balancer_weight_permille(const struct balancer *b, int origin, uint64_t now_ms)
{
    if (origin < 0 || origin >= b->up->norigins || !b->up->slow_start_ms)
        return RAMP_FULL;
    uint64_t until = atomic_load_explicit(&b->origins[origin].ramp_until_ms, memory_order_relaxed);
    return until == RAMP_PENDING ? 1 : ramp_share(b->up->slow_start_ms, until, now_ms);
}

/* ---- counts shared across generations (slotshare.h) ---- */

int balancer_share(struct balancer *b)
{
    const struct upstream_conf *up = b->up;
    struct slot_count *counts[CFG_MAX_ORIGINS];
    struct slot_share *s = slot_share_join(up->name, b->queue != NULL);
    if (!s)
        return -1;
    for (int o = 0; o < up->norigins; o++) {
        unsigned listing = 0;
        for (int f = 0; f < o; f++)
            listing += strcmp(up->origins[f].text, up->origins[o].text) == 0;
        counts[o] = slot_share_count(s, up->origins[o].text, listing, up->origins[o].max_conns);
        if (!counts[o]) {
            while (o-- > 0)
                slot_share_put(s, counts[o]);
            slot_share_leave(s, NULL);
            return -1;
        }
    }
    /* before it enters: the other members read its counts and queue under the share's lock */
    for (int o = 0; o < up->norigins; o++)
        b->origins[o].count = counts[o];
    if (b->queue)
        b->queue->lock = slot_share_lock(s);
    b->retries = slot_share_retries(s);
    _Static_assert(SLOT_TALLY_REFUSALS == RETRY_REFUSALS, "the tally counts every refusal");
    _Static_assert(SLOT_TALLY_STICKY == BALANCE_STICKY_OUTCOMES, "... and sticky outcome");
    b->tally = slot_share_tally(s);
    b->share = s;
    b->member.owner = b;
    slot_share_enter(s, &b->member);
    return 0;
}

void balancer_serve(struct balancer *b, uint64_t now_ms)
{
    if (!b->share)
        return;
    pthread_mutex_t *lock = slot_share_lock(b->share);
    pthread_mutex_lock(lock);
    for (int o = 0; o < b->up->norigins; o++)
        atomic_store_explicit(&b->origins[o].count->max, b->up->origins[o].max_conns,
                              memory_order_relaxed);
    /* a listing this file dropped of an origin it still lists counts under its first listing's
     * max_conns from now on (listed twice, then once: the origin held 2 under max_conns=1) */
    for (int o = 0; b->queue && o < b->up->norigins; o++)
        if ((b->origins[o].same & ((1u << o) - 1)) == 0) /* its first listing */
            slot_share_drain(b->share, b->up->origins[o].text,
                             (unsigned)__builtin_popcount(b->origins[o].same),
                             b->origins[o].count);
    /* a limit raised has free slots: the waiters of every generation take them first */
    for (struct slot_member *m = slot_share_oldest(b->share); m; m = m->next) {
        struct balancer *other = m->owner;
        if (other->queue)
            rescan_locked(other, now_ms);
    }
    pthread_mutex_unlock(lock);
}

/* ---- the admin API's state (origin_admin.c) ---- */

/* The admin masks and the round-robin turn scales again, from every origin's admin state and
 * weight. Weights lowered need nothing more than weight_now; a weight raised past its
 * configured one (the cycle was built from those) is the top share, and every other origin
 * takes its weight's part of that of its turns. */
static void admin_recompute(struct balancer *b)
{
    int n = b->up->norigins, top = -1;
    uint32_t out = 0, maint = 0;
    unsigned now[CFG_MAX_ORIGINS];
    for (int o = 0; o < n; o++) {
        const struct origin_slot *s = &b->origins[o];
        int a = atomic_load_explicit(&s->admin, memory_order_relaxed);
        now[o] = atomic_load_explicit(&s->weight, memory_order_relaxed);
        if (a != ORIGIN_ADMIN_READY || now[o] == 0)
            out |= 1u << o;
        if (a == ORIGIN_ADMIN_MAINT)
            maint |= 1u << o;
        /* the largest weight now over its configured one, among those the picks take: an
         * origin out would have the others pass turns for nothing */
        if (!(out & (1u << o)) && (top < 0 || (uint64_t)now[o] * weight_of(b, top) >
                                                  (uint64_t)now[top] * weight_of(b, o)))
            top = o;
    }
    bool scaled = false;
    for (int o = 0; o < n; o++) {
        uint64_t scale = SCALE_FULL;
        if (top >= 0 && now[o])
            scale = MAX(1, MIN(SCALE_FULL, (uint64_t)now[o] * weight_of(b, top) * SCALE_FULL /
                                               ((uint64_t)weight_of(b, o) * now[top])));
        scaled |= scale != SCALE_FULL;
        atomic_store_explicit(&b->origins[o].turn_scale, (uint32_t)scale, memory_order_relaxed);
    }
    atomic_store_explicit(&b->shares_turns, b->ramps || scaled, memory_order_relaxed);
    atomic_store_explicit(&b->maint, maint, memory_order_relaxed);
    atomic_store_explicit(&b->out, out, memory_order_relaxed);
}

enum origin_admin balancer_set_admin(struct balancer *b, int origin, enum origin_admin a,
                                     uint64_t now_ms)
{
    if (origin < 0 || origin >= b->up->norigins)
        return ORIGIN_ADMIN_READY;
    struct origin_slot *s = &b->origins[origin];
    enum origin_admin was = (enum origin_admin)atomic_exchange_explicit(&s->admin, (int)a,
                                                                        memory_order_relaxed);
    if (was == a)
        return was;
    /* out of maint it ramps as one back from down (HAProxy's slowstart); a drained origin kept
     * its sticky clients and its checks: it comes back whole */
    if (was == ORIGIN_ADMIN_MAINT)
        ramp_from_next_pick(b, origin);
    admin_recompute(b);
    if (b->queue) /* its waiters go elsewhere, or fail (none left); back, it takes them */
        queue_rescan(b, now_ms);
    return was;
}

int balancer_set_weight(struct balancer *b, int origin, unsigned weight, uint64_t now_ms)
{
    if (origin < 0 || origin >= b->up->norigins || weight > CFG_MAX_WEIGHT)
        return -1;
    /* a ring is placed by the configured weights: rebuilt for another, keys would move */
    if (b->npoints && weight && weight != weight_of(b, origin))
        return -1;
    atomic_store_explicit(&b->origins[origin].weight, weight, memory_order_relaxed);
    admin_recompute(b);
    if (b->queue)
        queue_rescan(b, now_ms);
    return 0;
}

enum origin_admin balancer_origin_admin(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins
               ? (enum origin_admin)atomic_load_explicit(&b->origins[origin].admin,
                                                         memory_order_relaxed)
               : ORIGIN_ADMIN_READY;
}

unsigned balancer_weight(const struct balancer *b, int origin)
{
    return origin >= 0 && origin < b->up->norigins
               ? atomic_load_explicit(&b->origins[origin].weight, memory_order_relaxed)
               : 0;
}

uint32_t balancer_admin_out(const struct balancer *b)
{
    return atomic_load_explicit(&b->out, memory_order_relaxed);
}

uint32_t balancer_admin_maint(const struct balancer *b)
{
    return atomic_load_explicit(&b->maint, memory_order_relaxed);
}

const struct upstream_conf *balancer_upstream(const struct balancer *b)
{
    return b->up;
}
