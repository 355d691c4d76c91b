/*
 * sni.c — the certificate a ClientHello gets, by the name it asks for. See sni.h.
 *
 * Each certificate/key pair is loaded into a server context of its own (tls_server_ctx, with
 * every check of a single pair), and the first one, the default, is the context connections
 * are made from. Pairs of the same names and other key types join the entry of the first of
 * them (its "head"): the default context takes its entry's certificates beside its own, so a
 * connection starts with all of them. Its ClientHello callback (which OpenSSL runs before it
 * looks at a session to resume or at ALPN) puts the chosen entry's certificates, chains and
 * keys on the connection, one per key type, for OpenSSL to pick from by the client's
 * signature_algorithms (and TLS 1.2 cipher suites) as nginx leaves it to, and sets the
 * connection's session ID context to the entry's digest: a session is resumed only under the
 * entry it was made with (another name's ticket gets a full handshake, as RFC 8446 4.6.1 asks
 * of a client that the server cannot count on). The connection never changes context (no
 * SSL_set_SSL_CTX): ALPN, the ticket callback, the options and the info callback stay the
 * default context's, so no setting can be forgotten on the others.
 */
#include "portico/sni.h"

#include <ctype.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/mtls.h"

/* One name and the entry that serves it. */
struct sni_name {
    char *name;                           /* owned, lowercase; a wildcard's without its "*." */
    int cert;                             /* index into certs: the entry's head */
};

/* One certificate as a connection takes it. */
struct sni_cert {
    SSL_CTX *ctx;                         /* owned, but certs[0]'s: the table's owner */
    X509 *leaf;                           /* borrowed from ctx */
    EVP_PKEY *key;                        /* borrowed from ctx */
    STACK_OF(X509) *chain;                /* borrowed from ctx; NULL: none */
    enum tls_key_type type;               /* its key's */
    int head;                             /* the first certificate of its entry */
    int next;                             /* the next one of its entry, -1: none */
    unsigned char sid[MTLS_SID_LEN];      /* a head's: the session ID context of its entry,
                                             the digests of its leaves with the client
                                             certificate settings (mtls.h) */
};

struct sni_table {
    bool strict;                          /* a name of no certificate is refused */
    int ncerts;
    struct sni_cert *certs;
    struct sni_name *exact;               /* sorted by name */
    size_t nexact;
    struct sni_name *wild;                /* sorted by name, the part after "*." */
    size_t nwild;
    size_t cap_exact, cap_wild;
    bool oom;                             /* a name could not be kept */
};

_Static_assert(MTLS_SID_LEN <= SSL_MAX_SID_CTX_LENGTH, "a digest is a session ID context");

static int table_index = -1;
static int refusal_index = -1;            /* of an SSL: why strict SNI refused it (owned) */
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_free(struct sni_table *t)
{
    if (!t)
        return;
    for (int i = 1; t->certs && i < t->ncerts; i++)
        SSL_CTX_free(t->certs[i].ctx);
    for (size_t i = 0; i < t->nexact; i++)
        free(t->exact[i].name);
    for (size_t i = 0; i < t->nwild; i++)
        free(t->wild[i].name);
    free(t->exact);
    free(t->wild);
    free(t->certs);
    free(t);
}

/* The table goes with the default context, which connections still in a handshake hold. */
static void table_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    table_free(ptr);
}

static void refusal_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                            void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

static void table_index_init(void)
{
    table_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, table_ex_free);
    refusal_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, refusal_ex_free);
}

/* ---- names ---- */

