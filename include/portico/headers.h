/*
 * headers.h — what crosses Portico between client and origin: hop-by-hop fields removed
 * (RFC 9110 7.6.1), Via added, X-Forwarded-* set, framing fields rewritten for the framing
 * actually used on the next hop.
 */
#ifndef PORTICO_HEADERS_H
#define PORTICO_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/http1.h"

struct evbuffer;

/* How the request goes to the origin. */
struct fwd_request {
    const char *target;          /* origin-form target to send */
    size_t target_len;
    const char *client_ip;       /* appended to X-Forwarded-For */
    bool client_tls;             /* X-Forwarded-Proto: https */
    const char *request_id;      /* X-Request-Id */
    const char *host;            /* Host to send instead of the client's (absolute-form target,
                                    or an HTTP/1.0 request without Host); NULL: pass through */
    size_t host_len;
    const char *client_host;     /* the host the client addressed (X-Forwarded-Host), or NULL */
    size_t client_host_len;
    bool keep_expect;            /* forward Expect: 100-continue (relay mode) */
    enum h1_framing framing;     /* body framing on the upstream side: NONE, LENGTH or CHUNKED */
    uint64_t content_length;
};

/* Appends the request head for the origin to out. */
void hdr_write_request(struct evbuffer *out, const struct h1_request *req,
                       const struct fwd_request *fwd);

/* How the response goes to the client. */
struct fwd_response {
    int client_minor;            /* client's HTTP/1.<minor> */
    enum h1_framing framing;     /* NONE, LENGTH (content_length), CHUNKED or CLOSE */
    uint64_t content_length;
    bool keep_alive;             /* false: Connection: close */
    const char *request_id;      /* X-Request-Id unless the origin set one */
    const char *proxy_status;    /* NULL, or a Proxy-Status value to add */
    const char *server_timing;   /* NULL, or a Server-Timing value to add */
};

/* Appends the response head for the client (status line with the origin's status and reason). */
void hdr_write_response(struct evbuffer *out, const struct h1_response *resp,
                        const struct fwd_response *fwd);

/* Appends an interim (1xx) response for an HTTP/1.1 client: status line and the fields that are
 * not hop-by-hop. custom(f, out, arg), when given, may take a field over (write it changed, or
 * drop it) by returning true. */
void hdr_write_interim(struct evbuffer *out, const struct h1_response *resp,
                       bool (*custom)(const struct h1_field *f, struct evbuffer *out, void *arg),
                       void *arg);

/* True when the field must not be forwarded: a hop-by-hop field or one named by Connection. */
bool hdr_is_hop_by_hop(const struct h1_field *f, const struct h1_field *fields, size_t n);

#endif
