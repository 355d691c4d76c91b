/*
 * test_reload.c — SIGHUP: a configuration that loads replaces the running one while exchanges
 * in flight finish on the old workers; a configuration with errors is reported and the old one
 * keeps serving.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define IO_MS 5000

/* The INI of these tests: one refused origin (the profile decides its status) and, optionally,
 * a slow one under /slow/. */
static int write_config(struct harness *h, const char *profile, uint16_t slow_port,
                        const char *extra)
{
    return harness_write_config(h,
                                "[proxy]\n"
                                "listen = 127.0.0.1:{{port:listen}}\n"
                                "workers = 2\n"
                                "error_profile = %s\n"
                                "%s\n"
                                "[upstream refused]\n"
                                "origin = 127.0.0.1:{{free_port:nothing}}\n"
                                "[upstream slow]\n"
                                "origin = 127.0.0.1:%u\n"
                                "[route slow]\n"
                                "prefix = /slow/\n"
                                "upstream = slow\n"
                                "[route rest]\n"
                                "prefix = /\n"
                                "upstream = refused\n",
                                profile, extra, (unsigned)slow_port);
}

/* Status of one request for path to port, or -1 when the connection is refused or broken. */
static int port_status(uint16_t port, const char *path)
{
    struct raw_conn *c = raw_connect(port, IO_MS);
    if (!c)
        return -1;
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    struct raw_response r;
    int status = -1;
    if (raw_send_str(c, req) == 0 && raw_read_response(c, &r, IO_MS) == 0) {
        status = r.status;
        raw_response_free(&r);
    }
    raw_close(c);
    return status;
}

static int get_status(struct harness *h, const char *path)
{
    return port_status(harness_port(h, "listen"), path);
}

/* Starts Portico with write_config's file (profile, extra) in front of a new origin, put in *o. */
static struct harness *start_profile(const char *profile, const char *extra, struct fake_origin **o)
{
    *o = fake_origin_start_kind(FO_OK);
    assert_non_null(*o);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_config(h, profile, fake_origin_port(*o), extra), 0);
    assert_int_equal(harness_start(h), 0);
    return h;
}

