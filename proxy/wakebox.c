/*
 * wakebox.c — work handed to a worker's loop from other threads. See wakebox.h.
 */
#include "portico/wakebox.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct wakebox {
    int fd;                            /* eventfd: written by posters, read by the loop */
    struct event *ev;
    pthread_mutex_t lock;
    struct wake_item *head, *tail;     /* posted, oldest first */
};

/* Runs the items one at a time: an item's run may cancel another one still in the list (an
 * HTTP/2 connection ending its streams), so none is held outside the lock meanwhile. */
static void wakebox_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct wakebox *wb = arg;
    uint64_t n;
    ssize_t got = read(fd, &n, sizeof(n));
    (void)got; /* EAGAIN: another turn read it; the list says what is due */
    for (;;) {
        pthread_mutex_lock(&wb->lock);
        struct wake_item *it = wb->head;
        if (it) {
            wb->head = it->next;
            if (!wb->head)
                wb->tail = NULL;
            it->next = NULL;
            it->pending = false;
        }
        pthread_mutex_unlock(&wb->lock);
        if (!it)
            return;
        it->run(it->arg);
    }
}

struct wakebox *wakebox_new(struct event_base *base)
{
    struct wakebox *wb = calloc(1, sizeof(*wb));
    if (!wb)
        return NULL;
    wb->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wb->fd < 0 || pthread_mutex_init(&wb->lock, NULL) != 0) {
        if (wb->fd >= 0)
            close(wb->fd);
        free(wb);
        return NULL;
    }
    wb->ev = event_new(base, wb->fd, EV_READ | EV_PERSIST, wakebox_cb, wb);
    if (!wb->ev || event_add(wb->ev, NULL) != 0) {
        wakebox_free(wb);
        return NULL;
    }
    return wb;
}

void wakebox_free(struct wakebox *wb)
{
    if (!wb)
        return;
    if (wb->ev)
        event_free(wb->ev);
    close(wb->fd);
    pthread_mutex_destroy(&wb->lock);
    free(wb);
}

void wakebox_post(struct wakebox *wb, struct wake_item *item)
{
    pthread_mutex_lock(&wb->lock);
    bool first = !item->pending;
    if (first) {
        item->pending = true;
        item->next = NULL;
        if (wb->tail)
            wb->tail->next = item;
        else
            wb->head = item;
        wb->tail = item;
    }
    pthread_mutex_unlock(&wb->lock);
    if (first) {
        uint64_t one = 1;
        ssize_t put = write(wb->fd, &one, sizeof(one));
        (void)put; /* only at a counter of 2^64 - 2: the loop is awake anyway */
    }
}

void wakebox_cancel(struct wakebox *wb, struct wake_item *item)
{
    pthread_mutex_lock(&wb->lock);
    if (item->pending) {
        struct wake_item **p = &wb->head, *prev = NULL;
        while (*p && *p != item) {
            prev = *p;
            p = &(*p)->next;
        }
        if (*p) {
            *p = item->next;
            if (wb->tail == item)
                wb->tail = prev;
        }
        item->pending = false;
        item->next = NULL;
    }
    pthread_mutex_unlock(&wb->lock);
}
