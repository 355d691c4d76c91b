/*
 * exchange.c — the life of one request. This comment is the architecture of Portico.
 *
 * LAYERS. Each file includes only headers of its own layer or below; the include graph has no
 * cycles.
 *   pure     util, status, failure, phase, http1 (+ chunked), request,  bytes and tables
 *            h2_request
 *   buffers  body, headers, h1out, errpage, hints                        evbuffers
 *   runtime  loop, sock, upstream, balance, health, generation, exchange (+ relay.c,
 *            interim.c), tunnel, client (HTTP/1.1 downstream),           the event loop
 *            h2 (+ h2_stream.c: HTTP/2)
 *   process  listener, worker, main, probe                               threads, signals
 *   beside   config, route, tls, log, metrics, recent, admin(_status),   used from above
 *            sim, codes
 *
 *   client ──► listener ──► client (parse head) ──► exchange ──► upconn (dns, connect, tls)
 *     ▲                       │  implements           │  relay.c      └─► origin
 *     └──── sock ◄────────────┘  downstream_ops       ├─► errpage (failure → status → response)
 *                                                     └─► log / metrics
 *
 * DOWNSTREAM INTERFACE (downstream.h). The exchange never sees the client's socket: it hands a
 * protocol-neutral response head (status, fields, framing) and body bytes to its owner through
 * a table of operations — interim, head, body, pending, request_input, request_taken,
 * request_wait, done, upgraded instead of done after a 101 (the client's connection and the
 * origin's become a tunnel, tunnel.c), an optional report of the outcome, and an optional gone
 * (a half-closed client that reset since its FIN, found as its answer is about to go: the
 * exchange then ends as a cancelled one, ex_client_gone) — and reads the peer's facts from
 * struct peer. client.c implements it for HTTP/1.1, an HTTP/2 stream the same
 * table, and `portico probe` (probe.c) a recorder of one exchange. The origin side reports to
 * the exchange the same way, through upconn_events (upstream.h).
 *
 * ONE EXIT PER EVENT. Every way into the exchange — its libevent callbacks (phase and total
 * timers, 100/102 timers), the origin connection's events (relay.c), and the downstream's calls
 * (exchange.h) — reads the clock once, does its work, and ends with ex_settle(). Handlers never
 * free anything: they record the outcome with ex_end() (or ex_fail()/ex_refuse(), which write
 * the response first), and loops stop when the outcome is no longer OPEN. ex_settle() is the
 * only place an exchange is logged (a switched one's line goes with its connections to the
 * tunnel, which writes it when it ends), its origin connection released, closed or handed over
 * (upgraded()), the exchange freed, and its owner told (done()). A downstream that goes first
 * calls exchange_cancel().
 *
 * PHASES (phase.h, rows in failure.h). ROUTE → (DNS → CONNECT → TLS, skipped for a pooled
 * connection) → SEND → FIRST_BYTE → READ → DONE. Each row names the timer that limits it and
 * its timeout message; one phase timer follows the exchange, armed with the current phase's
 * limit. Two limits are not the phase timer: send_timeout is the origin sock's write deadline
 * ("the origin took no bytes for that long"), and total_timeout has its own timer until the
 * response head. ex_fail() classifies (phase, cause) into a failure type, and writes the error
 * response (status not yet sent) or aborts the client connection (head already forwarded).
 *
 * BUFFERS. The request head is copied at start (ex->head); the request body moves from the
 * downstream's request input to the origin sock's output, and the response body from the origin
 * sock's input to the downstream's body sink, through body.c, without copying. Back-pressure:
 * nothing moves while its destination holds more than RELAY_HIGH; the origin is not read while
 * the client's output is full (bodies and 1xx alike), and the client is not read while the
 * origin's output is full (the downstream stops at its read limit).
 *
 * I/O (sock.h). Portico owns its socket I/O, plain and TLS, on libevent's public event and
 * evbuffer API: a read is one readv/SSL_read into reserved buffer space, a write is tried at
 * once, the read event stays registered. bufferevents cost an ioctl per read, a 4 KiB read cap
 * and a loop turn per write on this path; reaching into their internals (as sockio.c did) was
 * the alternative, and it broke with every libevent detail.
 *
 * ORIGINS (balance.h). Each attempt picks an origin it has not tried, and ends its pick with one
 * balancer_done (release_origin, at the latest in exchange_free), which keeps the in-flight
 * counts and passive health. ex_fail() is where a failed attempt moves to another origin
 * (`retries`, retry_elsewhere) or, for a stale pooled connection, is resent once.
 *
 * FILES. exchange.c: start, routing, phases and timers, fail/refuse, the access log, the exit.
 * relay.c: the origin side — connect, request head and body, response heads (1xx included) and
 * body, origin connection events. interim.c: the 1xx policy — 100 Continue, 102 heartbeats,
 * 103 Early Hints (configured, learned, relayed without repeats). fault_exec.c: injected faults
 * (issue 8), decided at routing and acting through the same phases, timers, ex_fail() and
 * responses as real events, so that a rehearsed failure is the real one on the wire. request.c:
 * the request checks before routing. route.c: which route a request takes. hints.c: the
 * learned-hint cache and Link parsing.
 */
#include "exchange_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "portico/acl.h"
#include "portico/balance.h"
#include "portico/climit.h"
#include "portico/config.h"
#include "portico/errpage.h"
#include "portico/generation.h"
#include "portico/hashkey.h"
#include "portico/sticky.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/mirror.h"
#include "portico/mtls.h"
#include "portico/realip.h"
#include "portico/recent.h"
#include "portico/request.h"
#include "portico/retry_budget.h"
#include "portico/retry_on.h"
#include "portico/rewrite.h"
#include "portico/route.h"
#include "portico/route_prefix.h"
#include "portico/sock.h"
#include "portico/upstream.h"
#include "portico/status.h"
#include "portico/tls.h"
#include "portico/tunnel.h"
#include "portico/util.h"


/* ---- small helpers ---- */

void ex_request_body_done(struct exchange *ex)
{
    if (ex->rate_from) /* its pace is no longer the client's to keep */
        deadline_clear(&ex->rate_timer);
    if (ex->total_after_body) {
        ex->total_after_body = false;
        ex_arm(&ex->total_timer, ex->up->timers_ms[TIMER_TOTAL]);
    }
}

void ex_arm(struct deadline *d, uint64_t ms)
{
    uint64_t now = event_now_us();
    deadline_set(d, now + ms * 1000, now);
}

bool ex_client_http11(const struct exchange *ex)
{
    return ex->ds.proto != PROTO_HTTP10;
}

void ex_note_interim(struct exchange *ex, int code)
{
    if (ex->interim_count < ARRAY_LEN(ex->interim_codes))
        ex->interim_codes[ex->interim_count++] = (uint16_t)code;
}

static uint64_t now_ms_of(const struct exchange *ex)
{
    return ex->now / 1000;
}

static struct balancer *balancer_of(const struct exchange *ex)
{
    return ex->loop->gen->balancers[ex->up_index];
}

/* ---- origins: the pick, its end, retries ---- */

/* Whether total_timeout ended the attempt while the origin alone was awaited (its name, its
 * connect, its handshake, its first response byte): the origin's failure, as that phase's own
 * timer would have made it. Taken for no verdict, a hung origin was never marked down when
 * total_timeout was the shorter (first_byte_timeout is 60 s by default). In send the client's
 * upload may be the slow side. */
static bool origin_awaited(const struct exchange *ex)
{
    switch (ex->fail_phase) {
    case PHASE_DNS:
    case PHASE_CONNECT:
    case PHASE_TLS:
    case PHASE_FIRST_BYTE:
        return !ex->response_byte;
    default:
        return false;
    }
}

/* Whether the origin closed or reset a connection of its own making, before any byte of an
 * answer: an origin that accepts and drops every connection (its process gone behind a port
 * still open, e.g. docker-proxy's) fails this way, as nginx counts it. A pooled connection's
 * close may be the keep-alive race instead, which says nothing of the origin. */
static bool dropped_fresh(const struct exchange *ex, enum failure_type f)
{
    return (f == FAIL_EMPTY_RESPONSE || f == FAIL_CONNECTION_RESET) && !ex->response_byte &&
           !ex->reused;
}

/* What an attempt that ended with failure f showed of its origin. */
static enum balance_result attempt_result(const struct exchange *ex, enum failure_type f)
{
    /* never judge an origin on a rehearsal, nor on a head a response_delay held too long */
    if (fault_exec_simulating(ex) || fault_exec_holding_head(ex))
        return BALANCE_NO_VERDICT;
    if (failure_is_network(f) || (f == FAIL_TOTAL_TIMEOUT && origin_awaited(ex)) ||
        dropped_fresh(ex, f))
        return BALANCE_FAILED;
    /* A status of fail_on relayed, or of retry_on (the last attempt's, or one not to be
     * retried), is the origin's failure as one retried would have been, never an answer that
     * starts the count over: the status is the result (no branch more a request: callgrind). */
    _Static_assert(BALANCE_ANSWERED == 0 && BALANCE_STATUS_MIN > BALANCE_NO_VERDICT,
                   "status_failed is the result");
    return ex->response_byte ? (enum balance_result)ex->status_failed : BALANCE_NO_VERDICT;
}

/* Ends the current attempt's claim on its origin: one balancer_done per pick. */
static void release_origin(struct exchange *ex, enum balance_result r)
{
    if (!ex->holds_origin)
        return;
    ex->holds_origin = false;
    balancer_done(balancer_of(ex), ex->origin, ex->probe, r, now_ms_of(ex));
}

/* balance = hash: the request's key into *key, false when it has none (hashkey.h). Read again
 * for a retry: the walk of the ring from the same key finds the next origin. */
static bool request_key(const struct exchange *ex, uint64_t *key)
{
    struct fault_addr client;
    struct hashkey_request r = {
        .client = ex->up->hash_key == HASH_KEY_CLIENT_ADDR && ex_client_addr(ex, &client) == 0
                      ? &client
                      : NULL,
        .path = ex->route_path,
        .path_len = ex->path_len,
        .host = ex->host,
        .host_len = ex->host_len,
        .fields = ex->req.fields,
        .nfields = ex->req.nfields,
    };
    return hashkey_of(ex->up, &r, key);
}

/* Takes origin o as a pick does. */
static void picked(struct exchange *ex, int o)
{
    ex->origin = o;
    ex->tried |= 1u << o;
    ex->holds_origin = true;
    if (ex->up->origins[o].backup)
        metrics_add(ex->loop->metrics, M_UPSTREAM_BACKUP_ATTEMPTS, 1);
}

/* sticky: the origin the request's cookie names, whatever the policy, when it may take the
 * attempt (balancer_pick_origin); at max_conns the request waits for it (HAProxy queues a
 * persistent request on its server: its session is there), and the queue hands it that
 * origin's slot only. Anything else is the policy's, and the response sets a new cookie
 * (relay.c). Returns 1 when picked, 0 to wait, -1 for the policy. Out of line: only sticky
 * upstreams call it. */
