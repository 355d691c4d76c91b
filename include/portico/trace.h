/*
 * trace.h — W3C Trace Context (traceparent, Level 1). Portico participates in the trace: a
 * valid traceparent from the client keeps its trace id and gets our own parent-id for the hop
 * to the origin; anything else starts a new trace. Pure, apart from seeding the generator.
 *
 *   traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 *                version trace-id (32 hex)        parent-id (16 hex) flags
 */
#ifndef PORTICO_TRACE_H
#define PORTICO_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACEPARENT_LEN 55             /* a version 00 value, without NUL */
#define TRACE_FLAG_SAMPLED 0x01        /* the only flag of version 00 */

struct trace_context {
    char trace_id[33];                 /* 32 lowercase hex digits, NUL-terminated */
    char parent_id[17];                /* 16 lowercase hex digits: the caller's span, or ours */
    uint8_t flags;                     /* trace-flags as received (version 00) */
};

/* How the context of an exchange came about (log and tests). */
#define TRACE_SOURCE_LIST(X)                                                                       \
    X(TRACE_KEPT, "kept")              /* the client's trace, with our parent-id */                \
    X(TRACE_STARTED, "started")        /* none or an invalid one: a new trace */

enum trace_source {
#define X(id, name) id,
    TRACE_SOURCE_LIST(X)
#undef X
    TRACE_SOURCE_COUNT
};

/* A fast generator of ids (xoshiro256**), one per worker: not for secrets, only for ids that
 * must not collide. */
struct trace_rng {
    uint64_t s[4];
};

/* Seeds from the OS (getrandom). 0, or -1 when the OS gives nothing. */
int trace_rng_seed(struct trace_rng *rng);

/* Seeds from a number, for reproducible tests. */
void trace_rng_init(struct trace_rng *rng, uint64_t seed);

/* The next 64 random bits. */
uint64_t trace_rng_next(struct trace_rng *rng);

/* Parses a traceparent value strictly: version 00 must be exactly 55 characters; a higher
 * version (not ff) at least 55, with a dash after the flags when longer, and only its first
 * four fields read. Lowercase hex only; all-zero trace or parent ids are invalid. 0 with *out
 * set, or -1. */
int trace_parse(const char *value, size_t len, struct trace_context *out);

/* Starts a new trace: random trace and parent ids (never all zero), the given flags. */
void trace_start(struct trace_rng *rng, uint8_t flags, struct trace_context *out);

/* Our hop of a trace: a new random parent-id, the sampled flag kept and the flags of no known
 * meaning cleared (W3C: "Vendors MUST set those to zero"). */
void trace_child(struct trace_rng *rng, struct trace_context *tc);

/* The whole decision for one request: the client's traceparent value (NULL when it sent none,
 * or several) is kept with our parent-id (TRACE_KEPT), or a new trace is started, not sampled
 * (TRACE_STARTED: the client's tracestate must then be dropped too). */
enum trace_source trace_propagate(struct trace_rng *rng, const char *value, size_t len,
                                  struct trace_context *out);

/* Writes the version 00 value "00-<trace-id>-<parent-id>-<flags>" into buf (size >
 * TRACEPARENT_LEN), NUL-terminated. Returns TRACEPARENT_LEN, or 0 when buf is too small. */
size_t trace_format(const struct trace_context *tc, char *buf, size_t size);

/* "kept", "started". Never NULL. */
const char *trace_source_name(enum trace_source s);

#endif
