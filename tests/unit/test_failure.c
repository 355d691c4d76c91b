/*
 * test_failure.c — the (phase, cause) → failure type classifier over every pair, the status of
 * every failure type in the three profiles (README's table), [errors] overrides, names both ways
 * and the RFC 9209 Proxy-Status error types.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/failure.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ANY: the pair cannot happen (or README does not say); it must still give a real failure type
 * in an upstream phase, so that no failure goes unclassified. */
#define ANY (-1)
#define NONE FAIL_NONE
#define TOTAL FAIL_TOTAL_TIMEOUT
#define NOORIG FAIL_NO_HEALTHY_ORIGIN
#define LOCAL FAIL_INTERNAL_ERROR
#define QFULL FAIL_QUEUE_FULL

/* Columns, in enum cause order: none, timeout, total timeout, refused, unreachable, reset, eof,
 * i/o, protocol, tls, cert, nxdomain, resolver failure, no origin, local, no local port, queue
 * full. A local
 * shortage (memory, descriptors, local ports) is Portico's own failure in every phase, never the
 * origin's. */
static const int classify_table[PHASE_COUNT][CAUSE_COUNT] = {
    /* No upstream exists while the client head is read: nothing there is an upstream failure. */
    [PHASE_CLIENT_HEADER] = {NONE, NONE, ANY, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE,
                             NONE, ANY, LOCAL, LOCAL, ANY},
    /* Choosing an origin can only fail by every origin being down; the total timer still runs. */
    [PHASE_ROUTE] = {NONE, ANY, TOTAL, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, NOORIG,
                     LOCAL, LOCAL, QFULL},
    /* Waiting for a slot (max_conns): its timer is queue_timeout; every other cause but the
     * whole-exchange ones cannot happen there. */
    [PHASE_QUEUE] = {NONE, FAIL_QUEUE_TIMEOUT, TOTAL, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY, ANY,
                     ANY, NOORIG, LOCAL, LOCAL, QFULL},
    /* Resolver: its timer is dns_timeout, every other resolver problem is dns_error. */
    [PHASE_DNS] = {NONE, FAIL_DNS_TIMEOUT, TOTAL, FAIL_DNS_ERROR, FAIL_DNS_ERROR, FAIL_DNS_ERROR,
                   FAIL_DNS_ERROR, FAIL_DNS_ERROR, FAIL_DNS_ERROR, ANY, ANY, FAIL_DNS_ERROR,
                   FAIL_DNS_ERROR, NOORIG, LOCAL, LOCAL, QFULL},
    /* TCP connect: RST to SYN is refused (as ECONNREFUSED or a reset), EHOSTUNREACH & co and any
     * other connect error are unreachable. */
    [PHASE_CONNECT] = {NONE, FAIL_CONNECT_TIMEOUT, TOTAL, FAIL_CONNECT_REFUSED,
                       FAIL_CONNECT_UNREACHABLE, FAIL_CONNECT_REFUSED, ANY,
                       FAIL_CONNECT_UNREACHABLE, ANY, ANY, ANY, ANY, ANY, NOORIG, LOCAL, LOCAL, QFULL},
    /* TLS handshake: a bad certificate is its own type; alerts, garbage, closes and resets are
     * handshake failures. */
    [PHASE_TLS] = {NONE, FAIL_TLS_HANDSHAKE_TIMEOUT, TOTAL, ANY, ANY, FAIL_TLS_HANDSHAKE_FAILED,
                   FAIL_TLS_HANDSHAKE_FAILED, FAIL_TLS_HANDSHAKE_FAILED, FAIL_TLS_HANDSHAKE_FAILED,
                   FAIL_TLS_HANDSHAKE_FAILED, FAIL_TLS_CERTIFICATE_INVALID, ANY, ANY, NOORIG, LOCAL,
                   LOCAL, QFULL},
    /* Sending the request: stalls are send_timeout, resets and closes are send_error. */
    [PHASE_SEND] = {NONE, FAIL_SEND_TIMEOUT, TOTAL, ANY, FAIL_SEND_ERROR, FAIL_SEND_ERROR,
                    FAIL_SEND_ERROR, FAIL_SEND_ERROR, ANY, ANY, ANY, ANY, ANY, NOORIG, LOCAL,
                    LOCAL, QFULL},
    /* Waiting for the first byte: a close without a byte is empty_response, a reset is
     * connection_reset, garbage is invalid_response. */
    [PHASE_FIRST_BYTE] = {NONE, FAIL_FIRST_BYTE_TIMEOUT, TOTAL, ANY, ANY, FAIL_CONNECTION_RESET,
                          FAIL_EMPTY_RESPONSE, FAIL_CONNECTION_RESET, FAIL_INVALID_RESPONSE, ANY,
                          ANY, ANY, ANY, NOORIG, LOCAL, LOCAL, QFULL},
    /* Reading the response: the same EOF now means the head (or body) broke off. */
    [PHASE_READ] = {NONE, FAIL_READ_TIMEOUT, TOTAL, ANY, ANY, FAIL_CONNECTION_RESET,
                    FAIL_CONNECTION_RESET, FAIL_CONNECTION_RESET, FAIL_INVALID_RESPONSE, ANY, ANY,
                    ANY, ANY, NOORIG, LOCAL, LOCAL, QFULL},
    /* After the exchange nothing is an upstream failure any more. */
    [PHASE_DONE] = {NONE, NONE, ANY, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE,
                    ANY, ANY, ANY, ANY},
};

