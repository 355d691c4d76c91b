/*
 * tunnel.c — bytes both ways after 101 Switching Protocols. See tunnel.h.
 *
 * Each side is a sock whose callback is side_cb with that side as argument: what one side reads
 * is moved (evbuffer_add_buffer, no copy) into the other side's output and flushed. While the
 * other's output holds more than TUNNEL_HIGH the reading side is paused; its DRAINED resumes it.
 * An EOF is a half-close: what that side sent is flushed to the other, then a FIN, and the other
 * way goes on (Docker's attach half-closes stdin and reads the output to its end); the tunnel
 * ends once both sides closed and all went out. A closed side that can no longer be written to
 * is gone: the other side gets its last bytes and a FIN, and has TUNNEL_LINGER_MS to close.
 * So is a side whose reset came behind bytes not yet read (a write met it first, or the
 * reset was read behind them): those bytes, in its input and its kernel, go to the other side
 * first, as that side takes them. Any other error or write timeout ends it at once. Every end
 * goes through end_tunnel, which calls the owner back last; it (or tunnel_free, for a cut) writes
 * the switched exchange's access line, held until then so that it tells the tunnel's bytes.
 */
#include "portico/tunnel.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_acked (glibc's has none) */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/sock.h"
#include "portico/upstream.h"
#include "portico/util.h"

/* How long the side that took a gone side's last bytes has to close in turn. */
#define TUNNEL_LINGER_MS 2000

#define TUNNEL_STATE_LIST(X)                                                                       \
    X(TUNNEL_OPEN, "open")         /* bytes flow both ways */                                      \
    X(TUNNEL_HALF, "half")         /* a side closed: what it sent goes out, then a FIN; the other  \
                                      way goes on until that side closes too */                    \
    X(TUNNEL_LINGER, "linger")     /* a closed side is gone: the other, sent its last bytes and a  \
                                      FIN, is read and discarded until it closes */                \
    X(TUNNEL_ENDED, "ended")       /* the owner was told */

enum tunnel_state {
#define X(id, name) id,
    TUNNEL_STATE_LIST(X)
#undef X
};

struct tunnel_side {
    struct tunnel *t;                  /* back pointer for the sock callback */
    struct sock *sock;                 /* borrowed: the client's, or the origin connection's */
    uint64_t bytes;                    /* relayed from this side */
    bool paused;                       /* not read: the other side's output is full */
    bool closed;                       /* its EOF was seen: all it sent is in the other's output */
    bool shut;                         /* sent a FIN, behind all the other side sent */
    bool gone;                         /* closed, and then failed (or stalled) for writing, or
                                          reset: what goes to it is dropped */
    bool reset;                        /* failed with bytes of its own still to read (its reset
                                          behind them): read as the other side takes them */
    uint64_t acked;                    /* bytes its peer had acknowledged at the last look */
};

struct tunnel {
    struct tunnel_side side[2];        /* client, origin */
    struct upconn *origin;             /* owned */
    struct balancer *balancer;         /* where the origin is counted in flight (NULL: nowhere) */
    int origin_index;
    enum tunnel_state state;           /* changed by side_closed, settle, end_tunnel only */
    enum tunnel_end why;               /* why it is ending: the first side to close */
    struct event idle_timer;
    struct event start_ev;             /* the first move, from the loop */
    uint64_t idle_us;
    uint64_t last_us;                  /* a byte moved last (read, or taken by a peer) */
    uint64_t start_us;
    struct metrics *metrics;           /* the worker's shard */
    struct loop *loop;                 /* for its access-log buffer */
    struct access_record *record;      /* owned: the switched exchange's line, NULL: none */
    char request_id[48];               /* of the request that was switched, for the log */
    tunnel_closed_cb *closed;
    void *arg;
};

static struct tunnel_side *other(struct tunnel_side *s)
{
    return s == &s->t->side[0] ? &s->t->side[1] : &s->t->side[0];
}

/* Writes the switched exchange's access line, now that the tunnel ended (nginx writes a
 * WebSocket's when it closes): the bytes each way, counted as portico_tunnel_*_bytes_total
 * count them, the tunnel's life, a total that runs to its end, and how it ended. */
