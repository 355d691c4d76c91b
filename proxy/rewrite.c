/*
 * rewrite.c — a route's path prefix replaced. See rewrite.h.
 */
#include "portico/rewrite.h"

#include <stdlib.h>
#include <string.h>

#include "portico/request.h"
#include "portico/route_prefix.h"
#include "portico/status.h"

/* Out of line: only a route with rewrite_prefix calls it, and its allocation is one a test makes
 * fail (tests/support/oom.h finds a function by its name). */
__attribute__((noinline)) int rewrite_target(const char *target, size_t target_len,
                                             const char *route_path, size_t route_len,
                                             const char *prefix, const char *repl,
                                             size_t repl_len, char **out, size_t *out_len,
                                             const char **why)
{
    *out = NULL;
    *out_len = 0;
    if (target_len == 1 && target[0] == '*')
        return 0; /* OPTIONS *: the server as a whole, no path to rewrite */
    /* The cut is what the prefix matched in the raw path: "//api//x" loses "//api//" to
     * prefix "/api/", never a count of the prefix's own bytes. A route_path that is not a span
     * of target ("/" for "?q") was matched whole: the rest is all of target. */
    bool span = route_path >= target && route_path + route_len <= target + target_len;
    size_t cut = route_prefix_raw_len(route_path, route_len, prefix);
    const char *rest = span ? route_path + cut : target;
    size_t rest_len = span ? (size_t)(target + target_len - rest) : target_len;
    /* A replacement ending in '/' takes the separators that follow the cut with it, as a prefix
     * ending in '/' does: "/api" to "/" would send "/api//evil.example/x" as
     * "///evil.example/x", which an origin's URL parser (new URL(path, base)) reads as a host. */
    if (repl_len && repl[repl_len - 1] == '/')
        for (size_t sep; rest_len && (sep = request_separator_at(rest, rest_len, 0)) != 0;)
            rest += sep, rest_len -= sep;
    size_t n = repl_len + rest_len;
    char *t = malloc(n + 1);
    if (!t)
        return -1;
    memcpy(t, repl, repl_len);
    memcpy(t + repl_len, rest, rest_len);
    t[n] = '\0';
    /* Each part was free of dot segments; their joint may not be ("/b/" + ".", "/b" + "/.."). */
    const char *q = memchr(t, '?', n);
    if (request_has_dot_segment(t, q ? (size_t)(q - t) : n)) {
        free(t);
        *why = "dot segment in the rewritten path";
        return HTTP_BAD_REQUEST;
    }
    *out = t;
    *out_len = n;
    return 0;
}
