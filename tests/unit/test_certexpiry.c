/*
 * test_certexpiry.c — certificate dates judged and put in words: the UTC date form, spans
 * rounded down to their largest unit, the edges of "expired" and "expires soon", and the
 * warnings a context's leaf and chain give at a time passed in (no clock is read).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "portico/certexpiry.h"

#define DAY INT64_C(86400)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_format_time(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        const char *want;
    } rows[] = {
        {0, "1970-01-01 00:00:00 UTC"},
        {-1, "1969-12-31 23:59:59 UTC"},          /* before the epoch: a CA's odd notBefore */
        {1796040000, "2026-11-30 12:00:00 UTC"},  /* the README's example */
        {INT64_C(4102444800), "2100-01-01 00:00:00 UTC"}, /* past 2038: 64-bit time */
        {INT64_C(253402300799), "9999-12-31 23:59:59 UTC"}, /* RFC 5280's "no end" date */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char buf[48];
        certexpiry_format_time(rows[i].t, buf, sizeof(buf));
        assert_string_equal(buf, rows[i].want);
    }
}

static void test_format_span(void **state)
{
    (void)state;
    static const struct {
        int64_t seconds;
        const char *want;
    } rows[] = {
        {0, "less than a minute"},
        {59, "less than a minute"},
        {60, "1 minute"},
        {3599, "59 minutes"},
        {3600, "1 hour"},
        {DAY - 1, "23 hours"},        /* rounded down: never "1 day" before it is one */
        {DAY, "1 day"},
        {7 * DAY - 1, "6 days"},
        {1000 * DAY, "1000 days"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char buf[48];
        certexpiry_format_span(rows[i].seconds, buf, sizeof(buf));
        assert_string_equal(buf, rows[i].want);
    }
}

/* The edges: notAfter is the last valid second; 14 days exactly is still "soon". */
static void test_judge_and_describe(void **state)
{
    (void)state;
    const int64_t end = 1796040000; /* 2026-11-30 12:00:00 UTC */
    const struct cert_dates d = {end - 90 * DAY, end};
    static const struct {
        int64_t now_minus_end;    /* now - notAfter */
        enum cert_validity want;
        const char *words;
    } rows[] = {
        {-91 * DAY, CERT_NOT_YET_VALID,
         "is not yet valid: valid from 2026-09-01 12:00:00 UTC (in 1 day)"},
        {-90 * DAY, CERT_VALID, ""},                  /* notBefore itself is valid */
        {-14 * DAY - 1, CERT_VALID, ""},
        {-14 * DAY, CERT_EXPIRING, "expires in 14 days, on 2026-11-30 12:00:00 UTC"},
        {-6 * DAY - 3600, CERT_EXPIRING, "expires in 6 days, on 2026-11-30 12:00:00 UTC"},
        {-30, CERT_EXPIRING, "expires in less than a minute, on 2026-11-30 12:00:00 UTC"},
        {0, CERT_EXPIRING, "expires in less than a minute, on 2026-11-30 12:00:00 UTC"},
        {1, CERT_EXPIRED, "expired on 2026-11-30 12:00:00 UTC (less than a minute ago)"},
        {6 * DAY, CERT_EXPIRED, "expired on 2026-11-30 12:00:00 UTC (6 days ago)"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        int64_t now = end + rows[i].now_minus_end;
        char buf[256];
        enum cert_validity v = certexpiry_judge(&d, now);
        assert_int_equal(v, rows[i].want);
        certexpiry_describe(v, &d, now, buf, sizeof(buf));
        assert_string_equal(buf, rows[i].words);
    }
}

/* A certificate for CN `cn`, valid [nb, na], self-signed by key. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, int64_t nb, int64_t na)
{
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na));
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

struct seen {
    char lines[4][300];
    int n;
};

static void collect(void *arg, const char *text)
{
    struct seen *s = arg;
    assert_true(s->n < 4);
    snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s", text);
}

/* The leaf decides (its notAfter is the one kept); a chain certificate that ends before it is
 * named by its place; one that ends after it is not looked at. */
static void test_leaf_and_chain(void **state)
{
    (void)state;
    const int64_t t = 1796040000;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *leaf = make_cert(key, "leaf", t - DAY, t + 30 * DAY);
    X509 *inter = make_cert(key, "inter", t - DAY, t + 5 * DAY);
    X509 *root = make_cert(key, "root", t - DAY, t + 3650 * DAY);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, leaf), 1);
    assert_int_equal(SSL_CTX_add1_chain_cert(ctx, inter), 1);
    assert_int_equal(SSL_CTX_add1_chain_cert(ctx, root), 1);
    static const struct {
        int64_t now;
        int n;
        const char *want[2];
    } rows[] = {
        {t, 1, {"certificate 2 of the chain (/CN=inter) expires in 5 days, on 2026-12-05 "
                "12:00:00 UTC, before the leaf"}},
        {t + 10 * DAY, 1, {"certificate 2 of the chain (/CN=inter) expired on 2026-12-05 "
                           "12:00:00 UTC (5 days ago), before the leaf"}},
        {t + 31 * DAY, 2, {"the certificate expired on 2026-12-30 12:00:00 UTC (1 day ago)",
                           "certificate 2 of the chain (/CN=inter) expired on 2026-12-05 "
                           "12:00:00 UTC (26 days ago), before the leaf"}},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct seen s = {.n = 0};
        int64_t not_after = 0;
        assert_int_equal(certexpiry_check_own(ctx, rows[i].now, &not_after, collect, &s), 0);
        assert_true(not_after == t + 30 * DAY);
        assert_int_equal(s.n, rows[i].n);
        for (int k = 0; k < s.n; k++)
            assert_string_equal(s.lines[k], rows[i].want[k]);
    }
    /* a chain certificate that ends with the leaf, to the second, ends no earlier: only the
     * leaf's own warning */
    X509 *twin = make_cert(key, "twin", t - DAY, t + 30 * DAY);
    SSL_CTX *same = SSL_CTX_new(TLS_server_method());
    assert_non_null(same);
    assert_int_equal(SSL_CTX_use_certificate(same, leaf), 1);
    assert_int_equal(SSL_CTX_add1_chain_cert(same, twin), 1);
    struct seen one = {.n = 0};
    int64_t ends = 0;
    assert_int_equal(certexpiry_check_own(same, t + 31 * DAY, &ends, collect, &one), 0);
    assert_int_equal(one.n, 1);
    assert_string_equal(one.lines[0],
                        "the certificate expired on 2026-12-30 12:00:00 UTC (1 day ago)");
    SSL_CTX_free(same);
    X509_free(twin);
    /* a context without a certificate (a client's with none): nothing to judge */
    SSL_CTX *bare = SSL_CTX_new(TLS_client_method());
    int64_t unused = 0;
    assert_int_equal(certexpiry_check_own(bare, t, &unused, collect, NULL), -1);
    SSL_CTX_free(bare);
    SSL_CTX_free(ctx);
    X509_free(leaf);
    X509_free(inter);
    X509_free(root);
    EVP_PKEY_free(key);
}

