/*
 * client.c — HTTP/1.1 client connections, and the downstream interface for their exchanges.
 *
 * States: HANDSHAKE (TLS) → IDLE (keep-alive wait) → HEAD (bytes of a head arrived) →
 * EXCHANGE (an exchange owns the traffic) → IDLE ... → CLOSING (the last response still going
 * out; skipped when it left at once) → LINGER (write side shut, reading and discarding until
 * EOF so that unread request bytes do not turn our close into a reset that destroys the
 * response in flight), or QUIET_CLOSE when the client asked to close; or EXCHANGE → TUNNEL after
 * a 101 (tunnel.c owns the traffic until either side closes, then calls back); or, for a fault's
 * reset, EXCHANGE → RESETTING (nothing more is sent; closed with RST from the loop); or, after an
 * error answer sent before the request body was all in, EXCHANGE → DISCARD (the rest of the
 * body is read and dropped, within client_body_timeout) → IDLE; or, on the admin listener,
 * HEAD → STREAM (a page too large for one turn of the loop, admin.h, written a slice per turn
 * once the previous one went out) → IDLE or CLOSING. The state's
 * deadline is the sock's owner deadline (set_state is the only writer), on the sock's one timer
 * with its read and write deadlines: a connection has one timer. The sock's write deadline is
 * client_send_timeout throughout, its read deadline client_body_timeout while a request body is
 * owed.
 *
 * A client's FIN (over TLS a close_notify, or a bare FIN: both SOCK_EOF) ends the connection,
 * its exchange logged 499, unless client_half_close = answer and it came after a whole request:
 * then the connection is half-closed (half_closed), and what the client sent whole is answered,
 * in order, before it closes (half_close, half_closed_settle). Answers already made and still
 * going out go whole in either mode (finish_answers).
 *
 * Teardown is client_close, called from this file's own event handlers only, never from inside
 * the exchange: the exchange ends itself and calls done(), which only changes our state.
 */
#include "portico/client.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "portico/admin.h"
#include "portico/admin_faults.h"
#include "portico/admin_upstreams.h"
#include "portico/climit.h"
#include "portico/config.h"
#include "portico/downstream.h"
#include "portico/errpage.h"
#include "portico/exchange.h"
#include "portico/generation.h"
#include "portico/h1out.h"
#include "portico/h2.h"
#include "portico/headers.h"
#include "portico/http1.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/mtls.h"
#include "portico/realip.h"
#include "portico/recent.h"
#include "portico/request.h"
#include "portico/sni.h"
#include "portico/sock.h"
#include "portico/status.h"
#include "portico/tls.h"
#include "portico/trace.h"
#include "portico/tunnel.h"
#include "portico/upstream.h"
#include "portico/util.h"

#define LINGER_MS 2000
#define READ_HIGH (256 * 1024)   /* input held at most (pipelined requests, body ahead) */
#define OUTPUT_HIGH (256 * 1024) /* no next request is parsed while more waits to go out */
#define RESET_TICK_MS 10         /* a reset waiting for earlier answers to leave looks this often */
#define WATCH_LATER_MS 5         /* a request read whole at the accept: its client is watched
                                    (for a hang-up) only once its exchange ran this long
                                    (watch_later) */

#define CLIENT_STATE_LIST(X)                                                                       \
    X(CS_HANDSHAKE, "handshake")                                                                   \
    X(CS_IDLE, "idle")                                                                             \
    X(CS_HEAD, "head")                                                                             \
    X(CS_EXCHANGE, "exchange")                                                                     \
    X(CS_CLOSING, "closing")                                                                       \
    X(CS_LINGER, "linger")                                                                         \
    X(CS_QUIET_CLOSE, "quiet close") /* asked to close, all read: closed from the loop */       \
    X(CS_H2, "h2")                 /* ALPN h2 or h2c: h2.c has the sock's events */            \
    X(CS_TUNNEL, "tunnel")         /* after a 101: the tunnel owns the traffic until it ends */ \
    X(CS_RESETTING, "resetting")   /* a fault's reset: closed with RST from the loop */     \
    X(CS_DISCARD, "discard")       /* dropping the rest of an answered request's body */ \
    X(CS_STREAM, "stream")         /* writing the rest of an admin page (admin_stream) */

enum client_state {
#define X(id, name) id,
    CLIENT_STATE_LIST(X)
#undef X
};

static const char *const client_state_names[] = {
#define X(id, name) [id] = name,
    CLIENT_STATE_LIST(X)
#undef X
};

struct client {
    TAILQ_ENTRY(client) link;          /* the loop's list */
    TAILQ_ENTRY(client) idle_link;     /* the loop's idle list, while idle_listed() */
    struct loop *loop;                 /* borrowed */
    struct sock sock;
    enum client_state state;           /* changed by set_state only */
    enum client_kind kind;
    struct exchange *ex;               /* while in CS_EXCHANGE: ends itself, calls done() */
    struct h2_conn *h2;                /* while in CS_H2: HTTP/2 has the sock's events */
    struct tunnel *tunnel;             /* while in CS_TUNNEL: calls tunnel_closed() */
    struct peer peer;                  /* what the exchange may know of us */
    struct mtls_peer *mtls;            /* owned: the client certificate's word, once the
                                          handshake is done (NULL: none asked) */
    char ip[INET6_ADDRSTRLEN];         /* "127.0.0.1", "::1" */
    unsigned requests;                 /* requests started on this connection */
    uint64_t accepted_us;              /* its first head is due client_header_timeout after */
    unsigned char tls_head[TLS_RECORD_HEAD]; /* the first record header, until the handshake
                                                is done: plain HTTP or not (tls.h) */
    uint64_t head_start_us;            /* first byte of the current request head */
    size_t head_scanned;               /* bytes of the pending head already parsed without
                                          success: re-parse only when a new line arrives */
    size_t head_skipped;               /* empty lines before it, dropped as they came; they
                                          count against max_header_size */
    size_t admin_due;                  /* an admin request's head and body, in bytes, while its
                                          body comes in: its head is parsed once they are all in */
    enum proto proto;                  /* of the current request */
    bool close_after;                  /* the response in flight ends with the connection */
    bool close_delimited;              /* ... and its body ends with the close (HTTP/1.0) */
    bool pipelined;                    /* the next head was buffered when the last answer ended */
    bool closes_quietly;               /* the client asked to close: no lingering (linger()) */
    bool half_closed;                  /* its FIN came and was taken for a half-close: nothing
                                          more is read; what was read is answered (answer, after
                                          a whole request) or only the answers made go (abort,
                                          finish_answers); then it closes */
    bool watched_late;                 /* its exchange began unwatched (watch_later): a reset
                                          may be unseen as the answer goes (ds_sent_none) */
    uint64_t reset_from_us;            /* CS_RESETTING: since when (client_send_timeout) */
    uint64_t discard_left;             /* request body bytes to drop before the next request */
    uint64_t discard_owed;             /* ... as many as there were at the answer (CS_DISCARD) */
    bool body_timed_out;               /* its exchange was told of client_body_timeout: the rest
                                          its 408 closes on is counted timeout, not closed */
    struct climit_key climit_key;      /* its client in the generation's table ... */
    bool climit_counted;               /* ... counted there (max_connections_per_client) */
    struct admin_stream *stream;       /* CS_STREAM: the rest of the admin page */
    struct event *stream_next;         /* CS_STREAM: the next slice, on the loop's next turn */
    bool stream_close;                 /* CS_STREAM: the connection closes after the page */
};

static void client_cb(void *arg, enum sock_event ev);
static void state_expired(struct client *c);
static void start_closing(struct client *c);

/* What the connections gauge calls each state. */
static const enum conn_state gauge_state[] = {
    [CS_HANDSHAKE] = CONN_HANDSHAKE, [CS_IDLE] = CONN_IDLE,     [CS_HEAD] = CONN_ACTIVE,
    [CS_EXCHANGE] = CONN_ACTIVE,     [CS_CLOSING] = CONN_ACTIVE, [CS_LINGER] = CONN_ACTIVE,
    [CS_H2] = CONN_ACTIVE,           [CS_TUNNEL] = CONN_ACTIVE, [CS_RESETTING] = CONN_ACTIVE,
    [CS_QUIET_CLOSE] = CONN_ACTIVE, [CS_DISCARD] = CONN_ACTIVE, [CS_STREAM] = CONN_ACTIVE,
};

/* An HTTP/2 connection with no stream open: idle between requests, as a keep-alive one is. */
static bool h2_between_requests(const struct client *c)
{
    return c->state == CS_H2 && c->h2 && h2_idle(c->h2);
}

/* Where c stands in the gauge: by its state, or idle between HTTP/2 requests. */
static enum conn_state gauge_of(const struct client *c)
{
    return h2_between_requests(c) ? CONN_IDLE : gauge_state[c->state];
}

/* Moves c in the client connections gauge. The admin listener's connections are not client
 * traffic (issue 9): a scrape must not count itself, so they stay out of it. */
static void gauge_add(const struct client *c, enum conn_state s, int delta)
{
    if (c->kind != CLIENT_ADMIN)
        metrics_conn_add(c->loop->metrics, CONN_CLIENT, s, delta);
}

