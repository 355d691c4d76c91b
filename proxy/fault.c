/*
 * fault.c — fault rules: the key table and its setters, the checks of a whole rule, the
 * Portico-Fault header and key=value lists, client addresses. See fault.h. Matching, the
 * decision and the draws are in fault_decide.c.
 *
 * Every setter parses strictly and says what is wrong with which part in one line, because the
 * same words reach an operator through `portico -t` and a test suite through a 400.
 */
#include "portico/fault.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "portico/route_prefix.h"
#include "portico/status.h"
#include "portico/util.h"

#define FAULT_MAX_TRUNCATE (UINT64_C(1) << 40)  /* sizes: at most 1t, like max_body_size */
#define FAULT_MAX_COUNT UINT64_C(1000000000)    /* first, every, max_active */
#define FAULT_MAX_DURATION (UINT64_C(7) * 24 * 3600 * 1000) /* durations: 168h, as in config */
#define FAULT_MAX_REASON 128                    /* bytes of a reason phrase */

struct key_row {
    const char *name;
    enum fault_key_kind kind;
    bool repeatable;
};

static const struct key_row key_rows[FK_COUNT] = {
#define X(id, nm, kd, rep) [id] = {nm, kd, rep},
    FAULT_KEY_LIST(X)
#undef X
};

int fault_key_find(const char *name)
{
    for (int k = 0; k < FK_COUNT; k++)
        if (strcmp(key_rows[k].name, name) == 0)
            return k;
    return -1;
}

const char *fault_key_name(enum fault_key k)
{
    return (unsigned)k < FK_COUNT ? key_rows[k].name : "unknown";
}

enum fault_key_kind fault_key_kind(enum fault_key k)
{
    return (unsigned)k < FK_COUNT ? key_rows[k].kind : FAULT_ACT;
}

bool fault_key_repeatable(enum fault_key k)
{
    return (unsigned)k < FK_COUNT && key_rows[k].repeatable;
}

/* ---- the text store ---- */

const char *fault_text(const struct fault_rule *r, uint16_t s)
{
    return s < r->used ? r->text + s : "";
}

/* Copies s[0..len) into the store. Its offset, or 0 when the store is full. */
static uint16_t store(struct fault_rule *r, const char *s, size_t len)
{
    if (len + 1 > sizeof(r->text) - r->used)
        return 0;
    uint16_t at = r->used;
    memcpy(r->text + at, s, len);
    r->text[at + len] = '\0';
    r->used = (uint16_t)(r->used + len + 1);
    return at;
}

void fault_rule_init(struct fault_rule *r, const char *name)
{
    memset(r, 0, offsetof(struct fault_rule, text));
    r->text[0] = '\0';
    r->used = 1;
    r->enabled = true;
    r->probability = 1.0;
    r->name = store(r, name, strnlen(name, FAULT_NAME_MAX - 1));
}

/* ---- small parsers ---- */

