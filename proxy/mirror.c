/*
 * mirror.c — request mirroring (mirror.h): the copy an exchange keeps while its request goes
 * out, and the mirror requests, each its own owner on the loop.
 *
 * A mirror request opens its own connection (never pooled: it asks Connection: close), writes
 * the copy, reads whatever comes back and drops it, and ends at the mirror origin's close, an
 * error or its timer, whichever comes first: one exit (finish) per event. Its timer is the
 * mirror upstream's own phase timers (dns, connect, tls, send, first_byte, read), as a request
 * to that upstream would have them. Nothing of it reaches the exchange that made the copy.
 */
#include "portico/mirror.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "portico/config.h"
#include "portico/deadline.h"
#include "portico/headers.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/phase.h"
#include "portico/sock.h"
#include "portico/upstream.h"
#include "portico/util.h"

/* Failed mirror requests are logged at most once per this many µs per worker (a staging origin
 * down fails every one of them), the next line saying how many were left out. */
#define MIRROR_LOG_EVERY_US 1000000

/* A mirror's answer is read up to this many bytes, then its connection closed: past it, reading
 * staging's bytes would cost a production worker without end (an answer that never ends). */
#define MIRROR_ANSWER_MAX (1024 * 1024)

/* One mirror request under way: owned by the loop's list, by nothing else. */
struct mirror {
    TAILQ_ENTRY(mirror) link;
    struct loop *loop;                 /* borrowed */
    const struct upstream_conf *up;    /* borrowed from the loop's configuration */
    int route;                         /* index of the route it copies, for its count */
    struct upconn *uc;                 /* owned */
    struct evbuffer *req;              /* owned: the request, until it goes to the socket */
    struct deadline timer;             /* the current phase's limit */
    enum phase phase;
    bool answered;                     /* a response began ("HTTP/"): it counts as answered */
    size_t answer_len;                 /* bytes of it read and dropped */
};

TAILQ_HEAD(mirror_list, mirror);

struct mirror_set {
    struct mirror_list flying;         /* mirror requests under way */
    unsigned in_flight;                /* how many */
    uint64_t log_at;                   /* µs: when the last failure line was written */
    unsigned log_left_out;             /* failures not logged since */
    unsigned *next_origin;             /* [nupstreams]: round robin over a mirror's origins */
    unsigned sample[];                 /* [nroutes]: mirror_percent's running sum */
};

/* The copy an exchange keeps while its request goes out (owned by the exchange). */
struct mirror_copy {
    struct evbuffer *buf;              /* owned: the head, then the body as it is sent */
    const struct route_conf *route;    /* borrowed */
    int route_index;
    size_t head_len;
    bool body;                         /* mirror_body: the body goes too */
    bool over;                         /* the body passed MIRROR_BODY_MAX: not sent */
};

static void count(struct loop *l, int route, enum mirror_outcome o, int n)
{
    for (int i = 0; i < n; i++)
        metrics_mirror(l->metrics, route, o);
}

int mirror_loop_init(struct loop *l)
{
    size_t nroutes = (size_t)MAX(l->cfg->nroutes, 0), nups = (size_t)MAX(l->cfg->nupstreams, 0);
    struct mirror_set *ms = calloc(1, sizeof(*ms) + nroutes * sizeof(ms->sample[0]));
    if (!ms)
        return -1;
    ms->next_origin = calloc(nups + 1, sizeof(*ms->next_origin));
    if (!ms->next_origin) {
        free(ms);
        return -1;
    }
    TAILQ_INIT(&ms->flying);
    l->mirror = ms;
    return 0;
}

/* ---- one mirror request ---- */

/* The one exit of a mirror request: counted, logged when it failed (rate-limited), freed. */
static void finish(struct mirror *m, enum mirror_outcome o, const char *why)
{
    struct loop *l = m->loop;
    struct mirror_set *ms = l->mirror;
    if (o == MIRROR_FAILED) {
        uint64_t now = now_us();
        if (now - ms->log_at >= MIRROR_LOG_EVERY_US || ms->log_at == 0) {
            char more[48] = "";
            if (ms->log_left_out)
                snprintf(more, sizeof(more), " (%u more left out)", ms->log_left_out);
            log_warn("mirror to [upstream %s] (route %s) failed in %s: %s%s", m->up->name,
                     l->cfg->routes[m->route].name, phase_name(m->phase), why, more);
            ms->log_at = now;
            ms->log_left_out = 0;
        } else {
            ms->log_left_out++;
        }
    }
    deadline_stop(&m->timer);
    if (m->uc)
        upconn_abort(m->uc);
    if (m->req)
        evbuffer_free(m->req);
    TAILQ_REMOVE(&ms->flying, m, link);
    ms->in_flight--;
    metrics_mirror(l->metrics, m->route, o);
    free(m);
}

/* Enters phase p under its limit from the mirror upstream's timers (0: none). */
static void enter(struct mirror *m, enum phase p)
{
    m->phase = p;
    uint64_t ms = phase_limit_ms(m->up->timers_ms, p);
    if (ms)
        deadline_in_ms(&m->timer, ms, now_us());
    else
        deadline_clear(&m->timer);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct mirror *m = arg;
    if (!deadline_due(&m->timer, now_us()))
        return;
    finish(m, m->answered ? MIRROR_ANSWERED : MIRROR_FAILED, "timed out");
}

