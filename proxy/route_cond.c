/*
 * route_cond.c — a route's method, header and cookie conditions: parsed from the config's
 * values, judged against a request. See route_cond.h.
 */
#include "portico/route_cond.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/cookie.h"
#include "portico/util.h"

#define METHOD_BIT(m) (UINT32_C(1) << (m))
_Static_assert(METHOD_COUNT <= 32, "methods are a 32-bit mask");

static __attribute__((format(printf, 3, 4))) int refuse(char *why, size_t size, const char *fmt,
                                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return -1;
}

static int out_of_memory(char *why, size_t size)
{
    if (size)
        why[0] = '\0';
    return -1;
}

static bool is_token(const char *p, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!h1_is_tchar((unsigned char)p[i]))
            return false;
    return true;
}

/* A byte of a field value Portico's parsers let through: visible ASCII, SP, HTAB, obs-text. */
static bool value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* cookie-octet (RFC 6265 4.1.1): visible ASCII but DQUOTE, comma, semicolon and backslash. */
static bool cookie_octet(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\';
}

/* ---- method = TOKEN ... ---- */

static int add_methods(struct route_conds *c, const char *value, char *why, size_t size)
{
    size_t n = 0;
    for (const char *p = value;; ) {
        p += strspn(p, " \t,");
        if (!*p)
            break;
        size_t len = strcspn(p, " \t,");
        if (!is_token(p, len))
            return refuse(why, size, "'%.*s' is not a method token (letters, digits and "
                          "!#$%%&'*+-.^_`|~)", (int)len, p);
        enum http_method m = h1_method_of(p, len);
        if (m == METHOD_OTHER) {
            /* methods are case-sensitive (RFC 9110 9.1): "get" would never meet a GET */
            for (int k = 1; k < METHOD_COUNT; k++)
                if (strlen(h1_method_name(k)) == len && strncasecmp(h1_method_name(k), p,
                                                                    len) == 0)
                    return refuse(why, size, "'%.*s': methods are case-sensitive, write %s",
                                  (int)len, p, h1_method_name(k));
            bool known = false;
            for (int k = 0; k < c->nother_methods && !known; k++)
                known = strlen(c->other_methods[k]) == len &&
                        memcmp(c->other_methods[k], p, len) == 0;
            if (!known) {
                if (c->nother_methods >= ROUTE_COND_MAX_METHODS)
                    return refuse(why, size, "at most %d extension methods per route",
                                  ROUTE_COND_MAX_METHODS);
                if (!(c->other_methods[c->nother_methods] = strndup(p, len)))
                    return out_of_memory(why, size);
                c->nother_methods++;
            }
        } else if (m == METHOD_CONNECT) {
            /* a route by it would never be taken: HTTP/2's WebSocket is routed as its GET */
            return refuse(why, size, "CONNECT is answered 501 before any route is chosen (an "
                          "HTTP/2 WebSocket's extended CONNECT is routed as the GET it becomes)");
        } else {
            c->methods |= METHOD_BIT(m);
            if (m == METHOD_GET) /* a HEAD is a GET without the body (nginx's limit_except) */
                c->methods |= METHOD_BIT(METHOD_HEAD);
        }
        n++;
        p += len;
    }
    return n ? 0 : refuse(why, size, "expected one or more methods (GET POST ...)");
}

/* ---- header = Name[: value], cookie = name[=value] ---- */

/* "!Name": what a negation would say is the route without the condition's to take. */
static int refuse_negation(char *why, size_t size, const char *value, const char *what)
{
    return refuse(why, size, "'%s': no negation: a request without the %s takes the route "
                  "without the condition (the same host and prefix, or a shorter one)", value,
                  what);
}

/* The condition of that kind and name in c, or a new one (NULL when full: why is said). */
static struct route_cond *cond_for(struct route_conds *c, enum route_cond_kind kind,
                                   const char *name, size_t len, int line, char *why,
                                   size_t size)
{
    for (int i = 0; i < c->nconds; i++)
        if (c->conds[i].kind == kind && c->conds[i].name_len == len &&
            memcmp(c->conds[i].name, name, len) == 0)
            return &c->conds[i];
    if (c->nconds >= ROUTE_COND_MAX_NAMES) {
        refuse(why, size, "at most %d header and cookie names per route", ROUTE_COND_MAX_NAMES);
        return NULL;
    }
    struct route_cond *d = &c->conds[c->nconds];
    memset(d, 0, sizeof(*d));
    if (!(d->name = strndup(name, len))) {
        out_of_memory(why, size);
        return NULL;
    }
    d->kind = kind;
    d->name_len = len;
    d->line = line;
    c->nconds++;
    return d;
}