static void test_classify_every_pair(void **state)
{
    (void)state;
    for (int p = 0; p < PHASE_COUNT; p++) {
        bool upstream_phase = p >= PHASE_ROUTE && p <= PHASE_READ;
        for (int c = 0; c < CAUSE_COUNT; c++) {
            enum failure_type got = failure_classify((enum phase)p, (enum cause)c);
            int want = classify_table[p][c];
            if ((unsigned)got >= FAILURE_COUNT)
                fail_msg("(%s, %s): type %d out of range", phase_name(p), cause_name(c), got);
            if (want != ANY && got != (enum failure_type)want)
                fail_msg("(%s, %s): %s, want %s", phase_name(p), cause_name(c),
                         failure_name(got), failure_name(want));
            if (want == ANY && upstream_phase && got == FAIL_NONE)
                fail_msg("(%s, %s): unclassified upstream failure", phase_name(p),
                         cause_name(c));
        }
    }
}

/* Out-of-range inputs must not index past the tables. */
static void test_classify_out_of_range(void **state)
{
    (void)state;
    assert_int_equal(failure_classify(PHASE_CONNECT, (enum cause)CAUSE_COUNT), FAIL_NONE);
    assert_int_equal(failure_classify(PHASE_CONNECT, (enum cause)-1), FAIL_NONE);
    assert_true((unsigned)failure_classify((enum phase)PHASE_COUNT, CAUSE_TIMEOUT) <
                FAILURE_COUNT);
    assert_true((unsigned)failure_classify((enum phase)-1, CAUSE_EOF) < FAILURE_COUNT);
}

