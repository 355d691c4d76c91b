/*
 * raw_client.c — non-blocking socket (+ OpenSSL) client whose every wait is a poll() with a
 * deadline. Input is buffered; responses are parsed greedily from the buffer before reading more,
 * so the time of the last recv() is the arrival time of whatever completed in it.
 */
#include "raw_client.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define RAW_MAX_HEAD (256 * 1024)

struct raw_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    long verify_result;    /* X509_V_OK or X509_V_ERR_* */
    char *buf;             /* unconsumed input */
    size_t len;
    size_t cap;
    int64_t last_recv_ms;  /* when the last recv() returned data */
    int64_t last_send_ms;
    int send_timeout_ms;
    bool eof;              /* EOF or a connection error was seen */
    int last_errno;
};

static __thread char last_error[256];

const char *raw_last_error(void)
{
    return last_error;
}

/* ---- connect ---- */

/* Connects to sa, from src when it is not NULL (of sa's family). */
static struct raw_conn *connect_addr(const struct sockaddr *sa, socklen_t salen,
                                     const struct sockaddr *src, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = 0;

    tu_ignore_sigpipe();
    last_error[0] = '\0';
    if (fd < 0) {
        err = errno;
        goto fail;
    }
    if (src != NULL && bind(fd, src, salen) < 0) {
        err = errno;
        goto fail;
    }
    if (connect(fd, sa, salen) < 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            goto fail;
        }
        short rev = 0;
        int r = tu_poll_until(fd, POLLOUT, deadline, &rev);
        socklen_t elen = sizeof(err);

        if (r == 0) {
            err = ETIMEDOUT;
            goto fail;
        }
        if (r < 0) {
            err = errno;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0) {
            err = errno;
        }
        if (err != 0) {
            goto fail;
        }
    }
    struct raw_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        err = ENOMEM;
        goto fail;
    }
    c->fd = fd;
    c->send_timeout_ms = 5000;
    return c;
fail:
    snprintf(last_error, sizeof(last_error), "connect: %s", strerror(err));
    if (fd >= 0) {
        close(fd);
    }
    errno = err;
    return NULL;
}

struct raw_conn *raw_connect_ip(const char *ip, uint16_t port, int timeout_ms)
{
    /* Loopback only, by rule: anything else is refused here rather than sent anywhere. */
    if (strcmp(ip, "127.0.0.1") == 0) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

        inet_pton(AF_INET, ip, &a.sin_addr);
        return connect_addr((struct sockaddr *)&a, sizeof(a), NULL, timeout_ms);
    }
    if (strcmp(ip, "::1") == 0) {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };

        inet_pton(AF_INET6, ip, &a.sin6_addr);
        return connect_addr((struct sockaddr *)&a, sizeof(a), NULL, timeout_ms);
    }
    snprintf(last_error, sizeof(last_error), "connect: %s is not a loopback address", ip);
    errno = EINVAL;
    return NULL;
}

struct raw_conn *raw_connect_from(const char *src, uint16_t port, int timeout_ms)
{
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
    struct sockaddr_in from = { .sin_family = AF_INET };

    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    /* Loopback only, by rule: a source outside 127.0.0.0/8 is refused here. */
    if (inet_pton(AF_INET, src, &from.sin_addr) != 1 ||
        (ntohl(from.sin_addr.s_addr) >> 24) != 127) {
        snprintf(last_error, sizeof(last_error), "connect: %s is not a loopback address", src);
        errno = EINVAL;
        return NULL;
    }
    return connect_addr((struct sockaddr *)&to, sizeof(to), (struct sockaddr *)&from, timeout_ms);
}

struct raw_conn *raw_connect(uint16_t port, int timeout_ms)
{
    return raw_connect_ip("127.0.0.1", port, timeout_ms);
}

