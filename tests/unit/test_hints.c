/*
 * test_hints.c — the learned Early Hints LRU (capacity, eviction order, recency, replace,
 * remove, many keys, threads) and Link parsing (h1_link_next, link_uri, link_is_hint).
 */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "portico/hints.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the cache ---- */

static void put(struct hint_cache *c, const char *host, const char *path, const char *links)
{
    hint_cache_put(c, host, strlen(host), path, strlen(path), links, strlen(links));
}

/* The links for (host, path), "" when none (static buffer: one call per expression). */
static const char *get(struct hint_cache *c, const char *host, const char *path)
{
    static char out[HINT_MAX_BYTES + 1];
    size_t n = hint_cache_get(c, host, strlen(host), path, strlen(path), out, sizeof(out));
    assert_int_equal(n, strlen(out));
    return out;
}

/* One operation per step, on a cache of capacity 3; key is the path under host "h", the value
 * written is "<key>-v" unless given. want: what a get returns ("" = absent). */
enum op { PUT, GET, DEL, SIZE };
static const struct {
    const char *why;
    struct {
        enum op op;
        const char *key;
        const char *value; /* PUT: value stored; GET: value expected; SIZE: NULL */
        size_t size;       /* SIZE: expected entries */
    } steps[12];
} lru_rows[] = {
    {"capacity bounds the size and the oldest entry goes first",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {SIZE, NULL, NULL, 3},
      {PUT, "d", "4", 0}, {SIZE, NULL, NULL, 3}, {GET, "a", "", 0}, {GET, "b", "2", 0},
      {GET, "c", "3", 0}, {GET, "d", "4", 0}}},
    {"get refreshes recency: the entry read survives the next eviction",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {GET, "a", "1", 0},
      {PUT, "d", "4", 0}, {GET, "b", "", 0}, {GET, "a", "1", 0}, {GET, "c", "3", 0}}},
    {"eviction continues in LRU order",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {PUT, "d", "4", 0},
      {PUT, "e", "5", 0}, {GET, "a", "", 0}, {GET, "b", "", 0}, {GET, "c", "3", 0},
      {SIZE, NULL, NULL, 3}}},
    {"put replaces the value and refreshes recency without growing",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {PUT, "a", "new", 0},
      {SIZE, NULL, NULL, 3}, {PUT, "d", "4", 0}, {GET, "a", "new", 0}, {GET, "b", "", 0}}},
    {"put of the same value refreshes recency too",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {PUT, "a", "1", 0},
      {PUT, "d", "4", 0}, {GET, "a", "1", 0}, {GET, "b", "", 0}}},
    {"an empty put removes the entry",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {DEL, "a", NULL, 0}, {SIZE, NULL, NULL, 1},
      {GET, "a", "", 0}, {GET, "b", "2", 0}}},
    {"an empty put of a missing key does nothing",
     {{PUT, "a", "1", 0}, {DEL, "zz", NULL, 0}, {SIZE, NULL, NULL, 1}, {GET, "a", "1", 0}}},
    {"removing frees a slot: nothing is evicted by the next put",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {DEL, "b", NULL, 0},
      {PUT, "d", "4", 0}, {GET, "a", "1", 0}, {GET, "c", "3", 0}, {GET, "d", "4", 0},
      {SIZE, NULL, NULL, 3}}},
    {"removing the most and least recent entries keeps the list consistent",
     {{PUT, "a", "1", 0}, {PUT, "b", "2", 0}, {PUT, "c", "3", 0}, {DEL, "c", NULL, 0},
      {DEL, "a", NULL, 0}, {PUT, "d", "4", 0}, {PUT, "e", "5", 0}, {PUT, "f", "6", 0},
      {GET, "b", "", 0}, {GET, "d", "4", 0}, {SIZE, NULL, NULL, 3}}},
};

