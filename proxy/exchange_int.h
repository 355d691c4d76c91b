/*
 * exchange_int.h — the exchange's private parts, shared by the files that make it up:
 * exchange.c (life, phases and timers, fail/finish, the one exit), relay.c (the origin side:
 * connect, request, response heads and bodies), interim.c (the 1xx policy) and fault_exec.c
 * (injected faults). Not a public header: nothing outside those files includes it.
 */
#ifndef PORTICO_EXCHANGE_INT_H
#define PORTICO_EXCHANGE_INT_H

#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>

#include "portico/body.h"
#include "portico/deadline.h"
#include "portico/downstream.h"
#include "portico/exchange.h"
#include "portico/failure.h"
#include "portico/fault.h"
#include "portico/hints.h"
#include "portico/http1.h"
#include "portico/phase.h"
#include "portico/realip.h"
#include "portico/trace.h"

#define RELAY_HIGH (256 * 1024) /* stop moving bytes while their destination holds more */
#define MAX_INTERIM 32          /* 1xx relayed per exchange; more are dropped and counted */
#define REPLAY_MAX (64 * 1024)  /* request body bytes kept to send again (a stale pooled
                                   connection, a retry on another origin); a larger body is not
                                   resent */

struct loop;
struct config;
struct route_conf;
struct upstream_conf;
struct upconn;
struct sock;
struct ex_fault;
struct ex_queue;
struct errpage_out;
struct evbuffer;
struct mirror_copy;

enum req_state {
    REQ_GATED,  /* Expect: 100-continue relayed, body held until the origin's 100 or timeout */
    REQ_BODY,   /* body flowing */
    REQ_DONE,   /* all of it read from the client */
};

enum resp_state {
    RESP_HEAD,  /* waiting for / parsing the response head (1xx included) */
    RESP_BODY,  /* final head forwarded: status committed, body flowing */
    RESP_DONE,
    RESP_SWITCHED, /* 101 relayed: the connections become a tunnel when the exchange ends */
};

/* How far the exchange is: running, or over and waiting for the one exit (settle). */
#define OUTCOME_LIST(X)                                                                            \
    X(OUTCOME_OPEN, "open")         /* running */                                                 \
    X(OUTCOME_DONE, "done")         /* a complete response went out (proxied or our own) */       \
    X(OUTCOME_ABORTED, "aborted")   /* the response was cut short after its head */              \
    X(OUTCOME_DROPPED, "dropped")   /* a fault's drop: closed without a response (FIN) */         \
    X(OUTCOME_RESET, "reset")       /* a fault's reset: closed with RST, nothing sent */         \
    X(OUTCOME_LEFT, "left")         /* the client was found gone as its answer was to go: 499 */

enum outcome {
#define X(id, name) id,
    OUTCOME_LIST(X)
#undef X
};

/* Whether the route's client rules refused the request, before an origin was asked. */
enum route_refusal {
    ROUTE_ADMITTED,
    ROUTE_DENIED,       /* allow/deny (acl.h): 403 */
    ROUTE_RATE_LIMITED, /* client_rate (climit.h): 429 */
};

struct exchange {
    struct loop *loop;                 /* borrowed */
    const struct config *cfg;          /* borrowed: the loop's generation */
    struct downstream ds;              /* the owner */
    uint64_t t0;                       /* µs: first byte of the request head */
    uint64_t now;                      /* µs: when the event being handled began */
    enum outcome outcome;              /* changed by end() only */
    bool close_client;                 /* the client connection cannot serve another request */
    bool client_stalled;               /* its body stopped coming (408): logged in its phase */
    bool client_closes;                /* its request asked to close (Connection: close, 1.0) */
    bool total_after_body;             /* total_timeout came while the client was still sending
                                          the body: it runs anew once the body is in */

