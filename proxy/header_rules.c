/*
 * header_rules.c — a route's header rules. See header_rules.h.
 */
#include "portico/header_rules.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/http1.h"
#include "portico/util.h"

/* Which rules a name refuses: a bit per direction and operation. */
#define REQ_SET (1u << 0)
#define REQ_REMOVE (1u << 1)
#define RESP_SET (1u << 2)
#define RESP_REMOVE (1u << 3)
#define REQ (REQ_SET | REQ_REMOVE)
#define RESP (RESP_SET | RESP_REMOVE)
#define BOTH (REQ | RESP)

/* Names Portico owns, compared with '_' read as '-' (a CGI-style server reads both as one). A
 * rule on one would break the framing of the next hop or speak for Portico where README's
 * "What the origin receives" says what it does instead. */
static const struct {
    const char *name;
    unsigned refuses;
    const char *why;
} owned[] = {
    {"content-length", BOTH, "Portico writes the framing of each hop"},
    {"transfer-encoding", BOTH, "Portico writes the framing of each hop"},
    {"connection", BOTH, "a hop-by-hop field"},
    {"keep-alive", BOTH, "a hop-by-hop field"},
    {"proxy-connection", BOTH, "a hop-by-hop field"},
    {"te", BOTH, "a hop-by-hop field"},
    {"trailer", BOTH, "a hop-by-hop field"},
    {"upgrade", BOTH, "a hop-by-hop field (upgrades are the client's and the origin's)"},
    {"portico-fault", BOTH, "Portico's fault rehearsal field"},
    {"x-portico-mirror", REQ, "Portico's mark of a mirror copy (mirror)"},
    {"client-cert", BOTH, "Portico's word on the client's certificate (tls_verify_client)"},
    {"client-cert-chain", BOTH, "Portico's word on the client's certificate (tls_verify_client)"},
    {"client-cert-verify", BOTH, "Portico's word on the client's certificate (tls_verify_client)"},
    {"via", BOTH, "Portico adds its own Via entry"},
    {"x-request-id", BOTH, "Portico's (the client's when well-formed)"},
    {"forwarded", BOTH, "the client's is removed and trusted_proxies keeps a trusted proxy's"},
    {"x-forwarded-for", BOTH, "Portico appends the client's address to it"},
    {"x-forwarded-proto", BOTH, "Portico writes it (trusted_proxies keeps a trusted proxy's)"},
    {"x-forwarded-host", BOTH, "Portico writes it (trusted_proxies keeps a trusted proxy's)"},
    {"host", REQ_REMOVE | RESP, "HTTP/1.1 requires one Host (set it: request_header = Host: "
                                "name)"},
    {"expect", REQ, "Portico relays or answers 100-continue itself (expect)"},
    {"max-forwards", REQ, "Portico decrements it on OPTIONS and TRACE"},
    {"traceparent", REQ, "Portico writes its own (W3C Trace Context)"},
    {"tracestate", REQ, "Portico keeps or cuts the client's with its traceparent"},
    {"date", RESP, "Portico adds one when the origin sent none"},
    {"proxy-status", RESP, "Portico's (proxy_status)"},
    {"server-timing", RESP, "Portico's (server_timing)"},
};

static const char *const var_names[] = {
#define X(id, name) [id] = name,
    HRULE_VAR_LIST(X)
#undef X
};

/* Whether a and b (n bytes each) are one name: any case, '_' for '-'. */
static bool same_name(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)(a[i] == '_' ? '-' : a[i]) | 0x20;
        unsigned char y = (unsigned char)(b[i] == '_' ? '-' : b[i]) | 0x20;
        if (x != y)
            return false;
    }
    return true;
}

static unsigned refuse_bit(enum hrule_dir dir, enum hrule_op op)
{
    static const unsigned bits[2][2] = {
        [HRULE_REQUEST] = {[HRULE_SET] = REQ_SET, [HRULE_REMOVE] = REQ_REMOVE},
        [HRULE_RESPONSE] = {[HRULE_SET] = RESP_SET, [HRULE_REMOVE] = RESP_REMOVE},
    };
    return bits[dir][op];
}

