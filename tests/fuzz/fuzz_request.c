/*
 * fuzz_request.c — libFuzzer target: request head, semantic pass, request-target checks and
 * chunked body.
 *
 * The first input byte picks limits and split patterns; the rest is the stream. Properties
 * checked: results stay inside the buffer, errors carry an allowed status, a prefix of the input
 * says "again" or fails the same way, the fields of a head not parsed (-2, -1) are lines read
 * whole, and the chunked decoder gives the same body however the stream is cut. Every parse gets
 * an exact-size copy so ASan sees over-reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/http1.h"
#include "portico/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

/* ---- request head ---- */

static int parse_copy(const char *p, size_t n, const struct h1_limits *lim, struct h1_request *req,
                      struct h1_error *err)
{
    char *buf = dup_exact(p, n);
    int r = h1_parse_request(buf, n, lim, req, err);
    CHECK(r == -1 || r == -2 || (r > 0 && (size_t)r <= n));
    if (r > 0) {
        CHECK((size_t)r <= lim->max_head);
        CHECK(req->method >= buf && req->method + req->method_len <= buf + r);
        CHECK(req->target >= buf && req->target + req->target_len <= buf + r);
        CHECK(req->method_len > 0 && req->target_len > 0);
        CHECK(req->minor == 0 || req->minor == 1);
        check_fields(buf, r, req->fields, req->nfields);
    } else if (r == -1) {
        CHECK(err->status == 400 || err->status == 414 || err->status == 431 ||
              err->status == 505);
        CHECK(err->reason != NULL && err->offset <= n);
    } else {
        CHECK(n < lim->max_head);
    }
    /* On -2 and -1 the fields are the lines read whole (http1.h): a refused request's id and
     * real_ip are read from them */
    if (r < 0)
        check_fields(buf, (int)n, req->fields, req->nfields);
    free(buf);
    return r;
}

/* request_target on a request that passed the semantic pass: what it routes and forwards. */
static void check_target(const struct h1_request *req, const char *buf, size_t n)
{
    struct req_target t;
    const char *why = NULL;
    int st = request_target(req, &t, &why);

    CHECK(req->method_id == h1_method_of(req->method, req->method_len));
    if (st != 0) {
        CHECK((st == 400 || st == 501) && why != NULL);
        return;
    }
    /* An absolute-form authority passed the very validator a Host field passes. */
    CHECK(t.host == NULL || (t.host_len > 0 && h1_host_valid(t.host, t.host_len) &&
                             t.host >= buf && t.host + t.host_len <= buf + n));
    CHECK(t.path_len > 0 && (t.path[0] == '/' || t.path[0] == '?' || t.path[0] == '*'));
    CHECK(t.path[0] != '?' || t.host != NULL);
    CHECK(t.route_len > 0 && t.route_len <= t.path_len && t.route[0] == '/');
    CHECK(memchr(t.route, '?', t.route_len) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    struct h1_limits lim = {
        .max_request_line = (mode & 1) ? 48 : 8192,
        .max_head = (mode & 2) ? 200 : 16384,
    };
    struct h1_request req;
    struct h1_error err = {0}, e2;

    int r = parse_copy(in, n, &lim, &req, &err);

    /* A prefix says "again", or fails exactly like the whole input. */
    size_t cuts[4] = {n * ((mode >> 2) & 7) / 8, n / 2, n > 0 ? n - 1 : 0, (mode * 31u) % (n + 1)};
    for (int k = 0; k < 4; k++) {
        size_t cut = cuts[k];
        struct h1_request req2;
        int r2 = parse_copy(in, cut, &lim, &req2, &e2);
        if (r > 0)
            CHECK(cut < (size_t)r ? r2 == -2 : r2 == r);
        else if (r == -2)
            CHECK(r2 == -2);
        else
            CHECK(r2 == -2 || (r2 == -1 && e2.status == err.status && e2.offset == err.offset &&
                               e2.reason == err.reason));
    }

    if (r > 0) {
        /* Spans are only valid while their buffer lives: parse again into one we keep. */
        char *buf = dup_exact(in, n);
        CHECK(h1_parse_request(buf, n, &lim, &req, &err) == r);
        struct h1_info info;
        if (h1_request_info(&req, &info, &err) == 0) {
            CHECK(info.framing == H1_BODY_NONE || info.framing == H1_BODY_LENGTH ||
                  info.framing == H1_BODY_CHUNKED);
            CHECK(info.framing != H1_BODY_LENGTH || info.content_length <= (UINT64_C(1) << 62));
            CHECK(req.minor == 0 || info.host != NULL);
            if (info.keep_alive)
                CHECK(!h1_connection_has(req.fields, req.nfields, "close"));
            check_target(&req, buf, n);
        } else {
            CHECK(err.status == 400 || err.status == 501);
            CHECK(err.reason != NULL);
        }
        free(buf);
        fuzz_chunked(in + r, n - (size_t)r, mode);
    } else if (mode & 0x80) {
        /* Give the decoder the raw input too: it is reached far more often this way. */
        fuzz_chunked(in, n, mode);
    }
    return 0;
}
