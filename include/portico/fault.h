/*
 * fault.h — fault rules for rehearsing outages (issue 8): what a rule matches, when it fires,
 * what it does to a request, and the Portico-Fault request header.
 *
 * Pure: rules are flat structs (every string lives in the rule's own text store, so a rule is
 * copied with one assignment and never freed piece by piece); time is passed in, randomness
 * comes from a generator passed in. The same key table parses `[fault NAME]` sections, the
 * Portico-Fault header and rules added through the admin API, so the three spell everything
 * the same way. What changes while serving (enabled, overrides, counters) is a struct
 * fault_state the caller keeps beside the rule; the decision reads and updates it atomically,
 * so the workers of a generation share one state per rule without a lock.
 */
#ifndef PORTICO_FAULT_H
#define PORTICO_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"
#include "portico/http1.h"

#define FAULT_NAME_MAX 64     /* bytes of a rule name, NUL included */
#define FAULT_TEXT_MAX 4096   /* every string of one rule (names, values, body, headers) */
#define FAULT_MAX_LIST 8      /* methods, clients, header matchers, statuses, headers, interim */
#define FAULT_DELAY_CAP 10    /* a lognormal draw is capped at this many times its p99 */

/*
 * The keys of a rule: id, name (INI, header and admin spelling), kind, repeatable. MATCH keys
 * choose requests, WHEN keys decide which of them the rule fires for, ACT keys say what it does;
 * the Portico-Fault header takes ACT keys and probability only.
 */
#define FAULT_KEY_LIST(X)                                                                          \
    X(FK_ROUTE, "route", FAULT_MATCH, false)                                                       \
    X(FK_HOST, "host", FAULT_MATCH, false)                                                         \
    X(FK_PREFIX, "prefix", FAULT_MATCH, false)                                                     \
    X(FK_METHOD, "method", FAULT_MATCH, false)                                                     \
    X(FK_HEADER, "header", FAULT_MATCH, true)                                                      \
    X(FK_CLIENT, "client", FAULT_MATCH, false)                                                     \
    X(FK_ENABLED, "enabled", FAULT_WHEN, false)                                                    \
    X(FK_PROBABILITY, "probability", FAULT_WHEN, false)                                            \
    X(FK_FIRST, "first", FAULT_WHEN, false)                                                        \
    X(FK_EVERY, "every", FAULT_WHEN, false)                                                        \
    X(FK_AFTER, "after", FAULT_WHEN, false)                                                        \
    X(FK_FOR, "for", FAULT_WHEN, false)                                                            \
    X(FK_MAX_ACTIVE, "max_active", FAULT_WHEN, false)                                              \
    X(FK_STATUS, "status", FAULT_ACT, false)                                                       \
    X(FK_REASON, "reason", FAULT_ACT, false)                                                       \
    X(FK_BODY, "body", FAULT_ACT, false)                                                           \
    X(FK_HEADERS, "headers", FAULT_ACT, true)                                                      \
    X(FK_FAILURE, "failure", FAULT_ACT, false)                                                     \
    X(FK_DELAY, "delay", FAULT_ACT, false)                                                         \
    X(FK_JITTER, "jitter", FAULT_ACT, false)                                                       \
    X(FK_RESPONSE_DELAY, "response_delay", FAULT_ACT, false)                                       \
    X(FK_DROP, "drop", FAULT_ACT, false)                                                           \
    X(FK_RESET, "reset", FAULT_ACT, false)                                                         \
    X(FK_TRUNCATE, "truncate", FAULT_ACT, false)                                                   \
    X(FK_THROTTLE, "throttle", FAULT_ACT, false)                                                   \
    X(FK_INTERIM, "interim", FAULT_ACT, false)                                                     \
    X(FK_INTERIM_INTERVAL, "interim_interval", FAULT_ACT, false)

enum fault_key_kind {
    FAULT_MATCH,
    FAULT_WHEN,
    FAULT_ACT,
};

enum fault_key {
#define X(id, name, kind, rep) id,
    FAULT_KEY_LIST(X)
#undef X
    FK_COUNT
};

/* Delay shapes: a fixed value (with optional ± jitter), uniform(min,max), lognormal(median,p99). */
#define FAULT_DELAY_LIST(X)                                                                        \
    X(FAULT_DELAY_NONE, "none")                                                                    \
    X(FAULT_DELAY_FIXED, "fixed")                                                                  \
    X(FAULT_DELAY_UNIFORM, "uniform")                                                              \
    X(FAULT_DELAY_LOGNORMAL, "lognormal")

