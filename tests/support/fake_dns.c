/*
 * fake_dns.c — UDP DNS responder on loopback, one thread with poll() on the socket, a stop pipe,
 * and the TCP side of the same port (its listener and up to FAKE_DNS_MAX_TCP connections). Plain
 * sockets, no libevent, so it stays independent of the resolver under test.
 */
#include "fake_dns.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DNS_HEADER 12
#define DNS_MAX 512 /* a UDP message; longer answers go truncated (TC) */
#define DNS_TCP_MAX (DNS_HEADER + 260 + 4 + FAKE_DNS_MAX_A * 16) /* our longest answer */
#define FLAG_TC 0x0200
#define QTYPE_A 1
#define QTYPE_AAAA 28

/* A reply held back by opts.delay_ms. */
struct dns_pending {
    int64_t due;             /* tu_now_ms() when it goes out */
    struct sockaddr_storage to;
    socklen_t tolen;
    size_t len;
    uint8_t r[DNS_MAX + 64];
};

/* A TCP connection from the resolver: queries, each after its 2-byte length. */
struct dns_tcp_conn {
    int fd;                  /* -1: a free slot */
    size_t len;
    uint8_t in[2 + DNS_MAX];
};

struct fake_dns {
    int fd;                  /* UDP socket bound to 127.0.0.1 */
    int tcp_fd;              /* TCP socket bound to the same port; listening unless TCP_OFF */
    enum fake_dns_tcp tcp;
    unsigned a_records;
    struct dns_tcp_conn conns[FAKE_DNS_MAX_TCP];
    uint16_t port;
    int delay_ms;
    unsigned answer_first;   /* opts.answer_first */
    unsigned udp_seen;       /* the thread's own count of UDP queries, for answer_first */
    struct dns_pending pending[FAKE_DNS_MAX_PENDING]; /* the thread's own, unordered */
    unsigned npending;
    int stop_pipe[2];        /* closing [1] wakes the thread */
    pthread_t thread;
    bool aaaa;
    bool no_a;
    uint32_t ttl;
    const char *zone;        /* borrowed; NULL: every name */
    pthread_mutex_t lock;    /* protects the fields below */
    pthread_cond_t cond;     /* signalled on every query */
    enum fake_dns_mode mode;
    unsigned queries;
    unsigned tcp_queries;
    unsigned tcp_open;       /* accepted TCP connections not closed yet */
    char last_name[256];
    uint16_t last_client_port;
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Decodes the uncompressed name at q[off] into text; returns the offset just after it, or -1. */
static int parse_name(const uint8_t *q, size_t len, size_t off, char *text, size_t size)
{
    size_t t = 0;

    for (;;) {
        if (off >= len) {
            return -1;
        }
        uint8_t l = q[off++];

        if (l == 0) {
            break;
        }
        if ((l & 0xC0) != 0 || off + l > len || t + l + 2 > size) {
            return -1;
        }
        if (t > 0) {
            text[t++] = '.';
        }
        memcpy(text + t, q + off, l);
        t += l;
        off += l;
    }
    text[t] = '\0';
    return (int)off;
}

/* Whether name is zone or ends in ".zone", ignoring case. */
static bool in_zone(const char *name, const char *zone)
{
    size_t n = strlen(name), z = strlen(zone);

    if (n < z || strcasecmp(name + n - z, zone) != 0) {
        return false;
    }
    return n == z || name[n - z - 1] == '.';
}

/* Builds the reply to query q in r; returns its length, or 0 when the query is unusable. */
static size_t build_reply(struct fake_dns *d, enum fake_dns_mode mode, const uint8_t *q,
                          size_t len, uint8_t *r, size_t rsize, char *name, size_t name_size)
{
    if (len < DNS_HEADER || get16(q + 4) < 1) {
        return 0;
    }
    int end = parse_name(q, len, DNS_HEADER, name, name_size);

    if (end < 0 || (size_t)end + 4 > len || (size_t)end + 4 > rsize) {
        return 0;
    }
    size_t qend = (size_t)end + 4; /* the question: name, qtype, qclass */
    uint16_t qtype = get16(q + end);

    if (d->zone != NULL && !in_zone(name, d->zone)) {
        mode = FAKE_DNS_NXDOMAIN;
    }
    int rcode = mode == FAKE_DNS_NXDOMAIN ? 3 : mode == FAKE_DNS_SERVFAIL ? 2 : 0;
    /* QR, the query's opcode and RD echoed, AA and RA set, then the rcode. */
    uint16_t flags = (uint16_t)(0x8000 | (get16(q + 2) & 0x7900) | 0x0400 | 0x0080 | rcode);
    size_t n = qend;
    unsigned ancount = 0;

    memcpy(r, q, 2);
    put16(r + 2, flags);
    put16(r + 4, 1);
    memcpy(r + DNS_HEADER, q + DNS_HEADER, qend - DNS_HEADER);
    unsigned want = 0;

    if (rcode == 0 && ((qtype == QTYPE_A && !d->no_a) || (qtype == QTYPE_AAAA && d->aaaa))) {
        want = qtype == QTYPE_A ? d->a_records : 1;
    }
    for (size_t alen = qtype == QTYPE_A ? 4 : 16; ancount < want && n + 12 + alen <= rsize;) {
        put16(r + n, 0xC000 | DNS_HEADER); /* pointer to the question's name */
        put16(r + n + 2, qtype);
        put16(r + n + 4, get16(q + end + 2)); /* class as asked (IN) */
        put16(r + n + 6, (uint16_t)(d->ttl >> 16));
        put16(r + n + 8, (uint16_t)d->ttl);
        put16(r + n + 10, (uint16_t)alen);
        n += 12;
        if (qtype == QTYPE_A) {
            inet_pton(AF_INET, "127.0.0.1", r + n);
        } else {
            inet_pton(AF_INET6, "::1", r + n);
        }
        n += alen;
        ancount++;
    }
    put16(r + 6, (uint16_t)ancount);
    put16(r + 8, 0);
    put16(r + 10, 0);
    return n;
}

/* Sends the held replies that are due; returns the poll timeout until the next one (-1: none). */
static int send_due(struct fake_dns *d)
{
    int64_t now = tu_now_ms(), next = -1;

    for (unsigned i = 0; i < d->npending;) {
        struct dns_pending *p = &d->pending[i];

        if (p->due <= now) {
            sendto(d->fd, p->r, p->len, 0, (struct sockaddr *)&p->to, p->tolen);
            d->pending[i] = d->pending[--d->npending];
            continue;
        }
        if (next < 0 || p->due - now < next) {
            next = p->due - now;
        }
        i++;
    }
    return (int)next;
}

static int skip_name(const uint8_t *r, size_t len, size_t off);

/* An answer too long for UDP: TC set, the question only (RFC 2181 9). Its new length. */
static size_t truncate_reply(uint8_t *r, size_t len)
{
    int end = skip_name(r, len, DNS_HEADER);

    put16(r + 2, get16(r + 2) | FLAG_TC);
    put16(r + 6, 0);
    return end < 0 ? DNS_HEADER : (size_t)end + 4;
}

/* Counts a query (over TCP or not) under the lock and wakes the waiters. */
static void count_query(struct fake_dns *d, const char *name, const struct sockaddr_storage *from,
                        bool tcp)
{
    pthread_mutex_lock(&d->lock);
    if (tcp) {
        d->tcp_queries++;
    } else {
        d->queries++;
    }
    snprintf(d->last_name, sizeof(d->last_name), "%s", name);
    d->last_client_port = ntohs(from->ss_family == AF_INET6
                                    ? ((const struct sockaddr_in6 *)from)->sin6_port
                                    : ((const struct sockaddr_in *)from)->sin_port);
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static enum fake_dns_mode current_mode(struct fake_dns *d)
{
    pthread_mutex_lock(&d->lock);
    enum fake_dns_mode mode = d->mode;
    pthread_mutex_unlock(&d->lock);
    return mode;
}

/* One datagram on the UDP socket. */
static void serve_udp(struct fake_dns *d)
{
    uint8_t q[DNS_MAX], r[DNS_TCP_MAX];
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t len = recvfrom(d->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);

    if (len < 0) {
        return;
    }
    char name[256] = "";
    enum fake_dns_mode mode = current_mode(d);
    size_t rlen = build_reply(d, mode, q, (size_t)len, r, sizeof(r), name, sizeof(name));

    if (rlen > DNS_MAX) {
        rlen = truncate_reply(r, rlen);
    }
    /* Count only after the reply is built but before it is sent, so a test that saw the
     * reply also sees the count. */
    count_query(d, name, &from, false);
    d->udp_seen++;
    if (rlen == 0 || mode == FAKE_DNS_SILENT ||
        (d->answer_first != 0 && d->udp_seen > d->answer_first)) {
        return;
    }
    if (d->delay_ms > 0 && d->npending < FAKE_DNS_MAX_PENDING) {
        struct dns_pending *h = &d->pending[d->npending++];

        h->due = tu_now_ms() + d->delay_ms;
        h->to = from;
        h->tolen = flen;
        h->len = rlen;
        memcpy(h->r, r, rlen);
        return;
    }
    sendto(d->fd, r, rlen, 0, (struct sockaddr *)&from, flen);
}

static void tcp_close(struct fake_dns *d, struct dns_tcp_conn *c)
{
    close(c->fd);
    c->fd = -1;
    pthread_mutex_lock(&d->lock);
    d->tcp_open--;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void tcp_accept(struct fake_dns *d)
{
    int fd = accept4(d->tcp_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0) {
        return;
    }
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* pieces go as sent */
    for (unsigned i = 0; i < FAKE_DNS_MAX_TCP; i++) {
        if (d->conns[i].fd < 0) {
            d->conns[i].fd = fd;
            d->conns[i].len = 0;
            pthread_mutex_lock(&d->lock);
            d->tcp_open++;
            pthread_mutex_unlock(&d->lock);
            return;
        }
    }
    close(fd); /* every slot taken */
}

/* Answers one query that came over TCP, as the tcp mode says. false: the connection is closed. */
static bool tcp_answer(struct fake_dns *d, struct dns_tcp_conn *c, const uint8_t *q, size_t len)
{
    uint8_t r[2 + DNS_TCP_MAX];
    char name[256] = "";
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);

    if (getpeername(c->fd, (struct sockaddr *)&from, &flen) != 0) {
        memset(&from, 0, sizeof(from));
    }
    enum fake_dns_mode mode = current_mode(d);
    size_t rlen = build_reply(d, mode, q, len, r + 2, sizeof(r) - 2, name, sizeof(name));

    count_query(d, name, &from, true);
    if (d->tcp == FAKE_DNS_TCP_CLOSE) {
        tcp_close(d, c);
        return false;
    }
    if (rlen == 0 || d->tcp == FAKE_DNS_TCP_SILENT || mode == FAKE_DNS_SILENT) {
        return true;
    }
    size_t first = (size_t)skip_name(r + 2, rlen, DNS_HEADER) + 4; /* the first record */

    if (d->tcp == FAKE_DNS_TCP_MALFORMED && get16(r + 2 + 6) > 0) {
        put16(r + 2 + first, (uint16_t)(0xC000 | first)); /* a pointer to itself */
    }
    if (d->tcp == FAKE_DNS_TCP_NXDOMAIN_A && get16(r + 2 + first - 4) == QTYPE_A) {
        put16(r + 2 + 2, (uint16_t)((get16(r + 2 + 2) & 0xFFF0) | 3)); /* rcode NXDOMAIN */
        put16(r + 2 + 6, 0);
        rlen = first; /* the question only */
    }
    if (d->tcp == FAKE_DNS_TCP_MALFORMED_LAST && get16(r + 2 + 6) > 0) {
        put16(r + 2 + rlen - 16, (uint16_t)(0xC000 | (rlen - 16)));
    }
    put16(r, (uint16_t)rlen);
    /* where each send ends: all at once, or in pieces that arrive as separate reads */
    size_t ends[3] = { rlen + 2, rlen + 2, rlen + 2 }, sent = 0;

    if (d->tcp == FAKE_DNS_TCP_PIECES) {
        ends[0] = 1;
        ends[1] = rlen; /* all but the last two bytes: the length counts them too */
    }
    for (int i = 0; i < 3 && sent < rlen + 2; i++) {
        if (i > 0 && d->tcp == FAKE_DNS_TCP_PIECES) {
            usleep(5000);
        }
        if (send(c->fd, r + sent, ends[i] - sent, MSG_NOSIGNAL) != (ssize_t)(ends[i] - sent)) {
            tcp_close(d, c);
            return false;
        }
        sent = ends[i];
    }
    if (d->tcp == FAKE_DNS_TCP_TWICE &&
        send(c->fd, r, rlen + 2, MSG_NOSIGNAL) != (ssize_t)(rlen + 2)) {
        tcp_close(d, c);
        return false;
    }
    return true;
}

/* Reads from a TCP connection; answers every whole query. */
static void serve_tcp(struct fake_dns *d, struct dns_tcp_conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, 0);

    if (n <= 0) {
        tcp_close(d, c); /* the peer closed (or reset), or a query longer than we take */
        return;
    }
    c->len += (size_t)n;
    while (c->len >= 2) {
        size_t qlen = get16(c->in);

        if (c->len < 2 + qlen) {
            if (2 + qlen > sizeof(c->in)) {
                tcp_close(d, c);
            }
            return;
        }
        uint8_t q[DNS_MAX];

        memcpy(q, c->in + 2, qlen);
        memmove(c->in, c->in + 2 + qlen, c->len - 2 - qlen);
        c->len -= 2 + qlen;
        if (!tcp_answer(d, c, q, qlen)) {
            return;
        }
    }
}

static void *dns_thread(void *arg)
{
    struct fake_dns *d = arg;

    for (;;) {
        struct pollfd p[3 + FAKE_DNS_MAX_TCP] = {
            { .fd = d->fd, .events = POLLIN },
            { .fd = d->stop_pipe[0], .events = POLLIN },
            { .fd = d->tcp == FAKE_DNS_TCP_OFF ? -1 : d->tcp_fd, .events = POLLIN },
        };

        for (unsigned i = 0; i < FAKE_DNS_MAX_TCP; i++) {
            p[3 + i].fd = d->conns[i].fd;
            p[3 + i].events = POLLIN;
        }
        if (poll(p, 3 + FAKE_DNS_MAX_TCP, send_due(d)) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (p[1].revents != 0) {
            break;
        }
        if (p[0].revents != 0) {
            serve_udp(d);
        }
        if (p[2].revents != 0) {
            tcp_accept(d);
        }
        for (unsigned i = 0; i < FAKE_DNS_MAX_TCP; i++) {
            if (p[3 + i].revents != 0 && d->conns[i].fd == p[3 + i].fd) {
                serve_tcp(d, &d->conns[i]);
            }
        }
    }
    return NULL;
}

struct fake_dns *fake_dns_start(const struct fake_dns_opts *opts)
{
    struct fake_dns_opts defaults = { .mode = FAKE_DNS_ANSWER };
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    struct sockaddr_storage a;
    socklen_t alen;
    struct fake_dns *d = calloc(1, sizeof(*d));
    pthread_condattr_t ca;

    if (d == NULL) {
        return NULL;
    }
    if (opts == NULL) {
        opts = &defaults;
    }
    d->fd = d->tcp_fd = -1;
    for (unsigned i = 0; i < FAKE_DNS_MAX_TCP; i++) {
        d->conns[i].fd = -1;
    }
    d->tcp = opts->tcp;
    d->a_records = opts->a_records == 0 ? 1 : opts->a_records;
    if (d->a_records > FAKE_DNS_MAX_A) {
        d->a_records = FAKE_DNS_MAX_A;
    }
    d->stop_pipe[0] = d->stop_pipe[1] = -1;
    d->mode = opts->mode;
    d->aaaa = opts->aaaa;
    d->no_a = opts->no_a;
    d->ttl = opts->ttl != 0 ? opts->ttl : 60;
    d->delay_ms = opts->delay_ms;
    d->answer_first = opts->answer_first;
    d->zone = opts->zone;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* The UDP port the kernel picks, then TCP on the same number: another socket may hold
     * that TCP port already, and then another UDP port is tried. */
    for (int tries = 0; tries < 50 && d->tcp_fd < 0; tries++) {
        if (d->fd >= 0) {
            close(d->fd);
        }
        alen = opts->ipv6 ? sizeof(a6) : sizeof(a4);
        memcpy(&a, opts->ipv6 ? (void *)&a6 : (void *)&a4, alen);
        d->fd = socket(opts->ipv6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&a, alen) < 0
            || getsockname(d->fd, (struct sockaddr *)&a, &alen) < 0) {
            goto fail;
        }
        d->tcp_fd = socket(opts->ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (d->tcp_fd < 0) {
            goto fail;
        }
        if (d->tcp != FAKE_DNS_TCP_OFF) {
            /* a port an earlier server's connections still hold (TIME_WAIT) is taken; not
             * the TCP_OFF one, bound without listening to refuse: it must stay ours */
            int one = 1;

            setsockopt(d->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        }
        if (bind(d->tcp_fd, (struct sockaddr *)&a, alen) < 0) {
            close(d->tcp_fd);
            d->tcp_fd = -1;
        }
    }
    if (d->tcp_fd < 0 || (d->tcp != FAKE_DNS_TCP_OFF && listen(d->tcp_fd, 8) < 0)) {
        goto fail;
    }
    d->port = ntohs(opts->ipv6 ? ((struct sockaddr_in6 *)&a)->sin6_port
                               : ((struct sockaddr_in *)&a)->sin_port);
    if (pipe2(d->stop_pipe, O_CLOEXEC) < 0) {
        goto fail;
    }
    if (pthread_create(&d->thread, NULL, dns_thread, d) != 0) {
        goto fail;
    }
    return d;
fail:
    perror("fake_dns_start");
    if (d->fd >= 0) {
        close(d->fd);
    }
    if (d->tcp_fd >= 0) {
        close(d->tcp_fd);
    }
    if (d->stop_pipe[0] >= 0) {
        close(d->stop_pipe[0]);
        close(d->stop_pipe[1]);
    }
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
    return NULL;
}

uint16_t fake_dns_port(const struct fake_dns *d)
{
    return d->port;
}

void fake_dns_set_mode(struct fake_dns *d, enum fake_dns_mode mode)
{
    pthread_mutex_lock(&d->lock);
    d->mode = mode;
    pthread_mutex_unlock(&d->lock);
}

unsigned fake_dns_queries(struct fake_dns *d)
{
    pthread_mutex_lock(&d->lock);
    unsigned n = d->queries;
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* Absolute CLOCK_MONOTONIC time timeout_ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_ts(int timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

int fake_dns_wait_queries(struct fake_dns *d, unsigned n, int timeout_ms)
{
    struct timespec ts = deadline_ts(timeout_ms);
    int rc = 0;

    pthread_mutex_lock(&d->lock);
    while (d->queries < n && rc == 0) {
        rc = pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    int ok = d->queries >= n;
    pthread_mutex_unlock(&d->lock);
    return ok ? 0 : -1;
}

unsigned fake_dns_tcp_queries(struct fake_dns *d)
{
    pthread_mutex_lock(&d->lock);
    unsigned n = d->tcp_queries;
    pthread_mutex_unlock(&d->lock);
    return n;
}

int fake_dns_wait_tcp_queries(struct fake_dns *d, unsigned n, int timeout_ms)
{
    struct timespec ts = deadline_ts(timeout_ms);
    int rc = 0;

    pthread_mutex_lock(&d->lock);
    while (d->tcp_queries < n && rc == 0) {
        rc = pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    int ok = d->tcp_queries >= n;
    pthread_mutex_unlock(&d->lock);
    return ok ? 0 : -1;
}

int fake_dns_wait_tcp_closed(struct fake_dns *d, int timeout_ms)
{
    struct timespec ts = deadline_ts(timeout_ms);
    int rc = 0;

    pthread_mutex_lock(&d->lock);
    while (d->tcp_open > 0 && rc == 0) {
        rc = pthread_cond_timedwait(&d->cond, &d->lock, &ts);
    }
    int ok = d->tcp_open == 0;
    pthread_mutex_unlock(&d->lock);
    return ok ? 0 : -1;
}

int fake_dns_last_name(struct fake_dns *d, char *buf, size_t size)
{
    pthread_mutex_lock(&d->lock);
    int rc = d->queries > 0 ? 0 : -1;
    snprintf(buf, size, "%s", d->last_name);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

uint16_t fake_dns_last_client_port(struct fake_dns *d)
{
    pthread_mutex_lock(&d->lock);
    uint16_t port = d->last_client_port;
    pthread_mutex_unlock(&d->lock);
    return port;
}

void fake_dns_stop(struct fake_dns *d)
{
    if (d == NULL) {
        return;
    }
    close(d->stop_pipe[1]);
    pthread_join(d->thread, NULL);
    close(d->stop_pipe[0]);
    close(d->fd);
    close(d->tcp_fd);
    for (unsigned i = 0; i < FAKE_DNS_MAX_TCP; i++) {
        if (d->conns[i].fd >= 0) {
            close(d->conns[i].fd);
        }
    }
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Skips a possibly compressed name at r[off]; returns the offset after it, or -1. */
static int skip_name(const uint8_t *r, size_t len, size_t off)
{
    while (off < len) {
        uint8_t l = r[off];

        if (l == 0) {
            return (int)off + 1;
        }
        if ((l & 0xC0) == 0xC0) {
            return off + 2 <= len ? (int)off + 2 : -1;
        }
        off += 1 + (size_t)l;
    }
    return -1;
}

int fake_dns_query(uint16_t port, const char *name, uint16_t qtype, int timeout_ms,
                   struct fake_dns_reply *reply)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    uint8_t q[DNS_MAX], r[DNS_MAX];
    static unsigned counter;
    uint16_t id = (uint16_t)(0x4242 + __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    size_t n = DNS_HEADER;
    int rc = -1;

    memset(reply, 0, sizeof(*reply));
    memset(q, 0, DNS_HEADER);
    put16(q, id);
    put16(q + 2, 0x0100); /* standard query, recursion desired */
    put16(q + 4, 1);
    for (const char *label = name; *label != '\0';) {
        const char *dot = strchr(label, '.');
        size_t l = dot != NULL ? (size_t)(dot - label) : strlen(label);

        if (l == 0 || l > 63 || n + l + 1 + 5 > sizeof(q)) {
            return -1;
        }
        q[n++] = (uint8_t)l;
        memcpy(q + n, label, l);
        n += l;
        label += l + (dot != NULL ? 1 : 0);
    }
    q[n++] = 0;
    put16(q + n, qtype);
    put16(q + n + 2, 1);
    n += 4;

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || send(fd, q, n, 0) != (ssize_t)n) {
        goto done;
    }
    int64_t deadline = tu_now_ms() + timeout_ms;
    ssize_t len;

    for (;;) {
        short rev;

        if (tu_poll_until(fd, POLLIN, deadline, &rev) != 1) {
            goto done;
        }
        len = recv(fd, r, sizeof(r), 0);
        if (len >= DNS_HEADER && get16(r) == id) {
            break;
        }
        if (len < 0 && errno != EINTR) {
            goto done;
        }
    }
    reply->id = get16(r);
    reply->rcode = r[3] & 0x0F;
    reply->aa = (r[2] & 0x04) != 0;
    reply->tc = (r[2] & 0x02) != 0;
    reply->ancount = get16(r + 6);

    int off = skip_name(r, (size_t)len, DNS_HEADER);

    if (off < 0 || get16(r + 4) != 1) {
        goto done;
    }
    off += 4;
    for (unsigned i = 0; i < reply->ancount && reply->addr[0] == '\0'; i++) {
        off = skip_name(r, (size_t)len, (size_t)off);
        if (off < 0 || (size_t)off + 10 > (size_t)len) {
            goto done;
        }
        uint16_t type = get16(r + off);
        uint16_t rdlen = get16(r + off + 8);

        off += 10;
        if ((size_t)off + rdlen > (size_t)len) {
            goto done;
        }
        if (type == QTYPE_A && rdlen == 4) {
            inet_ntop(AF_INET, r + off, reply->addr, sizeof(reply->addr));
        } else if (type == QTYPE_AAAA && rdlen == 16) {
            inet_ntop(AF_INET6, r + off, reply->addr, sizeof(reply->addr));
        }
        off += rdlen;
    }
    rc = 0;
done:
    close(fd);
    return rc;
}
