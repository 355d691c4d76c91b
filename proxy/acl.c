/*
 * acl.c — a route's allow and deny rules (acl.h): parsed once at load by fault.c's CIDR list
 * parser (the one trusted_proxies and fault rules' client use), walked in order per request.
 */
#include "portico/acl.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/util.h"

static const char *const action_names[] = {
#define X(id, name) [id] = name,
    ACL_ACTION_LIST(X)
#undef X
};

const char *acl_action_name(enum acl_action a)
{
    return (unsigned)a < ARRAY_LEN(action_names) ? action_names[a] : "?";
}

static const char *block_text(const struct fault_cidr *c, char *buf, size_t size)
{
    char addr[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->net.v6 ? AF_INET6 : AF_INET, c->net.bytes, addr, sizeof(addr)))
        snprintf(addr, sizeof(addr), "?");
    unsigned width = c->net.v6 ? 128 : 32;
    if (c->bits == width)
        snprintf(buf, size, "%s", addr);
    else
        snprintf(buf, size, "%s/%u", addr, c->bits);
    return buf;
}

const char *acl_rule_text(const struct acl_rule *r, char *buf, size_t size)
{
    char block[INET6_ADDRSTRLEN + 8];
    snprintf(buf, size, "%s %s", acl_action_name(r->action),
             r->all ? "all" : block_text(&r->block, block, sizeof(block)));
    return buf;
}

/* The network of c: its address with the bits past its length cleared. */
static struct fault_cidr network_of(const struct fault_cidr *c)
{
    struct fault_cidr n = *c;
    unsigned width = c->net.v6 ? 16 : 4;
    for (unsigned byte = c->bits / 8; byte < width; byte++) {
        unsigned keep = byte == c->bits / 8 ? c->bits % 8 : 0;
        n.net.bytes[byte] &= (uint8_t)~(0xff >> keep);
    }
    return n;
}

/* Whether a block's address has no bit set past its length: 127.0.0.1/8 names 127.0.0.0/8 to
 * the matcher, but whoever wrote it meant one address or the other (nginx warns "low address
 * bits are meaningless"; a rule that decides who gets in is refused until it says one). */
static bool host_bits_clear(const struct fault_cidr *c)
{
    struct fault_cidr n = network_of(c);
    return memcmp(n.net.bytes, c->net.bytes, sizeof(n.net.bytes)) == 0;
}

/* The 16 bytes of an address as two words (an IPv4 one in the first 4, the rest 0). */
static inline void words_of(const struct fault_addr *a, uint64_t w[2])
{
    memcpy(w, a->bytes, 16);
}

/* A block's words, masked, and its mask, for names(). */
static void prepare(struct acl_rule *r)
{
    struct fault_cidr mask = {.net.v6 = r->block.net.v6, .bits = r->block.bits};
    memset(mask.net.bytes, 0xff, sizeof(mask.net.bytes));
    mask = network_of(&mask);
    words_of(&mask.net, r->mask);
    words_of(&r->block.net, r->net);
    r->net[0] &= r->mask[0];
    r->net[1] &= r->mask[1];
}

/* Room for n more rules in a (made when NULL). */
static int grow(struct acl **acl, int more)
{
    struct acl *a = *acl;
    if (!a && !(a = *acl = calloc(1, sizeof(*a))))
        return -1;
    struct acl_rule *rules = realloc(a->rule, (size_t)(a->n + more) * sizeof(*rules));
    if (!rules)
        return -1;
    a->rule = rules;
    return 0;
}

int acl_add(struct acl **acl, enum acl_action action, const char *value, int line, char *why,
            size_t size)
{
    int have = *acl ? (*acl)->n : 0;
    const char *b = value, *e = value + strlen(value);
    while (b < e && (*b == ' ' || *b == '\t'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    bool all = e - b == 3 && memcmp(b, "all", 3) == 0;
    struct fault_cidr *blocks = NULL;
    int got = 1;
    if (!all) {
        if (!(blocks = malloc(ACL_MAX_RULES * sizeof(*blocks)))) {
            why[0] = '\0';
            return -1;
        }
        got = fault_cidr_list(value, blocks, ACL_MAX_RULES, why, size);
        if (got < 0)
            goto fail;
    }
    for (int i = 0; i < (all ? 0 : got); i++) {
        if (host_bits_clear(&blocks[i]))
            continue;
        char wrote[64], net[64], one[64];
        struct fault_cidr whole = blocks[i], network = network_of(&blocks[i]);
        whole.bits = whole.net.v6 ? 128 : 32;
        snprintf(why, size, "%s has bits set past its /%u: write %s for the block or %s for "
                 "the one address", block_text(&blocks[i], wrote, sizeof(wrote)), blocks[i].bits,
                 block_text(&network, net, sizeof(net)), block_text(&whole, one, sizeof(one)));
        goto fail;
    }
    if (have + got > ACL_MAX_RULES) {
        snprintf(why, size, "at most %d rules a route (allow and deny together)", ACL_MAX_RULES);
        goto fail;
    }
    if (grow(acl, got) != 0) {
        why[0] = '\0';
        goto fail;
    }
    for (int i = 0; i < got; i++) {
        struct acl_rule *r = &(*acl)->rule[(*acl)->n++];
        *r = (struct acl_rule){
            .block = all ? (struct fault_cidr){.bits = 0} : blocks[i],
            .all = all,
            .action = action,
            .line = line,
        };
        prepare(r);
    }
    free(blocks);
    return 0;
fail:
    free(blocks);
    return -1;
}

/* Whether rule r names the client of words w and family v6 (known: it has an address; one
 * without only `all` names). */
static inline bool names(const struct acl_rule *r, bool known, bool v6, const uint64_t w[2])
{
    return r->all || (known && r->block.net.v6 == v6 && (w[0] & r->mask[0]) == r->net[0] &&
                      (w[1] & r->mask[1]) == r->net[1]);
}

int acl_shadowed_by(const struct acl *acl, int i)
{
    const struct acl_rule *later = &acl->rule[i];
    for (int k = 0; k < i; k++) {
        const struct acl_rule *r = &acl->rule[k];
        if (r->all || (!later->all && r->block.bits <= later->block.bits &&
                       fault_cidr_contains(&r->block, 1, &later->block.net)))
            return k;
    }
    return -1;
}

bool acl_admits(const struct acl *acl, const struct fault_addr *client, int *rule)
{
    uint64_t w[2] = {0, 0};
    if (client)
        words_of(client, w);
    for (int i = 0; i < acl->n; i++) {
        if (names(&acl->rule[i], client != NULL, client && client->v6, w)) {
            *rule = i;
            return acl->rule[i].action == ACL_ALLOW;
        }
    }
    *rule = -1;
    return acl->n == 0 || acl->rule[acl->n - 1].action == ACL_DENY; /* (n == 0: never loaded) */
}

void acl_free(struct acl *acl)
{
    if (!acl)
        return;
    free(acl->rule);
    free(acl);
}
