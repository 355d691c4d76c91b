/*
 * balance.h — which origin of an upstream takes the next attempt, and the origins' health.
 *
 * Policies (`balance`): round_robin is smooth weighted round robin (nginx's): one cycle of
 * sum(weights) turns, computed once, in which each origin's turns are spread evenly; least_conn
 * takes the origin with the fewest attempts in flight relative to its weight (ties in the
 * weighted round-robin order); random_two draws two origins at random by weight and takes the
 * less busy one (power of two choices); hash puts a request key on a consistent-hash ring
 * (ketama's: points per origin and weight, placed by its host:port). Every pick is matched by
 * exactly one balancer_done when that attempt ends: it keeps the in-flight counts least_conn
 * and random_two read, and carries the origin's verdict.
 *
 * Backup origins (`backup`) are picked, by the same policy, only when no primary will do: all
 * down or failing their checks, or tried by the request already. slow_start ramps an origin
 * back up (or new on a reload) from ~0 to its weight over that time (round_robin, least_conn,
 * random_two; config.c refuses it with hash).
 *
 * Health. Passive: max_fails network failures within fail_window, with no response between
 * them, mark an origin DOWN for down_time; then a single attempt is let through (PROBING, the
 * half-open state; balancer_pick says which attempt is the probe): a response brings the origin
 * UP, the probe's failure makes it DOWN for down_time again, and attempts picked before it went
 * down leave the verdict to the probe unless they are answered. Active (health.c): `fall`
 * failed checks in a row keep the origin out until `rise` checks in a row pass (both 1 unless
 * the health_check says otherwise). The two are independent (a passing check neither starts
 * the failure count over nor ends a down_time: passive health judges requests); an origin takes
 * attempts when both let it.
 *
 * One balancer per upstream and configuration generation, shared by the worker threads of that
 * generation (its in-flight counts by the later generations too: balancer_share) with relaxed
 * atomics (a slightly stale count only shifts one pick); the transitions that must happen once
 * (UP → DOWN, DOWN → PROBING) are compare-and-swaps, and only the thread that made one logs it.
 * Time and randomness are passed in, so tests drive it without clocks.
 */
#ifndef PORTICO_BALANCE_H
#define PORTICO_BALANCE_H

#include <stdbool.h>
#include <stdint.h>

#include "portico/origin_admin_state.h"
struct retry_budget_use;

struct upstream_conf;
struct balancer;

/* What one attempt showed of its origin, for balancer_done. */
#define BALANCE_RESULT_LIST(X)                                                                     \
    X(BALANCE_ANSWERED, "answered")     /* the origin sent a response (any status) */              \
    X(BALANCE_FAILED, "failed")         /* a network failure of the origin (failure_is_network,    \
                                           total_timeout while it alone was awaited, or a fresh    \
                                           connection dropped before any response byte) */         \
    X(BALANCE_NO_VERDICT, "no verdict") /* ended before the origin showed either (client left,     \
                                           local shortage, total_timeout while sending) */

enum balance_result {
#define X(id, name) id,
    BALANCE_RESULT_LIST(X)
#undef X
    /* An attempt whose origin answered a final status that counts as a failure (fail_on, or a
     * retry_on status that counts): the result is that status itself, 100-599, so that the
     * log line and /status name it, and the exchange's one byte-sized flag carries it. */
    BALANCE_STATUS_MIN = 100,
    BALANCE_STATUS_MAX = 599,
};

/* An origin's passive health. */
#define ORIGIN_STATE_LIST(X)                                                                       \
    X(ORIGIN_UP, "up")                                                                             \
    X(ORIGIN_DOWN, "down")          /* skipped until down_time is over */                          \
    X(ORIGIN_PROBING, "probing")    /* down_time over: one attempt is on it, its result decides */

enum origin_state {
#define X(id, name) id,
    ORIGIN_STATE_LIST(X)
#undef X
    ORIGIN_STATE_COUNT
};

/* What an active health check showed, and the verdict the checks in a row add up to. */
#define CHECK_STATE_LIST(X)                                                                        \
    X(CHECK_PASSING, "passing")     /* also before the first check: origins start up */            \
    X(CHECK_FAILING, "failing")

enum check_state {
#define X(id, name) id,
    CHECK_STATE_LIST(X)
#undef X
};

/* A balancer for up (borrowed; it must outlive the balancer). NULL when out of memory. */
struct balancer *balancer_new(const struct upstream_conf *up);

/* Frees a balancer (NULL is fine). */
void balancer_free(struct balancer *b);

