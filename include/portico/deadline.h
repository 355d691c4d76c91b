/*
 * deadline.h — a timer that is cheap to move and to cancel.
 *
 * Request-path timeouts change on every request (keep-alive, header, phase, body): re-adding a
 * libevent timer each time costs a heap operation. A deadline keeps its event armed at the
 * earliest time it may be needed: setting a later deadline, or clearing it, touches only a field;
 * the event, when it fires early, reports "not due" and re-arms itself for the real time.
 *
 * The owner's callback (libevent signature, the arg given to deadline_init) starts with
 * `if (!deadline_due(d, now)) return;`. Times are µs on the now_us() clock. Buffers layer:
 * knows libevent, nothing else.
 */
#ifndef PORTICO_DEADLINE_H
#define PORTICO_DEADLINE_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>

struct deadline {
    struct event ev;
    uint64_t at;    /* when it expires; 0 = none */
    uint64_t armed; /* when the event fires; 0 = not pending */
};

/* Prepares d on base with the owner's callback; no deadline yet. */
void deadline_init(struct deadline *d, struct event_base *base, event_callback_fn cb, void *arg);

/* Expires at `at` (µs, > 0); the event is re-added only when it would fire later than that. */
void deadline_set(struct deadline *d, uint64_t at, uint64_t now);

/* Expires ms from now; 0 ms clears it (a timeout of 0 means none throughout the config). */
void deadline_in_ms(struct deadline *d, uint64_t ms, uint64_t now);

/* No deadline: a pending event is left to fire once and find nothing due. */
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
 * false when the event fired early or for a cleared deadline (re-armed as needed). */
bool deadline_due(struct deadline *d, uint64_t now);

/* Teardown: removes the event if pending. d may be reused after deadline_init. */
void deadline_stop(struct deadline *d);

#endif
