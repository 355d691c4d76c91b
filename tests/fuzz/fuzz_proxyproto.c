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
 *
 * The PP2_TYPE_CRC32C TLV: a v2 PROXY header taken with one carries the CRC32c a reference here
 * computes (table-driven, not the parser's bitwise loop). A mutated header almost never keeps a
 * valid checksum, so each one found is also sent with its field set to the reference's value
 * (then not refused for its checksum, and parsed as the header of a sender that computed it) and
 * with that value off by one bit (then refused with reason checksum): the fuzzer gets past the
 * check without having to guess a CRC.
 */
#include <stdbool.h>
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

#define PP2_TYPE_CRC32C 0x03

/* CRC32c (Castagnoli, reflected 0x82F63B78) of p[0..n), the 4 bytes at skip counted as zeros. */
static uint32_t ref_crc32c(const uint8_t *p, size_t n, size_t skip)
{
    static uint32_t table[256];
    if (table[1] == 0)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t c = b;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            table[b] = c;
        }
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = i >= skip && i < skip + 4 ? 0 : p[i];
        crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

/* The offset of the first 4-byte CRC32C TLV's value in a whole v2 PROXY header of n bytes whose
 * address block fits (the TLVs walked as proxy-protocol.txt 2.2 lays them out, the walk ending
 * at one that runs past the header: such a header is malformed whatever its sum), or 0: none,
 * or not a header whose TLVs are read. */
static size_t crc_value_at(const uint8_t *p, size_t n)
{
    static const size_t family_len[4] = {0, 12, 36, 216};
    if (n < PP_V2_FIXED || p[0] != 0x0d || p[12] != 0x21 || (p[13] >> 4) > 3 || (p[13] & 0xf) > 2)
        return 0;
    size_t total = PP_V2_FIXED + ((size_t)p[14] << 8 | p[15]);
    size_t at = PP_V2_FIXED + family_len[p[13] >> 4];
    if (total != n || at > total)
        return 0;
    while (at + 3 <= total) {
        size_t len = (size_t)p[at + 1] << 8 | p[at + 2];
        if (at + 3 + len > total)
            return 0;
        if (p[at] == PP2_TYPE_CRC32C)
            return len == 4 ? at + 3 : 0;
        at += 3 + len;
    }
    return 0;
}

/* Whether a whole v2 PROXY (command 1) header of n bytes has TLVs that end exactly at its end,
 * each whole (proxy-protocol.txt 2.2: type, a 2-byte length, the value): a header taken has
 * (the parser walks them as HAProxy does); a LOCAL one is taken unread. */
static bool tlvs_whole(const uint8_t *p, size_t n)
{
    static const size_t family_len[4] = {0, 12, 36, 216};
    if ((p[12] & 0xf) == 0)
        return true;
    size_t at = PP_V2_FIXED + family_len[p[13] >> 4];
    while (at + 3 <= n)
        at += 3 + ((size_t)p[at + 1] << 8 | p[at + 2]);
    return at == n;
}

/* The header whole (n bytes, a CRC32C TLV's value at v) with the checksum set to the
 * reference's: never refused for its checksum; off by one bit: refused for nothing else. */
static void check_fixed_crc(const uint8_t *data, size_t n, size_t v)
{
    uint8_t *p = malloc(n);
    CHECK(p != NULL);
    memcpy(p, data, n);
    uint32_t crc = ref_crc32c(p, n, v);
    p[v] = (uint8_t)(crc >> 24), p[v + 1] = (uint8_t)(crc >> 16);
    p[v + 2] = (uint8_t)(crc >> 8), p[v + 3] = (uint8_t)crc;
    struct pp_header h;
    enum pp_error err = PP_ERROR_COUNT;
    int got = parse_copy(p, n, &h, &err);
    CHECK(got == (int)n || (got == -1 && err != PP_ERR_CHECKSUM));
    if (got == (int)n) {
        p[v + 3] ^= 1;
        CHECK(parse_copy(p, n, &h, &err) == -1 && err == PP_ERR_CHECKSUM);
    }
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pp_header h;
    enum pp_error err = PP_ERROR_COUNT;
    if (size >= PP_V2_FIXED) {
        size_t whole = PP_V2_FIXED + ((size_t)data[14] << 8 | data[15]);
        size_t v = whole <= size ? crc_value_at(data, whole) : 0;
        if (v)
            check_fixed_crc(data, whole, v);
    }
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
    CHECK(h.version == 1 || tlvs_whole(data, (size_t)n));
    size_t crc_at = h.version == 2 ? crc_value_at(data, (size_t)n) : 0;
    if (crc_at) /* taken: the checksum it carries is the header's */
        CHECK(ref_crc32c(data, (size_t)n, crc_at) ==
              ((uint32_t)data[crc_at] << 24 | (uint32_t)data[crc_at + 1] << 16 |
               (uint32_t)data[crc_at + 2] << 8 | data[crc_at + 3]));
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
