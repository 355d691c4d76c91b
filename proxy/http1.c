/*
 * http1.c — strict, incremental HTTP/1.1 message parser (RFC 9112, RFC 9110).
 *
 * Heads are parsed in one pass over the bytes with a single 256-entry class table; long runs of
 * request-target and field-value bytes are checked eight at a time. Nothing is allocated and
 * nothing global is written: the parser only returns spans into the caller's buffer.
 */
#include "portico/http1.h"

#include <limits.h>
#include <string.h>

#include "portico/status.h"

/* ---- byte classes ---- */

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_VCHAR(c) ((c) >= 0x21 && (c) <= 0x7e)
#define IS_TCHAR(c)                                                                            \
    (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||   \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||    \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define IS_HEX(c) (IS_DIGIT(c) || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define IS_UNRESERVED(c) (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' \
                          || (c) == '~')
#define IS_SUBDELIM(c)                                                                         \
    ((c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||     \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define CLS(c)                                                                                 \
    ((IS_TCHAR(c) ? H1_TCHAR : 0) |                                                            \
     ((IS_VCHAR(c) || (c) >= 0x80 || (c) == ' ' || (c) == '\t') ? H1_VALUE : 0) |              \
     (IS_VCHAR(c) ? H1_TARGET : 0) | (IS_HEX(c) ? H1_HEX : 0) |                                \
     ((IS_UNRESERVED(c) || IS_SUBDELIM(c)) ? H1_REGNAME : 0) |                                 \
     (((c) == '\t' || (c) == ' ' || (c) == 0x21 || ((c) >= 0x23 && (c) <= 0x5b) ||             \
       ((c) >= 0x5d && (c) <= 0x7e) || (c) >= 0x80) ? H1_QDTEXT : 0))
#define CLS4(b) CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define CLS16(b) CLS4(b), CLS4((b) + 4), CLS4((b) + 8), CLS4((b) + 12)
#define CLS64(b) CLS16(b), CLS16((b) + 16), CLS16((b) + 32), CLS16((b) + 48)

const unsigned char h1_class[256] = {CLS64(0), CLS64(64), CLS64(128), CLS64(192)};

#define LOW(c) ((unsigned char)(((c) >= 'A' && (c) <= 'Z') ? (c) + 32 : (c)))
#define LOW4(b) LOW(b), LOW((b) + 1), LOW((b) + 2), LOW((b) + 3)
#define LOW16(b) LOW4(b), LOW4((b) + 4), LOW4((b) + 8), LOW4((b) + 12)
#define LOW64(b) LOW16(b), LOW16((b) + 16), LOW16((b) + 32), LOW16((b) + 48)

static const unsigned char lower[256] = {LOW64(0), LOW64(64), LOW64(128), LOW64(192)};

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Eight bytes at a time: true when none is a CTL or DEL (HTAB included, it takes the slow path).
 * The usual "has byte less than n" trick is exact about whether any byte matches. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static uint64_t word_not_value(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    uint64_t ctl = (x - ONES * 0x20) & ~x & HIGHS;
    uint64_t del = ((x ^ (ONES * 0x7f)) - ONES) & ~(x ^ (ONES * 0x7f)) & HIGHS;
    return ctl | del;
}

/* Where the first CTL or DEL (HTAB included) of the eight bytes at p is, given their non-zero
 * word_not_value mask. In the mask the lowest flagged byte is always a true one (a borrow only
 * reaches bytes above it), and on a little-endian machine the lowest byte is the first. */
static size_t first_not_value(const unsigned char *p, uint64_t mask)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)p;
    return (size_t)__builtin_ctzll(mask) / 8;
#else
    (void)mask;
    size_t k = 0;
    while ((h1_class[p[k]] & H1_VALUE) && p[k] != '\t')
        k++;
    return k;
#endif
}

/* Same for request-target bytes: no CTL, SP, DEL or byte >= 0x80. */
static bool word_is_target(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    uint64_t low = (x - ONES * 0x21) & ~x & HIGHS;
    uint64_t del = ((x ^ (ONES * 0x7f)) - ONES) & ~(x ^ (ONES * 0x7f)) & HIGHS;
    return ((low | del) | (x & HIGHS)) == 0;
}

/* Case-insensitive match of s[0..n) with a NUL-terminated lowercase string, without strlen. */
static bool ieq(const char *s, size_t n, const char *low)
{
    for (size_t i = 0; i < n; i++) {
        if (low[i] == '\0' || lower[(unsigned char)s[i]] != (unsigned char)low[i])
            return false;
    }
    return low[n] == '\0';
}

/* The eight bytes of x with 'A'..'Z' lowered, exactly (any other byte, 0x80-0xff included, is
 * left alone): a byte is upper case when its low seven bits are >= 'A' and not > 'Z' and its
 * high bit is clear. No carry crosses a byte: seven bits plus 0x3f stay below 0x100. */
static uint64_t lower8(uint64_t x)
{
    uint64_t low7 = x & ~HIGHS;
    uint64_t ge_a = low7 + ONES * (0x80 - 'A');
    uint64_t gt_z = low7 + ONES * (0x80 - 'Z' - 1);
    return x | (((ge_a & ~gt_z & ~x) & HIGHS) >> 2);
}

/* Case-insensitive match of s[0..n) with the lowercase low[0..n), both at least n bytes long:
 * eight bytes at a time, the last word overlapping the one before. */
static bool ieq_len(const char *s, const char *low, size_t n)
{
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (lower[(unsigned char)s[i]] != (unsigned char)low[i])
                return false;
        return true;
    }
    uint64_t x, y;
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&x, s + i, sizeof x);
        memcpy(&y, low + i, sizeof y);
        if (lower8(x) != y)
            return false;
    }
    memcpy(&x, s + n - 8, sizeof x);
    memcpy(&y, low + n - 8, sizeof y);
    return lower8(x) == y;
}

