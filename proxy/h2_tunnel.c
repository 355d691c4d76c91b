/*
 * h2_tunnel.c — an HTTP/2 stream after its WebSocket was switched (RFC 8441): the stream's DATA
 * both ways to and from the origin's connection, which answered the HTTP/1.1 upgrade Portico
 * made of the extended CONNECT with a 101 (h2_stream.c sent the client a 200 instead).
 *
 * As an HTTP/1.1 tunnel (tunnel.c), but one side is a stream: the client's DATA (req_in) goes to
 * the origin's output, its window given back as the origin's socket takes the bytes
 * (h2_stream_request_taken, as for request bodies); what the origin sends goes to the stream's
 * response buffer (body) within the stream's room of its connection's budget, and the origin is
 * not read while the stream may take no more (its DATA waits for the client's window), until
 * check_streams finds it drained (h2_tunnel_drained). A close is a half-close: the client's
 * END_STREAM is a FIN to the origin once all it sent went, the origin's EOF an END_STREAM once
 * all it sent left as DATA; nghttp2 closes the stream once both went, and h2_stream_free frees
 * the tunnel. An origin's error resets the stream behind the bytes it sent before it
 * (pump_remains); a write stall, or tunnel_timeout, resets it at once; the client's RST_STREAM
 * closes the origin's connection. Every end is counted and logged once (tunnel_report_end),
 * with the switched exchange's access line.
 */
#include "h2_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/sock.h"
#include "portico/tunnel.h"
#include "portico/upstream.h"
#include "portico/util.h"

/* What the origin's input may hold beyond what the stream took: one read's worth. */
#define H2_TUNNEL_READ (64 * 1024)

struct h2_tunnel {
    struct h2_stream *s;               /* borrowed: its h2_stream_free frees the tunnel */
    struct upconn *origin;             /* owned; NULL once closed */
    struct sock *sock;                 /* the origin's */
    struct balancer *balancer;         /* where the origin is counted in flight (NULL: nowhere) */
    int origin_index;
    struct access_record *record;      /* owned: the switched exchange's line, NULL: none */
    char request_id[48];
    char origin_addr[64];              /* for the log, once the origin is closed */
    uint64_t bytes[2];                 /* from the client, from the origin */
    bool client_closed;                /* END_STREAM came: the origin gets a FIN behind its bytes */
    bool origin_shut;                  /* ... and it went */
    bool origin_closed;                /* the origin's EOF: END_STREAM behind its bytes */
    bool paused;                       /* the origin is not read: the stream holds its room */
    bool origin_reset;                 /* the origin's error: what it sent before it still goes
                                          to the client, then RST_STREAM (pump_remains) */
    bool ended;                        /* counted and logged (tunnel_report_end) */
    enum tunnel_end why;               /* the first side to close */
    uint64_t idle_us;                  /* tunnel_timeout */
    uint64_t last_us;                  /* a byte moved last */
    uint64_t start_us;
    uint64_t sent_seen;                /* the stream's body_sent at the last look: the client
                                          took bytes since (its window let DATA go) */
    struct event idle_timer;
};

/* Closes the origin connection and gives back its in-flight place, once. */
static void origin_end(struct h2_tunnel *t)
{
    if (!t->origin)
        return;
    upconn_abort(t->origin);
    t->origin = NULL;
    t->sock = NULL;
    if (t->balancer)
        balancer_release(t->balancer, t->origin_index);
}

/* The one count and line of the tunnel's end. */
static void report(struct h2_tunnel *t, enum tunnel_end why)
{
    if (t->ended)
        return;
    t->ended = true;
    event_del(&t->idle_timer);
    tunnel_report_end(t->s->conn->loop, &t->record, t->request_id, t->origin_addr,
                      now_us() - t->start_us, t->bytes, why);
}

/* Ends the tunnel from our side (an origin's error or stall, tunnel_timeout): the origin is
 * closed and the stream reset with code (RFC 9113 8.5: a CONNECT's TCP error is
 * CONNECT_ERROR). */
static void end_by_reset(struct h2_tunnel *t, enum tunnel_end why, uint32_t code)
{
    report(t, why);
    origin_end(t);
    h2_reset(t->s->conn, t->s->id, code);
    h2_want_flush(t->s->conn);
}

/* The client closed and everything it sent went: the origin gets its FIN. */
static void settle(struct h2_tunnel *t)
{
    if (t->client_closed && !t->origin_shut && t->sock && !t->origin_reset &&
        sock_pending(t->sock) == 0 &&
        evbuffer_get_length(t->s->req_in) == 0) {
        t->origin_shut = true;
        sock_shutdown(t->sock);
    }
}

