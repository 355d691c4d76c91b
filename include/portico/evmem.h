/*
 * evmem.h — libevent's allocator: malloc, except that each thread keeps a few freed chain
 * blocks (read buffers and small write buffers) for its next reads and writes.
 *
 * A read into an empty evbuffer (sock.c reserves its FIRST_READ, 16 KiB) makes libevent
 * allocate a chain of 32 KiB (the 16 KiB plus the chain's header, rounded up to a power of two),
 * freed as soon as its bytes are drained: a client's read and an origin's read per proxied
 * request. Blocks that large are past malloc's per-thread cache, so each one went through the
 * arena, both ways (~1,000 instructions per small request). Blocks of that size are kept, up to
 * EVMEM_KEEP per thread. So are, up to EVMEM_SMALL_KEEP, libevent's smallest chains (1 KiB: a
 * forwarded request head, a response head with its small body), one allocated and freed for each
 * write that leaves at once, two per proxied request (~130 instructions each in malloc and free).
 * Every other allocation goes to malloc and free as before.
 *
 * Each thread also keeps up to EVMEM_BUFFERS emptied evbuffers (the input and output of a
 * closed connection, sock.c) for the next connection's: evbuffer_new and evbuffer_free cost
 * ~700 instructions per connection, a twentieth of a connection that carries one request.
 *
 * libevent's allocations of EVMEM_CELL bytes or fewer come from a zone of their own: chiefly its
 * map entry for each descriptor number a loop has watched (16-20 bytes, evmap_io), allocated on
 * the number's first use and freed only with the loop. Taken from malloc during a burst, each
 * stayed among the burst's freed connections and kept its page resident: after 2,000 TLS
 * connections, ~5,600 of them (the worker's and the sim origin's) held 9-13 MB that malloc_trim
 * could not hand back. Packed in the zone, they take 32 bytes each, and a number used again
 * takes its entry again (no new one).
 */
#ifndef PORTICO_EVMEM_H
#define PORTICO_EVMEM_H

#include <stddef.h>

#define EVMEM_BLOCK (32 * 1024) /* libevent's chain for a 16 KiB read */
#define EVMEM_KEEP 8            /* blocks kept per thread (256 KiB at most) */
#define EVMEM_SMALL_BLOCK 1024  /* libevent's smallest chain (MIN_BUFFER_SIZE, buffer.c) */
#define EVMEM_SMALL_KEEP 16     /* small blocks kept per thread (16 KiB at most) */
#define EVMEM_BUFFERS 32        /* emptied evbuffers kept per thread (136 bytes each) */
#define EVMEM_CELL 32           /* libevent allocations this small come from the zone */
#define EVMEM_CELLS_BYTES ((size_t)64 << 20) /* the zone reserved (2 Mi cells; malloc after) */

struct evbuffer;

/* Makes evmem_malloc, realloc and evmem_free libevent's allocation functions. Call once, before
 * any other libevent function (main). */
void evmem_init(void);

/* A cell of the zone for EVMEM_CELL bytes or fewer (malloc's when the zone is full or off),
 * malloc(size) otherwise, or for EVMEM_BLOCK or EVMEM_SMALL_BLOCK bytes a block this thread
 * kept. */
void *evmem_malloc(size_t size);

/* realloc(p, size), for a cell of the zone too (moved out of it when size is larger). */
void *evmem_realloc(void *p, size_t size);

/* free(p) (a cell of the zone goes back to it), or, when p is a block of EVMEM_BLOCK's size
 * and this thread keeps fewer than EVMEM_KEEP of them (of EVMEM_SMALL_BLOCK's,
 * EVMEM_SMALL_KEEP), keeps it. Blocks from evmem_init's caller on are recognised. A block freed
 * again while kept (this thread's; under ASan any thread's) aborts, as malloc's double free
 * check. */
void evmem_free(void *p);

/* An empty evbuffer: one this thread kept (evmem_buffer_free), else evbuffer_new's. NULL when
 * out of memory. Only for buffers that never get callbacks or flags (sock.c's). */
struct evbuffer *evmem_buffer_new(void);

/* Frees the chain an empty b may still hold: the room a read reserved and found nothing for (an
 * EAGAIN or an end, sock.c), which libevent keeps until the buffer is freed. Returns what b
 * held before (0 when it was empty). */
size_t evmem_drop_empty(struct evbuffer *b);

/* Drains b (NULL is fine) and keeps it for this thread's next evmem_buffer_new, or frees it when
 * EVMEM_BUFFERS are kept already. */
void evmem_buffer_free(struct evbuffer *b);

/* Moves n bytes of in (which holds at least n) to the end of out without copying them where it
 * can: evbuffer_remove_buffer, whose failure libevent 2.1 hides (the last chain, shared with
 * later bytes, is copied with an evbuffer_add whose failure it ignores: the bytes are drained
 * and n returned all the same), so out's growth is what says they arrived. 0, or -1 out of
 * memory (the bytes then lost: the caller ends what they belonged to). */
int evmem_move(struct evbuffer *in, struct evbuffer *out, size_t n);

/* Frees the blocks and buffers the calling thread keeps. A thread's end does it by itself; the
 * main thread calls it before it exits. */
void evmem_flush(void);

#endif