/* Adds value (NULL: present) to the name's alternatives: presence and a value of one name are
 * one thing said twice (presence holds whenever the value does), and so is a value twice. */
static int add_value(struct route_cond *d, const char *key, const char *value, size_t len,
                     bool fresh, char *why, size_t size)
{
    if (!value) {
        if (!fresh)
            return refuse(why, size, "%s %s already named at line %d: presence alone is "
                          "written once, with no value beside it", key, d->name, d->line);
        return 0;
    }
    if (!fresh && d->nvalues == 0)
        return refuse(why, size, "%s %s is already named without a value at line %d (any "
                      "value): a value beside it changes nothing", key, d->name, d->line);
    for (int i = 0; i < d->nvalues; i++)
        if (d->value_lens[i] == len && memcmp(d->values[i], value, len) == 0)
            return refuse(why, size, "%s %s: value '%.*s' named twice", key, d->name, (int)len,
                          value);
    if (d->nvalues >= ROUTE_COND_MAX_VALUES)
        return refuse(why, size, "%s %s: at most %d values", key, d->name,
                      ROUTE_COND_MAX_VALUES);
    if (!(d->values[d->nvalues] = strndup(value, len)))
        return out_of_memory(why, size);
    d->value_lens[d->nvalues++] = len;
    return 0;
}

/* The name's condition and its value; a new name that fails leaves nothing behind. */
static int add_named(struct route_conds *c, enum route_cond_kind kind, const char *key,
                     const char *name, size_t name_len, const char *value, size_t value_len,
                     int line, char *why, size_t size)
{
    int before = c->nconds;
    struct route_cond *d = cond_for(c, kind, name, name_len, line, why, size);
    if (!d)
        return -1;
    bool fresh = c->nconds > before;
    if (add_value(d, key, value, value_len, fresh, why, size) == 0)
        return 0;
    if (fresh) {
        free(d->name);
        c->nconds--;
    }
    return -1;
}

/* Fields a header condition may not name: another key reads them, or an HTTP/2 request has
 * none (RFC 9113 8.2.2) where an HTTP/1.1 one has them, so a route by them would take one
 * protocol's requests and not the other's. */
static const struct {
    const char *name; /* lowercase */
    const char *why;
} unmatched_fields[] = {
    {"host", "Host: use host = (it reads HTTP/2's :authority too)"},
    {"cookie", "Cookie: use cookie = name=value (one cookie of the field)"},
    {"connection", "Connection is connection-specific: HTTP/2 requests have none (RFC 9113 "
                   "8.2.2), a route by it would take HTTP/1.1 ones only"},
    {"keep-alive", "Keep-Alive is connection-specific: HTTP/2 requests have none (RFC 9113 "
                   "8.2.2), a route by it would take HTTP/1.1 ones only"},
    {"proxy-connection", "Proxy-Connection is connection-specific: HTTP/2 requests have none "
                         "(RFC 9113 8.2.2), a route by it would take HTTP/1.1 ones only"},
    {"transfer-encoding", "Transfer-Encoding is connection-specific: HTTP/2 requests have none "
                          "(RFC 9113 8.2.2), a route by it would take HTTP/1.1 ones only"},
    {"te", "TE is connection-specific: HTTP/2 requests carry only 'trailers' (RFC 9113 "
           "8.2.2), a route by it would read the protocols apart"},
    {"content-length", "Content-Length frames the body: HTTP/2 requests may go without it "
                       "(RFC 9113 8.1), a route by it would read the protocols apart"},
};

