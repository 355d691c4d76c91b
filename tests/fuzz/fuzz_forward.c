/*
 * fuzz_forward.c — libFuzzer target: the heads Portico writes for the next hop (proxy/headers.c),
 * read back by the parser the next hop is assumed to share.
 *
 * The first input byte picks the direction and the knobs; the rest is a head. A request that
 * Portico would forward goes through hdr_write_request as relay.c sets it up; a response that it
 * would relay goes through hdr_response_fields (or hdr_interim_fields for a 1xx) and
 * hdr_write_head as relay.c and client.c do. Properties checked: what was written is exactly one
 * head that parses, with nothing after it; it frames the body as Portico does (what follows it on
 * the wire is what Portico sends as that body, and the next message after it); the request keeps
 * its method, target (origin-form) and its end-to-end fields in order, and has no hop-by-hop
 * field left, one Host and one of each field Portico sets; the response keeps the status and
 * says close when the body runs to the close, with a Content-Length that is one number.
 */
#include <ctype.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/header_rules.h"
#include "portico/headers.h"
#include "portico/http1.h"
#include "portico/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

#define MODE_RESPONSE 0x01    /* a response head, else a request head */
#define MODE_TLS 0x02         /* request: the client came over TLS */
#define MODE_KEEP_EXPECT 0x04 /* request: the route relays Expect */
#define MODE_JOIN_TRACE 0x08  /* request: the client's trace is joined, its tracestate kept */
#define MODE_TRUSTED 0x10     /* request: the client is one of trusted_proxies */
#define MODE_RULES 0x20       /* both: the route has header rules (rules_of) */
#define MODE_HTTP10 0x02      /* response: the client speaks HTTP/1.0 */
#define MODE_CLOSE 0x04       /* response: the client connection closes after it */
#define MODE_METHOD_SHIFT 3   /* response: bits 3-4 pick the request method */

#define BIG_HEAD (1u << 20) /* the written head is read back whole: never a limit */

