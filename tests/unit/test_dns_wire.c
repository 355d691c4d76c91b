/*
 * test_dns_wire.c — dns_wire_query and the strict reading of an answer over TCP: good answers
 * (plain, CNAME chains, 1000 records), and hostile ones that must fail with a detail and never
 * read past the message: each message is copied to the end of a heap block of its exact size,
 * so ASan catches a read one byte past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/dns_wire.h"

#define ID 0x1234

/* A message under construction. */
struct msg {
    uint8_t b[70000];
    size_t n;
};

static void put8(struct msg *m, unsigned v)
{
    m->b[m->n++] = (uint8_t)v;
}

static void put16(struct msg *m, unsigned v)
{
    put8(m, v >> 8);
    put8(m, v & 0xff);
}

/* "a.b" as labels, uncompressed. */
static void put_name(struct msg *m, const char *name)
{
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        put8(m, (unsigned)l);
        memcpy(m->b + m->n, p, l);
        m->n += l;
        p += l + (dot != NULL);
    }
    put8(m, 0);
}

/* Header (NOERROR unless rcode) and the question of name/qtype; ancount as given. */
static void header(struct msg *m, unsigned id, unsigned flags, unsigned ancount, const char *name,
                   unsigned qtype)
{
    m->n = 0;
    put16(m, id);
    put16(m, flags);
    put16(m, 1);
    put16(m, ancount);
    put16(m, 0);
    put16(m, 0);
    put_name(m, name);
    put16(m, qtype);
    put16(m, DNS_CLASS_IN);
}

/* A record of type with rdlength len: owner a pointer to offset ptr (0: the question's name). */
static void rr_ptr(struct msg *m, unsigned ptr, unsigned type, unsigned len, const uint8_t *data)
{
    put16(m, 0xc000 | (ptr ? ptr : DNS_WIRE_HEADER));
    put16(m, type);
    put16(m, DNS_CLASS_IN);
    put16(m, 0);
    put16(m, 60);
    put16(m, len);
    if (data) {
        memcpy(m->b + m->n, data, len);
        m->n += len;
    }
}

static const uint8_t v4[4] = {127, 0, 0, 1};
static const uint8_t v6[16] = {[15] = 1};

/* Reads m as the answer to a query for name/qtype, from a heap copy of its exact size. */
static enum dns_wire_result answer(const struct msg *m, const char *name, unsigned qtype,
                                   struct dns_wire_addrs *out, char *detail, size_t size)
{
    uint8_t query[DNS_WIRE_QUERY_MAX];
    int qlen = dns_wire_query(query, sizeof(query), ID, name, (uint16_t)qtype);
    assert_true(qlen > 0);
    uint8_t *copy = malloc(m->n ? m->n : 1);
    assert_non_null(copy);
    memcpy(copy, m->b, m->n);
    enum dns_wire_result res = dns_wire_answer(copy, m->n, query, (size_t)qlen, out, detail, size);
    free(copy);
    return res;
}

static void test_query(void **state)
{
    (void)state;
    uint8_t q[DNS_WIRE_QUERY_MAX];
    static const uint8_t want[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                                   3, 'a', 'p', 'i', 4, 't', 'e', 's', 't', 0, 0, 28, 0, 1};
    assert_int_equal(dns_wire_query(q, sizeof(q), ID, "api.test", DNS_TYPE_AAAA), sizeof(want));
    assert_memory_equal(q, want, sizeof(want));
    /* a final dot is the same name */
    assert_int_equal(dns_wire_query(q, sizeof(q), ID, "api.test.", DNS_TYPE_AAAA), sizeof(want));
    assert_memory_equal(q, want, sizeof(want));
    char long_label[80];
    memset(long_label, 'x', 64);
    long_label[64] = '\0';
    char long_name[300];
    for (int i = 0; i < 60; i++)
        memcpy(long_name + i * 5, "abcd.", 5);
    long_name[299] = '\0';
    const char *const bad[] = {"", ".", "a..b", ".a", long_label, long_name};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dns_wire_query(q, sizeof(q), ID, bad[i], DNS_TYPE_A), -1);
    assert_int_equal(dns_wire_query(q, 10, ID, "a", DNS_TYPE_A), -1); /* no room */
}

