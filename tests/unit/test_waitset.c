/*
 * test_waitset.c — the worker's own epoll (waitset.h) over socketpairs and a real event loop:
 * one report per arming (EPOLLONESHOT) and another after a rearm, a hang-up reported, a
 * forgotten entry reported to no one, and a descriptor closed while armed leaving nothing
 * behind for the next socket of its number. Each "no report" is checked after passes of the loop
 * that do not wait (EVLOOP_NONBLOCK): the kernel's readiness is there at once, no time is waited.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "portico/waitset.h"

static struct {
    void *arg[8];
    int n;
} got;

static void ready(void *arg)
{
    if (got.n < 8)
        got.arg[got.n] = arg;
    got.n++;
}

/* Passes of the loop that wait for nothing: what is ready now is reported now. EVLOOP_ONCE too:
 * EVLOOP_NONBLOCK alone goes on while an event is active, and an entry that stays ready (a
 * waitset without EPOLLONESHOT) kept the row in its loop for good. */
static void passes(struct event_base *base)
{
    for (int i = 0; i < 3; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

struct fixture {
    struct event_base *base;
    struct waitset *ws;
    int sv[2];
};

static int setup(void **state)
{
    static struct fixture f;
    got.n = 0;
    f.base = event_base_new();
    f.ws = f.base ? waitset_new(f.base, ready) : NULL;
    if (!f.ws || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f.sv) != 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    waitset_free(f->ws);
    event_base_free(f->base);
    close(f->sv[0]);
    close(f->sv[1]);
    return 0;
}

/* Readable: one report to the arming's arg, none after while the bytes stay unread (the entry
 * disarmed by EPOLLONESHOT, its owner cleared); a rearm (MOD) reports again at once. */
static void test_one_report_per_arming(void **state)
{
    struct fixture *f = *state;
    int owner;
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &owner, false), 0);
    passes(f->base);
    assert_int_equal(got.n, 0); /* nothing to read yet */
    assert_int_equal(write(f->sv[1], "x", 1), 1);
    passes(f->base);
    assert_int_equal(got.n, 1);
    assert_ptr_equal(got.arg[0], &owner);
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &owner, true), 0);
    passes(f->base);
    assert_int_equal(got.n, 2);
}

/* The peer's close is reported as readiness (EPOLLRDHUP): the owner reads and finds the end. */
static void test_hang_up_reported(void **state)
{
    struct fixture *f = *state;
    int owner;
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &owner, false), 0);
    close(f->sv[1]);
    f->sv[1] = -1;
    passes(f->base);
    assert_int_equal(got.n, 1);
    assert_ptr_equal(got.arg[0], &owner);
}

/* An entry forgotten before its report (its socket about to close) reports to no one. */
static void test_forgotten_reports_to_no_one(void **state)
{
    struct fixture *f = *state;
    int owner;
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &owner, false), 0);
    assert_int_equal(write(f->sv[1], "x", 1), 1);
    waitset_forget(f->ws, f->sv[0]);
    passes(f->base);
    assert_int_equal(got.n, 0);
}

/* A descriptor closed while armed is gone from the epoll with its file: the next socket given
 * the same number is added afresh (an ADD, no EEXIST) and reports to its own owner. */
static void test_closed_while_armed(void **state)
{
    struct fixture *f = *state;
    int first, second;
    int fd = f->sv[0];
    assert_int_equal(waitset_arm(f->ws, fd, &first, false), 0);
    waitset_forget(f->ws, fd);
    close(f->sv[0]);
    close(f->sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->sv), 0);
    assert_int_equal(f->sv[0], fd); /* the lowest free number again */
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &second, false), 0);
    assert_int_equal(write(f->sv[1], "x", 1), 1);
    passes(f->base);
    assert_int_equal(got.n, 1);
    assert_ptr_equal(got.arg[0], &second);
}

/* The descriptor of the loop's one event: the waitset's epoll. */
static int event_fd(const struct event_base *base, const struct event *ev, void *arg)
{
    (void)base;
    *(int *)arg = event_get_fd(ev);
    return 1;
}

/* Reported, its byte left unread: the entry is disarmed (EPOLLONESHOT), so the waitset's epoll
 * has nothing more to say until a rearm. A level-triggered entry would keep it readable, and
 * the worker's loop would wake for it at every pass. */
static void test_disarmed_after_its_report(void **state)
{
    struct fixture *f = *state;
    int owner, epfd = -1;
    event_base_foreach_event(f->base, event_fd, &epfd);
    assert_true(epfd >= 0);
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &owner, false), 0);
    assert_int_equal(write(f->sv[1], "x", 1), 1);
    passes(f->base);
    assert_int_equal(got.n, 1);
    struct pollfd p = {.fd = epfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(waitset_arm(f->ws, f->sv[0], &owner, true), 0);
    assert_int_equal(poll(&p, 1, 0), 1); /* rearmed: ready again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_report_per_arming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_up_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forgotten_reports_to_no_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_while_armed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disarmed_after_its_report, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
