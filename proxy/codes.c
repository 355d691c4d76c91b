/*
 * codes.c — `portico codes`: prints the status-code registry (status.h), every meaning of every
 * code, one class, or one code (with the failure types each error profile answers with it), as
 * an aligned table or as one JSON array. See codes.h.
 *
 * A selector is exactly three characters: a code "100"-"999" or a class "1xx"-"9xx". Anything
 * else is bad usage (exit 2); a well-formed code or class the registry lacks is reported on
 * stderr with exit 1, so a script can tell "no such thing" from "you typed it wrong".
 */
#include "portico/codes.h"

#include <stdio.h>
#include <string.h>

#include "portico/failure.h"
#include "portico/status.h"

#define USAGE "usage: portico codes [--json] [CODE | CLASS]"

enum codes_format {
    CODES_TEXT, /* aligned columns for people */
    CODES_JSON, /* one array of objects for scripts */
};

enum codes_scope {
    SCOPE_ALL,   /* no selector */
    SCOPE_CLASS, /* "5xx" */
    SCOPE_CODE,  /* "499" */
};

struct codes_query {
    enum codes_scope scope;
    int value;                 /* the class digit, or the code */
    enum codes_format format;
};

static const char *const class_names[10] = {
    [1] = "informational", [2] = "success",      [3] = "redirection",
    [4] = "client error",  [5] = "server error",
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "499" or "5xx" (either case of x); the first digit 1-9. 0, or -1 for anything else. */
static int parse_selector(const char *s, struct codes_query *q)
{
    if (strlen(s) != 3 || s[0] < '1' || s[0] > '9')
        return -1;
    if (is_digit(s[1]) && is_digit(s[2])) {
        q->scope = SCOPE_CODE;
        q->value = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        return 0;
    }
    if ((s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X')) {
        q->scope = SCOPE_CLASS;
        q->value = s[0] - '0';
        return 0;
    }
    return -1;
}

static int selected(const struct codes_query *q, const struct status_info *m)
{
    switch (q->scope) {
    case SCOPE_CLASS:
        return m->code / 100 == q->value;
    case SCOPE_CODE:
        return m->code == q->value;
    case SCOPE_ALL:
    default:
        return 1;
    }
}

/* A JSON string; registry strings are printable ASCII, anything else is escaped anyway. */
static void put_json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c > 0x7e)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void put_json(const struct status_info *m, int first)
{
    printf("%s\n  {\"code\": %d, \"phrase\": ", first ? "" : ",", m->code);
    put_json_string(m->phrase);
    printf(", \"class\": \"%dxx\", \"source\": ", m->code / 100);
    put_json_string(m->origin);
    printf(", \"kind\": \"%s\", \"wire\": %s, \"constant\": ", status_source_name(m->source),
           m->use == STATUS_USE_WIRE ? "true" : "false");
    if (m->name != NULL)
        printf("\"HTTP_%s\"", m->name);
    else
        printf("null");
    printf(", \"note\": ");
    put_json_string(m->note);
    putchar('}');
}

/* One line per meaning; '*' marks the phrase Portico sends. */
static void put_row(const struct status_info *m)
{
    printf("%d %c %-37s %dxx    %-26s %s\n", m->code, m->use == STATUS_USE_WIRE ? '*' : ' ',
           m->phrase, m->code / 100, m->origin, status_source_name(m->source));
}

/* One code explained: a block per meaning, with its note. */
static void put_block(const struct status_info *m)
{
    const char *cls = class_names[m->code / 100];
    printf("%d %s%s\n    %dxx%s%s, %s (%s)\n    %s\n", m->code, m->phrase,
           m->use == STATUS_USE_WIRE ? "  (the phrase Portico sends)" : "", m->code / 100,
           cls != NULL ? " " : "", cls != NULL ? cls : "", m->origin,
           status_source_name(m->source), m->note);
}

/* What Portico itself answers with this code: the failure types each error profile gives it
 * (failure.h's table, before any [errors] override). "598 Network Read Timeout Error" alone
 * would have an SRE look for a read, where the proxy profile's 598 is a send_timeout too. */
static void put_failures(int code)
{
    enum { INDENT = 14, WIDTH = 100 }; /* "  standard    " names..., lines of 100 columns */
    int shown = 0; /* failure types listed so far: the first one brings the heading */
    for (int p = 0; p < PROFILE_COUNT; p++) {
        int n = 0, col = 0;
        for (int t = FAIL_NONE + 1; t < FAILURE_COUNT; t++) {
            if (failure_status((enum failure_type)t, (enum error_profile)p, NULL) != code)
                continue;
            if (shown++ == 0)
                printf("Portico sends %d for, by error_profile (before any [errors] override):\n",
                       code);
            const char *name = failure_name((enum failure_type)t);
            int len = (int)strlen(name);
            if (n++ == 0)
                col = printf("  %-11s %s", profile_name((enum error_profile)p), name);
            else if (col + 2 + len + 1 > WIDTH) /* and the comma that may follow */
                col = printf(",\n%*s%s", INDENT, "", name) - 2;
            else
                col += printf(", %s", name);
        }
        if (n > 0)
            putchar('\n');
    }
}

/* Prints what q selects. */
static void list(const struct codes_query *q)
{
    size_t n = 0;

    if (q->format == CODES_JSON)
        putchar('[');
    else if (q->scope != SCOPE_CODE)
        printf("code  %-37s class  %-26s kind\n", "phrase", "source");
    for (size_t i = 0; i < status_meaning_count(); i++) {
        const struct status_info *m = status_meaning_at(i);
        if (!selected(q, m))
            continue;
        if (q->format == CODES_JSON)
            put_json(m, n == 0);
        else if (q->scope == SCOPE_CODE)
            put_block(m);
        else
            put_row(m);
        n++;
    }
    if (q->format == CODES_JSON)
        printf("%s]\n", n > 0 ? "\n" : "");
    else if (q->scope != SCOPE_CODE)
        printf("\n* marks the phrase Portico sends; `portico codes CODE` explains a code.\n");
    else
        put_failures(q->value);
}

int codes_main(int argc, char **argv)
{
    struct codes_query q = { .scope = SCOPE_ALL, .format = CODES_TEXT };
    const char *selector = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            q.format = CODES_JSON;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("%s\n  CODE: 100-999 (every meaning, the wire one marked); CLASS: 1xx-9xx\n",
                   USAGE);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "portico codes: unknown option \"%s\"; %s\n", argv[i], USAGE);
            return 2;
        } else if (selector != NULL) {
            fprintf(stderr, "portico codes: one code or class at a time; %s\n", USAGE);
            return 2;
        } else {
            selector = argv[i];
        }
    }
    if (selector != NULL && parse_selector(selector, &q) < 0) {
        fprintf(stderr,
                "portico codes: \"%s\" is neither a code (100-999) nor a class (1xx-9xx); %s\n",
                selector, USAGE);
        return 2;
    }
    /* check before printing anything: an empty JSON array is not how "unknown" is said */
    int found = 0;
    for (size_t i = 0; i < status_meaning_count() && !found; i++)
        found = selected(&q, status_meaning_at(i));
    if (!found && q.scope == SCOPE_CODE) {
        fprintf(stderr, "portico codes: %d is not in the registry (Portico would send \"%d %s\")\n",
                q.value, q.value, status_phrase(q.value));
        return 1;
    }
    if (!found) {
        fprintf(stderr, "portico codes: the registry has no code in class %dxx\n", q.value);
        return 1;
    }
    list(&q);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("portico codes: stdout");
        return 1;
    }
    return 0;
}
