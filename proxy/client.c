/*
 * client.c — downstream connections. See client.h.
 *
 * States: HANDSHAKE (TLS) → IDLE (keep-alive wait) → HEAD (bytes of a head arrived) →
 * EXCHANGE (an exchange owns the traffic) → IDLE ... → CLOSING (flushing the last response) →
 * LINGER (write side shut, reading and discarding until EOF so that unread request bytes do not
 * turn our close into a reset that destroys the response in flight). One timer follows the
 * state; the bufferevent's write timeout is client_send_timeout throughout.
 */
#include "portico/client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "portico/admin.h"
#include "portico/config.h"
#include "portico/errpage.h"
#include "portico/exchange.h"
#include "portico/http1.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/sockio.h"
#include "portico/util.h"
#include "portico/worker.h"

#define LINGER_MS 2000
#define DISCARD_READ (256 * 1024) /* one read while discarding what a closing client sends */
#define READ_HIGH (256 * 1024)

#define CLIENT_STATE_LIST(X)                                                                       \
    X(CS_HANDSHAKE, "handshake")                                                                   \
    X(CS_IDLE, "idle")                                                                             \
    X(CS_HEAD, "head")                                                                             \
    X(CS_EXCHANGE, "exchange")                                                                     \
    X(CS_CLOSING, "closing")                                                                       \
    X(CS_LINGER, "linger")

enum client_state {
#define X(id, name) id,
    CLIENT_STATE_LIST(X)
#undef X
};

struct client {
    TAILQ_ENTRY(client) link;          /* worker's list */
    struct worker *w;                  /* borrowed */
    struct bufferevent *bev;
    SSL *ssl;                          /* owned by bev; NULL for plain connections */
    enum client_state state;
    struct exchange *ex;               /* owned while in CS_EXCHANGE */
    struct event timer;                /* deadline of the current state */
    struct event resume_ev;            /* parses the next pipelined request from the loop */
    char peer[64];                     /* "127.0.0.1:50312" */
    char ip[64];                       /* "127.0.0.1" */
    unsigned requests;                 /* requests started on this connection */
    bool admin;                        /* accepted on admin_listen */
    uint64_t head_start_us;            /* first byte of the current request head */
    size_t head_scanned;               /* bytes of the pending head already parsed without
                                          success: re-parse only when a new line arrives */
};

static void read_cb(struct bufferevent *bev, void *arg);

static void arm_ms(struct client *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&c->timer, &tv);
}

/* The single setter: every state has its deadline. */
static void set_state(struct client *c, enum client_state s)
{
    const struct config *cfg = c->w->cfg;
    c->state = s;
    event_del(&c->timer);
    switch (s) {
    case CS_HANDSHAKE:
    case CS_HEAD:
        arm_ms(c, cfg->client_header_timeout_ms);
        break;
    case CS_IDLE:
        arm_ms(c, c->requests ? cfg->keepalive_timeout_ms : cfg->client_header_timeout_ms);
        break;
    case CS_EXCHANGE:
        break;
    case CS_CLOSING:
        arm_ms(c, cfg->client_send_timeout_ms);
        break;
    case CS_LINGER:
        arm_ms(c, LINGER_MS);
        break;
    }
}

void client_set_admin(struct client *c)
{
    c->admin = true;
}

struct bufferevent *client_bev(struct client *c)
{
    return c->bev;
}

const char *client_peer(const struct client *c)
{
    return c->peer;
}

const char *client_ip(const struct client *c)
{
    return c->ip;
}

bool client_is_tls(const struct client *c)
{
    return c->ssl != NULL;
}

void client_free(struct client *c)
{
    if (c->ex) {
        exchange_free(c->ex);
        c->ex = NULL;
    }
    event_del(&c->timer);
    event_del(&c->resume_ev);
    if (c->ssl)
        SSL_set_shutdown(c->ssl, SSL_RECEIVED_SHUTDOWN | SSL_SENT_SHUTDOWN);
    bufferevent_free(c->bev);
    TAILQ_REMOVE(&c->w->clients, c, link);
    atomic_fetch_sub_explicit(&c->w->metrics->active_connections, 1, memory_order_relaxed);
    struct worker *w = c->w;
    free(c);
    worker_client_gone(w);
}

