/*
 * test_hashkey.c — the key of `balance = hash KEY` (hashkey.h) read from a request: which
 * requests share a key, which differ, and which have none (they go round robin).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "portico/config.h"
#include "portico/fault.h"
#include "portico/hashkey.h"
#include "portico/http1.h"
#include "portico/util.h"

/* A request of the rows: the client address as text ("" none), the path up to '?', Host ("":
 * none), and up to 3 fields "name: value". */
struct req {
    const char *client;
    const char *path;
    const char *host;
    const char *fields[3];
};

/* up's key of r: true and its hash, or false (no key). */
static bool key(const struct upstream_conf *up, const struct req *r, uint64_t *hash)
{
    struct fault_addr addr;
    struct h1_field fields[3];
    size_t n = 0;
    for (; n < 3 && r->fields[n]; n++) {
        const char *colon = strchr(r->fields[n], ':');
        fields[n] = (struct h1_field){.name = r->fields[n],
                                      .name_len = (size_t)(colon - r->fields[n]),
                                      .value = colon + 2,
                                      .value_len = strlen(colon + 2),
                                      .id = H1_F_OTHER};
    }
    bool has_client = *r->client && fault_addr_parse(r->client, &addr) == 0;
    struct hashkey_request hr = {.client = has_client ? &addr : NULL,
                                 .path = r->path,
                                 .path_len = strlen(r->path),
                                 .host = *r->host ? r->host : NULL,
                                 .host_len = strlen(r->host),
                                 .fields = fields,
                                 .nfields = n};
    return hashkey_of(up, &hr, hash);
}

enum relation { SAME, DIFFERENT, A_NONE, BOTH_NONE };

static const struct {
    const char *why;
    enum hash_key_kind kind;
    const char *name;          /* hash_name as the loader stores it */
    struct req a, b;
    enum relation rel;
} rows[] = {
    {"the same IPv4 client", HASH_KEY_CLIENT_ADDR, "", {"127.0.0.1", "/a", "h", {0}},
     {"127.0.0.1", "/b", "g", {0}}, SAME},
    {"two IPv4 clients", HASH_KEY_CLIENT_ADDR, "", {"127.0.0.1", "/", "", {0}},
     {"127.0.0.2", "/", "", {0}}, DIFFERENT},
    {"IPv4 and its IPv4-mapped IPv6 form", HASH_KEY_CLIENT_ADDR, "", {"127.0.0.1", "/", "", {0}},
     {"::ffff:127.0.0.1", "/", "", {0}}, SAME},
    {"IPv6 by its /64: privacy addresses of one host", HASH_KEY_CLIENT_ADDR, "",
     {"2001:db8:1:2::1", "/", "", {0}}, {"2001:db8:1:2:abcd::9", "/", "", {0}}, SAME},
    {"IPv6: another /64", HASH_KEY_CLIENT_ADDR, "", {"2001:db8:1:2::1", "/", "", {0}},
     {"2001:db8:1:3::1", "/", "", {0}}, DIFFERENT},
    {"no numeric client address", HASH_KEY_CLIENT_ADDR, "", {"", "/", "", {0}},
     {"", "/", "", {0}}, BOTH_NONE},
    {"$uri: the path, whoever asks", HASH_KEY_URI, "", {"127.0.0.1", "/img/a.png", "", {0}},
     {"127.0.0.2", "/img/a.png", "", {0}}, SAME},
    {"$uri: another path", HASH_KEY_URI, "", {"127.0.0.1", "/img/a.png", "", {0}},
     {"127.0.0.1", "/img/b.png", "", {0}}, DIFFERENT},
    {"$host in any case", HASH_KEY_HOST, "", {"127.0.0.1", "/", "App.Example", {0}},
     {"127.0.0.2", "/x", "app.example", {0}}, SAME},
    {"$host: another host", HASH_KEY_HOST, "", {"", "/", "a.example", {0}},
     {"", "/", "b.example", {0}}, DIFFERENT},
    {"$host: none", HASH_KEY_HOST, "", {"127.0.0.1", "/", "", {0}},
     {"127.0.0.1", "/", "", {0}}, BOTH_NONE},
    {"$host without its port or trailing dot, as routes match it", HASH_KEY_HOST, "",
     {"", "/", "App.Example.:8080", {0}}, {"", "/", "app.example", {0}}, SAME},
    {"$host: an IPv6 literal without its port", HASH_KEY_HOST, "", {"", "/", "[::1]:8443", {0}},
     {"", "/", "[::1]", {0}}, SAME},
    {"$host: a port alone is no host", HASH_KEY_HOST, "", {"", "/", ":80", {0}},
     {"", "/", "", {0}}, BOTH_NONE},
    {"$http_x_user: the field's value, its name in any case", HASH_KEY_HTTP, "x-user",
     {"127.0.0.1", "/", "", {"Accept: */*", "X-User: alice"}},
     {"127.0.0.2", "/b", "", {"x-user: alice"}}, SAME},
    {"$http_x_user: another user", HASH_KEY_HTTP, "x-user", {"", "/", "", {"X-User: alice"}},
     {"", "/", "", {"X-User: bob"}}, DIFFERENT},
    {"$http_x_user: the first field of two", HASH_KEY_HTTP, "x-user",
     {"", "/", "", {"X-User: alice", "X-User: bob"}}, {"", "/", "", {"X-User: alice"}}, SAME},
    {"$http_x_user: missing", HASH_KEY_HTTP, "x-user", {"127.0.0.1", "/", "h", {"X-Users: a"}},
     {"127.0.0.1", "/", "h", {0}}, BOTH_NONE},
    {"$http_x_user: empty is missing", HASH_KEY_HTTP, "x-user", {"", "/", "", {"X-User: "}},
     {"", "/", "", {"X-User: alice"}}, A_NONE},
    {"$cookie_sid among others", HASH_KEY_COOKIE, "sid",
     {"127.0.0.1", "/", "", {"Cookie: a=1; sid=abc; b=2"}},
     {"127.0.0.2", "/x", "", {"Cookie: sid=abc"}}, SAME},
    {"$cookie_sid in the second Cookie field (HTTP/2 crumbs)", HASH_KEY_COOKIE, "sid",
     {"", "/", "", {"Cookie: a=1", "Cookie: sid=abc"}}, {"", "/", "", {"Cookie: sid=abc"}},
     SAME},
    {"$cookie_sid quoted is its value", HASH_KEY_COOKIE, "sid",
     {"", "/", "", {"Cookie: sid=\"abc\""}}, {"", "/", "", {"Cookie: sid=abc"}}, SAME},
    {"$cookie_sid: another session", HASH_KEY_COOKIE, "sid", {"", "/", "", {"Cookie: sid=abc"}},
     {"", "/", "", {"Cookie: sid=abd"}}, DIFFERENT},
    {"$cookie_sid: not xsid, not sidx, not Sid", HASH_KEY_COOKIE, "sid",
     {"", "/", "", {"Cookie: xsid=1; sidx=2; Sid=3"}}, {"", "/", "", {"Cookie: sid=abd"}},
     A_NONE},
    {"$cookie_sid: no Cookie at all, or sid empty", HASH_KEY_COOKIE, "sid",
     {"127.0.0.1", "/", "", {"Accept: */*"}}, {"127.0.0.1", "/", "", {"Cookie: sid="}},
     BOTH_NONE},
    {"$cookie_sid: blanks before ';' are no part of it", HASH_KEY_COOKIE, "sid",
     {"", "/", "", {"Cookie: sid=abc ; b=2"}}, {"", "/", "", {"Cookie: sid=abc"}}, SAME},
};

