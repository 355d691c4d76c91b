/*
 * config_keys.c — the configuration schema, the twemproxy `conf_commands` way: one row per key
 * with its setter and what the setter needs (field offset, bounds, accepted names), so adding a
 * key is adding a row. The timer keys are generated from TIMER_LIST for [proxy] and [upstream]
 * alike. Setters parse strictly, copy strings, resolve relative paths and cap every duration
 * (CFG_MAX_DURATION_MS) and size; cross-references wait for the validation pass in config.c.
 */
#include "config_int.h"

#include <ctype.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/acl.h"
#include "portico/fail_on.h"
#include "portico/failure.h"
#include "portico/fault.h"
#include "portico/hints.h"
#include "portico/mtls.h"
#include "portico/request.h"
#include "portico/retry_budget.h"
#include "portico/retry_on.h"
#include "portico/route_cond.h"
#include "portico/sock.h"
#include "portico/status.h"
#include "portico/syslog.h"
#include "portico/util.h"

/* Name tables of the closed sets; a setter stores the index of the name it finds. */
#define CFG_ENUM_NAME(id, name) [id] = name,
static const char *const expect_names[] = {EXPECT_LIST(CFG_ENUM_NAME)};
static const char *const route_scheme_names[] = {ROUTE_SCHEME_LIST(CFG_ENUM_NAME)};
static const char *const profile_names[] = {PROFILE_LIST(CFG_ENUM_NAME)};
static const char *const log_format_names[] = {LOG_FORMAT_LIST(CFG_ENUM_NAME)};
static const char *const log_level_names[] = {LOG_LEVEL_LIST(CFG_ENUM_NAME)};
static const char *const error_detail_names[] = {ERROR_DETAIL_LIST(CFG_ENUM_NAME)};
static const char *const half_close_names[] = {HALF_CLOSE_LIST(CFG_ENUM_NAME)};
static const char *const balance_names[] = {BALANCE_LIST(CFG_ENUM_NAME)};
static const char *const real_ip_names[] = {REAL_IP_LIST(CFG_ENUM_NAME)};
static const char *const hash_key_names[] = {HASH_KEY_LIST(CFG_ENUM_NAME)};
static const char *const mtls_mode_names[] = {MTLS_MODE_LIST(CFG_ENUM_NAME)};
#undef CFG_ENUM_NAME
_Static_assert(sizeof(enum expect_mode) == sizeof(int) &&
                   sizeof(enum route_scheme) == sizeof(int) &&
                   sizeof(enum balance_policy) == sizeof(int) &&
                   sizeof(enum error_profile) == sizeof(int) &&
                   sizeof(enum log_format) == sizeof(int) &&
                   sizeof(enum log_level) == sizeof(int) &&
                   sizeof(enum error_detail) == sizeof(int) &&
                   sizeof(enum half_close_mode) == sizeof(int) &&
                   sizeof(enum real_ip_field) == sizeof(int) &&
                   sizeof(enum mtls_mode) == sizeof(int),
               "set_enum stores an int");

/* Log targets that are not file paths (error messages cannot be switched off). */
static const char *const access_log_names[] = {"stderr", "stdout", "off"};
static const char *const error_log_names[] = {"stderr", "stdout"};

/* ---- helpers shared with the loader ---- */

/* The text of a message's line, "NAME:LINE: KIND" then the message and a newline, into
 * text[CFG_MESSAGE_MAX]. */
#define CFG_MESSAGE_MAX (PATH_MAX + 514)
static __attribute__((format(printf, 4, 0))) void format_report(struct cfg_loader *ld, int line,
                                                                const char *kind, const char *fmt,
                                                                va_list ap, char *text)
{
    char raw[PATH_MAX + 512];
    int n = snprintf(raw, sizeof(raw), "%s:%d: %s", ld->name, line, kind);
    if (n < 0 || (size_t)n >= sizeof(raw))
        n = 0;
    vsnprintf(raw + n, sizeof(raw) - (size_t)n, fmt, ap);
    /* Names and values come from the file: a control byte is shown as \xNN, never sent raw to a
     * terminal or a log; so are the C1 controls (U+0080-U+009F: U+009B is a terminal's CSI) and
     * bytes that are no UTF-8. One line, one write: worker threads log to the same stderr while
     * a reload loads. */
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)raw; *p && len + 5 < CFG_MESSAGE_MAX;) {
        size_t seq = *p >= 0x80 ? utf8_seq_len(p) : 1;
        bool c1 = seq == 2 && p[0] == 0xc2 && p[1] < 0xa0;
        if (seq == 0 || c1 || *p < 0x20 || *p == 0x7f) {
            len += (size_t)snprintf(text + len, 5, "\\x%02x", *p++);
        } else {
            memcpy(text + len, p, seq); /* seq <= 4 < the room left */
            len += seq;
            p += seq;
        }
    }
    text[len++] = '\n';
    text[len] = '\0';
}

/* Prints "NAME:LINE: message" in one write (when messages are printed at all). */
static __attribute__((format(printf, 3, 0))) void print_report(struct cfg_loader *ld, int line,
                                                               const char *fmt, va_list ap)
{
    if (!ld->errors)
        return;
    char text[CFG_MESSAGE_MAX];
    format_report(ld, line, "", fmt, ap, text);
    fputs(text, ld->errors);
}

static __attribute__((format(printf, 3, 4))) void print_line(struct cfg_loader *ld, int line,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_report(ld, line, fmt, ap);
    va_end(ap);
}

