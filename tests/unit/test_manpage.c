/*
 * test_manpage.c — the documentation cannot fall behind the configuration: every key of the key
 * tables (proxy/config_keys.c) and every failure type of [errors] has its entry in its section
 * of docs/portico.8 (a ".TP" whose tag line is ".B key") and a row in its section of README.md,
 * every entry of the man page is a key that exists, and both documents name every signal
 * main.c takes or ignores (read from its sigaddset and signal calls). The man page has every
 * subcommand proxy/main.c dispatches, both documents every long option of portico, portico codes
 * and portico probe (read from main.c, codes.c, probe.c), and the README's metrics table every
 * family proxy/metrics.c renders. A helper who adds a key, a command, an option, a signal or a
 * metric without documenting it fails here.
 *
 * Beyond names, the values: every range and default the man page states, and those of the
 * README's key tables, are what the parser takes and what a file without the key gets (a
 * bounded key states its range in both, the README's rows that defer to another aside); each
 * [fault NAME] range of the man page is what fault.c takes, probed at its bounds; each metric
 * of the README's table has the type, labels and closed label values the exposition gives it,
 * and names a family that exists; the access-log table lists exactly the fields of a JSON line,
 * the example line has them in order, and the text format's table the keys of a text line in
 * order; the statuses of each failure type per profile, in both documents, are failure.c's; and
 * the "at most N" of every key that takes several values is the number of values the parser
 * takes.
 *
 * And the examples: every ```ini block of the README, the configuration in DEPLOYING.md's
 * ConfigMap, the man page's EXAMPLES (but for what the test's machine may lack: a log or pid
 * file directory, a system user) and every file of conf/ and conf/examples/ load without an
 * error or a warning. The README's Tests section names every fuzz target, every
 * network-namespace row and the number of rows that need ::1.
 *
 * Paths are relative to the repository root, the directory the tests run from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <glob.h>

#include "../../proxy/config_int.h"
#include "portico/failure.h"
#include "portico/fault.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/timing.h"
#include "portico/util.h"

#define MANPAGE "docs/portico.8"
#define README "README.md"
#define MAIN_C "proxy/main.c"
#define DEPLOYING "docs/DEPLOYING.md"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: cannot open (run the tests from the repository root)", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (int c; (c = getc(f)) != EOF;) {
        if (len + 2 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        buf[len++] = (char)c;
    }
    fclose(f);
    assert_non_null(buf);
    buf[len] = '\0';
    return buf;
}

/* Every disagreement is printed before the test fails, so that one run lists them all. */
static size_t problems;
#define problem(...) (print_error(__VA_ARGS__), print_error("\n"), problems++)

/* The text from the line that starts with `start` up to the next line that starts with `next`
 * (or the end), malloc'd; fails when `start` is absent. */
static char *span(const char *text, const char *start, const char *next)
{
    const char *b = strstr(text, start);
    while (b && b != text && b[-1] != '\n')
        b = strstr(b + 1, start);
    if (!b)
        fail_msg("no section starting with '%s'", start);
    const char *e = b + strlen(start);
    for (;;) {
        e = strchr(e, '\n');
        if (!e || strncmp(e + 1, next, strlen(next)) == 0)
            break;
        e++;
    }
    size_t n = e ? (size_t)(e - b) : strlen(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

/* Whether the man page section documents key: a ".TP" line, then ".B key" alone. */
static bool has_entry(const char *section, const char *key)
{
    char needle[128];
    snprintf(needle, sizeof(needle), ".TP\n.B %s\n", key);
    return strstr(section, needle) != NULL;
}

/* Whether a README section has key in a table row: "| `key` |" or "| `a`, `key` |". */
static bool has_row(const char *section, const char *key)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "`%s`", key);
    for (const char *p = strstr(section, needle); p; p = strstr(p + 1, needle)) {
        const char *line = p;
        while (line > section && line[-1] != '\n')
            line--;
        const char *first_bar = strchr(line + 1, '|'); /* the end of the key column */
        if (line[0] == '|' && first_bar && p < first_bar)
            return true;
    }
    return false;
}

/* Every ".TP\n.B name" entry of the section is known to lookup. */
typedef bool (*known_fn)(const char *name);

static void assert_entries_known(const char *section, const char *what, known_fn known)
{
    for (const char *p = strstr(section, ".TP\n.B "); p; p = strstr(p + 1, ".TP\n.B ")) {
        char name[128];
        const char *b = p + strlen(".TP\n.B ");
        size_t n = strcspn(b, "\n");
        snprintf(name, sizeof(name), "%.*s", (int)n, b);
        if (!known(name))
            fail_msg("%s documents '%s', which is not a key of %s", MANPAGE, name, what);
    }
}

static bool known_proxy(const char *name)
{
    return cfg_key_find(CFG_SEC_PROXY, name) != NULL;
}

static bool known_upstream(const char *name)
{
    return cfg_key_find(CFG_SEC_UPSTREAM, name) != NULL;
}

static bool known_route(const char *name)
{
    return cfg_key_find(CFG_SEC_ROUTE, name) != NULL;
}

static bool known_faults(const char *name)
{
    return cfg_key_find(CFG_SEC_FAULTS, name) != NULL;
}

static bool known_fault(const char *name)
{
    return cfg_key_find(CFG_SEC_FAULT, name) != NULL;
}

static bool known_failure(const char *name)
{
    enum failure_type t;
    return failure_from_name(name, &t) == 0;
}

struct section_row {
    enum cfg_section sec;
    const char *man;    /* the .SS line of the man page */
    const char *readme; /* the ### line of the README */
    known_fn known;
};

/* One row per section with a key table. */
static const struct section_row sections[] = {
    {CFG_SEC_PROXY, ".SS \"[proxy]\"", "### `[proxy]`", known_proxy},
    {CFG_SEC_UPSTREAM, ".SS \"[upstream NAME]\"", "### `[upstream NAME]`", known_upstream},
    {CFG_SEC_ROUTE, ".SS \"[route NAME]\"", "### `[route NAME]`", known_route},
    {CFG_SEC_FAULTS, ".SS \"[faults]\"", "### `[faults]`", known_faults},
    {CFG_SEC_FAULT, ".SS \"[fault NAME]\"", "### `[fault NAME]`", known_fault},
};

static void test_every_key_documented(void **state)
{
    (void)state;
    char *man = slurp(MANPAGE), *readme = slurp(README);
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        const struct section_row *row = &sections[s];
        char *m = span(man, row->man, ".S"), *r = span(readme, row->readme, "#");
        size_t n;
        const struct cfg_key *keys = cfg_keys(row->sec, &n);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++) {
            if (!has_entry(m, keys[i].name))
                fail_msg("%s: [%s] key '%s' has no entry (.TP, then .B %s)", MANPAGE,
                         cfg_section_name(row->sec), keys[i].name, keys[i].name);
            if (!has_row(r, keys[i].name))
                fail_msg("%s: [%s] key '%s' has no table row", README, cfg_section_name(row->sec),
                         keys[i].name);
        }
        assert_entries_known(m, cfg_section_name(row->sec), row->known);
        free(m);
        free(r);
    }
    free(man);
    free(readme);
}

/* [errors] takes every failure type but "none" as a key. */
static void test_every_failure_type_documented(void **state)
{
    (void)state;
    char *man = slurp(MANPAGE), *readme = slurp(README);
    char *m = span(man, ".SS \"[errors]\"", ".S"), *r = span(readme, "## Failures", "## ");
    for (int t = FAIL_NONE + 1; t < FAILURE_COUNT; t++) {
        const char *name = failure_name((enum failure_type)t);
        if (!has_entry(m, name))
            fail_msg("%s: failure type '%s' has no [errors] entry", MANPAGE, name);
        if (t != FAIL_INTERNAL_ERROR && !has_row(r, name)) /* README: the upstream failures */
            fail_msg("%s: failure type '%s' has no row under Failures", README, name);
    }
    assert_entries_known(m, "[errors]", known_failure);
    free(m);
    free(r);
    free(man);
    free(readme);
}

/* The signals main.c takes or sets a disposition for, read from its source: each
 * `sigaddset(SET, SIGNAME)` and `signal(SIGNAME, ...)`. Fills names (NUL-separated in buf,
 * each once) and returns how many. */
static size_t handled_signals(const char *src, const char *names[], size_t max, char *buf,
                              size_t cap)
{
    static const char *const calls[] = {"sigaddset(", "signal("};
    size_t n = 0, used = 0;
    for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
        for (const char *p = strstr(src, calls[c]); p; p = strstr(p + 1, calls[c])) {
            if (p > src && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))
                continue; /* pthread_sigmask(, sigaddset's own name in "sigaddset(" ... */
            const char *arg = p + strlen(calls[c]);
            if (c == 0)
                arg = strchr(arg, ',') ? strchr(arg, ',') + 1 : arg;
            arg += strspn(arg, " ");
            size_t len = strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
            if (len < 4 || strncmp(arg, "SIG", 3) != 0)
                continue; /* WAKE_SIGNAL: a real-time signal of Portico's own threads */
            bool seen = false;
            for (size_t i = 0; i < n; i++)
                seen |= strlen(names[i]) == len && strncmp(names[i], arg, len) == 0;
            if (seen || n == max)
                continue;
            assert_true(used + len + 1 <= cap);
            memcpy(buf + used, arg, len);
            buf[used + len] = '\0';
            names[n++] = buf + used;
            used += len + 1;
        }
    return n;
}

/* Each signal Portico takes or ignores (main.c) is in the man page's SIGNALS and the README's
 * Signals. */
