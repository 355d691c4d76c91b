/*
 * errpage.c — responses Portico writes itself (see errpage.h).
 *
 * The body is rendered once, at prepare, into the caller's errpage_out: its length is the
 * Content-Length (also for HEAD) and its bytes go out in one evbuffer_add. Only a body larger
 * than that buffer (an operator's page file) is rendered a second time, streamed, through the
 * same code: one renderer per format means the count and the bytes can never disagree, and
 * nothing is allocated except the operator's page file. Every borrowed string goes through an
 * escaper for its context: header (printable ASCII only), sf-string, JSON, HTML or plain text.
 */
#include "portico/errpage.h"

#include <ctype.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "portico/h1out.h"
#include "portico/headers.h"
#include "portico/status.h"
#include "portico/util.h"

#define PAGE_MAX (256 * 1024)     /* larger error_page_dir files are ignored, not truncated */
#define HDR_VALUE_MAX 1024        /* cap on one borrowed string inside a header */

static const char mime_json[] = "application/json";
static const char mime_html[] = "text/html";
static const char mime_plain[] = "text/plain";

/* ---- sink: a buffer that counts everything put, and keeps what fits ---- */

enum sink_full {
    SINK_COUNT,  /* the body: past the buffer only counted (total > cap tells) */
    SINK_CUT,    /* a header value: cut at the buffer's end, total is what was kept */
    SINK_FLUSH,  /* the streamed body: the buffer goes to out whenever it fills */
};

struct sink {
    char *buf;            /* borrowed; NULL once a COUNT sink overflowed */
    size_t cap;           /* size of buf */
    size_t len;           /* bytes in buf */
    size_t total;         /* bytes put so far (kept, for CUT) */
    enum sink_full full;
    struct evbuffer *out; /* borrowed: where a FLUSH sink's buffer goes */
    bool err;             /* an evbuffer_add failed (out of memory) */
};

static void sink_flush(struct sink *s)
{
    if (s->len > 0 && !s->err && evbuffer_add(s->out, s->buf, s->len) != 0)
        s->err = true;
    s->len = 0;
}

/* The rare case of sink_put: n does not fit in what is left of the buffer. */
static void sink_overflow(struct sink *s, const void *p, size_t n)
{
    switch (s->full) {
    case SINK_COUNT:
        s->total += n;
        s->buf = NULL;
        return;
    case SINK_CUT:
        n = s->cap - s->len;
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        s->total += n;
        return;
    case SINK_FLUSH:
        s->total += n;
        sink_flush(s);
        if (n > s->cap) { /* a large page file: one add, no copy through buf */
            if (!s->err && evbuffer_add(s->out, p, n) != 0)
                s->err = true;
            return;
        }
        memcpy(s->buf, p, n);
        s->len = n;
        return;
    }
}

static inline void sink_put(struct sink *s, const void *p, size_t n)
{
    if (s->buf == NULL) {
        s->total += n;
    } else if (n <= s->cap - s->len) {
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        s->total += n;
    } else {
        sink_overflow(s, p, n);
    }
}

#define sink_lit(s, lit) sink_put((s), (lit), sizeof(lit) - 1)

static void sink_str(struct sink *s, const char *str)
{
    sink_put(s, str, strlen(str));
}

static void sink_u64(struct sink *s, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof tmp;

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    sink_put(s, tmp + i, sizeof tmp - i);
}

/* Milliseconds with one decimal, by hand: printf's "%.1f" follows LC_NUMERIC and prints "nan". */
static void sink_ms(struct sink *s, double ms)
{
    if (!(ms >= 0.0)) /* negative or NaN */
        ms = 0.0;
    if (ms > 1e15) /* also +inf; keeps the conversion below defined */
        ms = 1e15;
    uint64_t tenths = (uint64_t)(ms * 10.0 + 0.5);
    char frac = (char)('0' + tenths % 10);

    sink_u64(s, tenths / 10);
    sink_lit(s, ".");
    sink_put(s, &frac, 1);
}

/* ---- escapers ---- */

enum esc {
    ESC_TEXT, /* text/plain body: control bytes become spaces so a value stays on its line */
    ESC_HTML, /* & < > " ' as references, control bytes as spaces */
    ESC_JSON, /* " and \ escaped, control bytes (and DEL) as \u00XX */
    ESC_HDR,  /* a header value: control and non-ASCII bytes left out */
    ESC_SF,   /* an sf-string in a header: the same, and " and \ escaped */
};

/* Bit 1 << esc set: the byte is not copied as it is in that context. NUL is marked for every
 * context, so a scan stops at the terminator without a test of its own per byte. */
