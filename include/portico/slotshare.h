/*
 * slotshare.h — the in-flight counts of origins, shared by the configuration generations of one
 * process.
 *
 * A reload starts a new generation while the old one drains (generation.h); an origin both list
 * still sees the requests of both. So an origin's count is kept here, by identity: the upstream's
 * name, whether it has max_conns at all (a queue then hands slots on, balance.c), the origin's
 * host:port text, and its listing among the upstream's origins of that text (an origin listed
 * twice is two counts, as in one generation). Every generation whose upstream has that identity
 * counts on the same number, under the max_conns of the newest one. A count lives while a
 * generation holds it: an origin a reload dropped keeps its count until its requests are done,
 * and one added back while they are still under way counts on from them. A listing the newest
 * generation dropped while it still lists the origin (listed twice, then once) is drained into
 * the origin's first listing (slot_share_drain): its attempts count there, under the newest
 * max_conns, instead of beside it.
 *
 * A share (one per upstream identity) also holds the lock of its generations' queues, so that a
 * slot freed by one generation's request may be handed to another's waiter, and the list of its
 * members (the balancers), oldest first. Joining and leaving take a process-wide lock, so only
 * a generation's creation and end do; the requests take the share's lock, and only those of an
 * upstream with max_conns. A share also holds the upstream's retries in flight (retry_budget)
 * and its counters (struct slot_tally).
 */
#ifndef PORTICO_SLOTSHARE_H
#define PORTICO_SLOTSHARE_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* An origin's count. */
struct slot_count {
    _Atomic unsigned in_flight;        /* attempts in flight on it, every generation's */
    _Atomic unsigned max;              /* its max_conns: the newest generation's (0: none) */
    _Atomic(struct slot_count *) into; /* drained (slot_share_drain): the count it goes on in */
};

#define SLOT_DRAINED UINT_MAX          /* in_flight of a drained count: no claim succeeds on it */

/* The count c's attempts are on: c, or the one it was drained into (and so on). */
static inline struct slot_count *slot_count_live(struct slot_count *c)
{
    struct slot_count *into;
    while ((into = atomic_load_explicit(&c->into, memory_order_acquire)) != NULL)
        c = into;
    return c;
}

/* The attempts in flight on c's live count (one drained meanwhile is followed). */
static inline unsigned slot_count_in_flight(struct slot_count *c)
{
    for (;;) {
        c = slot_count_live(c);
        unsigned n = atomic_load_explicit(&c->in_flight, memory_order_acquire);
        if (n != SLOT_DRAINED)
            return n;
    }
}

/* A member of a share (a balancer), linked in its list under the share's lock. */
struct slot_member {
    struct slot_member *next, *prev;   /* newer, older */
    void *owner;
    bool entered;                      /* in the list (slot_share_enter) */
};

struct slot_share;

/* A reference to the share of upstream (limited: it has max_conns), made when there is none.
 * NULL when out of memory. */
struct slot_share *slot_share_join(const char *upstream, bool limited);

/* m, whose counts were taken (slot_share_count), becomes s's newest member: the others' freed
 * slots may go to its waiters from now on. */
void slot_share_enter(struct slot_share *s, struct slot_member *m);

/* Gives the reference of slot_share_join back, m leaving the members first when it entered
 * (its counts put back before: slot_share_put); the last reference frees s. */
void slot_share_leave(struct slot_share *s, struct slot_member *m);

/* The count of origin (its host:port text) at its listing-th listing in s, made with max when
 * none holds it yet (a member that holds one already keeps its max until slot_share_serve).
 * NULL when out of memory. */
struct slot_count *slot_share_count(struct slot_share *s, const char *origin, unsigned listing,
                                    unsigned max);

/* Under slot_share_lock, from the newest generation, which lists origin `listings` times and
 * serves now: each count of a later listing of origin (one the newest file dropped) is drained
 * into `into`, the newest's count of its first listing. Its attempts in flight are added there
 * (before it closes, so that into never counts fewer than the origin holds), and every
 * generation's claims and frees on it go there from then on: old and new requests together stay
 * under the newest max_conns, where the dropped listing's were beside it. Claims are lock-free:
 * a drained count's in_flight is SLOT_DRAINED, on which a claim's compare-and-swap fails, and
 * the claim follows `into` (slot_count_live). */
void slot_share_drain(struct slot_share *s, const char *origin, unsigned listings,
                      struct slot_count *into);

/* Puts back a count slot_share_count gave: the last holder frees it. */
void slot_share_put(struct slot_share *s, struct slot_count *c);

/* The upstream's retries in flight (retry_budget, balance.h), every generation's: a reload does
 * not hand a storm a fresh budget. */
_Atomic unsigned *slot_share_retries(struct slot_share *s);

/* An upstream's counters of /metrics, every generation's: a draining generation's counts go
 * where the serving one's are read. A reload copies them only into a new share (max_conns gained
 * or lost changes the share). */
#define SLOT_TALLY_REFUSALS 2          /* balance.h's enum retry_refusal */
#define SLOT_TALLY_STICKY 4            /* balance.h's BALANCE_STICKY_OUTCOMES */
struct slot_tally {
    _Atomic uint64_t refused[SLOT_TALLY_REFUSALS]; /* retries refused, by why */
    _Atomic uint64_t queued;           /* requests that ever waited for a slot */
    _Atomic uint64_t queue_timeouts;   /* ... and left at queue_timeout */
    _Atomic uint64_t sticky[SLOT_TALLY_STICKY]; /* sticky: requests by outcome */
};

/* The counters of s's upstream (above). */
struct slot_tally *slot_share_tally(struct slot_share *s);

/* The lock of s's members' queues. */
pthread_mutex_t *slot_share_lock(struct slot_share *s);

/* The oldest member of s (follow next for newer ones), under slot_share_lock. */
struct slot_member *slot_share_oldest(struct slot_share *s);

#endif
