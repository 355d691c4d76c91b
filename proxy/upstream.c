/*
 * upstream.c — opening origin connections: DNS, connect, TLS handshake; the connection's
 * accessors and its end. The loop's pool of idle ones is upstream_pool.c; both share
 * upstream_int.h.
 *
 * A connection walks OPENING → RESOLVING → CONNECTING → HANDSHAKE → ACTIVE, and between
 * requests IDLE in its loop's pool; every state change goes through set_state. A failed connect
 * to a name's address goes CONNECTING again to its next one, or RESOLVING again once to ask for
 * the name's other families (THE ADDRESSES OF A NAME, below). The caller (the
 * exchange) owns the phase timers; this module only reports where it is and what went wrong,
 * with a cause the failure table understands. upconn_open only schedules the start, so every
 * report reaches the caller from the loop and never from inside its own call. Connect is done
 * by hand (non-blocking connect + EV_WRITE) so that the TCP and TLS phases are distinct and the
 * TLS session starts on a connected socket.
 */
#include "upstream_int.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/dns_tcp.h"
#include "portico/fmt.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/phase.h"
#include "portico/sock.h"
#include "portico/tls.h"
#include "portico/util.h"

#define UPSTREAM_NOTSENT_LOWAT (1024 * 1024) /* unsent bytes the kernel queues for an origin */

/* Addresses of a name tried in one attempt, at most: a connect that is never answered costs a
 * whole connect_timeout (5 s by default), so 8 such bound the attempt to 40 s before
 * total_timeout does; 8 is also as many as DNS load balancing commonly hands out at once (Route
 * 53's multivalue answers), and a 512-byte answer holds some 30. The list (under 500 bytes) is
 * allocated for names only, and freed once connected. */
#define UPCONN_ADDRS_MAX 8
_Static_assert(DNS_WIRE_ADDRS_MAX == UPCONN_ADDRS_MAX, "an answer over TCP keeps as many");

/* Address families seen in a name's answers (upconn_addrs.families). */
enum { FAMILY_IPV4 = 1, FAMILY_IPV6 = 2 };

enum addrs_step {
    ADDRS_TRYING,   /* connecting to one of them */
    ADDRS_ASKING,   /* asking the name again for every family (state UC_RESOLVING) */
    ADDRS_GIVEN_UP, /* connect_timeout ended that question: the last failure is on its way */
};

/* THE ADDRESSES OF A NAME. Every address of the answer is kept, IPv4 ones first in answer order,
 * then IPv6 ones (README: origin), and a connect that fails for the network's reasons (refused,
 * unreachable, reset, connect_timeout; not our own shortages) moves to the next, each with its
 * own connect_timeout, as nginx moves to a name's next peer and curl to its next address. Only
 * when all failed does the attempt fail, with the last one's failure (an earlier one's when the
 * host had no use for the last: earlier_failure_stands). The first answer was asked
 * with AI_ADDRCONFIG, which on a host without a global IPv6 address (loopback, link-local and
 * unique local ones do not count: containers, Kubernetes pods) asks for A records only: once
 * those all failed, and the answer held one family only, the name is asked again for every
 * family and its other addresses are tried too (a name with A 127.0.0.1 and AAAA ::1 whose
 * origin listens on ::1 only). An address that failed is remembered in the loop's pool for the
 * upstream's down_time (ADDR_FAILURES_MAX of them, per upstream): later connections try it after
 * the name's others, so one that never answers costs one connect_timeout per down_time, not one
 * per connection; one that connects is forgotten. A name whose question asked again gave more
 * addresses is asked for every family from then on (every_family); one whose question found
 * nothing new, or no answer in time, is not asked again for down_time (ask_again_at). */
struct upconn_addrs {
    unsigned n;                            /* known */
    unsigned next;                         /* the next to try; also how many were tried */
    unsigned families;                     /* FAMILY_ bits seen in the answers */
    enum addrs_step step;                  /* what is under way */
    enum cause cause;                      /* the attempt's failure so far (next_address) */
    char detail[200];                      /* and its words */
    bool host_only;                        /* of an address this host had no use for */
    union upconn_sa a[UPCONN_ADDRS_MAX];
};

static void start_connect(struct upconn *c);
static void connect_next(struct upconn *c);
static bool resolve(struct upconn *c, int flags);
static struct addr_failure *failure_of(const struct upconn *c, const union upconn_sa *a);

/* ---- opening ---- */

void upconn_free(struct upconn *c)
{
    metrics_conn_add(c->loop->metrics, CONN_UPSTREAM, gauge_state[c->state], -1);
    if (event_initialized(&c->io_ev))
        event_del(&c->io_ev);
    if (event_initialized(&c->defer_ev))
        event_del(&c->defer_ev);
    if (c->dns_tcp) { /* the owner left during a lookup over TCP: no callback */
        metrics_dns_tcp(c->loop->metrics, DNS_TCP_CANCELLED);
        dns_tcp_cancel(c->dns_tcp);
    }
    if (c->sock.state != SOCK_CLOSED)
        sock_close(&c->sock);
    else if (c->fd >= 0)
        evutil_closesocket(c->fd);
    free(c->addrs);
    free(c);
}

void upconn_abort(struct upconn *c)
{
    if (!c)
        return;
    if (c->state == UC_IDLE || c->state == UC_SETTLING)
        upstream_pool_remove(c);
    if (c->dns_req) {
        /* The cancel runs our callback (now or later) with EAI_CANCEL; it frees us there.
         * Nothing else may run for the owner meanwhile: next_cb, scheduled when
         * connect_timeout ended the question asked again (ADDRS_GIVEN_UP), would report to an
         * exchange that has ended. */
        if (event_initialized(&c->defer_ev))
            event_del(&c->defer_ev);
        set_state(c, UC_CANCELLED);
        struct evdns_getaddrinfo_request *req = c->dns_req;
        c->dns_req = NULL;
        evdns_getaddrinfo_cancel(req);
        return;
    }
    upconn_free(c);
}

