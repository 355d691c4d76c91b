/*
 * hashkey.h — the key of `balance = hash KEY` (balance.h's ring): what of a request it is read
 * from and its 64-bit hash. $client_addr is the client Portico decided on (real_ip, the PROXY
 * header, else the peer), IPv6 by its /64 as client_rate counts it (RFC 4941 privacy addresses
 * change within it: the client stays on its origin), IPv4 whole; $uri the path as sent without
 * its query (nginx's $uri, HAProxy's `balance uri`); $host the Host in any case; $http_NAME the
 * first field NAME; $cookie_NAME the value of the first cookie NAME. A request without the key
 * has none (hashkey_of false): it goes round robin.
 */
#ifndef PORTICO_HASHKEY_H
#define PORTICO_HASHKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/config.h"
#include "portico/fault.h"
#include "portico/http1.h"

/* What of a request a key may be read from; every pointer borrowed. */
struct hashkey_request {
    const struct fault_addr *client;   /* NULL: none numeric (every listener of Portico is
                                          TCP today: no key then, round robin) */
    const char *path;                  /* up to the '?' */
    size_t path_len;
    const char *host;                  /* NULL: no Host */
    size_t host_len;
    const struct h1_field *fields;
    size_t nfields;
};

/* The hash of up's key (up->balance is BALANCE_HASH) in r into *hash: true, or false when r has
 * no such key (no field, no cookie of that name, no client address). */
bool hashkey_of(const struct upstream_conf *up, const struct hashkey_request *r, uint64_t *hash);

/* The value of cookie `name` (case-sensitive) in one Cookie field's "a=1; b=2" (RFC 6265 5.4),
 * its quotes removed, into *len, or NULL: $cookie_NAME's reading, and sticky's. */
const char *hashkey_cookie_in(const char *v, size_t n, const char *name, size_t name_len,
                              size_t *len);

/* The 64-bit hash of n bytes, seeded (FNV-1a, then mixed so that the high bits, which the ring
 * reads, depend on every byte). Also hashes the ring's points. */
uint64_t hashkey_bytes(const void *p, size_t n, uint64_t seed);

#endif
