/*
 * cookie.h — reading one cookie out of a request's Cookie field (RFC 6265 5.4): the one reader
 * of the balancer's $cookie_NAME (hashkey.c) and the routes' cookie conditions (route_cond.c).
 */
#ifndef PORTICO_COOKIE_H
#define PORTICO_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * The next cookie named name (case-sensitive) in one Cookie field value v of n bytes ("a=1;
 * b=2", HTTP/2's crumbs joined or one), from *at on: true with *value and *len its value (OWS
 * after it trimmed, the DQUOTEs of a quoted one dropped; may be empty), *at past it; false when
 * there is no more. *at starts at 0; a field may carry the name twice (cookies of two paths).
 * Inline: the balancer reads it per request, and a call cost it 40 instructions (callgrind).
 */
static inline bool cookie_next(const char *v, size_t n, const char *name, size_t name_len,
                               size_t *at, const char **value, size_t *len)
{
    size_t i = *at;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
            i++;
        size_t start = i;
        while (i < n && v[i] != ';')
            i++;
        const char *pair = v + start;
        size_t plen = i - start;
        /* "canary" alone, or "canaryx=1", is not canary's */
        if (plen <= name_len || pair[name_len] != '=' || memcmp(pair, name, name_len) != 0)
            continue;
        const char *val = pair + name_len + 1;
        size_t vlen = plen - name_len - 1;
        while (vlen && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
            vlen--;
        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') { /* a quoted value */
            val++;
            vlen -= 2;
        }
        *at = i;
        *value = val;
        *len = vlen;
        return true;
    }
    *at = i;
    return false;
}

#endif
