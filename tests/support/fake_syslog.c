/*
 * fake_syslog.c — see fake_syslog.h.
 */
#include "fake_syslog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FAKE_SYSLOG_MAX 4096 /* datagrams kept */

struct fake_syslog {
    int fd;
    char path[108];          /* a unix socket's, to remove */
    unsigned n;
    char *got[FAKE_SYSLOG_MAX];
};

static struct fake_syslog *bound(int family, const struct sockaddr *sa, socklen_t len,
                                 const char *what)
{
    struct fake_syslog *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return NULL;
    fs->fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fs->fd < 0 || bind(fs->fd, sa, len) != 0) {
        perror(what);
        if (fs->fd >= 0)
            close(fs->fd);
        free(fs);
        return NULL;
    }
    int size = 4 << 20; /* a burst of lines waits in the kernel until a wait reads it */
    (void)setsockopt(fs->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    return fs;
}

struct fake_syslog *fake_syslog_udp(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &a->sin6_addr);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, ip, &a->sin_addr);
        len = sizeof(*a);
    }
    return bound(ss.ss_family, (struct sockaddr *)&ss, len, "fake_syslog: udp bind");
}

struct fake_syslog *fake_syslog_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return NULL;
    strcpy(a.sun_path, path);
    unlink(path);
    struct fake_syslog *fs = bound(AF_UNIX, (struct sockaddr *)&a, sizeof(a),
                                   "fake_syslog: unix bind");
    if (fs)
        snprintf(fs->path, sizeof(fs->path), "%s", path);
    return fs;
}

static const char *find(const struct fake_syslog *fs, const char *needle, unsigned from)
{
    for (unsigned i = from; i < fs->n; i++)
        if (strstr(fs->got[i], needle))
            return fs->got[i];
    return NULL;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *fake_syslog_wait(struct fake_syslog *fs, const char *needle, int timeout_ms)
{
    const char *hit = find(fs, needle, 0);
    long long until = now_ms() + timeout_ms;
    while (!hit && fs->fd >= 0) {
        long long left = until - now_ms();
        struct pollfd p = {.fd = fs->fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        char buf[65536];
        ssize_t r = recv(fs->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (r < 0)
            continue;
        buf[r] = '\0';
        if (fs->n == FAKE_SYSLOG_MAX)
            break;
        fs->got[fs->n] = strdup(buf);
        if (!fs->got[fs->n])
            break;
        hit = find(fs, needle, fs->n++);
    }
    return hit;
}

unsigned fake_syslog_count(const struct fake_syslog *fs, const char *needle)
{
    unsigned n = 0;
    for (unsigned i = 0; i < fs->n; i++)
        n += strstr(fs->got[i], needle) != NULL;
    return n;
}

void fake_syslog_free(struct fake_syslog *fs)
{
    if (!fs)
        return;
    if (fs->fd >= 0)
        close(fs->fd);
    if (fs->path[0])
        unlink(fs->path);
    for (unsigned i = 0; i < fs->n; i++)
        free(fs->got[i]);
    free(fs);
}