/* Picks the origin of the next attempt at now_ms (monotonic) by the upstream's policy, among the
 * origins that are up (or due for their probe) and not in exclude (bit i: origin i, the ones an
 * exchange tried already); rnd is a random number (random_two). A retry (exclude not 0) takes
 * no turn of round_robin's cycle. Returns the origin, counted in flight until balancer_done, or
 * -1 when none is left (no_healthy_origin). *probe (NULL: not wanted), for balancer_done: the
 * number of the origin's probe after its down_time when the attempt is that probe, else 0. */
int balancer_pick(struct balancer *b, uint64_t now_ms, uint64_t rnd, uint32_t exclude,
                  uint64_t *probe);

/* balance = hash: picks as balancer_pick does, the origin of the first point at or after key
 * (hashkey_of) on the consistent-hash ring that is up (or due for its probe) and not in
 * exclude; a retry (exclude not 0) so goes to the next distinct origin on the ring. A request
 * without a key goes to balancer_pick (round robin). */
int balancer_pick_hash(struct balancer *b, uint64_t now_ms, uint64_t key, uint32_t exclude,
                       uint64_t *probe);

/* What balancer_pick_origin gives when it cannot take the origin asked for. */
#define BALANCE_PICK_UNUSABLE (-1) /* down, failing its check, tried, or a backup while a
                                      primary is usable: another origin must take it */
#define BALANCE_PICK_FULL (-2)     /* usable but at max_conns: wait for it in the queue */

/* sticky: takes origin itself (or another listing of its host:port) for the next attempt when
 * it is usable and outside exclude, and, a backup, only when no primary outside exclude is (the
 * backups' rule of balancer_pick): whatever the policy, and taking no turn of round_robin's
 * cycle. Returns it, counted in flight until balancer_done as a pick's, or BALANCE_PICK_FULL /
 * BALANCE_PICK_UNUSABLE. *probe as balancer_pick's. */
int balancer_pick_origin(struct balancer *b, uint64_t now_ms, int origin, uint32_t exclude,
                         uint64_t *probe);

/* The points of b's ring (8 bytes each; 0 but for balance = hash): for tests and memory. */
unsigned balancer_ring_points(const struct balancer *b);

/* The response head of an attempt still in flight came from origin: its failure count starts
 * over, and a probed origin is up at once, not when the attempt ends (a long body). */
void balancer_answered(struct balancer *b, int origin);

/* Ends the attempt a pick started on origin: no longer in flight, and r updates its health.
 * probe: what the pick gave in *probe. While the probe is out, only an answer of another
 * attempt (picked before the origin went down) speaks for the origin: its failure is the old
 * news that took the origin down, and its end without a verdict is not the probe's. That holds
 * for the probe of an earlier down_time too, still out after the origin came back up and a
 * later probe began. */
void balancer_done(struct balancer *b, int origin, uint64_t probe, enum balance_result r,
                   uint64_t now_ms);

/* Ends a pick whose verdict was given already (a tunnel after its 101, balancer_answered): no
 * longer in flight, the health left as it is (the origin's state may have moved since). */
void balancer_release(struct balancer *b, int origin);

/* The result of an active health check of origin (why: for the log when it fails): the verdict
 * turns failing at the `fall`th failed check in a row, passing at the `rise`th passed one, and
 * each failure short of fall is logged, as each pass short of rise. Called by one thread per
 * balancer (the worker that runs its generation's checks). */
void balancer_check(struct balancer *b, int origin, enum check_state s, const char *why);

/* Whether the health check of origin is stopped: its next check could not be armed (out of
 * memory) and the worker's tick tries again (health.h). Written by the thread running the
 * checks, read by /status. */
void balancer_checks_stopped(struct balancer *b, int origin, bool stopped);
bool balancer_checks_are_stopped(const struct balancer *b, int origin);

/* A reload: b, of the new generation's upstream, takes over the verdicts of from, the same
 * upstream of the running one, for each origin listed in both (the same host:port): the checks'
 * verdict and their run toward rise or fall when both ask the same check (method, path,
 * expected status; b's rise and fall apply from its next check), and passive health (a DOWN
 * origin for what is left of its down_time, a PROBING one due for a probe at once) when b's
 * upstream has max_fails. Starting every origin up again sent requests to origins known to be
 * down until the new checks ended. Call before b's workers start. */
void balancer_inherit(struct balancer *b, const struct balancer *from, uint64_t now_ms);