#define ESC_ALL 0x1F
static const unsigned char esc_class[256] = {
    [0x00 ... 0x1F] = ESC_ALL,
    ['"'] = 1u << ESC_HTML | 1u << ESC_JSON | 1u << ESC_SF,
    ['\\'] = 1u << ESC_JSON | 1u << ESC_SF,
    ['&'] = 1u << ESC_HTML,
    ['<'] = 1u << ESC_HTML,
    ['>'] = 1u << ESC_HTML,
    ['\''] = 1u << ESC_HTML,
    [0x7F ... 0xFF] = ESC_ALL,
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether one of the eight bytes of x is c (exact: a borrow only follows a zero byte). */
static inline uint64_t has_byte(uint64_t x, unsigned char c)
{
    uint64_t v = x ^ (ONES * c);
    return (v - ONES) & ~v & HIGHS;
}

static inline uint64_t load8(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

/* Whether a byte of x stops every mode's scan: below 0x20, DEL, or 0x80 and up. */
static inline uint64_t stops_any(uint64_t x)
{
    return ((x - ONES * 0x20) & ~x & HIGHS) | has_byte(x, 0x7F) | (x & HIGHS);
}

/* ... and ESC_JSON's and ESC_SF's: " and \. */
static inline uint64_t stops_quoted(uint64_t x)
{
    return stops_any(x) | has_byte(x, '"') | has_byte(x, '\\');
}

/* ... and ESC_HTML's: " & < > '. */
static inline uint64_t stops_html(uint64_t x)
{
    return stops_any(x) | has_byte(x, '"') | has_byte(x, '&') | has_byte(x, '<') |
           has_byte(x, '>') | has_byte(x, '\'');
}

/* Past the words from p on (whole, before end) in which no byte stops mode's scan (esc_class),
 * eight bytes a step; the caller goes on byte by byte. Byte by byte only, the details of a
 * 502's page and headers took ~2,600 instructions. */
static const unsigned char *skip_words(const unsigned char *p, const unsigned char *end,
                                       enum esc mode)
{
    switch (mode) {
    case ESC_TEXT:
    case ESC_HDR:
        while (end - p >= 8 && !stops_any(load8(p)))
            p += 8;
        break;
    case ESC_JSON:
    case ESC_SF:
        while (end - p >= 8 && !stops_quoted(load8(p)))
            p += 8;
        break;
    case ESC_HTML:
        while (end - p >= 8 && !stops_html(load8(p)))
            p += 8;
        break;
    }
    return p;
}

/* Appends str escaped for a body of the given kind. Bodies are declared UTF-8, so ill-formed
 * bytes become U+FFFD instead of passing through. */
static void put_escaped(struct sink *s, const char *str, enum esc mode)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str;
    const unsigned char *end = p + strlen(str);
    const unsigned char *run = p;

    const unsigned char mask = (unsigned char)(1u << mode);

    for (;;) {
        p = skip_words(p, end, mode);
        while (!(esc_class[*p] & mask))
            p++;
        unsigned char c = *p;
        const char *rep;
        char tmp[6];
        size_t rep_len = 0;

        if (c == '\0') {
            break;
        } else if (c >= 0x80) {
            size_t n = utf8_seq_len(p);
            if (n != 0) {
                p += n;
                continue;
            }
            rep = mode == ESC_JSON ? "\\ufffd" : "\xEF\xBF\xBD";
        } else if (c < 0x20 || c == 0x7F) {
            if (mode == ESC_JSON) {
                memcpy(tmp, "\\u00", 4);
                tmp[4] = hex[c >> 4];
                tmp[5] = hex[c & 0xF];
                rep = tmp;
                rep_len = 6;
            } else {
                rep = " ";
            }
        } else if (c == '"') {
            rep = mode == ESC_JSON ? "\\\"" : "&quot;";
        } else if (c == '\\') { /* JSON only */
            rep = "\\\\";
        } else if (c == '&') {
            rep = "&amp;";
        } else if (c == '<') {
            rep = "&lt;";
        } else if (c == '>') {
            rep = "&gt;";
        } else { /* ' in HTML */
            rep = "&#39;";
        }
        if (rep_len == 0)
            rep_len = strlen(rep);
        sink_put(s, run, (size_t)(p - run));
        sink_put(s, rep, rep_len);
        run = ++p;
    }
    sink_put(s, run, (size_t)(p - run));
}

/* A name from Portico's own tables (failure_name, phase_name, failure_proxy_status): lowercase
 * letters, digits and '_' only (test_errpage checks every one), which no escaper changes: put as
 * it is. Escaped, the names of a 502's plain page took ~250 instructions. */
static void put_name(struct sink *s, const char *name)
{
    sink_put(s, name, strlen(name));
}

static void put_json_name(struct sink *s, const char *name)
{
    sink_lit(s, "\"");
    put_name(s, name);
    sink_lit(s, "\"");
}

static void put_json_str(struct sink *s, const char *str)
{
    if (str == NULL) {
        sink_lit(s, "null");
        return;
    }
    sink_lit(s, "\"");
    put_escaped(s, str, ESC_JSON);
    sink_lit(s, "\"");
}

/* A borrowed string inside a header: printable ASCII only (no CR/LF can reach the wire), at most
 * HDR_VALUE_MAX bytes kept; sf_string also escapes " and \ (RFC 8941 sf-string content). */
static void put_header_value(struct sink *s, const char *str, bool sf_string)
{
    const unsigned char *p = (const unsigned char *)str;
    const unsigned char *end = p + strlen(str);
    const unsigned char *run = p;
    const enum esc mode = sf_string ? ESC_SF : ESC_HDR;
    const unsigned char mask = (unsigned char)(1u << mode);
    size_t kept = 0;

    for (;;) {
        /* the bound taken as a length: p + (HDR_VALUE_MAX - kept) may lie past the string */
        const unsigned char *past =
            skip_words(p, p + MIN((size_t)(end - p), HDR_VALUE_MAX - kept), mode);
        kept += (size_t)(past - p);
        p = past;
        while (!(esc_class[*p] & mask) && kept < HDR_VALUE_MAX)
            p++, kept++;
        if (*p == '\0' || kept >= HDR_VALUE_MAX)
            break;
        sink_put(s, run, (size_t)(p - run));
        if (*p < 0x20 || *p > 0x7E) { /* left out */
            run = ++p;
            continue;
        }
        sink_lit(s, "\\"); /* " or \ of an sf-string: the character goes out with the next run */
        run = p++;
        kept++;
    }
    sink_put(s, run, (size_t)(p - run));
}

/* ---- negotiation ---- */

enum fmt { FMT_JSON, FMT_HTML, FMT_PLAIN, FMT_COUNT };

static const char *const fmt_mime[FMT_COUNT] = {
    [FMT_JSON] = mime_json,
    [FMT_HTML] = mime_html,
    [FMT_PLAIN] = mime_plain,
};

/* How one of our formats is matched by the Accept value so far. */
struct match {
    int q;      /* 0..1000; -1 when no range matched */
    int spec;   /* 0 any type, 1 subtype wildcard, 2 exact type/subtype; -1 none */
    size_t pos; /* index of the matching range in Accept */
};

static bool is_token(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!h1_is_tchar((unsigned char)p[i]))
            return false;
    return true;
}

