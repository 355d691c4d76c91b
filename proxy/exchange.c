/*
 * exchange.c — the life of one request. This comment is the architecture of Portico.
 *
 *   client ──► listener ──► client (parse head) ──► exchange ──► upconn (dns, connect, tls)
 *                                                     │              └─► origin
 *                                                     ├─► errpage (failure → status → response)
 *                                                     └─► log / metrics
 *
 * An exchange walks the phases of failure.h: ROUTE → (DNS → CONNECT → TLS, skipped for a pooled
 * connection) → SEND → FIRST_BYTE → READ → DONE. One phase timer follows it, armed with the
 * limit of the current phase (dns/connect/tls/first_byte/read_timeout). Two limits are not the
 * phase timer: send_timeout is the upstream bufferevent's write timeout (libevent re-arms it on
 * every write progress, which is exactly "the origin stopped taking bytes"), and total_timeout
 * has its own timer until the response head. When anything fails, fail() classifies
 * (phase, cause) into a failure type, and either writes the error response (status not yet
 * sent) or aborts the client connection (head already forwarded: the status cannot change).
 *
 * Buffers: the request head is copied out of the client's input buffer at start (ex->head); the
 * request body moves client input → upstream output and the response body upstream input →
 * client output through body.c, zero-copy. Back-pressure: a body stops moving while the
 * destination holds more than RELAY_HIGH bytes; the bufferevents' read high watermarks then
 * stop reading from the sockets; the destination's write callback (output drained) resumes.
 *
 * Interim responses: 1xx from the origin are relayed at once (not to HTTP/1.0 clients);
 * Portico itself may send 100 (Expect), 102 (heartbeats while waiting) and 103 (configured or
 * learned Link hints). Once the final head is forwarded no 1xx can follow.
 */
#include "portico/exchange.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/body.h"
#include "portico/client.h"
#include "portico/config.h"
#include "portico/errpage.h"
#include "portico/headers.h"
#include "portico/interim.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/request.h"
#include "portico/sockio.h"
#include "portico/status.h"
#include "portico/upstream.h"
#include "portico/util.h"
#include "portico/worker.h"

#define RELAY_HIGH (256 * 1024) /* stop moving a body while its destination holds more */
#define MAX_PORTICO_HOPS 8      /* Via entries of ours beyond which a request is looping */

enum req_state {
    REQ_GATED,  /* Expect: 100-continue relayed, body held until the origin's 100 or timeout */
    REQ_BODY,   /* body flowing */
    REQ_DONE,   /* all of it read from the client */
};

enum resp_state {
    RESP_HEAD,  /* waiting for / parsing the response head (1xx included) */
    RESP_BODY,  /* final head forwarded: status committed, body flowing */
    RESP_DONE,
};

struct exchange {
    struct worker *w;                  /* borrowed */
    struct client *client;             /* borrowed: the client owns the exchange */
    const struct config *cfg;          /* borrowed */
    struct bufferevent *cbev;          /* borrowed: the client's */
    bool client_plain;                 /* client socket without TLS: sockio shortcuts apply */
    uint64_t t0;                       /* µs: first byte of the request head */

    /* request */
    char *head;                        /* owned copy of the request head */
    size_t head_len;
    struct h1_request req;             /* spans into head */
    struct h1_info info;
    const char *target;                /* origin-form target to forward (span into head) */
    size_t target_len;
    const char *route_path;            /* what routes and learned hints key on (request.h) */
    size_t path_len;
    const char *host;                  /* Host (or absolute-form authority), may be NULL */
    size_t host_len;
    char request_id[48];
    const struct route_conf *route;    /* borrowed from cfg */
    const struct upstream_conf *up;    /* borrowed from cfg */
    int origin;                        /* index in up->origins, -1 before the pick */
    enum req_state req_state;
    struct body_relay req_body;

    /* upstream */
    struct upconn *uc;
    struct bufferevent *ubev;          /* upconn's, once ready */
    bool up_plain;                     /* origin socket without TLS: sockio shortcuts apply */
    enum phase phase;
    bool retried;                      /* already resent once after a stale pooled connection */
    bool reused;                       /* the (last) connection came from the pool */
    bool response_byte;                /* any response byte seen from the origin */
    uint64_t phase_start[PHASE_COUNT]; /* µs, 0 = never entered */
    uint64_t phase_end[PHASE_COUNT];
    uint64_t first_byte_deadline;      /* µs: when interim responses do not restart the timer */
    struct event phase_timer;
    struct event total_timer;
    struct event continue_timer;       /* Expect relay: send our own 100 after continue_timeout */
    struct event processing_timer;     /* synthesized 102 heartbeats */

    /* response */
    enum resp_state resp_state;
    struct h1_response resp;           /* valid only while its head is in the upstream input */
    struct h1_info resp_info;
    struct body_relay resp_body;
    int status;                        /* sent to the client (0 = nothing yet) */
    uint64_t error_body_bytes;         /* body of a response Portico wrote itself */
    bool keep_client;                  /* the client connection may serve another request */

    /* interim */
    char interim_log[96];              /* "103,100,102" for the access log */
    size_t interim_log_len;
    bool sent_100;
    struct hint_set hints;             /* links hinted in a 103 so far */

    /* failure */
    enum failure_type failure;
    enum phase fail_phase;
    enum cause cause;
    uint64_t limit_ms;
    char detail[200];
    bool aborted;                      /* failed after the head was forwarded */
    bool logged;
};

static void fail(struct exchange *ex, enum phase phase, enum cause cause, uint64_t limit_ms,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void finish(struct exchange *ex);
static void connect_origin(struct exchange *ex);
static void pump_request_body(struct exchange *ex);
static int relay_response_body(struct exchange *ex);

/* ---- small helpers ---- */

static double ms_since(uint64_t start_us, uint64_t now)
{
    return start_us ? (double)(now - start_us) / 1000.0 : 0.0;
}

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static void arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = tv_ms(ms);
    evtimer_add(ev, &tv);
}

/* The upstream input holds at most this much: a whole response head, or RELAY_HIGH of body. */
static size_t up_read_high(const struct exchange *ex)
{
    return MAX(RELAY_HIGH, (size_t)ex->cfg->max_header_size + 1);
}

static void flush_upstream(struct exchange *ex)
{
    if (ex->up_plain)
        sockio_flush(ex->ubev);
}

static struct evbuffer *client_out(struct exchange *ex)
{
    return bufferevent_get_output(ex->cbev);
}

static bool client_http11(const struct exchange *ex)
{
    return ex->req.minor >= 1;
}

