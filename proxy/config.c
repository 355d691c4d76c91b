/*
 * config.c — INI loading: a key table per section type, strict value parsers, then one
 * validation pass for defaults and cross-references. See config.h.
 *
 * inih as packaged by Debian does not pass line numbers to the handler, so lines are counted in
 * our own reader (ini_parse_stream). The reader also sees section headers, which lets us report
 * unknown or empty sections that inih would never hand to the handler.
 */
#include "portico/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "portico/tls.h"
#include "portico/util.h"

#define MAX_UPSTREAMS 256
#define MAX_ROUTES 1024

static const struct {
    const char *key;
    uint64_t def_ms;
} timer_rows[TIMER_COUNT] = {
#define X(id, key, def) [id] = {key, def},
    TIMER_LIST(X)
#undef X
};

const char *timer_name(enum timer_kind t)
{
    return (unsigned)t < TIMER_COUNT ? timer_rows[t].key : "unknown";
}

enum section_kind { SEC_NONE, SEC_PROXY, SEC_UPSTREAM, SEC_ROUTE, SEC_ERRORS, SEC_BAD };

/* Parsing state shared by the reader and the handler. */
struct loader {
    struct config *cfg;
    const char *name;           /* file name for messages */
    FILE *errors;
    int nerrors;
    int line;                   /* line of the chunk the reader returned last */
    bool at_line_start;
    /* input: either a FILE or a string */
    FILE *fp;
    const char *text;
    size_t text_pos;
    /* current section */
    enum section_kind sec;
    int sec_line;
    bool sec_reported;          /* an error about this section header was already printed */
    struct upstream_conf *up;   /* current [upstream] */
    struct route_conf *route;   /* current [route] */
    /* keys seen in the current section, for duplicate detection */
    const char *seen[64];
    int nseen;
    int upstream_key_line[MAX_ROUTES];  /* per route: line of `upstream =` */
    int upstreams_cap;                  /* allocated entries of cfg->upstreams */
    int routes_cap;                     /* allocated entries of cfg->routes */
    bool seen_listen;
    int proxy_line;             /* first [proxy] and [errors]: a second one is a duplicate */
    int errors_line;
    int tls_listen_line;        /* first `listen = ... tls`, where a missing tls_cert is reported */
    int proxy_key_line[64];     /* per proxy_keys row: line it was set on, for validate() */
    int first_syntax_line;      /* first syntax error the reader reported (inih reports only one) */
};

static void report(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct loader *ld, int line, const char *fmt, ...)
{
    va_list ap;
    ld->nerrors++;
    if (!ld->errors)
        return;
    /* One line, one write: worker threads log to the same stderr while a reload loads. */
    char text[PATH_MAX + 512];
    int n = snprintf(text, sizeof(text), "%s:%d: ", ld->name, line);
    if (n < 0 || (size_t)n >= sizeof(text) - 2)
        n = 0;
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof(text) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    strcat(text, "\n");
    fputs(text, ld->errors);
}