/* ---- methods ---- */

static const char *const method_names[METHOD_COUNT] = {
#define X(id, name) [id] = name,
    METHOD_LIST(X)
#undef X
};

static const unsigned char method_lens[METHOD_COUNT] = {
#define X(id, name) [id] = sizeof(name) - 1,
    METHOD_LIST(X)
#undef X
};

/* A name of at most 8 bytes as one number, byte i in bits 8i to 8i+7 (folded at compile time):
 * a method is then found with one compare per name and no call to memcmp, whose cost for "GET"
 * (18 or 27 instructions) changed with where the literal landed in the binary. */
#define PACK_BYTE(s, i) (sizeof(s) > (i) + 1 ? (uint64_t)(unsigned char)(s)[i] << (8 * (i)) : 0)
#define PACK8(s)                                                                                   \
    (PACK_BYTE(s, 0) | PACK_BYTE(s, 1) | PACK_BYTE(s, 2) | PACK_BYTE(s, 3) | PACK_BYTE(s, 4) |   \
     PACK_BYTE(s, 5) | PACK_BYTE(s, 6) | PACK_BYTE(s, 7))

static const uint64_t method_packed[METHOD_COUNT] = {
#define X(id, name) [id] = PACK8(name),
    METHOD_LIST(X)
#undef X
};
_Static_assert(sizeof("OPTIONS") <= 8 && sizeof("CONNECT") <= 8, "method names fit 8 bytes");

const char *h1_method_name(enum http_method m)
{
    return (unsigned)m < METHOD_COUNT ? method_names[m] : "";
}

enum http_method h1_method_of(const char *token, size_t len)
{
    if (len > 8)
        return METHOD_OTHER;
    uint64_t packed = 0;
    for (size_t i = 0; i < len; i++)
        packed |= (uint64_t)(unsigned char)token[i] << (8 * i);
    for (int m = METHOD_OTHER + 1; m < METHOD_COUNT; m++)
        if (packed == method_packed[m] && len == method_lens[m])
            return (enum http_method)m;
    return METHOD_OTHER;
}

/* ---- head parsing ---- */

/* One head being parsed: the bytes, how far we may look and which statuses errors carry. */
struct head {
    const unsigned char *b;     /* borrowed: the caller's buffer */
    size_t len;                 /* bytes available */
    size_t max;                 /* head limit (clamped to INT_MAX so the length fits the return) */
    size_t end;                 /* min(len, max): the parser never reads at or past it */
    enum http_status bad;       /* malformed input: 400 or 502 */
    enum http_status too_large; /* an oversized head or too many fields: 431 or 502 */
    struct h1_error *err;
};

static int fail(struct h1_error *err, enum http_status status, const char *reason, size_t offset)
{
    err->status = status;
    err->reason = reason;
    err->offset = offset;
    return -1;
}

/* The parser needs byte `at` and it is not there (at == end): more input, or the head cannot
 * fit in max bytes any more. */
static int need_more(const struct head *h, size_t at)
{
    if (at >= h->max)
        return fail(h->err, h->too_large, "header section too large", at);
    return -2;
}

/* Reason for a byte that ends a line or a token where it should not. */
static const char *bad_byte(unsigned char c, const char *otherwise)
{
    if (c == '\n')
        return "bare LF";
    return otherwise;
}

/* Checks the CRLF whose CR is at i; returns 0, -2 or -1. */
static int expect_crlf(const struct head *h, size_t i)
{
    if (i + 1 >= h->end)
        return need_more(h, i + 1);
    if (h->b[i + 1] != '\n')
        return fail(h->err, h->bad, "bare CR", i);
    return 0;
}

/*
 * Field lines from i until the empty line. Fills fields[0..*nfields) and returns the head
 * length, -2 or -1; on -2 and -1, *nfields counts the lines read whole before the one that
 * stopped it (a refused head's X-Request-Id: client.c).
 */
