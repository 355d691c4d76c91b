/*
 * route_return.c — a route that answers itself (return = CODE [TEXT-or-URL]): a redirect with its
 * Location, a text, an empty answer, or Portico's own error page, sent through the downstream
 * as Portico's other answers are (HTTP/1.1 and HTTP/2 alike), after the route's client_rate and
 * before any origin. The variables expand through header_rules.h's one expander.
 */
#include "exchange_int.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "portico/config.h"
#include "portico/header_rules.h"
#include "portico/headers.h"
#include "portico/route_return.h"
#include "portico/status.h"
#include "portico/util.h"

/* Room for our own fields (Date, Server, X-Request-Id, Location or Content-Type and nosniff)
 * and the route's response_header rules. */
#define RETURN_FIELDS (5 + HRULE_MAX)

/* Where an expansion goes; failed once an add did not (out of memory). */
struct made {
    struct evbuffer *out;
    bool failed;
};

/* A Location's expansion: the client's words (its Host, its target) are percent-encoded where
 * they are no URL byte, so that nothing of theirs ends the field or starts another line (the
 * parsers let none through today: this holds whatever a parser lets by tomorrow). */
static void location_put(void *ctx, const char *p, size_t n, bool variable)
{
    static const char hex[] = "0123456789ABCDEF";
    struct made *m = ctx;
    size_t start = 0;
    for (size_t i = 0; variable && i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c > ' ' && c < 0x7f)
            continue;
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        m->failed |= evbuffer_add(m->out, p + start, i - start) != 0 ||
                     evbuffer_add(m->out, esc, sizeof(esc)) != 0;
        start = i + 1;
    }
    m->failed |= evbuffer_add(m->out, p + start, n - start) != 0;
}

/* A text's expansion: a body of text/plain under nosniff, where a client's words are text. */
static void text_put(void *ctx, const char *p, size_t n, bool variable)
{
    (void)variable;
    struct made *m = ctx;
    m->failed |= evbuffer_add(m->out, p, n) != 0;
}

/* The route's text (a redirect's URL, another code's body) with its variables expanded into
 * out; 0, or -1 out of memory. */
static int expand(const struct route_return *a, const struct hrule_values *vals,
                  struct evbuffer *out, hrule_put_fn *put)
{
    if (!a->vars)
        return evbuffer_add(out, a->text, a->text_len);
    struct made m = {out, false};
    hrule_expand(a->text, a->text_len, vals, put, &m);
    return m.failed ? -1 : 0;
}

/* "/$request_uri" of a target "//evil.example/x" would be "//evil.example/x", which a browser
 * reads as another host: a run of slashes (or backslashes, which browsers read as slashes) that
 * begins a Location is one slash. */
static int one_leading_slash(struct evbuffer *loc)
{
    size_t len = evbuffer_get_length(loc);
    const char *p = (const char *)evbuffer_pullup(loc, -1);
    if (!p || len < 2 || p[0] != '/')
        return p || len == 0 ? 0 : -1;
    /* counted within len: the pulled-up bytes have no NUL after them (strspn read on, past
     * the chain's end when the slashes filled it) */
    size_t run = 0;
    while (run < len && (p[run] == '/' || p[run] == '\\'))
        run++;
    if (run < 2)
        return 0;
    evbuffer_drain(loc, run);
    return evbuffer_prepend(loc, "/", 1);
}

/* Whether loc is an absolute URL whose authority came out empty: "https://$host$request_uri"
 * of a request without a Host is "https:///x", and of a target "//evil.example/x"
 * "https:////evil.example/x", which browsers read as a URL of host evil.example. A Host of a
 * port alone (":80", an empty reg-name that RFC 3986 lets by) has no host either. */
static bool authority_empty(struct evbuffer *loc)
{
    static const char *const absolute[] = {"http://", "https://"}; /* all a URL may start
                                                                      with (config_keys.c) */
    size_t len = evbuffer_get_length(loc);
    const char *p = (const char *)evbuffer_pullup(loc, -1);
    for (size_t i = 0; p && i < ARRAY_LEN(absolute); i++) {
        size_t n = strlen(absolute[i]);
        if (len >= n && memcmp(p, absolute[i], n) == 0)
            return len == n || p[n] == '/' || p[n] == '\\' || p[n] == '?' || p[n] == '#' ||
                   p[n] == ':';
    }
    return false;
}

int route_return_location(const struct route_return *a, const struct hrule_values *vals,
                          struct evbuffer *out)
{
    if (expand(a, vals, out, location_put) != 0 || one_leading_slash(out) != 0)
        return -1;
    return authority_empty(out) ? -2 : 0;
}

/* Another code's body: the text with its variables expanded, and a newline. */
static int text_body(const struct route_return *a, const struct hrule_values *vals,
                     struct evbuffer *out)
{
    return expand(a, vals, out, text_put) != 0 || evbuffer_add(out, "\n", 1) != 0 ? -1 : 0;
}

/* Our own field, unless a response_header rule of the route names it: the rule's wins, as it
 * does over an origin's field. */
