/*
 * relay.c — the origin side of an exchange: connection, request head and body, response heads
 * (1xx included) and body, and the origin connection's events. See exchange.c for the whole.
 *
 * Every function here is a handler: it records what happened (ex_fail, ex_end) and returns;
 * the origin's events (upconn_events, the sock callback) are entry points that end with
 * ex_settle().
 */
#include "exchange_int.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "portico/config.h"
#include "portico/headers.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/generation.h"
#include "portico/mirror.h"
#include "portico/mtls.h"
#include "portico/request.h"
#include "portico/sock.h"
#include "portico/upstream.h"
#include "portico/status.h"
#include "portico/sticky.h"
#include "portico/tls.h"
#include "portico/util.h"
#include "portico/wskey.h"

/* The origin's input holds at most this much: a whole response head, or RELAY_HIGH of body.
 * A downstream that asks for less (resp_read_max: each read can land in its buffer past its
 * mark) has heads read in that much too, and the body bytes behind them: max_header_size
 * only for a head that did not fit (1,000 HTTP/2 streams each read 16 KiB with their head). */
static size_t up_read_high(const struct exchange *ex)
{
    size_t head = (size_t)ex->cfg->max_header_size + 1;
    if (!ex->ds.resp_read_max)
        return MAX(RELAY_HIGH, head);
    size_t body = MIN(ex->ds.resp_read_max, RELAY_HIGH);
    return ex->resp_state == RESP_HEAD && ex->head_grown ? MAX(body, head) : body;
}

void relay_read_limit(struct exchange *ex)
{
    if (ex->usock)
        sock_set_read_limit(ex->usock, up_read_high(ex));
}

void relay_drop(struct exchange *ex)
{
    if (ex->uc) {
        upconn_abort(ex->uc);
        ex->uc = NULL;
        ex->usock = NULL;
    }
}

bool relay_reusable(const struct exchange *ex)
{
    return ex->outcome == OUTCOME_DONE && ex->failure == FAIL_NONE && ex->usock &&
           ex->resp_state == RESP_DONE && ex->resp_body.done && ex->resp_info.keep_alive &&
           ex->req_state == REQ_DONE && ex->req_body.done && sock_pending(ex->usock) == 0 &&
           !ex->answered_early;
}

/* The request is entirely in the kernel: head, whole body, nothing left in our output. */
static bool request_sent(const struct exchange *ex)
{
    return ex->req_state == REQ_DONE && ex->req_body.done && ex->usock &&
           sock_pending(ex->usock) == 0;
}

/* Whether the latest 1xx restarts first_byte_timeout: interim_resets_timer, and never past
 * MAX_INTERIM of them, so that an origin cannot hold an exchange forever with a stream of 1xx. */
static bool interim_restarts_timer(const struct exchange *ex)
{
    return ex->up->interim_resets_timer && ex->interim_seen <= MAX_INTERIM;
}

/* Waits for the first byte of a (next) response head with the first_byte timer; after a 1xx
 * the deadline is kept unless the 1xx restarts it. */
static void wait_first_byte(struct exchange *ex, bool after_interim)
{
    /* A 1xx only interrupts the wait; an attempt's request just sent starts it anew (a resend
     * after a dead pooled connection or retry_sent must not measure from the failed attempt's
     * wait, which overlaps its own connect and send). */
    if (after_interim)
        ex_phase_resume(ex, PHASE_FIRST_BYTE);
    else
        ex_phase(ex, PHASE_FIRST_BYTE);
    uint64_t limit = phase_limit_ms(ex->up->timers_ms, PHASE_FIRST_BYTE);
    ex->first_byte_deadline =
        phase_first_byte_deadline(after_interim ? ex->first_byte_deadline : 0, ex->now, limit,
                                  interim_restarts_timer(ex));
    deadline_set(&ex->phase_timer, ex->first_byte_deadline, ex->now);
}

/* A 1xx came while the first byte is awaited: first_byte_timeout restarts or keeps its deadline
 * (wait_first_byte). false when a kept deadline has passed. Checked at each 1xx, not left to the
 * timer: an origin that keeps its socket readable with 1xx has its reads run first in every loop
 * turn, and each one re-arms the phase timer for the head it starts. */
static bool interim_in_time(struct exchange *ex)
{
    uint64_t limit = phase_limit_ms(ex->up->timers_ms, PHASE_FIRST_BYTE);
    bool restarts = interim_restarts_timer(ex);
    ex->first_byte_deadline =
        phase_first_byte_deadline(ex->first_byte_deadline, ex->now, limit, restarts);
    return restarts || ex->now < ex->first_byte_deadline;
}

void relay_request_sent(struct exchange *ex)
{
    if (ex->pc.current != PHASE_SEND || !request_sent(ex))
        return;
    phase_close(&ex->pc, ex->now);
    wait_first_byte(ex, false);
}

static void flush_origin(struct exchange *ex)
{
    sock_flush(ex->usock); /* a failure comes back as SOCK_ERROR */
}

/* ---- the request body ---- */

/* The body went wrong on the client's side (bad framing, too large): refuse, or cut short. */
static void request_body_refused(struct exchange *ex, int status, const char *why)
{
    ex->req_state = REQ_DONE; /* nothing more will be read from this client */
    ex_refuse(ex, status, why, true);
}

/* body_move or body_eof refused the request body: the client's framing (400), or our memory
 * for what goes to the origin (500 internal_error, never counted against the origin; the
 * origin connection, its body cut, closes). */
static void request_body_failed(struct exchange *ex)
{
    if (ex->req_body.out_of_memory) {
        ex->req_state = REQ_DONE;
        ex_fail(ex, PHASE_SEND, CAUSE_LOCAL, 0, "out of memory");
    } else {
        request_body_refused(ex, HTTP_BAD_REQUEST, ex->req_body.error);
    }
}

/* Whether the rest of body may go socket to socket (`splice`): the downstream can splice
 * (can_splice: it has the op), the origin connection is plain, the body qualifies. */
static bool splice_allowed(const struct exchange *ex, bool can_splice,
                           const struct body_relay *body)
{
    return ex->cfg->splice && can_splice && !ex->usock->ssl && body_spliceable(body);
}

/* The request is whole in our hands, and went to the origin first: its copy goes to the
 * route's mirrors, which the exchange forgets (each is its own owner from now). Not inlined:
 * the callers stay as small as they were for the routes that mirror nothing. */
static __attribute__((noinline)) void send_mirror(struct exchange *ex)
{
    struct mirror_copy *c = ex->mirror;
    ex->mirror = NULL;
    mirror_copy_send(ex->loop, c);
}

/* All of the request body is in: wait for the response. */
static void request_body_done(struct exchange *ex)
{
    ex->req_state = REQ_DONE;
    ex_request_body_done(ex);
    ex->ds.ops->request_wait(ex->ds.ctx, 0); /* waiting for the response is fine */
    if (!ex->usock) /* read for a simulated failure (fault_exec.c) */
        fault_exec_request_read(ex);
    else
        relay_request_sent(ex);
    if (ex->mirror) /* only a body's request gets here: the others pay nothing */
        send_mirror(ex);
}

