/*
 * config.c — INI loading: the reader, sections, the inih handler (which only finds the key's row
 * in config_keys.c and calls its setter), then a separate validation pass that fills defaults,
 * resolves cross-references and opens the files the config names, so that `portico -t` passing
 * means start-up will not fail on them. See config.h.
 *
 * inih as packaged by Debian passes no line numbers to the handler and splits lines longer than
 * its buffer, so our own reader hands it one whole line at a time: it counts lines, opens
 * sections (it sees their headers with their line numbers, and reports unknown ones inih would
 * never show us), and turns every line it refuses (syntax, too long, NUL byte) into one message
 * and a blank line for inih.
 *
 * An allocation failure is reported once as "out of memory" and ends the load: a reload that
 * cannot allocate fails like a bad file, and the running configuration keeps serving.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "portico/certexpiry.h"
#include "portico/errpage.h"
#include "portico/log.h"
#include "portico/mtls.h"
#include "portico/ocsp.h"
#include "portico/privileges.h"
#include "portico/retry_budget.h"
#include "portico/route_cond.h"
#include "portico/route_prefix.h"
#include "portico/sni.h"
#include "portico/status.h"
#include "portico/syslog.h"
#include "portico/ticket.h"
#include "portico/tls.h"
#include "portico/util.h"

/* The clients header_control_clients names by default: this host. */
#define HEADER_CLIENTS_DEFAULT "127.0.0.0/8, ::1"

#define MAX_UPSTREAMS 256
#define MAX_HEADER (CFG_NAME_MAX - 1) /* bytes between a section header's brackets */
#define MAX_ROUTES 1024
#define MAX_CA_WARNINGS 3 /* CA certificates of one ca_file named in warnings; then a count */

/* Names of the fault labels the metrics give the Portico-Fault header and rules added through
 * the admin API: no [fault] section may take them. */
static const char *const reserved_fault_names[] = {"header", "admin"};

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

const char *real_ip_name(enum real_ip_field f)
{
    static const char *const names[] = {
#define X(id, name) [id] = name,
        REAL_IP_LIST(X)
#undef X
    };
    return (unsigned)f < ARRAY_LEN(names) ? names[f] : "?";
}

const char *balance_name(enum balance_policy b)
{
    static const char *const names[] = {
#define X(id, name) [id] = name,
        BALANCE_LIST(X)
#undef X
    };
    return (unsigned)b < ARRAY_LEN(names) ? names[b] : "?";
}

const char *hash_key_text(const struct upstream_conf *up, char *buf, size_t size)
{
    static const char *const names[] = {
#define X(id, name) [id] = name,
        HASH_KEY_LIST(X)
#undef X
    };
    const char *prefix = (unsigned)up->hash_key < ARRAY_LEN(names) ? names[up->hash_key] : "?";
    int n = snprintf(buf, size, "%s%s", prefix, up->hash_name);
    /* a field name is kept as it is matched (X-User as x-user): written back as $http_x_user */
    if (up->hash_key == HASH_KEY_HTTP && n > 0 && (size_t)n < size)
        for (char *c = buf + strlen(prefix); *c; c++)
            if (*c == '-')
                *c = '_';
    return buf;
}

/* ---- sections ---- */

static void upstream_defaults(struct upstream_conf *up)
{
    up->keepalive = 256; /* settled idle connections; connection-per-request traffic needs rate x
                            settle_time of them (upstream_pool.c) */
    up->keepalive_timeout_ms = 60000;
    up->settle_ms = 10;
    up->verify = true;
    up->fail_window_ms = 10000;
    up->down_time_ms = 10000;
    up->retries = 1;
    up->retry_budget_min = RETRY_BUDGET_MIN_DEFAULT;
    up->max_queue = CFG_DEFAULT_MAX_QUEUE;
    up->tunnel_timeout_ms = 3600000;
}

static void route_defaults(struct route_conf *r)
{
    r->expect = EXPECT_RELAY;
    r->continue_timeout_ms = 1000;
    r->early_hints_cache = 1000;
    r->upstream = -1;
    r->mirror_percent = 100;
    r->mirror_body = true;
}

/* Makes room for entry n of a section array and of its key lines (doubling; sections are few).
 * 0, or -1 when out of memory (reported). */
static int grow(struct cfg_loader *ld, void **array, size_t size, struct cfg_key_lines **lines,
                int *cap, int n)
{
    if (n < *cap)
        return 0;
    int ncap = *cap ? *cap * 2 : 4;
    void *a = realloc(*array, (size_t)ncap * size);
    if (!a)
        return cfg_out_of_memory(ld);
    *array = a; /* larger already: fine if the second realloc fails, cap still says the old size */
    struct cfg_key_lines *l = realloc(*lines, (size_t)ncap * sizeof(**lines));
    if (!l)
        return cfg_out_of_memory(ld);
    *lines = l;
    *cap = ncap;
    return 0;
}

/* Appends an [upstream NAME] with its defaults; NULL when out of memory. */
static struct upstream_conf *add_upstream(struct cfg_loader *ld, const char *name)
{
    struct config *cfg = ld->cfg;
    if (grow(ld, (void **)&cfg->upstreams, sizeof(*cfg->upstreams), &ld->upstream_lines,
             &ld->upstreams_cap, cfg->nupstreams) != 0)
        return NULL;
    struct upstream_conf *up = &cfg->upstreams[cfg->nupstreams];
    memset(up, 0, sizeof(*up));
    memset(&ld->upstream_lines[cfg->nupstreams], 0, sizeof(*ld->upstream_lines));
    cfg->nupstreams++; /* before the name: cfg_free frees what is counted */
    upstream_defaults(up);
    up->line = ld->line;
    return (up->name = cfg_copy(ld, name)) ? up : NULL;
}

/* Appends a [route NAME] with its defaults; NULL when out of memory. */
static struct route_conf *add_route(struct cfg_loader *ld, const char *name)
{
    struct config *cfg = ld->cfg;
    if (grow(ld, (void **)&cfg->routes, sizeof(*cfg->routes), &ld->route_lines, &ld->routes_cap,
             cfg->nroutes) != 0)
        return NULL;
    struct route_conf *r = &cfg->routes[cfg->nroutes];
    memset(r, 0, sizeof(*r));
    memset(&ld->route_lines[cfg->nroutes], 0, sizeof(*ld->route_lines));
    cfg->nroutes++;
    route_defaults(r);
    r->line = ld->line;
    return (r->name = cfg_copy(ld, name)) ? r : NULL;
}

/* Appends a [fault NAME] with its defaults; NULL when out of memory. */
static struct fault_conf *add_fault(struct cfg_loader *ld, const char *name)
{
    struct config *cfg = ld->cfg;
    if (grow(ld, (void **)&cfg->fault_rules, sizeof(*cfg->fault_rules), &ld->fault_lines,
             &ld->fault_rules_cap, cfg->nfault_rules) != 0)
        return NULL;
    struct fault_conf *f = &cfg->fault_rules[cfg->nfault_rules];
    memset(&ld->fault_lines[cfg->nfault_rules], 0, sizeof(*ld->fault_lines));
    cfg->nfault_rules++;
    f->line = ld->line;
    f->broken = false;
    fault_rule_init(&f->rule, name);
    return f;
}

/* [fault NAME]: a name of its own, not one the metrics reserve. */
static void open_fault(struct cfg_loader *ld, const char *arg)
{
    struct config *cfg = ld->cfg;
    if (strlen(arg) >= FAULT_NAME_MAX) {
        cfg_report(ld, ld->line, "[fault %s]: a name is at most %d characters", arg,
                   FAULT_NAME_MAX - 1);
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(reserved_fault_names); i++) {
        if (strcmp(arg, reserved_fault_names[i]) == 0) {
            cfg_report(ld, ld->line, "[fault %s]: the name is reserved (the metrics count the "
                                     "Portico-Fault header and admin rules under it)", arg);
            return;
        }
    }
    for (int i = 0; i < cfg->nfault_rules; i++) {
        const struct fault_rule *r = &cfg->fault_rules[i].rule;
        if (strcmp(fault_text(r, r->name), arg) == 0) {
            cfg_report(ld, ld->line, "duplicate [fault %s] (first at line %d)", arg,
                       cfg->fault_rules[i].line);
            return;
        }
    }
    if (cfg->nfault_rules >= CFG_MAX_FAULTS) {
        cfg_report(ld, ld->line, "too many fault rules (max %d)", CFG_MAX_FAULTS);
        return;
    }
    if (add_fault(ld, arg)) {
        ld->cur = cfg->nfault_rules - 1;
        ld->sec = CFG_SEC_FAULT;
    }
}

