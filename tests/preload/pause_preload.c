/*
 * pause_preload.c — an LD_PRELOAD library that pauses a Portico worker right after it sends the
 * final head of an HTTP/1 answer (or a 101), to show a test that reads a count too early: what
 * the worker does after that send (count the exchange, log it, close) comes PORTICO_PAUSE_MS
 * later (default 300), so a test that reads /metrics, /status or the admin API on another
 * connection as soon as it has the answer finds the count not made. Not used by the tests
 * themselves; run one with it:
 *     LD_PRELOAD=$PWD/build/tests/pause_preload.so build/tests/integration/test_X
 * (an ASan build's test and Portico take it with ASAN_OPTIONS=verify_asan_link_order=0).
 * Only threads named "worker N" pause (Portico's; the test's own origins send heads too), and
 * not worker 0, which serves the admin listener: its answers were counted before a scrape it
 * serves could begin, and pausing it would only slow every scrape. Built apart, no sanitizers.
 * Each answer of a paused worker costs PORTICO_PAUSE_MS, so a row that needs many in a bounded
 * time times out with it (test_upgrade_refuses_nothing: 1200 connections a wait, half on worker
 * 1, 20 s; it passes at PORTICO_PAUSE_MS=30): that is the pause, not a count read too early.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static long pause_ms = 300;

__attribute__((constructor)) static void init(void)
{
    real_send = (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    real_sendmsg = (ssize_t(*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    const char *ms = getenv("PORTICO_PAUSE_MS");
    if (ms)
        pause_ms = strtol(ms, NULL, 10);
}

/* A worker other than worker 0 that just sent bytes beginning an HTTP/1 head that ends its
 * exchange: a final one, or a 101 (its tunnel is counted after it went). Another 1xx ends
 * nothing: pausing after each only slowed the tests of their timing. */
static bool pauses(const void *p, size_t n, ssize_t sent)
{
    const char *head = p;
    char name[16];
    if (sent <= 0 || n < 12 || memcmp(head, "HTTP/1.", 7) != 0 ||
        (head[9] == '1' && memcmp(head + 9, "101", 3) != 0) ||
        pthread_getname_np(pthread_self(), name, sizeof(name)) != 0)
        return false;
    return strncmp(name, "worker ", 7) == 0 && strcmp(name, "worker 0") != 0;
}

static void pause_now(void)
{
    struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t n = real_send(fd, buf, len, flags);
    if (pauses(buf, len, n))
        pause_now();
    return n;
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    ssize_t n = real_sendmsg(fd, m, flags);
    if (m->msg_iovlen > 0 && pauses(m->msg_iov[0].iov_base, m->msg_iov[0].iov_len, n))
        pause_now();
    return n;
}
