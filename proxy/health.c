/*
 * health.c — active health checks. See health.h.
 *
 * One probe per (upstream, origin) with a check: WAITING for its timer, or CHECKING with an
 * origin connection and the same timer as the check's deadline. Every outcome goes through
 * end_check(), which closes the connection and arms the next check one interval after this one
 * started; verdict() then gives the check's result to the balancer, which counts it toward
 * rise or fall, unless our own shortage ended it (no_verdict: counted toward neither). A next
 * check libevent had no memory to arm leaves the probe unarmed: the worker's 1-second tick
 * (health_tick) arms it again, so the checker recovers by itself once memory is back.
 */
#include "portico/health.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/failure.h"
#include "portico/generation.h"
#include "portico/http1.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/phase.h"
#include "portico/sock.h"
#include "portico/tls.h"
#include "portico/upstream.h"
#include "portico/util.h"

#define PROBE_STATE_LIST(X)                                                                        \
    X(PROBE_WAITING, "waiting")     /* the timer brings the next check */                          \
    X(PROBE_CHECKING, "checking")   /* a check runs; the timer is its deadline */

enum probe_state {
#define X(id, name) id,
    PROBE_STATE_LIST(X)
#undef X
};

struct probe {
    struct health *health;             /* back pointer */
    int upstream;
    int origin;
    enum probe_state state;
    struct upconn *uc;                 /* owned while CHECKING */
    enum phase phase;                  /* while CHECKING: dns, connect or tls, then SEND once
                                          connected (the request goes out) */
    struct event timer;
    uint64_t started_us;               /* the running (or last) check began */
    bool shortage_said;                /* a check our shortage ended was logged: once until one
                                          ends with a verdict */
    unsigned interim;                  /* 1xx heads the running check read */
    bool unarmed;                      /* WAITING with no timer: its next check could not be
                                          armed; health_tick tries again */
    uint64_t due_us;                   /* while unarmed: when that check was due */
};

/* 1xx heads a check reads before it fails: as many as an exchange relays. Parsing a stream of
 * them until the timeout cost a flooding origin's check most of a core of worker 0 (4.4 CPU
 * seconds for a 5 s check), and the verdict came only then. */
#define CHECK_MAX_INTERIM 32

struct health {
    struct loop *loop;                 /* borrowed */
    int unarmed;                       /* probes unarmed: health_tick's work, 0 almost always */
    int n;
    struct probe probes[];
};

static const struct health_check_conf *check_of(const struct probe *p)
{
    return &p->health->loop->cfg->upstreams[p->upstream].health;
}

static const char *origin_text(const struct probe *p)
{
    return p->health->loop->cfg->upstreams[p->upstream].origins[p->origin].text;
}

/* Arms the probe's timer; false when libevent had no memory for it (its timer heap). */
static bool arm(struct probe *p, uint64_t us)
{
    struct timeval tv = tv_from_us(us);
    return evtimer_add(&p->timer, &tv) == 0;
}

/* Says, on the balancer /status reads, whether the probe's checks are stopped. */
static void set_unarmed(struct probe *p, bool unarmed)
{
    struct health *h = p->health;
    h->unarmed += unarmed ? 1 : -1;
    p->unarmed = unarmed;
    balancer_checks_stopped(h->loop->gen->balancers[p->upstream], p->origin, unarmed);
}

/* Arms the next check. Unarmed, the probe would never check again, the origin's state frozen
 * until a reload (one marked down stayed down whatever it did): health_tick tries again every
 * second, and the log says when the checks stop and when they resume. */
static void arm_next(struct probe *p, uint64_t us)
{
    if (arm(p, us))
        return;
    p->due_us = now_us() + us;
    set_unarmed(p, true); /* a probe is armed when this is called */
    /* Said at each stop and resumption: a stop comes only here, once per check, so at most
     * two lines per check interval, and the log's last word is always the probe's state. */
    log_error("health check of %s: no timer for the next check (out of memory): checks of it "
              "stopped, its last verdict stands; tried again every second", origin_text(p));
}

/* The end of a check: the connection closed, the next check armed one interval after this one
 * started. */