/* Moves n bytes of the origin's input into the stream's response buffer, for DATA. */
static void take_origin(struct h2_tunnel *t, size_t n)
{
    struct h2_stream *s = t->s;
    evbuffer_remove_buffer(t->sock->in, s->body, n);
    t->bytes[1] += n;
    metrics_add(s->conn->loop->metrics, M_TUNNEL_ORIGIN_BYTES, n);
    t->last_us = now_us();
    sock_consumed(t->sock);
    h2_stream_resume(s);
    h2_want_flush(s->conn);
}

/* The origin's bytes into the stream's response buffer, within its room; the origin is paused
 * while the stream may take no more. Its EOF, once all it sent is in, ends the stream's side. */
static void pump_origin(struct h2_tunnel *t)
{
    struct h2_stream *s = t->s;
    if (!t->sock)
        return;
    size_t n = evbuffer_get_length(t->sock->in);
    size_t take = MIN(n, h2_stream_room(s));
    if (take)
        take_origin(t, take);
    bool full = take < n || h2_stream_room(s) == 0;
    if (full) { /* check_streams calls h2_tunnel_drained once it may take more */
        if (!t->paused) {
            t->paused = true;
            sock_read(t->sock, false);
        }
        s->watched = true;
        h2_stream_check(s);
        return;
    }
    if (t->origin_closed && !s->resp_done) {
        s->resp_done = true; /* END_STREAM behind the last DATA (data_read) */
        h2_stream_resume(s);
        h2_want_flush(s->conn);
    }
}

/* The client's DATA to the origin; its window is given back as the origin's socket takes it. */
static void pump_client(struct h2_tunnel *t)
{
    struct h2_stream *s = t->s;
    if (!t->sock || t->origin_reset) { /* nobody to take it */
        evbuffer_drain(s->req_in, SIZE_MAX);
        return;
    }
    size_t n = evbuffer_get_length(s->req_in);
    if (n) {
        evbuffer_add_buffer(t->sock->out, s->req_in);
        t->bytes[0] += n;
        metrics_add(s->conn->loop->metrics, M_TUNNEL_CLIENT_BYTES, n);
        t->last_us = now_us();
        sock_flush(t->sock); /* a failure comes back as SOCK_ERROR */
    }
    if (t->sock)
        h2_stream_request_taken(s, sock_pending(t->sock));
    settle(t);
}

/* After the origin's reset: what it sent before it, in its input and still in its kernel
 * (sock_read_remains), goes into the stream as the stream takes it (check_streams calls
 * h2_tunnel_drained), then the origin is closed; once all of it left as DATA the stream is reset
 * (RFC 9113 8.5: CONNECT_ERROR), behind those bytes as a direct TCP connection would read them
 * (tunnel.c does the same). A client whose window stays shut meets tunnel_timeout. */
static void pump_remains(struct h2_tunnel *t)
{
    struct h2_stream *s = t->s;
    if (t->ended)
        return;
    while (t->sock) {
        size_t n = evbuffer_get_length(t->sock->in), take = MIN(n, h2_stream_room(s));
        if (take)
            take_origin(t, take);
        if (take < n)
            break; /* the stream is full */
        if (sock_read_remains(t->sock) <= 0)
            origin_end(t); /* all it sent is in the stream */
    }
    if (!t->sock && evbuffer_get_length(s->body) == 0) {
        end_by_reset(t, TUNNEL_END_ORIGIN_ERROR, NGHTTP2_CONNECT_ERROR);
        return;
    }
    s->watched = true; /* its bytes leaving bring check_streams back to us */
    h2_stream_check(s);
}

static void origin_cb(void *arg, enum sock_event ev)
{
    struct h2_tunnel *t = arg;
    if (t->origin_reset)
        return; /* nothing more of it but what pump_remains reads */
    switch (ev) {
    case SOCK_READABLE:
        pump_origin(t);
        return;
    case SOCK_DRAINED:
        h2_stream_request_taken(t->s, sock_pending(t->sock));
        settle(t);
        return;
    case SOCK_EOF:
        if (t->origin_closed)
            return;
        t->origin_closed = true;
        if (!t->client_closed)
            t->why = TUNNEL_END_ORIGIN_CLOSED;
        pump_origin(t);
        return;
    case SOCK_ERROR:
        t->origin_reset = true;
        t->why = TUNNEL_END_ORIGIN_ERROR;
        sock_read(t->sock, false);
        pump_remains(t);
        return;
    case SOCK_WRITE_TIMEOUT:
        end_by_reset(t, TUNNEL_END_ORIGIN_STALLED, NGHTTP2_CONNECT_ERROR);
        return;
    case SOCK_CONNECTED:
    case SOCK_READ_TIMEOUT:
    case SOCK_DEADLINE: /* none set */
        return;
    }
}

