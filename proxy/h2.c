/*
 * h2.c — HTTP/2 client connections and the downstream interface of their streams. See h2.h.
 *
 * ONE SESSION, MANY EXCHANGES. nghttp2 parses frames, keeps HPACK and flow-control state and
 * schedules what goes out; everything else is Portico's: each request stream builds an HTTP/1.1
 * head (h2_request.c), parses it with h1_parse_request and starts an exchange on it, whose
 * downstream operations turn into nghttp2 submissions (h2_stream.c). This file has the session:
 * frames in and out, floods, deadlines, the connection's life.
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
 * with evbuffer_remove_buffer (no copy). A chunked response's trailer fields that may cross
 * wait in the stream's `trailers` and go as a trailing HEADERS (END_STREAM) once the provider
 * reaches the body's end. Frames are made only while the socket output holds
 * less than OUT_HIGH; pending() counts the stream's buffer and the shared output, so origins
 * pause while either is full, or while the stream may hold no more of the connection's budget
 * for responses, counted for all its streams (h2_int.h: h2_stream_room, which also limits each
 * read from the origin). Request: DATA is copied into the stream's `req_in` (nghttp2 owns
 * its input), its exchange told once a read is parsed, not at each frame (tell_fed); the
 * connection window is opened at once, the stream window only as the bytes are written to the
 * origin (request_taken says what still waits in the origin's output), and no further than
 * the stream's share of CONN_REQ_HELD_MAX (h2_stream_grant: our own WINDOW_UPDATEs, nghttp2's
 * automatic ones are off). So a connection holds a bounded amount of request bodies whatever
 * its number of streams, and a slow origin stalls its stream, never the others: each may
 * always hold its floor (h2_int.h). A body whose exchange answered before its end is read and
 * dropped to its END_STREAM, within DISCARD_MAX, then reset (h2_int.h: enum discard).
 *
 * FLOODS. Debian 12's libnghttp2 (1.52 with backports) limits CONTINUATION frames, pending
 * acknowledgements and RST_STREAM rates (its own bucket, every RST_STREAM: 1000, then 33/s, and
 * then its GOAWAY INTERNAL_ERROR, which said nothing of a flood), and has no counter of cheap
 * frames. Portico keeps its own token buckets per connection: resets (streams the client
 * reset while they were running, streams nghttp2 reset for a stream error the client provoked
 * or refused, and requests reset as malformed), control frames (SETTINGS, PING, PRIORITY, empty
 * DATA), WINDOW_UPDATE frames on open streams and the connection (each DATA we send refills
 * it), and closed-stream frames (resets of streams answered or closed, WINDOW_UPDATE, short DATA
 * and HEADERS on closed streams, HEADERS past our last GOAWAY; not the DATA in flight when we
 * reset a stream, within the window it had left: late_keep), and DATA of a few bytes on open
 * streams (SMALL_DATA). A header block nghttp2 ignores is decoded all the same, its
 * CONTINUATION frames unseen: charged for as many as it takes (charge_continuations). nghttp2's
 * reset limit is set above the sum of ours, a backstop. An empty bucket ends the connection
 * with GOAWAY ENHANCE_YOUR_CALM, counted by kind. A window kept shut while data waits, or a
 * header block left unfinished, for as long as the client timeouts allow, ends it the same way.
 *
 * STREAMS NOT PROCESSED. A stream nghttp2 refuses past http2_max_concurrent_streams (before the
 * client acknowledged it), or one opened past a drain's GOAWAY, reaches no exchange and no access
 * line: each is counted where nghttp2 tells us of it (on_invalid_frame, on_begin_frame), and the
 * connection says how many once, at its end (refused_said). Nothing is added for a stream taken.
 */
#include "h2_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/downstream.h"
#include "portico/evmem.h"
#include "portico/exchange.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/sock.h"
#include "portico/util.h"

#define CONN_WINDOW (1024 * 1024)      /* opened at once as DATA arrives: streams limit it */
#define OUT_HIGH (256 * 1024)          /* frames are made while the socket output is below */
#define RESUME_BELOW (64 * 1024)       /* a paused exchange is told once its stream is below */
#define NOTICE_WAIT_US (1000 * 1000)   /* the shutdown notice's PING unanswered: GOAWAY anyway */

/* The PING behind the shutdown notice: its acknowledgement follows every frame the client sent
 * before it read the notice. */
static const uint8_t notice_ping[8] = "portico";
#define NOTICE_LAST_STREAM ((1u << 31) - 1) /* the notice's last stream id: any (RFC 9113 6.8) */

static void goaway_last(struct h2_conn *h);
static void stream_stalled(struct h2_stream *s, bool shut, uint64_t now);

/* CONTINUATION frames nghttp2 takes after a HEADERS (its clients send no more). */
#define MAX_CONTINUATIONS 8

/* Frames on its closed stream (FLOOD_CLOSED) each stream's end gives back: a reset, a
 * WINDOW_UPDATE and the last DATA of a request body that crossed it. */
#define CLOSED_PER_STREAM 3

/* WINDOW_UPDATE frames (FLOOD_WINDOW) each DATA frame we send gives back: the stream's and the
 * connection's of a client that acknowledges every frame, and one more per WINDOW_UPDATE_BYTES
 * of its payload for one that acknowledges pieces of it (nghttp answers a 16 KiB frame under
 * 16 KiB windows with three). A download pays for any pace of WINDOW_UPDATE its reader keeps. */
#define WINDOW_UPDATES_PER_DATA 2
#define WINDOW_UPDATE_BYTES 512

/* A DATA frame on a closed stream with a payload shorter than this (padding included) is
 * charged (FLOOD_CLOSED), unless it was in flight as we reset the stream (late_data): nghttp2
 * drops it before any callback and gives its bytes back to the connection's window, so nothing
 * else bounds them. Empty ones (9 bytes each) went uncharged: 44 million in 5 s took 2.3 s of
 * the worker's CPU, no GOAWAY before keepalive_timeout. One larger costs about what an upload's
 * DATA does, its bytes the client's as much as ours. */
#define CLOSED_DATA_CHEAP 1024

/* A DATA frame on an open stream with a payload shorter than this (padding included), but
 * for the last of a body (body_ended), is charged (FLOOD_SMALL_DATA): each costs nghttp2's
 * parsing and our callbacks whatever it carries, ~1,200 instructions (callgrind; nginx 1.22
 * ~360, HAProxy 2.6 ~510). So a frame of 1 byte costs ~120 a byte the client sends (nginx 36,
 * HAProxy 51), one of 16 bytes ~49, as theirs of 1 byte. Uncharged, one upload of 3 million
 * took 1.2 s and 560-580 ms of the worker's CPU. Bodies of curl, nghttp and browsers come in
 * frames of 16 KiB, gRPC's messages carry 5 bytes of framing before their own. Its rate, 50,000
 * a second, lets a client that sends each piece it is given as a frame run (curl -T - fed 8-byte
 * records at 12,000 a second was cut at 10,000), and bounds a flood to ~20 ms of a worker's CPU
 * a second per connection. */
#define SMALL_DATA 16

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

/* ---- ending the connection ---- */

/* Queues GOAWAY (with the last stream id processed) and marks the connection for its end. */
static void conn_end(struct h2_conn *h, uint32_t code, const char *why)
{
    if (h->end_why)
        return;
    h->end_why = why;
    nghttp2_session_terminate_session(h->session, code);
}

void h2_out_of_memory(struct h2_conn *h)
{
    if (h->end_why)
        return;
    char addr[PEER_ADDR_MAX];
    log_client("client %s: HTTP/2: out of memory: connection closed",
               peer_addr(h->peer, addr, sizeof(addr)));
    conn_end(h, NGHTTP2_INTERNAL_ERROR, "out of memory");
}

