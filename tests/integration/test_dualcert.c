/*
 * test_dualcert.c — one set of names served with a certificate of each key type (RSA, ECDSA,
 * Ed25519), as nginx's two ssl_certificate lines or HAProxy's .rsa/.ecdsa bundles.
 *
 * One Portico serves localhost (the default) with an ECDSA and an RSA certificate, a.sni.test
 * with ECDSA, RSA and Ed25519, and b.sni.test with ECDSA alone. A client offers only the
 * signature algorithms of one key type (SSL_CTX_set1_sigalgs_list, as `openssl s_client
 * -sigalgs` does) over TLS 1.2 and 1.3, with SNI and without, and reads the CN of the
 * certificate it got. Sessions resume within the names' entry whatever key type the next client
 * asks for, never across names. portico_tls_handshakes_total counts each certificate sent. Other
 * Porticos: `portico -t` refusing two of one key type for the same names, or names that
 * overlap and differ, each at its line naming the other's, and naming each certificate when it
 * passes; a reload from one key type to two under a live connection.
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../support/certs.h"
#include "../support/harness.h"
#include "../support/tls_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static struct {
    struct harness *h;            /* the six-certificate Portico */
    const struct test_certs *certs;
    const struct test_dual_certs *dual;
} t;

/* Three entries: localhost (ECDSA, RSA: the default), a.sni.test (ECDSA, RSA, Ed25519, the RSA
 * first: the order of the lines chooses nothing) and b.sni.test (ECDSA alone). Lines 5-16. */
static const char pairs_fmt[] = "tls_cert = {{certs}}/server.pem\n"        /* 5: localhost */
                                "tls_key = {{certs}}/server.key\n"
                                "tls_cert = {{certs}}/server-rsa.pem\n"    /* 7: localhost */
                                "tls_key = {{certs}}/server-rsa.key\n"
                                "tls_cert = {{certs}}/sni-a-rsa.pem\n"     /* 9: a.sni.test */
                                "tls_key = {{certs}}/sni-a-rsa.key\n"
                                "tls_cert = {{certs}}/sni-a.pem\n"         /* 11: a.sni.test */
                                "tls_key = {{certs}}/sni-a.key\n"
                                "tls_cert = {{certs}}/sni-a-ed25519.pem\n" /* 13: a.sni.test */
                                "tls_key = {{certs}}/sni-a-ed25519.key\n"
                                "tls_cert = {{certs}}/sni-b.pem\n"         /* 15: b.sni.test */
                                "tls_key = {{certs}}/sni-b.key\n";

/* The configuration of a Portico with a TLS listener and an admin one, [proxy] lines 1-4, then
 * `pairs` (a format of no argument but placeholders), then the simulator as origin. */
static const char config_fmt[] = "[proxy]\n"
                                 "listen = 127.0.0.1:{{port:tls}} tls\n"
                                 "admin_listen = 127.0.0.1:{{port:admin}}\n"
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

static int setup(void **state)
{
    (void)state;
    t.certs = certs_get();
    if (!t.certs || !certs_get_sni() || !(t.dual = certs_get_dual()))
        return -1;
    t.h = start_with(pairs_fmt);
    return 0;
}

/* A stop, not a kill: its exit says whether it ended clean (under ASan, without a leak). */
static int teardown(void **state)
{
    (void)state;
    int rc = harness_stop(t.h);
    harness_free(t.h);
    return rc == 0 ? 0 : -1;
}

/* ---- the client ---- */

/* The signature algorithms a client offers: one key type's, or OpenSSL's whole list. */
enum offer { OFFER_ALL, OFFER_ECDSA, OFFER_RSA, OFFER_ED25519 };

static const char *const offer_sigalgs[] = {
    [OFFER_ALL] = NULL,
    [OFFER_ECDSA] = "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384",
    /* PSS for TLS 1.3 (which signs with nothing else), PKCS#1 too for TLS 1.2 */
    [OFFER_RSA] = "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pkcs1_sha256",
    [OFFER_ED25519] = "ed25519",
};

static const char *const offer_names[] = {
    [OFFER_ALL] = "all", [OFFER_ECDSA] = "ecdsa", [OFFER_RSA] = "rsa", [OFFER_ED25519] = "ed25519",
};

