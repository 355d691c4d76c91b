/*
 * mtls.c — client certificates on TLS listeners. See mtls.h.
 */
#include "portico/mtls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/tls.h"

/* What a context asks (ex_data of the SSL_CTX): the mode, read by the verify callback and by
 * mtls_peer_new on connections made from it, which may outlive a reload's new settings. */
struct mtls_settings {
    enum mtls_mode mode;
};

/* The first certificate a client's chain failed verification at (ex_data of its SSL), for the
 * log line: the verify result alone does not say which certificate, nor its dates. */
struct mtls_failure {
    X509 *cert;                   /* a reference */
    int error;                    /* X509_V_ERR_... */
    int depth;                    /* 0: the client's own certificate */
};

static int settings_index = -1;
static int failure_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void settings_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

static void failure_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct mtls_failure *f = ptr;
    if (f) {
        X509_free(f->cert);
        free(f);
    }
}

static void index_init(void)
{
    settings_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, settings_free);
    failure_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, failure_free);
}

static const struct mtls_settings *settings_of(const SSL *ssl)
{
    return settings_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), settings_index);
}

static const char *const mode_names[] = {
#define X(id, name) [id] = name,
    MTLS_MODE_LIST(X)
#undef X
};

const char *mtls_mode_name(enum mtls_mode mode)
{
    return (unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[mode] : "?";
}

/* ---- sessions ---- */

/* The bytes of path into md. 0, or -1 (errno when it cannot be read). */
static int digest_file(EVP_MD_CTX *md, const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n;
    int rc = f ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (EVP_DigestUpdate(md, buf, n) != 1)
            rc = -1;
    if (f && ferror(f))
        rc = -1;
    if (f)
        fclose(f);
    return rc;
}

int mtls_bind(enum mtls_mode mode, int depth, const char *ca_file, const char *crl_file,
              unsigned char bind[MTLS_BIND_LEN])
{
    int rc = -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char head[3 * sizeof(int)];
    int crl = crl_file != NULL; /* no CRL and an empty one differ */
    memcpy(head, &mode, sizeof(int));
    memcpy(head + sizeof(int), &depth, sizeof(int));
    memcpy(head + 2 * sizeof(int), &crl, sizeof(int));
    unsigned len = 0;
    if (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(md, head, sizeof(head)) == 1 && digest_file(md, ca_file) == 0 &&
        (!crl_file || digest_file(md, crl_file) == 0) &&
        EVP_DigestFinal_ex(md, bind, &len) == 1 && len == MTLS_BIND_LEN)
        rc = 0;
    EVP_MD_CTX_free(md);
    return rc;
}

int mtls_session_context(X509 *leaf, const unsigned char *bind, unsigned char sid[MTLS_SID_LEN])
{
    unsigned char both[2 * MTLS_SID_LEN];
    unsigned len = 0;
    if (X509_digest(leaf, EVP_sha256(), both, &len) != 1 || len != MTLS_SID_LEN)
        return -1;
    if (!bind) {
        memcpy(sid, both, MTLS_SID_LEN);
        return 0;
    }
    memcpy(both + MTLS_SID_LEN, bind, MTLS_BIND_LEN);
    return EVP_Digest(both, sizeof(both), sid, &len, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

/* ---- verification ---- */

/* Keeps the first failure (OpenSSL, under `on`, stops there and sends its alert); under
 * `optional` the handshake goes on whatever was found, and SSL_get_verify_result (kept in the
 * session, so a resumption says it again) tells the origin. Runs per certificate of a full
 * handshake only. */
static int client_verify(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct mtls_settings *s = ssl ? settings_of(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    const struct mtls_failure *first = ssl ? SSL_get_ex_data(ssl, failure_index) : NULL;
    if (!ok && first) {
        /* optional goes on past a failure, to others that follow from it ("unable to verify
         * the first certificate" after "unable to get local issuer certificate"): the result
         * kept is the first, which says what was wrong */
        X509_STORE_CTX_set_error(store, first->error);
    } else if (!ok && ssl && cert) {
        struct mtls_failure *f = malloc(sizeof(*f));
        if (f) {
            *f = (struct mtls_failure){.cert = cert, .error = X509_STORE_CTX_get_error(store),
                                       .depth = X509_STORE_CTX_get_error_depth(store)};
            X509_up_ref(cert);
            if (SSL_set_ex_data(ssl, failure_index, f) != 1)
                failure_free(NULL, f, NULL, 0, 0, NULL);
        }
    }
    return s && s->mode == MTLS_OPTIONAL ? 1 : ok;
}

/* The CA of the store that issued crl and whose key signed it; NULL for none. */
static X509 *crl_issuer(STACK_OF(X509) *cas, X509_CRL *crl)
{
    for (int i = 0; i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        EVP_PKEY *key = X509_get0_pubkey(ca);
        if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 && key &&
            X509_CRL_verify(crl, key) == 1)
            return ca;
    }
    ERR_clear_error();
    return NULL;
}

static void name_text(const X509_NAME *name, char *buf, size_t size);

/* The CRLs of crl_file into ctx's store, each issued and signed by one of its CAs (a CRL of
 * another CA would never be consulted: a mistake said at load, not a client refused later), and
 * every certificate of a client's chain checked against them (nginx's ssl_crl: CRL_CHECK and
 * CRL_CHECK_ALL, so each CA of the chain needs its CRL). 0, or -1 with err filled. */
static int load_crls(SSL_CTX *ctx, const char *crl_file, struct tls_error *err)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509) *cas = X509_STORE_get1_all_certs(store);
    BIO *in = BIO_new_file(crl_file, "r");
    X509_CRL *crl = NULL;
    int n = 0, rc = -1;
    err->file = crl_file;
    ERR_clear_error(); /* the queue's last error below is this file's */
    if (!cas || !in) {
        tls_last_error(err->text, sizeof(err->text));
        goto done;
    }
    while ((crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL))) {
        n++;
        if (!crl_issuer(cas, crl)) {
            char issuer[160];
            name_text(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
            snprintf(err->text, sizeof(err->text),
                     "CRL %d (issuer %s): its issuer is no CA of tls_client_ca (or did not sign "
                     "it)", n, issuer);
            goto done;
        }
        if (X509_STORE_add_crl(store, crl) != 1) {
            tls_last_error(err->text, sizeof(err->text));
            goto done;
        }
        X509_CRL_free(crl);
        crl = NULL;
    }
    /* the end of the file reads as "no start line"; anything else is a CRL that is broken */
    unsigned long e = ERR_peek_last_error();
    bool end = !e || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
    if (n == 0 && end)
        snprintf(err->text, sizeof(err->text),
                 "holds no CRL in PEM form (-----BEGIN X509 CRL-----)");
    else if (!end)
        tls_last_error(err->text, sizeof(err->text));
    else if (X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL) == 1)
        rc = 0;
done:
    X509_CRL_free(crl);
    BIO_free(in);
    sk_X509_pop_free(cas, X509_free);
    ERR_clear_error();
    return rc;
}