/* Called by the reader for every "[...]" line: opens the section and validates its name. */
static void open_section(struct cfg_loader *ld, const char *name, size_t len)
{
    char sec[CFG_NAME_MAX];
    struct config *cfg = ld->cfg;
    ld->sec = CFG_SEC_BAD; /* until it proves good: the keys of a bad section are not reported */
    if (len > MAX_HEADER) { /* cut short, its name would be another one */
        cfg_report(ld, ld->line, "section header longer than %d bytes", MAX_HEADER);
        return;
    }
    memcpy(sec, name, len);
    sec[len] = '\0';

    char *sp = strchr(sec, ' ');
    const char *arg = NULL;
    if (sp) {
        *sp = '\0';
        arg = sp + 1;
        while (*arg == ' ')
            arg++;
    }
    /* The sections that come once, and the line of the first of each. */
    const struct {
        const char *name;
        enum cfg_section sec;
        int *first;
    } singles[] = {
        {"proxy", CFG_SEC_PROXY, &ld->proxy_line},
        {"errors", CFG_SEC_ERRORS, &ld->errors_line},
        {"faults", CFG_SEC_FAULTS, &ld->faults_line},
    };
    for (size_t i = 0; i < ARRAY_LEN(singles); i++) {
        if (strcmp(sec, singles[i].name) != 0)
            continue;
        if (arg) {
            cfg_report(ld, ld->line, "[%s] takes no name", sec);
            return;
        }
        /* A second [proxy] would silently override keys of the first. */
        int *first = singles[i].first;
        if (*first) {
            cfg_report(ld, ld->line, "duplicate [%s] (first at line %d)", sec, *first);
            return;
        }
        *first = ld->line;
        ld->sec = singles[i].sec;
        return;
    }
    bool is_up = strcmp(sec, "upstream") == 0, is_route = strcmp(sec, "route") == 0;
    bool is_fault = strcmp(sec, "fault") == 0;
    if (!is_up && !is_route && !is_fault) {
        cfg_report(ld, ld->line,
                   "unknown section [%.*s] (expected proxy, upstream NAME, route NAME, errors, "
                   "faults, fault NAME)",
                   (int)len, name);
        return;
    }
    if (!arg || !name_valid(arg)) {
        cfg_report(ld, ld->line, "[%s] needs a name of letters, digits, '-', '_' or '.'", sec);
        return;
    }
    if (is_fault) {
        open_fault(ld, arg);
        return;
    }
    if (is_up) {
        for (int i = 0; i < cfg->nupstreams; i++) {
            if (strcmp(cfg->upstreams[i].name, arg) == 0) {
                cfg_report(ld, ld->line, "duplicate [upstream %s] (first at line %d)", arg,
                           cfg->upstreams[i].line);
                return;
            }
        }
        if (cfg->nupstreams >= MAX_UPSTREAMS) {
            cfg_report(ld, ld->line, "too many upstreams (max %d)", MAX_UPSTREAMS);
            return;
        }
        if (add_upstream(ld, arg)) {
            ld->cur = cfg->nupstreams - 1;
            ld->sec = CFG_SEC_UPSTREAM;
        }
        return;
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        if (strcmp(cfg->routes[i].name, arg) == 0) {
            cfg_report(ld, ld->line, "duplicate [route %s] (first at line %d)", arg,
                       cfg->routes[i].line);
            return;
        }
    }
    if (cfg->nroutes >= MAX_ROUTES) {
        cfg_report(ld, ld->line, "too many routes (max %d)", MAX_ROUTES);
        return;
    }
    if (add_route(ld, arg)) {
        ld->cur = cfg->nroutes - 1;
        ld->sec = CFG_SEC_ROUTE;
    }
}

/* [errors] failure_type = status */
static void set_error_override(struct cfg_loader *ld, const char *name, const char *value)
{
    enum failure_type t;
    uint64_t code;
    if (failure_from_name(name, &t) != 0) {
        cfg_report(ld, ld->line, "[errors]: unknown failure type '%s'", name);
        return;
    }
    if (parse_status(value, 400, 599, &code) != 0) {
        cfg_report(ld, ld->line, "[errors] %s: '%s' is not a status code between 400 and 599", name,
                   value);
        return;
    }
    /* RFC 9110 15.5.2, 15.5.6, 15.5.8, 15.5.22: each MUST carry a field a gateway error has
     * nothing to put in: a client would find the answer broken, not the origin down. */
    static const struct {
        enum http_status status;
        const char *field;
    } needs_field[] = {
        {HTTP_UNAUTHORIZED, "WWW-Authenticate"},
        {HTTP_METHOD_NOT_ALLOWED, "Allow"},
        {HTTP_PROXY_AUTHENTICATION_REQUIRED, "Proxy-Authenticate"},
        {HTTP_UPGRADE_REQUIRED, "Upgrade"},
    };
    for (size_t i = 0; i < ARRAY_LEN(needs_field); i++)
        if (code == (uint64_t)needs_field[i].status) {
            cfg_report(ld, ld->line, "[errors] %s: %s must carry %s, which a failure answer has "
                                     "nothing to put in", name, value, needs_field[i].field);
            return;
        }
    if (ld->cfg->error_overrides[t]) {
        cfg_report(ld, ld->line, "[errors]: '%s' set twice", name);
        return;
    }
    ld->cfg->error_overrides[t] = (int)code;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct cfg_loader *ld = user;
    struct config *cfg = ld->cfg;
    struct cfg_key_lines *lines = NULL;
    void *base = NULL;
    (void)section; /* the reader tracks sections itself, with their line numbers */

    switch (ld->sec) {
    case CFG_SEC_BAD:
        return 1; /* already reported once at the section header */
    case CFG_SEC_NONE:
        cfg_report(ld, ld->line, "key '%s' outside of any section", name);
        return 1;
    case CFG_SEC_ERRORS:
        set_error_override(ld, name, value);
        return 1;
    case CFG_SEC_PROXY:
        base = cfg, lines = &ld->proxy_lines;
        break;
    case CFG_SEC_UPSTREAM:
        base = &cfg->upstreams[ld->cur], lines = &ld->upstream_lines[ld->cur];
        break;
    case CFG_SEC_ROUTE:
        base = &cfg->routes[ld->cur], lines = &ld->route_lines[ld->cur];
        break;
    case CFG_SEC_FAULTS:
        base = &cfg->faults, lines = &ld->faults_lines;
        break;
    case CFG_SEC_FAULT:
        base = &cfg->fault_rules[ld->cur], lines = &ld->fault_lines[ld->cur];
        break;
    }
    const struct cfg_key *k = cfg_key_find(ld->sec, name);
    if (!k) {
        /* nginx's "listen 127.0.0.1:8080" reads as key "listen 127.0.0.1": inih ends a key at
         * ':' too. No key has a blank, so one that does says how the line should look. */
        static const char hint[] = ": a key has no blank; write 'key = value' (a ':' ends the key "
                                   "as '=' does)";
        bool blank = strpbrk(name, " \t") != NULL;
        cfg_report(ld, ld->line, "unknown key '%s' in [%s]%s", name, cfg_section_name(ld->sec),
                   blank ? hint : "");
        return 1;
    }
    int *at = cfg_key_slot(lines, ld->sec, k);
    if (*at && !k->repeatable) {
        cfg_report(ld, ld->line, "'%s' set twice in this section", name);
        return 1;
    }
    if (!*at)
        *at = ld->line;
    k->set(ld, k, base, value);
    return 1; /* keep going: report every problem, not just the first */
}

/* ---- the reader ---- */

/* The line (leading blanks skipped) is one inih accepts: blank, comment, "[section]" or
 * "name = value" / "name: value", where ';' after a blank starts an inline comment as in inih.
 * After a header's ']' only blanks and a comment may follow: inih drops the rest unread, so
 * "[proxy] workers = 0" would lose its key without a word. */
static bool line_is_valid(const char *p)
{
    if (*p == '\0' || *p == '\r' || *p == ';' || *p == '#')
        return true;
    const char *want = *p == '[' ? "]" : "=:";
    bool was_space = false;
    for (const char *q = *p == '[' ? p + 1 : p; *q; q++) {
        if (*q == ']' && *p == '[') {
            while (isspace((unsigned char)*++q))
                ;
            return *q == '\0' || *q == ';' || *q == '#';
        }
        if (strchr(want, *q))
            return true;
        if (was_space && *q == ';')
            return false;
        was_space = isspace((unsigned char)*q);
    }
    return false;
}

/* Waits for a pipe to have more to read, until the load's deadline. 0, or -1 after reporting. */
static int wait_readable(struct cfg_loader *ld)
{
    uint64_t now = now_us();
    int ms = now < ld->deadline_us ? (int)((ld->deadline_us - now + 999) / 1000) : 0;
    struct pollfd pfd = {.fd = fileno(ld->fp), .events = POLLIN};
    int n;
    while ((n = poll(&pfd, 1, ms)) < 0 && errno == EINTR)
        ;
    if (n > 0)
        return 0;
    if (n == 0)
        cfg_report(ld, ld->line + 1, "cannot read: no end of file after %u %s (a pipe whose "
                                     "writer keeps it open)",
                   ld->read_ms % 1000 ? ld->read_ms : ld->read_ms / 1000,
                   ld->read_ms % 1000 ? "ms" : "s");
    else
        cfg_report(ld, ld->line + 1, "cannot read: %s", strerror(errno));
    ld->broken = true;
    return -1;
}

static int next_byte(struct cfg_loader *ld)
{
    if (!ld->fp)
        return ld->text_pos < ld->text_len ? (unsigned char)ld->text[ld->text_pos++] : EOF;
    int c;
    while ((c = getc_unlocked(ld->fp)) == EOF && ferror(ld->fp) && !ld->broken &&
           (errno == EAGAIN || errno == EWOULDBLOCK)) {
        clearerr(ld->fp); /* a pipe with nothing to read yet: wait for it, within the deadline */
        if (wait_readable(ld) != 0)
            return EOF;
    }
    if (c == EOF && ferror(ld->fp) && !ld->broken) {
        cfg_report(ld, 0, "cannot read: %s", strerror(errno));
        ld->broken = true;
    }
    return c;
}

/* fgets-style reader for inih: one whole line per call, counted, with section headers opened
 * here. A line it refuses is reported once and handed on as a blank line. */
static char *reader(char *str, int num, void *stream)
{
    struct cfg_loader *ld = stream;
    size_t room = num > 3 ? (size_t)num - 2 : 0; /* the line and its CR, then '\n' and '\0' */
    size_t n = 0;
    bool too_long = false, nul = false;
    int c;
    if (ld->broken || room == 0)
        return NULL;
    while ((c = next_byte(ld)) != EOF && c != '\n') {
        nul |= c == '\0';
        if (n < room)
            str[n++] = (char)c;
        else
            too_long = true;
    }
    if ((c == EOF && n == 0) || ld->broken)
        return NULL;
    /* The longest line is as long with CRLF line endings as with LF ones. */
    too_long |= n == room && str[n - 1] != '\r';
    ld->line++;
    str[n] = '\0';
    const char *p = str;
    if (ld->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) /* inih skips a UTF-8 BOM */
        p += 3;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!too_long && !nul && line_is_valid(p)) {
        if (*p == '[')
            open_section(ld, p + 1, (size_t)(strchr(p, ']') - p - 1));
        str[n] = '\n';
        str[n + 1] = '\0';
        return str;
    }
    if (too_long)
        cfg_report(ld, ld->line, "line longer than %zu bytes", room - 1);
    else if (nul)
        cfg_report(ld, ld->line, "NUL byte in line");
    else
        cfg_report(ld, ld->line, "syntax error (expected [section], key = value, or ; comment)");
    if (*p == '[')
        ld->sec = CFG_SEC_BAD; /* its keys belong to no section we know: not reported again */
    strcpy(str, "\n");
    return str;
}

/* ---- defaults and the validation pass ---- */

