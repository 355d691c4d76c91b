/*
 * test_proxyproto.c — pp_parse, the PROXY protocol header parser (v1 text, v2 binary): each
 * row's bytes are copied to the end of a heap block of their exact size, so that ASan catches a
 * read one byte past them. Every good header is also given cut at each length (more must come,
 * never an error) and followed by a request (the header's length, not the bytes').
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "portico/proxyproto.h"
#include "portico/util.h"

/* v2's signature, then version 2 with a command, a family/transport byte, and the length. */
#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define V2(cmd, fam, len_hi, len_lo) SIG cmd fam len_hi len_lo

enum want { W_HEADER, W_MORE, W_ERROR };

struct row {
    const char *why;
    const char *bytes;
    size_t len;                /* of bytes (they may hold NULs) */
    enum want want;
    enum pp_error err;         /* W_ERROR */
    int version;               /* W_HEADER */
    const char *source;        /* W_HEADER: "ip port", or NULL: the socket's own */
};

#define HDR(w, lit, v, src)                                                                        \
    {.why = w, .bytes = lit, .len = sizeof(lit) - 1, .want = W_HEADER, .version = v, .source = src}
#define MORE(w, lit) {.why = w, .bytes = lit, .len = sizeof(lit) - 1, .want = W_MORE}
#define ERR(w, lit, e) {.why = w, .bytes = lit, .len = sizeof(lit) - 1, .want = W_ERROR, .err = e}

#define Z16 "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
#define Z256 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16 Z16

