/*
 * h2_request.c — HTTP/2 request fields to an HTTP/1.1 head. See h2_request.h.
 *
 * The checks here are the HTTP/2 ones; everything HTTP/1.1 cares about (request-line length,
 * field count, Host, Content-Length, control characters ...) is left to h1_parse_request and
 * h1_request_info, which the caller runs on the head this builds.
 */
#include "portico/h2_request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/http1.h"
#include "portico/util.h"

/* The fields that may occur once: the five pseudo-header fields (:protocol is RFC 8441's),
 * and Host. */
#define PSEUDO_LIST(X)                                                                             \
    X(H2F_METHOD, ":method", method)                                                               \
    X(H2F_SCHEME, ":scheme", scheme)                                                               \
    X(H2F_PATH, ":path", path)                                                                     \
    X(H2F_AUTHORITY, ":authority", authority)                                                     \
    X(H2F_PROTOCOL, ":protocol", protocol)
#define ONCE_LIST(X)                                                                               \
    PSEUDO_LIST(X)                                                                                 \
    X(H2F_HOST, "host", host)

enum once_bit {
#define X(id, name, field) id##_BIT,
    ONCE_LIST(X)
#undef X
    ONCE_NONE
};

#define BIT(id) (1u << id##_BIT)

/* Connection-specific fields (RFC 9113 8.2.2): an HTTP/2 request carrying one is malformed. TE
 * is one too unless it says "trailers". */
static const uint32_t connection_fields =
    H1_FIELD_BIT(H1_F_CONNECTION) | H1_FIELD_BIT(H1_F_KEEP_ALIVE) |
    H1_FIELD_BIT(H1_F_PROXY_CONNECTION) | H1_FIELD_BIT(H1_F_TRANSFER_ENCODING) |
    H1_FIELD_BIT(H1_F_UPGRADE);

void h2_request_init(struct h2_request *r, size_t limit)
{
    *r = (struct h2_request){.limit = limit};
}

void h2_request_free(struct h2_request *r)
{
    free(r->values.p);
    free(r->lines.p);
    free(r->cookie.p);
    r->values = r->lines = r->cookie = (struct h2_bytes){0};
    r->seen = 0;
}

static int malformed(struct h2_request *r, const char *why)
{
    r->error = why;
    return -1;
}

/* Appends parts to b unless the head already outgrew the limit: past it nothing is kept (the
 * decoder still reads the whole block), and finish answers 431. 0, or -1 out of memory. */
static int append(struct h2_request *r, struct h2_bytes *b, const char *const *parts,
                  const size_t *lens, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += lens[i];
    if (total == 0)
        return 0;
    if (r->too_large || r->values.len + r->lines.len + r->cookie.len + total > r->limit) {
        r->too_large = true;
        return 0;
    }
    if (b->len + total > b->cap) {
        size_t want = MAX(MAX(b->cap * 2, b->len + total), (size_t)256);
        char *p = realloc(b->p, want);
        if (!p)
            return malformed(r, "out of memory");
        b->p = p;
        b->cap = want;
    }
    for (int i = 0; i < n; i++) {
        memcpy(b->p + b->len, parts[i], lens[i]);
        b->len += lens[i];
    }
    return 0;
}

static bool is_token(const char *p, size_t n, bool lowercase)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(h1_class[(unsigned char)p[i]] & H1_TCHAR) ||
            (lowercase && p[i] >= 'A' && p[i] <= 'Z'))
            return false;
    return true;
}

/* RFC 9113 8.2.1: no NUL, CR or LF anywhere, no whitespace at either end. */
static const char *value_problem(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\0' || v[i] == '\r' || v[i] == '\n')
            return "NUL, CR or LF in a field value";
    if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        return "whitespace at the start or end of a field value";
    return NULL;
}

