/*
 * sticky.c — the cookie of `sticky = cookie NAME`: which origin a request's names, and the
 * Set-Cookie that names the one that answered. See sticky.h.
 */
#include "portico/sticky.h"

#include <string.h>
#include <strings.h>

#include "portico/cookie.h"
#include "portico/util.h"

static const char *const outcome_names[] = {
#define X(id, name) [id] = name,
    STICKY_OUTCOME_LIST(X)
#undef X
};

const char *sticky_outcome_name(enum sticky_outcome s)
{
    return (unsigned)s < ARRAY_LEN(outcome_names) ? outcome_names[s] : "";
}

int sticky_origin_of(const struct upstream_conf *up, const struct h1_field *fields, size_t n)
{
    for (int i = h1_find(fields, n, H1_F_COOKIE, 0); i >= 0;
         i = h1_find(fields, n, H1_F_COOKIE, (size_t)i + 1)) {
        size_t at = 0, len;
        const char *v;
        if (!cookie_next(fields[i].value, fields[i].value_len, up->sticky.name,
                         up->sticky.name_len, &at, &v, &len))
            continue;
        for (int o = 0; o < up->norigins; o++)
            if (strlen(up->origins[o].cookie) == len && memcmp(up->origins[o].cookie, v, len) == 0)
                return o;
        return -1; /* the first of its name decides, as for $cookie_NAME */
    }
    return -1;
}

bool sticky_same(const struct upstream_conf *up, int a, int b)
{
    return strcmp(up->origins[a].cookie, up->origins[b].cookie) == 0;
}

size_t sticky_set_cookie(const struct upstream_conf *up, int origin, char *buf, size_t size)
{
    /* four copies, not snprintf: a client's first response pays it (~700 instructions) */
    const char *parts[] = {up->sticky.name, "=", up->origins[origin].cookie, up->sticky.attrs};
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_LEN(parts) && size; i++) {
        size_t len = MIN(strlen(parts[i]), size - 1 - n);
        memcpy(buf + n, parts[i], len);
        n += len;
    }
    if (size)
        buf[n] = '\0';
    return n;
}

/* Whether a Cache-Control value lists directive `d` (any case, with or without an argument). */
static bool lists_directive(const char *v, size_t n, const char *d)
{
    size_t dlen = strlen(d), pos = 0;
    const char *item;
    size_t len;
    while (h1_list_next(v, n, &pos, &item, &len)) {
        if (len >= dlen && strncasecmp(item, d, dlen) == 0 &&
            (len == dlen || item[dlen] == '=' || item[dlen] == ' '))
            return true;
    }
    return false;
}

bool sticky_needs_private(const struct h1_field *fields, size_t n)
{
    for (int i = h1_find_field(fields, n, "cache-control", 0); i >= 0;
         i = h1_find_field(fields, n, "cache-control", (size_t)i + 1))
        if (lists_directive(fields[i].value, fields[i].value_len, "private") ||
            lists_directive(fields[i].value, fields[i].value_len, "no-store"))
            return false;
    return true;
}
