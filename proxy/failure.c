/*
 * failure.c — (phase, cause) → failure type → status. Pure tables; see failure.h.
 */
#include "portico/failure.h"

#include <errno.h>
#include <string.h>

struct failure_row {
    const char *name;
    int status[PROFILE_COUNT];
    const char *proxy_status;
    bool network;
};

static const struct failure_row failure_rows[FAILURE_COUNT] = {
#define X(id, nm, std, cf, px, ps, net) [id] = {nm, {std, cf, px}, ps, net},
    FAILURE_LIST(X)
#undef X
};

static const char *const phase_names[PHASE_COUNT] = {
#define X(id, nm, timer, subject, fmt) [id] = nm,
    PHASE_LIST(X)
#undef X
};

static const char *const cause_names[CAUSE_COUNT] = {
#define X(id, nm) [id] = nm,
    CAUSE_LIST(X)
#undef X
};

static const char *const profile_names[PROFILE_COUNT] = {
#define X(id, nm) [id] = nm,
    PROFILE_LIST(X)
#undef X
};

/* Per phase: the failure for a timeout, for a refusal/closure, and for anything else. Causes that
 * mean the same in every phase (total timeout, no origin) are handled before the table. */
struct phase_row {
    enum failure_type on_timeout;
    enum failure_type on_refused;
    enum failure_type on_eof;
    enum failure_type on_reset;
    enum failure_type on_protocol;
    enum failure_type otherwise;
};

static const struct phase_row phase_rows[PHASE_COUNT] = {
    [PHASE_ROUTE] = {FAIL_NO_HEALTHY_ORIGIN, FAIL_NO_HEALTHY_ORIGIN, FAIL_NO_HEALTHY_ORIGIN,
                     FAIL_NO_HEALTHY_ORIGIN, FAIL_NO_HEALTHY_ORIGIN, FAIL_NO_HEALTHY_ORIGIN},
    /* the queue's only failure is its timer's: a full queue refuses before (CAUSE_QUEUE_FULL) */
    [PHASE_QUEUE] = {FAIL_QUEUE_TIMEOUT, FAIL_QUEUE_TIMEOUT, FAIL_QUEUE_TIMEOUT, FAIL_QUEUE_TIMEOUT,
                     FAIL_QUEUE_TIMEOUT, FAIL_QUEUE_TIMEOUT},
    [PHASE_DNS] = {FAIL_DNS_TIMEOUT, FAIL_DNS_ERROR, FAIL_DNS_ERROR, FAIL_DNS_ERROR, FAIL_DNS_ERROR,
                   FAIL_DNS_ERROR},
    [PHASE_CONNECT] = {FAIL_CONNECT_TIMEOUT, FAIL_CONNECT_REFUSED, FAIL_CONNECT_REFUSED,
                       FAIL_CONNECT_REFUSED, FAIL_CONNECT_UNREACHABLE, FAIL_CONNECT_UNREACHABLE},
    [PHASE_TLS] = {FAIL_TLS_HANDSHAKE_TIMEOUT, FAIL_TLS_HANDSHAKE_FAILED, FAIL_TLS_HANDSHAKE_FAILED,
                   FAIL_TLS_HANDSHAKE_FAILED, FAIL_TLS_HANDSHAKE_FAILED, FAIL_TLS_HANDSHAKE_FAILED},
    [PHASE_SEND] = {FAIL_SEND_TIMEOUT, FAIL_SEND_ERROR, FAIL_SEND_ERROR, FAIL_SEND_ERROR,
                    FAIL_INVALID_RESPONSE, FAIL_SEND_ERROR},
    [PHASE_FIRST_BYTE] = {FAIL_FIRST_BYTE_TIMEOUT, FAIL_CONNECTION_RESET, FAIL_EMPTY_RESPONSE,
                          FAIL_CONNECTION_RESET, FAIL_INVALID_RESPONSE, FAIL_CONNECTION_RESET},
    [PHASE_READ] = {FAIL_READ_TIMEOUT, FAIL_CONNECTION_RESET, FAIL_CONNECTION_RESET,
                    FAIL_CONNECTION_RESET, FAIL_INVALID_RESPONSE, FAIL_CONNECTION_RESET},
};

