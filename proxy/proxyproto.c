/*
 * proxyproto.c — the PROXY protocol header: its parser, and the accept stage of a
 * `listen ... proxy_protocol` address. See proxyproto.h.
 *
 * The header is read from the socket with a peek (recv MSG_PEEK) and then taken with a read of
 * exactly its length, as nginx and HAProxy do: the bytes behind it stay in the kernel for the
 * connection's own reader (sock.c's read, OpenSSL's handshake), which then starts as on a
 * listener without the flag. A header that comes in pieces is taken piece by piece (every byte
 * before its end is the header's), so that no readable socket is left unread (epoll would say it
 * again and again). A connection whose header came whole at the accept costs no allocation
 * here; one that waits gets a struct pp_wait with its own read event and deadline until then.
 */
#include "portico/proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/downstream.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/util.h"

static const char v1_sig[] = "PROXY "; /* then TCP4, TCP6 or UNKNOWN */
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* ---- the parser ---- */

/* The next space-separated field of a v1 line from *pos (exactly one space between fields,
 * none empty, printable ASCII only) copied into out (size bytes, NUL-terminated). false when
 * there is none, it is empty or too long, or holds another byte. */
static bool v1_field(const unsigned char *line, size_t len, size_t *pos, char *out, size_t size)
{
    size_t i = *pos, n = 0;
    for (; i < len && line[i] != ' '; i++) {
        if (line[i] < 0x21 || line[i] > 0x7e || n + 1 >= size)
            return false;
        out[n++] = (char)line[i];
    }
    out[n] = '\0';
    if (n == 0)
        return false;
    *pos = i < len ? i + 1 : i; /* past the space */
    return true;
}

/* A v1 port: 1 to 5 decimal digits, at most 65535. */
static bool v1_port(const char *s, uint16_t *port)
{
    uint64_t v;
    size_t n = strlen(s);
    if (n == 0 || n > 5 || parse_uint_span(s, n, 0, 65535, &v) != 0)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* The line "PROXY TCP4|TCP6 SRC DST SPORT DPORT" or "PROXY UNKNOWN ...", without its CRLF. */
static bool v1_fields(const unsigned char *line, size_t len, struct pp_header *h)
{
    char proto[8], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], sport[8], dport[8];
    size_t pos = sizeof(v1_sig) - 1;
    if (!v1_field(line, len, &pos, proto, sizeof(proto)))
        return false;
    if (strcmp(proto, "UNKNOWN") == 0)
        return true; /* whatever follows is ignored (the specification says so) */
    int family = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    /* (a field past the end is empty: v1_field refuses it) */
    if (!family || !v1_field(line, len, &pos, src, sizeof(src)) ||
        !v1_field(line, len, &pos, dst, sizeof(dst)) ||
        !v1_field(line, len, &pos, sport, sizeof(sport)) ||
        !v1_field(line, len, &pos, dport, sizeof(dport)) || pos != len || line[len - 1] == ' ')
        return false;
    unsigned char dst_bin[16];
    uint16_t sp, dp;
    if (inet_pton(family, dst, dst_bin) != 1 || !v1_port(sport, &sp) || !v1_port(dport, &dp))
        return false;
    memset(&h->source, 0, sizeof(h->source));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&h->source;
        in->sin_family = AF_INET;
        in->sin_port = htons(sp);
        if (inet_pton(AF_INET, src, &in->sin_addr) != 1)
            return false;
        h->source_len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&h->source;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(sp);
        if (inet_pton(AF_INET6, src, &in6->sin6_addr) != 1)
            return false;
        h->source_len = sizeof(*in6);
    }
    h->has_source = true;
    return true;
}

static int parse_v1(const unsigned char *p, size_t len, struct pp_header *h, enum pp_error *err)
{
    size_t seen = MIN(len, PP_V1_MAX);
    const unsigned char *lf = memchr(p, '\n', seen);
    if (!lf) {
        if (len < PP_V1_MAX)
            return 0;
        *err = PP_ERR_OVERSIZED;
        return -1;
    }
    size_t end = (size_t)(lf - p); /* the LF's offset: the line is p[0..end-1) before its CR */
    h->version = 1;
    if (end < sizeof(v1_sig) || p[end - 1] != '\r' || !v1_fields(p, end - 1, h)) {
        *err = PP_ERR_MALFORMED;
        return -1;
    }
    return (int)end + 1;
}