int mtls_apply(void *ctx, enum mtls_mode mode, const char *ca_file, const char *crl_file,
               int depth, const unsigned char bind[MTLS_BIND_LEN], struct tls_error *err)
{
    pthread_once(&index_once, index_init);
    if (mode == MTLS_OFF)
        return 0;
    struct mtls_settings *s = malloc(sizeof(*s));
    unsigned char sid[MTLS_SID_LEN];
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    err->file = NULL;
    if (!s || settings_index < 0 || failure_index < 0 || !leaf) {
        free(s);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return -1;
    }
    s->mode = mode;
    if (SSL_CTX_set_ex_data(ctx, settings_index, s) != 1) {
        free(s);
        snprintf(err->text, sizeof(err->text), "out of memory");
        return -1;
    }
    /* the CA list the CertificateRequest names: clients holding several certificates (a
     * browser) offer the one these issued */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (!names || SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        err->file = ca_file;
        /* a key, an empty file or a DER one: OpenSSL says "no start line", which says nothing */
        unsigned long e = ERR_peek_error();
        bool none = !e || (ERR_GET_LIB(e) == ERR_LIB_PEM &&
                           ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
        if (none)
            snprintf(err->text, sizeof(err->text),
                     "holds no CA certificate in PEM form (-----BEGIN CERTIFICATE-----)");
        else
            tls_last_error(err->text, sizeof(err->text));
        ERR_clear_error();
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    if (crl_file && load_crls(ctx, crl_file, err) != 0)
        return -1;
    SSL_CTX_set_verify_depth(ctx, depth);
    int verify = SSL_VERIFY_PEER | (mode == MTLS_ON ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(ctx, verify, client_verify);
    if (mtls_session_context(leaf, bind, sid) != 0 ||
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid)) != 1) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return -1;
    }
    return 0;
}

