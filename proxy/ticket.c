/*
 * ticket.c — the process's TLS session ticket keys. See ticket.h.
 *
 * OpenSSL's default is one random key per SSL_CTX, so each reload (a new generation, a new
 * context) made every client's ticket useless, and a process never reloaded kept one key for
 * its whole life (a key read from its memory decrypts every ticket it ever made, and with it
 * each resumed session's traffic). Here one ring serves every context: a key is born when the
 * first ticket is made after the previous one is a rotation period old, encrypts for that
 * period, and decrypts until the last ticket it made has expired, then is wiped. Three keys at
 * most, so a lookup is a walk of four slots under one mutex, taken once per ticket made or read
 * (a full handshake costs ~1000x more); nothing expensive runs under it but the rare RAND_bytes
 * of a rotation.
 */
#include "portico/ticket.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

/* Three live keys at most (one encrypting, two whose tickets may still be valid); one more slot
 * for a reload that shortens the period, after which more keys may be young enough for a
 * while: the oldest goes first. */
#define TICKET_SLOTS 4

struct held {
    struct ticket_key key;
    uint64_t born_ms;                     /* CLOCK_BOOTTIME (ring_now_ms) */
    bool used;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct held ring[TICKET_SLOTS];
static int current = -1;                  /* the slot of the newest key, -1: none */

uint64_t ticket_lifetime_ms(uint64_t rotation_ms)
{
    return 2 * rotation_ms;
}

static uint64_t age(const struct held *h, uint64_t now_ms)
{
    return now_ms > h->born_ms ? now_ms - h->born_ms : 0;
}

static void drop(int i)
{
    OPENSSL_cleanse(&ring[i], sizeof(ring[i]));
    if (i == current)
        current = -1;
}

/* Wipes each key whose last ticket has expired. Under the lock. */
static void expire(uint64_t now_ms, uint64_t rotation_ms)
{
    for (int i = 0; i < TICKET_SLOTS; i++)
        if (ring[i].used && age(&ring[i], now_ms) >= rotation_ms + ticket_lifetime_ms(rotation_ms))
            drop(i);
}

/* A free slot, or the oldest key's. Under the lock. */
static int free_slot(void)
{
    int oldest = 0;
    for (int i = 0; i < TICKET_SLOTS; i++) {
        if (!ring[i].used)
            return i;
        if (ring[i].born_ms < ring[oldest].born_ms)
            oldest = i;
    }
    drop(oldest);
    return oldest;
}

int ticket_current(uint64_t now_ms, uint64_t rotation_ms, struct ticket_key *out)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    expire(now_ms, rotation_ms);
    if (current < 0 || age(&ring[current], now_ms) >= rotation_ms) {
        struct held fresh = {.born_ms = now_ms, .used = true};
        if (RAND_bytes((unsigned char *)&fresh.key, sizeof(fresh.key)) != 1) {
            OPENSSL_cleanse(&fresh, sizeof(fresh));
            rc = -1;
            goto done;
        }
        int i = free_slot();
        ring[i] = fresh;
        OPENSSL_cleanse(&fresh, sizeof(fresh));
        current = i;
    }
    *out = ring[current].key;
done:
    pthread_mutex_unlock(&lock);
    return rc;
}

enum ticket_found ticket_find(const unsigned char *name, uint64_t now_ms, uint64_t rotation_ms,
                              struct ticket_key *out)
{
    enum ticket_found found = TICKET_UNKNOWN;
    pthread_mutex_lock(&lock);
    expire(now_ms, rotation_ms);
    for (int i = 0; i < TICKET_SLOTS && found == TICKET_UNKNOWN; i++) {
        if (!ring[i].used || memcmp(ring[i].key.name, name, TICKET_NAME_LEN) != 0)
            continue;
        *out = ring[i].key;
        /* a current key past its period is replaced by the next ticket made: renew now */
        found = i == current && age(&ring[i], now_ms) < rotation_ms ? TICKET_CURRENT
                                                                     : TICKET_RENEW;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

unsigned ticket_count(void)
{
    unsigned n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < TICKET_SLOTS; i++)
        n += ring[i].used;
    pthread_mutex_unlock(&lock);
    return n;
}

void ticket_wipe_all(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < TICKET_SLOTS; i++)
        drop(i);
    pthread_mutex_unlock(&lock);
}

static int set_hmac(EVP_MAC_CTX *hctx, struct ticket_key *k)
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* The ring's clock: CLOCK_BOOTTIME, which goes on through a suspend (CLOCK_MONOTONIC stops):
 * a key's life is promised in real time (README: a key read now decrypts no ticket more than
 * three periods old), and after a resume the first handshake wipes what aged meanwhile. */
static uint64_t ring_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* OpenSSL's ticket callback (TLS 1.2 tickets and TLS 1.3 stateless PSKs alike). enc: fill in
 * the current key for a new ticket (1), or 0 to issue none; else find the ticket's key: 1,
 * 2 (an older key: OpenSSL sends a new ticket), 0 (unknown: full handshake), -1 error. The
 * rotation period is the context's (its generation's configuration). OpenSSL calls the callback
 * of the context the SSL was made from (client.c: its generation's server_ssl_ctx), and
 * SSL_get_SSL_CTX is that one while nothing switches it: a certificate chosen by SNI is put on
 * the connection (sni.c), never by SSL_set_SSL_CTX, after which the period read here would be
 * the other context's (0 without ticket_use). */
static int ticket_cb(SSL *ssl, unsigned char name[TICKET_NAME_LEN],
                     unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    uint64_t rotation_ms = (uint64_t)(uintptr_t)SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    uint64_t now_ms = ring_now_ms();
    struct ticket_key k;
    int rc;
    if (enc) {
        if (ticket_current(now_ms, rotation_ms, &k) != 0 ||
            RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) {
            rc = 0;
            goto done;
        }
        memcpy(name, k.name, TICKET_NAME_LEN);
        rc = EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
                     set_hmac(hctx, &k) == 0
                 ? 1
                 : -1;
    } else {
        enum ticket_found found = ticket_find(name, now_ms, rotation_ms, &k);
        rc = found == TICKET_UNKNOWN ? 0
             : set_hmac(hctx, &k) == 0 &&
                     EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1
                 ? (int)found
                 : -1;
    }
done:
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

void ticket_use(void *ssl_ctx, uint64_t rotation_ms)
{
    SSL_CTX *ctx = ssl_ctx;
    /* the period rides in the context's app data: a draining generation keeps its own */
    SSL_CTX_set_app_data(ctx, (void *)(uintptr_t)rotation_ms);
    SSL_CTX_set_timeout(ctx, (long)((ticket_lifetime_ms(rotation_ms) + 999) / 1000));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
}
