/*
 * ticket.h — the TLS session ticket keys of the process (RFC 5077 / RFC 8446 4.6.1), shared by
 * the server context of every configuration generation and every worker, so that a ticket
 * survives a reload. A new encrypting key every rotation period, computed from the clock when
 * a ticket is made or read (no timer); older keys still decrypt, and ask for a new ticket,
 * until every ticket they made has expired; then they are wiped.
 */
#ifndef PORTICO_TICKET_H
#define PORTICO_TICKET_H

#include <stdint.h>

#define TICKET_NAME_LEN 16 /* the key name that opens each ticket (OpenSSL's layout) */
#define TICKET_DEFAULT_ROTATION_MS (UINT64_C(3600) * 1000)

/* One key: AES-256-CBC encrypts, HMAC-SHA256 authenticates. */
struct ticket_key {
    unsigned char name[TICKET_NAME_LEN];
    unsigned char aes[32];
    unsigned char hmac[32];
};

/* What ticket_find says of a ticket's key name (the callback's contract, RFC 5077 4). */
enum ticket_found {
    TICKET_UNKNOWN = 0,          /* no such key (never ours, or dropped): full handshake */
    TICKET_CURRENT = 1,          /* the encrypting key */
    TICKET_RENEW = 2,            /* an older key still kept: resume, and issue a new ticket */
};

/* How long a ticket is valid: twice the rotation period (clients are told it in whole seconds,
 * rounded up). A key encrypts for one period and is kept for this after: three from its birth. */
uint64_t ticket_lifetime_ms(uint64_t rotation_ms);

/* The key for a new ticket at now_ms (a clock that only goes forward; ticket.c's counts a
 * suspend), into *out (the caller wipes it): a new key once the current one is rotation_ms old.
 * 0, or -1 when no random key could be made. */
int ticket_current(uint64_t now_ms, uint64_t rotation_ms, struct ticket_key *out);

/* The key named name at now_ms into *out (filled unless TICKET_UNKNOWN; the caller wipes it). */
enum ticket_found ticket_find(const unsigned char *name, uint64_t now_ms, uint64_t rotation_ms,
                              struct ticket_key *out);

/* How many keys are held (tests). */
unsigned ticket_count(void);

/* Wipes and drops every key (at exit). */
void ticket_wipe_all(void);

/* Makes an SSL_CTX (a server's) issue and read tickets with these keys, rotated every
 * rotation_ms, and sets its session lifetime to match. */
void ticket_use(void *ssl_ctx, uint64_t rotation_ms);

#endif
