/*
 * fuzz_link.c — the Link fields of an origin's response as Early Hints use them: the list
 * splitter (h1_link_next), the relation test (link_is_hint), what a route learns (hint_collect,
 * through hint_cache_put and hint_cache_get) and what a 103 keeps of them (hint_filter).
 *
 * The first byte is a mode byte (the size of the learning buffer); the rest is split on '\n'
 * into Link field values, each an exact-size heap copy, so ASan sees any over-read.
 * Checked: every element lies inside its value, is non-empty and trimmed; what is learned is
 * '\n'-joined elements that are hints, in their order, within the buffer, and reads back the
 * same from the cache; each learned line re-splits into itself and has a URI a 103 sends
 * (link_uri); a 103 with the room interim.c gives it (twice the Link bytes) keeps every link
 * of a URI not seen before, in order, each once, as they came, up to the hint_set's bound; a
 * second pass with the same set keeps none.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "portico/hints.h"

/* The elements of one value, as h1_link_next hands them out, checked as they come. */
static size_t split(const char *v, size_t len, const char **el, size_t *elen, size_t max)
{
    size_t pos = 0, n = 0;
    const char *e;
    size_t l;
    while (h1_link_next(v, len, &pos, &e, &l)) {
        CHECK(pos <= len);
        CHECK(e >= v && e + l <= v + pos && l > 0);
        CHECK(e[0] != ' ' && e[0] != '\t' && e[0] != ',');
        CHECK(e[l - 1] != ' ' && e[l - 1] != '\t');
        if (n < max) {
            el[n] = e;
            elen[n] = l;
        }
        n++;
    }
    CHECK(pos == len);
    return n;
}

static size_t learn_size(int mode)
{
    static const size_t sizes[] = {HINT_MAX_BYTES, 1, 2, 3, 8, 17, 64, 255};
    return sizes[mode & 7] + (size_t)(mode >> 3);
}

#define MAX_EL 2048

static const char *els[MAX_EL];
static size_t elens[MAX_EL];

/* What hint_collect must give: the hint elements that fit, in order, '\n'-joined. */
static size_t expect_collect(struct h1_field *f, size_t nf, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < nf; i++) {
        size_t k = split(f[i].value, f[i].value_len, els, elens, MAX_EL);
        CHECK(k <= MAX_EL);
        for (size_t j = 0; j < k; j++) {
            if (!link_is_hint(els[j], elens[j]) || n + elens[j] + 1 > size)
                continue;
            memcpy(out + n, els[j], elens[j]);
            n += elens[j];
            out[n++] = '\n';
        }
    }
    return n ? n - 1 : 0;
}

/* What hint_filter must write for one value with room enough: each link of a URI not in kept
 * yet, as it came, ", "-joined, added to kept; none once kept holds HINT_SET_SLOTS / 2. */
static size_t expect_filter(const struct h1_field *f, const char **kept, size_t *klen, size_t *n,
                            char *out)
{
    size_t at = 0;
    size_t k = split(f->value, f->value_len, els, elens, MAX_EL);
    CHECK(k <= MAX_EL);
    for (size_t j = 0; j < k; j++) {
        const char *u, *u2;
        size_t ul, ul2;
        if (!link_uri(els[j], elens[j], &u, &ul))
            continue;
        CHECK(u == els[j] + 1 && u + ul < els[j] + elens[j] && u[ul] == '>');
        bool seen = false;
        for (size_t m = 0; m < *n && !seen; m++) {
            CHECK(link_uri(kept[m], klen[m], &u2, &ul2));
            seen = ul == ul2 && memcmp(u, u2, ul) == 0;
        }
        if (seen)
            continue;
        if (*n >= HINT_SET_SLOTS / 2)
            break;
        kept[*n] = els[j];
        klen[(*n)++] = elens[j];
        if (at) {
            memcpy(out + at, ", ", 2);
            at += 2;
        }
        memcpy(out + at, els[j], elens[j]);
        at += elens[j];
    }
    return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    int mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    struct h1_field f[H1_MAX_FIELDS];
    char *copy[H1_MAX_FIELDS];
    size_t nf = 0, link_bytes = 0;
    for (size_t at = 0; at <= len && nf < H1_MAX_FIELDS;) {
        const char *nl = memchr(in + at, '\n', len - at);
        size_t l = nl ? (size_t)(nl - (in + at)) : len - at;
        copy[nf] = dup_exact(in + at, l);
        f[nf] = (struct h1_field){"Link", 4, copy[nf], l, H1_F_LINK};
        nf++;
        link_bytes += l;
        at += l + 1;
    }

    /* learning: hint_collect, as interim_learn calls it, against the expected */
    size_t lsize = learn_size(mode);
    char *learned = malloc(lsize), *want = malloc(lsize);
    CHECK(learned && want);
    size_t ln = hint_collect(f, nf, learned, lsize);
    size_t wn = expect_collect(f, nf, want, lsize);
    CHECK(ln == wn && ln <= lsize && memcmp(learned, want, ln) == 0);
    CHECK(ln == 0 || learned[ln - 1] != '\n');

    /* the cache gives back what it took, and each line re-splits into itself */
    struct hint_cache *cache = hint_cache_new(2);
    CHECK(cache != NULL);
    hint_cache_put(cache, "h", 1, "/p", 2, learned, ln);
    char back[HINT_MAX_BYTES + 1];
    size_t bn = hint_cache_get(cache, "h", 1, "/p", 2, back, sizeof(back));
    CHECK(bn == (ln <= HINT_MAX_BYTES ? ln : 0) && memcmp(back, learned, bn) == 0);
    CHECK(back[bn] == '\0');
    hint_cache_free(cache);
    for (const char *p = back, *end = back + bn; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *e;
        size_t el;
        CHECK(split(p, l, &e, &el, 1) == 1 && e == p && el == l);
        CHECK(link_is_hint(p, l));
        const char *u;
        size_t ul;
        CHECK(link_uri(p, l, &u, &ul)); /* what is learned is what a 103 can send */
        p += l + 1;
    }

    /* a relayed 103: the room interim_relay gives, one set for the whole head */
    static struct hint_set set;
    memset(&set, 0, sizeof(set));
    size_t room = link_bytes * 2, used = 0;
    char *links = malloc(room ? room : 1);
    CHECK(links != NULL);
    static const char *kept[HINT_SET_SLOTS / 2];
    static size_t klen[HINT_SET_SLOTS / 2];
    size_t nk = 0;
    char *expect = malloc(room ? room : 1);
    CHECK(expect != NULL);
    for (size_t i = 0; i < nf; i++) {
        size_t got = hint_filter(&set, f[i].value, f[i].value_len, links + used, room - used);
        size_t want_n = expect_filter(&f[i], kept, klen, &nk, expect);
        CHECK(got == want_n && got <= room - used && memcmp(links + used, expect, got) == 0);
        CHECK(set.n == nk);
        used += got;
    }
    /* the same links again: every one of them hinted already */
    for (size_t i = 0; i < nf; i++)
        CHECK(hint_filter(&set, f[i].value, f[i].value_len, links, room) == 0);

    free(links);
    free(expect);
    free(learned);
    free(want);
    for (size_t i = 0; i < nf; i++)
        free(copy[i]);
    return 0;
}
