/*
 * acl.h — who may use a route, by client address: the `allow` and `deny` rules of a [route]
 * (or of [proxy], for the routes without their own), as nginx's allow/deny and HAProxy's
 * `http-request deny if !{ src ... }`. Rules are read in file order and the first that names
 * the client decides; a client none names gets the opposite of the last rule (Squid's
 * http_access): a list of allows lets in only them, a list ending in a deny keeps out only
 * what it names. Pure: text and addresses in, a verdict out.
 */
#ifndef PORTICO_ACL_H
#define PORTICO_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/fault.h"

/* Rules per route, allow and deny together: a request walks them in order (~16 instructions a
 * rule, measured), so 1024 bound a request's walk to ~16,500 instructions (a few microseconds). */
#define ACL_MAX_RULES 1024

#define ACL_ACTION_LIST(X)                                                                         \
    X(ACL_ALLOW, "allow")                                                                          \
    X(ACL_DENY, "deny")

enum acl_action {
#define X(id, name) id,
    ACL_ACTION_LIST(X)
#undef X
};

/* One rule: an action for a CIDR block, or for every client (`all`). */
struct acl_rule {
    uint64_t net[2];                   /* the block's 16 bytes as two words, masked ... */
    uint64_t mask[2];                  /* ... and its mask: a client is named when its words
                                          masked are net (~16 instructions a rule, where
                                          fault_cidr_contains's memcmp took ~45) */
    struct fault_cidr block;           /* as written, for messages; unused when all */
    bool all;                          /* `all`: every client, one without an address too */
    enum acl_action action;
    int line;                          /* where it was written, for messages */
};

/* A route's rules in file order. */
struct acl {
    struct acl_rule *rule;             /* owned: [n] */
    int n;
};

/* The word an action is written with ("allow", "deny"). */
const char *acl_action_name(enum acl_action a);

/*
 * Appends the rules of one `allow` or `deny` value written at line: `all`, or a comma-separated
 * list of addresses and CIDR blocks (IPv4 or IPv6; an IPv4-mapped IPv6 address is its IPv4
 * one). A block with bits set past its length (127.0.0.1/8) is refused: it says two things.
 * *acl is made on the first rule. 0, or -1 with why (why[0] == '\0': out of memory).
 */
int acl_add(struct acl **acl, enum acl_action action, const char *value, int line, char *why,
            size_t size);

/* The index of the earlier rule that names every client rule i names (so rule i never
 * decides), or -1. */
int acl_shadowed_by(const struct acl *acl, int i);

/*
 * Whether client (NULL: one without a numeric address, which only `all` names)
 * may use the route: the first rule naming it decides, and *rule is its index; none naming it,
 * the opposite of the last rule's action, and *rule is -1.
 */
bool acl_admits(const struct acl *acl, const struct fault_addr *client, int *rule);

/* A rule as it is written ("deny 127.0.0.0/8", "allow all") into buf. Returns buf. */
const char *acl_rule_text(const struct acl_rule *r, char *buf, size_t size);

/* Frees acl (NULL is none). */
void acl_free(struct acl *acl);

#endif
