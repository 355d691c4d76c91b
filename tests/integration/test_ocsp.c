/*
 * test_ocsp.c — OCSP stapling from files (tls_ocsp_response): the staple goes to a client that
 * asks (status_request) and to no other, the one of the certificate sent, per SNI entry and per
 * key type, over TLS 1.2 and 1.3; a response for another certificate, or not a response, refused
 * at its line; one out of date warned about and not stapled; a reload reads the file again.
 *
 * The responses are made at test time by `openssl ocsp` from the test CA's index.txt (good, and
 * revoked for the client certificate the CA revoked); one out of date and one unsuccessful are
 * made here with OpenSSL's API, which takes any dates (`openssl ocsp` signs for now only).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../support/certs.h"
#include "../support/harness.h"
#include "../support/tls_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static struct {
    const struct test_certs *certs;
    const struct test_dual_certs *dual;
    const struct test_mtls_extra_certs *extra;
} t;

/* ---- the files ---- */

/* dir/name into buf. */
static const char *in_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", t.certs->dir, name);
    return buf;
}

/* The leaf `cert` then the CA into dir/name: a tls_cert whose chain holds the issuer. */
static void write_chain(const char *cert, const char *name)
{
    char out[512], cmd[2048];
    snprintf(cmd, sizeof(cmd), "cat '%s' '%s' > '%s'", cert, t.certs->ca_cert,
             in_dir(out, sizeof(out), name));
    assert_int_equal(system(cmd), 0);
}

/* `openssl ocsp` answering for cert from the CA's index into dir/name, valid a week, its CertID
 * hashed with `digest` ("-sha1", OpenSSL's default, or "-sha256"). */
static void openssl_response_md(const char *cert, const char *name, const char *digest)
{
    char index[512], out[512];
    const char *argv[] = {"openssl", "ocsp", digest, "-index", in_dir(index, sizeof(index), "index.txt"),
                          "-rsigner", t.certs->ca_cert, "-rkey", t.certs->ca_key, "-CA",
                          t.certs->ca_cert, "-issuer", t.certs->ca_cert, "-cert", cert,
                          "-respout", in_dir(out, sizeof(out), name), "-ndays", "7", NULL};
    struct tu_cmd_result res;
    int rc = tu_run_command(argv, 10000, &res);
    if (rc != 0)
        print_message("openssl ocsp: %s%s\n", res.out, res.err);
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
}

static void openssl_response(const char *cert, const char *name)
{
    openssl_response_md(cert, name, "-sha1");
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

/* A response `good` for cert signed by the CA, with the given dates (seconds from now), into
 * dir/name; or an unsuccessful one (tryLater) when `unsuccessful`. */
static void api_response(const char *cert, long this_from_now, long next_from_now,
                         bool unsuccessful, const char *name)
{
    X509 *leaf = read_cert(cert), *ca = read_cert(t.certs->ca_cert);
    FILE *kf = fopen(t.certs->ca_key, "r");
    assert_non_null(kf);
    EVP_PKEY *key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    fclose(kf);
    assert_non_null(key);
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    if (unsuccessful) {
        resp = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
    } else {
        OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, ca);
        ASN1_TIME *thisupd = X509_gmtime_adj(NULL, this_from_now);
        ASN1_TIME *nextupd = X509_gmtime_adj(NULL, next_from_now);
        assert_non_null(OCSP_basic_add1_status(bs, id, V_OCSP_CERTSTATUS_GOOD, 0, NULL, thisupd,
                                               nextupd));
        assert_int_equal(OCSP_basic_sign(bs, ca, key, EVP_sha256(), NULL, 0), 1);
        resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
        OCSP_CERTID_free(id);
        ASN1_TIME_free(thisupd);
        ASN1_TIME_free(nextupd);
    }
    assert_non_null(resp);
    unsigned char *der = NULL;
    int len = i2d_OCSP_RESPONSE(resp, &der);
    char out[512];
    assert_true(len > 0);
    assert_int_equal(tu_write_file(in_dir(out, sizeof(out), name), der, (size_t)len), 0);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    EVP_PKEY_free(key);
    X509_free(leaf);
    X509_free(ca);
}

/* A response signed by the CA for cert into `path`: `status` (V_OCSP_CERTSTATUS_*), its
 * thisUpdate and nextUpdate seconds from now, no nextUpdate when !has_next. */