/* c's place in the gauge was `was`: it follows a change of state or of HTTP/2 idleness. */
static inline void gauge_move(const struct client *c, enum conn_state was)
{
    enum conn_state now = gauge_of(c);
    if (now != was) {
        gauge_add(c, was, -1);
        gauge_add(c, now, 1);
    }
}

/* Idle between requests: a drain closes it (clients_drain). Requests are counted only while a
 * head is read, never in CS_IDLE, so set_state sees every change of this; h2.c tells its own
 * (h2_idle_changed). */
static bool between_requests(const struct client *c)
{
    return (c->state == CS_IDLE && c->requests > 0) || h2_between_requests(c);
}

/* Between requests, so on the loop's idle list: it may give way to a new client at
 * max_connections. An admin connection never gives way: it takes no client's place, so none is
 * made for a client with it (a scraper's kept connection was closed under it). */
static bool idle_listed(const struct client *c)
{
    return c->kind != CLIENT_ADMIN && between_requests(c);
}

/* The connections max_connections bounds: the proxy listeners', the admin listener's aside. */
static unsigned proxy_conns(const struct loop *l)
{
    return l->conns - l->admin_conns;
}

/* Puts c on the idle list or takes it off, as idle_listed() changed from was_idle. */
static inline void relist(struct client *c, bool was_idle)
{
    bool idle = idle_listed(c);
    if (idle == was_idle)
        return;
    struct loop *l = c->loop;
    if (idle)
        TAILQ_INSERT_TAIL(&l->idle, c, idle_link);
    else
        TAILQ_REMOVE(&l->idle, c, idle_link);
    /* At max_connections, whether one may give way decides whether to accept (worker.c) */
    const struct config *cfg = l->cfg;
    if (l->on_conns && cfg->max_connections && proxy_conns(l) >= cfg->max_connections)
        l->on_conns(l);
}

/* The single setter: every state has its deadline, and its place in the gauge. */
static void set_state(struct client *c, enum client_state s)
{
    const struct config *cfg = c->loop->cfg;
    enum conn_state was_gauged = gauge_of(c);
    bool was_idle = idle_listed(c);
    c->state = s;
    gauge_move(c, was_gauged);
    relist(c, was_idle);
    int64_t ms = -1; /* none */
    uint64_t from = event_now_us();
    switch (s) {
    case CS_HANDSHAKE: /* entered at the accept, or after a PROXY header: due from the accept */
        ms = (int64_t)cfg->client_header_timeout_ms;
        from = c->accepted_us;
        break;
    case CS_HEAD:
        ms = (int64_t)cfg->client_header_timeout_ms;
        break;
    case CS_IDLE:
        /* Not idle while our last answer is still going out (client_send_timeout watches
         * that): the wait starts once it went (SOCK_DRAINED), else a slow reader is cut
         * mid-response and the rest of an answer logged as complete is lost. */
        if (sock_pending(&c->sock) == 0)
            ms = (int64_t)(c->requests ? cfg->keepalive_timeout_ms
                                       : cfg->client_header_timeout_ms);
        /* The first head is awaited from the accept: a TLS handshake is part of that wait,
         * not a prelude after which it starts again. */
        if (c->requests == 0)
            from = c->accepted_us;
        break;
    case CS_EXCHANGE: /* none; watch_later sets one */
    case CS_H2: /* h2.c keeps its own deadlines */
    case CS_TUNNEL: /* the tunnel keeps its own deadlines */
    case CS_STREAM: /* client_send_timeout, the sock's: a slice waits only for the client */
        break;
    case CS_CLOSING:
        ms = (int64_t)cfg->client_send_timeout_ms;
        break;
    case CS_LINGER:
        ms = LINGER_MS;
        break;
    case CS_DISCARD:
        ms = (int64_t)cfg->client_body_timeout_ms; /* the whole rest, not each byte */
        break;
    case CS_RESETTING:
        ms = 0; /* the reset comes from the loop, never from inside the exchange */
        break;
    case CS_QUIET_CLOSE: /* the close comes from the loop, never from inside the exchange */
        sock_owner_due_now(&c->sock);
        return;
    }
    /* Most requests move the deadline later (idle, head, idle again...): no timer operation. */
    sock_set_deadline(&c->sock, ms < 0 ? 0 : from + (uint64_t)ms * 1000);
}

static void count_left_in_head(struct client *c, const char *why);

/* The admin page being written (CS_STREAM) is over: written, cut short, or its client gone. */
static void stream_end(struct client *c)
{
    admin_stream_free(c->stream);
    c->stream = NULL;
    if (c->stream_next)
        event_free(c->stream_next);
    c->stream_next = NULL;
}

/* The rest of an answered request's body being dropped (CS_DISCARD) ended: counted once, with
 * what of it was read and dropped. */
static void discard_ended(struct client *c, enum discard_end end)
{
    metrics_discard_end(c->loop->metrics, false, end, c->discard_owed - c->discard_left);
    c->discard_left = 0;
}

/* The one teardown: the exchange (if any) is cancelled and logged, everything freed. */
static void client_close(struct client *c, const char *why)
{
    count_left_in_head(c, why);
    /* cut: the client went (a reload's drain waits for it too), or Portico stops (stop_now) */
    if (c->state == CS_DISCARD && c->discard_left)
        discard_ended(c, c->loop->state == LOOP_STOPPING ? DISCARD_END_CLOSED
                                                         : DISCARD_END_CLIENT_CLOSED);
    struct loop *l = c->loop;
    if (idle_listed(c)) /* asked before h2_free */
        TAILQ_REMOVE(&l->idle, c, idle_link);
    gauge_add(c, gauge_of(c), -1);
    if (c->ex) {
        struct exchange *ex = c->ex;
        c->ex = NULL;
        exchange_cancel(ex, HTTP_CLIENT_CLOSED_REQUEST, why);
    }
    if (c->h2)
        h2_free(c->h2, why);
    upstream_pool_owner_gone(l, c->peer.conn_id); /* its private origin connections */
    tunnel_free(c->tunnel); /* closes the origin side */
    c->tunnel = NULL;
    stream_end(c);
    sock_close(&c->sock);
    mtls_peer_free(c->mtls);
    if (c->climit_counted)
        climit_conn_close(l->gen->climit, &c->climit_key);
    TAILQ_REMOVE(&l->clients, c, link);
    if (c->kind == CLIENT_ADMIN)
        l->admin_conns--;
    free(c);
    loop_conn_closed(l);
}

/* Whether a connection between requests is closed once a drain began: yes, unless
 * idle_close_on_response keeps it for its next request (answered with Connection: close). An
 * answer whose head promised keep-alive before the drain began is such a connection too. */
static bool drain_closes_idle(const struct loop *l)
{
    return l->state != LOOP_RUNNING && !l->cfg->idle_close_on_response;
}

void clients_drain(struct loop *l)
{
    struct client *c, *next;
    for (c = TAILQ_FIRST(&l->clients); c; c = next) {
        next = TAILQ_NEXT(c, link);
        /* Idle keep-alive connections go. A connection that has not sent its first request yet
         * (just accepted, or still in its TLS handshake) gets to send it: it was accepted to
         * be served; so does an idle one whose next request has arrived, read or still in the
         * kernel (its answer says Connection: close; a close() over it would reset the
         * connection). HEAD and EXCHANGE finish their request (done() sees the loop draining);
         * CLOSING and LINGER end by themselves. HTTP/2 connections likewise (h2_drain).
         * idle_close_on_response keeps idle ones too, until their next request (answered with
         * Connection: close), keepalive_timeout or the drain's end: a request sent as we close
         * is otherwise lost, and a client that does not retry sees an error (RFC 9112 9.5). */
        if (c->state == CS_H2) {
            h2_drain(c->h2); /* GOAWAY: the streams in flight finish */
        } else if (between_requests(c) && !sock_input_arrived(&c->sock) &&
                   drain_closes_idle(l)) { /* an admin connection too: it gives no way, but goes */
            if (sock_pending(&c->sock) > 0)
                start_closing(c); /* the last answer is still going out: it ends first */
            else
                client_close(c, "closed while draining");
        }
    }
}

void clients_close_all(struct loop *l)
{
    struct client *c;
    unsigned tunnels = 0; /* cut: they have no exchange to log a 499 for */
    TAILQ_FOREACH(c, &l->clients, link)
        tunnels += c->state == CS_TUNNEL           ? 1
                   : c->state == CS_H2 && c->h2 ? (unsigned)h2_tunnels(c->h2) /* WebSockets */
                                                : 0;
    if (tunnels)
        log_warn("stopping: cut %u tunnel%s still open", tunnels, tunnels == 1 ? "" : "s");
    while ((c = TAILQ_FIRST(&l->clients)) != NULL)
        client_close(c, "Portico stopped before the response was complete");
}

/* Whether our kernel still holds bytes of the answer it has not sent (SIOCOUTQNSD): a slow
 * reader's tail. A close() then, and a byte the client sends after it (its next request,
 * which it ought not to send), make a reset that drops them: 200,000 bytes to a 4 KiB
 * reader arrived as 155,432 and ECONNRESET. */
static bool answer_unsent(const struct client *c)
{
    if (sock_all_left(&c->sock)) /* a small answer (an error, a small body): nothing to ask */
        return false;
    int unsent = 0;
    return ioctl(c->sock.fd, SIOCOUTQNSD, &unsent) == 0 && unsent > 0;
}

