/*
 * test_trace.c — W3C traceparent: strict parsing of version 00 and the forward-compatible rules
 * for higher versions (one row per rule), generated ids (format, never zero, no repeats,
 * reproducible from a seed), and the decision an intermediary makes: keep the client's trace id
 * with a new parent-id, or start a new trace.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/trace.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

static const struct {
    const char *value;
    int ok;
    int flags;           /* when ok: flags read */
    const char *why;
} parse_rows[] = {
    {"00-" TID "-" PID "-01", 1, 0x01, "the spec's example, sampled"},
    {"00-" TID "-" PID "-00", 1, 0x00, "not sampled"},
    {"00-" TID "-" PID "-ff", 1, 0xff, "version 00 reads all 8 flag bits"},
    {"01-" TID "-" PID "-09", 1, 0x01, "a higher version: only the sampled bit is read"},
    {"cc-" TID "-" PID "-01-what-the-future-will-be-like", 1, 0x01,
     "a higher version may add fields after a dash"},
    {"fe-" TID "-" PID "-00-", 1, 0x00, "a higher version with an empty added field"},
    {"", 0, 0, "empty"},
    {"ff-" TID "-" PID "-01", 0, 0, "version ff is forbidden"},
    {"0A-" TID "-" PID "-01", 0, 0, "uppercase hex in the version"},
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01", 0, 0, "uppercase hex in the trace id"},
    {"00-" TID "-00F067AA0BA902B7-01", 0, 0, "uppercase hex in the parent id"},
    {"00-" TID "-" PID "-0F", 0, 0, "uppercase hex in the flags"},
    {"00-00000000000000000000000000000000-" PID "-01", 0, 0, "all-zero trace id"},
    {"00-" TID "-0000000000000000-01", 0, 0, "all-zero parent id"},
    {"01-00000000000000000000000000000000-" PID "-01", 0, 0, "all-zero ids, higher version too"},
    {"00-4bf92f3577b34da6a3ce929d0e0e473-" PID "-01", 0, 0, "31-digit trace id"},
    {"00-4bf92f3577b34da6a3ce929d0e0e47361-" PID "-01", 0, 0, "33-digit trace id"},
    {"00-" TID "-00f067aa0ba902b-01", 0, 0, "15-digit parent id"},
    {"00-" TID "-" PID "-1", 0, 0, "one flag digit"},
    {"00-" TID "-" PID "-01-", 0, 0, "version 00 has nothing after the flags"},
    {"00-" TID "-" PID "-01 ", 0, 0, "not even a space"},
    {" 00-" TID "-" PID "-01", 0, 0, "nor one in front"},
    {"00-" TID "-" PID "-01,00-" TID "-" PID "-01", 0, 0,
     "two traceparent fields combined into one value"},
    {"01-" TID "-" PID "-01x", 0, 0, "a higher version's added field needs its dash"},
    {"01-" TID "-" PID "-0", 0, 0, "shorter than 55 characters"},
    {"00_" TID "-" PID "-01", 0, 0, "a separator that is not a dash"},
    {"00-" TID "_" PID "-01", 0, 0, "a separator that is not a dash (after the trace id)"},
    {"00-" TID "-" PID "_01", 0, 0, "a separator that is not a dash (after the parent id)"},
    {"00-4bf92f3577b34da6a3ce929d0e0e473g-" PID "-01", 0, 0, "not hex"},
    {"0-0" TID "-" PID "-01", 0, 0, "a one-digit version"},
};

static void test_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(parse_rows); i++) {
        const char *v = parse_rows[i].value;
        struct trace_context tc;
        memset(&tc, 0x55, sizeof(tc));
        int rc = trace_parse(v, strlen(v), &tc);
        if (parse_rows[i].ok != (rc == 0))
            fail_msg("%s: '%s' %s", parse_rows[i].why, v, rc == 0 ? "accepted" : "refused");
        if (rc != 0)
            continue;
        if (strcmp(tc.trace_id, TID) != 0 || strcmp(tc.parent_id, PID) != 0 ||
            tc.flags != parse_rows[i].flags)
            fail_msg("%s: read %s %s %02x", parse_rows[i].why, tc.trace_id, tc.parent_id,
                     tc.flags);
    }
    struct trace_context tc;
    assert_int_equal(trace_parse(NULL, 0, &tc), -1);
    /* a value is a span: bytes past len are not read */
    const char *v = "00-" TID "-" PID "-01garbage";
    assert_int_equal(trace_parse(v, TRACEPARENT_LEN, &tc), 0);
    assert_int_equal(trace_parse(v, TRACEPARENT_LEN - 1, &tc), -1);
    /* a higher version too: its 54 first bytes are short, whatever follows them */
    const char *future = "01-" TID "-" PID "-01";
    assert_int_equal(trace_parse(future, TRACEPARENT_LEN, &tc), 0);
    assert_int_equal(trace_parse(future, TRACEPARENT_LEN - 1, &tc), -1);
}

static bool lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]) || !s[i])
            return false;
    return true;
}