/* Built-in values, set before parsing; validation fills the ones that depend on others. */
static int set_defaults(struct cfg_loader *ld)
{
    struct config *cfg = ld->cfg;
    cfg->client_header_timeout_ms = 10000;
    cfg->client_body_timeout_ms = 60000;
    cfg->client_body_min_rate = 500;       /* Apache's mod_reqtimeout: body=20,MinRate=500 */
    cfg->client_body_rate_grace_ms = 20000;
    cfg->client_send_timeout_ms = 60000;
    cfg->keepalive_timeout_ms = 75000;
    cfg->max_header_size = 16 * 1024;
    cfg->max_request_line = 8 * 1024;
    cfg->max_body_size = UINT64_C(1) << 30;
    cfg->client_limit_table = 100000;
    cfg->mirror_max_in_flight = 64;
    for (int t = 0; t < TIMER_COUNT; t++)
        cfg->timers_ms[t] = timer_rows[t].def_ms;
    cfg->interim_resets_timer = true;
    cfg->splice = true;
    cfg->profile = PROFILE_STANDARD;
    cfg->access_log_format = LOG_FORMAT_JSON;
    cfg->log_level = LOG_INFO;
    cfg->error_detail = ERROR_DETAIL_FULL;
    cfg->client_half_close = HALF_CLOSE_ABORT;
    cfg->faults.fault_header = true;
    char why[64];
    cfg->faults.nheader_clients = fault_cidr_list(HEADER_CLIENTS_DEFAULT,
                                                  cfg->faults.header_clients, FAULT_MAX_LIST, why,
                                                  sizeof(why));
    cfg->shutdown_timeout_ms = 30000;
    cfg->tls_ticket_rotation_ms = TICKET_DEFAULT_ROTATION_MS;
    cfg->tls_verify_depth = 4;             /* intermediates: a company's PKI has one or two */
    cfg->http2 = true;
    cfg->http2_max_concurrent_streams = 100;
    if (!(cfg->access_log = cfg_copy(ld, "stderr")) || !(cfg->error_log = cfg_copy(ld, "stderr")))
        return -1;
    return 0;
}

/* How start-up uses a file the config names. */
enum file_use {
    FILE_READ,   /* certificates, keys, CA files */
    FILE_DIR,    /* error_page_dir: files are opened in it */
    FILE_APPEND, /* logs: the file, or a new one in its directory */
};

/* errno for creating `path`: its directory must exist and be writable. */
static int create_errno(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/'); /* resolved paths hold one: dir/name */
    size_t len = slash ? (size_t)(slash - path) : 0;
    struct stat st;
    if (len >= sizeof(dir))
        return ENAMETOOLONG;
    memcpy(dir, path, len);
    dir[len] = '\0';
    if (stat(len ? dir : "/", &st) != 0)
        return errno;
    if (!S_ISDIR(st.st_mode))
        return ENOTDIR;
    return access(len ? dir : "/", W_OK | X_OK) == 0 ? 0 : errno;
}

/* Opens a file the config names the way start-up will, so that `portico -t` passing means
 * start-up does not fail on it (nothing is created or written). A log on a device or FIFO is only
 * checked with access(2): opening one can have effects, or wait for a reader; a file to read must
 * be a regular one. 0, or -1 after
 * reporting "KEY: PATH: reason" at the key's line. */
static int check_file(struct cfg_loader *ld, int line, const char *key, const char *path,
                      enum file_use use)
{
    static const int flags[] = {
        [FILE_READ] = O_RDONLY,
        [FILE_DIR] = O_RDONLY | O_DIRECTORY,
        [FILE_APPEND] = O_WRONLY | O_APPEND,
    };
    struct stat st;
    int err = 0;
    if (stat(path, &st) != 0) {
        err = errno;
        if (use == FILE_APPEND && err == ENOENT)
            err = create_errno(path);
    } else if (use == FILE_DIR ? !S_ISDIR(st.st_mode) : S_ISDIR(st.st_mode)) {
        err = use == FILE_DIR ? ENOTDIR : EISDIR;
    } else if (use == FILE_READ && !S_ISREG(st.st_mode)) {
        /* OpenSSL opens it itself, blocking: a FIFO would hold the load (a reload's, on the main
         * thread that takes the signals) until a writer came, a terminal until someone typed */
        cfg_report(ld, line, "%s: %s: not a regular file (a FIFO or device would be waited on)",
                   key, path);
        return -1;
    } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        int fd = open(path, flags[use] | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
            err = errno;
        else
            close(fd);
        if (!err && use == FILE_DIR && access(path, X_OK) != 0)
            err = errno; /* readable but not searchable: its files cannot be opened */
    } else if (access(path, use == FILE_APPEND ? W_OK : R_OK) != 0) {
        err = errno;
    }
    if (!err)
        return 0;
    cfg_report(ld, line, "%s: %s: %s", key, path, strerror(err));
    return -1;
}

/* A log target is fine when it is a stream name or a file that can be appended to. */
static void check_log(struct cfg_loader *ld, const char *key, const char *target)
{
    struct syslog_spec spec;
    char why[320];
    if (syslog_target_is(target) && syslog_parse(target, &spec, why, sizeof(why)) == 0) {
        /* a socket that cannot be made or connected now would lose every line: refused here,
         * where a reload keeps the previous configuration */
        int fd = syslog_open(&spec);
        if (fd >= 0)
            close(fd);
        else
            cfg_report(ld, cfg_key_line(&ld->proxy_lines, CFG_SEC_PROXY, key),
                       "%s: syslog server: %s", key, strerror(errno));
        return;
    }
    if (log_target_is_file(target))
        check_file(ld, cfg_key_line(&ld->proxy_lines, CFG_SEC_PROXY, key), key, target,
                   FILE_APPEND);
}

/* Two paths (each holding a '/') name one file: the same text, the same inode once both exist,
 * or, while neither exists yet (the start creates the first, then opens it again for the
 * second), the same name in the same directory. */
static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (strcmp(a, b) == 0)
        return true;
    bool have_a = stat(a, &sa) == 0, have_b = stat(b, &sb) == 0;
    if (have_a || have_b)
        return have_a && have_b && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    const char *name_a = strrchr(a, '/') + 1, *name_b = strrchr(b, '/') + 1;
    char dir_a[PATH_MAX], dir_b[PATH_MAX];
    snprintf(dir_a, sizeof(dir_a), "%.*s", (int)(name_a - a), a); /* with its '/': "/" stays */
    snprintf(dir_b, sizeof(dir_b), "%.*s", (int)(name_b - b), b);
    return strcmp(name_a, name_b) == 0 && stat(dir_a, &sa) == 0 && stat(dir_b, &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A file handed to tls_*_ctx, with the key and line that named it. */
struct named_file {
    const char *key;
    const char *path; /* NULL: not used */
    int line;
};

/* Checks every file that is used; true when all can be read. */
static bool files_readable(struct cfg_loader *ld, const struct named_file *files, size_t n)
{
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        if (files[i].path &&
            check_file(ld, files[i].line, files[i].key, files[i].path, FILE_READ) != 0)
            ok = false;
    return ok;
}

/* A TLS context failed: at the line of the file at fault, else at `line` after `what`. */
static void report_tls_error(struct cfg_loader *ld, const struct tls_error *e,
                             const struct named_file *files, size_t n, int line, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (e->file && e->file == files[i].path) {
            cfg_report(ld, files[i].line, "%s: %s: %s", files[i].key, files[i].path, e->text);
            return;
        }
    }
    cfg_report(ld, line, "%s: %s", what, e->text);
}

/* ---- certificate dates ---- */

/* Where a file's warnings go: the key's line, the key and the file (NULL: the warning names it). */
struct key_origin {
    struct cfg_loader *ld;
    int line;
    const char *key;
    const char *path;
    const char *kind;                     /* "ecdsa P-256": which of several it is, or NULL */
};

static void warn_cert(void *arg, const char *text)
{
    const struct key_origin *o = arg;
    if (o->kind)
        cfg_warn(o->ld, o->line, "%s: %s (%s): %s", o->key, o->path, o->kind, text);
    else
        cfg_warn(o->ld, o->line, "%s: %s: %s", o->key, o->path, text);
}

/* The same for warnings that name their file themselves (error_page_dir's pages). */
static void warn_key(void *arg, const char *text)
{
    const struct key_origin *o = arg;
    cfg_warn(o->ld, o->line, "%s: %s", o->key, text);
}

/* A served or presented certificate (tls_cert, client_cert) of a context just built: its dates
 * warned about (kind, when not NULL, says which of several certificates it is), and its notAfter
 * kept for the metric, once per file. */
static void check_own_cert(struct cfg_loader *ld, void *ctx, const struct named_file *f,
                           const char *kind)
{
    struct config *cfg = ld->cfg;
    struct key_origin o = {ld, f->line, f->key, f->path, kind};
    int64_t not_after;
    if (certexpiry_check_own(ctx, (int64_t)time(NULL), &not_after, warn_cert, &o) != 0)
        return;
    for (int i = 0; i < cfg->ncerts; i++)
        if (strcmp(cfg->certs[i].file, f->path) == 0) /* the same file for two upstreams */
            return;
    struct cfg_cert *c = realloc(cfg->certs, (size_t)(cfg->ncerts + 1) * sizeof(*c));
    if (!c) {
        cfg_out_of_memory(ld);
        return;
    }
    cfg->certs = c;
    cfg->certs[cfg->ncerts++] = (struct cfg_cert){f->path, not_after};
}

/* ---- the certificates of `listen ... tls` ---- */

/* Where sni_attach's conflicts are told: the loader, and how many were. */
struct cert_conflicts {
    struct cfg_loader *ld;
    int count;
};

/* Two certificates claim one name: said at the line of the second, naming the first's. Of
 * the same names, they conflict by their key type; else by the names, which overlap. */
static void report_conflict(void *arg, const char *name, int first, int second, bool same_key)
{
    struct cert_conflicts *cc = arg;
    const struct tls_pair_conf *a = &cc->ld->cfg->tls_pairs[first];
    const struct tls_pair_conf *b = &cc->ld->cfg->tls_pairs[second];
    if (same_key)
        cfg_report(cc->ld, b->cert_line,
                   "tls_cert: %s: claims %s, which the tls_cert of line %d (%s) claims too, "
                   "with a key of the same type (%s, and %s there): the same names take one "
                   "certificate of each key type (rsa, ecdsa, ed25519 ...)",
                   b->cert, name[0] ? name : "no name", a->cert_line, a->cert, b->key_desc,
                   a->key_desc);
    else
        cfg_report(cc->ld, b->cert_line,
                   "tls_cert: %s: claims %s, which the tls_cert of line %d (%s) claims too: a "
                   "name is served by one certificate, or by one of each key type that all name "
                   "exactly the same", b->cert, name, a->cert_line, a->cert);
    cc->count++;
}