static __attribute__((noinline)) int pick_sticky(struct exchange *ex)
{
    if (ex->sticky == STICKY_NONE) { /* the first pick: the cookie is read once */
        int o = sticky_origin_of(ex->up, ex->req.fields, ex->req.nfields);
        ex->sticky_origin = (int8_t)o;
        ex->sticky = o >= 0 ? STICKY_HIT : STICKY_NEW;
    }
    ex->sticky_only = 0;
    if (ex->sticky_origin < 0)
        return -1;
    int o = balancer_pick_origin(balancer_of(ex), now_ms_of(ex), ex->sticky_origin, ex->tried,
                                 &ex->probe);
    if (o >= 0) {
        picked(ex, o);
        return 1;
    }
    if (o == BALANCE_PICK_FULL && ex->sticky == STICKY_HIT) {
        ex->sticky_only = ~balancer_listings(balancer_of(ex), 1u << ex->sticky_origin);
        return 0;
    }
    ex->sticky = STICKY_REDISPATCHED; /* down, failed, tried: the policy picks, a new cookie */
    return -1;
}

/* pick_origin for an upstream whose pick reads the request: its sticky cookie first, then
 * the policy, a hash by its key. Out of line: the common pick tests one flag for both. */
static __attribute__((noinline)) bool pick_by_request(struct exchange *ex)
{
    if (ex->up->sticky.on) {
        int sticky = pick_sticky(ex);
        if (sticky >= 0)
            return sticky > 0;
    }
    uint64_t key;
    int o = ex->up->balance == BALANCE_HASH && request_key(ex, &key)
                ? balancer_pick_hash(balancer_of(ex), now_ms_of(ex), key, ex->tried, &ex->probe)
                : balancer_pick(balancer_of(ex), now_ms_of(ex), trace_rng_next(&ex->loop->rng),
                                ex->tried, &ex->probe);
    if (o < 0)
        return false;
    picked(ex, o);
    return true;
}

/* Picks the origin of the next attempt among those not tried yet. false when none is usable
 * (or, for a sticky request whose origin is full, when it is to wait for it: pick_sticky). */
static bool pick_origin(struct exchange *ex)
{
    if (__builtin_expect(ex->up->pick_by_request, 0))
        return pick_by_request(ex);
    int o = balancer_pick(balancer_of(ex), now_ms_of(ex), trace_rng_next(&ex->loop->rng),
                          ex->tried, &ex->probe);
    if (o < 0)
        return false;
    picked(ex, o);
    return true;
}

/* Whether a failed attempt may go to another origin (`retries`), its body aside
 * (body_unsendable): nothing of the request reached this one (dns, connect, tls: any method),
 * or, with retry_sent, the request was sent but is idempotent, and no answer had begun. A TLS
 * failure may come after the request went out: an origin refusing a TLS 1.3 client certificate
 * says so only then. Our own shortages and total_timeout are not the origin's: no other origin
 * would do better, but for no free local port, which is per destination address and port:
 * another origin has ports of its own (its attempt counts no verdict against the first,
 * attempt_result). */
static bool may_retry(const struct exchange *ex, enum phase phase, enum cause cause)
{
    if (ex->retries >= ex->up->retries || ex->response_byte || ex->resp_state != RESP_HEAD ||
        cause == CAUSE_LOCAL || cause == CAUSE_TOTAL_TIMEOUT)
        return false;
    switch (phase) {
    case PHASE_DNS:
    case PHASE_CONNECT:
    case PHASE_TLS:
        return true;
    case PHASE_SEND:
    case PHASE_FIRST_BYTE: /* timeouts, closes and resets; a TLS record error is not retried */
        return ex->up->retry_sent && cause != CAUSE_PROTOCOL &&
               request_idempotent(ex->req.method_id);
    default:
        return false;
    }
}

/* Why the request body keeps a failed attempt from another origin, or NULL when it does not:
 * none of it was taken from the client yet (it waits there for the next origin), or all of it
 * was and the replay holds it whole (relay.c keeps one while a retry may want it), as HAProxy's
 * l7-retries and nginx's buffered bodies go again. Any other body went to the failed connection,
 * at least in part, and cannot be sent again whole. */
static const char *body_unsendable(const struct exchange *ex)
{
    if (ex->req_body.bytes == 0 && !ex->req_body.trailers_started)
        return NULL; /* (an empty chunked body's last chunk goes again: send_request) */
    if (!ex->replay) {
        bool over = ex->replay_over || (ex->info.framing == H1_BODY_LENGTH &&
                                        ex->info.content_length > REPLAY_MAX);
        if (!over)
            return "its body went out without a copy kept";
        /* a chunked body's copy counts its framing: 12 KB in 1-byte chunks is 72 KB of it */
        return ex->info.framing == H1_BODY_CHUNKED
                   ? "its body was streamed (over 64 KiB with its chunk framing)"
                   : "its body was streamed (over 64 KiB)";
    }
    if (ex->req_state != REQ_DONE || !ex->req_body.done)
        return "its body was still arriving";
    return NULL;
}
_Static_assert(REPLAY_MAX == 64 * 1024, "body_unsendable names REPLAY_MAX");

/* Whether an origin of the upstream was not tried yet (marked down or not); one listed again
 * with a tried one's host:port is tried (balancer_pick skips it). */
static bool origin_untried(const struct exchange *ex)
{
    uint32_t all = ex->up->norigins >= 32 ? UINT32_MAX : (1u << ex->up->norigins) - 1;
    return (all & ~balancer_listings(balancer_of(ex), ex->tried)) != 0;
}

/* A failure that another origin would have been tried for but for its body: the detail (the
 * access log's, the error page's) says so, e.g. "...; not retried: its body was streamed (over
 * 64 KiB)". */
static void note_not_retried(struct exchange *ex, const char *why)
{
    size_t len = strlen(ex->detail);
    if (origin_untried(ex))
        snprintf(ex->detail + len, sizeof(ex->detail) - len, "; not retried: %s", why);
}

/* retry_budget and retry_timeout (retry_budget.h): why no retry may start now, or NULL when
 * one may, its place in the budget then taken (retry_held, given back when the request ends or
 * by retry_unheld). A request on its second retry gives its place back and takes one again:
 * what is bounded is retries in flight, and its last attempt is over. The reason goes in buf;
 * the refusal is counted. Out of line: an upstream without either pays one test a retry. */
static __attribute__((noinline, cold)) const char *retry_refused(struct exchange *ex, char *buf,
                                                                 size_t size)
{
    const struct upstream_conf *up = ex->up;
    struct balancer *b = balancer_of(ex);
    /* no origin to go to (down, failing its check, full): no retry to bound, none refused; the
     * pick then fails as it would without the bounds */
    if (balancer_room(b, now_ms_of(ex), ex->tried) != BALANCE_ROOM_FREE)
        return NULL;
    if (up->retry_timeout_ms && ex->now - ex->t0 >= up->retry_timeout_ms * 1000) {
        balancer_retry_refused(b, RETRY_REFUSED_TIMEOUT);
        return retry_timeout_why(up->retry_timeout_ms, buf, size);
    }
    if (!up->retry_budget)
        return NULL;
    if (ex->retry_held) {
        ex->retry_held = false;
        balancer_retry_done(b);
    }
    struct retry_budget_use use;
    if (!balancer_retry_take(b, &use)) {
        balancer_retry_refused(b, RETRY_REFUSED_BUDGET);
        return retry_budget_why(&use, buf, size);
    }
    ex->retry_held = true;
    return NULL;
}

/* A place retry_refused took for a retry that found no origin to go to: given back at once. */
static void retry_unheld(struct exchange *ex)
{
    if (ex->retry_held) {
        ex->retry_held = false;
        balancer_retry_done(balancer_of(ex));
    }
}

/* Whether the upstream bounds its retries (retry_refused asks how). */
static bool retries_bounded(const struct upstream_conf *up)
{
    return up->retry_budget || up->retry_timeout_ms;
}

/* Moves the exchange to an origin it has not tried after a failed attempt: the failure counts
 * toward the failed origin's health and is logged (one error-log line per attempt given up; the
 * access log counts the attempts and names the last origin). false when no other origin is
 * usable: the failure then stands. */
static bool retry_elsewhere(struct exchange *ex, enum phase phase, enum cause cause)
{
    int from = ex->origin;
    enum failure_type f = failure_classify(phase, cause);
    if (__builtin_expect(retries_bounded(ex->up), 0) && origin_untried(ex)) {
        /* asked while this attempt is still in flight: it is one of the requests counted */
        char why[128];
        if (retry_refused(ex, why, sizeof(why))) {
            log_warn("request %s: attempt %u on %s failed (%s: %s); not retried: %s",
                     ex->request_id, ex->attempts, ex->up->origins[from].text, failure_name(f),
                     ex->detail, why);
            note_not_retried(ex, why);
            return false;
        }
    }
    enum balance_result r = attempt_result(ex, f);
    release_origin(ex, r); /* before the pick: a failure that marks it down counts already */
    if (!pick_origin(ex)) {
        ex->origin = from; /* the failure stands, against the origin it happened on */
        retry_unheld(ex);
        return false;
    }
    log_warn("request %s: attempt %u on %s failed (%s: %s); retrying on %s", ex->request_id,
             ex->attempts, ex->up->origins[from].text, failure_name(f), ex->detail,
             ex->up->origins[ex->origin].text);
    ex->retries++;
    metrics_add(ex->loop->metrics, M_UPSTREAM_NEXT_ORIGIN, 1);
    phase_next_attempt(&ex->pc, ex->now); /* its connect (or wait) still counts */
    relay_drop(ex);
    deadline_clear(&ex->phase_timer); /* the next connection's phases arm it again */
    ex->detail[0] = '\0';
    ex->tls_alert = 0;
    relay_connect(ex);
    return true;
}

/* Why an origin's final status of retry_on is relayed rather than retried, or NULL when the
 * request may go to another origin (one not tried yet must still be usable: ex_retry_on_status).
 * The request was sent and acted on: only an idempotent method goes again, as retry_sent lets
 * it, with its body held whole (body_unsendable). */
static const char *status_unretried(const struct exchange *ex)
{
    if (ex->retries >= ex->up->retries)
        return ex->up->retries ? "no retries left" : "retries = 0";
    if (!origin_untried(ex))
        return "every origin was tried";
    if (!request_idempotent(ex->req.method_id))
        return "its method is not idempotent";
    return body_unsendable(ex);
}

/* A status that counts toward max_fails, seen once per attempt (retried or relayed). */
static void status_counted(struct exchange *ex)
{
    if (ex->up->max_fails)
        metrics_add(ex->loop->metrics, M_UPSTREAM_STATUS_FAILURES, 1);
}

/* A retry_on status relayed: its attempt is the origin's failure (when it counts), and the
 * access log's detail says why it was not retried, e.g. "127.0.0.1:3000 answered 503; not
 * retried: its method is not idempotent". */
