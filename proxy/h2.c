/*
 * h2.c — HTTP/2 client connections and the downstream interface of their streams. See h2.h.
 *
 * ONE SESSION, MANY EXCHANGES. nghttp2 parses frames, keeps HPACK and flow-control state and
 * schedules what goes out; everything else is Portico's: each request stream builds an HTTP/1.1
 * head (h2_request.c), parses it with h1_parse_request and starts an exchange on it, whose
 * downstream operations below turn into nghttp2 submissions.
 *
 * WHO CALLS nghttp2 WHEN. nghttp2_session_mem_recv and _mem_send run only from this file's own
 * libevent callbacks (the sock's events, the timers, the deferred `later` event), never from
 * inside an exchange: the downstream operations only submit frames (allowed inside nghttp2's
 * callbacks too) and ask for a flush, which happens at the end of our callback or, when an
 * exchange's own event called them, from `later` on the same loop turn. So a stream closed by
 * nghttp2 (which cancels its exchange) never pulls an exchange out from under its own call
 * stack, and the connection ends (owner's done()) only as the last act of one of our callbacks.
 *
 * BODIES. Response: the exchange's body relay appends to the stream's `body` buffer; a data
 * provider hands it to nghttp2 with NO_COPY, and send_data moves it into the socket's output
 * with evbuffer_remove_buffer (no copy). Frames are made only while the socket output holds
 * less than OUT_HIGH; pending() counts the stream's buffer and the shared output, so origins
 * pause while either is full. Request: DATA is copied into the stream's `req_in` (nghttp2 owns
 * its input); the connection window is opened at once, the stream window only as the exchange
 * takes the bytes for the origin, so a stream holds at most STREAM_WINDOW bytes and a slow
 * origin stalls its stream, never the others.
 *
 * FLOODS. Debian 12's libnghttp2 (1.52 with backports) limits CONTINUATION frames, pending
 * acknowledgements and RST_STREAM rates (its own bucket: 1000, then 33/s), and has no counter of
 * cheap frames. Portico keeps its own token buckets per connection: resets (streams the client
 * reset while they were running, and requests reset as malformed) and control frames (SETTINGS,
 * PING, PRIORITY, empty DATA); an empty bucket ends the connection with GOAWAY
 * ENHANCE_YOUR_CALM, counted by kind. A window kept shut while data waits, or a header block
 * left unfinished, for as long as the client timeouts allow, ends it the same way.
 */
#include "portico/h2.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "portico/config.h"
#include "portico/downstream.h"
#include "portico/errpage.h"
#include "portico/exchange.h"
#include "portico/h2_request.h"
#include "portico/headers.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/sock.h"
#include "portico/status.h"
#include "portico/timing.h"
#include "portico/trace.h"
#include "portico/util.h"

#define STREAM_WINDOW (128 * 1024)     /* request body bytes a stream may send ahead */
#define CONN_WINDOW (1024 * 1024)      /* opened at once as DATA arrives: streams limit it */
#define OUT_HIGH (256 * 1024)          /* frames are made while the socket output is below */
#define RESUME_BELOW (64 * 1024)       /* a paused exchange is told once its stream is below */

/* Token buckets: burst, then tokens per second. */
#define FLOOD_LIST(X)                                                                              \
    X(FLOOD_RESET, "rapid reset", M_H2_FLOOD_RESET, 200, 20)                                      \
    X(FLOOD_CONTROL, "control-frame flood", M_H2_FLOOD_CONTROL, 1000, 100)                        \
    X(FLOOD_CONTINUATION, "CONTINUATION flood", M_H2_FLOOD_CONTINUATION, 0, 0)                    \
    X(FLOOD_ACKS, "acknowledgement flood", M_H2_FLOOD_ACKS, 0, 0)                                 \
    X(FLOOD_STALLED, "flow-control window kept shut", M_H2_STALLED, 0, 0)

enum flood {
#define X(id, name, metric, burst, rate) id,
    FLOOD_LIST(X)
#undef X
    FLOOD_COUNT
};

static const struct {
    const char *name;
    enum metric_id metric;
    double burst;
    double rate;
} flood_rows[] = {
#define X(id, name, metric, burst, rate) [id] = {name, metric, burst, rate},
    FLOOD_LIST(X)
#undef X
};

struct bucket {
    double tokens;
    uint64_t at;                       /* µs of the last refill */
};

/* Where a stream is: its request head arriving, an exchange running, or the exchange over and
 * its response still leaving. */
