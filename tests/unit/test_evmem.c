/*
 * test_evmem.c — libevent's allocator (evmem.c): a 16 KiB read's chain, freed when drained, is
 * kept for the thread's next read instead of going back to malloc, and a small write's for the
 * next write; so are a closed connection's emptied evbuffers, for the next connection; a
 * thread's end frees what it kept (a leak would fail the ASan and valgrind runs); a block freed
 * twice stops the process.
 */
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "portico/deadline.h"
#include "portico/evmem.h"
#include "portico/sock.h"

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

/* Where a small write into an empty buffer lands (a forwarded head: libevent's smallest chain). */
static void *add_head(struct evbuffer *b)
{
    static const char head[300] = "GET / HTTP/1.1\r\n";
    assert_int_equal(evbuffer_add(b, head, sizeof(head)), 0);
    struct evbuffer_iovec v;
    assert_int_equal(evbuffer_peek(b, -1, NULL, &v, 1), 1);
    return v.iov_base;
}

/* A small write's chain, drained once sent, serves the next write, even when something else
 * asked malloc for a block of that size in between. */
static void test_small_chain_kept(void **state)
{
    (void)state;
    evmem_flush();
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    void *first = add_head(b);
    evbuffer_drain(b, 300);
    void *other = malloc(EVMEM_SMALL_BLOCK);
    assert_non_null(other);
    void *second = add_head(b);
    assert_ptr_equal(first, second);
    free(other);
    evbuffer_free(b);
}

/* Of a size kept, no more than `keep` blocks are, newest first. */
static void check_kept_up_to(size_t size, int keep)
{
    void *block[EVMEM_SMALL_KEEP > EVMEM_KEEP ? EVMEM_SMALL_KEEP + 1 : EVMEM_KEEP + 1];
    for (int i = 0; i <= keep; i++)
        assert_non_null(block[i] = evmem_malloc(size));
    for (int i = 0; i <= keep; i++)
        evmem_free(block[i]);
    for (int i = keep - 1; i >= 0; i--) {
        void *p = evmem_malloc(size);
        assert_ptr_equal(p, block[i]);
        free(p);
    }
}

/* Blocks of other sizes are not kept; of EVMEM_BLOCK, no more than EVMEM_KEEP, of
 * EVMEM_SMALL_BLOCK, no more than EVMEM_SMALL_KEEP. */
static void test_only_blocks_kept(void **state)
{
    (void)state;
    evmem_flush();
    void *small = evmem_malloc(100);
    assert_non_null(small);
    evmem_free(small);
    check_kept_up_to(EVMEM_BLOCK, EVMEM_KEEP);
    check_kept_up_to(EVMEM_SMALL_BLOCK, EVMEM_SMALL_KEEP);
    evmem_free(NULL);
}

/* Only a request of a kept size takes a kept block, and only a block of a kept size is kept: a
 * 100-byte allocation took a kept 32 KiB read block, and a freed 128 KiB chain was kept as a read
 * block (EVMEM_KEEP of them, 1 MiB a thread, where 256 KiB was meant). */
static void test_other_sizes_not_kept(void **state)
{
    (void)state;
    evmem_flush();
    evmem_free(malloc(EVMEM_BLOCK));
    evmem_free(malloc(EVMEM_SMALL_BLOCK));
    void *p = evmem_malloc(100);
    assert_non_null(p);
    assert_true(malloc_usable_size(p) < EVMEM_SMALL_BLOCK);
    free(p);
    evmem_flush();
    static const size_t sizes[] = {4 * EVMEM_BLOCK, 2 * EVMEM_BLOCK, 4 * EVMEM_SMALL_BLOCK};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        evmem_free(malloc(sizes[i]));
        size_t want = sizes[i] > EVMEM_BLOCK ? EVMEM_BLOCK : EVMEM_SMALL_BLOCK;
        void *q = evmem_malloc(want);
        assert_non_null(q);
        assert_true(malloc_usable_size(q) < sizes[i]); /* a block of its own size */
        free(q);
        evmem_flush();
    }
}