/* Reports a failure of the current phase. Called from loop callbacks only. */
static void report_error(struct upconn *c, enum cause cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_error(struct upconn *c, enum cause cause, const char *fmt, ...)
{
    char detail[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    c->ev->on_error(c->arg, cause, detail);
}

static void ready(struct upconn *c)
{
    set_state(c, UC_ACTIVE);
    c->ev->on_ready(c->arg);
}

static void handshake_cb(void *arg, enum sock_event ev)
{
    struct upconn *c = arg;
    char why[200];
    if (ev == SOCK_CONNECTED) {
        ready(c);
        return;
    }
    /* with verify off OpenSSL still records a verdict: it is not why the handshake failed */
    if (c->up->verify && tls_verify_failed(c->sock.ssl, why, sizeof(why))) {
        report_error(c, CAUSE_CERT, "certificate of %s rejected: %s", c->addr_text, why);
        return;
    }
    if (c->sock.ssl_err) {
        tls_error_text(c->sock.ssl_err, c->up->client_cert, why, sizeof(why));
        report_error(c, CAUSE_TLS, "TLS handshake with %s failed: %s", c->addr_text, why);
    } else if (ev == SOCK_EOF) {
        report_error(c, CAUSE_TLS, "%s closed the connection during the TLS handshake",
                     c->addr_text);
    } else {
        report_error(c, CAUSE_TLS, "TLS handshake with %s failed: %s", c->addr_text,
                     c->sock.err ? strerror(c->sock.err) : "protocol error");
    }
}

static void connected(struct upconn *c)
{
    struct loop *l = c->loop;
    metrics_add(l->metrics, M_UPSTREAM_CONNECTS, 1);
    struct addr_failure *f = c->addrs ? failure_of(c, (const union upconn_sa *)&c->addr) : NULL;
    if (f) /* it answers again */
        f->until_us = 0;
    free(c->addrs); /* the name's other addresses are for a failed connect only */
    c->addrs = NULL;
    /* Set once connected, before any byte is sent: a refused connect makes no calls for them. */
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The kernel takes no more than this beyond what the origin's window lets out: once the
     * origin stops reading, our writes stop too, and send_timeout counts from there instead
     * of from the end of a send buffer Linux keeps growing (+40 ms on loopback). */
    int notsent = UPSTREAM_NOTSENT_LOWAT;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent, sizeof(notsent));
    SSL *ssl = NULL;
    if (c->up->tls) {
        c->ev->on_phase(c->arg, PHASE_TLS);
        ssl = tls_client_ssl(c->up->ssl_ctx, c->oc->host, c->up->sni, c->up->verify);
        if (!ssl) {
            report_error(c, CAUSE_TLS, "cannot create a TLS session");
            return;
        }
        SSL_set_connect_state(ssl);
    }
    evutil_socket_t fd = c->fd;
    c->fd = -1; /* the sock owns it now, also when sock_init fails */
    if (sock_init(&c->sock, l->clock, fd, ssl, handshake_cb, c) != 0) {
        report_error(c, CAUSE_LOCAL, "out of memory");
        return;
    }
    if (!ssl) {
        ready(c);
        return;
    }
    set_state(c, UC_HANDSHAKE);
    sock_handshake(&c->sock);
}

/* How a connect's failure was learnt, which decides whether the attempt is still to dissolve. */
enum connect_end {
    END_AT_ONCE,   /* the first connect() failed: no SYN left */
    END_ASKED,     /* connect() asked again said it: the kernel dissolved the attempt itself */
    END_POLLED,    /* SO_ERROR once the socket became writable: the attempt is still there */
};

/* A failed connect leaves a socket that never carried a byte and sets no option before it
 * connects but origin_rcvbuf. Dissolving the attempt (connect to AF_UNSPEC, see connect(2))
 * makes it as good as a new one, and this loop's next connect to that family with the same
 * origin_rcvbuf takes it (a cap cannot be taken back from a socket, nor autotuning given back
 * once capped): an origin that refuses then costs no socket() and close(), about 4.3 of 12 µs
 * of kernel time per attempt (docs/BENCHMARKS.md). One spare per family; a second failure
 * meanwhile closes its own. */
static int spare_index(const struct upconn *c)
{
    return c->addr.ss_family == AF_INET6;
}

/* Not after an attempt on an IPv4-mapped address (::ffff:a.b.c.d): Linux leaves that IPv6
 * socket in IPv4 mode, and its next connect to a native IPv6 address would hang. */
static bool spare_fits(const struct upconn *c)
{
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&c->addr;
    return c->addr.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr);
}

/* A connect() that reports the failure of an attempt under way (END_ASKED) has done what
 * AF_UNSPEC does: Linux ends a connection "closed by RST, timeout, ICMP error" there with the
 * protocol's disconnect and the socket unconnected (__inet_stream_connect's sock_error), the two
 * steps of connect(AF_UNSPEC). Asking again would cost a refused origin a third connect() per
 * request, 1 of its 6 system calls (docs/BENCHMARKS.md, fastconnect). */
static void spare_keep(struct upconn *c, enum connect_end end)
{
    struct upstream_pools *p = c->loop->pools;
    int i = spare_index(c);
    const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (p->spare[i] < 0 && spare_fits(c) &&
        (end == END_ASKED || connect(c->fd, &unspec, sizeof(unspec)) == 0)) {
        p->spare[i] = c->fd;
        p->spare_rcvbuf[i] = (int)c->up->origin_rcvbuf;
        c->fd = -1;
    }
}

