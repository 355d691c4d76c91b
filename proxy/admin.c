/*
 * admin.c — admin endpoint responses. See admin.h.
 *
 * Room for the fallback response is reserved in the output before anything else is tried, so
 * that when building the real answer runs out of memory the client still gets a 503 and a
 * close instead of waiting forever for an answer that never comes.
 *
 * /metrics and /status are pages (admin_status.h) written a slice at a time: a page that fits in
 * its first slice is answered whole with its Content-Length, as any other; a larger one goes
 * chunked (HTTP/1.1) or until the close (HTTP/1.0), one slice per turn of the loop once the
 * previous one went out (client.c), as nginx and HAProxy stream their status pages.
 */
#include "portico/admin.h"
#include "portico/admin_status.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/admin_faults.h"
#include "portico/admin_upstreams.h"
#include "portico/config.h"
#include "portico/generation.h"
#include "portico/h1out.h"
#include "portico/status.h"
#include "portico/util.h"

#define TEXT_PLAIN "text/plain; charset=utf-8"
/* Body bytes of a page written per turn of worker 0's loop: well under a millisecond of work
 * (0.25 ms at most for a /metrics of 9.7 MB, which took 50 ms of CPU written whole), and no
 * more than a socket buffer takes at once. */
#define ADMIN_SLICE (64 * 1024)
/* Never cached (the figures are live) and never sniffed (a text answer must not turn into a
 * page). */
#define ADMIN_FIELDS \
    "Server: portico\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"

/* Both tokens are hashed and the digests compared in constant time: nothing about the token
 * leaks through how long the comparison takes, its length included. */
bool admin_authorized(const struct h1_request *req, const struct config *cfg)
{
    if (!cfg->admin_token)
        return true;
    int i = h1_find_field(req->fields, req->nfields, "authorization", 0);
    if (i < 0 || req->fields[i].value_len < 7 || strncasecmp(req->fields[i].value, "bearer ", 7))
        return false;
    const char *tok = req->fields[i].value + 7;
    size_t len = req->fields[i].value_len - 7;
    while (len && *tok == ' ')
        tok++, len--;
    unsigned char got[SHA256_DIGEST_LENGTH], want[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, len, got);
    SHA256((const unsigned char *)cfg->admin_token, strlen(cfg->admin_token), want);
    return CRYPTO_memcmp(got, want, sizeof(got)) == 0;
}

/* A request that would change something, sent by a web page. Browsers put Origin on every
 * POST and DELETE, and a page of any site may send those to a loopback admin listener (a form
 * needs no CORS preflight; a page rebound to it by DNS is refused on its Host before this,
 * admin_host_allowed). Without admin_token, a page the operator merely opens could turn on
 * faults for every client; curl and scripts send no Origin. With the token, the page cannot
 * send it, and admin_authorized() refuses. */
static bool from_web_page(const struct h1_request *req, const struct config *cfg, bool get)
{
    return !cfg->admin_token && !get &&
           h1_find_field(req->fields, req->nfields, "origin", 0) >= 0;
}

/* An IP address as a Host key: "127.0.0.1" or "[::1]" (host_key keeps the brackets). */
static bool ip_literal(const char *key, size_t n)
{
    unsigned char addr[sizeof(struct in6_addr)];
    char inner[INET6_ADDRSTRLEN + 1];
    if (key[0] != '[')
        return inet_pton(AF_INET, key, addr) == 1;
    if (n < 3 || key[n - 1] != ']' || n - 2 >= sizeof(inner))
        return false;
    memcpy(inner, key + 1, n - 2);
    inner[n - 2] = '\0';
    return inet_pton(AF_INET6, inner, addr) == 1;
}

/* "localhost" and any "*.localhost": browsers resolve them to loopback themselves, asking no DNS
 * (RFC 6761 6.3), so no page can rebind them. */
static bool localhost_name(const char *key, size_t n)
{
    static const char suffix[] = ".localhost";
    size_t sl = sizeof(suffix) - 1;
    return strcmp(key, "localhost") == 0 || (n > sl && memcmp(key + n - sl, suffix, sl) == 0);
}

bool admin_host_allowed(const struct config *cfg, const char *host, size_t len)
{
    /* With the token there is nothing to guard: a page can make the browser send a request
     * with any Host, but never the token, and admin_authorized() refuses the request without
     * it. An HTTP/1.0 request without Host comes from no browser. */
    if (cfg->admin_token || !host)
        return true;
    char key[256];
    size_t n = host_key(host, len, key, sizeof(key)); /* 0: empty, or no name (too long) */
    if (n && (ip_literal(key, n) || localhost_name(key, n)))
        return true;
    for (int i = 0; i < cfg->nadmin_hosts; i++) {
        const char *name = cfg->admin_hosts[i];
        if (strcmp(name, "*") == 0 || (n && strcmp(name, key) == 0))
            return true;
    }
    return false;
}