/* The request will not go again (or cannot): its body's copy goes. */
static void drop_replay(struct exchange *ex)
{
    if (ex->replay) {
        evbuffer_free(ex->replay);
        ex->replay = NULL;
    }
}

/* Body bytes (framed) were appended to out from offset `from`: the replay keeps a copy while it
 * may still be sent again whole (stale_pooled, a retry on another origin), and lets go past
 * REPLAY_MAX. */
static void keep_replay(struct exchange *ex, struct evbuffer *out, size_t from)
{
    size_t n = evbuffer_get_length(out) - from, have = evbuffer_get_length(ex->replay);
    struct evbuffer_iovec v;
    struct evbuffer_ptr at;
    if (n == 0)
        return;
    if (have + n > REPLAY_MAX) {
        ex->replay_over = true; /* the reason a retry is refused (exchange.c) */
        drop_replay(ex);
        return;
    }
    if (evbuffer_reserve_space(ex->replay, (ev_ssize_t)n, &v, 1) != 1 ||
        evbuffer_ptr_set(out, &at, from, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(out, &at, v.iov_base, n) != (ev_ssize_t)n) {
        drop_replay(ex);
        return;
    }
    v.iov_len = n;
    evbuffer_commit_space(ex->replay, &v, 1);
}

/* The rest of a request body goes from the client's socket to the origin's (sock_splice);
 * what came with the head was copied first. */
static void splice_request_body(struct exchange *ex)
{
    long n = ex->ds.ops->request_splice(ex->ds.ctx, ex->usock, (size_t)ex->req_body.left);
    if (n < 0) {
        ex->req_splice = false; /* nothing was taken: the next bytes are read and copied */
        return;
    }
    if (n > 0) /* bytes that went past us cannot be sent again */
        drop_replay(ex);
    body_spliced(&ex->req_body, (uint64_t)n);
    metrics_add(ex->loop->metrics, M_SPLICED_BYTES, (uint64_t)n);
    if (ex->req_body.done)
        request_body_done(ex);
    /* else the client's bytes or the origin's drain bring us back */
}

void relay_request_body(struct exchange *ex)
{
    /* no origin: a simulated failure may read the body as if one took it (fault_exec.c) */
    struct evbuffer *out = ex->usock ? ex->usock->out : fault_exec_request_sink(ex);
    if (ex->req_state != REQ_BODY || !out || ex->outcome != OUTCOME_OPEN)
        return;
    struct evbuffer *in = ex->ds.ops->request_input(ex->ds.ctx);
    for (;;) {
        if (ex->req_splice && evbuffer_get_length(in) == 0) {
            splice_request_body(ex);
            return;
        }
        size_t before_in = evbuffer_get_length(in), before_out = evbuffer_get_length(out);
        if (body_move(&ex->req_body, in, out, RELAY_HIGH) != 0) {
            request_body_failed(ex);
            return;
        }
        /* body_size counts announced chunk sizes: the chunk that takes the body over the limit
         * is refused before any of it reaches the origin (the head too, when that is the first
         * one); earlier chunks went on, and the origin, closed on, never sees a last chunk */
        if (ex->req_body.bytes > ex->cfg->max_body_size ||
            (ex->req_body.in == H1_BODY_CHUNKED &&
             ex->req_body.chunked.body_size > ex->cfg->max_body_size)) {
            request_body_refused(ex, HTTP_CONTENT_TOO_LARGE,
                                 "request body larger than max_body_size");
            return;
        }
        /* The downstream's end of the body (HTTP/2 END_STREAM), once its input is all taken. */
        if (ex->req_eof && !ex->req_body.done && evbuffer_get_length(in) == 0 &&
            body_eof(&ex->req_body, out) != 0) {
            request_body_failed(ex);
            return;
        }
        /* (after body_eof: the last chunk it wrote goes again too; before, a resend of a body
         * without a length from an HTTP/2 client lacked it, and the origin waited for it) */
        if (ex->replay && ex->usock)
            keep_replay(ex, out, before_out);
        if (ex->mirror && ex->usock)
            mirror_copy_body(ex->mirror, out, before_out);
        if (ex->usock)
            flush_origin(ex);
        else
            evbuffer_drain(out, evbuffer_get_length(out)); /* nothing keeps a simulated body */
        /* Told after the write: what the origin's socket took is no longer held (HTTP/2 gives
         * it back to the stream's window then); a drain (SOCK_DRAINED) is told as well. */
        size_t queued = evbuffer_get_length(out);
        if (evbuffer_get_length(in) != before_in || queued != ex->req_queued) {
            ex->req_queued = queued;
            ex->ds.ops->request_taken(ex->ds.ctx, queued);
        }
        if (ex->req_body.done)
            break;
        if (evbuffer_get_length(out) > RELAY_HIGH)
            return; /* the origin's drain brings us back */
        if (ex->req_splice && evbuffer_get_length(in) == 0)
            continue; /* what was read went: the rest is spliced */
        if (evbuffer_get_length(in) == 0 ||
            (evbuffer_get_length(in) == before_in && evbuffer_get_length(out) == before_out))
            return; /* the origin's drain or more client bytes bring us back */
    }
    request_body_done(ex);
}

/* The exchange is answered by Portico before the request body was all read (the origin failed,
 * no route): what the client already sent of it is read and dropped, so that the connection can
 * serve the next request (nginx discards such a body too). A Content-Length rest still coming,
 * up to DISCARD_MAX, is the downstream's to drop after the answer; any other rest would be parsed
 * as the next request, so the connection closes then (a client waiting for 100 Continue too:
 * it may never send it). */
bool relay_discard_body(struct exchange *ex)
{
    if (ex->req_state == REQ_DONE)
        return true;
    /* (a body being spliced: its rest is read into the input again once the exchange ends) */
    struct evbuffer *in = ex->ds.ops->request_input(ex->ds.ctx);
    struct evbuffer *sink = evbuffer_new();
    if (!sink)
        return false;
    size_t before = evbuffer_get_length(in);
    int rc = body_move(&ex->req_body, in, sink, SIZE_MAX);
    if (rc == 0 && !ex->req_body.done && ex->req_eof && evbuffer_get_length(in) == 0)
        rc = body_eof(&ex->req_body, sink); /* HTTP/2: the stream's end is the body's */
    evbuffer_free(sink);
    if (evbuffer_get_length(in) != before) { /* dropped: none of it waits for an origin */
        ex->req_queued = 0;
        ex->ds.ops->request_taken(ex->ds.ctx, 0);
    }
    /* (the rest must be on its way: not from a client that asked 100-continue and got none,
     * which may answer our answer by not sending it, and go on with its next request) */
    if (rc == 0 && !ex->req_body.done && ex->req_state == REQ_BODY &&
        ex->req_body.in == H1_BODY_LENGTH && ex->req_body.left <= DISCARD_MAX &&
        (!ex->info.expect_continue || ex->sent_100) && ex->ds.ops->request_discard) {
        ex->discard_left = ex->req_body.left;
        ex->req_state = REQ_DONE;
        return true;
    }
    if (rc != 0 || !ex->req_body.done)
        return false;
    ex->req_state = REQ_DONE;
    return true;
}

/* ---- sending the request ---- */

/* Whether a retry on another origin may still want the request body sent again (may_retry in
 * exchange.c): a turn of `retries` left, and another origin, for a request that retry_sent or
 * retry_on (an origin's status) retries after it went out (an idempotent one), or to a TLS
 * upstream, whose refusal of a TLS 1.3 client certificate comes after the request went. */
static bool replay_wanted_elsewhere(const struct exchange *ex)
{
    return ex->retries < ex->up->retries && ex->up->norigins > 1 &&
           (((ex->up->retry_sent || ex->up->retry_on) && request_idempotent(ex->req.method_id)) ||
            ex->up->tls);
}

/* Whether the connection just taken keeps a copy of the request body (replay): a pooled one,
 * should the origin turn out to have closed it before the request arrived (stale_pooled), and
 * any while a retry on another origin may want it. */
static bool replay_wanted(const struct exchange *ex)
{
    return ex->reused || replay_wanted_elsewhere(ex);
}

/* The replay goes out again ahead of the rest of the body; it stays, copied, for a later resend
 * that may want it, or else goes itself. 0, or -1 when out of memory. */
static int resend_replay(struct exchange *ex)
{
    struct evbuffer *out = ex->usock->out;
    if (!replay_wanted(ex)) {
        int rc = evbuffer_add_buffer(out, ex->replay);
        drop_replay(ex);
        return rc;
    }
    size_t n = evbuffer_get_length(ex->replay);
    if (n == 0)
        return 0;
    const unsigned char *p = evbuffer_pullup(ex->replay, -1); /* at most REPLAY_MAX */
    return p && evbuffer_add(out, p, n) == 0 ? 0 : -1;
}

/* The route mirrors: the copy of this request for its mirrors, decided once (mirror.h). Its
 * body streams past a copy when it is an upgrade's or a CONNECT's: never mirrored. Not inlined:
 * send_request stays as it was for the routes that mirror nothing (callgrind). */
static __attribute__((noinline)) void make_mirror(struct exchange *ex,
                                                  const struct fwd_request *fwd)
{
    ex->mirror_made = true;
    ex->mirror = mirror_copy_new(ex->loop, ex->route, ex->route_index, &ex->req, fwd,
                                 ex->upgrade || ex->req.method_id == METHOD_CONNECT);
    /* an empty chunked body already read whole: its last chunk is written below, not relayed */
    if (ex->mirror && ex->req_state == REQ_DONE && ex->req_body.done &&
        ex->info.framing == H1_BODY_CHUNKED) {
        struct evbuffer *last = evbuffer_new();
        if (last && evbuffer_add(last, "0\r\n\r\n", 5) == 0)
            mirror_copy_body(ex->mirror, last, 0);
        if (last)
            evbuffer_free(last);
    }
}

/* A sticky upstream's response: Set-Cookie for the origin that answered unless the request
 * brought its cookie (HAProxy's `insert indirect`), with Cache-Control: private unless the
 * response's fields so far (`sent`: the origin's after the route's rules, as the client gets them)
 * keep it from shared caches already (`nocache`: a cached copy would pin everyone it is served
 * to on this origin). Returns the fields added to out (at most STICKY_FIELDS). */
#define STICKY_FIELDS 2
static __attribute__((noinline)) size_t sticky_fields(struct exchange *ex,
                                                      const struct h1_field *sent, size_t nsent,
                                                      struct h1_field *out, char *buf)
{
    /* what the cookie did, once the origin that answered is known (a 502 after it is not
     * counted: the origins' answers are) */
    balancer_sticky_count(ex->loop->gen->balancers[ex->up_index], ex->sticky);
    if (ex->sticky_origin >= 0 && sticky_same(ex->up, ex->sticky_origin, ex->origin))
        return 0;
    size_t n = 0;
    out[n++] = (struct h1_field){.name = "Set-Cookie", .name_len = 10, .value = buf,
                                 .value_len = sticky_set_cookie(ex->up, ex->origin, buf,
                                                                STICKY_SET_COOKIE_MAX),
                                 .id = H1_F_SET_COOKIE};
    if (sticky_needs_private(sent, nsent))
        out[n++] = (struct h1_field){.name = "Cache-Control", .name_len = 13,
                                     .value = "private", .value_len = 7};
    return n;
}

static void send_request(struct exchange *ex)
{
    const struct h1_info *info = &ex->info;
    char traceparent[TRACEPARENT_LEN + 1], client[PEER_ADDR_MAX];
    trace_format(&ex->trace, traceparent, sizeof(traceparent));
    struct fwd_request fwd = {
        .target = ex->target,
        .target_len = ex->target_len,
        .client_ip = ex->ds.peer->ip,
        .client_addr = ex->route->request_rules ? ex_client_text(ex, client, sizeof(client)) : NULL,
        .client_tls = ex->ds.peer->tls,
        .trusted_proxy = ex->from_trusted,
        .request_id = ex->request_id,
        .client_host = ex->host,
        .client_host_len = ex->host_len,
        .client_target = ex->uri,
        .client_target_len = ex->uri_len,
        /* without a body there is nothing to wait for: an origin that took Expect at its word
         * would wait for a body that never comes before answering (nginx never sends it) */
        .keep_expect = ex->info.expect_continue && ex->route->expect == EXPECT_RELAY &&
                       ex_client_http11(ex) && h1_info_has_body(info),
        .framing = info->framing,
        .content_length = info->content_length,
        .traceparent = traceparent,
        .drop_tracestate = ex->trace_source == TRACE_STARTED,
        .upgrade = ex->upgrade,
        .via = hdr_via_of(ex->ds.proto),
        .client_cert = ex->ds.peer->cert ? ex->ds.peer->cert->cert : NULL,
        .client_cert_chain = ex->ds.peer->cert ? ex->ds.peer->cert->chain : NULL,
        .client_cert_verify = ex->ds.peer->cert ? ex->ds.peer->cert->verify : NULL,
        /* OPTIONS, TRACE: one hop less (0 was answered, exchange.c), as N + 1 (headers.h) */
        .max_forwards = ex->max_forwards > 0 ? (uint32_t)ex->max_forwards : 0,
        .rules = ex->route->request_rules,
        .sticky_name = ex->up->sticky.name, /* name_len 0 without sticky (config.h) */
        .sticky_name_len = ex->up->sticky.name_len,
    };
    if (ex->host && ex->host != (ex->info.host ? ex->info.host->value : NULL)) {
        fwd.host = ex->host; /* absolute-form: its authority replaces Host (RFC 9112 3.2.2) */
        fwd.host_len = ex->host_len;
    } else if (!ex->host) {
        fwd.host = upconn_addr(ex->uc);
        fwd.host_len = strlen(fwd.host);
    }
    /* a trailer of a name the rules set or remove goes too (trailers.h): set before any of the
     * body is relayed, as a store (no test: a route without rules costs nothing here) */
    trailer_filter_rules(&ex->req_body.trailers, fwd.rules);
    if (fwd.rules && fwd.rules->host) { /* request_header = Host: ..., in the Host's place */
        fwd.host = fwd.rules->host;
        fwd.host_len = strlen(fwd.host);
    }
    ex_phase(ex, PHASE_SEND);
    if (hdr_write_request(ex->usock->out, &ex->req, &fwd) != 0) {
        /* nothing of it went in: the connection closes with the failure, never pooled */
        ex_fail(ex, PHASE_SEND, CAUSE_LOCAL, 0, "out of memory");
        return;
    }
    if (ex->route->nmirrors && !ex->mirror_made) /* the first send: the head as it went */
        make_mirror(ex, &fwd);
    /* Resent (a stale pooled connection, another origin): the body taken so far goes again
     * first (the rest follows from the client). Else (no replay): an empty chunked body was
     * consumed from the client already, its last chunk went to the failed connection; it goes
     * again. */
    if (ex->replay && ex->attempts > 1) {
        if (resend_replay(ex) != 0) {
            ex_fail(ex, PHASE_SEND, CAUSE_LOCAL, 0, "out of memory");
            return;
        }
    } else if (ex->req_state == REQ_DONE && ex->req_body.done &&
               ex->info.framing == H1_BODY_CHUNKED) {
        if (evbuffer_add(ex->usock->out, "0\r\n\r\n", 5) != 0) {
            /* the origin would wait for the body's end: the connection closes with the failure */
            ex_fail(ex, PHASE_SEND, CAUSE_LOCAL, 0, "out of memory");
            return;
        }
    }
    upconn_mark_used(ex->uc);
    if (ex->req_state == REQ_GATED)
        ex_arm(&ex->continue_timer, ex->route->continue_timeout_ms);
    /* (not while a copy is kept, the replay or the mirrors': spliced bytes pass it by, and a
     * body of exactly REPLAY_MAX, its head read alone, lost its copy and its retry) */
    ex->req_splice = (ex->req_state == REQ_BODY || ex->req_state == REQ_GATED) && !ex->replay &&
                     !ex->mirror &&
                     splice_allowed(ex, ex->ds.ops->request_splice != NULL, &ex->req_body);
    if (ex->req_state == REQ_BODY) {
        /* client_body_timeout runs from here: while we were connecting the client owed us
         * nothing */
        ex_body_owed(ex);
        relay_request_body(ex); /* flushes head and body, unless the body is refused */
        return;
    }
    flush_origin(ex);
    relay_request_sent(ex);
    if (ex->mirror && ex->req_state == REQ_DONE) /* after the origin's: it goes first */
        send_mirror(ex);
}

/* ---- response heads ---- */

/* Transfer-Encoding is rewritten hop by hop and Portico decodes chunked only: a body in any
 * other transfer coding (gzip ...) would reach the client unlabelled, so it is refused. */
static bool has_other_coding(const struct h1_response *resp)
{
    for (int i = h1_find(resp->fields, resp->nfields, H1_F_TRANSFER_ENCODING, 0); i >= 0;
         i = h1_find(resp->fields, resp->nfields, H1_F_TRANSFER_ENCODING, (size_t)i + 1)) {
        size_t pos = 0, n;
        const char *e;
        while (h1_list_next(resp->fields[i].value, resp->fields[i].value_len, &pos, &e, &n))
            if (!span_ieq(e, n, "chunked"))
                return true;
    }
    return false;
}

/* Schemes that authenticate the connection rather than each request (RFC 4559, NTLM). */
static const char *const connection_schemes[] = {"NTLM", "Negotiate"};

/* Whether the challenge list v (one field's value) offers a connection_schemes one: each
 * challenge's scheme is checked, not only the first's, since a field may carry several
 * ("Basic realm=\"x\", Negotiate"). A comma inside a quoted auth-param may be taken for a
 * challenge's start: that can only make a connection private for nothing, as HAProxy's does. */
static bool offers_connection_scheme(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && v[i - 1] != ',')
            continue;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        for (size_t s = 0; s < ARRAY_LEN(connection_schemes); s++) {
            size_t n = strlen(connection_schemes[s]);
            if (len - i >= n && strncasecmp(v + i, connection_schemes[s], n) == 0 &&
                (len - i == n || v[i + n] == ' ' || v[i + n] == ',' || v[i + n] == '\t'))
                return true;
        }
    }
    return false;
}

