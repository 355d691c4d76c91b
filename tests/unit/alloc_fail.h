/*
 * alloc_fail.h — a libevent allocation-failure hook for unit tests: every allocation libevent
 * makes (evbuffer_new, chains, expansions) goes through event_set_mem_functions to these
 * wrappers, which make the Nth one from now fail. Call alloc_fail_install() first thing in
 * main(), before libevent allocates anything (memory from the default allocator must not reach
 * the wrappers' free, and vice versa: both use the C library, so it is the same heap anyway).
 */
#ifndef PORTICO_TEST_ALLOC_FAIL_H
#define PORTICO_TEST_ALLOC_FAIL_H

#include <event2/event.h>
#include <limits.h>
#include <stdlib.h>

static long alloc_fail_first = -1; /* allocations numbered from alloc_fail_at: these fail ... */
static long alloc_fail_last = -1;  /* ... up to this one, inclusive; -1: none */
static long alloc_fail_count;      /* allocations seen since alloc_fail_at */

static int alloc_fail_now(void)
{
    long i = alloc_fail_count++;
    return alloc_fail_first >= 0 && i >= alloc_fail_first && i <= alloc_fail_last;
}

static void *alloc_fail_malloc(size_t n)
{
    return alloc_fail_now() ? NULL : malloc(n);
}

static void *alloc_fail_realloc(void *p, size_t n)
{
    return alloc_fail_now() ? NULL : realloc(p, n);
}

static void alloc_fail_free(void *p)
{
    free(p);
}

static void alloc_fail_install(void)
{
    event_set_mem_functions(alloc_fail_malloc, alloc_fail_realloc, alloc_fail_free);
}

/* From now on, allocation number n (0: the next one) fails, and only that one; n < 0: none. */
static void alloc_fail_at(long n)
{
    alloc_fail_first = n;
    alloc_fail_last = n;
    alloc_fail_count = 0;
}

/* From now on, every allocation fails (alloc_fail_at(-1) ends it). */
static void alloc_fail_all(void)
{
    alloc_fail_first = 0;
    alloc_fail_last = LONG_MAX;
    alloc_fail_count = 0;
}

#endif
