/*
 * sock.c — non-blocking connections with their own reads, writes and deadlines. See sock.h.
 *
 * Reading: one readv (or SSL_read) into reserved space of the input buffer, 16 KiB for the first
 * read of an event and 64 KiB after a full one, up to 256 KiB per event so that one busy peer
 * cannot starve the others. A short read means the socket ran dry: no second read to meet
 * EAGAIN. An EOF or error found after some bytes is reported on the next loop turn, after the
 * bytes (the read event is activated by hand; an EOF's again when reading resumes, if a pause
 * withdrew it), so the owner always sees data before the end.
 *
 * Writing: sock_flush writes at once; only what the peer does not take waits for EV_WRITE.
 * Over TLS the front of the output is written as records of up to 16 KiB (the pullup merges a
 * small head with the body chunk behind it: one record and one syscall instead of two).
 *
 * Splicing (sock_splice): a body between two plain sockets goes socket → pipe → socket with
 * splice(2). On loopback and most NICs the kernel moves page references instead of copying the
 * bytes twice through user space (HAProxy's splice-auto does the same). The pipe belongs to the
 * destination: its bytes always precede the output buffer's, because bytes are spliced in only
 * while that buffer is empty, and write_out sends the pipe first.
 */
#include "portico/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* tcpi_bytes_acked, which glibc's netinet/tcp.h lacks */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "portico/evmem.h"
#include "portico/log.h"
#include "portico/tls.h"
#include "portico/util.h"
#include "portico/waitset.h"

#define FIRST_READ (16 * 1024)   /* first read of an event (its chain: EVMEM_BLOCK, evmem.h) */
#define NEXT_READ (64 * 1024)    /* after a read that filled its space */
#define EVENT_READ_MAX (256 * 1024)
#define WRITE_MAX (1024 * 1024)  /* one send or sendmsg */
#define WRITE_SPANS 64           /* evbuffer chains in one sendmsg */
#define TLS_RECORD (16 * 1024)
#define PIPE_SIZE (1024 * 1024)  /* asked of each splice pipe: fs.pipe-max-size's default */
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)

struct sock_pipe {
    int rd, wr;
    size_t len;                   /* bytes in it: spliced in, not yet out */
    size_t cap;                   /* its size */
    bool release;                 /* the splice is over: close once drained */
};

enum sock_flag {
    SF_READING = 1u << 0,         /* the owner wants input */
    SF_REV_ADDED = 1u << 1,       /* rev is registered */
    SF_WEV_ADDED = 1u << 2,       /* wev is registered: a write waits */
    SF_READ_PAUSED = 1u << 3,     /* input at read_limit: rev withdrawn until consumed */
    SF_EOF = 1u << 4,             /* the peer's EOF was seen (reported, or pending) */
    SF_EOF_PENDING = 1u << 5,     /* EOF seen behind data: report on the next turn */
    SF_READ_NEEDS_WRITE = 1u << 6, /* TLS: SSL_read wants the socket writable */
    SF_WRITE_NEEDS_READ = 1u << 7, /* TLS: SSL_write wants the socket readable */
    SF_HS_WANTS_WRITE = 1u << 8,  /* TLS handshake waits for writability */
    SF_REQUEUED = 1u << 9,        /* sock_requeue: report the buffered input from the loop */
    SF_FAIL_PENDING = 1u << 10,   /* fail_later: SOCK_ERROR is reported from the loop via rev */
    SF_RAW = 1u << 11,            /* spliced from: readability is reported, nothing is read */
    SF_TLS_CUT = 1u << 12,        /* TLS: the peer closed without a close_notify */
    SF_OWNER_DUE = 1u << 13,      /* sock_owner_due_now: SOCK_DEADLINE from the loop via rev */
    SF_READ_NOW = 1u << 14,       /* sock_read_now: rev was activated by hand, not yet run */
    SF_FRESH = 1u << 15,          /* rev runs for SF_READ_NOW in sock_init's turn: no dispatch
                                     applied its registration yet (sock_may_watch_later) */
    SF_WATCH_LATER = 1u << 16,    /* rev held back until sock_watch_now (sock_watch_later) */
    SF_WROTE = 1u << 17,          /* a byte the owner queued went to the socket (sock_wrote) */
    SF_FIRST_WAIT = 1u << 18,     /* armed in s->waitset instead of rev (first_wait_park) */
    SF_IN_WAITSET = 1u << 19,     /* registered in s->waitset, armed or fired, until the close */
    SF_REV_HELD = 1u << 20,       /* SF_REV_ADDED, its event_add not made yet (sock_init_read_now):
                                     made when the read's event ends (rev_commit), never when the
                                     owner withdraws it first */
};

static const char *const sock_event_names[] = {
#define X(id, name) [id] = name,
    SOCK_EVENT_LIST(X)
#undef X
};

const char *sock_event_name(enum sock_event ev)
{
    return (unsigned)ev < ARRAY_LEN(sock_event_names) ? sock_event_names[ev] : "unknown";
}