/* A generation's balancer counts its origins' attempts in flight with the other generations of
 * this process whose upstream has its name (and max_conns, or none: slotshare.h), each origin
 * by its host:port and listing: an old generation's requests still in flight after a reload
 * count against the new generation's max_conns, a slot one generation frees goes to the oldest
 * waiter of any (the oldest generation's first), and least_conn and random_two weigh the
 * old requests too. Without it (tests, a balancer alone) the counts are b's own. Call before
 * b's workers start. 0, or -1 when out of memory (the counts then stay b's own). */
int balancer_share(struct balancer *b);

/* b's generation serves (a reload's workers started): its max_conns become the limit of the
 * counts it shares, over every generation's requests, and a limit raised hands its free slots
 * to the waiters at once. */
void balancer_serve(struct balancer *b, uint64_t now_ms);

/* The origins listed with the host:port of any in `origins` (bit i: origin i), those included:
 * a retry tries none of them again (balancer_pick). */
uint32_t balancer_listings(const struct balancer *b, uint32_t origins);

/* Whether origin takes no attempts now: passively down or probing, or failing its check
 * (portico_upstream_origin_up is its negation). */
bool balancer_origin_down(const struct balancer *b, int origin);

/* The origin's passive state, its last check's verdict and the attempts in flight on it
 * (tests, /status). */
enum origin_state balancer_origin_state(const struct balancer *b, int origin);
/* The status whose count marked origin down last (fail_on, retry_on), 0 when a network failure
 * did (/status's down_why). */
int balancer_down_status(const struct balancer *b, int origin);
enum check_state balancer_check_state(const struct balancer *b, int origin);
/* The checks in a row that ended as the last one did: N > 0 passed, -N failed, 0 before the
 * first (/status). */
int balancer_checks_in_row(const struct balancer *b, int origin);
/* In flight: every generation's attempts when b shares its counts (balancer_share). */
unsigned balancer_in_flight(const struct balancer *b, int origin);
/* The max_conns over origin's count now (0: none): the newest generation's when b shares its
 * counts, which may not be b's own configuration's. */
unsigned balancer_max_conns(const struct balancer *b, int origin);

/* ---- max_conns and the queue ----
 *
 * An origin with max_conns (config.h) takes at most that many attempts in flight, all workers
 * together: a pick passes over a full origin as over a down one, and the pick's -1 is then the
 * queue's business when balancer_room says the origins are full rather than down. A full origin
 * is no failure: it never counts toward max_fails. The queue is FIFO and shared by the workers
 * of a generation; a slot that frees is handed to its oldest waiter that may use it. */

/* What the origins an exchange may still use offer (balancer_room), or what became of a request
 * that asked to wait (balancer_queue). */
enum balance_room {
    BALANCE_ROOM_FREE,       /* a usable origin has a free slot: pick again */
    BALANCE_ROOM_FULL,       /* usable origins, all at max_conns */
    BALANCE_ROOM_NONE,       /* no usable origin: no_healthy_origin */
    BALANCE_ROOM_QUEUED,     /* balancer_queue: the waiter is in the queue */
    BALANCE_ROOM_QUEUE_FULL, /* balancer_queue: max_queue waiters already: queue_full */
};

/* A request waiting for a slot. Its owner fills exclude and wake; the balancer the rest. */
struct balance_waiter {
    struct balance_waiter *next, *prev; /* the queue's order, under its lock */
    uint32_t exclude;                   /* origins it may not take (tried) */
    int origin;                         /* the origin whose slot it was handed, -1 while it
                                           waits: the slot is its own, as a pick's; woken
                                           with -1: every origin it may take went down */
    bool queued;                        /* in the list */
    bool pinned;                        /* sticky: its cookie's origin alone, which a drained
                                           origin still takes */
    /* The slot was handed over (origin set), or its origins went down (origin -1): called from
     * any worker's thread with the queue's lock held, so it only posts to the owner's loop
     * (wakebox.h). */
    void (*wake)(struct balance_waiter *w);
};

/* Whether b's upstream has any origin with max_conns (b then has a queue). */
bool balancer_limited(const struct balancer *b);

/* What the usable origins outside exclude offer at now: FREE, FULL or NONE. */
enum balance_room balancer_room(const struct balancer *b, uint64_t now_ms, uint32_t exclude);

/* Puts w at the end of b's queue when the origins outside w->exclude are all full: QUEUED (w
 * must leave by balancer_unqueue, or be woken), QUEUE_FULL (max_queue waiting), or FREE / NONE
 * as balancer_room says (nothing queued: pick again, or no_healthy_origin). */
enum balance_room balancer_queue(struct balancer *b, struct balance_waiter *w, uint64_t now_ms);

/* Takes w out of the queue (its client left, its queue_timeout came: timed_out counts it).
 * Returns the origin whose slot was handed to it meanwhile (its own to end, by balancer_release
 * or balancer_done), or -1. */