#define STREAM_STATE_LIST(X)                                                                       \
    X(ST_HEAD, "head")                                                                             \
    X(ST_EXCHANGE, "exchange")                                                                     \
    X(ST_ANSWERED, "answered")

enum stream_state {
#define X(id, name) id,
    STREAM_STATE_LIST(X)
#undef X
};

struct h2_stream {
    TAILQ_ENTRY(h2_stream) link;
    struct h2_conn *conn;              /* borrowed */
    int32_t id;
    enum stream_state state;
    struct h2_request req;             /* the head being translated (ST_HEAD) */
    const char *malformed;             /* static: why the request was reset, NULL if not */
    struct exchange *ex;               /* while ST_EXCHANGE: ends itself, calls done() */
    uint64_t t0;                       /* µs: the HEADERS frame began */
    struct evbuffer *req_in;           /* request body from DATA, for the exchange */
    size_t req_counted;                /* bytes of req_in not yet given back to the window */
    bool req_eof;                      /* END_STREAM received */
    uint64_t body_timeout_us;          /* client_body_timeout while the exchange waits */
    uint64_t data_at;                  /* µs: the last DATA, or when the wait began */
    struct event body_timer;
    struct evbuffer *body;             /* response body for DATA frames */
    bool resp_done;                    /* all of the body is in `body` */
    bool deferred;                     /* the data provider waits for bytes */
    bool watched;                      /* pending() was asked: tell the exchange when it drains */
    uint64_t stalled_since;            /* µs: data waits behind a shut window; 0 if not */
};

TAILQ_HEAD(h2_stream_list, h2_stream);

struct h2_conn {
    struct loop *loop;                 /* borrowed */
    const struct config *cfg;          /* borrowed: the loop's */
    struct sock *sock;                 /* borrowed from the owner */
    const struct peer *peer;           /* borrowed from the owner */
    struct h2_owner owner;
    nghttp2_session *session;
    struct h2_stream_list streams;
    unsigned nstreams;
    struct event later;                /* deferred flush and end, from the loop */
    struct event timer;                /* the earliest connection deadline */
    int depth;                         /* inside one of our callbacks: flush at its end */
    bool flushing;
    bool again;                        /* a flush was asked for during one */
    bool settings_acked;
    uint64_t started;                  /* µs */
    uint64_t idle_since;               /* µs: the last stream closed (or the start) */
    uint64_t head_since;               /* µs: a header block is unfinished; 0 if none */
    struct bucket buckets[FLOOD_COUNT];
    const char *end_why;               /* set: the connection ends at the end of this callback */
};

static void settle(struct h2_conn *h);

/* ---- ending the connection ---- */

/* Queues GOAWAY (with the last stream id processed) and marks the connection for its end. */
static void conn_end(struct h2_conn *h, uint32_t code, const char *why)
{
    if (h->end_why)
        return;
    h->end_why = why;
    nghttp2_session_terminate_session(h->session, code);
}

static void flood(struct h2_conn *h, enum flood kind)
{
    if (h->end_why)
        return;
    metrics_add(h->loop->metrics, flood_rows[kind].metric, 1);
    log_error("client %s: HTTP/2 %s: GOAWAY", h->peer->addr, flood_rows[kind].name);
    conn_end(h, NGHTTP2_ENHANCE_YOUR_CALM, flood_rows[kind].name);
}

/* Takes one token of kind; an empty bucket is a flood. */
static void charge(struct h2_conn *h, enum flood kind)
{
    struct bucket *b = &h->buckets[kind];
    uint64_t now = now_us();
    b->tokens = MIN(flood_rows[kind].burst,
                    b->tokens + (double)(now - b->at) / 1e6 * flood_rows[kind].rate);
    b->at = now;
    if (b->tokens < 1) {
        flood(h, kind);
        return;
    }
    b->tokens -= 1;
}

/* ---- streams ---- */

static struct h2_stream *stream_of(struct h2_conn *h, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(h->session, id) : NULL;
}

static void body_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct h2_stream *stream_new(struct h2_conn *h, int32_t id)
{
    struct h2_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->req_in = evbuffer_new();
    s->body = evbuffer_new();
    if (!s->req_in || !s->body) {
        if (s->req_in)
            evbuffer_free(s->req_in);
        if (s->body)
            evbuffer_free(s->body);
        free(s);
        return NULL;
    }
    s->conn = h;
    s->id = id;
    s->t0 = now_us();
    h2_request_init(&s->req, h->cfg->max_header_size);
    evtimer_assign(&s->body_timer, h->loop->base, body_timer_cb, s);
    TAILQ_INSERT_TAIL(&h->streams, s, link);
    h->nstreams++;
    metrics_add(h->loop->metrics, M_H2_STREAMS, 1);
    return s;
}

