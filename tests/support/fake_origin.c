/*
 * fake_origin.c — scripted HTTP/1.1 origins on loopback: an acceptor thread per origin and a
 * thread per connection, each blocking only in poll() on its socket plus the origin's stop pipe
 * (closing the pipe's write end wakes every thread at once).
 */
#include "fake_origin.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FO_MAX_HEAD 65536  /* a request head longer than this ends the connection */
#define FO_MAX_FILLERS 16  /* blackhole: give up if this many connects all complete */
#define FO_FILLER_WAIT_MS 50 /* a loopback handshake takes microseconds; 50 ms means dropped */

static const char garbage_reply[] = "XYZZY 42 this is not HTTP\r\n\x01\x02\x03\r\n\r\n";
static const char not_tls_reply[] = "this is not TLS, just plain text\r\n";
static const char partial_head[] = "HTTP/1.1 200 OK\r\nContent-Le";

static const char *const kind_names[] = {
    [FO_OK] = "ok",
    [FO_ECHO] = "echo",
    [FO_REFUSE] = "refuse",
    [FO_BLACKHOLE] = "blackhole",
    [FO_SILENT] = "silent",
    [FO_NO_READ] = "no_read",
    [FO_CLOSE_EMPTY] = "close_empty",
    [FO_RESET] = "reset",
    [FO_GARBAGE] = "garbage",
    [FO_PARTIAL_HEAD] = "partial_head",
    [FO_SLOW_FIRST_BYTE] = "slow_first_byte",
    [FO_SCRIPT] = "script",
    [FO_TLS_GARBAGE] = "tls_garbage",
    [FO_TLS_SILENT] = "tls_silent",
};

const char *fake_origin_kind_name(enum fo_kind kind)
{
    size_t i = (size_t)kind;

    return i < sizeof(kind_names) / sizeof(kind_names[0]) && kind_names[i] != NULL
               ? kind_names[i]
               : "unknown";
}

/* One request as received. */
struct fo_record {
    char *raw;       /* head + body bytes exactly as read */
    size_t raw_len;
    size_t raw_cap;
    size_t head_len; /* the head's share of raw, CRLFCRLF included */
    char *body;      /* de-chunked body */
    size_t body_len;
    size_t body_cap;
};

/* What the origin needs to know about a request head to frame its body and answer it. */
struct fo_head {
    bool is_head;            /* HEAD method: the answer has no body */
    bool close;              /* Connection: close, or HTTP/1.0 without keep-alive */
    bool expect_continue;    /* Expect: 100-continue */
    bool chunked;            /* Transfer-Encoding ends in chunked */
    long long content_length; /* -1 when absent */
};

struct fo_conn {
    struct fake_origin *o;   /* borrowed */
    int fd;                  /* -1 once closed by a step */
    SSL *ssl;
    unsigned index;          /* connection number on the origin */
    unsigned nreq;           /* requests seen on this connection */
    char *buf;               /* unconsumed input */
    size_t len;
    size_t cap;
    pthread_t thread;
    int done;                /* set (atomically) when the thread may be joined */
    struct fo_conn *next;
};

struct fake_origin {
    struct fake_origin_opts opts; /* copy; its pointers are borrowed from the test */
    struct fo_step builtin[4];    /* the script a non-FO_SCRIPT kind runs per request */
    int listen_fd;
    uint16_t port;
    int stop_pipe[2];             /* closing [1] makes [0] readable for every poller */
    bool has_acceptor;
    pthread_t acceptor;
    SSL_CTX *ctx;                 /* TLS server context, or NULL */
    int fillers[FO_MAX_FILLERS];  /* blackhole filler sockets */
    unsigned nfillers;
    struct fo_conn *conns;        /* touched by the acceptor only, then by stop after joining it */
    unsigned heads;               /* request heads read (atomic), numbers requests */
    pthread_mutex_t lock;         /* protects everything below */
    pthread_cond_t cond;          /* broadcast on each new connection or request */
    unsigned connections;
    unsigned handshakes;
    struct fo_record *recs;
    size_t nrecs;
    size_t caprecs;
    char last_sni[256];
    char last_cn[256];
    _Atomic int64_t last_rx_ms;   /* FO_NO_READ: when unread bytes last arrived */
};

/* ---- small helpers ---- */

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t ncap = *cap != 0 ? *cap : 256;

    while (ncap < need) {
        ncap *= 2;
    }
    char *nb = realloc(*buf, ncap);

    if (nb == NULL) {
        return -1;
    }
    *buf = nb;
    *cap = ncap;
    return 0;
}

