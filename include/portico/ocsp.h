/*
 * ocsp.h — OCSP stapling of served certificates from files (tls_ocsp_response): a DER OCSP
 * response, as `openssl ocsp -respout` writes it, read and checked at load and sent to clients
 * that ask for it (status_request), for the certificate OpenSSL chose to send. Portico fetches
 * nothing itself: an operator refreshes the files and reloads.
 */
#ifndef PORTICO_OCSP_H
#define PORTICO_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a response says of its certificate (RFC 6960 4.2.1's CertStatus). */
enum ocsp_cert_status {
    OCSP_CERT_GOOD,
    OCSP_CERT_REVOKED,
    OCSP_CERT_UNKNOWN,
};

/* A response read by ocsp_staple_load. */
struct ocsp_staple_info {
    enum ocsp_cert_status status;
    int64_t this_update;
    int64_t next_update;                  /* 0: the response gives none */
    int64_t valid_until;                  /* when clients stop taking it: nextUpdate, or a day
                                             after thisUpdate without one (OCSP_NO_NEXT_UPDATE) */
    int64_t revoked_at;                   /* OCSP_CERT_REVOKED's revocationTime */
    bool stapled;                         /* false: out of its dates, not sent */
};

/* How long a response without nextUpdate is current, counted from its thisUpdate: Firefox
 * (mozilla::pkix, as NSS) takes such a response for a day, then refuses it as old. */
#define OCSP_NO_NEXT_UPDATE 86400

/* Reads the OCSP response `file` for the certificate server context ctx serves
 * (tls_server_ctx's): a successful response, signed or not by anyone (clients check that),
 * whose CertID names the leaf and its issuer, found in the leaf's chain. A response current at
 * now (thisUpdate not ahead, valid_until not past, 5 minutes of leeway) is kept with the leaf, for
 * ocsp_serve. 0 with info filled; -1 with why (to follow "FILE: ") in err. */
int ocsp_staple_load(void *ctx, const char *file, int64_t now, struct ocsp_staple_info *info,
                     char *err, size_t size);

/* The status callback on the context connections are made from: a client that sends
 * status_request gets the staple of the certificate chosen for it, while it is current. */
void ocsp_serve(void *ctx);

#endif
