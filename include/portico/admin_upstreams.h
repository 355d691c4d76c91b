/*
 * admin_upstreams.h — the origins' runtime state on the admin listener, as HAProxy's `set server
 * BE/SRV state drain|maint|ready` and `set server weight`, and nginx Plus's upstream API:
 *
 *   GET  /upstreams                        every upstream and its origins as JSON
 *   GET  /upstreams/NAME                   one upstream
 *   GET  /upstreams/NAME/origins/HOST:PORT one origin ("[::1]:8080" for IPv6; %XX decoded)
 *   POST /upstreams/NAME/origins/HOST:PORT state=ready|drain|maint and/or weight=0-100
 *
 * The body, the guards (admin_token, Origin, Host) and the error lines are the fault API's
 * (admin_faults.h). A change acts on every worker's next pick and lasts across reloads
 * (origin_admin.h).
 */
#ifndef PORTICO_ADMIN_UPSTREAMS_H
#define PORTICO_ADMIN_UPSTREAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/admin_faults.h"

/* Whether the path is this API's: /upstreams, /upstreams/... */
bool admin_upstreams_path(const char *path, size_t len);

/* Whether the request carries a body this API reads (POST /upstreams/...). */
bool admin_upstreams_takes_body(const struct h1_request *req);

/* Answers a request to this API into *reply. 0, or -1 when out of memory. */
int admin_upstreams_respond(const struct admin_call *call, struct admin_reply *reply);

#endif
