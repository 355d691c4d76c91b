/*
 * test_acl.c — a route's allow and deny rules (acl.h): the verdict for a client (first match
 * in file order; no match the opposite of the last rule; IPv6, v4-mapped, blocks off byte
 * boundaries, `all`, a client without an address), the values refused (host bits, a prefix
 * length out of range, not an address, too many rules), the rules an earlier one shadows, and
 * a rule's text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/acl.h"
#include "portico/util.h"

/* Up to 4 rule lines: "allow 127.0.0.0/8", "deny all" (the action, a space, the value). */
#define LINES 4

static struct acl *load(const char *const lines[LINES])
{
    struct acl *acl = NULL;
    for (int i = 0; i < LINES && lines[i]; i++) {
        const char *sp = strchr(lines[i], ' ');
        enum acl_action a = strncmp(lines[i], "allow", 5) == 0 ? ACL_ALLOW : ACL_DENY;
        char why[300];
        if (acl_add(&acl, a, sp + 1, i + 1, why, sizeof(why)) != 0)
            fail_msg("%s: %s", lines[i], why);
    }
    return acl;
}

struct verdict_row {
    const char *why;
    const char *lines[LINES];
    const char *client;       /* NULL: no address (a Unix socket) */
    bool admitted;
    int rule;                 /* the index of the rule that decided, -1: none named it */
};

static void test_verdicts(void **state)
{
    (void)state;
    static const struct verdict_row rows[] = {
        {"allows alone: the block in", {"allow 127.0.0.0/8"}, "127.0.0.2", true, 0},
        {"allows alone: the rest out", {"allow 127.0.0.0/8"}, "::1", false, -1},
        {"denies alone: the named out", {"deny 127.0.0.2"}, "127.0.0.2", false, 0},
        {"denies alone: the rest in", {"deny 127.0.0.2"}, "127.0.0.3", true, -1},
        {"first match: the carve-out", {"allow 127.0.0.1", "deny 127.0.0.0/8"}, "127.0.0.1", true,
         0},
        {"first match: the block", {"allow 127.0.0.1", "deny 127.0.0.0/8"}, "127.0.0.5", false,
         1},
        {"ends in deny: the rest in", {"allow 127.0.0.1", "deny 127.0.0.0/8"}, "::1", true, -1},
        /* where nginx lets ::1 in (no rule matched): the last rule is an allow, the rest out */
        {"ends in allow: the rest out", {"deny 127.0.0.5", "allow 127.0.0.0/8"}, "::1", false,
         -1},
        {"ends in allow: the deny first", {"deny 127.0.0.5", "allow 127.0.0.0/8"}, "127.0.0.5",
         false, 0},
        {"ends in allow: the allow", {"deny 127.0.0.5", "allow 127.0.0.0/8"}, "127.0.0.6", true,
         1},
        {"deny all: IPv6 allowed", {"allow ::1", "deny all"}, "::1", true, 0},
        {"deny all: another IPv6", {"allow ::1", "deny all"}, "::2", false, 1},
        {"deny all: IPv4", {"allow ::1", "deny all"}, "127.0.0.1", false, 1},
        {"deny all names one without an address", {"allow ::1", "deny all"}, NULL, false, 1},
        {"allow all names one without an address", {"deny 127.0.0.2", "allow all"}, NULL, true,
         1},
        {"no address: no block names it, allows", {"allow 127.0.0.0/8"}, NULL, false, -1},
        {"no address: no block names it, denies", {"deny 127.0.0.0/8"}, NULL, true, -1},
        {"v4-mapped is its IPv4", {"allow 127.0.0.0/8"}, "::ffff:127.0.0.2", true, 0},
        {"v4-mapped denied as IPv4", {"deny 127.0.0.2"}, "::ffff:127.0.0.2", false, 0},
        {"IPv6 block in", {"allow 2001:db8::/32"}, "2001:db8:1::1", true, 0},
        {"IPv6 block out", {"allow 2001:db8::/32"}, "2001:db9::1", false, -1},
        {"IPv6 /127: its pair", {"deny ::/127"}, "::1", false, 0},
        {"IPv6 /127: past it", {"deny ::/127"}, "::2", true, -1},
        {"off a byte: /25 in", {"allow 127.0.0.128/25"}, "127.0.0.200", true, 0},
        {"off a byte: /25 out", {"allow 127.0.0.128/25"}, "127.0.0.100", false, -1},
        {"/0 of IPv4 is not IPv6", {"deny 0.0.0.0/0"}, "::1", true, -1},
        {"/0 of IPv4", {"deny 0.0.0.0/0"}, "127.0.0.1", false, 0},
        {"a list is rules in its order", {"allow 127.0.0.2, ::1"}, "::1", true, 1},
        {"an IPv6 list element", {"deny ::2, 127.0.0.1"}, "127.0.0.1", false, 1},
        /* no address is no 0.0.0.0: only `all` names it (read as the words 0, 0.0.0.0/0 would) */
        {"no address: not in 0.0.0.0/0", {"deny 0.0.0.0/0"}, NULL, true, -1},
        /* 1:2:: begins with the bytes 00 01 00 02, zeros after, as an IPv4 rule's words would:
         * the family tells them apart */
        {"/0 of IPv4 is not an IPv6 of zeros past its 4th byte", {"deny 0.0.0.0/0"}, "1:2::", true,
         -1},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct acl *acl = load(rows[i].lines);
        struct fault_addr a, *client = NULL;
        if (rows[i].client) {
            assert_int_equal(fault_addr_parse(rows[i].client, &a), 0);
            client = &a;
        }
        int rule = -2;
        bool got = acl_admits(acl, client, &rule);
        if (got != rows[i].admitted || rule != rows[i].rule)
            fail_msg("%s: %s, rule %d; want %s, rule %d", rows[i].why, got ? "in" : "out", rule,
                     rows[i].admitted ? "in" : "out", rows[i].rule);
        acl_free(acl);
    }
}

