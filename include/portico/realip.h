/*
 * realip.h — the client's address behind trusted proxies ([proxy] real_ip): a request whose
 * peer is one of trusted_proxies is from the address that peer names in the real_ip field, as
 * nginx's realip module (set_real_ip_from, real_ip_header, real_ip_recursive on) and HAProxy's
 * `http-request set-src hdr_ip(x-forwarded-for,-1)` make it. The access log's client, fault
 * rules' client and header_control_clients take that address; the peer stays in the log.
 */
#ifndef PORTICO_REALIP_H
#define PORTICO_REALIP_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/config.h"
#include "portico/fault.h"
#include "portico/http1.h"

/* addr as text ("127.0.0.1", "::1") into buf (INET6_ADDRSTRLEN bytes). Returns buf. */
const char *realip_text(const struct fault_addr *addr, char *buf, size_t size);

/*
 * One list element of a real_ip field as an address: an IPv4 or IPv6 literal, with an optional
 * port of 0 to 65535 ("127.0.0.1:80", "[::1]:80", "[::1]"), OWS around it ignored. forwarded:
 * the element is a Forwarded one (RFC 7239), whose for= parameter (a token or quoted-string) is
 * the address, IPv6 only in brackets. 0 with *out, or -1: not an address ("unknown", an
 * obfuscated "_x" identifier, no for=, two for=, a port above 65535, garbage).
 */
int realip_element(const char *s, size_t n, bool forwarded, struct fault_addr *out);

/* What realip_find made of a request's fields. */
enum realip_result {
    REALIP_NONE,    /* no such field, or only empty elements: the peer is the client */
    REALIP_FOUND,   /* *out is the client */
    REALIP_INVALID, /* the element that would be the client is not an address: the peer's
                       address is kept (nothing left of it is trusted) */
};

/*
 * The client named in the field of the request's fields: of all fields of that name, in order,
 * read as one list, the right-most element that is not in trusted (each proxy appends the
 * address it was reached from, and only those up to the first untrusted one speak for what is
 * left of them); when every element is trusted, the left-most. Linear in the fields' bytes.
 */
enum realip_result realip_find(const struct h1_field *fields, size_t nfields,
                               enum real_ip_field field, const struct fault_cidr *trusted,
                               int ntrusted, struct fault_addr *out);

#endif
