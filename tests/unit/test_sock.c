/*
 * test_sock.c — the socket layer over a socketpair and a real event loop: bytes before the EOF,
 * writes that wait and drain, the read limit, the read, write and owner deadlines, a requeue,
 * splicing (order behind a waiting head, back-pressure, the end of raw mode, EOF, refusal),
 * what a TCP peer acknowledged (sock_bytes_acked: a close before our bytes arrived, or after),
 * what the kernel took of a buffer size (sock_set_buffer), and who frees what when
 * sock_init fails (the double SSL_free bufferevent_openssl caused: libevent 2.1 freed the SSL
 * itself and so did we). evbuffer_new is wrapped (-Wl,--wrap) so that it can be made to fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "portico/sock.h"
#include "portico/util.h"

#include "../support/testutil.h"

/* ---- evbuffer_new that fails on demand ---- */

static int fail_evbuffer_new_at = -1; /* the call that fails (0 = next), -1 never */

struct evbuffer *__real_evbuffer_new(void);
struct evbuffer *__wrap_evbuffer_new(void);
struct evbuffer *__wrap_evbuffer_new(void)
{
    if (fail_evbuffer_new_at == 0) {
        fail_evbuffer_new_at = -1;
        return NULL;
    }
    if (fail_evbuffer_new_at > 0)
        fail_evbuffer_new_at--;
    return __real_evbuffer_new();
}

/* ---- event_add that fails on demand (the calls of Portico's objects, not libevent's own) ---- */

static int fail_event_add_at = -1; /* the call that fails (0 = next), -1 never */

int __real_event_add(struct event *ev, const struct timeval *tv);
int __wrap_event_add(struct event *ev, const struct timeval *tv);
int __wrap_event_add(struct event *ev, const struct timeval *tv)
{
    if (fail_event_add_at == 0) {
        fail_event_add_at = -1;
        errno = ENOMEM; /* what libevent's change list says when its realloc fails */
        return -1;
    }
    if (fail_event_add_at > 0)
        fail_event_add_at--;
    return __real_event_add(ev, tv);
}

/* ---- a recorder for the events of one sock ---- */

struct recorder {
    struct sock s;
    struct event_base *base;
    struct deadline_clock *clock;
    enum sock_event events[32];
    int n;
    char data[4096];      /* everything read, in order */
    size_t len;
    bool stop_on_event;
    bool close_on_eof;
    bool hold_input;      /* READABLE consumes nothing: the read limit pauses the sock */
    bool peer_closed_at_read; /* sock_peer_closed at the first READABLE */
    bool watch_later;     /* at the next READABLE: sock_watch_later, then false */
    bool may_watch_later; /* what sock_may_watch_later said then */
    bool held;            /* what sock_watch_later returned then */
};

static void record(void *arg, enum sock_event ev)
{
    struct recorder *r = arg;
    if (r->n < (int)(sizeof(r->events) / sizeof(r->events[0])))
        r->events[r->n++] = ev;
    if (ev == SOCK_READABLE && r->len == 0)
        r->peer_closed_at_read = sock_peer_closed(&r->s);
    if (ev == SOCK_READABLE && r->watch_later) {
        r->may_watch_later = sock_may_watch_later(&r->s);
        r->held = sock_watch_later(&r->s);
        r->watch_later = false;
    }
    if (ev == SOCK_READABLE && !r->hold_input) {
        size_t n = evbuffer_get_length(r->s.in);
        if (r->len + n <= sizeof(r->data))
            evbuffer_remove(r->s.in, r->data + r->len, n);
        r->len += n;
        sock_consumed(&r->s);
    }
    if (ev == SOCK_EOF && r->close_on_eof)
        sock_close(&r->s); /* the owner may close from inside the callback */
    if (r->stop_on_event)
        event_base_loopbreak(r->base);
}

static bool saw(const struct recorder *r, enum sock_event ev)
{
    for (int i = 0; i < r->n; i++)
        if (r->events[i] == ev)
            return true;
    return false;
}

static int count_of(const struct recorder *r, enum sock_event ev)
{
    int n = 0;
    for (int i = 0; i < r->n; i++)
        n += r->events[i] == ev;
    return n;
}

static int index_of(const struct recorder *r, enum sock_event ev)
{
    for (int i = 0; i < r->n; i++)
        if (r->events[i] == ev)
            return i;
    return -1;
}

/* Runs the loop until the recorder has seen ev (each event stops the loop), at most 2 s. */
static void run_until(struct recorder *r, enum sock_event ev)
{
    uint64_t deadline = now_us() + 2000000;
    r->stop_on_event = true;
    while (!saw(r, ev) && now_us() < deadline) {
        struct timeval tick = {0, 50000};
        event_base_loopexit(r->base, &tick);
        event_base_dispatch(r->base);
    }
    r->stop_on_event = false;
}

