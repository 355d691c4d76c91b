/*
 * pidfile.h — the pid file (`pid_file`): refused at start when it names a running Portico,
 * written once Portico serves, removed when it stops serving.
 */
#ifndef PORTICO_PIDFILE_H
#define PORTICO_PIDFILE_H

#include <stdbool.h>

/* Claims path for this process: of two Porticos starting at once with the same pid_file, one
 * gets it and the other fails here (both could find the file stale, then both write it). Held
 * until the descriptor returned is closed, at the stop or by the process's end. A process
 * started by a binary upgrade takes the claim its predecessor handed over (upgrade.h), with
 * *handed set: the file then names the predecessor, which goes once this one serves, so
 * pidfile_check is not asked. The descriptor, or -1 after a message on stderr. */
int pidfile_claim(const char *path, bool *handed);

/* Whether path may be written: 0 when it is absent, empty or stale (a process that is gone, or a
 * process that is not a Portico, after a crash and pid reuse); -1 after a message on stderr when
 * it names a live Portico, holds anything but one line of digits (a pid_file naming the config
 * or a log by mistake would destroy it), or cannot be read. */
int pidfile_check(const char *path);

/* Writes our pid and a newline into path: a new file in its directory, renamed over the old, so
 * that a reader never sees it half written. 0, or -1 after a message on stderr. */
int pidfile_write(const char *path);

/* Whether path holds our pid (a failed upgrade's new process may have written its own). */
bool pidfile_names_us(const char *path);

/* Removes path if it still holds our pid (another process may have written it since). 0, or -1
 * with errno when it cannot be removed (after dropping privileges, the directory may be root's). */
int pidfile_remove(const char *path);

/* Whether this process may remove path from its directory (write and search permission there,
 * and in a sticky directory such as /tmp, ownership of the file or of the directory). Asked
 * once privileges are dropped: a pid file the user cannot remove outlives the process, naming
 * a pid the system will reuse. A file not there yet is taken for root's, as the start writes it
 * before the switch. True when it cannot tell. */
bool pidfile_removable(const char *path);

#endif