/* A closed connection's buffers serve the next one's, emptied (their bytes and chains gone) and
 * usable; no more than EVMEM_BUFFERS are kept, newest first. */
static void test_buffers_kept(void **state)
{
    (void)state;
    evmem_flush();
    struct evbuffer *b = evmem_buffer_new();
    assert_non_null(b);
    reserve_read(b);
    assert_int_equal(evbuffer_add(b, "left unread", 11), 0);
    size_t bsize = malloc_usable_size(b);
    evmem_buffer_free(b);
    void *other = malloc(bsize); /* malloc alone would hand a freed buffer to this caller */
    assert_non_null(other);
    struct evbuffer *again = evmem_buffer_new();
    assert_ptr_equal(again, b);
    assert_ptr_not_equal(other, b);
    free(other);
    assert_int_equal(evbuffer_get_length(again), 0);
    assert_int_equal(evbuffer_add(again, "next", 4), 0);
    char got[4];
    assert_int_equal(evbuffer_remove(again, got, sizeof(got)), 4);
    assert_memory_equal(got, "next", 4);
    evmem_buffer_free(again);
    evmem_flush();

    struct evbuffer *many[EVMEM_BUFFERS + 1];
    for (int i = 0; i <= EVMEM_BUFFERS; i++)
        assert_non_null(many[i] = evmem_buffer_new());
    for (int i = 0; i <= EVMEM_BUFFERS; i++)
        evmem_buffer_free(many[i]);
    for (int i = EVMEM_BUFFERS - 1; i >= 0; i--) {
        struct evbuffer *k = evmem_buffer_new();
        assert_ptr_equal(k, many[i]);
        evbuffer_free(k);
    }
    evmem_buffer_free(NULL);
}

/* A buffer whose last read met the end or EAGAIN (sock.c's read_in: 16 KiB reserved, nothing
 * committed) is empty but holds that read's chain, which a drain of its 0 bytes leaves: kept
 * with the buffer, 32 KiB each were held outside EVMEM_KEEP (up to 1 MiB a thread) and unpoisoned
 * under ASan. The chain goes as evbuffer_free would let it: its block is the next one kept. */
static void test_buffer_read_chain_freed(void **state)
{
    (void)state;
    evmem_flush();
    struct evbuffer *b = evmem_buffer_new();
    assert_non_null(b);
    struct evbuffer_iovec v;
    assert_int_equal(evbuffer_reserve_space(b, 16 * 1024, &v, 1), 1);
    assert_int_equal(evbuffer_commit_space(b, &v, 0), 0);
    assert_int_equal(evbuffer_get_length(b), 0);
    evmem_buffer_free(b);
    char *block = evmem_malloc(EVMEM_BLOCK);
    assert_non_null(block);
    assert_true((char *)v.iov_base > block && (char *)v.iov_base < block + EVMEM_BLOCK);
    free(block);
    struct evbuffer *again = evmem_buffer_new(); /* still usable */
    assert_ptr_equal(again, b);
    assert_int_equal(evbuffer_add(again, "next", 4), 0);
    assert_int_equal(evbuffer_get_length(again), 4);
    evmem_buffer_free(again);
    evmem_flush();
}

static void note_event(void *arg, enum sock_event ev)
{
    *(enum sock_event *)arg = ev;
}

/* The same through a sock: a connection whose peer closed (its last read met the end) leaves no
 * chain in the buffers the next connection gets. */
static void test_closed_sock_buffers_hold_no_chain(void **state)
{
    (void)state;
    evmem_flush();
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    struct event_base *base = event_base_new();
    assert_non_null(base);
    struct deadline_clock *clock = deadline_clock_new(base);
    assert_non_null(clock);
    struct sock s;
    enum sock_event last = SOCK_CONNECTED;
    assert_int_equal(sock_init(&s, clock, fds[0], NULL, note_event, &last), 0);
    close(fds[1]);
    for (int i = 0; i < 100 && last != SOCK_EOF; i++)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(last, SOCK_EOF);
    sock_close(&s);
    for (int i = 0; i < 2; i++) { /* its output, then its input */
        struct evbuffer *b = evmem_buffer_new();
        assert_non_null(b);
        assert_int_equal(evbuffer_peek(b, 1, NULL, NULL, 0), 0); /* no chain, empty or not */
        evbuffer_free(b);
    }
    deadline_clock_free(clock);
    event_base_free(base);
}