enum failure_type failure_classify(enum phase phase, enum cause cause)
{
    if (cause == CAUSE_NONE || (unsigned)cause >= CAUSE_COUNT)
        return FAIL_NONE;
    if (cause == CAUSE_TOTAL_TIMEOUT)
        return FAIL_TOTAL_TIMEOUT;
    if (cause == CAUSE_NO_ORIGIN)
        return FAIL_NO_HEALTHY_ORIGIN;
    if (cause == CAUSE_QUEUE_FULL)
        return FAIL_QUEUE_FULL;
    if (cause == CAUSE_LOCAL || cause == CAUSE_NO_LOCAL_PORT)
        return FAIL_INTERNAL_ERROR;
    if ((unsigned)phase >= PHASE_COUNT)
        return FAIL_INVALID_RESPONSE;
    /* A certificate problem is only meaningful during the handshake; anywhere else the TLS layer
     * failing is a protocol failure of that phase. */
    if (phase == PHASE_TLS && cause == CAUSE_CERT)
        return FAIL_TLS_CERTIFICATE_INVALID;

    const struct phase_row *row = &phase_rows[phase];
    if (row->otherwise == FAIL_NONE) /* client-side phases: no upstream failure possible */
        return FAIL_NONE;
    switch (cause) {
    case CAUSE_TIMEOUT:
        return row->on_timeout;
    case CAUSE_REFUSED:
        return row->on_refused;
    case CAUSE_EOF:
        return row->on_eof;
    case CAUSE_RESET:
        return row->on_reset;
    case CAUSE_PROTOCOL:
    case CAUSE_TLS:
    case CAUSE_CERT:
        return row->on_protocol;
    default:
        return row->otherwise;
    }
}

enum cause cause_from_errno(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return CAUSE_REFUSED;
    case ETIMEDOUT:
        return CAUSE_TIMEOUT;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return CAUSE_RESET;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
    case ENETDOWN:
    case EHOSTDOWN:
        return CAUSE_UNREACHABLE;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
        return CAUSE_LOCAL;
    default:
        return CAUSE_IO;
    }
}

int failure_status(enum failure_type type, enum error_profile profile, const int *overrides)
{
    if ((unsigned)type >= FAILURE_COUNT || (unsigned)profile >= PROFILE_COUNT)
        return 502;
    if (overrides && overrides[type])
        return overrides[type];
    return failure_rows[type].status[profile];
}

const char *failure_name(enum failure_type type)
{
    return (unsigned)type < FAILURE_COUNT ? failure_rows[type].name : "unknown";
}

const char *phase_name(enum phase phase)
{
    return (unsigned)phase < PHASE_COUNT ? phase_names[phase] : "unknown";
}

const char *cause_name(enum cause cause)
{
    return (unsigned)cause < CAUSE_COUNT ? cause_names[cause] : "unknown";
}

const char *profile_name(enum error_profile profile)
{
    return (unsigned)profile < PROFILE_COUNT ? profile_names[profile] : "unknown";
}

const char *failure_proxy_status(enum failure_type type)
{
    return (unsigned)type < FAILURE_COUNT ? failure_rows[type].proxy_status : "";
}

bool failure_is_network(enum failure_type type)
{
    return (unsigned)type < FAILURE_COUNT && failure_rows[type].network;
}

int failure_from_name(const char *name, enum failure_type *out)
{
    for (int i = FAIL_NONE + 1; i < FAILURE_COUNT; i++) {
        if (strcmp(failure_rows[i].name, name) == 0) {
            *out = (enum failure_type)i;
            return 0;
        }
    }
    return -1;
}

int profile_from_name(const char *name, enum error_profile *out)
{
    for (int i = 0; i < PROFILE_COUNT; i++) {
        if (strcmp(profile_names[i], name) == 0) {
            *out = (enum error_profile)i;
            return 0;
        }
    }
    return -1;
}
