/*
 * test_sim.c — the simulator origin, spoken to over real loopback sockets with a small blocking
 * client. Every read has a timeout (SO_RCVTIMEO) and the tests synchronize on what they read,
 * never on sleeps. The client's response reader is written here on purpose, independent of
 * http1.c, so a parser bug cannot hide a simulator bug.
 */
#include "portico/sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h> /* cmocka.h needs these first */
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>

#define READ_TIMEOUT_S 10

static uint16_t port;

/* ---- a minimal blocking HTTP/1.1 client ---- */

struct client {
    int fd;
    size_t len;         /* bytes buffered in buf, not yet consumed */
    char buf[1 << 16];
};

struct resp {
    int status;
    char head[20000];   /* status line and fields, NUL-terminated */
    char *body;         /* malloc'd, NUL-terminated; NULL when there is none */
    size_t body_len;
};

static struct client *cl_open_rcvbuf(int rcvbuf)
{
    struct client *c = calloc(1, sizeof(*c));
    struct timeval tv = { .tv_sec = READ_TIMEOUT_S };
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    assert_non_null(c);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return c;
}

static struct client *cl_open(void)
{
    return cl_open_rcvbuf(0);
}

static void cl_close(struct client *c)
{
    close(c->fd);
    free(c);
}

static void cl_send(struct client *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

static void cl_sends(struct client *c, const char *s)
{
    cl_send(c, s, strlen(s));
}

/* More bytes into the buffer: >0 read, 0 EOF, -1 error or timeout. */
static ssize_t cl_fill(struct client *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n < 0 ? -1 : n;
}

static void cl_consume(struct client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Exactly n bytes into dst (dst may be NULL to skip them). 0 ok, -1 short. */
static int cl_read(struct client *c, char *dst, size_t n)
{
    while (n > 0) {
        if (c->len == 0 && cl_fill(c) <= 0)
            return -1;
        size_t k = c->len < n ? c->len : n;
        if (dst) {
            memcpy(dst, c->buf, k);
            dst += k;
        }
        cl_consume(c, k);
        n -= k;
    }
    return 0;
}

/* One CRLF-terminated line without the CRLF. */
static int cl_line(struct client *c, char *out, size_t cap)
{
    for (;;) {
        char *crlf = memmem(c->buf, c->len, "\r\n", 2);
        if (crlf) {
            size_t n = (size_t)(crlf - c->buf);
            if (n >= cap)
                return -1;
            memcpy(out, c->buf, n);
            out[n] = '\0';
            cl_consume(c, n + 2);
            return 0;
        }
        if (cl_fill(c) <= 0)
            return -1;
    }
}

/* True when the server closed: the next read sees EOF (or a reset), never a timeout. */
static bool cl_eof(struct client *c)
{
    if (c->len > 0)
        return false;
    char b;
    ssize_t n = recv(c->fd, &b, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Value of header `name` (case-insensitive) copied into out; false when absent. */
static bool hdr(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *f = p + 2;
        if (strncasecmp(f, name, n) == 0 && f[n] == ':') {
            f += n + 1;
            while (*f == ' ')
                f++;
            const char *e = strstr(f, "\r\n");
            size_t len = e ? (size_t)(e - f) : strlen(f);
            if (len >= cap)
                len = cap - 1;
            memcpy(out, f, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

/* Reads a response head (1xx included). 0 ok, -1 on EOF, timeout or garbage. */
static int cl_head(struct client *c, struct resp *r)
{
    char *end;
    memset(r, 0, sizeof(*r));
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        if (cl_fill(c) <= 0)
            return -1;
    }
    size_t n = (size_t)(end - c->buf) + 2; /* keep the last field's CRLF for hdr() */
    if (n >= sizeof(r->head))
        return -1;
    memcpy(r->head, c->buf, n);
    r->head[n] = '\0';
    cl_consume(c, n + 2);
    if (sscanf(r->head, "HTTP/1.1 %3d ", &r->status) != 1)
        return -1;
    return 0;
}

static void body_append(struct resp *r, const char *p, size_t n)
{
    r->body = realloc(r->body, r->body_len + n + 1);
    assert_non_null(r->body);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

/* Reads the body the head announces: chunked, Content-Length, or until EOF. */
static int cl_body(struct client *c, struct resp *r, bool head_req)
{
    char v[64], line[256];
    r->body = calloc(1, 1);
    if (head_req || r->status < 200 || r->status == 204 || r->status == 304)
        return 0;
    if (hdr(r, "transfer-encoding", v, sizeof(v))) {
        if (strcasecmp(v, "chunked") != 0)
            return -1;
        for (;;) {
            if (cl_line(c, line, sizeof(line)) < 0)
                return -1;
            size_t n = strtoul(line, NULL, 16);
            if (n == 0)
                break;
            char *tmp = malloc(n);
            assert_non_null(tmp);
            int rc = cl_read(c, tmp, n);
            if (rc == 0)
                body_append(r, tmp, n);
            free(tmp);
            if (rc < 0 || cl_line(c, line, sizeof(line)) < 0 || line[0] != '\0')
                return -1;
        }
        do { /* trailer section */
            if (cl_line(c, line, sizeof(line)) < 0)
                return -1;
        } while (line[0] != '\0');
        return 0;
    }
    if (hdr(r, "content-length", v, sizeof(v))) {
        size_t n = strtoull(v, NULL, 10);
        char *tmp = malloc(n + 1);
        assert_non_null(tmp);
        int rc = cl_read(c, tmp, n);
        if (rc == 0)
            body_append(r, tmp, n);
        free(tmp);
        return rc;
    }
    for (;;) { /* close-delimited */
        if (c->len > 0) {
            body_append(r, c->buf, c->len);
            c->len = 0;
        }
        ssize_t k = cl_fill(c);
        if (k == 0)
            return 0;
        if (k < 0)
            return -1;
    }
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* A whole final response; the caller frees r->body. */
static void cl_response(struct client *c, struct resp *r, bool head_req)
{
    assert_int_equal(cl_head(c, r), 0);
    assert_int_equal(cl_body(c, r, head_req), 0);
}

/* Request helper: GET/HEAD target with Host, then read the final response. */
static void cl_get(struct client *c, const char *method, const char *target, struct resp *r)
{
    char req[1024];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: sim\r\n\r\n", method, target);
    cl_sends(c, req);
    cl_response(c, r, strcmp(method, "HEAD") == 0);
}

/* The headers every final response carries. */
static void check_common(const struct resp *r)
{
    char v[128];
    assert_true(hdr(r, "server", v, sizeof(v)));
    assert_string_equal(v, "portico-sim");
    assert_true(hdr(r, "date", v, sizeof(v)));
    assert_non_null(strstr(v, " GMT"));
    if (r->status != 204 && r->status != 304) {
        assert_true(hdr(r, "content-type", v, sizeof(v)));
        assert_true(hdr(r, "content-length", v, sizeof(v)) ||
                    hdr(r, "transfer-encoding", v, sizeof(v)));
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The /bytes body pattern: 64-byte lines from offset 0. */
static const char pattern[] = "portico-sim /bytes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n";

static bool pattern_ok(const char *p, size_t n, uint64_t offset)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != pattern[(offset + i) % 64])
            return false;
    }
    return true;
}

/* ---- tests ---- */

static void test_index(void **state)
{
    (void)state;
    struct client *c = cl_open();
    struct resp r;
    cl_get(c, "GET", "/", &r);
    assert_int_equal(r.status, 200);
    check_common(&r);
    /* the page lists every endpoint */
    const char *want[] = { "/status/{code}", "/delay/{ms}", "/bytes/{n}", "/echo",
                           "/interim/{codes}", "/slow/{ms}" };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_non_null(strstr(r.body, want[i]));
    resp_free(&r);
    cl_close(c);
}

/* One keep-alive connection for all rows: a 400 for a bad argument keeps the connection. */
static void test_status_table(void **state)
{
    static const struct {
        const char *target;
        int status;
        const char *line;   /* exact status line, or NULL */
        const char *body;   /* exact body, or NULL */
    } rows[] = {
        /* the registry's phrase is the reason and the body */
        { "/status/418", 418, "HTTP/1.1 418 I'm a teapot", "418 I'm a teapot\n" },
        { "/status/200", 200, "HTTP/1.1 200 OK", "200 OK\n" },
        { "/status/503", 503, "HTTP/1.1 503 Service Unavailable", NULL },
        /* bounds of the accepted range */
        { "/status/599", 599, NULL, NULL },
        { "/status/99", 400, NULL, NULL },
        { "/status/600", 400, NULL, NULL },
        { "/status/199", 400, NULL, NULL },
        /* exactly three digits */
        { "/status/0200", 400, NULL, NULL },
        { "/status/2x0", 400, NULL, NULL },
        { "/status/", 400, NULL, NULL },
        /* strict query: /status takes none */
        { "/status/200?x=1", 400, NULL, NULL },
    };
    (void)state;
    struct client *c = cl_open();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct resp r;
        cl_get(c, "GET", rows[i].target, &r);
        assert_int_equal(r.status, rows[i].status);
        check_common(&r);
        if (rows[i].line)
            assert_memory_equal(r.head, rows[i].line, strlen(rows[i].line));
        if (rows[i].body)
            assert_string_equal(r.body, rows[i].body);
        resp_free(&r);
    }
    cl_close(c);
}

/* 204 and 304 have no body and no framing; the next response on the connection proves that no
 * stray bytes were sent. */
static void test_status_no_body(void **state)
{
    (void)state;
    static const char *const targets[] = { "/status/204", "/status/304" };
    struct client *c = cl_open();
    for (size_t i = 0; i < 2; i++) {
        struct resp r;
        char v[32];
        cl_get(c, "GET", targets[i], &r);
        assert_true(r.status == 204 || r.status == 304);
        assert_false(hdr(&r, "content-length", v, sizeof(v)));
        assert_false(hdr(&r, "transfer-encoding", v, sizeof(v)));
        resp_free(&r);
        cl_get(c, "GET", "/status/201", &r);
        assert_int_equal(r.status, 201);
        assert_string_equal(r.body, "201 Created\n");
        resp_free(&r);
    }
    cl_close(c);
}

/* Routing and strict argument / query parsing: bad numbers are 400, unknown paths 404. */
static void test_route_table(void **state)
{
    static const struct {
        const char *method;
        const char *target;
        int status;
    } rows[] = {
        { "GET", "/nope", 404 },
        { "GET", "/echo/x", 404 },            /* /echo is exact */
        { "GET", "/status", 404 },            /* prefixes need their slash */
        { "GET", "/?x=1", 400 },              /* the index takes no query */
        { "GET", "/echo?x=1", 400 },
        { "GET", "/delay/600001", 400 },      /* above the maximum */
        { "GET", "/delay/-1", 400 },
        { "GET", "/delay/+5", 400 },          /* digits only */
        { "GET", "/bytes/1099511627777", 400 },
        { "HEAD", "/bytes/1099511627776", 200 }, /* 2^40 is allowed; HEAD so no body */
        { "GET", "/bytes/99999999999999999999999", 400 }, /* overflow */
        { "GET", "/interim/101", 400 },       /* 101 is a protocol switch, not interim */
        { "GET", "/interim/99", 400 },
        { "GET", "/interim/200", 400 },
        { "GET", "/interim/", 400 },
        { "GET", "/interim/103,", 400 },      /* empty element */
        { "GET", "/interim/103?delay_ms=60001", 400 },
        { "GET", "/interim/103?delay_ms=", 400 },
        { "GET", "/interim/103?delay_ms", 400 },
        { "GET", "/interim/103?delay=1", 400 },  /* undocumented parameter */
        { "GET", "/interim/103?delay_ms=1&delay_ms=2", 400 },
        { "GET", "/interim/103?delay_ms=1&", 400 },
        { "GET", "/slow/10?interval_ms=5", 400 }, /* below the 10 ms minimum */
        { "GET", "/slow/10?delay_ms=20", 400 },   /* another endpoint's parameter */
        { "GET", "/slow/x", 400 },
        { "GET", "http://sim/status/207", 207 },  /* absolute-form is accepted */
        { "GET", "HTTP://sim", 200 },             /* empty path is "/" */
        { "GET", "http://sim?x=1", 400 },
        { "GET", "/delay/0", 200 },
        { "GET", "/slow/0", 200 },
    };
    (void)state;
    struct client *c = cl_open();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct resp r;
        cl_get(c, rows[i].method, rows[i].target, &r);
        if (r.status != rows[i].status)
            fail_msg("%s %s: got %d, want %d", rows[i].method, rows[i].target, r.status,
                     rows[i].status);
        check_common(&r);
        resp_free(&r);
    }
    cl_close(c);
}

static void test_bytes(void **state)
{
    (void)state;
    static const uint64_t sizes[] = { 100000, 0, 1, 16384, 16385 }; /* block edges */
    struct client *c = cl_open();
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char target[64], v[32];
        struct resp r;
        snprintf(target, sizeof(target), "/bytes/%llu", (unsigned long long)sizes[i]);
        cl_get(c, "GET", target, &r);
        assert_int_equal(r.status, 200);
        assert_true(hdr(&r, "content-type", v, sizeof(v)));
        assert_string_equal(v, "application/octet-stream");
        assert_int_equal(r.body_len, sizes[i]);
        assert_true(pattern_ok(r.body, r.body_len, 0));
        resp_free(&r);
    }
    cl_close(c);
}

/* HEAD: the same headers, no body; the next request on the connection proves no body bytes. */
static void test_head(void **state)
{
    (void)state;
    static const struct {
        const char *target;
        const char *length; /* Content-Length the GET would have */
    } rows[] = {
        { "/bytes/1000", "1000" },
        { "/status/404", "14" },   /* "404 Not Found\n" */
        { "/delay/1", NULL },
        { "/", NULL },
    };
    struct client *c = cl_open();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct resp r;
        char v[32];
        cl_get(c, "HEAD", rows[i].target, &r);
        check_common(&r);
        assert_true(hdr(&r, "content-length", v, sizeof(v)));
        if (rows[i].length)
            assert_string_equal(v, rows[i].length);
        resp_free(&r);
        cl_get(c, "GET", "/status/202", &r);
        assert_int_equal(r.status, 202);
        resp_free(&r);
    }
    cl_close(c);
}

/* The echo is the head exactly as received (leading empty lines are not part of it), then the
 * body; Content-Length is their sum. */
static void test_echo_length(void **state)
{
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: sim\r\nX-Odd:  spaced \r\n"
                              "Content-Length: 11\r\n\r\nhello world";
    static const char *const prefixes[] = { "", "\r\n\r\n" };
    (void)state;
    struct client *c = cl_open();
    for (size_t i = 0; i < 2; i++) {
        struct resp r;
        char v[32];
        cl_sends(c, prefixes[i]);
        cl_sends(c, req);
        cl_response(c, &r, false);
        assert_int_equal(r.status, 200);
        check_common(&r);
        assert_true(hdr(&r, "content-length", v, sizeof(v)));
        assert_int_equal(strtoul(v, NULL, 10), sizeof(req) - 1);
        assert_int_equal(r.body_len, sizeof(req) - 1);
        assert_memory_equal(r.body, req, sizeof(req) - 1);
        resp_free(&r);
    }
    cl_close(c);
}

static void test_echo_chunked(void **state)
{
    (void)state;
    static const struct {
        const char *body;   /* chunked request body as sent */
        const char *data;   /* decoded data echoed after the head */
    } rows[] = {
        { "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world" },
        /* extensions and trailers are framing: not echoed */
        { "3;ext=1\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n", "abc" },
        { "0\r\n\r\n", "" },
    };
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: sim\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    struct client *c = cl_open();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct resp r;
        char v[32];
        cl_sends(c, head);
        cl_sends(c, rows[i].body);
        cl_response(c, &r, false);
        assert_int_equal(r.status, 200);
        assert_true(hdr(&r, "transfer-encoding", v, sizeof(v)));
        assert_string_equal(v, "chunked");
        assert_false(hdr(&r, "content-length", v, sizeof(v)));
        assert_int_equal(r.body_len, strlen(head) + strlen(rows[i].data));
        assert_memory_equal(r.body, head, strlen(head));
        assert_string_equal(r.body + strlen(head), rows[i].data);
        resp_free(&r);
    }
    cl_close(c);
}

/* Echo of a body much larger than every watermark: a sender thread pushes while the main thread
 * reads, so both directions of back-pressure are exercised and the bytes must survive intact. */
struct sender {
    int fd;
    size_t n;
    int rc;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    char block[8192];
    size_t sent = 0;
    s->rc = 0;
    while (sent < s->n) {
        size_t k = s->n - sent < sizeof(block) ? s->n - sent : sizeof(block);
        for (size_t i = 0; i < k; i++)
            block[i] = (char)('a' + (sent + i) % 26);
        ssize_t w = send(s->fd, block, k, MSG_NOSIGNAL);
        if (w <= 0) {
            s->rc = -1;
            break;
        }
        sent += (size_t)w;
    }
    return NULL;
}

static void test_echo_large(void **state)
{
    (void)state;
    enum { N = 8 << 20 };
    char head[128];
    int hl = snprintf(head, sizeof(head),
                      "PUT /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: %d\r\n\r\n", N);
    struct client *c = cl_open();
    struct resp r;
    struct sender s = { .fd = c->fd, .n = N };
    pthread_t t;
    cl_send(c, head, (size_t)hl);
    assert_int_equal(pthread_create(&t, NULL, sender_main, &s), 0);
    assert_int_equal(cl_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    char *buf = malloc((size_t)hl);
    assert_int_equal(cl_read(c, buf, (size_t)hl), 0);
    assert_memory_equal(buf, head, (size_t)hl);
    free(buf);
    char chunk[8192];
    for (size_t got = 0; got < N;) {
        size_t k = N - got < sizeof(chunk) ? N - got : sizeof(chunk);
        assert_int_equal(cl_read(c, chunk, k), 0);
        for (size_t i = 0; i < k; i++) {
            if (chunk[i] != (char)('a' + (got + i) % 26))
                fail_msg("echo byte %zu differs", got + i);
        }
        got += k;
    }
    pthread_join(t, NULL);
    assert_int_equal(s.rc, 0);
    cl_close(c);
}

/* Several requests in one write are answered in order, bodies and all. */
static void test_pipelined(void **state)
{
    (void)state;
    static const char reqs[] =
        "GET /status/201 HTTP/1.1\r\nHost: sim\r\n\r\n"
        "HEAD /bytes/5 HTTP/1.1\r\nHost: sim\r\n\r\n"
        "POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 3\r\n\r\nabc"
        "POST /status/202 HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\n"
        "4\r\nbody\r\n0\r\n\r\n"
        "GET /delay/20 HTTP/1.1\r\nHost: sim\r\n\r\n"
        "GET /bytes/70000 HTTP/1.1\r\nHost: sim\r\n\r\n"
        "GET /status/203 HTTP/1.1\r\nHost: sim\r\n\r\n";
    static const struct {
        int status;
        bool head;
        size_t body_len;
    } want[] = {
        { 201, false, 12 }, { 200, true, 0 },      { 200, false, 56 }, { 202, false, 13 },
        { 200, false, 0 },  { 200, false, 70000 }, { 203, false, 0 },
    };
    struct client *c = cl_open();
    cl_sends(c, reqs);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct resp r;
        cl_response(c, &r, want[i].head);
        assert_int_equal(r.status, want[i].status);
        if (want[i].body_len)
            assert_int_equal(r.body_len, want[i].body_len);
        resp_free(&r);
    }
    cl_close(c);
}

static void test_interim(void **state)
{
    (void)state;
    struct client *c = cl_open();
    struct resp r;
    char v[128];
    cl_sends(c, "GET /interim/103,102?delay_ms=20 HTTP/1.1\r\nHost: sim\r\n\r\n");
    assert_int_equal(cl_head(c, &r), 0);
    assert_memory_equal(r.head, "HTTP/1.1 103 Early Hints\r\n", 26);
    assert_true(hdr(&r, "link", v, sizeof(v)));
    assert_string_equal(v, "</sim/app.css>; rel=preload; as=style");
    assert_int_equal(cl_head(c, &r), 0);
    assert_int_equal(r.status, 102);
    assert_false(hdr(&r, "link", v, sizeof(v)));
    cl_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "103,102"));
    resp_free(&r);
    cl_close(c);
}