static void test_every_signal_documented(void **state)
{
    (void)state;
    char *src = slurp(MAIN_C), *man = slurp(MANPAGE), *readme = slurp(README);
    char *m = span(man, ".SH SIGNALS", ".SH");
    char *r = span(readme, "## Signals", "## ");
    const char *signals[16];
    char buf[256];
    size_t n = handled_signals(src, signals, sizeof(signals) / sizeof(signals[0]), buf,
                               sizeof(buf));
    assert_true(n >= 8); /* HUP, USR1, USR2, QUIT, INT, TERM, PIPE, XFSZ: the parse still works */
    for (size_t i = 0; i < n; i++) {
        if (!strstr(m, signals[i]))
            fail_msg("%s: SIGNALS does not mention %s", MANPAGE, signals[i]);
        if (!strstr(r, signals[i]))
            fail_msg("%s: Signals does not mention %s", README, signals[i]);
    }
    free(m);
    free(r);
    free(src);
    free(man);
    free(readme);
}

/* The subcommands main() dispatches, read from its source: each `strcmp(argv[1], "NAME")`.
 * Fills names (NUL-separated in buf) and returns how many. */
static size_t subcommands(const char *src, const char *names[], size_t max, char *buf, size_t cap)
{
    static const char needle[] = "strcmp(argv[1], \"";
    size_t n = 0, used = 0;
    for (const char *p = strstr(src, needle); p && n < max; p = strstr(p + 1, needle)) {
        const char *b = p + strlen(needle);
        size_t len = strcspn(b, "\"");
        assert_true(used + len + 1 <= cap);
        memcpy(buf + used, b, len);
        buf[used + len] = '\0';
        names[n++] = buf + used;
        used += len + 1;
    }
    return n;
}

/* Each subcommand is in SYNOPSIS (".B portico NAME") and has its COMMANDS entry. */
static void test_every_subcommand_documented(void **state)
{
    (void)state;
    char *src = slurp(MAIN_C), *man = slurp(MANPAGE);
    const char *names[16];
    char buf[256];
    size_t n = subcommands(src, names, sizeof(names) / sizeof(names[0]), buf, sizeof(buf));
    assert_true(n >= 2); /* codes and probe: the parse still finds main's dispatch */
    char *syn = span(man, ".SH SYNOPSIS", ".SH"), *cmds = span(man, ".SH COMMANDS", ".SH");
    for (size_t i = 0; i < n; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), ".B portico %s\n", names[i]);
        if (!strstr(syn, needle))
            fail_msg("%s: SYNOPSIS lacks 'portico %s'", MANPAGE, names[i]);
        snprintf(needle, sizeof(needle), ".TP\n.B portico %s ", names[i]);
        if (!strstr(cmds, needle))
            fail_msg("%s: COMMANDS has no entry for 'portico %s'", MANPAGE, names[i]);
    }
    free(syn);
    free(cmds);
    free(src);
    free(man);
}

/* The long options a source takes, read from it: each `{"NAME", no_argument` or
 * `{"NAME", required_argument` of an option table, each `strcmp(argv[i], "--NAME")`. Fills names
 * as "--NAME" (NUL-separated in buf) from *n on, and returns the new count. */
static size_t long_options(const char *src, const char *names[], size_t n, size_t max, char *buf,
                           size_t *used, size_t cap)
{
    static const char *const forms[] = {"{\"", "strcmp(argv[i], \"--"};
    for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++)
        for (const char *p = strstr(src, forms[f]); p && n < max; p = strstr(p + 1, forms[f])) {
            const char *b = p + strlen(forms[f]);
            size_t len = strcspn(b, "\"");
            if (f == 0 && strncmp(b + len, "\", no_argument", 14) != 0 &&
                strncmp(b + len, "\", required_argument", 20) != 0)
                continue;
            assert_true(*used + len + 3 <= cap);
            snprintf(buf + *used, cap - *used, "--%.*s", (int)len, b);
            names[n++] = buf + *used;
            *used += len + 3;
        }
    return n;
}

/* s as the man page writes it: each '-' as "\-". */
static void man_dashes(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '-')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n] = '\0';
}

/* Each long option of portico (main.c), portico codes (codes.c) and portico probe (probe.c, its
 * timers' included) is in the README's section of that command and in the man page's OPTIONS
 * (portico's) or COMMANDS (the subcommands'). */
static void test_every_option_documented(void **state)
{
    (void)state;
    static const struct {
        const char *src, *readme_from, *readme_to, *man_from;
    } commands[] = {
        {MAIN_C, "## Command line", "### ", ".SH OPTIONS"},
        {"proxy/codes.c", "### `portico codes`", "### ", ".SH COMMANDS"},
        {"proxy/probe.c", "### `portico probe`", "## ", ".SH COMMANDS"},
    };
    char *man = slurp(MANPAGE), *readme = slurp(README);
    size_t total = 0;
    problems = 0;
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        const char *names[32];
        char buf[1024];
        size_t used = 0, n = 0;
        char *src = slurp(commands[c].src);
        n = long_options(src, names, n, 32, buf, &used, sizeof(buf));
        if (strcmp(commands[c].src, "proxy/probe.c") == 0) /* --connect-timeout ... */
            for (int t = 0; t < TIMER_COUNT; t++) {
                if (t == TIMER_QUEUE) /* probe has none: one exchange never queues */
                    continue;
                char *name = buf + used;
                used += (size_t)snprintf(name, sizeof(buf) - used, "--%s",
                                         timer_name((enum timer_kind)t)) + 1;
                assert_true(used <= sizeof(buf));
                for (char *u = name; *u; u++)
                    *u = *u == '_' ? '-' : *u;
                names[n++] = name;
            }
        char *r = span(readme, commands[c].readme_from, commands[c].readme_to);
        char *m = span(man, commands[c].man_from, ".SH");
        for (size_t i = 0; i < n; i++) {
            char escaped[96];
            man_dashes(names[i], escaped, sizeof(escaped));
            if (!strstr(r, names[i]))
                problem("%s: %s does not name %s (%s)", README, commands[c].readme_from,
                        names[i], commands[c].src);
            if (!strstr(m, escaped))
                problem("%s: %s does not name %s (%s)", MANPAGE, commands[c].man_from, names[i],
                        commands[c].src);
        }
        total += n;
        free(r);
        free(m);
        free(src);
    }
    print_message("checked: %zu long options\n", total);
    /* the parse still finds them (probe has no --queue-timeout) */
    assert_true(total >= 4 + 2 + 4 + TIMER_COUNT - 1);
    if (problems)
        fail_msg("%zu options are not documented", problems);
    free(man);
    free(readme);
}

/* Each family the exposition has (its "# TYPE name" line, rendered with no traffic: every
 * family is there even when empty) has a row in the README's metrics table. */
static void test_every_metric_documented(void **state)
{
    (void)state;
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    assert_int_equal(metrics_render(out, NULL), 0);
    assert_int_equal(evbuffer_add(out, "", 1), 0);
    const char *text = (const char *)evbuffer_pullup(out, -1);
    char *readme = slurp(README);
    char *r = span(readme, "## Metrics, `/status`", "### ");
    size_t families = 0;
    for (const char *p = strstr(text, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
        char name[128];
        const char *b = p + strlen("# TYPE ");
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(b, " "), b);
        families++;
        if (!has_row(r, name))
            fail_msg("%s: metric family '%s' has no row in the metrics table", README, name);
    }
    assert_true(families >= METRIC_COUNT); /* the simple counters alone */
    free(r);
    free(readme);
    evbuffer_free(out);
    metrics_free_all();
}


/* ---- values: ranges and defaults against the parser ---- */

/* What an entry says a key holds, by the first word of its man page entry. */
enum doc_kind { KIND_OTHER, KIND_DURATION, KIND_SIZE, KIND_NUMBER, KIND_BOOLEAN, KIND_ENUM };

static const struct {
    const char *word;
    enum doc_kind kind;
} kind_words[] = {
    {"duration", KIND_DURATION}, {"size", KIND_SIZE}, {"number", KIND_NUMBER},
    {"boolean", KIND_BOOLEAN},   {".BR ", KIND_ENUM}, /* "standard", "cloudflare" or "proxy" */
};

/* The text of key's entry in a man page section (after ".TP\n.B key\n", up to the next ".TP"
 * or the end), malloc'd; NULL when there is none. */
