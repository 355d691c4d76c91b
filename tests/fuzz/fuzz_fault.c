/*
 * fuzz_fault.c — the Portico-Fault header parser (fault_header_parse) and the key=value lists of
 * the admin API (fault_pairs into fault_rule_set), on an exact-size heap copy of the input.
 *
 * The first byte picks the parser: even, the header; odd, a key=value list (bit 1: url-encoded).
 * Checked: a value either parses into a rule that passes fault_rule_check and holds action keys
 * (and probability) only, or is refused with a one-line reason that fits its buffer; the text
 * store stays within its bounds; parsing is deterministic; a parsed rule can be decided and
 * drawn from.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "portico/fault.h"

static void check_reason(int rc, const char *why, size_t size)
{
    if (rc == 0)
        return;
    size_t n = strnlen(why, size);
    CHECK(n > 0 && n < size);
    CHECK(memchr(why, '\n', n) == NULL);
}

static void check_rule(const struct fault_rule *r)
{
    CHECK(r->used >= 1 && r->used <= FAULT_TEXT_MAX);
    CHECK(r->nmethods <= FAULT_MAX_LIST && r->nmatch_headers <= FAULT_MAX_LIST &&
          r->nclients <= FAULT_MAX_LIST && r->nstatuses <= FAULT_MAX_LIST &&
          r->nheaders <= FAULT_MAX_LIST && r->ninterim <= FAULT_MAX_LIST);
    CHECK(r->probability >= 0 && r->probability <= 1);
    for (int k = 0; k < FK_COUNT; k++)
        if (r->set & (1u << k))
            CHECK(strlen(fault_text(r, r->raw[k])) < FAULT_TEXT_MAX);
}

/* As the admin API takes a rule: name= aside, every key through the rule's setters. */
static int set_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    return strcmp(key, "name") == 0 ? 0 : fault_rule_set_key(arg, key, value, why, size);
}

static int parse(const char *p, size_t n, int mode, struct fault_rule *r, char *why, size_t size)
{
    if (!(mode & 1))
        return fault_header_parse(p, n, "header", r, why, size);
    fault_rule_init(r, "fuzz");
    int rc = fault_pairs(p, n, mode & 2, set_pair, r, why, size);
    return rc != 0 ? rc : fault_rule_check(r, why, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0];
    char *p = dup_exact((const char *)data + 1, size - 1);
    static struct fault_rule a, b;
    char why_a[200], why_b[200];
    int rc = parse(p, size - 1, mode, &a, why_a, sizeof(why_a));
    int rc2 = parse(p, size - 1, mode, &b, why_b, sizeof(why_b));
    check_reason(rc, why_a, sizeof(why_a));
    check_rule(&a);
    /* deterministic: the same rule (up to the bytes of text used), or the same reason */
    CHECK(rc == rc2);
    if (rc == 0) {
        CHECK(a.used == b.used);
        CHECK(memcmp(&a, &b, offsetof(struct fault_rule, text) + a.used) == 0);
        if (!(mode & 1))
            for (int k = 0; k < FK_COUNT; k++)
                if (a.set & (1u << k))
                    CHECK(fault_key_kind((enum fault_key)k) == FAULT_ACT || k == FK_PROBABILITY);
        struct fault_rng g;
        struct fault_pick pick;
        fault_rng_init(&g, (uint64_t)size);
        for (int i = 0; i < 4; i++)
            fault_decide(&a, NULL, 0, &g, &pick);
    } else {
        CHECK(strcmp(why_a, why_b) == 0);
    }
    free(p);
    return 0;
}