void clients_drain(struct worker *w)
{
    struct client *c, *next;
    for (c = TAILQ_FIRST(&w->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        /* Idle keep-alive connections go. A connection that has not sent its first request yet
         * (just accepted, or still in its TLS handshake) gets to send it: it was accepted to
         * be served. HEAD and EXCHANGE finish their request (client_exchange_done sees
         * w->draining); CLOSING and LINGER end by themselves. */
        if (c->state == CS_IDLE && c->requests > 0)
            client_free(c);
    }
}

static void linger(struct client *c)
{
    /* Close our side only, then read and discard until the client closes: a close() with
     * unread request bytes would send a reset that can destroy the response in flight. Over
     * TLS a close_notify goes first. */
    if (c->ssl)
        SSL_shutdown(c->ssl);
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev), SIZE_MAX);
    bufferevent_enable(c->bev, EV_READ);
    set_state(c, CS_LINGER);
}

/* Flush what is queued, then close. */
static void start_closing(struct client *c)
{
    set_state(c, CS_CLOSING);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        linger(c);
}

/* A request refused before an exchange exists (malformed head, 408). */
static void head_error(struct client *c, int status, const char *reason)
{
    char id[48];
    worker_request_id(c->w, id, sizeof(id));
    struct errpage e = {
        .status = status,
        .failure = FAIL_NONE,
        .reason = reason,
        .request_id = id,
        .close = true,
    };
    errpage_write(bufferevent_get_output(c->bev), &e);
    metrics_response(c->w->metrics, status, FAIL_NONE);
    if (log_enabled()) {
        struct access_record r = {
            .request_id = id,
            .client = c->peer,
            .minor = 1,
            .status = status,
            .duration_ms = c->head_start_us ? (double)(now_us() - c->head_start_us) / 1000.0 : 0,
            .detail = reason,
        };
        log_access(&r);
    }
    start_closing(c);
}

static void parse_head(struct client *c)
{
    const struct config *cfg = c->w->cfg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (c->state == CS_IDLE) {
        c->head_start_us = now_us();
        set_state(c, CS_HEAD);
    }
    size_t n = MIN(len, (size_t)cfg->max_header_size);
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
    /* A head trickling in byte by byte must not cost a full parse per byte: nothing can change
     * until a line ends, or the limit is reached. */
    if (c->head_scanned && n < cfg->max_header_size && n > c->head_scanned &&
        !memchr(p + c->head_scanned, '\n', n - c->head_scanned)) {
        c->head_scanned = n;
        return;
    }
    struct h1_limits lim = {.max_request_line = cfg->max_request_line,
                            .max_head = cfg->max_header_size};
    struct h1_request req;
    struct h1_error err;
    int rc = h1_parse_request(p, n, &lim, &req, &err);
    if (rc == -2) {
        c->head_scanned = n;
        return;
    }
    c->head_scanned = 0;
    if (rc < 0) {
        head_error(c, err.status, err.reason);
        return;
    }
    if (c->admin) {
        struct h1_info info;
        if (h1_request_info(&req, &info, &err) != 0) {
            head_error(c, err.status, err.reason);
            return;
        }
        /* No admin endpoint takes a body: rather than read one, answer and close. */
        bool has_body = info.framing == H1_BODY_CHUNKED ||
                        (info.framing == H1_BODY_LENGTH && info.content_length > 0);
        bool close = !info.keep_alive || has_body || c->w->draining;
        c->requests++;
        int status = admin_respond(bufferevent_get_output(c->bev), &req, &close);
        evbuffer_drain(in, (size_t)rc);
        metrics_response(c->w->metrics, status, FAIL_NONE);
        c->head_start_us = 0;
        if (close) {
            start_closing(c);
            return;
        }
        set_state(c, CS_IDLE);
        if (evbuffer_get_length(in) > 0)
            event_active(&c->resume_ev, EV_TIMEOUT, 1);
        return;
    }
    struct exchange *ex = exchange_start(c->w, c, p, (size_t)rc, &req, c->head_start_us);
    if (!ex) {
        client_free(c);
        return;
    }
    c->ex = ex;
    c->requests++;
    set_state(c, CS_EXCHANGE);
    evbuffer_drain(in, (size_t)rc);
    exchange_run(ex); /* may end the exchange (and call client_exchange_done) before returning */
}

