/*
 * listener.c — listening sockets and accept. See listener.h.
 */
#include "portico/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/proxyproto.h"
#include "portico/sock.h"

#define ACCEPT_PAUSE_MS 100

struct listener {
    struct loop *loop;                     /* borrowed */
    struct evconnlistener *lis;
    bool tls;
    bool proxy_protocol;                   /* connections begin with a PROXY header
                                              (proxyproto.h): read it before the client's */
    enum client_kind kind;
    int fd;
    struct sockaddr_storage addr;          /* what it is bound to: the next group looks here */
    socklen_t addrlen;
    struct listener *inherited;            /* the previous group's listener sharing our socket */
    atomic_bool owns_fd;                   /* closes it; passes to a newer group that shares it */
    atomic_bool given;                     /* given to an upgrade's new process (listener_disown) */
    bool accept_failing;                   /* accept() failed since it last worked: said once */
    bool held;                             /* at its limit (listener_hold): not accepting */
    int sndbuf;                            /* SO_SNDBUF set on the socket (by us or a previous
                                              group), 0: never set, the kernel's autotuning */
    atomic_bool deferred;                  /* TCP_DEFER_ACCEPT is set on the socket (by us or a
                                              previous group): accepts come with their bytes */
    const char *text;                      /* the address as configured, for messages (the
                                              config's: it outlives us) */
    struct event *resume;                  /* re-enables the listener after a failed accept */
};

static void accept_cb(struct evconnlistener *el, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)el, (void)salen;
    struct listener *lis = arg;
    lis->accept_failing = false;
    if (lis->proxy_protocol) {
        proxyproto_accept(lis->loop, fd, sa, lis->tls, lis->kind);
        return;
    }
    /* set by the main thread when a reload's group takes the socket over, while we accept */
    client_new(lis->loop, fd, sa, lis->tls, lis->kind,
               atomic_load_explicit(&lis->deferred, memory_order_relaxed));
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct listener *lis = arg;
    if (!lis->held) /* else listener_hold enables it once there is room */
        evconnlistener_enable(lis->lis);
}

/* accept() failed, typically out of descriptors (EMFILE, ENFILE) or memory: the connection
 * stays queued and the socket readable, so libevent would call us again at once, forever.
 * Pause this listener for ACCEPT_PAUSE_MS instead (what nginx does), and say it once until an
 * accept succeeds again. */
static void accept_error_cb(struct evconnlistener *el, void *arg)
{
    struct listener *lis = arg;
    int err = errno;
    metrics_accept_error(lis->loop->metrics, accept_error_of(err));
    if (!lis->accept_failing)
        log_error("accept: %s; pausing accepts on this socket for %d ms at a time until it works",
                  strerror(err), ACCEPT_PAUSE_MS);
    lis->accept_failing = true;
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    if (!lis->resume)
        lis->resume = evtimer_new(lis->loop->base, accept_resume_cb, lis);
    if (lis->resume && evtimer_add(lis->resume, &pause) == 0)
        evconnlistener_disable(el);
}