enum fault_delay_kind {
#define X(id, name) id,
    FAULT_DELAY_LIST(X)
#undef X
};

struct fault_delay {
    enum fault_delay_kind kind;
    uint64_t a_ms;                     /* fixed: the value; uniform: min; lognormal: median */
    uint64_t b_ms;                     /* fixed: jitter (±); uniform: max; lognormal: p99 */
};

/* An IPv4 or IPv6 address, IPv4 also as the v4-mapped IPv6 form ::ffff:a.b.c.d. */
struct fault_addr {
    uint8_t bytes[16];                 /* IPv4 in the first 4 */
    bool v6;
};

/* A CIDR block: "127.0.0.0/8", "::1" (a whole address without /bits). */
struct fault_cidr {
    struct fault_addr net;
    uint8_t bits;
};

/* One entry of `status`: a code with its weight; pass: 200 in a weighted list (to the origin). */
struct fault_status {
    uint16_t code;
    bool pass;
    double weight;                     /* 1 for a lone status */
};

/* Strings of a rule live in its text store: a uint16_t offset of a NUL-terminated string there,
 * 0 for none (text[0] is the empty string). */
struct fault_rule {
    uint16_t name;                     /* the rule's name (FAULT_NAME_MAX) */
    uint16_t raw[FK_COUNT];            /* each key's value as written (the last one of a list) */
    uint32_t set;                      /* bit per key that was given (1u << FK_...) */
    /* matchers: every one that is set must hold */
    uint16_t route;                    /* route name */
    uint16_t host;                     /* exact or "*.example.com", lowercase */
    uint16_t prefix;                   /* path prefix */
    uint16_t prefix_len;               /* its length ... */
    bool prefix_plain;                 /* ... and whether it reads as itself (route_plain_len):
                                          known once, not worked out per request */
    enum http_method methods[FAULT_MAX_LIST]; /* known methods (http1.h) */
    int nmethods;
    uint16_t match_headers[FAULT_MAX_LIST]; /* "name" or "name=value" */
    int nmatch_headers;
    struct fault_cidr clients[FAULT_MAX_LIST];
    int nclients;
    /* when it fires */
    bool enabled;                      /* at start (the admin API changes the runtime state) */
    double probability;                /* 0..1, default 1 */
    uint64_t first;                    /* only the first N matching requests; 0: no limit */
    uint64_t every;                    /* only every Nth matching request; 0: every one */
    uint64_t after_ms;                 /* active from this long after start or enable */
    uint64_t for_ms;                   /* ... for this long; 0: no end */
    uint64_t max_active;               /* at most this many requests under it at once; 0: any */
    /* what it does */
    struct fault_status statuses[FAULT_MAX_LIST];
    int nstatuses;
    uint16_t reason;                   /* status line phrase of the answer, 0: the registry's */
    uint16_t body;                     /* body of the answer, 0: "<code> <phrase>" */
    uint16_t headers[FAULT_MAX_LIST];  /* "Name: value" fields of the answer */
    int nheaders;
    enum failure_type failure;         /* FAIL_NONE: none */
    struct fault_delay delay;          /* before the origin is contacted */
    uint64_t jitter_ms;                /* a fixed delay varies by up to this much either way */
    struct fault_delay response_delay; /* before the origin's response reaches us (from its
                                          first byte) */
    bool drop;                         /* close without a response (FIN) */
    bool reset;                        /* close with RST, nothing sent */
    uint64_t truncate;                 /* FK_TRUNCATE set: body bytes relayed before the cut */
    uint64_t throttle;                 /* response body bytes per second, 0: unthrottled */
    uint16_t interim[FAULT_MAX_LIST];  /* 1xx sent before the origin is contacted */
    int ninterim;
    uint64_t interim_interval_ms;      /* between two of them (and after the last) */
    uint16_t used;                     /* bytes of text taken (text[0] is the empty string) */
    char text[FAULT_TEXT_MAX];
};

/* ---- rules: building and checking ---- */

/* An empty rule named name (truncated to FAULT_NAME_MAX - 1), with the defaults: enabled,
 * probability 1, no matcher, no action. */
void fault_rule_init(struct fault_rule *r, const char *name);

/* The string s of rule r ("" for none). */
const char *fault_text(const struct fault_rule *r, uint16_t s);

/* The key named name, or -1. */
int fault_key_find(const char *name);

