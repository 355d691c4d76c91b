/*
 * tls.h — OpenSSL contexts for TLS towards origins and TLS termination for clients.
 * Contexts are built once at config load (so `portico -t` checks certificates) and shared by
 * the worker threads; SSL objects are per connection.
 */
#ifndef PORTICO_TLS_H
#define PORTICO_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct ssl_st;

/* Why a context could not be built, and which of the files passed in is at fault, so that the
 * caller can point at the line that named it. */
struct tls_error {
    const char *file;             /* borrowed: one of the path arguments, NULL for none */
    char text[256];               /* the reason, without the file name */
};

/* Server context for `listen ... tls`: TLS 1.2+, ALPN h2 and http/1.1. NULL with err filled. */
void *tls_server_ctx(const char *cert_file, const char *key_file, struct tls_error *err);

/* Whether ALPN offers h2 on a server context (`http2 = off` turns it off). */
void tls_server_http2(void *ctx, bool on);

/* Client context towards origins: TLS 1.2+; with `verify`, peers are checked against ca_file
 * (NULL: the system store); cert_file/key_file (both or neither) are a client certificate.
 * NULL with err filled. */
void *tls_client_ctx(bool verify, const char *ca_file, const char *cert_file,
                     const char *key_file, struct tls_error *err);

/* New SSL for a connection to `host` (SNI unless host is a literal address; certificate name or
 * IP checked when verifying). sni overrides the name sent and checked. NULL on failure. */
struct ssl_st *tls_client_ssl(void *ctx, const char *host, const char *sni, bool verify);

/* Frees a context from tls_server_ctx/tls_client_ctx. NULL is fine. */
void tls_ctx_free(void *ctx);

/* After a failed handshake: true when certificate verification is what failed; the reason
 * (e.g. "certificate has expired") goes to buf. */
bool tls_verify_failed(struct ssl_st *ssl, char *buf, size_t bufsz);

/* Whether the peer has sent no byte at all on this connection (a TCP probe, not a handshake). */
bool tls_peer_silent(struct ssl_st *ssl);

/* Whether an OpenSSL error is a fatal alert by which a server refuses the handshake (our
 * certificate, its absence, its signature): on TLS 1.3 it may come after our Finished, with the
 * request already sent, and then it still means the request never reached the application. */
bool tls_alert_refuses_handshake(unsigned long err);

/* The alert an OpenSSL error says the peer sent (0-255: 116 is certificate_required), or -1
 * when the error is not a received alert (a broken record, our own check failing). */
int tls_alert_received(unsigned long err);

/* The fatal alert a client's connection (tls_server_ctx) was sent, -1 when none was. */
int tls_alert_sent(const struct ssl_st *ssl);

/* An alert's name as RFC 8446 spells it ("certificate_required"); "unknown" for others. */
const char *tls_alert_name(int alert);

/* An origin connection's TLS error as a detail says it: a received alert by its name and number
 * ("alert certificate_required (116)"), with what it says of client_cert (the configured file,
 * NULL: none) when it is about the client certificate; any other error as OpenSSL says it. */
void tls_error_text(unsigned long err, const char *client_cert, char *buf, size_t size);

/* Whether the end SSL_read reported as a close_notify (SSL_ERROR_ZERO_RETURN) was a FIN alone:
 * on a client's connection (tls_server_ctx, which takes a bare FIN for an end) when no
 * close_notify was read; false on an origin's, where OpenSSL reports a cut otherwise. */
bool tls_end_cut(const struct ssl_st *ssl);

#define TLS_RECORD_HEAD 5 /* bytes of a TLS record header */

/* Keeps the first record header the peer sends into head (zeroed by the caller), until called
 * again with NULL (once the handshake is done: it costs a call per record). */
void tls_watch_first_record(struct ssl_st *ssl, unsigned char *head);

/* Whether a first record header (tls_watch_first_record) is the start of a plain HTTP request:
 * an upper-case method, then a space or more of it. */
bool tls_plain_http(const unsigned char *head);

/* The most recent OpenSSL error of this thread as text (clears the queue). */
const char *tls_last_error(char *buf, size_t bufsz);

#endif