static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* New traces: well-formed, parse back to themselves, never repeat. */
static void test_start(void **state)
{
    (void)state;
    struct trace_rng rng;
    assert_int_equal(trace_rng_seed(&rng), 0);
    enum { N = 100000 };
    uint64_t *ids = malloc(N * 2 * sizeof(*ids));
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        struct trace_context tc;
        trace_start(&rng, i & 1, &tc);
        if (!lower_hex(tc.trace_id, 32) || !lower_hex(tc.parent_id, 16))
            fail_msg("ids %s %s", tc.trace_id, tc.parent_id);
        char value[TRACEPARENT_LEN + 1];
        assert_int_equal(trace_format(&tc, value, sizeof(value)), TRACEPARENT_LEN);
        struct trace_context back;
        if (trace_parse(value, TRACEPARENT_LEN, &back) != 0)
            fail_msg("generated '%s' does not parse", value);
        assert_string_equal(back.trace_id, tc.trace_id);
        assert_string_equal(back.parent_id, tc.parent_id);
        assert_int_equal(back.flags, i & 1);
        char half[17] = {0};
        memcpy(half, tc.trace_id, 16);
        ids[2 * i] = strtoull(half, NULL, 16);
        ids[2 * i + 1] = strtoull(tc.trace_id + 16, NULL, 16);
    }
    qsort(ids, N, 2 * sizeof(*ids), cmp_pair);
    for (int i = 1; i < N; i++)
        if (ids[2 * i] == ids[2 * i - 2] && ids[2 * i + 1] == ids[2 * i - 1])
            fail_msg("trace id repeated after %d", N);
    free(ids);
    /* two workers seeded by the OS do not produce the same ids */
    struct trace_rng a, b;
    assert_int_equal(trace_rng_seed(&a), 0);
    assert_int_equal(trace_rng_seed(&b), 0);
    assert_true(trace_rng_next(&a) != trace_rng_next(&b));
    /* too small a buffer */
    struct trace_context tc;
    trace_start(&rng, 0, &tc);
    char small[TRACEPARENT_LEN];
    assert_int_equal(trace_format(&tc, small, sizeof(small)), 0);
}

static void test_seeded(void **state)
{
    (void)state;
    struct trace_rng a, b, c;
    trace_rng_init(&a, 42);
    trace_rng_init(&b, 42);
    trace_rng_init(&c, 43);
    bool differ = false;
    for (int i = 0; i < 100; i++) {
        uint64_t x = trace_rng_next(&a);
        assert_true(x == trace_rng_next(&b)); /* the same seed, the same ids */
        differ |= x != trace_rng_next(&c);
    }
    assert_true(differ);
    trace_rng_init(&a, 0); /* seed 0 is a seed like any other: the state is not all zero */
    assert_true((trace_rng_next(&a) | trace_rng_next(&a)) != 0);
}

/* The intermediary's decision, per incoming value. */
static const struct {
    const char *value;   /* NULL: no traceparent */
    enum trace_source source;
    int flags;           /* forwarded */
    const char *why;
} propagate_rows[] = {
    {"00-" TID "-" PID "-01", TRACE_KEPT, 0x01, "valid: trace kept, sampled kept"},
    {"00-" TID "-" PID "-00", TRACE_KEPT, 0x00, "valid, not sampled"},
    {"00-" TID "-" PID "-fe", TRACE_KEPT, 0x00, "unknown flags are set to zero when forwarding"},
    {"00-" TID "-" PID "-ff", TRACE_KEPT, 0x01, "the sampled bit survives the clearing"},
    {"42-" TID "-" PID "-01-xyz", TRACE_KEPT, 0x01, "a higher version is downgraded to 00"},
    {NULL, TRACE_STARTED, 0x00, "none: a new trace, not sampled"},
    {"00-" TID "-0000000000000000-01", TRACE_STARTED, 0x00, "invalid: restarted"},
    {"garbage", TRACE_STARTED, 0x00, "garbage: restarted"},
};

static void test_propagate(void **state)
{
    (void)state;
    struct trace_rng rng;
    trace_rng_init(&rng, 7);
    for (size_t i = 0; i < ARRAY_LEN(propagate_rows); i++) {
        const char *v = propagate_rows[i].value;
        struct trace_context tc;
        enum trace_source s = trace_propagate(&rng, v, v ? strlen(v) : 0, &tc);
        if (s != propagate_rows[i].source)
            fail_msg("%s: %s", propagate_rows[i].why, trace_source_name(s));
        char out[TRACEPARENT_LEN + 1];
        assert_int_equal(trace_format(&tc, out, sizeof(out)), TRACEPARENT_LEN);
        assert_true(strncmp(out, "00-", 3) == 0);
        assert_int_equal(tc.flags, propagate_rows[i].flags);
        assert_true(lower_hex(tc.parent_id, 16));
        assert_string_not_equal(tc.parent_id, PID); /* our hop has its own parent-id */
        if (s == TRACE_KEPT)
            assert_string_equal(tc.trace_id, TID);
        else
            assert_string_not_equal(tc.trace_id, TID);
        struct trace_context back;
        assert_int_equal(trace_parse(out, TRACEPARENT_LEN, &back), 0);
    }
    assert_string_equal(trace_source_name(TRACE_KEPT), "kept");
    assert_string_equal(trace_source_name((enum trace_source)9), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_start),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_propagate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
