/*
 * ocsp.c — staples from files. See ocsp.h. A staple is kept with the leaf certificate it is
 * for (ex_data of its X509), not with a context: several certificates of one name (one per key
 * type) share a connection until OpenSSL picks one, and what it picked is SSL_get_certificate
 * in the status callback, which OpenSSL runs after that choice (tls_handle_status_request).
 * A reload loads the certificate files again, so each generation's leaves carry its staples.
 */
#include "portico/ocsp.h"

#include <errno.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OCSP_LEEWAY 300 /* seconds of clock skew a date may be off by, as OpenSSL's s_client */
#define OCSP_FILE_MAX (1 << 20) /* a response is a few KB; a file larger is not one */

/* One leaf's staple: the response's bytes as sent, and until when it may be. */
struct staple {
    unsigned char *der;
    size_t len;
    int64_t valid_until;                  /* ocsp_staple_info's */
};

static int staple_index = -1;
static pthread_once_t staple_once = PTHREAD_ONCE_INIT;

static void staple_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct staple *s = ptr;
    if (s) {
        free(s->der);
        free(s);
    }
}

static void staple_index_init(void)
{
    staple_index = X509_get_ex_new_index(0, NULL, NULL, NULL, staple_ex_free);
}

/* The whole file into *der; 0, or -1 with err. */
static int read_file(const char *file, unsigned char **der, size_t *len, char *err, size_t size)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, size, "%s", strerror(errno));
        return -1;
    }
    unsigned char *buf = malloc(OCSP_FILE_MAX);
    size_t n = buf ? fread(buf, 1, OCSP_FILE_MAX, f) : 0;
    bool error = ferror(f), more = !feof(f);
    fclose(f);
    if (!buf || error || more || n == 0) {
        snprintf(err, size, "%s", !buf ? "out of memory" : error ? "cannot be read"
                                  : more ? "is too large to be an OCSP response"
                                         : "is empty: no OCSP response");
        free(buf);
        return -1;
    }
    *der = buf, *len = n;
    return 0;
}

static int64_t unix_time(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* The leaf's issuer, from the certificates its chain file gave beside it. */
static X509 *issuer_of(SSL_CTX *ctx, X509 *leaf)
{
    STACK_OF(X509) *chain = NULL;
    if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1)
        return NULL;
    for (int i = 0; chain && i < sk_X509_num(chain); i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
            return sk_X509_value(chain, i);
    return NULL;
}

/* The single response of bs for leaf: its CertID, under the hash the responder used, names the
 * leaf's serial and its issuer's name and key. -1: none. */
static int single_for(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer)
{
    for (int i = 0; i < OCSP_resp_count(bs); i++) {
        const OCSP_CERTID *id = OCSP_SINGLERESP_get0_id(OCSP_resp_get0(bs, i));
        ASN1_OBJECT *md_oid = NULL;
        if (OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, (OCSP_CERTID *)(uintptr_t)id) != 1)
            continue;
        const EVP_MD *md = EVP_get_digestbyobj(md_oid);
        OCSP_CERTID *mine = md ? OCSP_cert_to_id(md, leaf, issuer) : NULL;
        bool same = mine && OCSP_id_cmp(mine, id) == 0;
        OCSP_CERTID_free(mine);
        if (same)
            return i;
    }
    return -1;
}

static const enum ocsp_cert_status statuses[] = {
    [V_OCSP_CERTSTATUS_GOOD] = OCSP_CERT_GOOD,
    [V_OCSP_CERTSTATUS_REVOKED] = OCSP_CERT_REVOKED,
    [V_OCSP_CERTSTATUS_UNKNOWN] = OCSP_CERT_UNKNOWN,
};

