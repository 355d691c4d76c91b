/*
 * fuzz_common.h — what the fuzz targets share: the CHECK macro, field and span checks, and the
 * chunked-decoder runs compared across split patterns. Static functions only, marked unused so
 * that each target takes what it needs; included by exactly one translation unit per target.
 */
#ifndef PORTICO_FUZZ_COMMON_H
#define PORTICO_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "portico/chunked.h"
#include "portico/http1.h"
#include "portico/trailers.h"

#define FUZZ_HELPER static __attribute__((unused))

#define CHECK(c)                                                                               \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);         \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n > 0 ? n : 1);
    CHECK(p != NULL);
    if (n > 0)
        memcpy(p, s, n);
    return p;
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * UINT64_C(0x100000001b3);
    return h;
}

FUZZ_HELPER void check_fields(const char *buf, int len, const struct h1_field *f, size_t n)
{
    CHECK(n <= H1_MAX_FIELDS);
    for (size_t i = 0; i < n; i++) {
        CHECK(f[i].name >= buf && f[i].name + f[i].name_len <= buf + len);
        CHECK(f[i].value >= buf && f[i].value + f[i].value_len <= buf + len);
        CHECK(f[i].name_len > 0);
        for (size_t k = 0; k < f[i].name_len; k++)
            CHECK(h1_is_tchar((unsigned char)f[i].name[k]));
        for (size_t k = 0; k < f[i].value_len; k++) {
            unsigned char c = (unsigned char)f[i].value[k];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (f[i].value_len > 0) {
            CHECK(f[i].value[0] != ' ' && f[i].value[0] != '\t');
            CHECK(f[i].value[f[i].value_len - 1] != ' ' && f[i].value[f[i].value_len - 1] != '\t');
        }
    }
}

/* ---- chunked ---- */

struct ck_out {
    enum chunked_rc last; /* DONE, ERROR, or AGAIN when the input ran out */
    size_t consumed;
    uint64_t data_len, data_hash;
    uint64_t trailer_len, trailer_hash;
    uint64_t kept_len, kept_hash; /* the trailer fields trailer_filter_run let through */
};

/* What the trailer filter kept of a complete section: whole field lines ("name:" ... CRLF),
 * each of a name it allows. */
static void check_kept(struct evbuffer *kept, struct ck_out *out)
{
    size_t n = evbuffer_get_length(kept);
    const char *k = (const char *)evbuffer_pullup(kept, -1);
    for (size_t at = 0; at < n;) {
        const char *colon = memchr(k + at, ':', n - at), *lf = memchr(k + at, '\n', n - at);
        CHECK(colon != NULL && lf != NULL && colon < lf && lf > k + at && lf[-1] == '\r');
        CHECK(trailer_field_allowed(k + at, (size_t)(colon - (k + at))));
        at = (size_t)(lf - k) + 1;
    }
    out->kept_hash = fnv(out->kept_hash, k, n);
    out->kept_len = n;
}

/* Feeds p[0..n) in pieces: piece > 0 fixed, 0 random from seed. */
static void ck_run(const char *p, size_t n, size_t piece, uint32_t seed, struct ck_out *out)
{
    struct chunked_decoder c;
    struct trailer_filter tf;
    struct evbuffer *kept = evbuffer_new();
    size_t pos = 0, avail = 0;
    uint64_t prev_body = 0;

    CHECK(kept != NULL);
    trailer_filter_init(&tf);

    chunked_init(&c, 1 + seed % 300);
    if (seed & 8)
        c.max_line = 24; /* reach the line limits with short inputs */
    memset(out, 0, sizeof *out);
    out->data_hash = out->trailer_hash = out->kept_hash = UINT64_C(0xcbf29ce484222325);
    out->last = CHUNKED_AGAIN;
    seed |= 1;
    for (;;) {
        if (pos == avail) {
            if (avail == n)
                break;
            size_t step = piece > 0 ? piece : 1 + next_rand(&seed) % 16;
            avail = n - avail > step ? avail + step : n;
        }
        if (c.data_left > 0) {
            size_t take = avail - pos < c.data_left ? avail - pos : (size_t)c.data_left;
            out->data_hash = fnv(out->data_hash, p + pos, take);
            out->data_len += take;
            pos += take;
            chunked_data_taken(&c, take);
            continue;
        }
        size_t have = avail - pos, used = SIZE_MAX;
        char *buf = dup_exact(p + pos, have);
        enum chunked_rc rc = chunked_parse(&c, buf, have, &used);
        free(buf);
        CHECK(used <= have);
        CHECK(c.body_size >= prev_body);
        prev_body = c.body_size;
        switch (rc) {
        case CHUNKED_AGAIN:
            CHECK(used == have);
            pos += used;
            break;
        case CHUNKED_DATA:
            pos += used;
            CHECK(c.data_left > 0 || (pos < avail && p[pos] != '\r'));
            break;
        case CHUNKED_TRAILER:
            CHECK(used > 0);
            out->trailer_hash = fnv(out->trailer_hash, p + pos, used);
            out->trailer_len += used;
            buf = dup_exact(p + pos, used);
            trailer_filter_run(&tf, buf, used, kept);
            free(buf);
            pos += used;
            break;
        case CHUNKED_DONE:
            pos += used;
            CHECK(c.body_size == out->data_len);
            check_kept(kept, out);
            out->last = rc;
            out->consumed = pos;
            evbuffer_free(kept);
            return;
        case CHUNKED_ERROR:
            CHECK(c.error != NULL);
            out->last = rc;
            evbuffer_free(kept);
            return;
        default:
            CHECK(0);
        }
    }
    out->consumed = pos;
    evbuffer_free(kept);
}

static void ck_compare(const struct ck_out *a, const struct ck_out *b)
{
    CHECK(a->last == b->last);
    if (a->last == CHUNKED_ERROR)
        return;
    CHECK(a->data_len == b->data_len && a->data_hash == b->data_hash);
    if (a->last == CHUNKED_DONE) {
        CHECK(a->consumed == b->consumed);
        CHECK(a->trailer_len == b->trailer_len && a->trailer_hash == b->trailer_hash);
        CHECK(a->kept_len == b->kept_len && a->kept_hash == b->kept_hash);
    }
}

/* Decodes the body several ways; trailer limits are seed-dependent, so one seed per set. */
FUZZ_HELPER void fuzz_chunked(const char *p, size_t n, uint8_t mode)
{
    struct ck_out whole, bytes, random;
    uint32_t seed = (uint32_t)mode * 2654435761u + 7;

    ck_run(p, n, n > 0 ? n : 1, seed, &whole);
    if (n <= 4096) {
        ck_run(p, n, 1, seed, &bytes);
        ck_compare(&whole, &bytes);
    }
    ck_run(p, n, 0, seed, &random);
    ck_compare(&whole, &random);
}

#endif
