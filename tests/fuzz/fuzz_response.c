/*
 * fuzz_response.c — libFuzzer target: response head, semantic pass and chunked body.
 *
 * The first input byte picks the request method, the head limit and split patterns; the rest is
 * the stream. Same properties as fuzz_request.c; every error must be a 502.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

/* ---- response head ---- */

static int parse_copy(const char *p, size_t n, size_t max_head, struct h1_response *resp,
                      struct h1_error *err)
{
    char *buf = dup_exact(p, n);
    int r = h1_parse_response(buf, n, max_head, resp, err);
    CHECK(r == -1 || r == -2 || (r > 0 && (size_t)r <= n));
    if (r > 0) {
        CHECK((size_t)r <= max_head);
        CHECK(resp->status >= 100 && resp->status <= 999);
        CHECK(resp->minor == 0 || resp->minor == 1);
        CHECK(resp->reason >= buf && resp->reason + resp->reason_len <= buf + r);
        check_fields(buf, r, resp->fields, resp->nfields);
    } else if (r == -1) {
        CHECK(err->status == 502);
        CHECK(err->reason != NULL && err->offset <= n);
    } else {
        CHECK(n < max_head);
    }
    free(buf);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum http_method methods[] = {METHOD_GET, METHOD_HEAD, METHOD_POST,
                                               METHOD_CONNECT};
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    enum http_method method = methods[mode & 3];
    size_t max_head = (mode & 4) ? 160 : 16384;
    struct h1_response resp;
    struct h1_error err = {0}, e2;

    int r = parse_copy(in, n, max_head, &resp, &err);

    size_t cuts[4] = {n * ((mode >> 3) & 7) / 8, n / 2, n > 0 ? n - 1 : 0, (mode * 31u) % (n + 1)};
    for (int k = 0; k < 4; k++) {
        size_t cut = cuts[k];
        struct h1_response resp2;
        int r2 = parse_copy(in, cut, max_head, &resp2, &e2);
        if (r > 0)
            CHECK(cut < (size_t)r ? r2 == -2 : r2 == r);
        else if (r == -2)
            CHECK(r2 == -2);
        else
            CHECK(r2 == -2 || (r2 == -1 && e2.offset == err.offset && e2.reason == err.reason));
    }

    if (r > 0) {
        char *buf = dup_exact(in, n);
        CHECK(h1_parse_response(buf, n, max_head, &resp, &err) == r);
        struct h1_info info;
        if (h1_response_info(&resp, method, &info, &err) == 0) {
            CHECK(info.framing == H1_BODY_NONE || info.framing == H1_BODY_LENGTH ||
                  info.framing == H1_BODY_CHUNKED || info.framing == H1_BODY_CLOSE);
            CHECK(info.framing != H1_BODY_CLOSE || !info.keep_alive);
            CHECK(info.framing != H1_BODY_LENGTH || info.content_length <= (UINT64_C(1) << 62));
            if (resp.status < 200 || resp.status == 204 || resp.status == 304 || (mode & 3) == 1)
                CHECK(info.framing == H1_BODY_NONE);
            CHECK(info.host == NULL && !info.expect_continue && !info.expect_other);
        } else {
            CHECK(err.status == 502 && err.reason != NULL);
        }
        free(buf);
        fuzz_chunked(in + r, n - (size_t)r, mode);
    } else if (mode & 0x80) {
        fuzz_chunked(in, n, mode);
    }
    return 0;
}
