/*
 * wakebox.h — work handed to a worker's loop from other threads.
 *
 * The workers' event bases take no locks (worker.c), so another thread may not make their
 * events active. A wakebox is a worker's eventfd in its own base and a list under a mutex: any
 * thread posts an item (a function and its argument) and writes the eventfd; the worker's loop
 * wakes at once and runs the items, oldest first, on its own thread. The queue of max_conns
 * (balance.h) hands a freed slot to a waiter of another worker this way: no polling tick.
 */
#ifndef PORTICO_WAKEBOX_H
#define PORTICO_WAKEBOX_H

#include <stdbool.h>

struct event_base;
struct wakebox;

/* One piece of work, owned by its poster's owner (embedded in what it wakes). */
struct wake_item {
    struct wake_item *next;            /* the box's list, under its lock */
    bool pending;                      /* posted and not run yet */
    void (*run)(void *arg);            /* on the box's thread */
    void *arg;
};

/* A box in base (its thread's loop): NULL when out of memory or descriptors. */
struct wakebox *wakebox_new(struct event_base *base);

/* Frees wb (NULL is fine); items still pending are forgotten. On the box's thread. */
void wakebox_free(struct wakebox *wb);

/* Any thread: item runs on wb's thread soon (once, however often it is posted before). */
void wakebox_post(struct wakebox *wb, struct wake_item *item);

/* wb's thread: item will not run (its owner is going away). */
void wakebox_cancel(struct wakebox *wb, struct wake_item *item);

#endif