static void stream_free(struct h2_stream *s, const char *why)
{
    struct h2_conn *h = s->conn;
    if (s->ex) {
        struct exchange *ex = s->ex;
        s->ex = NULL;
        exchange_cancel(ex, why);
    }
    event_del(&s->body_timer);
    evbuffer_free(s->req_in);
    evbuffer_free(s->body);
    h2_request_free(&s->req);
    TAILQ_REMOVE(&h->streams, s, link);
    if (--h->nstreams == 0)
        h->idle_since = now_us();
    free(s);
}

/* Asks for a flush: at the end of our callback, or from the loop when an exchange's own event
 * called us. */
static void want_flush(struct h2_conn *h)
{
    if (h->depth > 0)
        h->again = true;
    else
        event_active(&h->later, EV_TIMEOUT, 1);
}

/* ---- response heads ---- */

/* Fields HTTP/2 forbids in a response (RFC 9113 8.2.2); the exchange's heads are HTTP/1.1's. */
static bool connection_specific(const struct h1_field *f)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade", "te"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (h1_name_is(f, names[i]))
            return true;
    return false;
}

/* A resp_head as nghttp2 name/value pairs, names lowercased into one allocation (nghttp2 copies
 * both on submit). Returns the count, or -1 when out of memory; *store is freed by the caller. */
static int head_nv(const struct resp_head *head, bool with_length, nghttp2_nv *nv, size_t max,
                   char **store)
{
    size_t bytes = 3 + 21;
    for (size_t i = 0; i < head->nfields; i++)
        bytes += head->fields[i].name_len;
    char *p = malloc(bytes);
    if (!p)
        return -1;
    *store = p;
    int status = head->status >= 100 && head->status <= 999 ? head->status : HTTP_BAD_GATEWAY;
    snprintf(p, 4, "%03d", status);
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)p, 7, 3, NGHTTP2_NV_FLAG_NONE};
    p += 3;
    for (size_t i = 0; i < head->nfields && n < max - 1; i++) {
        const struct h1_field *f = &head->fields[i];
        if (connection_specific(f))
            continue;
        for (size_t k = 0; k < f->name_len; k++)
            p[k] = (char)((f->name[k] >= 'A' && f->name[k] <= 'Z') ? f->name[k] + 32 : f->name[k]);
        nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)(uintptr_t)f->value, f->name_len,
                               f->value_len, NGHTTP2_NV_FLAG_NONE};
        p += f->name_len;
    }
    if (with_length) {
        int len = snprintf(p, 21, "%llu", (unsigned long long)head->content_length);
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)p, 14, (size_t)len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    return (int)n;
}

static ssize_t data_read(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user)
{
    (void)session, (void)id, (void)buf, (void)user;
    struct h2_stream *s = source->ptr;
    size_t avail = evbuffer_get_length(s->body);
    if (avail == 0 && !s->resp_done) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = MIN(avail, length);
    if (n)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && s->resp_done)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Submits a response head; a body follows through data_read unless framing is NONE. */
static void submit_head(struct h2_stream *s, const struct resp_head *head, bool final)
{
    struct h2_conn *h = s->conn;
    nghttp2_nv nv[HDR_MAX_FIELDS + 2];
    char *store = NULL;
    bool body = final && head->framing != H1_BODY_NONE;
    int n = head_nv(head, body && head->framing == H1_BODY_LENGTH, nv, ARRAY_LEN(nv), &store);
    int rc = -1;
    if (n > 0 && !final) {
        rc = nghttp2_submit_headers(h->session, NGHTTP2_FLAG_NONE, s->id, NULL, nv, (size_t)n,
                                    NULL);
    } else if (n > 0) {
        nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
        if (!body)
            s->resp_done = true;
        rc = nghttp2_submit_response(h->session, s->id, nv, (size_t)n, body ? &prd : NULL);
    }
    free(store);
    if (rc != 0)
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    want_flush(h);
}

/* ---- the downstream interface ---- */

static void ds_interim(void *ctx, const struct resp_head *head)
{
    submit_head(ctx, head, false);
}

static void ds_head(void *ctx, const struct resp_head *head, struct body_sink *sink)
{
    struct h2_stream *s = ctx;
    *sink = (struct body_sink){.out = s->body, .chunked = false};
    submit_head(s, head, true);
}