void h2_reset(struct h2_conn *h, int32_t id, uint32_t code)
{
    if (nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, id, code) == NGHTTP2_ERR_NOMEM)
        h2_out_of_memory(h);
}

/* An answer PING's payload: this prefix, then its number (big-endian). */
static const uint8_t answer_prefix[4] = "ans";

/* The number after n: never 0, which is a stream's "none" (they wrap after 2^32 PINGs). */
static uint32_t answer_next(uint32_t n)
{
    return n + 1 != 0 ? n + 1 : 1;
}

static void answer_ping_send(struct h2_conn *h)
{
    uint8_t opaque[8];
    uint32_t n = answer_next(h->answer_pings);
    memcpy(opaque, answer_prefix, sizeof(answer_prefix));
    for (int i = 0; i < 4; i++)
        opaque[4 + i] = (uint8_t)(n >> (24 - 8 * i));
    h->answer_ping_due = false;
    /* Not sent (out of memory): its streams wait for the next one, sent when another stream is
     * answered early, or end at client_body_timeout. */
    if (nghttp2_submit_ping(h->session, NGHTTP2_FLAG_NONE, opaque) != 0)
        return;
    h->answer_pings = n;
    h2_want_flush(h);
}

uint32_t h2_answer_ping(struct h2_conn *h)
{
    uint32_t n = answer_next(h->answer_pings);
    /* Submitted after the answer's END_STREAM went (on_frame_send), it follows it on the wire;
     * the one in flight may have left before this END_STREAM: the next, at its ACK. */
    if (h->answer_acked == h->answer_pings)
        answer_ping_send(h);
    else
        h->answer_ping_due = true;
    return n;
}

/* A PING's acknowledgement: an answer PING's tells that every answer whose END_STREAM went
 * before it was read; their streams' rests are not wanted. */
static void answer_acked(struct h2_conn *h, const uint8_t *opaque)
{
    if (memcmp(opaque, answer_prefix, sizeof(answer_prefix)) != 0)
        return;
    uint32_t n = 0;
    for (int i = 0; i < 4; i++)
        n = n << 8 | opaque[4 + i];
    if (n != h->answer_pings || h->answer_acked == n)
        return; /* not the one in flight (a client's echo of its own making) */
    h->answer_acked = n;
    struct h2_stream *s;
    /* in the order of their PINGs (numbers wrap after 2^32: compared by their distance) */
    while ((s = TAILQ_FIRST(&h->answering)) && (int32_t)(n - s->answer_ping) >= 0)
        h2_stream_answer_read(s);
    if (h->answer_ping_due)
        answer_ping_send(h);
}

static void flood(struct h2_conn *h, enum flood kind)
{
    if (h->end_why)
        return;
    metrics_add(h->loop->metrics, flood_rows[kind].metric, 1);
    char addr[PEER_ADDR_MAX];
    log_client("client %s: HTTP/2 %s: GOAWAY", peer_addr(h->peer, addr, sizeof(addr)),
               flood_rows[kind].name);
    conn_end(h, NGHTTP2_ENHANCE_YOUR_CALM, flood_rows[kind].name);
}

/* Refills kind's bucket for the time since its last refill (now: µs; an event's clock may be
 * behind the last refill's), plus `extra` tokens. */
static struct bucket *refill_at(struct h2_conn *h, enum flood kind, double extra, uint64_t now)
{
    struct bucket *b = &h->buckets[kind];
    now = MAX(now, b->at);
    b->tokens = MIN(flood_rows[kind].burst,
                    b->tokens + extra + (double)(now - b->at) / 1e6 * flood_rows[kind].rate);
    b->at = now;
    return b;
}

static struct bucket *refill(struct h2_conn *h, enum flood kind, double extra)
{
    return refill_at(h, kind, extra, now_us());
}

static void charge_at(struct h2_conn *h, enum flood kind, uint64_t now)
{
    struct bucket *b = refill_at(h, kind, 0, now);
    if (b->tokens < 1) {
        flood(h, kind);
        return;
    }
    b->tokens -= 1;
}

void h2_charge(struct h2_conn *h, enum flood kind)
{
    charge_at(h, kind, now_us());
}

/* Whether stream id is past the GOAWAY of a drain (made, sent or not): never processed. */
static bool past_goaway(const struct h2_conn *h, int32_t id)
{
    return h->drain == DRAIN_GOAWAY && id > h->goaway_id;
}

/* A stream of the client's that Portico did not process (RST_STREAM REFUSED_STREAM, or past a
 * drain's GOAWAY): the client may retry it, nothing else shows it (no exchange, no access
 * line). Counted, and said once for the connection (refused_said). Never on a stream taken. */
static void refused(struct h2_conn *h, enum h2_refused why)
{
    metrics_h2_refused(h->loop->metrics, why);
    h->refused[why]++;
}

/* Says, once as the connection ends, how many of its streams were not processed and why (as
 * nginx's "concurrent streams exceeded" does for each, at info): a line for each would let a
 * client flood the log with them, and log_client bounds the lines of all connections. */
static void refused_said(const struct h2_conn *h)
{
    char what[256];
    size_t n = 0;
    for (int r = 0; r < H2_REFUSED_COUNT; r++) {
        if (!h->refused[r] || n >= sizeof(what))
            continue;
        n += (size_t)snprintf(what + n, sizeof(what) - n, "%s%u%s %s", n ? ", " : "",
                              h->refused[r], n ? "" : h->refused[r] > 1 ? " streams" : " stream",
                              h2_refused_words((enum h2_refused)r));
        if (r == H2_REFUSED_CONCURRENCY && n < sizeof(what)) /* the limit they met */
            n += (size_t)snprintf(what + n, sizeof(what) - n, " = %llu",
                                  (unsigned long long)h->cfg->http2_max_concurrent_streams);
    }
    if (n == 0)
        return;
    char addr[PEER_ADDR_MAX];
    log_client("client %s: HTTP/2: %s (not processed: the client may retry them)",
               peer_addr(h->peer, addr, sizeof(addr)), what);
}

static struct h2_stream *stream_of(struct h2_conn *h, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(h->session, id) : NULL;
}

void h2_want_flush(struct h2_conn *h)
{
    if (h->depth > 0)
        h->again = true;
    else
        event_active(&h->later, EV_TIMEOUT, 1);
}

/* ---- nghttp2 callbacks ---- */

/* Charges the CONTINUATION frames that may follow a frame of a header block (its flags given)
 * once nghttp2 ignores the block: they reach no callback and are decoded all the same. An HPACK
 * bomb of one HEADERS and 7 CONTINUATION frames (~130 KB referring ~130,000 times to a
 * 4,000-byte field) costs ~1.9 ms of CPU, and charged once 1,281 of them on an answered stream
 * took 2.1 s of a worker's CPU before the GOAWAY (~205 refused ones 0.7 s, ~220 malformed ones
 * 0.4 s). A block that goes on is charged for as many as nghttp2 takes. */
static void charge_continuations(struct h2_conn *h, enum flood kind, uint8_t flags)
{
    if (flags & NGHTTP2_FLAG_END_HEADERS)
        return;
    for (int i = 0; i < MAX_CONTINUATIONS && !h->end_why; i++)
        h2_charge(h, kind);
}

/* Charges a header block nghttp2 ignores (no stream of ours: closed, or past our GOAWAY) from
 * its HEADERS, whose flags are given. */
static void charge_ignored_block(struct h2_conn *h, enum flood kind, uint8_t flags)
{
    h2_charge(h, kind);
    charge_continuations(h, kind, flags);
}

/* Has nghttp2 ignore the rest of a request stream's header block (the stream is reset), which
 * it decodes all the same: charged as resets for what may follow. */
