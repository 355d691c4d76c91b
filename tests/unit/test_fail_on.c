/*
 * test_fail_on.c — the `fail_on` list (fail_on.h): what parses into which mask (retry_on.h's
 * layout, so retry_on_listed tests it) and what is refused with which reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/fail_on.h"
#include "portico/retry_on.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Each value: parsed (its text back), or refused (the reason's start, the mask untouched). */
static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *text; /* NULL: refused */
        const char *why;  /* the refusal's start */
    } rows[] = {
        {"", "", NULL}, /* none: today's relay, nothing counted */
        {"500", "500", NULL},
        {"504 502\t503 500", "500 502 503 504", NULL}, /* any order, blanks or tabs */
        {"  503  ", "503", NULL},
        {FAIL_ON_ALLOWED, FAIL_ON_ALLOWED, NULL},       /* all of them */
        {"404", NULL, "404 is the client's error, not the origin's"}, /* a client could */
        {"429", NULL, "429 is the client's error"},     /* ... take origins down with it */
        {"408", NULL, "408 is the client's error"},
        {"501", NULL, "501 answers the request's method"},       /* HAProxy leaves it out */
        {"505", NULL, "505 answers the request's HTTP version"}, /* ... and this one */
        {"507", NULL, "507 cannot be counted"},
        {"600", NULL, "600 cannot be counted"},
        {"302", NULL, "302 is not an error status"},
        {"200 500", NULL, "200 is not an error status"},
        {"5xx", NULL, "'5xx' is not a status code"},
        {"http_500", NULL, "'http_500' is not a status code"},
        {"5000", NULL, "'5000' is not a status code"},
        {"050", NULL, "'050' is not a status code"},
        {"500,503", NULL, "'500,503' is not a status code"},
        {"500 500", NULL, "500 is listed twice"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        uint16_t mask = 0xffff;
        char why[256] = "", text[128];
        int rc = fail_on_parse(rows[i].value, &mask, why, sizeof(why));
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

/* A fail_on mask is tested as a retry_on one: the same bits for the same statuses. */
static void test_same_bits(void **state)
{
    (void)state;
    uint16_t fail, retry;
    char why[256];
    assert_int_equal(fail_on_parse("502 503", &fail, why, sizeof(why)), 0);
    assert_int_equal(retry_on_parse("502 503", &retry, why, sizeof(why)), 0);
    assert_int_equal(fail, retry);
    assert_true(retry_on_listed(fail, 503));
    assert_false(retry_on_listed(fail, 500));
    assert_int_equal(retry_on_bit(418), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