static void test_hashkey_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct upstream_conf up = {.balance = BALANCE_HASH, .hash_key = rows[i].kind};
        snprintf(up.hash_name, sizeof(up.hash_name), "%s", rows[i].name);
        up.hash_name_len = strlen(rows[i].name);
        uint64_t ha = 0, hb = 0;
        bool a = key(&up, &rows[i].a, &ha), b = key(&up, &rows[i].b, &hb);
        bool ok;
        switch (rows[i].rel) {
        case SAME:
            ok = a && b && ha == hb;
            break;
        case DIFFERENT:
            ok = a && b && ha != hb;
            break;
        case A_NONE:
            ok = !a && b;
            break;
        default:
            ok = !a && !b;
            break;
        }
        if (!ok)
            fail_msg("%s: key a %s %016llx, b %s %016llx", rows[i].why, a ? "yes" : "none",
                     (unsigned long long)ha, b ? "yes" : "none", (unsigned long long)hb);
    }
}

/* The hash reaches the high bits (the ring reads the top 32) from every byte. */
static void test_hashkey_bytes(void **state)
{
    (void)state;
    assert_int_not_equal(hashkey_bytes("a", 1, 0) >> 32, hashkey_bytes("b", 1, 0) >> 32);
    assert_int_not_equal(hashkey_bytes("ab", 2, 0) >> 32, hashkey_bytes("ac", 2, 0) >> 32);
    assert_int_not_equal(hashkey_bytes("a", 1, 0), hashkey_bytes("a", 1, 1));
    assert_int_equal(hashkey_bytes("abc", 3, 7), hashkey_bytes("abc", 3, 7));
}

/* A Host of no bytes (given, but empty) is no key, as none is: those requests go round robin
 * rather than all to the origin of the hash of "". */
static void test_hashkey_empty_host(void **state)
{
    (void)state;
    struct upstream_conf up = {.balance = BALANCE_HASH, .hash_key = HASH_KEY_HOST};
    struct hashkey_request hr = {.path = "/", .path_len = 1, .host = "", .host_len = 0};
    uint64_t hash = 0;
    assert_false(hashkey_of(&up, &hr, &hash));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashkey_rows),
        cmocka_unit_test(test_hashkey_bytes),
        cmocka_unit_test(test_hashkey_empty_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
