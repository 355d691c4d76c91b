/*
 * upgrade.c — the binary upgrade (SIGUSR2). See upgrade.h.
 *
 * Why inheritance and not SCM_RIGHTS over a unix socket (HAProxy's -x): the new process is our
 * child, so the descriptors are simply there after exec, with nothing to serve, authenticate or
 * time out; and the very same socket (not a copy of its queue) goes on listening, so a
 * connection queued on it is accepted by whichever process comes first. Only the child clears
 * FD_CLOEXEC (between fork and exec): the old process's descriptors stay close-on-exec for any
 * other exec, and a failed upgrade leaves them exactly as they were.
 */
#include "portico/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "portico/log.h"
#include "portico/util.h"

extern char **environ;

/* ---- the old process ---- */

static struct {
    char binary[PATH_MAX];                 /* "" when upgrade_init could not resolve it */
    char *const *argv;                     /* main's */
    _Atomic int state;                     /* enum upgrade_state; the thread sets the outcome */
    pid_t child;
    int ready_rd;                          /* the ready pipe's read end; -1: none */
    pthread_t thread;
    pthread_t wake;
    int wake_sig;
    char why[PATH_MAX + 128];              /* written by the thread before the outcome */
    char messages[UPGRADE_MESSAGE_MAX + 1]; /* the failed new process's, "" when none */
    unsigned char taken[UPGRADE_TAKEN_BYTES]; /* bit i: it listens on the i-th handed over */
    bool said;                             /* false: it did not say (every socket is its) */
} old = {.ready_rd = -1};

int upgrade_init(const char *argv0, char *const *argv)
{
    old.argv = argv;
    old.binary[0] = '\0';
    if (argv0 && strchr(argv0, '/')) {
        char cwd[PATH_MAX];
        int n = argv0[0] == '/' ? snprintf(old.binary, sizeof(old.binary), "%s", argv0)
                : getcwd(cwd, sizeof(cwd))
                    ? snprintf(old.binary, sizeof(old.binary), "%s/%s", cwd, argv0)
                    : -1;
        if (n > 0 && (size_t)n < sizeof(old.binary))
            return 0;
    } else {
        /* found on PATH by the shell: the file it found, named now, before any upgrade */
        ssize_t n = readlink("/proc/self/exe", old.binary, sizeof(old.binary) - 1);
        if (n > 0) {
            old.binary[n] = '\0';
            return 0;
        }
    }
    old.binary[0] = '\0';
    return -1;
}

const char *upgrade_binary(void)
{
    return old.binary;
}

/* Formats v in decimal into buf (async-signal-safe, for the child between fork and exec). */
static void put_decimal(char *buf, size_t size, long v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < (int)sizeof(digits));
    size_t i = 0;
    while (n > 0 && i + 1 < size)
        buf[i++] = digits[--n];
    buf[i] = '\0';
}

/* The child between fork and exec: only async-signal-safe calls. Never returns. */
static void child_exec(const int *fds, int nfds, int ready_wr, char **envp, char *watchdog_pid,
                       size_t watchdog_size)
{
    for (int i = 0; i < nfds; i++)
        fcntl(fds[i], F_SETFD, 0);
    fcntl(ready_wr, F_SETFD, 0);
    if (watchdog_pid)
        put_decimal(watchdog_pid, watchdog_size, (long)getpid());
    sigset_t none; /* the new process blocks what it takes, as at any start */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(old.binary, old.argv, envp);
    unsigned char msg[1 + sizeof(int)] = {'E'};
    int err = errno;
    memcpy(msg + 1, &err, sizeof(err));
    ssize_t n = write(ready_wr, msg, sizeof(msg));
    (void)n;
    _exit(127);
}

/* The outcome, set by the waiting thread, which then wakes the main thread. */
static void settle(enum upgrade_state state)
{
    atomic_store(&old.state, (int)state);
    pthread_kill(old.wake, old.wake_sig);
}

/* Reaps the child that ended (or was killed) and says how into old.why after prefix (NULL:
 * nothing said). */
