/*
 * retry_on.h — `retry_on = 502 503 504` of an upstream: the origin statuses after which an
 * idempotent request goes to another origin (nginx's proxy_next_upstream http_502 ...,
 * HAProxy's retry-on 502 ...). The set a list may name is HAProxy's: statuses an origin sends
 * when it, not the request, is the trouble (or 401 403 404 where origins differ); a 1xx-3xx is
 * no failure and is refused. A list is a bit mask over that set: 0 is none, today's relay.
 */
#ifndef PORTICO_RETRY_ON_H
#define PORTICO_RETRY_ON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The statuses retry_on may name, in order; whether each counts toward max_fails (403 and 404
 * do not, as in nginx: the origin is up, it just has no such page to give). */
#define RETRY_ON_LIST(X)                                                                           \
    X(401, true)                                                                                   \
    X(403, false)                                                                                  \
    X(404, false)                                                                                  \
    X(408, true)                                                                                   \
    X(425, true)                                                                                   \
    X(429, true)                                                                                   \
    X(500, true)                                                                                   \
    X(501, true)                                                                                   \
    X(502, true)                                                                                   \
    X(503, true)                                                                                   \
    X(504, true)

/* The list's text, for messages and the documentation check: "401 403 ... 504". */
#define RETRY_ON_ALLOWED "401 403 404 408 425 429 500 501 502 503 504"

/* Parses a retry_on value (codes separated by blanks, each once; empty: none) into *mask. 0, or
 * -1 with the reason in why (e.g. "304 is not an error status: 1xx-3xx are never retried"). */
int retry_on_parse(const char *text, uint16_t *mask, char *why, size_t size);

/* The next code of a list of status codes separated by blanks (retry_on's, fail_on's), from
 * *cursor, moved past it: 1 with it in *status (three digits, 100-999), 0 at the list's end,
 * -1 for a word that is none, the reason in why naming `allowed`. */
int retry_on_next_code(const char **cursor, const char *allowed, int *status, char *why,
                       size_t size);

/* The bit of status in a mask of this layout (fail_on.h's lists share it), 0 when a list
 * cannot name it. */
uint16_t retry_on_bit(int status);

/* Whether status is in mask. */
bool retry_on_listed(uint16_t mask, int status);

/* Whether a listed status counts toward max_fails (all but 403 and 404). */
bool retry_on_counts(int status);

/* The codes of mask, blank-separated ("502 503"), into buf; returns buf. */
const char *retry_on_text(uint16_t mask, char *buf, size_t size);

#endif