static const char TRACEPARENT[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
static const char REQUEST_ID[] = "fuzz-request-id";

/* The written head, in one piece; *len gets its length. Freed by the caller. */
static char *written(struct evbuffer *b, size_t *len)
{
    *len = evbuffer_get_length(b);
    char *p = malloc(*len > 0 ? *len : 1);
    CHECK(p != NULL);
    CHECK(evbuffer_copyout(b, p, *len) == (ev_ssize_t)*len);
    return p;
}

/* A route's header rules, as a config would give them: SET with and without variables, a SET
 * of a field clients send, REMOVEs. Built once; each rule's expected value is in the table. */
struct rule_spec {
    enum hrule_op op;
    const char *text;
};
static const struct rule_spec REQUEST_RULES[] = {
    {HRULE_SET, "X-Client: $client_addr ${request_id} $scheme://${host}/$http_host $$ end"},
    {HRULE_SET, "X-Static: fixed"},
    {HRULE_SET, "User-Agent: portico-fuzz"},
    {HRULE_REMOVE, "Cookie"},
    {HRULE_REMOVE, "X-Drop"},
};
static const struct rule_spec RESPONSE_RULES[] = {
    {HRULE_SET, "X-Frame-Options: DENY"},
    {HRULE_SET, "Cache-Control: no-store"},
    {HRULE_SET, "X-Var: $host"}, /* a response value is not expanded */
    {HRULE_REMOVE, "Server"},
    {HRULE_REMOVE, "X-Powered-By"},
};

static struct hrules *build_rules(enum hrule_dir dir, const struct rule_spec *spec, size_t n)
{
    struct hrules *rules = NULL;
    char why[200];
    for (size_t i = 0; i < n; i++) {
        struct hrule r;
        CHECK(hrule_parse(dir, spec[i].op, spec[i].text, &r, why, sizeof(why)) == 0);
        CHECK(hrules_add(&rules, &r, why, sizeof(why)) == 0);
    }
    return rules;
}

static const struct hrules *rules_of(enum hrule_dir dir)
{
    static struct hrules *request, *response;
    if (!request) {
        request = build_rules(HRULE_REQUEST, REQUEST_RULES,
                              sizeof(REQUEST_RULES) / sizeof(REQUEST_RULES[0]));
        response = build_rules(HRULE_RESPONSE, RESPONSE_RULES,
                               sizeof(RESPONSE_RULES) / sizeof(RESPONSE_RULES[0]));
    }
    return dir == HRULE_REQUEST ? request : response;
}

/* A SET rule's value as it should be sent (request values expanded by hand, a reference). */
static size_t rule_expected(const struct hrule *r, const struct fwd_request *fwd, char *buf,
                            size_t size)
{
    if (!fwd || !r->vars) {
        CHECK(r->value_len < size);
        memcpy(buf, r->value, r->value_len);
        return r->value_len;
    }
    CHECK(strcmp(r->name, "X-Client") == 0);
    const char *scheme = fwd->client_tls ? "https" : "http";
    int host_len = fwd->client_host ? (int)fwd->client_host_len : 0;
    const char *host = fwd->client_host ? fwd->client_host : "";
    /* $host: the name alone (an IPv6 literal through its ']', else up to a ':'), no trailing
     * dots, lowercase; $http_host as the client wrote it */
    static char name[1u << 16];
    int name_len = 0;
    if (host_len && host[0] == '[') {
        const char *end = memchr(host, ']', (size_t)host_len);
        name_len = end ? (int)(end - host) + 1 : host_len;
    } else {
        while (name_len < host_len && host[name_len] != ':')
            name_len++;
    }
    while (name_len > 0 && host[name_len - 1] == '.')
        name_len--;
    CHECK((size_t)name_len < sizeof(name));
    for (int i = 0; i < name_len; i++)
        name[i] = (char)tolower((unsigned char)host[i]);
    int n = snprintf(buf, size, "%s %s %s://%.*s/%.*s $ end", fwd->client_ip, fwd->request_id,
                     scheme, name_len, name, host_len, host);
    CHECK(n >= 0 && (size_t)n < size);
    return (size_t)n;
}

/* The fields of a written head that rules name are their SET fields, once each, with their
 * values: the message's own fields of those names (any case, '_' for '-') and REMOVEd ones
 * are gone. */
static void check_rules(const struct hrules *rules, const struct h1_field *f, size_t n,
                        const struct fwd_request *fwd)
{
    size_t seen[HRULE_MAX] = {0};
    static char want[1u << 17];
    for (size_t i = 0; i < n; i++) {
        if (!hrules_names(rules, f[i].name, f[i].name_len))
            continue;
        int k = 0;
        while (k < rules->n && !(rules->rule[k].op == HRULE_SET &&
                                 rules->rule[k].name_len == f[i].name_len &&
                                 memcmp(rules->rule[k].name, f[i].name, f[i].name_len) == 0))
            k++;
        if (k == rules->n)
            fprintf(stderr, "field named by a rule left: %.*s\n", (int)f[i].name_len,
                    f[i].name);
        CHECK(k < rules->n);
        size_t wl = rule_expected(&rules->rule[k], fwd, want, sizeof(want));
        CHECK(f[i].value_len == wl && memcmp(f[i].value, want, wl) == 0);
        seen[k]++;
    }
    for (int k = 0; k < rules->n; k++)
        CHECK(seen[k] == (rules->rule[k].op == HRULE_SET ? 1u : 0u));
}

static size_t count(const struct h1_field *f, size_t n, enum h1_field_id id)
{
    size_t k = 0;
    for (int i = h1_find(f, n, id, 0); i >= 0; i = h1_find(f, n, id, (size_t)i + 1))
        k++;
    return k;
}

static bool same_field(const struct h1_field *a, const struct h1_field *b)
{
    return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0 &&
           a->value_len == b->value_len && memcmp(a->value, b->value, a->value_len) == 0;
}

/* Whether relay.c would offer the client's Upgrade (exchange.c admissible, HTTP/1.1 client). */
static bool offers_upgrade(const struct h1_request *req, const struct h1_info *info)
{
    return req->minor == 1 && !h1_info_has_body(info) &&
           h1_connection_has(req->fields, req->nfields, "upgrade") &&
           h1_find(req->fields, req->nfields, H1_F_UPGRADE, 0) >= 0 &&
           !h1_list_has(req->fields, req->nfields, "upgrade", "h2c") &&
           !h1_list_has(req->fields, req->nfields, "upgrade", "h2");
}

/* The field names Portico owns in a request (README "Removed", "Replaced", "Appended"). */
static bool owned(enum h1_field_id id)
{
    switch (id) {
    case H1_F_CONNECTION:
    case H1_F_KEEP_ALIVE:
    case H1_F_PROXY_CONNECTION:
    case H1_F_TE:
    case H1_F_TRAILER:
    case H1_F_TRANSFER_ENCODING:
    case H1_F_UPGRADE:
    case H1_F_CONTENT_LENGTH:
    case H1_F_X_FORWARDED_FOR:
    case H1_F_X_FORWARDED_PROTO:
    case H1_F_X_FORWARDED_HOST:
    case H1_F_FORWARDED:
    case H1_F_X_REAL_IP:
    case H1_F_PROXY_CLAIM: /* X-Forwarded-Port, Client-IP ... (README "Removed") */
    case H1_F_X_REQUEST_ID:
    case H1_F_PORTICO_FAULT:
        return true;
    default:
        return false;
    }
}

/* Whether f is an owned name, or Max-Forwards, spelt with '_' for '-' ("X_Forwarded_Proto",
 * "Max_Forwards"): dropped too, at any length. */
static bool underscore_twin(const struct h1_field *f)
{
    static char name[16384]; /* a name of the head (max_head below) */
    if (f->name_len > sizeof(name) || !memchr(f->name, '_', f->name_len))
        return false;
    for (size_t i = 0; i < f->name_len; i++)
        name[i] = f->name[i] == '_' ? '-' : f->name[i];
    enum h1_field_id id = h1_field_id_of(name, f->name_len);
    return owned(id) || id == H1_F_MAX_FORWARDS;
}

/* The next tracestate list-member of v[*pos..len): split at ',', SP and HTAB trimmed, empty
 * ones skipped (W3C Trace Context "list"). */
static bool ts_member(const char *v, size_t len, size_t *pos, const char **m, size_t *mlen)
{
    while (*pos < len) {
        size_t a = *pos, e = a;
        while (e < len && v[e] != ',')
            e++;
        *pos = e < len ? e + 1 : len;
        while (a < e && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (e > a && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > a) {
            *m = v + a;
            *mlen = e - a;
            return true;
        }
    }
    return false;
}

/* Whether a joined trace's tracestate fields go on as they came (README "Replaced"): at most
 * 32 list-members in at most 512 characters, the fields joined by ','. */
static bool tracestate_kept(const struct h1_request *req)
{
    size_t len = 0, members = 0, fields = 0;
    for (size_t i = 0; i < req->nfields; i++) {
        if (req->fields[i].id != H1_F_TRACESTATE)
            continue;
        len += req->fields[i].value_len + (fields++ ? 1 : 0);
        size_t pos = 0, mlen;
        const char *m;
        while (ts_member(req->fields[i].value, req->fields[i].value_len, &pos, &m, &mlen))
            members++;
    }
    return len <= 512 && members <= 32;
}

/* A cut tracestate (README "Replaced"): one field or none; within the bounds; no member over
 * 128 characters; its members a run of the client's from the first not over 128. */
static void check_tracestate_cut(const struct h1_request *req, const struct h1_request *fw)
{
    CHECK(count(fw->fields, fw->nfields, H1_F_TRACESTATE) <= 1);
    int t = h1_find(fw->fields, fw->nfields, H1_F_TRACESTATE, 0);
    if (t < 0)
        return;
    const struct h1_field *out = &fw->fields[t];
    CHECK(out->value_len > 0 && out->value_len <= 512);
    size_t opos = 0, olen, members = 0;
    const char *o;
    for (size_t i = 0; i < req->nfields; i++) {
        if (req->fields[i].id != H1_F_TRACESTATE)
            continue;
        size_t pos = 0, mlen;
        const char *m;
        while (ts_member(req->fields[i].value, req->fields[i].value_len, &pos, &m, &mlen)) {
            if (mlen > 128)
                continue;
            if (!ts_member(out->value, out->value_len, &opos, &o, &olen))
                return; /* the rest was cut from the end */
            CHECK(olen == mlen && memcmp(o, m, mlen) == 0 && ++members <= 32);
        }
    }
    CHECK(!ts_member(out->value, out->value_len, &opos, &o, &olen)); /* nothing of its own */
}

/* X-Original-URL, X-Rewrite-URL: never from anyone (README "What the origin receives"). */
static bool path_override(const struct h1_field *f)
{
    return h1_name_is(f, "x-original-url") || h1_name_is(f, "x-rewrite-url");
}

/* The fields of in that go to the origin unchanged, as README "What the origin receives" says. */
static bool kept(const struct h1_request *in, const struct h1_field *f, const struct fwd_request *fwd)
{
    if (underscore_twin(f))
        return false;
    enum h1_field_id id = h1_field_id(f);
    if (fwd->rules && hrules_names(fwd->rules, f->name, f->name_len))
        return false; /* replaced by a SET rule's field, or removed */
    switch (id) {
    case H1_F_X_FORWARDED_PROTO: /* a trusted proxy's word on how its client came */
    case H1_F_X_FORWARDED_HOST:
    case H1_F_FORWARDED:
    case H1_F_X_REAL_IP:
    case H1_F_PROXY_CLAIM:
        if (!fwd->trusted_proxy || path_override(f))
            return false;
        break;
    case H1_F_HOST:
        return fwd->host == NULL;
    case H1_F_UPGRADE:
        return fwd->upgrade;
    case H1_F_TRACEPARENT:
        return false;
    case H1_F_TRACESTATE: /* with a new trace, or cut (checked apart) */
        if (fwd->drop_tracestate || !tracestate_kept(in))
            return false;
        break;
    case H1_F_EXPECT:
        if (!fwd->keep_expect)
            return false;
        break;
    case H1_F_MAX_FORWARDS: /* OPTIONS, TRACE: replaced by one, decremented */
        if (fwd->max_forwards)
            return false;
        break;
    default:
        if (owned(id))
            return false;
        break;
    }
    return !hdr_is_hop_by_hop(f, in->fields, in->nfields);
}

static void fuzz_request(const char *in, size_t n, uint8_t mode)
{
    struct h1_limits lim = {.max_request_line = 8192, .max_head = 16384};
    struct h1_request req;
    struct h1_error err;
    struct h1_info info;
    struct req_target t;
    const char *why = NULL;

    int parsed = h1_parse_request(in, n, &lim, &req, &err);
    if (parsed <= 0) /* its fields are the lines read whole, which a refusal reads (http1.h) */
        check_fields(in, (int)n, req.fields, req.nfields);
    if (parsed <= 0 || h1_request_info(&req, &info, &err) != 0 ||
        request_target(&req, &t, &why) != 0)
        return;

    /* As relay.c send_request sets it up. */
    const char *host = t.host ? t.host : info.host ? info.host->value : NULL;
    size_t host_len = t.host ? t.host_len : info.host ? info.host->value_len : 0;
    struct fwd_request fwd = {
        .target = t.path,
        .target_len = t.path_len,
        .client_ip = "127.0.0.1",
        .client_tls = (mode & MODE_TLS) != 0,
        .trusted_proxy = (mode & MODE_TRUSTED) != 0,
        .request_id = REQUEST_ID,
        .client_host = host,
        .client_host_len = host_len,
        .keep_expect = info.expect_continue && (mode & MODE_KEEP_EXPECT) && req.minor == 1 &&
                       h1_info_has_body(&info),
        .framing = info.framing,
        .content_length = info.content_length,
        .traceparent = TRACEPARENT,
        .drop_tracestate = (mode & MODE_JOIN_TRACE) == 0,
        .upgrade = offers_upgrade(&req, &info),
        .via = req.minor == 0 ? HDR_VIA_1_0 : HDR_VIA_1_1,
        .rules = (mode & MODE_RULES) ? rules_of(HRULE_REQUEST) : NULL,
    };
    long max_forwards = request_max_forwards(&req);
    if (max_forwards == 0)
        return; /* answered by Portico, not forwarded (exchange.c) */
    fwd.max_forwards = max_forwards > 0 ? (uint32_t)max_forwards : 0;
    if (t.host) {
        fwd.host = t.host;
        fwd.host_len = t.host_len;
    } else if (!info.host) {
        fwd.host = "127.0.0.1:8080";
        fwd.host_len = strlen(fwd.host);
    }

    struct evbuffer *b = evbuffer_new();
    CHECK(b != NULL);
    hdr_write_request(b, &req, &fwd);
    size_t len;
    char *out = written(b, &len);
    evbuffer_free(b);

    /* One head, nothing after it: the body Portico sends comes next, framed as it says. */
    struct h1_limits big = {.max_request_line = BIG_HEAD, .max_head = BIG_HEAD};
    struct h1_request fw;
    struct h1_info fi;
    int r = h1_parse_forwarded_request(out, len, &big, &fw, &err);
    if (r < 0)
        fprintf(stderr, "forwarded head refused: %s at %zu\n", r == -1 ? err.reason : "again",
                r == -1 ? err.offset : len);
    CHECK(r > 0 && (size_t)r == len);
    CHECK(h1_request_info(&fw, &fi, &err) == 0);
    CHECK(fw.minor == 1);
    CHECK(fi.framing == info.framing);
    CHECK(fi.framing != H1_BODY_LENGTH || fi.content_length == info.content_length);
    CHECK(fi.host != NULL);

    /* The request as routed: method, origin-form target, the Host Portico chose. */
    CHECK(fw.method_len == req.method_len && memcmp(fw.method, req.method, req.method_len) == 0);
    CHECK(fw.method_id == req.method_id);
    bool slash = t.path[0] == '?';
    CHECK(fw.target_len == t.path_len + slash);
    CHECK(memcmp(fw.target + slash, t.path, t.path_len) == 0);
    if (fwd.host)
        CHECK(fi.host->value_len == fwd.host_len &&
              memcmp(fi.host->value, fwd.host, fwd.host_len) == 0);
    else
        CHECK(fi.host->value_len == host_len && memcmp(fi.host->value, host, host_len) == 0);

    /* Nothing of this hop's connection goes on, and what Portico sets is there once. */
    for (size_t i = 0; i < fw.nfields; i++) {
        enum h1_field_id id = h1_field_id(&fw.fields[i]);
        CHECK(id != H1_F_KEEP_ALIVE && id != H1_F_PROXY_CONNECTION && id != H1_F_TE &&
              id != H1_F_TRAILER && id != H1_F_PORTICO_FAULT);
        CHECK(id != H1_F_UPGRADE || fwd.upgrade);
        CHECK(id != H1_F_EXPECT || fwd.keep_expect);
        if (id == H1_F_CONNECTION)
            CHECK(fwd.upgrade && fw.fields[i].value_len == 7 &&
                  memcmp(fw.fields[i].value, "upgrade", 7) == 0);
    }
    CHECK(count(fw.fields, fw.nfields, H1_F_CONNECTION) == (fwd.upgrade ? 1 : 0));
    CHECK(count(fw.fields, fw.nfields, H1_F_HOST) == 1);
    CHECK(count(fw.fields, fw.nfields, H1_F_X_FORWARDED_FOR) == 1);
    /* Portico's scheme and host, or a trusted proxy's as it sent them */
    size_t proto = 0, fwd_host = 0;
    for (size_t i = 0; i < req.nfields; i++) {
        enum h1_field_id id = h1_field_id(&req.fields[i]);
        bool passes = kept(&req, &req.fields[i], &fwd);
        proto += id == H1_F_X_FORWARDED_PROTO && passes;
        fwd_host += id == H1_F_X_FORWARDED_HOST && passes;
    }
    CHECK(count(fw.fields, fw.nfields, H1_F_X_FORWARDED_PROTO) == (proto ? proto : 1));
    CHECK(count(fw.fields, fw.nfields, H1_F_X_FORWARDED_HOST) ==
          (fwd_host ? fwd_host : host ? 1 : 0));
    CHECK(count(fw.fields, fw.nfields, H1_F_X_REQUEST_ID) == 1);
    CHECK(count(fw.fields, fw.nfields, H1_F_TRACEPARENT) == 1);
    if (fwd.drop_tracestate)
        CHECK(count(fw.fields, fw.nfields, H1_F_TRACESTATE) == 0);
    else if (!tracestate_kept(&req))
        check_tracestate_cut(&req, &fw);
    if (!fwd.trusted_proxy) {
        CHECK(count(fw.fields, fw.nfields, H1_F_PROXY_CLAIM) == 0);
        CHECK(count(fw.fields, fw.nfields, H1_F_FORWARDED) == 0);
        CHECK(count(fw.fields, fw.nfields, H1_F_X_REAL_IP) == 0);
    }
    for (size_t i = 0; i < fw.nfields; i++)
        CHECK(!path_override(&fw.fields[i]));
    if (fwd.max_forwards) /* once, one hop less */
        CHECK(count(fw.fields, fw.nfields, H1_F_MAX_FORWARDS) == 1 &&
              request_max_forwards(&fw) == max_forwards - 1);
    /* Portico's Via entry comes last, with the version the request came in */
    const struct h1_field *via = NULL;
    for (size_t i = 0; i < fw.nfields; i++)
        if (h1_field_id(&fw.fields[i]) == H1_F_VIA)
            via = &fw.fields[i];
    const char *via_value = req.minor == 0 ? "1.0 portico" : "1.1 portico";
    CHECK(via && via->value_len == strlen(via_value) &&
          memcmp(via->value, via_value, via->value_len) == 0);
    CHECK(count(fw.fields, fw.nfields, H1_F_CONTENT_LENGTH) ==
          (info.framing == H1_BODY_LENGTH ? 1 : 0));
    CHECK(count(fw.fields, fw.nfields, H1_F_TRANSFER_ENCODING) ==
          (info.framing == H1_BODY_CHUNKED ? 1 : 0));

    /* The client's end-to-end fields, in order and unchanged. */
    size_t j = 0;
    for (size_t i = 0; i < req.nfields; i++) {
        if (!kept(&req, &req.fields[i], &fwd))
            continue;
        while (j < fw.nfields && !same_field(&fw.fields[j], &req.fields[i]))
            j++;
        CHECK(j < fw.nfields);
        j++;
    }
    if (fwd.rules)
        check_rules(fwd.rules, fw.fields, fw.nfields, &fwd);
    free(out);
}

static void fuzz_response(const char *in, size_t n, uint8_t mode)
{
    static const enum http_method methods[] = {METHOD_GET, METHOD_HEAD, METHOD_POST,
                                               METHOD_OTHER};
    enum http_method method = methods[(mode >> MODE_METHOD_SHIFT) & 3];
    bool http10 = (mode & MODE_HTTP10) != 0;
    struct h1_response resp;
    struct h1_error err;
    struct h1_info info;

    if (h1_parse_response(in, n, 16384, &resp, &err) <= 0 ||
        h1_response_info(&resp, method, &info, &err) != 0 || resp.status == 101)
        return;
    /* What is read back goes through the same parser, whose field limit Portico's own
     * additions must not push the origin's fields over. */
    if (resp.nfields > H1_MAX_FIELDS - 8)
        return;

    struct h1_field fields[HDR_MAX_FIELDS + 1];
    struct resp_head head = {.status = resp.status, .reason = resp.reason,
                             .reason_len = resp.reason_len, .fields = fields};
    enum h1_framing wire = H1_BODY_NONE;
    bool keep_alive = true;
    const struct hrules *rules = (mode & MODE_RULES) ? rules_of(HRULE_RESPONSE) : NULL;
    if (resp.status < 200) {
        head.nfields = hdr_interim_fields(&resp, rules, fields, HDR_MAX_FIELDS);
    } else {
        for (int i = h1_find(resp.fields, resp.nfields, H1_F_TRANSFER_ENCODING, 0);
             info.framing != H1_BODY_NONE && i >= 0;
             i = h1_find(resp.fields, resp.nfields, H1_F_TRANSFER_ENCODING, (size_t)i + 1)) {
            size_t pos = 0, elen;
            const char *e;
            while (h1_list_next(resp.fields[i].value, resp.fields[i].value_len, &pos, &e, &elen))
                if (!(elen == 7 && strncasecmp(e, "chunked", 7) == 0))
                    return; /* relay.c refuses another coding (has_other_coding) */
        }
        /* As relay.c forward_head and client.c ds_head decide it. */
        enum h1_framing out = info.framing == H1_BODY_CLOSE ? H1_BODY_CHUNKED : info.framing;
        struct fwd_response fwd = {.framing = out, .request_id = REQUEST_ID,
                                   .proxy_status = "portico; received-status=200",
                                   .server_timing = "total;dur=1.0",
                                   .date = "Thu, 01 Jan 2026 00:00:00 GMT",
                                   .rules = rules};
        head.nfields = hdr_response_fields(&resp, &fwd, fields, HDR_MAX_FIELDS);
        head.framing = out;
        head.content_length = info.content_length;
        wire = out == H1_BODY_CHUNKED && http10 ? H1_BODY_CLOSE : out;
        keep_alive = !(mode & MODE_CLOSE) && wire != H1_BODY_CLOSE;
    }

    struct evbuffer *b = evbuffer_new();
    CHECK(b != NULL);
    hdr_write_head(b, &head, wire, http10, keep_alive);
    size_t len;
    char *out = written(b, &len);
    evbuffer_free(b);

    struct h1_response cr;
    struct h1_info ci;
    int r = h1_parse_response(out, len, BIG_HEAD, &cr, &err);
    if (r < 0)
        fprintf(stderr, "relayed head refused: %s at %zu\n", r == -1 ? err.reason : "again",
                r == -1 ? err.offset : len);
    CHECK(r > 0 && (size_t)r == len);
    CHECK(cr.status == resp.status && cr.minor == 1);
    CHECK(h1_response_info(&cr, method, &ci, &err) == 0);
    /* The client frames the body as Portico sends it. */
    CHECK(ci.framing == wire);
    CHECK(wire != H1_BODY_LENGTH || ci.content_length == info.content_length);
    if (resp.status >= 200)
        CHECK(!keep_alive == h1_connection_has(cr.fields, cr.nfields, "close"));
    CHECK(count(cr.fields, cr.nfields, H1_F_TRANSFER_ENCODING) ==
          (wire == H1_BODY_CHUNKED ? 1 : 0));
    CHECK(count(cr.fields, cr.nfields, H1_F_CONTENT_LENGTH) <= 1);
    /* Content-Length = 1*DIGIT (RFC 9110 8.6): a list is not forwarded, even where it frames
     * nothing (HEAD, 304) */
    int cl = h1_find(cr.fields, cr.nfields, H1_F_CONTENT_LENGTH, 0);
    for (size_t k = 0; cl >= 0 && k < cr.fields[cl].value_len; k++)
        CHECK(cr.fields[cl].value[k] >= '0' && cr.fields[cl].value[k] <= '9');
    for (size_t i = 0; rules && resp.status < 200 && i < cr.nfields; i++)
        CHECK(!hrules_names(rules, cr.fields[i].name, cr.fields[i].name_len)); /* none added */
    if (rules && resp.status >= 200)
        check_rules(rules, cr.fields, cr.nfields, NULL);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *in = dup_exact((const char *)data + 1, size - 1);
    if (data[0] & MODE_RESPONSE)
        fuzz_response(in, size - 1, data[0]);
    else
        fuzz_request(in, size - 1, data[0]);
    free(in);
    return 0;
}
