/*
 * h2_stream.c — the streams of an HTTP/2 connection: each request stream's head translated to
 * HTTP/1.1 and checked (h2_request.c, then h1_parse_request), its exchange started, and the
 * exchange's downstream operations turned into nghttp2 submissions. See h2.c for the whole.
 *
 * These functions only submit frames and ask for a flush (h2_want_flush): nghttp2 sends and
 * receives only from h2.c's own callbacks.
 */
#include "h2_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/downstream.h"
#include "portico/errpage.h"
#include "portico/exchange.h"
#include "portico/fmt.h"
#include "portico/headers.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/realip.h"
#include "portico/recent.h"
#include "portico/sock.h"
#include "portico/status.h"
#include "portico/timing.h"
#include "portico/trace.h"
#include "portico/tunnel.h"
#include "portico/util.h"

static void body_timer_cb(evutil_socket_t fd, short what, void *arg);

/* ---- streams ---- */

/* Counts what the stream's body buffer gains and loses in the connection's `held`: bytes come
 * from the exchange's relay (and its error pages), and leave as DATA (send_data). */
static void body_changed(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    struct h2_stream *s = arg;
    s->conn->held = s->conn->held + info->n_added - info->n_deleted;
    h2_stream_holds(s);
    h2_stream_check(s);
}

/* What the stream's origin may read at once: what the stream may still take (never 0, which
 * would be no limit: a stream with no room is paused by pending()). */
static size_t read_max(const struct h2_stream *s)
{
    return MAX(h2_stream_room(s), 1);
}

void h2_stream_rooms(struct h2_conn *h)
{
    h->rooms_stale = false;
    struct h2_stream *s;
    TAILQ_FOREACH(s, &h->streams, link)
        if (s->ex)
            exchange_read_max(s->ex, read_max(s));
}

/* The shares were cut anew: every stream's room changed. Set once at the end of the callback
 * (flush), not at each stream: a pass at each over all the others cost the loop n^2 / 2 of
 * them when n streams opened, and again when their connection ended (6,000 streams: 0.9 s of
 * CPU each way; 10,000, the most http2_max_concurrent_streams allows, ~2.5 s). */
static void rooms_changed(struct h2_conn *h)
{
    h->rooms_stale = true;
    h2_want_flush(h);
}

/* The streams to cut the shares for when n are open: a quarter more (none more below 4), so
 * that the next n / 4 streams open without a cut, within http2_max_concurrent_streams (a
 * stream past it is refused), never fewer than n. */
static size_t shares_for(const struct h2_conn *h, size_t n)
{
    size_t max = (size_t)MAX(h->cfg->http2_max_concurrent_streams, 1);
    return MAX(n, MIN(n + n / 4, max));
}

/* Cuts the shares for the streams open now (h2_stream_share): every stream's read limit is set
 * anew at the flush, before any origin of theirs reads again, and each pass over them comes
 * after a quarter of their number opened or closed, O(1) visits a stream amortized. */
static void recut(struct h2_conn *h)
{
    size_t before = h->shares_for;
    h->shares_for = shares_for(h, h->nstreams);
    rooms_changed(h);
    if (h->shares_for < before)
        h->check_all = true; /* every share grew: a paused exchange may go on */
}

struct h2_stream *h2_stream_new(struct h2_conn *h, int32_t id)
{
    struct h2_stream *s = zalloc(sizeof(*s));
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
    if (!evbuffer_add_cb(s->body, body_changed, s)) {
        evbuffer_free(s->req_in);
        evbuffer_free(s->body);
        free(s);
        return NULL;
    }
    s->conn = h;
    s->id = id;
    /* The event's clock, which the exchange's phases read too: a later now_us() made an answer
     * within this event end before the stream began (elapsed_ms 1e15, phases over the total). */
    s->t0 = event_now_us();
    h2_request_init(&s->req, h->cfg->max_header_size);
    evtimer_assign(&s->body_timer, h->loop->base, body_timer_cb, s);
    TAILQ_INSERT_TAIL(&h->streams, s, link);
    h->nstreams++;
    /* Past the streams the shares were cut for, every share shrinks: the limits set from the
     * old ones could take more than CONN_HELD_MAX between them. Within it, nothing changed. */
    if (h->nstreams > h->shares_for)
        recut(h);
    metrics_add(h->loop->metrics, M_H2_STREAMS, 1);
    if (++h->loop->h2_streams > h->loop->h2_streams_peak) /* the worker's trim (heap.h) */
        h->loop->h2_streams_peak = h->loop->h2_streams;
    return s;
}

/* Takes the stream's grant out of the connection's sum. */
static void release_grant(struct h2_stream *s)
{
    s->conn->req_granted -= s->req_grant;
    s->req_grant = 0;
}

/* The status of a stream that closed before its response went whole, when no head went:
 * found malformed, a HEADERS of ours nghttp2 would not send, or else a client that left. */
static int closed_status(const struct h2_stream *s)
{
    return s->malformed ? HTTP_BAD_REQUEST
           : s->unsent  ? HTTP_BAD_GATEWAY
                        : HTTP_CLIENT_CLOSED_REQUEST;
}

/* Writes the kept record: bytes_out is what went as DATA; a stream that closed before its
 * END_STREAM went (why: the reason) is a client that left, logged as over HTTP/1.1: with the
 * status sent when the head went, else 499 (or 400, found malformed; 502, a HEADERS unsent). */
static void write_kept(struct h2_stream *s, const char *why)
{
    struct access_record *r = s->log;
    if (!r)
        return;
    s->log = NULL;
    r->bytes_out = s->body_sent;
    if (why && s->kept != KEPT_ENDED) {
        if (!s->head_sent)
            r->status = closed_status(s);
        if (s->kept == KEPT_ANSWER) {
            /* The exchange had ended, all of its response given to nghttp2 and counted done:
             * it was still being sent, as when an HTTP/1.1 client closes mid-body. */
            r->phase = PHASE_READ;
            r->detail = r->detail ? r->detail : why;
            if (s->unsent) /* not the client: trailers unsent, after the head */
                r->aborted = s->head_sent;
            else
                metrics_add(s->conn->loop->metrics, M_CLIENT_ABORTS, 1);
        }
    }
    exchange_log_record(s->conn->loop, r, s->log_route, s->log_upstream);
    free(r);
}

void h2_stream_delivered(struct h2_stream *s)
{
    write_kept(s, NULL);
}

