/*
 * h2_int.h — the HTTP/2 connection's private parts, shared by h2.c (the session: frames in and
 * out, floods, deadlines, the connection's life) and h2_stream.c (streams: the downstream
 * interface of their exchanges, requests translated and started, responses submitted). Not a
 * public header: nothing else includes it.
 */
#ifndef PORTICO_H2_INT_H
#define PORTICO_H2_INT_H

#include <event2/event_struct.h>
#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "portico/h2.h"
#include "portico/h2_request.h"
#include "portico/metrics.h"

struct access_record;
struct config;
struct exchange;
struct h2_tunnel;
struct tunnel_origin;

/* The kinds of abuse that end a connection, each with its counter. The first four are
 * Portico's token buckets (burst, then tokens per second); the others have no bucket (0, 0):
 * nghttp2's limits or a deadline find them. FLOOD_CLOSED is what rapid reset leaves out: resets
 * of streams already answered or closed (a browser's cancel that crossed the answer is one),
 * and frames that do nothing on closed streams; each stream's end gives some back (h2.c). */
#define FLOOD_LIST(X)                                                                              \
    X(FLOOD_RESET, "rapid reset", M_H2_FLOOD_RESET, 200, 20)                                      \
    X(FLOOD_CONTROL, "control-frame flood", M_H2_FLOOD_CONTROL, 1000, 100)                        \
    X(FLOOD_WINDOW, "WINDOW_UPDATE flood", M_H2_FLOOD_WINDOW, 1000, 100)                          \
    X(FLOOD_CLOSED, "closed-stream flood", M_H2_FLOOD_CLOSED, 1000, 100)                          \
    X(FLOOD_SMALL_DATA, "small DATA flood", M_H2_FLOOD_SMALL_DATA, 10000, 50000)                  \
    X(FLOOD_CONTINUATION, "CONTINUATION flood", M_H2_FLOOD_CONTINUATION, 0, 0)                    \
    X(FLOOD_ACKS, "acknowledgement flood", M_H2_FLOOD_ACKS, 0, 0)                                 \
    X(FLOOD_STALLED, "flow-control window kept shut", M_H2_STALLED, 0, 0)