/* The names a context's certificate serves, counted; the first kept for a warning. */
struct name_count {
    int count;
    char first[SNI_NAME_MAX + 1];
};

static void count_name(void *arg, const char *name)
{
    struct name_count *nc = arg;
    if (nc->count++ == 0)
        snprintf(nc->first, sizeof(nc->first), "%s", name);
}

/* With several certificates the names decide: one chosen by its CN only, or by no name at all,
 * is said (browsers take no certificate by its CN: Chrome since version 58, in 2017). The
 * names are counted into nc, and the first kept, for `portico -t`. */
static void check_cert_names(struct cfg_loader *ld, void *ctx, int i, struct name_count *nc)
{
    const struct tls_pair_conf *p = &ld->cfg->tls_pairs[i];
    bool from_cn = false;
    sni_cert_names(ctx, count_name, nc, &from_cn);
    if (nc->count == 0 && i > 0)
        cfg_warn(ld, p->cert_line, "tls_cert: %s: the certificate names no host a client can "
                                   "ask for (subjectAltName DNS, or CN): it is never chosen",
                 p->cert);
    else if (from_cn)
        cfg_warn(ld, p->cert_line, "tls_cert: %s: the certificate has no subjectAltName DNS "
                                   "name: it is chosen for its CN %s, which browsers do not "
                                   "accept as its name", p->cert, nc->first);
}

/* What a staple's response says of its certificate, in its warning and in `portico -t`. */
static const char *const ocsp_status_words[] = {
    [OCSP_CERT_GOOD] = "good",
    [OCSP_CERT_REVOKED] = "REVOKED",
    [OCSP_CERT_UNKNOWN] = "unknown to its responder",
};

/* A staple's dates in words into buf: "until ..." with when clients stop taking it. */
static void staple_until(const struct ocsp_staple_info *info, char *buf, size_t size)
{
    char when[32];
    certexpiry_format_time(info->valid_until, when, sizeof(when));
    snprintf(buf, size, "until %s%s", when,
             info->next_update ? "" : " (no nextUpdate: a day after its thisUpdate)");
}

/* The tls_ocsp_response of pair i, read and checked against its context's certificate: a file
 * not a response, or one for another certificate, refused at its line; one out of date warned
 * about and not stapled (strict clients refuse a stale staple, where none is fine); one
 * expiring within a day, or of a revoked certificate, warned about. false after a refusal. */
static bool load_staple(struct cfg_loader *ld, void *ctx, int i, const char *kind)
{
    struct tls_pair_conf *p = &ld->cfg->tls_pairs[i];
    const struct named_file file[] = {{"tls_ocsp_response", p->ocsp, p->ocsp_line}};
    if (!files_readable(ld, file, 1))
        return false;
    struct ocsp_staple_info info;
    char err[256], until[112], when[32], span[32], of[64] = "";
    int64_t now = (int64_t)time(NULL);
    if (ocsp_staple_load(ctx, p->ocsp, now, &info, err, sizeof(err)) != 0) {
        cfg_report(ld, p->ocsp_line, "tls_ocsp_response: %s: %s", p->ocsp, err);
        return false;
    }
    if (kind)
        snprintf(of, sizeof(of), " (%s)", kind);
    staple_until(&info, until, sizeof(until));
    bool ahead = !info.stapled && info.valid_until >= now;
    if (!info.stapled && !ahead) {
        certexpiry_format_time(info.valid_until, when, sizeof(when));
        certexpiry_format_span(now - info.valid_until, span, sizeof(span));
        cfg_warn(ld, p->ocsp_line, "tls_ocsp_response: %s: the staple of %s%s expired on %s (%s "
                                   "ago, %s): not stapled; fetch a new response and reload",
                 p->ocsp, p->cert, of, when, span,
                 info.next_update ? "its nextUpdate" : "a day after its thisUpdate, it has no "
                                                       "nextUpdate");
    } else if (ahead) {
        certexpiry_format_time(info.this_update, when, sizeof(when));
        cfg_warn(ld, p->ocsp_line, "tls_ocsp_response: %s: the staple of %s%s is not yet valid "
                                   "(thisUpdate %s): not stapled", p->ocsp, p->cert, of, when);
    } else if (info.valid_until < now) { /* within the clock's leeway */
        certexpiry_format_time(info.valid_until, when, sizeof(when));
        certexpiry_format_span(now - info.valid_until, span, sizeof(span));
        cfg_warn(ld, p->ocsp_line, "tls_ocsp_response: %s: the staple of %s%s expired on %s (%s "
                                   "ago, %s): stapled within the 5 minutes allowed for clock "
                                   "skew; fetch a new response and reload", p->ocsp, p->cert, of,
                 when, span, info.next_update ? "its nextUpdate" : "a day after its thisUpdate");
    } else if (info.valid_until - now <= 86400) {
        certexpiry_format_span(info.valid_until - now, span, sizeof(span));
        cfg_warn(ld, p->ocsp_line, "tls_ocsp_response: %s: the staple of %s%s expires in %s "
                                   "(%s): fetch a new response and reload", p->ocsp, p->cert, of,
                 span, until);
    }
    if (info.status != OCSP_CERT_GOOD)
        cfg_warn(ld, p->ocsp_line, "tls_ocsp_response: %s: says the certificate %s%s is %s",
                 p->ocsp, p->cert, of, ocsp_status_words[info.status]);
    p->ocsp_listing = cfg_line_text(ld, p->ocsp_line, "tls_ocsp_response %s: %s for %s%s, %s, %s",
                                    p->ocsp, info.stapled ? "stapled" : "NOT stapled", p->cert,
                                    of, ocsp_status_words[info.status],
                                    info.stapled ? until
                                    : ahead      ? "not yet valid"
                                                 : "out of date");
    return true;
}

/* The CAs without a CRL named one a line; the rest in one line that counts them: a bundle of
 * hundreds (a system store given as tls_client_ca) printed hundreds of lines at every load. */
#define CRL_GAPS_NAMED 5

/* The CAs of tls_client_ca mtls_crl_gaps found without a CRL, so far. */
struct crl_gaps {
    struct key_origin *at;                /* tls_client_crl's line */
    int n;
};

/* A CA of tls_client_ca without a CRL in tls_client_crl (mtls_crl_gaps), at that key's line:
 * named, while CRL_GAPS_NAMED have not been. */
static void warn_crl_gap(void *arg, const char *subject)
{
    struct crl_gaps *g = arg;
    if (++g->n > CRL_GAPS_NAMED)
        return;
    char text[400];
    snprintf(text, sizeof(text), "holds no CRL of %s, a CA of tls_client_ca: every client "
                                 "certificate whose chain goes through it is refused (unable to "
                                 "get certificate CRL); add its CRL, an empty one if it revoked "
                                 "nothing", subject);
    warn_cert(g->at, text);
}

/* The CAs past the named ones, counted in one line. */
static void warn_crl_gaps_unnamed(const struct crl_gaps *g)
{
    if (g->n <= CRL_GAPS_NAMED)
        return;
    char text[300];
    snprintf(text, sizeof(text), "holds no CRL of %d more CAs of tls_client_ca (only the first %d "
                                 "are named): every client certificate whose chain goes through "
                                 "one of them is refused too", g->n - CRL_GAPS_NAMED,
             CRL_GAPS_NAMED);
    warn_cert(g->at, text);
}

/* Client certificates (tls_verify_client) asked by the default context: the CA file read and
 * its digest, with the mode and depth, in bind (sessions resume under these settings only).
 * false after an error, said at the line of the key at fault. */
static bool ask_client_certs(struct cfg_loader *ld, void *ctx, unsigned char *bind)
{
    struct config *cfg = ld->cfg;
    const struct cfg_key_lines *lines = &ld->proxy_lines;
    const char *mode = mtls_mode_name(cfg->tls_verify_client);
    if (!cfg->tls_client_ca) {
        cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "tls_verify_client"),
                   "tls_verify_client = %s needs tls_client_ca, the CA certificates clients' "
                   "certificates must chain to", mode);
        return false;
    }
    const struct named_file ca[] = {
        {"tls_client_ca", cfg->tls_client_ca, cfg_key_line(lines, CFG_SEC_PROXY, "tls_client_ca")},
        {"tls_client_crl", cfg->tls_client_crl,
         cfg_key_line(lines, CFG_SEC_PROXY, "tls_client_crl")},
    };
    size_t nfiles = cfg->tls_client_crl ? 2 : 1;
    if (!files_readable(ld, ca, nfiles))
        return false;
    struct tls_error e = {0};
    if (mtls_bind(cfg->tls_verify_client, cfg->tls_verify_depth, cfg->tls_client_ca,
                  cfg->tls_client_crl, bind) != 0) {
        cfg_report(ld, ca[0].line, "tls_client_ca: %s: %s", cfg->tls_client_ca, strerror(errno));
        return false;
    }
    if (mtls_apply(ctx, cfg->tls_verify_client, cfg->tls_client_ca, cfg->tls_client_crl,
                   cfg->tls_verify_depth, bind, &e) != 0) {
        report_tls_error(ld, &e, ca, nfiles, ca[0].line, "tls_client_ca");
        return false;
    }
    if (cfg->tls_client_crl) {
        struct key_origin o = {ld, ca[1].line, ca[1].key, ca[1].path, NULL};
        certexpiry_check_crls(ctx, (int64_t)time(NULL), warn_cert, &o);
        struct crl_gaps gaps = {&o, 0};
        mtls_crl_gaps(ctx, warn_crl_gap, &gaps);
        warn_crl_gaps_unnamed(&gaps);
    }
    return true;
}

/* Each pair whole, readable and matching, loaded into a context of its own (every check a
 * single pair had); the first becomes the context connections are made from, choosing among
 * all by SNI (sni.h) when there are several or tls_strict_sni is on. Each problem at the line
 * of the file at fault; after any, no context is kept. */
