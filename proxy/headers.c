/*
 * headers.c — forwarding rules for header sections. See headers.h.
 */
#include "portico/headers.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "portico/h1out.h"
#include "portico/status.h"
#include "portico/util.h"

#define VIA_VALUE "1.1 portico"

/* Fields that only concern one connection (RFC 9110 7.6.1, RFC 9112), plus Proxy-Connection
 * which old clients still send. Content-Length is rewritten by us, so it is dropped too. */
static const unsigned hop_fields =
    H1_FIELD_BIT(H1_F_CONNECTION) | H1_FIELD_BIT(H1_F_KEEP_ALIVE) |
    H1_FIELD_BIT(H1_F_PROXY_CONNECTION) | H1_FIELD_BIT(H1_F_TE) | H1_FIELD_BIT(H1_F_TRAILER) |
    H1_FIELD_BIT(H1_F_TRANSFER_ENCODING) | H1_FIELD_BIT(H1_F_UPGRADE) |
    H1_FIELD_BIT(H1_F_CONTENT_LENGTH);

static bool static_hop(const struct h1_field *f)
{
    return (hop_fields & H1_FIELD_BIT(h1_field_id(f))) != 0;
}

/* What Portico removes from a request or writes in it itself. */
static const unsigned portico_fields =
    hop_fields | H1_FIELD_BIT(H1_F_X_FORWARDED_FOR) | H1_FIELD_BIT(H1_F_X_FORWARDED_PROTO) |
    H1_FIELD_BIT(H1_F_X_FORWARDED_HOST) | H1_FIELD_BIT(H1_F_FORWARDED) |
    H1_FIELD_BIT(H1_F_X_REAL_IP) | H1_FIELD_BIT(H1_F_PROXY_CLAIM) |
    H1_FIELD_BIT(H1_F_X_REQUEST_ID) | H1_FIELD_BIT(H1_F_PORTICO_FAULT) |
    H1_FIELD_BIT(H1_F_PORTICO_MIRROR);

/* Whose '_' twins go: those, and Max-Forwards, which Portico rewrites on OPTIONS and TRACE and
 * which means nothing on other methods (HTTP_MAX_FORWARDS would hold the client's number too). */
static const unsigned twin_fields = portico_fields | H1_FIELD_BIT(H1_F_MAX_FORWARDS);

/* Whether f is one of twin_fields spelt with '_' for '-' ("X_Forwarded_Proto"). CGI, WSGI and
 * Rack servers read both spellings as one variable (HTTP_X_FORWARDED_PROTO): the client's
 * value came first ("https,http"), and the first is what an application may take (Django's
 * SECURE_PROXY_SSL_HEADER). nginx drops every name with '_' for this; only these twins go. */
static bool underscore_twin(const struct h1_field *f)
{
    if (!memchr(f->name, '_', f->name_len))
        return false;
    /* Longer than every known name: only an X-Forwarded-* name can match, and its first
     * bytes say so (h1_field_id_of gives a name that long its prefix's id). */
    char name[32];
    size_t n = MIN(f->name_len, sizeof(name));
    for (size_t i = 0; i < n; i++)
        name[i] = f->name[i] == '_' ? '-' : f->name[i];
    enum h1_field_id id = h1_field_id_of(name, n);
    return id != H1_F_OTHER && (twin_fields & H1_FIELD_BIT(id));
}

/* Client-Cert, Client-Cert-Chain (RFC 9440) and Client-Cert-Verify, or one of them spelt with
 * '_' (read as one by CGI-style servers): Portico's word on the client's certificate, which a
 * client's own must never pass for (RFC 9440 4), whether or not a certificate was asked for. */
static bool client_cert_field(const struct h1_field *f)
{
    /* by length: a name of another length (most) costs two compares, every request */
    static const char client_cert[] = "client-cert", chain[] = "client-cert-chain",
                      verify[] = "client-cert-verify";
    size_t n = f->name_len;
    const char *name = n == sizeof(client_cert) - 1 ? client_cert
                       : n == sizeof(chain) - 1     ? chain
                       : n == sizeof(verify) - 1    ? verify
                                                    : NULL;
    if (!name || (f->name[0] | 0x20) != 'c')
        return false;
    for (size_t i = 1; i < n; i++)
        if ((f->name[i] == '_' ? '-' : (f->name[i] | 0x20)) != name[i])
            return false;
    return true;
}

/* X-Original-URL and X-Rewrite-URL (IIS's): a path other than the one Portico routed by. */
static bool path_override(const struct h1_field *f)
{
    return h1_name_is(f, "x-original-url") || h1_name_is(f, "x-rewrite-url");
}

