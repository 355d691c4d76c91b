/*
 * hints.h — Early Hints helpers: the learned Early Hints cache (bounded LRU, shared by the
 * workers) and the rules for which Link fields make hints.
 */
#ifndef PORTICO_HINTS_H
#define PORTICO_HINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/http1.h"

#define HINT_MAX_BYTES 2048 /* Link values kept per learned entry, joined by '\n' */

struct hint_cache;

/* A cache of at most `capacity` (host, path) entries. NULL when out of memory. */
struct hint_cache *hint_cache_new(size_t capacity);

/* Frees the cache (NULL is fine). */
void hint_cache_free(struct hint_cache *c);

/* Copies the Link values learned for (host, path), joined by '\n', into out (NUL-terminated) and
 * marks the entry recently used. Returns their length, 0 when none. */
size_t hint_cache_get(struct hint_cache *c, const char *host, size_t host_len, const char *path,
                      size_t path_len, char *out, size_t outsz);

/* Stores the Link values (joined by '\n') for (host, path), replacing what was there and
 * evicting the least recently used entry when full. An empty value removes the entry. */
void hint_cache_put(struct hint_cache *c, const char *host, size_t host_len, const char *path,
                    size_t path_len, const char *links, size_t links_len);

/* Number of entries (for tests). */
size_t hint_cache_size(struct hint_cache *c);

/* True when a link-value (one element of a Link field) is well-formed (link_uri) and its rel
 * holds preload or preconnect, the only ones worth hinting (RFC 8297; other relations and every
 * other field are never replayed). */
bool link_is_hint(const char *value, size_t len);

#define HINT_SET_SLOTS 512 /* a hint_set holds at most half as many links */

/* The links hinted to a client in one exchange, so that none is sent twice: 64-bit fingerprints
 * of their URIs, open-addressed (0: a free slot). Zero-initialized before use. */
struct hint_set {
    uint64_t slots[HINT_SET_SLOTS];
    size_t n;
};

/* The link-values of one Link field value whose URI is not in s yet, ", "-joined into out (at
 * most size bytes), added to s; those past the room of out or of s are left out. Returns the
 * length; 0 when none is new. */
size_t hint_filter(struct hint_set *s, const char *value, size_t len, char *out, size_t size);

/* Collects the preload/preconnect link-values of a response's Link fields, '\n'-joined, into
 * buf (no trailing separator); malformed ones are skipped, the others of the field still taken.
 * Returns the length. */
size_t hint_collect(const struct h1_field *fields, size_t n, char *buf, size_t size);

/* The URI-reference between < and > of a link-value. false when the link-value is malformed:
 * anything but "<" URI-Reference ">" *( OWS ";" OWS [ link-param ] ) of RFC 8288 3 (an empty
 * parameter allowed, as RFC 9110 5.6.6 does), with the characters of RFC 3986 in the URI (and
 * non-ASCII bytes: an IRI's UTF-8) and a token or quoted-string for each parameter's value. */
bool link_uri(const char *elem, size_t len, const char **uri, size_t *uri_len);

#endif
