/*
 * notify.c — systemd's notification protocol: one datagram of "KEY=value" lines per message to
 * the AF_UNIX socket named by NOTIFY_SOCKET (sd_notify(3)). Only the main thread sends.
 */
#include "portico/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "portico/log.h"
#include "portico/util.h"

static struct {
    int fd; /* -1: nothing to tell */
    struct sockaddr_un addr;
    socklen_t addr_len;
    bool warned; /* a send failed and was said */
} notify = {.fd = -1};

int notify_open(void)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof(notify.addr.sun_path)) {
        log_warn("NOTIFY_SOCKET %s: not a socket path or @name; systemd will not hear that "
                 "Portico is ready",
                 name);
        return -1;
    }
    notify.addr.sun_family = AF_UNIX;
    memcpy(notify.addr.sun_path, name, len);
    if (name[0] == '@') /* the abstract namespace: a leading NUL, no terminating one */
        notify.addr.sun_path[0] = '\0';
    notify.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (name[0] == '@' ? 0 : 1));
    notify.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (notify.fd < 0) {
        log_warn("NOTIFY_SOCKET %s: cannot open a socket: %s; systemd will not hear that Portico "
                 "is ready",
                 name, strerror(errno));
        return -1;
    }
    return 0;
}

void notify_send(const char *fmt, ...)
{
    if (notify.fd < 0)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = MIN((size_t)n, sizeof(msg) - 1); /* a long STATUS= is cut, never the keys before */
    if (sendto(notify.fd, msg, len, MSG_NOSIGNAL, (const struct sockaddr *)&notify.addr,
               notify.addr_len) < 0 &&
        !notify.warned) {
        notify.warned = true;
        log_warn("NOTIFY_SOCKET: cannot tell systemd \"%.*s\": %s; it may show a stale state",
                 (int)strcspn(msg, "\n"), msg, strerror(errno));
    }
}

void notify_close(void)
{
    if (notify.fd >= 0)
        close(notify.fd);
    notify.fd = -1;
}