static void on_rev(evutil_socket_t fd, short what, void *arg);
static void on_wev(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

/* ---- registration ---- */

static bool want_rev(const struct sock *s)
{
    if (s->state == SOCK_HANDSHAKE)
        return !(s->flags & SF_HS_WANTS_WRITE);
    if (s->state != SOCK_OPEN)
        return false;
    if (s->flags & SF_WRITE_NEEDS_READ)
        return true;
    return (s->flags & SF_READING) &&
           !(s->flags & (SF_READ_PAUSED | SF_EOF | SF_WATCH_LATER | SF_FIRST_WAIT));
}

/* Reading for real: the read deadline only runs while we wait on the socket for the peer. */
static bool read_watching(const struct sock *s)
{
    return s->state == SOCK_OPEN && (s->flags & SF_REV_ADDED) && (s->flags & SF_READING) &&
           !(s->flags & SF_READ_PAUSED);
}

static void arm_timer(struct sock *s, uint64_t now)
{
    uint64_t deadline = UINT64_MAX;
    if (s->read_timeout_us && read_watching(s))
        deadline = s->read_since + s->read_timeout_us;
    if (s->write_timeout_us && (s->flags & SF_WEV_ADDED))
        deadline = MIN(deadline, s->write_since + s->write_timeout_us);
    if (s->owner_at)
        deadline = MIN(deadline, s->owner_at);
    if (deadline == UINT64_MAX)
        deadline_clear(&s->timer);
    else
        deadline_set(&s->timer, deadline, now);
}

static void fail_later(struct sock *s);

#define WATCH_FAILED_QUIET_US 1000000 /* one line a second per thread; the rest are counted */

/* event_add failed: no memory for epoll's change list, or the kernel refused the registration
 * (ENOMEM, ENOSPC past fs.epoll.max_user_watches). A socket not watched never wakes: its owner
 * would wait for its deadline, forever without one. It fails instead (SOCK_ERROR from the loop,
 * as for any failure: the owner closes), said in the error log. */
static void watch_failed(struct sock *s, const char *what)
{
    static __thread uint64_t said_us;
    static __thread unsigned unsaid;
    s->err = errno ? errno : ENOMEM; /* errno 0: libevent's allocation failed */
    uint64_t now = now_us();
    if (said_us && now - said_us < WATCH_FAILED_QUIET_US) {
        unsaid++;
    } else {
        if (unsaid)
            log_warn("socket %d: cannot watch it for %s (%s): connection closed (and %u more "
                     "since the last such line)", s->fd, what, strerror(s->err), unsaid);
        else
            log_warn("socket %d: cannot watch it for %s (%s): connection closed", s->fd, what,
                     strerror(s->err));
        said_us = now;
        unsaid = 0;
    }
    fail_later(s);
}

/* Registers or withdraws rev to match what the sock wants. */
static void update_rev(struct sock *s)
{
    bool want = want_rev(s);
    if (want && !(s->flags & SF_REV_ADDED)) {
        errno = 0; /* a failure of libevent's own allocations may leave it as it was */
        if (event_add(&s->rev, NULL) != 0) {
            watch_failed(s, "reading");
            return;
        }
        s->flags |= SF_REV_ADDED;
        s->read_since = event_now_us();
        arm_timer(s, s->read_since);
    } else if (!want && (s->flags & SF_REV_ADDED)) {
        /* Held: no registration to take back, only an activation to cancel, if one is due
         * (event_del's bookkeeping costs ~150 instructions even for nothing). */
        if (!(s->flags & SF_REV_HELD) || event_pending(&s->rev, EV_READ, NULL))
            event_del(&s->rev);
        s->flags &= ~(SF_REV_ADDED | SF_REV_HELD);
    }
}

/* The sock whose event runs now with its registration held (SF_REV_HELD); its owner's close
 * forgets it, so that the end of the event knows whether the sock is still there. */
static __thread struct sock *held_in_event;

/* Makes the registration sock_init_read_now held back, when the owner kept it (the event that
 * read at the accept ended, or no such event comes): still before any dispatch, which is all
 * epoll needs of it (level-triggered: nothing that came meanwhile is missed). */
static void rev_commit(struct sock *s)
{
    if (!(s->flags & SF_REV_HELD))
        return;
    s->flags &= ~SF_REV_HELD;
    errno = 0;
    if (event_add(&s->rev, NULL) != 0) {
        s->flags &= ~SF_REV_ADDED;
        watch_failed(s, "reading");
    }
}

static void wev_add(struct sock *s)
{
    if (s->flags & SF_WEV_ADDED)
        return;
    if (!s->wev && !(s->wev = event_new(event_get_base(&s->rev), s->fd, EV_WRITE | EV_PERSIST, on_wev, s))) {
        s->err = ENOMEM;
        fail_later(s);
        return;
    }
    errno = 0;
    if (event_add(s->wev, NULL) != 0) {
        watch_failed(s, "writing");
        return;
    }
    s->flags |= SF_WEV_ADDED;
    s->write_since = event_now_us();
    arm_timer(s, s->write_since);
}

static void wev_del(struct sock *s)
{
    if (!(s->flags & SF_WEV_ADDED))
        return;
    event_del(s->wev);
    s->flags &= ~SF_WEV_ADDED;
}

/* ---- failures ---- */

/* The TLS outcome of a failed SSL call: -1 would block (flags say for what), -2 EOF, -3 error
 * (err / ssl_err recorded). The error queue is emptied so no other connection sees it. */
static int tls_failure(struct sock *s, int rc, unsigned wants_write_flag, unsigned wants_read_flag)
{
    int e = SSL_get_error(s->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        s->flags |= wants_read_flag;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        s->flags |= wants_write_flag;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        if (tls_end_cut(s->ssl))
            s->flags |= SF_TLS_CUT; /* a client's bare FIN, reported as a close_notify */
        return -2;
    case SSL_ERROR_SYSCALL:
        s->err = errno;
        s->ssl_err = ERR_get_error();
        ERR_clear_error();
        if (!s->err && !s->ssl_err) {
            s->flags |= SF_TLS_CUT;
            return -2; /* the peer closed without close_notify: an EOF; framing tells the rest */
        }
        return -3;
    default:
        if (ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_SSL &&
            ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error(); /* the same, where SSL_OP_IGNORE_UNEXPECTED_EOF is not set */
            s->flags |= SF_TLS_CUT;
            return -2;
        }
        s->ssl_err = ERR_get_error();
        ERR_clear_error();
        return -3;
    }
}

/* Records the failure; SOCK_ERROR reaches the owner from the loop (never from inside a call the
 * owner made), through rev, which sees SOCK_FAILED. */
static void fail_later(struct sock *s)
{
    s->state = SOCK_FAILED;
    s->flags |= SF_FAIL_PENDING;
    update_rev(s);
    wev_del(s);
    event_active(&s->rev, EV_READ, 1);
}

/* ---- reading ---- */

/* Reads what the socket has. Returns bytes read (> 0), 0 for none (would block, or paused at
 * the limit), -2 for EOF, -3 for an error. An EOF or error after some bytes is left pending. */
static long read_in(struct sock *s)
{
    size_t total = 0;
    for (;;) {
        size_t have = evbuffer_get_length(s->in);
        if (s->read_limit && have >= s->read_limit) {
            s->flags |= SF_READ_PAUSED;
            break;
        }
        size_t want = total ? NEXT_READ : FIRST_READ;
        if (s->read_limit)
            want = MIN(want, s->read_limit - have);
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(s->in, (ev_ssize_t)want, v, 2);
        if (nv <= 0) {
            s->err = ENOMEM;
            return -3;
        }
        size_t room = 0;
        for (int i = 0; i < nv; i++) { /* reserve may offer more than asked: take only want */
            v[i].iov_len = MIN(v[i].iov_len, want - room);
            room += v[i].iov_len;
        }
        size_t got = 0;
        int end = 0; /* -1 would block, -2 EOF, -3 error */
        if (!s->ssl) {
            /* recv when one span will do: a socket call skips readv's VFS layer and iovec copy
             * (~3% of a small request's kernel time). */
            ssize_t n = nv == 1 ? recv(s->fd, v[0].iov_base, v[0].iov_len, 0)
                                : readv(s->fd, (struct iovec *)v, nv); /* laid out as iovec */
            if (n > 0)
                got = (size_t)n;
            else if (n == 0)
                end = -2;
            else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                end = -1;
            else
                s->err = errno, end = -3;
        } else {
            ERR_clear_error();
            int rc = SSL_read_ex(s->ssl, v[0].iov_base, v[0].iov_len, &got);
            if (rc <= 0) {
                got = 0;
                end = tls_failure(s, rc, SF_READ_NEEDS_WRITE, 0);
            }
            room = v[0].iov_len;
        }
        if (got) {
            size_t left = got;
            int used = 0;
            for (; used < nv && left; used++) {
                v[used].iov_len = MIN(v[used].iov_len, left);
                left -= v[used].iov_len;
            }
            evbuffer_commit_space(s->in, v, used);
            total += got;
        } else {
            evbuffer_commit_space(s->in, v, 0);
        }
        if (end == -2 || end == -3) {
            if (!total)
                return end;
            /* Report the bytes first, the end on the next turn. */
            s->flags |= end == -2 ? SF_EOF_PENDING : 0;
            if (end == -3)
                fail_later(s);
            else
                event_active(&s->rev, EV_READ, 1);
            break;
        }
        if (end == -1)
            break;
        bool more = s->ssl ? got == room || SSL_has_pending(s->ssl) : got == room;
        if (!more)
            break;
        if (total >= EVENT_READ_MAX) {
            /* Fair share taken; what TLS already decrypted is not visible to epoll. */
            if (s->ssl && SSL_has_pending(s->ssl))
                event_active(&s->rev, EV_READ, 1);
            break;
        }
    }
    if (total)
        s->read_since = event_now_us();
    else /* a silent socket (a first read at accept) holds no 16 KiB it found nothing for */
        evmem_drop_empty(s->in);
    if (s->flags & SF_READ_PAUSED)
        update_rev(s);
    return (long)total;
}

/* Input read but not yet reported raises no epoll event: bytes OpenSSL holds (read ahead, or
 * decrypted and not yet taken), and an end found behind earlier bytes, whose report a pause
 * withdrew with rev (after a close_notify, read ahead with the last data, the peer may send
 * nothing more, not even a FIN). The read is scheduled by hand instead. */
static void read_buffered(struct sock *s)
{
    if (s->state == SOCK_OPEN && want_rev(s) &&
        ((s->flags & SF_EOF_PENDING) || (s->ssl && SSL_has_pending(s->ssl))))
        event_active(&s->rev, EV_READ, 1);
}

/* ---- writing ---- */

/* Counts bytes the kernel took, for sock_all_left (saturated: a long connection's count stays
 * past the bound). */
static void count_sent(struct sock *s, size_t n)
{
    s->sent = n < UINT32_MAX - s->sent ? s->sent + (uint32_t)n : UINT32_MAX;
}

bool sock_all_left(const struct sock *s)
{
    return s->sent <= SOCK_FIRST_FLIGHT && !s->ssl;
}

/* Writes what fits of up to WRITE_MAX bytes of out, drained as sent: send for one span (the
 * usual small response head and body), sendmsg for several. */
static ssize_t send_some(struct sock *s)
{
    struct evbuffer_iovec v[WRITE_SPANS];
    int nv = evbuffer_peek(s->out, WRITE_MAX, NULL, v, WRITE_SPANS);
    if (nv > WRITE_SPANS)
        nv = WRITE_SPANS;
    size_t len = 0;
    for (int i = 0; i < nv; i++)
        len += v[i].iov_len;
    if (len > WRITE_MAX && nv > 0) { /* peek ends on a span boundary: trim the last */
        size_t over = len - WRITE_MAX;
        v[nv - 1].iov_len -= MIN(over, v[nv - 1].iov_len);
    }
    ssize_t n;
    if (nv == 1) {
        n = send(s->fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL);
    } else {
        struct msghdr m = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)nv};
        n = sendmsg(s->fd, &m, MSG_NOSIGNAL);
    }
    if (n > 0) {
        evbuffer_drain(s->out, (size_t)n);
        count_sent(s, (size_t)n);
    }
    return n;
}

