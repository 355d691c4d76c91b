/*
 * fuzz_h2_request.c — libFuzzer target: HTTP/2 request fields to an HTTP/1.1 head
 * (h2_request_field, h2_request_finish), then Portico's HTTP/1.1 parser on that head.
 *
 * Input: a mode byte (the builder's limit), then names and values in turn, each ended by 0xFF
 * (a byte no field may hold in a way that matters: it stays a plain non-ASCII byte), so that CR,
 * LF and NUL can reach the builder. Properties checked: the builder's answers are the documented
 * ones; a built head has exactly one CRLF-ended line per field, no NUL, no bare CR or LF, so no
 * field can inject another; when the HTTP/1.1 parser accepts it, it parses whole, with the
 * method, target and fields the builder was given, in order.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/h2_request.h"
#include "portico/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

#define SEP 0xFF
#define MAX_IN_FIELDS 256

struct in_field {
    const char *name, *value;
    size_t name_len, value_len;
};

static bool lit_eq(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static const struct in_field *find(const struct in_field *f, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (lit_eq(f[i].name, f[i].name_len, name))
            return &f[i];
    return NULL;
}

static bool span_is(const char *p, size_t n, const char *q, size_t m)
{
    return n == m && (n == 0 || memcmp(p, q, n) == 0);
}

/* The builder's head against what it was fed (every field accepted, so each is well formed). */
static void check_head(const char *head, size_t len, const struct in_field *f, size_t nf)
{
    const struct in_field *method = find(f, nf, ":method"), *path = find(f, nf, ":path");
    const struct in_field *auth = find(f, nf, ":authority"), *host = find(f, nf, "host");
    const struct in_field *target = path ? path : auth;
    size_t regular = 0, cookies = 0;
    for (size_t i = 0; i < nf; i++) {
        if (f[i].name_len && f[i].name[0] == ':')
            continue;
        if (lit_eq(f[i].name, f[i].name_len, "cookie"))
            cookies += f[i].value_len > 0; /* empty crumbs add nothing */
        else if (!lit_eq(f[i].name, f[i].name_len, "host"))
            regular++;
    }
    size_t lines = 1 + (auth || host) + regular + (cookies > 0) + 1;

    /* No NUL, every CR starts a CRLF, every LF ends one: one line per field, nothing injected. */
    CHECK(method != NULL && target != NULL);
    CHECK(len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0);
    size_t crlf = 0;
    for (size_t i = 0; i < len; i++) {
        CHECK(head[i] != '\0');
        if (head[i] == '\r') {
            CHECK(i + 1 < len && head[i + 1] == '\n');
            crlf++;
        } else if (head[i] == '\n') {
            CHECK(i > 0 && head[i - 1] == '\r');
        }
    }
    CHECK(crlf == lines);

    /* Portico's own parser may refuse it (it is stricter on control bytes), never half-take it. */
    char *buf = dup_exact(head, len);
    struct h1_limits lim = {.max_request_line = len + 1, .max_head = len + 1};
    struct h1_request req;
    struct h1_error err = {0};
    int r = h1_parse_request(buf, len, &lim, &req, &err);
    CHECK(r != -2);
    if (r == -1) {
        CHECK(err.status == 400 || err.status == 431 || err.status == 505);
        free(buf);
        return;
    }
    CHECK((size_t)r == len);
    check_fields(buf, r, req.fields, req.nfields);
    CHECK(req.nfields == lines - 2);
    CHECK(span_is(req.method, req.method_len, method->value, method->value_len));
    CHECK(span_is(req.target, req.target_len, target->value, target->value_len));
    CHECK(req.minor == 1);
    size_t k = 0;
    if (auth || host) {
        const struct in_field *h = auth ? auth : host;
        CHECK(lit_eq(req.fields[k].name, req.fields[k].name_len, "Host"));
        CHECK(span_is(req.fields[k].value, req.fields[k].value_len, h->value, h->value_len));
        k++;
    }
    for (size_t i = 0; i < nf; i++) {
        if ((f[i].name_len && f[i].name[0] == ':') || lit_eq(f[i].name, f[i].name_len, "host") ||
            lit_eq(f[i].name, f[i].name_len, "cookie"))
            continue;
        CHECK(span_is(req.fields[k].name, req.fields[k].name_len, f[i].name, f[i].name_len));
        CHECK(span_is(req.fields[k].value, req.fields[k].value_len, f[i].value, f[i].value_len));
        k++;
    }
    if (cookies)
        CHECK(lit_eq(req.fields[k].name, req.fields[k].name_len, "cookie"));
    struct h1_info info;
    if (h1_request_info(&req, &info, &err) != 0)
        CHECK((err.status == 400 || err.status == 501) && err.reason != NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t limits[4] = {16384, 256, 64, 4096};
    size_t limit = limits[data[0] & 3];
    const char *in = (const char *)data + 1, *end = (const char *)data + size;

    /* Split into name, value, name, value ...; a trailing name without a value is dropped. */
    struct in_field f[MAX_IN_FIELDS];
    size_t nf = 0, fed = 0;
    const char *p = in;
    while (nf < MAX_IN_FIELDS && p < end) {
        const char *a = memchr(p, SEP, (size_t)(end - p));
        if (!a)
            break;
        const char *v = a + 1;
        const char *b = memchr(v, SEP, (size_t)(end - v));
        if (!b)
            break;
        f[nf++] = (struct in_field){p, v, (size_t)(a - p), (size_t)(b - v)};
        p = b + 1;
    }

    struct h2_request r;
    h2_request_init(&r, limit);
    int rc = 0;
    for (size_t i = 0; i < nf && rc == 0; i++) {
        char *name = dup_exact(f[i].name, f[i].name_len);
        char *value = dup_exact(f[i].value, f[i].value_len);
        rc = h2_request_field(&r, name, f[i].name_len, value, f[i].value_len);
        free(name);
        free(value);
        CHECK(rc == 0 || rc == 1 || rc == -1);
        CHECK(rc != -1 || r.error != NULL);
        CHECK(rc != 1 || (r.too_large && r.decoded > H2_REQUEST_ABANDON_FACTOR * limit));
        fed++;
    }
    if (rc != 0) {
        h2_request_free(&r);
        return 0;
    }

    /* The request line, as the log sees it, comes from the fields given. */
    const char *m, *pa;
    size_t ml, pl;
    h2_request_line(&r, &m, &ml, &pa, &pl);
    const struct in_field *fm = find(f, fed, ":method"), *fp = find(f, fed, ":path");
    CHECK(m == NULL || (fm && span_is(m, ml, fm->value, fm->value_len)) || r.too_large);
    CHECK(pa == NULL || (fp && span_is(pa, pl, fp->value, fp->value_len)) || r.too_large);

    size_t total = 0;
    for (size_t i = 0; i < fed; i++)
        total += f[i].name_len + f[i].value_len + 4;
    char *head = NULL;
    size_t head_len = 0;
    int fin = h2_request_finish(&r, NULL, &head, &head_len);
    CHECK(fin == 0 || fin == -1 || fin == 431);
    CHECK(fin != 431 || total > limit);  /* nothing small is ever called too large */
    CHECK(fin != -1 || r.error != NULL);
    if (fin == 0) {
        CHECK(head != NULL);
        check_head(head, head_len, f, fed);
        free(head);
    }
    h2_request_free(&r);
    return 0;
}
