/*
 * fault_exec.c — fault rules acting on an exchange (issue 8). See exchange.c for the whole and
 * fault.h for the rules.
 *
 * A fault is decided once, at route time: the Portico-Fault header when header control allows
 * it, else the first rule of the generation's table that matches and fires. It then acts through
 * the exchange's own machinery, so that what the client sees is what a real event would show:
 *
 *   delay, interim   a timer of ours before the origin is contacted; each wait is an entry point
 *                    that ends with ex_settle(), like the exchange's own timers.
 *   status           an answer through the exchange's own response path (ex_refuse → send_own),
 *                    with the rule's reason, headers and body.
 *   failure          the phases the real failure would walk are entered (dns, connect, tls,
 *                    send, first_byte, read, as far as its phase; from send when the pool holds
 *                    a connection the request would take) without touching the origin;
 *                    a timer row then waits for the phase's own timer, whose expiry is the real
 *                    one (phase_timeout_cb, total_timeout_cb), and the other rows fail at once
 *                    through ex_fail() with the cause and the words the origin side would use.
 *                    The origin's passive health is not judged on a failure it never had.
 *   drop, reset      the outcome is recorded; ex_settle() has the downstream close (END_DROP,
 *                    END_RESET).
 *   response_delay   the origin's response waits from its first byte, its connection not read,
 *                    until our timer: to the exchange the origin answered that much later, so
 *                    first_byte_timeout and total_timeout still run (and expire as they would).
 *   truncate         the body's quota (body.h) stops it after N bytes; then the exchange fails
 *                    as when the origin closes mid-body (aborted after the head).
 *   throttle         the quota is refilled every THROTTLE_TICK_MS on a fixed schedule from the
 *                    body's start; while it is spent the origin is not read (back-pressure), so
 *                    nothing is buffered beyond the read limit. read_timeout runs on meanwhile
 *                    for a rate slower than a byte per read_timeout, as for an origin that slow.
 *
 * The only visible difference is the Portico-Fault response header naming the rule (none with
 * fault_header = off), and the access log's fault field.
 */
#include "exchange_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/config.h"
#include "portico/errpage.h"
#include "portico/fault_table.h"
#include "portico/fmt.h"
#include "portico/generation.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/request.h"
#include "portico/sock.h"
#include "portico/status.h"
#include "portico/upstream.h"
#include "portico/util.h"

#define THROTTLE_TICK_MS 100 /* a throttled body moves in steps this far apart */
#define THROTTLE_TICKS_S (1000 / THROTTLE_TICK_MS) /* ticks a second */
#define THROTTLE_BURST_TICKS 2 /* steps a late reader may take at once; older ones are forgiven */

/* Where a fault is in what it does before the origin is contacted. */
#define FX_STAGE_LIST(X)                                                                           \
    X(FX_DELAY, "delay")         /* the delay is still to wait */                                 \
    X(FX_INTERIM, "interim")     /* interim responses go out, interim_interval apart */           \
    X(FX_ACT, "act")             /* the answer, failure, drop or reset, or on to the origin */    \
    X(FX_DONE, "done")           /* it acted; what is left happens in the response */

enum fx_stage {
#define X(id, name) id,
    FX_STAGE_LIST(X)
#undef X
};

struct ex_fault {
    struct exchange *ex;               /* borrowed: the owner */
    const struct fault_rule *rule;     /* borrowed from the table, or own */
    struct fault_state *state;         /* the rule's shared state; NULL for the header's */
    int label;                         /* metrics label */
    struct fault_pick pick;
    enum fx_stage stage;
    int interim_next;                  /* index of the next interim response to send */
    bool interim_counted;              /* one of them went out: the interim is counted */
    bool answering;                    /* the response going out is the rule's status answer */
    bool simulating;                   /* a simulated failure walks the phases */
    bool stood_down;                   /* ... but every origin was really down: the real
                                          failure went out, which is not the rule's */
    bool awaits_slot;                  /* ... or all full: it waits in the queue as a real
                                          request does (stood down until a slot comes) */
    bool holding;                      /* response_delay: the final head waits for the timer */
    bool head_released;                /* ... and it has waited */
    bool throttled;                    /* the quota is spent until the next tick */
    bool throttle_counted;             /* ... which it was once: the throttle is counted */
    uint64_t throttle_start;           /* µs: the body's start, the throttle schedule's origin */
    uint64_t throttle_forgiven;        /* bytes of the schedule a late reader did not take in
                                          time, that do not come as a burst */
    struct deadline timer;             /* delay, interim, response_delay, throttle ticks */
    char addr[64];                     /* what a simulated failure calls the origin */
    enum failure_type waiting;         /* a simulated failure after the request was sent: it
                                          waits for the request body (FAIL_NONE: none) ... */
    struct evbuffer *sink;             /* owned: ... which is read into this and dropped */
    struct fault_rule *own;            /* owned: the Portico-Fault header's rule, or NULL (a
                                          table's rule is borrowed: no 4 KiB to zero for it) */
};

