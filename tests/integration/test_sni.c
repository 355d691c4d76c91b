/*
 * test_sni.c — several certificates on one TLS listener, chosen by SNI.
 *
 * One Portico serves five tls_cert/tls_key pairs on one listener: localhost's first (the
 * default), then *.sni.test, a.sni.test (and www.a.sni.test), b.sni.test, and a certificate
 * with no subjectAltName whose CN is cn.sni.test. A client names a host in its ClientHello
 * (openssl's API here, as `openssl s_client -servername` does; curl --resolve for HTTP/2) and
 * reads the CN of the certificate it got: each name gets its own, a wildcard covers one label,
 * an exact name beats a wildcard, no name or an unknown one gets the default. Sessions resume
 * per certificate. Other Porticos: tls_strict_sni refusing an unknown name, `portico -t` for
 * each load error, reloads that swap a certificate or keep the old ones when the new file is
 * bad, and the expiry metric of each certificate.
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
    struct harness *h;            /* the five-certificate Portico */
    const struct test_certs *certs;
    const struct test_sni_certs *sni;
} t;

/* The five pairs, default first; the wildcard before b.sni.test, which it covers too, so that
 * the exact name's win is not the order's. Lines 5-14. */
static const char pairs_fmt[] = "tls_cert = {{certs}}/expires-100d.pem\n" /* 5: localhost */
                                "tls_key = {{certs}}/expires-100d.key\n"
                                "tls_cert = {{certs}}/sni-wild.pem\n" /* 7: *.sni.test */
                                "tls_key = {{certs}}/sni-wild.key\n"
                                "tls_cert = {{certs}}/sni-a.pem\n"    /* 9: a.sni.test */
                                "tls_key = {{certs}}/sni-a.key\n"
                                "tls_cert = {{certs}}/sni-b.pem\n"    /* 11: b.sni.test */
                                "tls_key = {{certs}}/sni-b.key\n"
                                "tls_cert = {{certs}}/sni-cn.pem\n"   /* 13: CN cn.sni.test */
                                "tls_key = {{certs}}/sni-cn.key\n";

/* A Portico with a TLS listener and an admin one, [proxy] lines 1-4, then `pairs` (a format of
 * no argument but placeholders), then `extra` [proxy] lines, then the simulator as origin. */
static struct harness *start_with(const char *pairs, const char *extra)
{
    struct harness *h = harness_new();

    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:tls}} tls\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "workers = 1\n"
                                          "%s%s"
                                          "[upstream app]\n"
                                          "origin = sim\n",
                                          pairs, extra),
                     0);
    assert_int_equal(harness_start(h), 0);
    return h;
}