/* How a stream's discarded rest ended, as it closes: its END_STREAM came, it was reset by
 * Portico, or it was cut (by the client, also while a reload's drain waits, or by stop_now's
 * close). Counted once per stream. */
static void discard_ended(const struct h2_stream *s)
{
    static const enum discard_end shut[] = {
        [DISCARD_PAST_MAX] = DISCARD_END_RESET,
        [DISCARD_LATE] = DISCARD_END_TIMEOUT,
        [DISCARD_ANSWERED] = DISCARD_END_ANSWERED,
    };
    enum discard_end end = s->discard != DISCARD_READING           ? shut[s->discard]
                           : s->req_eof                            ? DISCARD_END_READ
                           : s->conn->loop->state == LOOP_STOPPING ? DISCARD_END_CLOSED
                                                                    : DISCARD_END_CLIENT_CLOSED;
    metrics_discard_end(s->conn->loop->metrics, true, end, s->discarded);
}

void h2_stream_free(struct h2_stream *s, const char *why)
{
    struct h2_conn *h = s->conn;
    if (s->discard != DISCARD_NONE)
        discard_ended(s);
    h2_tunnel_free(s->tunnel);
    if (s->ex) {
        struct exchange *ex = s->ex;
        s->ex = NULL;
        /* A stream found malformed after its exchange began (its DATA broke its
         * content-length) is the client's error, not a client that left. */
        exchange_cancel(ex, closed_status(s), why);
        s->kept = KEPT_CANCELLED; /* keep_log had its record */
    }
    write_kept(s, why);
    event_del(&s->body_timer);
    if (s->answer_ping)
        TAILQ_REMOVE(&h->answering, s, answer_link);
    release_grant(s);
    evbuffer_free(s->req_in);
    h->held -= evbuffer_get_length(s->body);
    evbuffer_free(s->body);
    h2_stream_uncheck(s);
    if (h->express == s)
        h->express = NULL;
    if (s->trailers)
        evbuffer_free(s->trailers);
    h2_request_free(&s->req);
    TAILQ_REMOVE(&h->streams, s, link);
    h->nstreams--;
    h->loop->h2_streams--;
    /* The shares stay as they were (smaller than they could be: the bound holds) until a third
     * of the streams they were cut for are gone: then every share grows. A paused exchange
     * waits for its own bytes to leave meanwhile, or for the pool (check_streams). */
    if (h->nstreams + h->nstreams / 2 < h->shares_for)
        recut(h);
    if (TAILQ_EMPTY(&h->streams))
        h->idle_since = now_us();
    free(s);
}

/* ---- response heads ---- */

/* Fields HTTP/2 forbids in a response (RFC 9113 8.2.2); the exchange's heads are HTTP/1.1's. */
static const uint32_t connection_specific =
    H1_FIELD_BIT(H1_F_CONNECTION) | H1_FIELD_BIT(H1_F_KEEP_ALIVE) |
    H1_FIELD_BIT(H1_F_PROXY_CONNECTION) | H1_FIELD_BIT(H1_F_TRANSFER_ENCODING) |
    H1_FIELD_BIT(H1_F_UPGRADE) | H1_FIELD_BIT(H1_F_TE);

/* Fields HPACK never indexes. Values unique to each response would only churn the dynamic
 * table, and nghttp2 chains its entries by name, so every look-up compared each X-Request-Id in
 * the table (~130 memcmp per response, 13% of the instructions of a small h2c request).
 * Set-Cookie carries secrets (RFC 7541 7.1.3). */
static const uint32_t never_indexed =
    H1_FIELD_BIT(H1_F_X_REQUEST_ID) | H1_FIELD_BIT(H1_F_TRACEPARENT) |
    H1_FIELD_BIT(H1_F_SERVER_TIMING) | H1_FIELD_BIT(H1_F_SET_COOKIE);

/* The digits of a head's :status and content-length, kept until nghttp2 has copied them. */
struct head_digits {
    char p[3 + 20];
};

/* A resp_head as nghttp2 name/value pairs. Names go as they are: nghttp2 copies every name on
 * submit and lowercases the copy (nghttp2.h, nghttp2_submit_response), so a head of any size
 * needs no storage of its own but the digits. Returns the count. */
static size_t head_nv(const struct resp_head *head, bool with_length, nghttp2_nv *nv, size_t max,
                      struct head_digits *d)
{
    struct fmt_buf b;
    fmt_init(&b, d->p, sizeof(d->p));
    int status = head->status >= 100 && head->status <= 999 ? head->status : HTTP_BAD_GATEWAY;
    fmt_u64(&b, (uint64_t)status);
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)d->p, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < head->nfields && n < max - 1; i++) {
        const struct h1_field *f = &head->fields[i];
        uint32_t id = H1_FIELD_BIT(h1_field_id(f));
        if (id & connection_specific)
            continue;
        nv[n++] = (nghttp2_nv){(uint8_t *)(uintptr_t)f->name, (uint8_t *)(uintptr_t)f->value,
                               f->name_len, f->value_len,
                               id & never_indexed ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE};
    }
    if (with_length) {
        fmt_u64(&b, head->content_length); /* 20 digits at most: always fits after the 3 */
        nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)d->p + 3, 14, b.len - 3,
                               NGHTTP2_NV_FLAG_NONE};
    }
    return n;
}

/* What nghttp2 counts a header block of these fields as, against H2_HEADER_BLOCK_MAX: its
 * nghttp2_hd_deflate_bound (12 bytes, and each field 12 more than its name and value: HPACK's
 * longest literal, lengths of up to 2^31), plus 5 for a priority (nghttp2's
 * session_estimate_headers_payload). */
static size_t block_bound(const nghttp2_nv *nv, size_t n)
{
    size_t len = 12 + 5;
    for (size_t i = 0; i < n; i++)
        len += 12 + nv[i].namelen + nv[i].valuelen;
    return len;
}

/* The largest trailer section sent as HEADERS: nghttp2 makes no header block over
 * H2_HEADER_BLOCK_MAX and drops one that would be without a word, and the stream then waited
 * for ever for its END_STREAM. A field line is at least 4 bytes ("a:" CRLF), so 16 KiB of field
 * lines make at most 17 + 16 KiB + 4096 * 9 bytes (block_bound), under 64 KiB (30,000 fields
 * under max_header_size 1m were dropped so, and the stream never ended). A larger section cuts
 * the response short as one over max_header_size does. */