/* The spare, or a new socket with the upstream's origin_rcvbuf: set before connect(), as the
 * window scale our SYN offers is chosen from the receive buffer then (a cap set later would
 * shrink a window the origin was told could grow), and no call at all with 0. The cap also
 * stops the kernel's autotuning, which grows the buffer of a connection whose client stopped
 * reading toward net.ipv4.tcp_rmem's maximum: Portico then stops reading the origin, and what
 * the origin sends meanwhile waits there. */
static evutil_socket_t spare_take(struct upconn *c)
{
    struct upstream_pools *p = c->loop->pools;
    int i = spare_index(c), rcvbuf = (int)c->up->origin_rcvbuf; /* <= 64m */
    evutil_socket_t fd = p->spare[i];
    if (fd >= 0 && p->spare_rcvbuf[i] == rcvbuf) {
        p->spare[i] = -1;
        return fd;
    }
    fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    return fd;
}

void upconn_rcvbuf_check(const struct loop *l)
{
    for (int u = 0; u < l->cfg->nupstreams; u++) {
        const struct upstream_conf *up = &l->cfg->upstreams[u];
        int want = (int)up->origin_rcvbuf;
        if (!want)
            continue;
        evutil_socket_t fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int got = fd >= 0 ? sock_set_buffer(fd, SO_RCVBUF, want) : -1;
        if (got >= 0 && got < want)
            log_warn("upstream %s: origin_rcvbuf = %d: the kernel takes %d bytes at most "
                     "(sysctl net.core.rmem_max)", up->name, want, got);
        if (fd >= 0)
            evutil_closesocket(fd);
    }
}

/* strerror's text as the C locale Portico keeps (it never calls setlocale) has it, without its
 * look-up in the message catalogues. */
static const char *errno_text(int err)
{
    const char *s = strerrordesc_np(err);
    return s ? s : strerror(err); /* "Unknown error N" */
}

/* ---- the addresses of a name (see THE ADDRESSES OF A NAME) ---- */

static bool same_addr(const union upconn_sa *x, const union upconn_sa *y)
{
    if (x->sa.sa_family != y->sa.sa_family)
        return false;
    if (x->sa.sa_family == AF_INET)
        return x->v4.sin_addr.s_addr == y->v4.sin_addr.s_addr;
    return IN6_ARE_ADDR_EQUAL(&x->v6.sin6_addr, &y->v6.sin6_addr) &&
           x->v6.sin6_scope_id == y->v6.sin6_scope_id;
}

/* Adds sa (family and address set; bit: its FAMILY_ bit) with the origin's port, unless it is
 * known or the list is full. How many were added: 0 or 1. */
static unsigned addrs_add_one(struct upconn_addrs *as, union upconn_sa *sa, unsigned bit,
                              uint16_t port)
{
    if (as->n >= UPCONN_ADDRS_MAX)
        return 0;
    if (sa->sa.sa_family == AF_INET)
        sa->v4.sin_port = htons(port);
    else
        sa->v6.sin6_port = htons(port);
    as->families |= bit;
    for (unsigned i = 0; i < as->n; i++)
        if (same_addr(&as->a[i], sa))
            return 0;
    as->a[as->n++] = *sa;
    return 1;
}

/* Adds the addresses of res not known yet (an address twice in an answer, or again in the
 * second answer, is tried once), IPv4 ones first in answer order, then IPv6 ones, up to
 * UPCONN_ADDRS_MAX, each with the origin's port. How many were added. */
static unsigned addrs_add(struct upconn_addrs *as, const struct evutil_addrinfo *res,
                          uint16_t port)
{
    static const struct {
        int family;
        unsigned bit;
    } order[] = {{AF_INET, FAMILY_IPV4}, {AF_INET6, FAMILY_IPV6}};
    unsigned added = 0;
    for (unsigned f = 0; f < ARRAY_LEN(order); f++) {
        for (const struct evutil_addrinfo *a = res; a && as->n < UPCONN_ADDRS_MAX;
             a = a->ai_next) {
            union upconn_sa sa;
            size_t len = order[f].family == AF_INET ? sizeof(sa.v4) : sizeof(sa.v6);
            if (a->ai_family != order[f].family || a->ai_addrlen < len)
                continue;
            memset(&sa, 0, sizeof(sa));
            memcpy(&sa, a->ai_addr, len);
            added += addrs_add_one(as, &sa, order[f].bit, port);
        }
    }
    return added;
}

/* The same for the A and AAAA answers of a lookup over TCP: IPv4 ones first, in answer order. */
static unsigned addrs_add_tcp(struct upconn_addrs *as, const struct dns_tcp_result *r,
                              uint16_t port)
{
    unsigned added = 0;
    for (unsigned i = 0; i < r->v4.n; i++) {
        union upconn_sa sa = {.v4 = {.sin_family = AF_INET}};
        memcpy(&sa.v4.sin_addr, r->v4.a[i], 4);
        added += addrs_add_one(as, &sa, FAMILY_IPV4, port);
    }
    for (unsigned i = 0; i < r->v6.n; i++) {
        union upconn_sa sa = {.v6 = {.sin6_family = AF_INET6}};
        memcpy(&sa.v6.sin6_addr, r->v6.a[i], 16);
        added += addrs_add_one(as, &sa, FAMILY_IPV6, port);
    }
    return added;
}

/* Whether the name may be asked again for every family once its known addresses all failed:
 * the answer was asked with AI_ADDRCONFIG and held one family only (the other may not have
 * been asked), and there is room for more. */
