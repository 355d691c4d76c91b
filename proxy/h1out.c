/*
 * h1out.c — responses Portico composes itself. See h1out.h.
 *
 * All or nothing: each writer measures the whole text first, reserves that much contiguous
 * space with evbuffer_reserve_space (the only step that can fail on memory), copies the pieces
 * into it and commits it. evbuffer_expand + evbuffer_add would not do: evbuffer_add ignores the
 * expanded space when the last chain with data is a read-only reference and allocates again.
 * A half-written head would desynchronise the connection for good; a refused one leaves the
 * caller free to answer otherwise (h1out_fallback) or to close.
 */
#include "portico/h1out.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "portico/status.h"

#define STATUS_PREFIX_LEN 13 /* "HTTP/1.1 NNN " */

static const char fallback_text[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                    "Content-Length: 0\r\n"
                                    "Connection: close\r\n"
                                    "\r\n";

/* Header-safe text: no control characters but HTAB (RFC 9110 5.5 field values, 15 reason
 * phrases); obs-text (0x80-0xff) passes, as the parser lets it through from origins. */
static bool safe_text(const char *s, size_t len)
{
    /* Eight bytes a step while no byte of a word is below 0x20 or DEL (tests exact for "some
     * byte is"): an error page's registry phrase ("Service Unavailable") took ~250
     * instructions byte by byte. A word with one goes byte by byte (HTAB passes). */
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t w, del;
        memcpy(&w, s + i, sizeof(w));
        del = w ^ (ones * 0x7f);
        if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs)
            break;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Header lines as given: each ends in CRLF, no bare CR or LF, no empty line (which would end
 * the head early). */
static bool safe_fields(const char *f)
{
    size_t len = strlen(f);
    if (len == 0)
        return true;
    if (len < 3 || f[len - 2] != '\r' || f[len - 1] != '\n')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)f[i];
        if (c == '\r') {
            if (f[i + 1] != '\n' || i == 0 || f[i - 1] == '\n')
                return false;
            i++;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

bool h1out_status_has_content(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

bool h1out_status_takes_content(int status)
{
    return h1out_status_has_content(status) && status != 205;
}

/* The status line's pieces: prefix "HTTP/1.1 NNN " into pre, the phrase resolved. */
static int status_parts(int status, const char **phrase, size_t *len, char pre[STATUS_PREFIX_LEN])
{
    if (status < 100 || status > 999)
        return -1;
    if (*phrase == NULL || *len == 0) { /* the registry's phrases are ours: no check */
        *phrase = status_phrase(status);
        *len = strlen(*phrase);
    } else if (!safe_text(*phrase, *len)) {
        return -1;
    }
    memcpy(pre, "HTTP/1.1 ", 9);
    pre[9] = (char)('0' + status / 100);
    pre[10] = (char)('0' + status / 10 % 10);
    pre[11] = (char)('0' + status % 10);
    pre[12] = ' ';
    return 0;
}

/* A run of bytes of the text being written. */
struct piece {
    const void *p;
    size_t len;
};

/* Writes pieces into space reserved for their total: all of them, or nothing. */
static int put_pieces(struct evbuffer *out, const struct piece *pieces, size_t n)
{
    struct evbuffer_iovec v;
    size_t total = 0;
    char *at;

    for (size_t i = 0; i < n; i++)
        total += pieces[i].len;
    if (total == 0)
        return 0;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) != 1 || v.iov_len < total)
        return -1;
    at = v.iov_base;
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].len > 0) /* an absent body is NULL, which memcpy must not see */
            memcpy(at, pieces[i].p, pieces[i].len);
        at += pieces[i].len;
    }
    v.iov_len = total;
    return evbuffer_commit_space(out, &v, 1);
}

int h1out_status_line(struct evbuffer *out, int status, const char *phrase, size_t len)
{
    char pre[STATUS_PREFIX_LEN];
    if (status_parts(status, &phrase, &len, pre) < 0)
        return -1;
    const struct piece pieces[] = { { pre, STATUS_PREFIX_LEN }, { phrase, len }, { "\r\n", 2 } };
    return put_pieces(out, pieces, sizeof(pieces) / sizeof(pieces[0]));
}

