/*
 * websocket.c — RFC 6455 echo origin and client for tests. See websocket.h.
 *
 * Sockets are non-blocking; every read and write waits in poll() on the socket and, for the
 * origin, on its stop pipe (closing the write end wakes every thread), with a deadline.
 */
#include "websocket.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 1.3 */
#define WS_MAX_HEAD 16384
#define WS_ORIGIN_WAIT_MS 60000 /* an origin connection idle this long is given up */

/* ---- buffers, frames ---- */

struct ws_buf {
    unsigned char *p;
    size_t len;
    size_t cap;
};

static int buf_add(struct ws_buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static void buf_consume(struct ws_buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

void ws_frame_free(struct ws_frame *f)
{
    free(f->data);
    memset(f, 0, sizeof(*f));
}

void ws_accept_value(const char *key, char out[29])
{
    char text[128];
    unsigned char digest[SHA_DIGEST_LENGTH];
    snprintf(text, sizeof(text), "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)text, strlen(text), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH); /* 28 chars + NUL */
}

/* One frame from the front of b into *f, consumed from b. 1 done, 0 need more, -1 invalid. */
static int parse_frame(struct ws_buf *b, struct ws_frame *f)
{
    const unsigned char *p = b->p;
    if (b->len < 2)
        return 0;
    size_t at = 2;
    uint64_t len = p[1] & 0x7f;
    if (len == 126) {
        if (b->len < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        at = 4;
    } else if (len == 127) {
        if (b->len < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        at = 10;
    }
    if (len > WS_MAX_PAYLOAD)
        return -1;
    bool masked = p[1] & 0x80;
    size_t key_at = at;
    at += masked ? 4 : 0;
    if (b->len < at + len)
        return 0;
    *f = (struct ws_frame){.opcode = (enum ws_opcode)(p[0] & 0x0f), .fin = p[0] & 0x80,
                           .masked = masked, .len = (size_t)len};
    if (len) {
        f->data = malloc((size_t)len);
        if (!f->data)
            return -1;
        for (size_t i = 0; i < len; i++)
            f->data[i] = p[at + i] ^ (masked ? p[key_at + i % 4] : 0);
    }
    buf_consume(b, at + (size_t)len);
    return 1;
}

/* The wire form of a frame into b; masked with a random key when mask is set. */
static int encode_frame(struct ws_buf *b, enum ws_opcode op, bool mask, const void *data,
                        size_t len)
{
    unsigned char h[14];
    size_t n = 0;
    h[n++] = (unsigned char)(0x80 | op);
    unsigned char m = mask ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (unsigned char)(m | len);
    } else if (len <= 0xffff) {
        h[n++] = m | 126;
        h[n++] = (unsigned char)(len >> 8);
        h[n++] = (unsigned char)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    unsigned char key[4] = {0};
    if (mask) {
        if (RAND_bytes(key, 4) != 1)
            return -1;
        memcpy(h + n, key, 4);
        n += 4;
    }
    size_t start = b->len;
    if (buf_add(b, h, n) != 0 || (len && buf_add(b, data, len) != 0))
        return -1;
    for (size_t i = 0; mask && i < len; i++)
        b->p[start + n + i] ^= key[i % 4];
    return 0;
}

/* ---- waiting I/O ---- */

/* Waits for events on fd, or for stop_fd (-1: none) to turn readable. 1 ready, -1 otherwise. */
static int wait_fd(int fd, short events, int stop_fd, int64_t deadline)
{
    for (;;) {
        struct pollfd pf[2] = {{.fd = fd, .events = events}, {.fd = stop_fd, .events = POLLIN}};
        int n = poll(pf, stop_fd >= 0 ? 2 : 1, tu_ms_left(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (stop_fd >= 0 && pf[1].revents))
            return -1;
        return 1;
    }
}

/* Reads what fd has into b. 1 bytes came, 0 EOF, -1 error (a reset), -2 timeout or stop. */
static int fill(int fd, int stop_fd, struct ws_buf *b, int64_t deadline)
{
    unsigned char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n > 0)
            return buf_add(b, chunk, (size_t)n) == 0 ? 1 : -1;
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (wait_fd(fd, POLLIN, stop_fd, deadline) < 0)
            return -2;
    }
}

static int write_all(int fd, int stop_fd, const unsigned char *p, size_t len, int64_t deadline)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if ((n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
            wait_fd(fd, POLLOUT, stop_fd, deadline) < 0)
            return -1;
    }
    return 0;
}

/* Reads until b holds a whole head; its length (blank line included), or -1. */
static long read_head(int fd, int stop_fd, struct ws_buf *b, int64_t deadline)
{
    for (;;) {
        for (size_t i = 3; i < b->len; i++)
            if (memcmp(b->p + i - 3, "\r\n\r\n", 4) == 0)
                return (long)(i + 1);
        if (b->len > WS_MAX_HEAD || fill(fd, stop_fd, b, deadline) <= 0)
            return -1;
    }
}

/* The trimmed value of header field name in a NUL-terminated head, into out ("" if absent). */
static void head_field(const char *head, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    out[0] = '\0';
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        const char *f = l + 2;
        if (strncasecmp(f, name, nlen) != 0 || f[nlen] != ':')
            continue;
        const char *v = f + nlen + 1, *end = strstr(v, "\r\n");
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = (size_t)(end - v);
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        snprintf(out, size, "%.*s", (int)n, v);
        return;
    }
}

static void set_nonblocking(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- the origin ---- */

struct ws_conn {
    struct ws_origin *o;
    int fd;
    pthread_t thread;
    struct ws_conn *next;
};

struct ws_origin {
    int listen_fd;
    uint16_t port;
    int stop_pipe[2];
    pthread_t acceptor;
    struct ws_conn *conns;             /* the acceptor's, then stop's after joining it */
    pthread_mutex_t lock;              /* guards what follows */
    unsigned handshakes, frames, closes;
    char *last_head;
};

static void count(struct ws_origin *o, unsigned *what)
{
    pthread_mutex_lock(&o->lock);
    (*what)++;
    pthread_mutex_unlock(&o->lock);
}

/* The server side of the opening handshake; 0 when it switched, -1 when it refused. */
static int origin_handshake(struct ws_conn *c, struct ws_buf *in)
{
    struct ws_origin *o = c->o;
    int64_t deadline = tu_now_ms() + WS_ORIGIN_WAIT_MS;
    long hlen = read_head(c->fd, o->stop_pipe[0], in, deadline);
    if (hlen < 0)
        return -1;
    char *head = malloc((size_t)hlen + 1);
    if (!head)
        return -1;
    memcpy(head, in->p, (size_t)hlen);
    head[hlen] = '\0';
    buf_consume(in, (size_t)hlen);
    char upgrade[64], key[64], accept[29], reply[256];
    head_field(head, "Upgrade", upgrade, sizeof(upgrade));
    head_field(head, "Sec-WebSocket-Key", key, sizeof(key));
    pthread_mutex_lock(&o->lock);
    free(o->last_head);
    o->last_head = head;
    pthread_mutex_unlock(&o->lock);
    if (strcasecmp(upgrade, "websocket") != 0 || !key[0]) {
        static const char no[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 "Connection: close\r\n\r\n";
        write_all(c->fd, o->stop_pipe[0], (const unsigned char *)no, sizeof(no) - 1, deadline);
        return -1;
    }
    ws_accept_value(key, accept);
    int n = snprintf(reply, sizeof(reply),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    if (write_all(c->fd, o->stop_pipe[0], (const unsigned char *)reply, (size_t)n, deadline) != 0)
        return -1;
    count(o, &o->handshakes);
    return 0;
}

/* Echoes frames until a close, an EOF, an error or the stop. */
static void origin_echo(struct ws_conn *c, struct ws_buf *in)
{
    struct ws_origin *o = c->o;
    struct ws_buf out = {0};
    for (;;) {
        struct ws_frame f;
        int rc = parse_frame(in, &f);
        int64_t deadline = tu_now_ms() + WS_ORIGIN_WAIT_MS;
        if (rc < 0)
            break;
        if (rc == 0) {
            if (fill(c->fd, o->stop_pipe[0], in, deadline) <= 0)
                break;
            continue;
        }
        out.len = 0;
        bool close = f.opcode == WS_CLOSE;
        if (!f.masked) { /* a client's frames must be masked: close 1002 (protocol error) */
            encode_frame(&out, WS_CLOSE, false, "\x03\xea", 2);
            close = true;
        } else if (f.opcode == WS_PING) {
            encode_frame(&out, WS_PONG, false, f.data, f.len);
        } else {
            encode_frame(&out, f.opcode, false, f.data, f.len); /* the close frame goes back */
            if (f.opcode != WS_PONG)
                count(o, close ? &o->closes : &o->frames);
        }
        ws_frame_free(&f);
        if (write_all(c->fd, o->stop_pipe[0], out.p, out.len, deadline) != 0 || close)
            break;
    }
    free(out.p);
}

static void *conn_main(void *arg)
{
    struct ws_conn *c = arg;
    struct ws_buf in = {0};
    if (origin_handshake(c, &in) == 0)
        origin_echo(c, &in);
    free(in.p);
    shutdown(c->fd, SHUT_WR);
    return NULL;
}

static void *acceptor_main(void *arg)
{
    struct ws_origin *o = arg;
    for (;;) {
        if (wait_fd(o->listen_fd, POLLIN, o->stop_pipe[0], tu_now_ms() + 3600000) < 0)
            return NULL;
        int fd = accept(o->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        struct ws_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        set_nonblocking(fd);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        *c = (struct ws_conn){.o = o, .fd = fd, .next = o->conns};
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        o->conns = c;
    }
}

struct ws_origin *ws_origin_start(void)
{
    struct ws_origin *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    pthread_mutex_init(&o->lock, NULL);
    o->stop_pipe[0] = o->stop_pipe[1] = -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    o->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (o->listen_fd < 0 || bind(o->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(o->listen_fd, 128) != 0 ||
        getsockname(o->listen_fd, (struct sockaddr *)&sa, &salen) != 0 ||
        pipe2(o->stop_pipe, O_CLOEXEC) != 0) {
        fprintf(stderr, "ws_origin_start: %s\n", strerror(errno));
        goto fail;
    }
    o->port = ntohs(sa.sin_port);
    set_nonblocking(o->listen_fd);
    if (pthread_create(&o->acceptor, NULL, acceptor_main, o) != 0)
        goto fail;
    return o;
fail:
    if (o->listen_fd >= 0)
        close(o->listen_fd);
    if (o->stop_pipe[0] >= 0) {
        close(o->stop_pipe[0]);
        close(o->stop_pipe[1]);
    }
    pthread_mutex_destroy(&o->lock);
    free(o);
    return NULL;
}

uint16_t ws_origin_port(const struct ws_origin *o)
{
    return o->port;
}

static unsigned read_count(struct ws_origin *o, const unsigned *what)
{
    pthread_mutex_lock(&o->lock);
    unsigned n = *what;
    pthread_mutex_unlock(&o->lock);
    return n;
}

unsigned ws_origin_handshakes(struct ws_origin *o)
{
    return read_count(o, &o->handshakes);
}

unsigned ws_origin_frames(struct ws_origin *o)
{
    return read_count(o, &o->frames);
}

unsigned ws_origin_closes(struct ws_origin *o)
{
    return read_count(o, &o->closes);
}

char *ws_origin_request_head(struct ws_origin *o)
{
    pthread_mutex_lock(&o->lock);
    char *h = o->last_head ? strdup(o->last_head) : NULL;
    pthread_mutex_unlock(&o->lock);
    return h;
}

void ws_origin_stop(struct ws_origin *o)
{
    if (!o)
        return;
    close(o->stop_pipe[1]); /* wakes every poll */
    pthread_join(o->acceptor, NULL);
    for (struct ws_conn *c = o->conns, *next; c; c = next) {
        next = c->next;
        pthread_join(c->thread, NULL);
        close(c->fd);
        free(c);
    }
    close(o->stop_pipe[0]);
    close(o->listen_fd);
    free(o->last_head);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

/* ---- the client ---- */

struct ws_client {
    int fd;
    struct ws_buf in;
    char key[32];                      /* Sec-WebSocket-Key sent */
};

struct ws_client *ws_client_connect(uint16_t port, int timeout_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return NULL;
    int64_t deadline = tu_now_ms() + timeout_ms;
    int err = 0;
    socklen_t len = sizeof(err);
    if ((connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
         (errno != EINPROGRESS || wait_fd(fd, POLLOUT, -1, deadline) < 0 ||
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0))) {
        close(fd);
        return NULL;
    }
    struct ws_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

int ws_client_handshake(struct ws_client *c, const char *path, char **head, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof(raw)); /* 24 chars */
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path, c->key);
    *head = NULL;
    if (write_all(c->fd, -1, (const unsigned char *)req, (size_t)n, deadline) != 0)
        return -1;
    long hlen = read_head(c->fd, -1, &c->in, deadline);
    if (hlen < 0 || (*head = malloc((size_t)hlen + 1)) == NULL)
        return -1;
    memcpy(*head, c->in.p, (size_t)hlen);
    (*head)[hlen] = '\0';
    buf_consume(&c->in, (size_t)hlen);
    int status;
    return sscanf(*head, "HTTP/1.%*d %d", &status) == 1 ? status : -1;
}

bool ws_client_accept_ok(const struct ws_client *c, const char *head)
{
    char got[64], want[29];
    head_field(head, "Sec-WebSocket-Accept", got, sizeof(got));
    ws_accept_value(c->key, want);
    return strcmp(got, want) == 0;
}

int ws_client_send(struct ws_client *c, enum ws_opcode op, const void *data, size_t len,
                   int timeout_ms)
{
    struct ws_buf out = {0};
    int rc = encode_frame(&out, op, true, data, len) == 0
                 ? write_all(c->fd, -1, out.p, out.len, tu_now_ms() + timeout_ms)
                 : -1;
    free(out.p);
    return rc;
}

int ws_client_recv(struct ws_client *c, struct ws_frame *f, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    for (;;) {
        int rc = parse_frame(&c->in, f);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
        rc = fill(c->fd, -1, &c->in, deadline);
        if (rc <= 0)
            return rc == -2 ? -1 : 1; /* timeout; EOF or reset */
    }
}

int ws_client_wait_closed(struct ws_client *c, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    for (;;) {
        int rc = fill(c->fd, -1, &c->in, deadline);
        if (rc == 0 || rc == -1)
            return 1; /* EOF, or a reset */
        if (rc == -2)
            return 0;
    }
}

int ws_client_fd(const struct ws_client *c)
{
    return c->fd;
}

void ws_client_close(struct ws_client *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->in.p);
    free(c);
}
