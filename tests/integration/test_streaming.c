/*
 * test_streaming.c — issue 2, "Request and response bodies are streamed with back-pressure ...
 * no body is ever held whole in memory. A 1 GiB upload and a 1 GiB download pass with Portico's
 * RSS staying under 64 MiB", end to end with the real portico binary.
 *
 * The fake origins of tests/support record every byte, which a gigabyte does not suit, so this
 * file has its own small origin: it checks an upload against a position-dependent byte pattern
 * as it arrives (counting, never storing), and generates downloads from the same pattern. The
 * client side checks every byte too. Portico's peak RSS is VmHWM of its process.
 *
 * Under AddressSanitizer (which this binary shares with the portico it tests) the sizes are
 * 128 MiB and the RSS limits are not asserted: ASan's shadow memory and quarantine are not
 * Portico's; every byte is still checked.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define BIG (SANITIZED ? 128 * MiB : GiB)  /* the "1 GiB" of the issue */
#define MEDIUM (32 * MiB)                   /* framing variants */
#define RSS_LIMIT_KB (64 * 1024)
#define BLOCK (256 * 1024)
#define STREAM_MS 120000                    /* bound of one whole transfer */
#define MIN_U64(a, b) ((uint64_t)(a) < (uint64_t)(b) ? (uint64_t)(a) : (uint64_t)(b))

/* Byte `i` of every body: depends on the position, so a lost, doubled or reordered block
 * shows. */
static inline unsigned char pattern_at(uint64_t i)
{
    return (unsigned char)((i * 0x9E3779B1u) >> 13 ^ i >> 20);
}

static void pattern_fill(unsigned char *p, uint64_t off, size_t n)
{
    for (size_t k = 0; k < n; k++)
        p[k] = pattern_at(off + k);
}

/* First offset in p[0..n) (body offset `off`) that breaks the pattern, or -1. */
static int64_t pattern_check(const unsigned char *p, uint64_t off, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (p[k] != pattern_at(off + k))
            return (int64_t)(off + k);
    return -1;
}

/* ---- Portico's memory ---- */

static void check_rss(struct harness *h, const char *what)
{
    long hwm = px_proc_kb(harness_pid(h), "VmHWM");
    assert_true(hwm > 0);
    print_message("%s: portico peak RSS %ld kB (limit %d kB%s)\n", what, hwm, RSS_LIMIT_KB,
                  SANITIZED ? ", not asserted under ASan" : "");
    if (!SANITIZED && hwm >= RSS_LIMIT_KB)
        fail_msg("%s: portico peak RSS %ld kB >= %d kB", what, hwm, RSS_LIMIT_KB);
}

/* ---- the streaming origin ---- */

enum so_framing { SO_LENGTH, SO_CHUNKED, SO_CLOSE };

struct stream_origin {
    int lfd;
    uint16_t port;
    int stop_pipe[2];
    pthread_t accept_thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t conn_threads[16];
    int conn_fds[16];
    int nconns;
    bool hold_reading;            /* uploads: stop reading bodies until released */
    _Atomic uint64_t received;    /* body bytes of uploads, checked against the pattern */
    _Atomic uint64_t sent;        /* body bytes of downloads */
    _Atomic int64_t bad_offset;   /* first upload byte that broke the pattern, -1 */
    _Atomic unsigned requests;    /* requests answered */
};

struct so_conn {
    struct stream_origin *o;
    int fd;
    char buf[BLOCK];
    size_t len;                   /* unconsumed bytes in buf */
};

