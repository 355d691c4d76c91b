/*
 * fuzz_realip.c — libFuzzer target: [proxy] real_ip's walk over a request's fields
 * (proxy/realip.c) against a reference that collects every element and walks them from the
 * right, as nginx's realip with real_ip_recursive on does.
 *
 * The first input byte picks the field real_ip names; the rest is field values split on 0xFF,
 * every third one under another name (never read). Properties checked: realip_find answers as
 * the reference does (none, the address, or not an address), over exact-size heap copies of the
 * values; each element parses alike in place and alone; none with a port above 65535 is an
 * address; an address found reads back the same from its text (realip_text, fault_addr_parse).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/fault.h"
#include "portico/http1.h"
#include "portico/realip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

#define MAX_FIELDS 16

static const char *const names[] = {
    [REAL_IP_X_FORWARDED_FOR] = "X-Forwarded-For", [REAL_IP_FORWARDED] = "Forwarded",
    [REAL_IP_X_REAL_IP] = "X-Real-IP", [REAL_IP_CF_CONNECTING_IP] = "CF-Connecting-IP",
    [REAL_IP_TRUE_CLIENT_IP] = "True-Client-IP"};

static bool same_addr(const struct fault_addr *a, const struct fault_addr *b)
{
    return a->v6 == b->v6 && memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

/* The reference's split of v: quoted[i] for each byte inside a quoted-string (Forwarded only)
 * that is closed; a quote never closed quotes nothing. A comma elsewhere ends an element. */
static void mark_quoted(const char *v, size_t n, bool forwarded, bool *quoted)
{
    memset(quoted, 0, n);
    for (size_t i = 0; forwarded && i < n; i++) {
        if (v[i] != '"')
            continue;
        size_t j = i + 1;
        while (j < n && v[j] != '"')
            j += v[j] == '\\' ? 2 : 1;
        if (j >= n)
            continue; /* never closed */
        for (size_t k = i; k <= j; k++)
            quoted[k] = true;
        i = j;
    }
}

/* Whether a bare element (not Forwarded's, OWS trimmed) names a port above 65535: the digits
 * after "]:", or after the only colon of an IPv4 form. Such an element is no address. */
static bool port_above_max(const char *e, size_t len)
{
    const char *digits = NULL;
    const char *close = memchr(e, ']', len);
    if (len > 0 && e[0] == '[') {
        if (close && (size_t)(close - e) + 1 < len && close[1] == ':')
            digits = close + 2;
    } else {
        const char *colon = memchr(e, ':', len);
        if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - e)))
            digits = colon + 1;
    }
    if (!digits || digits == e + len)
        return false;
    unsigned long v = 0;
    for (const char *p = digits; p < e + len; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v > 65535 ? v : v * 10 + (unsigned long)(*p - '0');
    }
    return v > 65535;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static struct fault_cidr trusted[2];
    static int ntrusted;
    if (!ntrusted) {
        char why[100];
        ntrusted = fault_cidr_list("127.0.0.0/24, ::1", trusted, 2, why, sizeof(why));
        CHECK(ntrusted == 2);
    }
    enum real_ip_field field = (enum real_ip_field)(1 + data[0] % 5);
    bool forwarded = field == REAL_IP_FORWARDED;
    const char *rest = (const char *)data + 1;
    size_t left = size - 1;

    struct h1_field fields[MAX_FIELDS];
    char *copies[MAX_FIELDS];
    size_t n = 0;
    while (n < MAX_FIELDS) {
        const char *end = memchr(rest, 0xff, left);
        size_t len = end ? (size_t)(end - rest) : left;
        copies[n] = dup_exact(rest, len);
        const char *name = n % 3 == 2 ? "Host" : names[field];
        fields[n] = (struct h1_field){.name = name, .name_len = strlen(name), .value = copies[n],
                                      .value_len = len};
        fields[n].id = h1_field_id_of(name, strlen(name));
        n++;
        if (!end)
            break;
        rest = end + 1;
        left -= len + 1;
    }

    /* the reference: every element, then from the right */
    size_t cap = 16, count = 0;
    struct element {
        bool ok;
        struct fault_addr a;
    } *all = malloc(cap * sizeof(*all));
    CHECK(all != NULL);
    for (size_t i = 0; i < n; i++) {
        if (i % 3 == 2)
            continue;
        const char *v = fields[i].value;
        size_t n_v = fields[i].value_len;
        bool *quoted = malloc(n_v + 1);
        CHECK(quoted != NULL);
        mark_quoted(v, n_v, forwarded, quoted);
        for (size_t start = 0; start < n_v;) {
            size_t end = start;
            while (end < n_v && (v[end] != ',' || quoted[end]))
                end++;
            const char *e = v + start;
            size_t len = end - start;
            start = end + 1;
            while (len > 0 && (*e == ' ' || *e == '\t'))
                e++, len--;
            while (len > 0 && (e[len - 1] == ' ' || e[len - 1] == '\t'))
                len--;
            if (len == 0)
                continue;
            if (count == cap) {
                cap *= 2;
                all = realloc(all, cap * sizeof(*all));
                CHECK(all != NULL);
            }
            struct element *el = &all[count++];
            el->ok = realip_element(e, len, forwarded, &el->a) == 0;
            char *alone = dup_exact(e, len);
            struct fault_addr b;
            bool ok = realip_element(alone, len, forwarded, &b) == 0;
            CHECK(ok == el->ok && (!ok || same_addr(&b, &el->a)));
            CHECK(!(ok && !forwarded && port_above_max(e, len)));
            free(alone);
        }
        free(quoted);
    }
    enum realip_result want = REALIP_NONE;
    struct fault_addr want_addr = {0};
    for (size_t i = count; i-- > 0;) {
        if (!all[i].ok) {
            want = REALIP_INVALID;
            break;
        }
        want = REALIP_FOUND;
        want_addr = all[i].a;
        if (!fault_cidr_contains(trusted, ntrusted, &all[i].a))
            break; /* else left on: a trusted element, or the left-most of them */
    }

    struct fault_addr got;
    enum realip_result r = realip_find(fields, n, field, trusted, ntrusted, &got);
    CHECK(r == want);
    if (r == REALIP_FOUND) {
        CHECK(same_addr(&got, &want_addr));
        char text[64];
        struct fault_addr back;
        CHECK(fault_addr_parse(realip_text(&got, text, sizeof(text)), &back) == 0);
        CHECK(same_addr(&back, &got));
    }
    free(all);
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    return 0;
}