void cfg_report(struct cfg_loader *ld, int line, const char *fmt, ...)
{
    /* A file that is no INI at all (a binary or a log deployed by mistake, /dev/urandom) has an
     * error on every line: millions of messages, which a reload holds in memory on their way
     * to the error log. The problem after CFG_MAX_ERRORS ends the load instead. */
    if (ld->nerrors > CFG_MAX_ERRORS)
        return;
    if (ld->nerrors++ == CFG_MAX_ERRORS) {
        ld->broken = true;
        print_line(ld, line, "more than %d errors; the rest is not checked", CFG_MAX_ERRORS);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    print_report(ld, line, fmt, ap);
    va_end(ap);
}

void cfg_warn(struct cfg_loader *ld, int line, const char *fmt, ...)
{
    struct config *cfg = ld->cfg;
    char text[CFG_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    format_report(ld, line, "warning: ", fmt, ap, text);
    va_end(ap);
    text[strcspn(text, "\n")] = '\0'; /* kept as a line; whoever says it ends it */
    char **w = realloc(cfg->warnings, (size_t)(cfg->nwarnings + 1) * sizeof(*w));
    if (!w) {
        cfg_out_of_memory(ld);
        return;
    }
    cfg->warnings = w;
    if ((w[cfg->nwarnings] = cfg_copy(ld, text)))
        cfg->nwarnings++;
}

char *cfg_line_text(struct cfg_loader *ld, int line, const char *fmt, ...)
{
    char text[CFG_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    format_report(ld, line, "", fmt, ap, text);
    va_end(ap);
    text[strcspn(text, "\n")] = '\0';
    return cfg_copy(ld, text);
}

int cfg_out_of_memory(struct cfg_loader *ld)
{
    if (!ld->broken)
        cfg_report(ld, ld->line, "out of memory");
    ld->broken = true;
    return -1;
}

char *cfg_copy_span(struct cfg_loader *ld, const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (!d) {
        cfg_out_of_memory(ld);
        return NULL;
    }
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *cfg_copy(struct cfg_loader *ld, const char *s)
{
    return cfg_copy_span(ld, s, strlen(s));
}

/* Replaces *slot with value (owned). 0, or -1 when value is NULL (out of memory, reported). */
static int store_string(char **slot, char *value)
{
    if (!value)
        return -1;
    free(*slot);
    *slot = value;
    return 0;
}

/* Relative paths resolve against the directory of the INI file, not the working directory. */
static char *resolve_path(struct cfg_loader *ld, const char *value)
{
    if (value[0] == '/')
        return cfg_copy(ld, value);
    size_t n = strlen(ld->cfg->dir) + 1 + strlen(value) + 1;
    char *p = malloc(n);
    if (!p) {
        cfg_out_of_memory(ld);
        return NULL;
    }
    snprintf(p, n, "%s/%s", ld->cfg->dir, value);
    return p;
}

bool cfg_is_v4_mapped(const struct sockaddr_storage *sa)
{
    return sa->ss_family == AF_INET6 &&
           IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* sa as the IPv4 address an IPv4-mapped one ([::ffff:127.0.0.1]) stands for, else as it is. */
static void unmapped(const struct sockaddr_storage *sa, socklen_t len, struct sockaddr_storage *out,
                     socklen_t *outlen)
{
    if (!cfg_is_v4_mapped(sa)) {
        memcpy(out, sa, len);
        *outlen = len;
        return;
    }
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    memset(out, 0, sizeof(*out));
    v4->sin_family = AF_INET;
    v4->sin_port = v6->sin6_port;
    memcpy(&v4->sin_addr, &v6->sin6_addr.s6_addr[12], 4);
    *outlen = sizeof(*v4);
}

/* [::ffff:127.0.0.1]:80 is 127.0.0.1:80: the kernel gives that address's connections to an IPv4
 * socket over an IPv6 one, so the second listener would get none. */
bool cfg_same_sockaddr(const struct sockaddr_storage *a, socklen_t alen,
                       const struct sockaddr_storage *b, socklen_t blen)
{
    struct sockaddr_storage ua, ub;
    socklen_t ualen, ublen;
    unmapped(a, alen, &ua, &ualen);
    unmapped(b, blen, &ub, &ublen);
    return ualen == ublen && memcmp(&ua, &ub, ualen) == 0;
}

const char *cfg_duration_text(uint64_t ms, char *buf, size_t size)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t i = 0;
    while (i + 1 < ARRAY_LEN(units) && (ms == 0 || ms % units[i].ms != 0))
        i++;
    snprintf(buf, size, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
    return buf;
}

/* A bare number is seconds, as in nginx; HAProxy reads milliseconds, so `connect_timeout = 5000`
 * meant as 5 s loads as 83 minutes without a word. From 1000 on (16m40s), where a number meant
 * as milliseconds is likely, a warning says what it is, named as written: "KEY = VALUE", or
 * "health_check: every VALUE" (name, sep, value). */
static void warn_bare_seconds(struct cfg_loader *ld, const char *name, const char *sep,
                              const char *value)
{
    char note[64];
    if (duration_bare_note(value, strlen(value), note, sizeof(note)))
        cfg_warn(ld, ld->line, "%s%s%s; for milliseconds write %sms", name, sep, note, value);
}

/* ---- the key table: each row names its setter and what the setter needs ---- */

#define FIELD(k, base, type) ((type *)(void *)((char *)(base) + (k)->offset))

/* Parses a duration no longer than the key's maximum; hours_usual: its usual values are an
 * hour or more (tunnel_timeout), so that a bare 3600 is meant as seconds (no warning). */
static int duration_value(struct cfg_loader *ld, const struct cfg_key *k, const char *value,
                          bool hours_usual, uint64_t *ms)
{
    char max[32];
    if (parse_duration_ms(value, ms) != 0) {
        cfg_report(ld, ld->line, "%s: '%s' is not a duration (e.g. 250ms, 2s, 1m)", k->name, value);
        return -1;
    }
    if (*ms > k->max) {
        cfg_report(ld, ld->line, "%s: must be at most %s", k->name,
                   cfg_duration_text(k->max, max, sizeof(max)));
        return -1;
    }
    if (!hours_usual)
        warn_bare_seconds(ld, k->name, " = ", value);
    return 0;
}

static int duration_at_least(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                             const char *value, bool hours_usual)
{
    uint64_t v;
    if (duration_value(ld, k, value, hours_usual, &v) != 0)
        return -1;
    if (v < k->min) {
        cfg_report(ld, ld->line, "%s: must be at least %llums", k->name,
                   (unsigned long long)k->min);
        return -1;
    }
    *FIELD(k, base, uint64_t) = v;
    return 0;
}

static int set_duration(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                        const char *value)
{
    return duration_at_least(ld, k, base, value, false);
}

static int set_long_duration(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                             const char *value)
{
    return duration_at_least(ld, k, base, value, true);
}

/* A timer below its minimum is 0, which only total_timeout takes (as "off"). */
static int set_timer(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    uint64_t v;
    if (duration_value(ld, k, value, false, &v) != 0)
        return -1;
    if (v < k->min) {
        cfg_report(ld, ld->line, "%s: must be greater than 0 (only total_timeout can be 0 = off)",
                   k->name);
        return -1;
    }
    *FIELD(k, base, uint64_t) = v;
    return 0;
}

static int size_value(struct cfg_loader *ld, const struct cfg_key *k, const char *value,
                      uint64_t *v)
{
    if (parse_size(value, v) != 0) {
        cfg_report(ld, ld->line, "%s: '%s' is not a size (e.g. 512, 16k, 8m, 1g)", k->name, value);
        return -1;
    }
    return 0;
}

static int set_size(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    uint64_t v;
    if (size_value(ld, k, value, &v) != 0)
        return -1;
    if (v < k->min || v > k->max) {
        cfg_report(ld, ld->line, "%s: must be between %llu and %llu bytes", k->name,
                   (unsigned long long)k->min, (unsigned long long)k->max);
        return -1;
    }
    *FIELD(k, base, uint64_t) = v;
    return 0;
}

/* A per-client request rate: "20/s", "600/m" (nginx's 20r/s, 600r/m), or "off". */
static int set_client_rate(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                           const char *value)
{
    struct client_rate *r = FIELD(k, base, struct client_rate);
    if (strcmp(value, "off") == 0) {
        *r = (struct client_rate){0};
        return 0;
    }
    const char *p = value;
    uint64_t n = 0;
    /* every digit read, the count held at max + 1 past it: 99999999999/s is out of bounds,
     * not "not N/s" (no digit left unread to end the number early) */
    for (; isdigit((unsigned char)*p); p++)
        n = n > k->max ? n : n * 10 + (uint64_t)(*p - '0');
    bool shaped = p > value && p[0] == '/' && (p[1] == 's' || p[1] == 'm') && p[2] == '\0';
    if (!shaped) {
        cfg_report(ld, ld->line,
                   "%s: '%s' is not N/s or N/m (requests per second or minute) nor off",
                   k->name, value);
        return -1;
    }
    if (n < 1 || n > k->max) {
        cfg_report(ld, ld->line, "%s: '%s': must be between 1 and %llu requests per %s (off "
                   "turns it off)", k->name, value, (unsigned long long)k->max,
                   p[1] == 's' ? "second" : "minute");
        return -1;
    }
    uint64_t period_ns = p[1] == 's' ? UINT64_C(1000000000) : UINT64_C(60000000000);
    *r = (struct client_rate){.count = n, .unit = p[1], .interval_ns = period_ns / n};
    return 0;
}

/* A size within the key's bounds, or 0, which leaves it to the kernel (client_sndbuf,
 * origin_rcvbuf: below its minimum the kernel would raise the buffer to a floor of its own,
 * unsaid). */
static int set_kernel_size(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                           const char *value)
{
    uint64_t v;
    if (size_value(ld, k, value, &v) != 0)
        return -1;
    if (v != 0 && (v < k->min || v > k->max)) {
        cfg_report(ld, ld->line, "%s: must be 0 (the kernel's) or between %llu and %llu bytes",
                   k->name, (unsigned long long)k->min, (unsigned long long)k->max);
        return -1;
    }
    *FIELD(k, base, uint64_t) = v;
    return 0;
}

static int uint_value(struct cfg_loader *ld, const struct cfg_key *k, const char *value,
                      uint64_t *v)
{
    if (parse_uint(value, k->min, k->max, v) != 0) {
        cfg_report(ld, ld->line, "%s: '%s' is not a whole number between %llu and %llu", k->name,
                   value, (unsigned long long)k->min, (unsigned long long)k->max);
        return -1;
    }
    return 0;
}

static int set_uint(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    return uint_value(ld, k, value, FIELD(k, base, uint64_t));
}

static int set_int(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    uint64_t v;
    if (uint_value(ld, k, value, &v) != 0)
        return -1;
    *FIELD(k, base, int) = (int)v; /* max fits: the rows of set_int keep it under INT_MAX */
    return 0;
}

static int set_bool(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    if (parse_bool(value, FIELD(k, base, bool)) != 0) {
        cfg_report(ld, ld->line, "%s: '%s' is not on/off", k->name, value);
        return -1;
    }
    return 0;
}

/* Index of value in the key's names, or -1. */
static int name_index(const struct cfg_key *k, const char *value)
{
    for (size_t i = 0; i < k->nnames; i++)
        if (strcmp(value, k->names[i]) == 0)
            return (int)i;
    return -1;
}

static int set_enum(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    int i = name_index(k, value);
    if (i < 0) {
        char list[256] = "";
        size_t len = 0;
        for (size_t n = 0; n < k->nnames; n++)
            len = buf_appendf(list, sizeof(list), len, "%s%s", n ? ", " : "", k->names[n]);
        cfg_report(ld, ld->line, "%s: '%s' is not one of %s", k->name, value, list);
        return -1;
    }
    *FIELD(k, base, int) = i;
    return 0;
}

static int set_string(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    if (!*value) {
        cfg_report(ld, ld->line, "%s: empty value", k->name);
        return -1;
    }
    return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
}

/* Whether name can go in a ClientHello's server_name (RFC 6066: a DNS name, no trailing dot):
 * labels of letters, digits, '-' and '_' (internal names use it), each 1-63 bytes, 253 in all,
 * within the 255 bytes OpenSSL sends. */
static bool sni_name_valid(const char *name)
{
    size_t len = strlen(name), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (const char *p = name; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* `sni`: a name for the ClientHello or an IP literal (then checked against the certificate's IP
 * and not sent); anything else would fail every handshake, so it fails here, at its line. */
static int set_sni(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    if (numeric_sockaddr(value, 0, &sa, &salen) != 0 && !sni_name_valid(value)) {
        cfg_report(ld, ld->line, "%s: '%s' is neither an IP address nor a host name (labels of "
                                 "letters, digits, '-' and '_' joined by dots, at most 253 bytes, "
                                 "no trailing dot)", k->name, value);
        return -1;
    }
    return set_string(ld, k, base, value);
}

static int set_path(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    if (!*value) {
        cfg_report(ld, ld->line, "%s: empty path", k->name);
        return -1;
    }
    return store_string(FIELD(k, base, char *), resolve_path(ld, value));
}

/* tls_cert or tls_key (k says which): the path goes into the pair of its rank among the lines
 * of its key, so that the Nth of each make a pair, in whichever order the two were written. */
static int set_tls_half(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                        const char *value)
{
    struct config *cfg = base;
    bool is_key = strcmp(k->name, "tls_key") == 0;
    int *seen = is_key ? &ld->tls_keys_seen : &ld->tls_certs_seen;
    if (!*value) {
        cfg_report(ld, ld->line, "%s: empty path", k->name);
        return -1;
    }
    if (*seen >= CFG_MAX_TLS_CERTS) {
        cfg_report(ld, ld->line, "%s: at most %d certificates", k->name, CFG_MAX_TLS_CERTS);
        return -1;
    }
    if (*seen == cfg->ntls_pairs) {
        struct tls_pair_conf *p =
            realloc(cfg->tls_pairs, (size_t)(cfg->ntls_pairs + 1) * sizeof(*p));
        if (!p)
            return cfg_out_of_memory(ld);
        cfg->tls_pairs = p;
        p[cfg->ntls_pairs++] = (struct tls_pair_conf){0};
    }
    struct tls_pair_conf *pair = &cfg->tls_pairs[(*seen)++];
    char *path = resolve_path(ld, value);
    if (!path)
        return -1;
    *(is_key ? &pair->key : &pair->cert) = path;
    *(is_key ? &pair->key_line : &pair->cert_line) = ld->line;
    return 0;
}

/* tls_ocsp_response: the staple of the tls_cert written last above it (the pairs of tls_cert
 * and tls_key go by rank, but a staple is optional: by rank, one certificate without one would
 * shift every later file onto the wrong certificate). One per tls_cert. */
static int set_tls_ocsp(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                        const char *value)
{
    struct config *cfg = base;
    if (!*value) {
        cfg_report(ld, ld->line, "%s: empty path", k->name);
        return -1;
    }
    if (ld->tls_certs_seen == 0) {
        cfg_report(ld, ld->line, "%s: no tls_cert above it: it staples the tls_cert written last "
                                 "before it", k->name);
        return -1;
    }
    struct tls_pair_conf *pair = &cfg->tls_pairs[ld->tls_certs_seen - 1];
    if (pair->ocsp) {
        cfg_report(ld, ld->line, "%s: the tls_cert of line %d (%s) has one already, at line %d: "
                                 "one response per certificate", k->name, pair->cert_line,
                   pair->cert, pair->ocsp_line);
        return -1;
    }
    char *path = resolve_path(ld, value);
    if (!path)
        return -1;
    pair->ocsp = path;
    pair->ocsp_line = ld->line;
    return 0;
}

/* A log target: one of the key's names as written, or a file path. */
static int set_log(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    if (!*value) {
        cfg_report(ld, ld->line, "%s: empty value", k->name);
        return -1;
    }
    if (name_index(k, value) >= 0)
        return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
    if (syslog_target_is(value)) { /* its server is tried at the end of the load (check_log) */
        struct syslog_spec spec;
        char why[320];
        if (syslog_parse(value, &spec, why, sizeof(why)) != 0) {
            cfg_report(ld, ld->line, "%s: %s", k->name, why);
            return -1;
        }
        if (spec.severity_set && strcmp(k->name, "error_log") == 0) {
            cfg_report(ld, ld->line, "%s: syslog severity= is the access_log's: each error-log "
                                     "line has its level's", k->name);
            return -1;
        }
        return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
    }
    if (strcmp(value, "off") == 0) { /* not a file named "off" in the INI's directory */
        cfg_report(ld, ld->line, "%s: cannot be off (stderr, stdout, a file path or "
                                 "syslog:server=ADDR)", k->name);
        return -1;
    }
    return store_string(FIELD(k, base, char *), resolve_path(ld, value));
}

/* A numeric host:port (resolver, admin_listen) into sa. */
static int numeric_host_port(struct cfg_loader *ld, const struct cfg_key *k, const char *value,
                             struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[256];
    uint16_t port;
    const char *why = NULL;
    if (split_host_port(value, host, sizeof(host), &port, &why) != 0) {
        cfg_report(ld, ld->line, "%s: '%s': %s", k->name, value, why);
        return -1;
    }
    if (numeric_sockaddr(host, port, sa, salen) != 0) {
        cfg_report(ld, ld->line, "%s: '%s' must be a numeric address and port", k->name, value);
        return -1;
    }
    return 0;
}

/* The nameserver: a numeric host:port this host can send to. One of a family it has no use for
 * (IPv6 turned off, as in Docker without --ipv6, and [::1]:53) is refused here, by `portico -t`
 * and by a reload (the old configuration keeps serving): libevent's resolver would take it, fail
 * to send each query, and leave every lookup to wait for dns_timeout before a 504. One without a
 * route yet is a warning only: at boot the network may come up after Portico (nginx, unbound
 * and systemd-resolved start then too), and lookups work from the moment the route exists. */
static int set_resolver(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                        const char *value)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    if (numeric_host_port(ld, k, value, &sa, &salen) != 0)
        return -1;
    int err = sock_route_error((const struct sockaddr *)&sa, salen);
    if (err == ENETUNREACH) {
        cfg_warn(ld, ld->line, "%s: '%s': no route to it yet (%s): lookups wait for "
                               "dns_timeout until there is one", k->name, value, strerror(err));
    } else if (sock_no_route(err)) {
        cfg_report(ld, ld->line, "%s: '%s': this host cannot send to it (%s): every lookup "
                                 "would wait for dns_timeout", k->name, value, strerror(err));
        return -1;
    }
    return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
}

static int set_admin_listen(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                            const char *value)
{
    struct config *cfg = base;
    if (numeric_host_port(ld, k, value, &cfg->admin_addr, &cfg->admin_addrlen) != 0)
        return -1;
    cfg->admin_listen_line = ld->line;
    return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
}

/* Adds word[len] to the admin_hosts being built in *names (*n of them): "*", or a host name as
 * host_key reads a Host (lowercase, without the root dot). 0, or -1 after reporting. */
static int admin_host_add(struct cfg_loader *ld, const struct cfg_key *k, const char *word,
                          size_t len, char ***names, int *n)
{
    char name[256];
    size_t nlen = len;
    while (nlen > 1 && word[nlen - 1] == '.') /* "box.internal." is "box.internal" */
        nlen--;
    bool ok = nlen < sizeof(name);
    if (ok) {
        memcpy(name, word, nlen);
        name[nlen] = '\0';
        ok = strcmp(name, "*") == 0 || sni_name_valid(name);
    }
    if (!ok) {
        cfg_report(ld, ld->line, "%s: '%.*s' is neither '*' nor a host name (labels of letters, "
                                 "digits, '-' and '_' joined by dots; no scheme, port or path)",
                   k->name, (int)len, word);
        return -1;
    }
    char **grown = realloc(*names, (size_t)(*n + 1) * sizeof(**names));
    if (!grown)
        return cfg_out_of_memory(ld);
    *names = grown;
    if (!(grown[*n] = cfg_copy(ld, name)))
        return -1;
    for (char *q = grown[(*n)++]; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return 0;
}

/* admin_hosts: the names, besides IP addresses and localhost, whose Host the admin listener
 * answers without admin_token (admin.c), separated by commas or blanks; "*" for any. */
static int set_admin_hosts(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                           const char *value)
{
    struct config *cfg = base;
    char **names = NULL;
    int n = 0, rc = 0;
    if (!value[strspn(value, " \t")]) {
        cfg_report(ld, ld->line, "%s: empty value", k->name);
        return -1;
    }
    for (const char *p = value; rc == 0;) {
        size_t item = strcspn(p, ",");
        size_t words = 0;
        for (size_t i = 0; rc == 0 && i < item;) {
            size_t len = strcspn(p + i, ", \t");
            if (len) {
                rc = admin_host_add(ld, k, p + i, len, &names, &n);
                words++;
            }
            i += len ? len : 1;
        }
        if (rc == 0 && words == 0) { /* "", "a,,b" or "a," */
            cfg_report(ld, ld->line, "%s: empty name in '%s'", k->name, value);
            rc = -1;
        }
        if (!p[item])
            break;
        p += item + 1;
    }
    if (rc != 0) {
        while (n > 0)
            free(names[--n]);
        free(names);
        return -1;
    }
    cfg->admin_hosts = names; /* empty before: the loader refuses a key set twice */
    cfg->nadmin_hosts = n;
    return 0;
}

static int set_listen(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    struct config *cfg = base;
    char addr[300], host[256];
    const char *why = NULL;
    bool tls = false, h2c = false, proxy_protocol = false;
    (void)k;
    const char *sp = strpbrk(value, " \t");
    size_t alen = sp ? (size_t)(sp - value) : strlen(value);
    if (alen >= sizeof(addr)) {
        cfg_report(ld, ld->line, "listen: address too long");
        return -1;
    }
    memcpy(addr, value, alen);
    addr[alen] = '\0';
    /* Options after the address, each once: tls or h2c, and proxy_protocol. */
    while (sp && *sp) {
        sp += strspn(sp, " \t");
        size_t n = strcspn(sp, " \t");
        if (n == 0)
            break;
        bool *opt = n == 3 && strncmp(sp, "tls", 3) == 0   ? &tls
                    : n == 3 && strncmp(sp, "h2c", 3) == 0 ? &h2c
                    : n == 14 && strncmp(sp, "proxy_protocol", 14) == 0 ? &proxy_protocol
                                                                        : NULL;
        if (!opt) {
            cfg_report(ld, ld->line,
                       "listen: unknown option '%.*s' (expected 'tls', 'h2c' or 'proxy_protocol')",
                       (int)MIN(n, 64), sp);
            return -1;
        }
        if (*opt) {
            cfg_report(ld, ld->line, "listen: option '%.*s' given twice", (int)n, sp);
            return -1;
        }
        *opt = true;
        if (tls && h2c) {
            cfg_report(ld, ld->line, "listen: 'tls' and 'h2c' exclude each other (h2 over TLS is "
                                     "offered by ALPN on a tls listener)");
            return -1;
        }
        sp += n;
    }
    uint16_t port;
    if (split_host_port(addr, host, sizeof(host), &port, &why) != 0) {
        cfg_report(ld, ld->line, "listen: '%s': %s", addr, why);
        return -1;
    }
    if (cfg->nlisten >= CFG_MAX_LISTEN) {
        cfg_report(ld, ld->line, "listen: at most %d listen addresses", CFG_MAX_LISTEN);
        return -1;
    }
    struct listen_conf *l = &cfg->listens[cfg->nlisten];
    if (numeric_sockaddr(host, port, &l->addr, &l->addrlen) != 0) {
        cfg_report(ld, ld->line, "listen: '%s' is not a numeric IPv4 or [IPv6] address", host);
        return -1;
    }
    /* Twice the same address would be two sockets splitting its connections between them. */
    for (int i = 0; i < cfg->nlisten; i++) {
        if (cfg_same_sockaddr(&cfg->listens[i].addr, cfg->listens[i].addrlen, &l->addr,
                              l->addrlen)) {
            cfg_report(ld, ld->line, "listen: %s is already a listen address", addr);
            return -1;
        }
    }
    l->tls = tls;
    l->h2c = h2c;
    l->proxy_protocol = proxy_protocol;
    l->line = ld->line;
    if (tls && !ld->tls_listen_line)
        ld->tls_listen_line = ld->line;
    if (h2c && !ld->h2c_listen_line)
        ld->h2c_listen_line = ld->line;
    snprintf(l->text, sizeof(l->text), "%s%s%s", addr, tls ? " tls" : h2c ? " h2c" : "",
             proxy_protocol ? " proxy_protocol" : "");
    cfg->nlisten++;
    return 0;
}

/* One numeric option of an origin line, "NAME=N": its name, bounds, and where it goes. */
struct origin_option {
    const char *name;                  /* with its '=' */
    uint64_t min, max;
    size_t at;                         /* offsetof in struct origin_conf (an unsigned) */
};

static const struct origin_option origin_option_rows[] = {
    {"weight=", 1, CFG_MAX_WEIGHT, offsetof(struct origin_conf, weight)},
    {"max_conns=", 1, CFG_MAX_CONNS, offsetof(struct origin_conf, max_conns)},
};

/* `cookie=VALUE`: the origin's value of its upstream's sticky cookie (HAProxy's `cookie` of a
 * server), 1-32 letters, digits, '-', '_' and '.': safe in any cookie, and never a quote. */
static int origin_cookie(struct cfg_loader *ld, const char *v, struct origin_conf *o)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n < CFG_STICKY_VALUE_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v[i]) || v[i] == '-' || v[i] == '_' || v[i] == '.';
    if (!ok) {
        cfg_report(ld, ld->line, "origin: cookie '%s' is not 1-%d letters, digits, '-', '_' or "
                                 "'.'", v, CFG_STICKY_VALUE_MAX - 1);
        return -1;
    }
    memcpy(o->cookie, v, n + 1);
    o->cookie_set = true;
    return 0;
}

/* "ADDR [weight=N] [max_conns=N] [backup]", the options in any order, each once: the address
 * into addr, the options into o (weight 1 when not given, max_conns 0: the upstream's). */
static int origin_options(struct cfg_loader *ld, const char *value, char *addr, size_t size,
                          struct origin_conf *o)
{
    const char *sp = strpbrk(value, " \t");
    size_t alen = sp ? (size_t)(sp - value) : strlen(value);
    if (alen >= size) {
        cfg_report(ld, ld->line, "origin: address too long");
        return -1;
    }
    memcpy(addr, value, alen);
    addr[alen] = '\0';
    o->weight = 1;
    o->backup = false;
    unsigned seen = 0; /* bit i: origin_option_rows[i] given */
    while (sp && *sp) {
        while (*sp == ' ' || *sp == '\t')
            sp++;
        size_t len = strcspn(sp, " \t");
        char word[64];
        if (len == 0)
            break;
        snprintf(word, sizeof(word), "%.*s", (int)MIN(len, sizeof(word) - 1), sp);
        sp += len;
        if (len == 6 && strncmp(word, "backup", 6) == 0 && !o->backup) {
            o->backup = true; /* nginx's and HAProxy's word */
            continue;
        }
        if (strncmp(word, "cookie=", 7) == 0 && !o->cookie_set) {
            if (origin_cookie(ld, word + 7, o) != 0)
                return -1;
            continue;
        }
        size_t i = 0;
        while (i < ARRAY_LEN(origin_option_rows) &&
               strncmp(word, origin_option_rows[i].name, strlen(origin_option_rows[i].name)) != 0)
            i++;
        if (i < ARRAY_LEN(origin_option_rows) && !(seen & (1u << i))) {
            const struct origin_option *row = &origin_option_rows[i];
            const char *num = word + strlen(row->name);
            uint64_t n;
            if (parse_uint(num, row->min, row->max, &n) != 0) {
                cfg_report(ld, ld->line, "origin: %.*s '%s' is not a whole number between %llu "
                                         "and %llu", (int)strlen(row->name) - 1, row->name, num,
                           (unsigned long long)row->min, (unsigned long long)row->max);
                return -1;
            }
            *(unsigned *)(void *)((char *)o + row->at) = (unsigned)n;
            seen |= 1u << i;
            continue;
        }
        bool repeated = (len == 6 && strncmp(word, "backup", 6) == 0) ||
                        strncmp(word, "cookie=", 7) == 0 || i < ARRAY_LEN(origin_option_rows);
        cfg_report(ld, ld->line,
                   "origin: %s option '%s' (expected weight=N, max_conns=N, backup or "
                   "cookie=VALUE, each once)",
                   repeated ? "repeated" : "unknown", word);
        return -1;
    }
    return 0;
}

/* Whether an origin name can be asked of DNS: a host name as sni_name_valid says, with one final
 * dot allowed (an absolute name). Anything else went out broken: evdns ends a name at an empty
 * label, so "a..b.test" was asked as "a" with a bogus type. */
static bool origin_name_valid(const char *host)
{
    char buf[256];
    const char *name = name_without_root_dot(host, buf, sizeof(buf));
    return name && sni_name_valid(name);
}

static int set_origin(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    struct upstream_conf *up = base;
    (void)k;
    if (up->norigins >= CFG_MAX_ORIGINS) {
        cfg_report(ld, ld->line, "origin: at most %d origins per upstream", CFG_MAX_ORIGINS);
        return -1;
    }
    struct origin_conf *o = &up->origins[up->norigins];
    memset(o, 0, sizeof(*o));
    char addr[300];
    if (origin_options(ld, value, addr, sizeof(addr), o) != 0)
        return -1;
    if (strcmp(addr, "sim") == 0) {
        if (!(o->host = cfg_copy(ld, "127.0.0.1")))
            return -1;
        o->is_sim = true;
        o->numeric = true;
        snprintf(o->text, sizeof(o->text), "sim");
        up->norigins++;
        return 0;
    }
    char host[256];
    const char *why = NULL;
    if (split_host_port(addr, host, sizeof(host), &o->port, &why) != 0) {
        cfg_report(ld, ld->line, "origin: '%s': %s", addr, why);
        return -1;
    }
    bool numeric = numeric_sockaddr(host, o->port, &o->addr, &o->addrlen) == 0;
    if (!numeric && !origin_name_valid(host)) {
        cfg_report(ld, ld->line,
                   "origin: '%s': '%s' is not a host name (labels of letters, digits, '-' and '_' "
                   "joined by dots, each 1-63 bytes, at most 253 bytes, one final dot allowed)",
                   addr, host);
        return -1;
    }
    if (!(o->host = cfg_copy(ld, host)))
        return -1;
    o->numeric = numeric;
    snprintf(o->text, sizeof(o->text), "%s", addr);
    up->norigins++;
    return 0;
}

/* `fail_timeout`: nginx's name for a window and a down time of the same length, kept as the
 * combination of fail_window and down_time it stands for (config.c refuses mixing them). */
static int set_fail_timeout(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                            const char *value)
{
    struct upstream_conf *up = base;
    if (set_duration(ld, k, base, value) != 0)
        return -1;
    up->down_time_ms = up->fail_window_ms;
    return 0;
}

/* retry_budget = 20%: the share of requests in flight that may be retries (retry_budget.h). */
static int set_retry_budget(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                            const char *value)
{
    char why[128];
    struct upstream_conf *up = base;
    (void)k;
    if (retry_budget_parse(value, &up->retry_budget, &up->retry_budget_percent, why,
                           sizeof(why)) != 0) {
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
        return -1;
    }
    return 0;
}

/* retry_on = 502 503 504: the statuses an idempotent request goes to another origin after. */
static int set_retry_on(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                        const char *value)
{
    char why[256];
    if (retry_on_parse(value, FIELD(k, base, uint16_t), why, sizeof(why)) != 0) {
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
        return -1;
    }
    return 0;
}

/* fail_on = 500 503: the statuses an origin's final response counts toward max_fails with. */
static int set_fail_on(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                       const char *value)
{
    char why[256];
    if (fail_on_parse(value, FIELD(k, base, uint16_t), why, sizeof(why)) != 0) {
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
        return -1;
    }
    return 0;
}

#define HEALTH_SYNTAX                                                                              \
    "METHOD /path every DURATION expect STATUS [timeout DURATION] [rise N] [fall N]"

/* The optional words of health_check after `expect STATUS`, each followed by its value, in any
 * order, each at most once. */
#define HEALTH_OPTION_LIST(X)                                                                      \
    X(HEALTH_OPT_TIMEOUT, "timeout") /* a check not answered within it fails (the interval) */     \
    X(HEALTH_OPT_RISE, "rise")       /* passed checks in a row that bring an origin back (1) */    \
    X(HEALTH_OPT_FALL, "fall")       /* failed checks in a row that mark an origin down (1) */

enum health_option {
#define X(id, name) id,
    HEALTH_OPTION_LIST(X)
#undef X
    HEALTH_OPT_COUNT
};

static const char *const health_option_names[] = {
#define X(id, name) [id] = name,
    HEALTH_OPTION_LIST(X)
#undef X
};

/* "200" (one status) or "2xx" (a class) into [lo, hi]. 0 or -1. */
static int health_status(const char *s, int *lo, int *hi)
{
    uint64_t v;
    if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' && strcmp(s + 1, "xx") == 0) {
        *lo = (s[0] - '0') * 100;
        *hi = *lo + 99;
        return 0;
    }
    if (parse_status(s, 100, 599, &v) != 0)
        return -1;
    *lo = *hi = (int)v;
    return 0;
}

/* One duration word of health_check ("every", "timeout"). 0 or -1 after reporting. */
static int health_duration(struct cfg_loader *ld, const char *what, const char *s, uint64_t *ms)
{
    char max[32];
    if (parse_duration_ms(s, ms) != 0 || *ms == 0) {
        cfg_report(ld, ld->line, "health_check: %s '%s' is not a duration above 0 (e.g. 5s)",
                   what, s);
        return -1;
    }
    if (*ms > CFG_MAX_DURATION_MS) {
        cfg_report(ld, ld->line, "health_check: %s must be at most %s", what,
                   cfg_duration_text(CFG_MAX_DURATION_MS, max, sizeof(max)));
        return -1;
    }
    char name[32];
    snprintf(name, sizeof(name), "health_check: %s", what); /* "every" or "timeout" */
    warn_bare_seconds(ld, name, " ", s);
    return 0;
}

/* One count word of health_check ("rise", "fall"). 0 or -1 after reporting. */
static int health_count(struct cfg_loader *ld, const char *what, const char *s, unsigned *n)
{
    uint64_t v;
    if (parse_uint(s, 1, CFG_MAX_HEALTH_COUNT, &v) != 0) {
        cfg_report(ld, ld->line, "health_check: %s '%s' is not a whole number between 1 and %d",
                   what, s, CFG_MAX_HEALTH_COUNT);
        return -1;
    }
    *n = (unsigned)v;
    return 0;
}

/* The optional word w (one of HEALTH_OPTION_LIST), or HEALTH_OPT_COUNT. */
static enum health_option health_option(const char *w)
{
    for (int o = 0; o < HEALTH_OPT_COUNT; o++)
        if (strcmp(w, health_option_names[o]) == 0)
            return (enum health_option)o;
    return HEALTH_OPT_COUNT;
}

/* health_check = METHOD /path every DURATION expect STATUS, then the optional words with their
 * values (HEALTH_OPTION_LIST), word by word. */
static int set_health_check(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                            const char *value)
{
    struct health_check_conf *hc = FIELD(k, base, struct health_check_conf);
    char buf[CFG_MAX_LINE + 1];
    char *w[6 + 2 * HEALTH_OPT_COUNT];
    const char *opt[HEALTH_OPT_COUNT] = {NULL}; /* each optional word's value, as written */
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", value);
    for (char *save = NULL, *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        if (n < (int)ARRAY_LEN(w))
            w[n++] = t;
        else
            n++;
    bool syntax = n >= 6 && n <= (int)ARRAY_LEN(w) && n % 2 == 0 && strcmp(w[2], "every") == 0 &&
                  strcmp(w[4], "expect") == 0;
    for (int i = 6; syntax && i < n; i += 2) {
        enum health_option o = health_option(w[i]);
        if (o == HEALTH_OPT_COUNT) {
            syntax = false;
        } else if (opt[o]) {
            cfg_report(ld, ld->line, "health_check: %s set twice", w[i]);
            return -1;
        } else {
            opt[o] = w[i + 1];
        }
    }
    if (!syntax) {
        cfg_report(ld, ld->line, "health_check: '%s' is not '" HEALTH_SYNTAX "'", value);
        return -1;
    }
    size_t mlen = strlen(w[0]);
    if (mlen > 16 || strspn(w[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != mlen) {
        cfg_report(ld, ld->line, "health_check: method '%s' is not an uppercase method (GET, HEAD)",
                   w[0]);
        return -1;
    }
    bool path_ok = w[1][0] == '/';
    for (const char *p = w[1]; *p; p++)
        path_ok &= (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
    if (!path_ok) {
        cfg_report(ld, ld->line, "health_check: path '%s' must start with '/' and hold visible "
                                 "ASCII only", w[1]);
        return -1;
    }
    uint64_t every, timeout;
    int lo, hi;
    unsigned rise = 1, fall = 1; /* one check decides either way unless told */
    if (health_duration(ld, "every", w[3], &every) != 0)
        return -1;
    if (health_status(w[5], &lo, &hi) != 0) {
        cfg_report(ld, ld->line, "health_check: expect '%s' is not a status (200) or a class "
                                 "(2xx) between 100 and 599", w[5]);
        return -1;
    }
    timeout = every;
    if (opt[HEALTH_OPT_TIMEOUT] &&
        health_duration(ld, "timeout", opt[HEALTH_OPT_TIMEOUT], &timeout) != 0)
        return -1;
    if (timeout > every) {
        cfg_report(ld, ld->line, "health_check: timeout %s is longer than the interval %s",
                   opt[HEALTH_OPT_TIMEOUT], w[3]);
        return -1;
    }
    if ((opt[HEALTH_OPT_RISE] && health_count(ld, "rise", opt[HEALTH_OPT_RISE], &rise) != 0) ||
        (opt[HEALTH_OPT_FALL] && health_count(ld, "fall", opt[HEALTH_OPT_FALL], &fall) != 0))
        return -1;
    char *method = cfg_copy(ld, w[0]), *path = method ? cfg_copy(ld, w[1]) : NULL;
    if (!path) {
        free(method);
        return -1;
    }
    free(hc->method);
    free(hc->path);
    *hc = (struct health_check_conf){method, path, every, timeout, lo, hi, rise, fall};
    return 0;
}

static int set_hint(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    struct route_conf *r = base;
    (void)k;
    if (r->nhints >= CFG_MAX_HINTS) {
        cfg_report(ld, ld->line, "early_hints: at most %d per route", CFG_MAX_HINTS);
        return -1;
    }
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            cfg_report(ld, ld->line, "early_hints: control character in value");
            return -1;
        }
    }
    /* every link-value well-formed, as a 103 sends only those (hint_filter): one that is not
     * would load and never go out */
    size_t pos = 0, len = strlen(value), elen, ulen, nlinks = 0;
    const char *el, *uri;
    bool valid = true;
    while (valid && h1_link_next(value, len, &pos, &el, &elen)) {
        valid = link_uri(el, elen, &uri, &ulen);
        nlinks++;
    }
    if (!valid || !nlinks) {
        cfg_report(ld, ld->line, "early_hints: '%s' is not a Link value (</path>; rel=preload)",
                   value);
        return -1;
    }
    if (!(r->early_hints[r->nhints] = cfg_copy(ld, value)))
        return -1;
    r->nhints++;
    return 0;
}

/* mirror = UPSTREAM, repeatable up to CFG_MAX_MIRRORS: resolved once every upstream is known
 * (config.c). */
static int set_mirror(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    struct route_conf *r = base;
    (void)k;
    if (r->nmirrors >= CFG_MAX_MIRRORS) {
        cfg_report(ld, ld->line, "mirror: at most %d per route", CFG_MAX_MIRRORS);
        return -1;
    }
    if (!(r->mirror_names[r->nmirrors] = cfg_copy(ld, value)))
        return -1;
    r->mirror_lines[r->nmirrors++] = ld->line;
    return 0;
}

/* A route's host: exact or "*.domain", stored lowercase without the root dot. */
static int set_host(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    size_t n = strlen(value);
    while (n > 0 && value[n - 1] == '.') /* "example.com." is "example.com", as in route_match */
        n--;
    size_t i = n >= 2 && value[0] == '*' && value[1] == '.' ? 2 : 0;
    if (i == n) {
        cfg_report(ld, ld->line, "host: empty host name");
        return -1;
    }
    for (; i < n; i++) {
        if (!(isalnum((unsigned char)value[i]) || value[i] == '.' || value[i] == '-' ||
              value[i] == '_')) {
            cfg_report(ld, ld->line,
                       "host: invalid character '%c' in '%s' (exact name or *.domain)", value[i],
                       value);
            return -1;
        }
    }
    char *lower = cfg_copy_span(ld, value, n);
    if (!lower)
        return -1;
    for (char *q = lower; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return store_string(FIELD(k, base, char *), lower);
}

/* method, header and cookie: the route's request conditions (route_cond.h), repeatable. */
static int set_condition(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                         const char *value)
{
    struct route_conf *r = base;
    char why[300];
    if (route_cond_add(&r->conds, k->name, value, ld->line, why, sizeof(why)) == 0)
        return 0;
    if (why[0])
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
    else
        cfg_report(ld, ld->line, "out of memory");
    return -1;
}

static int set_prefix(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    if (value[0] != '/') {
        cfg_report(ld, ld->line, "prefix: '%s' must start with '/'", value);
        return -1;
    }
    /* The parser lets no such byte into a path: the route would never match. '#' starts a
     * comment only at the start of a line, so "/api/ # comment" comes here whole. */
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            cfg_report(ld, ld->line, "prefix: '%s' holds a blank, a control or a non-ASCII "
                                     "byte, which no request path has (a comment after a value "
                                     "starts with ' ;')", value);
            return -1;
        }
    }
    return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
}

/* ---- header rules and the path rewrite ---- */

/* One header rule of a route (header_rules.h parses and judges it), kept in the file's order. */
static int add_header_rule(struct cfg_loader *ld, const struct cfg_key *k, struct hrules **rules,
                           enum hrule_dir dir, enum hrule_op op, const char *value)
{
    char why[200];
    struct hrule r;
    int rc = hrule_parse(dir, op, value, &r, why, sizeof(why));
    if (rc == 0) {
        r.line = ld->line;
        rc = hrules_add(rules, &r, why, sizeof(why));
    }
    if (rc != 0 && why[0])
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
    else if (rc != 0) /* the one message of an allocation that failed */
        cfg_report(ld, ld->line, "out of memory");
    return rc;
}

static int set_request_header(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                              const char *value)
{
    struct route_conf *r = base;
    return add_header_rule(ld, k, &r->request_rules, HRULE_REQUEST, HRULE_SET, value);
}

static int set_request_header_remove(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                                     const char *value)
{
    struct route_conf *r = base;
    return add_header_rule(ld, k, &r->request_rules, HRULE_REQUEST, HRULE_REMOVE, value);
}

static int set_response_header(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                               const char *value)
{
    struct route_conf *r = base;
    return add_header_rule(ld, k, &r->response_rules, HRULE_RESPONSE, HRULE_SET, value);
}

static int set_response_header_remove(struct cfg_loader *ld, const struct cfg_key *k,
                                      void *base, const char *value)
{
    struct route_conf *r = base;
    return add_header_rule(ld, k, &r->response_rules, HRULE_RESPONSE, HRULE_REMOVE, value);
}

/* What replaces the matched prefix: a path as prefix takes one, with no query, no fragment and
 * no dot segment of its own (the joint with the rest of the path is checked per request). */
static int set_rewrite_prefix(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                              const char *value)
{
    struct route_conf *r = base;
    if (value[0] != '/') {
        cfg_report(ld, ld->line, "%s: '%s' must start with '/'", k->name, value);
        return -1;
    }
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#') {
            cfg_report(ld, ld->line, "%s: '%s' holds a blank, a control, a non-ASCII byte, '?' "
                                     "or '#': a path only", k->name, value);
            return -1;
        }
    }
    if (request_has_dot_segment(value, strlen(value))) {
        cfg_report(ld, ld->line, "%s: '%s' holds a dot segment ('.' or '..')", k->name, value);
        return -1;
    }
    if (store_string(&r->rewrite_prefix, cfg_copy(ld, value)) != 0)
        return -1;
    r->rewrite_prefix_len = strlen(value);
    return 0;
}

/* ---- return: a route that answers itself ---- */

/* The redirects return sends, each with its URL in Location (RFC 9110 15.4); the other 3xx are
 * no redirect to one URL (300, 304) or deprecated (305, 306). */
static const int return_redirects[] = {
    HTTP_MOVED_PERMANENTLY, HTTP_FOUND, HTTP_SEE_OTHER, HTTP_TEMPORARY_REDIRECT,
    HTTP_PERMANENT_REDIRECT,
};

/* Answers that have no content (RFC 9110 15.3.5, 15.3.6): return takes no text with them. */
static const int return_bodiless[] = {HTTP_NO_CONTENT, HTTP_RESET_CONTENT};

/* How a redirect's URL may begin: a path of this host, or an absolute http(s) URL. Not "//"
 * (protocol-relative: a host of the client's choosing after a "/$request_uri"). */
static const char *const return_url_starts[] = {
    "http://", "https://", "$scheme://", "${scheme}://", "/",
};

static bool status_in(int status, const int *codes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (codes[i] == status)
            return true;
    return false;
}

/* The URL of a redirect: visible ASCII (a URL has no blank), known variables, a known start. */
static int check_return_url(const char *url, char *why, size_t size)
{
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            snprintf(why, size, "the URL holds a blank, a control or a non-ASCII byte (\\x%02x): "
                                "percent-encode it", (unsigned char)*p);
            return -1;
        }
    }
    bool start = false;
    for (size_t i = 0; i < ARRAY_LEN(return_url_starts) && !start; i++)
        start = strncmp(url, return_url_starts[i], strlen(return_url_starts[i])) == 0;
    bool protocol_relative = url[0] == '/' && (url[1] == '/' || url[1] == '\\');
    if (!start || protocol_relative) {
        snprintf(why, size, "'%.64s' is no URL to send clients to (start it with http://, "
                            "https://, $scheme:// or one '/')", url);
        return -1;
    }
    return 0;
}

/* return = CODE [TEXT-or-URL] (README, [route NAME]): judged whole here, expanded per request. */
static int set_return(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                      const char *value)
{
    struct route_conf *r = base;
    char why[200];
    char *end;
    long status = strtol(value, &end, 10);
    if (end - value != 3 || !isdigit((unsigned char)value[0]) || (*end && *end != ' ' &&
                                                                 *end != '\t')) {
        cfg_report(ld, ld->line, "%s: '%s': expected a status code (200-599), then a URL or a "
                   "text", k->name, value);
        return -1;
    }
    while (*end == ' ' || *end == '\t')
        end++;
    const char *text = *end ? end : NULL;
    bool redirect = status_in((int)status, return_redirects, ARRAY_LEN(return_redirects));
    bool vars = false;
    if (status < 200 || status > 599) {
        cfg_report(ld, ld->line, "%s: %ld: %s", k->name, status,
                   status >= 100 && status < 200
                       ? "an interim answer (1xx, 101 included) is no final answer to a request"
                       : "a final status is 200-599");
        return -1;
    }
    if (!status_lookup((int)status)) {
        cfg_report(ld, ld->line, "%s: %ld is a status no registry has (`portico codes` lists "
                   "them)", k->name, status);
        return -1;
    }
    if (status >= 300 && status < 400 && !redirect) {
        cfg_report(ld, ld->line, "%s: %ld: of 3xx, only the redirects 301, 302, 303, 307 and "
                   "308 (with a URL)", k->name, status);
        return -1;
    }
    if (redirect && !text) {
        cfg_report(ld, ld->line, "%s: %ld is a redirect: give the URL (return = %ld "
                   "https://$host$request_uri)", k->name, status, status);
        return -1;
    }
    if (text && status_in((int)status, return_bodiless, ARRAY_LEN(return_bodiless))) {
        cfg_report(ld, ld->line, "%s: %ld %s has no content: no text with it", k->name, status,
                   status_phrase((int)status));
        return -1;
    }
    if (text && ((redirect && check_return_url(text, why, sizeof(why)) != 0) ||
                 hrule_check_value(text, strlen(text), true, &vars, why, sizeof(why)) != 0)) {
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
        return -1;
    }
    struct route_return *a = calloc(1, sizeof(*a));
    if (!a || (text && !(a->text = cfg_copy(ld, text)))) {
        free(a);
        if (!a)
            cfg_report(ld, ld->line, "out of memory");
        return -1;
    }
    *a = (struct route_return){.status = (int)status, .text = a->text,
                               .text_len = text ? strlen(text) : 0, .vars = vars,
                               .line = ld->line};
    r->answer = a;
    return 0;
}

/* ---- fault rules (issue 8) ---- */

/* A Bearer token (RFC 6750 b64token): letters, digits and -._~+/ with '=' only at the end. */
static int set_token(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    size_t n = strlen(value), eq = n;
    while (eq > 0 && value[eq - 1] == '=')
        eq--;
    bool ok = eq > 0;
    for (size_t i = 0; i < eq && ok; i++)
        ok = isalnum((unsigned char)value[i]) || strchr("-._~+/", value[i]);
    if (!ok) {
        cfg_report(ld, ld->line, "%s: expected a token of letters, digits and -._~+/ (a Bearer "
                                 "token)", k->name);
        return -1;
    }
    return store_string(FIELD(k, base, char *), cfg_copy(ld, value));
}

/* A CIDR list into out[max], its count into *n. */
static int set_cidr_list(struct cfg_loader *ld, const struct cfg_key *k, const char *value,
                         struct fault_cidr *out, int max, int *n)
{
    char why[200];
    int got = fault_cidr_list(value, out, max, why, sizeof(why));
    if (got < 0) {
        cfg_report(ld, ld->line, "%s: %s", k->name, why);
        return -1;
    }
    *n = got;
    return 0;
}

static int set_header_clients(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                              const char *value)
{
    struct faults_conf *f = base;
    return set_cidr_list(ld, k, value, f->header_clients, FAULT_MAX_LIST, &f->nheader_clients);
}

static int set_trusted_proxies(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                               const char *value)
{
    struct config *cfg = base;
    if (set_cidr_list(ld, k, value, cfg->trusted_proxies, CFG_MAX_TRUSTED_PROXIES,
                      &cfg->ntrusted_proxies) != 0)
        return -1;
    /* 0.0.0.0/0 trusts every client with the scheme and client address origins act on */
    for (int i = 0; i < cfg->ntrusted_proxies; i++)
        if (cfg->trusted_proxies[i].bits == 0)
            cfg_warn(ld, ld->line, "%s: a /0 block trusts every client: any of them can tell the "
                     "origin it came over https, from any address", k->name);
    return 0;
}

/* Every [fault NAME] key: fault.c parses it, so that the INI, the Portico-Fault header and the
 * admin API spell every value alike. */
static int set_fault(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value)
{
    struct fault_conf *f = base;
    char why[300];
    if (fault_rule_set(&f->rule, (enum fault_key)fault_key_find(k->name), value, why,
                       sizeof(why)) != 0) {
        cfg_report(ld, ld->line, "%s", why);
        f->broken = true;
        return -1;
    }
    /* as on the [proxy] and [upstream] timers: "delay = 5000" meant as 5 s waits 83 minutes */
    const char *num;
    size_t len;
    if (fault_bare_seconds((enum fault_key)fault_key_find(k->name), value, why, sizeof(why), &num,
                           &len))
        cfg_warn(ld, ld->line, "%s = %s%s%s; for milliseconds write %.*sms", k->name,
                 len == strlen(value) ? "" : value, len == strlen(value) ? "" : ": ", why,
                 (int)len, num);
    return 0;
}

/* ---- access by client address (acl.h) ---- */

/* One allow or deny line into *acl, in file order; a rule an earlier one names wholly never
 * decides (`deny 127.0.0.1` after `allow 127.0.0.0/8`): said at its line, as it loads. */
static int add_acl_rule(struct cfg_loader *ld, const struct cfg_key *k, struct acl **acl,
                        enum acl_action action, const char *value)
{
    char why[300];
    int before = *acl ? (*acl)->n : 0;
    if (acl_add(acl, action, value, ld->line, why, sizeof(why)) != 0) {
        if (why[0])
            cfg_report(ld, ld->line, "%s: %s", k->name, why);
        else
            cfg_report(ld, ld->line, "out of memory");
        return -1;
    }
    for (int i = before; i < (*acl)->n; i++) {
        int by = acl_shadowed_by(*acl, i);
        if (by < 0)
            continue;
        char rule[80], earlier[80];
        const struct acl_rule *e = &(*acl)->rule[by];
        cfg_warn(ld, ld->line, "%s never decides: %s (line %d) names every client it does, and "
                 "the first rule naming a client decides", acl_rule_text(&(*acl)->rule[i], rule,
                 sizeof(rule)), acl_rule_text(e, earlier, sizeof(earlier)), e->line);
    }
    return 0;
}

static int set_route_allow(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                           const char *value)
{
    return add_acl_rule(ld, k, &((struct route_conf *)base)->acl_own, ACL_ALLOW, value);
}

static int set_route_deny(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                          const char *value)
{
    return add_acl_rule(ld, k, &((struct route_conf *)base)->acl_own, ACL_DENY, value);
}

static int set_proxy_allow(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                           const char *value)
{
    return add_acl_rule(ld, k, &((struct config *)base)->acl, ACL_ALLOW, value);
}

static int set_proxy_deny(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                          const char *value)
{
    return add_acl_rule(ld, k, &((struct config *)base)->acl, ACL_DENY, value);
}

/* The KEY of `balance = hash KEY`, after its "$": a name of HASH_KEY_LIST; $http_NAME and
 * $cookie_NAME need a NAME of token characters (a field name; a cookie name), stored in
 * hash_name: a field's lowercase with '_' as '-' (nginx's $http_x_user is X-User). */
static int set_hash_key(struct cfg_loader *ld, struct upstream_conf *up, const char *key)
{
    for (size_t i = 0; i < ARRAY_LEN(hash_key_names); i++) {
        const char *name = hash_key_names[i];
        size_t len = strlen(name);
        bool prefix = name[len - 1] == '_'; /* $http_NAME, $cookie_NAME */
        if (prefix ? strncmp(key, name, len) != 0 : strcmp(key, name) != 0)
            continue;
        up->hash_key = (enum hash_key_kind)i;
        up->hash_name_len = 0;
        if (!prefix)
            return 0;
        const char *n = key + len;
        size_t nlen = strlen(n);
        if (nlen == 0 || nlen >= CFG_HASH_NAME_MAX) {
            cfg_report(ld, ld->line, "balance: '%s' needs a NAME of 1-%d bytes after %s", key,
                       CFG_HASH_NAME_MAX - 1, name);
            return -1;
        }
        for (size_t c = 0; c < nlen; c++) {
            if (!h1_is_tchar((unsigned char)n[c])) {
                cfg_report(ld, ld->line, "balance: '%s': '%s' is no %s name (token characters "
                           "only)", key, n, i == HASH_KEY_HTTP ? "field" : "cookie");
                return -1;
            }
            char ch = n[c];
            if (i == HASH_KEY_HTTP)
                ch = ch == '_' ? '-' : (char)tolower((unsigned char)ch);
            up->hash_name[c] = ch;
        }
        up->hash_name[nlen] = '\0';
        up->hash_name_len = nlen;
        return 0;
    }
    cfg_report(ld, ld->line, "balance: unknown hash key '%s' (one of $client_addr, $uri, $host, "
               "$http_NAME, $cookie_NAME)", key);
    return -1;
}

/* The word flags of `sticky = cookie NAME ...`: each adds its attribute as written here. */
static const struct sticky_flag {
    const char *word;
    const char *attr;
} sticky_flags[] = {
    {"httponly", "; HttpOnly"},
    {"secure", "; Secure"},
};

static const char *const samesite_values[] = {"Strict", "Lax", "None"};

/* max_age=DUR: a duration as elsewhere, or whole days ("30d"); 1 s to 400 days. */
static int sticky_max_age(const char *v, uint64_t *seconds)
{
    uint64_t ms;
    size_t n = strlen(v);
    if (n > 1 && v[n - 1] == 'd') {
        char num[24];
        if (n - 1 >= sizeof(num))
            return -1;
        memcpy(num, v, n - 1);
        num[n - 1] = '\0';
        uint64_t d;
        if (parse_uint(num, 1, CFG_STICKY_MAX_AGE_S / 86400, &d) != 0)
            return -1;
        ms = d * 86400000u;
    } else if (parse_duration_ms(v, &ms) != 0) {
        return -1;
    }
    if (ms < 1000 || ms / 1000 > CFG_STICKY_MAX_AGE_S)
        return -1;
    *seconds = ms / 1000;
    return 0;
}

/* A path= or domain= value: printable, no ';' (it would end the attribute), no space. */
static bool sticky_attr_value_ok(const char *v)
{
    if (!*v || strlen(v) > 200)
        return false;
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || (unsigned char)*v >= 0x7f || *v == ';' || *v == ',')
            return false;
    return true;
}

