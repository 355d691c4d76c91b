/*
 * probe_request.c — the request `portico probe` sends. See probe_request.h.
 *
 * curl is the reference a user has: -X replaces the method and nothing else, -d implies POST
 * with Content-Type: application/x-www-form-urlencoded, -H replaces a field the tool would send
 * itself ("Name:" drops it, "Name;" sends it empty). What differs is said where it is refused:
 * the body's framing is the probe's (one body, sent with Content-Length), and CONNECT is not
 * probed because Portico refuses it.
 */
#include "portico/probe_request.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/http1.h"
#include "portico/util.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "0.0.0"
#endif

/* The fields the probe writes itself, in order, unless a -H names them. */
static const struct {
    const char *name;
    const char *value;                 /* NULL: the URL's authority */
} defaults[] = {
    {"Host", NULL},
    {"User-Agent", "portico-probe/" PORTICO_VERSION},
    {"Accept", "*/*"},
};

/* Fields a -H may not set, and why: the probe frames its body itself. */
static const struct {
    const char *name;
    const char *why;
} refused_fields[] = {
    {"Content-Length", "the probe sends its body's length itself (-d, "
                       "--data-binary)"},
    {"Transfer-Encoding", "the probe sends its body with Content-Length "
                          "(-d, --data-binary), never chunked"},
};

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!h1_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

int probe_request_set_method(struct probe_request *rq, const char *method, const char **why)
{
    if (!is_token(method, strlen(method))) {
        *why = "a method is a token (letters, digits, !#$%&'*+-.^_`|~)";
        return -1;
    }
    if (strcmp(method, "CONNECT") == 0) {
        *why = "Portico refuses CONNECT (501 Not Implemented): nothing to probe";
        return -1;
    }
    rq->method = method;
    return 0;
}

/* The length of arg's name, and where its value starts (*value; NULL for "Name:", the field
 * dropped), or -1 when arg is neither "Name: value", "Name:" nor "Name;". */
static long field_split(const char *arg, const char **value)
{
    size_t n = strcspn(arg, ":");
    if (arg[n] == ':') {
        const char *v = arg + n + 1;
        v += strspn(v, " \t"); /* as curl: the blanks after the colon are not the value's */
        *value = *v ? v : NULL;
        return (long)n;
    }
    size_t len = strlen(arg);
    if (len && arg[len - 1] == ';') { /* curl's "Name;": the field with an empty value */
        *value = "";
        return (long)len - 1;
    }
    return -1;
}

int probe_request_add_field(struct probe_request *rq, const char *arg, const char **why)
{
    const char *value;
    long n = field_split(arg, &value);
    if (n < 0) {
        *why = "not 'Name: value' (nor 'Name:' to drop one of the probe's, 'Name;' for an "
               "empty value)";
        return -1;
    }
    if (!is_token(arg, (size_t)n)) {
        *why = "a field name is a token (letters, digits, !#$%&'*+-.^_`|~; no blank before "
               "the colon)";
        return -1;
    }
    if (value && value[strcspn(value, "\r\n")]) {
        *why = "a CR or LF in the value (one field a -H)";
        return -1;
    }
    for (size_t i = 0; i < sizeof(refused_fields) / sizeof(refused_fields[0]); i++)
        if (strlen(refused_fields[i].name) == (size_t)n &&
            strncasecmp(arg, refused_fields[i].name, (size_t)n) == 0) {
            *why = refused_fields[i].why;
            return -1;
        }
    if (rq->nfields == PROBE_FIELDS_MAX) {
        *why = "more -H than the fields Portico takes from a client (431)";
        return -1;
    }
    rq->fields[rq->nfields++] = arg;
    return 0;
}

int probe_request_set_data(struct probe_request *rq, const char *data, bool binary,
                           const char **why)
{
    if (rq->data) {
        *why = "one body a probe (-d or --data-binary once)";
        return -1;
    }
    rq->data = data;
    rq->data_binary = binary;
    return 0;
}