static int append(char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
    if (grow(buf, cap, *len + n + 1) < 0) {
        return -1;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static const char *reason_phrase(int status)
{
    static const struct {
        int code;
        const char *text;
    } table[] = {
        { 100, "Continue" }, { 101, "Switching Protocols" }, { 102, "Processing" },
        { 103, "Early Hints" }, { 200, "OK" }, { 201, "Created" }, { 204, "No Content" },
        { 206, "Partial Content" }, { 301, "Moved Permanently" }, { 302, "Found" },
        { 304, "Not Modified" }, { 400, "Bad Request" }, { 401, "Unauthorized" },
        { 403, "Forbidden" }, { 404, "Not Found" }, { 408, "Request Timeout" },
        { 413, "Content Too Large" }, { 417, "Expectation Failed" },
        { 429, "Too Many Requests" }, { 500, "Internal Server Error" }, { 502, "Bad Gateway" },
        { 503, "Service Unavailable" }, { 504, "Gateway Timeout" },
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].code == status) {
            return table[i].text;
        }
    }
    return "Status";
}

/* Finds header `name` in a head (lines after the first); value span in *v, *vlen. */
static bool head_field(const char *head, size_t head_len, const char *name, const char **v,
                       size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *end = head + head_len;
    const char *p = memchr(head, '\n', head_len);

    while (p != NULL && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon;

        if (eol == NULL) {
            eol = end;
        }
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && (size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0) {
            const char *s = colon + 1, *e = eol;

            while (s < e && (*s == ' ' || *s == '\t')) {
                s++;
            }
            while (e > s && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) {
                e--;
            }
            *v = s;
            *vlen = (size_t)(e - s);
            return true;
        }
        p = eol < end ? eol : NULL;
    }
    return false;
}

/* True when the comma-separated list (len bytes) contains token, case-insensitively. */
static bool has_token(const char *list, size_t len, const char *token)
{
    size_t tlen = strlen(token);

    for (size_t i = 0; i + tlen <= len; i++) {
        bool start = i == 0 || list[i - 1] == ',' || list[i - 1] == ' ';
        bool stop = i + tlen == len || list[i + tlen] == ',' || list[i + tlen] == ' '
                    || list[i + tlen] == ';';

        if (start && stop && strncasecmp(list + i, token, tlen) == 0) {
            return true;
        }
    }
    return false;
}

static void parse_head(const char *head, size_t len, struct fo_head *h)
{
    const char *v;
    size_t vlen;
    const char *eol = memchr(head, '\n', len);
    size_t line = eol != NULL ? (size_t)(eol - head) : len;
    bool http10 = line >= 9 && memmem(head, line, "HTTP/1.0", 8) != NULL;

    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    h->is_head = len >= 5 && memcmp(head, "HEAD ", 5) == 0;
    h->close = http10;
    if (head_field(head, len, "Connection", &v, &vlen)) {
        if (has_token(v, vlen, "close")) {
            h->close = true;
        } else if (has_token(v, vlen, "keep-alive")) {
            h->close = false;
        }
    }
    if (head_field(head, len, "Expect", &v, &vlen)) {
        h->expect_continue = vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
    if (head_field(head, len, "Transfer-Encoding", &v, &vlen)) {
        h->chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
    }
    if (!h->chunked && head_field(head, len, "Content-Length", &v, &vlen)) {
        h->content_length = strtoll(v, NULL, 10);
    }
}

/* ---- connection I/O: every wait also watches the stop pipe ---- */

/* 1 when fd is ready for events, 0 on timeout (timeout_ms >= 0), -1 when the origin stops. */
static int conn_wait(struct fo_conn *c, short events, int timeout_ms)
{
    for (;;) {
        struct pollfd p[2] = { { .fd = c->fd, .events = events },
                               { .fd = c->o->stop_pipe[0], .events = POLLIN } };
        int n = poll(p, 2, timeout_ms);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 || p[1].revents != 0) {
            return -1;
        }
        return n == 0 ? 0 : 1;
    }
}

/* Waits ms milliseconds unless the origin stops first (-1). */
static int origin_pause(struct fake_origin *o, int ms)
{
    int64_t deadline = tu_now_ms() + ms;
    short rev;

    return tu_poll_until(o->stop_pipe[0], POLLIN, deadline, &rev) == 0 ? 0 : -1;
}

/* Maps an SSL_ERROR_WANT_* to a wait; 1 to retry, -1 to give up. */
static int ssl_wait(struct fo_conn *c, int ret)
{
    int err = SSL_get_error(c->ssl, ret);

    if (err == SSL_ERROR_WANT_READ) {
        return conn_wait(c, POLLIN, -1) == 1 ? 1 : -1;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        return conn_wait(c, POLLOUT, -1) == 1 ? 1 : -1;
    }
    return -1;
}