static void fault_timer_cb(evutil_socket_t fd, short what, void *arg);

static uint64_t now_ms_of(const struct exchange *ex)
{
    return ex->now / 1000;
}

static void count(struct exchange *ex, enum fault_action a)
{
    metrics_fault(ex->loop->metrics, ex->fault->label, a);
}

/* Under ASan the kept allocation is poisoned, so a use after its fault ended is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(p) ASAN_POISON_MEMORY_REGION((p), sizeof(struct ex_fault))
#define SPARE_UNPOISON(p) ASAN_UNPOISON_MEMORY_REGION((p), sizeof(struct ex_fault))
#else
#define SPARE_POISON(p) ((void)(p))
#define SPARE_UNPOISON(p) ((void)(p))
#endif

/* A fault that fires on every request (a status rule under load) took an allocation and gave
 * it back each time, past malloc's per-thread cache (~130 instructions): the loop keeps one. */
static struct ex_fault *fault_new(struct exchange *ex)
{
    struct loop *l = ex->loop;
    struct ex_fault *f = l->spare_fault;
    if (f) {
        l->spare_fault = NULL;
        SPARE_UNPOISON(f);
        *f = (struct ex_fault){0};
    } else if (!(f = zalloc(sizeof(*f)))) {
        return NULL;
    }
    f->ex = ex;
    deadline_init(&f->timer, l->clock, fault_timer_cb, f);
    return f;
}

static void fault_free(struct ex_fault *f)
{
    if (f->sink)
        evbuffer_free(f->sink);
    free(f->own);
    struct loop *l = f->ex->loop;
    if (l->spare_fault) {
        free(f);
        return;
    }
    SPARE_POISON(f);
    l->spare_fault = f;
}

void fault_exec_spare_free(struct loop *l)
{
    if (!l->spare_fault)
        return;
    SPARE_UNPOISON(l->spare_fault);
    free(l->spare_fault);
    l->spare_fault = NULL;
}

/* ---- the decision ---- */

static const struct h1_field *request_field(const struct exchange *ex, enum h1_field_id id,
                                            bool *twice)
{
    int i = h1_find(ex->req.fields, ex->req.nfields, id, 0);
    *twice = i >= 0 && h1_find(ex->req.fields, ex->req.nfields, id, (size_t)i + 1) >= 0;
    return i >= 0 ? &ex->req.fields[i] : NULL;
}

/* The Portico-Fault header of an allowed client: parsed into its own rule. false when refused
 * (the 400 went out). */
static bool from_header(struct exchange *ex, const struct h1_field *h, bool twice)
{
    char why[300];
    const struct upstream_conf *up = ex->up;
    struct ex_fault *f = fault_new(ex);
    if (f && !(f->own = malloc(sizeof(*f->own)))) {
        free(f);
        f = NULL;
    }
    if (!f) /* no memory for a fault: the request goes on without it */
        return true;
    int rc = twice ? -1 : fault_header_parse(h->value, h->value_len, FAULT_LABEL_HEADER, f->own,
                                             why, sizeof(why));
    if (twice)
        snprintf(why, sizeof(why), "given twice");
    else if (rc == 0 && f->own->failure == FAIL_TOTAL_TIMEOUT && !up->timers_ms[TIMER_TOTAL])
        rc = -1, snprintf(why, sizeof(why), "failure=total_timeout: [upstream %s] has no "
                                            "total_timeout to wait for", up->name);
    if (rc != 0) {
        char reason[sizeof(why) + 32];
        snprintf(reason, sizeof(reason), "Portico-Fault: %s", why);
        fault_free(f);
        ex_refuse(ex, HTTP_BAD_REQUEST, reason, ex->req_state != REQ_DONE);
        return false;
    }
    f->rule = f->own;
    f->label = fault_table_header_label(ex->cfg);
    if (!fault_decide(f->rule, NULL, now_ms_of(ex), fault_table_rng(ex->loop->gen->faults),
                      &f->pick)) {
        fault_free(f);
        return true;
    }
    ex->fault = f;
    return true;
}

