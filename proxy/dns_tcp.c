/*
 * dns_tcp.c — A and AAAA asked over TCP of the nameserver the resolver asked last. See dns_tcp.h.
 *
 * One connection, both queries written at once (RFC 7766 6.2.1.1: a server may answer them in
 * any order, so answers are matched by id), one event whose meaning follows the step:
 * CONNECTING waits for EV_WRITE, WRITING for the rest of the queries, READING for the answers.
 * Every end goes through finish(), which frees the lookup before calling the owner.
 */
#include "portico/dns_tcp.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/util.h"

#define DNS_TCP_MSG_MAX 65535 /* the 2-byte length's largest */
/* Lookups over TCP under way at once on one loop (each holds a connection to the nameserver and
 * 66 KiB): a flood of requests for a name that fails (SERVFAIL) would otherwise open one per
 * request. Beyond it, the UDP answer's failure stands. */
#define DNS_TCP_INFLIGHT_MAX 16

enum dns_tcp_step { STEP_CONNECTING, STEP_WRITING, STEP_READING };

/* One of the two questions. */
struct dns_tcp_question {
    uint8_t query[DNS_WIRE_QUERY_MAX];
    size_t qlen;
    bool answered;
    enum dns_wire_result result;
    char detail[120];                      /* the answer's failure, when not DNS_WIRE_OK */
};

struct dns_tcp {
    evutil_socket_t fd;
    struct event ev;                       /* EV_WRITE, then EV_READ (persistent) */
    enum dns_tcp_step step;
    unsigned *inflight;                    /* the owner loop's count, which holds this one */
    int connect_err;                       /* an error connect() gave at once */
    dns_tcp_done done;
    void *arg;
    char server[64];                       /* the nameserver's address as text */
    struct dns_tcp_question q[2];          /* A, AAAA */
    struct dns_tcp_result res;
    uint8_t out[2 * (2 + DNS_WIRE_QUERY_MAX)];
    size_t outlen, outoff;
    size_t inlen;
    uint8_t in[2 + DNS_TCP_MSG_MAX];       /* a length, then at most that many bytes */
};

static void io_cb(evutil_socket_t fd, short what, void *arg);

static void free_lookup(struct dns_tcp *t)
{
    if (event_initialized(&t->ev))
        event_del(&t->ev);
    if (t->fd >= 0)
        evutil_closesocket(t->fd);
    if (t->inflight)
        (*t->inflight)--;
    free(t);
}

/* The end: eai and detail (NULL: none); the lookup is freed before the owner hears of it. */
static void finish(struct dns_tcp *t, int eai, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct dns_tcp *t, int eai, const char *fmt, ...)
{
    struct dns_tcp_result res = t->res;
    res.eai = eai;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res.detail, sizeof(res.detail), fmt, ap);
        va_end(ap);
    }
    dns_tcp_done done = t->done;
    void *arg = t->arg;
    free_lookup(t);
    done(arg, &res);
}

/* Both answers are in: as evdns merges its A and AAAA lookups, addresses of either make the
 * answer; else the first failure, else NXDOMAIN, else no address. */
static void answered(struct dns_tcp *t)
{
    t->res.answered = true;
    if (t->res.v4.n || t->res.v6.n) {
        finish(t, 0, NULL);
        return;
    }
    for (int i = 0; i < 2; i++)
        if (t->q[i].result == DNS_WIRE_BAD || t->q[i].result == DNS_WIRE_FAILED) {
            finish(t, EVUTIL_EAI_FAIL, "%s from %s", t->q[i].detail, t->server);
            return;
        }
    if (t->q[0].result == DNS_WIRE_NXDOMAIN || t->q[1].result == DNS_WIRE_NXDOMAIN)
        finish(t, EVUTIL_EAI_NONAME, "no such name (NXDOMAIN) from %s", t->server);
    else
        finish(t, EVUTIL_EAI_NODATA, "no address from %s", t->server);
}

/* One whole answer (len bytes): matched to its question by id. false: the lookup ended. */
static bool take_answer(struct dns_tcp *t, const uint8_t *msg, size_t len)
{
    uint16_t id = dns_wire_id(msg, len);
    struct dns_tcp_question *q = NULL;
    for (int i = 0; i < 2 && !q; i++)
        if (!t->q[i].answered && dns_wire_id(t->q[i].query, t->q[i].qlen) == id)
            q = &t->q[i];
    if (!q) {
        finish(t, EVUTIL_EAI_FAIL, "an answer with id %u to no query asked from %s", id,
               t->server);
        return false;
    }
    q->answered = true;
    struct dns_wire_addrs *addrs = q == &t->q[0] ? &t->res.v4 : &t->res.v6;
    q->result = dns_wire_answer(msg, len, q->query, q->qlen, addrs, q->detail, sizeof(q->detail));
    if (q->result != DNS_WIRE_OK)
        addrs->n = 0; /* nothing of a failed answer is used */
    if (t->q[0].answered && t->q[1].answered) {
        answered(t);
        return false;
    }
    return true;
}

