/*
 * test_metrics_alloc.c — a retired worker's shard whose labelled rows could not all be copied
 * (out of memory) loses those rows and nothing else: every later scrape still answers, and the
 * rows kept, and those added later, keep their counts. The binary is linked with
 * -Wl,--wrap=strdup (see the Makefile), so that the copy of a row's name can be made to fail.
 */
#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/metrics.h"

/* ---- the allocator wrapper ---- */

char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s);

static long fail_at = -1; /* the strdup (from 0, counted since arm) that fails; -1: none */
static long count;

char *__wrap_strdup(const char *s)
{
    return count++ == fail_at ? NULL : __real_strdup(s);
}

static void arm(long at)
{
    fail_at = at;
    count = 0;
}

/* ---- helpers ---- */

/* The exposition, NUL-terminated, malloc'd; *rc: what metrics_render returned. */
static char *render(int *rc)
{
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    *rc = metrics_render(out, NULL);
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    assert_non_null(text);
    evbuffer_remove(out, text, n);
    text[n] = '\0';
    evbuffer_free(out);
    return text;
}

/* The value of one series as written, -1 when absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* A shard with routes prefix0 .. prefix(n-1), one 200 counted on each, and 1 connection. */
static struct metrics *shard_with_routes(const char *prefix, int n, char names[][16])
{
    const char *routes[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], 16, "%s%d", prefix, i);
        routes[i] = names[i];
    }
    struct metrics_labels l = {routes, n, NULL, 0, NULL, 0, NULL, 0};
    struct metrics *m = metrics_shard_create(&l);
    assert_non_null(m);
    for (int i = 0; i < n; i++)
        metrics_request_done(m, &(struct metrics_sample){i, -1, 200, FAIL_NONE, NULL});
    metrics_add(m, M_CONNECTIONS, 1);
    return m;
}

static double route_200(const char *text, const char *route)
{
    char series[384];
    snprintf(series, sizeof(series),
             "portico_requests_total{route=\"%s\",code=\"200\",failure=\"\"}", route);
    return sample(text, series);
}

/* ---- the test ---- */

/* The retired totals hold 16 rows (their array's first size); a shard retires whose first row
 * name cannot be copied, just after the array grew for it. That row is lost; the scrapes that
 * follow answered 500 for good (the failure stuck to the retired totals), and the rows added
 * next went into the array the growth had freed. */
static void test_retire_out_of_memory(void **state)
{
    (void)state;
    char first[16][16], second[4][16], third[1][16];
    metrics_shard_retire(shard_with_routes("r", 16, first));
    struct metrics *m = shard_with_routes("s", 4, second);
    arm(0); /* s0's name: the first copy of the retire */
    metrics_shard_retire(m);
    fail_at = -1;
    assert_int_equal(count, 4); /* every row was tried */

    int rc;
    char *text = render(&rc);
    if (rc != 0)
        fail_msg("a scrape after the retire failed (%d): the lost row fails every scrape", rc);
    for (int i = 0; i < 16; i++)
        assert_true(route_200(text, first[i]) == 1);
    assert_true(route_200(text, "s0") == -1); /* the one lost */
    for (int i = 1; i < 4; i++)
        assert_true(route_200(text, second[i]) == 1);
    assert_true(sample(text, "portico_client_connections_total") == 2); /* plain: never lost */
    free(text);

    /* later shards keep adding up, into the same rows and new ones */
    metrics_shard_retire(shard_with_routes("s", 1, third));
    text = render(&rc);
    assert_int_equal(rc, 0);
    assert_true(route_200(text, "s0") == 1);
    assert_true(route_200(text, "s1") == 1);
    assert_true(sample(text, "portico_client_connections_total") == 3);
    free(text);
    metrics_free_all();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retire_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