/* The fault API's answer (admin_faults.c), or the upstreams' (admin_upstreams.c), into h, its own fields (*extra) and body. */
static int faults(const struct h1_request *req, size_t plen, const char *req_body,
                  size_t body_len, const struct generation *gen, struct h1out_head *h,
                  const char **extra, struct evbuffer *body)
{
    struct admin_call call = {req, req->target, plen, req_body, body_len, gen};
    struct admin_reply reply = {.body = body};
    if ((admin_faults_path(req->target, plen) ? admin_faults_respond(&call, &reply)
                                              : admin_upstreams_respond(&call, &reply)) < 0)
        return -1;
    h->status = reply.status;
    h->content_type = reply.content_type;
    *extra = reply.fields ? reply.fields : "";
    return 0;
}

struct admin_stream {
    struct admin_page *page;           /* owned */
    bool chunked;                      /* else the content ends with the connection (HTTP/1.0) */
    struct evbuffer *slice;            /* owned: the next slice, before its framing */
};

void admin_stream_free(struct admin_stream *s)
{
    if (!s)
        return;
    admin_page_free(s->page);
    if (s->slice)
        evbuffer_free(s->slice);
    free(s);
}

/* Moves slice into out as the next piece of content. 0, or -1 when out of memory. */
static int put_slice(struct evbuffer *out, struct evbuffer *slice, bool chunked)
{
    size_t len = evbuffer_get_length(slice);
    if (!chunked)
        return evbuffer_add_buffer(out, slice);
    if (len == 0)
        return 0; /* an empty chunk would end the content */
    return evbuffer_add_printf(out, "%zx\r\n", len) < 0 || evbuffer_add_buffer(out, slice) != 0 ||
                   evbuffer_add(out, "\r\n", 2) != 0
               ? -1
               : 0;
}

int admin_stream_write(struct admin_stream *s, struct evbuffer *out)
{
    int rc = admin_page_next(s->page, s->slice, ADMIN_SLICE);
    if (rc < 0 || put_slice(out, s->slice, s->chunked) != 0)
        return -1;
    if (rc == 0 && s->chunked && evbuffer_add(out, "0\r\n\r\n", 5) != 0)
        return -1;
    return rc;
}

