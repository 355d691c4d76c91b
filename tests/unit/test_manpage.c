/*
 * test_manpage.c — the documentation cannot fall behind the configuration: every key of the key
 * tables (proxy/config_keys.c) and every failure type of [errors] has its entry in its section
 * of docs/portico.8 (a ".TP" whose tag line is ".B key") and a row in its section of README.md,
 * every entry of the man page is a key that exists, and both documents name every signal
 * Portico handles. The man page has every subcommand proxy/main.c dispatches, and the README's
 * metrics table every family proxy/metrics.c renders. A helper who adds a key, a command or a
 * metric without documenting it fails here.
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

#include "../../proxy/config_int.h"
#include "portico/failure.h"
#include "portico/metrics.h"

#define MANPAGE "docs/portico.8"
#define README "README.md"
#define MAIN_C "proxy/main.c"

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

/* Each signal Portico takes (main.c) is in the man page's SIGNALS and in the README. */
static void test_every_signal_documented(void **state)
{
    (void)state;
    static const char *const signals[] = {"SIGHUP", "SIGUSR1", "SIGTERM", "SIGINT", "SIGQUIT"};
    char *man = slurp(MANPAGE), *readme = slurp(README);
    char *m = span(man, ".SH SIGNALS", ".SH");
    char *r = span(readme, "## Signals", "## ");
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        if (!strstr(m, signals[i]))
            fail_msg("%s: SIGNALS does not mention %s", MANPAGE, signals[i]);
        if (!strstr(r, signals[i]))
            fail_msg("%s: Signals does not mention %s", README, signals[i]);
    }
    free(m);
    free(r);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks_can_fail),
        cmocka_unit_test(test_every_key_documented),
        cmocka_unit_test(test_every_failure_type_documented),
        cmocka_unit_test(test_every_signal_documented),
        cmocka_unit_test(test_every_subcommand_documented),
        cmocka_unit_test(test_every_metric_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