/* First d in [p, end) outside quoted-strings, or end. */
static const char *scan_to(const char *p, const char *end, char d)
{
    return p + h1_skip_to(p, (size_t)(end - p), d, false);
}

static void trim(const char **b, const char **e)
{
    while (*b < *e && (**b == ' ' || **b == '\t'))
        (*b)++;
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

/* RFC 9110 qvalue: "0" ["." 0*3DIGIT] / "1" ["." 0*3"0"], as thousandths; -1 when malformed. */
static int parse_qvalue(const char *p, const char *e)
{
    if (p >= e || (*p != '0' && *p != '1'))
        return -1;
    int q = (*p - '0') * 1000;
    p++;
    if (p == e)
        return q;
    if (*p++ != '.' || e - p > 3)
        return -1;
    for (int scale = 100; p < e; p++, scale /= 10) {
        if (*p < '0' || *p > '9')
            return -1;
        q += (*p - '0') * scale;
    }
    return q <= 1000 ? q : -1;
}

/* One media range [b, e): "type/subtype *( OWS ; OWS param )". Returns 0 with *q, *type and *sub
 * set, -1 when malformed (such ranges are ignored, as if absent). Parameters other than q are
 * ignored for matching: none of our formats has one the client could meaningfully select. */
static int parse_range(const char *b, const char *e, int *q, const char **type, size_t *type_len,
                       const char **sub, size_t *sub_len)
{
    const char *semi = scan_to(b, e, ';');
    const char *mb = b, *me = semi;

    trim(&mb, &me);
    const char *slash = memchr(mb, '/', (size_t)(me - mb));
    if (slash == NULL || !is_token(mb, (size_t)(slash - mb)) ||
        !is_token(slash + 1, (size_t)(me - slash - 1)))
        return -1;
    *type = mb;
    *type_len = (size_t)(slash - mb);
    *sub = slash + 1;
    *sub_len = (size_t)(me - slash - 1);
    if (span_ieq(*type, *type_len, "*") && !span_ieq(*sub, *sub_len, "*"))
        return -1; /* a wildcard type needs a wildcard subtype */

    *q = 1000;
    while (semi < e) {
        const char *pb = semi + 1;
        semi = scan_to(pb, e, ';');
        const char *pe = semi;
        trim(&pb, &pe);
        const char *eq = memchr(pb, '=', (size_t)(pe - pb));
        if (eq == NULL)
            continue;
        const char *nb = pb, *ne = eq;
        trim(&nb, &ne);
        if (!span_ieq(nb, (size_t)(ne - nb), "q"))
            continue;
        const char *vb = eq + 1, *ve = pe;
        trim(&vb, &ve);
        *q = parse_qvalue(vb, ve);
        return *q < 0 ? -1 : 0; /* anything after q is an accept-ext */
    }
    return 0;
}

// Choice rules (RFC 9110 12.5.1, then ours for ties). Line comments: the media ranges below
// would end a block comment.
//   1. Each format takes the q of the most specific range matching it (text/html over text/*
//      over */*; among equally specific ones, the highest q). q=0 excludes it.
//   2. The highest q wins.
//   3. Equal q: the format matched by the more specific range wins. Browsers send
//      "text/html,...,*/*;q=0.8" and get HTML; "application/json, */*" gets JSON.
//   4. Still equal: the range listed first wins (axios "application/json, text/plain, */*" gets
//      JSON, "text/plain, application/json" plain). RFC 9110 gives order no meaning, but it is
//      the client's only other hint.
//   5. Formats matched by one and the same wildcard (curl, wget and most libraries send "*/*";
//      or "text/*"): text/plain, then JSON, then HTML. A terminal is the likely reader.
//   Malformed ranges are ignored; no Accept, or nothing acceptable: text/plain. Several Accept
//   lines are one list, in order (RFC 9110 5.3): "Accept: text/html;q=0.1" then "Accept:
//   application/json" gets JSON, as the one line "text/html;q=0.1, application/json" does.
/* The matches so far of one Accept list, which may come in several field lines. */
struct negotiation {
    struct match m[FMT_COUNT];
    size_t pos; /* index of the next range in the whole list, across lines */
};

static void negotiation_init(struct negotiation *n)
{
    for (int f = 0; f < FMT_COUNT; f++)
        n->m[f] = (struct match){.q = -1, .spec = -1, .pos = 0};
    n->pos = 0;
}

/* Adds the media ranges of one Accept field line (rule 1). */
static void negotiation_add(struct negotiation *n, const char *accept, size_t len)
{
    static const char *const fmt_type[FMT_COUNT] = {"application", "text", "text"};
    static const char *const fmt_sub[FMT_COUNT] = {"json", "html", "plain"};
    const char *end = accept + len;

    for (const char *p = accept; p < end; n->pos++) {
        const char *ee = scan_to(p, end, ',');
        const char *type, *sub;
        size_t type_len, sub_len;
        int q;

        if (parse_range(p, ee, &q, &type, &type_len, &sub, &sub_len) == 0) {
            for (int f = 0; f < FMT_COUNT; f++) {
                int spec;
                if (span_ieq(type, type_len, "*"))
                    spec = 0;
                else if (!span_ieq(type, type_len, fmt_type[f]))
                    continue;
                else if (span_ieq(sub, sub_len, "*"))
                    spec = 1;
                else if (span_ieq(sub, sub_len, fmt_sub[f]))
                    spec = 2;
                else
                    continue;
                if (spec > n->m[f].spec || (spec == n->m[f].spec && q > n->m[f].q))
                    n->m[f] = (struct match){.q = q, .spec = spec, .pos = n->pos};
            }
        }
        if (ee == end)
            break;
        p = ee + 1;
    }
}

/* Rules 2 to 5 over the matches of the whole list. */
static const char *negotiation_result(const struct negotiation *n)
{
    static const enum fmt tie_order[FMT_COUNT] = {FMT_PLAIN, FMT_JSON, FMT_HTML};
    const struct match *m = n->m;
    int best = -1;

    for (int i = 0; i < FMT_COUNT; i++) {
        enum fmt f = tie_order[i];
        if (m[f].q <= 0)
            continue;
        if (best < 0 || m[f].q > m[best].q ||
            (m[f].q == m[best].q &&
             (m[f].spec > m[best].spec || (m[f].spec == m[best].spec && m[f].pos < m[best].pos))))
            best = (int)f;
    }
    return best < 0 ? mime_plain : fmt_mime[best];
}

const char *errpage_negotiate(const char *accept, size_t len)
{
    struct negotiation n;

    negotiation_init(&n);
    if (accept != NULL)
        negotiation_add(&n, accept, len);
    return negotiation_result(&n);
}

const char *errpage_negotiate_fields(const struct h1_field *fields, size_t nfields)
{
    struct negotiation n;

    negotiation_init(&n);
    for (int i = h1_find(fields, nfields, H1_F_ACCEPT, 0); i >= 0;
         i = h1_find(fields, nfields, H1_F_ACCEPT, (size_t)i + 1))
        negotiation_add(&n, fields[i].value, fields[i].value_len);
    return negotiation_result(&n);
}

/* ---- the response ---- */

static const char *present(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/* Whether the upstream side is left out of this response (error_detail = minimal). */
static bool withheld(const struct errpage *e)
{
    return e->detail == ERRPAGE_DETAIL_MINIMAL && e->failure != FAIL_NONE;
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* The RFC 9209 error type: the failure type's, or tls_alert_received when the origin refused the
 * handshake with an alert (the failure type stays tls_handshake_failed, whose code it is). */
static const char *proxy_status_error(const struct errpage *e)
{
    return e->tls_alert_name != NULL ? "tls_alert_received" : failure_proxy_status(e->failure);
}

/* Reads <dir>/<status>.html, at most PAGE_MAX bytes. NULL when missing, unreadable, not a regular
 * file, empty or too large: the built-in page is used then, silently. */
static char *page_load(const char *dir, int status, size_t *len)
{
    char path[PATH_MAX];
    char *buf = NULL;
    struct stat st;
    size_t got = 0;
    int n = snprintf(path, sizeof path, "%s/%d.html", dir, status);

    if (n < 0 || (size_t)n >= sizeof path)
        return NULL;
    /* O_NONBLOCK: a FIFO planted in the directory must not stall the event loop on open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > PAGE_MAX)
        goto fail;
    buf = malloc((size_t)st.st_size);
    if (buf == NULL)
        goto fail;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0)
            goto fail;
        if (r == 0) /* shrank since fstat: use what is there */
            break;
        got += (size_t)r;
    }
    if (got == 0)
        goto fail;
    close(fd);
    *len = got;
    return buf;
fail:
    free(buf);
    close(fd);
    return NULL;
}

/* The {{name}} placeholders of an operator's page (README: error_page_dir), matched without
 * regard to case. */
#define PLACEHOLDER_LIST(X)                                                                        \
    X(PH_REQUEST_ID, "request_id")                                                                 \
    X(PH_ERROR, "error")                                                                           \
    X(PH_ORIGIN, "origin")                                                                         \
    X(PH_STATUS, "status")                                                                         \
    X(PH_PHASE, "phase")                                                                           \
    X(PH_DETAIL, "detail")

enum placeholder {
#define X(id, name) id,
    PLACEHOLDER_LIST(X)
#undef X
    PH_COUNT /* not a placeholder */
};

static const char *const placeholder_names[] = {
#define X(id, name) [id] = name,
    PLACEHOLDER_LIST(X)
#undef X
};

static enum placeholder placeholder_find(const char *name, size_t len)
{
    for (int i = 0; i < PH_COUNT; i++)
        if (span_ieq(name, len, placeholder_names[i]))
            return (enum placeholder)i;
    return PH_COUNT;
}

/* The next "{{name}}" of [p, end) as render_page_file reads it: *open at its "{{", *close at its
 * "}}"; false when there is none. */
static bool next_placeholder(const char *p, const char *end, const char **open,
                             const char **close)
{
    *open = memmem(p, (size_t)(end - p), "{{", 2);
    *close = *open ? memmem(*open + 2, (size_t)(end - *open - 2), "}}", 2) : NULL;
    return *close != NULL;
}

/* Operator page with {{name}} placeholders replaced by HTML-escaped values; unknown
 * placeholders are left as they are. */
static void render_page_file(struct sink *s, const struct errpage_view *v)
{
    const struct errpage *e = v->e;
    const char *p = v->page;
    const char *end = v->page + v->page_len;
    const char *open, *close;

    while (next_placeholder(p, end, &open, &close)) {
        const char *name = open + 2;
        const char *val = NULL;

        switch (placeholder_find(name, (size_t)(close - name))) {
        case PH_REQUEST_ID: val = or_empty(e->request_id); break;
        case PH_ERROR: val = failure_name(e->failure); break;
        case PH_ORIGIN: val = or_empty(v->origin); break;
        case PH_PHASE: val = phase_name(e->phase); break;
        case PH_DETAIL: val = or_empty(v->reason); break;
        case PH_STATUS:
            sink_put(s, p, (size_t)(open - p));
            sink_u64(s, (uint64_t)v->status);
            p = close + 2;
            continue;
        case PH_COUNT: /* not ours: keep "{{" and look further */
            sink_put(s, p, (size_t)(name - p));
            p = name;
            continue;
        }
        sink_put(s, p, (size_t)(open - p));
        put_escaped(s, val, ESC_HTML);
        p = close + 2;
    }
    sink_put(s, p, (size_t)(end - p));
}

/* A page's name as page_load reads it: three digits, the first not 0, then ".html". */
static int is_page_name(const struct dirent *d)
{
    const char *n = d->d_name;
    return n[0] >= '1' && n[0] <= '9' && isdigit((unsigned char)n[1]) &&
           isdigit((unsigned char)n[2]) && strcmp(n + 3, ".html") == 0;
}

/* What reads as one mistyped placeholder ("{{request-id}}", "{{ status }}"): short, on one
 * line, without a "{{" of its own (whose inner placeholder is read next). */
#define PLACEHOLDER_TYPO_MAX 64

/* How many {{name}} of the page render_page_file leaves as they are (and reads as one mistyped
 * placeholder); the first in *first, *first_len. */
static size_t page_unknowns(const char *page, size_t len, const char **first, size_t *first_len)
{
    const char *p = page, *end = page + len, *open, *close;
    size_t unknown = 0;
    while (next_placeholder(p, end, &open, &close)) {
        const char *name = open + 2;
        size_t name_len = (size_t)(close - name);
        if (placeholder_find(name, name_len) != PH_COUNT) {
            p = close + 2;
            continue;
        }
        if (name_len <= PLACEHOLDER_TYPO_MAX && !memchr(name, '\n', name_len) &&
            !memmem(name, name_len, "{{", 2) && unknown++ == 0) {
            *first = name;
            *first_len = name_len;
        }
        p = name; /* as render_page_file goes on */
    }
    return unknown;
}

void errpage_check_pages(const char *dir, void (*warn)(void *arg, const char *text), void *arg)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, is_page_name, alphasort); /* in order: the same warnings */
    char known[128];
    size_t klen = 0;
    for (int i = 0; i < PH_COUNT; i++)
        klen += (size_t)snprintf(known + klen, sizeof(known) - klen, "%s{{%s}}", i ? ", " : "",
                                 placeholder_names[i]);
    for (int i = 0; i < n; i++) {
        size_t len = 0, first_len = 0, unknown = 0;
        const char *first = NULL;
        char text[PATH_MAX + 512];
        char *page = page_load(dir, atoi(names[i]->d_name), &len);
        if (page) /* else a response does not read it either: the built-in page goes */
            unknown = page_unknowns(page, len, &first, &first_len);
        if (unknown == 1)
            snprintf(text, sizeof(text), "%s/%s: {{%.*s}} is not a placeholder, so clients get it "
                     "as written (the placeholders: %s)", dir, names[i]->d_name, (int)first_len,
                     first, known);
        else if (unknown > 1)
            snprintf(text, sizeof(text), "%s/%s: {{%.*s}} and %zu more are not placeholders, so "
                     "clients get them as written (the placeholders: %s)", dir, names[i]->d_name,
                     (int)first_len, first, unknown - 1, known);
        if (unknown)
            warn(arg, text);
        free(page);
        free(names[i]);
    }
    free(names);
}