static void linger(struct client *c)
{
    /* A half-closed client sent all it will (its FIN was read): no unread byte can turn the
     * close into a reset, and none will come to wait for. Over TLS our close_notify tells it
     * the last response ended there, rather than was cut. */
    if (c->half_closed) {
        evbuffer_drain(c->sock.in, SIZE_MAX);
        if (c->sock.ssl)
            sock_shutdown(&c->sock);
        set_state(c, CS_QUIET_CLOSE);
        return;
    }
    /* A client that asked to close, whose request was read to its end and who sent nothing
     * more, is not waited for: no reset can come of unread bytes, and reading its FIN and a
     * failed epoll_ctl were 2 system calls of ~10 per connection-per-request. Our FIN leaves
     * now, behind the answer, as HAProxy's does: the close() comes from the loop, after the
     * turn's other events (~0.8 ms under load), and a client that closed first in the meantime
     * holds the TIME_WAIT: at ~28,000 connections a second its ports then run out. An answer
     * whose tail has not left our kernel yet is lingered for, as any other. */
    if (c->closes_quietly && evbuffer_get_length(c->sock.in) == 0 && !answer_unsent(c)) {
        sock_shutdown_cut(&c->sock);
        sock_read(&c->sock, false); /* its FIN need not be read: close() follows */
        set_state(c, CS_QUIET_CLOSE);
        return;
    }
    /* Otherwise close our side only, then read and discard until the client closes: a close()
     * with unread request bytes would send a reset that can destroy the response in flight.
     * Over TLS a close_notify goes first. */
    sock_shutdown(&c->sock);
    evbuffer_drain(c->sock.in, SIZE_MAX);
    sock_set_read_limit(&c->sock, 0);
    sock_read(&c->sock, true);
    set_state(c, CS_LINGER);
}

/* Flush what is queued, then close. Most answers leave at once: then the connection goes
 * straight on (linger), without CS_CLOSING and a client_send_timeout deadline set for nothing
 * (sock_flush calls nobody back: its outcome comes from the loop). */
static void start_closing(struct client *c)
{
    if (sock_flush(&c->sock) == 0)
        linger(c);
    else
        set_state(c, CS_CLOSING);
}

/* The metrics, the last minutes (the status page's requests by class) and the access-log line
 * of a refused head e (body: the bytes of its answer). req: the head, when it was read whole
 * (its client is the one real_ip finds in it, its request line and fields describe_head's, as
 * its exchange's would have been); NULL when it was not (a parse that failed, a timer, a
 * client gone): the fields read before the fault are a prefix, which could name a client
 * without the trusted proxy's own element, so the peer is the client, as for HTTP/2's streams
 * refused before their header block ended. */
/* The first field id of req into *value / *len, left NULL / 0 when it has none. */
static void field_span(const struct h1_request *req, enum h1_field_id id, const char **value,
                       size_t *len)
{
    int i = h1_find(req->fields, req->nfields, id, 0);
    if (i >= 0) {
        *value = req->fields[i].value;
        *len = req->fields[i].value_len;
    }
}

/* What a whole head refused gives its line, as its exchange's line would have had it: method,
 * target, version, Host, User-Agent, the first X-Forwarded-For. */
static void describe_head(struct access_record *r, const struct h1_request *req)
{
    r->method = req->method;
    r->method_len = req->method_len;
    r->target = req->target;
    r->target_len = req->target_len;
    r->proto = req->minor ? LOG_PROTO_HTTP11 : LOG_PROTO_HTTP10;
    field_span(req, H1_F_HOST, &r->host, &r->host_len);
    field_span(req, H1_F_USER_AGENT, &r->user_agent, &r->user_agent_len);
    field_span(req, H1_F_X_FORWARDED_FOR, &r->forwarded_for, &r->forwarded_for_len);
}

static void count_refusal(struct client *c, const struct errpage *e, long body,
                          const struct h1_request *req)
{
    int status = e->status;
    uint64_t limit_ms = e->limit_ms;
    struct timings t = {0};
    timings_set(&t, TIMING_TOTAL, c->head_start_us ? event_now_us() - c->head_start_us : 0);
    /* Started as it ends: portico_requests_started_total - portico_requests_total is what is
     * in flight, never below 0 (a refused head counted only as ended made it negative). */
    metrics_add(c->loop->metrics, M_REQUESTS, 1);
    metrics_request_done(c->loop->metrics,
                         &(struct metrics_sample){-1, -1, status, FAIL_NONE, &t});
    recent_record(c->loop->recent,
                  &(struct recent_sample){.time_ms = wall_ms(), .status = status,
                                          .failure = FAIL_NONE, .phase = PHASE_CLIENT_HEADER,
                                          .total_us = t.us[TIMING_TOTAL], .limit_ms = limit_ms});
    if (log_enabled()) {
        struct trace_context trace;
        char addr[PEER_ADDR_MAX], named[PEER_ADDR_MAX];
        trace_start(&c->loop->rng, 0, &trace);
        struct fault_addr client;
        bool real = req && c->loop->cfg->ntrusted_proxies > 0 &&
                    exchange_real_client(c->loop, &c->peer, req->fields, req->nfields, NULL,
                                         &client);
        struct access_record r = {
            .request_id = e->request_id,
            .trace_id = trace.trace_id,
            .client = real ? realip_text(&client, named, sizeof(named))
                           : peer_addr(&c->peer, addr, sizeof(addr)),
            .peer = real ? peer_addr(&c->peer, addr, sizeof(addr)) : NULL,
            .proto = LOG_PROTO_NONE,
            .status = status,
            .phase = PHASE_CLIENT_HEADER,
            .limit_ms = limit_ms,
            .bytes_out = body > 0 ? (uint64_t)body : 0,
            .timings = t,
            .detail = e->reason,
        };
        if (req)
            describe_head(&r, req);
        log_buffer_append(c->loop->log, &r);
    }
}

/* The id of a request refused before its exchange: the client's X-Request-Id when it is
 * well-formed and among the fields read whole (exchange_request_id), those of req (a head read
 * whole) or, without it, of the input parsed again as far as it goes: a head refused for a later
 * line, cut short by client_header_timeout or the client's leaving. Else a new one: a request
 * line refused, no head begun, no memory to read it. Out of line: its head's fields stay off the
 * frame of parse_head, which every request goes through. */
__attribute__((noinline)) static void refused_id(struct client *c, const struct h1_request *req,
                                                 char *id, size_t size)
{
    if (req) {
        exchange_request_id(c->loop, req->fields, req->nfields, id, size);
        return;
    }
    const struct config *cfg = c->loop->cfg;
    struct evbuffer *in = c->sock.in;
    /* as parse_head parsed it: the empty lines it dropped count against max_header_size */
    size_t max = (size_t)cfg->max_header_size - c->head_skipped;
    size_t n = MIN(evbuffer_get_length(in), max);
    const char *p = n ? (const char *)evbuffer_pullup(in, (ev_ssize_t)n) : NULL;
    struct h1_request head;
    head.nfields = 0;
    if (p) { /* whatever it returns, head's fields are the lines read whole (http1.h) */
        struct h1_limits lim = {.max_request_line = cfg->max_request_line, .max_head = max};
        struct h1_error err;
        (void)h1_parse_request(p, n, &lim, &head, &err);
    }
    exchange_request_id(c->loop, head.fields, head.nfields, id, size);
}

/* A client that leaves (or is closed at a stop's deadline) while its request head is coming in:
 * a 499 at client_header, as a client that leaves later gets, so that no request that began
 * goes unlogged and uncounted. Not for the empty lines a request may be preceded by. */
