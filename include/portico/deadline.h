/*
 * deadline.h — timers that are cheap to hold, to move and to cancel.
 *
 * Every connection and exchange has deadlines (keep-alive, header, phase, body, total) that
 * change on every request. A libevent timer per deadline costs a 128-byte struct event each and
 * a heap operation per move. Here one clock per event loop keeps its own heap of deadlines and
 * one libevent timer for the earliest, and a deadline is 64 bytes. The heap is a pairing heap
 * threaded through the deadlines themselves: nothing to allocate, so nothing to fail. Moves are lazy too: a
 * deadline stays in the heap at the earliest time it may be needed; setting a later one, or
 * clearing it, touches only a field; when it comes up early it reports "not due" and goes back
 * in for the real time.
 *
 * The owner's callback (libevent signature: fd -1, EV_TIMEOUT, the arg given to deadline_init)
 * starts with `if (!deadline_due(d, now)) return;`. Callbacks run one after the other from the
 * clock's event, each as its own entry point. Times are µs on the now_us() clock. Buffers layer:
 * knows libevent, nothing else.
 */
#ifndef PORTICO_DEADLINE_H
#define PORTICO_DEADLINE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

struct deadline_clock;

struct deadline {
    struct deadline_clock *clock; /* borrowed: the loop's */
    event_callback_fn cb;
    void *arg;
    uint64_t at;    /* when it expires; 0 = none */
    uint64_t armed; /* its key in the clock's heap; 0 = not in it */
    struct deadline *child, *next, *prev; /* heap links; prev of a first child is its parent */
};

/* One per event loop: NULL when out of memory. Freed after every deadline on it has stopped. */
struct deadline_clock *deadline_clock_new(struct event_base *base);

/* Frees the clock (NULL is fine); deadlines still armed on it are forgotten. */
void deadline_clock_free(struct deadline_clock *c);

/* The event base the clock runs on (for the owner's other events). */
struct event_base *deadline_clock_base(const struct deadline_clock *c);

/* Prepares d on clock with the owner's callback; no deadline yet. */
void deadline_init(struct deadline *d, struct deadline_clock *clock, event_callback_fn cb,
                   void *arg);

/* Expires at `at` (µs, > 0); d moves in the heap only when it would come up later than that. */
void deadline_set(struct deadline *d, uint64_t at, uint64_t now);

/* Expires ms from now; 0 ms clears it (a timeout of 0 means none throughout the config). */
void deadline_in_ms(struct deadline *d, uint64_t ms, uint64_t now);

/* No deadline: d stays in the heap, to come up once and find nothing due. */
static inline void deadline_clear(struct deadline *d)
{
    d->at = 0;
}

/* Whether d is set. */
static inline bool deadline_is_set(const struct deadline *d)
{
    return d->at != 0;
}

/* Called first by the owner's callback: true when the deadline has passed (it is cleared then);
 * false when it came up early or for a cleared deadline (put back as needed). */
bool deadline_due(struct deadline *d, uint64_t now);

/* Teardown: takes d out of the heap. d may be reused after deadline_init. */
void deadline_stop(struct deadline *d);

#endif