static char *entry_of(const char *section, const char *key)
{
    char needle[128];
    snprintf(needle, sizeof(needle), ".TP\n.B %s\n", key);
    const char *b = strstr(section, needle);
    if (!b)
        return NULL;
    b += strlen(needle);
    const char *e = strstr(b, ".TP\n");
    size_t n = e ? (size_t)(e - b) : strlen(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

static enum doc_kind kind_of(const char *entry, const struct cfg_key *k)
{
    for (size_t i = 0; i < sizeof(kind_words) / sizeof(kind_words[0]); i++)
        if (strncmp(entry, kind_words[i].word, strlen(kind_words[i].word)) == 0)
            return kind_words[i].kind == KIND_ENUM && !k->names ? KIND_OTHER : kind_words[i].kind;
    return KIND_OTHER;
}

/* Parses s as the parser would a value of that kind: durations in ms, sizes in bytes, an enum
 * as the index of its name. */
static bool parse_kind(enum doc_kind kind, const struct cfg_key *k, const char *s, uint64_t *v)
{
    bool b;
    switch (kind) {
    case KIND_DURATION:
        return parse_duration_ms(s, v) == 0;
    case KIND_SIZE:
        return parse_size(s, v) == 0;
    case KIND_NUMBER:
        return parse_uint(s, 0, UINT64_MAX, v) == 0;
    case KIND_BOOLEAN:
        if (parse_bool(s, &b) != 0)
            return false;
        *v = b;
        return true;
    case KIND_ENUM:
        for (size_t i = 0; i < k->nnames; i++)
            if (strcmp(s, k->names[i]) == 0) {
                *v = i;
                return true;
            }
        return false;
    case KIND_OTHER:
        break;
    }
    return false;
}

/* Copies the value that starts s (after blanks and backticks) into out: up to a blank, a
 * backtick, one of ";(,)\n", or a dot that ends a sentence. "`10s` (x)" and "10s." give
 * "10s"; "1ms\(en168h" with stop "\\" gives "1ms". */
static void value_at(const char *s, const char *stops, char *out, size_t cap)
{
    while (*s == ' ' || *s == '`')
        s++;
    size_t n = 0;
    for (; s[n] && !strchr(stops, s[n]); n++)
        if (s[n] == '.' && (s[n + 1] == '\0' || s[n + 1] == ' ' || s[n + 1] == '\n'))
            break;
    snprintf(out, cap, "%.*s", (int)n, s);
}

#define VALUE_STOPS " `;(,)\n"

/* A section's smallest valid file, with "key = value" in it when key is not NULL; NULL when
 * the loader refuses it. */
static struct config *load_with(enum cfg_section sec, const char *key, const char *value)
{
    static const char *const head[] = {
        [CFG_SEC_PROXY] = "[proxy]\n",
        [CFG_SEC_UPSTREAM] = "[upstream app]\norigin = sim\n",
        [CFG_SEC_ROUTE] = "[upstream app]\norigin = sim\n[route r]\nupstream = app\n",
        [CFG_SEC_FAULTS] = "[faults]\n",
    };
    static const char *const tail[] = {
        [CFG_SEC_PROXY] = "[upstream app]\norigin = sim\n",
        [CFG_SEC_FAULTS] = "[upstream app]\norigin = sim\n",
    };
    /* a key refused without another one is loaded beside it, in both files */
    static const struct {
        const char *key, *needs;
    } companions[] = {
        {"retry_budget_min", "retry_budget = 20%\n"},
    };
    const char *needs = "";
    for (size_t i = 0; key && i < sizeof(companions) / sizeof(companions[0]); i++)
        if (strcmp(key, companions[i].key) == 0)
            needs = companions[i].needs;
    char text[512];
    snprintf(text, sizeof(text), "%s%s%s%s%s%s%s", head[sec], needs, key ? key : "",
             key ? " = " : "", key ? value : "", key ? "\n" : "", tail[sec] ? tail[sec] : "");
    int n = -1;
    struct config *cfg = cfg_load_string(text, "doc.ini", "/tmp", NULL, &n);
    if (cfg && n != 0) {
        cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Where k's field lies in cfg: the proxy's, the first upstream's or route's, the faults'. */
static const unsigned char *field_of(const struct config *cfg, enum cfg_section sec,
                                     const struct cfg_key *k)
{
    switch (sec) {
    case CFG_SEC_UPSTREAM:
        return (const unsigned char *)&cfg->upstreams[0] + k->offset;
    case CFG_SEC_ROUTE:
        return (const unsigned char *)&cfg->routes[0] + k->offset;
    case CFG_SEC_FAULTS:
        return (const unsigned char *)&cfg->faults + k->offset;
    default:
        return (const unsigned char *)cfg + k->offset;
    }
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "same_default reads a number's low bytes first");

/* Whether a file without k and one with "k = value" hold the same in k's field. The width
 * follows the kind: setters store durations and sizes as uint64_t, enums as int, booleans as
 * bool; a number is an int or a uint64_t, whose low 4 bytes come first (documented defaults
 * are far below 2^32). 1: same, 0: differ, -1: the file with it was refused. */
static int same_default(enum cfg_section sec, const struct cfg_key *k, enum doc_kind kind,
                        const char *value)
{
    static const size_t width[] = {
        [KIND_DURATION] = sizeof(uint64_t), [KIND_SIZE] = sizeof(uint64_t),
        [KIND_NUMBER] = sizeof(int),        [KIND_BOOLEAN] = sizeof(bool),
        [KIND_ENUM] = sizeof(int),
    };
    struct config *without = load_with(sec, NULL, NULL), *with = load_with(sec, k->name, value);
    assert_non_null(without);
    if (!with) {
        cfg_free(without);
        return -1;
    }
    int same = memcmp(field_of(without, sec, k), field_of(with, sec, k), width[kind]) == 0;
    cfg_free(without);
    cfg_free(with);
    return same;
}

/* The line of section's table row for key (its first column names it), malloc'd, or NULL. */
static char *row_of(const char *section, const char *key)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "`%s`", key);
    for (const char *p = strstr(section, needle); p; p = strstr(p + 1, needle)) {
        const char *line = p;
        while (line > section && line[-1] != '\n')
            line--;
        const char *first_bar = strchr(line + 1, '|');
        if (line[0] != '|' || !first_bar || p > first_bar)
            continue;
        size_t n = strcspn(line, "\n");
        char *s = malloc(n + 1);
        assert_non_null(s);
        memcpy(s, line, n);
        s[n] = '\0';
        return s;
    }
    return NULL;
}

/* The n-th cell of a table row ("| a | b |": 0 is a), malloc'd; the last one for a large n. */
static char *cell(const char *row, int n)
{
    const char *b = strchr(row, '|') + 1;
    for (int i = 0; i < n; i++) {
        const char *next = strchr(b, '|');
        if (!next || !strchr(next + 1, '|'))
            break;
        b = next + 1;
    }
    size_t len = strcspn(b, "|");
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, b, len);
    s[len] = '\0';
    return s;
}

/* The first "(MIN-MAX" of text whose bounds parse as kind, followed by ')', ';' or ','. */
static bool readme_range(const char *text, enum doc_kind kind, const struct cfg_key *k,
                         uint64_t *min, uint64_t *max)
{
    for (const char *p = strchr(text, '('); p; p = strchr(p + 1, '(')) {
        char lo[32], hi[32];
        value_at(p + 1, "-" VALUE_STOPS, lo, sizeof(lo));
        const char *dash = p + 1 + strlen(lo);
        if (*dash != '-')
            continue;
        value_at(dash + 1, VALUE_STOPS, hi, sizeof(hi));
        char end = dash[1 + strlen(hi)];
        if ((end == ')' || end == ';' || end == ',') && parse_kind(kind, k, lo, min) &&
            parse_kind(kind, k, hi, max))
            return true;
    }
    return false;
}

/* Keys with bounds: the parser's rows for numbers, durations and sizes (seed takes any 64-bit
 * number and says so in words). */
static bool bounded(const struct cfg_key *k)
{
    return k->max != 0 && k->max != UINT64_MAX;
}

struct value_counts {
    size_t ranges, defaults;
};

/* The man page entry of k: its range (a bounded key must state one) and its default. */
static void check_man_values(enum cfg_section sec, const struct cfg_key *k, const char *entry,
                             struct value_counts *c)
{
    enum doc_kind kind = kind_of(entry, k);
    const char *comma = strchr(entry, ',');
    char lo[32] = "", hi[32] = "";
    if (kind != KIND_OTHER && kind != KIND_BOOLEAN && kind != KIND_ENUM && comma &&
        comma < strchr(entry, '\n')) {
        value_at(comma + 1, "\\" VALUE_STOPS, lo, sizeof(lo));
        const char *en = strstr(comma, "\\(en");
        if (en && en < strchr(entry, '\n'))
            value_at(en + 4, VALUE_STOPS, hi, sizeof(hi));
    }
    uint64_t min, max;
    if (hi[0]) {
        if (!parse_kind(kind, k, lo, &min) || !parse_kind(kind, k, hi, &max))
            problem("%s: [%s] %s: range '%s-%s' does not parse", MANPAGE,
                     cfg_section_name(sec), k->name, lo, hi);
        if (min != k->min || max != k->max)
            problem("%s: [%s] %s: range %s-%s, the parser takes %llu-%llu", MANPAGE,
                     cfg_section_name(sec), k->name, lo, hi, (unsigned long long)k->min,
                     (unsigned long long)k->max);
        c->ranges++;
    } else if (bounded(k)) {
        problem("%s: [%s] %s: the entry states no range (\"duration, MIN\\(enMAX\"); the parser "
                 "takes %llu-%llu", MANPAGE, cfg_section_name(sec), k->name,
                 (unsigned long long)k->min, (unsigned long long)k->max);
    }
    const char *d = strstr(entry, "default ");
    char value[64];
    uint64_t v;
    if (!d || kind == KIND_OTHER || k->repeatable)
        return;
    value_at(d + strlen("default "), VALUE_STOPS, value, sizeof(value));
    if (!parse_kind(kind, k, value, &v)) /* words: "the number of cores", "from [proxy]" */
        return;
    int same = same_default(sec, k, kind, value);
    if (same != 1)
        problem("%s: [%s] %s: default %s %s", MANPAGE, cfg_section_name(sec), k->name, value,
                 same < 0 ? "is refused by the parser" : "is not what a file without it gets");
    c->defaults++;
}

/* The README row of k: its range ("(MIN-MAX)", or "at most MAX" for a number), which a bounded
 * key's row must state unless it defers to another row, and its default (the second column). */
static void check_readme_values(enum cfg_section sec, const struct cfg_key *k, enum doc_kind kind,
                                const char *row, struct value_counts *c)
{
    char *def = cell(row, 1), *meaning = cell(row, 99);
    uint64_t min, max, v;
    if (bounded(k) && readme_range(meaning, kind, k, &min, &max)) {
        if (min != k->min || max != k->max)
            problem("%s: [%s] %s: range %llu-%llu, the parser takes %llu-%llu", README,
                     cfg_section_name(sec), k->name, (unsigned long long)min,
                     (unsigned long long)max, (unsigned long long)k->min,
                     (unsigned long long)k->max);
        c->ranges++;
    } else if (bounded(k) && kind == KIND_NUMBER && strstr(meaning, "at most ")) {
        char n[32];
        value_at(strstr(meaning, "at most ") + strlen("at most "), VALUE_STOPS, n, sizeof(n));
        if (!parse_kind(kind, k, n, &max) || max != k->max)
            problem("%s: [%s] %s: at most %s, the parser takes up to %llu", README,
                     cfg_section_name(sec), k->name, n, (unsigned long long)k->max);
        c->ranges++;
    } else if (bounded(k) && !strstr(def, "`[proxy]`") && strncmp(meaning, " 〃", 4) != 0) {
        /* a row that takes its value from [proxy]'s, or says what the row above says, points
         * at the range it shares */
        problem("%s: [%s] %s: the row states no range (\"(MIN-MAX)\"); the parser takes "
                "%llu-%llu", README, cfg_section_name(sec), k->name,
                (unsigned long long)k->min, (unsigned long long)k->max);
    }
    char value[64];
    value_at(def, VALUE_STOPS, value, sizeof(value));
    if (kind != KIND_OTHER && !k->repeatable && parse_kind(kind, k, value, &v)) {
        int same = same_default(sec, k, kind, value);
        if (same != 1)
            problem("%s: [%s] %s: default %s %s", README, cfg_section_name(sec), k->name, value,
                     same < 0 ? "is refused by the parser" : "is not what a file without it gets");
        c->defaults++;
    }
    free(def);
    free(meaning);
}

/* [proxy], [upstream], [route] and [faults]: the rule keys of [fault] have no ranges or
 * defaults of the kind (fault.c parses them). */
static void test_ranges_and_defaults_documented(void **state)
{
    (void)state;
    char *man = slurp(MANPAGE), *readme = slurp(README);
    struct value_counts man_counts = {0, 0}, readme_counts = {0, 0};
    problems = 0;
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        const struct section_row *row = &sections[s];
        if (row->sec == CFG_SEC_FAULT)
            continue;
        char *m = span(man, row->man, ".S"), *r = span(readme, row->readme, "#");
        size_t n;
        const struct cfg_key *keys = cfg_keys(row->sec, &n);
        for (size_t i = 0; i < n; i++) {
            char *entry = entry_of(m, keys[i].name), *line = row_of(r, keys[i].name);
            assert_non_null(entry); /* test_every_key_documented says which */
            assert_non_null(line);
            check_man_values(row->sec, &keys[i], entry, &man_counts);
            check_readme_values(row->sec, &keys[i], kind_of(entry, &keys[i]), line,
                                &readme_counts);
            free(entry);
            free(line);
        }
        free(m);
        free(r);
    }
    print_message("checked: man page %zu ranges, %zu defaults; README %zu ranges, %zu defaults\n",
                  man_counts.ranges, man_counts.defaults, readme_counts.ranges,
                  readme_counts.defaults);
    if (problems)
        fail_msg("%zu ranges or defaults disagree with the parser", problems);
    /* the parse of the documents still finds what it checks (figures of December 2026) */
    assert_true(man_counts.ranges >= 30 && man_counts.defaults >= 40);
    assert_true(readme_counts.ranges >= 15 && readme_counts.defaults >= 30);
    free(man);
    free(readme);
}


