/*
 * test_recent.c — the status page's last minutes: counts per minute by class and failure type,
 * the newest failures of all workers, retired shards folded in, pool sizes per generation, and
 * a reader that never sees a half-written failure while the writer runs.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/recent.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define T0 (UINT64_C(1764720000000)) /* a wall-clock time on a minute boundary */
#define MIN_MS 60000

static int teardown(void **state)
{
    (void)state;
    recent_free_all();
    return 0;
}

struct sample_row {
    const char *why;
    uint64_t offset_ms;        /* from T0 */
    int status;
    enum failure_type failure;
};

static const struct sample_row rows[] = {
    {"a success in the first minute", 1000, 200, FAIL_NONE},
    {"a client error counts as 4xx, no failure", 2000, 404, FAIL_NONE},
    {"a client that left: 499, 4xx", 3000, 499, FAIL_NONE},
    {"an upstream failure: 5xx and its type", 4000, 504, FAIL_CONNECT_TIMEOUT},
    {"the next minute", MIN_MS + 10, 502, FAIL_CONNECT_REFUSED},
    {"a failure after the head: no status of its own counts as other", MIN_MS + 20, 0,
     FAIL_READ_TIMEOUT},
    {"two minutes later", 3 * MIN_MS, 200, FAIL_NONE},
};

static void record_rows(struct recent *r)
{
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char id[16];
        snprintf(id, sizeof(id), "req-%zu", i);
        recent_record(r, &(struct recent_sample){
                             .time_ms = T0 + rows[i].offset_ms,
                             .status = rows[i].status,
                             .failure = rows[i].failure,
                             .phase = PHASE_CONNECT,
                             .total_us = 1500,
                             .request_id = id,
                             .route = "r",
                             .upstream = "u",
                             .origin = "127.0.0.1:1",
                             .detail = rows[i].why,
                         });
    }
}

/* The window ends at now; minutes are oldest first and every one is present. */
static void test_minutes(void **state)
{
    (void)state;
    struct recent *r = recent_shard_create(1, 0);
    assert_non_null(r);
    record_rows(r);
    struct recent_view v = {0};
    recent_snapshot(&v, T0 + 3 * MIN_MS + 5, 1);
    const struct recent_minute *last = &v.minutes[RECENT_MINUTES - 1];
    const struct recent_minute *m0 = &v.minutes[RECENT_MINUTES - 4];
    const struct recent_minute *m1 = &v.minutes[RECENT_MINUTES - 3];
    assert_int_equal(m0->minute, T0 / MIN_MS);
    assert_int_equal(last->minute, T0 / MIN_MS + 3);
    assert_int_equal(m0->requests, 4);
    assert_int_equal(m0->classes[recent_class_of(200)], 1);
    assert_int_equal(m0->classes[recent_class_of(404)], 2);
    assert_int_equal(m0->classes[recent_class_of(504)], 1);
    assert_int_equal(m0->failures[FAIL_CONNECT_TIMEOUT], 1);
    assert_int_equal(m1->requests, 2);
    assert_int_equal(m1->classes[RECENT_CLASSES - 1], 1); /* status 0 */
    assert_int_equal(m1->failures[FAIL_READ_TIMEOUT], 1);
    assert_int_equal(v.minutes[RECENT_MINUTES - 2].requests, 0);
    assert_int_equal(last->requests, 1);
    /* the failures, newest first */
    assert_int_equal(v.nfailures, 3);
    assert_int_equal(v.failures[0].failure, FAIL_READ_TIMEOUT);
    assert_string_equal(v.failures[0].request_id, "req-5");
    assert_int_equal(v.failures[2].failure, FAIL_CONNECT_TIMEOUT);
    assert_string_equal(v.failures[2].origin, "127.0.0.1:1");
    assert_int_equal(v.failures[2].total_us, 1500);

    /* RECENT_MINUTES later, the first minute's slot is reused and its counts start afresh */
    recent_record(r, &(struct recent_sample){.time_ms = T0 + RECENT_MINUTES * MIN_MS,
                                             .status = 200});
    recent_snapshot(&v, T0 + RECENT_MINUTES * MIN_MS, 1);
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].requests, 1);
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].classes[1], 1);
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].failures[FAIL_CONNECT_TIMEOUT], 0);
}

/* Long strings are cut to their field, NUL-terminated; more failures than a ring holds keep the
 * newest. */