/* Runs until ev comes (it must), and says how many ms after t0 it came. */
static uint64_t ms_until(struct recorder *r, enum sock_event ev, uint64_t t0)
{
    run_until(r, ev);
    assert_true(saw(r, ev));
    return (now_us() - t0) / 1000;
}

/* Runs the loop for ms. */
static void run_for(struct event_base *base, int ms)
{
    struct timeval tick = {0, ms * 1000};
    event_base_loopexit(base, &tick);
    event_base_dispatch(base);
}

static void pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

static void setup_recorder(struct recorder *r, int fd)
{
    memset(r, 0, sizeof(*r));
    r->base = event_base_new();
    assert_non_null(r->base);
    r->clock = deadline_clock_new(r->base);
    assert_non_null(r->clock);
    assert_int_equal(sock_init(&r->s, r->clock, fd, NULL, record, r), 0);
}

static void teardown_recorder(struct recorder *r)
{
    sock_close(&r->s);
    deadline_clock_free(r->clock);
    event_base_free(r->base);
}

/* Bytes the peer sent right before closing are all delivered, then the EOF, once. */
static void test_data_then_eof(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    assert_int_equal(write(fds[1], "hello, world", 12), 12);
    close(fds[1]);
    run_until(&r, SOCK_EOF);
    assert_int_equal(r.len, 12);
    assert_memory_equal(r.data, "hello, world", 12);
    assert_true(index_of(&r, SOCK_READABLE) < index_of(&r, SOCK_EOF));
    int eofs = 0;
    for (int i = 0; i < r.n; i++)
        eofs += r.events[i] == SOCK_EOF;
    assert_int_equal(eofs, 1);
    assert_true(sock_at_eof(&r.s));
    teardown_recorder(&r);
}

/* An end read behind a read that filled its space (16 KiB, FIRST_READ) is reported on the next
 * turn, but known at once: sock_peer_closed says so with the data (the pool must not keep an
 * origin connection whose close came with the end of its response). */
static void test_end_behind_data(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    static char first[16 * 1024];
    memset(first, 'z', sizeof(first));
    assert_int_equal(write(fds[1], first, sizeof(first)), (ssize_t)sizeof(first));
    close(fds[1]);
    run_until(&r, SOCK_EOF);
    assert_int_equal(r.len, sizeof(first));
    assert_int_equal(r.events[0], SOCK_READABLE);
    assert_true(r.peer_closed_at_read);
    assert_int_equal(count_of(&r, SOCK_EOF), 1);
    teardown_recorder(&r);
}

/* Closing from inside the callback is safe: the sock touches nothing of itself afterwards. */
static void test_close_inside_callback(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    r.close_on_eof = true;
    close(fds[1]);
    run_until(&r, SOCK_EOF);
    assert_int_equal(r.s.state, SOCK_CLOSED);
    teardown_recorder(&r); /* a second close is a no-op */
}

/* A write the peer cannot take waits; DRAINED comes once the peer read it all. */
static void test_write_waits_then_drains(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    static char big[4 << 20];
    memset(big, 'x', sizeof(big));
    evbuffer_add(r.s.out, big, sizeof(big));
    assert_int_equal(sock_flush(&r.s), 1); /* a socketpair does not take 4 MiB at once */
    assert_true(sock_pending(&r.s) > 0);
    size_t got = 0;
    char buf[65536];
    uint64_t deadline = now_us() + 2000000;
    while (got < sizeof(big) && now_us() < deadline) {
        ssize_t n = read(fds[1], buf, sizeof(buf));
        if (n > 0)
            got += (size_t)n;
        run_for(r.base, 1);
    }
    assert_int_equal(got, sizeof(big));
    run_until(&r, SOCK_DRAINED);
    assert_true(saw(&r, SOCK_DRAINED));
    assert_int_equal(sock_pending(&r.s), 0);
    close(fds[1]);
    teardown_recorder(&r);
}

/* A socket whose watch cannot be registered (event_add fails: out of memory, or past
 * fs.epoll.max_user_watches) fails from the loop with SOCK_ERROR, so that its owner closes it:
 * for reading at sock_init, for writing at a flush the socket does not take whole. The old
 * sock ignored event_add's -1 and said it was watched: no event came, ever (no deadline set). */
