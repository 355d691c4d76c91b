/*
 * status.h — the HTTP status-code registry: every code Portico knows, with its reason phrase,
 * class and source (RFC 9110, IANA, WebDAV, vendor or unofficial convention), and a named
 * constant for each code. The rows live in status_list.h.
 */
#ifndef PORTICO_STATUS_H
#define PORTICO_STATUS_H

#include <stddef.h>

#include "portico/status_list.h"

/*
 * Named status codes, generated from the registry rows. Naming rule: HTTP_ + the phrase Portico
 * sends, upper-cased, every run of non-alphanumeric characters turned into one '_', none at the
 * ends ("I'm a teapot" → HTTP_I_M_A_TEAPOT, "HTTP Version Not Supported" →
 * HTTP_HTTP_VERSION_NOT_SUPPORTED). When two codes send the same phrase, the one in the IANA
 * registry keeps the plain name and the other gets its code appended
 * (HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE is 431, HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE_430 is
 * Shopify's 430). tests/unit/test_status.c checks every name against this rule.
 */
enum http_status {
#define STATUS_ENUM_ROW(code, name, phrase, source, origin, note) HTTP_##name = code,
    STATUS_LIST(STATUS_ENUM_ROW)
#undef STATUS_ENUM_ROW
};

enum status_source {
    STATUS_SRC_HTTP,       /* RFC 9110 / IANA registry */
    STATUS_SRC_WEBDAV,     /* WebDAV RFCs (2518, 4918, 5842) */
    STATUS_SRC_RFC_OTHER,  /* other RFCs in the IANA registry (8297, 6585, 7725, 2295 ...) */
    STATUS_SRC_VENDOR,     /* one vendor's extension (nginx, Cloudflare, IIS, AWS ...) */
    STATUS_SRC_UNOFFICIAL, /* informal conventions (598, 599, 218 ...) */
    STATUS_SRC_OBSOLETE,   /* former codes or Warning codes (306, 110-113, 199, 214, 299) */
};

struct status_info {
    int code;
    const char *name;       /* the constant's name without HTTP_ ("NOT_FOUND") */
    const char *phrase;     /* the reason phrase Portico sends for this code */
    enum status_source source;
    const char *origin;     /* who defines it: "RFC 9110", "nginx", "Cloudflare" ... */
    const char *note;       /* one line: what it means; other meanings of the same number */
};

/* The registry entry for code, or NULL when the code is not registered anywhere. */
const struct status_info *status_lookup(int code);

/* Reason phrase for any code 100-999: the registry's phrase, else the class name
 * ("Unknown Client Error" ...). Never NULL. */
const char *status_phrase(int code);

/* Number of registry entries, and entry i in ascending code order (for `portico codes`). */
size_t status_count(void);
const struct status_info *status_at(size_t i);

/* Short name of a source ("http", "webdav", "rfc", "vendor", "unofficial", "obsolete"). */
const char *status_source_name(enum status_source s);

#endif
