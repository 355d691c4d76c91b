/*
 * syslog.c — syslog targets: parsing, the socket, the RFC 3164 header and the datagrams. See
 * syslog.h.
 *
 * One connected socket per log, shared by the workers: a datagram is sent whole or not at all,
 * so workers need no lock, and each worker's lines go in its order. A flush of a worker's buffer
 * is one sendmmsg(2) of up to SEND_BATCH datagrams, each two or three iovecs (the header, shared
 * by all, the line, and the cut mark when it is cut), so no line is copied.
 */
#include "portico/syslog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "portico/util.h"

/* RFC 3164 4.1.1's facilities, by the names nginx takes. */
static const char *const facility_names[] = {
    "kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news",
    "uucp", "clock", "authpriv", "ftp", "ntp", "audit", "alert", "cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
};

static const char *const severity_names[SYSLOG_SEVERITY_COUNT] = {
#define X(id, nm) [id] = nm,
    SYSLOG_SEVERITY_LIST(X)
#undef X
};

#define FACILITY_DEFAULT 23 /* local7, as nginx */

struct syslog_dest {
    struct syslog_spec spec;           /* the server, to connect again */
    int facility;
    enum syslog_severity severity;
    size_t len;
    char host[65];                     /* "" with nohostname */
    char tag[SYSLOG_TAG_MAX + 1];
    long pid;
};

bool syslog_target_is(const char *target)
{
    return target && strncmp(target, SYSLOG_PREFIX, sizeof(SYSLOG_PREFIX) - 1) == 0;
}

static int index_of(const char *const *names, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return (int)i;
    return -1;
}

/* "unix:/dev/log", "127.0.0.1:514", "[::1]:514", "127.0.0.1" or "[::1]" (port 514). */
static int parse_server(const char *v, size_t n, struct syslog_spec *out, const char **why)
{
    char text[256];
    if (n == 0 || n >= sizeof(text)) {
        *why = n ? "too long" : "empty";
        return -1;
    }
    memcpy(text, v, n);
    text[n] = '\0';
    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->addr;
        const char *path = text + 5;
        if (path[0] != '/' || strlen(path) >= sizeof(un->sun_path)) {
            *why = "unix: takes an absolute path, shorter than 108 bytes";
            return -1;
        }
        memset(un, 0, sizeof(*un));
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        out->addrlen = (socklen_t)sizeof(*un);
        return 0;
    }
    char host[256];
    uint16_t port = SYSLOG_PORT;
    bool bare = text[0] == '[' ? text[n - 1] == ']' : strchr(text, ':') == NULL;
    if (bare) { /* no port: the brackets off an IPv6 address */
        snprintf(host, sizeof(host), "%.*s", text[0] == '[' ? (int)n - 2 : (int)n,
                 text[0] == '[' ? text + 1 : text);
    } else if (split_host_port(text, host, sizeof(host), &port, why) != 0) {
        return -1;
    }
    /* brackets hold an IPv6 address only: "[127.0.0.1]" is a typo, not an IPv4 address */
    if (numeric_sockaddr(host, port, &out->addr, &out->addrlen) != 0 ||
        (text[0] == '[') != (out->addr.ss_family == AF_INET6)) {
        *why = "a numeric IPv4 or [IPv6] address (with :port), or unix:/path";
        return -1;
    }
    return 0;
}

static bool tag_valid(const char *v, size_t n)
{
    if (n == 0 || n > SYSLOG_TAG_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] == '_' || (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'z') ||
              (v[i] >= 'A' && v[i] <= 'Z')))
            return false;
    return true;
}

/* The parameters, in any order, each at most once. */
enum param { P_SERVER, P_FACILITY, P_SEVERITY, P_TAG, P_NOHOSTNAME, P_LEN, P_COUNT };
static const char *const param_names[P_COUNT] = {
    [P_SERVER] = "server", [P_FACILITY] = "facility", [P_SEVERITY] = "severity",
    [P_TAG] = "tag", [P_NOHOSTNAME] = "nohostname", [P_LEN] = "len",
};

