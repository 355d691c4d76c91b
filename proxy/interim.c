/*
 * interim.c — the 1xx policy of an exchange: 100 Continue (relayed, synthesized, or ours after
 * continue_timeout), 102 Processing heartbeats, 103 Early Hints (configured, learned, and the
 * origin's relayed without a link sent twice), and what reaches which client: nothing for
 * HTTP/1.0, at most MAX_INTERIM per exchange. Every 1xx goes to the client as a resp_head
 * through the downstream, so HTTP/1.1 and HTTP/2 clients get the same ones.
 */
#include "exchange_int.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/generation.h"
#include "portico/headers.h"
#include "portico/hints.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/status.h"
#include "portico/util.h"

/* The 100 Continue a client that sent Expect still waits for before its body. */
static bool continue_owed(const struct exchange *ex, int code)
{
    return code == HTTP_CONTINUE && ex->info.expect_continue && !ex->sent_100;
}

/* Sends one 1xx to the client (dir: relayed from the origin, or synthesized by us), or counts
 * it dropped when the client cannot take it or already got MAX_INTERIM. The 100 a client waits
 * for goes past that cap (once: sent_100): dropped, the client would never send its body. A 1xx
 * larger than the client's protocol carries (an HTTP/2 header block over its bound: a 103 of
 * 64 KiB of Link fields) is dropped too, and said so in the error log: nghttp2 dropped it
 * without a word, and the final response, which carries what matters, still goes. */
static bool send_interim(struct exchange *ex, int code, const struct h1_field *fields, size_t n,
                         enum interim_direction dir)
{
    if (!ex_client_http11(ex) ||
        (ex->interim_count >= MAX_INTERIM && !continue_owed(ex, code))) {
        metrics_interim(ex->loop->metrics, code, INTERIM_DROPPED);
        return false;
    }
    struct resp_head head = {.status = code, .fields = fields, .nfields = n};
    char why[160];
    if (ex->ds.ops->head_fits &&
        !ex->ds.ops->head_fits(ex->ds.ctx, &head, false, why, sizeof(why))) {
        log_warn("request %s: %d not relayed: %s", ex->request_id, code, why);
        metrics_interim(ex->loop->metrics, code, INTERIM_DROPPED);
        return false;
    }
    ex->ds.ops->interim(ex->ds.ctx, &head);
    ex_note_interim(ex, code);
    metrics_interim(ex->loop->metrics, code, dir);
    return true;
}

static struct hint_set *hint_set_of(struct exchange *ex)
{
    if (!ex->hints)
        ex->hints = calloc(1, sizeof(*ex->hints));
    return ex->hints;
}

static struct hint_cache *hint_cache_of(const struct exchange *ex)
{
    return ex->route_index >= 0 ? ex->loop->gen->hints[ex->route_index] : NULL;
}

/* The learned-hints key of this request's host. Returns its length (0: no host). */
static size_t hint_host(const struct exchange *ex, char *buf, size_t size)
{
    return ex->host ? host_key(ex->host, ex->host_len, buf, size) : 0;
}

static bool is_get(const struct exchange *ex)
{
    return ex->req.method_id == METHOD_GET;
}

/* Adds a Link field with the links of value not hinted yet, if any. */
static void add_new_links(struct hint_set *set, const char *value, size_t len, char *buf,
                          size_t size, size_t *used, struct h1_field *fields, size_t *n,
                          size_t max)
{
    size_t got = *n < max ? hint_filter(set, value, len, buf + *used, size - *used) : 0;
    if (!got)
        return;
    fields[(*n)++] = (struct h1_field){"Link", 4, buf + *used, got, H1_F_LINK};
    *used += got;
}

void interim_early_hints(struct exchange *ex)
{
    const struct route_conf *r = ex->route;
    struct hint_cache *cache = hint_cache_of(ex);
    /* An upgrade request's client takes the 101 or a final status: a browser fails its
     * WebSocket on any other 1xx. */
    if (!ex_client_http11(ex) || !is_get(ex) || ex->upgrade || (!r->nhints && !cache))
        return;
    char learned[HINT_MAX_BYTES + 1];
    size_t learned_len = 0;
    char host[256];
    size_t host_len = hint_host(ex, host, sizeof(host));
    if (cache && host_len)
        learned_len = hint_cache_get(cache, host, host_len, ex->route_path, ex->path_len,
                                     learned, sizeof(learned));
    struct hint_set *set = (r->nhints || learned_len) ? hint_set_of(ex) : NULL;
    if (!set)
        return;
    /* One Link field per configured value and per learned one, as they were written. */
    char links[HINT_MAX_BYTES * 2];
    struct h1_field fields[CFG_MAX_HINTS + 32];
    size_t used = 0, n = 0;
    for (int i = 0; i < r->nhints; i++)
        add_new_links(set, r->early_hints[i], strlen(r->early_hints[i]), links, sizeof(links),
                      &used, fields, &n, ARRAY_LEN(fields));
    for (const char *p = learned, *end = learned + learned_len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        add_new_links(set, p, len, links, sizeof(links), &used, fields, &n, ARRAY_LEN(fields));
        p += len + 1;
    }
    if (n)
        send_interim(ex, HTTP_EARLY_HINTS, fields, n, INTERIM_SYNTHESIZED);
}

void interim_learn(struct exchange *ex, const struct h1_field *fields, size_t nfields)
{
    struct hint_cache *cache = hint_cache_of(ex);
    if (!cache || !ex->host || !is_get(ex))
        return;
    char links[HINT_MAX_BYTES];
    size_t n = hint_collect(fields, nfields, links, sizeof(links));
    char host[256];
    size_t host_len = hint_host(ex, host, sizeof(host));
    if (host_len)
        hint_cache_put(cache, host, host_len, ex->route_path, ex->path_len, links, n);
}