int admin_fields(char *buf, size_t size, const char *extra)
{
    int n = snprintf(buf, size, "Date: %s\r\n" ADMIN_FIELDS "%s", http_date_now(),
                     extra ? extra : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int admin_respond(struct evbuffer *out, const struct h1_request *req, const char *req_body,
                  size_t body_len, bool *close, const struct generation *gen)
{
    return admin_respond_stream(out, req, req_body, body_len, close, gen, NULL);
}

/* The head of a page that goes on past its first slice (in body), and that slice: the rest
 * comes from *more, or nothing more when answering HEAD (the length is not known: RFC 9110
 * 9.3.2 lets a HEAD answer leave out what only writing the content would tell). Once the head
 * is out, a failure can only cut the answer short: *close is set. Returns the status. */
static int stream_head(struct evbuffer *out, const struct h1_request *req, struct h1out_head *h,
                       struct evbuffer *body, struct admin_page **page, bool *close,
                       struct admin_stream **more)
{
    bool head = req->method_id == METHOD_HEAD;
    bool chunked = req->minor >= 1;
    struct admin_stream *s = head ? NULL : calloc(1, sizeof(*s));
    if (!head && (!s || !(s->slice = evbuffer_new()))) {
        admin_stream_free(s);
        return -1;
    }
    if (!chunked) { /* HTTP/1.0: the close ends the content */
        *close = true;
        h->connection = H1OUT_CONN_CLOSE;
    }
    if (h1out_head(out, h, chunked ? H1OUT_CHUNKED : H1OUT_UNTIL_CLOSE) != 0) {
        admin_stream_free(s);
        return -1;
    }
    if (head)
        return h->status;
    s->page = *page;
    s->chunked = chunked;
    *page = NULL;
    if (put_slice(out, body, chunked) != 0) {
        admin_stream_free(s);
        *close = true; /* cut short */
        return h->status;
    }
    *more = s;
    return h->status;
}

int admin_respond_stream(struct evbuffer *out, const struct h1_request *req, const char *req_body,
                         size_t body_len, bool *close, const struct generation *gen,
                         struct admin_stream **more)
{
    struct evbuffer *body = NULL;
    struct admin_page *page = NULL;
    bool head = req->method_id == METHOD_HEAD;
    bool get = head || req->method_id == METHOD_GET;
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    struct h1out_head h = {
        .content_type = TEXT_PLAIN,
        /* HTTP/1.0 keeps a connection only when the answer says so */
        .connection = *close ? H1OUT_CONN_CLOSE
                      : req->minor == 0 ? H1OUT_CONN_KEEP_ALIVE
                                        : H1OUT_CONN_DEFAULT,
    };
    int rc = 0;
    char fields[768]; /* the Date, ADMIN_FIELDS and the answer's own (extra) */
    const char *extra = "";

    if (more)
        *more = NULL;
    if (h1out_fallback_reserve(out) < 0) {
        *close = true; /* not even room for the fallback: closing is the only answer left */
        return -1;
    }
    if (!(body = evbuffer_new()))
        goto fail;
    if (!admin_authorized(req, gen->cfg)) {
        h.status = HTTP_UNAUTHORIZED;
        extra = "WWW-Authenticate: Bearer realm=\"portico\"\r\n";
        rc = evbuffer_add_printf(body, "401 Unauthorized: this admin listener needs "
                                       "Authorization: Bearer <admin_token>\n");
    } else if (from_web_page(req, gen->cfg, get)) {
        h.status = HTTP_FORBIDDEN;
        rc = evbuffer_add_printf(body, "403 Forbidden: the admin listener takes no changes from "
                                       "web pages (Origin); set admin_token to allow them\n");
    } else if (admin_faults_path(req->target, plen) || admin_upstreams_path(req->target, plen)) {
        rc = faults(req, plen, req_body, body_len, gen, &h, &extra, body);
    } else if (!get) {
        h.status = HTTP_METHOD_NOT_ALLOWED;
        extra = "Allow: GET, HEAD\r\n"; /* RFC 9110 15.5.6: a 405 carries Allow */
        rc = evbuffer_add_printf(body, "only GET and HEAD\n");
    } else if (span_ieq(req->target, plen, "/metrics")) {
        h.status = HTTP_OK;
        h.content_type = "text/plain; version=0.0.4; charset=utf-8";
        rc = (page = admin_page_metrics(gen)) ? 0 : -1;
    } else if (span_ieq(req->target, plen, "/status")) {
        h.status = HTTP_OK;
        h.content_type = "application/json";
        rc = (page = admin_page_status(gen, wall_ms())) ? 0 : -1;
    } else if ((rc = admin_status_render(req->target, plen, body, &h.content_type, &extra))) {
        h.status = HTTP_OK; /* the page (admin_status.c) */
        rc = rc < 0 ? -1 : 0;
    } else if (span_ieq(req->target, plen, "/healthz")) {
        h.status = HTTP_OK;
        rc = evbuffer_add_printf(body, "ok\n");
    } else {
        h.status = HTTP_NOT_FOUND;
        rc = evbuffer_add_printf(body, "admin endpoints: /, /status, /metrics, /healthz, /faults, "
                                         "/upstreams\n");
    }
    int rest = 0; /* 1: the page goes on past its first slice */
    if (page) {
        rest = admin_page_next(page, body, ADMIN_SLICE);
        while (rest > 0 && !more) /* the caller takes it whole */
            rest = admin_page_next(page, body, SIZE_MAX);
    }
    h.fields = fields;
    if (rc < 0 || rest < 0 || admin_fields(fields, sizeof(fields), extra) < 0)
        goto fail;
    if (rest > 0) { /* a page longer than a slice: written on from *more */
        int status = stream_head(out, req, &h, body, &page, close, more);
        admin_page_free(page);
        evbuffer_free(body);
        if (status < 0) {
            body = NULL;
            goto fail;
        }
        return status;
    }
    if (h1out_simple_buf(out, &h, body, head ? H1OUT_PAYLOAD_OMIT : H1OUT_PAYLOAD_SEND) < 0)
        goto fail;
    admin_page_free(page);
    evbuffer_free(body);
    return h.status;
fail:
    admin_page_free(page);
    if (body)
        evbuffer_free(body);
    *close = true;
    h1out_fallback(out); /* into the room reserved above: cannot fail */
    return HTTP_SERVICE_UNAVAILABLE;
}
