/*
 * json.c — the strict test-side JSON reader. See json.h.
 */
#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TJ_MAX_DEPTH 64

struct reader {
    const char *start;
    const char *p;
    char *err;
    size_t errsize;
    bool failed;
};

static void fail(struct reader *r, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = true;
    int n = snprintf(r->err, r->errsize, "offset %zu: ", (size_t)(r->p - r->start));
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < r->errsize)
        vsnprintf(r->err + n, r->errsize - (size_t)n, fmt, ap);
    va_end(ap);
}

static void ws(struct reader *r)
{
    while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
        r->p++;
}

static struct tj *node(enum tj_type t)
{
    struct tj *v = calloc(1, sizeof(*v));
    if (v)
        v->type = t;
    return v;
}

/* The items array grows by doubling (room for 4, 8, 16...: full whenever n is 0 or a power of 2
 * from 4): an array of thousands (a /status of megabytes) is not copied once per item. */
static int add_item(struct tj *parent, struct tj *child)
{
    size_t n = parent->n;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        struct tj **grown = realloc(parent->items, (n ? 2 * n : 4) * sizeof(*grown));
        if (!grown)
            return -1;
        parent->items = grown;
    }
    parent->items[parent->n++] = child;
    return 0;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | cp >> 6);
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12);
        d[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18);
    d[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    d[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The bytes of the string at p (past its opening quote) up to its closing quote or the end of
 * the text: its decoded form is never longer (an escape decodes to fewer bytes than it takes). */
static size_t raw_span(const char *p)
{
    const char *q = p;
    while (*q && *q != '"')
        q += q[0] == '\\' && q[1] ? 2 : 1;
    return (size_t)(q - p);
}

/* A string at r->p (on the opening quote); malloc'd, decoded. Sized by its own span: sized by
 * the rest of the text, each string and key of a 25 KB /status cost up to 25 KB, 12 MB a
 * document, which took ASan 300-500 ms to parse (3 ms now), longer than the checks the parse
 * ran under (test_balance's gated health checks, 500 ms) could wait. */
static char *string(struct reader *r)
{
    const char *p = ++r->p;
    size_t cap = raw_span(p) + 1;
    char *out = malloc(cap), *d = out;
    if (!out) {
        fail(r, "out of memory");
        return NULL;
    }
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c == '\0' || c < 0x20) {
            r->p = p;
            fail(r, c ? "control byte in a string" : "unterminated string");
            free(out);
            return NULL;
        }
        if (c != '\\') {
            *d++ = (char)c;
            p++;
            continue;
        }
        p++;
        const char *esc = strchr("\"\\/bfnrt", *p);
        if (*p && esc) {
            static const char real[] = "\"\\/\b\f\n\r\t";
            *d++ = real[esc - "\"\\/bfnrt"];
            p++;
            continue;
        }
        unsigned cp;
        if (*p != 'u' || hex4(p + 1, &cp) != 0) {
            r->p = p;
            fail(r, "bad escape");
            free(out);
            return NULL;
        }
        p += 5;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 || lo < 0xDC00 ||
                lo > 0xDFFF) {
                r->p = p;
                fail(r, "lone surrogate");
                free(out);
                return NULL;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            r->p = p;
            fail(r, "lone surrogate");
            free(out);
            return NULL;
        }
        d += put_utf8(d, cp);
    }
    *d = '\0';
    r->p = p + 1;
    return out;
}

static int number(struct reader *r, double *out)
{
    const char *p = r->p;
    if (*p == '-')
        p++;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9')
            p++;
    } else {
        fail(r, "value expected");
        return -1;
    }
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            fail(r, "digit expected after '.'");
            return -1;
        }
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9')) {
            fail(r, "digit expected in exponent");
            return -1;
        }
        while (*p >= '0' && *p <= '9')
            p++;
    }
    *out = strtod(r->p, NULL);
    r->p = p;
    return 0;
}

static struct tj *value(struct reader *r, int depth);

