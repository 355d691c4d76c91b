/*
 * downstream.h — how an exchange talks to whoever owns it: an HTTP/1.1 connection today
 * (client.c), an HTTP/2 stream tomorrow. The exchange never touches the client's socket; it
 * hands over response heads and body bytes, and asks about the peer, through this table — the
 * same way the origin side reports to the exchange through upconn_events.
 *
 * Ownership: the downstream creates the exchange (exchange_start) and keeps the pointer. The
 * exchange ends itself, in one place, and tells the downstream last of all with done(); after
 * done() the pointer is gone. A downstream that goes away first calls exchange_cancel().
 */
#ifndef PORTICO_DOWNSTREAM_H
#define PORTICO_DOWNSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/headers.h"
#include "portico/util.h"

struct evbuffer;
struct access_record;
struct upconn;
struct sock;
struct tunnel_origin;
struct mtls_peer;

/* What the exchange may know about the client. Borrowed for the exchange's lifetime. */
struct peer {
    uint64_t conn_id;                  /* the client connection, unique in its loop */
    const char *ip;                    /* "127.0.0.1", "::1" */
    uint16_t port;                     /* 0: none (the probe's own exchange) */
    bool tls;                          /* the client connection is TLS */
    const struct mtls_peer *cert;      /* its client certificate's word (mtls.h); NULL: none
                                          asked */
};

/* Room for peer_addr's text: "[" IPv6 "]:" port. */
#define PEER_ADDR_MAX 56

/* The peer as logs show it, "127.0.0.1:50312" or "[::1]:50312" (the ip alone without a port),
 * formatted into buf (PEER_ADDR_MAX bytes) when asked: a connection does not carry the text. */
static inline const char *peer_addr(const struct peer *p, char *buf, size_t size)
{
    return ip_port_str(p->ip, p->port, buf, size);
}

/* Where the body of a response goes after its head: bytes appended to out, chunk-framed by the
 * body relay when chunked is set (HTTP/1.1 with an unknown length). */
struct body_sink {
    struct evbuffer *out;              /* borrowed from the downstream */
    bool chunked;                      /* trailer fields go on in the chunked coding, in out */
    struct evbuffer *trailers;         /* NULL, or (not chunked) where the trailer fields of a
                                          chunked response that may cross (trailers.h) go, as
                                          HTTP/1.1 field lines: an HTTP/2 stream sends them as
                                          a trailing HEADERS; NULL drops them. Borrowed */
    size_t trailers_max;               /* 0, or a bound under max_header_size on the trailer
                                          section: a larger one cuts the response short as
                                          invalid, as one over max_header_size does */
};

/* Request body bytes still to come after an answer that came before the body's end (an error,
 * an origin's early answer) that Portico reads and drops, rather than close the connection
 * (HTTP/1.1: request_discard, a larger Content-Length rest closing it) or reset the stream
 * (HTTP/2: h2_stream.c's discard_begin, any rest read up to this, then reset). */
#define DISCARD_MAX (1024 * 1024)
/* request_discard's `left` for a rest the connection closes on unread: past DISCARD_MAX, of
 * unknown length, or one a client waiting for 100 Continue may never send. */
#define DISCARD_UNREAD UINT64_MAX

/* How an exchange ended, for done(). */
#define EXCHANGE_END_LIST(X)                                                                       \
    X(END_KEEP, "keep")       /* response complete: the connection may serve the next request */ \
    X(END_CLOSE, "close")     /* response complete: close after flushing it */                   \
    X(END_CLOSE_ASKED, "close asked") /* the same, and the client asked for it (Connection:      \
                                         close, HTTP/1.0) after a request read to its end */     \
    X(END_ABORT, "abort")     /* response cut short: the client must see it failed */         \
    X(END_DROP, "drop")       /* no response (a fault's drop): close after what went (FIN) */  \
    X(END_RESET, "reset")     /* a fault's reset: close at once with RST, nothing more sent */

enum exchange_end {
#define X(id, name) id,
    EXCHANGE_END_LIST(X)
#undef X
};