/* A CA file: each bad certificate by subject, `max` of them, then a count of the rest. */
static void test_trusted(void **state)
{
    (void)state;
    const int64_t t = 1796040000;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    const char *const names[] = {"ca0", "ca1", "ca2"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        X509 *x = make_cert(key, names[i], t - 10 * DAY, t - DAY); /* all expired */
        assert_int_equal(X509_STORE_add_cert(store, x), 1);
        X509_free(x);
    }
    X509 *fine = make_cert(key, "fine", t - 10 * DAY, t + 3650 * DAY);
    assert_int_equal(X509_STORE_add_cert(store, fine), 1);
    X509_free(fine);
    struct seen s = {.n = 0};
    certexpiry_check_trusted(ctx, t, 1, collect, &s);
    assert_int_equal(s.n, 2);
    assert_non_null(strstr(s.lines[0], "the CA certificate /CN=ca"));
    assert_non_null(strstr(s.lines[0], " expired on 2026-11-29 12:00:00 UTC (1 day ago)"));
    assert_string_equal(s.lines[1], "2 more CA certificates expired, expiring or not yet valid");
    s.n = 0;
    certexpiry_check_trusted(ctx, t - 2 * DAY, 3, collect, &s); /* all three expire soon */
    assert_int_equal(s.n, 3);
    SSL_CTX_free(ctx);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_format_span),
        cmocka_unit_test(test_judge_and_describe),
        cmocka_unit_test(test_leaf_and_chain),
        cmocka_unit_test(test_trusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
