/*
 * proxyproto.h — the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that
 * a layer-4 balancer sends ahead of a connection's own bytes to say whose connection it is, and
 * the accept stage of a `listen ... proxy_protocol` address that reads it (proxyproto_accept).
 *
 * The parser is pure (no I/O): it is given the bytes received so far and says whether they hold
 * a whole header, and how long it is, so that exactly the header is taken from the socket and
 * what follows (a request head, a TLS ClientHello, an HTTP/2 preface) stays for its parser.
 */
#ifndef PORTICO_PROXYPROTO_H
#define PORTICO_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "portico/client.h"
#include "portico/metrics.h" /* enum pp_error */

struct loop;

/* Version 1: one text line, at most this long with its CRLF (the specification's bound). */
#define PP_V1_MAX 107
/* Version 2: the 16-byte fixed part and the address block with its TLVs; a header longer than
 * this in all is refused as oversized (the TLVs balancers send, AWS's VPC endpoint id, Azure's
 * link id, an ALPN or an authority, fit many times over). */
#define PP_V2_FIXED 16
#define PP_HEADER_MAX 4096

/* What a header says. */
struct pp_header {
    int version;                       /* 1 or 2 */
    bool has_source;                   /* a TCP source over IPv4 or IPv6: `source` is the
                                          client; else (v1 UNKNOWN, v2 LOCAL, another family or
                                          transport) the socket's own peer is */
    struct sockaddr_storage source;    /* AF_INET or AF_INET6, with the port */
    socklen_t source_len;
};

/* Parses the first len bytes received on a connection. Returns the header's length (> 0) when
 * they hold a whole header, filling *h (the bytes after it are not the header's); 0 when they
 * are a beginning of one and more must come; -1 when they cannot begin one, setting *err. */
int pp_parse(const unsigned char *p, size_t len, struct pp_header *h, enum pp_error *err);

/* A connection accepted on a proxy_protocol listener: its header is read (at once when it is
 * there, else as it comes, within client_header_timeout from now), taken from the socket exactly,
 * and the connection then goes to client_new_at as the header's source (the socket's own peer sa
 * for LOCAL and UNKNOWN), as if accepted from it. One that sends no valid header in time is
 * closed without a byte of answer, counted and logged (log_client). It counts as a connection
 * of the loop meanwhile (loop_conn_opened: max_connections, a drain waits for it). */
void proxyproto_accept(struct loop *l, int fd, const struct sockaddr *sa, bool tls,
                       enum client_kind kind);

/* Closes the connections still waiting for their header (the loop stops). */
void proxyproto_close_all(struct loop *l);

#endif