static void test_slow(void **state)
{
    (void)state;
    struct client *c = cl_open();
    struct resp r;
    int n102 = 0;
    uint64_t t0 = now_ms();
    cl_sends(c, "GET /slow/100?interval_ms=20 HTTP/1.1\r\nHost: sim\r\n\r\n");
    for (;;) {
        assert_int_equal(cl_head(c, &r), 0);
        if (r.status != 102)
            break;
        n102++;
    }
    assert_int_equal(r.status, 200);
    assert_int_equal(cl_body(c, &r, false), 0);
    assert_true(n102 >= 3);
    assert_true(now_ms() - t0 >= 99);
    resp_free(&r);
    cl_close(c);
}

/* The answer comes no sooner than asked; the clock is read, never slept on. */
static void test_delay(void **state)
{
    (void)state;
    struct client *c = cl_open();
    struct resp r;
    uint64_t t0 = now_ms();
    cl_get(c, "GET", "/delay/50", &r);
    assert_int_equal(r.status, 200);
    assert_true(now_ms() - t0 >= 49);
    assert_non_null(strstr(r.body, "asked for 50 ms"));
    resp_free(&r);
    cl_close(c);
}

/* Expect: 100-continue: the 100 comes before any body byte is sent, and only once. */
static void test_expect_continue(void **state)
{
    (void)state;
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: sim\r\nExpect: 100-continue\r\n"
                               "Content-Length: 4\r\n\r\n";
    struct client *c = cl_open();
    struct resp r;
    char line[64];
    cl_sends(c, head);
    assert_int_equal(cl_line(c, line, sizeof(line)), 0);
    assert_string_equal(line, "HTTP/1.1 100 Continue");
    assert_int_equal(cl_line(c, line, sizeof(line)), 0);
    assert_string_equal(line, "");
    cl_sends(c, "ping");
    cl_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, sizeof(head) - 1 + 4);
    assert_memory_equal(r.body + sizeof(head) - 1, "ping", 4);
    resp_free(&r);
    cl_close(c);
}

