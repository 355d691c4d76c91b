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

/* A port: 1 to 5 digits, at most 65535. An element naming port 99999 is no address the client
 * could have been at: not an address (REALIP_INVALID), as garbage is. */
static bool port_number(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
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
        if (rest > 0 && (close[1] != ':' || !port_number(close + 2, rest - 1)))
            return -1;
        a = s + 1;
        len = (size_t)(close - a);
        if (memchr(a, '.', len) && !memchr(a, ':', len)) /* "[127.0.0.1]": no IPv4 in brackets */
            return -1;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon && !memchr(colon + 1, ':', n - (size_t)(colon + 1 - s))) { /* v4:port */
            if (!port_number(colon + 1, n - (size_t)(colon + 1 - s)))
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

/*
 * The length of the list element at s: up to the first ',' outside a quoted-string. Only
 * Forwarded has quoted-strings (*quotes); X-Forwarded-For and the others are lists of bare
 * addresses. A quote never closed quotes nothing: a proxy appends ", for=ADDR" (", ADDR") to
 * the value its client sent in the same field, and h1_list_next's unclosed quote ran to the end
 * of it, taking the proxy's element into the client's: `for=6.6.6.6;x="` named 6.6.6.6, and
 * X-Forwarded-For `"` hid the client behind the peer (REALIP_INVALID). Every later quote of the
 * field is unclosed too (the scan that found none passed each as an escaped one, and a scan from
 * it reads on as that one did): *quotes turns false, or each of them scanned to the end again
 * (16 KB of `"\` took 215 ms).
 */
static size_t element_len(const char *s, size_t n, bool *quotes)
{
    if (!*quotes) {
        const char *comma = memchr(s, ',', n);
        return comma ? (size_t)(comma - s) : n;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ',')
            return i;
        if (s[i] != '"')
            continue;
        size_t j = i + 1;
        while (j < n && s[j] != '"')
            j += s[j] == '\\' ? 2 : 1;
        if (j >= n) { /* never closed: the rest of the field is bare */
            *quotes = false;
            return i + element_len(s + i, n - i, quotes);
        }
        i = j; /* closed: the commas inside belong to the element */
    }
    return n;
}

/* Elements of a field a walk from the right looks at (a ring of their spans) before it gives
 * way to the whole walk: more trusted hops than any real chain has. */
#define TAIL_ELEMENTS 16

/* The next non-empty element of v at *pos (OWS trimmed), or false. *quotes: element_len's, for
 * the field's elements in order from its first. */
static bool next_element(const char *v, size_t n, size_t *pos, bool *quotes, const char **e,
                         size_t *len)
{
    while (*pos < n) {
        *e = v + *pos;
        *len = element_len(*e, n - *pos, quotes);
        *pos += *len + 1;
        trim(e, len);
        if (*len > 0) /* an empty element is none (RFC 9110 5.6.1) */
            return true;
    }
    return false;
}

/* Left to right, keeping the right-most untrusted element seen so far: the same answer as the
 * walk from the right, without holding the elements; every element is parsed. */
static enum realip_result walk_all(const struct h1_field *fields, size_t nfields,
                                   enum real_ip_field field, const struct fault_cidr *trusted,
                                   int ntrusted, struct fault_addr *out)
{
    enum realip_result last = REALIP_NONE; /* of the right-most untrusted element */
    struct fault_addr first = {0}, last_addr = {0};
    bool any = false, quotes = field == REAL_IP_FORWARDED;
    for (size_t i = 0; i < nfields; i++) {
        if (!field_named(&fields[i], field))
            continue;
        size_t pos = 0, len;
        const char *e;
        bool q = quotes;
        while (next_element(fields[i].value, fields[i].value_len, &pos, &q, &e, &len)) {
            struct fault_addr a;
            bool ok = realip_element(e, len, quotes, &a) == 0;
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

enum realip_result realip_find(const struct h1_field *fields, size_t nfields,
                               enum real_ip_field field, const struct fault_cidr *trusted,
                               int ntrusted, struct fault_addr *out)
{
    /* From the right, fields last to first: the answer is usually the proxy's own element, the
     * last. The client writes what is left of it: parsed and matched against every trusted
     * range, a 16 KiB X-Forwarded-For of its own cost ~85-510 us a request (1 to 64 ranges),
     * a 1 MiB one 28 ms. Each field's elements are found by a scan of its bytes (quotes are
     * read left to right), its last TAIL_ELEMENTS kept. */
    bool quotes = field == REAL_IP_FORWARDED;
    for (size_t i = nfields; i-- > 0;) {
        if (!field_named(&fields[i], field))
            continue;
        const char *v = fields[i].value, *e;
        size_t n = fields[i].value_len, pos = 0, len, count = 0;
        size_t at[TAIL_ELEMENTS], lens[TAIL_ELEMENTS];
        bool q = quotes;
        while (next_element(v, n, &pos, &q, &e, &len)) {
            at[count % TAIL_ELEMENTS] = (size_t)(e - v);
            lens[count % TAIL_ELEMENTS] = len;
            count++;
        }
        for (size_t k = 0; k < MIN(count, TAIL_ELEMENTS); k++) {
            size_t r = (count - 1 - k) % TAIL_ELEMENTS;
            struct fault_addr a;
            if (realip_element(v + at[r], lens[r], quotes, &a) != 0)
                return REALIP_INVALID;
            if (!fault_cidr_contains(trusted, ntrusted, &a)) {
                *out = a;
                return REALIP_FOUND;
            }
        }
        if (count > TAIL_ELEMENTS)
            break; /* trusted past the ring: the whole walk decides */
    }
    /* Every element trusted (the answer is the left-most), none, or a field whose trusted tail
     * outgrew the ring */
    return walk_all(fields, nfields, field, trusted, ntrusted, out);
}
