/* sink.c — the upload origin of `make bench` (scenario 2c, scripts/bench.sh).
 *
 * An HTTP/1.1 server on 127.0.0.1:PORT that reads every request body to its last byte before it
 * answers (nginx's `return 200` answers first and drains later, which lets a proxy see the
 * response before it has sent the body), checks every byte against the pattern the bench's wrk
 * script sends ("0123456789abcdef" repeated, from offset 0 of each body) and throws it away.
 * A whole body answers 200 with an empty body, a body that differs 400 (so that wrk counts it).
 * GET /stats answers its counters, which the bench reads before and after each upload run to
 * check that the bytes wrk reports as sent really arrived.
 *
 * usage: sink PORT        runs until SIGTERM or SIGINT
 * Bench-only: Content-Length bodies only (chunked gets 501 and a close), one thread, epoll.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "minihttp.h"

#define SINK_HEAD_MAX 16384
#define SINK_READ 262144
#define SINK_MAX_FDS 65536
#define PATTERN "0123456789abcdef"
#define PATTERN_LEN 16

enum sink_state { SINK_HEAD, SINK_BODY };

struct sink_conn {
    int fd;
    enum sink_state state;
    size_t head_used;          /* bytes of head[] filled */
    int64_t body_left;         /* body bytes still to come */
    uint64_t body_off;         /* offset in the body, for the pattern */
    int body_bad;              /* a byte differed from the pattern */
    int close_after;           /* the request said Connection: close */
    char head[SINK_HEAD_MAX];
};

struct sink_stats {
    uint64_t requests;         /* heads read */
    uint64_t bodies_ok;        /* bodies complete and equal to the pattern */
    uint64_t bodies_bad;       /* bodies complete but different */
    uint64_t body_bytes;       /* body bytes read, whole bodies or not */
    uint64_t bad_heads;        /* heads it could not read, or chunked */
    uint64_t conns;            /* connections accepted */
};

static volatile sig_atomic_t stop;
static struct sink_stats st;
static struct sink_conn *conns[SINK_MAX_FDS];
static char pattern[SINK_READ + PATTERN_LEN];
static char rbuf[SINK_READ];

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void conn_close(int ep, struct sink_conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c);
}

/* Responses are a few dozen bytes and clients read them: a short write means a client that
 * stopped reading, which no bench load does; it is closed rather than buffered for. */
static int send_all(struct sink_conn *c, const char *s, size_t n)
{
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    return w == (ssize_t)n ? 0 : -1;
}

static int respond(struct sink_conn *c, int status, const char *body)
{
    char out[512];
    int n = snprintf(out, sizeof(out), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s\r\n%s",
                     status, status == 200 ? "OK" : status == 400 ? "Bad Request"
                                                      : "Not Implemented",
                     strlen(body), c->close_after ? "Connection: close\r\n" : "", body);
    if (n < 0 || (size_t)n >= sizeof(out))
        return -1;
    return send_all(c, out, (size_t)n);
}

/* A complete head of hl bytes is in c->head: start the body, or answer at once. */
static int on_head(struct sink_conn *c, size_t hl)
{
    int64_t cl = mh_content_length(c->head, hl);

    st.requests++;
    c->close_after = mh_field_has(c->head, hl, "Connection", "close");
    if (mh_field_has(c->head, hl, "Transfer-Encoding", "chunked") || cl == -2) {
        st.bad_heads++;
        c->close_after = 1;
        respond(c, 501, "");
        return -1;
    }
    if (strncmp(c->head, "GET /stats ", 11) == 0) {
        char body[256];
        snprintf(body, sizeof(body),
                 "requests=%llu bodies_ok=%llu bodies_bad=%llu body_bytes=%llu bad_heads=%llu "
                 "conns=%llu\n", (unsigned long long)st.requests,
                 (unsigned long long)st.bodies_ok, (unsigned long long)st.bodies_bad,
                 (unsigned long long)st.body_bytes, (unsigned long long)st.bad_heads,
                 (unsigned long long)st.conns);
        return respond(c, 200, body);
    }
    if (cl <= 0)
        return respond(c, 200, "");
    if (mh_field_has(c->head, hl, "Expect", "100-continue") &&
        send_all(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
        return -1;
    c->state = SINK_BODY;
    c->body_left = cl;
    c->body_off = 0;
    c->body_bad = 0;
    return 0;
}

/* Feed n received bytes through the head / body states; -1 closes the connection. */
static int on_bytes(struct sink_conn *c, const char *data, size_t n)
{
    while (n > 0) {
        if (c->state == SINK_BODY) {
            size_t take = (uint64_t)c->body_left < n ? (size_t)c->body_left : n;
            if (memcmp(data, pattern + c->body_off % PATTERN_LEN, take) != 0)
                c->body_bad = 1;
            c->body_off += take;
            c->body_left -= (int64_t)take;
            st.body_bytes += take;
            data += take;
            n -= take;
            if (c->body_left == 0) {
                c->state = SINK_HEAD;
                if (c->body_bad)
                    st.bodies_bad++;
                else
                    st.bodies_ok++;
                if (respond(c, c->body_bad ? 400 : 200, "") < 0 || c->close_after)
                    return -1;
            }
            continue;
        }
        /* Copy no further than the blank line: what follows is body or the next request. */
        size_t room = SINK_HEAD_MAX - c->head_used;
        size_t take = n < room ? n : room;
        size_t from = c->head_used > 3 ? c->head_used - 3 : 0;
        memcpy(c->head + c->head_used, data, take);
        size_t hl = mh_head_len(c->head + from, c->head_used + take - from);
        if (hl == 0) {
            c->head_used += take;
            data += take;
            n -= take;
            if (c->head_used == SINK_HEAD_MAX) {
                st.bad_heads++;
                return -1;
            }
            continue;
        }
        size_t end = from + hl;
        data += end - c->head_used;
        n -= end - c->head_used;
        c->head_used = 0;
        if (on_head(c, end) < 0 || (c->state == SINK_HEAD && c->close_after))
            return -1;
    }
    return 0;
}

static void on_readable(int ep, struct sink_conn *c)
{
    for (int i = 0; i < 4; i++) {   /* a few reads per wake-up, then let others run */
        ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r <= 0 || on_bytes(c, rbuf, (size_t)r) < 0) {
            conn_close(ep, c);
            return;
        }
        if ((size_t)r < sizeof(rbuf))
            return;
    }
}

static void on_accept(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct sink_conn *c = fd < SINK_MAX_FDS ? calloc(1, sizeof(*c)) : NULL;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        int one = 1;
        if (!c || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(c);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        conns[fd] = c;
        st.conns++;
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct epoll_event ev = {.events = EPOLLIN};
    int port = argc == 2 ? atoi(argv[1]) : 0;
    int one = 1, lfd, ep;

    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: sink PORT\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = PATTERN[i % PATTERN_LEN];
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    sa.sin_port = htons((uint16_t)port);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || ep < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0) {
        perror("sink: listen");
        return 1;
    }
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    while (!stop) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd)
                on_accept(ep, lfd);
            else if (conns[fd])
                on_readable(ep, conns[fd]);
        }
    }
    fprintf(stderr, "sink: requests=%llu bodies_ok=%llu bodies_bad=%llu body_bytes=%llu "
            "bad_heads=%llu\n", (unsigned long long)st.requests,
            (unsigned long long)st.bodies_ok, (unsigned long long)st.bodies_bad,
            (unsigned long long)st.body_bytes, (unsigned long long)st.bad_heads);
    return 0;
}
