/*
 * route_prefix.h — a path prefix read against a path as an origin that normalises paths reads
 * both. Pure: bytes in, no config. The routes (route.h), the fault rules' prefix matcher and the
 * config loader (a prefix's plain and read lengths, known once) all read prefixes this way.
 */
#ifndef PORTICO_ROUTE_PREFIX_H
#define PORTICO_ROUTE_PREFIX_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether path (path_len bytes) begins with prefix as an origin that normalises reads both: a
 * separator (request_separator_at) is '/', a run of them one '/' (nginx's merge_slashes, most
 * frameworks), and "%XX" of an unreserved character (RFC 3986 2.3, 6.2.2.2) that character.
 * "//admin" and "/%61dmin" reach an origin as "/admin": they take the route of "/admin" too.
 */
bool route_prefix_matches(const char *path, size_t path_len, const char *prefix);

/* How many bytes of path route_prefix_matches read to match prefix (0 when it does not): the
 * raw span the prefix stands for, "//api//" or "/%61pi%2F" for "/api/" (a run of separators is
 * read whole). */
size_t route_prefix_raw_len(const char *path, size_t path_len, const char *prefix);

/* How far p (n bytes) reads as itself when normalised so: up to its first escape, backslash or
 * run of slashes. A prefix that reads as itself whole (route_conf.prefix_plain) is compared
 * with memcmp over a path that does so as far. */
size_t route_plain_len(const char *p, size_t n);

/* How many characters prefix reads as, normalised as route_prefix_matches reads it: what
 * "longest" compares ("/%61pi/" is 5 long, as "/api/" is). */
size_t route_prefix_read_len(const char *prefix);

/* route_prefix_matches, at memcmp's cost where it may: plain is route_plain_len(path) (0 when
 * not known), prefix_plain whether the prefix (prefix_len bytes) reads as itself whole. Both read
 * as themselves over the prefix's length, or the path reads so whole (a prefix longer than it
 * cannot match): no character-at-a-time reading. */
bool route_prefix_holds(const char *path, size_t path_len, size_t plain, const char *prefix,
                        size_t prefix_len, bool prefix_plain);

#endif