/* The first rule of the table that matches and fires. */
static void from_rules(struct exchange *ex)
{
    struct fault_table *t = ex->loop->gen->faults;
    int n = fault_table_count(t);
    if (!n)
        return;
    struct fault_addr client;
    bool client_parsed = false; /* only when a rule has client=: most have not */
    struct fault_request q = {
        .route = ex->route->name,
        .host = ex->host,
        .host_len = ex->host_len,
        .path = ex->route_path,
        .path_len = ex->path_len,
        .path_plain = ex->path_plain,
        .method = ex->req.method_id,
        .fields = ex->req.fields,
        .nfields = ex->req.nfields,
    };
    for (int i = 0; i < n; i++) {
        struct fault_entry *e = fault_table_entry(t, i);
        struct fault_pick pick;
        /* A rule deleted over the admin API stays in the table until a reload: skip it before
         * matching, which costs a host key and a header scan. */
        if (atomic_load_explicit(&e->state.deleted, memory_order_relaxed))
            continue;
        if (e->rule.nclients && !client_parsed) {
            client_parsed = true;
            q.client = ex_client_addr(ex, &client) == 0 ? &client : NULL;
        }
        if (!fault_match(&e->rule, &q) ||
            !fault_decide(&e->rule, &e->state, now_ms_of(ex), fault_table_rng(t), &pick))
            continue;
        struct ex_fault *f = fault_new(ex);
        if (!f) { /* no memory for a fault: the request goes on without it */
            fault_release(&e->state);
            return;
        }
        f->rule = &e->rule;
        f->state = &e->state;
        f->label = e->label;
        f->pick = pick;
        ex->fault = f;
        return;
    }
}

bool fault_exec_decide(struct exchange *ex)
{
    const struct faults_conf *fc = &ex->cfg->faults;
    bool twice = false;
    /* without header control a request costs no look at its fields here */
    const struct h1_field *h = fc->header_control ? request_field(ex, H1_F_PORTICO_FAULT, &twice)
                                                  : NULL;
    struct fault_addr client;
    if (h && ex_client_addr(ex, &client) == 0 &&
        fault_cidr_contains(fc->header_clients, fc->nheader_clients, &client))
        return from_header(ex, h, twice);
    from_rules(ex);
    return true;
}

/* ---- before the origin: delay, interim, then the act ---- */

/* A simulated failure: how the real one fails. */
struct sim_row {
    enum phase phase;                  /* where it fails */
    enum cause cause;
    bool timer;                        /* the phase's timer expires (the real one) */
};

static const struct sim_row sim_rows[FAILURE_COUNT] = {
    [FAIL_DNS_ERROR] = {PHASE_DNS, CAUSE_NXDOMAIN, false},
    [FAIL_DNS_TIMEOUT] = {PHASE_DNS, CAUSE_TIMEOUT, true},
    [FAIL_CONNECT_REFUSED] = {PHASE_CONNECT, CAUSE_REFUSED, false},
    [FAIL_CONNECT_TIMEOUT] = {PHASE_CONNECT, CAUSE_TIMEOUT, true},
    [FAIL_CONNECT_UNREACHABLE] = {PHASE_CONNECT, CAUSE_UNREACHABLE, false},
    [FAIL_TLS_HANDSHAKE_FAILED] = {PHASE_TLS, CAUSE_TLS, false},
    [FAIL_TLS_HANDSHAKE_TIMEOUT] = {PHASE_TLS, CAUSE_TIMEOUT, true},
    [FAIL_TLS_CERTIFICATE_INVALID] = {PHASE_TLS, CAUSE_CERT, false},
    [FAIL_SEND_TIMEOUT] = {PHASE_SEND, CAUSE_TIMEOUT, true},
    [FAIL_SEND_ERROR] = {PHASE_SEND, CAUSE_RESET, false},
    [FAIL_FIRST_BYTE_TIMEOUT] = {PHASE_FIRST_BYTE, CAUSE_TIMEOUT, true},
    [FAIL_READ_TIMEOUT] = {PHASE_READ, CAUSE_TIMEOUT, true},
    [FAIL_EMPTY_RESPONSE] = {PHASE_FIRST_BYTE, CAUSE_EOF, false},
    [FAIL_CONNECTION_RESET] = {PHASE_FIRST_BYTE, CAUSE_RESET, false},
    [FAIL_INVALID_RESPONSE] = {PHASE_READ, CAUSE_PROTOCOL, false},
    [FAIL_TOTAL_TIMEOUT] = {PHASE_FIRST_BYTE, CAUSE_TOTAL_TIMEOUT, true},
};

/* What the parser says of bytes that are not HTTP, as it said it to a real garbage origin. */
static const char *garbage_reason(void)
{
    static const char garbage[] = "XYZZY 42 this is not HTTP\r\n\r\n";
    struct h1_response resp;
    struct h1_error err = {.reason = "not HTTP"};
    h1_parse_response(garbage, sizeof(garbage) - 1, sizeof(garbage), &resp, &err);
    return err.reason;
}