static int skip_block(struct h2_conn *h, const nghttp2_frame *frame)
{
    charge_continuations(h, FLOOD_RESET, frame->hd.flags);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct h2_conn *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    bool ends = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) { /* trailers */
        struct h2_stream *t = stream_of(h, frame->hd.stream_id);
        if (t && ends)
            t->ends_in_block = true;
        return 0;
    }
    /* A stream past the GOAWAY we made but have not sent yet (made on the PING ACK read just
     * before, in the same input): nghttp2 takes it, and closes it REFUSED_STREAM once the GOAWAY
     * goes. The client is told it was not processed, and may retry it: no exchange, no log
     * line (one was begun, and logged 499, for the soak's raced requests). */
    if (past_goaway(h, frame->hd.stream_id))
        return 0;
    struct h2_stream *s = h2_stream_new(h, frame->hd.stream_id);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    s->ends_in_block = ends;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user)
{
    (void)flags, (void)session;
    struct h2_stream *s = stream_of(user, frame->hd.stream_id);
    if (!s)
        return 0;
    /* nghttp2 checks each field it decodes, kept or not, until its callback fails: an HPACK
     * bomb (a 4,000-byte field referred to 147,000 times) cost ~100 ms of CPU per block on a
     * head already found malformed, and as much in trailers. */
    if (s->malformed)
        return skip_block(s->conn, frame); /* reset already: the rest is ignored */
    /* Trailers of a request are not forwarded (the body goes to the origin as it comes), but
     * bounded as over HTTP/1.1 (a trailer section within max_header_size). */
    if (s->state != ST_HEAD || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        s->trailer_size += name_len + value_len;
        if (s->trailer_size <= s->conn->cfg->max_header_size)
            return 0;
        h2_stream_malformed_after_head(s, "trailer section larger than max_header_size");
        h2_reset(s->conn, s->id, NGHTTP2_PROTOCOL_ERROR);
        return skip_block(s->conn, frame);
    }
    switch (h2_request_field(&s->req, (const char *)name, name_len, (const char *)value,
                             value_len)) {
    case 0:
        return 0;
    case 1:
        /* An HPACK bomb: stop nghttp2 checking every copy. No 431 can go: a failed callback
         * has nghttp2 reset the stream (INTERNAL_ERROR) and a reset stream takes no HEADERS,
         * while going on costs ~100 ms of CPU per block. Our reset goes first and says why
         * (nghttp2 queues no second one): the access line says the same. */
        h2_stream_abandon_head(s);
        h2_reset(s->conn, s->id, NGHTTP2_ENHANCE_YOUR_CALM);
        return skip_block(s->conn, frame);
    default:
        h2_stream_reset_malformed(s, s->req.error);
        return 0;
    }
}

/* Why a stream that had begun its exchange turned out malformed (its DATA broke its
 * content-length, or its trailers broke the rules): logged as 400 with this detail. */
#define MALFORMED_AFTER_HEAD "malformed after its head (content-length or trailers, RFC 9113 8.1.1)"

/* A field nghttp2 would ignore (a name that is not a token, a value with CR, LF, NUL or
 * surrounding whitespace): malformed here, like any other (RFC 9113 8.2.1), in trailers too. */
static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame,
                             const uint8_t *name, size_t name_len, const uint8_t *value,
                             size_t value_len, uint8_t flags, void *user)
{
    (void)session, (void)name, (void)name_len, (void)value, (void)value_len, (void)flags;
    struct h2_stream *s = stream_of(user, frame->hd.stream_id);
    if (!s)
        return 0;
    /* Malformed, head or trailers: nghttp2 resets the stream (PROTOCOL_ERROR) as for its own
     * checks and ignores the rest of the block (going on, it checked every field: an HPACK bomb
     * of invalid fields cost ~110 ms of CPU per block). on_frame_send counts trailers. */
    if (s->state == ST_HEAD)
        h2_stream_malformed(s, "invalid field name");
    return skip_block(s->conn, frame);
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
    /* A stream past http2_max_concurrent_streams before the client acknowledged it: nghttp2
     * refuses it (RST_STREAM REFUSED_STREAM) with no stream of ours, and decodes its block.
     * Uncharged, a client that neither acknowledged nor read took 4.6 million in 4 s, their
     * resets queued in nghttp2 (58 MB of RSS to 682 MB, 4.5 s of CPU) until the SETTINGS
     * deadline. A stream error the client provoked: charged as one. Its CONTINUATION frames
     * go to the closed-stream bucket, as a closed stream's do: a browser's first flight, sent
     * before our SETTINGS, may well have its streams past a lowered limit refused, with heads
     * over a frame (large cookies): 22 of them emptied the reset bucket (GOAWAY
     * ENHANCE_YOUR_CALM, 31-56 streams lost), now ~125 HPACK bombs do, as on closed streams. */
    if (!s && error == NGHTTP2_ERR_REFUSED_STREAM) {
        if (!past_goaway(h, frame->hd.stream_id)) /* else on_begin_frame counted it */
            refused(h, H2_REFUSED_CONCURRENCY);
        h2_charge(h, FLOOD_RESET);
        charge_continuations(h, FLOOD_CLOSED, frame->hd.flags);
    }
    if (!s)
        return 0;
    /* A bad field: nghttp2 ignores the rest of the block, and decodes it. */
    if (frame->hd.type == NGHTTP2_HEADERS)
        charge_continuations(h, FLOOD_RESET, frame->hd.flags);
    /* NGHTTP2_ERR_HTTP_MESSAGING comes once the block ended, every field handed to us */
    if (error == NGHTTP2_ERR_HTTP_MESSAGING)
        s->head_whole = true;
    if (s->state == ST_HEAD)
        h2_stream_malformed(s, error == NGHTTP2_ERR_HTTP_HEADER
                              ? "invalid field or pseudo-header field (RFC 9113 8.2, 8.3)"
                              : h2_request_messaging_error(
                                    &s->req, frame->hd.flags & NGHTTP2_FLAG_END_STREAM));
    /* Later in the stream (bad trailers), nghttp2's own reset says so: on_frame_send. */
    return 0;
}

/* Whether a frame on stream id meets a stream nghttp2 has closed (no_closed_streams: it
 * remembers none) or never opened (refused past http2_max_concurrent_streams, or ignored after
 * our GOAWAY: their ids are past the last one nghttp2 processed), and is ignored. Counted only
 * to the last processed, DATA on the newest refused stream went free: over a million frames of
 * 1 byte, as much as the connection's window let through. */
static bool stream_closed(struct h2_conn *h, int32_t id)
{
    return id > 0 &&
           id <= MAX(nghttp2_session_get_last_proc_stream_id(h->session), h->last_begun) &&
           !nghttp2_session_find_stream(h->session, id);
}

/* Keeps what the client may still send on stream id as our RST_STREAM goes, while it may send
 * (no END_STREAM from it yet): an upload answered early (401, 413 ...) whose rest is not read
 * (past DISCARD_MAX or client_body_timeout: h2_int.h's enum discard) sends until it reads the
 * reset, and 6,520 frames of 100 bytes in flight on 40 uploads were each charged as a flood
 * (FLOOD_CLOSED: GOAWAY, a GET beside them lost). The window bounds them as it bounds DATA on
 * an open stream, which is never charged. */
static void late_keep(struct h2_conn *h, int32_t id)
{
    if (nghttp2_session_get_stream_remote_close(h->session, id) != 0)
        return; /* its END_STREAM came (1), or nghttp2 has no such stream (-1) */
    /* ... or came on a block reset unread (malformed, too large): the window went free after
     * each such head (16,384 frames of 1 byte), none of it the client's due */
    struct h2_stream *s = stream_of(h, id);
    if (s && s->ends_in_block)
        return;
    int64_t window =
        (int64_t)nghttp2_session_get_stream_effective_local_window_size(h->session, id) -
        nghttp2_session_get_stream_effective_recv_data_length(h->session, id);
    if (window <= 0)
        return;
    if (!h->late) {
        size_t slots = MIN((size_t)MAX(h->cfg->http2_max_concurrent_streams, 1), LATE_SLOTS_MAX);
        if (!(h->late = calloc(slots, sizeof(*h->late))))
            return; /* its late DATA is charged, as on any closed stream */
        h->late_slots = slots;
    }
    h->late[(size_t)(id >> 1) % h->late_slots] =
        (struct h2_late){id, (uint32_t)MIN(window, INT32_MAX)};
}