static void pipe_close(struct sock *s)
{
    close(s->pipe->rd);
    close(s->pipe->wr);
    free(s->pipe);
    s->pipe = NULL;
}

/* Sends what the pipe holds. 0: all of it; 1: the rest waits; -1: failed (recorded). */
static int pipe_out(struct sock *s)
{
    struct sock_pipe *p = s->pipe;
    while (p->len) {
        ssize_t n = splice(p->rd, NULL, s->fd, NULL, p->len, SPLICE_FLAGS);
        if (n > 0) {
            p->len -= (size_t)n;
            count_sent(s, (size_t)n);
            s->write_since = event_now_us();
            s->flags |= SF_WROTE;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 1;
        s->err = n < 0 ? errno : EPIPE;
        return -1;
    }
    if (p->release)
        pipe_close(s);
    return 0;
}

/* Writes the output, the pipe's bytes first. 0: all written; 1: the rest waits; -1: failed
 * (recorded). */
static int write_out(struct sock *s)
{
    if (s->pipe && s->pipe->len) {
        int rc = pipe_out(s);
        if (rc != 0)
            return rc;
    }
    bool progress = false;
    int rc = 0;
    while (evbuffer_get_length(s->out) > 0) {
        if (!s->ssl) {
            ssize_t n = send_some(s);
            if (n > 0) {
                progress = true;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                rc = 1;
                break;
            }
            s->err = n < 0 ? errno : EPIPE;
            rc = -1;
            break;
        }
        size_t n = MIN(evbuffer_get_length(s->out), (size_t)TLS_RECORD);
        const unsigned char *p = evbuffer_pullup(s->out, (ev_ssize_t)n);
        if (!p) {
            s->err = ENOMEM;
            rc = -1;
            break;
        }
        size_t written = 0;
        ERR_clear_error();
        int r = SSL_write_ex(s->ssl, p, n, &written);
        if (r > 0) {
            evbuffer_drain(s->out, written);
            progress = true;
            continue;
        }
        int end = tls_failure(s, r, 0, SF_WRITE_NEEDS_READ);
        if (end == -1) {
            rc = 1;
            break;
        }
        if (end == -2)
            s->err = EPIPE; /* closed under our write: the same as a reset for the owner */
        rc = -1;
        break;
    }
    if (progress) {
        s->write_since = event_now_us();
        s->flags |= SF_WROTE;
    }
    return rc;
}

/* ---- TLS handshake ---- */

static void handshake_step(struct sock *s)
{
    s->flags &= ~SF_HS_WANTS_WRITE;
    ERR_clear_error();
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        s->state = SOCK_OPEN;
        wev_del(s);
        update_rev(s);
        /* The peer's first bytes may have come in one read with its last handshake message. */
        read_buffered(s);
        s->cb(s->arg, SOCK_CONNECTED);
        return;
    }
    int end = tls_failure(s, rc, SF_HS_WANTS_WRITE, 0);
    if (end == -1) {
        if (s->flags & SF_HS_WANTS_WRITE)
            wev_add(s);
        else
            wev_del(s);
        update_rev(s);
        return;
    }
    s->state = SOCK_FAILED;
    update_rev(s);
    wev_del(s);
    s->cb(s->arg, end == -2 ? SOCK_EOF : SOCK_ERROR);
}