static void note_interim(struct exchange *ex, int code)
{
    ex->interim_log_len = buf_appendf(ex->interim_log, sizeof(ex->interim_log),
                                      ex->interim_log_len, "%s%d",
                                      ex->interim_log_len ? "," : "", code);
}

/* The timer of a phase; total_timeout is not a phase timer. */
static uint64_t phase_limit(const struct exchange *ex, enum phase p)
{
    switch (p) {
    case PHASE_DNS: return ex->up->timers_ms[TIMER_DNS];
    case PHASE_CONNECT: return ex->up->timers_ms[TIMER_CONNECT];
    case PHASE_TLS: return ex->up->timers_ms[TIMER_TLS];
    case PHASE_SEND: return ex->up->timers_ms[TIMER_SEND];
    case PHASE_FIRST_BYTE: return ex->up->timers_ms[TIMER_FIRST_BYTE];
    case PHASE_READ: return ex->up->timers_ms[TIMER_READ];
    default: return 0;
    }
}

/* Enters a phase: closes the previous one's timing, arms the phase timer. SEND has no phase
 * timer: its limit is the bufferevent write timeout, armed when the connection is ready. */
static void set_phase(struct exchange *ex, enum phase p)
{
    uint64_t now = now_us();
    if (ex->phase_start[ex->phase] && !ex->phase_end[ex->phase])
        ex->phase_end[ex->phase] = now;
    ex->phase = p;
    ex->phase_start[p] = now;
    ex->phase_end[p] = 0;
    event_del(&ex->phase_timer);
    if (p != PHASE_SEND && p != PHASE_DONE && phase_limit(ex, p))
        arm(&ex->phase_timer, phase_limit(ex, p));
}

/* "dns;dur=0.3, connect;dur=1000.2;desc="timeout"" — every phase that started, in order. The
 * route phase only when it is the one that failed (no_healthy_origin): the entry names it. */
static size_t server_timing(const struct exchange *ex, char *buf, size_t size)
{
    size_t n = 0;
    uint64_t now = now_us();
    buf[0] = '\0';
    for (int p = PHASE_ROUTE; p <= PHASE_READ; p++) {
        if (!ex->phase_start[p] ||
            (p == PHASE_ROUTE && (ex->failure == FAIL_NONE || ex->fail_phase != PHASE_ROUTE)))
            continue;
        uint64_t end = ex->phase_end[p] ? ex->phase_end[p] : now;
        n = buf_appendf(buf, size, n, "%s%s;dur=%.1f", n ? ", " : "", phase_name((enum phase)p),
                        (double)(end - ex->phase_start[p]) / 1000.0);
        if (ex->failure != FAIL_NONE && (int)ex->fail_phase == p)
            n = buf_appendf(buf, size, n, ";desc=\"%s\"", cause_name(ex->cause));
    }
    return n;
}

/* Compact form for the access log: "dns:0.3,connect:1.2". */
static void timing_log(const struct exchange *ex, char *buf, size_t size)
{
    size_t n = 0;
    uint64_t now = now_us();
    buf[0] = '\0';
    for (int p = PHASE_DNS; p <= PHASE_READ; p++) {
        if (!ex->phase_start[p])
            continue;
        uint64_t end = ex->phase_end[p] ? ex->phase_end[p] : now;
        n = buf_appendf(buf, size, n, "%s%s:%.1f", n ? "," : "", phase_name((enum phase)p),
                        (double)(end - ex->phase_start[p]) / 1000.0);
    }
}

/* ---- responses Portico writes itself ---- */

/* A request Portico refuses on its own (400, 404, 408, 413, 417, 501 ...). The connection is
 * closed after it unless the request was fully read and framing is intact. */
static void client_error(struct exchange *ex, int status, const char *reason, bool close)
{
    snprintf(ex->detail, sizeof(ex->detail), "%s", reason);
    int h = h1_find_field(ex->req.fields, ex->req.nfields, "accept", 0);
    struct errpage e = {
        .status = status,
        .failure = FAIL_NONE,
        .reason = reason,
        .request_id = ex->request_id,
        .accept = h >= 0 ? ex->req.fields[h].value : NULL,
        .accept_len = h >= 0 ? ex->req.fields[h].value_len : 0,
        .head_only = span_ieq(ex->req.method, ex->req.method_len, "HEAD"),
        .close = close,
        .http10 = !client_http11(ex),
    };
    long body = errpage_write(client_out(ex), &e);
    ex->error_body_bytes = body > 0 ? (uint64_t)body : 0;
    ex->status = status;
    ex->keep_client = !close;
    ex->resp_state = RESP_DONE;
    finish(ex);
}

static void upconn_drop(struct exchange *ex)
{
    if (ex->uc) {
        upconn_abort(ex->uc);
        ex->uc = NULL;
        ex->ubev = NULL;
    }
}

static void stop_timers(struct exchange *ex)
{
    event_del(&ex->phase_timer);
    event_del(&ex->total_timer);
    event_del(&ex->continue_timer);
    event_del(&ex->processing_timer);
}