static int tls_handshake(struct raw_conn *c, const struct raw_tls_opts *tls, int64_t deadline)
{
    const char *host = tls->host != NULL ? tls->host : "localhost";
    unsigned char ipbuf[16];
    bool is_ip = inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1;

    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        return -1;
    }
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (tls->ca_file != NULL && SSL_CTX_load_verify_locations(c->ctx, tls->ca_file, NULL) != 1) {
        return -1;
    }
    if (tls->cert != NULL
        && (SSL_CTX_use_certificate_chain_file(c->ctx, tls->cert) != 1
            || SSL_CTX_use_PrivateKey_file(c->ctx, tls->key, SSL_FILETYPE_PEM) != 1)) {
        return -1;
    }
    /* Verification always runs; require_valid only decides whether a failure aborts. */
    SSL_CTX_set_verify(c->ctx, tls->require_valid ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        return -1;
    }
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host);
    } else {
        char sni[256]; /* the SNI macro takes a non-const pointer */

        snprintf(sni, sizeof(sni), "%s", host);
        SSL_set_tlsext_host_name(c->ssl, sni);
        SSL_set1_host(c->ssl, host);
    }
    for (;;) {
        int r = SSL_connect(c->ssl);

        if (r == 1) {
            c->verify_result = SSL_get_verify_result(c->ssl);
            return 0;
        }
        int err = SSL_get_error(c->ssl, r);
        short rev;

        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            short ev = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            int p = tu_poll_until(c->fd, ev, deadline, &rev);

            if (p == 0) {
                snprintf(last_error, sizeof(last_error), "TLS handshake: timed out");
                errno = ETIMEDOUT;
                return -2;
            }
            if (p < 0) {
                return -1;
            }
            continue;
        }
        c->verify_result = SSL_get_verify_result(c->ssl);
        return -1;
    }
}

struct raw_conn *raw_connect_tls(uint16_t port, const struct raw_tls_opts *tls, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    struct raw_conn *c = raw_connect(port, timeout_ms);
    struct raw_tls_opts none = { 0 };

    if (c == NULL) {
        return NULL;
    }
    int rc = tls_handshake(c, tls != NULL ? tls : &none, deadline);

    if (rc == 0) {
        return c;
    }
    if (rc == -1) {
        unsigned long e = ERR_peek_last_error();
        char text[200] = "no OpenSSL error";

        if (e != 0) {
            ERR_error_string_n(e, text, sizeof(text));
        }
        snprintf(last_error, sizeof(last_error), "TLS handshake: %s (verify %ld)", text,
                 c->verify_result);
        errno = EPROTO;
    }
    ERR_clear_error();
    int saved = errno;

    raw_close(c);
    errno = saved;
    return NULL;
}

long raw_tls_verify_result(const struct raw_conn *c)
{
    return c->verify_result;
}

/* ---- send ---- */

void raw_set_send_timeout(struct raw_conn *c, int timeout_ms)
{
    c->send_timeout_ms = timeout_ms;
}

