/*
 * rewrite.h — a route's rewrite_prefix: the part of the path its prefix matched, as it was
 * written in the request ("//api/", "/%61pi/"), replaced; the rest and the query kept. Pure.
 */
#ifndef PORTICO_REWRITE_H
#define PORTICO_REWRITE_H

#include <stddef.h>

/*
 * The target to forward for target (target_len bytes, origin-form, query included; "?q" alone
 * stands for "/?q") whose path route_path (route_len bytes, a span of target unless synthetic)
 * matched prefix: repl, then what follows the matched part. 0 with a malloc'd target in *out
 * (*out_len bytes); HTTP_BAD_REQUEST with a reason in *why when the result would hold a dot
 * segment (the joint of repl and the rest: "/b/" + "../x"); -1 out of memory. "*" (OPTIONS *)
 * goes on unchanged (*out NULL).
 */
int rewrite_target(const char *target, size_t target_len, const char *route_path,
                   size_t route_len, const char *prefix, const char *repl, size_t repl_len,
                   char **out, size_t *out_len, const char **why);

#endif
