/*
 * failure.h — what went wrong with an upstream exchange, in one vocabulary.
 *
 * A pure function turns (phase, cause) into a failure type; a profile table turns the failure
 * type into a status code; `[errors]` in the INI overrides single rows. Real failures and
 * simulated ones go through the same functions, so they look the same on the wire.
 */
#ifndef PORTICO_FAILURE_H
#define PORTICO_FAILURE_H

#include <stdbool.h>

/* Upstream timers: id, config key, default in ms. 0 means "off" for total_timeout only. Each
 * phase below names the one timer that limits it. */
#define TIMER_LIST(X)                                                                              \
    X(TIMER_QUEUE, "queue_timeout", 5000)                                                          \
    X(TIMER_DNS, "dns_timeout", 5000)                                                              \
    X(TIMER_CONNECT, "connect_timeout", 5000)                                                      \
    X(TIMER_TLS, "tls_timeout", 5000)                                                              \
    X(TIMER_SEND, "send_timeout", 30000)                                                           \
    X(TIMER_FIRST_BYTE, "first_byte_timeout", 60000)                                               \
    X(TIMER_READ, "read_timeout", 60000)                                                           \
    X(TIMER_TOTAL, "total_timeout", 0)

enum timer_kind {
#define X(id, key, def) id,
    TIMER_LIST(X)
#undef X
    TIMER_COUNT,
    TIMER_NONE = TIMER_COUNT /* a phase no timer limits */
};

/* Whom a phase's timeout message names: the host being resolved, or the origin address. */
enum phase_subject {
    SUBJECT_NONE,
    SUBJECT_HOST,
    SUBJECT_ORIGIN,
};

/*
 * Phases of an exchange, in order: id, name (logs, Server-Timing), the timer that limits it, whom
 * its timeout message names, and that message (printf: subject, limit in ms as unsigned long
 * long). phase.h turns these rows into the phase machine.
 */
#define PHASE_LIST(X)                                                                              \
    X(PHASE_CLIENT_HEADER, "client_header", TIMER_NONE, SUBJECT_NONE, NULL)                        \
    X(PHASE_ROUTE, "route", TIMER_NONE, SUBJECT_NONE, NULL)                                        \
    X(PHASE_QUEUE, "queue", TIMER_QUEUE, SUBJECT_NONE, NULL)                                       \
    X(PHASE_DNS, "dns", TIMER_DNS, SUBJECT_HOST, "resolving %s exceeded %llu ms")                  \
    X(PHASE_CONNECT, "connect", TIMER_CONNECT, SUBJECT_ORIGIN, "connect to %s exceeded %llu ms")   \
    X(PHASE_TLS, "tls", TIMER_TLS, SUBJECT_ORIGIN, "TLS handshake with %s exceeded %llu ms")       \
    X(PHASE_SEND, "send", TIMER_SEND, SUBJECT_ORIGIN, "%s took no request bytes for %llu ms")      \
    X(PHASE_FIRST_BYTE, "first_byte", TIMER_FIRST_BYTE, SUBJECT_ORIGIN,                            \
      "no response from %s within %llu ms of the request")                                         \
    X(PHASE_READ, "read", TIMER_READ, SUBJECT_ORIGIN,                                              \
      "%s sent nothing for %llu ms while sending the response")                                    \
    X(PHASE_DONE, "done", TIMER_NONE, SUBJECT_NONE, NULL)

enum phase {
#define X(id, name, timer, subject, fmt) id,
    PHASE_LIST(X)
#undef X
    PHASE_COUNT
};

/* What happened, independent of where. */
#define CAUSE_LIST(X)                                                                              \
    X(CAUSE_NONE, "none")                                                                          \
    X(CAUSE_TIMEOUT, "timeout")                                                                    \
    X(CAUSE_TOTAL_TIMEOUT, "total timeout")                                                        \
    X(CAUSE_REFUSED, "refused")                                                                    \
    X(CAUSE_UNREACHABLE, "unreachable")                                                            \
    X(CAUSE_RESET, "reset")                                                                        \
    X(CAUSE_EOF, "closed")                                                                         \
    X(CAUSE_IO, "i/o error")                                                                       \
    X(CAUSE_PROTOCOL, "protocol error")                                                            \
    X(CAUSE_TLS, "tls error")                                                                      \
    X(CAUSE_CERT, "certificate error")                                                             \
    X(CAUSE_NXDOMAIN, "no such name")                                                              \
    X(CAUSE_DNS_FAIL, "resolver failure")                                                          \
    X(CAUSE_NO_ORIGIN, "no healthy origin")                                                        \
    X(CAUSE_LOCAL, "local resource failure")                                                      \
    X(CAUSE_NO_LOCAL_PORT, "no free local port")                                                  \
    X(CAUSE_QUEUE_FULL, "queue full")

enum cause {
#define X(id, name) id,
    CAUSE_LIST(X)
#undef X
    CAUSE_COUNT
};