/* What came back is dropped; its first bytes say whether it is a response. */
static void read_answer(struct mirror *m, struct sock *s)
{
    size_t n = evbuffer_get_length(s->in);
    if (!m->answered && n >= 5) {
        const unsigned char *p = evbuffer_pullup(s->in, 5);
        m->answered = p && memcmp(p, "HTTP/", 5) == 0;
        if (!m->answered) {
            finish(m, MIRROR_FAILED, "not an HTTP response");
            return;
        }
    }
    if (m->answered) {
        evbuffer_drain(s->in, n);
        sock_consumed(s);
        m->answer_len += n;
        if (m->answer_len >= MIRROR_ANSWER_MAX) {
            finish(m, MIRROR_ANSWERED, "answer past its bound");
            return;
        }
    }
    /* read_timeout runs from the first byte, not from each: an answer trickled without end
     * would hold its place in mirror_max_in_flight for ever */
    if (m->phase != PHASE_READ)
        enter(m, PHASE_READ);
}

static void mirror_sock_cb(void *arg, enum sock_event ev)
{
    struct mirror *m = arg;
    struct sock *s = upconn_sock(m->uc);
    switch (ev) {
    case SOCK_READABLE:
        read_answer(m, s);
        break;
    case SOCK_DRAINED:
        if (m->phase == PHASE_SEND)
            enter(m, PHASE_FIRST_BYTE);
        break;
    case SOCK_EOF:
        finish(m, m->answered ? MIRROR_ANSWERED : MIRROR_FAILED, "closed without an answer");
        break;
    case SOCK_ERROR:
        finish(m, m->answered ? MIRROR_ANSWERED : MIRROR_FAILED, "connection error");
        break;
    case SOCK_CONNECTED:
    case SOCK_READ_TIMEOUT:
    case SOCK_WRITE_TIMEOUT:
    case SOCK_DEADLINE: /* none set: the mirror's own timer bounds every phase */
        break;
    }
}

static void on_phase(void *arg, enum phase p)
{
    enter(arg, p);
}

static void on_ready(void *arg)
{
    struct mirror *m = arg;
    struct sock *s = upconn_sock(m->uc);
    sock_set_cb(s, mirror_sock_cb, m);
    sock_set_timeouts(s, 0, 0);
    sock_read(s, true);
    enter(m, PHASE_SEND);
    int rc = evbuffer_add_buffer(s->out, m->req);
    evbuffer_free(m->req);
    m->req = NULL;
    if (rc != 0) {
        finish(m, MIRROR_FAILED, "out of memory");
        return;
    }
    if (sock_flush(s) == 0) /* 1: SOCK_DRAINED follows; -1: SOCK_ERROR does */
        enter(m, PHASE_FIRST_BYTE);
}

static void on_error(void *arg, enum cause cause, const char *detail)
{
    (void)cause;
    finish(arg, MIRROR_FAILED, detail ? detail : "failed");
}

static void on_next_address(void *arg, const char *why)
{
    (void)why;
    enter(arg, PHASE_CONNECT);
}

static const struct upconn_events mirror_cbs = {
    .on_phase = on_phase,
    .on_ready = on_ready,
    .on_error = on_error,
    .on_next_address = on_next_address,
};

/* Starts one mirror request to upstream u with req (taken). */
static void start(struct loop *l, int route, int u, struct evbuffer *req)
{
    struct mirror_set *ms = l->mirror;
    struct mirror *m = calloc(1, sizeof(*m));
    if (!m) {
        evbuffer_free(req);
        metrics_mirror(l->metrics, route, MIRROR_FAILED);
        return;
    }
    m->loop = l;
    m->up = &l->cfg->upstreams[u];
    m->route = route;
    m->req = req;
    deadline_init(&m->timer, l->clock, timer_cb, m);
    TAILQ_INSERT_TAIL(&ms->flying, m, link);
    ms->in_flight++;
    int origin = (int)(ms->next_origin[u]++ % (unsigned)m->up->norigins);
    enter(m, PHASE_DNS);
    m->uc = upconn_open(l, u, origin, &mirror_cbs, m); /* its events come from the loop */
    if (!m->uc)
        finish(m, MIRROR_FAILED, "out of memory");
}

/* ---- the exchange's copy ---- */

/* mirror_percent: exactly P of every 100 requests of the route on this worker, evenly spread
 * (a running sum, not a coin: a test, and an operator, see the share asked). */
static bool sampled(struct mirror_set *ms, const struct route_conf *r, int route)
{
    if (r->mirror_percent >= 100)
        return true;
    ms->sample[route] += (unsigned)r->mirror_percent;
    if (ms->sample[route] < 100)
        return false;
    ms->sample[route] -= 100;
    return true;
}

