/*
 * origin_admin_state.h — the states the admin API sets on an origin (balance.h,
 * origin_admin.h), apart from the balancer: the metrics name them too, and they live below
 * both.
 */
#ifndef PORTICO_ORIGIN_ADMIN_STATE_H
#define PORTICO_ORIGIN_ADMIN_STATE_H

/* An origin's state set through the admin API (origin_admin.h), as HAProxy's `set server
 * state`: ready takes requests; drain takes no new ones from balancing, but those whose sticky
 * cookie names it, and its checks go on; maint takes none at all, and its checks stop. */
#define ORIGIN_ADMIN_LIST(X)                                                                       \
    X(ORIGIN_ADMIN_READY, "ready")                                                                 \
    X(ORIGIN_ADMIN_DRAIN, "drain")                                                                 \
    X(ORIGIN_ADMIN_MAINT, "maint")

enum origin_admin {
#define X(id, name) id,
    ORIGIN_ADMIN_LIST(X)
#undef X
    ORIGIN_ADMIN_COUNT
};

#endif