static bool same_sockaddr(const struct sockaddr_storage *a, socklen_t alen,
                          const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* ---- value parsers: each returns 0 or -1 after reporting ---- */

enum key_type {
    K_DURATION, /* uint64_t ms */
    K_SIZE,     /* uint64_t bytes */
    K_BOOL,     /* bool */
    K_UINT,     /* uint64_t in [min, max] */
    K_STRING,   /* char * */
    K_PATH,     /* char *, resolved against the INI directory */
    K_LISTEN,   /* appended to cfg->listens */
    K_ORIGIN,   /* appended to upstream->origins */
    K_PROFILE,  /* enum error_profile */
    K_EXPECT,   /* enum expect_mode */
    K_HINT,     /* appended to route->early_hints */
    K_TIMER,    /* timer index in min; stored in timers_ms[] of proxy or upstream */
    K_HOSTPORT, /* char *, validated as host:port */
    K_HOST,     /* char *, route host pattern */
    K_PREFIX,   /* char *, path prefix */
    K_TRISTATE, /* bool + int set marker (interim_resets_timer in upstream) */
};

struct key_spec {
    const char *key;
    enum key_type type;
    size_t offset;  /* into struct config / upstream_conf / route_conf */
    uint64_t min;
    uint64_t max;
};

#define CFG(f) offsetof(struct config, f)
#define UPS(f) offsetof(struct upstream_conf, f)
#define RTE(f) offsetof(struct route_conf, f)

static const struct key_spec proxy_keys[] = {
    {"listen", K_LISTEN, 0, 0, 0},
    {"workers", K_UINT, CFG(workers), 1, CFG_MAX_WORKERS},
    {"client_header_timeout", K_DURATION, CFG(client_header_timeout_ms), 1, 0},
    {"client_body_timeout", K_DURATION, CFG(client_body_timeout_ms), 1, 0},
    {"client_send_timeout", K_DURATION, CFG(client_send_timeout_ms), 1, 0},
    {"keepalive_timeout", K_DURATION, CFG(keepalive_timeout_ms), 0, 0},
    {"max_header_size", K_SIZE, CFG(max_header_size), 1024, 1u << 20},
    {"max_request_line", K_SIZE, CFG(max_request_line), 256, 1u << 20},
    {"max_body_size", K_SIZE, CFG(max_body_size), 0, UINT64_C(1) << 62},
    {"dns_timeout", K_TIMER, CFG(timers_ms), TIMER_DNS, 0},
    {"connect_timeout", K_TIMER, CFG(timers_ms), TIMER_CONNECT, 0},
    {"tls_timeout", K_TIMER, CFG(timers_ms), TIMER_TLS, 0},
    {"send_timeout", K_TIMER, CFG(timers_ms), TIMER_SEND, 0},
    {"first_byte_timeout", K_TIMER, CFG(timers_ms), TIMER_FIRST_BYTE, 0},
    {"read_timeout", K_TIMER, CFG(timers_ms), TIMER_READ, 0},
    {"total_timeout", K_TIMER, CFG(timers_ms), TIMER_TOTAL, 0},
    {"interim_resets_timer", K_BOOL, CFG(interim_resets_timer), 0, 0},
    {"error_profile", K_PROFILE, CFG(profile), 0, 0},
    {"resolver", K_HOSTPORT, CFG(resolver), 0, 0},
    {"tls_cert", K_PATH, CFG(tls_cert), 0, 0},
    {"tls_key", K_PATH, CFG(tls_key), 0, 0},
    {"proxy_status", K_BOOL, CFG(proxy_status), 0, 0},
    {"error_page_dir", K_PATH, CFG(error_page_dir), 0, 0},
    {"access_log", K_STRING, CFG(access_log), 0, 0},
    {"admin_listen", K_HOSTPORT, CFG(admin_listen_text), 0, 0},
};
_Static_assert(ARRAY_LEN(proxy_keys) <= 64, "loader.proxy_key_line is too small");

static const struct key_spec upstream_keys[] = {
    {"origin", K_ORIGIN, 0, 0, 0},
    {"keepalive", K_UINT, UPS(keepalive), 0, 100000},
    {"keepalive_timeout", K_DURATION, UPS(keepalive_timeout_ms), 1, 0},
    {"dns_timeout", K_TIMER, UPS(timers_ms), TIMER_DNS, 0},
    {"connect_timeout", K_TIMER, UPS(timers_ms), TIMER_CONNECT, 0},
    {"tls_timeout", K_TIMER, UPS(timers_ms), TIMER_TLS, 0},
    {"send_timeout", K_TIMER, UPS(timers_ms), TIMER_SEND, 0},
    {"first_byte_timeout", K_TIMER, UPS(timers_ms), TIMER_FIRST_BYTE, 0},
    {"read_timeout", K_TIMER, UPS(timers_ms), TIMER_READ, 0},
    {"total_timeout", K_TIMER, UPS(timers_ms), TIMER_TOTAL, 0},
    {"interim_resets_timer", K_TRISTATE, UPS(interim_resets_timer), 0, 0},
    {"max_fails", K_UINT, UPS(max_fails), 0, 1000000},
    {"fail_timeout", K_DURATION, UPS(fail_timeout_ms), 1, 0},
    {"tls", K_BOOL, UPS(tls), 0, 0},
    {"verify", K_BOOL, UPS(verify), 0, 0},
    {"ca_file", K_PATH, UPS(ca_file), 0, 0},
    {"sni", K_STRING, UPS(sni), 0, 0},
    {"client_cert", K_PATH, UPS(client_cert), 0, 0},
    {"client_key", K_PATH, UPS(client_key), 0, 0},
};

static const struct key_spec route_keys[] = {
    {"host", K_HOST, RTE(host), 0, 0},
    {"prefix", K_PREFIX, RTE(prefix), 0, 0},
    {"upstream", K_STRING, RTE(upstream_name), 0, 0},
    {"expect", K_EXPECT, RTE(expect), 0, 0},
    {"continue_timeout", K_DURATION, RTE(continue_timeout_ms), 0, 0},
    {"processing_interval", K_DURATION, RTE(processing_interval_ms), 0, 0},
    {"early_hints", K_HINT, 0, 0, 0},
    {"early_hints_learn", K_BOOL, RTE(early_hints_learn), 0, 0},
    {"early_hints_cache", K_UINT, RTE(early_hints_cache), 1, 1000000},
};

static const struct key_spec *find_key(const struct key_spec *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].key, name) == 0)
            return &keys[i];
    return NULL;
}

/* Relative paths resolve against the directory of the INI file, not the working directory. */
static char *resolve_path(const struct config *cfg, const char *value)
{
    if (value[0] == '/' || !cfg->dir)
        return xstrdup(value);
    size_t n = strlen(cfg->dir) + 1 + strlen(value) + 1;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/%s", cfg->dir, value);
    return p;
}

static int store_string(char **slot, char *value)
{
    free(*slot);
    *slot = value;
    return 0;
}

