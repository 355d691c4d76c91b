/*
 * test_balance.c — the balancer (balance.h) without sockets or clocks: round-robin spread and
 * weights, least_conn, random_two, passive health (max_fails within fail_window, down_time,
 * the half-open probe), active check verdicts and their rise and fall counts, in-flight counts,
 * backup origins (by every policy) and slow_start's ramp; and the configuration keys of
 * balancing, health, retries, tunnels and limits with their FILE:LINE errors.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/hashkey.h"
#include "portico/log.h"
#include "portico/retry_budget.h"
#include "portico/util.h"

#include "config_helpers.h"

#define MAXO 4

/* An upstream of n origins with these weights (0: 1), policy and passive-health settings. */
static void make_upstream(struct upstream_conf *up, int n, const unsigned *weights,
                          enum balance_policy policy, uint64_t max_fails)
{
    memset(up, 0, sizeof(*up));
    up->name = "u";
    up->norigins = n;
    up->balance = policy;
    up->max_fails = max_fails;
    up->fail_window_ms = 1000;
    up->down_time_ms = 5000;
    for (int o = 0; o < n; o++) {
        up->origins[o].weight = weights && weights[o] ? weights[o] : 1;
        snprintf(up->origins[o].text, sizeof(up->origins[o].text), "o%d", o);
    }
}

/* A picked attempt that ends at once with an answer. */
static int pick_answer(struct balancer *b, uint64_t rnd)
{
    int o = balancer_pick(b, 0, rnd, 0, NULL);
    if (o >= 0)
        balancer_done(b, o, false, BALANCE_ANSWERED, 0);
    return o;
}

/* ---- round robin ---- */

static const struct {
    const char *why;
    int n;
    unsigned weights[MAXO];
    int picks;
    int counts[MAXO];
} rr_rows[] = {
    /* the issue's test: three equal origins, counts within 1 */
    {"three equal, whole cycles", 3, {1, 1, 1}, 300, {100, 100, 100}},
    {"three equal, a cycle cut short", 3, {1, 1, 1}, 100, {34, 33, 33}},
    {"weights 1:2:3", 3, {1, 2, 3}, 600, {100, 200, 300}},
    {"weights cut short stay within one turn", 2, {1, 3}, 6, {2, 4}},
    {"one origin takes everything", 1, {7}, 10, {10}},
    {"the largest weight", 2, {100, 1}, 101, {100, 1}},
};

static void test_round_robin_spread(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rr_rows); i++) {
        struct upstream_conf up;
        make_upstream(&up, rr_rows[i].n, rr_rows[i].weights, BALANCE_ROUND_ROBIN, 0);
        struct balancer *b = balancer_new(&up);
        assert_non_null(b);
        int counts[MAXO] = {0};
        for (int k = 0; k < rr_rows[i].picks; k++) {
            int o = pick_answer(b, 0);
            assert_true(o >= 0 && o < rr_rows[i].n);
            counts[o]++;
        }
        print_message("  %s: %d %d %d\n", rr_rows[i].why, counts[0], counts[1], counts[2]);
        for (int o = 0; o < rr_rows[i].n; o++)
            if (counts[o] != rr_rows[i].counts[o])
                fail_msg("%s: origin %d got %d, want %d", rr_rows[i].why, o, counts[o],
                         rr_rows[i].counts[o]);
        balancer_free(b);
    }
}

/* Smooth: weights 5, 1, 1 interleave as nginx does (a a b a c a a), not a a a a a b c. */
static void test_round_robin_smooth(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 3, (const unsigned[]){5, 1, 1}, BALANCE_ROUND_ROBIN, 0);
    struct balancer *b = balancer_new(&up);
    char seq[15] = "";
    for (int k = 0; k < 14; k++)
        seq[k] = (char)('a' + pick_answer(b, 0));
    assert_string_equal(seq, "aabacaaaabacaa");
    balancer_free(b);
}

/* A down origin's turns go round the others by weight (they all went to the next one in the
 * cycle: 27 13 here, and 5000 2500 2500 of 10,000 over four origins); so do least_conn's ties
 * between idle origins. Excluded origins are never picked. */
static void test_round_robin_skips(void **state)
{
    (void)state;
    static const enum balance_policy policies[] = {BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN};
    for (size_t p = 0; p < ARRAY_LEN(policies); p++) {
        struct upstream_conf up;
        make_upstream(&up, 3, NULL, policies[p], 1);
        struct balancer *b = balancer_new(&up);
        int o = balancer_pick(b, 0, 0, 0, NULL);
        assert_int_equal(o, 0);
        balancer_done(b, o, false, BALANCE_FAILED, 0); /* max_fails = 1: down */
        int counts[3] = {0};
        for (int k = 0; k < 40; k++)
            counts[pick_answer(b, 0)]++;
        print_message("  policy %zu, origin 0 down: %d %d %d\n", p, counts[0], counts[1],
                      counts[2]);
        assert_int_equal(counts[0], 0);
        assert_int_equal(counts[1], 20);
        assert_int_equal(counts[2], 20);
        for (int k = 0; k < 6; k++) { /* a retry leaves out what it tried */
            o = balancer_pick(b, 0, 0, 1u << 1, NULL);
            assert_int_equal(o, 2);
            balancer_done(b, o, false, BALANCE_ANSWERED, 0);
        }
        assert_int_equal(balancer_pick(b, 0, 0, (1u << 1) | (1u << 2), NULL), -1);
        balancer_free(b);
    }

    /* weights 5, 1, 1 with the heavy one down: the other two alike */
    struct upstream_conf up;
    make_upstream(&up, 3, (const unsigned[]){5, 1, 1}, BALANCE_ROUND_ROBIN, 1);
    struct balancer *b = balancer_new(&up);
    balancer_done(b, balancer_pick(b, 0, 0, 0, NULL), false, BALANCE_FAILED, 0);
    int counts[3] = {0};
    for (int k = 0; k < 70; k++)
        counts[pick_answer(b, 0)]++;
    print_message("  weights 5 1 1, the 5 down: %d %d %d\n", counts[0], counts[1], counts[2]);
    assert_int_equal(counts[1], 35);
    assert_int_equal(counts[2], 35);
    balancer_free(b);
}

/* An origin that refuses, with passive health off: a retry takes no turn of the cycle, so the
 * next request starts at the origin after the failed one, not at the failed one again (every
 * request of 10 paid a failed attempt first: the retry's turn put the next one back on it). */
static void test_retry_takes_no_turn(void **state)
{
    (void)state;
    static const enum balance_policy policies[] = {BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN};
    for (size_t p = 0; p < ARRAY_LEN(policies); p++) {
        struct upstream_conf up;
        make_upstream(&up, 2, NULL, policies[p], 0);
        struct balancer *b = balancer_new(&up);
        int failed_first = 0;
        for (int k = 0; k < 10; k++) {
            int o = balancer_pick(b, 0, 0, 0, NULL);
            if (o == 1) {
                balancer_done(b, o, false, BALANCE_ANSWERED, 0);
                continue;
            }
            failed_first++;
            balancer_done(b, o, false, BALANCE_FAILED, 0);
            o = balancer_pick(b, 0, 0, 1u << 0, NULL);
            assert_int_equal(o, 1);
            balancer_done(b, o, false, BALANCE_ANSWERED, 0);
        }
        print_message("  policy %zu: %d of 10 requests tried the refusing origin first\n", p,
                      failed_first);
        assert_true(failed_first <= 5);
        balancer_free(b);
    }
}

/* ---- least_conn ---- */

/* Attempts held open: each pick goes to the origin with the fewest in flight per weight. */
static void test_least_conn(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 3, NULL, BALANCE_LEAST_CONN, 0);
    struct balancer *b = balancer_new(&up);
    /* equal and idle: ties go round robin */
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 1);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 2);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0); /* 1 1 1: the tie starts at 0 again */
    balancer_done(b, 1, false, BALANCE_ANSWERED, 0);        /* 2 0 1 */
    assert_int_equal(balancer_in_flight(b, 1), 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 1);  /* the idle one */
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 2);  /* 2 1 1: the tie of 1, 2 starts at 2 */
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 1);  /* 2 1 2 */
    for (int o = 0; o < 3; o++)
        assert_int_equal(balancer_in_flight(b, o), 2);
    balancer_free(b);

    /* weights 1:3 hold their in-flight counts in that proportion */
    make_upstream(&up, 2, (const unsigned[]){1, 3}, BALANCE_LEAST_CONN, 0);
    b = balancer_new(&up);
    for (int k = 0; k < 40; k++)
        assert_true(balancer_pick(b, 0, 0, 0, NULL) >= 0);
    unsigned light = balancer_in_flight(b, 0), heavy = balancer_in_flight(b, 1);
    print_message("  weights 1:3, 40 held: %u %u\n", light, heavy);
    assert_int_equal(light + heavy, 40);
    assert_true(light >= 9 && light <= 11); /* 10:30, within one pick */
    balancer_free(b);

    /* idle origins (each attempt ends before the next pick) tie every time: the ties follow the
     * weighted cycle, so weights 5, 1, 1 still give a a b a c a a */
    make_upstream(&up, 3, (const unsigned[]){5, 1, 1}, BALANCE_LEAST_CONN, 0);
    b = balancer_new(&up);
    char seq[15] = "";
    for (int k = 0; k < 14; k++)
        seq[k] = (char)('a' + pick_answer(b, 0));
    assert_string_equal(seq, "aabacaaaabacaa");
    balancer_free(b);
}

/* ---- random_two ---- */

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005u + 1442695040888963407u;
    return *x;
}

/* Of two origins drawn, the less busy wins: a loaded origin never gets a request while two
 * others are idle; between idle origins, the draw follows the weights. */
static void test_random_two(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 3, NULL, BALANCE_RANDOM_TWO, 0);
    struct balancer *b = balancer_new(&up);
    uint64_t x = 42;
    for (int k = 0; k < 5; k++) /* load origin 0: the others excluded */
        assert_int_equal(balancer_pick(b, 0, lcg(&x), 6, NULL), 0);
    int counts[3] = {0};
    for (int k = 0; k < 300; k++)
        counts[pick_answer(b, lcg(&x))]++;
    print_message("  loaded origin: %d %d %d\n", counts[0], counts[1], counts[2]);
    assert_int_equal(counts[0], 0);
    assert_true(counts[1] > 100 && counts[2] > 100);
    balancer_free(b);

    make_upstream(&up, 2, (const unsigned[]){1, 9}, BALANCE_RANDOM_TWO, 0);
    b = balancer_new(&up);
    int heavy = 0;
    for (int k = 0; k < 1000; k++)
        heavy += pick_answer(b, lcg(&x)) == 1;
    print_message("  weights 1:9: %d of 1000 to the heavy one\n", heavy);
    assert_true(heavy > 850 && heavy < 950);
    assert_int_equal(balancer_pick(b, 0, lcg(&x), 3, NULL), -1); /* both excluded */
    balancer_free(b);
}

/* A policy's picks while another thread takes an origin in and out (its checks failing and
 * passing) find one of the two origins that stay up. random_two's draw counted the origin in
 * its total and then found it out, walked past the end, and the pick gave -1: a 503
 * no_healthy_origin with two origins up. */
struct flipper {
    struct balancer *b;
    atomic_bool stop;
};

static void *flip_checks(void *arg)
{
    struct flipper *f = arg;
    while (!atomic_load(&f->stop)) {
        balancer_check(f->b, 2, CHECK_FAILING, "test");
        balancer_check(f->b, 2, CHECK_PASSING, NULL);
    }
    return NULL;
}

static void test_picks_racing_checks(void **state)
{
    (void)state;
    static const enum balance_policy policies[] = {BALANCE_RANDOM_TWO, BALANCE_ROUND_ROBIN,
                                                   BALANCE_LEAST_CONN};
    static const char *const names[] = {"random_two", "round_robin", "least_conn"};
    const char *failed;
    assert_int_equal(log_switch("off", "stderr", LOG_ERROR, &failed), 0); /* the flips' lines */
    for (size_t i = 0; i < ARRAY_LEN(policies); i++) {
        struct upstream_conf up;
        make_upstream(&up, 3, NULL, policies[i], 0);
        struct flipper f = {.b = balancer_new(&up)};
        atomic_init(&f.stop, false);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, flip_checks, &f), 0);
        /* for 300 ms (both threads need a core at once: on a busy host the first -1 can take
         * a while), or until a pick finds none */
        uint64_t x = 7, picks = 0, end = now_us() + 300000;
        int none = 0;
        while (!none && (picks % 4096 || now_us() < end)) {
            int o = balancer_pick(f.b, 0, lcg(&x), 0, NULL);
            picks++;
            if (o < 0)
                none++;
            else
                balancer_done(f.b, o, false, BALANCE_ANSWERED, 0);
        }
        atomic_store(&f.stop, true);
        pthread_join(t, NULL);
        print_message("  %s: %llu picks, origin 2 flipping: %d found none\n", names[i],
                      (unsigned long long)picks, none);
        assert_int_equal(none, 0);
        balancer_free(f.b);
    }
    assert_int_equal(log_switch("off", "stderr", LOG_INFO, &failed), 0);
}

/* ---- health: scripts of (time, action, expectation) ---- */

enum step_op {
    OP_END,
    OP_PICK,    /* pick at t: expect `origin` (-1: none) */
    OP_DONE,    /* end the last attempt picked on `origin` at t with `result` */
    OP_ODONE,   /* end an older attempt on `origin` (not its probe) at t with `result` */
    OP_KEEP,    /* the attempt last picked on `origin` stays out, set aside (its probe number) */
    OP_KDONE,   /* end the attempt set aside on `origin` at t with `result` */
    OP_CHECK,   /* an active check verdict for `origin` */
    OP_STATE,   /* expect origin's passive state */
};

struct step {
    enum step_op op;
    uint64_t t;
    int origin;
    int arg;     /* OP_DONE: enum balance_result; OP_CHECK: check_state; OP_STATE: origin_state */
};

#define PICK(t, o) {OP_PICK, t, o, 0}
#define DONE(t, o, r) {OP_DONE, t, o, r}
#define ODONE(t, o, r) {OP_ODONE, t, o, r}
#define KEEP(o) {OP_KEEP, 0, o, 0}
#define KDONE(t, o, r) {OP_KDONE, t, o, r}
#define CHECK(o, s) {OP_CHECK, 0, o, s}
#define STATE(o, s) {OP_STATE, 0, o, s}

