/*
 * log.c — access log and error log. See log.h.
 *
 * Access lines are formatted without printf into a buffer per worker (fmt.c) and written in
 * batches: one write(2) of whole lines per flush, so the request path makes no system call for
 * most lines and lines of different workers never interleave (O_APPEND on a file; on a pipe or
 * terminal a flush is cut into writes of at most PIPE_BUF bytes, which the kernel keeps whole).
 *
 * Either log may go to syslog instead (syslog.h): one datagram per line, the same lines, sent
 * by each worker at its flush on one shared socket, with no lock.
 *
 * Both logs are our own descriptors, so that a reload or a rotation swaps the file under the
 * writers with one dup3(): a write in progress finishes on the old file, the next goes to the
 * new one, and no thread ever writes to a closed or reused descriptor.
 */
#include "portico/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "portico/config_limits.h"
#include "portico/fault.h"
#include "portico/fmt.h"
#include "portico/syslog.h"
#include "portico/util.h"

/* ---- names ---- */

static const char *const format_names[LOG_FORMAT_COUNT] = {
#define X(id, nm) [id] = nm,
    LOG_FORMAT_LIST(X)
#undef X
};

static const char *const level_names[LOG_LEVEL_COUNT] = {
#define X(id, nm) [id] = nm,
    LOG_LEVEL_LIST(X)
#undef X
};

static const char *const proto_names[LOG_PROTO_COUNT] = {
#define X(id, nm) [id] = nm,
    LOG_PROTO_LIST(X)
#undef X
};

const char *log_format_name(enum log_format f)
{
    return (unsigned)f < LOG_FORMAT_COUNT ? format_names[f] : "?";
}

const char *log_level_name(enum log_level l)
{
    return (unsigned)l < LOG_LEVEL_COUNT ? level_names[l] : "?";
}

const char *log_proto_name(enum log_proto p)
{
    return (unsigned)p < LOG_PROTO_COUNT ? proto_names[p] : "?";
}

static int lookup(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

int log_format_from_name(const char *name, enum log_format *out)
{
    int i = lookup(format_names, LOG_FORMAT_COUNT, name);
    if (i < 0)
        return -1;
    *out = (enum log_format)i;
    return 0;
}

int log_level_from_name(const char *name, enum log_level *out)
{
    int i = lookup(level_names, LOG_LEVEL_COUNT, name);
    if (i < 0)
        return -1;
    *out = (enum log_level)i;
    return 0;
}

/* ---- formatting ---- */

/* Length caps of the variable fields, in output bytes. Their sum with the fixed keys and
 * numbers stays under LOG_LINE_MAX (test_log checks a record with every field too long). */
enum {
    CAP_ID = 64,                       /* ours are under 48 bytes, a client's at most 40 */
    CAP_TRACE = 40,                    /* 32 hex digits */
    CAP_CLIENT = 64,                   /* and peer: PEER_ADDR_MAX */
    CAP_METHOD = 32,
    CAP_HOST = 200,
    CAP_PATH = 1000,
    CAP_NAME = CFG_NAME_MAX,           /* route, upstream: any valid name, whole */
    CAP_FAULT = FAULT_NAME_MAX,        /* fault rule */
    CAP_ORIGIN = CFG_ORIGIN_TEXT_MAX,  /* an origin as written, whole */
    CAP_AGENT = 264,                   /* 400 before forwarded_for, 300 before the queue's timing:
                                          real ones are under 250 */
    CAP_FORWARDED = 160,               /* ten IPv4 hops, four IPv6 ones */
    CAP_SUBJECT = 96,                  /* a client certificate's subject: CN, O, OU ... */
    CAP_DETAIL = 256,
    /* codes listed (4 bytes each): an exchange relays 32 at most, and the 100 owed after them
     * (exchange_int.h's MAX_INTERIM + 1: 32 heartbeats, then the 100) */
    MAX_INTERIM = 33,
};

#define LIT(b, s) fmt_put((b), (s), sizeof(s) - 1)

static void json_cstr(struct fmt_buf *b, const char *s, size_t max)
{
    if (s)
        fmt_json_str(b, s, strlen(s), max);
    else
        LIT(b, "null");
}

static void json_span(struct fmt_buf *b, const char *s, size_t n, size_t max)
{
    if (s)
        fmt_json_str(b, s, n, max);
    else
        LIT(b, "null");
}

static void json_status(struct fmt_buf *b, int status)
{
    if (status > 0)
        fmt_u64(b, (uint64_t)status);
    else
        LIT(b, "null");
}

static void json_bool(struct fmt_buf *b, bool v)
{
    if (v)
        LIT(b, "true");
    else
        LIT(b, "false");
}

/* Appends the 1xx codes sent, "103,100" (nothing when none); false when there were none. */
static bool interim_list(struct fmt_buf *b, const struct access_record *r)
{
    if (!r->ninterim)
        return false;
    unsigned n = MIN(r->ninterim, (unsigned)MAX_INTERIM);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            fmt_char(b, ',');
        fmt_u64(b, r->interim_codes[i]);
    }
    return true;
}

/* Each phase's key as it goes before its value, with its length: "\"dns\":" in JSON, "dns:" in
 * text. Literals, so that a line copies them instead of measuring and quoting names. */
struct timing_key {
    const char *text;
    size_t len;
};

static const struct timing_key timing_keys[2][TIMING_COUNT] = {
#define X(id, nm) [id] = {nm ":", sizeof(nm ":") - 1},
    {TIMING_LIST(X)},
#undef X
#define X(id, nm) [id] = {"\"" nm "\":", sizeof("\"" nm "\":") - 1},
    {TIMING_LIST(X)},
#undef X
};

/* Appends the phases present in `mask`, in order: "dns":0.300,... in JSON, dns:0.300,... in
 * text. */
static void timing_list(struct fmt_buf *b, const struct timings *t, unsigned mask, bool json)
{
    const struct timing_key *keys = timing_keys[json];
    unsigned present = t->present & mask & ((1u << TIMING_COUNT) - 1);
    for (bool first = true; present; present &= present - 1, first = false) {
        int p = __builtin_ctz(present);
        if (!first)
            fmt_char(b, ',');
        fmt_put(b, keys[p].text, keys[p].len);
        fmt_ms3(b, t->us[p]);
    }
}

/* The phases present but the total, then the tunnel's life after a 101, then, in JSON, the
 * total (the text line has it as dur_ms). */
static void timings_of(struct fmt_buf *b, const struct access_record *r, bool json)
{
    size_t mark = b->len;
    timing_list(b, &r->timings, ~(1u << TIMING_TOTAL), json);
    if (r->tunnel) {
        if (b->len != mark)
            fmt_char(b, ',');
        if (json)
            LIT(b, "\"tunnel\":");
        else
            LIT(b, "tunnel:");
        fmt_ms3(b, r->tunnel_us);
    }
    if (json && timings_has(&r->timings, TIMING_TOTAL)) {
        if (b->len != mark)
            fmt_char(b, ',');
        timing_list(b, &r->timings, 1u << TIMING_TOTAL, true);
    }
}