static int parse_listen(struct loader *ld, const char *value)
{
    struct config *cfg = ld->cfg;
    char addr[300], host[256];
    const char *why = NULL;
    bool tls = false;
    const char *sp = strpbrk(value, " \t");
    size_t alen = sp ? (size_t)(sp - value) : strlen(value);
    if (alen >= sizeof(addr)) {
        report(ld, ld->line, "listen: address too long");
        return -1;
    }
    memcpy(addr, value, alen);
    addr[alen] = '\0';
    if (sp) {
        while (*sp == ' ' || *sp == '\t')
            sp++;
        if (strcmp(sp, "tls") != 0) {
            report(ld, ld->line, "listen: unknown option '%s' (expected 'tls')", sp);
            return -1;
        }
        tls = true;
    }
    uint16_t port;
    if (split_host_port(addr, host, sizeof(host), &port, &why) != 0) {
        report(ld, ld->line, "listen: '%s': %s", addr, why);
        return -1;
    }
    if (cfg->nlisten >= CFG_MAX_LISTEN) {
        report(ld, ld->line, "listen: at most %d listen addresses", CFG_MAX_LISTEN);
        return -1;
    }
    struct listen_conf *l = &cfg->listens[cfg->nlisten];
    if (numeric_sockaddr(host, port, &l->addr, &l->addrlen) != 0) {
        report(ld, ld->line, "listen: '%s' is not a numeric IPv4 or [IPv6] address", host);
        return -1;
    }
    /* Twice the same address would be two sockets splitting its connections between them. */
    for (int i = 0; i < cfg->nlisten; i++) {
        if (same_sockaddr(&cfg->listens[i].addr, cfg->listens[i].addrlen, &l->addr, l->addrlen)) {
            report(ld, ld->line, "listen: %s is already a listen address", addr);
            return -1;
        }
    }
    l->tls = tls;
    if (tls && !ld->tls_listen_line)
        ld->tls_listen_line = ld->line;
    snprintf(l->text, sizeof(l->text), "%s%s", addr, tls ? " tls" : "");
    cfg->nlisten++;
    return 0;
}

static int parse_origin(struct loader *ld, struct upstream_conf *up, const char *value)
{
    if (up->norigins >= CFG_MAX_ORIGINS) {
        report(ld, ld->line, "origin: at most %d origins per upstream", CFG_MAX_ORIGINS);
        return -1;
    }
    struct origin_conf *o = &up->origins[up->norigins];
    memset(o, 0, sizeof(*o));
    if (strcmp(value, "sim") == 0) {
        o->host = xstrdup("127.0.0.1");
        o->is_sim = true;
        o->numeric = true;
        snprintf(o->text, sizeof(o->text), "sim");
        up->norigins++;
        return 0;
    }
    char host[256];
    const char *why = NULL;
    if (split_host_port(value, host, sizeof(host), &o->port, &why) != 0) {
        report(ld, ld->line, "origin: '%s': %s", value, why);
        return -1;
    }
    o->host = xstrdup(host);
    o->numeric = numeric_sockaddr(host, o->port, &o->addr, &o->addrlen) == 0;
    snprintf(o->text, sizeof(o->text), "%s", value);
    up->norigins++;
    return 0;
}