void listener_accept_queued(struct listener *lis)
{
    if (!atomic_load(&lis->owns_fd))
        return; /* a newer group shares the socket: its queue is theirs to serve */
    for (int n = 0; n < 1024; n++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(lis->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        accept_cb(lis->lis, fd, (struct sockaddr *)&sa, (int)salen, lis);
    }
}

void listener_close(struct listener *lis)
{
    evconnlistener_free(lis->lis);
    if (lis->resume)
        event_free(lis->resume);
    if (atomic_load(&lis->owns_fd))
        close(lis->fd);
    free(lis);
}

int listener_chown(struct listener *lis, uid_t uid, gid_t gid)
{
    return fchown(lis->fd, uid, gid);
}

void listener_hold(struct listener *lis, bool hold)
{
    if (lis->held == hold)
        return;
    lis->held = hold;
    if (hold)
        evconnlistener_disable(lis->lis);
    else if (!lis->resume || !evtimer_pending(lis->resume, NULL)) /* an accept pause runs out */
        evconnlistener_enable(lis->lis);
}

enum client_kind listener_kind(const struct listener *lis)
{
    return lis->kind;
}

bool listener_is_on(const struct listener *lis, const struct sockaddr *sa, socklen_t salen)
{
    return lis->addrlen == salen && memcmp(&lis->addr, sa, salen) == 0;
}

/* client_sndbuf, set once on the listening socket: Linux copies SO_SNDBUF (the size and the lock
 * that stops autotuning) to every socket it accepts, so a connection costs no syscall for it,
 * TLS and HTTP/2 ones alike, and with 0 nothing is set at all. A socket kept across a reload
 * gets the new value once the new group has started (a reload that fails leaves the old
 * group's sockets as they were); but SO_SNDBUF cannot be undone, so one that had a cap keeps it
 * when the new value is 0, until a restart opens new sockets (said once per address, by worker
 * 0). */
static void set_sndbuf(struct listener *lis)
{
    const struct loop *l = lis->loop;
    int want = lis->kind == CLIENT_ADMIN ? 0 : (int)l->cfg->client_sndbuf; /* <= 64m */
    if (want == lis->sndbuf)
        return;
    if (want == 0) {
        if (l->id == 0)
            log_warn("client_sndbuf = 0 takes a restart: the listening socket of %s kept "
                     "across the reload keeps its cap of %d bytes (SO_SNDBUF cannot be undone)",
                     lis->text, lis->sndbuf);
        return;
    }
    /* The kernel takes no more than net.core.wmem_max (212992 bytes by default), silently:
     * what it took is read back. */
    int got = sock_set_buffer(lis->fd, SO_SNDBUF, want);
    if (got < 0)
        return;
    lis->sndbuf = want;
    if (l->id == 0 && got < want)
        log_warn("client_sndbuf = %d on %s: the kernel takes %d bytes at most "
                 "(sysctl net.core.wmem_max)", want, lis->text, got);
}

/* defer_accept: TCP_DEFER_ACCEPT makes Linux queue a connection for accept only once its first
 * bytes came (every protocol we listen for has the client speak first), so a read straight after
 * accept finds them (client_new). 1 second, as nginx's `deferred` and HAProxy's `defer-accept`:
 * a client that sends nothing is accepted after that anyway (the kernel sends the SYN-ACK again,
 * and the client's ACK of it completes the accept). Not on the admin listener: its few
 * connections gain nothing. known: whether the socket's setting is known (a handed socket's is
 * whatever the process before us set). */
static void set_deferred(struct listener *lis, bool known)
{
    bool want = lis->kind != CLIENT_ADMIN && lis->loop->cfg->defer_accept;
    if (known && want == atomic_load(&lis->deferred))
        return;
    int secs = want ? 1 : 0;
    if (setsockopt(lis->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) != 0) {
        if (lis->loop->id == 0)
            log_warn("defer_accept on %s: %s", lis->text, strerror(errno));
        if (known)
            return; /* as it was */
        want = true; /* unknown: a read at accept is right either way, and cheap if in vain */
    }
    atomic_store(&lis->deferred, want);
}

void listener_take_over(struct listener *lis)
{
    if (!lis->inherited)
        return;
    atomic_store(&lis->inherited->owns_fd, false);
    atomic_store(&lis->owns_fd, true);
    lis->sndbuf = lis->inherited->sndbuf;
    atomic_store(&lis->deferred, atomic_load(&lis->inherited->deferred));
    lis->inherited = NULL; /* the old group may go: no pointer into it is kept */
    set_sndbuf(lis);
    set_deferred(lis, true);
}

/* The same descriptor as from, not a dup: the old worker's epoll applies its event_del a loop
 * turn late (changelist); on a dup already closed by then, the registration would outlive it.
 * handed: a socket an upgrade handed over (upgrade.h), ours from now on. */
static struct listener *open_on(struct loop *l, struct listener *from, int handed, bool tls,
                                bool proxy_protocol, enum client_kind kind,
                                const struct sockaddr *sa, socklen_t salen, const char *text)
{
    struct listener *lis = calloc(1, sizeof(*lis));
    if (!lis)
        return NULL;
    lis->loop = l;
    lis->tls = tls;
    lis->proxy_protocol = proxy_protocol;
    lis->kind = kind;
    unsigned flags = LEV_OPT_CLOSE_ON_EXEC; /* listener_close closes what it owns */
    if (from) {
        lis->lis = evconnlistener_new(l->base, accept_cb, lis, flags, 0, from->fd);
        lis->inherited = from;
    } else if (handed >= 0) { /* listening already, its queue with it: no backlog to set */
        lis->lis = evconnlistener_new(l->base, accept_cb, lis, flags, 0, handed);
        atomic_store(&lis->owns_fd, true);
    } else {
        flags |= LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT;
        lis->lis = evconnlistener_new_bind(l->base, accept_cb, lis, flags, 1024, sa, (int)salen);
        atomic_store(&lis->owns_fd, true);
    }
    if (!lis->lis) {
        log_problem("cannot listen on %s: %s", text, strerror(errno));
        free(lis);
        return NULL;
    }
    evconnlistener_set_error_cb(lis->lis, accept_error_cb);
    lis->fd = evconnlistener_get_fd(lis->lis);
    /* Linux hands TCP_NODELAY on to the sockets a listener accepts: set once here instead of
     * once per connection (a syscall of the ~9 that a connection per request costs). */
    int one = 1;
    setsockopt(lis->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* And delayed ACKs from the start (HAProxy does the same): a client's first segment is its
     * request, whose ACK can ride on the response instead of going alone, one segment less
     * per connection. The kernel still ACKs every second full segment of a large upload. */
    int zero = 0;
    setsockopt(lis->fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero));
    lis->text = text;
    if (from) { /* a kept socket takes client_sndbuf and defer_accept when the group starts */
        atomic_store(&lis->deferred, atomic_load(&from->deferred)); /* the socket's, till then */
    } else {
        set_sndbuf(lis);
        set_deferred(lis, handed < 0); /* a new socket defers nothing; a handed one, unknown */
    }
    memcpy(&lis->addr, sa, salen);
    lis->addrlen = salen;
    return lis;
}

struct listener *listener_open(struct loop *l, struct listener *from, bool tls,
                               bool proxy_protocol, enum client_kind kind,
                               const struct sockaddr *sa, socklen_t salen, const char *text)
{
    return open_on(l, from, -1, tls, proxy_protocol, kind, sa, salen, text);
}

struct listener *listener_adopt(struct loop *l, int fd, bool tls, bool proxy_protocol,
                                enum client_kind kind, const struct sockaddr *sa,
                                socklen_t salen, const char *text)
{
    struct listener *lis = open_on(l, NULL, fd, tls, proxy_protocol, kind, sa, salen, text);
    if (!lis)
        close(fd); /* ours either way */
    return lis;
}

int listener_fd(const struct listener *lis)
{
    return lis->fd;
}

void listener_disown(struct listener *lis)
{
    atomic_store(&lis->owns_fd, false);
    atomic_store(&lis->given, true);
}

bool listener_given(const struct listener *lis)
{
    return atomic_load(&lis->given);
}
