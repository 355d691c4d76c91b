/*
 * realip.c — the client's address named by a trusted proxy (realip.h): the real_ip field's
 * elements, right to left, past the trusted ones.
 */
#include "portico/realip.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "portico/util.h"

const char *realip_text(const struct fault_addr *addr, char *buf, size_t size)
{
    if (!inet_ntop(addr->v6 ? AF_INET6 : AF_INET, addr->bytes, buf, (socklen_t)size))
        snprintf(buf, size, "?");
    return buf;
}

/* The longest address text with its brackets and port: "[" 45 "]:" 5. */
#define NODE_MAX 64

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && ows(**s))
        (*s)++, (*n)--;
    while (*n > 0 && ows((*s)[*n - 1]))
        (*n)--;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* An address with an optional port: "[v6]", "[v6]:port", "v4", "v4:port", and (bare_v6) "v6"
 * alone, whose colons a port cannot follow. */
static int node_addr(const char *s, size_t n, bool bare_v6, struct fault_addr *out)
{
    char text[NODE_MAX];
    const char *a = s;
    size_t len = n;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return -1;
        a = s + 1;
        len = (size_t)(close - a);
        if (memchr(a, '.', len) && !memchr(a, ':', len)) /* "[127.0.0.1]": no IPv4 in brackets */
            return -1;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon && !memchr(colon + 1, ':', n - (size_t)(colon + 1 - s))) { /* v4:port */
            if (!all_digits(colon + 1, n - (size_t)(colon + 1 - s)))
                return -1;
            len = (size_t)(colon - s);
        } else if (colon && !bare_v6) {
            return -1;
        }
    }
    if (len == 0 || len >= sizeof(text))
        return -1;
    memcpy(text, a, len);
    text[len] = '\0';
    return fault_addr_parse(text, out);
}

/* A Forwarded parameter's value: a token as it is, a quoted-string unescaped into buf. The
 * length, or -1 (an unterminated quote, one longer than buf). */
static long param_value(const char *v, size_t n, char *buf, size_t size)
{
    if (n == 0 || v[0] != '"') {
        if (n >= size)
            return -1;
        memcpy(buf, v, n);
        return (long)n;
    }
    size_t len = 0;
    for (size_t i = 1; i < n; i++) {
        char c = v[i];
        if (c == '"')
            return i == n - 1 ? (long)len : -1;
        if (c == '\\' && ++i == n)
            return -1;
        if (len + 1 >= size)
            return -1;
        buf[len++] = v[i];
    }
    return -1;
}

/* A Forwarded element's for= (RFC 7239 4): pairs split on ';' outside quoted-strings. */
static int forwarded_for(const char *s, size_t n, struct fault_addr *out)
{
    const char *node = NULL;
    size_t node_len = 0;
    int fors = 0;
    for (size_t at = 0; at <= n;) {
        size_t end = at + h1_skip_to(s + at, n - at, ';', false);
        const char *pair = s + at;
        size_t pair_len = end - at;
        trim(&pair, &pair_len);
        const char *eq = memchr(pair, '=', pair_len);
        if (eq && span_ieq(pair, (size_t)(eq - pair), "for")) {
            fors++;
            node = eq + 1;
            node_len = pair_len - (size_t)(node - pair);
        }
        at = end + 1;
    }
    if (fors != 1) /* none, or the parameter twice (it "MUST NOT occur more than once") */
        return -1;
    char buf[NODE_MAX];
    long len = param_value(node, node_len, buf, sizeof(buf));
    /* "unknown" and "_hidden" are not addresses; node_addr refuses them with the rest */
    return len > 0 ? node_addr(buf, (size_t)len, false, out) : -1;
}

int realip_element(const char *s, size_t n, bool forwarded, struct fault_addr *out)
{
    trim(&s, &n);
    return forwarded ? forwarded_for(s, n, out) : node_addr(s, n, true, out);
}

/* Whether f is a field real_ip names. */
static bool field_named(const struct h1_field *f, enum real_ip_field field)
{
    switch (field) {
    case REAL_IP_X_FORWARDED_FOR:
        return f->id == H1_F_X_FORWARDED_FOR;
    case REAL_IP_FORWARDED:
        return f->id == H1_F_FORWARDED;
    case REAL_IP_X_REAL_IP:
        return f->id == H1_F_X_REAL_IP;
    case REAL_IP_CF_CONNECTING_IP:
        return f->id == H1_F_PROXY_CLAIM && span_ieq(f->name, f->name_len, "cf-connecting-ip");
    case REAL_IP_TRUE_CLIENT_IP:
        return f->id == H1_F_PROXY_CLAIM && span_ieq(f->name, f->name_len, "true-client-ip");
    case REAL_IP_OFF:
        break;
    }
    return false;
}

enum realip_result realip_find(const struct h1_field *fields, size_t nfields,
                               enum real_ip_field field, const struct fault_cidr *trusted,
                               int ntrusted, struct fault_addr *out)
{
    /* Left to right, keeping the right-most untrusted element seen so far: the same answer as
     * a walk from the right, without holding the elements. */
    enum realip_result last = REALIP_NONE; /* of the right-most untrusted element */
    struct fault_addr first = {0}, last_addr = {0};
    bool any = false;
    for (size_t i = 0; i < nfields; i++) {
        if (!field_named(&fields[i], field))
            continue;
        size_t pos = 0, len;
        const char *e;
        while (h1_list_next(fields[i].value, fields[i].value_len, &pos, &e, &len)) {
            struct fault_addr a;
            bool ok = realip_element(e, len, field == REAL_IP_FORWARDED, &a) == 0;
            if (!any && ok)
                first = a;
            any = true;
            if (!ok) {
                last = REALIP_INVALID;
            } else if (!fault_cidr_contains(trusted, ntrusted, &a)) {
                last = REALIP_FOUND;
                last_addr = a;
            }
        }
    }
    if (!any)
        return REALIP_NONE;
    if (last == REALIP_NONE) { /* all trusted: the left-most (valid, or it were untrusted) */
        *out = first;
        return REALIP_FOUND;
    }
    if (last == REALIP_FOUND)
        *out = last_addr;
    return last;
}