static int parse_host_pattern(struct loader *ld, const char *value, char **slot)
{
    size_t n = strlen(value);
    while (n > 0 && value[n - 1] == '.') /* "example.com." is "example.com", as in cfg_route */
        n--;
    size_t i = n >= 2 && value[0] == '*' && value[1] == '.' ? 2 : 0;
    if (i == n) {
        report(ld, ld->line, "host: empty host name");
        return -1;
    }
    for (; i < n; i++) {
        if (!(isalnum((unsigned char)value[i]) || value[i] == '.' || value[i] == '-' ||
              value[i] == '_')) {
            report(ld, ld->line, "host: invalid character '%c' in '%s' (exact name or *.domain)",
                   value[i], value);
            return -1;
        }
    }
    char *lower = xstrdup(value);
    lower[n] = '\0';
    for (char *q = lower; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return store_string(slot, lower);
}

static int parse_value(struct loader *ld, const struct key_spec *k, void *base, const char *value)
{
    uint64_t v;
    bool b;
    char *slot_base = base;
    switch (k->type) {
    case K_DURATION:
        if (parse_duration_ms(value, &v) != 0) {
            report(ld, ld->line, "%s: '%s' is not a duration (e.g. 250ms, 2s, 1m)", k->key, value);
            return -1;
        }
        if (k->min && v < k->min) {
            report(ld, ld->line, "%s: must be at least %llums", k->key,
                   (unsigned long long)k->min);
            return -1;
        }
        *(uint64_t *)(slot_base + k->offset) = v;
        return 0;
    case K_TIMER:
        if (parse_duration_ms(value, &v) != 0) {
            report(ld, ld->line, "%s: '%s' is not a duration (e.g. 250ms, 2s, 1m)", k->key, value);
            return -1;
        }
        if (v == 0 && k->min != TIMER_TOTAL) {
            report(ld, ld->line, "%s: must be greater than 0 (only total_timeout can be 0 = off)",
                   k->key);
            return -1;
        }
        ((uint64_t *)(slot_base + k->offset))[k->min] = v;
        if (ld->sec == SEC_UPSTREAM)
            ld->up->timer_set[k->min] = true;
        return 0;
    case K_SIZE:
        if (parse_size(value, &v) != 0) {
            report(ld, ld->line, "%s: '%s' is not a size (e.g. 512, 16k, 8m, 1g)", k->key, value);
            return -1;
        }
        if (v < k->min || v > k->max) {
            report(ld, ld->line, "%s: must be between %llu and %llu bytes", k->key,
                   (unsigned long long)k->min, (unsigned long long)k->max);
            return -1;
        }
        *(uint64_t *)(slot_base + k->offset) = v;
        return 0;
    case K_UINT:
        if (parse_uint(value, k->min, k->max, &v) != 0) {
            report(ld, ld->line, "%s: '%s' is not a whole number between %llu and %llu", k->key,
                   value, (unsigned long long)k->min, (unsigned long long)k->max);
            return -1;
        }
        if (k->offset == CFG(workers) && base == ld->cfg)
            ld->cfg->workers = (int)v;
        else
            *(uint64_t *)(slot_base + k->offset) = v;
        return 0;
    case K_BOOL:
    case K_TRISTATE:
        if (parse_bool(value, &b) != 0) {
            report(ld, ld->line, "%s: '%s' is not on/off", k->key, value);
            return -1;
        }
        *(bool *)(slot_base + k->offset) = b;
        if (k->type == K_TRISTATE)
            ld->up->interim_resets_timer_set = b;
        return 0;
    case K_STRING:
        if (!*value) {
            report(ld, ld->line, "%s: empty value", k->key);
            return -1;
        }
        return store_string((char **)(slot_base + k->offset), xstrdup(value));
    case K_PATH:
        if (!*value) {
            report(ld, ld->line, "%s: empty path", k->key);
            return -1;
        }
        return store_string((char **)(slot_base + k->offset), resolve_path(ld->cfg, value));
    case K_HOSTPORT: {
        char host[256];
        uint16_t port;
        const char *why = NULL;
        struct sockaddr_storage sa;
        socklen_t salen;
        if (split_host_port(value, host, sizeof(host), &port, &why) != 0) {
            report(ld, ld->line, "%s: '%s': %s", k->key, value, why);
            return -1;
        }
        if (numeric_sockaddr(host, port, &sa, &salen) != 0) {
            report(ld, ld->line, "%s: '%s' must be a numeric address and port", k->key, value);
            return -1;
        }
        if (k->offset == CFG(admin_listen_text)) {
            ld->cfg->admin_addr = sa;
            ld->cfg->admin_addrlen = salen;
        }
        return store_string((char **)(slot_base + k->offset), xstrdup(value));
    }
    case K_PROFILE: {
        enum error_profile p;
        if (profile_from_name(value, &p) != 0) {
            report(ld, ld->line, "error_profile: '%s' is not one of standard, cloudflare, proxy",
                   value);
            return -1;
        }
        ld->cfg->profile = p;
        return 0;
    }
    case K_EXPECT: {
        static const char *const modes[] = {[EXPECT_RELAY] = "relay",
                                            [EXPECT_SYNTHESIZE] = "synthesize",
                                            [EXPECT_IGNORE] = "ignore"};
        for (size_t i = 0; i < ARRAY_LEN(modes); i++) {
            if (strcmp(value, modes[i]) == 0) {
                ld->route->expect = (enum expect_mode)i;
                return 0;
            }
        }
        report(ld, ld->line, "expect: '%s' is not one of relay, synthesize, ignore", value);
        return -1;
    }
    case K_LISTEN:
        return parse_listen(ld, value);
    case K_ORIGIN:
        return parse_origin(ld, ld->up, value);
    case K_HINT: {
        struct route_conf *r = ld->route;
        if (r->nhints >= CFG_MAX_HINTS) {
            report(ld, ld->line, "early_hints: at most %d per route", CFG_MAX_HINTS);
            return -1;
        }
        for (const char *p = value; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                report(ld, ld->line, "early_hints: control character in value");
                return -1;
            }
        }
        if (value[0] != '<') {
            report(ld, ld->line, "early_hints: '%s' is not a Link value (</path>; rel=preload)",
                   value);
            return -1;
        }
        r->early_hints[r->nhints++] = xstrdup(value);
        return 0;
    }
    case K_HOST:
        return parse_host_pattern(ld, value, (char **)(slot_base + k->offset));
    case K_PREFIX:
        if (value[0] != '/') {
            report(ld, ld->line, "prefix: '%s' must start with '/'", value);
            return -1;
        }
        return store_string((char **)(slot_base + k->offset), xstrdup(value));
    }
    return -1;
}

/* ---- sections ---- */

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

static void upstream_defaults(struct upstream_conf *up)
{
    up->keepalive = 64;
    up->keepalive_timeout_ms = 60000;
    up->verify = true;
    up->fail_timeout_ms = 10000;
    up->interim_resets_timer_set = -1;
}