static const char html_css[] =
    "*{box-sizing:border-box}"
    "body{margin:0;background:#f4f5f7;color:#1f2328;"
    "font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}"
    "main{max-width:780px;margin:40px auto;padding:0 20px}"
    "h1{margin:0;font-size:30px;font-weight:650}"
    "h1 .code{color:#b42318}"
    ".sub{margin:4px 0 28px;color:#57606a}"
    ".sub b{color:#1f2328}"
    ".chain{display:flex;align-items:center;margin:0 0 28px}"
    ".box{flex:1 1 0;min-width:0;background:#fff;border:2px solid #2da44e;border-radius:10px;"
    "padding:12px 10px;text-align:center}"
    ".box span{display:block;font-size:11px;letter-spacing:.08em;text-transform:uppercase;"
    "color:#57606a}"
    ".box strong{display:block;font-size:16px;overflow-wrap:anywhere}"
    ".box em{display:block;font-style:normal;font-size:13px;color:#1a7f37}"
    ".box.bad{border-color:#d1242f;background:#fff1f0}"
    ".box.bad em{color:#b42318;font-weight:600}"
    ".hop{flex:0 0 150px;padding:0 6px;text-align:center;font-size:13px;color:#1a7f37}"
    ".hop i{display:block;position:relative;height:3px;margin:6px 8px 6px 0;background:#2da44e}"
    ".hop i:after{content:'';position:absolute;right:-9px;top:-5px;border:6.5px solid transparent;"
    "border-left:9px solid #2da44e;border-right:0}"
    ".hop.bad{color:#b42318;font-weight:700;overflow-wrap:anywhere}"
    ".hop.bad i{background:repeating-linear-gradient(90deg,#d1242f 0 9px,transparent 9px 14px)}"
    ".hop.bad i:after{border-left-color:#d1242f}"
    "table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #d0d7de}"
    "th,td{padding:7px 14px;border-top:1px solid #eaeef2;text-align:left;vertical-align:top}"
    "th{width:140px;color:#57606a;font-weight:500;white-space:nowrap}"
    "td{font:14px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"
    "overflow-wrap:anywhere}"
    "tr.bad td{color:#b42318;font-weight:600}"
    "footer{margin-top:14px;color:#57606a;font-size:13px}"
    "@media(max-width:600px){.chain{flex-direction:column;align-items:stretch}"
    ".hop{flex:none;padding:6px 0}.hop i{display:none}.hop:before{content:'\\2193  '}}";

