/*
 * certs.c — generates the test PKI with the openssl CLI (`openssl req` and `openssl ca`).
 *
 * `openssl ca` is used for every CA-signed leaf because it is the one OpenSSL 3.0 tool that takes
 * explicit -startdate/-enddate, which is how the expired certificate gets dates in the past
 * without faking the clock. Our own config file keeps the system openssl.cnf out of the way.
 */
#include "certs.h"

#include "testutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CERT_PATH_MAX 512

/* Storage behind struct test_certs: every path lives here for the life of the process. */
struct cert_store {
    char dir[CERT_PATH_MAX / 2];
    char paths[12][CERT_PATH_MAX];
};

static struct cert_store store;
static struct test_certs certs;
static const struct test_certs *certs_result;
static pthread_once_t certs_once = PTHREAD_ONCE_INIT;

static const char ca_conf_fmt[] =
    "[req]\n"
    "distinguished_name = dn\n"
    "[dn]\n"
    "[ca]\n"
    "default_ca = test_ca\n"
    "[test_ca]\n"
    "dir = %s\n"
    "database = $dir/index.txt\n"
    "new_certs_dir = $dir\n"
    "serial = $dir/serial\n"
    "default_md = sha256\n"
    "policy = any\n"
    "unique_subject = no\n"
    "copy_extensions = none\n"
    "[any]\n"
    "commonName = supplied\n"
    "[ca_ext]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[server_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1\n"
    "[wrong_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:wrong.example,DNS:ap*.partial.test\n"
    "[sni_a_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:a.sni.test,DNS:WWW.A.sni.test\n"
    "[sni_wild_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:*.sni.test\n"
    "[sni_b_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:b.sni.test\n"
    "[sni_a1_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:a.sni.test\n"
    "[rsa_server_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1\n"
    "[rsa_sni_a_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:a.sni.test,DNS:WWW.A.sni.test\n"
    "[rsa_sni_a1_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:a.sni.test\n"
    "[sni_cn_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "[client_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[self_client_ext]\n"
    "basicConstraints = critical,CA:FALSE\n"
    "extendedKeyUsage = clientAuth\n";

/* The key of a certificate to make: EC P-256 unless said. */
enum cert_key { KEY_P256, KEY_RSA, KEY_P384, KEY_ED25519 };

/* `openssl req` arguments making each key: -newkey ALG [-pkeyopt OPT] (NULL: none). */
static const struct {
    const char *alg;
    const char *opt;
} key_args[] = {
    [KEY_P256] = { "ec", "ec_paramgen_curve:prime256v1" },
    [KEY_RSA] = { "rsa", "rsa_keygen_bits:2048" },
    [KEY_P384] = { "ec", "ec_paramgen_curve:secp384r1" },
    [KEY_ED25519] = { "ed25519", NULL },
};

/* One certificate to make: its file stem, subject, config section and how it is signed. */
struct cert_row {
    const char *stem;    /* <stem>.pem and <stem>.key */
    const char *subject;
    const char *ext;     /* extension section of ca_conf_fmt */
    int self_signed;     /* 1: `req -x509`; 0: CSR signed by the CA with `openssl ca` */
    const char *start;   /* explicit notBefore for `openssl ca`, or NULL for now */
    const char *end;     /* explicit notAfter, or NULL for 10 years */
    enum cert_key key;   /* KEY_P256 (0) when not said */
};

static const struct cert_row rows[] = {
    /* The CA first: every other row but the self-signed one is signed by it. */
    { "ca", "/CN=Portico Test CA", "ca_ext", 1, NULL, NULL, KEY_P256 },
    { "server", "/CN=localhost", "server_ext", 0, NULL, NULL, KEY_P256 },
    { "self-signed", "/CN=localhost", "server_ext", 1, NULL, NULL, KEY_P256 },
    /* Long expired, and valid for one day only, so no clock skew can make it valid. */
    { "expired", "/CN=localhost", "server_ext", 0, "20200101000000Z", "20200102000000Z", KEY_P256 },
    { "wrong-name", "/CN=wrong.example", "wrong_ext", 0, NULL, NULL, KEY_P256 },
    { "client", "/CN=portico-test-client", "client_ext", 0, NULL, NULL, KEY_P256 },
};

static void certs_remove(void)
{
    if (store.dir[0] != '\0' && getenv("PORTICO_TEST_KEEP") == NULL) {
        tu_remove_tree(store.dir);
    }
}

/* "<store.dir>/<name><ext>" into buf; -1 if it does not fit. */
static int store_path(char *buf, size_t size, const char *name, const char *ext)
{
    int n = snprintf(buf, size, "%s/%s%s", store.dir, name, ext);

    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Runs one openssl command; on failure prints its output. */
static int run_openssl(const char *const argv[])
{
    struct tu_cmd_result res;
    int rc = tu_run_command(argv, 20000, &res);

    if (rc != 0) {
        fprintf(stderr, "certs: `openssl %s` failed (%d):\n%s%s", argv[1], rc, res.out, res.err);
    }
    tu_cmd_result_free(&res);
    return rc == 0 ? 0 : -1;
}

static int make_row(const struct cert_row *r, const char *conf, const char *ca_pem,
                    const char *ca_key)
{
    char key[CERT_PATH_MAX], pem[CERT_PATH_MAX], csr[CERT_PATH_MAX];

    if (store_path(key, sizeof(key), r->stem, ".key") < 0
        || store_path(pem, sizeof(pem), r->stem, ".pem") < 0
        || store_path(csr, sizeof(csr), r->stem, ".csr") < 0) {
        return -1;
    }
    const char *alg = key_args[r->key].alg, *opt = key_args[r->key].opt;
    /* without a -pkeyopt, "-nodes" takes its two places (given twice, as harmless as once) */
    const char *o1 = opt ? "-pkeyopt" : "-nodes", *o2 = opt ? opt : "-nodes";

    if (r->self_signed) {
        const char *const req[] = { "openssl", "req", "-config", conf, "-x509", "-newkey", alg,
                                    o1, o2, "-nodes", "-keyout", key, "-out", pem, "-days",
                                    "3650", "-subj", r->subject, "-extensions", r->ext, NULL };
        return run_openssl(req);
    }
    const char *const req[] = { "openssl", "req", "-config", conf, "-new", "-newkey", alg, o1,
                                o2, "-nodes", "-keyout", key, "-out", csr, "-subj", r->subject,
                                NULL };
    if (run_openssl(req) < 0) {
        return -1;
    }
    if (r->start != NULL) {
        const char *const ca[] = { "openssl", "ca", "-config", conf, "-batch", "-notext",
                                   "-cert", ca_pem, "-keyfile", ca_key, "-extensions", r->ext,
                                   "-startdate", r->start, "-enddate", r->end, "-in", csr,
                                   "-out", pem, NULL };
        return run_openssl(ca);
    }
    const char *const ca[] = { "openssl", "ca", "-config", conf, "-batch", "-notext", "-cert",
                               ca_pem, "-keyfile", ca_key, "-extensions", r->ext, "-days",
                               "3650", "-in", csr, "-out", pem, NULL };
    return run_openssl(ca);
}

static void certs_generate(void)
{
    char conf[CERT_PATH_MAX], path[CERT_PATH_MAX], text[4096];

    if (tu_make_temp_dir("portico-certs", store.dir, sizeof(store.dir)) < 0) {
        perror("certs: mkdtemp");
        return;
    }
    atexit(certs_remove);
    int n = snprintf(text, sizeof(text), ca_conf_fmt, store.dir);

    if (store_path(conf, sizeof(conf), "ca", ".cnf") < 0
        || tu_write_file(conf, text, (size_t)n) < 0
        || store_path(path, sizeof(path), "index", ".txt") < 0
        || tu_write_file(path, "", 0) < 0
        || store_path(path, sizeof(path), "serial", "") < 0
        || tu_write_file(path, "1000\n", 5) < 0) {
        fprintf(stderr, "certs: cannot write the CA files in %s\n", store.dir);
        return;
    }

    char *slot[12];

    for (size_t i = 0; i < 12; i++) {
        slot[i] = store.paths[i];
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (store_path(slot[2 * i], CERT_PATH_MAX, rows[i].stem, ".pem") < 0
            || store_path(slot[2 * i + 1], CERT_PATH_MAX, rows[i].stem, ".key") < 0
            || make_row(&rows[i], conf, slot[0], slot[1]) < 0) {
            return;
        }
    }
    certs.dir = store.dir;
    certs.ca_cert = slot[0];
    certs.ca_key = slot[1];
    certs.server_cert = slot[2];
    certs.server_key = slot[3];
    certs.self_signed_cert = slot[4];
    certs.self_signed_key = slot[5];
    certs.expired_cert = slot[6];
    certs.expired_key = slot[7];
    certs.wrong_name_cert = slot[8];
    certs.wrong_name_key = slot[9];
    certs.client_cert = slot[10];
    certs.client_key = slot[11];
    certs_result = &certs;
}

const struct test_certs *certs_get(void)
{
    pthread_once(&certs_once, certs_generate);
    return certs_result;
}

/* ---- certificates with dates relative to now ---- */

#define DAY (24LL * 3600)

/* One dated certificate to make: its file stem and its dates in seconds from now. */
static const struct {
    const char *stem;
    long long start, end;
} dated_rows[] = {
    {"expired-yesterday", -30 * DAY, -DAY},
    {"valid-tomorrow", DAY, 365 * DAY},
    {"expires-3d", -DAY, 3 * DAY},
    {"expires-100d", -DAY, 100 * DAY},
};

static struct {
    char paths[8][CERT_PATH_MAX];
} dated_store;
static struct test_dated_certs dated;
static const struct test_dated_certs *dated_result;
static pthread_once_t dated_once = PTHREAD_ONCE_INIT;

/* t as `openssl ca` takes a date: YYYYMMDDHHMMSSZ (UTC). */
static void ca_date(long long t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y%m%d%H%M%SZ", &tm);
}

static void dated_generate(void)
{
    const struct test_certs *c = certs_get();
    char conf[CERT_PATH_MAX];
    struct test_dated_cert *out[] = {&dated.expired_yesterday, &dated.valid_tomorrow,
                                     &dated.expires_in_3_days, &dated.expires_in_100_days};
    long long now = (long long)time(NULL);

    if (c == NULL || store_path(conf, sizeof(conf), "ca", ".cnf") < 0) {
        return;
    }
    for (size_t i = 0; i < sizeof(dated_rows) / sizeof(dated_rows[0]); i++) {
        char start[32], end[32];
        long long nb = now + dated_rows[i].start, na = now + dated_rows[i].end;

        ca_date(nb, start, sizeof(start));
        ca_date(na, end, sizeof(end));
        const struct cert_row row = { dated_rows[i].stem, "/CN=localhost", "server_ext", 0,
                                      start, end, KEY_P256 };
        char *pem = dated_store.paths[2 * i], *key = dated_store.paths[2 * i + 1];

        if (store_path(pem, CERT_PATH_MAX, row.stem, ".pem") < 0
            || store_path(key, CERT_PATH_MAX, row.stem, ".key") < 0
            || make_row(&row, conf, c->ca_cert, c->ca_key) < 0) {
            return;
        }
        *out[i] = (struct test_dated_cert){ pem, key, nb, na };
    }
    dated_result = &dated;
}

const struct test_dated_certs *certs_get_dated(void)
{
    pthread_once(&dated_once, dated_generate);
    return dated_result;
}

/* ---- a chain with an intermediate CA ---- */

static struct {
    char paths[13][CERT_PATH_MAX];
} chained_store;
static struct test_chained_certs chained;
static const struct test_chained_certs *chained_result;
static pthread_once_t chained_once = PTHREAD_ONCE_INIT;

/* The leaf and the intermediate, in that order, into chain (a server's full chain file). */
static int write_chain(const char *leaf, const char *inter, const char *chain)
{
    size_t leaf_len = 0, inter_len = 0;
    char *a = tu_read_file(leaf, &leaf_len), *b = tu_read_file(inter, &inter_len);
    int rc = -1;

    if (a != NULL && b != NULL) {
        char *both = malloc(leaf_len + inter_len);

        if (both != NULL) {
            memcpy(both, a, leaf_len);
            memcpy(both + leaf_len, b, inter_len);
            rc = tu_write_file(chain, both, leaf_len + inter_len);
            free(both);
        }
    }
    free(a);
    free(b);
    return rc < 0 ? -1 : 0;
}

static void chained_generate(void)
{
    const struct test_certs *c = certs_get();
    char conf[CERT_PATH_MAX];
    const struct cert_row inter = { "intermediate", "/CN=Portico Test Intermediate", "ca_ext", 0,
                                    NULL, NULL, KEY_P256 };
    const struct cert_row leaf = { "chained", "/CN=localhost", "server_ext", 0, NULL, NULL, KEY_P256 };
    const struct cert_row client = { "chained-client", "/CN=portico-chained-client", "client_ext",
                                     0, NULL, NULL, KEY_P256 };
    const struct cert_row inter2 = { "intermediate-2", "/CN=Portico Test Intermediate 2",
                                     "ca_ext", 0, NULL, NULL, KEY_P256 };
    const struct cert_row deep = { "deep-client", "/CN=portico-deep-client", "client_ext", 0,
                                   NULL, NULL, KEY_P256 };
    char **p = (char *[]){chained_store.paths[8], chained_store.paths[9], chained_store.paths[10],
                          chained_store.paths[11], chained_store.paths[12]};
    char *inter_pem = chained_store.paths[0], *inter_key = chained_store.paths[1];
    char *leaf_pem = chained_store.paths[2], *chain = chained_store.paths[3];

    if (c == NULL || store_path(conf, sizeof(conf), "ca", ".cnf") < 0
        || store_path(inter_pem, CERT_PATH_MAX, inter.stem, ".pem") < 0
        || store_path(inter_key, CERT_PATH_MAX, inter.stem, ".key") < 0
        || store_path(leaf_pem, CERT_PATH_MAX, leaf.stem, ".pem") < 0
        || store_path(chain, CERT_PATH_MAX, "chained-full", ".pem") < 0
        || make_row(&inter, conf, c->ca_cert, c->ca_key) < 0
        || make_row(&leaf, conf, inter_pem, inter_key) < 0
        || write_chain(leaf_pem, inter_pem, chain) < 0
        || store_path(chained_store.paths[4], CERT_PATH_MAX, leaf.stem, ".key") < 0
        || store_path(chained_store.paths[5], CERT_PATH_MAX, client.stem, ".pem") < 0
        || store_path(chained_store.paths[6], CERT_PATH_MAX, client.stem, ".key") < 0
        || store_path(chained_store.paths[7], CERT_PATH_MAX, "chained-client-full", ".pem") < 0
        || make_row(&client, conf, inter_pem, inter_key) < 0
        || write_chain(chained_store.paths[5], inter_pem, chained_store.paths[7]) < 0
        /* two intermediates: deep-client, intermediate-2, intermediate */
        || store_path(p[0], CERT_PATH_MAX, inter2.stem, ".pem") < 0
        || store_path(p[1], CERT_PATH_MAX, inter2.stem, ".key") < 0
        || store_path(p[2], CERT_PATH_MAX, deep.stem, ".pem") < 0
        || store_path(p[3], CERT_PATH_MAX, deep.stem, ".key") < 0
        || store_path(p[4], CERT_PATH_MAX, "deep-client-full", ".pem") < 0
        || make_row(&inter2, conf, inter_pem, inter_key) < 0
        || make_row(&deep, conf, p[0], p[1]) < 0
        || write_chain(p[2], p[0], p[4]) < 0
        || write_chain(p[4], inter_pem, p[4]) < 0) {
        return;
    }
    chained.intermediate_cert = inter_pem;
    chained.leaf_cert = leaf_pem;
    chained.full_chain = chain;
    chained.key = chained_store.paths[4];
    chained.client_chain = chained_store.paths[7];
    chained.client_key = chained_store.paths[6];
    chained.deep_chain = p[4];
    chained.deep_key = p[3];
    chained_result = &chained;
}

const struct test_chained_certs *certs_get_chained(void)
{
    pthread_once(&chained_once, chained_generate);
    return chained_result;
}

/* ---- several names on one listener (SNI) ---- */

static const struct cert_row sni_rows[] = {
    { "sni-a", "/CN=sni-a", "sni_a_ext", 0, NULL, NULL, KEY_P256 },
    { "sni-wild", "/CN=sni-wild", "sni_wild_ext", 0, NULL, NULL, KEY_P256 },
    { "sni-b", "/CN=sni-b", "sni_b_ext", 0, NULL, NULL, KEY_P256 },
    { "sni-cn", "/CN=cn.sni.test", "sni_cn_ext", 0, NULL, NULL, KEY_P256 },
    { "sni-a2", "/CN=sni-a2", "sni_a_ext", 0, NULL, NULL, KEY_P256 },
};

static struct {
    char paths[10][CERT_PATH_MAX];
} sni_store;
static struct test_sni_certs sni;
static const struct test_sni_certs *sni_result;
static pthread_once_t sni_once = PTHREAD_ONCE_INIT;

static void sni_generate(void)
{
    const struct test_certs *c = certs_get();
    char conf[CERT_PATH_MAX];
    const char **out[] = { &sni.a_cert, &sni.a_key, &sni.wild_cert, &sni.wild_key, &sni.b_cert,
                           &sni.b_key, &sni.cn_cert, &sni.cn_key, &sni.a2_cert, &sni.a2_key };

    if (c == NULL || store_path(conf, sizeof(conf), "ca", ".cnf") < 0) {
        return;
    }
    for (size_t i = 0; i < sizeof(sni_rows) / sizeof(sni_rows[0]); i++) {
        char *pem = sni_store.paths[2 * i], *key = sni_store.paths[2 * i + 1];

        if (store_path(pem, CERT_PATH_MAX, sni_rows[i].stem, ".pem") < 0
            || store_path(key, CERT_PATH_MAX, sni_rows[i].stem, ".key") < 0
            || make_row(&sni_rows[i], conf, c->ca_cert, c->ca_key) < 0) {
            return;
        }
        *out[2 * i] = pem;
        *out[2 * i + 1] = key;
    }
    sni_result = &sni;
}

const struct test_sni_certs *certs_get_sni(void)
{
    pthread_once(&sni_once, sni_generate);
    return sni_result;
}

/* ---- one name set, several key types ---- */

static const struct cert_row dual_rows[] = {
    { "sni-a-rsa", "/CN=sni-a-rsa", "rsa_sni_a_ext", 0, NULL, NULL, KEY_RSA },
    { "sni-a-ed25519", "/CN=sni-a-ed25519", "sni_a_ext", 0, NULL, NULL, KEY_ED25519 },
    { "sni-a-p384", "/CN=sni-a-p384", "sni_a_ext", 0, NULL, NULL, KEY_P384 },
    { "sni-a1-rsa", "/CN=sni-a1-rsa", "rsa_sni_a1_ext", 0, NULL, NULL, KEY_RSA },
    { "server-rsa", "/CN=localhost-rsa", "rsa_server_ext", 0, NULL, NULL, KEY_RSA },
};

static struct {
    char paths[10][CERT_PATH_MAX];
} dual_store;
static struct test_dual_certs dual;
static const struct test_dual_certs *dual_result;
static pthread_once_t dual_once = PTHREAD_ONCE_INIT;

static void dual_generate(void)
{
    const struct test_certs *c = certs_get();
    char conf[CERT_PATH_MAX];
    const char **out[] = { &dual.a_rsa_cert, &dual.a_rsa_key, &dual.a_ed25519_cert,
                           &dual.a_ed25519_key, &dual.a_p384_cert, &dual.a_p384_key,
                           &dual.a1_rsa_cert, &dual.a1_rsa_key, &dual.server_rsa_cert,
                           &dual.server_rsa_key };

    if (c == NULL || store_path(conf, sizeof(conf), "ca", ".cnf") < 0) {
        return;
    }
    for (size_t i = 0; i < sizeof(dual_rows) / sizeof(dual_rows[0]); i++) {
        char *pem = dual_store.paths[2 * i], *key = dual_store.paths[2 * i + 1];

        if (store_path(pem, CERT_PATH_MAX, dual_rows[i].stem, ".pem") < 0
            || store_path(key, CERT_PATH_MAX, dual_rows[i].stem, ".key") < 0
            || make_row(&dual_rows[i], conf, c->ca_cert, c->ca_key) < 0) {
            return;
        }
        *out[2 * i] = pem;
        *out[2 * i + 1] = key;
    }
    dual_result = &dual;
}

const struct test_dual_certs *certs_get_dual(void)
{
    pthread_once(&dual_once, dual_generate);
    return dual_result;
}

/* ---- client certificates (mutual TLS) ---- */

/* The other CA first: the row after it is signed by it, the rest by certs_get's CA. */
static const struct cert_row mtls_rows[] = {
    { "other-ca", "/CN=Portico Other CA", "ca_ext", 1, NULL, NULL, KEY_P256 },
    { "other-client", "/CN=portico-other-client", "client_ext", 0, NULL, NULL, KEY_P256 },
    { "expired-client", "/CN=portico-expired-client", "client_ext", 0, "20200101000000Z",
      "20200102000000Z", KEY_P256 },
    { "client-2", "/CN=portico-test-client-2", "client_ext", 0, NULL, NULL, KEY_P256 },
};

static struct {
    char paths[8][CERT_PATH_MAX];
} mtls_store;
static struct test_mtls_certs mtls;
static const struct test_mtls_certs *mtls_result;
static pthread_once_t mtls_once = PTHREAD_ONCE_INIT;

static void mtls_generate(void)
{
    const struct test_certs *c = certs_get();
    char conf[CERT_PATH_MAX];
    const char **out[] = { &mtls.other_ca_cert, &mtls.other_ca_key, &mtls.other_client_cert,
                           &mtls.other_client_key, &mtls.expired_client_cert,
                           &mtls.expired_client_key, &mtls.client2_cert, &mtls.client2_key };

    if (c == NULL || store_path(conf, sizeof(conf), "ca", ".cnf") < 0) {
        return;
    }
    for (size_t i = 0; i < sizeof(mtls_rows) / sizeof(mtls_rows[0]); i++) {
        char *pem = mtls_store.paths[2 * i], *key = mtls_store.paths[2 * i + 1];
        bool by_other = i == 1;

        if (store_path(pem, CERT_PATH_MAX, mtls_rows[i].stem, ".pem") < 0
            || store_path(key, CERT_PATH_MAX, mtls_rows[i].stem, ".key") < 0
            || make_row(&mtls_rows[i], conf, by_other ? mtls_store.paths[0] : c->ca_cert,
                        by_other ? mtls_store.paths[1] : c->ca_key) < 0) {
            return;
        }
        *out[2 * i] = pem;
        *out[2 * i + 1] = key;
    }
    mtls_result = &mtls;
}

const struct test_mtls_certs *certs_get_mtls(void)
{
    pthread_once(&mtls_once, mtls_generate);
    return mtls_result;
}

/* ---- revocation, odd dates and odd names (mutual TLS) ---- */

/* The subject of the odd client: a line feed that would begin a forged log line, SOH, DEL, the
 * C1 control CSI (U+009B, a terminal's escape) and UTF-8 that is no control. */
static const char odd_subject[] = "/CN=portico-odd\nINFO forged line\x01\x7f\xc2\x9b/O=Caf\xc3\xa9";

static struct {
    char paths[14][CERT_PATH_MAX];
} extra_store;
static struct test_mtls_extra_certs extra;
static const struct test_mtls_extra_certs *extra_result;
static pthread_once_t extra_once = PTHREAD_ONCE_INIT;

/* `openssl ca -gencrl` of the CA ca_pem/ca_key into out: valid a week, or between the given
 * dates (NULL: now). What it lists is what the shared database says is revoked by then. */
static int make_crl(const char *conf, const char *ca_pem, const char *ca_key, const char *out,
                    const char *last, const char *next)
{
    if (last != NULL) {
        const char *const argv[] = { "openssl", "ca", "-config", conf, "-gencrl", "-cert",
                                     ca_pem, "-keyfile", ca_key, "-crl_lastupdate", last,
                                     "-crl_nextupdate", next, "-out", out, NULL };
        return run_openssl(argv);
    }
    const char *const argv[] = { "openssl", "ca", "-config", conf, "-gencrl", "-cert", ca_pem,
                                 "-keyfile", ca_key, "-crldays", "7", "-out", out, NULL };
    return run_openssl(argv);
}

static void extra_generate(void)
{
    const struct test_certs *c = certs_get();
    const struct test_mtls_certs *m = certs_get_mtls();
    char conf[CERT_PATH_MAX], start[32], end[32];
    char **p = (char *[]){ extra_store.paths[0], extra_store.paths[1], extra_store.paths[2],
                           extra_store.paths[3], extra_store.paths[4], extra_store.paths[5],
                           extra_store.paths[6], extra_store.paths[7], extra_store.paths[8],
                           extra_store.paths[9], extra_store.paths[10], extra_store.paths[11],
                           extra_store.paths[12], extra_store.paths[13] };
    long long now = (long long)time(NULL);

    ca_date(now + DAY, start, sizeof(start));
    ca_date(now + 365 * DAY, end, sizeof(end));
    const struct cert_row revoked = { "revoked-client", "/CN=portico-revoked-client",
                                      "client_ext", 0, NULL, NULL, KEY_P256 };
    const struct cert_row later = { "later-client", "/CN=portico-later-client", "client_ext", 0,
                                    start, end, KEY_P256 };
    if (c == NULL || m == NULL || store_path(conf, sizeof(conf), "ca", ".cnf") < 0) {
        return;
    }
    static const struct {
        const char *stem, *ext;
    } names[] = { { "revoked-client", ".pem" }, { "revoked-client", ".key" },
                  { "later-client", ".pem" },   { "later-client", ".key" },
                  { "odd-client", ".pem" },     { "odd-client", ".key" },
                  { "crl-empty", ".pem" },      { "crl", ".pem" },
                  { "crl-expired", ".pem" },    { "crl-other", ".pem" },
                  { "odd-ca", ".pem" } };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (store_path(p[i], CERT_PATH_MAX, names[i].stem, names[i].ext) < 0) {
            return;
        }
    }
    const char *const odd[] = { "openssl", "req", "-config", conf, "-x509", "-newkey", "ec",
                                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                                p[5], "-out", p[4], "-days", "3650", "-utf8", "-subj",
                                odd_subject, "-extensions", "self_client_ext", NULL };
    const char *const revoke[] = { "openssl", "ca", "-config", conf, "-revoke", p[0], "-cert",
                                   c->ca_cert, "-keyfile", c->ca_key, NULL };
    if (make_row(&revoked, conf, c->ca_cert, c->ca_key) < 0
        || make_row(&later, conf, c->ca_cert, c->ca_key) < 0 || run_openssl(odd) < 0
        || make_crl(conf, c->ca_cert, c->ca_key, p[6], NULL, NULL) < 0
        || run_openssl(revoke) < 0
        || make_crl(conf, c->ca_cert, c->ca_key, p[7], NULL, NULL) < 0
        || make_crl(conf, c->ca_cert, c->ca_key, p[8], "20200101000000Z", "20200102000000Z") < 0
        || make_crl(conf, m->other_ca_cert, m->other_ca_key, p[9], NULL, NULL) < 0
        || write_chain(c->ca_cert, p[4], p[10]) < 0) {
        return;
    }
    extra = (struct test_mtls_extra_certs){
        .revoked_client_cert = p[0], .revoked_client_key = p[1],
        .later_client_cert = p[2], .later_client_key = p[3],
        .odd_client_cert = p[4], .odd_client_key = p[5],
        .crl_empty = p[6], .crl = p[7], .crl_expired = p[8], .crl_other = p[9],
        .ca_and_odd = p[10],
    };
    extra_result = &extra;
}

const struct test_mtls_extra_certs *certs_get_mtls_extra(void)
{
    pthread_once(&extra_once, extra_generate);
    return extra_result;
}
