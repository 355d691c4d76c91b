/*
 * misbehave.h — client-side tricks the failure tests need to make an origin fail for real on
 * loopback: a request body streamed until the proxy answers (send timeouts and errors), and an
 * ICMP "host unreachable" router for connects (connect_unreachable).
 *
 * The router plays a router on the loopback interface: a raw socket sees the SYN to a blackholed
 * port and answers it with ICMP destination unreachable, which the kernel turns into
 * EHOSTUNREACH for the connect. It needs CAP_NET_RAW: without it mb_icmp_open fails (errno
 * EPERM) and callers skip the case with a message.
 */
#ifndef PORTICO_MISBEHAVE_H
#define PORTICO_MISBEHAVE_H

#include <stddef.h>
#include <stdint.h>

#include "raw_client.h"

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

/* Until c turns readable (or timeout): every SYN from 127.0.0.1 to 127.0.0.1:port gets an ICMP
 * destination unreachable, code 1 (host), quoting its IP header and first 8 TCP bytes, as a
 * router would send. Every SYN, not only the first: a blackhole's own filler connect retransmits
 * its SYN to the same port. Returns the number of messages sent. */
unsigned mb_icmp_answer_syns(struct mb_icmp_router *ir, uint16_t port, struct raw_conn *c,
                             int timeout_ms);

#endif