/* The same words the origin side uses for the same event (upstream.c, relay.c). */
static void fail_now(struct exchange *ex, const struct sim_row *row, enum failure_type type)
{
    const char *addr = ex->fault->addr;
    const struct origin_conf *o = &ex->up->origins[ex->origin];
    char why[160];
    switch (type) {
    case FAIL_DNS_ERROR:
        ex_fail(ex, row->phase, row->cause, 0, "resolving %s failed: %s", o->host,
                upconn_dns_error_text(EVUTIL_EAI_NONAME, o->host));
        break;
    case FAIL_CONNECT_REFUSED:
    case FAIL_CONNECT_UNREACHABLE:
        ex_fail(ex, row->phase, row->cause, 0, "connect to %s failed: %s", addr,
                strerror(type == FAIL_CONNECT_REFUSED ? ECONNREFUSED : EHOSTUNREACH));
        break;
    case FAIL_TLS_HANDSHAKE_FAILED:
        ERR_error_string_n(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER), why, sizeof(why));
        ex_fail(ex, row->phase, row->cause, 0, "TLS handshake with %s failed: %s", addr, why);
        break;
    case FAIL_TLS_CERTIFICATE_INVALID: {
        /* as tls_verify_failed names the certificate: a self-signed one for the name checked */
        const char *name = ex->up->sni ? ex->up->sni : o->host;
        ex_fail(ex, row->phase, row->cause, 0,
                "certificate of %s rejected: %s (certificate 1 of the chain: /CN=%s, issued by "
                "/CN=%s)",
                addr, X509_verify_cert_error_string(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT), name,
                name);
        break;
    }
    case FAIL_SEND_ERROR:
    case FAIL_CONNECTION_RESET:
        ex_fail(ex, row->phase, row->cause, 0, "%s: %s", addr, strerror(ECONNRESET));
        break;
    case FAIL_EMPTY_RESPONSE:
        ex_fail(ex, row->phase, row->cause, 0, "%s closed the connection without sending a "
                                               "response", addr);
        break;
    case FAIL_INVALID_RESPONSE:
        ex_fail(ex, row->phase, row->cause, 0, "invalid response from %s: %s", addr,
                garbage_reason());
        break;
    default:
        ex_fail(ex, row->phase, row->cause, 0, "simulated %s", failure_name(type));
        break;
    }
}

/* Enters the phases from..to a real exchange would walk toward the failing one (dns only for a
 * name, tls only for TLS upstreams, both when that is where it fails). */
static void walk_phases(struct exchange *ex, enum phase from, enum phase to, enum phase failing)
{
    const struct origin_conf *o = &ex->up->origins[ex->origin];
    for (int p = (int)from; p <= (int)to; p++) {
        bool walk = (p == PHASE_DNS && !o->numeric) || (p == PHASE_TLS && ex->up->tls) ||
                    (p != PHASE_DNS && p != PHASE_TLS) || p == (int)failing;
        if (walk)
            ex_phase(ex, (enum phase)p);
    }
}

static void fail_in_phase(struct exchange *ex, enum failure_type type);
static void simulate_picked(struct exchange *ex, enum failure_type type);

/* Whether a real exchange would resend the request after this failure on a pooled connection
 * (stale_pooled in exchange.c): a close or reset before any answer, after the origin took the
 * request (a simulated origin saw it: its method decides), of a request that may go twice and
 * took no body, or one its replay keeps (a Content-Length body up to REPLAY_MAX; a chunked one
 * of that size would be resent too, which this does not know beforehand). */
static bool stale_retry(const struct exchange *ex, const struct sim_row *row)
{
    bool replayed = request_idempotent(ex->req.method_id) &&
                    ex->info.framing == H1_BODY_LENGTH && ex->info.content_length <= REPLAY_MAX;
    return (row->cause == CAUSE_EOF || row->cause == CAUSE_RESET) &&
           (row->phase == PHASE_SEND || row->phase == PHASE_FIRST_BYTE) &&
           (relay_resendable(ex) || replayed);
}

/* Walks the phases a real exchange would to the failing one, then fails there. */
static void simulate(struct exchange *ex, enum failure_type type)
{
    struct ex_fault *f = ex->fault;
    if (type == FAIL_NO_HEALTHY_ORIGIN) { /* no origin is chosen: it fails at routing */
        count(ex, FAULT_FAILURE);
        f->simulating = true;
        ex_fail_no_origin(ex);
        return;
    }
    /* Really all down: the real failure goes out, and it is not the rehearsal's: not named
     * (Portico-Fault, the log's fault) nor counted, or a real outage would pass for one. All
     * full (max_conns): it waits in the queue as a real request would (its queue_timeout or
     * queue_full is the real one's), and goes on from fault_exec_picked with its slot. */
    f->stood_down = true;
    f->awaits_slot = true;
    if (!ex_pick_or_queue(ex))
        return;
    f->awaits_slot = false;
    f->stood_down = false;
    simulate_picked(ex, type);
}

bool fault_exec_picked(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    if (!f || !f->awaits_slot)
        return false;
    f->awaits_slot = false;
    f->stood_down = false;
    simulate_picked(ex, f->rule->failure);
    return true;
}