static void *thread_keeps(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        evmem_free(malloc(EVMEM_BLOCK));
        evmem_free(malloc(EVMEM_SMALL_BLOCK));
    }
    for (int i = 0; i < 3; i++)
        evmem_buffer_free(evbuffer_new());
    return NULL;
}

/* A thread ends with blocks and buffers kept: they are freed (else a leak for LeakSanitizer and valgrind). */
static void test_thread_end_frees(void **state)
{
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_keeps, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* A child frees a block of `size` twice, after `before` other blocks were kept (EVMEM_KEEP: no
 * room left to keep it again); returns how the child ended. */
static int double_free_in_child(size_t size, int before)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        int null = open("/dev/null", O_WRONLY); /* the abort's message is expected */
        if (null >= 0)
            dup2(null, STDERR_FILENO);
        void *p = malloc(size);
        evmem_free(p);
        for (int i = 0; i < before; i++)
            evmem_free(malloc(size));
        evmem_free(p);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* A block freed twice stops the process as malloc's own check does. Kept silently, it went to
 * the next two reads at once (or, freed while kept, to one after its free). */
static void test_double_free_stops(void **state)
{
    (void)state;
    evmem_flush();
    static const struct {
        size_t size;
        int before;
    } cases[] = {{EVMEM_BLOCK, 0}, {EVMEM_BLOCK, EVMEM_KEEP - 1}, {EVMEM_SMALL_BLOCK, 0},
                 {EVMEM_SMALL_BLOCK, EVMEM_SMALL_KEEP - 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int status = double_free_in_child(cases[i].size, cases[i].before);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGABRT);
    }
}

/* libevent's smallest allocations (a descriptor's map entry, 16-20 bytes) come from the zone, not
 * from malloc's chunks among everything else (where each kept a page of a burst resident), and a
 * freed one is taken again; one grown past EVMEM_CELL moves out with its bytes. */
static void test_small_allocations_packed(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* no zone under ASan: these are malloc's, checked as any other */
#endif
    char *cell = evmem_malloc(20);
    char *chunk = malloc(20); /* malloc's, beside it */
    assert_non_null(cell);
    assert_non_null(chunk);
    assert_int_equal((uintptr_t)cell % 16, 0);
    evmem_free(cell);
    free(chunk);
    /* malloc would hand back its last freed chunk of that size first */
    char *again = evmem_malloc(16);
    assert_ptr_equal(again, cell);
    assert_ptr_not_equal(again, chunk);
    assert_ptr_equal(evmem_realloc(again, 8), again);
    memcpy(again, "entry 7", 8);
    char *grown = evmem_realloc(again, 4 * EVMEM_CELL);
    assert_non_null(grown);
    assert_ptr_not_equal(grown, again);
    assert_string_equal(grown, "entry 7");
    free(grown);
    assert_ptr_equal(evmem_malloc(EVMEM_CELL), cell); /* the cell it left, free again */
    evmem_free(cell);
    assert_null(evmem_realloc(evmem_malloc(16), 0));
    void *big = evmem_malloc(EVMEM_CELL + 1); /* past the cell size: malloc's */
    assert_true(malloc_usable_size(big) > EVMEM_CELL);
    evmem_free(big);
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
        cmocka_unit_test(test_small_chain_kept),
        cmocka_unit_test(test_only_blocks_kept),
        cmocka_unit_test(test_other_sizes_not_kept),
        cmocka_unit_test(test_buffers_kept),
        cmocka_unit_test(test_buffer_read_chain_freed),
        cmocka_unit_test(test_closed_sock_buffers_hold_no_chain),
        cmocka_unit_test(test_thread_end_frees),
        cmocka_unit_test(test_double_free_stops),
        cmocka_unit_test(test_small_allocations_packed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