/* `sticky = cookie NAME [path=P] [domain=D] [max_age=DUR] [httponly] [secure]
 * [samesite=strict|lax|none]`, options in any order, each once. The attributes are rendered
 * here, once: a response that inserts the cookie copies them. */
static int set_sticky(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                      const char *value)
{
    struct upstream_conf *up = base;
    struct sticky_conf *st = &up->sticky;
    (void)k;
    char words[16][256];
    int n = 0;
    for (const char *p = value; *p && n < 16;) {
        p += strspn(p, " \t");
        size_t len = strcspn(p, " \t");
        if (!len)
            break;
        snprintf(words[n++], sizeof(words[0]), "%.*s", (int)len, p);
        p += len;
    }
    if (n < 2 || strcmp(words[0], "cookie") != 0) {
        cfg_report(ld, ld->line, "sticky: expected 'cookie NAME [path=P] [domain=D] "
                                 "[max_age=DUR] [httponly] [secure] [samesite=strict|lax|none]'");
        return -1;
    }
    const char *name = words[1];
    size_t nlen = strlen(name);
    bool ok = nlen > 0 && nlen < CFG_HASH_NAME_MAX;
    for (size_t c = 0; ok && c < nlen; c++)
        ok = h1_is_tchar((unsigned char)name[c]);
    if (!ok) {
        cfg_report(ld, ld->line, "sticky: cookie name '%s' is not a token of 1-%d bytes (letters, "
                                 "digits and !#$%%&'*+-.^_`|~)", name, CFG_HASH_NAME_MAX - 1);
        return -1;
    }
    memset(st, 0, sizeof(*st));
    memcpy(st->name, name, nlen + 1);
    st->name_len = nlen;
    const char *path = "/", *domain = NULL;
    uint64_t max_age = 0;
    int samesite = -1;
    unsigned flags = 0, seen = 0; /* seen: path, domain, max_age, samesite */
    for (int w = 2; w < n; w++) {
        const char *word = words[w];
        size_t f = 0;
        while (f < ARRAY_LEN(sticky_flags) && strcmp(word, sticky_flags[f].word) != 0)
            f++;
        if (f < ARRAY_LEN(sticky_flags) && !(flags & (1u << f))) {
            flags |= 1u << f;
            continue;
        }
        if (strncmp(word, "path=", 5) == 0 && !(seen & 1)) {
            path = word + 5;
            seen |= 1;
            if (path[0] != '/' || !sticky_attr_value_ok(path)) {
                cfg_report(ld, ld->line, "sticky: path '%.40s' does not start with '/', is over "
                                         "200 bytes, or holds a space, ';', ',' or control byte",
                           path);
                return -1;
            }
            continue;
        }
        if (strncmp(word, "domain=", 7) == 0 && !(seen & 2)) {
            domain = word + 7;
            seen |= 2;
            if (!sticky_attr_value_ok(domain)) {
                cfg_report(ld, ld->line, "sticky: domain '%.40s' is empty, is over 200 bytes, "
                                         "or holds a space, ';', ',' or control byte", domain);
                return -1;
            }
            continue;
        }
        if (strncmp(word, "max_age=", 8) == 0 && !(seen & 4)) {
            seen |= 4;
            if (sticky_max_age(word + 8, &max_age) != 0) {
                cfg_report(ld, ld->line, "sticky: max_age '%s' is not a duration of 1s to 400d "
                                         "(omit it for a session cookie)", word + 8);
                return -1;
            }
            continue;
        }
        if (strncmp(word, "samesite=", 9) == 0 && !(seen & 8)) {
            seen |= 8;
            for (int s = 0; s < (int)ARRAY_LEN(samesite_values); s++)
                if (strcasecmp(word + 9, samesite_values[s]) == 0)
                    samesite = s;
            if (samesite < 0) {
                cfg_report(ld, ld->line, "sticky: samesite '%s' (expected strict, lax or none)",
                           word + 9);
                return -1;
            }
            continue;
        }
        cfg_report(ld, ld->line, "sticky: unknown or repeated option '%s' (expected path=P, "
                                 "domain=D, max_age=DUR, httponly, secure, samesite=V, each "
                                 "once)", word);
        return -1;
    }
    if (samesite == 2 && !(flags & 2)) {
        cfg_report(ld, ld->line, "sticky: samesite=none needs secure (browsers drop a "
                                 "SameSite=None cookie without Secure)");
        return -1;
    }
    /* attributes in RFC 6265bis's order of description; text as it would be written again */
    size_t a = (size_t)snprintf(st->attrs, sizeof(st->attrs), "; Path=%s", path);
    size_t t = (size_t)snprintf(st->text, sizeof(st->text), "cookie %s path=%s", name, path);
    if (domain) {
        a += (size_t)snprintf(st->attrs + a, sizeof(st->attrs) - a, "; Domain=%s", domain);
        t += (size_t)snprintf(st->text + t, sizeof(st->text) - t, " domain=%s", domain);
    }
    if (max_age) {
        a += (size_t)snprintf(st->attrs + a, sizeof(st->attrs) - a, "; Max-Age=%llu",
                              (unsigned long long)max_age);
        t += (size_t)snprintf(st->text + t, sizeof(st->text) - t, " max_age=%llus",
                              (unsigned long long)max_age);
    }
    for (size_t f = 0; f < ARRAY_LEN(sticky_flags); f++)
        if (flags & (1u << f)) {
            a += (size_t)snprintf(st->attrs + a, sizeof(st->attrs) - a, "%s",
                                  sticky_flags[f].attr);
            t += (size_t)snprintf(st->text + t, sizeof(st->text) - t, " %s",
                                  sticky_flags[f].word);
        }
    if (samesite >= 0) {
        snprintf(st->attrs + a, sizeof(st->attrs) - a, "; SameSite=%s", samesite_values[samesite]);
        snprintf(st->text + t, sizeof(st->text) - t, " samesite=%c%s",
                 (char)tolower((unsigned char)samesite_values[samesite][0]),
                 samesite_values[samesite] + 1);
    }
    st->on = true;
    st->line = ld->line;
    return 0;
}