/* The one place an upstream failure becomes a response (or an abort). */
static void fail(struct exchange *ex, enum phase phase, enum cause cause, uint64_t limit_ms,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ex->detail, sizeof(ex->detail), fmt, ap);
    va_end(ap);

    /* A pooled connection may have been closed by the origin while idle: if nothing of this
     * request reached it that we could not send again, resend once on a fresh connection. */
    if (ex->uc && upconn_reused(ex->uc) && !ex->retried && !ex->response_byte &&
        request_idempotent(ex->req.method_id) &&
        ex->req_body.bytes == 0 && !ex->req_body.trailers_started &&
        ex->resp_state == RESP_HEAD &&
        (phase == PHASE_SEND || phase == PHASE_FIRST_BYTE) &&
        (cause == CAUSE_EOF || cause == CAUSE_RESET || cause == CAUSE_IO)) {
        ex->retried = true;
        metrics_add(ex->w->metrics, M_UPSTREAM_RETRIES, 1);
        upconn_drop(ex);
        ex->detail[0] = '\0';
        connect_origin(ex);
        return;
    }

    ex->failure = failure_classify(phase, cause);
    ex->fail_phase = phase;
    ex->cause = cause;
    ex->limit_ms = limit_ms;
    if (ex->phase_start[phase] && !ex->phase_end[phase])
        ex->phase_end[phase] = now_us();
    upstream_report(ex->up, ex->origin, failure_is_network(ex->failure));
    upconn_drop(ex);
    stop_timers(ex);

    if (ex->resp_state != RESP_HEAD) {
        /* The status is on the wire: cut the response short so the client sees it failed. */
        ex->aborted = true;
        metrics_add(ex->w->metrics, M_ABORTED_AFTER_HEAD, 1);
        ex->keep_client = false;
        ex->resp_state = RESP_DONE;
        finish(ex);
        return;
    }

    char timing[512];
    server_timing(ex, timing, sizeof(timing));
    int h = h1_find_field(ex->req.fields, ex->req.nfields, "accept", 0);
    struct errpage e = {
        .status = failure_status(ex->failure, ex->cfg->profile, ex->cfg->error_overrides),
        .failure = ex->failure,
        .phase = phase,
        .reason = ex->detail,
        .origin = ex->origin >= 0 ? ex->up->origins[ex->origin].text : NULL,
        .upstream = ex->up->name,
        .limit_ms = limit_ms,
        .elapsed_ms = ms_since(ex->t0, now_us()),
        .request_id = ex->request_id,
        .server_timing = timing,
        .accept = h >= 0 ? ex->req.fields[h].value : NULL,
        .accept_len = h >= 0 ? ex->req.fields[h].value_len : 0,
        .head_only = span_ieq(ex->req.method, ex->req.method_len, "HEAD"),
        .page_dir = ex->cfg->error_page_dir,
        .http10 = !client_http11(ex),
    };
    /* The client connection survives only if its request was read to the end. */
    ex->keep_client = ex->req_state == REQ_DONE && ex->info.keep_alive;
    e.close = !ex->keep_client;
    long body = errpage_write(client_out(ex), &e);
    ex->error_body_bytes = body > 0 ? (uint64_t)body : 0;
    ex->status = e.status;
    ex->resp_state = RESP_DONE;
    finish(ex);
}

/* ---- end of an exchange ---- */

static void log_exchange(struct exchange *ex)
{
    if (ex->logged)
        return;
    ex->logged = true;
    metrics_response(ex->w->metrics, ex->status, ex->failure);
    if (!log_enabled())
        return;
    char timing[256];
    timing_log(ex, timing, sizeof(timing));
    struct access_record r = {
        .request_id = ex->request_id,
        .client = client_peer(ex->client),
        .method = ex->req.method,
        .method_len = ex->req.method_len,
        .target = ex->req.target,
        .target_len = ex->req.target_len,
        .minor = ex->req.minor,
        .status = ex->status,
        .bytes_out = ex->resp_body.bytes + ex->error_body_bytes,
        .bytes_in = ex->req_body.bytes,
        .duration_ms = ms_since(ex->t0, now_us()),
        .route = ex->route ? ex->route->name : NULL,
        .upstream = ex->up ? ex->up->name : NULL,
        .origin = ex->origin >= 0 && ex->up ? ex->up->origins[ex->origin].text : NULL,
        .failure = ex->failure,
        .phase = ex->fail_phase,
        .limit_ms = ex->limit_ms,
        .detail = ex->detail[0] ? ex->detail : NULL,
        .aborted = ex->aborted,
        .reused = ex->reused,
        .retried = ex->retried,
        .timing = timing,
        .interim = ex->interim_log_len ? ex->interim_log : NULL,
    };
    log_access(&r);
}

/* Response complete (or failed): log, give the origin connection back if it is clean, hand the
 * client connection back. The exchange is freed by client_exchange_done. */
static void finish(struct exchange *ex)
{
    if (ex->client_plain)
        sockio_flush(ex->cbev); /* the last bytes go now, not a loop turn later */
    stop_timers(ex);
    if (ex->phase_start[ex->phase] && !ex->phase_end[ex->phase])
        ex->phase_end[ex->phase] = now_us();
    if (ex->failure == FAIL_NONE && ex->response_byte)
        upstream_report(ex->up, ex->origin, false); /* a success clears the failure count */
    log_exchange(ex);
    if (ex->uc) {
        bool reusable = ex->failure == FAIL_NONE && ex->resp_body.done &&
                        ex->resp_info.keep_alive && ex->req_state == REQ_DONE &&
                        ex->req_body.done &&
                        evbuffer_get_length(bufferevent_get_output(ex->ubev)) == 0 &&
                        evbuffer_get_length(bufferevent_get_input(ex->ubev)) == 0;
        if (reusable)
            upconn_release(ex->uc);
        else
            upconn_abort(ex->uc);
        ex->uc = NULL;
        ex->ubev = NULL;
    }
    /* A request body the client is still sending cannot be skipped: close instead. */
    client_exchange_done(ex->client,
                         ex->keep_client && ex->req_state == REQ_DONE && !ex->aborted);
}

void exchange_free(struct exchange *ex)
{
    if (!ex)
        return;
    stop_timers(ex);
    if (!ex->logged) {
        /* The client left before the response: nginx's 499, nothing is sent. */
        if (!ex->status)
            ex->status = 499;
        metrics_add(ex->w->metrics, M_CLIENT_ABORTS, 1);
        log_exchange(ex);
    }
    upconn_drop(ex);
    free(ex->head);
    free(ex);
}

void exchange_client_body_timeout(struct exchange *ex)
{
    upconn_drop(ex);
    ex->req_state = REQ_DONE; /* nothing more will be read */
    if (ex->resp_state == RESP_HEAD) {
        client_error(ex, 408, "request body stalled longer than client_body_timeout", true);
        return;
    }
    snprintf(ex->detail, sizeof(ex->detail), "request body stalled longer than "
             "client_body_timeout");
    ex->aborted = true;
    ex->keep_client = false;
    finish(ex);
}

void exchange_client_gone(struct exchange *ex, const char *why)
{
    if (!ex->detail[0])
        snprintf(ex->detail, sizeof(ex->detail), "client %s", why);
    /* client_free will call exchange_free, which logs 499 */
}

/* ---- interim responses Portico makes ---- */

/* The learned-hints key of this request's host. Returns its length (0: no host). */
static size_t hint_host(const struct exchange *ex, char *buf, size_t size)
{
    return ex->host ? host_key(ex->host, ex->host_len, buf, size) : 0;
}

/* 103 Early Hints from configuration and learning, before the origin is contacted. */
static void send_early_hints(struct exchange *ex)
{
    const struct route_conf *r = ex->route;
    char learned[HINT_MAX_BYTES + 1];
    size_t learned_len = 0;
    char host[256];
    size_t host_len = hint_host(ex, host, sizeof(host));
    if (r->early_hints_learn && r->hint_cache && host_len)
        learned_len = hint_cache_get(r->hint_cache, host, host_len, ex->route_path, ex->path_len,
                                     learned, sizeof(learned));
    if ((r->nhints || learned_len) &&
        hint_write_103(&ex->hints, client_out(ex), r->early_hints, r->nhints, learned,
                       learned_len)) {
        metrics_add(ex->w->metrics, M_EARLY_HINTS_SENT, 1);
        note_interim(ex, 103);
    }
}