static void format_json(struct fmt_buf *b, const struct access_record *r)
{
    LIT(b, "{\"time\":\"");
    fmt_time(b, r->time_ms ? r->time_ms : wall_ms());
    LIT(b, "\",\"request_id\":");
    json_cstr(b, r->request_id, CAP_ID);
    LIT(b, ",\"trace_id\":");
    json_cstr(b, r->trace_id, CAP_TRACE);
    LIT(b, ",\"client\":");
    json_cstr(b, r->client, CAP_CLIENT);
    if (r->peer) { /* every key in every line: null when the peer is the client */
        LIT(b, ",\"peer\":");
        json_cstr(b, r->peer, CAP_CLIENT);
    } else {
        LIT(b, ",\"peer\":null");
    }
    LIT(b, ",\"method\":");
    json_span(b, r->method, r->method_len, CAP_METHOD);
    LIT(b, ",\"host\":");
    json_span(b, r->host, r->host_len, CAP_HOST);
    LIT(b, ",\"path\":");
    json_span(b, r->target, r->target_len, CAP_PATH);
    LIT(b, ",\"proto\":");
    enum log_proto proto = r->proto;
    if (proto == LOG_PROTO_NONE || (unsigned)proto >= LOG_PROTO_COUNT) {
        LIT(b, "null");
    } else {
        fmt_char(b, '"');
        fmt_str(b, proto_names[proto]);
        fmt_char(b, '"');
    }
    LIT(b, ",\"status\":");
    json_status(b, r->status);
    LIT(b, ",\"upstream_status\":");
    json_status(b, r->upstream_status);
    LIT(b, ",\"failure\":");
    if (r->failure == FAIL_NONE) {
        LIT(b, "null");
    } else {
        fmt_char(b, '"');
        fmt_str(b, failure_name(r->failure));
        fmt_char(b, '"');
    }
    LIT(b, ",\"phase\":\"");
    fmt_str(b, phase_name(r->phase));
    LIT(b, "\",\"route\":");
    json_cstr(b, r->route, CAP_NAME);
    LIT(b, ",\"upstream\":");
    json_cstr(b, r->upstream, CAP_NAME);
    LIT(b, ",\"origin\":");
    json_cstr(b, r->origin, CAP_ORIGIN);
    LIT(b, ",\"attempts\":");
    fmt_u64(b, r->attempts);
    LIT(b, ",\"sticky\":");
    json_cstr(b, r->sticky, CAP_NAME);
    LIT(b, ",\"bytes_in\":");
    fmt_u64(b, r->bytes_in);
    LIT(b, ",\"bytes_out\":");
    fmt_u64(b, r->bytes_out);
    LIT(b, ",\"interim\":[");
    interim_list(b, r);
    fmt_char(b, ']');
    LIT(b, ",\"fault\":");
    json_cstr(b, r->fault, CAP_FAULT);
    LIT(b, ",\"user_agent\":");
    json_span(b, r->user_agent, r->user_agent_len, CAP_AGENT);
    LIT(b, ",\"forwarded_for\":");
    json_span(b, r->forwarded_for, r->forwarded_for_len, CAP_FORWARDED);
    LIT(b, ",\"client_subject\":");
    json_cstr(b, r->client_subject, CAP_SUBJECT);
    LIT(b, ",\"timing_ms\":{");
    timings_of(b, r, true);
    LIT(b, "},\"limit_ms\":");
    if (r->limit_ms)
        fmt_u64(b, r->limit_ms);
    else
        LIT(b, "null");
    LIT(b, ",\"detail\":");
    json_cstr(b, r->detail, CAP_DETAIL);
    LIT(b, ",\"aborted\":");
    json_bool(b, r->aborted);
    LIT(b, ",\"reused\":");
    json_bool(b, r->reused);
    LIT(b, ",\"retried\":");
    json_bool(b, r->retried);
    /* the last key and the end, one copy: most lines have it false */
    if (r->body_unread)
        LIT(b, ",\"body_unread\":true}");
    else
        LIT(b, ",\"body_unread\":false}");
}

/* Values from Portico or its configuration, unquoted in a text line ("-" for none). Control
 * bytes and spaces are left out, so that not even a bad value can start a key or a line. */
static void text_raw(struct fmt_buf *b, const char *s, size_t max)
{
    if (!s) {
        fmt_char(b, '-');
        return;
    }
    char out[CAP_ORIGIN];
    size_t n = 0;
    for (; *s && n < MIN(max, sizeof(out)); s++)
        if ((unsigned char)*s > ' ' && *s != 0x7f)
            out[n++] = *s;
    fmt_put(b, out, n);
}

static void text_span(struct fmt_buf *b, const char *s, size_t n, size_t max)
{
    fmt_quoted(b, s ? s : "", s ? n : 0, max);
}

/* Today's key=value line, extended with the fields of issue 9 where a reader of the old line
 * does not trip over them. Optional keys appear only when they say something. */
