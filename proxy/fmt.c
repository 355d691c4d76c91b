/*
 * fmt.c — printf-free appenders into fixed buffers. See fmt.h.
 */
#include "portico/fmt.h"

#include <string.h>
#include <time.h>

static inline size_t room(const struct fmt_buf *b)
{
    return b->cap - b->len;
}

void fmt_str(struct fmt_buf *b, const char *s)
{
    fmt_put(b, s, strlen(s));
}

/* Writes v in decimal at the end of tmp[20]; returns where the digits start. */
static char *digits(char tmp[20], uint64_t v)
{
    char *d = tmp + 20;
    do {
        *--d = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return d;
}

void fmt_u64(struct fmt_buf *b, uint64_t v)
{
    char tmp[20];
    char *d = digits(tmp, v);
    fmt_put(b, d, (size_t)(tmp + 20 - d));
}

/* "00".."ff" for each byte value, built by the preprocessor: no start-up work, nothing written. */
#define HEX1(b) (char)(((b) & 15) < 10 ? '0' + ((b) & 15) : 'a' - 10 + ((b) & 15))
#define HEX2(b) {HEX1((b) >> 4), HEX1(b)}
#define HEX2x4(b) HEX2(b), HEX2((b) + 1), HEX2((b) + 2), HEX2((b) + 3)
#define HEX2x16(b) HEX2x4(b), HEX2x4((b) + 4), HEX2x4((b) + 8), HEX2x4((b) + 12)
#define HEX2x64(b) HEX2x16(b), HEX2x16((b) + 16), HEX2x16((b) + 32), HEX2x16((b) + 48)

const char fmt_hex_pairs[256][2] = {HEX2x64(0), HEX2x64(64), HEX2x64(128), HEX2x64(192)};

void fmt_ms3(struct fmt_buf *b, uint64_t us)
{
    char tmp[24];
    char *d = digits(tmp, us / 1000);
    size_t n = (size_t)(tmp + 20 - d);
    unsigned frac = (unsigned)(us % 1000);
    d[n] = '.';
    d[n + 1] = (char)('0' + frac / 100);
    d[n + 2] = (char)('0' + frac / 10 % 10);
    d[n + 3] = (char)('0' + frac % 10);
    fmt_put(b, d, n + 4);
}

/* The date and time of one second, formatted once: a busy worker logs many lines per second. */
static _Thread_local struct {
    time_t sec;
    char text[20];                     /* "2026-11-25T00:28:50" */
} time_cache = {.sec = -1};

static void two(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

void fmt_time(struct fmt_buf *b, uint64_t wall_ms)
{
    time_t sec = (time_t)(wall_ms / 1000);
    if (sec != time_cache.sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        char *t = time_cache.text;
        int year = tm.tm_year + 1900;
        two(t, year / 100);
        two(t + 2, year % 100);
        t[4] = '-';
        two(t + 5, tm.tm_mon + 1);
        t[7] = '-';
        two(t + 8, tm.tm_mday);
        t[10] = 'T';
        two(t + 11, tm.tm_hour);
        t[13] = ':';
        two(t + 14, tm.tm_min);
        t[16] = ':';
        two(t + 17, tm.tm_sec);
        time_cache.sec = sec;
    }
    char out[24];
    memcpy(out, time_cache.text, 19);
    unsigned ms = (unsigned)(wall_ms % 1000);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    fmt_put(b, out, sizeof(out));
}

size_t fmt_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;    /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;                 /* no overlongs */
        else if (c == 0xed)
            hi = 0x9f;                 /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;                 /* no overlongs */
        else if (c == 0xf4)
            hi = 0x8f;                 /* nothing past U+10FFFF */
    } else {
        return 0;                      /* continuation byte, C0, C1, F5-FF */
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Bytes copied as they are inside a JSON string: printable ASCII except quote and backslash;
 * a table, because this test runs for every byte of every logged path and user agent. */
static const bool json_plain[256] = {
    [0x20 ... 0x21] = true, /* '"' is 0x22 */
    [0x23 ... 0x5b] = true, /* '\\' is 0x5c */
    [0x5d ... 0x7e] = true,
};

static const char hexdigits[] = "0123456789abcdef";

/* How many of the first 8 bytes at s are plain in a JSON string, found 8 at a time: with
 * one word of tests (exact for "some byte is below / above / equal to") instead of a lookup
 * and a branch per byte. The paths and user agents of a log line are mostly plain. */
static size_t plain_run8(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t run = 0;
    while (n - run >= 8) {
        uint64_t w;
        memcpy(&w, s + run, 8);
        uint64_t below_space = (w - ones * 0x20) & ~w;              /* a byte < 0x20 */
        uint64_t del_or_high = (w + ones) | w;                       /* a byte > 0x7e */
        uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
        uint64_t quote = (q - ones) & ~q, backslash = (bs - ones) & ~bs;
        if ((below_space | del_or_high | quote | backslash) & highs)
            break;
        run += 8;
    }
    return run;
}

void fmt_json_str(struct fmt_buf *b, const char *str, size_t n, size_t max)
{
    if (room(b) < 2) {
        b->overflow = true;
        return;
    }
    const unsigned char *s = (const unsigned char *)str;
    size_t limit = room(b) - 2;        /* the quotes are reserved first */
    if (max < limit)
        limit = max;
    char *o = b->p + b->len;
    size_t used = 0;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        /* The common case: a run of plain bytes, found first and copied at once. */
        size_t most = n - i < limit - used ? n - i : limit - used;
        size_t run = plain_run8(s + i, most);
        while (run < most && json_plain[s[i + run]])
            run++;
        memcpy(o + used, s + i, run);
        used += run;
        i += run;
        if (i == n || used == limit)
            break;                     /* done, or cut */
        unsigned char c = s[i];
        size_t seq = c >= 0x80 ? fmt_utf8_len(s + i, n - i) : 0;
        if (seq) {
            if (seq > limit - used)
                break;
            memcpy(o + used, s + i, seq);
            used += seq;
            i += seq;
        } else if (c == '"' || c == '\\') {
            if (2 > limit - used)
                break;
            o[used++] = '\\';
            o[used++] = (char)c;
            i++;
        } else {                       /* control byte, DEL, or a byte of invalid UTF-8 */
            if (6 > limit - used)
                break;
            memcpy(o + used, "\\u00", 4);
            o[used + 4] = hexdigits[c >> 4];
            o[used + 5] = hexdigits[c & 15];
            used += 6;
            i++;
        }
    }
    o[used] = '"';
    b->len += used + 2;
}

void fmt_quoted(struct fmt_buf *b, const char *str, size_t n, size_t max)
{
    if (room(b) < 2) {
        b->overflow = true;
        return;
    }
    const unsigned char *s = (const unsigned char *)str;
    size_t limit = room(b) - 2;
    if (max < limit)
        limit = max;
    char *o = b->p + b->len;
    size_t used = 0;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c == 0x7f)
            continue;
        size_t need = (c == '"' || c == '\\') ? 2 : 1;
        if (need > limit - used)
            break;
        if (need == 2)
            o[used++] = '\\';
        o[used++] = (char)c;
    }
    o[used] = '"';
    b->len += used + 2;
}
