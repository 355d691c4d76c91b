/*
 * exchange_queue.c — an exchange waiting for a slot of its upstream's origins (max_conns).
 *
 * When every usable origin is full (balance.h), the exchange enters phase queue: its waiter goes
 * to the end of the upstream's queue and the phase timer runs queue_timeout. The slot of an
 * attempt that ends anywhere, in any worker, is handed to the oldest waiter that may use it, and
 * the balancer calls wake: a post to this exchange's loop's wakebox (an eventfd its loop wakes
 * on at once: no polling; the workers' bases take no locks, so no event_active). The exchange then
 * holds the slot as a pick's and goes on to connect. A full queue (max_queue) refuses at once
 * (queue_full), and a waiter whose client leaves or whose timer ends leaves the queue; a slot
 * handed to it in between is ended again, which hands it on. A waiter woken without a slot (its
 * origins went down) fails no_healthy_origin; a rehearsal (fault_exec.c) woken with one goes on
 * simulating, as it would have without the wait.
 */
#include "exchange_int.h"

#include <stdlib.h>
#include <string.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/generation.h"
#include "portico/loop.h"
#include "portico/sticky.h"
#include "portico/util.h"
#include "portico/wakebox.h"

struct ex_queue {
    struct balance_waiter w;           /* first: wake's argument is the ex_queue */
    struct exchange *ex;
    struct wake_item woken;            /* posted to the exchange's loop by wake */
};

static struct balancer *queue_balancer(const struct exchange *ex)
{
    return ex->loop->gen->balancers[ex->up_index];
}

/* balance_waiter.wake: any thread, the queue's lock held. */
static void waiter_wake(struct balance_waiter *w)
{
    struct ex_queue *q = (struct ex_queue *)w;
    wakebox_post(q->ex->loop->wakebox, &q->woken);
}

/* The waiter is out of the queue: its wake goes (one may be pending), then its memory. */
static void queue_free(struct exchange *ex)
{
    struct ex_queue *q = ex->queue;
    ex->queue = NULL;
    wakebox_cancel(ex->loop->wakebox, &q->woken);
    free(q);
}

/* An origin is the exchange's after waiting: a rehearsal goes on simulating, as it would have
 * without a wait; any other connects. */
static void go_on(struct exchange *ex)
{
    if (!fault_exec_picked(ex))
        relay_connect(ex);
}

/* The slot of origin o is the exchange's: it goes on as after a pick. */
static void queue_granted(struct exchange *ex, int o)
{
    queue_free(ex);
    ex->origin = o;
    ex->tried |= 1u << o;
    ex->holds_origin = true;
    ex->probe = 0;
    go_on(ex);
}

static void queue_woken(void *arg)
{
    struct exchange *ex = arg;
    ex->now = event_now_us();
    /* handed over under the lock: w.origin is set, and the waiter is out of the list; -1 when
     * its origins went down meanwhile (balance.c's rescan) */
    if (ex->outcome == OUTCOME_OPEN) {
        int o = ex->queue->w.origin;
        if (o >= 0) {
            queue_granted(ex, o);
        } else if (ex->sticky_only) {
            /* the cookie's origin went down while it waited: another takes it, a new cookie */
            queue_free(ex);
            ex->sticky = STICKY_REDISPATCHED;
            ex->sticky_origin = -1;
            ex_to_origin(ex);
        } else {
            queue_free(ex);
            ex_fail_no_origin(ex);
        }
    }
    ex_settle(ex);
}

/* "all 2 origins at max_conns 10": the origins the request could use, and the limit that held
 * it: the count's, which a reload since the request came may have changed. */
static void origins_text(const struct exchange *ex, char *buf, size_t size)
{
    const struct balancer *b = queue_balancer(ex);
    uint32_t tried = balancer_listings(b, ex->tried | ex->sticky_only);
    int n = 0;
    unsigned max = 0;
    bool same = true;
    for (int o = 0; o < ex->up->norigins; o++) {
        if (tried & (1u << o))
            continue;
        unsigned m = balancer_max_conns(b, o);
        same &= n == 0 || m == max;
        max = m;
        n++;
    }
    if (same)
        snprintf(buf, size, "all %d origin%s at max_conns %u", n, n == 1 ? "" : "s", max);
    else
        snprintf(buf, size, "all %d origins at their max_conns", n);
}

bool ex_queue_enter(struct exchange *ex)
{
    struct balancer *b = queue_balancer(ex);
    ex->queue = NULL; /* not zeroed at the start (exchange_int.h) */
    if (!ex->loop->wakebox && !(ex->loop->wakebox = wakebox_new(ex->loop->base))) {
        ex_fail(ex, PHASE_QUEUE, CAUSE_LOCAL, 0, "no descriptor or memory to wait in the queue");
        return true;
    }
    struct ex_queue *q = calloc(1, sizeof(*q));
    if (!q) {
        ex_fail(ex, PHASE_QUEUE, CAUSE_LOCAL, 0, "out of memory");
        return true;
    }
    q->ex = ex;
    q->w.exclude = ex->tried | ex->sticky_only; /* sticky: its cookie's origin alone */
    q->w.pinned = ex->sticky_only != 0;
    q->w.origin = -1;
    q->w.wake = waiter_wake;
    q->woken.run = queue_woken;
    q->woken.arg = ex;
    ex->queue = q;
    /* A slot seen free goes to a pick again; another worker may take it first, a few times. */
    for (int tries = 0; tries < 8; tries++) {
        char origins[80];
        switch (balancer_queue(b, &q->w, ex->now / 1000)) {
        case BALANCE_ROOM_QUEUED:
            ex_phase(ex, PHASE_QUEUE); /* its timer is queue_timeout */
            return true;
        case BALANCE_ROOM_QUEUE_FULL:
            queue_free(ex);
            origins_text(ex, origins, sizeof(origins));
            ex_fail(ex, PHASE_QUEUE, CAUSE_QUEUE_FULL, 0,
                    "the queue of upstream %s is full (max_queue %llu): %s", ex->up->name,
                    (unsigned long long)ex->up->max_queue, origins);
            return true;
        case BALANCE_ROOM_FREE:
            if (ex_pick_again(ex)) {
                queue_free(ex);
                go_on(ex);
                return true;
            }
            break;
        default: /* none usable: no_healthy_origin */
            queue_free(ex);
            return false;
        }
    }
    queue_free(ex);
    return false;
}

void ex_queue_timeout(struct exchange *ex, uint64_t limit_ms)
{
    int o = balancer_unqueue(queue_balancer(ex), &ex->queue->w, true);
    if (o >= 0) { /* handed a slot as the timer came: it goes on */
        queue_granted(ex, o);
        return;
    }
    queue_free(ex);
    char origins[80], detail[200];
    origins_text(ex, origins, sizeof(origins));
    uint64_t waited = phase_elapsed_us(&ex->pc, PHASE_QUEUE, ex->now);
    snprintf(detail, sizeof(detail), "waited %llu.%llus in the queue of upstream %s: %s",
             (unsigned long long)(waited / 1000000),
             (unsigned long long)(waited % 1000000 / 100000), ex->up->name, origins);
    ex_fail_text(ex, PHASE_QUEUE, CAUSE_TIMEOUT, limit_ms, detail);
}

__attribute__((noinline, cold)) void ex_queue_leave(struct exchange *ex)
{
    int o = balancer_unqueue(queue_balancer(ex), &ex->queue->w, false);
    if (o >= 0) /* a slot handed over as the client left: it goes on to the next waiter */
        balancer_release(queue_balancer(ex), o);
    queue_free(ex);
}