/* The pseudo-header field a name is, ONCE_NONE for an unknown one. */
static enum once_bit pseudo_of(const char *name, size_t name_len)
{
#define X(id, lit, field)                                                                          \
    if (name_len == sizeof(lit) - 1 && memcmp(name, lit, name_len) == 0)                          \
        return id##_BIT;
    PSEUDO_LIST(X)
#undef X
    return ONCE_NONE;
}

static struct h2_span *once_span(struct h2_request *r, enum once_bit bit)
{
    switch (bit) {
#define X(id, lit, field)                                                                          \
    case id##_BIT:                                                                                 \
        return &r->field;
        ONCE_LIST(X)
#undef X
    case ONCE_NONE:
        break;
    }
    return NULL;
}

/* Keeps the value of a field that may occur once aside, for the request line and Host. */
static int keep_once(struct h2_request *r, enum once_bit bit, const char *value, size_t value_len)
{
    static const char *const repeated[] = {
#define X(id, lit, field) [id##_BIT] = "repeated " lit,
        ONCE_LIST(X)
#undef X
    };
    if (r->seen & (1u << bit))
        return malformed(r, repeated[bit]);
    r->seen |= 1u << bit;
    size_t off = r->values.len;
    int rc = append(r, &r->values, &value, &value_len, 1);
    *once_span(r, bit) = (struct h2_span){off, r->too_large ? 0 : value_len};
    return rc;
}

int h2_request_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    /* Past the limit the request gets 431 whatever follows: nothing more to look at. */
    r->decoded += name_len + value_len;
    if (r->too_large)
        return r->decoded > H2_REQUEST_ABANDON_FACTOR * r->limit;
    const char *why = value_problem(value, value_len);
    if (why)
        return malformed(r, why);
    if (name_len && name[0] == ':') {
        if (r->regular_seen)
            return malformed(r, "pseudo-header field after a regular field");
        enum once_bit bit = pseudo_of(name, name_len);
        if (bit == ONCE_NONE)
            return malformed(r, "unknown pseudo-header field");
        return keep_once(r, bit, value, value_len);
    }
    r->regular_seen = true;
    if (!is_token(name, name_len, true))
        return malformed(r, "field name that is not a lowercase token");
    /* An extended CONNECT's WebSocket handshake fields are Portico's to make (RFC 8441 5: the
     * HTTP/2 side has no key; its version is the one the key is for). */
    if ((r->seen & BIT(H2F_PROTOCOL)) && (span_ieq(name, name_len, "sec-websocket-key") ||
                                          span_ieq(name, name_len, "sec-websocket-version")))
        return 0;
    /* The name is lowercase: the HTTP/1.1 parser's look-up gives its id in one table read. */
    enum h1_field_id id = h1_field_id_of(name, name_len);
    if (id == H1_F_HOST)
        return keep_once(r, H2F_HOST_BIT, value, value_len);
    if (H1_FIELD_BIT(id) & connection_fields)
        return malformed(r, "connection-specific field");
    if (id == H1_F_CONTENT_LENGTH) { /* nghttp2 checks it against the DATA; kept to say why */
        r->declares_length = true;
        uint64_t n = 0; /* saturated at UINT64_MAX, which no valid one reaches */
        for (size_t i = 0; i < value_len; i++) {
            unsigned d = (unsigned)(unsigned char)value[i] - '0';
            r->announces_body |= d - 1 < 9; /* 1 to 9 */
            n = d <= 9 && n < (UINT64_MAX - 9) / 10 ? n * 10 + d : UINT64_MAX;
        }
        r->content_length = n;
    }
    if (id == H1_F_TE && !span_ieq(value, value_len, "trailers"))
        return malformed(r, "TE other than trailers");
    if (name_len == 6 && memcmp(name, "cookie", 6) == 0) { /* not a field id: compared here */
        /* Cookie crumbs are joined into one field for HTTP/1.1 (RFC 9113 8.2.3). */
        const char *parts[] = {"; ", value};
        const size_t lens[] = {r->cookie.len ? 2 : 0, value_len};
        return append(r, &r->cookie, parts, lens, 2);
    }
    const char *parts[] = {name, ": ", value, "\r\n"};
    const size_t lens[] = {name_len, 2, value_len, 2};
    return append(r, &r->lines, parts, lens, 4);
}

