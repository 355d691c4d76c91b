/*
 * fail_on.c — the statuses of `fail_on` (fail_on.h): a list parsed into its mask, each code
 * refused with why it may not count.
 */
#include "portico/fail_on.h"

#include <stdio.h>

#include "portico/retry_on.h"

/* Why a three-digit status outside the set may not count, by its range (first match). */
static const struct {
    int lo, hi;
    const char *why;
} refusals[] = {
    {100, 399, "is not an error status: 1xx-3xx never count"},
    {400, 499, "is the client's error, not the origin's: any client could mark origins down "
               "with it"},
    {501, 501, "answers the request's method, not the origin's health (as HAProxy's observe "
               "layer7 leaves it out)"},
    {505, 505, "answers the request's HTTP version, not the origin's health (as HAProxy's "
               "observe layer7 leaves it out)"},
    {100, 999, "cannot be counted"},
};

/* The mask bit of status when fail_on may name it, else 0 with the reason in why. */
static uint16_t bit_of(int status, char *why, size_t size)
{
    static const int allowed[] = {500, 502, 503, 504};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (allowed[i] == status)
            return retry_on_bit(status);
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        if (status >= refusals[i].lo && status <= refusals[i].hi) {
            snprintf(why, size, "%d %s (one of %s)", status, refusals[i].why, FAIL_ON_ALLOWED);
            break;
        }
    return 0;
}

int fail_on_parse(const char *text, uint16_t *mask, char *why, size_t size)
{
    uint16_t m = 0;
    int status, more;
    while ((more = retry_on_next_code(&text, FAIL_ON_ALLOWED, &status, why, size)) > 0) {
        uint16_t bit = bit_of(status, why, size);
        if (!bit)
            return -1;
        if (m & bit) {
            snprintf(why, size, "%d is listed twice", status);
            return -1;
        }
        m |= bit;
    }
    if (more < 0)
        return -1;
    *mask = m;
    return 0;
}
