/*
 * test_deadline.c — deadlines: when the event is (re)added and when it is left alone, what the
 * owner's callback learns from deadline_due, and one real expiry on an event base. Time is passed
 * in (µs); only the last test waits, on the event loop, for a 20 ms deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/event.h>

#include "portico/deadline.h"
#include "portico/util.h"

#define MS 1000u
#define T0 1000000000u /* a clock that never reads 0 */

static void never_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    fail_msg("the event fired in a test that does not run the loop");
}

static int setup(void **state)
{
    struct event_base *base = event_base_new();
    assert_non_null(base);
    *state = base;
    return 0;
}

static int teardown(void **state)
{
    event_base_free(*state);
    return 0;
}

/* Later deadlines keep the armed event; an earlier one re-arms it; clearing touches nothing. */
static void test_moves(void **state)
{
    struct deadline d;
    deadline_init(&d, *state, never_cb, NULL);
    assert_false(deadline_is_set(&d));

    deadline_set(&d, T0 + 100 * MS, T0);
    assert_int_equal(d.armed, T0 + 100 * MS);
    assert_true(evtimer_pending(&d.ev, NULL));

    deadline_set(&d, T0 + 500 * MS, T0 + 10 * MS); /* later: the event stays where it was */
    assert_int_equal(d.at, T0 + 500 * MS);
    assert_int_equal(d.armed, T0 + 100 * MS);

    deadline_set(&d, T0 + 50 * MS, T0 + 20 * MS); /* earlier: re-armed */
    assert_int_equal(d.armed, T0 + 50 * MS);

    deadline_clear(&d); /* lazily: the event stays, and will find nothing due */
    assert_false(deadline_is_set(&d));
    assert_true(evtimer_pending(&d.ev, NULL));

    deadline_in_ms(&d, 0, T0); /* 0 ms is "no timeout" */
    assert_false(deadline_is_set(&d));
    deadline_in_ms(&d, 7, T0);
    assert_int_equal(d.at, T0 + 7 * MS);

    deadline_stop(&d);
    assert_false(evtimer_pending(&d.ev, NULL));
    assert_int_equal(d.armed, 0);
    assert_false(deadline_is_set(&d));
}

/* What the owner's callback is told when the event fires. */
static void test_due(void **state)
{
    static const struct {
        const char *why;
        uint64_t at;   /* 0: cleared */
        uint64_t now;  /* when the event fires */
        bool due;
        bool rearmed;
    } rows[] = {
        {"fired at the deadline", T0 + 100 * MS, T0 + 100 * MS, true, false},
        {"fired after it (a busy loop)", T0 + 100 * MS, T0 + 130 * MS, true, false},
        {"fired early: the deadline moved later since", T0 + 300 * MS, T0 + 100 * MS, false, true},
        {"fired 1 µs early (a coarse clock)", T0 + 100 * MS, T0 + 100 * MS - 1, false, true},
        {"fired for a cleared deadline", 0, T0 + 100 * MS, false, false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct deadline d;
        deadline_init(&d, *state, never_cb, NULL);
        d.at = rows[i].at; /* as the event fires: no longer pending */
        d.armed = 0;
        bool due = deadline_due(&d, rows[i].now);
        if (due != rows[i].due || (d.armed != 0) != rows[i].rearmed)
            fail_msg("%s: due %d armed %llu", rows[i].why, due, (unsigned long long)d.armed);
        if (due)
            assert_false(deadline_is_set(&d)); /* one expiry per deadline */
        else if (rows[i].rearmed)
            assert_int_equal(d.armed, rows[i].at);
        deadline_stop(&d);
    }
}

struct fired {
    struct deadline d;
    int calls;      /* callback runs, early ones included */
    int expiries;   /* runs where the deadline was due */
    uint64_t at_us;
};

static void fired_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fired *f = arg;
    uint64_t now = now_us();
    f->calls++;
    if (!deadline_due(&f->d, now))
        return;
    f->expiries++;
    f->at_us = now;
}

/* On a real loop: a deadline first set at 5 ms and then moved to 20 ms expires once, at 20 ms
 * or after, never before; early wake-ups (at 5 ms, and any from libevent's coarse clock) are
 * few. A loaded machine may run the first wake-up late enough to be due at once. */
static void test_real_loop(void **state)
{
    struct fired f = {0};
    deadline_init(&f.d, *state, fired_cb, &f);
    uint64_t start = now_us();
    deadline_set(&f.d, start + 5 * MS, start);
    deadline_set(&f.d, start + 20 * MS, start);
    for (int i = 0; i < 100 && f.expiries == 0; i++) /* bounded: a few loop turns suffice */
        event_base_loop(*state, EVLOOP_ONCE);
    assert_int_equal(f.expiries, 1);
    assert_true(f.at_us >= start + 20 * MS);
    assert_true(f.calls >= 1 && f.calls <= 8);
    assert_false(evtimer_pending(&f.d.ev, NULL));
    deadline_stop(&f.d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_loop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