/* Address block bytes each v2 family needs: UNSPEC, INET, INET6, UNIX. */
static const size_t v2_family_len[4] = {0, 12, 36, 216};

#define PP2_TYPE_CRC32C 0x03 /* a TLV of 4 bytes: the header's CRC32c, big-endian */

/* CRC32c (Castagnoli, RFC 4960 Appendix B: the reflected polynomial 0x82F63B78) of the n bytes
 * of p, the 4 at skip counted as zeros: the checksum's own field. Bitwise: a header holds at
 * most PP_HEADER_MAX bytes, one per connection, and only those that carry a checksum. */
static uint32_t crc32c_zeroed(const unsigned char *p, size_t n, size_t skip)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= i - skip < 4 ? 0 : p[i]; /* (i < skip wraps: counted) */
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
    }
    return ~crc;
}

/* The TLVs from tlvs to total walked whole, as HAProxy does: one that runs past the header (or
 * a remnant too short for a TLV's own 3 bytes) makes the header malformed, -1 with *err; so
 * does a PP2_TYPE_CRC32C TLV that is not 4 bytes or does not match, checked as
 * proxy-protocol.txt 2.2.5 says a receiver must: over the whole header, its own field zeroed
 * (a mismatch is a balancer's or the path's corruption). 0 when the TLVs are sound. */
static int check_tlvs(const unsigned char *p, size_t total, size_t tlvs, enum pp_error *err)
{
    size_t crc_at = 0; /* the CRC32c value's offset; 0: none */
    *err = PP_ERR_MALFORMED;
    for (size_t at = tlvs; at < total;) {
        if (at + 3 > total)
            return -1;
        size_t len = (size_t)p[at + 1] << 8 | p[at + 2];
        if (at + 3 + len > total)
            return -1;
        if (p[at] == PP2_TYPE_CRC32C && crc_at == 0) {
            if (len != 4)
                return -1;
            crc_at = at + 3;
        }
        at += 3 + len;
    }
    if (crc_at == 0)
        return 0;
    const unsigned char *v = p + crc_at;
    uint32_t sent = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
    *err = PP_ERR_CHECKSUM;
    return crc32c_zeroed(p, total, crc_at) == sent ? 0 : -1;
}

static int parse_v2(const unsigned char *p, size_t len, struct pp_header *h, enum pp_error *err)
{
    if (len < PP_V2_FIXED)
        return 0;
    unsigned version = p[12] >> 4, command = p[12] & 0xf; /* 0: LOCAL, 1: PROXY */
    unsigned family = p[13] >> 4, transport = p[13] & 0xf;
    size_t total = PP_V2_FIXED + ((size_t)p[14] << 8 | p[15]);
    h->version = 2;
    if (version != 2 || command > 1 || family > 3 || transport > 2) {
        *err = PP_ERR_MALFORMED;
        return -1;
    }
    if (total > PP_HEADER_MAX) {
        *err = PP_ERR_OVERSIZED;
        return -1;
    }
    if (len < total)
        return 0;
    if (command == 0)
        return (int)total; /* LOCAL: the balancer's own connection (health checks) */
    if (total - PP_V2_FIXED < v2_family_len[family]) {
        *err = PP_ERR_MALFORMED;
        return -1;
    }
    if (check_tlvs(p, total, PP_V2_FIXED + v2_family_len[family], err) != 0)
        return -1;
    if (transport != 1 || (family != 1 && family != 2))
        return (int)total; /* not TCP over IPv4 or IPv6: the socket's own address stands */
    const unsigned char *a = p + PP_V2_FIXED; /* source, destination, then their ports */
    memset(&h->source, 0, sizeof(h->source));
    if (family == 1) {
        struct sockaddr_in *in = (struct sockaddr_in *)&h->source;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a, 4);
        memcpy(&in->sin_port, a + 8, 2); /* network order, as both are */
        h->source_len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&h->source;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, a, 16);
        memcpy(&in6->sin6_port, a + 32, 2);
        h->source_len = sizeof(*in6);
    }
    h->has_source = true;
    return (int)total; /* the other TLVs after the addresses are skipped */
}

