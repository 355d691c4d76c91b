/*
 * test_status.c — the status-code registry: coverage of every code and phrase of the reference
 * text (tests/data/status-codes.txt), the exact wire phrases where they are fixed, exactly
 * one wire meaning per code, table order, wire safety of every string, names, fallbacks.
 *
 * Paths are relative to the repository root, the directory the tests run from.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "portico/status.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* One row per code that must be registered. phrase NULL: only presence and source are fixed
 * (Portico's own choice of wording); origin NULL: origin not checked. */
struct known_row {
    int code;
    const char *phrase;
    enum status_source source;
    const char *origin;
};

static const struct known_row known[] = {
    /* IANA / RFC 9110 and the RFCs the registry points to */
    { 100, "Continue", STATUS_SRC_HTTP, "RFC 9110" },
    { 101, "Switching Protocols", STATUS_SRC_HTTP, "RFC 9110" },
    { 102, "Processing", STATUS_SRC_WEBDAV, NULL },               /* RFC 2518, deprecated */
    { 103, "Early Hints", STATUS_SRC_RFC_OTHER, "RFC 8297" },
    { 200, "OK", STATUS_SRC_HTTP, "RFC 9110" },
    { 201, "Created", STATUS_SRC_HTTP, NULL },
    { 202, "Accepted", STATUS_SRC_HTTP, NULL },
    { 203, "Non-Authoritative Information", STATUS_SRC_HTTP, NULL },
    { 204, "No Content", STATUS_SRC_HTTP, NULL },
    { 205, "Reset Content", STATUS_SRC_HTTP, NULL },
    { 206, "Partial Content", STATUS_SRC_HTTP, NULL },
    { 207, "Multi-Status", STATUS_SRC_WEBDAV, "WebDAV RFC 4918" },
    { 208, "Already Reported", STATUS_SRC_WEBDAV, NULL },         /* RFC 5842 */
    { 226, "IM Used", STATUS_SRC_RFC_OTHER, NULL },               /* RFC 3229 */
    { 300, "Multiple Choices", STATUS_SRC_HTTP, NULL },
    { 301, "Moved Permanently", STATUS_SRC_HTTP, NULL },
    { 302, "Found", STATUS_SRC_HTTP, NULL },
    { 303, "See Other", STATUS_SRC_HTTP, NULL },
    { 304, "Not Modified", STATUS_SRC_HTTP, NULL },
    { 305, "Use Proxy", STATUS_SRC_HTTP, NULL },
    { 306, NULL, STATUS_SRC_OBSOLETE, NULL },                     /* (Unused), reserved */
    { 307, "Temporary Redirect", STATUS_SRC_HTTP, NULL },
    { 308, "Permanent Redirect", STATUS_SRC_HTTP, NULL },
    { 400, "Bad Request", STATUS_SRC_HTTP, NULL },
    { 401, "Unauthorized", STATUS_SRC_HTTP, NULL },
    { 402, "Payment Required", STATUS_SRC_HTTP, NULL },
    { 403, "Forbidden", STATUS_SRC_HTTP, NULL },
    { 404, "Not Found", STATUS_SRC_HTTP, NULL },
    { 405, "Method Not Allowed", STATUS_SRC_HTTP, NULL },
    { 406, "Not Acceptable", STATUS_SRC_HTTP, NULL },
    { 407, "Proxy Authentication Required", STATUS_SRC_HTTP, NULL },
    { 408, "Request Timeout", STATUS_SRC_HTTP, NULL },
    { 409, "Conflict", STATUS_SRC_HTTP, NULL },
    { 410, "Gone", STATUS_SRC_HTTP, NULL },
    { 411, "Length Required", STATUS_SRC_HTTP, NULL },
    { 412, "Precondition Failed", STATUS_SRC_HTTP, NULL },
    { 413, "Content Too Large", STATUS_SRC_HTTP, "RFC 9110" },   /* RFC 9110 name, not Payload */
    { 414, "URI Too Long", STATUS_SRC_HTTP, "RFC 9110" },
    { 415, "Unsupported Media Type", STATUS_SRC_HTTP, NULL },
    { 416, "Range Not Satisfiable", STATUS_SRC_HTTP, "RFC 9110" },
    { 417, "Expectation Failed", STATUS_SRC_HTTP, NULL },
    { 418, "I'm a teapot", STATUS_SRC_RFC_OTHER, NULL },          /* ASCII apostrophe */
    { 421, "Misdirected Request", STATUS_SRC_HTTP, NULL },
    { 422, "Unprocessable Content", STATUS_SRC_HTTP, "RFC 9110" }, /* not "Entity" any more */
    { 423, "Locked", STATUS_SRC_WEBDAV, NULL },
    { 424, "Failed Dependency", STATUS_SRC_WEBDAV, NULL },
    { 425, "Too Early", STATUS_SRC_RFC_OTHER, "RFC 8470" },       /* not Unordered Collection */
    { 426, "Upgrade Required", STATUS_SRC_HTTP, NULL },
    { 428, "Precondition Required", STATUS_SRC_RFC_OTHER, "RFC 6585" },
    { 429, "Too Many Requests", STATUS_SRC_RFC_OTHER, "RFC 6585" },
    { 431, "Request Header Fields Too Large", STATUS_SRC_RFC_OTHER, "RFC 6585" },
    { 451, "Unavailable For Legal Reasons", STATUS_SRC_RFC_OTHER, "RFC 7725" }, /* not IIS */
    { 500, "Internal Server Error", STATUS_SRC_HTTP, NULL },
    { 501, "Not Implemented", STATUS_SRC_HTTP, NULL },
    { 502, "Bad Gateway", STATUS_SRC_HTTP, NULL },
    { 503, "Service Unavailable", STATUS_SRC_HTTP, NULL },
    { 504, "Gateway Timeout", STATUS_SRC_HTTP, NULL },
    { 505, "HTTP Version Not Supported", STATUS_SRC_HTTP, NULL },
    { 506, "Variant Also Negotiates", STATUS_SRC_RFC_OTHER, NULL },
    { 507, "Insufficient Storage", STATUS_SRC_WEBDAV, NULL },
    { 508, "Loop Detected", STATUS_SRC_WEBDAV, NULL },
    { 510, "Not Extended", STATUS_SRC_RFC_OTHER, NULL },
    { 511, "Network Authentication Required", STATUS_SRC_RFC_OTHER, NULL },

    /* obsolete Warning-header codes a simulator may still send as a status */
    { 110, "Response is Stale", STATUS_SRC_OBSOLETE, NULL },
    { 111, "Revalidation Failed", STATUS_SRC_OBSOLETE, NULL },
    { 112, "Disconnected Operation", STATUS_SRC_OBSOLETE, NULL },
    { 113, "Heuristic Expiration", STATUS_SRC_OBSOLETE, NULL },
    { 199, "Miscellaneous Warning", STATUS_SRC_OBSOLETE, NULL },
    { 214, "Transformation Applied", STATUS_SRC_OBSOLETE, NULL },
    { 299, "Miscellaneous Persistent Warning", STATUS_SRC_OBSOLETE, NULL },

    /* vendor and unofficial codes; where a number has two meanings the primary is fixed here */
    { 218, "This is fine", STATUS_SRC_UNOFFICIAL, "Apache HTTP Server" },
    { 419, "Page Expired", STATUS_SRC_VENDOR, "Laravel" },
    { 420, "Enhance Your Calm", STATUS_SRC_VENDOR, "Twitter" },  /* not Spring's Method Failure */
    { 430, NULL, STATUS_SRC_VENDOR, "Shopify" },
    { 440, "Login Time-out", STATUS_SRC_VENDOR, "IIS" },
    { 444, "No Response", STATUS_SRC_VENDOR, "nginx" },
    { 449, "Retry With", STATUS_SRC_VENDOR, "IIS" },
    { 450, "Blocked by Windows Parental Controls", STATUS_SRC_VENDOR, NULL },
    { 456, "Unrecoverable Error", STATUS_SRC_VENDOR, NULL },     /* Microsoft WebDAV */
    { 460, NULL, STATUS_SRC_VENDOR, "AWS ELB" },                 /* no phrase in AWS docs */
    { 463, NULL, STATUS_SRC_VENDOR, "AWS ELB" },
    { 464, NULL, STATUS_SRC_VENDOR, "AWS ELB" },
    { 494, NULL, STATUS_SRC_VENDOR, "nginx" },
    { 495, "SSL Certificate Error", STATUS_SRC_VENDOR, "nginx" },
    { 496, "SSL Certificate Required", STATUS_SRC_VENDOR, "nginx" },
    { 497, "HTTP Request Sent to HTTPS Port", STATUS_SRC_VENDOR, "nginx" },
    { 498, "Invalid Token", STATUS_SRC_VENDOR, "Esri" },
    { 499, "Client Closed Request", STATUS_SRC_VENDOR, "nginx" }, /* not Esri Token Required */
    { 509, "Bandwidth Limit Exceeded", STATUS_SRC_VENDOR, "Apache Web Server/cPanel" },
    { 520, "Web Server Returned an Unknown Error", STATUS_SRC_VENDOR, "Cloudflare" },
    { 521, "Web Server Is Down", STATUS_SRC_VENDOR, "Cloudflare" },
    { 522, "Connection Timed Out", STATUS_SRC_VENDOR, "Cloudflare" },
    { 523, "Origin Is Unreachable", STATUS_SRC_VENDOR, "Cloudflare" },
    { 524, "A Timeout Occurred", STATUS_SRC_VENDOR, "Cloudflare" },
    { 525, "SSL Handshake Failed", STATUS_SRC_VENDOR, "Cloudflare" },
    { 526, "Invalid SSL Certificate", STATUS_SRC_VENDOR, "Cloudflare" },
    { 527, "Railgun Error", STATUS_SRC_VENDOR, "Cloudflare" },
    { 529, "Site is overloaded", STATUS_SRC_VENDOR, NULL },
    { 530, NULL, STATUS_SRC_VENDOR, NULL },                      /* Pantheon vs Cloudflare */
    { 561, "Unauthorized", STATUS_SRC_VENDOR, "AWS ELB" },
    { 598, "Network Read Timeout Error", STATUS_SRC_UNOFFICIAL, "informal proxy convention" },
    { 599, "Network Connect Timeout Error", STATUS_SRC_UNOFFICIAL, "informal proxy convention" },
};