/* A value of kind for v: durations in ms, sizes and numbers as they are. */
static void kind_value(enum doc_kind kind, uint64_t v, char *out, size_t cap)
{
    snprintf(out, cap, kind == KIND_DURATION ? "%llums" : "%llu", (unsigned long long)v);
}

/* Whether fault.c takes value for key k of a rule. */
static bool fault_takes(enum fault_key k, const char *value)
{
    static struct fault_rule rule; /* 4 KiB of text: not on the stack */
    char why[300];
    fault_rule_init(&rule, "doc");
    return fault_rule_set(&rule, k, value, why, sizeof(why)) == 0;
}

/* [fault NAME]: fault.c parses its keys itself (no bounds in the key table), so the range each
 * duration, size or number entry of the man page must state ("duration, MIN\(enMAX") is probed:
 * MIN and MAX are taken, the values just outside refused. */
static void test_fault_ranges_documented(void **state)
{
    (void)state;
    char *man = slurp(MANPAGE);
    char *m = span(man, ".SS \"[fault NAME]\"", ".S");
    size_t n, checked = 0;
    const struct cfg_key *keys = cfg_keys(CFG_SEC_FAULT, &n);
    problems = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cfg_key *k = &keys[i];
        char *entry = entry_of(m, k->name);
        assert_non_null(entry); /* test_every_key_documented says which */
        enum doc_kind kind = kind_of(entry, k);
        const char *comma = strchr(entry, ','), *en = strstr(entry, "\\(en");
        const char *eol = entry + strcspn(entry, "\n"); /* the last entry has no '\n' */
        char lo[32], hi[32];
        uint64_t min, max;
        if (kind != KIND_DURATION && kind != KIND_SIZE && kind != KIND_NUMBER) {
            free(entry);
            continue;
        }
        if (!comma || !en || comma > eol || en > eol) {
            problem("%s: [fault] %s states no range (\"%s, MIN\\(enMAX\")", MANPAGE, k->name,
                    kind_words[kind - 1].word);
            free(entry);
            continue;
        }
        value_at(comma + 1, "\\" VALUE_STOPS, lo, sizeof(lo));
        value_at(en + 4, VALUE_STOPS ":", hi, sizeof(hi));
        if (!parse_kind(kind, k, lo, &min) || !parse_kind(kind, k, hi, &max)) {
            problem("%s: [fault] %s: range '%s-%s' does not parse", MANPAGE, k->name, lo, hi);
            free(entry);
            continue;
        }
        enum fault_key fk = (enum fault_key)fault_key_find(k->name);
        char v[32];
        kind_value(kind, min, v, sizeof(v));
        bool ok = fault_takes(fk, v);
        kind_value(kind, max, v, sizeof(v));
        ok = ok && fault_takes(fk, v);
        kind_value(kind, max + 1, v, sizeof(v));
        ok = ok && !fault_takes(fk, v);
        kind_value(kind, min - 1, v, sizeof(v));
        ok = ok && (min == 0 || !fault_takes(fk, v));
        if (!ok)
            problem("%s: [fault] %s: range %s-%s is not what fault.c takes", MANPAGE, k->name, lo,
                    hi);
        checked++;
        free(entry);
    }
    print_message("checked: %zu [fault] ranges\n", checked);
    if (problems)
        fail_msg("%zu [fault] ranges disagree with fault.c", problems);
    assert_true(checked >= 9); /* first, every, after, for, max_active, jitter, truncate ... */
    free(m);
    free(man);
}

/* ---- metrics: types and labels; access log: fields ---- */

/* The start of the line after line (its NUL when line is the last). */
static const char *next_line(const char *line)
{
    line += strcspn(line, "\n");
    return *line ? line + 1 : line;
}

/* The family a sample line belongs to: name, or name_bucket, _sum, _count of a histogram. */
static bool sample_of(const char *sample, size_t len, const char *family, const char *type)
{
    static const char *const hist[] = {"_bucket", "_sum", "_count"};
    size_t f = strlen(family);
    if (len == f)
        return strncmp(sample, family, f) == 0;
    if (strcmp(type, "histogram") != 0 || len < f || strncmp(sample, family, f) != 0)
        return false;
    for (size_t i = 0; i < sizeof(hist) / sizeof(hist[0]); i++)
        if (len - f == strlen(hist[i]) && strncmp(sample + f, hist[i], len - f) == 0)
            return true;
    return false;
}

/* Labels whose values are names of the configuration (route, upstream, origin, file, fault),
 * numbers (code, class, le), the failure types (the failure table documents them) or the
 * version: any other label's values are a closed set, each named in its row. */
static const char *const open_labels[] = {"route", "upstream", "origin", "file", "fault",
                                          "code",  "class",    "le",     "failure", "version"};

static bool closed_label(const char *label, size_t n)
{
    for (size_t i = 0; i < sizeof(open_labels) / sizeof(open_labels[0]); i++)
        if (strlen(open_labels[i]) == n && strncmp(open_labels[i], label, n) == 0)
            return false;
    return true;
}

/* Checks one family against the README's cells: type, labels both ways (le aside), and each
 * value of a closed label named in the row ("`value`"). Returns how many sample lines it has. */
static size_t check_family(const char *text, const char *family, const char *type,
                           const char *labels_cell, const char *meaning_cell)
{
    size_t samples = 0;
    for (const char *line = text; *line; line = next_line(line)) {
        size_t name_len = strcspn(line, "{ \n");
        if (line[0] == '#' || !sample_of(line, name_len, family, type))
            continue;
        samples++;
        const char *p = line + name_len, *end = line + strcspn(line, "\n");
        if (*p == '{') {
            for (p++; p < end && *p != '}';) {
                char label[64];
                size_t n = strcspn(p, "=");
                snprintf(label, sizeof(label), "`%.*s`", (int)n, p);
                if (strcmp(label, "`le`") != 0 && !strstr(labels_cell, label))
                    problem("%s: metric '%s' has the label %s, which its row does not list",
                            README, family, label);
                bool closed = closed_label(p, n);
                p += n + 2; /* ="value" */
                const char *value = p;
                while (p < end && *p != '"')
                    p += *p == '\\' ? 2 : 1;
                char needle[72];
                snprintf(needle, sizeof(needle), "`%.*s`", (int)(p - value), value);
                if (closed && !strstr(meaning_cell, needle))
                    problem("%s: metric '%s' has %s=%s, a value its row does not name", README,
                            family, label, needle);
                p += p < end && p[1] == ',' ? 2 : 1;
            }
        }
        for (const char *q = strchr(labels_cell, '`'); q; q = strchr(q + 1, '`')) {
            size_t n = strcspn(q + 1, "`");
            char needle[72];
            snprintf(needle, sizeof(needle), "%.*s=\"", (int)n, q + 1);
            if (!memmem(line, (size_t)(end - line), needle, strlen(needle)))
                problem("%s: metric '%s' lacks the label %.*s its row lists", README, family,
                        (int)n, q + 1);
            q += n + 1;
        }
    }
    return samples;
}