/* Remembers the preload/preconnect links of a 200 for later 103s on the same host and path. */
static void learn_hints(struct exchange *ex)
{
    const struct route_conf *r = ex->route;
    if (!r->early_hints_learn || !r->hint_cache || !ex->host ||
        !span_ieq(ex->req.method, ex->req.method_len, "GET"))
        return;
    char links[HINT_MAX_BYTES];
    size_t n = hint_collect(ex->resp.fields, ex->resp.nfields, links, sizeof(links));
    char host[256];
    size_t host_len = hint_host(ex, host, sizeof(host));
    if (host_len)
        hint_cache_put(r->hint_cache, host, host_len, ex->route_path, ex->path_len, links,
                       n);
}

static void send_continue(struct exchange *ex)
{
    if (ex->sent_100 || !client_http11(ex))
        return;
    evbuffer_add(client_out(ex), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    ex->sent_100 = true;
    note_interim(ex, 100);
}

/* The request body may flow now. */
static void open_gate(struct exchange *ex)
{
    if (ex->req_state != REQ_GATED)
        return;
    event_del(&ex->continue_timer);
    ex->req_state = REQ_BODY;
    struct timeval tv = tv_ms(ex->cfg->client_body_timeout_ms);
    struct timeval wtv = tv_ms(ex->cfg->client_send_timeout_ms);
    bufferevent_set_timeouts(ex->cbev, &tv, &wtv);
    pump_request_body(ex);
}

static void continue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    if (ex->req_state != REQ_GATED)
        return;
    if (!ex->sent_100) { /* also activated by the origin's 100, relayed already */
        send_continue(ex);
        metrics_add(ex->w->metrics, M_CONTINUE_SENT, 1);
    }
    open_gate(ex);
}

static void processing_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    if (ex->resp_state != RESP_HEAD)
        return;
    evbuffer_add(client_out(ex), "HTTP/1.1 102 Processing\r\n\r\n", 27);
    metrics_add(ex->w->metrics, M_PROCESSING_SENT, 1);
    note_interim(ex, 102);
    arm(&ex->processing_timer, ex->route->processing_interval_ms);
}

/* ---- timers ---- */

static void phase_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    enum phase p = ex->phase;
    uint64_t limit = phase_limit(ex, p);
    const char *origin = ex->uc ? upconn_addr(ex->uc) : ex->up->origins[ex->origin].text;
    switch (p) {
    case PHASE_DNS:
        fail(ex, p, CAUSE_TIMEOUT, limit, "resolving %s exceeded %llu ms",
             ex->up->origins[ex->origin].host, (unsigned long long)limit);
        break;
    case PHASE_CONNECT:
        fail(ex, p, CAUSE_TIMEOUT, limit, "connect to %s exceeded %llu ms", origin,
             (unsigned long long)limit);
        break;
    case PHASE_TLS:
        fail(ex, p, CAUSE_TIMEOUT, limit, "TLS handshake with %s exceeded %llu ms", origin,
             (unsigned long long)limit);
        break;
    case PHASE_FIRST_BYTE:
        fail(ex, p, CAUSE_TIMEOUT, limit, "no response from %s within %llu ms of the request",
             origin, (unsigned long long)limit);
        break;
    case PHASE_READ:
        fail(ex, p, CAUSE_TIMEOUT, limit, "%s sent nothing for %llu ms while %s", origin,
             (unsigned long long)limit,
             ex->resp_state == RESP_HEAD ? "sending the response head" : "sending the body");
        break;
    default:
        break;
    }
}

static void total_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    uint64_t limit = ex->up->timers_ms[TIMER_TOTAL];
    if (ex->resp_state != RESP_HEAD)
        return;
    fail(ex, ex->phase, CAUSE_TOTAL_TIMEOUT, limit,
         "no response head from %s within total_timeout %llu ms (in phase %s)",
         ex->origin >= 0 ? ex->up->origins[ex->origin].text : ex->up->name,
         (unsigned long long)limit, phase_name(ex->phase));
}

/* ---- the upstream connection ---- */

static enum cause socket_cause(int err)
{
    switch (err) {
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return CAUSE_RESET;
    case ETIMEDOUT:
        return CAUSE_TIMEOUT;
    default:
        return CAUSE_IO;
    }
}

/* The request is entirely in the kernel: head, whole body, nothing left in our output. */
static bool request_sent(const struct exchange *ex)
{
    return ex->req_state == REQ_DONE && ex->req_body.done && ex->ubev &&
           evbuffer_get_length(bufferevent_get_output(ex->ubev)) == 0;
}

/* Where a connection-level problem belongs: the phase we are in (SEND while the request goes
 * out, also after a 100; FIRST_BYTE while waiting; READ once head bytes arrived), except that a
 * request already handed to the kernel whose write callback has not run yet is waiting too. */
static enum phase response_phase(const struct exchange *ex)
{
    if (ex->phase == PHASE_SEND && request_sent(ex))
        return PHASE_FIRST_BYTE;
    if (ex->phase == PHASE_SEND || ex->phase == PHASE_FIRST_BYTE || ex->phase == PHASE_READ)
        return ex->phase;
    return ex->response_byte ? PHASE_READ : PHASE_SEND;
}

/* Waits for the first byte of a (next) response head with the first_byte timer. */
static void wait_first_byte(struct exchange *ex, bool restart)
{
    uint64_t now = now_us();
    if (ex->phase != PHASE_FIRST_BYTE) {
        if (!ex->phase_start[PHASE_FIRST_BYTE])
            ex->phase_start[PHASE_FIRST_BYTE] = now;
        ex->phase_end[PHASE_FIRST_BYTE] = 0;
        ex->phase = PHASE_FIRST_BYTE;
    }
    uint64_t limit = phase_limit(ex, PHASE_FIRST_BYTE);
    if (restart || !ex->first_byte_deadline) {
        ex->first_byte_deadline = now + limit * 1000;
        arm(&ex->phase_timer, limit);
    } else {
        uint64_t left = ex->first_byte_deadline > now ? ex->first_byte_deadline - now : 0;
        struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
        evtimer_add(&ex->phase_timer, &tv);
    }
}

/* A 1xx came while the request is still going out (the body after a 100): back to SEND, limited
 * by send_timeout; first_byte_timeout starts once the request is sent (maybe_request_sent). */