static void test_lru(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(lru_rows); i++) {
        struct hint_cache *c = hint_cache_new(3);
        assert_non_null(c);
        for (size_t s = 0; s < ARRAY_LEN(lru_rows[i].steps); s++) {
            const char *key = lru_rows[i].steps[s].key, *value = lru_rows[i].steps[s].value;
            switch (lru_rows[i].steps[s].op) {
            case PUT:
                if (!key)
                    break; /* unused step */
                put(c, "h", key, value);
                break;
            case DEL:
                put(c, "h", key, "");
                break;
            case GET:
                if (strcmp(get(c, "h", key), value) != 0)
                    fail_msg("%s: step %zu: get %s = '%s', want '%s'", lru_rows[i].why, s, key,
                             get(c, "h", key), value);
                break;
            case SIZE:
                if (hint_cache_size(c) != lru_rows[i].steps[s].size)
                    fail_msg("%s: step %zu: size %zu, want %zu", lru_rows[i].why, s,
                             hint_cache_size(c), lru_rows[i].steps[s].size);
                break;
            }
        }
        hint_cache_free(c);
    }
}

/* (host, path) is the key: splitting the same bytes differently is another key. */
static void test_key_parts(void **state)
{
    (void)state;
    struct hint_cache *c = hint_cache_new(10);
    put(c, "ab", "c", "x");
    put(c, "a", "bc", "y");
    put(c, "", "abc", "z");
    put(c, "abc", "", "w");
    assert_int_equal(hint_cache_size(c), 4);
    assert_string_equal(get(c, "ab", "c"), "x");
    assert_string_equal(get(c, "a", "bc"), "y");
    assert_string_equal(get(c, "", "abc"), "z");
    assert_string_equal(get(c, "abc", ""), "w");
    assert_string_equal(get(c, "AB", "c"), ""); /* the caller lowercases hosts */
    hint_cache_free(c);
}

/* Values: HINT_MAX_BYTES is the most kept; a value that does not fit out is not returned. */
static void test_value_sizes(void **state)
{
    (void)state;
    static char big[HINT_MAX_BYTES + 2];
    struct hint_cache *c = hint_cache_new(4);
    memset(big, 'x', HINT_MAX_BYTES + 1);
    hint_cache_put(c, "h", 1, "/big", 4, big, HINT_MAX_BYTES + 1); /* too long: not stored */
    assert_int_equal(hint_cache_size(c), 0);
    hint_cache_put(c, "h", 1, "/max", 4, big, HINT_MAX_BYTES);     /* the limit is kept */
    assert_int_equal(strlen(get(c, "h", "/max")), HINT_MAX_BYTES);

    char small[4] = "zzz";
    put(c, "h", "/v", "abc");
    assert_int_equal(hint_cache_get(c, "h", 1, "/v", 2, small, 3), 0); /* no room for NUL */
    assert_string_equal(small, "");
    assert_int_equal(hint_cache_get(c, "h", 1, "/v", 2, small, 4), 3); /* exactly fits */
    assert_string_equal(small, "abc");
    assert_int_equal(hint_cache_get(c, "h", 1, "/v", 2, small, 0), 0); /* no buffer at all */
    assert_string_equal(small, "abc");                                 /* untouched */
    hint_cache_free(c);
    hint_cache_free(NULL);
}

/* Capacity 0 is 1: the cache always holds the most recent entry. */
static void test_capacity_zero(void **state)
{
    (void)state;
    struct hint_cache *c = hint_cache_new(0);
    put(c, "h", "/a", "1");
    put(c, "h", "/b", "2");
    assert_int_equal(hint_cache_size(c), 1);
    assert_string_equal(get(c, "h", "/a"), "");
    assert_string_equal(get(c, "h", "/b"), "2");
    hint_cache_free(c);
}

/* A cache's table is sized by what it holds: ten empty caches of 1,000,000 entries took 160 MB
 * (2^21 buckets each), 16 GB for 1,024 routes that learn. glibc's count of mapped bytes (0
 * under a sanitizer, whose allocator it does not see). */
