/*
 * test_sni.c — which certificate a ClientHello's name gets, on server contexts holding
 * certificates made here in memory (self-signed, P-256): the names read from each certificate
 * (subjectAltName DNS, the CN only without one; partial wildcards, wildcards of a top-level
 * domain and IP addresses left out), exact names before wildcards, a wildcard one label deep,
 * the first certificate for no name or an unknown one (or -1 when strict), and the names two
 * certificates claim told as conflicts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "portico/sni.h"

/* A server context holding a self-signed certificate of subject CN cn and subjectAltName san
 * (OpenSSL's text: "DNS:a.test,IP:127.0.0.1"; NULL: none), its key of type `type` ("P-256",
 * "P-384", "RSA", "ED25519"). */
static SSL_CTX *ctx_typed(const char *cn, const char *san, const char *type)
{
    EVP_PKEY *key = strcmp(type, "RSA") == 0       ? EVP_RSA_gen(2048)
                    : strcmp(type, "ED25519") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                                                   : EVP_EC_gen(type);
    X509 *x = X509_new();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(key);
    assert_non_null(x);
    assert_non_null(ctx);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (san) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    /* Ed25519 signs without a digest of its own choosing */
    assert_true(X509_sign(x, key, strcmp(type, "ED25519") == 0 ? NULL : EVP_sha256()) > 0);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

static SSL_CTX *ctx_for(const char *cn, const char *san)
{
    return ctx_typed(cn, san, "P-256");
}

/* ---- the names of one certificate ---- */

struct names {
    char text[512];               /* "a.test b.test " */
};

static void add_name(void *arg, const char *name)
{
    struct names *n = arg;
    size_t len = strlen(n->text);
    snprintf(n->text + len, sizeof(n->text) - len, "%s ", name);
}

static const struct {
    const char *cn;
    const char *san;
    const char *names;            /* as add_name writes them */
    bool from_cn;
    const char *why;
} names_rows[] = {
    {"ignored.test", "DNS:a.test,DNS:WWW.A.Test", "a.test www.a.test ", false,
     "DNS names, lowercase; the CN is not one of them"},
    {"cn.test", NULL, "cn.test ", true, "no subjectAltName: the CN"},
    {"cn.test", "IP:127.0.0.1", "cn.test ", true, "no DNS name (an IP address only): the CN"},
    {"*.cn.test", NULL, "*.cn.test ", true, "a wildcard CN"},
    {"x", "DNS:*.w.test,DNS:ap*.w.test,DNS:*.test,DNS:*,DNS:a..test,DNS:a b.test",
     "*.w.test ", false, "partial, top-level and bare wildcards, empty labels, blanks: none"},
    {"Not A Host Name", NULL, "", false, "a CN that is no host name: no name"},
};

static void test_cert_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(names_rows) / sizeof(names_rows[0]); i++) {
        SSL_CTX *ctx = ctx_for(names_rows[i].cn, names_rows[i].san);
        struct names got = {""};
        bool from_cn = !names_rows[i].from_cn;
        sni_cert_names(ctx, add_name, &got, &from_cn);
        if (strcmp(got.text, names_rows[i].names) != 0 || from_cn != names_rows[i].from_cn)
            fail_msg("%s: \"%s\"%s, want \"%s\"%s", names_rows[i].why, got.text,
                     from_cn ? " from the CN" : "", names_rows[i].names,
                     names_rows[i].from_cn ? " from the CN" : "");
        SSL_CTX_free(ctx);
    }
}

/* ---- the choice ---- */

/* The certificates of the choice rows, in this order: the default first, the wildcard before the
 * exact name it covers. */
static const struct {
    const char *cn, *san;
} certs[] = {
    {"default.test", "DNS:default.test"},
    {"wild", "DNS:*.example.test"},
    {"a", "DNS:a.example.test,DNS:www.a.example.test"},
    {"b.example.test", NULL},
};

static const struct {
    const char *name;             /* NULL: the ClientHello names none */
    int cert;                     /* the index it gets */
    int strict;                   /* ... and with strict SNI */
    const char *why;
} choice_rows[] = {
    {"a.example.test", 2, 2, "exact, before the wildcard that covers it"},
    {"www.a.example.test", 2, 2, "the second name of a certificate"},
    {"b.example.test", 3, 3, "exact by CN, before the wildcard"},
    {"c.example.test", 1, 1, "the wildcard: one label"},
    {"x.c.example.test", 0, -1, "two labels: not the wildcard's"},
    {"x.a.example.test", 0, -1, "under an exact name: nothing"},
    {"example.test", 0, -1, "the wildcard's parent"},
    {"A.EXAMPLE.TEST", 2, 2, "without case"},
    {"c.example.test.", 1, 1, "a final dot"},
    {"default.test", 0, 0, "the default's own name"},
    {"unknown.test", 0, -1, "a name of none: the default, or refused"},
    {NULL, 0, -1, "no name: the default, or refused"},
    {"", 0, -1, "an empty name"},
    {".", 0, -1, "a dot alone"},
    /* the wildcard's label is a whole one: main gave these the wildcard, also when strict */
    {".example.test", 0, -1, "an empty first label: no wildcard's"},
    {"*.example.test", 0, -1, "a '*' asked for: no wildcard's"},
    {"a b.example.test", 0, -1, "a blank in the first label: no wildcard's"},
};