/* The length of the UTF-8 character at s (n bytes) that may be written as it is: 0 for a C0 or C1
 * control, DEL or a byte of no valid sequence (RFC 3629). */
static size_t printable_utf8(const unsigned char *s, size_t n)
{
    if (s[0] >= 0x20 && s[0] < 0x7f)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || (s[0] == 0xc2 && s[1] < 0xa0) || s[0] > 0xf4)
        return 0;                       /* C1 controls are U+0080..U+009F: C2 80..C2 9F */
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((len == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (len == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (len == 4 && s[0] == 0xf0 && s[1] < 0x90) || (len == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0;                       /* overlong, surrogate, past U+10FFFF */
    return len;
}

/* A name as RFC 2253 writes it ("CN=client,O=Example") into buf, for the error log and the
 * access log: UTF-8 kept, every control (C0, DEL, C1) and any byte of no UTF-8 character written
 * \xNN as the log writes a client's bytes (sni.c), so that no subject forges a line or drives a
 * terminal. OpenSSL's own escape of controls (\0A) is off: one form for the whole log. */
static void name_text(const X509_NAME *name, char *buf, size_t size)
{
    char raw[512];
    BIO *bio = BIO_new(BIO_s_mem());
    unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB & ~ASN1_STRFLGS_ESC_CTRL;
    int n = bio ? X509_NAME_print_ex(bio, name, 0, flags) : -1;
    int got = n >= 0 ? BIO_read(bio, raw, (int)sizeof(raw)) : -1;
    BIO_free(bio);
    size_t at = 0;
    for (size_t i = 0; got > 0 && i < (size_t)got;) {
        const unsigned char *s = (const unsigned char *)raw + i;
        size_t len = printable_utf8(s, (size_t)got - i);
        if (len ? at + len >= size : at + 4 >= size)
            break;                      /* cut before a character, never within one */
        if (len)
            memcpy(buf + at, s, len);
        else
            snprintf(buf + at, 5, "\\x%02x", s[0]);
        at += len ? len : 4;
        i += len ? len : 1;
    }
    buf[at] = '\0';
}

void mtls_crl_gaps(void *ctx, void (*fn)(void *arg, const char *subject), void *arg)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    if (!store ||
        !(X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(store)) & X509_V_FLAG_CRL_CHECK_ALL))
        return;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; objs && i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        bool covered = ca && X509_check_ca(ca) == 0; /* a leaf trusted as it is issues none */
        for (int j = 0; ca && !covered && j < sk_X509_OBJECT_num(objs); j++) {
            const X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, j));
            covered = crl && X509_NAME_cmp(X509_CRL_get_issuer(crl),
                                           X509_get_subject_name(ca)) == 0;
        }
        char subject[200];
        if (ca && !covered) {
            name_text(X509_get_subject_name(ca), subject, sizeof(subject));
            fn(arg, subject);
        }
    }
}

/* ---- refusals ---- */

/* An ASN1 time as certexpiry says dates: "2026-12-05 06:07:00 UTC". */
static void format_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, size, "?");
}