static const struct {
    const char *why;
    int norigins;
    uint64_t max_fails; /* fail_window 1000 ms, down_time 5000 ms */
    struct step steps[20];
} health_rows[] = {
    {"max_fails within the window mark it down; the probe after down_time brings it back", 1, 2,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), STATE(0, ORIGIN_UP),
      PICK(100, 0), DONE(100, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN),
      PICK(200, -1), PICK(5099, -1),
      PICK(5100, 0), STATE(0, ORIGIN_PROBING), PICK(5100, -1), /* one probe only */
      DONE(5200, 0, BALANCE_ANSWERED), STATE(0, ORIGIN_UP), PICK(5300, 0)}},
    {"failures further apart than fail_window do not add up", 1, 2,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(1500, 0), DONE(1500, 0, BALANCE_FAILED),
      STATE(0, ORIGIN_UP), PICK(1600, 0), DONE(1600, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN)}},
    {"a failure fail_window after the first opens a new window: the window is [first, "
     "first + fail_window)", 1, 2,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(1000, 0), DONE(1000, 0, BALANCE_FAILED),
      STATE(0, ORIGIN_UP), PICK(1999, 0), DONE(1999, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN)}},
    {"an answer between failures starts the count over", 1, 2,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(10, 0), DONE(10, 0, BALANCE_ANSWERED),
      PICK(20, 0), DONE(20, 0, BALANCE_FAILED), STATE(0, ORIGIN_UP)}},
    {"a failed probe: down for another down_time", 1, 1,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(5000, 0), DONE(5150, 0, BALANCE_FAILED),
      STATE(0, ORIGIN_DOWN), PICK(10149, -1), PICK(10150, 0), STATE(0, ORIGIN_PROBING)}},
    {"a probe without a verdict lets the next attempt probe", 1, 1,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(5000, 0), DONE(5001, 0, BALANCE_NO_VERDICT),
      STATE(0, ORIGIN_DOWN), PICK(5002, 0), STATE(0, ORIGIN_PROBING)}},
    {"no verdict does not count as a failure", 1, 1,
     {PICK(0, 0), DONE(0, 0, BALANCE_NO_VERDICT), STATE(0, ORIGIN_UP), PICK(1, 0)}},
    {"max_fails = 0: passive health off", 1, 0,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(1, 0), DONE(1, 0, BALANCE_FAILED),
      PICK(2, 0), DONE(2, 0, BALANCE_FAILED), STATE(0, ORIGIN_UP), PICK(3, 0)}},
    {"a failing check keeps an up origin out until a check passes", 1, 0,
     {CHECK(0, CHECK_FAILING), PICK(0, -1), CHECK(0, CHECK_FAILING), PICK(1, -1),
      CHECK(0, CHECK_PASSING), PICK(2, 0)}},
    {"a passing check leaves a passively down origin down for down_time", 1, 1,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(1, -1), CHECK(0, CHECK_PASSING),
      STATE(0, ORIGIN_DOWN), PICK(2, -1), PICK(5000, 0), STATE(0, ORIGIN_PROBING)}},
    {"a passing check does not start the failure count over", 1, 2,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), CHECK(0, CHECK_PASSING), PICK(10, 0),
      DONE(10, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN)}},
    {"a failing check wins over passive health", 1, 1,
     {CHECK(0, CHECK_FAILING), PICK(6000, -1), STATE(0, ORIGIN_UP), PICK(6001, -1)}},
    {"one origin down, the other takes every attempt; both down: none", 2, 1,
     {PICK(0, 0), DONE(0, 0, BALANCE_FAILED), PICK(1, 1), PICK(2, 1), DONE(2, 1, BALANCE_FAILED),
      PICK(3, -1), PICK(5000, 0), PICK(5000, -1), PICK(5002, 1)}},
    {"an attempt picked before the origin went down still ends well", 2, 1,
     {PICK(0, 0), PICK(0, 1), PICK(0, 0), DONE(1, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN),
      DONE(2, 0, BALANCE_ANSWERED), STATE(0, ORIGIN_UP)}},
    /* Each client that left an older attempt let one more request probe the origin, all of
     * them at once beside the probe. */
    {"an older attempt ending without a verdict leaves the probe alone", 1, 1,
     {PICK(0, 0), PICK(0, 0), DONE(1, 0, BALANCE_FAILED), PICK(5001, 0),
      STATE(0, ORIGIN_PROBING), ODONE(5002, 0, BALANCE_NO_VERDICT), STATE(0, ORIGIN_PROBING),
      PICK(5003, -1), DONE(5004, 0, BALANCE_NO_VERDICT), STATE(0, ORIGIN_DOWN),
      PICK(5005, 0)}},
    /* It marked the origin down again, and the request after that down_time probed it beside
     * the probe still out. */
    {"an older attempt's failure leaves the verdict to the probe", 1, 1,
     {PICK(0, 0), PICK(0, 0), DONE(1, 0, BALANCE_FAILED), PICK(5001, 0),
      ODONE(5002, 0, BALANCE_FAILED), STATE(0, ORIGIN_PROBING), PICK(10002, -1),
      DONE(10003, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN), PICK(15002, -1), PICK(15003, 0)}},
    {"an older attempt's answer brings the origin up while the probe is out", 1, 1,
     {PICK(0, 0), PICK(0, 0), DONE(1, 0, BALANCE_FAILED), PICK(5001, 0),
      ODONE(5002, 0, BALANCE_ANSWERED), STATE(0, ORIGIN_UP), PICK(5003, 0)}},
    /* The probe of an earlier down_time, still out once the origin came back up (an older
     * attempt's answer), went down again and was probed again, is an older attempt too: its
     * end without a verdict let the next request probe beside the probe out, its failure
     * marked the origin down under it. */
    {"a probe of an earlier down_time leaves the probe out alone", 1, 1,
     {PICK(0, 0), PICK(0, 0), DONE(1, 0, BALANCE_FAILED), PICK(5001, 0), KEEP(0),
      ODONE(5002, 0, BALANCE_ANSWERED), PICK(5003, 0), DONE(5004, 0, BALANCE_FAILED),
      PICK(10004, 0), STATE(0, ORIGIN_PROBING), KDONE(10005, 0, BALANCE_NO_VERDICT),
      STATE(0, ORIGIN_PROBING), PICK(10006, -1), KDONE(10007, 0, BALANCE_FAILED),
      STATE(0, ORIGIN_PROBING), DONE(10008, 0, BALANCE_ANSWERED), STATE(0, ORIGIN_UP)}},
    {"a probe of an earlier down_time fails as an older attempt", 1, 2,
     {PICK(0, 0), PICK(0, 0), DONE(1, 0, BALANCE_FAILED), PICK(2, 0), DONE(2, 0, BALANCE_FAILED),
      PICK(5002, 0), KEEP(0), ODONE(5003, 0, BALANCE_ANSWERED), STATE(0, ORIGIN_UP),
      KDONE(5004, 0, BALANCE_FAILED), STATE(0, ORIGIN_UP), PICK(5005, 0),
      DONE(5005, 0, BALANCE_FAILED), STATE(0, ORIGIN_DOWN)}},
};

static void test_health(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(health_rows); i++) {
        struct upstream_conf up;
        make_upstream(&up, health_rows[i].norigins, NULL, BALANCE_ROUND_ROBIN,
                      health_rows[i].max_fails);
        struct balancer *b = balancer_new(&up);
        assert_non_null(b);
        uint64_t probe[MAXO] = {0}; /* the last pick of each origin was its probe (number) */
        uint64_t kept[MAXO] = {0};  /* KEEP: the attempt set aside was a probe (number) */
        for (const struct step *s = health_rows[i].steps; s->op != OP_END; s++) {
            int got;
            uint64_t p;
            switch (s->op) {
            case OP_PICK:
                got = balancer_pick(b, s->t, 0, 0, &p);
                if (got >= 0)
                    probe[got] = p;
                if (got != s->origin)
                    fail_msg("%s: step %td: pick at %llu gave %d, want %d", health_rows[i].why,
                             s - health_rows[i].steps, (unsigned long long)s->t, got,
                             s->origin);
                break;
            case OP_DONE:
                balancer_done(b, s->origin, probe[s->origin], (enum balance_result)s->arg, s->t);
                probe[s->origin] = 0;
                break;
            case OP_ODONE:
                balancer_done(b, s->origin, 0, (enum balance_result)s->arg, s->t);
                break;
            case OP_KEEP:
                kept[s->origin] = probe[s->origin];
                probe[s->origin] = 0;
                break;
            case OP_KDONE:
                balancer_done(b, s->origin, kept[s->origin], (enum balance_result)s->arg, s->t);
                break;
            case OP_CHECK:
                balancer_check(b, s->origin, (enum check_state)s->arg, "test");
                break;
            case OP_STATE:
                got = (int)balancer_origin_state(b, s->origin);
                if (got != s->arg)
                    fail_msg("%s: step %td: state %s, want %s", health_rows[i].why,
                             s - health_rows[i].steps, origin_state_name((enum origin_state)got),
                             origin_state_name((enum origin_state)s->arg));
                break;
            case OP_END:
                break;
            }
        }
        balancer_free(b);
    }
}

/* ---- active health: rise and fall ---- */

#define F10 "FFFFFFFFFF"
#define P10 "PPPPPPPPPP"
#define F100 F10 F10 F10 F10 F10 F10 F10 F10 F10 F10
#define P99 P10 P10 P10 P10 P10 P10 P10 P10 P10 "PPPPPPPPP"

static const struct {
    const char *why;
    unsigned rise, fall;  /* as the upstream has them (0: as not given) */
    const char *checks;   /* each check's result: P passed, F failed */
    const char *verdicts; /* the verdict after each: P passing (takes attempts), F failing */
    int in_row;           /* balancer_checks_in_row at the end */
} rise_fall_rows[] = {
    {"not given: one check decides either way", 0, 0, "FPFFP", "FPFFP", 1},
    {"rise 1 fall 1 as given: the same", 1, 1, "FPFFP", "FPFFP", 1},
    {"fall 3: down at the third failure in a row", 1, 3, "FFFF", "PPFF", -4},
    {"fall 3: a pass starts the failures over", 1, 3, "FFPFFPFFF", "PPPPPPPPF", -3},
    {"rise 2: back at the second pass in a row", 2, 1, "FPPP", "FFPP", 3},
    {"rise 2: a failure starts the passes over", 2, 1, "FPFPP", "FFFFP", 2},
    {"rise 2 fall 2, alternating from up: never down", 2, 2, "FPFPFPFP", "PPPPPPPP", 1},
    {"rise 2 fall 2, alternating once down: never back", 2, 2, "FFPFPFPF", "PFFFFFFF", -1},
    {"fall 100 (the maximum)", 1, 100, F100, P99 "F", -100},
};

static void test_rise_fall(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rise_fall_rows); i++) {
        struct upstream_conf up;
        make_upstream(&up, 1, NULL, BALANCE_ROUND_ROBIN, 0);
        up.health = (struct health_check_conf){"GET", "/healthz", 1000, 1000, 200, 299,
                                               rise_fall_rows[i].rise, rise_fall_rows[i].fall};
        struct balancer *b = balancer_new(&up);
        assert_non_null(b);
        assert_int_equal(balancer_checks_in_row(b, 0), 0); /* none yet: up */
        assert_false(balancer_origin_down(b, 0));
        const char *c = rise_fall_rows[i].checks, *v = rise_fall_rows[i].verdicts;
        for (size_t k = 0; c[k]; k++) {
            balancer_check(b, 0, c[k] == 'P' ? CHECK_PASSING : CHECK_FAILING, "test");
            bool down = balancer_origin_down(b, 0);
            if (down != (v[k] == 'F'))
                fail_msg("%s: after check %zu (%c) the origin is %s", rise_fall_rows[i].why,
                         k + 1, c[k], down ? "down" : "up");
            assert_int_equal(balancer_check_state(b, 0),
                             v[k] == 'F' ? CHECK_FAILING : CHECK_PASSING);
            assert_int_equal(balancer_pick(b, k, 0, 0, NULL), v[k] == 'F' ? -1 : 0);
            if (v[k] == 'P')
                balancer_done(b, 0, false, BALANCE_ANSWERED, k);
        }
        if (balancer_checks_in_row(b, 0) != rise_fall_rows[i].in_row)
            fail_msg("%s: %d checks in row, want %d", rise_fall_rows[i].why,
                     balancer_checks_in_row(b, 0), rise_fall_rows[i].in_row);
        balancer_free(b);
    }
}

/* A reload keeps the run of checks with the verdict (the same check): the new generation's
 * next check counts on toward its rise or fall; another check starts both afresh. */
static void test_inherit_run(void **state)
{
    (void)state;
    struct upstream_conf old, up;
    make_upstream(&old, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    old.health = (struct health_check_conf){"GET", "/healthz", 1000, 1000, 200, 299, 3, 3};
    struct balancer *from = balancer_new(&old);
    assert_non_null(from);
    balancer_check(from, 0, CHECK_FAILING, "test"); /* o0: 2 of 3 failures, still up */
    balancer_check(from, 0, CHECK_FAILING, "test");
    for (int k = 0; k < 3; k++) /* o1: down, then 1 of 3 passes */
        balancer_check(from, 1, CHECK_FAILING, "test");
    balancer_check(from, 1, CHECK_PASSING, "test");
    assert_false(balancer_origin_down(from, 0));
    assert_true(balancer_origin_down(from, 1));

    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    up.health = old.health;
    up.health.rise = up.health.fall = 2; /* counts differ, the check is the same */
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    balancer_inherit(b, from, 0);
    assert_int_equal(balancer_checks_in_row(b, 0), -2);
    assert_int_equal(balancer_checks_in_row(b, 1), 1);
    assert_false(balancer_origin_down(b, 0));
    assert_true(balancer_origin_down(b, 1));
    balancer_check(b, 0, CHECK_FAILING, "test"); /* the third in a row: at least fall */
    balancer_check(b, 1, CHECK_PASSING, "test"); /* the second in a row: rise */
    assert_true(balancer_origin_down(b, 0));
    assert_false(balancer_origin_down(b, 1));
    balancer_free(b);

    up.health.path = "/other"; /* another check: up, no run */
    b = balancer_new(&up);
    assert_non_null(b);
    balancer_inherit(b, from, 0);
    for (int o = 0; o < 2; o++) {
        assert_int_equal(balancer_checks_in_row(b, o), 0);
        assert_false(balancer_origin_down(b, o));
    }
    balancer_check(b, 0, CHECK_FAILING, "test");
    assert_false(balancer_origin_down(b, 0)); /* 1 of 2 */
    balancer_free(b);
    balancer_free(from);
}

/* A reload's balancer takes the verdicts over by origin text, wherever the origin is listed:
 * a failing check when the check is the same, passive DOWN for what is left of its down_time
 * (PROBING: due at once) when the new upstream has max_fails. */
static void test_inherit(void **state)
{
    (void)state;
    struct upstream_conf old, up;
    make_upstream(&old, 3, NULL, BALANCE_ROUND_ROBIN, 1);
    old.health = (struct health_check_conf){"GET", "/healthz", 1000, 1000, 200, 299, 1, 1};
    struct balancer *from = balancer_new(&old);
    assert_non_null(from);
    balancer_check(from, 0, CHECK_FAILING, "test");
    assert_int_equal(balancer_pick(from, 0, 0, 0, NULL), 1); /* o0 is skipped */
    balancer_done(from, 1, false, BALANCE_FAILED, 100);       /* o1 down until 5100 */
    /* the new file lists o1, o0 and a new o3, in that order */
    make_upstream(&up, 3, NULL, BALANCE_ROUND_ROBIN, 1);
    snprintf(up.origins[0].text, sizeof(up.origins[0].text), "o1");
    snprintf(up.origins[1].text, sizeof(up.origins[1].text), "o0");
    snprintf(up.origins[2].text, sizeof(up.origins[2].text), "o3");
    up.health = old.health;
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    balancer_inherit(b, from, 2000);
    assert_true(balancer_origin_down(b, 0));  /* o1: passively down */
    assert_true(balancer_origin_down(b, 1));  /* o0: failing its check */
    assert_false(balancer_origin_down(b, 2)); /* o3: new, up */
    assert_int_equal(balancer_pick(b, 5099, 0, 0, NULL), 2);
    balancer_done(b, 2, false, BALANCE_ANSWERED, 5099);
    int o = balancer_pick(b, 5100, 0, 0, NULL); /* o1's down_time is over: probed */
    assert_true(o == 0 || o == 2);
    balancer_free(b);

    /* a new down_time shorter than what is left of the old one caps it: o1 (o3 left out, o0
     * failing its check) is probed at 2000 + 1000, not at 5100 */
    up.down_time_ms = 1000;
    b = balancer_new(&up);
    assert_non_null(b);
    balancer_inherit(b, from, 2000);
    assert_int_equal(balancer_pick(b, 2999, 0, 1u << 2, NULL), -1);
    assert_int_equal(balancer_pick(b, 3000, 0, 1u << 2, NULL), 0);
    balancer_free(b);

    /* another check, or passive health off: those verdicts start afresh */
    up.health.path = "/other";
    up.max_fails = 0;
    b = balancer_new(&up);
    assert_non_null(b);
    balancer_inherit(b, from, 2000);
    for (int k = 0; k < 3; k++)
        assert_false(balancer_origin_down(b, k));
    balancer_free(b);
    balancer_free(from);
}

/* Picks and ends balance out: nothing stays in flight, whatever the results. */
static void test_in_flight(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_LEAST_CONN, 3);
    struct balancer *b = balancer_new(&up);
    int held[6];
    for (int k = 0; k < 6; k++)
        held[k] = balancer_pick(b, 0, 0, 0, NULL);
    assert_int_equal(balancer_in_flight(b, 0) + balancer_in_flight(b, 1), 6);
    static const enum balance_result results[] = {BALANCE_ANSWERED, BALANCE_FAILED,
                                                  BALANCE_NO_VERDICT};
    for (int k = 0; k < 6; k++)
        balancer_done(b, held[k], false, results[k % 3], 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    assert_int_equal(balancer_in_flight(b, 1), 0);
    assert_false(balancer_origin_down(b, 0));
    balancer_check(b, 1, CHECK_FAILING, "test");
    assert_true(balancer_origin_down(b, 1));
    assert_string_equal(origin_state_name(ORIGIN_PROBING), "probing");
    assert_string_equal(balance_result_name(BALANCE_NO_VERDICT), "no verdict");
    balancer_free(b);
}

/* ---- balance = hash: the consistent-hash ring ---- */

#define KEYS 100000

/* An upstream of balance = hash over origins named texts[0..n) (host:port: the ring places
 * them by name), with these weights (NULL: 1). */
static void make_hash_upstream(struct upstream_conf *up, int n, const char *const *texts,
                               const unsigned *weights, uint64_t max_fails)
{
    make_upstream(up, n, weights, BALANCE_HASH, max_fails);
    for (int o = 0; o < n; o++)
        snprintf(up->origins[o].text, sizeof(up->origins[o].text), "%s", texts[o]);
}

static const char *const five[] = {"127.0.0.1:18201", "127.0.0.1:18202", "127.0.0.1:18203",
                                   "127.0.0.1:18204", "127.0.0.1:18205"};

/* The key of client k: the hash of its IPv4 address 10.x.y.z, as hashkey_of makes it. */
static uint64_t key_of(uint32_t k)
{
    uint8_t addr[16] = {[10] = 0xff, [11] = 0xff, [12] = 10};
    addr[13] = (uint8_t)(k >> 16);
    addr[14] = (uint8_t)(k >> 8);
    addr[15] = (uint8_t)k;
    return hashkey_bytes(addr, sizeof(addr), 0);
}

/* The origin text each of KEYS keys goes to (its answer given at once), into where[]. */
static void place_keys(struct balancer *b, const struct upstream_conf *up, const char **where)
{
    for (uint32_t k = 0; k < KEYS; k++) {
        int o = balancer_pick_hash(b, 0, key_of(k), 0, NULL);
        assert_true(o >= 0);
        balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
        where[k] = up->origins[o].text;
    }
}

/* Four equal origins share 100,000 keys within 1.2 of each other (max/min; 1.11 measured);
 * weights 1:2:1:1 give the second twice the others' share; the ring holds 256 points per unit
 * of weight (8 bytes a point), and at most 262,144 (more than 1,024 units share them by
 * weight: test_hash_ring_cap). */
static void test_hash_evenness(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        unsigned weights[MAXO];
        unsigned points;
        double max_over_min;  /* of the shares per unit of weight */
    } rows[] = {
        {"four equal origins", {1, 1, 1, 1}, 1024, 1.2},
        {"weights 1:2:1:1", {1, 2, 1, 1}, 1280, 1.2},
        {"weights 50:100:50:50: 256 points a unit", {50, 100, 50, 50}, 64000, 1.2},
        {"weights 97:100:99:98", {97, 100, 99, 98}, 100864, 1.2},
    };
    static const char *where[KEYS];
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct upstream_conf up;
        make_hash_upstream(&up, 4, five, rows[i].weights, 0);
        struct balancer *b = balancer_new(&up);
        assert_non_null(b);
        place_keys(b, &up, where);
        double share[MAXO] = {0}, lo = 1e9, hi = 0;
        for (uint32_t k = 0; k < KEYS; k++)
            for (int o = 0; o < 4; o++)
                share[o] += where[k] == up.origins[o].text;
        for (int o = 0; o < 4; o++) {
            share[o] /= up.origins[o].weight;
            lo = share[o] < lo ? share[o] : lo;
            hi = share[o] > hi ? share[o] : hi;
        }
        print_message("  %s: %.0f %.0f %.0f %.0f per unit of weight, max/min %.3f\n",
                      rows[i].why, share[0], share[1], share[2], share[3], hi / lo);
        assert_int_equal(balancer_ring_points(b), rows[i].points);
        if (hi / lo > rows[i].max_over_min)
            fail_msg("%s: max/min %.3f over %.2f", rows[i].why, hi / lo, rows[i].max_over_min);
        balancer_free(b);
    }
}

