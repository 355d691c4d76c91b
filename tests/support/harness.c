/*
 * harness.c — temp dir, config, ports and the Portico child process of one integration test.
 *
 * The child is started with fork + exec (not posix_spawn) for one reason: PR_SET_PDEATHSIG, so a
 * test that crashes or forgets to stop it never leaves a proxy holding ports. Exits are watched
 * through a pidfd, so every wait is a poll() with a deadline.
 */
#include "harness.h"
#include "testutil.h"

#include "certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define HARNESS_MAX_PORTS 16
#define HARNESS_MAX_ARGS 16
#define HARNESS_PATH 512

struct harness_port {
    char name[64];
    uint16_t port;
    bool wait;                 /* a Portico listener: harness_start waits for it */
};

struct harness {
    char dir[HARNESS_PATH / 2];
    char config[HARNESS_PATH];
    char out_log[HARNESS_PATH];
    char err_log[HARNESS_PATH];
    const char *bin;           /* borrowed from the environment, or the default */
    struct harness_port ports[HARNESS_MAX_PORTS];
    size_t nports;
    char *args[HARNESS_MAX_ARGS];
    size_t nargs;
    int start_timeout_ms;
    int stop_timeout_ms;
    pid_t pid;                 /* 0 before start */
    int pidfd;                 /* readable once the child exited; -1 when none */
    int watch;                 /* inotify on dir for the waits, kept (wait_files); -1: none yet */
    atomic_bool watching;      /* a wait is using watch */
    bool running;
    bool reaped;
    struct harness_exit exit;
    char error[512];
};

static void set_error(struct harness *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct harness *h, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(h->error, sizeof(h->error), fmt, ap);
    va_end(ap);
    fprintf(stderr, "harness: %s\n", h->error);
}

/* "<dir>/<name>" into buf; -1 if it does not fit. */
static int dir_path(const struct harness *h, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", h->dir, name);

    return n < 0 || (size_t)n >= size ? -1 : 0;
}

struct harness *harness_new(void)
{
    struct harness *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        return NULL;
    }
    tu_ignore_sigpipe();
    h->pidfd = -1;
    h->watch = -1;
    h->start_timeout_ms = HARNESS_START_TIMEOUT_MS;
    h->stop_timeout_ms = HARNESS_STOP_TIMEOUT_MS;
    /* A slower Portico (valgrind's, scripts/valgrind.sh) gets longer to start and stop. */
    const char *slow = getenv("PORTICO_TEST_START_MS");
    if (slow != NULL && atoi(slow) > 0) {
        h->start_timeout_ms = atoi(slow);
        h->stop_timeout_ms = atoi(slow);
    }
    h->bin = getenv("PORTICO_BIN");
    if (h->bin == NULL || h->bin[0] == '\0') {
        h->bin = "build/portico";
    }
    if (tu_make_temp_dir("portico-test", h->dir, sizeof(h->dir)) < 0
        || dir_path(h, "portico.ini", h->config, sizeof(h->config)) < 0
        || dir_path(h, "stdout.log", h->out_log, sizeof(h->out_log)) < 0
        || dir_path(h, "stderr.log", h->err_log, sizeof(h->err_log)) < 0) {
        perror("harness_new: temp dir");
        free(h);
        return NULL;
    }
    return h;
}

const char *harness_dir(const struct harness *h)
{
    return h->dir;
}

const char *harness_config_path(const struct harness *h)
{
    return h->config;
}

const char *harness_error(const struct harness *h)
{
    return h->error;
}

void harness_set_timeouts(struct harness *h, int start_ms, int stop_ms)
{
    h->start_timeout_ms = start_ms;
    h->stop_timeout_ms = stop_ms;
}

void harness_set_bin(struct harness *h, const char *path)
{
    h->bin = path;
}

int harness_add_arg(struct harness *h, const char *arg)
{
    if (h->nargs == HARNESS_MAX_ARGS || (h->args[h->nargs] = strdup(arg)) == NULL) {
        return -1;
    }
    h->nargs++;
    return 0;
}

static struct harness_port *find_port(struct harness *h, const char *name, size_t len)
{
    for (size_t i = 0; i < h->nports; i++) {
        if (strlen(h->ports[i].name) == len && strncmp(h->ports[i].name, name, len) == 0) {
            return &h->ports[i];
        }
    }
    if (h->nports == HARNESS_MAX_PORTS || len >= sizeof(h->ports[0].name)) {
        return NULL;
    }
    struct harness_port *p = &h->ports[h->nports];