#define H2_TRAILERS_MAX (16 * 1024)

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The response's trailer fields as a trailing HEADERS carries them (*count of them, malloc'd,
 * pointing into s->trailers until it changes): field lines as the chunked decoder checked them
 * (a token name, a value without CR, LF or NUL) and the filter kept them (trailers.h: no
 * framing, hop-by-hop or connection-specific field, so none that HTTP/2 forbids, RFC 9113
 * 8.2.2); a colon never begins a token, so no pseudo-header. nghttp2 lowercases the names it
 * copies; the values lose the whitespace around them (RFC 9113 8.2.1). NULL when none is left
 * or out of memory. */
static nghttp2_nv *trailer_nv(struct h2_stream *s, size_t *count)
{
    size_t len = s->trailers ? evbuffer_get_length(s->trailers) : 0;
    if (len == 0)
        return NULL;
    /* Within max_header_size (the decoder's bound): copied into one span to cut at ':' and LF. */
    const char *p = (const char *)evbuffer_pullup(s->trailers, -1);
    size_t lines = 0;
    for (const char *q = p; q && (q = memchr(q, '\n', len - (size_t)(q - p))) != NULL; q++)
        lines++;
    nghttp2_nv *nv = p && lines ? malloc(lines * sizeof(*nv)) : NULL;
    if (!nv)
        return NULL;
    size_t n = 0;
    for (const char *line = p, *end = p + len; line < end && n < lines;) {
        const char *lf = memchr(line, '\n', (size_t)(end - line));
        const char *colon = lf ? memchr(line, ':', (size_t)(lf - line)) : NULL;
        if (!colon)
            break; /* never: the section came whole (DONE), in whole field lines */
        const char *v = colon + 1, *ve = lf;
        while (v < ve && is_ows(*v))
            v++;
        while (ve > v && (ve[-1] == '\r' || is_ows(ve[-1])))
            ve--;
        nv[n++] = (nghttp2_nv){(uint8_t *)(uintptr_t)line, (uint8_t *)(uintptr_t)v,
                               (size_t)(colon - line), (size_t)(ve - v), NGHTTP2_NV_FLAG_NONE};
        line = lf + 1;
    }
    *count = n;
    return nv;
}

/* Submits the response's trailer fields (trailer_nv) as a trailing HEADERS with END_STREAM.
 * Returns 0 once submitted; -1 when none is left (an empty trailer section sends no HEADERS)
 * or out of memory: then the DATA ends the stream. */
