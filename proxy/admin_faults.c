/*
 * admin_faults.c — the fault rules' runtime API on the admin listener. See admin_faults.h.
 *
 * Every change goes through the generation's fault table (its mutex serializes writers; the
 * workers read without waiting), so a rule changed here acts on the next request any worker
 * takes. Errors are one line of text naming what is wrong, like the INI's.
 */
#include "portico/admin_faults.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/config.h"
#include "portico/fault_table.h"
#include "portico/fmt.h"
#include "portico/generation.h"
#include "portico/status.h"
#include "portico/util.h"

#define PREFIX "/faults"
#define JSON "application/json"
#define TEXT "text/plain; charset=utf-8"

bool admin_path_under(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(path, prefix, n) == 0 && (len == n || path[n] == '/');
}

bool admin_faults_path(const char *path, size_t len)
{
    return admin_path_under(path, len, PREFIX);
}

bool admin_faults_takes_body(const struct h1_request *req)
{
    const char *q = memchr(req->target, '?', req->target_len);
    size_t len = q ? (size_t)(q - req->target) : req->target_len;
    return req->method_id == METHOD_POST && admin_faults_path(req->target, len);
}

/* ---- JSON ---- */

static int json_str(struct evbuffer *out, const char *s)
{
    char buf[FAULT_TEXT_MAX * 6 + 2]; /* the longest value, every byte escaped */
    struct fmt_buf b;
    fmt_init(&b, buf, sizeof(buf));
    /* the bound is on the escaped text: FAULT_TEXT_MAX would cut a value of quotes in half */
    fmt_json_str(&b, s, strlen(s), sizeof(buf) - 2);
    return evbuffer_add(out, buf, b.len);
}

/* The rule's keys as given, in the key table's order; lists as arrays. */
static int rule_keys(struct evbuffer *out, const struct fault_rule *r)
{
    int rc = evbuffer_add_printf(out, "{");
    bool first = true;
    for (int k = 0; k < FK_COUNT && rc >= 0; k++) {
        if (!(r->set & (1u << k)))
            continue;
        rc = evbuffer_add_printf(out, "%s\"%s\":", first ? "" : ",",
                                 fault_key_name((enum fault_key)k));
        first = false;
        const uint16_t *list = k == FK_HEADER ? r->match_headers : k == FK_HEADERS ? r->headers
                                                                                     : NULL;
        int n = k == FK_HEADER ? r->nmatch_headers : r->nheaders;
        if (!list) {
            rc = rc < 0 ? rc : json_str(out, fault_text(r, r->raw[k]));
            continue;
        }
        rc = rc < 0 ? rc : evbuffer_add(out, "[", 1);
        for (int i = 0; i < n && rc >= 0; i++) {
            rc = i ? evbuffer_add(out, ",", 1) : 0;
            rc = rc < 0 ? rc : json_str(out, fault_text(r, list[i]));
        }
        rc = rc < 0 ? rc : evbuffer_add(out, "]", 1);
    }
    return rc < 0 ? -1 : evbuffer_add(out, "}", 1);
}

static int rule_json(struct evbuffer *out, struct fault_entry *e, uint64_t now_ms)
{
    struct fault_control c;
    fault_state_read(&e->state, now_ms, &c);
    enum fault_phase phase = fault_state_phase(&e->rule, &e->state, now_ms);
    int rc = evbuffer_add(out, "{\"name\":", 8);
    rc = rc < 0 ? rc : json_str(out, fault_text(&e->rule, e->rule.name));
    rc = rc < 0 ? rc : evbuffer_add_printf(
        out, ",\"source\":\"%s\",\"state\":\"%s\",\"enabled\":%s,\"probability\":%.6g,"
             "\"revert_in_ms\":",
        e->added ? "admin" : "ini", fault_phase_name(phase), c.enabled ? "true" : "false",
        c.probability);
    rc = rc < 0 ? rc
         : c.revert_at_ms ? evbuffer_add_printf(out, "%llu",
                                                (unsigned long long)(c.revert_at_ms - now_ms))
                          : evbuffer_add_printf(out, "null");
    rc = rc < 0 ? rc : evbuffer_add_printf(
        out, ",\"matched\":%llu,\"hits\":%llu,\"active\":%llu,\"rule\":",
        (unsigned long long)atomic_load(&e->state.matched),
        (unsigned long long)atomic_load(&e->state.hits),
        (unsigned long long)atomic_load(&e->state.active));
    rc = rc < 0 ? rc : rule_keys(out, &e->rule);
    return rc < 0 ? -1 : evbuffer_add(out, "}", 1);
}