enum hrule_var hrule_var_at(const char *v, size_t n, size_t *len)
{
    *len = 1;
    if (n >= 2 && v[1] == '$') {
        *len = 2;
        return HRULE_VAR_DOLLAR;
    }
    bool braced = n >= 2 && v[1] == '{';
    size_t start = braced ? 2 : 1, end = start;
    while (end < n && ((v[end] >= 'a' && v[end] <= 'z') || v[end] == '_'))
        end++;
    if (braced && (end == n || v[end] != '}'))
        return HRULE_VAR_NONE;
    for (size_t i = HRULE_VAR_CLIENT_ADDR; i < ARRAY_LEN(var_names); i++) {
        if (strlen(var_names[i]) == end - start &&
            memcmp(var_names[i], v + start, end - start) == 0) {
            *len = end + (braced ? 1 : 0);
            return (enum hrule_var)i;
        }
    }
    return HRULE_VAR_NONE;
}

/* n bytes of s as a string (malloc, not strndup: whose allocation libc makes out of reach of
 * the tests' allocation counters). */
static char *copy_span(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int hrule_check_value(const char *v, size_t n, bool expand, bool *vars, char *why, size_t size)
{
    *vars = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            snprintf(why, size, "control byte \\x%02x in the value (CR, LF, NUL and the like "
                                "would end or split the field)", c);
            return -1;
        }
        if (c != '$' || !expand)
            continue;
        size_t len;
        if (hrule_var_at(v + i, n - i, &len) == HRULE_VAR_NONE) {
            /* at most the n - i bytes left: v need not end with a NUL */
            int shown = n - i < 24 ? (int)(n - i) : 24;
            snprintf(why, size,
                     "unknown variable at '%.*s' (known: $client_addr, $request_id, $scheme, "
                     "$host, $http_host, $request_uri; $$ is a '$')",
                     shown, v + i);
            return -1;
        }
        *vars = true;
        i += len - 1;
    }
    return 0;
}

/* $host as nginx makes it: the host the client addressed without its port or trailing dot,
 * lowercase (one name however the client wrote it, the one routes match), put in pieces of a
 * small buffer. */
static void put_host_name(const struct hrule_values *vals, hrule_put_fn *put, void *ctx)
{
    if (!vals->host)
        return;
    size_t len = host_name_len(vals->host, vals->host_len);
    char piece[64];
    for (size_t done = 0; done < len;) {
        size_t k = 0;
        for (; k < sizeof(piece) && done + k < len; k++)
            piece[k] = (char)tolower((unsigned char)vals->host[done + k]);
        put(ctx, piece, k, true);
        done += k;
    }
}

void hrule_expand(const char *v, size_t n, const struct hrule_values *vals, hrule_put_fn *put,
                  void *ctx)
{
    for (size_t i = 0; i < n;) {
        const char *dollar = memchr(v + i, '$', n - i);
        size_t lit = dollar ? (size_t)(dollar - (v + i)) : n - i;
        if (lit)
            put(ctx, v + i, lit, false);
        i += lit;
        if (!dollar)
            break;
        size_t len;
        switch (hrule_var_at(v + i, n - i, &len)) {
        case HRULE_VAR_CLIENT_ADDR:
            put(ctx, vals->client_addr, strlen(vals->client_addr), true);
            break;
        case HRULE_VAR_REQUEST_ID:
            put(ctx, vals->request_id, strlen(vals->request_id), true);
            break;
        case HRULE_VAR_SCHEME:
            put(ctx, vals->tls ? "https" : "http", vals->tls ? 5 : 4, false);
            break;
        case HRULE_VAR_HOST:
            put_host_name(vals, put, ctx);
            break;
        case HRULE_VAR_HTTP_HOST:
            if (vals->host)
                put(ctx, vals->host, vals->host_len, true);
            break;
        case HRULE_VAR_REQUEST_URI:
            /* "http://h?q" is "/?q" (request.h); "*" (OPTIONS) stays as it came */
            if (vals->request_uri_len && vals->request_uri[0] == '?')
                put(ctx, "/", 1, false);
            if (vals->request_uri)
                put(ctx, vals->request_uri, vals->request_uri_len, true);
            break;
        case HRULE_VAR_DOLLAR:
        case HRULE_VAR_NONE: /* refused at load */
            put(ctx, "$", 1, false);
            break;
        }
        i += len;
    }
}

