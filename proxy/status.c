/*
 * status.c — the HTTP status-code registry.
 *
 * One static table indexed by the code itself, generated from the rows of status_list.h as
 * designated initializers, so status_lookup() is one bounds check and one load, and nothing is
 * built at run time: worker threads share read-only data with no init race. Rows that are
 * absent have .code == 0.
 *
 * Phrases go on the wire: printable ASCII only, no CR/LF, no curly quotes (tests/unit/test_status.c
 * checks every row). Where a number has several meanings the phrase is the one Portico sends and
 * the note names the others.
 */
#include "portico/status.h"

/* A duplicated [code] row would silently replace the first one; make that a hard error whatever
 * flags the file is built with (gcc and clang both know this option name). */
#pragma GCC diagnostic error "-Woverride-init"

#define STATUS_MIN 100
#define STATUS_MAX 999

static const struct status_info registry[STATUS_MAX + 1] = {
#define STATUS_TABLE_ROW(c, nm, ph, src, orig, nt)                                                 \
    [c] = { .code = c, .name = #nm, .phrase = ph, .source = STATUS_SRC_##src, .origin = orig,     \
            .note = nt },
    STATUS_LIST(STATUS_TABLE_ROW)
#undef STATUS_TABLE_ROW
};

/* Fallback phrases by class, indexed by code / 100; 6xx-9xx share "Unknown Status". */
static const char *const class_phrase[] = {
    [1] = "Unknown Informational",
    [2] = "Unknown Success",
    [3] = "Unknown Redirection",
    [4] = "Unknown Client Error",
    [5] = "Unknown Server Error",
};

static const char *const source_name[] = {
    [STATUS_SRC_HTTP] = "http",
    [STATUS_SRC_WEBDAV] = "webdav",
    [STATUS_SRC_RFC_OTHER] = "rfc",
    [STATUS_SRC_VENDOR] = "vendor",
    [STATUS_SRC_UNOFFICIAL] = "unofficial",
    [STATUS_SRC_OBSOLETE] = "obsolete",
};

const struct status_info *status_lookup(int code)
{
    if (code < STATUS_MIN || code > STATUS_MAX || registry[code].code == 0)
        return NULL;
    return &registry[code];
}

const char *status_phrase(int code)
{
    const struct status_info *si = status_lookup(code);

    if (si != NULL)
        return si->phrase;
    if (code >= STATUS_MIN && code < 600)
        return class_phrase[code / 100];
    return "Unknown Status";
}

/* Counting and ranking scan the 900 slots: these serve `portico codes` listings, never the
 * request path, and a scan keeps the table the single source of truth with no run-time init. */
size_t status_count(void)
{
    size_t n = 0;

    for (int c = STATUS_MIN; c <= STATUS_MAX; c++)
        n += registry[c].code != 0;
    return n;
}

const struct status_info *status_at(size_t i)
{
    for (int c = STATUS_MIN; c <= STATUS_MAX; c++) {
        if (registry[c].code == 0)
            continue;
        if (i == 0)
            return &registry[c];
        i--;
    }
    return NULL;
}

const char *status_source_name(enum status_source s)
{
    if ((unsigned)s >= sizeof(source_name) / sizeof(source_name[0]) || source_name[s] == NULL)
        return "unknown";
    return source_name[s];
}