/* README, "Failures": name, standard, cloudflare, proxy, Proxy-Status error. */
static const struct {
    enum failure_type type;
    const char *name;
    int standard, cloudflare, proxy;
    const char *proxy_status;
} readme_rows[] = {
    {FAIL_DNS_ERROR, "dns_error", 502, 523, 502, "dns_error"},
    {FAIL_DNS_TIMEOUT, "dns_timeout", 504, 523, 599, "dns_timeout"},
    {FAIL_CONNECT_REFUSED, "connect_refused", 502, 521, 502, "connection_refused"},
    {FAIL_CONNECT_TIMEOUT, "connect_timeout", 504, 522, 599, "connection_timeout"},
    {FAIL_CONNECT_UNREACHABLE, "connect_unreachable", 502, 523, 502, "destination_unavailable"},
    {FAIL_TLS_HANDSHAKE_FAILED, "tls_handshake_failed", 502, 525, 502, "tls_protocol_error"},
    {FAIL_TLS_HANDSHAKE_TIMEOUT, "tls_handshake_timeout", 504, 525, 599, "connection_timeout"},
    {FAIL_TLS_CERTIFICATE_INVALID, "tls_certificate_invalid", 502, 526, 502,
     "tls_certificate_error"},
    {FAIL_SEND_TIMEOUT, "send_timeout", 504, 522, 598, "connection_write_timeout"},
    {FAIL_SEND_ERROR, "send_error", 502, 520, 502, "connection_terminated"},
    {FAIL_FIRST_BYTE_TIMEOUT, "first_byte_timeout", 504, 524, 598, "http_response_timeout"},
    {FAIL_READ_TIMEOUT, "read_timeout", 504, 524, 598, "connection_read_timeout"},
    {FAIL_EMPTY_RESPONSE, "empty_response", 502, 520, 502, "connection_terminated"},
    {FAIL_CONNECTION_RESET, "connection_reset", 502, 520, 502, "http_response_incomplete"},
    {FAIL_INVALID_RESPONSE, "invalid_response", 502, 520, 502, "http_protocol_error"},
    {FAIL_TOTAL_TIMEOUT, "total_timeout", 504, 524, 598, "http_response_timeout"},
    {FAIL_NO_HEALTHY_ORIGIN, "no_healthy_origin", 503, 503, 503, "destination_unavailable"},
    {FAIL_INTERNAL_ERROR, "internal_error", 500, 500, 500, "proxy_internal_error"},
    {FAIL_QUEUE_TIMEOUT, "queue_timeout", 503, 503, 503, "connection_limit_reached"},
    {FAIL_QUEUE_FULL, "queue_full", 503, 503, 503, "connection_limit_reached"},
};

static void test_profiles_match_readme(void **state)
{
    (void)state;
    /* every failure type but none has exactly one README row */
    assert_int_equal(ARRAY_LEN(readme_rows), FAILURE_COUNT - 1);
    for (size_t i = 0; i < ARRAY_LEN(readme_rows); i++) {
        enum failure_type t = readme_rows[i].type;
        assert_string_equal(failure_name(t), readme_rows[i].name);
        assert_int_equal(failure_status(t, PROFILE_STANDARD, NULL), readme_rows[i].standard);
        assert_int_equal(failure_status(t, PROFILE_CLOUDFLARE, NULL), readme_rows[i].cloudflare);
        assert_int_equal(failure_status(t, PROFILE_PROXY, NULL), readme_rows[i].proxy);
        assert_string_equal(failure_proxy_status(t), readme_rows[i].proxy_status);
    }
}

/* [errors] overrides one row for the active profile; 0 keeps the profile's status. */
static void test_overrides(void **state)
{
    int ov[FAILURE_COUNT] = {0};
    (void)state;
    ov[FAIL_CONNECT_TIMEOUT] = 599;
    ov[FAIL_INVALID_RESPONSE] = 500;
    for (int p = 0; p < PROFILE_COUNT; p++) {
        assert_int_equal(failure_status(FAIL_CONNECT_TIMEOUT, p, ov), 599);
        assert_int_equal(failure_status(FAIL_INVALID_RESPONSE, p, ov), 500);
        /* the rows not overridden keep the profile's status */
        assert_int_equal(failure_status(FAIL_CONNECT_REFUSED, p, ov),
                         failure_status(FAIL_CONNECT_REFUSED, p, NULL));
    }
    /* out of range: a safe 502, never an index past the tables */
    assert_int_equal(failure_status((enum failure_type)FAILURE_COUNT, PROFILE_STANDARD, ov), 502);
    assert_int_equal(failure_status(FAIL_DNS_ERROR, (enum error_profile)PROFILE_COUNT, ov), 502);
}