/* Each row of the README's metrics table names families the exposition has, with their type,
 * labels and label values. The shard below gives every labelled family a sample, and every
 * value of a closed label its series: a routed request with every phase timed, a 103 each way,
 * every action of a fault rule, an origin's health. */
static void test_metric_types_and_labels(void **state)
{
    (void)state;
    static const char *const route[] = {"r"}, *const upstream[] = {"u"}, *const fault[] = {"f"};
    /* a certificate of each key type, each with a handshake: every key value has its series */
    struct metrics_served served[TLS_KEY_COUNT];
    for (int k = 0; k < TLS_KEY_COUNT; k++)
        served[k] = (struct metrics_served){"/etc/portico/cert.pem", (enum tls_key_type)k};
    const struct metrics_labels labels = {route, 1, upstream, 1, fault, 1, served, TLS_KEY_COUNT};
    struct metrics *m = metrics_shard_create(&labels);
    assert_non_null(m);
    struct timings t;
    memset(&t, 0, sizeof(t));
    for (int p = 0; p < TIMING_COUNT; p++)
        timings_set(&t, (enum timing_phase)p, 1000);
    const struct metrics_sample done = {0, 0, 200, FAIL_NONE, &t};
    metrics_request_done(m, &done);
    for (int d = 0; d < INTERIM_DIR_COUNT; d++)
        metrics_interim(m, 103, (enum interim_direction)d);
    for (int a = 0; a < FAULT_ACTION_COUNT; a++)
        metrics_fault(m, 0, (enum fault_action)a);
    for (int k = 0; k < TLS_KEY_COUNT; k++)
        metrics_tls_handshake(m, k);
    metrics_rate_limited(m, 0);
    metrics_denied(m, 0);
    for (int o = 0; o < MIRROR_OUTCOME_COUNT; o++)
        metrics_mirror(m, 0, (enum mirror_outcome)o);
    const struct metrics_origin origin = {"u", "127.0.0.1:1", true, .first = true, .sticky = true,
                                           .bounded = true, .budget = true};
    const struct metrics_cert cert = {"/etc/portico/cert.pem", 1796952803};
    const struct metrics_scrape scrape = {&origin, 1, 0, 0, &cert, 1, 1024, 1, 1, 1};
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    assert_int_equal(metrics_render(out, &scrape), 0);
    assert_int_equal(evbuffer_add(out, "", 1), 0);
    const char *text = (const char *)evbuffer_pullup(out, -1);
    char *readme = slurp(README);
    char *r = span(readme, "## Metrics, `/status`", "### ");
    problems = 0;
    size_t rows = 0;
    for (const char *line = r; *line; line = next_line(line)) {
        if (strncmp(line, "| `portico_", 11) != 0)
            continue;
        char *row = cell(line, 0), *type = cell(line, 1), *lab = cell(line, 2);
        char *meaning = cell(line, 3);
        char want[32];
        value_at(type, VALUE_STOPS, want, sizeof(want));
        for (const char *q = strstr(row, "`portico_"); q; q = strstr(q + 1, "`portico_")) {
            char name[128], needle[160];
            snprintf(name, sizeof(name), "%.*s", (int)strcspn(q + 1, "`"), q + 1);
            snprintf(needle, sizeof(needle), "# TYPE %s ", name);
            const char *decl = strstr(text, needle);
            rows++;
            if (!decl) {
                problem("%s: the metrics table lists '%s', which /metrics does not have", README,
                        name);
                continue;
            }
            char got[32];
            value_at(decl + strlen(needle), VALUE_STOPS, got, sizeof(got));
            if (strcmp(got, want) != 0)
                problem("%s: metric '%s' is a %s, its row says %s", README, name, got, want);
            if (check_family(text, name, got, lab, meaning) == 0)
                problem("metric '%s' has no sample to check its labels against", name);
        }
        free(row);
        free(type);
        free(lab);
        free(meaning);
    }
    if (problems)
        fail_msg("%zu metrics disagree with the README's table", problems);
    assert_true(rows >= METRIC_COUNT);
    free(r);
    free(readme);
    evbuffer_free(out);
    metrics_free_all();
}

/* The top-level keys of a JSON object line, each as "`key`" followed by a space, into keys. */
static void json_keys(const char *s, char *keys, size_t cap)
{
    int depth = 0;
    size_t len = 0;
    keys[0] = '\0';
    for (const char *p = s; *p; p++) {
        if (*p == '"') {
            const char *b = ++p;
            while (*p && *p != '"')
                p += *p == '\\' ? 2 : 1;
            if (depth == 1 && p[1] == ':')
                len += (size_t)snprintf(keys + len, cap - len, "`%.*s` ", (int)(p - b), b);
            assert_true(len < cap);
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        }
    }
}

/* A record with every field set, so that a text line has every optional key too. */
static void full_record(struct access_record *rec)
{
    static const uint16_t interim[] = {103};
    *rec = (struct access_record){
        .request_id = "id", .trace_id = "t", .client = "127.0.0.1", .peer = "127.0.0.2:1",
        .method = "GET", .method_len = 3, .host = "h", .host_len = 1, .target = "/",
        .target_len = 1, .proto = LOG_PROTO_HTTP11, .status = 504, .upstream_status = 200,
        .failure = FAIL_READ_TIMEOUT, .phase = PHASE_READ, .route = "r", .upstream = "u",
        .origin = "o", .attempts = 1, .sticky = "hit", .interim_codes = interim, .ninterim = 1,
        .fault = "f",
        .user_agent = "ua", .user_agent_len = 2, .forwarded_for = "127.0.0.9",
        .client_subject = "CN=x",
        .forwarded_for_len = 9, .tunnel = true, .tunnel_us = 1000, .limit_ms = 1,
        .detail = "d", .aborted = true, .reused = true, .retried = true, .body_unread = true,
    };
    timings_set(&rec->timings, TIMING_CONNECT, 100);
    timings_set(&rec->timings, TIMING_TOTAL, 1000);
}

/* The keys of a text line (the time comes first, without one), as json_keys writes them. */
static void text_keys(const char *line, char *keys, size_t cap)
{
    size_t len = 0;
    keys[0] = '\0';
    for (const char *p = strchr(line, ' '); p && p[1] && p[1] != '\n';) {
        const char *b = p + 1, *eq = b + strcspn(b, "= \n");
        assert_true(*eq == '=');
        len += (size_t)snprintf(keys + len, cap - len, "`%.*s` ", (int)(eq - b), b);
        assert_true(len < cap);
        const char *v = eq + 1;
        if (*v == '"') /* a quoted value: up to its unescaped closing quote */
            for (v++; *v && *v != '"'; v += *v == '\\' ? 2 : 1)
                ;
        p = strchr(v, ' ');
    }
}

/* The keys of a full record's line in format, each as "`key` " in order, into keys. */
static void line_keys(enum log_format format, char *keys, size_t cap)
{
    struct access_record rec;
    char line[LOG_LINE_MAX + 1];
    full_record(&rec);
    size_t n = log_format_access(&rec, format, line, LOG_LINE_MAX);
    assert_true(n > 0);
    line[n] = '\0';
    if (format == LOG_FORMAT_JSON) {
        json_keys(line, keys, cap);
        return;
    }
    text_keys(line, keys, cap);
}

/* The first-column names of the table under `head` (a "| ... |" header line) of the access-log
 * section, in order, as json_keys writes them; column `col` instead of the first. */
static void table_names(const char *section, const char *head, int col, char *names, size_t cap)
{
    char *table = span(section, head, "\n");
    size_t len = 0;
    names[0] = '\0';
    for (const char *l = next_line(next_line(table)); *l; l = next_line(l)) {
        char *c = cell(l, col);
        for (const char *q = strchr(c, '`'); q; q = strchr(q + 1, '`')) {
            size_t n = strcspn(q + 1, "`");
            len += (size_t)snprintf(names + len, cap - len, "`%.*s` ", (int)n, q + 1);
            assert_true(len < cap);
            q += n + 1;
        }
        free(c);
    }
    free(table);
}

/* Each "`name` " of want is in got; says what lacks which. */
static void want_all(const char *want, const char *got, const char *fmt)
{
    for (const char *p = strchr(want, '`'); p; p = strchr(p + 1, '`')) {
        size_t n = strcspn(p + 1, "`");
        char needle[72];
        snprintf(needle, sizeof(needle), "`%.*s` ", (int)n, p + 1);
        if (!strstr(got, needle))
            problem(fmt, README, (int)n, p + 1);
        p += n + 1;
    }
}

/* The README's access-log table lists exactly the fields of a JSON line, every one present (a
 * field is written as null, never left out), and its example line has them all, in order. */