/*
 * Failure types: id, name (config key, Portico-Error header, log, metrics), status in the
 * standard / cloudflare / proxy profiles, RFC 9209 Proxy-Status error type, counts toward
 * passive health (a network failure of the origin rather than of one response).
 */
#define FAILURE_LIST(X)                                                                            \
    X(FAIL_NONE, "none", 0, 0, 0, "", false)                                                       \
    X(FAIL_DNS_ERROR, "dns_error", 502, 523, 502, "dns_error", true)                               \
    X(FAIL_DNS_TIMEOUT, "dns_timeout", 504, 523, 599, "dns_timeout", true)                         \
    X(FAIL_CONNECT_REFUSED, "connect_refused", 502, 521, 502, "connection_refused", true)          \
    X(FAIL_CONNECT_TIMEOUT, "connect_timeout", 504, 522, 599, "connection_timeout", true)          \
    X(FAIL_CONNECT_UNREACHABLE, "connect_unreachable", 502, 523, 502, "destination_unavailable",   \
      true)                                                                                        \
    X(FAIL_TLS_HANDSHAKE_FAILED, "tls_handshake_failed", 502, 525, 502, "tls_protocol_error",      \
      true)                                                                                        \
    X(FAIL_TLS_HANDSHAKE_TIMEOUT, "tls_handshake_timeout", 504, 525, 599, "connection_timeout",    \
      true)                                                                                        \
    X(FAIL_TLS_CERTIFICATE_INVALID, "tls_certificate_invalid", 502, 526, 502,                      \
      "tls_certificate_error", true)                                                               \
    X(FAIL_SEND_TIMEOUT, "send_timeout", 504, 522, 598, "connection_write_timeout", true)          \
    X(FAIL_SEND_ERROR, "send_error", 502, 520, 502, "connection_terminated", true)                 \
    X(FAIL_FIRST_BYTE_TIMEOUT, "first_byte_timeout", 504, 524, 598, "http_response_timeout",       \
      true)                                                                                        \
    X(FAIL_READ_TIMEOUT, "read_timeout", 504, 524, 598, "connection_read_timeout", false)          \
    X(FAIL_EMPTY_RESPONSE, "empty_response", 502, 520, 502, "connection_terminated", false)        \
    X(FAIL_CONNECTION_RESET, "connection_reset", 502, 520, 502, "http_response_incomplete", false) \
    X(FAIL_INVALID_RESPONSE, "invalid_response", 502, 520, 502, "http_protocol_error", false)      \
    X(FAIL_TOTAL_TIMEOUT, "total_timeout", 504, 524, 598, "http_response_timeout", false)          \
    X(FAIL_NO_HEALTHY_ORIGIN, "no_healthy_origin", 503, 503, 503, "destination_unavailable", false) \
    X(FAIL_INTERNAL_ERROR, "internal_error", 500, 500, 500, "proxy_internal_error", false)        \
    X(FAIL_QUEUE_TIMEOUT, "queue_timeout", 503, 503, 503, "connection_limit_reached", false)      \
    X(FAIL_QUEUE_FULL, "queue_full", 503, 503, 503, "connection_limit_reached", false)

enum failure_type {
#define X(id, name, std, cf, px, ps, net) id,
    FAILURE_LIST(X)
#undef X
    FAILURE_COUNT
};

#define PROFILE_LIST(X)                                                                            \
    X(PROFILE_STANDARD, "standard")                                                                \
    X(PROFILE_CLOUDFLARE, "cloudflare")                                                            \
    X(PROFILE_PROXY, "proxy")

enum error_profile {
#define X(id, name) id,
    PROFILE_LIST(X)
#undef X
    PROFILE_COUNT
};

/* The failure type for a failure of `cause` observed in `phase`. Pure; FAIL_NONE for
 * CAUSE_NONE. The same EOF means different things in different phases. */
enum failure_type failure_classify(enum phase phase, enum cause cause);

/* The cause a socket error number stands for: refused, reset, timeout, unreachable, a local
 * shortage (descriptors, memory: never the origin's fault), or plain I/O error. */
enum cause cause_from_errno(int err);

/* Status for a failure type: overrides[type] when non-zero, else the profile's row. */
int failure_status(enum failure_type type, enum error_profile profile, const int *overrides);

/* Names: "connect_timeout", "first_byte", "timeout", "cloudflare"... Never NULL. */
const char *failure_name(enum failure_type type);
const char *phase_name(enum phase phase);
const char *cause_name(enum cause cause);
const char *profile_name(enum error_profile profile);

/* RFC 9209 Proxy-Status error type for a failure type ("connection_timeout"...). */
const char *failure_proxy_status(enum failure_type type);

/* True when the failure is a network failure of the origin (counts toward passive health). */
bool failure_is_network(enum failure_type type);

/* Reverse lookups for the config parser: 0 and *out set when name is known, -1 otherwise. */
int failure_from_name(const char *name, enum failure_type *out);
int profile_from_name(const char *name, enum error_profile *out);

#endif
