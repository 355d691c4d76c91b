/*
 * test_retry_budget.c — the arithmetic and the words of `retry_budget` and `retry_timeout`
 * (retry_budget.h): the limit of retries in flight (a share of the requests rounded down, never
 * under the minimum, no wrap at the top), what parses and what is refused, the reasons' text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/retry_budget.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_limit(void **state)
{
    (void)state;
    static const struct {
        unsigned percent, min, in_flight, want;
    } rows[] = {
        {20, 3, 0, 3},            /* nothing in flight: the minimum */
        {20, 3, 1, 3},            /* a lone request may retry */
        {20, 3, 12, 3},           /* 20% of 12 is 2.4: the minimum is more */
        {20, 3, 20, 4},           /* 20% of 20 */
        {20, 3, 24, 4},           /* 4.8 rounded down */
        {20, 3, 25, 5},
        {20, 0, 4, 0},            /* 0.8 rounded down, no minimum: none */
        {0, 3, 1000, 3},          /* 0%: the minimum alone */
        {0, 0, 1000, 0},
        {100, 0, 7, 7},           /* every request may be on a retry */
        {100, 0, 4294967295u, 4294967295u}, /* no wrap */
        {50, 4294967295u, 10, 4294967295u},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        unsigned got = retry_budget_limit(rows[i].percent, rows[i].min, rows[i].in_flight);
        if (got != rows[i].want)
            fail_msg("%u%% min %u of %u: %u, want %u", rows[i].percent, rows[i].min,
                     rows[i].in_flight, got, rows[i].want);
    }
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        bool on;
        unsigned percent;
    } rows[] = {
        {"20%", 0, true, 20},   {"20", 0, true, 20},   {"0%", 0, true, 0},
        {"100%", 0, true, 100}, {"off", 0, false, 0},  {"007%", 0, true, 7},
        {"101%", -1, false, 0}, {"1000", -1, false, 0}, {"20.5%", -1, false, 0},
        {"-1%", -1, false, 0},  {"%", -1, false, 0},   {"", -1, false, 0},
        {"20%%", -1, false, 0}, {"20 %", -1, false, 0}, {"on", -1, false, 0},
        {"0020%", -1, false, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        bool on = !rows[i].on;
        uint8_t percent = 99;
        char why[128] = "";
        int rc = retry_budget_parse(rows[i].text, &on, &percent, why, sizeof(why));
        if (rc != rows[i].rc)
            fail_msg("'%s': %d, want %d (%s)", rows[i].text, rc, rows[i].rc, why);
        if (rc == 0 && (on != rows[i].on || percent != rows[i].percent))
            fail_msg("'%s': on %d %u%%, want on %d %u%%", rows[i].text, on, percent, rows[i].on,
                     rows[i].percent);
        if (rc != 0 && !strstr(why, "is not a whole percentage from 0% to 100% (or off)"))
            fail_msg("'%s': reason %s", rows[i].text, why);
    }
}

static void test_why(void **state)
{
    (void)state;
    char buf[128];
    struct retry_budget_use u = {.held = 3, .limit = 3, .percent = 20, .in_flight = 12};
    assert_string_equal(retry_budget_why(&u, buf, sizeof(buf)),
                        "retry budget (3 of 3 retries in flight; 20% of 12 requests)");
    assert_string_equal(retry_timeout_why(2000, buf, sizeof(buf)), "retry_timeout 2 s passed");
    assert_string_equal(retry_timeout_why(1500, buf, sizeof(buf)),
                        "retry_timeout 1500 ms passed");
    assert_string_equal(retry_timeout_why(200, buf, sizeof(buf)), "retry_timeout 200 ms passed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
