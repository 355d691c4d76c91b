/*
 * test_cert_expiry.c — certificates that expired, are not yet valid or soon expire are said out
 * loud, never refused: `portico -t` warns at the key's line and exits 0, a start and a reload
 * log the warning and serve, and portico_tls_certificate_expiry_seconds{file} carries the
 * served certificate's notAfter. The certificates are made at test time with dates around now
 * (certs_get_dated), so no clock is faked.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/x509_vfy.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

static const struct test_certs *certs;
static const struct test_dated_certs *dated;

static int setup(void **state)
{
    (void)state;
    certs = certs_get();
    dated = certs_get_dated();
    return certs && dated ? 0 : -1;
}

/* "2026-11-30 12:00:00 UTC", as the warnings write a date. */
static const char *utc(long long t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

/* A [proxy] with a TLS listener serving cert/key at lines 3-4, an admin listener, and one
 * upstream towards origin_port. */
static int write_tls_config(struct harness *h, const struct test_dated_cert *c,
                            uint16_t origin_port)
{
    return harness_write_config(h,
                                "[proxy]\n"
                                "listen = 127.0.0.1:{{port:tls}} tls\n"
                                "tls_cert = %s\n"
                                "tls_key = %s\n"
                                "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                "workers = 1\n"
                                "[upstream u]\n"
                                "origin = 127.0.0.1:%u\n",
                                c->cert, c->key, origin_port);
}

/* ---- portico -t ---- */

enum cert_key { AS_TLS_CERT, AS_CLIENT_CERT, AS_CA_FILE, AS_CHAIN };

/* `portico -t`: each dated certificate in each key that names one. The warning is at the key's
 * line, in the FILE:LINE: warning: form, on stderr; the exit stays 0; the 100-day certificate
 * is not warned about. */
static void test_check_warns(void **state)
{
    (void)state;
    const struct {
        const char *why;
        enum cert_key as;
        const struct test_dated_cert *cert;
        const char *words; /* what follows "KEY: PATH: "; %s the date; NULL: no warning */
        bool at_before;    /* the date is notBefore (else notAfter) */
    } rows[] = {
        {"expired yesterday", AS_TLS_CERT, &dated->expired_yesterday,
         "the certificate expired on %s (1 day ago)", false},
        {"valid from tomorrow", AS_TLS_CERT, &dated->valid_tomorrow,
         "the certificate is not yet valid: valid from %s (in ", true},
        /* 3 days less the seconds since it was made: "2 days", or "3 days" in the same second */
        {"expires in 3 days", AS_TLS_CERT, &dated->expires_in_3_days,
         "the certificate expires in ", false},
        {"expires in 100 days", AS_TLS_CERT, &dated->expires_in_100_days, NULL, false},
        {"client certificate expired", AS_CLIENT_CERT, &dated->expired_yesterday,
         "the certificate expired on %s (1 day ago)", false},
        {"client certificate fine", AS_CLIENT_CERT, &dated->expires_in_100_days, NULL, false},
        {"CA file expired", AS_CA_FILE, &dated->expired_yesterday,
         "the CA certificate /CN=localhost expired on %s (1 day ago)", false},
        /* a fine leaf, then a chain certificate that expired: the leaf decides, the other is
         * named by its place */
        {"chain certificate expired", AS_CHAIN, &dated->expired_yesterday,
         "certificate 2 of the chain (/CN=localhost) expired on %s (1 day ago), before the leaf",
         false},
    };
    static const char *const keys[] = {
        [AS_TLS_CERT] = "tls_cert", [AS_CLIENT_CERT] = "client_cert", [AS_CA_FILE] = "ca_file",
        [AS_CHAIN] = "tls_cert",
    };
    static const int lines[] = {
        [AS_TLS_CERT] = 3, [AS_CLIENT_CERT] = 9, [AS_CA_FILE] = 8, [AS_CHAIN] = 3,
    };

    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct harness *h = harness_new();
        char path[600], date[40], words[300], want[1200];
        const char *served = certs->server_cert, *served_key = certs->server_key;
        const char *client = certs->client_cert, *client_key = certs->client_key;
        const char *ca = certs->ca_cert;
        struct tu_cmd_result res;

        assert_non_null(h);
        snprintf(path, sizeof(path), "%s", rows[i].cert->cert);
        if (rows[i].as == AS_TLS_CERT) {
            served = rows[i].cert->cert, served_key = rows[i].cert->key;
        } else if (rows[i].as == AS_CLIENT_CERT) {
            client = rows[i].cert->cert, client_key = rows[i].cert->key;
        } else if (rows[i].as == AS_CA_FILE) {
            ca = rows[i].cert->cert;
        } else { /* the 100-day leaf, then the expired one */
            char *leaf = tu_read_file(dated->expires_in_100_days.cert, NULL);
            char *other = tu_read_file(rows[i].cert->cert, NULL);

            assert_non_null(leaf);
            assert_non_null(other);
            snprintf(path, sizeof(path), "%s/chain.pem", harness_dir(h));
            FILE *f = fopen(path, "w");

            assert_non_null(f);
            fprintf(f, "%s%s", leaf, other);
            fclose(f);
            free(leaf);
            free(other);
            served = path, served_key = dated->expires_in_100_days.key;
        }
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\n"                                  /* 1 */
                                              "listen = 127.0.0.1:{{free_port:l}} tls\n"   /* 2 */
                                              "tls_cert = %s\n"                            /* 3 */
                                              "tls_key = %s\n"                             /* 4 */
                                              "[upstream u]\n"                             /* 5 */
                                              "origin = 127.0.0.1:9\n"                     /* 6 */
                                              "tls = on\n"                                 /* 7 */
                                              "ca_file = %s\n"                             /* 8 */
                                              "client_cert = %s\n"                         /* 9 */
                                              "client_key = %s\n",                         /* 10 */
                                              served, served_key, ca, client, client_key),
                         0);
        int rc = harness_check_config(h, &res);

        if (rows[i].words) {
            utc(rows[i].at_before ? rows[i].cert->not_before : rows[i].cert->not_after, date,
                sizeof(date));
            snprintf(words, sizeof(words), rows[i].words, date);
            snprintf(want, sizeof(want), "portico.ini:%d: warning: %s: %s: %s", lines[rows[i].as],
                     keys[rows[i].as], path, words);
        }
        print_message("  %-26s rc %d %s%s", rows[i].why, rc, res.err, *res.err ? "" : "\n");
        bool warned = tu_contains(res.err, "warning");
        bool as_wanted = rows[i].words && tu_contains(res.err, want);
        bool dated_right = true;

        if (rows[i].as == AS_TLS_CERT && rows[i].cert == &dated->expires_in_3_days) {
            snprintf(want, sizeof(want), ", on %s\n", date); /* the date ends the line */
            dated_right = tu_contains(res.err, want);
        }
        bool ok_printed = tu_contains(res.out, "configuration ok");

        tu_cmd_result_free(&res);
        harness_free(h);
        assert_int_equal(rc, 0);       /* a warning fails nothing */
        assert_true(ok_printed);
        if (rows[i].words == NULL) {
            assert_false(warned);
        } else {
            if (!as_wanted)
                fail_msg("%s: no line starting \"%s\"", rows[i].why, want);
            assert_true(dated_right);
        }
    }
}

