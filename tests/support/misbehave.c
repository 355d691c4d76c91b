/*
 * misbehave.c — see misbehave.h. The body streamer and the router moved here from
 * test_failures.c; the world and mb_provoke gather what test_failures.c, test_faults_fidelity.c,
 * test_diag.c and test_probe.c each had a copy of.
 */
#include "misbehave.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certs.h"
#include "testutil.h"

#define MB_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- the world ---- */

static const struct fo_step rst_after_head[] = {FO_RST(), FO_END()};

int mb_world_start(struct mb_world *w, const char *ok_body, const struct fake_origin_opts *more,
                   size_t n)
{
    const struct test_certs *certs = certs_get();

    memset(w, 0, sizeof(*w));
    if (certs == NULL || n > MB_MAX_ORIGINS)
        return -1;
    const struct fake_origin_opts catalog[MB_ORIGIN_COUNT] = {
        [MB_OK] = {.kind = FO_OK, .body = ok_body},
        [MB_REFUSE] = {.kind = FO_REFUSE},
        [MB_BLACKHOLE] = {.kind = FO_BLACKHOLE},
        [MB_UNREACH] = {.kind = FO_BLACKHOLE},
        [MB_TLS_GARBAGE] = {.kind = FO_TLS_GARBAGE},
        [MB_TLS_SILENT] = {.kind = FO_TLS_SILENT},
        [MB_CERT_SELF] = {.kind = FO_OK, .tls_cert = certs->self_signed_cert,
                          .tls_key = certs->self_signed_key},
        [MB_NO_READ] = {.kind = FO_NO_READ},
        [MB_RST_AFTER_HEAD] = {.kind = FO_SCRIPT, .script = rst_after_head,
                               .respond_before_body = true},
        [MB_SILENT] = {.kind = FO_SILENT},
        [MB_PARTIAL_HEAD] = {.kind = FO_PARTIAL_HEAD},
        [MB_CLOSE_EMPTY] = {.kind = FO_CLOSE_EMPTY},
        [MB_RESET] = {.kind = FO_RESET},
        [MB_GARBAGE] = {.kind = FO_GARBAGE},
    };
    for (size_t i = 0; i < MB_ORIGIN_COUNT || i < n; i++) {
        w->origin[i] = fake_origin_start(i < MB_ORIGIN_COUNT ? &catalog[i] : &more[i]);
        if (w->origin[i] == NULL)
            return -1;
        w->port[i] = fake_origin_port(w->origin[i]);
    }
    w->dns = fake_dns_start(NULL);
    return w->dns != NULL ? 0 : -1;
}

void mb_world_stop(struct mb_world *w)
{
    for (size_t i = 0; i < MB_MAX_ORIGINS; i++)
        fake_origin_stop(w->origin[i]);
    fake_dns_stop(w->dns);
    memset(w, 0, sizeof(*w));
}

FILE *mb_conf_open(char **text, size_t *len, uint16_t dns_port, const char *proxy_lines)
{
    FILE *f = open_memstream(text, len);

    if (f != NULL)
        fprintf(f, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                   "admin_listen = 127.0.0.1:{{port:admin}}\naccess_log = {{dir}}/access.log\n"
                   "workers = 2\nresolver = 127.0.0.1:%u\n"
                   "dns_timeout = 2s\nconnect_timeout = 2s\ntls_timeout = 2s\nsend_timeout = 2s\n"
                   "first_byte_timeout = 2s\nread_timeout = 2s\n%s",
                dns_port, proxy_lines);
    return f;
}

void mb_conf_case(FILE *f, const char *name, const char *host, uint16_t port, const char *extra)
{
    fprintf(f, "[upstream %s]\norigin = %s:%u\n%s[route %s]\nprefix = /%s/\nupstream = %s\n",
            name, host != NULL ? host : "127.0.0.1", port, extra, name, name, name);
}

/* ---- the body and the router ---- */

size_t mb_stream_body(struct raw_conn *c, size_t len, int timeout_ms)
{
    static char chunk[64 * 1024];
    int fd = raw_fd(c);
    size_t sent = 0;
    int64_t deadline = tu_now_ms() + timeout_ms;

    memset(chunk, 'b', sizeof(chunk));
    while (tu_ms_left(deadline) > 0) {
        struct pollfd p = {fd, (short)(POLLIN | (sent < len ? POLLOUT : 0)), 0};
        int n = poll(&p, 1, tu_ms_left(deadline));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0)
            break;
        ssize_t w = send(fd, chunk, MB_MIN(sizeof(chunk), len - sent), MSG_NOSIGNAL);

        if (w < 0 && errno != EAGAIN && errno != EINTR)
            break;
        if (w > 0)
            sent += (size_t)w;
    }
    return sent;
}

