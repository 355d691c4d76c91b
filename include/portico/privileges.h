/*
 * privileges.h — giving up root. A Portico started as root binds its sockets and opens its files
 * as root, then switches to `user` (and `group`) before its workers run a single event loop.
 */
#ifndef PORTICO_PRIVILEGES_H
#define PORTICO_PRIVILEGES_H

#include <stdbool.h>
#include <sys/types.h>

/* Switches the process, every thread included (glibc applies set*id to all of them), to uid and
 * gid: supplementary groups first (user's groups, as initgroups sets them), then the group, then
 * the user, in the only order that works; then checks that real, effective and saved ids all
 * changed and that root cannot be regained. 0, or -1 after a message on stderr (the caller
 * must not go on: the process may be half switched). */
int privileges_drop(const char *user, uid_t uid, gid_t gid);

/* Whether this process switched to a user at its start: the next start is root's again. */
bool privileges_dropped(void);

#endif
