/*
 * wskey.c — the WebSocket handshake's key and its proof. See wskey.h.
 */
#include "portico/wskey.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

/* RFC 6455 1.3: what the origin appends to the key before hashing it. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool ws_key_new(char out[WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return false;
    return EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw)) == WS_KEY_LEN;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

bool ws_accept_matches(const char *key, size_t key_len, const char *accept, size_t accept_len)
{
    while (accept_len && is_space(accept[0]))
        accept++, accept_len--;
    while (accept_len && is_space(accept[accept_len - 1]))
        accept_len--;
    if (key_len != WS_KEY_LEN || accept_len != 28) /* 20 bytes of SHA-1 in base64 */
        return false;
    unsigned char both[WS_KEY_LEN + sizeof(ws_guid) - 1], digest[SHA_DIGEST_LENGTH];
    memcpy(both, key, WS_KEY_LEN);
    memcpy(both + WS_KEY_LEN, ws_guid, sizeof(ws_guid) - 1);
    SHA1(both, sizeof(both), digest);
    char want[29];
    EVP_EncodeBlock((unsigned char *)want, digest, sizeof(digest));
    return memcmp(want, accept, 28) == 0;
}
