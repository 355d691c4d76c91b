/*
 * climit.h — per-client limits: a request rate per route (client_rate, client_rate_burst, as
 * nginx's limit_req with nodelay) and a connection count (max_connections_per_client, as
 * HAProxy's `tcp-request connection reject` on a stick table's conn_cur). One fixed-size table
 * per configuration generation, shared by its worker threads: sets of CLIMIT_WAYS entries, each
 * set under one of a few striped locks, each key in one of its two sets (a new one in the
 * emptier), of two full sets the entry that owes the fewest requests evicted (the least recent
 * of those), so memory is bounded whatever the number of distinct clients, and one request
 * costs at most two sets' lookup.
 */
#ifndef PORTICO_CLIMIT_H
#define PORTICO_CLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/fault.h"

struct sockaddr;

#define CLIMIT_WAYS 8          /* entries per set: the eviction looks at a key's two sets only */
#define CLIMIT_SCOPE_CONN (-1) /* the key of a client's connection count (rates: route index) */

/* Who is counted and for what: the client's address (IPv6 by its /64, IPv4 whole, as an
 * IPv4-mapped IPv6 address) and the route whose rate it is, or CLIMIT_SCOPE_CONN. */
struct climit_key {
    uint8_t addr[16];
    int32_t scope;
};

struct climit;

/* A table of at least `entries` entries (rounded up to whole sets). NULL when out of memory. */
struct climit *climit_new(uint64_t entries);

/* Frees the table. NULL is fine. */
void climit_free(struct climit *t);

/* The key of a client address: IPv6 keyed by its /64 (one host holds a whole /64 and picks
 * from it at will: RFC 4941 privacy addresses, a /64 per customer), IPv4 whole. */
void climit_key_addr(const struct fault_addr *a, int32_t scope, struct climit_key *k);

/* A socket address (a connection's peer, or its PROXY header's source) as *out (an IPv4-mapped
 * IPv6 address as IPv4). -1 when it is neither IPv4 nor IPv6. */
int climit_sockaddr_addr(const struct sockaddr *sa, struct fault_addr *out);

/* The key's client as text for a reason: "127.0.0.1", "2001:db8:1:2::/64". Returns buf. */
const char *climit_key_text(const struct climit_key *k, char *buf, size_t size);

/*
 * One request of k at now_ns against a rate of one per interval_ns with `burst` more allowed at
 * once (the GCRA, which is nginx's leaky bucket with nodelay: burst + 1 at once, then one per
 * interval). 0: admitted and counted; else refused, and how long until one would be admitted
 * (ns). A table whose every entry of k's two sets holds connections admits uncounted.
 */
uint64_t climit_take(struct climit *t, const struct climit_key *k, uint64_t interval_ns,
                     uint64_t burst, uint64_t now_ns);

/* A new connection of k (scope CLIMIT_SCOPE_CONN): 1 counted, 0 refused (it holds `max`
 * already), -1 admitted uncounted (its two sets are all connections: do not call
 * climit_conn_close). */
int climit_conn_open(struct climit *t, const struct climit_key *k, uint64_t max,
                     uint64_t now_ns);

/* A counted connection of k closed. */
void climit_conn_close(struct climit *t, const struct climit_key *k);

/* Entries the table holds (whole sets), and how many were evicted to make room so far. */
uint64_t climit_capacity(const struct climit *t);
uint64_t climit_evictions(const struct climit *t);

/* Connections and requests let through uncounted since the table was made, for want of a place
 * (every entry of their client's two sets held connections): the table is too small for the
 * clients holding connections. */
uint64_t climit_no_place(const struct climit *t);

/* Connections counted now (climit_conn_open's 1s not yet closed): 0 once every client went. */
uint64_t climit_connections(const struct climit *t);

#endif