static void reap(const char *prefix)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(old.child, &status, 0)) < 0 && errno == EINTR)
        ;
    if (!prefix)
        return;
    size_t n = strlen(old.why);
    if (r < 0)
        snprintf(old.why + n, sizeof(old.why) - n, "%s(pid %ld): %s", prefix, (long)old.child,
                 strerror(errno));
    else if (WIFEXITED(status))
        snprintf(old.why + n, sizeof(old.why) - n, "%s(pid %ld) exited with status %d", prefix,
                 (long)old.child, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(old.why + n, sizeof(old.why) - n, "%s(pid %ld) was killed by SIG%s", prefix,
                 (long)old.child, sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status))
                                                                 : "?");
}

_Static_assert(1 + UPGRADE_TAKEN_BYTES <= 1 + UPGRADE_MESSAGE_MAX &&
                   1 + UPGRADE_TAKEN_BYTES <= PIPE_BUF,
               "the ready word with its sockets is read in one piece");

/* The ready word's rest: a bit per descriptor handed over, in the order of the list, set for
 * the sockets the new process listens on (one write within PIPE_BUF: read whole). Without it (a
 * Portico of the first version with an upgrade), every socket handed over is taken. */
static void took(const unsigned char *rest, size_t len)
{
    memset(old.taken, 0, sizeof(old.taken));
    memcpy(old.taken, rest, MIN(len, sizeof(old.taken)));
    old.said = len > 0;
}

static void *wait_ready(void *arg)
{
    (void)arg;
    uint64_t deadline = now_us() + (uint64_t)UPGRADE_READY_MS * 1000;
    for (;;) {
        uint64_t now = now_us();
        if (now >= deadline)
            break;
        struct pollfd p = {.fd = old.ready_rd, .events = POLLIN};
        int rc = poll(&p, 1, (int)((deadline - now + 999) / 1000));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        unsigned char msg[1 + UPGRADE_MESSAGE_MAX];
        ssize_t n = read(old.ready_rd, msg, sizeof(msg));
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0 && msg[0] == 'R') {
            took(msg + 1, (size_t)n - 1);
            settle(UPGRADE_READY);
            return NULL;
        }
        if (n > 0 && msg[0] == 'F') { /* its messages; its exit follows (EOF) */
            size_t len = MIN((size_t)n - 1, sizeof(old.messages) - 1);
            memcpy(old.messages, msg + 1, len);
            old.messages[len] = '\0';
            continue;
        }
        if (n == 1 + (ssize_t)sizeof(int) && msg[0] == 'E') {
            int err;
            memcpy(&err, msg + 1, sizeof(err));
            snprintf(old.why, sizeof(old.why), "cannot execute %s: %s; ", old.binary,
                     strerror(err));
            reap("the child ");
        } else {
            old.why[0] = '\0';
            reap("the new process "); /* its end closed the pipe: it exited before saying */
        }
        settle(UPGRADE_FAILED);
        return NULL;
    }
    snprintf(old.why, sizeof(old.why), "the new process (pid %ld) did not say it serves within "
             "%d ms, so it was killed", (long)old.child, UPGRADE_READY_MS);
    kill(old.child, SIGKILL);
    reap(NULL);
    settle(UPGRADE_FAILED);
    return NULL;
}

/* The environment of the child: ours without PORTICO_UPGRADE (and WATCHDOG_PID, named anew in
 * *watchdog_pid when we had one), with `upgrade` added. NULL when out of memory. */
static char **child_environment(char *upgrade, char *watchdog, char **watchdog_pid)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 3, sizeof(*envp));
    if (!envp)
        return NULL;
    size_t k = 0;
    *watchdog_pid = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], UPGRADE_ENV "=", strlen(UPGRADE_ENV) + 1) == 0)
            continue;
        if (strncmp(environ[i], "WATCHDOG_PID=", 13) == 0) {
            *watchdog_pid = watchdog + 13;
            continue;
        }
        envp[k++] = environ[i];
    }
    envp[k++] = upgrade;
    if (*watchdog_pid)
        envp[k++] = watchdog;
    envp[k] = NULL;
    return envp;
}