/* A DNS name a ClientHello can carry: letters, digits, '-' and '_' in non-empty labels. */
static bool plain_name(const char *s, size_t len)
{
    if (len == 0 || len > SNI_NAME_MAX || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.' ? s[i + 1] == '.' : !(isalnum(ch) || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* s[0..len) as a name a certificate serves, lowercase into out[SNI_NAME_MAX + 1]: a plain name,
 * or "*." and a plain name of two labels at least (no wildcard for a whole top-level domain). */
static bool served_name(const char *s, size_t len, char *out)
{
    bool wild = len > 2 && s[0] == '*' && s[1] == '.';
    const char *rest = wild ? s + 2 : s;
    size_t rest_len = wild ? len - 2 : len;
    if (len > SNI_NAME_MAX || !plain_name(rest, rest_len) ||
        (wild && !memchr(rest, '.', rest_len)))
        return false;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[len] = '\0';
    return true;
}

int sni_cert_names(void *ctx, sni_name_fn *fn, void *arg, bool *from_cn)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char name[SNI_NAME_MAX + 1];
    int given = 0, dns = 0;
    *from_cn = false;
    if (!x)
        return 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        dns++;
        const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        int len = ASN1_STRING_length(g->d.dNSName);
        if (len > 0 && !memchr(s, '\0', (size_t)len) && served_name(s, (size_t)len, name)) {
            fn(arg, name);
            given++;
        }
    }
    GENERAL_NAMES_free(gens);
    if (dns > 0)
        return given;
    /* No DNS name: the CN, as OpenSSL's own X509_check_host reads it (its last one). Browsers
     * accept the certificate for no name then, but a ClientHello naming it still gets it. */
    X509_NAME *subject = X509_get_subject_name(x);
    int last = -1;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;)
        last = i;
    unsigned char *cn = NULL;
    int len = last < 0 ? -1
                       : ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(
                                                      X509_NAME_get_entry(subject, last)));
    if (len > 0 && !memchr(cn, '\0', (size_t)len) && served_name((char *)cn, (size_t)len, name)) {
        fn(arg, name);
        given++;
        *from_cn = true;
    }
    OPENSSL_free(cn);
    return given;
}

/* The name a ClientHello asks for (lowercase, without one final dot) into key; false for none
 * or one too long to be any certificate's. */
static bool name_key(const char *name, size_t len, char *key)
{
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > SNI_NAME_MAX || memchr(name, '\0', len))
        return false;
    for (size_t i = 0; i < len; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    key[len] = '\0';
    return true;
}

static int by_name(const void *a, const void *b)
{
    const struct sni_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->cert > y->cert) - (x->cert < y->cert);
}

static int find(const struct sni_name *v, size_t n, const char *key)
{
    struct sni_name probe = {(char *)(uintptr_t)key, -1};
    size_t lo = 0, hi = n;
    while (lo < hi) { /* the first entry not below probe: the lowest cert of the name */
        size_t mid = lo + (hi - lo) / 2;
        if (by_name(&v[mid], &probe) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && strcmp(v[lo].name, key) == 0 ? v[lo].cert : -1;
}

/* The certificate for key (name_key's), or 0 (the default), or -1 refused (strict). A wildcard
 * stands for one whole label (RFC 6125 6.4.3): not an empty one (".a.test"), nor a '*' or a
 * blank a ClientHello may carry, which strict SNI would otherwise take for a name served. */
static int choose(const struct sni_table *t, const char *key)
{
    int cert = find(t->exact, t->nexact, key);
    const char *parent = strchr(key, '.');
    if (cert < 0 && parent && plain_name(key, (size_t)(parent - key)) && parent[1])
        cert = find(t->wild, t->nwild, parent + 1);
    if (cert < 0)
        cert = t->strict ? -1 : 0;
    return cert;
}

int sni_choose(void *ctx, const char *name)
{
    const struct sni_table *t = table_index < 0 ? NULL : SSL_CTX_get_ex_data(ctx, table_index);
    char key[SNI_NAME_MAX + 1];
    if (!t)
        return 0;
    if (!name || !name_key(name, strlen(name), key))
        return t->strict ? -1 : 0;
    return choose(t, key);
}

/* ---- the ClientHello ---- */

/* What a ClientHello's server_name extension (RFC 6066 3) gave. */
enum hello_sni {
    HELLO_NAMED,                          /* one host_name: into key */
    HELLO_UNNAMED,                        /* none, or a name no certificate can have (empty, a
                                             NUL, too long) */
    HELLO_MALFORMED,                      /* lengths that do not add up, another type, or more
                                             than one name: OpenSSL's own parse, after this
                                             callback, ends the handshake with decode_error */
};

static enum hello_sni hello_name(SSL *ssl, char *key)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1)
        return HELLO_UNNAMED;
    /* OpenSSL's reading: a list of exactly one host_name */
    if (len < 5 || (size_t)(p[0] << 8 | p[1]) != len - 2 || p[2] != TLSEXT_NAMETYPE_host_name ||
        (size_t)(p[3] << 8 | p[4]) != len - 5)
        return HELLO_MALFORMED;
    return name_key((const char *)p + 5, len - 5, key) ? HELLO_NAMED : HELLO_UNNAMED;
}

