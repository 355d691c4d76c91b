/*
 * errpage.h — the one generator of responses Portico writes itself: client errors (400, 408,
 * 413 ...) and upstream failures (502, 504, 52x, 598/599 ...), with diagnostic headers and a
 * body chosen by content negotiation. Real and simulated failures both come through here.
 */
#ifndef PORTICO_ERRPAGE_H
#define PORTICO_ERRPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"
#include "portico/headers.h"

struct evbuffer;

/* How much an upstream failure's response tells the client (`error_detail`). */
enum errpage_detail {
    ERRPAGE_DETAIL_FULL,        /* everything, the origin and upstream included */
    ERRPAGE_DETAIL_MINIMAL,     /* status, failure type, phase, timings and request id only */
};

/* Everything an error response says. Strings are borrowed for the duration of the call. */
struct errpage {
    int status;                 /* status code sent */
    enum failure_type failure;  /* FAIL_NONE for client-side errors */
    enum phase phase;           /* phase that failed (upstream failures) */
    const char *reason;         /* one line: "connect to 127.0.0.1:3000 exceeded 1000 ms" */
    const char *origin;         /* "127.0.0.1:3000", or NULL */
    const char *upstream;       /* upstream name, or NULL */
    uint64_t limit_ms;          /* the timer that expired, 0 if none */
    double elapsed_ms;          /* time from request received to the failure */
    const char *request_id;     /* X-Request-Id value */
    bool request_id_clean;      /* request_id is an exchange's (exchange_request_id: 40 bytes of
                                   [A-Za-z0-9._:-] at most): pointed at, no escaper needed */
    const char *server_timing;  /* ready Server-Timing value, or NULL */
    const struct h1_field *fields; /* the request's fields (NULL when none): its Accept lines,
                                      in order, are one list (RFC 9110 5.3) the body follows */
    size_t nfields;
    bool head_only;             /* HEAD request: headers only, Content-Length of the body */
    bool close;                 /* add Connection: close */
    bool http10;                /* client speaks HTTP/1.0: status line says HTTP/1.1 anyway,
                                   but keep-alive must be explicit */
    const char *tls_alert_name; /* the origin refused the handshake with this TLS alert
                                   ("certificate_required"), or NULL: Proxy-Status then says
                                   tls_alert_received, with its number and name (RFC 9209) */
    uint8_t tls_alert;          /* that alert's number (116) */
    const char *page_dir;       /* error_page_dir: NNN.html overrides the built-in HTML, or NULL */
    uint64_t retry_after_s;     /* Retry-After in seconds (a 429 of client_rate); 0: none */
    enum errpage_detail detail; /* MINIMAL: origin, upstream and reason are left out (upstream
                                   failures; a client error's reason is the client's own) */
};

/* Resolved once per response: what the renderers need. Private to errpage.c. */
struct errpage_view {
    const struct errpage *e;    /* borrowed */
    int status;
    const char *phrase;         /* status_phrase(status) */
    const char *mime;           /* application/json, text/html or text/plain */
    const char *date;           /* this thread's cached Date */
    const char *origin;         /* NULL when absent or empty */
    const char *upstream;       /* NULL when absent or empty */
    const char *reason;         /* NULL when absent, empty or withheld */
    char *page;                 /* owned: error_page_dir file, or NULL */
    size_t page_len;
};

/* A prepared error response: a head any downstream can write (HTTP/1.1 or HTTP/2), and its body,
 * rendered. Meant for the stack: errpage_prepare fills it without zeroing it first. */
struct errpage_out {
    struct resp_head head;      /* status, fields, LENGTH framing with the body's length (NONE,
                                   and no body nor Content-Type, for 1xx, 204 and 304; for 205,
                                   LENGTH 0 and no Content-Type) */
    struct h1_field fields[10]; /* Date, Server, Content-Type, Cache-Control, X-Request-Id ... */
    char store[2048];           /* the field values that need a copy, escaped */
    size_t nfields;
    const struct errpage *e;    /* borrowed until errpage_body or errpage_release */
    struct errpage_view view;
    size_t body_len;            /* the body's length; when past body, it is rendered again */
    const char *body_at;        /* the rendered body: body, or the thread's prepared page of a
                                   client error with no reason (valid until its next prepare) */
    char body[8192];            /* the body (any built-in one fits; a page file may not) */
};

/* Prepares the response described by e (borrowed until errpage_body/errpage_release). 0. */
int errpage_prepare(const struct errpage *e, struct errpage_out *o);

/* Appends the body (nothing for HEAD) to out and releases o. Returns the body bytes written, or
 * -1 when out of memory. */
long errpage_body(struct errpage_out *o, struct evbuffer *out);

/* Releases o without writing the body. */
void errpage_release(struct errpage_out *o);

/* For HTTP/1.x clients: prepares, writes the head and the body to out. Returns the body bytes
 * (for the access log), or -1 when out of memory. */
long errpage_write(struct evbuffer *out, const struct errpage *e);

/* Reads the pages of dir (error_page_dir) as a response would, and tells warn of each page with
 * a {{name}} that is no placeholder, sent to clients as written ("DIR/502.html: {{request-id}}
 * is not a placeholder ..."): once per page, naming the first. For the configuration's load. */
void errpage_check_pages(const char *dir, void (*warn)(void *arg, const char *text), void *arg);

/* Which body format Accept asks for: "application/json", "text/html" or "text/plain" (the
 * highest q-value among those three; text/plain when nothing matches). */
const char *errpage_negotiate(const char *accept, size_t len);

/* The same for a request's fields: every Accept line among them, in order, read as one list
 * (a client or an intermediary may split the value over several lines, RFC 9110 5.3). */
const char *errpage_negotiate_fields(const struct h1_field *fields, size_t n);

#endif