    memcpy(p->name, name, len);
    p->name[len] = '\0';
    /* Distinct from the ports already given out, whatever the kernel's choice. */
    for (int tries = 0; tries < 20; tries++) {
        bool dup = false;

        if (tu_free_port(&p->port) < 0) {
            return NULL;
        }
        for (size_t i = 0; i < h->nports; i++) {
            dup = dup || h->ports[i].port == p->port;
        }
        if (!dup) {
            h->nports++;
            return p;
        }
    }
    return NULL;
}

uint16_t harness_port(struct harness *h, const char *name)
{
    struct harness_port *p = find_port(h, name, strlen(name));

    return p != NULL ? p->port : 0;
}

/* Appends n bytes to a growable string. */
static int sappend(char **s, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = (*len + n + 1) * 2;
        char *ns = realloc(*s, ncap);

        if (ns == NULL) {
            return -1;
        }
        *s = ns;
        *cap = ncap;
    }
    memcpy(*s + *len, data, n);
    *len += n;
    (*s)[*len] = '\0';
    return 0;
}

/* Expands the {{...}} placeholders of text into a malloc'd string (NULL on error). */
static char *expand(struct harness *h, const char *text)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    const char *p = text;

    if (sappend(&out, &len, &cap, "", 0) < 0) {
        return NULL;
    }
    for (;;) {
        const char *open = strstr(p, "{{");

        if (open == NULL) {
            if (sappend(&out, &len, &cap, p, strlen(p)) < 0) {
                goto fail;
            }
            return out;
        }
        const char *close = strstr(open, "}}");

        if (close == NULL) {
            set_error(h, "config: unterminated placeholder at \"%.20s\"", open);
            goto fail;
        }
        if (sappend(&out, &len, &cap, p, (size_t)(open - p)) < 0) {
            goto fail;
        }
        const char *name = open + 2;
        size_t nlen = (size_t)(close - name);
        char value[HARNESS_PATH];

        if (nlen == 3 && strncmp(name, "dir", 3) == 0) {
            snprintf(value, sizeof(value), "%s", h->dir);
        } else if (nlen == 5 && strncmp(name, "certs", 5) == 0) {
            const struct test_certs *c = certs_get();

            if (c == NULL) {
                set_error(h, "config: {{certs}}: certificate generation failed");
                goto fail;
            }
            snprintf(value, sizeof(value), "%s", c->dir);
        } else if (nlen > 5 && strncmp(name, "port:", 5) == 0) {
            struct harness_port *hp = find_port(h, name + 5, nlen - 5);

            if (hp == NULL) {
                set_error(h, "config: no port for %.*s", (int)nlen, name);
                goto fail;
            }
            hp->wait = true;
            snprintf(value, sizeof(value), "%u", hp->port);
        } else if (nlen > 10 && strncmp(name, "free_port:", 10) == 0) {
            struct harness_port *hp = find_port(h, name + 10, nlen - 10);

            if (hp == NULL) {
                set_error(h, "config: no port for %.*s", (int)nlen, name);
                goto fail;
            }
            snprintf(value, sizeof(value), "%u", hp->port);
        } else {
            set_error(h, "config: unknown placeholder {{%.*s}}", (int)nlen, name);
            goto fail;
        }
        if (sappend(&out, &len, &cap, value, strlen(value)) < 0) {
            goto fail;
        }
        p = close + 2;
    }
fail:
    free(out);
    return NULL;
}

static int write_expanded(struct harness *h, const char *path, const char *text)
{
    char *out = expand(h, text);
    int rc = -1;

    if (out != NULL) {
        rc = tu_write_file(path, out, strlen(out));
        if (rc < 0) {
            set_error(h, "cannot write %s: %s", path, strerror(errno));
        }
    }
    free(out);
    return rc;
}

int harness_write_config(struct harness *h, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -1;
    }
    int rc = write_expanded(h, h->config, text);

    free(text);
    return rc;
}

int harness_write_file(struct harness *h, const char *name, const char *text)
{
    char path[HARNESS_PATH];

    if (dir_path(h, name, path, sizeof(path)) < 0) {
        return -1;
    }
    return write_expanded(h, path, text);
}