int pp_parse(const unsigned char *p, size_t len, struct pp_header *h, enum pp_error *err)
{
    h->version = 0;
    h->has_source = false;
    h->source_len = 0;
    if (len == 0)
        return 0;
    if (p[0] == v2_sig[0]) {
        if (memcmp(p, v2_sig, MIN(len, sizeof(v2_sig))) != 0) {
            *err = PP_ERR_MISSING;
            return -1;
        }
        return parse_v2(p, len, h, err);
    }
    if (memcmp(p, v1_sig, MIN(len, sizeof(v1_sig) - 1)) != 0) {
        *err = PP_ERR_MISSING;
        return -1;
    }
    return parse_v1(p, len, h, err);
}

/* ---- the accept stage ---- */

/* A connection whose header has not all come yet. */
struct pp_wait {
    TAILQ_ENTRY(pp_wait) link;         /* the loop's proxy_waiting list */
    struct loop *loop;                 /* borrowed */
    struct event ev;                   /* EV_READ on fd, with what is left of the deadline */
    int fd;                            /* owned */
    bool tls;
    enum client_kind kind;
    struct sockaddr_storage peer;      /* the socket's own: the balancer */
    uint64_t accepted_us;
    size_t have;                       /* bytes of the header taken from the socket */
    unsigned char buf[PP_HEADER_MAX];
};

/* How a read of the header went. */
enum pp_step { PP_STEP_WAIT, PP_STEP_DONE, PP_STEP_FAILED, PP_STEP_SILENT };

/* Takes what the socket has of the header into buf (*have bytes there already): all of it when
 * it is not complete, else exactly the rest of it (*more: bytes follow it). DONE with *h, WAIT
 * for more, FAILED with *err, or SILENT: closed or reset before its first byte (a TCP health
 * check or a port scan: said to no one, as on a listener without the flag). */
static enum pp_step take_header(int fd, unsigned char *buf, size_t *have, struct pp_header *h,
                                enum pp_error *err, bool *more)
{
    ssize_t got = recv(fd, buf + *have, PP_HEADER_MAX - *have, MSG_PEEK);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return PP_STEP_WAIT;
    if (got <= 0) {
        *err = PP_ERR_TRUNCATED;
        return *have ? PP_STEP_FAILED : PP_STEP_SILENT;
    }
    size_t len = *have + (size_t)got;
    int n = pp_parse(buf, len, h, err);
    if (n < 0)
        return PP_STEP_FAILED;
    size_t take = n > 0 ? (size_t)n - *have : (size_t)got;
    /* The same bytes again, this time taken: the peek saw them, so all are there. */
    if (recv(fd, buf + *have, take, 0) != (ssize_t)take) {
        *err = PP_ERR_TRUNCATED;
        return PP_STEP_FAILED;
    }
    *have += take;
    *more = len > *have;
    return n > 0 ? PP_STEP_DONE : PP_STEP_WAIT;
}

/* A connection that ends before its header was in: closed, and out of the loop's count. It is
 * counted among the connections accepted now (one that gets through is counted by client_new). */
static void end_waiting(struct loop *l, int fd)
{
    close(fd);
    metrics_add(l->metrics, M_CONNECTIONS, 1);
    metrics_conn_add(l->metrics, CONN_CLIENT, CONN_HANDSHAKE, -1);
    loop_conn_closed(l);
}

static void refuse(struct loop *l, int fd, const struct sockaddr *peer, enum pp_error err,
                   size_t have)
{
    char ip[INET6_ADDRSTRLEN], addr[PEER_ADDR_MAX];
    uint16_t port = peer_ip_str(peer, ip);
    metrics_proxy_protocol_error(l->metrics, (int)err);
    log_client("client %s: %s (%zu byte%s of it taken); closed without an answer (listen ... "
               "proxy_protocol)",
               ip_port_str(ip, port, addr, sizeof(addr)), pp_error_words(err), have,
               have == 1 ? "" : "s");
    end_waiting(l, fd);
}

/* The header is in: the connection goes on as the header's source's. Its place among the
 * loop's connections passes to the client without a count in between (no drain ends, no
 * listener is held or released for it). */
