/*
 * deadline.c — timers that are cheap to hold, to move and to cancel. See deadline.h.
 *
 * The heap is a pairing heap (Fredman, Sedgewick, Sleator, Tarjan 1986): insert and meld O(1),
 * removing the minimum or any node O(log n) amortized, links inside the nodes.
 */
#include "portico/deadline.h"

#include <event2/event_struct.h>
#include <stdlib.h>

#include "portico/util.h"

struct deadline_clock {
    struct event_base *base; /* borrowed */
    struct event ev;         /* fires for the heap's minimum */
    struct deadline *root;   /* the heap */
    uint64_t ev_at;          /* when ev fires; 0 = not pending */
    uint64_t pass_now;       /* the time of the pass running the callbacks */
    bool in_pass;
};

/* ---- the heap ---- */

/* Melds two heaps (roots with no siblings); the later root becomes the first child of the other. */
static struct deadline *meld(struct deadline *a, struct deadline *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (b->armed < a->armed) {
        struct deadline *t = a;
        a = b;
        b = t;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    return a;
}

/* Melds a list of siblings into one heap: pairs left to right, then the pairs right to left. */
static struct deadline *meld_siblings(struct deadline *first)
{
    struct deadline *pairs = NULL; /* melded pairs, the last first, linked through next */

    while (first) {
        struct deadline *a = first, *b = a->next;
        first = b ? b->next : NULL;
        a->next = a->prev = NULL;
        if (b)
            b->next = b->prev = NULL;
        struct deadline *m = meld(a, b);
        m->next = pairs;
        pairs = m;
    }
    struct deadline *root = NULL;
    while (pairs) {
        struct deadline *rest = pairs->next;
        pairs->next = NULL;
        root = meld(root, pairs);
        pairs = rest;
    }
    return root;
}

static void heap_insert(struct deadline_clock *c, struct deadline *d)
{
    d->child = d->next = d->prev = NULL;
    c->root = meld(c->root, d);
}

static void heap_remove(struct deadline_clock *c, struct deadline *d)
{
    struct deadline *sub = meld_siblings(d->child);

    if (d == c->root) {
        c->root = sub;
    } else {
        if (d->prev->child == d) /* the first child: prev is the parent */
            d->prev->child = d->next;
        else
            d->prev->next = d->next;
        if (d->next)
            d->next->prev = d->prev;
        c->root = meld(c->root, sub);
    }
    d->child = d->next = d->prev = NULL;
    d->armed = 0;
}

/* ---- the clock ---- */

static void clock_arm(struct deadline_clock *c, uint64_t at, uint64_t now)
{
    struct timeval tv = tv_from_us(at > now ? at - now : 0);
    if (evtimer_add(&c->ev, &tv) == 0)
        c->ev_at = at;
}

/* Puts d in the heap for `at`. One that comes due during a pass waits for the next one, as a
 * libevent timer added from a timer callback would: a callback can never loop on itself. */
static void put(struct deadline *d, uint64_t at, uint64_t now)
{
    struct deadline_clock *c = d->clock;

    if (c->in_pass && at <= c->pass_now)
        at = c->pass_now + 1;
    d->armed = at;
    heap_insert(c, d);
    if (!c->in_pass && (!c->ev_at || at < c->ev_at))
        clock_arm(c, at, now);
}

/* Runs the callbacks of every deadline whose time has come, earliest first. */
static void clock_cb(evutil_socket_t fd, short what, void *arg)
{
    struct deadline_clock *c = arg;
    event_begin(); /* one clock read for every callback of the pass */
    uint64_t now = event_now_us();

    (void)fd, (void)what;
    c->ev_at = 0;
    c->in_pass = true;
    c->pass_now = now;
    while (c->root && c->root->armed <= now) {
        struct deadline *d = c->root;
        heap_remove(c, d);
        d->cb(-1, EV_TIMEOUT, d->arg);
    }
    c->in_pass = false;
    if (c->root)
        clock_arm(c, c->root->armed, now);
    event_end();
}

struct deadline_clock *deadline_clock_new(struct event_base *base)
{
    struct deadline_clock *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    evtimer_assign(&c->ev, base, clock_cb, c);
    return c;
}

void deadline_clock_free(struct deadline_clock *c)
{
    if (!c)
        return;
    evtimer_del(&c->ev);
    free(c);
}

struct event_base *deadline_clock_base(const struct deadline_clock *c)
{
    return c->base;
}

/* ---- deadlines ---- */

void deadline_init(struct deadline *d, struct deadline_clock *clock, event_callback_fn cb,
                   void *arg)
{
    *d = (struct deadline){.clock = clock, .cb = cb, .arg = arg};
}

void deadline_set(struct deadline *d, uint64_t at, uint64_t now)
{
    d->at = at ? at : 1;
    if (d->armed && d->armed <= d->at)
        return;
    if (d->armed)
        heap_remove(d->clock, d);
    put(d, d->at, now);
}

void deadline_in_ms(struct deadline *d, uint64_t ms, uint64_t now)
{
    if (ms)
        deadline_set(d, now + ms * 1000, now);
    else
        deadline_clear(d);
}

bool deadline_due(struct deadline *d, uint64_t now)
{
    if (d->armed) /* called outside a pass: d is still in the heap */
        heap_remove(d->clock, d);
    if (!d->at)
        return false;
    if (now < d->at) {
        put(d, d->at, now);
        return false;
    }
    d->at = 0;
    return true;
}

void deadline_stop(struct deadline *d)
{
    if (d->armed)
        heap_remove(d->clock, d);
    d->at = 0;
}