    /* request */
    char *head;                        /* copy of the request head, in this allocation */
    size_t head_len;
    struct h1_info info;
    const char *target;                /* origin-form target to forward (span into head, or
                                          rewritten) */
    size_t target_len;
    const char *uri;                   /* the target's path and query as the client sent them
                                          (span into head): $request_uri */
    size_t uri_len;
    const char *route_path;            /* what routes and learned hints key on (request.h) */
    size_t path_len;
    size_t path_plain;                 /* route_plain_len of route_path: for routes and faults */
    const char *host;                  /* Host (or absolute-form authority), may be NULL */
    size_t host_len;
    char *rewritten;                   /* owned: the target rewrite_prefix made, or NULL */
    const struct route_conf *route;    /* borrowed from cfg */
    int route_index;
    int max_forwards;                  /* OPTIONS, TRACE: the client's Max-Forwards, else -1 (an
                                          int in route_index's padding: the exchange keeps its
                                          size; REQUEST_MAX_FORWARDS_CAP fits) */
    const struct upstream_conf *up;    /* borrowed from cfg */
    int up_index;
    int origin;                        /* index in up->origins, -1 before the pick */
    uint32_t tried;                    /* origins picked so far (bit i: origin i) */
    bool holds_origin;                 /* the pick of origin awaits its balancer_done */
    uint8_t sticky;                    /* enum sticky_outcome: what the sticky cookie did
                                          (STICKY_NONE: not read yet, or no sticky upstream) */
    int8_t sticky_origin;              /* the origin the request's sticky cookie named, -1:
                                          none; read with the first pick */
    uint32_t sticky_only;              /* waiting for the cookie's origin alone (max_conns):
                                          every other origin, for the queue's exclude; 0 else */
    uint64_t probe;                    /* that pick is the origin's probe: its number
                                          (balance.h), until its answer has spoken for the
                                          origin; 0 for any other */
    unsigned retries;                  /* attempts moved to another origin (`retries`) */
    bool upgrade;                      /* the request offers an Upgrade the origin may take */
    bool real_ip;                      /* a trusted proxy named the client ([proxy] real_ip):
                                          client_addr, not the peer, is the client (in
                                          upgrade's padding) */
    bool from_trusted;                 /* the peer is one of trusted_proxies: its fields on
                                          how its client came go on, real_ip reads them */
    enum req_state req_state;
    struct body_relay req_body;
    bool req_eof;                      /* the downstream said the request body ended */
    uint64_t discard_left;             /* body bytes the downstream drops after the answer */

    /* upstream */
    struct upconn *uc;                 /* owned while set */
    struct sock *usock;                /* uc's sock, once ready */
    struct phase_clock pc;
    /* Phase queue comes before any request byte goes, first_byte after: the waiter's pointer
     * takes the deadline's place, back to 0 (NULL) when it leaves, so the exchange keeps its
     * size (8 bytes more cost 4 instructions a request to zero, and moved its strings). */
    union {
        uint64_t first_byte_deadline;  /* µs: interim responses may not restart it */
        struct ex_queue *queue;        /* owned while it waits for a slot (exchange_queue.c),
                                          read in phase queue only */
    };
    bool retried;                      /* already resent once after a stale pooled connection */
    bool replay_over;                  /* the replay was let go past REPLAY_MAX (in retried's
                                          padding) */
    bool mirror_made;                  /* the route's mirror copy was decided (made or not,
                                          counted) at the first send: a resend makes none */
    bool status_failed;                /* the final status relayed is one of retry_on that counts
                                          toward max_fails: the attempt's verdict is a failure,
                                          not an answer (in mirror_made's padding) */
    bool retry_held;                   /* a place of retry_budget is this request's, given back
                                          when it ends (in the same padding) */
    struct evbuffer *replay;           /* owned: the request body as sent (framed), all of it so
                                          far, for a resend (replay_wanted, relay.c); NULL when
                                          none is kept (no resend possible, over REPLAY_MAX) */
    struct mirror_copy *mirror;        /* owned: the request for the route's mirrors while it
                                          goes out (mirror.h), handed over once whole */
    unsigned attempts;                 /* origin connections tried: pooled or new, each retry */
    bool reused;                       /* the (last) connection came from the pool */
    bool response_byte;                /* any response byte seen from the origin */
    size_t head_scanned;               /* bytes of the pending response head parsed without
                                          success: parsed again once a new line ends */
    bool head_grown;                   /* a head did not fit in resp_read_max: the input takes
                                          max_header_size (up_read_high) */
    bool upstream_paused;              /* origin reads stopped: the client's output is full */
    bool origin_reset;                 /* the origin reset the connection behind an answer not
                                          all read: the rest, in the kernel, is read as the
                                          client takes it (origin_eof) */
    bool req_splice;                   /* the request body goes socket to socket (sock_splice) */
    size_t req_queued;                 /* the origin's output, as last told to request_taken */
    bool resp_splice;                  /* so does the response body, all but its last byte */
    bool answered_early;               /* the final head came before the request was all sent:
                                          whether the origin read the rest is unknown, so its
                                          connection is not reused (relay_reusable) */
    uint64_t rate_from;                /* µs: the body's pace is measured from here
                                          (client_body_min_rate); 0: not measured, rate_timer
                                          and rate_base unset */