static int setup(void **state)
{
    (void)state;
    t.certs = certs_get();
    t.sni = certs_get_sni();
    if (!t.certs || !t.sni || !certs_get_dated()) /* the default: expires-100d.pem */
        return -1;
    t.h = start_with(pairs_fmt, "");
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

/* What one connection saw. */
struct hello {
    char cn[128];                 /* the CN of the certificate served */
    char alpn[16];                /* the protocol ALPN chose, "" none */
    int reused;                   /* 1: the session offered was resumed */
    int status;                   /* the answer to GET /status/200, 0: none asked or read */
    unsigned long err;            /* the OpenSSL error of a failed handshake */
    char why[256];
};

/* One TLS connection to port, naming sni in the ClientHello (NULL: no server_name), TLS
 * `version` only (0: any), offering *sess (NULL or pointing to NULL: none) and keeping the new
 * session there; asks GET /status/200 with Host sni when `request`. 0, or -1 (why in out). */
static int hello(uint16_t port, const char *sni, int version, SSL_SESSION **sess, bool request,
                 struct hello *out)
{
    struct tls_client_opts o = {.sni = sni, .version = version, .session = sess ? *sess : NULL};
    struct tls_client c;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (tls_client_connect(port, &o, &c) != 0) {
        out->err = ERR_peek_last_error();
        snprintf(out->why, sizeof(out->why), "%s", c.why);
        goto done;
    }
    tls_client_peer_cn(&c, out->cn, sizeof(out->cn));
    const unsigned char *proto;
    unsigned proto_len;
    SSL_get0_alpn_selected(c.ssl, &proto, &proto_len);
    snprintf(out->alpn, sizeof(out->alpn), "%.*s", (int)proto_len, (const char *)proto);
    out->reused = SSL_session_reused(c.ssl);
    if (request) {
        char req[512], buf[4096];
        snprintf(req, sizeof(req),
                 "GET /status/200 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                 sni ? sni : "localhost");
        if ((out->status = tls_client_exchange(&c, req, buf, sizeof(buf))) < 0) {
            out->status = 0;
            snprintf(out->why, sizeof(out->why), "%s", c.why);
            goto done;
        }
    } else {
        /* A TLS 1.3 ticket comes after the handshake (a TLS 1.2 one within it): read until the
         * session can be resumed, in short waits, within PX_IO_MS. One wait of PX_IO_MS, which
         * no application byte ends, made each connection 5 s and the file a minute. */
        struct timeval step = {.tv_usec = 20 * 1000};
        int64_t until = tu_now_ms() + PX_IO_MS;
        char byte;
        setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &step, sizeof(step));
        while (!SSL_SESSION_is_resumable(SSL_get0_session(c.ssl)) && tu_now_ms() < until)
            SSL_peek(c.ssl, &byte, 0);
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

/* A ClientHello whose server_name list says it holds 3 bytes where it holds 9 (one host_name,
 * "b.test"): no OpenSSL client sends one. */
static const unsigned char malformed_sni_hello[] = {
    0x16, 0x03, 0x01, 0x00, 0x3e,                         /* record: handshake, 62 bytes */
    0x01, 0x00, 0x00, 0x3a,                               /* ClientHello, 58 bytes */
    0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,                                     /* TLS 1.2, random */
    0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00,             /* no session ID, a suite, null */
    0x00, 0x0f, 0x00, 0x00, 0x00, 0x0b,                   /* extensions: server_name, 11 */
    0x00, 0x03, 0x00, 0x00, 0x06, 'b', '.', 't', 'e', 's', 't', /* a list of "3" */
};

/* The alert a raw ClientHello gets from port: its description, or -1 for none. */
static int raw_hello_alert(uint16_t port, const unsigned char *hello_bytes, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval bound = {.tv_sec = PX_IO_MS / 1000};
    unsigned char got[7];
    size_t have = 0;
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)) == 0 &&
        connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 &&
        send(fd, hello_bytes, len, 0) == (ssize_t)len) {
        ssize_t n;
        while (have < sizeof(got) && (n = recv(fd, got + have, sizeof(got) - have, 0)) > 0)
            have += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    return have == sizeof(got) && got[0] == 0x15 ? got[6] : -1; /* alert, level, description */
}

/* A row: the name a client asks for, and the CN of the certificate it must get. */
struct want_cert {
    const char *sni;              /* NULL: no server_name */
    const char *cn;
    const char *why;
};

/* Each row over TLS 1.2 and 1.3, with a request answered 200 over it. */
static void expect_certs(uint16_t port, const struct want_cert *rows, size_t n)
{
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < n; i++) {
        for (size_t v = 0; v < 2; v++) {
            struct hello got;
            if (hello(port, rows[i].sni, versions[v], NULL, true, &got) != 0)
                fail_msg("%s (%s): handshake failed: %s", rows[i].why,
                         rows[i].sni ? rows[i].sni : "no SNI", got.why);
            print_message("  %-16s TLS 1.%d: %s, %d\n", rows[i].sni ? rows[i].sni : "(no SNI)",
                          (int)v + 2, got.cn, got.status);
            if (strcmp(got.cn, rows[i].cn) != 0)
                fail_msg("%s: %s got the certificate of %s, want %s", rows[i].why,
                         rows[i].sni ? rows[i].sni : "no SNI", got.cn, rows[i].cn);
            assert_int_equal(got.status, 200);
        }
    }
}

