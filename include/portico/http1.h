/*
 * http1.h — strict, incremental HTTP/1.1 message parser (RFC 9112).
 *
 * Knows nothing of libevent: the caller owns the bytes, the parser returns spans into them.
 * Every function here is pure (no allocation, no global state) and is fuzzed.
 *
 * Return vocabulary used across Portico: 0 or a positive count = ok, -1 = error, -2 = again
 * (need more input).
 */
#ifndef PORTICO_HTTP1_H
#define PORTICO_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H1_MAX_FIELDS 100 /* more header fields than this is 431 (request) / invalid (response) */
/* A request head Portico forwards: the client's fields and the ones it adds (X-Forwarded-*,
 * X-Request-Id, traceparent, Via ...). The origin in this process, the simulator, reads as many. */
#define H1_MAX_FIELDS_FORWARDED (H1_MAX_FIELDS + 8)
#define H1_MAX_LENGTH (UINT64_C(1) << 62) /* largest Content-Length, chunk size and chunked body */

/* Byte classes of the HTTP grammar, one table shared by the head parser and the chunked decoder:
 * h1_class[byte] & H1_TCHAR. */
enum h1_byte_class {
    H1_TCHAR = 1 << 0,   /* tchar (RFC 9110 5.6.2) */
    H1_VALUE = 1 << 1,   /* field-value byte: VCHAR, obs-text, SP, HTAB */
    H1_TARGET = 1 << 2,  /* request-target byte: VCHAR only (0x21-0x7e) */
    H1_HEX = 1 << 3,     /* HEXDIG */
    H1_REGNAME = 1 << 4, /* reg-name byte except pct-encoded: unreserved / sub-delims */
    H1_QDTEXT = 1 << 5,  /* qdtext (RFC 9110 5.6.4) */
};

extern const unsigned char h1_class[256];

/* The fields Portico looks at, recognized once by the parser so that forwarding a head costs
 * one comparison per field instead of a string match per rule: id, lowercase name. */
#define H1_FIELD_LIST(X)                                                                           \
    X(H1_F_OTHER, "")                                                                              \
    X(H1_F_HOST, "host")                                                                           \
    X(H1_F_CONNECTION, "connection")                                                               \
    X(H1_F_CONTENT_LENGTH, "content-length")                                                       \
    X(H1_F_TRANSFER_ENCODING, "transfer-encoding")                                                 \
    X(H1_F_EXPECT, "expect")                                                                       \
    X(H1_F_MAX_FORWARDS, "max-forwards")                                                           \
    X(H1_F_TE, "te")                                                                               \
    X(H1_F_TRAILER, "trailer")                                                                     \
    X(H1_F_UPGRADE, "upgrade")                                                                     \
    X(H1_F_KEEP_ALIVE, "keep-alive")                                                               \
    X(H1_F_PROXY_CONNECTION, "proxy-connection")                                                   \
    X(H1_F_X_REQUEST_ID, "x-request-id")                                                           \
    X(H1_F_X_FORWARDED_FOR, "x-forwarded-for")                                                     \
    X(H1_F_X_FORWARDED_PROTO, "x-forwarded-proto")                                                 \
    X(H1_F_X_FORWARDED_HOST, "x-forwarded-host")                                                   \
    X(H1_F_FORWARDED, "forwarded")                                                                 \
    X(H1_F_X_REAL_IP, "x-real-ip")                                                                 \
    X(H1_F_VIA, "via")                                                                             \
    X(H1_F_TRACEPARENT, "traceparent")                                                             \
    X(H1_F_TRACESTATE, "tracestate")                                                               \
    X(H1_F_USER_AGENT, "user-agent")                                                               \
    X(H1_F_ACCEPT, "accept")                                                                       \
    X(H1_F_LINK, "link")                                                                           \
    X(H1_F_PORTICO_FAULT, "portico-fault")                                                         \
    X(H1_F_PORTICO_MIRROR, "x-portico-mirror") /* ours on mirror copies: never a client's */       \
    X(H1_F_SERVER_TIMING, "server-timing")                                                         \
    X(H1_F_SET_COOKIE, "set-cookie")                                                               \
    X(H1_F_COOKIE, "cookie") /* sticky: Portico's own cookie is taken off (headers.c) */           \
    X(H1_F_SEC_FETCH_DEST, "sec-fetch-dest") /* error pages: a script or style fetch */            \
    X(H1_F_PROXY_CLAIM, "") /* no one name: H1_PROXY_CLAIM_LIST and H1_PROXY_CLAIM_PREFIX */

/* Fields in which a proxy in front tells the origin about the client's connection (address,
 * scheme, port, path) and that Portico neither writes nor lets a client send: each name is
 * H1_F_PROXY_CLAIM, as is every name starting "X-Forwarded-" that is not X-Forwarded-For,
 * -Proto or -Host (README "What the origin receives" says who reads which). */