static int parse_fields(const struct head *h, size_t i, struct h1_field *fields, size_t max_fields,
                        size_t *nfields)
{
    const unsigned char *b = h->b;
    size_t end = h->end;
    size_t n = 0;
    int rc;

    for (;;) {
        if (i >= end) {
            rc = need_more(h, i);
            goto stop;
        }
        if (b[i] == '\r') {
            if ((rc = expect_crlf(h, i)) != 0)
                goto stop;
            *nfields = n;
            return (int)(i + 2);
        }
        size_t name = i;
        /* Four bytes a step while all four are tchars, then one at a time to the first that
         * is not: every byte is still checked. */
        while (i + 4 <= end && (h1_class[b[i]] & h1_class[b[i + 1]] & h1_class[b[i + 2]] &
                                h1_class[b[i + 3]] & H1_TCHAR))
            i += 4;
        while (i < end && (h1_class[b[i]] & H1_TCHAR))
            i++;
        if (i >= end) {
            rc = need_more(h, i);
            goto stop;
        }
        if (b[i] != ':') {
            if (i == name && is_ows(b[i])) {
                rc = fail(h->err, h->bad, "obsolete line folding", i);
                n -= n > 0; /* the line before goes on here (RFC 9112 5.2): it was not whole */
                goto stop;
            }
            if (i > name && is_ows(b[i])) {
                rc = fail(h->err, h->bad, "whitespace before colon in header field", i);
                goto stop;
            }
            if (b[i] == '\r') {
                rc = fail(h->err, h->bad, "header field without colon", i);
                goto stop;
            }
            rc = fail(h->err, h->bad, bad_byte(b[i], "invalid character in field name"), i);
            goto stop;
        }
        if (i == name) {
            rc = fail(h->err, h->bad, "empty field name", i);
            goto stop;
        }
        /* Counted once the name is known good, so the field past max_fields is refused on sight. */
        if (n == max_fields) {
            rc = fail(h->err, h->too_large, "too many header fields", name);
            goto stop;
        }
        size_t name_len = i - name;
        i++;
        while (i < end && is_ows(b[i]))
            i++;
        size_t value = i;
        for (;;) {
            uint64_t mask = 0;
            while (i + 8 <= end && (mask = word_not_value(b + i)) == 0)
                i += 8;
            if (mask == 0) { /* under eight bytes left: one by one */
                while (i < end && (h1_class[b[i]] & H1_VALUE))
                    i++;
                break;
            }
            /* The word test also stops on HTAB, a value byte: go on past it. */
            i += first_not_value(b + i, mask);
            if (b[i] != '\t')
                break;
            i++;
        }
        if (i >= end) {
            rc = need_more(h, i);
            goto stop;
        }
        if (b[i] != '\r') {
            rc = fail(h->err, h->bad, bad_byte(b[i], "invalid character in field value"), i);
            goto stop;
        }
        if ((rc = expect_crlf(h, i)) != 0)
            goto stop;
        size_t value_end = i;
        while (value_end > value && is_ows(b[value_end - 1]))
            value_end--;
        fields[n].name = (const char *)b + name;
        fields[n].name_len = name_len;
        fields[n].id = h1_field_id_of(fields[n].name, name_len);
        fields[n].value = (const char *)b + value;
        fields[n].value_len = value_end - value;
        n++;
        i += 2;
    }
stop:
    *nfields = n;
    return rc;
}

/* Where the request line may end: content bytes stop at rl_max (414 beyond), all at end. */
struct rline {
    size_t stop;   /* min(end, rl_max) */
    size_t rl_max; /* start + max_request_line, saturated */
};

static int rline_more(const struct head *h, const struct rline *rl, size_t at)
{
    if (at == rl->rl_max && at < h->len)
        return fail(h->err, HTTP_URI_TOO_LONG, "request line too long", at);
    return need_more(h, at);
}

/* "HTTP/" DIGIT "." DIGIT at i, checked byte by byte as far as bytes go (up to stop). Returns 0
 * with *major / *minor, -2 when stop came first or -1 on a bad byte; *bad_at says where. */
static int parse_version(const struct head *h, size_t i, size_t stop, int *major, int *minor,
                         size_t *bad_at)
{
    static const char proto[] = "HTTP/";

    /* Nearly every message says HTTP/1.1: one eight-byte compare, the same answer. */
    if (i + 8 <= stop && memcmp(h->b + i, "HTTP/1.1", 8) == 0) {
        *major = 1;
        *minor = 1;
        return 0;
    }
    for (size_t k = 0; k < 8; k++, i++) {
        if (i >= stop) {
            *bad_at = i;
            return -2;
        }
        unsigned char c = h->b[i];
        bool ok = k < 5 ? c == (unsigned char)proto[k] : k == 6 ? c == '.' : IS_DIGIT(c);
        if (!ok) {
            *bad_at = i;
            return -1;
        }
    }
    *major = h->b[i - 3] - '0';
    *minor = h->b[i - 1] - '0';
    return 0;
}