static void test_ring(void **state)
{
    (void)state;
    struct recent *r = recent_shard_create(1, 0);
    char longest[1000];
    memset(longest, 'x', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    for (int i = 0; i < RECENT_FAILURES + 5; i++)
        recent_record(r, &(struct recent_sample){.time_ms = T0 + (uint64_t)i, .status = 502,
                                                 .failure = FAIL_EMPTY_RESPONSE,
                                                 .detail = longest, .origin = longest});
    struct recent_view v = {0};
    recent_snapshot(&v, T0 + 100, 1);
    assert_int_equal(v.nfailures, RECENT_FAILURES);
    assert_int_equal(v.failures[0].time_ms, T0 + RECENT_FAILURES + 4);
    assert_int_equal(v.failures[RECENT_FAILURES - 1].time_ms, T0 + 5);
    assert_int_equal(strlen(v.failures[0].detail), sizeof(v.failures[0].detail) - 1);
    assert_int_equal(strlen(v.failures[0].origin), sizeof(v.failures[0].origin) - 1);
}

/* Only the words a failure's strings use are stored: a short failure in the slot of a long one
 * reads as itself, never with the older one's bytes behind it, and an absent string as "". */
static void test_shorter_over_longer(void **state)
{
    (void)state;
    struct recent *r = recent_shard_create(1, 0);
    char longest[1000];
    memset(longest, 'x', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    recent_record(r, &(struct recent_sample){.time_ms = T0, .status = 502,
                                             .failure = FAIL_EMPTY_RESPONSE,
                                             .request_id = longest, .route = longest,
                                             .upstream = longest, .origin = longest,
                                             .detail = longest, .fault = longest,
                                             .tls_alert = 116 + 1});
    for (int i = 1; i <= RECENT_FAILURES; i++) /* the last one takes the long one's slot */
        recent_record(r, &(struct recent_sample){.time_ms = T0 + (uint64_t)i, .status = 504,
                                                 .failure = FAIL_TOTAL_TIMEOUT,
                                                 .request_id = "r1", .route = "ab",
                                                 .upstream = "up", .origin = "o:1",
                                                 .detail = i % 2 ? "d" : NULL,
                                                 .tls_alert = i == 1 ? 48 + 1 : 0});
    struct recent_view v = {0};
    recent_snapshot(&v, T0 + 100, 1);
    assert_int_equal(v.nfailures, RECENT_FAILURES);
    for (size_t i = 0; i < v.nfailures; i++) {
        const struct recent_failure *f = &v.failures[i];
        assert_int_equal(f->status, 504);
        /* the alert is kept (a number: stored whole, the older one's 116 gone) */
        assert_int_equal(f->tls_alert, f->time_ms == T0 + 1 ? 48 + 1 : 0);
        assert_string_equal(f->request_id, "r1");
        assert_string_equal(f->route, "ab");
        assert_string_equal(f->upstream, "up");
        assert_string_equal(f->origin, "o:1");
        assert_string_equal(f->detail, (f->time_ms - T0) % 2 ? "d" : "");
        assert_string_equal(f->fault, "");
    }
}

/* Two workers: the view merges both; a retired one's counts and failures stay; pools count
 * only for the generation asked about. */
static void test_shards_and_retire(void **state)
{
    (void)state;
    struct recent *a = recent_shard_create(1, 2), *b = recent_shard_create(2, 2);
    assert_non_null(a);
    assert_non_null(b);
    recent_record(a, &(struct recent_sample){.time_ms = T0 + 1, .status = 502,
                                             .failure = FAIL_CONNECT_REFUSED, .upstream = "a"});
    recent_record(b, &(struct recent_sample){.time_ms = T0 + 2, .status = 504,
                                             .failure = FAIL_FIRST_BYTE_TIMEOUT, .upstream = "b"});
    recent_set_pool(a, 1, 7);
    recent_set_pool(b, 1, 3);
    recent_set_pool(b, 5, 100); /* no such upstream: ignored */
    uint64_t pools[2];
    struct recent_view v = {.pool_idle = pools, .npools = 2};
    recent_snapshot(&v, T0 + 10, 2);
    assert_int_equal(v.nfailures, 2);
    assert_string_equal(v.failures[0].upstream, "b");
    assert_int_equal(pools[0], 0);
    assert_int_equal(pools[1], 3);
    recent_shard_retire(a);
    recent_snapshot(&v, T0 + 10, 1);
    assert_int_equal(v.nfailures, 2);
    assert_string_equal(v.failures[1].upstream, "a");
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].requests, 2);
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].failures[FAIL_CONNECT_REFUSED], 1);
    assert_int_equal(pools[1], 0); /* generation 1 has no live worker any more */
    recent_shard_retire(NULL);
}

