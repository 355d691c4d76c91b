/*
 * harness.h — runs the Portico binary for an integration test.
 *
 * A harness owns a fresh temp dir ($TMPDIR or /tmp, "portico-test-XXXXXX"), the config written
 * there, the loopback ports it picked, the child process and its captured stdout/stderr
 * (stdout.log, stderr.log in the dir). The binary is $PORTICO_BIN, default "build/portico".
 *
 * Config text is printf-formatted first, then these placeholders are expanded:
 *   {{dir}}            the temp dir (for log files, pid files, error pages ...)
 *   {{certs}}          the directory of the test certificates (certs.h; generated on first use)
 *   {{port:NAME}}      a free 127.0.0.1 port, the same for every use of NAME in this harness; a
 *                      listener of Portico: harness_start() waits until it accepts (and
 *                      has closed again the connection it was probed with)
 *   {{free_port:NAME}} the same, but not waited for (a port Portico only dials, or never uses)
 *
 * Every wait is bounded; a test that forgets harness_free() still leaves no proxy behind (the
 * child gets SIGKILL when the test process dies). Return vocabulary: 0 ok, -1 error (a message
 * on stderr and in harness_error()).
 */
#ifndef PORTICO_HARNESS_H
#define PORTICO_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "testutil.h"

#define HARNESS_START_TIMEOUT_MS 5000 /* default bound for the listeners to accept */
#define HARNESS_STOP_TIMEOUT_MS 5000  /* default bound between SIGTERM and SIGKILL */

/* How the child ended, after harness_stop() or once it died by itself. */
struct harness_exit {
    bool exited;     /* exited by itself (code valid) */
    int code;        /* exit code when exited */
    bool signaled;   /* died of a signal */
    int signal;      /* the signal when signaled */
    bool sigkilled;  /* did not stop within the stop timeout; the harness sent SIGKILL */
};

struct harness;

/* A new harness with its temp dir. NULL on error. */
struct harness *harness_new(void);

/* Stops the child if still running (SIGKILL if needed), removes the temp dir (kept when
 * $PORTICO_TEST_KEEP is set, its path printed), frees h. NULL is fine. */
void harness_free(struct harness *h);

/* The temp dir, and the path of the config file in it. */
const char *harness_dir(const struct harness *h);
const char *harness_config_path(const struct harness *h);

/* The port named name (allocated on first use, distinct from the harness's other ports); 0 on
 * error. The same port {{port:name}} / {{free_port:name}} expands to. */
uint16_t harness_port(struct harness *h, const char *name);

/* Writes the config file (printf, then placeholders). 0 or -1 (unknown placeholder ...). */
int harness_write_config(struct harness *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes another file into the temp dir, placeholders expanded too. 0 or -1. */
int harness_write_file(struct harness *h, const char *name, const char *text);

/* Uses this binary instead of $PORTICO_BIN (the string is borrowed). */
void harness_set_bin(struct harness *h, const char *path);

/* Adds an argument after `-c <config>` for the next start. */
int harness_add_arg(struct harness *h, const char *arg);

/* Overrides the start / stop bounds (milliseconds). */
void harness_set_timeouts(struct harness *h, int start_ms, int stop_ms);

/* Starts `PORTICO_BIN -c <config> [args]` and waits until every {{port:...}} listener accepts.
 * Each is probed with a connection that is half-closed at once; the wait ends when the child has
 * closed it too, so nothing of the harness is left in the child's accept queue or descriptors.
 * -1 if it cannot start, exits early (status in harness_exit_info) or is not ready in time. */
int harness_start(struct harness *h);

/* Waits until 127.0.0.1:port accepts a probe connection and closes it after its end (or the
 * child dies). 0 or -1. */
int harness_wait_port(struct harness *h, uint16_t port, int timeout_ms);

/* The child's pid (0 when not started), and sends it a signal (0 or -1). */
pid_t harness_pid(const struct harness *h);
int harness_signal(struct harness *h, int sig);

/* True while the child runs; false once it has exited (then reaped, see harness_exit_info). */
bool harness_running(struct harness *h);

/* Waits up to timeout_ms for the child to exit by itself (then reaped, see harness_exit_info).
 * 0, or -1 when it still runs. */
int harness_wait_exit(struct harness *h, int timeout_ms);

/* Stops now: SIGTERM and SIGINT (Portico's graceful stop, cut short by the second signal), then
 * waits up to the stop timeout; SIGKILL after it (reported). Returns the exit code (0 = clean
 * stop), 128 + signal when it died of a signal (including the harness's SIGKILL), or -1 when it
 * was never started (h NULL too). Anything but 0 is also printed with the tail of stderr. */
int harness_stop(struct harness *h);

/* Details of the end, valid after harness_stop() or once harness_running() returned false. */
const struct harness_exit *harness_exit_info(const struct harness *h);

/* Text of the last error ("" if none). */
const char *harness_error(const struct harness *h);

/* Captured output: a malloc'd, NUL-terminated copy ("" when empty). */
char *harness_stdout(struct harness *h);
char *harness_stderr(struct harness *h);

/* True when needle occurs in the captured stdout or stderr. */
bool harness_log_contains(struct harness *h, const char *needle);

/* Waits until needle occurs in stdout or stderr (inotify, no polling). 0 or -1 (timeout). */
int harness_wait_log(struct harness *h, const char *needle, int timeout_ms);

/* Waits until needle has occurred n times in stdout and stderr together (inotify, no polling):
 * a line a second reload logs like the first. 0 or -1 (timeout). */
int harness_wait_log_count(struct harness *h, const char *needle, unsigned n, int timeout_ms);

/* Same for any file of the temp dir (e.g. an access log configured as {{dir}}/access.log). */
bool harness_file_contains(struct harness *h, const char *name, const char *needle);
int harness_wait_file(struct harness *h, const char *name, const char *needle, int timeout_ms);

/* Waits (bounded) for a line of file `name` in the temp dir containing needle, and returns that
 * line without its newline, malloc'd; NULL on timeout. For access-log assertions. */
char *harness_file_line(struct harness *h, const char *name, const char *needle, int timeout_ms);

/* Runs `PORTICO_BIN args...` to completion (10 s bound, or PORTICO_TEST_START_MS when longer),
 * capturing its output into *res (may be NULL). Returns the exit code as tu_run_command does. */
int harness_run(struct harness *h, const char *const args[], struct tu_cmd_result *res);

/* `PORTICO_BIN -t -c <config>`: the config test. Exit code, output in *res (may be NULL). */
int harness_check_config(struct harness *h, struct tu_cmd_result *res);

#endif