static void hand_over(struct loop *l, int fd, const struct sockaddr *peer,
                      const struct pp_header *h, bool tls, enum client_kind kind, bool more,
                      uint64_t accepted_us)
{
    const struct sockaddr *sa = h->has_source ? (const struct sockaddr *)&h->source : peer;
    metrics_conn_add(l->metrics, CONN_CLIENT, CONN_HANDSHAKE, -1);
    l->conns--;
    if (!client_new_at(l, fd, sa, tls, kind, more, accepted_us) && l->on_idle &&
        l->conns == 0 && l->state == LOOP_DRAINING)
        l->on_idle(l); /* out of memory as the last connection of a drain */
}

static void wait_free(struct pp_wait *w)
{
    event_del(&w->ev);
    TAILQ_REMOVE(&w->loop->proxy_waiting, w, link);
    free(w);
}

/* Arms the read event with what is left of client_header_timeout since the accept. */
static int wait_arm(struct pp_wait *w)
{
    uint64_t due = w->accepted_us + w->loop->cfg->client_header_timeout_ms * 1000;
    uint64_t now = event_now_us();
    uint64_t left = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
    return event_add(&w->ev, &tv);
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pp_wait *w = arg;
    struct loop *l = w->loop;
    struct pp_header h;
    enum pp_error err = PP_ERR_TIMEOUT;
    bool more = false;
    enum pp_step step = what & EV_READ ? take_header(fd, w->buf, &w->have, &h, &err, &more)
                                       : PP_STEP_FAILED;
    if (step == PP_STEP_WAIT && wait_arm(w) == 0)
        return;
    if (step == PP_STEP_WAIT) /* no room for the timer: as out of time */
        step = PP_STEP_FAILED;
    struct sockaddr_storage peer = w->peer;
    bool tls = w->tls;
    enum client_kind kind = w->kind;
    uint64_t accepted_us = w->accepted_us;
    size_t have = w->have;
    wait_free(w);
    if (step == PP_STEP_DONE) {
        hand_over(l, fd, (struct sockaddr *)&peer, &h, tls, kind, more, accepted_us);
        return;
    }
    if (step == PP_STEP_SILENT)
        end_waiting(l, fd);
    else
        refuse(l, fd, (struct sockaddr *)&peer, err, have);
}

void proxyproto_accept(struct loop *l, int fd, const struct sockaddr *sa, bool tls,
                       enum client_kind kind)
{
    uint64_t accepted_us = event_now_us();
    /* Counted from the accept as any connection is: max_connections, a drain's wait. Shown as
     * in its handshake until the header is in (portico_connections{state="handshake"}). */
    loop_conn_opened(l);
    metrics_conn_add(l->metrics, CONN_CLIENT, CONN_HANDSHAKE, 1);
    unsigned char first[PP_HEADER_MAX];
    size_t have = 0;
    struct pp_header h;
    enum pp_error err;
    bool more = false;
    /* Read at once, as client_new does: with defer_accept the header is there; without, most
     * often too (the balancer sends it with the connection's first bytes). */
    enum pp_step step = take_header(fd, first, &have, &h, &err, &more);
    if (step == PP_STEP_DONE) {
        hand_over(l, fd, sa, &h, tls, kind, more, accepted_us);
        return;
    }
    struct pp_wait *w = step == PP_STEP_WAIT ? malloc(sizeof(*w)) : NULL;
    if (w) {
        *w = (struct pp_wait){.loop = l, .fd = fd, .tls = tls, .kind = kind,
                              .accepted_us = accepted_us, .have = have};
        memcpy(&w->peer, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                       : sizeof(struct sockaddr_in));
        memcpy(w->buf, first, have);
        event_assign(&w->ev, l->base, fd, EV_READ, wait_cb, w);
        TAILQ_INSERT_TAIL(&l->proxy_waiting, w, link);
        if (wait_arm(w) == 0)
            return;
        wait_free(w);
    }
    if (step == PP_STEP_SILENT || step == PP_STEP_WAIT) /* WAIT: out of memory */
        end_waiting(l, fd);
    else
        refuse(l, fd, sa, err, have);
}

void proxyproto_close_all(struct loop *l)
{
    struct pp_wait *w;
    while ((w = TAILQ_FIRST(&l->proxy_waiting)) != NULL) {
        int fd = w->fd;
        wait_free(w);
        end_waiting(l, fd);
    }
}