#define H1_PROXY_CLAIM_PREFIX "x-forwarded-"
#define H1_PROXY_CLAIM_LIST(X)                                                                     \
    X("client-ip")                                                                                 \
    X("x-client-ip")                                                                               \
    X("true-client-ip")                                                                            \
    X("x-cluster-client-ip")                                                                       \
    X("cf-connecting-ip")                                                                          \
    X("fastly-client-ip")                                                                          \
    X("front-end-https")                                                                           \
    X("x-url-scheme")                                                                              \
    X("x-original-url")                                                                            \
    X("x-rewrite-url")

enum h1_field_id {
#define X(id, name) id,
    H1_FIELD_LIST(X)
#undef X
    H1_F_COUNT
};

struct h1_field {
    const char *name; /* borrowed: points into the parsed buffer */
    size_t name_len;
    const char *value; /* borrowed; leading and trailing OWS trimmed */
    size_t value_len;
    enum h1_field_id id; /* set by the parsers; H1_F_OTHER for a field built by hand */
};

/*
 * Request methods Portico knows by name (RFC 9110 9.3, RFC 5789 for PATCH). Methods are
 * case-sensitive (RFC 9110 9.1): "get" is an extension method, not GET. Every other token is
 * METHOD_OTHER and is forwarded exactly as sent.
 */
#define METHOD_LIST(X)                                                                         \
    X(METHOD_OTHER, "")                                                                        \
    X(METHOD_GET, "GET")                                                                       \
    X(METHOD_HEAD, "HEAD")                                                                     \
    X(METHOD_POST, "POST")                                                                     \
    X(METHOD_PUT, "PUT")                                                                       \
    X(METHOD_DELETE, "DELETE")                                                                 \
    X(METHOD_CONNECT, "CONNECT")                                                               \
    X(METHOD_OPTIONS, "OPTIONS")                                                               \
    X(METHOD_TRACE, "TRACE")                                                                   \
    X(METHOD_PATCH, "PATCH")

enum http_method {
#define X(id, name) id,
    METHOD_LIST(X)
#undef X
    METHOD_COUNT
};

/* The name of a known method ("GET"); "" for METHOD_OTHER, whose name is the token as sent. */
const char *h1_method_name(enum http_method m);

/* The method a token names, case-sensitively; METHOD_OTHER for any other token. */
enum http_method h1_method_of(const char *token, size_t len);

struct h1_request {
    const char *method; /* borrowed: the token as sent */
    size_t method_len;
    enum http_method method_id; /* the same method, looked up once */
    const char *target; /* borrowed; request-target as sent */
    size_t target_len;
    int minor;          /* HTTP/1.<minor>: 0 or 1 */
    size_t nfields;
    struct h1_field fields[H1_MAX_FIELDS_FORWARDED];
};

struct h1_response {
    int minor;          /* HTTP/1.<minor>: 0 or 1 */
    int status;         /* 100..999 */
    const char *reason; /* borrowed; may be empty */
    size_t reason_len;
    size_t nfields;
    struct h1_field fields[H1_MAX_FIELDS];
};

/* Why a message was refused: the status Portico should answer with, a one-line reason for the
 * client and the log, and the byte offset where the parser stopped. */
struct h1_error {
    int status;         /* an HTTP_* of status.h: 400, 414, 431, 501, 505; 502 for responses */
    const char *reason; /* static string, e.g. "whitespace before colon in header field" */
    size_t offset;
    bool head_method;   /* a request's method was HEAD: the refusal carries no body */
};

struct h1_limits {
    size_t max_request_line; /* request line longer than this: 414 */
    size_t max_head;         /* whole head (request line + fields + CRLF) longer than this: 431 */
};

/*
 * Parses a request head from buf[0..len). Leading empty lines (CRLF) are skipped (RFC 9112 2.2).
 * Returns the head length in bytes including the final CRLF CRLF (> 0) when the head is complete,
 * -2 when more bytes are needed (and none seen so far is invalid and limits are not exceeded),
 * -1 on error with *err filled. Lines must end in CRLF: a bare LF or bare CR is an error (400).
 * Rejects: obs-fold, whitespace between field name and colon, invalid token characters,
 * control characters (other than HTAB) or NUL in values, more than H1_MAX_FIELDS fields (431),
 * request line over lim->max_request_line (414), head over lim->max_head (431), an HTTP version
 * other than HTTP/1.0 or HTTP/1.1 that is syntactically valid (505), anything else (400).
 * On -2 and -1, req->fields[0..req->nfields) are the field lines read whole before the one that
 * stopped it (none when the request line did; not the one an obs-fold refused goes on with).
 */
int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim,
                     struct h1_request *req, struct h1_error *err);

/* The same for a head Portico forwarded (the simulator's requests): up to
 * H1_MAX_FIELDS_FORWARDED fields, so that whatever Portico took and added to is read. */
int h1_parse_forwarded_request(const char *buf, size_t len, const struct h1_limits *lim,
                               struct h1_request *req, struct h1_error *err);

/*
 * Parses a response head (status line and fields) from buf[0..len), same rules as requests;
 * the reason phrase may be empty and the space before it may be missing. Errors report status
 * 502. Returns head length, -2 or -1 like h1_parse_request. max_head bounds the head size.
 */
int h1_parse_response(const char *buf, size_t len, size_t max_head, struct h1_response *resp,
                      struct h1_error *err);