/* The name key as a log line says it, into out[4 * SNI_NAME_MAX + 1]: a ClientHello's bytes,
 * unchecked by OpenSSL but for NUL, each outside visible ASCII and the backslash written \xNN,
 * so that no name can begin a forged line of the log or drive a terminal. */
static void name_text(const char *key, char *out)
{
    for (; *key; key++) {
        unsigned char ch = (unsigned char)*key;
        if (ch > ' ' && ch < 0x7f && ch != '\\')
            *out++ = (char)ch;
        else
            out += snprintf(out, 5, "\\x%02x", ch);
    }
    *out = '\0';
}

/* Strict SNI's refusal of each hello_sni: the alert, and the log line's words (sni_refused). */
static const struct {
    int alert;
    const char *why;                      /* a format of the name's text (empty but named) */
} refusals[] = {
    [HELLO_NAMED] = {SSL_AD_UNRECOGNIZED_NAME, "tls_strict_sni: no certificate serves %s (alert "
                                               "unrecognized_name sent)"},
    [HELLO_UNNAMED] = {SSL_AD_UNRECOGNIZED_NAME, "tls_strict_sni: the ClientHello names no host%s "
                                                 "(alert unrecognized_name sent)"},
    [HELLO_MALFORMED] = {SSL_AD_DECODE_ERROR, "tls_strict_sni: the ClientHello's server_name is "
                                              "malformed%s (alert decode_error sent)"},
};

/* Refuses the handshake (strict SNI): the alert of what the ClientHello gave, and the line
 * kept for the log (OpenSSL's own error says "callback failed"). */
static int refuse(SSL *ssl, enum hello_sni got, const char *key, int *alert)
{
    char name[4 * SNI_NAME_MAX + 1] = "";
    if (got == HELLO_NAMED)
        name_text(key, name);
    char why[SNI_REFUSAL_MAX];
    snprintf(why, sizeof(why), refusals[got].why, name);
    char *kept = strdup(why);
    if (kept && SSL_set_ex_data(ssl, refusal_index, kept) != 1)
        free(kept);
    *alert = refusals[got].alert;
    return SSL_CLIENT_HELLO_ERROR;
}

/* OpenSSL's ClientHello callback of the default context: the chosen entry's certificates go
 * on the connection, in place of the default ones (cleared first: a default of a key type the
 * entry has not would stay beside them, and OpenSSL could send it). */
static int choose_cert(SSL *ssl, int *alert, void *arg)
{
    const struct sni_table *t = arg;
    char key[SNI_NAME_MAX + 1];
    enum hello_sni got = hello_name(ssl, key);
    int cert = got == HELLO_NAMED ? choose(t, key) : t->strict ? -1 : 0;
    if (cert < 0)
        return refuse(ssl, got, key, alert);
    if (cert == 0) /* the context's own, set at SSL_new */
        return SSL_CLIENT_HELLO_SUCCESS;
    SSL_certs_clear(ssl);
    for (int i = cert; i >= 0; i = t->certs[i].next) {
        const struct sni_cert *c = &t->certs[i];
        if (SSL_use_cert_and_key(ssl, c->leaf, c->key, c->chain, 1) != 1)
            goto internal;
    }
    if (SSL_set_session_id_context(ssl, t->certs[cert].sid, sizeof(t->certs[cert].sid)) != 1)
        goto internal;
    return SSL_CLIENT_HELLO_SUCCESS;
internal:
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
}