static void status_relayed(struct exchange *ex, int status, bool counts, const char *why)
{
    ex->status_failed = counts ? (uint16_t)status : 0; /* judged when the attempt ends */
    if (counts)
        status_counted(ex);
    snprintf(ex->detail, sizeof(ex->detail), "%s answered %d; not retried: %s",
             ex->up->origins[ex->origin].text, status, why);
}

/* A fail_on status alone: relayed as it is, its attempt the origin's failure, and the access
 * log's detail says it counted ("127.0.0.1:3000 answered 500; counted toward max_fails
 * (fail_on)"). */
static void status_failed_on(struct exchange *ex, int status)
{
    ex->status_failed = (uint16_t)status; /* judged when the attempt ends (attempt_result) */
    status_counted(ex);
    snprintf(ex->detail, sizeof(ex->detail), "%s answered %d; counted toward max_fails (fail_on)",
             ex->up->origins[ex->origin].text, status);
}

/* (out of line: an upstream without retry_on or fail_on pays only its test in read_heads) */
__attribute__((noinline, cold)) bool ex_retry_on_status(struct exchange *ex, int status)
{
    if (fault_exec_simulating(ex)) /* a rehearsal's status is not the origin's */
        return false;
    bool fails = retry_on_listed(ex->up->fail_on, status);
    if (!retry_on_listed(ex->up->retry_on, status)) {
        if (fails)
            status_failed_on(ex, status);
        return false;
    }
    /* in both lists: retried as retry_on says, counted once (403 and 404 are never in fail_on) */
    bool counts = fails || retry_on_counts(status);
    const char *why = status_unretried(ex);
    char bound[128];
    if (!why && retries_bounded(ex->up) && (why = retry_refused(ex, bound, sizeof(bound))))
        log_warn("request %s: attempt %u on %s answered %d; not retried: %s", ex->request_id,
                 ex->attempts, ex->up->origins[ex->origin].text, status, why);
    if (why) {
        status_relayed(ex, status, counts, why);
        return false;
    }
    /* The next origin is picked before this one is let go: when none is usable the head is
     * relayed from this one, still in flight (max_conns, least_conn) until its body ends. */
    int from = ex->origin;
    uint64_t probe = ex->probe;
    bool held = ex->holds_origin;
    if (!pick_origin(ex)) {
        ex->probe = probe;
        retry_unheld(ex);
        status_relayed(ex, status, counts, "no other origin is usable");
        return false;
    }
    /* The pick of the origin left ends (release_origin, its one balancer_done: a second call
     * site of its own cost every request 1-2 instructions, LTO inlining it no more), and the
     * next origin's is held. */
    int to = ex->origin;
    uint64_t to_probe = ex->probe;
    ex->origin = from;
    ex->probe = probe;
    ex->holds_origin = held;
    release_origin(ex, counts ? (enum balance_result)status : BALANCE_ANSWERED);
    if (counts)
        status_counted(ex);
    ex->origin = to;
    ex->probe = to_probe;
    ex->holds_origin = true;
    log_warn("request %s: attempt %u on %s answered %d; retrying on %s", ex->request_id,
             ex->attempts, ex->up->origins[from].text, status, ex->up->origins[ex->origin].text);
    ex->retries++;
    metrics_add(ex->loop->metrics, M_UPSTREAM_NEXT_ORIGIN, 1);
    metrics_add(ex->loop->metrics, M_UPSTREAM_STATUS_RETRIES, 1);
    phase_next_attempt(&ex->pc, ex->now);
    /* Closed, not drained to the pool: its body may be long or of unknown length, and waiting
     * for it would hold the retry; nginx closes the connection it moves away from too. */
    relay_drop(ex);
    deadline_clear(&ex->phase_timer); /* the next connection's phases arm it again */
    ex->response_byte = false;        /* the next origin's answer is awaited anew */
    relay_connect(ex);
    return true;
}

void ex_end(struct exchange *ex, enum outcome o)
{
    if (ex->outcome == OUTCOME_OPEN)
        ex->outcome = o;
}

bool ex_client_gone(struct exchange *ex)
{
    char why[sizeof(ex->detail)];
    if (!ex->ds.ops->gone || !ex->ds.ops->gone(ex->ds.ctx, why, sizeof(why)))
        return false;
    str_copy(ex->detail, sizeof(ex->detail), why);
    ex->status = HTTP_CLIENT_CLOSED_REQUEST;
    metrics_add(ex->loop->metrics, M_CLIENT_ABORTS, 1);
    ex_end(ex, OUTCOME_LEFT);
    return true;
}

/* Whether the downstream says its client failed before any byte of the answer left
 * (downstream_ops.sent_none): the answer then counts as never sent, 499. */
static bool ex_sent_none(struct exchange *ex)
{
    char why[sizeof(ex->detail)];
    if (!ex->ds.ops->sent_none || !ex->ds.ops->sent_none(ex->ds.ctx, why, sizeof(why)))
        return false;
    str_copy(ex->detail, sizeof(ex->detail), why);
    ex->status = HTTP_CLIENT_CLOSED_REQUEST;
    ex->resp_body.bytes = 0;
    ex->error_body_bytes = 0;
    return true;
}

/* ---- phases and their timers ---- */

void ex_phase(struct exchange *ex, enum phase p)
{
    phase_enter(&ex->pc, p, ex->now);
    deadline_clear(&ex->phase_timer);
    /* SEND has no phase timer: its limit is the origin sock's write deadline. */
    uint64_t limit = p == PHASE_SEND ? 0 : phase_limit_ms(ex->up->timers_ms, p);
    if (limit)
        ex_arm(&ex->phase_timer, limit);
}

void ex_phase_resume(struct exchange *ex, enum phase p)
{
    phase_resume(&ex->pc, p, ex->now);
    deadline_clear(&ex->phase_timer);
}

static const char *phase_subject_text(const struct exchange *ex, enum phase p)
{
    const struct origin_conf *o = ex->origin >= 0 ? &ex->up->origins[ex->origin] : NULL;
    if (phase_subject(p) == SUBJECT_HOST)
        return o ? o->host : ex->up->name;
    if (ex->uc)
        return upconn_addr(ex->uc);
    if (fault_exec_addr(ex)) /* a simulated failure names what upconn_addr would */
        return fault_exec_addr(ex);
    return o ? o->text : ex->up->name;
}

/* The detail of a first_byte_timeout after 1xx: it is the final response that did not come,
 * and the limit ran from the last 1xx that restarted it (interim_resets_timer: the first
 * MAX_INTERIM of them), not from the request. */
static void first_byte_detail(const struct exchange *ex, const char *subject, uint64_t limit,
                              char *buf, size_t size)
{
    unsigned restarted = ex->up->interim_resets_timer ? MIN(ex->interim_seen, MAX_INTERIM) : 0;
    if (!restarted)
        snprintf(buf, size, "no final response from %s within %llu ms of the request", subject,
                 (unsigned long long)limit);
    else if (restarted == ex->interim_seen)
        snprintf(buf, size, "no final response from %s within %llu ms after its last 1xx",
                 subject, (unsigned long long)limit);
    else
        snprintf(buf, size, "no final response from %s within %llu ms after its 1xx number %u",
                 subject, (unsigned long long)limit, restarted);
}

void ex_phase_timeout(struct exchange *ex)
{
    enum phase p = ex->pc.current;
    uint64_t limit = phase_limit_ms(ex->up->timers_ms, p);
    char detail[200];
    if (p == PHASE_QUEUE && ex->queue) {
        ex_queue_timeout(ex, limit);
        return;
    }
    /* The resolver answered the first round with a failure (SERVFAIL, which evdns reports as it
     * does an empty answer) and only the round asked again for every family is late: the
     * resolver's answer is the failure (dns_error), no timer of its own expired. */
    const char *dns_failure = p == PHASE_DNS && ex->uc ? upconn_dns_failure(ex->uc) : NULL;
    if (dns_failure) {
        ex_fail(ex, p, CAUSE_DNS_FAIL, 0, "resolving %s failed: %s", phase_subject_text(ex, p),
                dns_failure);
        return;
    }
    /* An origin name's next address gets its own connect_timeout. */
    if (p == PHASE_CONNECT && ex->uc && upconn_connect_next(ex->uc))
        return;
    if (p == PHASE_FIRST_BYTE && ex->interim_seen) {
        first_byte_detail(ex, phase_subject_text(ex, p), limit, detail, sizeof(detail));
    } else {
        size_t len = phase_timeout_detail(p, phase_subject_text(ex, p), limit, detail,
                                          sizeof(detail));
        if (p == PHASE_CONNECT && ex->uc)
            upconn_tried_note(ex->uc, detail, sizeof(detail), len);
        else if (p == PHASE_DNS && ex->uc)
            upconn_dns_timeout(ex->uc, true, detail, sizeof(detail), len);
    }
    ex_fail_text(ex, p, CAUSE_TIMEOUT, limit, detail);
}

static void phase_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    ex->now = event_now_us();
    if (!deadline_due(&ex->phase_timer, ex->now))
        return; /* early, or cleared: nothing happened */
    ex_phase_timeout(ex);
    ex_settle(ex);
}

/* The request body is still coming and none of it waits for the origin: the exchange waits on
 * the client (whose silence client_body_timeout limits), not on the origin. */
static bool waiting_on_client(const struct exchange *ex)
{
    return ex->req_state == REQ_BODY && (!ex->usock || sock_pending(ex->usock) == 0) &&
           evbuffer_get_length(ex->ds.ops->request_input(ex->ds.ctx)) == 0;
}

static void total_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    ex->now = event_now_us();
    if (!deadline_due(&ex->total_timer, ex->now))
        return; /* early, or cleared: nothing happened */
    uint64_t limit = ex->up->timers_ms[TIMER_TOTAL];
    if (ex->resp_state == RESP_HEAD && waiting_on_client(ex)) {
        /* A slow upload is not the origin's lateness: the origin gets its whole total_timeout
         * once the body is in (ex_request_body_done), as Envoy's route timeout starts then. */
        ex->total_after_body = true;
    } else if (ex->resp_state == RESP_HEAD)
        ex_fail(ex, ex->pc.current, CAUSE_TOTAL_TIMEOUT, limit,
                "no response head from %s within total_timeout %llu ms (in phase %s)",
                ex->origin >= 0 ? ex->up->origins[ex->origin].text : ex->up->name,
                (unsigned long long)limit, phase_name(ex->pc.current));
    ex_settle(ex);
}

/* ---- client_body_min_rate ---- */

/* When the body bytes in since rate_from are due: the grace, then a second per
 * client_body_min_rate bytes (Apache's mod_reqtimeout model). µs. */
static uint64_t rate_due(const struct exchange *ex)
{
    uint64_t got = ex->req_body.bytes - ex->rate_base;
    return ex->rate_from + ex->route->client_body_rate_grace_ms * 1000 +
           got * 1000000 / ex->route->client_body_min_rate;
}

