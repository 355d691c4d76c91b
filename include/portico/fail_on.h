/*
 * fail_on.h — `fail_on = 500 502 503 504` of an upstream: the statuses of an origin's final
 * response that count toward max_fails as a network failure does, the response still relayed
 * as it is (HAProxy's observe layer7, Envoy's consecutive_5xx). The set is the 5xx an origin
 * sends when it, not the request, is the trouble: 501 and 505 answer the request's method or
 * version (HAProxy leaves them out too), and a 4xx is the client's, which any client could send
 * for. A list is a mask of retry_on.h's layout, so one test of both lists serves a head.
 */
#ifndef PORTICO_FAIL_ON_H
#define PORTICO_FAIL_ON_H

#include <stddef.h>
#include <stdint.h>

/* The statuses fail_on may name, for messages and the documentation check. */
#define FAIL_ON_ALLOWED "500 502 503 504"

/* Parses a fail_on value (codes separated by blanks, each once; empty: none) into *mask. 0, or
 * -1 with the reason in why (e.g. "404 is the client's error, not the origin's ..."). */
int fail_on_parse(const char *text, uint16_t *mask, char *why, size_t size);

#endif