static void end_check(struct probe *p)
{
    const struct health_check_conf *hc = check_of(p);
    upconn_abort(p->uc);
    p->uc = NULL;
    p->state = PROBE_WAITING;
    event_del(&p->timer);
    uint64_t spent = now_us() - p->started_us, every = hc->interval_ms * 1000;
    arm_next(p, spent < every ? every - spent : 0);
}

/* A check that showed the origin passing or failing: the balancer told, which decides with the
 * checks before it (rise, fall). */
static void verdict(struct probe *p, enum check_state s, const char *why)
{
    struct loop *l = p->health->loop;
    end_check(p);
    p->shortage_said = false;
    if (s == CHECK_FAILING)
        metrics_add(l->metrics, M_HEALTH_CHECKS_FAILED, 1);
    log_debug("health check of %s: %s%s%s", l->cfg->upstreams[p->upstream].origins[p->origin].text,
              s == CHECK_PASSING ? "passed" : "failed", why ? ": " : "", why ? why : "");
    balancer_check(l->gen->balancers[p->upstream], p->origin, s, why);
}

/* A check our own shortage ended (out of descriptors or memory): it showed nothing of the
 * origin, whose last verdict stands, as passive health leaves it alone for a request, and it
 * neither breaks nor extends the run of checks toward rise or fall. Marking it down kept clients
 * on 503 no_healthy_origin until the next check, descriptors long back. */
static void no_verdict(struct probe *p, const char *why)
{
    struct loop *l = p->health->loop;
    /* Said before the check ends: why may be the connection's own words (an upstream detail),
     * freed with it by end_check. */
    if (!p->shortage_said)
        log_warn("health check of %s not made (%s); its last verdict stands",
                 l->cfg->upstreams[p->upstream].origins[p->origin].text, why);
    p->shortage_said = true;
    end_check(p);
}