struct downstream_ops {
    /* An interim (1xx) response. Called only when the client can take one. */
    void (*interim)(void *ds, const struct resp_head *head);
    /* The final response head; fills *sink with where the body goes. */
    void (*head)(void *ds, const struct resp_head *head, struct body_sink *sink);
    /* Optional (NULL: every head goes): whether the client's protocol can carry an origin's
     * head as interim() (final: false) or head() would send it. false, with why written (size
     * bytes), when it cannot: an HTTP/2 stream's header block is bounded (nghttp2 drops a larger
     * one without a word, and the stream waited for ever). The exchange then fails a final head
     * as an invalid response (502 before anything of it went) and drops a 1xx, counted. */
    bool (*head_fits)(void *ds, const struct resp_head *head, bool final, char *why,
                      size_t size);
    /* Optional (NULL: every trailer section goes): whether the client takes the trailer fields
     * that came to the sink's `trailers`, the body complete. false, with why written (size
     * bytes), when it would refuse them (HTTP/2: over its SETTINGS_MAX_HEADER_LIST_SIZE): the
     * exchange then fails as an invalid response, cut short after the body that went. */
    bool (*trailers_fit)(void *ds, char *why, size_t size);
    /* Optional (NULL: never): whether the client is known to be gone, asked as a final head is
     * about to go (writing why, size bytes). A half-closed HTTP/1.1 client is not read any
     * more, so a reset since is found only here (or when the answer is written): the exchange
     * then ends as exchange_cancel ends it, logged 499, and done() closes the connection. */
    bool (*gone)(void *ds, char *why, size_t size);
    /* Optional (NULL: never): whether the client's connection failed before any byte of this
     * answer left, asked as the exchange ends (what is queued is sent first, before the log
     * line) or is cancelled with its head written: a reset that no event reported (an HTTP/1.1
     * client not watched when its exchange began). Then, writing why (size bytes), the
     * exchange is logged 499 with no bytes sent, as one found gone(), and done() closes. */
    bool (*sent_none)(void *ds, char *why, size_t size);
    /* Body bytes were appended to the sink: send what can be sent now. */
    void (*body)(void *ds);
    /* Response bytes queued and not yet taken by the client (back-pressure). */
    size_t (*pending)(void *ds);
    /* Optional (NULL: never): moves up to max response body bytes from the origin's socket
     * straight to the client's (sock_splice), behind what was queued. Returns the bytes moved,
     * or -1 when this client cannot take spliced bytes (TLS): then the body is copied. */
    long (*body_splice)(void *ds, struct sock *from, size_t max);
    /* Optional (NULL: never): the same for request body bytes, from the client's socket to the
     * origin's `to`. */
    long (*request_splice)(void *ds, struct sock *to, size_t max);
    /* Where request body bytes arrive, and a call to say some were taken from it, or that the
     * origin's output drained: `queued` bytes (the head's and the body's framing included) still
     * wait there to be written to the origin. A downstream that bounds what it holds (HTTP/2:
     * CONN_REQ_HELD_MAX) counts them as held; the others ignore it. */
    struct evbuffer *(*request_input)(void *ds);
    void (*request_taken)(void *ds, size_t queued);
    /* The client may send its request body now (after 100 Continue, or once connected); read
     * deadline: body_timeout_ms without a byte (0: none). */
    void (*request_wait)(void *ds, uint64_t body_timeout_ms);
    /* Optional (NULL: nothing to do): the exchange ends the request body as too slow
     * (client_body_min_rate), about to answer 408 or cut its response: its rest is not read, as
     * after the downstream's own client_body_timeout (exchange_request_timeout). */
    void (*request_stalled)(void *ds);
    /* Optional (NULL: never): whether the client may send no more of its body now because we
     * have not opened its flow-control window (HTTP/2: the stream's or the connection's): a
     * body held back by us, not slow (client_body_min_rate). */
    bool (*request_blocked)(void *ds);
    /* Optional (NULL: a connection carries one body at a time): the request body bytes the
     * client's connection carried so far, for all its requests, and into *bodies how many of
     * them are still coming (HTTP/2: its streams). A client sends its streams' bodies in the
     * order it likes: one starved by its siblings is not slow while the connection as a whole
     * keeps client_body_min_rate per body. */
    uint64_t (*request_shared)(void *ds, unsigned *bodies);
    /* Optional (NULL: nothing to do): the request announced a body that is not all in yet. A
     * client may hold the rest until what it sent is acknowledged (Nagle's algorithm, with the
     * body written apart from the head): the downstream acknowledges it at once, not after the
     * kernel's delayed-ACK timer (40 ms). */
    void (*request_owed)(void *ds);
    /* Optional (NULL: the connection closes instead): the exchange answered whole before `left`
     * more bytes of the request body came; they are read and dropped before the next request
     * is read (closing if they do not come within client_body_timeout), unless done()'s end
     * closes the connection; DISCARD_UNREAD: a rest it closes on unread (done() closes). Called
     * before done(), once; the downstream counts how the rest ended (metrics_discard_end). */
    void (*request_discard)(void *ds, uint64_t left);
    /* The exchange is over, counted, logged (or its record handed to keep_log) and freed; the
     * downstream sends what is still queued (the last bytes of a response wait for this, so
     * that a client that has the whole response can count on the metrics and the log having
     * it). */
    void (*done)(void *ds, enum exchange_end end);
    /* Optional (NULL: none): what the exchange logs of itself — outcome, failure, phase
     * timings — handed over once at its end, before done() (or before it is freed after
     * exchange_cancel). For owners that report on the exchange, such as `portico probe`. */
    void (*report)(void *ds, const struct access_record *r);
    /* Optional (NULL: written at the exchange's end): the exchange's record, handed over
     * instead of counted and written, before done() or on exchange_cancel, for a downstream that
     * learns only later what reached its client (an HTTP/2 stream: the response's last DATA
     * leaves after done(), or never, when the client resets the stream first). r is borrowed
     * for the call (log_record_copy); the downstream sets status and bytes_out to what went,
     * then calls exchange_log_record with route and upstream. */
    void (*keep_log)(void *ds, const struct access_record *r, int route, int upstream);
    /* Instead of done(), after a 101 Switching Protocols went to the client: the exchange is
     * over and freed, and the downstream relays bytes both ways between its client and the
     * origin (tunnel.h: the connection and its in-flight place are the downstream's from now
     * on, both ended by tunnel_open or tunnel_free) until either side closes or neither sends
     * for origin->idle_ms. An HTTP/2 stream hands over only its WebSocket (RFC 8441,
     * `websocket` below): its other requests carry no Upgrade. */
    void (*upgraded)(void *ds, const struct tunnel_origin *origin);
};

/* An exchange's owner: the table and its argument, the peer and the protocol. */
struct downstream {
    const struct downstream_ops *ops;  /* borrowed, static */
    void *ctx;                         /* the owner (client connection, HTTP/2 stream) */
    const struct peer *peer;           /* borrowed */
    enum proto proto;
    bool pipelined;                    /* the request was buffered before the previous response
                                          ended: it is not the user's reply to that response */
    bool first;                        /* the first request of its client connection, which
                                          has released no origin connection to take back */
    bool body_until_eof;               /* a head without Content-Length still has a body, which
                                          ends with exchange_request_eof() (an HTTP/2 stream
                                          without END_STREAM on its HEADERS) */
    bool websocket;                    /* an HTTP/2 extended CONNECT (RFC 8441) made an HTTP/1.1
                                          WebSocket upgrade: its 101 must prove the key sent
                                          (Sec-WebSocket-Accept) and counts as the 200 the
                                          client gets */
    size_t resp_read_max;              /* response body bytes read from the origin at once, if
                                          fewer than the exchange's own (0: no wish). An HTTP/2
                                          stream asks for less: its connection's budget is
                                          shared by all its streams, and what it may take
                                          changes as they come and go (exchange_read_max) */
};

#endif