static bool named_by_connection(const struct h1_field *f, const struct h1_field *fields, size_t n)
{
    for (int i = h1_find(fields, n, H1_F_CONNECTION, 0); i >= 0;
         i = h1_find(fields, n, H1_F_CONNECTION, (size_t)i + 1)) {
        size_t pos = 0;
        const char *e;
        size_t elen;
        while (h1_list_next(fields[i].value, fields[i].value_len, &pos, &e, &elen))
            if (elen == f->name_len && strncasecmp(e, f->name, elen) == 0)
                return true;
    }
    return false;
}

bool hdr_is_hop_by_hop(const struct h1_field *f, const struct h1_field *fields, size_t n)
{
    return static_hop(f) || named_by_connection(f, fields, n);
}

/* The field names a message's Connection fields list, and those its route's header rules name
 * (header_rules.h), gathered once per message so that each field costs a few compares, not a
 * walk over every Connection value. Tokens that are hop-by-hop
 * anyway (keep-alive, upgrade) or name no field (close) are left out: the common
 * "Connection: keep-alive" leaves nothing to compare. */
#define CONN_NAMES_MAX 16
#define CONN_MARK_MAX HDR_MAX_FIELDS /* fields of a message whose names a long list marks */
struct conn_names {
    const struct h1_field *fields; /* the message, for the slow path */
    size_t nfields;
    unsigned n;
    bool overflow; /* more names than fit: named[] (conn_names_mark) says */
    bool slow;     /* overflow, or rules: conn_names_slow decides (one test on the common path,
                      the one it had before rules: a route without them pays nothing a field) */
    const struct hrules *rules; /* the route's rules of this message's direction, or NULL */
    struct {
        const char *name;
        size_t len;
    } tok[CONN_NAMES_MAX];
    bool named[CONN_MARK_MAX]; /* with overflow: field i is named by a Connection field */
};

/* Names ordered by length, then case-insensitively: most compares are on the length alone. */
static int name_order(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return strncasecmp(a, b, alen);
}

/* More names than tok[] holds: which fields they name, from one walk over the Connection
 * fields and a binary search of each name among the fields sorted by name. A walk over the
 * whole list for each field (named_by_connection) made a list of 400,000 names (a head of 900
 * KB with max_header_size = 1m) cost a worker 200 ms per request. */
