/*
 * fuzz_dns_wire.c — libFuzzer target: the strict reading of a DNS answer over TCP
 * (proxy/dns_wire.c), what a hostile nameserver or anyone on the path could send.
 *
 * The first input byte picks the question (A or AAAA, and one of three names); the rest is the
 * answer. The query is built with the answer's own id, so the fuzzer gets past the id check.
 * Properties checked: the result is one of the four; anything but DNS_WIRE_OK has a detail that
 * fits its buffer; no more addresses are kept than DNS_WIRE_ADDRS_MAX nor than were found, all
 * of them when they fit; the same answer reads the same twice. Every call gets an exact-size
 * copy so ASan sees over-reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/dns_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

static const char *const names[] = {"many.portico.test", "a.b", "x"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint16_t qtype = data[0] & 1 ? DNS_TYPE_AAAA : DNS_TYPE_A;
    const char *name = names[(data[0] >> 1) % 3];
    size_t len = size - 1;
    uint8_t *msg = malloc(len ? len : 1);
    CHECK(msg != NULL);
    memcpy(msg, data + 1, len);
    uint8_t query[DNS_WIRE_QUERY_MAX];
    int qlen = dns_wire_query(query, sizeof(query), dns_wire_id(msg, len), name, qtype);
    CHECK(qlen > 0);
    struct dns_wire_addrs a, b;
    char why[120], why2[120];
    why[0] = why2[0] = '\0';
    enum dns_wire_result r = dns_wire_answer(msg, len, query, (size_t)qlen, &a, why, sizeof(why));
    CHECK(r == DNS_WIRE_OK || r == DNS_WIRE_NXDOMAIN || r == DNS_WIRE_FAILED ||
          r == DNS_WIRE_BAD);
    CHECK(strlen(why) < sizeof(why));
    CHECK(r == DNS_WIRE_OK || why[0] != '\0');
    CHECK(a.n <= DNS_WIRE_ADDRS_MAX && a.n <= a.found);
    CHECK(r != DNS_WIRE_OK || a.n == (a.found < DNS_WIRE_ADDRS_MAX ? a.found : DNS_WIRE_ADDRS_MAX));
    CHECK(r != DNS_WIRE_OK || a.type == qtype);
    enum dns_wire_result r2 =
        dns_wire_answer(msg, len, query, (size_t)qlen, &b, why2, sizeof(why2));
    CHECK(r2 == r && strcmp(why, why2) == 0 && b.n == a.n && b.found == a.found);
    CHECK(memcmp(a.a, b.a, sizeof(a.a[0]) * a.n) == 0);
    free(msg);
    return 0;
}