/* Empty values allocate nothing: with only those seen, values.p is NULL, and NULL + 0 is
 * undefined behaviour (UBSan aborts on it). */
static const char *at(const struct h2_request *r, struct h2_span s)
{
    return r->values.p ? r->values.p + s.off : "";
}

void h2_request_line(const struct h2_request *r, const char **method, size_t *method_len,
                     const char **path, size_t *path_len)
{
    bool m = (r->seen & BIT(H2F_METHOD)) && r->method.len;
    bool p = (r->seen & BIT(H2F_PATH)) && r->path.len;
    *method = m ? at(r, r->method) : NULL;
    *method_len = m ? r->method.len : 0;
    *path = p ? at(r, r->path) : NULL;
    *path_len = p ? r->path.len : 0;
}

size_t h2_request_fields(const struct h2_request *r, struct h1_field *out, size_t max)
{
    /* lines holds "name: value\r\n" as h2_request_field wrote them: no CR or LF in a value */
    size_t count = 0;
    for (size_t at = 0; at < r->lines.len; count++) {
        const char *line = r->lines.p + at;
        const char *end = memchr(line, '\r', r->lines.len - at);
        const char *colon = memchr(line, ':', r->lines.len - at);
        if (count < max) {
            size_t name_len = (size_t)(colon - line);
            out[count] = (struct h1_field){.name = line, .name_len = name_len,
                                           .value = colon + 2,
                                           .value_len = (size_t)(end - (colon + 2)),
                                           .id = h1_field_id_of(line, name_len)};
        }
        at = (size_t)(end + 2 - r->lines.p);
    }
    return count;
}

/* The pseudo-header fields a request must, and must not, have (RFC 9113 8.3.1, 8.5). */
static int check_pseudo(struct h2_request *r)
{
    if (!(r->seen & BIT(H2F_METHOD)) || !is_token(at(r, r->method), r->method.len, false))
        return malformed(r, "no :method, or one that is not a token");
    bool connect = r->method.len == 7 && memcmp(at(r, r->method), "CONNECT", 7) == 0;
    bool extended = r->seen & BIT(H2F_PROTOCOL);
    if (extended && !connect)
        return malformed(r, ":protocol on a method other than CONNECT");
    if (extended && (r->protocol.len == 0 || !(r->seen & BIT(H2F_AUTHORITY))))
        return malformed(r, "extended CONNECT without :protocol or :authority");
    /* A CONNECT has no content (RFC 9110 9.3.6): its DATA is the tunnel's. Passed on, the
     * length made the upgrade a GET with a body, the client's first frames read as that body. */
    if (extended && r->declares_length)
        return malformed(r, "content-length on an extended CONNECT");
    if (connect && !extended) {
        if ((r->seen & (BIT(H2F_SCHEME) | BIT(H2F_PATH))) || !(r->seen & BIT(H2F_AUTHORITY)))
            return malformed(r, "CONNECT takes :authority and neither :scheme nor :path");
    } else {
        if (!(r->seen & BIT(H2F_SCHEME)) || !(r->seen & BIT(H2F_PATH)) || r->path.len == 0)
            return malformed(r, "no :scheme or :path");
        if (!span_ieq(at(r, r->scheme), r->scheme.len, "http") &&
            !span_ieq(at(r, r->scheme), r->scheme.len, "https"))
            return malformed(r, ":scheme other than http or https");
        const char *p = at(r, r->path);
        if (p[0] != '/' && !(r->path.len == 1 && p[0] == '*'))
            return malformed(r, ":path is neither absolute nor *");
        for (size_t i = 0; i < r->path.len; i++)
            if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
                return malformed(r, "space, control or non-ASCII byte in :path");
    }
    if (r->seen & BIT(H2F_AUTHORITY)) {
        if (r->authority.len == 0)
            return malformed(r, "empty :authority");
        if (memchr(at(r, r->authority), '@', r->authority.len))
            return malformed(r, "userinfo in :authority");
        /* RFC 9113 8.3.1: a Host naming another entity than :authority is malformed. */
        if ((r->seen & BIT(H2F_HOST)) &&
            (r->host.len != r->authority.len ||
             strncasecmp(at(r, r->host), at(r, r->authority), r->host.len) != 0))
            return malformed(r, "host differs from :authority");
    }
    return 0;
}

