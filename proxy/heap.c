/*
 * heap.c — glibc malloc's thresholds, and an ending thread's free memory handed back. See heap.h.
 */
#include "portico/heap.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

/* glibc hands freed memory back to the kernel once 128 KiB lies free at the top of an arena,
 * and serves blocks from 128 KiB up with mmap until a free raises that bar. A large body read
 * in 64 KiB buffers then costs an madvise and ~23 page faults per request (1 MiB uploads took
 * 20% more CPU). Fixed bars keep up to 4 MiB of freed heap per worker for the next request, as
 * nginx's and HAProxy's own buffer pools do; blocks of 1 MiB and more are still mapped. */
void heap_tune(void)
{
    mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD);
}

/* glibc has no call that trims one arena. malloc_trim gives back the pages inside free chunks
 * of every arena, but of the tops only the main arena's; a thread arena's top shrinks only when
 * a free there leaves a free chunk of 64 KiB or more (FASTBIN_CONSOLIDATION_THRESHOLD) while the
 * top is past the trim threshold, which is the whole process's. So the threshold is lowered for
 * one such free in this thread's arena, then set back (another thread that frees as much
 * meanwhile gives back its top too, and faults it in again once; the lock keeps two ending
 * workers from setting it back under each other), and malloc_trim follows. Both are needed: the
 * chunks this thread still holds in its per-thread cache (tcache, freed only once it has ended)
 * lie anywhere in the arena and the top shrinks only down to the highest of them; what lies free
 * below them stays resident unless malloc_trim takes its pages now, and once the cache is freed
 * it merges into the top, which malloc_trim leaves. */
#define TRIGGER_SIZE (64 * 1024)

static pthread_mutex_t release_lock = PTHREAD_MUTEX_INITIALIZER;

void heap_release_thread(void)
{
    pthread_mutex_lock(&release_lock);
    mallopt(M_TRIM_THRESHOLD, 0);
    void *volatile block = malloc(TRIGGER_SIZE); /* volatile: the pair must not be elided */
    free(block);
    mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD);
    malloc_trim(0);
    pthread_mutex_unlock(&release_lock);
}