/* A valid new file takes effect: the refused origin's status follows the new profile. */
static void test_reload_applies(void **state)
{
    (void)state;
    struct fake_origin *slow;
    struct harness *h = start_profile("standard", "", &slow);
    assert_int_equal(get_status(h, "/"), 502);

    assert_int_equal(write_config(h, "cloudflare", fake_origin_port(slow), ""), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live", IO_MS), 0);
    assert_int_equal(get_status(h, "/"), 521);

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(slow);
}

/* Whether pid's VmRSS reaches kb, waiting for it a bounded time: nothing Portico says marks
 * its reads of the heads, so the figure itself is looked at every 5 ms. */
static bool wait_rss_above(pid_t pid, long kb)
{
    for (int i = 0; i < IO_MS / 5; i++) {
        if (px_proc_kb(pid, "VmRSS") >= kb)
            return true;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return false;
}

/* Connections of the burst, each holding a partial head in one of libevent's 32 KiB read chains
 * (evmem.h), 16 KiB of it written: ~1.9 MiB per worker's arena, under the 4 MiB an arena keeps
 * free at its top (heap.h), and VmRSS up by ~2.3 MB. */
#define BURST_CONNS 120
#define BURST_PAD 15000 /* bytes of the partial head: one read (16 KiB), under max_header_size */

/* A reload hands back what its previous workers' malloc arenas kept (heap.h). An arena keeps up
 * to 4 MiB of freed memory for its thread's next requests and outlives the thread, and a reload
 * starts new workers while the old ones drain: each reload left the old workers' peak in arenas
 * no thread used, and the soak's VmRSS grew with its reloads. Here the peak is 120 connections'
 * partial heads, closed before a reload; once the old workers are gone, VmRSS is back within
 * half the peak of the start (~0.4 MB above it; it stayed at the peak, +2.3 MB). */
static void test_reload_hands_back_worker_memory(void **state)
{
    (void)state;
    struct fake_origin *slow;
    struct harness *h = start_profile("standard", "", &slow);
    pid_t pid = harness_pid(h);
    bool own = px_rss_is_portico(pid);
    assert_int_equal(get_status(h, "/"), 502);
    /* a first reload, so that the start's figure includes what any reload adds (a second
     * generation's arenas, the main thread's for the configuration) */
    assert_int_equal(write_config(h, "cloudflare", fake_origin_port(slow), ""), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "the previous workers have finished", IO_MS), 0);
    assert_int_equal(get_status(h, "/"), 521);
    long rss0 = px_proc_kb(pid, "VmRSS");

    static char head[BURST_PAD + 64];
    int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ");
    memset(head + n, 'a', BURST_PAD);
    struct raw_conn *conns[BURST_CONNS];
    for (int i = 0; i < BURST_CONNS; i++) {
        conns[i] = raw_connect(harness_port(h, "listen"), IO_MS);
        assert_non_null(conns[i]);
        assert_int_equal(raw_send(conns[i], head, (size_t)n + BURST_PAD), 0);
    }
    /* the workers have read the heads: their arenas grew by the chains (under ASan, whose
     * allocator is its own, not waited for) */
    bool grew = !own || wait_rss_above(pid, rss0 + BURST_CONNS * 16);
    long peak = px_proc_kb(pid, "VmRSS");
    for (int i = 0; i < BURST_CONNS; i++)
        raw_close(conns[i]);

    assert_int_equal(write_config(h, "standard", fake_origin_port(slow), ""), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(
        harness_wait_log_count(h, "the previous workers have finished", 2, IO_MS), 0);
    long after = px_proc_kb(pid, "VmRSS"); /* each old worker gave it back before it ended */
    print_message("VmRSS: %ld kB at the start, %ld with %d partial heads, %ld once the old "
                  "workers are gone%s\n",
                  rss0, peak, BURST_CONNS, after,
                  own ? "" : " (not asserted under ASan or valgrind)");
    assert_true(grew);
    if (own && after > rss0 + (peak - rss0) / 2)
        fail_msg("VmRSS %ld kB once the old workers are gone: their arenas kept the peak "
                 "(%ld kB; %ld at the start)",
                 after, peak, rss0);
    assert_int_equal(get_status(h, "/"), 502);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(slow);
}

/* New connections, one request each, until told to stop: how many got a response and how
 * many were refused, reset or closed without one. Bounded in count. */
struct churn {
    uint16_t port;
    atomic_bool stop;
    atomic_int answered;
    atomic_int lost;
    pthread_t thread;
};

static void *churn_main(void *arg)
{
    struct churn *t = arg;
    for (int i = 0; i < 200000 && !atomic_load(&t->stop); i++) { /* ~12k per run here */
        struct raw_conn *c = raw_connect(t->port, IO_MS);
        struct raw_response r;
        if (c && raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") == 0
            && raw_read_response(c, &r, IO_MS) == 0) {
            atomic_fetch_add(&t->answered, 1);
            raw_response_free(&r);
        } else {
            atomic_fetch_add(&t->lost, 1);
        }
        if (c)
            raw_close(c);
    }
    return NULL;
}

/* A file with errors: each one reported as FILE:LINE, whole on its line even while the workers
 * log requests to the same stderr, and the running configuration untouched. */
static void test_reload_rejects_bad_file(void **state)
{
    (void)state;
    struct fake_origin *slow;
    struct harness *h = start_profile("cloudflare", "", &slow);
    assert_int_equal(get_status(h, "/"), 521);

    /* clients keep the workers writing access-log lines to the same stderr (the default) */
    struct churn traffic = {.port = harness_port(h, "listen")};
    assert_int_equal(pthread_create(&traffic.thread, NULL, churn_main, &traffic), 0);

    /* line 5 is the extra line: an unknown key. No check leaves the row while the clients run:
     * their struct is on this frame, which a failed check's longjmp would hand to later rows. */
    int written = write_config(h, "standard", fake_origin_port(slow), "no_such_key = 1");
    int signalled = written == 0 ? harness_signal(h, SIGHUP) : -1;
    int waited = signalled == 0
                     ? harness_wait_log(h, "still serving the previous configuration", IO_MS)
                     : -1;
    atomic_store(&traffic.stop, true);
    pthread_join(traffic.thread, NULL);
    assert_int_equal(written, 0);
    assert_int_equal(signalled, 0);
    assert_int_equal(waited, 0);
    char needle[512];
    snprintf(needle, sizeof(needle), "%s:5: unknown key 'no_such_key'", harness_config_path(h));
    assert_true(harness_log_contains(h, needle));
    assert_int_equal(get_status(h, "/"), 521); /* still the cloudflare profile */
    assert_true(harness_running(h));

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(slow);
}

/* The configuration's path became a FIFO nobody writes to (a deployment that pipes the file in,
 * gone): a reload reads it as it is, empty, and refuses it with a message; the main thread, which
 * takes the signals, is not left in open(2) waiting for a writer. The binary before the fix was:
 * no message, and SIGTERM then did nothing while the workers went on accepting (killed by the
 * harness after 5 s, exit 137). */
static void test_reload_config_fifo(void **state)
{
    (void)state;
    struct fake_origin *slow;
    struct harness *h = start_profile("cloudflare", "", &slow);
    assert_int_equal(get_status(h, "/"), 521);

    char kept[600];
    snprintf(kept, sizeof(kept), "%s.kept", harness_config_path(h));
    assert_int_equal(rename(harness_config_path(h), kept), 0);
    assert_int_equal(mkfifo(harness_config_path(h), 0600), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "still serving the previous configuration", IO_MS), 0);
    char needle[700];
    snprintf(needle, sizeof(needle), "%s:0: no [upstream] section", harness_config_path(h));
    assert_true(harness_log_contains(h, needle));
    assert_int_equal(get_status(h, "/"), 521); /* still the cloudflare profile */

    assert_int_equal(harness_stop(h), 0); /* SIGTERM works: exit 0 */
    harness_free(h);
    fake_origin_stop(slow);
}

/* With error_log in a file, a daemon's stderr may lead nowhere: the file's problems must be in
 * the error log, FILE:LINE each, next to the line that says the reload was refused. */
static void test_reload_reports_errors_in_error_log(void **state)
{
    (void)state;
    struct fake_origin *slow;
    struct harness *h = start_profile("cloudflare", "error_log = {{dir}}/error.log", &slow);

    /* line 6 is the second extra line: an unknown key */
    assert_int_equal(write_config(h, "standard", fake_origin_port(slow),
                                  "error_log = {{dir}}/error.log\nno_such_key = 1"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "still serving the previous configuration",
                                       IO_MS), 0);
    char needle[512];
    snprintf(needle, sizeof(needle), "%s:6: unknown key 'no_such_key'", harness_config_path(h));
    assert_true(harness_file_contains(h, "error.log", needle));
    assert_int_equal(get_status(h, "/"), 521); /* still the cloudflare profile */

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(slow);
}

/* A reload that trades the access and error log files (-t accepts it) moves both: each was
 * checked against the other's current file, which refused both moves and kept the logs where
 * they were, the reload still counted as applied. */
static void test_reload_trades_log_files(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_config(h, "standard", 1,
                                  "access_log = {{dir}}/a.log\naccess_log_format = text\n"
                                  "error_log = {{dir}}/b.log"),
                     0);
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(write_config(h, "standard", 1,
                                  "access_log = {{dir}}/b.log\naccess_log_format = text\n"
                                  "error_log = {{dir}}/a.log"),
                     0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_file(h, "a.log", "is live (generation 2", IO_MS), 0);
    assert_int_equal(get_status(h, "/traded"), 502);
    /* The worker writes its access lines out when it stops: waiting for them while it runs
     * waited for the once-a-second flush. */
    assert_int_equal(harness_stop(h), 0);
    assert_true(harness_file_contains(h, "b.log", "target=\"/traded\""));
    assert_false(harness_file_contains(h, "a.log", "keeping the previous"));
    harness_free(h);
}