/* Whether resp challenges with a scheme that authenticates the connection (NTLM, Negotiate),
 * in a 401's WWW-Authenticate or a 407's Proxy-Authenticate. Such a connection is the
 * client's alone: pooled for anyone, the next client would be served as the one who
 * authenticated it (HAProxy makes it private, Squid pins it). Only those two statuses are
 * looked at: no cost on any other response. */
static bool connection_auth(const struct h1_response *resp)
{
    static const char www[] = "www-authenticate", proxy[] = "proxy-authenticate";
    const char *name = resp->status == HTTP_UNAUTHORIZED ? www
                       : resp->status == HTTP_PROXY_AUTHENTICATION_REQUIRED ? proxy
                                                                            : NULL;
    if (!name)
        return false;
    size_t len = strlen(name);
    for (size_t i = 0; i < resp->nfields; i++) {
        const struct h1_field *f = &resp->fields[i];
        if (f->name_len == len && strncasecmp(f->name, name, len) == 0 &&
            offers_connection_scheme(f->value, f->value_len))
            return true;
    }
    return false;
}

/* The final response head: forward it and commit the status. */
static void forward_head(struct exchange *ex, const struct h1_response *resp, size_t head_len)
{
    struct h1_error err;
    if (h1_response_info(resp, ex->req.method_id, &ex->resp_info, &err) != 0) {
        ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
                upconn_addr(ex->uc), err.reason);
        return;
    }
    if (ex->resp_info.framing != H1_BODY_NONE && has_other_coding(resp)) {
        ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
                upconn_addr(ex->uc), "transfer coding other than chunked");
        return;
    }
    const struct h1_info *ri = &ex->resp_info;
    /* A body of unknown length is streamed: chunked to HTTP/1.1 clients, to the close for 1.0. */
    enum h1_framing out = ri->framing == H1_BODY_CLOSE ? H1_BODY_CHUNKED : ri->framing;
    ex->close_client |= !ex->info.keep_alive || ex->loop->state != LOOP_RUNNING ||
                        ex->req_state != REQ_DONE; /* answered before the whole body */
    /* An origin that answers before it has the whole request may never read the rest (one that
     * takes no body on this path: "CL.0"). The body sent after its answer would wait in its
     * input and be read as its next request, whose response the next user of the pooled
     * connection (another client) would get: the connection goes once the response ends. */
    ex->answered_early = !request_sent(ex);

    char ps[64];
    if (ex->cfg->proxy_status)
        snprintf(ps, sizeof(ps), "portico; received-status=%d", resp->status);
    /* route server_timing: the phases so far, for the browser's devtools */
    char timing[512];
    if (ex->route->server_timing)
        phase_server_timing(&ex->pc, ex->now, PHASE_DONE, CAUSE_NONE, timing, sizeof(timing));
    struct fwd_response fwd = {
        .framing = out,
        .request_id = ex->request_id,
        .proxy_status = ex->cfg->proxy_status ? ps : NULL,
        .server_timing = ex->route->server_timing ? timing : NULL,
        .date = http_date_now(),
        .rules = ex->route->response_rules,
    };
    struct h1_field fields[HDR_MAX_FIELDS + 1 + STICKY_FIELDS];
    struct resp_head head = {
        .status = resp->status,
        .reason = resp->reason,
        .reason_len = resp->reason_len,
        .fields = fields,
        .nfields = hdr_response_fields(resp, &fwd, fields, HDR_MAX_FIELDS),
        .framing = out,
        .content_length = ri->content_length,
        .close = ex->close_client,
    };
    head.nfields += fault_exec_fields(ex, fields + head.nfields, 1); /* Portico-Fault */
    char set_cookie[STICKY_SET_COOKIE_MAX];
    if (__builtin_expect(ex->sticky != STICKY_NONE, 0)) /* a sticky upstream's pick */
        head.nfields += sticky_fields(ex, fields, head.nfields, fields + head.nfields,
                                     set_cookie);
    char why[160];
    if (ex->ds.ops->head_fits &&
        !ex->ds.ops->head_fits(ex->ds.ctx, &head, true, why, sizeof(why))) {
        /* Valid HTTP/1.1 that this client's protocol cannot carry (an HTTP/2 header block
         * over its bound): nothing of it went, so the client gets a 502 that says why. */
        ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
                upconn_addr(ex->uc), why);
        return;
    }
    deadline_clear(&ex->total_timer);
    deadline_clear(&ex->processing_timer);
    deadline_clear(&ex->continue_timer);
    ex_origin_answered(ex);
    if (ex_client_gone(ex)) /* (the origin answered: its verdict stands) */
        return;
    ex->ds.ops->head(ex->ds.ctx, &head, &ex->sink);
    ex->status = ex->upstream_status = resp->status;
    if (ex->uc && connection_auth(resp))
        upconn_make_private(ex->uc, ex->ds.peer->conn_id);
    if (resp->status == HTTP_OK) /* the Link fields the client got: a rule removed or set */
        interim_learn(ex, head.fields, head.nfields);
    size_t max_trailers = (size_t)ex->cfg->max_header_size;
    if (ex->sink.trailers_max && ex->sink.trailers_max < max_trailers)
        max_trailers = ex->sink.trailers_max;
    body_init(&ex->resp_body, ri->framing, ri->content_length, ex->sink.chunked, max_trailers);
    ex->resp_body.trailers_out = ex->sink.trailers;
    trailer_filter_rules(&ex->resp_body.trailers, fwd.rules); /* (trailers.h) */
    fault_exec_body_start(ex); /* truncate, throttle */
    ex->resp_splice = splice_allowed(ex, ex->ds.ops->body_splice != NULL, &ex->resp_body);
    evbuffer_drain(ex->usock->in, head_len);
    ex->resp_state = RESP_BODY;
    relay_read_limit(ex); /* a head's room is not the body's */
}

