/*
 * fuzz_rewrite.c — libFuzzer target: a route's rewrite_prefix (proxy/rewrite.c, rewrite_target).
 *
 * Input: a mode byte (bit 0: OPTIONS, else GET), then a request-target, a route prefix and a
 * replacement split on 0xFF. The target goes through the parser and request_target as a request
 * does; the prefix and replacement are held to what the loader accepts (set_prefix,
 * set_rewrite_prefix); rewrite_target runs when the route's prefix matches, as in exchange.c.
 * Properties checked: the answer is 0 or 400 (with a reason); a result starts with the
 * replacement (so with '/'), holds no dot segment in its path, keeps the query byte for byte,
 * is what follows the matched part of the path after the replacement and is never longer than
 * the replacement and the target together; "*" goes on unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/http1.h"
#include "portico/request.h"
#include "portico/rewrite.h"
#include "portico/route_prefix.h"
#include "portico/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

#define MODE_OPTIONS 0x01
#define SPLIT 0xFF

/* What the loader takes for a prefix (set_prefix): '/' first, no blank, control or non-ASCII. */
static bool prefix_ok(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
            return false;
    return true;
}

/* What the loader takes for a replacement (set_rewrite_prefix): a prefix with no '?', '#' or
 * dot segment of its own. */
static bool repl_ok(const char *p, size_t n)
{
    if (!prefix_ok(p, n) || memchr(p, '?', n) || memchr(p, '#', n))
        return false;
    return !request_has_dot_segment(p, n);
}

/* The next 0xFF-separated part of data[*pos..size). */
static const char *part(const uint8_t *data, size_t size, size_t *pos, size_t *len)
{
    const uint8_t *start = data + *pos;
    const uint8_t *end = memchr(start, SPLIT, size - *pos);
    *len = end ? (size_t)(end - start) : size - *pos;
    *pos += *len + (end != NULL);
    return (const char *)start;
}

static void check_rewrite(const struct req_target *t, const char *prefix, const char *repl,
                          size_t repl_len)
{
    char *out = (char *)"unset";
    size_t out_len = 12345;
    const char *why = NULL;
    int rc = rewrite_target(t->path, t->path_len, t->route, t->route_len, prefix, repl, repl_len,
                            &out, &out_len, &why);
    CHECK(rc == 0 || rc == HTTP_BAD_REQUEST);
    if (rc == HTTP_BAD_REQUEST) {
        CHECK(why != NULL && out == NULL && out_len == 0);
        return;
    }
    if (t->path_len == 1 && t->path[0] == '*') {
        CHECK(out == NULL && out_len == 0);
        return;
    }
    CHECK(out != NULL && out[out_len] == '\0');
    CHECK(out_len <= repl_len + t->path_len);
    CHECK(out_len >= repl_len && memcmp(out, repl, repl_len) == 0);
    CHECK(out[0] == '/');
    /* what follows the replacement is a tail of the target: the rest of the path, the query */
    size_t rest = out_len - repl_len;
    CHECK(rest <= t->path_len && memcmp(out + repl_len, t->path + t->path_len - rest, rest) == 0);
    const char *qi = memchr(t->path, '?', t->path_len);
    const char *qo = memchr(out, '?', out_len);
    CHECK((qi == NULL) == (qo == NULL));
    if (qi) {
        size_t qlen = (size_t)(t->path + t->path_len - qi);
        CHECK((size_t)(out + out_len - qo) == qlen && memcmp(qo, qi, qlen) == 0);
    }
    CHECK(!request_has_dot_segment(out, qo ? (size_t)(qo - out) : out_len));
    /* routed again, the result reads as a path ("/" matches it) and no byte past it */
    char *copy = dup_exact(out, out_len); /* ASan: nothing reads past the result */
    CHECK(route_prefix_matches(copy, qo ? (size_t)(qo - out) : out_len, "/"));
    free(copy);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t pos = 1, tlen, plen, rlen;
    const char *target = part(data, size, &pos, &tlen);
    const char *prefix_in = part(data, size, &pos, &plen);
    const char *repl_in = part(data, size, &pos, &rlen);
    if (!prefix_ok(prefix_in, plen) || !repl_ok(repl_in, rlen))
        return 0;

    /* the request as it comes: the parser bounds what a target holds */
    const char *method = (mode & MODE_OPTIONS) ? "OPTIONS " : "GET ";
    static const char tail[] = " HTTP/1.1\r\nHost: a.example\r\n\r\n";
    size_t mlen = strlen(method), n = mlen + tlen + sizeof(tail) - 1;
    char *head = malloc(n);
    CHECK(head != NULL);
    memcpy(head, method, mlen);
    memcpy(head + mlen, target, tlen);
    memcpy(head + mlen + tlen, tail, sizeof(tail) - 1);
    struct h1_limits lim = {.max_request_line = 8192, .max_head = 16384};
    struct h1_request req;
    struct h1_error err;
    struct req_target t;
    const char *why = NULL;
    char *prefix = malloc(plen + 1); /* a C string, as the config holds it */
    CHECK(prefix != NULL);
    memcpy(prefix, prefix_in, plen);
    prefix[plen] = '\0';
    char *repl = dup_exact(repl_in, rlen);
    if (h1_parse_request(head, n, &lim, &req, &err) > 0 && request_target(&req, &t, &why) == 0 &&
        route_prefix_matches(t.route, t.route_len, prefix))
        check_rewrite(&t, prefix, repl, rlen);
    free(repl);
    free(prefix);
    free(head);
    return 0;
}