const char *h2_request_messaging_error(struct h2_request *r, bool end_stream)
{
    if (check_pseudo(r) != 0)
        return r->error;
    if (!(r->seen & (BIT(H2F_AUTHORITY) | BIT(H2F_HOST))))
        return "neither :authority nor host (RFC 9113 8.3.1)";
    if (end_stream && r->announces_body)
        return "content-length announces a body, but the stream ended with its head "
               "(RFC 9113 8.1.1)";
    return "missing or invalid pseudo-header fields (RFC 9113 8.3.1)";
}

enum h2_protocol h2_request_protocol(const struct h2_request *r)
{
    if (!(r->seen & BIT(H2F_PROTOCOL)))
        return H2_PROTOCOL_NONE;
    return span_ieq(at(r, r->protocol), r->protocol.len, "websocket") ? H2_PROTOCOL_WEBSOCKET
                                                                      : H2_PROTOCOL_OTHER;
}

/* The fields an extended CONNECT's WebSocket gains as an HTTP/1.1 upgrade (RFC 6455 4.1), the
 * key last, then its CRLF. */
static const char ws_fields[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ";

int h2_request_finish(struct h2_request *r, const char *ws_key, char **head, size_t *head_len)
{
    if (r->error)
        return -1;
    if (r->too_large)
        return 431;
    if (check_pseudo(r) != 0)
        return -1;
    bool ws = ws_key && h2_request_protocol(r) == H2_PROTOCOL_WEBSOCKET;
    bool connect = !(r->seen & BIT(H2F_PATH));
    struct h2_span target = connect ? r->authority : r->path;
    bool has_host = r->seen & (BIT(H2F_AUTHORITY) | BIT(H2F_HOST));
    struct h2_span host = (r->seen & BIT(H2F_AUTHORITY)) ? r->authority : r->host;
    size_t method_len = ws ? 3 : r->method.len;
    size_t n = method_len + 1 + target.len + 11 + (has_host ? 6 + host.len + 2 : 0) +
               r->lines.len + (r->cookie.len ? 8 + r->cookie.len + 2 : 0) +
               (ws ? sizeof(ws_fields) - 1 + WS_KEY_LEN + 2 : 0) + 2;
    char *out = malloc(n);
    if (!out)
        return malformed(r, "out of memory");
    size_t k = 0;
#define PUT(p, len) (memcpy(out + k, (p), (len)), k += (len))
    PUT(ws ? "GET" : at(r, r->method), method_len);
    PUT(" ", 1);
    PUT(at(r, target), target.len);
    PUT(" HTTP/1.1\r\n", 11);
    if (has_host) {
        PUT("Host: ", 6);
        PUT(at(r, host), host.len);
        PUT("\r\n", 2);
    }
    if (r->lines.len)
        PUT(r->lines.p, r->lines.len);
    if (r->cookie.len) {
        PUT("cookie: ", 8);
        PUT(r->cookie.p, r->cookie.len);
        PUT("\r\n", 2);
    }
    if (ws) {
        PUT(ws_fields, sizeof(ws_fields) - 1);
        PUT(ws_key, WS_KEY_LEN);
        PUT("\r\n", 2);
    }
    PUT("\r\n", 2);
#undef PUT
    *head = out;
    *head_len = k;
    return 0;
}