static bool may_ask_again(const struct upconn *c)
{
    const struct upconn_addrs *as = c->addrs;
    return !c->every_family && as->n < UPCONN_ADDRS_MAX &&
           as->families != (FAMILY_IPV4 | FAMILY_IPV6) &&
           event_now_us() >= c->loop->pools->pool[c->upstream].ask_again_at[c->origin];
}

/* The question asked again found nothing new, or no answer in time: not again for down_time. */
static void asked_in_vain(struct upconn *c)
{
    c->loop->pools->pool[c->upstream].ask_again_at[c->origin] =
        event_now_us() + c->up->down_time_ms * 1000;
}

/* The failure remembered for address a of c's origin name, or NULL. */
static struct addr_failure *failure_of(const struct upconn *c, const union upconn_sa *a)
{
    struct addr_failure *f = c->loop->pools->pool[c->upstream].failed;
    for (unsigned i = 0; i < ADDR_FAILURES_MAX; i++)
        if (f[i].until_us && f[i].origin == c->origin && same_addr(&f[i].a, a))
            return &f[i];
    return NULL;
}

/* Remembers that the address c just tried failed: its slot, or the one that ends first. */
static void address_failed(struct upconn *c)
{
    if (!c->addrs)
        return; /* an origin listed by address: nothing to choose between */
    const union upconn_sa *a = (const union upconn_sa *)&c->addr;
    struct addr_failure *f = failure_of(c, a);
    if (!f) {
        struct addr_failure *slots = c->loop->pools->pool[c->upstream].failed;
        f = &slots[0];
        for (unsigned i = 1; i < ADDR_FAILURES_MAX; i++)
            if (slots[i].until_us < f->until_us)
                f = &slots[i];
        f->a = *a;
        f->origin = c->origin;
    }
    f->until_us = event_now_us() + c->up->down_time_ms * 1000 + 1;
}

/* The addresses from index `from` on, those not remembered as failed (or whose time is over)
 * first, each group in its order. */
static void addrs_order(struct upconn *c, unsigned from)
{
    struct upconn_addrs *as = c->addrs;
    union upconn_sa failed[UPCONN_ADDRS_MAX];
    unsigned nfailed = 0, kept = from;
    uint64_t now = event_now_us();
    for (unsigned i = from; i < as->n; i++) {
        const struct addr_failure *f = failure_of(c, &as->a[i]);
        if (f && f->until_us > now)
            failed[nfailed++] = as->a[i];
        else
            as->a[kept++] = as->a[i];
    }
    memcpy(&as->a[kept], failed, nfailed * sizeof(failed[0]));
}

/* The connect failure of the attempt, with cause and detail of the last address tried; after
 * more than one address, the detail says how many were tried. */
static void connect_failure(struct upconn *c, enum cause cause, const char *detail)
{
    if (!c->addrs || c->addrs->n < 2) { /* one address: no note, no copy */
        c->ev->on_error(c->arg, cause, detail);
        return;
    }
    char full[200];
    size_t len = str_copy(full, sizeof(full), detail);
    upconn_tried_note(c, full, sizeof(full), len);
    c->ev->on_error(c->arg, cause, full);
}

/* Whether connect()'s EADDRNOTAVAIL at once says that this host has no free local port toward c's
 * address: every port of net.ipv4.ip_local_port_range (IPv6 takes its ports from it too) is in
 * use toward that address and port, a shortage of ours the operator must see, not an address
 * the host has no use for (sock_no_route). An IPv4 address, mapped into IPv6 too, gives it for
 * no other reason (Portico binds no source address); a native IPv6 one gives it also when the
 * host has no source address of the family (IPv6 turned off): a UDP socket tells which, on this
 * failure's path only (sock_route_error). Only its own answer of no route says the host has no
 * use for the address: a UDP socket that fails for want of a UDP port (EAGAIN) or of a
 * descriptor says nothing of it, and the TCP port is still not there. */