int raw_send(struct raw_conn *c, const void *data, size_t len)
{
    int64_t deadline = tu_now_ms() + c->send_timeout_ms;
    const char *p = data;

    while (len > 0) {
        short ev = POLLOUT, rev;

        if (c->ssl != NULL) {
            int r = SSL_write(c->ssl, p, (int)len);

            if (r > 0) {
                p += r;
                len -= (size_t)r;
                continue;
            }
            int err = SSL_get_error(c->ssl, r);

            if (err == SSL_ERROR_WANT_READ) {
                ev = POLLIN;
            } else if (err != SSL_ERROR_WANT_WRITE) {
                c->last_errno = errno != 0 ? errno : EPIPE;
                ERR_clear_error();
                return -1;
            }
        } else {
            ssize_t r = send(c->fd, p, len, MSG_NOSIGNAL);

            if (r > 0) {
                p += r;
                len -= (size_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0 && errno != EAGAIN) {
                c->last_errno = errno;
                return -1;
            }
        }
        int pr = tu_poll_until(c->fd, ev, deadline, &rev);

        if (pr <= 0) {
            c->last_errno = pr == 0 ? ETIMEDOUT : errno;
            return -1;
        }
    }
    c->last_send_ms = tu_now_ms();
    return 0;
}

int raw_send_str(struct raw_conn *c, const char *s)
{
    return raw_send(c, s, strlen(s));
}

int raw_send_slowly(struct raw_conn *c, const void *data, size_t len, size_t piece, int pause_ms)
{
    const char *p = data;

    if (piece == 0) {
        piece = 1;
    }
    while (len > 0) {
        size_t n = len < piece ? len : piece;

        if (raw_send(c, p, n) < 0) {
            return -1;
        }
        p += n;
        len -= n;
        if (len > 0) {
            /* The pause is the behaviour under test (a slow client), not a synchronisation. It
             * ends early if the peer closes, since further pieces would be pointless. */
            short rev = 0;

            if (tu_poll_until(c->fd, POLLRDHUP, tu_now_ms() + pause_ms, &rev) == 1
                && (rev & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
                c->last_errno = EPIPE;
                return -1;
            }
        }
    }
    return 0;
}

int64_t raw_last_send_ms(const struct raw_conn *c)
{
    return c->last_send_ms;
}

int raw_shutdown_write(struct raw_conn *c)
{
    return shutdown(c->fd, SHUT_WR) == 0 ? 0 : -1;
}

int raw_tls_close_notify(struct raw_conn *c)
{
    if (c->ssl == NULL) {
        return -1;
    }
    ERR_clear_error();
    int rc = SSL_shutdown(c->ssl); /* 0: ours went, the peer's is not read yet */
    ERR_clear_error();
    return rc >= 0 ? 0 : -1;
}

/* ---- receive ---- */

/* Reads more input: >0 count, 0 EOF, -1 error (c->last_errno), -2 deadline passed. */
static ssize_t fill(struct raw_conn *c, int64_t deadline)
{
    if (c->eof) {
        return c->last_errno != 0 ? -1 : 0;
    }
    if (c->cap - c->len < 16384 + 1) {
        size_t ncap = c->cap != 0 ? c->cap * 2 : 65536;
        char *nb = realloc(c->buf, ncap);

        if (nb == NULL) {
            c->last_errno = ENOMEM;
            return -1;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    for (;;) {
        short ev = POLLIN, rev;
        size_t room = c->cap - c->len - 1;

        if (c->ssl != NULL) {
            errno = 0;
            int r = SSL_read(c->ssl, c->buf + c->len, (int)room);

            if (r > 0) {
                c->len += (size_t)r;
                c->last_recv_ms = tu_now_ms();
                return r;
            }
            int err = SSL_get_error(c->ssl, r);

            if (err == SSL_ERROR_ZERO_RETURN) {
                c->eof = true;
                return 0;
            }
            if (err == SSL_ERROR_WANT_WRITE) {
                ev = POLLOUT;
            } else if (err != SSL_ERROR_WANT_READ) {
                c->eof = true;
                c->last_errno = err == SSL_ERROR_SYSCALL && errno != 0 ? errno : EPROTO;
                ERR_clear_error();
                return -1;
            }
        } else {
            ssize_t r = recv(c->fd, c->buf + c->len, room, 0);

            if (r > 0) {
                c->len += (size_t)r;
                c->last_recv_ms = tu_now_ms();
                return r;
            }
            if (r == 0) {
                c->eof = true;
                return 0;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                c->eof = true;
                c->last_errno = errno;
                return -1;
            }
        }
        int pr = tu_poll_until(c->fd, ev, deadline, &rev);

        if (pr == 0) {
            return -2;
        }
        if (pr < 0) {
            c->last_errno = errno;
            return -1;
        }
    }
}

static void consume(struct raw_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static int body_append(struct raw_response *r, size_t *cap, const char *data, size_t n)
{
    if (r->body_len + n + 1 > *cap) {
        size_t ncap = *cap != 0 ? *cap : 1024;

        while (ncap < r->body_len + n + 1) {
            ncap *= 2;
        }
        char *nb = realloc(r->body, ncap);

        if (nb == NULL) {
            return -1;
        }
        r->body = nb;
        *cap = ncap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

void raw_head_free(struct raw_head *h)
{
    for (size_t i = 0; i < h->nfields; i++) {
        free(h->fields[i].name);
        free(h->fields[i].value);
    }
    free(h->fields);
    free(h->reason);
    free(h->text);
    memset(h, 0, sizeof(*h));
}

/* Parses a complete head of n bytes. 0, or -1 when it is not an HTTP/1.x status line. */
static int parse_head(const char *text, size_t n, struct raw_head *h)
{
    const char *end = text + n;
    const char *eol = memchr(text, '\n', n);

    memset(h, 0, sizeof(*h));
    h->text = strndup(text, n);
    if (h->text == NULL || eol == NULL || n < 12 || memcmp(text, "HTTP/1.", 7) != 0
        || text[8] != ' ') {
        return -1;
    }
    h->minor = text[7] - '0';
    h->status = (int)strtol(text + 9, NULL, 10);
    if (h->status < 100 || h->status > 999) {
        return -1;
    }
    const char *rs = text + 12;
    const char *re = eol;

    while (rs < re && *rs == ' ') {
        rs++;
    }
    while (re > rs && (re[-1] == '\r' || re[-1] == ' ')) {
        re--;
    }
    h->reason = strndup(rs, rs <= re ? (size_t)(re - rs) : 0);

    for (const char *p = eol + 1; p < end;) {
        const char *le = memchr(p, '\n', (size_t)(end - p));
        const char *colon;

        if (le == NULL) {
            break;
        }
        colon = memchr(p, ':', (size_t)(le - p));
        if (colon != NULL) {
            const char *vs = colon + 1, *ve = le;
            struct raw_field *nf = realloc(h->fields, (h->nfields + 1) * sizeof(*nf));

            if (nf == NULL) {
                return -1;
            }
            h->fields = nf;
            while (vs < ve && (*vs == ' ' || *vs == '\t')) {
                vs++;
            }
            while (ve > vs && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) {
                ve--;
            }
            h->fields[h->nfields].name = strndup(p, (size_t)(colon - p));
            h->fields[h->nfields].value = strndup(vs, (size_t)(ve - vs));
            h->nfields++;
        }
        p = le + 1;
    }
    return 0;
}

const char *raw_head_field(const struct raw_head *h, const char *name)
{
    for (size_t i = 0; i < h->nfields; i++) {
        if (strcasecmp(h->fields[i].name, name) == 0) {
            return h->fields[i].value;
        }
    }
    return NULL;
}

unsigned raw_head_field_count(const struct raw_head *h, const char *name)
{
    unsigned n = 0;

    for (size_t i = 0; i < h->nfields; i++) {
        n += strcasecmp(h->fields[i].name, name) == 0;
    }
    return n;
}

const char *raw_header(const struct raw_response *r, const char *name)
{
    return raw_head_field(&r->head, name);
}

/* Notes why a read failed, from fill()'s result. */
static int read_failed(struct raw_conn *c, struct raw_response *r, ssize_t got, const char *what)
{
    r->peer_closed = c->eof;
    if (got == -2) {
        r->timed_out = true;
        snprintf(r->error, sizeof(r->error), "timeout waiting for %s", what);
    } else if (got == 0) {
        snprintf(r->error, sizeof(r->error), "connection closed by peer before %s", what);
    } else {
        snprintf(r->error, sizeof(r->error), "read error before %s: %s", what,
                 strerror(c->last_errno));
    }
    return -1;
}

/* Reads one head (interim or final) into h. */
static int read_one_head(struct raw_conn *c, struct raw_response *r, struct raw_head *h,
                         int64_t deadline)
{
    memset(h, 0, sizeof(*h));
    for (;;) {
        char *end = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;

        if (end != NULL) {
            size_t n = (size_t)(end - c->buf) + 4;

            if (parse_head(c->buf, n, h) < 0) {
                snprintf(r->error, sizeof(r->error), "not an HTTP/1.x response head: %.60s",
                         h->text != NULL ? h->text : "");
                consume(c, n);
                return -1;
            }
            /* Greedy parsing: the last recv() is the one that completed this head. */
            h->at_ms = c->last_recv_ms;
            consume(c, n);
            return 0;
        }
        if (c->len > RAW_MAX_HEAD) {
            snprintf(r->error, sizeof(r->error), "response head larger than %d bytes",
                     RAW_MAX_HEAD);
            return -1;
        }
        bool was_empty = c->len == 0;
        ssize_t got = fill(c, deadline);

        if (got <= 0) {
            if (c->len > 0 && got == 0) {
                snprintf(r->error, sizeof(r->error),
                         "connection closed inside a response head (%zu bytes: %.40s)", c->len,
                         c->buf);
                r->peer_closed = true;
                return -1;
            }
            return read_failed(c, r, got, "a response head");
        }
        if (was_empty && r->first_byte_ms == 0) {
            r->first_byte_ms = c->last_recv_ms;
        }
    }
}

/* Waits until the buffer holds a CRLF-terminated line; returns its length with the CRLF. */
static ssize_t need_line(struct raw_conn *c, int64_t deadline, ssize_t *got)
{
    for (;;) {
        char *eol = c->len >= 2 ? memmem(c->buf, c->len, "\r\n", 2) : NULL;

        if (eol != NULL) {
            return (eol - c->buf) + 2;
        }
        *got = fill(c, deadline);
        if (*got <= 0) {
            return -1;
        }
    }
}

static int read_chunked(struct raw_conn *c, struct raw_response *r, int64_t deadline)
{
    size_t cap = 0;
    ssize_t got = 0;

    for (;;) {
        ssize_t line = need_line(c, deadline, &got);

        if (line < 0) {
            r->truncated = true;
            return read_failed(c, r, got, "the next chunk size");
        }
        char *endp;
        unsigned long long size = strtoull(c->buf, &endp, 16);

        if (endp == c->buf) {
            snprintf(r->error, sizeof(r->error), "bad chunk size line: %.40s", c->buf);
            r->truncated = true;
            return -1;
        }
        consume(c, (size_t)line);
        if (size == 0) {
            break;
        }
        while (c->len < size + 2) {
            got = fill(c, deadline);
            if (got <= 0) {
                size_t have = c->len < size ? c->len : (size_t)size;

                body_append(r, &cap, c->buf, have);
                consume(c, have);
                r->truncated = true;
                return read_failed(c, r, got, "the end of a chunk");
            }
        }
        if (body_append(r, &cap, c->buf, (size_t)size) < 0) {
            return -1;
        }
        if (memcmp(c->buf + size, "\r\n", 2) != 0) {
            snprintf(r->error, sizeof(r->error), "chunk data not followed by CRLF");
            r->truncated = true;
            return -1;
        }
        consume(c, (size_t)size + 2);
    }
    /* Trailer section up to the empty line. */
    size_t tlen = 0;

    for (;;) {
        ssize_t line = need_line(c, deadline, &got);

        if (line < 0) {
            r->truncated = true;
            return read_failed(c, r, got, "the end of the chunked trailer");
        }
        if (line == 2) {
            consume(c, 2);
            return 0;
        }
        char *nt = realloc(r->trailers, tlen + (size_t)line + 1);

        if (nt == NULL) {
            return -1;
        }
        r->trailers = nt;
        memcpy(r->trailers + tlen, c->buf, (size_t)line);
        tlen += (size_t)line;
        r->trailers[tlen] = '\0';
        consume(c, (size_t)line);
    }
}

static int read_response(struct raw_conn *c, struct raw_response *r, bool head_request,
                         int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    size_t cap = 0;

    memset(r, 0, sizeof(*r));
    r->body = calloc(1, 1);
    if (r->body == NULL) {
        return -1;
    }
    if (c->len > 0) {
        r->first_byte_ms = c->last_recv_ms;
    }
    for (;;) {
        struct raw_head h;

        if (read_one_head(c, r, &h, deadline) < 0) {
            raw_head_free(&h);
            return -1;
        }
        if (h.status >= 200 || h.status == 101) {
            r->head = h;
            r->status = h.status;
            break;
        }
        if (r->ninterim < RAW_MAX_INTERIM) {
            r->interim[r->ninterim] = h;
        } else {
            raw_head_free(&h);
        }
        r->ninterim++;
    }
    const char *te = raw_header(r, "Transfer-Encoding");
    const char *cl = raw_header(r, "Content-Length");

    if (head_request || r->status < 200 || r->status == 204 || r->status == 304) {
        r->framing = RAW_NO_BODY;
    } else if (te != NULL && strlen(te) >= 7
               && strcasecmp(te + strlen(te) - 7, "chunked") == 0) {
        r->framing = RAW_CHUNKED;
    } else if (cl != NULL) {
        r->framing = RAW_LENGTH;
    } else {
        r->framing = RAW_UNTIL_CLOSE;
    }
    switch (r->framing) {
    case RAW_NO_BODY:
        break;
    case RAW_CHUNKED:
        if (read_chunked(c, r, deadline) < 0) {
            return -1;
        }
        break;
    case RAW_LENGTH: {
        unsigned long long want = strtoull(cl, NULL, 10);

        while (r->body_len < want) {
            if (c->len == 0) {
                ssize_t got = fill(c, deadline);

                if (got <= 0) {
                    r->truncated = true;
                    read_failed(c, r, got, "the end of the body");
                    snprintf(r->error + strlen(r->error), sizeof(r->error) - strlen(r->error),
                             " (%zu of %llu bytes)", r->body_len, want);
                    return -1;
                }
            }
            size_t n = c->len < want - r->body_len ? c->len : (size_t)(want - r->body_len);

            if (body_append(r, &cap, c->buf, n) < 0) {
                return -1;
            }
            consume(c, n);
        }
        break;
    }
    case RAW_UNTIL_CLOSE:
        for (;;) {
            if (c->len > 0) {
                if (body_append(r, &cap, c->buf, c->len) < 0) {
                    return -1;
                }
                consume(c, c->len);
            }
            ssize_t got = fill(c, deadline);

            if (got == 0) {
                break;
            }
            if (got < 0) {
                r->truncated = got == -1;
                return read_failed(c, r, got, "the close that ends the body");
            }
        }
        break;
    }
    r->peer_closed = c->eof;
    return 0;
}

int raw_read_one_head(struct raw_conn *c, struct raw_head *h, int timeout_ms)
{
    struct raw_response scratch = { 0 };

    if (read_one_head(c, &scratch, h, tu_now_ms() + timeout_ms) < 0) {
        raw_head_free(h);
        return -1;
    }
    return 0;
}

int raw_read_response(struct raw_conn *c, struct raw_response *r, int timeout_ms)
{
    return read_response(c, r, false, timeout_ms);
}

int raw_read_head_response(struct raw_conn *c, struct raw_response *r, int timeout_ms)
{
    return read_response(c, r, true, timeout_ms);
}

void raw_response_free(struct raw_response *r)
{
    size_t kept = r->ninterim < RAW_MAX_INTERIM ? r->ninterim : RAW_MAX_INTERIM;

    for (size_t i = 0; i < kept; i++) {
        raw_head_free(&r->interim[i]);
    }
    raw_head_free(&r->head);
    free(r->body);
    free(r->trailers);
    memset(r, 0, sizeof(*r));
}

char *raw_read_all(struct raw_conn *c, int timeout_ms, size_t *len)
{
    int64_t deadline = tu_now_ms() + timeout_ms;

    while (fill(c, deadline) > 0) {
    }
    char *out = malloc(c->len + 1);

    if (out == NULL) {
        return NULL;
    }
    memcpy(out, c->buf != NULL ? c->buf : "", c->len);
    out[c->len] = '\0';
    if (len != NULL) {
        *len = c->len;
    }
    c->len = 0;
    return out;
}

int raw_wait_closed(struct raw_conn *c, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;

    for (;;) {
        ssize_t got = fill(c, deadline);

        if (got == 0 || got == -1) {
            return 1;
        }
        if (got == -2) {
            return 0;
        }
    }
}

bool raw_peer_closed(const struct raw_conn *c)
{
    return c->eof;
}

int raw_last_errno(const struct raw_conn *c)
{
    return c->last_errno;
}

int raw_fd(const struct raw_conn *c)
{
    return c->fd;
}

static void conn_free(struct raw_conn *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    free(c->buf);
    free(c);
}

void raw_close(struct raw_conn *c)
{
    if (c == NULL) {
        return;
    }
    if (c->ssl != NULL && !c->eof) {
        SSL_shutdown(c->ssl); /* one try at a close_notify; the FIN follows anyway */
    }
    close(c->fd);
    conn_free(c);
}

void raw_abort(struct raw_conn *c)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    if (c == NULL) {
        return;
    }
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c->fd);
    conn_free(c);
}
