/*
 * log.h — the access log (one line per exchange, JSON or key=value, written from a buffer per
 * worker) and the error log (informational and error messages, never mixed into a file access
 * log). The failure names are those of the Portico-Error header and the metrics.
 *
 * Threads: log_open, log_error_open, log_reopen and log_close are called by the main thread
 * only; a struct log_buffer belongs to one worker thread; log_error & co and log_access are
 * safe from any thread.
 */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"
#include "portico/timing.h"

/* access_log_format values. */
#define LOG_FORMAT_LIST(X)                                                                         \
    X(LOG_FORMAT_JSON, "json")                                                                     \
    X(LOG_FORMAT_TEXT, "text")

enum log_format {
#define X(id, name) id,
    LOG_FORMAT_LIST(X)
#undef X
    LOG_FORMAT_COUNT
};

/* log_level values, most severe first: a level shows its messages and those above it. */
#define LOG_LEVEL_LIST(X)                                                                          \
    X(LOG_ERROR, "error")                                                                          \
    X(LOG_WARN, "warn")                                                                            \
    X(LOG_INFO, "info")                                                                            \
    X(LOG_DEBUG, "debug")

enum log_level {
#define X(id, name) id,
    LOG_LEVEL_LIST(X)
#undef X
    LOG_LEVEL_COUNT
};

/* The client's protocol as logged ("HTTP/1.1"); LOG_PROTO_NONE (no request line parsed) is
 * logged as null / "-". */
#define LOG_PROTO_LIST(X)                                                                          \
    X(LOG_PROTO_NONE, "-")                                                                         \
    X(LOG_PROTO_HTTP10, "HTTP/1.0")                                                                \
    X(LOG_PROTO_HTTP11, "HTTP/1.1")                                                                \
    X(LOG_PROTO_HTTP20, "HTTP/2.0")

enum log_proto {
#define X(id, name) id,
    LOG_PROTO_LIST(X)
#undef X
    LOG_PROTO_COUNT
};

#define LOG_LINE_MAX 4096   /* longest access line, newline included (PIPE_BUF: a line written
                             * alone to a pipe is never interleaved with another writer's) */
#define LOG_FLUSH_MS 1000   /* a worker flushes its buffer at least this often */

/*
 * One finished exchange. Every pointer is borrowed for the duration of the call and may be NULL
 * (logged as null, or left out of a text line). Spans (pointer + length) come from the client
 * and are escaped; NUL-terminated strings come from Portico or its configuration.
 */
struct access_record {
    uint64_t time_ms;                  /* wall clock (ms since the epoch); 0: now */
    const char *request_id;
    const char *trace_id;              /* 32 hex digits (trace.h) */
    const char *client;                /* "127.0.0.1:50312"; the address alone when a trusted
                                          proxy named it ([proxy] real_ip) */
    const char *peer;                  /* then the connection's own "127.0.0.1:50312", else
                                          NULL (the client is the peer) */
    const char *method;                /* span */
    size_t method_len;
    const char *host;                  /* span: Host or the absolute-form authority */
    size_t host_len;
    const char *target;                /* span: the request target as received ("path") */
    size_t target_len;
    enum log_proto proto;
    int status;                        /* sent, or 499 when the client left first */
    int upstream_status;               /* final status from the origin, 0: it never answered */
    enum failure_type failure;
    enum phase phase;                  /* where the exchange ended (PHASE_DONE on success) */
    int tls_alert;                     /* the TLS alert the origin refused the handshake with,
                                          + 1 (0: none): /status says tls_alert_received, as
                                          the response's Proxy-Status did */
    const char *route;
    const char *upstream;
    const char *origin;                /* the address used last */
    unsigned attempts;                 /* requests sent to origins (2 after a retry) */
    const char *sticky;                /* a sticky upstream's: "hit", "new", "redispatched";
                                          NULL: none (sticky.h) */
    uint64_t bytes_in;                 /* request body bytes received (a tunnel's: and those
                                          it took from the client) */
    uint64_t bytes_out;                /* response body bytes sent to the client (a tunnel's:
                                          and those it took from the origin) */
    const uint16_t *interim_codes;     /* the 1xx sent to the client, in order */
    unsigned ninterim;
    const char *fault;                 /* injected fault rule, NULL when none */
    const char *user_agent;            /* span */
    size_t user_agent_len;
    const char *forwarded_for;         /* span: the client's first X-Forwarded-For, as received */
    size_t forwarded_for_len;
    const char *client_subject;        /* the subject of the client's verified certificate
                                          (tls_verify_client, RFC 2253), NULL: none */
    struct timings timings;            /* phase durations; total is the whole exchange (a
                                          tunnel's included) */
    bool tunnel;                       /* the exchange switched protocols (101): the line is
                                          written when its tunnel ends */
    uint64_t tunnel_us;                /* how long the tunnel lived, when there was one */
    uint64_t limit_ms;                 /* timer that expired, 0 if none */
    const char *detail;                /* one-line reason */
    bool aborted;                      /* failure after the response head was forwarded */
    bool reused;                       /* sent on a pooled connection */
    bool retried;                      /* resent on a fresh connection after a stale pooled one */
    bool body_unread;                  /* answered before the request body all came: its rest is
                                          read and dropped, or cut, after the line (metrics.h:
                                          enum discard_end) */
};