size_t h1out_status_text(char *buf, size_t size, int status, const char *phrase, size_t len)
{
    char pre[STATUS_PREFIX_LEN];
    if (status_parts(status, &phrase, &len, pre) < 0 || size < STATUS_PREFIX_LEN + 2 ||
        len > size - STATUS_PREFIX_LEN - 2)
        return 0;
    memcpy(buf, pre, STATUS_PREFIX_LEN);
    memcpy(buf + STATUS_PREFIX_LEN, phrase, len);
    memcpy(buf + STATUS_PREFIX_LEN + len, "\r\n", 2);
    return STATUS_PREFIX_LEN + len + 2;
}

/* The parts of a head after the fields, measured and then written with the same code. */
struct head_tail {
    char text[160];    /* Content-Type, framing, Connection, empty line */
    size_t len;
};

static int head_tail(const struct h1out_head *h, int64_t length, struct head_tail *t)
{
    static const char *const conn_line[] = {
        [H1OUT_CONN_DEFAULT] = "",
        [H1OUT_CONN_CLOSE] = "Connection: close\r\n",
        [H1OUT_CONN_KEEP_ALIVE] = "Connection: keep-alive\r\n",
    };
    char framing[64] = "";
    const char *type = "";
    int n;

    if ((unsigned)h->connection >= sizeof(conn_line) / sizeof(conn_line[0]))
        return -1;
    if (h1out_status_has_content(h->status)) {
        if (length == H1OUT_CHUNKED)
            snprintf(framing, sizeof(framing), "Transfer-Encoding: chunked\r\n");
        else if (length == H1OUT_UNTIL_CLOSE)
            framing[0] = '\0'; /* the close ends it */
        else if (length >= 0)
            snprintf(framing, sizeof(framing), "Content-Length: %" PRId64 "\r\n", length);
        else
            return -1;
        if (h->content_type != NULL)
            type = h->content_type;
    }
    if (!safe_text(type, strlen(type)))
        return -1;
    n = snprintf(t->text, sizeof(t->text), "%s%s%s%s%s\r\n", *type ? "Content-Type: " : "", type,
                 *type ? "\r\n" : "", framing, conn_line[h->connection]);
    if (n < 0 || (size_t)n >= sizeof(t->text))
        return -1;
    t->len = (size_t)n;
    return 0;
}

/* The head, followed by body[0..blen) in the same reservation. */
static int write_head(struct evbuffer *out, const struct h1out_head *h, int64_t length,
                      const void *body, size_t blen)
{
    char pre[STATUS_PREFIX_LEN];
    const char *phrase = h->phrase;
    size_t plen = phrase != NULL ? strlen(phrase) : 0;
    const char *fields = h->fields != NULL ? h->fields : "";
    size_t flen = strlen(fields);
    struct head_tail tail;

    if (status_parts(h->status, &phrase, &plen, pre) < 0 || !safe_fields(fields) ||
        head_tail(h, length, &tail) < 0)
        return -1;
    const struct piece pieces[] = {
        { pre, STATUS_PREFIX_LEN }, { phrase, plen },   { "\r\n", 2 },
        { fields, flen },           { tail.text, tail.len }, { body, blen },
    };
    return put_pieces(out, pieces, sizeof(pieces) / sizeof(pieces[0]));
}

int h1out_head(struct evbuffer *out, const struct h1out_head *h, int64_t length)
{
    return write_head(out, h, length, NULL, 0);
}

int h1out_simple(struct evbuffer *out, const struct h1out_head *h, const void *body, size_t len,
                 enum h1out_payload payload)
{
    bool send = payload == H1OUT_PAYLOAD_SEND && h1out_status_has_content(h->status);
    if (len > INT64_MAX)
        return -1;
    return write_head(out, h, (int64_t)len, body, send ? len : 0);
}

int h1out_simple_buf(struct evbuffer *out, const struct h1out_head *h, struct evbuffer *body,
                     enum h1out_payload payload)
{
    size_t len = evbuffer_get_length(body);
    if (write_head(out, h, (int64_t)len, NULL, 0) < 0)
        return -1;
    /* moving chains allocates nothing; it fails only on a frozen buffer, which no caller uses */
    if (payload == H1OUT_PAYLOAD_SEND && h1out_status_has_content(h->status))
        evbuffer_add_buffer(out, body);
    return 0;
}

/* An empty chain with room for the fallback stays at the end of out: a later reservation of
 * at most that size finds it and allocates nothing. */
int h1out_fallback_reserve(struct evbuffer *out)
{
    return evbuffer_expand(out, sizeof(fallback_text) - 1);
}

int h1out_fallback(struct evbuffer *out)
{
    const struct piece piece = { fallback_text, sizeof(fallback_text) - 1 };
    return put_pieces(out, &piece, 1);
}
