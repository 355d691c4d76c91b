/*
 * trailers.c — the trailer field filter. See trailers.h.
 *
 * The decoder has checked the grammar already (field lines "name: value CRLF", no obs-fold, no
 * bare CR or LF), so a run is cut at ':' and '\n' with memchr only.
 */
#include "portico/trailers.h"

#include <event2/buffer.h>
#include <string.h>

#include "portico/http1.h"
#include "portico/util.h"

/* Fields a trailer section must not carry through Portico, lowercase. A name here is never
 * TRAILER_NAME_HOLD bytes or longer. Left to pass: what is meant to come after the content
 * (Content-Digest, Repr-Digest, Digest, Server-Timing, ETag, custom fields). */
static const char *const refused[] = {
    /* message framing (RFC 9110 6.5.1): the chunked coding has framed this message already */
    "content-length", "transfer-encoding", "trailer",
    /* routing: the request went where its head said */
    "host",
    /* hop-by-hop (RFC 9110 7.6.1), as in a head; "proxy-..." is refused by prefix below */
    "connection", "keep-alive", "te", "upgrade",
    /* what Portico writes or removes in a request head, so that an origin believes it: the
     * client address chain, the request id, the trace, Via, its fault-injection field and its
     * mirror copies' marker (and the H1_F_PROXY_CLAIM names, by id below) */
    "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "via",
    "x-request-id", "traceparent", "tracestate", "portico-fault", "x-portico-mirror",
    /* authentication and its state (RFC 9110 11, RFC 6265) */
    "authorization", "authentication-info", "www-authenticate", "cookie", "set-cookie",
    /* request modifiers: controls, conditionals, range, negotiation (RFC 9110 7.6.2, 10.1,
     * 13.1, 14.2, 12.5), all read before the content is */
    "cache-control", "expect", "max-forwards", "pragma", "range", "if-match", "if-none-match",
    "if-modified-since", "if-unmodified-since", "if-range", "accept", "accept-charset",
    "accept-encoding", "accept-language",
    /* response controls (RFC 9110 10.2, RFC 9111 5): a cache or a client acts on them before
     * the content */
    "age", "expires", "location", "retry-after", "vary",
    /* content format (RFC 9110 8.3-8.7): needed to read the content at all */
    "content-type", "content-encoding", "content-language", "content-range", "content-location",
};

#define PROXY_PREFIX "proxy-" /* Proxy-Authorization, -Authenticate, -Connection, -Status ... */

/* Whether name[len] is the lowercase `lower`, in any case and with '_' for '-': CGI, WSGI and
 * Rack servers read X_Forwarded_Proto as X-Forwarded-Proto (HTTP_X_FORWARDED_PROTO), which is
 * why a head loses those twins too (headers.c). */
static bool name_is(const char *name, size_t len, const char *lower)
{
    for (size_t i = 0; i < len; i++) {
        char c = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + 32) : name[i];
        if ((c == '_' ? '-' : c) != lower[i])
            return false;
    }
    return true;
}

/* Whether name[len] (perhaps the first TRAILER_NAME_HOLD bytes of a longer one) is one of the
 * parser's H1_F_PROXY_CLAIM names, '_' read as '-': X-Forwarded-Port, Client-IP ... */
static bool proxy_claim(const char *name, size_t len)
{
    char dashed[TRAILER_NAME_HOLD] = {0}; /* a 0-byte name reads nothing: GCC cannot tell */
    size_t n = MIN(len, sizeof(dashed)); /* longer: only the X-Forwarded- prefix can match */
    for (size_t i = 0; i < n; i++)
        dashed[i] = name[i] == '_' ? '-' : name[i];
    return h1_field_id_of(dashed, n) == H1_F_PROXY_CLAIM;
}

bool trailer_field_allowed(const char *name, size_t len)
{
    size_t plen = sizeof(PROXY_PREFIX) - 1;
    if (len >= plen && name_is(name, plen, PROXY_PREFIX))
        return false;
    if (proxy_claim(name, len))
        return false;
    if (len >= TRAILER_NAME_HOLD) /* perhaps a prefix only: longer than every refused name */
        return true;
    for (size_t i = 0; i < ARRAY_LEN(refused); i++)
        if (strlen(refused[i]) == len && name_is(name, len, refused[i]))
            return false;
    return true;
}

enum tf_state {
    TF_NAME = 0, /* reading a name (held): a zeroed filter starts a line */
    TF_PASS,     /* the rest of a forwarded line, up to its LF */
    TF_DROP,     /* the rest of a dropped line, up to its LF */
};

void trailer_filter_init(struct trailer_filter *t)
{
    memset(t, 0, sizeof(*t));
    t->state = TF_NAME;
}

/* (its own function, not a field poked: the filter's fields are private) */
void trailer_filter_rules(struct trailer_filter *t, const struct hrules *rules)
{
    t->rules = rules;
}

int trailer_filter_run(struct trailer_filter *t, const char *p, size_t n, struct evbuffer *out)
{
    while (n > 0) {
        if (t->state == TF_NAME) {
            const char *colon = memchr(p, ':', n);
            size_t name_bytes = colon ? (size_t)(colon - p) : n;
            size_t take = MIN(name_bytes, TRAILER_NAME_HOLD - t->held);
            memcpy(t->name + t->held, p, take);
            t->held += take;
            p += take;
            n -= take;
            if (!colon && t->held < TRAILER_NAME_HOLD)
                return 0; /* the name goes on in the next run */
            /* The whole name, or as much as it takes to judge it. */
            bool whole = colon && take == name_bytes;
            bool allowed = trailer_field_allowed(t->name, t->held) &&
                           !(t->rules && hrules_names_start(t->rules, t->name, t->held, whole));
            t->state = allowed ? TF_PASS : TF_DROP;
            if (t->state == TF_PASS && evbuffer_add(out, t->name, t->held) != 0)
                return -1;
            t->held = 0;
            continue;
        }
        const char *lf = memchr(p, '\n', n);
        size_t k = lf ? (size_t)(lf - p) + 1 : n;
        if (t->state == TF_PASS && evbuffer_add(out, p, k) != 0)
            return -1;
        p += k;
        n -= k;
        if (lf)
            t->state = TF_NAME;
    }
    return 0;
}