static void write_record(struct access_record *r, uint64_t lived_us, const uint64_t bytes[2],
                         enum tunnel_end why, struct log_buffer *lb)
{
    char detail[320];
    snprintf(detail, sizeof(detail), "%s%stunnel: %s", r->detail ? r->detail : "",
             r->detail ? "; " : "", tunnel_end_words(why));
    r->detail = detail;
    r->time_ms = 0; /* now */
    r->bytes_in += bytes[0];
    r->bytes_out += bytes[1];
    r->tunnel = true;
    r->tunnel_us = lived_us;
    timings_set(&r->timings, TIMING_TOTAL, r->timings.us[TIMING_TOTAL] + lived_us);
    log_buffer_append(lb, r);
}

void tunnel_report_end(struct loop *l, struct access_record **record, const char *request_id,
                       const char *origin, uint64_t lived_us, const uint64_t bytes[2],
                       enum tunnel_end why)
{
    metrics_tunnel_end(l->metrics, why);
    if (*record) {
        write_record(*record, lived_us, bytes, why, l->log);
        free(*record);
        *record = NULL;
    }
    bool closed = why == TUNNEL_END_CLIENT_CLOSED || why == TUNNEL_END_ORIGIN_CLOSED;
    if (closed && !log_level_enabled(LOG_DEBUG))
        return;
    void (*line)(const char *, ...) = closed ? log_debug : log_client;
    line("request %s: tunnel to %s ended after %.3f s: %s (%llu bytes from the client, %llu "
         "from the origin)",
         request_id, origin, (double)lived_us / 1e6, tunnel_end_words(why),
         (unsigned long long)bytes[0], (unsigned long long)bytes[1]);
}

static void report_end(struct tunnel *t, enum tunnel_end why)
{
    tunnel_report_end(t->loop, &t->record, t->request_id, upconn_addr(t->origin),
                      now_us() - t->start_us,
                      (uint64_t[2]){t->side[0].bytes, t->side[1].bytes}, why);
}

/* The one end: timers off, the owner told last. */
static void end_tunnel(struct tunnel *t, enum tunnel_end why)
{
    if (t->state == TUNNEL_ENDED)
        return;
    t->state = TUNNEL_ENDED;
    event_del(&t->idle_timer);
    event_del(&t->start_ev);
    report_end(t, why);
    t->closed(t->arg, tunnel_end_words(why));
}

/* Moves what from read into to's output; pauses from while to's output is full. */
static void pump(struct tunnel_side *from)
{
    struct tunnel *t = from->t;
    struct tunnel_side *to = other(from);
    size_t n = evbuffer_get_length(from->sock->in);
    if (to->gone || t->state == TUNNEL_ENDED) {
        evbuffer_drain(from->sock->in, n); /* nowhere to go */
        sock_consumed(from->sock);
        return;
    }
    if (n) {
        evbuffer_add_buffer(to->sock->out, from->sock->in);
        from->bytes += n;
        metrics_add(t->metrics, from == &t->side[0] ? M_TUNNEL_CLIENT_BYTES : M_TUNNEL_ORIGIN_BYTES,
                    n);
        t->last_us = now_us();
        sock_consumed(from->sock);
        sock_flush(to->sock); /* a failure comes back as SOCK_ERROR on to */
    }
    if (sock_pending(to->sock) > TUNNEL_HIGH && !from->paused) {
        from->paused = true;
        sock_read(from->sock, false);
    }
}

static void side_closed(struct tunnel_side *s);

/* s failed (reset) with bytes it sent before that still to read: its input, and what its
 * kernel holds (sock_read_remains), go to the other side as the other side takes them; once
 * none are left, s is closed. Its caller settles. */
static void pump_remains(struct tunnel_side *s)
{
    do {
        pump(s);
        if (s->paused)
            return; /* the other side's DRAINED brings us back (resume) */
    } while (sock_read_remains(s->sock) > 0);
    bool open = s->t->state == TUNNEL_OPEN;
    side_closed(s);
    if (open) /* a reset, not a close: the tunnel ends as s's error */
        s->t->why = s == &s->t->side[0] ? TUNNEL_END_CLIENT_ERROR : TUNNEL_END_ORIGIN_ERROR;
}

/* from's output drained (or is below the mark): the side that waited on it reads again. */
static void resume(struct tunnel_side *drained)
{
    struct tunnel_side *waiting = other(drained);
    if (!waiting->paused || sock_pending(drained->sock) > TUNNEL_HIGH)
        return;
    waiting->paused = false;
    if (waiting->reset) {
        pump_remains(waiting);
        return;
    }
    sock_read(waiting->sock, true);
    pump(waiting);
}