static void route_defaults(struct route_conf *r)
{
    r->expect = EXPECT_RELAY;
    r->continue_timeout_ms = 1000;
    r->early_hints_cache = 1000;
    r->upstream = -1;
}

/* Makes room for one more entry in an array of n (doubling; sections are few). The current
 * section pointers move with the array. */
static void grow(struct loader *ld, void **array, int *cap, int n, size_t size)
{
    if (n < *cap)
        return;
    int ncap = *cap ? *cap * 2 : 4;
    char *a = realloc(*array, (size_t)ncap * size);
    if (!a)
        abort(); /* configuration time: nothing to save */
    memset(a + (size_t)*cap * size, 0, (size_t)(ncap - *cap) * size);
    if (ld->up && (void *)ld->cfg->upstreams == *array)
        ld->up = (struct upstream_conf *)(void *)(a + ((char *)ld->up - (char *)*array));
    if (ld->route && (void *)ld->cfg->routes == *array)
        ld->route = (struct route_conf *)(void *)(a + ((char *)ld->route - (char *)*array));
    *array = a;
    *cap = ncap;
}

/* Called by the reader for every "[...]" line: opens the section and validates its name. */
static void open_section(struct loader *ld, const char *name, size_t len)
{
    char sec[256];
    struct config *cfg = ld->cfg;
    if (len >= sizeof(sec))
        len = sizeof(sec) - 1;
    memcpy(sec, name, len);
    sec[len] = '\0';
    ld->sec_line = ld->line;
    ld->nseen = 0;
    ld->up = NULL;
    ld->route = NULL;

    char *sp = strchr(sec, ' ');
    const char *arg = NULL;
    if (sp) {
        *sp = '\0';
        arg = sp + 1;
        while (*arg == ' ')
            arg++;
    }
    if (strcmp(sec, "proxy") == 0 || strcmp(sec, "errors") == 0) {
        if (arg) {
            report(ld, ld->line, "[%s] takes no name", sec);
            ld->sec = SEC_BAD;
            return;
        }
        /* A second [proxy] would silently override keys of the first. */
        int *first = sec[0] == 'p' ? &ld->proxy_line : &ld->errors_line;
        if (*first) {
            report(ld, ld->line, "duplicate [%s] (first at line %d)", sec, *first);
            ld->sec = SEC_BAD;
            return;
        }
        *first = ld->line;
        ld->sec = sec[0] == 'p' ? SEC_PROXY : SEC_ERRORS;
        return;
    }
    bool is_up = strcmp(sec, "upstream") == 0, is_route = strcmp(sec, "route") == 0;
    if (!is_up && !is_route) {
        report(ld, ld->line, "unknown section [%.*s] (expected proxy, upstream NAME, route NAME, "
               "errors)", (int)len, name);
        ld->sec = SEC_BAD;
        return;
    }
    if (!arg || !valid_name(arg)) {
        report(ld, ld->line, "[%s] needs a name of letters, digits, '-', '_' or '.'", sec);
        ld->sec = SEC_BAD;
        return;
    }
    if (is_up) {
        for (int i = 0; i < cfg->nupstreams; i++) {
            if (strcmp(cfg->upstreams[i].name, arg) == 0) {
                report(ld, ld->line, "duplicate [upstream %s] (first at line %d)", arg,
                       cfg->upstreams[i].line);
                ld->sec = SEC_BAD;
                return;
            }
        }
        if (cfg->nupstreams >= MAX_UPSTREAMS) {
            report(ld, ld->line, "too many upstreams (max %d)", MAX_UPSTREAMS);
            ld->sec = SEC_BAD;
            return;
        }
        grow(ld, (void **)&cfg->upstreams, &ld->upstreams_cap, cfg->nupstreams,
             sizeof(*cfg->upstreams));
        struct upstream_conf *up = &cfg->upstreams[cfg->nupstreams++];
        memset(up, 0, sizeof(*up));
        upstream_defaults(up);
        up->name = xstrdup(arg);
        up->line = ld->line;
        ld->up = up;
        ld->sec = SEC_UPSTREAM;
        return;
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        if (strcmp(cfg->routes[i].name, arg) == 0) {
            report(ld, ld->line, "duplicate [route %s] (first at line %d)", arg,
                   cfg->routes[i].line);
            ld->sec = SEC_BAD;
            return;
        }
    }
    if (cfg->nroutes >= MAX_ROUTES) {
        report(ld, ld->line, "too many routes (max %d)", MAX_ROUTES);
        ld->sec = SEC_BAD;
        return;
    }
    grow(ld, (void **)&cfg->routes, &ld->routes_cap, cfg->nroutes, sizeof(*cfg->routes));
    struct route_conf *r = &cfg->routes[cfg->nroutes++];
    memset(r, 0, sizeof(*r));
    route_defaults(r);
    r->name = xstrdup(arg);
    r->line = ld->line;
    ld->route = r;
    ld->sec = SEC_ROUTE;
}

