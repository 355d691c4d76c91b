/*
 * raw_client.h — a byte-exact HTTP/1.1 client for tests: connects to loopback (plain or TLS),
 * sends arbitrary bytes (whole, or in pieces with pauses), and reads responses: every status line
 * (1xx included) with its arrival time, the header fields, the final body decoded by
 * Content-Length / chunked / close, and whether the peer closed or cut the body short.
 *
 * Every call is bounded by a timeout; nothing blocks forever. Return vocabulary: 0 ok, -1 error
 * (errno, raw_last_errno() or the response's error text says why).
 */
#ifndef PORTICO_RAW_CLIENT_H
#define PORTICO_RAW_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAW_MAX_INTERIM 16 /* 1xx responses kept per response; more are counted, not kept */

struct raw_tls_opts {
    const char *ca_file;  /* trust store for verification (NULL: none, verification fails) */
    const char *host;     /* SNI and the name verified; NULL means "localhost"; an IP literal
                           * ("127.0.0.1") is checked against the IP SANs and sends no SNI */
    const char *cert;     /* client certificate + key (PEM), or NULL */
    const char *key;
    bool require_valid;   /* true: the handshake fails on a bad certificate. false (default):
                           * it completes and raw_tls_verify_result() tells the outcome */
};

struct raw_conn;

/* Connects to 127.0.0.1:port within timeout_ms. NULL on failure with errno set (ECONNREFUSED,
 * ETIMEDOUT ...) and raw_last_error() describing it. */
struct raw_conn *raw_connect(uint16_t port, int timeout_ms);

/* Same, to ip, which must be "127.0.0.1" or "::1" (anything else fails with EINVAL). */
struct raw_conn *raw_connect_ip(const char *ip, uint16_t port, int timeout_ms);

/* Connects to 127.0.0.1:port from the address src of 127.0.0.0/8 ("127.0.0.2": Linux's
 * loopback answers the whole block), as a client of another address would. */
struct raw_conn *raw_connect_from(const char *src, uint16_t port, int timeout_ms);

/* Connects to 127.0.0.1:port and completes a TLS handshake within timeout_ms. NULL on failure
 * (errno EPROTO for a TLS failure, raw_last_error() has OpenSSL's reason). */
struct raw_conn *raw_connect_tls(uint16_t port, const struct raw_tls_opts *tls, int timeout_ms);

/* The calling thread's description of the last connect failure ("" if none). */
const char *raw_last_error(void);

/* TLS: X509_V_OK (0) or the X509_V_ERR_* code of the peer's certificate verification. */
long raw_tls_verify_result(const struct raw_conn *c);

/* Timeout of each send call, 5000 ms by default. */
void raw_set_send_timeout(struct raw_conn *c, int timeout_ms);

/* Sends all len bytes. 0, or -1 (peer gone, timeout). */
int raw_send(struct raw_conn *c, const void *data, size_t len);
int raw_send_str(struct raw_conn *c, const char *s);

/* Sends data in pieces of `piece` bytes with pause_ms between them (a slow client). */
int raw_send_slowly(struct raw_conn *c, const void *data, size_t len, size_t piece, int pause_ms);

/* When the last send call finished (tu_now_ms clock), 0 before any. */
int64_t raw_last_send_ms(const struct raw_conn *c);

/* Half-closes: sends FIN, keeps reading possible. */
int raw_shutdown_write(struct raw_conn *c);

/* TLS: sends a close_notify (SSL_shutdown once, no wait for the peer's), without a FIN; reading
 * goes on (a TLS 1.3 half-close). -1 on a plain connection or a failed write. */
int raw_tls_close_notify(struct raw_conn *c);

/* One header field. */
struct raw_field {
    char *name;
    char *value; /* trimmed */
};

/* One response head (status line + fields). */
struct raw_head {
    int status;
    int minor;                 /* HTTP/1.<minor> */
    char *reason;
    int64_t at_ms;             /* when the complete head had arrived (tu_now_ms clock) */
    char *text;                /* the head as received, CRLFCRLF included */
    size_t nfields;
    struct raw_field *fields;
};

enum raw_framing {
    RAW_NO_BODY,    /* HEAD request, 1xx, 204, 304 */
    RAW_LENGTH,     /* Content-Length */
    RAW_CHUNKED,
    RAW_UNTIL_CLOSE,
};

struct raw_response {
    size_t ninterim;                   /* 1xx heads received before the final one */
    struct raw_head interim[RAW_MAX_INTERIM];
    struct raw_head head;              /* the final head */
    int status;                        /* head.status, or 0 when no final head came */
    int64_t first_byte_ms;             /* arrival of the response's first byte */
    enum raw_framing framing;
    char *body;                        /* decoded, NUL-terminated, never NULL after a read */
    size_t body_len;
    char *trailers;                    /* chunked trailer section as received, or NULL */
    bool truncated;                    /* EOF/timeout before Content-Length or the last chunk */
    bool peer_closed;                  /* the peer closed (EOF or reset) during this read */
    bool timed_out;
    char error[160];                   /* why the read returned -1, "" on success */
};

/* Reads the next response (pipelined ones in order). 0 when a complete response was read; -1
 * otherwise, with r filled as far as it got (status, truncated, peer_closed, error). */
int raw_read_response(struct raw_conn *c, struct raw_response *r, int timeout_ms);

/* Same for the response to a HEAD request (never a body). */
int raw_read_head_response(struct raw_conn *c, struct raw_response *r, int timeout_ms);

/* Reads exactly one head, interim or final, and no body: for a client that waits for
 * "100 Continue" before sending its body. 0, or -1 (timeout, close, not HTTP). Free the head
 * with raw_head_free. */
int raw_read_one_head(struct raw_conn *c, struct raw_head *h, int timeout_ms);
void raw_head_free(struct raw_head *h);

/* Frees what a response holds (safe on a zeroed one; the struct can be reused). */
void raw_response_free(struct raw_response *r);

/* First value of field name (case-insensitive) in a head, or NULL; number of such fields. */
const char *raw_head_field(const struct raw_head *h, const char *name);
unsigned raw_head_field_count(const struct raw_head *h, const char *name);

/* Shorthand for raw_head_field(&r->head, name). */
const char *raw_header(const struct raw_response *r, const char *name);

/* Reads everything until the peer closes or timeout_ms: malloc'd, NUL-terminated, *len set.
 * Includes bytes already buffered. NULL only on allocation failure. */
char *raw_read_all(struct raw_conn *c, int timeout_ms, size_t *len);

/* Waits up to timeout_ms for the peer to close (EOF or reset); bytes arriving meanwhile are kept
 * for later reads. 1 closed, 0 still open. */
int raw_wait_closed(struct raw_conn *c, int timeout_ms);

/* True once EOF or a connection error was seen. */
bool raw_peer_closed(const struct raw_conn *c);

/* errno of the last failed read or write (ECONNRESET, EPIPE ...), 0 if none. */
int raw_last_errno(const struct raw_conn *c);

/* The socket, for tests that need it. */
int raw_fd(const struct raw_conn *c);

/* Closes (FIN) and frees c (NULL is fine). */
void raw_close(struct raw_conn *c);

/* Aborts: SO_LINGER {1,0} then close, so the peer gets RST; frees c. */
void raw_abort(struct raw_conn *c);

#endif
