/*
 * waitset.c — an epoll of the worker's own for sockets that wait once. See waitset.h.
 */
#include "portico/waitset.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "portico/util.h"

#define WAITSET_BATCH 64 /* reports taken per wake-up; the rest wake the loop's next pass */

struct waitset {
    int epfd;
    struct event *ev; /* epfd readable: some entry fired */
    waitset_ready *ready;
    void **owner;     /* by descriptor: the arg of its armed entry, NULL when none */
    int nowner;
};

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct waitset *ws = arg;
    struct epoll_event evs[WAITSET_BATCH];
    event_begin();
    int n = epoll_wait(fd, evs, WAITSET_BATCH, 0);
    /* The owner's callback only schedules its read: none closes another reported owner here. */
    for (int i = 0; i < n; i++) {
        int at = evs[i].data.fd;
        void *owner = at < ws->nowner ? ws->owner[at] : NULL;
        if (owner) {
            ws->owner[at] = NULL;
            ws->ready(owner);
        }
    }
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
    free(ws->owner);
    free(ws);
}

int waitset_arm(struct waitset *ws, int fd, void *arg, bool known)
{
    if (fd >= ws->nowner) { /* grows with the highest descriptor armed: twice as far */
        int n = MAX(fd + 1, ws->nowner * 2);
        void **grown = realloc(ws->owner, (size_t)n * sizeof(*grown));
        if (!grown)
            return -1;
        memset(grown + ws->nowner, 0, (size_t)(n - ws->nowner) * sizeof(*grown));
        ws->owner = grown;
        ws->nowner = n;
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.fd = fd};
    if (epoll_ctl(ws->epfd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e) != 0)
        return -1;
    ws->owner[fd] = arg;
    return 0;
}

void waitset_forget(struct waitset *ws, int fd)
{
    if (fd < ws->nowner)
        ws->owner[fd] = NULL;
}