static void api_response_to(const char *cert, int status, long this_from_now, bool has_next,
                            long next_from_now, const char *path)
{
    X509 *leaf = read_cert(cert), *ca = read_cert(t.certs->ca_cert);
    FILE *kf = fopen(t.certs->ca_key, "r");
    assert_non_null(kf);
    EVP_PKEY *key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    fclose(kf);
    assert_non_null(key);
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, ca);
    ASN1_TIME *thisupd = X509_gmtime_adj(NULL, this_from_now);
    ASN1_TIME *nextupd = has_next ? X509_gmtime_adj(NULL, next_from_now) : NULL;
    assert_non_null(OCSP_basic_add1_status(bs, id, status, 0, NULL, thisupd, nextupd));
    assert_int_equal(OCSP_basic_sign(bs, ca, key, EVP_sha256(), NULL, 0), 1);
    OCSP_RESPONSE *resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    assert_non_null(resp);
    unsigned char *der = NULL;
    int len = i2d_OCSP_RESPONSE(resp, &der);
    assert_true(len > 0);
    assert_int_equal(tu_write_file(path, der, (size_t)len), 0);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    EVP_PKEY_free(key);
    X509_free(leaf);
    X509_free(ca);
}

static int setup(void **state)
{
    (void)state;
    t.certs = certs_get();
    if (!t.certs || !certs_get_sni() || !(t.dual = certs_get_dual()) ||
        !(t.extra = certs_get_mtls_extra()))
        return -1;
    char a[512], b[512];
    write_chain(t.certs->server_cert, "ocsp-server.pem");
    write_chain(t.dual->server_rsa_cert, "ocsp-server-rsa.pem");
    write_chain(in_dir(a, sizeof(a), "sni-a.pem"), "ocsp-sni-a.pem");
    write_chain(t.dual->a_rsa_cert, "ocsp-sni-a-rsa.pem");
    write_chain(in_dir(b, sizeof(b), "sni-b.pem"), "ocsp-sni-b.pem");
    write_chain(t.extra->revoked_client_cert, "ocsp-revoked.pem");
    openssl_response(t.certs->server_cert, "server.ocsp");
    openssl_response(t.dual->server_rsa_cert, "server-rsa.ocsp");
    openssl_response(a, "sni-a.ocsp");
    openssl_response(t.dual->a_rsa_cert, "sni-a-rsa.ocsp");
    openssl_response(b, "sni-b.ocsp");
    openssl_response(t.extra->revoked_client_cert, "revoked.ocsp");
    openssl_response_md(t.certs->server_cert, "server-sha256.ocsp", "-sha256");
    api_response(t.certs->server_cert, -10 * 86400, -3 * 86400, false, "server-expired.ocsp");
    api_response(t.certs->server_cert, 0, 0, true, "server-trylater.ocsp");
    /* dates at the edges of the 5 minutes' leeway, and past them; no nextUpdate; unknown */
    static const struct {
        const char *name;
        int status;
        long this_from_now;
        bool has_next;
        long next_from_now;
    } dated[] = {
        {"server-soon.ocsp", V_OCSP_CERTSTATUS_GOOD, 120, true, 7 * 86400},
        {"server-future.ocsp", V_OCSP_CERTSTATUS_GOOD, 1200, true, 7 * 86400},
        {"server-graced.ocsp", V_OCSP_CERTSTATUS_GOOD, -86400, true, -120},
        {"server-lapsed.ocsp", V_OCSP_CERTSTATUS_GOOD, -86400, true, -600},
        {"server-nonext.ocsp", V_OCSP_CERTSTATUS_GOOD, -60, false, 0},
        {"server-nonext-old.ocsp", V_OCSP_CERTSTATUS_GOOD, -2 * 86400, false, 0},
        {"server-unknown.ocsp", V_OCSP_CERTSTATUS_UNKNOWN, -60, true, 7 * 86400},
        {"server-day.ocsp", V_OCSP_CERTSTATUS_GOOD, -60, true, 2 * 3600},
    };
    for (size_t i = 0; i < sizeof(dated) / sizeof(dated[0]); i++) {
        char path[512];
        api_response_to(t.certs->server_cert, dated[i].status, dated[i].this_from_now,
                        dated[i].has_next, dated[i].next_from_now,
                        in_dir(path, sizeof(path), dated[i].name));
    }
    char trailing[512], cmd[2048]; /* a response with a byte after it */
    snprintf(cmd, sizeof(cmd), "cat '%s' > '%s' && printf x >> '%s'",
             in_dir(a, sizeof(a), "server.ocsp"), in_dir(trailing, sizeof(trailing),
             "server-trailing.ocsp"), trailing);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return 0;
}

