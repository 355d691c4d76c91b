/*
 * notify.h — telling systemd what Portico is doing (the sd_notify(3) protocol, spoken without
 * libsystemd): a service of `Type=notify` is started once its listeners are bound, shown as
 * reloading until the new configuration is live or refused, and given its shutdown_timeout to
 * stop gracefully even where that is longer than the unit's TimeoutStopSec.
 *
 * Outside systemd (no NOTIFY_SOCKET in the environment) every call does nothing.
 */
#ifndef PORTICO_NOTIFY_H
#define PORTICO_NOTIFY_H

/* Opens a datagram socket for the address in NOTIFY_SOCKET (a path, or "@name" for the abstract
 * namespace). Called once at start, before privileges are dropped. 0 when there is nothing to
 * tell or the socket is open; -1 after a warning on the error log when the variable is not a
 * usable address (Portico runs on: systemd then kills a Type=notify unit that never says ready,
 * with that warning in its journal). */
int notify_open(void);

/* Sends one message of "KEY=value" lines (printf-style) to systemd. A message that cannot be
 * sent is warned about once: systemd's view of the service may then be stale. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Closes the socket opened by notify_open. */
void notify_close(void);

#endif
