/*
 * retry_budget.h — `retry_budget = 20%` and `retry_budget_min = 3` of an upstream (Envoy's
 * retry_budget: budget_percent, min_retry_concurrency): how many of the upstream's requests in
 * flight may be retries at once, so that retries cannot multiply an outage. The arithmetic and
 * the words; the shared count itself is the balancer's (balance.h).
 */
#ifndef PORTICO_RETRY_BUDGET_H
#define PORTICO_RETRY_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The default of retry_budget_min (Envoy's min_retry_concurrency). */
#define RETRY_BUDGET_MIN_DEFAULT 3

/* What a refused retry saw: the retries in flight, their limit, and what it came of. */
struct retry_budget_use {
    unsigned held;                     /* retries in flight (the upstream's, every worker's) */
    unsigned limit;                    /* retry_budget_limit of the values below */
    unsigned percent;                  /* retry_budget */
    unsigned in_flight;                /* the upstream's requests in flight on its origins */
};

/* The retries that may be in flight at once: percent of in_flight (rounded down), but never
 * fewer than min, so a quiet upstream may still retry. */
unsigned retry_budget_limit(unsigned percent, unsigned min, unsigned in_flight);

/* Parses retry_budget's value: "20%" (or "20"), a whole percentage 0-100, or "off". 0 with
 * *on set, or -1 with the reason in why. */
int retry_budget_parse(const char *text, bool *on, uint8_t *percent, char *why, size_t size);

/* The access log's reason a retry was refused, e.g. "retry budget (3 of 3 retries in flight;
 * 20% of 12 requests)"; buf is returned. */
const char *retry_budget_why(const struct retry_budget_use *u, char *buf, size_t size);

/* The same for retry_timeout: "retry_timeout 2 s passed" (ms as a duration is written). */
const char *retry_timeout_why(uint64_t timeout_ms, char *buf, size_t size);

#endif