static void back_to_send(struct exchange *ex)
{
    event_del(&ex->phase_timer);
    ex->phase = PHASE_SEND;
    ex->phase_end[PHASE_SEND] = 0;
}

/* The request is entirely in the kernel: start waiting for the response. */
static void maybe_request_sent(struct exchange *ex)
{
    if (ex->phase != PHASE_SEND || !request_sent(ex))
        return;
    ex->phase_end[PHASE_SEND] = now_us();
    wait_first_byte(ex, true);
}

static bool relay_interim_field(const struct h1_field *f, struct evbuffer *out, void *arg)
{
    struct exchange *ex = arg;
    if (!h1_name_is(f, "link"))
        return false;
    hint_write_new(&ex->hints, out, f->value, f->value_len);
    return true; /* taken over: written filtered, or dropped when every hint was sent */
}

/* A complete 1xx head from the origin (still in the upstream input). */
static void handle_interim(struct exchange *ex)
{
    int code = ex->resp.status;
    /* The gate opens from the loop: pumping the body may end the exchange (bad framing, too
     * large), which read_heads could not survive. */
    if (code == 100 && ex->req_state == REQ_GATED)
        event_active(&ex->continue_timer, EV_TIMEOUT, 1);
    if (!client_http11(ex) || (code == 100 && ex->sent_100)) {
        metrics_add(ex->w->metrics, M_INTERIM_DROPPED, 1);
    } else if (code == 103) {
        /* Only the hints not already sent, and nothing at all when none is new. */
        struct evbuffer *tmp = evbuffer_new();
        if (tmp) {
            size_t before = ex->hints.len;
            hdr_write_interim(tmp, &ex->resp, relay_interim_field, ex);
            bool has_links = h1_find_field(ex->resp.fields, ex->resp.nfields, "link", 0) >= 0;
            if (has_links && ex->hints.len == before) {
                metrics_add(ex->w->metrics, M_INTERIM_DROPPED, 1);
            } else {
                evbuffer_add_buffer(client_out(ex), tmp);
                metrics_add(ex->w->metrics, M_INTERIM_RELAYED, 1);
                note_interim(ex, code);
            }
            evbuffer_free(tmp);
        }
    } else {
        hdr_write_interim(client_out(ex), &ex->resp, NULL, NULL);
        if (code == 100)
            ex->sent_100 = true;
        metrics_add(ex->w->metrics, M_INTERIM_RELAYED, 1);
        note_interim(ex, code);
    }
}

/* Transfer-Encoding is rewritten hop by hop and Portico decodes chunked only: a body in any
 * other transfer coding (gzip ...) would reach the client unlabelled, so it is refused. */
static bool has_other_coding(const struct h1_response *resp)
{
    for (int i = h1_find_field(resp->fields, resp->nfields, "transfer-encoding", 0); i >= 0;
         i = h1_find_field(resp->fields, resp->nfields, "transfer-encoding", (size_t)i + 1)) {
        size_t pos = 0, n;
        const char *e;
        while (h1_list_next(resp->fields[i].value, resp->fields[i].value_len, &pos, &e, &n))
            if (!span_ieq(e, n, "chunked"))
                return true;
    }
    return false;
}

/* The final response head: forward it and commit the status. */
static int forward_head(struct exchange *ex, size_t head_len)
{
    struct h1_error err;
    if (h1_response_info(&ex->resp, ex->req.method_id, &ex->resp_info, &err) != 0) {
        fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
             upconn_addr(ex->uc), err.reason);
        return -1;
    }
    if (ex->resp_info.framing != H1_BODY_NONE && has_other_coding(&ex->resp)) {
        fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
             upconn_addr(ex->uc), "transfer coding other than chunked");
        return -1;
    }
    event_del(&ex->total_timer);
    event_del(&ex->processing_timer);
    event_del(&ex->continue_timer);

    const struct h1_info *ri = &ex->resp_info;
    enum h1_framing out = ri->framing;
    bool out_chunked = false;
    if (ri->framing == H1_BODY_CHUNKED || ri->framing == H1_BODY_CLOSE) {
        /* HTTP/1.1 clients get chunked (keeps their connection); 1.0 clients read to close. */
        out = client_http11(ex) ? H1_BODY_CHUNKED : H1_BODY_CLOSE;
        out_chunked = client_http11(ex);
    }
    ex->keep_client = out != H1_BODY_CLOSE && ex->info.keep_alive && !ex->w->draining;
    if (ex->req_state != REQ_DONE) /* answered before the whole body: cannot keep the client */
        ex->keep_client = false;

    char ps[160];
    if (ex->cfg->proxy_status)
        snprintf(ps, sizeof(ps), "portico; received-status=%d", ex->resp.status);
    struct fwd_response fwd = {
        .client_minor = ex->req.minor,
        .framing = out,
        .content_length = ri->content_length,
        .keep_alive = ex->keep_client,
        .request_id = ex->request_id,
        .proxy_status = ex->cfg->proxy_status ? ps : NULL,
    };
    hdr_write_response(client_out(ex), &ex->resp, &fwd);
    ex->status = ex->resp.status;
    if (ex->resp.status == 200)
        learn_hints(ex);
    body_init(&ex->resp_body, ri->framing, ri->content_length, out_chunked,
              ex->cfg->max_header_size);
    evbuffer_drain(bufferevent_get_input(ex->ubev), head_len);
    ex->resp_state = RESP_BODY;
    return 0;
}

/* Parses response heads as long as complete ones are buffered: 1xx are relayed, the final one
 * forwarded. Returns 0 to go on with the body, -1 when the exchange is over or waits. */
static int read_heads(struct exchange *ex)
{
    struct evbuffer *in = bufferevent_get_input(ex->ubev);
    while (ex->resp_state == RESP_HEAD) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return -1;
        if (ex->phase != PHASE_READ) {
            ex->response_byte = true;
            set_phase(ex, PHASE_READ);
        }
        size_t n = MIN(len, (size_t)ex->cfg->max_header_size);
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
        struct h1_error err;
        int rc = h1_parse_response(p, n, ex->cfg->max_header_size, &ex->resp, &err);
        if (rc == -2) {
            arm(&ex->phase_timer, phase_limit(ex, PHASE_READ)); /* silence is measured anew */
            return -1;
        }
        if (rc < 0) {
            fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
                 upconn_addr(ex->uc), err.reason);
            return -1;
        }
        int code = ex->resp.status;
        if (code >= 100 && code < 200) {
            if (code == 101) {
                fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0,
                     "%s switched protocols (101) although no upgrade was offered",
                     upconn_addr(ex->uc));
                return -1;
            }
            handle_interim(ex);
            evbuffer_drain(in, (size_t)rc);
            if (evbuffer_get_length(in) == 0 && request_sent(ex))
                wait_first_byte(ex, ex->up->interim_resets_timer);
            else if (evbuffer_get_length(in) == 0)
                back_to_send(ex);
            continue;
        }
        if (forward_head(ex, (size_t)rc) != 0)
            return -1;
    }
    return 0;
}