struct refusal_row {
    const char *value;
    const char *want;         /* in the reason */
};

static void test_refused(void **state)
{
    (void)state;
    static const struct refusal_row rows[] = {
        {"127.0.0.1/8", "127.0.0.1/8 has bits set past its /8: write 127.0.0.0/8 for the block "
                        "or 127.0.0.1 for the one address"},
        {"127.0.0.128/24", "write 127.0.0.0/24"},
        {"::1/64", "::1/64 has bits set past its /64: write ::/64 for the block or ::1 for the "
                   "one address"},
        {"127.0.0.0/33", "'127.0.0.0/33' is not an address or CIDR block"},
        {"::/129", "'::/129' is not an address or CIDR block"},
        {"127.0.0.0/-1", "is not an address"},
        {"127.0.0.256", "'127.0.0.256' is not an address"},
        {"localhost", "'localhost' is not an address"},
        {"all, 127.0.0.1", "'all' is not an address"},
        {"", "no address given"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct acl *acl = NULL;
        char why[300] = "";
        if (acl_add(&acl, ACL_DENY, rows[i].value, 7, why, sizeof(why)) == 0)
            fail_msg("'%s' was taken", rows[i].value);
        if (!strstr(why, rows[i].want))
            fail_msg("'%s': %s; want %s", rows[i].value, why, rows[i].want);
        acl_free(acl); /* NULL, or the rules before: none here */
    }
}

/* ACL_MAX_RULES rules load, one more is refused, over several lines as in one. */
static void test_bounded(void **state)
{
    (void)state;
    size_t size = ACL_MAX_RULES * 24;
    char *list = malloc(size);
    assert_non_null(list);
    size_t len = 0;
    for (int i = 0; i < ACL_MAX_RULES; i++)
        len += (size_t)snprintf(list + len, size - len, "%s127.%d.%d.1", i ? ", " : "", i / 256,
                                i % 256);
    struct acl *acl = NULL;
    char why[300];
    assert_int_equal(acl_add(&acl, ACL_ALLOW, list, 1, why, sizeof(why)), 0);
    assert_int_equal(acl->n, ACL_MAX_RULES);
    assert_int_equal(acl_add(&acl, ACL_DENY, "all", 2, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "at most 1024 rules a route"));
    assert_int_equal(acl->n, ACL_MAX_RULES); /* the refused line added nothing */
    acl_free(acl);
    acl = NULL;
    assert_int_equal(acl_add(&acl, ACL_DENY, "::1", 1, why, sizeof(why)), 0);
    assert_int_equal(acl_add(&acl, ACL_ALLOW, list, 2, why, sizeof(why)), -1);
    assert_int_equal(acl->n, 1);
    acl_free(acl);
    free(list);
}

struct shadow_row {
    const char *why;
    const char *lines[LINES];
    int rule;
    int by;                   /* -1: it decides for some client */
};

static void test_shadowed(void **state)
{
    (void)state;
    static const struct shadow_row rows[] = {
        {"one address inside an earlier block", {"allow 127.0.0.0/8", "deny 127.0.0.1"}, 1, 0},
        {"the carve-out first decides", {"deny 127.0.0.1", "allow 127.0.0.0/8"}, 1, -1},
        {"the same block twice", {"allow 127.0.0.0/8", "deny 127.0.0.0/8"}, 1, 0},
        {"anything after all", {"deny all", "allow ::1"}, 1, 0},
        {"all after all", {"deny all", "allow all"}, 1, 0},
        {"all after a block decides", {"deny 127.0.0.0/8", "allow all"}, 1, -1},
        {"another family", {"allow ::/0", "deny 127.0.0.1"}, 1, -1},
        {"a wider block after", {"allow 127.0.0.0/9", "deny 127.0.0.0/8"}, 1, -1},
        {"a sibling block", {"allow 127.0.0.0/9", "deny 127.128.0.0/9"}, 1, -1},
        {"the first of three", {"allow ::1", "deny 127.0.0.0/8", "deny 127.0.0.9"}, 2, 1},
        {"IPv6 inside a /64", {"allow 2001:db8::/64", "deny 2001:db8::9"}, 1, 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct acl *acl = load(rows[i].lines);
        int by = acl_shadowed_by(acl, rows[i].rule);
        if (by != rows[i].by)
            fail_msg("%s: shadowed by %d, want %d", rows[i].why, by, rows[i].by);
        assert_int_equal(acl_shadowed_by(acl, 0), -1); /* the first rule always decides */
        acl_free(acl);
    }
}

static void test_text(void **state)
{
    (void)state;
    static const struct {
        const char *line, *want;
    } rows[] = {
        {"deny 127.0.0.0/8", "deny 127.0.0.0/8"},
        {"allow 127.0.0.1", "allow 127.0.0.1"},
        {"allow 127.0.0.1/32", "allow 127.0.0.1"},
        {"deny ::1", "deny ::1"},
        {"allow 2001:db8::/32", "allow 2001:db8::/32"},
        {"deny ::ffff:127.0.0.2", "deny 127.0.0.2"},
        {"deny  all ", "deny all"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        const char *const lines[LINES] = {rows[i].line};
        struct acl *acl = load(lines);
        char buf[80];
        assert_string_equal(acl_rule_text(&acl->rule[0], buf, sizeof(buf)), rows[i].want);
        assert_int_equal(acl->rule[0].line, 1);
        acl_free(acl);
    }
    assert_string_equal(acl_action_name(ACL_ALLOW), "allow");
    assert_string_equal(acl_action_name((enum acl_action)9), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_shadowed),
        cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
