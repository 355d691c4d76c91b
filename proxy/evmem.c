/*
 * evmem.c — libevent's allocator with per-thread chain blocks kept for reuse. See evmem.h.
 */
#include "portico/evmem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/buffer.h>
#include <event2/event.h>

/* Under ASan a kept block is poisoned, so a use after libevent freed it is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define KEPT_POISON(p, size) ASAN_POISON_MEMORY_REGION((p), (size))
#define KEPT_UNPOISON(p, size) ASAN_UNPOISON_MEMORY_REGION((p), (size))
#define KEPT_ANYWHERE(p) __asan_address_is_poisoned(p) /* every thread's kept blocks */
#define BUF_POISON(b) ASAN_POISON_MEMORY_REGION((b), malloc_usable_size(b))
#define BUF_UNPOISON(b) ASAN_UNPOISON_MEMORY_REGION((b), malloc_usable_size(b))
#else
#define KEPT_POISON(p, size) ((void)(p), (void)(size))
#define KEPT_UNPOISON(p, size) ((void)(p), (void)(size))
#define KEPT_ANYWHERE(p) ((void)(p), false)
#define BUF_POISON(b) ((void)(b))
#define BUF_UNPOISON(b) ((void)(b))
#endif

/* The sizes kept and how many of each a thread keeps (evmem.h). */
enum block_size { BLOCK_READ, BLOCK_SMALL, BLOCK_SIZES };
static const size_t block_bytes[BLOCK_SIZES] = {[BLOCK_READ] = EVMEM_BLOCK,
                                                [BLOCK_SMALL] = EVMEM_SMALL_BLOCK};
static const unsigned block_keep[BLOCK_SIZES] = {[BLOCK_READ] = EVMEM_KEEP,
                                                 [BLOCK_SMALL] = EVMEM_SMALL_KEEP};

/* free() is not told a block's size: a block is kept when malloc_usable_size says it is as
 * large as an allocation of one of block_bytes (0 before evmem_init: nothing is kept). */
static size_t block_usable[BLOCK_SIZES];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_end_key; /* its destructor frees an ending thread's blocks */
static bool have_key;

static __thread struct {
    struct {
        void *block[EVMEM_SMALL_KEEP > EVMEM_KEEP ? EVMEM_SMALL_KEEP : EVMEM_KEEP];
        unsigned n;
    } size[BLOCK_SIZES];
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
    have_key = pthread_key_create(&thread_end_key, thread_end) == 0;
    if (!have_key)
        return; /* no way to free an ending thread's blocks: keep none */
    for (int k = 0; k < BLOCK_SIZES; k++) {
        void *p = malloc(block_bytes[k]);
        if (p)
            block_usable[k] = malloc_usable_size(p);
        free(p);
    }
}

/* The cells of libevent's smallest allocations (evmem.h). Reserved once, touched as cells are
 * first used; a freed cell goes on a free list for the next. Off under ASan, which then checks
 * these allocations as any other. */
#if defined(__SANITIZE_ADDRESS__)
#define CELLS_ON false
#else
#define CELLS_ON true
#endif
static pthread_mutex_t cells_lock = PTHREAD_MUTEX_INITIALIZER;
static char *cells, *cells_next; /* the zone, and its first cell never used */
static size_t cells_bytes;       /* EVMEM_CELLS_BYTES once reserved; 0: no pointer is a cell */
static void *cells_free;         /* freed cells, each holding the next's address */

/* One subtraction and one compare: every libevent free asks it (NULL is no cell either). */
static bool in_cells(const void *p)
{
    return (uintptr_t)p - (uintptr_t)cells < cells_bytes;
}

/* A cell, or NULL when the zone is full or could not be reserved (malloc then). Out of line:
 * inlined, its lock made every evmem_malloc save registers (+12 instructions a call). */
__attribute__((noinline)) static void *cell_take(void)
{
    void *p = NULL;
    pthread_mutex_lock(&cells_lock);
    if (cells_free) {
        p = cells_free;
        cells_free = *(void **)p;
    } else if (cells && cells_next < cells + EVMEM_CELLS_BYTES) {
        p = cells_next;
        cells_next += EVMEM_CELL;
    }
    pthread_mutex_unlock(&cells_lock);
    return p;
}

__attribute__((noinline)) static void cell_give(void *p)
{
    pthread_mutex_lock(&cells_lock);
    *(void **)p = cells_free;
    cells_free = p;
    pthread_mutex_unlock(&cells_lock);
}

void evmem_init(void)
{
    pthread_once(&once, setup);
    if (CELLS_ON && !cells) {
        void *z = mmap(NULL, EVMEM_CELLS_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        cells_next = cells = z == MAP_FAILED ? NULL : z;
        cells_bytes = cells ? EVMEM_CELLS_BYTES : 0;
    }
    event_set_mem_functions(evmem_malloc, evmem_realloc, evmem_free);
}

void *evmem_malloc(size_t size)
{
    if (size - 1 < EVMEM_CELL) { /* 1 to EVMEM_CELL bytes */
        void *p = cell_take();
        if (p)
            return p;
    }
    for (int k = 0; k < BLOCK_SIZES; k++) {
        if (size == block_bytes[k] && kept.size[k].n > 0) {
            void *p = kept.size[k].block[--kept.size[k].n];
            KEPT_UNPOISON(p, size);
            return p;
        }
    }
    return malloc(size);
}

/* Whether p, of size k, is a block kept already (this thread's; under ASan any thread's). */
static bool kept_already(const void *p, int k)
{
    if (KEPT_ANYWHERE(p))
        return true;
    for (unsigned i = 0; i < kept.size[k].n; i++)
        if (kept.size[k].block[i] == p)
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

/* The size p is kept as, or BLOCK_SIZES when none. */
static int size_of(void *p)
{
    size_t usable = malloc_usable_size(p);
    for (int k = 0; k < BLOCK_SIZES; k++)
        if (usable == block_usable[k])
            return k;
    return BLOCK_SIZES;
}

void *evmem_realloc(void *p, size_t size)
{
    if (!in_cells(p))
        return realloc(p, size);
    if (size - 1 < EVMEM_CELL)
        return p;
    void *moved = size ? malloc(size) : NULL;
    if (size && !moved)
        return NULL; /* p stays, as realloc's */
    if (moved)
        memcpy(moved, p, EVMEM_CELL);
    cell_give(p);
    return moved;
}

void evmem_free(void *p)
{
    if (in_cells(p)) {
        cell_give(p);
        return;
    }
    int k = p ? size_of(p) : BLOCK_SIZES;
    if (k == BLOCK_SIZES) {
        free(p);
        return;
    }
    /* Freed twice: malloc (and ASan) would have stopped there, but a kept block is still
     * allocated to malloc; kept twice, it would go to two owners, and freed while kept, to one
     * after its free. So the same stop as malloc's, with or without room to keep it. */
    if (kept_already(p, k)) {
        fprintf(stderr, "portico: evmem: double free of %p\n", p);
        abort();
    }
    if (kept.size[k].n < block_keep[k] && registered()) {
        KEPT_POISON(p, block_bytes[k]);
        kept.size[k].block[kept.size[k].n++] = p;
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
    for (int k = 0; k < BLOCK_SIZES; k++) {
        while (kept.size[k].n > 0) {
            void *p = kept.size[k].block[--kept.size[k].n];
            KEPT_UNPOISON(p, block_bytes[k]);
            free(p);
        }
    }
}

int evmem_move(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    size_t had = evbuffer_get_length(out);
    return evbuffer_remove_buffer(in, out, n) == (int)n && evbuffer_get_length(out) - had == n
               ? 0
               : -1;
}