/* 40 A records for the name asked, the case of the question changed: all found, 8 kept. */
static void test_many_records(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    struct dns_wire_addrs a;
    char why[160];
    header(m, ID, 0x8180, 40, "Many.Portico.TEST", DNS_TYPE_A);
    for (int i = 0; i < 40; i++)
        rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
    assert_int_equal(answer(m, "many.portico.test", DNS_TYPE_A, &a, why, sizeof(why)),
                     DNS_WIRE_OK);
    assert_int_equal(a.found, 40);
    assert_int_equal(a.n, DNS_WIRE_ADDRS_MAX);
    assert_memory_equal(a.a[7], v4, 4);
    /* 1000 AAAA records: 1000 * 28 bytes, over a UDP reply's 512 many times */
    header(m, ID, 0x8180, 1000, "many.portico.test", DNS_TYPE_AAAA);
    for (int i = 0; i < 1000; i++)
        rr_ptr(m, 0, DNS_TYPE_AAAA, 16, v6);
    assert_int_equal(answer(m, "many.portico.test", DNS_TYPE_AAAA, &a, why, sizeof(why)),
                     DNS_WIRE_OK);
    assert_int_equal(a.found, 1000);
    assert_int_equal(a.n, DNS_WIRE_ADDRS_MAX);
    assert_memory_equal(a.a[0], v6, 16);
    free(m);
}

/* www -> edge (CNAME, target written out) -> lb (CNAME, compressed): the A records of lb are
 * kept; an A record of an unrelated name is not. */