int balancer_unqueue(struct balancer *b, struct balance_waiter *w, bool timed_out);

/* The queue's length now, the requests that ever waited in it, those that left at queue_timeout
 * (metrics; 0 for an upstream without max_conns). */
unsigned balancer_queue_length(const struct balancer *b);
uint64_t balancer_queued_total(const struct balancer *b);
uint64_t balancer_queue_timeouts(const struct balancer *b);

/* sticky: counts a request of b's upstream by what its cookie did (enum sticky_outcome of
 * sticky.h, below BALANCE_STICKY_OUTCOMES), and the count so far (metrics). */
#define BALANCE_STICKY_OUTCOMES 4
void balancer_sticky_count(struct balancer *b, unsigned outcome);
uint64_t balancer_sticky_total(const struct balancer *b, unsigned outcome);

/* retry_budget (retry_budget.h): takes a place for one retry of b's upstream when its retries
 * in flight, every worker's and generation's, are below retry_budget_limit of the requests in
 * flight on its origins (every generation's); true when taken (give it back with
 * balancer_retry_done), false with what was seen in *use. */
bool balancer_retry_take(struct balancer *b, struct retry_budget_use *use);
void balancer_retry_done(struct balancer *b);

/* Retries refused (metrics, counted by the exchange): by the budget, by retry_timeout. */
enum retry_refusal { RETRY_REFUSED_BUDGET, RETRY_REFUSED_TIMEOUT, RETRY_REFUSALS };
void balancer_retry_refused(struct balancer *b, enum retry_refusal why);
uint64_t balancer_retry_refused_total(const struct balancer *b, enum retry_refusal why);
/* Retries in flight now (metrics, /status). */
unsigned balancer_retries_in_flight(const struct balancer *b);

/* A reload: b's counters (queue, sticky, retry refusals) go on from from's (metrics counters
 * never go back): the same ones when both share them (slotshare.h), else copied. */
void balancer_inherit_queue(struct balancer *b, const struct balancer *from);

/* Whether origin is a backup (`origin = ... backup`): picked only when no primary will do. */
bool balancer_origin_is_backup(const struct balancer *b, int origin);

/* The share of its weight origin takes at now, in permille: 1000 but while slow_start ramps it
 * (from 1 when its ramp has yet to start, at its next pick). For tests and /status. */
unsigned balancer_weight_permille(const struct balancer *b, int origin, uint64_t now_ms);

/* ---- the admin API's state (origin_admin.h keeps it across reloads) ----
 *
 * Set by one thread at a time (origin_admin's lock), read by every pick: an origin out (drain,
 * maint, or weight 0, as HAProxy's weight 0) is left out of balancer_pick and
 * balancer_pick_hash and of the queue's hand-overs (a hash key goes to the next point of
 * another origin); balancer_pick_origin (sticky) still takes a drained one, never one in maint.
 * Health, checks and passive, is judged as before. */

/* Sets origin's admin state at now: the queue's waiters are walked again; out of maint it ramps
 * (slow_start). Returns the state it had. */
enum origin_admin balancer_set_admin(struct balancer *b, int origin, enum origin_admin a,
                                     uint64_t now_ms);

/* Sets origin's weight now (0 to CFG_MAX_WEIGHT; 0 takes it out of balancing, as drain). A
 * weight above the configured one makes round robin take a share of the others' turns (the
 * cycle is the configured weights'). -1: out of range, or balance = hash with a weight other
 * than 0 or the configured one (the ring is placed by those). */
int balancer_set_weight(struct balancer *b, int origin, unsigned weight, uint64_t now_ms);

/* The origin's admin state and weight now (/status, metrics, the admin API). */
enum origin_admin balancer_origin_admin(const struct balancer *b, int origin);
unsigned balancer_weight(const struct balancer *b, int origin);

/* The origins out of balancing by the admin API (bit i: origin i), and those in maint. */
uint32_t balancer_admin_out(const struct balancer *b);
uint32_t balancer_admin_maint(const struct balancer *b);

/* The upstream b balances (borrowed, as given to balancer_new). */
const struct upstream_conf *balancer_upstream(const struct balancer *b);

/* Names for logs and tests. Never NULL. */
const char *origin_admin_name(enum origin_admin a);
/* The state named name ("ready", "drain", "maint"): 0, or -1 for no such name. */
int origin_admin_from_name(const char *name, enum origin_admin *out);
const char *origin_state_name(enum origin_state s);
const char *check_state_name(enum check_state s);
const char *balance_result_name(enum balance_result r);

#endif