/* tunnel_timeout: no byte either way, and none of ours taken by the client, for that long. */
static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct h2_tunnel *t = arg;
    uint64_t now = now_us();
    if (t->s->body_sent != t->sent_seen) { /* the client's window let bytes go */
        t->sent_seen = t->s->body_sent;
        t->last_us = MAX(t->last_us, now);
    }
    if (now - t->last_us >= t->idle_us) {
        end_by_reset(t, TUNNEL_END_IDLE, NGHTTP2_CANCEL);
        return;
    }
    struct timeval tv = tv_from_us(t->last_us + t->idle_us - now);
    evtimer_add(&t->idle_timer, &tv);
}

struct h2_tunnel *h2_tunnel_open(struct h2_stream *s, const struct tunnel_origin *origin)
{
    struct loop *l = s->conn->loop;
    struct h2_tunnel *t = zalloc(sizeof(*t));
    if (!t) {
        upconn_abort(origin->conn);
        if (origin->balancer)
            balancer_release(origin->balancer, origin->index);
        if (origin->record) /* the switch's line as it is: no tunnel will end it */
            log_buffer_append(l->log, origin->record);
        free(origin->record);
        return NULL;
    }
    *t = (struct h2_tunnel){.s = s, .origin = origin->conn, .sock = upconn_sock(origin->conn),
                            .balancer = origin->balancer, .origin_index = origin->index,
                            .record = origin->record, .why = TUNNEL_END_CLIENT_CLOSED,
                            .idle_us = origin->idle_ms * 1000, .client_closed = s->req_eof};
    t->last_us = t->start_us = now_us();
    snprintf(t->request_id, sizeof(t->request_id), "%s", origin->request_id);
    snprintf(t->origin_addr, sizeof(t->origin_addr), "%s", upconn_addr(origin->conn));
    s->tunnel = t;
    sock_set_cb(t->sock, origin_cb, t);
    sock_set_read_limit(t->sock, H2_TUNNEL_READ);
    sock_set_timeouts(t->sock, 0, l->cfg->client_send_timeout_ms);
    sock_read(t->sock, true);
    evtimer_assign(&t->idle_timer, l->base, idle_cb, t);
    if (t->idle_us) {
        struct timeval tv = tv_from_us(t->idle_us);
        evtimer_add(&t->idle_timer, &tv);
    }
    /* What either side sent before the switch, and an EOF the origin's 101 came with */
    if (!s->req_eof)
        h2_stream_grant(s); /* the stream's window opens as for an upload */
    pump_client(t);
    if (sock_at_eof(t->sock))
        origin_cb(t, SOCK_EOF);
    else
        pump_origin(t);
    return t;
}

void h2_tunnel_readable(struct h2_tunnel *t)
{
    pump_client(t);
}

void h2_tunnel_client_eof(struct h2_tunnel *t)
{
    if (t->client_closed)
        return;
    t->client_closed = true;
    if (!t->origin_closed && !t->origin_reset) /* the origin's reset came first: it says why */
        t->why = TUNNEL_END_CLIENT_CLOSED;
    pump_client(t);
}

void h2_tunnel_drained(struct h2_tunnel *t)
{
    if (t->origin_reset) {
        pump_remains(t);
        return;
    }
    if (t->paused && t->sock) {
        t->paused = false;
        sock_read(t->sock, true);
    }
    pump_origin(t);
}

void h2_tunnel_free(struct h2_tunnel *t)
{
    if (!t)
        return;
    struct h2_stream *s = t->s;
    /* Both ends went (the stream closed as HTTP/2 closes it): the first to close says why. A
     * stream that closed otherwise was reset by the client, or cut with its connection. */
    bool both = t->client_closed && t->origin_closed && !s->resp_cut;
    enum tunnel_end why = both || t->origin_reset                 ? t->why
                          : s->conn->loop->state == LOOP_STOPPING ? TUNNEL_END_CUT
                                                                  : TUNNEL_END_CLIENT_ERROR;
    report(t, why);
    origin_end(t);
    event_del(&t->idle_timer);
    s->tunnel = NULL;
    free(t);
}
