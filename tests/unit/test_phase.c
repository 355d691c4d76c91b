/*
 * test_phase.c — the phase machine driven without sockets: every run of an exchange as a
 * sequence of (time, step) rows, and the timings, Server-Timing, deadlines and failure phases
 * that come out of it. Time is passed in (µs); nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/phase.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Rows count time from 0; the clock of a real exchange never reads 0 (it means "never"). */
#define T(us) ((uint64_t)(us) + 1000000)

enum step_kind { ENTER, RESUME, CLOSE, NEXT, END };

struct step {
    uint64_t at;            /* µs */
    enum step_kind kind;
    enum phase phase;
};

/* One exchange: the steps, then the timings phase_timings must report at `now`. */
struct run_row {
    const char *why;
    struct step steps[12];
    uint64_t now;
    struct phase_timing want[8];
    size_t nwant;
    enum phase current;
};

static const struct run_row runs[] = {
    {"fresh connection, plain: every upstream phase once, in order",
     {{0, ENTER, PHASE_ROUTE}, {100, ENTER, PHASE_DNS}, {400, ENTER, PHASE_CONNECT},
      {1400, ENTER, PHASE_SEND}, {1500, ENTER, PHASE_FIRST_BYTE}, {9500, ENTER, PHASE_READ},
      {9700, CLOSE, PHASE_READ}, {0, END, 0}},
     20000,
     {{PHASE_DNS, 300}, {PHASE_CONNECT, 1000}, {PHASE_SEND, 100}, {PHASE_FIRST_BYTE, 8000},
      {PHASE_READ, 200}},
     5, PHASE_READ},
    {"pooled connection: no dns/connect/tls; a phase still open counts up to now",
     {{0, ENTER, PHASE_ROUTE}, {50, ENTER, PHASE_SEND}, {80, ENTER, PHASE_FIRST_BYTE},
      {0, END, 0}},
     1080,
     {{PHASE_SEND, 30}, {PHASE_FIRST_BYTE, 1000}},
     2, PHASE_FIRST_BYTE},
    {"a 103 while waiting: first_byte resumes and keeps its start; read measures its last run",
     {{0, ENTER, PHASE_SEND}, {10, ENTER, PHASE_FIRST_BYTE}, {110, ENTER, PHASE_READ},
      {120, RESUME, PHASE_FIRST_BYTE}, {620, ENTER, PHASE_READ}, {650, CLOSE, PHASE_READ},
      {0, END, 0}},
     5000,
     {{PHASE_SEND, 10}, {PHASE_FIRST_BYTE, 610}, {PHASE_READ, 30}},
     3, PHASE_READ},
    {"a 103 read slowly, then no final head: its time is first_byte's, not a read of its own",
     {{0, ENTER, PHASE_SEND}, {10, ENTER, PHASE_FIRST_BYTE}, {110, ENTER, PHASE_READ},
      {410, RESUME, PHASE_FIRST_BYTE}, {1010, CLOSE, PHASE_FIRST_BYTE}, {0, END, 0}},
     2000,
     {{PHASE_SEND, 10}, {PHASE_FIRST_BYTE, 1000}},
     2, PHASE_FIRST_BYTE},
    {"a 100 while the body goes out: send resumes, then the wait starts",
     {{0, ENTER, PHASE_SEND}, {200, ENTER, PHASE_READ}, {210, RESUME, PHASE_SEND},
      {1210, CLOSE, PHASE_SEND}, {1210, RESUME, PHASE_FIRST_BYTE}, {1300, ENTER, PHASE_READ},
      {1310, CLOSE, PHASE_READ}, {0, END, 0}},
     9999,
     {{PHASE_SEND, 1210}, {PHASE_FIRST_BYTE, 90}, {PHASE_READ, 10}},
     3, PHASE_READ},
    {"a 103 read slowly, then the wait times out: the read is first_byte's time, not more",
     {{0, ENTER, PHASE_SEND}, {10, ENTER, PHASE_FIRST_BYTE}, {110, ENTER, PHASE_READ},
      {310, RESUME, PHASE_FIRST_BYTE}, {810, CLOSE, PHASE_FIRST_BYTE}, {0, END, 0}},
     810,
     {{PHASE_SEND, 10}, {PHASE_FIRST_BYTE, 800}},
     2, PHASE_FIRST_BYTE},
    {"another origin after a connect timeout (retries): the two connects add up",
     {{0, ENTER, PHASE_ROUTE}, {10, ENTER, PHASE_CONNECT}, {260, NEXT, 0},
      {270, ENTER, PHASE_CONNECT}, {280, ENTER, PHASE_SEND}, {290, ENTER, PHASE_FIRST_BYTE},
      {390, CLOSE, PHASE_FIRST_BYTE}, {0, END, 0}},
     390,
     {{PHASE_CONNECT, 260}, {PHASE_SEND, 10}, {PHASE_FIRST_BYTE, 100}},
     3, PHASE_FIRST_BYTE},
    {"a resend on a fresh connection after a dead pooled one: both sends and waits count",
     {{0, ENTER, PHASE_SEND}, {5, ENTER, PHASE_FIRST_BYTE}, {50, NEXT, 0},
      {60, ENTER, PHASE_CONNECT}, {70, ENTER, PHASE_SEND}, {75, ENTER, PHASE_FIRST_BYTE},
      {175, CLOSE, PHASE_FIRST_BYTE}, {0, END, 0}},
     175,
     {{PHASE_CONNECT, 10}, {PHASE_SEND, 10}, {PHASE_FIRST_BYTE, 145}},
     3, PHASE_FIRST_BYTE},
    {"a phase only an earlier attempt walked, in no time, is still reported",
     {{0, ENTER, PHASE_CONNECT}, {0, NEXT, 0}, {10, ENTER, PHASE_SEND},
      {20, ENTER, PHASE_FIRST_BYTE}, {30, CLOSE, PHASE_FIRST_BYTE}, {0, END, 0}},
     30,
     {{PHASE_CONNECT, 0}, {PHASE_SEND, 10}, {PHASE_FIRST_BYTE, 10}},
     3, PHASE_FIRST_BYTE},
    {"(fixes19) an attempt left after its head began (a retry_on status): its read counts as "
     "first_byte, body is the answering attempt's own",
     {{0, ENTER, PHASE_CONNECT}, {10, ENTER, PHASE_SEND}, {20, ENTER, PHASE_FIRST_BYTE},
      {30, ENTER, PHASE_READ}, {330, NEXT, 0}, {330, ENTER, PHASE_CONNECT},
      {340, ENTER, PHASE_SEND}, {350, ENTER, PHASE_FIRST_BYTE}, {360, ENTER, PHASE_READ},
      {365, CLOSE, PHASE_READ}, {0, END, 0}},
     365,
     {{PHASE_CONNECT, 20}, {PHASE_SEND, 20}, {PHASE_FIRST_BYTE, 320}, {PHASE_READ, 5}},
     4, PHASE_READ},
    {"a clock that steps back never gives a negative duration",
     {{1000, ENTER, PHASE_CONNECT}, {900, CLOSE, PHASE_CONNECT}, {0, END, 0}},
     2000,
     {{PHASE_CONNECT, 0}},
     1, PHASE_CONNECT},
};