/* The connection's bytes of request bodies so far (rate_shared's measure), 0 without any. */
static uint64_t shared_bytes(const struct exchange *ex, unsigned *bodies)
{
    *bodies = 1;
    return ex->ds.ops->request_shared ? ex->ds.ops->request_shared(ex->ds.ctx, bodies) : 0;
}

/* Whether the body is behind for want of anything the client could do: the origin side holds
 * bytes it has not taken (its socket's output, a splice pipe), or there is no origin to take
 * them now (a new connection being opened), or the downstream keeps the client's window shut
 * (HTTP/2), or the client's connection kept the pace for every body it carries and gave this
 * one's share to its siblings (HTTP/2: a client sends its streams in the order it likes). Then
 * the client is held back, not slow, as total_timeout's waiting_on_client says the other way. */
static bool body_held_back(const struct exchange *ex)
{
    if (ex->ds.ops->request_blocked && ex->ds.ops->request_blocked(ex->ds.ctx))
        return true;
    unsigned bodies;
    uint64_t shared = shared_bytes(ex, &bodies) - ex->rate_shared_base;
    uint64_t span = ex->now - ex->rate_from;
    if (bodies > 1 && span > 0 &&
        shared * 1000000 / span >= ex->route->client_body_min_rate * bodies)
        return true;
    return ex->usock ? sock_pending(ex->usock) > 0 : !fault_exec_request_sink(ex);
}

/* The measure starts (again) now, from the bytes in so far. */
static void rate_restart(struct exchange *ex)
{
    unsigned bodies;
    ex->rate_from = ex->now;
    ex->rate_base = ex->req_body.bytes;
    ex->rate_shared_base = shared_bytes(ex, &bodies);
}

/* The body came slower than client_body_min_rate: 408, or a response already started is cut
 * short, as at client_body_timeout; the origin connection, holding half a request, is closed. */
static void body_too_slow(struct exchange *ex)
{
    uint64_t span = ex->now - ex->rate_from, got = ex->req_body.bytes - ex->rate_base;
    char reason[sizeof(ex->detail)];
    snprintf(reason, sizeof(reason),
             "request body arrived at %llu B/s (%llu bytes in %llu.%llu s), below "
             "client_body_min_rate = %llu B/s",
             (unsigned long long)(span ? got * 1000000 / span : got), (unsigned long long)got,
             (unsigned long long)(span / 1000000), (unsigned long long)(span / 100000 % 10),
             (unsigned long long)ex->route->client_body_min_rate);
    char addr[PEER_ADDR_MAX];
    log_client("client %s: request %s: %s", peer_addr(ex->ds.peer, addr, sizeof(addr)),
               ex->request_id, reason);
    metrics_add(ex->loop->metrics, M_BODY_TOO_SLOW, 1);
    if (ex->ds.ops->request_stalled) /* its rest is not read, as after client_body_timeout */
        ex->ds.ops->request_stalled(ex->ds.ctx);
    ex->req_state = REQ_DONE; /* nothing more will be read */
    ex->client_stalled = true;
    ex->limit_ms = span / 1000; /* the time its bytes had: the deadline that came */
    ex_refuse(ex, HTTP_REQUEST_TIMEOUT, reason, true);
}

/* The body's deadline came up: moved to where its bytes so far put it, if later (the one
 * timer operation per deadline that came, none per byte); else the client is too slow, unless
 * the origin is what held it back, which starts the measure again from now. */
static void rate_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    ex->now = event_now_us();
    if (!deadline_due(&ex->rate_timer, ex->now))
        return; /* early, or cleared: nothing happened */
    if (ex->req_state == REQ_BODY && ex->outcome == OUTCOME_OPEN) {
        uint64_t due = rate_due(ex);
        if (due > ex->now) {
            deadline_set(&ex->rate_timer, due, ex->now);
        } else if (body_held_back(ex)) {
            rate_restart(ex);
            deadline_set(&ex->rate_timer, rate_due(ex), ex->now);
        } else {
            body_too_slow(ex);
        }
    }
    ex_settle(ex);
}

void ex_body_owed(struct exchange *ex)
{
    ex->ds.ops->request_wait(ex->ds.ctx, ex->cfg->client_body_timeout_ms);
    if (!ex->route->client_body_min_rate) /* (routed: the body goes to its origin or rule) */
        return;
    if (!ex->rate_from) {
        deadline_init(&ex->rate_timer, ex->loop->clock, rate_timeout_cb, ex);
        rate_restart(ex);
    }
    deadline_set(&ex->rate_timer, rate_due(ex), ex->now);
}

static void stop_timers(struct exchange *ex)
{
    if (ex->rate_from) /* else never set up (ex_body_owed) */
        deadline_stop(&ex->rate_timer);
    deadline_stop(&ex->phase_timer);
    deadline_stop(&ex->total_timer);
    deadline_stop(&ex->continue_timer);
    deadline_stop(&ex->processing_timer);
}

/* ---- responses Portico writes itself ---- */

static const struct h1_field *request_field(const struct exchange *ex, enum h1_field_id id)
{
    int h = h1_find(ex->req.fields, ex->req.nfields, id, 0);
    return h >= 0 ? &ex->req.fields[h] : NULL;
}

/* The body of Portico's own answer could not be added (out of memory; each addition goes whole
 * or not at all): its head went, saying a length that will never come, and a keep-alive client
 * would read the next response as the rest. So it is cut as an origin's short body is: logged
 * aborted, the connection closed (an HTTP/2 stream reset). */
void ex_own_body_lost(struct exchange *ex)
{
    str_copy(ex->detail, sizeof(ex->detail), "out of memory for the body of Portico's answer");
    metrics_add(ex->loop->metrics, M_ABORTED_AFTER_HEAD, 1);
    ex->close_client = true;
    ex_end(ex, OUTCOME_ABORTED);
}

/* Sends a response Portico composed through the downstream: head, then the whole body. */
static void send_own(struct exchange *ex, struct errpage *e)
{
    e->request_id = ex->request_id;
    e->request_id_clean = true; /* (pick_request_id) */
    e->fields = ex->req.fields;
    e->nfields = ex->req.nfields;
    e->head_only = ex->req.method_id == METHOD_HEAD;
    e->close = ex->close_client;
    e->http10 = !ex_client_http11(ex);
    struct errpage_out o;
    errpage_prepare(e, &o);
    struct h1_field fields[ARRAY_LEN(o.fields) + FAULT_MAX_LIST + 1];
    fault_exec_own_head(ex, &o, fields, ARRAY_LEN(fields)); /* Portico-Fault, a fault's answer */
    if (ex_client_gone(ex))
        return;
    ex->ds.ops->head(ex->ds.ctx, &o.head, &ex->sink);
    long body = fault_exec_own_body(ex, &o, ex->sink.out);
    if (body < 0)
        ex_own_body_lost(ex);
    ex->error_body_bytes = body > 0 ? (uint64_t)body : 0;
    /* it goes out with done(), once it is counted and logged; to a client not watched
     * (watch_later), just before: sent_none sends it to find a reset */
    ex->status = o.head.status;
    ex->resp_state = RESP_DONE;
}

/* OPTIONS or TRACE with Max-Forwards: 0 (RFC 9110 7.6.2): Portico is the final recipient and
 * answers itself: OPTIONS 200 with the methods it forwards in Allow (9.3.7); TRACE 405 (its
 * support is optional, 9.3.8): an echo would hand any client what the hops before Portico
 * added to the request (an origin-verify token, an internal key), the cross-site tracing that
 * nginx's 405 to every TRACE avoids. Its own answer, as an error page is: no Via. */
static void answer_final_recipient(struct exchange *ex)
{
    /* CONNECT is never forwarded; any other method token is, these are the ones it knows */
    static const char allow_all[] = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";
    static const char allow_no_trace[] = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";
    static const char why_not[] = "TRACE ends here (Max-Forwards: 0): Portico echoes no request\n";
    bool trace = ex->req.method_id == METHOD_TRACE;
    str_copy(ex->detail, sizeof(ex->detail),
             trace ? "Max-Forwards: 0: TRACE not echoed" : "Max-Forwards: 0: answered by Portico");
    ex->close_client |= !relay_discard_body(ex) || !ex->info.keep_alive;
    const char *date = http_date_now();
    struct h1_field fields[] = {
        {"Date", 4, date, strlen(date), H1_F_OTHER},
        {"Server", 6, "portico", 7, H1_F_OTHER},
        {"X-Request-Id", 12, ex->request_id, strlen(ex->request_id), H1_F_OTHER},
        {"Allow", 5, trace ? allow_no_trace : allow_all,
         trace ? sizeof(allow_no_trace) - 1 : sizeof(allow_all) - 1, H1_F_OTHER},
        {"Content-Type", 12, "text/plain; charset=utf-8", 25, H1_F_OTHER},
        /* as on every answer of Portico's with content (errpage.c); no browser sends TRACE, so
         * no script or stylesheet fetch meets it */
        {"X-Content-Type-Options", 22, "nosniff", 7, H1_F_OTHER},
    };
    size_t body = trace ? sizeof(why_not) - 1 : 0;
    /* OPTIONS has no content, so no Content-Type and no nosniff: the last two are left out */
    struct resp_head head = {.status = trace ? HTTP_METHOD_NOT_ALLOWED : HTTP_OK,
                             .fields = fields, .nfields = ARRAY_LEN(fields) - (trace ? 0 : 2),
                             .framing = H1_BODY_LENGTH, .content_length = body,
                             .close = ex->close_client};
    if (ex_client_gone(ex))
        return;
    ex->ds.ops->head(ex->ds.ctx, &head, &ex->sink);
    if (evbuffer_add(ex->sink.out, why_not, body) != 0) {
        ex_own_body_lost(ex);
        body = 0; /* none of it went: the access log says so (send_own's does too) */
    }
    ex->error_body_bytes = body;
    ex->status = head.status;
    ex->resp_state = RESP_DONE;
    ex_end(ex, OUTCOME_DONE);
}

void ex_refuse(struct exchange *ex, int status, const char *reason, bool close)
{
    if (ex->outcome != OUTCOME_OPEN)
        return;
    str_copy(ex->detail, sizeof(ex->detail), reason);
    relay_drop(ex);
    stop_timers(ex);
    if (ex->resp_state != RESP_HEAD) { /* the response started: it can only be cut short */
        /* counted as ex_fail counts its cuts: the log line says aborted, the metric too */
        metrics_add(ex->loop->metrics, M_ABORTED_AFTER_HEAD, 1);
        ex->close_client = true;
        ex_end(ex, OUTCOME_ABORTED);
        return;
    }
    /* A client that will not keep the connection is told so, as by ex_fail and the origin's
     * answers (it said keep-alive to HTTP/1.0, then closed). */
    ex->close_client |= close || !ex->info.keep_alive;
    struct errpage e = {.status = status, .failure = FAIL_NONE, .reason = reason,
                        .limit_ms = ex->limit_ms, .retry_after_s = ex->retry_after_s};
    send_own(ex, &e);
    ex_end(ex, OUTCOME_DONE);
}