/* ---- the client ---- */

enum offer { OFFER_ALL, OFFER_ECDSA, OFFER_RSA };

static const char *const offer_sigalgs[] = {
    [OFFER_ALL] = NULL,
    [OFFER_ECDSA] = "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384",
    [OFFER_RSA] = "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pkcs1_sha256",
};

/* What one connection saw. */
struct seen {
    char cn[128];                 /* the CN of the certificate served */
    bool stapled;                 /* a status came */
    bool for_served;              /* its answer's serial is the served certificate's */
    int status;                   /* V_OCSP_CERTSTATUS_*, -1: none */
    char why[256];                /* why the handshake failed */
};

/* The staple's single answer judged against the served certificate. */
static void judge_staple(SSL *ssl, X509 *peer, struct seen *out)
{
    const unsigned char *p = NULL;
    long len = SSL_get_tlsext_status_ocsp_resp(ssl, &p);
    out->status = -1;
    if (len <= 0 || !p)
        return;
    out->stapled = true;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, len);
    OCSP_BASICRESP *bs = resp ? OCSP_response_get1_basic(resp) : NULL;
    if (bs && OCSP_resp_count(bs) == 1) {
        OCSP_SINGLERESP *single = OCSP_resp_get0(bs, 0);
        ASN1_INTEGER *serial = NULL;
        OCSP_id_get0_info(NULL, NULL, NULL, &serial,
                          (OCSP_CERTID *)(uintptr_t)OCSP_SINGLERESP_get0_id(single));
        out->for_served = serial && peer &&
                          ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(peer)) == 0;
        out->status = OCSP_single_get0_status(single, NULL, NULL, NULL, NULL);
    }
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
}

/* One handshake to port naming sni, TLS `version` only, offering `offer`, asking for the
 * certificate status or not; 0, or -1 (why in out). */
static int hello(uint16_t port, const char *sni, int version, enum offer offer, bool ask,
                 struct seen *out)
{
    struct tls_client_opts o = {.sni = sni, .version = version, .sigalgs = offer_sigalgs[offer],
                                .ask_status = ask};
    struct tls_client c;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    out->status = -1;
    if (tls_client_connect(port, &o, &c) != 0) {
        snprintf(out->why, sizeof(out->why), "%s", c.why);
        goto done;
    }
    tls_client_peer_cn(&c, out->cn, sizeof(out->cn));
    X509 *peer = SSL_get1_peer_certificate(c.ssl);
    judge_staple(c.ssl, peer, out);
    X509_free(peer);
    SSL_shutdown(c.ssl);
    rc = 0;
done:
    tls_client_close(&c);
    return rc;
}

/* A row: the name asked for, the key types offered, whether the status is asked, the CN that
 * must come and the staple: none, or its status (for the certificate served). */
struct want {
    const char *sni;
    enum offer offer;
    bool ask;
    const char *cn;
    int status;                   /* V_OCSP_CERTSTATUS_*, -1: no staple */
};

static const char *const status_names[] = {"good", "revoked", "unknown"};

static void expect(uint16_t port, const struct want *rows, size_t n)
{
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < n; i++) {
        for (size_t v = 0; v < 2; v++) {
            const struct want *w = &rows[i];
            struct seen got;
            int rc = hello(port, w->sni, versions[v], w->offer, w->ask, &got);
            print_message("  %-12s offer %d %s TLS 1.%d: %s, %s%s\n", w->sni ? w->sni : "-",
                          w->offer, w->ask ? "asks  " : "silent", (int)v + 2,
                          rc == 0 ? got.cn : got.why,
                          got.stapled ? "stapled " : "no staple",
                          got.status >= 0 ? status_names[got.status] : "");
            if (rc != 0)
                fail_msg("%s: handshake failed: %s", w->sni, got.why);
            if (strcmp(got.cn, w->cn) != 0)
                fail_msg("%s over TLS 1.%d: got %s, want %s", w->sni, (int)v + 2, got.cn, w->cn);
            if (w->status < 0 && got.stapled)
                fail_msg("%s (%s) over TLS 1.%d: a staple came, want none", w->sni, w->cn,
                         (int)v + 2);
            if (w->status < 0)
                continue;
            if (!got.stapled || !got.for_served || got.status != w->status)
                fail_msg("%s (%s) over TLS 1.%d: staple %s, for the certificate served: %s, "
                         "status %d; want %s", w->sni, w->cn, (int)v + 2,
                         got.stapled ? "sent" : "NOT sent", got.for_served ? "yes" : "no",
                         got.status, status_names[w->status]);
        }
    }
}