static int parse_request(const char *buf, size_t len, const struct h1_limits *lim,
                         size_t max_fields, struct h1_request *req, struct h1_error *err)
{
    struct head h = {
        .b = (const unsigned char *)buf,
        .len = len,
        .max = lim->max_head < (size_t)INT_MAX ? lim->max_head : (size_t)INT_MAX,
        .bad = HTTP_BAD_REQUEST,
        .too_large = HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
        .err = err,
    };
    h.end = len < h.max ? len : h.max;
    const unsigned char *b = h.b;
    size_t i = 0;
    int rc;
    err->head_method = false;

    /* RFC 9112 2.2: empty lines before the request line are ignored; they count in the head. */
    while (i < h.end && b[i] == '\r') {
        if ((rc = expect_crlf(&h, i)) != 0)
            return rc;
        i += 2;
    }

    size_t start = i;
    struct rline rl;
    rl.rl_max = lim->max_request_line < SIZE_MAX - start ? start + lim->max_request_line
                                                         : SIZE_MAX;
    rl.stop = h.end < rl.rl_max ? h.end : rl.rl_max;

    /* method SP */
    while (i < rl.stop && (h1_class[b[i]] & H1_TCHAR))
        i++;
    if (i >= rl.stop)
        return rline_more(&h, &rl, i);
    if (b[i] != ' ' || i == start)
        return fail(err, HTTP_BAD_REQUEST, bad_byte(b[i], "invalid method"), i);
    req->method = buf + start;
    req->method_len = i - start;
    req->method_id = h1_method_of(req->method, req->method_len);
    err->head_method = req->method_id == METHOD_HEAD;
    i++;

    /* request-target SP */
    size_t target = i;
    while (i + 8 <= rl.stop && word_is_target(b + i))
        i += 8;
    while (i < rl.stop && (h1_class[b[i]] & H1_TARGET))
        i++;
    if (i >= rl.stop)
        return rline_more(&h, &rl, i);
    if (b[i] == '\r')
        return fail(err, HTTP_BAD_REQUEST, "missing HTTP version", i);
    if (b[i] != ' ')
        return fail(err, HTTP_BAD_REQUEST,
                    bad_byte(b[i], "invalid character in request-target"), i);
    if (i == target)
        return fail(err, HTTP_BAD_REQUEST, "empty request-target", i);
    req->target = buf + target;
    req->target_len = i - target;
    i++;

    /* HTTP-version CRLF: the CR may sit right at the request-line limit. */
    int major = 0, minor = 0;
    size_t at = 0;
    rc = parse_version(&h, i, rl.stop, &major, &minor, &at);
    if (rc == -2)
        return rline_more(&h, &rl, at);
    if (rc == -1)
        return fail(err, HTTP_BAD_REQUEST, bad_byte(b[at], "invalid HTTP version"), at);
    i += 8;
    if (i >= h.end)
        return need_more(&h, i);
    if (b[i] != '\r')
        return fail(err, HTTP_BAD_REQUEST, bad_byte(b[i], "invalid HTTP version"), i);
    if ((rc = expect_crlf(&h, i)) != 0)
        return rc;
    if (major != 1 || minor > 1)
        return fail(err, HTTP_HTTP_VERSION_NOT_SUPPORTED, "HTTP version not supported", i - 8);
    req->minor = minor;
    i += 2;

    return parse_fields(&h, i, req->fields, max_fields, &req->nfields);
}

int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim,
                     struct h1_request *req, struct h1_error *err)
{
    /* A request line refused has no fields (parse_fields counts them). Stored here, not in
     * parse_request: there it cost 5 instructions a request (callgrind), spilling registers. */
    req->nfields = 0;
    return parse_request(buf, len, lim, H1_MAX_FIELDS, req, err);
}

int h1_parse_forwarded_request(const char *buf, size_t len, const struct h1_limits *lim,
                               struct h1_request *req, struct h1_error *err)
{
    return parse_request(buf, len, lim, H1_MAX_FIELDS_FORWARDED, req, err);
}

int h1_parse_response(const char *buf, size_t len, size_t max_head, struct h1_response *resp,
                      struct h1_error *err)
{
    struct head h = {
        .b = (const unsigned char *)buf,
        .len = len,
        .max = max_head < (size_t)INT_MAX ? max_head : (size_t)INT_MAX,
        .bad = HTTP_BAD_GATEWAY,
        .too_large = HTTP_BAD_GATEWAY,
        .err = err,
    };
    h.end = len < h.max ? len : h.max;
    const unsigned char *b = h.b;
    size_t i = 0;
    int rc;

    int major = 0, minor = 0;
    size_t at = 0;
    rc = parse_version(&h, i, h.end, &major, &minor, &at);
    if (rc == -2)
        return need_more(&h, at);
    if (rc == -1)
        return fail(err, HTTP_BAD_GATEWAY,
                    bad_byte(b[at], "invalid HTTP version in status line"), at);
    if (major != 1 || minor > 1)
        return fail(err, HTTP_BAD_GATEWAY, "unsupported HTTP version in status line", 5);
    i += 8;
    if (i >= h.end)
        return need_more(&h, i);
    if (b[i] != ' ')
        return fail(err, HTTP_BAD_GATEWAY, bad_byte(b[i], "invalid status line"), i);
    i++;

