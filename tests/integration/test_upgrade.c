/*
 * test_upgrade.c — the binary upgrade (SIGUSR2, upgrade.h) with the real binary: clients making
 * new connections throughout see none refused or reset and every request answered; an exchange
 * in flight on the old process finishes after the hand-over; the new process's stop or death
 * during the old one's drain leaves nothing listening (refused, and a new start serves at once);
 * an address the new file drops is closed by the old process after taking its queue; 526
 * sockets go over; a configuration with errors, a binary that exits or cannot be executed leave
 * the old process serving with its pid file; the path the binary was started from is what
 * runs, not /proc/self/exe; a second SIGUSR2 (and a SIGHUP) while an upgrade is under way are
 * refused, and SIGUSR2 to PID 1 of a PID namespace.
 *
 * The new process is the old one's child: this test process is a child subreaper
 * (PR_SET_CHILD_SUBREAPER), so once the old one exits the new one is ours to stop and reap.
 * Every wait is on an event: a log line, the pid file, a process's end (pidfd), a semaphore.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy_helpers.h"

#define IO_MS 5000
/* SIGUSR2 to the old process's stop; longer for a slower Portico (valgrind's, whose
 * PORTICO_TEST_START_MS the harness takes too) */
#define UPGRADE_MS upgrade_ms()
#define GATE_MS 20000

static int upgrade_ms(void)
{
    const char *slow = getenv("PORTICO_TEST_START_MS");
    int ms = SANITIZED ? 20000 : 10000;
    return slow && atoi(slow) > ms ? atoi(slow) : ms;
}

/* ---- an origin whose /slow answers (201) only once the test opens the gate ---- */

static int gate_fds[2] = {-1, -1};

static int gate_wait(int fd, void *arg)
{
    (void)fd, (void)arg;
    struct pollfd p = {.fd = gate_fds[0], .events = POLLIN};
    poll(&p, 1, GATE_MS);
    return 0;
}

static const struct fo_step slow_script[] = {
    FO_CALL(gate_wait, NULL),
    FO_RESPOND(201, NULL, "created after the gate\n", FO_LENGTH),
    FO_END(),
};
static const struct fo_step fast_script[] = {FO_RESPOND_OK(), FO_END()};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strstr(req->head, " /slow") ? slow_script : fast_script;
}

static struct fake_origin *origin_start(void)
{
    assert_int_equal(pipe2(gate_fds, O_CLOEXEC), 0); /* no Portico holds it open */
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .pick_script = pick};
    struct fake_origin *fo = fake_origin_start(&o);
    assert_non_null(fo);
    return fo;
}

static void gate_open(void)
{
    if (gate_fds[1] >= 0)
        close(gate_fds[1]);
    gate_fds[1] = -1;
}

static void origin_stop(struct fake_origin *o)
{
    gate_open();
    fake_origin_stop(o);
    close(gate_fds[0]);
    gate_fds[0] = -1;
}

/* ---- Portico ---- */

/* The configuration of these tests (extra: one more [proxy] line, may be ""). */
static int write_config(struct harness *h, uint16_t origin_port, const char *extra)
{
    return harness_write_config(h,
                                "[proxy]\n"
                                "listen = 127.0.0.1:{{port:listen}}\n"
                                "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                "workers = 2\n"
                                "pid_file = {{dir}}/portico.pid\n"
                                "access_log = {{dir}}/access.log\n"
                                "access_log_format = text\n"
                                "%s\n"
                                "[upstream u]\n"
                                "origin = 127.0.0.1:%u\n",
                                extra, (unsigned)origin_port);
}

/* Starts Portico (bin: a binary of the test's own, or NULL for $PORTICO_BIN; extra as for
 * write_config). Under scripts/valgrind.sh bin is a copy of the binary its wrapper runs
 * (portico_file): the wrapper runs bin, so that an upgrade execs the file the test changes. */
static struct harness *start_with(uint16_t origin_port, const char *bin, const char *extra)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    const char *runs = getenv("PORTICO_VALGRIND_RUNS");
    char *wrapped = runs && bin ? strdup(runs) : NULL;
    if (wrapped)
        assert_int_equal(setenv("PORTICO_VALGRIND_RUNS", bin, 1), 0);
    else if (bin)
        harness_set_bin(h, bin);
    assert_int_equal(write_config(h, origin_port, extra), 0);
    int started = harness_start(h);
    if (wrapped)
        assert_int_equal(setenv("PORTICO_VALGRIND_RUNS", wrapped, 1), 0);
    free(wrapped);
    if (started != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

static struct harness *start(uint16_t origin_port, const char *bin)
{
    return start_with(origin_port, bin, "");
}

/* The pid in the pid file, 0 when none. */
static long pid_file(struct harness *h)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/portico.pid", harness_dir(h));
    char *text = tu_read_file(path, NULL);
    long pid = text ? strtol(text, NULL, 10) : 0;
    free(text);
    return pid;
}

/* Status of one GET path on a new connection to port; -1 when refused or broken. */
static int get(uint16_t port, const char *path)
{
    struct raw_conn *c = raw_connect(port, IO_MS);
    if (!c)
        return -1;
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    struct raw_response r = {0}; /* a failed read may hold parts of one too */
    int status = raw_send_str(c, req) == 0 && raw_read_response(c, &r, IO_MS) == 0 ? r.status : -1;
    raw_response_free(&r);
    raw_close(c);
    return status;
}

/* The new process of the test running, for teardown to kill when the test failed first. */
static long new_pid_live;

/* The new process's pid, from the old one's line "upgrade: the new process (pid N) serves". */
static long new_pid_logged(struct harness *h)
{
    char *err = harness_stderr(h);
    const char *at = strstr(err, "upgrade: the new process (pid ");
    long pid = at ? strtol(at + strlen("upgrade: the new process (pid "), NULL, 10) : 0;
    free(err);
    new_pid_live = pid;
    return pid;
}

/* SIGUSR2, then the hand-over: the old process says the new one serves and exits 0 by itself
 * (with its drain); the pid file names the new one. Returns the new pid. */
static long upgrade(struct harness *h)
{
    long old = harness_pid(h);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    if (harness_wait_log(h, "upgrade: stopping: listeners closed", UPGRADE_MS) != 0) {
        char *err = harness_stderr(h);
        fail_msg("no hand-over:\n%s", err);
    }
    long pid = new_pid_logged(h);
    assert_true(pid > 0 && pid != old);
    assert_int_equal(pid_file(h), pid); /* written before the new process said it serves */
    return pid;
}

