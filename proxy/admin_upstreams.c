/*
 * admin_upstreams.c — the origins' runtime state on the admin listener. See admin_upstreams.h.
 *
 * Reads come from the generation the admin listener serves (its balancers' atomics); a change
 * goes through origin_admin.c, which applies it to every generation listing the upstream. The
 * errors are one line naming what is wrong, as the fault API's.
 */
#include "portico/admin_upstreams.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "portico/balance.h"
#include "portico/config.h"
#include "portico/fault.h"
#include "portico/fmt.h"
#include "portico/generation.h"
#include "portico/origin_admin.h"
#include "portico/status.h"
#include "portico/util.h"

#define PREFIX "/upstreams"
#define ORIGINS "/origins/"
#define JSON "application/json"

bool admin_upstreams_path(const char *path, size_t len)
{
    return admin_path_under(path, len, PREFIX);
}

bool admin_upstreams_takes_body(const struct h1_request *req)
{
    const char *q = memchr(req->target, '?', req->target_len);
    size_t len = q ? (size_t)(q - req->target) : req->target_len;
    return req->method_id == METHOD_POST && admin_upstreams_path(req->target, len);
}

/* ---- answers ---- */

static int json_str(struct evbuffer *out, const char *s)
{
    char buf[CFG_ORIGIN_TEXT_MAX * 6 + 2];
    struct fmt_buf b;
    fmt_init(&b, buf, sizeof(buf));
    fmt_json_str(&b, s, strlen(s), sizeof(buf) - 2);
    return evbuffer_add(out, buf, b.len);
}

/* Origin o of upstream u: where it is, its role, weights, health, admin state, load. */
static int origin_json(struct evbuffer *out, const struct generation *gen, int u, int o)
{
    const struct upstream_conf *up = &gen->cfg->upstreams[u];
    const struct origin_conf *oc = &up->origins[o];
    const struct balancer *b = gen->balancers[u];
    int rc = evbuffer_add(out, "{\"origin\":", 10);
    rc = rc < 0 ? rc : json_str(out, oc->text);
    rc = rc < 0 ? rc : evbuffer_add_printf(
        out, ",\"role\":\"%s\",\"state\":\"%s\",\"weight\":%u,\"weight_configured\":%u,"
             "\"health\":\"%s\",\"passive\":\"%s\",\"check\":",
        oc->backup ? "backup" : "primary", origin_admin_name(balancer_origin_admin(b, o)),
        balancer_weight(b, o), oc->weight, balancer_origin_down(b, o) ? "down" : "up",
        origin_state_name(balancer_origin_state(b, o)));
    rc = rc < 0 ? rc
         : up->health.interval_ms
             ? evbuffer_add_printf(out, "\"%s\"", check_state_name(balancer_check_state(b, o)))
             : evbuffer_add_printf(out, "null");
    rc = rc < 0 ? rc : evbuffer_add_printf(out, ",\"in_flight\":%u,\"cookie\":",
                                           balancer_in_flight(b, o));
    rc = rc < 0 ? rc : up->sticky.on ? json_str(out, oc->cookie) : evbuffer_add(out, "null", 4);
    return rc < 0 ? -1 : evbuffer_add(out, "}", 1);
}

static int upstream_json(struct evbuffer *out, const struct generation *gen, int u)
{
    const struct upstream_conf *up = &gen->cfg->upstreams[u];
    int rc = evbuffer_add(out, "{\"name\":", 8);
    rc = rc < 0 ? rc : json_str(out, up->name);
    rc = rc < 0 ? rc : evbuffer_add_printf(out, ",\"balance\":\"%s\",\"origins\":[",
                                           balance_name(up->balance));
    for (int o = 0; o < up->norigins && rc >= 0; o++) {
        rc = o ? evbuffer_add(out, ",", 1) : 0;
        rc = rc < 0 ? rc : origin_json(out, gen, u, o);
    }
    return rc < 0 ? -1 : evbuffer_add(out, "]}", 2);
}