struct mirror_copy *mirror_copy_new(struct loop *l, const struct route_conf *r, int route,
                                    const struct h1_request *req, const struct fwd_request *fwd,
                                    bool streaming)
{
    struct mirror_set *ms = l->mirror;
    if (!ms || route < 0 || route >= l->cfg->nroutes)
        return NULL;
    enum mirror_outcome skip = MIRROR_OUTCOME_COUNT;
    if (!sampled(ms, r, route))
        skip = MIRROR_SAMPLED_OUT;
    else if (streaming)
        skip = MIRROR_STREAMING;
    else if (r->mirror_body && fwd->framing == H1_BODY_LENGTH &&
             fwd->content_length > MIRROR_BODY_MAX)
        skip = MIRROR_TOO_LARGE; /* announced larger: not a byte of it is copied */
    else if (ms->in_flight >= l->cfg->mirror_max_in_flight)
        skip = MIRROR_DROPPED;
    if (skip != MIRROR_OUTCOME_COUNT) {
        count(l, route, skip, r->nmirrors);
        return NULL;
    }
    struct mirror_copy *c = calloc(1, sizeof(*c));
    struct evbuffer *head = evbuffer_new();
    if (!c || !head || !(c->buf = evbuffer_new()))
        goto fail;
    /* The origin's head, less what concerns only its connection: no 100-continue to wait for
     * (the body follows at once), no upgrade; without mirror_body, no body at all. */
    struct fwd_request f = *fwd;
    f.keep_expect = false;
    f.upgrade = false;
    if (!r->mirror_body) {
        f.framing = H1_BODY_NONE;
        f.content_length = 0;
    }
    static const char tail[] = MIRROR_MARKER "\r\nConnection: close\r\n\r\n";
    if (hdr_write_request(head, req, &f) != 0 || evbuffer_get_length(head) < 4 ||
        evbuffer_remove_buffer(head, c->buf, evbuffer_get_length(head) - 2) < 0 ||
        evbuffer_add(c->buf, tail, sizeof(tail) - 1) != 0)
        goto fail; /* (the head's last CRLF is left in head: the marker goes before it) */
    evbuffer_free(head);
    c->route = r;
    c->route_index = route;
    c->head_len = evbuffer_get_length(c->buf);
    c->body = r->mirror_body;
    return c;
fail:
    if (head)
        evbuffer_free(head);
    if (c && c->buf)
        evbuffer_free(c->buf);
    free(c);
    count(l, route, MIRROR_FAILED, r->nmirrors);
    return NULL;
}

void mirror_copy_body(struct mirror_copy *c, struct evbuffer *out, size_t from)
{
    size_t n = evbuffer_get_length(out) - from;
    if (!c->body || c->over || n == 0)
        return;
    /* Copy before the origin's socket drains out: these bytes leave it at the next flush. */
    struct evbuffer_iovec v;
    struct evbuffer_ptr at;
    if (evbuffer_get_length(c->buf) - c->head_len + n > MIRROR_BODY_MAX ||
        evbuffer_reserve_space(c->buf, (ev_ssize_t)n, &v, 1) != 1 ||
        evbuffer_ptr_set(out, &at, from, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(out, &at, v.iov_base, n) != (ev_ssize_t)n) {
        c->over = true; /* too large (or no memory for it): the copy's body is let go */
        evbuffer_drain(c->buf, evbuffer_get_length(c->buf));
        return;
    }
    v.iov_len = n;
    evbuffer_commit_space(c->buf, &v, 1);
}

void mirror_copy_free(struct loop *l, struct mirror_copy *c)
{
    count(l, c->route_index, c->over ? MIRROR_TOO_LARGE : MIRROR_UNSENT, c->route->nmirrors);
    evbuffer_free(c->buf);
    free(c);
}

void mirror_copy_send(struct loop *l, struct mirror_copy *c)
{
    const struct route_conf *r = c->route;
    if (c->over || l->state == LOOP_STOPPING) {
        mirror_copy_free(l, c);
        return;
    }
    size_t len = evbuffer_get_length(c->buf);
    for (int i = 0; i < r->nmirrors; i++) {
        if (l->mirror->in_flight >= l->cfg->mirror_max_in_flight) {
            metrics_mirror(l->metrics, c->route_index, MIRROR_DROPPED);
            continue;
        }
        /* the last one takes the copy itself, the others a copy of it */
        struct evbuffer *req = c->buf;
        if (i < r->nmirrors - 1) {
            const unsigned char *p = evbuffer_pullup(c->buf, -1);
            req = evbuffer_new();
            if (!req || !p || evbuffer_add(req, p, len) != 0) {
                if (req)
                    evbuffer_free(req);
                metrics_mirror(l->metrics, c->route_index, MIRROR_FAILED);
                continue;
            }
        } else {
            c->buf = NULL;
        }
        start(l, c->route_index, r->mirrors[i], req);
    }
    if (c->buf)
        evbuffer_free(c->buf);
    free(c);
}

void mirror_loop_free(struct loop *l)
{
    struct mirror_set *ms = l->mirror;
    if (!ms)
        return;
    struct mirror *m;
    while ((m = TAILQ_FIRST(&ms->flying)) != NULL)
        finish(m, MIRROR_CUT, "cut");
    free(ms->next_origin);
    free(ms);
    l->mirror = NULL;
}