/* simulate's failure on the origin it holds now. */
static void simulate_picked(struct exchange *ex, enum failure_type type)
{
    struct ex_fault *f = ex->fault;
    count(ex, FAULT_FAILURE);
    const struct sim_row *row = &sim_rows[type];
    const struct origin_conf *o = &ex->up->origins[ex->origin];
    if (o->numeric)
        sockaddr_str((const struct sockaddr *)&o->addr, f->addr, sizeof(f->addr));
    else
        snprintf(f->addr, sizeof(f->addr), "%s", o->text);
    f->simulating = true;
    ex->attempts++; /* the origin connection a real exchange would try (relay_connect) */
    enum phase from = PHASE_DNS;
    /* Past TLS a real exchange may take a pooled connection (relay_connect): it begins at SEND,
     * logged and counted as reused. One that then closes or resets before an answer is taken
     * for stale, and the request goes again on a fresh connection (stale_pooled), which fails
     * the same way: retried, a second attempt, its phases from the start. */
    if (row->phase >= PHASE_SEND && relay_pooled(ex)) {
        metrics_add(ex->loop->metrics, M_UPSTREAM_REUSED, 1);
        if (stale_retry(ex, row)) {
            walk_phases(ex, PHASE_SEND, row->phase, row->phase);
            ex->retried = true;
            ex->attempts++;
            metrics_add(ex->loop->metrics, M_UPSTREAM_RETRIES, 1);
        } else {
            ex->reused = true;
            from = PHASE_SEND;
        }
    }
    /* the origin connection a real exchange would have opened before failing (connected()) */
    if (!ex->reused && row->phase > PHASE_CONNECT)
        metrics_add(ex->loop->metrics, M_UPSTREAM_CONNECTS, 1);
    /* Past SEND the real request went whole, body included, and the client's connection may
     * serve its next request: the body is read (and dropped) before the failure, as long as a
     * real one takes to go, so that the answer and the connection are the real ones. */
    bool sent = row->phase > PHASE_SEND &&
                (ex->req_state == REQ_BODY || ex->req_state == REQ_GATED) &&
                (f->sink = evbuffer_new()) != NULL;
    walk_phases(ex, from, sent ? PHASE_SEND : row->phase, row->phase);
    if (sent) {
        f->waiting = type;
        if (ex->req_state == REQ_GATED) { /* no 100 from an origin: ours, as send_request arms */
            ex_arm(&ex->continue_timer, ex->route->continue_timeout_ms);
            return;
        }
        ex_body_owed(ex);
        relay_request_body(ex); /* what came with the head; fault_exec_request_read when whole */
        return;
    }
    fail_in_phase(ex, type);
}

struct evbuffer *fault_exec_request_sink(const struct exchange *ex)
{
    return ex->fault && ex->fault->waiting != FAIL_NONE ? ex->fault->sink : NULL;
}

void fault_exec_request_read(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    enum failure_type type = f->waiting;
    f->waiting = FAIL_NONE;
    walk_phases(ex, PHASE_SEND + 1, sim_rows[type].phase, sim_rows[type].phase);
    fail_in_phase(ex, type);
}

/* In the phase where the failure happens: it fails now, or its timer runs. */
static void fail_in_phase(struct exchange *ex, enum failure_type type)
{
    const struct sim_row *row = &sim_rows[type];
    if (row->phase == PHASE_READ)
        ex->response_byte = true;
    if (!row->timer) {
        fail_now(ex, row, type);
        return;
    }
    if (type == FAIL_TOTAL_TIMEOUT) /* the total timer armed at routing expires first */
        deadline_clear(&ex->phase_timer);
    else if (row->phase == PHASE_SEND) /* its limit is the sock's write deadline: ours here */
        ex_arm(&ex->phase_timer, phase_limit_ms(ex->up->timers_ms, PHASE_SEND));
}

/* The rule's status answer, through the exchange's own response path. */
static void answer(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    f->answering = true;
    count(ex, FAULT_STATUS);
    /* as an origin's early answer: the connection goes on if the body had all come */
    ex_refuse(ex, f->pick.status, "", !relay_discard_body(ex));
    /* "fault NAME answered 503", without printf: a name fits (FAULT_NAME_MAX) */
    struct fmt_buf b;
    fmt_init(&b, ex->detail, sizeof(ex->detail) - 1);
    fmt_put(&b, "fault ", 6);
    fmt_str(&b, fault_text(f->rule, f->rule->name));
    fmt_put(&b, " answered ", 10);
    fmt_u64(&b, (uint64_t)f->pick.status);
    ex->detail[b.len] = '\0';
}

static void close_without_response(struct exchange *ex, bool reset)
{
    struct ex_fault *f = ex->fault;
    count(ex, reset ? FAULT_RESET : FAULT_DROP);
    ex->status = HTTP_NO_RESPONSE; /* nginx's 444 in the log: nothing was answered */
    ex->close_client = true;
    snprintf(ex->detail, sizeof(ex->detail), "fault %s %s the connection",
             fault_text(f->rule, f->rule->name), reset ? "reset" : "closed");
    ex_end(ex, reset ? OUTCOME_RESET : OUTCOME_DROPPED);
}

