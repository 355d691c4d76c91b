/* pace.c — a fixed-rate HTTP/1.1 load for `make bench` (scenario 4c, scripts/bench.sh).
 *
 * wrk sends as fast as the server answers; scenario 4c needs the opposite: a steady 10,000
 * error requests per second next to wrk's healthy load, whatever the server's speed (wrk2 is not
 * in Debian, and h2load's --rate paces connections, not requests). pace keeps CONNS keep-alive
 * connections with at most one request in flight on each (no pipelining), and every millisecond
 * sends what the schedule RATE x elapsed says is due on the idle ones. When it falls more than
 * 100 ms behind (every connection busy), the excess is skipped and counted, never sent in a
 * burst later. A connection the server closes is opened again.
 *
 * usage: pace HOST PORT PATH RATE SECONDS CONNS
 * Prints "ready N/CONNS" once the connections are open (or after 2 s), then paces for SECONDS
 * (or until SIGTERM/SIGINT) and prints one line "PACE key=value ...". Bench-only: IPv4 literal
 * HOST, responses framed by Content-Length or by the close (chunked is counted as other).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "minihttp.h"

#define PACE_MAX_CONNS 1024
#define PACE_BUF 16384
#define PACE_TICK_MS 1
#define PACE_MAX_BEHIND_S 0.1

enum pace_state { PACE_CLOSED, PACE_CONNECTING, PACE_IDLE, PACE_WAITING };

struct pace_conn {
    int fd;
    enum pace_state state;
    size_t used;               /* bytes of buf[] holding an incomplete head */
    int in_body;               /* the head is read, the body is being discarded */
    int64_t body_left;         /* body bytes still to come; -1: until the close */
    int close_after;           /* the response said Connection: close */
    int status;                /* of the response being read */
    double retry_at;           /* when a CLOSED connection may be opened again */
    char buf[PACE_BUF];
};

struct pace_stats {
    uint64_t sent;             /* requests written */
    uint64_t responses;        /* responses read whole */
    uint64_t by_class[6];      /* responses by status class, [2] = 2xx ... [5] = 5xx */
    uint64_t other;            /* unreadable or chunked responses */
    uint64_t conn_errors;      /* failed connects, and closes in the middle of a response */
    uint64_t reconnects;       /* connections opened again after a close */
    uint64_t skipped;          /* due requests dropped because every connection was busy */
};

static volatile sig_atomic_t stop;
static struct pace_conn pc[PACE_MAX_CONNS];
static struct pace_stats st;
static struct sockaddr_in addr;
static char request[512];
static size_t request_len;
static int ep;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void conn_drop(struct pace_conn *c, double now)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = PACE_CLOSED;
    c->retry_at = now;
}

static void conn_open(struct pace_conn *c, double now)
{
    int one = 1;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->used = 0;
    c->in_body = 0;
    if (c->fd < 0) {
        c->state = PACE_CLOSED;
        c->retry_at = now + 0.01;
        st.conn_errors++;
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
        st.conn_errors++;
        conn_drop(c, now + 0.01);
        return;
    }
    c->state = PACE_CONNECTING;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_connected(struct pace_conn *c, double now)
{
    int err = 0;
    socklen_t len = sizeof(err);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        st.conn_errors++;
        conn_drop(c, now + 0.01);
        return;
    }
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->state = PACE_IDLE;
}

static void response_done(struct pace_conn *c, double now)
{
    st.responses++;
    if (c->status >= 100 && c->status < 600)
        st.by_class[c->status / 100]++;
    c->in_body = 0;
    c->used = 0;
    c->state = PACE_IDLE;
    if (c->close_after) {
        st.reconnects++;
        conn_drop(c, now);
    }
}

/* A head is complete in c->buf (hl bytes, c->used in all): frame the body. */
static int on_head(struct pace_conn *c, size_t hl)
{
    int64_t cl = mh_content_length(c->buf, hl);

    if (c->used < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0 ||
        mh_field_has(c->buf, hl, "Transfer-Encoding", "chunked") || cl == -2)
        return -1;
    c->status = atoi(c->buf + 9);
    c->close_after = mh_field_has(c->buf, hl, "Connection", "close") || c->buf[7] == '0';
    if (c->status == 204 || c->status == 304)
        cl = 0;
    c->body_left = cl;   /* -1: until the close */
    c->in_body = 1;
    if (cl >= 0 && (int64_t)(c->used - hl) > cl)
        return -1;       /* more than the body: we never pipeline, so the framing is wrong */
    if (cl >= 0)
        c->body_left = cl - (int64_t)(c->used - hl);
    return 0;
}