static void load_server_certs(struct cfg_loader *ld)
{
    struct config *cfg = ld->cfg;
    int n = cfg->ntls_pairs;
    void **ctxs = calloc((size_t)n, sizeof(*ctxs));
    struct name_count *names = calloc((size_t)n, sizeof(*names));
    bool all = true, stapled = false;
    if (!ctxs || !names) {
        cfg_out_of_memory(ld);
        free(ctxs);
        free(names);
        return;
    }
    for (int i = 0; i < n; i++) {
        const struct tls_pair_conf *p = &cfg->tls_pairs[i];
        if (!p->cert || !p->key) {
            bool cert = p->cert != NULL;
            cfg_report(ld, cert ? p->cert_line : p->key_line,
                       "%s: %s: has no %s (the Nth tls_cert goes with the Nth tls_key)",
                       cert ? "tls_cert" : "tls_key", cert ? p->cert : p->key,
                       cert ? "tls_key" : "tls_cert");
            all = false;
            continue;
        }
        const struct named_file files[] = {
            {"tls_cert", p->cert, p->cert_line},
            {"tls_key", p->key, p->key_line},
        };
        struct tls_error e = {0};
        if (!files_readable(ld, files, ARRAY_LEN(files))) {
            all = false;
            continue;
        }
        if (!(ctxs[i] = tls_server_ctx(p->cert, p->key, &e))) {
            report_tls_error(ld, &e, files, ARRAY_LEN(files), p->cert_line, "tls_cert/tls_key");
            all = false;
            continue;
        }
        struct tls_pair_conf *pc = &cfg->tls_pairs[i];
        pc->key_type = (int)sni_key_type(ctxs[i], pc->key_desc, sizeof(pc->key_desc));
        pc->entry = i;
        check_own_cert(ld, ctxs[i], &files[0], n > 1 ? pc->key_desc : NULL);
        if (pc->ocsp && !load_staple(ld, ctxs[i], i, n > 1 ? pc->key_desc : NULL))
            all = false;
        stapled |= pc->ocsp != NULL;
        if (n > 1)
            check_cert_names(ld, ctxs[i], i, &names[i]);
    }
    unsigned char bind[MTLS_BIND_LEN];
    bool asked = cfg->tls_verify_client != MTLS_OFF;
    if (all && asked && !ask_client_certs(ld, ctxs[0], bind))
        all = false;
    struct cert_conflicts cc = {ld, 0};
    int *entry = calloc((size_t)n, sizeof(*entry));
    if (!entry) {
        cfg_out_of_memory(ld);
        all = false;
    }
    if (all && (n > 1 || cfg->tls_strict_sni) &&
        sni_attach(ctxs, n, cfg->tls_strict_sni, asked ? bind : NULL, report_conflict, &cc,
                   entry) != 0) {
        if (cc.count == 0)
            cfg_out_of_memory(ld);
        all = false;
    }
    for (int i = 0; all && n > 1 && i < n; i++) {
        struct tls_pair_conf *p = &cfg->tls_pairs[i];
        char more[40] = "";
        if (names[i].count > 1)
            snprintf(more, sizeof(more), " and %d more name%s", names[i].count - 1,
                     names[i].count == 2 ? "" : "s");
        p->entry = entry[i];
        p->listing = cfg_line_text(ld, p->cert_line, "tls_cert %s: %s, %s%s%s", p->cert,
                                   p->key_desc, names[i].count ? names[i].first : "no name", more,
                                   p->entry == 0 ? " (the default)" : "");
    }
    free(entry);
    free(names);
    if (all) {
        cfg->server_ssl_ctx = ctxs[0]; /* which owns the others now */
        tls_server_http2(cfg->server_ssl_ctx, cfg->http2);
        if (stapled)
            ocsp_serve(cfg->server_ssl_ctx);
        ticket_use(cfg->server_ssl_ctx, cfg->tls_ticket_rotation_ms);
    } else {
        for (int i = 0; i < n; i++)
            tls_ctx_free(ctxs[i]);
    }
    free(ctxs);
}

/* pid_file is written as a new file renamed over the old one: its directory must take files.
 * Once the start has switched to `user`, a reload writes no pid file and the next start is root's
 * again: a directory the user may not write to (/run) is fine then, or no reload could pass. */
static void check_pid_file(struct cfg_loader *ld, const char *path)
{
    struct stat st;
    int err = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? EISDIR : create_errno(path);
    if (err == EACCES && privileges_dropped())
        err = 0;
    if (err)
        cfg_report(ld, cfg_key_line(&ld->proxy_lines, CFG_SEC_PROXY, "pid_file"), "pid_file: %s: %s",
                   path, strerror(err));
}

/* user and group must exist now, so that `portico -t` passing means the switch will not fail on
 * a name; they are resolved here, once, and the start uses these ids. */
static void resolve_user(struct cfg_loader *ld)
{
    struct config *cfg = ld->cfg;
    const struct cfg_key_lines *lines = &ld->proxy_lines;
    char buf[16384];
    int err;
    if (cfg->group && !cfg->user) {
        cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "group"),
                   "group: needs user (the user to switch to)");
        return;
    }
    if (cfg->user) {
        struct passwd pw, *found = NULL;
        err = getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &found);
        if (!found) {
            cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "user"), "user: %s: %s", cfg->user,
                       err ? strerror(err) : "no such user");
            return;
        }
        cfg->uid = pw.pw_uid;
        cfg->gid = pw.pw_gid;
    }
    if (cfg->group) {
        struct group gr, *found = NULL;
        err = getgrnam_r(cfg->group, &gr, buf, sizeof(buf), &found);
        if (!found) {
            cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "group"), "group: %s: %s",
                       cfg->group, err ? strerror(err) : "no such group");
            return;
        }
        cfg->gid = gr.gr_gid;
    }
}

static void validate_proxy(struct cfg_loader *ld)
{
    struct config *cfg = ld->cfg;
    const struct cfg_key_lines *lines = &ld->proxy_lines;
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
        if (cfg_same_sockaddr(&cfg->listens[i].addr, cfg->listens[i].addrlen, &cfg->admin_addr,
                              cfg->admin_addrlen))
            cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "admin_listen"),
                       "admin_listen: %s is also a listen address", cfg->admin_listen_text);

    bool any_tls_listen = false;
    for (int i = 0; i < cfg->nlisten; i++)
        any_tls_listen |= cfg->listens[i].tls;
    if (any_tls_listen && cfg->ntls_pairs == 0) {
        cfg_report(ld, ld->tls_listen_line,
                   "a 'listen ... tls' needs tls_cert and tls_key in [proxy]");
    } else if (any_tls_listen) {
        load_server_certs(ld);
    } else if (ld->nerrors == 0) {
        /* without a tls listen the files are neither read nor checked: a config meant for
         * HTTPS that serves plain HTTP only would pass -t without a word (after an error, the
         * tls listen may be the line refused) */
        for (int i = 0; i < cfg->ntls_pairs; i++) {
            const struct tls_pair_conf *p = &cfg->tls_pairs[i];
            const struct {
                const char *key;
                int line;
            } halves[] = {{"tls_cert", p->cert_line},
                          {"tls_key", p->key_line},
                          {"tls_ocsp_response", p->ocsp_line}};
            for (size_t h = 0; h < ARRAY_LEN(halves); h++)
                if (halves[h].line)
                    cfg_warn(ld, halves[h].line,
                             "%s: not used, no listen line has tls (listen = ADDR:PORT tls "
                             "serves HTTPS with tls_cert and tls_key)", halves[h].key);
        }
        static const char *const tls_only[] = {"tls_strict_sni", "tls_verify_client",
                                               "tls_client_ca", "tls_client_crl",
                                               "tls_verify_depth"};
        for (size_t k = 0; k < ARRAY_LEN(tls_only); k++) {
            int line = cfg_key_line(lines, CFG_SEC_PROXY, tls_only[k]);
            if (line)
                cfg_warn(ld, line, "%s: not used, no listen line has tls", tls_only[k]);
        }
    }
    if (any_tls_listen && cfg->tls_verify_client == MTLS_OFF) {
        static const char *const asked_only[] = {"tls_client_ca", "tls_client_crl",
                                                 "tls_verify_depth"};
        for (size_t k = 0; k < ARRAY_LEN(asked_only); k++) {
            int line = cfg_key_line(lines, CFG_SEC_PROXY, asked_only[k]);
            if (line)
                cfg_warn(ld, line, "%s: not used, tls_verify_client is off (no client "
                                   "certificate is asked for)", asked_only[k]);
        }
    }
    /* nginx's set_real_ip_from left empty silently changes nothing: an operator is told */
    if (cfg->real_ip != REAL_IP_OFF && cfg->ntrusted_proxies == 0)
        cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "real_ip"),
                   "real_ip: needs trusted_proxies, the proxies whose %s is taken (without "
                   "them no client's is)", real_ip_name(cfg->real_ip));
    if (ld->h2c_listen_line && !cfg->http2)
        cfg_report(ld, ld->h2c_listen_line, "a 'listen ... h2c' needs http2 = on");
    int page_dir = cfg_key_line(lines, CFG_SEC_PROXY, "error_page_dir");
    if (cfg->error_page_dir &&
        check_file(ld, page_dir, "error_page_dir", cfg->error_page_dir, FILE_DIR) == 0) {
        /* the pages are read at each response, and a placeholder they do not know is sent as
         * it is: said now, at the key's line, of the pages there now */
        struct key_origin o = {ld, page_dir, "error_page_dir", NULL, NULL};
        errpage_check_pages(cfg->error_page_dir, warn_key, &o);
    }
    check_log(ld, "access_log", cfg->access_log);
    check_log(ld, "error_log", cfg->error_log);
    /* log_error_open refuses it too: messages never go into a file access log */
    if (log_target_is_file(cfg->error_log) && log_target_is_file(cfg->access_log) &&
        same_file(cfg->error_log, cfg->access_log))
        cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "error_log"),
                   "error_log: %s is the access_log file", cfg->error_log);
    if (cfg->pid_file)
        check_pid_file(ld, cfg->pid_file);
    /* the pid file is renamed over its path: a log there would be replaced by it, and written
     * on unlinked from then on */
    const struct {
        const char *key;
        const char *target;
    } logs[] = {{"access_log", cfg->access_log}, {"error_log", cfg->error_log}};
    for (size_t i = 0; cfg->pid_file && i < ARRAY_LEN(logs); i++)
        if (log_target_is_file(logs[i].target) && same_file(cfg->pid_file, logs[i].target))
            cfg_report(ld, cfg_key_line(lines, CFG_SEC_PROXY, "pid_file"),
                       "pid_file: %s is the %s file", cfg->pid_file, logs[i].key);
    resolve_user(ld);
}

