/*
 * headers.c — forwarding rules for header sections. See headers.h.
 */
#include "portico/headers.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

#include "portico/h1out.h"
#include "portico/status.h"
#include "portico/util.h"

#define VIA_VALUE "1.1 portico"

/* Fields that only concern one connection (RFC 9110 7.6.1, RFC 9112), plus Proxy-Connection
 * which old clients still send. Content-Length is rewritten by us, so it is dropped too. */
static bool static_hop(const struct h1_field *f)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "te",
                                        "trailer", "transfer-encoding", "upgrade",
                                        "content-length"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (h1_name_is(f, names[i]))
            return true;
    return false;
}

static bool named_by_connection(const struct h1_field *f, const struct h1_field *fields, size_t n)
{
    for (int i = h1_find_field(fields, n, "connection", 0); i >= 0;
         i = h1_find_field(fields, n, "connection", (size_t)i + 1)) {
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

/* Heads are built on every request: plain copies, no printf formatting. */
static void add_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, s, strlen(s));
}

/* "Name: value\r\n" for a NUL-terminated value. */
static void add_line(struct evbuffer *out, const char *name_colon_sp, const char *value)
{
    add_str(out, name_colon_sp);
    add_str(out, value);
    evbuffer_add(out, "\r\n", 2);
}