static int submit_trailers(struct h2_stream *s)
{
    size_t n = 0;
    nghttp2_nv *nv = trailer_nv(s, &n);
    if (!nv)
        return -1;
    int rc = nghttp2_submit_trailer(s->conn->session, s->id, nv, n); /* copies every field */
    free(nv);
    evbuffer_drain(s->trailers, evbuffer_get_length(s->trailers));
    return rc == 0 ? 0 : -1;
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
    if (avail == 0 && s->resp_cut)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets it: INTERNAL_ERROR */
    size_t n = MIN(avail, length);
    if (n)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && s->resp_done && !s->resp_cut) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        /* The trailers end the stream: the HEADERS goes after this DATA (nghttp2 drops the
         * DATA if it is empty), as HAProxy and Envoy forward an origin's chunked trailers. */
        if (submit_trailers(s) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

/* Whether a final head is followed by a body (DATA), and a content-length sent with it. */
static bool head_has_body(const struct resp_head *head, bool final)
{
    return final && head->framing != H1_BODY_NONE;
}

static bool head_with_length(const struct resp_head *head, bool final)
{
    return head_has_body(head, final) && head->framing == H1_BODY_LENGTH;
}

/* Submits a response head; a body follows through data_read unless framing is NONE. */
static void submit_head(struct h2_stream *s, const struct resp_head *head, bool final)
{
    struct h2_conn *h = s->conn;
    nghttp2_nv nv[HDR_MAX_FIELDS + 2];
    struct head_digits digits;
    bool body = head_has_body(head, final);
    size_t n = head_nv(head, head_with_length(head, final), nv, ARRAY_LEN(nv), &digits);
    int rc;
    if (!final) {
        rc = nghttp2_submit_headers(h->session, NGHTTP2_FLAG_NONE, s->id, NULL, nv, n, NULL);
    } else {
        nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
        if (!body)
            s->resp_done = true;
        rc = nghttp2_submit_response(h->session, s->id, nv, n, body ? &prd : NULL);
    }
    if (rc != 0)
        h2_reset(h, s->id, NGHTTP2_INTERNAL_ERROR);
    h2_want_flush(h);
}

/* The size of a field section as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 6.5.2):
 * each field's name and value, and 32 more. */
static size_t list_size(const nghttp2_nv *nv, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += nv[i].namelen + nv[i].valuelen + 32;
    return len;
}

/* Whether the n fields fit the field section the client said it takes (its
 * SETTINGS_MAX_HEADER_LIST_SIZE, UINT32_MAX when it sent none); if not, why says so, naming
 * what ("response head", "trailer section"). */
static bool within_client_list(const struct h2_stream *s, const nghttp2_nv *nv, size_t n,
                               const char *what, char *why, size_t size)
{
    uint32_t max = nghttp2_session_get_remote_settings(s->conn->session,
                                                       NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE);
    size_t len = list_size(nv, n);
    if (len <= max)
        return true;
    snprintf(why, size,
             "%s too large for HTTP/2 (%zu bytes of fields, limit %" PRIu32
             " bytes: the client's SETTINGS_MAX_HEADER_LIST_SIZE)",
             what, len, max);
    return false;
}

/* ---- the downstream interface ---- */

/* An origin's head as submit_head would make it, within the header block nghttp2 sends (it
 * drops a larger one: the client waited for ever for a response), and within the field section
 * the client said it takes. That setting is advisory (RFC 9113 6.5.2; nginx, Envoy and nghttp2
 * send past it), but a client that announced it refuses the head: python-h2 ends the whole
 * connection (ENHANCE_YOUR_CALM), every other stream of it lost, where a 502 that says why
 * costs one stream (RFC 9114 4.2.2: "SHOULD NOT send" past it). The client's limit is its own:
 * a small one fails only its own responses. */
static bool ds_head_fits(void *ctx, const struct resp_head *head, bool final, char *why,
                         size_t size)
{
    struct h2_stream *s = ctx;
    nghttp2_nv nv[HDR_MAX_FIELDS + 2];
    struct head_digits digits;
    size_t n = head_nv(head, head_with_length(head, final), nv, ARRAY_LEN(nv), &digits);
    size_t len = block_bound(nv, n);
    if (len > H2_HEADER_BLOCK_MAX) {
        snprintf(why, size,
                 "response head too large for HTTP/2 (%zu bytes of fields, limit %d KiB)", len,
                 H2_HEADER_BLOCK_MAX / 1024);
        return false;
    }
    return within_client_list(s, nv, n, "response head", why, size);
}

/* The trailer section within the field section the client said it takes, as a head is
 * (ds_head_fits): one past it would be refused as a head would (python-h2 ends the whole
 * connection), so the response is cut instead (RST_STREAM), as one over H2_TRAILERS_MAX is. */
static bool ds_trailers_fit(void *ctx, char *why, size_t size)
{
    struct h2_stream *s = ctx;
    size_t n = 0;
    nghttp2_nv *nv = trailer_nv(s, &n);
    if (!nv)
        return true; /* none (no HEADERS goes), or no memory to send them (dropped) */
    bool fits = within_client_list(s, nv, n, "trailer section", why, size);
    free(nv);
    return fits;
}

/* A WebSocket's 101 is answered as RFC 8441 5 says: 200, with the origin's fields but its
 * Sec-WebSocket-Accept (the key was Portico's; Upgrade and Connection never cross), and a body
 * that is the tunnel's, its end the origin's (h2_tunnel.c). */
static void submit_switched(struct h2_stream *s, const struct resp_head *head)
{
    struct h1_field fields[HDR_MAX_FIELDS];
    struct resp_head ok = *head;
    ok.status = HTTP_OK;
    ok.reason = NULL;
    ok.reason_len = 0;
    ok.framing = H1_BODY_CLOSE;
    ok.fields = fields;
    ok.nfields = 0;
    for (size_t i = 0; i < head->nfields && ok.nfields < ARRAY_LEN(fields); i++)
        if (!span_ieq(head->fields[i].name, head->fields[i].name_len, "sec-websocket-accept"))
            fields[ok.nfields++] = head->fields[i];
    submit_head(s, &ok, true);
}

static void ds_interim(void *ctx, const struct resp_head *head)
{
    struct h2_stream *s = ctx;
    if (s->websocket && head->status == HTTP_SWITCHING_PROTOCOLS)
        submit_switched(s, head);
    else
        submit_head(s, head, false);
}

static void ds_head(void *ctx, const struct resp_head *head, struct body_sink *sink)
{
    struct h2_stream *s = ctx;
    /* Only a body of unknown length may end in trailers (a chunked one); without memory for
     * them they are dropped, as they were before HTTP/2 forwarded them. */
    if (head->framing == H1_BODY_CHUNKED && !s->trailers)
        s->trailers = evbuffer_new();
    *sink = (struct body_sink){.out = s->body, .chunked = false, .trailers = s->trailers,
                               .trailers_max = H2_TRAILERS_MAX};
    submit_head(s, head, true);
}

void h2_stream_resume(struct h2_stream *s)
{
    if (!s->deferred)
        return;
    s->deferred = false;
    /* Without memory to queue it again, the stream would wait for ever: the origin is no longer
     * read (its body is full) and the client has nothing to answer. */
    if (nghttp2_session_resume_data(s->conn->session, s->id) == NGHTTP2_ERR_NOMEM)
        h2_out_of_memory(s->conn);
}

static void ds_body(void *ctx)
{
    struct h2_stream *s = ctx;
    if (evbuffer_get_length(s->body))
        h2_stream_resume(s);
    h2_want_flush(s->conn);
}

static size_t ds_pending(void *ctx)
{
    struct h2_stream *s = ctx;
    size_t held = evbuffer_get_length(s->body);
    /* The connection's output is every stream's: while it is full, all of them wait. A stream
     * that may hold no more of the connection's budget waits as if its own output were full. */
    size_t room = h2_stream_room(s);
    size_t n = !room ? SIZE_MAX : held + sock_pending(s->conn->sock);
    if (room && s->ex) /* its next read takes no more than it may hold, or than goes at once */
        exchange_read_max(s->ex, room + h2_stream_express(s, room));
    s->watched |= n > 0;
    if (s->watched)
        h2_stream_check(s);
    return n;
}

static struct evbuffer *ds_request_input(void *ctx)
{
    struct h2_stream *s = ctx;
    return s->req_in;
}

void h2_stream_grant(struct h2_stream *s)
{
    struct h2_conn *h = s->conn;
    int64_t floor = (int64_t)h->req_floor;
    if (s->req_eof) {
        /* END_STREAM: no DATA comes any more, so what window it had left is nobody's; only
         * what it still holds counts (four finished uploads awaiting slow answers kept 1 MiB
         * each, and the next upload got 16 KiB windows). */
        size_t mine = (size_t)MAX((int64_t)s->req_counted - floor, 0);
        h->req_granted = h->req_granted - s->req_grant + mine;
        s->req_grant = mine;
        return;
    }
    if (!nghttp2_session_find_stream(h->session, s->id))
        return; /* nghttp2 closed it */
    /* What the client may still send: below 0 when the stream began under the default window
     * (65,535) and our SETTINGS took it down to the floor (nghttp2's
     * get_stream_local_window_size says 0 then, and a WINDOW_UPDATE that size reopens nothing). */
    int64_t window = (int64_t)nghttp2_session_get_stream_effective_local_window_size(h->session,
                                                                                     s->id) -
                     nghttp2_session_get_stream_effective_recv_data_length(h->session, s->id);
    int64_t has = (int64_t)s->req_counted + window;
    /* The floor is every stream's, set aside: only what it has beyond comes from the pool. */
    size_t others = h->req_granted - s->req_grant;
    size_t room = others < h->req_pool ? h->req_pool - others : 0;
    int64_t want = floor + (int64_t)MIN(h2_stream_req_share(h) - h->req_floor, room);
    /* Half a share at a time, as nghttp2 would: not a WINDOW_UPDATE per DATA frame. */
    if (has <= want / 2) {
        if (nghttp2_submit_window_update(h->session, NGHTTP2_FLAG_NONE, s->id,
                                         (int32_t)(want - has)) == NGHTTP2_ERR_NOMEM)
            h2_out_of_memory(h); /* the client's upload would wait for it for ever */
        has = want;
        h2_want_flush(h);
    }
    s->req_grant = (size_t)MAX(MAX(has, (int64_t)s->req_counted) - floor, 0);
    h->req_granted = others + s->req_grant;
}

/* The bytes that left req_in and then the origin's output (written to its socket) go back to
 * the stream's window, within its share. */
void h2_stream_request_taken(struct h2_stream *s, size_t queued)
{
    /* (a byte held for END_STREAM is not written yet: its window waits for it) */
    size_t held = MIN(s->req_counted, evbuffer_get_length(s->req_in) + queued + s->holding);
    if (held == 0)
        s->data_at = now_us(); /* all written: the client's silence counts from here */
    if (held < s->req_counted) {
        s->req_counted = held;
        h2_stream_grant(s);
    }
}

static void ds_request_taken(void *ctx, size_t queued)
{
    h2_stream_request_taken(ctx, queued);
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

/* client_body_min_rate ended the body: its 408's rest is not read (discard_begin), the stream
 * is reset after the answer. */
static void ds_request_stalled(void *ctx)
{
    struct h2_stream *s = ctx;
    s->body_timed_out = true;
}

/* The client has used all the window we gave it, the stream's or the connection's: what more
 * it has waits for our WINDOW_UPDATE, which waits for the origin or the connection's budget. */
static bool ds_request_blocked(void *ctx)
{
    struct h2_stream *s = ctx;
    return nghttp2_session_get_stream_local_window_size(s->conn->session, s->id) <= 0;
}

static uint64_t ds_request_shared(void *ctx, unsigned *bodies)
{
    struct h2_stream *s = ctx;
    unsigned n = 0;
    const struct h2_stream *t;
    TAILQ_FOREACH(t, &s->conn->streams, link) /* at a deadline that came: not per byte */
        n += t->ex != NULL && !t->req_eof;
    *bodies = n;
    return s->conn->body_in;
}

/* Keeps a record until the response's END_STREAM is written or the stream closes: bytes
 * handed to nghttp2 are not bytes sent, and a whole response still in `body` may never go. */
static void keep(struct h2_stream *s, const struct access_record *r, int route, int upstream,
                 enum kept_log kept)
{
    write_kept(s, NULL); /* none: one record per stream */
    s->log = log_record_copy(r);
    if (!s->log) { /* out of memory: written now, as handed to nghttp2 */
        exchange_log_record(s->conn->loop, r, route, upstream);
        return;
    }
    s->log_route = route;
    s->log_upstream = upstream;
    s->kept = kept;
}

static void ds_keep_log(void *ctx, const struct access_record *r, int route, int upstream)
{
    keep(ctx, r, route, upstream, KEPT_ENDED); /* done() or h2_stream_free says more */
}

bool h2_stream_answer_sent(const struct h2_stream *s)
{
    return nghttp2_session_get_stream_local_close(s->conn->session, s->id) == 1;
}

/* Opens the window of a stream whose body is dropped as far as an upload's share, once half of
 * it was spent (as h2_stream_grant does, nothing of it held), unless it holds what its
 * content-length has still to come: the client goes on to its END_STREAM at an upload's pace. */
static void discard_window(struct h2_stream *s)
{
    struct h2_conn *h = s->conn;
    int64_t window = (int64_t)nghttp2_session_get_stream_effective_local_window_size(h->session,
                                                                                     s->id) -
                     nghttp2_session_get_stream_effective_recv_data_length(h->session, s->id);
    int64_t want = (int64_t)h2_stream_req_share(h);
    if (window > want / 2 || (window >= 0 && (uint64_t)window >= s->req_left))
        return;
    if (nghttp2_submit_window_update(h->session, NGHTTP2_FLAG_NONE, s->id,
                                     (int32_t)(want - window)) == NGHTTP2_ERR_NOMEM)
        h2_out_of_memory(h); /* the client would wait for it until client_body_timeout */
    h2_want_flush(h);
}

/* The exchange is over with a whole answer while the client may still send its body: the rest,
 * whatever its content-length, is dropped as it comes, up to DISCARD_MAX (h2_stream_discard).
 * What came was dropped with req_in, never given back to the window: it is opened again at once
 * (an origin that took none of it had kept it shut, and the client would wait for
 * client_body_timeout). */
static void discard_begin(struct h2_stream *s)
{
    /* A content-length past DISCARD_MAX is read too, up to it: curl 7.88 ends such an upload
     * itself once it has the answer (after 512 KiB at most), and a reset at the answer made it
     * print 000 and exit 92, its 401 or 413 unseen. */
    if (s->req_eof)
        return;
    if (s->body_timed_out) { /* a 408's client sent nothing for long: reset at its END_STREAM */
        s->discard = DISCARD_LATE;
        return;
    }
    s->discard = DISCARD_READING;
    discard_window(s);
}

void h2_stream_discard(struct h2_stream *s, size_t len)
{
    s->discarded += len;
    if (s->discard != DISCARD_READING)
        return;
    if (s->discarded <= DISCARD_MAX) {
        discard_window(s);
        return;
    }
    s->discard = DISCARD_PAST_MAX; /* its window stays as it is: what it let go is dropped */
    if (h2_stream_answer_sent(s))
        h2_reset(s->conn, s->id, NGHTTP2_NO_ERROR);
}

void h2_stream_answered_early(struct h2_stream *s)
{
    if (s->discard != DISCARD_READING) { /* RFC 9113 8.1: the rest is not wanted */
        h2_reset(s->conn, s->id, NGHTTP2_NO_ERROR);
        return;
    }
    /* Reset once the client has read the answer: a round trip (enum discard). Until then, or
     * for a client that does not acknowledge the PING, the whole rest is due within
     * client_body_timeout of the answer, as over HTTP/1.1 (client.c's CS_DISCARD), not each
     * DATA: a byte every 2.5 s (the timeout 3 s) kept such a stream, its slot of
     * http2_max_concurrent_streams and a graceful stop's wait (the whole shutdown_timeout), for
     * as long as it went on. */
    s->answer_ping = h2_answer_ping(s->conn);
    TAILQ_INSERT_TAIL(&s->conn->answering, s, answer_link);
    s->data_at = now_us();
    s->body_timeout_us = s->conn->cfg->client_body_timeout_ms * 1000;
    arm_body_timer(s, s->data_at);
}

void h2_stream_answer_read(struct h2_stream *s)
{
    TAILQ_REMOVE(&s->conn->answering, s, answer_link);
    s->answer_ping = 0;
    if (s->discard != DISCARD_READING || s->req_eof)
        return; /* reset already (past DISCARD_MAX), or read to its end */
    s->discard = DISCARD_ANSWERED;
    event_del(&s->body_timer);
    h2_reset(s->conn, s->id, NGHTTP2_NO_ERROR); /* what it has in flight is its due (late_keep) */
}

static void ds_done(void *ctx, enum exchange_end end)
{
    struct h2_stream *s = ctx;
    s->ex = NULL;
    bool whole = end == END_KEEP || end == END_CLOSE || end == END_CLOSE_ASKED;
    if (whole)
        s->kept = KEPT_ANSWER;
    s->state = ST_ANSWERED;
    event_del(&s->body_timer);
    /* Nobody takes the rest of the body: it is not held any more (on_data_chunk lets what
     * still comes through the connection's window, and the stream's, or discards it). */
    evbuffer_drain(s->req_in, SIZE_MAX);
    if (whole)
        discard_begin(s);
    release_grant(s);
    if (end == END_DROP || end == END_RESET) {
        /* A fault drops or resets the response: the client must see this stream fail, and
         * only this one (the connection carries other streams). */
        evbuffer_drain(s->body, SIZE_MAX);
        h2_reset(s->conn, s->id, NGHTTP2_INTERNAL_ERROR);
    } else {
        /* A response cut short after its head (END_ABORT) still delivers the head and the
         * bytes that came, as over HTTP/1.1; a reset at once would overtake both in nghttp2's
         * queue. data_read resets the stream (INTERNAL_ERROR) once they went. */
        s->resp_cut = end == END_ABORT;
        s->resp_done = true;
        h2_stream_resume(s); /* a provider waiting for bytes now has its EOF, or its reset */
    }
    h2_want_flush(s->conn);
}

/* The origin switched: the stream is the tunnel's from now on (h2_tunnel.c). */
static void ds_upgraded(void *ctx, const struct tunnel_origin *origin)
{
    struct h2_stream *s = ctx;
    s->ex = NULL;
    s->state = ST_ANSWERED;
    event_del(&s->body_timer);
    if (!h2_tunnel_open(s, origin)) { /* out of memory: the 200 went, nothing more can */
        evbuffer_drain(s->body, SIZE_MAX);
        h2_reset(s->conn, s->id, NGHTTP2_INTERNAL_ERROR);
    }
    h2_want_flush(s->conn);
}

static const struct downstream_ops h2_ops = {
    .interim = ds_interim,
    .head = ds_head,
    .head_fits = ds_head_fits,
    .trailers_fit = ds_trailers_fit,
    .body = ds_body,
    .pending = ds_pending,
    .request_input = ds_request_input,
    .request_taken = ds_request_taken,
    .request_wait = ds_request_wait,
    .request_stalled = ds_request_stalled,
    .request_blocked = ds_request_blocked,
    .request_shared = ds_request_shared,
    .done = ds_done,
    .keep_log = ds_keep_log,
    .upgraded = ds_upgraded,
};

/* ---- requests ---- */

/* The client a trusted proxy named in the stream's fields ([proxy] real_ip), as its exchange
 * would have found it, into buf; NULL when the peer is the client. And in r, the first
 * x-forwarded-for (forwarded_for), as an exchange's line has it. Only a header block decoded
 * to its end with every field kept is read: of one cut short (a field refused, the limit
 * passed, the client gone) the fields kept are a prefix, which could name the client without
 * the proxy's own element after it. More fields than an HTTP/1.1 head may have (431 there) are
 * not read either. Out of line: its fields' array stays off the frames of the callers every
 * stream goes through (h2_stream_start). */
__attribute__((noinline)) static const char *refused_client(struct h2_stream *s,
                                                            struct access_record *r, char *buf,
                                                            size_t size)
{
    struct h2_conn *h = s->conn;
    if (!s->head_whole || s->req.too_large)
        return NULL;
    struct h1_field fields[H1_MAX_FIELDS];
    size_t n = h2_request_fields(&s->req, fields, H1_MAX_FIELDS);
    if (n > H1_MAX_FIELDS)
        return NULL;
    int xff = h1_find(fields, n, H1_F_X_FORWARDED_FOR, 0);
    if (xff >= 0) { /* a span of s->req's lines: kept with the record (keep) */
        r->forwarded_for = fields[xff].value;
        r->forwarded_for_len = fields[xff].value_len;
    }
    struct fault_addr client;
    if (h->loop->cfg->real_ip == REAL_IP_OFF ||
        !exchange_real_client(h->loop, h->peer, fields, n, NULL, &client))
        return NULL;
    return realip_text(&client, buf, size);
}

/* The id of a stream refused or reset before an exchange existed: the client's x-request-id when
 * it is well-formed and among the fields kept (exchange_request_id), as its exchange would have
 * taken it. A block cut short (a field refused, past max_header_size, the client gone) keeps a
 * prefix of whole fields: one there is the client's all the same. Else a new one. Out of line,
 * as refused_client. */
__attribute__((noinline)) static void refused_id(const struct h2_stream *s, char *id,
                                                 size_t size)
{
    struct h1_field fields[H1_MAX_FIELDS];
    size_t n = h2_request_fields(&s->req, fields, H1_MAX_FIELDS);
    exchange_request_id(s->conn->loop, fields, MIN(n, (size_t)H1_MAX_FIELDS), id, size);
}

/* The access line, count and last minutes (the status page's requests by class) of a request
 * answered or reset before any exchange existed, as client.c's count_refusal for HTTP/1.1. id:
 * the one its answer carried, NULL when no answer went (refused_id); answered: an answer was
 * submitted, and its line waits for what of it went. */
static void log_refused(struct h2_stream *s, const char *id, int status, const char *why,
                        uint64_t body_bytes, bool answered)
{
    struct h2_conn *h = s->conn;
    char own_id[48];
    if (!id) {
        refused_id(s, own_id, sizeof(own_id));
        id = own_id;
    }
    struct trace_context trace;
    char addr[PEER_ADDR_MAX], named[PEER_ADDR_MAX];
    trace_start(&h->loop->rng, 0, &trace);
    struct access_record r = {
        .time_ms = wall_ms(),
        .request_id = id,
        .trace_id = trace.trace_id,
        .proto = LOG_PROTO_HTTP20,
        .status = status,
        .phase = PHASE_CLIENT_HEADER,
        .bytes_out = body_bytes,
        .detail = why,
    };
    const char *client = refused_client(s, &r, named, sizeof(named));
    r.client = client ? client : peer_addr(h->peer, addr, sizeof(addr));
    r.peer = client ? peer_addr(h->peer, addr, sizeof(addr)) : NULL;
    timings_set(&r.timings, TIMING_TOTAL, now_us() - s->t0);
    h2_request_line(&s->req, &r.method, &r.method_len, &r.target, &r.target_len);
    metrics_add(h->loop->metrics, M_REQUESTS, 1); /* started, as client.c's count_refusal */
    if (answered) /* written with what went, once it went or the stream closed */
        keep(s, &r, -1, -1, KEPT_ENDED);
    else
        exchange_log_record(h->loop, &r, -1, -1);
}

/* A request refused before an exchange exists (head too large, not HTTP/1.1-valid): the
 * response Portico writes itself, as client.c does for HTTP/1.1. */
static void refuse(struct h2_stream *s, int status, const char *why)
{
    char id[48];
    refused_id(s, id, sizeof(id));
    const char *method, *path;
    size_t method_len, path_len;
    h2_request_line(&s->req, &method, &method_len, &path, &path_len);
    /* A response to HEAD has no content (RFC 9110 9.3.2): DATA after it makes the client reset
     * the stream as malformed (RFC 9113 8.1.1), and it never sees the status. */
    bool head = method && h1_method_of(method, method_len) == METHOD_HEAD;
    struct errpage e = {.status = status, .failure = FAIL_NONE, .reason = why, .request_id = id,
                        .head_only = head};
    struct errpage_out o;
    errpage_prepare(&e, &o);
    s->state = ST_ANSWERED;
    submit_head(s, &o.head, true);
    long body = errpage_body(&o, s->body);
    s->resp_done = true;
    h2_stream_resume(s);
    log_refused(s, id, status, why, body > 0 ? (uint64_t)body : 0, true);
}

void h2_stream_unsent(struct h2_stream *s, int error, bool interim)
{
    if (s->unsent)
        return;
    char addr[PEER_ADDR_MAX];
    log_warn("HTTP/2 client %s, stream %d: %s HEADERS not sent (%s)%s",
             peer_addr(s->conn->peer, addr, sizeof(addr)), (int)s->id,
             interim ? "1xx" : "response", nghttp2_strerror(error),
             interim ? "" : ": RST_STREAM INTERNAL_ERROR");
    if (interim)
        return;
    s->unsent = "response HEADERS not sent (nghttp2 refused the frame): stream reset";
    h2_reset(s->conn, s->id, NGHTTP2_INTERNAL_ERROR);
    h2_want_flush(s->conn);
}

/* A malformed request (RFC 9113 8.1.1): logged as 400, counted against the reset budget. */
void h2_stream_malformed(struct h2_stream *s, const char *why)
{
    struct h2_conn *h = s->conn;
    if (s->malformed)
        return;
    s->malformed = why;
    metrics_add(h->loop->metrics, M_H2_MALFORMED, 1);
    char detail[160];
    snprintf(detail, sizeof(detail), "malformed HTTP/2 request: %s", why);
    log_refused(s, NULL, HTTP_BAD_REQUEST, detail, 0, false);
    h2_charge(h, FLOOD_RESET);
}

/* An abandoned head counts as this many resets: decoding an HPACK bomb's block (147 KB that
 * name a 4,000-byte field 147,000 times) costs milliseconds of CPU, hundreds of ordinary
 * requests' worth (~96 a second went through one worker, ~26 under ASan). Charged as one, 250
 * bombs once took 2.6 s to end a connection (32 since other charges were added), and on a slow
 * host they come barely faster than the reset bucket refills (20 a second). At 10, 20 bombs end
 * it whatever the host's speed. No real client sends a head 4 times max_header_size. */
#define ABANDONED_HEAD_RESETS 10

void h2_stream_abandon_head(struct h2_stream *s)
{
    struct h2_conn *h = s->conn;
    s->malformed = "request head far larger than max_header_size: no response, stream reset "
                   "(RST_STREAM ENHANCE_YOUR_CALM)";
    log_refused(s, NULL, HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, s->malformed, 0, false);
    for (int i = 0; i < ABANDONED_HEAD_RESETS && !h->end_why; i++)
        h2_charge(h, FLOOD_RESET);
}

void h2_stream_malformed_after_head(struct h2_stream *s, const char *why)
{
    struct h2_conn *h = s->conn;
    s->malformed = why;
    metrics_add(h->loop->metrics, M_H2_MALFORMED, 1);
    /* A stream parked for its END_STREAM (start_at_eof) has no exchange to log it: the DATA
     * its content-length: 0 forbade, or its trailers, leave a 400 line here. */
    if (s->state == ST_HEAD)
        log_refused(s, NULL, HTTP_BAD_REQUEST, why, 0, false);
    h2_charge(h, FLOOD_RESET);
}

void h2_stream_head_unfinished(struct h2_stream *s, int status, const char *why)
{
    if (s->state != ST_HEAD || s->malformed) /* a malformed head was logged when found */
        return;
    s->state = ST_ANSWERED;
    if (status == HTTP_CLIENT_CLOSED_REQUEST)
        metrics_add(s->conn->loop->metrics, M_CLIENT_ABORTS, 1);
    log_refused(s, NULL, status, why, 0, false);
}

/* ... and reset: a stream error of type PROTOCOL_ERROR. */
void h2_stream_reset_malformed(struct h2_stream *s, const char *why)
{
    if (s->malformed)
        return;
    h2_stream_malformed(s, why);
    h2_reset(s->conn, s->id, NGHTTP2_PROTOCOL_ERROR);
}

/* The request's header block is complete: translate, check, start its exchange. */
void h2_stream_start(struct h2_stream *s, bool end_stream)
{
    struct h2_conn *h = s->conn;
    s->req_eof = end_stream;
    char *head = NULL;
    size_t len = 0;
    /* RFC 8441: a WebSocket goes to the origin as an HTTP/1.1 upgrade with a key of ours */
    enum h2_protocol proto = h2_request_protocol(&s->req);
    char ws_key[WS_KEY_LEN + 1];
    if (proto == H2_PROTOCOL_WEBSOCKET && !ws_key_new(ws_key)) {
        s->head_whole = true;
        refuse(s, HTTP_SERVICE_UNAVAILABLE, "no random bytes for a Sec-WebSocket-Key");
        return;
    }
    int rc = h2_request_finish(&s->req, proto == H2_PROTOCOL_WEBSOCKET ? ws_key : NULL, &head,
                               &len);
    if (rc == -1) {
        s->head_whole = true; /* the block ended: every field is in (431 keeps a prefix) */
        h2_stream_reset_malformed(s, s->req.error);
        return;
    }
    if (rc == 431) {
        h2_charge(h, FLOOD_RESET); /* each costs a decoded head: a stream of them is a flood */
        refuse(s, HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
               "request head larger than max_header_size");
        return;
    }
    if (rc == 0 && proto == H2_PROTOCOL_OTHER) {
        /* Well-formed (nghttp2 checked it against our SETTINGS_ENABLE_CONNECT_PROTOCOL), but
         * a tunnel Portico does not make: as a plain CONNECT, 501. */
        free(head);
        s->head_whole = true;
        refuse(s, HTTP_NOT_IMPLEMENTED,
               "extended CONNECT (RFC 8441) for a protocol other than websocket");
        return;
    }
    s->websocket = proto == H2_PROTOCOL_WEBSOCKET;
    struct h1_limits lim = {.max_request_line = h->cfg->max_request_line,
                            .max_head = h->cfg->max_header_size};
    struct h1_request req;
    struct h1_error err;
    int n = h1_parse_request(head, len, &lim, &req, &err);
    if (n != (int)len) {
        free(head);
        s->head_whole = true;
        h2_charge(h, FLOOD_RESET);
        refuse(s, n == -1 ? err.status : HTTP_BAD_REQUEST,
               n == -1 ? err.reason : "request head not complete");
        return;
    }
    /* content-length: 0 on a HEADERS without END_STREAM: a DATA byte would make the request
     * malformed (RFC 9113 8.1.1), and the origin would have had it whole. It goes once
     * END_STREAM proved it so (nginx forwards nothing of such a stream either); until then
     * client_body_timeout bounds the wait. */
    if (!end_stream && s->req.declares_length && !s->req.announces_body) {
        free(head);
        s->start_at_eof = true;
        s->head_whole = true; /* whatever ends its wait logs it: 400, 408, 499 */
        s->data_at = now_us();
        s->body_timeout_us = h->cfg->client_body_timeout_ms * 1000;
        if (s->body_timeout_us)
            arm_body_timer(s, s->data_at);
        return;
    }
    s->req_left = s->req.declares_length ? s->req.content_length : UINT64_MAX;
    struct downstream ds = {.ops = &h2_ops, .ctx = s, .peer = h->peer, .proto = PROTO_HTTP2,
                            .body_until_eof = !end_stream && !s->websocket,
                            .websocket = s->websocket, .resp_read_max = read_max(s)};
    s->ex = exchange_start(h->loop, &ds, head, len, &req, s->t0);
    free(head);
    if (!s->ex) {
        s->head_whole = true;
        refuse(s, HTTP_SERVICE_UNAVAILABLE, "out of memory");
        return;
    }
    s->state = ST_EXCHANGE;
    h2_request_free(&s->req); /* the exchange has its own copy */
    exchange_run(s->ex);      /* may end it: done() was called then */
}

void h2_stream_eof(struct h2_stream *s)
{
    s->req_eof = true;
    event_del(&s->body_timer);
    /* Past DISCARD_MAX before its answer went, then its end: the answer's END_STREAM resets
     * only a body still coming (h2.c: on_frame_send), so none follows: it was read to its end. */
    if (s->discard == DISCARD_PAST_MAX && !h2_stream_answer_sent(s))
        s->discard = DISCARD_READING;
    if (s->start_at_eof) {
        s->start_at_eof = false;
        h2_stream_start(s, true);
        return;
    }
    if (s->holding) { /* the request is whole and well-formed: its last byte goes too */
        s->holding = false;
        if (s->ex && evbuffer_add(s->req_in, &s->held, 1) != 0) {
            h2_out_of_memory(s->conn); /* the origin would wait for it for ever */
            return;
        }
    }
    if (s->tunnel) {
        h2_stream_grant(s);
        h2_tunnel_client_eof(s->tunnel);
    } else if (s->ex && !s->websocket) { /* a WebSocket's END_STREAM waits for its tunnel */
        h2_stream_grant(s); /* the window it had left is given up (done() released it all) */
        exchange_request_eof(s->ex);
    }
}

static void body_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct h2_stream *s = arg;
    struct h2_conn *h = s->conn;
    uint64_t now = now_us();
    if (s->start_at_eof) { /* END_STREAM never came after content-length: 0 */
        s->start_at_eof = false;
        h->depth++;
        /* its head said no body (content-length: 0): what did not come is the stream's end */
        refuse(s, HTTP_REQUEST_TIMEOUT,
               "request not ended (END_STREAM) within client_body_timeout");
        h->depth--;
        h2_settle(h);
        return;
    }
    if (s->discard == DISCARD_READING) { /* answered: armed by h2_stream_answered_early */
        if (now < s->data_at + s->body_timeout_us) {
            arm_body_timer(s, now); /* early by the loop's cached clock */
            return;
        }
        s->discard = DISCARD_LATE;
        h2_reset(h, s->id, NGHTTP2_NO_ERROR); /* the window it had left is kept (late_keep) */
        h2_settle(h);
        return;
    }
    if (!s->ex || s->req_eof)
        return;
    /* Bytes the origin has not taken yet hold the client back with our window, as an
     * HTTP/1.1 client's unread socket does: its silence is not its own (send_timeout is the
     * origin's limit). */
    if (s->req_counted > s->holding) /* (a byte held for END_STREAM is the client's wait) */
        s->data_at = now;
    if (now < s->data_at + s->body_timeout_us) {
        arm_body_timer(s, now); /* DATA came since: the deadline moved */
        return;
    }
    h->depth++;
    s->body_timed_out = true; /* its 408's rest is not read: discard_begin */
    exchange_request_timeout(s->ex); /* 408, or a reset when the response started */
    h->depth--;
    h2_settle(h);
}

