/*
 * deadline.c — timers that are cheap to move and to cancel. See deadline.h.
 */
#include "portico/deadline.h"

#include "portico/util.h"

void deadline_init(struct deadline *d, struct event_base *base, event_callback_fn cb, void *arg)
{
    evtimer_assign(&d->ev, base, cb, arg);
    d->at = 0;
    d->armed = 0;
}

static void arm(struct deadline *d, uint64_t now)
{
    struct timeval tv = tv_from_us(d->at > now ? d->at - now : 0);
    if (evtimer_add(&d->ev, &tv) == 0)
        d->armed = d->at;
}

void deadline_set(struct deadline *d, uint64_t at, uint64_t now)
{
    d->at = at ? at : 1;
    if (!d->armed || d->armed > d->at)
        arm(d, now);
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
    d->armed = 0;
    if (!d->at)
        return false;
    if (now < d->at) {
        arm(d, now);
        return false;
    }
    d->at = 0;
    return true;
}

void deadline_stop(struct deadline *d)
{
    if (d->armed)
        evtimer_del(&d->ev);
    d->armed = 0;
    d->at = 0;
}