static void resume(struct h2_stream *s)
{
    if (!s->deferred)
        return;
    s->deferred = false;
    nghttp2_session_resume_data(s->conn->session, s->id);
}

static void ds_body(void *ctx)
{
    struct h2_stream *s = ctx;
    if (evbuffer_get_length(s->body))
        resume(s);
    want_flush(s->conn);
}

static size_t ds_pending(void *ctx)
{
    struct h2_stream *s = ctx;
    /* The connection's output is every stream's: while it is full, all of them wait. */
    size_t n = evbuffer_get_length(s->body) + sock_pending(s->conn->sock);
    s->watched |= n > 0;
    return n;
}

static struct evbuffer *ds_request_input(void *ctx)
{
    struct h2_stream *s = ctx;
    return s->req_in;
}

/* Gives the bytes the exchange took from req_in back to the stream's window. */
static void ds_request_taken(void *ctx)
{
    struct h2_stream *s = ctx;
    size_t left = evbuffer_get_length(s->req_in);
    if (left < s->req_counted) {
        nghttp2_session_consume_stream(s->conn->session, s->id, s->req_counted - left);
        s->req_counted = left;
        want_flush(s->conn);
    }
}

static void arm_body_timer(struct h2_stream *s, uint64_t now)
{
    uint64_t deadline = s->data_at + s->body_timeout_us;
    struct timeval tv = tv_from_us(deadline > now ? deadline - now : 0);
    evtimer_add(&s->body_timer, &tv);
}

static void ds_request_wait(void *ctx, uint64_t body_timeout_ms)
{
    struct h2_stream *s = ctx;
    s->body_timeout_us = body_timeout_ms * 1000;
    s->data_at = now_us();
    event_del(&s->body_timer);
    if (s->body_timeout_us && !s->req_eof)
        arm_body_timer(s, s->data_at);
}

static void ds_done(void *ctx, enum exchange_end end)
{
    struct h2_stream *s = ctx;
    s->ex = NULL;
    s->state = ST_ANSWERED;
    event_del(&s->body_timer);
    if (end == END_ABORT) {
        /* The response was cut short: the client must see it failed. */
        evbuffer_drain(s->body, SIZE_MAX);
        nghttp2_submit_rst_stream(s->conn->session, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_INTERNAL_ERROR);
    } else {
        s->resp_done = true;
        s->deferred = true; /* resume: the provider may be waiting for its EOF */
        resume(s);
    }
    want_flush(s->conn);
}

static const struct downstream_ops h2_ops = {
    .interim = ds_interim,
    .head = ds_head,
    .body = ds_body,
    .pending = ds_pending,
    .request_input = ds_request_input,
    .request_taken = ds_request_taken,
    .request_wait = ds_request_wait,
    .done = ds_done,
};

/* ---- requests ---- */

/* The access line and count of a request answered or reset before any exchange existed. */
static void log_refused(struct h2_stream *s, const char *id, int status, const char *why,
                        uint64_t body_bytes)
{
    struct h2_conn *h = s->conn;
    struct timings t = {0};
    timings_set(&t, TIMING_TOTAL, now_us() - s->t0);
    metrics_request_done(h->loop->metrics, &(struct metrics_sample){-1, -1, status, FAIL_NONE, &t});
    if (!log_enabled())
        return;
    struct trace_context trace;
    trace_start(&h->loop->rng, 0, &trace);
    struct access_record r = {
        .request_id = id,
        .trace_id = trace.trace_id,
        .client = h->peer->addr,
        .proto = LOG_PROTO_HTTP20,
        .status = status,
        .phase = PHASE_CLIENT_HEADER,
        .bytes_out = body_bytes,
        .timings = t,
        .detail = why,
    };
    h2_request_line(&s->req, &r.method, &r.method_len, &r.target, &r.target_len);
    log_buffer_append(h->loop->log, &r);
}

/* A request refused before an exchange exists (head too large, not HTTP/1.1-valid): the
 * response Portico writes itself, as client.c does for HTTP/1.1. */
static void refuse(struct h2_stream *s, int status, const char *why)
{
    char id[48];
    loop_request_id(s->conn->loop, id, sizeof(id));
    struct errpage e = {.status = status, .failure = FAIL_NONE, .reason = why, .request_id = id};
    struct errpage_out o;
    errpage_prepare(&e, &o);
    s->state = ST_ANSWERED;
    submit_head(s, &o.head, true);
    long body = errpage_body(&o, s->body);
    s->resp_done = true;
    resume(s);
    log_refused(s, id, status, why, body > 0 ? (uint64_t)body : 0);
}

