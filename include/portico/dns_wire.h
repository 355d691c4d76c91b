/*
 * dns_wire.h — DNS messages on the wire (RFC 1035 4.1), for the lookups Portico asks over TCP
 * itself when the resolver's UDP answer was truncated (dns_tcp.c): a query for one name and type,
 * and a strict reading of its answer. Knows nothing of sockets or libevent.
 */
#ifndef PORTICO_DNS_WIRE_H
#define PORTICO_DNS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1

#define DNS_WIRE_HEADER 12        /* bytes of a message's header */
#define DNS_WIRE_NAME_MAX 255     /* bytes of a name in wire form, its root label included */
#define DNS_WIRE_QUERY_MAX (DNS_WIRE_HEADER + DNS_WIRE_NAME_MAX + 4)
#define DNS_WIRE_ADDRS_MAX 8      /* addresses kept of an answer: the address walk tries 8 */
#define DNS_WIRE_CNAME_HOPS 8     /* CNAMEs followed from the name asked, at most */

/* How an answer ended (dns_wire_answer). */
enum dns_wire_result {
    DNS_WIRE_OK,       /* NOERROR; n addresses, 0 for a name without one of this type */
    DNS_WIRE_NXDOMAIN, /* rcode 3 */
    DNS_WIRE_FAILED,   /* another rcode (SERVFAIL, REFUSED ...): detail names it */
    DNS_WIRE_BAD,      /* not an answer to the question, or malformed: detail says where */
};

/* The addresses of the name asked (or of its CNAME targets) in an answer, in answer order. */
struct dns_wire_addrs {
    unsigned n;                       /* kept, <= DNS_WIRE_ADDRS_MAX */
    unsigned found;                   /* found in the answer, kept or not */
    uint16_t type;                    /* DNS_TYPE_A (4 bytes each) or DNS_TYPE_AAAA (16) */
    uint8_t a[DNS_WIRE_ADDRS_MAX][16];
};

/* Writes a query (RD set) with id for name ("api.example", a final dot allowed) and qtype into
 * out (size bytes, DNS_WIRE_QUERY_MAX is always enough). Its length, or -1 for a name that is
 * not one (an empty label, a label over 63 bytes, over 255 bytes in all). */
int dns_wire_query(uint8_t *out, size_t size, uint16_t id, const char *name, uint16_t qtype);

/* Reads msg (len bytes, the TCP length prefix left out) as the answer to query (qlen bytes, as
 * dns_wire_query wrote it): the id, the question (name compared without case, type, class) and
 * QR must match, and TC must be clear. Follows the CNAME chain from the name asked within the
 * answer section (DNS_WIRE_CNAME_HOPS at most); keeps records of the asked type owned by a name
 * of that chain. Every read is bounds-checked, compression pointers are followed only backwards,
 * rdlength must fit its type. detail (size bytes) gets the reason for anything but
 * DNS_WIRE_OK. */
enum dns_wire_result dns_wire_answer(const uint8_t *msg, size_t len, const uint8_t *query,
                                     size_t qlen, struct dns_wire_addrs *out, char *detail,
                                     size_t size);

/* The id of a message of len bytes (0 when shorter than an id): to match answers that come in
 * another order than their queries went. */
uint16_t dns_wire_id(const uint8_t *msg, size_t len);

#endif
