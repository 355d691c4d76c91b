/*
 * syslog.h — log lines sent to a syslog daemon, as nginx and HAProxy send them: one datagram
 * per line, RFC 3164 ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG"), over UDP or a local unix
 * datagram socket (/dev/log). A log target "syslog:server=ADDR[,facility=F][,severity=S]
 * [,tag=T][,nohostname][,len=N]" (nginx's syntax) is parsed here; log.c decides when to send.
 *
 * Sockets are connected and non-blocking: a daemon that is down or slow costs datagrams, which
 * the caller counts, never a wait. Threads: everything but syslog_dest_new is safe from any
 * thread; a dest is immutable once made.
 */
#ifndef PORTICO_SYSLOG_H
#define PORTICO_SYSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SYSLOG_PREFIX "syslog:"
#define SYSLOG_TAG_MAX 32         /* nginx's bound: letters, digits and '_' */
#define SYSLOG_PORT 514
#define SYSLOG_LEN_MIN 480        /* RFC 5424 6.1: every receiver takes this much */
#define SYSLOG_LEN_MAX 8192       /* rsyslog's default maxMessageSize */
#define SYSLOG_LEN_DEFAULT 8192   /* a whole access line (LOG_LINE_MAX) and its header */
#define SYSLOG_CUT_MARK "[cut]"   /* ends a message that did not fit in len */

/* Severities by nginx's names (error_log levels), RFC 3164 numbers. */
#define SYSLOG_SEVERITY_LIST(X)                                                                    \
    X(SYSLOG_EMERG, "emerg")                                                                       \
    X(SYSLOG_ALERT, "alert")                                                                       \
    X(SYSLOG_CRIT, "crit")                                                                         \
    X(SYSLOG_ERR, "error")                                                                         \
    X(SYSLOG_WARNING, "warn")                                                                      \
    X(SYSLOG_NOTICE, "notice")                                                                     \
    X(SYSLOG_INFO, "info")                                                                         \
    X(SYSLOG_DEBUG, "debug")

enum syslog_severity {
#define X(id, name) id,
    SYSLOG_SEVERITY_LIST(X)
#undef X
    SYSLOG_SEVERITY_COUNT
};

/* A parsed target. */
struct syslog_spec {
    struct sockaddr_storage addr;      /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t addrlen;
    int facility;                      /* 0-23 (local7: 23) */
    enum syslog_severity severity;     /* of every access line */
    bool severity_set;                 /* severity= was given */
    bool nohostname;                   /* no HOST field (a local daemon adds its own) */
    size_t len;                        /* longest datagram, header included */
    char tag[SYSLOG_TAG_MAX + 1];
};

/* Whether a log target is a syslog one ("syslog:..."). */
bool syslog_target_is(const char *target);

/* Parses "syslog:server=...,..." into *out. 0, or -1 with a reason in why[whylen] (which
 * parameter, and what it takes). */
int syslog_parse(const char *target, struct syslog_spec *out, char *why, size_t whylen);

/* A non-blocking datagram socket connected to the spec's server. -1 (errno): ENOENT for a
 * missing unix socket, ECONNREFUSED for one nobody reads, ENETUNREACH or EAFNOSUPPORT for an
 * address this host cannot send to. */
int syslog_open(const struct syslog_spec *s);

/* What a sender needs: the spec's header parts, the host name and pid as of making. */
struct syslog_dest;

/* A dest for the spec (malloc'd; free() frees it). NULL when out of memory. */
struct syslog_dest *syslog_dest_new(const struct syslog_spec *s);

/* A new socket to the dest's server (syslog_open). */
int syslog_dest_open(const struct syslog_dest *d);

/* Whether two dests would write the same header to the same server. */
bool syslog_dest_same(const struct syslog_dest *a, const struct syslog_dest *b);

/* The dest's own severity (the access log's). */
enum syslog_severity syslog_dest_severity(const struct syslog_dest *d);

/* Sends each line of p[0..n) (lines end in '\n', which is not sent) as one datagram to fd, all
 * with one header (the time at, in seconds of CLOCK_REALTIME: the caller's reading of the clock
 * its lines' times come from, severity sev), in as few sendmmsg(2) calls as it takes. A line
 * longer than the dest's len is cut and ends in SYSLOG_CUT_MARK. Never waits. Returns how many
 * lines were not sent, *err the errno of the last refusal. */
size_t syslog_send_lines(int fd, const struct syslog_dest *d, enum syslog_severity sev,
                         time_t at, const char *p, size_t n, int *err);

/* The header "<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: " for the time t into buf[size]; its length
 * (pure: the unit test's). */
size_t syslog_header(const struct syslog_dest *d, enum syslog_severity sev, time_t t, char *buf,
                     size_t size);

#endif