int hrule_parse(enum hrule_dir dir, enum hrule_op op, const char *text, struct hrule *r,
                char *why, size_t size)
{
    *r = (struct hrule){.op = op};
    size_t n = strlen(text);
    const char *colon = memchr(text, ':', n);
    size_t name_len = op == HRULE_SET ? (colon ? (size_t)(colon - text) : n) : n;
    if (op == HRULE_SET && !colon) {
        snprintf(why, size, "expected 'Name: value'");
        return -1;
    }
    if (name_len == 0) {
        snprintf(why, size, "empty field name");
        return -1;
    }
    for (size_t i = 0; i < name_len; i++) {
        if (!h1_is_tchar((unsigned char)text[i])) {
            snprintf(why, size, "'%.*s' is not a field name (a token of RFC 9110 5.6.2: no "
                                "blank before ':')", (int)MIN(name_len, 64), text);
            return -1;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(owned); i++) {
        if (strlen(owned[i].name) == name_len && same_name(owned[i].name, text, name_len) &&
            (owned[i].refuses & refuse_bit(dir, op))) {
            snprintf(why, size, "%.*s is not for rules: %s", (int)name_len, text, owned[i].why);
            return -1;
        }
    }
    const char *value = NULL;
    size_t value_len = 0;
    if (op == HRULE_SET) {
        value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        value_len = strlen(value);
        while (value_len && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        if (hrule_check_value(value, value_len, dir == HRULE_REQUEST, &r->vars, why, size) != 0)
            return -1;
        if (dir == HRULE_REQUEST && name_len == 4 && same_name(text, "host", 4) &&
            (r->vars || !value_len || !h1_host_valid(value, value_len))) {
            snprintf(why, size, "Host: '%.*s' is not a host[:port] (variables are not taken "
                                "here)", (int)MIN(value_len, 64), value);
            return -1;
        }
    }
    r->name = copy_span(text, name_len);
    r->value = value ? copy_span(value, value_len) : NULL;
    if (!r->name || (value && !r->value)) {
        free(r->name);
        free(r->value);
        r->name = r->value = NULL;
        why[0] = '\0'; /* out of memory */
        return -1;
    }
    r->name_len = name_len;
    r->value_len = value_len;
    return 0;
}

static void hrule_free(struct hrule *r)
{
    free(r->name);
    free(r->value);
    r->name = r->value = NULL;
}

int hrules_add(struct hrules **rules, struct hrule *r, char *why, size_t size)
{
    struct hrules *rs = *rules;
    if (!rs && !(rs = *rules = calloc(1, sizeof(*rs)))) {
        why[0] = '\0'; /* out of memory */
        goto fail;
    }
    bool host = r->op == HRULE_SET && r->name_len == 4 && same_name(r->name, "host", 4);
    if (host && rs->host) {
        snprintf(why, size, "Host already has a rule at line %d", rs->host_line);
        goto fail;
    }
    for (int i = 0; i < rs->n; i++) {
        if (rs->rule[i].name_len == r->name_len &&
            same_name(rs->rule[i].name, r->name, r->name_len)) {
            snprintf(why, size, "%s already has a rule at line %d (one rule a name)", r->name,
                     rs->rule[i].line);
            goto fail;
        }
    }
    if (host) { /* the exchange sends it where the client's Host goes */
        rs->host = r->value;
        rs->host_line = r->line;
        r->value = NULL;
        hrule_free(r);
        return 0;
    }
    if (rs->n == HRULE_MAX) {
        snprintf(why, size, "at most %d rules a route and direction", HRULE_MAX);
        goto fail;
    }
    rs->nset += r->op == HRULE_SET;
    rs->rule[rs->n++] = *r;
    return 0;
fail:
    hrule_free(r);
    return -1;
}

void hrules_free(struct hrules *rules)
{
    if (!rules)
        return;
    for (int i = 0; i < rules->n; i++)
        hrule_free(&rules->rule[i]);
    free(rules->host);
    free(rules);
}

bool hrules_names_start(const struct hrules *rules, const char *name, size_t len, bool whole)
{
    if (whole)
        return hrules_names(rules, name, len);
    for (int i = 0; i < rules->n; i++)
        if (rules->rule[i].name_len >= len && same_name(rules->rule[i].name, name, len))
            return true;
    return false;
}

bool hrules_names(const struct hrules *rules, const char *name, size_t len)
{
    for (int i = 0; i < rules->n; i++)
        if (rules->rule[i].name_len == len && same_name(rules->rule[i].name, name, len))
            return true;
    return false;
}
