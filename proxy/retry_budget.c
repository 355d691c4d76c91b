/*
 * retry_budget.c — the arithmetic and the words of `retry_budget` and `retry_timeout`
 * (retry_budget.h).
 */
#include "portico/retry_budget.h"

#include <stdio.h>
#include <string.h>

unsigned retry_budget_limit(unsigned percent, unsigned min, unsigned in_flight)
{
    /* 64-bit: 100% of 2^32 requests does not wrap */
    uint64_t share = (uint64_t)in_flight * percent / 100;
    return share > min ? (unsigned)share : min;
}

int retry_budget_parse(const char *text, bool *on, uint8_t *percent, char *why, size_t size)
{
    if (strcmp(text, "off") == 0) {
        *on = false;
        *percent = 0;
        return 0;
    }
    unsigned v = 0;
    size_t digits = strspn(text, "0123456789");
    const char *rest = text + digits;
    bool whole = digits > 0 && digits <= 3 && (*rest == '\0' || strcmp(rest, "%") == 0);
    for (size_t i = 0; whole && i < digits; i++)
        v = v * 10 + (unsigned)(text[i] - '0');
    if (!whole || v > 100) {
        snprintf(why, size, "'%.40s' is not a whole percentage from 0%% to 100%% (or off)", text);
        return -1;
    }
    *on = true;
    *percent = (uint8_t)v;
    return 0;
}

const char *retry_budget_why(const struct retry_budget_use *u, char *buf, size_t size)
{
    snprintf(buf, size, "retry budget (%u of %u retries in flight; %u%% of %u requests)", u->held,
             u->limit, u->percent, u->in_flight);
    return buf;
}

const char *retry_timeout_why(uint64_t timeout_ms, char *buf, size_t size)
{
    if (timeout_ms % 1000 == 0)
        snprintf(buf, size, "retry_timeout %llu s passed", (unsigned long long)(timeout_ms / 1000));
    else
        snprintf(buf, size, "retry_timeout %llu ms passed", (unsigned long long)timeout_ms);
    return buf;
}