static int add_header(struct route_conds *c, const char *value, int line, char *why,
                      size_t size)
{
    if (value[0] == '!')
        return refuse_negation(why, size, value, "field");
    /* ":method" would be read as an empty name: say what it is */
    if (value[0] == ':' && h1_is_tchar((unsigned char)value[1]))
        return refuse(why, size, "'%.*s' is an HTTP/2 pseudo-header field: method =, host = "
                      "and prefix = read what :method, :authority and :path carry",
                      (int)(strcspn(value + 1, ": \t") + 1), value);
    size_t nlen = strcspn(value, ":");
    size_t end = nlen;
    while (end && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    if (end != nlen || !is_token(value, nlen))
        return refuse(why, size, "'%.*s' is not a field name (a token: letters, digits and "
                      "!#$%%&'*+-.^_`|~, then ':')", (int)nlen, value);
    char name[256];
    if (nlen >= sizeof(name))
        return refuse(why, size, "field name longer than %zu bytes", sizeof(name) - 1);
    for (size_t i = 0; i < nlen; i++)
        name[i] = (char)tolower((unsigned char)value[i]);
    name[nlen] = '\0';
    for (size_t i = 0; i < sizeof(unmatched_fields) / sizeof(unmatched_fields[0]); i++)
        if (strcmp(name, unmatched_fields[i].name) == 0)
            return refuse(why, size, "%s", unmatched_fields[i].why);
    if (!value[nlen])
        return add_named(c, ROUTE_COND_HEADER, "header", name, nlen, NULL, 0, line, why, size);
    const char *v = value + nlen + 1;
    v += strspn(v, " \t");
    size_t vlen = strlen(v);
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) /* OWS, as a parser trims */
        vlen--;
    for (size_t i = 0; i < vlen; i++)
        if (!value_byte((unsigned char)v[i]))
            return refuse(why, size, "control character 0x%02x in the value of %s",
                          (unsigned char)v[i], name);
    return add_named(c, ROUTE_COND_HEADER, "header", name, nlen, v, vlen, line, why, size);
}

static int add_cookie(struct route_conds *c, const char *value, int line, char *why,
                      size_t size)
{
    if (value[0] == '!')
        return refuse_negation(why, size, value, "cookie");
    size_t nlen = strcspn(value, "=");
    if (!is_token(value, nlen))
        return refuse(why, size, "'%.*s' is not a cookie name (a token: letters, digits and "
                      "!#$%%&'*+-.^_`|~)", (int)nlen, value);
    if (!value[nlen])
        return add_named(c, ROUTE_COND_COOKIE, "cookie", value, nlen, NULL, 0, line, why, size);
    const char *v = value + nlen + 1;
    size_t vlen = strlen(v);
    for (size_t i = 0; i < vlen; i++)
        if (!cookie_octet((unsigned char)v[i]))
            return refuse(why, size, "%.*s: '%s' is not a cookie value (visible ASCII "
                          "but '\"', ',', ';' and '\\'; no quotes: a quoted value matches "
                          "unquoted)", (int)nlen, value, v);
    return add_named(c, ROUTE_COND_COOKIE, "cookie", value, nlen, v, vlen, line, why, size);
}

int route_cond_add(struct route_conds **c, const char *key, const char *value, int line,
                   char *why, size_t size)
{
    if (!*c && !(*c = calloc(1, sizeof(**c))))
        return out_of_memory(why, size);
    int rc = strcmp(key, "method") == 0   ? add_methods(*c, value, why, size)
             : strcmp(key, "header") == 0 ? add_header(*c, value, line, why, size)
                                          : add_cookie(*c, value, line, why, size);
    (*c)->refused |= rc != 0;
    return rc;
}

/* ---- judging a request ---- */

static bool method_holds(const struct route_conds *c, const struct route_request *rq)
{
    if (rq->method_id != METHOD_OTHER)
        return c->methods & METHOD_BIT(rq->method_id);
    for (int i = 0; i < c->nother_methods; i++)
        if (strlen(c->other_methods[i]) == rq->method_len &&
            memcmp(c->other_methods[i], rq->method, rq->method_len) == 0)
            return true;
    return false;
}

static bool value_among(const struct route_cond *d, const char *v, size_t len)
{
    if (!d->nvalues)
        return true;
    for (int i = 0; i < d->nvalues; i++)
        if (d->value_lens[i] == len && memcmp(d->values[i], v, len) == 0)
            return true;
    return false;
}

