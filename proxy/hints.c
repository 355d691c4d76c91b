/*
 * hints.c — learned Early Hints (a bounded LRU keyed by host and path) and Link parsing.
 *
 * The cache is shared by the worker threads behind one mutex: it is touched once per GET on
 * routes that learn, for a copy of at most HINT_MAX_BYTES, so contention stays negligible next
 * to the socket work of the same request.
 */
#include "portico/hints.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portico/util.h"

struct hint_entry {
    struct hint_entry *hnext;    /* hash chain */
    struct hint_entry *prev;     /* LRU list, most recent first */
    struct hint_entry *next;
    uint64_t hash;
    size_t key_len;              /* host '\0' path */
    size_t links_len;
    char *key;                   /* owned */
    char *links;                 /* owned, '\n'-joined Link values */
};

struct hint_cache {
    pthread_mutex_t lock;
    size_t capacity;
    size_t size;
    size_t nbuckets;             /* grows with size, to max_buckets */
    size_t max_buckets;          /* two per entry of capacity, a power of two */
    struct hint_entry **buckets;
    struct hint_entry *head;     /* most recently used */
    struct hint_entry *tail;     /* evicted first */
};

static uint64_t fnv1a(const char *a, size_t alen, const char *b, size_t blen)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < alen; i++)
        h = (h ^ (unsigned char)a[i]) * 1099511628211ull;
    h = (h ^ 0) * 1099511628211ull;
    for (size_t i = 0; i < blen; i++)
        h = (h ^ (unsigned char)b[i]) * 1099511628211ull;
    return h;
}

