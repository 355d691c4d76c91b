/*
 * test_worker_fds.c — a worker group set up (a reload's new workers) when the process runs out
 * of descriptors between the count workers_bind makes and its workers' event bases: the group
 * is refused, and the process goes on serving with its old workers.
 *
 * The old workers accept connections meanwhile; here the test's libevent allocator takes the
 * descriptors at the first allocation after it is armed (event_config_new, right before the
 * base), which is where a flood at ulimit -n took them: 1 reload in ~1,100 under one made
 * libevent exit(1) from evsig_init_ and the proxy was gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "portico/config.h"
#include "portico/generation.h"
#include "portico/worker.h"

#define FILLERS_MAX 4096
#define RECORDED_MAX 64

/* The test's libevent allocator: once armed, its next allocation first takes every free
 * descriptor but `leave`; then it records what libevent allocates, so that the blocks of a base
 * abandoned half-made (evbase.h) can be freed by the test and LeakSanitizer stays quiet. */
static struct {
    bool armed;
    bool recording;
    int leave;
    int fillers[FILLERS_MAX];
    int nfillers;
    void *blocks[RECORDED_MAX];
    int nblocks;
} hook;

static void take_descriptors(void)
{
    hook.nfillers = 0;
    int fd;
    while (hook.nfillers < FILLERS_MAX && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        hook.fillers[hook.nfillers++] = fd;
    assert_true(errno == EMFILE); /* the limit was reached, not FILLERS_MAX */
    for (int i = 0; i < hook.leave && hook.nfillers > 0; i++)
        close(hook.fillers[--hook.nfillers]);
}

static void forget_block(void *p)
{
    for (int i = 0; p && i < hook.nblocks; i++)
        if (hook.blocks[i] == p) {
            hook.blocks[i] = hook.blocks[--hook.nblocks];
            return;
        }
}

static void *hook_malloc(size_t size)
{
    if (hook.armed) {
        hook.armed = false;
        take_descriptors();
        hook.recording = true;
    }
    void *p = malloc(size);
    if (p && hook.recording && hook.nblocks < RECORDED_MAX)
        hook.blocks[hook.nblocks++] = p;
    return p;
}

static void *hook_realloc(void *old, size_t size)
{
    if (hook.recording)
        forget_block(old); /* before: old may be gone after */
    void *p = realloc(old, size);
    void *now = p ? p : old;
    if (hook.recording && now && hook.nblocks < RECORDED_MAX)
        hook.blocks[hook.nblocks++] = now;
    return p;
}

static void hook_free(void *p)
{
    if (hook.recording)
        forget_block(p);
    free(p);
}

/* A configuration with one listener on a port the kernel just gave out, and no simulator (its
 * thread is not what is tested). */
static struct generation *generation_for_test(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    close(s);
    char text[256];
    snprintf(text, sizeof(text),
             "[proxy]\nlisten = 127.0.0.1:%u\nworkers = 1\naccess_log = off\n"
             "[upstream app]\norigin = 127.0.0.1:9\n",
             (unsigned)ntohs(sin.sin_port));
    int nerrors = 0;
    struct config *cfg = cfg_load_string(text, "test.ini", ".", stderr, &nerrors);
    assert_non_null(cfg);
    struct generation *gen = generation_new(cfg, 2);
    assert_non_null(gen);
    return gen;
}

struct fds_row {
    const char *name;
    int leave; /* descriptors left free when the base is made */
};

static const struct fds_row fds_rows[] = {
    /* epoll_create1 takes the last one and the signal pipe finds none: libevent's exit(1) */
    {"one descriptor left", 1},
    /* epoll_create1 fails: libevent fell back to poll, whose signal pipe failed the same way */
    {"none left", 0},
};

static void test_bind_out_of_descriptors(void **state)
{
    (void)state;
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    for (size_t i = 0; i < sizeof(fds_rows) / sizeof(fds_rows[0]); i++) {
        const struct fds_row *row = &fds_rows[i];
        struct generation *gen = generation_for_test();
        /* low enough to fill at once, high enough for the count workers_bind makes first */
        low = saved;
        low.rlim_cur = 512;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        hook.leave = row->leave;
        hook.nblocks = 0;
        hook.armed = true;
        struct worker_group *g = workers_bind(gen, NULL);
        hook.recording = false;
        for (int f = 0; f < hook.nfillers; f++)
            close(hook.fillers[f]);
        hook.nfillers = 0;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
        if (g)
            fail_msg("%s: the group was set up without its descriptors", row->name);
        if (hook.armed)
            fail_msg("%s: no libevent allocation after the count", row->name);
        for (int b = 0; b < hook.nblocks; b++) /* the half-made base's, when there is one */
            free(hook.blocks[b]);
        hook.nblocks = 0;
        /* with its descriptors back, the same generation's group is set up */
        g = workers_bind(gen, NULL);
        if (!g)
            fail_msg("%s: no group once the descriptors are back", row->name);
        workers_free(g);
        generation_free(gen);
    }
}

int main(void)
{
    /* before libevent allocates anything */
    event_set_mem_functions(hook_malloc, hook_realloc, hook_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind_out_of_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