static bool repeatable(const struct key_spec *k)
{
    return k->type == K_LISTEN || k->type == K_ORIGIN || k->type == K_HINT;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct loader *ld = user;
    (void)section; /* the reader tracks sections itself, with their line numbers */
    const struct key_spec *keys = NULL;
    size_t nkeys = 0;
    void *base = NULL;

    switch (ld->sec) {
    case SEC_BAD:
        return 1; /* already reported once at the section header */
    case SEC_NONE:
        report(ld, ld->line, "key '%s' outside of any section", name);
        return 1;
    case SEC_ERRORS: {
        enum failure_type t;
        uint64_t code;
        if (failure_from_name(name, &t) != 0) {
            report(ld, ld->line, "[errors]: unknown failure type '%s'", name);
            return 1;
        }
        if (parse_uint(value, 400, 599, &code) != 0) {
            report(ld, ld->line, "[errors] %s: '%s' is not a status code between 400 and 599",
                   name, value);
            return 1;
        }
        if (ld->cfg->error_overrides[t]) {
            report(ld, ld->line, "[errors]: '%s' set twice", name);
            return 1;
        }
        ld->cfg->error_overrides[t] = (int)code;
        return 1;
    }
    case SEC_PROXY:
        keys = proxy_keys, nkeys = ARRAY_LEN(proxy_keys), base = ld->cfg;
        break;
    case SEC_UPSTREAM:
        keys = upstream_keys, nkeys = ARRAY_LEN(upstream_keys), base = ld->up;
        break;
    case SEC_ROUTE:
        keys = route_keys, nkeys = ARRAY_LEN(route_keys), base = ld->route;
        break;
    }
    const struct key_spec *k = find_key(keys, nkeys, name);
    if (!k) {
        report(ld, ld->line, "unknown key '%s' in [%s]", name,
               ld->sec == SEC_PROXY ? "proxy" : ld->sec == SEC_UPSTREAM ? "upstream" : "route");
        return 1;
    }
    if (!repeatable(k)) {
        for (int i = 0; i < ld->nseen; i++) {
            if (ld->seen[i] == k->key) {
                report(ld, ld->line, "'%s' set twice in this section", name);
                return 1;
            }
        }
        if (ld->nseen < (int)ARRAY_LEN(ld->seen))
            ld->seen[ld->nseen++] = k->key;
    }
    if (ld->sec == SEC_PROXY && k->type == K_LISTEN)
        ld->seen_listen = true;
    if (ld->sec == SEC_PROXY)
        ld->proxy_key_line[k - proxy_keys] = ld->line;
    if (ld->sec == SEC_ROUTE && strcmp(k->key, "upstream") == 0)
        ld->upstream_key_line[ld->route - ld->cfg->routes] = ld->line;
    parse_value(ld, k, base, value);
    return 1; /* keep going: report every problem, not just the first */
}

/* The line (leading blanks skipped) is one inih accepts: blank, comment, "[section]" or
 * "name = value" / "name: value", where ';' after a blank starts an inline comment as in inih. */
static bool line_is_valid(const char *p)
{
    if (*p == '\0' || *p == '\r' || *p == '\n' || *p == ';' || *p == '#')
        return true;
    const char *want = *p == '[' ? "]" : "=:";
    bool was_space = false;
    for (const char *q = *p == '[' ? p + 1 : p; *q; q++) {
        if (strchr(want, *q))
            return true;
        if (was_space && *q == ';')
            return false;
        was_space = isspace((unsigned char)*q);
    }
    return false;
}

/* fgets-style reader over a FILE or a string that counts lines and spots section headers. */
static char *reader(char *str, int num, void *stream)
{
    struct loader *ld = stream;
    int n = 0;
    if (num <= 1)
        return NULL;
    if (ld->fp) {
        if (!fgets(str, num, ld->fp))
            return NULL;
        n = (int)strlen(str);
    } else {
        const char *t = ld->text + ld->text_pos;
        if (!*t)
            return NULL;
        while (n < num - 1 && t[n]) {
            str[n] = t[n];
            if (t[n++] == '\n')
                break;
        }
        str[n] = '\0';
        ld->text_pos += (size_t)n;
    }
    if (ld->at_line_start) {
        ld->line++;
        /* A section header: [name] possibly followed by a comment. */
        const char *p = str;
        if (ld->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) /* inih skips a UTF-8 BOM */
            p += 3;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '[') {
            const char *end = strchr(p, ']');
            if (end)
                open_section(ld, p + 1, (size_t)(end - p - 1));
        }
        /* inih stops counting at the first syntax error: spot every one here, in order. */
        bool whole = n < num - 1 || (n > 0 && str[n - 1] == '\n');
        if (whole && !line_is_valid(p)) {
            report(ld, ld->line, "syntax error (expected [section], key = value, or ; comment)");
            if (!ld->first_syntax_line)
                ld->first_syntax_line = ld->line;
        }
    }
    ld->at_line_start = n > 0 && str[n - 1] == '\n';
    return str;
}

/* ---- validation pass ---- */

