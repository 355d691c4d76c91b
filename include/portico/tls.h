/*
 * tls.h — OpenSSL contexts for TLS towards origins and TLS termination for clients.
 * Contexts are built once at config load (so `portico -t` checks certificates) and shared by
 * the worker threads; SSL objects are per connection.
 */
#ifndef PORTICO_TLS_H
#define PORTICO_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct upstream_conf;
struct ssl_st;

/* Server context for `listen ... tls`: TLS 1.2+, ALPN h2 and http/1.1. NULL with err filled. */
void *tls_server_ctx(const char *cert_file, const char *key_file, char *err, size_t errsz);

/* Whether ALPN offers h2 on a server context (`http2 = off` turns it off). */
void tls_server_http2(void *ctx, bool on);

/* Client context for an upstream: TLS 1.2+, verification per up->verify against up->ca_file or
 * the system store, optional client certificate. NULL with err filled. */
void *tls_client_ctx(const struct upstream_conf *up, char *err, size_t errsz);

/* New SSL for a connection to `host` (SNI unless host is a literal address; certificate name or
 * IP checked when verifying). sni overrides the name sent and checked. NULL on failure. */
struct ssl_st *tls_client_ssl(void *ctx, const char *host, const char *sni, bool verify);

/* Frees a context from tls_server_ctx/tls_client_ctx. NULL is fine. */
void tls_ctx_free(void *ctx);

/* After a failed handshake: true when certificate verification is what failed; the reason
 * (e.g. "certificate has expired") goes to buf. */
bool tls_verify_failed(struct ssl_st *ssl, char *buf, size_t bufsz);

/* The most recent OpenSSL error of this thread as text (clears the queue). */
const char *tls_last_error(char *buf, size_t bufsz);

#endif