static void test_watch_that_fails(void **state)
{
    (void)state;
    for (int side = 0; side < 2; side++) {
        int fds[2];
        pair(fds);
        struct recorder r;
        memset(&r, 0, sizeof(r));
        r.base = event_base_new();
        assert_non_null(r.base);
        r.clock = deadline_clock_new(r.base);
        assert_non_null(r.clock);
        fail_event_add_at = side == 0 ? 0 : -1; /* sock_init's, for reading */
        assert_int_equal(sock_init(&r.s, r.clock, fds[0], NULL, record, &r), 0);
        if (side == 1) {
            static char big[4 << 20];
            evbuffer_add(r.s.out, big, sizeof(big));
            fail_event_add_at = 0; /* the write watch's: a socketpair does not take 4 MiB */
            sock_flush(&r.s);
        }
        fail_event_add_at = -1;
        run_until(&r, SOCK_ERROR);
        if (!saw(&r, SOCK_ERROR))
            fail_msg("%s: no SOCK_ERROR when the watch could not be added",
                     side == 0 ? "reading" : "writing");
        assert_int_equal(r.s.err, ENOMEM);
        close(fds[1]);
        teardown_recorder(&r);
    }
}

static int hoarded; /* events seen by the callback that consumes nothing */

static void hoard(void *arg, enum sock_event ev)
{
    (void)arg, (void)ev;
    hoarded++;
}

