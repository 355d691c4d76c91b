/*
 * h2_request.h — an HTTP/2 request's header fields turned into an HTTP/1.1 request head, checked
 * the way RFC 9113 8.1-8.3 asks, so that Portico's own HTTP/1.1 parser and rules then apply to
 * it and nothing can be smuggled between the two: pseudo-header fields (each once, before every
 * regular field, no unknown ones), field names (lowercase tokens), values (no NUL, CR or LF, no
 * leading or trailing whitespace), no connection-specific fields (Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding, Upgrade, a TE other than "trailers"), :authority as Host
 * (a Host that differs from it is malformed), Cookie fields joined with "; " (RFC 9113 8.2.3).
 *
 * Pure: no libevent, no nghttp2; the caller feeds the decoded fields one by one.
 */
#ifndef PORTICO_H2_REQUEST_H
#define PORTICO_H2_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/http1.h"
#include "portico/wskey.h"

/* A growable byte buffer of the builder. */
struct h2_bytes {
    char *p;                    /* owned */
    size_t len;
    size_t cap;
};

/* Where a value was kept: an offset into h2_request.values (offsets survive a realloc). */
struct h2_span {
    size_t off;
    size_t len;
};

struct h2_request {
    struct h2_bytes values;     /* the pseudo-header values and Host, back to back */
    struct h2_bytes lines;      /* the other fields as "name: value\r\n" */
    struct h2_bytes cookie;     /* the Cookie values joined with "; " */
    size_t limit;               /* max_header_size: a head larger than this is refused (431) */
    unsigned seen;              /* H2F_* bits of the fields seen that may occur once */
    bool regular_seen;          /* a regular field came: no pseudo-header field may follow */
    bool too_large;             /* the head outgrew limit: no more bytes are kept */
    bool announces_body;        /* a content-length other than 0 came */
    bool declares_length;       /* a content-length came, 0 or not */
    uint64_t content_length;    /* its value (nghttp2 let only digits through), saturated */
    size_t decoded;             /* bytes of every field decoded, kept or not */
    struct h2_span method;
    struct h2_span scheme;
    struct h2_span path;
    struct h2_span authority;
    struct h2_span host;
    struct h2_span protocol;    /* :protocol (RFC 8441 extended CONNECT) */
    const char *error;          /* static: why the request is malformed (after -1) */
};

/* Starts a builder; limit is the largest head accepted (max_header_size). */
void h2_request_init(struct h2_request *r, size_t limit);

/* Frees what the builder holds (safe to call twice). */
void h2_request_free(struct h2_request *r);

/* A header list decoded past this many times the limit is not read to its end: an HPACK bomb (a
 * big field indexed once, then referred to thousands of times) costs its decoder a scan of
 * every copy, ~0.3 s of CPU per 147 KB block. */
#define H2_REQUEST_ABANDON_FACTOR 4

/* Adds one decoded field of the request's header block. Returns 0; -1 when the request is
 * malformed (r->error says why): a stream error of type PROTOCOL_ERROR (running out of memory
 * too, "out of memory"); 1 when the fields decoded so far exceed H2_REQUEST_ABANDON_FACTOR
 * times the limit: the stream should be reset without reading the rest. */
int h2_request_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                     size_t value_len);

/* The :method and :path seen so far (for the log of a refused request); NULL spans when absent. */
void h2_request_line(const struct h2_request *r, const char **method, size_t *method_len,
                     const char **path, size_t *path_len);

/* The regular fields kept so far (neither pseudo-header fields, Host nor Cookie), in order, as
 * HTTP/1.1 fields (ids set, spans into r): the first max of them into out. Returns how many
 * there are, which may be more than max. Whether they are all of the block's is the caller's
 * to know (none is kept past the limit). */
size_t h2_request_fields(const struct h2_request *r, struct h1_field *out, size_t max);

/* Why nghttp2 found a complete header block malformed (NGHTTP2_ERR_HTTP_MESSAGING, which it
 * gives both for missing pseudo-header fields and for a content-length that END_STREAM on the
 * HEADERS frame contradicts); end_stream: that frame had END_STREAM. */
const char *h2_request_messaging_error(struct h2_request *r, bool end_stream);

/* What an extended CONNECT (RFC 8441) asks to speak, after the last field: H2_PROTOCOL_NONE
 * for a request without :protocol. */
enum h2_protocol {
    H2_PROTOCOL_NONE,
    H2_PROTOCOL_WEBSOCKET,      /* :protocol websocket: an HTTP/1.1 WebSocket upgrade */
    H2_PROTOCOL_OTHER,          /* any other: not implemented (501) */
};
enum h2_protocol h2_request_protocol(const struct h2_request *r);

/* Completes the head after the last field. Returns 0 with *head (malloc'd, the caller frees it)
 * and *head_len set to an HTTP/1.1 request head ending in CRLF CRLF; 431 when it is larger than
 * the limit (nothing allocated); -1 when malformed (r->error). An extended CONNECT for a
 * WebSocket becomes the HTTP/1.1 upgrade RFC 8441 5 describes: GET :path with Upgrade:
 * websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and ws_key (WS_KEY_LEN bytes;
 * NULL for other requests) as its Sec-WebSocket-Key. */
int h2_request_finish(struct h2_request *r, const char *ws_key, char **head, size_t *head_len);

#endif