static const char config_fmt[] = "[proxy]\n"
                                 "listen = 127.0.0.1:{{port:tls}} tls\n"
                                 "workers = 1\n"
                                 "%s"
                                 "[upstream app]\n"
                                 "origin = sim\n";

static struct harness *start_with(const char *pairs)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, config_fmt, pairs), 0);
    assert_int_equal(harness_start(h), 0);
    return h;
}

/* `portico -t` of config_fmt with pairs (%1$s the certificates' directory); its exit code. */
static int check(const char *pairs_fmt, struct tu_cmd_result *res)
{
    return px_check_tls_lines(pairs_fmt, t.certs->dir, res);
}

/* ---- the rows ---- */

/* One certificate with its staple: sent to a client that asks, over TLS 1.2 and 1.3, and to
 * none that does not. */
static void test_staple_sent_when_asked(void **state)
{
    (void)state;
    struct harness *h = start_with("tls_cert = {{certs}}/ocsp-server.pem\n"
                                   "tls_key = {{certs}}/server.key\n"
                                   "tls_ocsp_response = {{certs}}/server.ocsp\n");
    static const struct want rows[] = {
        {"localhost", OFFER_ALL, true, "localhost", V_OCSP_CERTSTATUS_GOOD},
        {"localhost", OFFER_ALL, false, "localhost", -1},
        {NULL, OFFER_ALL, true, "localhost", V_OCSP_CERTSTATUS_GOOD},
    };
    expect(harness_port(h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
    px_stop(h);
}

/* Each certificate's own staple: per SNI entry, and per key type within one (localhost ECDSA
 * and RSA, a.sni.test ECDSA and RSA), and none for a certificate without one (b.sni.test). */
static void test_staple_per_entry_and_key_type(void **state)
{
    (void)state;
    struct harness *h = start_with("tls_cert = {{certs}}/ocsp-server.pem\n"
                                   "tls_key = {{certs}}/server.key\n"
                                   "tls_ocsp_response = {{certs}}/server.ocsp\n"
                                   "tls_cert = {{certs}}/ocsp-server-rsa.pem\n"
                                   "tls_key = {{certs}}/server-rsa.key\n"
                                   "tls_ocsp_response = {{certs}}/server-rsa.ocsp\n"
                                   "tls_cert = {{certs}}/ocsp-sni-a-rsa.pem\n"
                                   "tls_ocsp_response = {{certs}}/sni-a-rsa.ocsp\n"
                                   "tls_key = {{certs}}/sni-a-rsa.key\n"
                                   "tls_cert = {{certs}}/ocsp-sni-a.pem\n"
                                   "tls_key = {{certs}}/sni-a.key\n"
                                   "tls_ocsp_response = {{certs}}/sni-a.ocsp\n"
                                   "tls_cert = {{certs}}/ocsp-sni-b.pem\n"
                                   "tls_key = {{certs}}/sni-b.key\n");
    static const struct want rows[] = {
        {"localhost", OFFER_ECDSA, true, "localhost", V_OCSP_CERTSTATUS_GOOD},
        {"localhost", OFFER_RSA, true, "localhost-rsa", V_OCSP_CERTSTATUS_GOOD},
        {"a.sni.test", OFFER_ECDSA, true, "sni-a", V_OCSP_CERTSTATUS_GOOD},
        {"a.sni.test", OFFER_RSA, true, "sni-a-rsa", V_OCSP_CERTSTATUS_GOOD},
        {"a.sni.test", OFFER_RSA, false, "sni-a-rsa", -1},
        {"b.sni.test", OFFER_ALL, true, "sni-b", -1},
    };
    expect(harness_port(h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
    px_stop(h);
}

/* A revoked certificate's response is stapled as it is (the client decides), and warned
 * about at load. */
static void test_revoked_stapled_and_warned(void **state)
{
    (void)state;
    struct tu_cmd_result res;
    int rc = check("tls_cert = %1$s/ocsp-revoked.pem\n"
                   "tls_key = %1$s/revoked-client.key\n"
                   "tls_ocsp_response = %1$s/revoked.ocsp\n", &res);
    char want[1024];
    snprintf(want, sizeof(want), "portico.ini:5: warning: tls_ocsp_response: %s/revoked.ocsp: "
                                 "says the certificate %s/ocsp-revoked.pem is REVOKED",
             t.certs->dir, t.certs->dir);
    bool said = tu_contains(res.err, want);
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
    if (!said)
        fail_msg("no \"%s\"", want);
    struct harness *h = start_with("tls_cert = {{certs}}/ocsp-revoked.pem\n"
                                   "tls_key = {{certs}}/revoked-client.key\n"
                                   "tls_ocsp_response = {{certs}}/revoked.ocsp\n");
    static const struct want rows[] = {
        {NULL, OFFER_ALL, true, "portico-revoked-client", V_OCSP_CERTSTATUS_REVOKED},
    };
    expect(harness_port(h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
    px_stop(h);
}

/* What `portico -t` refuses, at the line of the tls_ocsp_response at fault. */
static const struct px_refusal_row refusal_rows[] = {
    {"the response of another certificate",
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/sni-a.ocsp\n",
     "portico.ini:5: tls_ocsp_response: %1$s/sni-a.ocsp: is the response for another "
     "certificate"},
    {"not a response: a PEM certificate",
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/server.pem\n",
     "portico.ini:5: tls_ocsp_response: %1$s/server.pem: is not an OCSP response in DER form"},
    {"an unsuccessful response (tryLater)",
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/server-trylater.ocsp\n",
     "portico.ini:5: tls_ocsp_response: %1$s/server-trylater.ocsp: is an unsuccessful OCSP "
     "response (trylater)"},
    {"a tls_cert without its issuer: the response cannot be checked",
     "tls_cert = %1$s/server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/server.ocsp\n",
     "portico.ini:5: tls_ocsp_response: %1$s/server.ocsp: cannot be checked: the tls_cert file "
     "holds no certificate of the issuer"},
    {"no tls_cert above it",
     "tls_ocsp_response = %1$s/server.ocsp\n"
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n",
     "portico.ini:3: tls_ocsp_response: no tls_cert above it"},
    {"two for one tls_cert",
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/server.ocsp\ntls_ocsp_response = %1$s/server.ocsp\n",
     "portico.ini:6: tls_ocsp_response: the tls_cert of line 3 (%1$s/ocsp-server.pem) has one "
     "already, at line 5"},
    {"a file missing",
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/none.ocsp\n",
     "portico.ini:5: tls_ocsp_response: %1$s/none.ocsp: No such file or directory"},
    {"a response and a byte after it",
     "tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
     "tls_ocsp_response = %1$s/server-trailing.ocsp\n",
     "portico.ini:5: tls_ocsp_response: %1$s/server-trailing.ocsp: is not an OCSP response in "
     "DER form"},
};

static void test_load_refusals(void **state)
{
    (void)state;
    px_expect_refused(refusal_rows, ARRAY_SIZE(refusal_rows), t.certs->dir);
}

/* `portico -t` names each staple and until when; one out of date is warned about (its
 * nextUpdate) and listed as not stapled. */
static void test_check_lists_staples(void **state)
{
    (void)state;
    struct tu_cmd_result res;
    int rc = check("tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
                   "tls_ocsp_response = %1$s/server-expired.ocsp\n"
                   "tls_cert = %1$s/ocsp-sni-a.pem\ntls_key = %1$s/sni-a.key\n"
                   "tls_ocsp_response = %1$s/sni-a.ocsp\n", &res);
    const char *dir = t.certs->dir;
    char want[3][1024];
    snprintf(want[0], sizeof(want[0]),
             ":8: tls_ocsp_response %s/sni-a.ocsp: stapled for %s/ocsp-sni-a.pem (ecdsa P-256), "
             "good, until 20", dir, dir);
    snprintf(want[1], sizeof(want[1]),
             ":5: tls_ocsp_response %s/server-expired.ocsp: NOT stapled for %s/ocsp-server.pem "
             "(ecdsa P-256), good, out of date", dir, dir);
    snprintf(want[2], sizeof(want[2]),
             "portico.ini:5: warning: tls_ocsp_response: %s/server-expired.ocsp: the staple of "
             "%s/ocsp-server.pem (ecdsa P-256) expired on ", dir, dir);
    bool found[3];
    for (int i = 0; i < 3; i++)
        found[i] = tu_contains(i < 2 ? res.out : res.err, want[i]);
    bool ago = tu_contains(res.err, "(3 days ago, its nextUpdate): not stapled");
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 3; i++)
        if (!found[i])
            fail_msg("no \"%s\"", want[i]);
    assert_true(ago);
}

/* Without a `listen ... tls` the staple is not read, and `portico -t` says so at its line. */
static void test_unused_without_tls_listen(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    struct tu_cmd_result res;
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, "[proxy]\n"
                                             "listen = 127.0.0.1:{{free_port:l}}\n"
                                             "tls_cert = {{certs}}/ocsp-server.pem\n"
                                             "tls_key = {{certs}}/server.key\n"
                                             "tls_ocsp_response = {{certs}}/none.ocsp\n"
                                             "[upstream app]\n"
                                             "origin = sim\n"),
                     0);
    int rc = harness_check_config(h, &res);
    print_message("  rc %d\n%s%s", rc, res.out, res.err);
    bool said = tu_contains(res.err, "portico.ini:5: warning: tls_ocsp_response: not used, no "
                                     "listen line has tls");
    tu_cmd_result_free(&res);
    harness_free(h);
    assert_int_equal(rc, 0);
    assert_true(said);
}

/* A CertID hashed with SHA-256 (a responder may answer under the hash the request used) is
 * matched under that hash, and stapled. */
static void test_certid_sha256(void **state)
{
    (void)state;
    struct harness *h = start_with("tls_cert = {{certs}}/ocsp-server.pem\n"
                                   "tls_key = {{certs}}/server.key\n"
                                   "tls_ocsp_response = {{certs}}/server-sha256.ocsp\n");
    static const struct want rows[] = {
        {"localhost", OFFER_ALL, true, "localhost", V_OCSP_CERTSTATUS_GOOD},
    };
    expect(harness_port(h, "tls"), rows, 1);
    px_stop(h);
}

/* An out-of-date response is not stapled: a client asking gets none. A reload after the file
 * was replaced with a current one (what a cron job running `openssl ocsp` does) staples it. */
static void test_expired_then_reload_refreshes(void **state)
{
    (void)state;
    char stale[512], fresh[512], file[512];
    in_dir(stale, sizeof(stale), "server-expired.ocsp");
    in_dir(fresh, sizeof(fresh), "server.ocsp");
    struct harness *h = harness_new();
    assert_non_null(h);
    snprintf(file, sizeof(file), "%s/staple.ocsp", harness_dir(h));
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", stale, file);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(harness_write_config(h, config_fmt,
                                          "tls_cert = {{certs}}/ocsp-server.pem\n"
                                          "tls_key = {{certs}}/server.key\n"
                                          "tls_ocsp_response = staple.ocsp\n"),
                     0);
    assert_int_equal(harness_start(h), 0);
    uint16_t port = harness_port(h, "tls");
    static const struct want before[] = {
        {"localhost", OFFER_ALL, true, "localhost", -1},
    };
    expect(port, before, 1);
    assert_true(harness_log_contains(h, "staple.ocsp: the staple of"));
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s.new' && mv '%s.new' '%s'", fresh, file, file, file);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    static const struct want after[] = {
        {"localhost", OFFER_ALL, true, "localhost", V_OCSP_CERTSTATUS_GOOD},
        {"localhost", OFFER_ALL, false, "localhost", -1},
    };
    expect(port, after, 2);
    px_stop(h);
}

