/*
 * balance.h — which origin of an upstream gets the next request, and passive health: an origin
 * with max_fails network failures in a row is skipped for fail_timeout.
 *
 * One balancer per upstream and configuration generation, shared by the worker threads of that
 * generation (relaxed atomics: a slightly stale count only shifts one pick). It is the runtime
 * state that once lived inside the configuration, which is now immutable.
 */
#ifndef PORTICO_BALANCE_H
#define PORTICO_BALANCE_H

#include <stdbool.h>
#include <stdint.h>

struct upstream_conf;
struct balancer;

/* A balancer for up (borrowed; it must outlive the balancer). NULL when out of memory. */
struct balancer *balancer_new(const struct upstream_conf *up);

/* Frees a balancer (NULL is fine). */
void balancer_free(struct balancer *b);

/* The next origin (round robin over the origins not marked down at now_ms, monotonic), or -1
 * when every origin is down (no_healthy_origin). */
int balancer_pick(struct balancer *b, uint64_t now_ms);

/* The outcome of an exchange with origin: a network failure counts toward max_fails, anything
 * else clears the count. */
void balancer_report(struct balancer *b, int origin, bool network_failure, uint64_t now_ms);

/* Whether origin is marked down at now_ms (for metrics and the status page). */
bool balancer_origin_down(const struct balancer *b, int origin, uint64_t now_ms);

#endif