static int so_stopping(struct stream_origin *o)
{
    struct pollfd p = { .fd = o->stop_pipe[0], .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

/* Reads more into c->buf (appending); 0 on EOF/stop/error. Wakes up for stop. */
static ssize_t so_fill(struct so_conn *c)
{
    for (;;) {
        struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN },
                               { .fd = c->o->stop_pipe[0], .events = POLLIN } };
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
        struct pollfd pf[2] = { { .fd = c->fd, .events = POLLOUT },
                                { .fd = c->o->stop_pipe[0], .events = POLLIN } };
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

/* Waits while hold_reading is set (or until stop). */
static void so_wait_release(struct stream_origin *o)
{
    pthread_mutex_lock(&o->mu);
    while (o->hold_reading && !so_stopping(o))
        pthread_cond_wait(&o->cond, &o->mu);
    pthread_mutex_unlock(&o->mu);
}

/* Takes up to `want` body bytes from the connection, checking them; returns how many, 0 on
 * EOF. */
static size_t so_take_body(struct so_conn *c, uint64_t *off, uint64_t want)
{
    if (c->len == 0 && so_fill(c) == 0)
        return 0;
    size_t n = (size_t)MIN_U64(want, c->len);
    int64_t bad = pattern_check((unsigned char *)c->buf, *off, n);
    if (bad >= 0) {
        int64_t none = -1;
        atomic_compare_exchange_strong(&c->o->bad_offset, &none, bad);
    }
    *off += n;
    atomic_fetch_add(&c->o->received, n);
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
    so_wait_release(c->o);
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

/* Sends `n` pattern bytes framed as asked. */
static int so_download(struct so_conn *c, uint64_t n, enum so_framing framing)
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
    unsigned char *block = malloc(BLOCK + 32);
    if (!block)
        return -1;
    int rc = 0;
    for (uint64_t off = 0; off < n && rc == 0;) {
        size_t k = (size_t)MIN_U64(BLOCK / 2 + (off / 7919) % (BLOCK / 2), n - off);
        size_t pre = 0;
        if (framing == SO_CHUNKED)
            pre = (size_t)snprintf((char *)block, 32, "%zx\r\n", k);
        pattern_fill(block + pre, off, k);
        size_t total = pre + k;
        if (framing == SO_CHUNKED) {
            memcpy(block + total, "\r\n", 2);
            total += 2;
        }
        rc = so_send_all(c, block, total);
        off += k;
        atomic_fetch_add(&c->o->sent, k);
    }
    free(block);
    if (rc == 0 && framing == SO_CHUNKED)
        rc = so_send_all(c, "0\r\nX-Bytes: done\r\n\r\n", 21);
    return rc == 0 && framing == SO_CLOSE ? 1 : rc;
}

static void *so_conn_main(void *arg)
{
    struct so_conn *c = arg;
    char line[1024];
    for (;;) {
        /* request line and fields */
        char method[16] = "", path[256] = "";
        uint64_t length = 0;
        bool chunked = false;
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
        }
        int rc = 0;
        if (strcmp(path, "/up") == 0) {
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
            unsigned long long n = 0;
            char kind[32] = "";
            if (sscanf(path, "/down-%31[a-z]/%llu", kind, &n) != 2)
                break;
            rc = so_download(c, n, strcmp(kind, "chunked") == 0 ? SO_CHUNKED
                                   : strcmp(kind, "close") == 0 ? SO_CLOSE
                                                                : SO_LENGTH);
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
        struct pollfd p[2] = { { .fd = o->lfd, .events = POLLIN },
                               { .fd = o->stop_pipe[0], .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno == EINTR)
            continue;
        if (p[1].revents)
            break;
        int fd = accept4(o->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct so_conn *c = calloc(1, sizeof(*c));
        pthread_mutex_lock(&o->mu);
        if (!c || o->nconns == (int)ARRAY_SIZE(o->conn_threads)) {
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

static struct stream_origin *so_start(void)
{
    struct stream_origin *o = calloc(1, sizeof(*o));
    assert_non_null(o);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cond, NULL);
    atomic_store(&o->bad_offset, -1);
    assert_int_equal(pipe(o->stop_pipe), 0);
    o->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(o->lfd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t slen = sizeof(sa);
    assert_int_equal(bind(o->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(o->lfd, 16), 0);
    assert_int_equal(getsockname(o->lfd, (struct sockaddr *)&sa, &slen), 0);
    o->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&o->accept_thread, NULL, so_accept_main, o), 0);
    return o;
}

static void so_hold_reading(struct stream_origin *o, bool hold)
{
    pthread_mutex_lock(&o->mu);
    o->hold_reading = hold;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
}

static void so_stop(struct stream_origin *o)
{
    assert_int_equal(write(o->stop_pipe[1], "x", 1), 1);
    so_hold_reading(o, false);
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

/* Waits until *counter stops moving for `quiet_ms` (the pipe is full and held), or reaches
 * `limit` (nothing held it back). Returns the value. Bounded by `timeout_ms`. */
static uint64_t wait_stalled(_Atomic uint64_t *counter, uint64_t limit, int quiet_ms,
                             int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    uint64_t last = atomic_load(counter);
    int64_t since = tu_now_ms();
    while (tu_now_ms() < deadline && last < limit) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
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

/* ---- the client side ---- */

/* Sends an upload of n pattern bytes through Portico, by Content-Length or chunked, and reads
 * the origin's verdict. With `held`, the origin is holding its reading: the client pushes
 * until its sends have been blocked for 300 ms, checks that the body was held back and that
 * Portico's RSS is bounded meanwhile, then releases the origin. */
static void upload(struct harness *h, struct stream_origin *o, uint64_t n, bool chunked,
                   bool held)
{
    uint64_t before = atomic_load(&o->received);
    struct raw_conn *c = px_connect(h);
    raw_set_send_timeout(c, 20000);
    char head[160];
    snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: s\r\n%s%llu\r\n\r\n",
             chunked ? "Transfer-Encoding: chunked\r\nX-Len: " : "Content-Length: ",
             (unsigned long long)n);
    assert_int_equal(raw_send_str(c, head), 0);
    unsigned char *block = malloc(BLOCK + 32);
    assert_non_null(block);
    int64_t t0 = tu_now_ms();
    for (uint64_t off = 0; off < n;) {
        /* one framed block of varying size */
        size_t k = (size_t)MIN_U64(BLOCK - (off / 4099) % 1000, n - off);
        size_t pre = chunked ? (size_t)snprintf((char *)block, 32, "%zx\r\n", k) : 0;
        pattern_fill(block + pre, off, k);
        size_t total = pre + k;
        if (chunked) {
            memcpy(block + total, "\r\n", 2);
            total += 2;
        }
        off += k;
        size_t done = 0;
        while (held && done < total) {
            ssize_t m = send(raw_fd(c), block + done, total - done, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (m > 0) {
                done += (size_t)m;
                continue;
            }
            assert_true(m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            struct pollfd p = { .fd = raw_fd(c), .events = POLLOUT };
            if (poll(&p, 1, 300) > 0)
                continue;
            /* blocked for 300 ms: the held origin stopped the upload */
            print_message("upload held at %llu MiB of %llu\n", (unsigned long long)(off >> 20),
                          (unsigned long long)(n >> 20));
            assert_true(off < n);
            long rss = px_proc_kb(harness_pid(h), "VmRSS");
            print_message("portico RSS while the origin holds: %ld kB\n", rss);
            if (!SANITIZED)
                assert_true(rss > 0 && rss < RSS_LIMIT_KB);
            held = false;
            so_hold_reading(o, false);
        }
        if (done < total && raw_send(c, block + done, total - done) != 0)
            fail_msg("upload: send failed at %llu: errno %d", (unsigned long long)off,
                     raw_last_errno(c));
    }
    assert_false(held); /* the whole body never fitted in the buffers on the way */
    if (chunked)
        assert_int_equal(raw_send_str(c, "0\r\nX-Trailer: t\r\n\r\n"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, STREAM_MS), 0);
    assert_int_equal(r.status, 200);
    char want[64];
    snprintf(want, sizeof(want), "received=%llu", (unsigned long long)(before + n));
    assert_string_equal(r.body, want);
    raw_response_free(&r);
    raw_close(c);
    free(block);
    assert_int_equal(atomic_load(&o->bad_offset), -1);
    print_message("upload of %llu MiB (%s) in %lld ms\n", (unsigned long long)(n >> 20),
                  chunked ? "chunked" : "Content-Length", (long long)(tu_now_ms() - t0));
}

/* A plain blocking client for downloads, checking every byte as it comes. */
struct dl {
    int fd;
    char buf[BLOCK];
    size_t len;
    size_t pos;
};

static int dl_fill(struct dl *d, int timeout_ms)
{
    if (d->pos == d->len)
        d->pos = d->len = 0;
    struct pollfd p = { .fd = d->fd, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    ssize_t n = recv(d->fd, d->buf + d->len, sizeof(d->buf) - d->len, 0);
    if (n <= 0)
        return 0;
    d->len += (size_t)n;
    return 1;
}

static int dl_line(struct dl *d, char *line, size_t size)
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
        if (dl_fill(d, 10000) <= 0)
            return -1;
    }
}

/* Reads and checks `want` body bytes from offset *off; 0 ok, -1 short or wrong. */
static int dl_body(struct dl *d, uint64_t *off, uint64_t want, bool until_close)
{
    uint64_t end = *off + want;
    while (until_close || *off < end) {
        if (d->pos == d->len) {
            int rc = dl_fill(d, 10000);
            if (rc == 0 && until_close)
                return 0;
            if (rc <= 0)
                return -1;
        }
        size_t n = d->len - d->pos;
        if (!until_close)
            n = (size_t)MIN_U64(n, end - *off);
        int64_t bad = pattern_check((unsigned char *)d->buf + d->pos, *off, n);
        if (bad >= 0)
            fail_msg("download: byte %lld is wrong", (long long)bad);
        d->pos += n;
        *off += n;
    }
    return 0;
}

struct dl_result {
    uint64_t bytes;
    char framing[16];        /* "length", "chunked", "close" */
    bool trailer;            /* a chunked trailer section came */
};

/* GETs path with HTTP/1.<minor>, reads and checks the body. */
static void download(struct harness *h, const char *path, int minor, uint64_t n,
                     struct dl_result *res)
{
    struct dl *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    struct raw_conn *c = px_connect(h);
    d->fd = raw_fd(c);
    char req[200];
    snprintf(req, sizeof(req), "GET %s HTTP/1.%d\r\nHost: s\r\n\r\n", path, minor);
    assert_int_equal(raw_send_str(c, req), 0);
    int64_t t0 = tu_now_ms();
    char line[1024];
    assert_int_equal(dl_line(d, line, sizeof(line)), 0);
    assert_true(px_starts(line, "HTTP/1.1 200"));
    uint64_t length = 0;
    bool has_length = false;
    snprintf(res->framing, sizeof(res->framing), "close");
    for (;;) {
        assert_int_equal(dl_line(d, line, sizeof(line)), 0);
        if (line[0] == '\0')
            break;
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            length = strtoull(line + 15, NULL, 10);
            has_length = true;
            snprintf(res->framing, sizeof(res->framing), "length");
        } else if (strncasecmp(line, "Transfer-Encoding: chunked", 26) == 0) {
            snprintf(res->framing, sizeof(res->framing), "chunked");
        }
    }
    uint64_t off = 0;
    res->trailer = false;
    if (has_length) {
        assert_int_equal(length, n);
        assert_int_equal(dl_body(d, &off, length, false), 0);
    } else if (strcmp(res->framing, "chunked") == 0) {
        for (;;) {
            assert_int_equal(dl_line(d, line, sizeof(line)), 0);
            uint64_t size = strtoull(line, NULL, 16);
            if (size == 0)
                break;
            assert_int_equal(dl_body(d, &off, size, false), 0);
            assert_int_equal(dl_line(d, line, sizeof(line)), 0);
            assert_string_equal(line, "");
        }
        for (;;) { /* trailers */
            assert_int_equal(dl_line(d, line, sizeof(line)), 0);
            if (line[0] == '\0')
                break;
            res->trailer = true;
        }
    } else {
        assert_int_equal(dl_body(d, &off, 0, true), 0);
    }
    res->bytes = off;
    assert_int_equal(off, n);
    print_message("download %s: %llu MiB (%s) in %lld ms\n", path,
                  (unsigned long long)(off >> 20), res->framing,
                  (long long)(tu_now_ms() - t0));
    raw_close(c);
    free(d);
}

/* ---- tests ---- */

/* The 1 GiB upload and download of the issue (128 MiB under ASan), RSS under 64 MiB. */
static void test_big_upload_and_download(void **state)
{
    (void)state;
    if (SANITIZED)
        print_message("ASan build: %llu MiB instead of 1 GiB\n", (unsigned long long)(BIG >> 20));
    struct stream_origin *o = so_start();
    struct harness *h = px_start_origin(o->port, NULL);

    upload(h, o, BIG, false, false);
    check_rss(h, "after the upload");

    char path[64];
    struct dl_result res;
    snprintf(path, sizeof(path), "/down-length/%llu", (unsigned long long)BIG);
    download(h, path, 1, BIG, &res);
    assert_string_equal(res.framing, "length");
    check_rss(h, "after the download");

    px_stop(h);
    so_stop(o);
}

struct framing_row {
    const char *why;
    const char *kind;   /* origin framing: length, chunked, close */
    int minor;          /* client HTTP/1.<minor> */
    const char *client; /* framing the client gets */
    bool trailer;       /* trailers reach the client */
};

static const struct framing_row framing_rows[] = {
    { "chunked to 1.1", "chunked", 1, "chunked", true },
    /* close-delimited is re-chunked for a 1.1 client */
    { "close-delimited to 1.1", "close", 1, "chunked", false },
    /* chunked becomes close-delimited for a 1.0 client */
    { "chunked to 1.0", "chunked", 0, "close", false },
    { "length to 1.0", "length", 0, "length", false },
};

/* The other framings stream too, both ways, with the same memory bound. */
static void test_streamed_framings(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    struct harness *h = px_start_origin(o->port, NULL);

    upload(h, o, MEDIUM, true, false);
    for (size_t i = 0; i < ARRAY_SIZE(framing_rows); i++) {
        const struct framing_row *row = &framing_rows[i];
        char path[64];
        struct dl_result res;
        snprintf(path, sizeof(path), "/down-%s/%llu", row->kind, (unsigned long long)MEDIUM);
        download(h, path, row->minor, MEDIUM, &res);
        assert_string_equal(res.framing, row->client);
        assert_int_equal(res.trailer, row->trailer);
    }
    check_rss(h, "after the framings");
    px_stop(h);
    so_stop(o);
}

/* Back-pressure, seen from outside: an origin that stops reading stops the client's upload;
 * a client that stops reading stops the origin's download; Portico's RSS stays bounded while
 * they are held; everything arrives once they resume. */
static void test_back_pressure(void **state)
{
    (void)state;
    uint64_t n = SANITIZED ? 128 * MiB : 256 * MiB;
    struct stream_origin *o = so_start();
    struct harness *h = px_start_origin(o->port, NULL);

    /* upload against a held origin */
    so_hold_reading(o, true);
    upload(h, o, n, false, true);

    /* download to a client that reads nothing for a while */
    struct raw_conn *c = px_connect(h);
    char req[96];
    snprintf(req, sizeof(req), "GET /down-length/%llu HTTP/1.1\r\nHost: s\r\n\r\n",
             (unsigned long long)n);
    uint64_t sent0 = atomic_load(&o->sent);
    assert_int_equal(raw_send_str(c, req), 0);
    uint64_t sent = wait_stalled(&o->sent, sent0 + n, 300, 20000) - sent0;
    print_message("download stalled at %llu MiB sent by the origin (client not reading)\n",
                  (unsigned long long)(sent >> 20));
    assert_true(sent < n);
    long rss = px_proc_kb(harness_pid(h), "VmRSS");
    print_message("portico RSS while held: %ld kB\n", rss);
    if (!SANITIZED)
        assert_true(rss < RSS_LIMIT_KB);
    /* now read it all: every byte, in order */
    struct dl *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->fd = raw_fd(c);
    char line[512];
    assert_int_equal(dl_line(d, line, sizeof(line)), 0);
    assert_true(px_starts(line, "HTTP/1.1 200"));
    do
        assert_int_equal(dl_line(d, line, sizeof(line)), 0);
    while (line[0] != '\0');
    uint64_t off = 0;
    assert_int_equal(dl_body(d, &off, n, false), 0);
    free(d);
    raw_close(c);
    check_rss(h, "after back-pressure");
    px_stop(h);
    so_stop(o);
}

/* Large bodies with curl as the client: a 48 MiB file up (Content-Length and chunked) and a
 * 48 MiB download to a file, every byte compared. */
static void test_curl_large_bodies(void **state)
{
    (void)state;
    uint64_t n = 48 * MiB;
    struct stream_origin *o = so_start();
    struct harness *h = px_start_origin(o->port, NULL);
    char file[512], out[512], url[128], data[600], result[64];
    snprintf(file, sizeof(file), "%s/up.bin", harness_dir(h));
    snprintf(out, sizeof(out), "%s/down.bin", harness_dir(h));
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    pattern_fill(buf, 0, n);
    assert_int_equal(tu_write_file(file, buf, n), 0);
    free(buf);
    snprintf(data, sizeof(data), "@%s", file);

    struct tu_cmd_result res;
    const char *const up[] = { "curl", "-sS", "--max-time", "60", "--data-binary", data,
                               px_url(h, "/up", url, sizeof(url)), NULL };
    px_run_ok(up, &res);
    snprintf(result, sizeof(result), "received=%llu", (unsigned long long)n);
    assert_string_equal(res.out, result);
    tu_cmd_result_free(&res);

    const char *const up_chunked[] = { "curl", "-sS", "--max-time", "60", "-H",
                                       "Transfer-Encoding: chunked", "--data-binary", data,
                                       px_url(h, "/up", url, sizeof(url)), NULL };
    px_run_ok(up_chunked, &res);
    snprintf(result, sizeof(result), "received=%llu", (unsigned long long)(2 * n));
    assert_string_equal(res.out, result);
    tu_cmd_result_free(&res);
    assert_int_equal(atomic_load(&o->bad_offset), -1);

    char path[64];
    snprintf(path, sizeof(path), "/down-chunked/%llu", (unsigned long long)n);
    const char *const down[] = { "curl", "-sS", "--max-time", "60", "-o", out, "-w",
                                 "%{size_download}", px_url(h, path, url, sizeof(url)), NULL };
    px_run_ok(down, &res);
    snprintf(result, sizeof(result), "%llu", (unsigned long long)n);
    assert_string_equal(res.out, result);
    tu_cmd_result_free(&res);
    size_t len = 0;
    unsigned char *got = (unsigned char *)tu_read_file(out, &len);
    assert_non_null(got);
    assert_int_equal(len, n);
    assert_int_equal(pattern_check(got, 0, len), -1);
    free(got);
    check_rss(h, "after curl");
    px_stop(h);
    so_stop(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_big_upload_and_download),
        cmocka_unit_test(test_streamed_framings),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_curl_large_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
