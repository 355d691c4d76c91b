/*
 * mtls.h — client certificates on TLS listeners (mutual TLS): the server context asks clients
 * for a certificate that chains to tls_client_ca, refuses the handshake without a good one
 * (tls_verify_client = on) or serves the client and tells the origin (optional), and says what
 * was wrong with a refused one. Per [proxy], on the default context of sni.h: every certificate
 * of the listener asks the same.
 *
 * Sessions: a resumed session carries the certificate and the verification result of the
 * handshake that made it (a ticket is that client's secret), and is resumed only under the same
 * settings: the session ID context mixes the mode, the depth and the CA and CRL files' bytes into
 * the served certificate's digest (mtls_session_context), so a ticket made before a reload that
 * turned verification on, changed the CA or brought a CRL gets a full handshake and is verified.
 */
#ifndef PORTICO_MTLS_H
#define PORTICO_MTLS_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/metrics.h"

struct ssl_st;
struct x509_st;
struct tls_error;

/* tls_verify_client values. */
#define MTLS_MODE_LIST(X)                                                                          \
    X(MTLS_OFF, "off")                                                                             \
    X(MTLS_OPTIONAL, "optional")                                                                   \
    X(MTLS_ON, "on")

enum mtls_mode {
#define X(id, name) id,
    MTLS_MODE_LIST(X)
#undef X
};

/* "off", "optional", "on". */
const char *mtls_mode_name(enum mtls_mode mode);

#define MTLS_BIND_LEN 32  /* bytes of the settings' digest (SHA-256) */
#define MTLS_SID_LEN 32   /* bytes of a session ID context (SHA-256) */

/* The settings as a session ID context binds them: mode, depth, the CA file's bytes and the CRL
 * file's (crl_file NULL: none). 0, or -1 when a file cannot be read (errno). */
int mtls_bind(enum mtls_mode mode, int depth, const char *ca_file, const char *crl_file,
              unsigned char bind[MTLS_BIND_LEN]);

/* The session ID context of a served certificate: its digest, with bind (NULL: none, no client
 * certificate asked) mixed in. 0, or -1. */
int mtls_session_context(struct x509_st *leaf, const unsigned char *bind,
                         unsigned char sid[MTLS_SID_LEN]);

/* Makes a server context (tls_server_ctx's, the default of sni.h) ask for client certificates
 * chaining to ca_file through at most depth intermediate CAs, none of the chain revoked by a CRL
 * of crl_file (NULL: no revocation checked; else every CA of a chain needs its CRL), refusing
 * the handshake without a good one when mode is MTLS_ON; sets its session ID context (bind:
 * mtls_bind's). MTLS_OFF changes nothing. 0, or -1 with err filled (a file unreadable, the CA
 * file holding no certificate, the CRL file no CRL or one no CA of ca_file issued). */
int mtls_apply(void *ctx, enum mtls_mode mode, const char *ca_file, const char *crl_file,
               int depth, const unsigned char bind[MTLS_BIND_LEN], struct tls_error *err);

/* Each CA of a context's tls_client_ca that no CRL of its tls_client_crl was issued by, its
 * subject (name_text's form) to fn: every client chain through it is refused ("unable to get
 * certificate CRL", CRL_CHECK_ALL), a mistake to say at load. None without a CRL file. */
void mtls_crl_gaps(void *ctx, void (*fn)(void *arg, const char *subject), void *arg);

/* After a failed handshake: true when the client certificate is why (its absence under `on`, or
 * its verification), with the reason for the metric and a line for the error log into buf
 * ("no certificate sent ...", "unknown CA: ...", "expired on DATE: SUBJECT ..."). ssl_err: the
 * connection's first OpenSSL error. */
bool mtls_refused(struct ssl_st *ssl, unsigned long ssl_err, enum cert_refusal *reason,
                  char *buf, size_t size);

/* After a full handshake under `optional` whose client certificate failed verification (served
 * all the same): true, with a line for the error log into buf, of the words mtls_refused uses. */
bool mtls_failed(struct ssl_st *ssl, char *buf, size_t size);

/* What a served connection's client proved, computed once after its handshake: the fields the
 * origin gets and the subject the access log says. */
struct mtls_peer {
    char *verify;                 /* Client-Cert-Verify: "SUCCESS", "NONE", "FAILED:reason" */
    char *subject;                /* the verified leaf's subject (RFC 2253), else NULL */
    char *cert;                   /* Client-Cert (RFC 9440): ":base64:", verified only */
    char *chain;                  /* Client-Cert-Chain: the verified chain above the leaf, as a
                                     list of byte sequences; NULL: verified only, none kept (a
                                     resumed session has no chain) */
};

/* The peer of a connection whose handshake is done; NULL when its context asks for no
 * certificate (or out of memory: the origin then gets no field, as if none were asked). */
struct mtls_peer *mtls_peer_new(struct ssl_st *ssl);

/* NULL is fine. */
void mtls_peer_free(struct mtls_peer *p);

#endif