/* The origin took the client's Upgrade: the 101 goes to the client, and the exchange ends with
 * both connections handed to the downstream as a tunnel (ex_settle). What the origin sent
 * after the 101 stays in its input for the tunnel. */
static void switch_protocols(struct exchange *ex, const struct h1_response *resp, size_t head_len)
{
    ex_origin_answered(ex);
    deadline_clear(&ex->total_timer);
    deadline_clear(&ex->processing_timer);
    deadline_clear(&ex->continue_timer);
    struct h1_field fields[HDR_MAX_FIELDS + 1 + STICKY_FIELDS];
    struct resp_head head = {
        .status = resp->status,
        .reason = resp->reason,
        .reason_len = resp->reason_len,
        .fields = fields,
        .nfields = hdr_upgrade_fields(resp, ex->route->response_rules, fields, HDR_MAX_FIELDS),
    };
    /* a 101 under a rule names it as any other response does (a delayed upgrade is shaped) */
    head.nfields += fault_exec_fields(ex, fields + head.nfields, 1); /* Portico-Fault */
    char set_cookie[STICKY_SET_COOKIE_MAX];
    if (__builtin_expect(ex->sticky != STICKY_NONE, 0)) /* a sticky upstream's pick */
        head.nfields += sticky_fields(ex, fields, head.nfields, fields + head.nfields,
                                     set_cookie);
    ex->ds.ops->interim(ex->ds.ctx, &head);
    evbuffer_drain(ex->usock->in, head_len);
    ex->status = ex->upstream_status = resp->status;
    if (ex->ds.websocket) /* RFC 8441 5: the client's answer is a 200 */
        ex->status = HTTP_OK;
    ex->resp_state = RESP_SWITCHED;
    ex_end(ex, OUTCOME_DONE);
}