/* `balance = POLICY`, or `balance = hash KEY` (balance.h, hashkey.h). */
static int set_balance(struct cfg_loader *ld, const struct cfg_key *k, void *base,
                       const char *value)
{
    struct upstream_conf *up = base;
    char word[32];
    size_t len = strcspn(value, " \t");
    const char *rest = value + len;
    rest += strspn(rest, " \t");
    if (len >= sizeof(word))
        len = sizeof(word) - 1; /* too long for a policy: name_index finds none */
    memcpy(word, value, len);
    word[len] = '\0';
    if (strcmp(word, "hash") == 0) {
        if (!*rest) {
            cfg_report(ld, ld->line, "balance: hash needs a key: hash $client_addr, $uri, $host, "
                       "$http_NAME or $cookie_NAME");
            return -1;
        }
        if (rest[strcspn(rest, " \t")]) {
            cfg_report(ld, ld->line, "balance: 'hash %s': one key only", rest);
            return -1;
        }
        if (set_hash_key(ld, up, rest) != 0)
            return -1;
        up->balance = BALANCE_HASH;
        return 0;
    }
    if (*rest) {
        cfg_report(ld, ld->line, "balance: '%s' takes no argument (only hash takes a key)",
                   value);
        return -1;
    }
    return set_enum(ld, k, base, value);
}