    /* response */
    enum resp_state resp_state;
    struct h1_info resp_info;
    struct body_relay resp_body;
    struct body_sink sink;             /* where the response body goes, once the head went */
    int status;                        /* sent to the client (0 = nothing yet) */
    int upstream_status;               /* the origin's final status, 0 if none */
    uint64_t error_body_bytes;         /* body of a response Portico wrote itself */

    /* interim */
    unsigned interim_count;            /* how many (MAX_INTERIM, and the 100 owed past them) */
    unsigned interim_seen;             /* 1xx received from the origin */
    bool sent_100;
    uint8_t route_refusal;             /* enum route_refusal: refused by its route's client
                                          rules (429, 403), logged in phase route */
    uint16_t retry_after_s;            /* Retry-After of that 429 (one interval at most: 60
                                          s); beside sent_100, in padding: the exchange keeps
                                          its size */
    struct hint_set *hints;            /* links hinted so far; allocated on the first hint */

    /* failure */
    enum failure_type failure;
    enum phase fail_phase;
    enum cause cause;
    int tls_alert;                     /* the TLS alert the origin refused the handshake with,
                                          + 1 (0: none, as zeroed): for Proxy-Status */
    uint64_t limit_ms;

    struct ex_fault *fault;            /* owned: the fault rule acting on it (fault_exec.c) */
    size_t alloc_size;                 /* bytes of this allocation: the loop may keep it */

    /* From phase_timer on, written by exchange_start before anything reads them, so left out
     * of its zeroing (their ~620 bytes were a third of it): detail as an empty string, the rest
     * whole. In this order the exchange keeps its size (no padding more). */
    struct deadline phase_timer;
    struct deadline total_timer;
    struct deadline continue_timer;    /* Expect relay: send our own 100 after continue_timeout */
    struct deadline processing_timer;  /* synthesized 102 heartbeats */
    char request_id[48];
    char detail[200];                  /* the failure's words; empty: none */
    enum trace_source trace_source;
    uint16_t interim_codes[MAX_INTERIM + 1]; /* the 1xx sent to the client, in order (the first
                                          interim_count) */
    struct trace_context trace;        /* the client's trace with our span, or a new one */
    struct fault_addr client_addr;     /* set with real_ip, read only then: left out of the
                                          zeroing at the start (exchange_start), which it
                                          made 2 instructions a request dearer */
    /* Set once rate_from is (ex_body_owed), also left out of the zeroing: most requests have no
     * body to time. */
    struct deadline rate_timer;        /* client_body_min_rate: when the body's bytes so far
                                          are due; moved only when it comes up */
    uint64_t rate_base;                /* body bytes already in at rate_from */
    uint64_t rate_shared_base;         /* ... and its connection's, for all its bodies */

    /* Last: the allocation holds only the req.nfields fields the request has, then the head
     * bytes (exchange_start), so an exchange costs ~1.7 KiB instead of 5.7. Never copy req by
     * value. */
    struct h1_request req;             /* spans into head */
};