/* ---- events ---- */

/* A read at the accept (or at the first wait's report) found nothing: the socket waits in the
 * waitset rather than in libevent's epoll, whose ADD (sock_init's, still in the changelist: no
 * dispatch since, SF_FRESH) is withdrawn. Only for a plain socket that waits for nothing else
 * (the conditions of sock_watch_later); when the waitset refuses, libevent watches as before. */
static void first_wait_park(struct sock *s)
{
    const unsigned riding = SF_EOF_PENDING | SF_FAIL_PENDING | SF_REQUEUED | SF_OWNER_DUE;
    if (s->ssl || s->state != SOCK_OPEN || (s->flags & riding) || !(s->flags & SF_REV_ADDED) ||
        waitset_arm(s->waitset, s->fd, s, (s->flags & SF_IN_WAITSET) != 0) != 0)
        return;
    s->flags = (s->flags & ~SF_FRESH) | SF_FIRST_WAIT | SF_IN_WAITSET;
    update_rev(s); /* event_del: it cancels the event_add in the changelist */
}

/* Input arrived (or an EOF/error pending behind earlier bytes is due). */
static void do_read(struct sock *s)
{
    if (s->flags & SF_EOF_PENDING) {
        s->flags = (s->flags & ~SF_EOF_PENDING) | SF_EOF;
        update_rev(s);
        s->cb(s->arg, SOCK_EOF);
        return;
    }
    if (s->flags & SF_RAW) {
        /* The owner splices. One report per sock_splice: an owner that cannot splice now (its
         * origin connection is being replaced) is not called again and again meanwhile. */
        s->flags |= SF_READ_PAUSED;
        update_rev(s);
        s->cb(s->arg, SOCK_READABLE);
        return;
    }
    long n = read_in(s);
    if (s->flags & SF_READ_NEEDS_WRITE)
        wev_add(s); /* TLS: the read goes on once the socket takes our bytes */
    if (n > 0) {
        s->cb(s->arg, SOCK_READABLE);
        return;
    }
    if (n == 0 && (s->flags & SF_FRESH) && s->waitset)
        first_wait_park(s);
    if (n == -2) {
        s->flags |= SF_EOF;
        update_rev(s);
        s->cb(s->arg, SOCK_EOF);
    } else if (n == -3) {
        s->state = SOCK_FAILED;
        update_rev(s);
        wev_del(s);
        s->cb(s->arg, SOCK_ERROR);
    }
}