/* How the length of a message body is known (RFC 9112 section 6.3). */
enum h1_framing {
    H1_BODY_NONE,    /* no body at all */
    H1_BODY_LENGTH,  /* Content-Length bytes */
    H1_BODY_CHUNKED, /* chunked transfer coding */
    H1_BODY_CLOSE,   /* responses only: the body runs until the connection closes */
};

/* What the semantic pass learned from the header fields of a request or response. */
struct h1_info {
    enum h1_framing framing;
    uint64_t content_length;      /* valid when framing == H1_BODY_LENGTH */
    bool keep_alive;              /* version + Connection: close / keep-alive */
    bool expect_continue;         /* request: Expect: 100-continue */
    bool expect_other;            /* request: an Expect value other than 100-continue (417) */
    const struct h1_field *host;  /* request: the Host field, NULL when absent (1.0 only) */
};

/*
 * Semantic checks of a parsed request and its body framing. Returns 0 and fills *info, or -1 with
 * *err: both Content-Length and Transfer-Encoding (400), differing or invalid Content-Length
 * (400), Transfer-Encoding whose final coding is not chunked or chunked twice (400), a coding
 * other than chunked (501), Transfer-Encoding in HTTP/1.0 (400), missing or repeated Host in
 * HTTP/1.1 (400). Does not check body size limits: the caller compares content_length.
 */
int h1_request_info(const struct h1_request *req, struct h1_info *info, struct h1_error *err);

/* Whether a message so framed carries body bytes: chunked, or a Content-Length above 0. */
bool h1_info_has_body(const struct h1_info *info);

/*
 * Semantic checks of a parsed response to a request with method `method` (HEAD and CONNECT
 * decide the framing). 1xx, 204, 304, responses to HEAD and 2xx to CONNECT have no body;
 * Transfer-Encoding with chunked last is chunked, otherwise close-delimited; Content-Length
 * gives the length; neither is close-delimited. Both TE and CL, or differing CL values, are
 * errors (502). Returns 0 or -1.
 */
int h1_response_info(const struct h1_response *resp, enum http_method method,
                     struct h1_info *info, struct h1_error *err);

/*
 * True when value is a valid Host: uri-host [":" port] with reg-name, IPv4 or IP-literal
 * (RFC 9110 7.2, RFC 3986 3.2.2). Userinfo is refused (RFC 9110 4.2.4: "user@host" has no place
 * in Host or in an http(s) authority). An empty value is allowed: it is what a client sends when
 * the target URI has no authority (RFC 9112 3.2); an absolute-form target checks that itself.
 */
bool h1_host_valid(const char *value, size_t n);

/* Case-insensitive comparison of a field name with a NUL-terminated lowercase name. */
bool h1_name_is(const struct h1_field *f, const char *lower_name);

/* First field named lower_name (case-insensitive) at index >= from, or -1. */
int h1_find_field(const struct h1_field *fields, size_t n, const char *lower_name, size_t from);

/* The id of a field name (any case), H1_F_OTHER when Portico has no use for it. A name
 * starting H1_PROXY_CLAIM_PREFIX is H1_F_PROXY_CLAIM at any length unless it is a known one. */
enum h1_field_id h1_field_id_of(const char *name, size_t len);

/* Sets of field ids as 32-bit masks. */
#define H1_FIELD_BIT(id) (1u << (id))
_Static_assert(H1_F_COUNT <= 32, "field id masks are 32-bit");

/* The id of f: the parser's, or looked up by name for a field built by hand. */
static inline enum h1_field_id h1_field_id(const struct h1_field *f)
{
    return f->id != H1_F_OTHER ? f->id : h1_field_id_of(f->name, f->name_len);
}

/* First field with id (from a parser) at index >= from, or -1. */
int h1_find(const struct h1_field *fields, size_t n, enum h1_field_id id, size_t from);

/*
 * Iterates the comma-separated list elements of a field value (RFC 9110 5.6.1), skipping empty
 * elements and OWS. *pos starts at 0. Returns true and sets *elem / *elem_len for each element,
 * false at the end.
 */
bool h1_list_next(const char *value, size_t value_len, size_t *pos, const char **elem,
                  size_t *elem_len);

/* The same for Link values (RFC 8288), where a comma inside <URI-reference> does not end the
 * link-value either. */
bool h1_link_next(const char *value, size_t value_len, size_t *pos, const char **elem,
                  size_t *elem_len);

/* The offset of the first delim in p[0..len) outside quoted-strings (and, with angles, outside
 * <...>), or len: the one scanner behind every list and parameter split. */
size_t h1_skip_to(const char *p, size_t len, char delim, bool angles);

/* True when any field named lower_name lists token (both compared case-insensitively), e.g.
 * "upgrade" listing "h2c". */
bool h1_list_has(const struct h1_field *fields, size_t n, const char *lower_name,
                 const char *lower_token);

/* True when any Connection field of the message lists token (case-insensitive), e.g. "close". */
bool h1_connection_has(const struct h1_field *fields, size_t n, const char *lower_token);

/* True when a byte is a tchar (RFC 9110 5.6.2). */
bool h1_is_tchar(unsigned char c);

#endif