/* One parameter's value into out; -1 with *why. */
static int parse_param(enum param p, const char *v, size_t n, struct syslog_spec *out,
                       const char **why)
{
    int i;
    switch (p) {
    case P_SERVER:
        return parse_server(v, n, out, why);
    case P_FACILITY:
        if ((i = index_of(facility_names, ARRAY_LEN(facility_names), v, n)) < 0) {
            *why = "kern, user, mail, daemon, auth, intern, lpr, news, uucp, clock, authpriv, "
                   "ftp, ntp, audit, alert, cron or local0 to local7";
            return -1;
        }
        out->facility = i;
        return 0;
    case P_SEVERITY:
        if ((i = index_of(severity_names, SYSLOG_SEVERITY_COUNT, v, n)) < 0) {
            *why = "emerg, alert, crit, error, warn, notice, info or debug";
            return -1;
        }
        out->severity = (enum syslog_severity)i;
        out->severity_set = true;
        return 0;
    case P_TAG:
        if (!tag_valid(v, n)) {
            *why = "1 to 32 letters, digits or '_'";
            return -1;
        }
        memcpy(out->tag, v, n);
        out->tag[n] = '\0';
        return 0;
    case P_LEN: {
        char num[16];
        char *end;
        snprintf(num, sizeof(num), "%.*s", (int)MIN(n, sizeof(num) - 1), v);
        bool digits = n > 0 && n < sizeof(num) && strspn(num, "0123456789") == n;
        unsigned long len = digits ? strtoul(num, &end, 10) : 0; /* no sign, no blank */
        if (!len || len < SYSLOG_LEN_MIN || len > SYSLOG_LEN_MAX) {
            *why = "bytes of a datagram, header included: 480 to 8192";
            return -1;
        }
        out->len = len;
        return 0;
    }
    case P_NOHOSTNAME:
    case P_COUNT:
        break;
    }
    *why = "takes no value";
    return -1;
}

int syslog_parse(const char *target, struct syslog_spec *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    out->facility = FACILITY_DEFAULT;
    out->severity = SYSLOG_INFO;
    out->len = SYSLOG_LEN_DEFAULT;
    strcpy(out->tag, "portico");
    if (!syslog_target_is(target)) {
        snprintf(why, whylen, "not a syslog: target");
        return -1;
    }
    bool seen[P_COUNT] = {false};
    const char *s = target + sizeof(SYSLOG_PREFIX) - 1;
    while (*s) {
        size_t n = strcspn(s, ",");
        size_t klen = strcspn(s, "=,");
        const char *v = s + klen + (s[klen] == '=');
        size_t vlen = s[klen] == '=' ? n - klen - 1 : 0;
        int p = index_of(param_names, P_COUNT, s, klen);
        const char *bad = NULL;
        if (p < 0)
            bad = "unknown parameter (server, facility, severity, tag, nohostname, len)";
        else if (seen[p])
            bad = "given twice";
        else if ((p == P_NOHOSTNAME) != (s[klen] != '='))
            bad = p == P_NOHOSTNAME ? "takes no value" : "needs a value (name=value)";
        if (!bad && p != P_NOHOSTNAME)
            (void)parse_param((enum param)p, v, vlen, out, &bad);
        if (bad) {
            snprintf(why, whylen, "syslog parameter '%.*s': %s", (int)MIN(n, 200), s, bad);
            return -1;
        }
        seen[p] = true;
        if (p == P_NOHOSTNAME)
            out->nohostname = true;
        s += n + (s[n] == ',');
    }
    if (!seen[P_SERVER]) {
        snprintf(why, whylen, "syslog: needs server= (an address, or unix:/dev/log)");
        return -1;
    }
    return 0;
}

int syslog_open(const struct syslog_spec *s)
{
    int fd = socket(s->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0) {
        int err = errno;
        close(fd);
        errno = err == EAGAIN ? ECONNREFUSED : err; /* a unix socket whose queue is full */
        return -1;
    }
    return fd;
}

struct syslog_dest *syslog_dest_new(const struct syslog_spec *s)
{
    struct syslog_dest *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->spec = *s;
    d->facility = s->facility;
    d->severity = s->severity;
    d->len = s->len;
    memcpy(d->tag, s->tag, sizeof(d->tag));
    d->pid = (long)getpid();
    if (!s->nohostname && gethostname(d->host, sizeof(d->host) - 1) != 0)
        strcpy(d->host, "localhost");
    return d;
}