/* Where the closes stand: each closed side's bytes, once all written, get a FIN behind them;
 * both closed and every FIN sent (or its side gone) is the end. A gone side's peer has its FIN
 * and is read (and discarded) until it closes too: closing it at once would reset it whenever it
 * had sent bytes we did not read, and a reset throws away what its socket has not sent yet.
 * Called last: it may end the tunnel. */
static void settle(struct tunnel *t)
{
    bool done = true;
    for (int i = 0; i < 2; i++) {
        struct tunnel_side *s = &t->side[i], *peer = other(s);
        if (peer->closed && !s->shut && !s->gone && sock_flush(s->sock) == 0) {
            s->shut = true;
            /* A TLS peer's FIN without close_notify can be anyone's: the other side gets a FIN
             * alone too, not a close_notify that would vouch for the end (RFC 9112 9.8). Either
             * way: a client's is told apart too (tls_end_cut). */
            if (sock_tls_cut(peer->sock))
                sock_shutdown_cut(s->sock);
            else
                sock_shutdown(s->sock);
        }
        done = done && s->closed && (s->shut || s->gone);
    }
    if (done) {
        end_tunnel(t, t->why);
        return;
    }
    struct tunnel_side *left = t->side[0].gone ? &t->side[1] : &t->side[0];
    if (t->state != TUNNEL_HALF || !other(left)->gone || !left->shut)
        return;
    t->state = TUNNEL_LINGER;
    left->paused = false;
    sock_read(left->sock, true);
    pump(left); /* discards what it had sent */
    event_del(&t->idle_timer);
    struct timeval tv = tv_from_ms(TUNNEL_LINGER_MS);
    evtimer_add(&t->idle_timer, &tv);
}

/* s's EOF: what it sent goes to the other side; settle() sends the FIN behind it. */
static void side_closed(struct tunnel_side *s)
{
    struct tunnel *t = s->t;
    pump(s);
    s->closed = true;
    if (t->state == TUNNEL_OPEN) {
        t->state = TUNNEL_HALF;
        t->why = s == &t->side[0] ? TUNNEL_END_CLIENT_CLOSED : TUNNEL_END_ORIGIN_CLOSED;
    }
}

/* A closed side that failed, or stalled, for writing: what was queued for it is dropped, and
 * its peer, if paused for it, is read (and discarded) again. */
static void side_gone(struct tunnel_side *s)
{
    s->gone = true;
    evbuffer_drain(s->sock->out, evbuffer_get_length(s->sock->out));
    resume(s);
    settle(s->t);
}

static void side_cb(void *arg, enum sock_event ev)
{
    struct tunnel_side *s = arg;
    struct tunnel *t = s->t;
    switch (ev) {
    case SOCK_READABLE:
        pump(s);
        return;
    case SOCK_DRAINED:
        resume(s);
        if (t->state != TUNNEL_OPEN)
            settle(t); /* a FIN may go behind what just went out */
        return;
    case SOCK_EOF:
        if (!s->closed) {
            side_closed(s);
            settle(t);
        }
        return;
    case SOCK_ERROR:
        if (s->closed) {
            if (!s->gone)
                side_gone(s); /* the other side still gets its last bytes */
            return;
        }
        /* What s sent ahead of its reset goes to the other side, as a direct connection
         * would read it, and s is gone; the tunnel ends as s's error. A write to s may meet
         * the reset before those bytes were read (a server that says its last and aborts,
         * while the client sends), however many its kernel holds behind a paused read. Or
         * they were read with the reset behind them, before the tunnel's first move (the
         * 101's burst). */
        if (evbuffer_get_length(s->sock->in) > 0 || sock_read_remains(s->sock) > 0) {
            s->reset = true;
            side_gone(s);
            pump_remains(s);
            settle(t);
            return;
        }
        end_tunnel(t, s == &t->side[0] ? TUNNEL_END_CLIENT_ERROR : TUNNEL_END_ORIGIN_ERROR);
        return;
    case SOCK_WRITE_TIMEOUT:
        if (s->closed) {
            if (!s->gone)
                side_gone(s);
            return;
        }
        end_tunnel(t, s == &t->side[0] ? TUNNEL_END_CLIENT_STALLED : TUNNEL_END_ORIGIN_STALLED);
        return;
    case SOCK_CONNECTED:
    case SOCK_READ_TIMEOUT:
    case SOCK_DEADLINE: /* none set */
        return;
    }
}