/* The in-flight origin's answer waits until the test closes gate_fds[1] (at most GATE_MS): the
 * reload is live by then however slow the host. A fixed 600 ms wait raced the reload: a reload
 * slower than it (a sanitized build on a loaded host) saw the exchange end before it began. */
#define GATE_MS 20000
static int gate_fds[2] = {-1, -1};

static int gate_wait(int fd, void *arg)
{
    (void)fd, (void)arg;
    struct pollfd p = {.fd = gate_fds[0], .events = POLLIN};
    poll(&p, 1, GATE_MS);
    return 0;
}

static const struct fo_step gated_answer[] = {
    FO_CALL(gate_wait, NULL),
    FO_RESPOND(200, NULL, "after the reload\n", FO_LENGTH),
    FO_END(),
};

static void gate_open(void)
{
    if (gate_fds[1] >= 0)
        close(gate_fds[1]);
    gate_fds[1] = -1;
}

/* An exchange in flight across the reload finishes on the old workers with its response; the
 * connection then closes (its worker is draining), and new requests see the new config. */
static void test_reload_drains_in_flight(void **state)
{
    (void)state;
    assert_int_equal(pipe2(gate_fds, O_CLOEXEC), 0); /* no Portico child holds it open */
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .script = gated_answer};
    struct fake_origin *slow = fake_origin_start(&o);
    assert_non_null(slow);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_config(h, "standard", fake_origin_port(slow), ""), 0);
    assert_int_equal(harness_start(h), 0);

    struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET /slow/x HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_requests(slow, 1, IO_MS), 0); /* in flight now */

    assert_int_equal(write_config(h, "proxy", fake_origin_port(slow), ""), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live", IO_MS), 0);
    gate_open();

    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "after the reload\n");
    const char *conn = raw_header(&r, "Connection");
    assert_non_null(conn);
    assert_string_equal(conn, "close");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    raw_close(c);

    assert_int_equal(get_status(h, "/"), 502); /* proxy profile: connect_refused is 502 too */
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    gate_open();
    fake_origin_stop(slow);
    close(gate_fds[0]);
}

/* The system call thread tid of pid is blocked in (-1: unreadable). */
static long thread_syscall(pid_t pid, const char *tid)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task/%s/syscall", (int)pid, tid);
    char *text = tu_read_file(path, NULL);
    long nr = text && text[0] >= '0' && text[0] <= '9' ? strtol(text, NULL, 10) : -1;
    free(text);
    return nr;
}

/* The one thread of pid named "worker 0" (a Portico with workers = 1: the worker); 0 if there
 * is not exactly one. By name: a sanitizer may add threads of its own (ThreadSanitizer's
 * background thread), and counting threads took that one for the worker. */