/* Meanings Portico does not send: each must be listed beside the wire one, with its source. */
static const struct {
    int code;
    const char *phrase;
    enum status_source source;
    const char *origin;
} others[] = {
    { 302, "Moved Temporarily", STATUS_SRC_OBSOLETE, "RFC 1945" },       /* HTTP/1.0 name */
    { 413, "Payload Too Large", STATUS_SRC_OBSOLETE, "RFC 7231" },       /* 2014-2022 name */
    { 413, "Request Entity Too Large", STATUS_SRC_OBSOLETE, "RFC 2616" },
    { 414, "Request-URI Too Long", STATUS_SRC_OBSOLETE, "RFC 2616" },
    { 416, "Requested Range Not Satisfiable", STATUS_SRC_OBSOLETE, "RFC 2616" },
    { 420, "Method Failure", STATUS_SRC_VENDOR, "Spring Framework" },    /* not Twitter's */
    { 422, "Unprocessable Entity", STATUS_SRC_WEBDAV, "WebDAV RFC 4918" },
    { 425, "Unordered Collection", STATUS_SRC_OBSOLETE, "WebDAV draft" }, /* never an RFC */
    { 451, "Redirect", STATUS_SRC_VENDOR, "IIS" },                        /* Exchange ActiveSync */
    { 499, "Token Required", STATUS_SRC_VENDOR, "Esri" },                 /* not nginx's */
    { 530, "1xxx Error", STATUS_SRC_VENDOR, "Cloudflare" },               /* not Pantheon's */
};