/* ---- exchange.c ---- */

/* The client's address: the one a trusted proxy named (real_ip), else the peer's. 0, or -1
 * when the peer has no numeric one. */
static inline int ex_client_addr(const struct exchange *ex, struct fault_addr *out)
{
    if (ex->real_ip) {
        *out = ex->client_addr;
        return 0;
    }
    return fault_addr_parse(ex->ds.peer->ip, out);
}

/* The client's address as text, for $client_addr (header rules, return): the one real_ip took
 * from a trusted proxy, else the peer's, as nginx's realip module makes $remote_addr (and as
 * client_rate, allow/deny and balance = hash key on). buf: PEER_ADDR_MAX bytes. */
static inline const char *ex_client_text(const struct exchange *ex, char *buf, size_t size)
{
    return ex->real_ip ? realip_text(&ex->client_addr, buf, size) : ex->ds.peer->ip;
}

/* Ends the exchange with outcome o (the one setter); the entry point's settle() finishes it. */
void ex_end(struct exchange *ex, enum outcome o);

/* A 408 was the first thing a pooled connection answered: the origin's idle timeout that met
 * the request (RFC 9110 15.5.9: it "MAY" go again on a new connection), not its answer. Resends
 * it once on a fresh connection as after a stale pooled connection's close, and true; false
 * when it may not go again (then the 408 is the answer). */
bool ex_resend_408(struct exchange *ex);

/* An upstream failure in phase with cause: a retry on a fresh connection, an error response, or
 * an abort when the head already went. */
