/*
 * route_cond.h — the request conditions of a [route]: `method`, `header` and `cookie` (HAProxy's
 * `use_backend X if { hdr(x-canary) -m str 1 }`, nginx's map + if). They filter the candidate
 * routes; route.h's ranking then picks among those whose conditions hold. Every condition of a
 * route must hold (AND); the values of one header or one cookie name are alternatives (OR), as
 * are the methods of the method lists. Pure: config text in, a verdict on a request out.
 */
#ifndef PORTICO_ROUTE_COND_H
#define PORTICO_ROUTE_COND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/http1.h"

/* Header and cookie names per route, and values per name: a request walks them all (a field
 * search each), so a route's cost stays bounded. */
#define ROUTE_COND_MAX_NAMES 16
#define ROUTE_COND_MAX_VALUES 16
#define ROUTE_COND_MAX_METHODS 16 /* extension methods (tokens Portico has no name for) */

#define ROUTE_COND_KIND_LIST(X)                                                                    \
    X(ROUTE_COND_HEADER, "header")                                                                 \
    X(ROUTE_COND_COOKIE, "cookie")

enum route_cond_kind {
#define X(id, name) id,
    ROUTE_COND_KIND_LIST(X)
#undef X
};

/* One header or cookie name and the values any of which satisfies it. */
struct route_cond {
    enum route_cond_kind kind;
    char *name;                        /* owned: a header's lowercase, a cookie's as written */
    size_t name_len;
    char *values[ROUTE_COND_MAX_VALUES]; /* owned: exact values (a header's byte for byte,
                                            a cookie's without its DQUOTEs) */
    size_t value_lens[ROUTE_COND_MAX_VALUES];
    int nvalues;                       /* 0: present, with any value */
    int line;                          /* where the name was first written, for messages */
};

/* A route's conditions (NULL in route_conf when it has none: the common route pays one test). */
struct route_conds {
    uint32_t methods;                  /* bits of enum http_method; GET brings HEAD */
    char *other_methods[ROUTE_COND_MAX_METHODS]; /* owned: extension method tokens */
    int nother_methods;
    struct route_cond conds[ROUTE_COND_MAX_NAMES];
    int nconds;
    bool refused;                      /* a line of them was refused (the config will not load):
                                          compared equal to none, so said once */
};

/* What of a request the conditions read; every pointer borrowed. */
struct route_request {
    enum http_method method_id;
    const char *method;                /* the token as sent (METHOD_OTHER's is compared) */
    size_t method_len;
    const struct h1_field *fields;     /* HTTP/2's Cookie crumbs joined or not: all are read */
    size_t nfields;
};

/*
 * Adds one key's value to *c (made on the first): `method = GET HEAD ...` (tokens, case-
 * sensitive as RFC 9110 9.1 says; GET brings HEAD), `header = Name: value` or `header = Name`
 * (present), `cookie = name=value` or `cookie = name`. 0, or -1 with a one-line reason in why
 * (why[0] == '\0': out of memory).
 */
int route_cond_add(struct route_conds **c, const char *key, const char *value, int line,
                   char *why, size_t size);

/* Whether every condition of c holds for rq; a NULL rq (no request to read) holds none. */
bool route_conds_hold(const struct route_conds *c, const struct route_request *rq);

/* Whether a and b (either NULL: none) hold for exactly the same requests as written: the same
 * methods and the same names with the same values, in any order. */
bool route_conds_equal(const struct route_conds *a, const struct route_conds *b);

/* Whether a holds for every request b holds for, as written (b's methods among a's, each of
 * a's names b's with values among a's): a route of b's after one of a's, at the same host,
 * prefix and scheme, is never taken. Neither NULL; false when either has a refused line. */
bool route_conds_cover(const struct route_conds *a, const struct route_conds *b);

/* Frees c and everything it owns; NULL is fine. */
void route_conds_free(struct route_conds *c);

#endif
