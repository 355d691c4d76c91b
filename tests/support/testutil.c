/*
 * testutil.c — clock, bounded waits, files, commands and JSON helpers for the test support code.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

int64_t tu_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tu_ms_left(int64_t deadline)
{
    int64_t left = deadline - tu_now_ms();

    if (left < 0) {
        return 0;
    }
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

int tu_poll_until(int fd, short events, int64_t deadline, short *revents)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, tu_ms_left(deadline));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            return 0;
        }
        if (revents != NULL) {
            *revents = p.revents;
        }
        return 1;
    }
}

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void ignore_sigpipe_once(void)
{
    signal(SIGPIPE, SIG_IGN);
}

void tu_ignore_sigpipe(void)
{
    pthread_once(&sigpipe_once, ignore_sigpipe_once);
}

char *tu_read_file(const char *path, size_t *len)
{
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return NULL;
    }
    for (;;) {
        if (cap - used < 4096) {
            size_t grown = cap ? cap * 2 : 65536; /* doubling: big logs stay linear to read */
            char *nb = realloc(buf, grown);

            if (nb == NULL) {
                goto fail;
            }
            buf = nb;
            cap = grown;
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            goto fail;
        }
        if (n == 0) {
            break;
        }
        used += (size_t)n;
    }
    close(fd);
    buf[used] = '\0';
    if (len != NULL) {
        *len = used;
    }
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    const char *p = data;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        return -1;
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd) == 0 ? 0 : -1;
}

