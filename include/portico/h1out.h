/*
 * h1out.h — HTTP/1.1 responses Portico composes itself (admin endpoint, simulator, and the
 * status lines of everything else): one status-line writer, one head writer, one writer of a
 * complete small response, and a last-resort response that needs no allocation.
 *
 * Every writer is all or nothing: it returns 0 with the whole text appended to out, or -1 with
 * out unchanged (allocation failure, or an argument that would break the message: a status
 * outside 100-999, CR/LF or another control character in a phrase or content type, fields that
 * do not end in CRLF). Buffers layer: knows evbuffers and the status registry, nothing else.
 */
#ifndef PORTICO_H1OUT_H
#define PORTICO_H1OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define H1OUT_CHUNKED (-1)     /* as a length: Transfer-Encoding: chunked */
#define H1OUT_UNTIL_CLOSE (-2) /* as a length: no framing field, the content ends with the
                                  connection (for an HTTP/1.0 client; with Connection: close) */

/* What the head says about the connection. */
enum h1out_connection {
    H1OUT_CONN_DEFAULT,    /* nothing: HTTP/1.1 keeps the connection open */
    H1OUT_CONN_CLOSE,      /* Connection: close, the server closes after the response */
    H1OUT_CONN_KEEP_ALIVE, /* Connection: keep-alive, for HTTP/1.0 clients that asked for it */
};

/* Whether a complete response carries its content. */
enum h1out_payload {
    H1OUT_PAYLOAD_SEND, /* head and content */
    H1OUT_PAYLOAD_OMIT, /* answering HEAD: the head alone, with the Content-Length of the content */
};

/* A response head. Written in this order: status line, fields, Content-Type, Content-Length or
 * Transfer-Encoding, Connection, empty line. Statuses without content (1xx, 204, 304) get no
 * Content-Type and no framing field. */
struct h1out_head {
    int status;                        /* 100-999 */
    const char *phrase;                /* NULL: the registry's phrase for status */
    const char *fields;                /* header lines, each ending in CRLF ("Allow: GET\r\n"),
                                          written as given; NULL: none */
    const char *content_type;          /* NULL: none */
    enum h1out_connection connection;
};

/* Appends "HTTP/1.1 <status> <phrase>\r\n"; phrase[0..len) is the reason phrase, the registry's
 * when phrase is NULL or len is 0. 0, or -1 with out unchanged. */
int h1out_status_line(struct evbuffer *out, int status, const char *phrase, size_t len);

/* The same status line written into buf[size] (no NUL), for a caller building the head in its
 * own buffer: its length, or 0 when h1out_status_line would refuse it or it does not fit. */
size_t h1out_status_text(char *buf, size_t size, int status, const char *phrase, size_t len);

/* Appends a response head whose content follows separately: length is its Content-Length, or
 * H1OUT_CHUNKED or H1OUT_UNTIL_CLOSE (ignored for statuses without content). 0, or -1 with out unchanged. */
int h1out_head(struct evbuffer *out, const struct h1out_head *h, int64_t length);

/* Appends a complete response with the len bytes of body as content (Content-Length: len).
 * 0, or -1 with out unchanged. */
int h1out_simple(struct evbuffer *out, const struct h1out_head *h, const void *body, size_t len,
                 enum h1out_payload payload);

/* Like h1out_simple with the content of an evbuffer, moved into out without a copy (body is
 * left empty; with H1OUT_PAYLOAD_OMIT or no content it is left untouched). */
int h1out_simple_buf(struct evbuffer *out, const struct h1out_head *h, struct evbuffer *body,
                     enum h1out_payload payload);

/* True when a response with this status carries content: not 1xx, 204 or 304 (RFC 9110 6.4.1). */
bool h1out_status_has_content(int status);

/* True when a response with this status may have content, and so fields that describe it
 * (Content-Type, X-Content-Type-Options): h1out_status_has_content's statuses but 205, whose
 * body is framed and empty (RFC 9110 15.3.6). */
bool h1out_status_takes_content(int status);

/* The last-resort response, for when building the real one failed: 503, no content,
 * Connection: close (the caller must close after it). h1out_fallback_reserve makes room for it
 * in out beforehand, so that h1out_fallback then appends it without allocating; both 0 or -1. */
int h1out_fallback_reserve(struct evbuffer *out);
int h1out_fallback(struct evbuffer *out);

#endif