/* Whether the request may go again on a fresh connection after its pooled one turned out to be
 * stale (stale_pooled, ex_resend_408): once, before any answer was forwarded, and
 *   - the request may go twice: its method is idempotent, or the origin closed before any byte
 *     of it arrived (upconn_request_unseen: an idle timeout that met the request; RFC 9110
 *     9.2.2 lets a request known never to have been applied go again, as HTTP/2's
 *     REFUSED_STREAM does), and
 *   - we can send it again: no body byte was taken from the client yet, or all that was taken
 *     is kept (replay, up to REPLAY_MAX). */
static bool stale_resendable(const struct exchange *ex)
{
    bool body_again = (ex->req_body.bytes == 0 && !ex->req_body.trailers_started) || ex->replay;
    return ex->uc && upconn_requests(ex->uc) > 1 && !ex->retried && ex->resp_state == RESP_HEAD &&
           body_again && (request_idempotent(ex->req.method_id) || upconn_request_unseen(ex->uc));
}

/* Whether a failure may be retried on a fresh connection: a pooled connection the origin closed
 * while idle, with no answer to this request (stale_resendable says when). */
static bool stale_pooled(const struct exchange *ex, enum phase phase, enum cause cause)
{
    return !ex->response_byte && (phase == PHASE_SEND || phase == PHASE_FIRST_BYTE) &&
           (cause == CAUSE_EOF || cause == CAUSE_RESET || cause == CAUSE_IO) &&
           stale_resendable(ex);
}

/* The request goes again, once, on a fresh connection to the same origin, outside `retries`. */
static void resend_fresh(struct exchange *ex)
{
    ex->retried = true;
    metrics_add(ex->loop->metrics, M_UPSTREAM_RETRIES, 1);
    phase_next_attempt(&ex->pc, ex->now);
    relay_drop(ex);
    ex->detail[0] = '\0';
    ex->tls_alert = 0;
    relay_connect(ex);
}

bool ex_resend_408(struct exchange *ex)
{
    if (ex->interim_seen || !stale_resendable(ex))
        return false;
    ex->response_byte = false; /* the 408 was no answer to this request */
    resend_fresh(ex);
    return true;
}

/* ex_fail once ex->detail is written. */
static void fail_detailed(struct exchange *ex, enum phase phase, enum cause cause,
                          uint64_t limit_ms)
{
    if (stale_pooled(ex, phase, cause)) {
        resend_fresh(ex);
        return;
    }
    /* a simulated failure is the exchange's: another origin would only meet it again */
    if (!fault_exec_simulating(ex) && may_retry(ex, phase, cause)) {
        const char *why = body_unsendable(ex);
        if (!why && retry_elsewhere(ex, phase, cause))
            return;
        if (why)
            note_not_retried(ex, why);
    }

    ex->failure = failure_classify(phase, cause);
    ex->fail_phase = phase;
    ex->cause = cause;
    ex->limit_ms = limit_ms;
    /* A failure found in a later phase than the clock's (the origin closed while the final head
     * was awaited after a 1xx: read) is where the timings say it happened, as it lasted 0. */
    if (phase > ex->pc.current && phase <= PHASE_READ)
        phase_enter(&ex->pc, phase, ex->now);
    phase_close(&ex->pc, ex->now);
    release_origin(ex, attempt_result(ex, ex->failure));
    relay_drop(ex);
    stop_timers(ex);

    if (ex->resp_state != RESP_HEAD) {
        /* The status is on the wire: cut the response short so the client sees it failed. */
        metrics_add(ex->loop->metrics, M_ABORTED_AFTER_HEAD, 1);
        ex->close_client = true;
        ex_end(ex, OUTCOME_ABORTED);
        return;
    }

    char timing[512];
    phase_server_timing(&ex->pc, ex->now, phase, cause, timing, sizeof(timing));
    struct errpage e = {
        .status = failure_status(ex->failure, ex->cfg->profile, ex->cfg->error_overrides),
        .failure = ex->failure,
        .phase = phase,
        .reason = ex->detail,
        .origin = ex->origin >= 0 ? ex->up->origins[ex->origin].text : NULL,
        .upstream = ex->up->name,
        .limit_ms = limit_ms,
        .elapsed_ms = (double)(ex->now - ex->t0) / 1000.0,
        .server_timing = timing,
        .page_dir = ex->cfg->error_page_dir,
        .tls_alert_name = ex->tls_alert > 0 ? tls_alert_name(ex->tls_alert - 1) : NULL,
        .tls_alert = (uint8_t)(ex->tls_alert - 1),
        .detail = ex->cfg->error_detail == ERROR_DETAIL_MINIMAL ? ERRPAGE_DETAIL_MINIMAL
                                                                : ERRPAGE_DETAIL_FULL,
    };
    /* The client connection survives only if its request was read to the end: a body the
     * client already sent is read now (it went to no origin, or to a failed one). */
    ex->close_client |= !relay_discard_body(ex) || !ex->info.keep_alive;
    send_own(ex, &e);
    ex_end(ex, OUTCOME_DONE);
}

void ex_fail(struct exchange *ex, enum phase phase, enum cause cause, uint64_t limit_ms,
             const char *fmt, ...)
{
    if (ex->outcome != OUTCOME_OPEN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ex->detail, sizeof(ex->detail), fmt, ap);
    va_end(ap);
    fail_detailed(ex, phase, cause, limit_ms);
}

void ex_fail_text(struct exchange *ex, enum phase phase, enum cause cause, uint64_t limit_ms,
                  const char *detail)
{
    if (ex->outcome != OUTCOME_OPEN)
        return;
    str_copy(ex->detail, sizeof(ex->detail), detail);
    fail_detailed(ex, phase, cause, limit_ms);
}

/* ---- the access log and the metrics ---- */

static const enum log_proto log_protos[] = {
    [PROTO_HTTP10] = LOG_PROTO_HTTP10,
    [PROTO_HTTP11] = LOG_PROTO_HTTP11,
    [PROTO_HTTP2] = LOG_PROTO_HTTP20,
};

/* The phase durations the log and the histograms report: the same phase list Server-Timing is
 * made from, and the whole exchange. */
static void exchange_timings(const struct exchange *ex, struct timings *t)
{
    struct phase_timing pt[PHASE_COUNT];
    size_t n = phase_timings(&ex->pc, ex->now, pt, PHASE_COUNT);
    *t = (struct timings){0};
    for (size_t i = 0; i < n; i++) {
        int slot = timing_of_phase(pt[i].phase);
        if (slot >= 0)
            timings_set(t, (enum timing_phase)slot, pt[i].us);
    }
    timings_set(t, TIMING_TOTAL, ex->now > ex->t0 ? ex->now - ex->t0 : 0);
}

/* Where the exchange ended: the failed phase, the phase a client left or stalled in, or done. */
static enum phase ended_in(const struct exchange *ex)
{
    if (ex->failure != FAIL_NONE)
        return ex->fail_phase;
    if (ex->route_refusal != ROUTE_ADMITTED)
        return PHASE_ROUTE; /* refused before an origin was asked, for its client's address or
                               pace */
    return ex->outcome == OUTCOME_OPEN || ex->outcome == OUTCOME_LEFT || ex->client_stalled
               ? ex->pc.current
               : PHASE_DONE;
}

/* portico_requests_total, the phase histograms and the status page's last minutes. */
static void count_record(struct loop *l, const struct access_record *r, int route, int upstream)
{
    metrics_request_done(l->metrics, &(struct metrics_sample){route, upstream, r->status,
                                                              r->failure, &r->timings});
    recent_record(l->recent,
                  &(struct recent_sample){r->time_ms, r->status, r->failure, r->phase,
                                          r->timings.us[TIMING_TOTAL], r->limit_ms, r->request_id,
                                          r->route, r->upstream, r->origin, r->detail, r->fault,
                                          r->aborted, r->tls_alert});
}

/* The names a record and the counts give the exchange's route, upstream, origin and detail. */
static const char *route_name(const struct exchange *ex)
{
    return ex->route ? ex->route->name : NULL;
}

static const char *upstream_name(const struct exchange *ex)
{
    return ex->up ? ex->up->name : NULL;
}

static const char *origin_text(const struct exchange *ex)
{
    return ex->origin >= 0 && ex->up ? ex->up->origins[ex->origin].text : NULL;
}

static const char *detail_of(const struct exchange *ex)
{
    return ex->detail[0] ? ex->detail : NULL;
}

/* count_record's two samples straight from the exchange, for one no line is written for (the
 * access log off, no report, no tunnel, no HTTP/2 stream keeping the record): the whole record,
 * 328 bytes, was zeroed and filled for them alone (callgrind: ~150 instructions a request). */
static void count_unlogged(struct exchange *ex, const struct timings *t, int upstream)
{
    metrics_request_done(ex->loop->metrics, &(struct metrics_sample){ex->route_index, upstream,
                                                                     ex->status, ex->failure, t});
    recent_record(ex->loop->recent,
                  &(struct recent_sample){wall_ms(), ex->status, ex->failure, ended_in(ex),
                                          t->us[TIMING_TOTAL], ex->limit_ms, ex->request_id,
                                          route_name(ex), upstream_name(ex), origin_text(ex),
                                          detail_of(ex), fault_exec_name(ex),
                                          ex->outcome == OUTCOME_ABORTED, ex->tls_alert});
}

void exchange_log_record(struct loop *l, const struct access_record *r, int route, int upstream)
{
    count_record(l, r, route, upstream);
    if (log_enabled())
        log_buffer_append(l->log, r);
}

/* Whether the exchange ended with a whole answer before its request body all came (an error
 * answer, an origin's early one, a 408, a 413 mid-body): its downstream reads and drops the
 * rest, or closes or resets on it (portico_request_body_discards_total), after the access line
 * said so (body_unread). Not req_state: a 408 or a refused body set REQ_DONE ("nothing more
 * will be read") with a rest still coming, and an HTTP/2 body whose END_STREAM came (req_eof)
 * had all come, however much of it the exchange had taken. */
static bool body_unread(const struct exchange *ex)
{
    /* (a rest to drop, discard_left, is of a Content-Length body: none without one; the
     * bodiless, most requests, asked first) */
    return ex->req_body.in != H1_BODY_NONE && (ex->discard_left || !ex->req_body.done) &&
           !ex->req_eof && ex->outcome == OUTCOME_DONE;
}

/* Counts and logs the exchange. A switched one's access line is kept in to->record for its
 * tunnel, which writes it when it ends (nginx writes a WebSocket's line when it closes), with
 * the bytes that crossed it and its life; its counts and its place in /status are the 101's.
 * A downstream with keep_log (an HTTP/2 stream) has the record instead, counts included.
 * `unread`: body_unread(ex), asked once by ex_settle. */