int sni_served(const SSL *ssl)
{
    X509 *x = SSL_get_certificate(ssl);
    if (!x || SSL_session_reused(ssl))
        return -1;
    const struct sni_table *t =
        table_index < 0 ? NULL : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), table_index);
    if (!t)
        return 0;
    /* after a full handshake OpenSSL's current certificate is the one it chose to send */
    for (int i = 0; i < t->ncerts; i++)
        if (t->certs[i].leaf == x)
            return i;
    return -1;
}

/* ---- key types ---- */

/* OpenSSL's key type names and the slot each is kept in. */
static const struct {
    const char *evp;                      /* EVP_PKEY_is_a's name */
    enum tls_key_type key;
} key_types[] = {
    {"RSA", TLS_KEY_RSA},         {"RSA-PSS", TLS_KEY_RSA_PSS}, {"EC", TLS_KEY_ECDSA},
    {"ED25519", TLS_KEY_ED25519}, {"ED448", TLS_KEY_ED448},
};

static enum tls_key_type key_type_of(EVP_PKEY *pk)
{
    for (size_t i = 0; pk && i < sizeof(key_types) / sizeof(key_types[0]); i++)
        if (EVP_PKEY_is_a(pk, key_types[i].evp))
            return key_types[i].key;
    return TLS_KEY_OTHER;
}

enum tls_key_type sni_key_type(void *ctx, char *desc, size_t size)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    EVP_PKEY *pk = x ? X509_get0_pubkey(x) : NULL;
    enum tls_key_type type = key_type_of(pk);
    if (!desc)
        return type;
    char group[64] = "";
    size_t glen = 0;
    const char *nist = NULL;
    if (type == TLS_KEY_ECDSA && EVP_PKEY_get_group_name(pk, group, sizeof(group), &glen) == 1)
        nist = EC_curve_nid2nist(OBJ_txt2nid(group)); /* "P-256" for prime256v1 */
    if (type == TLS_KEY_ECDSA)
        snprintf(desc, size, "ecdsa %s", nist ? nist : group[0] ? group : "?");
    else if (type == TLS_KEY_RSA || type == TLS_KEY_RSA_PSS)
        snprintf(desc, size, "%s %d", tls_key_name(type), EVP_PKEY_get_bits(pk));
    else
        snprintf(desc, size, "%s", pk ? tls_key_name(type) : "no key");
    return type;
}

/* ---- building the table ---- */

/* The names one certificate serves, sorted, each once: the certificates of one entry have the
 * same. */
struct name_set {
    char **v;                             /* owned, lowercase ("*.w.test" for a wildcard) */
    size_t n, cap;
    bool oom;
};

static void set_add(void *arg, const char *name)
{
    struct name_set *s = arg;
    if (s->n == s->cap) {
        size_t want = s->cap ? 2 * s->cap : 8;
        char **grown = realloc(s->v, want * sizeof(*s->v));
        if (!grown) {
            s->oom = true;
            return;
        }
        s->v = grown, s->cap = want;
    }
    if (!(s->v[s->n] = strdup(name)))
        s->oom = true;
    else
        s->n++;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_settle(struct name_set *s)
{
    size_t kept = 0;
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), by_text);
    for (size_t i = 0; i < s->n; i++) {
        if (kept && strcmp(s->v[kept - 1], s->v[i]) == 0)
            free(s->v[i]);
        else
            s->v[kept++] = s->v[i];
    }
    s->n = kept;
}

static bool set_equal(const struct name_set *a, const struct name_set *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return false;
    return true;
}

static void sets_free(struct name_set *sets, int n)
{
    for (int i = 0; sets && i < n; i++) {
        for (size_t k = 0; k < sets[i].n; k++)
            free(sets[i].v[k]);
        free(sets[i].v);
    }
    free(sets);
}

/* The entry certificate i joins: the first before it of the same names (a certificate without
 * any joins the default only, the one such a certificate is served as), or -1 for its own. */