/* Each DATA frame on a stream reset late spends this much of its window at least: a 16 KiB
 * window let 16,384 frames of 1 byte go free after each upload answered early (a 413 costs no
 * origin), and one connection so took 48-55 million of them in 5 s, ~4 s of CPU, no GOAWAY
 * (before any window was kept: GOAWAY after ~1,100). 256 frames cost about what the request
 * did; an upload in flight sends far larger ones. */
#define LATE_FRAME_MIN 64

/* Whether a DATA frame of len bytes (padding included) on closed stream id fits in what the
 * window late_keep kept for it had left (LATE_FRAME_MIN a frame at least): the client's due,
 * spent by it. Empty ones never are: one END_STREAM is paid for by the stream's end
 * (CLOSED_PER_STREAM). One with END_STREAM (end) is its last: what comes after is charged
 * (the window it had left went free before). */
static bool late_data(struct h2_conn *h, int32_t id, size_t len, bool end)
{
    struct h2_late *l = &h->late[(size_t)(id >> 1) % h->late_slots];
    size_t spent = MAX(len, LATE_FRAME_MIN);
    if (l->id != id || len == 0 || spent > l->window)
        return false;
    l->window -= (uint32_t)spent;
    if (end)
        *l = (struct h2_late){0, 0};
    return true;
}

/* A header block spans HEADERS and its CONTINUATION frames; nothing may come between them, so
 * any other frame beginning means the block is over. An unfinished one has a deadline. */
static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user)
{
    struct h2_conn *h = user;
    /* A frame on a stream nghttp2 has closed (no_closed_streams: it remembers none) is ignored
     * without a callback, and costs its parsing: a header block its HPACK decoding. One that
     * crossed our reset or END_STREAM is normal; a stream of them is a flood. (DATA on a closed
     * stream is dropped before this callback: feed looks at it.) So is a stream begun past our
     * GOAWAY naming the last stream taken: while a stream was in flight, 1,010 HPACK bombs on
     * new streams took 2.9 s of a draining worker's CPU in 4 s, uncharged. */
    (void)session;
    bool closed = stream_closed(h, hd->stream_id);
    bool after = past_goaway(h, hd->stream_id);
    if (hd->type == NGHTTP2_HEADERS && (closed || after)) {
        charge_ignored_block(h, FLOOD_CLOSED, hd->flags);
        /* A new stream (not trailers of one nghttp2 took before our GOAWAY went: on_begin_headers),
         * each counted here whether nghttp2 ignores it or refuses it as the GOAWAY goes. */
        if (after && hd->stream_id > h->last_begun && (hd->stream_id & 1))
            refused(h, H2_REFUSED_GOAWAY);
    } else if (hd->type == NGHTTP2_WINDOW_UPDATE && closed)
        h2_charge(h, FLOOD_CLOSED);
    if (hd->type == NGHTTP2_HEADERS) {
        h->head_since = now_us();
        h->head_id = hd->stream_id;
        h->last_begun = MAX(h->last_begun, hd->stream_id);
    } else if (hd->type != NGHTTP2_CONTINUATION)
        h->head_since = 0;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    struct h2_conn *h = user;
    struct h2_stream *s = stream_of(h, id);
    if (!s || (!s->ex && !s->tunnel)) {
        /* Nobody reads it any more (answered, or refused): let it through the windows; a
         * discarded body's stream window is h2_stream_discard's. */
        nghttp2_session_consume_connection(session, len);
        if (!s || !s->discard)
            nghttp2_session_consume_stream(session, id, len);
        else if (s->req_left != UINT64_MAX) /* what discard_window may still let come */
            s->req_left -= MIN(len, s->req_left);
        return 0;
    }
    h->body_in += len;
    /* Until our SETTINGS are acknowledged, a stream's window is the default 65,535, not our
     * floor: the connection's window bounds what streams hold then (999 streams held 64 MB
     * before an acknowledgement that never came), and opens once it comes. */
    if (h->settings_acked)
        nghttp2_session_consume_connection(session, len);
    else
        h->conn_owed += len;
    /* DATA that completes the content-length before END_STREAM: more DATA would make the
     * request malformed (RFC 9113 8.1.1), and the origin would have had it whole. Its last byte
     * waits for END_STREAM (h2_stream_eof); nghttp2 passes no byte past the content-length.
     * The last DATA of most requests carries END_STREAM: then nothing is counted or held. */
    size_t hold = 0;
    if (!(flags & NGHTTP2_FLAG_END_STREAM) && s->req_left != UINT64_MAX) {
        s->req_left -= MIN(len, s->req_left);
        hold = s->req_left == 0 && len;
    }
    /* Copy before nghttp2 moves on: data points into the input being parsed. */
    if (evbuffer_add(s->req_in, data, len - hold) != 0) {
        h2_out_of_memory(h); /* the body would reach the origin with a hole in it */
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (hold) {
        s->held = data[len - 1];
        s->holding = true;
    }
    s->req_counted += len;
    if (!s->fed) { /* its exchange is told once the read is parsed (tell_fed) */
        s->fed = true;
        TAILQ_INSERT_TAIL(&h->fed, s, fed_link);
    }
    return 0;
}

/* END_STREAM without data (an empty DATA frame, or trailers): the small DATA before it, if
 * charged, was the last of the body after all, and is given back. Go's transport ends a body of
 * unknown length with an empty DATA frame, and gRPC's client streams do: 13,000 POSTs of 10
 * bytes a second on one connection got GOAWAY after 3 s, sent with END_STREAM on their data
 * none did. */
static void body_ended(struct h2_conn *h, struct h2_stream *s)
{
    if (s->small_last) {
        s->small_last = false;
        refill_at(h, FLOOD_SMALL_DATA, 1, event_now_us());
    }
    h2_stream_eof(s);
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
            h2_stream_start(s, end_stream);
        else if (s && end_stream && (s->state != ST_HEAD || s->start_at_eof))
            body_ended(h, s); /* trailers */
        break;
    case NGHTTP2_DATA:
        /* No data: padding only is as empty (20,000 such frames went uncharged). */
        if (frame->hd.length == frame->data.padlen && !end_stream)
            h2_charge(h, FLOOD_CONTROL);
        else if (frame->hd.length < SMALL_DATA && !end_stream) /* by the thousand a read: */
            charge_at(h, FLOOD_SMALL_DATA, event_now_us());     /* the read's clock */
        if (s && frame->hd.length > frame->data.padlen) /* it carried data */
            s->small_last = frame->hd.length < SMALL_DATA && !end_stream;
        if (s && end_stream) {
            if (s->discard) /* the rest's last frame: counted, nothing more to let through */
                s->discarded += frame->hd.length;
            body_ended(h, s);
        } else if (s && s->discard) { /* its padding too: what the window let through */
            h2_stream_discard(s, frame->hd.length);
        }
        break;
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
            h->settings_acked = true;
            nghttp2_session_consume_connection(session, h->conn_owed);
            h->conn_owed = 0;
            /* Streams begun under the default window (65,535) now have the floor less
             * their DATA: below 0 for one that sent more, and no byte of it may leave to
             * bring us back. Their grants are made again. */
            struct h2_stream *t;
            TAILQ_FOREACH(t, &h->streams, link)
                if ((t->ex || t->tunnel) && !t->req_eof)
                    h2_stream_grant(t);
                else if (t->discard && !t->req_eof)
                    h2_stream_discard(t, 0); /* its window, looked at again */
        } else {
            h2_charge(h, FLOOD_CONTROL);
            h->check_all = true; /* SETTINGS_INITIAL_WINDOW_SIZE moves every window */
        }
        break;
    case NGHTTP2_WINDOW_UPDATE:
        /* Each one costs us work as a PING does (30 million of 1 byte on an open stream or the
         * connection took 2.2-2.8 s of the worker's CPU in 8 s, uncharged, no GOAWAY); each DATA
         * we send gives back what a client's answers to it take (on_frame_send). */
        h2_charge(h, FLOOD_WINDOW);
        if (s)
            h2_stream_check(s);
        break;
    case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            h2_charge(h, FLOOD_CONTROL);
        else if (h->drain == DRAIN_NOTICE &&
                 memcmp(frame->ping.opaque_data, notice_ping, sizeof(notice_ping)) == 0)
            goaway_last(h); /* every request sent before the notice came is in */
        else
            answer_acked(h, frame->ping.opaque_data);
        break;
    case NGHTTP2_PRIORITY:
        h2_charge(h, FLOOD_CONTROL);
        break;
    case NGHTTP2_RST_STREAM:
        /* A stream reset while Portico was still working on it: the rapid-reset pattern. Any
         * other (answered, or closed: nghttp2 calls us for those too) is charged as well:
         * nghttp2 counts every RST_STREAM against its own limit (session_new). */
        h2_charge(h, s && s->state != ST_ANSWERED ? FLOOD_RESET : FLOOD_CLOSED);
        break;
    default:
        break;
    }
    return 0;
}