struct hint_cache *hint_cache_new(size_t capacity)
{
    struct hint_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->capacity = capacity ? capacity : 1;
    c->nbuckets = c->max_buckets = 16;
    while (c->max_buckets < c->capacity * 2)
        c->max_buckets <<= 1;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void entry_free(struct hint_entry *e)
{
    free(e->key);
    free(e->links);
    free(e);
}

void hint_cache_free(struct hint_cache *c)
{
    if (!c)
        return;
    for (struct hint_entry *e = c->head, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void lru_unlink(struct hint_cache *c, struct hint_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct hint_cache *c, struct hint_entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static struct hint_entry **find(struct hint_cache *c, uint64_t h, const char *host,
                                size_t host_len, const char *path, size_t path_len)
{
    struct hint_entry **pp = &c->buckets[h & (c->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        struct hint_entry *e = *pp;
        if (e->hash == h && e->key_len == host_len + 1 + path_len &&
            memcmp(e->key, host, host_len) == 0 && e->key[host_len] == '\0' &&
            memcmp(e->key + host_len + 1, path, path_len) == 0)
            return pp;
    }
    return pp;
}

static void remove_entry(struct hint_cache *c, struct hint_entry **pp)
{
    struct hint_entry *e = *pp;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->size--;
    entry_free(e);
}

/* Doubles the table once there are more entries than buckets, up to max_buckets. The table is
 * sized by what the cache holds, not by what it may: `early_hints_cache = 1000000` reserved
 * 16 MB per route at start (16 GB for 1,024 routes, refused where overcommit is strict). */
static void grow(struct hint_cache *c)
{
    if (c->size <= c->nbuckets || c->nbuckets >= c->max_buckets)
        return;
    size_t n = c->nbuckets * 2;
    struct hint_entry **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* out of memory: longer chains, the same answers */
    for (struct hint_entry *e = c->head; e; e = e->next) {
        e->hnext = b[e->hash & (n - 1)];
        b[e->hash & (n - 1)] = e;
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

size_t hint_cache_get(struct hint_cache *c, const char *host, size_t host_len, const char *path,
                      size_t path_len, char *out, size_t outsz)
{
    size_t n = 0;
    uint64_t h = fnv1a(host, host_len, path, path_len);
    pthread_mutex_lock(&c->lock);
    struct hint_entry *e = *find(c, h, host, host_len, path, path_len);
    if (e && e->links_len < outsz) {
        lru_unlink(c, e);
        lru_push(c, e);
        memcpy(out, e->links, e->links_len);
        n = e->links_len;
    }
    pthread_mutex_unlock(&c->lock);
    if (outsz)
        out[n] = '\0';
    return n;
}

void hint_cache_put(struct hint_cache *c, const char *host, size_t host_len, const char *path,
                    size_t path_len, const char *links, size_t links_len)
{
    uint64_t h = fnv1a(host, host_len, path, path_len);
    if (links_len > HINT_MAX_BYTES)
        return;
    pthread_mutex_lock(&c->lock);
    struct hint_entry **pp = find(c, h, host, host_len, path, path_len);
    if (*pp) {
        struct hint_entry *e = *pp;
        if (links_len == 0) {
            remove_entry(c, pp);
        } else if (e->links_len != links_len || memcmp(e->links, links, links_len) != 0) {
            char *copy = malloc(links_len);
            if (copy) {
                memcpy(copy, links, links_len);
                free(e->links);
                e->links = copy;
                e->links_len = links_len;
            }
            lru_unlink(c, e);
            lru_push(c, e);
        } else {
            lru_unlink(c, e);
            lru_push(c, e);
        }
        goto out;
    }
    if (links_len == 0)
        goto out;
    struct hint_entry *e = calloc(1, sizeof(*e));
    if (!e)
        goto out;
    e->key_len = host_len + 1 + path_len;
    e->key = malloc(e->key_len);
    e->links = malloc(links_len);
    if (!e->key || !e->links) {
        entry_free(e);
        goto out;
    }
    memcpy(e->key, host, host_len);
    e->key[host_len] = '\0';
    memcpy(e->key + host_len + 1, path, path_len);
    memcpy(e->links, links, links_len);
    e->links_len = links_len;
    e->hash = h;
    e->hnext = *pp;
    *pp = e;
    lru_push(c, e);
    c->size++;
    if (c->size > c->capacity) {
        struct hint_entry *old = c->tail;
        struct hint_entry **op = &c->buckets[old->hash & (c->nbuckets - 1)];
        while (*op != old)
            op = &(*op)->hnext;
        remove_entry(c, op);
    }
    grow(c);
out:
    pthread_mutex_unlock(&c->lock);
}

size_t hint_cache_size(struct hint_cache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->size;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- link-values (RFC 8288 3) ----
 *
 *   link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
 *   link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
 *
 * with two allowances browsers make too, neither open to two readings: an empty parameter
 * (param_next) and the UTF-8 of an IRI in the URI (is_uri_char). A link-value that is not of
 * this form is malformed and skipped whole: learning anything of it kept an entry no 103 ever
 * replayed (hint_filter skips it), and a guess at what a stray '>' or a URI without brackets
 * meant is a guess a browser may not share. */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static size_t skip_ows(const char *v, size_t len, size_t i)
{
    while (i < len && is_ows(v[i]))
        i++;
    return i;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* The bytes a URI-reference is made of (RFC 3986 2.2, 2.3), '%' aside: unreserved and
 * reserved characters, and the non-ASCII bytes of an IRI's UTF-8 (RFC 3987 ucschar: origins
 * send `</caf\xc3\xa9.woff2>`, browsers act on it, percent-encoding it, and no byte of it can
 * be taken for a delimiter). No blank, control, '<', '>', '"', '\', '^', '`', '{', '|', '}'. */
static bool is_uri_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (unsigned char)c >= 0x80 ||
           (c != '\0' && strchr("-._~:/?#[]@!$&'()*+,;=", c) != NULL);
}

/* A byte of a quoted-string's text, or the one after its backslash (RFC 9110 5.6.4): HTAB, SP,
 * VCHAR and obs-text. */
static bool is_quoted_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

/* The offset of the '>' that ends the "<" URI-Reference ">" at the start of v, 0 when there is
 * none. */
static size_t target_end(const char *v, size_t len)
{
    if (len < 2 || v[0] != '<')
        return 0;
    size_t i = 1;
    while (i < len && v[i] != '>') {
        if (v[i] == '%') { /* pct-encoded */
            if (len - i < 3 || !is_hex(v[i + 1]) || !is_hex(v[i + 2]))
                return 0;
            i += 3;
        } else if (is_uri_char(v[i])) {
            i++;
        } else {
            return 0;
        }
    }
    return i < len ? i : 0;
}

/* One link-param: its name and value (a quoted-string's without the quotes, escapes kept;
 * value_len 0 and quoted false when it has none). */
struct link_param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

enum link_step { LINK_END, LINK_PARAM, LINK_MALFORMED };

/* The next `OWS ";" OWS [ link-param ]` of v from *pos (just past the '>' at first). A ';'
 * with no parameter is an empty one, name_len 0, as HTTP's parameters allow (RFC 9110 5.6.6:
 * `*( OWS ";" OWS [ parameter ] )`): origins end links with "; as=style;" and browsers take
 * them (Chromium skips empty parameters), so a 103 of such a link was dropped whole. */
static enum link_step param_next(const char *v, size_t len, size_t *pos, struct link_param *p)
{
    size_t i = skip_ows(v, len, *pos);
    if (i == len)
        return LINK_END;
    if (v[i] != ';')
        return LINK_MALFORMED;
    i = skip_ows(v, len, i + 1);
    if (i == len || v[i] == ';') {
        *p = (struct link_param){v + i, 0, NULL, 0};
        *pos = i;
        return LINK_PARAM;
    }
    size_t name = i;
    while (i < len && h1_is_tchar((unsigned char)v[i]))
        i++;
    if (i == name)
        return LINK_MALFORMED; /* a name that is not a token */
    *p = (struct link_param){v + name, i - name, NULL, 0};
    size_t eq = skip_ows(v, len, i); /* BWS */
    if (eq < len && v[eq] == '=') {
        i = skip_ows(v, len, eq + 1);
        size_t start = i;
        if (i < len && v[i] == '"') {
            for (start = ++i; i < len && v[i] != '"'; i++) {
                if (v[i] == '\\' && ++i == len)
                    return LINK_MALFORMED;
                if (!is_quoted_char(v[i]))
                    return LINK_MALFORMED;
            }
            if (i == len)
                return LINK_MALFORMED; /* unterminated */
            p->value = v + start;
            p->value_len = i++ - start;
        } else {
            while (i < len && h1_is_tchar((unsigned char)v[i]))
                i++;
            if (i == start)
                return LINK_MALFORMED; /* "=" with no value */
            p->value = v + start;
            p->value_len = i - start;
        }
    }
    *pos = i;
    return LINK_PARAM;
}

/* Is v one well-formed link-value? *params: where its parameters start (just past '>'). */
static bool link_valid(const char *v, size_t len, size_t *params)
{
    size_t end = target_end(v, len);
    if (!end)
        return false;
    size_t pos = end + 1;
    struct link_param p;
    enum link_step step;
    while ((step = param_next(v, len, &pos, &p)) == LINK_PARAM)
        ;
    *params = end + 1;
    return step == LINK_END;
}

bool link_uri(const char *elem, size_t len, const char **uri, size_t *uri_len)
{
    size_t params;
    if (!link_valid(elem, len, &params))
        return false;
    *uri = elem + 1;
    *uri_len = params - 2;
    return true;
}

/* Does a relation type of rel="... preload ..." or rel=preconnect make a hint? rel may hold
 * several space-separated relation types (RFC 8288 3.3); only the first rel of a link-value
 * counts ("occurrences after the first MUST be ignored by parsers"). A relation type written
 * with quoted-pair escapes is not matched: a hint missed, never one made up. */
bool link_is_hint(const char *value, size_t len)
{
    size_t pos;
    if (!link_valid(value, len, &pos))
        return false;
    struct link_param p;
    while (param_next(value, len, &pos, &p) == LINK_PARAM) {
        if (!span_ieq(p.name, p.name_len, "rel"))
            continue;
        for (size_t j = 0; j < p.value_len;) {
            while (j < p.value_len && is_ows(p.value[j]))
                j++;
            size_t t = j;
            while (j < p.value_len && !is_ows(p.value[j]))
                j++;
            if (span_ieq(p.value + t, j - t, "preload") ||
                span_ieq(p.value + t, j - t, "preconnect"))
                return true;
        }
        return false;
    }
    return false;
}

/* ---- hints of one exchange ---- */

/* The slot of a URI's fingerprint h in s: where it is, or the free one where it would go (the
 * table is never more than half full). Two URIs with the same fingerprint would count as one
 * link: at 64 bits, a chance an origin can only take against its own hints. */
static size_t hint_slot(const struct hint_set *s, uint64_t h)
{
    size_t i = (size_t)h & (HINT_SET_SLOTS - 1);
    while (s->slots[i] && s->slots[i] != h)
        i = (i + 1) & (HINT_SET_SLOTS - 1);
    return i;
}

static uint64_t uri_print(const char *uri, size_t len)
{
    uint64_t h = fnv1a(uri, len, NULL, 0);
    return h ? h : 1; /* 0 marks a free slot */
}

size_t hint_filter(struct hint_set *s, const char *value, size_t len, char *out, size_t size)
{
    size_t at = 0;
    size_t pos = 0;
    const char *el, *uri;
    size_t elen, ulen;
    while (h1_link_next(value, len, &pos, &el, &elen)) {
        if (!link_uri(el, elen, &uri, &ulen))
            continue;
        uint64_t h = uri_print(uri, ulen);
        size_t slot = hint_slot(s, h);
        if (s->slots[slot] == h)
            continue; /* hinted already */
        size_t sep = at ? 2 : 0;
        /* no room, or a link we could not remember (it would go again with the next 103): the
         * rest is not hinted */
        if (at + sep + elen > size || s->n >= HINT_SET_SLOTS / 2)
            break;
        s->slots[slot] = h;
        s->n++;
        memcpy(out + at, ", ", sep);
        memcpy(out + at + sep, el, elen);
        at += sep + elen;
    }
    return at;
}

size_t hint_collect(const struct h1_field *fields, size_t nfields, char *buf, size_t size)
{
    size_t n = 0;
    for (int i = h1_find(fields, nfields, H1_F_LINK, 0); i >= 0;
         i = h1_find(fields, nfields, H1_F_LINK, (size_t)i + 1)) {
        size_t pos = 0;
        const char *el;
        size_t elen;
        while (h1_link_next(fields[i].value, fields[i].value_len, &pos, &el, &elen)) {
            if (!link_is_hint(el, elen) || n + elen + 1 > size)
                continue;
            memcpy(buf + n, el, elen);
            n += elen;
            buf[n++] = '\n';
        }
    }
    return n ? n - 1 : 0; /* no trailing separator */
}