int upgrade_begin(const int *fds, int nfds, pthread_t wake, int wake_sig, char *why, size_t size)
{
    if (!old.binary[0]) {
        snprintf(why, size, "the path of the binary could not be resolved at start");
        return -1;
    }
    /* A container's first process: the kernel kills the whole namespace when it exits, so the
     * new process would die with the old one's stop, and nothing would serve. */
    if (getpid() == 1) {
        snprintf(why, size, "this process is PID 1 of its PID namespace (a container's), whose "
                 "exit kills every process in it, the new one too: replace the container instead");
        return -1;
    }
    size_t cap = 64 + (size_t)nfds * 12;
    char *upgrade = malloc(cap);
    char watchdog[13 + 24] = "WATCHDOG_PID=";
    char *watchdog_pid = NULL;
    int pipefd[2] = {-1, -1};
    char **envp = NULL;
    if (!upgrade || pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(why, size, "%s", upgrade ? strerror(errno) : "out of memory");
        goto fail;
    }
    size_t len = (size_t)snprintf(upgrade, cap, UPGRADE_ENV "=ready=%d fds=", pipefd[1]);
    for (int i = 0; i < nfds; i++)
        len += (size_t)snprintf(upgrade + len, cap - len, "%s%d", i ? "," : "", fds[i]);
    if (!(envp = child_environment(upgrade, watchdog, &watchdog_pid))) {
        snprintf(why, size, "out of memory");
        goto fail;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(fds, nfds, pipefd[1], envp, watchdog_pid,
                   sizeof(watchdog) - (size_t)(watchdog_pid ? watchdog_pid - watchdog : 0));
    if (pid < 0) {
        snprintf(why, size, "fork: %s", strerror(errno));
        goto fail;
    }
    close(pipefd[1]); /* the child's now: its end (or exit) closes the pipe */
    free(envp);
    free(upgrade);
    old.child = pid;
    old.ready_rd = pipefd[0];
    old.wake = wake;
    old.wake_sig = wake_sig;
    old.why[0] = '\0';
    old.messages[0] = '\0';
    old.said = false;
    atomic_store(&old.state, (int)UPGRADE_PENDING);
    int err = pthread_create(&old.thread, NULL, wait_ready, NULL);
    if (err != 0) { /* nobody to wait for it: it must not serve beside us unawaited */
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(old.ready_rd);
        old.ready_rd = -1;
        old.child = 0;
        atomic_store(&old.state, (int)UPGRADE_IDLE);
        snprintf(why, size, "cannot start a thread to wait for it: %s", strerror(err));
        return -1;
    }
    return 0;
fail:
    free(envp);
    free(upgrade);
    if (pipefd[0] >= 0) {
        close(pipefd[0]);
        close(pipefd[1]);
    }
    return -1;
}

enum upgrade_state upgrade_state(const char **why)
{
    enum upgrade_state s = (enum upgrade_state)atomic_load(&old.state);
    if (why)
        *why = s == UPGRADE_FAILED ? old.why : "";
    return s;
}

const char *upgrade_messages(void)
{
    return upgrade_state(NULL) == UPGRADE_FAILED ? old.messages : "";
}

bool upgrade_taken(int index)
{
    if (upgrade_state(NULL) != UPGRADE_READY || !old.said)
        return true;
    return index >= 0 && index < UPGRADE_MAX_FDS && (old.taken[index / 8] >> (index % 8)) & 1;
}

pid_t upgrade_child(void)
{
    enum upgrade_state s = upgrade_state(NULL);
    return s == UPGRADE_PENDING || s == UPGRADE_READY ? old.child : 0;
}

void upgrade_cancel(void)
{
    /* READY too: the new process may have said it serves while the stop was being taken, its
     * word not yet settled (the stop's signal comes first); it would serve on, unasked. */
    enum upgrade_state s = upgrade_state(NULL);
    if (s == UPGRADE_PENDING || s == UPGRADE_READY)
        kill(old.child, SIGTERM);
}

void upgrade_end(void)
{
    enum upgrade_state s = upgrade_state(NULL);
    if (s != UPGRADE_READY && s != UPGRADE_FAILED)
        return;
    pthread_join(old.thread, NULL);
    close(old.ready_rd);
    old.ready_rd = -1;
    old.child = 0;
    atomic_store(&old.state, (int)UPGRADE_IDLE);
}

/* ---- the new process ---- */

enum inherited_kind { INH_SOCKET, INH_CLAIM };

struct inherited {
    int fd;
    int index;                             /* its place in the list of the variable */
    enum inherited_kind kind;
    bool taken;
    struct sockaddr_storage addr;          /* INH_SOCKET: where it listens */
    socklen_t addrlen;
    char name[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* INH_CLAIM: its abstract name */
};

static struct {
    bool started_by_upgrade;
    int ready_fd;
    struct inherited fds[UPGRADE_MAX_FDS];
    int n;
} heir = {.ready_fd = -1};

/* A descriptor number of the variable, at *p; -1 when there is none. */
static int parse_fd(const char **p)
{
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (end == *p || errno || v < 0 || v > INT_MAX)
        return -1;
    *p = end;
    return (int)v;
}

/* Tells what fd is: a listening TCP socket or a claim. -1 after a warning when neither. */
static int classify(int fd, struct inherited *out)
{
    int domain = 0, listening = 0;
    socklen_t len = sizeof(domain);
    *out = (struct inherited){.fd = fd};
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
        log_warn("upgrade: descriptor %d handed over: %s; ignored", fd, strerror(errno));
        return -1;
    }
    if (domain == AF_UNIX) {
        struct sockaddr_un un;
        socklen_t ulen = sizeof(un);
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (getsockname(fd, (struct sockaddr *)&un, &ulen) == 0 && ulen > off + 1 &&
            un.sun_path[0] == '\0') {
            size_t n = MIN(ulen - off - 1, sizeof(out->name) - 1);
            memcpy(out->name, un.sun_path + 1, n);
            out->name[n] = '\0';
            out->kind = INH_CLAIM;
            return 0;
        }
    } else if (domain == AF_INET || domain == AF_INET6) {
        len = sizeof(listening);
        out->addrlen = sizeof(out->addr);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening &&
            getsockname(fd, (struct sockaddr *)&out->addr, &out->addrlen) == 0) {
            out->kind = INH_SOCKET;
            return 0;
        }
    }
    log_warn("upgrade: descriptor %d handed over is neither a listening socket nor a claim; "
             "ignored", fd);
    return -1;
}