static void conn_names_mark(struct conn_names *c)
{
    const struct h1_field *f = c->fields;
    size_t n = c->nfields;
    uint8_t order[CONN_MARK_MAX];
    _Static_assert(CONN_MARK_MAX <= UINT8_MAX, "a field index fits order[]");
    for (size_t i = 0; i < n; i++) { /* insertion sort: a hundred fields at most */
        size_t k = i;
        for (; k > 0 && name_order(f[order[k - 1]].name, f[order[k - 1]].name_len, f[i].name,
                                   f[i].name_len) > 0;
             k--)
            order[k] = order[k - 1];
        order[k] = (uint8_t)i;
        c->named[i] = false;
    }
    for (int i = h1_find(f, n, H1_F_CONNECTION, 0); i >= 0;
         i = h1_find(f, n, H1_F_CONNECTION, (size_t)i + 1)) {
        size_t pos = 0, elen;
        const char *e;
        while (h1_list_next(f[i].value, f[i].value_len, &pos, &e, &elen)) {
            size_t lo = 0, hi = n;
            while (lo < hi) { /* the first field not ordered before e */
                size_t mid = lo + (hi - lo) / 2;
                if (name_order(f[order[mid]].name, f[order[mid]].name_len, e, elen) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            /* the fields of that name, unless an earlier token marked them all already */
            for (; lo < n && !c->named[order[lo]] &&
                   name_order(f[order[lo]].name, f[order[lo]].name_len, e, elen) == 0;
                 lo++)
                c->named[order[lo]] = true;
        }
    }
}

static void conn_names_init(struct conn_names *c, const struct h1_field *fields, size_t n,
                            const struct hrules *rules)
{
    c->fields = fields;
    c->nfields = n;
    c->n = 0;
    c->overflow = false;
    c->rules = rules;
    c->slow = rules != NULL;
    for (int i = h1_find(fields, n, H1_F_CONNECTION, 0); i >= 0;
         i = h1_find(fields, n, H1_F_CONNECTION, (size_t)i + 1)) {
        size_t pos = 0, elen;
        const char *e;
        /* "Connection: keep-alive" and "Connection: close", the usual values, are one token
         * that names nothing more to remove: no list walk (the parser trimmed the OWS around
         * it). */
        if (h1_field_id_of(fields[i].value, fields[i].value_len) == H1_F_KEEP_ALIVE ||
            (fields[i].value_len == 5 && strncasecmp(fields[i].value, "close", 5) == 0))
            continue;
        while (h1_list_next(fields[i].value, fields[i].value_len, &pos, &e, &elen)) {
            enum h1_field_id id = h1_field_id_of(e, elen);
            if ((id != H1_F_OTHER && (hop_fields & H1_FIELD_BIT(id))) ||
                (elen == 5 && strncasecmp(e, "close", 5) == 0))
                continue;
            if (c->n == CONN_NAMES_MAX) {
                c->overflow = c->slow = true;
                if (n <= CONN_MARK_MAX)
                    conn_names_mark(c);
                return;
            }
            c->tok[c->n].name = e;
            c->tok[c->n++].len = elen;
        }
    }
}

/* conn_names_has past the common case: a long Connection list, or a route's rules. */
static __attribute__((noinline)) bool conn_names_slow(const struct conn_names *c,
                                                      const struct h1_field *f)
{
    if (c->rules && hrules_names(c->rules, f->name, f->name_len))
        return true;
    if (c->overflow) /* f is one of c->fields */
        return c->nfields <= CONN_MARK_MAX ? c->named[f - c->fields]
                                           : named_by_connection(f, c->fields, c->nfields);
    for (unsigned i = 0; i < c->n; i++)
        if (c->tok[i].len == f->name_len && strncasecmp(c->tok[i].name, f->name, f->name_len) == 0)
            return true;
    return false;
}

/* Whether the message's Connection fields name f (f not hop-by-hop itself), or its route's
 * rules do (rules set or remove it: the message's own go). */
static bool conn_names_has(const struct conn_names *c, const struct h1_field *f)
{
    if (c->slow)
        return conn_names_slow(c, f);
    for (unsigned i = 0; i < c->n; i++)
        if (c->tok[i].len == f->name_len && strncasecmp(c->tok[i].name, f->name, f->name_len) == 0)
            return true;
    return false;
}

/* Heads are built on every request: copied into one buffer and added to the evbuffer in one
 * piece (one chain, one add) instead of four adds per field. That one add fails whole, out of
 * memory: a head goes all or nothing, or the next hop would read what follows it as the rest of
 * a head cut short (a body as a request, on a connection other clients' requests reuse). A head
 * longer than the buffer is gathered in an evbuffer of its own, moved to out once whole. */
struct head_buf {
    struct evbuffer *out;
    struct evbuffer *spill;            /* NULL, or the head so far, past the buffer's size */
    size_t len;
    bool failed;                       /* an addition failed: the head does not go */
    char buf[4096];
};

/* Not an initializer: that would zero the 4 KiB buffer on every head. */
static void hb_init(struct head_buf *b, struct evbuffer *out)
{
    b->out = out;
    b->spill = NULL;
    b->len = 0;
    b->failed = false;
}

/* Where the rare long head goes meanwhile; NULL (failed) without memory. */
static struct evbuffer *hb_spill(struct head_buf *b)
{
    if (!b->spill && !b->failed && !(b->spill = evbuffer_new()))
        b->failed = true;
    return b->spill;
}

static void hb_add(struct head_buf *b, const void *p, size_t n)
{
    struct evbuffer *to = hb_spill(b);
    if (to && evbuffer_add(to, p, n) != 0)
        b->failed = true;
}

/* The rare case of hb_put: n does not fit in what is left of the buffer. Out of line: inlined,
 * it made every field's copy save registers (callgrind: +42 instructions a request). */
__attribute__((noinline, cold)) static void hb_put_flush(struct head_buf *b, const void *p,
                                                         size_t n)
{
    if (b->len)
        hb_add(b, b->buf, b->len);
    b->len = 0;
    if (n > sizeof(b->buf)) {
        hb_add(b, p, n);
        return;
    }
    memcpy(b->buf, p, n);
    b->len = n;
}

/* The head is whole: to out, all of it, or nothing (-1, out of memory). */
static int hb_end(struct head_buf *b)
{
    if (!b->spill && !b->failed)
        return b->len && evbuffer_add(b->out, b->buf, b->len) != 0 ? -1 : 0;
    if (b->len)
        hb_add(b, b->buf, b->len);
    if (!b->failed && evbuffer_add_buffer(b->out, b->spill) != 0)
        b->failed = true;
    if (b->spill)
        evbuffer_free(b->spill);
    return b->failed ? -1 : 0;
}

/* Inline: a head is a few dozen short pieces, each a test and a copy. */
static inline void hb_put(struct head_buf *b, const void *p, size_t n)
{
    if (n > sizeof(b->buf) - b->len) {
        hb_put_flush(b, p, n);
        return;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

#define HB_LIT(b, lit) hb_put((b), (lit), sizeof(lit) - 1)

static void hb_str(struct head_buf *b, const char *s)
{
    hb_put(b, s, strlen(s));
}

static void hb_u64(struct head_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do
        tmp[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    hb_put(b, tmp + i, sizeof(tmp) - i);
}

static void hb_field(struct head_buf *b, const struct h1_field *f)
{
    size_t n = f->name_len, v = f->value_len;
    /* The usual case, the whole line fits: one room check and one length update for the four
     * pieces. Otherwise piece by piece, flushing as needed. */
    if (n <= sizeof(b->buf) - b->len && v + 4 <= sizeof(b->buf) - b->len - n) {
        char *p = b->buf + b->len;
        memcpy(p, f->name, n);
        p += n;
        memcpy(p, ": ", 2);
        memcpy(p + 2, f->value, v);
        memcpy(p + 2 + v, "\r\n", 2);
        b->len += n + v + 4;
        return;
    }
    hb_put(b, f->name, n);
    HB_LIT(b, ": ");
    hb_put(b, f->value, v);
    HB_LIT(b, "\r\n");
}

/* "Name: value\r\n" for a NUL-terminated value. */
static void hb_line(struct head_buf *b, const char *name_colon_sp, const char *value)
{
    hb_str(b, name_colon_sp);
    hb_str(b, value);
    HB_LIT(b, "\r\n");
}

/* Portico's word on the client's certificate (tls_verify_client): apart, off the common path,
 * so that hb_line stays inlined with its names' lengths known where every request writes it. */
static __attribute__((noinline)) void client_cert_lines(struct head_buf *b,
                                                        const struct fwd_request *fwd)
{
    hb_line(b, "Client-Cert-Verify: ", fwd->client_cert_verify);
    if (fwd->client_cert)
        hb_line(b, "Client-Cert: ", fwd->client_cert);
    if (fwd->client_cert_chain)
        hb_line(b, "Client-Cert-Chain: ", fwd->client_cert_chain);
}

/* "Max-Forwards: N\r\n", on OPTIONS and TRACE only: formatted apart, off the common path. */
static void max_forwards_line(struct head_buf *b, uint32_t n)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "Max-Forwards: %u\r\n", (unsigned)n);
    hb_put(b, line, (size_t)len);
}

/* A joined trace's tracestate (W3C Trace Context, "tracestate Header Field Values" and
 * "tracestate Limits"): a list holds at most 32 list-members, a vendor passes at least 512
 * characters of it, and one that cuts it removes whole entries, those over 128 characters
 * first, then from the end. Within both bounds the client's fields go on as they came; else
 * one field of what the cut leaves (none when nothing is left). */
#define TRACESTATE_MEMBERS_MAX 32
#define TRACESTATE_LEN_MAX 512
#define TRACESTATE_MEMBER_LONG 128

/* Whether each byte of the 8 in w is ',', SP or HTAB: a run of empty list-members. */
static inline bool tracestate_gap8(uint64_t w)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
#define ZERO_BYTES(x) (~((((x) & ~highs) + ~highs) | (x)) & highs) /* exact, byte by byte */
    uint64_t comma = w ^ (ones * ','), sp = w ^ (ones * ' '), tab = w ^ (ones * '\t');
    return (ZERO_BYTES(comma) | ZERO_BYTES(sp) | ZERO_BYTES(tab)) == highs;
#undef ZERO_BYTES
}

/* The next list-member of v[*pos..len), OWS trimmed, empty ones skipped: split at ',' alone,
 * not as h1_list_next does (a tracestate value may hold '"' and is no quoted-string). The ','
 * and OWS before a member are stepped over eight bytes at a time: a memchr for each empty
 * member made a 60 KB value of ',' cost the cut 65 times its parse (470 us a request). */
static bool tracestate_next(const char *v, size_t len, size_t *pos, const char **m, size_t *mlen)
{
    size_t start = *pos;
    for (uint64_t w; start + 8 <= len && (memcpy(&w, v + start, 8), tracestate_gap8(w));)
        start += 8;
    while (start < len && (v[start] == ',' || v[start] == ' ' || v[start] == '\t'))
        start++;
    if (start == len) {
        *pos = len;
        return false;
    }
    const char *comma = memchr(v + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - v) : len;
    *pos = comma ? end + 1 : len;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
        end--;
    *m = v + start; /* not empty: v[start] is neither ',' nor OWS */
    *mlen = end - start;
    return true;
}

/* Whether the request's tracestate fields (the first at index first), joined by ',', are
 * within both bounds. */
static bool tracestate_within(const struct h1_request *req, size_t first)
{
    size_t len = 0, members = 0;
    for (int i = (int)first; i >= 0;
         i = h1_find(req->fields, req->nfields, H1_F_TRACESTATE, (size_t)i + 1)) {
        const struct h1_field *f = &req->fields[i];
        len += (len ? 1 : 0) + f->value_len;
        if (len > TRACESTATE_LEN_MAX) /* before the walk: at most 512 bytes walked a call */
            return false;
        size_t pos = 0, mlen;
        const char *m;
        while (tracestate_next(f->value, f->value_len, &pos, &m, &mlen))
            members++;
        if (members > TRACESTATE_MEMBERS_MAX)
            return false;
    }
    return true;
}

/* "tracestate: ..." of what the cut leaves of the request's list, if anything. */
static void tracestate_cut(struct head_buf *b, const struct h1_request *req, size_t first)
{
    char list[TRACESTATE_LEN_MAX];
    size_t len = 0, members = 0;
    for (int i = (int)first; i >= 0;
         i = h1_find(req->fields, req->nfields, H1_F_TRACESTATE, (size_t)i + 1)) {
        const struct h1_field *f = &req->fields[i];
        size_t pos = 0, mlen;
        const char *m;
        while (tracestate_next(f->value, f->value_len, &pos, &m, &mlen)) {
            if (mlen > TRACESTATE_MEMBER_LONG) /* the long ones go first */
                continue;
            if (members == TRACESTATE_MEMBERS_MAX || len + (len ? 1 : 0) + mlen > sizeof(list))
                goto cut; /* then the rest, from the end */
            if (len)
                list[len++] = ',';
            memcpy(list + len, m, mlen);
            len += mlen;
            members++;
        }
    }
cut:
    if (len == 0) /* "Vendors ... SHOULD avoid sending" an empty one */
        return;
    HB_LIT(b, "tracestate: ");
    hb_put(b, list, len);
    HB_LIT(b, "\r\n");
}

/* What becomes of a request's tracestate fields, judged once at the first of them. */
enum tracestate_verdict {
    TS_UNJUDGED = 0, /* no tracestate field met yet */
    TS_WHOLE,        /* within both bounds: each field goes on as it came */
    TS_CUT,          /* the cut list went at the first field (unless Connection names them) */
};

/* The verdict on the list whose first field is req->fields[first], the cut list written there
 * when it is not whole. Once a head: judged at each field, 95 fields of "tracestate: ,,,,,"
 * walked the list 95 times (2.1 million instructions a request by callgrind, 36 times one
 * without them). Out of line: most requests have no tracestate. */
__attribute__((noinline)) static enum tracestate_verdict
tracestate_judge(struct head_buf *b, const struct h1_request *req, size_t first,
                 const struct conn_names *conn)
{
    if (tracestate_within(req, first))
        return TS_WHOLE;
    if (!conn_names_has(conn, &req->fields[first]))
        tracestate_cut(b, req, first);
    return TS_CUT;
}

/* hrule_expand's output into the head: a client's words in a variable are field bytes already
 * (its Host, target and id were judged on the way in). */
static void rule_put(void *ctx, const char *p, size_t n, bool variable)
{
    (void)variable;
    hb_put(ctx, p, n);
}

/* The value of a request_header rule, its variables expanded (header_rules.h). */
static void rule_value(struct head_buf *b, const struct hrule *r, const struct fwd_request *fwd)
{
    struct hrule_values vals = {
        .client_addr = fwd->client_addr ? fwd->client_addr : fwd->client_ip,
        .request_id = fwd->request_id,
        .tls = fwd->client_tls,
        .host = fwd->client_host,
        .host_len = fwd->client_host_len,
        .request_uri = fwd->client_target,
        .request_uri_len = fwd->client_target_len,
    };
    hrule_expand(r->value, r->value_len, &vals, rule_put, b);
}

/* The route's SET rules, in the file's order: apart, off the path of routes without rules. */
static __attribute__((noinline)) void rule_lines(struct head_buf *b,
                                                 const struct fwd_request *fwd)
{
    for (int i = 0; i < fwd->rules->n; i++) {
        const struct hrule *r = &fwd->rules->rule[i];
        if (r->op != HRULE_SET)
            continue;
        hb_put(b, r->name, r->name_len);
        HB_LIT(b, ": ");
        if (r->vars)
            rule_value(b, r, fwd);
        else
            hb_put(b, r->value, r->value_len);
        HB_LIT(b, "\r\n");
    }
}

/* Whether the cookie-pair p (its leading blanks included) is cookie `name`'s. */
static bool pair_named(const char *p, size_t len, const char *name, size_t name_len)
{
    while (len && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    return len > name_len && p[name_len] == '=' && memcmp(p, name, name_len) == 0;
}

/* Where the cookie-pair at v[i] ends: its ';', or n. */
static size_t pair_end(const char *v, size_t i, size_t n)
{
    const char *semi = memchr(v + i, ';', n - i);
    return semi ? (size_t)(semi - v) : n;
}

/* A Cookie field without the sticky cookie's pairs (Portico's: the application never sees it,
 * HAProxy's `indirect`): the other pairs go on byte for byte, with their separators; a field of
 * the sticky cookie alone goes no further. Out of line: only sticky upstreams call it. */
static __attribute__((noinline)) void cookie_without(struct head_buf *b, const struct h1_field *f,
                                                     const char *name, size_t name_len)
{
    const char *v = f->value;
    size_t n = f->value_len, kept = 0, first = n; /* first: where the sticky cookie's pair is */
    for (size_t i = 0; i < n && first == n;) {
        size_t end = pair_end(v, i, n);
        if (pair_named(v + i, end - i, name, name_len))
            first = i;
        i = end + 1;
    }
    if (first == n) {
        hb_field(b, f);
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t end = pair_end(v, i, n);
        const char *p = v + i;
        size_t len = end - i;
        bool named = i == first || (i > first && pair_named(p, len, name, name_len));
        i = end + 1;
        if (named)
            continue;
        if (kept == 0) { /* the first pair kept starts the value: no blank before it */
            while (len && (*p == ' ' || *p == '\t')) {
                p++;
                len--;
            }
            if (!len)
                continue;
            hb_put(b, f->name, f->name_len);
            HB_LIT(b, ": ");
        } else {
            HB_LIT(b, ";");
        }
        hb_put(b, p, len);
        kept++;
    }
    if (kept)
        HB_LIT(b, "\r\n");
}

int hdr_write_request(struct evbuffer *out, const struct h1_request *req,
                      const struct fwd_request *fwd)
{
    struct conn_names conn;
    conn_names_init(&conn, req->fields, req->nfields, fwd->rules);
    bool has_xff = false, kept_proto = false, kept_host = false;
    enum tracestate_verdict ts = TS_UNJUDGED;
    struct head_buf b;
    hb_init(&b, out);

    hb_put(&b, req->method, req->method_len);
    HB_LIT(&b, " ");
    if (fwd->target_len > 0 && fwd->target[0] == '?') /* "http://h?q" is "/?q" (request.h) */
        HB_LIT(&b, "/");
    hb_put(&b, fwd->target, fwd->target_len);
    HB_LIT(&b, " HTTP/1.1\r\n");
    if (fwd->host) { /* HTTP/1.1 requires Host, and first is where servers look (RFC 9112 3.2) */
        HB_LIT(&b, "Host: ");
        hb_put(&b, fwd->host, fwd->host_len);
        HB_LIT(&b, "\r\n");
    }
    for (size_t i = 0; i < req->nfields; i++) {
        const struct h1_field *f = &req->fields[i];
        switch (f->id) {
        case H1_F_HOST:
            /* End-to-end and required in HTTP/1.1: "Connection: host" cannot remove it. */
            if (!fwd->host)
                hb_field(&b, f);
            continue;
        case H1_F_UPGRADE:
            if (fwd->upgrade) /* hop-by-hop, but offered to this hop on the client's behalf */
                hb_field(&b, f);
            continue;
        case H1_F_X_FORWARDED_FOR: /* merged into one field below, unless Connection names it */
            has_xff = !conn_names_has(&conn, f);
            continue;
        case H1_F_X_FORWARDED_PROTO:
        case H1_F_X_FORWARDED_HOST:
            /* ours below, but a trusted proxy's word on the scheme and host it was reached by */
            if (!fwd->trusted_proxy || conn_names_has(&conn, f))
                continue;
            hb_field(&b, f);
            kept_proto |= f->id == H1_F_X_FORWARDED_PROTO;
            kept_host |= f->id == H1_F_X_FORWARDED_HOST;
            continue;
        case H1_F_X_REQUEST_ID:
            continue; /* set by us below */
        case H1_F_FORWARDED:
        case H1_F_X_REAL_IP:
        case H1_F_PROXY_CLAIM:
            /* The client's word on its address, scheme, host, port or path, which origins read
             * before or beside ours: Rack 3 takes Forwarded's proto= and host= over
             * X-Forwarded-Proto and -Host, Spring's ForwardedHeaderFilter its first element,
             * nginx's realip X-Real-IP; Rack's scheme X-Forwarded-Ssl before -Proto, Werkzeug's
             * ProxyFix X-Forwarded-Port and -Prefix, Rails' RemoteIp Client-IP (README). A
             * trusted proxy's goes on, but for the path overrides: no proxy writes them, so
             * they are its client's, passed through (CVE-2018-14773). */
            if (!fwd->trusted_proxy || path_override(f))
                continue;
            break;
        case H1_F_TRACEPARENT:
            if (fwd->traceparent)
                continue;
            break;
        case H1_F_TRACESTATE:
            if (fwd->drop_tracestate)
                continue;
            if (ts == TS_UNJUDGED)
                ts = tracestate_judge(&b, req, i, &conn);
            if (ts == TS_WHOLE)
                break;
            continue;
        case H1_F_EXPECT:
            if (!fwd->keep_expect)
                continue;
            break;
        case H1_F_MAX_FORWARDS:
            if (fwd->max_forwards) /* replaced below by one value, decremented */
                continue;
            break;
        case H1_F_COOKIE:
            if (!fwd->sticky_name_len)
                break;
            if (!conn_names_has(&conn, f))
                cookie_without(&b, f, fwd->sticky_name, fwd->sticky_name_len);
            continue;
        case H1_F_PORTICO_FAULT:
            continue; /* a fault for Portico (issue 8), honoured or not: never the origin's */
        case H1_F_PORTICO_MIRROR:
            continue; /* the mirror's marker (mirror.h) is ours: a client's would mark a real
                       * request as a copy, or a copy twice */
        case H1_F_OTHER:
            if (underscore_twin(f) || client_cert_field(f))
                continue;
            break;
        default:
            break;
        }
        if (static_hop(f) || conn_names_has(&conn, f))
            continue;
        hb_field(&b, f);
    }
    if (fwd->max_forwards) /* a singleton field: once, after the client's (RFC 9110 7.6.2) */
        max_forwards_line(&b, fwd->max_forwards - 1);
    if (fwd->rules && fwd->rules->nset)
        rule_lines(&b, fwd);
    /* X-Forwarded-For keeps the chain the client brought and appends the address we saw. */
    HB_LIT(&b, "X-Forwarded-For: ");
    for (int i = h1_find(req->fields, req->nfields, H1_F_X_FORWARDED_FOR, 0); has_xff && i >= 0;
         i = h1_find(req->fields, req->nfields, H1_F_X_FORWARDED_FOR, (size_t)i + 1)) {
        if (req->fields[i].value_len == 0) /* "X-Forwarded-For:" adds no empty element */
            continue;
        hb_put(&b, req->fields[i].value, req->fields[i].value_len);
        HB_LIT(&b, ", ");
    }
    hb_str(&b, fwd->client_ip);
    HB_LIT(&b, "\r\n");
    if (!kept_proto) {
        if (fwd->client_tls) /* literals: their lengths are known here */
            HB_LIT(&b, "X-Forwarded-Proto: https\r\n");
        else
            HB_LIT(&b, "X-Forwarded-Proto: http\r\n");
    }
    if (fwd->client_host && !kept_host) {
        HB_LIT(&b, "X-Forwarded-Host: ");
        hb_put(&b, fwd->client_host, fwd->client_host_len);
        HB_LIT(&b, "\r\n");
    }
    hb_line(&b, "X-Request-Id: ", fwd->request_id);
    if (fwd->client_cert_verify) /* only where client certificates are asked for */
        client_cert_lines(&b, fwd);
    if (fwd->traceparent)
        hb_line(&b, "traceparent: ", fwd->traceparent);
    if (fwd->via == HDR_VIA_1_1) /* the version the request came in (RFC 9110 7.6.3) */
        HB_LIT(&b, "Via: " VIA_VALUE "\r\n");
    else if (fwd->via == HDR_VIA_1_0)
        HB_LIT(&b, "Via: 1.0 portico\r\n");
    else
        HB_LIT(&b, "Via: 2 portico\r\n");
    if (fwd->upgrade)
        HB_LIT(&b, "Connection: upgrade\r\n");
    if (fwd->framing == H1_BODY_LENGTH) {
        HB_LIT(&b, "Content-Length: ");
        hb_u64(&b, fwd->content_length);
        HB_LIT(&b, "\r\n");
    } else if (fwd->framing == H1_BODY_CHUNKED) {
        HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
    }
    HB_LIT(&b, "\r\n");
    return hb_end(&b);
}

static const char *const proto_names[] = {
#define X(id, name) [id] = name,
    PROTO_LIST(X)
#undef X
};

const char *proto_name(enum proto p)
{
    return (unsigned)p < ARRAY_LEN(proto_names) ? proto_names[p] : "HTTP/1.1";
}

/* What the origin's end-to-end fields already hold of those Portico may add. */
struct e2e_seen {
    bool request_id;
    bool date;
};

static size_t end_to_end(const struct h1_response *resp, struct h1_field *out, size_t max,
                         struct e2e_seen *seen, const struct hrules *rules)
{
    struct conn_names conn;
    conn_names_init(&conn, resp->fields, resp->nfields, rules);
    size_t n = 0;
    for (size_t i = 0; i < resp->nfields && n < max; i++) {
        const struct h1_field *f = &resp->fields[i];
        if (static_hop(f) || conn_names_has(&conn, f)) /* named by Connection, or by a rule */
            continue;
        seen->request_id |= f->id == H1_F_X_REQUEST_ID;
        seen->date |= f->name_len == 4 && h1_name_is(f, "date");
        out[n++] = *f;
    }
    return n;
}

#define FIELD(lit, v)                                                                              \
    ((struct h1_field){.name = lit, .name_len = sizeof(lit) - 1, .value = (v), .value_len = strlen(v)})

/* Portico's Via entry on a response, with the version it came in (RFC 9110 7.6.3: a proxy
 * sends one in each message it forwards): an HTTP/1.0 origin's is 1.0, of the same length. */
static void put_via(struct h1_field *f, const struct h1_response *resp)
{
    _Static_assert(sizeof(VIA_VALUE) == sizeof("1.0 portico"), "one length for both");
    *f = FIELD("Via", VIA_VALUE);
    if (resp->minor == 0)
        f->value = "1.0 portico";
}

size_t hdr_response_fields(const struct h1_response *resp, const struct fwd_response *fwd,
                           struct h1_field *out, size_t max)
{
    struct e2e_seen seen = {0};
    size_t sets = fwd->rules ? (size_t)fwd->rules->nset : 0;
    size_t n = end_to_end(resp, out, max > 6 + sets ? max - 6 - sets : 0, &seen, fwd->rules);
    for (int i = 0; sets && i < fwd->rules->n; i++) {
        const struct hrule *r = &fwd->rules->rule[i];
        if (r->op == HRULE_SET)
            out[n++] = (struct h1_field){.name = r->name, .name_len = r->name_len,
                                         .value = r->value, .value_len = r->value_len};
    }
    put_via(&out[n++], resp);
    /* A proxy with a clock adds the Date an origin left out (RFC 9110 6.6.1: a MUST); caches
     * downstream compute ages from it. */
    if (!seen.date && fwd->date)
        out[n++] = FIELD("Date", fwd->date);
    if (!seen.request_id && fwd->request_id)
        out[n++] = FIELD("X-Request-Id", fwd->request_id);
    if (fwd->proxy_status)
        out[n++] = FIELD("Proxy-Status", fwd->proxy_status);
    if (fwd->server_timing)
        out[n++] = FIELD("Server-Timing", fwd->server_timing);
    /* 304 and HEAD responses keep the origin's Content-Length: it describes the representation,
     * not this message's body (RFC 9110 8.6); a 204 never has one. */
    int cl = fwd->framing == H1_BODY_NONE && resp->status != HTTP_NO_CONTENT
                 ? h1_find(resp->fields, resp->nfields, H1_F_CONTENT_LENGTH, 0)
                 : -1; /* looked for only when it may be kept */
    if (cl >= 0) {
        /* "99, 99" (one value repeated, which h1_response_info tolerates) goes on as "99": a
         * list is no valid Content-Length and must not be forwarded (RFC 9110 8.6); strict
         * clients (Node's llhttp) refuse the whole response over it. */
        struct h1_field f = resp->fields[cl];
        size_t pos = 0;
        h1_list_next(resp->fields[cl].value, resp->fields[cl].value_len, &pos, &f.value,
                     &f.value_len);
        out[n++] = f;
    }
    return n;
}

size_t hdr_interim_fields(const struct h1_response *resp, const struct hrules *rules,
                          struct h1_field *out, size_t max)
{
    struct e2e_seen seen = {0};
    if (max == 0)
        return 0;
    size_t n = end_to_end(resp, out, max - 1, &seen, rules);
    put_via(&out[n++], resp);
    return n;
}

size_t hdr_upgrade_fields(const struct h1_response *resp, const struct hrules *rules,
                          struct h1_field *out, size_t max)
{
    struct e2e_seen seen = {0};
    size_t n = max > 2 ? end_to_end(resp, out, max - 2, &seen, rules) : 0;
    for (size_t i = 0; i < resp->nfields && n + 2 < max; i++)
        if (resp->fields[i].id == H1_F_UPGRADE)
            out[n++] = resp->fields[i];
    if (n + 1 < max)
        put_via(&out[n++], resp);
    if (n < max)
        out[n++] = FIELD("Connection", "upgrade");
    return n;
}

int hdr_write_head(struct evbuffer *out, const struct resp_head *h, enum h1_framing wire,
                   bool http10, bool keep_alive)
{
    int code = h->status >= 100 && h->status <= 999 ? h->status : HTTP_BAD_GATEWAY;
    struct head_buf b; /* all or nothing (head_buf) */
    hb_init(&b, out);
    /* An empty reason is legal but unhelpful: the writer uses the registry's. The line goes into
     * the head's buffer (one evbuffer add for the whole head); a reason too long for it takes
     * the evbuffer path. */
    b.len = h1out_status_text(b.buf, sizeof(b.buf), code, h->reason, h->reason_len);
    if (b.len == 0 && hb_spill(&b) &&
        h1out_status_line(b.spill, code, h->reason, h->reason_len) != 0 &&
        h1out_status_line(b.spill, code, NULL, 0) != 0)
        b.failed = true;
    for (size_t i = 0; i < h->nfields; i++)
        hb_field(&b, &h->fields[i]);
    if (code >= HTTP_OK) {
        if (wire == H1_BODY_LENGTH) {
            HB_LIT(&b, "Content-Length: ");
            hb_u64(&b, h->content_length);
            HB_LIT(&b, "\r\n");
        } else if (wire == H1_BODY_CHUNKED) {
            HB_LIT(&b, "Transfer-Encoding: chunked\r\n");
        }
        if (!keep_alive)
            HB_LIT(&b, "Connection: close\r\n");
        else if (http10)
            HB_LIT(&b, "Connection: keep-alive\r\n");
    }
    HB_LIT(&b, "\r\n");
    return hb_end(&b);
}