/* Whether a HEADERS of ours is a 1xx: its :status (first in nv: head_nv) begins with 1. */
static bool status_is_interim(const nghttp2_headers *hd)
{
    return hd->nvlen > 0 && hd->nva[0].valuelen > 0 && hd->nva[0].value[0] == '1';
}

/* After our END_STREAM: a request body still coming is read to its end and dropped, or reset
 * as not wanted (RFC 9113 8.1): h2_stream_answered_early. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct h2_conn *h = user;
    struct h2_stream *s = stream_of(h, frame->hd.stream_id);
    /* The shutdown notice went: the PING goes after it, never ahead (nghttp2 sends PING before
     * a GOAWAY queued with it), so its acknowledgement follows whatever the client sent before
     * it read the notice. */
    if (frame->hd.type == NGHTTP2_GOAWAY && h->drain == DRAIN_NOTICE &&
        frame->goaway.last_stream_id == NOTICE_LAST_STREAM)
        nghttp2_submit_ping(session, NGHTTP2_FLAG_NONE, notice_ping);
    /* nghttp2 answers most connection errors of the client itself (a frame too large, bad
     * HPACK, a WINDOW_UPDATE of 0 ...: nghttp2_session_mem_recv returns no error for them): its
     * GOAWAY is the only sign. Our own GOAWAYs with an error (conn_end) set end_why first. */
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        !h->end_why) {
        metrics_add(h->loop->metrics, M_H2_PROTOCOL_ERRORS, 1);
        char addr[PEER_ADDR_MAX];
        int n = (int)MIN(frame->goaway.opaque_data_len, 200); /* nghttp2's reason, if any */
        log_client("client %s: HTTP/2: %s%s%.*s", peer_addr(h->peer, addr, sizeof(addr)),
                   nghttp2_http2_strerror(frame->goaway.error_code), n ? ": " : "", n,
                   (const char *)frame->goaway.opaque_data);
        h->end_why = "HTTP/2 protocol error";
    }
    /* A DATA frame's reader answers it with WINDOW_UPDATEs: no flood, whatever its pace. */
    if (frame->hd.type == NGHTTP2_DATA)
        refill(h, FLOOD_WINDOW,
               WINDOW_UPDATES_PER_DATA + (double)(frame->hd.length / WINDOW_UPDATE_BYTES));
    /* What went is what the access line says: the final head, then the end of the response,
     * when its line is written. */
    if (s && frame->hd.type == NGHTTP2_HEADERS && !status_is_interim(&frame->headers))
        s->head_sent = true;
    if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
        h2_stream_delivered(s);
        if (!s->req_eof && !s->tunnel) /* a tunnel's is a half-close: the client goes on */
            h2_stream_answered_early(s);
    }
    /* Before nghttp2 closes the stream (after this callback): what may still come on it. */
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        late_keep(h, frame->hd.stream_id);
    /* Our own PROTOCOL_ERROR resets name their reason first; nghttp2 resets a stream without
     * telling when its DATA breaks its content-length or its trailers are malformed (RFC 9113
     * 8.1.1). Each is a started request thrown away: charged like a reset. Not a body being
     * discarded (h2_int.h: enum discard) after its answer went whole: a client that saw it
     * often ends the body short (nghttp, curl 7.88: END_STREAM before the content-length);
     * 400 such uploads on one connection got GOAWAY (rapid reset) after ~200, each counted
     * malformed, where their DATA had landed on a closed stream, uncounted, before the discard. */
    if (!s || frame->hd.type != NGHTTP2_RST_STREAM || s->malformed)
        return 0;
    uint32_t code = frame->rst_stream.error_code;
    bool answered = s->discard != DISCARD_NONE && h2_stream_answer_sent(s);
    if (code == NGHTTP2_PROTOCOL_ERROR && !answered) {
        h2_stream_malformed_after_head(s, MALFORMED_AFTER_HEAD);
    } else if (code != NGHTTP2_NO_ERROR && s->state != ST_ANSWERED) {
        /* Any other stream error of nghttp2's (a WINDOW_UPDATE overflowing the stream's window:
         * FLOW_CONTROL_ERROR) cancels the running exchange just as the client's own reset
         * would: without the charge, rapid reset needs no RST_STREAM (CVE-2025-8671). Our own
         * INTERNAL_ERROR resets come after done(), ST_ANSWERED. */
        h2_charge(h, FLOOD_RESET);
    }
    return 0;
}

/* A frame nghttp2 would not make: a header block of ours over H2_HEADER_BLOCK_MAX (the origin's
 * heads are checked before they go: head_fits, H2_TRAILERS_MAX), or a HEADERS on a stream that
 * can take none any more. nghttp2 drops it and goes on: the stream would wait for ever for its
 * head or its END_STREAM, so it is reset; a 1xx lost so is only said (the final head follows).
 * Not for a stream nghttp2 closed already, nor for a HEADERS still queued when the GOAWAY of a
 * connection error went (SESSION_CLOSING: the client's bad frame read with the request answered
 * at once, or an origin's head that came meanwhile): the connection ends, and the stream with
 * it as the others in flight (499), not as a head of ours refused (a warning, a 502). */
static int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int error,
                             void *user)
{
    (void)session;
    struct h2_stream *s = stream_of(user, frame->hd.stream_id);
    if (s && frame->hd.type == NGHTTP2_HEADERS && error != NGHTTP2_ERR_SESSION_CLOSING)
        h2_stream_unsent(s, error, status_is_interim(&frame->headers));
    return 0;
}

