/*
 * sim_client.h — a minimal blocking HTTP/1.1 client for the simulator's unit tests, written here
 * on purpose independent of http1.c, so a parser bug cannot hide a simulator bug. Every read
 * has a timeout (SO_RCVTIMEO); tests synchronize on what they read, never on sleeps.
 * Header-only, for tests/unit/test_sim.c; include after <cmocka.h>. The including file defines
 * `static uint16_t port;` (the simulator's) before including it.
 */
#ifndef PORTICO_TEST_SIM_CLIENT_H
#define PORTICO_TEST_SIM_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_TIMEOUT_S 10

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

/* How the server ended the connection, once everything buffered was consumed: 0 for FIN,
 * ECONNRESET for RST, -1 when it sent more bytes or did not end it within the read timeout. */
static int cl_end(struct client *c)
{
    char b;
    if (c->len > 0)
        return -1;
    ssize_t n = recv(c->fd, &b, 1, 0);
    if (n == 0)
        return 0;
    return n < 0 && errno == ECONNRESET ? ECONNRESET : -1;
}

/* True when nothing arrives for ms milliseconds: a bounded wait for something that must not
 * happen (never used to wait for something that must). */
static bool cl_silent(struct client *c, int ms)
{
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    return c->len == 0 && poll(&p, 1, ms) == 0;
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

#endif
