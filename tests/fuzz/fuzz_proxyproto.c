/*
 * fuzz_proxyproto.c — libFuzzer target: the PROXY protocol header parser (proxy/proxyproto.c),
 * what anyone who can reach a `listen ... proxy_protocol` address could send first.
 *
 * The input is the bytes received. Properties checked: the result is -1 with a known reason,
 * 0, or a header length within the input, at most PP_HEADER_MAX (and PP_V1_MAX for v1); a
 * header's source, when it has one, is an IPv4 or IPv6 address of the right length; every
 * prefix of the input shorter than a header's length wants more, or fails the same way; the
 * header parses the same with any bytes after it. Every call gets an exact-size copy so ASan
 * sees over-reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "portico/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

static int parse_copy(const uint8_t *data, size_t size, struct pp_header *h, enum pp_error *err)
{
    uint8_t *p = malloc(size ? size : 1);
    CHECK(p != NULL);
    memcpy(p, data, size);
    int n = pp_parse(p, size, h, err);
    free(p);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pp_header h;
    enum pp_error err = PP_ERROR_COUNT;
    int n = parse_copy(data, size, &h, &err);
    CHECK(n >= -1 && (size_t)(n > 0 ? n : 0) <= size && n <= PP_HEADER_MAX);
    if (n < 0) {
        CHECK(err < PP_ERROR_COUNT && err != PP_ERR_TRUNCATED && err != PP_ERR_TIMEOUT);
        /* a longer input cannot mend it: the same error with one byte more */
        uint8_t *more = malloc(size + 1);
        CHECK(more != NULL);
        memcpy(more, data, size);
        more[size] = 'x';
        enum pp_error err2 = PP_ERROR_COUNT;
        CHECK(parse_copy(more, size + 1, &h, &err2) == -1 && err2 == err);
        free(more);
        return 0;
    }
    if (n == 0)
        return 0;
    CHECK(h.version == 1 || h.version == 2);
    CHECK(h.version == 2 || n <= PP_V1_MAX);
    if (h.has_source)
        CHECK((h.source.ss_family == AF_INET && h.source_len == sizeof(struct sockaddr_in)) ||
              (h.source.ss_family == AF_INET6 && h.source_len == sizeof(struct sockaddr_in6)));
    struct pp_header whole = h;
    for (size_t cut = 0; cut < (size_t)n; cut++) {
        enum pp_error e;
        CHECK(parse_copy(data, cut, &h, &e) == 0);
    }
    /* the header alone parses to the same */
    CHECK(parse_copy(data, (size_t)n, &h, &err) == n);
    CHECK(h.version == whole.version && h.has_source == whole.has_source &&
          (!h.has_source || memcmp(&h.source, &whole.source, h.source_len) == 0));
    return 0;
}