static void test_access_log_fields_documented(void **state)
{
    (void)state;
    char keys[2048], rows[2048], example[2048];
    line_keys(LOG_FORMAT_JSON, keys, sizeof(keys));
    char *readme = slurp(README);
    char *r = span(readme, "## Access log", "## ");
    problems = 0;
    table_names(r, "| field | meaning |", 0, rows, sizeof(rows));
    want_all(keys, rows, "%s: the access-log field '%.*s' has no row in the table");
    want_all(rows, keys, "%s: the access-log table lists '%.*s', which a JSON line lacks");
    char *json = span(r, "```json", "```");
    json_keys(strchr(json, '{'), example, sizeof(example));
    if (strcmp(example, keys) != 0)
        problem("%s: the example JSON line has the keys\n  %s\na line has\n  %s", README, example,
                keys);
    free(json);
    if (problems)
        fail_msg("%zu access-log fields disagree with the README's table", problems);
    assert_true(strlen(keys) > 20 * 4);
    free(r);
    free(readme);
}

/* The README's table of the text format has a row for each key of a text line, in the line's
 * order, and names in its second column every field of a JSON line (but the time, which starts
 * the line without a key): a field added to one format without the other, or without a row,
 * fails here. */
static void test_access_log_text_documented(void **state)
{
    (void)state;
    char keys[2048], json[2048], rows[2048], fields[2048];
    line_keys(LOG_FORMAT_TEXT, keys, sizeof(keys));
    line_keys(LOG_FORMAT_JSON, json, sizeof(json));
    char *readme = slurp(README);
    char *r = span(readme, "## Access log", "## ");
    problems = 0;
    table_names(r, "| key | JSON field | written |", 0, rows, sizeof(rows));
    table_names(r, "| key | JSON field | written |", 1, fields, sizeof(fields));
    if (strcmp(rows, keys) != 0)
        problem("%s: the text format's table has the keys\n  %s\na text line has\n  %s", README,
                rows, keys);
    want_all(json + strlen("`time` "), fields,
             "%s: the JSON field '%.*s' is in no row of the text format's table");
    if (problems)
        fail_msg("%zu access-log keys disagree with the README's text-format table", problems);
    assert_true(strlen(keys) > 25 * 4);
    free(r);
    free(readme);
}

/* The statuses the README's failure table and the man page's [errors] entries give each failure
 * type, per profile, are failure.c's (and the README's Proxy-Status error its own). */
static void test_failure_statuses_documented(void **state)
{
    (void)state;
    char *man = slurp(MANPAGE), *readme = slurp(README);
    char *m = span(man, ".SS \"[errors]\"", ".S"), *r = span(readme, "## Failures", "## ");
    problems = 0;
    for (int t = FAIL_NONE + 1; t < FAILURE_COUNT; t++) {
        enum failure_type type = (enum failure_type)t;
        char want[64];
        snprintf(want, sizeof(want), "%d, %d, %d", failure_status(type, PROFILE_STANDARD, NULL),
                 failure_status(type, PROFILE_CLOUDFLARE, NULL),
                 failure_status(type, PROFILE_PROXY, NULL));
        char *entry = entry_of(m, failure_name(type));
        assert_non_null(entry); /* test_every_failure_type_documented says which */
        if (strncmp(entry, want, strlen(want)) != 0 || entry[strlen(want)] != ':')
            problem("%s: [errors] %s says '%.*s', failure.c gives %s", MANPAGE, failure_name(type),
                    (int)strcspn(entry, ":\n"), entry, want);
        free(entry);
        char *row = row_of(r, failure_name(type));
        if (!row) /* internal_error is Portico's own, no upstream failure: a row optional */
            continue;
        char got[64] = "", *cells[4];
        for (int c = 0; c < 4; c++)
            cells[c] = cell(row, 2 + c);
        for (int c = 0; c < 3; c++) {
            char v[16];
            value_at(cells[c], VALUE_STOPS, v, sizeof(v));
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", c ? ", " : "", v);
        }
        if (strcmp(got, want) != 0)
            problem("%s: failure table row %s says %s, failure.c gives %s", README,
                    failure_name(type), got, want);
        char ps[64];
        value_at(cells[3], VALUE_STOPS, ps, sizeof(ps));
        if (strcmp(ps, failure_proxy_status(type)) != 0)
            problem("%s: failure table row %s says Proxy-Status %s, failure.c gives %s", README,
                    failure_name(type), ps, failure_proxy_status(type));
        for (int c = 0; c < 4; c++)
            free(cells[c]);
        free(row);
    }
    if (problems)
        fail_msg("%zu failure statuses disagree with failure.c", problems);
    free(m);
    free(r);
    free(man);
    free(readme);
}

/* ---- bounds: the "at most N" of keys that take several values ---- */

/* One row per key that takes several values, on lines of their own (repeatable) or as a list
 * in one value: the file around its values, and the i-th value, '#' in tmpl standing for
 * base + i (values differ, and each is valid alone). */
static const struct bound_row {
    enum cfg_section sec;
    const char *key;
    bool list;          /* "a, b, c" in one line; else one line each */
    const char *before; /* the file up to the key's lines */
    const char *after;  /* and after them */
    const char *tmpl;
    int base;
} bound_rows[] = {
    {CFG_SEC_PROXY, "listen", false, "[proxy]\n", "[upstream a]\norigin = sim\n", "127.0.0.1:#",
     18000},
    {CFG_SEC_PROXY, "tls_cert", false, "[proxy]\n", "[upstream a]\norigin = sim\n", "/c#.pem", 0},
    {CFG_SEC_PROXY, "tls_key", false, "[proxy]\n", "[upstream a]\norigin = sim\n", "/k#.pem", 0},
    {CFG_SEC_UPSTREAM, "origin", false, "[upstream a]\n", "", "127.0.0.1:#", 18000},
    {CFG_SEC_ROUTE, "early_hints", false, "[upstream a]\norigin = sim\n[route r]\nupstream = a\n",
     "", "</#.css>; rel=preload", 0},
    {CFG_SEC_ROUTE, "request_header", false, "[upstream a]\norigin = sim\n[route r]\nupstream = a\n",
     "", "X-#: v", 0},
    {CFG_SEC_ROUTE, "request_header_remove", false,
     "[upstream a]\norigin = sim\n[route r]\nupstream = a\n", "", "X-#", 0},
    {CFG_SEC_ROUTE, "response_header", false,
     "[upstream a]\norigin = sim\n[route r]\nupstream = a\n", "", "X-#: v", 0},
    {CFG_SEC_ROUTE, "response_header_remove", false,
     "[upstream a]\norigin = sim\n[route r]\nupstream = a\n", "", "X-#", 0},
    /* distinct upstreams, each another than the route's own */
    {CFG_SEC_ROUTE, "mirror", false, "[upstream a]\norigin = sim\n[route r]\nupstream = a\n",
     "[upstream m0]\norigin = sim\n[upstream m1]\norigin = sim\n[upstream m2]\norigin = sim\n"
     "[upstream m3]\norigin = sim\n[upstream m4]\norigin = sim\n", "m#", 0},
    {CFG_SEC_PROXY, "trusted_proxies", true, "[proxy]\n", "[upstream a]\norigin = sim\n",
     "10.#.0.0/16", 0},
    /* ::1 to ::1025 (hex groups): 1025 rules, every one of its own */
    {CFG_SEC_PROXY, "allow", true, "[proxy]\n", "[upstream a]\norigin = sim\n", "::#", 0},
    {CFG_SEC_PROXY, "deny", true, "[proxy]\n", "[upstream a]\norigin = sim\n", "::#", 0},
    {CFG_SEC_ROUTE, "allow", true, "[upstream a]\norigin = sim\n[route r]\nupstream = a\n", "",
     "::#", 0},
    {CFG_SEC_ROUTE, "deny", true, "[upstream a]\norigin = sim\n[route r]\nupstream = a\n", "",
     "::#", 0},
    {CFG_SEC_FAULTS, "header_control_clients", true, "[faults]\n", "[upstream a]\norigin = sim\n",
     "10.#.0.0/16", 0},
    {CFG_SEC_FAULT, "method", true, "[upstream a]\norigin = sim\n[fault f]\nstatus = 503\n", "",
     "GET", 0},
    {CFG_SEC_FAULT, "header", false, "[upstream a]\norigin = sim\n[fault f]\nstatus = 503\n", "",
     "X-#", 0},
    {CFG_SEC_FAULT, "client", true, "[upstream a]\norigin = sim\n[fault f]\nstatus = 503\n", "",
     "10.#.0.0/16", 0},
    {CFG_SEC_FAULT, "status", true, "[upstream a]\norigin = sim\n[fault f]\n", "", "#:0.01", 500},
    {CFG_SEC_FAULT, "headers", false, "[upstream a]\norigin = sim\n[fault f]\nstatus = 503\n", "",
     "X-#: v", 0},
    {CFG_SEC_FAULT, "interim", true, "[upstream a]\norigin = sim\n[fault f]\n", "", "#", 101},
};

/* The N of the first "at most N" of a man page entry; -1 when it states none. */
static int stated_bound(const char *entry)
{
    for (const char *p = strstr(entry, "at most "); p; p = strstr(p + 1, "at most ")) {
        int n;
        if (sscanf(p + strlen("at most "), "%d", &n) == 1)
            return n;
    }
    return -1;
}