static void drive(struct phase_clock *pc, const struct step *steps)
{
    for (const struct step *s = steps; s->kind != END; s++) {
        switch (s->kind) {
        case ENTER:
            phase_enter(pc, s->phase, T(s->at));
            break;
        case RESUME:
            phase_resume(pc, s->phase, T(s->at));
            break;
        case CLOSE:
            phase_close(pc, T(s->at));
            break;
        case NEXT:
            phase_next_attempt(pc, T(s->at));
            break;
        case END:
            break;
        }
    }
}

static void test_runs(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(runs); i++) {
        const struct run_row *r = &runs[i];
        struct phase_clock pc = {0};
        drive(&pc, r->steps);
        struct phase_timing got[PHASE_COUNT];
        size_t n = phase_timings(&pc, T(r->now), got, PHASE_COUNT);
        if (n != r->nwant)
            fail_msg("%s: %zu timings, want %zu", r->why, n, r->nwant);
        uint64_t sum = 0;
        for (size_t k = 0; k < n; k++) {
            if (got[k].phase != r->want[k].phase || got[k].us != r->want[k].us)
                fail_msg("%s: #%zu %s %llu us, want %s %llu us", r->why, k,
                         phase_name(got[k].phase), (unsigned long long)got[k].us,
                         phase_name(r->want[k].phase), (unsigned long long)r->want[k].us);
            sum += got[k].us;
        }
        assert_int_equal(pc.current, r->current);
        /* the phases never add up to more than the exchange lasted */
        assert_true(sum <= r->now);
    }
}