/* Writes "key: message" into why. Returns -1. */
static int bad(char *why, size_t size, enum fault_key k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(char *why, size_t size, enum fault_key k, const char *fmt, ...)
{
    size_t n = buf_appendf(why, size, 0, "%s: ", fault_key_name(k));
    va_list ap;
    va_start(ap, fmt);
    if (n < size)
        vsnprintf(why + n, size - n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Makes a reason one printable line: the parts of the input it quotes may hold control bytes
 * (a newline, an escape), which become \xNN as in the INI's messages. Returns -1. */
static int one_line(char *why, size_t size)
{
    char copy[512];
    size_t n = 0;
    snprintf(copy, sizeof(copy), "%s", why);
    for (const char *p = copy; *p && n + 5 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(why + n, size - n, "\\x%02x", c);
        else
            why[n++] = (char)c;
    }
    if (size)
        why[MIN(n, size - 1)] = '\0';
    return -1;
}

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static const char *trim_end(const char *p, const char *end)
{
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return end;
}

/* The next comma-separated element of [*p, end), trimmed, into [*b, *e); false at the end. */
static bool next_item(const char **p, const char *end, const char **b, const char **e)
{
    if (*p >= end)
        return false;
    const char *comma = memchr(*p, ',', (size_t)(end - *p));
    const char *stop = comma ? comma : end;
    *b = skip_blanks(*p, stop);
    *e = trim_end(*b, stop);
    *p = comma ? comma + 1 : end;
    return true;
}

/* A copy of [b, e) NUL-terminated into buf; false when it does not fit. */
static bool span_copy(const char *b, const char *e, char *buf, size_t size)
{
    size_t n = (size_t)(e - b);
    if (n >= size)
        return false;
    memcpy(buf, b, n);
    buf[n] = '\0';
    return true;
}

static int duration_span(const char *b, const char *e, uint64_t *ms)
{
    char tmp[32];
    return span_copy(b, e, tmp, sizeof(tmp)) && parse_duration_ms(tmp, ms) == 0 &&
                   *ms <= FAULT_MAX_DURATION
               ? 0
               : -1;
}

/* A decimal in [0, 1]: "0.25", "1", ".5", "0". Strict: no sign, exponent, hex or blanks. */
static int parse_fraction(const char *b, const char *e, double *out)
{
    double v = 0, scale = 1;
    bool digits = false, dot = false;
    for (const char *p = b; p < e; p++) {
        if (*p == '.' && !dot) {
            dot = true;
        } else if (*p >= '0' && *p <= '9') {
            digits = true;
            if (dot) {
                scale /= 10;
                v += (*p - '0') * scale;
            } else {
                v = v * 10 + (*p - '0');
            }
            if (v > 1)
                return -1;
        } else {
            return -1;
        }
    }
    if (!digits)
        return -1;
    *out = v;
    return 0;
}

static bool is_token(const char *b, const char *e)
{
    if (b == e)
        return false;
    for (const char *p = b; p < e; p++)
        if (!h1_is_tchar((unsigned char)*p))
            return false;
    return true;
}

/* Field-value bytes: visible characters, spaces and tabs (no CR, LF or other controls). */
static bool is_field_text(const char *b, const char *e)
{
    for (const char *p = b; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* ---- delays ---- */

/* "2s"; "uniform(100ms, 2s)"; "lognormal(median=200ms, p99=3s)" (either order). */
static int parse_delay(enum fault_key k, const char *v, struct fault_delay *d, char *why,
                       size_t size)
{
    const char *end = v + strlen(v);
    const char *open = strchr(v, '(');
    if (!open) {
        *d = (struct fault_delay){FAULT_DELAY_FIXED, 0, 0};
        if (duration_span(v, end, &d->a_ms) != 0)
            return bad(why, size, k, "'%s' is not a duration (250ms, 2s) or uniform(min,max) or "
                                     "lognormal(median=...,p99=...)", v);
        return 0;
    }
    const char *name_end = trim_end(v, open);
    bool uniform = span_ieq(v, (size_t)(name_end - v), "uniform");
    bool lognormal = span_ieq(v, (size_t)(name_end - v), "lognormal");
    const char *close = trim_end(open + 1, end);
    if ((!uniform && !lognormal) || close == open + 1 || close[-1] != ')')
        return bad(why, size, k, "'%s': expected uniform(min,max) or lognormal(median=...,p99=...)",
                   v);
    close--;
    const char *p = open + 1, *b, *e;
    uint64_t vals[2];
    bool have[2] = {false, false};
    for (int i = 0; next_item(&p, close, &b, &e); i++) {
        int slot = i;
        if (lognormal) {
            const char *eq = memchr(b, '=', (size_t)(e - b));
            const char *ke = eq ? trim_end(b, eq) : b;
            slot = !eq ? -1
                   : span_ieq(b, (size_t)(ke - b), "median") ? 0
                   : span_ieq(b, (size_t)(ke - b), "p99")    ? 1
                                                             : -1;
            if (slot < 0)
                return bad(why, size, k, "'%.*s' in '%s': expected median=DURATION or p99=DURATION",
                           (int)(e - b), b, v);
            b = skip_blanks(eq + 1, e);
        }
        if (slot > 1 || have[slot])
            return bad(why, size, k, "'%s': two values expected", v);
        if (duration_span(b, e, &vals[slot]) != 0)
            return bad(why, size, k, "'%.*s' in '%s' is not a duration", (int)(e - b), b, v);
        have[slot] = true;
    }
    if (!have[0] || !have[1])
        return bad(why, size, k, "'%s': %s", v,
                   uniform ? "two values expected" : "needs both median= and p99=");
    if (uniform && vals[0] > vals[1])
        return bad(why, size, k, "'%s': min is above max", v);
    if (lognormal && (vals[0] == 0 || vals[1] < vals[0]))
        return bad(why, size, k, "'%s': the median must be above 0 and the p99 at least the median",
                   v);
    *d = (struct fault_delay){uniform ? FAULT_DELAY_UNIFORM : FAULT_DELAY_LOGNORMAL, vals[0],
                              vals[1]};
    return 0;
}

/* ---- the setters ---- */

/* Adds one string to a list of the rule; -1 when the list or the store is full. */
static int add_to_list(struct fault_rule *r, enum fault_key k, uint16_t *list, int *n,
                       const char *b, size_t len, char *why, size_t size)
{
    if (*n >= FAULT_MAX_LIST)
        return bad(why, size, k, "at most %d values", FAULT_MAX_LIST);
    uint16_t at = store(r, b, len);
    if (!at)
        return bad(why, size, k, "the rule's text (names, values, body, headers) is longer than "
                                 "%d bytes", FAULT_TEXT_MAX);
    list[(*n)++] = at;
    return 0;
}

static int set_string(struct fault_rule *r, enum fault_key k, const char *v, uint16_t *slot,
                      char *why, size_t size)
{
    int n = 0;
    uint16_t tmp[1] = {0};
    if (add_to_list(r, k, tmp, &n, v, strlen(v), why, size) != 0)
        return -1;
    *slot = tmp[0];
    return 0;
}

static int set_host(struct fault_rule *r, enum fault_key k, const char *v, char *why, size_t size)
{
    char host[256];
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '.')
        n--;
    size_t i = n >= 2 && v[0] == '*' && v[1] == '.' ? 2 : 0;
    if (i == n || n >= sizeof(host))
        return bad(why, size, k, "'%s' is not a host name (exact or *.domain)", v);
    for (size_t j = 0; j < n; j++) {
        unsigned char c = (unsigned char)v[j];
        if (j >= i && !(isalnum(c) || c == '.' || c == '-' || c == '_'))
            return bad(why, size, k, "invalid character '%c' in '%s' (exact name or *.domain)",
                       c, v);
        host[j] = (char)tolower(c);
    }
    host[n] = '\0';
    return set_string(r, k, host, &r->host, why, size);
}

static int set_methods(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                       size_t size)
{
    const char *p = v, *end = v + strlen(v), *b, *e;
    r->nmethods = 0;
    while (next_item(&p, end, &b, &e)) {
        enum http_method m = h1_method_of(b, (size_t)(e - b));
        if (m == METHOD_OTHER) {
            char list[128];
            size_t n = 0;
            for (int i = METHOD_OTHER + 1; i < METHOD_COUNT; i++)
                n = buf_appendf(list, sizeof(list), n, "%s%s", n ? ", " : "",
                                h1_method_name((enum http_method)i));
            return bad(why, size, k, "'%.*s' is not a method Portico knows (%s; case-sensitive)",
                       (int)(e - b), b, list);
        }
        /* request.c refuses CONNECT before any rule is asked: such a rule would never match */
        if (m == METHOD_CONNECT)
            return bad(why, size, k, "CONNECT is answered 501 before any fault rule is asked: "
                       "this rule would never match it");
        if (r->nmethods >= FAULT_MAX_LIST)
            return bad(why, size, k, "at most %d values", FAULT_MAX_LIST);
        r->methods[r->nmethods++] = m;
    }
    return r->nmethods ? 0 : bad(why, size, k, "no method given");
}

/* "X-Test-User" or "X-Test-User=alice"; the name is kept lowercase (names are compared so). */
static int set_match_header(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                            size_t size)
{
    char buf[1024];
    const char *end = v + strlen(v);
    const char *eq = strchr(v, '=');
    const char *ne = trim_end(v, eq ? eq : end);
    if (!is_token(v, ne))
        return bad(why, size, k, "'%s': expected a field name, or name=value", v);
    const char *vb = eq ? skip_blanks(eq + 1, end) : end;
    if (!is_field_text(vb, end))
        return bad(why, size, k, "'%s': control character in the value", v);
    int n = snprintf(buf, sizeof(buf), "%.*s%s%.*s", (int)(ne - v), v, eq ? "=" : "",
                     (int)(end - vb), vb);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return bad(why, size, k, "'%s' is too long", v);
    for (char *q = buf; *q && *q != '='; q++)
        *q = (char)tolower((unsigned char)*q);
    return add_to_list(r, k, r->match_headers, &r->nmatch_headers, buf, (size_t)n, why, size);
}

/* Fields an answer may not set, each with why: its framing and the connection's are Portico's
 * to write, and Portico-Fault tells the client which rule fired (fault_header). */
static const struct {
    const char *name;
    const char *why;
} reserved_fields[] = {
    {"content-length", "framing and connection fields"},
    {"transfer-encoding", "framing and connection fields"},
    {"connection", "framing and connection fields"},
    {"keep-alive", "framing and connection fields"},
    {"upgrade", "framing and connection fields"},
    {"te", "framing and connection fields"},
    {"trailer", "framing and connection fields"},
    {"proxy-connection", "framing and connection fields"},
    {"portico-fault", "it names the rule that fired"},
};

static int set_answer_header(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                             size_t size)
{
    const char *end = v + strlen(v);
    const char *colon = strchr(v, ':');
    if (!colon || !is_token(v, colon))
        return bad(why, size, k, "'%s': expected 'Name: value'", v);
    const char *vb = skip_blanks(colon + 1, end);
    if (!is_field_text(vb, end))
        return bad(why, size, k, "'%s': control character in the value", v);
    for (size_t i = 0; i < ARRAY_LEN(reserved_fields); i++)
        if (span_ieq(v, (size_t)(colon - v), reserved_fields[i].name))
            return bad(why, size, k, "'%.*s' is set by Portico (%s)", (int)(colon - v), v,
                       reserved_fields[i].why);
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%.*s: %.*s", (int)(colon - v), v, (int)(end - vb), vb);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return bad(why, size, k, "'%s' is too long", v);
    return add_to_list(r, k, r->headers, &r->nheaders, buf, (size_t)n, why, size);
}

/* "503" or "200:0.7, 500:0.2, 503:0.1" (200 in a weighted list: to the origin). */
static int set_statuses(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                        size_t size)
{
    const char *p = v, *end = v + strlen(v), *b, *e;
    double sum = 0;
    int n = 0;
    bool weighted = strchr(v, ':') != NULL;
    while (next_item(&p, end, &b, &e)) {
        const char *colon = memchr(b, ':', (size_t)(e - b));
        const char *ce = trim_end(b, colon ? colon : e);
        char code[8];
        uint64_t c;
        if (!span_copy(b, ce, code, sizeof(code)) || parse_status(code, 100, 599, &c) != 0)
            return bad(why, size, k, "'%.*s' is not a status code (200-599)", (int)(ce - b), b);
        if (c == 101) /* not an interim either: pointing at interim = 101 sent them in a loop */
            return bad(why, size, k, "101 switches protocols, which a rule cannot simulate");
        if (c < 200)
            return bad(why, size, k, "%llu is an interim status: use interim = %llu",
                       (unsigned long long)c, (unsigned long long)c);
        /* "503, 500" has no weights: not read as 1 each ("the weights add up to 2") */
        if (weighted != (colon != NULL) || (!weighted && n > 0))
            return bad(why, size, k, "'%s': give every status a weight (503:0.2, 200:0.8) or "
                                     "one status alone", v);
        double w = 1;
        if (colon && (parse_fraction(skip_blanks(colon + 1, e), e, &w) != 0 || w <= 0))
            return bad(why, size, k, "'%.*s': the weight is not a number in (0, 1]",
                       (int)(e - b), b);
        if (n >= FAULT_MAX_LIST)
            return bad(why, size, k, "at most %d statuses", FAULT_MAX_LIST);
        for (int i = 0; i < n; i++)
            if (r->statuses[i].code == c)
                return bad(why, size, k, "%llu is listed twice", (unsigned long long)c);
        r->statuses[n++] = (struct fault_status){(uint16_t)c, weighted && c == 200, w};
        sum += w;
    }
    if (n == 0)
        return bad(why, size, k, "no status given");
    if (sum > 1 + 1e-9)
        return bad(why, size, k, "the weights add up to %.3g, more than 1", sum);
    r->nstatuses = n;
    return 0;
}

static int set_interim(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                       size_t size)
{
    const char *p = v, *end = v + strlen(v), *b, *e;
    int n = 0;
    while (next_item(&p, end, &b, &e)) {
        char code[8];
        uint64_t c;
        if (!span_copy(b, e, code, sizeof(code)) || parse_status(code, 100, 199, &c) != 0 ||
            c == 101)
            return bad(why, size, k, "'%.*s' is not an interim status (100-199 but 101)",
                       (int)(e - b), b);
        if (n >= FAULT_MAX_LIST)
            return bad(why, size, k, "at most %d interim responses", FAULT_MAX_LIST);
        r->interim[n++] = (uint16_t)c;
    }
    if (n == 0)
        return bad(why, size, k, "no status given");
    r->ninterim = n;
    return 0;
}

static int set_failure(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                       size_t size)
{
    enum failure_type t;
    if (failure_from_name(v, &t) != 0 || t > FAIL_NO_HEALTHY_ORIGIN) {
        char list[600];
        size_t n = 0;
        for (int i = FAIL_NONE + 1; i <= FAIL_NO_HEALTHY_ORIGIN; i++)
            n = buf_appendf(list, sizeof(list), n, "%s%s", i > 1 ? ", " : "",
                            failure_name((enum failure_type)i));
        return bad(why, size, k, "'%s' is not a failure type (%s)", v, list);
    }
    r->failure = t;
    return 0;
}

static int set_uint_key(enum fault_key k, const char *v, uint64_t min, uint64_t *out, char *why,
                        size_t size)
{
    if (parse_uint(v, min, FAULT_MAX_COUNT, out) != 0)
        return bad(why, size, k, "'%s' is not a whole number between %llu and %llu", v,
                   (unsigned long long)min, (unsigned long long)FAULT_MAX_COUNT);
    return 0;
}

static int set_duration_key(enum fault_key k, const char *v, uint64_t min, uint64_t *out,
                            char *why, size_t size)
{
    if (duration_span(v, v + strlen(v), out) != 0 || *out < min)
        return bad(why, size, k, "'%s' is not a duration between %llums and 168h (250ms, 2s, 1m)",
                   v, (unsigned long long)min);
    return 0;
}

static int set_size_key(enum fault_key k, const char *v, uint64_t min, uint64_t *out, char *why,
                        size_t size)
{
    if (parse_size(v, out) != 0 || *out < min || *out > FAULT_MAX_TRUNCATE)
        return bad(why, size, k, "'%s' is not a size between %llu and 1t (1000, 16k, 1m)", v,
                   (unsigned long long)min);
    return 0;
}

static int set_bool_key(enum fault_key k, const char *v, bool *out, char *why, size_t size)
{
    if (parse_bool(v, out) != 0)
        return bad(why, size, k, "'%s' is not on/off", v);
    return 0;
}

static int set_value(struct fault_rule *r, enum fault_key k, const char *v, char *why,
                     size_t size)
{
    switch (k) {
    case FK_ROUTE:
        if (!name_valid(v))
            return bad(why, size, k, "'%s' is not a route name", v);
        return set_string(r, k, v, &r->route, why, size);
    case FK_HOST:
        return set_host(r, k, v, why, size);
    case FK_PREFIX:
        if (v[0] != '/')
            return bad(why, size, k, "'%s' must start with '/'", v);
        if (!is_field_text(v, v + strlen(v)))
            return bad(why, size, k, "'%s': control character in the value", v);
        if (set_string(r, k, v, &r->prefix, why, size) != 0)
            return -1;
        r->prefix_len = (uint16_t)strlen(v); /* set_string took it: it fits the rule's text */
        r->prefix_plain = route_plain_len(v, r->prefix_len) == r->prefix_len;
        return 0;
    case FK_METHOD:
        return set_methods(r, k, v, why, size);
    case FK_HEADER:
        return set_match_header(r, k, v, why, size);
    case FK_CLIENT: {
        char reason[160];
        int n = fault_cidr_list(v, r->clients, FAULT_MAX_LIST, reason, sizeof(reason));
        if (n < 0)
            return bad(why, size, k, "%s", reason);
        r->nclients = n;
        return 0;
    }
    case FK_ENABLED:
        return set_bool_key(k, v, &r->enabled, why, size);
    case FK_PROBABILITY:
        if (parse_fraction(v, v + strlen(v), &r->probability) != 0)
            return bad(why, size, k, "'%s' is not a number between 0 and 1", v);
        return 0;
    case FK_FIRST:
        return set_uint_key(k, v, 1, &r->first, why, size);
    case FK_EVERY:
        return set_uint_key(k, v, 1, &r->every, why, size);
    case FK_AFTER:
        return set_duration_key(k, v, 0, &r->after_ms, why, size);
    case FK_FOR:
        return set_duration_key(k, v, 1, &r->for_ms, why, size);
    case FK_MAX_ACTIVE:
        return set_uint_key(k, v, 1, &r->max_active, why, size);
    case FK_STATUS:
        return set_statuses(r, k, v, why, size);
    case FK_REASON:
        if (!*v || strlen(v) > FAULT_MAX_REASON || !is_field_text(v, v + strlen(v)))
            return bad(why, size, k, "a reason phrase is 1 to %d characters without controls",
                       FAULT_MAX_REASON);
        return set_string(r, k, v, &r->reason, why, size);
    case FK_BODY:
        return set_string(r, k, v, &r->body, why, size);
    case FK_HEADERS:
        return set_answer_header(r, k, v, why, size);
    case FK_FAILURE:
        return set_failure(r, k, v, why, size);
    case FK_DELAY:
        return parse_delay(k, v, &r->delay, why, size);
    case FK_JITTER:
        return set_duration_key(k, v, 0, &r->jitter_ms, why, size);
    case FK_RESPONSE_DELAY:
        return parse_delay(k, v, &r->response_delay, why, size);
    case FK_DROP:
        return set_bool_key(k, v, &r->drop, why, size);
    case FK_RESET:
        return set_bool_key(k, v, &r->reset, why, size);
    case FK_TRUNCATE:
        return set_size_key(k, v, 0, &r->truncate, why, size);
    case FK_THROTTLE:
        return set_size_key(k, v, 1, &r->throttle, why, size);
    case FK_INTERIM:
        return set_interim(r, k, v, why, size);
    case FK_INTERIM_INTERVAL:
        return set_duration_key(k, v, 0, &r->interim_interval_ms, why, size);
    case FK_COUNT:
        break;
    }
    return bad(why, size, k, "unknown key");
}

static int rule_set(struct fault_rule *r, enum fault_key k, const char *value, char *why,
                    size_t size)
{
    if ((unsigned)k >= FK_COUNT)
        return bad(why, size, k, "unknown key");
    const char *b = skip_blanks(value, value + strlen(value));
    const char *e = trim_end(b, b + strlen(b));
    char v[FAULT_TEXT_MAX];
    if (!span_copy(b, e, v, sizeof(v)))
        return bad(why, size, k, "value longer than %d bytes", FAULT_TEXT_MAX - 1);
    if (!*v)
        return bad(why, size, k, "empty value");
    /* the value as written, for listings; a body is stored once for both */
    if (set_value(r, k, v, why, size) != 0)
        return -1;
    r->set |= 1u << k;
    r->raw[k] = k == FK_BODY ? r->body : k == FK_REASON ? r->reason : store(r, v, strlen(v));
    if (!r->raw[k])
        return bad(why, size, k, "the rule's text (names, values, body, headers) is longer than "
                                 "%d bytes", FAULT_TEXT_MAX);
    return 0;
}

int fault_rule_set(struct fault_rule *r, enum fault_key k, const char *value, char *why,
                   size_t size)
{
    return rule_set(r, k, value, why, size) == 0 ? 0 : one_line(why, size);
}

/* ---- whole rules ---- */

static bool has(const struct fault_rule *r, enum fault_key k)
{
    return r->set & (1u << k);
}

/* A status that answers (not only pass-through weights). */
static bool answers_status(const struct fault_rule *r)
{
    for (int i = 0; i < r->nstatuses; i++)
        if (!r->statuses[i].pass)
            return true;
    return false;
}

/* A status that answers with content: not only 204, 205 and 304, which carry none. */
static bool answers_content(const struct fault_rule *r)
{
    for (int i = 0; i < r->nstatuses; i++) {
        int c = r->statuses[i].code;
        if (!r->statuses[i].pass && c != HTTP_NO_CONTENT && c != HTTP_RESET_CONTENT &&
            c != HTTP_NOT_MODIFIED)
            return true;
    }
    return false;
}

/* Some requests reach the origin: no status, or a weighted list with room for it. */
static bool reaches_origin(const struct fault_rule *r)
{
    if (r->failure != FAIL_NONE || r->drop || r->reset)
        return false;
    if (!r->nstatuses)
        return true;
    double sum = 0;
    for (int i = 0; i < r->nstatuses; i++) {
        if (r->statuses[i].pass)
            return true;
        sum += r->statuses[i].weight;
    }
    return sum < 1 - 1e-9;
}

bool fault_rule_needs_response(const struct fault_rule *r)
{
    return r->response_delay.kind != FAULT_DELAY_NONE || has(r, FK_TRUNCATE) || r->throttle;
}

int fault_rule_check(const struct fault_rule *r, char *why, size_t size)
{
    int answers = (r->nstatuses > 0) + (r->failure != FAIL_NONE) + r->drop + r->reset;
    bool acts = answers || r->delay.kind != FAULT_DELAY_NONE ||
                fault_rule_needs_response(r) || r->ninterim;
    const char *fail = NULL;
    if ((r->reason || r->body || r->nheaders) && !answers_status(r))
        fail = "reason, body and headers go with a status that answers";
    else if (r->body && !answers_content(r)) /* it was dropped without a word */
        fail = "body: 204, 205 and 304 answers carry no content";
    else if (has(r, FK_JITTER) && r->delay.kind != FAULT_DELAY_FIXED)
        fail = "jitter goes with a fixed delay (delay = 2s)";
    else if (has(r, FK_INTERIM_INTERVAL) && !r->ninterim)
        fail = "interim_interval goes with interim";
    else if (!acts)
        fail = "no action: give status, failure, delay, response_delay, drop, reset, truncate, "
               "throttle or interim";
    else if (answers > 1)
        fail = "status, failure, drop and reset exclude each other";
    else if (fault_rule_needs_response(r) && !reaches_origin(r))
        fail = "response_delay, truncate and throttle need the origin's response: they cannot go "
               "with a failure, drop, reset or a status that always answers";
    if (!fail)
        return 0;
    snprintf(why, size, "%s", fail);
    return -1;
}

/* ---- the Portico-Fault header and key=value lists ---- */

/* The keys whose values are request timers, tens of milliseconds to seconds: a bare 5000 there
 * is milliseconds meant (after and for, windows of minutes to hours, take 3600 as an hour). */
static const bool ms_usual[FK_COUNT] = {
    [FK_DELAY] = true,
    [FK_JITTER] = true,
    [FK_RESPONSE_DELAY] = true,
    [FK_INTERIM_INTERVAL] = true,
};

bool fault_bare_seconds(enum fault_key k, const char *value, char *note, size_t size,
                        const char **num, size_t *num_len)
{
    if ((unsigned)k >= FK_COUNT || !ms_usual[k])
        return false;
    /* a run of digits that no letter touches: "5000" in "uniform(100ms, 5000)", not "p99" */
    for (const char *p = value; *p;) {
        const char *q = p;
        while (*q >= '0' && *q <= '9')
            q++;
        bool bare = q > p && (p == value || !isalnum((unsigned char)p[-1])) &&
                    !isalpha((unsigned char)*q);
        if (bare && duration_bare_note(p, (size_t)(q - p), note, size)) {
            *num = p;
            *num_len = (size_t)(q - p);
            return true;
        }
        p = q > p ? q : p + 1;
    }
    return false;
}

int fault_rule_set_key(struct fault_rule *r, const char *key, const char *value, char *why,
                       size_t size)
{
    int k = fault_key_find(key);
    char note[64];
    const char *num;
    size_t len;
    if (k < 0)
        snprintf(why, size, "unknown key '%s'", key);
    else if (has(r, (enum fault_key)k) && !fault_key_repeatable((enum fault_key)k))
        snprintf(why, size, "'%s' given twice", key);
    else if (fault_rule_set(r, (enum fault_key)k, value, why, size) != 0)
        return -1;
    else if (fault_bare_seconds((enum fault_key)k, value, note, sizeof(note), &num, &len))
        snprintf(why, size, "%s: %s; write %.*sms for milliseconds, %.*ss for seconds", key, note,
                 (int)len, num, (int)len, num);
    else
        return 0;
    return one_line(why, size);
}

/* One "key=value" of the header into r: actions and probability only. */
static int header_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    int k = fault_key_find(key);
    if (k >= 0 && fault_key_kind((enum fault_key)k) != FAULT_ACT && k != FK_PROBABILITY) {
        snprintf(why, size, "'%s' belongs in a [fault] rule; the header takes actions and "
                            "probability", key);
        return -1;
    }
    return fault_rule_set_key(arg, key, value, why, size);
}

static int header_parse(const char *value, size_t len, const char *name, struct fault_rule *r,
                        char *why, size_t size)
{
    fault_rule_init(r, name);
    const char *end = value + len;
    for (const char *p = value; p < end;) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *b = skip_blanks(p, stop), *e = trim_end(b, stop);
        p = semi ? semi + 1 : end;
        if (b == e)
            continue;
        const char *eq = memchr(b, '=', (size_t)(e - b));
        char key[32], val[FAULT_TEXT_MAX];
        if (!eq || !span_copy(b, trim_end(b, eq), key, sizeof(key))) {
            snprintf(why, size, "'%.*s': expected key=value", (int)MIN(e - b, 80), b);
            return -1;
        }
        if (!span_copy(skip_blanks(eq + 1, e), e, val, sizeof(val))) { /* it is key=value */
            snprintf(why, size, "%s: value longer than %d bytes", key, FAULT_TEXT_MAX - 1);
            return -1;
        }
        if (header_pair(r, key, val, why, size) != 0)
            return -1;
    }
    if (!r->set) {
        snprintf(why, size, "empty: expected key=value pairs such as status=503");
        return -1;
    }
    return fault_rule_check(r, why, size);
}

int fault_header_parse(const char *value, size_t len, const char *name, struct fault_rule *r,
                       char *why, size_t size)
{
    return header_parse(value, len, name, r, why, size) == 0 ? 0 : one_line(why, size);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One side of a key=value pair, [b, e), into buf: as it is, or with %XX and '+' decoded when
 * url. 0; -1 when a '%' is not followed by two hex digits, -3 when it decodes to NUL; -2 when it
 * does not fit in buf. */
static int pair_part(const char *b, const char *e, bool url, char *buf, size_t size)
{
    if (!url)
        return span_copy(b, e, buf, size) ? 0 : -2;
    size_t n = 0;
    for (const char *p = b; p < e; p++) {
        char c = *p;
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = e - p >= 3 ? hex_value(p[1]) : -1;
            int lo = e - p >= 3 ? hex_value(p[2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            p += 2;
        }
        if (c == '\0')
            return -3;
        if (n + 1 >= size)
            return -2;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return 0;
}

int fault_pairs(const char *text, size_t len, bool url_encoded,
                int (*pair)(void *arg, const char *key, const char *value, char *why, size_t size),
                void *arg, char *why, size_t size)
{
    const char *end = text + len;
    for (const char *p = text; p < end;) {
        const char *stop = p;
        while (stop < end && *stop != '\n' && !(url_encoded && *stop == '&'))
            stop++;
        const char *b = skip_blanks(p, stop), *e = trim_end(b, stop);
        if (e > b && e[-1] == '\r')
            e = trim_end(b, e - 1);
        p = stop < end ? stop + 1 : end;
        if (b == e || *b == ';' || *b == '#')
            continue;
        /* a NUL sent as it is would end the copy: the rest of the line dropped unseen (%00 is
         * refused by pair_part likewise) */
        if (memchr(b, '\0', (size_t)(e - b))) {
            snprintf(why, size, "'%.*s': a NUL byte in the line", (int)MIN(e - b, 80), b);
            return one_line(why, size);
        }
        const char *eq = memchr(b, '=', (size_t)(e - b));
        char key[64], val[FAULT_TEXT_MAX];
        int krc = eq ? pair_part(b, trim_end(b, eq), url_encoded, key, sizeof(key)) : -1;
        int vrc = krc ? 0 : pair_part(skip_blanks(eq + 1, e), e, url_encoded, val, sizeof(val));
        if (krc == -2 || vrc == -2) { /* said as such: a value of 5,000 bytes is key=value */
            snprintf(why, size, "'%.*s': the %s is longer than %zu bytes", (int)MIN(e - b, 80), b,
                     krc ? "key" : "value", (krc ? sizeof(key) : sizeof(val)) - 1);
            return one_line(why, size);
        }
        /* said as such: "body=100% down" from curl -d is key=value, its '%' the fault */
        if (krc || vrc) {
            int rc = krc ? krc : vrc;
            snprintf(why, size, "'%.*s': %s", (int)MIN(e - b, 80), b,
                     !eq        ? "expected key=value"
                     : rc == -3 ? "%00 decodes to a NUL byte"
                                : "a '%' not followed by two hex digits (write %25 for '%', or "
                                  "send it with curl --data-urlencode)");
            return one_line(why, size);
        }
        int rc = pair(arg, key, val, why, size);
        if (rc != 0) {
            one_line(why, size);
            return rc;
        }
    }
    return 0;
}

/* ---- addresses ---- */

/* inet_pton(AF_INET) in one pass: four decimal parts of at most 255, no leading zero, as glibc
 * takes them. Its loop looked each digit up with strchr: ~220 instructions for "127.0.0.1"
 * against ~60, and real_ip parses the peer and each element it walks per request. */
static bool ipv4_parse(const char *p, uint8_t out[4])
{
    for (int part = 0; part < 4; part++) {
        if (part > 0 && *p++ != '.')
            return false;
        unsigned v = 0, digits = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (digits++ > 0 && v == 0)
                return false; /* "01" */
            v = v * 10 + (unsigned)(*p - '0');
            if (v > 255)
                return false;
        }
        if (digits == 0)
            return false;
        out[part] = (uint8_t)v;
    }
    return *p == '\0';
}

int fault_addr_parse(const char *text, struct fault_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (ipv4_parse(text, out->bytes))
        return 0;
    if (inet_pton(AF_INET6, text, out->bytes) != 1)
        return -1;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->bytes, mapped, 12) == 0) { /* ::ffff:a.b.c.d is an IPv4 client */
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        return 0;
    }
    out->v6 = true;
    return 0;
}

int fault_cidr_list(const char *text, struct fault_cidr *out, int max, char *why, size_t size)
{
    const char *p = text, *end = text + strlen(text), *b, *e;
    int n = 0;
    while (next_item(&p, end, &b, &e)) {
        char addr[64];
        const char *slash = memchr(b, '/', (size_t)(e - b));
        struct fault_cidr c;
        uint64_t bits = 0;
        bool ok = span_copy(b, slash ? slash : e, addr, sizeof(addr)) &&
                  fault_addr_parse(addr, &c.net) == 0;
        unsigned width = ok && c.net.v6 ? 128 : 32;
        if (ok && slash) {
            char num[8];
            ok = span_copy(slash + 1, e, num, sizeof(num)) && parse_uint(num, 0, width, &bits) == 0;
        } else {
            bits = width;
        }
        if (!ok) {
            snprintf(why, size, "'%.*s' is not an address or CIDR block (127.0.0.0/8, ::1)",
                     (int)MIN(e - b, 80), b);
            return -1;
        }
        if (n >= max) {
            snprintf(why, size, "at most %d address blocks", max);
            return -1;
        }
        c.bits = (uint8_t)bits;
        out[n++] = c;
    }
    if (n == 0) {
        snprintf(why, size, "no address given");
        return -1;
    }
    return n;
}

bool fault_cidr_contains(const struct fault_cidr *list, int n, const struct fault_addr *addr)
{
    for (int i = 0; i < n; i++) {
        const struct fault_cidr *c = &list[i];
        if (c->net.v6 != addr->v6)
            continue;
        unsigned whole = c->bits / 8, rest = c->bits % 8;
        if (memcmp(c->net.bytes, addr->bytes, whole) != 0)
            continue;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if (rest && (c->net.bytes[whole] & mask) != (addr->bytes[whole] & mask))
            continue;
        return true;
    }
    return false;
}
