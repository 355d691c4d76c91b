/*
 * fuzz_return.c — libFuzzer target: a return route's Location (proxy/route_return.c,
 * route_return_location, through header_rules.c's hrule_expand).
 *
 * Input: a mode byte (bit 0: TLS; bits 1-3 pick a URL of the table; bit 4: the URL is the
 * input's third part instead, when the loader would take it), then the client's Host and
 * request-target split on 0xFF, hostile as they come (any byte; what a parser of tomorrow may
 * let by). Properties checked: the Location holds no byte <= 0x20 or >= 0x7f, never starts
 * with "//" or "/\" (a host of the client's choosing), starts with '/' when its URL does and
 * otherwise with the URL's scheme; the same input gives the same Location.
 *
 * $http_host and $host from the same Host through hrule_expand: $http_host is the Host byte for
 * byte; $host is nginx's name (header_rules.c put_host_name): a prefix of the Host, lowercase,
 * and for a Host the parsers take (h1_host_valid) the Host without a ":port" only, so no ':'
 * but within an IPv6 literal's brackets.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "portico/header_rules.h"
#include "portico/http1.h"
#include "portico/route_return.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

#define MODE_TLS 0x01
#define MODE_URL_SHIFT 1
#define MODE_OWN_URL 0x10
#define SPLIT 0xFF

static const char *const urls[8] = {
    "/$request_uri", "https://$host$request_uri", "$scheme://$host$request_uri",
    "${scheme}://${host}${request_uri}", "/new$request_uri", "/$host/$client_addr/$request_id",
    "http://$host/", "/$$/$request_uri",
};

/* What the loader takes for a redirect's URL (config_keys.c, check_return_url and
 * hrule_check_value): visible ASCII, a known start, not "//" or "/\", known variables. */
static bool url_ok(const char *u, size_t n)
{
    static const char *const starts[] = {"http://", "https://", "$scheme://", "${scheme}://",
                                         "/"};
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= ' ' || (unsigned char)u[i] >= 0x7f)
            return false;
    bool start = false;
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]) && !start; i++)
        start = n >= strlen(starts[i]) && memcmp(u, starts[i], strlen(starts[i])) == 0;
    if (!start || (n >= 2 && u[0] == '/' && (u[1] == '/' || u[1] == '\\')))
        return false;
    bool vars;
    char why[200];
    return hrule_check_value(u, n, true, &vars, why, sizeof(why)) == 0;
}

/* The next 0xFF-separated part of data[*pos..size). */
static const char *part(const uint8_t *data, size_t size, size_t *pos, size_t *len)
{
    const uint8_t *start = data + *pos;
    const uint8_t *end = *pos < size ? memchr(start, SPLIT, size - *pos) : NULL;
    *len = end ? (size_t)(end - start) : size - *pos;
    *pos += *len + (end != NULL);
    return (const char *)start;
}

/* The Location built from an exact-size copy of each part: its bytes, in a malloc'd copy. */
static char *location(const char *url, size_t url_len, const struct hrule_values *vals,
                      size_t *len)
{
    char *text = dup_exact(url, url_len);
    struct route_return a = {.status = 301, .text = text, .text_len = url_len, .vars = true};
    struct evbuffer *out = evbuffer_new();
    CHECK(out != NULL);
    int rc = route_return_location(&a, vals, out);
    CHECK(rc == 0 || rc == -2); /* -2: an absolute URL without its authority, not sent */
    *len = rc == 0 ? evbuffer_get_length(out) : 0;
    char *copy = malloc(*len + 1);
    CHECK(copy != NULL);
    CHECK(evbuffer_remove(out, copy, *len) == (int)*len);
    evbuffer_free(out);
    free(text);
    return copy;
}

struct collected {
    char buf[4096];
    size_t len;
};

static void collect(void *ctx, const char *s, size_t n, bool variable)
{
    struct collected *c = ctx;
    (void)variable;
    CHECK(c->len + n <= sizeof(c->buf));
    memcpy(c->buf + c->len, s, n);
    c->len += n;
}

/* $host and $http_host of the client's Host (vals->host, hostile bytes). */
static void check_host_vars(const struct hrule_values *vals)
{
    if (vals->host_len > 2048)
        return;
    struct collected http_host = {.len = 0}, host = {.len = 0};
    hrule_expand("$http_host", 10, vals, collect, &http_host);
    hrule_expand("${host}", 7, vals, collect, &host);
    CHECK(http_host.len == vals->host_len &&
          (!vals->host_len || memcmp(http_host.buf, vals->host, vals->host_len) == 0));
    CHECK(host.len <= vals->host_len);
    for (size_t i = 0; i < host.len; i++) {
        CHECK(!(host.buf[i] >= 'A' && host.buf[i] <= 'Z'));
        CHECK((unsigned char)host.buf[i] == tolower((unsigned char)vals->host[i]));
    }
    if (!vals->host_len || !h1_host_valid(vals->host, vals->host_len))
        return;
    bool literal = vals->host[0] == '[';
    const char *close = memchr(host.buf, ']', host.len);
    CHECK(!literal || (close != NULL && close == host.buf + host.len - 1)); /* the whole literal */
    CHECK(literal || memchr(host.buf, ':', host.len) == NULL);
    /* what is dropped is a port: ':' and digits, nothing else */
    CHECK(host.len == vals->host_len || vals->host[host.len] == ':');
    for (size_t i = host.len + 1; i < vals->host_len; i++)
        CHECK(vals->host[i] >= '0' && vals->host[i] <= '9');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t pos = 1, host_len, uri_len, own_len;
    const char *host = part(data, size, &pos, &host_len);
    const char *uri = part(data, size, &pos, &uri_len);
    const char *own = part(data, size, &pos, &own_len);
    const char *url = urls[(mode >> MODE_URL_SHIFT) & 7];
    size_t url_len = strlen(url);
    if ((mode & MODE_OWN_URL) && url_ok(own, own_len)) {
        url = own;
        url_len = own_len;
    }
    char *h = dup_exact(host, host_len), *u = dup_exact(uri, uri_len);
    struct hrule_values vals = {
        .client_addr = "::1", .request_id = "a33bc2bf00000000000001",
        .tls = (mode & MODE_TLS) != 0,
        .host = host_len ? h : NULL, .host_len = host_len,
        .request_uri = u, .request_uri_len = uri_len,
    };
    check_host_vars(&vals);
    size_t len, again_len;
    char *loc = location(url, url_len, &vals, &len);
    for (size_t i = 0; i < len; i++)
        CHECK((unsigned char)loc[i] > ' ' && (unsigned char)loc[i] < 0x7f);
    CHECK(!(len >= 2 && loc[0] == '/' && (loc[1] == '/' || loc[1] == '\\')));
    if (url[0] == '/')
        CHECK(len >= 1 && loc[0] == '/');
    else if (len) { /* 0: refused for want of its authority (route_return_location's -2) */
        size_t at = len >= 7 && memcmp(loc, "http://", 7) == 0     ? 7
                    : len >= 8 && memcmp(loc, "https://", 8) == 0 ? 8
                                                                   : 0;
        CHECK(at && len > at && !strchr("/\\?#", loc[at])); /* an authority, none of theirs */
    }
    char *again = location(url, url_len, &vals, &again_len);
    CHECK(again_len == len && memcmp(again, loc, len) == 0);
    free(again);
    free(loc);
    free(h);
    free(u);
    return 0;
}