static void test_table_grows(void **state)
{
    (void)state;
    enum { CACHES = 10 };
    struct hint_cache *c[CACHES];
    size_t before = mallinfo2().hblkhd;
    for (int i = 0; i < CACHES; i++)
        assert_non_null(c[i] = hint_cache_new(1000000));
    size_t mapped = mallinfo2().hblkhd - before;
    for (int i = 0; i < CACHES; i++)
        hint_cache_free(c[i]);
    print_message("  %d caches of 1,000,000 entries, empty: %zu bytes mapped\n", CACHES, mapped);
    assert_true(mapped < 1024 * 1024);
}

/* Many keys: bucket chains, evictions from the middle of chains, then every survivor found. */
static void test_many_keys(void **state)
{
    (void)state;
    enum { CAP = 1000, N = 20000 };
    struct hint_cache *c = hint_cache_new(CAP);
    char path[32], value[32];
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/p/%d", i);
        snprintf(value, sizeof(value), "</%d>", i);
        put(c, "many.test", path, value);
        if (i % 7 == 0) { /* refresh an older survivor now and then */
            snprintf(path, sizeof(path), "/p/%d", i > CAP / 2 ? i - CAP / 2 : 0);
            get(c, "many.test", path);
        }
    }
    assert_int_equal(hint_cache_size(c), CAP);
    int found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/p/%d", i);
        snprintf(value, sizeof(value), "</%d>", i);
        const char *got = get(c, "many.test", path);
        if (*got) {
            assert_string_equal(got, value);
            found++;
        }
    }
    assert_int_equal(found, CAP);
    /* the newest CAP/2 were never candidates for eviction */
    for (int i = N - CAP / 2; i < N; i++) {
        snprintf(path, sizeof(path), "/p/%d", i);
        assert_true(*get(c, "many.test", path) != '\0');
    }
    /* remove every survivor: the cache is empty and still works */
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/p/%d", i);
        put(c, "many.test", path, "");
    }
    assert_int_equal(hint_cache_size(c), 0);
    put(c, "many.test", "/again", "x");
    assert_string_equal(get(c, "many.test", "/again"), "x");
    hint_cache_free(c);
}

/* ---- threads: the mutex holds (run under ASan/TSan to see it) ---- */

enum { THREADS = 4, OPS = 10000, KEYS = 50 };