int mb_icmp_open(struct mb_icmp_router *ir, uint16_t port)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),          /* X = IP header length */
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),           /* TCP destination port */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 3),
        BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),          /* TCP flags */
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),       /* SYN and ACK bits */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 1, 0), /* SYN without ACK */
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    unsigned char drain[2048];

    ir->tcp = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    ir->icmp = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (ir->tcp < 0 || ir->icmp < 0 ||
        setsockopt(ir->tcp, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) {
        int err = errno;

        if (ir->tcp >= 0)
            close(ir->tcp);
        if (ir->icmp >= 0)
            close(ir->icmp);
        errno = err;
        return -1;
    }
    /* whatever was queued before the filter was attached */
    while (recv(ir->tcp, drain, sizeof(drain), 0) > 0)
        ;
    return 0;
}

void mb_icmp_close(struct mb_icmp_router *ir)
{
    close(ir->tcp);
    close(ir->icmp);
}

static uint16_t inet_csum(const unsigned char *b, size_t n)
{
    uint32_t s = 0;

    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(b[i] << 8 | b[i + 1]);
    if (n & 1)
        s += (uint32_t)b[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return htons((uint16_t)~s);
}

unsigned mb_icmp_answer_syns(struct mb_icmp_router *ir, uint16_t port, struct raw_conn *c,
                             int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    unsigned sent = 0;

    while (tu_ms_left(deadline) > 0) {
        struct pollfd p[2] = {{ir->tcp, POLLIN, 0}, {raw_fd(c), POLLIN, 0}};

        if (poll(p, 2, tu_ms_left(deadline)) <= 0 && errno != EINTR)
            break;
        if (p[1].revents != 0)
            break;
        unsigned char pkt[2048];
        ssize_t n;

        while ((n = recv(ir->tcp, pkt, sizeof(pkt), 0)) > 0) {
            size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;

            if ((size_t)n < ihl + 20 || ihl < 20)
                continue;
            const unsigned char *th = pkt + ihl;
            uint16_t dport = (uint16_t)(th[2] << 8 | th[3]);
            unsigned char flags = th[13];
            uint32_t lo = htonl(INADDR_LOOPBACK);

            if (dport != port || (flags & 0x12) != 0x02 || memcmp(pkt + 12, &lo, 4) != 0 ||
                memcmp(pkt + 16, &lo, 4) != 0)
                continue;
            unsigned char msg[8 + 60 + 8] = {3, 1}; /* type 3 unreachable, code 1 host */
            size_t len = 8 + ihl + 8;

            memcpy(msg + 8, pkt, ihl + 8);
            uint16_t sum = inet_csum(msg, len);

            memcpy(msg + 2, &sum, 2);
            struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = lo};

            if (sendto(ir->icmp, msg, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len)
                sent++;
        }
    }
    return sent;
}


bool mb_icmp_available(uint16_t port)
{
    struct mb_icmp_router ir;

    if (mb_icmp_open(&ir, port) != 0)
        return false;
    mb_icmp_close(&ir);
    return true;
}

/* ---- one request ---- */

const char *mb_head(char *buf, size_t size, enum mb_how how, const char *route, size_t body_len)
{
    if (how == MB_BODY)
        snprintf(buf, size, "POST /%s/x HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n", route, body_len);
    else
        snprintf(buf, size, "GET /%s/x HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n"
                            "Connection: close\r\n\r\n", route);
    return buf;
}

int mb_provoke(struct raw_conn *c, const struct mb_request *req, struct mb_reply *out)
{
    struct mb_icmp_router ir;

    memset(out, 0, sizeof(*out));
    if (req->how == MB_ICMP && mb_icmp_open(&ir, req->icmp_port) != 0) {
        snprintf(out->r.error, sizeof(out->r.error), "ICMP router: %s", strerror(errno));
        return -1;
    }
    int64_t t0 = tu_now_ms();

    if (raw_send_str(c, req->head) != 0) {
        if (req->how == MB_ICMP)
            mb_icmp_close(&ir);
        snprintf(out->r.error, sizeof(out->r.error), "the request head was not sent");
        return -1;
    }
    if (req->how == MB_BODY) {
        out->body_sent = mb_stream_body(c, req->body_len, req->timeout_ms);
    } else if (req->how == MB_ICMP) {
        unsigned n = mb_icmp_answer_syns(&ir, req->icmp_port, c, req->timeout_ms);

        mb_icmp_close(&ir);
        if (n == 0) {
            snprintf(out->r.error, sizeof(out->r.error), "no SYN to port %u was answered",
                     req->icmp_port);
            return -1;
        }
    }
    if (raw_read_response(c, &out->r, req->timeout_ms) != 0)
        return -1;
    out->elapsed_ms = out->r.first_byte_ms - t0;
    return 0;
}