/* The output can move again. */
static void do_write(struct sock *s)
{
    int rc = write_out(s);
    if (rc == 1 && (s->flags & SF_WRITE_NEEDS_READ)) {
        wev_del(s); /* TLS: the write goes on once the peer sent what OpenSSL needs */
        update_rev(s);
        return;
    }
    if (rc == 1) {
        wev_add(s);
        return;
    }
    wev_del(s);
    if (rc < 0) {
        s->state = SOCK_FAILED;
        update_rev(s);
        s->cb(s->arg, SOCK_ERROR);
        return;
    }
    arm_timer(s, s->write_since);
    s->cb(s->arg, SOCK_DRAINED);
}

static void rev_event(struct sock *s)
{
    /* Fresh only while this runs for sock_read_now's activation: it runs in the same pass of
     * the loop as the accept (libevent runs what is activated during a pass in that pass), and
     * any later event of this sock may come after a dispatch. */
    s->flags = (s->flags & ~(SF_READ_NOW | SF_FRESH)) | ((s->flags & SF_READ_NOW) ? SF_FRESH : 0);
    if (s->flags & SF_OWNER_DUE) {
        s->flags &= ~SF_OWNER_DUE;
        read_buffered(s); /* what epoll cannot report waits for the next activation */
        s->cb(s->arg, SOCK_DEADLINE);
        return;
    }
    if (s->state == SOCK_HANDSHAKE) {
        handshake_step(s);
        return;
    }
    if (s->state == SOCK_FAILED && (s->flags & SF_FAIL_PENDING)) {
        s->flags &= ~SF_FAIL_PENDING;
        s->cb(s->arg, SOCK_ERROR);
        return;
    }
    if (s->state != SOCK_OPEN)
        return;
    if (s->flags & SF_REQUEUED) {
        s->flags &= ~SF_REQUEUED;
        if (evbuffer_get_length(s->in) > 0) {
            /* This turn reports the buffer: the socket, if readable too, is reported on the
             * next, and what epoll cannot report (read_buffered) is scheduled for it. */
            read_buffered(s);
            s->cb(s->arg, SOCK_READABLE);
            return;
        }
    }
    if (s->flags & SF_WRITE_NEEDS_READ) {
        s->flags &= ~SF_WRITE_NEEDS_READ;
        update_rev(s);
        do_write(s);
        return;
    }
    do_read(s);
}

static void wev_event(struct sock *s)
{
    s->flags &= ~SF_FRESH;
    switch (s->state) {
    case SOCK_HANDSHAKE:
        handshake_step(s);
        return;
    case SOCK_FAILED: /* reported through rev (fail_later) or directly */
        wev_del(s);
        return;
    case SOCK_OPEN:
        break;
    case SOCK_CLOSED:
        return;
    }
    if (s->flags & SF_READ_NEEDS_WRITE) {
        s->flags &= ~SF_READ_NEEDS_WRITE;
        if (evbuffer_get_length(s->out) == 0)
            wev_del(s);
        do_read(s);
        return;
    }
    do_write(s);
}

static void timer_event(struct sock *s)
{
    uint64_t now = event_now_us();
    s->flags &= ~SF_FRESH;
    if (!deadline_due(&s->timer, now))
        return;
    if (s->owner_at && now >= s->owner_at) {
        s->owner_at = 0;
        arm_timer(s, now);
        s->cb(s->arg, SOCK_DEADLINE);
        return;
    }
    if (s->read_timeout_us && read_watching(s) && now >= s->read_since + s->read_timeout_us) {
        s->read_since = now;
        arm_timer(s, now);
        s->cb(s->arg, SOCK_READ_TIMEOUT);
        return;
    }
    if (s->write_timeout_us && (s->flags & SF_WEV_ADDED) &&
        now >= s->write_since + s->write_timeout_us) {
        s->write_since = now;
        arm_timer(s, now);
        s->cb(s->arg, SOCK_WRITE_TIMEOUT);
        return;
    }
    arm_timer(s, now);
}

/* The libevent entry points: each handles one event at the time it was dispatched (one clock
 * read for the whole event, util.h). The sock may be freed by its owner's callback, so nothing
 * after the handler touches it. */
static void on_rev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct sock *s = arg;
    event_begin();
    if (s->flags & SF_REV_HELD)
        held_in_event = s;
    rev_event(s);
    if (held_in_event) { /* still open: the owner kept its registration, or withdrew it */
        rev_commit(held_in_event);
        held_in_event = NULL;
    }
    event_end();
}

static void on_wev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_begin();
    wev_event(arg);
    event_end();
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_begin();
    timer_event(arg);
    event_end();
}

/* ---- public ---- */

