/* minihttp.h — the few HTTP/1.1 head helpers the two bench tools (sink.c, pace.c) share.
 * Bench-only code, not part of Portico: heads are found and fields looked up, nothing more;
 * whatever these cannot read is counted by the tools as a bad head, never guessed at.
 */
#ifndef BENCH_MINIHTTP_H
#define BENCH_MINIHTTP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Length of the head (up to and with the blank line) at the start of buf, or 0 if incomplete. */
static inline size_t mh_head_len(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    return end ? (size_t)(end - buf) + 4 : 0;
}

/* The value of the first field called name in a complete head, trimmed; NULL if absent. */
static inline const char *mh_field(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', len);   /* skip the start line */
    const char *end = head + len;

    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* Content-Length of a complete head: the value, -1 if absent, -2 if not a plain number. */
static inline int64_t mh_content_length(const char *head, size_t len)
{
    size_t vlen = 0;
    const char *v = mh_field(head, len, "Content-Length", &vlen);
    int64_t n = 0;

    if (!v)
        return -1;
    if (vlen == 0 || vlen > 15)
        return -2;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -2;
        n = n * 10 + (v[i] - '0');
    }
    return n;
}

/* Does field name hold token (case-insensitively, anywhere in a comma list)? */
static inline int mh_field_has(const char *head, size_t len, const char *name, const char *token)
{
    size_t vlen = 0, tlen = strlen(token);
    const char *v = mh_field(head, len, name, &vlen);

    for (size_t i = 0; v && i + tlen <= vlen; i++)
        if (strncasecmp(v + i, token, tlen) == 0)
            return 1;
    return 0;
}

static inline double mh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
