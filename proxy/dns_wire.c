/*
 * dns_wire.c — DNS queries and a strict reading of their answers. See dns_wire.h.
 *
 * The answer comes from a nameserver, over a connection anyone on the path could write to: every
 * read is checked against the message's length, a name is decoded into a buffer of the largest
 * legal name, a compression pointer must point before itself, and a name's pointers are at most
 * POINTER_HOPS: a pointer back into its own name's labels still loops, and the hop limit (or the
 * 255-byte limit) ends it. Names are compared in wire form, lowercased.
 */
#include "portico/dns_wire.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define FLAG_QR 0x8000
#define FLAG_OPCODE 0x7800
#define FLAG_TC 0x0200
#define FLAG_RD 0x0100
#define RCODE_MASK 0x000f
#define POINTER_HOPS 64 /* more than a legal name can use (127 labels need fewer) */

static const char *const rcode_names[] = {
    [1] = "FORMERR", [2] = "SERVFAIL", [3] = "NXDOMAIN", [4] = "NOTIMP", [5] = "REFUSED",
};

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void say(char *detail, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *detail, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, size, fmt, ap);
    va_end(ap);
}

uint16_t dns_wire_id(const uint8_t *msg, size_t len)
{
    return len >= 2 ? get16(msg) : 0;
}

int dns_wire_query(uint8_t *out, size_t size, uint16_t id, const char *name, uint16_t qtype)
{
    size_t n = DNS_WIRE_HEADER;
    if (size < DNS_WIRE_QUERY_MAX || !*name)
        return -1;
    memset(out, 0, DNS_WIRE_HEADER);
    put16(out, id);
    put16(out + 2, FLAG_RD);
    put16(out + 4, 1);
    for (const char *label = name; *label;) {
        const char *dot = strchr(label, '.');
        size_t l = dot ? (size_t)(dot - label) : strlen(label);
        if (l == 0 || l > 63 || n - DNS_WIRE_HEADER + l + 2 > DNS_WIRE_NAME_MAX)
            return -1;
        out[n++] = (uint8_t)l;
        memcpy(out + n, label, l);
        n += l;
        label += l + (dot != NULL);
    }
    out[n++] = 0;
    put16(out + n, qtype);
    put16(out + n + 2, DNS_CLASS_IN);
    return (int)(n + 4);
}

/* Decodes the name at msg[off] into name (DNS_WIRE_NAME_MAX bytes, wire form, lowercased),
 * following pointers backwards only. *after: the offset just past it where it began (past its
 * first pointer, if any). Its length, or -1 with why. */
static int read_name(const uint8_t *msg, size_t len, size_t off, uint8_t *name, size_t *after,
                     const char **why)
{
    size_t n = 0;
    unsigned hops = 0;
    bool jumped = false;
    for (;;) {
        if (off >= len) {
            *why = "a name runs past the end";
            return -1;
        }
        uint8_t l = msg[off];
        if ((l & 0xc0) == 0xc0) {
            if (off + 1 >= len) {
                *why = "a compression pointer runs past the end";
                return -1;
            }
            size_t to = (size_t)(get16(msg + off) & 0x3fff);
            if (to >= off) { /* forward, or to itself */
                *why = "a compression pointer that does not point back";
                return -1;
            }
            if (++hops > POINTER_HOPS) {
                *why = "too many compression pointers in a name";
                return -1;
            }
            if (!jumped)
                *after = off + 2;
            jumped = true;
            off = to;
            continue;
        }
        if (l & 0xc0) {
            *why = "a label of a reserved type";
            return -1;
        }
        if (n + 1 + l > DNS_WIRE_NAME_MAX) {
            *why = "a name longer than 255 bytes";
            return -1;
        }
        if (off + 1 + l > len) {
            *why = "a label runs past the end";
            return -1;
        }
        name[n++] = l;
        for (size_t i = 0; i < l; i++) {
            uint8_t ch = msg[off + 1 + i];
            name[n++] = ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch + 32) : ch;
        }
        off += 1 + (size_t)l;
        if (l == 0)
            break;
    }
    if (!jumped)
        *after = off;
    return (int)n;
}

/* One resource record's fixed part. */
struct rr {
    uint8_t owner[DNS_WIRE_NAME_MAX];
    int owner_len;
    uint16_t type;
    uint16_t class;
    uint16_t rdlength;
    size_t rdata;                          /* offset of its data */
};

/* Reads the record at *off and moves past it; checks rdlength against the type (in class IN).
 * 0, or -1 with why. */
static int read_rr(const uint8_t *msg, size_t len, size_t *off, struct rr *rr, const char **why)
{
    size_t p;
    rr->owner_len = read_name(msg, len, *off, rr->owner, &p, why);
    if (rr->owner_len < 0)
        return -1;
    if (p + 10 > len) {
        *why = "a record runs past the end";
        return -1;
    }
    rr->type = get16(msg + p);
    rr->class = get16(msg + p + 2);
    rr->rdlength = get16(msg + p + 8);
    rr->rdata = p + 10;
    if (rr->rdata + rr->rdlength > len) {
        *why = "a record's data runs past the end";
        return -1;
    }
    if (rr->class == DNS_CLASS_IN && ((rr->type == DNS_TYPE_A && rr->rdlength != 4) ||
                                      (rr->type == DNS_TYPE_AAAA && rr->rdlength != 16))) {
        *why = rr->type == DNS_TYPE_A ? "an A record whose length is not 4"
                                      : "an AAAA record whose length is not 16";
        return -1;
    }
    *off = rr->rdata + rr->rdlength;
    return 0;
}

/* The target of a CNAME record into name: the name must fill its data exactly. Its length, or
 * -1 with why. */