/* Retired shards fold in by age: a minute older than the one a retired slot holds, or a failure
 * older than every one of the RECENT_FAILURES retired already, is out of the window and does
 * not push the newer one out. */
static void test_retire_keeps_newest(void **state)
{
    (void)state;
    const uint64_t later = T0 + RECENT_MINUTES * MIN_MS; /* the slot of T0's minute, reused */
    struct recent *a = recent_shard_create(1, 0), *b = recent_shard_create(1, 0);
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < RECENT_FAILURES; i++)
        recent_record(a, &(struct recent_sample){.time_ms = later + (uint64_t)i, .status = 502,
                                                 .failure = FAIL_CONNECT_REFUSED});
    recent_record(b, &(struct recent_sample){.time_ms = T0, .status = 504,
                                             .failure = FAIL_FIRST_BYTE_TIMEOUT});
    recent_shard_retire(a);
    recent_shard_retire(b);
    struct recent_view v = {0};
    recent_snapshot(&v, later, 1);
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].requests, RECENT_FAILURES);
    assert_int_equal(v.minutes[RECENT_MINUTES - 1].failures[FAIL_CONNECT_REFUSED],
                     RECENT_FAILURES);
    assert_int_equal(v.nfailures, RECENT_FAILURES);
    assert_int_equal(v.failures[RECENT_FAILURES - 1].time_ms, later);
    assert_int_equal(v.failures[RECENT_FAILURES - 1].failure, FAIL_CONNECT_REFUSED);
}

/* A status is counted in its class up to 599, the last code there is; past it, "other". */
static void test_class_bounds(void **state)
{
    (void)state;
    assert_int_equal(recent_class_of(100), 0);
    assert_int_equal(recent_class_of(599), 4);
    assert_int_equal(recent_class_of(600), RECENT_CLASSES - 1);
    assert_int_equal(recent_class_of(99), RECENT_CLASSES - 1);
}

/* The writer rewrites failure slots as fast as it can while the reader snapshots: every failure
 * read must be whole (its detail is derived from its time). */
struct stress {
    struct recent *r;
    _Atomic int stop;
    _Atomic uint64_t written;
};

static void *writer(void *arg)
{
    struct stress *s = arg;
    char detail[64];
    for (uint64_t i = 1; !atomic_load(&s->stop) && i < 5000000; i++) {
        snprintf(detail, sizeof(detail), "failure number %llu", (unsigned long long)i);
        recent_record(s->r, &(struct recent_sample){.time_ms = T0 + i, .status = 502,
                                                    .failure = FAIL_CONNECT_REFUSED,
                                                    .detail = detail, .request_id = detail});
        atomic_store(&s->written, i);
    }
    return NULL;
}

static void test_torn_reads(void **state)
{
    (void)state;
    struct stress s = {.r = recent_shard_create(1, 0)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &s), 0);
    unsigned seen = 0;
    /* bounded: 20000 snapshots, the first ones only once the writer is under way */
    for (int spin = 0; spin < 100000000 && atomic_load(&s.written) < RECENT_FAILURES; spin++)
        ;
    for (int round = 0; round < 20000; round++) {
        struct recent_view v = {0};
        recent_snapshot(&v, T0, 1);
        for (size_t i = 0; i < v.nfailures; i++) {
            char want[64];
            snprintf(want, sizeof(want), "failure number %llu",
                     (unsigned long long)(v.failures[i].time_ms - T0));
            if (strcmp(v.failures[i].detail, want) != 0 ||
                strcmp(v.failures[i].request_id, want) != 0)
                fail_msg("torn read: time %llu, detail \"%s\"",
                         (unsigned long long)v.failures[i].time_ms, v.failures[i].detail);
            seen++;
        }
    }
    atomic_store(&s.stop, 1);
    pthread_join(t, NULL);
    assert_true(seen > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_minutes, teardown),
        cmocka_unit_test_teardown(test_ring, teardown),
        cmocka_unit_test_teardown(test_shorter_over_longer, teardown),
        cmocka_unit_test_teardown(test_shards_and_retire, teardown),
        cmocka_unit_test_teardown(test_retire_keeps_newest, teardown),
        cmocka_unit_test_teardown(test_class_bounds, teardown),
        cmocka_unit_test_teardown(test_torn_reads, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