static int entry_of(const struct sni_table *t, const struct name_set *sets, int i)
{
    for (int j = 0; j < i; j++)
        if (t->certs[j].head == j && set_equal(&sets[j], &sets[i]) && (sets[i].n > 0 || j == 0))
            return j;
    return -1;
}

/* Certificate i into the entry of head, whose context takes it beside the others, each in the
 * slot of its key type (the default's context is what connections start from; the others' are
 * where OpenSSL says whether a slot is taken). 0; 1 when the slot is taken (told); -1. */
static int join(struct sni_table *t, void **ctxs, const struct name_set *sets, int head, int i,
                sni_conflict_fn *conflict, void *arg)
{
    struct sni_cert *c = &t->certs[i];
    if (SSL_CTX_use_cert_and_key(ctxs[head], c->leaf, c->key, c->chain, 0) != 1) {
        unsigned long e = ERR_peek_last_error();
        ERR_clear_error();
        if (ERR_GET_REASON(e) != SSL_R_NOT_REPLACING_CERTIFICATE)
            return -1;
        int same = head; /* the one of its type, for the message */
        for (int m = head; m >= 0; m = t->certs[m].next)
            if (t->certs[m].type == c->type)
                same = m;
        if (conflict)
            conflict(arg, sets[i].n ? sets[i].v[0] : "", same, i, true);
        c->head = -1; /* in no entry: its names are not told again as claimed twice */
        return 1;
    }
    int last = head;
    while (t->certs[last].next >= 0)
        last = t->certs[last].next;
    t->certs[last].next = i;
    c->head = head;
    return 0;
}

static int by_bytes(const void *a, const void *b)
{
    return memcmp(a, b, MTLS_SID_LEN);
}

#define ENTRY_KEYS_MAX 16 /* certificates of one entry: more than OpenSSL has slots */

/* The session ID context of the entry of head: its one certificate's as before entries had
 * several (a reload to this version keeps tickets good), else a digest of its certificates'
 * in a fixed order (the order of their lines changes nothing). 0, or -1. */
static int entry_sid(struct sni_table *t, int head, const unsigned char *bind)
{
    unsigned char sids[ENTRY_KEYS_MAX][MTLS_SID_LEN];
    int n = 0;
    for (int m = head; m >= 0 && n < ENTRY_KEYS_MAX; m = t->certs[m].next)
        if (mtls_session_context(t->certs[m].leaf, bind, sids[n++]) != 0)
            return -1;
    if (n == 1) {
        memcpy(t->certs[head].sid, sids[0], MTLS_SID_LEN);
        return 0;
    }
    qsort(sids, (size_t)n, MTLS_SID_LEN, by_bytes);
    unsigned len = 0;
    return EVP_Digest(sids, (size_t)n * MTLS_SID_LEN, t->certs[head].sid, &len, EVP_sha256(),
                      NULL) == 1 && len == MTLS_SID_LEN
               ? 0
               : -1;
}

struct collect {
    struct sni_table *t;
    int cert;
};

static void keep_name(void *arg, const char *name)
{
    struct collect *c = arg;
    struct sni_table *t = c->t;
    bool wild = name[0] == '*';
    struct sni_name **v = wild ? &t->wild : &t->exact;
    size_t *n = wild ? &t->nwild : &t->nexact, *cap = wild ? &t->cap_wild : &t->cap_exact;
    if (*n == *cap) {
        size_t want = *cap ? 2 * *cap : 16;
        struct sni_name *grown = realloc(*v, want * sizeof(**v));
        if (!grown) {
            t->oom = true;
            return;
        }
        *v = grown, *cap = want;
    }
    char *copy = strdup(wild ? name + 2 : name);
    if (!copy) {
        t->oom = true;
        return;
    }
    (*v)[(*n)++] = (struct sni_name){copy, c->cert};
}

/* Sorts v and drops a certificate's repeats of a name; a name of two certificates is told to
 * conflict (prefix "*." for wildcards). false when there was one. */