static void html_row(struct sink *s, const char *key, const char *val, bool bad)
{
    sink_lit(s, "<tr");
    if (bad)
        sink_lit(s, " class=\"bad\"");
    sink_lit(s, "><th>");
    sink_str(s, key);
    sink_lit(s, "</th><td>");
    if (val != NULL)
        put_escaped(s, val, ESC_HTML);
    else
        sink_lit(s, "&#8212;");
    sink_lit(s, "</td></tr>\n");
}

/* The built-in page: title, the chain client -> Portico -> origin with the failed hop in red,
 * then every field in a table. Inline CSS only; meant to be screenshotted. */
static void render_html(struct sink *s, const struct errpage_view *v)
{
    const struct errpage *e = v->e;
    const char *fail = failure_name(e->failure);
    const char *phase = phase_name(e->phase);

    sink_lit(s, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                "<meta name=\"robots\" content=\"noindex\">\n<title>");
    sink_u64(s, (uint64_t)v->status);
    sink_lit(s, " ");
    put_escaped(s, v->phrase, ESC_HTML);
    sink_lit(s, " &#183; ");
    put_name(s, fail);
    sink_lit(s, "</title>\n<style>");
    sink_lit(s, html_css);
    sink_lit(s, "</style></head>\n<body><main>\n<h1><span class=\"code\">");
    sink_u64(s, (uint64_t)v->status);
    sink_lit(s, "</span> ");
    put_escaped(s, v->phrase, ESC_HTML);
    sink_lit(s, "</h1>\n<p class=\"sub\">Portico is up; the hop from Portico to the origin failed: "
                "<b>");
    put_name(s, fail);
    sink_lit(s, "</b> during <b>");
    put_name(s, phase);
    sink_lit(s, "</b>.</p>\n");

    sink_lit(s, "<div class=\"chain\" role=\"img\" aria-label=\"client to Portico ok; Portico to "
                "origin failed: ");
    put_name(s, fail);
    sink_lit(s, "\">\n<div class=\"box\"><span>client</span><strong>you</strong>"
                "<em>request received</em></div>\n"
                "<div class=\"hop\"><i></i>ok</div>\n"
                "<div class=\"box\"><span>proxy</span><strong>Portico</strong><em>");
    if (v->upstream != NULL) {
        sink_lit(s, "upstream ");
        put_escaped(s, v->upstream, ESC_HTML);
    } else {
        sink_lit(s, "working");
    }
    sink_lit(s, "</em></div>\n<div class=\"hop bad\"><i></i>&#10007; ");
    put_name(s, fail);
    sink_lit(s, "</div>\n<div class=\"box bad\"><span>origin</span><strong>");
    put_escaped(s, v->origin != NULL ? v->origin : withheld(e) ? "not disclosed" : "unknown",
                ESC_HTML);
    sink_lit(s, "</strong><em>failed at ");
    put_name(s, phase);
    sink_lit(s, "</em></div>\n</div>\n<table>\n<tr class=\"bad\"><th>status</th><td>");
    sink_u64(s, (uint64_t)v->status);
    sink_lit(s, " ");
    put_escaped(s, v->phrase, ESC_HTML);
    sink_lit(s, "</td></tr>\n");
    html_row(s, "error", fail, true);
    html_row(s, "phase", phase, false);
    sink_lit(s, "<tr><th>limit</th><td>");
    if (e->limit_ms != 0) {
        sink_u64(s, e->limit_ms);
        sink_lit(s, " ms");
    } else {
        sink_lit(s, "&#8212;");
    }
    sink_lit(s, "</td></tr>\n<tr><th>elapsed</th><td>");
    sink_ms(s, e->elapsed_ms);
    sink_lit(s, " ms</td></tr>\n");
    html_row(s, "origin", v->origin, false);
    html_row(s, "upstream", v->upstream, false);
    html_row(s, "request id", present(e->request_id), false);
    html_row(s, "detail", v->reason, false);
    sink_lit(s, "</table>\n<footer>portico &#183; ");
    sink_str(s, v->date);
    sink_lit(s, " &#183; Proxy-Status error=");
    put_name(s, proxy_status_error(e));
    sink_lit(s, "</footer>\n</main></body></html>\n");
}