static void test_failure_names_round_trip(void **state)
{
    (void)state;
    for (int t = FAIL_NONE + 1; t < FAILURE_COUNT; t++) {
        enum failure_type back = FAIL_NONE;
        assert_int_equal(failure_from_name(failure_name(t), &back), 0);
        assert_int_equal(back, t);
    }
}

/* Names the config parser must refuse. */
static const char *const bad_failure_names[] = {
    "none",              /* not a failure: cannot be overridden */
    "",                  /* empty */
    "Connect_Timeout",   /* names are exact, lowercase */
    "connect_timeout ",  /* no trailing space */
    "connect",           /* a phase, not a failure */
    "connection_timeout", /* a Proxy-Status type, not a failure type */
};

static void test_failure_names_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_failure_names); i++) {
        enum failure_type t = FAIL_DNS_ERROR;
        if (failure_from_name(bad_failure_names[i], &t) != -1)
            fail_msg("'%s' accepted", bad_failure_names[i]);
        assert_int_equal(t, FAIL_DNS_ERROR); /* untouched */
    }
    assert_string_equal(failure_name((enum failure_type)FAILURE_COUNT), "unknown");
    assert_string_equal(failure_proxy_status((enum failure_type)FAILURE_COUNT), "");
    assert_string_equal(failure_proxy_status(FAIL_NONE), "");
}

static void test_profile_names(void **state)
{
    static const struct {
        const char *name;
        int rc;
        enum error_profile p;
    } rows[] = {
        {"standard", 0, PROFILE_STANDARD},     /* README: the default */
        {"cloudflare", 0, PROFILE_CLOUDFLARE}, /* README */
        {"proxy", 0, PROFILE_PROXY},           /* README */
        {"Standard", -1, 0},                   /* exact names */
        {"nginx", -1, 0},                      /* unknown */
        {"", -1, 0},                           /* empty */
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        enum error_profile p = PROFILE_COUNT;
        assert_int_equal(profile_from_name(rows[i].name, &p), rows[i].rc);
        if (rows[i].rc == 0) {
            assert_int_equal(p, rows[i].p);
            assert_string_equal(profile_name(p), rows[i].name);
        }
    }
    assert_string_equal(profile_name((enum error_profile)PROFILE_COUNT), "unknown");
}

/* Phase names are what logs and Server-Timing print (README's access log example). */
static void test_phase_and_cause_names(void **state)
{
    static const char *const phases[PHASE_COUNT] = {
        "client_header", "route", "queue", "dns", "connect", "tls", "send", "first_byte", "read", "done"};
    (void)state;
    for (int p = 0; p < PHASE_COUNT; p++)
        assert_string_equal(phase_name(p), phases[p]);
    assert_string_equal(phase_name((enum phase)PHASE_COUNT), "unknown");
    for (int c = 0; c < CAUSE_COUNT; c++) {
        const char *n = cause_name(c);
        assert_non_null(n);
        assert_true(n[0] != '\0');
    }
    assert_string_equal(cause_name(CAUSE_TIMEOUT), "timeout");
    assert_string_equal(cause_name((enum cause)CAUSE_COUNT), "unknown");
}

/* Passive health counts failures of the origin's network, not of one response: README,
 * "Passive health", lists dns_*, connect_*, tls_*, send_timeout, send_error and
 * first_byte_timeout. Every type has its row, so that no flag of FAILURE_LIST goes unchecked. */