/* ---- the child ---- */

static void decode_status(struct harness *h, int status)
{
    h->exit.exited = WIFEXITED(status);
    h->exit.code = h->exit.exited ? WEXITSTATUS(status) : 0;
    h->exit.signaled = WIFSIGNALED(status);
    h->exit.signal = h->exit.signaled ? WTERMSIG(status) : 0;
}

/* Reaps the child if it has exited; waits up to timeout_ms for that. true once reaped. */
static bool reap(struct harness *h, int timeout_ms)
{
    int status;

    if (!h->running) {
        return true;
    }
    if (h->pidfd >= 0) {
        short rev;

        if (tu_poll_until(h->pidfd, POLLIN, tu_now_ms() + timeout_ms, &rev) != 1) {
            return false;
        }
    }
    /* Without a pidfd (old kernel), a bounded WNOHANG loop paced by poll() on nothing. */
    int64_t deadline = tu_now_ms() + timeout_ms;

    for (;;) {
        pid_t r = waitpid(h->pid, &status, WNOHANG);

        if (r == h->pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            return false;
        }
        if (tu_ms_left(deadline) == 0) {
            return false;
        }
        poll(NULL, 0, 5);
    }
    decode_status(h, status);
    h->running = false;
    h->reaped = true;
    if (h->pidfd >= 0) {
        close(h->pidfd);
        h->pidfd = -1;
    }
    return true;
}

int harness_wait_exit(struct harness *h, int timeout_ms)
{
    return reap(h, timeout_ms) ? 0 : -1;
}

bool harness_running(struct harness *h)
{
    return h->running && !reap(h, 0);
}

pid_t harness_pid(const struct harness *h)
{
    return h->pid;
}

int harness_signal(struct harness *h, int sig)
{
    return h->running ? kill(h->pid, sig) : -1;
}

const struct harness_exit *harness_exit_info(const struct harness *h)
{
    return &h->exit;
}

/* Prints the last lines of the child's stderr, for failures. */
static void print_stderr_tail(struct harness *h)
{
    size_t len;
    char *text = tu_read_file(h->err_log, &len);

    if (text == NULL) {
        return;
    }
    const char *tail = len > 2000 ? text + len - 2000 : text;

    fprintf(stderr, "---- %s (tail) ----\n%s%s---- end ----\n", h->err_log, tail,
            len > 0 && text[len - 1] != '\n' ? "\n" : "");
    free(text);
}

/* exit status in the harness_stop convention */
static int status_code(const struct harness *h)
{
    return h->exit.signaled ? 128 + h->exit.signal : h->exit.code;
}

static void describe_exit(struct harness *h, const char *when)
{
    if (h->exit.signaled) {
        set_error(h, "%s %s: killed by signal %d (%s)%s", h->bin, when, h->exit.signal,
                  strsignal(h->exit.signal), h->exit.sigkilled ? ", SIGKILL by the harness" : "");
    } else {
        set_error(h, "%s %s: exit code %d", h->bin, when, h->exit.code);
    }
    print_stderr_tail(h);
}

/* What became of a readiness probe (one connection to a listener). */
enum probe {
    PROBE_NOT_YET, /* refused, or not accepted within 100 ms: try again */
    PROBE_DONE,    /* accepted, and closed again by the child */
    PROBE_KEPT,    /* accepted, but still open at the deadline */
};

/* Connects to 127.0.0.1:port, half-closes, and waits (to the deadline) until the peer closes too.
 * Waiting for that close, not only for the accept, means the child has taken the probe from its
 * accept queue and let go of it before harness_start returns: a test that counts the child's
 * descriptors or connections right after the start never meets the harness's probe. */