/* What the notes must say where the phrase alone would mislead. */
static const struct {
    int code;
    const char *needle;
} notes[] = {
    { 102, "deprecated" },                      /* dropped from the spec ... */
    { 102, "multiple" },                        /* ... several may precede the final response */
    { 103, "Link" },                            /* what Early Hints carries */
    { 306, "Unused" },                          /* registry status of 306 */
    { 418, "(Unused)" },                        /* RFC 9110 reserves it */
    { 110, "Warning" },                         /* Warning-header codes, not statuses */
    { 111, "Warning" },
    { 112, "Warning" },
    { 113, "Warning" },
    { 199, "Warning" },
    { 214, "Warning" },
    { 299, "Warning" },
};

/* Lines of the reference text that start with a code but name no meaning of it. */
static const struct {
    int code;
    const char *phrase;
} not_meanings[] = {
    { 102, "status code example" },             /* a heading of an example section */
    { 201, "Webpage Created" },                 /* the Russian article's examples of free-form */
    { 403, "Access allowed only for registered users" }, /* phrases a server may send */
    { 404, "error on Wikimedia" },              /* an image caption */
    { 414, "Request-URL Too Long" },            /* a misspelt heading of Request-URI Too Long */
};

/* The constants other modules use, with the values the wire needs. */
static const struct {
    enum http_status constant;
    int code;
} named[] = {
    { HTTP_CONTINUE, 100 },
    { HTTP_SWITCHING_PROTOCOLS, 101 },
    { HTTP_PROCESSING, 102 },
    { HTTP_EARLY_HINTS, 103 },
    { HTTP_OK, 200 },
    { HTTP_BAD_REQUEST, 400 },
    { HTTP_NOT_FOUND, 404 },
    { HTTP_METHOD_NOT_ALLOWED, 405 },
    { HTTP_REQUEST_TIMEOUT, 408 },
    { HTTP_CONTENT_TOO_LARGE, 413 },           /* RFC 9110 phrase, not Payload Too Large */
    { HTTP_URI_TOO_LONG, 414 },
    { HTTP_EXPECTATION_FAILED, 417 },
    { HTTP_I_M_A_TEAPOT, 418 },                /* apostrophe becomes '_' */
    { HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, 431 }, /* the IANA code keeps the plain name ... */
    { HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE_430, 430 }, /* ... Shopify's gets its code */
    { HTTP_CLIENT_CLOSED_REQUEST, 499 },
    { HTTP_INTERNAL_SERVER_ERROR, 500 },
    { HTTP_NOT_IMPLEMENTED, 501 },
    { HTTP_BAD_GATEWAY, 502 },
    { HTTP_SERVICE_UNAVAILABLE, 503 },
    { HTTP_GATEWAY_TIMEOUT, 504 },
    { HTTP_HTTP_VERSION_NOT_SUPPORTED, 505 },
    { HTTP_LOOP_DETECTED, 508 },
    { HTTP_UNAUTHORIZED, 401 },
    { HTTP_UNAUTHORIZED_561, 561 },            /* AWS ELB reuses 401's phrase */
};