static void log_exchange(struct exchange *ex, struct tunnel_origin *to, bool unread)
{
    struct timings t;
    exchange_timings(ex, &t);
    /* What only a line shows is looked up for one: with the access log off (and no report)
     * the record is counted, and formatting the client's address cost every request. */
    bool line = log_enabled() || ex->ds.ops->report;
    int up = ex->up ? ex->up_index : -1;
    if (!line && !to->conn && !ex->ds.ops->keep_log) {
        count_unlogged(ex, &t, up);
        return;
    }
    const struct h1_field *ua = line ? request_field(ex, H1_F_USER_AGENT) : NULL;
    const struct h1_field *xff = line ? request_field(ex, H1_F_X_FORWARDED_FOR) : NULL;
    char client[PEER_ADDR_MAX], peer[PEER_ADDR_MAX];
    struct access_record r = {
        .time_ms = wall_ms(),
        .request_id = ex->request_id,
        .trace_id = ex->trace.trace_id,
        .client = !line       ? NULL
                  : ex->real_ip ? realip_text(&ex->client_addr, client, sizeof(client))
                                : peer_addr(ex->ds.peer, client, sizeof(client)),
        .peer = line && ex->real_ip ? peer_addr(ex->ds.peer, peer, sizeof(peer)) : NULL,
        .method = ex->req.method,
        .method_len = ex->req.method_len,
        .host = ex->host,
        .host_len = ex->host_len,
        .target = ex->req.target,
        .target_len = ex->req.target_len,
        .proto = log_protos[ex->ds.proto],
        .status = ex->status,
        .upstream_status = ex->upstream_status,
        .failure = ex->failure,
        .phase = ended_in(ex),
        .tls_alert = ex->tls_alert,
        .route = route_name(ex),
        .upstream = upstream_name(ex),
        .origin = origin_text(ex),
        .attempts = ex->attempts,
        .sticky = ex->sticky ? sticky_outcome_name(ex->sticky) : NULL,
        .bytes_in = ex->req_body.bytes,
        .bytes_out = ex->resp_body.bytes + ex->error_body_bytes,
        .interim_codes = ex->interim_codes,
        .ninterim = ex->interim_count,
        .fault = fault_exec_name(ex),
        .user_agent = ua ? ua->value : NULL,
        .user_agent_len = ua ? ua->value_len : 0,
        .forwarded_for = xff ? xff->value : NULL,
        .forwarded_for_len = xff ? xff->value_len : 0,
        .client_subject = ex->ds.peer->cert ? ex->ds.peer->cert->subject : NULL,
        .timings = t,
        .limit_ms = ex->limit_ms,
        .detail = detail_of(ex),
        .aborted = ex->outcome == OUTCOME_ABORTED,
        .reused = ex->reused,
        .retried = ex->retried,
        .body_unread = unread,
    };
    if (ex->ds.ops->report)
        ex->ds.ops->report(ex->ds.ctx, &r);
    if (to->conn) {
        count_record(ex->loop, &r, ex->route_index, up);
        if (log_enabled() && (to->record = log_record_copy(&r)) == NULL)
            log_buffer_append(ex->loop->log, &r); /* out of memory: written as it is */
        return; /* else the tunnel writes it */
    }
    if (ex->ds.ops->keep_log)
        ex->ds.ops->keep_log(ex->ds.ctx, &r, ex->route_index, up);
    else
        exchange_log_record(ex->loop, &r, ex->route_index, up);
}

/* ---- the one exit ---- */

/* An exchange is ~1.7 KiB, past malloc's per-thread cache: each request paid a trip through
 * the arena to allocate it and another to free it. The loop keeps ended exchanges' allocations
 * for the next ones (up to LOOP_SPARE_EXCHANGES per worker thread, never shared: one was not
 * enough once several connections had a request in flight); a larger head still gets its own.
 * Under ASan a kept block is poisoned, so a use after the exchange ended is still caught. */
#define SPARE_EXCHANGE_MAX (16 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SPARE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(PORTICO_MEMCHECK)
/* For valgrind passes (-DPORTICO_MEMCHECK, never the shipped build: each hint costs a request
 * a few instructions): a kept block is no access, and undefined again when reused, so memcheck
 * sees a field exchange_start leaves unzeroed read before it is written on every request, not
 * only on a loop's first ones (a kept block holds the last exchange's values, all defined). */
#include <valgrind/memcheck.h>
#define SPARE_POISON(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define SPARE_UNPOISON(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#else
#define SPARE_POISON(p, n) ((void)(p), (void)(n))
#define SPARE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Room for size bytes: the latest kept allocation large enough, else a new one.
 * *got: the allocation's real size. */
static struct exchange *exchange_alloc(struct loop *l, size_t size, size_t *got)
{
    for (unsigned i = l->spare_exchanges; i-- > 0;) {
        if (l->spare_exchange[i].size >= size) {
            struct exchange *ex = l->spare_exchange[i].p;
            *got = l->spare_exchange[i].size;
            l->spare_exchange[i] = l->spare_exchange[--l->spare_exchanges];
            SPARE_UNPOISON(ex, *got);
            return ex;
        }
    }
    *got = size;
    return malloc(size);
}

void exchange_spare_free(struct loop *l)
{
    fault_exec_spare_free(l);
    while (l->spare_exchanges > 0) {
        unsigned i = --l->spare_exchanges;
        SPARE_UNPOISON(l->spare_exchange[i].p, l->spare_exchange[i].size);
        free(l->spare_exchange[i].p);
    }
}

/* Keeps ex's allocation for a next exchange unless it is too large or the loop keeps enough. */
static void exchange_release(struct loop *l, struct exchange *ex)
{
    size_t size = ex->alloc_size;
    if (size > SPARE_EXCHANGE_MAX || l->spare_exchanges == LOOP_SPARE_EXCHANGES) {
        free(ex);
        return;
    }
    SPARE_POISON(ex, size);
    l->spare_exchange[l->spare_exchanges].p = ex;
    l->spare_exchange[l->spare_exchanges].size = size;
    l->spare_exchanges++;
}

static void exchange_free(struct exchange *ex)
{
    stop_timers(ex);
    if (__builtin_expect(ex->pc.current == PHASE_QUEUE, 0) && ex->queue) /* left, waiting */
        ex_queue_leave(ex);
    release_origin(ex, attempt_result(ex, ex->failure));
    if (__builtin_expect(ex->retry_held, 0)) /* retry_budget: its retry is over */
        balancer_retry_done(balancer_of(ex));
    relay_drop(ex);
    fault_exec_end(ex);
    if (ex->replay)
        evbuffer_free(ex->replay);
    if (ex->mirror) /* its request never went whole: nothing is mirrored */
        mirror_copy_free(ex->loop, ex->mirror);
    free(ex->hints);
    if (ex->rewritten) /* (a route with rewrite_prefix: free(NULL) is a call) */
        free(ex->rewritten);
    exchange_release(ex->loop, ex);
}

void ex_settle(struct exchange *ex)
{
    if (ex->outcome == OUTCOME_OPEN)
        return;
    phase_close(&ex->pc, ex->now);
    stop_timers(ex);
    /* 101 relayed: the origin connection goes to the downstream with the client's, as a tunnel,
     * and the pick's in-flight place with it (its verdict was given at the 101's head) */
    struct tunnel_origin to = {.index = -1};
    if (ex->resp_state == RESP_SWITCHED && ex->outcome == OUTCOME_DONE && ex->uc) {
        to = (struct tunnel_origin){.conn = ex->uc, .idle_ms = ex->up->tunnel_timeout_ms};
        ex->uc = NULL;
        ex->usock = NULL;
        if (ex->holds_origin) {
            to.balancer = balancer_of(ex);
            to.index = ex->origin;
            ex->holds_origin = false;
        }
        metrics_add(ex->loop->metrics, M_TUNNELS, 1);
    } else if (ex->uc && relay_reusable(ex)) {
        /* After a response with no body (HEAD, 204, 304), stray bytes are most likely: its
         * connection settles even for the same client's next request (upstream_pool.c). */
        bool bodiless = ex->resp_info.framing == H1_BODY_NONE;
        upconn_release(ex->uc, bodiless ? 0 : ex->ds.peer->conn_id, ex->now);
        ex->uc = NULL;
        ex->usock = NULL;
    }
    relay_drop(ex); /* before the log line: once it is written, the origin side is settled */
    if (ex->outcome == OUTCOME_DONE && !to.conn && ex_sent_none(ex)) {
        metrics_add(ex->loop->metrics, M_CLIENT_ABORTS, 1);
        ex->outcome = OUTCOME_LEFT;
    }
    bool unread = body_unread(ex);
    log_exchange(ex, &to, unread);
    static const enum exchange_end ends[] = {
        [OUTCOME_ABORTED] = END_ABORT, [OUTCOME_DROPPED] = END_DROP, [OUTCOME_RESET] = END_RESET,
        [OUTCOME_LEFT] = END_DROP, /* nothing went: the connection just closes */
    };
    /* A rest of the body not to be read closes the connection, whatever else was said (a 408,
     * a refused body: REQ_DONE); one the downstream was to drop (discard_left) was not read to
     * its end either, should it close: no quiet close, which unread bytes turn into a reset. */
    enum exchange_end end = ex->outcome != OUTCOME_DONE       ? ends[ex->outcome]
                            : ex->req_state != REQ_DONE ||
                                      (unread && (!ex->discard_left || ex->client_closes))
                                                              ? END_CLOSE
                            : ex->client_closes               ? END_CLOSE_ASKED
                            : ex->close_client                ? END_CLOSE
                                                              : END_KEEP;
    struct downstream ds = ex->ds;
    uint64_t discard = !unread ? 0 : ex->discard_left ? ex->discard_left : DISCARD_UNREAD;
    char request_id[sizeof(ex->request_id)];
    memcpy(request_id, ex->request_id, sizeof(request_id));
    exchange_free(ex);
    if (to.conn) {
        to.request_id = request_id;
        ds.ops->upgraded(ds.ctx, &to);
        return;
    }
    if (discard && ds.ops->request_discard)
        ds.ops->request_discard(ds.ctx, discard);
    ds.ops->done(ds.ctx, end);
}

/* ---- start ---- */

/* exchange_request_id's work, inlined into exchange_start: called there, it cost 18
 * instructions a request more (callgrind). */
static inline void pick_request_id(struct loop *l, const struct h1_field *fields, size_t nfields,
                                   char *buf, size_t size)
{
    int f = h1_find(fields, nfields, H1_F_X_REQUEST_ID, 0);
    if (f >= 0 && fields[f].value_len < size &&
        request_id_valid(fields[f].value, fields[f].value_len)) {
        memcpy(buf, fields[f].value, fields[f].value_len);
        buf[fields[f].value_len] = '\0';
        return;
    }
    loop_request_id(l, buf, size);
}

void exchange_request_id(struct loop *l, const struct h1_field *fields, size_t nfields,
                         char *buf, size_t size)
{
    pick_request_id(l, fields, nfields, buf, size);
}

