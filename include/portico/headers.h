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

#include "portico/header_rules.h"
#include "portico/http1.h"

struct evbuffer;

/* The version in Portico's Via entry: the one the message came in (RFC 9110 7.6.3). Zero is
 * 1.1, what a message that says nothing else was. */
enum hdr_via {
    HDR_VIA_1_1 = 0,
    HDR_VIA_1_0,
    HDR_VIA_2,   /* HTTP/2 has no minor version (RFC 9113 3) */
};

/* How the request goes to the origin. */
struct fwd_request {
    const char *target;          /* origin-form target to send */
    size_t target_len;
    const char *client_ip;       /* appended to X-Forwarded-For */
    const char *client_addr;     /* $client_addr of the rules: real_ip's client, else the peer;
                                    NULL: client_ip */
    bool client_tls;             /* X-Forwarded-Proto: https */
    bool trusted_proxy;          /* the client is one of trusted_proxies: its X-Forwarded-Proto
                                    and -Host, Forwarded, X-Real-IP and proxy claims go on */
    uint32_t max_forwards;       /* 0: Max-Forwards as received; N + 1: N sent once, after the
                                    client's fields, whose own are dropped (OPTIONS and TRACE:
                                    the client's less one, RFC 9110 7.6.2); in the padding
                                    after client_tls */
    const char *request_id;      /* X-Request-Id */
    const char *host;            /* Host to send instead of the client's (absolute-form target,
                                    or an HTTP/1.0 request without Host); NULL: pass through */
    size_t host_len;
    const char *client_host;     /* the host the client addressed (X-Forwarded-Host), or NULL */
    size_t client_host_len;
    const char *client_target;   /* the target's path and query as the client sent them, before
                                    rewrite_prefix ($request_uri) */
    size_t client_target_len;
    bool keep_expect;            /* forward Expect: 100-continue (relay mode) */
    const char *traceparent;     /* our traceparent (the client's is replaced), or NULL */
    bool drop_tracestate;        /* a new trace was started: the client's tracestate goes */
    bool upgrade;                /* offer the client's Upgrade: its Upgrade fields go on, with
                                    Connection: upgrade */
    enum h1_framing framing;     /* body framing on the upstream side: NONE, LENGTH or CHUNKED */
    enum hdr_via via;            /* the version the client's request came in (Via) */
    const char *client_cert;     /* Client-Cert (RFC 9440), or NULL; a client's own Client-Cert,
                                    Client-Cert-Chain and Client-Cert-Verify never go on */
    const char *client_cert_chain; /* Client-Cert-Chain, or NULL */
    const char *client_cert_verify; /* Client-Cert-Verify, or NULL (none asked) */
    uint64_t content_length;
    const struct hrules *rules;  /* the route's request_header rules, or NULL: the client's
                                    fields they name go, their SET fields follow the client's
                                    (the Host rule is host, above) */
    const char *sticky_name;     /* the upstream's sticky cookie, taken off every Cookie field
                                    (the others' bytes as they came; sticky.h) ... */
    size_t sticky_name_len;      /* ... when not 0 (no sticky: 0) */
};

/* Appends the request head for the origin to out, all or nothing: -1 when there was no memory
 * for it (nothing written; a head with a block missing, its Content-Length line say, would have
 * the origin read the body as the next request). */
int hdr_write_request(struct evbuffer *out, const struct h1_request *req,
                      const struct fwd_request *fwd);

/* The protocol a client speaks: responses and 1xx are adapted to it. */
#define PROTO_LIST(X)                                                                              \
    X(PROTO_HTTP10, "HTTP/1.0")                                                                    \
    X(PROTO_HTTP11, "HTTP/1.1")                                                                    \
    X(PROTO_HTTP2, "HTTP/2.0")

enum proto {
#define X(id, name) id,
    PROTO_LIST(X)
#undef X
};

/* Name of a protocol as the access log writes it ("HTTP/1.1"). */
const char *proto_name(enum proto p);