static const struct row rows[] = {
    /* version 1 */
    HDR("v1 TCP4", "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n", 1, "127.0.113.7 4242"),
    HDR("v1 TCP6", "PROXY TCP6 ::1 ::1 65535 443\r\n", 1, "::1 65535"),
    HDR("v1 port 0", "PROXY TCP4 127.1.2.4 127.5.6.8 0 1\r\n", 1, "127.1.2.4 0"),
    HDR("v1 UNKNOWN alone", "PROXY UNKNOWN\r\n", 1, NULL),
    HDR("v1 UNKNOWN with whatever follows", "PROXY UNKNOWN ::1 ::1 1 2\r\n", 1, NULL),
    HDR("v1 at 107 bytes exactly",
        "PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0001 0000:0000:0000:0000:0000:0000:0000:0001"
        " 65535 65535\r\n",
        1, "::1 65535"),
    MORE("v1 beginning", "PROXY TCP4 127.1.2"),
    MORE("v1 a P alone", "P"),
    ERR("a request, not a header", "GET / HTTP/1.1\r\n", PP_ERR_MISSING),
    ERR("a POST: P, then not R", "POST / HTTP/1.1\r\n", PP_ERR_MISSING),
    ERR("lower case", "proxy TCP4 127.1.2.4 127.5.6.8 1 2\r\n", PP_ERR_MISSING),
    ERR("a TLS ClientHello", "\x16\x03\x01\x02\x00\x01", PP_ERR_MISSING),
    ERR("v1 without its CR", "PROXY TCP4 127.1.2.4 127.5.6.8 1 2\n", PP_ERR_MALFORMED),
    ERR("v1 unknown protocol", "PROXY TCP5 127.1.2.4 127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    /* (IPv6 addresses: an unknown word is no TCP6 either) */
    ERR("v1 unknown protocol, IPv6 addresses", "PROXY TCP5 ::1 ::1 1 2\r\n", PP_ERR_MALFORMED),
    /* (the word fills its 8-byte buffer: ASan sees a NUL written past it) */
    ERR("v1 a protocol word of 8 bytes", "PROXY UNKNOWNX\r\n", PP_ERR_MALFORMED),
    ERR("v1 UDP4", "PROXY UDP4 127.1.2.4 127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 IPv6 under TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 IPv4 under TCP6", "PROXY TCP6 127.1.2.4 127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 bad destination", "PROXY TCP4 127.1.2.4 5.6.7 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 octet over 255", "PROXY TCP4 127.1.2.256 127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 port over 65535", "PROXY TCP4 127.1.2.4 127.5.6.8 65536 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 port of 6 digits", "PROXY TCP4 127.1.2.4 127.5.6.8 000001 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 signed port", "PROXY TCP4 127.1.2.4 127.5.6.8 +1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 two spaces", "PROXY TCP4 127.1.2.4  127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 a trailing space", "PROXY TCP4 127.1.2.4 127.5.6.8 1 2 \r\n", PP_ERR_MALFORMED),
    ERR("v1 a field too many", "PROXY TCP4 127.1.2.4 127.5.6.8 1 2 3\r\n", PP_ERR_MALFORMED),
    ERR("v1 a field short", "PROXY TCP4 127.1.2.4 127.5.6.8 1\r\n", PP_ERR_MALFORMED),
    ERR("v1 no protocol", "PROXY \r\n", PP_ERR_MALFORMED),
    ERR("v1 a tab", "PROXY TCP4\t127.1.2.4 127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 a NUL in an address", "PROXY TCP4 127.1.2.4\0 127.5.6.8 1 2\r\n", PP_ERR_MALFORMED),
    ERR("v1 a CR inside", "PROXY TCP4 127.1.2.4 127.5.6.8 1 2\r\r\n", PP_ERR_MALFORMED),
    ERR("v1 107 bytes with no LF",
        "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxx",
        PP_ERR_OVERSIZED),
    ERR("v1 LF at byte 108",
        "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxx\r\n",
        PP_ERR_OVERSIZED),
    HDR("v1 UNKNOWN at 107 bytes exactly",
        "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxx\r\n",
        1, NULL),
    /* version 2 */
    HDR("v2 PROXY TCP over IPv4",
        V2("\x21", "\x11", "\x00", "\x0c") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50",
        2, "127.0.100.9 5000"),
    HDR("v2 PROXY TCP over IPv6 with a TLV (AWS's VPC endpoint id)",
        V2("\x21", "\x21", "\x00", "\x2c")
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
        "\x13\x89" "\x01\xbb" "\xea\x00\x05\x01vpce",
        2, "::1 5001"),
    /* (the destination another address than the source: ::ffff:127.0.0.2) */
    HDR("v2 PROXY TCP over IPv6, source and destination apart",
        V2("\x21", "\x21", "\x00", "\x24")
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\0\0\x02"
        "\x13\x8a" "\x01\xbb",
        2, "::1 5002"),
    HDR("v2 LOCAL (a health check) with an address block",
        V2("\x20", "\x11", "\x00", "\x0c") "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
        2, NULL),
    HDR("v2 LOCAL, UNSPEC, empty", V2("\x20", "\x00", "\x00", "\x00"), 2, NULL),
    HDR("v2 PROXY UNSPEC: the socket's address", V2("\x21", "\x00", "\x00", "\x00"), 2, NULL),
    HDR("v2 PROXY UDP over IPv4: the socket's address",
        V2("\x21", "\x12", "\x00", "\x0c") "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
        2, NULL),
    /* PP2_TYPE_CRC32C (proxy-protocol.txt 2.2.5): checked over the whole header, its own field
     * zeroed; a mismatch is refused (it was skipped unread as any TLV) */
    HDR("v2 IPv4 with its CRC32c",
        V2("\x21", "\x11", "\x00", "\x13") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x04\xbe\xb6\x61\x6c",
        2, "127.0.100.9 5000"),
    HDR("v2 IPv6 with its CRC32c after another TLV",
        V2("\x21", "\x21", "\x00", "\x33")
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
        "\x13\x89" "\x01\xbb" "\xea\x00\x05\x01vpce" "\x03\x00\x04\x7d\x7d\x4e\xd8",
        2, "::1 5001"),
    ERR("v2 a CRC32c one bit off",
        V2("\x21", "\x11", "\x00", "\x13") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x04\xbe\xb6\x61\x6d",
        PP_ERR_CHECKSUM),
    ERR("v2 a CRC32c right, the source port changed on the way",
        V2("\x21", "\x11", "\x00", "\x13") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x89"
        "\x00\x50" "\x03\x00\x04\xbe\xb6\x61\x6c",
        PP_ERR_CHECKSUM),
    ERR("v2 a CRC32c TLV of 3 bytes",
        V2("\x21", "\x11", "\x00", "\x12") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x03\xbe\xb6\x61",
        PP_ERR_MALFORMED),
    MORE("v2 signature cut", "\r\n\r\n\0\r"),
    MORE("v2 fixed part cut", SIG "\x21\x11"),
    MORE("v2 addresses cut", V2("\x21", "\x11", "\x00", "\x0c") "\x01\x02\x03"),
    ERR("v2 signature wrong", "\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00", PP_ERR_MISSING),
    ERR("a CRLF first, then a request", "\r\nGET / HTTP/1.1\r\n", PP_ERR_MISSING),
    ERR("v2 version 1", SIG "\x11\x11\x00\x0c", PP_ERR_MALFORMED),
    ERR("v2 version 3", SIG "\x31\x11\x00\x0c", PP_ERR_MALFORMED),
    ERR("v2 command 2", SIG "\x22\x11\x00\x0c", PP_ERR_MALFORMED),
    ERR("v2 family 4", SIG "\x21\x41\x00\x0c", PP_ERR_MALFORMED),
    ERR("v2 transport 3", SIG "\x21\x13\x00\x0c", PP_ERR_MALFORMED),
    ERR("v2 IPv4 block too short", V2("\x21", "\x11", "\x00", "\x04") "\x01\x02\x03\x04",
        PP_ERR_MALFORMED),
    ERR("v2 IPv4 block one byte short",
        V2("\x21", "\x11", "\x00", "\x0b") "\x7f\x00\x64\x09\x7f\x00\x00\x0a\x13\x88\x00",
        PP_ERR_MALFORMED),
    ERR("v2 IPv6 block too short",
        V2("\x21", "\x21", "\x00", "\x0c") "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
        PP_ERR_MALFORMED),
    ERR("v2 UNIX block too short", V2("\x21", "\x31", "\x00", "\x00"), PP_ERR_MALFORMED),
    ERR("v2 longer than PP_HEADER_MAX (16 + 4081)", V2("\x21", "\x11", "\x0f", "\xf1"),
        PP_ERR_OVERSIZED),
    ERR("v2 65535 bytes announced", V2("\x20", "\x00", "\xff", "\xff"), PP_ERR_OVERSIZED),
    /* a CRC32c TLV of 0 bytes, its 3-byte type and length the header's last: not 4 bytes, as
     * one of 3 is not (a walk that stopped a TLV short of the end let it through) */
    ERR("v2 a CRC32c TLV of 0 bytes at the header's end",
        V2("\x21", "\x11", "\x00", "\x0f") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x00",
        PP_ERR_MALFORMED),
    /* one of 5 bytes is not a CRC32c either, its first 4 the right sum or not */
    ERR("v2 a CRC32c TLV of 5 bytes",
        V2("\x21", "\x11", "\x00", "\x14") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x05\xbe\xb6\x61\x6c\x00",
        PP_ERR_MALFORMED),
    /* TLVs that do not fit the header are malformed, as in HAProxy (they were skipped unread) */
    ERR("v2 a NOOP TLV running past the header",
        V2("\x21", "\x11", "\x00", "\x10") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x04\x00\x09\x00",
        PP_ERR_MALFORMED),
    ERR("v2 one byte after the addresses, short of a TLV",
        V2("\x21", "\x11", "\x00", "\x0d") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x04",
        PP_ERR_MALFORMED),
    ERR("v2 a right CRC32c, then a TLV running past the header",
        V2("\x21", "\x11", "\x00", "\x16") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x04\x00\x00\x00\x00" "\x04\x00\x05\x00\x00",
        PP_ERR_MALFORMED),
    /* (mutants18) a TLV of 0 bytes ends the header exactly: its 3 bytes are a whole TLV */
    HDR("v2 a NOOP TLV of 0 bytes, the header's last",
        V2("\x21", "\x11", "\x00", "\x0f") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x04\x00\x00",
        2, "127.0.100.9 5000"),
    /* two bytes short of a TLV's 3: refused without reading past the header (ASan) */
    ERR("v2 two bytes after the addresses, short of a TLV",
        V2("\x21", "\x11", "\x00", "\x0e") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x04\x00",
        PP_ERR_MALFORMED),
    /* a TLV's length is 16 bits: a NOOP of 256 zero bytes is one TLV (read as 8 bits, it
     * would be 85 empty ones and a remnant) */
    HDR("v2 a NOOP TLV of 256 bytes",
        V2("\x21", "\x11", "\x01", "\x0f") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x04\x01\x00" Z256,
        2, "127.0.100.9 5000"),
    /* two CRC32c TLVs: the first is the header's sum (computed with the second's bytes in),
     * the second a TLV read no further */
    HDR("v2 two CRC32c TLVs: the first one checked",
        V2("\x21", "\x11", "\x00", "\x1a") "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88"
        "\x00\x50" "\x03\x00\x04\x02\x99\x90\x99" "\x03\x00\x04\xde\xad\xbe\xef",
        2, "127.0.100.9 5000"),
};

/* The bytes at the end of a heap block of their exact size. */
static unsigned char *exact(const void *p, size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    assert_non_null(b);
    memcpy(b, p, n);
    return b;
}

static void check_source(const struct row *r, const struct pp_header *h)
{
    if (!r->source) {
        assert_false(h->has_source);
        return;
    }
    assert_true(h->has_source);
    char ip[INET6_ADDRSTRLEN], text[80];
    uint16_t port = peer_ip_str((const struct sockaddr *)&h->source, ip);
    snprintf(text, sizeof(text), "%s %u", ip, port);
    assert_string_equal(text, r->source);
    assert_int_equal(h->source_len, h->source.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                                   : sizeof(struct sockaddr_in6));
}

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        unsigned char *b = exact(r->bytes, r->len);
        struct pp_header h;
        enum pp_error err = PP_ERROR_COUNT;
        int n = pp_parse(b, r->len, &h, &err);
        switch (r->want) {
        case W_HEADER:
            if (n != (int)r->len)
                fail_msg("%s: %d, not the header's %zu bytes (%s)", r->why, n, r->len,
                         n < 0 ? pp_error_label(err) : "more");
            assert_int_equal(h.version, r->version);
            check_source(r, &h);
            break;
        case W_MORE:
            if (n != 0)
                fail_msg("%s: %d, not 0 (more to come)", r->why, n);
            break;
        case W_ERROR:
            if (n != -1 || err != r->err)
                fail_msg("%s: %d %s, not -1 %s", r->why, n, n < 0 ? pp_error_label(err) : "",
                         pp_error_label(r->err));
            break;
        }
        free(b);
    }
}