/* Unregistered codes fall back to their class; 6xx-9xx and out-of-range codes share one name. */
static const struct {
    int code;
    const char *phrase;
} fallback[] = {
    { 150, "Unknown Informational" },
    { 198, "Unknown Informational" },          /* next to the registered 199 */
    { 250, "Unknown Success" },
    { 209, "Unknown Success" },                /* next to the registered 208 */
    { 350, "Unknown Redirection" },
    { 309, "Unknown Redirection" },
    { 427, "Unknown Client Error" },           /* a hole between 426 and 428 */
    { 490, "Unknown Client Error" },
    { 528, "Unknown Server Error" },           /* a hole in the Cloudflare range */
    { 550, "Unknown Server Error" },
    { 600, "Unknown Status" },
    { 777, "Unknown Status" },
    { 999, "Unknown Status" },
    { 0, "Unknown Status" },                   /* out of range must still not be NULL */
    { 99, "Unknown Status" },
    { 1000, "Unknown Status" },
    { -1, "Unknown Status" },
    { INT_MIN, "Unknown Status" },
    { INT_MAX, "Unknown Status" },
};

/* Printable ASCII only: phrases go on the wire, notes and origins go to terminals. */
static int is_printable_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    }
    return 1;
}

static void test_known_codes_present(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(known); i++) {
        const struct known_row *r = &known[i];
        const struct status_info *si = status_lookup(r->code);

        if (si == NULL)
            fail_msg("code %d is not registered", r->code);
        if (si->code != r->code)
            fail_msg("lookup(%d) returned row %d", r->code, si->code);
        if (r->phrase != NULL && strcmp(si->phrase, r->phrase) != 0)
            fail_msg("code %d: phrase \"%s\", want \"%s\"", r->code, si->phrase, r->phrase);
        if (si->source != r->source)
            fail_msg("code %d: source %s, want %s", r->code, status_source_name(si->source),
                     status_source_name(r->source));
        if (r->origin != NULL && strcmp(si->origin, r->origin) != 0)
            fail_msg("code %d: origin \"%s\", want \"%s\"", r->code, si->origin, r->origin);
        if (status_phrase(r->code) != si->phrase)
            fail_msg("code %d: status_phrase differs from the registry phrase", r->code);
    }
}