static pid_t the_worker(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    pid_t tid = 0;
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[300]; /* d_name is up to 255 bytes */
        snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
        char *comm = tu_read_file(path, NULL);
        if (comm && strcmp(comm, "worker 0\n") == 0 && found++ == 0)
            tid = (pid_t)atoi(e->d_name);
        free(comm);
    }
    if (d)
        closedir(d);
    return found == 1 ? tid : 0;
}

/* Waits (bounded) until pred(pid) holds, or until the thread `tid` is in system call nr. */
static bool wait_until(bool (*pred)(pid_t), pid_t pid, const char *tid, long nr)
{
    for (int i = 0; i < IO_MS / 5; i++) {
        if (pred ? pred(pid) : thread_syscall(pid, tid) == nr)
            return true;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return false;
}

/* A keep-alive connection whose next request has reached the kernel but not Portico when a
 * reload drains its worker is answered (Connection: close), not closed over the unread
 * request, which reset it. The old worker thread is held stopped (ptrace, that thread only)
 * while the reload tells it to stop and the request arrives: once let go, it sees both at once,
 * the stop first. */
static void test_reload_answers_request_in_kernel(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = harness_new();
    assert_non_null(h);
    static const char conf[] = "[proxy]\n"
                               "listen = 127.0.0.1:{{port:listen}}\n"
                               "workers = 1\n"
                               "access_log = off\n"
                               "[upstream u]\n"
                               "origin = 127.0.0.1:%u\n";
    assert_int_equal(harness_write_config(h, conf, fake_origin_port(o)), 0);
    assert_int_equal(harness_start(h), 0);
    pid_t pid = harness_pid(h);

    struct raw_conn *c = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(c);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r); /* c is idle, kept alive */

    pid_t wtid = the_worker(pid);
    assert_true(wtid > 0);
    /* Not allowed to trace here (Yama, no CAP_SYS_PTRACE); or under valgrind, whose threads
     * take turns on one lock: the stopped one would hold every other. */
    if (px_under_valgrind(pid) || ptrace(PTRACE_SEIZE, wtid, NULL, NULL) != 0)
        skip();
    assert_int_equal(ptrace(PTRACE_INTERRUPT, wtid, NULL, NULL), 0);
    int st = 0;
    assert_int_equal(waitpid(wtid, &st, __WALL), wtid);
    assert_true(WIFSTOPPED(st));

    assert_int_equal(harness_signal(h, SIGHUP), 0);
    char main_tid[24];
    snprintf(main_tid, sizeof(main_tid), "%d", (int)pid);
    /* the new worker serves; the main thread waits for the old one to stop listening: told */
    assert_int_equal(get_status(h, "/new"), 200);
    assert_true(wait_until(NULL, pid, main_tid, SYS_futex));

    assert_int_equal(raw_send_str(c, "GET /two HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(ptrace(PTRACE_DETACH, wtid, NULL, NULL), 0); /* the old worker goes on */
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(raw_header(&r, "Connection"));
    assert_string_equal(raw_header(&r, "Connection"), "close");
    raw_response_free(&r);
    raw_close(c);

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
}

struct frames_run {
    const char *const *argv;
    struct tu_cmd_result res;
    int rc;
};

static void *frames_main(void *arg)
{
    struct frames_run *f = arg;
    f->rc = tu_run_command(f->argv, 4 * IO_MS, &f->res);
    return NULL;
}

/* The same over HTTP/2: an idle connection whose next stream has reached the kernel when the
 * drain begins gets it answered before the GOAWAY, whose last stream id names it. A GOAWAY sent
 * at once (last stream 1) refused it. h2_frames.py (python3-h2's HPACK) is the client; the old
 * worker is held as above while it sends. */
static void test_reload_answers_h2_stream_in_kernel(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct harness *h = harness_new();
    assert_non_null(h);
    static const char conf[] = "[proxy]\n"
                               "listen = 127.0.0.1:{{port:listen}}\n"
                               "listen = 127.0.0.1:{{port:tls}} tls\n"
                               "tls_cert = %s\n"
                               "tls_key = %s\n"
                               "workers = 1\n"
                               "access_log = off\n"
                               "[upstream u]\n"
                               "origin = 127.0.0.1:%u\n";
    assert_int_equal(harness_write_config(h, conf, certs->server_cert, certs->server_key,
                                          fake_origin_port(o)),
                     0);
    assert_int_equal(harness_start(h), 0);
    pid_t pid = harness_pid(h);

    char port[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "tls"));
    const char *const argv[] = {"/usr/bin/python3", "tests/integration/h2_frames.py", port,
                                "reload_next", "/h2", harness_dir(h), NULL};
    struct frames_run f = {.argv = argv};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, frames_main, &f), 0);
    assert_int_equal(harness_wait_file(h, "h2_ready", "ready", IO_MS), 0); /* stream 1 answered */

    pid_t wtid = the_worker(pid);
    assert_true(wtid > 0);
    bool traced = !px_under_valgrind(pid) && ptrace(PTRACE_SEIZE, wtid, NULL, NULL) == 0;
    if (traced) {
        assert_int_equal(ptrace(PTRACE_INTERRUPT, wtid, NULL, NULL), 0);
        int st = 0;
        assert_int_equal(waitpid(wtid, &st, __WALL), wtid);
        assert_true(WIFSTOPPED(st));
        assert_int_equal(harness_signal(h, SIGHUP), 0);
        char main_tid[24];
        snprintf(main_tid, sizeof(main_tid), "%d", (int)pid);
        assert_int_equal(get_status(h, "/new"), 200);
        assert_true(wait_until(NULL, pid, main_tid, SYS_futex));
    }
    assert_int_equal(harness_write_file(h, "h2_go", "go\n"), 0); /* ends the script's wait */
    assert_int_equal(harness_wait_file(h, "h2_sent", "sent", IO_MS), 0);
    if (traced)
        assert_int_equal(ptrace(PTRACE_DETACH, wtid, NULL, NULL), 0); /* the old worker goes on */
    pthread_join(t, NULL);
    if (!traced) {
        tu_cmd_result_free(&f.res);
        skip(); /* not allowed to trace here (Yama, no CAP_SYS_PTRACE) */
    }
    assert_int_equal(f.rc, 0);
    if (!tu_contains(f.res.out, "go=True first=[200] next=[200] end=True rst=None goaway=(3, 0)"))
        fail_msg("stream 3 not answered before the GOAWAY:\n%s%s", f.res.out, f.res.err);
    tu_cmd_result_free(&f.res);

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
}