/* Malformed requests: the parser's status, Connection: close, then the connection closes. */
static void test_malformed_table(void **state)
{
    (void)state;
    static char long_line[9000], long_head[17000];
    static const struct {
        const char *req;
        int status;
    } rows[] = {
        { "GET / HTTP/1.1\r\nHost : sim\r\n\r\n", 400 },       /* space before colon */
        { "GET / HTTP/1.1\r\n\r\n", 400 },                      /* no Host in 1.1 */
        { "GET / HTTP/1.1\nHost: sim\r\n\r\n", 400 },           /* bare LF */
        { "GET / HTTP/1.2\r\nHost: sim\r\n\r\n", 505 },
        { "GET / HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501 },
        { "GET / HTTP/1.1\r\nHost: sim\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nHost: sim\r\nExpect: 200-ok\r\n\r\n", 417 },
        /* invalid chunked framing is found while reading the body */
        { "POST /status/200 HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
          400 },
        { long_line, 414 },
        { long_head, 431 },
    };
    /* request line over 8 KiB; head over 16 KiB */
    int n = snprintf(long_line, sizeof(long_line), "GET /");
    memset(long_line + n, 'a', 8300);
    strcpy(long_line + n + 8300, " HTTP/1.1\r\nHost: sim\r\n\r\n");
    n = snprintf(long_head, sizeof(long_head), "GET / HTTP/1.1\r\nHost: sim\r\n");
    for (int i = 0; i < 200; i++)
        n += snprintf(long_head + n, sizeof(long_head) - (size_t)n, "X-Pad-%03d: %070d\r\n", i, 0);
    strcpy(long_head + n, "\r\n");

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct client *c = cl_open();
        struct resp r;
        char v[32];
        cl_sends(c, rows[i].req);
        cl_response(c, &r, false);
        if (r.status != rows[i].status)
            fail_msg("row %zu: got %d, want %d", i, r.status, rows[i].status);
        check_common(&r);
        assert_true(hdr(&r, "connection", v, sizeof(v)));
        assert_string_equal(v, "close");
        assert_non_null(strchr(r.body, '\n')); /* a one-line reason */
        assert_true(cl_eof(c));
        resp_free(&r);
        cl_close(c);
    }
}