struct worker_arg {
    struct hint_cache *cache;
    int id;
    int bad; /* gets that returned a value of another key */
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    uint32_t s = 0x9e3779b9u * (uint32_t)(a->id + 1);
    char path[16], value[64], out[HINT_MAX_BYTES + 1];
    for (int i = 0; i < OPS; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        int k = (int)(s % KEYS);
        snprintf(path, sizeof(path), "/k%d", k);
        switch ((s >> 28) & 3) {
        case 0:
        case 1: { /* the value names its key, so a get can be checked */
            int n = snprintf(value, sizeof(value), "</k%d>; rel=preload; t=%d", k, a->id);
            hint_cache_put(a->cache, "t", 1, path, strlen(path), value, (size_t)n);
            break;
        }
        case 2: {
            size_t n = hint_cache_get(a->cache, "t", 1, path, strlen(path), out, sizeof(out));
            char want[16];
            int wn = snprintf(want, sizeof(want), "</k%d>;", k);
            if (n && strncmp(out, want, (size_t)wn) != 0)
                a->bad++;
            break;
        }
        default:
            if (i % 16 == 0)
                hint_cache_put(a->cache, "t", 1, path, strlen(path), "", 0);
            else
                (void)hint_cache_size(a->cache);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct hint_cache *c = hint_cache_new(KEYS / 2); /* small: evictions race with gets */
    pthread_t t[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){.cache = c, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(args[i].bad, 0);
    }
    assert_true(hint_cache_size(c) <= KEYS / 2);
    hint_cache_free(c);
}

/* ---- Link parsing ---- */

static const struct {
    const char *why;
    const char *value;
    const char *elems[4]; /* expected elements, NULL-terminated */
} next_rows[] = {
    {"two link-values", "</a.css>; rel=preload, </b.js>; rel=preload",
     {"</a.css>; rel=preload", "</b.js>; rel=preload"}},
    {"a comma inside <> does not split", "</a,b.css>; rel=preload, </c>",
     {"</a,b.css>; rel=preload", "</c>"}},
    {"a comma inside quotes does not split", "</a>; title=\"x, y\"; rel=preload, </b>",
     {"</a>; title=\"x, y\"; rel=preload", "</b>"}},
    {"an escaped quote stays inside the quoted string", "</a>; t=\"q\\\", still\", </b>",
     {"</a>; t=\"q\\\", still\"", "</b>"}},
    {"a quote inside <> is not a quoted string", "</a\"b>; rel=preload, </c>",
     {"</a\"b>; rel=preload", "</c>"}},
    {"a < inside quotes is not a URI", "</a>; t=\"<\", </b>", {"</a>; t=\"<\"", "</b>"}},
    {"empty elements and blanks are skipped", " ,, \t</a> ,\t, </b>\t,", {"</a>", "</b>"}},
    {"an unterminated quote runs to the end", "</a>; t=\"x, </b>", {"</a>; t=\"x, </b>"}},
    {"an unterminated URI runs to the end", "</a, </b>", {"</a, </b>"}},
    {"empty value", "", {NULL}},
    {"only separators", " , ,\t", {NULL}},
};

static void test_link_next(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(next_rows); i++) {
        const char *v = next_rows[i].value;
        size_t pos = 0, n = 0, elen;
        const char *e;
        while (h1_link_next(v, strlen(v), &pos, &e, &elen)) {
            if (n >= ARRAY_LEN(next_rows[i].elems) || !next_rows[i].elems[n])
                fail_msg("%s: extra element '%.*s'", next_rows[i].why, (int)elen, e);
            if (elen != strlen(next_rows[i].elems[n]) || memcmp(e, next_rows[i].elems[n], elen))
                fail_msg("%s: element %zu '%.*s', want '%s'", next_rows[i].why, n, (int)elen, e,
                         next_rows[i].elems[n]);
            n++;
            assert_true(pos <= strlen(v));
        }
        if (n < ARRAY_LEN(next_rows[i].elems) && next_rows[i].elems[n])
            fail_msg("%s: missing '%s'", next_rows[i].why, next_rows[i].elems[n]);
        /* at the end it stays at the end */
        assert_false(h1_link_next(v, strlen(v), &pos, &e, &elen));
    }
}

static const struct {
    const char *elem;
    bool ok;
    const char *uri;
} uri_rows[] = {
    {"</app.css>; rel=preload", true, "/app.css"},   /* the usual form */
    {"<https://cdn.test/x?a=1>", true, "https://cdn.test/x?a=1"}, /* absolute URI */
    {"<>", true, ""},                                 /* empty reference is still well-formed */
    {"</a%2Fb>", true, "/a%2Fb"},                     /* pct-encoded */
    {"</a>\t;\tas=style ; rel=\"x y\"", true, "/a"},   /* OWS around ';' */
    {"</a>; t=\"q\\\"; x\"", true, "/a"},            /* an escaped quote in a quoted-string */
    {"</a>; crossorigin", true, "/a"},                /* a parameter without value */
    {"/app.css; rel=preload", false, NULL},           /* no brackets */
    {"a>; rel=preload", false, NULL},                 /* a stray >, no < */
    {"</a>>", false, NULL},                           /* a stray > after the URI */
    {"</a>>; rel=preload", false, NULL},              /* the same, with parameters */
    {"<</a>; rel=preload", false, NULL},              /* a < inside the URI */
    {"</a b>; rel=preload", false, NULL},             /* a blank inside the URI */
    {"</a\"b>", false, NULL},                         /* a quote inside the URI */
    {"</caf\xc3\xa9.woff2>", true, "/caf\xc3\xa9.woff2"}, /* an IRI's UTF-8, as browsers take */
    {"</a%2>", false, NULL},                          /* '%' without two hex digits */
    {"</a%zz>", false, NULL},                         /* '%' without two hex digits */
    {"</a%2g>", false, NULL},                         /* ... the second not hex */
    {"</a> x; rel=preload", false, NULL},             /* text between > and ; */
    {"</a>rel=preload", false, NULL},                 /* no ; before the parameter */
    {"</a>;", true, "/a"},                            /* an empty parameter (RFC 9110 5.6.6) */
    {"</a>;; rel=preload", true, "/a"},               /* the same, between ';'s */
    {"</a>; rel=preload; as=style; ", true, "/a"},    /* a trailing ';', as origins send */
    {"</a>; =x", false, NULL},                        /* a parameter without name */
    {"</a>; r@l=x", false, NULL},                     /* a name that is not a token */
    {"</a>; rel=", false, NULL},                      /* = with no value */
    {"</a>; rel=preload x", false, NULL},             /* text after a parameter's value */
    {"</a>; rel=pre\"load\"", false, NULL},           /* a token then a quoted-string */
    {"</a>; rel=\"preload", false, NULL},             /* unterminated quoted-string */
    {"</a>; t=\"x\\", false, NULL},                   /* a backslash at the end */
    {"</a>; t=\"\x01\"", false, NULL},                 /* a control byte in a quoted-string */
    {"<", false, NULL},                               /* too short */
    {"</app.css", false, NULL},                       /* no closing bracket */
    {" </a>", false, NULL},                           /* elements come trimmed */
    {"", false, NULL},                                /* empty */
};

static void test_link_uri(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(uri_rows); i++) {
        const char *uri = NULL;
        size_t len = 0;
        bool ok = link_uri(uri_rows[i].elem, strlen(uri_rows[i].elem), &uri, &len);
        if (ok != uri_rows[i].ok)
            fail_msg("'%s': %d", uri_rows[i].elem, ok);
        if (ok && (len != strlen(uri_rows[i].uri) || memcmp(uri, uri_rows[i].uri, len) != 0))
            fail_msg("'%s': uri '%.*s'", uri_rows[i].elem, (int)len, uri);
    }
    /* the length bounds the search: a '>' past it does not count */
    const char *u;
    size_t ul;
    assert_false(link_uri("</a>", 3, &u, &ul));
}