bool syslog_dest_same(const struct syslog_dest *a, const struct syslog_dest *b)
{
    return a && b && a->facility == b->facility && a->severity == b->severity &&
           a->len == b->len && a->pid == b->pid && strcmp(a->host, b->host) == 0 &&
           strcmp(a->tag, b->tag) == 0 && a->spec.addrlen == b->spec.addrlen &&
           memcmp(&a->spec.addr, &b->spec.addr, a->spec.addrlen) == 0;
}

int syslog_dest_open(const struct syslog_dest *d)
{
    return syslog_open(&d->spec);
}

enum syslog_severity syslog_dest_severity(const struct syslog_dest *d)
{
    return d->severity;
}

/* "Mmm dd hh:mm:ss", local time as RFC 3164 has it (and nginx sends), made at most once a
 * second per thread: localtime_r costs more than the rest of the header. */
static const char *stamp_of(time_t t)
{
    static _Thread_local time_t at = -1;
    static _Thread_local char text[16];
    if (t != at) {
        static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm tm;
        localtime_r(&t, &tm);
        snprintf(text, sizeof(text), "%s %2d %02d:%02d:%02d", months[tm.tm_mon % 12], tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        at = t;
    }
    return text;
}

size_t syslog_header(const struct syslog_dest *d, enum syslog_severity sev, time_t t, char *buf,
                     size_t size)
{
    int n = snprintf(buf, size, "<%d>%s %s%s%s[%ld]: ", d->facility * 8 + (int)sev, stamp_of(t),
                     d->host, d->host[0] ? " " : "", d->tag, d->pid);
    return n < 0 ? 0 : MIN((size_t)n, size - 1);
}

/* Where to cut a line of at least at + 1 bytes: at, or up to 3 bytes before it so that no UTF-8
 * character is split (a user agent's or a path's; rsyslog and journald check the message's
 * encoding, and a torn character before the mark is a byte no reader can decode). */
static size_t utf8_cut(const char *line, size_t at)
{
    const unsigned char *s = (const unsigned char *)line;
    for (size_t back = 0; back < 3 && at > 0 && (s[at] & 0xC0) == 0x80; back++)
        at--;
    return at;
}

#define SEND_BATCH 64 /* datagrams per sendmmsg(2): a flush of 64 KiB is ~100 lines */

size_t syslog_send_lines(int fd, const struct syslog_dest *d, enum syslog_severity sev,
                         time_t at, const char *p, size_t n, int *err)
{
    char head[160];
    size_t hlen = syslog_header(d, sev, at, head, sizeof(head));
    /* a message's room after the header (len >= 480 leaves it ~340 bytes at the least) */
    size_t mark = sizeof(SYSLOG_CUT_MARK) - 1;
    size_t room = d->len > hlen + mark ? d->len - hlen : mark;
    struct mmsghdr msgs[SEND_BATCH];
    struct iovec iov[SEND_BATCH][3];
    size_t lost = 0;
    const char *end = p + n;
    while (p < end) {
        unsigned k = 0;
        for (; k < SEND_BATCH && p < end; k++) { /* the next lines, as messages */
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            iov[k][0] = (struct iovec){head, hlen};
            iov[k][1] = (struct iovec){(void *)(uintptr_t)p, len};
            size_t parts = 2;
            if (len > room) { /* cut, and said so at its end */
                iov[k][1].iov_len = utf8_cut(p, room - mark);
                iov[k][2] = (struct iovec){(void *)(uintptr_t)SYSLOG_CUT_MARK, mark};
                parts = 3;
            }
            msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = iov[k], .msg_iovlen = parts}};
            p += len + (nl != NULL);
        }
        unsigned sent = 0;
        while (sent < k) {
            int r = sendmmsg(fd, msgs + sent, k - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r > 0) {
                sent += (unsigned)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            *err = r < 0 ? errno : EIO;
            if (*err == EAGAIN || *err == EWOULDBLOCK || *err == ENOBUFS) {
                /* the daemon is not reading: the rest of this flush would wait for it */
                lost += k - sent;
                for (; p < end; p++)
                    lost += *p == '\n';
                return lost;
            }
            lost++; /* this one refused (ECONNREFUSED: a port closed), the next may go */
            sent++;
        }
    }
    return lost;
}