static void set_defaults(struct config *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = 0;
    cfg->client_header_timeout_ms = 10000;
    cfg->client_body_timeout_ms = 60000;
    cfg->client_send_timeout_ms = 60000;
    cfg->keepalive_timeout_ms = 75000;
    cfg->max_header_size = 16 * 1024;
    cfg->max_request_line = 8 * 1024;
    cfg->max_body_size = UINT64_C(1) << 30;
    for (int t = 0; t < TIMER_COUNT; t++)
        cfg->timers_ms[t] = timer_rows[t].def_ms;
    cfg->interim_resets_timer = true;
    cfg->profile = PROFILE_STANDARD;
    cfg->access_log = xstrdup("stderr");
    (void)cores;
}

/* Line where a [proxy] key was set (0 when it was not). */
static int proxy_key_line(const struct loader *ld, const char *key)
{
    const struct key_spec *k = find_key(proxy_keys, ARRAY_LEN(proxy_keys), key);
    return k ? ld->proxy_key_line[k - proxy_keys] : 0;
}

static void validate(struct loader *ld)
{
    struct config *cfg = ld->cfg;
    struct tls_error e = {0};

    if (cfg->workers == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = cores > 0 ? (int)MIN(cores, 64) : 1;
    }
    if (cfg->nlisten == 0) {
        struct listen_conf *l = &cfg->listens[cfg->nlisten++];
        numeric_sockaddr("127.0.0.1", 8080, &l->addr, &l->addrlen);
        snprintf(l->text, sizeof(l->text), "127.0.0.1:8080");
    }
    if (cfg->max_request_line > cfg->max_header_size)
        cfg->max_request_line = cfg->max_header_size;
    for (int i = 0; cfg->admin_listen_text && i < cfg->nlisten; i++)
        if (same_sockaddr(&cfg->listens[i].addr, cfg->listens[i].addrlen, &cfg->admin_addr,
                          cfg->admin_addrlen))
            report(ld, proxy_key_line(ld, "admin_listen"),
                   "admin_listen: %s is also a listen address", cfg->admin_listen_text);

    bool any_tls_listen = false;
    for (int i = 0; i < cfg->nlisten; i++)
        any_tls_listen |= cfg->listens[i].tls;
    if (any_tls_listen) {
        if (!cfg->tls_cert || !cfg->tls_key) {
            report(ld, ld->tls_listen_line,
                   "a 'listen ... tls' needs tls_cert and tls_key in [proxy]");
        } else if (!(cfg->server_ssl_ctx = tls_server_ctx(cfg->tls_cert, cfg->tls_key, &e))) {
            report(ld, proxy_key_line(ld, "tls_cert"), "tls_cert/tls_key: %s%s%s",
                   e.file ? e.file : "", e.file ? ": " : "", e.text);
        }
    }
    if (cfg->error_page_dir && access(cfg->error_page_dir, R_OK | X_OK) != 0)
        report(ld, proxy_key_line(ld, "error_page_dir"), "error_page_dir: %s: %s",
               cfg->error_page_dir, strerror(errno));

    if (cfg->nupstreams == 0)
        report(ld, 0, "no [upstream] section: Portico needs at least one origin to forward to");

    for (int i = 0; i < cfg->nupstreams; i++) {
        struct upstream_conf *up = &cfg->upstreams[i];
        if (up->norigins == 0)
            report(ld, up->line, "[upstream %s] has no origin", up->name);
        for (int t = 0; t < TIMER_COUNT; t++)
            if (!up->timer_set[t])
                up->timers_ms[t] = cfg->timers_ms[t];
        if (up->interim_resets_timer_set < 0)
            up->interim_resets_timer = cfg->interim_resets_timer;
        bool has_sim = false;
        for (int o = 0; o < up->norigins; o++)
            has_sim |= up->origins[o].is_sim;
        if (up->tls && has_sim)
            report(ld, up->line, "[upstream %s]: the simulator origin does not speak TLS",
                   up->name);
        if (!up->tls && (up->ca_file || up->sni || up->client_cert || up->client_key))
            report(ld, up->line, "[upstream %s]: ca_file/sni/client_cert/client_key need tls = on",
                   up->name);
        bool pair = !!up->client_cert == !!up->client_key;
        if (!pair)
            report(ld, up->line, "[upstream %s]: client_cert and client_key go together",
                   up->name);
        if (up->tls && up->norigins > 0 && pair &&
            !(up->ssl_ctx = tls_client_ctx(up->verify, up->ca_file, up->client_cert,
                                           up->client_key, &e))) {
            const char *key = !e.file                  ? NULL
                              : e.file == up->ca_file  ? "ca_file"
                              : e.file == up->client_cert ? "client_cert"
                                                          : "client_key";
            if (key)
                report(ld, up->line, "[upstream %s]: %s %s: %s", up->name, key, e.file, e.text);
            else
                report(ld, up->line, "[upstream %s]: %s", up->name, e.text);
        }
    }

    if (cfg->nroutes == 0 && cfg->nupstreams == 1) {
        /* One upstream and no route: everything goes there. */
        grow(ld, (void **)&cfg->routes, &ld->routes_cap, cfg->nroutes, sizeof(*cfg->routes));
        struct route_conf *r = &cfg->routes[cfg->nroutes++];
        memset(r, 0, sizeof(*r));
        route_defaults(r);
        r->name = xstrdup("default");
        r->upstream_name = xstrdup(cfg->upstreams[0].name);
    } else if (cfg->nroutes == 0 && cfg->nupstreams > 1) {
        report(ld, 0, "%d upstreams and no [route]: add routes to say which gets what",
               cfg->nupstreams);
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        struct route_conf *r = &cfg->routes[i];
        if (!r->prefix)
            r->prefix = xstrdup("/");
        if (!r->upstream_name) {
            report(ld, r->line, "[route %s] has no upstream", r->name);
            continue;
        }
        for (int u = 0; u < cfg->nupstreams; u++)
            if (strcmp(cfg->upstreams[u].name, r->upstream_name) == 0)
                r->upstream = u;
        if (r->upstream < 0)
            report(ld, ld->upstream_key_line[i] ? ld->upstream_key_line[i] : r->line,
                   "[route %s]: no [upstream %s]", r->name, r->upstream_name);
        for (int j = 0; j < i; j++) {
            const struct route_conf *o = &cfg->routes[j];
            bool same_host = (!o->host && !r->host) || (o->host && r->host &&
                                                        strcmp(o->host, r->host) == 0);
            if (same_host && strcmp(o->prefix, r->prefix) == 0)
                report(ld, r->line, "[route %s] has the same host and prefix as [route %s]",
                       r->name, o->name);
        }
    }
    if (strcmp(cfg->access_log, "stderr") != 0 && strcmp(cfg->access_log, "stdout") != 0 &&
        strcmp(cfg->access_log, "off") != 0 && cfg->access_log[0] != '/') {
        char *abs = resolve_path(cfg, cfg->access_log);
        store_string(&cfg->access_log, abs);
    }
}

