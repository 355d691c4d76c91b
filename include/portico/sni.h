/*
 * sni.h — several certificates on one TLS listener, chosen by the name a ClientHello asks for
 * (server_name, RFC 6066 3). The names each certificate serves are read from the certificate:
 * its subjectAltName DNS names, or its subject CN when it has no DNS name at all. A wildcard
 * (`*.example.test`) stands for exactly one label; an exact name wins over a wildcard; the first
 * certificate is the default, for a client that names none or a name no certificate serves
 * (or, with strict SNI, such a handshake is refused with the unrecognized_name alert).
 *
 * Certificates whose names are the same set and whose keys are of different types (RSA, ECDSA,
 * Ed25519 ...: one per slot OpenSSL keeps) form one entry, as nginx's two ssl_certificate lines
 * or HAProxy's .rsa/.ecdsa bundles: the name chooses the entry, and OpenSSL chooses within it by
 * what the client offers (its signature_algorithms; over TLS 1.2 its cipher suites too). Two of
 * one key type for the same names, or sets of names that overlap and differ, conflict.
 *
 * The choice is made in OpenSSL's ClientHello callback, on the one server context of the
 * configuration: only the certificates, their keys and chains, and the session ID context
 * change per connection, so ALPN, the ticket keys and every option stay that context's.
 */
#ifndef PORTICO_SNI_H
#define PORTICO_SNI_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/metrics.h"

struct ssl_st;

#define SNI_NAME_MAX 253 /* bytes of a DNS name, without a final dot */

/* Called with each name a certificate serves, lowercase ("*.example.test" for a wildcard). */
typedef void sni_name_fn(void *arg, const char *name);

/* The names the certificate of a server context serves (see above); names that no ClientHello
 * can match (a partial wildcard "ap*.example.test", an IP address, a name with a blank or a
 * byte outside letters, digits, '-', '_' and '.') are left out. Returns how many were given to
 * fn, and in *from_cn whether they came from the CN (the certificate has no DNS name). */
int sni_cert_names(void *ctx, sni_name_fn *fn, void *arg, bool *from_cn);

/* The key type of a server context's certificate (the slot OpenSSL keeps it in), and in words
 * into desc ("rsa 2048", "ecdsa P-256", "ed25519"; NULL: not wanted). */
enum tls_key_type sni_key_type(void *ctx, char *desc, size_t size);

/* Told of a conflict (indexes into the contexts of sni_attach): name claimed by first and by
 * second, which names a set of its own (a name is one entry's); or, same_key, second names the
 * same set as first with a key of the same type (name: the set's first), which OpenSSL could
 * not hold beside it. */
typedef void sni_conflict_fn(void *arg, const char *name, int first, int second, bool same_key);

/* Makes ctxs[0] (a server context) choose among ctxs[0..n) by SNI, and by key type among those
 * of one entry (above); with strict, a ClientHello without a name of theirs is refused (alert
 * unrecognized_name). ctxs[0] then owns the others (it frees them when it is freed), and holds
 * the certificates of its entry; on failure nothing is taken and the caller frees them all.
 * Each conflict is told (when not NULL) and fails the call. entry (NULL: not wanted) gets for
 * each certificate the index of the first of its entry. A session resumes under the entry it
 * was made with only (the digests of all its certificates: a session made with one key type
 * resumes where the other would be sent, which proves the same names), and under bind
 * (mtls_bind's: the client certificate settings; NULL: none asked) only.
 * 0, or -1 (a conflict, or out of memory). */
int sni_attach(void **ctxs, int n, bool strict, const unsigned char *bind,
               sni_conflict_fn *conflict, void *arg, int *entry);

/* After a handshake: the certificate it sent (index into ctxs of sni_attach; 0 on a context
 * without sni_attach), or -1 when it sent none (a resumption). */
int sni_served(const struct ssl_st *ssl);

/* The certificate (index into ctxs of sni_attach) a ClientHello naming `name` gets from a
 * context sni_attach made: an exact name, else a wildcard of its parent, else 0 (the default);
 * -1 when strict refuses it. A context without sni_attach: 0. Compared without case and
 * without one final dot. */
int sni_choose(void *ctx, const char *name);

/* Room for sni_refused's text: the name (each byte of it as \xNN at worst) and the words. */
#define SNI_REFUSAL_MAX (4 * SNI_NAME_MAX + 96)

/* After a failed handshake: true when strict SNI refused it, with why into buf ("tls_strict_sni:
 * no certificate serves NAME ..."), for the log line OpenSSL's "callback failed" would be. NAME
 * is the client's bytes with each one outside visible ASCII, and the backslash, as \xNN. */
bool sni_refused(struct ssl_st *ssl, char *buf, size_t size);

#endif