void client_exchange_done(struct client *c, bool keep_alive)
{
    keep_alive = keep_alive && !c->w->draining;
    exchange_free(c->ex);
    c->ex = NULL;
    struct timeval wtv = {(time_t)(c->w->cfg->client_send_timeout_ms / 1000),
                          (suseconds_t)(c->w->cfg->client_send_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
    if (!keep_alive) {
        start_closing(c);
        return;
    }
    c->head_start_us = 0;
    set_state(c, CS_IDLE);
    /* A pipelined request may already be buffered: parse it from the loop, not from inside
     * the callback chain that just finished this exchange. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        event_active(&c->resume_ev, EV_TIMEOUT, 1);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct client *c = arg;
    if (c->state == CS_IDLE || c->state == CS_HEAD)
        parse_head(c);
}

/* What a closing client still sends is read and dropped: on a plain socket in 256 KiB reads
 * (up to 1 MiB per turn) rather than libevent's 4 KiB, so a large unread body after an early
 * answer costs a few syscalls per MiB, not five hundred. */
static void discard_input(struct client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, SIZE_MAX);
    for (int i = 0; !c->ssl && i < 4 && sockio_fill(c->bev, DISCARD_READ) > 0; i++)
        evbuffer_drain(in, SIZE_MAX);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct client *c = arg;
    switch (c->state) {
    case CS_IDLE:
    case CS_HEAD:
        parse_head(c);
        break;
    case CS_EXCHANGE:
        exchange_client_read(c->ex);
        break;
    case CS_CLOSING:
    case CS_LINGER:
        discard_input(c);
        break;
    case CS_HANDSHAKE:
        break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct client *c = arg;
    if (c->state == CS_EXCHANGE)
        exchange_client_write(c->ex);
    else if (c->state == CS_CLOSING)
        linger(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (what & BEV_EVENT_CONNECTED) { /* TLS handshake done */
        set_state(c, CS_IDLE);
        return;
    }
    if (c->state == CS_HANDSHAKE) {
        char buf[160] = "connection closed";
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e)
            ERR_error_string_n(e, buf, sizeof(buf));
        log_error("client %s: TLS handshake failed: %s", c->peer, buf);
        metrics_add(c->w->metrics, M_TLS_HANDSHAKE_FAILURES, 1);
        client_free(c);
        return;
    }
    if (c->state == CS_EXCHANGE && (what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
        exchange_client_body_timeout(c->ex); /* answers 408 and hands the connection back */
        return;
    }
    if (c->state == CS_EXCHANGE)
        exchange_client_gone(c->ex, what & BEV_EVENT_TIMEOUT ? "stopped reading"
                                    : what & BEV_EVENT_EOF ? "closed the connection"
                                                           : "connection failed");
    client_free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct client *c = arg;
    switch (c->state) {
    case CS_HANDSHAKE:
        log_error("client %s: TLS handshake not done within client_header_timeout", c->peer);
        metrics_add(c->w->metrics, M_TLS_HANDSHAKE_FAILURES, 1);
        client_free(c);
        break;
    case CS_IDLE:
        if (c->requests == 0) { /* a new connection that never sent a request */
            head_error(c, 408, "no request within client_header_timeout");
            break;
        }
        client_free(c); /* idle keep-alive connection: close quietly */
        break;
    case CS_HEAD:
        head_error(c, 408, "request head not complete within client_header_timeout");
        break;
    case CS_EXCHANGE:
        break;
    case CS_CLOSING:
    case CS_LINGER:
        client_free(c);
        break;
    }
}

struct client *client_new(struct worker *w, int fd, const struct sockaddr *sa, int salen,
                          bool tls)
{
    (void)salen;
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->w = w;
    sockaddr_str(sa, c->peer, sizeof(c->peer));
    snprintf(c->ip, sizeof(c->ip), "%s", c->peer);
    char *colon = strrchr(c->ip, ':');
    if (colon)
        *colon = '\0';
    if (c->ip[0] == '[') { /* "[::1]" → "::1" */
        memmove(c->ip, c->ip + 1, strlen(c->ip));
        c->ip[strlen(c->ip) - 1] = '\0';
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls) {
        c->ssl = SSL_new(w->cfg->server_ssl_ctx);
        if (c->ssl)
            c->bev = bufferevent_openssl_socket_new(w->base, fd, c->ssl,
                                                    BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE |
                                                        BEV_OPT_DEFER_CALLBACKS);
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        if (c->ssl)
            SSL_free(c->ssl);
        evutil_closesocket(fd);
        free(c);
        return NULL;
    }
    if (c->ssl)
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    TAILQ_INSERT_TAIL(&w->clients, c, link);
    atomic_fetch_add_explicit(&w->metrics->active_connections, 1, memory_order_relaxed);
    metrics_add(w->metrics, M_CONNECTIONS, 1);
    evtimer_assign(&c->timer, w->base, timer_cb, c);
    event_assign(&c->resume_ev, w->base, -1, 0, resume_cb, c);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, MAX(READ_HIGH, w->cfg->max_header_size + 1));
    bufferevent_set_max_single_write(c->bev, READ_HIGH);
    struct timeval wtv = {(time_t)(w->cfg->client_send_timeout_ms / 1000),
                          (suseconds_t)(w->cfg->client_send_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    set_state(c, tls ? CS_HANDSHAKE : CS_IDLE);
    return c;
}