static int read_cname(const uint8_t *msg, const struct rr *rr, uint8_t *name, const char **why)
{
    size_t end = rr->rdata + rr->rdlength, after;
    /* the name may point back before the data, but its own bytes end with the data */
    int n = read_name(msg, end, rr->rdata, name, &after, why);
    if (n >= 0 && after != end) {
        *why = "a CNAME record's length does not match its name";
        return -1;
    }
    return n;
}

static bool same_name(const uint8_t *a, int alen, const uint8_t *b, int blen)
{
    return alen == blen && memcmp(a, b, (size_t)alen) == 0;
}

/* One pass over the answer section (ancount records from off): keeps the records of qtype owned
 * by target, and copies target's CNAME target into next (*next_len, 0: none). 0, or -1 with why
 * and the record's number in *bad. */
static int answers_of(const uint8_t *msg, size_t len, size_t off, unsigned ancount,
                      const uint8_t *target, int target_len, uint16_t qtype,
                      struct dns_wire_addrs *out, uint8_t *next, int *next_len, unsigned *bad,
                      const char **why)
{
    *next_len = 0;
    for (unsigned i = 0; i < ancount; i++) {
        struct rr rr;
        *bad = i + 1;
        if (read_rr(msg, len, &off, &rr, why) != 0)
            return -1;
        if (rr.class != DNS_CLASS_IN || !same_name(rr.owner, rr.owner_len, target, target_len))
            continue;
        if (rr.type == DNS_TYPE_CNAME) {
            *next_len = read_cname(msg, &rr, next, why);
            if (*next_len < 0)
                return -1;
        } else if (rr.type == qtype) {
            if (out->n < DNS_WIRE_ADDRS_MAX)
                memcpy(out->a[out->n++], msg + rr.rdata, rr.rdlength);
            out->found++;
        }
    }
    return 0;
}

enum dns_wire_result dns_wire_answer(const uint8_t *msg, size_t len, const uint8_t *query,
                                     size_t qlen, struct dns_wire_addrs *out, char *detail,
                                     size_t size)
{
    const char *why = NULL;
    uint8_t asked[DNS_WIRE_NAME_MAX], got[DNS_WIRE_NAME_MAX];
    size_t qend, off;
    memset(out, 0, sizeof(*out));
    if (len < DNS_WIRE_HEADER) {
        say(detail, size, "an answer of %zu bytes, shorter than a header", len);
        return DNS_WIRE_BAD;
    }
    int asked_len = read_name(query, qlen, DNS_WIRE_HEADER, asked, &qend, &why);
    if (asked_len < 0 || qend + 4 > qlen) {
        say(detail, size, "the query is unusable");
        return DNS_WIRE_BAD;
    }
    uint16_t qtype = get16(query + qend), flags = get16(msg + 2);
    out->type = qtype;
    if (get16(msg) != get16(query)) {
        say(detail, size, "an answer with id %u to the query with id %u", get16(msg),
            get16(query));
        return DNS_WIRE_BAD;
    }
    if (!(flags & FLAG_QR) || (flags & FLAG_OPCODE)) {
        say(detail, size, "not an answer to a standard query (flags 0x%04x)", flags);
        return DNS_WIRE_BAD;
    }
    if (flags & FLAG_TC) {
        say(detail, size, "an answer truncated over TCP too");
        return DNS_WIRE_BAD;
    }
    if (get16(msg + 4) != 1) {
        say(detail, size, "an answer with %u questions, not the one asked", get16(msg + 4));
        return DNS_WIRE_BAD;
    }
    int got_len = read_name(msg, len, DNS_WIRE_HEADER, got, &off, &why);
    if (got_len < 0 || off + 4 > len) {
        say(detail, size, "an unreadable question: %s", got_len < 0 ? why : "it runs past the end");
        return DNS_WIRE_BAD;
    }
    if (!same_name(got, got_len, asked, asked_len) || get16(msg + off) != qtype ||
        get16(msg + off + 2) != DNS_CLASS_IN) {
        say(detail, size, "an answer to another question than the one asked");
        return DNS_WIRE_BAD;
    }
    off += 4;
    unsigned rcode = flags & RCODE_MASK;
    if (rcode == 3) {
        say(detail, size, "no such name (NXDOMAIN)");
        return DNS_WIRE_NXDOMAIN;
    }
    if (rcode) {
        if (rcode < sizeof(rcode_names) / sizeof(rcode_names[0]) && rcode_names[rcode])
            say(detail, size, "the resolver answered %s", rcode_names[rcode]);
        else
            say(detail, size, "the resolver answered rcode %u", rcode);
        return DNS_WIRE_FAILED;
    }
    /* the CNAME chain from the name asked: each pass looks for the current name's records */
    unsigned ancount = get16(msg + 6), bad = 0;
    uint8_t chain[2][DNS_WIRE_NAME_MAX];
    const uint8_t *target = asked;
    int target_len = asked_len;
    for (unsigned hop = 0;; hop++) {
        uint8_t *next = chain[hop & 1];
        int next_len;
        if (answers_of(msg, len, off, ancount, target, target_len, qtype, out, next, &next_len,
                       &bad, &why) != 0) {
            say(detail, size, "answer record %u of %u: %s", bad, ancount, why);
            return DNS_WIRE_BAD;
        }
        if (out->found || !next_len)
            break;
        if (hop == DNS_WIRE_CNAME_HOPS) {
            say(detail, size, "a CNAME chain longer than %d", DNS_WIRE_CNAME_HOPS);
            return DNS_WIRE_BAD;
        }
        target = next;
        target_len = next_len;
    }
    return DNS_WIRE_OK;
}