/* Any field line of the name whose whole value (OWS trimmed) is one of d's: a list field's
 * elements are not split, as HAProxy's fhdr reads them ("Accept: a, b" is one value). */
static bool header_holds(const struct route_cond *d, const struct route_request *rq)
{
    for (int i = h1_find_field(rq->fields, rq->nfields, d->name, 0); i >= 0;
         i = h1_find_field(rq->fields, rq->nfields, d->name, (size_t)i + 1))
        if (value_among(d, rq->fields[i].value, rq->fields[i].value_len))
            return true;
    return false;
}

static bool cookie_holds(const struct route_cond *d, const struct route_request *rq)
{
    /* HTTP/1.1's several Cookie fields and HTTP/2's crumbs (joined or not) are all read */
    for (int i = h1_find_field(rq->fields, rq->nfields, "cookie", 0); i >= 0;
         i = h1_find_field(rq->fields, rq->nfields, "cookie", (size_t)i + 1)) {
        /* each of the name's pairs is read: a field may carry cookies of two paths */
        size_t at = 0, len;
        for (const char *v; cookie_next(rq->fields[i].value, rq->fields[i].value_len, d->name,
                                        d->name_len, &at, &v, &len);)
            if (value_among(d, v, len))
                return true;
    }
    return false;
}

static bool (*const cond_judges[])(const struct route_cond *, const struct route_request *) = {
    [ROUTE_COND_HEADER] = header_holds,
    [ROUTE_COND_COOKIE] = cookie_holds,
};

bool route_conds_hold(const struct route_conds *c, const struct route_request *rq)
{
    if (!rq)
        return false;
    if ((c->methods || c->nother_methods) && !method_holds(c, rq))
        return false;
    for (int i = 0; i < c->nconds; i++)
        if (!cond_judges[c->conds[i].kind](&c->conds[i], rq))
            return false;
    return true;
}

/* ---- comparing two routes' conditions ---- */

static bool other_methods_within(const struct route_conds *a, const struct route_conds *b)
{
    for (int i = 0; i < b->nother_methods; i++) {
        bool found = false;
        for (int j = 0; j < a->nother_methods && !found; j++)
            found = strcmp(a->other_methods[j], b->other_methods[i]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Whether every one of b's methods is among a's (a without a method list takes all). */
static bool methods_within(const struct route_conds *a, const struct route_conds *b)
{
    if (!a->methods && !a->nother_methods)
        return true;
    if (!b->methods && !b->nother_methods)
        return false;
    return !(b->methods & ~a->methods) && other_methods_within(a, b);
}

/* Whether each of a's names is b's, b holding it to values a takes (a's presence: any). */
static bool names_implied(const struct route_conds *a, const struct route_conds *b)
{
    for (int i = 0; i < a->nconds; i++) {
        const struct route_cond *x = &a->conds[i], *y = NULL;
        for (int j = 0; j < b->nconds && !y; j++)
            if (b->conds[j].kind == x->kind && b->conds[j].name_len == x->name_len &&
                memcmp(b->conds[j].name, x->name, x->name_len) == 0)
                y = &b->conds[j];
        if (!y || (x->nvalues && !y->nvalues))
            return false;
        for (int v = 0; v < y->nvalues; v++)
            if (!value_among(x, y->values[v], y->value_lens[v]))
                return false;
    }
    return true;
}

bool route_conds_cover(const struct route_conds *a, const struct route_conds *b)
{
    if (a->refused || b->refused) /* its refused line was said: no second message of it */
        return false;
    return methods_within(a, b) && names_implied(a, b);
}

/* Each covering the other is holding for the same requests: neither list has a value twice. */
bool route_conds_equal(const struct route_conds *a, const struct route_conds *b)
{
    static const struct route_conds none;
    if (!a)
        a = &none;
    if (!b)
        b = &none;
    return route_conds_cover(a, b) && route_conds_cover(b, a);
}

void route_conds_free(struct route_conds *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nother_methods; i++)
        free(c->other_methods[i]);
    for (int i = 0; i < c->nconds; i++) {
        free(c->conds[i].name);
        for (int v = 0; v < c->conds[i].nvalues; v++)
            free(c->conds[i].values[v]);
    }
    free(c);
}