#define CFG(f) offsetof(struct config, f)
#define UPS(f) offsetof(struct upstream_conf, f)
#define RTE(f) offsetof(struct route_conf, f)
#define FLT(f) offsetof(struct faults_conf, f)

#define KEY(name, set, field) {name, set, field, 0, 0, NULL, 0, false}
#define LIST(name, set) {name, set, 0, 0, 0, NULL, 0, true}
#define NUMBER(name, set, field, min, max) {name, set, field, min, max, NULL, 0, false}
#define DURATION(name, field, min)                                                                 \
    {name, set_duration, field, min, CFG_MAX_DURATION_MS, NULL, 0, false}
/* A duration whose usual values are an hour or more: a bare 3600 is meant as seconds. */
#define LONG_DURATION(name, field, min)                                                            \
    {name, set_long_duration, field, min, CFG_MAX_DURATION_MS, NULL, 0, false}
#define NAMED(name, set, field, names) {name, set, field, 0, 0, names, ARRAY_LEN(names), false}
/* Timers are above 0, but total_timeout, for which 0 is off. */
#define TIMER_MIN(id) ((id) == TIMER_TOTAL ? 0 : 1)
#define PROXY_TIMER(id, name, def)                                                                 \
    {name, set_timer, CFG(timers_ms[id]), TIMER_MIN(id), CFG_MAX_DURATION_MS, NULL, 0, false},