/* One origin of four removed: only its keys move (~1/4), the others' stay; one added to four:
 * ~1/5 of the keys move, all to it. Each origin's points are placed by its host:port, not its
 * index, so the others' are where they were. */
static const char *const but_third[] = {"127.0.0.1:18201", "127.0.0.1:18202",
                                        "127.0.0.1:18204"};
static const char *const fifth_first[] = {"127.0.0.1:18205", "127.0.0.1:18201", "127.0.0.1:18202",
                                          "127.0.0.1:18203", "127.0.0.1:18204"};

static void test_hash_movement(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        int nbefore, nafter;
        const char *const *before, *const *after;
        double lo, hi;             /* bounds of the fraction moved */
    } rows[] = {
        {"the third of four removed", 4, 3, five, but_third, 0.20, 0.30},
        {"the first of four removed", 4, 3, five, five + 1, 0.20, 0.30},
        {"a fifth added", 4, 5, five, five, 0.16, 0.24},
        {"a fifth added first", 4, 5, five, fifth_first, 0.16, 0.24},
    };
    static const char *before[KEYS], *after[KEYS];
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct upstream_conf ub, ua;
        make_hash_upstream(&ub, rows[i].nbefore, rows[i].before, NULL, 0);
        make_hash_upstream(&ua, rows[i].nafter, rows[i].after, NULL, 0);
        struct balancer *bb = balancer_new(&ub), *ba = balancer_new(&ua);
        place_keys(bb, &ub, before);
        place_keys(ba, &ua, after);
        unsigned moved = 0, astray = 0;
        for (uint32_t k = 0; k < KEYS; k++) {
            if (strcmp(before[k], after[k]) == 0)
                continue;
            moved++;
            /* a key moves only off the origin removed, or onto the one added */
            bool gone = true, added = true;
            for (int o = 0; o < ua.norigins; o++)
                gone &= strcmp(before[k], ua.origins[o].text) != 0;
            for (int o = 0; o < ub.norigins; o++)
                added &= strcmp(after[k], ub.origins[o].text) != 0;
            astray += !gone && !added;
        }
        double fraction = (double)moved / KEYS;
        print_message("  %s: %.4f of %d keys moved, %u of them astray\n", rows[i].why, fraction,
                      KEYS, astray);
        if (astray || fraction < rows[i].lo || fraction > rows[i].hi)
            fail_msg("%s: %.4f moved (want %.2f-%.2f), %u astray", rows[i].why, fraction,
                     rows[i].lo, rows[i].hi, astray);
        balancer_free(bb);
        balancer_free(ba);
    }
}

/* Weights changed on a reload, or an origin of another weight added or removed: keys move only
 * to or from the origins whose weight changed, about the share that changed (2,2,2,2 -> 3,2,2,2:
 * 1/4 -> 1/3, ideally 8.3%). On the old code the weights were divided by their greatest common
 * divisor, so every origin's count of points changed with it: a fifth of weight 1 added to four
 * of 2 moved 43% of the keys, 32% between origins that had not changed. Scaling every weight
 * alike (1,1,1,1 -> 2,2,2,2) moves keys among them all, as in nginx. */
static void test_hash_weight_movement(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        int nb, na;
        unsigned wb[5], wa[5];
        double lo, hi;             /* bounds of the fraction moved */
    } rows[] = {
        {"1,1,1,1 -> 2,1,1,1", 4, 4, {1, 1, 1, 1}, {2, 1, 1, 1}, 0.11, 0.18},
        {"2,2,2,2 -> 3,2,2,2", 4, 4, {2, 2, 2, 2}, {3, 2, 2, 2}, 0.06, 0.11},
        {"2,2,2,2 -> 1,2,2,2", 4, 4, {2, 2, 2, 2}, {1, 2, 2, 2}, 0.07, 0.12},
        {"a fifth of weight 1 added to four of 2", 4, 5, {2, 2, 2, 2}, {2, 2, 2, 2, 1}, 0.09,
         0.14},
        {"... and removed", 5, 4, {2, 2, 2, 2, 1}, {2, 2, 2, 2}, 0.09, 0.14},
        {"100,100,100,100 -> 100,100,100,50", 4, 4, {100, 100, 100, 100}, {100, 100, 100, 50},
         0.08, 0.13},
    };
    static const char *before[KEYS], *after[KEYS];
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct upstream_conf ub, ua;
        make_hash_upstream(&ub, rows[i].nb, five, rows[i].wb, 0);
        make_hash_upstream(&ua, rows[i].na, five, rows[i].wa, 0);
        struct balancer *bb = balancer_new(&ub), *ba = balancer_new(&ua);
        assert_non_null(bb);
        assert_non_null(ba);
        place_keys(bb, &ub, before);
        place_keys(ba, &ua, after);
        unsigned moved = 0, astray = 0;
        for (uint32_t k = 0; k < KEYS; k++) {
            if (strcmp(before[k], after[k]) == 0)
                continue;
            moved++;
            /* from or to an origin whose weight changed (0: not in that configuration) */
            bool changed = false;
            for (int o = 0; o < 5; o++) {
                unsigned wb = o < rows[i].nb ? rows[i].wb[o] : 0;
                unsigned wa = o < rows[i].na ? rows[i].wa[o] : 0;
                changed |= wb != wa &&
                           (strcmp(before[k], five[o]) == 0 || strcmp(after[k], five[o]) == 0);
            }
            astray += !changed;
        }
        double fraction = (double)moved / KEYS;
        print_message("  %s: %.4f of %d keys moved, %u of them astray (points %u -> %u)\n",
                      rows[i].why, fraction, KEYS, astray, balancer_ring_points(bb),
                      balancer_ring_points(ba));
        if (astray || fraction < rows[i].lo || fraction > rows[i].hi)
            fail_msg("%s: %.4f moved (want %.2f-%.2f), %u astray", rows[i].why, fraction,
                     rows[i].lo, rows[i].hi, astray);
        balancer_free(bb);
        balancer_free(ba);
    }
}

/* 32 origins of weight 100 (3,200 units) would be 819,200 points: past 1,024 units the ring
 * holds at most 262,144 (2 MiB), each origin its share by weight, and still spreads the keys
 * evenly. */