/* Backup origins and slow_start: a standby needs a primary to stand by for, an address is a
 * primary or a backup (its listings share one verdict), and a ring cannot ramp a weight (a key
 * would move back and forth between origins as it grew: nginx refuses slow_start with hash). */
static void validate_backups(struct cfg_loader *ld, struct upstream_conf *up,
                             const struct cfg_key_lines *lines)
{
    int primaries = 0;
    for (int o = 0; o < up->norigins; o++) {
        primaries += !up->origins[o].backup;
        for (int f = 0; f < o; f++)
            if (up->origins[f].backup != up->origins[o].backup &&
                strcmp(up->origins[f].text, up->origins[o].text) == 0) {
                cfg_report(ld, up->line, "[upstream %s]: origin %s is listed both as a primary "
                                         "and as a backup", up->name, up->origins[o].text);
                break;
            }
    }
    if (up->norigins > 0 && primaries == 0)
        cfg_report(ld, up->line, "[upstream %s]: every origin is a backup; a backup takes "
                                 "requests only when no primary can, so list one without "
                                 "`backup`", up->name);
    int slow_start = cfg_key_line(lines, CFG_SEC_UPSTREAM, "slow_start");
    if (slow_start && up->slow_start_ms && up->balance == BALANCE_HASH)
        cfg_report(ld, slow_start, "slow_start: not with balance = hash (a ramped weight would "
                                   "move keys back and forth between origins)");
}

/* retry_budget and retry_timeout bound retries: a minimum is the budget's, and with
 * retries = 0 there is nothing to bound (a key that would do nothing is refused, not ignored). */
static void validate_retry_bounds(struct cfg_loader *ld, const struct upstream_conf *up,
                                  const struct cfg_key_lines *lines)
{
    int budget = cfg_key_line(lines, CFG_SEC_UPSTREAM, "retry_budget");
    int min = cfg_key_line(lines, CFG_SEC_UPSTREAM, "retry_budget_min");
    int timeout = cfg_key_line(lines, CFG_SEC_UPSTREAM, "retry_timeout");
    if (min && !up->retry_budget)
        cfg_report(ld, min, "retry_budget_min: without retry_budget it bounds nothing (set "
                            "retry_budget = 20%%, say)");
    if (budget && up->retry_budget && up->retry_budget_percent == 0 && up->retry_budget_min == 0)
        cfg_report(ld, min ? min : budget, "retry_budget: 0%% with retry_budget_min = 0 allows "
                                           "no retry at all; set retries = 0 instead");
    if (budget && up->retry_budget && up->retries == 0)
        cfg_report(ld, budget, "retry_budget: retries = 0 leaves no retry to bound");
    if (timeout && up->retry_timeout_ms && up->retries == 0)
        cfg_report(ld, timeout, "retry_timeout: retries = 0 leaves no retry to bound");
}

/* An origin's default sticky value: 16 hex digits of FNV-1a 64 of its host:port, mixed. The
 * same origin gets the same value in every worker, after a reload and wherever it is listed,
 * and the cookie does not show its address. (config.c cannot include hashkey.h, which includes
 * config.h: the hash is written out here.) */
static void sticky_default_value(struct origin_conf *o)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const char *p = o->text; *p; p++)
        h = (h ^ (unsigned char)*p) * UINT64_C(1099511628211);
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    snprintf(o->cookie, sizeof(o->cookie), "%016llx", (unsigned long long)h);
}

/* sticky: every origin gets its value; two addresses with one value could not be told apart,
 * one address listed twice with two values would answer one and set the other (its listings
 * are one origin: the pick takes the first), and a hash keyed by the same cookie would never see
 * it (Portico takes it off the request). */
static void validate_sticky(struct cfg_loader *ld, struct upstream_conf *up)
{
    if (!up->sticky.on)
        return;
    for (int o = 0; o < up->norigins; o++) {
        struct origin_conf *oc = &up->origins[o];
        if (!oc->cookie_set)
            sticky_default_value(oc);
        for (int f = 0; f < o; f++) {
            bool same_value = strcmp(up->origins[f].cookie, oc->cookie) == 0;
            bool same_origin = strcmp(up->origins[f].text, oc->text) == 0;
            if (same_value != same_origin) {
                if (same_value)
                    cfg_report(ld, up->sticky.line, "sticky: origins %s and %s have one cookie "
                                                    "value '%s'", up->origins[f].text, oc->text,
                               oc->cookie);
                else
                    cfg_report(ld, up->sticky.line, "sticky: origin %s is listed with two "
                                                    "cookie values, '%s' and '%s'", oc->text,
                               up->origins[f].cookie, oc->cookie);
                break;
            }
        }
    }
    if (up->balance == BALANCE_HASH && up->hash_key == HASH_KEY_COOKIE &&
        strcmp(up->hash_name, up->sticky.name) == 0)
        cfg_report(ld, up->sticky.line, "sticky: cookie %s is the key of balance = hash; the "
                                        "sticky cookie is taken off requests, so the hash would "
                                        "never see it", up->sticky.name);
}

static void validate_upstream(struct cfg_loader *ld, int i)
{
    struct config *cfg = ld->cfg;
    struct upstream_conf *up = &cfg->upstreams[i];
    const struct cfg_key_lines *lines = &ld->upstream_lines[i];
    if (up->norigins == 0)
        cfg_report(ld, up->line, "[upstream %s] has no origin", up->name);
    validate_sticky(ld, up);
    up->pick_by_request = up->balance == BALANCE_HASH || up->sticky.on;
    for (int t = 0; t < TIMER_COUNT; t++)
        if (!cfg_key_line(lines, CFG_SEC_UPSTREAM, timer_name(t)))
            up->timers_ms[t] = cfg->timers_ms[t];
    if (!cfg_key_line(lines, CFG_SEC_UPSTREAM, "interim_resets_timer"))
        up->interim_resets_timer = cfg->interim_resets_timer;
    if (!cfg_key_line(lines, CFG_SEC_UPSTREAM, "origin_rcvbuf"))
        up->origin_rcvbuf = cfg->origin_rcvbuf;
    int fail_timeout = cfg_key_line(lines, CFG_SEC_UPSTREAM, "fail_timeout");
    if (fail_timeout && (cfg_key_line(lines, CFG_SEC_UPSTREAM, "fail_window") ||
                         cfg_key_line(lines, CFG_SEC_UPSTREAM, "down_time")))
        cfg_report(ld, fail_timeout, "fail_timeout: it sets both fail_window and down_time; "
                                     "use either it or them");
    /* nginx ignores max_fails for a lone server; here the lone origin is marked down as any, and
     * nothing is left to send its requests to */
    int max_fails = cfg_key_line(lines, CFG_SEC_UPSTREAM, "max_fails");
    if (max_fails && up->max_fails > 0 && up->norigins == 1) {
        char down[32];
        cfg_warn(ld, max_fails, "max_fails = %llu with one origin: after %llu failure%s it is "
                                "marked down and every request gets 503 no_healthy_origin for "
                                "down_time (%s), even once it is back; leave max_fails out, or "
                                "list more origins", (unsigned long long)up->max_fails,
                 (unsigned long long)up->max_fails, up->max_fails == 1 ? "" : "s",
                 cfg_duration_text(up->down_time_ms, down, sizeof(down)));
    }
    validate_backups(ld, up, lines);
    validate_retry_bounds(ld, up, lines);
    bool has_sim = false;
    for (int o = 0; o < up->norigins; o++) {
        has_sim |= up->origins[o].is_sim;
        if (!up->origins[o].max_conns) /* the upstream's is the default, as default-server's */
            up->origins[o].max_conns = (unsigned)up->max_conns;
        up->limited |= up->origins[o].max_conns > 0;
    }
    if (up->tls && has_sim)
        cfg_report(ld, up->line, "[upstream %s]: the simulator origin does not speak TLS",
                   up->name);
    if (!up->tls && (up->ca_file || up->sni || up->client_cert || up->client_key))
        cfg_report(ld, up->line, "[upstream %s]: ca_file/sni/client_cert/client_key need tls = on",
                   up->name);
    bool pair = !!up->client_cert == !!up->client_key;
    if (!pair)
        cfg_report(ld, up->line, "[upstream %s]: client_cert and client_key go together", up->name);
    if (up->tls && up->norigins > 0 && pair) {
        const struct named_file files[] = {
            {"ca_file", up->verify ? up->ca_file : NULL,
             cfg_key_line(lines, CFG_SEC_UPSTREAM, "ca_file")},
            {"client_cert", up->client_cert, cfg_key_line(lines, CFG_SEC_UPSTREAM, "client_cert")},
            {"client_key", up->client_key, cfg_key_line(lines, CFG_SEC_UPSTREAM, "client_key")},
        };
        struct tls_error e = {0};
        char what[300];
        snprintf(what, sizeof(what), "[upstream %s]", up->name);
        if (files_readable(ld, files, ARRAY_LEN(files)) &&
            !(up->ssl_ctx =
                  tls_client_ctx(up->verify, up->ca_file, up->client_cert, up->client_key, &e)))
            report_tls_error(ld, &e, files, ARRAY_LEN(files), up->line, what);
        if (up->ssl_ctx && up->client_cert)
            check_own_cert(ld, up->ssl_ctx, &files[1], NULL);
        if (up->ssl_ctx && files[0].path) {
            struct key_origin o = {ld, files[0].line, files[0].key, files[0].path, NULL};
            certexpiry_check_trusted(up->ssl_ctx, (int64_t)time(NULL), MAX_CA_WARNINGS, warn_cert,
                                     &o);
        }
    }
}

/* A route's client_rate and its burst: [proxy]'s unless set here; a burst above 0 set where no
 * rate applies would limit nothing, and is refused at its line. */
static void validate_client_rate(struct cfg_loader *ld, struct route_conf *r, int i)
{
    const struct config *cfg = ld->cfg;
    int rate_line = cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "client_rate");
    int burst_line = cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "client_rate_burst");
    if (!rate_line)
        r->client_rate = cfg->client_rate;
    if (!burst_line)
        r->client_rate_burst = cfg->client_rate_burst;
    if (burst_line && r->client_rate_burst && !r->client_rate.count)
        cfg_report(ld, burst_line, "client_rate_burst without client_rate (in [route %s] or "
                   "[proxy]): it would limit nothing", r->name);
}