static const struct {
    const char *value;
    bool hint;
    const char *why;
} hint_rows[] = {
    {"</a>; rel=preload", true, "token rel"},
    {"</a>; rel=\"preconnect\"", true, "quoted rel"},
    {"</a>; rel=\"stylesheet preload\"", true, "one of several relation types"},
    {"</a>; rel=\"preload\tstylesheet\"", true, "relation types separated by a tab"},
    {"</a>; rel=stylesheet", false, "another relation"},
    {"</a>; rel=\"prefetch\"", false, "prefetch is not replayed"},
    {"</a>; as=style", false, "no rel at all"},
    {"</a>", false, "no parameters"},
    {"</a>; REL=PRELOAD", true, "parameter names and values are case-insensitive"},
    {"</a>; Rel=\"PreConnect\"", true, "case-insensitive inside quotes"},
    {"</a>; rel = preload", true, "whitespace around ="},
    {"</a>;rel=preload;as=style", true, "no whitespace at all"},
    {"</a>; as=style; rel=preload", true, "rel after another parameter"},
    {"</a>; crossorigin; rel=preload", true, "a parameter without value before rel"},
    {"</a>; rel=preloaded", false, "a longer token is another relation"},
    {"</a>; rel=\"preloader\"", false, "a longer token inside quotes"},
    {"</a>; xrel=preload", false, "another parameter ending in rel"},
    {"</a>; title=\"rel=preload\"", false, "rel=preload inside another parameter's value"},
    {"</a>; title=\"a; rel=preload\"", false, "a quoted ';' does not end the parameter"},
    {"</rel=preload>", false, "inside the URI"},
    {"</a?rel=preload>; as=x", false, "inside the URI, with parameters"},
    {"no brackets; rel=preload", false, "not a link-value"},
    {"</a>; rel=\"\"", false, "empty rel"},
    {"</a>; rel=", false, "rel without value"},
    {"</a>; rel", false, "rel without ="},
    {"a>; rel=preload", false, "a stray > with no <: not a link-value"},
    {"</a>>; rel=preload", false, "a stray > after the URI"},
    {"</a> x; rel=preload", false, "text between the URI and the parameters"},
    {"</a b>; rel=preload", false, "a blank inside the URI"},
    {"</a>; rel=preload x", false, "text after the rel"},
    {"</a>;; rel=preload", true, "an empty parameter before rel (RFC 9110 5.6.6)"},
    {"</a>; rel=preload; as=style;", true, "a trailing ';', which browsers take"},
    {"</caf\xc3\xa9.woff2>; rel=preload", true, "an IRI's UTF-8 in the URI"},
    {"</a>; ; rel=stylesheet", false, "an empty parameter is no rel"},
    {"</a>; rel=\"preload", false, "unterminated quoted-string"},
    {"</a>; title=\"a\\\"; rel=preload\"", false, "an escaped quote does not end the value"},
    {"</a>; rel=preload; rel=stylesheet", true, "the first rel counts"},
    {"</a>; rel=stylesheet; rel=preload", false, "a second rel is ignored (RFC 8288 3.3)"},
};