/* What `portico -t` says of a response by its dates and status: within 5 minutes of now a date
 * is current (thisUpdate ahead, nextUpdate behind), past them it is not, and the warning says
 * which; no nextUpdate is current a day after thisUpdate (warned of as a day's end); unknown
 * is warned of; a day's end is warned of. */
static const struct {
    const char *file;
    const char *out;              /* in stdout (the listing), after "FILE: " */
    const char *err;              /* in stderr after "FILE: ", or NULL */
    const char *not_err;          /* never in stderr after "FILE: ", or NULL */
} dated_rows[] = {
    {"server-soon.ocsp", "stapled for", NULL, "the staple of"},
    {"server-future.ocsp", "NOT stapled for", "the staple of", "expired on"},
    {"server-graced.ocsp", "stapled for", "the staple of", "expires in"},
    {"server-lapsed.ocsp", "NOT stapled for", "the staple of", NULL},
    {"server-nonext.ocsp", "stapled for", "the staple of", NULL},
    {"server-nonext-old.ocsp", "NOT stapled for", "the staple of", NULL},
    {"server-unknown.ocsp", "stapled for", "says the certificate ", NULL},
    {"server-day.ocsp", "stapled for", "the staple of", NULL},
};

static void test_dates_and_leeway(void **state)
{
    (void)state;
    static const char *const said[] = {
        /* the rest of each row's line, in the order of dated_rows */
        NULL, "is not yet valid (thisUpdate ", "ago, its nextUpdate): stapled within the 5 "
        "minutes allowed for clock skew", "expired on ",
        "(no nextUpdate: a day after its thisUpdate)",
        "(1 day ago, a day after its thisUpdate, it has no nextUpdate): not stapled",
        "is unknown to its responder",
        "expires in ",
    };
    _Static_assert(sizeof(said) / sizeof(said[0]) == sizeof(dated_rows) / sizeof(dated_rows[0]),
                   "one a row");
    for (size_t i = 0; i < sizeof(dated_rows) / sizeof(dated_rows[0]); i++) {
        char pairs[256], want[1024];
        snprintf(pairs, sizeof(pairs), "tls_cert = %%1$s/ocsp-server.pem\n"
                                       "tls_key = %%1$s/server.key\n"
                                       "tls_ocsp_response = %%1$s/%s\n", dated_rows[i].file);
        struct tu_cmd_result res;
        int rc = check(pairs, &res);
        print_message("  %s: rc %d\n%s%s", dated_rows[i].file, rc, res.out, res.err);
        char *err = res.err, *out = res.out;
        snprintf(want, sizeof(want), "%s: %s", dated_rows[i].file, dated_rows[i].out);
        bool out_ok = tu_contains(out, want);
        snprintf(want, sizeof(want), "%s: %s", dated_rows[i].file,
                 dated_rows[i].err ? dated_rows[i].err : "");
        bool err_ok = !dated_rows[i].err || tu_contains(err, want);
        snprintf(want, sizeof(want), "%s: %s", dated_rows[i].file,
                 dated_rows[i].not_err ? dated_rows[i].not_err : "");
        bool not_err_ok = !dated_rows[i].not_err || !tu_contains(err, want);
        bool said_ok = !said[i] || tu_contains(out, said[i]) || tu_contains(err, said[i]);
        tu_cmd_result_free(&res);
        assert_int_equal(rc, 0);
        if (!out_ok || !err_ok || !not_err_ok || !said_ok)
            fail_msg("%s: listing %s, warning %s, no warning %s, words %s", dated_rows[i].file,
                     out_ok ? "ok" : "wrong", err_ok ? "ok" : "missing",
                     not_err_ok ? "ok" : "present", said_ok ? "ok" : "missing");
    }
}