static void test_hash_ring_cap(void **state)
{
    (void)state;
    enum { N = CFG_MAX_ORIGINS };
    unsigned weights[N];
    for (int o = 0; o < N; o++)
        weights[o] = o == 0 ? CFG_MAX_WEIGHT / 2 : CFG_MAX_WEIGHT;
    struct upstream_conf up;
    make_upstream(&up, N, weights, BALANCE_HASH, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct balancer *b = balancer_new(&up);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(b);
    unsigned points = balancer_ring_points(b);
    print_message("  %u points, built in %.1f ms\n", points,
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_true(points <= 262144 && points > 262144 - N);
    unsigned count[N] = {0};
    for (uint32_t k = 0; k < KEYS; k++) {
        int o = balancer_pick_hash(b, 0, key_of(k), 0, NULL);
        assert_true(o >= 0);
        balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
        count[o]++;
    }
    double lo = 1e9, hi = 0;
    for (int o = 0; o < N; o++) {
        double per = (double)count[o] / weights[o];
        lo = per < lo ? per : lo;
        hi = per > hi ? per : hi;
    }
    print_message("  per unit of weight: max/min %.3f\n", hi / lo);
    assert_true(hi / lo < 1.3);
    balancer_free(b);
}

/* An origin down (max_fails, or its check failing) is passed over to the next origin on the
 * ring: only its keys move, spread over the others, and they come back with it (its probe
 * after down_time answered; its check passing again). */
static void test_hash_skip_down(void **state)
{
    (void)state;
    enum { N = 4000, DOWN = 2 };
    for (int by_check = 0; by_check < 2; by_check++) {
        struct upstream_conf up;
        make_hash_upstream(&up, 4, five, NULL, 1);
        struct balancer *b = balancer_new(&up);
        int home[N], moved_to[MAXO] = {0};
        uint32_t probe_key = 0;
        for (uint32_t k = 0; k < N; k++) {
            home[k] = balancer_pick_hash(b, 0, key_of(k), 0, NULL);
            balancer_done(b, home[k], 0, BALANCE_ANSWERED, 0);
            if (home[k] == DOWN)
                probe_key = k;
        }
        if (by_check) {
            balancer_check(b, DOWN, CHECK_FAILING, "test");
        } else {
            int o = balancer_pick_hash(b, 0, key_of(probe_key), 0, NULL);
            assert_int_equal(o, DOWN);
            balancer_done(b, o, 0, BALANCE_FAILED, 0); /* max_fails = 1: down for 5 s */
        }
        assert_true(balancer_origin_down(b, DOWN));
        for (uint32_t k = 0; k < N; k++) {
            int o = balancer_pick_hash(b, 10, key_of(k), 0, NULL);
            balancer_done(b, o, 0, BALANCE_ANSWERED, 10);
            if (home[k] == DOWN) {
                assert_int_not_equal(o, DOWN);
                moved_to[o]++;
            } else if (o != home[k]) {
                fail_msg("key %u moved from %d to %d with origin %d down", k, home[k], o, DOWN);
            }
        }
        print_message("  %s: origin %d's keys went %d %d - %d\n",
                      by_check ? "its check failing" : "passively down", DOWN, moved_to[0],
                      moved_to[1], moved_to[3]);
        for (int o = 0; o < 4; o++)
            if (o != DOWN && moved_to[o] == 0)
                fail_msg("no key of the down origin went to origin %d", o);
        /* back: the probe (a key of its own) after down_time, or a passing check */
        if (by_check) {
            balancer_check(b, DOWN, CHECK_PASSING, "test");
        } else {
            uint64_t probe;
            int o = balancer_pick_hash(b, 5000, key_of(probe_key), 0, &probe);
            assert_int_equal(o, DOWN);
            assert_true(probe != 0);
            balancer_done(b, o, probe, BALANCE_ANSWERED, 5000);
        }
        for (uint32_t k = 0; k < N; k++) {
            int o = balancer_pick_hash(b, 5001, key_of(k), 0, NULL);
            balancer_done(b, o, 0, BALANCE_ANSWERED, 5001);
            if (o != home[k])
                fail_msg("key %u on %d, not back home on %d", k, o, home[k]);
        }
        balancer_free(b);
    }
}

/* A retry (the origins tried excluded) goes to the next distinct origin on the ring: the one
 * the key goes to while its first is down; then the next, until none is left. A request
 * without a key goes round robin. */
static void test_hash_retry_next(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_hash_upstream(&up, 4, five, NULL, 1);
    for (uint32_t k = 0; k < 50; k++) {
        struct balancer *b = balancer_new(&up);
        uint32_t tried = 0;
        int order[MAXO];
        for (int a = 0; a < 4; a++) {
            order[a] = balancer_pick_hash(b, 0, key_of(k), tried, NULL);
            assert_true(order[a] >= 0 && !(tried & (1u << order[a])));
            balancer_done(b, order[a], 0, BALANCE_ANSWERED, 0);
            tried |= 1u << order[a];
        }
        assert_int_equal(balancer_pick_hash(b, 0, key_of(k), tried, NULL), -1);
        /* the first down: its keys go where its retries went */
        int o = balancer_pick_hash(b, 0, key_of(k), 0, NULL);
        balancer_done(b, o, 0, BALANCE_FAILED, 0);
        o = balancer_pick_hash(b, 1, key_of(k), 0, NULL);
        assert_int_equal(o, order[1]);
        balancer_done(b, o, 0, BALANCE_ANSWERED, 1);
        balancer_free(b);
    }
    /* no key: round robin, one of each of four in four picks */
    struct balancer *b = balancer_new(&up);
    uint32_t seen = 0;
    for (int a = 0; a < 4; a++)
        seen |= 1u << pick_answer(b, 0);
    assert_int_equal(seen, 0xf);
    balancer_free(b);
}

/* ---- backup origins ---- */

/* The picks of n attempts at now (each answered at once) per origin, into counts[]; a hash
 * upstream's keys are clients 0..n-1. */
static void count_picks(struct balancer *b, const struct upstream_conf *up, int n, uint64_t now,
                        uint32_t exclude, int *counts)
{
    for (int k = 0; k < n; k++) {
        int o = up->balance == BALANCE_HASH
                    ? balancer_pick_hash(b, now, key_of((uint32_t)k), exclude, NULL)
                    : balancer_pick(b, now, (uint64_t)k * 0x9e3779b97f4a7c15u, exclude, NULL);
        if (o < 0) {
            counts[MAXO]++; /* none: no_healthy_origin */
            continue;
        }
        balancer_done(b, o, 0, BALANCE_ANSWERED, now);
        counts[o]++;
    }
}

static const enum balance_policy every_policy[] = {BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN,
                                                   BALANCE_RANDOM_TWO, BALANCE_HASH};

/* Origins o0, o1 primaries and o2, o3 backups, by every policy: the backups take nothing while
 * a primary is usable; all the requests, shared by the policy, once both primaries are down
 * (by their checks or passively), or tried already (a retry after the last primary failed);
 * the primaries take everything back as soon as one is up; none left is no_healthy_origin. */
static void test_backup(void **state)
{
    (void)state;
    enum { N = 400 };
    for (size_t p = 0; p < ARRAY_LEN(every_policy); p++) {
        struct upstream_conf up;
        make_upstream(&up, 4, NULL, every_policy[p], 1);
        up.origins[2].backup = up.origins[3].backup = true;
        struct balancer *b = balancer_new(&up);
        assert_non_null(b);
        assert_false(balancer_origin_is_backup(b, 1));
        assert_true(balancer_origin_is_backup(b, 2));
        int counts[MAXO + 1] = {0};
        count_picks(b, &up, N, 0, 0, counts);
        print_message("  policy %d, all up: %d %d %d %d\n", every_policy[p], counts[0],
                      counts[1], counts[2], counts[3]);
        assert_int_equal(counts[2] + counts[3] + counts[MAXO], 0);
        assert_true(counts[0] > N / 4 && counts[1] > N / 4);
        /* one primary left: it takes all, still no backup */
        balancer_check(b, 0, CHECK_FAILING, "test");
        memset(counts, 0, sizeof(counts));
        count_picks(b, &up, N, 0, 0, counts);
        assert_int_equal(counts[1], N);
        /* a retry after the last primary failed goes to a backup */
        memset(counts, 0, sizeof(counts));
        count_picks(b, &up, N, 0, 1u << 1, counts);
        assert_int_equal(counts[0] + counts[1] + counts[MAXO], 0);
        /* both primaries down: the backups share the requests by the policy */
        int o = balancer_pick(b, 0, 0, 0, NULL);
        assert_int_equal(o, 1);
        balancer_done(b, o, 0, BALANCE_FAILED, 0); /* max_fails = 1: down until 5000 */
        memset(counts, 0, sizeof(counts));
        count_picks(b, &up, N, 10, 0, counts);
        print_message("  policy %d, primaries down: %d %d %d %d\n", every_policy[p],
                      counts[0], counts[1], counts[2], counts[3]);
        assert_int_equal(counts[0] + counts[1] + counts[MAXO], 0);
        assert_true(counts[2] > N / 4 && counts[3] > N / 4);
        /* a primary's check passes: everything goes back to it at once */
        balancer_check(b, 0, CHECK_PASSING, "test");
        memset(counts, 0, sizeof(counts));
        count_picks(b, &up, N, 20, 0, counts);
        assert_int_equal(counts[0], N);
        /* every origin out: no_healthy_origin */
        for (int f = 0; f < 4; f++)
            balancer_check(b, f, CHECK_FAILING, "test");
        memset(counts, 0, sizeof(counts));
        count_picks(b, &up, N, 30, 0, counts);
        assert_int_equal(counts[MAXO], N);
        balancer_free(b);
    }
}

/* sticky's pick (balancer_pick_origin): the origin asked for whatever the policy, taking no
 * turn of round robin's cycle; not when down or tried; a backup only when no primary is usable;
 * FULL at max_conns, so that the request waits for it. */
static void test_pick_origin(void **state)
{
    (void)state;
    for (size_t p = 0; p < ARRAY_LEN(every_policy); p++) {
        struct upstream_conf up;
        make_upstream(&up, 4, NULL, every_policy[p], 1);
        up.origins[3].backup = true;
        struct balancer *b = balancer_new(&up);
        assert_non_null(b);
        for (int k = 0; k < 8; k++) {
            int o = balancer_pick_origin(b, 0, 2, 0, NULL);
            assert_int_equal(o, 2);
            balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
        }
        if (every_policy[p] == BALANCE_ROUND_ROBIN) { /* the cycle did not move: o0 is next */
            assert_int_equal(pick_answer(b, 0), 0);
            /* nor does one in mid-cycle: o1 is next still */
            assert_int_equal(balancer_pick_origin(b, 0, 2, 0, NULL), 2);
            balancer_done(b, 2, 0, BALANCE_ANSWERED, 0);
            assert_int_equal(pick_answer(b, 0), 1);
        }
        assert_int_equal(balancer_pick_origin(b, 0, 2, 1u << 2, NULL), BALANCE_PICK_UNUSABLE);
        /* the backup: not while a primary can, yes once none can */
        assert_int_equal(balancer_pick_origin(b, 0, 3, 0, NULL), BALANCE_PICK_UNUSABLE);
        assert_int_equal(balancer_pick_origin(b, 0, 3, 7u, NULL), 3);
        balancer_done(b, 3, 0, BALANCE_ANSWERED, 0);
        /* down (max_fails = 1): another must take it */
        int o = balancer_pick_origin(b, 0, 1, 0, NULL);
        assert_int_equal(o, 1);
        balancer_done(b, o, 0, BALANCE_FAILED, 0);
        assert_int_equal(balancer_pick_origin(b, 10, 1, 0, NULL), BALANCE_PICK_UNUSABLE);
        balancer_free(b);
    }
    /* at max_conns: FULL, and its slot once freed */
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    up.origins[0].max_conns = up.origins[1].max_conns = 1;
    up.limited = true;
    up.max_queue = 10;
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    assert_int_equal(balancer_pick_origin(b, 0, 1, 0, NULL), 1);
    assert_int_equal(balancer_pick_origin(b, 0, 1, 0, NULL), BALANCE_PICK_FULL);
    balancer_done(b, 1, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(balancer_pick_origin(b, 0, 1, 0, NULL), 1);
    balancer_done(b, 1, 0, BALANCE_ANSWERED, 0);
    balancer_free(b);
    /* o0 listed twice (a weight by repetition): the slot of either listing is its */
    make_upstream(&up, 3, NULL, BALANCE_ROUND_ROBIN, 0);
    snprintf(up.origins[1].text, sizeof(up.origins[1].text), "o0");
    for (int o = 0; o < 3; o++)
        up.origins[o].max_conns = 1;
    up.limited = true;
    up.max_queue = 10;
    b = balancer_new(&up);
    assert_non_null(b);
    int first = balancer_pick_origin(b, 0, 0, 0, NULL), second = balancer_pick_origin(b, 0, 0, 0, NULL);
    if (first + second != 1 || first * second != 0)
        fail_msg("o0 listed twice: picks %d and %d, not its two listings", first, second);
    assert_int_equal(balancer_pick_origin(b, 0, 0, 0, NULL), BALANCE_PICK_FULL);
    balancer_done(b, 0, 0, BALANCE_ANSWERED, 0);
    balancer_done(b, 1, 0, BALANCE_ANSWERED, 0);
    balancer_free(b);
}

/* A down primary's probe after down_time still goes out (it is a primary's turn, not the
 * backups'), and its answer takes the requests back from the backup. */
static void test_backup_probe(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 1);
    up.origins[1].backup = true;
    struct balancer *b = balancer_new(&up);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    balancer_done(b, 0, 0, BALANCE_FAILED, 0); /* down until 5000 */
    for (int k = 0; k < 5; k++)
        assert_int_equal(pick_answer(b, 0), 1);
    uint64_t probe;
    assert_int_equal(balancer_pick(b, 5000, 0, 0, &probe), 0);
    assert_true(probe != 0);
    assert_int_equal(balancer_pick(b, 5000, 0, 0, NULL), 1); /* beside the probe: the backup */
    balancer_done(b, 1, 0, BALANCE_ANSWERED, 5000);
    balancer_done(b, 0, probe, BALANCE_ANSWERED, 5000);
    for (int k = 0; k < 5; k++)
        assert_int_equal(pick_answer(b, 0), 0);
    balancer_free(b);
}

/* ---- slow start ---- */

/* Two equal origins, o1 back from failing its check with slow_start = 1s: its weight is ~0 at
 * its first pick (the ramp's start), half at 500 ms, whole at 1 s, and its share of the picks
 * follows, by each policy that ramps: ~0, a third (0.5 against 1), a half. */
static const struct {
    unsigned at_ms;      /* since the ramp's start */
    unsigned permille;   /* balancer_weight_permille */
    int lo, hi;          /* o1's picks of 3000 */
} ramp_rows[] = {
    {0, 1, 0, 30},
    {500, 500, 900, 1100},
    {1000, 1000, 1400, 1600},
};

static void test_slow_start(void **state)
{
    (void)state;
    enum { N = 3000, T = 100000 };
    static const enum balance_policy ramped[] = {BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN,
                                                 BALANCE_RANDOM_TWO};
    for (size_t p = 0; p < ARRAY_LEN(ramped); p++) {
        for (size_t i = 0; i < ARRAY_LEN(ramp_rows); i++) {
            struct upstream_conf up;
            make_upstream(&up, 2, NULL, ramped[p], 0);
            up.slow_start_ms = 1000;
            struct balancer *b = balancer_new(&up);
            assert_int_equal(balancer_weight_permille(b, 1, T), 1000); /* at start: whole */
            balancer_check(b, 1, CHECK_FAILING, "test");
            balancer_check(b, 1, CHECK_PASSING, "test");
            assert_int_equal(balancer_weight_permille(b, 1, T), 1); /* pending */
            int counts[MAXO + 1] = {0};
            count_picks(b, &up, 2, T, 0, counts); /* o1's turn comes: its ramp starts at T */
            memset(counts, 0, sizeof(counts));
            uint64_t now = T + ramp_rows[i].at_ms;
            assert_int_equal(balancer_weight_permille(b, 1, now), ramp_rows[i].permille);
            count_picks(b, &up, N, now, 0, counts);
            print_message("  policy %d at %u ms: %d %d\n", ramped[p], ramp_rows[i].at_ms,
                          counts[0], counts[1]);
            if (counts[1] < ramp_rows[i].lo || counts[1] > ramp_rows[i].hi)
                fail_msg("policy %d at %u ms: o1 took %d of %d, want %d-%d", ramped[p],
                         ramp_rows[i].at_ms, counts[1], N, ramp_rows[i].lo, ramp_rows[i].hi);
            balancer_free(b);
        }
    }
}

/* least_conn with the other origin busy (one request in flight throughout): the ramping o1, idle,
 * is the least busy at every pick, and took all of them (1000 of 1000 at its ramp's start). A
 * ramping origin runs in its ramp's share s of the picks that are not its turn, and takes s of
 * its turns: 2s / (1 + s) of the picks, twice what round robin gives it, where it took all. */
static const struct {
    unsigned at_ms;      /* since the ramp's start */
    int hi;              /* o1's picks of 1000, at most */
} busy_ramp_rows[] = {
    {0, 12},
    {250, 410},
    {500, 677},
};

static void test_slow_start_least_busy(void **state)
{
    (void)state;
    enum { N = 1000, T = 100000 };
    for (size_t i = 0; i < ARRAY_LEN(busy_ramp_rows); i++) {
        struct upstream_conf up;
        make_upstream(&up, 2, NULL, BALANCE_LEAST_CONN, 0);
        up.slow_start_ms = 1000;
        struct balancer *b = balancer_new(&up);
        balancer_check(b, 1, CHECK_FAILING, "test");
        balancer_check(b, 1, CHECK_PASSING, "test");
        assert_int_equal(balancer_pick(b, T, 0, 0, NULL), 0); /* held: o0 busy from here */
        uint64_t now = T + busy_ramp_rows[i].at_ms;
        int counts[MAXO + 1] = {0};
        count_picks(b, &up, N, now, 0, counts);
        print_message("  at %u ms (o1's weight %u permille), o0 busy: %d %d\n",
                      busy_ramp_rows[i].at_ms, balancer_weight_permille(b, 1, now), counts[0],
                      counts[1]);
        if (counts[1] > busy_ramp_rows[i].hi)
            fail_msg("at %u ms: o1 took %d of %d, want at most %d", busy_ramp_rows[i].at_ms,
                     counts[1], N, busy_ramp_rows[i].hi);
        assert_int_equal(counts[MAXO], 0);
        balancer_done(b, 0, 0, BALANCE_ANSWERED, now);
        balancer_free(b);
    }
}

/* Passively down and back through its probe ramps too; an origin alone is still picked at ~0;
 * without slow_start nothing ramps. */
static void test_slow_start_passive(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 1);
    up.slow_start_ms = 1000;
    struct balancer *b = balancer_new(&up);
    balancer_check(b, 1, CHECK_FAILING, "test"); /* o0 alone from here */
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    balancer_done(b, 0, 0, BALANCE_FAILED, 0); /* down until 5000 */
    assert_int_equal(balancer_pick(b, 10, 0, 0, NULL), -1);
    uint64_t probe;
    assert_int_equal(balancer_pick(b, 5000, 0, 0, &probe), 0);
    balancer_done(b, 0, probe, BALANCE_ANSWERED, 5000);
    assert_int_equal(balancer_weight_permille(b, 0, 5000), 1); /* pending */
    /* alone at the ramp's start: picked all the same, every time */
    for (int k = 0; k < 10; k++) {
        assert_int_equal(balancer_pick(b, 5000, 0, 0, NULL), 0);
        balancer_done(b, 0, 0, BALANCE_ANSWERED, 5000);
    }
    assert_int_equal(balancer_weight_permille(b, 0, 5250), 250);
    assert_int_equal(balancer_weight_permille(b, 0, 6000), 1000);
    balancer_free(b);

    up.slow_start_ms = 0;
    b = balancer_new(&up);
    balancer_check(b, 1, CHECK_FAILING, "test");
    balancer_check(b, 1, CHECK_PASSING, "test");
    assert_int_equal(balancer_weight_permille(b, 1, 0), 1000);
    int counts[MAXO + 1] = {0};
    count_picks(b, &up, 100, 0, 0, counts);
    assert_int_equal(counts[1], 50);
    balancer_free(b);
}

/* A reload: an origin ramping goes on where it was, one new to the upstream ramps from its
 * first pick, one kept and up does not. */
static void test_slow_start_inherit(void **state)
{
    (void)state;
    struct upstream_conf old, up;
    make_upstream(&old, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    old.slow_start_ms = 1000;
    struct balancer *from = balancer_new(&old);
    balancer_check(from, 1, CHECK_FAILING, "test");
    balancer_check(from, 1, CHECK_PASSING, "test");
    int counts[MAXO + 1] = {0};
    count_picks(from, &old, 2, 1000, 0, counts); /* o1's ramp: 1000 to 2000 */
    make_upstream(&up, 3, NULL, BALANCE_ROUND_ROBIN, 0);
    up.slow_start_ms = 1000;
    struct balancer *b = balancer_new(&up);
    balancer_inherit(b, from, 1500);
    assert_int_equal(balancer_weight_permille(b, 0, 1500), 1000);
    assert_int_equal(balancer_weight_permille(b, 1, 1500), 500);
    assert_int_equal(balancer_weight_permille(b, 2, 1500), 1); /* o2: new, pending */
    count_picks(b, &up, 3, 1500, 0, counts);
    assert_int_equal(balancer_weight_permille(b, 2, 2000), 500);
    assert_int_equal(balancer_weight_permille(b, 2, 2500), 1000);
    balancer_free(b);
    balancer_free(from);
}

/* ---- configuration ---- */

#define U1 "[upstream app]\norigin = 127.0.0.1:3000\n"

/* Valid forms and what they store. */
static void test_config_values(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[proxy]\nmax_connections = 512\n"
                                 "[upstream app]\n"
                                 "origin = 127.0.0.1:3000\n"
                                 "origin = 127.0.0.1:3001 weight=2\n"
                                 "origin = sim  weight=100\n"
                                 "balance = least_conn\n"
                                 "max_fails = 3\nfail_window = 2s\ndown_time = 30s\n"
                                 "retries = 2\nretry_sent = on\n"
                                 "health_check = GET /healthz every 5s expect 200\n"
                                 "tunnel_timeout = 10m\n");
    assert_int_equal(cfg->max_connections, 512);
    const struct upstream_conf *up = &cfg->upstreams[0];
    assert_int_equal(up->origins[0].weight, 1);
    assert_int_equal(up->origins[1].weight, 2);
    assert_string_equal(up->origins[1].text, "127.0.0.1:3001");
    assert_true(up->origins[2].is_sim);
    assert_int_equal(up->origins[2].weight, 100);
    assert_int_equal(up->balance, BALANCE_LEAST_CONN);
    assert_int_equal(up->max_fails, 3);
    assert_int_equal(up->fail_window_ms, 2000);
    assert_int_equal(up->down_time_ms, 30000);
    assert_int_equal(up->retries, 2);
    assert_true(up->retry_sent);
    assert_string_equal(up->health.method, "GET");
    assert_string_equal(up->health.path, "/healthz");
    assert_int_equal(up->health.interval_ms, 5000);
    assert_int_equal(up->health.timeout_ms, 5000); /* the interval, when not given */
    assert_int_equal(up->health.expect_lo, 200);
    assert_int_equal(up->health.expect_hi, 200);
    assert_int_equal(up->health.rise, 1); /* one check decides either way, as before */
    assert_int_equal(up->health.fall, 1);
    assert_int_equal(up->tunnel_timeout_ms, 600000);
    cfg_free(cfg);

    /* defaults; fail_timeout stands for both fail_window and down_time */
    cfg = load_ok(U1 "fail_timeout = 20s\n"
                  "health_check = HEAD  /ping\tevery 250ms expect 2xx timeout 100ms\n");
    up = &cfg->upstreams[0];
    assert_int_equal(cfg->max_connections, 0);
    assert_int_equal(up->balance, BALANCE_ROUND_ROBIN);
    assert_int_equal(up->retries, 1);
    assert_false(up->retry_sent);
    assert_int_equal(up->tunnel_timeout_ms, 3600000);
    assert_int_equal(up->fail_window_ms, 20000);
    assert_int_equal(up->down_time_ms, 20000);
    assert_string_equal(up->health.method, "HEAD");
    assert_int_equal(up->health.interval_ms, 250);
    assert_int_equal(up->health.timeout_ms, 100);
    assert_int_equal(up->health.expect_lo, 200);
    assert_int_equal(up->health.expect_hi, 299);
    assert_int_equal(up->health.rise, 1);
    assert_int_equal(up->health.fall, 1);
    cfg_free(cfg);

    /* balance = hash KEY: a field's name lowercase with '_' as '-', a cookie's as written */
    static const struct {
        const char *value;
        enum hash_key_kind key;
        const char *name;
    } hash_rows[] = {
        {"hash $client_addr", HASH_KEY_CLIENT_ADDR, ""},
        {"hash\t$uri", HASH_KEY_URI, ""},
        {"hash $host", HASH_KEY_HOST, ""},
        {"hash $http_X_User", HASH_KEY_HTTP, "x-user"},
        {"hash   $cookie_SID", HASH_KEY_COOKIE, "SID"},
    };
    for (size_t i = 0; i < ARRAY_LEN(hash_rows); i++) {
        char text[128];
        snprintf(text, sizeof(text), U1 "balance = %s\n", hash_rows[i].value);
        cfg = load_ok(text);
        up = &cfg->upstreams[0];
        assert_int_equal(up->balance, BALANCE_HASH);
        assert_int_equal(up->hash_key, hash_rows[i].key);
        assert_string_equal(up->hash_name, hash_rows[i].name);
        assert_int_equal(up->hash_name_len, strlen(hash_rows[i].name));
        cfg_free(cfg);
    }

    /* backup and weight in either order; slow_start */
    cfg = load_ok(U1 "origin = 127.0.0.1:3001 backup\norigin = 127.0.0.1:3002 backup weight=3\n"
                     "origin = 127.0.0.1:3003 weight=2\tbackup\nslow_start = 30s\n");
    up = &cfg->upstreams[0];
    assert_false(up->origins[0].backup);
    assert_true(up->origins[1].backup && up->origins[1].weight == 1);
    assert_true(up->origins[2].backup && up->origins[2].weight == 3);
    assert_true(up->origins[3].backup && up->origins[3].weight == 2);
    assert_string_equal(up->origins[2].text, "127.0.0.1:3002");
    assert_int_equal(up->slow_start_ms, 30000);
    cfg_free(cfg);

    cfg = load_ok(U1);
    assert_int_equal(cfg->upstreams[0].slow_start_ms, 0); /* off */
    assert_int_equal(cfg->upstreams[0].health.interval_ms, 0); /* no active check */
    assert_null(cfg->upstreams[0].health.path);
    cfg_free(cfg);
}

/* rise and fall after `expect STATUS`, with timeout, in any order. */
static const struct {
    const char *options;
    unsigned rise, fall;
    uint64_t timeout_ms;
} rise_fall_config_rows[] = {
    {"", 1, 1, 5000},
    {"rise 2 fall 3 timeout 2s", 2, 3, 2000},
    {"timeout 2s rise 2 fall 3", 2, 3, 2000},
    {"fall 3 timeout 2s rise 2", 2, 3, 2000},
    {"fall 3", 1, 3, 5000},
    {"rise 2", 2, 1, 5000},
    {"rise\t100   fall 1", 100, 1, 5000},
    {"fall 100 rise 1", 1, 100, 5000},
    {"rise 007 fall 01", 7, 1, 5000},
};

static void test_config_rise_fall(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rise_fall_config_rows); i++) {
        char text[256];
        snprintf(text, sizeof(text), U1 "health_check = GET /healthz every 5s expect 200 %s\n",
                 rise_fall_config_rows[i].options);
        struct config *cfg = load_ok(text);
        const struct health_check_conf *hc = &cfg->upstreams[0].health;
        if (hc->rise != rise_fall_config_rows[i].rise || hc->fall != rise_fall_config_rows[i].fall ||
            hc->timeout_ms != rise_fall_config_rows[i].timeout_ms)
            fail_msg("'%s': rise %u fall %u timeout %llu ms", rise_fall_config_rows[i].options,
                     hc->rise, hc->fall, (unsigned long long)hc->timeout_ms);
        assert_int_equal(hc->interval_ms, 5000);
        assert_int_equal(hc->expect_lo, 200);
        cfg_free(cfg);
    }
}