static void render_json(struct sink *s, const struct errpage_view *v)
{
    const struct errpage *e = v->e;

    sink_lit(s, "{\"status\":");
    sink_u64(s, (uint64_t)v->status);
    sink_lit(s, ",\"error\":");
    put_json_name(s, failure_name(e->failure));
    sink_lit(s, ",\"phase\":");
    put_json_name(s, phase_name(e->phase));
    sink_lit(s, ",\"origin\":");
    put_json_str(s, v->origin);
    sink_lit(s, ",\"upstream\":");
    put_json_str(s, v->upstream);
    sink_lit(s, ",\"limit_ms\":");
    if (e->limit_ms != 0)
        sink_u64(s, e->limit_ms);
    else
        sink_lit(s, "null");
    sink_lit(s, ",\"elapsed_ms\":");
    sink_ms(s, e->elapsed_ms);
    sink_lit(s, ",\"request_id\":");
    put_json_str(s, or_empty(e->request_id));
    sink_lit(s, ",\"detail\":");
    put_json_str(s, or_empty(v->reason));
    sink_lit(s, ",\"proxy_status\":");
    put_json_name(s, proxy_status_error(e));
    sink_lit(s, "}\n");
}

static void text_line(struct sink *s, const char *key, const char *val)
{
    sink_str(s, key);
    sink_lit(s, ": ");
    put_escaped(s, val != NULL ? val : "-", ESC_TEXT);
    sink_lit(s, "\n");
}

/* text_line of a name (put_name): never absent, nothing to escape. */
static void name_line(struct sink *s, const char *key, const char *name)
{
    sink_str(s, key);
    sink_lit(s, ": ");
    put_name(s, name);
    sink_lit(s, "\n");
}