/* A malformed request (RFC 9113 8.1.1): logged as 400, counted against the reset budget. */
static void mark_malformed(struct h2_stream *s, const char *why)
{
    struct h2_conn *h = s->conn;
    if (s->malformed)
        return;
    s->malformed = why;
    metrics_add(h->loop->metrics, M_H2_MALFORMED, 1);
    char id[48];
    loop_request_id(h->loop, id, sizeof(id));
    char detail[160];
    snprintf(detail, sizeof(detail), "malformed HTTP/2 request: %s", why);
    log_refused(s, id, HTTP_BAD_REQUEST, detail, 0);
    charge(h, FLOOD_RESET);
}

/* ... and reset: a stream error of type PROTOCOL_ERROR. */
static void reset_malformed(struct h2_stream *s, const char *why)
{
    if (s->malformed)
        return;
    mark_malformed(s, why);
    nghttp2_submit_rst_stream(s->conn->session, NGHTTP2_FLAG_NONE, s->id,
                              NGHTTP2_PROTOCOL_ERROR);
}

/* The request's header block is complete: translate, check, start its exchange. */
static void start_request(struct h2_stream *s, bool end_stream)
{
    struct h2_conn *h = s->conn;
    s->req_eof = end_stream;
    char *head = NULL;
    size_t len = 0;
    int rc = h2_request_finish(&s->req, &head, &len);
    if (rc == -1) {
        reset_malformed(s, s->req.error);
        return;
    }
    if (rc == 431) {
        refuse(s, HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
               "request head larger than max_header_size");
        return;
    }
    struct h1_limits lim = {.max_request_line = h->cfg->max_request_line,
                            .max_head = h->cfg->max_header_size};
    struct h1_request req;
    struct h1_error err;
    int n = h1_parse_request(head, len, &lim, &req, &err);
    if (n != (int)len) {
        free(head);
        refuse(s, n == -1 ? err.status : HTTP_BAD_REQUEST,
               n == -1 ? err.reason : "request head not complete");
        return;
    }
    struct downstream ds = {.ops = &h2_ops, .ctx = s, .peer = h->peer, .proto = PROTO_HTTP2,
                            .body_until_eof = !end_stream};
    s->ex = exchange_start(h->loop, &ds, head, len, &req, s->t0);
    free(head);
    if (!s->ex) {
        refuse(s, HTTP_SERVICE_UNAVAILABLE, "out of memory");
        return;
    }
    s->state = ST_EXCHANGE;
    h2_request_free(&s->req); /* the exchange has its own copy */
    exchange_run(s->ex);      /* may end it: done() was called then */
}

static void request_eof(struct h2_stream *s)
{
    s->req_eof = true;
    event_del(&s->body_timer);
    if (s->ex)
        exchange_request_eof(s->ex);
}

static void body_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct h2_stream *s = arg;
    struct h2_conn *h = s->conn;
    uint64_t now = now_us();
    if (!s->ex || s->req_eof)
        return;
    if (now < s->data_at + s->body_timeout_us) {
        arm_body_timer(s, now); /* DATA came since: the deadline moved */
        return;
    }
    h->depth++;
    exchange_request_timeout(s->ex); /* 408, or a reset when the response started */
    h->depth--;
    settle(h);
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct h2_conn *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *s = stream_new(h, frame->hd.stream_id);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user)
{
    (void)session, (void)flags;
    struct h2_stream *s = stream_of(user, frame->hd.stream_id);
    /* Trailers of a request are not forwarded (the body goes to the origin as it comes). */
    if (!s || s->state != ST_HEAD || s->malformed || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h2_request_field(&s->req, (const char *)name, name_len, (const char *)value,
                         value_len) != 0)
        reset_malformed(s, s->req.error);
    return 0;
}

/* A field nghttp2 would ignore (a name that is not a token): malformed here, like any other. */
static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame,
                             const uint8_t *name, size_t name_len, const uint8_t *value,
                             size_t value_len, uint8_t flags, void *user)
{
    (void)session, (void)name, (void)name_len, (void)value, (void)value_len, (void)flags;
    struct h2_stream *s = stream_of(user, frame->hd.stream_id);
    if (s && s->state == ST_HEAD)
        reset_malformed(s, "invalid field name");
    return 0;
}