void ex_fail(struct exchange *ex, enum phase phase, enum cause cause, uint64_t limit_ms,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ex_fail with a detail already written: copied as it is (no printf per failed request). */
void ex_fail_text(struct exchange *ex, enum phase phase, enum cause cause, uint64_t limit_ms,
                  const char *detail);

/* A request Portico refuses itself (400, 408, 413 ...). close: no further request on the
 * connection. */
void ex_refuse(struct exchange *ex, int status, const char *reason, bool close);

/* Whether the downstream says its client is gone (downstream_ops.gone) as its answer is about
 * to go: then the exchange ends as exchange_cancel ends one (499, the client's reason), nothing
 * is sent, and true is returned. */
bool ex_client_gone(struct exchange *ex);

/* The body of Portico's own answer could not be added (out of memory) after its head went: the
 * exchange ends aborted, the connection closed. */
void ex_own_body_lost(struct exchange *ex);

/* route_return.c: the route's return = ... answer (a redirect, a text, an empty answer or
 * Portico's error page), the request's body discarded; the exchange ends. */
void route_return_answer(struct exchange *ex);

/* Enters / resumes a phase and arms its timer. */
void ex_phase(struct exchange *ex, enum phase p);
void ex_phase_resume(struct exchange *ex, enum phase p);

/* The current phase's timer expired: fails the exchange with that phase's timeout. */
void ex_phase_timeout(struct exchange *ex);

/* All of the request body is in: a total_timeout held back while the client was sending it
 * starts again, whole. */
void ex_request_body_done(struct exchange *ex);

/* The client owes the request body from now (connected, or the gate opened): its silence is
 * bounded by client_body_timeout, its pace by client_body_min_rate, measured from the first
 * call (a resend on a new connection does not start it again). */
void ex_body_owed(struct exchange *ex);

/* Sets a deadline ms from now (later ones cost no timer operation: deadline.h). */
void ex_arm(struct deadline *d, uint64_t ms);

/* The client speaks HTTP/1.1 or later (can take 1xx, chunked). */
bool ex_client_http11(const struct exchange *ex);

/* Records a 1xx sent to the client for the access log. */
void ex_note_interim(struct exchange *ex, int code);

/* The origin's final head has status (retry_on): true when the request went to another origin
 * instead (the head dropped with its connection, relay_connect called); false when the head is
 * to be relayed (then a status that counts toward max_fails is the attempt's failure). Called
 * only when the upstream has retry_on. */
bool ex_retry_on_status(struct exchange *ex, int status);

/* Fails with no_healthy_origin: every origin of the upstream is marked down. */
void ex_fail_no_origin(struct exchange *ex);

/* The origin of the current attempt sent its response head: passive health hears of it now
 * (a probe brings the origin back up before a long body ends). */
void ex_origin_answered(struct exchange *ex);

/* Chooses the origin as ex_to_origin does, without connecting: false when none was taken now
 * (every usable one full: the exchange waits in the queue, or was refused with queue_full; or
 * every one is marked down: no_healthy_origin). A waiter handed a slot goes on by
 * fault_exec_picked, else relay_connect. */
bool ex_pick_or_queue(struct exchange *ex);

/* The upstream part of run(): choose the origin and connect to it. */
void ex_to_origin(struct exchange *ex);

/* Picks an origin again after the queue saw a free slot: true when one was taken (no failure is
 * written when none was). */
bool ex_pick_again(struct exchange *ex);

/* ---- exchange_queue.c: waiting for a slot (max_conns) ---- */

/* Every usable origin is full: the exchange waits in its upstream's queue (phase queue), is
 * refused with queue_full, or, the queue having seen a free slot, goes on with a pick. false
 * when no origin is usable after all (the caller fails with no_healthy_origin). */
bool ex_queue_enter(struct exchange *ex);

/* queue_timeout came: queue_timeout failure, unless a slot was handed over just then. */
void ex_queue_timeout(struct exchange *ex, uint64_t limit_ms);

/* The exchange ends while it waits: out of the queue, a slot handed to it passed on. */
void ex_queue_leave(struct exchange *ex);

/* ---- relay.c ---- */

/* Picks up (or opens) an origin connection and sends the request when it is ready. */
void relay_connect(struct exchange *ex);

/* Whether relay_connect would take a pooled connection now (it stays pooled). */
bool relay_pooled(struct exchange *ex);

/* Whether the request may go again on a fresh connection when a pooled one proves stale, by its
 * method alone: an idempotent one without a body. (ex_fail resends more: see stale_pooled.) */
bool relay_resendable(const struct exchange *ex);

/* Moves request body bytes from the downstream to the origin. */
void relay_request_body(struct exchange *ex);

/* The request is entirely in the kernel: start waiting for the response. */
void relay_request_sent(struct exchange *ex);

/* The downstream drained: resume the origin's response. */
void relay_resume(struct exchange *ex);

/* The origin's read limit, as the response's state and the downstream's resp_read_max say. */
void relay_read_limit(struct exchange *ex);

/* Portico answers before the request body was read (failure, no route): the part of it already
 * buffered is read and dropped, and a Content-Length rest of up to DISCARD_MAX is left for the
 * downstream to drop (request_discard). true when the connection may go on. */
bool relay_discard_body(struct exchange *ex);

/* Drops the origin connection. */
void relay_drop(struct exchange *ex);

/* Whether this exchange left the origin connection fit for another request (upconn_release
 * still refuses one that holds bytes past the response). */
bool relay_reusable(const struct exchange *ex);

/* ---- interim.c ---- */

/* 103 Early Hints from configuration and learning, before the origin is contacted. */
void interim_early_hints(struct exchange *ex);

/* Remembers the preload/preconnect links of a 200 for later 103s on the same host and path:
 * those of the head the client got (fields), after the route's response rules. */
void interim_learn(struct exchange *ex, const struct h1_field *fields, size_t nfields);

/* Expect: 100-continue: decides the mode for this request (relay gates the body). */
void interim_expect(struct exchange *ex);

/* Starts 102 Processing heartbeats when the route asks for them. */
void interim_heartbeats(struct exchange *ex);

/* A complete 1xx from the origin: relayed, filtered or dropped. Returns true when it is the
 * origin's 100 to a gated request body: the caller opens the gate once the head is consumed. */
bool interim_relay(struct exchange *ex, const struct h1_response *resp);

/* The request body may flow now (origin's 100, our own, or continue_timeout). */
void interim_open_gate(struct exchange *ex);

/* Sends a 1xx Portico makes (a fault's interim list): 100 at most once per exchange. Whether it
 * went out (an HTTP/1.0 client gets none). */
bool interim_send(struct exchange *ex, int code);

/* libevent callbacks of the interim timers. */
void interim_continue_cb(evutil_socket_t fd, short what, void *arg);
void interim_processing_cb(evutil_socket_t fd, short what, void *arg);

/* ---- fault_exec.c: injected faults (fault.h rules) acting through the exchange ---- */

/* At route time: the Portico-Fault header (refused with 400 when malformed: returns false) or
 * the first rule of the generation that fires takes the exchange. */
bool fault_exec_decide(struct exchange *ex);

/* Before the origin is contacted: true when a fault acts first (delay, interim, an answer, a
 * simulated failure, a drop or reset); it calls ex_to_origin itself if the request goes on. */
bool fault_exec_start(struct exchange *ex);

/* A simulated failure after the request was sent reads the request body first: the buffer its
 * bytes go to (and are dropped from), or NULL when no fault waits for them. */
struct evbuffer *fault_exec_request_sink(const struct exchange *ex);

/* ... the whole body was read: the failure goes on in the phases after SEND. */
void fault_exec_request_read(struct exchange *ex);

/* The address a simulated failure names (what upconn_addr would say), or NULL. */
const char *fault_exec_addr(const struct exchange *ex);

/* True while a simulated failure walks the phases (no origin is touched or judged). */
bool fault_exec_simulating(const struct exchange *ex);

/* Appends the Portico-Fault field (unless fault_header = off) to a response head's fields;
 * returns how many were added (0 or 1). */
size_t fault_exec_fields(const struct exchange *ex, struct h1_field *fields, size_t room);

/* A response Portico writes itself: adds Portico-Fault, and for a fault's status answer its
 * reason, headers and body length, to o's head, using fields[room] as the new field list. */
void fault_exec_own_head(struct exchange *ex, struct errpage_out *o, struct h1_field *fields,
                         size_t room);

/* Writes the body of that response: the answer's own, or the error page's. Body bytes, -1 when
 * out of memory. Releases o. */
long fault_exec_own_body(struct exchange *ex, struct errpage_out *o, struct evbuffer *out);

/* The first byte of the origin's response is there: true while response_delay holds it (the
 * origin is not read meanwhile). */
bool fault_exec_hold_head(struct exchange *ex);

/* Whether response_delay holds the origin's head now: a timer that expires meanwhile fails the
 * exchange as it would, but the origin had answered (no verdict on its health). */
bool fault_exec_holding_head(const struct exchange *ex);

/* The response body starts: truncate and throttle set the body's quota. */
void fault_exec_body_start(struct exchange *ex);

/* The body's quota is spent: truncate aborts as a real mid-body failure, throttle pauses until
 * its next tick. True when the relay must stop here. */
bool fault_exec_body_stop(struct exchange *ex);

/* A queued rehearsal (a simulated failure that found every usable origin at max_conns, and
 * waited as a real request does) was handed its slot: the simulation goes on, true. false
 * for any other exchange (it connects). */
bool fault_exec_picked(struct exchange *ex);

/* The rule's name for the access log, or NULL (none, or a simulated failure that met every
 * origin really down: the real failure went out). */
const char *fault_exec_name(const struct exchange *ex);

/* The exchange ends: its place under max_active is given back, the fault freed. */
void fault_exec_end(struct exchange *ex);

/* Frees the fault allocation the loop keeps (loop.h), if any. */
void fault_exec_spare_free(struct loop *l);

/* ---- the one exit ---- */

/* Ends an entry point: when the exchange is over, logs it, gives back or closes the origin
 * connection, frees it and tells the downstream. Called last by every entry point and libevent
 * callback of the exchange, and by nothing else. */
void ex_settle(struct exchange *ex);

#endif
