/*
 * certexpiry.c — the validity periods of loaded certificates, judged and put in words. See
 * certexpiry.h. The certificates are read back from the SSL_CTX that was built, not from the
 * file again: what is judged is what is served, even when the file changes meanwhile.
 */
#include "portico/certexpiry.h"

#include <inttypes.h>
#include <openssl/asn1.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <time.h>

#define DAY 86400

static const char *const validity_words[CERT_VALIDITY_COUNT] = {
#define X(id, words) [id] = words,
    CERT_VALIDITY_LIST(X)
#undef X
};

enum cert_validity certexpiry_judge(const struct cert_dates *d, int64_t now)
{
    if (now < d->not_before)
        return CERT_NOT_YET_VALID;
    if (now > d->not_after) /* notAfter is the last valid second (RFC 5280 4.1.2.5) */
        return CERT_EXPIRED;
    if (d->not_after - now <= (int64_t)CERTEXPIRY_WARN_DAYS * DAY)
        return CERT_EXPIRING;
    return CERT_VALID;
}

void certexpiry_format_time(int64_t t, char *buf, size_t size)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if ((int64_t)tt != t || !gmtime_r(&tt, &tm) ||
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, size, "?");
}

void certexpiry_format_span(int64_t seconds, char *buf, size_t size)
{
    static const struct {
        int64_t seconds;
        const char *unit;
    } units[] = {{DAY, "day"}, {3600, "hour"}, {60, "minute"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        int64_t n = seconds / units[i].seconds;
        if (n >= 1) {
            snprintf(buf, size, "%" PRId64 " %s%s", n, units[i].unit, n == 1 ? "" : "s");
            return;
        }
    }
    snprintf(buf, size, "less than a minute");
}

void certexpiry_describe(enum cert_validity v, const struct cert_dates *d, int64_t now, char *buf,
                         size_t size)
{
    char when[48], span[48];
    switch (v) {
    case CERT_EXPIRED:
        certexpiry_format_time(d->not_after, when, sizeof(when));
        certexpiry_format_span(now - d->not_after, span, sizeof(span));
        snprintf(buf, size, "expired on %s (%s ago)", when, span);
        return;
    case CERT_EXPIRING:
        certexpiry_format_time(d->not_after, when, sizeof(when));
        certexpiry_format_span(d->not_after - now, span, sizeof(span));
        snprintf(buf, size, "expires in %s, on %s", span, when);
        return;
    case CERT_NOT_YET_VALID:
        certexpiry_format_time(d->not_before, when, sizeof(when));
        certexpiry_format_span(d->not_before - now, span, sizeof(span));
        snprintf(buf, size, "is %s: valid from %s (in %s)", validity_words[v], when, span);
        return;
    case CERT_VALID:
    case CERT_VALIDITY_COUNT:
        break;
    }
    snprintf(buf, size, "%s", "");
}

/* An ASN1_TIME as Unix time. 0, or -1 when it cannot be read. */
static int asn1_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* The validity period of x. 0, or -1 when a date cannot be read. */
static int dates_of(const X509 *x, struct cert_dates *d)
{
    return asn1_unix(X509_get0_notBefore(x), &d->not_before) == 0 &&
                   asn1_unix(X509_get0_notAfter(x), &d->not_after) == 0
               ? 0
               : -1;
}

/* "/CN=Portico Test CA" (OpenSSL's one-line form; control bytes are escaped by whoever prints
 * it, as every text from a file is). */
static void subject_of(const X509 *x, char *buf, int size)
{
    if (!X509_NAME_oneline(X509_get_subject_name(x), buf, size))
        snprintf(buf, (size_t)size, "?");
}

int certexpiry_check_own(void *ctx, int64_t now, int64_t *not_after, certexpiry_warn_fn *warn,
                         void *arg)
{
    const X509 *leaf = SSL_CTX_get0_certificate(ctx);
    struct cert_dates leaf_dates;
    char text[512], why[256], subject[200];
    if (!leaf || dates_of(leaf, &leaf_dates) != 0)
        return -1;
    *not_after = leaf_dates.not_after;
    enum cert_validity v = certexpiry_judge(&leaf_dates, now);
    if (v != CERT_VALID) {
        certexpiry_describe(v, &leaf_dates, now, why, sizeof(why));
        snprintf(text, sizeof(text), "the certificate %s", why);
        warn(arg, text);
    }
    /* A chain certificate that goes before the leaf breaks the chain clients are sent: said by
     * its place in the file (2 is the one after the leaf). */
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    for (int i = 0; chain && i < sk_X509_num(chain); i++) {
        const X509 *x = sk_X509_value(chain, i);
        struct cert_dates d;
        if (dates_of(x, &d) != 0 || d.not_after >= leaf_dates.not_after)
            continue;
        enum cert_validity cv = certexpiry_judge(&d, now);
        if (cv == CERT_VALID)
            continue;
        certexpiry_describe(cv, &d, now, why, sizeof(why));
        subject_of(x, subject, sizeof(subject));
        snprintf(text, sizeof(text), "certificate %d of the chain (%s) %s, before the leaf", i + 2,
                 subject, why);
        warn(arg, text);
    }
    return 0;
}

void certexpiry_check_trusted(void *ctx, int64_t now, int max, certexpiry_warn_fn *warn,
                              void *arg)
{
    STACK_OF(X509) *all = X509_STORE_get1_all_certs(SSL_CTX_get_cert_store(ctx));
    char text[512], why[256], subject[200];
    int told = 0, untold = 0;
    for (int i = 0; all && i < sk_X509_num(all); i++) {
        const X509 *x = sk_X509_value(all, i);
        struct cert_dates d;
        enum cert_validity v;
        if (dates_of(x, &d) != 0 || (v = certexpiry_judge(&d, now)) == CERT_VALID)
            continue;
        if (told == max) {
            untold++;
            continue;
        }
        certexpiry_describe(v, &d, now, why, sizeof(why));
        subject_of(x, subject, sizeof(subject));
        snprintf(text, sizeof(text), "the CA certificate %s %s", subject, why);
        warn(arg, text);
        told++;
    }
    if (untold) {
        snprintf(text, sizeof(text), "%d more CA certificate%s expired, expiring or not yet valid",
                 untold, untold == 1 ? "" : "s");
        warn(arg, text);
    }
    sk_X509_pop_free(all, X509_free);
}

void certexpiry_check_crls(void *ctx, int64_t now, certexpiry_warn_fn *warn, void *arg)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_OBJECT) *objs = store ? X509_STORE_get0_objects(store) : NULL;
    char text[512], when[48], span[48], issuer[200];
    for (int i = 0; objs && i < sk_X509_OBJECT_num(objs); i++) {
        const X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        int64_t last, next;
        if (!crl || asn1_unix(X509_CRL_get0_lastUpdate(crl), &last) != 0)
            continue;
        if (!X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof(issuer)))
            snprintf(issuer, sizeof(issuer), "?");
        if (now < last) {
            certexpiry_format_time(last, when, sizeof(when));
            snprintf(text, sizeof(text), "the CRL of %s is not yet valid: issued for %s; until "
                                         "then every client certificate of that CA is refused",
                     issuer, when);
            warn(arg, text);
        } else if (asn1_unix(X509_CRL_get0_nextUpdate(crl), &next) == 0 && now > next) {
            certexpiry_format_time(next, when, sizeof(when));
            certexpiry_format_span(now - next, span, sizeof(span));
            snprintf(text, sizeof(text), "the CRL of %s expired on %s (%s ago, its nextUpdate): "
                                         "every client certificate of that CA is refused (CRL "
                                         "has expired) until a newer CRL is loaded",
                     issuer, when, span);
            warn(arg, text);
        }
    }
}