static void on_readable(struct pace_conn *c, double now)
{
    ssize_t r;

    if (c->in_body) {
        r = recv(c->fd, c->buf, sizeof(c->buf), 0);
    } else {
        r = recv(c->fd, c->buf + c->used, sizeof(c->buf) - c->used, 0);
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        if (c->state == PACE_WAITING && c->in_body && c->body_left < 0) {
            c->close_after = 1;        /* a body framed by the close: whole */
            response_done(c, now);
            return;
        }
        if (c->state == PACE_WAITING)
            st.conn_errors++;
        st.reconnects++;
        conn_drop(c, now);
        return;
    }
    if (c->state != PACE_WAITING) {   /* bytes nobody asked for */
        st.other++;
        conn_drop(c, now);
        return;
    }
    if (!c->in_body) {
        c->used += (size_t)r;
        size_t hl = mh_head_len(c->buf, c->used);
        if (hl == 0 && c->used < sizeof(c->buf))
            return;
        if (hl == 0 || on_head(c, hl) < 0) {
            st.other++;
            conn_drop(c, now);
            return;
        }
    } else if (c->body_left >= 0) {
        if (r > c->body_left) {
            st.other++;
            conn_drop(c, now);
            return;
        }
        c->body_left -= r;
    }
    if (c->body_left == 0)
        response_done(c, now);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, timeout_ms);
    double now = mh_now();

    for (int i = 0; i < n; i++) {
        struct pace_conn *c = evs[i].data.ptr;
        if (c->state == PACE_CONNECTING)
            on_connected(c, now);
        else if (c->fd >= 0)
            on_readable(c, now);
    }
}

int main(int argc, char **argv)
{
    double rate, seconds, t0, now;
    int nconns, cursor = 0;

    if (argc != 7) {
        fprintf(stderr, "usage: pace HOST PORT PATH RATE SECONDS CONNS\n");
        return 2;
    }
    rate = atof(argv[4]);
    seconds = atof(argv[5]);
    nconns = atoi(argv[6]);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 || rate <= 0 || seconds <= 0 ||
        nconns < 1 || nconns > PACE_MAX_CONNS || argv[3][0] != '/') {
        fprintf(stderr, "pace: bad arguments (IPv4 host, port, /path, rate > 0, seconds > 0, "
                        "1-%d connections)\n", PACE_MAX_CONNS);
        return 2;
    }
    int rl = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
                      argv[3], argv[1], argv[2]);
    if (rl < 0 || (size_t)rl >= sizeof(request))
        return 2;
    request_len = (size_t)rl;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("pace: epoll");
        return 1;
    }

    now = mh_now();
    for (int i = 0; i < nconns; i++)
        conn_open(&pc[i], now);
    for (double until = now + 2; !stop && mh_now() < until;) {
        int idle = 0;
        for (int i = 0; i < nconns; i++)
            idle += pc[i].state == PACE_IDLE;
        if (idle == nconns)
            break;
        poll_once(10);
    }
    {
        int idle = 0;
        for (int i = 0; i < nconns; i++)
            idle += pc[i].state == PACE_IDLE;
        printf("ready %d/%d\n", idle, nconns);
        fflush(stdout);
    }

    double cpu0 = cpu_seconds();
    t0 = mh_now();
    for (now = t0; !stop && now < t0 + seconds; now = mh_now()) {
        uint64_t target = (uint64_t)(rate * (now - t0));
        uint64_t due = target > st.sent + st.skipped ? target - st.sent - st.skipped : 0;
        for (int tries = 0; due > 0 && tries < nconns; tries++) {
            struct pace_conn *c = &pc[cursor];
            cursor = (cursor + 1) % nconns;
            if (c->state == PACE_CLOSED && c->retry_at <= now)
                conn_open(c, now);
            if (c->state != PACE_IDLE)
                continue;
            if (send(c->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
                st.conn_errors++;
                conn_drop(c, now + 0.01);
                continue;
            }
            c->state = PACE_WAITING;
            st.sent++;
            due--;
        }
        if (due > (uint64_t)(rate * PACE_MAX_BEHIND_S))
            st.skipped += due - (uint64_t)(rate * PACE_MAX_BEHIND_S);
        poll_once(PACE_TICK_MS);
    }
    double elapsed = mh_now() - t0;
    printf("PACE target_rate=%.0f elapsed_s=%.3f sent=%llu responses=%llu rate=%.0f s2xx=%llu "
           "s3xx=%llu s4xx=%llu s5xx=%llu other=%llu conn_errors=%llu reconnects=%llu "
           "skipped=%llu cpu_s=%.3f\n", rate, elapsed, (unsigned long long)st.sent,
           (unsigned long long)st.responses, elapsed > 0 ? (double)st.responses / elapsed : 0,
           (unsigned long long)st.by_class[2], (unsigned long long)st.by_class[3],
           (unsigned long long)st.by_class[4], (unsigned long long)st.by_class[5],
           (unsigned long long)st.other, (unsigned long long)st.conn_errors,
           (unsigned long long)st.reconnects, (unsigned long long)st.skipped,
           cpu_seconds() - cpu0);
    return 0;
}