/* With a read limit the input never holds more than it; consuming resumes reading. */
static void test_read_limit(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    sock_set_cb(&r.s, hoard, NULL); /* consumes nothing: the limit must hold */
    sock_set_read_limit(&r.s, 1000);
    char buf[5000];
    memset(buf, 'y', sizeof(buf));
    assert_int_equal(write(fds[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
    run_for(r.base, 100);
    assert_int_equal(evbuffer_get_length(r.s.in), 1000);
    int events = hoarded;
    run_for(r.base, 50); /* paused: no busy loop on a readable socket */
    assert_int_equal(hoarded, events);
    evbuffer_drain(r.s.in, 1000);
    sock_consumed(&r.s);
    run_for(r.base, 50);
    assert_int_equal(evbuffer_get_length(r.s.in), 1000);
    close(fds[1]);
    teardown_recorder(&r);
}

/* The read deadline counts silence while reading; the write deadline, a peer that takes
 * nothing. Each fires near its limit; the read one again after another whole silence. */
static void test_deadlines(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    uint64_t t0 = now_us();
    sock_set_timeouts(&r.s, 50, 0);
    uint64_t took = ms_until(&r, SOCK_READ_TIMEOUT, t0);
    assert_true(took >= 50 && took < 500);
    /* the next one after another whole silence, counted from the first: two limits from t0
     * (from the first's report the loop's own delay would count against the second) */
    r.n = 0;
    took = ms_until(&r, SOCK_READ_TIMEOUT, t0);
    assert_true(took >= 100 && took < 1000);

    static char big[4 << 20];
    evbuffer_add(r.s.out, big, sizeof(big));
    sock_set_timeouts(&r.s, 0, 60);
    t0 = now_us();
    assert_int_equal(sock_flush(&r.s), 1);
    took = ms_until(&r, SOCK_WRITE_TIMEOUT, t0);
    assert_true(took >= 60 && took < 500);
    close(fds[1]);
    teardown_recorder(&r);
}

/* Each deadline counts only what it watches: a read paused at its limit (waiting on the owner,
 * not the peer) gets no read timeout while a write one is due; with nothing to write no write
 * timeout comes when the shared timer fires early for a moved owner deadline. */
static void test_deadlines_watch_their_side(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    /* nothing to write, a write timeout of 20 ms; the owner's deadline moved from 40 to 80 ms */
    uint64_t t0 = now_us();
    sock_set_timeouts(&r.s, 0, 20);
    sock_set_deadline(&r.s, t0 + 40000);
    sock_set_deadline(&r.s, t0 + 80000);
    run_until(&r, SOCK_DEADLINE);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.events[0], SOCK_DEADLINE);

    /* the shared timer fires for a read deadline moved by a byte read meanwhile: with nothing
     * to write, the read timeout is what comes, later */
    r.n = 0;
    sock_set_timeouts(&r.s, 40, 20);
    run_for(r.base, 15);
    assert_int_equal(write(fds[1], "b", 1), 1);
    run_until(&r, SOCK_READ_TIMEOUT);
    assert_true(saw(&r, SOCK_READ_TIMEOUT));
    assert_false(saw(&r, SOCK_WRITE_TIMEOUT));
    sock_set_timeouts(&r.s, 0, 0);

    /* paused at the read limit, then a write the peer never takes */
    r.n = 0;
    r.hold_input = true;
    sock_set_read_limit(&r.s, 1000);
    char buf[5000];
    memset(buf, 'y', sizeof(buf));
    assert_int_equal(write(fds[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
    run_until(&r, SOCK_READABLE);
    assert_int_equal(evbuffer_get_length(r.s.in), 1000);
    static char big[4 << 20];
    evbuffer_add(r.s.out, big, sizeof(big));
    sock_set_timeouts(&r.s, 20, 60);
    assert_int_equal(sock_flush(&r.s), 1);
    run_until(&r, SOCK_WRITE_TIMEOUT);
    assert_true(saw(&r, SOCK_WRITE_TIMEOUT));
    assert_false(saw(&r, SOCK_READ_TIMEOUT));
    close(fds[1]);
    teardown_recorder(&r);
}

/* The owner's deadline shares the sock's timer: it fires once, not before it passes; moved
 * later it fires later; cleared it never fires. */
static void test_owner_deadline(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    uint64_t t0 = now_us();
    sock_set_deadline(&r.s, t0 + 20000);
    sock_set_deadline(&r.s, t0 + 60000); /* later: the armed timer fires early and moves on */
    uint64_t took = ms_until(&r, SOCK_DEADLINE, t0);
    assert_true(took >= 60 && took < 500);
    assert_int_equal(r.n, 1); /* and nothing else */

    sock_set_deadline(&r.s, now_us() + 30000);
    sock_set_deadline(&r.s, 0);
    run_for(r.base, 80);
    assert_int_equal(r.n, 1); /* cleared: no second SOCK_DEADLINE */
    close(fds[1]);
    teardown_recorder(&r);
}

/* sock_owner_due_now: SOCK_DEADLINE from the loop, never from inside the caller, once, in the
 * loop's next pass without waiting for a timer; the owner's deadline set before is gone. */
static void test_owner_due_now(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    sock_set_deadline(&r.s, now_us() + 30000);
    sock_owner_due_now(&r.s);
    assert_int_equal(r.n, 0); /* not from inside */
    assert_int_equal(event_base_loop(r.base, EVLOOP_NONBLOCK), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.events[0], SOCK_DEADLINE);
    run_for(r.base, 80);
    assert_int_equal(r.n, 1); /* the deadline before it is gone: no second SOCK_DEADLINE */
    assert_int_equal(write(fds[1], "x", 1), 1); /* and the sock reads as before */
    run_until(&r, SOCK_READABLE);
    assert_int_equal(r.len, 1);
    close(fds[1]);
    teardown_recorder(&r);
}

/* sock_requeue reports input already buffered from the loop, never from inside the caller,
 * and only once. */
static void test_requeue(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    sock_set_cb(&r.s, hoard, NULL); /* keeps what it reads */
    assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    run_for(r.base, 50);
    assert_int_equal(evbuffer_get_length(r.s.in), 18);
    sock_set_cb(&r.s, record, &r);
    sock_requeue(&r.s);
    assert_int_equal(r.n, 0); /* not from inside */
    run_for(r.base, 50);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.events[0], SOCK_READABLE);
    assert_int_equal(r.len, 18);
    sock_requeue(&r.s); /* nothing buffered now: no call */
    run_for(r.base, 50);
    assert_int_equal(r.n, 1);
    close(fds[1]);
    teardown_recorder(&r);
}

/* ---- sock_watch_later: a read at accept that holds the registration back ---- */

/* Whether an epoll descriptor of this process watches fd. */
static bool epoll_watches(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return tu_epoll_watches(0, (unsigned long)st.st_ino);
}

struct accepting {
    struct recorder *r;
    int fd;
    bool held; /* sock_init_read_now, as client.c makes a plain client */
};

/* The listener's accept, as the worker runs it: inside a pass of the loop, the sock made and
 * read at once (its registration left in the changelist, or held). */
static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct accepting *a = arg;
    assert_int_equal((a->held ? sock_init_read_now : sock_init)(&a->r->s, a->r->clock, a->fd, NULL,
                                                                record, a->r),
                     0);
    sock_read_now(&a->r->s, NULL);
}

/* A recorder whose sock is made and read inside a loop pass, on a base that applies its
 * registrations at the next dispatch (the worker's: EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST); the
 * first READABLE asks sock_watch_later when watch_later. Runs that pass. */
static void accept_recorder_as(struct recorder *r, int fd, bool held, bool watch_later)
{
    memset(r, 0, sizeof(*r));
    struct event_config *ec = event_config_new();
    assert_non_null(ec);
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    r->base = event_base_new_with_config(ec);
    event_config_free(ec);
    assert_non_null(r->base);
    r->clock = deadline_clock_new(r->base);
    assert_non_null(r->clock);
    r->watch_later = watch_later;
    struct accepting a = {r, fd, held};
    struct event *ev = event_new(r->base, -1, 0, accept_cb, &a);
    assert_non_null(ev);
    event_active(ev, 0, 1);
    assert_true(event_base_loop(r->base, EVLOOP_NONBLOCK) >= 0); /* 1: nothing left to watch */
    event_free(ev);
}

static void accept_recorder(struct recorder *r, int fd)
{
    accept_recorder_as(r, fd, false, true);
}

/* sock_init_read_now: the registration held through the accept's read. An owner that keeps
 * reading (a head not whole yet) is registered when that read's event ends, and hears the rest;
 * one that holds it back (sock_watch_later) leaves epoll without the socket until
 * sock_watch_now, then hears its FIN. */
static void test_read_now_held(void **state)
{
    (void)state;
    int fds[2];
    struct recorder r;
    pair(fds);
    assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\n", 16), 16);
    accept_recorder_as(&r, fds[0], true, false);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.len, 16);
    assert_int_equal(write(fds[1], "\r\n", 2), 2);
    run_until(&r, SOCK_READABLE);
    run_for(r.base, 10);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.len, 18);
    assert_true(epoll_watches(fds[0]));
    close(fds[1]);
    teardown_recorder(&r);

    pair(fds);
    assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    accept_recorder_as(&r, fds[0], true, true);
    assert_true(r.may_watch_later && r.held);
    assert_int_equal(shutdown(fds[1], SHUT_WR), 0);
    run_for(r.base, 30);
    assert_int_equal(r.n, 1);
    assert_false(epoll_watches(fds[0]));
    uint64_t t0 = now_us();
    sock_watch_now(&r.s);
    assert_true(ms_until(&r, SOCK_EOF, t0) < 1000);
    close(fds[1]);
    teardown_recorder(&r);
}

/* The request is there at the accept: read in the accept's pass, where the owner holds the
 * registration back. epoll never hears of the socket (its FIN unseen) until sock_watch_now; then
 * it is watched, and the FIN is reported. */
static void test_watch_later(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
    struct recorder r;
    accept_recorder(&r, fds[0]);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.len, 18);
    assert_true(r.may_watch_later && r.held);
    assert_false(sock_may_watch_later(&r.s)); /* once, in that callback */
    assert_false(sock_watch_later(&r.s));
    assert_false(epoll_watches(fds[0]));
    assert_int_equal(shutdown(fds[1], SHUT_WR), 0);
    sock_consumed(&r.s); /* as the owner's parse does: it registers nothing */
    run_for(r.base, 30);
    assert_int_equal(r.n, 1);
    assert_false(epoll_watches(fds[0]));
    uint64_t t0 = now_us();
    sock_watch_now(&r.s); /* registered at the next dispatch, which finds the FIN */
    assert_true(ms_until(&r, SOCK_EOF, t0) < 1000);
    assert_int_equal(r.n, 2);
    close(fds[1]);
    teardown_recorder(&r);
}

