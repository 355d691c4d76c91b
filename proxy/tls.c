/*
 * tls.c — OpenSSL contexts and per-connection SSL objects. See tls.h.
 */
#include "portico/tls.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/util.h"

static const unsigned char alpn_http11[] = "\x08http/1.1";
/* Servers choose in their own order of preference: HTTP/2 when the client offers it. */
static const unsigned char alpn_h2_http11[] = "\x02h2\x08http/1.1";

const char *tls_last_error(char *buf, size_t bufsz)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        snprintf(buf, bufsz, "unknown TLS error");
    else
        ERR_error_string_n(e, buf, bufsz);
    ERR_clear_error();
    return buf;
}

/* ALPN: h2 first when HTTP/2 is on (arg), else HTTP/1.1 only; a client offering nothing we
 * speak gets no ALPN and can fall back. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const unsigned char *ours = arg ? alpn_h2_http11 : alpn_http11;
    unsigned ours_len = arg ? sizeof(alpn_h2_http11) - 1 : sizeof(alpn_http11) - 1;
    unsigned char *sel = NULL;
    /* SSL_select_next_proto walks the server's list first: our preference wins. */
    if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Fills err for `file` (NULL: none in particular) with the thread's last OpenSSL error. A file
 * that should hold the PEM block pem names (NULL: none) and holds none (a key given as the
 * certificate, a DER file) says so: OpenSSL's last error is then "PEM lib", which says nothing,
 * and its first "no start line" or "unsupported". One whose block is damaged or cut short (a
 * file being written when a reload read it) says what OpenSSL's first error found wrong. */
static void ssl_failed(struct tls_error *err, const char *file, const char *pem)
{
    err->file = file;
    unsigned long first = ERR_peek_error();
    bool pem_error = ERR_GET_LIB(first) == ERR_LIB_PEM;
    bool no_block = (pem_error && ERR_GET_REASON(first) == PEM_R_NO_START_LINE) ||
                    ERR_GET_LIB(first) == ERR_LIB_OSSL_DECODER;
    if (pem && no_block) {
        ERR_clear_error();
        snprintf(err->text, sizeof(err->text), "holds no %s in PEM form", pem);
        return;
    }
    if (pem_error && !no_block) { /* a CA file's too */
        const char *why = ERR_reason_error_string(first);
        ERR_clear_error();
        snprintf(err->text, sizeof(err->text), "holds a damaged or cut-short PEM block (%s)",
                 why ? why : "unreadable");
        return;
    }
    tls_last_error(err->text, sizeof(err->text));
}

/* OpenSSL's default for an encrypted key asks for its passphrase on the terminal, and would hold
 * a start, `portico -t` or a reload (signals included) until someone typed. Portico asks for
 * none: the key fails to load, and `asked` (when set) tells use_cert_and_key why. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf, (void)size, (void)rwflag;
    if (asked)
        *(bool *)asked = true;
    return -1;
}

/* Loads a certificate chain and its key into ctx. 0, or -1 with err filled. */
static int use_cert_and_key(SSL_CTX *ctx, const char *cert_file, const char *key_file,
                            struct tls_error *err)
{
    int rc = -1;
    bool asked = false;
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_failed(err, cert_file, "certificate (-----BEGIN CERTIFICATE-----)");
        goto done;
    }
    /* OpenSSL compares the key with the certificate while loading it; a key that loads is
     * checked again for certificates whose key it cannot compare then. */
    bool loaded = SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) == 1;
    unsigned long e = ERR_peek_last_error();
    if (!loaded && asked) {
        ERR_clear_error();
        err->file = key_file;
        snprintf(err->text, sizeof(err->text),
                 "encrypted with a passphrase, which Portico does not ask for: give it the key "
                 "unencrypted (readable by Portico's user only)");
        goto done;
    }
    if (!loaded &&
        !(ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)) {
        ssl_failed(err, key_file, "private key (-----BEGIN ... PRIVATE KEY-----)");
        goto done;
    }
    if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        err->file = key_file;
        snprintf(err->text, sizeof(err->text), "does not match %s", cert_file);
        goto done;
    }
    rc = 0;
done:
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL); /* `asked` ends with this call */
    return rc;
}

/* The app data of a client's connection once it read a close_notify alert. */
static const char close_notify_read;

/* Of a client's connection: the fatal alert it was sent, + 1 (0: none). */
static int alert_sent_index = -1;
static pthread_once_t alert_sent_once = PTHREAD_ONCE_INIT;