/* Fixed shape, one "key: value" per line ("-" when absent): easy to read and to grep. */
static void render_plain(struct sink *s, const struct errpage_view *v)
{
    const struct errpage *e = v->e;

    sink_u64(s, (uint64_t)v->status);
    sink_lit(s, " ");
    sink_str(s, v->phrase);
    sink_lit(s, "\n");
    name_line(s, "error", failure_name(e->failure));
    name_line(s, "phase", phase_name(e->phase));
    text_line(s, "origin", v->origin);
    text_line(s, "upstream", v->upstream);
    sink_lit(s, "limit: ");
    if (e->limit_ms != 0) {
        sink_u64(s, e->limit_ms);
        sink_lit(s, " ms\n");
    } else {
        sink_lit(s, "-\n");
    }
    sink_lit(s, "elapsed: ");
    sink_ms(s, e->elapsed_ms);
    sink_lit(s, " ms\n");
    text_line(s, "request_id", present(e->request_id));
    text_line(s, "detail", v->reason);
    name_line(s, "proxy_status", proxy_status_error(e));
}

/* Client-side errors: one line whatever Accept says; nobody debugs a 400 from a browser page. */
static void render_client(struct sink *s, const struct errpage_view *v)
{
    sink_u64(s, (uint64_t)v->status);
    sink_lit(s, " ");
    sink_str(s, v->phrase);
    if (v->reason != NULL) {
        sink_lit(s, ": ");
        put_escaped(s, v->reason, ESC_TEXT);
    }
    sink_lit(s, "\n");
}

static void render_body(struct sink *s, const struct errpage_view *v)
{
    if (v->e->failure == FAIL_NONE)
        render_client(s, v);
    else if (v->mime == mime_json)
        render_json(s, v);
    else if (v->page != NULL)
        render_page_file(s, v);
    else if (v->mime == mime_html)
        render_html(s, v);
    else
        render_plain(s, v);
}

/* A client error with nothing more to say ("503 Service Unavailable\n", a fault's status
 * answer): the same bytes for every request of its status, rendered once per thread. */
struct client_page {
    int status;           /* 0: empty */
    size_t len;
    char body[64];        /* a status, a phrase (status_list.h: 34 bytes at most), a newline */
};
static _Thread_local struct client_page client_pages[16];

static const struct client_page *client_page_of(const struct errpage_view *v)
{
    struct client_page *p = &client_pages[v->status & 15];
    if (p->status != v->status) {
        struct sink s = {.buf = p->body, .cap = sizeof(p->body), .full = SINK_COUNT};
        render_client(&s, v);
        if (s.buf == NULL) /* did not fit: rendered per response as before */
            return NULL;
        p->status = v->status;
        p->len = s.total;
    }
    return p;
}

/* The Sec-Fetch-Dest values under which a browser blocks a response that says nosniff unless its
 * type is a script's or a stylesheet's (Fetch, "should response to request be blocked due to
 * nosniff?": the script-like destinations and style). */
static const char *const nosniff_blocking_dests[] = {
    "script", "style", "worker", "sharedworker", "serviceworker", "audioworklet", "paintworklet",
    "xslt",
};

/* Whether the request is a browser's fetch of a script or a stylesheet (its Sec-Fetch-Dest). */
static bool fetches_script_or_style(const struct errpage *e)
{
    int i = e->fields != NULL ? h1_find(e->fields, e->nfields, H1_F_SEC_FETCH_DEST, 0) : -1;
    if (i < 0)
        return false;
    for (size_t d = 0; d < ARRAY_LEN(nosniff_blocking_dests); d++)
        if (span_ieq(e->fields[i].value, e->fields[i].value_len, nosniff_blocking_dests[d]))
            return true;
    return false;
}

/* Header values are rendered into o->store, one after the other; each field points at its own. */
struct field_writer {
    struct errpage_out *o;
    size_t used;              /* bytes of o->store taken */
    struct sink s;            /* the value being written */
};

static void field_add(struct errpage_out *o, const char *name, size_t name_len, const char *val,
                      size_t val_len)
{
    if (o->nfields < ARRAY_LEN(o->fields))
        o->fields[o->nfields++] = (struct h1_field){name, name_len, val, val_len, H1_F_OTHER};
}

/* A value that outlives the response (a literal, a table's name): pointed at, not copied. */
#define FIELD_CONST(o, lit, val, len) field_add((o), (lit), sizeof(lit) - 1, (val), (len))

static struct sink *value_begin(struct field_writer *w)
{
    w->s = (struct sink){.buf = w->o->store + w->used, .cap = sizeof(w->o->store) - w->used,
                         .full = SINK_CUT};
    return &w->s;
}

static void value_end(struct field_writer *w, const char *name, size_t name_len)
{
    field_add(w->o, name, name_len, w->s.buf, w->s.len);
    w->used += w->s.len;
}

#define FIELD_END(w, lit) value_end((w), (lit), sizeof(lit) - 1)

