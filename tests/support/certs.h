/*
 * certs.h — test certificates, made with the `openssl` CLI at test time (EC P-256 keys but
 * where said, so it takes a few tens of milliseconds) into a temp dir of their own, once per test process, and
 * removed at exit. Every file is PEM; keys are unencrypted.
 */
#ifndef PORTICO_CERTS_H
#define PORTICO_CERTS_H

struct test_certs {
    const char *dir;              /* the directory holding every file below */
    const char *ca_cert;          /* "Portico Test CA", self-signed, CA:TRUE */
    const char *ca_key;
    const char *server_cert;      /* CN/SAN localhost, 127.0.0.1, ::1; signed by the CA; valid */
    const char *server_key;
    const char *self_signed_cert; /* CN/SAN localhost, 127.0.0.1, ::1; self-signed */
    const char *self_signed_key;
    const char *expired_cert;     /* like server_cert, but valid only 2020-01-01..2020-01-02 */
    const char *expired_key;
    const char *wrong_name_cert;  /* CN/SAN wrong.example, and ap*.partial.test (a partial
                                   * wildcard, which Portico takes for no name); signed by the CA;
                                   * valid */
    const char *wrong_name_key;
    const char *client_cert;      /* CN "portico-test-client", clientAuth; signed by the CA */
    const char *client_key;
    const char *deep_chain;       /* CN portico-deep-client, clientAuth, signed by a second
                                     intermediate the first signed; then both */
    const char *deep_key;
};

/* The certificates of this process, generated on first call (thread-safe). NULL (and a message
 * on stderr with openssl's output) if generation failed. */
const struct test_certs *certs_get(void);

/* One certificate with dates around the time it was made (like server_cert otherwise: CN/SAN
 * localhost, 127.0.0.1, ::1, signed by the CA), and those dates as Unix time. */
struct test_dated_cert {
    const char *cert;
    const char *key;
    long long not_before;
    long long not_after;          /* exactly: openssl ca writes the date it is given */
};

/* Certificates whose dates are relative to now, for expiry warnings. */
struct test_dated_certs {
    struct test_dated_cert expired_yesterday; /* valid from 30 days ago until 1 day ago */
    struct test_dated_cert valid_tomorrow;    /* valid from 1 day on, for a year */
    struct test_dated_cert expires_in_3_days; /* valid from 1 day ago until 3 days on */
    struct test_dated_cert expires_in_100_days; /* from 1 day ago until 100 days on */
};

/* The dated certificates of this process (certs_get's CA signs them, in its directory:
 * expired-yesterday.pem, valid-tomorrow.pem, expires-3d.pem, expires-100d.pem and their .key),
 * generated on first call (thread-safe; four more `openssl` pairs, ~80 ms). NULL if it failed. */
const struct test_dated_certs *certs_get_dated(void);

/* A leaf (CN/SAN localhost, 127.0.0.1, ::1) signed by an intermediate CA ("Portico Test
 * Intermediate") that certs_get's CA signed: a server presenting leaf_cert alone sends its chain
 * without the intermediate, one presenting full_chain sends both. */
struct test_chained_certs {
    const char *intermediate_cert;
    const char *leaf_cert;        /* the leaf alone */
    const char *full_chain;       /* the leaf, then the intermediate */
    const char *key;              /* the leaf's key */
    const char *client_chain;     /* CN portico-chained-client, clientAuth, signed by the
                                     intermediate; then the intermediate */
    const char *client_key;
    const char *deep_chain;       /* CN portico-deep-client, clientAuth, signed by a second
                                     intermediate the first signed; then both */
    const char *deep_key;
};

/* The chained certificates of this process (in certs_get's directory), generated on first call
 * (thread-safe; five more `openssl` pairs). NULL if it failed. */
const struct test_chained_certs *certs_get_chained(void);

/* Certificates for several names on one TLS listener (SNI), signed by certs_get's CA, each with
 * a CN of its own that tells which one a client got. */
struct test_sni_certs {
    const char *a_cert;           /* CN sni-a; SAN a.sni.test, WWW.A.sni.test (upper case) */
    const char *a_key;
    const char *wild_cert;        /* CN sni-wild; SAN *.sni.test */
    const char *wild_key;
    const char *b_cert;           /* CN sni-b; SAN b.sni.test, which *.sni.test covers too */
    const char *b_key;
    const char *cn_cert;          /* CN cn.sni.test and no subjectAltName */
    const char *cn_key;
    const char *a2_cert;          /* CN sni-a2; the same names as a_cert, another key */
    const char *a2_key;
};

