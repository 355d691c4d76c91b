/*
 * test_upgrade.c — the new process's end of a binary upgrade (upgrade.h): PORTICO_UPGRADE read
 * once and unset; each descriptor told by what it is (a listening socket by its address, a claim
 * by its name, anything else ignored with a warning) and marked close-on-exec again; sockets of
 * one address spread over the workers as a reload spreads them; a claim matched whatever uid
 * its name carries; the ready pipe written once, with the sockets taken. Also the old
 * process's path resolution, and a stop's cancel once the new process said it serves.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/upgrade.h"
#include "portico/util.h"

/* A listening SO_REUSEPORT socket on 127.0.0.1:port (0: the kernel's choice), handed over
 * without close-on-exec as an upgrade's child has it; its address in *a. */
static int listening(uint16_t port, struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof(*a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
    return fd;
}

static bool cloexec(int fd)
{
    return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static void test_inherit(void **state)
{
    (void)state;
    /* A variable that is not ours (another version's): a warning, nothing taken. */
    setenv(UPGRADE_ENV, "ready=x", 1);
    assert_true(upgrade_inherit());
    assert_null(getenv(UPGRADE_ENV));

    struct sockaddr_in a, b;
    int s0 = listening(0, &a), s1 = listening(ntohs(a.sin_port), &a), other = listening(0, &b);
    char name[64];
    snprintf(name, sizeof(name), "portico-test-upgrade/0/%d/key", (int)getpid());
    int claim = abstract_lock(name);
    assert_true(claim >= 0);
    int pipefd[2], unrelated[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(pipe(unrelated), 0); /* neither a socket nor a claim: ignored */
    char value[256];
    snprintf(value, sizeof(value), "ready=%d fds=%d,%d,%d,%d,%d", pipefd[1], s0, s1, other,
             claim, unrelated[0]);
    setenv(UPGRADE_ENV, value, 1);
    assert_true(upgrade_inherit());
    assert_true(upgrade_inherited());
    assert_null(getenv(UPGRADE_ENV)); /* our own upgrade, later, names its own */
    assert_true(cloexec(s0) && cloexec(s1) && cloexec(other) && cloexec(claim));
    assert_true(cloexec(pipefd[1]));

    /* two sockets of one address over two workers: one each, in order; none left over. Those
     * not taken yet are counted per address (worker.c needs that many fewer descriptors) */
    assert_int_equal(upgrade_sockets_on((struct sockaddr *)&a, sizeof(a)), 2);
    assert_int_equal(upgrade_sockets_on((struct sockaddr *)&b, sizeof(b)), 1);
    int got[4];
    assert_int_equal(upgrade_take_sockets((struct sockaddr *)&a, sizeof(a), 1, 2, got, 4), 1);
    assert_int_equal(got[0], s1);
    assert_int_equal(upgrade_sockets_on((struct sockaddr *)&a, sizeof(a)), 1);
    assert_int_equal(upgrade_take_sockets((struct sockaddr *)&a, sizeof(a), 0, 2, got, 4), 1);
    assert_int_equal(got[0], s0);
    assert_int_equal(upgrade_take_sockets((struct sockaddr *)&a, sizeof(a), 0, 1, got, 4), 0);
    assert_int_equal(upgrade_sockets_on((struct sockaddr *)&a, sizeof(a)), 0);
    /* the claim, whatever uid its name says; once */
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "portico-test-upgrade");
    char key[32];
    snprintf(key, sizeof(key), "%d/kex", (int)getpid());
    assert_int_equal(upgrade_take_claim(prefix, key), -1);
    snprintf(key, sizeof(key), "%d/key", (int)getpid());
    assert_int_equal(upgrade_take_claim("portico-test", key), -1);
    assert_int_equal(upgrade_take_claim(prefix, key), claim);
    assert_int_equal(upgrade_take_claim(prefix, key), -1);

    /* what was not taken (an address the new file dropped) is closed; the rest stays ours */
    upgrade_drop_unused();
    assert_int_equal(fcntl(other, F_GETFD), -1);
    assert_true(fcntl(s0, F_GETFD) >= 0 && fcntl(claim, F_GETFD) >= 0);
    assert_true(fcntl(unrelated[0], F_GETFD) >= 0); /* not ours: left alone */

    /* 'R', then a bit per descriptor of the list for the sockets taken (s0 and s1, the first
     * two): the old process closes the others */
    upgrade_tell_ready();
    unsigned char word[64];
    assert_int_equal(read(pipefd[0], word, sizeof(word)), 2);
    assert_int_equal(word[0], 'R');
    assert_int_equal(word[1], 0x03);
    char byte = 0;
    assert_int_equal(read(pipefd[0], &byte, 1), 0); /* the write end closed */
    upgrade_tell_ready(); /* once only: nothing more */

    close(s0);
    close(s1);
    close(claim);
    close(pipefd[0]);
    close(unrelated[0]);
    close(unrelated[1]);
}

/* The binary is resolved at start: a relative argv[0] against the working directory, a bare
 * name (found on PATH) as the file /proc/self/exe names. */
static void test_binary_path(void **state)
{
    (void)state;
    char *const argv[] = {"portico", NULL};
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(upgrade_init("build/portico", argv), 0);
    snprintf(want, sizeof(want), "%s/build/portico", cwd);
    assert_string_equal(upgrade_binary(), want);
    assert_int_equal(upgrade_init("/usr/sbin/portico", argv), 0);
    assert_string_equal(upgrade_binary(), "/usr/sbin/portico");
    assert_int_equal(upgrade_init("portico", argv), 0);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    assert_string_equal(upgrade_binary(), exe);
    assert_int_equal(upgrade_state(NULL), UPGRADE_IDLE);
    assert_int_equal(upgrade_child(), 0);
}

/* A stop taken while the new process's ready word is unsettled (its SIGTERM came first, a
 * lower signal than the wake): the new process is told to stop too, and does not serve on
 * unasked. A shell stands for it: it says 'R' on the ready pipe named in PORTICO_UPGRADE, then
 * sleeps; the bare 'R' says nothing of the sockets, so all count as taken. */
static void test_cancel_after_ready(void **state)
{
    (void)state;
    char *const argv[] = {"sh", "-c",
                          "fd=${" UPGRADE_ENV "#ready=}; fd=${fd%% *}; eval \"printf R >&$fd\"; "
                          "exec sleep 5",
                          NULL};
    assert_int_equal(upgrade_init("/bin/sh", argv), 0);
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &wake, NULL), 0);
    char why[256];
    assert_int_equal(upgrade_begin(NULL, 0, pthread_self(), SIGUSR1, why, sizeof(why)), 0);
    pid_t child = upgrade_child();
    assert_true(child > 0);
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    assert_true(pidfd >= 0);
    int sig = 0;
    assert_int_equal(sigwait(&wake, &sig), 0);
    assert_int_equal(upgrade_state(NULL), UPGRADE_READY);
    /* the bare 'R' of a Portico that tells nothing of its sockets (the first version with an
     * upgrade): every socket handed over counts as taken, none is closed under it */
    assert_true(upgrade_taken(0));
    assert_true(upgrade_taken(9));

    upgrade_cancel(); /* the stop, before the caller settled the word */
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    bool ended = poll(&p, 1, 2000) == 1; /* sleep 5 lasts longer */
    if (!ended)
        kill(child, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    close(pidfd);
    upgrade_end();
    assert_true(ended);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    assert_int_equal(upgrade_state(NULL), UPGRADE_IDLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inherit),
        cmocka_unit_test(test_binary_path),
        cmocka_unit_test(test_cancel_after_ready),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
