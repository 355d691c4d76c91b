/*
 * certexpiry.h — when the certificates Portico loaded stop (or start) being valid, said at load
 * time. An expired certificate is still loaded, as nginx and HAProxy load one: refusing it would
 * leave a restart serving nothing at all. The config check reports what it finds here as
 * warnings at the key's line, and the metrics show each served or presented certificate's
 * notAfter (portico_tls_certificate_expiry_seconds).
 */
#ifndef PORTICO_CERTEXPIRY_H
#define PORTICO_CERTEXPIRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A certificate that expires within this many days is warned about. */
#define CERTEXPIRY_WARN_DAYS 14

/* What a certificate's dates mean now: id and the words of its warning. */
#define CERT_VALIDITY_LIST(X)                                                                      \
    X(CERT_VALID, "valid")                                                                         \
    X(CERT_EXPIRING, "expires soon")       /* within CERTEXPIRY_WARN_DAYS */                       \
    X(CERT_EXPIRED, "expired")                                                                     \
    X(CERT_NOT_YET_VALID, "not yet valid")

enum cert_validity {
#define X(id, words) id,
    CERT_VALIDITY_LIST(X)
#undef X
    CERT_VALIDITY_COUNT
};

/* A certificate's validity period in Unix time (seconds, UTC). */
struct cert_dates {
    int64_t not_before;
    int64_t not_after;
};

/* What the dates mean at `now`. */
enum cert_validity certexpiry_judge(const struct cert_dates *d, int64_t now);

/* "2026-11-30 12:00:00 UTC" into buf (at least 24 bytes; "?" when t is out of range). */
void certexpiry_format_time(int64_t t, char *buf, size_t size);

/* A positive span of seconds in words, rounded down to its largest unit: "6 days", "1 day",
 * "5 hours", "1 minute", "less than a minute". */
void certexpiry_format_span(int64_t seconds, char *buf, size_t size);

/* The warning for dates judged v at now, to follow "the certificate": "expired on ... (6 days
 * ago)", "expires in 6 days, on ...", "is not yet valid: valid from ... (in 1 day)"; "" for
 * CERT_VALID. */
void certexpiry_describe(enum cert_validity v, const struct cert_dates *d, int64_t now, char *buf,
                         size_t size);

/* Called with the text of each warning: "the certificate expired on ..." and the like. */
typedef void certexpiry_warn_fn(void *arg, const char *text);

/* The certificates an SSL_CTX serves or presents (tls_server_ctx, or tls_client_ctx with a
 * client certificate): the leaf decides, and *not_after receives its notAfter; a chain
 * certificate that expires before the leaf and is expired, expiring or not yet valid is warned
 * about too, by its position and subject. 0, or -1 when ctx holds no certificate. */
int certexpiry_check_own(void *ctx, int64_t now, int64_t *not_after, certexpiry_warn_fn *warn,
                         void *arg);

/* The trusted certificates of a client SSL_CTX loaded from a CA file: each one expired or not
 * yet valid (those are never used to verify) or expiring is warned about by its subject, at
 * most `max` of them, then one line for the rest. */
void certexpiry_check_trusted(void *ctx, int64_t now, int max, certexpiry_warn_fn *warn,
                              void *arg);

/* The CRLs of a server SSL_CTX's store (tls_client_crl): each one past its nextUpdate, under
 * which OpenSSL refuses every client certificate it covers ("CRL has expired"), or not yet
 * valid (lastUpdate to come: "CRL is not yet valid"), is warned about by its issuer. */
void certexpiry_check_crls(void *ctx, int64_t now, certexpiry_warn_fn *warn, void *arg);

#endif