static void attach_rows(bool strict)
{
    void *ctxs[sizeof(certs) / sizeof(certs[0])];
    int n = (int)(sizeof(certs) / sizeof(certs[0]));
    for (int i = 0; i < n; i++)
        ctxs[i] = ctx_for(certs[i].cn, certs[i].san);
    assert_int_equal(sni_attach(ctxs, n, strict, NULL, NULL, NULL, NULL), 0);
    for (size_t i = 0; i < sizeof(choice_rows) / sizeof(choice_rows[0]); i++) {
        int want = strict ? choice_rows[i].strict : choice_rows[i].cert;
        int got = sni_choose(ctxs[0], choice_rows[i].name);
        if (got != want)
            fail_msg("%s (%s)%s: certificate %d, want %d", choice_rows[i].why,
                     choice_rows[i].name ? choice_rows[i].name : "no name",
                     strict ? ", strict" : "", got, want);
    }
    SSL_CTX_free(ctxs[0]); /* and the others, which it owns */
}

static void test_choice(void **state)
{
    (void)state;
    attach_rows(false);
}

static void test_choice_strict(void **state)
{
    (void)state;
    attach_rows(true);
}

/* A context sni_attach did not touch: its one certificate, whatever the name. */
static void test_single(void **state)
{
    (void)state;
    SSL_CTX *ctx = ctx_for("one.test", "DNS:one.test");
    assert_int_equal(sni_choose(ctx, "other.test"), 0);
    assert_int_equal(sni_choose(ctx, NULL), 0);
    SSL_CTX_free(ctx);
}

/* ---- conflicts ---- */

struct told {
    char text[512];               /* "name first>second " ('=': the same names and key type) */
};

static void tell(void *arg, const char *name, int first, int second, bool same_key)
{
    struct told *t = arg;
    size_t len = strlen(t->text);
    snprintf(t->text + len, sizeof(t->text) - len, "%s %d%c%d ", name, first,
             same_key ? '=' : '>', second);
}

static const struct {
    const char *san[3];
    const char *type[3];          /* the key of each: NULL is P-256 */
    const char *told;             /* "" attaches */
    int entry[3];                 /* attached: the first certificate of each one's entry */
    const char *why;
} conflict_rows[] = {
    {{"DNS:a.test", "DNS:b.test", "DNS:A.test"}, {NULL}, "a.test 0=2 ", {0},
     "one exact name, two certificates of one key type"},
    {{"DNS:*.w.test", "DNS:*.W.test", NULL}, {NULL}, "*.w.test 0=1 ", {0}, "one wildcard twice"},
    {{"DNS:a.test,DNS:a.test", "DNS:*.a.test", NULL}, {NULL}, "", {0, 1},
     "a name twice in one certificate"},
    {{"DNS:x.w.test", "DNS:*.w.test", NULL}, {NULL}, "", {0, 1},
     "an exact name under another's wildcard"},
    {{"DNS:a.test,DNS:b.test", "DNS:b.test", "DNS:a.test,DNS:b.test"}, {NULL},
     "a.test 0=2 b.test 0>1 ", {0}, "the same names and type once, a name of another set"},
    /* one entry of several key types */
    {{"DNS:a.test", "DNS:a.test", NULL}, {NULL, "RSA"}, "", {0, 0}, "ECDSA and RSA for one name"},
    {{"DNS:a.test,DNS:b.test", "DNS:B.test,DNS:a.test", "DNS:b.test,DNS:a.test"},
     {"RSA", "ED25519", NULL}, "", {0, 0, 0}, "three types, the names in any order and case"},
    {{"DNS:a.test", "DNS:a.test,DNS:b.test", NULL}, {NULL, "RSA"}, "a.test 0>1 ", {0},
     "another type, names that overlap and differ"},
    {{"DNS:a.test", "DNS:a.test", NULL}, {"P-256", "P-384"}, "a.test 0=1 ", {0},
     "two curves are one type (one slot of OpenSSL's)"},
    {{"DNS:a.test", "DNS:a.test", "DNS:a.test"}, {NULL, "RSA", "RSA"}, "a.test 1=2 ", {0},
     "the same type told with the certificate of that type"},
    {{"DNS:a.test", "DNS:a b.test", "DNS:*"}, {NULL}, "", {0, 1, 2},
     "two of no name, one type: each its own entry (served for no name), not one"},
};

static void test_conflicts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(conflict_rows) / sizeof(conflict_rows[0]); i++) {
        void *ctxs[3];
        int n = 0;
        for (; n < 3 && conflict_rows[i].san[n]; n++)
            ctxs[n] = ctx_typed("x", conflict_rows[i].san[n],
                                conflict_rows[i].type[n] ? conflict_rows[i].type[n] : "P-256");
        struct told got = {""};
        int entry[3] = {-1, -1, -1};
        int rc = sni_attach(ctxs, n, false, NULL, tell, &got, entry);
        if (strcmp(got.text, conflict_rows[i].told) != 0 || (rc == 0) != !*conflict_rows[i].told)
            fail_msg("%s: rc %d, told \"%s\", want \"%s\"", conflict_rows[i].why, rc, got.text,
                     conflict_rows[i].told);
        for (int c = 0; rc == 0 && c < n; c++)
            assert_int_equal(entry[c], conflict_rows[i].entry[c]);
        for (int c = 0; c < (rc == 0 ? 1 : n); c++) /* attached: the first owns the others */
            SSL_CTX_free(ctxs[c]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_names),
        cmocka_unit_test(test_choice),
        cmocka_unit_test(test_choice_strict),
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_conflicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