/* Moves response body bytes to the client until the source runs dry, the client's buffer is
 * full, or the body ends. The direct write drains the client buffer without a write callback,
 * so the move repeats here instead of waiting for one. Returns 1 when the exchange ended (and
 * is freed), 0 otherwise. */
static int relay_response_body(struct exchange *ex)
{
    struct evbuffer *in = bufferevent_get_input(ex->ubev);
    struct evbuffer *out = client_out(ex);
    for (;;) {
        size_t before_in = evbuffer_get_length(in), before_out = evbuffer_get_length(out);
        if (body_move(&ex->resp_body, in, out, RELAY_HIGH) != 0) {
            fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response body from %s: %s",
                 upconn_addr(ex->uc), ex->resp_body.error);
            return 1;
        }
        if (ex->client_plain)
            sockio_flush(ex->cbev);
        if (ex->resp_body.done) {
            ex->resp_state = RESP_DONE;
            finish(ex);
            return 1;
        }
        if (evbuffer_get_length(out) > RELAY_HIGH) {
            /* The client is slower than the origin: stop reading until its buffer drains. */
            bufferevent_disable(ex->ubev, EV_READ);
            event_del(&ex->phase_timer);
            return 0;
        }
        if (evbuffer_get_length(in) == 0 ||
            (evbuffer_get_length(in) == before_in && evbuffer_get_length(out) == before_out))
            break;
    }
    arm(&ex->phase_timer, phase_limit(ex, PHASE_READ));
    return 0;
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg);

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct exchange *ex = arg;
    /* libevent reads 4 KiB per turn: when it read that much, take the rest in one go */
    if (ex->up_plain && evbuffer_get_length(bufferevent_get_input(bev)) >= SOCKIO_LIBEVENT_READ &&
        sockio_fill(bev, up_read_high(ex)) < 0) {
        up_event_cb(bev, BEV_EVENT_READING | BEV_EVENT_ERROR, ex);
        return;
    }
    if (ex->resp_state == RESP_HEAD && read_heads(ex) != 0)
        return;
    if (ex->resp_state == RESP_BODY)
        relay_response_body(ex);
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct exchange *ex = arg;
    if (ex->req_state == REQ_BODY)
        pump_request_body(ex);
    else
        maybe_request_sent(ex);
}

/* TLS 1.3 lets the client finish its handshake before the origin has checked the client's
 * certificate: an origin that refuses it (none sent, or an untrusted one) says so with an alert
 * that arrives after the request was written, often behind the reset that the write ran into.
 * On a new connection without a response byte, surface that alert (SSL_read processes what is
 * queued on the socket): the failure is the handshake's, not the request's. true with the
 * alert's text in why. */
static bool handshake_refused(struct exchange *ex, struct bufferevent *bev, unsigned long ssl_err,
                              char *why, size_t size)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl || ex->response_byte || upconn_reused(ex->uc) || upconn_requests(ex->uc) > 1)
        return false;
    unsigned long e = ssl_err;
    if (!e) {
        char byte;
        ERR_clear_error();
        if (SSL_read(ssl, &byte, 1) <= 0)
            e = ERR_peek_last_error();
        ERR_clear_error();
    }
    if (!e || ERR_GET_LIB(e) != ERR_LIB_SSL || ERR_GET_REASON(e) < SSL_AD_REASON_OFFSET)
        return false;
    ERR_error_string_n(e, why, size);
    return true;
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct exchange *ex = arg;
    const char *addr = upconn_addr(ex->uc);
    if (what & BEV_EVENT_TIMEOUT) { /* only the write timeout is set: send_timeout */
        uint64_t limit = phase_limit(ex, PHASE_SEND);
        fail(ex, PHASE_SEND, CAUSE_TIMEOUT, limit, "%s took no request bytes for %llu ms", addr,
             (unsigned long long)limit);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (ex->resp_state == RESP_BODY) {
            /* Whatever arrived with the EOF goes first. */
            if (relay_response_body(ex))
                return;
            if (body_eof(&ex->resp_body, client_out(ex)) == 0) {
                ex->resp_state = RESP_DONE;
                ex->resp_info.keep_alive = false;
                finish(ex);
                return;
            }
            fail(ex, PHASE_READ, CAUSE_EOF, 0, "%s closed the connection mid-body: %s", addr,
                 ex->resp_body.error);
            return;
        }
        char why[160];
        if (handshake_refused(ex, bev, 0, why, sizeof(why))) {
            fail(ex, PHASE_TLS, CAUSE_TLS, 0, "%s refused the TLS handshake: %s", addr, why);
            return;
        }
        enum phase p = response_phase(ex);
        fail(ex, p, CAUSE_EOF, 0, "%s closed the connection %s", addr,
             p == PHASE_SEND         ? "while the request was being sent"
             : p == PHASE_FIRST_BYTE ? "without sending a response"
                                     : "before the response head was complete");
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        unsigned long ssl_err = bufferevent_get_openssl_error(bev);
        enum phase p = response_phase(ex);
        char why[160];
        if (handshake_refused(ex, bev, ssl_err, why, sizeof(why))) {
            fail(ex, PHASE_TLS, CAUSE_TLS, 0, "%s refused the TLS handshake: %s", addr, why);
        } else if (ssl_err) {
            char buf[160];
            ERR_error_string_n(ssl_err, buf, sizeof(buf));
            /* A broken TLS record while the request goes out is the send failing; while the
             * response comes in it is the response that is invalid. */
            fail(ex, p, p == PHASE_SEND ? CAUSE_IO : CAUSE_PROTOCOL, 0, "TLS error with %s: %s",
                 addr, buf);
        } else {
            fail(ex, p, socket_cause(err), 0, "%s: %s", addr,
                 err ? strerror(err) : "connection error");
        }
    }
}

