/*
 * evmem.c — libevent's allocator with per-thread read buffers kept for reuse. See evmem.h.
 */
#include "portico/evmem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>

/* Under ASan a kept block is poisoned, so a use after libevent freed it is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define KEPT_POISON(p) ASAN_POISON_MEMORY_REGION((p), EVMEM_BLOCK)
#define KEPT_UNPOISON(p) ASAN_UNPOISON_MEMORY_REGION((p), EVMEM_BLOCK)
#define KEPT_ANYWHERE(p) __asan_address_is_poisoned(p) /* every thread's kept blocks */
#define BUF_POISON(b) ASAN_POISON_MEMORY_REGION((b), malloc_usable_size(b))
#define BUF_UNPOISON(b) ASAN_UNPOISON_MEMORY_REGION((b), malloc_usable_size(b))
#else
#define KEPT_POISON(p) ((void)(p))
#define KEPT_UNPOISON(p) ((void)(p))
#define KEPT_ANYWHERE(p) ((void)(p), false)
#define BUF_POISON(b) ((void)(b))
#define BUF_UNPOISON(b) ((void)(b))
#endif

/* free() is not told a block's size: a block is kept when malloc_usable_size says it is as
 * large as an EVMEM_BLOCK allocation (0 before evmem_init: nothing is kept). */
static size_t block_usable;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_end_key; /* its destructor frees an ending thread's blocks */
static bool have_key;

static __thread struct {
    void *block[EVMEM_KEEP];
    unsigned n;
    struct evbuffer *buf[EVMEM_BUFFERS]; /* emptied, poisoned under ASan */
    unsigned nbuf;
    bool registered; /* thread_end_key set, so the thread's end flushes */
} kept;

static void thread_end(void *unused)
{
    (void)unused;
    evmem_flush();
}

static void setup(void)
{
    void *p = malloc(EVMEM_BLOCK);
    if (p)
        block_usable = malloc_usable_size(p);
    free(p);
    have_key = pthread_key_create(&thread_end_key, thread_end) == 0;
    if (!have_key)
        block_usable = 0; /* no way to free an ending thread's blocks: keep none */
}

void evmem_init(void)
{
    pthread_once(&once, setup);
    event_set_mem_functions(evmem_malloc, realloc, evmem_free);
}

void *evmem_malloc(size_t size)
{
    if (size == EVMEM_BLOCK && kept.n > 0) {
        void *p = kept.block[--kept.n];
        KEPT_UNPOISON(p);
        return p;
    }
    return malloc(size);
}

/* Whether p is a block kept already (this thread's; under ASan any thread's). */
static bool kept_already(const void *p)
{
    if (KEPT_ANYWHERE(p))
        return true;
    for (unsigned i = 0; i < kept.n; i++)
        if (kept.block[i] == p)
            return true;
    return false;
}

/* Whether the thread's end will flush what it keeps (set up on its first keep). */
static bool registered(void)
{
    if (!kept.registered && have_key && pthread_setspecific(thread_end_key, &kept) == 0)
        kept.registered = true;
    return kept.registered;
}

void evmem_free(void *p)
{
    if (!p || malloc_usable_size(p) != block_usable) {
        free(p);
        return;
    }
    /* Freed twice: malloc (and ASan) would have stopped there, but a kept block is still
     * allocated to malloc; kept twice, it would go to two owners, and freed while kept, to one
     * after its free. So the same stop as malloc's, with or without room to keep it. */
    if (kept_already(p)) {
        fprintf(stderr, "portico: evmem: double free of %p\n", p);
        abort();
    }
    if (kept.n < EVMEM_KEEP && registered()) {
        KEPT_POISON(p);
        kept.block[kept.n++] = p;
        return;
    }
    free(p);
}

struct evbuffer *evmem_buffer_new(void)
{
    if (kept.nbuf > 0) {
        struct evbuffer *b = kept.buf[--kept.nbuf];
        BUF_UNPOISON(b);
        return b;
    }
    return evbuffer_new();
}

size_t evmem_drop_empty(struct evbuffer *b)
{
    /* A drain frees every chain it empties, but does nothing to an empty buffer: a byte added
     * into the empty chain's room lets it. */
    size_t had = evbuffer_get_length(b);
    if (!had && evbuffer_peek(b, 1, NULL, NULL, 0) > 0 && evbuffer_add(b, "", 1) == 0)
        evbuffer_drain(b, 1);
    return had;
}

void evmem_buffer_free(struct evbuffer *b)
{
    if (!b)
        return;
    /* Its chains go as evbuffer_free would let them (the empty one of a last read included). */
    size_t left = evmem_drop_empty(b);
    if (left)
        evbuffer_drain(b, left);
    if (kept.nbuf < EVMEM_BUFFERS && evbuffer_get_length(b) == 0 && registered()) {
        BUF_POISON(b);
        kept.buf[kept.nbuf++] = b;
        return;
    }
    evbuffer_free(b);
}

void evmem_flush(void)
{
    while (kept.nbuf > 0) { /* first: their frees may keep blocks */
        struct evbuffer *b = kept.buf[--kept.nbuf];
        BUF_UNPOISON(b);
        evbuffer_free(b);
    }
    while (kept.n > 0) {
        void *p = kept.block[--kept.n];
        KEPT_UNPOISON(p);
        free(p);
    }
}