/* `portico probe -c FILE` says FILE's warnings on stderr as `portico -t` does, and probes all
 * the same: an expired client_cert is what an origin's refused handshake may come from. It
 * loaded FILE and said nothing of them. */
static void test_probe_warns(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = harness_new();
    struct tu_cmd_result res;
    char url[64], want[700];

    assert_non_null(o);
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{free_port:l}} tls\n"
                                          "tls_cert = %s\n"
                                          "tls_key = %s\n"
                                          "[upstream u]\n"
                                          "origin = 127.0.0.1:%u\n",
                                          dated->expired_yesterday.cert,
                                          dated->expired_yesterday.key, fake_origin_port(o)),
                     0);
    snprintf(url, sizeof(url), "http://127.0.0.1/x");
    const char *const args[] = {"probe", "-c", harness_config_path(h), url, NULL};
    int rc = harness_run(h, args, &res);
    snprintf(want, sizeof(want), "portico.ini:3: warning: tls_cert: %s: the certificate expired",
             dated->expired_yesterday.cert);
    bool warned = tu_contains(res.err, want);
    bool probed = tu_contains(res.out, "outcome");
    print_message("  rc %d, stderr: %s", rc, res.err);
    tu_cmd_result_free(&res);
    harness_free(h);
    fake_origin_stop(o);
    assert_int_equal(rc, 0);
    assert_true(probed);
    if (!warned)
        fail_msg("no line starting \"%s\" on stderr", want);
}