    int status = 0;
    for (int k = 0; k < 3; k++, i++) {
        if (i >= h.end)
            return need_more(&h, i);
        if (!IS_DIGIT(b[i]) || (k == 0 && b[i] == '0'))
            return fail(err, HTTP_BAD_GATEWAY, bad_byte(b[i], "invalid status code"), i);
        status = status * 10 + (b[i] - '0');
    }
    if (i >= h.end)
        return need_more(&h, i);
    size_t reason = i;
    if (b[i] == ' ') {
        reason = ++i;
        while (i < h.end && (h1_class[b[i]] & H1_VALUE))
            i++;
        if (i >= h.end)
            return need_more(&h, i);
    }
    if (b[i] != '\r')
        return fail(err, HTTP_BAD_GATEWAY, bad_byte(b[i], "invalid character in status line"), i);
    if ((rc = expect_crlf(&h, i)) != 0)
        return rc;
    resp->minor = minor;
    resp->status = status;
    resp->reason = buf + reason;
    resp->reason_len = i - reason;
    i += 2;

    return parse_fields(&h, i, resp->fields, H1_MAX_FIELDS, &resp->nfields);
}

/* ---- field helpers ---- */

bool h1_is_tchar(unsigned char c)
{
    return (h1_class[c] & H1_TCHAR) != 0;
}

bool h1_name_is(const struct h1_field *f, const char *lower_name)
{
    return ieq(f->name, f->name_len, lower_name);
}

/* Every name the look-up knows, with its id: the H1_FIELD_LIST ones at their ids (index 0,
 * H1_F_OTHER, is "no name"), then the H1_PROXY_CLAIM_LIST ones, all H1_F_PROXY_CLAIM. */
static const struct {
    const char *name;
    uint8_t len;
    uint8_t id;
} field_names[] = {
#define X(id, name) [id] = {name, sizeof(name) - 1, id},
    H1_FIELD_LIST(X)
#undef X
#define X(name) {name, sizeof(name) - 1, H1_F_PROXY_CLAIM},
    H1_PROXY_CLAIM_LIST(X)
#undef X
};

/* Every known name is told apart by its length and a sum of its first and last letters: one
 * slot each (an index into field_names), filled before main (no worker has started), so a
 * look-up is one table read and one compare. The first letter alone no longer told X-Url-Scheme
 * from X-Request-Id. '&31' makes the sum case-blind. test_http1 checks that no two names share
 * a slot. */
#define FIELD_NAME_MAX 24
#define FIELD_NAMES (sizeof(field_names) / sizeof(field_names[0]))
#define X(name) +1
_Static_assert(FIELD_NAMES == H1_F_COUNT + (0 H1_PROXY_CLAIM_LIST(X)), "claims follow the ids");
#undef X
static uint8_t field_slot[FIELD_NAME_MAX][32];

static inline unsigned slot_of(const char *name, size_t len)
{
    return ((unsigned char)name[0] + 3u * (unsigned char)name[len - 1]) & 31;
}

__attribute__((constructor)) static void field_slots_fill(void)
{
    _Static_assert(FIELD_NAMES <= UINT8_MAX, "name indexes fit a slot");
    for (size_t k = FIELD_NAMES - 1; k > H1_F_OTHER; k--)
        if (field_names[k].len > 0 && field_names[k].len < FIELD_NAME_MAX)
            field_slot[field_names[k].len][slot_of(field_names[k].name, field_names[k].len)] =
                (uint8_t)k;
}

#define CLAIM_PREFIX_LEN (sizeof(H1_PROXY_CLAIM_PREFIX) - 1)

/* X-Forwarded-Port, -Ssl, -Prefix ...: a class, not a list (README). Out of line: inlined,
 * this second compare made every look-up save five registers (callgrind: +17 instructions a
 * look-up, +170 a small request, where +4 are left). */
__attribute__((noinline)) static enum h1_field_id claim_by_prefix(const char *name)
{
    return ieq_len(name, H1_PROXY_CLAIM_PREFIX, CLAIM_PREFIX_LEN) ? H1_F_PROXY_CLAIM : H1_F_OTHER;
}

enum h1_field_id h1_field_id_of(const char *name, size_t len)
{
    if (len - 1 < FIELD_NAME_MAX - 1) { /* 1 to FIELD_NAME_MAX - 1 bytes */
        unsigned k = field_slot[len][slot_of(name, len)];
        /* the slot's name has this length: one compare of len bytes */
        if (k != H1_F_OTHER && ieq_len(name, field_names[k].name, len))
            return (enum h1_field_id)field_names[k].id;
    }
    if (len < CLAIM_PREFIX_LEN || lower[(unsigned char)name[0]] != 'x')
        return H1_F_OTHER;
    return claim_by_prefix(name);
}

int h1_find(const struct h1_field *fields, size_t n, enum h1_field_id id, size_t from)
{
    /* indexes past INT_MAX cannot be returned: the bound is taken once, not per field */
    size_t end = n <= (size_t)INT_MAX ? n : (size_t)INT_MAX + 1;
    for (size_t i = from; i < end; i++)
        if (fields[i].id == id)
            return (int)i;
    return -1;
}

