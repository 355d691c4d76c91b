/*
 * fake_origin.h — misbehaving (and well-behaved) HTTP/1.1 origins for integration tests.
 *
 * Each origin binds 127.0.0.1 port 0 (the kernel's port is read back), accepts on its own thread
 * and serves each connection on a thread of its own, with plain sockets, poll() and OpenSSL: no
 * libevent, so it stays independent of the code under test. The test stops it with
 * fake_origin_stop(), which wakes every thread through a pipe and joins them.
 *
 * A behaviour is a kind (enum fo_kind) plus options; FO_SCRIPT runs a list of steps for every
 * request (send bytes, wait, respond, close, reset, hold). Everything the origin reads is
 * recorded and can be asserted on, thread-safely.
 */
#ifndef PORTICO_FAKE_ORIGIN_H
#define PORTICO_FAKE_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fo_kind {
    FO_OK,             /* 200 + small body to every request; keep-alive; pipelining; bodies read */
    FO_ECHO,           /* like FO_OK, the response body is the (de-chunked) request body */
    FO_REFUSE,         /* a bound port where nothing listens: connect gets RST/ECONNREFUSED */
    FO_BLACKHOLE,      /* listen(fd, 0), backlog filled, never accepted: connect hangs */
    FO_SILENT,         /* reads the request, never answers, keeps the connection open */
    FO_NO_READ,        /* accepts, never reads (small SO_RCVBUF): a big request stalls */
    FO_CLOSE_EMPTY,    /* reads the request, closes without sending a byte */
    FO_RESET,          /* reads the request, resets (SO_LINGER {1,0} then close) */
    FO_GARBAGE,        /* reads the request, answers bytes that are not HTTP, closes */
    FO_PARTIAL_HEAD,   /* reads the request, sends "HTTP/1.1 200 OK\r\nContent-Le", stalls */
    FO_SLOW_FIRST_BYTE, /* reads the request, waits opts.delay_ms, then answers like FO_OK */
    FO_SCRIPT,         /* runs opts.script (or opts.pick_script's choice) for every request */
    FO_TLS_GARBAGE,    /* plain TCP: answers the first bytes (a ClientHello) with non-TLS bytes */
    FO_TLS_SILENT,     /* plain TCP: accepts and reads, never speaks TLS */
};

/* Framing of a FO_RESPOND step's body. */
enum fo_framing {
    FO_LENGTH,          /* Content-Length */
    FO_CHUNKED,         /* Transfer-Encoding: chunked, the body in one chunk, then 0 CRLF CRLF */
    FO_CLOSE_DELIMITED, /* no length; the connection is closed after the body */
    FO_NO_FRAMING,      /* no length field and no body (any status: 1xx, 204, 304 ...) */
};

enum fo_step_kind {
    FO_STEP_END,     /* end of the list (so a zeroed step terminates it) */
    FO_STEP_SEND,    /* send data (len bytes, or strlen(data) when len is 0) */
    FO_STEP_WAIT,    /* wait ms milliseconds (the origin's own delay, woken by stop) */
    FO_STEP_RESPOND, /* a complete response; status 0 = the origin's default FO_OK answer */
    FO_STEP_CLOSE,   /* close the connection (TLS: close_notify first) */
    FO_STEP_RESET,   /* SO_LINGER {1,0} and close: the peer gets RST */
    FO_STEP_HOLD,    /* read and discard until the peer closes or the origin stops */
    FO_STEP_CALL,    /* call(fd, arg) on the origin's thread; non-zero ends the connection */
    FO_STEP_DROP,    /* close the socket without a TLS close_notify (an abrupt TCP FIN) */
};

struct fo_step {
    enum fo_step_kind kind;
    const char *data;         /* SEND: the bytes; RESPOND: extra header lines "N: v\r\n..." */
    size_t len;               /* SEND: byte count, 0 = strlen(data) */
    int ms;                   /* WAIT */
    int status;               /* RESPOND: status code, 0 = default response */
    const char *body;         /* RESPOND: body (NULL = empty) */
    enum fo_framing framing;  /* RESPOND */
    int (*call)(int fd, void *arg); /* CALL: gets the connection's socket (TLS: the TCP one) */
    void *arg;                /* CALL: borrowed */
};

#define FO_SEND(s) { .kind = FO_STEP_SEND, .data = (s) }
#define FO_SEND_N(p, n) { .kind = FO_STEP_SEND, .data = (p), .len = (n) }
#define FO_WAIT(m) { .kind = FO_STEP_WAIT, .ms = (m) }
#define FO_RESPOND(st, hdrs, b, fr) \
    { .kind = FO_STEP_RESPOND, .status = (st), .data = (hdrs), .body = (b), .framing = (fr) }
#define FO_INTERIM(st, hdrs) FO_RESPOND(st, hdrs, NULL, FO_NO_FRAMING)
#define FO_RESPOND_OK() { .kind = FO_STEP_RESPOND }
#define FO_CLOSE() { .kind = FO_STEP_CLOSE }
#define FO_RST() { .kind = FO_STEP_RESET }
#define FO_HOLD() { .kind = FO_STEP_HOLD }
#define FO_CALL(fn, a) { .kind = FO_STEP_CALL, .call = (fn), .arg = (a) }
#define FO_DROP() { .kind = FO_STEP_DROP }
#define FO_END() { .kind = FO_STEP_END }

