/*
 * fake_dns.h — a UDP DNS server on 127.0.0.1 (port chosen by the kernel) for resolver tests, with
 * its own thread; on the same port over TCP too (RFC 7766), for answers too long for UDP.
 * Answers in proper wire format (question copied, QR/AA/RA set, RD and the id echoed) so
 * libevent's evdns accepts it. Also a tiny client for checking it without the system resolver.
 */
#ifndef PORTICO_FAKE_DNS_H
#define PORTICO_FAKE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fake_dns_mode {
    FAKE_DNS_ANSWER,   /* NOERROR; A 127.0.0.1 for any name (NODATA if opts.no_a), AAAA ::1
                        * if opts.aaaa else NODATA */
    FAKE_DNS_NXDOMAIN, /* rcode 3 */
    FAKE_DNS_SERVFAIL, /* rcode 2 */
    FAKE_DNS_SILENT,   /* reads and counts queries, never answers */
};

/* What the TCP side of the port does (RFC 7766: each message after a 2-byte length). */
enum fake_dns_tcp {
    FAKE_DNS_TCP_OFF,       /* the port is bound, never listening: a connect is refused (RST) */
    FAKE_DNS_TCP_ANSWER,    /* answers each query as UDP would, never truncated */
    FAKE_DNS_TCP_CLOSE,     /* reads a query, closes without answering */
    FAKE_DNS_TCP_SILENT,    /* reads queries, never answers, keeps the connection */
    FAKE_DNS_TCP_MALFORMED, /* answers with the first record's name a compression pointer to
                             * itself (a loop); an answer without records as TCP_ANSWER */
    FAKE_DNS_TCP_PIECES,    /* as TCP_ANSWER, each answer in three sends 5 ms apart: one byte of
                             * its length, then all but its last two bytes, then those */
    FAKE_DNS_TCP_TWICE,     /* as TCP_ANSWER, each answer sent twice */
    FAKE_DNS_TCP_NXDOMAIN_A, /* as TCP_ANSWER, but the A answer is NXDOMAIN (no records) while
                             * the AAAA one is not */
    FAKE_DNS_TCP_MALFORMED_LAST, /* as TCP_MALFORMED, but the last record (of 16 bytes, as
                             * every A record of this server is) is the one pointing to itself */
};

struct fake_dns_opts {
    enum fake_dns_mode mode;
    bool aaaa;    /* FAKE_DNS_ANSWER: answer AAAA queries with ::1 (else empty NOERROR) */
    bool no_a;    /* FAKE_DNS_ANSWER: A queries get an empty NOERROR (a name with IPv6 addresses
                   * only, with aaaa) */
    uint32_t ttl; /* TTL of answers in seconds; 0 means 60 */
    int delay_ms; /* each reply leaves this long after its query came (queries meanwhile are
                   * read and counted; at most FAKE_DNS_MAX_PENDING wait at once, more are
                   * answered at once); 0: at once */
    const char *zone; /* set: only names ending in it (case-insensitive) get the mode's answer,
                       * every other name gets NXDOMAIN (e.g. a search domain's names only;
                       * FAKE_DNS_SILENT stays silent for all);
                       * borrowed until fake_dns_stop */
    bool ipv6;    /* listen on [::1] instead of 127.0.0.1 (resolver = [::1]:port) */
    unsigned a_records; /* FAKE_DNS_ANSWER: A records (all 127.0.0.1) in an A answer; 0 means 1.
                         * Over UDP an answer above 512 bytes (30 of them for a name of 20
                         * bytes) goes with TC set and the question only, as nameservers do */
    enum fake_dns_tcp tcp; /* the TCP side (default: refused) */
    unsigned answer_first; /* set: only the first this many UDP queries are answered (as the
                            * mode says); later ones are read and counted, never answered: a
                            * second round that dns_timeout ends, with no clock in the test */
};

#define FAKE_DNS_MAX_PENDING 32
#define FAKE_DNS_MAX_A 200 /* opts.a_records at most (a 3.2 KB answer) */
#define FAKE_DNS_MAX_TCP 64 /* TCP connections served at once; more are closed at once */

struct fake_dns;

/* Starts the server (opts NULL = answer mode). NULL on error. */
struct fake_dns *fake_dns_start(const struct fake_dns_opts *opts);

/* The UDP port it listens on (127.0.0.1, or ::1 with opts.ipv6). */
uint16_t fake_dns_port(const struct fake_dns *d);

/* Changes the mode for the following queries (thread-safe). */
void fake_dns_set_mode(struct fake_dns *d, enum fake_dns_mode mode);

/* Number of queries received so far, answered or not (thread-safe). */
unsigned fake_dns_queries(struct fake_dns *d);

/* Waits until at least n queries were received or timeout_ms passed. 0 or -1 (timeout). */
int fake_dns_wait_queries(struct fake_dns *d, unsigned n, int timeout_ms);

/* Queries received over TCP so far (thread-safe). */
unsigned fake_dns_tcp_queries(struct fake_dns *d);

/* Waits until at least n queries came over TCP. 0 or -1 (timeout). */
int fake_dns_wait_tcp_queries(struct fake_dns *d, unsigned n, int timeout_ms);

/* Waits until every TCP connection accepted so far was closed by its peer (the resolver under
 * test let go of it). 0 or -1 (timeout). */
int fake_dns_wait_tcp_closed(struct fake_dns *d, int timeout_ms);

/* Copies the name of the last query ("a.example", no trailing dot) into buf. 0, or -1 if none. */
int fake_dns_last_name(struct fake_dns *d, char *buf, size_t size);

/* The source port of the last query (the resolver's socket), 0 if none. */
uint16_t fake_dns_last_client_port(struct fake_dns *d);

/* Stops the thread, closes the socket, frees d (NULL is fine). */
void fake_dns_stop(struct fake_dns *d);

/* Result of fake_dns_query. */
struct fake_dns_reply {
    int rcode;       /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN ... */
    uint16_t id;     /* id of the reply, equal to the query's */
    unsigned ancount; /* answer records */
    bool aa;         /* authoritative flag */
    bool tc;         /* truncated: the answer did not fit UDP */
    char addr[64];   /* first A/AAAA answer as text ("127.0.0.1", "::1"), "" if none */
};

/* Sends one query (qtype 1 = A, 28 = AAAA) to 127.0.0.1:port and waits up to timeout_ms for the
 * reply. 0 with *reply filled, -1 on error or timeout. */
int fake_dns_query(uint16_t port, const char *name, uint16_t qtype, int timeout_ms,
                   struct fake_dns_reply *reply);

#endif