enum flood {
#define X(id, name, metric, burst, rate) id,
    FLOOD_LIST(X)
#undef X
    FLOOD_COUNT
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

/* What a kept access record (h2_stream.log) stands for, should the stream close before the
 * response's END_STREAM was written: the client left while it was being sent, or the record
 * already says how it ended. */
enum kept_log {
    KEPT_ANSWER,                       /* a whole response: the client left (499 if no head
                                          went, else the status sent; counted as an abort) */
    KEPT_ENDED,                        /* a response cut short, dropped or reset by a fault, or
                                          a refusal: as the record says */
    KEPT_CANCELLED,                    /* the client left while the exchange ran (exchange_cancel
                                          counted it): 499 unless the head went */
};

/* What becomes of a request body still coming once its exchange is over with a whole answer
 * (done()): the rest, whatever its content-length, is read and dropped until the client has
 * read the answer, then the stream is reset (NO_ERROR, RFC 9113 8.1) and its slot of
 * http2_max_concurrent_streams is free. The client has read it when a PING sent after the
 * answer's END_STREAM is acknowledged (h2_answer_ping): a reset in the same read as the answer
 * made curl 7.88 fail the request, its answer unseen (nginx and HAProxy reset at the answer);
 * one after it, curl takes as the end of its upload. Meanwhile, more than DISCARD_MAX dropped,
 * or the rest not all come within client_body_timeout of the answer (or before it: a 408),
 * resets it (NO_ERROR) too, once the answer went. */
enum discard {
    DISCARD_NONE,                      /* nothing dropped: its exchange reads the body, or it
                                          had all come (END_STREAM) */
    DISCARD_READING,                   /* dropped as it comes, its window given back */
    DISCARD_PAST_MAX,                  /* more than DISCARD_MAX came: no window given back;
                                          reset once the answer went */
    DISCARD_LATE,                      /* not all within client_body_timeout (of the answer, or
                                          the 408's: none read): the same */
    DISCARD_ANSWERED,                  /* the client read the answer: reset */
};

struct h2_stream {
    TAILQ_ENTRY(h2_stream) link;
    struct h2_conn *conn;              /* borrowed */
    int32_t id;
    enum stream_state state;
    struct h2_request req;             /* the head being translated (ST_HEAD) */
    const char *malformed;             /* static: why the request was reset, NULL if not */
    size_t trailer_size;               /* bytes of trailer fields decoded so far */
    struct exchange *ex;               /* while ST_EXCHANGE: ends itself, calls done() */
    bool websocket;                    /* an extended CONNECT (RFC 8441) for a WebSocket: its
                                          exchange is an HTTP/1.1 upgrade, its DATA the
                                          tunnel's, not a request body */
    struct h2_tunnel *tunnel;          /* after its origin's 101: owned (h2_tunnel.c) */
    uint64_t t0;                       /* µs: the HEADERS frame began */
    struct evbuffer *req_in;           /* request body from DATA, for the exchange */
    size_t req_counted;                /* request bytes not yet given back to the window: in
                                          req_in or in the output to the origin */
    size_t req_grant;                  /* its part of the connection's pool (h2_conn's req_pool):
                                          req_counted plus the window the client still has, as
                                          of the last grant, beyond the floor (req_floor) */
    bool req_eof;                      /* END_STREAM received */
    bool ends_in_block;                /* a HEADERS of its client had END_STREAM, read or not:
                                          a block refused (malformed, too large) leaves it
                                          unread, the stream open to nghttp2 (h2.c: late_keep) */
    bool start_at_eof;                 /* content-length: 0 before END_STREAM: its exchange
                                          starts at END_STREAM (h2_stream_start) */
    bool head_whole;                   /* refused or parked with its header block decoded to
                                          its end, every field kept: real_ip may read them */
    uint64_t req_left;                 /* content-length bytes still to come; UINT64_MAX
                                          without one */
    bool holding;                      /* DATA completed the content-length before END_STREAM:
                                          its last byte (held) waits for it (h2_stream_eof) */
    uint8_t held;
    enum discard discard;              /* the rest of the body, once the exchange is over */
    uint64_t discarded;                /* ... bytes of it dropped since (DISCARD_MAX) */
    bool body_timed_out;               /* its exchange was told of client_body_timeout: the
                                          rest after its 408 is not read (DISCARD_LATE) */
    uint64_t body_timeout_us;          /* client_body_timeout while the exchange waits, or
                                          while the rest of the body is discarded */
    uint64_t data_at;                  /* µs: the last DATA, the origin took all of req_in, the
                                          wait began, or the answer went (discard) */
    uint32_t answer_ping;              /* the answer PING whose acknowledgement resets it
                                          (h2_answer_ping); 0: none (then it is not in the
                                          connection's `answering`) */
    TAILQ_ENTRY(h2_stream) answer_link;
    struct event body_timer;
    struct evbuffer *body;             /* response body for DATA frames */
    struct evbuffer *trailers;         /* the response's trailer fields that may cross, as
                                          HTTP/1.1 field lines (body.h); NULL until the head
                                          of a body of unknown length went */
    bool resp_done;                    /* all of the body is in `body` */
    bool resp_cut;                     /* ... and then RST_STREAM, not END_STREAM: it broke off */
    bool deferred;                     /* the data provider waits for bytes */
    bool watched;                      /* pending() was asked: tell the exchange when it drains */
    uint64_t stalled_since;            /* µs: data waits behind its own shut window; 0 if not
                                          (then it is in the connection's `stalled`) */
    TAILQ_ENTRY(h2_stream) stall_link;
    uint64_t moved_at;                 /* µs: its last byte left as DATA, or it began to
                                          hold bytes; 0 if it holds none (then it is not in
                                          the connection's `holding`) */
    TAILQ_ENTRY(h2_stream) hold_link;
    bool checking;                     /* in the connection's `checks` */
    TAILQ_ENTRY(h2_stream) check_link;
    bool fed;                          /* in the connection's `fed`: DATA came this read */
    TAILQ_ENTRY(h2_stream) fed_link;
    bool small_last;                   /* its last DATA was charged as small (FLOOD_SMALL_DATA):
                                          given back if END_STREAM comes next, without data */
    bool head_sent;                    /* the final HEADERS was written to the connection */
    const char *unsent;                /* static: a HEADERS of ours that nghttp2 would not
                                          send (the stream reset), NULL if none */
    uint64_t body_sent;                /* response body bytes written, as DATA payloads */
    struct access_record *log;         /* the record of its answer, written once the response's
                                          END_STREAM was written, or the stream closed */
    int log_route, log_upstream;       /* ... its indexes, for exchange_log_record */
    enum kept_log kept;                /* ... what a stream that closes first means for it */
};

TAILQ_HEAD(h2_stream_list, h2_stream);

/* A graceful GOAWAY takes two steps (RFC 9113 6.8): a notice that names no stream, so the
 * requests already on their way are still taken, then, once a PING sent behind it is
 * acknowledged (a round trip), the GOAWAY naming the last stream taken. */
enum drain_step {
    DRAIN_NONE,
    DRAIN_NOTICE,                      /* the notice and its PING went */
    DRAIN_GOAWAY,                      /* the GOAWAY with the last stream id went */
};

/* A stream Portico reset while its client could still send (no END_STREAM from it yet): the
 * DATA it sent before it read the reset lands on a closed stream, and is its due (RFC 9113 5.1)
 * within the window the stream had left then (h2.c: late_keep). Kept in a slot of its own among
 * late_slots, by its id: client streams' ids are the odd numbers in order, so the last
 * late_slots streams never share one (a later stream takes an older one's slot). */
struct h2_late {
    int32_t id;                        /* 0: a free slot */
    uint32_t window;                   /* what its client may still send on it */
};

/* late_slots: http2_max_concurrent_streams (every stream open at once answered early), at
 * most this many (8 bytes each, made at a connection's first such reset). */
#define LATE_SLOTS_MAX 1024

struct h2_conn {
    struct loop *loop;                 /* borrowed */
    const struct config *cfg;          /* borrowed: the loop's */
    struct sock *sock;                 /* borrowed from the owner */
    const struct peer *peer;           /* borrowed from the owner */
    struct h2_owner owner;
    nghttp2_session *session;
    struct h2_stream_list streams;
    size_t nstreams;                   /* in `streams`: they share CONN_HELD_MAX and
                                          CONN_REQ_HELD_MAX */
    size_t shares_for;                 /* the streams CONN_HELD_MAX's shares are cut for (at
                                          least nstreams): see h2_stream_share */
    size_t req_granted;                /* the sum of the streams' req_grant */
    size_t req_floor;                  /* every stream's initial window: see STREAM_REQ_MIN */
    size_t req_pool;                   /* CONN_REQ_HELD_MAX less a floor for every stream
                                          http2_max_concurrent_streams allows */
    size_t held;                       /* response bytes in the streams' `body` buffers */
    size_t held_floor;                 /* what every stream may hold whatever the others do:
                                          see STREAM_HELD_MIN */
    size_t held_pool;                  /* CONN_HELD_MAX less a floor for every stream
                                          http2_max_concurrent_streams allows, less
                                          STREAM_EXPRESS */
    struct h2_stream *express;         /* the stream whose reads may pass its room, NULL if
                                          none (h2_stream_express) */
    bool rooms_stale;                  /* the shares were cut anew since the read limits were
                                          last set (h2_stream_rooms) */
    struct h2_stream_list checks;      /* what the next flush looks at (h2_stream_check) */
    size_t nchecks;                    /* in `checks` */
    bool check_all;                    /* ... and every stream: every share grew (streams
                                          closed) or SETTINGS changed every window */
    struct h2_stream_list fed;         /* streams that took DATA in the read being handled:
                                          their exchanges are told once it is all parsed */
    struct h2_stream_list stalled;     /* streams whose stalled_since is set, earliest first */
    struct h2_stream_list holding;     /* streams that hold bytes, by moved_at, earliest
                                          first */
    uint64_t conn_stalled_since;       /* µs: data waits behind the connection's shut window,
                                          found shut by every flush since; 0 if not */
    struct event later;                /* deferred flush and end, from the loop */
    struct event timer;                /* the earliest connection deadline */
    int depth;                         /* inside one of our callbacks: flush at its end */
    bool flushing;
    bool again;                        /* a flush was asked for during one */
    bool settings_acked;
    uint64_t body_in;                  /* request DATA bytes taken for exchanges: the share of
                                          client_body_min_rate (ds_request_shared) */
    size_t conn_owed;                  /* request bytes held before settings_acked, not yet
                                          given back to the connection's window */
    bool idle;                         /* h2_idle(), as last told to the owner (h2_settle) */
    enum drain_step drain;             /* how far the graceful GOAWAY went (h2_drain) */
    uint64_t notice_at;                /* µs: the shutdown notice went (DRAIN_NOTICE) */
    int32_t goaway_id;                 /* the last stream our GOAWAY names (DRAIN_GOAWAY) */
    uint64_t started;                  /* µs: the accept, whence the first request is due */
    uint64_t idle_since;               /* µs: the last stream closed (or the start) */
    uint64_t head_since;               /* µs: a header block is unfinished; 0 if none */
    int32_t head_id;                   /* ... on this stream */
    int32_t last_begun;                /* the highest stream a HEADERS of the client began:
                                          nghttp2's last processed one leaves out those it
                                          refused or ignored after it (h2.c: stream_closed) */
    struct bucket buckets[FLOOD_COUNT];
    /* Where the client's bytes are in its frames (h2.c's feed): nghttp2 drops DATA on a closed
     * stream before any callback of ours, so frame headers are looked at on the way in. */
    size_t in_skip;                    /* bytes of the preface or a payload still to pass */
    uint8_t in_hd[9];                  /* the frame header being read */
    size_t in_hd_len;                  /* ... its bytes so far */
    struct h2_stream_list answering;   /* streams whose answer_ping is set, in its order */
    uint32_t answer_pings;             /* answer PINGs sent (h2_answer_ping) */
    uint32_t answer_acked;             /* ... the last acknowledged: one in flight at most */
    bool answer_ping_due;              /* a stream waits for the next one, sent at the ACK */
    struct h2_late *late;              /* late_slots of them, made at the first; NULL */
    size_t late_slots;
    uint32_t refused[H2_REFUSED_COUNT]; /* streams not processed, by why: said once, at the
                                          connection's end (h2.c: refused_said) */
    const char *end_why;               /* set: the connection ends at the end of this callback */
};


/* Response bytes one connection holds for all its streams (what came from their origins and
 * waits for the client): 100 streams whose windows the client keeps shut hold 4 MiB, not 100
 * times the 256 KiB of an HTTP/1.1 exchange. Counted for the whole connection (h2_conn's
 * `held`), whenever the streams began: a share fixed when a stream began (4 MiB / the streams
 * open then) let 99 streams opened one after the other hold several times the budget. As for request
 * bodies, every stream may hold a floor whatever the others hold (a stream whose client reads
 * always goes on): STREAM_HELD_MIN, or less where http2_max_concurrent_streams of them would take
 * more than half of CONN_HELD_MAX; the rest (the pool, less STREAM_EXPRESS) is shared out
 * beyond the floors, a stream's share being its floor plus the pool over the streams open now
 * or a few more (h2_stream_share), and no stream takes more beyond its floor while the pool is
 * used up. Each read from an origin is limited to what its stream may still take
 * (h2_stream_room, as of the stream's last move and whenever the shares are cut anew), so the
 * connection holds CONN_HELD_MAX, passed only by reads of streams that each found room before
 * the others' reads landed, in the same loop turn or, as a limit is set again only at a cut,
 * in a later one: twice CONN_HELD_MAX at the very worst (measured: 999 shut streams opened at
 * once hold 4 MiB; opened one per callback, 4.11-4.18 MB before the cuts were spaced out,
 * 4.15-4.38 MB after). */
#define CONN_HELD_MAX (4 * 1024 * 1024)
#define STREAM_HELD_MIN (16 * 1024)
/* Of CONN_HELD_MAX, set aside from the pool for one stream at a time whose client reads: beyond
 * its room, its read may take what its windows let go at once (h2_stream_express). Beside
 * streams that hold the pool, a stream's room is its floor, ~2 KiB at 1000 streams: one read
 * of it a loop turn took 4 MiB ~2,000 turns (55-170 ms beside 996 shut streams once each turn
 * no longer went over them all, 145-450 ms before; 18-33 ms with this). It stays with the
 * stream until what it holds is back within its floor, so no more than one stream's reads ever
 * pass their room, and the connection's bound is CONN_HELD_MAX still. */
#define STREAM_EXPRESS (64 * 1024)

/* Request body bytes one connection holds for all its streams (received from the client, not
 * yet written to their origins), bounded by the streams' flow-control windows: a stream's
 * window is given back only as its bytes leave for its origin, and opened only as far as its
 * share of CONN_REQ_HELD_MAX allows (what it holds plus what the client may still send), so
 * 100 uploads to origins that read nothing hold at most 4 MiB, not 100 times a stream's window.
 * A share is at least the floor, the window every stream starts with
 * (SETTINGS_INITIAL_WINDOW_SIZE): a stream whose origin reads always goes on, whatever the
 * others hold. The floor is STREAM_REQ_MIN, or less where http2_max_concurrent_streams of them
 * would take more than half of CONN_REQ_HELD_MAX (999 uploads held 16 MiB at 16 KiB each):
 * those floors are set aside, and the rest (the pool, at least half) is shared out beyond them,
 * so a lone upload still gets STREAM_REQ_MAX. */
#define CONN_REQ_HELD_MAX (4 * 1024 * 1024)
#define STREAM_REQ_MIN (16 * 1024)
/* A stream alone gets no more: the uploads that come after it find room (a single upload was
 * as fast with 256 KiB as with 4 MiB, ~600-750 MiB/s on loopback). */
#define STREAM_REQ_MAX (1024 * 1024)

/* The largest header block (HEADERS and its CONTINUATION frames) a session makes, set on each
 * (nghttp2's default too; its clients take no more than 8 CONTINUATION frames). nghttp2 counts
 * a block as nghttp2_hd_deflate_bound does, at its worst (h2_stream.c's block_bound), and drops
 * a larger one without a word (NGHTTP2_ERR_FRAME_SIZE_ERROR to on_frame_not_send): a response's
 * head, a 1xx or trailers that never went, and a stream that waited for ever. */
#define H2_HEADER_BLOCK_MAX (64 * 1024)

/* ---- h2.c ---- */

/* How many response bytes each stream may hold now: its share of CONN_HELD_MAX, the floor
 * plus the pool over shares_for streams. shares_for is never below the streams open, so every
 * read limit set from a share keeps the connection within CONN_HELD_MAX; but it is cut for a
 * quarter more than are open (h2_stream_new), and cut anew only once more than that open or
 * far fewer remain (h2_stream_free): telling every stream its smaller share at each open cost
 * a pass over all of them, n^2 / 2 stream visits for n streams opened one per callback, and as
 * much again as they closed one by one (10,000 streams: seconds of a worker's CPU). */
size_t h2_stream_share(const struct h2_conn *h);

/* How many more response bytes stream s may take from its origin now: up to its floor, or up to
 * its share while the connection's pool is not used up (CONN_HELD_MAX); 0: it waits. */
size_t h2_stream_room(const struct h2_stream *s);

/* How many more bytes stream s may read beyond its room (what it may still take): up to
 * STREAM_EXPRESS, as far as its windows (its own and the connection's) let go at once what it
 * holds, its room and those, while no other stream has the express; 0 if not. A stream whose
 * bytes beyond its floor all left gives the express up to the next that asks, its read limit
 * brought back to its room. */
size_t h2_stream_express(struct h2_stream *s, size_t room);

/* How many request bytes each stream may hold now: its share of CONN_REQ_HELD_MAX. */
size_t h2_stream_req_share(const struct h2_conn *h);

/* Something of stream s changed that the checks after a flush look at (check_streams: whether
 * its window is kept shut, whether its paused exchange may go on): what it holds, its window,
 * whether it is watched. The next flush looks at it, and at no stream nothing happened to: a
 * pass over all of them after every flush cost each of the loop's turns O(streams) (996 shut
 * streams beside one that reads: 2,000 turns of ~2 KiB each, 215-387 ms for its 4 MiB). */
void h2_stream_check(struct h2_stream *s);

/* What stream s holds changed (body_changed): it joins the connection's `holding` when it
 * begins to hold bytes, and leaves it when it holds none. */
void h2_stream_holds(struct h2_stream *s);

/* Takes a stream that is being freed out of the connection's lists (checks, fed, stalled,
 * holding). */
void h2_stream_uncheck(struct h2_stream *s);

/* Asks for a flush: at the end of our callback, or from the loop when an exchange's own event
 * called us. */
void h2_want_flush(struct h2_conn *h);

/* Portico ran out of memory for h (a frame it could not buffer, a stream nghttp2 could not take
 * up again): what went either way is no longer whole, so the connection ends, with GOAWAY
 * INTERNAL_ERROR if that can still go, its streams logged with detail "out of memory".
 * Portico's failure, not the client's: no protocol error is counted. */
void h2_out_of_memory(struct h2_conn *h);

/* RST_STREAM with code for stream id. Without memory to queue it the client would wait for the
 * stream for ever (Portico has ended it): the connection ends instead (h2_out_of_memory). */
void h2_reset(struct h2_conn *h, int32_t id, uint32_t code);

/* The PING whose acknowledgement tells that the client has read every answer whose END_STREAM
 * went before it (frames are read in order): its number, for a stream answered early to wait
 * for. Sent at once, or, while one is in flight, at its acknowledgement. */
uint32_t h2_answer_ping(struct h2_conn *h);

/* Takes one token of kind; an empty bucket is a flood: GOAWAY, counted. */
void h2_charge(struct h2_conn *h, enum flood kind);

/* Ends one of our libevent callbacks: flushes, then ends the connection (the owner's done(),
 * after which h is gone) or re-arms its deadline. */
void h2_settle(struct h2_conn *h);

/* ---- h2_stream.c ---- */

/* A new request stream (HEADERS began); NULL when out of memory. */
struct h2_stream *h2_stream_new(struct h2_conn *h, int32_t id);

/* Frees a stream; an exchange still running is cancelled (logged as 499 with why), and a record
 * kept for a response that did not go whole is written as a client that left (why). */
void h2_stream_free(struct h2_stream *s, const char *why);

/* The response's END_STREAM was written: its access line is written, with the bytes that went. */
void h2_stream_delivered(struct h2_stream *s);

/* The request's header block is complete: translate, check, start its exchange. */
void h2_stream_start(struct h2_stream *s, bool end_stream);

/* Sets the read limit of every stream's origin to what the stream may still take now: the
 * shares were cut anew (rooms_stale). Once per callback, from flush. */
void h2_stream_rooms(struct h2_conn *h);

/* Opens the stream's window as far as its share of CONN_REQ_HELD_MAX allows, once what it
 * holds went down enough to be worth a WINDOW_UPDATE, and counts its grant; once its body is
 * whole (END_STREAM) the grant is what it still holds, and no window opens. */
void h2_stream_grant(struct h2_stream *s);

/* Whether the stream's answer went whole (its END_STREAM was written). */
bool h2_stream_answer_sent(const struct h2_stream *s);

/* A DATA payload of len bytes (padding included) on a stream whose body is being discarded
 * (discard != DISCARD_NONE): dropped, its window given back up to DISCARD_MAX. */
void h2_stream_discard(struct h2_stream *s, size_t len);

/* The stream's answer went whole (its END_STREAM) before the client's END_STREAM: the stream is
 * reset (NO_ERROR), or stays open while the rest of its body is discarded until the client
 * has read the answer (h2_stream_answer_read). */
void h2_stream_answered_early(struct h2_stream *s);

/* The stream's answer PING was acknowledged: the client has read its answer, and the rest of
 * its body, still coming, is not wanted: reset (NO_ERROR), its slot free. */
void h2_stream_answer_read(struct h2_stream *s);

/* END_STREAM from the client: the request body is complete. */
void h2_stream_eof(struct h2_stream *s);

/* The data provider of a stream that waits for bytes goes on (its body has some, or ended). */
void h2_stream_resume(struct h2_stream *s);

/* queued bytes of the stream's request (or tunnel) DATA wait in the origin's output; the rest
 * left req_in and went: given back to the stream's window, within its share. */
void h2_stream_request_taken(struct h2_stream *s, size_t queued);

/* ---- a WebSocket's stream after its 101 (h2_tunnel.c) ---- */

/* Opens the tunnel between stream s (its DATA both ways) and origin (owned from now on: on
 * failure, out of memory, the origin is closed and its line written, and NULL returned); sets
 * s->tunnel and moves what either side sent before. */
struct h2_tunnel *h2_tunnel_open(struct h2_stream *s, const struct tunnel_origin *origin);

/* DATA came into the stream's req_in. */
void h2_tunnel_readable(struct h2_tunnel *t);

/* The client's END_STREAM: a FIN to the origin once all it sent went. */
void h2_tunnel_client_eof(struct h2_tunnel *t);

/* The stream may take the origin's bytes again (check_streams). */
void h2_tunnel_drained(struct h2_tunnel *t);

/* The stream closed (or its connection): the end counted and logged if it was not, the origin
 * closed, the tunnel freed, s->tunnel cleared (NULL is fine). */
void h2_tunnel_free(struct h2_tunnel *t);

/* A malformed request (RFC 9113 8.1.1): logged as 400 and counted; reset_malformed also resets
 * the stream (PROTOCOL_ERROR), where nghttp2 has not done it already. */
void h2_stream_malformed(struct h2_stream *s, const char *why);
void h2_stream_reset_malformed(struct h2_stream *s, const char *why);

/* A request head far over max_header_size (an HPACK bomb): logged as 431 with a detail that
 * says no response went, charged like a reset; the caller resets the stream
 * (ENHANCE_YOUR_CALM). */
void h2_stream_abandon_head(struct h2_stream *s);

/* A stream found malformed once its exchange had begun (its DATA broke its content-length, its
 * trailers broke the rules or max_header_size): counted and charged like a malformed request;
 * the exchange is cancelled as 400 (why: static, the detail) when the stream closes, or, with
 * none yet (a content-length: 0 stream waiting for END_STREAM), 400 is logged now. The stream
 * is reset by nghttp2, or by the caller. */
void h2_stream_malformed_after_head(struct h2_stream *s, const char *why);

/* A HEADERS frame of ours on the stream was not sent (nghttp2's error), said in the error log.
 * A final head or trailers: the stream is reset (INTERNAL_ERROR), never left waiting for a head
 * or an END_STREAM that will not come, and its access line says 502 (or the status that went)
 * with that detail. A 1xx (interim): nothing more, the final head still goes. */
void h2_stream_unsent(struct h2_stream *s, int error, bool interim);

/* A stream whose header block never ended (the client left, or client_header_timeout): logged
 * with status (499 or 408) at client_header, as over HTTP/1.1; nothing more is taken on it. */
void h2_stream_head_unfinished(struct h2_stream *s, int status, const char *why);

#endif
