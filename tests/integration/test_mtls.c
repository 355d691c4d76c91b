/*
 * test_mtls.c — client certificates on TLS listeners (tls_verify_client, tls_client_ca).
 *
 * Portico in front of a fake origin that records what it receives. With `on`, a client without
 * a certificate, with one of another CA or with an expired one fails the handshake with the
 * alert that says why (certificate_required, unknown_ca, certificate_expired), the error log
 * says which client and what was wrong, and portico_client_cert_refusals_total counts it by
 * reason; a good certificate is served and the origin gets Client-Cert and Client-Cert-Chain
 * (RFC 9440) and Client-Cert-Verify, the access log the subject. With `optional` every client is
 * served and the origin told the verdict; with `off` nothing is asked. A client's own fields of
 * those names never reach the origin (HTTP/1.1 and HTTP/2). Sessions resume with the identity
 * they were made with, and not across a reload that changes the settings. A reload swaps the CA,
 * a bad one keeps the old; `portico -t` says each mistake at its line.
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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static struct {
    const struct test_certs *certs;
    const struct test_mtls_certs *m;
    struct fake_origin *origin;
} t;

static int setup(void **state)
{
    (void)state;
    t.certs = certs_get();
    t.m = certs_get_mtls();
    t.origin = fake_origin_start_kind(FO_OK);
    return t.certs && t.m && t.origin ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fake_origin_stop(t.origin);
    return 0;
}

/* Portico with a TLS listener (line 2), an admin one, a JSON access log, then `extra` [proxy]
 * lines from line 8 on, in front of the fake origin. */
static const char config_fmt[] = "[proxy]\n"
                                 "listen = 127.0.0.1:{{port:tls}} tls\n"
                                 "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                 "workers = 1\n"
                                 "access_log = {{dir}}/access.log\n"
                                 "tls_cert = {{certs}}/server.pem\n"
                                 "tls_key = {{certs}}/server.key\n"
                                 "%s"
                                 "[upstream app]\n"
                                 "origin = 127.0.0.1:%u\n";

static int write_config(struct harness *h, const char *extra)
{
    return harness_write_config(h, config_fmt, extra, fake_origin_port(t.origin));
}

static struct harness *start(const char *extra)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(write_config(h, extra), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* ---- the client ---- */

/* What one connection saw, and what the origin got of its request. */
struct visit {
    int status;                   /* of GET /, 0: none read */
    int reused;                   /* the session offered was resumed */
    unsigned long err;            /* the first OpenSSL error of a failure */
    char why[256];
    char *cert;                   /* the origin's Client-Cert, Client-Cert-Chain and
                                     Client-Cert-Verify (malloc'd, NULL: absent) */
    char *chain;
    char *verify;
    char *head;                   /* the whole head the origin got */
};

static void visit_free(struct visit *v)
{
    free(v->cert);
    free(v->chain);
    free(v->verify);
    free(v->head);
    memset(v, 0, sizeof(*v));
}

/* The name the next visits ask for in their ClientHello (NULL: none), for the row of several
 * certificates. */
static const char *visit_sni;

/* One connection to port presenting cert/key (NULL: none), TLS `version` only (0: any),
 * offering *sess (NULL or pointing to NULL: none) and keeping the new one there, sending GET /
 * with the `extra` header lines; the origin's fields are read when it answered. 0, or -1 (the
 * handshake or the request failed: why, err). */
static int visit(uint16_t port, const char *cert, const char *key, int version,
                 SSL_SESSION **sess, const char *extra, struct visit *out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval bound = {.tv_sec = PX_IO_MS / 1000};
    SSL *ssl = NULL;
    int rc = -1;
    unsigned before = fake_origin_requests(t.origin);

    memset(out, 0, sizeof(*out));
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (!ctx || fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
        snprintf(out->why, sizeof(out->why), "connect: %s", strerror(errno));
        goto done;
    }
    if (version) {
        SSL_CTX_set_min_proto_version(ctx, version);
        SSL_CTX_set_max_proto_version(ctx, version);
    }
    if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 || /* its chain too */
                 SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
        snprintf(out->why, sizeof(out->why), "cannot load %s", cert);
        goto done;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (visit_sni)
        SSL_set_tlsext_host_name(ssl, (char *)(uintptr_t)visit_sni);
    if (sess && *sess)
        SSL_set_session(ssl, *sess);
    char req[1024], buf[4096];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: localhost\r\n%sConnection: "
                                       "close\r\n\r\n", extra ? extra : "");
    size_t got = 0;
    int r;
    /* TLS 1.3: the client's certificate is judged after its Finished, and the refusal is
     * read where the answer would be */
    if (SSL_connect(ssl) != 1 || SSL_write(ssl, req, n) != n) {
        out->err = ERR_peek_error();
        ERR_error_string_n(out->err, out->why, sizeof(out->why));
        goto done;
    }
    while (got < sizeof(buf) - 1 &&
           (r = SSL_read(ssl, buf + got, (int)(sizeof(buf) - 1 - got))) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d", &out->status) != 1) {
        out->status = 0;
        out->err = ERR_peek_error();
        ERR_error_string_n(out->err, out->why, sizeof(out->why));
        goto done;
    }
    out->reused = SSL_session_reused(ssl);
    SSL_shutdown(ssl);
    if (sess) {
        SSL_SESSION_free(*sess);
        *sess = SSL_get1_session(ssl);
    }
    if (out->status == 200 && fake_origin_wait_requests(t.origin, before + 1, PX_IO_MS) == 0) {
        out->cert = fake_origin_request_header(t.origin, before, "client-cert");
        out->chain = fake_origin_request_header(t.origin, before, "client-cert-chain");
        out->verify = fake_origin_request_header(t.origin, before, "client-cert-verify");
        out->head = fake_origin_request_head(t.origin, before);
    }
    rc = 0;
done:
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    return rc;
}

