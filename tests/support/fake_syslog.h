/*
 * fake_syslog.h — a syslog daemon's socket for tests: a UDP socket on 127.0.0.1 or [::1], or a
 * unix datagram socket at a path. No thread: the kernel queues the datagrams, and a wait reads
 * them (poll, bounded) into a list, which the test searches.
 */
#ifndef PORTICO_FAKE_SYSLOG_H
#define PORTICO_FAKE_SYSLOG_H

#include <stddef.h>
#include <stdint.h>

struct fake_syslog;

/* Bound to ip ("127.0.0.1" or "::1") and port, or to a unix datagram path (unlinked first).
 * NULL (a message on stderr) when it cannot bind. */
struct fake_syslog *fake_syslog_udp(const char *ip, uint16_t port);
struct fake_syslog *fake_syslog_unix(const char *path);

/* Waits up to timeout_ms for a datagram containing needle (among those read so far too) and
 * returns it (borrowed until fake_syslog_free), NUL-terminated; NULL on timeout. */
const char *fake_syslog_wait(struct fake_syslog *fs, const char *needle, int timeout_ms);

/* How many datagrams read so far contain needle ("" for all). */
unsigned fake_syslog_count(const struct fake_syslog *fs, const char *needle);

/* Closes the socket (a UDP port then refuses datagrams; a unix path is removed), frees. */
void fake_syslog_free(struct fake_syslog *fs);

#endif