/* How many errors a file with n values of row's key has (the loader's count). */
static int errors_with(const struct bound_row *row, int n)
{
    static char text[16384]; /* 1025 allow rules: ~8 KiB */
    size_t len = (size_t)snprintf(text, sizeof(text), "%s%s = ", row->before, row->key);
    for (int i = 1; i <= n; i++) {
        if (i > 1 && row->list)
            len = buf_appendf(text, sizeof(text), len, ", ");
        else if (i > 1)
            len = buf_appendf(text, sizeof(text), len, "\n%s = ", row->key);
        for (const char *t = row->tmpl; *t; t++)
            len = *t == '#' ? buf_appendf(text, sizeof(text), len, "%d", row->base + i)
                            : buf_appendf(text, sizeof(text), len, "%c", *t);
    }
    len = buf_appendf(text, sizeof(text), len, "\n%s", row->after);
    assert_true(len < sizeof(text) - 1);
    int errors = -1;
    struct config *cfg = cfg_load_string(text, "bound.ini", "/tmp", NULL, &errors);
    cfg_free(cfg);
    return cfg ? errors : (errors > 0 ? errors : 1);
}

/* Whether an entry says its key takes several values: "repeatable", or a list. */
static bool takes_several(const char *entry)
{
    return strstr(entry, "repeatable") || strncmp(entry, "list", 4) == 0 ||
           strncmp(entry, "CIDR list", 9) == 0;
}

/* Each key that takes several values states its bound, and the parser takes that many values
 * and refuses one more; a key the page calls repeatable or a list has its row above. */
static void test_bounds_documented(void **state)
{
    (void)state;
    char *man = slurp(MANPAGE);
    size_t checked = 0;
    problems = 0;
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        char *m = span(man, sections[s].man, ".S");
        size_t n;
        const struct cfg_key *keys = cfg_keys(sections[s].sec, &n);
        for (size_t i = 0; i < n; i++) {
            char *entry = entry_of(m, keys[i].name);
            const struct bound_row *row = NULL;
            for (size_t r = 0; r < sizeof(bound_rows) / sizeof(bound_rows[0]); r++)
                if (bound_rows[r].sec == sections[s].sec &&
                    strcmp(bound_rows[r].key, keys[i].name) == 0)
                    row = &bound_rows[r];
            if (!entry || !row) {
                if (entry && takes_several(entry))
                    problem("[%s] %s takes several values: add its bound_rows row",
                           cfg_section_name(sections[s].sec), keys[i].name);
                free(entry);
                continue;
            }
            int bound = stated_bound(entry);
            if (bound < 1) {
                problem("%s: [%s] %s states no \"at most N\"", MANPAGE,
                       cfg_section_name(sections[s].sec), keys[i].name);
            } else if (errors_with(row, bound) != 0) {
                problem("%s: [%s] %s: at most %d, but %d values are refused", MANPAGE,
                       cfg_section_name(sections[s].sec), keys[i].name, bound, bound);
            } else if (errors_with(row, bound + 1) == 0) {
                problem("%s: [%s] %s: at most %d, but %d values load", MANPAGE,
                       cfg_section_name(sections[s].sec), keys[i].name, bound, bound + 1);
            }
            checked++;
            free(entry);
        }
        free(m);
    }
    print_message("checked: %zu bounds\n", checked);
    if (checked != sizeof(bound_rows) / sizeof(bound_rows[0]))
        fail_msg("a row of bound_rows names a key the man page does not document");
    free(man);
    if (problems)
        fail_msg("%zu bounds disagree with the parser (above)", problems);
}

/* ---- examples: the configurations the documents show load ---- */

/* What a fragment (a block without an [upstream], such as the README's [faults] example) is
 * loaded after: the upstream and route the fragments name. Its line numbers move by 4. A block
 * of routes that answer themselves (return) is a whole file: it needs no [upstream]. */
#define FRAGMENT_HEAD "[upstream shop]\norigin = sim\n[route shop]\nupstream = shop\n"

/* Loads one example as `name`; prints its errors and warnings (FILE:LINE: message) to `errors`
 * (NULL: none) and returns how many: an example loads as shown, without a warning (none of the
 * documents says one of its examples warns). */
static int example_errors(const char *text, const char *name, FILE *errors)
{
    size_t size = strlen(FRAGMENT_HEAD) + strlen(text) + 1;
    char *full = malloc(size);
    assert_non_null(full);
    bool whole = strstr(text, "[upstream ") || strstr(text, "\nreturn = ");
    snprintf(full, size, "%s%s", whole ? "" : FRAGMENT_HEAD, text);
    int n = -1;
    struct config *cfg = cfg_load_string(full, name, "/tmp", errors, &n);
    if (cfg && errors)
        cfg_print_warnings(cfg, errors);
    n += cfg ? cfg->nwarnings : 0;
    cfg_free(cfg);
    free(full);
    return cfg ? n : (n > 0 ? n : 1);
}

/* The README's ```ini blocks; returns how many failed, and counts them in *blocks. */
static int readme_examples(const char *readme, int *blocks, FILE *errors)
{
    static const char open[] = "\n```ini\n";
    int failed = 0;
    for (const char *p = strstr(readme, open); p; p = strstr(p + 1, open)) {
        const char *b = p + strlen(open), *e = strstr(b, "\n```");
        assert_non_null(e);
        char *text = strndup(b, (size_t)(e - b + 1));
        char name[64];
        assert_non_null(text);
        snprintf(name, sizeof(name), "%s ```ini block %d", README, ++*blocks);
        failed += example_errors(text, name, errors) != 0;
        free(text);
    }
    return failed;
}

/* Keys whose values name what the machine running the tests may lack (a directory of
 * /var/log or /run, a system user): an example may fail there and nowhere else. */
static const char *const host_keys[] = {"access_log", "error_log", "pid_file", "user", "group"};

/* Whether line n (from 1) of text sets one of host_keys in [proxy]. */
static bool sets_host_key(const char *text, int n)
{
    const char *line = text;
    bool in_proxy = false;
    for (int i = 1; i < n && line; i++) {
        if (line[0] == '[')
            in_proxy = strncmp(line, "[proxy]", 7) == 0;
        if ((line = strchr(line, '\n')))
            line++;
    }
    if (!line || !in_proxy)
        return false;
    for (size_t i = 0; i < sizeof(host_keys) / sizeof(host_keys[0]); i++) {
        size_t len = strlen(host_keys[i]);
        if (strncmp(line, host_keys[i], len) == 0 && strchr(" =", line[len]))
            return true;
    }
    return false;
}

/* The man page's EXAMPLES (its .EX block, "\-" as the reader sees it) loads, but for the lines of
 * host_keys: each FILE:LINE message names another line. Returns how many do. */
static int manpage_example(const char *man, FILE *errors)
{
    const char *b = strstr(man, "\n.SH EXAMPLES\n.EX\n"), *e = b ? strstr(b, "\n.EE\n") : NULL;
    if (!b || !e)
        fail_msg("%s: no EXAMPLES section with an .EX block", MANPAGE);
    b += strlen("\n.SH EXAMPLES\n.EX\n");
    char *text = malloc((size_t)(e - b) + 2);
    assert_non_null(text);
    size_t n = 0;
    for (const char *p = b; p <= e; p++) /* e's '\n' ends the last line */
        if (!(p[0] == '\\' && p[1] == '-'))
            text[n++] = *p;
    text[n] = '\0';
    char *msgs = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&msgs, &len);
    assert_non_null(out);
    int count = -1;
    struct config *cfg = cfg_load_string(text, "man.ini", "/tmp", out, &count);
    cfg_free(cfg);
    fclose(out);
    int failed = 0;
    for (char *m = msgs; m && *m;) {
        char *nl = strchr(m, '\n');
        int line = 0;
        if (sscanf(m, "man.ini:%d:", &line) != 1 || !sets_host_key(text, line)) {
            if (errors)
                fprintf(errors, "%s EXAMPLES: %.*s\n", MANPAGE,
                        nl ? (int)(nl - m) : (int)strlen(m), m);
            failed++;
        }
        m = nl ? nl + 1 : m + strlen(m);
    }
    free(msgs);
    free(text);
    return failed;
}

/* The INI of DEPLOYING.md's ConfigMap: the lines under "portico.ini: |" without their
 * indentation, up to the first line indented less (blank lines belong to the block). */
static int deploying_example(const char *doc, FILE *errors)
{
    static const char key[] = "portico.ini: |\n";
    const char *p = strstr(doc, key);
    if (!p)
        fail_msg("%s: no ConfigMap key 'portico.ini: |'", DEPLOYING);
    p += strlen(key);
    size_t indent = strspn(p, " ");
    assert_true(indent > 0);
    struct evbuffer *ini = evbuffer_new();
    assert_non_null(ini);
    for (const char *line = p; *line; line = next_line(line)) {
        size_t len = strcspn(line, "\n");
        if (len == 0 || strspn(line, " ") == len) {
            assert_int_equal(evbuffer_add(ini, "\n", 1), 0);
            continue;
        }
        if (strspn(line, " ") < indent)
            break;
        assert_int_equal(evbuffer_add(ini, line + indent, len - indent), 0);
        assert_int_equal(evbuffer_add(ini, "\n", 1), 0);
    }
    assert_int_equal(evbuffer_add(ini, "", 1), 0);
    int n = example_errors((const char *)evbuffer_pullup(ini, -1), DEPLOYING " ConfigMap", errors);
    evbuffer_free(ini);
    return n;
}