/* The old process's end: by itself, exit 0. */
static void assert_exits_0(struct harness *h, int ms)
{
    if (harness_wait_exit(h, ms) != 0)
        fail_msg("the old portico still runs %d ms later", ms);
    const struct harness_exit *e = harness_exit_info(h);
    if (!e->exited || e->code != 0) {
        char *err = harness_stderr(h);
        fail_msg("the old portico ended with %s %d:\n%s", e->exited ? "exit code" : "signal",
                 e->exited ? e->code : e->signal, err);
    }
}

/* Tells the process pid (ours or the old process's child) sig and waits up to ms for it to end,
 * not reaping it (its pidfd says so). 0, or -1 when it still runs. */
static int signal_and_wait(long pid, int sig, int ms)
{
    int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    assert_true(pidfd >= 0);
    assert_int_equal(kill((pid_t)pid, sig), 0);
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int rc = poll(&p, 1, ms) == 1 ? 0 : -1;
    close(pidfd);
    return rc;
}

/* Stops the new process (ours once the old one exited: we are a subreaper) and returns its
 * exit code; 128 + signal when it died of one (SIGKILL after IO_MS). */
static int stop_new(long pid)
{
    if (signal_and_wait(pid, SIGTERM, SANITIZED ? 4 * IO_MS : IO_MS) != 0)
        kill((pid_t)pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
    new_pid_live = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A connection whose GET /slow the gated origin holds (gate_open answers it 201): the
 * exchange in flight that keeps an old process draining. */
static struct raw_conn *hold_slow(struct harness *h, struct fake_origin *o)
{
    struct raw_conn *busy = px_connect(h);
    assert_int_equal(raw_send_str(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_requests(o, 1, IO_MS), 0);
    return busy;
}

/* The held exchange answered (201) once the gate opens, and the old process then exits 0. */
static void finish_slow(struct harness *h, struct raw_conn *busy)
{
    gate_open();
    struct raw_response r;
    assert_int_equal(raw_read_response(busy, &r, IO_MS), 0);
    assert_int_equal(r.status, 201);
    raw_response_free(&r);
    raw_close(busy);
    assert_exits_0(h, IO_MS);
}

/* ---- (1) clients making new connections see none refused or reset ---- */

/* New connections, one GET each, answered by the origin through Portico: until told to stop,
 * at most CHURN_MAX each. Client 0 posts `reached` once `at` of its own are answered. */
#define CHURN_MAX 20000
#define CHURN_CLIENTS 2
#define CHURN_WAIT_S (SANITIZED ? 60 : 20)

struct churn {
    uint16_t port;
    atomic_bool stop;
    atomic_int answered, lost;
    atomic_int at;                         /* post reached once answered gets here; 0: never */
    sem_t *reached;
    pthread_t thread;
};

/* The clients of the test running, static and stopped by teardown too: a failed check leaves
 * the test (longjmp) with them running, and on its stack the next test's frames took their
 * place (a client's count went into a pointer there: a SIGSEGV in that test). */
static struct {
    struct churn client[CHURN_CLIENTS];
    sem_t reached;
    int running; /* clients started */
} churn;

static void *churn_main(void *arg)
{
    struct churn *t = arg;
    for (int i = 0; i < CHURN_MAX && !atomic_load(&t->stop); i++) {
        int status = get(t->port, "/");
        if (status == 200) {
            int n = atomic_fetch_add(&t->answered, 1) + 1;
            int at = atomic_load(&t->at);
            if (at && n == at)
                sem_post(t->reached);
        } else {
            atomic_fetch_add(&t->lost, 1);
        }
    }
    return NULL;
}

/* Starts the CHURN_CLIENTS clients on port. */
static void churn_start(uint16_t port)
{
    assert_int_equal(sem_init(&churn.reached, 0, 0), 0);
    for (; churn.running < CHURN_CLIENTS; churn.running++) {
        struct churn *c = &churn.client[churn.running];
        *c = (struct churn){.port = port, .reached = &churn.reached};
        assert_int_equal(pthread_create(&c->thread, NULL, churn_main, c), 0);
    }
}

/* Connections answered so far, all clients (the last ones' once stopped). */
static int churn_answered(void)
{
    int answered = 0;
    for (int i = 0; i < CHURN_CLIENTS; i++)
        answered += atomic_load(&churn.client[i].answered);
    return answered;
}

/* Waits (bounded) until client 0 has answered `more` connections past now. */
static void churn_wait(int more)
{
    struct churn *c = &churn.client[0];
    int from = atomic_load(&c->answered);
    atomic_store(&c->at, from + more);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CHURN_WAIT_S;
    int rc;
    while ((rc = sem_timedwait(&churn.reached, &until)) != 0 && errno == EINTR)
        ;
    if (rc != 0)
        fail_msg("client 0 answered %d of %d connections in %d s (%d refused, reset or "
                 "unanswered)",
                 atomic_load(&c->answered) - from, more, CHURN_WAIT_S, atomic_load(&c->lost));
}

/* Stops and joins the clients started (none: nothing to do); their lost connections. */
static int churn_stop(void)
{
    int lost = 0;
    for (int i = 0; i < churn.running; i++)
        atomic_store(&churn.client[i].stop, true);
    for (int i = 0; i < churn.running; i++) {
        pthread_join(churn.client[i].thread, NULL);
        lost += atomic_load(&churn.client[i].lost);
    }
    if (churn.running > 0)
        sem_destroy(&churn.reached);
    churn.running = 0;
    return lost;
}

/* The upgrade in the middle of CHURN_CLIENTS clients making new connections: every one made
 * before, during and after it is answered (none refused, reset or closed without a response);
 * the old process exits 0, the pid file names the new one, which serves on and stops cleanly. */
static void test_upgrade_refuses_nothing(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = start(fake_origin_port(o), NULL);
    long old = harness_pid(h);
    assert_int_equal(pid_file(h), old);

    churn_start(harness_port(h, "listen"));
    churn_wait(600); /* traffic before */
    int before = churn_answered();
    long pid = upgrade(h);
    assert_exits_0(h, UPGRADE_MS);
    int during = churn_answered() - before;
    churn_wait(600); /* and after the old process is gone */
    int lost = churn_stop(), answered = churn_answered();
    print_message("upgrade: %d connections answered (%d between SIGUSR2 and the old process's "
                  "exit), %d refused, reset or unanswered\n",
                  answered, during, lost);
    assert_int_equal(lost, 0);
    assert_int_equal(pid_file(h), pid);
    assert_true(get(harness_port(h, "admin"), "/healthz") > 0); /* the admin socket too */
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* ---- (2) an exchange in flight on the old process ---- */

/* A slow exchange in flight on the old process when the new one takes over: the old process
 * finishes it (201, the origin's late answer) after the hand-over, while new connections go to
 * the new process, then exits 0. */
static void test_upgrade_finishes_in_flight(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = start(fake_origin_port(o), NULL);
    struct raw_conn *busy = hold_slow(h, o);

    long pid = upgrade(h);
    assert_true(harness_running(h)); /* draining: the exchange holds it */
    assert_int_equal(get(px_port(h), "/after"), 200); /* the new process answers */
    finish_slow(h, busy);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* The new process stopped while the old one still drains (an exchange holds it): the sockets
 * close with the new process's listeners, so a connection is refused at once, as after any
 * stop. The old process held them open until its own exit: connections queued with nobody to
 * accept, then were reset, and a new start could not bind there meanwhile. */
static void test_upgrade_old_lets_go(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = start(fake_origin_port(o), NULL);
    struct raw_conn *busy = hold_slow(h, o);
    long pid = upgrade(h);
    assert_int_equal(get(px_port(h), "/after"), 200); /* the new process answers */
    /* stopped; the old process's child until it exits, so waited for by its pidfd */
    assert_int_equal(signal_and_wait(pid, SIGTERM, SANITIZED ? 4 * IO_MS : IO_MS), 0);
    assert_true(harness_running(h)); /* draining: the exchange holds it */
    struct raw_conn *late = raw_connect(px_port(h), IO_MS);
    if (late) {
        raw_close(late);
        fail_msg("a connection was accepted into a queue nobody serves");
    }
    assert_null(raw_connect(harness_port(h, "admin"), IO_MS));
    finish_slow(h, busy);
    int status = 0; /* ours now, to reap (a subreaper) */
    assert_int_equal(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
    new_pid_live = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    harness_free(h);
    origin_stop(o);
}

/* The new process dies (SIGKILL) after saying it serves, while the old one drains: a new start
 * with the same file serves at once, its pid file naming a process that is gone (a zombie: the
 * old process is its parent and reaps nothing, so `kill -0` still finds it). The start was
 * refused, "Portico is already running as pid N", until the old process exited. */
static void test_upgrade_restart_after_crash(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = start(fake_origin_port(o), NULL);
    struct raw_conn *busy = hold_slow(h, o);
    long pid = upgrade(h);
    assert_int_equal(signal_and_wait(pid, SIGKILL, IO_MS), 0); /* gone, unreaped */
    assert_int_equal(pid_file(h), pid);

    struct harness *again = harness_new();
    assert_non_null(again);
    assert_int_equal(harness_write_config(again,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:%u\n"
                                          "admin_listen = 127.0.0.1:%u\n"
                                          "pid_file = %s/portico.pid\n"
                                          "access_log = off\n"
                                          "[upstream u]\n"
                                          "origin = 127.0.0.1:%u\n",
                                          (unsigned)px_port(h), (unsigned)harness_port(h, "admin"),
                                          harness_dir(h), (unsigned)fake_origin_port(o)),
                     0);
    assert_int_equal(harness_start(again), 0);
    if (harness_wait_log(again, "listening on", IO_MS) != 0)
        fail_msg("no start while the old process drains:\n%s", harness_stderr(again));
    assert_int_equal(harness_wait_port(again, px_port(h), IO_MS), 0);
    assert_int_equal(get(px_port(h), "/after"), 200);
    assert_int_equal(pid_file(h), harness_pid(again));

    finish_slow(h, busy);
    int status = 0; /* ours now (a subreaper) */
    assert_int_equal(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
    new_pid_live = 0;
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(harness_stop(again), 0);
    harness_free(again);
    harness_free(h);
    origin_stop(o);
}

/* ---- (2b) addresses the new file drops ---- */

/* The configuration of the dropped-address row: one worker that holds its listeners at one
 * connection (max_connections), the kept listen address, and `extra` ("" or more lines). */
static int write_dropping_config(struct harness *h, uint16_t origin_port, const char *extra)
{
    return harness_write_config(h,
                                "[proxy]\n"
                                "listen = 127.0.0.1:{{port:listen}}\n"
                                "%s"
                                "workers = 1\n"
                                "max_connections = 1\n"
                                "pid_file = {{dir}}/portico.pid\n"
                                "access_log = off\n"
                                "[upstream u]\n"
                                "origin = 127.0.0.1:%u\n",
                                extra, (unsigned)origin_port);
}

/* After an upgrade whose new file no longer listens on port (what: how the file lost it): the
 * old process answered the request queued there (200), still drains (the held exchange), and
 * closed the socket, so a new connection to port is refused. */
static void old_answered_and_closed(struct harness *h, struct raw_conn *queued, uint16_t port,
                                    const char *what)
{
    struct raw_response r;
    assert_int_equal(raw_read_response(queued, &r, IO_MS), 0); /* the old process took it */
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(queued);
    assert_true(harness_running(h)); /* draining: the exchange holds it */
    struct raw_conn *refused = raw_connect(port, IO_MS);
    if (refused) {
        raw_close(refused);
        fail_msg("a connection to the %s address was accepted into a queue nobody serves", what);
    }
}

/* The new file drops a listen address and moves admin_listen: the old process takes what is
 * queued on the dropped sockets (a request waiting there while its worker held its listeners is
 * answered) and closes them at once, as a reload does, so a connection to a dropped address is
 * refused, while the old one still drains. They stayed listening with nobody to accept until
 * the old process exited (5.2 s of a 6 s exchange in flight), then reset what had queued. */
static void test_upgrade_dropped_address(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_dropping_config(h, fake_origin_port(o),
                                           "listen = 127.0.0.1:{{port:gone}}\n"
                                           "admin_listen = 127.0.0.1:{{port:admin}}\n"),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    uint16_t gone = harness_port(h, "gone"), admin = harness_port(h, "admin");
    /* the one place taken: the worker holds both proxy listeners, so the next one queues */
    struct raw_conn *busy = hold_slow(h, o);
    struct raw_conn *queued = px_connect_port(gone);
    assert_int_equal(raw_send_str(queued, "GET /q HTTP/1.1\r\nHost: t\r\n\r\n"), 0);

    assert_int_equal(write_dropping_config(h, fake_origin_port(o),
                                           "admin_listen = 127.0.0.1:{{port:admin2}}\n"),
                     0);
    long pid = upgrade(h);
    old_answered_and_closed(h, queued, gone, "dropped");
    assert_null(raw_connect(admin, IO_MS)); /* the admin address moved */
    assert_true(get(harness_port(h, "admin2"), "/healthz") > 0);
    assert_int_equal(get(px_port(h), "/after"), 200); /* the kept one: the new process */

    finish_slow(h, busy);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* The new file moves the one listen address: the new process takes none of the sockets handed
 * over, and says so (a byte of no bits, not the bare word of a Portico that tells nothing,
 * which means all of them): the old process takes the request queued on the old address and
 * closes it, so a connection there is refused, while the new address serves. */
static void test_upgrade_takes_no_socket(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_dropping_config(h, fake_origin_port(o), ""), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    uint16_t old_port = px_port(h);
    struct raw_conn *busy = hold_slow(h, o);
    struct raw_conn *queued = px_connect_port(old_port);
    assert_int_equal(raw_send_str(queued, "GET /q HTTP/1.1\r\nHost: t\r\n\r\n"), 0);

    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:moved}}\n"
                                          "workers = 1\n"
                                          "pid_file = {{dir}}/portico.pid\n"
                                          "access_log = off\n"
                                          "[upstream u]\n"
                                          "origin = 127.0.0.1:%u\n",
                                          (unsigned)fake_origin_port(o)),
                     0);
    long pid = upgrade(h);
    old_answered_and_closed(h, queued, old_port, "moved");
    assert_int_equal(get(harness_port(h, "moved"), "/after"), 200);

    finish_slow(h, busy);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* ---- (2c) many sockets ---- */

/* 35 workers on 15 listen addresses (the harness's 16 ports with the admin one): 525 sockets,
 * the admin one and the claims are handed over, every address answers from the new process.
 * The first version handed 512 descriptors at most and refused SIGUSR2 past them (64 workers,
 * the default on 64 cores, on 8 addresses did). */
static void test_upgrade_many_sockets(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = harness_new();
    assert_non_null(h);
    char listens[15 * 48] = "listen = 127.0.0.1:{{port:listen}}\n";
    for (int i = 1; i < 15; i++)
        snprintf(listens + strlen(listens), sizeof(listens) - strlen(listens),
                 "listen = 127.0.0.1:{{port:l%d}}\n", i);
    char extra[sizeof(listens) + 64];
    snprintf(extra, sizeof(extra), "workers = 35\n%s", listens);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "%s"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "pid_file = {{dir}}/portico.pid\n"
                                          "access_log = off\n"
                                          "[upstream u]\n"
                                          "origin = 127.0.0.1:%u\n",
                                          extra, (unsigned)fake_origin_port(o)),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    /* 1,024 descriptors, the hard limit too (Portico raises its soft one to the hard one at
     * start): a start of this file fits in them, and so must the new process, which counted the
     * 526 it inherits twice and was refused (a host whose hard limit is below ~1,500 failed the
     * row, one above passed it) */
    struct rlimit tight = { .rlim_cur = 1024, .rlim_max = 1024 };
    if (!px_under_valgrind(harness_pid(h))) /* valgrind keeps descriptors of its own above */
        assert_int_equal(prlimit(harness_pid(h), RLIMIT_NOFILE, &tight, NULL), 0);
    long pid = upgrade(h);
    assert_true(harness_log_contains(h, "starting ") &&
                harness_log_contains(h, " with 526 listening sockets"));
    assert_exits_0(h, IO_MS);
    assert_int_equal(get(px_port(h), "/"), 200);
    for (int i = 1; i < 15; i++) {
        char name[16];
        snprintf(name, sizeof(name), "l%d", i);
        assert_int_equal(get(harness_port(h, name), "/"), 200);
    }
    assert_true(get(harness_port(h, "admin"), "/healthz") > 0);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* ---- (3) a configuration with errors ---- */

/* How often needle occurs in the captured stderr. */
static int stderr_count(struct harness *h, const char *needle)
{
    char *err = harness_stderr(h);
    int n = 0;
    for (const char *at = err; (at = strstr(at, needle)); at++)
        n++;
    free(err);
    return n;
}

/* error_log on stderr or in a file: where the FILE:LINE lines of a file with errors go. */
struct bad_config_row {
    const char *name;
    const char *error_log;                 /* the extra line before the bad one */
    const char *bad;                       /* the line of that file with its error */
    const char *error_file;                /* the error log file in the temp dir, or NULL */
};

static const struct bad_config_row bad_config_rows[] = {
    {"error_log on stderr", "", "8: unknown key 'no_such_key'", NULL},
    /* a daemon's stderr may lead nowhere: the lines must be in the file too, as a reload's */
    {"error_log in a file", "error_log = {{dir}}/error.log\n", "9: unknown key 'no_such_key'",
     "error.log"},
};

/* The file has an error when SIGUSR2 comes: the new process exits 1 and its FILE:LINE lines
 * are said once on stderr and, with error_log in a file, there too (the old process says them
 * for it, as for a reload's); the old one says why the upgrade failed and serves on, the pid
 * file still naming it; a later upgrade with the file fixed goes through. */
static void bad_config(const struct bad_config_row *row)
{
    struct fake_origin *o = origin_start();
    struct harness *h = start_with(fake_origin_port(o), NULL, row->error_log);
    long old = harness_pid(h);
    char extra[256];
    snprintf(extra, sizeof(extra), "%sno_such_key = 1", row->error_log);
    assert_int_equal(write_config(h, fake_origin_port(o), extra), 0);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    const char *failed = ") exited with status 1; still serving";
    if (row->error_file)
        assert_int_equal(harness_wait_file(h, row->error_file, failed, UPGRADE_MS), 0);
    else
        assert_int_equal(harness_wait_log(h, failed, UPGRADE_MS), 0);
    char needle[PATH_MAX + 64];
    snprintf(needle, sizeof(needle), "%s:%s", harness_config_path(h), row->bad);
    assert_int_equal(stderr_count(h, needle), 1);
    if (row->error_file)
        assert_true(harness_file_contains(h, row->error_file, needle));
    assert_true(harness_running(h));
    assert_int_equal(pid_file(h), old);
    assert_int_equal(get(px_port(h), "/"), 200);

    assert_int_equal(write_config(h, fake_origin_port(o), row->error_log), 0);
    long pid = row->error_file ? 0 : upgrade(h);
    if (row->error_file) { /* the lines are in the file: read the new pid there */
        assert_int_equal(harness_signal(h, SIGUSR2), 0);
        assert_int_equal(harness_wait_file(h, row->error_file,
                                           "upgrade: stopping: listeners closed", UPGRADE_MS),
                         0);
        pid = pid_file(h);
        assert_true(pid > 0 && pid != old);
        new_pid_live = pid;
    }
    assert_exits_0(h, IO_MS);
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

static void test_upgrade_bad_config(void **state)
{
    (void)state;
    for (size_t r = 0; r < ARRAY_SIZE(bad_config_rows); r++) {
        print_message("  %s\n", bad_config_rows[r].name);
        bad_config(&bad_config_rows[r]);
    }
}

/* ---- (4) the path is what runs ---- */

/* Copies file from to to (mode 0755) by way of a temporary name renamed over it, as a package
 * manager installs a binary: the running process keeps the old file, now without a name. */
static void install(const char *from, const char *to)
{
    size_t len;
    char *bytes = tu_read_file(from, &len);
    assert_non_null(bytes);
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", to);
    assert_int_equal(tu_write_file(tmp, bytes, len), 0);
    free(bytes);
    assert_int_equal(chmod(tmp, 0755), 0);
    assert_int_equal(rename(tmp, to), 0);
}

static void install_text(const char *text, const char *to)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", to);
    assert_int_equal(tu_write_file(tmp, text, strlen(text)), 0);
    assert_int_equal(chmod(tmp, 0755), 0);
    assert_int_equal(rename(tmp, to), 0);
}

static const char *portico_bin(void)
{
    return getenv("PORTICO_BIN") ? getenv("PORTICO_BIN") : "build/portico";
}

/* The Portico binary itself: under scripts/valgrind.sh PORTICO_BIN is its wrapper, a script. */
static const char *portico_file(void)
{
    return getenv("PORTICO_VALGRIND_RUNS") ? getenv("PORTICO_VALGRIND_RUNS") : portico_bin();
}

/* Started from a copy of the binary: replaced by a script that exits 3, SIGUSR2 runs the
 * script (the old binary, which /proc/self/exe still names, would have served); removed, the
 * upgrade fails with exec's reason; renamed over with the real binary, the upgrade goes through
 * and the new process runs that file. Each failure leaves the old process serving. */
static void test_upgrade_runs_the_path(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    char dir[PATH_MAX], bin[PATH_MAX + 16];
    assert_int_equal(tu_make_temp_dir("portico-upgrade-bin", dir, sizeof(dir)), 0);
    snprintf(bin, sizeof(bin), "%s/portico", dir);
    install(portico_file(), bin);
    struct harness *h = start(fake_origin_port(o), bin);
    long old = harness_pid(h);

    install_text("#!/bin/sh\nexit 3\n", bin);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    assert_int_equal(harness_wait_log(h, ") exited with status 3; still serving", UPGRADE_MS), 0);
    assert_int_equal(pid_file(h), old);
    assert_int_equal(get(px_port(h), "/"), 200);

    assert_int_equal(unlink(bin), 0);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    char needle[PATH_MAX + 64];
    snprintf(needle, sizeof(needle), "upgrade failed: cannot execute %s: No such file", bin);
    assert_int_equal(harness_wait_log(h, needle, UPGRADE_MS), 0);
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_true(harness_running(h));

    install(portico_file(), bin);
    long pid = upgrade(h);
    assert_exits_0(h, IO_MS);
    char exe_link[64], exe[PATH_MAX];
    snprintf(exe_link, sizeof(exe_link), "/proc/%ld/exe", pid);
    ssize_t n = readlink(exe_link, exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    assert_string_equal(exe, bin); /* the new file, not "(deleted)"; under valgrind too, whose
                                      * wrapper ran bin, execed now without valgrind */
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    tu_remove_tree(dir);
    origin_stop(o);
}

/* ---- (5) one upgrade at a time ---- */

/* defer_accept survives the hand-over: the new process serves the handed sockets with
 * TCP_DEFER_ACCEPT set, reading each connection's first bytes at its accept, and a client that
 * connects and sends nothing is still held by the kernel for a second before its
 * client_header_timeout (100 ms) starts. */
static void test_upgrade_keeps_defer_accept(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h = start_with(fake_origin_port(o), NULL,
                                   "defer_accept = on\nclient_header_timeout = 100ms");
    long pid = upgrade(h);
    assert_exits_0(h, IO_MS);
    assert_int_equal(get(px_port(h), "/"), 200);
    int64_t ms = px_silent_client_408_ms(px_port(h));
    print_message("  a silent client's 408 after the upgrade: %lld ms\n", (long long)ms);
    if (ms < 1000)
        fail_msg("a silent client's 408 came after %lld ms: the socket no longer defers",
                 (long long)ms);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* listen ... proxy_protocol survives the hand-over, per address: the new process reads a PROXY
 * header on the handed socket that had the flag (and refuses a request without one), and none on
 * the one without it. */
static void test_upgrade_keeps_proxy_protocol(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct harness *h =
        start_with(fake_origin_port(o), NULL, "listen = 127.0.0.1:{{port:pp}} proxy_protocol");
    long pid = upgrade(h);
    assert_exits_0(h, IO_MS);
    assert_int_equal(get(px_port(h), "/"), 200);
    struct raw_conn *c = raw_connect(harness_port(h, "pp"), IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n"
                                     "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
                     0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(get(harness_port(h, "pp"), "/"), -1); /* no header: closed unanswered */
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    origin_stop(o);
}

/* A binary that holds an upgrade back: started from a copy of the real one in a directory of
 * its own, whose path then holds a script that waits on a FIFO (release_held) before it execs
 * the real binary. */
struct held_binary {
    char dir[PATH_MAX];
    char fifo[PATH_MAX + 16];
};

static struct harness *start_held(unsigned origin_port, struct held_binary *b)
{
    char bin[PATH_MAX + 16], real[PATH_MAX];
    assert_int_equal(tu_make_temp_dir("portico-upgrade-bin", b->dir, sizeof(b->dir)), 0);
    snprintf(bin, sizeof(bin), "%s/portico", b->dir);
    snprintf(b->fifo, sizeof(b->fifo), "%s/go", b->dir);
    assert_non_null(realpath(portico_file(), real));
    install(real, bin);
    assert_int_equal(mkfifo(b->fifo, 0600), 0);
    struct harness *h = start(origin_port, bin);
    char script[3 * PATH_MAX];
    snprintf(script, sizeof(script), "#!/bin/sh\nread go < '%s'\nexec '%s' \"$@\"\n", b->fifo,
             real);
    install_text(script, bin);
    return h;
}

/* Lets the held upgrade go on. */
static void release_held(const struct held_binary *b)
{
    int w = open(b->fifo, O_WRONLY | O_CLOEXEC); /* the script has it open for reading */
    assert_true(w >= 0);
    assert_int_equal(write(w, "go\n", 3), 3);
    close(w);
}

/* The binary's path holds a script that waits on a FIFO, then execs the real binary: while it
 * waits, a second SIGUSR2 and a SIGHUP are refused with a warning and the old process serves;
 * once the FIFO is written, the upgrade goes through. */
static void test_upgrade_one_at_a_time(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct held_binary b;
    struct harness *h = start_held(fake_origin_port(o), &b);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    assert_int_equal(harness_wait_log(h, "SIGUSR2: upgrading", IO_MS), 0);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    assert_int_equal(harness_wait_log(h, "SIGUSR2 ignored: an upgrade is under way", IO_MS), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "SIGHUP ignored: an upgrade is under way", IO_MS), 0);
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_int_equal(pid_file(h), harness_pid(h));

    release_held(&b);
    assert_int_equal(harness_wait_log(h, "upgrade: stopping: listeners closed", UPGRADE_MS), 0);
    long pid = new_pid_logged(h);
    assert_int_equal(pid_file(h), pid);
    assert_exits_0(h, IO_MS);
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_int_equal(harness_wait_log_count(h, "SIGUSR2: upgrading", 1, 0), 0);
    assert_int_equal(stop_new(pid), 0);
    harness_free(h);
    tu_remove_tree(b.dir);
    origin_stop(o);
}

/* A test that failed before stopping its clients or its new process: the clients stop (none
 * runs on into the next test), the new process is killed (SIGKILL), so that none outlives the
 * run (the harness's PR_SET_PDEATHSIG covers only the process it started). */
static int teardown(void **state)
{
    (void)state;
    churn_stop();
    if (new_pid_live > 0 && kill((pid_t)new_pid_live, SIGKILL) == 0)
        waitpid((pid_t)new_pid_live, NULL, 0);
    new_pid_live = 0;
    return 0;
}

/* A stop while the new process is still starting (the script waiting on its FIFO) cancels the
 * upgrade: the new process is told SIGTERM, the old one says so and exits 0 with its drain, and
 * its pid file goes as at any stop. */
static void test_upgrade_cancelled_by_stop(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    struct held_binary b;
    struct harness *h = start_held(fake_origin_port(o), &b);
    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    assert_int_equal(harness_wait_log(h, "SIGUSR2: upgrading", IO_MS), 0);
    assert_int_equal(harness_signal(h, SIGTERM), 0);
    assert_int_equal(harness_wait_log(h, "upgrade: cancelled by the stop: the new process (pid ",
                                      IO_MS), 0);
    assert_true(harness_log_contains(h, ") was killed by SIGTERM"));
    assert_exits_0(h, IO_MS);
    assert_int_equal(pid_file(h), 0);
    assert_int_equal(get(px_port(h), "/"), -1); /* nothing serves: the new one never did */
    harness_free(h);
    tu_remove_tree(b.dir);
    origin_stop(o);
}

/* ---- PID 1 of a container ---- */

/* Whether the row's wrapper can run here, tried as it runs: a PID namespace needs root or
 * CAP_SYS_ADMIN, and the command util-linux's unshare with --kill-child (a host without it, or
 * busybox's, failed the row at the start instead of skipping it). */
static bool can_unshare_pid(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0)
            _exit(127);
        execlp("unshare", "unshare", "--pid", "--fork", "--kill-child", "true", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

/* The one child of pid (read from /proc), 0 when none yet. */
static long only_child(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", pid, pid);
    char *text = tu_read_file(path, NULL);
    long child = text ? strtol(text, NULL, 10) : 0;
    free(text);
    return child;
}

/* Portico as PID 1 of a PID namespace, as in a container (unshare --pid --fork, the way a
 * container runtime starts its first process): SIGUSR2 is refused, saying why, and it serves
 * on. The upgrade went through before, and the old process's exit, ending the namespace, took
 * the new process with it: nothing served and the pid file named a process gone. */
static void test_upgrade_refused_as_pid_1(void **state)
{
    (void)state;
    char children[64];
    snprintf(children, sizeof(children), "/proc/%d/task/%d/children", (int)getpid(),
             (int)getpid());
    if (!can_unshare_pid() || access(children, R_OK) != 0) {
        print_message("  `unshare --pid --fork --kill-child` cannot run here (needs CAP_SYS_ADMIN "
                      "and util-linux), or no /proc/PID/task/TID/children to find Portico in "
                      "it\n");
        skip();
    }
    struct fake_origin *o = origin_start();
    struct harness *h = harness_new();
    assert_non_null(h);
    char real[PATH_MAX], text[PATH_MAX + 128], wrapper[PATH_MAX + 16];
    assert_non_null(realpath(portico_bin(), real));
    snprintf(text, sizeof(text), "#!/bin/sh\nexec unshare --pid --fork --kill-child '%s' \"$@\"\n",
             real);
    assert_int_equal(harness_write_file(h, "pid1.sh", text), 0);
    snprintf(wrapper, sizeof(wrapper), "%s/pid1.sh", harness_dir(h));
    assert_int_equal(chmod(wrapper, 0755), 0);
    harness_set_bin(h, wrapper);
    assert_int_equal(write_config(h, fake_origin_port(o), ""), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    assert_int_equal(pid_file(h), 1); /* its pid in its namespace */
    long inner = only_child(harness_pid(h)); /* unshare's child: Portico, in our pid numbers */
    assert_true(inner > 0);

    assert_int_equal(kill((pid_t)inner, SIGUSR2), 0);
    if (harness_wait_log(h, "upgrade failed: this process is PID 1 of its PID namespace",
                         UPGRADE_MS) != 0)
        fail_msg("SIGUSR2 not refused:\n%s", harness_stderr(h));
    assert_false(harness_log_contains(h, "upgrade: serving in place of pid"));
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_int_equal(pid_file(h), 1);
    assert_int_equal(only_child(harness_pid(h)), inner);
    assert_int_equal(kill((pid_t)inner, SIGTERM), 0); /* unshare passes no signal on */
    assert_exits_0(h, IO_MS);
    harness_free(h);
    origin_stop(o);
}

/* ---- privileges ---- */

/* Whether every thread of pid runs as uid (real, effective, saved, filesystem). */
static bool runs_as(long pid, uid_t uid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    char *status = tu_read_file(path, NULL);
    assert_non_null(status);
    char want[96];
    snprintf(want, sizeof(want), "Uid:\t%u\t%u\t%u\t%u\n", uid, uid, uid, uid);
    bool ok = strstr(status, want) != NULL;
    free(status);
    return ok;
}

/* Started as root with `user = nobody`: the upgrade runs as nobody, takes the sockets root bound
 * and the claims root's uid names, writes the pid file in nobody's directory; the next upgrade,
 * from nobody to nobody, binds a new unprivileged address (admin_listen) as usual. */
static void test_upgrade_after_dropping_privileges(void **state)
{
    (void)state;
    TU_SKIP_UNLESS_ROOT();
    struct passwd *pw = getpwnam("nobody");
    assert_non_null(pw);
    struct fake_origin *o = origin_start();
    struct harness *h = harness_new();
    assert_non_null(h);
    char run[PATH_MAX];
    snprintf(run, sizeof(run), "%s/run", harness_dir(h));
    assert_int_equal(chmod(harness_dir(h), 0755), 0); /* nobody reads the file at the upgrade */
    assert_int_equal(mkdir(run, 0755), 0);
    assert_int_equal(chown(run, pw->pw_uid, pw->pw_gid), 0);
    const char *fmt = "[proxy]\n"
                      "listen = 127.0.0.1:{{port:listen}}\n"
                      "%s"
                      "workers = 2\n"
                      "access_log = off\n"
                      "pid_file = run/portico.pid\n"
                      "user = nobody\n"
                      "[upstream u]\norigin = 127.0.0.1:%u\n";
    assert_int_equal(harness_write_config(h, fmt, "", fake_origin_port(o)), 0);
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(harness_wait_log(h, "running as user nobody", IO_MS), 0);
    char pid_path[PATH_MAX + 32];
    snprintf(pid_path, sizeof(pid_path), "%s/portico.pid", run);

    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    if (harness_wait_log(h, "upgrade: stopping: listeners closed", UPGRADE_MS) != 0)
        fail_msg("no hand-over:\n%s", harness_stderr(h));
    long pid = new_pid_logged(h);
    char *text = tu_read_file(pid_path, NULL);
    assert_non_null(text);
    assert_int_equal(strtol(text, NULL, 10), pid);
    free(text);
    assert_true(runs_as(pid, pw->pw_uid));
    assert_exits_0(h, IO_MS);
    assert_int_equal(get(px_port(h), "/"), 200);

    /* the new process's own upgrade: the claims still name root's uid; one address more */
    assert_int_equal(harness_write_config(h, fmt, "admin_listen = 127.0.0.1:{{port:admin}}\n",
                                          fake_origin_port(o)),
                     0);
    int log_lines = 0;
    char *err = harness_stderr(h);
    for (const char *at = err; (at = strstr(at, "upgrade: stopping: listeners closed")); at++)
        log_lines++;
    free(err);
    assert_int_equal(kill((pid_t)pid, SIGUSR2), 0);
    if (harness_wait_log_count(h, "upgrade: stopping: listeners closed", (unsigned)log_lines + 1,
                               UPGRADE_MS) != 0)
        fail_msg("no second hand-over:\n%s", harness_stderr(h));
    text = tu_read_file(pid_path, NULL);
    assert_non_null(text);
    long next = strtol(text, NULL, 10);
    free(text);
    assert_true(next > 0 && next != pid);
    new_pid_live = next; /* teardown's, should the check below fail */
    assert_int_equal(stop_new(pid), 0); /* stopping by itself already: SIGTERM ends its drain */
    new_pid_live = next;
    assert_true(runs_as(next, pw->pw_uid));
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_true(get(harness_port(h, "admin"), "/healthz") > 0); /* bound by nobody */
    assert_int_equal(stop_new(next), 0);
    harness_free(h);
    origin_stop(o);
}

/* ---- systemd ---- */

#define WATCHDOG_MS 400

/* A datagram socket at path with SO_PASSCRED, as systemd's notify socket: each message comes
 * with its sender's pid. */
static int notify_listen(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(a.sun_path));
    memcpy(a.sun_path, path, strlen(path));
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* The next message within IO_MS into msg, its sender's pid returned. */
static long notify_next(int fd, char *msg, size_t size)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, IO_MS) != 1)
        fail_msg("no notification within %d ms", IO_MS);
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec iov = {.iov_base = msg, .iov_len = size - 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                       .msg_controllen = sizeof(control)};
    ssize_t n = recvmsg(fd, &m, 0);
    assert_true(n > 0);
    msg[n] = '\0';
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    assert_non_null(c);
    assert_int_equal(c->cmsg_type, SCM_CREDENTIALS);
    struct ucred cred;
    memcpy(&cred, CMSG_DATA(c), sizeof(cred));
    return (long)cred.pid;
}

/* Under systemd (NOTIFY_SOCKET, WatchdogSec=: WATCHDOG_USEC with WATCHDOG_PID its own, as a
 * shell that execs it sets it): the old process, the main pid, tells systemd MAINPID=<new pid>
 * and then nothing more (no STOPPING=1: the service goes on); the new process says no READY=1
 * of its own, and its watchdog pings come (WATCHDOG_PID named it anew) once the old is gone. */
static void test_upgrade_tells_systemd(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/notify-upgrade-%d.sock",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    int fd = notify_listen(sock);
    struct harness *h = harness_new();
    assert_non_null(h);
    char real[PATH_MAX], text[PATH_MAX + 64], wrapper[PATH_MAX + 16];
    assert_non_null(realpath(portico_bin(), real));
    snprintf(text, sizeof(text), "#!/bin/sh\nWATCHDOG_PID=$$ exec '%s' \"$@\"\n", real);
    assert_int_equal(harness_write_file(h, "watched.sh", text), 0);
    snprintf(wrapper, sizeof(wrapper), "%s/watched.sh", harness_dir(h));
    assert_int_equal(chmod(wrapper, 0755), 0);
    harness_set_bin(h, wrapper);
    assert_int_equal(write_config(h, fake_origin_port(o), ""), 0);
    char usec[32];
    snprintf(usec, sizeof(usec), "%d", WATCHDOG_MS * 1000);
    assert_int_equal(setenv("NOTIFY_SOCKET", sock, 1), 0);
    assert_int_equal(setenv("WATCHDOG_USEC", usec, 1), 0);
    int started = harness_start(h);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(started, 0);
    long old = harness_pid(h);

    char msg[1024];
    long from;
    do /* the old one's READY=1, maybe after a WATCHDOG=1 */
        from = notify_next(fd, msg, sizeof(msg));
    while (!tu_contains(msg, "READY=1"));
    assert_int_equal(from, old);

    assert_int_equal(harness_signal(h, SIGUSR2), 0);
    bool mainpid = false;
    long pid = 0;
    while (!mainpid) { /* the old one's STATUS=upgrading, its pings, and the new one's pings */
        from = notify_next(fd, msg, sizeof(msg));
        assert_false(tu_contains(msg, "READY=1"));
        assert_false(tu_contains(msg, "STOPPING=1"));
        if (from != old) {
            assert_string_equal(msg, "WATCHDOG=1");
            continue;
        }
        if ((mainpid = tu_contains(msg, "MAINPID=")))
            pid = strtol(strstr(msg, "MAINPID=") + strlen("MAINPID="), NULL, 10);
    }
    new_pid_live = pid; /* teardown's, should a check below fail */
    assert_true(tu_contains(msg, "(upgraded: pid "));
    assert_int_equal(harness_wait_log(h, "upgrade: stopping: listeners closed", IO_MS), 0);
    assert_int_equal(pid, new_pid_logged(h)); /* said after MAINPID= */
    assert_exits_0(h, IO_MS);
    /* the old one closed its notify socket with MAINPID=: its stop sent nothing more */
    assert_false(harness_log_contains(h, "NOTIFY_SOCKET: cannot tell systemd"));
    /* from now on only the new process speaks: pings */
    for (int pings = 0; pings < 3;) {
        from = notify_next(fd, msg, sizeof(msg));
        assert_int_equal(from, pid);
        assert_string_equal(msg, "WATCHDOG=1");
        pings++;
    }
    assert_int_equal(stop_new(pid), 0);
    close(fd);
    unlink(sock);
    harness_free(h);
    origin_stop(o);
}

/* An upgrade whose binary cannot run fails within the fork: systemd's status never names a
 * "new process pid 0" in between (the failure came before the status was written, which read
 * the child's pid once the upgrade had already let go of it: one try in ten to fifty did).
 * 100 tries, each a SIGUSR2 to a binary of mode 0644: each says "upgrade failed" and no status
 * names pid 0. */
static void test_upgrade_failed_exec_status(void **state)
{
    (void)state;
    struct fake_origin *o = origin_start();
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/notify-exec-%d.sock",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    int fd = notify_listen(sock);
    char dir[PATH_MAX], bin[PATH_MAX + 16];
    assert_int_equal(tu_make_temp_dir("portico-upgrade-bin", dir, sizeof(dir)), 0);
    snprintf(bin, sizeof(bin), "%s/portico", dir);
    install(portico_file(), bin);
    assert_int_equal(setenv("NOTIFY_SOCKET", sock, 1), 0);
    struct harness *h = start(fake_origin_port(o), bin);
    unsetenv("NOTIFY_SOCKET");
    char msg[1024];
    do
        notify_next(fd, msg, sizeof(msg));
    while (!tu_contains(msg, "READY=1"));
    assert_int_equal(chmod(bin, 0644), 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(harness_signal(h, SIGUSR2), 0);
        do {
            notify_next(fd, msg, sizeof(msg));
            if (tu_contains(msg, "pid 0 "))
                fail_msg("try %d: %s", i, msg);
        } while (!tu_contains(msg, "upgrade failed"));
    }
    assert_int_equal(get(px_port(h), "/"), 200);
    assert_true(harness_running(h));
    close(fd);
    unlink(sock);
    px_stop(h); /* a clean stop after the 100 failures: under valgrind, nothing lost */
    tu_remove_tree(dir);
    origin_stop(o);
}

int main(void)
{
    /* the new process outlives its parent, the harness's child: it becomes ours to reap */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        perror("PR_SET_CHILD_SUBREAPER");
        return 1;
    }
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_upgrade_refuses_nothing, teardown),
        cmocka_unit_test_teardown(test_upgrade_finishes_in_flight, teardown),
        cmocka_unit_test_teardown(test_upgrade_old_lets_go, teardown),
        cmocka_unit_test_teardown(test_upgrade_restart_after_crash, teardown),
        cmocka_unit_test_teardown(test_upgrade_takes_no_socket, teardown),
        cmocka_unit_test_teardown(test_upgrade_dropped_address, teardown),
        cmocka_unit_test_teardown(test_upgrade_many_sockets, teardown),
        cmocka_unit_test_teardown(test_upgrade_bad_config, teardown),
        cmocka_unit_test_teardown(test_upgrade_runs_the_path, teardown),
        cmocka_unit_test_teardown(test_upgrade_failed_exec_status, teardown),
        cmocka_unit_test_teardown(test_upgrade_one_at_a_time, teardown),
        cmocka_unit_test_teardown(test_upgrade_cancelled_by_stop, teardown),
        cmocka_unit_test_teardown(test_upgrade_refused_as_pid_1, teardown),
        cmocka_unit_test_teardown(test_upgrade_tells_systemd, teardown),
        cmocka_unit_test_teardown(test_upgrade_after_dropping_privileges, teardown),
        cmocka_unit_test_teardown(test_upgrade_keeps_defer_accept, teardown),
        cmocka_unit_test_teardown(test_upgrade_keeps_proxy_protocol, teardown),
    };
    tu_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