static int sock_open(struct sock *s, struct deadline_clock *clock, evutil_socket_t fd, SSL *ssl,
                     sock_cb *cb, void *arg, bool held)
{
    *s = (struct sock){.fd = fd, .ssl = ssl, .cb = cb, .arg = arg};
    s->in = evmem_buffer_new(); /* a closed connection's, when the thread kept one */
    s->out = evmem_buffer_new();
    if (!s->in || !s->out) {
        evmem_buffer_free(s->in);
        evmem_buffer_free(s->out);
        SSL_free(ssl); /* the one owner of both, also on failure */
        evutil_closesocket(fd);
        *s = (struct sock){.fd = -1, .state = SOCK_CLOSED};
        return -1;
    }
    event_assign(&s->rev, deadline_clock_base(clock), fd, EV_READ | EV_PERSIST, on_rev, s);
    deadline_init(&s->timer, clock, on_timer, s);
    if (ssl) {
        SSL_set_fd(ssl, fd);
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* One read(2) takes what the socket has, not two per record (its header, then its
         * body). Bytes OpenSSL read ahead are invisible to epoll: every place that would wait
         * for the socket asks SSL_has_pending first. */
        SSL_set_read_ahead(ssl, 1);
    }
    s->state = SOCK_OPEN;
    if (held) { /* registered as update_rev would, but for the event_add */
        s->flags = SF_READING | SF_REV_ADDED | SF_REV_HELD;
        s->read_since = event_now_us();
        arm_timer(s, s->read_since);
    } else {
        s->flags = SF_READING;
        update_rev(s);
    }
    return 0;
}

int sock_init(struct sock *s, struct deadline_clock *clock, evutil_socket_t fd, SSL *ssl, sock_cb *cb,
              void *arg)
{
    return sock_open(s, clock, fd, ssl, cb, arg, false);
}

int sock_init_read_now(struct sock *s, struct deadline_clock *clock, evutil_socket_t fd, SSL *ssl,
                       sock_cb *cb, void *arg)
{
    return sock_open(s, clock, fd, ssl, cb, arg, true);
}

void sock_set_cb(struct sock *s, sock_cb *cb, void *arg)
{
    s->cb = cb;
    s->arg = arg;
}

void sock_handshake(struct sock *s)
{
    if (!s->ssl || s->state != SOCK_OPEN)
        return;
    s->state = SOCK_HANDSHAKE;
    update_rev(s);
    /* The accepting side has nothing to do before the peer's first byte, and OpenSSL's first
     * step allocates its record and handshake buffers (42 KB a connection, against 1 KB for a
     * plain one): it waits for rev. The connecting side speaks first: from the loop, like every
     * outcome (a handshake can fail before the caller returns). */
    if (!SSL_is_server(s->ssl))
        event_active(&s->rev, EV_READ, 1);
}

void sock_read_now(struct sock *s, struct waitset *first_wait)
{
    s->waitset = first_wait;
    /* A handshake's first step allocates OpenSSL's buffers (sock_handshake): not for a socket
     * the kernel handed over with nothing to read (a silent client after the deferral's 1 s, or
     * one accepted by SYN cookie): 42 KB each instead of 9 (one peek per TLS accept). */
    bool bytes;
    if ((s->state == SOCK_OPEN || s->state == SOCK_HANDSHAKE) &&
        (s->state == SOCK_OPEN || sock_peer_pending(s, &bytes))) {
        s->flags |= SF_READ_NOW;
        event_active(&s->rev, EV_READ, 1);
    } else {
        rev_commit(s); /* nothing yet: epoll says when */
    }
}

void sock_first_ready(void *arg)
{
    struct sock *s = arg;
    if (!(s->flags & SF_FIRST_WAIT))
        return;
    s->flags &= ~SF_FIRST_WAIT; /* ONESHOT: the entry is disarmed */
    update_rev(s);              /* in the changelist, which this pass's read may withdraw */
    if (want_rev(s))
        sock_read_now(s, s->waitset);
}

bool sock_may_watch_later(const struct sock *s)
{
    return (s->flags & SF_FRESH) != 0;
}

bool sock_watch_later(struct sock *s)
{
    /* Not over TLS (OpenSSL's read-ahead is no epoll matter); not while a report rides on rev's
     * activation, which withdrawing it would cancel (an end or a failure behind the bytes, a
     * requeue, the owner's deadline due now); not when rev was never added (paused, at its
     * end): there is nothing to hold back. */
    const unsigned riding = SF_EOF_PENDING | SF_FAIL_PENDING | SF_REQUEUED | SF_OWNER_DUE;
    if (!(s->flags & SF_FRESH) || s->ssl || s->state != SOCK_OPEN || (s->flags & riding) ||
        !(s->flags & SF_REV_ADDED))
        return false;
    s->flags = (s->flags & ~SF_FRESH) | SF_WATCH_LATER;
    update_rev(s); /* event_del: it cancels sock_init's event_add in the changelist */
    return true;
}

void sock_watch_now(struct sock *s)
{
    if (!(s->flags & SF_WATCH_LATER))
        return;
    s->flags &= ~SF_WATCH_LATER;
    update_rev(s);
}

void sock_watch_once(struct sock *s)
{
    if (!(s->flags & SF_WATCH_LATER))
        return;
    s->flags &= ~SF_WATCH_LATER;
    if (s->waitset && s->state == SOCK_OPEN && !s->ssl && want_rev(s) &&
        waitset_arm(s->waitset, s->fd, s, (s->flags & SF_IN_WAITSET) != 0) == 0) {
        s->flags |= SF_FIRST_WAIT | SF_IN_WAITSET;
        return;
    }
    update_rev(s);
}

void sock_read(struct sock *s, bool on)
{
    if (s->state == SOCK_CLOSED)
        return;
    s->flags &= ~SF_WATCH_LATER; /* the owner decides now */
    if (on)
        s->flags |= SF_READING;
    else
        s->flags &= ~SF_READING;
    update_rev(s);
    if (on)
        read_buffered(s);
}

void sock_set_read_limit(struct sock *s, size_t limit)
{
    s->read_limit = limit;
    sock_consumed(s);
}