bool upgrade_inherit(void)
{
    const char *value = getenv(UPGRADE_ENV);
    if (!value)
        return false;
    heir.started_by_upgrade = true;
    const char *p = value;
    int ready = -1;
    bool ok = strncmp(p, "ready=", 6) == 0;
    if (ok) {
        p += 6;
        ok = (ready = parse_fd(&p)) >= 0 && strncmp(p, " fds=", 5) == 0;
        p += ok ? 5 : 0;
    }
    for (int index = 0; ok && *p && heir.n < UPGRADE_MAX_FDS; index++) {
        int fd = parse_fd(&p);
        if (fd < 0 || (*p != ',' && *p != '\0')) {
            ok = false;
            break;
        }
        p += *p == ',';
        if (classify(fd, &heir.fds[heir.n]) == 0)
            heir.fds[heir.n++].index = index;
    }
    if (!ok || *p)
        log_warn("upgrade: " UPGRADE_ENV " \"%s\" is not \"ready=FD fds=FD,...\" (from a "
                 "Portico of another version?); what could not be read is ignored", value);
    if (ready >= 0 && fcntl(ready, F_SETFD, FD_CLOEXEC) == 0)
        heir.ready_fd = ready;
    unsetenv(UPGRADE_ENV); /* for our own upgrade, later: it lists what we hand over then */
    return true;
}