/* Reads what came; takes every whole answer. */
static void read_answers(struct dns_tcp *t)
{
    for (;;) {
        ssize_t n = recv(t->fd, t->in + t->inlen, sizeof(t->in) - t->inlen, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0) {
            finish(t, EVUTIL_EAI_FAIL, "reading from %s failed: %s", t->server, strerror(errno));
            return;
        }
        if (n == 0) {
            finish(t, EVUTIL_EAI_FAIL, "%s closed the connection before answering%s", t->server,
                   t->inlen ? " in full" : "");
            return;
        }
        t->inlen += (size_t)n;
        while (t->inlen >= 2) {
            size_t len = (size_t)(t->in[0] << 8 | t->in[1]);
            if (t->inlen < 2 + len)
                break;
            if (!take_answer(t, t->in + 2, len))
                return;
            /* the next answer to the front: the one just taken is no longer needed */
            memmove(t->in, t->in + 2 + len, t->inlen - 2 - len);
            t->inlen -= 2 + len;
        }
    }
}

/* Writes what is left of the queries; then reads. */
static void write_queries(struct dns_tcp *t)
{
    while (t->outoff < t->outlen) {
        ssize_t n = send(t->fd, t->out + t->outoff, t->outlen - t->outoff, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            t->step = STEP_WRITING;
            event_add(&t->ev, NULL);
            return;
        }
        if (n < 0) {
            finish(t, EVUTIL_EAI_FAIL, "sending to %s failed: %s", t->server, strerror(errno));
            return;
        }
        t->outoff += (size_t)n;
    }
    t->step = STEP_READING;
    event_del(&t->ev);
    event_assign(&t->ev, event_get_base(&t->ev), t->fd, EV_READ | EV_PERSIST, io_cb, t);
    event_add(&t->ev, NULL);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct dns_tcp *t = arg;
    if (t->step == STEP_CONNECTING) {
        int err = t->connect_err;
        socklen_t len = sizeof(err);
        if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            finish(t, EVUTIL_EAI_FAIL, "connect to %s failed: %s", t->server, strerror(err));
            return;
        }
        write_queries(t);
    } else if (t->step == STEP_WRITING) {
        write_queries(t);
    } else {
        read_answers(t);
    }
}

/* The two queries, each after its length, with distinct random ids. 0 or -1. */
static int make_queries(struct dns_tcp *t, const char *name)
{
    static const uint16_t types[2] = {DNS_TYPE_A, DNS_TYPE_AAAA};
    uint16_t ids[2];
    do
        evutil_secure_rng_get_bytes(ids, sizeof(ids));
    while (ids[0] == ids[1]);
    for (int i = 0; i < 2; i++) {
        struct dns_tcp_question *q = &t->q[i];
        int n = dns_wire_query(q->query, sizeof(q->query), ids[i], name, types[i]);
        if (n < 0)
            return -1;
        q->qlen = (size_t)n;
        t->out[t->outlen++] = (uint8_t)(n >> 8);
        t->out[t->outlen++] = (uint8_t)n;
        memcpy(t->out + t->outlen, q->query, q->qlen);
        t->outlen += q->qlen;
    }
    return 0;
}

struct dns_tcp *dns_tcp_start(struct event_base *base, struct evdns_base *dns, unsigned *inflight,
                              const char *name, dns_tcp_done done, void *arg, char *why,
                              size_t size)
{
    struct sockaddr_storage ns;
    struct dns_tcp *t = NULL;
    /* The nameserver evdns asked last: it does not say which, but nameserver_pick moves the
     * head of its ring just past the one it picks (and past those it marked failed), so the
     * head (index 0) is the next to ask, with two nameservers the other one, dead or alive, and
     * the one before it (the last index) the one just asked, alive then. */
    int count = evdns_base_count_nameservers(dns);
    int nslen = count > 0 ? evdns_base_get_nameserver_addr(dns, count - 1, (struct sockaddr *)&ns,
                                                           sizeof(ns))
                          : -1;
    if (nslen <= 0 || (size_t)nslen > sizeof(ns)) {
        snprintf(why, size, "no nameserver to ask over TCP");
        goto fail;
    }
    if (*inflight >= DNS_TCP_INFLIGHT_MAX) {
        snprintf(why, size, "%d lookups over TCP under way already", DNS_TCP_INFLIGHT_MAX);
        goto fail;
    }
    t = zalloc(sizeof(*t));
    if (!t) {
        snprintf(why, size, "out of memory");
        goto fail;
    }
    t->fd = -1;
    t->inflight = inflight;
    (*inflight)++;
    t->done = done;
    t->arg = arg;
    sockaddr_str((struct sockaddr *)&ns, t->server, sizeof(t->server));
    if (make_queries(t, name) != 0) {
        snprintf(why, size, "not a name to ask over TCP");
        goto fail;
    }
    t->fd = socket(ns.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd < 0) {
        snprintf(why, size, "socket: %s", strerror(errno));
        goto fail;
    }
    /* A failure now is reported from the loop too, as the owner expects of every end. */
    if (connect(t->fd, (struct sockaddr *)&ns, (socklen_t)nslen) != 0 && errno != EINPROGRESS)
        t->connect_err = errno;
    t->step = STEP_CONNECTING;
    event_assign(&t->ev, base, t->fd, EV_WRITE, io_cb, t);
    if (t->connect_err)
        event_active(&t->ev, EV_WRITE, 1);
    else
        event_add(&t->ev, NULL);
    return t;
fail:
    if (t)
        free_lookup(t);
    return NULL;
}

const char *dns_tcp_server(const struct dns_tcp *t)
{
    return t->server;
}

void dns_tcp_cancel(struct dns_tcp *t)
{
    if (t)
        free_lookup(t);
}
