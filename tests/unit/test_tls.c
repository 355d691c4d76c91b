/*
 * test_tls.c — the TLS helpers that classify what a peer sent: which fatal alerts are a server
 * refusing our handshake (a request sent behind it never reached the application, so it may go
 * to another origin), and which first records are plain HTTP sent to a TLS port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "portico/tls.h"

#define ALERT(desc) ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + (desc))

static void test_alerts(void **state)
{
    (void)state;
    static const struct {
        unsigned long err;
        bool refuses;
    } rows[] = {
        {ALERT(SSL_AD_CERTIFICATE_REQUIRED), true}, /* TLS 1.3: no client certificate */
        {ALERT(SSL_AD_UNKNOWN_CA), true},
        {ALERT(SSL_AD_BAD_CERTIFICATE), true},
        {ALERT(SSL_AD_CERTIFICATE_EXPIRED), true},
        {ALERT(SSL_AD_ACCESS_DENIED), true},
        {ALERT(SSL_AD_DECRYPT_ERROR), true},        /* a CertificateVerify that did not verify */
        {ALERT(SSL_AD_HANDSHAKE_FAILURE), true},
        /* may follow a request the origin took: never a reason to send it elsewhere */
        {ALERT(SSL_AD_INTERNAL_ERROR), false},
        {ALERT(SSL_AD_DECODE_ERROR), false},
        {ALERT(SSL_AD_UNEXPECTED_MESSAGE), false},
        {ALERT(SSL_AD_CLOSE_NOTIFY), false},
        {ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER), false}, /* not an alert */
        {ERR_PACK(ERR_LIB_SYS, 0, 104), false},
        {0, false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (tls_alert_refuses_handshake(rows[i].err) != rows[i].refuses)
            fail_msg("row %zu (reason %d): want %s", i, ERR_GET_REASON(rows[i].err),
                     rows[i].refuses ? "refused" : "not refused");
}

/* A received alert is said by its RFC 8446 name and number, with what it says of client_cert
 * (NULL: none configured); anything else as OpenSSL says it. */
static void test_error_text(void **state)
{
    (void)state;
    static const struct {
        unsigned long err;
        const char *client_cert;
        int alert;           /* tls_alert_received */
        const char *text;    /* tls_error_text, whole */
    } rows[] = {
        {ALERT(SSL_AD_CERTIFICATE_REQUIRED), NULL, 116,
         "alert certificate_required (116): it requires a client certificate: none is set "
         "(client_cert, client_key)"},
        {ALERT(SSL_AD_UNKNOWN_CA), "/etc/c.pem", 48,
         "alert unknown_ca (48): it does not trust the client certificate's issuer (client_cert "
         "/etc/c.pem)"},
        {ALERT(SSL_AD_CERTIFICATE_EXPIRED), "c.pem", 45,
         "alert certificate_expired (45): it holds the client certificate expired (client_cert "
         "c.pem)"},
        /* TLS 1.2's word for a certificate it wanted, and for a cipher it lacks */
        {ALERT(SSL_AD_HANDSHAKE_FAILURE), NULL, 40,
         "alert handshake_failure (40): it may require a client certificate: none is set "
         "(client_cert, client_key)"},
        {ALERT(SSL_AD_HANDSHAKE_FAILURE), "c.pem", 40, "alert handshake_failure (40)"},
        {ALERT(SSL_AD_INTERNAL_ERROR), NULL, 80, "alert internal_error (80)"},
        {ALERT(SSL_AD_PROTOCOL_VERSION), NULL, 70, "alert protocol_version (70)"},
        {ALERT(251), NULL, 251, "alert unknown (251)"},
        {ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER), NULL, -1, NULL},
        {0, NULL, -1, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char buf[200];
        assert_int_equal(tls_alert_received(rows[i].err), rows[i].alert);
        tls_error_text(rows[i].err, rows[i].client_cert, buf, sizeof(buf));
        if (rows[i].text)
            assert_string_equal(buf, rows[i].text);
        else
            assert_null(strstr(buf, "alert")); /* OpenSSL's words */
    }
    /* a detail's buffer too small cuts the text, never overruns */
    char small[12];
    tls_error_text(ALERT(SSL_AD_CERTIFICATE_REQUIRED), NULL, small, sizeof(small));
    assert_string_equal(small, "alert certi");
}

static void test_plain_http(void **state)
{
    (void)state;
    static const struct {
        const char head[TLS_RECORD_HEAD + 1];
        bool plain;
    } rows[] = {
        {"GET /", true},  {"DELET", true}, {"PUT /", true}, {"PATCH", true},
        {"OPTIO", true},  {"GE /x", false}, {"get /", false},
        {"\x16\x03\x01\x02\x00", false}, /* a ClientHello's record */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (tls_plain_http((const unsigned char *)rows[i].head) != rows[i].plain)
            fail_msg("row %zu (%.5s): want %s", i, rows[i].head, rows[i].plain ? "plain" : "TLS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_plain_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