/* Runs the stages from where the fault is; returns when a timer takes over or it acted. */
static void advance(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    const struct fault_rule *r = f->rule;
    while (ex->outcome == OUTCOME_OPEN && f->stage != FX_DONE) {
        switch (f->stage) {
        case FX_DELAY:
            f->stage = FX_INTERIM;
            if (f->pick.delay_ms) {
                count(ex, FAULT_DELAY);
                ex_arm(&f->timer, f->pick.delay_ms);
                return;
            }
            break;
        case FX_INTERIM:
            if (f->interim_next >= r->ninterim) {
                f->stage = FX_ACT;
                break;
            }
            /* counted when one goes out: an HTTP/1.0 client gets none, as from an origin */
            if (interim_send(ex, r->interim[f->interim_next++]) && !f->interim_counted) {
                f->interim_counted = true;
                count(ex, FAULT_INTERIM);
            }
            if (r->interim_interval_ms) {
                ex_arm(&f->timer, r->interim_interval_ms);
                return;
            }
            break;
        case FX_ACT:
            f->stage = FX_DONE;
            if (f->pick.status) {
                answer(ex);
            } else if (r->failure != FAIL_NONE) {
                simulate(ex, r->failure); /* counted there: it may not be the rule's */
            } else if (r->drop || r->reset) {
                close_without_response(ex, r->reset);
            } else {
                ex_to_origin(ex);
            }
            break;
        case FX_DONE:
            break;
        }
    }
}

bool fault_exec_start(struct exchange *ex)
{
    if (!ex->fault)
        return false;
    advance(ex);
    return true;
}

/* ---- the response ---- */

bool fault_exec_hold_head(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    if (!f || !f->pick.response_delay_ms || f->head_released)
        return false;
    if (!f->holding) {
        f->holding = true;
        count(ex, FAULT_RESPONSE_DELAY);
        ex_arm(&f->timer, f->pick.response_delay_ms);
    }
    /* the origin is not read meanwhile; every resume (a drain of the client's output) comes
     * back here until the timer. The phase's timers run on: the response is late. */
    ex->upstream_paused = true;
    sock_read(ex->usock, false);
    return true;
}

bool fault_exec_holding_head(const struct exchange *ex)
{
    return ex->fault && ex->fault->holding && !ex->fault->head_released;
}

/* The body bytes the schedule allows by the end of tick n (n >= 1; the first tick begins with
 * the body): the rate's share of n ticks, rounded down on the whole (no overflow: a rate is at
 * most 2^40). Whole bytes of a slow rate come out as they fall due: 1 byte/s is a byte every
 * tenth tick, not one every tick. */
static uint64_t throttle_allowed(uint64_t rate, uint64_t n)
{
    return rate / THROTTLE_TICKS_S * n + rate % THROTTLE_TICKS_S * n / THROTTLE_TICKS_S;
}

/* What the throttle lets move now: what the schedule allowed by now less what moved. The
 * schedule runs from the body's start, not from when the last step went out, so the time a
 * step takes to leave (at 256 MiB/s a 25.6 MiB step takes 50 ms on loopback) and the timer's
 * lateness are not lost on every tick. A reader that fell behind (its output full) gets at
 * most THROTTLE_BURST_TICKS steps at once: the rest is forgiven, as a slow link does not
 * deliver in a burst what it could not carry meanwhile. */
static uint64_t throttle_quota(struct exchange *ex, struct ex_fault *f, uint64_t now)
{
    uint64_t rate = f->rule->throttle;
    uint64_t n = (now - f->throttle_start) / (THROTTLE_TICK_MS * 1000) + 1;
    uint64_t owed = throttle_allowed(rate, n) - f->throttle_forgiven - ex->resp_body.bytes;
    uint64_t burst = MAX(throttle_allowed(rate, THROTTLE_BURST_TICKS), 1);
    if (owed > burst) {
        f->throttle_forgiven += owed - burst;
        owed = burst;
    }
    return owed;
}

/* When the throttle's next byte falls due: the start of the first tick whose allowance goes
 * past what moved (at or before now when one is due already). */
static uint64_t throttle_due(const struct exchange *ex, const struct ex_fault *f)
{
    uint64_t rate = f->rule->throttle;
    uint64_t want = (ex->resp_body.bytes + f->throttle_forgiven + 1) * THROTTLE_TICKS_S;
    uint64_t n = (want + rate - 1) / rate; /* allowed(n) >= bytes + forgiven + 1 */
    return f->throttle_start + (n - 1) * THROTTLE_TICK_MS * 1000;
}

static bool truncates(const struct fault_rule *r)
{
    return r->set & (1u << FK_TRUNCATE);
}

/* What the body may move now: a throttle's quota (throttle_q; UINT64_MAX without one), never
 * past a truncate's cut, so that both act together (slow, then cut). */
static uint64_t body_quota(const struct exchange *ex, const struct ex_fault *f, uint64_t throttle_q)
{
    const struct fault_rule *r = f->rule;
    uint64_t q = throttle_q;
    if (truncates(r))
        q = MIN(q, r->truncate > ex->resp_body.bytes ? r->truncate - ex->resp_body.bytes : 0);
    return q;
}