static void format_text(struct fmt_buf *b, const struct access_record *r)
{
    const struct timings t = r->timings;
    fmt_time(b, r->time_ms ? r->time_ms : wall_ms());
    LIT(b, " id=");
    text_raw(b, r->request_id, CAP_ID);
    if (r->trace_id) {
        LIT(b, " trace_id=");
        text_raw(b, r->trace_id, CAP_TRACE);
    }
    LIT(b, " client=");
    text_raw(b, r->client, CAP_CLIENT);
    if (r->peer) { /* only when real_ip named another client: most lines have none */
        LIT(b, " peer=");
        text_raw(b, r->peer, CAP_CLIENT);
    }
    LIT(b, " method=");
    text_span(b, r->method, r->method_len, CAP_METHOD);
    LIT(b, " target=");
    text_span(b, r->target, r->target_len, CAP_PATH);
    if (r->host) {
        LIT(b, " host=");
        text_span(b, r->host, r->host_len, CAP_HOST);
    }
    LIT(b, " proto=");
    fmt_str(b, log_proto_name(r->proto));
    LIT(b, " status=");
    fmt_u64(b, r->status > 0 ? (uint64_t)r->status : 0);
    if (r->upstream_status > 0) {
        LIT(b, " upstream_status=");
        fmt_u64(b, (uint64_t)r->upstream_status);
    }
    LIT(b, " bytes_out=");
    fmt_u64(b, r->bytes_out);
    LIT(b, " bytes_in=");
    fmt_u64(b, r->bytes_in);
    if (timings_has(&t, TIMING_TOTAL)) {
        LIT(b, " dur_ms=");
        fmt_ms3(b, t.us[TIMING_TOTAL]);
    }
    if (r->route) {
        LIT(b, " route=");
        text_raw(b, r->route, CAP_NAME);
        LIT(b, " upstream=");
        text_raw(b, r->upstream, CAP_NAME);
    }
    if (r->origin) {
        LIT(b, " origin=");
        text_raw(b, r->origin, CAP_ORIGIN);
        if (r->reused)
            LIT(b, " reused=yes");
        else
            LIT(b, " reused=no");
        if (r->retried)
            LIT(b, " retried=yes");
    }
    if (r->attempts) {
        LIT(b, " attempts=");
        fmt_u64(b, r->attempts);
    }
    if (r->sticky) {
        LIT(b, " sticky=");
        fmt_str(b, r->sticky);
    }
    if (r->failure != FAIL_NONE) {
        LIT(b, " failure=");
        fmt_str(b, failure_name(r->failure));
        LIT(b, " phase=");
        fmt_str(b, phase_name(r->phase));
    } else if (r->status == 499 || r->phase != PHASE_DONE) {
        LIT(b, " phase="); /* where the client left, or stalled, or its head was refused */
        fmt_str(b, phase_name(r->phase));
    }
    if (r->limit_ms) { /* an origin's timer, or the client's (a 408) */
        LIT(b, " limit_ms=");
        fmt_u64(b, r->limit_ms);
    }
    if (r->aborted) /* an origin's failure, or a refusal of the client's body (its detail says) */
        LIT(b, " aborted=after_head");
    if (r->body_unread)
        LIT(b, " body_unread=yes");
    if (r->fault) {
        LIT(b, " fault=");
        text_raw(b, r->fault, CAP_FAULT);
    }
    if (r->detail) {
        LIT(b, " detail=");
        fmt_quoted(b, r->detail, strlen(r->detail), CAP_DETAIL);
    }
    size_t mark = b->len;
    LIT(b, " interim=");
    if (!interim_list(b, r))
        b->len = mark;                 /* none: no key either */
    if (r->user_agent) {
        LIT(b, " user_agent=");
        text_span(b, r->user_agent, r->user_agent_len, CAP_AGENT);
    }
    if (r->forwarded_for) {
        LIT(b, " forwarded_for=");
        text_span(b, r->forwarded_for, r->forwarded_for_len, CAP_FORWARDED);
    }
    if (r->client_subject) {
        LIT(b, " client_subject=");
        fmt_quoted(b, r->client_subject, strlen(r->client_subject), CAP_SUBJECT);
    }
    if ((t.present & ~(1u << TIMING_TOTAL)) || r->tunnel) {
        LIT(b, " timing=");
        timings_of(b, r, false);
    }
}

size_t log_format_access(const struct access_record *r, enum log_format format, char *buf,
                         size_t size)
{
    if (size < LOG_LINE_MAX)
        return 0;
    struct fmt_buf b;
    fmt_init(&b, buf, LOG_LINE_MAX - 1); /* the newline always has its byte */
    if (format == LOG_FORMAT_TEXT)
        format_text(&b, r);
    else
        format_json(&b, r);
    buf[b.len++] = '\n';
    return b.len;
}

/* ---- a record kept for later ---- */

/* Copies n bytes of s to *at (and a NUL when cstr), moving *at past them. NULL stays NULL. */
static const char *keep(char **at, const char *s, size_t n, bool cstr)
{
    if (!s)
        return NULL;
    char *d = *at;
    memcpy(d, s, n);
    if (cstr)
        d[n++] = '\0';
    *at = d + n;
    return d;
}

struct access_record *log_record_copy(const struct access_record *r)
{
    /* The strings Portico made (NUL-terminated), then the client's spans. */
    const char *const *const strs[] = {&r->request_id, &r->trace_id, &r->client, &r->peer,
                                       &r->route, &r->upstream, &r->origin, &r->fault,
                                       &r->detail, &r->client_subject};
    size_t lens[ARRAY_LEN(strs)];
    size_t codes = r->ninterim * sizeof(*r->interim_codes);
    size_t size = sizeof(*r) + codes + r->method_len + r->host_len + r->target_len +
                  r->user_agent_len + r->forwarded_for_len;
    for (size_t i = 0; i < ARRAY_LEN(strs); i++) {
        lens[i] = *strs[i] ? strlen(*strs[i]) : 0;
        size += lens[i] + 1;
    }
    struct access_record *c = malloc(size);
    if (!c)
        return NULL;
    *c = *r;
    char *at = (char *)(c + 1); /* the codes first: aligned as the record is */
    if (r->interim_codes) {
        memcpy(at, r->interim_codes, codes);
        c->interim_codes = (const uint16_t *)(void *)at;
        at += codes;
    }
    const char **const into[] = {&c->request_id, &c->trace_id, &c->client, &c->peer,
                                 &c->route, &c->upstream, &c->origin, &c->fault, &c->detail,
                                 &c->client_subject};
    for (size_t i = 0; i < ARRAY_LEN(strs); i++)
        *into[i] = keep(&at, *strs[i], lens[i], true);
    c->method = keep(&at, r->method, r->method_len, false);
    c->host = keep(&at, r->host, r->host_len, false);
    c->target = keep(&at, r->target, r->target_len, false);
    c->user_agent = keep(&at, r->user_agent, r->user_agent_len, false);
    c->forwarded_for = keep(&at, r->forwarded_for, r->forwarded_for_len, false);
    return c;
}

/* ---- descriptors ---- */

static _Atomic int access_fd = -1;
static _Atomic bool access_on;         /* set (release) after access_fd: a reader that sees it
                                        * on (acquire) sees the descriptor too */
static _Atomic size_t access_chunk = PIPE_BUF; /* largest write kept whole: SIZE_MAX on a file */
static _Atomic uint64_t dropped;       /* lines lost to failed writes */
static _Atomic bool access_stalled;    /* its reader let a wait run out (write_waiting) */
static _Atomic bool access_failing;    /* lines are being dropped (the last write failed) */
static _Atomic bool access_said;       /* the error log said so, and has not said it ended */
static _Atomic uint64_t access_said_us; /* when it last said so */
static char *access_path;              /* NULL for stderr/stdout/off; main thread only */
static bool access_turned_off;         /* access_log = off: its file is to close (sinks_settle);
                                          main thread only */

static _Atomic int error_fd = -1;      /* -1: stderr itself */
static _Atomic int error_level = LOG_INFO;
static _Atomic bool error_stalled;
static _Atomic uint64_t error_dropped; /* error-log lines lost to failed writes */
static char *error_path;