static void test_cname_chain(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    struct dns_wire_addrs a;
    char why[160];
    header(m, ID, 0x8180, 4, "www.test", DNS_TYPE_A);
    /* other.test A 127.0.0.1: not of the chain (kept, it would make a.n 2) */
    put_name(m, "other.test");
    put16(m, DNS_TYPE_A), put16(m, 1), put16(m, 0), put16(m, 60), put16(m, 4);
    memcpy(m->b + m->n, v4, 4), m->n += 4;
    /* www.test CNAME edge.test */
    rr_ptr(m, 0, DNS_TYPE_CNAME, 11, NULL);
    size_t edge_at = m->n;
    put_name(m, "edge.test");
    /* edge.test CNAME lb.<test>: "lb" then a pointer to "test" of the question (offset 16) */
    rr_ptr(m, (unsigned)edge_at, DNS_TYPE_CNAME, 5, NULL);
    size_t lb_at = m->n;
    put8(m, 2), put8(m, 'l'), put8(m, 'b'), put16(m, 0xc000 | 16);
    /* lb.test A 127.0.0.1 */
    rr_ptr(m, (unsigned)lb_at, DNS_TYPE_A, 4, v4);
    assert_int_equal(answer(m, "www.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.n, 1);
    assert_memory_equal(a.a[0], v4, 4);
    free(m);
}

/* A CNAME loop (a -> a) ends at the hop limit; a chain that ends without an address is an
 * answer without addresses. */
static void test_cname_limits(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    struct dns_wire_addrs a;
    char why[160];
    header(m, ID, 0x8180, 1, "a.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_CNAME, 2, NULL);
    put16(m, 0xc000 | DNS_WIRE_HEADER); /* a.test CNAME a.test */
    assert_int_equal(answer(m, "a.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_BAD);
    assert_non_null(strstr(why, "CNAME chain longer than 8"));
    header(m, ID, 0x8180, 1, "a.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_CNAME, 8, NULL);
    put_name(m, "b.test");
    assert_int_equal(answer(m, "a.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.n, 0);
    /* c0 -> c1 -> ... -> cN, then cN A: DNS_WIRE_CNAME_HOPS CNAMEs are followed, one more is not */
    for (unsigned hops = DNS_WIRE_CNAME_HOPS; hops <= DNS_WIRE_CNAME_HOPS + 1; hops++) {
        header(m, ID, 0x8180, hops + 1, "c0.test", DNS_TYPE_A);
        for (unsigned i = 0; i < hops; i++) {
            char owner[24], target[24];
            snprintf(owner, sizeof(owner), "c%u.test", i);
            snprintf(target, sizeof(target), "c%u.test", i + 1);
            put_name(m, owner);
            put16(m, DNS_TYPE_CNAME), put16(m, DNS_CLASS_IN), put16(m, 0), put16(m, 60);
            put16(m, (unsigned)strlen(target) + 2);
            put_name(m, target);
        }
        char last[24];
        snprintf(last, sizeof(last), "c%u.test", hops);
        put_name(m, last);
        put16(m, DNS_TYPE_A), put16(m, DNS_CLASS_IN), put16(m, 0), put16(m, 60), put16(m, 4);
        memcpy(m->b + m->n, v4, 4), m->n += 4;
        enum dns_wire_result res = answer(m, "c0.test", DNS_TYPE_A, &a, why, sizeof(why));
        if (hops == DNS_WIRE_CNAME_HOPS) {
            assert_int_equal(res, DNS_WIRE_OK);
            assert_int_equal(a.n, 1);
        } else {
            assert_int_equal(res, DNS_WIRE_BAD);
            assert_non_null(strstr(why, "CNAME chain longer than 8"));
        }
    }
    free(m);
}

/* A name of 255 bytes, the most RFC 1035 allows (its root label included), is read. */
static void test_longest_name(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    struct dns_wire_addrs a;
    char why[160] = "";
    header(m, ID, 0x8180, 2, "h.test", DNS_TYPE_A);
    for (int i = 0; i < 127; i++) /* 127 labels of 1: 254 bytes, and the root's */
        put8(m, 1), put8(m, 'x');
    put8(m, 0);
    put16(m, DNS_TYPE_A), put16(m, DNS_CLASS_IN), put16(m, 0), put16(m, 60), put16(m, 4);
    memcpy(m->b + m->n, "\x0a\x06\x06\x06", 4), m->n += 4;
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
    assert_int_equal(answer(m, "h.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.n, 1); /* h.test's: the long name's record is another name's */
    assert_memory_equal(a.a[0], v4, 4);
    free(m);
}

/* A record of type with rdlength len, its owner written out. */
static void rr_named(struct msg *m, const char *owner, unsigned type, unsigned len,
                     const uint8_t *data)
{
    put_name(m, owner);
    put16(m, type), put16(m, DNS_CLASS_IN), put16(m, 0), put16(m, 60), put16(m, len);
    memcpy(m->b + m->n, data, len), m->n += len;
}

static const uint8_t planted[4] = {10, 6, 6, 6};

/* Cache-poisoning shapes: addresses an answer offers for the name asked outside the answer
 * section, or for names off its CNAME chain, are never kept; the name's own records are found
 * whatever their case (0x20). */
static void test_poisoning(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    struct dns_wire_addrs a;
    char why[160];
    /* the answer: other.test A; the additional section: h.test A (arcount 1) */
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    m->b[11] = 1;
    rr_named(m, "other.test", DNS_TYPE_A, 4, planted);
    rr_named(m, "h.test", DNS_TYPE_A, 4, planted);
    assert_int_equal(answer(m, "h.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.found, 0);
    /* the same in the authority section (nscount 1) */
    m->b[11] = 0, m->b[9] = 1;
    assert_int_equal(answer(m, "h.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.found, 0);
    /* h CNAME x, x CNAME h: out and back, with an A of a name that is not on the chain */
    header(m, ID, 0x8180, 3, "h.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_CNAME, 8, NULL);
    size_t x_at = m->n;
    put_name(m, "x.test");
    rr_ptr(m, (unsigned)x_at, DNS_TYPE_CNAME, 2, NULL);
    put16(m, 0xc000 | DNS_WIRE_HEADER);
    rr_named(m, "y.test", DNS_TYPE_A, 4, planted);
    assert_int_equal(answer(m, "h.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_BAD);
    assert_string_equal(why, "a CNAME chain longer than 8");
    assert_int_equal(a.found, 0);
    /* an A of the name in another case, before it a CNAME of another name: the A is kept */
    header(m, ID, 0x8180, 2, "H.tEsT", DNS_TYPE_A);
    rr_named(m, "z.test", DNS_TYPE_CNAME, 8, (const uint8_t *)"\1h\4test");
    rr_named(m, "h.TEST", DNS_TYPE_A, 4, v4);
    assert_int_equal(answer(m, "h.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.n, 1);
    assert_memory_equal(a.a[0], v4, 4);
    /* an A of class CH (3) for the name: not an address */
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_named(m, "h.test", DNS_TYPE_A, 4, planted);
    m->b[m->n - 11] = 3; /* the class's low byte: CH */
    assert_int_equal(answer(m, "h.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_OK);
    assert_int_equal(a.found, 0);
    free(m);
}

/* rcodes: NXDOMAIN, and the others named. */
static void test_rcodes(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    struct dns_wire_addrs a;
    char why[160];
    header(m, ID, 0x8183, 0, "nx.test", DNS_TYPE_A);
    assert_int_equal(answer(m, "nx.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_NXDOMAIN);
    header(m, ID, 0x8182, 0, "sf.test", DNS_TYPE_A);
    assert_int_equal(answer(m, "sf.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_FAILED);
    assert_string_equal(why, "the resolver answered SERVFAIL");
    header(m, ID, 0x818b, 0, "x.test", DNS_TYPE_A);
    assert_int_equal(answer(m, "x.test", DNS_TYPE_A, &a, why, sizeof(why)), DNS_WIRE_FAILED);
    assert_string_equal(why, "the resolver answered rcode 11");
    free(m);
}

/* Hostile answers: each fails with its detail (and no read past the end, under ASan). */
struct hostile_row {
    const char *why;
    void (*build)(struct msg *m);
    const char *detail;
};

static void wrong_id(struct msg *m)
{
    header(m, ID + 1, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
}

static void wrong_name(struct msg *m)
{
    header(m, ID, 0x8180, 1, "other.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
}

static void wrong_type(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_AAAA);
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
}

static void two_questions(struct msg *m)
{
    header(m, ID, 0x8180, 0, "h.test", DNS_TYPE_A);
    m->b[5] = 2;
}

static void not_an_answer(struct msg *m)
{
    header(m, ID, 0x0100, 0, "h.test", DNS_TYPE_A); /* QR clear: a query */
}

static void inverse_query(struct msg *m)
{
    header(m, ID, 0x8980, 0, "h.test", DNS_TYPE_A); /* QR set, opcode 1 (IQUERY) */
}

static void truncated_flag(struct msg *m)
{
    header(m, ID, 0x8380, 0, "h.test", DNS_TYPE_A);
}

static void short_header(struct msg *m)
{
    header(m, ID, 0x8180, 0, "h.test", DNS_TYPE_A);
    m->n = 11;
}

static void question_cut(struct msg *m)
{
    header(m, ID, 0x8180, 0, "h.test", DNS_TYPE_A);
    m->n -= 3; /* in the question's type and class */
}

static void pointer_loop(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_ptr(m, (unsigned)m->n, DNS_TYPE_A, 4, v4); /* the owner points at itself */
}

static void pointer_forward(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_ptr(m, (unsigned)m->n + 20, DNS_TYPE_A, 4, v4);
    put_name(m, "h.test");
}

static void pointer_cut(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    put8(m, 0xc0); /* the pointer's second byte missing */
}

static void reserved_label(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    put8(m, 0x41);
}

static void rr_cut(struct msg *m)
{
    header(m, ID, 0x8180, 2, "h.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
    m->n -= 7; /* the second record: its fixed part only */
}

static void rdata_past_end(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
    m->n -= 1;
}

static void a_rdlength(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_A, 5, (const uint8_t *)"\x7f\0\0\1\1");
}

static void aaaa_rdlength(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_AAAA);
    rr_ptr(m, 0, DNS_TYPE_AAAA, 4, v4);
}

static void cname_rdlength(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    rr_ptr(m, 0, DNS_TYPE_CNAME, 9, NULL); /* the name takes 8 */
    put_name(m, "b.test");
    put8(m, 0);
}

static void count_lies(struct msg *m)
{
    header(m, ID, 0x8180, 1000, "h.test", DNS_TYPE_A); /* 1000 said, 3 given */
    for (int i = 0; i < 3; i++)
        rr_ptr(m, 0, DNS_TYPE_A, 4, v4);
}

/* A pointer back into its own name's labels ("x", then a pointer to the "x"): it points back,
 * yet loops; the hop limit ends it. */
static void pointer_back_loop(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    size_t x_at = m->n;
    put8(m, 1), put8(m, 'x'), put16(m, 0xc000 | (unsigned)x_at);
    put16(m, DNS_TYPE_A), put16(m, 1), put16(m, 0), put16(m, 60), put16(m, 4);
    memcpy(m->b + m->n, v4, 4), m->n += 4;
}

static void long_name(struct msg *m)
{
    header(m, ID, 0x8180, 1, "h.test", DNS_TYPE_A);
    for (int i = 0; i < 130; i++) /* 130 labels of 1: 260 bytes, each pointing nowhere else */
        put8(m, 1), put8(m, 'x');
    put8(m, 0);
    put16(m, DNS_TYPE_A), put16(m, 1), put16(m, 0), put16(m, 60), put16(m, 4);
    memcpy(m->b + m->n, v4, 4), m->n += 4;
}

static const struct hostile_row hostile_rows[] = {
    {"wrong id", wrong_id, "an answer with id 4661 to the query with id 4660"},
    {"wrong name", wrong_name, "an answer to another question than the one asked"},
    {"wrong type", wrong_type, "an answer to another question than the one asked"},
    {"two questions", two_questions, "an answer with 2 questions, not the one asked"},
    {"QR clear", not_an_answer, "not an answer to a standard query (flags 0x0100)"},
    {"opcode IQUERY", inverse_query, "not an answer to a standard query (flags 0x8980)"},
    {"TC over TCP", truncated_flag, "an answer truncated over TCP too"},
    {"11 bytes", short_header, "an answer of 11 bytes, shorter than a header"},
    {"question cut", question_cut, "an unreadable question: it runs past the end"},
    {"pointer to itself", pointer_loop,
     "answer record 1 of 1: a compression pointer that does not point back"},
    {"pointer forward", pointer_forward,
     "answer record 1 of 1: a compression pointer that does not point back"},
    {"pointer cut", pointer_cut, "answer record 1 of 1: a compression pointer runs past the end"},
    {"label type 01", reserved_label, "answer record 1 of 1: a label of a reserved type"},
    {"record cut", rr_cut, "answer record 2 of 2: a record runs past the end"},
    {"rdata cut", rdata_past_end, "answer record 1 of 1: a record's data runs past the end"},
    {"A of 5 bytes", a_rdlength, "answer record 1 of 1: an A record whose length is not 4"},
    {"AAAA of 4 bytes", aaaa_rdlength,
     "answer record 1 of 1: an AAAA record whose length is not 16"},
    {"CNAME longer than its name", cname_rdlength,
     "answer record 1 of 1: a CNAME record's length does not match its name"},
    {"ancount 1000, 3 records", count_lies, "answer record 4 of 1000: a name runs past the end"},
    {"name of 260 bytes", long_name, "answer record 1 of 1: a name longer than 255 bytes"},
    {"pointer back into its own labels", pointer_back_loop,
     "answer record 1 of 1: too many compression pointers in a name"},
};

static void test_hostile(void **state)
{
    (void)state;
    struct msg *m = calloc(1, sizeof(*m));
    for (size_t i = 0; i < sizeof(hostile_rows) / sizeof(hostile_rows[0]); i++) {
        const struct hostile_row *row = &hostile_rows[i];
        struct dns_wire_addrs a;
        char why[160] = "";
        row->build(m);
        const char *name = "h.test";
        unsigned qtype = row->build == aaaa_rdlength ? DNS_TYPE_AAAA : DNS_TYPE_A;
        enum dns_wire_result res = answer(m, name, qtype, &a, why, sizeof(why));
        if (res != DNS_WIRE_BAD || strcmp(why, row->detail) != 0)
            fail_msg("%s: result %d, \"%s\"", row->why, res, why);
        /* every prefix of it is refused too, and read within its bounds */
        for (size_t cut = 0; cut < m->n; cut++) {
            struct msg *p = calloc(1, sizeof(*p));
            memcpy(p->b, m->b, cut);
            p->n = cut;
            res = answer(p, name, qtype, &a, why, sizeof(why));
            free(p);
            assert_true(res == DNS_WIRE_BAD || res == DNS_WIRE_OK || res == DNS_WIRE_FAILED ||
                        res == DNS_WIRE_NXDOMAIN);
        }
    }
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_cname_chain),
        cmocka_unit_test(test_cname_limits),
        cmocka_unit_test(test_longest_name),
        cmocka_unit_test(test_poisoning),
        cmocka_unit_test(test_rcodes),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