static int list_json(struct evbuffer *out, const struct generation *gen, uint64_t now_ms)
{
    const struct faults_conf *fc = &gen->cfg->faults;
    struct fault_table *t = gen->faults;
    int rc = evbuffer_add_printf(out, "{\"generation\":%u,\"header_control\":%s,"
                                      "\"fault_header\":%s,\"seed\":",
                                 gen->number, fc->header_control ? "true" : "false",
                                 fc->fault_header ? "true" : "false");
    rc = rc < 0 ? rc
         : fc->seeded ? evbuffer_add_printf(out, "%llu", (unsigned long long)fc->seed)
                      : evbuffer_add_printf(out, "null");
    rc = rc < 0 ? rc : evbuffer_add_printf(out, ",\"rules\":[");
    bool first = true;
    for (int i = 0; i < fault_table_count(t) && rc >= 0; i++) {
        struct fault_entry *e = fault_table_entry(t, i);
        if (atomic_load(&e->state.deleted))
            continue;
        rc = first ? 0 : evbuffer_add(out, ",", 1);
        rc = rc < 0 ? rc : rule_json(out, e, now_ms);
        first = false;
    }
    return rc < 0 ? -1 : evbuffer_add_printf(out, "]}\n");
}

/* ---- bodies ---- */

static bool url_encoded(const struct h1_request *req)
{
    int i = h1_find_field(req->fields, req->nfields, "content-type", 0);
    static const char form[] = "application/x-www-form-urlencoded";
    return i >= 0 && req->fields[i].value_len >= sizeof(form) - 1 &&
           strncasecmp(req->fields[i].value, form, sizeof(form) - 1) == 0;
}

/* Pass one over a POST /faults body: the rule's name. */
static int name_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    char *name = arg;
    if (strcmp(key, "name") != 0)
        return 0;
    bool ok = name_valid(value) && strlen(value) < FAULT_NAME_MAX && !*name;
    if (!ok || strcmp(value, FAULT_LABEL_HEADER) == 0 || strcmp(value, FAULT_LABEL_ADMIN) == 0) {
        snprintf(why, size, *name ? "name given twice"
                                  : "name: '%s' is not a rule name (letters, digits, '-', '_', "
                                    "'.'; not header or admin)", value);
        return -1;
    }
    snprintf(name, FAULT_NAME_MAX, "%s", value);
    return 0;
}

/* Pass two: every other key, as in a [fault] section. */
static int key_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    return strcmp(key, "name") == 0 ? 0 : fault_rule_set_key(arg, key, value, why, size);
}

/* A change to one rule: enabled=, probability=, for=. */
static int change_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    struct fault_change *c = arg;
    bool on;
    uint64_t ms;
    if (strcmp(key, "enabled") == 0 && parse_bool(value, &on) == 0) {
        c->enabled = on;
    } else if (strcmp(key, "probability") == 0) {
        struct fault_rule tmp;
        fault_rule_init(&tmp, "");
        if (fault_rule_set(&tmp, FK_PROBABILITY, value, why, size) != 0)
            return -1;
        c->probability = tmp.probability;
    } else if (strcmp(key, "for") == 0 && parse_duration_ms(value, &ms) == 0 && ms > 0 &&
               ms <= CFG_MAX_DURATION_MS) {
        c->for_ms = ms;
    } else {
        snprintf(why, size, "%s=%s: expected enabled=0|1, probability=0..1 or for=DURATION", key,
                 value);
        return -1;
    }
    return 0;
}

/* ---- the endpoints ---- */

int admin_reply_text(struct admin_reply *reply, int status, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    reply->status = status;
    reply->content_type = TEXT;
    return evbuffer_add_printf(reply->body, "%d %s: %s\n", status, status_phrase(status), line) < 0
               ? -1
               : 0;
}

static int table_error(struct admin_reply *reply, enum fault_table_rc rc, const char *name)
{
    int status = rc == FAULT_TABLE_NOT_FOUND ? HTTP_NOT_FOUND
                 : rc == FAULT_TABLE_EXISTS  ? HTTP_CONFLICT
                 : rc == FAULT_TABLE_FULL    ? HTTP_INSUFFICIENT_STORAGE
                                             : HTTP_SERVICE_UNAVAILABLE;
    return admin_reply_text(reply, status, "%s: %s", name, fault_table_rc_text(rc));
}

static int one_rule(struct admin_reply *reply, const struct generation *gen, const char *name,
                    int status, uint64_t now_ms)
{
    struct fault_entry *e = fault_table_find(gen->faults, name);
    if (!e)
        return table_error(reply, FAULT_TABLE_NOT_FOUND, name);
    reply->status = status;
    reply->content_type = JSON;
    return rule_json(reply->body, e, now_ms) < 0 || evbuffer_add(reply->body, "\n", 1) < 0 ? -1
                                                                                           : 0;
}