/* Name, kind and repeatability of a key. */
const char *fault_key_name(enum fault_key k);
enum fault_key_kind fault_key_kind(enum fault_key k);
bool fault_key_repeatable(enum fault_key k);

/* Sets key k of r from its written value (surrounding blanks ignored). 0, or -1 with a one-line
 * reason in why[size] that names the key and the bad part ("delay: 'uniform(2s,1s)': min is
 * above max"). A key given twice replaces the value, a repeatable key adds one. */
int fault_rule_set(struct fault_rule *r, enum fault_key k, const char *value, char *why,
                   size_t size);

/* The same for a key given by name (the header, the admin API): an unknown key, or one that is
 * not repeatable given twice, is refused, and so is what fault_bare_seconds finds (neither has a
 * channel for a warning, and a request would wait an hour where 5 s was meant). */
int fault_rule_set_key(struct fault_rule *r, const char *key, const char *value, char *why,
                       size_t size);

/* The first bare number of 1000 or more in a value of delay, response_delay, jitter or
 * interim_interval (seconds, where an HAProxy user means milliseconds): "5000 is 5000 s
 * (1h23m20s)" into note, and the number as *num, *num_len. False when there is none, and for
 * after and for, whose usual values are minutes to hours. */
bool fault_bare_seconds(enum fault_key k, const char *value, char *note, size_t size,
                        const char **num, size_t *num_len);

/* Checks a complete rule: at least one action, actions that go together, values that need
 * others (jitter a fixed delay, reason a status ...). 0, or -1 with a one-line reason. */
int fault_rule_check(const struct fault_rule *r, char *why, size_t size);

/* Whether the rule needs the origin's response (response_delay, truncate, throttle). */
bool fault_rule_needs_response(const struct fault_rule *r);

/*
 * Parses a Portico-Fault request header value, "delay=2s; status=429" (the INI's keys and
 * spellings, ';' between them), into a rule named name. Only action keys and probability are
 * taken. 0, or -1 with a one-line reason naming the bad part.
 */
int fault_header_parse(const char *value, size_t len, const char *name, struct fault_rule *r,
                       char *why, size_t size);

/*
 * Splits a list of key=value pairs: separated by newlines (and '&' when url-encoded), blanks
 * around keys and values ignored, empty lines and ';' / '#' comment lines skipped; with
 * url_encoded, "%XX" and '+' are decoded. Calls pair(arg, key, value) for each, NUL-terminated;
 * a non-zero return stops the walk and is returned. -1 with why when a line has no '=' or
 * the text is longer than what can be decoded (FAULT_TEXT_MAX).
 */
int fault_pairs(const char *text, size_t len, bool url_encoded,
                int (*pair)(void *arg, const char *key, const char *value, char *why, size_t size),
                void *arg, char *why, size_t size);

/* ---- addresses ---- */

/* Parses a numeric IPv4 or IPv6 address. 0 or -1. */
int fault_addr_parse(const char *text, struct fault_addr *out);

/* Parses a comma-separated CIDR list ("127.0.0.0/8, ::1") into out[max]. Returns how many, or
 * -1 with a reason in why (a bad entry, or more than max). */
int fault_cidr_list(const char *text, struct fault_cidr *out, int max, char *why, size_t size);

/* Whether addr is in one of the blocks (a v4-mapped IPv6 address matches IPv4 blocks). */
bool fault_cidr_contains(const struct fault_cidr *list, int n, const struct fault_addr *addr);

/* ---- matching ---- */

/* What the matchers look at. */
struct fault_request {
    const char *route;                 /* the route's name, NULL: not routed */
    const char *host;                  /* Host or authority (port and case ignored), may be NULL */
    size_t host_len;
    const char *path;                  /* the path the routes match on */
    size_t path_len;
    size_t path_plain;                 /* route_plain_len of path (0: not known): a prefix
                                          that reads as itself is compared with memcmp there */
    enum http_method method;
    const struct h1_field *fields;     /* the request's header fields */
    size_t nfields;
    const struct fault_addr *client;   /* NULL: unknown (a client matcher does not hold) */
};

/* Whether every matcher of r holds for q. */
bool fault_match(const struct fault_rule *r, const struct fault_request *q);

/* ---- randomness ---- */

/* A splitmix64 generator shared by threads: one atomic add per draw, so a given sequence of
 * decisions is the same on every run with the same seed, whichever worker takes a request. */
struct fault_rng {
    _Atomic uint64_t state;
};