/* nghttp2's own checks failed (its HTTP messaging rules): it resets the stream itself. */
static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame, int error,
                            void *user)
{
    (void)session;
    struct h2_conn *h = user;
    struct h2_stream *s = stream_of(h, frame->hd.stream_id);
    if (frame->hd.type == NGHTTP2_HEADERS)
        h->head_since = 0; /* the block ended, to be ignored */
    if (!s)
        return 0;
    if (s->state == ST_HEAD)
        mark_malformed(s, error == NGHTTP2_ERR_HTTP_HEADER
                              ? "invalid field or pseudo-header field (RFC 9113 8.2, 8.3)"
                              : "missing or invalid pseudo-header fields (RFC 9113 8.3.1)");
    else if (error == NGHTTP2_ERR_HTTP_MESSAGING && !s->malformed)
        s->malformed = "content-length disagrees with the DATA received";
    return 0;
}

/* A header block spans HEADERS and its CONTINUATION frames; nothing may come between them, so
 * any other frame beginning means the block is over. An unfinished one has a deadline. */
static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user)
{
    (void)session;
    struct h2_conn *h = user;
    if (hd->type == NGHTTP2_HEADERS)
        h->head_since = now_us();
    else if (hd->type != NGHTTP2_CONTINUATION)
        h->head_since = 0;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    struct h2_conn *h = user;
    nghttp2_session_consume_connection(session, len);
    struct h2_stream *s = stream_of(h, id);
    if (!s || !s->ex) {
        /* Nobody reads it any more (answered, or refused): let it through the window. */
        nghttp2_session_consume_stream(session, id, len);
        return 0;
    }
    /* Copy before nghttp2 moves on: data points into the input being parsed. */
    evbuffer_add(s->req_in, data, len);
    s->req_counted += len;
    s->data_at = now_us();
    exchange_request_readable(s->ex);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    (void)session;
    struct h2_conn *h = user;
    struct h2_stream *s = stream_of(h, frame->hd.stream_id);
    bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        h->head_since = 0;
        if (s && s->state == ST_HEAD && !s->malformed &&
            frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            start_request(s, end_stream);
        else if (s && end_stream && s->state != ST_HEAD)
            request_eof(s); /* trailers */
        break;
    case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !end_stream)
            charge(h, FLOOD_CONTROL);
        if (s && end_stream)
            request_eof(s);
        break;
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            h->settings_acked = true;
        else
            charge(h, FLOOD_CONTROL);
        break;
    case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            charge(h, FLOOD_CONTROL);
        break;
    case NGHTTP2_PRIORITY:
        charge(h, FLOOD_CONTROL);
        break;
    case NGHTTP2_RST_STREAM:
        /* A stream reset while Portico was still working on it: the rapid-reset pattern. */
        if (s && s->state != ST_ANSWERED)
            charge(h, FLOOD_RESET);
        break;
    default:
        break;
    }
    return 0;
}

/* After our END_STREAM: a request body still coming is not wanted (RFC 9113 8.1). */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct h2_stream *s = stream_of(user, frame->hd.stream_id);
    if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->req_eof &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS))
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *source, void *user)
{
    (void)session, (void)frame;
    struct h2_conn *h = user;
    struct h2_stream *s = source->ptr;
    evbuffer_add(h->sock->out, framehd, 9);
    evbuffer_remove_buffer(s->body, h->sock->out, length);
    return 0;
}

static const char *close_reason(uint32_t code)
{
    switch (code) {
    case NGHTTP2_NO_ERROR:
        return "closed the stream";
    case NGHTTP2_CANCEL:
        return "reset the stream (CANCEL)";
    case NGHTTP2_REFUSED_STREAM:
        return "stream refused";
    default:
        return "reset the stream";
    }
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t code, void *user)
{
    (void)session;
    struct h2_stream *s = stream_of(user, id);
    if (!s)
        return 0;
    if (s->state == ST_HEAD && code == NGHTTP2_PROTOCOL_ERROR)
        mark_malformed(s, "refused by the HTTP/2 framing layer");
    nghttp2_session_set_stream_user_data(session, id, NULL);
    stream_free(s, s->malformed ? s->malformed : close_reason(code));
    return 0;
}

/* ---- the session ---- */

/* A server session with Portico's callbacks and limits. NULL when out of memory. */
static nghttp2_session *session_new(struct h2_conn *h)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *session = NULL;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, on_invalid_header);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data);
    /* Windows open as the exchange takes request bytes, not as nghttp2 reads them. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_continuations(opt, 8);
    if (nghttp2_session_server_new2(&session, cbs, h, opt) != 0)
        session = NULL;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return session;
}

/* ---- output ---- */

/* Tells paused exchanges that their stream drained, and notes streams whose data waits behind
 * a shut flow-control window (the stall deadline). */