/* ---- max_conns and the queue ---- */

/* The waiter woken last, for the fake wake below (the exchange's is an event_active). */
static struct balance_waiter *woken[8];
static int nwoken;

static void wake_record(struct balance_waiter *w)
{
    woken[nwoken++] = w;
}

/* max_conns holds across picks; a full origin is passed over, not failed; with every origin
 * full the pick finds none and the room says FULL, not NONE (no_healthy_origin). */
static void test_max_conns_gate(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 1);
    up.origins[0].max_conns = 2;
    up.origins[1].max_conns = 1;
    up.limited = true;
    up.max_queue = 4;
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    int got[3];
    for (int k = 0; k < 3; k++)
        got[k] = balancer_pick(b, 0, 0, 0, NULL);
    assert_int_equal(balancer_in_flight(b, 0), 2);
    assert_int_equal(balancer_in_flight(b, 1), 1);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), -1);
    assert_int_equal(balancer_room(b, 0, 0), BALANCE_ROOM_FULL);
    /* full is no failure: max_fails = 1 and both still up */
    assert_int_equal(balancer_origin_state(b, 0), ORIGIN_UP);
    assert_int_equal(balancer_origin_state(b, 1), ORIGIN_UP);
    for (int k = 0; k < 3; k++)
        balancer_done(b, got[k], 0, BALANCE_ANSWERED, 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    assert_int_equal(balancer_in_flight(b, 1), 0);
    assert_int_equal(balancer_room(b, 0, 0), BALANCE_ROOM_FREE);
    balancer_free(b);
}

/* Waiters are handed freed slots oldest first, only of origins they may use; max_queue refuses
 * the next; one that leaves is out of the count, and a slot handed to it comes back. */
