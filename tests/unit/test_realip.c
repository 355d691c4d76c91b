/*
 * test_realip.c — [proxy] real_ip's parser: one element (IPv4, IPv6 bare or in brackets, ports,
 * OWS, Forwarded's for= as a token or quoted-string, what is not an address), and the choice
 * over a request's fields (right-most untrusted, all trusted, an element that is not an address,
 * empty elements, several fields, 64 elements). Each element is copied to the end of a heap
 * block of its exact size, so that ASan catches a read past it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/realip.h"
#include "portico/util.h"

struct element_row {
    const char *text;
    bool forwarded;           /* a Forwarded element */
    const char *want;         /* the address as realip_text writes it, NULL: not an address */
};

static void test_element(void **state)
{
    (void)state;
    static const struct element_row rows[] = {
        {"127.0.0.1", false, "127.0.0.1"},
        {"  127.0.0.2\t", false, "127.0.0.2"},
        {"127.0.0.3:8080", false, "127.0.0.3"},
        {"::1", false, "::1"},
        {"[::1]", false, "::1"},
        {"[::1]:443", false, "::1"},
        {"0:0:0:0:0:0:0:1", false, "::1"},
        {"::ffff:127.0.0.4", false, "127.0.0.4"}, /* v4-mapped: the IPv4 client */
        {"[::ffff:127.0.0.4]:1", false, "127.0.0.4"},
        {"", false, NULL},
        {"unknown", false, NULL},
        {"_hidden", false, NULL},
        {"127.0.0.1:", false, NULL},
        {"127.0.0.1:123456", false, NULL},
        /* a port above 65535 is no address the client was at: not an address, as garbage */
        {"127.0.0.1:65535", false, "127.0.0.1"},
        {"127.0.0.1:00080", false, "127.0.0.1"},
        {"127.0.0.1:000080", false, NULL}, /* RFC 7239's port is 1*5DIGIT: 6 are not one */
        {"[::1]:000080", false, NULL},
        {"127.0.0.1:65536", false, NULL},
        {"127.0.0.1:70000", false, NULL},
        {"127.0.0.1:99999", false, NULL},
        {"[::1]:65535", false, "::1"},
        {"[::1]:65536", false, NULL},
        {"[::1]:99999", false, NULL},
        {"127.0.0.1:80x", false, NULL},
        {"127.0.0.1 127.0.0.2", false, NULL},
        {"[127.0.0.1]", false, NULL},
        {"[::1", false, NULL},
        {"[::1]x", false, NULL},
        {"[::1]:", false, NULL},
        {"[]", false, NULL},
        {"::1%lo", false, NULL},
        {"127.0.0.256", false, NULL},
        {"127.1", false, NULL},               /* inet_aton's shorthand is no literal */
        {"localhost", false, NULL},
        {"\"127.0.0.1\"", false, NULL},
        /* Forwarded (RFC 7239): for= is the address; IPv6 in brackets, quoted */
        {"for=127.0.0.1", true, "127.0.0.1"},
        {"FOR=127.0.0.1", true, "127.0.0.1"},
        {"for=\"127.0.0.1:80\"", true, "127.0.0.1"},
        {"for=\"[::1]\"", true, "::1"},
        {"for=\"[::1]:4711\"", true, "::1"},
        {"for=\"[::1]\\:4711\"", true, "::1"},   /* a quoted-pair is its character */
        {"proto=https;for=127.0.0.5;by=127.0.0.1", true, "127.0.0.5"},
        {" for=127.0.0.5 ; proto=http ", true, "127.0.0.5"},
        {"by=\"a;for=127.0.0.9\";for=127.0.0.6", true, "127.0.0.6"}, /* ';' in quotes */
        {"for=::1", true, NULL},              /* IPv6 only in brackets there */
        {"for=\"::1\"", true, NULL},
        {"for=unknown", true, NULL},
        {"for=\"unknown\"", true, NULL},
        {"for=_hidden", true, NULL},
        {"for=\"_x:_y\"", true, NULL},
        {"for=", true, NULL},
        {"for=\"\"", true, NULL},
        {"for=\"127.0.0.1", true, NULL},       /* unterminated */
        {"for=\"127.0.0.1\"x", true, NULL},
        {"proto=https", true, NULL},           /* no for= */
        {"for=127.0.0.1;for=127.0.0.2", true, NULL}, /* twice */
        {"127.0.0.1", true, NULL},
        {"for=\"[::1]:4711:1\"", true, NULL},
        {"for=\"[::1]:65535\"", true, "::1"},
        {"for=\"[::1]:99999\"", true, NULL},
        {"for=\"127.0.0.1:70000\"", true, NULL},
        {"for=127.0.0.1:65536", true, NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        size_t n = strlen(rows[i].text);
        char *block = malloc(n ? n : 1);
        assert_non_null(block);
        memcpy(block, rows[i].text, n);
        struct fault_addr a;
        int rc = realip_element(block, n, rows[i].forwarded, &a);
        char got[64];
        if (rows[i].want && (rc != 0 || strcmp(realip_text(&a, got, sizeof(got)), rows[i].want)))
            fail_msg("'%s': want %s, got %s", rows[i].text, rows[i].want,
                     rc ? "not an address" : got);
        if (!rows[i].want && rc == 0)
            fail_msg("'%s': not an address, got %s", rows[i].text,
                     realip_text(&a, got, sizeof(got)));
        free(block);
    }
}

#define MAX_FIELDS 4

struct find_row {
    const char *why;
    enum real_ip_field field;
    const char *names[MAX_FIELDS];     /* NULL ends */
    const char *values[MAX_FIELDS];
    enum realip_result want;
    const char *addr;                  /* REALIP_FOUND */
};

/* trusted: 127.0.0.0/24 (::1 is not) */
static const struct find_row find_rows[] = {
    {"the right-most untrusted: the balancer's own and a trusted hop are passed",
     REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"}, {"127.0.9.1, 127.0.8.1, 127.0.0.7"},
     REALIP_FOUND, "127.0.8.1"},
    {"all trusted: the left-most", REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"},
     {"127.0.0.9, ::ffff:127.0.0.8, 127.0.0.7"}, REALIP_FOUND, "127.0.0.9"},
    {"one element", REAL_IP_X_FORWARDED_FOR, {"x-forwarded-for"}, {"127.0.5.5"}, REALIP_FOUND,
     "127.0.5.5"},
    {"no field: the peer", REAL_IP_X_FORWARDED_FOR, {"X-Real-IP"}, {"127.0.5.5"}, REALIP_NONE,
     NULL},
    {"only empty elements: the peer", REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"},
     {" , ,, "}, REALIP_NONE, NULL},
    {"empty elements are none", REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"},
     {",127.0.5.5,, ,127.0.0.2,"}, REALIP_FOUND, "127.0.5.5"},
    {"not an address where the client would be: the peer, nothing further left",
     REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"}, {"127.0.5.5, garbage, 127.0.0.7"},
     REALIP_INVALID, NULL},
    {"not an address left of the client: never looked at", REAL_IP_X_FORWARDED_FOR,
     {"X-Forwarded-For"}, {"garbage, unknown, 127.0.5.5, 127.0.0.7"}, REALIP_FOUND,
     "127.0.5.5"},
    {"a port above 65535 where the client would be: not an address, the peer",
     REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"}, {"127.0.5.5, 127.0.9.9:70000, 127.0.0.7"},
     REALIP_INVALID, NULL},
    {"Forwarded: [::1]:99999 is no address either", REAL_IP_FORWARDED, {"Forwarded"},
     {"for=127.0.5.5, for=\"[::1]:99999\""}, REALIP_INVALID, NULL},
    {"a port of 65535 is one", REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"},
     {"127.0.9.9:65535, 127.0.0.7:1"}, REALIP_FOUND, "127.0.9.9"},
    {"unknown from a trusted hop", REAL_IP_X_FORWARDED_FOR, {"X-Forwarded-For"},
     {"unknown"}, REALIP_INVALID, NULL},
    {"fields in order, read as one list", REAL_IP_X_FORWARDED_FOR,
     {"X-Forwarded-For", "Host", "X-Forwarded-For"},
     {"127.0.5.5, 127.0.6.6", "h", "127.0.0.3, 127.0.0.4"}, REALIP_FOUND, "127.0.6.6"},
    {"an empty field adds no element", REAL_IP_X_FORWARDED_FOR,
     {"X-Forwarded-For", "X-Forwarded-For"}, {"127.0.5.5", ""}, REALIP_FOUND, "127.0.5.5"},
    {"IPv6 with brackets and a port, a v4-mapped trusted hop", REAL_IP_X_FORWARDED_FOR,
     {"X-Forwarded-For"}, {"[::1]:5000, ::ffff:127.0.0.8"}, REALIP_FOUND, "::1"},
    {"Forwarded: for= of each element, quoted commas inside one", REAL_IP_FORWARDED,
     {"Forwarded"},
     {"for=127.0.5.5;by=\"x,y\", for=\"[::1]:80\";proto=https, for=127.0.0.2"},
     REALIP_FOUND, "::1"},
    /* A proxy appends its element to the value its client sent, in the same field: a quote the
     * client never closed took it into the client's (h1_list_next's quoted-strings) */
    {"X-Forwarded-For: a quote is no quoted-string", REAL_IP_X_FORWARDED_FOR,
     {"X-Forwarded-For"}, {"127.0.9.9 \", 127.0.5.5"}, REALIP_FOUND, "127.0.5.5"},
    {"Forwarded: an unclosed quote does not take the proxy's element", REAL_IP_FORWARDED,
     {"Forwarded"}, {"for=127.0.9.9;x=\", for=127.0.5.5"}, REALIP_FOUND, "127.0.5.5"},
    {"Forwarded: nor one in for=", REAL_IP_FORWARDED, {"Forwarded"},
     {"for=\"127.0.9.9, for=127.0.5.5"}, REALIP_FOUND, "127.0.5.5"},
    {"Forwarded: an escaped quote after an unclosed one closes nothing", REAL_IP_FORWARDED,
     {"Forwarded"}, {"for=127.0.9.9;x=\"\\\", for=127.0.5.5"}, REALIP_FOUND, "127.0.5.5"},
    {"Forwarded: a closed one still holds commas, an escaped quote inside", REAL_IP_FORWARDED,
     {"Forwarded"}, {"for=127.0.5.6;x=\"a\\\",b\", for=127.0.0.2"}, REALIP_FOUND,
     "127.0.5.6"},
    {"Forwarded: an obfuscated hop keeps the peer", REAL_IP_FORWARDED, {"Forwarded"},
     {"for=127.0.5.5, for=_gw1, for=127.0.0.2"}, REALIP_INVALID, NULL},
    {"Forwarded: all trusted", REAL_IP_FORWARDED, {"forwarded", "forwarded"},
     {"for=127.0.0.1", "for=\"[::ffff:127.0.0.3]\""}, REALIP_FOUND, "127.0.0.1"},
    {"X-Real-IP: its value", REAL_IP_X_REAL_IP, {"X-Real-IP"}, {"127.0.5.5"}, REALIP_FOUND,
     "127.0.5.5"},
    {"X-Real-IP: a trusted one is still the client (left-most)", REAL_IP_X_REAL_IP,
     {"X-Real-IP"}, {"127.0.0.9"}, REALIP_FOUND, "127.0.0.9"},
    {"X-Real-IP: garbage", REAL_IP_X_REAL_IP, {"X-Real-IP"}, {"nope"}, REALIP_INVALID, NULL},
    {"CF-Connecting-IP, not True-Client-IP", REAL_IP_CF_CONNECTING_IP,
     {"True-Client-IP", "CF-Connecting-IP"}, {"127.0.6.6", "127.0.5.5"}, REALIP_FOUND,
     "127.0.5.5"},
    {"True-Client-IP, not CF-Connecting-IP", REAL_IP_TRUE_CLIENT_IP,
     {"CF-Connecting-IP", "true-client-ip"}, {"127.0.6.6", "::1"}, REALIP_FOUND, "::1"},
    {"the other fields are not read", REAL_IP_X_FORWARDED_FOR, {"Forwarded", "X-Real-IP"},
     {"for=127.0.5.5", "127.0.5.5"}, REALIP_NONE, NULL},
};

static void test_find(void **state)
{
    (void)state;
    struct fault_cidr trusted[1];
    char why[100];
    assert_int_equal(fault_cidr_list("127.0.0.0/24", trusted, 1, why, sizeof(why)), 1);
    for (size_t i = 0; i < ARRAY_LEN(find_rows); i++) {
        const struct find_row *r = &find_rows[i];
        struct h1_field fields[MAX_FIELDS];
        size_t n = 0;
        for (; n < MAX_FIELDS && r->names[n]; n++) {
            fields[n] = (struct h1_field){.name = r->names[n], .name_len = strlen(r->names[n]),
                                          .value = r->values[n],
                                          .value_len = strlen(r->values[n])};
            fields[n].id = h1_field_id_of(fields[n].name, fields[n].name_len);
        }
        struct fault_addr a;
        enum realip_result got = realip_find(fields, n, r->field, trusted, 1, &a);
        char text[64];
        if (got != r->want || (got == REALIP_FOUND && strcmp(realip_text(&a, text, sizeof(text)),
                                                             r->addr) != 0))
            fail_msg("%s: want %d %s, got %d %s", r->why, r->want, r->addr ? r->addr : "",
                     got, got == REALIP_FOUND ? realip_text(&a, text, sizeof(text)) : "");
    }
}

/* 64 elements in one field and over several: the right-most untrusted is found among them,
 * and 64 trusted ones give the left-most. */
static void test_many_elements(void **state)
{
    (void)state;
    struct fault_cidr trusted[1];
    char why[100];
    assert_int_equal(fault_cidr_list("127.0.0.0/24", trusted, 1, why, sizeof(why)), 1);
    char list[64 * 16];
    for (int untrusted_at = -1; untrusted_at < 64; untrusted_at += 21) {
        size_t len = 0;
        for (int i = 0; i < 64; i++) /* 127.0.1.i is untrusted, 127.0.0.i trusted */
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s127.0.%d.%d",
                                    i ? ", " : "", i == untrusted_at, i);
        struct h1_field f = {.name = "X-Forwarded-For", .name_len = 15, .value = list,
                             .value_len = len, .id = H1_F_X_FORWARDED_FOR};
        struct fault_addr a;
        char text[64], want[32];
        snprintf(want, sizeof(want), untrusted_at < 0 ? "127.0.0.0" : "127.0.1.%d",
                 untrusted_at);
        assert_int_equal(realip_find(&f, 1, REAL_IP_X_FORWARDED_FOR, trusted, 1, &a),
                         REALIP_FOUND);
        assert_string_equal(realip_text(&a, text, sizeof(text)), want);
    }
    /* 64 fields of one element each: the same walk */
    static struct h1_field fields[64];
    static char values[64][24];
    for (int i = 0; i < 64; i++) {
        snprintf(values[i], sizeof(values[i]), "127.0.%d.%d", i == 10, i);
        fields[i] = (struct h1_field){.name = "X-Forwarded-For", .name_len = 15,
                                      .value = values[i], .value_len = strlen(values[i]),
                                      .id = H1_F_X_FORWARDED_FOR};
    }
    struct fault_addr a;
    char text[64];
    assert_int_equal(realip_find(fields, 64, REAL_IP_X_FORWARDED_FOR, trusted, 1, &a),
                     REALIP_FOUND);
    assert_string_equal(realip_text(&a, text, sizeof(text)), "127.0.1.10");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(real_ip_name(REAL_IP_OFF), "off");
    assert_string_equal(real_ip_name(REAL_IP_X_FORWARDED_FOR), "x-forwarded-for");
    assert_string_equal(real_ip_name(REAL_IP_TRUE_CLIENT_IP), "true-client-ip");
    assert_string_equal(real_ip_name((enum real_ip_field)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_element),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_many_elements),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
