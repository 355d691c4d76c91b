/*
 * config_helpers.h — helpers shared by the config and route unit tests: load an INI text and
 * capture its messages, compare the messages line by line, write test certificates.
 * Header-only; every helper is static and marked unused so that each test binary takes what it
 * needs.
 *
 * Include after <cmocka.h>.
 */
#ifndef PORTICO_CONFIG_HELPERS_H
#define PORTICO_CONFIG_HELPERS_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portico/config.h"

#define CFG_HELPER static __attribute__((unused))

/* A valid upstream, appended where a row needs one but is not about it (2 lines). */
#define UP "[upstream app]\norigin = sim\n"

/* Most messages a table row expects. */
#define MAX_ERR 4

/* Loads text (NULL: the file at name) as name, relative paths under dir; the errors printed
 * land in *errors (malloc'd, caller frees). */
CFG_HELPER struct config *load_as(const char *text, const char *name, const char *dir,
                                  int *nerrors, char **errors)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    *nerrors = -1;
    struct config *cfg = text ? cfg_load_string(text, name, dir, f, nerrors)
                              : cfg_load(name, f, nerrors);
    fclose(f);
    *errors = buf;
    return cfg;
}

/* Loads text as "test.ini" with relative paths under dir; see load_as. */
CFG_HELPER struct config *load(const char *text, const char *dir, int *nerrors, char **errors)
{
    return load_as(text, "test.ini", dir, nerrors, errors);
}

/* Loads text that must be valid; fails the test with the messages otherwise. */
CFG_HELPER struct config *load_ok(const char *text)
{
    int n;
    char *errors;
    struct config *cfg = load(text, "/etc/portico", &n, &errors);
    if (!cfg || n != 0)
        fail_msg("config refused (%d errors):\n%s--- config:\n%s", n, errors, text);
    assert_string_equal(errors, "");
    free(errors);
    return cfg;
}

/* Splits errors into lines and compares them with want[] (up to MAX_ERR, NULL-terminated); a
 * wanted line ending in "..." only has to start like it (an OpenSSL reason follows). */
CFG_HELPER void check_errors(const char *why, const char *errors, int nerrors,
                             const char *const want[MAX_ERR])
{
    int nwant = 0;
    while (nwant < MAX_ERR && want[nwant])
        nwant++;
    const char *p = errors;
    for (int i = 0; i < nwant; i++) {
        const char *nl = strchr(p, '\n');
        size_t wlen = strlen(want[i]);
        bool prefix = wlen >= 3 && strcmp(want[i] + wlen - 3, "...") == 0;
        size_t cmp = prefix ? wlen - 3 : wlen;
        if (!nl || (prefix ? (size_t)(nl - p) < cmp : (size_t)(nl - p) != cmp) ||
            memcmp(p, want[i], cmp) != 0)
            fail_msg("%s: line %d of the errors:\n%s\nwant:\n%s", why, i + 1, errors, want[i]);
        p = nl + 1;
    }
    if (*p)
        fail_msg("%s: unexpected errors:\n%s", why, p);
    if (nerrors != nwant)
        fail_msg("%s: nerrors %d, want %d", why, nerrors, nwant);
}

/* Writes a new P-256 key as dir/name; returns it (caller frees). */
CFG_HELPER EVP_PKEY *write_test_key(const char *dir, const char *name)
{
    char path[256];
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return key;
}

/* At path, a self-signed certificate for localhost with key, valid from `from` to `to` seconds
 * from now. Returns its notAfter (Unix time). */
CFG_HELPER long long write_self_signed(const char *path, EVP_PKEY *key, long from, long to)
{
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    time_t now = time(NULL);
    X509_time_adj_ex(X509_getm_notBefore(x), 0, from, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), 0, to, &now);
    X509_set_pubkey(x, key);
    X509_NAME *subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                               -1, -1, 0);
    X509_set_issuer_name(x, subject);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
    return (long long)now + to;
}

/* In dir: NAME.pem, a self-signed certificate for localhost valid from `from` to `to` seconds
 * from now, and its key NAME.key. Returns its notAfter (Unix time). */
CFG_HELPER long long write_dated_cert(const char *dir, const char *name, long from, long to)
{
    char path[256];
    snprintf(path, sizeof(path), "%s.key", name);
    EVP_PKEY *key = write_test_key(dir, path);
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    long long not_after = write_self_signed(path, key, from, to);
    EVP_PKEY_free(key);
    return not_after;
}

/* In dir: cert.pem, a self-signed certificate for localhost with its key key.pem, and key2.pem,
 * a key of no certificate. */
CFG_HELPER void write_test_certs(const char *dir)
{
    char path[256];
    EVP_PKEY *key = write_test_key(dir, "key.pem");
    EVP_PKEY_free(write_test_key(dir, "key2.pem"));
    snprintf(path, sizeof(path), "%s/cert.pem", dir);
    write_self_signed(path, key, 0, 100 * 86400L); /* far from expiring: no warning */
    EVP_PKEY_free(key);
}

#endif