/* ":base64:" of a PEM file's first certificate, as RFC 9440 writes it (malloc'd). */
static char *byte_sequence(const char *pem)
{
    FILE *f = fopen(pem, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    assert_true(n > 0);
    char *s = malloc(4 * ((size_t)n + 2) / 3 + 8);
    assert_non_null(s);
    s[0] = ':';
    int b = EVP_EncodeBlock((unsigned char *)s + 1, der, n);
    OPENSSL_free(der);
    s[1 + b] = ':';
    s[2 + b] = '\0';
    return s;
}

static double refusals(struct harness *h, const char *reason)
{
    char series[128];
    snprintf(series, sizeof(series), "portico_client_cert_refusals_total{reason=\"%s\"}", reason);
    return scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
}

/* ---- on ---- */

/* A refusal: the client, its TLS version, the alert it must read (OpenSSL's reason), the
 * metric's reason and what the error log says. */
struct refusal_row {
    const char *cert;             /* NULL: none presented */
    const char *key;
    int version;
    int alert_reason;             /* SSL_R_..._ALERT_... */
    const char *reason;
    const char *said;
    const char *why;
};

static void expect_refusals(struct harness *h, const struct refusal_row *rows, size_t n)
{
    uint16_t port = harness_port(h, "tls");
    for (size_t i = 0; i < n; i++) {
        const struct refusal_row *r = &rows[i];
        double before = refusals(h, r->reason);
        struct visit v;
        int rc = visit(port, r->cert, r->key, r->version, NULL, NULL, &v);
        print_message("  %-40s TLS 1.%d: %s\n", r->why, r->version == TLS1_2_VERSION ? 2 : 3,
                      rc == 0 ? "served" : v.why);
        if (rc == 0)
            fail_msg("%s: served (%d), want refused", r->why, v.status);
        if (ERR_GET_REASON(v.err) != r->alert_reason)
            fail_msg("%s: %s, want the alert of reason %d", r->why, v.why, r->alert_reason);
        visit_free(&v);
        assert_int_equal(harness_wait_log(h, r->said, PX_IO_MS), 0);
        char series[128];
        snprintf(series, sizeof(series), "portico_client_cert_refusals_total{reason=\"%s\"}",
                 r->reason);
        double after = scrape_wait(harness_port(h, "admin"), series, before + 1, PX_IO_MS);
        if (after != before + 1)
            fail_msg("%s: %s went %.0f -> %.0f", r->why, r->reason, before, after);
    }
}

/* tls_verify_client = on: no certificate, one of a CA not in tls_client_ca, a self-signed one, an
 * expired one, each refused in the handshake with the alert that says why, its line in the
 * error log (which client, what was wrong, the subject, the date) and its count by reason. */
static void test_on_refuses_bad_certificates(void **state)
{
    (void)state;
    struct harness *h = start("tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n");
    char expired[256], unknown[256];
    snprintf(expired, sizeof(expired),
             "TLS handshake failed: client certificate refused: expired on 2020-01-02 00:00:00 "
             "UTC: CN=portico-expired-client, issued by CN=Portico Test CA (certificate 1 of "
             "the chain) (alert certificate_expired sent)");
    snprintf(unknown, sizeof(unknown),
             "TLS handshake failed: client certificate refused: unknown CA, no issuer in "
             "tls_client_ca: CN=portico-other-client, issued by CN=Portico Other CA "
             "(certificate 1 of the chain) (alert unknown_ca sent)");
    const struct refusal_row rows[] = {
        {NULL, NULL, TLS1_3_VERSION, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED, "no_certificate",
         "TLS handshake failed: client certificate refused: no certificate sent, "
         "tls_verify_client is on (alert certificate_required sent)",
         "no certificate"},
        {NULL, NULL, TLS1_2_VERSION, SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE, "no_certificate",
         "(alert handshake_failure sent)", "no certificate"},
        {t.m->other_client_cert, t.m->other_client_key, TLS1_3_VERSION,
         SSL_R_TLSV1_ALERT_UNKNOWN_CA, "unknown_ca", unknown, "another CA's certificate"},
        {t.certs->self_signed_cert, t.certs->self_signed_key, TLS1_3_VERSION,
         SSL_R_TLSV1_ALERT_UNKNOWN_CA, "unknown_ca",
         "client certificate refused: unknown CA, no issuer in tls_client_ca: CN=localhost, "
         "issued by CN=localhost",
         "a self-signed certificate"},
        {t.m->expired_client_cert, t.m->expired_client_key, TLS1_3_VERSION,
         SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED, "expired", expired, "an expired certificate"},
        {t.m->expired_client_cert, t.m->expired_client_key, TLS1_2_VERSION,
         SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED, "expired", expired, "an expired certificate"},
    };
    expect_refusals(h, rows, ARRAY_SIZE(rows));
    /* the line names the client */
    assert_int_equal(harness_wait_log(h, "client 127.0.0.1:", PX_IO_MS), 0);
    px_stop(h);
}

/* A good certificate under `on` is served, over TLS 1.2 and 1.3: the origin gets the leaf in
 * Client-Cert, the chain above it in Client-Cert-Chain, Client-Cert-Verify: SUCCESS; the
 * access log says the subject. */
static void test_on_serves_good_certificate(void **state)
{
    (void)state;
    struct harness *h = start("tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n");
    char *leaf = byte_sequence(t.certs->client_cert), *ca = byte_sequence(t.certs->ca_cert);
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
        struct visit v;
        if (visit(harness_port(h, "tls"), t.certs->client_cert, t.certs->client_key, versions[i],
                  NULL, NULL, &v) != 0)
            fail_msg("TLS 1.%zu: %s", i + 2, v.why);
        print_message("  TLS 1.%zu: %d, verify %s, chain %s\n", i + 2, v.status, v.verify,
                      v.chain ? "sent" : "none");
        assert_int_equal(v.status, 200);
        assert_non_null(v.cert);
        assert_string_equal(v.cert, leaf);
        assert_non_null(v.chain);
        assert_string_equal(v.chain, ca);
        assert_non_null(v.verify);
        assert_string_equal(v.verify, "SUCCESS");
        visit_free(&v);
    }
    char *line = harness_file_line(h, "access.log", "\"client_subject\":\"CN=portico-test-client\"",
                                   PX_IO_MS);
    if (!line)
        fail_msg("no access-log line with the client's subject");
    free(line);
    free(leaf);
    free(ca);
    px_stop(h);
}