/* What one connection saw. */
struct hello {
    char cn[128];                 /* the CN of the certificate served */
    int reused;                   /* 1: the session offered was resumed */
    int status;                   /* the answer to GET /status/200, 0: none read */
    char why[256];                /* why the handshake failed */
};

/* One TLS connection to port, naming sni (NULL: no server_name), TLS `version` only, offering
 * the signature algorithms of `offer` and *sess (NULL or pointing to NULL: none), keeping the
 * new session there; asks GET /status/200. 0, or -1 (why in out). */
static int hello(uint16_t port, const char *sni, int version, enum offer offer,
                 SSL_SESSION **sess, struct hello *out)
{
    struct tls_client_opts o = {.sni = sni, .version = version, .sigalgs = offer_sigalgs[offer],
                                .session = sess ? *sess : NULL};
    struct tls_client c;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (tls_client_connect(port, &o, &c) != 0) {
        snprintf(out->why, sizeof(out->why), "%s", c.why);
        goto done;
    }
    tls_client_peer_cn(&c, out->cn, sizeof(out->cn));
    out->reused = SSL_session_reused(c.ssl);
    char req[256], buf[4096];
    snprintf(req, sizeof(req), "GET /status/200 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
             sni ? sni : "localhost");
    /* read to the close: a TLS 1.3 ticket comes before the answer, and is kept with it */
    if ((out->status = tls_client_exchange(&c, req, buf, sizeof(buf))) < 0) {
        out->status = 0;
        snprintf(out->why, sizeof(out->why), "%s", c.why);
        goto done;
    }
    SSL_shutdown(c.ssl); /* a session not shut down is not resumable (OpenSSL) */
    if (sess) {
        SSL_SESSION_free(*sess);
        *sess = SSL_get1_session(c.ssl);
    }
    rc = 0;
done:
    tls_client_close(&c);
    return rc;
}

/* A row: the name a client asks for, what it offers, and the CN it must get (NULL: a refused
 * handshake). */
struct want_cert {
    const char *sni;              /* NULL: no server_name */
    enum offer offer;
    const char *cn;
    const char *why;
};

static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};

/* Each row over TLS 1.2 and 1.3, with a request answered 200 over those served. */
static void expect_certs(uint16_t port, const struct want_cert *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t v = 0; v < 2; v++) {
            struct hello got;
            int rc = hello(port, rows[i].sni, versions[v], rows[i].offer, NULL, &got);
            const char *sni = rows[i].sni ? rows[i].sni : "(no SNI)";
            print_message("  %-14s %-7s TLS 1.%d: %s\n", sni, offer_names[rows[i].offer],
                          (int)v + 2, rc == 0 ? got.cn : got.why);
            if (!rows[i].cn && rc == 0)
                fail_msg("%s: %s offering %s got %s, want a refused handshake", rows[i].why,
                         sni, offer_names[rows[i].offer], got.cn);
            if (!rows[i].cn)
                continue;
            if (rc != 0)
                fail_msg("%s: %s offering %s: handshake failed: %s", rows[i].why, sni,
                         offer_names[rows[i].offer], got.why);
            if (strcmp(got.cn, rows[i].cn) != 0)
                fail_msg("%s: %s offering %s over TLS 1.%d got %s, want %s", rows[i].why, sni,
                         offer_names[rows[i].offer], (int)v + 2, got.cn, rows[i].cn);
            assert_int_equal(got.status, 200);
        }
    }
}

/* ---- the rows ---- */

/* The client's signature algorithms choose among the certificates of a name: ECDSA, RSA,
 * Ed25519; a client offering them all gets ECDSA (the server's preference, OpenSSL's default
 * list). main refused the file: localhost and a.sni.test each claimed by two certificates. */