static struct tj *container(struct reader *r, int depth, bool object)
{
    struct tj *v = node(object ? TJ_OBJECT : TJ_ARRAY);
    char close = object ? '}' : ']';
    if (!v) {
        fail(r, "out of memory");
        return NULL;
    }
    r->p++;
    ws(r);
    if (*r->p == close) {
        r->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        ws(r);
        if (object) {
            if (*r->p != '"') {
                fail(r, "member name expected");
                break;
            }
            if (!(key = string(r)))
                break;
            ws(r);
            if (*r->p != ':') {
                free(key);
                fail(r, "':' expected");
                break;
            }
            r->p++;
        }
        struct tj *item = value(r, depth + 1);
        if (!item || add_item(v, item) != 0) {
            free(key);
            tj_free(item);
            fail(r, "out of memory");
            break;
        }
        item->key = key;
        ws(r);
        if (*r->p == ',') {
            r->p++;
            continue;
        }
        if (*r->p == close) {
            r->p++;
            return v;
        }
        fail(r, object ? "',' or '}' expected" : "',' or ']' expected");
        break;
    }
    tj_free(v);
    return NULL;
}

static struct tj *value(struct reader *r, int depth)
{
    ws(r);
    if (depth > TJ_MAX_DEPTH) {
        fail(r, "nested too deep");
        return NULL;
    }
    struct tj *v = NULL;
    switch (*r->p) {
    case '{':
        return container(r, depth, true);
    case '[':
        return container(r, depth, false);
    case '"': {
        char *s = string(r);
        if (s && !(v = node(TJ_STRING)))
            free(s);
        else if (v)
            v->string = s;
        return v;
    }
    case 't':
    case 'f':
    case 'n': {
        static const char *const lit[] = {"true", "false", "null"};
        for (int i = 0; i < 3; i++) {
            size_t n = strlen(lit[i]);
            if (strncmp(r->p, lit[i], n) == 0) {
                r->p += n;
                v = node(i == 2 ? TJ_NULL : TJ_BOOL);
                if (v)
                    v->boolean = i == 0;
                return v;
            }
        }
        fail(r, "bad literal");
        return NULL;
    }
    default: {
        double d;
        if (number(r, &d) != 0)
            return NULL;
        v = node(TJ_NUMBER);
        if (v)
            v->number = d;
        return v;
    }
    }
}

struct tj *tj_parse(const char *text, char *err, size_t errsize)
{
    char dummy[8];
    struct reader r = {text, text, err ? err : dummy, err ? errsize : sizeof(dummy), false};
    r.err[0] = '\0';
    struct tj *v = value(&r, 0);
    if (v) {
        ws(&r);
        if (*r.p != '\0') {
            fail(&r, "text after the value");
            tj_free(v);
            v = NULL;
        }
    }
    return v;
}

void tj_free(struct tj *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++)
        tj_free(v->items[i]);
    free(v->items);
    free(v->string);
    free(v->key);
    free(v);
}

const struct tj *tj_get(const struct tj *v, const char *key)
{
    if (!v || v->type != TJ_OBJECT)
        return NULL;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->items[i]->key, key) == 0)
            return v->items[i];
    return NULL;
}

const struct tj *tj_path(const struct tj *v, const char *path)
{
    char step[128];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(step))
            return NULL;
        memcpy(step, path, n);
        step[n] = '\0';
        v = tj_get(v, step);
        path += n + (path[n] == '.');
    }
    return v;
}

const char *tj_str(const struct tj *v, const char *path)
{
    const struct tj *m = tj_path(v, path);
    return m && m->type == TJ_STRING ? m->string : NULL;
}

int tj_num(const struct tj *v, const char *path, double *out)
{
    const struct tj *m = tj_path(v, path);
    if (!m || m->type != TJ_NUMBER)
        return -1;
    *out = m->number;
    return 0;
}

bool tj_is_null(const struct tj *v, const char *path)
{
    const struct tj *m = tj_path(v, path);
    return m && m->type == TJ_NULL;
}
