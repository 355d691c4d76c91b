/*
 * timing.h — the durations of one exchange as the access log, Server-Timing and the metrics
 * report them: one slot per reported phase, in microseconds, with a mask of the phases that
 * happened (absent phases are omitted everywhere, never shown as 0).
 */
#ifndef PORTICO_TIMING_H
#define PORTICO_TIMING_H

#include <stdint.h>

#include "portico/failure.h"

/* Reported phases: id, name (log key, metrics label). `body` is the response body (PHASE_READ),
 * `total` the whole exchange; the others are the upstream phases of failure.h. */
#define TIMING_LIST(X)                                                                             \
    X(TIMING_QUEUE, "queue")                                                                       \
    X(TIMING_DNS, "dns")                                                                           \
    X(TIMING_CONNECT, "connect")                                                                   \
    X(TIMING_TLS, "tls")                                                                           \
    X(TIMING_SEND, "send")                                                                         \
    X(TIMING_FIRST_BYTE, "first_byte")                                                             \
    X(TIMING_BODY, "body")                                                                         \
    X(TIMING_TOTAL, "total")

enum timing_phase {
#define X(id, name) id,
    TIMING_LIST(X)
#undef X
    TIMING_COUNT
};

struct timings {
    uint64_t us[TIMING_COUNT];         /* duration of each phase, valid where its bit is set */
    unsigned present;                  /* bit (1u << phase) set for each phase that happened */
};

/* Records a phase's duration. */
static inline void timings_set(struct timings *t, enum timing_phase p, uint64_t us)
{
    t->us[p] = us;
    t->present |= 1u << p;
}

/* True when the phase happened. */
static inline int timings_has(const struct timings *t, enum timing_phase p)
{
    return (t->present >> p) & 1u;
}

/* "dns", "first_byte", "total"... Never NULL ("?" out of range). */
const char *timing_name(enum timing_phase p);

/* The reported phase of an exchange phase (PHASE_READ → TIMING_BODY), or -1 for phases that are
 * not reported on their own (client_header, route, done). */
int timing_of_phase(enum phase p);

#endif
