/*
 * trace.c — W3C traceparent parsing, generation and propagation. See trace.h.
 */
#include "portico/trace.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>

#include "portico/fmt.h"

static const char *const source_names[TRACE_SOURCE_COUNT] = {
#define X(id, nm) [id] = nm,
    TRACE_SOURCE_LIST(X)
#undef X
};

const char *trace_source_name(enum trace_source s)
{
    return (unsigned)s < TRACE_SOURCE_COUNT ? source_names[s] : "?";
}

/* ---- ids ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void trace_rng_init(struct trace_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed); /* never all zero: splitmix64 is a bijection of a counter */
}

int trace_rng_seed(struct trace_rng *rng)
{
    uint64_t seed[4];
    size_t got = 0;
    while (got < sizeof(seed)) {
        ssize_t n = getrandom((char *)seed + got, sizeof(seed) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    /* mixed through splitmix64, so that even an all-zero read gives a usable state */
    uint64_t x = seed[0] ^ seed[1] ^ seed[2] ^ seed[3];
    for (int i = 0; i < 4; i++)
        rng->s[i] = seed[i] ^ splitmix64(&x);
    if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0)
        trace_rng_init(rng, x);
    return 0;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t trace_rng_next(struct trace_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void new_parent_id(struct trace_rng *rng, struct trace_context *tc)
{
    uint64_t v;
    while ((v = trace_rng_next(rng)) == 0) /* all zero is invalid */
        ;
    fmt_hex(tc->parent_id, v, 8);
    tc->parent_id[16] = '\0';
}

void trace_start(struct trace_rng *rng, uint8_t flags, struct trace_context *out)
{
    uint64_t hi, lo;
    do {
        hi = trace_rng_next(rng);
        lo = trace_rng_next(rng);
    } while ((hi | lo) == 0);
    fmt_hex(out->trace_id, hi, 8);
    fmt_hex(out->trace_id + 16, lo, 8);
    out->trace_id[32] = '\0';
    new_parent_id(rng, out);
    out->flags = flags;
}

void trace_child(struct trace_rng *rng, struct trace_context *tc)
{
    new_parent_id(rng, tc);
    tc->flags &= TRACE_FLAG_SAMPLED;
}

/* ---- parsing ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase too: the grammar is HEXDIGLC */
}

/* Copies n lowercase hex digits into out (NUL-terminated); -1 on another character, or when
 * every digit is zero and zero_ok is not set. */
static int hex_field(const char *s, size_t n, char *out, int zero_ok)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int v = hexval(s[i]);
        if (v < 0)
            return -1;
        nonzero |= v;
        out[i] = s[i];
    }
    out[n] = '\0';
    return nonzero || zero_ok ? 0 : -1;
}

int trace_parse(const char *v, size_t len, struct trace_context *out)
{
    struct trace_context tc;
    char version[3], flags[3];
    /* version: 2 lowercase hex and a dash; ff is forbidden */
    if (!v || len < TRACEPARENT_LEN || hex_field(v, 2, version, 1) != 0 || v[2] != '-' ||
        strcmp(version, "ff") == 0)
        return -1;
    bool future = strcmp(version, "00") != 0;
    /* version 00 is exactly 55 characters; a higher one may add fields after a dash */
    if (!future && len != TRACEPARENT_LEN)
        return -1;
    if (future && len > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-')
        return -1;
    if (hex_field(v + 3, 32, tc.trace_id, 0) != 0 || v[35] != '-' ||
        hex_field(v + 36, 16, tc.parent_id, 0) != 0 || v[52] != '-' ||
        hex_field(v + 53, 2, flags, 1) != 0)
        return -1;
    tc.flags = (uint8_t)(hexval(flags[0]) << 4 | hexval(flags[1]));
    if (future) /* only the flags this version knows are read */
        tc.flags &= TRACE_FLAG_SAMPLED;
    *out = tc;
    return 0;
}

enum trace_source trace_propagate(struct trace_rng *rng, const char *value, size_t len,
                                  struct trace_context *out)
{
    if (value && trace_parse(value, len, out) == 0) {
        trace_child(rng, out);
        return TRACE_KEPT;
    }
    /* W3C: a trace started here is not sampled unless a recording decision was made */
    trace_start(rng, 0, out);
    return TRACE_STARTED;
}

size_t trace_format(const struct trace_context *tc, char *buf, size_t size)
{
    if (size <= TRACEPARENT_LEN)
        return 0;
    memcpy(buf, "00-", 3);
    memcpy(buf + 3, tc->trace_id, 32);
    buf[35] = '-';
    memcpy(buf + 36, tc->parent_id, 16);
    buf[52] = '-';
    fmt_hex(buf + 53, tc->flags, 1);
    buf[55] = '\0';
    return TRACEPARENT_LEN;
}