#define UPSTREAM_TIMER(id, name, def)                                                              \
    {name, set_timer, UPS(timers_ms[id]), TIMER_MIN(id), CFG_MAX_DURATION_MS, NULL, 0, false},

static const struct cfg_key proxy_keys[] = {
    LIST("listen", set_listen),
    NUMBER("workers", set_int, CFG(workers), 1, CFG_MAX_WORKERS),
    DURATION("client_header_timeout", CFG(client_header_timeout_ms), 1),
    DURATION("client_body_timeout", CFG(client_body_timeout_ms), 1),
    /* a body's whole pace, not a silence (exchange.c's rate_timer): 0 is off */
    NUMBER("client_body_min_rate", set_size, CFG(client_body_min_rate), 0, UINT64_C(1) << 30),
    DURATION("client_body_rate_grace", CFG(client_body_rate_grace_ms), 1),
    DURATION("client_send_timeout", CFG(client_send_timeout_ms), 1),
    DURATION("keepalive_timeout", CFG(keepalive_timeout_ms), 0),
    KEY("idle_close_on_response", set_bool, CFG(idle_close_on_response)),
    NAMED("client_half_close", set_enum, CFG(client_half_close), half_close_names),
    NUMBER("max_header_size", set_size, CFG(max_header_size), 1024, CFG_MAX_HEADER_SIZE),
    NUMBER("max_request_line", set_size, CFG(max_request_line), 256, CFG_MAX_HEADER_SIZE),
    NUMBER("max_body_size", set_size, CFG(max_body_size), 0, UINT64_C(1) << 40),
    /* limits (issue 10) */
    NUMBER("max_connections", set_uint, CFG(max_connections), 0, 1000000),
    NUMBER("mirror_max_in_flight", set_uint, CFG(mirror_max_in_flight), 1, 100000),
    /* per client address, all workers together (climit.c) */
    NUMBER("max_connections_per_client", set_uint, CFG(max_connections_per_client), 0, 1000000),
    NUMBER("client_rate", set_client_rate, CFG(client_rate), 1, 1000000),
    NUMBER("client_rate_burst", set_uint, CFG(client_rate_burst), 0, 1000000),
    NUMBER("client_limit_table", set_uint, CFG(client_limit_table), 1024, 100000000),
    /* what a client that does not read can hold of the kernel's memory (listener.c) */
    NUMBER("client_sndbuf", set_kernel_size, CFG(client_sndbuf), 4096, CFG_MAX_SOCKBUF),
    /* a connection is accepted once its first bytes came (listener.c) */
    KEY("defer_accept", set_bool, CFG(defer_accept)),
    /* and what a stalled response holds of it on the origin side (upstream.c) */
    NUMBER("origin_rcvbuf", set_kernel_size, CFG(origin_rcvbuf), 4096, CFG_MAX_SOCKBUF),
    TIMER_LIST(PROXY_TIMER)
    KEY("interim_resets_timer", set_bool, CFG(interim_resets_timer)),
    NAMED("error_profile", set_enum, CFG(profile), profile_names),
    KEY("resolver", set_resolver, CFG(resolver)),
    /* repeatable: the Nth tls_cert goes with the Nth tls_key, one pair per certificate */
    LIST("tls_cert", set_tls_half),
    LIST("tls_key", set_tls_half),
    /* repeatable: the OCSP response stapled for the tls_cert written last above it (ocsp.h) */
    LIST("tls_ocsp_response", set_tls_ocsp),
    KEY("tls_strict_sni", set_bool, CFG(tls_strict_sni)),
    /* client certificates (mutual TLS, mtls.h): asked, or required, chaining to tls_client_ca */
    NAMED("tls_verify_client", set_enum, CFG(tls_verify_client), mtls_mode_names),
    KEY("tls_client_ca", set_path, CFG(tls_client_ca)),
    KEY("tls_client_crl", set_path, CFG(tls_client_crl)),
    NUMBER("tls_verify_depth", set_int, CFG(tls_verify_depth), 1, 32),
    /* below 100ms no ticket outlives a page load; above a day a stolen key reads days of them */
    {"tls_ticket_rotation", set_long_duration, CFG(tls_ticket_rotation_ms), 100, 24 * 3600 * 1000,
     NULL, 0, false},
    KEY("proxy_status", set_bool, CFG(proxy_status)),
    KEY("splice", set_bool, CFG(splice)),
    KEY("trusted_proxies", set_trusted_proxies, CFG(trusted_proxies)),
    NAMED("real_ip", set_enum, CFG(real_ip), real_ip_names),
    /* repeatable, in file order: every route's rules unless it has its own (acl.h) */
    LIST("allow", set_proxy_allow),
    LIST("deny", set_proxy_deny),
    KEY("error_page_dir", set_path, CFG(error_page_dir)),
    NAMED("access_log", set_log, CFG(access_log), access_log_names),
    NAMED("access_log_format", set_enum, CFG(access_log_format), log_format_names),
    NAMED("error_log", set_log, CFG(error_log), error_log_names),
    NAMED("log_level", set_enum, CFG(log_level), log_level_names),
    NAMED("error_detail", set_enum, CFG(error_detail), error_detail_names),
    KEY("admin_listen", set_admin_listen, CFG(admin_listen_text)),
    /* fault rules (issue 8) */
    KEY("admin_token", set_token, CFG(admin_token)),
    /* DNS rebinding: without admin_token, IP addresses, localhost and these names only */
    KEY("admin_hosts", set_admin_hosts, CFG(admin_hosts)),
    /* lifecycle: graceful stop, pid file, privileges */
    LONG_DURATION("shutdown_timeout", CFG(shutdown_timeout_ms), 0),
    KEY("pid_file", set_path, CFG(pid_file)),
    KEY("user", set_string, CFG(user)),
    KEY("group", set_string, CFG(group)),
    /* HTTP/2 to clients (issue 11) */
    KEY("http2", set_bool, CFG(http2)),
    NUMBER("http2_max_concurrent_streams", set_uint, CFG(http2_max_concurrent_streams), 1,
           10000),
};