void sock_consumed(struct sock *s)
{
    if (!(s->flags & SF_READ_PAUSED) || s->state == SOCK_CLOSED)
        return;
    if (s->read_limit && evbuffer_get_length(s->in) >= s->read_limit)
        return;
    s->flags &= ~SF_READ_PAUSED;
    update_rev(s);
    read_buffered(s);
}

void sock_set_deadline(struct sock *s, uint64_t at)
{
    s->owner_at = at;
    if (s->state != SOCK_CLOSED)
        arm_timer(s, event_now_us());
}

void sock_owner_due_now(struct sock *s)
{
    s->owner_at = 0; /* lazily: the timer, if armed for it, comes up to find nothing due */
    s->flags |= SF_OWNER_DUE;
    event_active(&s->rev, EV_READ, 1);
}

void sock_requeue(struct sock *s)
{
    s->flags |= SF_REQUEUED;
    event_active(&s->rev, EV_READ, 1);
}

void sock_set_timeouts(struct sock *s, uint64_t read_ms, uint64_t write_ms)
{
    uint64_t now = event_now_us();
    s->read_timeout_us = read_ms * 1000;
    s->write_timeout_us = write_ms * 1000;
    s->read_since = now;
    if (s->state != SOCK_CLOSED)
        arm_timer(s, now);
}

int sock_flush(struct sock *s)
{
    if (s->state == SOCK_FAILED)
        return -1;
    if (s->state != SOCK_OPEN || sock_pending(s) == 0)
        return sock_pending(s) ? 1 : 0;
    if (s->flags & (SF_WEV_ADDED | SF_WRITE_NEEDS_READ))
        return 1; /* a write already waits for the peer */
    int rc = write_out(s);
    if (rc == 1 && !(s->flags & SF_WRITE_NEEDS_READ))
        wev_add(s);
    else if (rc == 1)
        update_rev(s);
    else if (rc < 0)
        fail_later(s);
    return rc;
}

static struct sock_pipe *pipe_open(void)
{
    struct sock_pipe *p = malloc(sizeof(*p));
    int fd[2];
    if (!p || pipe2(fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(p);
        return NULL; /* out of descriptors: the body is copied instead */
    }
    /* A large pipe means fewer, larger sends: with 1 MiB, uploads took 301-314 µs of CPU per
     * MiB against 355-433 with the default 64 KiB (docs/BENCHMARKS.md). Past the per-user pipe
     * budget (fs.pipe-user-pages-soft) the kernel keeps a smaller one. */
    int size = fcntl(fd[1], F_SETPIPE_SZ, PIPE_SIZE);
    if (size <= 0)
        size = fcntl(fd[1], F_GETPIPE_SZ);
    *p = (struct sock_pipe){.rd = fd[0], .wr = fd[1], .cap = size > 0 ? (size_t)size : 4096};
    return p;
}

/* src stops being spliced from: it reads into its input again. */
static void raw_end(struct sock *src)
{
    if (!(src->flags & SF_RAW))
        return;
    src->flags &= ~(SF_RAW | SF_READ_PAUSED);
    update_rev(src);
}

/* dst's splice is over: its pipe goes now if empty, else once drained (pipe_out). */
static void pipe_release(struct sock *dst)
{
    if (!dst->pipe)
        return;
    dst->pipe->release = true;
    if (dst->pipe->len == 0)
        pipe_close(dst);
}

long sock_splice(struct sock *src, struct sock *dst, size_t max)
{
    if (src->state != SOCK_OPEN || dst->state != SOCK_OPEN || (src->flags & SF_EOF) || !max)
        return 0; /* the end or the failure is on its way from the loop */
    if (src->ssl || dst->ssl || evbuffer_get_length(src->in) > 0 ||
        (!dst->pipe && !(dst->pipe = pipe_open()))) {
        raw_end(src); /* spliced into another sock before (a retry): read again from now */
        return -1;
    }
    dst->pipe->release = false;
    src->flags = (src->flags | SF_RAW) & ~SF_READ_PAUSED;
    size_t moved = 0;
    /* What dst holds goes first (sock_flush: all of it went, else its SOCK_DRAINED or
     * SOCK_ERROR follows); then the pipe is empty before each splice in: a short splice means
     * src ran dry, no second call to meet EAGAIN. */
    bool open = sock_flush(dst) == 0;
    while (open && moved < max && moved < EVENT_READ_MAX) {
        size_t want = MIN(dst->pipe->cap, max - moved);
        ssize_t n = splice(src->fd, NULL, dst->pipe->wr, NULL, want, SPLICE_FLAGS);
        if (n > 0) {
            dst->pipe->len += (size_t)n;
            moved += (size_t)n;
            open = sock_flush(dst) == 0;
            if ((size_t)n < want)
                break;
            continue;
        }
        if (n == 0) { /* EOF: reported from the loop, after what moved */
            src->flags |= SF_EOF_PENDING;
            event_active(&src->rev, EV_READ, 1);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            src->err = errno;
            fail_later(src);
        }
        break;
    }
    if (moved)
        src->read_since = event_now_us();
    if (moved == max) {
        raw_end(src);
        pipe_release(dst);
    } else if (sock_pending(dst) > 0 && src->state == SOCK_OPEN) {
        src->flags |= SF_READ_PAUSED; /* until dst drained and the owner calls again */
    }
    update_rev(src);
    return (long)moved;
}

void sock_splice_end(struct sock *s)
{
    if (s->state == SOCK_CLOSED)
        return;
    raw_end(s);
    pipe_release(s);
}

long sock_read_remains(struct sock *s)
{
    if (s->state == SOCK_CLOSED)
        return 0;
    size_t total = 0;
    for (;;) {
        size_t have = evbuffer_get_length(s->in);
        if (s->read_limit && have >= s->read_limit)
            break;
        size_t want = s->read_limit ? MIN((size_t)NEXT_READ, s->read_limit - have) : NEXT_READ;
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(s->in, (ev_ssize_t)want, &v, 1) != 1)
            break;
        ssize_t n;
        if (s->ssl) {
            /* A failed SSL_write leaves the read side as it was: the records that came before
             * the reset still decrypt. An alert found here (an origin refusing our certificate
             * after a TLS 1.3 handshake) is kept for the owner, as read_in keeps it; an end
             * that is not a close_notify is a cut, as read_in says of it. */
            size_t got = 0;
            ERR_clear_error();
            int rc = SSL_read_ex(s->ssl, v.iov_base, MIN(v.iov_len, want), &got);
            n = rc == 1 ? (ssize_t)got : -1;
            unsigned long e = ERR_peek_last_error();
            if (n < 0 && !s->ssl_err && ERR_GET_LIB(e) == ERR_LIB_SSL &&
                ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET)
                s->ssl_err = e;
            if (n < 0 && (SSL_get_error(s->ssl, rc) != SSL_ERROR_ZERO_RETURN ||
                          tls_end_cut(s->ssl)))
                s->flags |= SF_TLS_CUT;
            ERR_clear_error();
        } else {
            n = recv(s->fd, v.iov_base, MIN(v.iov_len, want), MSG_DONTWAIT);
        }
        v.iov_len = n > 0 ? (size_t)n : 0;
        evbuffer_commit_space(s->in, &v, n > 0 ? 1 : 0);
        if (n <= 0)
            break; /* the end, the reset, or nothing more yet: all the same now */
        total += (size_t)n;
    }
    s->flags |= SF_EOF; /* nothing will be read after this */
    return (long)total;
}