int h1_find_field(const struct h1_field *fields, size_t n, const char *lower_name, size_t from)
{
    for (size_t i = from; i < n && i <= (size_t)INT_MAX; i++) {
        if (ieq(fields[i].name, fields[i].name_len, lower_name))
            return (int)i;
    }
    return -1;
}

size_t h1_skip_to(const char *p, size_t len, char delim, bool angles)
{
    /* Outside quotes and angles each byte is three compares; a quoted-string or <...> is
     * skipped by a loop of its own. An unclosed one runs to len. */
    size_t i = 0;
    while (i < len) {
        char c = p[i];
        if (c == '"') {
            for (i++; i < len && p[i] != '"'; i++)
                if (p[i] == '\\' && i + 1 < len)
                    i++;
            if (i < len)
                i++;
        } else if (angles && c == '<') {
            for (i++; i < len && p[i] != '>'; i++)
                ;
            if (i < len)
                i++;
        } else if (c == delim) {
            break;
        } else {
            i++;
        }
    }
    return i;
}

/* The next non-empty element, trimmed of OWS; commas in quoted-strings (and <...> when angles)
 * do not end it. */
static bool list_next(const char *value, size_t value_len, size_t *pos, const char **elem,
                      size_t *elem_len, bool angles)
{
    size_t i = *pos;
    for (;;) {
        while (i < value_len && (is_ows((unsigned char)value[i]) || value[i] == ','))
            i++;
        if (i >= value_len) {
            *pos = value_len;
            return false;
        }
        size_t start = i;
        i += h1_skip_to(value + i, value_len - i, ',', angles);
        size_t end = i;
        while (end > start && is_ows((unsigned char)value[end - 1]))
            end--;
        *pos = i;
        if (end > start) {
            *elem = value + start;
            *elem_len = end - start;
            return true;
        }
    }
}

bool h1_list_next(const char *value, size_t value_len, size_t *pos, const char **elem,
                  size_t *elem_len)
{
    return list_next(value, value_len, pos, elem, elem_len, false);
}

bool h1_link_next(const char *value, size_t value_len, size_t *pos, const char **elem,
                  size_t *elem_len)
{
    return list_next(value, value_len, pos, elem, elem_len, true);
}

bool h1_info_has_body(const struct h1_info *info)
{
    return info->framing == H1_BODY_CHUNKED ||
           (info->framing == H1_BODY_LENGTH && info->content_length > 0);
}

bool h1_connection_has(const struct h1_field *fields, size_t n, const char *lower_token)
{
    return h1_list_has(fields, n, "connection", lower_token);
}

bool h1_list_has(const struct h1_field *fields, size_t n, const char *lower_name,
                 const char *lower_token)
{
    for (size_t i = 0; i < n; i++) {
        if (!ieq(fields[i].name, fields[i].name_len, lower_name))
            continue;
        size_t pos = 0, elen;
        const char *e;
        while (h1_list_next(fields[i].value, fields[i].value_len, &pos, &e, &elen)) {
            if (ieq(e, elen, lower_token))
                return true;
        }
    }
    return false;
}

/* ---- semantic pass ---- */

/* What one walk over the fields learned; request_info and response_info judge it. */
struct scan {
    bool has_cl;                  /* at least one Content-Length field */
    uint64_t cl;                  /* its value */
    const char *cl_error;         /* invalid or differing Content-Length */
    bool has_te;                  /* at least one Transfer-Encoding field */
    const char *te_error;         /* malformed Transfer-Encoding */
    unsigned te_chunked;          /* times chunked was listed */
    bool te_chunked_not_last;     /* a coding followed chunked */
    bool te_other;                /* a (well-formed) coding other than chunked */
    bool te_last_chunked;         /* the final coding is chunked */
    bool conn_close;              /* Connection: close */
    bool conn_keep_alive;         /* Connection: keep-alive */
    size_t nhost;                 /* Host fields */
    const struct h1_field *host;  /* borrowed: the first one */
    bool expect_continue;         /* Expect: 100-continue */
    bool expect_other;            /* any other expectation */
};

/* Content-Length = 1*DIGIT; a list of identical values is tolerated (RFC 9110 8.6). */
static void scan_content_length(struct scan *s, const struct h1_field *f)
{
    const unsigned char *v = (const unsigned char *)f->value;
    size_t n = f->value_len, i = 0;

    for (;;) {
        size_t digits = i;
        uint64_t x = 0;
        while (i < n && IS_DIGIT(v[i])) {
            unsigned d = v[i] - '0';
            if (x > (H1_MAX_LENGTH - d) / 10) {
                s->cl_error = "Content-Length too large";
                return;
            }
            x = x * 10 + d;
            i++;
        }
        if (i == digits) {
            s->cl_error = "invalid Content-Length";
            return;
        }
        if (s->has_cl && x != s->cl) {
            s->cl_error = "differing Content-Length values";
            return;
        }
        s->has_cl = true;
        s->cl = x;
        while (i < n && is_ows(v[i]))
            i++;
        if (i == n)
            return;
        if (v[i] != ',') {
            s->cl_error = "invalid Content-Length";
            return;
        }
        i++;
        while (i < n && is_ows(v[i]))
            i++;
    }
}