static void test_other_meanings(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(others); i++) {
        const struct status_info *m;
        size_t n = status_meanings(others[i].code, &m);
        size_t j;

        for (j = 0; j < n && strcmp(m[j].phrase, others[i].phrase) != 0; j++)
            ;
        if (j == n)
            fail_msg("code %d: no meaning \"%s\"", others[i].code, others[i].phrase);
        assert_int_equal(m[j].use, STATUS_USE_OTHER);
        assert_int_equal(m[j].source, others[i].source);
        assert_string_equal(m[j].origin, others[i].origin);
        assert_null(m[j].name);                 /* only wire meanings have constants */
    }
}

static void test_notes(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(notes); i++) {
        const struct status_info *si = status_lookup(notes[i].code);

        if (si == NULL)
            fail_msg("code %d is not registered", notes[i].code);
        if (strstr(si->note, notes[i].needle) == NULL)
            fail_msg("code %d: note \"%s\" does not mention \"%s\"", notes[i].code, si->note,
                     notes[i].needle);
    }
}

static void test_table_sorted_unique(void **state)
{
    size_t n = status_count();
    int prev = 0;

    (void)state;
    assert_true(n >= ARRAY_LEN(known));
    for (size_t i = 0; i < n; i++) {
        const struct status_info *si = status_at(i);

        assert_non_null(si);
        if (si->code <= prev)
            fail_msg("entry %zu: code %d after %d (unsorted or duplicate)", i, si->code, prev);
        prev = si->code;
    }
    assert_null(status_at(n));                 /* one past the end */
    assert_null(status_at((size_t)-1));
}

/* Every meaning, wire or not: phrases may go on the wire (a fault rule's reason, a simulator),
 * notes and origins go to terminals and JSON. */
static void test_strings_wire_safe(void **state)
{
    (void)state;
    for (size_t i = 0; i < status_meaning_count(); i++) {
        const struct status_info *si = status_meaning_at(i);
        size_t len;

        assert_non_null(si->phrase);
        assert_non_null(si->origin);
        assert_non_null(si->note);
        len = strlen(si->phrase);
        /* reason-phrase = 1*( HTAB / SP / VCHAR ); no tabs either, and no CR/LF ever */
        if (len == 0 || !is_printable_ascii(si->phrase))
            fail_msg("code %d: phrase \"%s\" is empty or not printable ASCII", si->code,
                     si->phrase);
        if (si->phrase[0] == ' ' || si->phrase[len - 1] == ' ')
            fail_msg("code %d: phrase \"%s\" has edge spaces", si->code, si->phrase);
        if (si->origin[0] == '\0' || !is_printable_ascii(si->origin))
            fail_msg("code %d: origin is empty or not printable ASCII", si->code);
        if (si->note[0] == '\0' || !is_printable_ascii(si->note))
            fail_msg("code %d: note is empty or not printable ASCII", si->code);
        if (si->code < 100 || si->code > 999)
            fail_msg("meaning %zu: code %d outside 100-999", i, si->code);
        if ((unsigned)si->source > STATUS_SRC_OBSOLETE)
            fail_msg("code %d: source %d out of range", si->code, (int)si->source);
    }
    assert_null(status_meaning_at(status_meaning_count())); /* one past the end */
}