/* sock_read ends the wait too: on, registered as sock_watch_now does; off, without any
 * registration. */
static void test_watch_later_ended_by_read(void **state)
{
    (void)state;
    int fds[2];
    struct recorder r;
    for (int on = 0; on < 2; on++) {
        pair(fds);
        assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\n\r\n", 18), 18);
        accept_recorder(&r, fds[0]);
        assert_true(r.held);
        sock_read(&r.s, on);
        run_for(r.base, 10);
        assert_int_equal(epoll_watches(fds[0]), on);
        sock_watch_now(&r.s); /* nothing held back any more: no change */
        run_for(r.base, 10);
        assert_int_equal(epoll_watches(fds[0]), on);
        assert_int_equal(r.n, 1);
        close(fds[1]);
        teardown_recorder(&r);
    }
}

/* Not held back: a read that came from epoll (its registration was applied); at the accept, a
 * read that found its end behind 16 KiB of bytes (reported from the loop through the read
 * event, which withdrawing it would cancel). Both stay watched, and the end is reported. */
static void test_watch_later_refused(void **state)
{
    (void)state;
    int fds[2];
    pair(fds);
    struct recorder r;
    setup_recorder(&r, fds[0]);
    r.watch_later = true;
    assert_int_equal(write(fds[1], "x", 1), 1);
    run_until(&r, SOCK_READABLE);
    assert_false(r.may_watch_later);
    assert_false(r.held);
    assert_int_equal(shutdown(fds[1], SHUT_WR), 0);
    assert_true(ms_until(&r, SOCK_EOF, now_us()) < 1000);
    close(fds[1]);
    teardown_recorder(&r);

    pair(fds);
    static char first[16 * 1024];
    memset(first, 'z', sizeof(first));
    assert_int_equal(write(fds[1], first, sizeof(first)), (ssize_t)sizeof(first));
    assert_int_equal(shutdown(fds[1], SHUT_WR), 0);
    uint64_t t0 = now_us();
    accept_recorder(&r, fds[0]);
    assert_true(r.may_watch_later);
    assert_false(r.held);
    assert_true(ms_until(&r, SOCK_EOF, t0) < 1000);
    close(fds[1]);
    teardown_recorder(&r);
}

