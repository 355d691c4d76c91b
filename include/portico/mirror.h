/*
 * mirror.h — request mirroring: a copy of a route's request, as its origin gets it, sent to
 * the route's `mirror` upstreams (a staging copy of production traffic), their answers read
 * and thrown away.
 *
 * The exchange keeps a copy (mirror_copy_new) while its request goes out, and hands it over
 * once the request is whole (mirror_copy_send). From then each mirror request is its own owner
 * on the loop: its own origin connection and timer, one exit, nothing shared with the
 * exchange, whose client never waits for it nor hears of it. Every mirror request is counted
 * once in portico_mirror_requests_total{route,outcome}.
 */
#ifndef PORTICO_MIRROR_H
#define PORTICO_MIRROR_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/mirror_outcome.h"

struct loop;
struct evbuffer;
struct route_conf;
struct h1_request;
struct fwd_request;

/* Request body bytes a mirror request carries at most: a larger body is not mirrored (it would
 * be held whole in memory for it; streamed, a slow staging origin would pace production). */
#define MIRROR_BODY_MAX (64 * 1024)

/* The field every mirror request carries, so that staging can tell copies from traffic. */
#define MIRROR_MARKER "X-Portico-Mirror: 1"

struct mirror_copy;

/* A request of route r (index route) goes out the first time: its head for the mirrors, as
 * hdr_write_request makes it from req and fwd (the origin's, header rules and rewrite applied)
 * plus MIRROR_MARKER and Connection: close. NULL when nothing is to be mirrored (sampled out, an
 * upgrade, a body announced over the bound, every mirror's place taken, out of memory: each
 * counted). streaming: the request is an upgrade or a CONNECT. */
struct mirror_copy *mirror_copy_new(struct loop *l, const struct route_conf *r, int route,
                                    const struct h1_request *req, const struct fwd_request *fwd,
                                    bool streaming);

/* Request body bytes (framed as the origin gets them) were appended to out from offset from:
 * the copy keeps them, up to MIRROR_BODY_MAX (past it, the body is let go: too_large). */
void mirror_copy_body(struct mirror_copy *c, struct evbuffer *out, size_t from);

/* The request is whole: a mirror request goes to each mirror upstream, each its own owner.
 * Frees c. */
void mirror_copy_send(struct loop *l, struct mirror_copy *c);

/* The exchange ends before its request was whole: nothing is sent (unsent). Frees c. */
void mirror_copy_free(struct loop *l, struct mirror_copy *c);

/* The loop's mirror state (in flight, sampling): 0, or -1 when out of memory. */
int mirror_loop_init(struct loop *l);

/* Mirror requests still under way are cut (counted cut), the state freed: the worker ends. */
void mirror_loop_free(struct loop *l);

#endif
