/*
 * test_deadline.c — deadlines: when one moves in the clock's heap and when it is left alone, what
 * the owner's callback learns from deadline_due, the heap's order under inserts, moves and stops,
 * and one real expiry on an event base. Time is passed in (µs); only test_real_loop waits, on the
 * event loop, for a 20 ms deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

struct fixture {
    struct event_base *base;
    struct deadline_clock *clock;
};

static int setup(void **state)
{
    static struct fixture fx;
    fx.base = event_base_new();
    assert_non_null(fx.base);
    fx.clock = deadline_clock_new(fx.base);
    assert_non_null(fx.clock);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    deadline_clock_free(fx->clock);
    event_base_free(fx->base);
    return 0;
}

/* Later deadlines stay where they are in the heap; an earlier one moves; clearing touches
 * nothing. */
static void test_moves(void **state)
{
    struct fixture *fx = *state;
    struct deadline d;
    deadline_init(&d, fx->clock, never_cb, NULL);
    assert_false(deadline_is_set(&d));

    deadline_set(&d, T0 + 100 * MS, T0);
    assert_int_equal(d.armed, T0 + 100 * MS);

    deadline_set(&d, T0 + 500 * MS, T0 + 10 * MS); /* later: the event stays where it was */
    assert_int_equal(d.at, T0 + 500 * MS);
    assert_int_equal(d.armed, T0 + 100 * MS);

    deadline_set(&d, T0 + 50 * MS, T0 + 20 * MS); /* earlier: re-armed */
    assert_int_equal(d.armed, T0 + 50 * MS);

    deadline_clear(&d); /* lazily: it stays in the heap, and will find nothing due */
    assert_false(deadline_is_set(&d));
    assert_int_equal(d.armed, T0 + 50 * MS);

    deadline_in_ms(&d, 0, T0); /* 0 ms is "no timeout" */
    assert_false(deadline_is_set(&d));
    deadline_in_ms(&d, 7, T0);
    assert_int_equal(d.at, T0 + 7 * MS);

    deadline_stop(&d);
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
    struct fixture *fx = *state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct deadline d;
        deadline_init(&d, fx->clock, never_cb, NULL);
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
    struct fixture *fx = *state;
    struct fired f = {0};
    deadline_init(&f.d, fx->clock, fired_cb, &f);
    uint64_t start = now_us();
    deadline_set(&f.d, start + 5 * MS, start);
    deadline_set(&f.d, start + 20 * MS, start);
    for (int i = 0; i < 100 && f.expiries == 0; i++) /* bounded: a few loop turns suffice */
        event_base_loop(fx->base, EVLOOP_ONCE);
    assert_int_equal(f.expiries, 1);
    assert_true(f.at_us >= start + 20 * MS);
    assert_true(f.calls >= 1 && f.calls <= 8);
    assert_int_equal(f.d.armed, 0); /* out of the heap */
    deadline_stop(&f.d);
}

#define NORDER 300

struct order {
    struct deadline d[NORDER];
    bool stopped[NORDER];
    uint64_t at[NORDER]; /* the last deadline set */
    int seq[NORDER];     /* indices in the order their callbacks ran */
    int nseq;
};

static struct order order;

static void order_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct deadline *d = arg;
    if (deadline_due(d, now_us()))
        order.seq[order.nseq++] = (int)(d - order.d);
}

/* The heap under churn: 300 deadlines inserted in a scrambled order, a fifth moved earlier, a
 * seventh moved later, every eleventh stopped, all already past: one pass of the clock runs each
 * remaining one exactly once, earliest first, and never a stopped one. */
static void test_heap_order(void **state)
{
    struct fixture *fx = *state;
    uint64_t now = now_us();
    uint64_t base_at = now - 10 * NORDER - 10; /* every deadline in the past */

    memset(&order, 0, sizeof(order));
    for (int i = 0; i < NORDER; i++) {
        int k = (i * 97) % NORDER; /* 97 is prime to 300: a permutation */
        deadline_init(&order.d[k], fx->clock, order_cb, &order.d[k]);
        order.at[k] = base_at + 10 * (uint64_t)k + 5;
        deadline_set(&order.d[k], order.at[k], now);
    }
    for (int k = 0; k < NORDER; k++) {
        if (k % 5 == 0) /* earlier: moves in the heap */
            order.at[k] -= 3;
        else if (k % 7 == 0) /* later: stays, comes up early, goes back once */
            order.at[k] += 4;
        deadline_set(&order.d[k], order.at[k], now);
        if (k % 11 == 0) {
            deadline_stop(&order.d[k]);
            order.stopped[k] = true;
        }
    }
    for (int i = 0; i < 10 && order.nseq < NORDER - (NORDER + 10) / 11; i++)
        event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(order.nseq, NORDER - (NORDER + 10) / 11);
    for (int i = 0; i < order.nseq; i++) {
        int k = order.seq[i];
        assert_false(order.stopped[k]);
        if (i > 0 && order.at[order.seq[i - 1]] > order.at[k])
            fail_msg("deadline %d (at %llu) ran after %d (at %llu)", k,
                     (unsigned long long)order.at[k], order.seq[i - 1],
                     (unsigned long long)order.at[order.seq[i - 1]]);
        assert_int_equal(order.d[k].armed, 0);
    }
}

struct again {
    struct deadline d;
    int runs;
};

static void again_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct again *a = arg;
    uint64_t now = now_us();
    if (!deadline_due(&a->d, now))
        return;
    if (++a->runs == 1)
        deadline_set(&a->d, now, now); /* due again at once */
}

/* A callback that sets its own deadline to now runs again on the next turn of the loop, not
 * within the same pass: no callback can spin the clock. */
static void test_due_again_waits_a_turn(void **state)
{
    struct fixture *fx = *state;
    struct again a = {0};
    uint64_t now = now_us();

    deadline_init(&a.d, fx->clock, again_cb, &a);
    deadline_set(&a.d, now, now);
    event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    assert_int_equal(a.runs, 1);
    assert_true(a.d.armed != 0);
    for (int i = 0; i < 100 && a.runs < 2; i++) /* bounded: a turn or two */
        event_base_loop(fx->base, EVLOOP_ONCE);
    assert_int_equal(a.runs, 2);
    deadline_stop(&a.d);
}

struct exact {
    struct deadline d;
    int runs;
};

static void exact_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exact *e = arg;
    if (deadline_due(&e->d, event_now_us()))
        e->runs++;
}

/* A deadline due at exactly the pass's clock runs in that pass. The test holds the event clock
 * (event_begin: the pass reads the same microsecond), which a deadline set for "now" meets
 * whenever the loop comes back within that microsecond: one waiting for a later pass costs a
 * loop turn with every such deadline, and a clock that does not move never runs it. */
static void test_due_exactly_now(void **state)
{
    struct fixture *fx = *state;
    struct exact e = {0};

    event_begin();
    uint64_t now = event_now_us();
    deadline_init(&e.d, fx->clock, exact_cb, &e);
    deadline_set(&e.d, now, now);
    event_base_loop(fx->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    int runs = e.runs;
    event_end();
    deadline_stop(&e.d);
    assert_int_equal(runs, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heap_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due_again_waits_a_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due_exactly_now, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