static enum probe probe_port(uint16_t port, int64_t deadline)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    enum probe result = PROBE_NOT_YET;
    int accepted = 0;

    if (fd < 0) {
        return PROBE_NOT_YET;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        accepted = 1;
    } else if (errno == EINPROGRESS) {
        short rev = 0;
        int64_t step = tu_now_ms() + 100;

        if (tu_poll_until(fd, POLLOUT, step < deadline ? step : deadline, &rev) == 1) {
            int err = 0;
            socklen_t elen = sizeof(err);

            accepted = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
        }
    }
    if (accepted) {
        shutdown(fd, SHUT_WR);
        result = PROBE_KEPT;
        /* Whatever the child sends first (an HTTP/2 SETTINGS frame) is read and dropped; each
         * read takes at least a byte, so the loop ends by EOF, an error or the deadline. */
        for (;;) {
            char sink[512];
            short rev = 0;

            if (tu_poll_until(fd, POLLIN, deadline, &rev) != 1) {
                break;
            }
            ssize_t n = recv(fd, sink, sizeof(sink), 0);

            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                result = PROBE_DONE;
                break;
            }
        }
    }
    close(fd);
    return result;
}

int harness_wait_port(struct harness *h, uint16_t port, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;

    for (;;) {
        enum probe p = probe_port(port, deadline);

        if (p == PROBE_DONE) {
            return 0;
        }
        if (p == PROBE_KEPT) {
            set_error(h, "127.0.0.1:%u accepted the probe connection but had not closed it "
                      "(after the probe's FIN) within %d ms", port, timeout_ms);
            print_stderr_tail(h);
            return -1;
        }
        /* Between attempts, wait on the child's exit (bounded, 10 ms): a child that died will
         * never listen, so that ends the wait at once. */
        if (!h->running || reap(h, tu_ms_left(deadline) < 10 ? tu_ms_left(deadline) : 10)) {
            describe_exit(h, "exited before listening");
            return -1;
        }
        if (tu_ms_left(deadline) == 0) {
            set_error(h, "127.0.0.1:%u not accepting after %d ms", port, timeout_ms);
            print_stderr_tail(h);
            return -1;
        }
    }
}