static void alert_sent_init(void)
{
    alert_sent_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Under SSL_OP_IGNORE_UNEXPECTED_EOF OpenSSL reports a bare FIN as it reports a close_notify
 * (SSL_ERROR_ZERO_RETURN, RECEIVED_SHUTDOWN): only this callback of an alert read tells the
 * two apart (tls_end_cut). It runs for handshake steps and alerts, never per record. Both bits
 * of SSL_CB_READ_ALERT: one alone is also our own close_notify going out (SSL_CB_WRITE_ALERT),
 * as a tunnel sends it when the origin ended first. */
static void note_close_notify(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY)
        SSL_set_app_data((SSL *)(uintptr_t)ssl, (void *)(uintptr_t)&close_notify_read);
    /* the fatal alert we refuse a handshake with, for its log line (tls_alert_sent) */
    if ((where & SSL_CB_WRITE_ALERT) == SSL_CB_WRITE_ALERT && (ret >> 8) == SSL3_AL_FATAL &&
        alert_sent_index >= 0)
        SSL_set_ex_data((SSL *)(uintptr_t)ssl, alert_sent_index,
                        (void *)(uintptr_t)((ret & 0xff) + 1));
}

int tls_alert_sent(const SSL *ssl)
{
    uintptr_t a = alert_sent_index < 0 ? 0 : (uintptr_t)SSL_get_ex_data(ssl, alert_sent_index);
    return a ? (int)a - 1 : -1;
}

bool tls_end_cut(const SSL *ssl)
{
    return (SSL_get_options(ssl) & SSL_OP_IGNORE_UNEXPECTED_EOF) &&
           SSL_get_app_data(ssl) != &close_notify_read;
}

void *tls_server_ctx(const char *cert_file, const char *key_file, struct tls_error *err)
{
    pthread_once(&alert_sent_once, alert_sent_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_failed(err, NULL, NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A peer closing without close_notify is an EOF, not a TLS error (OpenSSL 3 would say
     * "unexpected eof", and answer a fatal alert, after which nothing more goes out): HTTP
     * framing tells us whether anything was lost. A tunnel still tells it apart from a
     * close_notify (tls_end_cut), to pass it on as it came. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_info_callback(ctx, note_close_notify);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption by session tickets only, as nginx's default: OpenSSL's internal cache kept
     * every TLS 1.2 session (~1.1 KB each, up to 20,480, behind a lock all workers share) for
     * a resumption by session ID that ticketless clients alone need. The server still says
     * sessions may be resumed, which some clients need to hear. The ticket keys are the
     * process's (ticket.c, set by ticket_use), not this context's: they outlive a reload. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE |
                                            SSL_SESS_CACHE_NO_AUTO_CLEAR);
    if (use_cert_and_key(ctx, cert_file, key_file, err) != 0)
        goto fail;
    tls_server_http2(ctx, true);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_server_http2(void *ctx, bool on)
{
    /* arg is only tested for NULL: a non-NULL constant means h2 is offered. */
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, on ? (void *)(uintptr_t)alpn_h2_http11 : NULL);
}

/* The certificate an origin's chain failed verification at, kept (ex_data of its SSL) for the
 * detail of the failure: the verify result alone ("unable to get local issuer certificate")
 * does not say which certificate, nor tell a chain sent without its intermediate from a CA
 * missing in ca_file, nor whether the leaf or a CA certificate expired. */
struct verify_failure {
    X509 *cert;                   /* the certificate at the failing depth (a reference) */
    int depth;                    /* 0: the origin's own certificate */
    int sent;                     /* how many certificates the origin sent */
};

static int verify_failure_index = -1;
static pthread_once_t verify_failure_once = PTHREAD_ONCE_INIT;

static void verify_failure_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                                void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct verify_failure *f = ptr;
    if (f) {
        X509_free(f->cert);
        free(f);
    }
}

static void verify_failure_init(void)
{
    verify_failure_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, verify_failure_free);
}

/* Verification callback of origin contexts: keeps the first failure (OpenSSL stops there), and
 * changes no verdict. It runs per certificate of a new origin connection's handshake, not per
 * request; a failing handshake pays one allocation. */
static int note_verify_failure(int ok, X509_STORE_CTX *store)
{
    if (ok || verify_failure_index < 0)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    if (!ssl || !cert || SSL_get_ex_data(ssl, verify_failure_index))
        return ok;
    struct verify_failure *f = malloc(sizeof(*f));
    if (!f)
        return ok;
    STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(store);
    *f = (struct verify_failure){.cert = cert, .depth = X509_STORE_CTX_get_error_depth(store),
                                 .sent = sent ? sk_X509_num(sent) : 0};
    X509_up_ref(cert);
    if (SSL_set_ex_data(ssl, verify_failure_index, f) != 1)
        verify_failure_free(NULL, f, NULL, 0, 0, NULL);
    return ok;
}

