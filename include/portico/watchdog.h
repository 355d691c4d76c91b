/*
 * watchdog.h — systemd's watchdog (WatchdogSec=, sd_watchdog_enabled(3)): with WATCHDOG_USEC in
 * the environment (and WATCHDOG_PID unset or ours), systemd expects "WATCHDOG=1" on the notify
 * socket at least that often and otherwise kills and restarts the service. Portico says it only
 * while every loop turns:
 *
 *   - each worker stamps the time on a timer of its own loop every WATCHDOG_USEC/8 (worker.c);
 *   - the main thread, every WATCHDOG_USEC/4 (its signal wait times out for it, main.c), looks at
 *     the stamps of every worker still running, serving or draining, and sends WATCHDOG=1 only
 *     when none is older than WATCHDOG_USEC/2. A stuck worker thus stops the pings within about
 *     half the interval and systemd acts at most 1.5 intervals after the stall; a stuck main
 *     thread stops them by itself.
 *
 * This file holds the interval and the main thread's schedule. Without the variables (not under
 * systemd, or WatchdogSec= unset) everything is off: no timer in any worker, no check.
 */
#ifndef PORTICO_WATCHDOG_H
#define PORTICO_WATCHDOG_H

#include <stdint.h>

/* Reads WATCHDOG_USEC and WATCHDOG_PID (and NOTIFY_SOCKET, where the pings go) once, before the
 * first worker is set up. A value that is not a number of microseconds is warned about and the
 * watchdog stays off. */
void watchdog_init(void);

/* How often a worker stamps its loop's time (µs); 0: the watchdog is off, no timer. */
uint64_t watchdog_beat_us(void);

/* How old a worker's stamp may be before its loop counts as stuck (µs). */
uint64_t watchdog_stale_us(void);

/* When (now_us clock) the main thread checks the workers next; UINT64_MAX when off. */
uint64_t watchdog_due_us(void);

/* The check done at now: the next is due a quarter interval later. */
void watchdog_checked(uint64_t now);

#endif