/* The response in der checked against ctx's leaf into info; 0, or -1 with err. */
static int check(SSL_CTX *ctx, X509 *leaf, const unsigned char *der, size_t len, int64_t now,
                 struct ocsp_staple_info *info, char *err, size_t size)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    OCSP_BASICRESP *bs = NULL;
    int rc = -1;
    if (!resp || p != der + len) {
        snprintf(err, size, "is not an OCSP response in DER form (openssl ocsp -respout writes "
                            "one)");
        goto done;
    }
    int status = OCSP_response_status(resp);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, size, "is an unsuccessful OCSP response (%s): it says nothing of the "
                            "certificate", OCSP_response_status_str(status));
        goto done;
    }
    if (!(bs = OCSP_response_get1_basic(resp))) {
        snprintf(err, size, "is not a basic OCSP response");
        goto done;
    }
    X509 *issuer = issuer_of(ctx, leaf);
    if (!issuer) {
        snprintf(err, size, "cannot be checked: the tls_cert file holds no certificate of the "
                            "issuer after the leaf (a staple needs the chain)");
        goto done;
    }
    int i = single_for(bs, leaf, issuer);
    if (i < 0) {
        snprintf(err, size, "is the response for another certificate: none of its %d answers "
                            "names this tls_cert's serial and issuer", OCSP_resp_count(bs));
        goto done;
    }
    int reason = 0;
    ASN1_GENERALIZEDTIME *revtime = NULL, *thisupd = NULL, *nextupd = NULL;
    int cs = OCSP_single_get0_status(OCSP_resp_get0(bs, i), &reason, &revtime, &thisupd,
                                     &nextupd);
    if (cs < 0 || cs > V_OCSP_CERTSTATUS_UNKNOWN || !thisupd) {
        snprintf(err, size, "is a malformed OCSP response (no status or thisUpdate)");
        goto done;
    }
    *info = (struct ocsp_staple_info){
        .status = statuses[cs],
        .this_update = unix_time(thisupd),
        .next_update = unix_time(nextupd),
        .revoked_at = unix_time(revtime),
    };
    /* no nextUpdate is not "current forever": clients take it for a day (ocsp.h) */
    info->valid_until = nextupd ? info->next_update : info->this_update + OCSP_NO_NEXT_UPDATE;
    info->stapled = info->this_update <= now + OCSP_LEEWAY &&
                    info->valid_until >= now - OCSP_LEEWAY;
    rc = 0;
done:
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    return rc;
}

int ocsp_staple_load(void *ctx, const char *file, int64_t now, struct ocsp_staple_info *info,
                     char *err, size_t size)
{
    pthread_once(&staple_once, staple_index_init);
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    unsigned char *der = NULL;
    size_t len = 0;
    if (staple_index < 0 || !leaf) {
        snprintf(err, size, "no certificate to staple it to");
        return -1;
    }
    if (read_file(file, &der, &len, err, size) != 0)
        return -1;
    if (check(ctx, leaf, der, len, now, info, err, size) != 0) {
        free(der);
        return -1;
    }
    struct staple *s = info->stapled ? malloc(sizeof(*s)) : NULL;
    if (s) {
        *s = (struct staple){der, len, info->valid_until};
        der = NULL;
        staple_ex_free(NULL, X509_get_ex_data(leaf, staple_index), NULL, 0, 0, NULL);
        if (X509_set_ex_data(leaf, staple_index, s) != 1)
            staple_ex_free(NULL, s, NULL, 0, 0, NULL);
    } else if (info->stapled) {
        snprintf(err, size, "out of memory");
        return -1;
    }
    free(der);
    return 0;
}

/* OpenSSL's status callback (a server's): the chosen certificate's staple, a copy OpenSSL
 * frees; none (no status sent) when it has none or it went out of date since the load. */
static int send_staple(SSL *ssl, void *arg)
{
    (void)arg;
    X509 *x = SSL_get_certificate(ssl);
    const struct staple *s = x && staple_index >= 0 ? X509_get_ex_data(x, staple_index) : NULL;
    if (!s || s->valid_until < (int64_t)time(NULL) - OCSP_LEEWAY)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_malloc(s->len);
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, s->der, s->len);
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)s->len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

void ocsp_serve(void *ctx)
{
    SSL_CTX_set_tlsext_status_cb((SSL_CTX *)ctx, send_staple);
}
