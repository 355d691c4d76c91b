/*
 * fuzz_probe_request.c — libFuzzer target for the request `portico probe` builds from curl's
 * options (proxy/probe_request.c): -X METHOD, -H fields and a -d/--data-binary body, the head
 * written by probe_request_head and read back by the proxy's own parser, as probe.c does.
 *
 * Input: a mode byte (bit 0: a body, bit 1: --data-binary rather than -d), then segments split
 * on 0xFF: the -X method (empty: none), the URL's path (its bytes <= 0x20 or >= 0x7f dropped:
 * the URL parser never lets them through), the body's DATA (leading '@'s dropped: no file is
 * read), then one -H argument a segment. Any byte but NUL reaches the option checks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "portico/http1.h"
#include "portico/probe_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

#define SEGMENTS_MAX (3 + PROBE_FIELDS_MAX + 4)

/* The segments of the input as C strings (NUL ends one early, as argv would). */
struct args {
    char *seg[SEGMENTS_MAX];
    size_t nseg;
};

static void split(const uint8_t *p, size_t n, struct args *a)
{
    size_t start = 0;
    a->nseg = 0;
    for (size_t i = 0; i <= n && a->nseg < SEGMENTS_MAX; i++) {
        if (i == n || p[i] == 0xff) {
            char *s = malloc(i - start + 1);
            CHECK(s != NULL);
            memcpy(s, p + start, i - start);
            s[i - start] = '\0';
            a->seg[a->nseg++] = s;
            start = i + 1;
        }
    }
}

/* Whether a -H names field name, as probe_request.c's named(): "Name:" or "Name;". */
static int names(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(arg, name, n) == 0 && (arg[n] == ':' || arg[n] == ';');
}

/* The value a taken -H sends, or NULL when it only drops the probe's field ("Name:"). */
static const char *sent_value(const char *arg, size_t *name_len)
{
    size_t n = strcspn(arg, ":");
    if (arg[n] == ':') {
        const char *v = arg + n + 1;
        v += strspn(v, " \t");
        *name_len = n;
        return *v ? v : NULL;
    }
    *name_len = strlen(arg) - 1; /* "Name;" */
    return "";
}

static const struct h1_field *find(const struct h1_request *req, const char *name, size_t n,
                                   size_t from)
{
    for (size_t i = from; i < req->nfields; i++)
        if (req->fields[i].name_len == n && strncasecmp(req->fields[i].name, name, n) == 0)
            return &req->fields[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    struct args a;
    split(data + 1, size - 1, &a);
    struct probe_request rq;
    memset(&rq, 0, sizeof(rq));
    const char *why = NULL;

    const char *method = a.nseg > 0 ? a.seg[0] : "";
    if (method[0]) {
        if (probe_request_set_method(&rq, method, &why) == 0) {
            CHECK(strcmp(method, "CONNECT") != 0);
            for (const char *c = method; *c; c++)
                CHECK(h1_is_tchar((unsigned char)*c));
        } else {
            CHECK(why != NULL && rq.method == NULL);
        }
    }
    /* the path: what the URL parser hands on */
    char *path = a.nseg > 1 ? a.seg[1] : (char *)"";
    size_t path_len = 0;
    for (size_t i = 0; path[i]; i++)
        if ((unsigned char)path[i] > 0x20 && (unsigned char)path[i] < 0x7f)
            path[path_len++] = path[i];
    if (mode & 1) {
        char *body = a.nseg > 2 ? a.seg[2] : (char *)"";
        body += strspn(body, "@"); /* DATA itself: no file is read */
        CHECK(probe_request_set_data(&rq, body, mode & 2, &why) == 0);
        CHECK(probe_request_set_data(&rq, body, mode & 2, &why) == -1); /* one body a probe */
        char reason[512];
        CHECK(probe_request_load(&rq, reason, sizeof(reason)) == 0);
        CHECK(rq.body_len == strlen(body));
    }
    unsigned taken = 0;
    for (size_t i = 3; i < a.nseg; i++) {
        const char *arg = a.seg[i];
        why = NULL;
        if (probe_request_add_field(&rq, arg, &why) == 0) {
            taken++;
            CHECK(strpbrk(arg, "\r\n") == NULL);
            CHECK(!names(arg, "Content-Length") && !names(arg, "Transfer-Encoding"));
        } else {
            CHECK(why != NULL);
        }
    }
    CHECK(rq.nfields == taken && taken <= PROBE_FIELDS_MAX);

    struct evbuffer *out = evbuffer_new();
    CHECK(out != NULL);
    CHECK(probe_request_head(&rq, "a.example:8080", path, path_len, out) == 0);
    size_t len = evbuffer_get_length(out);
    char *head = dup_exact((const char *)evbuffer_pullup(out, -1), len);
    evbuffer_free(out);

    /* one head, CRLF lines only: nothing a -H carries ends it early or starts another */
    CHECK(len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < len; i++) {
        CHECK(head[i] != '\0');
        if (head[i] == '\n')
            CHECK(i > 0 && head[i - 1] == '\r');
        if (head[i] == '\r')
            CHECK(i + 1 < len && head[i + 1] == '\n');
        if (i + 4 < len)
            CHECK(memcmp(head + i, "\r\n\r\n", 4) != 0);
    }

    /* read back as probe.c does: whole, or refused (a value Portico would refuse from a
     * client), never a head that wants more */
    struct h1_limits lim = {65536, 1u << 20};
    struct h1_request req;
    struct h1_error err;
    int r = h1_parse_request(head, len, &lim, &req, &err);
    CHECK(r == -1 || r == (int)len);
    if (r > 0) {
        const char *m = probe_request_method(&rq);
        CHECK(req.method_len == strlen(m) && memcmp(req.method, m, req.method_len) == 0);
        CHECK(req.target_len >= 1 && req.target[0] == '/');
        /* every field a -H sends, in order; Content-Length the body's */
        size_t from = 0;
        for (unsigned i = 0; i < rq.nfields; i++) {
            size_t n;
            const char *v = sent_value(rq.fields[i], &n);
            if (!v)
                continue;
            const struct h1_field *f = find(&req, rq.fields[i], n, from);
            CHECK(f != NULL);
            from = (size_t)(f - req.fields) + 1;
        }
        const struct h1_field *cl = find(&req, "Content-Length", 14, 0);
        CHECK((cl != NULL) == ((mode & 1) != 0));
        if (cl) {
            char want[32];
            int wn = snprintf(want, sizeof(want), "%zu", rq.body_len);
            CHECK(cl->value_len == (size_t)wn && memcmp(cl->value, want, (size_t)wn) == 0);
            CHECK(find(&req, "Content-Length", 14, (size_t)(cl - req.fields) + 1) == NULL);
        }
        CHECK(find(&req, "Transfer-Encoding", 17, 0) == NULL);
    }
    free(head);
    probe_request_free(&rq);
    for (size_t i = 0; i < a.nseg; i++)
        free(a.seg[i]);
    return 0;
}