static void test_key_type_by_signature_algorithms(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {"a.sni.test", OFFER_ECDSA, "sni-a", "ECDSA only"},
        {"a.sni.test", OFFER_RSA, "sni-a-rsa", "RSA only"},
        {"a.sni.test", OFFER_ED25519, "sni-a-ed25519", "Ed25519 only"},
        {"a.sni.test", OFFER_ALL, "sni-a", "all: the server prefers ECDSA"},
        {"www.a.sni.test", OFFER_RSA, "sni-a-rsa", "the entry's second name"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* No SNI, or a name no certificate serves: the default entry, whose key type is chosen the
 * same way. */
static void test_default_by_key_type(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {NULL, OFFER_ECDSA, "localhost", "no SNI, ECDSA only"},
        {NULL, OFFER_RSA, "localhost-rsa", "no SNI, RSA only"},
        {NULL, OFFER_ALL, "localhost", "no SNI, all"},
        {"unknown.example", OFFER_RSA, "localhost-rsa", "an unknown name, RSA only"},
        {"localhost", OFFER_RSA, "localhost-rsa", "the default's own name, RSA only"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* b.sni.test has an ECDSA certificate only: a client that takes RSA alone is refused (no
 * signature it accepts), not sent the default's RSA certificate, which names another host; nor
 * is a client of a.sni.test sent the default's. */
static void test_entry_keeps_its_own_types(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {"b.sni.test", OFFER_ECDSA, "sni-b", "the entry's one type"},
        {"b.sni.test", OFFER_ALL, "sni-b", "all"},
        {"b.sni.test", OFFER_RSA, NULL, "a type the entry lacks: refused"},
        {"b.sni.test", OFFER_ED25519, NULL, "Ed25519 the entry lacks: refused"},
        {NULL, OFFER_ED25519, NULL, "the default lacks Ed25519 (a.sni.test's)"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* A session resumes under the names' entry whichever key type the next client would be sent:
 * the same names, proven by a certificate of the same operator (harmless, as nginx's session ID
 * context, every certificate of a server, has it); never under another entry, default
 * included: a full handshake with that one's certificate. */
static void test_resumption_per_entry(void **state)
{
    (void)state;
    static const struct {
        const char *first;
        enum offer first_offer;
        const char *then;
        enum offer then_offer;
        int reused;
        const char *cn;           /* of a full second handshake ("": resumed, none sent) */
        bool tls13_only;          /* a TLS 1.2 session is its cipher suite's, ECDHE-ECDSA or
                                     ECDHE-RSA, which an OpenSSL client offering the other
                                     type's signatures no longer lists: OpenSSL's server then
                                     ends the handshake (illegal_parameter) */
    } rows[] = {
        {"a.sni.test", OFFER_ECDSA, "a.sni.test", OFFER_ECDSA, 1, "", false},
        {"a.sni.test", OFFER_RSA, "a.sni.test", OFFER_RSA, 1, "", false},
        {"a.sni.test", OFFER_ECDSA, "a.sni.test", OFFER_RSA, 1, "", true},
        {"a.sni.test", OFFER_RSA, "www.a.sni.test", OFFER_ECDSA, 1, "", true},
        {"a.sni.test", OFFER_RSA, "www.a.sni.test", OFFER_RSA, 1, "", false},
        {NULL, OFFER_RSA, NULL, OFFER_ECDSA, 1, "", true},
        {NULL, OFFER_RSA, "a.sni.test", OFFER_RSA, 0, "sni-a-rsa", false},
        {"a.sni.test", OFFER_RSA, "unknown.example", OFFER_RSA, 0, "localhost-rsa", false},
        {"a.sni.test", OFFER_ECDSA, "b.sni.test", OFFER_ECDSA, 0, "sni-b", false},
    };
    uint16_t port = harness_port(t.h, "tls");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        for (size_t v = rows[i].tls13_only ? 1 : 0; v < 2; v++) {
            SSL_SESSION *sess = NULL;
            struct hello got;
            if (hello(port, rows[i].first, versions[v], rows[i].first_offer, &sess, &got) != 0)
                fail_msg("row %zu: first: %s", i, got.why);
            assert_non_null(sess);
            int rc = hello(port, rows[i].then, versions[v], rows[i].then_offer, &sess, &got);
            print_message("  TLS 1.%zu %s/%s then %s/%s: %s %s\n", v + 2,
                          rows[i].first ? rows[i].first : "(no SNI)",
                          offer_names[rows[i].first_offer],
                          rows[i].then ? rows[i].then : "(no SNI)",
                          offer_names[rows[i].then_offer],
                          rc != 0 ? got.why : got.reused ? "resumed" : "full handshake", got.cn);
            SSL_SESSION_free(sess);
            if (rc != 0)
                fail_msg("row %zu: then: %s", i, got.why);
            assert_int_equal(got.reused, rows[i].reused);
            if (!rows[i].reused)
                assert_string_equal(got.cn, rows[i].cn);
            assert_int_equal(got.status, 200);
        }
    }
}

/* portico_tls_handshakes_total{file,key}: each full handshake under the certificate it sent,
 * none for a resumption (portico_client_tls_resumed_total). */
static void test_handshake_metric(void **state)
{
    (void)state;
    uint16_t admin = harness_port(t.h, "admin"), port = harness_port(t.h, "tls");
    static const struct {
        const char *stem;
        const char *key;
        enum offer offer;
        const char *sni;
        int times;
    } rows[] = {
        {"sni-a-rsa", "rsa", OFFER_RSA, "a.sni.test", 3},
        {"sni-a", "ecdsa", OFFER_ECDSA, "a.sni.test", 2},
        {"sni-a-ed25519", "ed25519", OFFER_ED25519, "a.sni.test", 1},
        {"server-rsa", "rsa", OFFER_RSA, NULL, 2},
    };
    enum { NROWS = sizeof(rows) / sizeof(rows[0]) };
    char series[NROWS][700], resumed[] = "portico_client_tls_resumed_total";
    double before[NROWS];
    char *text = scrape_metrics(admin, PX_IO_MS);
    assert_non_null(text);
    for (size_t i = 0; i < NROWS; i++) {
        snprintf(series[i], sizeof(series[i]),
                 "portico_tls_handshakes_total{file=\"%s/%s.pem\",key=\"%s\"}", t.certs->dir,
                 rows[i].stem, rows[i].key);
        double v = scrape_value(text, series[i]);
        before[i] = v < 0 ? 0 : v; /* a series comes with its first handshake */
    }
    double resumed_before = scrape_value(text, resumed);
    free(text);
    for (size_t i = 0; i < NROWS; i++)
        for (int k = 0; k < rows[i].times; k++) {
            struct hello got;
            assert_int_equal(hello(port, rows[i].sni, versions[k % 2], rows[i].offer, NULL, &got),
                             0);
        }
    /* a resumption sends no certificate: counted apart */
    SSL_SESSION *sess = NULL;
    struct hello got;
    assert_int_equal(hello(port, "a.sni.test", TLS1_3_VERSION, OFFER_RSA, &sess, &got), 0);
    assert_int_equal(hello(port, "a.sni.test", TLS1_3_VERSION, OFFER_RSA, &sess, &got), 0);
    SSL_SESSION_free(sess);
    assert_int_equal(got.reused, 1);
    for (size_t i = 0; i < NROWS; i++) {
        double want = before[i] + rows[i].times + (i == 0 ? 1 : 0); /* the session's first */
        double v = scrape_wait(admin, series[i], want, PX_IO_MS);
        print_message("  %s: %.0f\n", series[i], v);
        if (v != want)
            fail_msg("%s: %.0f, want %.0f", series[i], v, want);
    }
    assert_true(scrape_wait(admin, resumed, resumed_before + 1, PX_IO_MS) == resumed_before + 1);
}

/* ---- load errors, and -t ---- */

/* `portico -t` on a [proxy] whose lines 3 on are `pairs`: each conflict at its line. */
static const struct px_refusal_row load_error_rows[] = {
    {"two ECDSA certificates for the same names (P-256 and P-384 are one type to OpenSSL)",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\n"
     "tls_cert = %1$s/sni-a-p384.pem\ntls_key = %1$s/sni-a-p384.key\n",
     "portico.ini:5: tls_cert: %1$s/sni-a-p384.pem: claims a.sni.test, which the tls_cert of "
     "line 3 (%1$s/sni-a.pem) claims too, with a key of the same type (ecdsa P-384, and ecdsa "
     "P-256 there)"},
    {"the same type after another type: the line of the one of that type",
     "tls_cert = %1$s/sni-a-rsa.pem\ntls_key = %1$s/sni-a-rsa.key\n"
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\n"
     "tls_cert = %1$s/sni-a-p384.pem\ntls_key = %1$s/sni-a-p384.key\n",
     "portico.ini:7: tls_cert: %1$s/sni-a-p384.pem: claims a.sni.test, which the tls_cert of "
     "line 5 (%1$s/sni-a.pem) claims too, with a key of the same type"},
    {"two RSA certificates for the default's names",
     "tls_cert = %1$s/server-rsa.pem\ntls_key = %1$s/server-rsa.key\n"
     "tls_cert = %1$s/server.pem\ntls_key = %1$s/server.key\n"
     "tls_cert = %1$s/server-rsa.pem\ntls_key = %1$s/server-rsa.key\n",
     "portico.ini:7: tls_cert: %1$s/server-rsa.pem: claims localhost, which the tls_cert of "
     "line 3 (%1$s/server-rsa.pem) claims too, with a key of the same type (rsa 2048, and rsa "
     "2048 there)"},
    {"names that overlap and differ, of another key type: refused, both lines",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\n"
     "tls_cert = %1$s/sni-a1-rsa.pem\ntls_key = %1$s/sni-a1-rsa.key\n",
     "portico.ini:5: tls_cert: %1$s/sni-a1-rsa.pem: claims a.sni.test, which the tls_cert of "
     "line 3 (%1$s/sni-a.pem) claims too: a name is served by one certificate, or by one of "
     "each key type that all name exactly the same"},
};

static void test_load_errors(void **state)
{
    (void)state;
    px_expect_refused(load_error_rows, ARRAY_SIZE(load_error_rows), t.certs->dir);
}

/* `portico -t` counts the certificates and their sets of names, and names each, with its key
 * type; an expiry warning of one of them says which it is (the ECDSA localhost certificate
 * expires in 3 days, its RSA one does not). */
static void test_check_names_each_certificate(void **state)
{
    (void)state;
    assert_non_null(certs_get_dated());
    struct tu_cmd_result res;
    char want[6][1024];
    const char *dir = t.certs->dir;
    int rc = px_check_tls_lines("tls_cert = {{certs}}/expires-3d.pem\n"
                                "tls_key = {{certs}}/expires-3d.key\n"
                                "tls_cert = {{certs}}/server-rsa.pem\n"
                                "tls_key = {{certs}}/server-rsa.key\n"
                                "tls_cert = {{certs}}/sni-a.pem\n"
                                "tls_key = {{certs}}/sni-a.key\n"
                                "tls_cert = {{certs}}/sni-a-ed25519.pem\n"
                                "tls_key = {{certs}}/sni-a-ed25519.key\n",
                                dir, &res);
    snprintf(want[0], sizeof(want[0]),
             "configuration ok (1 upstream, 1 route, 4 certificates for 2 sets of names, chosen "
             "by SNI and key type)\n");
    snprintf(want[1], sizeof(want[1]),
             ":3: tls_cert %s/expires-3d.pem: ecdsa P-256, localhost (the default)\n", dir);
    snprintf(want[2], sizeof(want[2]),
             ":5: tls_cert %s/server-rsa.pem: rsa 2048, localhost (the default)\n", dir);
    snprintf(want[3], sizeof(want[3]),
             ":7: tls_cert %s/sni-a.pem: ecdsa P-256, a.sni.test and 1 more name\n", dir);
    snprintf(want[4], sizeof(want[4]),
             ":9: tls_cert %s/sni-a-ed25519.pem: ed25519, a.sni.test and 1 more name\n", dir);
    snprintf(want[5], sizeof(want[5]),
             "portico.ini:3: warning: tls_cert: %s/expires-3d.pem (ecdsa P-256): the certificate "
             "expires in ", dir);
    bool found[6];
    for (int i = 0; i < 6; i++)
        found[i] = tu_contains(i < 5 ? res.out : res.err, want[i]);
    bool rsa_warned = tu_contains(res.err, "server-rsa.pem (rsa 2048): the certificate");
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 6; i++)
        if (!found[i])
            fail_msg("no \"%s\"", want[i]);
    assert_false(rsa_warned);
}

/* ---- a reload ---- */

/* From ECDSA alone to ECDSA and RSA for a.sni.test: an answer in flight on a connection made
 * before the reload (1000 bytes dripped over a second) comes whole after it, an RSA-only client
 * refused before gets the RSA certificate after, and an ECDSA one the ECDSA certificate
 * throughout. */
static void test_reload_adds_key_type(void **state)
{
    (void)state;
    static const char one[] = "tls_cert = {{certs}}/server.pem\n"
                              "tls_key = {{certs}}/server.key\n"
                              "tls_cert = {{certs}}/sni-a.pem\n"
                              "tls_key = {{certs}}/sni-a.key\n";
    static const char two[] = "tls_cert = {{certs}}/server.pem\n"
                              "tls_key = {{certs}}/server.key\n"
                              "tls_cert = {{certs}}/sni-a.pem\n"
                              "tls_key = {{certs}}/sni-a.key\n"
                              "tls_cert = {{certs}}/sni-a-rsa.pem\n"
                              "tls_key = {{certs}}/sni-a-rsa.key\n";
    struct harness *h = start_with(one);
    uint16_t port = harness_port(h, "tls");
    static const struct want_cert before[] = {
        {"a.sni.test", OFFER_ECDSA, "sni-a", "ECDSA before"},
        {"a.sni.test", OFFER_RSA, NULL, "RSA before: none to send"},
    };
    expect_certs(port, before, sizeof(before) / sizeof(before[0]));

    /* a live connection, its answer under way across the reload */
    struct raw_tls_opts o = {.ca_file = t.certs->ca_cert, .host = "a.sni.test"};
    struct raw_conn *live = raw_connect_tls(port, &o, PX_IO_MS);
    assert_non_null(live);
    static const char req[] = "GET /drip?bytes=1000&duration_ms=1000 HTTP/1.1\r\n"
                              "Host: a.sni.test\r\n\r\n";
    struct raw_response r;
    assert_int_equal(raw_send(live, req, sizeof(req) - 1), 0);

    assert_int_equal(harness_write_config(h, config_fmt, two), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    static const struct want_cert after[] = {
        {"a.sni.test", OFFER_ECDSA, "sni-a", "ECDSA after"},
        {"a.sni.test", OFFER_RSA, "sni-a-rsa", "RSA after"},
        {"a.sni.test", OFFER_ALL, "sni-a", "all after"},
    };
    expect_certs(port, after, sizeof(after) / sizeof(after[0]));
    assert_int_equal(raw_read_response(live, &r, PX_IO_MS), 0);
    print_message("  the answer under way: %d, %zu bytes%s\n", r.status, r.body_len,
                  r.truncated ? ", cut short" : "");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 1000);
    assert_false(r.truncated);
    raw_response_free(&r);
    raw_close(live);
    px_stop(h);
}

/* An entry's sessions are its certificates', whatever the order of their lines: a reload that
 * writes a.sni.test's RSA pair above its ECDSA pair resumes the sessions made before it. */
static void test_reload_reordered_entry_resumes(void **state)
{
    (void)state;
    static const char fmt[] = "tls_cert = {{certs}}/server.pem\n"
                              "tls_key = {{certs}}/server.key\n"
                              "%s%s";
    static const char ecdsa[] = "tls_cert = {{certs}}/sni-a.pem\ntls_key = {{certs}}/sni-a.key\n";
    static const char rsa[] = "tls_cert = {{certs}}/sni-a-rsa.pem\n"
                              "tls_key = {{certs}}/sni-a-rsa.key\n";
    char pairs[1024];
    snprintf(pairs, sizeof(pairs), fmt, ecdsa, rsa);
    struct harness *h = start_with(pairs);
    uint16_t port = harness_port(h, "tls");
    SSL_SESSION *sess[2] = {NULL, NULL};
    struct hello got;
    for (size_t v = 0; v < 2; v++) {
        assert_int_equal(hello(port, "a.sni.test", versions[v], OFFER_ECDSA, &sess[v], &got), 0);
        assert_non_null(sess[v]);
    }
    snprintf(pairs, sizeof(pairs), fmt, rsa, ecdsa);
    assert_int_equal(harness_write_config(h, config_fmt, pairs), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (size_t v = 0; v < 2; v++) {
        int rc = hello(port, "a.sni.test", versions[v], OFFER_ECDSA, &sess[v], &got);
        print_message("  TLS 1.%zu after the lines swapped: %s\n", v + 2,
                      rc != 0 ? got.why : got.reused ? "resumed" : "full handshake");
        SSL_SESSION_free(sess[v]);
        assert_int_equal(rc, 0);
        assert_int_equal(got.reused, 1);
        assert_int_equal(got.status, 200);
    }
    px_stop(h);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_type_by_signature_algorithms),
        cmocka_unit_test(test_default_by_key_type),
        cmocka_unit_test(test_entry_keeps_its_own_types),
        cmocka_unit_test(test_resumption_per_entry),
        cmocka_unit_test(test_handshake_metric),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_check_names_each_certificate),
        cmocka_unit_test(test_reload_adds_key_type),
        cmocka_unit_test(test_reload_reordered_entry_resumes),
    };
    tu_ignore_sigpipe();
    return cmocka_run_group_tests(tests, setup, teardown);
}