int harness_start(struct harness *h)
{
    char *argv[HARNESS_MAX_ARGS + 5];
    size_t argc = 0;
    int exec_pipe[2];

    if (h->running) {
        set_error(h, "already running");
        return -1;
    }
    argv[argc++] = (char *)(uintptr_t)h->bin;
    argv[argc++] = (char *)(uintptr_t)"-c";
    argv[argc++] = h->config;
    for (size_t i = 0; i < h->nargs; i++) {
        argv[argc++] = h->args[i];
    }
    argv[argc] = NULL;
    /* Everything the child needs is prepared here: after fork it may only make system calls. */
    int out = open(h->out_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int err = open(h->err_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();

    if (out < 0 || err < 0 || devnull < 0 || pipe2(exec_pipe, O_CLOEXEC) < 0) {
        set_error(h, "cannot open the log files: %s", strerror(errno));
        goto fail_fds;
    }
    memset(&h->exit, 0, sizeof(h->exit));
    h->reaped = false;
    h->pid = fork();
    if (h->pid < 0) {
        set_error(h, "fork: %s", strerror(errno));
        close(exec_pipe[0]);
        close(exec_pipe[1]);
        goto fail_fds;
    }
    if (h->pid == 0) {
        sigset_t none;
        int e;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(devnull, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(h->bin, argv);
        e = errno;
        if (write(exec_pipe[1], &e, sizeof(e)) < 0) {
            _exit(127);
        }
        _exit(127);
    }
    close(exec_pipe[1]);
    close(out);
    close(err);
    close(devnull);
    h->running = true;
    h->pidfd = (int)syscall(SYS_pidfd_open, h->pid, 0);

    /* EOF on the pipe means exec succeeded (the pipe was close-on-exec); an int means errno. */
    int exec_errno = 0;
    ssize_t n;

    while ((n = read(exec_pipe[0], &exec_errno, sizeof(exec_errno))) < 0 && errno == EINTR) {
    }
    close(exec_pipe[0]);
    if (n > 0) {
        reap(h, 1000);
        set_error(h, "cannot execute %s: %s (set PORTICO_BIN?)", h->bin, strerror(exec_errno));
        return -1;
    }
    int64_t deadline = tu_now_ms() + h->start_timeout_ms;

    for (size_t i = 0; i < h->nports; i++) {
        if (h->ports[i].wait
            && harness_wait_port(h, h->ports[i].port, tu_ms_left(deadline)) < 0) {
            return -1;
        }
    }
    return 0;
fail_fds:
    if (out >= 0) {
        close(out);
    }
    if (err >= 0) {
        close(err);
    }
    if (devnull >= 0) {
        close(devnull);
    }
    return -1;
}

int harness_stop(struct harness *h)
{
    if (h == NULL || h->pid == 0) { /* a group setup that failed before it made one */
        return -1;
    }
    if (!h->reaped) {
        /* Two stop signals: the first starts Portico's graceful stop, the second ends it at
         * once, as SIGTERM alone did before graceful stops existed (test_lifecycle.c covers the
         * graceful stop itself). Different signals, so that both stay pending. */
        kill(h->pid, SIGTERM);
        kill(h->pid, SIGINT);
        if (!reap(h, h->stop_timeout_ms)) {
            fprintf(stderr, "harness: %s did not stop within %d ms of SIGTERM: SIGKILL\n", h->bin,
                    h->stop_timeout_ms);
            kill(h->pid, SIGKILL);
            h->exit.sigkilled = true;
            if (!reap(h, 5000)) {
                set_error(h, "pid %d survives SIGKILL", (int)h->pid);
                return -1;
            }
        }
    }
    int code = status_code(h);

    if (code != 0) {
        describe_exit(h, "after SIGTERM");
    }
    return code;
}

void harness_free(struct harness *h)
{
    if (h == NULL) {
        return;
    }
    if (h->running) {
        kill(h->pid, SIGKILL);
        reap(h, 5000);
    }
    if (h->pidfd >= 0) {
        close(h->pidfd);
    }
    if (h->watch >= 0) {
        close(h->watch);
    }
    if (getenv("PORTICO_TEST_KEEP") != NULL) {
        fprintf(stderr, "harness: keeping %s\n", h->dir);
    } else {
        tu_remove_tree(h->dir);
    }
    for (size_t i = 0; i < h->nargs; i++) {
        free(h->args[i]);
    }
    free(h);
}

/* ---- captured output ---- */

static char *read_or_empty(const char *path)
{
    char *text = tu_read_file(path, NULL);

    return text != NULL ? text : strdup("");
}

char *harness_stdout(struct harness *h)
{
    return read_or_empty(h->out_log);
}

char *harness_stderr(struct harness *h)
{
    return read_or_empty(h->err_log);
}

bool harness_file_contains(struct harness *h, const char *name, const char *needle)
{
    char path[HARNESS_PATH];

    if (dir_path(h, name, path, sizeof(path)) < 0) {
        return false;
    }
    char *text = tu_read_file(path, NULL);
    bool found = tu_contains(text, needle);

    free(text);
    return found;
}

bool harness_log_contains(struct harness *h, const char *needle)
{
    return harness_file_contains(h, "stdout.log", needle)
           || harness_file_contains(h, "stderr.log", needle);
}

/* Looks for needle in what the file `name` gained since *scanned (plus the needle's length
 * minus one before it, for a needle split across two looks), and moves *scanned to its end.
 * A log that grows by one line per request is then read once, not once per wake-up. */
static unsigned scan_new_bytes(struct harness *h, const char *name, const char *needle,
                               off_t *scanned)
{
    char path[HARNESS_PATH];
    struct stat st;
    size_t nlen = strlen(needle);
    unsigned found = 0;

    if (dir_path(h, name, path, sizeof(path)) < 0) {
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return 0;
    }
    off_t from = *scanned > (off_t)nlen ? *scanned - (off_t)nlen + 1 : 0;

    if (fstat(fd, &st) == 0 && st.st_size > from) {
        size_t len = (size_t)(st.st_size - from);
        char *buf = malloc(len);
        ssize_t got = buf ? pread(fd, buf, len, from) : -1;

        if (got > 0) {
            /* each occurrence counted has a byte not scanned before: none is counted twice */
            for (const char *at = buf, *end = buf + got;
                 (at = memmem(at, (size_t)(end - at), needle, nlen)) != NULL; at++)
                found++;
            *scanned = from + got;
        }
        free(buf);
    }
    close(fd);
    return found;
}

/* An inotify descriptor watching the temp dir's files; -1 (errno set) when there is none. */
static int watch_open(const struct harness *h)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

    if (fd >= 0 && inotify_add_watch(fd, h->dir, IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE) < 0) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Reads what the watch has queued: it tells of writes the next look at the files sees. */
static void watch_drain(int fd)
{
    char events[4096];

    while (read(fd, events, sizeof(events)) > 0) {
    }
}

/* Waits until one of names (NULL-terminated, at most 2) contains needle. The inotify watch is
 * set, and what it queued read, before each look at the files, so a write in between still
 * wakes us. It is the harness's, set at its first wait and kept until harness_free: closing an
 * inotify descriptor with a watch waits in the kernel for an SRCU grace period
 * (fsnotify_destroy_group), 25 ms on average on a busy 2-core machine and up to 300 ms, which
 * test_reload's churn tests paid at each of their 100 reloads (3 to 5 s of their 4 to 6). A
 * wait on another thread meanwhile takes a watch of its own, as every wait once did, rather
 * than read the first one's events. */
static int wait_files(struct harness *h, const char *const names[], const char *needle,
                      unsigned want, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    bool shared = !atomic_exchange(&h->watching, true);
    off_t scanned[2] = { 0, 0 };
    unsigned seen = 0;
    int rc = -1;

    if (shared && h->watch < 0) {
        h->watch = watch_open(h);
    }
    int fd = shared ? h->watch : watch_open(h);

    if (fd < 0) {
        set_error(h, "inotify: %s", strerror(errno));
        goto done;
    }
    watch_drain(fd); /* an earlier wait's leftovers */
    for (;;) {
        for (size_t i = 0; i < 2 && names[i] != NULL; i++) {
            seen += scan_new_bytes(h, names[i], needle, &scanned[i]);
            if (seen >= want) {
                rc = 0;
                goto done;
            }
        }
        short rev;

        if (tu_poll_until(fd, POLLIN, deadline, &rev) != 1) {
            set_error(h, "\"%s\" logged %u of %u times within %d ms", needle, seen, want,
                  timeout_ms);
            goto done;
        }
        watch_drain(fd);
    }
done:
    if (shared) {
        atomic_store(&h->watching, false);
    } else if (fd >= 0) {
        close(fd);
    }
    return rc;
}

int harness_wait_log(struct harness *h, const char *needle, int timeout_ms)
{
    const char *const names[] = { "stdout.log", "stderr.log", NULL };

    return wait_files(h, names, needle, 1, timeout_ms);
}

int harness_wait_log_count(struct harness *h, const char *needle, unsigned n, int timeout_ms)
{
    const char *const names[] = { "stdout.log", "stderr.log", NULL };

    return wait_files(h, names, needle, n, timeout_ms);
}

int harness_wait_file(struct harness *h, const char *name, const char *needle, int timeout_ms)
{
    const char *const names[] = { name, NULL };

    return wait_files(h, names, needle, 1, timeout_ms);
}

/* ---- one-shot runs ---- */

int harness_run(struct harness *h, const char *const args[], struct tu_cmd_result *res)
{
    const char *argv[HARNESS_MAX_ARGS + 2];
    struct tu_cmd_result local;
    size_t n = 0;

    argv[n++] = h->bin;
    for (size_t i = 0; args[i] != NULL && n < HARNESS_MAX_ARGS + 1; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    /* tu_run_command searches PATH; a bin without a slash must still be the local file. */
    if (strchr(h->bin, '/') == NULL) {
        set_error(h, "PORTICO_BIN must be a path (contain a '/'): %s", h->bin);
        return -1;
    }
    /* 10 s, or a slower Portico's start bound (valgrind's `-t` with certificates to load took
     * over 10 s on a loaded host) */
    int bound_ms = h->start_timeout_ms > 10000 ? h->start_timeout_ms : 10000;
    int rc = tu_run_command(argv, bound_ms, res != NULL ? res : &local);

    if (res == NULL) {
        tu_cmd_result_free(&local);
    }
    return rc;
}

int harness_check_config(struct harness *h, struct tu_cmd_result *res)
{
    const char *const args[] = { "-t", "-c", h->config, NULL };

    return harness_run(h, args, res);
}

char *harness_file_line(struct harness *h, const char *name, const char *needle, int timeout_ms)
{
    if (harness_wait_file(h, name, needle, timeout_ms) != 0)
        return NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", harness_dir(h), name);
    char *text = tu_read_file(path, NULL);
    if (!text)
        return NULL;
    char *p = strstr(text, needle);
    char *line = NULL;
    if (p) {
        while (p > text && p[-1] != '\n')
            p--;
        line = strndup(p, strcspn(p, "\n"));
    }
    free(text);
    return line;
}
