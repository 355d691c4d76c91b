/*
 * hashkey.c — the key of `balance = hash KEY`. See hashkey.h.
 *
 * One table row per key kind, each reading its bytes from the request; the bytes are hashed
 * once per pick. A field or a cookie is looked for by a walk of the request's fields: the ring
 * gets its one hash, never the request itself.
 */
#include "portico/hashkey.h"

#include <ctype.h>
#include <string.h>

#include "portico/climit.h"
#include "portico/util.h"

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

uint64_t hashkey_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = FNV_OFFSET ^ seed;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    /* FNV-1a's last bytes reach the high bits weakly: splitmix64's finaliser spreads them */
    h ^= h >> 30;
    h *= UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h *= UINT64_C(0x94d049bb133111eb);
    h ^= h >> 31;
    return h;
}

/* The same, of lowercase bytes: Host is case-insensitive. */
static uint64_t hash_lower(const char *p, size_t n)
{
    char low[256];
    uint64_t h = 0;
    while (n) { /* in pieces: a Host is short, but its length is the client's */
        size_t part = n < sizeof(low) ? n : sizeof(low);
        for (size_t i = 0; i < part; i++)
            low[i] = (char)tolower((unsigned char)p[i]);
        h = hashkey_bytes(low, part, h);
        p += part;
        n -= part;
    }
    return h;
}

static bool key_client_addr(const struct upstream_conf *up, const struct hashkey_request *r,
                            uint64_t *hash)
{
    (void)up;
    if (!r->client)
        return false;
    struct climit_key k; /* IPv6 by its /64, IPv4 whole: client_rate's key */
    climit_key_addr(r->client, 0, &k);
    *hash = hashkey_bytes(k.addr, sizeof(k.addr), 0);
    return true;
}

static bool key_uri(const struct upstream_conf *up, const struct hashkey_request *r,
                    uint64_t *hash)
{
    (void)up;
    *hash = hashkey_bytes(r->path, r->path_len, 0);
    return true;
}

static bool key_host(const struct upstream_conf *up, const struct hashkey_request *r,
                     uint64_t *hash)
{
    (void)up;
    size_t len = r->host ? host_name_len(r->host, r->host_len) : 0;
    if (!len)
        return false;
    *hash = hash_lower(r->host, len); /* $host's name: "App.test:8080" goes with "app.test" */
    return true;
}

static bool key_http(const struct upstream_conf *up, const struct hashkey_request *r,
                     uint64_t *hash)
{
    int i = h1_find_field(r->fields, r->nfields, up->hash_name, 0);
    if (i < 0 || r->fields[i].value_len == 0) /* empty: every such client on one origin */
        return false;
    *hash = hashkey_bytes(r->fields[i].value, r->fields[i].value_len, 0);
    return true;
}

const char *hashkey_cookie_in(const char *v, size_t n, const char *name, size_t name_len,
                              size_t *len)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
            i++;
        size_t start = i;
        while (i < n && v[i] != ';')
            i++;
        const char *pair = v + start;
        size_t plen = i - start;
        if (plen > name_len && pair[name_len] == '=' && memcmp(pair, name, name_len) == 0) {
            const char *val = pair + name_len + 1;
            size_t vlen = plen - name_len - 1;
            while (vlen && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') { /* a quoted value */
                val++;
                vlen -= 2;
            }
            *len = vlen;
            return val;
        }
    }
    return NULL;
}

static bool key_cookie(const struct upstream_conf *up, const struct hashkey_request *r,
                       uint64_t *hash)
{
    /* several Cookie fields (an HTTP/1.1 client's, or HTTP/2 crumbs not yet joined) are one */
    for (int i = h1_find_field(r->fields, r->nfields, "cookie", 0); i >= 0;
         i = h1_find_field(r->fields, r->nfields, "cookie", (size_t)i + 1)) {
        size_t len;
        const char *v = hashkey_cookie_in(r->fields[i].value, r->fields[i].value_len, up->hash_name,
                                  up->hash_name_len, &len);
        if (v && len == 0)
            return false; /* "sid=": no session yet, as without the cookie */
        if (v) {
            *hash = hashkey_bytes(v, len, 0);
            return true;
        }
    }
    return false;
}

static bool (*const key_readers[])(const struct upstream_conf *, const struct hashkey_request *,
                                   uint64_t *) = {
    [HASH_KEY_CLIENT_ADDR] = key_client_addr,
    [HASH_KEY_URI] = key_uri,
    [HASH_KEY_HOST] = key_host,
    [HASH_KEY_HTTP] = key_http,
    [HASH_KEY_COOKIE] = key_cookie,
};

bool hashkey_of(const struct upstream_conf *up, const struct hashkey_request *r, uint64_t *hash)
{
    if ((unsigned)up->hash_key >= ARRAY_LEN(key_readers))
        return false;
    return key_readers[up->hash_key](up, r, hash);
}
