/*
 * chunked.c — the chunked transfer coding decoder. See chunked.h.
 *
 * One byte-at-a-time state machine over framing bytes only: chunk data never passes through it
 * (the caller moves data_left bytes itself), so its cost is per chunk, not per body byte.
 */
#include "portico/chunked.h"

#include <stdbool.h>
#include <string.h>

#include "portico/http1.h"

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Reason for a byte that ends a line where it should not. */
static const char *bad_byte(unsigned char c, const char *otherwise)
{
    return c == '\n' ? "bare LF" : otherwise;
}

enum ck_state {
    CK_SIZE0,        /* first HEXDIG of chunk-size */
    CK_SIZE,         /* more HEXDIG, BWS, ";" or CR */
    CK_EXT_BWS,      /* BWS after the size or an extension: ";" must follow */
    CK_EXT_NAME0,    /* BWS, then the first byte of ext-name */
    CK_EXT_NAME,     /* ext-name, then BWS, "=", ";" or CR */
    CK_EXT_NAME_BWS, /* BWS after ext-name: "=" or ";" */
    CK_EXT_VAL0,     /* BWS, then a token or quoted-string */
    CK_EXT_TOKEN,    /* token ext-val */
    CK_EXT_QS,       /* inside a quoted-string ext-val */
    CK_EXT_QP,       /* after a backslash in a quoted-string */
    CK_EXT_QEND,     /* after the closing quote: BWS, ";" or CR */
    CK_SIZE_LF,      /* LF ending the chunk line */
    CK_DATA,         /* the caller takes data_left bytes */
    CK_DATA_CR,      /* CR after chunk data */
    CK_DATA_LF,      /* LF after chunk data */
    CK_TR_LINE,      /* start of a trailer field line or of the final CRLF */
    CK_TR_NAME,      /* trailer field name */
    CK_TR_VALUE,     /* trailer field value */
    CK_TR_LF,        /* LF ending a trailer field line */
    CK_END_LF,       /* LF of the final CRLF */
    CK_DONE,
    CK_ERROR,
};

void chunked_init(struct chunked_decoder *c, size_t max_trailers)
{
    memset(c, 0, sizeof *c);
    c->state = CK_SIZE0;
    c->max_line = CHUNKED_MAX_LINE;
    c->max_trailers = max_trailers;
}

void chunked_data_taken(struct chunked_decoder *c, size_t n)
{
    if (n > c->data_left)
        n = (size_t)c->data_left;
    c->data_left -= n;
    if (c->data_left == 0 && c->state == CK_DATA)
        c->state = CK_DATA_CR;
}

static enum chunked_rc ck_fail(struct chunked_decoder *c, const char *reason, size_t i,
                               size_t *used)
{
    c->state = CK_ERROR;
    c->error = reason;
    *used = i;
    return CHUNKED_ERROR;
}

/* The chunk line's bytes after chunk-size: ext states share "BWS ; CR" handling. */
static int ext_after_value(unsigned char ch)
{
    if (is_ows(ch))
        return CK_EXT_BWS;
    if (ch == ';')
        return CK_EXT_NAME0;
    if (ch == '\r')
        return CK_SIZE_LF;
    return CK_ERROR;
}

/*
 * The last-chunk line ("0" [ext] CRLF) is framing and trailer runs must hold trailer bytes only,
 * so when trailer bytes follow it in the same input the decoder stops there with CHUNKED_DATA and
 * data_left == 0 (a chunk without data); the next call returns the trailer run. When the
 * trailer section is empty the last-chunk line and the final CRLF come together with DONE.
 */
