/*
 * watchdog.c — the watchdog's interval, from systemd's environment, and the main thread's
 * schedule for checking the workers (watchdog.h).
 */
#include "portico/watchdog.h"

#include <stdlib.h>
#include <unistd.h>

#include "portico/log.h"
#include "portico/util.h"

/* The interval's parts: the workers stamp 8 times per interval, the main thread checks and pings
 * 4 times (systemd asks for at least 2), and a stamp older than half the interval (4 beats) means
 * a stuck loop: a loop that turns is at most a beat late by then, with 3/8 of the interval to
 * spare for a busy machine. Counted in beats, so that under 8 ms, where a beat is the 1 ms floor,
 * a turning loop's stamp is not stale at once (2 ms flapped stuck and turning, a line a check). */
#define BEATS_PER_INTERVAL 8
#define CHECKS_PER_INTERVAL 4
#define STALE_PER_INTERVAL 2
#define MIN_PERIOD_US 1000 /* a WatchdogSec= of microseconds must not spin the loops */

static struct {
    uint64_t interval_us; /* WATCHDOG_USEC; 0: off */
    uint64_t due_us;      /* the next check */
} watchdog;

void watchdog_init(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    const char *sock = getenv("NOTIFY_SOCKET");
    watchdog.interval_us = 0;
    if (!usec || !*usec || !sock || !*sock)
        return;
    uint64_t value, owner;
    /* another process's watchdog (a parent that exec'd us without unsetting it) is not ours */
    if (pid && *pid && (parse_uint(pid, 1, UINT32_MAX, &owner) != 0 || owner != (uint64_t)getpid()))
        return;
    /* 0 is WatchdogSec=0, off: systemd never exports it, and nothing would kill Portico */
    if (parse_uint(usec, 0, UINT64_MAX / 2, &value) != 0) {
        log_warn("WATCHDOG_USEC %s: not a number of microseconds; systemd's watchdog is not told "
                 "and will kill Portico",
                 usec);
        return;
    }
    watchdog.interval_us = value;
    if (!value)
        return;
    watchdog.due_us = now_us(); /* the first ping goes with READY=1 */
}

uint64_t watchdog_beat_us(void)
{
    return watchdog.interval_us ? MAX(watchdog.interval_us / BEATS_PER_INTERVAL, MIN_PERIOD_US)
                                : 0;
}

uint64_t watchdog_stale_us(void)
{
    return watchdog_beat_us() * (BEATS_PER_INTERVAL / STALE_PER_INTERVAL);
}

uint64_t watchdog_due_us(void)
{
    return watchdog.interval_us ? watchdog.due_us : UINT64_MAX;
}

void watchdog_checked(uint64_t now)
{
    watchdog.due_us = now + MAX(watchdog.interval_us / CHECKS_PER_INTERVAL, MIN_PERIOD_US);
}