void *tls_client_ctx(bool verify, const char *ca_file, const char *cert_file, const char *key_file,
                     struct tls_error *err)
{
    pthread_once(&verify_failure_once, verify_failure_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_failed(err, NULL, NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Unlike clients, an origin closing without close_notify is told apart from one that sent
     * it (sock_tls_cut): a close-delimited response is complete only with it (RFC 9112 9.8). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof(alpn_http11) - 1) != 0) {
        ssl_failed(err, NULL, NULL);
        goto fail;
    }
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, note_verify_failure);
        int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            ssl_failed(err, ca_file, NULL);
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cert_file && use_cert_and_key(ctx, cert_file, key_file, err) != 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *tls_client_ssl(void *ctx, const char *host, const char *sni, bool verify)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    const char *name = sni ? sni : host;
    /* An absolute origin name ("api.example.") is a host name without its final dot in SNI
     * (RFC 6066 3) and in the certificate check, which would not match the certificate's name. */
    char bare[256];
    if (name_without_root_dot(name, bare, sizeof(bare)))
        name = bare;
    bool ip = is_ip_literal(name);
    /* SSL_set_tlsext_host_name's macro casts the const away, which clang warns about */
    if (!ip && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                        (void *)(uintptr_t)name) != 1)
        goto fail;
    if (verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
                    : X509_VERIFY_PARAM_set1_host(param, name, 0);
        if (ok != 1)
            goto fail;
    }
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

void tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* An ASN1 time as certexpiry says dates: "2026-12-05 06:07:00 UTC". */
static void format_asn1_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, size, "?");
}

bool tls_verify_failed(SSL *ssl, char *buf, size_t bufsz)
{
    long v = SSL_get_verify_result(ssl);
    if (v == X509_V_OK)
        return false;
    int n = snprintf(buf, bufsz, "%s", X509_verify_cert_error_string(v));
    const struct verify_failure *f =
        verify_failure_index < 0 ? NULL : SSL_get_ex_data(ssl, verify_failure_index);
    if (!f || n < 0 || (size_t)n >= bufsz)
        return true;
    /* The detail holds 200 bytes: what tells most goes first (the date, then the names). */
    char subject[64], issuer[64], when[48] = "", sent[32] = "";
    X509_NAME_oneline(X509_get_subject_name(f->cert), subject, sizeof(subject));
    X509_NAME_oneline(X509_get_issuer_name(f->cert), issuer, sizeof(issuer));
    char date[32];
    if (v == X509_V_ERR_CERT_HAS_EXPIRED) {
        format_asn1_time(X509_get0_notAfter(f->cert), date, sizeof(date));
        snprintf(when, sizeof(when), ", expired %s", date);
    } else if (v == X509_V_ERR_CERT_NOT_YET_VALID) {
        format_asn1_time(X509_get0_notBefore(f->cert), date, sizeof(date));
        snprintf(when, sizeof(when), ", valid from %s", date);
    }
    /* An issuer not found: a chain sent without its intermediate, or a CA not in ca_file. */
    bool no_issuer = v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                     v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                     v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
    if (no_issuer)
        snprintf(sent, sizeof(sent), "; the origin sent %d", f->sent);
    snprintf(buf + n, bufsz - (size_t)n, " (certificate %d of the chain%s: %s, issued by %s%s)",
             f->depth + 1, when, subject, issuer, sent);
    return true;
}

bool tls_peer_silent(SSL *ssl)
{
    return BIO_number_read(SSL_get_rbio(ssl)) == 0;
}

/* OpenSSL shows each record header it reads (SSL3_RT_HEADER), before it checks it: the first is
 * kept (its type byte is never 0: a TLS content type, an SSLv2 length, or some text). */
static void keep_first_header(int write_p, int version, int content_type, const void *buf,
                              size_t len, SSL *ssl, void *arg)
{
    (void)version, (void)ssl;
    unsigned char *head = arg;
    if (!write_p && content_type == SSL3_RT_HEADER && len >= TLS_RECORD_HEAD && head[0] == 0)
        memcpy(head, buf, TLS_RECORD_HEAD);
}

void tls_watch_first_record(SSL *ssl, unsigned char *head)
{
    SSL_set_msg_callback(ssl, head ? keep_first_header : NULL);
    SSL_set_msg_callback_arg(ssl, head);
}

