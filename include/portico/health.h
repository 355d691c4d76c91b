/*
 * health.h — active health checks: `health_check = GET /healthz every 5s expect 200` asks each
 * origin of its upstream every interval, on a connection of its own opened with the upstream
 * connection code (DNS, connect, TLS as for requests), and gives each check's result to the
 * generation's balancer (balance.h), which marks the origin down after `fall` failed checks in
 * a row and back after `rise` passed ones (`... rise 2 fall 3`; 1 each unless given): a check
 * passes when a response head with an expected status arrives within the check's timeout;
 * anything else (refused, reset, timeout, another status, not HTTP) fails it. A check our own
 * shortage ended (descriptors, memory) counts for neither.
 *
 * The checks of a generation run on one of its workers (worker 0): the balancer they feed is
 * shared by every worker, so one check per interval is the whole story, where a check per worker
 * would multiply the load on the origins by the number of workers.
 */
#ifndef PORTICO_HEALTH_H
#define PORTICO_HEALTH_H

struct loop;
struct health;

/* Starts the checks of l's configuration on l (the first one at once). *out is NULL when no
 * upstream has a health_check. 0, or -1 when out of memory. */
int health_start(struct loop *l, struct health **out);

/* The worker's 1-second tick: the probes whose next check could not be armed (libevent out of
 * memory) are armed again, each for when its check was due (at once when that has passed).
 * Nothing to do, and nothing done, when every probe is armed (NULL is fine). */
void health_tick(struct health *h);

/* Stops every check (connections in progress are closed) and frees h (NULL is fine). */
void health_stop(struct health *h);

#endif