/* Moves last_us to the last time a peer acknowledged new bytes. A slow reader keeps taking
 * bytes while the other side is paused for it (back-pressure) and nothing is read or written
 * here, for as long as the kernel's buffers take to empty: that is no idle tunnel. */
static void peers_took(struct tunnel *t, uint64_t now)
{
    for (int i = 0; i < 2; i++) {
        struct tunnel_side *s = &t->side[i];
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        if (getsockopt(s->sock->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
            len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked) ||
            ti.tcpi_bytes_acked == s->acked)
            continue;
        s->acked = ti.tcpi_bytes_acked;
        uint64_t at = now - MIN(now, (uint64_t)ti.tcpi_last_ack_recv * 1000);
        t->last_us = MAX(t->last_us, at);
    }
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct tunnel *t = arg;
    if (t->state == TUNNEL_LINGER) {
        end_tunnel(t, t->why); /* a gone side's peer did not close within TUNNEL_LINGER_MS */
        return;
    }
    uint64_t now = now_us();
    if (now - t->last_us >= t->idle_us)
        peers_took(t, now);
    if (now - t->last_us >= t->idle_us) {
        end_tunnel(t, TUNNEL_END_IDLE);
        return;
    }
    struct timeval tv = tv_from_us(t->last_us + t->idle_us - now);
    evtimer_add(&t->idle_timer, &tv);
}

/* What both sides sent before the tunnel existed, and an EOF already seen. settle() last: it
 * may end (and free) the tunnel. */
static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct tunnel *t = arg;
    for (int i = 0; i < 2; i++) {
        if (t->side[i].closed || t->side[i].reset) /* its EOF or reset came first (side_cb) */
            continue;
        if (sock_at_eof(t->side[i].sock))
            side_closed(&t->side[i]);
        else
            pump(&t->side[i]);
    }
    if (t->state != TUNNEL_OPEN)
        settle(t);
}

/* Closes the origin connection and gives back its in-flight place: once per tunnel_origin. */
static void origin_end(struct upconn *conn, struct balancer *b, int index)
{
    upconn_abort(conn);
    if (b)
        balancer_release(b, index);
}

struct tunnel *tunnel_open(struct loop *l, struct sock *client, const struct tunnel_origin *origin,
                           tunnel_closed_cb *closed, void *arg)
{
    struct tunnel *t = zalloc(sizeof(*t));
    if (!t) {
        origin_end(origin->conn, origin->balancer, origin->index);
        if (origin->record) /* the 101's line as it is: no tunnel will end it */
            log_buffer_append(l->log, origin->record);
        free(origin->record);
        return NULL;
    }
    t->origin = origin->conn;
    t->balancer = origin->balancer;
    t->origin_index = origin->index;
    t->closed = closed;
    t->arg = arg;
    t->idle_us = origin->idle_ms * 1000;
    t->last_us = t->start_us = now_us();
    t->metrics = l->metrics;
    t->loop = l;
    t->record = origin->record;
    snprintf(t->request_id, sizeof(t->request_id), "%s", origin->request_id);
    struct sock *socks[2] = {client, upconn_sock(origin->conn)};
    for (int i = 0; i < 2; i++) {
        t->side[i] = (struct tunnel_side){.t = t, .sock = socks[i]};
        sock_set_cb(socks[i], side_cb, &t->side[i]);
        sock_set_read_limit(socks[i], TUNNEL_HIGH);
        sock_set_timeouts(socks[i], 0, l->cfg->client_send_timeout_ms);
        sock_read(socks[i], true);
    }
    evtimer_assign(&t->idle_timer, l->base, idle_cb, t);
    event_assign(&t->start_ev, l->base, -1, 0, start_cb, t);
    struct timeval tv = tv_from_ms(origin->idle_ms);
    evtimer_add(&t->idle_timer, &tv);
    event_active(&t->start_ev, EV_TIMEOUT, 1);
    return t;
}

void tunnel_free(struct tunnel *t)
{
    if (!t)
        return;
    if (t->state != TUNNEL_ENDED)
        report_end(t, TUNNEL_END_CUT); /* its owner is closing it: Portico is stopping */
    event_del(&t->idle_timer);
    event_del(&t->start_ev);
    sock_set_cb(t->side[0].sock, NULL, NULL); /* the owner sets its own, or closes it */
    origin_end(t->origin, t->balancer, t->origin_index);
    free(t);
}