/* Meanings ascend by code; each code has exactly one wire meaning, first, identical to what
 * status_lookup gives; status_meanings returns exactly that run. */
static void test_one_wire_meaning_per_code(void **state)
{
    size_t i = 0;
    size_t codes = 0;

    (void)state;
    while (i < status_meaning_count()) {
        const struct status_info *run = status_meaning_at(i);
        const struct status_info *wire = status_lookup(run->code);
        const struct status_info *first;
        size_t n = 0;
        size_t nwire = 0;

        if (i > 0 && status_meaning_at(i - 1)->code >= run->code)
            fail_msg("meaning %zu: code %d after %d (unsorted or split)", i, run->code,
                     status_meaning_at(i - 1)->code);
        for (; i + n < status_meaning_count() && status_meaning_at(i + n)->code == run->code; n++)
            nwire += status_meaning_at(i + n)->use == STATUS_USE_WIRE;
        if (nwire != 1 || run->use != STATUS_USE_WIRE)
            fail_msg("code %d: %zu wire meanings, the first is %s", run->code, nwire,
                     run->use == STATUS_USE_WIRE ? "wire" : "not wire");
        assert_non_null(wire);
        assert_int_equal(wire->use, STATUS_USE_WIRE);
        assert_string_equal(wire->phrase, run->phrase);
        assert_string_equal(wire->origin, run->origin);
        assert_string_equal(wire->name, run->name);
        assert_int_equal(wire->source, run->source);
        assert_int_equal(status_meanings(run->code, &first), n);
        assert_ptr_equal(first, run);
        codes++;
        i += n;
    }
    assert_int_equal(codes, status_count());
    assert_true(status_meaning_count() > status_count()); /* some code has several meanings */
    for (size_t f = 0; f < ARRAY_LEN(fallback); f++) {
        const struct status_info *first = status_lookup(200);

        assert_int_equal(status_meanings(fallback[f].code, &first), 0);
        assert_null(first);
    }
}

/* status_at and status_count describe exactly the codes status_lookup knows, same pointers. */
static void test_at_count_match_lookup(void **state)
{
    size_t registered = 0;

    (void)state;
    for (int c = -10; c <= 1100; c++) {
        const struct status_info *si = status_lookup(c);

        if (si == NULL)
            continue;
        if (si->code != c)
            fail_msg("lookup(%d) returned row %d", c, si->code);
        registered++;
    }
    assert_int_equal(registered, status_count());
    for (size_t i = 0; i < status_count(); i++)
        assert_ptr_equal(status_lookup(status_at(i)->code), status_at(i));
    assert_null(status_lookup(INT_MIN));
    assert_null(status_lookup(INT_MAX));
}

static void test_unregistered_fallback(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(fallback); i++) {
        const char *p = status_phrase(fallback[i].code);

        if (status_lookup(fallback[i].code) != NULL)
            fail_msg("code %d is registered; pick another hole", fallback[i].code);
        if (p == NULL || strcmp(p, fallback[i].phrase) != 0)
            fail_msg("code %d: phrase \"%s\", want \"%s\"", fallback[i].code,
                     p != NULL ? p : "(null)", fallback[i].phrase);
    }
}