/* A thread of pid named "worker 0" other than not (a reload's new worker beside the old one);
 * 0 when there is none. */
static pid_t another_worker(pid_t pid, pid_t not)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    pid_t tid = 0;
    for (struct dirent *e; d && tid == 0 && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == not)
            continue;
        char path[300]; /* d_name is up to 255 bytes */
        snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
        char *comm = tu_read_file(path, NULL);
        if (comm && strcmp(comm, "worker 0\n") == 0)
            tid = (pid_t)atoi(e->d_name);
        free(comm);
    }
    if (d)
        closedir(d);
    return tid;
}

/* Stops thread tid (PTRACE_SEIZE, INTERRUPT); false when this host does not let us trace. */
static bool stop_thread(pid_t tid)
{
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0)
        return false;
    assert_int_equal(ptrace(PTRACE_INTERRUPT, tid, NULL, NULL), 0);
    int st = 0;
    assert_int_equal(waitpid(tid, &st, __WALL), tid);
    assert_true(WIFSTOPPED(st));
    return true;
}

/* The old origin of test_reload_old_worker_leaves_queue: /hold is answered once the test writes
 * a byte to old_gate (bounded by IO_MS), everything else at once with "old". */
static int old_gate[2] = {-1, -1};

static int wait_old_gate(int fd, void *arg)
{
    (void)fd, (void)arg;
    struct pollfd pf = {.fd = old_gate[0], .events = POLLIN};
    poll(&pf, 1, IO_MS);
    return 0;
}

static const struct fo_step old_held[] = {FO_CALL(wait_old_gate, NULL), FO_RESPOND_OK(),
                                          FO_END()};
static const struct fo_step old_answer[] = {FO_RESPOND(200, NULL, "old\n", FO_LENGTH), FO_END()};

static const struct fo_step *pick_old(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strncmp(req->head, "GET /hold ", 10) == 0 ? old_held : old_answer;
}

/* A client in the kernel's queue of a socket the reload's new worker took over is the new
 * worker's: the old one, stopping, leaves that queue alone (it takes in its queue only when no
 * group follows, test_lifecycle's test_stop_answers_queued_client). Both workers are stopped
 * (ptrace) while the client connects, the old one let go first: by "is live" it has stopped
 * listening, and then the new one is let go. The old one, held by max_connections = 1 (a request
 * in flight), accepts only through that stop. The client's request must reach the new
 * configuration's origin, not the old one's (which an old worker serves it from, Connection:
 * close, and drains with it). */