static void check_streams(struct h2_conn *h, uint64_t now)
{
    bool conn_shut = nghttp2_session_get_remote_window_size(h->session) <= 0;
    struct h2_stream *s;
    TAILQ_FOREACH(s, &h->streams, link) {
        size_t held = evbuffer_get_length(s->body);
        bool shut = held && (conn_shut ||
                             nghttp2_session_get_stream_remote_window_size(h->session, s->id) <= 0);
        if (!shut)
            s->stalled_since = 0;
        else if (!s->stalled_since)
            s->stalled_since = now;
        if (s->ex && s->watched && held + sock_pending(h->sock) < RESUME_BELOW) {
            s->watched = false;
            exchange_drained(s->ex); /* may end it: done() only submits */
        }
    }
}

/* Makes frames while the socket output has room and writes them; then lets paused exchanges
 * go on, and repeats while they produced more. */
static void flush(struct h2_conn *h)
{
    if (h->flushing) {
        h->again = true;
        return;
    }
    h->flushing = true;
    h->depth++;
    do {
        h->again = false;
        for (;;) {
            ssize_t n = 0;
            const uint8_t *data;
            while (sock_pending(h->sock) < OUT_HIGH &&
                   (n = nghttp2_session_mem_send(h->session, &data)) > 0)
                evbuffer_add(h->sock->out, data, (size_t)n);
            if (n < 0) {
                log_error("client %s: HTTP/2: %s", h->peer->addr, nghttp2_strerror((int)n));
                h->end_why = h->end_why ? h->end_why : "HTTP/2 session failed";
            }
            /* Written whole and nghttp2 has more: make the next frames now, not on an event
             * that will not come. A write that waits comes back as SOCK_DRAINED. */
            if (sock_flush(h->sock) != 0 || n <= 0)
                break;
        }
        check_streams(h, now_us());
    } while (h->again && !h->end_why);
    h->depth--;
    h->flushing = false;
}

/* ---- input ---- */

static void conn_read(struct h2_conn *h)
{
    struct evbuffer *in = h->sock->in;
    h->depth++;
    while (evbuffer_get_length(in) > 0 && !h->end_why) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(h->session, v.iov_base, v.iov_len);
        if (n == NGHTTP2_ERR_FLOODED) {
            flood(h, FLOOD_ACKS);
        } else if (n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
            flood(h, FLOOD_CONTINUATION);
        } else if (n < 0) {
            metrics_add(h->loop->metrics, M_H2_PROTOCOL_ERRORS, 1);
            log_error("client %s: HTTP/2: %s", h->peer->addr, nghttp2_strerror((int)n));
            conn_end(h, NGHTTP2_PROTOCOL_ERROR, n == NGHTTP2_ERR_BAD_CLIENT_MAGIC
                                                    ? "no HTTP/2 connection preface"
                                                    : "HTTP/2 protocol error");
        }
        if (n < 0)
            break;
        evbuffer_drain(in, (size_t)n);
    }
    if (h->end_why)
        evbuffer_drain(in, SIZE_MAX); /* nothing more is read from a connection that ends */
    h->depth--;
    sock_consumed(h->sock);
}

/* ---- deadlines ---- */

/* The earliest connection deadline (µs), its GOAWAY code and reason; UINT64_MAX if none. */
static uint64_t next_deadline(const struct h2_conn *h, uint32_t *code, const char **why,
                              enum flood *kind)
{
    const struct config *cfg = h->cfg;
    uint64_t best = UINT64_MAX;
    *kind = FLOOD_COUNT;
#define CANDIDATE(t, c, w, k)                                                                      \
    do {                                                                                           \
        if ((t) < best) {                                                                          \
            best = (t);                                                                            \
            *code = (c);                                                                           \
            *why = (w);                                                                            \
            *kind = (k);                                                                           \
        }                                                                                          \
    } while (0)
    if (!h->settings_acked)
        CANDIDATE(h->started + cfg->client_header_timeout_ms * 1000, NGHTTP2_SETTINGS_TIMEOUT,
                  "SETTINGS not acknowledged within client_header_timeout", FLOOD_COUNT);
    if (h->head_since)
        CANDIDATE(h->head_since + cfg->client_header_timeout_ms * 1000,
                  NGHTTP2_ENHANCE_YOUR_CALM,
                  "header block not complete within client_header_timeout", FLOOD_CONTINUATION);
    if (h->nstreams == 0)
        CANDIDATE(h->idle_since + cfg->keepalive_timeout_ms * 1000, NGHTTP2_NO_ERROR, "idle",
                  FLOOD_COUNT);
    const struct h2_stream *s;
    TAILQ_FOREACH(s, &h->streams, link)
        if (s->stalled_since)
            CANDIDATE(s->stalled_since + cfg->client_send_timeout_ms * 1000,
                      NGHTTP2_ENHANCE_YOUR_CALM, "flow-control window kept shut", FLOOD_STALLED);
#undef CANDIDATE
    return best;
}