static void send_request(struct exchange *ex)
{
    struct bufferevent *ub = ex->ubev;
    const struct h1_info *info = &ex->info;
    struct fwd_request fwd = {
        .target = ex->target,
        .target_len = ex->target_len,
        .client_ip = client_ip(ex->client),
        .client_tls = client_is_tls(ex->client),
        .request_id = ex->request_id,
        .client_host = ex->host,
        .client_host_len = ex->host_len,
        .keep_expect = ex->info.expect_continue && ex->route->expect == EXPECT_RELAY &&
                       client_http11(ex),
        .framing = info->framing,
        .content_length = info->content_length,
    };
    if (ex->host && ex->host != (ex->info.host ? ex->info.host->value : NULL)) {
        fwd.host = ex->host; /* absolute-form: its authority replaces Host (RFC 9112 3.2.2) */
        fwd.host_len = ex->host_len;
    } else if (!ex->host) {
        fwd.host = upconn_addr(ex->uc);
        fwd.host_len = strlen(fwd.host);
    }
    set_phase(ex, PHASE_SEND);
    hdr_write_request(bufferevent_get_output(ub), &ex->req, &fwd);
    /* Resent after a stale pooled connection: an empty chunked body was consumed from the
     * client already, its last chunk went to the dead connection; it goes again. */
    if (ex->retried && ex->req_state == REQ_DONE && ex->info.framing == H1_BODY_CHUNKED)
        evbuffer_add(bufferevent_get_output(ub), "0\r\n\r\n", 5);
    upconn_mark_used(ex->uc);
    if (ex->req_state == REQ_GATED)
        arm(&ex->continue_timer, ex->route->continue_timeout_ms);
    if (ex->req_state == REQ_BODY) {
        /* client_body_timeout runs from here: while we were connecting the client owed us
         * nothing */
        struct timeval tv = tv_ms(ex->cfg->client_body_timeout_ms);
        struct timeval wtv = tv_ms(ex->cfg->client_send_timeout_ms);
        bufferevent_set_timeouts(ex->cbev, &tv, &wtv);
        pump_request_body(ex); /* flushes head and body, unless the body is refused */
        return;
    }
    flush_upstream(ex);
    maybe_request_sent(ex);
}

static void on_upconn_phase(void *arg, enum phase p)
{
    set_phase(arg, p);
}

static void on_upconn_ready(void *arg)
{
    struct exchange *ex = arg;
    ex->ubev = upconn_bev(ex->uc);
    ex->up_plain = !ex->up->tls;
    bufferevent_set_max_single_write(ex->ubev, RELAY_HIGH);
    bufferevent_setcb(ex->ubev, up_read_cb, up_write_cb, up_event_cb, ex);
    bufferevent_setwatermark(ex->ubev, EV_READ, 0, up_read_high(ex));
    bufferevent_setwatermark(ex->ubev, EV_WRITE, 0, 0);
    struct timeval send = tv_ms(phase_limit(ex, PHASE_SEND));
    bufferevent_set_timeouts(ex->ubev, NULL, &send);
    bufferevent_enable(ex->ubev, EV_READ | EV_WRITE);
    send_request(ex);
}

static void on_upconn_error(void *arg, enum cause cause, const char *detail)
{
    struct exchange *ex = arg;
    fail(ex, ex->phase, cause, 0, "%s", detail);
}

static const struct upconn_events upconn_cbs = {
    .on_phase = on_upconn_phase,
    .on_ready = on_upconn_ready,
    .on_error = on_upconn_error,
};

static void connect_origin(struct exchange *ex)
{
    int up_idx = (int)(ex->up - ex->cfg->upstreams);
    if (!ex->retried) {
        ex->uc = upconn_take_idle(ex->w, up_idx, ex->origin);
        ex->reused = ex->uc != NULL;
        if (ex->uc) {
            metrics_add(ex->w->metrics, M_UPSTREAM_REUSED, 1);
            on_upconn_ready(ex);
            return;
        }
    }
    ex->reused = false;
    ex->uc = upconn_open(ex->w, up_idx, ex->origin, &upconn_cbs, ex);
    if (!ex->uc)
        fail(ex, PHASE_CONNECT, CAUSE_IO, 0, "out of memory");
}

/* ---- the request body ---- */

/* Moves request body bytes to the origin, like relay_response_body in the other direction. */
static void pump_request_body(struct exchange *ex)
{
    if (ex->req_state != REQ_BODY || !ex->ubev)
        return;
    struct evbuffer *in = bufferevent_get_input(ex->cbev);
    struct evbuffer *out = bufferevent_get_output(ex->ubev);
    for (;;) {
        size_t before_in = evbuffer_get_length(in), before_out = evbuffer_get_length(out);
        if (body_move(&ex->req_body, in, out, RELAY_HIGH) != 0) {
            ex->req_state = REQ_DONE; /* nothing more will be read from this client */
            upconn_drop(ex);
            if (ex->resp_state == RESP_HEAD) {
                client_error(ex, 400, ex->req_body.error, true);
            } else {
                ex->aborted = true;
                ex->keep_client = false;
                finish(ex);
            }
            return;
        }
        /* body_size counts announced chunk sizes: an oversized body is refused before any of
         * it (or the head) reaches the origin */
        if (ex->req_body.bytes > ex->cfg->max_body_size ||
            (ex->req_body.in == H1_BODY_CHUNKED &&
             ex->req_body.chunked.body_size > ex->cfg->max_body_size)) {
            ex->req_state = REQ_DONE;
            upconn_drop(ex);
            if (ex->resp_state == RESP_HEAD) {
                client_error(ex, 413, "request body larger than max_body_size", true);
            } else {
                ex->aborted = true;
                ex->keep_client = false;
                finish(ex);
            }
            return;
        }
        flush_upstream(ex);
        if (ex->req_body.done)
            break;
        if (evbuffer_get_length(out) > RELAY_HIGH || evbuffer_get_length(in) == 0 ||
            (evbuffer_get_length(in) == before_in && evbuffer_get_length(out) == before_out))
            return; /* the origin's write callback or more client bytes bring us back */
    }
    ex->req_state = REQ_DONE;
    struct timeval wtv = tv_ms(ex->cfg->client_send_timeout_ms);
    bufferevent_set_timeouts(ex->cbev, NULL, &wtv); /* waiting for the response is fine */
    maybe_request_sent(ex);
}

/* ---- client side events ---- */

void exchange_client_read(struct exchange *ex)
{
    if (ex->req_state != REQ_BODY)
        return;
    /* Uploads: libevent reads 4 KiB per turn; take what the client sent in one go. */
    if (ex->client_plain && ex->ubev &&
        evbuffer_get_length(bufferevent_get_input(ex->cbev)) >= SOCKIO_LIBEVENT_READ &&
        evbuffer_get_length(bufferevent_get_output(ex->ubev)) <= RELAY_HIGH &&
        sockio_fill(ex->cbev, RELAY_HIGH) < 0) {
        exchange_client_gone(ex, "connection failed");
        client_free(ex->client);
        return;
    }
    pump_request_body(ex);
    /* Otherwise bytes stay buffered (pipelined requests, or a body held for 100-continue); the
     * client bufferevent's read high watermark stops reading from the socket. */
}