/* A prefix and a rewrite_prefix of which one ends in '/' and the other not join into "/v1x"
 * (prefix = /api/, rewrite_prefix = /v1) or take "/apix" as "/x" (prefix = /api, rewrite_prefix
 * = /): sent as written, as nginx does, but rarely what was meant (README, Header rules and path
 * rewrites). */
static void warn_rewrite_joint(struct cfg_loader *ld, const struct route_conf *r, int i)
{
    if (!r->rewrite_prefix || r->prefix_len == 0 || r->rewrite_prefix_len == 0)
        return;
    bool prefix_slash = r->prefix[r->prefix_len - 1] == '/';
    bool rewrite_slash = r->rewrite_prefix[r->rewrite_prefix_len - 1] == '/';
    if (prefix_slash == rewrite_slash)
        return;
    int line = cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "rewrite_prefix");
    /* (a "/" after the cut goes with a replacement ending in '/': rewrite.c) */
    cfg_warn(ld, line ? line : r->line,
             "[route %s]: rewrite_prefix = %s and prefix = %s end differently in '/': "
             "%sx goes to the origin as %sx (end both with '/' or neither)",
             r->name, r->rewrite_prefix, r->prefix, r->prefix, r->rewrite_prefix);
}

/* A route naming a scheme no listener speaks would never be taken: said, not refused (a
 * listener of that scheme may be on its way in the next reload). */
static void warn_scheme_unserved(struct cfg_loader *ld, const struct route_conf *r, int i)
{
    if (r->scheme == ROUTE_SCHEME_ANY)
        return;
    const struct config *cfg = ld->cfg;
    for (int l = 0; l < cfg->nlisten; l++)
        if (route_scheme_of(cfg->listens[l].tls) == r->scheme)
            return;
    bool https = r->scheme == ROUTE_SCHEME_HTTPS;
    cfg_warn(ld, cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "scheme"),
             "[route %s]: scheme = %s and no %s listener: no request will take the route",
             r->name, https ? "https" : "http", https ? "`listen ... tls`" : "plain or h2c");
}

/* The route's [upstream], by name. */
static void resolve_upstream(struct cfg_loader *ld, struct route_conf *r, int i)
{
    struct config *cfg = ld->cfg;
    if (!r->upstream_name) {
        cfg_report(ld, r->line, "[route %s] has no upstream", r->name);
        return;
    }
    for (int u = 0; u < cfg->nupstreams; u++)
        if (strcmp(cfg->upstreams[u].name, r->upstream_name) == 0)
            r->upstream = u;
    int upstream_line = cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "upstream");
    if (r->upstream < 0)
        cfg_report(ld, upstream_line ? upstream_line : r->line, "[route %s]: no [upstream %s]",
                   r->name, r->upstream_name);
}

/* The route's mirror upstreams, by name: each another upstream than the route's own (a copy to
 * production itself would double its load), named once. */
static void resolve_mirrors(struct cfg_loader *ld, struct route_conf *r, int i)
{
    struct config *cfg = ld->cfg;
    for (int m = 0; m < r->nmirrors; m++) {
        r->mirrors[m] = -1;
        for (int u = 0; u < cfg->nupstreams; u++)
            if (strcmp(cfg->upstreams[u].name, r->mirror_names[m]) == 0)
                r->mirrors[m] = u;
        if (r->mirrors[m] < 0)
            cfg_report(ld, r->mirror_lines[m], "[route %s]: mirror: no [upstream %s]", r->name,
                       r->mirror_names[m]);
        else if (r->mirrors[m] == r->upstream)
            cfg_report(ld, r->mirror_lines[m], "[route %s]: mirror = %s is the route's own "
                       "upstream: its origins would get every request twice", r->name,
                       r->mirror_names[m]);
        for (int o = 0; o < m; o++)
            if (strcmp(r->mirror_names[o], r->mirror_names[m]) == 0)
                cfg_report(ld, r->mirror_lines[m], "[route %s]: mirror = %s named twice (line "
                           "%d)", r->name, r->mirror_names[m], r->mirror_lines[o]);
    }
    /* the sampling and body keys of a route that mirrors nothing are idle: said, as a mirror
     * commented out for a while leaves them behind */
    static const char *const mirror_keys[] = {"mirror_percent", "mirror_body"};
    for (size_t k = 0; r->nmirrors == 0 && k < ARRAY_LEN(mirror_keys); k++) {
        int line = cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, mirror_keys[k]);
        if (line)
            cfg_warn(ld, line, "[route %s]: %s without mirror: it does nothing", r->name,
                     mirror_keys[k]);
    }
}

/* The line of the route's return key, or 0. A return line refused at load leaves no answer but
 * still says the route answers itself: the route is not then also told it has no upstream (one
 * mistake, one message, as for any other key). */
static int return_line(const struct cfg_loader *ld, int i)
{
    return cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "return");
}

/* A route that answers itself (return) has no origin: the keys that speak of one would be
 * silently idle, so they are refused at their lines. */
static void validate_return(struct cfg_loader *ld, const struct route_conf *r, int i)
{
    /* what goes to an origin, and what only a forwarded exchange does: interim responses
     * (exchange.c, after the return branch), Server-Timing on a relayed response and the body
     * rate of a body relayed (relay.c: a return route's body is discarded, ex_body_owed is
     * never called) */
    static const char *const origin_keys[] = {
        "upstream",          "rewrite_prefix",      "request_header",
        "request_header_remove", "early_hints",     "early_hints_learn",
        "early_hints_cache", "expect",              "continue_timeout",
        "processing_interval", "server_timing",     "client_body_min_rate",
        "client_body_rate_grace", "mirror",            "mirror_percent",
        "mirror_body",
    };
    for (size_t k = 0; k < ARRAY_LEN(origin_keys); k++) {
        int line = cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, origin_keys[k]);
        if (line)
            cfg_report(ld, line, "[route %s]: %s with return (line %d): the route answers "
                       "itself, no origin is asked", r->name, origin_keys[k], return_line(ld, i));
    }
}

/* Whether every route answers itself (return, its line refused or not): such a file needs no
 * [upstream]. */
static bool routes_all_return(const struct cfg_loader *ld)
{
    for (int i = 0; i < ld->cfg->nroutes; i++)
        if (!return_line(ld, i))
            return false;
    return ld->cfg->nroutes > 0;
}

static void validate_routes(struct cfg_loader *ld)
{
    struct config *cfg = ld->cfg;
    if (cfg->nroutes == 0 && cfg->nupstreams == 1) {
        /* One upstream and no route: everything goes there. */
        struct route_conf *r = add_route(ld, "default");
        if (!r || !(r->upstream_name = cfg_copy(ld, cfg->upstreams[0].name)))
            return;
    } else if (cfg->nroutes == 0 && cfg->nupstreams > 1) {
        cfg_report(ld, 0, "%d upstreams and no [route]: add routes to say which gets what",
                   cfg->nupstreams);
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        struct route_conf *r = &cfg->routes[i];
        if (!r->prefix && !(r->prefix = cfg_copy(ld, "/")))
            return;
        r->prefix_len = strlen(r->prefix);
        r->prefix_plain = route_plain_len(r->prefix, r->prefix_len) == r->prefix_len;
        r->prefix_read_len = route_prefix_read_len(r->prefix);
        r->narrowed = r->host || r->scheme != ROUTE_SCHEME_ANY;
        r->tie_rank = (r->scheme != ROUTE_SCHEME_ANY ? 2 : 0) + (r->conds ? 1 : 0);
        if (!cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "client_body_min_rate"))
            r->client_body_min_rate = cfg->client_body_min_rate;
        if (!cfg_key_line(&ld->route_lines[i], CFG_SEC_ROUTE, "client_body_rate_grace"))
            r->client_body_rate_grace_ms = cfg->client_body_rate_grace_ms;
        validate_client_rate(ld, r, i);
        r->acl = r->acl_own ? r->acl_own : cfg->acl; /* any rule of its own: none of [proxy]'s */
        warn_rewrite_joint(ld, r, i);
        warn_scheme_unserved(ld, r, i);
        if (return_line(ld, i))
            validate_return(ld, r, i);
        else
            resolve_upstream(ld, r, i);
        if (!return_line(ld, i)) /* (a refused return too: its line said it all) */
            resolve_mirrors(ld, r, i);
        for (int j = 0; j < i; j++) {
            const struct route_conf *o = &cfg->routes[j];
            bool same_host = (!o->host && !r->host) || (o->host && r->host &&
                                                        strcmp(o->host, r->host) == 0);
            /* the same as they read ("/%61pi/" is "/api/"): one would never be taken; routes
             * of other schemes (or one naming a scheme, one not) each take their own */
            if (!same_host || o->scheme != r->scheme ||
                o->prefix_read_len != r->prefix_read_len ||
                !route_prefix_matches(o->prefix, o->prefix_len, r->prefix))
                continue;
            if (route_conds_equal(o->conds, r->conds)) {
                cfg_report(ld, r->line, "[route %s] has the same host and prefix as [route %s]%s%s",
                           r->name, o->name,
                           r->scheme == ROUTE_SCHEME_ANY    ? ""
                           : r->scheme == ROUTE_SCHEME_HTTP ? ", and the same scheme = http"
                                                            : ", and the same scheme = https",
                           r->conds ? ", and the same method, header and cookie conditions"
                                    : "");
                break; /* one message for the route */
            }
            /* the first in the file wins among conditions that hold: one that holds whenever
             * r's do leaves r nothing */
            if (o->conds && r->conds && route_conds_cover(o->conds, r->conds)) {
                cfg_report(ld, r->line, "[route %s] is never taken: [route %s] before it, of "
                           "the same host, prefix and scheme, has conditions that hold whenever "
                           "its do", r->name, o->name);
                break;
            }
        }
    }
}