enum chunked_rc chunked_parse(struct chunked_decoder *c, const char *p, size_t len, size_t *used)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    bool trailer_run = false; /* this call has passed trailer bytes */

    if (c->state == CK_ERROR)
        return ck_fail(c, c->error != NULL ? c->error : "invalid chunked framing", 0, used);
    if (c->state == CK_DONE) {
        *used = 0;
        return CHUNKED_DONE;
    }
    if (c->data_left > 0)
        return ck_fail(c, "chunk data not taken before parsing on", 0, used);

    for (; i < len; i++) {
        unsigned char ch = b[i];
        int next = c->state;

        switch (c->state) {
        case CK_SIZE0:
        case CK_SIZE:
            if (h1_class[ch] & H1_HEX) {
                unsigned d = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
                if (++c->size_digits > 16 || c->size > H1_MAX_LENGTH >> 4)
                    return ck_fail(c, "chunk size too large", i, used);
                c->size = c->size << 4 | d;
                if (c->size > H1_MAX_LENGTH)
                    return ck_fail(c, "chunk size too large", i, used);
                next = CK_SIZE;
                break;
            }
            if (c->state == CK_SIZE0)
                return ck_fail(c, bad_byte(ch, "invalid chunk size"), i, used);
            next = ext_after_value(ch);
            if (next == CK_ERROR)
                return ck_fail(c, bad_byte(ch, "invalid chunk size"), i, used);
            break;
        case CK_EXT_BWS:
            if (is_ows(ch))
                break;
            if (ch != ';')
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            next = CK_EXT_NAME0;
            break;
        case CK_EXT_NAME0:
            if (is_ows(ch))
                break;
            if (!(h1_class[ch] & H1_TCHAR))
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            next = CK_EXT_NAME;
            break;
        case CK_EXT_NAME:
            if (h1_class[ch] & H1_TCHAR)
                break;
            if (ch == '=') {
                next = CK_EXT_VAL0;
                break;
            }
            next = ext_after_value(ch);
            if (next == CK_EXT_BWS)
                next = CK_EXT_NAME_BWS;
            if (next == CK_ERROR)
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            break;
        case CK_EXT_NAME_BWS:
            if (is_ows(ch))
                break;
            if (ch == '=')
                next = CK_EXT_VAL0;
            else if (ch == ';')
                next = CK_EXT_NAME0;
            else
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            break;
        case CK_EXT_VAL0:
            if (is_ows(ch))
                break;
            if (ch == '"')
                next = CK_EXT_QS;
            else if (h1_class[ch] & H1_TCHAR)
                next = CK_EXT_TOKEN;
            else
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            break;
        case CK_EXT_TOKEN:
        case CK_EXT_QEND:
            if (c->state == CK_EXT_TOKEN && (h1_class[ch] & H1_TCHAR))
                break;
            next = ext_after_value(ch);
            if (next == CK_ERROR)
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            break;
        case CK_EXT_QS:
            if (ch == '"')
                next = CK_EXT_QEND;
            else if (ch == '\\')
                next = CK_EXT_QP;
            else if (!(h1_class[ch] & H1_QDTEXT))
                return ck_fail(c, bad_byte(ch, "invalid chunk extension"), i, used);
            break;
        case CK_EXT_QP:
            if (!(h1_class[ch] & H1_VALUE))
                return ck_fail(c, "invalid chunk extension", i, used);
            next = CK_EXT_QS;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return ck_fail(c, "bare CR", i, used);
            c->size_digits = 0;
            c->line_len = 0;
            if (c->size > 0) {
                if (c->size > H1_MAX_LENGTH - c->body_size)
                    return ck_fail(c, "chunked body too large", i, used);
                c->data_left = c->size;
                c->body_size += c->data_left;
                c->size = 0;
                c->state = CK_DATA;
                *used = i + 1;
                return CHUNKED_DATA;
            }
            c->state = CK_TR_LINE;
            /* Trailer bytes follow in this input: hand back the last-chunk line first. */
            if (i + 1 < len && b[i + 1] != '\r') {
                *used = i + 1;
                return CHUNKED_DATA;
            }
            continue;
        case CK_DATA_CR:
            if (ch != '\r')
                return ck_fail(c, "missing CRLF after chunk data", i, used);
            next = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return ck_fail(c, "bare CR", i, used);
            c->state = CK_SIZE0;
            c->line_len = 0;
            continue;
        case CK_TR_LINE:
            if (ch == '\r') {
                /* The final CRLF is framing: end the trailer run before it. */
                if (trailer_run) {
                    *used = i;
                    return CHUNKED_TRAILER;
                }
                c->state = CK_END_LF;
                continue;
            }
            if (is_ows(ch))
                return ck_fail(c, "obsolete line folding in trailer", i, used);
            if (!(h1_class[ch] & H1_TCHAR))
                return ck_fail(c, bad_byte(ch, "invalid character in trailer field name"), i,
                               used);
            next = CK_TR_NAME;
            break;
        case CK_TR_NAME:
            if (h1_class[ch] & H1_TCHAR)
                break;
            if (ch == ':')
                next = CK_TR_VALUE;
            else if (is_ows(ch))
                return ck_fail(c, "whitespace before colon in trailer field", i, used);
            else
                return ck_fail(c, bad_byte(ch, "invalid character in trailer field name"), i,
                               used);
            break;
        case CK_TR_VALUE:
            if (h1_class[ch] & H1_VALUE)
                break;
            if (ch != '\r')
                return ck_fail(c, bad_byte(ch, "invalid character in trailer field value"), i,
                               used);
            next = CK_TR_LF;
            break;
        case CK_TR_LF:
            if (ch != '\n')
                return ck_fail(c, "bare CR", i, used);
            next = CK_TR_LINE;
            break;
        case CK_END_LF:
            if (ch != '\n')
                return ck_fail(c, "bare CR", i, used);
            c->state = CK_DONE;
            *used = i + 1;
            return CHUNKED_DONE;
        default:
            return ck_fail(c, "invalid chunked decoder state", i, used);
        }

        /* Line and section limits; a CR ends the counted part of a line. */
        if (c->state >= CK_TR_LINE && c->state <= CK_TR_LF) {
            trailer_run = true;
            if (++c->trailer_size > c->max_trailers)
                return ck_fail(c, "trailer section too large", i, used);
            if (next == CK_TR_LINE)
                c->line_len = 0;
            else if (next != CK_TR_LF && ++c->line_len > c->max_line)
                return ck_fail(c, "trailer field line too long", i, used);
        } else if (c->state < CK_SIZE_LF && next != CK_SIZE_LF) {
            if (++c->line_len > c->max_line)
                return ck_fail(c, "chunk line too long", i, used);
        }
        c->state = next;
    }
    *used = len;
    return trailer_run ? CHUNKED_TRAILER : CHUNKED_AGAIN;
}