/* ---- names ---- */

/* "json", "warn", "HTTP/1.1"... Never NULL. */
const char *log_format_name(enum log_format f);
const char *log_level_name(enum log_level l);
const char *log_proto_name(enum log_proto p);

/* Reverse lookups for the config parser: 0 and *out set when name is known, -1 otherwise. */
int log_format_from_name(const char *name, enum log_format *out);
int log_level_from_name(const char *name, enum log_level *out);

/* ---- formatting (pure) ---- */

/* Formats one access line, newline included, into buf[size]. Every field has a length cap, so
 * that any record fits in LOG_LINE_MAX (long values are cut). r->time_ms 0 stands for now.
 * Returns the length, or 0 when size < LOG_LINE_MAX. */
size_t log_format_access(const struct access_record *r, enum log_format format, char *buf,
                         size_t size);

/* A copy of r with everything it points to, in one allocation (free() frees it all): a line
 * written later than its exchange ends, a tunnel's at the tunnel's end. NULL when out of
 * memory. */
struct access_record *log_record_copy(const struct access_record *r);

/* ---- the access log ---- */

/* Whether a log target names a file: anything but "stderr", "stdout" and "off". */
bool log_target_is_file(const char *target);

/* Opens the access log: a path (O_APPEND, created 0640), "stderr", "stdout" or "off". Called
 * again (reload) it switches every writer to the new target at once, between two writes. 0, or
 * -1 (errno) with the previous target kept; EINVAL when the path is the error log's file. */
int log_open(const char *access_log);

/* A reload: moves both logs to their new targets (error_log a path, "stderr" or "stdout";
 * access_log also "off"), each checked against the other's new file only, so that the two may
 * trade files. 0, or -1 (errno) with *failed naming the log that could not be opened ("error_log"
 * or "access_log"; EINVAL: the two are one file) and both logs kept as they were; an error
 * once the error log moved keeps the previous access log only. */
int log_switch(const char *access_log, const char *error_log, enum log_level level,
               const char **failed);

/* A log that log_reopen could not open again: "access_log" or "error_log", its path (valid
 * until the next log_open, log_error_open, log_switch or log_close) and errno. */
struct log_reopen_failure {
    const char *log;
    const char *path;
    int err;
};

/* SIGUSR1: opens the access and error log paths again (after a rotation renamed them) and
 * switches the writers over; lines buffered or being written are not lost or split.
 * stderr/stdout targets are left alone. Returns how many of the two could not be reopened (0-2),
 * each described in failed[] (so that the operator learns which file, where, and why): such a log
 * keeps writing to its previous file, and the other one moves on all the same. */
int log_reopen(struct log_reopen_failure failed[2]);

/* Closes both logs (the error log falls back to stderr). At exit, after the workers stopped. */
void log_close(void);

/* True when access logging is on (callers skip building the record otherwise). */
bool log_enabled(void);

/* Lines lost since start because a write failed (full disk, closed pipe). */
uint64_t log_dropped_lines(void);

/* The same for the error log: its own lines lost since start (a failed write cannot say so in
 * the error log itself; the counter can). */
uint64_t log_error_dropped_lines(void);

/* A worker's access-log buffer: lines are formatted into it and written in batches, one
 * write(2) of whole lines per flush. One per worker thread, never shared. */
struct log_buffer;

/* Creates a buffer writing lines in `format`. NULL when out of memory. */
struct log_buffer *log_buffer_new(enum log_format format);

/* Formats one line into the buffer; writes the buffer first when the line might not fit.
 * Nothing when the access log is off. */
void log_buffer_append(struct log_buffer *lb, const struct access_record *r);

/* Writes what the buffer holds (the worker's LOG_FLUSH_MS timer, and before it exits). */
void log_buffer_flush(struct log_buffer *lb);

/* Bytes waiting in the buffer. */
size_t log_buffer_pending(const struct log_buffer *lb);

/* Flushes and frees. NULL is a no-op. */
void log_buffer_free(struct log_buffer *lb);

/* ---- the error log ---- */

/* Sets the error log: "stderr" (the default), "stdout" or a path, and the least severe level
 * written. 0, or -1 (errno) with the previous target kept; EINVAL when the path is the access
 * log's file. */
int log_error_open(const char *target, enum log_level level);

/* True when messages of this level are written (skip expensive arguments otherwise). */
bool log_level_enabled(enum log_level level);

/* One error-log line "TIME [level] message". Never clobbers errno. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An info line about one connection's trouble (a failed TLS handshake, an HTTP/2 protocol
 * error or flood, a tunnel that timed out or was cut): not Portico's error, and rate-limited
 * per worker (20 at once, then 10 a second; the next line written says how many were left
 * out). */
void log_client(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A problem that stops a start or a reload (an address in use, too few descriptors):
 * "portico: message" on stderr, where whoever starts Portico looks, and an error line in the
 * error log when that is a file, where a daemon's failed reload is looked for. Main thread. */
void log_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
