/*
 * evmem.h — libevent's allocator: malloc, except that each thread keeps a few freed read
 * buffers for its next reads.
 *
 * A read into an empty evbuffer (sock.c reserves its FIRST_READ, 16 KiB) makes libevent
 * allocate a chain of 32 KiB (the 16 KiB plus the chain's header, rounded up to a power of two),
 * freed as soon as its bytes are drained: a client's read and an origin's read per proxied
 * request. Blocks that large are past malloc's per-thread cache, so each one went through the
 * arena, both ways (~1,000 instructions per small request). Blocks of that size are kept, up to
 * EVMEM_KEEP per thread; every other allocation goes to malloc and free as before.
 */
#ifndef PORTICO_EVMEM_H
#define PORTICO_EVMEM_H

#include <stddef.h>

#define EVMEM_BLOCK (32 * 1024) /* the size kept: libevent's chain for a 16 KiB read */
#define EVMEM_KEEP 8            /* blocks kept per thread (256 KiB at most) */

/* Makes evmem_malloc, realloc and evmem_free libevent's allocation functions. Call once, before
 * any other libevent function (main). */
void evmem_init(void);

/* malloc(size), or for EVMEM_BLOCK bytes a block this thread kept. */
void *evmem_malloc(size_t size);

/* free(p), or, when p is a block of EVMEM_BLOCK's size and this thread keeps fewer than
 * EVMEM_KEEP, keeps it. Blocks from evmem_init's caller on are recognised. A block freed again
 * while kept (this thread's; under ASan any thread's) aborts, as malloc's double free check. */
void evmem_free(void *p);

/* Frees the blocks the calling thread keeps. A thread's end does it by itself; the main thread
 * calls it before it exits. */
void evmem_flush(void);

#endif