static void fail_check(struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail_check(struct probe *p, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    verdict(p, CHECK_FAILING, why);
}

/* Response heads as they arrive: 1xx are skipped (up to CHECK_MAX_INTERIM), the final status
 * decides. */
static void read_status(struct probe *p, struct sock *s)
{
    const struct health_check_conf *hc = check_of(p);
    size_t max = p->health->loop->cfg->max_header_size;
    for (;;) {
        size_t len = evbuffer_get_length(s->in);
        size_t n = MIN(len, max);
        const char *head = (const char *)evbuffer_pullup(s->in, (ev_ssize_t)n);
        if (!head && n) {
            no_verdict(p, "out of memory"); /* ours: nothing of the origin */
            return;
        }
        struct h1_response resp;
        struct h1_error err;
        int rc = len ? h1_parse_response(head, n, max, &resp, &err) : -2;
        if (rc == -2)
            return; /* more to come, within the deadline (and max_header_size: the limit) */
        if (rc < 0) {
            fail_check(p, "invalid response: %s", err.reason);
            return;
        }
        if (resp.status >= 200 || hc->expect_lo < 200) {
            if (resp.status >= hc->expect_lo && resp.status <= hc->expect_hi)
                verdict(p, CHECK_PASSING, NULL);
            else
                fail_check(p, "%s %s answered %d", hc->method, hc->path, resp.status);
            return;
        }
        if (++p->interim > CHECK_MAX_INTERIM) {
            fail_check(p, "more than %d interim responses", CHECK_MAX_INTERIM);
            return;
        }
        evbuffer_drain(s->in, (size_t)rc);
        sock_consumed(s);
    }
}

/* The check's connection failed. Over TLS 1.3 an origin refusing our certificate (or its
 * absence) says so with an alert after the handshake, once the check's request is out: the
 * alert, read here when the reset behind it was met first, is why, not the reset or a bare
 * "connection error" (an origin kept down by its check shows no request that could say it). */
static void fail_connection(struct probe *p, struct sock *s)
{
    char why[160];
    const char *cert = p->health->loop->cfg->upstreams[p->upstream].client_cert;
    unsigned long e = s->ssl_err ? s->ssl_err : sock_tls_alert(s);
    if (tls_alert_refuses_handshake(e)) {
        tls_error_text(e, cert, why, sizeof(why));
        fail_check(p, "refused the TLS handshake: %s", why);
    } else if (s->ssl_err) {
        tls_error_text(s->ssl_err, cert, why, sizeof(why));
        fail_check(p, "TLS error: %s", why);
    } else if (s->err && cause_from_errno(s->err) == CAUSE_LOCAL) {
        /* our shortage (out of memory to read or to watch the socket), not the origin's */
        no_verdict(p, strerror(s->err));
    } else {
        fail_check(p, "%s", s->err ? strerror(s->err) : "connection error");
    }
}

static void probe_sock_cb(void *arg, enum sock_event ev)
{
    struct probe *p = arg;
    struct sock *s = upconn_sock(p->uc);
    switch (ev) {
    case SOCK_READABLE:
        read_status(p, s);
        return;
    case SOCK_EOF:
        read_status(p, s); /* a head may have come with the close */
        if (p->state == PROBE_CHECKING)
            fail_check(p, "closed the connection without a complete response");
        return;
    case SOCK_ERROR:
        fail_connection(p, s);
        return;
    case SOCK_WRITE_TIMEOUT:
    case SOCK_READ_TIMEOUT:
    case SOCK_DRAINED:
    case SOCK_CONNECTED:
    case SOCK_DEADLINE: /* none set */
        return;
    }
}

static void on_phase(void *arg, enum phase phase)
{
    struct probe *p = arg;
    p->phase = phase; /* the check's deadline covers every phase; its message names this one */
}

/* The check's Host: the host its connection was made for. A TLS upstream's `sni` is that host
 * (the certificate was checked against it): Host: 127.0.0.1:8443 on a connection made for
 * api.example.com is one a name-based virtual host answers 404 or 421 (Misdirected Request),
 * and every origin failed its check while the clients' own requests would have been answered.
 * An IPv6 sni (which would need brackets) keeps the origin's text. */
static void check_host(const struct probe *p, char *out, size_t size)
{
    const struct upstream_conf *up = &p->health->loop->cfg->upstreams[p->upstream];
    const struct origin_conf *oc = &up->origins[p->origin];
    if (oc->is_sim)
        snprintf(out, size, "%s", upconn_addr(p->uc));
    else if (up->tls && up->sni && !strchr(up->sni, ':') && oc->port == 443)
        snprintf(out, size, "%s", up->sni);
    else if (up->tls && up->sni && !strchr(up->sni, ':'))
        snprintf(out, size, "%s:%u", up->sni, (unsigned)oc->port);
    else
        snprintf(out, size, "%s", oc->text);
}

/* Connected: the request goes out, the answer is read. */
static void on_ready(void *arg)
{
    struct probe *p = arg;
    const struct health_check_conf *hc = check_of(p);
    struct sock *s = upconn_sock(p->uc);
    char host[300];
    check_host(p, host, sizeof(host));
    p->phase = PHASE_SEND;
    upconn_mark_used(p->uc);
    sock_set_cb(s, probe_sock_cb, p);
    sock_set_read_limit(s, p->health->loop->cfg->max_header_size + 1);
    sock_read(s, true);
    /* out of memory the request is not written (the addition goes whole or not at all): no
     * answer would come, and the timeout would be counted against the origin */
    if (evbuffer_add_printf(s->out, "%s %s HTTP/1.1\r\nHost: %s\r\n"
                                    "User-Agent: portico-health-check\r\nConnection: close\r\n\r\n",
                            hc->method, hc->path, host) < 0) {
        no_verdict(p, "out of memory");
        return;
    }
    sock_flush(s); /* a failure comes back as SOCK_ERROR */
}

static void on_error(void *arg, enum cause cause, const char *detail)
{
    if (cause == CAUSE_LOCAL || cause == CAUSE_NO_LOCAL_PORT)
        no_verdict(arg, detail);
    else
        fail_check(arg, "%s", detail);
}

static const struct upconn_events probe_events = {
    .on_phase = on_phase,
    .on_ready = on_ready,
    .on_error = on_error,
};

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct probe *p = arg;
    const struct health_check_conf *hc = check_of(p);
    if (p->state == PROBE_CHECKING) {
        /* A check stuck before its request went out says where, as an exchange's timeout does:
         * "no answer" for a resolver that never answered sent operators to the origin's HTTP. */
        const struct origin_conf *oc =
            &p->health->loop->cfg->upstreams[p->upstream].origins[p->origin];
        /* An origin name's next address, with a fresh timeout, as a request's connect_timeout
         * moves on (README: origin): an IPv4 address that never answers otherwise failed every
         * check of a name whose IPv6 one serves the requests, and marked the origin down. */
        if (p->phase == PHASE_CONNECT && upconn_connect_next(p->uc)) {
            if (!arm(p, hc->timeout_ms * 1000))
                no_verdict(p, "out of memory for its deadline");
            return;
        }
        char why[200];
        const char *dns_failure = p->phase == PHASE_DNS ? upconn_dns_failure(p->uc) : NULL;
        if (p->phase == PHASE_SEND)
            snprintf(why, sizeof(why), "no answer within %llu ms",
                     (unsigned long long)hc->timeout_ms);
        else if (dns_failure) /* the resolver's answer, as ex_phase_timeout gives it */
            snprintf(why, sizeof(why), "resolving %s failed: %s", oc->host, dns_failure);
        else if (p->phase == PHASE_CONNECT) /* how many of the name's addresses were tried */
            upconn_tried_note(p->uc, why, sizeof(why),
                              phase_timeout_detail(p->phase, upconn_addr(p->uc), hc->timeout_ms,
                                                   why, sizeof(why)));
        else if (p->phase == PHASE_DNS) /* and whether it was asked over TCP */
            upconn_dns_timeout(p->uc, false, why, sizeof(why),
                               phase_timeout_detail(p->phase, oc->host, hc->timeout_ms, why,
                                                    sizeof(why)));
        else
            phase_timeout_detail(p->phase,
                                 phase_subject(p->phase) == SUBJECT_HOST ? oc->host
                                                                         : upconn_addr(p->uc),
                                 hc->timeout_ms, why, sizeof(why));
        fail_check(p, "%s", why);
        return;
    }
    struct loop *l = p->health->loop;
    /* An origin in maint (the admin API) is not checked: it may be down for its deploy, and
     * its failures would say nothing. Its last verdict stands; checks go on when it leaves. */
    if (balancer_origin_admin(l->gen->balancers[p->upstream], p->origin) == ORIGIN_ADMIN_MAINT) {
        arm_next(p, hc->interval_ms * 1000);
        return;
    }
    p->started_us = now_us();
    metrics_add(l->metrics, M_HEALTH_CHECKS, 1);
    p->uc = upconn_open(l, p->upstream, p->origin, &probe_events, p);
    if (!p->uc) {
        no_verdict(p, "out of memory");
        return;
    }
    p->state = PROBE_CHECKING;
    p->interim = 0;
    p->phase = PHASE_CONNECT; /* until the start reports its first phase (dns for a name) */
    if (!arm(p, hc->timeout_ms * 1000)) /* a check without its deadline could wait for ever */
        no_verdict(p, "out of memory for its deadline");
}