/* ---- start, reload and the metric ---- */

static double expiry_metric(struct harness *h, const char *file)
{
    char series[700];

    snprintf(series, sizeof(series), "portico_tls_certificate_expiry_seconds{file=\"%s\"}", file);
    return scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
}

/* A TLS request to the listener, the certificate not required to verify: it is served (200),
 * and the verification result is returned. */
static long served_over_tls(struct harness *h)
{
    const struct raw_tls_opts tls = {.ca_file = certs->ca_cert, .host = "localhost"};
    struct raw_conn *c = raw_connect_tls(harness_port(h, "tls"), &tls, PX_IO_MS);
    struct raw_response r;

    if (c == NULL)
        fail_msg("TLS connect: %s", raw_last_error());
    long verify = raw_tls_verify_result(c);

    assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                     0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    return verify;
}

/* A start with a certificate that expires in 3 days logs the warning at warn level and serves;
 * the gauge is its notAfter. A reload to one that expired yesterday logs that warning, goes
 * live, serves it (clients see it expired), and the gauge follows. */
static void test_start_and_reload_warn_and_serve(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = harness_new();
    char date[40], want[1200];

    assert_non_null(o);
    assert_non_null(h);
    assert_int_equal(write_tls_config(h, &dated->expires_in_3_days, fake_origin_port(o)), 0);
    assert_int_equal(harness_start(h), 0);
    snprintf(want, sizeof(want), "[warn] %s:3: warning: tls_cert: %s: the certificate "
                                 "expires in ", harness_config_path(h),
             dated->expires_in_3_days.cert);
    if (!harness_log_contains(h, want)) /* said before the listeners that start waited for */
        fail_msg("no \"%s\" at start", want);
    assert_int_equal(served_over_tls(h), X509_V_OK);
    assert_true(expiry_metric(h, dated->expires_in_3_days.cert) ==
                (double)dated->expires_in_3_days.not_after);

    assert_int_equal(write_tls_config(h, &dated->expired_yesterday, fake_origin_port(o)), 0);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    snprintf(want, sizeof(want), "[warn] %s:3: warning: tls_cert: %s: the certificate "
                                 "expired on %s (1 day ago)", harness_config_path(h),
             dated->expired_yesterday.cert,
             utc(dated->expired_yesterday.not_after, date, sizeof(date)));
    if (!harness_log_contains(h, want))
        fail_msg("no \"%s\" at the reload", want);
    assert_int_equal(served_over_tls(h), X509_V_ERR_CERT_HAS_EXPIRED);
    assert_true(expiry_metric(h, dated->expired_yesterday.cert) ==
                (double)dated->expired_yesterday.not_after);
    /* the previous generation's file is gone from the gauge */
    assert_true(expiry_metric(h, dated->expires_in_3_days.cert) == -1);
    px_stop(h);
    fake_origin_stop(o);
}

/* A start with a certificate far from its end logs no warning; the gauge is still there, in
 * /metrics and in /status. */
static void test_no_warning_far_from_expiry(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = harness_new();

    assert_non_null(o);
    assert_non_null(h);
    assert_int_equal(write_tls_config(h, &dated->expires_in_100_days, fake_origin_port(o)), 0);
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(served_over_tls(h), X509_V_OK);
    assert_true(expiry_metric(h, dated->expires_in_100_days.cert) ==
                (double)dated->expires_in_100_days.not_after);
    assert_false(harness_log_contains(h, "[warn]"));
    assert_false(harness_log_contains(h, "warning:"));
    /* /status carries the family with the others (its metrics are the exposition's) */
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    struct raw_response r;
    char want[700];

    assert_int_equal(raw_send_str(c, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Connection: close\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    snprintf(want, sizeof(want), "\"name\":\"portico_tls_certificate_expiry_seconds\"");
    assert_true(tu_contains(r.body, want));
    snprintf(want, sizeof(want), "{\"file\":\"%s\"},\"value\":%lld}",
             dated->expires_in_100_days.cert, dated->expires_in_100_days.not_after);
    if (!tu_contains(r.body, want))
        fail_msg("/status has no %s", want);
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_warns),
        cmocka_unit_test(test_probe_warns),
        cmocka_unit_test(test_start_and_reload_warn_and_serve),
        cmocka_unit_test(test_no_warning_far_from_expiry),
    };

    tu_ignore_sigpipe();
    return cmocka_run_group_tests(tests, setup, NULL);
}
