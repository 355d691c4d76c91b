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

struct evbuffer;

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
    const char *server_timing;  /* ready Server-Timing value, or NULL */
    const char *accept;         /* client's Accept value (may be NULL), not NUL-terminated */
    size_t accept_len;
    bool head_only;             /* HEAD request: headers only, Content-Length of the body */
    bool close;                 /* add Connection: close */
    bool http10;                /* client speaks HTTP/1.0: status line says HTTP/1.1 anyway,
                                   but keep-alive must be explicit */
    const char *page_dir;       /* error_page_dir: NNN.html overrides the built-in HTML, or NULL */
};

/* Appends the complete response (status line, headers, body) to out. Returns the number of body
 * bytes (for the access log), or -1 when out of memory. */
long errpage_write(struct evbuffer *out, const struct errpage *e);

/* Which body format Accept asks for: "application/json", "text/html" or "text/plain" (the
 * highest q-value among those three; text/plain when nothing matches). */
const char *errpage_negotiate(const char *accept, size_t len);

#endif