static bool no_free_port(const struct upconn *c)
{
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&c->addr;
    if (c->addr.ss_family != AF_INET6 || IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
        return true;
    return !sock_no_route(sock_route_error((const struct sockaddr *)&c->addr, c->addrlen));
}

/* Whether an earlier address's failure, one that says something of the origin, stands for the
 * attempt instead of this address's, which the host had no use for (host_only): on a host
 * without IPv6, "localhost" (A 127.0.0.1, AAAA ::1) whose origin is down reads as refused, not
 * as ::1's "Cannot assign requested address" (connect_unreachable; cloudflare 523, not 521). */
static bool earlier_failure_stands(const struct upconn *c, bool host_only)
{
    const struct upconn_addrs *as = c->addrs;
    return host_only && as && as->next > 1 && !as->host_only; /* as->cause: the earlier one */
}

/* A connect to one of a name's addresses failed with cause (detail: its words; host_only: the
 * host has no use for the address, sock_no_route): the name's next address is tried, or, once
 * all failed, the name may be asked again for every family (may_ask_again). Our own shortages
 * (memory, descriptors) never move on: another address would meet them too. No free local port
 * does: ports are taken per destination address and port, and the next address has its own;
 * it is not remembered as the address's failure (address_failed), which it is not. false:
 * nothing is left to try, the failure stands (attempt_failed). true: c may be gone. */
static bool next_address(struct upconn *c, enum cause cause, const char *detail, bool host_only)
{
    struct upconn_addrs *as = c->addrs;
    if (!as || cause == CAUSE_LOCAL)
        return false;
    if (cause != CAUSE_NO_LOCAL_PORT)
        address_failed(c);
    if (as->next >= as->n && !may_ask_again(c))
        return false;
    if (c->fd >= 0) { /* not kept as a spare */
        evutil_closesocket(c->fd);
        c->fd = -1;
    }
    if (!earlier_failure_stands(c, host_only)) {
        as->cause = cause;
        as->host_only = host_only;
        if (detail != as->detail) /* next_cb's own */
            str_copy(as->detail, sizeof(as->detail), detail);
    }
    /* The question asked again is limited by a fresh connect_timeout too, but announced as a
     * move only once it found another address (most names have one family). */
    if (c->ev->on_next_address)
        c->ev->on_next_address(c->arg, as->next < as->n ? detail : NULL);
    if (as->next < as->n) {
        connect_next(c);
        return true;
    }
    as->step = ADDRS_ASKING;
    set_state(c, UC_RESOLVING);
    resolve(c, 0); /* c may be gone when it returns */
    return true;
}

/* The answer to the question asked again for every family. */
static void refilled(struct upconn *c, int result, struct evutil_addrinfo *res)
{
    struct upconn_addrs *as = c->addrs;
    bool asking = as->step == ADDRS_ASKING;
    unsigned added = result == 0 && res && asking ? addrs_add(as, res, c->oc->port) : 0;
    if (added) {
        c->loop->pools->pool[c->upstream].every_family |= UINT64_C(1) << c->origin;
        addrs_order(c, as->n - added);
    }
    if (res)
        evutil_freeaddrinfo(res);
    if (!asking)
        return; /* connect_timeout ended the wait; next_cb reports it */
    as->step = ADDRS_TRYING;
    if (!added) {
        asked_in_vain(c);
        connect_failure(c, as->cause, as->detail);
        return;
    }
    if (c->ev->on_next_address)
        c->ev->on_next_address(c->arg, as->detail);
    connect_next(c);
}

/* After connect_timeout of an address, from the loop: the next one, or the failure. */
static void next_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct upconn *c = arg;
    struct upconn_addrs *as = c->addrs;
    if (as->step == ADDRS_GIVEN_UP || !next_address(c, as->cause, as->detail, as->host_only))
        connect_failure(c, as->cause, as->detail);
}

bool upconn_connect_next(struct upconn *c)
{
    struct upconn_addrs *as = c->addrs;
    if (!as)
        return false;
    if (c->state == UC_CONNECTING)
        address_failed(c);
    if (as->step == ADDRS_ASKING) {
        asked_in_vain(c);
        as->step = ADDRS_GIVEN_UP; /* the last address's failure stands; the lookup is
                                    * cancelled by the abort that follows it */
    } else if (c->state == UC_CONNECTING && (as->next < as->n || may_ask_again(c))) {
        if (event_initialized(&c->io_ev))
            event_del(&c->io_ev);
        evutil_closesocket(c->fd);
        c->fd = -1;
        as->cause = CAUSE_TIMEOUT;
        as->host_only = false;
        phase_timeout_detail(PHASE_CONNECT, c->addr_text,
                             phase_limit_ms(c->up->timers_ms, PHASE_CONNECT), as->detail,
                             sizeof(as->detail));
    } else {
        return false;
    }
    event_assign(&c->defer_ev, c->loop->base, -1, 0, next_cb, c);
    event_active(&c->defer_ev, EV_TIMEOUT, 1);
    return true;
}

size_t upconn_tried_note(const struct upconn *c, char *buf, size_t size, size_t len)
{
    const struct upconn_addrs *as = c->addrs;
    if (!as || as->n < 2 || len + 1 >= size)
        return len;
    struct fmt_buf b;
    fmt_init(&b, buf + len, size - len - 1);
    fmt_str(&b, "; ");
    fmt_u64(&b, as->next);
    fmt_str(&b, " of ");
    fmt_u64(&b, as->n);
    fmt_str(&b, " addresses of ");
    fmt_str(&b, c->oc->host);
    fmt_str(&b, " tried");
    if (b.overflow) /* all or nothing: a note without its end would mislead */
        b.len = 0;
    buf[len + b.len] = '\0';
    return len + b.len;
}

/* Nothing is left to try: the attempt fails with this address's failure, or with the earlier
 * one that stands (earlier_failure_stands). */
static void attempt_failed(struct upconn *c, enum cause cause, const char *detail, bool host_only)
{
    if (earlier_failure_stands(c, host_only))
        connect_failure(c, c->addrs->cause, c->addrs->detail);
    else
        connect_failure(c, cause, detail);
}

/* The connect phase failed with err, learnt as `end` says. Once per request to a refused origin:
 * the detail in pieces, without vsnprintf and strerror (~1,600 instructions of a 502's ~20,000).
 * Nothing is cut: the address and the error's text fit with room to spare. No free local port is
 * our shortage toward this address (internal_error, not the origin's health; the next address
 * or origin may have ports), said as such and counted; an address the host has no use for
 * leaves an earlier one's failure standing. */
static void connect_failed(struct upconn *c, int err, enum connect_end end)
{
    bool at_once = end == END_AT_ONCE; /* before a SYN left */
    spare_keep(c, end);
    bool no_port = at_once && err == EADDRNOTAVAIL && no_free_port(c);
    char detail[200];
    struct fmt_buf b;
    fmt_init(&b, detail, sizeof(detail) - 1);
    fmt_str(&b, "connect to ");
    fmt_str(&b, c->addr_text);
    fmt_str(&b, " failed: ");
    fmt_str(&b, no_port ? "no free local port (net.ipv4.ip_local_port_range used up toward it)"
                        : errno_text(err));
    detail[b.len] = '\0';
    enum cause cause = no_port ? CAUSE_NO_LOCAL_PORT : cause_from_errno(err);
    bool host_only = at_once && !no_port && sock_no_route(err);
    if (no_port)
        metrics_add(c->loop->metrics, M_UPSTREAM_NO_LOCAL_PORT, 1);
    if (!next_address(c, cause, detail, host_only))
        attempt_failed(c, cause, detail, host_only);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct upconn *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        connect_failed(c, err, END_POLLED);
        return;
    }
    connected(c);
}