static void test_reload_old_worker_leaves_queue(void **state)
{
    (void)state;
    assert_int_equal(pipe2(old_gate, O_CLOEXEC), 0);
    struct fake_origin_opts old_opts = {.kind = FO_SCRIPT, .pick_script = pick_old};
    struct fake_origin_opts new_opts = {.kind = FO_OK, .body = "new\n"};
    struct fake_origin *o_old = fake_origin_start(&old_opts), *o_new = fake_origin_start(&new_opts);
    assert_true(o_old && o_new);
    static const char conf[] = "[proxy]\n"
                               "listen = 127.0.0.1:{{port:listen}}\n"
                               "workers = 1\nmax_connections = 1\nshutdown_timeout = 10s\n"
                               "access_log = off\n"
                               "[upstream u]\n"
                               "origin = 127.0.0.1:%u\n";
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, conf, fake_origin_port(o_old)), 0);
    assert_int_equal(harness_start(h), 0);
    pid_t pid = harness_pid(h);
    struct raw_conn *busy = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(busy);
    assert_int_equal(raw_send_str(busy, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(fake_origin_wait_requests(o_old, 1, IO_MS), 0); /* the listener is held */

    pid_t old_tid = the_worker(pid);
    assert_true(old_tid > 0);
    /* Not allowed to trace here (Yama, no CAP_SYS_PTRACE); or under valgrind, whose threads
     * take turns on one lock: the stopped one would hold every other. */
    if (px_under_valgrind(pid) || !stop_thread(old_tid)) {
        assert_int_equal(write(old_gate[1], "x", 1), 1);
        skip();
    }
    assert_int_equal(harness_write_config(h, conf, fake_origin_port(o_new)), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    char main_tid[24];
    snprintf(main_tid, sizeof(main_tid), "%d", (int)pid);
    /* the new group serves (the old worker is held) and took the socket over; the main thread
     * waits for the old one */
    assert_int_equal(get_status(h, "/new"), 200);
    assert_true(wait_until(NULL, pid, main_tid, SYS_futex));
    pid_t new_tid = another_worker(pid, old_tid);
    assert_true(new_tid > 0);
    assert_true(stop_thread(new_tid));

    struct raw_conn *queued = raw_connect(harness_port(h, "listen"), IO_MS);
    assert_non_null(queued); /* completed by the kernel: no worker runs */
    assert_int_equal(raw_send_str(queued, "GET /queued HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(ptrace(PTRACE_DETACH, old_tid, NULL, NULL), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", IO_MS), 0);
    assert_int_equal(ptrace(PTRACE_DETACH, new_tid, NULL, NULL), 0);

    struct raw_response r;
    assert_int_equal(raw_read_response(queued, &r, IO_MS), 0);
    print_message("  the queued client: %d %s", r.status, r.body ? r.body : "");
    bool served_new = r.status == 200 && r.body && strcmp(r.body, "new\n") == 0;
    raw_response_free(&r);
    assert_int_equal(write(old_gate[1], "x", 1), 1);
    assert_int_equal(raw_read_response(busy, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(queued);
    raw_close(busy);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o_old);
    fake_origin_stop(o_new);
    close(old_gate[0]);
    close(old_gate[1]);
    if (!served_new)
        fail_msg("the queued client was served by the old worker, from the old origin");
}

#define RESIZE_WORKERS 4
#define RESIZE_CLIENTS 16 /* new clients after the reload */

/* The threads of pid named "worker N" into tids (at most max); how many. */
static int workers_of(pid_t pid, pid_t *tids, int max)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && n < max && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[300]; /* d_name is up to 255 bytes */
        snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
        char *comm = tu_read_file(path, NULL);
        if (comm && strncmp(comm, "worker ", 7) == 0)
            tids[n++] = (pid_t)atoi(e->d_name);
        free(comm);
    }
    if (d)
        closedir(d);
    return n;
}

/* Whether all RESIZE_WORKERS workers of pid have named themselves (worker_main does so as it
 * starts: harness_start returns once one accepts). */
static bool all_workers_named(pid_t pid)
{
    pid_t tids[RESIZE_WORKERS];
    return workers_of(pid, tids, RESIZE_WORKERS) == RESIZE_WORKERS;
}

/* A reload from 4 workers to 1: the one new worker takes over all 4 of the address's sockets,
 * so a client the kernel puts in any of their queues is its to answer, whatever the old workers
 * do (inheritable: none is closed with clients in its queue; closing the extras lost some). The
 * old workers are stopped (ptrace) from before the reload until the new clients were answered:
 * one left with a socket of its own would leave the clients in that queue unanswered. The kernel
 * spreads the 16 new clients over the 4 queues. */
static void test_reload_fewer_workers_take_every_socket(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    static const char conf[] = "[proxy]\n"
                               "listen = 127.0.0.1:{{port:listen}}\n"
                               "workers = %d\n"
                               "access_log = off\n"
                               "[upstream u]\n"
                               "origin = 127.0.0.1:%u\n";
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, conf, RESIZE_WORKERS, fake_origin_port(o)), 0);
    assert_int_equal(harness_start(h), 0);
    pid_t pid = harness_pid(h);
    uint16_t port = harness_port(h, "listen");
    pid_t old[RESIZE_WORKERS];
    assert_true(wait_until(all_workers_named, pid, NULL, 0)); /* under ASan: 1 of 4 at first */
    assert_int_equal(workers_of(pid, old, RESIZE_WORKERS), RESIZE_WORKERS);
    /* Not allowed to trace here (Yama, no CAP_SYS_PTRACE); or under valgrind, whose threads
     * take turns on one lock: a stopped one would hold every other. */
    if (px_under_valgrind(pid) || !stop_thread(old[0]))
        skip();
    for (int i = 1; i < RESIZE_WORKERS; i++)
        assert_true(stop_thread(old[i]));
    assert_int_equal(harness_write_config(h, conf, 1, fake_origin_port(o)), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    /* the new workers started; the main thread waits for the old ones to stop listening */
    char main_tid[24];
    snprintf(main_tid, sizeof(main_tid), "%d", (int)pid);
    assert_true(wait_until(NULL, pid, main_tid, SYS_futex));

    struct raw_conn *c[RESIZE_CLIENTS];
    for (int i = 0; i < RESIZE_CLIENTS; i++) {
        c[i] = raw_connect(port, IO_MS);
        assert_non_null(c[i]);
        assert_int_equal(raw_send_str(c[i], "GET /new HTTP/1.1\r\nHost: t\r\n"
                                            "Connection: close\r\n\r\n"),
                         0);
    }
    int answered = 0;
    int64_t end = tu_now_ms() + IO_MS;
    for (int i = 0; i < RESIZE_CLIENTS; i++) {
        struct raw_response r;
        int64_t left = end - tu_now_ms(); /* one window for all: those answered are read */
        if (raw_read_response(c[i], &r, left > 50 ? (int)left : 50) == 0) {
            answered += r.status == 200;
            raw_response_free(&r);
        }
    }
    for (int i = 0; i < RESIZE_WORKERS; i++)
        assert_int_equal(ptrace(PTRACE_DETACH, old[i], NULL, NULL), 0); /* the old ones go */
    for (int i = 0; i < RESIZE_CLIENTS; i++)
        raw_close(c[i]);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
    print_message("  %d of %d new clients answered while the old workers stood still\n",
                  answered, RESIZE_CLIENTS);
    assert_int_equal(answered, RESIZE_CLIENTS);
}