/* Reads some bytes: >0 count, 0 EOF, -1 error or stop. */
static ssize_t conn_recv(struct fo_conn *c, char *buf, size_t n)
{
    for (;;) {
        if (c->ssl != NULL) {
            int r = SSL_read(c->ssl, buf, (int)n);

            if (r > 0) {
                return r;
            }
            if (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN) {
                return 0;
            }
            if (ssl_wait(c, r) < 0) {
                return -1;
            }
            continue;
        }
        ssize_t r = recv(c->fd, buf, n, 0);

        if (r >= 0) {
            return r;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN || conn_wait(c, POLLIN, -1) != 1) {
            return -1;
        }
    }
}

static int conn_send(struct fo_conn *c, const void *data, size_t n)
{
    const char *p = data;

    while (n > 0) {
        if (c->ssl != NULL) {
            int r = SSL_write(c->ssl, p, (int)n);

            if (r > 0) {
                p += r;
                n -= (size_t)r;
            } else if (ssl_wait(c, r) < 0) {
                return -1;
            }
            continue;
        }
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);

        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && errno == EAGAIN) {
            if (conn_wait(c, POLLOUT, -1) != 1) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

/* Reads more input into c->buf: >0 count, 0 EOF, -1 error or stop. */
static ssize_t conn_fill(struct fo_conn *c)
{
    if (grow(&c->buf, &c->cap, c->len + 16384 + 1) < 0) {
        return -1;
    }
    ssize_t n = conn_recv(c, c->buf + c->len, c->cap - c->len - 1);

    if (n > 0) {
        c->len += (size_t)n;
    }
    return n;
}

static void conn_consume(struct fo_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static void conn_close(struct fo_conn *c, bool reset)
{
    if (c->fd < 0) {
        return;
    }
    if (reset) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };

        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else if (c->ssl != NULL) {
        SSL_shutdown(c->ssl); /* one try: a close_notify if the socket takes it */
    }
    close(c->fd);
    c->fd = -1;
}

/* Reads and discards until EOF or stop: the connection stays open as long as the peer wants. */
static void conn_hold(struct fo_conn *c)
{
    char sink[4096];

    while (conn_recv(c, sink, sizeof(sink)) > 0) {
    }
}

/* ---- request reading ---- */

/* Waits for a complete head; copies it into rec and consumes it. 0 ok, -1 EOF/error/stop. */
static int read_head(struct fo_conn *c, struct fo_record *rec, struct fo_head *h)
{
    for (;;) {
        char *end = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;

        if (end != NULL) {
            size_t off = (size_t)(end - c->buf);

            if (off > FO_MAX_HEAD) {
                return -1;
            }
            size_t n = off + 4;

            if (append(&rec->raw, &rec->raw_len, &rec->raw_cap, c->buf, n) < 0) {
                return -1;
            }
            rec->head_len = n;
            parse_head(c->buf, n, h);
            conn_consume(c, n);
            return 0;
        }
        if (c->len > FO_MAX_HEAD || conn_fill(c) <= 0) {
            return -1;
        }
    }
}

/* Moves n bytes of input into the record: raw always, decoded too when body is set. */
static int take(struct fo_conn *c, struct fo_record *rec, size_t n, bool body)
{
    if (append(&rec->raw, &rec->raw_len, &rec->raw_cap, c->buf, n) < 0) {
        return -1;
    }
    if (body && append(&rec->body, &rec->body_len, &rec->body_cap, c->buf, n) < 0) {
        return -1;
    }
    conn_consume(c, n);
    return 0;
}

/* Length of the CRLF-terminated line at the start of the input, waiting for it. -1 on EOF. */
static ssize_t need_line(struct fo_conn *c)
{
    for (;;) {
        char *eol = c->len >= 2 ? memmem(c->buf, c->len, "\r\n", 2) : NULL;

        if (eol != NULL) {
            return (eol - c->buf) + 2;
        }
        if (c->len > FO_MAX_HEAD || conn_fill(c) <= 0) {
            return -1;
        }
    }
}

static int read_chunked(struct fo_conn *c, struct fo_record *rec)
{
    for (;;) {
        ssize_t line = need_line(c);

        if (line < 0) {
            return -1;
        }
        unsigned long long size = strtoull(c->buf, NULL, 16);

        if (take(c, rec, (size_t)line, false) < 0) {
            return -1;
        }
        if (size == 0) {
            break;
        }
        /* The chunk data and its CRLF, streamed so big chunks need no big buffer. */
        unsigned long long left = size;

        while (left > 0) {
            if (c->len == 0 && conn_fill(c) <= 0) {
                return -1;
            }
            size_t n = c->len < left ? c->len : (size_t)left;

            if (take(c, rec, n, true) < 0) {
                return -1;
            }
            left -= n;
        }
        while (c->len < 2) {
            if (conn_fill(c) <= 0) {
                return -1;
            }
        }
        if (take(c, rec, 2, false) < 0) {
            return -1;
        }
    }
    /* Trailer fields, then the empty line. */
    for (;;) {
        ssize_t line = need_line(c);

        if (line < 0 || take(c, rec, (size_t)line, false) < 0) {
            return -1;
        }
        if (line == 2) {
            return 0;
        }
    }
}

static int read_body(struct fo_conn *c, const struct fo_head *h, struct fo_record *rec)
{
    if (h->chunked) {
        return read_chunked(c, rec);
    }
    long long left = h->content_length > 0 ? h->content_length : 0;

    while (left > 0) {
        if (c->len == 0 && conn_fill(c) <= 0) {
            return -1;
        }
        size_t n = (long long)c->len < left ? c->len : (size_t)left;

        if (take(c, rec, n, true) < 0) {
            return -1;
        }
        left -= (long long)n;
    }
    return 0;
}

/* Stores a copy of a finished record in the origin (the caller keeps and frees its own). */
static void record_request(struct fake_origin *o, const struct fo_record *rec)
{
    struct fo_record copy = { .raw_len = rec->raw_len, .head_len = rec->head_len,
                              .body_len = rec->body_len };

    copy.raw = malloc(rec->raw_len + 1);
    copy.body = malloc(rec->body_len + 1);
    if (copy.raw == NULL || copy.body == NULL) {
        goto fail;
    }
    if (rec->raw_len > 0) {
        memcpy(copy.raw, rec->raw, rec->raw_len);
    }
    copy.raw[rec->raw_len] = '\0';
    if (rec->body_len > 0) {
        memcpy(copy.body, rec->body, rec->body_len);
    }
    copy.body[rec->body_len] = '\0';
    pthread_mutex_lock(&o->lock);
    if (o->nrecs == o->caprecs) {
        size_t ncap = o->caprecs != 0 ? o->caprecs * 2 : 16;
        struct fo_record *nr = realloc(o->recs, ncap * sizeof(*nr));

        if (nr == NULL) {
            pthread_mutex_unlock(&o->lock);
            goto fail;
        }
        o->recs = nr;
        o->caprecs = ncap;
    }
    o->recs[o->nrecs++] = copy;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
    return;
fail:
    free(copy.raw);
    free(copy.body);
}

/* ---- responses and scripts ---- */

/* Sends a response. status 0 means the origin's default answer (FO_OK/FO_ECHO options).
 * Returns 0, 1 when the framing requires closing afterwards, -1 on error. */
static int send_response(struct fo_conn *c, const struct fo_head *h, const struct fo_step *s,
                         const struct fo_record *rec, unsigned req_index)
{
    const struct fake_origin_opts *opts = &c->o->opts;
    char *out = NULL;
    size_t len = 0, cap = 0;
    char line[256];
    int status = s->status;
    const char *headers = s->data;
    const char *body = s->body != NULL ? s->body : "";
    size_t body_len = strlen(body);
    enum fo_framing framing = s->framing;
    int rc = 0;

    if (status == 0) {
        status = opts->status != 0 ? opts->status : 200;
        headers = opts->extra_headers;
        framing = FO_LENGTH;
        if (opts->kind == FO_ECHO) {
            body = rec->body != NULL ? rec->body : "";
            body_len = rec->body_len;
        } else {
            body = opts->body != NULL ? opts->body : "ok\n";
            body_len = strlen(body);
        }
    }
    bool no_body = status < 200 || status == 204 || status == 304 || framing == FO_NO_FRAMING;

    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    append(&out, &len, &cap, line, strlen(line));
    if (s->status == 0) {
        snprintf(line, sizeof(line),
                 "Content-Type: text/plain\r\nX-Origin-Conn: %u\r\nX-Origin-Request: %u\r\n",
                 c->index, req_index);
        append(&out, &len, &cap, line, strlen(line));
        if (h->close) {
            append(&out, &len, &cap, "Connection: close\r\n", 19);
        }
    }
    if (!no_body && framing == FO_LENGTH) {
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body_len);
        append(&out, &len, &cap, line, strlen(line));
    } else if (!no_body && framing == FO_CHUNKED) {
        append(&out, &len, &cap, "Transfer-Encoding: chunked\r\n", 28);
    }
    if (headers != NULL) {
        append(&out, &len, &cap, headers, strlen(headers));
    }
    append(&out, &len, &cap, "\r\n", 2);
    if (!no_body && !h->is_head) {
        if (framing == FO_CHUNKED && body_len > 0) {
            snprintf(line, sizeof(line), "%zx\r\n", body_len);
            append(&out, &len, &cap, line, strlen(line));
            append(&out, &len, &cap, body, body_len);
            append(&out, &len, &cap, "\r\n", 2);
        } else if (framing != FO_CHUNKED) {
            append(&out, &len, &cap, body, body_len);
        }
        if (framing == FO_CHUNKED) {
            append(&out, &len, &cap, "0\r\n\r\n", 5);
        }
    }
    if (out == NULL || conn_send(c, out, len) < 0) {
        rc = -1;
    } else if (!no_body && framing == FO_CLOSE_DELIMITED) {
        rc = 1;
    }
    free(out);
    return rc;
}