/* The SNI certificates of this process (in certs_get's directory: sni-a.pem, sni-wild.pem,
 * sni-b.pem, sni-cn.pem, sni-a2.pem and their .key), generated on first call (thread-safe; five
 * more `openssl` pairs). NULL if it failed. */
const struct test_sni_certs *certs_get_sni(void);

/* Certificates of other key types for the names of certs_get_sni's and certs_get's (served
 * beside them, one per key type), signed by certs_get's CA, each CN telling which one a client
 * got. */
struct test_dual_certs {
    const char *a_rsa_cert;       /* CN sni-a-rsa; RSA 2048; the names of sni-a */
    const char *a_rsa_key;
    const char *a_ed25519_cert;   /* CN sni-a-ed25519; Ed25519; the names of sni-a */
    const char *a_ed25519_key;
    const char *a_p384_cert;      /* CN sni-a-p384; ECDSA P-384 (sni-a's type); its names */
    const char *a_p384_key;
    const char *a1_rsa_cert;      /* CN sni-a1-rsa; RSA 2048; a.sni.test only */
    const char *a1_rsa_key;
    const char *server_rsa_cert;  /* CN localhost-rsa; RSA 2048; server_cert's names */
    const char *server_rsa_key;
};

/* The certificates above (in certs_get's directory: sni-a-rsa.pem, sni-a-ed25519.pem,
 * sni-a-p384.pem, sni-a1-rsa.pem, server-rsa.pem and their .key), generated on first call
 * (thread-safe; five more `openssl` pairs, three of them RSA). NULL if it failed. */
const struct test_dual_certs *certs_get_dual(void);

/* Client certificates for mutual TLS: one of another CA that certs_get's does not sign, one
 * expired, and a second good one (client_cert of certs_get is the first). */
struct test_mtls_certs {
    const char *other_ca_cert;    /* "Portico Other CA", self-signed, CA:TRUE */
    const char *other_ca_key;
    const char *other_client_cert; /* CN portico-other-client, clientAuth; signed by the other CA */
    const char *other_client_key;
    const char *expired_client_cert; /* CN portico-expired-client, clientAuth; certs_get's CA;
                                      * valid only 2020-01-01..2020-01-02 */
    const char *expired_client_key;
    const char *client2_cert;     /* CN portico-test-client-2, clientAuth; certs_get's CA */
    const char *client2_key;
};

/* The client certificates of this process (in certs_get's directory: other-ca.pem,
 * other-client.pem, expired-client.pem, client-2.pem and their .key), generated on first call
 * (thread-safe; four more `openssl` pairs). NULL if it failed. */
const struct test_mtls_certs *certs_get_mtls(void);

/* More for mutual TLS: revocation (a client certs_get's CA revoked, and that CA's CRLs), a client
 * not yet valid, and a self-signed client whose subject holds controls and UTF-8. */
struct test_mtls_extra_certs {
    const char *revoked_client_cert; /* CN portico-revoked-client, clientAuth; certs_get's CA;
                                      * revoked by it (listed in crl, crl_expired, crl_other) */
    const char *revoked_client_key;
    const char *later_client_cert;   /* CN portico-later-client, clientAuth; certs_get's CA;
                                      * valid from a day after it was made */
    const char *later_client_key;
    const char *odd_client_cert;     /* self-signed, clientAuth, CA:FALSE; subject
                                      * "CN=portico-odd\nINFO forged line\1\177\302\233,
                                      * O=Caf\303\251" (a line feed, SOH, DEL, the C1 CSI,
                                      * UTF-8 "é") */
    const char *odd_client_key;
    const char *crl_empty;           /* certs_get's CA's CRL made before the revocation: empty */
    const char *crl;                 /* certs_get's CA's CRL listing revoked_client, a week */
    const char *crl_expired;         /* the same, valid only 2020-01-01..2020-01-02 */
    const char *crl_other;           /* a CRL of certs_mtls's other CA */
    const char *ca_and_odd;          /* certs_get's CA, then odd_client: a tls_client_ca that
                                      * trusts the odd client itself */
};

/* The certificates and CRLs above (in certs_get's directory), generated on first call
 * (thread-safe; three more `openssl` pairs and four CRLs). NULL if it failed. */
const struct test_mtls_extra_certs *certs_get_mtls_extra(void);

#endif