/* The end of a line that a short write left behind. A socket (MSG_DONTWAIT) or a full disk
 * takes part of a write and refuses the rest: that rest goes out before any other byte to the
 * same file (the other log's included: both are stderr by default), so that no line is cut
 * short and another glued to it. Writers take turns under rest_lock (a flush a second per
 * worker, and error lines: rare), and a reopen drops the rest with the file it belongs to. */
struct line_rest {
    _Atomic int *slot;                 /* its log's descriptor */
    size_t len;
    char data[LOG_LINE_MAX];
};

/* A log sent to syslog: its socket, moved under a fixed number as a file's descriptor is (so
 * that no sender ever sends to a closed one), and its header; dest NULL while the log is not
 * syslog's. A dest is set after its socket (release): a sender that sees it sees the socket. */
struct sys_sink {
    _Atomic int fd;
    _Atomic(const struct syslog_dest *) dest;
    _Atomic uint64_t retry_us;         /* a sender's last connect again (sink_reconnect) */
};

static struct sys_sink access_sys = {.fd = -1};
static struct sys_sink error_sys = {.fd = -1};

/* Held by whoever moves a sink's socket: the main thread (a load, reload, SIGUSR1) and a sender
 * connecting again, who only tries it, and gives up when a reload moved the sink meanwhile. */
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;

/* Every dest made, kept while a sender may hold one: sinks_settle frees those no log uses once no
 * sender is between reading a dest and its send. A reload that names a header seen before takes
 * that one. Main thread. */
static struct syslog_dest **dests;
static size_t ndests;

/* Threads between reading a log's dest (or its absence) and their write or send: while none is,
 * a log's old file and the dests no log uses may go (sinks_settle). */
static _Atomic unsigned senders;

static pthread_mutex_t rest_lock = PTHREAD_MUTEX_INITIALIZER;
static struct line_rest access_rest = {.slot = &access_fd};
static struct line_rest error_rest = {.slot = &error_fd};

/* fd, or a description of its own opened O_NONBLOCK when fd is a pipe, FIFO or terminal: a
 * reader that stops must cost lines (counted), never a worker stuck in write(2). Reopened through
 * /proc/self/fd, so that the shell's or the container's stdout keeps its own flags. A regular
 * file never waits for a reader, and a socket (journald's stdout) is written with MSG_DONTWAIT
 * (write_nowait). Without /proc, or with no reader at that moment, fd stays as it is. A pipe is
 * grown to 1 MiB (fs.pipe-max-size's default) where allowed, to take bursts. */
static int own_nonblocking(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode))
        return fd;
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int own = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
    if (own < 0)
        return fd;
    close(fd);
    if (S_ISFIFO(st.st_mode))
        (void)fcntl(own, F_SETPIPE_SZ, 1 << 20);
    return own;
}

/* Opens a log target: "stderr", "stdout" or a path (appended to, created 0640: client addresses
 * and query strings are no one else's business, and logrotate's `create 0640` keeps the rotated
 * files so: a new file readable by all left every first day's log open to any local user). At
 * start a FIFO waits for its reader (wait_reader); a reopen (SIGUSR1) or a reload runs on the
 * main thread, which takes the signals: a FIFO whose reader has gone fails there (ENXIO) and
 * the previous log stays, instead of a wait that no SIGTERM could end. */
static int open_target(const char *target, bool wait_reader)
{
    if (syslog_target_is(target)) { /* a socket, checked at load: parsed here again */
        struct syslog_spec spec;
        char why[256];
        if (syslog_parse(target, &spec, why, sizeof(why)) != 0) {
            errno = EINVAL;
            return -1;
        }
        return syslog_open(&spec);
    }
    int fd, flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (wait_reader ? 0 : O_NONBLOCK);
    if (strcmp(target, "stderr") == 0)
        fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    else if (strcmp(target, "stdout") == 0)
        fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        fd = open(target, flags, 0640);
    return fd < 0 ? fd : own_nonblocking(fd);
}

/* One write that never blocks: send with MSG_DONTWAIT to a socket, write(2) to anything else
 * (a file, or a description open_target made non-blocking). */
static ssize_t write_nowait(int fd, const void *p, size_t n)
{
    ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    return w < 0 && errno == ENOTSOCK ? write(fd, p, n) : w;
}

#define LOG_WAIT_MS 20 /* what a slow reader gets per write to make room */

/* One write of p[0..n), whole or not at all (n is at most PIPE_BUF off a regular file). A reader
 * that is only slow gets up to LOG_WAIT_MS to make room; once one let that run out (*stalled),
 * no write waits for it again until one goes through: a stopped reader costs lines, never a
 * stuck worker, and a live one loses none. */
static ssize_t write_waiting(int fd, const char *p, size_t n, _Atomic bool *stalled)
{
    uint64_t until = 0;
    for (;;) {
        ssize_t w = write_nowait(fd, p, n);
        if (w >= 0) {
            atomic_store_explicit(stalled, false, memory_order_relaxed);
            return w;
        }
        if (errno == EINTR)
            continue;
        if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
            atomic_load_explicit(stalled, memory_order_relaxed))
            return -1;
        uint64_t now = now_us();
        until = until ? until : now + LOG_WAIT_MS * 1000;
        if (now >= until) {
            atomic_store_explicit(stalled, true, memory_order_relaxed);
            return -1;
        }
        struct pollfd out = {.fd = fd, .events = POLLOUT};
        (void)poll(&out, 1, (int)((until - now + 999) / 1000));
    }
}

bool log_target_is_file(const char *target)
{
    return strcmp(target, "stderr") != 0 && strcmp(target, "stdout") != 0 &&
           strcmp(target, "off") != 0 && !syslog_target_is(target);
}

/* True when fd and the descriptor in other are the same regular file: the access log and the
 * error log must never share a file. */
