/*
 * tls_client.h — one blocking TLS connection for the certificate tests (test_sni, test_dualcert,
 * test_ocsp, test_mtls, test_tls): a socket to 127.0.0.1 whose reads and writes are bounded, a
 * client context of the options asked (one TLS version, signature algorithms, a client
 * certificate, a session to resume, status_request), and the handshake. What the connection
 * saw (the certificate served, the staple, the alert) is the caller's to judge on c->ssl.
 *
 * Return vocabulary: 0 ok, -1 failed with why (and OpenSSL's error queue kept until
 * tls_client_close, for ERR_peek_error()).
 */
#ifndef PORTICO_TLS_CLIENT_H
#define PORTICO_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct tls_client_opts {
    const char *sni;              /* server_name, NULL: none */
    int version;                  /* TLS1_2_VERSION or TLS1_3_VERSION only, 0: any */
    const char *sigalgs;          /* signature_algorithms offered (OpenSSL's list), NULL: its own */
    const char *cert;             /* a client certificate file (its chain after it), NULL: none */
    const char *key;
    SSL_SESSION *session;         /* offered for resumption, NULL: none */
    bool ask_status;              /* status_request (an OCSP staple) */
    int bound_ms;                 /* each read and write, and the handshake's; 0: 5000 */
};

struct tls_client {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    char why[256];                /* what failed, OpenSSL's last error for a handshake */
};

/* Connected to 127.0.0.1:port with a client SSL of o ready for its handshake (not begun). */
int tls_client_open(uint16_t port, const struct tls_client_opts *o, struct tls_client *c);

/* tls_client_open, then the handshake. */
int tls_client_connect(uint16_t port, const struct tls_client_opts *o, struct tls_client *c);

/* req written whole, then everything read until the peer closes (or size - 1 bytes) into buf,
 * a string; the status of its "HTTP/1.1 NNN" line, 0 when none came, -1 when req was not sent. */
int tls_client_exchange(struct tls_client *c, const char *req, char *buf, size_t size);

/* The CN of the certificate the server sent into buf ("" none). */
void tls_client_peer_cn(const struct tls_client *c, char *buf, size_t size);

/* Frees all, and clears OpenSSL's error queue. c zeroed by tls_client_open first is fine. */
void tls_client_close(struct tls_client *c);

#endif
