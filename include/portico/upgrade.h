/*
 * upgrade.h — the binary upgrade (SIGUSR2): the running Portico starts its binary again, by the
 * path it was started from, handing it every listening socket and address claim by descriptor
 * inheritance, and stops once the new process says it serves.
 *
 * Both ends live here. The old process lists the descriptors in the environment variable
 * PORTICO_UPGRADE ("ready=FD fds=FD,FD,..."), clears their FD_CLOEXEC in the child only (between
 * fork and exec, nothing else runs there), and waits on the ready pipe in a thread of its own.
 * The new process takes the variable at start (upgrade_inherit) and tells each descriptor by
 * what the kernel says of it: a listening TCP socket by its address (getsockname), a claim (an
 * abstract unix socket, addrlock.h and pidfile.h) by its name. What the new configuration does
 * not use is closed once it serves (upgrade_drop_unused).
 */
#ifndef PORTICO_UPGRADE_H
#define PORTICO_UPGRADE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "portico/config.h"

#define UPGRADE_ENV "PORTICO_UPGRADE"
#define UPGRADE_READY_MS 30000 /* how long the new process has to say it serves */
/* Sockets and claims handed over at most: every worker's socket of every listen address, the
 * admin one, a claim per address and the pid file's (64 workers and 8 addresses, 513 sockets,
 * were more than the 512 of the first version: SIGUSR2 was refused). */
#define UPGRADE_MAX_FDS (CFG_MAX_LISTEN * CFG_MAX_WORKERS + 1 + CFG_MAX_LISTEN + 1 + 1)
#define UPGRADE_TAKEN_BYTES ((UPGRADE_MAX_FDS + 7) / 8) /* the ready word's bits, upgrade.c */
#define UPGRADE_MESSAGE_MAX 3072 /* a failed new process's messages: one atomic pipe write */

/* ---- the old process ---- */

/* Resolves the binary to run on SIGUSR2 once, at start: argv0 made absolute against the working
 * directory when it has a slash (a package upgrade renames a new file over it, and that path
 * then names the new binary), else the file /proc/self/exe names now. 0, or -1 (then SIGUSR2 is
 * refused with the reason). Keeps argv (borrowed: main's) for the new process. */
int upgrade_init(const char *argv0, char *const *argv);

/* The path resolved by upgrade_init; "" when there is none. */
const char *upgrade_binary(void);

/* Where an upgrade stands, as the old process sees it. */
enum upgrade_state {
    UPGRADE_IDLE,                          /* none, or the last one ended (upgrade_end) */
    UPGRADE_PENDING,                       /* the new process starts: nothing decided */
    UPGRADE_READY,                         /* it serves: the old one stops */
    UPGRADE_FAILED,                        /* it failed: the old one serves on */
};

/* Starts the binary with the same arguments, handing it fds[0..nfds) (each must be open), the
 * environment with PORTICO_UPGRADE (and WATCHDOG_PID naming the child, which systemd's
 * watchdog then accepts from it). A thread waits for its word, at most UPGRADE_READY_MS (then
 * the child is killed), and then sends `wake` signal `wake_sig`. 0, or -1 with the reason in
 * why[size]; refused as PID 1 of a PID namespace (its exit would kill the new process). */
int upgrade_begin(const int *fds, int nfds, pthread_t wake, int wake_sig, char *why, size_t size);

/* The state of the upgrade begun; on UPGRADE_FAILED, why says the reason (borrowed, valid
 * until upgrade_end). Main thread only. */
enum upgrade_state upgrade_state(const char **why);

/* The messages a failed new process sent (upgrade_tell_failure), one per line; "" when none.
 * Borrowed, valid until upgrade_end. */
const char *upgrade_messages(void);

/* Whether the new process, once ready, listens on fds[index] of upgrade_begin's: the sockets
 * of addresses its file no longer names it closed, and this process then takes their queues and
 * closes them as a reload does. True for all when the new process did not say (an older
 * version), and before it is ready. Main thread; valid until upgrade_end. */
bool upgrade_taken(int index);

/* The child's pid while an upgrade is under way or once it is ready; 0 otherwise. */
pid_t upgrade_child(void);

/* A stop during an upgrade, before the caller handed its sockets over: the child is told
 * SIGTERM (its start is cancelled), also when it said it serves and the caller has not yet
 * settled that (upgrade_end). */
void upgrade_cancel(void);

/* Joins the waiting thread once the state is READY or FAILED, and forgets the upgrade: IDLE
 * again (after a failure, another SIGUSR2 may try again). */
void upgrade_end(void);

/* ---- the new process ---- */

/* Takes PORTICO_UPGRADE from the environment (unset then) when there is one: the ready pipe and
 * the descriptors handed over, each marked close-on-exec again. One warning per descriptor
 * that is not what the old process says it is (then left alone). Whether an upgrade started
 * this process. */
bool upgrade_inherit(void);

/* Whether this process was started by an upgrade (upgrade_inherit found the variable). */
bool upgrade_inherited(void);

/* How many inherited listening sockets bound to sa are not taken yet: descriptors already open
 * that the first group takes over instead of opening its own (worker.c counts what it needs). */
int upgrade_sockets_on(const struct sockaddr *sa, socklen_t salen);

/* Takes the inherited listening sockets bound to sa, for worker `index` of `targets`: socket
 * k of that address goes to worker k % targets, as a reload spreads them (worker.c). Returns
 * how many were stored in out (at most max); each becomes the caller's. */
int upgrade_take_sockets(const struct sockaddr *sa, socklen_t salen, int index, int targets,
                         int *out, int max);

/* Takes the inherited claim named "<prefix>/<any uid>/<key>" (abstract unix socket names of
 * addrlock.c and pidfile.c; the uid may differ when the old process dropped privileges). Its
 * fd (the caller's), or -1 when none was handed over. */
int upgrade_take_claim(const char *prefix, const char *key);

/* Closes every inherited descriptor not taken: addresses the new configuration dropped (the
 * old process, told which sockets were taken, closes its own after taking their queues). */
void upgrade_drop_unused(void);

/* Tells the old process this one cannot start, with its messages (FILE:LINE lines, at most
 * UPGRADE_MESSAGE_MAX bytes, longer text cut at a line), for it to say them in its error log;
 * closes the pipe. 0, or -1 when nothing could be told (say them yourself). */
int upgrade_tell_failure(const char *text);

/* Tells the old process this one serves (listeners armed, pid file written) and which of the
 * sockets handed over it listens on, and closes the pipe. Nothing when no upgrade started this
 * process. */
void upgrade_tell_ready(void);

#endif