int health_start(struct loop *l, struct health **out)
{
    const struct config *cfg = l->cfg;
    int n = 0;
    *out = NULL;
    for (int u = 0; u < cfg->nupstreams; u++)
        if (cfg->upstreams[u].health.interval_ms)
            n += cfg->upstreams[u].norigins;
    if (n == 0)
        return 0;
    struct health *h = calloc(1, sizeof(*h) + (size_t)n * sizeof(h->probes[0]));
    if (!h)
        return -1;
    h->loop = l;
    for (int u = 0; u < cfg->nupstreams; u++) {
        for (int o = 0; cfg->upstreams[u].health.interval_ms && o < cfg->upstreams[u].norigins;
             o++) {
            struct probe *p = &h->probes[h->n++];
            *p = (struct probe){.health = h, .upstream = u, .origin = o};
            evtimer_assign(&p->timer, l->base, timer_cb, p);
            arm_next(p, 0);
        }
    }
    *out = h;
    return 0;
}

void health_tick(struct health *h)
{
    if (!h || !h->unarmed)
        return;
    uint64_t now = now_us();
    for (int i = 0; i < h->n; i++) {
        struct probe *p = &h->probes[i];
        if (!p->unarmed || !arm(p, p->due_us > now ? p->due_us - now : 0))
            continue;
        set_unarmed(p, false);
        log_warn("health check of %s: its timer armed again: checks of it resumed",
                 origin_text(p));
    }
}

void health_stop(struct health *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n; i++) {
        event_del(&h->probes[i].timer);
        upconn_abort(h->probes[i].uc);
    }
    free(h);
}