/* The metric's reason of a verify error: a closed set, the rest "invalid". */
static enum cert_refusal refusal_of(int error)
{
    switch (error) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return CERT_REFUSED_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return CERT_REFUSED_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return CERT_REFUSED_NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED:
        return CERT_REFUSED_REVOKED;
    default:
        return CERT_REFUSED_INVALID;
    }
}

/* What was wrong with the first certificate that failed, which it is and who issued it:
 * "expired on DATE: SUBJECT, issued by ISSUER (certificate 1 of the chain)". */
static void failure_text(const struct mtls_failure *f, char *buf, size_t size)
{
    enum cert_refusal reason = refusal_of(f->error);
    char subject[160], issuer[160], date[32], what[96];
    name_text(X509_get_subject_name(f->cert), subject, sizeof(subject));
    name_text(X509_get_issuer_name(f->cert), issuer, sizeof(issuer));
    if (reason == CERT_REFUSED_EXPIRED) {
        format_time(X509_get0_notAfter(f->cert), date, sizeof(date));
        snprintf(what, sizeof(what), "expired on %s", date);
    } else if (reason == CERT_REFUSED_NOT_YET_VALID) {
        format_time(X509_get0_notBefore(f->cert), date, sizeof(date));
        snprintf(what, sizeof(what), "not valid before %s", date);
    } else if (reason == CERT_REFUSED_UNKNOWN_CA) {
        snprintf(what, sizeof(what), "unknown CA, no issuer in tls_client_ca");
    } else if (reason == CERT_REFUSED_REVOKED) {
        snprintf(what, sizeof(what), "revoked (a CRL of tls_client_crl lists it)");
    } else {
        snprintf(what, sizeof(what), "%s", X509_verify_cert_error_string(f->error));
    }
    snprintf(buf, size, "%s: %s, issued by %s (certificate %d of the chain)", what, subject,
             issuer, f->depth + 1);
}

bool mtls_refused(SSL *ssl, unsigned long ssl_err, enum cert_refusal *reason, char *buf,
                  size_t size)
{
    const struct mtls_settings *s = settings_of(ssl);
    if (!s || s->mode != MTLS_ON || ERR_GET_LIB(ssl_err) != ERR_LIB_SSL)
        return false;
    int alert = tls_alert_sent(ssl);
    char sent[64] = "";
    if (alert >= 0)
        snprintf(sent, sizeof(sent), " (alert %s sent)", tls_alert_name(alert));
    if (ERR_GET_REASON(ssl_err) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        *reason = CERT_REFUSED_NONE_SENT;
        snprintf(buf, size, "client certificate refused: no certificate sent, "
                            "tls_verify_client is on%s", sent);
        return true;
    }
    const struct mtls_failure *f = failure_index < 0 ? NULL : SSL_get_ex_data(ssl, failure_index);
    if (ERR_GET_REASON(ssl_err) != SSL_R_CERTIFICATE_VERIFY_FAILED || !f)
        return false;
    *reason = refusal_of(f->error);
    char what[512];
    failure_text(f, what, sizeof(what));
    snprintf(buf, size, "client certificate refused: %s%s", what, sent);
    return true;
}

bool mtls_failed(SSL *ssl, char *buf, size_t size)
{
    const struct mtls_settings *s = settings_of(ssl);
    const struct mtls_failure *f = failure_index < 0 ? NULL : SSL_get_ex_data(ssl, failure_index);
    if (!s || s->mode != MTLS_OPTIONAL || !f)
        return false;
    char what[512];
    failure_text(f, what, sizeof(what));
    snprintf(buf, size, "client certificate failed verification, served (tls_verify_client is "
                        "optional; the origin is told FAILED): %s", what);
    return true;
}

/* ---- what the origin is told ---- */

/* ":base64:" of x's DER (an RFC 8941 byte sequence) appended at *at (room checked by the
 * caller: base64_len). */
