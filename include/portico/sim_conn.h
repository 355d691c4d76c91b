/*
 * sim_conn.h — inside the simulator: what its server (sim.c: thread, connections, request
 * reading, the state machine) and its endpoints (sim_endpoints.c: the table, argument parsing,
 * the handlers) share. Nothing outside the simulator includes this; the rest of Portico sees
 * only sim.h.
 *
 * Handlers and steps return 0 after progress, -2 when waiting for an event, -1 when the
 * connection must be torn down (c->why says why), like every step of the state machine.
 */
#ifndef PORTICO_SIM_CONN_H
#define PORTICO_SIM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "portico/chunked.h"
#include "portico/config.h"
#include "portico/http1.h"

struct bufferevent;
struct event;
struct evbuffer;

/* The simulator takes every head Portico forwards: one under the largest max_header_size, plus
 * the fields Portico adds (X-Forwarded-Host repeats Host, X-Request-Id, traceparent, Via ...).
 * At 16 KiB, a client head under the default max_header_size got the simulator's 431. */
#define SIM_MAX_HEAD (2 * CFG_MAX_HEADER_SIZE) /* longest request head bound (sim.c) */
#define SIM_MAX_REQUEST_LINE CFG_MAX_HEADER_SIZE /* longer request line: 414 */
#define SIM_MAX_INTERIM 32         /* codes accepted by /interim */
#define SIM_MAX_PARAMS 2           /* query parameters of one endpoint */
#define SIM_MAX_MS 600000ULL       /* upper bound of every duration in milliseconds */
#define SIM_MAX_BYTES (1ULL << 40) /* /bytes and /drip upper bound */

enum conn_state {
    CONN_HEAD,   /* waiting for (the rest of) a request head */
    CONN_BODY,   /* reading and discarding the request body; the handler runs after it */
    CONN_WAIT,   /* the handler waits on conn->timer (/delay, /interim, /slow, /drip ...) */
    CONN_BYTES,  /* streaming a /bytes or /drip body, refilled at the low watermark and paced
                    by conn->timer for /drip */
    CONN_ECHO,   /* streaming the request body back as it arrives */
    CONN_HANG,   /* never answering (/hang, /partial): input discarded until the client leaves */
    CONN_FLUSH,  /* the last bytes are queued: write them out, then close with FIN (with RST
                    for /reset, once the kernel has sent them) */
    CONN_LINGER, /* write side shut: drain the client until EOF or timeout so it sees no RST */
};

/* What the timer of a connection in CONN_HEAD stands for: the waits of Portico's own listener
 * (client.c), with the [proxy] client timeouts (sim_set_timeouts). */
enum head_wait {
    HEAD_WAIT_NONE,  /* not armed yet for this head */
    HEAD_WAIT_FIRST, /* nothing yet on a new connection: client_header_timeout from the accept */
    HEAD_WAIT_IDLE,  /* nothing of a next head: keepalive_timeout from the last answer */
    HEAD_WAIT_HEAD,  /* a head begun: client_header_timeout from its first byte, never reset */
};

struct conn;

/* A documented query parameter: anything not in the endpoint's list is refused. */
struct sim_param {
    const char *name;
    uint64_t min;        /* inclusive bounds */
    uint64_t max;
    uint64_t def;        /* value when absent */
    const char *why;     /* 400 reason when the value is not a number in range */
};

struct sim_endpoint {
    const char *path;        /* exact path, or a prefix when it ends in '/' */
    const char *usage;       /* for the index page */
    const char *about;       /* one-line description for the index page */
    bool echo;               /* streams the request body back instead of discarding it */
    const char *(*parse)(struct conn *c, const char *arg, size_t len); /* path argument; NULL ok */
    const struct sim_param *params; /* documented query parameters */
    size_t nparams;
    int (*start)(struct conn *c); /* runs once the request body has been read */
    int (*tick)(struct conn *c);  /* conn->timer fired in CONN_WAIT */
};

/* What one request asked for; reset for every request head. Holds no pointer into the input
 * buffer: everything needed later is copied out (parsed into numbers) before the head is
 * drained. */