/* Runs a script for one request. 0 to go on with the next request, 1 when the connection was
 * closed (or must be), -1 on error. */
static int run_script(struct fo_conn *c, const struct fo_head *h, const struct fo_step *script,
                      const struct fo_record *rec, unsigned req_index)
{
    for (const struct fo_step *s = script; s->kind != FO_STEP_END; s++) {
        switch (s->kind) {
        case FO_STEP_SEND:
            if (conn_send(c, s->data, s->len != 0 ? s->len : strlen(s->data)) < 0) {
                return -1;
            }
            break;
        case FO_STEP_WAIT:
            if (origin_pause(c->o, s->ms) < 0) {
                return -1;
            }
            break;
        case FO_STEP_RESPOND: {
            int rc = send_response(c, h, s, rec, req_index);

            if (rc != 0) {
                conn_close(c, false);
                return rc;
            }
            break;
        }
        case FO_STEP_CLOSE:
            conn_close(c, false);
            return 1;
        case FO_STEP_RESET:
            conn_close(c, true);
            return 1;
        case FO_STEP_HOLD:
            conn_hold(c);
            return 1;
        case FO_STEP_CALL:
            if (s->call(c->fd, s->arg) != 0) {
                return -1;
            }
            break;
        case FO_STEP_DROP:
            /* no SSL_shutdown: the peer sees the TCP FIN without a close_notify */
            close(c->fd);
            c->fd = -1;
            return 1;
        case FO_STEP_END:
            break;
        }
    }
    return 0;
}