/* ---- optional and off ---- */

/* `optional` serves every client and tells the origin: NONE without a certificate, SUCCESS with
 * Client-Cert for a good one, FAILED:reason (and no Client-Cert) for another CA's or an expired
 * one. The access log names the verified subject only. */
static void test_optional_tells_the_origin(void **state)
{
    (void)state;
    struct harness *h = start("tls_verify_client = optional\ntls_client_ca = {{certs}}/ca.pem\n");
    char *leaf = byte_sequence(t.certs->client_cert);
    const struct {
        const char *cert, *key;
        const char *verify;
        bool leaf;
    } rows[] = {
        {NULL, NULL, "NONE", false},
        {t.certs->client_cert, t.certs->client_key, "SUCCESS", true},
        {t.m->other_client_cert, t.m->other_client_key,
         "FAILED:unable to get local issuer certificate", false},
        {t.m->expired_client_cert, t.m->expired_client_key, "FAILED:certificate has expired",
         false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        for (int version = TLS1_2_VERSION; version <= TLS1_3_VERSION; version++) {
            struct visit v;
            if (visit(harness_port(h, "tls"), rows[i].cert, rows[i].key, version, NULL, NULL,
                      &v) != 0)
                fail_msg("%s: %s", rows[i].verify, v.why);
            print_message("  %-46s %x: %d, Client-Cert %s\n", v.verify ? v.verify : "(none)",
                          version, v.status, v.cert ? "sent" : "none");
            assert_int_equal(v.status, 200);
            assert_non_null(v.verify);
            assert_string_equal(v.verify, rows[i].verify);
            if (rows[i].leaf) {
                assert_non_null(v.cert);
                assert_string_equal(v.cert, leaf);
            } else {
                assert_null(v.cert);
                assert_null(v.chain);
            }
            visit_free(&v);
        }
    }
    char *line = harness_file_line(h, "access.log", "\"client_subject\":null", PX_IO_MS);
    assert_non_null(line);
    free(line);
    assert_false(harness_file_contains(h, "access.log", "portico-other-client"));
    assert_false(harness_file_contains(h, "access.log", "portico-expired-client"));
    free(leaf);
    px_stop(h);
}

/* The fields a client writes itself, in any case and with '_' for '-', never reach the origin:
 * under `off` (the default, which asks for no certificate: a client holding one sends none)
 * none goes on, under `optional` Portico's word alone (NONE for a client without a certificate
 * claiming SUCCESS). Over HTTP/1.1 here, HTTP/2 in test_http2. */
static void test_spoofed_fields_removed(void **state)
{
    (void)state;
    static const char spoof[] = "Client-Cert: :Zm9yZ2Vk:\r\n"
                                "client-cert-chain: :Zm9yZ2Vk:\r\n"
                                "CLIENT-CERT-VERIFY: SUCCESS\r\n"
                                "Client_Cert: :Zm9yZ2Vk:\r\n"
                                "Client_Cert_Verify: SUCCESS\r\n";
    static const struct {
        const char *extra;
        const char *verify;       /* the one the origin must get, NULL: none */
    } modes[] = {
        {"", NULL},
        {"tls_verify_client = optional\ntls_client_ca = {{certs}}/ca.pem\n", "NONE"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
        struct harness *h = start(modes[i].extra);
        struct visit v;
        if (visit(harness_port(h, "tls"), i == 0 ? t.certs->client_cert : NULL,
                  i == 0 ? t.certs->client_key : NULL, 0, NULL, spoof, &v) != 0)
            fail_msg("%s", v.why);
        print_message("  mode %zu: origin got\n%s", i, v.head ? v.head : "(nothing)\n");
        assert_int_equal(v.status, 200);
        assert_non_null(v.head);
        if (strstr(v.head, "Zm9yZ2Vk") || tu_contains(v.head, "Client_Cert"))
            fail_msg("a client's own field reached the origin:\n%s", v.head);
        if (modes[i].verify) {
            assert_non_null(v.verify);
            assert_string_equal(v.verify, modes[i].verify);
            assert_int_equal(px_count(v.head, "SUCCESS"), 0);
        } else {
            assert_null(v.verify);
            assert_null(v.cert);
        }
        visit_free(&v);
        px_stop(h);
    }
}

/* ---- HTTP/2 ---- */

/* curl over HTTP/2 with a client certificate: served, the origin gets Client-Cert; its own
 * Client-Cert and Client-Cert-Verify fields are dropped. Without a certificate under `on`,
 * curl fails. */
static void test_http2(void **state)
{
    (void)state;
    struct harness *h = start("tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n");
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/", harness_port(h, "tls"));
    unsigned before = fake_origin_requests(t.origin);
    const char *const argv[] = {"curl", "-sS", "--http2", "--cacert", t.certs->ca_cert, "--cert",
                                t.certs->client_cert, "--key", t.certs->client_key, "-H",
                                "Client-Cert: :Zm9yZ2Vk:", "-H", "client-cert-verify: FORGED",
                                "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url,
                                NULL};
    struct tu_cmd_result res;
    px_run_ok(argv, &res);
    print_message("  curl: %s\n", res.out);
    assert_string_equal(res.out, "2 200");
    tu_cmd_result_free(&res);
    assert_int_equal(fake_origin_wait_requests(t.origin, before + 1, PX_IO_MS), 0);
    char *cert = fake_origin_request_header(t.origin, before, "client-cert");
    char *verify = fake_origin_request_header(t.origin, before, "client-cert-verify");
    char *head = fake_origin_request_head(t.origin, before);
    char *leaf = byte_sequence(t.certs->client_cert);
    assert_non_null(cert);
    assert_string_equal(cert, leaf);
    assert_non_null(verify);
    assert_string_equal(verify, "SUCCESS");
    assert_non_null(head);
    assert_null(strstr(head, "Zm9yZ2Vk"));
    assert_null(strstr(head, "FORGED"));
    free(cert), free(verify), free(head), free(leaf);

    const char *const bare[] = {"curl", "-sS", "--http2", "--cacert", t.certs->ca_cert, "-o",
                                "/dev/null", url, NULL};
    int rc = tu_run_command(bare, 20000, &res);
    print_message("  curl without a certificate: rc %d %s", rc, res.err);
    tu_cmd_result_free(&res);
    assert_int_not_equal(rc, 0);
    px_stop(h);
}

/* ---- sessions ---- */

/* Under `optional`, a session made with a good certificate resumes with that identity (a
 * ticket is its client's secret), one made without resumes without, even when the resuming
 * client holds a certificate (none is asked in a resumption). After a reload to `on`, neither
 * ticket resumes: a client without a certificate is refused in a full handshake. */
static void test_resumption(void **state)
{
    (void)state;
    struct harness *h = start("tls_verify_client = optional\ntls_client_ca = {{certs}}/ca.pem\n");
    uint16_t port = harness_port(h, "tls");
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    char *ca = byte_sequence(t.certs->ca_cert);
    SSL_SESSION *with[2] = {NULL, NULL}, *without[2] = {NULL, NULL};
    for (size_t i = 0; i < 2; i++) {
        struct visit v;
        /* made with client 1's certificate, resumed presenting none */
        assert_int_equal(visit(port, t.certs->client_cert, t.certs->client_key, versions[i],
                               &with[i], NULL, &v), 0);
        visit_free(&v);
        assert_int_equal(visit(port, NULL, NULL, versions[i], &with[i], NULL, &v), 0);
        print_message("  TLS 1.%zu with a certificate, resumed %d: %s\n", i + 2, v.reused,
                      v.verify);
        assert_int_equal(v.reused, 1);
        assert_string_equal(v.verify, "SUCCESS");
        assert_non_null(v.cert);
        /* the chain as the full handshake said it: OpenSSL's session does not keep it */
        print_message("  chain %s\n", v.chain ? "sent" : "none");
        assert_non_null(v.chain);
        assert_string_equal(v.chain, ca);
        visit_free(&v);
        /* made without, resumed presenting client 2's */
        assert_int_equal(visit(port, NULL, NULL, versions[i], &without[i], NULL, &v), 0);
        visit_free(&v);
        assert_int_equal(visit(port, t.m->client2_cert, t.m->client2_key, versions[i],
                               &without[i], NULL, &v), 0);
        print_message("  TLS 1.%zu without, resumed %d: %s\n", i + 2, v.reused, v.verify);
        assert_int_equal(v.reused, 1);
        assert_string_equal(v.verify, "NONE");
        assert_null(v.cert);
        visit_free(&v);
    }
    assert_int_equal(write_config(h, "tls_verify_client = on\n"
                                     "tls_client_ca = {{certs}}/ca.pem\n"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (size_t i = 0; i < 2; i++) {
        struct visit v;
        int rc = visit(port, NULL, NULL, versions[i], &without[i], NULL, &v);
        print_message("  TLS 1.%zu after the reload to on: %s\n", i + 2,
                      rc == 0 ? "served" : v.why);
        assert_int_equal(rc, -1);
        visit_free(&v);
        /* the one made with a certificate gets a full handshake too: presented again, served */
        assert_int_equal(visit(port, t.certs->client_cert, t.certs->client_key, versions[i],
                               &with[i], NULL, &v), 0);
        assert_int_equal(v.reused, 0);
        assert_string_equal(v.verify, "SUCCESS");
        visit_free(&v);
        SSL_SESSION_free(with[i]);
        SSL_SESSION_free(without[i]);
    }
    free(ca);
    px_stop(h);
}

/* With several certificates (SNI), each asks the same: a client naming the second one's host
 * is refused without a certificate and served with one, over TLS 1.2 and 1.3, and its session
 * resumes under that certificate with its identity. */
static void test_several_certificates(void **state)
{
    (void)state;
    assert_non_null(certs_get_sni());
    struct harness *h = start("tls_cert = {{certs}}/sni-b.pem\ntls_key = {{certs}}/sni-b.key\n"
                              "tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n");
    uint16_t port = harness_port(h, "tls");
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    visit_sni = "b.sni.test";
    for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
        struct visit v;
        SSL_SESSION *sess = NULL;
        int rc = visit(port, NULL, NULL, versions[i], NULL, NULL, &v);
        print_message("  TLS 1.%zu b.sni.test without a certificate: %s\n", i + 2,
                      rc == 0 ? "served" : v.why);
        assert_int_equal(rc, -1);
        visit_free(&v);
        assert_int_equal(visit(port, t.certs->client_cert, t.certs->client_key, versions[i], &sess,
                               NULL, &v), 0);
        assert_string_equal(v.verify, "SUCCESS");
        visit_free(&v);
        assert_int_equal(visit(port, NULL, NULL, versions[i], &sess, NULL, &v), 0);
        print_message("  TLS 1.%zu resumed %d: %s\n", i + 2, v.reused, v.verify);
        assert_int_equal(v.reused, 1);
        assert_string_equal(v.verify, "SUCCESS");
        visit_free(&v);
        SSL_SESSION_free(sess);
    }
    visit_sni = NULL;
    px_stop(h);
}

/* tls_verify_depth counts the intermediates between a client's certificate and the CA: a chain
 * with one is served at depth 1, Client-Cert-Chain holding the intermediate, then the CA; a
 * chain with two is refused. */
static void test_depth_boundary(void **state)
{
    (void)state;
    const struct test_chained_certs *chained = certs_get_chained();
    assert_non_null(chained);
    struct harness *h = start("tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n"
                              "tls_verify_depth = 1\n");
    char *inter = byte_sequence(chained->intermediate_cert), *ca = byte_sequence(t.certs->ca_cert);
    char want[8192];
    snprintf(want, sizeof(want), "%s, %s", inter, ca);
    struct visit v;
    if (visit(harness_port(h, "tls"), chained->client_chain, chained->client_key, 0, NULL, NULL, &v) != 0)
        fail_msg("a chain with one intermediate at depth 1: %s", v.why);
    assert_int_equal(v.status, 200);
    assert_non_null(v.verify);
    assert_string_equal(v.verify, "SUCCESS");
    assert_non_null(v.chain);
    assert_string_equal(v.chain, want);
    visit_free(&v);
    free(inter);
    free(ca);
    /* two intermediates are one too many: refused (invalid) */
    if (visit(harness_port(h, "tls"), chained->deep_chain, chained->deep_key, 0, NULL, NULL,
              &v) == 0 && v.status == 200)
        fail_msg("a chain with two intermediates at depth 1 was served");
    visit_free(&v);
    assert_true(refusals(h, "invalid") == 1);
    px_stop(h);
}

/* ---- reloads and load errors ---- */

/* A reload naming another CA takes its clients and refuses the old CA's; a reload whose CA file
 * holds no certificate is refused and the running CA goes on. */
static void test_reload_changes_ca(void **state)
{
    (void)state;
    struct harness *h = start("tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n");
    uint16_t port = harness_port(h, "tls");
    struct visit v;
    assert_int_equal(visit(port, t.certs->client_cert, t.certs->client_key, 0, NULL, NULL, &v), 0);
    visit_free(&v);
    assert_int_equal(visit(port, t.m->other_client_cert, t.m->other_client_key, 0, NULL, NULL,
                           &v), -1);
    visit_free(&v);

    assert_int_equal(write_config(h, "tls_verify_client = on\n"
                                     "tls_client_ca = {{certs}}/other-ca.pem\n"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    assert_int_equal(visit(port, t.m->other_client_cert, t.m->other_client_key, 0, NULL, NULL,
                           &v), 0);
    assert_int_equal(v.status, 200);
    visit_free(&v);
    assert_int_equal(visit(port, t.certs->client_cert, t.certs->client_key, 0, NULL, NULL, &v),
                     -1);
    assert_int_equal(ERR_GET_REASON(v.err), SSL_R_TLSV1_ALERT_UNKNOWN_CA);
    visit_free(&v);

    /* a key is no CA file: refused at its line, the other CA serves on */
    assert_int_equal(write_config(h, "tls_verify_client = on\n"
                                     "tls_client_ca = {{certs}}/ca.key\n"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "still serving the previous configuration", PX_IO_MS),
                     0);
    assert_true(harness_log_contains(h, "portico.ini:9: tls_client_ca: "));
    assert_int_equal(visit(port, t.m->other_client_cert, t.m->other_client_key, 0, NULL, NULL,
                           &v), 0);
    visit_free(&v);
    px_stop(h);
}

/* `portico -t`: each mistake at its line, as an error or a 'not used' warning. */
static void test_load_errors(void **state)
{
    (void)state;
    static const struct {
        const char *extra;
        bool tls;                 /* the listener has tls */
        int rc;
        const char *said;
    } rows[] = {
        {"tls_verify_client = on\n", true, 1,
         "portico.ini:8: tls_verify_client = on needs tls_client_ca"},
        {"tls_verify_client = optional\n", true, 1,
         "portico.ini:8: tls_verify_client = optional needs tls_client_ca"},
        {"tls_verify_client = on\ntls_client_ca = {{dir}}/missing.pem\n", true, 1,
         "portico.ini:9: tls_client_ca: "},
        {"tls_verify_client = on\ntls_client_ca = {{certs}}/ca.key\n", true, 1,
         "/ca.key: holds no CA certificate in PEM form (-----BEGIN CERTIFICATE-----)"},
        {"tls_verify_client = maybe\n", true, 1,
         "portico.ini:8: tls_verify_client: 'maybe' is not one of off, optional, on"},
        {"tls_verify_depth = 0\n", true, 1, "portico.ini:8: tls_verify_depth"},
        {"tls_client_ca = {{certs}}/ca.pem\n", true, 0,
         "portico.ini:8: warning: tls_client_ca: not used, tls_verify_client is off"},
        {"tls_verify_client = on\ntls_client_ca = {{certs}}/ca.pem\n", false, 0,
         "portico.ini:8: warning: tls_verify_client: not used, no listen line has tls"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        if (rows[i].tls)
            assert_int_equal(write_config(h, rows[i].extra), 0);
        else
            assert_int_equal(harness_write_config(h,
                                                  "[proxy]\n"
                                                  "listen = 127.0.0.1:{{port:plain}}\n"
                                                  "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                                  "workers = 1\n"
                                                  "access_log = {{dir}}/access.log\n"
                                                  "tls_cert = {{certs}}/server.pem\n"
                                                  "tls_key = {{certs}}/server.key\n"
                                                  "%s"
                                                  "[upstream app]\n"
                                                  "origin = sim\n",
                                                  rows[i].extra),
                             0);
        struct tu_cmd_result res;
        int rc = harness_check_config(h, &res);
        print_message("  rc %d: %s", rc, res.err);
        bool said = tu_contains(res.err, rows[i].said);
        tu_cmd_result_free(&res);
        harness_free(h);
        assert_int_equal(rc, rows[i].rc);
        if (!said)
            fail_msg("row %zu: no \"%s\"", i, rows[i].said);
    }
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_on_refuses_bad_certificates),
        cmocka_unit_test(test_on_serves_good_certificate),
        cmocka_unit_test(test_optional_tells_the_origin),
        cmocka_unit_test(test_spoofed_fields_removed),
        cmocka_unit_test(test_http2),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_several_certificates),
        cmocka_unit_test(test_depth_boundary),
        cmocka_unit_test(test_reload_changes_ca),
        cmocka_unit_test(test_load_errors),
    };
    tu_ignore_sigpipe();
    return cmocka_run_group_tests(tests, setup, teardown);
}