/* What FO_SCRIPT's chooser is told about the request it picks a script for. */
struct fo_request_info {
    unsigned conn;            /* connection number, from 0 in accept order */
    unsigned index;           /* request number on the whole origin, from 0 */
    unsigned index_in_conn;   /* request number on this connection, from 0 */
    const char *head;         /* the request head, NUL-terminated (borrowed, valid during call) */
};

/* How the origin treats `Expect: 100-continue`. */
enum fo_expect {
    FO_EXPECT_CONTINUE, /* send "HTTP/1.1 100 Continue" before reading the body (default) */
    FO_EXPECT_IGNORE,   /* never send 100; just read the body when it comes */
};

struct fake_origin_opts {
    enum fo_kind kind;
    int delay_ms;                     /* FO_SLOW_FIRST_BYTE */
    const struct fo_step *script;     /* FO_SCRIPT: steps run per request (borrowed) */
    /* FO_SCRIPT: when set, called per request to pick its script (borrowed); wins over script */
    const struct fo_step *(*pick_script)(const struct fo_request_info *req, void *arg);
    void *pick_arg;
    int status;                       /* FO_OK default response status; 0 means 200 */
    const char *body;                 /* FO_OK body; NULL means "ok\n" */
    const char *extra_headers;        /* FO_OK/FO_ECHO: lines "N: v\r\n" added to responses */
    enum fo_expect expect;
    bool respond_before_body;         /* answer right after the head, then read the body */
    /* When set, called on the origin's thread after each request head is read, before its body
     * (the kinds that read requests): a test's hook on "the head got through" */
    void (*on_head)(void *arg);
    void *on_head_arg;
    int rcvbuf;                       /* SO_RCVBUF of its connections (any kind), 0: the
                                       * kernel's, or 4096 for FO_NO_READ */
    const char *tls_cert;             /* serve TLS with this PEM cert + key (the kinds that
                                       * read requests; not NO_READ, TLS_*, REFUSE, BLACKHOLE) */
    const char *tls_key;
    const char *tls_client_ca;        /* also require a client cert signed by this CA */
    int tls_max_version;              /* e.g. TLS1_2_VERSION; 0: OpenSSL's highest */
    bool ipv6;                        /* on [::1] (IPV6_V6ONLY) instead of 127.0.0.1 */
    uint16_t port;                    /* this port (e.g. another origin's on the other
                                       * address, or its own again after a stop: bound with
                                       * SO_REUSEADDR, but for FO_REFUSE); 0: one the kernel
                                       * chooses */
};

struct fake_origin;

/* Starts an origin (see enum fo_kind). NULL on error, with a message on stderr. */
struct fake_origin *fake_origin_start(const struct fake_origin_opts *opts);

/* "ok", "blackhole" ... for messages. */
const char *fake_origin_kind_name(enum fo_kind kind);

/* Shorthand for fake_origin_start with only a kind. */
struct fake_origin *fake_origin_start_kind(enum fo_kind kind);

/* The origin's port on 127.0.0.1 (on ::1 with opts.ipv6). */
uint16_t fake_origin_port(const struct fake_origin *o);

/* FO_NO_READ: when bytes last arrived, unread, on one of its connections (tu_now_ms clock; 0
 * before any). For a write timer, that is when the sender's last write went through. */
int64_t fake_origin_last_rx_ms(struct fake_origin *o);

/* FO_BLACKHOLE: how many filler connects it took until one hung (the hung one included). */
unsigned fake_origin_blackhole_fillers(const struct fake_origin *o);

/* Connections accepted and requests read completely so far (thread-safe). */
unsigned fake_origin_connections(struct fake_origin *o);
unsigned fake_origin_requests(struct fake_origin *o);
unsigned fake_origin_tls_handshakes(struct fake_origin *o);

/* Wait until at least n connections / requests were seen, or timeout_ms. 0 or -1 (timeout). */
int fake_origin_wait_connections(struct fake_origin *o, unsigned n, int timeout_ms);
int fake_origin_wait_requests(struct fake_origin *o, unsigned n, int timeout_ms);

/* Copies of request i (0-based, in completion order), malloc'd and NUL-terminated, NULL when no
 * such request: the exact bytes received (head + body as framed on the wire), the head only,
 * and the body de-chunked. */
char *fake_origin_request(struct fake_origin *o, unsigned i, size_t *len);
char *fake_origin_request_head(struct fake_origin *o, unsigned i);
char *fake_origin_request_body(struct fake_origin *o, unsigned i, size_t *len);

/* Value of the first header field `name` (case-insensitive) of request i, trimmed, malloc'd;
 * NULL when the request or the field is absent. */
char *fake_origin_request_header(struct fake_origin *o, unsigned i, const char *name);

/* TLS: SNI name of the last handshake and the subject CN of the last client certificate, copied
 * into buf ("" if none). */
void fake_origin_last_sni(struct fake_origin *o, char *buf, size_t size);
void fake_origin_last_client_cn(struct fake_origin *o, char *buf, size_t size);

/* Stops the origin: wakes and joins every thread, closes every socket, frees o (NULL is fine). */
void fake_origin_stop(struct fake_origin *o);

#endif
