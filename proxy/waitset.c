/*
 * waitset.c — an epoll of the worker's own for sockets that wait once. See waitset.h.
 */
#include "portico/waitset.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "portico/util.h"

#define WAITSET_BATCH 64 /* reports taken per wake-up; the rest wake the loop's next pass */

struct waitset {
    int epfd;
    struct event *ev; /* epfd readable: some entry fired */
    waitset_ready *ready;
};

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct waitset *ws = arg;
    struct epoll_event evs[WAITSET_BATCH];
    event_begin();
    int n = epoll_wait(fd, evs, WAITSET_BATCH, 0);
    /* Each report only activates its socket's read event: a callback here that closed another
     * reported socket (max_connections' room) would leave its pointer dangling further on. */
    for (int i = 0; i < n; i++)
        ws->ready(evs[i].data.ptr);
    event_end();
}

struct waitset *waitset_new(struct event_base *base, waitset_ready *ready)
{
    struct waitset *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->ready = ready;
    ws->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ws->epfd < 0) {
        free(ws);
        return NULL;
    }
    ws->ev = event_new(base, ws->epfd, EV_READ | EV_PERSIST, on_ready, ws);
    if (!ws->ev || event_add(ws->ev, NULL) != 0) {
        waitset_free(ws);
        return NULL;
    }
    return ws;
}

void waitset_free(struct waitset *ws)
{
    if (!ws)
        return;
    if (ws->ev)
        event_free(ws->ev);
    close(ws->epfd);
    free(ws);
}

int waitset_arm(struct waitset *ws, int fd, void *arg, bool known)
{
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = arg};
    return epoll_ctl(ws->epfd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e);
}

void waitset_disarm(struct waitset *ws, int fd)
{
    struct epoll_event e = {0}; /* kernels before 2.6.9 wanted one even for a DEL */
    epoll_ctl(ws->epfd, EPOLL_CTL_DEL, fd, &e);
}