static int all_json(struct evbuffer *out, const struct generation *gen)
{
    int rc = evbuffer_add_printf(out, "{\"generation\":%u,\"upstreams\":[", gen->number);
    for (int u = 0; u < gen->cfg->nupstreams && rc >= 0; u++) {
        rc = u ? evbuffer_add(out, ",", 1) : 0;
        rc = rc < 0 ? rc : upstream_json(out, gen, u);
    }
    return rc < 0 ? -1 : evbuffer_add_printf(out, "]}\n");
}

/* ---- the path ---- */

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* s[n] percent-decoded into out[size] (NUL-terminated): -1 for a bad %XX, a NUL, or too long. */
static int decode(const char *s, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || k + 1 >= size)
            return -1;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return 0;
}

/* The parts of a path below /upstreams. */
struct target {
    char upstream[128];
    char origin[CFG_ORIGIN_TEXT_MAX];
    bool has_upstream, has_origin;
};

/* 0, or -1 with a 404's (no such path) or 400's (bad encoding) line in why. */
static int parse_target(const char *path, size_t len, struct target *t, int *status, char *why,
                        size_t size)
{
    size_t n = sizeof(PREFIX) - 1;
    *t = (struct target){0};
    *status = HTTP_NOT_FOUND;
    if (len <= n + 1) /* "/upstreams" or "/upstreams/" */
        return 0;
    const char *name = path + n + 1, *end = path + len;
    const char *slash = memchr(name, '/', (size_t)(end - name));
    const char *name_end = slash ? slash : end;
    if (decode(name, (size_t)(name_end - name), t->upstream, sizeof(t->upstream)) != 0) {
        *status = HTTP_BAD_REQUEST;
        snprintf(why, size, "the upstream's name in the path: a bad %%XX, or too long");
        return -1;
    }
    t->has_upstream = true;
    if (!slash || slash + 1 == end) /* "/upstreams/NAME" or "/upstreams/NAME/" */
        return 0;
    size_t on = sizeof(ORIGINS) - 1;
    if ((size_t)(end - slash) <= on || memcmp(slash, ORIGINS, on) != 0) {
        snprintf(why, size, "no such path: /upstreams/NAME/origins/HOST:PORT");
        return -1;
    }
    const char *origin = slash + on;
    if (memchr(origin, '/', (size_t)(end - origin))) {
        snprintf(why, size, "no such path: /upstreams/NAME/origins/HOST:PORT");
        return -1;
    }
    if (decode(origin, (size_t)(end - origin), t->origin, sizeof(t->origin)) != 0) {
        *status = HTTP_BAD_REQUEST;
        snprintf(why, size, "the origin in the path: a bad %%XX, or too long");
        return -1;
    }
    t->has_origin = true;
    return 0;
}

static int find_upstream(const struct generation *gen, const char *name)
{
    for (int u = 0; u < gen->cfg->nupstreams; u++)
        if (strcmp(gen->cfg->upstreams[u].name, name) == 0)
            return u;
    return -1;
}

static int find_origin(const struct upstream_conf *up, const char *text)
{
    for (int o = 0; o < up->norigins; o++)
        if (strcmp(up->origins[o].text, text) == 0)
            return o;
    return -1;
}

/* ---- the change ---- */

struct change {
    bool state_set, weight_set;
    enum origin_admin state;
    unsigned weight;
};

static bool url_encoded(const struct h1_request *req)
{
    int i = h1_find_field(req->fields, req->nfields, "content-type", 0);
    static const char form[] = "application/x-www-form-urlencoded";
    return i >= 0 && req->fields[i].value_len >= sizeof(form) - 1 &&
           strncasecmp(req->fields[i].value, form, sizeof(form) - 1) == 0;
}

static int change_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    struct change *c = arg;
    uint64_t w;
    bool state = strcmp(key, "state") == 0, weight = strcmp(key, "weight") == 0;
    if ((state && c->state_set) || (weight && c->weight_set)) {
        snprintf(why, size, "%s given twice", key);
        return -1;
    }
    if (state && origin_admin_from_name(value, &c->state) == 0) {
        c->state_set = true;
    } else if (weight && parse_uint(value, 0, CFG_MAX_WEIGHT, &w) == 0) {
        c->weight = (unsigned)w;
        c->weight_set = true;
    } else {
        snprintf(why, size, "%s=%s: expected state=ready|drain|maint or weight=0-%d", key, value,
                 CFG_MAX_WEIGHT);
        return -1;
    }
    return 0;
}