/* HTTP/1.0: Content-Length framing, no 1xx, close unless keep-alive was asked for. */
static void test_http10(void **state)
{
    (void)state;
    struct client *c = cl_open();
    struct resp r;
    char v[32];
    cl_sends(c, "GET /interim/103,102?delay_ms=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cl_response(c, &r, false);
    assert_int_equal(r.status, 200); /* straight to the final response */
    assert_true(hdr(&r, "connection", v, sizeof(v)));
    assert_string_equal(v, "keep-alive");
    assert_non_null(strstr(r.body, "none"));
    resp_free(&r);
    cl_sends(c, "GET /slow/30?interval_ms=10 HTTP/1.0\r\n\r\n");
    cl_response(c, &r, false);
    assert_int_equal(r.status, 200);
    assert_true(hdr(&r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(cl_eof(c));
    resp_free(&r);
    cl_close(c);

    c = cl_open();
    cl_sends(c, "POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
    cl_response(c, &r, false); /* no 100 Continue for a 1.0 client */
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body + r.body_len - 2, "hi", 2);
    assert_true(cl_eof(c));
    resp_free(&r);
    cl_close(c);
}

/* Connection: close is honoured, and so is a client's half-close after its requests. */
static void test_close(void **state)
{
    (void)state;
    struct client *c = cl_open();
    struct resp r;
    char v[32];
    cl_sends(c, "GET /status/200 HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
    cl_response(c, &r, false);
    assert_true(hdr(&r, "connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(cl_eof(c));
    resp_free(&r);
    cl_close(c);

    c = cl_open();
    cl_sends(c, "GET /delay/10 HTTP/1.1\r\nHost: sim\r\n\r\n"
                "GET /bytes/3 HTTP/1.1\r\nHost: sim\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    cl_response(c, &r, false);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cl_response(c, &r, false);
    assert_int_equal(r.body_len, 3);
    assert_true(cl_eof(c));
    resp_free(&r);
    cl_close(c);
}

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    }
    fclose(f);
    return kib;
}

/* ASan keeps freed memory in a quarantine (256 MiB by default), so its RSS says little about
 * the simulator; a body buffered whole would still blow this bound. Plain builds: +8 KiB seen. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_BOUND_KIB (512L * 1024)
#else
#define RSS_BOUND_KIB 8192L
#endif

/* 1 GiB through a reader with a tiny receive buffer and small reads: the simulator's output
 * stays at its watermarks, so the process's peak RSS barely moves. */
static void test_bytes_1gib_slow_reader(void **state)
{
    (void)state;
    const uint64_t n = 1ULL << 30;
    struct client *c = cl_open_rcvbuf(16384);
    struct resp r;
    char v[32];
    long before = vm_hwm_kib();
    cl_sends(c, "GET /bytes/1073741824 HTTP/1.1\r\nHost: sim\r\n\r\n");
    assert_int_equal(cl_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(hdr(&r, "content-length", v, sizeof(v)));
    assert_string_equal(v, "1073741824");
    uint64_t got = 0;
    char chunk[4096];
    while (got < n) {
        size_t k = n - got < sizeof(chunk) ? (size_t)(n - got) : sizeof(chunk);
        assert_int_equal(cl_read(c, chunk, k), 0);
        if ((got & ((1 << 24) - 1)) == 0 && !pattern_ok(chunk, k, got)) /* sample every 16 MiB */
            fail_msg("pattern broken at %llu", (unsigned long long)got);
        got += k;
    }
    long after = vm_hwm_kib();
    print_message("[ info     ] /bytes/1073741824: peak RSS %ld KiB before, %ld KiB after "
                  "(+%ld KiB)\n", before, after, after - before);
    assert_true(after - before < RSS_BOUND_KIB);
    /* the connection is still usable afterwards */
    struct resp r2;
    cl_get(c, "GET", "/status/200", &r2);
    assert_int_equal(r2.status, 200);
    resp_free(&r2);
    cl_close(c);
}

/* sim_stop with connections mid-response frees everything (LSan checks), is idempotent, and the
 * simulator starts again on a fresh port. Runs last: it restarts the shared simulator. */
static void test_stop_restart(void **state)
{
    (void)state;
    struct client *waiting = cl_open();
    struct client *streaming = cl_open_rcvbuf(4096);
    struct client *partial = cl_open();
    struct resp r;
    cl_sends(waiting, "GET /delay/600000 HTTP/1.1\r\nHost: sim\r\n\r\n");
    cl_sends(streaming, "GET /bytes/1099511627776 HTTP/1.1\r\nHost: sim\r\n\r\n");
    assert_int_equal(cl_head(streaming, &r), 0); /* the stream has started */
    cl_sends(partial, "POST /echo HTTP/1.1\r\nHost: sim\r\nContent-Length: 100\r\n\r\nabc");
    assert_int_equal(cl_head(partial, &r), 0);   /* the echo has started */
    sim_stop();
    assert_int_equal(sim_port(), 0);
    sim_stop(); /* idempotent */
    assert_true(cl_eof(waiting));
    cl_close(waiting);
    cl_close(streaming);
    cl_close(partial);

    assert_int_equal(sim_start(&port), 0);
    assert_int_not_equal(port, 0);
    assert_int_equal(sim_port(), port);
    uint16_t again;
    assert_int_equal(sim_start(&again), -1); /* already running */
    struct client *c = cl_open();
    cl_get(c, "GET", "/status/200", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    cl_close(c);
}

static int group_setup(void **state)
{
    (void)state;
    return sim_start(&port) == 0 && port != 0 && sim_port() == port ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    sim_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_status_no_body),
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_echo_length),
        cmocka_unit_test(test_echo_chunked),
        cmocka_unit_test(test_echo_large),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_interim),
        cmocka_unit_test(test_slow),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_bytes_1gib_slow_reader),
        cmocka_unit_test(test_stop_restart),
    };
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    libevent_global_shutdown();
    return failed;
}