int cfg_fault_check(const struct config *cfg, const struct fault_rule *r, enum fault_key *key,
                    char *why, size_t size)
{
    int route = -1;
    if (r->route) {
        for (int j = 0; j < cfg->nroutes; j++)
            if (strcmp(cfg->routes[j].name, fault_text(r, r->route)) == 0)
                route = j;
        if (route < 0) {
            *key = FK_ROUTE;
            snprintf(why, size, "no [route %s]", fault_text(r, r->route));
            return -1;
        }
        if (cfg->routes[route].answer) { /* answered before any fault is decided */
            *key = FK_ROUTE;
            snprintf(why, size, "[route %s] answers itself (return): the rule would never act",
                     fault_text(r, r->route));
            return -1;
        }
    }
    /* a simulated total_timeout waits for the upstream's total_timeout: it must be on */
    for (int j = 0; r->failure == FAIL_TOTAL_TIMEOUT && j < cfg->nroutes; j++) {
        int u = cfg->routes[j].upstream;
        if ((route >= 0 && j != route) || u < 0 || cfg->upstreams[u].timers_ms[TIMER_TOTAL])
            continue;
        *key = FK_FAILURE;
        snprintf(why, size, "failure = total_timeout, but [upstream %s] (route %s) has no "
                            "total_timeout: set one, or limit the rule with route =",
                 cfg->upstreams[u].name, cfg->routes[j].name);
        return -1;
    }
    return 0;
}

/* An address on the loopback interface: 127.0.0.0/8 (also IPv4-mapped) or ::1. */
static bool is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (cfg_is_v4_mapped(sa))
        return ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12] == 127;
    return sa->ss_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* [faults], [fault NAME] and the admin token (issue 8). */
static void validate_faults(struct cfg_loader *ld)
{
    struct config *cfg = ld->cfg;
    cfg->faults.seeded = cfg_key_line(&ld->faults_lines, CFG_SEC_FAULTS, "seed") != 0;
    /* a list of its own alone honours nothing (header_control is off by default, and only a
     * reload turns it on): a set-up meant to take the header from CI would ignore it without a
     * word. The default written out, as in a template of every key, is not news (after an error,
     * header_control may be the line refused). */
    int clients = cfg_key_line(&ld->faults_lines, CFG_SEC_FAULTS, "header_control_clients");
    struct fault_cidr def[FAULT_MAX_LIST];
    char bad[64];
    int ndef = fault_cidr_list(HEADER_CLIENTS_DEFAULT, def, FAULT_MAX_LIST, bad, sizeof(bad));
    bool own = cfg->faults.nheader_clients != ndef ||
               memcmp(def, cfg->faults.header_clients, (size_t)ndef * sizeof(def[0])) != 0;
    if (clients && own && !cfg->faults.header_control && ld->nerrors == 0)
        cfg_warn(ld, clients, "header_control_clients: not used, header_control is off "
                              "(header_control = on honours the Portico-Fault header from them)");
    /* the admin API changes what clients get: off loopback, only with the token */
    if (cfg->admin_listen_text && !cfg->admin_token && !is_loopback(&cfg->admin_addr))
        cfg_report(ld, cfg_key_line(&ld->proxy_lines, CFG_SEC_PROXY, "admin_listen"),
                   "admin_listen: %s is not a loopback address: set admin_token",
                   cfg->admin_listen_text);
    for (int i = 0; i < cfg->nfault_rules; i++) {
        const struct fault_conf *f = &cfg->fault_rules[i];
        const struct fault_rule *r = &f->rule;
        const char *name = fault_text(r, r->name);
        char why[300];
        if (!f->broken && fault_rule_check(r, why, sizeof(why)) != 0)
            cfg_report(ld, f->line, "[fault %s]: %s", name, why);
        enum fault_key key;
        if (cfg_fault_check(cfg, r, &key, why, sizeof(why)) != 0)
            cfg_report(ld, cfg_key_line(&ld->fault_lines[i], CFG_SEC_FAULT, fault_key_name(key)),
                       "[fault %s]: %s", name, why);
    }
}

/* Defaults, cross-references and the files the config names; every problem is reported. */
static void validate(struct cfg_loader *ld)
{
    ld->line = 0; /* an allocation failure from here on concerns the whole file */
    validate_proxy(ld);
    if (ld->cfg->nupstreams == 0 && !routes_all_return(ld))
        cfg_report(ld, 0, "no [upstream] section: Portico needs at least one origin to forward to "
                   "(or routes that all answer themselves: return)");
    for (int i = 0; i < ld->cfg->nupstreams; i++)
        validate_upstream(ld, i);
    int burst_line = cfg_key_line(&ld->proxy_lines, CFG_SEC_PROXY, "client_rate_burst");
    if (burst_line && ld->cfg->client_rate_burst && !ld->cfg->client_rate.count)
        cfg_report(ld, burst_line, "client_rate_burst without client_rate in [proxy]: it would "
                   "limit nothing");
    validate_routes(ld);
    validate_faults(ld);
}

/* Loads from the reader's input into a new config named ld->name whose relative paths resolve
 * in dir[0..dir_len). */
static struct config *load(struct cfg_loader *ld, const char *dir, size_t dir_len, int *nerrors)
{
    struct config *cfg = ld->cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        cfg_out_of_memory(ld);
    else if ((cfg->path = cfg_copy(ld, ld->name)) && (cfg->dir = cfg_copy_span(ld, dir, dir_len)) &&
             set_defaults(ld) == 0) {
        /* inih's line buffer on the heap, as long as the reader's lines: a line, its CR, '\n',
         * '\0' */
        ini_use_stack = false;
        ini_initial_alloc = ini_max_line = CFG_MAX_LINE + 3;
        ini_allow_realloc = false;
        ini_allow_multiline = false; /* a repeated key is a list, never a continuation */
        ini_stop_on_first_error = false;
        int rc = ini_parse_stream(reader, ld, handler, ld);
        if (rc == -2)
            cfg_out_of_memory(ld);
        else if (rc > 0 && !ld->broken) /* a line the reader passed as valid: not expected */
            cfg_report(ld, rc, "syntax error (expected [section], key = value, or ; comment)");
        if (!ld->broken)
            validate(ld); /* also after parse errors: `portico -t` lists every problem at once */
    }
    free(ld->upstream_lines);
    free(ld->route_lines);
    free(ld->fault_lines);
    if (nerrors)
        *nerrors = ld->nerrors;
    if (ld->nerrors) {
        /* after the errors: `portico -t` on a bad file still tells every problem (not after
         * out of memory or 100 errors, whose rest is noise) */
        if (cfg && ld->errors && !ld->broken)
            cfg_print_warnings(cfg, ld->errors);
        cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

struct config *cfg_load(const char *path, FILE *errors, int *nerrors)
{
    return cfg_load_within(path, errors, nerrors, CFG_READ_MS);
}

struct config *cfg_load_within(const char *path, FILE *errors, int *nerrors, unsigned read_ms)
{
    struct cfg_loader ld = {.name = path, .errors = errors, .read_ms = read_ms};
    /* Opened and read without blocking: a reload loads on the main thread, which takes the
     * signals (SIGTERM included). A FIFO with no writer would hold open(2) until one came; one
     * whose writer keeps it open (-c /dev/stdin from a generator that stays) would hold read(2)
     * for ever: a pipe (-c <(...)) gives its text within read_ms, or is an error. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    /* A device (a config linked to /dev/zero) would be read without end, a reload with it. */
    struct stat st;
    bool device = fd >= 0 && fstat(fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode));
    ld.deadline_us = now_us() + read_ms * UINT64_C(1000);
    if (fd >= 0 && !device)
        ld.fp = fdopen(fd, "r");
    if (!ld.fp) {
        if (device)
            cfg_report(&ld, 0, "cannot read: a device, not a file or a pipe");
        else
            cfg_report(&ld, 0, "cannot open: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        if (nerrors)
            *nerrors = ld.nerrors;
        return NULL;
    }
    /* its directory, as dirname(3) has it */
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    while (len > 1 && path[len - 1] == '/')
        len--;
    const char *dir = !slash ? "." : len == 0 ? "/" : path;
    struct config *cfg = load(&ld, dir, len ? len : 1, nerrors);
    fclose(ld.fp);
    return cfg;
}

struct config *cfg_load_string(const char *text, const char *name, const char *dir, FILE *errors,
                               int *nerrors)
{
    struct cfg_loader ld = {.name = name, .errors = errors, .text = text, .text_len = strlen(text)};
    if (!dir)
        dir = ".";
    return load(&ld, dir, strlen(dir), nerrors);
}

void cfg_print_warnings(const struct config *cfg, FILE *out)
{
    for (int i = 0; i < cfg->nwarnings; i++)
        fprintf(out, "%s\n", cfg->warnings[i]);
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
        free(up->health.method);
        free(up->health.path);
        tls_ctx_free(up->ssl_ctx);
    }
    for (int i = 0; i < cfg->nroutes; i++) {
        struct route_conf *r = &cfg->routes[i];
        free(r->name);
        free(r->host);
        free(r->prefix);
        free(r->upstream_name);
        for (int m = 0; m < r->nmirrors; m++)
            free(r->mirror_names[m]);
        for (int h = 0; h < r->nhints; h++)
            free(r->early_hints[h]);
        hrules_free(r->request_rules);
        hrules_free(r->response_rules);
        free(r->rewrite_prefix);
        if (r->answer)
            free(r->answer->text);
        free(r->answer);
        acl_free(r->acl_own);
        route_conds_free(r->conds);
    }
    acl_free(cfg->acl);
    free(cfg->upstreams);
    free(cfg->routes);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->resolver);
    for (int i = 0; i < cfg->ntls_pairs; i++) {
        free(cfg->tls_pairs[i].cert);
        free(cfg->tls_pairs[i].key);
        free(cfg->tls_pairs[i].listing);
        free(cfg->tls_pairs[i].ocsp);
        free(cfg->tls_pairs[i].ocsp_listing);
    }
    free(cfg->tls_pairs);
    tls_ctx_free(cfg->server_ssl_ctx);
    free(cfg->tls_client_ca);
    free(cfg->tls_client_crl);
    free(cfg->error_page_dir);
    free(cfg->access_log);
    free(cfg->error_log);
    free(cfg->admin_listen_text);
    free(cfg->admin_token);
    for (int i = 0; i < cfg->nadmin_hosts; i++)
        free(cfg->admin_hosts[i]);
    free(cfg->admin_hosts);
    free(cfg->fault_rules);
    free(cfg->pid_file);
    free(cfg->user);
    free(cfg->group);
    free(cfg->certs);
    for (int i = 0; i < cfg->nwarnings; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg);
}