/* Never NULL, never empty, always wire-safe, for every int a parser could hand over. */
static void test_phrase_total(void **state)
{
    (void)state;
    for (int c = -10; c <= 1100; c++) {
        const char *p = status_phrase(c);

        if (p == NULL || p[0] == '\0' || !is_printable_ascii(p))
            fail_msg("code %d: bad phrase", c);
    }
}

#define REFERENCE "tests/data/status-codes.txt"

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads one line of the reference. A line names a code when, after blanks, a bullet and a
 * bracketed edit link, it starts with three digits and a space or its end ("Error NNN ..."
 * names one without a phrase). The phrase is the text after the code up to a parenthesis, a
 * bracket or a non-ASCII character (the Russian glosses), a leading parenthetical skipped
 * ("598 (Informal convention) Network read timeout error"), U+2019 read as an apostrophe, and
 * trailing blanks and dots dropped. Returns 1 with *code and phrase set, else 0. */
static int reference_line(const char *line, int *code, char *phrase, size_t cap)
{
    const char *p = skip_blanks(line);
    size_t n = 0;

    phrase[0] = '\0';
    if (strncmp(p, "\xe2\x80\xa2", 3) == 0)    /* U+2022 bullet */
        p = skip_blanks(p + 3);
    if (*p == '[' && strchr(p, ']') != NULL)
        p = skip_blanks(strchr(p, ']') + 1);
    if (strncmp(p, "Error ", 6) == 0 && is_digit((unsigned char)p[6]) &&
        is_digit((unsigned char)p[7]) && is_digit((unsigned char)p[8]) && p[9] == ' ') {
        *code = atoi(p + 6);
        return 1;
    }
    if (!is_digit((unsigned char)p[0]) || !is_digit((unsigned char)p[1]) ||
        !is_digit((unsigned char)p[2]) || (p[3] != ' ' && p[3] != '\0'))
        return 0;
    *code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    p = skip_blanks(p + 3);
    if (*p == '(')
        p = strchr(p, ')') != NULL ? skip_blanks(strchr(p, ')') + 1) : "";
    while (*p != '\0' && n + 1 < cap) {
        if (strncmp(p, "\xe2\x80\x99", 3) == 0) { /* U+2019 right single quotation mark */
            phrase[n++] = '\'';
            p += 3;
            continue;
        }
        if ((unsigned char)*p >= 0x80 || *p == '(' || *p == '[' || *p == '\n')
            break;
        phrase[n++] = *p++;
    }
    while (n > 0 && (phrase[n - 1] == ' ' || phrase[n - 1] == '.'))
        n--;
    phrase[n] = '\0';
    return 1;
}

/* Every code of the reference text is registered, and every phrase it gives a code is one of
 * that code's meanings (case aside: the reference writes "Request header too large"). */
static void test_reference_covered(void **state)
{
    FILE *f = fopen(REFERENCE, "r");
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    unsigned seen_codes[1000] = { 0 };
    unsigned ncodes = 0;
    unsigned nphrases = 0;
    unsigned exceptions_used = 0;

    (void)state;
    if (f == NULL)
        fail_msg("%s not found: run the tests from the repository root", REFERENCE);
    while (getline(&line, &cap, f) != -1) {
        char phrase[256];
        int code;
        size_t j;
        const struct status_info *m;
        size_t n;

        lineno++;
        if (!reference_line(line, &code, phrase, sizeof(phrase)))
            continue;
        if (status_lookup(code) == NULL)
            fail_msg("%s:%u: code %d is not registered", REFERENCE, lineno, code);
        ncodes += seen_codes[code]++ == 0;
        if (phrase[0] == '\0')
            continue;
        for (j = 0; j < ARRAY_LEN(not_meanings); j++) {
            if (not_meanings[j].code == code && strcmp(not_meanings[j].phrase, phrase) == 0)
                break;
        }
        if (j < ARRAY_LEN(not_meanings)) {
            exceptions_used |= 1u << j;
            continue;
        }
        n = status_meanings(code, &m);
        for (j = 0; j < n && strcasecmp(m[j].phrase, phrase) != 0; j++)
            ;
        if (j == n)
            fail_msg("%s:%u: \"%d %s\" is no meaning of the registry", REFERENCE, lineno, code,
                     phrase);
        nphrases++;
    }
    free(line);
    fclose(f);
    /* the parser found the lists, not a handful of stray numbers */
    if (ncodes < 95 || nphrases < 200)
        fail_msg("only %u codes and %u phrases read from %s", ncodes, nphrases, REFERENCE);
    /* an exception that matches nothing any more must go */
    assert_int_equal(exceptions_used, (1u << ARRAY_LEN(not_meanings)) - 1);
}