static void count_left_in_head(struct client *c, const char *why)
{
    if (c->state != CS_HEAD || c->kind == CLIENT_ADMIN)
        return;
    struct evbuffer *in = c->sock.in;
    size_t len = MIN(evbuffer_get_length(in), (size_t)c->loop->cfg->max_header_size);
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
    size_t i = 0;
    while (p && i < len && (p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i == len)
        return;
    char id[48];
    refused_id(c, NULL, id, sizeof(id));
    struct errpage e = {
        .status = HTTP_CLIENT_CLOSED_REQUEST,
        .failure = FAIL_NONE,
        .reason = why,
        .request_id = id,
    };
    metrics_add(c->loop->metrics, M_CLIENT_ABORTS, 1);
    count_refusal(c, &e, 0, NULL);
}

/* A request to the admin listener refused before it is answered: one line (none for a HEAD),
 * then close. */
static void admin_refuse(struct client *c, int status, const char *why, bool head_method)
{
    char fields[256];
    struct h1out_head h = {.status = status,
                           .fields = admin_fields(fields, sizeof(fields), NULL) < 0 ? NULL
                                                                                   : fields,
                           .content_type = "text/plain; charset=utf-8",
                           .connection = H1OUT_CONN_CLOSE};
    char line[256];
    int n = snprintf(line, sizeof(line), "%d %s: %s\n", status, status_phrase(status), why);
    /* a longer reason is cut, never read past the line */
    size_t len = n < 0 ? 0 : MIN((size_t)n, sizeof(line) - 1);
    h1out_simple(c->sock.out, &h, line, len,
                 head_method ? H1OUT_PAYLOAD_OMIT : H1OUT_PAYLOAD_SEND);
    start_closing(c);
}

/* A request refused before its exchange (bad head, timer): the error page (no body for a HEAD),
 * counted, logged, and the connection closed; limit_ms names the client timer that expired, 0
 * for none; req: the head if it was read whole (count_refusal), else NULL. */
static void refuse_request(struct client *c, int status, const char *reason, uint64_t limit_ms,
                           bool head_method, const struct h1_request *req)
{
    /* The admin listener's requests are not client traffic (issue 9): a refused one moves no
     * counter and writes no access-log line, and it is answered as that listener answers,
     * with its fields (nosniff), not with the proxy's error page. */
    if (c->kind == CLIENT_ADMIN) {
        admin_refuse(c, status, reason, head_method);
        return;
    }
    char id[48];
    refused_id(c, req, id, sizeof(id));
    struct errpage e = {
        .status = status,
        .failure = FAIL_NONE,
        .reason = reason,
        .request_id = id,
        .limit_ms = limit_ms,
        .close = true,
        .head_only = head_method,
    };
    long body = errpage_write(c->sock.out, &e);
    count_refusal(c, &e, body, req);
    start_closing(c);
}

/* ... a head not read whole. */
static void refuse_head(struct client *c, int status, const char *reason, uint64_t limit_ms,
                        bool head_method)
{
    refuse_request(c, status, reason, limit_ms, head_method, NULL);
}

/* Whether a next request may follow this answer: not while draining, and not when
 * keepalive_timeout is 0 (no wait at all for a next request: the answer says Connection: close,
 * rather than promise a connection that closes as soon as it is idle). */
static bool keeps_alive(const struct client *c)
{
    return c->loop->state == LOOP_RUNNING && c->loop->cfg->keepalive_timeout_ms > 0;
}

/* ---- the downstream interface ---- */

/* What a client's end (or failure) is called in the access log's detail. */
static const char *gone_reason(enum sock_event ev)
{
    switch (ev) {
    case SOCK_EOF:
        return "client closed the connection";
    case SOCK_WRITE_TIMEOUT:
        return "client stopped reading for client_send_timeout";
    default:
        return "client connection failed";
    }
}

/* A head that could not be written (out of memory): nothing of its response may reach the
 * client, who would read the body as a head. The socket is shut both ways, so that every later
 * write fails and the connection ends on its error path, with what out held unsent. */
static void head_unwritable(struct client *c)
{
    char addr[PEER_ADDR_MAX];
    log_client("client %s: out of memory for a response head: connection closed",
               peer_addr(&c->peer, addr, sizeof(addr)));
    c->close_after = true;
    shutdown(c->sock.fd, SHUT_RDWR);
}

static void ds_interim(void *ctx, const struct resp_head *head)
{
    struct client *c = ctx;
    if (hdr_write_head(c->sock.out, head, H1_BODY_NONE, false, true) != 0) {
        head_unwritable(c);
        return;
    }
    sock_flush(&c->sock); /* a 1xx means something only when it arrives before the answer */
}

static void ds_head(void *ctx, const struct resp_head *head, struct body_sink *sink)
{
    struct client *c = ctx;
    enum h1_framing wire = head->framing;
    /* A body of unknown length: chunked to HTTP/1.1, until the close for HTTP/1.0. */
    if (wire == H1_BODY_CHUNKED && c->proto == PROTO_HTTP10)
        wire = H1_BODY_CLOSE;
    c->close_after = head->close || wire == H1_BODY_CLOSE || !keeps_alive(c) ||
                     (c->half_closed && evbuffer_get_length(c->sock.in) == 0); /* the last */
    c->close_delimited = wire == H1_BODY_CLOSE;
    if (hdr_write_head(c->sock.out, head, wire, c->proto == PROTO_HTTP10, !c->close_after) != 0)
        head_unwritable(c);
    *sink = (struct body_sink){.out = c->sock.out, .chunked = wire == H1_BODY_CHUNKED};
}

/* A client not read, half-closed (its FIN was read): a reset since is seen only in the
 * socket's pending error, looked at as its answer is about to go. */
static bool ds_gone(void *ctx, char *why, size_t size)
{
    struct client *c = ctx;
    int err = 0;
    socklen_t len = sizeof(err);
    if (!c->half_closed || getsockopt(c->sock.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
        err == 0)
        return false;
    snprintf(why, size, "%s", gone_reason(SOCK_ERROR));
    return true;
}

/* A client not watched when its exchange began (watch_later) may have reset unseen: the
 * answer's own send finds it (ECONNRESET), sent here, before the exchange is logged, rather
 * than at the close. Unasked, such a client that reset before a quick answer was logged 200
 * with its answer's bytes counted; a getsockopt(SO_ERROR) before the head found it too, at a
 * system call per exchange. Asked after the 5 ms too: the reset reported by the dispatch that
 * registers the client may come behind the origin's answer in the same batch. */
static bool ds_sent_none(void *ctx, char *why, size_t size)
{
    struct client *c = ctx;
    if (!c->watched_late)
        return false;
    if (c->ex) /* the exchange ends (a cancel comes with c->ex taken: nothing is sent then) */
        sock_flush(&c->sock);
    if (c->sock.state != SOCK_FAILED || sock_wrote(&c->sock))
        return false;
    snprintf(why, size, "%s", gone_reason(SOCK_ERROR));
    return true;
}

static void ds_body(void *ctx)
{
    struct client *c = ctx;
    sock_flush(&c->sock);
}

static size_t ds_pending(void *ctx)
{
    struct client *c = ctx;
    return sock_pending(&c->sock);
}

static long ds_body_splice(void *ctx, struct sock *from, size_t max)
{
    struct client *c = ctx;
    return sock_splice(from, &c->sock, max);
}

static long ds_request_splice(void *ctx, struct sock *to, size_t max)
{
    struct client *c = ctx;
    return sock_splice(&c->sock, to, max);
}

static struct evbuffer *ds_request_input(void *ctx)
{
    struct client *c = ctx;
    return c->sock.in;
}

static void ds_request_taken(void *ctx, size_t queued)
{
    (void)queued; /* the client's socket is the bound: READ_HIGH */
    struct client *c = ctx;
    sock_consumed(&c->sock);
}

static void ds_request_wait(void *ctx, uint64_t body_timeout_ms)
{
    struct client *c = ctx;
    sock_set_timeouts(&c->sock, body_timeout_ms, c->loop->cfg->client_send_timeout_ms);
}

/* client_body_min_rate ended the body: its rest, which the 408 closes on, is counted timeout. */
static void ds_request_stalled(void *ctx)
{
    struct client *c = ctx;
    c->body_timed_out = true;
}

/* TCP_QUICKACK 1 sends the ACK the kernel holds now, and ACKs at once for a while (HAProxy does
 * the same): the listener starts every connection with delayed ACKs, and a keep-alive
 * connection is back to them after each answer. */
static void ds_request_owed(void *ctx)
{
    struct client *c = ctx;
    int one = 1;
    setsockopt(c->sock.fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

/* The input a client connection holds at most: pipelined requests, a body ahead, or a head of
 * max_header_size (and its last byte, to tell it is too long). */
static size_t input_bound(const struct config *cfg)
{
    return MAX(READ_HIGH, (size_t)cfg->max_header_size + 1);
}

/* Whether the next request head may be parsed: not while the last answer still waits in our
 * memory (a client pipelining without reading must not make us buffer its answers). */
static bool may_parse(const struct client *c)
{
    return sock_pending(&c->sock) <= OUTPUT_HIGH;
}

/* The answered request's body has `left` bytes still to come (DISCARD_UNREAD: a rest not to be
 * read): done() drops them first, or closes on them. */
static void ds_request_discard(void *ctx, uint64_t left)
{
    struct client *c = ctx;
    c->discard_left = left;
}

/* Drops what came of the body being discarded; once all of it came, the connection is idle
 * (a next request already buffered is parsed from the loop). */
static void discard_input(struct client *c)
{
    size_t n = MIN(evbuffer_get_length(c->sock.in), c->discard_left);
    evbuffer_drain(c->sock.in, n);
    c->discard_left -= n;
    if (n)
        sock_consumed(&c->sock);
    if (c->discard_left)
        return;
    discard_ended(c, DISCARD_END_READ);
    c->pipelined = evbuffer_get_length(c->sock.in) > 0;
    if (drain_closes_idle(c->loop) && !c->pipelined) { /* a stop began meanwhile */
        start_closing(c);
        return;
    }
    set_state(c, CS_IDLE);
    if (c->pipelined && may_parse(c))
        sock_requeue(&c->sock);
}

/* A reset (a fault's, or a cut body that ends with the close): RST, which throws away what the
 * kernel still holds to send. What went before it (the answers to requests pipelined ahead of
 * a reset one, the part of a cut body that was forwarded) was answered and logged whole: it
 * leaves first, our buffer then the kernel's send queue, looked at a tick at a time for
 * client_send_timeout at most (a client that does not read loses it, as from a real reset). */
static void start_resetting(struct client *c)
{
    evbuffer_drain(c->sock.in, SIZE_MAX);
    sock_read(&c->sock, false);
    c->reset_from_us = event_now_us();
    sock_flush(&c->sock);
    set_state(c, CS_RESETTING); /* its deadline is now: reset_when_sent from the loop */
}

static void reset_now(struct client *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->sock.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    client_close(c, "reset");
}

/* The reset's deadline: the RST goes once what went before it has left (SIOCOUTQ: sent and
 * acknowledged), or its time ran out. */
static void reset_when_sent(struct client *c)
{
    int queued = 0;
    uint64_t now = event_now_us();
    uint64_t until = c->reset_from_us + c->loop->cfg->client_send_timeout_ms * 1000;
    bool waiting = sock_pending(&c->sock) > 0 ||
                   (ioctl(c->sock.fd, SIOCOUTQ, &queued) == 0 && queued > 0);
    if (waiting && now < until) {
        sock_set_deadline(&c->sock, MIN(now + RESET_TICK_MS * 1000, until));
        return;
    }
    reset_now(c);
}

static void ds_done(void *ctx, enum exchange_end end)
{
    struct client *c = ctx;
    c->ex = NULL;
    c->watched_late = false;
    sock_splice_end(&c->sock); /* a request body cut short: read the connection again */
    sock_set_timeouts(&c->sock, 0, c->loop->cfg->client_send_timeout_ms);
    if (end == END_RESET) {
        start_resetting(c);
        return;
    }
    /* A body delimited by the close and cut short: a FIN would read as its end, only a reset
     * tells the client that the response failed. What was forwarded goes first. */
    if (end == END_ABORT && c->close_delimited) {
        start_resetting(c);
        return;
    }
    /* END_DROP: what went (1xx at most) is flushed, then FIN, like any close. Draining, a
     * request already received is still answered: that answer's head says Connection: close. */
    bool next_buffered = evbuffer_get_length(c->sock.in) > 0;
    uint64_t discard = c->discard_left; /* set by request_discard for this end only */
    c->discard_left = 0;
    c->closes_quietly = end == END_CLOSE_ASKED && !c->sock.ssl;
    if (end != END_KEEP || c->close_after ||
        ((drain_closes_idle(c->loop) || c->half_closed) && !next_buffered)) {
        if (discard) /* the rest is not read: it goes with the connection (lingering) */
            metrics_discard_end(c->loop->metrics, false,
                                c->body_timed_out ? DISCARD_END_TIMEOUT : DISCARD_END_CLOSED, 0);
        start_closing(c);
        return;
    }
    sock_flush(&c->sock); /* the last bytes go now, not a loop turn later */
    sock_watch_now(&c->sock); /* the next request is awaited (watch_later) */
    c->head_start_us = 0;
    if (discard) { /* the rest of the answered request's body comes first */
        c->discard_left = c->discard_owed = discard;
        set_state(c, CS_DISCARD);
        discard_input(c);
        return;
    }
    set_state(c, CS_IDLE);
    /* A pipelined request may already be buffered: parse it from the loop, not from inside
     * the exchange that just finished; if our output is full, once it drained. */
    c->pipelined = next_buffered;
    if (c->pipelined && may_parse(c))
        sock_requeue(&c->sock);
}

static void tunnel_closed(void *arg, const char *why)
{
    client_close(arg, why);
}

/* After a 101 the connection belongs to the tunnel (tunnel.h) until either side closes. */
static void ds_upgraded(void *ctx, const struct tunnel_origin *origin)
{
    struct client *c = ctx;
    c->ex = NULL;
    set_state(c, CS_TUNNEL);
    c->tunnel = tunnel_open(c->loop, &c->sock, origin, tunnel_closed, c);
    if (!c->tunnel)
        start_closing(c); /* out of memory: the 101 went, nothing more can */
}

static const struct downstream_ops h1_ops = {
    .interim = ds_interim,
    .head = ds_head,
    .gone = ds_gone,
    .sent_none = ds_sent_none,
    .body = ds_body,
    .pending = ds_pending,
    .body_splice = ds_body_splice,
    .request_splice = ds_request_splice,
    .request_input = ds_request_input,
    .request_taken = ds_request_taken,
    .request_wait = ds_request_wait,
    .request_stalled = ds_request_stalled,
    .request_owed = ds_request_owed,
    .request_discard = ds_request_discard,
    .done = ds_done,
    .upgraded = ds_upgraded,
};

/* ---- reading requests ---- */

/* An admin answer is all in the output: the connection closes, or waits for the next request. */
static void admin_answered(struct client *c, bool close)
{
    if (close) {
        start_closing(c);
        return;
    }
    sock_flush(&c->sock);
    set_state(c, CS_IDLE);
    if (evbuffer_get_length(c->sock.in) > 0 && may_parse(c))
        sock_requeue(&c->sock);
}

static void stream_more(struct client *c);

/* The next slice of the page is due: the loop turned once since the last went out. */
static void stream_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    stream_more(arg);
}

/* Writes the next slice of the admin page once the last one went out (SOCK_DRAINED, or at
 * once when the socket took it whole): one slice per turn of the loop, so that the requests
 * worker 0 serves wait for a slice at most, never for the page, and no more of the page is
 * held than a slice. The next turn is a timer of 0: a timer runs after the loop polled its
 * sockets, where an active event would run before. */
static void stream_more(struct client *c)
{
    if (sock_pending(&c->sock) == 0) { /* else the head and first slice, not flushed yet */
        int rc = admin_stream_write(c->stream, c->sock.out);
        if (rc <= 0) {
            stream_end(c);
            /* cut short (out of memory): the close tells the client the answer is not whole */
            admin_answered(c, rc < 0 || c->stream_close);
            return;
        }
    }
    if (sock_flush(&c->sock) != 0)
        return; /* SOCK_DRAINED when it went, or SOCK_ERROR */
    static const struct timeval now = {0, 0};
    if (!c->stream_next)
        c->stream_next = event_new(c->loop->base, -1, 0, stream_due, c);
    if (!c->stream_next || event_add(c->stream_next, &now) != 0) {
        stream_end(c);
        admin_answered(c, true); /* out of memory: cut short */
    }
}

/* Out of line, cold: the admin listener's requests are few, and inlined into parse_head it cost
 * the proxy's every request 14 instructions of spills (callgrind) when it grew. */
static __attribute__((noinline, cold)) void admin_request(struct client *c, struct h1_request *req,
                                                        size_t head_len)
{
    struct h1_info info;
    struct h1_error err;
    if (h1_request_info(req, &info, &err) != 0) {
        refuse_head(c, err.status, err.reason, 0, req->method_id == METHOD_HEAD);
        return;
    }
    /* The endpoints are paths: an absolute-form target (which a server must accept, RFC 9112
     * 3.2.2) asks for its path, as the proxy routes it; the request is ours to rewrite. */
    struct req_target target;
    const char *why;
    int refused = request_target(req, &target, &why);
    if (refused) {
        admin_refuse(c, refused, why, req->method_id == METHOD_HEAD);
        return;
    }
    /* RFC 9112 3.2.2: an absolute-form target's authority stands for the Host field */
    const char *host = target.host ? target.host : info.host ? info.host->value : NULL;
    size_t host_len = target.host ? target.host_len : info.host ? info.host->value_len : 0;
    if (!admin_host_allowed(c->loop->cfg, host, host_len)) {
        admin_refuse(c, HTTP_FORBIDDEN,
                     "the Host is not an IP address, localhost, *.localhost or a name of "
                     "admin_hosts (DNS rebinding); list it in admin_hosts, or set admin_token",
                     req->method_id == METHOD_HEAD);
        return;
    }
    req->target = target.path;
    req->target_len = target.path_len;
    bool has_body = h1_info_has_body(&info);
    /* The fault API reads small bodies whole (POST /faults); no other endpoint takes one:
     * rather than read it, answer and close. Nor is the body of a request without the token
     * awaited (with a 100 Continue) and read: it gets its 401 at once. */
    char body[ADMIN_BODY_MAX];
    size_t body_len = 0;
    if (has_body && (admin_faults_takes_body(req) || admin_upstreams_takes_body(req)) &&
        admin_authorized(req, c->loop->cfg)) {
        if (info.framing != H1_BODY_LENGTH) {
            admin_refuse(c, HTTP_LENGTH_REQUIRED, "send the body with a Content-Length", false);
            return;
        }
        if (info.content_length > ADMIN_BODY_MAX) {
            admin_refuse(c, HTTP_CONTENT_TOO_LARGE, "admin request bodies are at most 16 KiB",
                         false);
            return;
        }
        size_t have = evbuffer_get_length(c->sock.in);
        if (have < head_len + info.content_length) {
            /* A client waiting for 100 Continue before its body gets it while none has come
             * (curl waits 1 s for it, then sends anyway); an HTTP/1.0 one gets none (RFC 9110
             * 10.1.1). */
            if (info.expect_continue && req->minor >= 1 && have == head_len &&
                h1out_head(c->sock.out, &(struct h1out_head){.status = HTTP_CONTINUE}, 0) == 0)
                sock_flush(&c->sock);
            c->admin_due = head_len + (size_t)info.content_length;
            /* All of it is held before it is answered: a head near max_header_size and its
             * body passed the input's bound, reading stopped short of the body, and the
             * request got 408 at client_header_timeout. */
            if (c->admin_due > c->sock.read_limit)
                sock_set_read_limit(&c->sock, c->admin_due);
            return; /* the head is parsed again once the rest is in, still under its timer */
        }
        body_len = (size_t)info.content_length;
        /* copy before the drain below */
        struct evbuffer_ptr at;
        evbuffer_ptr_set(c->sock.in, &at, head_len, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(c->sock.in, &at, body, body_len);
        has_body = false;
    }
    bool close = !info.keep_alive || has_body || !keeps_alive(c);
    c->requests++;
    /* out of memory: it closes */
    struct admin_stream *more = NULL;
    admin_respond_stream(c->sock.out, req, body_len ? body : NULL, body_len, &close,
                         c->loop->gen, &more);
    evbuffer_drain(c->sock.in, head_len + body_len); /* not client traffic: no metric */
    sock_consumed(&c->sock);
    c->head_start_us = 0;
    if (more) {
        c->stream = more;
        c->stream_close = close;
        set_state(c, CS_STREAM);
        stream_more(c);
        return;
    }
    admin_answered(c, close);
}

/* A request read whole at the accept (sock_read_now), its exchange waiting on the origin: the
 * client is not watched for WATCH_LATER_MS, so that an answer that comes by then, and the close
 * after it, cost no epoll_ctl (the client's registration never reaches epoll: 2 of ~10 system
 * calls of a connection per request). HAProxy does not watch its client while the origin works
 * at all; a client that leaves is seen here within WATCH_LATER_MS and a loop turn, its
 * exchange cancelled (499) as before. 5 ms: more than an answer from a near origin takes,
 * loaded (a connection per request, 50 clients: BENCHMARKS.md, lazywatch), and nothing to a
 * client that hung up on a slow one. Not when anything is still to be read: a body on its way,
 * an upgrade (the tunnel reads), bytes behind the head (pipelined, or a body not yet taken). */
static void watch_later(struct client *c)
{
    /* CS_EXCHANGE has no deadline of its own: the bound is it (state_expired) */
    if (evbuffer_get_length(c->sock.in) == 0 && exchange_request_whole(c->ex) &&
        sock_watch_later(&c->sock)) {
        sock_set_deadline(&c->sock, event_now_us() + WATCH_LATER_MS * 1000);
        c->watched_late = true;
    }
}

/* A head is being read (client_header_timeout) and not yet an exchange: every way out of
 * parse_head but a started exchange. */
static void head_begun(struct client *c)
{
    if (c->state == CS_IDLE)
        set_state(c, CS_HEAD);
}

static void parse_head(struct client *c)
{
    const struct config *cfg = c->loop->cfg;
    struct evbuffer *in = c->sock.in;
    size_t len = evbuffer_get_length(in);
    if (len == 0 || !may_parse(c))
        return;
    /* An admin request's body is coming (admin_request): nothing changes until all of it is
     * in. Its head was parsed again at each arrival: a body trickled in 16 KiB one byte at a
     * time after a head of 900 KB (max_header_size = 1m) took 2.4 s of worker 0's CPU. */
    if (len < c->admin_due)
        return;
    if (c->admin_due && c->sock.read_limit != input_bound(cfg))
        sock_set_read_limit(&c->sock, input_bound(cfg)); /* back once it is all in */
    c->admin_due = 0;
    /* CS_HEAD is entered only when this call does not start the exchange (head_begun): a head
     * that came whole goes from CS_IDLE to CS_EXCHANGE, one state change instead of two, its
     * header deadline never armed (callgrind: -120 instructions a request). */
    if (c->state == CS_IDLE)
        c->head_start_us = event_now_us();
    size_t max = (size_t)cfg->max_header_size;
    size_t n = MIN(len, max - c->head_skipped);
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    if (!p && n) { /* a head in several chains, and no memory to make it one: ours, not theirs */
        head_begun(c);
        refuse_head(c, HTTP_SERVICE_UNAVAILABLE, "out of memory", 0, false);
        return;
    }
    /* Empty lines before the request line are ignored (RFC 9112 2.2), but each ends a line: sent
     * one at a time, each had the whole head so far parsed again (900 KB of them, then one every
     * 0.1 ms, kept a worker busy: 2.5 s of CPU in 3 s, max_header_size = 1m). They go as they
     * come, and still count against max_header_size (head_skipped). */
    size_t skip = 0;
    while (skip + 1 < n && p[skip] == '\r' && p[skip + 1] == '\n')
        skip += 2;
    if (skip) {
        head_begun(c);
        evbuffer_drain(in, skip);
        sock_consumed(&c->sock);
        c->head_skipped += skip;
        c->head_scanned = 0;
        len -= skip;
        n = MIN(len, max - c->head_skipped);
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (len == 0 && c->head_skipped < max)
            return;
        if (!p && n) {
            refuse_head(c, HTTP_SERVICE_UNAVAILABLE, "out of memory", 0, false);
            return;
        }
    }
    /* A head trickling in byte by byte must not cost a full parse per byte: nothing can change
     * until a line ends, or the limit is reached. */
    if (c->head_scanned && n < max - c->head_skipped && n > c->head_scanned &&
        !memchr(p + c->head_scanned, '\n', n - c->head_scanned)) {
        c->head_scanned = n;
        return;
    }
    struct h1_limits lim = {.max_request_line = cfg->max_request_line,
                            .max_head = max - c->head_skipped};
    struct h1_request req;
    struct h1_error err;
    int rc = h1_parse_request(p, n, &lim, &req, &err);
    if (rc < 0 || c->kind == CLIENT_ADMIN)
        head_begun(c);
    if (rc == -2) {
        c->head_scanned = n;
        return;
    }
    c->head_scanned = 0;
    if (rc < 0) { /* head_skipped kept: refused_id parses the head again as this did */
        refuse_head(c, err.status, err.reason, 0, err.head_method);
        return;
    }
    c->head_skipped = 0;
    if (c->kind == CLIENT_ADMIN) {
        admin_request(c, &req, (size_t)rc);
        return;
    }
    c->proto = req.minor >= 1 ? PROTO_HTTP11 : PROTO_HTTP10;
    c->close_after = false;
    c->close_delimited = false;
    struct downstream ds = {.ops = &h1_ops, .ctx = c, .peer = &c->peer, .proto = c->proto,
                            .pipelined = c->pipelined, .first = c->requests == 0};
    c->pipelined = false;
    struct exchange *ex = exchange_start(c->loop, &ds, p, (size_t)rc, &req, c->head_start_us);
    if (!ex) {
        head_begun(c);
        refuse_request(c, HTTP_SERVICE_UNAVAILABLE, "out of memory", 0,
                       req.method_id == METHOD_HEAD, &req);
        return;
    }
    c->ex = ex;
    set_state(c, CS_EXCHANGE); /* first: from CS_IDLE, the count says whether it was listed idle */
    c->requests++;
    evbuffer_drain(in, (size_t)rc);
    sock_consumed(&c->sock);
    exchange_run(ex); /* may end it: done() then changed our state */
    if (c->state == CS_EXCHANGE && sock_may_watch_later(&c->sock))
        watch_later(c);
}

/* ---- events ---- */

/* A half-closed connection whose last head was parsed, or that had none to parse: nothing more
 * will come. A request that needs more than the client sent (a body cut by the FIN, an upgrade)
 * ends as it would have without client_half_close (499); a head cut by the FIN is logged 499 at
 * client_header, as one that leaves mid-head is; what is queued for the client goes, then the
 * connection closes. */
static void half_closed_settle(struct client *c)
{
    switch (c->state) {
    case CS_EXCHANGE:
        if (!exchange_answers_half_close(c->ex))
            client_close(c, gone_reason(SOCK_EOF));
        return;
    case CS_IDLE:
    case CS_HEAD:
        break;
    default:
        return; /* closing already, or answered and closing */
    }
    if (!may_parse(c) || (c->state == CS_IDLE && evbuffer_get_length(c->sock.in) > 0))
        return; /* a head still to parse: from the loop, or once our output drained */
    if (c->state == CS_HEAD)
        count_left_in_head(c, gone_reason(SOCK_EOF));
    start_closing(c);
}

/* The client's FIN is taken for a half-close: said at debug level (the event a test waits on
 * before letting the origin answer). */
static void mark_half_closed(struct client *c)
{
    c->half_closed = true;
    if (log_level_enabled(LOG_DEBUG)) {
        char addr[PEER_ADDR_MAX];
        log_debug("client %s: half-closed (state %s): answering what it sent, then closing",
                  peer_addr(&c->peer, addr, sizeof(addr)), client_state_names[c->state]);
    }
}

/* client_half_close = abort, the FIN between exchanges: the requests not begun are not answered
 * (a head it cut is logged 499, as client_close logs it), but answers whose exchanges ended
 * still go out whole, then the connection closes. They were cut where the client's kernel had
 * stopped taking them, and logged whole (a 192 KiB answer: 64 KiB reached the client). true
 * when some are still going out. */
static bool finish_answers(struct client *c)
{
    if (sock_pending(&c->sock) == 0)
        return false;
    count_left_in_head(c, gone_reason(SOCK_EOF));
    evbuffer_drain(c->sock.in, SIZE_MAX);
    mark_half_closed(c);
    if (c->state != CS_CLOSING)
        start_closing(c);
    return true;
}

/* The client's FIN (SOCK_EOF). With client_half_close = answer, one that sent whole requests and
 * then shut its sending side (nc -N, a script's shutdown(SHUT_WR), HTTP/1.0 tools) still reads:
 * its exchange goes on, the requests it sent before the FIN are answered in order, then the
 * connection closes. true when the connection goes on; false: it ends as with abort (a request
 * cut short, an upgrade, nothing left to answer or to send). */
static bool half_close(struct client *c)
{
    switch (c->state) {
    case CS_EXCHANGE:
        if (!exchange_answers_half_close(c->ex)) /* its own configuration's value */
            return false;
        mark_half_closed(c);
        return true;
    case CS_IDLE:
    case CS_HEAD:
    case CS_CLOSING:
        break;
    default:
        return false;
    }
    if (c->kind == CLIENT_ADMIN)
        return false;
    if (c->loop->cfg->client_half_close != HALF_CLOSE_ANSWER)
        return finish_answers(c);
    /* Input not parsed yet: a requeue is due (between requests) or our output drains first. A
     * head parsed and found short was cut by the FIN. */
    bool unparsed = evbuffer_get_length(c->sock.in) > 0 && (c->state == CS_IDLE || !may_parse(c));
    if (c->state != CS_CLOSING && !unparsed && sock_pending(&c->sock) == 0)
        return false; /* nothing to answer, nothing still going out */
    mark_half_closed(c);
    if (c->state != CS_CLOSING && !unparsed)
        half_closed_settle(c);
    return true;
}

static void handshake_failed(struct client *c, const char *why)
{
    char addr[PEER_ADDR_MAX];
    log_client("client %s: TLS handshake failed: %s", peer_addr(&c->peer, addr, sizeof(addr)), why);
    metrics_add(c->loop->metrics, M_TLS_HANDSHAKE_FAILURES, 1);
    client_close(c, "TLS handshake failed");
}

/* OpenSSL read an HTTP request where a ClientHello belongs (SSL_R_HTTP_REQUEST): plain HTTP sent
 * to a TLS listener, a client's mistake, not a failed handshake. As nginx does, it gets a 400
 * that says so, in plain text straight to the socket (there is no TLS to send it with: a fresh
 * socket's buffer takes the page whole), and is counted and logged as a refused request. What
 * the client sent past what OpenSSL read is drained first, so that the close sends no reset
 * that could destroy the answer. */
static void refuse_plain_http(struct client *c)
{
    char id[48];
    loop_request_id(c->loop, id, sizeof(id)); /* OpenSSL read the head, not us: a new id */
    struct errpage e = {
        .status = HTTP_BAD_REQUEST,
        .failure = FAIL_NONE,
        .reason = "plain HTTP sent to a TLS port: use https://",
        .request_id = id,
        .close = true,
    };
    struct evbuffer *page = evbuffer_new();
    long body = page ? errpage_write(page, &e) : -1;
    if (body >= 0) {
        char drain[4096];
        for (int i = 0; i < 16 && recv(c->sock.fd, drain, sizeof(drain), MSG_DONTWAIT) > 0; i++)
            continue;
        size_t len = evbuffer_get_length(page);
        if (send(c->sock.fd, evbuffer_pullup(page, -1), len, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
            shutdown(c->sock.fd, SHUT_WR);
    }
    if (page)
        evbuffer_free(page);
    count_refusal(c, &e, body, NULL);
    client_close(c, "plain HTTP on a TLS listener");
}

/* HTTP/2 is over on this connection: the sock comes back to us, to flush and close. */
static void h2_done(void *arg, const char *why)
{
    struct client *c = arg;
    h2_free(c->h2, why);
    c->h2 = NULL;
    sock_set_cb(&c->sock, client_cb, c);
    start_closing(c);
}

/* HTTP/2 went idle between requests, or busy again: the idle list and the gauge follow. */
static void h2_idle_changed(void *arg)
{
    struct client *c = arg;
    bool idle = idle_listed(c);
    gauge_move(c, idle ? CONN_ACTIVE : CONN_IDLE);
    relist(c, !idle);
}

/* The client went away (EOF, error, write timeout) under HTTP/2: nothing more can be sent. */
static void h2_lost(void *arg, enum sock_event ev)
{
    client_close(arg, gone_reason(ev));
}

/* ALPN chose h2 (or the listener speaks h2c): the connection belongs to h2.c from now on.
 * 0, or -1 when out of memory: then the connection is closed (c is gone). */
static int start_h2(struct client *c)
{
    struct h2_owner owner = {
        .done = h2_done, .lost = h2_lost, .idle_changed = h2_idle_changed, .arg = c};
    c->h2 = h2_start(c->loop, &c->sock, &c->peer, &owner, c->accepted_us);
    if (!c->h2) {
        client_close(c, "out of memory");
        return -1;
    }
    set_state(c, CS_H2);
    return 0;
}

static bool alpn_h2(const struct client *c)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(c->sock.ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

/* Under tls_verify_client = optional a certificate that failed verification is served and only
 * the origin was told: the operator is told too, as a refusal under `on` is (a full handshake
 * only; a resumption repeats the origin's FAILED, not the line). */
static void client_cert_failed(struct client *c)
{
    char buf[1024], addr[PEER_ADDR_MAX];
    if (mtls_failed(c->sock.ssl, buf, sizeof(buf)))
        log_client("client %s: %s", peer_addr(&c->peer, addr, sizeof(addr)), buf);
}

static void client_cb(void *arg, enum sock_event ev)
{
    struct client *c = arg;
    if (ev == SOCK_DEADLINE) {
        state_expired(c);
        return;
    }
    if (c->state == CS_HANDSHAKE) {
        if (ev == SOCK_CONNECTED) { /* it speaks TLS: no record of it need be watched any more */
            tls_watch_first_record(c->sock.ssl, NULL);
            c->mtls = mtls_peer_new(c->sock.ssl); /* once: each request tells its origin */
            c->peer.cert = c->mtls;
            client_cert_failed(c);
            int served = sni_served(c->sock.ssl);
            if (served >= 0)
                metrics_tls_handshake(c->loop->metrics, served);
            else if (SSL_session_reused(c->sock.ssl))
                metrics_add(c->loop->metrics, M_TLS_RESUMED, 1);
        }
        if (ev == SOCK_CONNECTED && alpn_h2(c)) {
            start_h2(c);
            return;
        }
        if (ev == SOCK_CONNECTED) {
            set_state(c, CS_IDLE);
            return;
        }
        /* Closed (or reset) before its first byte: a TCP health check or a port scan, no
         * handshake. The plain listener says nothing of such connections either. */
        if (tls_peer_silent(c->sock.ssl)) {
            char addr[PEER_ADDR_MAX];
            log_debug("client %s: closed before a TLS handshake",
                      peer_addr(&c->peer, addr, sizeof(addr)));
            client_close(c, "closed before a TLS handshake");
            return;
        }
        if ((ERR_GET_LIB(c->sock.ssl_err) == ERR_LIB_SSL &&
             ERR_GET_REASON(c->sock.ssl_err) == SSL_R_HTTP_REQUEST) ||
            tls_plain_http(c->tls_head)) {
            refuse_plain_http(c);
            return;
        }
        char buf[SNI_REFUSAL_MAX + 512] = "connection closed";
        enum cert_refusal why;
        if (mtls_refused(c->sock.ssl, c->sock.ssl_err, &why, buf, sizeof(buf))) {
            metrics_cert_refusal(c->loop->metrics, why);
            handshake_failed(c, buf);
            return;
        }
        /* strict SNI says the name it refused, where OpenSSL's error is "callback failed" */
        bool refused = sni_refused(c->sock.ssl, buf, sizeof(buf));
        if (!refused && c->sock.ssl_err)
            ERR_error_string_n(c->sock.ssl_err, buf, sizeof(buf));
        else if (!refused && c->sock.err)
            snprintf(buf, sizeof(buf), "%s", strerror(c->sock.err));
        handshake_failed(c, buf);
        return;
    }
    switch (ev) {
    case SOCK_READABLE:
        if (c->state == CS_IDLE || c->state == CS_HEAD) {
            parse_head(c);
            if (c->half_closed) /* no more will come: what was read was all of it */
                half_closed_settle(c);
        } else if (c->state == CS_EXCHANGE)
            exchange_request_readable(c->ex);
        else if (c->state == CS_DISCARD)
            discard_input(c);
        else if (c->state == CS_STREAM)
            return; /* the next request waits for the page (read_limit bounds it) */
        else /* closing: what the client still sends is read and dropped */
            evbuffer_drain(c->sock.in, SIZE_MAX);
        return;
    case SOCK_DRAINED:
        if (c->state == CS_EXCHANGE)
            exchange_drained(c->ex);
        else if (c->state == CS_CLOSING)
            linger(c);
        else if (c->state == CS_STREAM)
            stream_more(c);
        else if (c->state == CS_IDLE || c->state == CS_HEAD) {
            if (c->state == CS_IDLE)
                set_state(c, CS_IDLE); /* the last answer went: the idle wait starts now */
            parse_head(c); /* a pipelined head waited for our output to drain */
            if (c->half_closed)
                half_closed_settle(c);
        }
        return;
    case SOCK_READ_TIMEOUT:
        if (c->state == CS_EXCHANGE) {
            c->body_timed_out = true;
            exchange_request_timeout(c->ex); /* answers 408 (or aborts) and calls done() */
            return;
        }
        break;
    case SOCK_CONNECTED:
    case SOCK_DEADLINE: /* above */
        return;
    case SOCK_EOF:
        if (half_close(c))
            return;
        break;
    case SOCK_ERROR:
    case SOCK_WRITE_TIMEOUT:
        break;
    }
    if (c->state == CS_RESETTING) { /* what went before it cannot all leave: RST now */
        reset_now(c);
        return;
    }
    client_close(c, gone_reason(ev));
}

/* The state's deadline passed (SOCK_DEADLINE). */
static void state_expired(struct client *c)
{
    switch (c->state) {
    case CS_HANDSHAKE:
        handshake_failed(c, "not done within client_header_timeout");
        break;
    case CS_IDLE:
        if (c->requests == 0) { /* a new connection that never sent a request */
            refuse_head(c, HTTP_REQUEST_TIMEOUT, "no request within client_header_timeout",
                        c->loop->cfg->client_header_timeout_ms, false);
            break;
        }
        client_close(c, "idle"); /* idle keep-alive connection: close quietly */
        break;
    case CS_HEAD:
        refuse_head(c, HTTP_REQUEST_TIMEOUT,
                    "request head not complete within client_header_timeout",
                    c->loop->cfg->client_header_timeout_ms, false);
        break;
    case CS_EXCHANGE: /* still running WATCH_LATER_MS after a read at the accept */
        sock_watch_once(&c->sock); /* a hang-up, most likely the close after our answer */
        break;
    case CS_H2:
    case CS_TUNNEL:
    case CS_STREAM:
        break;
    case CS_CLOSING:
    case CS_LINGER:
    case CS_QUIET_CLOSE:
        client_close(c, "closed");
        break;
    case CS_DISCARD: /* the body it owed did not all come: its rest cannot be told apart */
        discard_ended(c, DISCARD_END_TIMEOUT);
        client_close(c, "request body to drop not complete within client_body_timeout");
        break;
    case CS_RESETTING:
        reset_when_sent(c);
        break;
    }
}

/* A new client at max_connections: the connection idle longest between requests gives way
 * (not one whose last answer is still going out, nor one whose next request has come), as in
 * nginx: its client opens another when it has a request, rather than the new one waiting in the
 * backlog. The admin listener's connections take no one's place. An HTTP/2 connection is told
 * with a GOAWAY (its client then knows no stream was lost) and closes once that went out: until
 * then the worker holds one more than the limit, and its listeners are held (worker.c). */
static void make_room(struct loop *l)
{
    static const char why[] = "idle, closed for a new connection at max_connections";
    struct client *c;
    TAILQ_FOREACH(c, &l->idle, idle_link) {
        if (sock_pending(&c->sock) == 0 && !sock_input_arrived(&c->sock)) {
            metrics_add(l->metrics, M_IDLE_RECLAIMED, 1);
            if (c->state == CS_H2)
                h2_reclaim(c->h2, why);
            else
                client_close(c, why);
            return;
        }
    }
}

/* max_connections_per_client: the new connection's client (with proxy_protocol, its header's
 * source) is counted, all workers together; one over the limit is closed at once, nothing read
 * and nothing sent, as HAProxy's `tcp-request connection reject`: an answer (nginx's 503) needs
 * a request read first, which is what the limit is there to spare. A peer of trusted_proxies
 * carries many clients and is never counted. 1: counted in *key; 0: refused; -1: not counted.
 * Out of line: without the key an accept pays one compare. */
__attribute__((noinline)) static int per_client_admit(struct loop *l, const struct sockaddr *sa,
                                                      struct climit_key *key)
{
    const struct config *cfg = l->cfg;
    struct fault_addr addr;
    if (!l->gen->climit || climit_sockaddr_addr(sa, &addr) != 0 ||
        fault_cidr_contains(cfg->trusted_proxies, cfg->ntrusted_proxies, &addr))
        return -1;
    climit_key_addr(&addr, CLIMIT_SCOPE_CONN, key);
    int rc = climit_conn_open(l->gen->climit, key, cfg->max_connections_per_client,
                              event_now_us() * 1000);
    if (rc == 0) {
        char who[PEER_ADDR_MAX];
        metrics_conn_refused(l->metrics, CONN_REFUSED_PER_CLIENT);
        log_client("client %s: connection closed at its accept: it holds "
                   "max_connections_per_client = %llu already",
                   climit_key_text(key, who, sizeof(who)),
                   (unsigned long long)cfg->max_connections_per_client);
    }
    return rc;
}

/* client_new and client_new_at: inlined in each, so that an accept without a PROXY header runs
 * the code it ran before there was one (no call more, the same register allocation). */
static inline __attribute__((always_inline)) struct client *
client_open(struct loop *l, int fd, const struct sockaddr *sa, bool tls, enum client_kind kind,
            bool deferred, uint64_t accepted_us)
{
    const struct config *cfg = l->cfg;
    struct climit_key key;
    int counted = -1;
    if (cfg->max_connections_per_client && kind != CLIENT_ADMIN &&
        (counted = per_client_admit(l, sa, &key)) == 0) {
        evutil_closesocket(fd);
        return NULL;
    }
    struct client *c = zalloc(sizeof(*c));
    SSL *ssl = tls && c ? SSL_new(cfg->server_ssl_ctx) : NULL;
    if (!c || (tls && !ssl)) {
        free(c);
        evutil_closesocket(fd);
        if (counted == 1)
            climit_conn_close(l->gen->climit, &key);
        return NULL;
    }
    if (ssl) {
        SSL_set_accept_state(ssl);
        tls_watch_first_record(ssl, c->tls_head); /* plain HTTP, whatever its method? */
    }
    /* TCP_NODELAY comes from the listener (listener.c). */
    /* sock_init owns fd and ssl from here, and frees both itself when it fails. A socket read
     * at once (below) has its registration held until that read's event ends. */
    bool read_now = deferred || !tls;
    if ((read_now ? sock_init_read_now : sock_init)(&c->sock, l->clock, fd, ssl, client_cb, c) !=
        0) {
        free(c);
        if (counted == 1)
            climit_conn_close(l->gen->climit, &key);
        return NULL;
    }
    if (counted == 1) {
        c->climit_key = key;
        c->climit_counted = true;
    }
    c->loop = l;
    c->kind = kind;
    c->accepted_us = accepted_us;
    c->peer = (struct peer){.conn_id = ++l->next_conn, .ip = c->ip,
                            .port = peer_ip_str(sa, c->ip), .tls = tls};
    /* An h2c listener's client takes a place as an HTTP/1 one does: it makes room too (it took
     * one more, and the listener was then held while a connection sat idle). */
    if (kind != CLIENT_ADMIN && cfg->max_connections && proxy_conns(l) >= cfg->max_connections &&
        l->state == LOOP_RUNNING)
        make_room(l);
    TAILQ_INSERT_TAIL(&l->clients, c, link);
    if (kind == CLIENT_ADMIN)
        l->admin_conns++;
    loop_conn_opened(l);
    c->state = tls ? CS_HANDSHAKE : CS_IDLE;
    gauge_add(c, gauge_of(c), 1);
    if (kind != CLIENT_ADMIN)
        metrics_add(l->metrics, M_CONNECTIONS, 1);
    sock_set_read_limit(&c->sock, input_bound(cfg));
    sock_set_timeouts(&c->sock, 0, cfg->client_send_timeout_ms);
    if (tls) {
        set_state(c, CS_HANDSHAKE);
        sock_handshake(&c->sock);
    } else if (kind == CLIENT_H2C) {
        if (start_h2(c) != 0)
            return NULL;
    } else {
        set_state(c, CS_IDLE);
    }
    /* Read at once, as HAProxy does: no loop turn waiting for epoll. The registration is held until
     * this read's event ends (sock_init_read_now), so a client answered and closed in this turn (an
     * injected fault, an error) costs no epoll_ctl and no libevent bookkeeping at all, nor does one
     * answered soon after (watch_later). A plain client whose request is not there yet costs a read
     * that would block, then waits for epoll as before. Over TLS only with defer_accept: a silent
     * client costs a peek there, and its handshake nothing is saved by (it needs epoll anyway). A
     * plain HTTP/1 client whose read misses waits in the worker's first_wait, which needs no DEL
     * after the close (waitset.h); an h2c one is watched by libevent for its connection's life
     * anyway, and would pay the waitset's ADD on top. */
    if (read_now)
        sock_read_now(&c->sock, kind == CLIENT_H2C ? NULL : l->first_wait);
    return c;
}

struct client *client_new(struct loop *l, int fd, const struct sockaddr *sa, bool tls,
                          enum client_kind kind, bool deferred)
{
    return client_open(l, fd, sa, tls, kind, deferred, event_now_us());
}

struct client *client_new_at(struct loop *l, int fd, const struct sockaddr *sa, bool tls,
                             enum client_kind kind, bool deferred, uint64_t accepted_us)
{
    return client_open(l, fd, sa, tls, kind, deferred, accepted_us);
}