static const struct cfg_key upstream_keys[] = {
    LIST("origin", set_origin),
    NUMBER("keepalive", set_uint, UPS(keepalive), 0, 100000),
    DURATION("keepalive_timeout", UPS(keepalive_timeout_ms), 1),
    DURATION("settle_time", UPS(settle_ms), 0),
    TIMER_LIST(UPSTREAM_TIMER)
    KEY("interim_resets_timer", set_bool, UPS(interim_resets_timer)),
    NUMBER("origin_rcvbuf", set_kernel_size, UPS(origin_rcvbuf), 4096, CFG_MAX_SOCKBUF),
    /* balancing, health, retries and tunnels (issue 10) */
    NAMED("balance", set_balance, UPS(balance), balance_names),
    KEY("sticky", set_sticky, UPS(sticky)),
    NUMBER("max_fails", set_uint, UPS(max_fails), 0, 1000000),
    DURATION("fail_window", UPS(fail_window_ms), 1),
    DURATION("down_time", UPS(down_time_ms), 1),
    DURATION("slow_start", UPS(slow_start_ms), 0),
    {"fail_timeout", set_fail_timeout, UPS(fail_window_ms), 1, CFG_MAX_DURATION_MS, NULL, 0,
     false},
    NUMBER("retries", set_uint, UPS(retries), 0, CFG_MAX_ORIGINS - 1),
    /* per origin, all workers together; the excess waits in the upstream's queue (balance.h) */
    NUMBER("max_conns", set_uint, UPS(max_conns), 0, CFG_MAX_CONNS),
    NUMBER("max_queue", set_uint, UPS(max_queue), 0, CFG_MAX_CONNS),
    KEY("retry_sent", set_bool, UPS(retry_sent)),
    KEY("retry_on", set_retry_on, UPS(retry_on)),
    KEY("retry_budget", set_retry_budget, 0),
    NUMBER("retry_budget_min", set_uint, UPS(retry_budget_min), 0, CFG_MAX_CONNS),
    DURATION("retry_timeout", UPS(retry_timeout_ms), 0),
    KEY("fail_on", set_fail_on, UPS(fail_on)),
    KEY("health_check", set_health_check, UPS(health)),
    LONG_DURATION("tunnel_timeout", UPS(tunnel_timeout_ms), 1),
    KEY("tls", set_bool, UPS(tls)),
    KEY("verify", set_bool, UPS(verify)),
    KEY("ca_file", set_path, UPS(ca_file)),
    KEY("sni", set_sni, UPS(sni)),
    KEY("client_cert", set_path, UPS(client_cert)),
    KEY("client_key", set_path, UPS(client_key)),
};