static int send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *source, void *user)
{
    (void)session, (void)frame;
    struct h2_conn *h = user;
    struct h2_stream *s = source->ptr;
    if (evbuffer_add(h->sock->out, framehd, 9) != 0 ||
        evmem_move(s->body, h->sock->out, length) != 0) {
        h2_out_of_memory(h); /* a frame cut short: nothing after it would parse */
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->body_sent += length;
    /* The windows let bytes through: a window that the client keeps reopening is not kept shut,
     * even when every check after a flush finds it used up again (check_streams). This
     * stream's bytes only: a byte of the connection's window now and then let one stream's
     * DATA go, and restarted the connection's clock for all, whose bytes waited for ever. */
    stream_stalled(s, false, 0);
    if (s->moved_at) { /* still holds bytes: the last in the order of their wait */
        TAILQ_REMOVE(&h->holding, s, hold_link);
        s->moved_at = event_now_us(); /* the event's clock: one read per event, not per frame */
        TAILQ_INSERT_TAIL(&h->holding, s, hold_link);
    }
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
    struct h2_conn *h = user;
    /* A client may race each stream's end with a reset (a cancel) and a WINDOW_UPDATE (for the
     * DATA it read last): those are its due, whatever its request rate (a client of 1,000
     * requests a second, each answered by a WINDOW_UPDATE, was ended as a flood in 1.1 s). */
    refill(h, FLOOD_CLOSED, CLOSED_PER_STREAM);
    struct h2_stream *s = stream_of(h, id);
    if (!s)
        return 0;
    if (s->state == ST_HEAD && code == NGHTTP2_PROTOCOL_ERROR)
        h2_stream_malformed(s, "refused by the HTTP/2 framing layer");
    /* A content-length: 0 stream waiting for its END_STREAM has no exchange to log it: a
     * client that left it is logged 499, as one that left a running exchange is. */
    if (s->start_at_eof)
        h2_stream_head_unfinished(s, HTTP_CLIENT_CLOSED_REQUEST, close_reason(code));
    nghttp2_session_set_stream_user_data(session, id, NULL);
    h2_stream_free(s, s->malformed ? s->malformed : s->unsent ? s->unsent : close_reason(code));
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
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data);
    /* Windows open as the exchange takes request bytes, not as nghttp2 reads them. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
    nghttp2_option_set_max_send_header_block_length(opt, H2_HEADER_BLOCK_MAX);
    /* nghttp2 limits the RST_STREAM frames it receives, every one (1000, then 33 per second):
     * past it, its GOAWAY INTERNAL_ERROR, counted as a protocol error of the client. Each is
     * charged to one of our buckets too (on_frame_recv), so ours, which say what the flood was,
     * are always emptied first: nghttp2's is left at twice their sum, a backstop. */
    nghttp2_option_set_stream_reset_rate_limit(
        opt, 2 * (uint64_t)(flood_rows[FLOOD_RESET].burst + flood_rows[FLOOD_CLOSED].burst),
        2 * (uint64_t)(flood_rows[FLOOD_RESET].rate + flood_rows[FLOOD_CLOSED].rate));
    if (nghttp2_session_server_new2(&session, cbs, h, opt) != 0)
        session = NULL;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return session;
}

/* ---- output ---- */

size_t h2_stream_share(const struct h2_conn *h)
{
    return h->held_floor + h->held_pool / MAX(h->shares_for, 1);
}

size_t h2_stream_room(const struct h2_stream *s)
{
    const struct h2_conn *h = s->conn;
    size_t held = evbuffer_get_length(s->body), share = h2_stream_share(h);
    size_t room = held < h->held_floor ? h->held_floor - held : 0;
    if (h->held < h->held_pool && held < share)
        room = MAX(room, share - held);
    return room;
}

size_t h2_stream_express(struct h2_stream *s, size_t room)
{
    struct h2_conn *h = s->conn;
    struct h2_stream *x = h->express;
    if (x && x != s) {
        if (evbuffer_get_length(x->body) > h->held_floor)
            return 0; /* what it read beyond its room has not all left */
        h->express = NULL;
        if (x->ex) /* its last limit may still count the express */
            exchange_read_max(x->ex, MAX(h2_stream_room(x), 1));
    }
    size_t held = evbuffer_get_length(s->body);
    int32_t window = MIN(nghttp2_session_get_stream_remote_window_size(h->session, s->id),
                         nghttp2_session_get_remote_window_size(h->session));
    if (window <= 0 || (size_t)window <= held + room) {
        if (held <= h->held_floor)
            h->express = NULL; /* the express was not s's, or all its bytes left */
        return 0;
    }
    h->express = s;
    return MIN((size_t)window - held - room, STREAM_EXPRESS);
}

size_t h2_stream_req_share(const struct h2_conn *h)
{
    return MAX(h->req_floor, MIN(STREAM_REQ_MAX, CONN_REQ_HELD_MAX / MAX(h->nstreams, 1)));
}

void h2_stream_check(struct h2_stream *s)
{
    if (s->checking)
        return;
    s->checking = true;
    TAILQ_INSERT_TAIL(&s->conn->checks, s, check_link);
    s->conn->nchecks++;
}

/* Notes whether stream s's data waits behind its own shut window (now: since when), keeping
 * the connection's `stalled` in the order of stalled_since: the earliest deadline is the
 * first's. */
static void stream_stalled(struct h2_stream *s, bool shut, uint64_t now)
{
    struct h2_conn *h = s->conn;
    if (!shut && s->stalled_since) {
        TAILQ_REMOVE(&h->stalled, s, stall_link);
        s->stalled_since = 0;
    } else if (shut && !s->stalled_since) {
        s->stalled_since = now;
        TAILQ_INSERT_TAIL(&h->stalled, s, stall_link);
    }
}

void h2_stream_holds(struct h2_stream *s)
{
    struct h2_conn *h = s->conn;
    bool holds = evbuffer_get_length(s->body) > 0;
    if (!holds && s->moved_at) {
        TAILQ_REMOVE(&h->holding, s, hold_link);
        s->moved_at = 0;
    } else if (holds && !s->moved_at) {
        s->moved_at = event_now_us(); /* the same clock as send_data's, keeping `holding` in order */
        TAILQ_INSERT_TAIL(&h->holding, s, hold_link);
    }
}

static void unchecked(struct h2_stream *s)
{
    TAILQ_REMOVE(&s->conn->checks, s, check_link);
    s->conn->nchecks--;
    s->checking = false;
}

void h2_stream_uncheck(struct h2_stream *s)
{
    if (s->checking)
        unchecked(s);
    if (s->fed) {
        TAILQ_REMOVE(&s->conn->fed, s, fed_link);
        s->fed = false;
    }
    stream_stalled(s, false, 0);
    if (s->moved_at) {
        TAILQ_REMOVE(&s->conn->holding, s, hold_link);
        s->moved_at = 0;
    }
}

/* Tells paused exchanges that their stream drained, and notes data that waits behind a shut
 * flow-control window (the stall deadline): the connection's at each flush, a stream's own when
 * something of it changed (h2_stream_check). A stream left watched and holding less than
 * resume_below is looked at again at the next flush: the connection's output or its budget is
 * what it waits for. One holding more waits for its own bytes to leave (its own change), or a
 * larger share (a stream closed: check_all). */