static const struct fo_step *pick(struct fo_conn *c, const struct fo_record *rec,
                                  unsigned req_index)
{
    const struct fake_origin_opts *opts = &c->o->opts;

    if (opts->kind != FO_SCRIPT) {
        return c->o->builtin;
    }
    if (opts->pick_script != NULL) {
        struct fo_request_info info = { .conn = c->index, .index = req_index,
                                        .index_in_conn = c->nreq, .head = rec->raw };
        const struct fo_step *s = opts->pick_script(&info, opts->pick_arg);

        if (s != NULL) {
            return s;
        }
    }
    return opts->script != NULL ? opts->script : c->o->builtin;
}

static void serve_http(struct fo_conn *c)
{
    struct fake_origin *o = c->o;

    while (c->fd >= 0) {
        struct fo_record rec = { 0 };
        struct fo_head h;
        int rc = 0;

        if (read_head(c, &rec, &h) < 0) {
            free(rec.raw);
            return;
        }
        unsigned req_index = __atomic_fetch_add(&o->heads, 1, __ATOMIC_SEQ_CST);
        if (o->opts.on_head)
            o->opts.on_head(o->opts.on_head_arg);
        const struct fo_step *script = pick(c, &rec, req_index);
        bool has_body = h.chunked || h.content_length > 0;

        if (o->opts.respond_before_body) {
            rc = run_script(c, &h, script, &rec, req_index);
            if (rc == 0 && read_body(c, &h, &rec) < 0) {
                rc = -1;
            }
            record_request(o, &rec);
        } else {
            if (has_body && h.expect_continue && o->opts.expect == FO_EXPECT_CONTINUE) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

                rc = conn_send(c, cont, sizeof(cont) - 1);
            }
            if (rc == 0) {
                rc = read_body(c, &h, &rec);
            }
            if (rc == 0) {
                /* Recorded before answering: a client that got the answer sees the count. */
                record_request(o, &rec);
                rc = run_script(c, &h, script, &rec, req_index);
            }
        }
        c->nreq++;
        free(rec.raw);
        free(rec.body);
        if (rc != 0 || h.close) {
            return;
        }
    }
}

/* ---- TLS ---- */

static int tls_accept(struct fo_conn *c)
{
    struct fake_origin *o = c->o;

    c->ssl = SSL_new(o->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        return -1;
    }
    for (;;) {
        int r = SSL_accept(c->ssl);

        if (r == 1) {
            break;
        }
        if (ssl_wait(c, r) < 0) {
            ERR_clear_error();
            return -1;
        }
    }
    const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    char cn[256] = "";

    if (peer != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
        X509_free(peer);
    }
    pthread_mutex_lock(&o->lock);
    o->handshakes++;
    snprintf(o->last_sni, sizeof(o->last_sni), "%s", sni != NULL ? sni : "");
    snprintf(o->last_cn, sizeof(o->last_cn), "%s", cn);
    pthread_mutex_unlock(&o->lock);
    return 0;
}