/* Starts g at seed: the same seed gives the same sequence of draws. */
void fault_rng_init(struct fault_rng *g, uint64_t seed);

/* The next 64 random bits of g. */
uint64_t fault_rng_next(struct fault_rng *g);

/* A uniform draw in [0, 1). */
double fault_rng_unit(struct fault_rng *g);

/* One delay drawn from d (0 for FAULT_DELAY_NONE), in ms. */
uint64_t fault_delay_draw(const struct fault_delay *d, struct fault_rng *g);

/* ---- the runtime state of a rule, and the decision ---- */

/*
 * What changes while serving: the control (enabled, probability, the after/for window's start,
 * an admin change's auto-revert) and the counters. The control is written by one writer at a
 * time (the caller serializes admin changes) under a sequence count, and read by any number of
 * workers without a lock; the counters are atomics.
 */
struct fault_state {
    _Atomic unsigned seq;              /* odd while the control is being written */
    _Atomic bool enabled;
    _Atomic double probability;
    _Atomic uint64_t since_ms;         /* start or last enable: the after/for window's origin */
    _Atomic uint64_t revert_at_ms;     /* an admin change ends then (0: none) ... */
    _Atomic bool saved_enabled;        /* ... and these come back */
    _Atomic double saved_probability;
    _Atomic bool deleted;
    _Atomic uint64_t matched;          /* matching requests while enabled, since the last enable */
    _Atomic uint64_t hits;             /* requests it fired for, ever */
    _Atomic uint64_t active;           /* requests under it now */
};

/* The control as it is at now_ms (a revert due by then applied). */
struct fault_control {
    bool enabled;
    double probability;
    uint64_t since_ms;
    uint64_t revert_at_ms;             /* 0: none pending */
};

/* Where a rule is in its life at now_ms, for the admin listing. */
#define FAULT_PHASE_LIST(X)                                                                        \
    X(FAULT_ARMED, "armed")           /* fires when a request matches */                           \
    X(FAULT_DISABLED, "disabled")                                                                  \
    X(FAULT_WAITING, "waiting")       /* before `after` has passed */                              \
    X(FAULT_EXPIRED, "expired")       /* `for` has passed */                                       \
    X(FAULT_SPENT, "spent")           /* `first` requests were matched: resting */                 \
    X(FAULT_DELETED, "deleted")

enum fault_phase {
#define X(id, name) id,
    FAULT_PHASE_LIST(X)
#undef X
};

/* A change from the admin API: -1 / a negative probability keeps the value. for_ms: the change
 * reverts after that long (0: it stays). */
struct fault_change {
    int enabled;
    double probability;
    uint64_t for_ms;
};

/* Starts the state of r at now_ms (its `enabled`, probability, window from now). */
void fault_state_init(struct fault_state *s, const struct fault_rule *r, uint64_t now_ms);

/* Reads the control at now_ms. */
void fault_state_read(struct fault_state *s, uint64_t now_ms, struct fault_control *out);

/* Applies a change at now_ms. One writer at a time. Enabling restarts the after/for window and
 * the first/every count. */
void fault_state_change(struct fault_state *s, uint64_t now_ms, const struct fault_change *c);

/* Where r with state s is at now_ms. */
enum fault_phase fault_state_phase(const struct fault_rule *r, struct fault_state *s,
                                   uint64_t now_ms);

/* What one firing means for one request. */
struct fault_pick {
    int status;                        /* answer with this status; 0: none (to the origin, or a
                                          failure, drop or reset) */
    uint64_t delay_ms;                 /* before the origin is contacted */
    uint64_t response_delay_ms;        /* before the origin's final head is relayed */
};

/*
 * Whether rule r, which matches the request, fires for it at now_ms: enabled and inside its
 * after/for window, then (counting the request as matched) within first, on every-th, the
 * probability drawn from g, and under max_active. s NULL: a one-request rule (the header's):
 * only probability counts. *pick is drawn; when it leaves nothing to do (a weighted status chose
 * the origin, and the rule does nothing else) the rule does not fire. When it fires the request
 * is counted active (see fault_release) and a hit; returns true.
 */
bool fault_decide(const struct fault_rule *r, struct fault_state *s, uint64_t now_ms,
                  struct fault_rng *g, struct fault_pick *pick);

/* A request the rule fired for is over (max_active). */
void fault_release(struct fault_state *s);

/* Names of enum values. Never NULL. */
const char *fault_phase_name(enum fault_phase p);

#endif