static int add_rule(const struct admin_call *call, struct admin_reply *reply, uint64_t now_ms)
{
    char name[FAULT_NAME_MAX] = "", why[300];
    bool url = url_encoded(call->req);
    const char *body = call->body ? call->body : "";
    if (fault_pairs(body, call->body_len, url, name_pair, name, why, sizeof(why)) != 0)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "%s", why);
    if (!*name)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "a rule needs name= (and the keys of a "
                                "[fault] section, one key=value a line)");
    struct fault_rule *r = malloc(sizeof(*r));
    if (!r)
        return -1;
    fault_rule_init(r, name);
    enum fault_key key;
    int rc;
    if (fault_pairs(body, call->body_len, url, key_pair, r, why, sizeof(why)) != 0 ||
        fault_rule_check(r, why, sizeof(why)) != 0 ||
        cfg_fault_check(call->gen->cfg, r, &key, why, sizeof(why)) != 0) {
        rc = admin_reply_text(reply, HTTP_BAD_REQUEST, "%s", why);
    } else {
        enum fault_table_rc t = fault_table_add(call->gen->faults, r, now_ms);
        rc = t == FAULT_TABLE_OK ? one_rule(reply, call->gen, name, HTTP_CREATED, now_ms)
                                 : table_error(reply, t, name);
    }
    free(r);
    return rc;
}

static int change_rule(const struct admin_call *call, struct admin_reply *reply, const char *name,
                       uint64_t now_ms)
{
    char why[300];
    struct fault_change c = {.enabled = -1, .probability = -1};
    const char *body = call->body ? call->body : "";
    if (fault_pairs(body, call->body_len, url_encoded(call->req), change_pair, &c, why,
                    sizeof(why)) != 0)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "%s", why);
    if (c.enabled < 0 && c.probability < 0)
        return admin_reply_text(reply, HTTP_BAD_REQUEST, "nothing to change: give enabled=0|1 "
                                "or probability= (and for= to revert after a while)");
    enum fault_table_rc t = fault_table_change(call->gen->faults, name, now_ms, &c);
    return t == FAULT_TABLE_OK ? one_rule(reply, call->gen, name, HTTP_OK, now_ms)
                               : table_error(reply, t, name);
}

int admin_faults_respond(const struct admin_call *call, struct admin_reply *reply)
{
    const struct h1_request *req = call->req;
    uint64_t now_ms = now_us() / 1000;
    size_t n = sizeof(PREFIX) - 1;
    bool all = call->path_len <= n + 1; /* "/faults" or "/faults/" */
    char name[FAULT_NAME_MAX];
    if (!all) {
        size_t len = call->path_len - n - 1;
        if (len >= sizeof(name))
            return admin_reply_text(reply, HTTP_NOT_FOUND, "no such rule");
        memcpy(name, call->path + n + 1, len);
        name[len] = '\0';
    }
    bool get = req->method_id == METHOD_GET || req->method_id == METHOD_HEAD;
    bool post = req->method_id == METHOD_POST;
    bool del = req->method_id == METHOD_DELETE;
    /* A request begun before a reload and ended after it (its body was still coming) reaches
     * the rules the reload replaced: a change there acts on no new request, and the 201 or 200
     * it got said otherwise. Told to send it again, it reaches the new rules. */
    if ((post || del) && atomic_load(&call->gen->retired))
        return admin_reply_text(reply, HTTP_SERVICE_UNAVAILABLE,
                                "a reload replaced these rules (generation %u) while the request "
                                "came: nothing changed; send it again",
                                call->gen->number);
    if (all && get) {
        reply->status = HTTP_OK;
        reply->content_type = JSON;
        return list_json(reply->body, call->gen, now_ms);
    }
    if (all && post)
        return add_rule(call, reply, now_ms);
    if (!all && get)
        return one_rule(reply, call->gen, name, HTTP_OK, now_ms);
    if (!all && post)
        return change_rule(call, reply, name, now_ms);
    if (!all && del) {
        enum fault_table_rc t = fault_table_delete(call->gen->faults, name);
        return t == FAULT_TABLE_OK ? admin_reply_text(reply, HTTP_OK, "%s deleted", name)
                                   : table_error(reply, t, name);
    }
    reply->fields = all ? "Allow: GET, HEAD, POST\r\n" : "Allow: GET, HEAD, POST, DELETE\r\n";
    return admin_reply_text(reply, HTTP_METHOD_NOT_ALLOWED, "%s",
                            all ? "GET, HEAD or POST" : "GET, HEAD, POST or DELETE");
}