bool sock_has_input(const struct sock *s)
{
    return evbuffer_get_length(s->in) > 0 || (s->ssl && SSL_has_pending(s->ssl));
}

bool sock_peer_pending(const struct sock *s, bool *bytes)
{
    char byte;
    ssize_t n = recv(s->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    *bytes = n > 0;
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

bool sock_input_arrived(const struct sock *s)
{
    bool bytes = false;
    return sock_has_input(s) || (sock_peer_pending(s, &bytes) && bytes);
}

int64_t sock_bytes_acked(const struct sock *s)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return -1;
    return (int64_t)ti.tcpi_bytes_acked;
}

bool sock_wrote(const struct sock *s)
{
    return s->flags & SF_WROTE;
}

bool sock_at_eof(const struct sock *s)
{
    return (s->flags & SF_EOF) != 0;
}

bool sock_tls_cut(const struct sock *s)
{
    return (s->flags & SF_TLS_CUT) != 0;
}

bool sock_peer_closed(const struct sock *s)
{
    return (s->flags & (SF_EOF | SF_EOF_PENDING)) != 0;
}

size_t sock_pending(const struct sock *s)
{
    return (s->out ? evbuffer_get_length(s->out) : 0) + (s->pipe ? s->pipe->len : 0);
}

void sock_shutdown(struct sock *s)
{
    if (s->state == SOCK_CLOSED)
        return;
    if (s->ssl && s->state == SOCK_OPEN) {
        ERR_clear_error();
        SSL_shutdown(s->ssl); /* close_notify, best effort: we do not wait for the peer's */
        ERR_clear_error();
    }
    shutdown(s->fd, SHUT_WR);
}

void sock_shutdown_cut(struct sock *s)
{
    if (s->state != SOCK_CLOSED)
        shutdown(s->fd, SHUT_WR); /* sock_close sends no close_notify either */
}

void sock_close(struct sock *s)
{
    if (s->state == SOCK_CLOSED)
        return;
    if (s->flags & SF_FIRST_WAIT) /* the close removes the entry: no DEL */
        waitset_forget(s->waitset, s->fd);
    if (held_in_event == s)
        held_in_event = NULL;
    event_del(&s->rev);
    if (s->wev)
        event_free(s->wev);
    s->wev = NULL;
    deadline_stop(&s->timer);
    if (s->ssl) {
        /* No close_notify exchange: the connection is going, whatever the peer thinks. */
        SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(s->ssl);
    }
    evutil_closesocket(s->fd);
    evmem_buffer_free(s->in); /* kept, emptied, for the thread's next connection */
    evmem_buffer_free(s->out);
    if (s->pipe)
        pipe_close(s);
    *s = (struct sock){.fd = -1, .state = SOCK_CLOSED};
}

int sock_set_buffer(evutil_socket_t fd, int opt, int want)
{
    if (setsockopt(fd, SOL_SOCKET, opt, &want, sizeof(want)) != 0)
        return -1;
    int got = 0;
    socklen_t len = sizeof(got);
    return getsockopt(fd, SOL_SOCKET, opt, &got, &len) == 0 ? got / 2 : want;
}

int sock_route_error(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int err = fd < 0 || connect(fd, sa, len) != 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    return err;
}

bool sock_no_route(int err)
{
    return err == EAFNOSUPPORT || err == EADDRNOTAVAIL || err == ENETUNREACH;
}

unsigned long sock_tls_alert(struct sock *s)
{
    if (!s->ssl)
        return 0;
    char byte;
    size_t got;
    ERR_clear_error();
    unsigned long e = 0;
    if (SSL_read_ex(s->ssl, &byte, 1, &got) <= 0)
        e = ERR_peek_last_error();
    ERR_clear_error();
    return e;
}
