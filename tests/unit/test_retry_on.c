/*
 * test_retry_on.c — the `retry_on` list (retry_on.h): what parses into which mask and what is
 * refused with which reason, which statuses a mask lists, which of them count toward max_fails
 * (all but 403 and 404), and the text of a mask.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/retry_on.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Each value: parsed (its text back, listed and unlisted statuses), or refused (the reason's
 * start). */
static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *text; /* NULL: refused */
        const char *why;  /* the refusal's start */
    } rows[] = {
        {"", "", NULL},                                /* none: today's relay */
        {"503", "503", NULL},
        {"504 502\t503", "502 503 504", NULL},         /* any order, blanks or tabs */
        {"  429  ", "429", NULL},
        {"401 403 404 408 425 429 500 501 502 503 504", RETRY_ON_ALLOWED, NULL}, /* all of them */
        {"302", NULL, "302 is not an error status"},   /* a redirect is no failure */
        {"100", NULL, "100 is not an error status"},
        {"399", NULL, "399 is not an error status"},   /* the bounds of the error statuses */
        {"400", NULL, "400 cannot be retried on"},
        {"200 503", NULL, "200 is not an error status"},
        {"418", NULL, "418 cannot be retried on"},     /* not in HAProxy's set */
        {"600", NULL, "600 cannot be retried on"},
        {"5xx", NULL, "'5xx' is not a status code"},   /* Envoy's class: spelled out here */
        {"http_503", NULL, "'http_503' is not a status code"}, /* nginx's word */
        {"5030", NULL, "'5030' is not a status code"},
        {"050", NULL, "'050' is not a status code"},
        {"503,504", NULL, "'503,504' is not a status code"},
        {"503 503", NULL, "503 is listed twice"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        uint16_t mask = 0xffff;
        char why[256] = "", text[128];
        int rc = retry_on_parse(rows[i].value, &mask, why, sizeof(why));
        if (rows[i].text) {
            if (rc != 0)
                fail_msg("'%s': refused: %s", rows[i].value, why);
            assert_string_equal(retry_on_text(mask, text, sizeof(text)), rows[i].text);
        } else {
            if (rc == 0)
                fail_msg("'%s': accepted", rows[i].value);
            if (strncmp(why, rows[i].why, strlen(rows[i].why)) != 0)
                fail_msg("'%s': \"%s\", want \"%s...\"", rows[i].value, why, rows[i].why);
            assert_int_equal(mask, 0xffff); /* untouched */
        }
    }
}

/* Which statuses a mask lists, and which of the listed count toward max_fails. */
static void test_listed_and_counted(void **state)
{
    (void)state;
    uint16_t mask;
    char why[256];
    assert_int_equal(retry_on_parse("404 502 503", &mask, why, sizeof(why)), 0);
    static const struct {
        int status;
        int listed;
        int counts;
    } rows[] = {
        {503, 1, 1}, {502, 1, 1}, {404, 1, 0}, /* the origin is up: it lacks the page */
        {504, 0, 1}, {403, 0, 0}, {200, 0, 0}, {0, 0, 0}, {-1, 0, 0}, {599, 0, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        assert_int_equal(retry_on_listed(mask, rows[i].status), rows[i].listed);
        assert_int_equal(retry_on_counts(rows[i].status), rows[i].counts);
    }
    assert_false(retry_on_listed(0, 503)); /* no list: nothing */
    /* the list's first status (the mask's bit 0) and its last */
    assert_int_equal(retry_on_parse("401 504", &mask, why, sizeof(why)), 0);
    assert_true(retry_on_listed(mask, 401));
    assert_true(retry_on_listed(mask, 504));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_listed_and_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