struct sim_request {
    const struct sim_endpoint *ep; /* borrowed (static table); NULL: no such endpoint, 404 */
    const char *bad;               /* static 400 reason for an invalid path or query, or NULL */
    bool head;                     /* HEAD: headers only */
    int minor;                     /* HTTP/1.<minor> of the request */
    bool keep_alive;               /* false: Connection: close on the response, then close */
    enum h1_framing framing;       /* request body framing; NONE once the body is fully read */
    bool echo_chunked;             /* /echo of a chunked body: the response is chunked too */
    uint64_t body_left;            /* H1_BODY_LENGTH: bytes still to read */
    struct chunked_decoder chunked;     /* H1_BODY_CHUNKED decoder */
    uint64_t arg;                  /* path argument: status code, milliseconds, byte count */
    uint64_t query[SIM_MAX_PARAMS]; /* query values, in endpoint->params order */
    int codes[SIM_MAX_INTERIM];    /* /interim codes */
    size_t ncodes;
    size_t sent;                   /* interim responses or 102s sent so far */
    uint64_t left;                 /* /bytes, /drip: body bytes still to send */
    uint64_t offset;               /* /bytes, /drip: body bytes sent (the pattern's phase) */
    uint64_t pace_ms;              /* /drip: spread the body evenly over this long; 0: as fast
                                      as the client reads */
    bool reset;                    /* /reset: end with RST, once earlier answers are out */
    struct timespec t0;            /* when the handler started waiting */
};

struct conn {
    struct conn *prev;         /* sim.conns list, so sim_stop can free every connection */
    struct conn *next;
    struct bufferevent *bev;   /* owns the socket */
    struct event *timer;       /* handler ticks in CONN_WAIT, the linger timeout in CONN_LINGER,
                                  the client's deadline in CONN_HEAD, CONN_BODY and CONN_ECHO */
    enum conn_state state;
    bool peer_eof;             /* client shut its write side: finish what is queued, then close */
    struct timespec eof_t0;    /* when peer_eof came */
    bool eof_cut;              /* the armed timer ends the wait after the EOF (SIM_EOF_WAIT_MS)
                                  instead of running the step it was armed for */
    struct timespec armed_t0;  /* when the timer was last armed ... */
    uint64_t armed_ms;         /* ... and for how long */
    bool read_paused;          /* echo back-pressure: reading off until the output drains */
    bool long_head;            /* a head beyond SIM_IN_HIGH: the read watermark let up to it */
    size_t head_parsed;        /* bytes of the pending head a parse found incomplete: parsed
                                  again only once it may have ended or has doubled */
    size_t head_scanned;       /* bytes of it searched for its end since */
    size_t head_skipped;       /* empty lines before it, dropped as they came; they count
                                  against the head's bound */
    enum head_wait head_wait;  /* CONN_HEAD: what conn->timer waits for */
    const char *why;           /* static reason given to the teardown when a step returns -1 */
    struct sim_request req;
};

/* ---- sim.c, for the endpoints ---- */

/* The one state setter (logs transitions under PORTICO_SIM_DEBUG). */
void sim_set_state(struct conn *c, enum conn_state s);

/* Arms conn->timer ms from now (CONN_WAIT: the endpoint's tick runs then); after the client's
 * EOF, no later than the end of the wait it is still given (the connection closes then). */
void sim_arm(struct conn *c, uint64_t ms);

/* Milliseconds since t0 (CLOCK_MONOTONIC), and t0 set to now. */
uint64_t sim_elapsed_ms(const struct timespec *t0);
void sim_mark(struct timespec *t0);

/* The connection's output buffer. */
struct evbuffer *sim_out(struct conn *c);

/* The response is complete: next request on this connection, or close once flushed. 0. */
int sim_finish(struct conn *c);

/* Writes a final response head (Server, Date, Content-Type, framing: len, or H1OUT_CHUNKED;
 * Connection as the request needs). 0, or -1 (out of memory, c->why set). */
int sim_put_head(struct conn *c, int code, const char *ctype, int64_t len);

/* Writes an interim response (a 103 carries a Link); nothing to HTTP/1.0 clients. 0 or -1. */
int sim_put_interim(struct conn *c, int code);

/* A complete text/plain response with a formatted body, then sim_finish. 0 or -1. */
int sim_send_text(struct conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- sim_endpoints.c, for the server ---- */

/* Finds the endpoint of target and parses its arguments into c->req (ep, bad, arg, query ...),
 * while the target's bytes are still valid. */
void sim_route(struct conn *c, const char *target, size_t len);

#endif
