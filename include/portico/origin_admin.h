/*
 * origin_admin.h — the admin API's origin states and weights (drain, maint, weight=N), kept
 * for the process across reloads.
 *
 * A change applies at once to every generation's balancer of the upstream (the running one,
 * and one still draining after a reload, so that its retries leave the origin alone too), each
 * listing of the origin's host:port: an origin listed twice is one server. It is kept here by
 * identity, the upstream's name and the origin's host:port as written (slotshare.h's, without
 * max_conns, which has nothing to do with it), and a generation made later starts with it: an
 * origin drained before a SIGHUP stays drained. A weight set at run time is kept only while the
 * file gives the origin the weight it had when it was set (a file that changes it wins). An
 * origin a served file no longer lists loses its state; a new process (SIGUSR2, a restart)
 * starts every origin ready, as HAProxy without a server-state-file.
 */
#ifndef PORTICO_ORIGIN_ADMIN_H
#define PORTICO_ORIGIN_ADMIN_H

#include <stdint.h>

#include "portico/balance.h"

/* b (its upstream's name and origins: balancer_upstream) takes the states kept for them, and
 * every change from now on. 0, or -1 when out of memory. Before b's workers start. */
int origin_admin_join(struct balancer *b);

/* b's generation serves: the states of origins its upstream no longer lists are forgotten. */
void origin_admin_serve(struct balancer *b);

/* b stops taking changes (before balancer_free; NULL or never joined is fine). */
void origin_admin_leave(struct balancer *b);

/* What origin_admin_set did. */
enum origin_admin_rc {
    ORIGIN_ADMIN_OK,
    ORIGIN_ADMIN_NO_ORIGIN,            /* no generation lists that upstream and origin */
    ORIGIN_ADMIN_NO_MEMORY,
};

/* A change of upstream's origin (host:port as written): its state (state_set) and its weight
 * (weight_set), logged ("admin: origin ... set to drain (was ready)"). *was_state and
 * *was_weight: what it had in the newest generation. The caller checked the weight against
 * the newest configuration (balancer_set_weight's rules). */
enum origin_admin_rc origin_admin_set(const char *upstream, const char *origin, bool state_set,
                                      enum origin_admin state, bool weight_set, unsigned weight,
                                      uint64_t now_ms, enum origin_admin *was_state,
                                      unsigned *was_weight);

#endif
