/*
 * request.h — what Portico checks about a request before routing it: the request-target
 * (origin-form, absolute-form, asterisk; no dot segments), forwarding loops, the client's
 * X-Request-Id, and which methods may be sent twice. Pure functions on a parsed request.
 */
#ifndef PORTICO_REQUEST_H
#define PORTICO_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/http1.h"
#include "portico/status.h"

/* The target split into what Portico routes and forwards. Spans borrow from the request. */
struct req_target {
    const char *host;            /* absolute-form authority, else NULL (the Host field counts) */
    size_t host_len;
    const char *path;            /* origin-form target to forward ("*" for OPTIONS *), query
                                    included; "?q" alone for "http://h?q": the writer of the
                                    request line puts the "/" in front */
    size_t path_len;
    const char *route;           /* what routes match against: path up to '?' ("/" for "*") */
    size_t route_len;
};

/* Splits req->target. Returns 0, or the status to refuse it with (400; 501 for CONNECT) and a
 * one-line reason in *why. An absolute-form authority is refused exactly when the same value in
 * a Host field would be (h1_host_valid: no userinfo, same characters), or when empty. */
int request_target(const struct h1_request *req, struct req_target *t, const char **why);

/* The length of a path segment separator at p[i] (i < n), 0 if none: '/'; a backslash, which
 * WHATWG URL parsers (Node, Deno), IIS and others take for a slash ("/api/..\\admin" is "/admin"
 * there); or either percent-encoded, which an origin that decodes before it normalises takes
 * for one. */
size_t request_separator_at(const char *p, size_t n, size_t i);

/* Whether a path (n bytes, no query) holds a dot segment, "." or "..", '%2e'-encoded too, ended
 * by a separator (request_separator_at), ';', '?' or the end: what request_target refuses. */
bool request_has_dot_segment(const char *p, size_t n);

/* Via entries of ours beyond which a request is going round in a loop (508). */
#define REQUEST_MAX_HOPS 8

/* Via entries naming Portico ("1.1 portico"): a request that has many is going round in a
 * loop. */
int request_portico_hops(const struct h1_request *req);

/*
 * What Portico refuses once the head is parsed and its framing known, before routing: an
 * expectation other than 100-continue from an HTTP/1.1 client (417; HTTP/1.0 clients cannot
 * take a 100 and may not mean it, RFC 9110 10.1.1), a Content-Length above max_body (413), a
 * forwarding loop (508). Returns 0, or the status with a one-line reason in *why. Inline: out
 * of line for its two callers (every exchange, the probe) it cost a request ~28 instructions.
 */
static inline int request_refusal(const struct h1_request *req, const struct h1_info *info,
                                  uint64_t max_body, const char **why)
{
    if (req->minor >= 1 && info->expect_other) {
        *why = "only the 100-continue expectation is supported";
        return HTTP_EXPECTATION_FAILED;
    }
    if (info->framing == H1_BODY_LENGTH && info->content_length > max_body) {
        *why = "request body larger than max_body_size";
        return HTTP_CONTENT_TOO_LARGE;
    }
    if (request_portico_hops(req) >= REQUEST_MAX_HOPS) {
        *why = "forwarding loop: this request already went through Portico too many times";
        return HTTP_LOOP_DETECTED;
    }
    return 0;
}

/* Max-Forwards of an OPTIONS or TRACE request (RFC 9110 7.6.2: a proxy checks and decrements
 * it on those two methods only, and answers itself at 0): its value, saturated at
 * REQUEST_MAX_FORWARDS_CAP; -1 for any other method, no such field, or a value that is not
 * 1*DIGIT (a list included, and so two fields), which then goes on untouched as on any other
 * method. */
long request_max_forwards(const struct h1_request *req);

#define REQUEST_MAX_FORWARDS_CAP 2147483647L

/* True when an X-Request-Id value may be reused as ours: 1-40 of [A-Za-z0-9._:-]. */
bool request_id_valid(const char *v, size_t n);

/* True for the methods RFC 9110 9.2.2 calls idempotent: only those are ever sent twice. */
bool request_idempotent(enum http_method method);

#endif
