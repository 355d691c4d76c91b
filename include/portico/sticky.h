/*
 * sticky.h — `sticky = cookie NAME ...` of an [upstream]: a cookie Portico inserts to pin a
 * client to the origin that answered it (HAProxy's `cookie NAME insert indirect nocache`, nginx
 * Plus's `sticky cookie`). Each origin has a value (config.h: `cookie=`, else a hash of its
 * host:port); a request whose cookie names a usable origin goes there whatever the policy
 * (exchange.c, balancer_pick_origin), any other is picked by the policy and its response sets
 * the cookie of the origin that answered. The cookie is Portico's: taken off the request the
 * origin gets (headers.c), never set again on a request that brought the right one.
 */
#ifndef PORTICO_STICKY_H
#define PORTICO_STICKY_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/http1.h"

/* What stickiness did for one request (access log `sticky`, portico_upstream_sticky_total). */
#define STICKY_OUTCOME_LIST(X)                                                                     \
    X(STICKY_NONE, "")                     /* not a sticky upstream's, or never picked */         \
    X(STICKY_HIT, "hit")                   /* its cookie's origin took it */                      \
    X(STICKY_NEW, "new")                   /* no cookie, or one naming no origin: the policy */   \
    X(STICKY_REDISPATCHED, "redispatched") /* its cookie's origin could not (down, failed,        \
                                              removed): another took it, a new cookie */

enum sticky_outcome {
#define X(id, name) id,
    STICKY_OUTCOME_LIST(X)
#undef X
    STICKY_OUTCOME_COUNT
};
_Static_assert(STICKY_OUTCOME_COUNT == BALANCE_STICKY_OUTCOMES, "balance.h counts them");

/* "hit", "new", "redispatched"; "" for STICKY_NONE. Never NULL. */
const char *sticky_outcome_name(enum sticky_outcome s);

/* The origin of up whose value the request's sticky cookie holds (the first such cookie of its
 * Cookie fields; an HTTP/2 request's crumbs are one field by then), or -1: none, an empty one,
 * or a value no origin has (an origin a reload removed, a forged one). */
int sticky_origin_of(const struct upstream_conf *up, const struct h1_field *fields, size_t n);

/* Whether origins a and b of up share one value (two listings of one host:port). */
bool sticky_same(const struct upstream_conf *up, int a, int b);

/* The Set-Cookie value that pins a client to origin: "NAME=VALUE; Path=/..." into buf (size
 * bytes; CFG_STICKY_SET_COOKIE_MAX fits any). Returns its length. */
#define STICKY_SET_COOKIE_MAX (CFG_HASH_NAME_MAX + CFG_STICKY_VALUE_MAX + CFG_STICKY_ATTRS_MAX)
size_t sticky_set_cookie(const struct upstream_conf *up, int origin, char *buf, size_t size);

/* Whether a response must be kept from shared caches when it sets the cookie: true unless the
 * origin's Cache-Control says private or no-store already (HAProxy's `nocache`). */
bool sticky_needs_private(const struct h1_field *fields, size_t n);

#endif
