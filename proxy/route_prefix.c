/*
 * route_prefix.c — a prefix read against a path as a normalising origin reads both. See
 * route_prefix.h.
 */
#include "portico/route_prefix.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "portico/request.h"

/* A path read one normalised character at a time (route_prefix_matches). */
struct path_reader {
    const char *p;
    size_t n, i;
};

static int hex_value(unsigned char c)
{
    return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

/* The next character of the normalised path, -1 at its end. */
static int path_next(struct path_reader *r)
{
    if (r->i >= r->n)
        return -1;
    size_t sep = request_separator_at(r->p, r->n, r->i);
    if (sep) {
        do
            r->i += sep;
        while (r->i < r->n && (sep = request_separator_at(r->p, r->n, r->i)) != 0);
        return '/';
    }
    unsigned char c = (unsigned char)r->p[r->i++];
    if (c == '%' && r->i + 1 < r->n && isxdigit((unsigned char)r->p[r->i]) &&
        isxdigit((unsigned char)r->p[r->i + 1])) {
        int v = hex_value((unsigned char)r->p[r->i]) * 16 +
                hex_value((unsigned char)r->p[r->i + 1]);
        if (isalnum(v) || v == '-' || v == '.' || v == '_' || v == '~') {
            r->i += 2;
            return v;
        }
    }
    return c;
}

bool route_prefix_matches(const char *path, size_t path_len, const char *prefix)
{
    struct path_reader in = {path, path_len, 0}, want = {prefix, strlen(prefix), 0};
    for (int c; (c = path_next(&want)) >= 0;)
        if (path_next(&in) != c)
            return false;
    return true;
}

size_t route_prefix_raw_len(const char *path, size_t path_len, const char *prefix)
{
    struct path_reader in = {path, path_len, 0}, want = {prefix, strlen(prefix), 0};
    for (int c; (c = path_next(&want)) >= 0;)
        if (path_next(&in) != c)
            return 0;
    return in.i;
}

size_t route_prefix_read_len(const char *prefix)
{
    struct path_reader r = {prefix, strlen(prefix), 0};
    size_t n = 0;
    while (path_next(&r) >= 0)
        n++;
    return n;
}

/* A byte's high bit set where the byte of x is zero, and nowhere else (no borrow runs into the
 * next byte, as in the shorter test that says only whether one is). */
static inline uint64_t zero_bytes(uint64_t x)
{
    const uint64_t lows = UINT64_C(0x7f7f7f7f7f7f7f7f);
    return ~(((x & lows) + lows) | x | lows);
}

size_t route_plain_len(const char *p, size_t n)
{
    /* Eight bytes a step while a word holds no '%', no '\\' and no "//" (also across into the
     * next word): byte by byte, the bounds and the look-ahead cost ~12 instructions a byte, and
     * every request's path is read (once, for the routes and the fault rules). The word
     * that holds one ends the scan byte by byte. */
    const uint64_t ones = UINT64_C(0x0101010101010101);
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        uint64_t slash = zero_bytes(w ^ (ones * '/'));
        uint64_t stop = zero_bytes(w ^ (ones * '%')) | zero_bytes(w ^ (ones * '\\')) |
                        (slash & (slash >> 8)); /* a '/' whose next byte is one too */
        if (stop || ((slash >> 63) && i + 8 < n && p[i + 8] == '/'))
            break;
    }
    for (; i < n; i++)
        if (p[i] == '%' || p[i] == '\\' || (p[i] == '/' && i + 1 < n && p[i + 1] == '/'))
            return i;
    return n;
}

bool route_prefix_holds(const char *path, size_t path_len, size_t plain, const char *prefix,
                        size_t prefix_len, bool prefix_plain)
{
    if (prefix_plain && (prefix_len <= plain || plain == path_len))
        return prefix_len <= path_len && memcmp(prefix, path, prefix_len) == 0;
    return route_prefix_matches(path, path_len, prefix);
}
