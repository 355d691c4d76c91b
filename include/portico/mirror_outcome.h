/*
 * mirror_outcome.h — what became of a mirror request (mirror.h), apart from the mirror module:
 * the metrics count outcomes, and the mirror module counts through the metrics, so the names
 * live below both.
 */
#ifndef PORTICO_MIRROR_OUTCOME_H
#define PORTICO_MIRROR_OUTCOME_H

/* What became of a mirror request (or of one not sent), the outcome label. */
#define MIRROR_OUTCOME_LIST(X)                                                                     \
    X(MIRROR_ANSWERED, "answered")       /* the mirror origin answered; the answer dropped */   \
    X(MIRROR_FAILED, "failed")           /* no answer: DNS, connect, TLS, a timeout, a close */ \
    X(MIRROR_DROPPED, "dropped")         /* mirror_max_in_flight were under way: not sent */    \
    X(MIRROR_TOO_LARGE, "too_large")     /* body over MIRROR_BODY_MAX: not sent */              \
    X(MIRROR_STREAMING, "streaming")     /* an upgrade or CONNECT: never mirrored */            \
    X(MIRROR_UNSENT, "unsent")           /* the request never went whole (client gone, refused,
                                            answered early): not sent */                       \
    X(MIRROR_SAMPLED_OUT, "sampled_out") /* left out by mirror_percent */                       \
    X(MIRROR_CUT, "cut")                 /* under way when its worker ended (reload, stop) */

enum mirror_outcome {
#define X(id, name) id,
    MIRROR_OUTCOME_LIST(X)
#undef X
    MIRROR_OUTCOME_COUNT
};

/* The outcome's label value. */
static inline const char *mirror_outcome_name(enum mirror_outcome o)
{
    static const char *const names[] = {
#define X(id, name) [id] = name,
        MIRROR_OUTCOME_LIST(X)
#undef X
    };
    return (unsigned)o < MIRROR_OUTCOME_COUNT ? names[o] : "unknown";
}

#endif