/* Whether the 101's Upgrade names, first, a protocol the request offered (RFC 9110 7.8: a 101
 * says what it switches to). One without Upgrade, or to another protocol (h2c to a WebSocket
 * request), would start a tunnel carrying what the client did not ask for. */
static bool switch_offered(const struct exchange *ex, const struct h1_response *resp)
{
    int i = h1_find_field(resp->fields, resp->nfields, "upgrade", 0);
    if (i < 0)
        return false;
    const struct h1_field *f = &resp->fields[i];
    char proto[64];
    size_t n = 0;
    for (; n < f->value_len && f->value[n] != ',' && f->value[n] != ' ' && f->value[n] != '\t';
         n++) {
        if (n + 1 >= sizeof(proto))
            return false;
        proto[n] = (char)tolower((unsigned char)f->value[n]);
    }
    proto[n] = '\0';
    return n > 0 && h1_list_has(ex->req.fields, ex->req.nfields, "upgrade", proto);
}

/* Whether a WebSocket's 101 proves the key Portico sent for an HTTP/2 stream (RFC 6455 4.2.2:
 * its Sec-WebSocket-Accept): the client, which sent no key, cannot check it itself. A request
 * from an HTTP/1.1 client has its own key, and the client checks. */
static bool key_proven(const struct exchange *ex, const struct h1_response *resp)
{
    if (!ex->ds.websocket)
        return true;
    int k = h1_find_field(ex->req.fields, ex->req.nfields, "sec-websocket-key", 0);
    int a = h1_find_field(resp->fields, resp->nfields, "sec-websocket-accept", 0);
    return k >= 0 && a >= 0 && h1_find_field(resp->fields, resp->nfields, "sec-websocket-accept",
                                             a + 1) < 0 &&
           ws_accept_matches(ex->req.fields[k].value, ex->req.fields[k].value_len,
                             resp->fields[a].value, resp->fields[a].value_len);
}

/* Stops reading the origin while the client's output is full: 1xx and body bytes alike wait
 * in the kernel, not in our memory. */
