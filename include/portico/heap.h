/*
 * heap.h — glibc malloc's thresholds for Portico, and a worker's free memory handed back when its
 * thread ends.
 *
 * Each thread that allocates gets a malloc arena, and the trim threshold set at start
 * (heap_tune) lets an arena keep up to HEAP_TRIM_THRESHOLD of freed memory at its top for its
 * thread's next requests. An arena outlives its thread, with what it keeps: glibc hands it to
 * the next thread that starts. A reload starts its workers while the previous ones still drain,
 * so arenas are added whenever generations overlap (glibc allows 8 per CPU), each holding on to
 * the peak of the workers that used it last: VmRSS grew with the reloads (the soak's +10.5% over
 * 20 reloads, 6 arenas and +10 MB after 40 reloads under load). An ending worker hands its
 * arena's free memory back instead.
 */
#ifndef PORTICO_HEAP_H
#define PORTICO_HEAP_H

#define HEAP_TRIM_THRESHOLD (4 * 1024 * 1024) /* free memory an arena keeps at its top */
#define HEAP_MMAP_THRESHOLD (1024 * 1024)     /* blocks from this size up are mapped */

/* Sets the thresholds. Call once, in main, before any other thread starts. */
void heap_tune(void);

/* HTTP/2 streams a worker must have had open at once since it last handed its free memory back
 * (heap_release_thread) for it to do so again once the burst is over (worker.c). Fewer leave
 * about what the trim threshold lets an arena keep anyway: 32 streams of 200 KB at once on one
 * connection left RSS 3.6 MB above its start; 128 left 4.9 MB, 4 connections of 50 6 MB. */
#define HEAP_TRIM_STREAMS 64

/* Likewise client connections of any kind (HTTP/1.1, TLS, HTTP/2, tunnels; idle ones too) open at
 * once: each leaves its buffers (libevent's, OpenSSL's, the exchange's) freed in pieces between
 * allocations that stay. 2,000 TLS connections fetching 256 KB at once left RSS 74-81 MB above the
 * start (16 MB once trimmed), 1,000 uploads of 1 MiB 9-44 MB (5 MB); 100 of 300 KB left 0.8 MB. */
#define HEAP_TRIM_CONNS 256

/* Hands the free memory of the calling thread's arena back to the kernel: the free top (all but
 * glibc's 128 KiB pad) and the pages of free chunks below it (those of every arena: glibc trims
 * no single one). For a worker thread about to end, once it has freed what it kept, and for one
 * whose burst (of HTTP/2 streams, of client connections) is over: their buffers leave the arena
 * in pieces between the allocations that stay (pooled origin connections), which no free gives
 * back (30 connections of 100 streams of 2 MB: RSS 81-143 MB above the start, 131 MB of it
 * free in the worker's arena; 3.1 MB once handed back, which took 4-25 ms; 1,500 streams of
 * 200 KB: 2-4 ms). Never on a request's path: it takes each arena's lock in turn. */
void heap_release_thread(void);

#endif