static bool send_continue(struct exchange *ex)
{
    if (ex->sent_100 || !ex_client_http11(ex))
        return false;
    ex->sent_100 = send_interim(ex, HTTP_CONTINUE, NULL, 0, INTERIM_SYNTHESIZED);
    return ex->sent_100;
}

bool interim_send(struct exchange *ex, int code)
{
    if (code == HTTP_CONTINUE)
        return send_continue(ex);
    return send_interim(ex, code, NULL, 0, INTERIM_SYNTHESIZED);
}

void interim_expect(struct exchange *ex)
{
    /* An empty body (Content-Length: 0) came whole with the head: nothing to hold or invite
     * (RFC 9110 10.1.1 lets a server omit the 100), and a gate never opened would make the
     * origin's answer look early and close the client's connection. */
    if (ex->req_state != REQ_BODY || ex->req_body.done || !ex_client_http11(ex) ||
        !ex->info.expect_continue)
        return;
    switch (ex->route->expect) {
    case EXPECT_RELAY:
        ex->req_state = REQ_GATED;
        break;
    case EXPECT_SYNTHESIZE:
        send_continue(ex);
        break;
    case EXPECT_IGNORE:
        break;
    }
}

void interim_heartbeats(struct exchange *ex)
{
    /* not before a 101 either (interim_early_hints) */
    if (ex_client_http11(ex) && !ex->upgrade && ex->route->processing_interval_ms)
        ex_arm(&ex->processing_timer, ex->route->processing_interval_ms);
}

void interim_open_gate(struct exchange *ex)
{
    if (ex->req_state != REQ_GATED)
        return;
    deadline_clear(&ex->continue_timer);
    ex->req_state = REQ_BODY;
    ex_body_owed(ex);
    relay_request_body(ex);
}

void interim_continue_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    ex->now = event_now_us();
    if (!deadline_due(&ex->continue_timer, ex->now))
        return;
    if (ex->req_state == REQ_GATED) {
        send_continue(ex); /* unless the origin's 100 went already */
        interim_open_gate(ex);
    }
    ex_settle(ex);
}

void interim_processing_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct exchange *ex = arg;
    ex->now = event_now_us();
    if (!deadline_due(&ex->processing_timer, ex->now))
        return;
    /* Past MAX_INTERIM the heartbeats stop: a tick is no 1xx dropped (that figure is the
     * origins' floods), and a timer left running would only count ticks. */
    if (ex->resp_state == RESP_HEAD && ex->interim_count < MAX_INTERIM) {
        send_interim(ex, HTTP_PROCESSING, NULL, 0, INTERIM_SYNTHESIZED);
        ex_arm(&ex->processing_timer, ex->route->processing_interval_ms);
    }
    ex_settle(ex);
}

/* Room for the new links of a 103's Link fields of link_bytes in all: a link kept is at most
 * as long as it came, and each takes at most 2 bytes of separator (", ") where the origin may
 * have used 1 (","); a link-value is at least 3 bytes ("<u>"). */
static size_t relay_links_room(const struct h1_field *fields, size_t n)
{
    size_t link_bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (fields[i].id == H1_F_LINK)
            link_bytes += fields[i].value_len;
    return link_bytes * 2;
}

bool interim_relay(struct exchange *ex, const struct h1_response *resp)
{
    int code = resp->status;
    bool opens_gate = code == HTTP_CONTINUE && ex->req_state == REQ_GATED;
    if (code == HTTP_CONTINUE && ex->sent_100) {
        metrics_interim(ex->loop->metrics, code, INTERIM_DROPPED);
        return opens_gate;
    }
    struct h1_field fields[H1_MAX_FIELDS + 1]; /* the origin's, then Via */
    /* a field a response rule names goes from it too (an X-Powered-By, a Link it removes) */
    size_t n = hdr_interim_fields(resp, ex->route->response_rules, fields, ARRAY_LEN(fields));
    /* The rewritten Link values of a 103, as large as the origin's (up to max_header_size): a
     * buffer of fixed size cut off the links past it, never to be sent. */
    char *links = NULL;
    if (code == HTTP_EARLY_HINTS) {
        /* Only the hints not already sent, and nothing at all when none is new. */
        struct hint_set *set = hint_set_of(ex);
        size_t room = relay_links_room(fields, n), used = 0, kept = 0;
        links = room ? malloc(room) : NULL;
        bool had_links = false, new_links = false;
        for (size_t i = 0; i < n; i++) {
            if (fields[i].id != H1_F_LINK) {
                fields[kept++] = fields[i];
                continue;
            }
            had_links = true;
            size_t len = set && links ? hint_filter(set, fields[i].value, fields[i].value_len,
                                                    links + used, room - used)
                                      : 0;
            if (!len)
                continue;
            new_links = true;
            fields[kept] = fields[i];
            fields[kept].value = links + used;
            fields[kept++].value_len = len;
            used += len;
        }
        n = kept;
        if (had_links && !new_links) {
            metrics_interim(ex->loop->metrics, code, INTERIM_DROPPED);
            goto out;
        }
    }
    if (send_interim(ex, code, fields, n, INTERIM_RELAYED) && code == HTTP_CONTINUE)
        ex->sent_100 = true;
out:
    free(links); /* the downstream copied the head */
    return opens_gate;
}