static bool client_full(struct exchange *ex)
{
    if (ex->ds.ops->pending(ex->ds.ctx) <= RELAY_HIGH)
        return false;
    ex->upstream_paused = true;
    sock_read(ex->usock, false);
    deadline_clear(&ex->phase_timer); /* the origin is not the one being slow */
    return true;
}

/* Parses response heads as long as complete ones are buffered: 1xx are relayed, the final one
 * forwarded. */
static void read_heads(struct exchange *ex)
{
    struct evbuffer *in = ex->usock->in;
    while (ex->resp_state == RESP_HEAD && ex->outcome == OUTCOME_OPEN) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        if (ex->pc.current != PHASE_READ && fault_exec_hold_head(ex))
            return; /* a fault's response_delay: the response comes in when it is over */
        if (ex->pc.current != PHASE_READ) {
            ex->response_byte = true;
            ex_phase(ex, PHASE_READ);
        }
        if (client_full(ex))
            return;
        size_t n = MIN(len, (size_t)ex->cfg->max_header_size);
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (!p && n) { /* a head in several chains, and no memory to make it one */
            ex_fail(ex, PHASE_READ, CAUSE_LOCAL, 0, "out of memory");
            return;
        }
        /* A head trickling in is parsed again only once a line has ended, as client.c does:
         * parsing it whole on every read kept a core busy for a 900 KB head (max_header_size
         * = 1m) sent a little at a time. */
        bool line_ended = !ex->head_scanned || n <= ex->head_scanned ||
                          n >= ex->cfg->max_header_size ||
                          memchr(p + ex->head_scanned, '\n', n - ex->head_scanned);
        struct h1_response resp;
        struct h1_error err;
        int rc = line_ended ? h1_parse_response(p, n, ex->cfg->max_header_size, &resp, &err) : -2;
        if (rc == -2) {
            ex->head_scanned = n;
            if (!ex->head_grown && len >= ex->usock->read_limit) {
                ex->head_grown = true; /* the rest of the head gets room */
                relay_read_limit(ex);
            }
            ex_arm(&ex->phase_timer, phase_limit_ms(ex->up->timers_ms, PHASE_READ));
            return; /* silence is measured anew */
        }
        ex->head_scanned = 0;
        if (rc < 0) {
            ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response from %s: %s",
                    upconn_addr(ex->uc), err.reason);
            return;
        }
        int code = resp.status;
        /* The origin's idle timeout met the request on a pooled connection (ex_resend_408). */
        if (code == HTTP_REQUEST_TIMEOUT && ex_resend_408(ex))
            return;
        if (code >= HTTP_OK) {
            /* retry_on: a final status of its list may send the request to another origin;
             * fail_on: one of its list counts against this one (one test for both) */
            if (__builtin_expect(ex->up->status_watch != 0, 0) && ex_retry_on_status(ex, code))
                return; /* this connection is gone */
            drop_replay(ex); /* an answer began: the request will not go again */
            forward_head(ex, &resp, (size_t)rc);
            return;
        }
        if (code == HTTP_SWITCHING_PROTOCOLS) {
            const char *refused = !ex->upgrade               ? "although no upgrade was offered"
                                  : !switch_offered(ex, &resp) ? "to a protocol not offered"
                                  : !key_proven(ex, &resp)
                                      ? "with a Sec-WebSocket-Accept that does not match the "
                                        "Sec-WebSocket-Key Portico sent"
                                      : NULL;
            if (refused)
                ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "%s switched protocols (101) %s",
                        upconn_addr(ex->uc), refused);
            else
                switch_protocols(ex, &resp, (size_t)rc);
            return;
        }
        ex->interim_seen++;
        /* a 1xx: the request goes nowhere else, but where retry_on may still send it on */
        if (!ex->up->retry_on)
            drop_replay(ex);
        if (request_sent(ex) && !interim_in_time(ex)) {
            ex_phase_resume(ex, PHASE_FIRST_BYTE);
            ex_phase_timeout(ex);
            return;
        }
        bool opens_gate = interim_relay(ex, &resp);
        evbuffer_drain(in, (size_t)rc);
        sock_consumed(ex->usock);
        if (opens_gate) {
            interim_open_gate(ex); /* may end the exchange: the body can be refused */
            if (ex->outcome != OUTCOME_OPEN)
                return;
        }
        if (evbuffer_get_length(in) > 0)
            continue;
        if (request_sent(ex)) {
            wait_first_byte(ex, true);
        } else {
            /* A 1xx while the request still goes out (the body after a 100): back to SEND,
             * limited by send_timeout; first_byte starts once the request is sent. */
            ex_phase_resume(ex, PHASE_SEND);
        }
    }
}

/* ---- the response body ---- */

/* The response body goes from the origin's socket to the client's (sock_splice), all but its
 * last byte: that one is read and goes out with done(), so that a client holding the whole
 * response can count on the log and the metrics having it (as for a copied body). */
static void splice_body(struct exchange *ex)
{
    long n = ex->ds.ops->body_splice(ex->ds.ctx, ex->usock, (size_t)ex->resp_body.left - 1);
    if (n < 0) {
        ex->resp_splice = false; /* nothing was taken: the next bytes are read and copied */
    } else {
        body_spliced(&ex->resp_body, (uint64_t)n);
        metrics_add(ex->loop->metrics, M_SPLICED_BYTES, (uint64_t)n);
        if (ex->ds.ops->pending(ex->ds.ctx) > 0) {
            /* The client is behind: the origin waits (sock_splice stopped watching it) until
             * the client drained (relay_resume). */
            ex->upstream_paused = true;
            deadline_clear(&ex->phase_timer);
            return;
        }
    }
    ex_arm(&ex->phase_timer, phase_limit_ms(ex->up->timers_ms, PHASE_READ));
}

static bool resp_splicing(const struct exchange *ex)
{
    return ex->resp_splice && ex->resp_body.left > 1;
}

/* Moves response body bytes to the client until the origin runs dry, the client's output is
 * full, or the body ends. */
static void relay_body(struct exchange *ex)
{
    struct evbuffer *in = ex->usock->in;
    struct evbuffer *out = ex->sink.out;
    for (;;) {
        if (resp_splicing(ex) && evbuffer_get_length(in) == 0) {
            splice_body(ex);
            return;
        }
        size_t before_in = evbuffer_get_length(in), before_out = evbuffer_get_length(out);
        if (body_move(&ex->resp_body, in, out, RELAY_HIGH) != 0) {
            if (ex->resp_body.out_of_memory)
                ex_fail(ex, PHASE_READ, CAUSE_LOCAL, 0, "out of memory");
            else
                ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response body from %s: %s",
                        upconn_addr(ex->uc), ex->resp_body.error);
            return;
        }
        if (evbuffer_get_length(in) != before_in)
            sock_consumed(ex->usock);
        char why[160];
        if (ex->resp_body.done && ex->ds.ops->trailers_fit &&
            !ex->ds.ops->trailers_fit(ex->ds.ctx, why, sizeof(why))) {
            ex_fail(ex, PHASE_READ, CAUSE_PROTOCOL, 0, "invalid response body from %s: %s",
                    upconn_addr(ex->uc), why);
            return;
        }
        /* the last bytes go with done(), once it is counted (to a client not watched, just
         * before: sent_none) */
        if (ex->resp_body.done) {
            ex->resp_state = RESP_DONE;
            ex_end(ex, OUTCOME_DONE);
            return;
        }
        ex->ds.ops->body(ex->ds.ctx);
        if (fault_exec_body_stop(ex) || client_full(ex)) /* a fault's truncate or throttle */
            return;
        if (resp_splicing(ex) && evbuffer_get_length(in) == 0)
            continue; /* what was read went: the rest is spliced */
        if (evbuffer_get_length(in) == 0 ||
            (evbuffer_get_length(in) == before_in && evbuffer_get_length(out) == before_out))
            break;
    }
    ex_arm(&ex->phase_timer, phase_limit_ms(ex->up->timers_ms, PHASE_READ));
}