bool exchange_real_client(struct loop *l, const struct peer *peer, const struct h1_field *fields,
                          size_t nfields, bool *from_trusted, struct fault_addr *client)
{
    const struct config *cfg = l->cfg;
    struct fault_addr addr;
    bool trusted = fault_addr_parse(peer->ip, &addr) == 0 &&
                   fault_cidr_contains(cfg->trusted_proxies, cfg->ntrusted_proxies, &addr);
    if (from_trusted)
        *from_trusted = trusted;
    if (!trusted || cfg->real_ip == REAL_IP_OFF)
        return false; /* anyone else's word on its address is not taken */
    switch (realip_find(fields, nfields, cfg->real_ip, cfg->trusted_proxies,
                        cfg->ntrusted_proxies, client)) {
    case REALIP_FOUND:
        return true;
    case REALIP_INVALID: {
        char text[PEER_ADDR_MAX];
        metrics_add(l->metrics, M_REAL_IP_INVALID, 1);
        log_client("client %s: real_ip: the %s element naming the client is not an address: "
                   "the peer is taken for the client", peer_addr(peer, text, sizeof(text)),
                   real_ip_name(cfg->real_ip));
        break;
    }
    case REALIP_NONE: /* the proxy's own request (a health check), or one it did not mark */
        break;
    }
    return false;
}

/* Whether the peer is one of trusted_proxies, and then (real_ip) the client it names in the
 * field, if it names one. Out of line: without trusted_proxies (the default) a request pays one
 * compare for it, and with them the peer's address is parsed once, not again per attempt. */
__attribute__((noinline)) static void judge_peer(struct exchange *ex)
{
    ex->real_ip = exchange_real_client(ex->loop, ex->ds.peer, ex->req.fields, ex->req.nfields,
                                       &ex->from_trusted, &ex->client_addr);
}

struct exchange *exchange_start(struct loop *l, const struct downstream *ds, const char *head,
                                size_t head_len, const struct h1_request *req,
                                uint64_t received_us)
{
    _Static_assert(offsetof(struct exchange, req) + sizeof(struct h1_request) ==
                       sizeof(struct exchange), "req is the last member of struct exchange");
    /* One allocation: the exchange, the request's fields, then a copy of its head (made before
     * the owner's buffer is drained; the parsed spans are rebased onto the copy). Only the part
     * before phase_timer is zeroed: the rest is written here or before it is read, the fields
     * are copied over and the rest is the head. */
    size_t fields_end = offsetof(struct exchange, req.fields) + req->nfields * sizeof(req->fields[0]);
    size_t alloc_size;
    struct exchange *ex = exchange_alloc(l, fields_end + head_len, &alloc_size);
    if (!ex)
        return NULL;
    memset(ex, 0, offsetof(struct exchange, phase_timer));
    ex->detail[0] = '\0';
    ex->alloc_size = alloc_size;
    ex->head = (char *)ex + fields_end;
    memcpy(ex->head, head, head_len);
    ex->head_len = head_len;
    memcpy(&ex->req, req, offsetof(struct h1_request, fields) + req->nfields * sizeof(req->fields[0]));
    ptrdiff_t delta = ex->head - head;
    ex->req.method += delta;
    ex->req.target += delta;
    for (size_t i = 0; i < ex->req.nfields; i++) {
        ex->req.fields[i].name += delta;
        ex->req.fields[i].value += delta;
    }
    ex->loop = l;
    ex->cfg = l->cfg;
    ex->ds = *ds;
    ex->t0 = received_us;
    ex->now = event_now_us();
    ex->origin = -1;
    ex->route_index = -1;
    if (ex->cfg->ntrusted_proxies > 0) /* real_ip needs them (config.c) */
        judge_peer(ex);
    phase_enter(&ex->pc, PHASE_ROUTE, ex->now);
    deadline_init(&ex->phase_timer, l->clock, phase_timeout_cb, ex);
    deadline_init(&ex->total_timer, l->clock, total_timeout_cb, ex);
    deadline_init(&ex->continue_timer, l->clock, interim_continue_cb, ex);
    deadline_init(&ex->processing_timer, l->clock, interim_processing_cb, ex);
    pick_request_id(l, ex->req.fields, ex->req.nfields, ex->request_id, sizeof(ex->request_id));
    /* One traceparent is a trace to join; none, or several, start a new one. */
    int tp = h1_find(ex->req.fields, ex->req.nfields, H1_F_TRACEPARENT, 0);
    bool one = tp >= 0 && h1_find(ex->req.fields, ex->req.nfields, H1_F_TRACEPARENT,
                                  (size_t)tp + 1) < 0;
    ex->trace_source = trace_propagate(&l->rng, one ? ex->req.fields[tp].value : NULL,
                                       one ? ex->req.fields[tp].value_len : 0, &ex->trace);
    metrics_add(l->metrics, M_REQUESTS, 1);
    return ex;
}

/* allow/deny: whether the route's rules admit the request's client (the address real_ip or
 * the PROXY header gave; one without a numeric address, which no TCP listener has, only `all`
 * names); else 403, and false.
 * Before client_rate: a client refused here spends no rate token. Out of line: a route without
 * rules pays one compare for it. */
__attribute__((noinline)) static bool admitted_by_address(struct exchange *ex)
{
    const struct route_conf *r = ex->route;
    struct fault_addr addr;
    bool known = ex_client_addr(ex, &addr) == 0;
    int at;
    if (acl_admits(r->acl, known ? &addr : NULL, &at))
        return true;
    char who[PEER_ADDR_MAX], rule[80], reason[sizeof(ex->detail)];
    if (known)
        realip_text(&addr, who, sizeof(who));
    else
        snprintf(who, sizeof(who), "without an address");
    const struct acl_rule *last = &r->acl->rule[r->acl->n - 1];
    int n = snprintf(reason, sizeof(reason), "client %s denied", who);
    if (at >= 0)
        snprintf(reason + n, sizeof(reason) - (size_t)n, " by route %s (%s, line %d)", r->name,
                 acl_rule_text(&r->acl->rule[at], rule, sizeof(rule)), r->acl->rule[at].line);
    else
        snprintf(reason + n, sizeof(reason) - (size_t)n, " by route %s (matches no rule; after "
                 "%s, line %d, the rest are denied)", r->name,
                 acl_rule_text(last, rule, sizeof(rule)), last->line);
    log_client("request %s: %s", ex->request_id, reason);
    /* error_detail = minimal: the route's name and its rules are the configuration's, not the
     * client's (the access line keeps the route in its route field, the error log the rest) */
    if (ex->cfg->error_detail == ERROR_DETAIL_MINIMAL)
        reason[n] = '\0';
    metrics_denied(ex->loop->metrics, ex->route_index);
    ex->route_refusal = ROUTE_DENIED;
    ex_refuse(ex, HTTP_FORBIDDEN, reason, !relay_discard_body(ex));
    return false;
}

/* client_rate: whether the request's client (the address real_ip or the PROXY header gave, IPv6
 * by its /64) is within its route's rate; else 429 with Retry-After, and false. Out of line: a
 * route without a rate pays one compare for it. */
__attribute__((noinline)) static bool within_client_rate(struct exchange *ex)
{
    const struct route_conf *r = ex->route;
    struct climit *t = ex->loop->gen->climit;
    struct fault_addr addr;
    struct climit_key key;
    if (!t || ex_client_addr(ex, &addr) != 0)
        return true; /* no numeric address to count it by (no TCP listener lacks one) */
    climit_key_addr(&addr, ex->route_index, &key);
    uint64_t wait_ns = climit_take(t, &key, r->client_rate.interval_ns, r->client_rate_burst,
                                   ex->now * 1000);
    if (!wait_ns)
        return true;
    char who[PEER_ADDR_MAX], reason[sizeof(ex->detail)];
    /* error_detail = minimal: the route's name is the configuration's, not the client's (the
     * access line keeps it in its route field, the error log here) */
    bool named = ex->cfg->error_detail != ERROR_DETAIL_MINIMAL;
    climit_key_text(&key, who, sizeof(who));
    int n = snprintf(reason, sizeof(reason), "client %s over client_rate = %llu/%c", who,
                     (unsigned long long)r->client_rate.count, r->client_rate.unit);
    snprintf(reason + n, sizeof(reason) - (size_t)n, " on route %s (burst %llu)", r->name,
             (unsigned long long)r->client_rate_burst);
    log_client("request %s: %s", ex->request_id, reason);
    if (!named)
        snprintf(reason + n, sizeof(reason) - (size_t)n, " (burst %llu)",
                 (unsigned long long)r->client_rate_burst);
    metrics_rate_limited(ex->loop->metrics, ex->route_index);
    ex->route_refusal = ROUTE_RATE_LIMITED;
    ex->retry_after_s = (uint16_t)((wait_ns + 999999999) / 1000000000); /* rounded up */
    ex_refuse(ex, HTTP_TOO_MANY_REQUESTS, reason, !relay_discard_body(ex));
    return false;
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
    ex->target = ex->uri = t.path;
    ex->target_len = ex->uri_len = t.path_len;
    ex->route_path = t.route;
    ex->path_len = t.route_len;
    return 0;
}

/* Whether an Upgrade field of the request names HTTP/2, with or without a version: h2c
 * (deprecated by RFC 9113 3.1), h2 (never valid there) or HTTP/2.0. HTTP/2 is per hop: passed
 * on, an origin taking it would talk HTTP/2 to the client through a tunnel, past Portico's
 * routes and limits (h2c smuggling). */
static bool upgrade_to_http2(const struct h1_request *req)
{
    for (size_t i = 0; i < req->nfields; i++) {
        if (req->fields[i].id != H1_F_UPGRADE)
            continue;
        size_t pos = 0, len;
        const char *p;
        while (h1_list_next(req->fields[i].value, req->fields[i].value_len, &pos, &p, &len)) {
            /* a protocol is a name and an optional "/version" (RFC 9110 7.8): h2c/1 is h2c */
            const char *slash = memchr(p, '/', len);
            size_t name = slash ? (size_t)(slash - p) : len;
            const char *version = slash ? slash + 1 : "";
            size_t vlen = slash ? len - name - 1 : 0;
            if (span_ieq(p, name, "h2c") || span_ieq(p, name, "h2") ||
                (span_ieq(p, name, "http") &&
                 (span_ieq(version, vlen, "2") || span_ieq(version, vlen, "2.0"))))
                return true;
        }
    }
    return false;
}

