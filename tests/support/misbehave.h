/*
 * misbehave.h — what the failure tests need to make an origin fail for real on loopback: one
 * world of misbehaving origins (one per kind of the failure taxonomy) and the fake DNS server;
 * a request body streamed until the proxy answers (send timeouts and errors); an ICMP "host
 * unreachable" router for connects (connect_unreachable); one request that provokes a case.
 *
 * The router plays a router on the loopback interface: a raw socket sees the SYN to a blackholed
 * port and answers it with ICMP destination unreachable, which the kernel turns into
 * EHOSTUNREACH for the connect. It needs CAP_NET_RAW: without it mb_icmp_open fails (errno
 * EPERM) and callers skip the case with a message.
 */
#ifndef PORTICO_MISBEHAVE_H
#define PORTICO_MISBEHAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fake_dns.h"
#include "fake_origin.h"
#include "raw_client.h"

/* ---- the world: one origin per misbehaviour, and the fake DNS ---- */

enum mb_origin {
    MB_OK,             /* answers 200; also the port of the DNS cases (never contacted there) */
    MB_REFUSE,         /* nothing listens: RST to the SYN */
    MB_BLACKHOLE,      /* listen(fd, 0), backlog full, never accepted: the connect hangs */
    MB_UNREACH,        /* a second blackhole, whose SYNs the test answers with ICMP (below) */
    MB_TLS_GARBAGE,    /* plain text in answer to the ClientHello */
    MB_TLS_SILENT,     /* accepts and reads, never speaks TLS */
    MB_CERT_SELF,      /* TLS with a self-signed certificate (certs_get) */
    MB_NO_READ,        /* never reads: a large request body stalls */
    MB_RST_AFTER_HEAD, /* resets right after the request head, while its body streams */
    MB_SILENT,         /* reads the request, never answers */
    MB_PARTIAL_HEAD,   /* half a response head, then silence */
    MB_CLOSE_EMPTY,    /* FIN without a byte */
    MB_RESET,          /* RST instead of a response */
    MB_GARBAGE,        /* answers bytes that are not HTTP */
    MB_ORIGIN_COUNT
};

#define MB_MAX_ORIGINS 32 /* the catalog plus a test's own origins */

struct mb_world {
    struct fake_origin *origin[MB_MAX_ORIGINS]; /* by enum mb_origin, then the test's indexes */
    uint16_t port[MB_MAX_ORIGINS];              /* their ports on 127.0.0.1 */
    struct fake_dns *dns;                       /* answering (FAKE_DNS_ANSWER) until told */
};

/* Starts one origin of every enum mb_origin kind (MB_OK's body is ok_body; NULL: fake_origin's
 * "ok\n"), then the test's own origins more[MB_ORIGIN_COUNT .. n) at those indexes (rows below
 * MB_ORIGIN_COUNT are not read, so a test's table is indexed by its own enum), then the fake
 * DNS server. 0, or -1 (what failed is on stderr; mb_world_stop cleans up either way). */
int mb_world_start(struct mb_world *w, const char *ok_body, const struct fake_origin_opts *more,
                   size_t n);

/* Stops every origin and the DNS server, and zeroes w. */
void mb_world_stop(struct mb_world *w);

/* A config in memory (open_memstream: *text once f is closed, the caller frees it), begun
 * with the [proxy] section the failure tests share: listen and admin_listen placeholders, an
 * access log in the temp dir, 2 workers, the fake DNS at dns_port, every timer far above each
 * case's own (so a wrong timer shows), then proxy_lines. NULL when the stream did not open. */
FILE *mb_conf_open(char **text, size_t *len, uint16_t dns_port, const char *proxy_lines);

/* TLS to an origin, verified against the test CA: [upstream] lines. */
#define MB_CONF_TLS_CA "tls = on\nca_file = {{certs}}/ca.pem\n"

/* Writes one case's [upstream NAME] (origin HOST:port, HOST NULL: 127.0.0.1; then the extra
 * lines) and its [route NAME] (prefix /NAME/) to f. */
void mb_conf_case(FILE *f, const char *name, const char *host, uint16_t port, const char *extra);

/* Streams up to len body bytes on c's socket until the peer answers (the socket turns
 * readable), so the client never sits blocked in send while the answer is already there.
 * Returns the bytes sent. */
size_t mb_stream_body(struct raw_conn *c, size_t len, int timeout_ms);

struct mb_icmp_router {
    int tcp;  /* raw IPPROTO_TCP: sees every TCP segment on the host, SYNs included */
    int icmp; /* raw IPPROTO_ICMP: sends the unreachable messages */
};

/* Opens the sockets; the TCP one only queues SYNs to `port` (a classic BPF filter), so that
 * other loopback traffic on the machine cannot overflow its buffer and hide the SYN. 0, or -1
 * with errno. */
int mb_icmp_open(struct mb_icmp_router *ir, uint16_t port);

void mb_icmp_close(struct mb_icmp_router *ir);

/* Whether this process may play the router (CAP_NET_RAW): opens and closes one for port;
 * when not, errno says why. */
bool mb_icmp_available(uint16_t port);

/* Until c turns readable (or timeout): every SYN from 127.0.0.1 to 127.0.0.1:port gets an ICMP
 * destination unreachable, code 1 (host), quoting its IP header and first 8 TCP bytes, as a
 * router would send. Every SYN, not only the first: a blackhole's own filler connect retransmits
 * its SYN to the same port. Returns the number of messages sent. */
unsigned mb_icmp_answer_syns(struct mb_icmp_router *ir, uint16_t port, struct raw_conn *c,
                             int timeout_ms);

/* ---- one request that provokes a failure ---- */

enum mb_how {
    MB_GET,   /* the request alone */
    MB_BODY,  /* a POST whose body is streamed until the answer (mb_stream_body) */
    MB_ICMP,  /* the request; every SYN to the origin port gets ICMP host unreachable */
    MB_TWICE, /* a first request (sent by the test) marks the only origin down; then MB_GET */
};

/* The failure tests' request head for route /route/ into buf: GET /route/x with
 * Connection: close, or for MB_BODY a POST announcing body_len bytes; JSON accepted. */
const char *mb_head(char *buf, size_t size, enum mb_how how, const char *route, size_t body_len);

struct mb_request {
    const char *head;   /* sent as is */
    enum mb_how how;    /* MB_TWICE is sent as MB_GET */
    size_t body_len;    /* MB_BODY: body bytes offered, as the head announces */
    uint16_t icmp_port; /* MB_ICMP: the blackholed origin port whose SYNs are answered */
    int timeout_ms;     /* bound of each step: the body, the router, the response */
};

struct mb_reply {
    struct raw_response r; /* raw_response_free it, whatever mb_provoke returned */
    int64_t elapsed_ms;    /* from the head's send to the response's first byte */
    size_t body_sent;      /* MB_BODY: body bytes that went out before the answer */
};

/* Sends req->head on c, then by req->how streams the body or plays the ICMP router (opened
 * before the send: the proxy connects once it has the head), then reads the response. 0, or -1
 * with out->r.error saying why: the router did not open (no CAP_NET_RAW: see
 * mb_icmp_available), the send failed, no SYN was answered, no response came. */
int mb_provoke(struct raw_conn *c, const struct mb_request *req, struct mb_reply *out);

#endif
