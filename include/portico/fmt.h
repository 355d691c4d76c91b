/*
 * fmt.h — appending text into a caller's fixed buffer without printf: numbers, RFC 3339 times,
 * and strings escaped for JSON (RFC 8259) or quoted for key=value lines. Used where a line is
 * built per request (the access log), so nothing here allocates, locks or parses a format.
 *
 * A piece that does not fit is left out whole and `overflow` is set: the buffer never holds
 * half a number or an unterminated string.
 */
#ifndef PORTICO_FMT_H
#define PORTICO_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fmt_buf {
    char *p;                           /* borrowed storage */
    size_t len;                        /* bytes written */
    size_t cap;                        /* size of p */
    bool overflow;                     /* something was left out for lack of room */
};

/* Starts an empty buffer over p[cap]. */
static inline void fmt_init(struct fmt_buf *b, char *p, size_t cap)
{
    b->p = p;
    b->len = 0;
    b->cap = cap;
    b->overflow = false;
}

/* Appends n bytes, or nothing (overflow) when they do not all fit. Inline: most pieces are
 * short literals, copied by a few moves instead of a call. */
static inline void fmt_put(struct fmt_buf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* Appends a NUL-terminated string (all or nothing). */
void fmt_str(struct fmt_buf *b, const char *s);

/* Appends one byte. */
static inline void fmt_char(struct fmt_buf *b, char c)
{
    if (b->len == b->cap) {
        b->overflow = true;
        return;
    }
    b->p[b->len++] = c;
}

/* Appends v in decimal. */
void fmt_u64(struct fmt_buf *b, uint64_t v);

/* "00".."ff", the two lowercase hex digits of each byte value (fmt_hex's table). */
extern const char fmt_hex_pairs[256][2];

/* Writes the low `bytes` bytes of v (at most 8) as 2 * bytes lowercase hex digits, most
 * significant first, at out (no NUL, no bounds: the caller's field has the room). Per request
 * for trace and request ids, so one table read per byte instead of one per digit; inline, as
 * every caller's count is a constant: the loop is unrolled there (~4 instructions a byte,
 * not 8). */
static inline void fmt_hex(char *out, uint64_t v, unsigned bytes)
{
#pragma GCC unroll 8
    for (unsigned i = bytes; i-- > 0; v >>= 8)
        memcpy(out + 2 * i, fmt_hex_pairs[v & 0xff], 2);
}

/* Appends a duration in µs as milliseconds with three decimals: 1234567 → "1234.567". */
void fmt_ms3(struct fmt_buf *b, uint64_t us);

/* Appends a wall-clock time (ms since the epoch) as RFC 3339 UTC with milliseconds:
 * "2026-11-25T00:28:50.248Z". The date part is cached per thread for the current second. */
void fmt_time(struct fmt_buf *b, uint64_t wall_ms);

/* Appends s[n] as a JSON string with its quotes. Quote and backslash are escaped, control bytes
 * and DEL become \u00XX, valid UTF-8 is copied, and every byte of an invalid UTF-8 sequence
 * becomes \u00XX (so the line is valid JSON whatever the bytes). At most max bytes go between
 * the quotes: a longer value is cut before the escape or character that would pass it. */
void fmt_json_str(struct fmt_buf *b, const char *s, size_t n, size_t max);

/* Appends s[n] between double quotes for a key=value line: quote and backslash escaped,
 * control bytes and DEL dropped (nothing in a value may start a second line), at most max
 * bytes between the quotes. */
void fmt_quoted(struct fmt_buf *b, const char *s, size_t n, size_t max);

/* Length of the valid UTF-8 sequence (RFC 3629: no overlongs, surrogates or code points past
 * U+10FFFF) that starts s[n], or 0 when none does. ASCII counts as a sequence of 1. */
size_t fmt_utf8_len(const unsigned char *s, size_t n);

#endif