/* The checks before routing. false when the request was refused. */
static bool admissible(struct exchange *ex)
{
    const struct config *cfg = ex->cfg;
    struct h1_error err;
    const char *why = NULL;
    if (h1_request_info(&ex->req, &ex->info, &err) != 0) {
        ex->req_state = REQ_DONE;
        ex_refuse(ex, err.status, err.reason, true);
        return false;
    }
    ex->client_closes = !ex->info.keep_alive;
    enum h1_framing in = ex->info.framing;
    if (in == H1_BODY_NONE && ex->ds.body_until_eof) {
        /* A body that ends when the downstream says so (HTTP/2 without content-length): read
         * like a close-delimited one, sent to the origin chunked. */
        in = H1_BODY_CLOSE;
        ex->info.framing = H1_BODY_CHUNKED;
    }
    ex->req_state = in == H1_BODY_NONE ? REQ_DONE : REQ_BODY;
    body_init(&ex->req_body, in, ex->info.content_length, ex->info.framing == H1_BODY_CHUNKED,
              cfg->max_header_size);
    if (ex->info.host) {
        ex->host = ex->info.host->value;
        ex->host_len = ex->info.host->value_len;
    }
    int refused = parse_target(ex, &why);
    if (refused) {
        ex_refuse(ex, refused, why, true);
        return false;
    }
    /* An upgrade the origin may take (101, WebSocket): HTTP/1.1 without a body (Content-Length: 0
     * is none), from a downstream that can hand its connection over (an HTTP/2 stream only its
     * WebSocket, RFC 8441, whose Upgrade is Portico's), not to HTTP/2. The Upgrade field is
     * looked for by its id first: most requests have none, and then no Connection list is
     * walked by name ("Connection: close" cost ~270). */
    ex->upgrade = (ex->ds.proto == PROTO_HTTP11 || ex->ds.websocket) && ex->ds.ops->upgraded &&
                  !h1_info_has_body(&ex->info) &&
                  h1_find(ex->req.fields, ex->req.nfields, H1_F_UPGRADE, 0) >= 0 &&
                  h1_connection_has(ex->req.fields, ex->req.nfields, "upgrade") &&
                  !upgrade_to_http2(&ex->req);
    refused = request_refusal(&ex->req, &ex->info, cfg->max_body_size, &why);
    if (refused) {
        /* a body too large is not read: the connection cannot go on */
        ex_refuse(ex, refused, why,
                  ex->req_state != REQ_DONE || refused == HTTP_CONTENT_TOO_LARGE);
        return false;
    }
    return true;
}

/* Whether the request body may still be on its way: all of a Content-Length body already read
 * with the head is not; a chunked one is taken to be (finding its end is the relay's job). A
 * client that sent Expect: 100-continue waits for the 100, which carries the ACK. */
static bool request_body_owed(struct exchange *ex)
{
    if (ex->req_state != REQ_BODY || ex->info.expect_continue)
        return false;
    if (ex->info.framing != H1_BODY_LENGTH)
        return true;
    return evbuffer_get_length(ex->ds.ops->request_input(ex->ds.ctx)) < ex->info.content_length;
}

/* The route's rewrite_prefix applied to the target to forward. false when the request was
 * refused (the rewritten path would hold a dot segment) or failed (no memory). */
static bool rewrite(struct exchange *ex)
{
    const char *why = NULL;
    int rc = rewrite_target(ex->target, ex->target_len, ex->route_path, ex->path_len,
                            ex->route->prefix, ex->route->rewrite_prefix,
                            ex->route->rewrite_prefix_len, &ex->rewritten, &ex->target_len, &why);
    if (rc == 0) {
        if (ex->rewritten)
            ex->target = ex->rewritten;
        else
            ex->target_len = 1; /* "*" as it was */
        return true;
    }
    if (rc < 0) {
        ex->target_len = 0;
        ex_fail(ex, PHASE_ROUTE, CAUSE_LOCAL, 0, "out of memory");
        return false;
    }
    ex_refuse(ex, rc, why, !relay_discard_body(ex));
    return false;
}

static void run(struct exchange *ex)
{
    if (!admissible(ex))
        return;
    if (ex->ds.ops->request_owed && request_body_owed(ex))
        ex->ds.ops->request_owed(ex->ds.ctx);
    const struct config *cfg = ex->cfg;
    ex->path_plain = route_plain_len(ex->route_path, ex->path_len);
    const struct route_request rq = {ex->req.method_id, ex->req.method, ex->req.method_len,
                                     ex->req.fields, ex->req.nfields};
    ex->route = route_match_plain(cfg, route_scheme_of(ex->ds.peer->tls), ex->host,
                                  ex->host_len, ex->route_path, ex->path_len, ex->path_plain,
                                  &rq);
    if (!ex->route) {
        ex_refuse(ex, HTTP_NOT_FOUND, "no route matches this host and path",
                  !relay_discard_body(ex));
        return;
    }
    ex->route_index = (int)(ex->route - cfg->routes);
    if (ex->route->acl && !admitted_by_address(ex))
        return;
    if (ex->route->client_rate.count && !within_client_rate(ex))
        return;
    if (ex->route->answer) { /* return: the route answers itself, no upstream (route_return.c) */
        route_return_answer(ex);
        return;
    }
    ex->up_index = ex->route->upstream;
    ex->up = &cfg->upstreams[ex->up_index];
    if (ex->route->rewrite_prefix && !rewrite(ex)) /* (ex_fail needs the upstream) */
        return;
    /* (the method compare here: request_max_forwards is no call for other methods) */
    _Static_assert(REQUEST_MAX_FORWARDS_CAP <= INT_MAX, "max_forwards is an int");
    ex->max_forwards = ex->req.method_id == METHOD_OPTIONS || ex->req.method_id == METHOD_TRACE
                           ? (int)request_max_forwards(&ex->req)
                           : -1;
    if (ex->max_forwards == 0) { /* for a host and path Portico serves: others get 404 */
        answer_final_recipient(ex);
        return;
    }

    if (!fault_exec_decide(ex)) /* a malformed Portico-Fault header was refused */
        return;

    /* Interim responses Portico makes, before the origin is even contacted. */
    interim_early_hints(ex);
    interim_expect(ex);
    interim_heartbeats(ex);
    if (ex->up->timers_ms[TIMER_TOTAL])
        ex_arm(&ex->total_timer, ex->up->timers_ms[TIMER_TOTAL]);
    if (fault_exec_start(ex)) /* a fault acts first; it goes on to the origin itself */
        return;
    ex_to_origin(ex);
}

void ex_origin_answered(struct exchange *ex)
{
    /* never judge a rehearsal's origin; a retry_on status is judged when the attempt ends */
    if (ex->holds_origin && !fault_exec_simulating(ex) && !ex->status_failed) {
        balancer_answered(balancer_of(ex), ex->origin);
        ex->probe = 0; /* its job is done: its end may come after another probe began */
    }
}

/* The 503's detail when the admin API took some origins out: how many of each state, so that
 * an operator who drained the last one reads why (cold: only a failed pick). */
static __attribute__((noinline, cold)) void fail_admin_out(struct exchange *ex, uint32_t out)
{
    const struct balancer *b = balancer_of(ex);
    unsigned counts[ORIGIN_ADMIN_COUNT] = {0}, weight0 = 0, n = 0;
    for (int o = 0; o < ex->up->norigins; o++) {
        if (!(out & (1u << o)))
            continue;
        enum origin_admin a = balancer_origin_admin(b, o);
        counts[a] += a != ORIGIN_ADMIN_READY;
        weight0 += a == ORIGIN_ADMIN_READY;
        n++;
    }
    ex_fail(ex, PHASE_ROUTE, CAUSE_NO_ORIGIN, 0,
            "no origin of upstream %s takes requests: %u of %d out by the admin API (%u in "
            "maintenance, %u draining, %u at weight 0)%s",
            ex->up->name, n, ex->up->norigins, counts[ORIGIN_ADMIN_MAINT],
            counts[ORIGIN_ADMIN_DRAIN], weight0,
            (int)n < ex->up->norigins ? ", the others marked down" : "");
}

void ex_fail_no_origin(struct exchange *ex)
{
    uint32_t out = balancer_admin_out(balancer_of(ex));
    if (out) {
        fail_admin_out(ex, out);
        return;
    }
    ex_fail(ex, PHASE_ROUTE, CAUSE_NO_ORIGIN, 0, "every origin of upstream %s is marked down",
            ex->up->name);
}

bool ex_pick_again(struct exchange *ex)
{
    return pick_origin(ex);
}

/* No origin was picked: the queue's (every usable one at max_conns), or no_healthy_origin. Out
 * of line: the pick's path stays as it was without max_conns. */
static __attribute__((noinline, cold)) void no_origin_now(struct exchange *ex)
{
    if (!balancer_limited(balancer_of(ex)) || !ex_queue_enter(ex))
        ex_fail_no_origin(ex);
}

bool ex_pick_or_queue(struct exchange *ex)
{
    if (pick_origin(ex))
        return true;
    no_origin_now(ex);
    return false;
}

void ex_to_origin(struct exchange *ex)
{
    if (__builtin_expect(pick_origin(ex), 1))
        relay_connect(ex);
    else
        no_origin_now(ex);
}

/* ---- entry points from the downstream ---- */

void exchange_run(struct exchange *ex)
{
    ex->now = event_now_us();
    run(ex);
    ex_settle(ex);
}

void exchange_request_readable(struct exchange *ex)
{
    ex->now = event_now_us();
    relay_request_body(ex);
    ex_settle(ex);
}

void exchange_request_eof(struct exchange *ex)
{
    ex->now = event_now_us();
    ex->req_eof = true;
    relay_request_body(ex);
    ex_settle(ex);
}

bool exchange_request_whole(struct exchange *ex)
{
    if (ex->upgrade || ex->discard_left)
        return false;
    return ex->req_state == REQ_DONE ||
           body_rest_in(&ex->req_body, ex->ds.ops->request_input(ex->ds.ctx));
}

bool exchange_answers_half_close(struct exchange *ex)
{
    return ex->cfg->client_half_close == HALF_CLOSE_ANSWER && exchange_request_whole(ex);
}

void exchange_drained(struct exchange *ex)
{
    ex->now = event_now_us();
    relay_resume(ex);
    ex_settle(ex);
}

void exchange_read_max(struct exchange *ex, size_t max)
{
    ex->ds.resp_read_max = max;
    relay_read_limit(ex);
}

void exchange_request_timeout(struct exchange *ex)
{
    ex->now = event_now_us();
    ex->req_state = REQ_DONE; /* nothing more will be read */
    ex->client_stalled = true;
    ex->limit_ms = ex->cfg->client_body_timeout_ms; /* the timer that expired, as ex_fail's */
    ex_refuse(ex, HTTP_REQUEST_TIMEOUT, "request body stalled longer than client_body_timeout",
              true);
    ex_settle(ex);
}

void exchange_cancel(struct exchange *ex, enum http_status status, const char *why)
{
    ex->now = event_now_us();
    if (ex->outcome == OUTCOME_OPEN) {
        /* The client left before the response ended (nginx's 499), or its request broke its
         * own framing: nothing more is sent either way. */
        bool unsent = ex->status && ex_sent_none(ex); /* a head was queued: did any go? */
        if (!ex->detail[0])
            snprintf(ex->detail, sizeof(ex->detail), "%s", why);
        if (!ex->status)
            ex->status = status;
        phase_close(&ex->pc, ex->now);
        if (status == HTTP_CLIENT_CLOSED_REQUEST || unsent)
            metrics_add(ex->loop->metrics, M_CLIENT_ABORTS, 1);
        log_exchange(ex, &(struct tunnel_origin){.index = -1}, false); /* no tunnel, no rest */
    }
    exchange_free(ex);
}