static void origin_eof(struct exchange *ex);

void relay_resume(struct exchange *ex)
{
    if (!ex->upstream_paused || !ex->usock || ex->outcome != OUTCOME_OPEN)
        return;
    ex->upstream_paused = false;
    sock_read(ex->usock, true);
    unsigned attempt = ex->attempts;
    if (ex->resp_state == RESP_HEAD)
        read_heads(ex);
    if (ex->attempts != attempt)
        return; /* a 408 sent the request again (ex_resend_408): this connection is gone */
    if (ex->resp_state == RESP_BODY && ex->outcome == OUTCOME_OPEN)
        relay_body(ex);
    if (ex->outcome == OUTCOME_OPEN && !ex->upstream_paused && sock_at_eof(ex->usock))
        origin_eof(ex); /* the EOF came while we were paused */
}

/* ---- origin connection events ---- */

/* TLS 1.3 lets the client finish its handshake before the origin has checked the client's
 * certificate: an origin that refuses it (none sent, or an untrusted one) says so with an alert
 * that arrives after the request was written, often behind the reset that the write ran into.
 * On a new connection without a response byte, surface that alert: the failure is the
 * handshake's, not the request's. true with the alert's text in why. Not under TLS 1.2, whose
 * handshake ends with the origin's Finished, sent once it accepted everything of ours: an
 * alert after it (a renegotiation we refused) follows a request that reached the origin, which
 * the tls phase would let go to another origin whatever its method. */
static bool handshake_refused(struct exchange *ex, char *why, size_t size)
{
    if (!ex->usock->ssl || SSL_version(ex->usock->ssl) != TLS1_3_VERSION ||
        ex->response_byte || upconn_requests(ex->uc) > 1)
        return false;
    unsigned long e = ex->usock->ssl_err;
    if (!e)
        e = sock_tls_alert(ex->usock);
    if (!tls_alert_refuses_handshake(e))
        return false; /* internal_error and the like may come after the origin took it */
    tls_error_text(e, ex->up->client_cert, why, size);
    ex->tls_alert = tls_alert_received(e) + 1;
    return true;
}

/* The origin closed. What arrived before it goes first; while the client's output is full that
 * waits, and relay_resume comes back here once it drained. After a reset (origin_reset) what
 * arrived may be more than the input holds: the kernel's is read, a limit's worth at a time,
 * each time the input went, as the tunnel's pump_remains does. */
static void origin_eof(struct exchange *ex)
{
    unsigned attempt = ex->attempts;
    do {
        if (ex->resp_state == RESP_HEAD)
            read_heads(ex); /* a complete head may have come with the EOF */
        if (ex->attempts != attempt)
            return; /* a 408 sent the request again (ex_resend_408): this connection is gone */
        if (ex->resp_state == RESP_BODY && ex->outcome == OUTCOME_OPEN)
            relay_body(ex);
        if (ex->outcome != OUTCOME_OPEN || ex->upstream_paused)
            return;
    } while (ex->origin_reset && sock_read_remains(ex->usock) > 0);
    const char *addr = upconn_addr(ex->uc);
    if (ex->resp_state == RESP_BODY) {
        /* Only a close_notify ends a close-delimited body over TLS: a bare FIN can be anyone's
         * (RFC 9112 9.8), and the client must not take a cut body for the whole. */
        if (ex->resp_body.in == H1_BODY_CLOSE && sock_tls_cut(ex->usock)) {
            ex_fail(ex, PHASE_READ, CAUSE_EOF, 0,
                    "%s closed the connection mid-body without a TLS close_notify", addr);
            return;
        }
        if (body_eof(&ex->resp_body, ex->sink.out) == 0) {
            ex->resp_state = RESP_DONE;
            ex->resp_info.keep_alive = false;
            ex_end(ex, OUTCOME_DONE);
            return;
        }
        if (ex->resp_body.out_of_memory)
            ex_fail(ex, PHASE_READ, CAUSE_LOCAL, 0, "out of memory");
        else
            ex_fail(ex, PHASE_READ, CAUSE_EOF, 0, "%s closed the connection mid-body: %s", addr,
                    ex->resp_body.error);
        return;
    }
    char why[160];
    if (handshake_refused(ex, why, sizeof(why))) {
        ex_fail(ex, PHASE_TLS, CAUSE_TLS, 0, "%s refused the TLS handshake: %s", addr, why);
        return;
    }
    enum phase p = phase_of_io_failure(ex->pc.current, request_sent(ex), ex->response_byte);
    ex_fail(ex, p, CAUSE_EOF, 0, "%s closed the connection %s", addr,
            p == PHASE_SEND         ? "while the request was being sent"
            : p == PHASE_FIRST_BYTE ? "without sending a response"
                                    : "before the response head was complete");
}

static void origin_error(struct exchange *ex)
{
    /* An origin that answers before the request body is in (413, 401) and closes on the body
     * it did not read resets the connection: a write of the request meets the reset, but the
     * answer came before it and the kernel still holds it. It goes to the client as if the
     * origin had closed after it. Its end may have been read already, behind the answer's
     * last bytes (a close_notify), and not yet reported when the write failed: it counts. */
    bool end_read = sock_peer_closed(ex->usock);
    if (!request_sent(ex) && (sock_read_remains(ex->usock) > 0 ||
                              evbuffer_get_length(ex->usock->in) > 0 || end_read)) {
        /* More of the answer than one read takes may wait in the kernel behind a client slow
         * to read it: origin_eof reads it as the client takes it. A failed socket splices
         * nothing: the rest is copied, behind what the pipe holds. */
        ex->origin_reset = true;
        ex->resp_splice = false;
        origin_eof(ex);
        return;
    }
    const char *addr = upconn_addr(ex->uc);
    enum phase p = phase_of_io_failure(ex->pc.current, request_sent(ex), ex->response_byte);
    char why[160];
    if (handshake_refused(ex, why, sizeof(why))) {
        ex_fail(ex, PHASE_TLS, CAUSE_TLS, 0, "%s refused the TLS handshake: %s", addr, why);
    } else if (ex->usock->ssl_err) {
        tls_error_text(ex->usock->ssl_err, ex->up->client_cert, why, sizeof(why));
        /* A broken TLS record while the request goes out is the send failing; while the
         * response comes in it is the response that is invalid. An alert the origin sent
         * says so by name: it is the origin's TLS refusing, not its HTTP that broke. */
        const char *where = p == PHASE_SEND         ? "while the request was being sent"
                            : p == PHASE_FIRST_BYTE ? "before any response byte"
                            : ex->resp_state == RESP_HEAD ? "before the response head was complete"
                                                          : "mid-body";
        enum cause cause = p == PHASE_SEND ? CAUSE_IO : CAUSE_PROTOCOL;
        if (tls_alert_received(ex->usock->ssl_err) >= 0) /* why: "alert <name> (<n>)..." */
            ex_fail(ex, p, cause, 0, "%s sent a TLS alert %s: %s", addr, where,
                    why + strlen("alert "));
        else
            ex_fail(ex, p, cause, 0, "TLS error with %s %s: %s", addr, where, why);
    } else {
        int err = ex->usock->err;
        ex_fail(ex, p, cause_from_errno(err), 0, "%s: %s", addr,
                err ? strerror(err) : "connection error");
    }
}