static void start_connect(struct upconn *c)
{
    set_state(c, UC_CONNECTING);
    if (!c->addrs || c->addrs->next <= 1) /* a next address was announced by next_address */
        c->ev->on_phase(c->arg, PHASE_CONNECT);
    sockaddr_str((struct sockaddr *)&c->addr, c->addr_text, sizeof(c->addr_text));
    c->fd = spare_take(c);
    if (c->fd < 0) {
        int err = errno;
        char detail[200];
        snprintf(detail, sizeof(detail), "socket: %s", strerror(err));
        /* not our shortage, an address the host cannot use (IPv6 turned off): the next one */
        bool host_only = sock_no_route(err);
        if (!next_address(c, cause_from_errno(err), detail, host_only))
            attempt_failed(c, cause_from_errno(err), detail, host_only);
        return;
    }
    int rc = connect(c->fd, (struct sockaddr *)&c->addr, c->addrlen);
    bool sent = rc == 0 || errno == EINPROGRESS; /* a SYN left: what follows is the network's */
    /* An origin on this host answers the SYN within connect(): its SYN-ACK or RST is in by now.
     * Asking connect() again tells which in one call (0, the refusal's errno, or EALREADY while
     * the SYN is out), as HAProxy does: no poll, no SO_ERROR read, and none of the loop turn and
     * the two epoll_ctl calls of the event below (the second fails with EBADF after a refusal:
     * the fd is closed before the loop applies its deletion). A remote origin pays this one
     * call per connect. */
    if (rc != 0 && errno == EINPROGRESS)
        rc = connect(c->fd, (struct sockaddr *)&c->addr, c->addrlen);
    if (rc == 0 || errno == EISCONN) {
        connected(c);
        return;
    }
    if (errno != EALREADY) {
        connect_failed(c, errno, sent ? END_ASKED : END_AT_ONCE);
        return;
    }
    event_assign(&c->io_ev, c->loop->base, c->fd, EV_WRITE, connect_cb, c);
    event_add(&c->io_ev, NULL);
}

/* Connects to the name's next address (the first one too). */
static void connect_next(struct upconn *c)
{
    const union upconn_sa *sa = &c->addrs->a[c->addrs->next++];
    c->addrlen = sa->sa.sa_family == AF_INET ? sizeof(sa->v4) : sizeof(sa->v6);
    memcpy(&c->addr, sa, c->addrlen);
    if (c->addrs->next > 1)
        metrics_add(c->loop->metrics, M_UPSTREAM_ADDRESS_FALLBACKS, 1);
    start_connect(c);
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg);
static bool may_be_truncated(int result);
static void ask_over_tcp(struct upconn *c, int udp_failure);
static void addrs_given(struct upconn *c, struct evutil_addrinfo *res,
                        const struct dns_tcp_result *r);

/* Asks the resolver for the origin's name, with hints flags; every_family once without
 * AI_ADDRCONFIG. The callback may run before evdns_getaddrinfo returns (hosts file), which then
 * returns NULL and c may be gone: false, and the caller touches nothing after this. true: the
 * lookup went to the resolver (c->dns_req). */
static bool resolve(struct upconn *c, int flags)
{
    c->every_family = !(flags & EVUTIL_AI_ADDRCONFIG);
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP, .ai_flags = flags};
    /* An absolute name ("api.example.") is asked without its final dot: it is the same name (no
     * search list applies), and the hosts file lists names without it. */
    char buf[256];
    const char *name = name_without_root_dot(c->oc->host, buf, sizeof(buf));
    c->asked_us = now_us();
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(c->loop->dns, name ? name : c->oc->host, NULL, &hints, dns_cb, c);
    if (req)
        c->dns_req = req;
    return req != NULL;
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct upconn *c = arg;
    c->dns_req = NULL;
    if (c->state == UC_CANCELLED || result == EVUTIL_EAI_CANCEL) {
        if (res)
            evutil_freeaddrinfo(res);
        if (c->state == UC_CANCELLED)
            upconn_free(c);
        return;
    }
    if (c->addrs && c->addrs->step != ADDRS_TRYING) {
        refilled(c, result, res);
        return;
    }
    /* evdns gives up on an unanswered lookup after l->dns_attempt_us (a tenth of slack: its
     * clock may have been read earlier in this loop turn than ours) and says EAI_FAIL, as for
     * a SERVFAIL: no nameserver answered, and the one asked is now marked failed. Asked again,
     * the next one answers; the owner's timer (dns_timeout) ends the wait. */
    if (result == EVUTIL_EAI_FAIL &&
        now_us() - c->asked_us >= c->loop->dns_attempt_us - c->loop->dns_attempt_us / 10) {
        resolve(c, c->every_family ? 0 : EVUTIL_AI_ADDRCONFIG); /* c may be gone */
        return;
    }
    if (result == EVUTIL_EAI_NONAME && !c->every_family) {
        /* NXDOMAIN: the name has no DNS record in any family (RFC 8020). Only the hosts file,
         * read for the families AI_ADDRCONFIG chose, may still hold an IPv6 address of it, and
         * it answers inside evdns_getaddrinfo. A lookup that went to the resolver instead is not
         * waited for (a second round doubled the wait: a slow resolver's NXDOMAIN became a
         * dns_timeout): the NXDOMAIN is reported now, and the owner's upconn_abort, which
         * follows an error, cancels that lookup. */
        if (res)
            evutil_freeaddrinfo(res);
        res = NULL;
        if (!resolve(c, 0))
            return; /* answered inside the call: c may be gone */
    } else if ((result != 0 || !res) && !c->every_family && result != EVUTIL_EAI_MEMORY) {
        /* AI_ADDRCONFIG asks only for the families the host has addresses of, and counts
         * neither loopback nor link-local nor unique local (fc00::/7) IPv6 ones: a name with
         * IPv6 addresses only is asked again for every family (README: IPv4, else IPv6). */
        if (res)
            evutil_freeaddrinfo(res);
        c->first_failure = result ? result : EVUTIL_EAI_NODATA;
        resolve(c, 0); /* c may be gone when it returns */
        return;
    }
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        if (may_be_truncated(result)) {
            ask_over_tcp(c, result);
            return; /* asked, or the failure reported: c may be gone */
        }
        enum cause cause = result == EVUTIL_EAI_NONAME ? CAUSE_NXDOMAIN
                           : result == EVUTIL_EAI_MEMORY ? CAUSE_LOCAL
                                                         : CAUSE_DNS_FAIL;
        report_error(c, cause, "resolving %s failed: %s", c->oc->host,
                     upconn_dns_error_text(result, c->oc->host));
        return;
    }
    /* IPv4 first: "localhost" maps to both, and origins more often listen on 127.0.0.1. */
    addrs_given(c, res, NULL);
}