static struct config *load(struct loader *ld, int *nerrors)
{
    struct config *cfg = ld->cfg;
    ini_use_stack = false;          /* the Debian build sizes the stack buffer at compile time */
    ini_max_line = 8192;            /* early_hints values can be long */
    ini_allow_multiline = false;    /* a repeated key is a list, never a continuation */
    ini_stop_on_first_error = false;
    ld->at_line_start = true;

    set_defaults(cfg);

    int rc = ini_parse_stream(reader, ld, handler, ld);
    if (rc > 0 && rc != ld->first_syntax_line) /* one the reader did not spot */
        report(ld, rc, "syntax error (expected [section], key = value, or ; comment)");
    else if (rc < 0)
        report(ld, 0, "cannot parse (%s)", rc == -2 ? "out of memory" : "read error");
    validate(ld); /* also after parse errors: `portico -t` lists every problem at once */
    if (nerrors)
        *nerrors = ld->nerrors;
    if (ld->nerrors) {
        cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

struct config *cfg_load(const char *path, FILE *errors, int *nerrors)
{
    struct loader ld = {.name = path, .errors = errors};
    ld.fp = fopen(path, "r");
    if (!ld.fp) {
        if (errors)
            fprintf(errors, "%s:0: cannot open: %s\n", path, strerror(errno));
        if (nerrors)
            *nerrors = 1;
        return NULL;
    }
    ld.cfg = xcalloc(1, sizeof(*ld.cfg));
    ld.cfg->path = xstrdup(path);
    char *tmp = xstrdup(path);
    ld.cfg->dir = xstrdup(dirname(tmp));
    free(tmp);
    struct config *cfg = load(&ld, nerrors);
    fclose(ld.fp);
    return cfg;
}

struct config *cfg_load_string(const char *text, const char *name, const char *dir, FILE *errors,
                               int *nerrors)
{
    struct loader ld = {.name = name, .errors = errors, .text = text};
    ld.cfg = xcalloc(1, sizeof(*ld.cfg));
    ld.cfg->path = xstrdup(name);
    ld.cfg->dir = xstrdup(dir ? dir : ".");
    return load(&ld, nerrors);
}

void cfg_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg->nupstreams; i++) {
        struct upstream_conf *up = &cfg->upstreams[i];
        free(up->name);
        for (int o = 0; o < up->norigins; o++)
            free(up->origins[o].host);
        free(up->ca_file);
        free(up->sni);
        free(up->client_cert);
        free(up->client_key);
        tls_ctx_free(up->ssl_ctx);
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        struct route_conf *r = &cfg->routes[i];
        free(r->name);
        free(r->host);
        free(r->prefix);
        free(r->upstream_name);
        for (int h = 0; h < r->nhints; h++)
            free(r->early_hints[h]);
    }
    free(cfg->upstreams);
    free(cfg->routes);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->resolver);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    tls_ctx_free(cfg->server_ssl_ctx);
    free(cfg->error_page_dir);
    free(cfg->access_log);
    free(cfg->admin_listen_text);
    free(cfg);
}