/* Reads f whole into rq->body, up to PROBE_DATA_MAX. 0, or -1 with why. */
static int read_all(struct probe_request *rq, FILE *f, const char *name, char *why, size_t size)
{
    /* one byte past the bound tells a body over it: never more held (/dev/zero held 128 MiB) */
    size_t cap = 0, limit = (size_t)PROBE_DATA_MAX + 1;
    for (;;) {
        if (rq->body_len == cap) {
            if (cap == limit)
                break;
            size_t more = cap ? MIN(cap * 2, limit) : MIN((size_t)65536, limit);
            char *b = realloc(rq->body, more);
            if (!b) {
                snprintf(why, size, "%s: out of memory", name);
                return -1;
            }
            rq->body = b;
            cap = more;
        }
        size_t got = fread(rq->body + rq->body_len, 1, cap - rq->body_len, f);
        rq->body_len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(why, size, "%s: %s", name, strerror(errno));
        return -1;
    }
    if (rq->body_len > PROBE_DATA_MAX) {
        snprintf(why, size, "%s: over %u MiB, the probe's bound on a body", name,
                 PROBE_DATA_MAX >> 20);
        return -1;
    }
    return 0;
}

int probe_request_load(struct probe_request *rq, char *why, size_t size)
{
    if (!rq->data)
        return 0;
    const char *opt = rq->data_binary ? "--data-binary" : "-d";
    if (rq->data[0] != '@') { /* the argument itself (an empty one: a body of 0 bytes) */
        rq->body_len = strlen(rq->data);
        rq->body = malloc(rq->body_len + 1);
        if (!rq->body) {
            snprintf(why, size, "%s: out of memory", opt);
            return -1;
        }
        memcpy(rq->body, rq->data, rq->body_len + 1);
        return 0;
    }
    const char *path = rq->data + 1;
    bool in = strcmp(path, "-") == 0;
    FILE *f = in ? stdin : fopen(path, "rb");
    char name[300];
    snprintf(name, sizeof(name), "%s @%s", opt, in ? "-" : path);
    if (!f) {
        snprintf(why, size, "%s: %s", name, strerror(errno));
        return -1;
    }
    int rc = read_all(rq, f, name, why, size);
    if (!in)
        fclose(f);
    if (rc == 0 && !rq->data_binary) { /* -d @FILE: curl drops the file's CR and LF */
        size_t kept = 0;
        for (size_t i = 0; i < rq->body_len; i++)
            if (rq->body[i] != '\r' && rq->body[i] != '\n')
                rq->body[kept++] = rq->body[i];
        rq->body_len = kept;
    }
    return rc;
}

const char *probe_request_method(const struct probe_request *rq)
{
    return rq->method ? rq->method : rq->data ? "POST" : "GET";
}

/* Whether a -H names the field name (whatever it does with it). */
static bool named(const struct probe_request *rq, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < rq->nfields; i++)
        if (strncasecmp(rq->fields[i], name, n) == 0 &&
            (rq->fields[i][n] == ':' || rq->fields[i][n] == ';'))
            return true;
    return false;
}

int probe_request_head(const struct probe_request *rq, const char *authority, const char *path,
                       size_t path_len, struct evbuffer *out)
{
    /* the origin-form target: "/" before a URL's path that has none (a query only) */
    const char *slash = path_len && path[0] == '/' ? "" : "/";
    int bad = evbuffer_add_printf(out, "%s %s%.*s HTTP/1.1\r\n", probe_request_method(rq), slash,
                                  (int)path_len, path) < 0;
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        if (!named(rq, defaults[i].name))
            bad |= evbuffer_add_printf(out, "%s: %s\r\n", defaults[i].name,
                                       defaults[i].value ? defaults[i].value : authority) < 0;
    for (unsigned i = 0; i < rq->nfields; i++) {
        const char *value;
        long n = field_split(rq->fields[i], &value);
        if (value) /* "Name:" only drops the probe's own */
            bad |= evbuffer_add_printf(out, "%.*s: %s\r\n", (int)n, rq->fields[i], value) < 0;
    }
    if (rq->data) {
        if (!named(rq, "Content-Type")) /* curl's, for -d and --data-binary alike */
            bad |= evbuffer_add_printf(out, "Content-Type: application/x-www-form-urlencoded\r\n")
                   < 0;
        bad |= evbuffer_add_printf(out, "Content-Length: %zu\r\n", rq->body_len) < 0;
    }
    if (!named(rq, "Connection"))
        bad |= evbuffer_add_printf(out, "Connection: close\r\n") < 0;
    bad |= evbuffer_add(out, "\r\n", 2) != 0;
    return bad ? -1 : 0;
}

void probe_request_free(struct probe_request *rq)
{
    free(rq->body);
    rq->body = NULL;
    rq->body_len = 0;
}