void fault_exec_body_start(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    if (!f)
        return;
    /* Counted when they bite (fault_exec_body_stop): a body shorter than the cut, or sent
     * within one tick's quota, had nothing done to it. */
    if (f->rule->throttle)
        f->throttle_start = event_now_us();
    if (truncates(f->rule) || f->rule->throttle)
        ex->resp_body.quota =
            body_quota(ex, f, f->rule->throttle ? throttle_quota(ex, f, f->throttle_start)
                                                : UINT64_MAX);
}

/* The body stops after its quota as when the origin breaks off: FIN for a body whose end the
 * framing tells (the client sees it short), RST for one that ends at the close. */
static void truncate_body(struct exchange *ex)
{
    const char *addr = upconn_addr(ex->uc);
    if (ex->resp_body.in == H1_BODY_CLOSE) {
        ex_fail(ex, PHASE_READ, CAUSE_RESET, 0, "%s: %s", addr, strerror(ECONNRESET));
        return;
    }
    struct body_relay copy = ex->resp_body; /* its words for a premature end, nothing written */
    body_eof(&copy, ex->sink.out);
    ex_fail(ex, PHASE_READ, CAUSE_EOF, 0, "%s closed the connection mid-body: %s", addr,
            copy.error);
}

/* Whether a body byte past the cut is known to come: a Content-Length not reached, a chunk that
 * announced more data, bytes read before the close. The last chunk or the close may still come
 * instead: a body of exactly N bytes is whole, whatever its framing. */
static bool body_goes_on(const struct exchange *ex)
{
    const struct body_relay *b = &ex->resp_body;
    switch (b->in) {
    case H1_BODY_CHUNKED:
        return b->chunked.data_left > 0;
    case H1_BODY_CLOSE:
        return evbuffer_get_length(ex->usock->in) > 0;
    default:
        return true;
    }
}

bool fault_exec_body_stop(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    if (!f || ex->resp_body.quota || ex->resp_body.done)
        return false;
    if (truncates(f->rule) && ex->resp_body.bytes >= f->rule->truncate) {
        if (!body_goes_on(ex)) /* the origin's next bytes tell whether the body ends here */
            return false;
        count(ex, FAULT_TRUNCATE);
        truncate_body(ex);
        return true;
    }
    if (!f->throttle_counted) {
        f->throttle_counted = true;
        count(ex, FAULT_THROTTLE);
    }
    /* throttled: the origin waits (back-pressure) until the tick that refills the quota (a
     * time of the schedule: a drain of the client's output meanwhile does not push it back) */
    ex->upstream_paused = true;
    sock_read(ex->usock, false);
    /* An origin this slow, a byte less often than read_timeout, is cut by read_timeout: the
     * wait for the next step runs it, from the last bytes that went, as a real one's silence
     * would. A faster rate is not cut, however far apart its 100 ms steps: a real origin at
     * that rate is never silent that long. */
    uint64_t read_ms = phase_limit_ms(ex->up->timers_ms, PHASE_READ);
    if (read_ms && f->rule->throttle < 1000 && f->rule->throttle * read_ms < 1000)
        ex_arm(&ex->phase_timer, read_ms);
    else
        deadline_clear(&ex->phase_timer);
    deadline_set(&f->timer, throttle_due(ex, f), event_now_us());
    f->throttled = true;
    return true;
}

static void fault_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct ex_fault *f = arg;
    struct exchange *ex = f->ex;
    ex->now = event_now_us();
    if (!deadline_due(&f->timer, ex->now))
        return;
    if (f->throttled) {
        uint64_t q = throttle_quota(ex, f, ex->now);
        if (q) {
            ex->resp_body.quota = body_quota(ex, f, q);
            f->throttled = false;
            relay_resume(ex);
        } else { /* not due yet after all (the clock's rounding): wait for it */
            deadline_set(&f->timer, throttle_due(ex, f), ex->now);
        }
    } else if (f->holding) {
        f->holding = false;
        f->head_released = true;
        relay_resume(ex); /* reads the response as if it had just come */
    } else {
        advance(ex);
    }
    ex_settle(ex);
}

/* ---- what the client sees of it ---- */

const char *fault_exec_addr(const struct exchange *ex)
{
    return ex->fault && ex->fault->simulating ? ex->fault->addr : NULL;
}

bool fault_exec_simulating(const struct exchange *ex)
{
    return ex->fault && ex->fault->simulating;
}

const char *fault_exec_name(const struct exchange *ex)
{
    return ex->fault && !ex->fault->stood_down ? fault_text(ex->fault->rule, ex->fault->rule->name)
                                               : NULL;
}