static void origin_cb(void *arg, enum sock_event ev)
{
    struct exchange *ex = arg;
    ex->now = event_now_us();
    switch (ev) {
    case SOCK_READABLE:
        if (ex->resp_state == RESP_HEAD)
            read_heads(ex);
        if (ex->resp_state == RESP_BODY && ex->outcome == OUTCOME_OPEN)
            relay_body(ex);
        break;
    case SOCK_DRAINED:
        if (ex->req_state == REQ_BODY)
            relay_request_body(ex);
        else
            relay_request_sent(ex);
        break;
    case SOCK_WRITE_TIMEOUT: {
        uint64_t limit = phase_limit_ms(ex->up->timers_ms, PHASE_SEND);
        char detail[200];
        phase_timeout_detail(PHASE_SEND, upconn_addr(ex->uc), limit, detail, sizeof(detail));
        ex_fail_text(ex, PHASE_SEND, CAUSE_TIMEOUT, limit, detail);
        break;
    }
    case SOCK_EOF:
        origin_eof(ex);
        break;
    case SOCK_ERROR:
        origin_error(ex);
        break;
    case SOCK_CONNECTED:
    case SOCK_READ_TIMEOUT:
    case SOCK_DEADLINE: /* none set */
        break;
    }
    ex_settle(ex);
}

/* ---- connecting ---- */

/* The connection is ready (fresh or from the pool): take its events and send. */
static void take_connection(struct exchange *ex)
{
    struct sock *s = upconn_sock(ex->uc);
    ex->usock = s;
    /* A body is kept while small where it may go again (replay_wanted). One announced longer is
     * not copied at all (its first REPLAY_MAX bytes would only be dropped). */
    if (h1_info_has_body(&ex->info) && !ex->replay &&
        !(ex->info.framing == H1_BODY_LENGTH && ex->info.content_length > REPLAY_MAX) &&
        replay_wanted(ex))
        ex->replay = evbuffer_new(); /* NULL when out of memory: then no resend */
    ex->head_scanned = 0; /* a resend's head is another */
    ex->head_grown = false;
    ex->origin_reset = false;
    sock_set_cb(s, origin_cb, ex);
    sock_set_read_limit(s, up_read_high(ex));
    sock_set_timeouts(s, 0, phase_limit_ms(ex->up->timers_ms, PHASE_SEND));
    sock_read(s, true);
    send_request(ex);
}

static void on_upconn_phase(void *arg, enum phase p)
{
    struct exchange *ex = arg;
    ex->now = event_now_us();
    ex_phase(ex, p);
    ex_settle(ex);
}

static void on_upconn_ready(void *arg)
{
    struct exchange *ex = arg;
    ex->now = event_now_us();
    take_connection(ex);
    ex_settle(ex);
}

static void on_upconn_error(void *arg, enum cause cause, const char *detail)
{
    struct exchange *ex = arg;
    ex->now = event_now_us();
    /* a connect_timeout reported here (an earlier address's, which stands once the later ones
     * failed otherwise) names its limit as one the phase timer reports does */
    enum phase p = ex->pc.current;
    uint64_t limit = cause == CAUSE_TIMEOUT && p == PHASE_CONNECT
                         ? phase_limit_ms(ex->up->timers_ms, PHASE_CONNECT)
                         : 0;
    /* A TLS 1.2 origin refuses our certificate inside the handshake: its alert, as after one */
    if (cause == CAUSE_TLS && ex->uc && p == PHASE_TLS)
        ex->tls_alert = tls_alert_received(upconn_sock(ex->uc)->ssl_err) + 1;
    ex_fail_text(ex, p, cause, limit, detail);
    ex_settle(ex);
}

/* The connect phase goes on to another address of the origin's name, with its own
 * connect_timeout (as nginx gives each peer its own); total_timeout still bounds them all. One
 * error-log line per address given up, as per origin given up (retry_elsewhere): the client
 * may be answered, but an address of the origin is failing. */
static void on_upconn_next_address(void *arg, const char *why)
{
    struct exchange *ex = arg;
    ex->now = event_now_us();
    if (why)
        log_warn("request %s: %s; trying another address of %s", ex->request_id, why,
                 ex->up->origins[ex->origin].host);
    ex_arm(&ex->phase_timer, phase_limit_ms(ex->up->timers_ms, PHASE_CONNECT));
    ex_settle(ex);
}

static const struct upconn_events upconn_cbs = {
    .on_phase = on_upconn_phase,
    .on_ready = on_upconn_ready,
    .on_error = on_upconn_error,
    .on_next_address = on_upconn_next_address,
};

/* Whose pooled connection the request may take: its own client connection's first (none when
 * pipelined or first). */
static uint64_t pool_owner(const struct exchange *ex)
{
    return ex->ds.pipelined || ex->ds.first ? 0 : ex->ds.peer->conn_id;
}

bool relay_resendable(const struct exchange *ex)
{
    return request_idempotent(ex->req.method_id) && !h1_info_has_body(&ex->info);
}

bool relay_pooled(struct exchange *ex)
{
    return !ex->retried && upconn_idle_ready(ex->loop, ex->up_index, ex->origin, pool_owner(ex),
                                             relay_resendable(ex), ex->now);
}

void relay_connect(struct exchange *ex)
{
    ex->attempts++;
    if (!ex->retried) {
        /* Its own connection back first, if it may have one. */
        ex->uc = upconn_take_idle(ex->loop, ex->up_index, ex->origin, pool_owner(ex),
                                  relay_resendable(ex), ex->now);
        ex->reused = ex->uc != NULL;
        if (ex->uc) {
            metrics_add(ex->loop->metrics, M_UPSTREAM_REUSED, 1);
            take_connection(ex);
            return;
        }
    }
    ex->reused = false;
    ex->uc = upconn_open(ex->loop, ex->up_index, ex->origin, &upconn_cbs, ex);
    if (!ex->uc)
        ex_fail(ex, PHASE_CONNECT, CAUSE_LOCAL, 0, "out of memory");
}