/* token / quoted-string at v[*i]; advances *i. */
static bool skip_token_or_qs(const unsigned char *v, size_t n, size_t *i)
{
    size_t k = *i;

    if (k < n && v[k] == '"') {
        for (k++; k < n; k++) {
            if (v[k] == '"') {
                *i = k + 1;
                return true;
            }
            if (v[k] == '\\') {
                if (++k >= n || !(h1_class[v[k]] & H1_VALUE))
                    return false;
            } else if (!(h1_class[v[k]] & H1_QDTEXT)) {
                return false;
            }
        }
        return false;
    }
    while (k < n && (h1_class[v[k]] & H1_TCHAR))
        k++;
    if (k == *i)
        return false;
    *i = k;
    return true;
}

/* transfer-coding = token *( OWS ";" OWS token BWS "=" BWS ( token / quoted-string ) ) */
static bool coding_valid(const char *e, size_t n)
{
    const unsigned char *v = (const unsigned char *)e;
    size_t i = 0;

    if (!skip_token_or_qs(v, n, &i) || v[0] == '"')
        return false;
    for (;;) {
        while (i < n && is_ows(v[i]))
            i++;
        if (i == n)
            return true;
        if (v[i++] != ';')
            return false;
        while (i < n && is_ows(v[i]))
            i++;
        if (i >= n || v[i] == '"' || !skip_token_or_qs(v, n, &i))
            return false;
        while (i < n && is_ows(v[i]))
            i++;
        if (i >= n || v[i++] != '=')
            return false;
        while (i < n && is_ows(v[i]))
            i++;
        if (!skip_token_or_qs(v, n, &i))
            return false;
    }
}

static void scan_transfer_encoding(struct scan *s, const struct h1_field *f)
{
    size_t pos = 0, elen;
    const char *e;
    bool any = false;

    s->has_te = true;
    while (h1_list_next(f->value, f->value_len, &pos, &e, &elen)) {
        any = true;
        if (s->te_chunked > 0)
            s->te_chunked_not_last = true;
        if (elen == 7 && ieq_len(e, "chunked", 7)) {
            s->te_chunked++;
            s->te_last_chunked = true;
            continue;
        }
        s->te_last_chunked = false;
        if (!coding_valid(e, elen))
            s->te_error = "invalid Transfer-Encoding";
        else
            s->te_other = true;
    }
    if (!any)
        s->te_error = "empty Transfer-Encoding";
}

static void scan_connection(struct scan *s, const struct h1_field *f)
{
    size_t pos = 0, elen;
    const char *e;

    /* The usual values are one token alone (the parser trimmed the OWS around it): the walk
     * would find just that element. */
    if (f->value_len == 10 && ieq_len(f->value, "keep-alive", 10)) {
        s->conn_keep_alive = true;
        return;
    }
    if (f->value_len == 5 && ieq_len(f->value, "close", 5)) {
        s->conn_close = true;
        return;
    }
    while (h1_list_next(f->value, f->value_len, &pos, &e, &elen)) {
        /* by length first: then one word compare */
        if (elen == 5 && ieq_len(e, "close", 5))
            s->conn_close = true;
        else if (elen == 10 && ieq_len(e, "keep-alive", 10))
            s->conn_keep_alive = true;
    }
}

static void scan_expect(struct scan *s, const struct h1_field *f)
{
    size_t pos = 0, elen;
    const char *e;

    while (h1_list_next(f->value, f->value_len, &pos, &e, &elen)) {
        if (elen == 12 && ieq_len(e, "100-continue", 12))
            s->expect_continue = true;
        else
            s->expect_other = true;
    }
}

/* One pass over the fields; dispatch on the name length first so most fields cost one compare. */
static void scan_fields(struct scan *s, const struct h1_field *fields, size_t n, bool request)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        const struct h1_field *f = &fields[i];
        switch (f->name_len) {
        case 4:
            if (request && ieq_len(f->name, "host", 4)) {
                if (s->nhost++ == 0)
                    s->host = f;
            }
            break;
        case 6:
            if (request && ieq_len(f->name, "expect", 6))
                scan_expect(s, f);
            break;
        case 10:
            if (ieq_len(f->name, "connection", 10))
                scan_connection(s, f);
            break;
        case 14:
            if (ieq_len(f->name, "content-length", 14) && s->cl_error == NULL)
                scan_content_length(s, f);
            break;
        case 17:
            if (ieq_len(f->name, "transfer-encoding", 17))
                scan_transfer_encoding(s, f);
            break;
        default:
            break;
        }
    }
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2). The absolute-form authority is
 * checked here too (request.c), so a value is refused or accepted the same way in both. */