#define RELOAD_SNDBUF_CLIENTS 6
#define RELOAD_SNDBUF_BOUND (2 * 64 * 1024 + 128 * 1024) /* 64k doubled, two segments' slack */

/* Clients of port that ask for 8 MiB and never read: each one's send queue in Portico stays
 * within the 64k of client_sndbuf (test_limits.c has the figures). */
static void sndbuf_capped(uint16_t port)
{
    struct raw_conn *c[RELOAD_SNDBUF_CLIENTS];
    for (int i = 0; i < RELOAD_SNDBUF_CLIENTS; i++) {
        c[i] = raw_connect(port, IO_MS);
        assert_non_null(c[i]);
        assert_int_equal(raw_send_str(c[i], "GET /bytes/8388608 HTTP/1.1\r\nHost: t\r\n\r\n"),
                         0);
    }
    int n;
    long least, most = px_queues_settle(PX_SEND_Q, &port, 1, RELOAD_SNDBUF_CLIENTS,
                                        RELOAD_SNDBUF_BOUND, &least, &n);
    print_message("  %d clients of the kept address: send queues %ld-%ld bytes\n", n, least, most);
    assert_true(most <= RELOAD_SNDBUF_BOUND);
    assert_int_equal(n, RELOAD_SNDBUF_CLIENTS);
    for (int i = 0; i < RELOAD_SNDBUF_CLIENTS; i++)
        raw_abort(c[i]);
}

/* Reloads that add a listen address, a worker and client_sndbuf, then remove all three: the
 * kept address serves throughout with the configuration of the moment, the added one serves
 * while configured and is closed (refused) once it is not. The kept sockets take the new
 * client_sndbuf (as the new ones do); back to 0, they keep it (SO_SNDBUF cannot be undone), and
 * the reload says so. */