static int change_origin(const struct admin_call *call, struct admin_reply *reply, int u, int o)
{
    const struct upstream_conf *up = &call->gen->cfg->upstreams[u];
    const char *text_of = up->origins[o].text;
    char why[300];
    struct change c = {0};
    const char *body = call->body ? call->body : "";
    if (fault_pairs(body, call->body_len, url_encoded(call->req), change_pair, &c, why,
                    sizeof(why)) != 0)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "%s", why);
    if (!c.state_set && !c.weight_set)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "nothing to change: give "
                                "state=ready|drain|maint and/or weight=0-%d", CFG_MAX_WEIGHT);
    if (c.weight_set && up->balance == BALANCE_HASH && c.weight &&
        c.weight != up->origins[o].weight)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "weight=%u: balance = hash places its "
                                "ring by the configured weights: 0 (out) or %u here",
                                c.weight, up->origins[o].weight);
    enum origin_admin was_state;
    unsigned was_weight;
    switch (origin_admin_set(up->name, text_of, c.state_set, c.state, c.weight_set, c.weight,
                             now_us() / 1000, &was_state, &was_weight)) {
    case ORIGIN_ADMIN_OK:
        break;
    case ORIGIN_ADMIN_NO_ORIGIN:
        return admin_reply_text(reply, HTTP_NOT_FOUND, "upstream %s has no origin %s", up->name,
                                text_of);
    default:
        return admin_reply_text(reply, HTTP_SERVICE_UNAVAILABLE, "out of memory: nothing changed");
    }
    reply->status = HTTP_OK;
    reply->content_type = JSON;
    return origin_json(reply->body, call->gen, u, o) < 0 || evbuffer_add(reply->body, "\n", 1) < 0
               ? -1
               : 0;
}

int admin_upstreams_respond(const struct admin_call *call, struct admin_reply *reply)
{
    const struct h1_request *req = call->req;
    bool get = req->method_id == METHOD_GET || req->method_id == METHOD_HEAD;
    bool post = req->method_id == METHOD_POST;
    struct target t;
    int status;
    char why[200];
    if (parse_target(call->path, call->path_len, &t, &status, why, sizeof(why)) != 0)
        return admin_reply_text(reply, status, "%s", why);
    if (!(get || (post && t.has_origin))) {
        reply->fields = t.has_origin ? "Allow: GET, HEAD, POST\r\n" : "Allow: GET, HEAD\r\n";
        return admin_reply_text(reply, HTTP_METHOD_NOT_ALLOWED, "%s",
                                t.has_origin ? "GET, HEAD or POST (state=, weight=)"
                                             : "GET or HEAD; changes go to "
                                               "/upstreams/NAME/origins/HOST:PORT");
    }
    int u = t.has_upstream ? find_upstream(call->gen, t.upstream) : -1;
    if (t.has_upstream && u < 0)
        return admin_reply_text(reply, HTTP_NOT_FOUND, "no upstream %s", t.upstream);
    int o = t.has_origin ? find_origin(&call->gen->cfg->upstreams[u], t.origin) : -1;
    if (t.has_origin && o < 0)
        return admin_reply_text(reply, HTTP_NOT_FOUND, "upstream %s has no origin %s (HOST:PORT "
                                "as written in its origin key; [::1]:PORT for IPv6)",
                                t.upstream, t.origin);
    /* as the fault API's: a change begun before a reload and ended after it says so */
    if (post && atomic_load(&call->gen->retired))
        return admin_reply_text(reply, HTTP_SERVICE_UNAVAILABLE,
                                "a reload replaced generation %u while the request came: nothing "
                                "changed; send it again", call->gen->number);
    if (post)
        return change_origin(call, reply, u, o);
    reply->status = HTTP_OK;
    reply->content_type = JSON;
    if (!t.has_upstream)
        return all_json(reply->body, call->gen);
    int rc = t.has_origin ? origin_json(reply->body, call->gen, u, o)
                          : upstream_json(reply->body, call->gen, u);
    return rc < 0 || evbuffer_add(reply->body, "\n", 1) < 0 ? -1 : 0;
}