bool tls_alert_refuses_handshake(unsigned long err)
{
    if (ERR_GET_LIB(err) != ERR_LIB_SSL || ERR_GET_REASON(err) < SSL_AD_REASON_OFFSET)
        return false;
    /* What a TLS 1.3 server answers to our certificate (or its absence) after our Finished. An
     * internal_error or decode_error may follow a request the origin took: not these. */
    switch (ERR_GET_REASON(err) - SSL_AD_REASON_OFFSET) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_DECRYPT_ERROR:
    case SSL_AD_INSUFFICIENT_SECURITY:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* TLS alert names as RFC 8446 6 and the IANA registry spell them (OpenSSL's text says
 * "tlsv13 alert certificate required", which no origin's log or document uses). */
static const char *const alert_names[256] = {
    [0] = "close_notify", [10] = "unexpected_message", [20] = "bad_record_mac",
    [21] = "decryption_failed", [22] = "record_overflow", [40] = "handshake_failure",
    [42] = "bad_certificate", [43] = "unsupported_certificate", [44] = "certificate_revoked",
    [45] = "certificate_expired", [46] = "certificate_unknown", [47] = "illegal_parameter",
    [48] = "unknown_ca", [49] = "access_denied", [50] = "decode_error", [51] = "decrypt_error",
    [70] = "protocol_version", [71] = "insufficient_security", [80] = "internal_error",
    [86] = "inappropriate_fallback", [90] = "user_canceled", [100] = "no_renegotiation",
    [109] = "missing_extension", [110] = "unsupported_extension", [112] = "unrecognized_name",
    [113] = "bad_certificate_status_response", [115] = "unknown_psk_identity",
    [116] = "certificate_required", [120] = "no_application_protocol",
};

int tls_alert_received(unsigned long err)
{
    if (ERR_GET_LIB(err) != ERR_LIB_SSL || ERR_GET_REASON(err) < SSL_AD_REASON_OFFSET ||
        ERR_GET_REASON(err) - SSL_AD_REASON_OFFSET > 255)
        return -1;
    return ERR_GET_REASON(err) - SSL_AD_REASON_OFFSET;
}

const char *tls_alert_name(int alert)
{
    const char *name = alert >= 0 && alert < 256 ? alert_names[alert] : NULL;
    return name ? name : "unknown";
}

/* What each refusal alert asks of the client certificate, for whoever reads the detail. */
static const char *const refusal_hints[256] = {
    [SSL_AD_CERTIFICATE_REQUIRED] = "it requires a client certificate",
    [SSL_AD_BAD_CERTIFICATE] = "it rejects the client certificate",
    [SSL_AD_UNSUPPORTED_CERTIFICATE] = "it rejects the client certificate's type",
    [SSL_AD_CERTIFICATE_REVOKED] = "it holds the client certificate revoked",
    [SSL_AD_CERTIFICATE_EXPIRED] = "it holds the client certificate expired",
    [SSL_AD_CERTIFICATE_UNKNOWN] = "it rejects the client certificate",
    [SSL_AD_UNKNOWN_CA] = "it does not trust the client certificate's issuer",
    [SSL_AD_ACCESS_DENIED] = "it denies the client certificate access",
};

void tls_error_text(unsigned long err, const char *client_cert, char *buf, size_t size)
{
    int alert = tls_alert_received(err);
    if (alert < 0) {
        ERR_error_string_n(err, buf, size);
        return;
    }
    int n = snprintf(buf, size, "alert %s (%d)", tls_alert_name(alert), alert);
    const char *hint = refusal_hints[alert];
    /* A TLS 1.2 server wanting a certificate it did not get says handshake_failure, which a
     * cipher or group mismatch says too: a hint only when none was sent. */
    if (alert == SSL_AD_HANDSHAKE_FAILURE && !client_cert)
        hint = "it may require a client certificate";
    if (!hint || n < 0 || (size_t)n >= size)
        return;
    if (!client_cert)
        snprintf(buf + n, size - (size_t)n, ": %s: none is set (client_cert, client_key)", hint);
    else
        snprintf(buf + n, size - (size_t)n, ": %s (client_cert %s)", hint, client_cert);
}

bool tls_plain_http(const unsigned char *head)
{
    /* OpenSSL itself names only GET, POST, HEAD and PUT (SSL_R_HTTP_REQUEST): DELETE, OPTIONS,
     * PATCH ... are "wrong version number" to it. A record starts with a byte of 20-24. */
    size_t n = 0;
    while (n < TLS_RECORD_HEAD && head[n] >= 'A' && head[n] <= 'Z')
        n++;
    return n >= 3 && (n == TLS_RECORD_HEAD || head[n] == ' ');
}