int tu_make_temp_dir(const char *prefix, char *buf, size_t size)
{
    const char *tmp = getenv("TMPDIR");

    if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    int n = snprintf(buf, size, "%s/%s-XXXXXX", tmp, prefix);

    if (n < 0 || (size_t)n >= size) {
        return -1;
    }
    return mkdtemp(buf) != NULL ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int tu_remove_tree(const char *dir)
{
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* Binds a TCP socket to 127.0.0.1:want (0: the kernel's choice) without SO_REUSEADDR, so a port
 * any socket still holds (TIME_WAIT included) is refused; puts the port in *port and closes. */
static int bind_and_close(uint16_t want, uint16_t *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(want),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0
        || getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    close(fd);
    return 0;
}

int tu_free_port(uint16_t *port)
{
    /* this process's next pick in the range: ports in turn, so none is given out twice */
    static atomic_uint next;
    const char *range = getenv("PORTICO_TEST_PORTS");
    unsigned low, high;

    if (range == NULL || sscanf(range, "%u-%u", &low, &high) != 2 || low == 0 || low > high
        || high > 65535) {
        return bind_and_close(0, port);
    }
    unsigned span = high - low + 1;
    unsigned start = (unsigned)getpid() * 2654435761u; /* another place for the next binary */

    for (unsigned tries = 0; tries < span; tries++) {
        unsigned pick = low + (start + atomic_fetch_add(&next, 1)) % span;

        if (bind_and_close((uint16_t)pick, port) == 0) {
            return 0;
        }
    }
    return -1;
}

/* Whether a TCP socket binds [::1]:0 in the calling thread's network namespace. */
static bool has_ipv6_loopback(void)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool bound = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

    if (fd >= 0) {
        close(fd);
    }
    return bound;
}

int tu_answer_head(int fd, const char *answer, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    char head[4096];
    size_t got = 0;
    while (!memmem(head, got, "\r\n\r\n", 4)) {
        if (got == sizeof(head) || tu_poll_until(fd, POLLIN, deadline, NULL) != 1)
            return -1;
        ssize_t n = read(fd, head + got, sizeof(head) - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    size_t len = strlen(answer);
    return write(fd, answer, len) == (ssize_t)len ? 0 : -1;
}

bool tu_epoll_watches(pid_t pid, unsigned long ino)
{
    return tu_epoll_watches_with(pid, ino, 0);
}

bool tu_epoll_watches_with(pid_t pid, unsigned long ino, unsigned events)
{
    char dir[64], needle[32];
    if (pid)
        snprintf(dir, sizeof(dir), "/proc/%d", (int)pid);
    else
        snprintf(dir, sizeof(dir), "/proc/self");
    snprintf(needle, sizeof(needle), " ino:%lx ", ino);
    char path[400]; /* dir, "/fdinfo/" and a d_name of up to 255 */
    snprintf(path, sizeof(path), "%s/fd", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        char link[64], line[256];
        snprintf(path, sizeof(path), "%s/fd/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n < 0)
            continue;
        link[n] = '\0';
        if (strcmp(link, "anon_inode:[eventpoll]") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/fdinfo/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        while (f && !found && fgets(line, sizeof(line), f)) {
            const char *mask = strstr(line, " events:");
            found = strncmp(line, "tfd:", 4) == 0 && strstr(line, needle) && mask &&
                    (strtoul(mask + 8, NULL, 16) & events) == events;
        }
        if (f)
            fclose(f);
    }
    closedir(d);
    return found;
}

bool tu_ipv6_loopback(void)
{
    static atomic_int known; /* 0: not asked yet, 1: has ::1, 2: has not */

    if (atomic_load(&known) == 0) {
        atomic_store(&known, has_ipv6_loopback() ? 1 : 2);
    }
    return atomic_load(&known) == 1;
}

int tu_sysctl_write(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t len = strlen(text);
    bool ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;

    if (fd >= 0) {
        close(fd);
    }
    return ok ? 0 : -1;
}

int tu_netns_enter(bool ipv6, const char **why)
{
    int old = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

    if (old < 0 || unshare(CLONE_NEWNET) != 0) {
        *why = "no network namespace here (unshare -n needs root: CAP_SYS_ADMIN)";
        if (old >= 0) {
            close(old);
        }
        return -1;
    }
    /* lo starts down in a new namespace: up, it has 127.0.0.1 and ::1 */
    struct ifreq ifr = { .ifr_name = "lo" };
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0
              && (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);

    if (fd >= 0) {
        close(fd);
    }
    /* a kernel without IPv6 has none to turn off */
    if (up && !ipv6 && tu_sysctl_write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1") != 0
        && access("/proc/sys/net/ipv6", F_OK) == 0) {
        up = false;
    }
    if (!up) {
        *why = "cannot set up loopback in a network namespace";
        tu_netns_leave(old);
        return -1;
    }
    if (ipv6 && !has_ipv6_loopback()) {
        *why = "no IPv6 loopback (::1) in a new network namespace";
        tu_netns_leave(old);
        return -1;
    }
    return old;
}

int tu_netns_leave(int old)
{
    int rc = setns(old, CLONE_NEWNET);

    close(old);
    return rc;
}

/* Growable capture buffer for one pipe. */
struct capture {
    char *buf;   /* NUL-terminated */
    size_t len;
    size_t cap;
};

/* Reads what is available on fd into c. Returns 0 at EOF, 1 if more may come, -1 on error. */
static int capture_read(int fd, struct capture *c)
{
    if (c->cap - c->len < 4096) {
        char *nb = realloc(c->buf, c->cap + 65536);

        if (nb == NULL) {
            return -1;
        }
        c->buf = nb;
        c->cap += 65536;
    }
    ssize_t n = read(fd, c->buf + c->len, c->cap - c->len - 1);

    if (n < 0) {
        return errno == EINTR || errno == EAGAIN ? 1 : -1;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return n == 0 ? 0 : 1;
}

int tu_run_command(const char *const argv[], int timeout_ms, struct tu_cmd_result *res)
{
    int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
    struct capture cap[2] = { { 0 }, { 0 } };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dflt;
    pid_t pid = -1;
    int status = 0;

    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        goto fail;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    /* The child gets default signal handling and an empty mask whatever the test process set. */
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)(uintptr_t)argv, environ);

    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;
    if (rc != 0) {
        errno = rc;
        goto fail;
    }

    int64_t deadline = tu_now_ms() + timeout_ms;
    int open_fds = 2;
    int fds[2] = { outp[0], errp[0] };

    while (open_fds > 0) {
        struct pollfd p[2];
        int np = 0, idx[2];

        for (int i = 0; i < 2; i++) {
            if (fds[i] >= 0) {
                p[np] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
                idx[np++] = i;
            }
        }
        int n = poll(p, (nfds_t)np, tu_ms_left(deadline));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            res->timed_out = n == 0;
            kill(pid, SIGKILL);
            break;
        }
        for (int k = 0; k < np; k++) {
            if (p[k].revents == 0) {
                continue;
            }
            if (capture_read(fds[idx[k]], &cap[idx[k]]) <= 0) {
                fds[idx[k]] = -1;
                open_fds--;
            }
        }
    }
    /* Both pipes are closed by the child's exit, or it was just SIGKILLed: this returns. */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->term_signal = WTERMSIG(status);
        res->exit_code = 128 + res->term_signal;
    }
fail:
    for (int i = 0; i < 2; i++) {
        if (cap[i].buf == NULL) {
            cap[i].buf = calloc(1, 1);
        }
    }
    res->out = cap[0].buf;
    res->out_len = cap[0].len;
    res->err = cap[1].buf;
    res->err_len = cap[1].len;
    if (outp[0] >= 0) {
        close(outp[0]);
    }
    if (errp[0] >= 0) {
        close(errp[0]);
    }
    if (outp[1] >= 0) {
        close(outp[1]);
    }
    if (errp[1] >= 0) {
        close(errp[1]);
    }
    return res->exit_code;
}

void tu_cmd_result_free(struct tu_cmd_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}

/* Points just past `"key"` followed by optional spaces and a colon and more spaces, or NULL. */
static const char *json_find_value(const char *json, const char *key)
{
    size_t klen = strlen(key);
    const char *p = json;

    while (json != NULL && (p = strchr(p, '"')) != NULL) {
        if (strncmp(p + 1, key, klen) == 0 && p[1 + klen] == '"') {
            const char *q = p + 2 + klen;

            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') {
                q++;
            }
            if (*q == ':') {
                q++;
                while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') {
                    q++;
                }
                return q;
            }
        }
        /* Skip this whole string so a key is never matched inside a value. */
        p++;
        while (*p != '\0' && *p != '"') {
            p += (*p == '\\' && p[1] != '\0') ? 2 : 1;
        }
        if (*p == '\0') {
            return NULL;
        }
        p++;
    }
    return NULL;
}

/* Appends the UTF-8 encoding of code point cp (BMP only) to out. */
static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

char *tu_json_get_string(const char *json, const char *key)
{
    const char *p = json_find_value(json, key);

    if (p == NULL || *p != '"') {
        return NULL;
    }
    p++;
    char *out = malloc(strlen(p) + 1); /* unescaping never grows the text */
    size_t n = 0;

    if (out == NULL) {
        return NULL;
    }
    while (*p != '"') {
        if (*p == '\0') {
            free(out);
            return NULL;
        }
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned cp = 0;

            for (int i = 1; i <= 4; i++) {
                char c = p[i];

                if (c == '\0') {
                    free(out);
                    return NULL;
                }
                cp = cp * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            n += put_utf8(out + n, cp);
            p += 4;
            break;
        }
        case '\0':
            free(out);
            return NULL;
        default: out[n++] = *p; break; /* \" \\ \/ */
        }
        p++;
    }
    out[n] = '\0';
    return out;
}

int tu_json_get_number(const char *json, const char *key, double *out)
{
    const char *p = json_find_value(json, key);
    char *end;

    if (p == NULL || !(*p == '-' || (*p >= '0' && *p <= '9'))) {
        return -1;
    }
    errno = 0;
    *out = strtod(p, &end);
    return end == p || errno != 0 ? -1 : 0;
}

bool tu_contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

void tu_test_filter(void)
{
    const char *glob = getenv("TEST_FILTER");
    if (glob)
        cmocka_set_test_filter(glob);
}