/* ASKED OVER TCP. libevent 2.1's resolver has no TCP: an answer with TC set (a name with more
 * addresses than fit 512 bytes, some 28 IPv4 ones) ends its lookup with DNS_ERR_TRUNCATED, which
 * evdns_getaddrinfo maps to EAI_FAIL (evdns_err_to_getaddrinfo_err) as it maps an empty answer
 * (DNS_ERR_NODATA), SERVFAIL, REFUSED, FORMERR and an unreadable answer; with A and AAAA asked
 * at once, one family's failure merged with the other's is EAI_FAIL or EAI_NODATA
 * (getaddrinfo_merge_err). Truncation cannot be told apart through the API, so a lookup that
 * may have been truncated is asked once more over TCP, as glibc and nginx ask a truncated one:
 * the final failure of the question for every family (after the AI_ADDRCONFIG one, so that a
 * name with IPv6 addresses only, whose A answer is empty, costs no TCP), other than NXDOMAIN
 * and evdns's own timeout (which the attempt-timeout branch above asks again over UDP). The cost
 * is one TCP exchange with the nameserver on those failures only, where the nameserver then
 * says what it meant (SERVFAIL, no address) in the detail. A lookup over TCP that gave nothing
 * better (the nameserver's own failure, no answer, none within the owner's timer) is not asked
 * again for the origin's down_time (tcp_again_at): a name that SERVFAILs cost every request
 * 28 system calls against 16, and a nameserver that drops TCP a whole dns_timeout each. Not
 * covered: a truncated answer of one family merged with the other family's addresses (evdns
 * gives those alone). */
static bool may_be_truncated(int result)
{
    return result == EVUTIL_EAI_FAIL || result == EVUTIL_EAI_NODATA || result == 0;
}

/* The UDP failure (udp_failure's words), and after them why TCP gave nothing when it fits. */
static void udp_failure_stands(struct upconn *c, const char *tcp_why)
{
    char detail[200];
    int n = snprintf(detail, sizeof(detail), "resolving %s failed: %s", c->oc->host,
                     upconn_dns_error_text(c->udp_failure, c->oc->host));
    size_t len = n < 0 ? 0 : MIN((size_t)n, sizeof(detail) - 1);
    n = snprintf(detail + len, sizeof(detail) - len, "; over TCP: %s", tcp_why);
    if (n < 0 || (size_t)n >= sizeof(detail) - len) /* all or nothing */
        detail[len] = '\0';
    c->ev->on_error(c->arg, CAUSE_DNS_FAIL, detail);
}

/* The lookup over TCP gave nothing the UDP answer had not: not asked again for down_time. */
static void tcp_in_vain(struct upconn *c)
{
    c->loop->pools->pool[c->upstream].tcp_again_at[c->origin] =
        event_now_us() + c->up->down_time_ms * 1000;
}

static void tcp_cb(void *arg, const struct dns_tcp_result *r)
{
    struct upconn *c = arg;
    c->dns_tcp = NULL; /* the question for every family failed first: every_family is set */
    metrics_dns_tcp(c->loop->metrics, r->answered ? DNS_TCP_ANSWERED : DNS_TCP_FAILED);
    if (r->eai)
        tcp_in_vain(c);
    if (r->eai && r->answered) {
        enum cause cause = r->eai == EVUTIL_EAI_NONAME ? CAUSE_NXDOMAIN : CAUSE_DNS_FAIL;
        report_error(c, cause, "resolving %s failed over TCP: %s", c->oc->host, r->detail);
        return;
    }
    if (r->eai) { /* no answer over TCP: the UDP answer's words, and why when they fit */
        udp_failure_stands(c, r->detail);
        return;
    }
    addrs_given(c, NULL, r);
}

/* Asks the name over TCP (ASKED OVER TCP), or reports the UDP failure with why it was not
 * (asked in vain within down_time, no nameserver, 16 lookups under way, no descriptor or memory
 * for it: without that, out of descriptors read as the nameserver's answer alone). c may be
 * gone after it. */