static SSL_CTX *tls_server_ctx(const struct fake_origin_opts *opts)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        return NULL;
    }
    /* A peer that just closes is an EOF here, not an error: the tests decide what it means. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (opts->tls_max_version != 0
        && SSL_CTX_set_max_proto_version(ctx, opts->tls_max_version) != 1) {
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, opts->tls_cert) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, opts->tls_key, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(ctx) != 1) {
        goto fail;
    }
    if (opts->tls_client_ca != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(opts->tls_client_ca);

        if (names == NULL || SSL_CTX_load_verify_locations(ctx, opts->tls_client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- threads ---- */

/* FO_NO_READ: never reads, but notes when bytes arrive until the origin stops. Edge-triggered
 * epoll wakes on each arrival although the queue stays unread: no polling. */
static void watch_unread(struct fo_conn *c)
{
    struct fake_origin *o = c->o;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event in = { .events = EPOLLIN | EPOLLET, .data.fd = c->fd };
    struct epoll_event stop = { .events = EPOLLIN, .data.fd = o->stop_pipe[0] };

    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &in) < 0
        || epoll_ctl(ep, EPOLL_CTL_ADD, o->stop_pipe[0], &stop) < 0) {
        short rev;

        tu_poll_until(o->stop_pipe[0], POLLIN, INT64_MAX, &rev); /* no timestamps, still no read */
    } else {
        for (bool stopping = false; !stopping;) {
            struct epoll_event ev[2];
            int n = epoll_wait(ep, ev, 2, -1);

            for (int i = 0; i < n; i++) {
                if (ev[i].data.fd == o->stop_pipe[0]) {
                    stopping = true;
                } else {
                    atomic_store(&o->last_rx_ms, tu_now_ms());
                }
            }
            stopping = stopping || (n < 0 && errno != EINTR);
        }
    }
    if (ep >= 0) {
        close(ep);
    }
}