static void test_reload_changes_listeners(void **state)
{
    (void)state;
    static const char *const conf = "[proxy]\n"
                                    "listen = 127.0.0.1:{{port:listen}}\n"
                                    "%s"
                                    "workers = %d\n"
                                    "error_profile = %s\n"
                                    "access_log = off\n"
                                    "[upstream refused]\n"
                                    "origin = 127.0.0.1:{{free_port:nothing}}\n"
                                    "[upstream sim]\n"
                                    "origin = sim\n"
                                    "[route bytes]\n"
                                    "prefix = /bytes/\n"
                                    "upstream = sim\n"
                                    "[route rest]\n"
                                    "prefix = /\n"
                                    "upstream = refused\n";
    static const char second[] = "listen = 127.0.0.1:{{free_port:second}}\nclient_sndbuf = 64k\n";
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, conf, "", 2, "standard"), 0);
    assert_int_equal(harness_start(h), 0);
    uint16_t kept = harness_port(h, "listen"), added = harness_port(h, "second");
    assert_int_equal(port_status(kept, "/"), 502);
    assert_int_equal(port_status(added, "/"), -1);

    assert_int_equal(harness_write_config(h, conf, second, 3, "cloudflare"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", IO_MS), 0);
    for (int i = 0; i < 6; i++) { /* several connections: the kernel spreads them over workers */
        assert_int_equal(port_status(kept, "/"), 521);
        assert_int_equal(port_status(added, "/"), 521);
    }
    sndbuf_capped(kept);

    assert_int_equal(harness_write_config(h, conf, "", 1, "standard"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "client_sndbuf = 0 takes a restart", IO_MS), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 3,", IO_MS), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(port_status(kept, "/"), 502);
    assert_int_equal(port_status(added, "/"), -1);

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
}


/* The value of a counter line ("name value") in a /metrics page; -1 when absent. */
static long long metric_value(uint16_t admin, const char *name)
{
    struct raw_conn *c = raw_connect(admin, IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET /metrics HTTP/1.1\r\n"
                                     "Host: 127.0.0.1\r\nConnection: close\r\n\r\n"),
                     0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    char line[128];
    snprintf(line, sizeof(line), "\n%s ", name);
    const char *at = r.body ? strstr(r.body, line) : NULL;
    long long v = at ? atoll(at + strlen(line)) : -1;
    raw_response_free(&r);
    raw_close(c);
    return v;
}

/* The churn tests' file: the admin endpoint, no access log (each connection would add a
 * line the log waits would read). */
static int write_churn_config(struct harness *h, int workers, const char *profile)
{
    return harness_write_config(h,
                                "[proxy]\n"
                                "listen = 127.0.0.1:{{port:listen}}\n"
                                "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                "workers = %d\n"
                                "error_profile = %s\n"
                                "access_log = off\n"
                                "[upstream refused]\n"
                                "origin = 127.0.0.1:{{free_port:nothing}}\n",
                                workers, profile);
}

#define CHURN_CLIENTS 3
#define CHURN_RELOADS 100

/* CHURN_RELOADS reloads, the n-th to workers[n % nworkers] workers, under CHURN_CLIENTS
 * clients making new connections: none of those is refused or reset, and /metrics still counts
 * the requests the replaced workers served. */
static void churn_reloads(const int *workers, int nworkers)
{
    static const char *const profiles[] = {"cloudflare", "standard"};
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_churn_config(h, workers[0], "standard"), 0);
    assert_int_equal(harness_start(h), 0);

    struct churn churn[CHURN_CLIENTS];
    for (int i = 0; i < CHURN_CLIENTS; i++) {
        churn[i] = (struct churn){.port = harness_port(h, "listen")};
        assert_int_equal(pthread_create(&churn[i].thread, NULL, churn_main, &churn[i]), 0);
    }
    int rc = 0;
    for (int g = 2; g < 2 + CHURN_RELOADS && rc == 0; g++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "is live (generation %d,", g);
        rc = write_churn_config(h, workers[(g - 1) % nworkers], profiles[g % 2]);
        if (rc == 0)
            rc = harness_signal(h, SIGHUP);
        if (rc == 0)
            rc = harness_wait_log(h, needle, IO_MS);
    }
    int answered = 0, lost = 0;
    for (int i = 0; i < CHURN_CLIENTS; i++) {
        atomic_store(&churn[i].stop, true);
        pthread_join(churn[i].thread, NULL);
        answered += atomic_load(&churn[i].answered);
        lost += atomic_load(&churn[i].lost);
    }
    print_message("%d reloads: %d connections answered, %d lost\n", CHURN_RELOADS, answered,
                  lost);
    assert_int_equal(rc, 0);
    assert_true(answered > CHURN_RELOADS);
    assert_int_equal(lost, 0);
    assert_true(metric_value(harness_port(h, "admin"), "portico_requests_started_total") >=
                answered);

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
}

/* The same workers each time: each new worker takes over its predecessor's socket. Before the
 * hand-over, about 1 reload in 100 lost a connection; and 100 reloads of 4 workers make 400
 * metrics shards, which once ran out at 300. */
static void test_reload_loses_no_connection(void **state)
{
    (void)state;
    static const int workers[] = {4};
    churn_reloads(workers, 1);
}

/* Fewer, more, and uneven numbers of workers: a worker left with no successor hands its socket
 * to one that stays (4 -> 1 once lost about 3 connections per 100 reloads). */
static void test_reload_resized_loses_no_connection(void **state)
{
    (void)state;
    static const int workers[] = {4, 1, 3, 2};
    churn_reloads(workers, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_applies),
        cmocka_unit_test(test_reload_hands_back_worker_memory),
        cmocka_unit_test(test_reload_rejects_bad_file),
        cmocka_unit_test(test_reload_config_fifo),
        cmocka_unit_test(test_reload_reports_errors_in_error_log),
        cmocka_unit_test(test_reload_trades_log_files),
        cmocka_unit_test(test_reload_drains_in_flight),
        cmocka_unit_test(test_reload_answers_request_in_kernel),
        cmocka_unit_test(test_reload_answers_h2_stream_in_kernel),
        cmocka_unit_test(test_reload_old_worker_leaves_queue),
        cmocka_unit_test(test_reload_loses_no_connection),
        cmocka_unit_test(test_reload_resized_loses_no_connection),
        cmocka_unit_test(test_reload_fewer_workers_take_every_socket),
        cmocka_unit_test(test_reload_changes_listeners),
    };
    /* TEST_FILTER=test_reload_resized* runs the matching tests only */
    tu_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