static void ask_over_tcp(struct upconn *c, int udp_failure)
{
    c->udp_failure = udp_failure;
    if (event_now_us() < c->loop->pools->pool[c->upstream].tcp_again_at[c->origin]) {
        metrics_dns_tcp(c->loop->metrics, DNS_TCP_SKIPPED);
        udp_failure_stands(c, "asked in vain within down_time, not again");
        return;
    }
    char buf[256], why[100];
    const char *name = name_without_root_dot(c->oc->host, buf, sizeof(buf));
    c->dns_tcp = dns_tcp_start(c->loop->base, c->loop->dns, &c->loop->dns_tcp_inflight,
                               name ? name : c->oc->host, tcp_cb, c,
                               why, sizeof(why));
    if (!c->dns_tcp) {
        metrics_dns_tcp(c->loop->metrics, DNS_TCP_SKIPPED);
        udp_failure_stands(c, why);
    }
}

/* The first answer's addresses (res from evdns, or r from TCP) start the walk. */
static void addrs_given(struct upconn *c, struct evutil_addrinfo *res,
                        const struct dns_tcp_result *r)
{
    c->addrs = zalloc(sizeof(*c->addrs));
    unsigned added = !c->addrs ? 0
                     : res     ? addrs_add(c->addrs, res, c->oc->port)
                               : addrs_add_tcp(c->addrs, r, c->oc->port);
    if (res)
        evutil_freeaddrinfo(res);
    if (!added) {
        report_error(c, c->addrs ? CAUSE_DNS_FAIL : CAUSE_LOCAL, "resolving %s failed: %s",
                     c->oc->host, c->addrs ? "no IPv4 or IPv6 address" : "out of memory");
        return;
    }
    addrs_order(c, 0);
    connect_next(c);
}

/* The start, from the loop: resolve, or connect to a literal address at once. */
static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct upconn *c = arg;
    if (c->oc->numeric) {
        memcpy(&c->addr, &c->oc->addr, sizeof(c->addr));
        c->addrlen = c->oc->addrlen;
        start_connect(c);
        return;
    }
    set_state(c, UC_RESOLVING);
    c->ev->on_phase(c->arg, PHASE_DNS);
    /* Only the address families this host can reach, first: no AAAA query on an IPv4 host;
     * every family for a name that had addresses of the other family to fall back on. */
    bool every = c->loop->pools->pool[c->upstream].every_family >> c->origin & 1;
    resolve(c, every ? 0 : EVUTIL_AI_ADDRCONFIG);
}

struct upconn *upconn_open(struct loop *l, int upstream, int origin,
                           const struct upconn_events *ev, void *arg)
{
    struct upconn *c = zalloc(sizeof(*c));
    if (!c)
        return NULL;
    c->loop = l;
    c->upstream = upstream;
    c->origin = origin;
    c->up = &l->cfg->upstreams[upstream];
    c->oc = &c->up->origins[origin];
    c->fd = -1;
    c->ev = ev;
    c->arg = arg;
    c->sock.state = SOCK_CLOSED;
    c->acked_at_take = -1;
    str_copy(c->addr_text, sizeof(c->addr_text), c->oc->text);
    c->state = UC_OPENING;
    metrics_conn_add(l->metrics, CONN_UPSTREAM, gauge_state[c->state], 1);
    event_assign(&c->defer_ev, l->base, -1, 0, start_cb, c);
    event_active(&c->defer_ev, EV_TIMEOUT, 1);
    return c;
}

const char *upconn_dns_error_text(int eai, const char *host)
{
    switch (eai) {
    case 0:
    case EVUTIL_EAI_NODATA:
        return "no address";
    case EVUTIL_EAI_NONAME:
        /* a short name that resolv.conf's search list would have completed (a Kubernetes
         * service's "app"): say why it was not */
        return strchr(host, '.') ? "no such name (NXDOMAIN)"
                                 : "no such name (NXDOMAIN; names are asked as written, without "
                                   "resolv.conf's search domains: write the full name)";
    case EVUTIL_EAI_FAIL:
        /* evdns's one word for all of these; an empty answer is the most common */
        return "no address, or the resolver failed (SERVFAIL, REFUSED, a truncated or unreadable "
               "answer)";
    default:
        return evutil_gai_strerror(eai);
    }
}

size_t upconn_dns_timeout(struct upconn *c, bool in_vain, char *buf, size_t size, size_t len)
{
    if (c->state != UC_RESOLVING || !c->dns_tcp)
        return len;
    if (len + 1 < size) {
        int n = snprintf(buf + len, size - len, " over TCP (no answer from %s; the UDP answer "
                         "failed or was truncated)", dns_tcp_server(c->dns_tcp));
        if (n < 0 || (size_t)n >= size - len) /* all or nothing */
            buf[len] = '\0';
        else
            len += (size_t)n;
    }
    if (in_vain)
        tcp_in_vain(c);
    metrics_dns_tcp(c->loop->metrics, DNS_TCP_TIMEOUT);
    dns_tcp_cancel(c->dns_tcp);
    c->dns_tcp = NULL;
    return len;
}

const char *upconn_dns_failure(const struct upconn *c)
{
    if (c->state != UC_RESOLVING || !c->every_family || !c->first_failure || c->dns_tcp)
        return NULL; /* over TCP, it is the TCP answer that is late */
    return upconn_dns_error_text(c->first_failure, c->oc->host);
}

struct sock *upconn_sock(struct upconn *c)
{
    return &c->sock;
}

const char *upconn_addr(const struct upconn *c)
{
    return c->addr_text;
}

unsigned upconn_requests(const struct upconn *c)
{
    return c->requests;
}

bool upconn_request_unseen(const struct upconn *c)
{
    return c->acked_at_take >= 0 && c->sock.state != SOCK_CLOSED &&
           sock_bytes_acked(&c->sock) == c->acked_at_take;
}

void upconn_mark_used(struct upconn *c)
{
    c->requests++;
}

void upconn_make_private(struct upconn *c, uint64_t owner)
{
    c->private_owner = owner;
}