/* A whole header cut anywhere is a beginning: more must come, never an error. */
static void test_prefixes_want_more(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        if (r->want != W_HEADER)
            continue;
        for (size_t cut = 0; cut < r->len; cut++) {
            unsigned char *b = exact(r->bytes, cut);
            struct pp_header h;
            enum pp_error err = PP_ERROR_COUNT;
            int n = pp_parse(b, cut, &h, &err);
            if (n != 0)
                fail_msg("%s cut at %zu: %d (%s), not 0", r->why, cut, n,
                         n < 0 ? pp_error_label(err) : "a header");
            free(b);
        }
    }
}

/* What follows a header is not the header's: its length is the header's alone, whatever came
 * behind it (a request head, a ClientHello, up to PP_HEADER_MAX bytes and more). */
static void test_bytes_after_the_header(void **state)
{
    (void)state;
    static const char *const after[] = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01",
                                        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\n", "PROXY "};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        if (r->want != W_HEADER)
            continue;
        for (size_t a = 0; a < sizeof(after) / sizeof(after[0]); a++) {
            size_t alen = strlen(after[a]);
            unsigned char *b = malloc(r->len + alen);
            assert_non_null(b);
            memcpy(b, r->bytes, r->len);
            memcpy(b + r->len, after[a], alen);
            struct pp_header h;
            enum pp_error err;
            int n = pp_parse(b, r->len + alen, &h, &err);
            if (n != (int)r->len)
                fail_msg("%s then '%s': %d, not %zu", r->why, after[a], n, r->len);
            check_source(r, &h);
            free(b);
        }
        /* a v1 header followed by a large body: the LF is found within 107 bytes */
        unsigned char *big = malloc(PP_HEADER_MAX * 2);
        assert_non_null(big);
        memset(big, 'x', PP_HEADER_MAX * 2);
        memcpy(big, r->bytes, r->len);
        struct pp_header h;
        enum pp_error err;
        assert_int_equal(pp_parse(big, PP_HEADER_MAX * 2, &h, &err), (int)r->len);
        free(big);
    }
}

