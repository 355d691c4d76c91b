/*
 * test_evmem.c — libevent's allocator (evmem.c): a 16 KiB read's chain, freed when drained, is
 * kept for the thread's next read instead of going back to malloc; a thread's end frees what it
 * kept (a leak would fail the ASan and valgrind runs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "portico/evmem.h"

/* Where a 16 KiB reservation in an empty buffer lands (sock.c's FIRST_READ). */
static void *reserve_read(struct evbuffer *b)
{
    struct evbuffer_iovec v;
    assert_int_equal(evbuffer_reserve_space(b, 16 * 1024, &v, 1), 1);
    assert_true(v.iov_len >= 16 * 1024);
    ((char *)v.iov_base)[0] = 'x';
    v.iov_len = 1;
    assert_int_equal(evbuffer_commit_space(b, &v, 1), 0);
    return v.iov_base;
}

/* The read's chain, drained, serves the next read, even when something else asked malloc for a
 * block of that size in between (malloc alone hands the freed block to that caller). */
static void test_read_chain_kept(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    void *first = reserve_read(b);
    evbuffer_drain(b, 1);
    void *other = malloc(EVMEM_BLOCK);
    assert_non_null(other);
    void *second = reserve_read(b);
    assert_ptr_equal(first, second);
    assert_ptr_not_equal(other, second);
    free(other);
    evbuffer_free(b);
}

/* Blocks of other sizes are not kept; of EVMEM_BLOCK, no more than EVMEM_KEEP, newest first. */
static void test_only_blocks_kept(void **state)
{
    (void)state;
    evmem_flush();
    void *small = evmem_malloc(100);
    assert_non_null(small);
    evmem_free(small);
    void *block[EVMEM_KEEP + 1];
    for (int i = 0; i <= EVMEM_KEEP; i++)
        assert_non_null(block[i] = evmem_malloc(EVMEM_BLOCK));
    for (int i = 0; i <= EVMEM_KEEP; i++)
        evmem_free(block[i]);
    for (int i = EVMEM_KEEP - 1; i >= 0; i--) {
        void *p = evmem_malloc(EVMEM_BLOCK);
        assert_ptr_equal(p, block[i]);
        free(p);
    }
    evmem_free(NULL);
}

static void *thread_keeps(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        evmem_free(malloc(EVMEM_BLOCK));
    return NULL;
}

/* A thread ends with blocks kept: they are freed (else a leak for LeakSanitizer and valgrind). */
static void test_thread_end_frees(void **state)
{
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_keeps, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static int setup(void **state)
{
    (void)state;
    evmem_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    evmem_flush();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_chain_kept),
        cmocka_unit_test(test_only_blocks_kept),
        cmocka_unit_test(test_thread_end_frees),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