static void add_field(struct h1_field *fields, size_t *n, const struct hrules *rules,
                      const char *name, const char *value, size_t value_len)
{
    size_t len = strlen(name);
    if (rules && hrules_names(rules, name, len))
        return;
    fields[(*n)++] = (struct h1_field){name, len, value, value_len, H1_F_OTHER};
}

void route_return_answer(struct exchange *ex)
{
    const struct route_return *a = ex->route->answer;
    const struct hrules *rules = ex->route->response_rules;
    bool redirect = a->status >= 300 && a->status < 400; /* only redirects load (config_keys.c) */
    char why[48];
    snprintf(why, sizeof(why), "answered by the route (return %d)", a->status);
    if (!a->text && a->status >= 400) {
        /* no text of its own: Portico's error page, as for its other refusals (the text,
         * JSON or HTML that Accept asks for), and no rule's field, as errors get none */
        ex_refuse(ex, a->status, why, !relay_discard_body(ex));
        return;
    }
    str_copy(ex->detail, sizeof(ex->detail), why);
    /* the request body is not wanted: read and dropped as a refusal's is, else the connection
     * cannot go on */
    ex->close_client |= !relay_discard_body(ex) || !ex->info.keep_alive;
    char client[PEER_ADDR_MAX];
    struct hrule_values vals = {
        .client_addr = ex_client_text(ex, client, sizeof(client)),
        .request_id = ex->request_id,
        .tls = ex->ds.peer->tls,
        .host = ex->host,
        .host_len = ex->host_len,
        .request_uri = ex->uri,
        .request_uri_len = ex->uri_len,
    };
    struct evbuffer *made = a->text ? evbuffer_new() : NULL;
    int rc = !made       ? 0
             : redirect ? route_return_location(a, &vals, made)
                        : text_body(a, &vals, made);
    if (a->text && (!made || rc != 0)) {
        if (made)
            evbuffer_free(made);
        if (rc == -2) /* nginx's $host falls back to its server_name; a route has none */
            ex_refuse(ex, HTTP_BAD_REQUEST, "no host to redirect to: the request named none",
                      !relay_discard_body(ex));
        else /* (not ex_fail: that one speaks of an upstream, and this route has none) */
            ex_refuse(ex, HTTP_SERVICE_UNAVAILABLE, "out of memory for the route's answer", true);
        return;
    }
    size_t made_len = made ? evbuffer_get_length(made) : 0;
    const char *made_text = made ? (const char *)evbuffer_pullup(made, -1) : NULL;
    const char *date = http_date_now();
    struct h1_field fields[RETURN_FIELDS];
    size_t n = 0;
    add_field(fields, &n, NULL, "Date", date, strlen(date));
    add_field(fields, &n, rules, "Server", "portico", 7);
    add_field(fields, &n, NULL, "X-Request-Id", ex->request_id, strlen(ex->request_id));
    size_t body = 0;
    if (redirect) {
        add_field(fields, &n, rules, "Location", made_text, made_len);
    } else if (made) {
        /* as on every answer of Portico's with content (errpage.c) */
        add_field(fields, &n, rules, "Content-Type", "text/plain; charset=utf-8", 25);
        add_field(fields, &n, rules, "X-Content-Type-Options", "nosniff", 7);
        body = made_len;
    }
    for (int i = 0; rules && i < rules->n; i++)
        if (rules->rule[i].op == HRULE_SET)
            fields[n++] = (struct h1_field){rules->rule[i].name, rules->rule[i].name_len,
                                            rules->rule[i].value, rules->rule[i].value_len,
                                            H1_F_OTHER};
    /* 204 has no Content-Length (RFC 9110 8.6); a redirect's is 0: its Location says it all, as
     * HAProxy's redirect does, and a body would be the client's words in a page */
    struct resp_head head = {.status = a->status, .fields = fields, .nfields = n,
                             .framing = a->status == HTTP_NO_CONTENT ? H1_BODY_NONE
                                                                     : H1_BODY_LENGTH,
                             .content_length = body, .close = ex->close_client};
    bool head_only = ex->req.method_id == METHOD_HEAD;
    char fit[160];
    if (ex->ds.ops->head_fits &&
        !ex->ds.ops->head_fits(ex->ds.ctx, &head, true, fit, sizeof(fit))) {
        /* Past what this client takes (HTTP/2: its SETTINGS_MAX_HEADER_LIST_SIZE, a long
         * Location of its own long target): python-h2 would end the whole connection for it.
         * Refused on its own stream instead, as an origin's head is (relay.c), saying why. */
        char reason[sizeof(ex->detail)];
        snprintf(reason, sizeof(reason), "answered by the route (return %d): %s", a->status, fit);
        ex_refuse(ex, HTTP_INTERNAL_SERVER_ERROR, reason, ex->close_client);
    } else if (!ex_client_gone(ex)) {
        ex->ds.ops->head(ex->ds.ctx, &head, &ex->sink);
        if (body && !head_only && evbuffer_add(ex->sink.out, made_text, body) != 0) {
            ex_own_body_lost(ex);
            body = 0;
        }
        ex->error_body_bytes = head_only ? 0 : body;
        ex->status = head.status;
        ex->resp_state = RESP_DONE;
        ex_end(ex, OUTCOME_DONE);
    }
    if (made)
        evbuffer_free(made);
}
