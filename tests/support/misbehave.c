/*
 * misbehave.c — see misbehave.h. Moved here from test_failures.c, which uses it too.
 */
#include "misbehave.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

#define MB_MIN(a, b) ((a) < (b) ? (a) : (b))

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