static bool settle(struct sni_name *v, size_t *n, const char *prefix, sni_conflict_fn *conflict,
                   void *arg)
{
    bool ok = true;
    size_t kept = 0;
    if (*n == 0) /* v is NULL then, which qsort may not be given */
        return true;
    qsort(v, *n, sizeof(*v), by_name);
    for (size_t i = 0; i < *n; i++) {
        const struct sni_name *first = kept ? &v[kept - 1] : NULL;
        if (!first || strcmp(first->name, v[i].name) != 0) {
            v[kept++] = v[i];
            continue;
        }
        if (first->cert != v[i].cert) {
            char name[SNI_NAME_MAX + 3];
            snprintf(name, sizeof(name), "%s%s", prefix, v[i].name);
            if (conflict)
                conflict(arg, name, first->cert, v[i].cert, false);
            ok = false;
        }
        free(v[i].name);
    }
    *n = kept;
    return ok;
}

int sni_attach(void **ctxs, int n, bool strict, const unsigned char *bind,
               sni_conflict_fn *conflict, void *arg, int *entry)
{
    pthread_once(&table_once, table_index_init);
    struct sni_table *t = calloc(1, sizeof(*t));
    struct name_set *sets = calloc((size_t)n, sizeof(*sets));
    bool unique = true;
    if (!t || !sets || table_index < 0 || !(t->certs = calloc((size_t)n, sizeof(*t->certs))))
        goto fail;
    t->strict = strict;
    /* each context's own certificate, read before any takes another one beside it */
    for (int i = 0; i < n; i++) {
        struct sni_cert *c = &t->certs[i];
        c->leaf = SSL_CTX_get0_certificate(ctxs[i]);
        c->key = SSL_CTX_get0_privatekey(ctxs[i]);
        c->type = key_type_of(c->key);
        c->head = i;
        c->next = -1;
        bool from_cn;
        if (!c->leaf || !c->key || SSL_CTX_get0_chain_certs(ctxs[i], &c->chain) != 1)
            goto fail;
        sni_cert_names(ctxs[i], set_add, &sets[i], &from_cn);
        if (sets[i].oom)
            goto fail;
        set_settle(&sets[i]);
    }
    for (int i = 1; i < n; i++) {
        int head = entry_of(t, sets, i);
        int rc = head < 0 ? 0 : join(t, ctxs, sets, head, i, conflict, arg);
        if (rc < 0)
            goto fail;
        unique &= rc == 0;
    }
    for (int i = 0; i < n; i++) {
        if (t->certs[i].head != i)
            continue;
        if (entry_sid(t, i, bind) != 0)
            goto fail;
        struct collect col = {t, i};
        for (size_t k = 0; k < sets[i].n; k++)
            keep_name(&col, sets[i].v[k]);
    }
    unique &= settle(t->exact, &t->nexact, "", conflict, arg);
    unique &= settle(t->wild, &t->nwild, "*.", conflict, arg);
    if (!unique || t->oom || SSL_CTX_set_ex_data(ctxs[0], table_index, t) != 1)
        goto fail;
    sets_free(sets, n);
    for (int i = 0; entry && i < n; i++)
        entry[i] = t->certs[i].head;
    /* from here the default context owns the table, and the table the other contexts */
    t->ncerts = n;
    for (int i = 1; i < n; i++)
        t->certs[i].ctx = ctxs[i];
    SSL_CTX_set_client_hello_cb(ctxs[0], choose_cert, t);
    SSL_CTX_set_session_id_context(ctxs[0], t->certs[0].sid, sizeof(t->certs[0].sid));
    return 0;
fail:
    sets_free(sets, n);
    table_free(t); /* ncerts is 0: no context freed */
    return -1;
}

bool sni_refused(SSL *ssl, char *buf, size_t size)
{
    const char *why = refusal_index < 0 ? NULL : SSL_get_ex_data(ssl, refusal_index);
    if (!why)
        return false;
    snprintf(buf, size, "%s", why);
    return true;
}