static void test_link_is_hint(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(hint_rows); i++)
        if (link_is_hint(hint_rows[i].value, strlen(hint_rows[i].value)) != hint_rows[i].hint)
            fail_msg("%s: '%s' gives %d", hint_rows[i].why, hint_rows[i].value,
                     !hint_rows[i].hint);
    /* the length bounds the parse: "preload" past it does not count */
    assert_false(link_is_hint("</a>; rel=preload", 14));
}

/* A link-value copied to the end of a readable page whose next page is not mapped: parsing it
 * reads nothing past its length (a byte past it, in a header block, is the next field's or the
 * line's CR LF: a read there parses what is not the value, and at a buffer's end it faults). An
 * unterminated quoted-string once stepped one past the end and read on from there. */
static void test_link_reads_within_value(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    char *end = map + page; /* the first byte that faults */
    for (size_t i = 0; i < ARRAY_LEN(uri_rows); i++) {
        size_t len = strlen(uri_rows[i].elem);
        char *v = memcpy(end - len, uri_rows[i].elem, len);
        const char *uri;
        size_t ulen;
        if (link_uri(v, len, &uri, &ulen) != uri_rows[i].ok)
            fail_msg("'%s' at a page's end: %d", uri_rows[i].elem, !uri_rows[i].ok);
    }
    for (size_t i = 0; i < ARRAY_LEN(hint_rows); i++) {
        size_t len = strlen(hint_rows[i].value);
        char *v = memcpy(end - len, hint_rows[i].value, len);
        if (link_is_hint(v, len) != hint_rows[i].hint)
            fail_msg("%s: '%s' at a page's end gives %d", hint_rows[i].why, hint_rows[i].value,
                     !hint_rows[i].hint);
    }
    munmap(map, (size_t)page * 2);
}

/* What a route learns of a response's Link fields: the hint link-values, malformed ones skipped
 * and the good ones beside them in the same field still taken. */
static const struct {
    const char *why;
    const char *fields[3]; /* Link field values, NULL-terminated */
    const char *learned;   /* '\n'-joined */
} collect_rows[] = {
    {"a stray > with no <, then a good link", {"a>; rel=preload, </ok.css>; rel=preload"},
     "</ok.css>; rel=preload"},
    {"a malformed link between good ones",
     {"</a.css>; rel=preload, </b.css>>; rel=preload, </c.js>; rel=preload; as=script"},
     "</a.css>; rel=preload\n</c.js>; rel=preload; as=script"},
    {"a field of malformed links only, then a good field",
     {"</a> x; rel=preload, </b>; rel=preload junk", "</c>; rel=preconnect"},
     "</c>; rel=preconnect"},
    {"malformed links only: nothing learned", {"a>; rel=preload", "</a b>; rel=preload"}, ""},
    {"a good link that is no hint stays out", {"</a>; rel=stylesheet, </b>; rel=preload"},
     "</b>; rel=preload"},
};