static void *conn_thread(void *arg)
{
    struct fo_conn *c = arg;
    struct fake_origin *o = c->o;

    switch (o->opts.kind) {
    case FO_NO_READ:
        watch_unread(c);
        break;
    case FO_TLS_GARBAGE: {
        char sink[4096];

        if (conn_recv(c, sink, sizeof(sink)) > 0) {
            conn_send(c, not_tls_reply, sizeof(not_tls_reply) - 1);
        }
        break;
    }
    case FO_TLS_SILENT:
        conn_hold(c);
        break;
    default:
        if (o->ctx == NULL || tls_accept(c) == 0) {
            serve_http(c);
        }
        break;
    }
    conn_close(c, false);
    SSL_free(c->ssl);
    c->ssl = NULL;
    free(c->buf);
    c->buf = NULL;
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Joins the connection threads that have finished, so a long test does not pile them up. */
static void reap_conns(struct fake_origin *o, bool all)
{
    struct fo_conn **pp = &o->conns;

    while (*pp != NULL) {
        struct fo_conn *c = *pp;

        if (all || __atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
            pthread_join(c->thread, NULL);
            *pp = c->next;
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

static void *accept_thread(void *arg)
{
    struct fake_origin *o = arg;

    for (;;) {
        struct pollfd p[2] = { { .fd = o->listen_fd, .events = POLLIN },
                               { .fd = o->stop_pipe[0], .events = POLLIN } };

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (p[1].revents != 0) {
            break;
        }
        int fd = accept4(o->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            continue;
        }
        reap_conns(o, false);
        /* As nginx does: without it, a response written while TLS 1.3 session tickets are still
         * unacknowledged waits for the proxy's delayed ACK (~40 ms on loopback). */
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        struct fo_conn *c = calloc(1, sizeof(*c));

        if (c == NULL) {
            close(fd);
            continue;
        }
        c->o = o;
        c->fd = fd;
        pthread_mutex_lock(&o->lock);
        c->index = o->connections++;
        pthread_cond_broadcast(&o->cond);
        pthread_mutex_unlock(&o->lock);
        if (pthread_create(&c->thread, NULL, conn_thread, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = o->conns;
        o->conns = c;
    }
    return NULL;
}

/* ---- start / stop ---- */

/* The origin's address, 127.0.0.1:port or [::1]:port (port 0: any); its length. */
static socklen_t origin_addr(bool ipv6, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (ipv6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;

        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        a6->sin6_addr = in6addr_loopback;
        return sizeof(*a6);
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;

    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*a4);
}

/* Connects to the blackhole until a connect stays pending: the accept queue is then full and the
 * kernel drops further SYNs. The pending socket is kept as proof (its retries are dropped too). */
static int fill_backlog(struct fake_origin *o)
{
    struct sockaddr_storage a;
    socklen_t alen = origin_addr(o->opts.ipv6, o->port, &a);

    while (o->nfillers < FO_MAX_FILLERS) {
        int fd = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            return -1;
        }
        o->fillers[o->nfillers++] = fd;
        if (connect(fd, (struct sockaddr *)&a, alen) == 0) {
            continue;
        }
        if (errno != EINPROGRESS) {
            return -1;
        }
        short rev = 0;
        int r = tu_poll_until(fd, POLLOUT, tu_now_ms() + FO_FILLER_WAIT_MS, &rev);

        if (r == 0) {
            return 0; /* this one hangs: the queue is full */
        }
        int err = 0;
        socklen_t elen = sizeof(err);

        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
            return -1;
        }
    }
    fprintf(stderr, "fake_origin: blackhole: %d connects all completed\n", FO_MAX_FILLERS);
    return -1;
}

static void origin_free(struct fake_origin *o)
{
    for (unsigned i = 0; i < o->nfillers; i++) {
        close(o->fillers[i]);
    }
    if (o->listen_fd >= 0) {
        close(o->listen_fd);
    }
    if (o->stop_pipe[0] >= 0) {
        close(o->stop_pipe[0]);
    }
    if (o->stop_pipe[1] >= 0) {
        close(o->stop_pipe[1]);
    }
    SSL_CTX_free(o->ctx);
    for (size_t i = 0; i < o->nrecs; i++) {
        free(o->recs[i].raw);
        free(o->recs[i].body);
    }
    free(o->recs);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

static void set_builtin_script(struct fake_origin *o)
{
    struct fo_step *b = o->builtin;

    switch (o->opts.kind) {
    case FO_SILENT:
        b[0] = (struct fo_step)FO_HOLD();
        break;
    case FO_CLOSE_EMPTY:
        b[0] = (struct fo_step)FO_CLOSE();
        break;
    case FO_RESET:
        b[0] = (struct fo_step)FO_RST();
        break;
    case FO_GARBAGE:
        b[0] = (struct fo_step)FO_SEND_N(garbage_reply, sizeof(garbage_reply) - 1);
        b[1] = (struct fo_step)FO_CLOSE();
        break;
    case FO_PARTIAL_HEAD:
        b[0] = (struct fo_step)FO_SEND(partial_head);
        b[1] = (struct fo_step)FO_HOLD();
        break;
    case FO_SLOW_FIRST_BYTE:
        b[0] = (struct fo_step)FO_WAIT(o->opts.delay_ms);
        b[1] = (struct fo_step)FO_RESPOND_OK();
        break;
    default:
        b[0] = (struct fo_step)FO_RESPOND_OK();
        break;
    }
}

struct fake_origin *fake_origin_start(const struct fake_origin_opts *opts)
{
    struct sockaddr_storage a;
    socklen_t alen = origin_addr(opts->ipv6, opts->port, &a);
    struct fake_origin *o = calloc(1, sizeof(*o));
    pthread_condattr_t ca;

    if (o == NULL) {
        return NULL;
    }
    tu_ignore_sigpipe();
    o->opts = *opts;
    o->listen_fd = -1;
    o->stop_pipe[0] = o->stop_pipe[1] = -1;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    set_builtin_script(o);
    if (opts->tls_cert != NULL) {
        o->ctx = tls_server_ctx(opts);
        if (o->ctx == NULL) {
            goto fail;
        }
    }
    o->listen_fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (o->listen_fd < 0) {
        goto fail;
    }
    if (opts->ipv6) { /* [::1] only: 127.0.0.1 on the same port may be another origin's */
        int one = 1;

        setsockopt(o->listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (opts->kind == FO_NO_READ || opts->rcvbuf != 0) {
        /* Before listen(): accepted sockets inherit it, and the window is set from it. */
        int rcvbuf = opts->rcvbuf != 0 ? opts->rcvbuf : 4096;

        setsockopt(o->listen_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    if (opts->kind != FO_REFUSE) {
        /* A test restarting an origin on its port binds while connections the old one closed
         * hold it (TIME_WAIT). Not a REFUSE port: bound, not listening, it must stay ours. */
        int one = 1;

        setsockopt(o->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (bind(o->listen_fd, (struct sockaddr *)&a, alen) < 0
        || getsockname(o->listen_fd, (struct sockaddr *)&a, &alen) < 0) {
        goto fail;
    }
    o->port = ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port
                                            : ((struct sockaddr_in *)&a)->sin_port);
    if (opts->kind == FO_REFUSE) {
        return o; /* bound, never listening: the port stays ours and connects get RST */
    }
    if (listen(o->listen_fd, opts->kind == FO_BLACKHOLE ? 0 : 128) < 0) {
        goto fail;
    }
    if (opts->kind == FO_BLACKHOLE) {
        if (fill_backlog(o) < 0) {
            goto fail;
        }
        return o;
    }
    if (pipe2(o->stop_pipe, O_CLOEXEC) < 0) {
        goto fail;
    }
    if (pthread_create(&o->acceptor, NULL, accept_thread, o) != 0) {
        goto fail;
    }
    o->has_acceptor = true;
    return o;
fail:
    fprintf(stderr, "fake_origin_start(%s): %s\n", fake_origin_kind_name(opts->kind),
            strerror(errno));
    origin_free(o);
    return NULL;
}

struct fake_origin *fake_origin_start_kind(enum fo_kind kind)
{
    struct fake_origin_opts opts = { .kind = kind };

    return fake_origin_start(&opts);
}

void fake_origin_stop(struct fake_origin *o)
{
    if (o == NULL) {
        return;
    }
    if (o->has_acceptor) {
        close(o->stop_pipe[1]);
        o->stop_pipe[1] = -1;
        pthread_join(o->acceptor, NULL);
        reap_conns(o, true);
    }
    origin_free(o);
}

/* ---- accessors ---- */

int64_t fake_origin_last_rx_ms(struct fake_origin *o)
{
    return atomic_load(&o->last_rx_ms);
}

uint16_t fake_origin_port(const struct fake_origin *o)
{
    return o->port;
}

unsigned fake_origin_blackhole_fillers(const struct fake_origin *o)
{
    return o->nfillers;
}

static unsigned locked_read(struct fake_origin *o, const unsigned *field)
{
    pthread_mutex_lock(&o->lock);
    unsigned v = *field;
    pthread_mutex_unlock(&o->lock);
    return v;
}

unsigned fake_origin_connections(struct fake_origin *o)
{
    return locked_read(o, &o->connections);
}

unsigned fake_origin_requests(struct fake_origin *o)
{
    pthread_mutex_lock(&o->lock);
    unsigned v = (unsigned)o->nrecs;
    pthread_mutex_unlock(&o->lock);
    return v;
}

unsigned fake_origin_tls_handshakes(struct fake_origin *o)
{
    return locked_read(o, &o->handshakes);
}

/* Waits on the origin's condition until *count (or nrecs when count is NULL) reaches n. */
static int wait_count(struct fake_origin *o, const unsigned *count, unsigned n, int timeout_ms)
{
    struct timespec ts;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&o->lock);
    while ((count != NULL ? *count : o->nrecs) < n && rc == 0) {
        rc = pthread_cond_timedwait(&o->cond, &o->lock, &ts);
    }
    bool ok = (count != NULL ? *count : o->nrecs) >= n;
    pthread_mutex_unlock(&o->lock);
    return ok ? 0 : -1;
}

int fake_origin_wait_connections(struct fake_origin *o, unsigned n, int timeout_ms)
{
    return wait_count(o, &o->connections, n, timeout_ms);
}

int fake_origin_wait_requests(struct fake_origin *o, unsigned n, int timeout_ms)
{
    return wait_count(o, NULL, n, timeout_ms);
}

/* Copies part of record i: what 0 = raw, 1 = head, 2 = body. */
static char *copy_record(struct fake_origin *o, unsigned i, int what, size_t *len)
{
    char *out = NULL;

    pthread_mutex_lock(&o->lock);
    if (i < o->nrecs) {
        const struct fo_record *r = &o->recs[i];
        const char *src = what == 2 ? r->body : r->raw;
        size_t n = what == 0 ? r->raw_len : what == 1 ? r->head_len : r->body_len;

        out = malloc(n + 1);
        if (out != NULL) {
            memcpy(out, src, n);
            out[n] = '\0';
            if (len != NULL) {
                *len = n;
            }
        }
    }
    pthread_mutex_unlock(&o->lock);
    return out;
}

char *fake_origin_request(struct fake_origin *o, unsigned i, size_t *len)
{
    return copy_record(o, i, 0, len);
}

char *fake_origin_request_head(struct fake_origin *o, unsigned i)
{
    return copy_record(o, i, 1, NULL);
}

char *fake_origin_request_body(struct fake_origin *o, unsigned i, size_t *len)
{
    return copy_record(o, i, 2, len);
}

char *fake_origin_request_header(struct fake_origin *o, unsigned i, const char *name)
{
    char *out = NULL;

    pthread_mutex_lock(&o->lock);
    if (i < o->nrecs) {
        const char *v;
        size_t vlen;

        if (head_field(o->recs[i].raw, o->recs[i].head_len, name, &v, &vlen)) {
            out = strndup(v, vlen);
        }
    }
    pthread_mutex_unlock(&o->lock);
    return out;
}

void fake_origin_last_sni(struct fake_origin *o, char *buf, size_t size)
{
    pthread_mutex_lock(&o->lock);
    snprintf(buf, size, "%s", o->last_sni);
    pthread_mutex_unlock(&o->lock);
}

void fake_origin_last_client_cn(struct fake_origin *o, char *buf, size_t size)
{
    pthread_mutex_lock(&o->lock);
    snprintf(buf, size, "%s", o->last_cn);
    pthread_mutex_unlock(&o->lock);
}
