/*
 * dns_tcp.h — a name's A and AAAA records asked over TCP (RFC 7766; RFC 1035 4.2.2: each message
 * after a 2-byte length), of the nameserver the resolver asked last, on a worker's event loop: what
 * upstream.c asks when evdns's UDP lookup failed in a way that may be a truncated answer
 * (libevent 2.1's resolver has no TCP). Non-blocking; no timer of its own: the owner's
 * dns_timeout ends it with dns_tcp_cancel.
 */
#ifndef PORTICO_DNS_TCP_H
#define PORTICO_DNS_TCP_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/dns_wire.h"

struct event_base;
struct evdns_base;
struct dns_tcp;

/* What a lookup over TCP found. */
struct dns_tcp_result {
    int eai;                               /* 0, EVUTIL_EAI_NONAME, _NODATA or _FAIL */
    bool answered;                         /* the nameserver answered (eai: what it said); else
                                              no answer came (connect, close, read) */
    struct dns_wire_addrs v4;              /* the A answer's addresses */
    struct dns_wire_addrs v6;              /* the AAAA answer's addresses */
    char detail[160];                      /* why, when eai != 0 ("connect to 127.0.0.1:53
                                              failed: Connection refused") */
};

/* Called once, from the loop, when both answers came or the lookup failed; the lookup is freed
 * by then. Never called after dns_tcp_cancel. */
typedef void (*dns_tcp_done)(void *arg, const struct dns_tcp_result *r);

/* Starts asking name's A and AAAA records (both queries in one connection) of the nameserver
 * dns asked last (of several, the one that answered the UDP question). *inflight is the loop's
 * count of lookups under way, which the lookup is one of until it is freed (on any thread); at
 * DNS_TCP_INFLIGHT_MAX (16) none starts. done runs from the loop, never inside this call. NULL
 * when it cannot start (no nameserver, 16 under way, a name that is not one, out of memory):
 * why (size bytes) says which. */
struct dns_tcp *dns_tcp_start(struct event_base *base, struct evdns_base *dns, unsigned *inflight,
                              const char *name, dns_tcp_done done, void *arg, char *why,
                              size_t size);

/* "127.0.0.1:53": the nameserver asked. */
const char *dns_tcp_server(const struct dns_tcp *t);

/* Ends the lookup at once: closes its connection, frees it; done is not called. */
void dns_tcp_cancel(struct dns_tcp *t);

#endif