static size_t base64_len(int der_len)
{
    return 4 * (((size_t)der_len + 2) / 3) + 2;
}

static int put_cert(X509 *x, char *at)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0)
        return -1;
    at[0] = ':';
    int b = EVP_EncodeBlock((unsigned char *)at + 1, der, n);
    OPENSSL_free(der);
    at[1 + b] = ':';
    at[2 + b] = '\0';
    return 2 + b;
}

static char *cert_field(X509 *x)
{
    int n = i2d_X509(x, NULL);
    char *s = n > 0 ? malloc(base64_len(n) + 1) : NULL;
    if (s && put_cert(x, s) < 0) {
        free(s);
        s = NULL;
    }
    return s;
}

/* The certificates above the leaf in the verified chain, as an RFC 8941 list; NULL for none. */
static char *chain_field(STACK_OF(X509) *chain)
{
    int n = chain ? sk_X509_num(chain) : 0;
    size_t room = 1;
    for (int i = 1; i < n; i++)
        room += base64_len(i2d_X509(sk_X509_value(chain, i), NULL)) + 2;
    char *s = n > 1 ? malloc(room) : NULL;
    size_t at = 0;
    for (int i = 1; s && i < n; i++) {
        if (i > 1) {
            memcpy(s + at, ", ", 2);
            at += 2;
        }
        int w = put_cert(sk_X509_value(chain, i), s + at);
        if (w < 0) {
            free(s);
            return NULL;
        }
        at += (size_t)w;
    }
    return s;
}

/* The verified chain of a resumed session, built again: OpenSSL keeps the client's certificate
 * and verify result in a session (and a ticket), not its chain, so without this a resumed
 * connection's origin got Client-Cert without the Client-Cert-Chain the full handshake gave it.
 * Built from the listener's tls_client_ca and what the session still holds of the client's
 * intermediates, under the same depth and purpose; NULL (no chain said) if it no longer
 * verifies. Owned by the caller. */
static STACK_OF(X509) *chain_again(SSL *ssl, X509 *leaf)
{
    X509_STORE_CTX *store = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = NULL;
    if (store &&
        X509_STORE_CTX_init(store, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), leaf,
                            SSL_get_peer_cert_chain(ssl)) == 1 &&
        X509_STORE_CTX_set_default(store, "ssl_client") == 1 &&
        X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(store), SSL_get0_param(ssl)) == 1 &&
        X509_verify_cert(store) == 1)
        chain = X509_STORE_CTX_get1_chain(store);
    X509_STORE_CTX_free(store);
    ERR_clear_error();
    return chain;
}

struct mtls_peer *mtls_peer_new(SSL *ssl)
{
    const struct mtls_settings *s = settings_of(ssl);
    if (!s)
        return NULL;
    struct mtls_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    long result = SSL_get_verify_result(ssl);
    char verify[160];
    if (!leaf) {
        snprintf(verify, sizeof(verify), "NONE");
    } else if (result != X509_V_OK) {
        snprintf(verify, sizeof(verify), "FAILED:%s", X509_verify_cert_error_string(result));
    } else {
        snprintf(verify, sizeof(verify), "SUCCESS");
        char subject[512];
        name_text(X509_get_subject_name(leaf), subject, sizeof(subject));
        p->subject = strdup(subject);
        p->cert = cert_field(leaf);
        STACK_OF(X509) *again = SSL_get0_verified_chain(ssl) ? NULL : chain_again(ssl, leaf);
        p->chain = chain_field(again ? again : SSL_get0_verified_chain(ssl));
        sk_X509_pop_free(again, X509_free);
        if (!p->subject || !p->cert) {
            mtls_peer_free(p);
            return NULL;
        }
    }
    if (!(p->verify = strdup(verify))) {
        mtls_peer_free(p);
        return NULL;
    }
    return p;
}

void mtls_peer_free(struct mtls_peer *p)
{
    if (!p)
        return;
    free(p->verify);
    free(p->subject);
    free(p->cert);
    free(p->chain);
    free(p);
}