static const struct cfg_key route_keys[] = {
    KEY("host", set_host, RTE(host)),
    KEY("prefix", set_prefix, RTE(prefix)),
    NAMED("scheme", set_enum, RTE(scheme), route_scheme_names),
    /* request conditions: they filter the routes the ranking picks among (route_cond.h) */
    LIST("method", set_condition),
    LIST("header", set_condition),
    LIST("cookie", set_condition),
    KEY("upstream", set_string, RTE(upstream_name)),
    NAMED("expect", set_enum, RTE(expect), expect_names),
    DURATION("continue_timeout", RTE(continue_timeout_ms), 0),
    DURATION("processing_interval", RTE(processing_interval_ms), 0),
    LIST("early_hints", set_hint),
    KEY("early_hints_learn", set_bool, RTE(early_hints_learn)),
    NUMBER("early_hints_cache", set_uint, RTE(early_hints_cache), 1, 1000000),
    KEY("server_timing", set_bool, RTE(server_timing)),
    /* [proxy]'s, for this route's bodies (exchange.c) */
    NUMBER("client_body_min_rate", set_size, RTE(client_body_min_rate), 0, UINT64_C(1) << 30),
    DURATION("client_body_rate_grace", RTE(client_body_rate_grace_ms), 1),
    /* header rules and the path rewrite (header_rules.h, rewrite.h) */
    LIST("request_header", set_request_header),
    LIST("request_header_remove", set_request_header_remove),
    LIST("response_header", set_response_header),
    LIST("response_header_remove", set_response_header_remove),
    KEY("rewrite_prefix", set_rewrite_prefix, 0),
    /* the route answers itself, no upstream (exchange.c) */
    KEY("return", set_return, 0),
    /* [proxy]'s, for this route's requests (climit.c) */
    NUMBER("client_rate", set_client_rate, RTE(client_rate), 1, 1000000),
    NUMBER("client_rate_burst", set_uint, RTE(client_rate_burst), 0, 1000000),
    /* repeatable, in file order; any of them replaces [proxy]'s (acl.h) */
    LIST("allow", set_route_allow),
    LIST("deny", set_route_deny),
    /* request mirroring (mirror.h) */
    LIST("mirror", set_mirror),
    NUMBER("mirror_percent", set_uint, RTE(mirror_percent), 0, 100),
    KEY("mirror_body", set_bool, RTE(mirror_body)),
};

/* [faults] and [fault NAME] (issue 8): the rule keys are fault.c's table, row for row. */
static const struct cfg_key faults_keys[] = {
    KEY("header_control", set_bool, FLT(header_control)),
    KEY("header_control_clients", set_header_clients, FLT(header_clients)),
    NUMBER("seed", set_uint, FLT(seed), 0, UINT64_MAX),
    KEY("fault_header", set_bool, FLT(fault_header)),
};

#define FAULT_ROW(id, name, kind, rep) {name, set_fault, 0, 0, 0, NULL, 0, rep},
static const struct cfg_key fault_keys[] = {FAULT_KEY_LIST(FAULT_ROW)};
#undef FAULT_ROW

_Static_assert(ARRAY_LEN(proxy_keys) <= CFG_MAX_SECTION_KEYS &&
                   ARRAY_LEN(upstream_keys) <= CFG_MAX_SECTION_KEYS &&
                   ARRAY_LEN(route_keys) <= CFG_MAX_SECTION_KEYS &&
                   ARRAY_LEN(faults_keys) <= CFG_MAX_SECTION_KEYS &&
                   ARRAY_LEN(fault_keys) <= CFG_MAX_SECTION_KEYS,
               "struct cfg_key_lines is too small");

/* The sections that have a key table. */
static const struct {
    const char *name;
    const struct cfg_key *keys;
    size_t nkeys;
} section_tables[] = {
    [CFG_SEC_PROXY] = {"proxy", proxy_keys, ARRAY_LEN(proxy_keys)},
    [CFG_SEC_UPSTREAM] = {"upstream", upstream_keys, ARRAY_LEN(upstream_keys)},
    [CFG_SEC_ROUTE] = {"route", route_keys, ARRAY_LEN(route_keys)},
    [CFG_SEC_FAULTS] = {"faults", faults_keys, ARRAY_LEN(faults_keys)},
    [CFG_SEC_FAULT] = {"fault", fault_keys, ARRAY_LEN(fault_keys)},
};

const struct cfg_key *cfg_key_find(enum cfg_section sec, const char *name)
{
    for (size_t i = 0; i < section_tables[sec].nkeys; i++)
        if (strcmp(section_tables[sec].keys[i].name, name) == 0)
            return &section_tables[sec].keys[i];
    return NULL;
}

const struct cfg_key *cfg_keys(enum cfg_section sec, size_t *n)
{
    *n = section_tables[sec].nkeys;
    return section_tables[sec].keys;
}

int *cfg_key_slot(struct cfg_key_lines *lines, enum cfg_section sec, const struct cfg_key *k)
{
    return &lines->of[k - section_tables[sec].keys];
}

int cfg_key_line(const struct cfg_key_lines *lines, enum cfg_section sec, const char *name)
{
    const struct cfg_key *k = cfg_key_find(sec, name);
    return k ? lines->of[k - section_tables[sec].keys] : 0;
}

const char *cfg_section_name(enum cfg_section sec)
{
    return section_tables[sec].name;
}