static void test_named_constants(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(named); i++) {
        const struct status_info *si = status_lookup((int)named[i].constant);

        assert_int_equal(named[i].constant, named[i].code);
        assert_non_null(si);
    }
}

/* The rule of status.h: upper-cased phrase, each run of other characters one '_', none at the
 * ends. Writes it into buf; returns its length. */
static size_t derive_name(const char *phrase, char *buf, size_t cap)
{
    size_t n = 0;
    int gap = 0;

    for (const char *p = phrase; *p != '\0' && n + 1 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        int alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');

        if (!alnum) {
            gap = n > 0;
            continue;
        }
        if (gap && n + 2 < cap)
            buf[n++] = '_';
        gap = 0;
        buf[n++] = (char)(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
    }
    buf[n] = '\0';
    return n;
}

/* Every constant follows the naming rule; the _<code> suffix only where two codes share a
 * phrase, and then never on a code of the IANA registry (http, webdav, rfc). */
static void test_names_follow_rule(void **state)
{
    (void)state;
    for (size_t i = 0; i < status_count(); i++) {
        const struct status_info *si = status_at(i);
        char want[128];
        char suffixed[160];
        int shared = 0;

        derive_name(si->phrase, want, sizeof(want));
        for (size_t j = 0; j < status_count(); j++)
            shared |= j != i && strcmp(status_at(j)->phrase, si->phrase) == 0;
        snprintf(suffixed, sizeof(suffixed), "%s_%d", want, si->code);
        if (strcmp(si->name, want) == 0)
            continue;
        if (!shared || strcmp(si->name, suffixed) != 0)
            fail_msg("code %d: name HTTP_%s, the rule gives HTTP_%s", si->code, si->name, want);
        if (si->source <= STATUS_SRC_RFC_OTHER)
            fail_msg("code %d: an IANA code must keep the plain name HTTP_%s", si->code, want);
    }
}

static void test_source_names(void **state)
{
    static const struct {
        enum status_source s;
        const char *name;
    } rows[] = {
        { STATUS_SRC_HTTP, "http" },
        { STATUS_SRC_WEBDAV, "webdav" },
        { STATUS_SRC_RFC_OTHER, "rfc" },
        { STATUS_SRC_VENDOR, "vendor" },
        { STATUS_SRC_UNOFFICIAL, "unofficial" },
        { STATUS_SRC_OBSOLETE, "obsolete" },
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        assert_string_equal(status_source_name(rows[i].s), rows[i].name);
    /* a corrupt value must not index past the name table */
    assert_non_null(status_source_name((enum status_source)(STATUS_SRC_OBSOLETE + 1)));
    assert_non_null(status_source_name((enum status_source)-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_codes_present),
        cmocka_unit_test(test_other_meanings),
        cmocka_unit_test(test_notes),
        cmocka_unit_test(test_one_wire_meaning_per_code),
        cmocka_unit_test(test_reference_covered),
        cmocka_unit_test(test_table_sorted_unique),
        cmocka_unit_test(test_strings_wire_safe),
        cmocka_unit_test(test_at_count_match_lookup),
        cmocka_unit_test(test_unregistered_fallback),
        cmocka_unit_test(test_phrase_total),
        cmocka_unit_test(test_named_constants),
        cmocka_unit_test(test_names_follow_rule),
        cmocka_unit_test(test_source_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