void exchange_client_write(struct exchange *ex)
{
    /* The client drained its output: resume the response body. */
    if (ex->resp_state == RESP_BODY && ex->ubev) {
        bufferevent_enable(ex->ubev, EV_READ);
        relay_response_body(ex);
    }
}

/* ---- start ---- */

/* The client's X-Request-Id when it is well-formed (so traces join up), else a new one. */
static void make_request_id(struct exchange *ex)
{
    int h = h1_find_field(ex->req.fields, ex->req.nfields, "x-request-id", 0);
    if (h >= 0 && request_id_valid(ex->req.fields[h].value, ex->req.fields[h].value_len)) {
        memcpy(ex->request_id, ex->req.fields[h].value, ex->req.fields[h].value_len);
        ex->request_id[ex->req.fields[h].value_len] = '\0';
        return;
    }
    worker_request_id(ex->w, ex->request_id, sizeof(ex->request_id));
}

/* Splits the request-target into what we route and forward. 0, or the status to refuse it. */
static int parse_target(struct exchange *ex, const char **why)
{
    struct req_target t;
    int status = request_target(&ex->req, &t, why);
    if (status)
        return status;
    if (t.host) {
        ex->host = t.host;
        ex->host_len = t.host_len;
    }
    ex->target = t.path;
    ex->target_len = t.path_len;
    ex->route_path = t.route;
    ex->path_len = t.route_len;
    return 0;
}

static void init_timers(struct exchange *ex)
{
    struct event_base *base = ex->w->base;
    evtimer_assign(&ex->phase_timer, base, phase_timeout_cb, ex);
    evtimer_assign(&ex->total_timer, base, total_timeout_cb, ex);
    evtimer_assign(&ex->continue_timer, base, continue_timeout_cb, ex);
    evtimer_assign(&ex->processing_timer, base, processing_cb, ex);
}

struct exchange *exchange_start(struct worker *w, struct client *c, const char *head,
                                size_t head_len, const struct h1_request *req,
                                uint64_t received_us)
{
    struct exchange *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return NULL;
    ex->head = malloc(head_len);
    if (!ex->head) {
        free(ex);
        return NULL;
    }
    /* Copy before the client's buffer is drained; the parsed spans are rebased onto the copy. */
    memcpy(ex->head, head, head_len);
    ex->head_len = head_len;
    ex->req = *req;
    ptrdiff_t delta = ex->head - head;
    ex->req.method += delta;
    ex->req.target += delta;
    for (size_t i = 0; i < ex->req.nfields; i++) {
        ex->req.fields[i].name += delta;
        ex->req.fields[i].value += delta;
    }
    ex->w = w;
    ex->client = c;
    ex->cfg = w->cfg;
    ex->cbev = client_bev(c);
    ex->client_plain = !client_is_tls(c);
    ex->t0 = received_us;
    ex->origin = -1;
    ex->phase = PHASE_ROUTE;
    ex->phase_start[PHASE_ROUTE] = now_us();
    init_timers(ex);
    make_request_id(ex);
    metrics_add(w->metrics, M_REQUESTS, 1);
    return ex;
}

void exchange_run(struct exchange *ex)
{
    const struct config *cfg = ex->cfg;
    struct h1_error err;
    const char *why = NULL;

    if (h1_request_info(&ex->req, &ex->info, &err) != 0) {
        ex->req_state = REQ_DONE;
        client_error(ex, err.status, err.reason, true);
        return;
    }
    ex->req_state = ex->info.framing == H1_BODY_NONE ? REQ_DONE : REQ_BODY;
    body_init(&ex->req_body, ex->info.framing, ex->info.content_length,
              ex->info.framing == H1_BODY_CHUNKED, cfg->max_header_size);
    if (ex->info.host) {
        ex->host = ex->info.host->value;
        ex->host_len = ex->info.host->value_len;
    }
    int refused = parse_target(ex, &why);
    if (refused) {
        client_error(ex, refused, why, true);
        return;
    }
    bool http11 = client_http11(ex);
    /* HTTP/1.0 clients cannot take a 100 and may not mean it: Expect is ignored (RFC 9110
     * 10.1.1). */
    if (http11 && ex->info.expect_other) {
        client_error(ex, 417, "only the 100-continue expectation is supported",
                     ex->req_state != REQ_DONE);
        return;
    }
    if (ex->info.framing == H1_BODY_LENGTH && ex->info.content_length > cfg->max_body_size) {
        client_error(ex, 413, "request body larger than max_body_size", true);
        return;
    }
    if (request_portico_hops(&ex->req) >= MAX_PORTICO_HOPS) {
        client_error(ex, 508, "forwarding loop: this request already went through Portico "
                     "too many times", ex->req_state != REQ_DONE);
        return;
    }
    ex->route = cfg_route(cfg, ex->host, ex->host_len, ex->route_path, ex->path_len);
    if (!ex->route) {
        client_error(ex, 404, "no route matches this host and path",
                     ex->req_state != REQ_DONE);
        return;
    }
    ex->up = &cfg->upstreams[ex->route->upstream];

    /* Interim responses Portico makes, before the origin is even contacted. */
    if (http11 && span_ieq(ex->req.method, ex->req.method_len, "GET"))
        send_early_hints(ex);
    if (ex->req_state == REQ_BODY) {
        if (http11 && ex->info.expect_continue) {
            switch (ex->route->expect) {
            case EXPECT_RELAY:
                ex->req_state = REQ_GATED;
                break;
            case EXPECT_SYNTHESIZE:
                send_continue(ex);
                metrics_add(ex->w->metrics, M_CONTINUE_SENT, 1);
                break;
            case EXPECT_IGNORE:
                break;
            }
        }
    }
    if (http11 && ex->route->processing_interval_ms)
        arm(&ex->processing_timer, ex->route->processing_interval_ms);
    if (ex->up->timers_ms[TIMER_TOTAL])
        arm(&ex->total_timer, ex->up->timers_ms[TIMER_TOTAL]);

    ex->origin = upstream_pick(ex->up);
    if (ex->origin < 0) {
        fail(ex, PHASE_ROUTE, CAUSE_NO_ORIGIN, 0, "every origin of upstream %s is marked down",
             ex->up->name);
        return;
    }
    connect_origin(ex);
}
