/*
 * retry_on.c — the statuses of `retry_on` (retry_on.h): parsing a list into its bit mask, and
 * the tests the exchange makes on an origin's final status.
 */
#include "portico/retry_on.h"

#include <stdio.h>
#include <string.h>

#include "portico/util.h"

struct retry_on_code {
    int status;
    bool counts; /* toward max_fails */
};

static const struct retry_on_code codes[] = {
#define X(code, counts) {code, counts},
    RETRY_ON_LIST(X)
#undef X
};
_Static_assert(sizeof(codes) / sizeof(codes[0]) <= 16, "a mask is 16 bits");

/* The bit of status in a mask, or -1 when retry_on cannot name it. */
static int bit_of(int status)
{
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i].status == status)
            return (int)i;
    return -1;
}

int retry_on_next_code(const char **cursor, const char *allowed, int *status, char *why,
                       size_t size)
{
    const char *p = *cursor + strspn(*cursor, " \t");
    if (!*p)
        return 0;
    size_t len = strcspn(p, " \t");
    int code = 0;
    bool digits = len == 3;
    for (size_t i = 0; digits && i < len; i++) {
        digits = p[i] >= '0' && p[i] <= '9';
        code = code * 10 + (p[i] - '0');
    }
    if (!digits || code < 100) {
        snprintf(why, size, "'%.*s' is not a status code (one of %s)", (int)MIN(len, 64), p,
                 allowed);
        return -1;
    }
    *status = code;
    *cursor = p + len;
    return 1;
}

int retry_on_parse(const char *text, uint16_t *mask, char *why, size_t size)
{
    uint16_t m = 0;
    int status, more;
    while ((more = retry_on_next_code(&text, RETRY_ON_ALLOWED, &status, why, size)) > 0) {
        if (status < 400) {
            snprintf(why, size, "%d is not an error status: 1xx-3xx are never retried (one of %s)",
                     status, RETRY_ON_ALLOWED);
            return -1;
        }
        int bit = bit_of(status);
        if (bit < 0) {
            snprintf(why, size, "%d cannot be retried on (one of %s)", status, RETRY_ON_ALLOWED);
            return -1;
        }
        if (m & (1u << bit)) {
            snprintf(why, size, "%d is listed twice", status);
            return -1;
        }
        m |= (uint16_t)(1u << bit);
    }
    if (more < 0)
        return -1;
    *mask = m;
    return 0;
}

uint16_t retry_on_bit(int status)
{
    int bit = bit_of(status);
    return bit >= 0 ? (uint16_t)(1u << bit) : 0;
}

bool retry_on_listed(uint16_t mask, int status)
{
    int bit = bit_of(status);
    return bit >= 0 && (mask & (1u << bit));
}

bool retry_on_counts(int status)
{
    int bit = bit_of(status);
    return bit >= 0 && codes[bit].counts;
}

const char *retry_on_text(uint16_t mask, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (mask & (1u << i))
            len = buf_appendf(buf, size, len, "%s%d", len ? " " : "", codes[i].status);
    return buf;
}