static void test_hint_collect(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(collect_rows); i++) {
        struct h1_field f[ARRAY_LEN(collect_rows[i].fields)];
        size_t nf = 0;
        for (; nf < ARRAY_LEN(f) && collect_rows[i].fields[nf]; nf++) {
            const char *v = collect_rows[i].fields[nf];
            f[nf] = (struct h1_field){"Link", 4, v, strlen(v), H1_F_LINK};
        }
        char buf[HINT_MAX_BYTES];
        size_t n = hint_collect(f, nf, buf, sizeof(buf));
        if (n != strlen(collect_rows[i].learned) || memcmp(buf, collect_rows[i].learned, n))
            fail_msg("%s: learned '%.*s'", collect_rows[i].why, (int)n, buf);
        /* what is learned is what a 103 sends: no entry for nothing to replay */
        struct hint_cache *c = hint_cache_new(4);
        assert_non_null(c);
        hint_cache_put(c, "h", 1, "/p", 2, buf, n);
        assert_int_equal(hint_cache_size(c), n ? 1 : 0);
        struct hint_set set = {0};
        char out[HINT_MAX_BYTES * 2];
        for (const char *p = buf, *end = buf + n; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (hint_filter(&set, p, len, out, sizeof(out)) != len)
                fail_msg("%s: '%.*s' learned, not replayed", collect_rows[i].why, (int)len, p);
            p += len + 1;
        }
        hint_cache_free(c);
    }
    /* a link is taken with room for its separator: 17 bytes of link need 18 */
    static const char link[] = "</a>; rel=preload";
    struct h1_field f = {"Link", 4, link, sizeof(link) - 1, H1_F_LINK};
    char buf[32];
    assert_int_equal(hint_collect(&f, 1, buf, sizeof(link) - 1), 0);
    assert_int_equal(hint_collect(&f, 1, buf, sizeof(link)), sizeof(link) - 1);
}

/* hint_filter's two bounds: links that fill out to its last byte all go, one byte less and the
 * last is left out; a set holds HINT_SET_SLOTS / 2 links, and the one after is not hinted. */
static void test_hint_filter_bounds(void **state)
{
    (void)state;
    static const char two[] = "</a>, </b>"; /* "</a>, </b>" out: 10 bytes */
    char out[16];
    struct hint_set set = {0};
    assert_int_equal(hint_filter(&set, two, strlen(two), out, 10), 10);
    assert_memory_equal(out, "</a>, </b>", 10);
    memset(&set, 0, sizeof(set));
    assert_int_equal(hint_filter(&set, two, strlen(two), out, 9), 4);
    assert_int_equal(set.n, 1); /* </b> not remembered: it may go with the next 103 */

    enum { LINKS = HINT_SET_SLOTS / 2 + 1 };
    static char many[LINKS * 9], big[LINKS * 9];
    size_t len = 0;
    for (int i = 0; i < LINKS; i++)
        len += (size_t)snprintf(many + len, sizeof(many) - len, "%s</%d>", i ? ", " : "", i);
    memset(&set, 0, sizeof(set));
    size_t n = hint_filter(&set, many, len, big, sizeof(big));
    assert_int_equal(set.n, HINT_SET_SLOTS / 2);
    size_t hinted = 0;
    for (size_t i = 0; i < n; i++)
        hinted += big[i] == '<';
    assert_int_equal(hinted, HINT_SET_SLOTS / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru),
        cmocka_unit_test(test_key_parts),
        cmocka_unit_test(test_value_sizes),
        cmocka_unit_test(test_capacity_zero),
        cmocka_unit_test(test_table_grows),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_link_next),
        cmocka_unit_test(test_link_uri),
        cmocka_unit_test(test_link_is_hint),
        cmocka_unit_test(test_link_reads_within_value),
        cmocka_unit_test(test_hint_collect),
        cmocka_unit_test(test_hint_filter_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