bool upgrade_inherited(void)
{
    return heir.started_by_upgrade;
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr *b,
                         socklen_t blen)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET && blen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (b->sa_family == AF_INET6 && blen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

int upgrade_sockets_on(const struct sockaddr *sa, socklen_t salen)
{
    int n = 0;
    for (int i = 0; i < heir.n; i++) {
        const struct inherited *h = &heir.fds[i];
        n += h->kind == INH_SOCKET && !h->taken && same_address(&h->addr, sa, salen);
    }
    return n;
}

int upgrade_take_sockets(const struct sockaddr *sa, socklen_t salen, int index, int targets,
                         int *out, int max)
{
    int k = 0, n = 0;
    for (int i = 0; i < heir.n; i++) {
        struct inherited *h = &heir.fds[i];
        if (h->kind != INH_SOCKET || !same_address(&h->addr, sa, salen))
            continue;
        if (k % targets == index && n < max && !h->taken) {
            h->taken = true;
            out[n++] = h->fd;
        }
        k++;
    }
    return n;
}

int upgrade_take_claim(const char *prefix, const char *key)
{
    size_t plen = strlen(prefix), klen = strlen(key);
    for (int i = 0; i < heir.n; i++) {
        struct inherited *h = &heir.fds[i];
        const char *name = h->name;
        if (h->kind != INH_CLAIM || h->taken || strncmp(name, prefix, plen) != 0 ||
            name[plen] != '/')
            continue;
        const char *uid = name + plen + 1, *slash = strchr(uid, '/');
        if (!slash || slash == uid || strspn(uid, "0123456789") != (size_t)(slash - uid) ||
            strlen(slash + 1) != klen || memcmp(slash + 1, key, klen) != 0)
            continue;
        h->taken = true;
        return h->fd;
    }
    return -1;
}

void upgrade_drop_unused(void)
{
    for (int i = 0; i < heir.n; i++)
        if (!heir.fds[i].taken && heir.fds[i].fd >= 0) {
            close(heir.fds[i].fd);
            heir.fds[i].fd = -1;
        }
}

int upgrade_tell_failure(const char *text)
{
    if (heir.ready_fd < 0)
        return -1;
    char msg[1 + UPGRADE_MESSAGE_MAX];
    size_t len = strlen(text);
    if (len > UPGRADE_MESSAGE_MAX) { /* whole lines only */
        len = UPGRADE_MESSAGE_MAX;
        while (len > 0 && text[len - 1] != '\n')
            len--;
    }
    msg[0] = 'F';
    memcpy(msg + 1, text, len);
    ssize_t n = write(heir.ready_fd, msg, 1 + len); /* <= PIPE_BUF: whole or nothing */
    close(heir.ready_fd);
    heir.ready_fd = -1;
    return n == (ssize_t)(1 + len) && len == strlen(text) ? 0 : -1;
}

void upgrade_tell_ready(void)
{
    if (heir.ready_fd < 0)
        return;
    /* 'R', then a bit per descriptor of the list for the sockets we listen on: the old process
     * closes the others as a reload closes a dropped address's, after taking their queues,
     * instead of leaving them listening with nobody to accept. */
    unsigned char msg[1 + UPGRADE_TAKEN_BYTES] = {'R'};
    size_t len = 1;
    for (int i = 0; i < heir.n; i++) {
        int at = heir.fds[i].index;
        if (heir.fds[i].kind == INH_SOCKET && heir.fds[i].taken) {
            msg[1 + at / 8] |= (unsigned char)(1u << (at % 8));
            len = MAX(len, 1 + (size_t)at / 8 + 1);
        }
    }
    len = MAX(len, 2); /* a byte at least: none taken is not the bare 'R' of "all" */
    ssize_t n = write(heir.ready_fd, msg, len); /* <= PIPE_BUF: whole or nothing */
    if (n != (ssize_t)len)
        log_warn("upgrade: cannot tell the old process that this one serves: %s",
                 n < 0 ? strerror(errno) : "short write");
    close(heir.ready_fd);
    heir.ready_fd = -1;
}