/* The Via version of a message received over p: one load. */
static inline enum hdr_via hdr_via_of(enum proto p)
{
    static const unsigned char via_of[] = {
        [PROTO_HTTP10] = HDR_VIA_1_0, [PROTO_HTTP11] = HDR_VIA_1_1, [PROTO_HTTP2] = HDR_VIA_2};
    return (enum hdr_via)via_of[p];
}

/* A response head as the exchange decided it, before any protocol's syntax: an HTTP/1.1
 * connection serializes it with hdr_write_head, an HTTP/2 stream as HEADERS. */
struct resp_head {
    int status;
    const char *reason;                /* HTTP/1 reason phrase; NULL or empty: the registry's */
    size_t reason_len;
    const struct h1_field *fields;     /* end-to-end fields to send, in order (borrowed) */
    size_t nfields;
    enum h1_framing framing;           /* of the body that follows: NONE, LENGTH (content_length
                                          bytes) or CHUNKED (length unknown until it ends) */
    uint64_t content_length;
    bool close;                        /* the client connection cannot be kept after this */
};

/* What Portico adds to a forwarded response. */
struct fwd_response {
    enum h1_framing framing;     /* framing of the body that follows (NONE: keep the origin's
                                    Content-Length, for HEAD and 304, but never for 204) */
    const char *request_id;      /* X-Request-Id unless the origin set one */
    const char *proxy_status;    /* NULL, or a Proxy-Status value to add */
    const char *server_timing;   /* NULL, or a Server-Timing value to add */
    const char *date;            /* NULL, or a Date value to add when the origin sent none */
    const struct hrules *rules;  /* the route's response_header rules, or NULL: the origin's
                                    fields they name go, their SET fields follow the origin's */
};

/* Room for the fields of any forwarded response: the origin's and the ones Portico adds. */
#define HDR_MAX_FIELDS (H1_MAX_FIELDS + 8 + HRULE_MAX)

/* The fields of an origin response to forward: its end-to-end fields in order (hop-by-hop ones,
 * framing and those fwd's rules name dropped), then the rules' SET fields, Via, Date,
 * X-Request-Id, Proxy-Status and Server-Timing as fwd says.
 * Spans borrow from resp and fwd. Returns how many were written to out (at most max). */
size_t hdr_response_fields(const struct h1_response *resp, const struct fwd_response *fwd,
                           struct h1_field *out, size_t max);

/* The end-to-end fields of an interim (1xx) response, in order, then Via: out has room for
 * H1_MAX_FIELDS + 1, or the last of them gives way to it. The fields the route's response rules
 * (or NULL) name go, as from trailers; the rules add none. Returns how many (at most max). */
size_t hdr_interim_fields(const struct h1_response *resp, const struct hrules *rules,
                          struct h1_field *out, size_t max);

/* The fields of a 101 Switching Protocols to forward: the end-to-end ones (but those the route's
 * response rules, or NULL, name), the origin's Upgrade fields, Via and Connection: upgrade.
 * Returns how many (at most max). */
size_t hdr_upgrade_fields(const struct h1_response *resp, const struct hrules *rules,
                          struct h1_field *out, size_t max);

/* Writes a response head for an HTTP/1.x client: status line (always HTTP/1.1), the fields, the
 * framing of the wire (LENGTH: Content-Length; CHUNKED: Transfer-Encoding: chunked; CLOSE and
 * NONE: neither), and Connection: close when !keep_alive, keep-alive spelled out for 1.0. An
 * interim head (1xx) gets the fields only. All or nothing: -1 when there was no memory for it
 * (nothing written); then nothing of its response may follow on that connection. */
int hdr_write_head(struct evbuffer *out, const struct resp_head *h, enum h1_framing wire,
                   bool http10, bool keep_alive);

/* True when the field must not be forwarded: a hop-by-hop field or one named by Connection. */
bool hdr_is_hop_by_hop(const struct h1_field *f, const struct h1_field *fields, size_t n);

#endif
