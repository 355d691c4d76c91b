/*
 * stream_origin.c — the pattern origin and reader of stream_origin.h: plain sockets, poll() and
 * a thread per connection, each woken by the origin's stop pipe.
 */
#include "stream_origin.h"

#include "raw_client.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIN_U64(a, b) ((uint64_t)(a) < (uint64_t)(b) ? (uint64_t)(a) : (uint64_t)(b))
#define READ_MS 10000 /* bound of one read of the reader */

enum so_framing { SO_LENGTH, SO_CHUNKED, SO_CLOSE };

struct so_conn {
    struct stream_origin *o;
    int fd;
    char buf[SO_BLOCK];
    size_t len;                   /* unconsumed bytes in buf */
};

void so_pattern_fill(unsigned char *p, uint64_t off, size_t n)
{
    for (size_t k = 0; k < n; k++)
        p[k] = so_pattern_at(off + k);
}

int64_t so_pattern_check(const unsigned char *p, uint64_t off, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (p[k] != so_pattern_at(off + k))
            return (int64_t)(off + k);
    return -1;
}

/* ---- the origin ---- */

static int so_stopping(struct stream_origin *o)
{
    struct pollfd p = {.fd = o->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Reads more into c->buf (appending); 0 on EOF/stop/error. Wakes up for stop. */
static ssize_t so_fill(struct so_conn *c)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
                              {.fd = c->o->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 0;
        }
        if (p[1].revents)
            return 0;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        c->len += (size_t)n;
        return n;
    }
}