static void test_network_failures(void **state)
{
    static const struct {
        enum failure_type t;
        bool network;
    } rows[] = {
        {FAIL_DNS_ERROR, true},           /* the origin name does not resolve */
        {FAIL_DNS_TIMEOUT, true},         /* nor within dns_timeout */
        {FAIL_CONNECT_REFUSED, true},     /* nothing listens */
        {FAIL_CONNECT_TIMEOUT, true},     /* host down or filtered */
        {FAIL_CONNECT_UNREACHABLE, true}, /* no route to it */
        {FAIL_TLS_HANDSHAKE_FAILED, true}, /* origin cannot speak TLS with us */
        {FAIL_TLS_HANDSHAKE_TIMEOUT, true},
        {FAIL_TLS_CERTIFICATE_INVALID, true},
        {FAIL_SEND_TIMEOUT, true},        /* it takes no request bytes */
        {FAIL_SEND_ERROR, true},          /* it resets or closes while the request goes */
        {FAIL_FIRST_BYTE_TIMEOUT, true},  /* it took the request and never answers */
        {FAIL_READ_TIMEOUT, false},       /* it answered: one response stalled */
        {FAIL_EMPTY_RESPONSE, false},     /* counted by the exchange on fresh connections only */
        {FAIL_CONNECTION_RESET, false},   /* likewise */
        {FAIL_INVALID_RESPONSE, false},   /* one bad response, the origin is up */
        {FAIL_TOTAL_TIMEOUT, false},      /* a slow response, not a dead origin */
        {FAIL_NO_HEALTHY_ORIGIN, false},  /* a consequence of marking down, not a cause */
        {FAIL_INTERNAL_ERROR, false},     /* our own shortage says nothing about the origin */
        {FAIL_QUEUE_TIMEOUT, false},      /* full is no failure: the origins answer, slowly */
        {FAIL_QUEUE_FULL, false},
        {FAIL_NONE, false},               /* nothing failed */
    };
    (void)state;
    assert_int_equal(ARRAY_LEN(rows), FAILURE_COUNT);
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        if (failure_is_network(rows[i].t) != rows[i].network)
            fail_msg("%s: network %d", failure_name(rows[i].t), !rows[i].network);
    assert_false(failure_is_network((enum failure_type)FAILURE_COUNT));
}

/* One errno → cause map for every socket call (connect, read, write), decided once. */
static void test_cause_from_errno(void **state)
{
    static const struct {
        int err;
        enum cause cause;
    } rows[] = {
        {ECONNREFUSED, CAUSE_REFUSED},   /* RST to our SYN */
        {ETIMEDOUT, CAUSE_TIMEOUT},      /* the kernel gave up retransmitting */
        {ECONNRESET, CAUSE_RESET},       /* RST on an established connection */
        {EPIPE, CAUSE_RESET},            /* wrote after the peer's RST */
        {ECONNABORTED, CAUSE_RESET},     /* aborted by the peer: a reset, as for ECONNRESET */
        {EHOSTUNREACH, CAUSE_UNREACHABLE}, /* ICMP host unreachable */
        {ENETUNREACH, CAUSE_UNREACHABLE},  /* no route */
        {EADDRNOTAVAIL, CAUSE_UNREACHABLE}, /* no usable source address */
        {EMFILE, CAUSE_LOCAL},           /* out of descriptors: ours, not the origin's fault */
        {ENFILE, CAUSE_LOCAL},
        {ENOMEM, CAUSE_LOCAL},           /* out of memory */
        {ENOBUFS, CAUSE_LOCAL},
        {EIO, CAUSE_IO},                 /* anything else */
        {0, CAUSE_IO},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        if (cause_from_errno(rows[i].err) != rows[i].cause)
            fail_msg("%s: %s, want %s", strerror(rows[i].err),
                     cause_name(cause_from_errno(rows[i].err)), cause_name(rows[i].cause));
    assert_int_equal(failure_classify(PHASE_CONNECT, CAUSE_LOCAL), FAIL_INTERNAL_ERROR);
    assert_false(failure_is_network(failure_classify(PHASE_CONNECT, CAUSE_LOCAL)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_every_pair),
        cmocka_unit_test(test_classify_out_of_range),
        cmocka_unit_test(test_profiles_match_readme),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_failure_names_round_trip),
        cmocka_unit_test(test_failure_names_refused),
        cmocka_unit_test(test_profile_names),
        cmocka_unit_test(test_phase_and_cause_names),
        cmocka_unit_test(test_network_failures),
        cmocka_unit_test(test_cause_from_errno),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
