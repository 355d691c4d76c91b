/*
 * phase.h — the phase machine of an exchange, as data and pure functions.
 *
 * The rows of PHASE_LIST (failure.h) say which timer limits each phase and what its timeout is
 * called. A phase_clock records when each phase started and ended; every function takes the
 * time as an argument (µs, monotonic), so the machine is driven by unit tests without sockets
 * or sleeps, and the exchange reads the clock once per event.
 */
#ifndef PORTICO_PHASE_H
#define PORTICO_PHASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"

/* When each phase of one exchange started and ended. Zero-initialize before use; times are
 * never 0 (a monotonic clock in µs does not read 0), which marks "never". */
struct phase_clock {
    enum phase current;          /* the phase the exchange is in */
    uint64_t start[PHASE_COUNT]; /* µs; 0 = never entered */
    uint64_t end[PHASE_COUNT];   /* µs; 0 = still open (or never entered) */
};

/* One phase's duration, as the log and Server-Timing report it. */
struct phase_timing {
    enum phase phase;
    uint64_t us;
};

/* Enters p at now: the current phase, if open, ends now; p starts anew (a phase entered twice,
 * such as READ for a 1xx head and then for the final head, measures its last run). */
void phase_enter(struct phase_clock *pc, enum phase p, uint64_t now);

/* Goes back to p without restarting it: it keeps its first start and is open again (the wait for
 * the first byte continues after a 1xx; the request body goes on after a 100). The current phase,
 * if open, ends now; a READ (a 1xx head) is forgotten: it was part of p, not the response read. */
void phase_resume(struct phase_clock *pc, enum phase p, uint64_t now);

/* Ends the current phase at now, if it is open (the exchange finished or failed in it). */
void phase_close(struct phase_clock *pc, uint64_t now);

/* How long p lasted (up to now if it is still open); 0 when never entered. */
uint64_t phase_elapsed_us(const struct phase_clock *pc, enum phase p, uint64_t now);

/* The timings of the upstream phases entered so far (dns … read), in phase order: the one list
 * both the access log and Server-Timing are made from. Returns how many were written to out. */
size_t phase_timings(const struct phase_clock *pc, uint64_t now, struct phase_timing *out,
                     size_t max);

/* The limit of phase p in ms from an upstream's resolved timers (indexed by enum timer_kind);
 * 0 when no timer limits p. */
uint64_t phase_limit_ms(const uint64_t *timers_ms, enum phase p);

/* The timer that limits p (TIMER_NONE for none) and whom its timeout message names. */
enum timer_kind phase_timer(enum phase p);
enum phase_subject phase_subject(enum phase p);

/* Writes the one-line timeout message of phase p ("connect to 127.0.0.1:3000 exceeded 250 ms").
 * Returns its length. */
size_t phase_timeout_detail(enum phase p, const char *subject, uint64_t limit_ms, char *buf,
                            size_t size);

/*
 * The phase an I/O failure on the origin connection belongs to: the phase the exchange is in
 * (SEND while the request goes out, FIRST_BYTE while waiting, READ once response bytes came),
 * except that a request already handed whole to the kernel is waiting for its answer, and that
 * a wait for the final head after a 1xx is READ. Outside those phases: READ once a response
 * byte was seen, else SEND.
 */
enum phase phase_of_io_failure(enum phase current, bool request_sent, bool response_byte);

/*
 * The first_byte deadline (µs) after an interim response arrived at now with the request sent:
 * restarted (limit from now) when interim responses reset the timer, else the running one, so
 * that an origin cannot stretch first_byte_timeout forever with 1xx. deadline 0 = none yet.
 */
uint64_t phase_first_byte_deadline(uint64_t deadline, uint64_t now, uint64_t limit_ms,
                                   bool interim_resets);

/* "dns;dur=0.3, connect;dur=1000.2;desc=\"timeout\"": every upstream phase entered, plus route
 * when it is the failed one; the failed phase carries its cause. failed = PHASE_DONE for none.
 * Returns the length written (NUL-terminated, truncated to size). */
size_t phase_server_timing(const struct phase_clock *pc, uint64_t now, enum phase failed,
                           enum cause cause, char *buf, size_t size);

#endif
