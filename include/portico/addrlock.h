/*
 * addrlock.h — exclusive listen addresses. Workers bind their sockets with SO_REUSEPORT, which
 * would let a second process of the same user join any of our addresses silently (and take part
 * of the traffic with its own configuration), so the main process claims each listen and admin
 * address first: it must be free of any other process's socket, and a per-address lock keeps
 * two Porticos that start at the same moment from both finding it free. Only our own workers
 * (and a reload's hand-over, which reuses our sockets) share an address.
 */
#ifndef PORTICO_ADDRLOCK_H
#define PORTICO_ADDRLOCK_H

struct config;

/* The addresses this process holds. */
struct addr_locks;

/* An empty set. NULL when out of memory. */
struct addr_locks *addr_locks_new(void);

/* Claims every listen and admin address of cfg that the set does not hold yet. On success the
 * set holds them all; on failure (an address in use by anything else, or that cannot be bound)
 * one message per refused address goes to stderr ("portico: cannot listen on ADDR: ..."), the
 * set is as it was, and -1 is returned. */
int addr_locks_claim(struct addr_locks *set, const struct config *cfg);

/* Releases the addresses cfg does not name (cfg NULL: all of them), e.g. after a reload dropped
 * one, or once a stop closed the listeners, so that another process may take them. */
void addr_locks_keep_only(struct addr_locks *set, const struct config *cfg);

/* The locks' descriptors, for a binary upgrade to hand over (upgrade.h; the new process takes
 * them in addr_locks_claim instead of claiming anew): their count, stored in out, or -1 when
 * there are more than max. */
int addr_locks_fds(const struct addr_locks *set, int *out, int max);

/* Releases everything and frees the set. NULL is fine. */
void addr_locks_free(struct addr_locks *set);

#endif