static int so_send_all(struct so_conn *c, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        struct pollfd pf[2] = {{.fd = c->fd, .events = POLLOUT},
                               {.fd = c->o->stop_pipe[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (pf[1].revents)
            return -1;
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void so_consume(struct so_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Waits while *hold (o->hold_reading or o->hold_sending) is set, or until stop. */
static void so_wait_release(struct stream_origin *o, const bool *hold)
{
    pthread_mutex_lock(&o->mu);
    while (*hold && !so_stopping(o))
        pthread_cond_wait(&o->cond, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

/* Adds n to a counter and wakes so_wait_count. */
static void so_count(struct stream_origin *o, _Atomic uint64_t *counter, uint64_t n)
{
    pthread_mutex_lock(&o->mu);
    atomic_fetch_add(counter, n);
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
}

/* Takes up to `want` body bytes from the connection, checking them; returns how many, 0 on
 * EOF. */
static size_t so_take_body(struct so_conn *c, uint64_t *off, uint64_t want)
{
    if (c->len == 0 && so_fill(c) == 0)
        return 0;
    size_t n = (size_t)MIN_U64(want, c->len);
    int64_t bad = so_pattern_check((unsigned char *)c->buf, *off, n);
    if (bad >= 0) {
        int64_t none = -1;
        atomic_compare_exchange_strong(&c->o->bad_offset, &none, bad);
    }
    *off += n;
    so_count(c->o, &c->o->received, n);
    so_consume(c, n);
    return n;
}

/* Reads a CRLF-terminated line (without it) into line; 0 ok, -1 EOF/too long. */
static int so_line(struct so_conn *c, char *line, size_t size)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t n = (size_t)(nl - c->buf) + 1;
            if (n > size)
                return -1;
            memcpy(line, c->buf, n - 2);
            line[n - 2] = '\0';
            so_consume(c, n);
            return 0;
        }
        if (c->len == sizeof(c->buf) || so_fill(c) == 0)
            return -1;
    }
}

static int so_body(struct so_conn *c, uint64_t length, bool chunked)
{
    uint64_t off = 0;
    char line[256];
    so_wait_release(c->o, &c->o->hold_reading);
    if (!chunked) {
        while (off < length)
            if (so_take_body(c, &off, length - off) == 0)
                return -1;
        return 0;
    }
    for (;;) {
        if (so_line(c, line, sizeof(line)) != 0)
            return -1;
        uint64_t size = strtoull(line, NULL, 16);
        if (size == 0)
            break;
        uint64_t end = off + size;
        while (off < end)
            if (so_take_body(c, &off, end - off) == 0)
                return -1;
        if (so_line(c, line, sizeof(line)) != 0 || line[0] != '\0')
            return -1;
    }
    do { /* trailers */
        if (so_line(c, line, sizeof(line)) != 0)
            return -1;
    } while (line[0] != '\0');
    return 0;
}

/* Sends `n` pattern bytes framed as asked, or only the first `cut` of them and then asks for
 * the connection to be closed (1). */
static int so_download(struct so_conn *c, uint64_t n, uint64_t cut, enum so_framing framing)
{
    char head[160];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n%s"
             "\r\n", framing == SO_LENGTH ? "" : framing == SO_CHUNKED
                                                     ? "Transfer-Encoding: chunked\r\n"
                                                     : "Connection: close\r\n");
    if (framing == SO_LENGTH)
        snprintf(head + strlen(head) - 2, sizeof(head) - strlen(head) + 2,
                 "Content-Length: %llu\r\n\r\n", (unsigned long long)n);
    if (so_send_all(c, head, strlen(head)) != 0)
        return -1;
    so_wait_release(c->o, &c->o->hold_sending);
    uint64_t end = MIN_U64(n, cut);
    unsigned char *block = malloc(SO_BLOCK + 32);
    if (!block)
        return -1;
    int rc = 0;
    for (uint64_t off = 0; off < end && rc == 0;) {
        size_t k = (size_t)MIN_U64(SO_BLOCK / 2 + (off / 7919) % (SO_BLOCK / 2), end - off);
        size_t pre = 0;
        if (framing == SO_CHUNKED)
            pre = (size_t)snprintf((char *)block, 32, "%zx\r\n", k);
        so_pattern_fill(block + pre, off, k);
        size_t total = pre + k;
        if (framing == SO_CHUNKED) {
            memcpy(block + total, "\r\n", 2);
            total += 2;
        }
        rc = so_send_all(c, block, total);
        off += k;
        so_count(c->o, &c->o->sent, k);
    }
    free(block);
    if (rc == 0 && end < n)
        return 1;
    if (rc == 0 && framing == SO_CHUNKED)
        rc = so_send_all(c, "0\r\nX-Bytes: done\r\n\r\n", 21);
    return rc == 0 && framing == SO_CLOSE ? 1 : rc;
}

static void *so_conn_main(void *arg)
{
    struct so_conn *c = arg;
    char line[1024];
    for (unsigned index = 0;; index++) {
        /* request line and fields */
        char method[16] = "", path[256] = "";
        uint64_t length = 0;
        bool chunked = false, expect = false;
        if (so_line(c, line, sizeof(line)) != 0)
            break;
        if (sscanf(line, "%15s %255s", method, path) != 2)
            break;
        for (;;) {
            if (so_line(c, line, sizeof(line)) != 0)
                goto out;
            if (line[0] == '\0')
                break;
            if (strncasecmp(line, "Content-Length:", 15) == 0)
                length = strtoull(line + 15, NULL, 10);
            else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0)
                chunked = strstr(line, "chunked") != NULL;
            else if (strncasecmp(line, "Expect:", 7) == 0)
                expect = strcasestr(line, "100-continue") != NULL;
        }
        so_count(c->o, &c->o->heads, 1);
        int rc = 0;
        unsigned long long early_at = 0;
        if (sscanf(path, "/up-early/%llu", &early_at) == 1) {
            static const char early[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly";
            uint64_t off = 0;
            while (off < early_at && off < length)
                if (so_take_body(c, &off, MIN_U64(early_at, length) - off) == 0)
                    goto out;
            if (so_send_all(c, early, strlen(early)) != 0)
                break;
            while (off < length)
                if (so_take_body(c, &off, length - off) == 0)
                    goto out;
        } else if (strcmp(path, "/up-fresh") == 0 && index > 0) {
            break; /* a connection it had dropped, as the request came: FIN, nothing read */
        } else if (strcmp(path, "/up") == 0 || strcmp(path, "/up-fresh") == 0) {
            if (expect && so_send_all(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
                break;
            if (so_body(c, length, chunked) != 0)
                break;
            char resp[160];
            char body[64];
            int bn = snprintf(body, sizeof(body), "received=%llu",
                              (unsigned long long)atomic_load(&c->o->received));
            snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", bn,
                     body);
            rc = so_send_all(c, resp, strlen(resp));
        } else {
            unsigned long long n = 0, cut = UINT64_MAX;
            char kind[32] = "";
            if (sscanf(path, "/down-%31[a-z]/%llu/cut/%llu", kind, &n, &cut) < 2)
                break;
            enum so_framing framing = strcmp(kind, "chunked") == 0 ? SO_CHUNKED
                                      : strcmp(kind, "close") == 0 ? SO_CLOSE
                                                                   : SO_LENGTH;
            rc = so_download(c, n, cut, framing);
        }
        atomic_fetch_add(&c->o->requests, 1);
        if (rc != 0)
            break;
    }
out:
    shutdown(c->fd, SHUT_WR);
    free(c);
    return NULL;
}

static void *so_accept_main(void *arg)
{
    struct stream_origin *o = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = o->lfd, .events = POLLIN},
                              {.fd = o->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno == EINTR)
            continue;
        if (p[1].revents)
            break;
        int fd = accept4(o->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct so_conn *c = calloc(1, sizeof(*c));
        pthread_mutex_lock(&o->mu);
        if (!c || o->nconns == SO_MAX_CONNS) {
            pthread_mutex_unlock(&o->mu);
            free(c);
            close(fd);
            continue;
        }
        c->o = o;
        c->fd = fd;
        o->conn_fds[o->nconns] = fd;
        pthread_create(&o->conn_threads[o->nconns], NULL, so_conn_main, c);
        o->nconns++;
        pthread_mutex_unlock(&o->mu);
    }
    return NULL;
}

struct stream_origin *so_start(void)
{
    struct stream_origin *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cond, NULL);
    atomic_store(&o->bad_offset, -1);
    o->lfd = -1;
    if (pipe(o->stop_pipe) != 0) {
        free(o);
        return NULL;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sa);
    o->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (o->lfd < 0 || bind(o->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(o->lfd, 16) != 0 || getsockname(o->lfd, (struct sockaddr *)&sa, &slen) != 0 ||
        pthread_create(&o->accept_thread, NULL, so_accept_main, o) != 0) {
        fprintf(stderr, "stream origin: %s\n", strerror(errno));
        if (o->lfd >= 0)
            close(o->lfd);
        close(o->stop_pipe[0]);
        close(o->stop_pipe[1]);
        free(o);
        return NULL;
    }
    o->port = ntohs(sa.sin_port);
    return o;
}

void so_hold_reading(struct stream_origin *o, bool hold)
{
    pthread_mutex_lock(&o->mu);
    o->hold_reading = hold;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
}

void so_hold_sending(struct stream_origin *o, bool hold)
{
    pthread_mutex_lock(&o->mu);
    o->hold_sending = hold;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
}

int so_wait_count(struct stream_origin *o, _Atomic uint64_t *counter, uint64_t value,
                  int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    int rc = 0;
    pthread_mutex_lock(&o->mu);
    while (atomic_load(counter) < value && rc == 0) {
        int64_t left = deadline - tu_now_ms();
        if (left <= 0) {
            rc = -1;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&o->cond, &o->mu, &ts);
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

unsigned so_connections(struct stream_origin *o)
{
    pthread_mutex_lock(&o->mu);
    unsigned n = (unsigned)o->nconns;
    pthread_mutex_unlock(&o->mu);
    return n;
}

uint64_t so_download_stalled(struct stream_origin *o, struct raw_conn *c, uint64_t n)
{
    char req[96];
    snprintf(req, sizeof(req), "GET /down-length/%llu HTTP/1.1\r\nHost: s\r\n\r\n",
             (unsigned long long)n);
    uint64_t sent0 = atomic_load(&o->sent);
    if (raw_send_str(c, req) != 0)
        return UINT64_MAX;
    uint64_t sent = so_wait_stalled(&o->sent, sent0 + n, 300, 20000) - sent0;
    fprintf(stderr, "download stalled at %llu KiB sent by the origin (client not reading)\n",
            (unsigned long long)(sent >> 10));
    return sent;
}

void so_stop(struct stream_origin *o)
{
    if (write(o->stop_pipe[1], "x", 1) != 1)
        fprintf(stderr, "stream origin: stop: %s\n", strerror(errno));
    so_hold_reading(o, false);
    so_hold_sending(o, false);
    pthread_join(o->accept_thread, NULL);
    for (int i = 0; i < o->nconns; i++) {
        pthread_join(o->conn_threads[i], NULL);
        close(o->conn_fds[i]);
    }
    close(o->lfd);
    close(o->stop_pipe[0]);
    close(o->stop_pipe[1]);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

uint64_t so_wait_stalled(_Atomic uint64_t *counter, uint64_t limit, int quiet_ms, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    uint64_t last = atomic_load(counter);
    int64_t since = tu_now_ms();
    while (tu_now_ms() < deadline && last < limit) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* sampling a counter, not synchronizing on it */
        uint64_t now = atomic_load(counter);
        if (now != last) {
            last = now;
            since = tu_now_ms();
        } else if (tu_now_ms() - since >= quiet_ms) {
            break;
        }
    }
    return last;
}

/* ---- the reader ---- */

int so_read_fill(struct so_reader *d, int timeout_ms)
{
    if (d->pos == d->len)
        d->pos = d->len = 0;
    struct pollfd p = {.fd = d->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    ssize_t n = recv(d->fd, d->buf + d->len, sizeof(d->buf) - d->len, 0);
    if (n <= 0)
        return 0;
    d->len += (size_t)n;
    return 1;
}

int so_read_line(struct so_reader *d, char *line, size_t size)
{
    size_t n = 0;
    for (;;) {
        while (d->pos < d->len) {
            char ch = d->buf[d->pos++];
            if (ch == '\n') {
                if (n == 0 || line[n - 1] != '\r')
                    return -1;
                line[n - 1] = '\0';
                return 0;
            }
            if (n + 1 >= size)
                return -1;
            line[n++] = ch;
        }
        if (d->len == sizeof(d->buf))
            d->pos = d->len = 0;
        if (so_read_fill(d, READ_MS) <= 0)
            return -1;
    }
}

int so_read_body(struct so_reader *d, uint64_t *off, uint64_t want, bool until_close)
{
    uint64_t end = *off + want;
    while (until_close || *off < end) {
        if (d->pos == d->len) {
            int rc = so_read_fill(d, READ_MS);
            if (rc == 0 && until_close)
                return 0;
            if (rc <= 0)
                return -1;
        }
        size_t n = d->len - d->pos;
        if (!until_close)
            n = (size_t)MIN_U64(n, end - *off);
        int64_t bad = so_pattern_check((unsigned char *)d->buf + d->pos, *off, n);
        if (bad >= 0) {
            fprintf(stderr, "download: byte %lld is wrong\n", (long long)bad);
            *off = (uint64_t)bad;
            return -2;
        }
        d->pos += n;
        *off += n;
    }
    return 0;
}