static void check_streams(struct h2_conn *h, uint64_t now)
{
    bool conn_shut = h->held && nghttp2_session_get_remote_window_size(h->session) <= 0;
    if (!conn_shut)
        h->conn_stalled_since = 0;
    else if (!h->conn_stalled_since)
        h->conn_stalled_since = now;
    struct h2_stream *s;
    if (h->check_all) {
        h->check_all = false;
        TAILQ_FOREACH(s, &h->streams, link)
            h2_stream_check(s);
    }
    size_t resume_below = MIN(RESUME_BELOW, h2_stream_share(h) / 2);
    /* Those in the list now: the ones put back (or changed again) are for the next flush. */
    for (size_t n = h->nchecks; n > 0 && (s = TAILQ_FIRST(&h->checks)) != NULL; n--) {
        unchecked(s);
        size_t held = evbuffer_get_length(s->body);
        stream_stalled(s, held && nghttp2_session_get_stream_remote_window_size(h->session,
                                                                                s->id) <= 0,
                       now);
        if ((!s->ex && !s->tunnel) || !s->watched)
            continue;
        if (held + sock_pending(h->sock) < resume_below && h2_stream_room(s) > 0) {
            s->watched = false;
            if (s->tunnel)
                h2_tunnel_drained(s->tunnel);
            else
                exchange_drained(s->ex); /* may end it: done() only submits */
        } else if (held < resume_below) {
            h2_stream_check(s);
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
        if (h->rooms_stale) /* before any origin of theirs reads again */
            h2_stream_rooms(h);
        for (;;) {
            ssize_t n = 0;
            const uint8_t *data;
            while (sock_pending(h->sock) < OUT_HIGH &&
                   (n = nghttp2_session_mem_send(h->session, &data)) > 0) {
                /* frames nghttp2 counts as sent: the client would wait for them for ever */
                if (evbuffer_add(h->sock->out, data, (size_t)n) != 0)
                    h2_out_of_memory(h);
            }
            if (n == NGHTTP2_ERR_NOMEM || n == NGHTTP2_ERR_CALLBACK_FAILURE) {
                h2_out_of_memory(h); /* nghttp2's own, or send_data's */
            } else if (n < 0) {
                char addr[PEER_ADDR_MAX];
                log_error("client %s: HTTP/2: %s", peer_addr(h->peer, addr, sizeof(addr)),
                          nghttp2_strerror((int)n));
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

/* Hands the client's bytes to nghttp2, having looked at each frame header on the way (h2_conn's
 * in_*): a short DATA frame is held back until nghttp2 has read every frame before it, then
 * charged if its stream is closed (CLOSED_DATA_CHEAP). nghttp2 takes all it is given (no
 * callback of ours pauses it). Returns what it took, or its error (less than len only when the
 * connection ends). */
static ssize_t feed(struct h2_conn *h, const uint8_t *p, size_t len)
{
    size_t seen = 0, fed = 0; /* looked at; given to nghttp2 */
    while (seen < len && !h->end_why) {
        if (h->in_skip > 0) {
            size_t k = MIN(h->in_skip, len - seen);
            h->in_skip -= k;
            seen += k;
            continue;
        }
        size_t start = seen; /* where this piece of the header begins */
        size_t k = MIN(sizeof(h->in_hd) - h->in_hd_len, len - seen);
        memcpy(h->in_hd + h->in_hd_len, p + seen, k);
        h->in_hd_len += k;
        seen += k;
        if (h->in_hd_len < sizeof(h->in_hd))
            break;
        const uint8_t *hd = h->in_hd;
        h->in_hd_len = 0;
        h->in_skip = (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
        /* A larger one spends what a stream reset late had left (late_data): looked at only
         * where one was kept. */
        if (hd[3] != NGHTTP2_DATA || (h->in_skip >= CLOSED_DATA_CHEAP && !h->late))
            continue;
        if (start > fed) { /* the frames before it first: the header's own bytes wait */
            ssize_t n = nghttp2_session_mem_recv(h->session, p + fed, start - fed);
            if (n < 0)
                return n;
            fed = start;
        }
        int32_t id = (int32_t)(((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 |
                                (uint32_t)hd[7] << 8 | hd[8]) & 0x7fffffff);
        if (!h->end_why && stream_closed(h, id) &&
            !(h->late && late_data(h, id, h->in_skip, hd[4] & NGHTTP2_FLAG_END_STREAM)) &&
            h->in_skip < CLOSED_DATA_CHEAP)
            h2_charge(h, FLOOD_CLOSED);
    }
    if (seen > fed && !h->end_why) {
        ssize_t n = nghttp2_session_mem_recv(h->session, p + fed, seen - fed);
        if (n < 0)
            return n;
        fed = seen;
    }
    return (ssize_t)fed;
}

/* Tells the exchanges of the streams that took DATA in this read, once each: what one read
 * brought goes to each origin as one write, and one chunk when the body goes chunked. Told at
 * each DATA frame, a body sent as 20,000 DATA frames of 1 byte went to the origin in 20,000
 * sendto calls, chunked as 120 KB for 20 KB (nginx 1.22: 5 writev and 3 chunks; HAProxy 2.6:
 * 29 sendto and 13 chunks). Nothing waits for more than the read brought. */
static void tell_fed(struct h2_conn *h)
{
    if (TAILQ_EMPTY(&h->fed))
        return; /* no clock read for a read without DATA (a GET's: ~50 instructions) */
    uint64_t now = now_us();
    struct h2_stream *s;
    while ((s = TAILQ_FIRST(&h->fed)) != NULL) {
        TAILQ_REMOVE(&h->fed, s, fed_link);
        s->fed = false;
        s->data_at = now;
        if (s->tunnel)
            h2_tunnel_readable(s->tunnel);
        else if (s->ex && !s->websocket) /* a WebSocket's DATA waits for its tunnel */
            exchange_request_readable(s->ex);
    }
}

static void conn_read(struct h2_conn *h)
{
    struct evbuffer *in = h->sock->in;
    h->depth++;
    while (evbuffer_get_length(in) > 0 && !h->end_why) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = feed(h, v.iov_base, v.iov_len);
        if (n == NGHTTP2_ERR_FLOODED) {
            flood(h, FLOOD_ACKS);
        } else if (n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
            flood(h, FLOOD_CONTINUATION);
        } else if (n == NGHTTP2_ERR_NOMEM || n == NGHTTP2_ERR_CALLBACK_FAILURE) {
            h2_out_of_memory(h); /* ours: a callback of ours said so first, or nghttp2's */
        } else if (n < 0) {
            metrics_add(h->loop->metrics, M_H2_PROTOCOL_ERRORS, 1);
            char addr[PEER_ADDR_MAX];
            log_client("client %s: HTTP/2: %s", peer_addr(h->peer, addr, sizeof(addr)),
                       nghttp2_strerror((int)n));
            conn_end(h, NGHTTP2_PROTOCOL_ERROR, n == NGHTTP2_ERR_BAD_CLIENT_MAGIC
                                                    ? "no HTTP/2 connection preface"
                                                    : "HTTP/2 protocol error");
        }
        if (n < 0)
            break;
        evbuffer_drain(in, (size_t)n);
    }
    tell_fed(h);
    if (h->end_why)
        evbuffer_drain(in, SIZE_MAX); /* nothing more is read from a connection that ends */
    h->depth--;
    sock_consumed(h->sock);
}

/* ---- draining ---- */

/* Whether the client has opened a stream yet. */
static bool took_stream(const struct h2_conn *h)
{
    return nghttp2_session_get_last_proc_stream_id(h->session) > 0;
}

/* GOAWAY with the last stream id taken: the streams in flight finish, then the connection ends. */
static void goaway_last(struct h2_conn *h)
{
    h->drain = DRAIN_GOAWAY;
    h->goaway_id = nghttp2_session_get_last_proc_stream_id(h->session);
    nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, h->goaway_id, NGHTTP2_NO_ERROR, NULL,
                          0);
    event_active(&h->later, EV_TIMEOUT, 1);
}

/* The first step: a request the client sent before this reaches it is still taken (a GOAWAY
 * naming the last stream at once left it unanswered: the client had to retry it, or failed). */
static void notice_shutdown(struct h2_conn *h)
{
    h->drain = DRAIN_NOTICE;
    h->notice_at = now_us();
    nghttp2_submit_shutdown_notice(h->session); /* its PING follows it: on_frame_send */
    event_active(&h->later, EV_TIMEOUT, 1);
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
    /* A block nghttp2 ignores (trailers crossing our answer, on a stream closed since; a stream
     * refused after GOAWAY) never reaches on_frame_recv: its end is not seen, and its deadline
     * ended the connection as a flood client_header_timeout later, with the streams in flight.
     * Only a block on one of our streams waits for its end. */
    if (h->head_since && nghttp2_session_get_stream_user_data(h->session, h->head_id))
        CANDIDATE(h->head_since + cfg->client_header_timeout_ms * 1000,
                  NGHTTP2_ENHANCE_YOUR_CALM,
                  "header block not complete within client_header_timeout", FLOOD_CONTINUATION);
    /* keepalive_timeout is the wait between requests; the first is awaited as long as over
     * HTTP/1.1, draining or not (with keepalive_timeout 0, the GOAWAY refused it). */
    if (TAILQ_EMPTY(&h->streams) && took_stream(h))
        CANDIDATE(h->idle_since + cfg->keepalive_timeout_ms * 1000, NGHTTP2_NO_ERROR, "idle",
                  FLOOD_COUNT);
    else if (TAILQ_EMPTY(&h->streams))
        CANDIDATE(h->started + cfg->client_header_timeout_ms * 1000, NGHTTP2_NO_ERROR,
                  "no request within client_header_timeout", FLOOD_COUNT);
    if (h->drain == DRAIN_NOTICE) /* timer_cb sends the GOAWAY: it does not end the connection */
        CANDIDATE(h->notice_at + NOTICE_WAIT_US, NGHTTP2_NO_ERROR, "shutdown notice unanswered",
                  FLOOD_COUNT);
    /* A window kept shut: the connection's, for the stream whose bytes moved least recently
     * (its wait began once both had), or the stream's own whose stall began first. */
    if (h->conn_stalled_since && !TAILQ_EMPTY(&h->holding))
        CANDIDATE(MAX(h->conn_stalled_since, TAILQ_FIRST(&h->holding)->moved_at) +
                      cfg->client_send_timeout_ms * 1000,
                  NGHTTP2_ENHANCE_YOUR_CALM, "flow-control window kept shut", FLOOD_STALLED);
    if (!TAILQ_EMPTY(&h->stalled))
        CANDIDATE(TAILQ_FIRST(&h->stalled)->stalled_since + cfg->client_send_timeout_ms * 1000,
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
    if (t == UINT64_MAX) {
        event_del(&h->timer);
        return;
    }
    /* evtimer_add moves a pending timer: no del first (this runs after every callback) */
    struct timeval tv = tv_from_us(t > now ? t - now : 0);
    evtimer_add(&h->timer, &tv);
}

/* ---- the end of each of our callbacks ---- */

void h2_settle(struct h2_conn *h)
{
    /* A connection the drain spared (its handshake ended after the worker began draining, or
     * it had sent no request yet: h2_drain) gets what it sent served, then the same GOAWAY. */
    if (h->loop->state != LOOP_RUNNING && h->drain == DRAIN_NONE && took_stream(h))
        notice_shutdown(h);
    flush(h);
    if (!h->end_why && !nghttp2_session_want_read(h->session) &&
        !nghttp2_session_want_write(h->session))
        h->end_why = "HTTP/2 connection finished";
    bool idle = TAILQ_EMPTY(&h->streams) && took_stream(h) && !h->end_why;
    if (idle != h->idle) {
        h->idle = idle;
        h->owner.idle_changed(h->owner.arg);
    }
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
    h2_settle(h);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct h2_conn *h = arg;
    uint64_t now = now_us();
    uint32_t code;
    const char *why;
    enum flood kind;
    if (h->drain == DRAIN_NOTICE && now >= h->notice_at + NOTICE_WAIT_US)
        goaway_last(h); /* a client that does not acknowledge the PING: no round trip to wait */
    if (next_deadline(h, &code, &why, &kind) <= now) {
        struct h2_stream *s;
        if (kind == FLOOD_CONTINUATION) /* the header block's deadline */
            TAILQ_FOREACH(s, &h->streams, link)
                if (!s->start_at_eof) /* a whole head, waiting for END_STREAM: h2_free's */
                    h2_stream_head_unfinished(s, HTTP_REQUEST_TIMEOUT, why);
        if (kind != FLOOD_COUNT)
            flood(h, kind);
        else
            conn_end(h, code, why);
    }
    h2_settle(h);
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
    case SOCK_DEADLINE: /* none set */
        break;
    case SOCK_EOF:
    case SOCK_ERROR:
    case SOCK_WRITE_TIMEOUT:
        h->owner.lost(h->owner.arg, ev);
        return;
    }
    h2_settle(h);
}

/* ---- life ---- */

struct h2_conn *h2_start(struct loop *l, struct sock *s, const struct peer *peer,
                         const struct h2_owner *owner, uint64_t accepted_us)
{
    struct h2_conn *h = zalloc(sizeof(*h));
    if (!h)
        return NULL;
    h->loop = l;
    h->cfg = l->cfg;
    h->sock = s;
    h->peer = peer;
    h->owner = *owner;
    TAILQ_INIT(&h->streams);
    TAILQ_INIT(&h->checks);
    TAILQ_INIT(&h->fed);
    TAILQ_INIT(&h->stalled);
    TAILQ_INIT(&h->holding);
    TAILQ_INIT(&h->answering);
    h->session = session_new(h);
    if (!h->session) {
        free(h);
        return NULL;
    }
    uint64_t now = now_us();
    /* The first request is awaited from the accept, as over HTTP/1.1: after a TLS handshake
     * that took most of client_header_timeout, not a whole one more. */
    h->started = MIN(accepted_us, now);
    h->idle_since = now;
    h->in_skip = NGHTTP2_CLIENT_MAGIC_LEN; /* the preface, then frames */
    for (int k = 0; k < FLOOD_COUNT; k++)
        h->buckets[k] = (struct bucket){flood_rows[k].burst, now};
    /* The budgets hold whatever number of streams the client may open (h2_int.h). */
    size_t max_streams = (size_t)MAX(h->cfg->http2_max_concurrent_streams, 1);
    h->req_floor = MIN(STREAM_REQ_MIN, CONN_REQ_HELD_MAX / 2 / max_streams);
    h->req_pool = CONN_REQ_HELD_MAX - h->req_floor * max_streams;
    h->held_floor = MIN(STREAM_HELD_MIN, CONN_HELD_MAX / 2 / max_streams);
    h->held_pool = CONN_HELD_MAX - h->held_floor * max_streams - STREAM_EXPRESS;
    /* The header list limit is the HTTP/1.1 one: the head we build must fit max_header_size. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         (uint32_t)MIN(h->cfg->http2_max_concurrent_streams, UINT32_MAX)},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)h->req_floor},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)MIN(h->cfg->max_header_size, UINT32_MAX)},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        /* RFC 8441: WebSockets as streams (extended CONNECT), to HTTP/1.1 origins */
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
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
    refused_said(h);
    struct h2_stream *s;
    while ((s = TAILQ_FIRST(&h->streams)) != NULL) {
        nghttp2_session_set_stream_user_data(h->session, s->id, NULL);
        h2_stream_head_unfinished(s, HTTP_CLIENT_CLOSED_REQUEST, why);
        h2_stream_free(s, why);
    }
    event_del(&h->later);
    event_del(&h->timer);
    nghttp2_session_del(h->session);
    free(h->late);
    free(h);
}

void h2_drain(struct h2_conn *h)
{
    /* A connection that has sent no request yet gets its first one served, as over HTTP/1.1
     * (a GOAWAY naming stream 0 would refuse it): h2_settle begins the GOAWAY once it is taken.
     * Frames already in the kernel are taken before the notice's PING is acknowledged. */
    if (!took_stream(h))
        return; /* its deadline stays: client_header_timeout from its start */
    notice_shutdown(h);
}

size_t h2_tunnels(const struct h2_conn *h)
{
    size_t n = 0;
    const struct h2_stream *s;
    TAILQ_FOREACH(s, &h->streams, link)
        n += s->tunnel != NULL;
    return n;
}

bool h2_idle(const struct h2_conn *h)
{
    return h->idle;
}

void h2_reclaim(struct h2_conn *h, const char *why)
{
    conn_end(h, NGHTTP2_NO_ERROR, why);
    h2_settle(h);
}