/* ---- who frees what when sock_init fails ---- */

static int ssl_frees;

static void count_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                       void *argp)
{
    (void)parent, (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
    ssl_frees++;
}

static void test_init_failure_frees_once(void **state)
{
    (void)state;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, count_free);
    struct event_base *base = event_base_new();
    struct deadline_clock *clock = deadline_clock_new(base);
    for (int at = 0; at < 2; at++) { /* the first or the second buffer cannot be had */
        int fds[2];
        pair(fds);
        SSL *ssl = SSL_new(ctx);
        SSL_set_ex_data(ssl, idx, &ssl_frees);
        ssl_frees = 0;
        struct sock s;
        fail_evbuffer_new_at = at;
        assert_int_equal(sock_init(&s, clock, fds[0], ssl, record, NULL), -1);
        assert_int_equal(ssl_frees, 1);                  /* freed, exactly once */
        assert_int_equal(fcntl(fds[0], F_GETFD), -1);    /* and the socket closed */
        assert_int_equal(errno, EBADF);
        assert_int_equal(s.state, SOCK_CLOSED);
        sock_close(&s);                                  /* closing it again does nothing */
        close(fds[1]);
    }
    deadline_clock_free(clock);
    event_base_free(base);
    SSL_CTX_free(ctx);
}

/* ---- splicing ---- */

/* Two socks over two socketpairs: bytes written to src_peer are spliced by the callbacks into
 * dst, whose peer the test reads. */
struct splice_rig {
    struct sock src, dst;
    int src_peer, dst_peer;
    struct event_base *base;
    struct deadline_clock *clock;
    size_t left;          /* body bytes still to splice */
    int src_events;       /* SOCK_READABLE reports while raw */
    const char *tail;     /* queued on dst once the body is spliced */
    bool eof;
};

/* As the exchange does: what src read before splicing began is copied behind dst's output,
 * the rest is spliced. */
static void splice_step(struct splice_rig *g)
{
    size_t have = MIN(evbuffer_get_length(g->src.in), g->left);
    if (have) {
        evbuffer_remove_buffer(g->src.in, g->dst.out, have);
        g->left -= have;
        sock_consumed(&g->src);
        sock_flush(&g->dst);
    }
    if (!g->left)
        return;
    long n = sock_splice(&g->src, &g->dst, g->left);
    assert_true(n >= 0);
    g->left -= (size_t)n;
    if (!g->left && g->tail) { /* the next message's bytes, queued while the pipe may be full */
        evbuffer_add(g->dst.out, g->tail, strlen(g->tail));
        sock_flush(&g->dst);
    }
}

static void rig_src_cb(void *arg, enum sock_event ev)
{
    struct splice_rig *g = arg;
    if (ev == SOCK_EOF)
        g->eof = true;
    if (ev != SOCK_READABLE)
        return;
    if (g->left) {
        g->src_events++;
        splice_step(g);
    }
}

static void rig_dst_cb(void *arg, enum sock_event ev)
{
    struct splice_rig *g = arg;
    if (ev == SOCK_DRAINED && g->left)
        splice_step(g); /* the destination took what waited: src is watched again */
}

static void rig_setup(struct splice_rig *g, size_t body)
{
    memset(g, 0, sizeof(*g));
    int a[2], b[2];
    pair(a);
    pair(b);
    g->base = event_base_new();
    assert_non_null(g->base);
    g->clock = deadline_clock_new(g->base);
    assert_non_null(g->clock);
    assert_int_equal(sock_init(&g->src, g->clock, a[0], NULL, rig_src_cb, g), 0);
    assert_int_equal(sock_init(&g->dst, g->clock, b[0], NULL, rig_dst_cb, g), 0);
    g->src_peer = a[1];
    g->dst_peer = b[1];
    g->left = body;
}

static void rig_teardown(struct splice_rig *g)
{
    sock_close(&g->src);
    sock_close(&g->dst);
    close(g->src_peer);
    close(g->dst_peer);
    deadline_clock_free(g->clock);
    event_base_free(g->base);
}

/* Reads from fd what is there into buf (at most cap), running the loop meanwhile, until want
 * bytes came or 2 s passed. */
static size_t drain_peer(struct splice_rig *g, int fd, char *buf, size_t cap, size_t want)
{
    size_t got = 0;
    uint64_t deadline = now_us() + 2000000;
    while (got < want && now_us() < deadline) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n > 0)
            got += (size_t)n;
        run_for(g->base, 1);
    }
    return got;
}

/* A body spliced behind a head that waited in dst's output, with a destination that reads
 * nothing for a while: it comes out whole and in order, head first; while dst is full, src is
 * not reported again and again; bytes queued on dst once the body is spliced go after it
 * (pipe first); what src's peer sent after the body is read into src's input. */