static void test_queue_handoff(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    up.origins[0].max_conns = 1;
    up.origins[1].max_conns = 1;
    up.limited = true;
    up.max_queue = 3;
    struct balancer *b = balancer_new(&up);
    int a = balancer_pick(b, 0, 0, 0, NULL), c = balancer_pick(b, 0, 0, 0, NULL);
    assert_true(a >= 0 && c >= 0 && a != c);
    struct balance_waiter w[4] = {
        {.exclude = 1u << 1, .wake = wake_record}, /* may not take origin 1 */
        {.wake = wake_record},
        {.wake = wake_record},
        {.wake = wake_record},
    };
    nwoken = 0;
    for (int k = 0; k < 3; k++)
        assert_int_equal(balancer_queue(b, &w[k], 0), BALANCE_ROOM_QUEUED);
    assert_int_equal(balancer_queue(b, &w[3], 0), BALANCE_ROOM_QUEUE_FULL);
    assert_int_equal(balancer_queue_length(b), 3);
    assert_int_equal(balancer_queued_total(b), 3);
    /* origin 1's slot skips w[0], which may not use it, for w[1] */
    balancer_done(b, 1, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(nwoken, 1);
    assert_ptr_equal(woken[0], &w[1]);
    assert_int_equal(w[1].origin, 1);
    assert_int_equal(balancer_in_flight(b, 1), 1); /* handed over, not freed */
    /* origin 0's goes to the oldest, w[0] */
    balancer_done(b, 0, 0, BALANCE_ANSWERED, 0);
    assert_ptr_equal(woken[1], &w[0]);
    assert_int_equal(w[0].origin, 0);
    /* w[2] times out: out of the queue, counted */
    assert_int_equal(balancer_unqueue(b, &w[2], true), -1);
    assert_int_equal(balancer_queue_length(b), 0);
    assert_int_equal(balancer_queue_timeouts(b), 1);
    /* a woken waiter that leaves before it ran hands its slot back */
    assert_int_equal(balancer_unqueue(b, &w[1], false), 1);
    balancer_release(b, 1);
    assert_int_equal(balancer_in_flight(b, 1), 0);
    balancer_release(b, 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    assert_int_equal(nwoken, 2);
    balancer_free(b);
}

/* Two generations of upstream u (balancer_share): origin o0 is listed in both and counts one
 * number under the newest max_conns; o1, only in the old one, keeps its own. A slot the old
 * generation frees goes to the new one's waiter; a count over a lowered max_conns goes down
 * before any slot is handed on; a raised one hands its free slots to the waiters at serve. */
static void test_shared_counts(void **state)
{
    (void)state;
    struct upstream_conf old_up, new_up;
    make_upstream(&old_up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    old_up.origins[0].max_conns = 3;
    old_up.origins[1].max_conns = 3;
    old_up.limited = true;
    old_up.max_queue = 4;
    make_upstream(&new_up, 1, NULL, BALANCE_ROUND_ROBIN, 0);
    new_up.origins[0].max_conns = 2; /* lowered */
    new_up.limited = true;
    new_up.max_queue = 4;
    struct balancer *old_b = balancer_new(&old_up), *new_b = balancer_new(&new_up);
    assert_int_equal(balancer_share(old_b), 0);
    int held[3];
    for (int k = 0; k < 3; k++)
        held[k] = balancer_pick(old_b, 0, 0, 1u << 1, NULL); /* o0 only */
    assert_int_equal(held[2], 0);
    assert_int_equal(balancer_share(new_b), 0);
    assert_int_equal(balancer_in_flight(new_b, 0), 3); /* the old generation's */
    balancer_serve(new_b, 0);
    assert_int_equal(balancer_pick(new_b, 0, 0, 0, NULL), -1); /* 3 over max_conns 2 */
    assert_int_equal(balancer_pick(old_b, 0, 0, 1u << 1, NULL), -1); /* the new limit holds */
    struct balance_waiter w = {.wake = wake_record};
    nwoken = 0;
    assert_int_equal(balancer_queue(new_b, &w, 0), BALANCE_ROOM_QUEUED);
    balancer_done(old_b, held[0], 0, BALANCE_ANSWERED, 0); /* 3 -> 2: no slot under 2 */
    assert_int_equal(nwoken, 0);
    assert_int_equal(balancer_in_flight(new_b, 0), 2);
    balancer_done(old_b, held[1], 0, BALANCE_ANSWERED, 0); /* a slot: the new waiter's */
    assert_int_equal(nwoken, 1);
    assert_int_equal(w.origin, 0);
    assert_int_equal(balancer_in_flight(new_b, 0), 2);
    assert_int_equal(balancer_in_flight(old_b, 1), 0); /* o1 is the old one's alone */
    /* raised to 3 by a third generation: its serve hands the free slot to a waiter */
    struct upstream_conf third_up = new_up;
    third_up.origins[0].max_conns = 3;
    struct balancer *third_b = balancer_new(&third_up);
    struct balance_waiter w2 = {.wake = wake_record};
    assert_int_equal(balancer_queue(new_b, &w2, 0), BALANCE_ROOM_QUEUED);
    assert_int_equal(balancer_share(third_b), 0);
    balancer_serve(third_b, 0);
    assert_int_equal(nwoken, 2);
    assert_int_equal(w2.origin, 0);
    assert_int_equal(balancer_in_flight(third_b, 0), 3);
    balancer_done(old_b, held[2], 0, BALANCE_ANSWERED, 0);
    balancer_done(new_b, 0, 0, BALANCE_ANSWERED, 0);
    balancer_done(new_b, 0, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(balancer_in_flight(third_b, 0), 0);
    balancer_free(old_b);
    balancer_free(new_b);
    /* the count lives while a generation holds it */
    assert_int_equal(balancer_pick(third_b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_in_flight(third_b, 0), 1);
    balancer_done(third_b, 0, 0, BALANCE_ANSWERED, 0);
    balancer_free(third_b);
}

/* An upstream that gains max_conns in a reload counts on its own (its queue could not be handed
 * the old generation's slots), and a balancer left unshared counts alone. */
static void test_shared_counts_identity(void **state)
{
    (void)state;
    struct upstream_conf free_up, limited_up;
    make_upstream(&free_up, 1, NULL, BALANCE_LEAST_CONN, 0);
    make_upstream(&limited_up, 1, NULL, BALANCE_ROUND_ROBIN, 0);
    limited_up.origins[0].max_conns = 1;
    limited_up.limited = true;
    limited_up.max_queue = 4;
    struct balancer *a = balancer_new(&free_up), *a2 = balancer_new(&free_up),
                    *l = balancer_new(&limited_up), *alone = balancer_new(&free_up);
    assert_int_equal(balancer_share(a), 0);
    assert_int_equal(balancer_share(a2), 0);
    assert_int_equal(balancer_share(l), 0);
    assert_int_equal(balancer_pick(a, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_in_flight(a2, 0), 1); /* least_conn sees the old requests */
    assert_int_equal(balancer_in_flight(l, 0), 0);
    assert_int_equal(balancer_in_flight(alone, 0), 0);
    balancer_done(a, 0, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(balancer_in_flight(a2, 0), 0);
    balancer_free(a);
    balancer_free(a2);
    balancer_free(l);
    balancer_free(alone);
}

/* Generations leave the share in any order (the oldest first, then the newest): the list's ends
 * follow, so a slot freed still reaches the waiters of those left and of one that came after,
 * the older generation's first. */
static void test_shared_counts_leave_order(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 1, NULL, BALANCE_ROUND_ROBIN, 0);
    up.origins[0].max_conns = 1;
    up.limited = true;
    up.max_queue = 4;
    struct balancer *gen[4];
    for (int g = 0; g < 3; g++) {
        gen[g] = balancer_new(&up);
        assert_int_equal(balancer_share(gen[g]), 0);
    }
    balancer_free(gen[0]); /* the oldest leaves */
    balancer_free(gen[2]); /* the newest leaves */
    gen[3] = balancer_new(&up);
    assert_int_equal(balancer_share(gen[3]), 0);
    assert_int_equal(balancer_pick(gen[3], 0, 0, 0, NULL), 0);
    struct balance_waiter w1 = {.wake = wake_record}, w3 = {.wake = wake_record};
    nwoken = 0;
    assert_int_equal(balancer_queue(gen[1], &w1, 0), BALANCE_ROOM_QUEUED);
    assert_int_equal(balancer_queue(gen[3], &w3, 0), BALANCE_ROOM_QUEUED);
    balancer_done(gen[3], 0, 0, BALANCE_ANSWERED, 0); /* the slot: the older one's waiter's */
    assert_int_equal(nwoken, 1);
    assert_ptr_equal(woken[0], &w1);
    assert_int_equal(w1.origin, 0);
    balancer_done(gen[1], 0, 0, BALANCE_ANSWERED, 0); /* then the newer one's */
    assert_int_equal(nwoken, 2);
    assert_ptr_equal(woken[1], &w3);
    assert_int_equal(w3.origin, 0);
    balancer_done(gen[3], 0, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(balancer_in_flight(gen[1], 0), 0);
    balancer_free(gen[1]);
    balancer_free(gen[3]);
}

/* [upstream] max_conns is the default of the origins that set none; max_queue and
 * queue_timeout have their defaults; an upstream without max_conns has no queue. */
static void test_config_max_conns(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[upstream a]\norigin = 127.0.0.1:1 max_conns=5\n"
                                 "origin = 127.0.0.1:2\nmax_conns = 10\n"
                                 "[upstream b]\norigin = 127.0.0.1:3\nqueue_timeout = 2s\n"
                                 "max_queue = 0\n[route ra]\nprefix = /\nupstream = a\n"
                                 "[route rb]\nprefix = /b\nupstream = b\n");
    assert_int_equal(cfg->upstreams[0].origins[0].max_conns, 5);
    assert_int_equal(cfg->upstreams[0].origins[1].max_conns, 10);
    assert_true(cfg->upstreams[0].limited);
    assert_int_equal(cfg->upstreams[0].max_queue, 1000);
    assert_int_equal(cfg->upstreams[0].timers_ms[TIMER_QUEUE], 5000);
    assert_false(cfg->upstreams[1].limited);
    assert_int_equal(cfg->upstreams[1].max_queue, 0);
    assert_int_equal(cfg->upstreams[1].timers_ms[TIMER_QUEUE], 2000);
    cfg_free(cfg);
}

static const struct {
    const char *why;
    const char *text;
    const char *errors[MAX_ERR];
} config_error_rows[] = {
    {"weight 0", "[upstream a]\norigin = 127.0.0.1:1 weight=0\norigin = sim\n",
     {"test.ini:2: origin: weight '0' is not a whole number between 1 and 100"}},
    {"weight above the maximum", "[upstream a]\norigin = 127.0.0.1:1 weight=101\norigin = sim\n",
     {"test.ini:2: origin: weight '101' is not a whole number between 1 and 100"}},
    {"unknown origin option", "[upstream a]\norigin = 127.0.0.1:1 standby\norigin = sim\n",
     {"test.ini:2: origin: unknown option 'standby' (expected weight=N, max_conns=N, backup or "
      "cookie=VALUE, each once)"}},
    {"backup twice", "[upstream a]\norigin = sim\norigin = 127.0.0.1:1 backup backup\n",
     {"test.ini:3: origin: repeated option 'backup' (expected weight=N, max_conns=N, backup or "
      "cookie=VALUE, each once)"}},
    {"weight twice",
     "[upstream a]\norigin = sim\norigin = 127.0.0.1:1 weight=2 backup weight=3\n",
     {"test.ini:3: origin: repeated option 'weight=3' (expected weight=N, max_conns=N, "
      "backup or cookie=VALUE, each once)"}},
    {"the only origin a backup", "[upstream a]\norigin = 127.0.0.1:1 backup\n",
     {"test.ini:1: [upstream a]: every origin is a backup; a backup takes requests only when "
      "no primary can, so list one without `backup`"}},
    {"every origin a backup",
     "[upstream a]\norigin = 127.0.0.1:1 backup\norigin = 127.0.0.1:2 weight=2 backup\n",
     {"test.ini:1: [upstream a]: every origin is a backup; a backup takes requests only when "
      "no primary can, so list one without `backup`"}},
    {"one address a primary and a backup",
     "[upstream a]\norigin = 127.0.0.1:1\norigin = 127.0.0.1:1 backup\n",
     {"test.ini:1: [upstream a]: origin 127.0.0.1:1 is listed both as a primary and as a "
      "backup"}},
    {"slow_start with hash", U1 "balance = hash $uri\nslow_start = 10s\n",
     {"test.ini:4: slow_start: not with balance = hash (a ramped weight would move keys back "
      "and forth between origins)"}},
    {"slow_start not a duration", U1 "slow_start = soon\n",
     {"test.ini:3: slow_start: 'soon' is not a duration (e.g. 250ms, 2s, 1m)"}},
    {"slow_start negative", U1 "slow_start = -1s\n",
     {"test.ini:3: slow_start: '-1s' is not a duration (e.g. 250ms, 2s, 1m)"}},
    {"max_conns 0 on an origin",
     "[upstream a]\norigin = 127.0.0.1:1 max_conns=0\norigin = sim\n",
     {"test.ini:2: origin: max_conns '0' is not a whole number between 1 and 1000000"}},
    {"max_conns not a number",
     "[upstream a]\norigin = 127.0.0.1:1 weight=2 max_conns=ten\norigin = sim\n",
     {"test.ini:2: origin: max_conns 'ten' is not a whole number between 1 and 1000000"}},
    {"max_conns with a space",
     "[upstream a]\norigin = 127.0.0.1:1 max_conns 10\norigin = sim\n",
     {"test.ini:2: origin: unknown option 'max_conns' (expected weight=N, max_conns=N, backup or "
      "cookie=VALUE, each once)"}},
    {"max_conns twice",
     "[upstream a]\norigin = sim\norigin = 127.0.0.1:1 max_conns=2 backup max_conns=3\n",
     {"test.ini:3: origin: repeated option 'max_conns=3' (expected weight=N, max_conns=N, "
      "backup or cookie=VALUE, each once)"}},
    {"upstream max_conns negative", U1 "max_conns = -1\n",
     {"test.ini:3: max_conns: '-1' is not a whole number between 0 and 1000000"}},
    {"max_queue too large", U1 "max_queue = 2000000\n",
     {"test.ini:3: max_queue: '2000000' is not a whole number between 0 and 1000000"}},
    {"queue_timeout 0", U1 "queue_timeout = 0\n",
     {"test.ini:3: queue_timeout: must be greater than 0 (only total_timeout can be 0 = off)"}},
    {"unknown policy", U1 "balance = fastest\n",
     {"test.ini:3: balance: 'fastest' is not one of round_robin, least_conn, random_two, hash"}},
    {"hash without a key", U1 "balance = hash\n",
     {"test.ini:3: balance: hash needs a key: hash $client_addr, $uri, $host, $http_NAME or "
      "$cookie_NAME"}},
    {"hash of an unknown variable", U1 "balance = hash $remote_addr\n",
     {"test.ini:3: balance: unknown hash key '$remote_addr' (one of $client_addr, $uri, $host, "
      "$http_NAME, $cookie_NAME)"}},
    {"hash of a key without its $", U1 "balance = hash client_addr\n",
     {"test.ini:3: balance: unknown hash key 'client_addr' (one of $client_addr, $uri, $host, "
      "$http_NAME, $cookie_NAME)"}},
    {"hash of two keys", U1 "balance = hash $uri $host\n",
     {"test.ini:3: balance: 'hash $uri $host': one key only"}},
    {"$http_ without a name", U1 "balance = hash $http_\n",
     {"test.ini:3: balance: '$http_' needs a NAME of 1-63 bytes after $http_"}},
    {"a field name that is no token", U1 "balance = hash $http_x/user\n",
     {"test.ini:3: balance: '$http_x/user': 'x/user' is no field name (token characters only)"}},
    {"a cookie name that is no token", U1 "balance = hash $cookie_s=id\n",
     {"test.ini:3: balance: '$cookie_s=id': 's=id' is no cookie name (token characters only)"}},
    {"a policy with an argument", U1 "balance = least_conn $uri\n",
     {"test.ini:3: balance: 'least_conn $uri' takes no argument (only hash takes a key)"}},
    {"fail_timeout with fail_window", U1 "fail_window = 1s\nfail_timeout = 2s\n",
     {"test.ini:4: fail_timeout: it sets both fail_window and down_time; use either it or them"}},
    {"fail_timeout with down_time", U1 "fail_timeout = 2s\ndown_time = 1s\n",
     {"test.ini:3: fail_timeout: it sets both fail_window and down_time; use either it or them"}},
    {"retries beyond the origins an upstream can have", U1 "retries = 32\n",
     {"test.ini:3: retries: '32' is not a whole number between 0 and 31"}},
    {"retry_sent not a boolean", U1 "retry_sent = idempotent\n",
     {"test.ini:3: retry_sent: 'idempotent' is not on/off"}},
    {"max_connections negative", "[proxy]\nmax_connections = -1\n" U1,
     {"test.ini:2: max_connections: '-1' is not a whole number between 0 and 1000000"}},
    {"tunnel_timeout 0", U1 "tunnel_timeout = 0\n",
     {"test.ini:3: tunnel_timeout: must be at least 1ms"}},
    {"health_check: words missing", U1 "health_check = GET /healthz\n",
     {"test.ini:3: health_check: 'GET /healthz' is not 'METHOD /path every DURATION expect "
      "STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: a word misspelt", U1 "health_check = GET /h each 5s expect 200\n",
     {"test.ini:3: health_check: 'GET /h each 5s expect 200' is not 'METHOD /path every "
      "DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: a word too many", U1 "health_check = GET /h every 5s expect 200 timeout\n",
     {"test.ini:3: health_check: 'GET /h every 5s expect 200 timeout' is not 'METHOD /path "
      "every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: lowercase method", U1 "health_check = get /h every 5s expect 200\n",
     {"test.ini:3: health_check: method 'get' is not an uppercase method (GET, HEAD)"}},
    {"health_check: relative path", U1 "health_check = GET healthz every 5s expect 200\n",
     {"test.ini:3: health_check: path 'healthz' must start with '/' and hold visible ASCII "
      "only"}},
    {"health_check: a byte beyond ASCII", U1 "health_check = GET /h\xc3\xa9 every 5s expect 200\n",
     {"test.ini:3: health_check: path '/h\xc3\xa9' must start with '/' and hold visible ASCII "
      "only"}},
    {"health_check: bad interval", U1 "health_check = GET /h every 5 s expect 200\n",
     {"test.ini:3: health_check: 'GET /h every 5 s expect 200' is not 'METHOD /path every "
      "DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: zero interval", U1 "health_check = GET /h every 0 expect 200\n",
     {"test.ini:3: health_check: every '0' is not a duration above 0 (e.g. 5s)"}},
    {"health_check: interval too long", U1 "health_check = GET /h every 169h expect 200\n",
     {"test.ini:3: health_check: every must be at most 168h"}},
    {"health_check: status out of range", U1 "health_check = GET /h every 5s expect 600\n",
     {"test.ini:3: health_check: expect '600' is not a status (200) or a class (2xx) between "
      "100 and 599"}},
    {"health_check: status not three digits", U1 "health_check = GET /h every 5s expect 0200\n",
     {"test.ini:3: health_check: expect '0200' is not a status (200) or a class (2xx) between "
      "100 and 599"}},
    {"health_check: not a class", U1 "health_check = GET /h every 5s expect 2x\n",
     {"test.ini:3: health_check: expect '2x' is not a status (200) or a class (2xx) between "
      "100 and 599"}},
    {"health_check: timeout longer than the interval",
     U1 "health_check = GET /h every 1s expect 200 timeout 2s\n",
     {"test.ini:3: health_check: timeout 2s is longer than the interval 1s"}},
    {"health_check: rise 0", U1 "health_check = GET /h every 1s expect 200 rise 0\n",
     {"test.ini:3: health_check: rise '0' is not a whole number between 1 and 100"}},
    {"health_check: fall above the maximum", U1 "health_check = GET /h every 1s expect 200 "
                                                "fall 101\n",
     {"test.ini:3: health_check: fall '101' is not a whole number between 1 and 100"}},
    {"health_check: fall negative", U1 "health_check = GET /h every 1s expect 200 fall -1\n",
     {"test.ini:3: health_check: fall '-1' is not a whole number between 1 and 100"}},
    {"health_check: rise not a number", U1 "health_check = GET /h every 1s expect 200 rise 2x "
                                           "fall 3\n",
     {"test.ini:3: health_check: rise '2x' is not a whole number between 1 and 100"}},
    {"health_check: rise huge", U1 "health_check = GET /h every 1s expect 200 "
                                   "rise 99999999999999999999999\n",
     {"test.ini:3: health_check: rise '99999999999999999999999' is not a whole number between 1 "
      "and 100"}},
    {"health_check: rise twice", U1 "health_check = GET /h every 1s expect 200 rise 2 rise 3\n",
     {"test.ini:3: health_check: rise set twice"}},
    {"health_check: fall twice, apart", U1 "health_check = GET /h every 1s expect 200 fall 2 "
                                           "rise 2 fall 2\n",
     {"test.ini:3: health_check: fall set twice"}},
    {"health_check: timeout twice", U1 "health_check = GET /h every 1s expect 200 timeout 1s "
                                       "timeout 1s\n",
     {"test.ini:3: health_check: timeout set twice"}},
    {"health_check: rise without its number", U1 "health_check = GET /h every 1s expect 200 "
                                                 "fall 2 rise\n",
     {"test.ini:3: health_check: 'GET /h every 1s expect 200 fall 2 rise' is not 'METHOD /path "
      "every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: rise=2 (one word)", U1 "health_check = GET /h every 1s expect 200 rise=2\n",
     {"test.ini:3: health_check: 'GET /h every 1s expect 200 rise=2' is not 'METHOD /path "
      "every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: an unknown option", U1 "health_check = GET /h every 1s expect 200 passes 2\n",
     {"test.ini:3: health_check: 'GET /h every 1s expect 200 passes 2' is not 'METHOD /path "
      "every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: an option before expect", U1 "health_check = GET /h every 1s rise 2 "
                                                 "expect 200\n",
     {"test.ini:3: health_check: 'GET /h every 1s rise 2 expect 200' is not 'METHOD /path "
      "every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: too many words", U1 "health_check = GET /h every 1s expect 200 rise 2 "
                                        "fall 2 timeout 1s rise 2\n",
     {"test.ini:3: health_check: 'GET /h every 1s expect 200 rise 2 fall 2 timeout 1s rise 2' "
      "is not 'METHOD /path every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]'"}},
    {"health_check: timeout after rise still bounded by the interval",
     U1 "health_check = GET /h every 1s expect 200 rise 2 timeout 2s\n",
     {"test.ini:3: health_check: timeout 2s is longer than the interval 1s"}},
    {"health_check set twice", U1 "health_check = GET /a every 1s expect 200\n"
                                  "health_check = GET /b every 1s expect 200\n",
     {"test.ini:4: 'health_check' set twice in this section"}},
    /* sticky: a cookie name is a token; options known, each once; browsers' rules kept */
    {"sticky: not a cookie", U1 "sticky = SRV\n",
     {"test.ini:3: sticky: expected 'cookie NAME [path=P] [domain=D] [max_age=DUR] [httponly] "
      "[secure] [samesite=strict|lax|none]'"}},
    {"sticky: name not a token", U1 "sticky = cookie SR(V)\n",
     {"test.ini:3: sticky: cookie name 'SR(V)' is not a token of 1-63 bytes (letters, digits "
      "and !#$%&'*+-.^_`|~)"}},
    {"sticky: unknown option", U1 "sticky = cookie SRV expires=1h\n",
     {"test.ini:3: sticky: unknown or repeated option 'expires=1h' (expected path=P, domain=D, "
      "max_age=DUR, httponly, secure, samesite=V, each once)"}},
    {"sticky: option twice", U1 "sticky = cookie SRV secure secure\n",
     {"test.ini:3: sticky: unknown or repeated option 'secure' (expected path=P, domain=D, "
      "max_age=DUR, httponly, secure, samesite=V, each once)"}},
    {"sticky: relative path", U1 "sticky = cookie SRV path=app\n",
     {"test.ini:3: sticky: path 'app' does not start with '/', is over 200 bytes, or holds a "
      "space, ';', ',' or control byte"}},
    {"sticky: path past 200 bytes", U1 "sticky = cookie SRV path=/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaa\n",
     {"test.ini:3: sticky: path '/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' does not start with '/', "
      "is over 200 bytes, or holds a space, ';', ',' or control byte"}},
    {"sticky: max_age 0", U1 "sticky = cookie SRV max_age=0\n",
     {"test.ini:3: sticky: max_age '0' is not a duration of 1s to 400d (omit it for a session "
      "cookie)"}},
    {"sticky: max_age past 400 days", U1 "sticky = cookie SRV max_age=401d\n",
     {"test.ini:3: sticky: max_age '401d' is not a duration of 1s to 400d (omit it for a "
      "session cookie)"}},
    {"sticky: samesite unknown", U1 "sticky = cookie SRV samesite=loose\n",
     {"test.ini:3: sticky: samesite 'loose' (expected strict, lax or none)"}},
    {"sticky: samesite=none without secure", U1 "sticky = cookie SRV samesite=none\n",
     {"test.ini:3: sticky: samesite=none needs secure (browsers drop a SameSite=None cookie "
      "without Secure)"}},
    {"sticky: origin value with a quote", "[upstream a]\norigin = sim\norigin = 127.0.0.1:1 cookie=a\"b\n",
     {"test.ini:3: origin: cookie 'a\"b' is not 1-32 letters, digits, '-', '_' or '.'"}},
    {"sticky: two origins, one value",
     "[upstream a]\nsticky = cookie SRV\norigin = 127.0.0.1:1 cookie=x\n"
     "origin = 127.0.0.1:2 cookie=x\n",
     {"test.ini:2: sticky: origins 127.0.0.1:1 and 127.0.0.1:2 have one cookie value 'x'"}},
    {"sticky: one origin listed with two values",
     "[upstream a]\nsticky = cookie SRV\norigin = 127.0.0.1:1\norigin = 127.0.0.1:1 cookie=b\n",
     {"test.ini:2: sticky: origin 127.0.0.1:1 is listed with two cookie values, "
      "'0a3ad7c8f6fee94b' and 'b'"}},
    {"sticky: the cookie of the hash", U1 "balance = hash $cookie_SRV\nsticky = cookie SRV\n",
     {"test.ini:4: sticky: cookie SRV is the key of balance = hash; the sticky cookie is taken "
      "off requests, so the hash would never see it"}},
};

static void test_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(config_error_rows); i++) {
        int n;
        char *errors;
        struct config *cfg = load(config_error_rows[i].text, "/", &n, &errors);
        check_errors(config_error_rows[i].why, errors, n, config_error_rows[i].errors);
        assert_null(cfg);
        free(errors);
    }
}

/* The ring as balance.c places it: origin o's points at the top 32 bits of the hash of
 * "host:port#listing-i", 256 per unit of weight, sorted by where they stand. */
struct ring_spot {
    uint32_t at;
    int origin;
};

static int spot_order(const void *a, const void *c)
{
    const struct ring_spot *pa = a, *pc = c;
    if (pa->at != pc->at)
        return pa->at < pc->at ? -1 : 1;
    return pa->origin - pc->origin;
}

/* A key right on a point goes to that point's origin (the first point at or after it), and one
 * past the last point to the first point's: the circle closes at index 0. A binary search off
 * by one, or a wrap to another index, sends such keys to a neighbour's origin. */
static void test_hash_points_and_wrap(void **state)
{
    (void)state;
    enum { PER_UNIT = 256, N = 4 * PER_UNIT };
    static struct ring_spot ring[N];
    for (int o = 0; o < 4; o++) {
        for (unsigned i = 0; i < PER_UNIT; i++) {
            char name[64];
            int len = snprintf(name, sizeof(name), "%s#0-%u", five[1 + o], i);
            ring[o * PER_UNIT + i] =
                (struct ring_spot){(uint32_t)(hashkey_bytes(name, (size_t)len, 0) >> 32), o};
        }
    }
    qsort(ring, N, sizeof(ring[0]), spot_order);
    struct upstream_conf up;
    make_hash_upstream(&up, 4, five + 1, NULL, 0); /* (five's first four: one origin first twice) */
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    assert_int_equal(balancer_ring_points(b), N);
    for (unsigned j = 0; j < N; j++) {
        int o = balancer_pick_hash(b, 0, (uint64_t)ring[j].at << 32, 0, NULL);
        if (o != ring[j].origin)
            fail_msg("a key on point %u (%08x) went to origin %d, not to its %d", j, ring[j].at,
                     o, ring[j].origin);
        balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
    }
    assert_true(ring[N - 1].at < UINT32_MAX);
    assert_int_not_equal(ring[0].origin, ring[1].origin); /* else index 1 would pass for 0 */
    int o = balancer_pick_hash(b, 0, (uint64_t)(ring[N - 1].at + 1) << 32, 0, NULL);
    assert_int_equal(o, ring[0].origin);
    balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
    balancer_free(b);
}

/* One host:port listed twice (a weight by repetition) is one origin to a retry: the next pick
 * of a key whose first went to either listing is the other host:port, never the same again. */
static void test_hash_retry_leaves_the_host(void **state)
{
    (void)state;
    static const char *const texts[] = {"127.0.0.1:18201", "127.0.0.1:18201",
                                        "127.0.0.1:18202"};
    struct upstream_conf up;
    make_hash_upstream(&up, 3, texts, NULL, 0);
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    for (uint32_t k = 0; k < 200; k++) {
        int first = balancer_pick_hash(b, 0, key_of(k), 0, NULL);
        assert_true(first >= 0);
        balancer_done(b, first, 0, BALANCE_FAILED, 0);
        int next = balancer_pick_hash(b, 0, key_of(k), 1u << first, NULL);
        assert_true(next >= 0);
        if (strcmp(texts[next], texts[first]) == 0)
            fail_msg("key %u: the retry went to %s again (listing %d after %d)", k, texts[next],
                     next, first);
        balancer_done(b, next, 0, BALANCE_ANSWERED, 0);
    }
    balancer_free(b);
}

/* A host:port listed twice weighs twice: its listings' points stand apart (placed by
 * "host:port#listing-i"), so [A, A, B] gives A two thirds of the keys, not the half that one
 * set of points twice over would. */
static void test_hash_listed_twice_weighs_twice(void **state)
{
    (void)state;
    static const char *const texts[] = {"127.0.0.1:18201", "127.0.0.1:18201",
                                        "127.0.0.1:18202"};
    struct upstream_conf up;
    make_hash_upstream(&up, 3, texts, NULL, 0);
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    static const char *where[KEYS];
    place_keys(b, &up, where);
    unsigned a = 0;
    for (uint32_t k = 0; k < KEYS; k++)
        a += strcmp(where[k], texts[0]) == 0;
    print_message("  A listed twice: %u of %u keys\n", a, KEYS);
    if (a < KEYS * 6 / 10 || a > KEYS * 73 / 100)
        fail_msg("A listed twice has %u of %u keys, not about two thirds", a, KEYS);
    balancer_free(b);
}

/* A reload that shortens slow_start: a ramp under way ends by the new one's length from the
 * reload, not at the end the old, longer one gave it. */
static void test_slow_start_inherit_shorter(void **state)
{
    (void)state;
    struct upstream_conf old, up;
    make_upstream(&old, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    old.slow_start_ms = 10000;
    struct balancer *from = balancer_new(&old);
    balancer_check(from, 1, CHECK_FAILING, "test");
    balancer_check(from, 1, CHECK_PASSING, "test");
    int counts[MAXO + 1] = {0};
    count_picks(from, &old, 2, 1000, 0, counts); /* o1's ramp: 1000 to 11000 */
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    up.slow_start_ms = 1000;
    struct balancer *b = balancer_new(&up);
    balancer_inherit(b, from, 1500); /* now to 2500 at most */
    assert_int_equal(balancer_weight_permille(b, 1, 2000), 500);
    assert_int_equal(balancer_weight_permille(b, 1, 2500), 1000);
    balancer_free(b);
    balancer_free(from);
}

/* ---- max_conns and the queue: slots given back, not handed ---- */

/* A balancer of n origins, each at max_conns max, with a queue of max_queue 4. */
static struct balancer *limited_balancer(struct upstream_conf *up, int n, unsigned max,
                                         uint64_t max_fails)
{
    make_upstream(up, n, NULL, BALANCE_ROUND_ROBIN, max_fails);
    for (int o = 0; o < n; o++)
        up->origins[o].max_conns = max;
    up->limited = true;
    up->max_queue = 4;
    struct balancer *b = balancer_new(up);
    assert_non_null(b);
    return b;
}

/* The slot of an attempt that marks its origin down is not handed to a waiter (the verdict
 * comes before the slot), nor one of an origin whose health check fails; a pick while the
 * probe is out claims no slot. Two origins, both full: the waiter has origin 1 left to wait for
 * in each case. */
static void test_queue_slot_not_handed_down(void **state)
{
    (void)state;
    struct upstream_conf up;
    struct balancer *b = limited_balancer(&up, 2, 1, 1);
    struct balance_waiter w = {.wake = wake_record};
    nwoken = 0;
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 1);
    assert_int_equal(balancer_queue(b, &w, 0), BALANCE_ROOM_QUEUED);
    balancer_done(b, 0, 0, BALANCE_FAILED, 0); /* max_fails 1: down */
    assert_int_equal(balancer_origin_state(b, 0), ORIGIN_DOWN);
    assert_int_equal(nwoken, 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    assert_int_equal(balancer_queue_length(b), 1);
    assert_int_equal(balancer_unqueue(b, &w, true), -1);
    balancer_free(b);
    /* a failing health check: the slot goes back, not to the waiter */
    b = limited_balancer(&up, 2, 1, 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 1);
    w = (struct balance_waiter){.wake = wake_record};
    assert_int_equal(balancer_queue(b, &w, 0), BALANCE_ROOM_QUEUED);
    balancer_check(b, 0, CHECK_FAILING, "test");
    balancer_done(b, 0, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(nwoken, 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    assert_int_equal(balancer_unqueue(b, &w, false), -1);
    balancer_free(b);
    /* down_time later: the probe holds one slot of two; the next pick, the probe out, claims
     * none */
    uint64_t probe = 0;
    b = limited_balancer(&up, 1, 2, 1);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    balancer_done(b, 0, 0, BALANCE_FAILED, 0);
    assert_int_equal(balancer_pick(b, 5100, 0, 0, &probe), 0);
    assert_int_equal(balancer_in_flight(b, 0), 1);
    assert_int_equal(balancer_pick(b, 5100, 0, 0, NULL), -1);
    assert_int_equal(balancer_in_flight(b, 0), 1);
    balancer_free(b);
}

/* The room and the handover see every listing of a host:port a waiter tried, a free origin
 * after a full one, and no down origin. */
static void test_queue_room_listings(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 3, NULL, BALANCE_ROUND_ROBIN, 0);
    snprintf(up.origins[1].text, sizeof(up.origins[1].text), "o0"); /* o0 listed twice */
    for (int o = 0; o < 3; o++)
        up.origins[o].max_conns = 1;
    up.limited = true;
    up.max_queue = 4;
    struct balancer *b = balancer_new(&up);
    assert_non_null(b);
    for (int k = 0; k < 3; k++)
        assert_true(balancer_pick(b, 0, 0, 0, NULL) >= 0);
    struct balance_waiter w = {.exclude = 1u << 0, .wake = wake_record}; /* tried o0 */
    nwoken = 0;
    assert_int_equal(balancer_queue(b, &w, 0), BALANCE_ROOM_QUEUED);
    balancer_done(b, 1, 0, BALANCE_ANSWERED, 0); /* o0's second listing: not w's */
    assert_int_equal(nwoken, 0);
    assert_int_equal(balancer_in_flight(b, 1), 0);
    assert_int_equal(balancer_room(b, 0, 0), BALANCE_ROOM_FREE); /* free after a full one */
    assert_int_equal(balancer_room(b, 0, 1u << 0), BALANCE_ROOM_FULL); /* o0 tried: o2 full */
    assert_int_equal(balancer_unqueue(b, &w, false), -1);
    balancer_free(b);
    /* a down origin is no room: full and down is FULL */
    b = limited_balancer(&up, 2, 1, 1);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 1);
    balancer_done(b, 1, 0, BALANCE_FAILED, 0);
    assert_int_equal(balancer_origin_state(b, 1), ORIGIN_DOWN);
    assert_int_equal(balancer_room(b, 0, 0), BALANCE_ROOM_FULL);
    balancer_free(b);
}

/* The counts: a waiter whose client left is no timeout, nor one handed a slot as its timer
 * came; the length is back to 0 and the queue takes waiters again after it emptied; a reload
 * carries both counters. */
static void test_queue_counts(void **state)
{
    (void)state;
    struct upstream_conf up;
    struct balancer *b = limited_balancer(&up, 1, 1, 0);
    struct balance_waiter w[3] = {{.wake = wake_record}, {.wake = wake_record},
                                  {.wake = wake_record}};
    nwoken = 0;
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_queue(b, &w[0], 0), BALANCE_ROOM_QUEUED);
    assert_int_equal(balancer_unqueue(b, &w[0], false), -1); /* its client left */
    assert_int_equal(balancer_queue_timeouts(b), 0);
    assert_int_equal(balancer_queue_length(b), 0);
    /* queued again into the emptied queue: handed the next slot */
    assert_int_equal(balancer_queue(b, &w[1], 0), BALANCE_ROOM_QUEUED);
    balancer_done(b, 0, 0, BALANCE_ANSWERED, 0);
    assert_int_equal(nwoken, 1);
    assert_ptr_equal(woken[0], &w[1]);
    assert_int_equal(balancer_in_flight(b, 0), 1);
    /* its timer came as it was handed the slot: it goes on, no timeout */
    assert_int_equal(balancer_unqueue(b, &w[1], true), 0);
    assert_int_equal(balancer_queue_timeouts(b), 0);
    assert_int_equal(balancer_queue_length(b), 0);
    assert_int_equal(balancer_queue(b, &w[2], 0), BALANCE_ROOM_QUEUED);
    assert_int_equal(balancer_queue_length(b), 1);
    assert_int_equal(balancer_unqueue(b, &w[2], true), -1);
    assert_int_equal(balancer_queue_timeouts(b), 1);
    assert_int_equal(balancer_queued_total(b), 3);
    /* a reload: the new generation's counters go on */
    struct balancer *next = balancer_new(&up);
    assert_non_null(next);
    balancer_inherit_queue(next, b);
    assert_int_equal(balancer_queued_total(next), 3);
    assert_int_equal(balancer_queue_timeouts(next), 1);
    assert_int_equal(balancer_queue_length(next), 0);
    balancer_free(next);
    balancer_release(b, 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    balancer_free(b);
}

/* (qcount) Two generations that share (the same upstream, both with max_conns) count on one
 * tally: the old one's timeout and sticky outcome after the reload are the new one's too, and a
 * second look copies nothing over them (before: a copy at the reload, later counts lost). */
static void test_queue_counts_shared(void **state)
{
    (void)state;
    struct upstream_conf up;
    struct balancer *b = limited_balancer(&up, 1, 1, 0);
    assert_int_equal(balancer_share(b), 0);
    struct balance_waiter w = {.wake = wake_record};
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    struct balancer *next = balancer_new(&up);
    assert_non_null(next);
    assert_int_equal(balancer_share(next), 0);
    balancer_inherit_queue(next, b);
    assert_int_equal(balancer_queue(b, &w, 0), BALANCE_ROOM_QUEUED); /* the old one's waiter */
    assert_int_equal(balancer_unqueue(b, &w, true), -1);
    balancer_sticky_count(b, 0);
    assert_int_equal(balancer_queued_total(next), 1);
    assert_int_equal(balancer_queue_timeouts(next), 1);
    assert_int_equal(balancer_sticky_total(next, 0), 1);
    balancer_inherit_queue(next, b);
    assert_int_equal(balancer_queue_timeouts(next), 1);
    balancer_release(b, 0);
    balancer_free(b);
    balancer_free(next);
}

/* A slot released without a verdict (a tunnel's end, a waiter that left with one) is handed to
 * the oldest waiter as a done one is. */
static void test_queue_release_hands_over(void **state)
{
    (void)state;
    struct upstream_conf up;
    struct balancer *b = limited_balancer(&up, 1, 1, 0);
    struct balance_waiter w = {.wake = wake_record};
    nwoken = 0;
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), 0);
    assert_int_equal(balancer_queue(b, &w, 0), BALANCE_ROOM_QUEUED);
    balancer_release(b, 0);
    assert_int_equal(nwoken, 1);
    assert_ptr_equal(woken[0], &w);
    assert_int_equal(balancer_in_flight(b, 0), 1);
    assert_int_equal(balancer_unqueue(b, &w, false), 0);
    balancer_release(b, 0);
    assert_int_equal(balancer_in_flight(b, 0), 0);
    balancer_free(b);
}

/* One origin with max_conns among others without (and no [upstream] max_conns) makes the
 * upstream limited: the others stay unlimited. */
static void test_config_max_conns_one_origin(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[upstream a]\norigin = 127.0.0.1:1 max_conns=3\n"
                                 "origin = 127.0.0.1:2\n[route ra]\nprefix = /\nupstream = a\n");
    assert_int_equal(cfg->upstreams[0].origins[0].max_conns, 3);
    assert_int_equal(cfg->upstreams[0].origins[1].max_conns, 0);
    assert_true(cfg->upstreams[0].limited);
    cfg_free(cfg);
}

/* ---- retry_budget ---- */

/* The limit follows the upstream's attempts in flight on its origins (each listing's count,
 * summed), a place given back is free again, what a refusal saw is told; a second generation
 * (balancer_share) counts on the first one's retries, and its own given back reach the first;
 * both count their refusals in one count. */
static void test_retry_budget(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    up.name = "retry-budget";
    up.retry_budget = true;
    up.retry_budget_percent = 50;
    up.retry_budget_min = 1;
    struct balancer *b = balancer_new(&up);
    assert_int_equal(balancer_share(b), 0);
    struct retry_budget_use use = {0};
    assert_true(balancer_retry_take(b, &use)); /* nothing in flight: the minimum, 1 */
    assert_false(balancer_retry_take(b, &use));
    assert_int_equal(use.held, 1);
    assert_int_equal(use.limit, 1);
    assert_int_equal(use.in_flight, 0);
    for (int k = 0; k < 6; k++) /* 3 on each origin: 50% of 6 is 3 */
        assert_true(balancer_pick(b, 0, 0, 0, NULL) >= 0);
    assert_true(balancer_retry_take(b, &use));
    assert_true(balancer_retry_take(b, &use));
    assert_false(balancer_retry_take(b, &use));
    assert_int_equal(use.held, 3);
    assert_int_equal(use.limit, 3);
    assert_int_equal(use.percent, 50);
    assert_int_equal(use.in_flight, 6);
    assert_int_equal(balancer_retries_in_flight(b), 3);
    balancer_retry_done(b);
    assert_true(balancer_retry_take(b, &use));

    /* a reload: the new generation sees the 3, and gives back what the old took */
    struct balancer *next = balancer_new(&up);
    assert_int_equal(balancer_share(next), 0);
    assert_int_equal(balancer_retries_in_flight(next), 3);
    assert_false(balancer_retry_take(next, &use)); /* the old one's 6 in flight: 50% is 3 */
    for (int k = 0; k < 3; k++)
        balancer_retry_done(b);
    assert_int_equal(balancer_retries_in_flight(next), 0);
    balancer_retry_refused(b, RETRY_REFUSED_BUDGET);
    balancer_inherit_queue(next, b);
    assert_int_equal(balancer_retry_refused_total(next, RETRY_REFUSED_BUDGET), 1);
    assert_int_equal(balancer_retry_refused_total(next, RETRY_REFUSED_TIMEOUT), 0);
    /* the old generation's refusals after the reload count on (before: lost, a copy's) */
    balancer_retry_refused(b, RETRY_REFUSED_TIMEOUT);
    assert_int_equal(balancer_retry_refused_total(next, RETRY_REFUSED_TIMEOUT), 1);
    balancer_inherit_queue(next, b); /* a second look changes nothing */
    assert_int_equal(balancer_retry_refused_total(next, RETRY_REFUSED_BUDGET), 1);
    for (int o = 0; o < 2; o++)
        for (int k = 0; k < 3; k++)
            balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
    balancer_free(b);
    balancer_free(next);
}

/* Threads taking and giving back places at once never hold more than the limit together. */
struct budget_racer {
    struct balancer *b;
    _Atomic unsigned *held, *most;
};

static void *budget_race(void *arg)
{
    struct budget_racer *r = arg;
    struct retry_budget_use use;
    for (int k = 0; k < 20000; k++) {
        if (!balancer_retry_take(r->b, &use))
            continue;
        unsigned now = atomic_fetch_add(r->held, 1) + 1;
        unsigned most = atomic_load(r->most);
        while (now > most && !atomic_compare_exchange_weak(r->most, &most, now))
            ;
        atomic_fetch_sub(r->held, 1);
        balancer_retry_done(r->b);
    }
    return NULL;
}

static void test_retry_budget_threads(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 1, NULL, BALANCE_ROUND_ROBIN, 0);
    up.retry_budget = true;
    up.retry_budget_min = 2;
    struct balancer *b = balancer_new(&up);
    _Atomic unsigned held = 0, most = 0;
    struct budget_racer r = {b, &held, &most};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, budget_race, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&most) <= 2);
    assert_int_equal(balancer_retries_in_flight(b), 0);
    balancer_free(b);
}

/* ---- the admin API's states (balancer_set_admin, balancer_set_weight) ---- */

/* Each policy leaves a drained or maint origin out of its picks, and takes it again once ready;
 * hash sends its keys to the next point's origin and leaves every other key where it was. */
static void test_admin_out_by_policy(void **state)
{
    (void)state;
    static const enum balance_policy policies[] = {BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN,
                                                   BALANCE_RANDOM_TWO, BALANCE_HASH};
    static const enum origin_admin outs[] = {ORIGIN_ADMIN_DRAIN, ORIGIN_ADMIN_MAINT};
    enum { N = 600, OUT = 1 };
    for (size_t p = 0; p < ARRAY_LEN(policies); p++)
        for (size_t s = 0; s < ARRAY_LEN(outs); s++) {
            struct upstream_conf up;
            if (policies[p] == BALANCE_HASH)
                make_hash_upstream(&up, 3, five, NULL, 0);
            else
                make_upstream(&up, 3, NULL, policies[p], 0);
            struct balancer *b = balancer_new(&up);
            int home[N];
            for (uint32_t k = 0; k < N; k++) {
                home[k] = policies[p] == BALANCE_HASH ? balancer_pick_hash(b, 0, key_of(k), 0,
                                                                           NULL)
                                                      : balancer_pick(b, 0, k * 7919u, 0, NULL);
                balancer_done(b, home[k], 0, BALANCE_ANSWERED, 0);
            }
            assert_int_equal(balancer_set_admin(b, OUT, outs[s], 0), ORIGIN_ADMIN_READY);
            assert_int_equal(balancer_origin_admin(b, OUT), outs[s]);
            assert_int_equal(balancer_admin_out(b), 1u << OUT);
            assert_int_equal(balancer_admin_maint(b), outs[s] == ORIGIN_ADMIN_MAINT ? 1u << OUT
                                                                                      : 0);
            int counts[3] = {0};
            for (uint32_t k = 0; k < N; k++) {
                int o = policies[p] == BALANCE_HASH
                            ? balancer_pick_hash(b, 0, key_of(k), 0, NULL)
                            : balancer_pick(b, 0, k * 7919u, 0, NULL);
                assert_true(o >= 0);
                counts[o]++;
                if (policies[p] == BALANCE_HASH && home[k] != OUT && o != home[k])
                    fail_msg("%s: key %u moved from %d to %d", balance_name(policies[p]), k,
                             home[k], o);
                balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
            }
            if (counts[OUT] || !counts[0] || !counts[2])
                fail_msg("%s, %s: %d %d %d", balance_name(policies[p]),
                         origin_admin_name(outs[s]), counts[0], counts[1], counts[2]);
            /* a retry never takes it either */
            assert_int_equal(balancer_pick(b, 0, 1, 1u << 0, NULL), 2);
            balancer_done(b, 2, 0, BALANCE_ANSWERED, 0);
            assert_int_equal(balancer_set_admin(b, OUT, ORIGIN_ADMIN_READY, 0), outs[s]);
            counts[OUT] = 0;
            for (uint32_t k = 0; k < N; k++) {
                int o = policies[p] == BALANCE_HASH
                            ? balancer_pick_hash(b, 0, key_of(k), 0, NULL)
                            : balancer_pick(b, 0, k * 7919u, 0, NULL);
                counts[o] += o == OUT;
                balancer_done(b, o, 0, BALANCE_ANSWERED, 0);
            }
            assert_true(counts[OUT] > 0);
            balancer_free(b);
        }
}

/* sticky (balancer_pick_origin) still takes a drained origin, never one in maint; the backups
 * take over once every primary is out, and give it back. */
static void test_admin_sticky_and_backups(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 3, NULL, BALANCE_ROUND_ROBIN, 0);
    up.origins[2].backup = true;
    struct balancer *b = balancer_new(&up);
    balancer_set_admin(b, 0, ORIGIN_ADMIN_DRAIN, 0);
    assert_int_equal(balancer_pick_origin(b, 0, 0, 0, NULL), 0);
    balancer_done(b, 0, 0, BALANCE_ANSWERED, 0);
    balancer_set_admin(b, 0, ORIGIN_ADMIN_MAINT, 0);
    assert_int_equal(balancer_pick_origin(b, 0, 0, 0, NULL), BALANCE_PICK_UNUSABLE);
    for (int k = 0; k < 4; k++)
        assert_int_equal(pick_answer(b, (uint64_t)k), 1);
    balancer_set_admin(b, 1, ORIGIN_ADMIN_DRAIN, 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(pick_answer(b, (uint64_t)k), 2); /* the backup */
    /* a sticky client of the backup is taken while the primaries are out */
    assert_int_equal(balancer_pick_origin(b, 0, 2, 0, NULL), 2);
    balancer_done(b, 2, 0, BALANCE_ANSWERED, 0);
    balancer_set_admin(b, 1, ORIGIN_ADMIN_READY, 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(pick_answer(b, (uint64_t)k), 1);
    /* every origin out: none */
    balancer_set_admin(b, 1, ORIGIN_ADMIN_MAINT, 0);
    balancer_set_admin(b, 2, ORIGIN_ADMIN_DRAIN, 0);
    assert_int_equal(balancer_pick(b, 0, 0, 0, NULL), -1);
    balancer_free(b);
}

/* A weight set at run time: 3 to 1 splits round robin 3:1 (the cycle is the configured 1:1),
 * least_conn and random_two by weight too; 0 takes the origin out as drain; hash takes 0 or
 * the configured weight only. */
static void test_admin_weight(void **state)
{
    (void)state;
    static const struct {
        enum balance_policy policy;
        int picks, lo, hi; /* origin 0's share of picks after weight 3 */
    } rows[] = {
        {BALANCE_ROUND_ROBIN, 400, 299, 301},
        {BALANCE_RANDOM_TWO, 4000, 2000, 3400}, /* two draws: the busier rarely loses */
    };
    for (size_t r = 0; r < ARRAY_LEN(rows); r++) {
        struct upstream_conf up;
        make_upstream(&up, 2, NULL, rows[r].policy, 0);
        struct balancer *b = balancer_new(&up);
        assert_int_equal(balancer_set_weight(b, 0, 3, 0), 0);
        assert_int_equal(balancer_weight(b, 0), 3);
        int n0 = 0;
        for (int k = 0; k < rows[r].picks; k++) {
            uint64_t rnd = (uint64_t)k * 0x9E3779B97F4A7C15u;
            n0 += pick_answer(b, rnd ^ (rnd >> 29)) == 0;
        }
        if (n0 < rows[r].lo || n0 > rows[r].hi)
            fail_msg("%s: origin 0 took %d of %d", balance_name(rows[r].policy), n0,
                     rows[r].picks);
        assert_int_equal(balancer_set_weight(b, 1, 0, 0), 0);
        assert_int_equal(balancer_admin_out(b), 2u);
        for (int k = 0; k < 10; k++)
            assert_int_equal(pick_answer(b, (uint64_t)k), 0);
        assert_int_equal(balancer_set_weight(b, 1, 101, 0), -1);
        balancer_free(b);
    }
    struct upstream_conf up;
    make_hash_upstream(&up, 2, five, NULL, 0);
    struct balancer *b = balancer_new(&up);
    assert_int_equal(balancer_set_weight(b, 0, 5, 0), -1);
    assert_int_equal(balancer_set_weight(b, 0, 0, 0), 0);
    assert_int_equal(balancer_set_weight(b, 0, 1, 0), 0);
    balancer_free(b);
}

/* max_conns: a drained origin's freed slot goes to a sticky waiter (pinned) only; maint on
 * every origin wakes the waiters with none (no_healthy_origin, or a sticky one redispatched). */
static void test_admin_queue(void **state)
{
    (void)state;
    struct upstream_conf up;
    make_upstream(&up, 2, NULL, BALANCE_ROUND_ROBIN, 0);
    up.origins[0].max_conns = 1;
    up.origins[1].max_conns = 1;
    up.limited = true;
    up.max_queue = 4;
    struct balancer *b = balancer_new(&up);
    int a = balancer_pick(b, 0, 0, 0, NULL), c = balancer_pick(b, 0, 0, 0, NULL);
    assert_true(a >= 0 && c >= 0 && a != c);
    struct balance_waiter w[2] = {
        {.wake = wake_record},
        {.exclude = 1u << 1, .pinned = true, .wake = wake_record}, /* sticky to origin 0 */
    };
    nwoken = 0;
    for (int k = 0; k < 2; k++)
        assert_int_equal(balancer_queue(b, &w[k], 0), BALANCE_ROOM_QUEUED);
    balancer_set_admin(b, 0, ORIGIN_ADMIN_DRAIN, 0);
    assert_int_equal(nwoken, 0);
    balancer_done(b, 0, 0, BALANCE_ANSWERED, 0); /* past w[0], to the sticky w[1] */
    assert_int_equal(nwoken, 1);
    assert_ptr_equal(woken[0], &w[1]);
    assert_int_equal(w[1].origin, 0);
    balancer_release(b, 0);
    balancer_set_admin(b, 1, ORIGIN_ADMIN_MAINT, 0); /* w[0]: nothing left */
    assert_int_equal(nwoken, 2);
    assert_ptr_equal(woken[1], &w[0]);
    assert_int_equal(w[0].origin, -1);
    assert_int_equal(balancer_queue_length(b), 0);
    balancer_release(b, 1);
    balancer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_spread),
        cmocka_unit_test(test_admin_out_by_policy),
        cmocka_unit_test(test_admin_sticky_and_backups),
        cmocka_unit_test(test_admin_weight),
        cmocka_unit_test(test_admin_queue),
        cmocka_unit_test(test_retry_budget),
        cmocka_unit_test(test_retry_budget_threads),
        cmocka_unit_test(test_round_robin_smooth),
        cmocka_unit_test(test_round_robin_skips),
        cmocka_unit_test(test_retry_takes_no_turn),
        cmocka_unit_test(test_least_conn),
        cmocka_unit_test(test_random_two),
        cmocka_unit_test(test_picks_racing_checks),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_inherit),
        cmocka_unit_test(test_rise_fall),
        cmocka_unit_test(test_inherit_run),
        cmocka_unit_test(test_in_flight),
        cmocka_unit_test(test_hash_evenness),
        cmocka_unit_test(test_hash_movement),
        cmocka_unit_test(test_hash_weight_movement),
        cmocka_unit_test(test_hash_ring_cap),
        cmocka_unit_test(test_hash_skip_down),
        cmocka_unit_test(test_hash_retry_next),
        cmocka_unit_test(test_backup),
        cmocka_unit_test(test_backup_probe),
        cmocka_unit_test(test_slow_start),
        cmocka_unit_test(test_slow_start_least_busy),
        cmocka_unit_test(test_slow_start_passive),
        cmocka_unit_test(test_slow_start_inherit),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_rise_fall),
        cmocka_unit_test(test_max_conns_gate),
        cmocka_unit_test(test_queue_handoff),
        cmocka_unit_test(test_shared_counts),
        cmocka_unit_test(test_shared_counts_identity),
        cmocka_unit_test(test_shared_counts_leave_order),
        cmocka_unit_test(test_config_max_conns),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_pick_origin),
        cmocka_unit_test(test_hash_points_and_wrap),
        cmocka_unit_test(test_hash_retry_leaves_the_host),
        cmocka_unit_test(test_hash_listed_twice_weighs_twice),
        cmocka_unit_test(test_slow_start_inherit_shorter),
        cmocka_unit_test(test_queue_slot_not_handed_down),
        cmocka_unit_test(test_queue_room_listings),
        cmocka_unit_test(test_queue_counts),
        cmocka_unit_test(test_queue_counts_shared),
        cmocka_unit_test(test_queue_release_hands_over),
        cmocka_unit_test(test_config_max_conns_one_origin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