/* ---- the rows ---- */

/* Each name its own certificate: by a DNS name, one of several (written upper case in the
 * certificate, asked mixed case here), by the CN of a certificate with no subjectAltName, and
 * the default's own name. The old code loaded one tls_cert (a second was "set twice"). */
static void test_each_name_gets_its_certificate(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {"a.sni.test", "sni-a", "an exact DNS name"},
        {"www.a.sni.test", "sni-a", "the certificate's second name, upper case in it"},
        {"A.Sni.Test", "sni-a", "names compare without case"},
        {"a.sni.test.", "sni-a", "a final dot is the same name"},
        {"cn.sni.test", "cn.sni.test", "no subjectAltName: the CN (before the wildcard)"},
        {"localhost", "localhost", "the default certificate's own name"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* *.sni.test covers one label: c.sni.test, not x.y.sni.test nor sni.test itself. */
static void test_wildcard_one_label(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {"c.sni.test", "sni-wild", "one label under the wildcard"},
        {"any-thing.sni.test", "sni-wild", "any label"},
        {"x.y.sni.test", "localhost", "two labels: not the wildcard's, the default"},
        {"sni.test", "localhost", "the wildcard's parent itself"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* b.sni.test has a certificate of its own and *.sni.test covers it too, listed first: the
 * exact name wins. */
static void test_exact_beats_wildcard(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {"b.sni.test", "sni-b", "exact name before the wildcard listed before it"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* A ClientHello without server_name (an IP-literal URL, an old client) gets the first pair. */
static void test_no_sni_gets_default(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {NULL, "localhost", "no server_name"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));
}

/* A name no certificate serves gets the default, as nginx's default server; with
 * tls_strict_sni = on (HAProxy's strict-sni) the handshake is refused with the
 * unrecognized_name alert, and so is one without a name, while known names are served. */
static void test_unknown_name(void **state)
{
    (void)state;
    static const struct want_cert rows[] = {
        {"unknown.example", "localhost", "an unknown name: the default"},
    };
    expect_certs(harness_port(t.h, "tls"), rows, sizeof(rows) / sizeof(rows[0]));

    struct harness *strict = start_with(pairs_fmt, "tls_strict_sni = on\n");
    static const struct {
        const char *sni;
        const char *cn;           /* NULL: refused with unrecognized_name */
    } strict_rows[] = {
        {"unknown.example", NULL},
        {NULL, NULL},
        {"x.y.sni.test", NULL},
        {"a.sni.test", "sni-a"},
        {"localhost", "localhost"},
        /* a name is the client's bytes: its line says them escaped (main wrote them raw, the
         * newline beginning a forged line of the log, the escape driving a terminal) */
        {"evil\nforged [error]\x1b[31m", NULL},
    };
    for (size_t i = 0; i < sizeof(strict_rows) / sizeof(strict_rows[0]); i++) {
        struct hello got;
        int rc = hello(harness_port(strict, "tls"), strict_rows[i].sni, 0, NULL, true, &got);
        const char *sni = strict_rows[i].sni ? strict_rows[i].sni : "no SNI";
        print_message("  strict %-16s %s\n", sni, rc == 0 ? got.cn : got.why);
        if (strict_rows[i].cn) {
            if (rc != 0 || strcmp(got.cn, strict_rows[i].cn) != 0 || got.status != 200)
                fail_msg("strict, %s: got %s (%s), want %s", sni, got.cn, got.why,
                         strict_rows[i].cn);
        } else if (rc == 0 || ERR_GET_REASON(got.err) != SSL_R_TLSV1_UNRECOGNIZED_NAME) {
            fail_msg("strict, %s: want alert unrecognized_name, got %s", sni,
                     rc == 0 ? got.cn : got.why);
        }
    }
    /* the log says which name was refused, where OpenSSL says "callback failed" */
    assert_int_equal(harness_wait_log(strict, "TLS handshake failed: tls_strict_sni: no "
                                              "certificate serves unknown.example (alert "
                                              "unrecognized_name sent)", PX_IO_MS), 0);
    assert_int_equal(harness_wait_log(strict, "TLS handshake failed: tls_strict_sni: the "
                                              "ClientHello names no host", PX_IO_MS), 0);
    /* a server_name OpenSSL would not read: its decode_error, said so (main: unrecognized_name,
     * logged as a ClientHello that names no host) */
    assert_int_equal(raw_hello_alert(harness_port(strict, "tls"), malformed_sni_hello,
                                     sizeof(malformed_sni_hello)),
                     SSL_AD_DECODE_ERROR);
    assert_int_equal(harness_wait_log(strict, "TLS handshake failed: tls_strict_sni: the "
                                              "ClientHello's server_name is malformed (alert "
                                              "decode_error sent)", PX_IO_MS), 0);
    assert_int_equal(harness_wait_log(strict, "no certificate serves "
                                              "evil\\x0aforged\\x20[error]\\x1b[31m (alert",
                                      PX_IO_MS), 0);
    px_stop(strict);
}

/* HTTP/2 on a certificate that is not the default: curl naming b.sni.test (--resolve) gets
 * ALPN h2, b's certificate, verified against the test CA, and the answer over HTTP/2. */
static void test_http2_on_second_certificate(void **state)
{
    (void)state;
    static const char *const names[] = {"b.sni.test", "c.sni.test"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint16_t port = harness_port(t.h, "tls");
        char url[128], resolve[128];
        struct tu_cmd_result res;
        snprintf(url, sizeof(url), "https://%s:%u/status/200", names[i], port);
        snprintf(resolve, sizeof(resolve), "%s:%u:127.0.0.1", names[i], port);
        const char *const argv[] = {"curl", "-sS", "-v", "--http2", "--max-time", "5",
                                    "--cacert", t.certs->ca_cert, "--resolve", resolve,
                                    "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                    url, NULL};
        assert_int_equal(tu_run_command(argv, 10000, &res), 0);
        print_message("  %s: %s\n", names[i], res.out);
        bool h2 = strcmp(res.out, "2 200") == 0;
        bool alpn = tu_contains(res.err, "ALPN: server accepted h2") ||
                    tu_contains(res.err, "ALPN, server accepted to use h2");
        bool cert = tu_contains(res.err, i == 0 ? "CN=sni-b" : "CN=sni-wild");
        if (!h2 || !alpn || !cert)
            fail_msg("%s: want HTTP/2 200 over h2 with its certificate:\n%s\n%s", names[i],
                     res.out, res.err);
        tu_cmd_result_free(&res);
    }
}

/* A session resumes under the certificate it was made with, by the names that certificate
 * serves (a.sni.test's on a.sni.test; the wildcard's for c.sni.test on d.sni.test), and a
 * ticket offered for a name of another certificate gets a full handshake with that one's
 * certificate, never an error: TLS 1.2 and 1.3 alike. */
static void test_resumption_per_name(void **state)
{
    (void)state;
    static const struct {
        const char *first, *then;
        int reused;
        const char *cn;           /* the certificate of the second connection */
    } rows[] = {
        {"a.sni.test", "a.sni.test", 1, "sni-a"},
        {"b.sni.test", "b.sni.test", 1, "sni-b"},
        {NULL, NULL, 1, "localhost"},
        {"c.sni.test", "d.sni.test", 1, "sni-wild"}, /* one certificate serves both */
        {"a.sni.test", "b.sni.test", 0, "sni-b"},    /* another certificate: full */
        {"b.sni.test", "unknown.example", 0, "localhost"},
    };
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    uint16_t port = harness_port(t.h, "tls");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        for (size_t v = 0; v < 2; v++) {
            SSL_SESSION *sess = NULL;
            struct hello got;
            assert_int_equal(hello(port, rows[i].first, versions[v], &sess, false, &got), 0);
            assert_non_null(sess);
            if (hello(port, rows[i].then, versions[v], &sess, true, &got) != 0)
                fail_msg("%s then %s: %s", rows[i].first, rows[i].then, got.why);
            print_message("  TLS 1.%zu %s then %s: %s, %s\n", v + 2,
                          rows[i].first ? rows[i].first : "(no SNI)",
                          rows[i].then ? rows[i].then : "(no SNI)",
                          got.reused ? "resumed" : "full handshake", got.cn);
            SSL_SESSION_free(sess);
            assert_int_equal(got.reused, rows[i].reused);
            assert_string_equal(got.cn, rows[i].cn);
            assert_int_equal(got.status, 200);
        }
    }
}

/* ---- load errors ---- */

/* `portico -t` on a [proxy] whose lines 3 on are `pairs`: each problem at its line. */
static const struct px_refusal_row load_error_rows[] = {
    {"a key that does not match its certificate",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\n"
     "tls_cert = %1$s/sni-b.pem\ntls_key = %1$s/sni-a.key\n",
     "portico.ini:6: tls_key: %1$s/sni-a.key: does not match %1$s/sni-b.pem"},
    {"an unreadable file (none there)",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\n"
     "tls_cert = %1$s/missing.pem\ntls_key = %1$s/sni-b.key\n",
     "portico.ini:5: tls_cert: %1$s/missing.pem: No such file or directory"},
    {"two certificates claiming one exact name: both lines",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\n"
     "tls_cert = %1$s/sni-b.pem\ntls_key = %1$s/sni-b.key\n"
     "tls_cert = %1$s/sni-a2.pem\ntls_key = %1$s/sni-a2.key\n",
     "portico.ini:7: tls_cert: %1$s/sni-a2.pem: claims a.sni.test, which the tls_cert of line 3 "
     "(%1$s/sni-a.pem) claims too"},
    {"the same file twice claims its names twice",
     "tls_cert = %1$s/sni-wild.pem\ntls_key = %1$s/sni-wild.key\n"
     "tls_cert = %1$s/sni-wild.pem\ntls_key = %1$s/sni-wild.key\n",
     "portico.ini:5: tls_cert: %1$s/sni-wild.pem: claims *.sni.test, which the tls_cert of line "
     "3 (%1$s/sni-wild.pem) claims too"},
    {"a certificate missing its key",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\ntls_cert = %1$s/sni-b.pem\n",
     "portico.ini:5: tls_cert: %1$s/sni-b.pem: has no tls_key (the Nth tls_cert goes with the "
     "Nth tls_key)"},
    {"a key missing its certificate",
     "tls_cert = %1$s/sni-a.pem\ntls_key = %1$s/sni-a.key\ntls_key = %1$s/sni-b.key\n",
     "portico.ini:5: tls_key: %1$s/sni-b.key: has no tls_cert (the Nth tls_cert goes with the "
     "Nth tls_key)"},
};

static void test_load_errors(void **state)
{
    (void)state;
    px_expect_refused(load_error_rows, ARRAY_SIZE(load_error_rows), t.certs->dir);
}

/* Among several certificates, one chosen by its CN alone loads with a warning (browsers take
 * no certificate by its CN) at its line, and `portico -t` still passes, saying how many
 * certificates it took. */
static void test_cn_only_warns(void **state)
{
    (void)state;
    struct tu_cmd_result res;
    char want[1024];
    int rc = px_check_tls_lines("tls_cert = {{certs}}/sni-a.pem\n"
                                "tls_key = {{certs}}/sni-a.key\n"
                                "tls_cert = {{certs}}/sni-cn.pem\n"
                                "tls_key = {{certs}}/sni-cn.key\n",
                                t.certs->dir, &res);
    snprintf(want, sizeof(want),
             "portico.ini:5: warning: tls_cert: %s: the certificate has no subjectAltName DNS "
             "name: it is chosen for its CN cn.sni.test, which browsers do not accept as its name",
             t.sni->cn_cert);
    bool said = tu_contains(res.err, want);
    bool counted = tu_contains(res.out, "configuration ok (1 upstream, 1 route, 2 certificates "
                                        "chosen by SNI)\n");
    tu_cmd_result_free(&res);
    assert_int_equal(rc, 0);
    if (!said)
        fail_msg("no \"%s\"", want);
    assert_true(counted); /* -t says how many certificates it took */
}

/* ---- reloads ---- */

/* A reload that names a new certificate for a.sni.test serves it from then on; one whose new
 * pair is bad (a key of another certificate) is refused, and the certificates of the running
 * configuration go on serving, a.sni.test's and the default. */
static void test_reload_swaps_and_bad_keeps_old(void **state)
{
    (void)state;
    static const char a_pairs[] = "tls_cert = {{certs}}/server.pem\n"
                                  "tls_key = {{certs}}/server.key\n"
                                  "tls_cert = {{certs}}/sni-a.pem\n"
                                  "tls_key = {{certs}}/sni-a.key\n";
    struct harness *h = start_with(a_pairs, "");
    uint16_t port = harness_port(h, "tls");
    struct hello got;

    assert_int_equal(hello(port, "a.sni.test", 0, NULL, true, &got), 0);
    assert_string_equal(got.cn, "sni-a");

    static const char config_fmt[] = "[proxy]\n"
                                     "listen = 127.0.0.1:{{port:tls}} tls\n"
                                     "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                     "workers = 1\n"
                                     "tls_cert = {{certs}}/server.pem\n"
                                     "tls_key = {{certs}}/server.key\n"
                                     "tls_cert = {{certs}}/%s.pem\n"
                                     "tls_key = {{certs}}/%s.key\n"
                                     "[upstream app]\n"
                                     "origin = sim\n";
    assert_int_equal(harness_write_config(h, config_fmt, "sni-a2", "sni-a2"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    assert_int_equal(hello(port, "a.sni.test", 0, NULL, true, &got), 0);
    print_message("  after a reload: %s\n", got.cn);
    assert_string_equal(got.cn, "sni-a2");
    assert_int_equal(got.status, 200);

    /* sni-b's certificate with sni-a2's key: refused, generation 2 serves on */
    assert_int_equal(harness_write_config(h, config_fmt, "sni-b", "sni-a2"), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "still serving the previous configuration", PX_IO_MS),
                     0);
    assert_true(harness_log_contains(h, "tls_key: "));
    static const struct want_cert kept[] = {
        {"a.sni.test", "sni-a2", "the running configuration's"},
        {"b.sni.test", "localhost", "not the refused file's"},
        {NULL, "localhost", "the default"},
    };
    expect_certs(port, kept, sizeof(kept) / sizeof(kept[0]));
    px_stop(h);
}

/* ---- the expiry metric ---- */

/* portico_tls_certificate_expiry_seconds has a series per certificate served, by file, each
 * the notAfter of that file's leaf (the default's, 100 days from now, differs from the others',
 * ten years). */
static void test_expiry_metric_per_certificate(void **state)
{
    (void)state;
    static const char *const stems[] = {"expires-100d", "sni-wild", "sni-a", "sni-b", "sni-cn"};
    for (size_t i = 0; i < sizeof(stems) / sizeof(stems[0]); i++) {
        char path[512], series[700];
        snprintf(path, sizeof(path), "%s/%s.pem", t.certs->dir, stems[i]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        assert_non_null(x);
        struct tm tm;
        assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
        X509_free(x);
        double want = (double)timegm(&tm);
        snprintf(series, sizeof(series), "portico_tls_certificate_expiry_seconds{file=\"%s\"}",
                 path);
        double got = scrape_metric(harness_port(t.h, "admin"), series, PX_IO_MS);
        print_message("  %s: %.0f\n", stems[i], got);
        if (got != want)
            fail_msg("%s: %.0f, want %.0f", series, got, want);
    }
}

/* Sessions of the default across reloads: under tls_verify_client a single certificate's and
 * the same certificate's as the default of several are one (its ticket resumes after a reload
 * that adds a name); a new default certificate takes none of the old one's. */
static void test_reload_and_the_default_sessions(void **state)
{
    (void)state;
    static const char fmt[] = "[proxy]\n"
                              "listen = 127.0.0.1:{{port:tls}} tls\n"
                              "workers = 1\n"
                              "%s"
                              "tls_cert = {{certs}}/%s.pem\n"
                              "tls_key = {{certs}}/%s.key\n"
                              "%s"
                              "[upstream app]\n"
                              "origin = sim\n";
    static const char sni_a[] = "tls_cert = {{certs}}/sni-a.pem\ntls_key = {{certs}}/sni-a.key\n";
    static const char mtls[] = "tls_verify_client = optional\ntls_client_ca = {{certs}}/ca.pem\n";
    static const struct {
        const char *mtls;
        const char *before, *after;   /* the default's certificate file's stem */
        const char *more_before;      /* pairs after the default's */
        int reused;
        const char *cn;
        const char *why;
    } rows[] = {
        {mtls, "server", "server", "", 1, "localhost", "a name added, the default kept"},
        {"", "server", "sni-b", sni_a, 0, "sni-b", "a new default"},
    };
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h, fmt, rows[i].mtls, rows[i].before,
                                              rows[i].before, rows[i].more_before), 0);
        assert_int_equal(harness_start(h), 0);
        uint16_t port = harness_port(h, "tls");
        SSL_SESSION *sess[2] = {NULL, NULL};
        struct hello got;
        for (size_t v = 0; v < 2; v++) {
            assert_int_equal(hello(port, NULL, versions[v], &sess[v], false, &got), 0);
            assert_non_null(sess[v]);
        }
        assert_int_equal(harness_write_config(h, fmt, rows[i].mtls, rows[i].after, rows[i].after,
                                              sni_a), 0);
        assert_int_equal(harness_signal(h, SIGHUP), 0);
        assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
        for (size_t v = 0; v < 2; v++) {
            if (hello(port, NULL, versions[v], &sess[v], true, &got) != 0)
                fail_msg("%s: %s", rows[i].why, got.why);
            print_message("  %s, TLS 1.%zu: %s, %s\n", rows[i].why, v + 2,
                          got.reused ? "resumed" : "full handshake", got.cn);
            SSL_SESSION_free(sess[v]);
            if (got.reused != rows[i].reused || strcmp(got.cn, rows[i].cn) != 0)
                fail_msg("%s, TLS 1.%zu: %s with %s; want %s with %s", rows[i].why, v + 2,
                         got.reused ? "resumed" : "full", got.cn,
                         rows[i].reused ? "resumed" : "full", rows[i].cn);
            assert_int_equal(got.status, 200);
        }
        px_stop(h);
    }
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_name_gets_its_certificate),
        cmocka_unit_test(test_wildcard_one_label),
        cmocka_unit_test(test_exact_beats_wildcard),
        cmocka_unit_test(test_no_sni_gets_default),
        cmocka_unit_test(test_unknown_name),
        cmocka_unit_test(test_http2_on_second_certificate),
        cmocka_unit_test(test_resumption_per_name),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_cn_only_warns),
        cmocka_unit_test(test_reload_swaps_and_bad_keeps_old),
        cmocka_unit_test(test_expiry_metric_per_certificate),
        cmocka_unit_test(test_reload_and_the_default_sessions),
    };
    tu_ignore_sigpipe();
    return cmocka_run_group_tests(tests, setup, teardown);
}