bool h1_host_valid(const char *value, size_t n)
{
    const unsigned char *v = (const unsigned char *)value;
    size_t i = 0;

    if (n > 0 && v[0] == '[') {
        /* IP-literal: IPv6address / IPvFuture, checked for its alphabet only. */
        for (i = 1; i < n && v[i] != ']'; i++) {
            if (!(h1_class[v[i]] & H1_REGNAME) && v[i] != ':')
                return false;
        }
        if (i == n || i == 1)
            return false;
        i++;
    } else {
        while (i < n && v[i] != ':') {
            if (v[i] == '%') {
                if (i + 2 >= n || !(h1_class[v[i + 1]] & H1_HEX) || !(h1_class[v[i + 2]] & H1_HEX))
                    return false;
                i += 3;
                continue;
            }
            if (!(h1_class[v[i]] & H1_REGNAME))
                return false;
            i++;
        }
    }
    if (i == n)
        return true;
    if (v[i++] != ':')
        return false;
    for (; i < n; i++) {
        if (!IS_DIGIT(v[i]))
            return false;
    }
    return true;
}

static bool keep_alive(const struct scan *s, int minor)
{
    if (s->conn_close)
        return false;
    return minor >= 1 || s->conn_keep_alive;
}

/* Semantic errors have no byte offset of their own: they report 0. */
int h1_request_info(const struct h1_request *req, struct h1_info *info, struct h1_error *err)
{
    struct scan s;

    scan_fields(&s, req->fields, req->nfields, true);
    memset(info, 0, sizeof *info);
    info->framing = H1_BODY_NONE;

    if (s.cl_error != NULL)
        return fail(err, HTTP_BAD_REQUEST, s.cl_error, 0);
    if (s.has_te) {
        if (req->minor == 0)
            return fail(err, HTTP_BAD_REQUEST, "Transfer-Encoding in HTTP/1.0 request", 0);
        if (s.has_cl)
            return fail(err, HTTP_BAD_REQUEST, "both Transfer-Encoding and Content-Length", 0);
        if (s.te_error != NULL)
            return fail(err, HTTP_BAD_REQUEST, s.te_error, 0);
        if (s.te_chunked > 1)
            return fail(err, HTTP_BAD_REQUEST, "chunked transfer coding applied twice", 0);
        if (s.te_chunked_not_last)
            return fail(err, HTTP_BAD_REQUEST, "chunked is not the final transfer coding", 0);
        if (s.te_other)
            return fail(err, HTTP_NOT_IMPLEMENTED, "unsupported transfer coding", 0);
        info->framing = H1_BODY_CHUNKED;
    } else if (s.has_cl) {
        info->framing = H1_BODY_LENGTH;
        info->content_length = s.cl;
    }
    if (s.nhost > 1)
        return fail(err, HTTP_BAD_REQUEST, "repeated Host header field", 0);
    if (s.nhost == 0 && req->minor >= 1)
        return fail(err, HTTP_BAD_REQUEST, "missing Host header field", 0);
    if (s.host != NULL && !h1_host_valid(s.host->value, s.host->value_len))
        return fail(err, HTTP_BAD_REQUEST, "invalid Host header field", 0);

    info->keep_alive = keep_alive(&s, req->minor);
    info->expect_continue = s.expect_continue;
    info->expect_other = s.expect_other;
    info->host = s.host;
    return 0;
}

int h1_response_info(const struct h1_response *resp, enum http_method method,
                     struct h1_info *info, struct h1_error *err)
{
    struct scan s;
    int st = resp->status;

    scan_fields(&s, resp->fields, resp->nfields, false);
    memset(info, 0, sizeof *info);
    info->framing = H1_BODY_NONE;
    info->keep_alive = keep_alive(&s, resp->minor);

    /* Garbage Content-Length is refused even where it does not frame the body. */
    if (s.cl_error != NULL)
        return fail(err, HTTP_BAD_GATEWAY, s.cl_error, 0);

    /* RFC 9112 6.3 items 1 and 2: no body whatever the fields say. */
    bool informational = st / 100 == 1;
    bool tunnel = method == METHOD_CONNECT && st / 100 == 2;
    if (informational || st == HTTP_NO_CONTENT || st == HTTP_NOT_MODIFIED ||
        method == METHOD_HEAD || tunnel)
        return 0;

    if (s.has_te) {
        if (resp->minor == 0)
            return fail(err, HTTP_BAD_GATEWAY, "Transfer-Encoding in HTTP/1.0 response", 0);
        if (s.has_cl)
            return fail(err, HTTP_BAD_GATEWAY, "both Transfer-Encoding and Content-Length", 0);
        if (s.te_error != NULL)
            return fail(err, HTTP_BAD_GATEWAY, s.te_error, 0);
        if (s.te_chunked > 1)
            return fail(err, HTTP_BAD_GATEWAY, "chunked transfer coding applied twice", 0);
        if (s.te_last_chunked) {
            info->framing = H1_BODY_CHUNKED;
            return 0;
        }
        /* Item 4: chunked not final, the body runs to the close. */
        info->framing = H1_BODY_CLOSE;
        info->keep_alive = false;
        return 0;
    }
    if (s.has_cl) {
        info->framing = H1_BODY_LENGTH;
        info->content_length = s.cl;
        return 0;
    }
    info->framing = H1_BODY_CLOSE;
    info->keep_alive = false;
    return 0;
}