/* A v2 header of PP_HEADER_MAX bytes exactly (its TLVs fill it) is whole; one more is not
 * (the "longer than PP_HEADER_MAX" row). */
static void test_v2_at_the_limit(void **state)
{
    (void)state;
    static const unsigned char fixed[] = SIG "\x21\x11\x0f\xf0" /* 4080 bytes follow */
        "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88" "\x00\x50"
        "\x04\x0f\xe1"; /* a NOOP TLV of 4065 bytes */
    unsigned char *b = calloc(1, PP_HEADER_MAX);
    assert_non_null(b);
    memcpy(b, fixed, sizeof(fixed) - 1);
    struct pp_header h;
    enum pp_error err = PP_ERROR_COUNT;
    int n = pp_parse(b, PP_HEADER_MAX, &h, &err);
    if (n != PP_HEADER_MAX)
        fail_msg("%d (%s), not %d", n, n < 0 ? pp_error_label(err) : "more", PP_HEADER_MAX);
    const struct row r = {.source = "127.0.100.9 5000"};
    check_source(&r, &h);
    assert_int_equal(pp_parse(b, PP_HEADER_MAX - 1, &h, &err), 0);
    free(b);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(pp_error_label(PP_ERR_MISSING), "missing");
    assert_string_equal(pp_error_label(PP_ERR_TIMEOUT), "timeout");
    assert_string_equal(pp_error_label(PP_ERROR_COUNT), "?");
    for (int e = 0; e < PP_ERROR_COUNT; e++)
        assert_true(strlen(pp_error_words(e)) > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_prefixes_want_more),
        cmocka_unit_test(test_bytes_after_the_header),
        cmocka_unit_test(test_v2_at_the_limit),
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