/* A staple current at the load and out of date since (its nextUpdate more than 5 minutes ago)
 * is no longer sent: the status callback looks at the clock, not only the load. */
static void test_stale_at_run_time(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char file[512];
    snprintf(file, sizeof(file), "%s/lapsing.ocsp", harness_dir(h));
    time_t made = time(NULL);
    api_response_to(t.certs->server_cert, V_OCSP_CERTSTATUS_GOOD, -86400, true, -290, file);
    assert_int_equal(harness_write_config(h, config_fmt,
                                          "tls_cert = {{certs}}/ocsp-server.pem\n"
                                          "tls_key = {{certs}}/server.key\n"
                                          "tls_ocsp_response = lapsing.ocsp\n"),
                     0);
    assert_int_equal(harness_start(h), 0);
    /* stapled at the load (10 s of leeway left then), else the row proves nothing */
    assert_false(harness_log_contains(h, "not stapled"));
    /* the clock is what is tested: wait until the leeway is past (about 11 s) */
    while (time(NULL) <= made - 290 + 300 + 1) {
        struct timespec nap = {0, 200 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    static const struct want rows[] = {
        {"localhost", OFFER_ALL, true, "localhost", -1},
    };
    expect(harness_port(h, "tls"), rows, 1);
    px_stop(h);
}

/* The issuer is found among the chain's certificates, not taken as the first of them: a chain
 * file with another CA before the issuer staples. */
static void test_issuer_not_first_in_chain(void **state)
{
    (void)state;
    const struct test_mtls_certs *other = certs_get_mtls();
    assert_non_null(other);
    char out[512], cmd[2048];
    snprintf(cmd, sizeof(cmd), "cat '%s' '%s' '%s' > '%s'", t.certs->server_cert,
             other->other_ca_cert, t.certs->ca_cert,
             in_dir(out, sizeof(out), "ocsp-server-other-first.pem"));
    assert_int_equal(system(cmd), 0);
    struct tu_cmd_result res;
    int rc = check("tls_cert = %1$s/ocsp-server-other-first.pem\ntls_key = %1$s/server.key\n"
                   "tls_ocsp_response = %1$s/server.ocsp\n", &res);
    bool stapled = tu_contains(res.out, "server.ocsp: stapled for");
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
    assert_true(stapled);
}

/* Portico serving the test certificate with the staple `file` (in the certificates' directory):
 * a client asking gets none, and the error log says `said` of it. */
static void expect_not_sent(const char *file, const char *said)
{
    char pairs[512];
    snprintf(pairs, sizeof(pairs), "tls_cert = {{certs}}/ocsp-server.pem\n"
                                   "tls_key = {{certs}}/server.key\n"
                                   "tls_ocsp_response = {{certs}}/%s\n", file);
    struct harness *h = start_with(pairs);
    static const struct want rows[] = {
        {"localhost", OFFER_ALL, true, "localhost", -1},
    };
    expect(harness_port(h, "tls"), rows, 1);
    assert_true(harness_log_contains(h, said));
    px_stop(h);
}

/* A response not yet valid at the load (thisUpdate 20 minutes ahead) is not stapled, though its
 * nextUpdate is days away: what the listing says is what clients get. */
static void test_not_yet_valid_not_sent(void **state)
{
    (void)state;
    expect_not_sent("server-future.ocsp", "is not yet valid");
}

/* A response without nextUpdate is current for a day after its thisUpdate, as Firefox takes
 * it (it refuses an older one, stapled, as SEC_ERROR_OCSP_OLD_RESPONSE), not forever: one of two
 * days ago is not sent (test_dates_and_leeway has what `portico -t` says of both). */
static void test_no_next_update_lasts_a_day(void **state)
{
    (void)state;
    expect_not_sent("server-nonext-old.ocsp", "a day after its thisUpdate, it has no nextUpdate");
}

/* A response whose thisUpdate is ahead (20 minutes, past the leeway) is not stapled, and `portico
 * -t` says it is not yet valid, not "out of date" (which sends the operator fetching a newer
 * one, when it is too new). */
static void test_ahead_listed_not_yet_valid(void **state)
{
    (void)state;
    struct tu_cmd_result res;
    int rc = check("tls_cert = %1$s/ocsp-server.pem\ntls_key = %1$s/server.key\n"
                   "tls_ocsp_response = %1$s/server-future.ocsp\n", &res);
    char want[1024];
    snprintf(want, sizeof(want), ":5: tls_ocsp_response %s/server-future.ocsp: NOT stapled for "
                                 "%s/ocsp-server.pem, good, not yet valid\n",
             t.certs->dir, t.certs->dir);
    bool listed = tu_contains(res.out, want);
    bool warned = tu_contains(res.err, "/server-future.ocsp: the staple of ");
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
    if (!listed || !warned)
        fail_msg("no \"%s\" (or no warning)", want);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staple_sent_when_asked),
        cmocka_unit_test(test_staple_per_entry_and_key_type),
        cmocka_unit_test(test_revoked_stapled_and_warned),
        cmocka_unit_test(test_load_refusals),
        cmocka_unit_test(test_check_lists_staples),
        cmocka_unit_test(test_unused_without_tls_listen),
        cmocka_unit_test(test_certid_sha256),
        cmocka_unit_test(test_expired_then_reload_refreshes),
        cmocka_unit_test(test_dates_and_leeway),
        cmocka_unit_test(test_stale_at_run_time),
        cmocka_unit_test(test_issuer_not_first_in_chain),
        cmocka_unit_test(test_not_yet_valid_not_sent),
        cmocka_unit_test(test_no_next_update_lasts_a_day),
        cmocka_unit_test(test_ahead_listed_not_yet_valid),
    };
    tu_ignore_sigpipe();
    return cmocka_run_group_tests(tests, setup, teardown);
}