static void test_splice_order_and_back_pressure(void **state)
{
    (void)state;
    enum { HEAD = 1 << 20, BODY = 3 << 20, NEXT = 5 };
    static char sent[HEAD + BODY + NEXT], got[HEAD + BODY + 4];
    memset(sent, 'H', HEAD);
    for (size_t i = 0; i < BODY; i++)
        sent[HEAD + i] = (char)('a' + (i * 7 + i / 4093) % 26);
    memcpy(sent + HEAD + BODY, "NEXT!", NEXT);
    struct splice_rig g;
    rig_setup(&g, BODY);
    g.tail = "TAIL";

    /* The head is queued before any body byte and cannot all go at once (a socketpair takes a
     * few hundred KiB): most of it waits in the output. */
    evbuffer_add(g.dst.out, sent, HEAD);
    assert_int_equal(sock_flush(&g.dst), 1);

    /* The peer sends the body and the start of a next message while nobody reads dst: what
     * fits goes, then src is paused, not reported on every turn. */
    size_t off = HEAD, end = HEAD + BODY + NEXT;
    uint64_t deadline = now_us() + 2000000, quiet = 0;
    while (now_us() < deadline && quiet < 30) {
        ssize_t n = write(g.src_peer, sent + off, end - off);
        if (n > 0)
            off += (size_t)n, quiet = 0;
        else
            quiet++;
        run_for(g.base, 1);
    }
    assert_true(off < end); /* the destination holds the rest back */
    int events = g.src_events;
    run_for(g.base, 50);
    assert_int_equal(g.src_events, events);
    assert_true(g.left > 0);

    /* Now dst's peer reads: everything comes, head first, then the body, then what was queued
     * behind it. */
    size_t in = 0;
    deadline = now_us() + 5000000;
    while (in < sizeof(got) && now_us() < deadline) {
        if (off < end) {
            ssize_t n = write(g.src_peer, sent + off, end - off);
            if (n > 0)
                off += (size_t)n;
        }
        ssize_t n = read(g.dst_peer, got + in, sizeof(got) - in);
        if (n > 0)
            in += (size_t)n;
        run_for(g.base, 1);
    }
    assert_int_equal(in, sizeof(got));
    assert_int_equal(memcmp(got, sent, HEAD + BODY), 0);
    assert_int_equal(memcmp(got + HEAD + BODY, "TAIL", 4), 0);
    assert_int_equal(g.left, 0);

    /* Raw mode ended with the body: the next message is read into src's input. */
    deadline = now_us() + 2000000;
    while (evbuffer_get_length(g.src.in) < NEXT && now_us() < deadline)
        run_for(g.base, 1);
    assert_int_equal(evbuffer_get_length(g.src.in), NEXT);
    assert_int_equal(memcmp(evbuffer_pullup(g.src.in, NEXT), "NEXT!", NEXT), 0);

    /* The pipe is gone once drained. */
    assert_null(g.dst.pipe);
    assert_int_equal(sock_pending(&g.dst), 0);
    rig_teardown(&g);
}

/* The peer closes mid-body: the bytes before come out, then SOCK_EOF from the loop. A splice
 * into a TLS sock is refused (-1) and leaves src reading normally. */
static void test_splice_eof_and_refusal(void **state)
{
    (void)state;
    struct splice_rig g;
    rig_setup(&g, 100000);
    char part[40000];
    memset(part, 'p', sizeof(part));
    assert_int_equal(write(g.src_peer, part, sizeof(part)), (ssize_t)sizeof(part));
    shutdown(g.src_peer, SHUT_WR);
    char got[sizeof(part)];
    assert_int_equal(drain_peer(&g, g.dst_peer, got, sizeof(got), sizeof(part)), sizeof(part));
    uint64_t deadline = now_us() + 2000000;
    while (!g.eof && now_us() < deadline)
        run_for(g.base, 1);
    assert_true(g.eof);
    assert_int_equal(g.left, 100000 - sizeof(part));
    rig_teardown(&g);

    /* A sock with TLS cannot take spliced bytes: -1, and src is not left raw. */
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    rig_setup(&g, 100000);
    g.dst.ssl = SSL_new(ctx); /* only its presence matters here; sock_close frees it */
    assert_int_equal(sock_splice(&g.src, &g.dst, g.left), -1);
    g.left = 0; /* the callback must not splice: the bytes are read into the input */
    assert_int_equal(write(g.src_peer, "abc", 3), 3);
    deadline = now_us() + 2000000;
    while (evbuffer_get_length(g.src.in) < 3 && now_us() < deadline)
        run_for(g.base, 1);
    assert_int_equal(evbuffer_get_length(g.src.in), 3);
    rig_teardown(&g);
    SSL_CTX_free(ctx);
}

