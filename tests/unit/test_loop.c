/*
 * test_loop.c — request ids (loop_request_id): the worker's salt and number, then a counter wide
 * enough never to repeat within a worker's life.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/loop.h"
#include "portico/request.h"

/* The ids of requests n+1 of two workers' counters far apart must differ: the counter was cut to
 * 28 bits, so request 2^28 + 1 of a worker had the id of its first (hours at full load). */
static void test_request_id_never_repeats(void **state)
{
    (void)state;
    struct loop l = {.id_salt = 0x5bc4ab41, .id = 3};
    char first[48], later[48];
    loop_request_id(&l, first, sizeof(first));
    static const uint64_t counts[] = {1ull << 28, 1ull << 32, 1ull << 40, (1ull << 48) - 2};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        l.next_request = counts[i];
        loop_request_id(&l, later, sizeof(later));
        if (strcmp(first, later) == 0)
            fail_msg("request %llu has the id of the first: %s",
                     (unsigned long long)counts[i] + 1, later);
        assert_true(request_id_valid(later, strlen(later)));
    }
    assert_string_equal(first, "5bc4ab4103000000000001");
    /* cut to the caller's buffer, always terminated */
    char small[5];
    loop_request_id(&l, small, sizeof(small));
    assert_string_equal(small, "5bc4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_id_never_repeats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
