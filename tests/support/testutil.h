/*
 * testutil.h — small helpers shared by the integration-test support code and the tests: a
 * monotonic clock, bounded waits, files and temp dirs, running a command with a timeout, and
 * JSON field extraction good enough for assertions.
 *
 * Prefix `tu_` so nothing here can clash with a symbol of the proxy objects the integration
 * tests link against. Return vocabulary: 0 (or a count) ok, -1 error.
 */
#ifndef PORTICO_TESTUTIL_H
#define PORTICO_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Milliseconds on CLOCK_MONOTONIC; only differences mean anything. */
int64_t tu_now_ms(void);

/* Milliseconds left until deadline (a tu_now_ms() value), clamped to 0..INT32_MAX for poll(). */
int tu_ms_left(int64_t deadline);

/* poll() one fd for events until the deadline, retrying on EINTR. Returns 1 with *revents set,
 * 0 on timeout, -1 on error. */
int tu_poll_until(int fd, short events, int64_t deadline, short *revents);

/* Runs only the rows whose names match the glob in TEST_FILTER, when it is set (cmocka's
 * filter): every test binary takes it, so that one row can be run alone. */
void tu_test_filter(void);

/* Ignores SIGPIPE once per process (sockets and SSL would otherwise kill the test). */
void tu_ignore_sigpipe(void);

/* Reads a whole file into a NUL-terminated malloc'd buffer (*len without the NUL if len != NULL).
 * NULL if it cannot be read. */
char *tu_read_file(const char *path, size_t *len);

/* Writes len bytes to path (created or truncated, mode 0644). 0 or -1. */
int tu_write_file(const char *path, const void *data, size_t len);

/* Creates a fresh directory "$TMPDIR/<prefix>-XXXXXX" (TMPDIR defaults to /tmp) into buf. */
int tu_make_temp_dir(const char *prefix, char *buf, size_t size);

/* Removes a directory tree (does not follow symlinks). 0 or -1. */
int tu_remove_tree(const char *dir);

/* Finds a free TCP port on 127.0.0.1 (bind, read it back, close). Racy by nature: another process
 * may take it before the user binds it. By default the kernel chooses (bind port 0), at random in
 * its ephemeral range, which makes that rare. With PORTICO_TEST_PORTS=LOW-HIGH (run-tests.sh gives
 * each build's integration tests, run side by side, their own range below the ephemeral one) the
 * port comes from that range: no outgoing connection and no other build's test can take it. */
int tu_free_port(uint16_t *port);

/* Whether this host has the IPv6 loopback: a TCP socket binds [::1]:0. Docker without --ipv6
 * turns IPv6 off (no ::1), and a kernel may have no IPv6 at all. Asked once, then cached. */
bool tu_ipv6_loopback(void);

/* Plays an origin on fd, a connection accepted from Portico: reads a request head (up to 4 KiB)
 * within timeout_ms, then writes answer whole. 0, or -1 when the head did not come or the write
 * fell short. */
int tu_answer_head(int fd, const char *answer, int timeout_ms);

/* Whether an epoll descriptor of process pid (0: this one) watches the file of inode ino: its
 * fdinfo lists each target as "tfd: N events: E data: D pos:P ino:I sdev:S", I in hex. */
bool tu_epoll_watches(pid_t pid, unsigned long ino);

/* tu_epoll_watches, for an entry whose event mask (fdinfo's "events: E", hex) holds every bit of
 * events: EPOLLIN | EPOLLONESHOT for one armed for a single report. */
bool tu_epoll_watches_with(pid_t pid, unsigned long ino, unsigned events);

/* In a cmocka row that needs ::1: skips it, with a line saying why, on a host without
 * (tu_ipv6_loopback). First thing in the row, before it starts anything. */
#define TU_SKIP_WITHOUT_IPV6_LOOPBACK()                                                            \
    do {                                                                                           \
        if (!tu_ipv6_loopback()) {                                                                 \
            print_message("  skipped: no IPv6 loopback (::1)\n");                                  \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* In a cmocka row that switches users (`user = nobody`, which needs a root start): skips it,
 * with a line saying why, when the tests do not run as root (CI does). First thing in the row. */
#define TU_SKIP_UNLESS_ROOT()                                                                      \
    do {                                                                                           \
        if (geteuid() != 0) {                                                                      \
            print_message("  not root: the switch needs a root start (CI runs as root)\n");        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Moves the calling thread into a network namespace of its own, where what it starts from now on
 * (processes, threads, sockets) lives too: loopback up, with 127.0.0.1, and with ::1 unless ipv6
 * is false (IPv6 turned off there, as in Docker without --ipv6). Its sysctls are its own:
 * net.ipv4.ip_local_port_range set there touches nothing outside. Returns a descriptor of the
 * namespace left, for tu_netns_leave; -1 when it cannot (needs root: CAP_SYS_ADMIN), with
 * *why saying so in a line. */
int tu_netns_enter(bool ipv6, const char **why);

/* Back to the namespace old (from tu_netns_enter), which it closes; the one left ends with the
 * last socket and process in it. 0, or -1. */
int tu_netns_leave(int old);

/* Writes text to the sysctl file path (under /proc/sys) of the calling thread's namespace; 0 or
 * -1. */
int tu_sysctl_write(const char *path, const char *text);

/* Result of tu_run_command; release with tu_cmd_result_free. */
struct tu_cmd_result {
    int exit_code;  /* exit status 0..255, or 128+signal when killed, -1 when it could not run */
    int term_signal; /* signal that ended it, 0 if it exited */
    bool timed_out; /* the timeout expired and the child was SIGKILLed */
    char *out;      /* captured stdout, NUL-terminated, never NULL after a run */
    size_t out_len;
    char *err;      /* captured stderr, NUL-terminated, never NULL after a run */
    size_t err_len;
};

/* Runs argv[0] (PATH lookup) with argv, stdin from /dev/null, capturing stdout and stderr, and
 * kills it when timeout_ms passes. Returns res->exit_code (so 0 means it ran and exited 0); a
 * program that cannot be executed gives -1, or 127 where the spawn cannot report it (valgrind). */
int tu_run_command(const char *const argv[], int timeout_ms, struct tu_cmd_result *res);

/* Frees the buffers of a result (safe on a zeroed struct). */
void tu_cmd_result_free(struct tu_cmd_result *res);

/* The string value of the first `"key": "..."` pair anywhere in json, unescaped, malloc'd; NULL
 * when absent or not a string. Not a validator: keys are matched wherever they appear. */
char *tu_json_get_string(const char *json, const char *key);

/* The number value of the first `"key": <number>` pair anywhere in json into *out. 0 or -1. */
int tu_json_get_number(const char *json, const char *key, double *out);

/* memmem on a NUL-terminated haystack: true when needle occurs in hay (NULL hay -> false). */
bool tu_contains(const char *hay, const char *needle);

#endif