static void test_examples_load(void **state)
{
    (void)state;
    char *readme = slurp(README), *deploying = slurp(DEPLOYING);
    int blocks = 0, failed = readme_examples(readme, &blocks, stderr);
    assert_true(blocks >= 3); /* the parse still finds them ([proxy], balancing, faults) */
    failed += deploying_example(deploying, stderr) != 0;
    char *man = slurp(MANPAGE);
    failed += manpage_example(man, stderr) != 0;
    free(man);
    glob_t g;
    assert_int_equal(glob("conf/*.ini", 0, NULL, &g), 0);
    assert_int_equal(glob("conf/examples/*.ini", GLOB_APPEND, NULL, &g), 0);
    assert_true(g.gl_pathc >= 2); /* portico.ini, examples/staging.ini */
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int errors = -1;
        struct config *cfg = cfg_load(g.gl_pathv[i], stderr, &errors);
        failed += !cfg || errors != 0 || cfg->nwarnings != 0;
        if (cfg)
            cfg_print_warnings(cfg, stderr);
        cfg_free(cfg);
    }
    print_message("checked: %d README blocks, the DEPLOYING ConfigMap, the man page's EXAMPLES, "
                  "%zu files of conf/\n",
                  blocks, g.gl_pathc);
    globfree(&g);
    if (failed)
        fail_msg("%d example configurations have errors (above)", failed);
    free(readme);
    free(deploying);
}

/* How many times needle occurs in text. */
static size_t occurrences(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The README's *Tests* section names what the suite holds: every libFuzzer target of tests/fuzz/,
 * every row of test_failures that runs in a network namespace of its own, and the number of
 * integration rows that skip without ::1. A target or a row added without a word fails here. */
static void test_test_inventory_documented(void **state)
{
    (void)state;
    char *readme = slurp(README), *failures = slurp("tests/integration/test_failures.c");
    char *tests = span(readme, "## Tests", "## ");
    problems = 0;
    glob_t g;
    assert_int_equal(glob("tests/fuzz/fuzz_*.c", 0, NULL, &g), 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char name[128];
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;
        snprintf(name, sizeof(name), "`%.*s`", (int)(strlen(base) - 2), base); /* less ".c" */
        if (!strstr(tests, name))
            problem("%s (Tests): the fuzz target %s is not named", README, name);
    }
    size_t targets = g.gl_pathc;
    globfree(&g);
    size_t netns_rows = 0;
    const char *row = "cmocka_unit_test_setup_teardown(";
    for (const char *p = strstr(failures, row); p; p = strstr(p + 1, row)) {
        const char *b = p + strlen(row);
        size_t n = strcspn(b, ",");
        if (strncmp(b + n, ", netns_", strlen(", netns_")) != 0)
            continue;
        char name[128];
        snprintf(name, sizeof(name), "`%.*s`", (int)n, b);
        netns_rows++;
        if (!strstr(tests, name))
            problem("%s (Tests): the network-namespace row %s is not named", README, name);
    }
    size_t ipv6_rows = 0;
    assert_int_equal(glob("tests/integration/test_*.c", 0, NULL, &g), 0);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *src = slurp(g.gl_pathv[i]);
        ipv6_rows += occurrences(src, "    TU_SKIP_WITHOUT_IPV6_LOOPBACK();");
        free(src);
    }
    globfree(&g);
    char said[64];
    snprintf(said, sizeof(said), "the %zu integration rows that need it skip", ipv6_rows);
    if (!strstr(tests, said))
        problem("%s (Tests): %zu rows skip without ::1; the text does not say \"%s\"", README,
                ipv6_rows, said);
    print_message("checked: %zu fuzz targets, %zu network-namespace rows, %zu rows that need ::1\n",
                  targets, netns_rows, ipv6_rows);
    assert_true(targets >= 12 && netns_rows >= 7 && ipv6_rows >= 10); /* December 2026 */
    if (problems)
        fail_msg("%zu parts of the test suite are not in README's Tests section", problems);
    free(tests);
    free(failures);
    free(readme);
}

/* The checks themselves: a key missing from a section is seen, one present is not flagged. */
static void test_checks_can_fail(void **state)
{
    (void)state;
    const char *man = ".SS \"[proxy]\"\n.TP\n.B workers\nnumber.\n.TP\n.B listenx\nx\n";
    assert_true(has_entry(man, "workers"));
    assert_false(has_entry(man, "listen")); /* "listenx" is not "listen" */
    const char *md = "| key | default |\n|---|---|\n| `tls_cert`, `tls_key` | - |\n"
                     "| `a` | see `workers` |\n";
    assert_true(has_row(md, "tls_key"));
    assert_false(has_row(md, "workers")); /* mentioned, but not in the key column */
    assert_false(known_proxy("listenx"));
    const char *names[4];
    char buf[64];
    const char *src = "if (strcmp(argv[1], \"codes\") == 0)\nstrcmp(argv[2], \"x\")\n"
                      "if (strcmp(argv[1], \"probe\") == 0)\n";
    assert_int_equal(subcommands(src, names, 4, buf, sizeof(buf)), 2);
    assert_string_equal(names[0], "codes");
    assert_string_equal(names[1], "probe");
    const char *sigs[4];
    assert_int_equal(handled_signals("sigaddset(&s, SIGHUP);\nsigaddset(set, WAKE_SIGNAL);\n"
                                     "signal(SIGPIPE, SIG_IGN);\npthread_sigmask(SIG_BLOCK, s);\n"
                                     "sigaddset(set, SIGHUP);\n", sigs, 4, buf, sizeof(buf)), 2);
    assert_string_equal(sigs[0], "SIGHUP");
    assert_string_equal(sigs[1], "SIGPIPE");
    const char *opts[4];
    size_t used = 0;
    assert_int_equal(long_options("{\"help\", no_argument, NULL, 'h'},\n{\"x\", 1},\n"
                                  "if (strcmp(argv[i], \"--json\") == 0)\n", opts, 0, 4, buf,
                                  &used, sizeof(buf)), 2);
    assert_string_equal(opts[0], "--help");
    assert_string_equal(opts[1], "--json");
    char v[32], keys[64];
    value_at("`10s` (x)", VALUE_STOPS, v, sizeof(v));
    assert_string_equal(v, "10s");
    value_at("1ms\\(en168h; default 0 (off).", "\\" VALUE_STOPS, v, sizeof(v));
    assert_string_equal(v, "1ms");
    value_at("0.5 (off).", VALUE_STOPS, v, sizeof(v));
    assert_string_equal(v, "0.5");
    value_at("on.", VALUE_STOPS, v, sizeof(v));
    assert_string_equal(v, "on");
    man_dashes("--a-b", v, sizeof(v));
    assert_string_equal(v, "\\-\\-a\\-b");
    assert_true(sample_of("portico_x_bucket", 16, "portico_x", "histogram"));
    assert_false(sample_of("portico_x_bucket", 16, "portico_x", "counter"));
    assert_false(sample_of("portico_xy", 10, "portico_x", "counter"));
    json_keys("{\"a\":1,\"b\":{\"c\":\"\\\"\"},\"d\":[\"e\"]}", keys, sizeof(keys));
    assert_string_equal(keys, "`a` `b` `d` ");
    text_keys("T a=1 b=\"x y=\\\" z\" c=- d=\"\"\n", keys, sizeof(keys));
    assert_string_equal(keys, "`a` `b` `c` `d` ");
    /* an example with a mistake is counted, a fragment gets the upstream and route it names */
    assert_int_equal(example_errors("[upstream a]\norigin = sim\nbogus = 1\n", "bad", NULL), 1);
    assert_int_equal(example_errors("[fault f]\nroute = shop\nstatus = 503\n", "frag", NULL), 0);
    assert_int_equal(example_errors("[fault f]\nroute = nope\nstatus = 503\n", "frag", NULL), 1);
    assert_int_equal(example_errors("[upstream a]\norigin = sim\nconnect_timeout = 5000\n", "warns",
                                    NULL), 1);
    int blocks = 0;
    assert_int_equal(readme_examples("x\n```ini\n[upstream a]\nbogus = 1\n```\n", &blocks, NULL),
                     1);
    assert_int_equal(blocks, 1);
    assert_int_equal(manpage_example("x\n.SH EXAMPLES\n.EX\n[upstream a]\norigin = sim\n"
                                     "user = nosuchuser\n.EE\n", NULL), 1); /* not [proxy]'s */
    assert_int_equal(manpage_example("x\n.SH EXAMPLES\n.EX\n[proxy]\nuser = nosuchuser\n"
                                     "[upstream a]\norigin = sim\n.EE\n", NULL), 0);
    assert_int_equal(manpage_example("x\n.SH EXAMPLES\n.EX\n[proxy]\nworkers = 0\n"
                                     "[upstream a]\norigin = sim\n.EE\n", NULL), 1);
    assert_int_equal(stated_bound("repeatable (at most 16, each once)"), 16);
    assert_int_equal(stated_bound("each at most once; at most 8 blocks"), 8);
    assert_int_equal(stated_bound("CIDR list"), -1);
    assert_true(takes_several("CIDR list, at most 8 blocks"));
    assert_true(takes_several("a Link value; repeatable"));
    assert_false(takes_several("path; default none"));
    assert_int_equal(errors_with(&bound_rows[0], 2), 0);
    assert_true(errors_with(&bound_rows[0], 100) > 0);
    assert_int_equal(deploying_example("  portico.ini: |\n    [upstream a]\n    origin = sim\n\n"
                                       "    retries = 99\n---\n", NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks_can_fail),
        cmocka_unit_test(test_every_key_documented),
        cmocka_unit_test(test_every_failure_type_documented),
        cmocka_unit_test(test_every_signal_documented),
        cmocka_unit_test(test_every_subcommand_documented),
        cmocka_unit_test(test_every_option_documented),
        cmocka_unit_test(test_every_metric_documented),
        cmocka_unit_test(test_ranges_and_defaults_documented),
        cmocka_unit_test(test_fault_ranges_documented),
        cmocka_unit_test(test_metric_types_and_labels),
        cmocka_unit_test(test_access_log_fields_documented),
        cmocka_unit_test(test_access_log_text_documented),
        cmocka_unit_test(test_failure_statuses_documented),
        cmocka_unit_test(test_bounds_documented),
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_test_inventory_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