/* ---- sock_bytes_acked over a real TCP connection on loopback ---- */

/* A connected TCP pair on 127.0.0.1: fds[0] ours (non-blocking), fds[1] the peer's. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept(l, NULL, NULL);
    assert_true(fds[1] >= 0);
    close(l);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
}

/* Waits (bounded) until fd reads its peer's end: a FIN (0) or a reset. */
static void wait_peer_end(int fd)
{
    char b[64];
    for (int i = 0; i < 200; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 10) >= 0);
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return;
    }
    fail_msg("the peer's end never came");
}

/* The peer closes before our request reaches it (an origin's idle timeout meeting a request):
 * its FIN acknowledges none of it, and the reset that our bytes then draw moves nothing. */
static void test_bytes_acked_close_first(void **state)
{
    (void)state;
    int fds[2];
    tcp_pair(fds);
    struct sock s = {.fd = fds[0]};
    int64_t before = sock_bytes_acked(&s);
    assert_true(before >= 0);
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1); /* the FIN is here, not read yet */
    assert_int_equal(send(fds[0], "POST / HTTP/1.1\r\n\r\n", 19, MSG_NOSIGNAL), 19);
    wait_peer_end(fds[0]);
    assert_true(sock_bytes_acked(&s) == before);
    close(fds[0]);
}

/* The peer reads the request, then closes: its FIN acknowledges every byte. */
static void test_bytes_acked_read_then_close(void **state)
{
    (void)state;
    int fds[2];
    tcp_pair(fds);
    struct sock s = {.fd = fds[0]};
    int64_t before = sock_bytes_acked(&s);
    assert_true(before >= 0);
    assert_int_equal(send(fds[0], "POST / HTTP/1.1\r\n\r\n", 19, MSG_NOSIGNAL), 19);
    char b[64];
    size_t got = 0;
    while (got < 19) {
        ssize_t n = recv(fds[1], b, sizeof(b), 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fds[1]);
    wait_peer_end(fds[0]);
    assert_true(sock_bytes_acked(&s) == before + 19);
    /* not TCP: the kernel cannot say */
    int un[2];
    pair(un);
    struct sock u = {.fd = un[0]};
    assert_true(sock_bytes_acked(&u) == -1);
    close(un[0]);
    close(un[1]);
    close(fds[0]);
}

/* sock_set_buffer reads back what the kernel took: the value asked, or net.core.rmem_max (and
 * wmem_max) when it asked for more, which the kernel cuts down without a word; -1 when the
 * call is refused. */
static void test_set_buffer(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(sock_set_buffer(fd, SO_RCVBUF, 65536), 65536);
    assert_int_equal(sock_set_buffer(fd, SO_SNDBUF, 65536), 65536);
    static const struct {
        const char *path;
        int opt;
    } maxima[] = {{"/proc/sys/net/core/rmem_max", SO_RCVBUF},
                  {"/proc/sys/net/core/wmem_max", SO_SNDBUF}};
    for (size_t i = 0; i < ARRAY_LEN(maxima); i++) {
        char text[32] = "";
        int mfd = open(maxima[i].path, O_RDONLY | O_CLOEXEC);
        assert_true(mfd >= 0);
        assert_true(read(mfd, text, sizeof(text) - 1) > 0);
        close(mfd);
        int max = atoi(text);
        if (max > 0 && max < (1 << 29)) /* the kernel doubles the value in an int */
            assert_int_equal(sock_set_buffer(fd, maxima[i].opt, max + 4096), max);
    }
    close(fd);
    assert_int_equal(sock_set_buffer(fd, SO_RCVBUF, 65536), -1); /* EBADF */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_then_eof),
        cmocka_unit_test(test_end_behind_data),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_write_waits_then_drains),
        cmocka_unit_test(test_watch_that_fails),
        cmocka_unit_test(test_read_limit),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_deadlines_watch_their_side),
        cmocka_unit_test(test_owner_deadline),
        cmocka_unit_test(test_owner_due_now),
        cmocka_unit_test(test_requeue),
        cmocka_unit_test(test_watch_later),
        cmocka_unit_test(test_read_now_held),
        cmocka_unit_test(test_watch_later_ended_by_read),
        cmocka_unit_test(test_watch_later_refused),
        cmocka_unit_test(test_init_failure_frees_once),
        cmocka_unit_test(test_splice_order_and_back_pressure),
        cmocka_unit_test(test_splice_eof_and_refusal),
        cmocka_unit_test(test_bytes_acked_close_first),
        cmocka_unit_test(test_bytes_acked_read_then_close),
        cmocka_unit_test(test_set_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