static void arm_timer(struct h2_conn *h, uint64_t now)
{
    uint32_t code;
    const char *why;
    enum flood kind;
    uint64_t t = next_deadline(h, &code, &why, &kind);
    event_del(&h->timer);
    if (t == UINT64_MAX)
        return;
    struct timeval tv = tv_from_us(t > now ? t - now : 0);
    evtimer_add(&h->timer, &tv);
}

/* ---- the end of each of our callbacks ---- */

/* Flushes, then either ends the connection (the owner's done(), last of all: h is gone after
 * it) or re-arms the deadline. */
static void settle(struct h2_conn *h)
{
    flush(h);
    if (!h->end_why && !nghttp2_session_want_read(h->session) &&
        !nghttp2_session_want_write(h->session))
        h->end_why = "HTTP/2 connection finished";
    if (h->end_why) {
        h->owner.done(h->owner.arg, h->end_why);
        return;
    }
    arm_timer(h, now_us());
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct h2_conn *h = arg;
    if (evbuffer_get_length(h->sock->in) > 0)
        conn_read(h); /* the preface that came with the TLS handshake */
    settle(h);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct h2_conn *h = arg;
    uint64_t now = now_us();
    uint32_t code;
    const char *why;
    enum flood kind;
    if (next_deadline(h, &code, &why, &kind) <= now) {
        if (kind != FLOOD_COUNT)
            flood(h, kind);
        else
            conn_end(h, code, why);
    }
    settle(h);
}

static const char *gone_reason(enum sock_event ev)
{
    switch (ev) {
    case SOCK_EOF:
        return "closed the connection";
    case SOCK_WRITE_TIMEOUT:
        return "stopped reading";
    default:
        return "connection failed";
    }
}

static void conn_cb(void *arg, enum sock_event ev)
{
    struct h2_conn *h = arg;
    switch (ev) {
    case SOCK_READABLE:
        conn_read(h);
        break;
    case SOCK_DRAINED:
    case SOCK_CONNECTED:
    case SOCK_READ_TIMEOUT:
        break;
    case SOCK_EOF:
    case SOCK_ERROR:
    case SOCK_WRITE_TIMEOUT:
        h->owner.done(h->owner.arg, gone_reason(ev));
        return;
    }
    settle(h);
}

/* ---- life ---- */

struct h2_conn *h2_start(struct loop *l, struct sock *s, const struct peer *peer,
                         const struct h2_owner *owner)
{
    struct h2_conn *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop = l;
    h->cfg = l->cfg;
    h->sock = s;
    h->peer = peer;
    h->owner = *owner;
    TAILQ_INIT(&h->streams);
    h->session = session_new(h);
    if (!h->session) {
        free(h);
        return NULL;
    }
    uint64_t now = now_us();
    h->started = h->idle_since = now;
    for (int k = 0; k < FLOOD_COUNT; k++)
        h->buckets[k] = (struct bucket){flood_rows[k].burst, now};
    /* The header list limit is the HTTP/1.1 one: the head we build must fit max_header_size. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         (uint32_t)MIN(h->cfg->http2_max_concurrent_streams, UINT32_MAX)},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)MIN(h->cfg->max_header_size, UINT32_MAX)},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    event_assign(&h->later, l->base, -1, 0, later_cb, h);
    evtimer_assign(&h->timer, l->base, timer_cb, h);
    sock_set_cb(s, conn_cb, h);
    metrics_add(l->metrics, M_H2_CONNECTIONS, 1);
    event_active(&h->later, EV_TIMEOUT, 1);
    return h;
}

void h2_free(struct h2_conn *h, const char *why)
{
    struct h2_stream *s;
    while ((s = TAILQ_FIRST(&h->streams)) != NULL) {
        nghttp2_session_set_stream_user_data(h->session, s->id, NULL);
        stream_free(s, why);
    }
    event_del(&h->later);
    event_del(&h->timer);
    nghttp2_session_del(h->session);
    free(h);
}

void h2_drain(struct h2_conn *h)
{
    int32_t last = nghttp2_session_get_last_proc_stream_id(h->session);
    nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
    event_active(&h->later, EV_TIMEOUT, 1);
}
