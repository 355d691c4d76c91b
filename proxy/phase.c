/*
 * phase.c — the phase machine as data. See phase.h.
 */
#include "portico/phase.h"

#include <stdio.h>
#include <string.h>

#include "portico/fmt.h"
#include "portico/util.h"

struct phase_row {
    enum timer_kind timer;
    enum phase_subject subject;
    const char *timeout_fmt;
};

static const struct phase_row phase_rows[PHASE_COUNT] = {
#define X(id, name, tm, subj, fmt) [id] = {tm, subj, fmt},
    PHASE_LIST(X)
#undef X
};

void phase_enter(struct phase_clock *pc, enum phase p, uint64_t now)
{
    phase_close(pc, now);
    pc->current = p;
    pc->start[p] = now;
    pc->end[p] = 0;
}

void phase_resume(struct phase_clock *pc, enum phase p, uint64_t now)
{
    phase_close(pc, now);
    /* p's span covers what came after it since (a 1xx head read): reported once, as p, or the
     * phases would add up to more than the exchange lasted */
    for (int q = (int)p + 1; q < PHASE_COUNT; q++)
        pc->start[q] = pc->end[q] = 0;
    pc->current = p;
    if (!pc->start[p])
        pc->start[p] = now;
    pc->end[p] = 0;
}

/* The current attempt's run of p, up to now if it is still open. */
static uint64_t run_us(const struct phase_clock *pc, enum phase p, uint64_t now)
{
    if (!pc->start[p])
        return 0;
    uint64_t end = pc->end[p] ? pc->end[p] : now;
    return end > pc->start[p] ? end - pc->start[p] : 0;
}

/* Where an abandoned attempt's run of each phase is kept: its own, but read's (a retry_on
 * status's head, a head cut by a reset) is no part of the response relayed, whose `body` is
 * its own attempt's only; the client was still waiting for that response's first byte. */
static const enum phase kept_as[PHASE_COUNT] = {
    [PHASE_DNS] = PHASE_DNS,     [PHASE_CONNECT] = PHASE_CONNECT,
    [PHASE_TLS] = PHASE_TLS,     [PHASE_SEND] = PHASE_SEND,
    [PHASE_FIRST_BYTE] = PHASE_FIRST_BYTE, [PHASE_READ] = PHASE_FIRST_BYTE,
};

void phase_next_attempt(struct phase_clock *pc, uint64_t now)
{
    phase_close(pc, now);
    for (int p = PHASE_DNS; p <= PHASE_READ; p++) {
        if (!pc->start[p])
            continue;
        enum phase to = kept_as[p];
        pc->before[to] += run_us(pc, (enum phase)p, now);
        pc->walked |= 1u << to;
        pc->start[p] = pc->end[p] = 0;
    }
}

void phase_close(struct phase_clock *pc, uint64_t now)
{
    enum phase c = pc->current;
    if (pc->start[c] && !pc->end[c])
        pc->end[c] = now > pc->start[c] ? now : pc->start[c];
}

uint64_t phase_elapsed_us(const struct phase_clock *pc, enum phase p, uint64_t now)
{
    return pc->before[p] + run_us(pc, p, now);
}

size_t phase_timings(const struct phase_clock *pc, uint64_t now, struct phase_timing *out,
                     size_t max)
{
    size_t n = 0;
    if (pc->start[PHASE_QUEUE] && n < max) /* the queue, rarely walked, outside the loop */
        out[n++] = (struct phase_timing){PHASE_QUEUE, phase_elapsed_us(pc, PHASE_QUEUE, now)};
    for (int p = PHASE_DNS; p <= PHASE_READ && n < max; p++)
        if (pc->start[p] || (pc->walked & 1u << p))
            out[n++] = (struct phase_timing){(enum phase)p, phase_elapsed_us(pc, p, now)};
    return n;
}

enum timer_kind phase_timer(enum phase p)
{
    return (unsigned)p < PHASE_COUNT ? phase_rows[p].timer : TIMER_NONE;
}

enum phase_subject phase_subject(enum phase p)
{
    return (unsigned)p < PHASE_COUNT ? phase_rows[p].subject : SUBJECT_NONE;
}

uint64_t phase_limit_ms(const uint64_t *timers_ms, enum phase p)
{
    enum timer_kind t = phase_timer(p);
    return t == TIMER_NONE ? 0 : timers_ms[t];
}

size_t phase_timeout_detail(enum phase p, const char *subject, uint64_t limit_ms, char *buf,
                            size_t size)
{
    const char *fmt = (unsigned)p < PHASE_COUNT ? phase_rows[p].timeout_fmt : NULL;
    if (!fmt)
        return buf_appendf(buf, size, 0, "%s timed out after %llu ms", phase_name(p),
                           (unsigned long long)limit_ms);
    int n = snprintf(buf, size, fmt, subject ? subject : "-", (unsigned long long)limit_ms);
    return n < 0 ? 0 : MIN((size_t)n, size ? size - 1 : 0);
}

enum phase phase_of_io_failure(enum phase current, bool request_sent, bool response_byte)
{
    if (current == PHASE_SEND && request_sent)
        return PHASE_FIRST_BYTE;
    if (current == PHASE_FIRST_BYTE && response_byte)
        return PHASE_READ; /* after a 1xx: the response began, its final head is incomplete */
    if (current == PHASE_SEND || current == PHASE_FIRST_BYTE || current == PHASE_READ)
        return current;
    return response_byte ? PHASE_READ : PHASE_SEND;
}

uint64_t phase_first_byte_deadline(uint64_t deadline, uint64_t now, uint64_t limit_ms,
                                   bool interim_resets)
{
    if (interim_resets || !deadline)
        return now + limit_ms * 1000;
    return deadline;
}

size_t phase_server_timing(const struct phase_clock *pc, uint64_t now, enum phase failed,
                           enum cause cause, char *buf, size_t size)
{
    /* The same list the access log reports, plus route when it is the phase that failed. */
    struct phase_timing t[PHASE_COUNT];
    size_t n = 0, len = 0;
    if (failed == PHASE_ROUTE && pc->start[PHASE_ROUTE])
        t[n++] = (struct phase_timing){PHASE_ROUTE, phase_elapsed_us(pc, PHASE_ROUTE, now)};
    n += phase_timings(pc, now, t + n, PHASE_COUNT - n);
    /* Built without printf (it goes on every error response), whole in tmp, then cut to size. */
    char tmp[PHASE_COUNT * 80];
    struct fmt_buf b;
    fmt_init(&b, tmp, sizeof(tmp));
    for (size_t i = 0; i < n; i++) {
        uint64_t tenths = (t[i].us + 50) / 100; /* of a ms */
        if (i)
            fmt_put(&b, ", ", 2);
        fmt_str(&b, phase_name(t[i].phase));
        fmt_put(&b, ";dur=", 5);
        fmt_u64(&b, tenths / 10);
        fmt_char(&b, '.');
        fmt_char(&b, (char)('0' + tenths % 10));
        if (t[i].phase == failed) {
            fmt_put(&b, ";desc=\"", 7);
            fmt_str(&b, cause_name(cause));
            fmt_char(&b, '"');
        }
    }
    if (size == 0)
        return 0;
    len = MIN(b.len, size - 1);
    memcpy(buf, tmp, len);
    buf[len] = '\0';
    return len;
}