size_t fault_exec_fields(const struct exchange *ex, struct h1_field *fields, size_t room)
{
    const char *name = fault_exec_name(ex);
    if (!name || !ex->cfg->faults.fault_header || room == 0)
        return 0;
    fields[0] = (struct h1_field){.name = "Portico-Fault", .name_len = 13, .value = name,
                                  .value_len = strlen(name)};
    return 1;
}

/* Sets the field of the line "Name: value": it takes the place of Portico's field of that name
 * (case-insensitively; one of the first `own`, which `replaced` marks), else it is appended, so
 * that a name the rule gives twice (Set-Cookie, Link) goes twice. */
static void set_field(struct h1_field *fields, size_t *n, size_t own, uint32_t *replaced,
                      size_t room, const char *line)
{
    const char *colon = strchr(line, ':');
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 2; /* stored as "Name: value" */
    struct h1_field nf = {.name = line, .name_len = nlen, .value = v, .value_len = strlen(v)};
    for (size_t i = 0; i < own; i++) {
        if (!(*replaced & (1u << i)) && fields[i].name_len == nlen &&
            strncasecmp(fields[i].name, line, nlen) == 0) {
            fields[i] = nf;
            *replaced |= 1u << i;
            return;
        }
    }
    if (*n < room)
        fields[(*n)++] = nf;
}

/* No body on the wire for these statuses (RFC 9110 6.4.1). */
static bool bodiless(int status)
{
    return status == HTTP_NO_CONTENT || status == HTTP_NOT_MODIFIED;
}

/* Those, and 205, whose body is framed but empty ("MUST NOT generate content", RFC 9110 15.3.6:
 * Content-Length: 0, as the simulator's /status/205 and a real origin send it). */
static bool no_content(int status)
{
    return bodiless(status) || status == HTTP_RESET_CONTENT;
}

/* Room for the line below: a status, a reason phrase (128 bytes at most, fault.c), a newline. */
#define ANSWER_LINE_MAX 256

/* The answer's body when it is not the error page's own: the rule's body, or the line with the
 * status and the rule's reason (in buf). Sets *len. NULL: the page's line for a client error,
 * "503 Service Unavailable\n", is the answer already (no body, no reason). */
static const char *answer_body(const struct ex_fault *f, char buf[ANSWER_LINE_MAX], size_t *len)
{
    const struct fault_rule *r = f->rule;
    if (r->body) {
        const char *body = fault_text(r, r->body);
        *len = strlen(body);
        return body;
    }
    if (!r->reason)
        return NULL;
    struct fmt_buf b;
    fmt_init(&b, buf, ANSWER_LINE_MAX);
    fmt_u64(&b, (uint64_t)f->pick.status);
    fmt_char(&b, ' ');
    fmt_str(&b, fault_text(r, r->reason));
    fmt_char(&b, '\n');
    *len = b.len;
    return buf;
}

void fault_exec_own_head(struct exchange *ex, struct errpage_out *o, struct h1_field *fields,
                         size_t room)
{
    struct ex_fault *f = ex->fault;
    if (!f)
        return;
    size_t n = MIN(o->head.nfields, room);
    memcpy(fields, o->head.fields, n * sizeof(*fields));
    n += fault_exec_fields(ex, fields + n, room - n);
    if (f->answering) {
        const struct fault_rule *r = f->rule;
        size_t own = MIN(n, 32); /* an error page's fields and Portico-Fault: a dozen at most */
        uint32_t replaced = 0;
        for (int i = 0; i < r->nheaders; i++)
            set_field(fields, &n, own, &replaced, room, fault_text(r, r->headers[i]));
        if (r->reason) {
            o->head.reason = fault_text(r, r->reason);
            o->head.reason_len = strlen(o->head.reason);
        }
        char buf[ANSWER_LINE_MAX];
        size_t len;
        if (answer_body(f, buf, &len))
            o->head.content_length = len;
        if (no_content(f->pick.status))
            o->head.content_length = 0;
        if (bodiless(f->pick.status)) {
            o->head.framing = H1_BODY_NONE;
            o->head.content_length = 0;
        }
    }
    o->head.fields = fields;
    o->head.nfields = n;
}

long fault_exec_own_body(struct exchange *ex, struct errpage_out *o, struct evbuffer *out)
{
    struct ex_fault *f = ex->fault;
    if (!f || !f->answering)
        return errpage_body(o, out);
    char buf[ANSWER_LINE_MAX];
    size_t len;
    const char *body = answer_body(f, buf, &len);
    if (!body && !no_content(f->pick.status))
        return errpage_body(o, out);
    bool head_only = o->e->head_only;
    errpage_release(o);
    if (head_only || no_content(f->pick.status))
        return 0;
    return evbuffer_add(out, body, len) == 0 ? (long)len : -1;
}

void fault_exec_end(struct exchange *ex)
{
    struct ex_fault *f = ex->fault;
    if (!f)
        return;
    deadline_stop(&f->timer);
    fault_release(f->state);
    fault_free(f);
    ex->fault = NULL;
}
