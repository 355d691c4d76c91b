/*
 * log.h — the error log (stderr) and the access log (one line per exchange, key=value pairs,
 * the same failure names as the Portico-Error header and the metrics).
 */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"

/* One finished exchange. Strings are borrowed for the duration of log_access. */
struct access_record {
    const char *request_id;
    const char *client;           /* "127.0.0.1:50312" */
    const char *method;           /* span */
    size_t method_len;
    const char *target;           /* span */
    size_t target_len;
    int minor;                    /* client HTTP/1.<minor> */
    int status;                   /* sent, or 499 when the client left first, 0 when none */
    uint64_t bytes_out;           /* response body bytes sent to the client */
    uint64_t bytes_in;            /* request body bytes received */
    double duration_ms;
    const char *route;            /* NULL when not routed */
    const char *upstream;
    const char *origin;           /* address used, NULL when none */
    enum failure_type failure;
    enum phase phase;             /* where the failure happened */
    uint64_t limit_ms;            /* timer that expired, 0 if none */
    const char *detail;           /* one-line reason, NULL if none */
    bool aborted;                 /* failure after the response head was forwarded */
    bool reused;                  /* sent on a pooled connection */
    bool retried;                 /* resent on a fresh connection after a stale pooled one */
    const char *timing;           /* "dns:0.3,connect:1.2,..." */
    const char *interim;          /* "103,100,102" 1xx sent to the client, NULL if none */
};

/* Opens the access log: a path (O_APPEND), "stderr", "stdout" or "off". Called again (reload,
 * log rotation) it switches every writer to the new target at once. 0, or -1 (errno) with the
 * previous target kept. */
int log_open(const char *access_log);

/* Closes the access log. */
void log_close(void);

/* True when access logging is on (callers skip formatting work otherwise). */
bool log_enabled(void);

/* Writes one access-log line. Thread-safe: one write(2) per line. */
void log_access(const struct access_record *r);

/* Error log to stderr with a timestamp and level; never clobbers errno. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