static void build_fields(const struct errpage_view *v, struct errpage_out *o)
{
    static const char type_plain[] = "text/plain; charset=utf-8";
    static const char type_html[] = "text/html; charset=utf-8";
    const struct errpage *e = v->e;
    struct field_writer w = {.o = o};
    struct sink *s;

    s = value_begin(&w);
    /* this thread's cache: copied, the next second rewrites it (sink_put: sink_str stays out of
     * line under LTO, +15 instructions a 503) */
    sink_put(s, v->date, strlen(v->date));
    FIELD_END(&w, "Date");
    FIELD_CONST(o, "Server", "portico", 7);
    /* No content, no type: a cache copies a 304's fields onto the response it stored (RFC 9111
     * 4.3.4), and text/plain would replace that response's own type; a 205 has none either, as
     * nginx sends its 204 and 304. */
    if (h1out_status_takes_content(v->status)) {
        const char *type = v->mime == mime_json   ? mime_json
                           : v->mime == mime_html ? type_html
                                                  : type_plain;
        FIELD_CONST(o, "Content-Type", type, strlen(type));
        /* A text body quotes details as they are (names, a fault's reason): never read as HTML.
         * But a script or stylesheet fetch of an error: nosniff would have the browser block it
         * as the wrong type, blaming the type in its console and hiding the status from DevTools
         * and Resource Timing, where the error status alone keeps the body from being used. */
        if (v->status < HTTP_BAD_REQUEST || !fetches_script_or_style(v->e))
            FIELD_CONST(o, "X-Content-Type-Options", "nosniff", 7);
    }
    FIELD_CONST(o, "Cache-Control", "no-store", 8);
    if (present(e->request_id) != NULL && e->request_id_clean) {
        /* nothing the escaper would change: it outlives the response, so no copy either */
        FIELD_CONST(o, "X-Request-Id", e->request_id, strlen(e->request_id));
    } else if (present(e->request_id) != NULL) {
        put_header_value(value_begin(&w), e->request_id, false);
        FIELD_END(&w, "X-Request-Id");
    }
    if (e->failure != FAIL_NONE) {
        const char *ps = proxy_status_error(e);
        const char *name = failure_name(e->failure);
        FIELD_CONST(o, "Portico-Error", name, strlen(name));
        s = value_begin(&w);
        sink_lit(s, "portico; error=");
        /* An sf-token must not be empty: an unknown failure type is our own fault. */
        sink_str(s, ps[0] != '\0' ? ps : "proxy_internal_error");
        if (v->reason != NULL) {
            sink_lit(s, "; details=\"");
            put_header_value(s, v->reason, true);
            sink_lit(s, "\"");
        }
        /* the alert is the origin's word on our certificate: as private as the details */
        if (e->tls_alert_name != NULL && e->detail == ERRPAGE_DETAIL_FULL) {
            char id[8];
            snprintf(id, sizeof(id), "%u", (unsigned)e->tls_alert);
            sink_lit(s, "; alert-id=");
            sink_str(s, id);
            sink_lit(s, "; alert-message=\"");
            put_header_value(s, e->tls_alert_name, true);
            sink_lit(s, "\"");
        }
        /* next-hop only once an origin was chosen: route failures have none. */
        if (e->phase > PHASE_ROUTE && e->phase < PHASE_COUNT && v->origin != NULL) {
            sink_lit(s, "; next-hop=\"");
            put_header_value(s, v->origin, true);
            sink_lit(s, "\"");
        }
        FIELD_END(&w, "Proxy-Status");
    }
    if (present(e->server_timing) != NULL) {
        put_header_value(value_begin(&w), e->server_timing, false);
        FIELD_END(&w, "Server-Timing");
    }
    if (e->retry_after_s) {
        sink_u64(value_begin(&w), e->retry_after_s);
        FIELD_END(&w, "Retry-After");
    }
}

int errpage_prepare(const struct errpage *e, struct errpage_out *o)
{
    /* Field by field: o holds the body buffer, which is not zeroed for nothing. */
    o->nfields = 0;
    o->e = e;
    struct errpage_view *v = &o->view;
    *v = (struct errpage_view){
        .e = e,
        .status = e->status,
        .date = http_date_now(),
        .origin = present(e->origin),
        .upstream = present(e->upstream),
        .reason = present(e->reason),
    };
    /* error_detail = minimal: nothing of the topology behind Portico reaches the client (the
     * log and the metrics still have it all). */
    if (withheld(e)) {
        v->origin = NULL;
        v->upstream = NULL;
        v->reason = NULL;
    }
    /* The status line must carry three digits whatever the caller computed. */
    if (v->status < 100 || v->status > 999)
        v->status = e->failure == FAIL_NONE ? HTTP_INTERNAL_SERVER_ERROR : HTTP_BAD_GATEWAY;
    v->phrase = status_phrase(v->status);
    v->mime =
        e->failure == FAIL_NONE ? mime_plain : errpage_negotiate_fields(e->fields, e->nfields);
    if (v->mime == mime_html && e->page_dir != NULL && e->page_dir[0] != '\0')
        v->page = page_load(e->page_dir, v->status, &v->page_len);

    /* The one rendering (also for HEAD: its Content-Length is the body's). A status without
     * content (1xx, 204, 304: a fault's answer) has no body at all; a 205's is framed, empty. */
    bool content = h1out_status_has_content(v->status);
    struct sink body = {.buf = o->body, .cap = sizeof(o->body), .full = SINK_COUNT};
    const struct client_page *page = e->failure == FAIL_NONE && v->reason == NULL
                                         ? client_page_of(v) : NULL;
    o->body_at = o->body;
    if (!h1out_status_takes_content(v->status)) {
        /* no body */
    } else if (page != NULL) {
        o->body_at = page->body;
        body.total = page->len;
    } else {
        render_body(&body, v);
    }
    build_fields(v, o);
    o->head = (struct resp_head){
        .status = v->status,
        .fields = o->fields,
        .nfields = o->nfields,
        .framing = content ? H1_BODY_LENGTH : H1_BODY_NONE,
        .content_length = body.total,
        .close = e->close,
    };
    o->body_len = body.total;
    return 0;
}

long errpage_body(struct errpage_out *o, struct evbuffer *out)
{
    long n = 0;
    size_t len = o->body_len;
    if (o->e->head_only) {
        n = 0;
    } else if (len <= sizeof(o->body)) {
        n = evbuffer_add(out, o->body_at, len) == 0 ? (long)len : -1;
    } else { /* larger than the buffer: rendered again, streamed through it */
        struct sink s = {.buf = o->body, .cap = sizeof(o->body), .full = SINK_FLUSH, .out = out};
        render_body(&s, &o->view);
        sink_flush(&s);
        n = s.err ? -1 : (long)s.total;
    }
    errpage_release(o);
    return n;
}

void errpage_release(struct errpage_out *o)
{
    free(o->view.page);
    o->view.page = NULL;
}

long errpage_write(struct evbuffer *out, const struct errpage *e)
{
    struct errpage_out o;
    errpage_prepare(e, &o);
    if (hdr_write_head(out, &o.head, o.head.framing, e->http10, !e->close) != 0) {
        errpage_release(&o);
        return -1; /* no body without its head */
    }
    return errpage_body(&o, out);
}
