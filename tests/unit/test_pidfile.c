/*
 * test_pidfile.c — the pid file (pidfile.h): which files a start may replace (absent, empty,
 * a process that is gone, a live process of another program, our own pid) and which it must not
 * (a live process of our binary, a file of something else); writing replaces the file whole;
 * removal leaves a file that another process wrote since; a claim is held by one process at once.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/pidfile.h"

static char dir[] = "/tmp/portico-pidfile-XXXXXX";
static char path[64];

static void put(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *get(void)
{
    static char buf[64];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A child that blocks until its pipe closes: a live process. With exec_sleep it runs another
 * program (`sleep`), else it stays a copy of this binary, as a second Portico would be. Returns
 * once the child is what it will be: its end of `ready` closes at exec (or by hand). */
static pid_t live_child(int *release, int exec_sleep)
{
    int fds[2], ready[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        if (exec_sleep) {
            execlp("sleep", "sleep", "30", (char *)NULL);
            _exit(127);
        }
        close(ready[1]);
        char c;
        close(fds[1]);
        ssize_t n = read(fds[0], &c, 1);
        _exit(n < 0);
    }
    close(fds[0]);
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 0);
    close(ready[0]);
    *release = fds[1];
    return pid;
}

static void end_child(pid_t pid, int release)
{
    close(release);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

enum holder {
    NOBODY, EMPTY, GARBAGE, ZERO, BIG, DEAD, ZOMBIE, OTHER_PROGRAM, OURSELVES, SAME_BINARY
};

struct check_row {
    const char *name;
    enum holder holder;
    int rc; /* pidfile_check */
};

static const struct check_row check_rows[] = {
    {"no file", NOBODY, 0},
    {"an empty file", EMPTY, 0},
    {"text that is no pid: not a pid file, kept", GARBAGE, -1},
    {"0, which no process has: not a pid file, kept", ZERO, -1},
    {"a pid and more: a file of something else, kept", BIG, -1},
    {"a process that is gone", DEAD, 0},
    /* an upgrade's new process that died while the old one, its parent, drains */
    {"a process of our binary that is gone but not reaped (a zombie)", ZOMBIE, 0},
    {"a live process of another program (pid reused after a crash)", OTHER_PROGRAM, 0},
    {"our own pid (a container restarted with the same pid)", OURSELVES, 0},
    {"a live process of our binary: another Portico", SAME_BINARY, -1},
};

static void test_check(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(check_rows) / sizeof(check_rows[0]); i++) {
        const struct check_row *row = &check_rows[i];
        print_message("  %s\n", row->name);
        unlink(path);
        pid_t pid = 0;
        int release = -1;
        char text[32];
        switch (row->holder) {
        case NOBODY:
            break;
        case EMPTY:
            put("");
            break;
        case GARBAGE:
            put("portico\n");
            break;
        case ZERO:
            put("0\n");
            break;
        case BIG:
            put("1234\n[proxy]\nlisten = 127.0.0.1:8080\n");
            break;
        case DEAD:
            pid = fork();
            assert_true(pid >= 0);
            if (pid == 0)
                _exit(0);
            waitpid(pid, NULL, 0);
            snprintf(text, sizeof(text), "%d\n", (int)pid);
            put(text);
            pid = 0;
            break;
        case ZOMBIE: { /* ended, left unreaped (WNOWAIT): end_child reaps it */
            pid = fork();
            assert_true(pid >= 0);
            if (pid == 0)
                _exit(0);
            siginfo_t info;
            assert_int_equal(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
            snprintf(text, sizeof(text), "%d\n", (int)pid);
            put(text);
            break;
        }
        case OTHER_PROGRAM:
        case SAME_BINARY:
            pid = live_child(&release, row->holder == OTHER_PROGRAM);
            snprintf(text, sizeof(text), "%d\n", (int)pid);
            put(text);
            break;
        case OURSELVES:
            snprintf(text, sizeof(text), "%d\n", (int)getpid());
            put(text);
            break;
        }
        assert_int_equal(pidfile_check(path), row->rc);
        if (pid)
            end_child(pid, release);
    }
}

static void test_write_and_remove(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof(want), "%d\n", (int)getpid());
    put("12345678 and more\n");
    assert_int_equal(pidfile_write(path), 0);
    assert_string_equal(get(), want);
    assert_int_equal(pidfile_remove(path), 0);
    assert_null(get());
    /* Someone else's pid file since: left alone. */
    assert_int_equal(pidfile_write(path), 0);
    put("1\n");
    assert_int_equal(pidfile_remove(path), 0);
    assert_string_equal(get(), "1\n");
    /* A directory that does not exist: an error, said once. */
    assert_int_equal(pidfile_write("/nonexistent-portico-dir/p.pid"), -1);
}

/* A claim is one holder's until it closes it, whichever way the same file is named. */
static void test_claim(void **state)
{
    (void)state;
    bool handed = true;
    int first = pidfile_claim(path, &handed);
    assert_false(handed); /* no upgrade started this test */
    assert_true(first >= 0);
    char other_name[128];
    snprintf(other_name, sizeof(other_name), "%s/../%s/portico.pid", dir, strrchr(dir, '/') + 1);
    assert_int_equal(pidfile_claim(other_name, &handed), -1);
    assert_int_equal(chdir(dir), 0);
    /* relative to the working directory */
    assert_int_equal(pidfile_claim("portico.pid", &handed), -1);
    int another = pidfile_claim("another.pid", &handed);
    assert_true(another >= 0);
    close(another);
    close(first);
    int again = pidfile_claim(path, &handed);
    assert_true(again >= 0);
    close(again);
    assert_int_equal(chdir("/"), 0);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/portico.pid", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_write_and_remove),
        cmocka_unit_test(test_claim),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