static void add_u64(struct evbuffer *out, uint64_t v)
{
    char buf[24];
    size_t i = sizeof(buf);
    do
        buf[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    evbuffer_add(out, buf + i, sizeof(buf) - i);
}

static void add_content_length(struct evbuffer *out, uint64_t n)
{
    evbuffer_add(out, "Content-Length: ", 16);
    add_u64(out, n);
    evbuffer_add(out, "\r\n", 2);
}

static void add_field(struct evbuffer *out, const struct h1_field *f)
{
    struct evbuffer_iovec v[4] = {
        {(void *)(uintptr_t)f->name, f->name_len}, {(void *)(uintptr_t)": ", 2},
        {(void *)(uintptr_t)f->value, f->value_len}, {(void *)(uintptr_t)"\r\n", 2}};
    for (int i = 0; i < 4; i++)
        evbuffer_add(out, v[i].iov_base, v[i].iov_len);
}

void hdr_write_request(struct evbuffer *out, const struct h1_request *req,
                       const struct fwd_request *fwd)
{
    bool has_connection = h1_find_field(req->fields, req->nfields, "connection", 0) >= 0;
    const struct h1_field *xff = NULL;

    evbuffer_add(out, req->method, req->method_len);
    evbuffer_add(out, " ", 1);
    if (fwd->target_len > 0 && fwd->target[0] == '?') /* "http://h?q" is "/?q" (request.h) */
        evbuffer_add(out, "/", 1);
    evbuffer_add(out, fwd->target, fwd->target_len);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);
    if (fwd->host) { /* HTTP/1.1 requires Host, and first is where servers look (RFC 9112 3.2) */
        evbuffer_add(out, "Host: ", 6);
        evbuffer_add(out, fwd->host, fwd->host_len);
        evbuffer_add(out, "\r\n", 2);
    }
    for (size_t i = 0; i < req->nfields; i++) {
        const struct h1_field *f = &req->fields[i];
        if (h1_name_is(f, "host")) {
            /* End-to-end and required in HTTP/1.1: "Connection: host" cannot remove it. */
            if (!fwd->host)
                add_field(out, f);
            continue;
        }
        if (static_hop(f) || (has_connection && named_by_connection(f, req->fields, req->nfields)))
            continue;
        if (h1_name_is(f, "x-forwarded-for")) { /* merged into one field below */
            if (!xff)
                xff = f;
            continue;
        }
        if (h1_name_is(f, "x-forwarded-proto") || h1_name_is(f, "x-forwarded-host") ||
            h1_name_is(f, "x-request-id") || (fwd->traceparent && h1_name_is(f, "traceparent")))
            continue; /* set by us below */
        if (fwd->drop_tracestate && h1_name_is(f, "tracestate"))
            continue;
        if (h1_name_is(f, "expect") && !fwd->keep_expect)
            continue;
        add_field(out, f);
    }
    /* X-Forwarded-For keeps the chain the client brought and appends the address we saw. */
    evbuffer_add(out, "X-Forwarded-For: ", 17);
    for (int i = h1_find_field(req->fields, req->nfields, "x-forwarded-for", 0); xff && i >= 0;
         i = h1_find_field(req->fields, req->nfields, "x-forwarded-for", (size_t)i + 1)) {
        if (req->fields[i].value_len == 0) /* "X-Forwarded-For:" adds no empty element */
            continue;
        evbuffer_add(out, req->fields[i].value, req->fields[i].value_len);
        evbuffer_add(out, ", ", 2);
    }
    add_str(out, fwd->client_ip);
    add_str(out, fwd->client_tls ? "\r\nX-Forwarded-Proto: https\r\n"
                                 : "\r\nX-Forwarded-Proto: http\r\n");
    if (fwd->client_host) {
        evbuffer_add(out, "X-Forwarded-Host: ", 18);
        evbuffer_add(out, fwd->client_host, fwd->client_host_len);
        evbuffer_add(out, "\r\n", 2);
    }
    add_line(out, "X-Request-Id: ", fwd->request_id);
    if (fwd->traceparent)
        add_line(out, "traceparent: ", fwd->traceparent);
    add_str(out, "Via: " VIA_VALUE "\r\n");
    if (fwd->framing == H1_BODY_LENGTH)
        add_content_length(out, fwd->content_length);
    else if (fwd->framing == H1_BODY_CHUNKED)
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    evbuffer_add(out, "\r\n", 2);
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

static size_t end_to_end(const struct h1_response *resp, struct h1_field *out, size_t max,
                         bool *has_request_id)
{
    bool has_connection = h1_find_field(resp->fields, resp->nfields, "connection", 0) >= 0;
    size_t n = 0;
    for (size_t i = 0; i < resp->nfields && n < max; i++) {
        const struct h1_field *f = &resp->fields[i];
        if (static_hop(f) ||
            (has_connection && named_by_connection(f, resp->fields, resp->nfields)))
            continue;
        *has_request_id |= h1_name_is(f, "x-request-id");
        out[n++] = *f;
    }
    return n;
}

#define FIELD(lit, v) ((struct h1_field){lit, sizeof(lit) - 1, (v), strlen(v)})

size_t hdr_response_fields(const struct h1_response *resp, const struct fwd_response *fwd,
                           struct h1_field *out, size_t max)
{
    bool has_request_id = false;
    size_t n = end_to_end(resp, out, max > 5 ? max - 5 : 0, &has_request_id);
    out[n++] = FIELD("Via", VIA_VALUE);
    if (!has_request_id && fwd->request_id)
        out[n++] = FIELD("X-Request-Id", fwd->request_id);
    if (fwd->proxy_status)
        out[n++] = FIELD("Proxy-Status", fwd->proxy_status);
    if (fwd->server_timing)
        out[n++] = FIELD("Server-Timing", fwd->server_timing);
    /* 304 and HEAD responses keep the origin's Content-Length: it describes the representation,
     * not this message's body (RFC 9110 8.6); a 204 never has one. */
    int cl = h1_find_field(resp->fields, resp->nfields, "content-length", 0);
    if (fwd->framing == H1_BODY_NONE && resp->status != HTTP_NO_CONTENT && cl >= 0)
        out[n++] = resp->fields[cl];
    return n;
}

size_t hdr_interim_fields(const struct h1_response *resp, struct h1_field *out, size_t max)
{
    bool has_request_id = false;
    return end_to_end(resp, out, max, &has_request_id);
}

void hdr_write_head(struct evbuffer *out, const struct resp_head *h, enum h1_framing wire,
                    bool http10, bool keep_alive)
{
    int code = h->status >= 100 && h->status <= 999 ? h->status : HTTP_BAD_GATEWAY;
    /* an empty reason is legal but unhelpful: the writer uses the registry's */
    if (h1out_status_line(out, code, h->reason, h->reason_len) != 0)
        h1out_status_line(out, code, NULL, 0);
    for (size_t i = 0; i < h->nfields; i++)
        add_field(out, &h->fields[i]);
    if (code >= HTTP_OK) {
        if (wire == H1_BODY_LENGTH)
            add_content_length(out, h->content_length);
        else if (wire == H1_BODY_CHUNKED)
            evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
        if (!keep_alive)
            evbuffer_add(out, "Connection: close\r\n", 19);
        else if (http10)
            evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    evbuffer_add(out, "\r\n", 2);
}