/* Each phase row names its timer: the limit comes from the upstream's timers by that name. */
static void test_limits(void **state)
{
    (void)state;
    uint64_t timers[TIMER_COUNT] = {
        [TIMER_DNS] = 1, [TIMER_CONNECT] = 2, [TIMER_TLS] = 3, [TIMER_SEND] = 4,
        [TIMER_FIRST_BYTE] = 5, [TIMER_READ] = 6, [TIMER_TOTAL] = 7,
    };
    static const struct {
        enum phase p;
        uint64_t limit;
    } rows[] = {
        {PHASE_CLIENT_HEADER, 0}, /* the client's timers are not the upstream's */
        {PHASE_ROUTE, 0},         /* choosing an origin is not timed */
        {PHASE_DNS, 1},
        {PHASE_CONNECT, 2},
        {PHASE_TLS, 3},
        {PHASE_SEND, 4},
        {PHASE_FIRST_BYTE, 5},
        {PHASE_READ, 6},
        {PHASE_DONE, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        if (phase_limit_ms(timers, rows[i].p) != rows[i].limit)
            fail_msg("%s: limit %llu, want %llu", phase_name(rows[i].p),
                     (unsigned long long)phase_limit_ms(timers, rows[i].p),
                     (unsigned long long)rows[i].limit);
    assert_int_equal(phase_timer((enum phase)PHASE_COUNT), TIMER_NONE);
}

/* The timeout message of each timed phase names the right subject and the limit. */
static void test_timeout_details(void **state)
{
    (void)state;
    static const struct {
        enum phase p;
        const char *subject;
        const char *want;
    } rows[] = {
        {PHASE_DNS, "api.internal", "resolving api.internal exceeded 250 ms"},
        {PHASE_CONNECT, "127.0.0.1:3000", "connect to 127.0.0.1:3000 exceeded 250 ms"},
        {PHASE_TLS, "127.0.0.1:3000", "TLS handshake with 127.0.0.1:3000 exceeded 250 ms"},
        {PHASE_SEND, "127.0.0.1:3000", "127.0.0.1:3000 took no request bytes for 250 ms"},
        {PHASE_FIRST_BYTE, "127.0.0.1:3000",
         "no response from 127.0.0.1:3000 within 250 ms of the request"},
        {PHASE_READ, "127.0.0.1:3000",
         "127.0.0.1:3000 sent nothing for 250 ms while sending the response"},
        {PHASE_ROUTE, NULL, "route timed out after 250 ms"}, /* no row message: generic */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char buf[200];
        size_t n = phase_timeout_detail(rows[i].p, rows[i].subject, 250, buf, sizeof(buf));
        assert_string_equal(buf, rows[i].want);
        assert_int_equal(n, strlen(rows[i].want));
    }
    assert_int_equal(phase_subject(PHASE_DNS), SUBJECT_HOST);
    assert_int_equal(phase_subject(PHASE_READ), SUBJECT_ORIGIN);
    char tiny[8];
    assert_int_equal(phase_timeout_detail(PHASE_CONNECT, "x", 1, tiny, sizeof(tiny)), 7);
}

/* The same EOF belongs to different phases depending on how far the request got. */
static void test_io_failure_phase(void **state)
{
    (void)state;
    static const struct {
        enum phase current;
        bool sent, byte;
        enum phase want;
        const char *why;
    } rows[] = {
        {PHASE_SEND, false, false, PHASE_SEND, "request still going out"},
        {PHASE_SEND, true, false, PHASE_FIRST_BYTE, "in the kernel, write callback not run"},
        {PHASE_FIRST_BYTE, true, false, PHASE_FIRST_BYTE, "waiting"},
        {PHASE_FIRST_BYTE, true, true, PHASE_READ, "after a 1xx: the final head is incomplete"},
        {PHASE_READ, true, true, PHASE_READ, "head bytes arrived"},
        {PHASE_TLS, false, false, PHASE_SEND, "not a response phase, nothing seen"},
        {PHASE_DONE, true, true, PHASE_READ, "not a response phase, bytes seen"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        if (phase_of_io_failure(rows[i].current, rows[i].sent, rows[i].byte) != rows[i].want)
            fail_msg("%s", rows[i].why);
}

/* An origin may not stretch first_byte_timeout forever with 1xx unless configured to. */
static void test_first_byte_deadline(void **state)
{
    (void)state;
    /* first wait: limit from now */
    assert_int_equal(phase_first_byte_deadline(0, 1000, 5, false), 6000);
    /* a 1xx at 4000 µs keeps the running deadline ... */
    assert_int_equal(phase_first_byte_deadline(6000, 4000, 5, false), 6000);
    /* ... unless interim responses reset the timer */
    assert_int_equal(phase_first_byte_deadline(6000, 4000, 5, true), 9000);
}

/* Server-Timing: every upstream phase entered, route only when it failed, ;desc on the failed
 * one, durations in ms with one decimal, rounded. */
static void test_server_timing(void **state)
{
    (void)state;
    struct phase_clock pc = {0};
    phase_enter(&pc, PHASE_ROUTE, T(0));
    phase_enter(&pc, PHASE_CONNECT, T(100));
    phase_close(&pc, T(1000250));
    char buf[256];
    phase_server_timing(&pc, T(2000000), PHASE_CONNECT, CAUSE_TIMEOUT, buf, sizeof(buf));
    assert_string_equal(buf, "connect;dur=1000.2;desc=\"timeout\"");
    phase_server_timing(&pc, T(2000000), PHASE_DONE, CAUSE_NONE, buf, sizeof(buf));
    assert_string_equal(buf, "connect;dur=1000.2");

    struct phase_clock down = {0};
    phase_enter(&down, PHASE_ROUTE, T(0));
    phase_close(&down, T(40));
    phase_server_timing(&down, T(40), PHASE_ROUTE, CAUSE_NO_ORIGIN, buf, sizeof(buf));
    assert_string_equal(buf, "route;dur=0.0;desc=\"no healthy origin\"");

    char small[12];
    phase_server_timing(&pc, T(0), PHASE_CONNECT, CAUSE_TIMEOUT, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1); /* truncated, still terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_timeout_details),
        cmocka_unit_test(test_io_failure_phase),
        cmocka_unit_test(test_first_byte_deadline),
        cmocka_unit_test(test_server_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