static bool same_file(int fd, int other)
{
    struct stat a, b;
    if (other < 0 || fstat(fd, &a) != 0 || fstat(other, &b) != 0)
        return false;
    return S_ISREG(a.st_mode) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Makes *slot refer to fd's file (fd is consumed): the first time the slot takes fd itself,
 * afterwards fd's file is moved under the slot's number, so writers never see a closed one. */
static int install(_Atomic int *slot, int fd)
{
    int cur = atomic_load(slot);
    if (cur < 0) {
        atomic_store(slot, fd);
        return 0;
    }
    int rc = dup3(fd, cur, O_CLOEXEC) < 0 ? -1 : 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Forgets the rest of a cut line, whose start went to the file being left; its line counts as
 * lost. The caller holds rest_lock. */
static void rest_forget(struct line_rest *rest)
{
    if (rest->len)
        atomic_fetch_add_explicit(rest == &access_rest ? &dropped : &error_dropped, 1,
                                  memory_order_relaxed);
    rest->len = 0;
}

/* Whether fd is the file (or pipe, or socket) the descriptor in slot writes to, and a file
 * still holds the cut line's start: one emptied since (`: > access.log`, copytruncate, to free
 * a full disk) would begin with the rest of a line it no longer has. */
static bool same_target(int fd, int slot_fd)
{
    struct stat a, b;
    return slot_fd >= 0 && fstat(fd, &a) == 0 && fstat(slot_fd, &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino && (!S_ISREG(a.st_mode) || a.st_size > 0);
}

/* install() for a log that keeps the rest of a cut line, under rest_lock: no writer is between
 * a rest and its own lines when the file changes. A reopen of the same file (a reload, SIGUSR1
 * with nothing rotated) keeps the rest: the cut line is still at the file's end, and the next
 * line would be glued to it. */
static int install_rest(_Atomic int *slot, int fd, struct line_rest *rest)
{
    pthread_mutex_lock(&rest_lock);
    bool same = rest->len && same_target(fd, atomic_load(slot));
    int rc = install(slot, fd);
    if (rc == 0 && !same)
        rest_forget(rest);
    pthread_mutex_unlock(&rest_lock);
    return rc;
}

static size_t chunk_of(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        return SIZE_MAX;
    return PIPE_BUF;
}

/* The target a reopen opens again: a file's path, or a syslog target (SIGUSR1 reconnects). */
static void set_path(char **slot, const char *target)
{
    char *copy = log_target_is_file(target) || syslog_target_is(target) ? strdup(target) : NULL;
    free(*slot);
    *slot = copy;
}

/* Moves the access log to fd's file. While the two differ in kind, flushes use the smaller
 * chunk of the two, so that no write to a pipe is ever larger than PIPE_BUF. */
static int install_access(int fd)
{
    size_t chunk = chunk_of(fd);
    atomic_store(&access_chunk, MIN(chunk, atomic_load(&access_chunk)));
    int rc = install_rest(&access_fd, fd, &access_rest);
    atomic_store(&access_chunk, rc == 0 ? chunk : chunk_of(atomic_load(&access_fd)));
    if (rc == 0) /* a new file: its first failure is news, however soon after the last one */
        atomic_store(&access_said_us, 0);
    return rc;
}

/* The dest for target's header: one kept already when the same (a reload, SIGUSR1), else a new
 * one, kept. NULL (errno) when target does not parse or memory is short. */
static const struct syslog_dest *dest_for(const char *target)
{
    struct syslog_spec spec;
    char why[256];
    if (syslog_parse(target, &spec, why, sizeof(why)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    struct syslog_dest *d = syslog_dest_new(&spec);
    struct syslog_dest **more = d ? realloc(dests, (ndests + 1) * sizeof(*dests)) : NULL;
    if (!more) {
        free(d);
        errno = ENOMEM;
        return NULL;
    }
    dests = more;
    for (size_t i = 0; i < ndests; i++) {
        if (syslog_dest_same(dests[i], d)) {
            free(d);
            return dests[i];
        }
    }
    return dests[ndests++] = d;
}

/* Moves a log to syslog: fd (consumed) under the sink's number, then the header. */
static int install_sys(struct sys_sink *sink, const char *target, int fd)
{
    const struct syslog_dest *d = dest_for(target);
    if (!d) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    pthread_mutex_lock(&sink_lock);
    int rc = install(&sink->fd, fd);
    if (rc == 0) /* seq_cst: ordered with sinks_settle's read of senders */
        atomic_store(&sink->dest, d);
    pthread_mutex_unlock(&sink_lock);
    return rc;
}

#define SINK_RETRY_US 1000000ull /* between two connects again of one log */

/* A daemon that went away and came back (rsyslog's or journald's restart) made a new socket:
 * the connected one refuses every datagram. As nginx does, the sender connects again, at most
 * once a second per log and never waiting (a unix socket or UDP connect does not), so that
 * lines flow again without SIGUSR1; those refused meanwhile stay lost. */
static void sink_reconnect(struct sys_sink *sink, const struct syslog_dest *d, int err)
{
    if (err != ECONNREFUSED && err != ENOTCONN)
        return;
    uint64_t now = now_us(), last = atomic_load_explicit(&sink->retry_us, memory_order_relaxed);
    if ((last && now - last < SINK_RETRY_US) ||
        !atomic_compare_exchange_strong(&sink->retry_us, &last, now) ||
        pthread_mutex_trylock(&sink_lock) != 0)
        return;
    if (atomic_load_explicit(&sink->dest, memory_order_acquire) == d) { /* no reload since */
        int fd = syslog_dest_open(d);
        if (fd >= 0)
            (void)install(&sink->fd, fd);
    }
    pthread_mutex_unlock(&sink_lock);
}

#define SETTLE_WAIT_US 100000 /* the longest a reload waits for senders to finish (a flush) */

/* Once no sender is in a write or send (waiting SETTLE_WAIT_US at most, a sender's flush never
 * waits longer than LOG_WAIT_MS): closes the file a log left for syslog, which a sender that
 * read "no dest" just before the move may still have been writing to, the socket of a log that
 * left syslog (for a file or off), which one that read its dest may still have been sending
 * on, and frees the dests no log uses. A sender that starts afterwards reads the current dests
 * (seq_cst, as their stores), so it never meets a closed socket nor a freed dest, and a file's
 * descriptor under rest_lock, which the file closes under (write_whole: `off` leaves the dest
 * as it was, so that no dest tells a late sender the file is gone). When
 * senders never pause, all wait for the next reload or SIGUSR1: at most one old file or socket
 * per log, and the dests of one switch. */
static bool dest_in_use(const struct syslog_dest *d)
{
    return d == atomic_load(&access_sys.dest) || d == atomic_load(&error_sys.dest);
}

static bool sinks_settled(void)
{
    bool left = ((atomic_load(&access_sys.dest) || access_turned_off) &&
                 atomic_load(&access_fd) >= 0) ||
                (atomic_load(&error_sys.dest) && atomic_load(&error_fd) >= 0) ||
                (!atomic_load(&access_sys.dest) && atomic_load(&access_sys.fd) >= 0) ||
                (!atomic_load(&error_sys.dest) && atomic_load(&error_sys.fd) >= 0);
    for (size_t i = 0; i < ndests && !left; i++)
        left = !dest_in_use(dests[i]);
    return !left;
}

static void sinks_settle(void)
{
    if (sinks_settled()) /* nothing to close or free: no wait (a reopen of file logs) */
        return;
    for (uint64_t until = now_us() + SETTLE_WAIT_US; atomic_load(&senders) != 0;) {
        if (now_us() >= until)
            return;
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
    struct {
        struct sys_sink *sink;
        struct line_rest *rest;
        bool off;
    } const logs[] = {{&access_sys, &access_rest, access_turned_off},
                      {&error_sys, &error_rest, false}};
    pthread_mutex_lock(&rest_lock);
    for (size_t i = 0; i < ARRAY_LEN(logs); i++) { /* a file left for syslog, or for off */
        if (!atomic_load(&logs[i].sink->dest) && !logs[i].off)
            continue;
        int fd = atomic_exchange(logs[i].rest->slot, -1);
        if (fd >= 0)
            close(fd);
        rest_forget(logs[i].rest);
    }
    pthread_mutex_unlock(&rest_lock);
    pthread_mutex_lock(&sink_lock); /* a sender's connect again moves sockets under it too */
    for (size_t i = 0; i < ARRAY_LEN(logs); i++) {
        if (atomic_load(&logs[i].sink->dest))
            continue;
        int fd = atomic_exchange(&logs[i].sink->fd, -1);
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&sink_lock);
    size_t kept = 0;
    for (size_t i = 0; i < ndests; i++) {
        if (dest_in_use(dests[i]))
            dests[kept++] = dests[i];
        else
            free(dests[i]);
    }
    ndests = kept;
}

/* Moves a log (its sink, and its file's slot through move_file) to target, opened as fd
 * (consumed): syslog or a file. Then sinks_settle. */
static int install_target(struct sys_sink *sink, int (*move_file)(int fd), const char *target,
                          int fd)
{
    int rc;
    if (syslog_target_is(target)) {
        rc = install_sys(sink, target, fd);
    } else if ((rc = move_file(fd)) == 0) {
        pthread_mutex_lock(&sink_lock);
        atomic_store(&sink->dest, NULL);
        pthread_mutex_unlock(&sink_lock);
    }
    if (rc == 0)
        sinks_settle();
    return rc;
}

/* The access log turned off: no line is made from now on, and the file or syslog socket it had
 * is closed (sinks_settle: a rotated, deleted log frees its disk, as nginx's `access_log off` on
 * a reload), the lines the workers still hold then dropped. */
static void access_off(void)
{
    atomic_store(&access_on, false);
    access_turned_off = true;
    set_path(&access_path, "off");
    pthread_mutex_lock(&sink_lock);
    atomic_store(&access_sys.dest, NULL);
    pthread_mutex_unlock(&sink_lock);
    sinks_settle();
}

static int install_error_file(int fd)
{
    return install_rest(&error_fd, fd, &error_rest);
}

static int install_access_target(const char *target, int fd)
{
    access_turned_off = false; /* its file is the one it moves to now */
    return install_target(&access_sys, install_access, target, fd);
}

static int install_error_target(const char *target, int fd)
{
    return install_target(&error_sys, install_error_file, target, fd);
}

/* A FIFO nobody has open for reading holds the start in open(2) until a reader comes, as nginx's
 * start is held (refusing it would order the start after its log reader's, which a supervisor
 * starting both at once cannot promise). The wait is said on stderr first, where the operator
 * looks when a start goes no further; the error log may be that very FIFO. The open that does
 * not wait is the one kept: a probe opened and closed was the reader's only writer, its close
 * an EOF (`cat` exited, and the start then waited for a reader for ever, without a word). */
static int open_waiting(const char *what, const char *target)
{
    int fd = open_target(target, false);
    struct stat st;
    if (fd >= 0 || errno != ENXIO || !log_target_is_file(target) || stat(target, &st) != 0 ||
        !S_ISFIFO(st.st_mode))
        return fd;
    fprintf(stderr, "portico: %s %s is a FIFO nobody has open for reading: waiting for a "
                    "reader to open it (SIGTERM ends the wait)\n", what, target);
    return open_target(target, true);
}

/* Opens target for the log in slot (what: its key); -1 with EINVAL when it is the file of the
 * other log. */
static int open_checked(const char *what, const char *target, const char *other_path,
                        int other_fd)
{
    int fd = open_waiting(what, target);
    if (fd >= 0 && log_target_is_file(target) && other_path && same_file(fd, other_fd)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

int log_open(const char *access_log)
{
    if (!access_log || strcmp(access_log, "off") == 0) {
        access_off();
        return 0;
    }
    int fd = open_checked("access_log", access_log, error_path, atomic_load(&error_fd));
    if (fd < 0 || install_access_target(access_log, fd) != 0)
        return -1;
    set_path(&access_path, access_log);
    atomic_store_explicit(&access_on, true, memory_order_release);
    return 0;
}

int log_error_open(const char *target, enum log_level level)
{
    if (!target || strcmp(target, "off") == 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = open_checked("error_log", target, access_path, atomic_load(&access_fd));
    if (fd < 0 || install_error_target(target, fd) != 0)
        return -1;
    set_path(&error_path, target);
    atomic_store(&error_level, (unsigned)level < LOG_LEVEL_COUNT ? (int)level : LOG_INFO);
    return 0;
}

int log_switch(const char *access_log, const char *error_log, enum log_level level,
               const char **failed)
{
    bool access = access_log && strcmp(access_log, "off") != 0;
    int efd = open_target(error_log, false);
    if (efd < 0) {
        *failed = "error_log";
        return -1;
    }
    int afd = access ? open_target(access_log, false) : -1;
    /* As at start (open_checked): one file under two paths is refused; stderr and stdout are
     * the process's, and both logs may go there (the defaults), a regular file or not. */
    bool files = access && (log_target_is_file(access_log) || log_target_is_file(error_log));
    if (access && (afd < 0 || (files && same_file(afd, efd)))) {
        int err = afd < 0 ? errno : EINVAL;
        if (afd >= 0)
            close(afd);
        close(efd);
        *failed = "access_log";
        errno = err;
        return -1;
    }
    /* Both open and apart: each moves over whatever the other held, a swap included. */
    if (install_error_target(error_log, efd) != 0) {
        if (afd >= 0)
            close(afd);
        *failed = "error_log";
        return -1;
    }
    set_path(&error_path, error_log);
    atomic_store(&error_level, (unsigned)level < LOG_LEVEL_COUNT ? (int)level : LOG_INFO);
    if (!access) {
        access_off();
        return 0;
    }
    if (install_access_target(access_log, afd) != 0) {
        *failed = "access_log";
        return -1;
    }
    set_path(&access_path, access_log);
    atomic_store_explicit(&access_on, true, memory_order_release);
    return 0;
}

int log_reopen(struct log_reopen_failure failed[2])
{
    int n = 0;
    if (access_path) {
        int fd = open_target(access_path, false);
        if (fd < 0 || install_access_target(access_path, fd) != 0)
            failed[n++] = (struct log_reopen_failure){"access_log", access_path, errno};
    }
    if (error_path) {
        int fd = open_target(error_path, false);
        if (fd < 0 || install_error_target(error_path, fd) != 0)
            failed[n++] = (struct log_reopen_failure){"error_log", error_path, errno};
    }
    return n;
}

void log_close(void)
{
    atomic_store(&access_on, false);
    pthread_mutex_lock(&rest_lock);
    struct line_rest *rests[] = {&access_rest, &error_rest};
    for (size_t i = 0; i < 2; i++) {
        int fd = atomic_exchange(rests[i]->slot, -1);
        if (fd >= 0)
            close(fd);
        rest_forget(rests[i]);
    }
    pthread_mutex_unlock(&rest_lock);
    struct sys_sink *sinks[] = {&access_sys, &error_sys};
    pthread_mutex_lock(&sink_lock);
    for (size_t i = 0; i < 2; i++) {
        atomic_store(&sinks[i]->dest, NULL);
        int fd = atomic_exchange(&sinks[i]->fd, -1);
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&sink_lock);
    for (size_t i = 0; i < ndests; i++)
        free(dests[i]);
    free(dests);
    dests = NULL;
    ndests = 0;
    set_path(&access_path, "off");
    set_path(&error_path, "off");
}

bool log_enabled(void)
{
    return atomic_load_explicit(&access_on, memory_order_acquire);
}

uint64_t log_dropped_lines(void)
{
    return atomic_load_explicit(&dropped, memory_order_relaxed);
}

uint64_t log_error_dropped_lines(void)
{
    return atomic_load_explicit(&error_dropped, memory_order_relaxed);
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        lines++;
    return lines;
}

/* Writes out what is left of a cut line; false when it could not all go. */
static bool rest_out(int fd, struct line_rest *rest, _Atomic bool *stalled)
{
    while (rest->len > 0) {
        ssize_t w = write_waiting(fd, rest->data, rest->len, stalled);
        if (w <= 0)
            return false;
        rest->len -= (size_t)w;
        memmove(rest->data, rest->data + w, rest->len);
    }
    return true;
}

/* Whether the other log's cut line waits for fd's file: the two logs may share one (stderr). */
static bool rest_waits_on(const struct line_rest *other, int fd)
{
    if (other->len == 0)
        return false;
    int ofd = atomic_load_explicit(other->slot, memory_order_relaxed);
    if (ofd < 0 && other == &error_rest)
        ofd = STDERR_FILENO;
    struct stat a, b;
    return ofd == fd || (ofd >= 0 && fstat(fd, &a) == 0 && fstat(ofd, &b) == 0 &&
                         a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/* Writes p[0..n), whole lines, to the file of rest's log in writes of at most `chunk` bytes cut
 * at line ends (one write(2) to a regular file; PIPE_BUF to a pipe, which the kernel keeps
 * whole). First goes the rest of a line an earlier short write cut: until it is out, nothing
 * else may go. A failed write keeps the rest of the line it cut (rest) and drops the lines after
 * it. Returns how many lines of p were dropped. The descriptor is read under rest_lock, which
 * sinks_settle closes a file under: one read before it (the access log turned off while a worker
 * held lines, its flush starting after the settle saw no sender) was written to once closed, or
 * once its number was another file's or connection's. A log whose file closed (off) has none:
 * its lines go with it, as those a worker still holds when it is turned off. */
static uint64_t write_whole(struct line_rest *rest, const char *p, size_t n, size_t chunk,
                            _Atomic bool *stalled)
{
    struct line_rest *other = rest == &access_rest ? &error_rest : &access_rest;
    pthread_mutex_lock(&rest_lock);
    int fd = atomic_load_explicit(rest->slot, memory_order_relaxed);
    if (fd < 0 && rest == &error_rest) /* the error log's default: stderr itself */
        fd = STDERR_FILENO;
    if (fd < 0) {
        pthread_mutex_unlock(&rest_lock);
        return 0;
    }
    if (!rest_out(fd, rest, stalled) ||
        (rest_waits_on(other, fd) && !rest_out(fd, other, stalled))) {
        pthread_mutex_unlock(&rest_lock);
        return count_lines(p, n);
    }
    const char *start = p;
    while (n > 0) {
        size_t k = n;
        if (k > chunk) {
            const char *nl = memrchr(p, '\n', chunk);
            k = nl ? (size_t)(nl - p) + 1 : chunk;
        }
        ssize_t w = write_waiting(fd, p, k, stalled);
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
    if (n > 0 && p > start && p[-1] != '\n') { /* a line was cut: its rest goes out first */
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) + 1 : n;
        if (k <= sizeof(rest->data)) {
            memcpy(rest->data, p, k);
            rest->len = k;
            p += k;
            n -= k;
        }
    }
    pthread_mutex_unlock(&rest_lock);
    return count_lines(p, n);
}

#define LOG_FAILING_QUIET_US (60 * 1000000ull) /* between two "a write failed" lines */

/* Writes whole lines to the access log. A full disk or a reader that stops must not stop the
 * proxy: lost lines are counted. */
static void write_lines_now(const char *p, size_t n)
{
    const struct syslog_dest *sd = atomic_load(&access_sys.dest); /* seq_cst: sinks_settle */
    int fd = atomic_load_explicit(sd ? &access_sys.fd : &access_fd, memory_order_relaxed);
    if (fd < 0 || (sd && n == 0)) /* a file's n == 0 goes on: the rest of a cut line may go now,
                                     its reader back */
        return;
    int saved = errno, err = 0;
    uint64_t lost;
    if (sd) {
        /* the header's second from the clock the lines' times come from (wall_ms), read after
         * theirs: never a second before a line's own (time(2) reads a coarser clock, which lags
         * it by up to a tick: a line of 12:00:00.001 could be headed 11:59:59) */
        lost = syslog_send_lines(fd, sd, syslog_dest_severity(sd), (time_t)(wall_ms() / 1000), p,
                                 n, &err);
        if (lost)
            sink_reconnect(&access_sys, sd, err);
    } else {
        size_t chunk = atomic_load_explicit(&access_chunk, memory_order_relaxed);
        lost = write_whole(&access_rest, p, n, chunk, &access_stalled);
        err = errno;
    }
    if (lost)
        atomic_fetch_add_explicit(&dropped, lost, memory_order_relaxed);
    /* The counter has every lost line; the error log says when losing starts and when it ends,
     * once each (whichever worker sees it first), so that a full disk is not a silent one: at
     * most once a minute, so that a reader that keeps stalling is no flood of lines either. */
    if (lost && !atomic_exchange(&access_failing, true)) {
        uint64_t now = now_us(), last = atomic_load(&access_said_us);
        if ((!last || now - last >= LOG_FAILING_QUIET_US) &&
            atomic_compare_exchange_strong(&access_said_us, &last, now)) {
            atomic_store(&access_said, true);
            log_warn("access_log: a %s failed (%s): its lines are dropped, and counted in "
                     "portico_access_log_dropped_lines_total, until a write goes through",
                     sd ? "syslog datagram" : "write",
                     err == EAGAIN || err == EWOULDBLOCK ? "its reader is not reading"
                                                         : strerror(err));
        }
    } else if (!lost && n > 0 && atomic_load_explicit(&access_failing, memory_order_relaxed) &&
               atomic_exchange(&access_failing, false) && atomic_exchange(&access_said, false)) {
        log_info("access_log: written again (%" PRIu64 " lines dropped since the start)",
                 atomic_load(&dropped));
    }
    errno = saved;
}

static void write_lines(const char *p, size_t n)
{
    atomic_fetch_add(&senders, 1);
    write_lines_now(p, n);
    atomic_fetch_sub(&senders, 1);
}

/* ---- per-worker buffers ---- */

#define LOG_BUFFER_SIZE (64 * 1024)    /* ~200 lines per write(2) */

struct log_buffer {
    enum log_format format;
    size_t len;                        /* bytes of whole lines waiting */
    char data[LOG_BUFFER_SIZE];
};

struct log_buffer *log_buffer_new(enum log_format format)
{
    struct log_buffer *lb = malloc(sizeof(*lb));
    if (!lb)
        return NULL;
    lb->format = format;
    lb->len = 0;
    return lb;
}

void log_buffer_flush(struct log_buffer *lb)
{
    write_lines(lb->data, lb->len);
    lb->len = 0;
}

void log_buffer_append(struct log_buffer *lb, const struct access_record *r)
{
    if (!log_enabled())
        return;
    if (sizeof(lb->data) - lb->len < LOG_LINE_MAX)
        log_buffer_flush(lb);
    lb->len += log_format_access(r, lb->format, lb->data + lb->len, sizeof(lb->data) - lb->len);
}

size_t log_buffer_pending(const struct log_buffer *lb)
{
    return lb->len;
}

void log_buffer_free(struct log_buffer *lb)
{
    if (!lb)
        return;
    log_buffer_flush(lb);
    free(lb);
}

/* ---- error log ---- */

bool log_level_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&error_level, memory_order_relaxed);
}

/* An error-log line's syslog severity, by its level. */
static const enum syslog_severity severity_of[LOG_LEVEL_COUNT] = {
    [LOG_ERROR] = SYSLOG_ERR,
    [LOG_WARN] = SYSLOG_WARNING,
    [LOG_INFO] = SYSLOG_INFO,
    [LOG_DEBUG] = SYSLOG_DEBUG,
};

static void vlog(enum log_level level, const char *fmt, va_list ap)
{
    if (!log_level_enabled(level))
        return;
    int saved = errno;
    char line[2048];
    struct fmt_buf b;
    fmt_init(&b, line, sizeof(line) - 1);
    uint64_t at_ms = wall_ms(); /* the line's time and its syslog header's: one reading */
    fmt_time(&b, at_ms);
    LIT(&b, " [");
    fmt_str(&b, level_names[level]);
    LIT(&b, "] ");
    int k = vsnprintf(line + b.len, sizeof(line) - 1 - b.len, fmt, ap);
    size_t n = b.len + (k > 0 ? MIN((size_t)k, sizeof(line) - 2 - b.len) : 0);
    line[n++] = '\n';
    atomic_fetch_add(&senders, 1);
    const struct syslog_dest *sd = atomic_load(&error_sys.dest); /* seq_cst: sinks_settle */
    int fd = sd ? atomic_load_explicit(&error_sys.fd, memory_order_relaxed) : -1;
    int err;
    uint64_t lost = sd ? syslog_send_lines(fd, sd, severity_of[level], (time_t)(at_ms / 1000),
                                           line, n, &err)
                       : write_whole(&error_rest, line, n, SIZE_MAX, &error_stalled);
    if (sd && lost)
        sink_reconnect(&error_sys, sd, err);
    atomic_fetch_sub(&senders, 1);
    if (lost)
        atomic_fetch_add_explicit(&error_dropped, lost, memory_order_relaxed);
    errno = saved;
}

#define LOG_AT(fn, level)                                                                          \
    void fn(const char *fmt, ...)                                                                  \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(level, fmt, ap);                                                                      \
        va_end(ap);                                                                                \
    }

LOG_AT(log_error, LOG_ERROR)
LOG_AT(log_warn, LOG_WARN)
LOG_AT(log_info, LOG_INFO)
LOG_AT(log_debug, LOG_DEBUG)

/* Lines about what one client did (a failed TLS handshake, an HTTP/2 protocol error or flood):
 * each worker writes at most CLIENT_LINES_BURST at once and CLIENT_LINES_PER_S after, so that a
 * flood of bad connections cannot turn into a flood of write(2) calls and a full disk; the
 * counters (portico_client_tls_handshake_failures_total, portico_http2_*) count every one. */
#define CLIENT_LINES_BURST 20.0
#define CLIENT_LINES_PER_S 10.0

static _Thread_local struct {
    double tokens;
    uint64_t at;           /* µs: last refill; 0: never */
    unsigned long dropped; /* lines left out since the last one written */
} client_lines;

void log_client(const char *fmt, ...)
{
    if (!log_level_enabled(LOG_INFO))
        return;
    uint64_t now = now_us();
    client_lines.tokens =
        client_lines.at ? MIN(CLIENT_LINES_BURST, client_lines.tokens +
                                                      (double)(now - client_lines.at) / 1e6 *
                                                          CLIENT_LINES_PER_S)
                        : CLIENT_LINES_BURST;
    client_lines.at = now;
    if (client_lines.tokens < 1) {
        client_lines.dropped++;
        return;
    }
    client_lines.tokens -= 1;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (client_lines.dropped)
        log_info("%s (%lu more such lines left out before this one)", msg, client_lines.dropped);
    else
        log_info("%s", msg);
    client_lines.dropped = 0;
}

/* stderr as a description of its own that never blocks (own_nonblocking), opened on first use:
 * log_problem runs on the main thread, which takes the signals, and whoever started Portico may
 * have stopped reading (a reload's errors then hung it in write(2), SIGTERM included). */
static int problem_fd(void)
{
    static int fd = -1; /* main thread only */
    if (fd < 0) {
        int own = open_target("stderr", false);
        fd = own < 0 ? STDERR_FILENO : own;
    }
    return fd;
}

void log_problem(const char *fmt, ...)
{
    static _Atomic bool stalled;
    char msg[1024], line[1040];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof(line), "portico: %s\n", msg);
    ssize_t w = write_waiting(problem_fd(), line, MIN((size_t)n, sizeof(line) - 1), &stalled);
    (void)w; /* a reader that stopped costs the line; the error log has it */
    if (error_path)
        log_error("%s", msg);
}
