/*
 * test_chunked.c — table-driven tests of the chunked transfer-coding decoder (proxy/chunked.c).
 *
 * Every input is handed to the decoder in malloc'd buffers of exactly the bytes available, so
 * ASan reports any read past them. Every row is decoded whole, at every split point and in
 * random pieces, and must give the same data, trailers and result each time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/chunked.h"

static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n > 0 ? n : 1);
    assert_non_null(p);
    if (n > 0)
        memcpy(p, s, n);
    return p;
}

static size_t in_len(const char *in, size_t len)
{
    return len != 0 ? len : strlen(in);
}

enum { CK_WANT_DONE, CK_WANT_ERROR, CK_WANT_MORE };

struct chunk_case {
    const char *why;
    const char *in;
    size_t len;           /* 0: strlen(in) */
    int want;             /* CK_WANT_DONE, CK_WANT_ERROR, or CK_WANT_MORE (input ends early) */
    const char *data;     /* reassembled chunk data (DONE and MORE) */
    const char *trailers; /* trailer bytes forwarded (DONE) */
    size_t consumed;      /* DONE: bytes used, 0 meaning the whole input */
    size_t max_trailers;  /* 0: 8192 */
};

#define CDONE(w, i, d, t) {.why = w, .in = i, .want = CK_WANT_DONE, .data = d, .trailers = t}
#define CERR(w, i) {.why = w, .in = i, .want = CK_WANT_ERROR}
#define CERRN(w, i, n) {.why = w, .in = i, .len = n, .want = CK_WANT_ERROR}
#define CMORE(w, i, d) {.why = w, .in = i, .want = CK_WANT_MORE, .data = d}

static const struct chunk_case chunk_cases[] = {
    CDONE("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CDONE("empty body", "0\r\n\r\n", "", ""),
    CDONE("several chunks, hex both cases",
          "3\r\nabc\r\na\r\n0123456789\r\nA\r\nABCDEFGHIJ\r\n0\r\n\r\n",
          "abc0123456789ABCDEFGHIJ", ""),
    CDONE("chunk data may hold CRLF and NUL-free binary", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n",
          ""),
    CDONE("leading zeros in the size", "0005\r\nhello\r\n000\r\n\r\n", "hello", ""),
    CDONE("sixteen digits is the limit", "0000000000000005\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CDONE("extension without value", "5;ext\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CDONE("extension with token value", "5;a=b\r\nhello\r\n0;c=d\r\n\r\n", "hello", ""),
    CDONE("several extensions with BWS", "5 ; a = b ;\tc\t;d=\"x\"\r\nhello\r\n0\r\n\r\n",
          "hello", ""),
    CDONE("quoted-string with escapes and ; inside",
          "5;a=\"x\\\"; y\\\\\"\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CDONE("quoted-string with obs-text", "5;a=\"\xe9t\xe9\"\r\nhello\r\n0\r\n\r\n", "hello", ""),
    CDONE("one trailer field", "5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", "hello", "X-Sum: 1\r\n"),
    CDONE("two trailers and an empty value", "0\r\nA: 1\r\nB:\r\n\r\n", "", "A: 1\r\nB:\r\n"),
    CDONE("trailer value with HTAB and obs-text", "0\r\nA:\tx\xff y \r\n\r\n", "",
          "A:\tx\xff y \r\n"),
    {.why = "the decoder stops at the end of the body (pipelined request follows)",
     .in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", .want = CK_WANT_DONE, .data = "abc",
     .trailers = "", .consumed = 13},
    {.why = "trailers then pipelined bytes", .in = "0\r\nT: v\r\n\r\n0\r\n", .want = CK_WANT_DONE,
     .data = "", .trailers = "T: v\r\n", .consumed = 11},
    {.why = "trailer section exactly at max_trailers", .in = "0\r\nA: 12\r\n\r\n",
     .want = CK_WANT_DONE, .data = "", .trailers = "A: 12\r\n", .max_trailers = 7},
    CMORE("input ends inside chunk data", "5\r\nhel", "hel"),
    CMORE("input ends inside the size line", "5;a=", ""),
    CMORE("input ends before the final CRLF", "0\r\nA: b\r\n", ""),
    CMORE("a size of exactly 2^62 is accepted", "4000000000000000\r\nxy", "xy"),

    CERR("size with 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
    CERR("negative size", "-5\r\nhello\r\n0\r\n\r\n"),
    CERR("size with a plus sign", "+5\r\nhello\r\n0\r\n\r\n"),
    CERR("empty size line", "\r\nhello\r\n0\r\n\r\n"),
    CERR("seventeen digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
    CERR("size over 2^62", "4000000000000001\r\n"),
    CERR("size overflowing 64 bits", "ffffffffffffffffff\r\n"),
    CERR("size of sixteen f", "ffffffffffffffff\r\n"),
    CERR("bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
    CERR("bare CR after the size", "5\rhello\r\n0\r\n\r\n"),
    CERR("space after the size without extension", "5 \r\nhello\r\n0\r\n\r\n"),
    CERR("HTAB after the size without extension", "5\t\r\nhello\r\n0\r\n\r\n"),
    CERR("empty extension name", "5;\r\nhello\r\n0\r\n\r\n"),
    CERR("extension starting with =", "5;=x\r\nhello\r\n0\r\n\r\n"),
    CERR("extension with empty value", "5;a=\r\nhello\r\n0\r\n\r\n"),
    CERR("extension value with a space inside", "5;a=b c\r\nhello\r\n0\r\n\r\n"),
    CERR("extension name with a non-token byte", "5;a@b\r\nhello\r\n0\r\n\r\n"),
    CERR("unterminated quoted-string", "5;a=\"x\r\nhello\r\n0\r\n\r\n"),
    CERR("CTL inside a quoted-string", "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"),
    CERR("garbage after a quoted-string", "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"),
    CERR("BWS before CRLF after an extension", "5;a \r\nhello\r\n0\r\n\r\n"),
    CERRN("NUL in the size line", "5\0\r\nhello\r\n0\r\n\r\n", 15),
    CERR("data longer than its size", "5\r\nhello!\r\n0\r\n\r\n"),
    CERR("data followed by bare LF", "5\r\nhello\n0\r\n\r\n"),
    CERR("data followed by bare CR", "5\r\nhello\r0\r\n\r\n"),
    CERR("last chunk with bare LF", "0\n\r\n"),
    CERR("final CRLF with bare LF", "0\r\n\n"),
    CERR("final CR not followed by LF", "0\r\n\rX"),
    CERR("trailer obs-fold", "0\r\nA: 1\r\n b\r\n\r\n"),
    CERR("trailer starting with whitespace", "0\r\n A: 1\r\n\r\n"),
    CERR("trailer with whitespace before colon", "0\r\nA : 1\r\n\r\n"),
    CERR("trailer without colon", "0\r\nA\r\n\r\n"),
    CERR("trailer with empty name", "0\r\n: x\r\n\r\n"),
    CERRN("trailer value with NUL", "0\r\nA: \0\r\n\r\n", 11),
    CERR("trailer value with bare LF", "0\r\nA: 1\n\r\n"),
    CERR("trailer value with bare CR", "0\r\nA: 1\rB\r\n\r\n"),
    {.why = "trailer section one byte over max_trailers", .in = "0\r\nA: 123\r\n\r\n",
     .want = CK_WANT_ERROR, .max_trailers = 7},
};

/* A deterministic PRNG for split points (time is not used in tests). */
static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* How the input arrives: the first `split` bytes alone (0: no split), then pieces of `piece`
 * bytes (0: random sizes from seed). */
struct plan {
    size_t split;
    size_t piece;
    uint32_t seed;
};

struct chunk_out {
    int result;
    const char *error; /* the decoder's reason after CK_WANT_ERROR */
    char data[512];
    size_t data_len;
    char trailers[512];
    size_t trailers_len;
    size_t consumed;
    uint64_t body_size;
};

/* The input available after one more read. */
static size_t next_avail(const struct plan *pl, uint32_t *seed, size_t avail, size_t n)
{
    size_t step = pl->piece != 0 ? pl->piece : 1 + next_rand(seed) % 9;
    if (avail < pl->split)
        step = pl->split - avail;
    return avail + step < n ? avail + step : n;
}

/*
 * Feeds in[0..n) as `pl` says, the way a connection would: bytes not used stay in front of the
 * next read. Chunk data is taken from the pending bytes without going through the decoder.
 */
static void chunk_feed(const char *in, size_t n, size_t max_trailers, const struct plan *pl,
                       struct chunk_out *out)
{
    struct chunked_decoder c;
    size_t pos = 0, avail = 0;
    uint32_t seed = pl->seed;

    chunked_init(&c, max_trailers);
    memset(out, 0, sizeof *out);
    out->result = CK_WANT_MORE;
    for (;;) {
        if (pos == avail) {
            if (avail == n)
                return;
            avail = next_avail(pl, &seed, avail, n);
        }
        if (c.data_left > 0) {
            size_t take = avail - pos < c.data_left ? avail - pos : (size_t)c.data_left;
            assert_true(out->data_len + take <= sizeof out->data);
            memcpy(out->data + out->data_len, in + pos, take);
            out->data_len += take;
            pos += take;
            chunked_data_taken(&c, take);
            continue;
        }
        size_t have = avail - pos, used = 99999;
        char *buf = dup_exact(in + pos, have);
        enum chunked_rc rc = chunked_parse(&c, buf, have, &used);
        free(buf);
        assert_true(used <= have);
        switch (rc) {
        case CHUNKED_AGAIN:
            assert_int_equal(used, have);
            pos += used;
            if (avail == n)
                return;
            break;
        case CHUNKED_DATA:
            pos += used;
            /* data_left == 0 only for a last-chunk line directly followed by trailer bytes. */
            if (c.data_left == 0)
                assert_true(pos < avail && in[pos] != '\r');
            break;
        case CHUNKED_TRAILER:
            assert_true(used > 0);
            assert_true(out->trailers_len + used <= sizeof out->trailers);
            memcpy(out->trailers + out->trailers_len, in + pos, used);
            out->trailers_len += used;
            pos += used;
            break;
        case CHUNKED_DONE:
            pos += used;
            out->result = CK_WANT_DONE;
            out->consumed = pos;
            out->body_size = c.body_size;
            return;
        case CHUNKED_ERROR:
            assert_non_null(c.error);
            out->result = CK_WANT_ERROR;
            out->error = c.error;
            return;
        }
    }
}

/* Runs one row as `pl` says; an error must carry the reason the whole input gives. */
static void check_chunk_row(const struct chunk_case *cc, const struct plan *pl,
                            const char *whole_error)
{
    struct chunk_out out;
    size_t n = in_len(cc->in, cc->len);
    size_t maxt = cc->max_trailers != 0 ? cc->max_trailers : 8192;

    chunk_feed(cc->in, n, maxt, pl, &out);
    if (out.result != cc->want)
        fail_msg("%s (split %zu piece %zu seed %u): result %d, want %d", cc->why, pl->split,
                 pl->piece, pl->seed, out.result, cc->want);
    if (cc->want == CK_WANT_ERROR) {
        if (whole_error != NULL && strcmp(out.error, whole_error) != 0)
            fail_msg("%s (split %zu piece %zu): error \"%s\", whole input \"%s\"", cc->why,
                     pl->split, pl->piece, out.error, whole_error);
        return;
    }
    if (out.data_len != strlen(cc->data) || memcmp(out.data, cc->data, out.data_len) != 0)
        fail_msg("%s (split %zu piece %zu): data '%.*s'", cc->why, pl->split, pl->piece,
                 (int)out.data_len, out.data);
    if (cc->want == CK_WANT_MORE)
        return;
    if (out.trailers_len != strlen(cc->trailers) ||
        memcmp(out.trailers, cc->trailers, out.trailers_len) != 0)
        fail_msg("%s (split %zu piece %zu): trailers '%.*s'", cc->why, pl->split, pl->piece,
                 (int)out.trailers_len, out.trailers);
    assert_int_equal(out.consumed, cc->consumed != 0 ? cc->consumed : n);
    assert_int_equal(out.body_size, out.data_len);
}

/* Every row whole, byte by byte, two bytes at a time, cut at every split point (the rest in
 * one piece), and in 40 random patterns: the result never depends on how the bytes arrive. */
static void test_chunked_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof chunk_cases / sizeof chunk_cases[0]; i++) {
        const struct chunk_case *cc = &chunk_cases[i];
        size_t n = in_len(cc->in, cc->len);
        struct chunk_out whole;
        struct plan pl = {.piece = n > 0 ? n : 1};
        chunk_feed(cc->in, n, cc->max_trailers != 0 ? cc->max_trailers : 8192, &pl, &whole);
        check_chunk_row(cc, &pl, NULL);
        const char *error = whole.error;
        for (size_t piece = 1; piece <= 2; piece++) {
            pl = (struct plan){.piece = piece};
            check_chunk_row(cc, &pl, error);
        }
        for (size_t split = 1; split < n; split++) {
            pl = (struct plan){.split = split, .piece = n};
            check_chunk_row(cc, &pl, error);
        }
        for (uint32_t seed = 1; seed <= 40; seed++) {
            pl = (struct plan){.seed = seed * 2654435761u};
            check_chunk_row(cc, &pl, error);
        }
    }
}

/* chunked_parse on an exact-size copy of s, so ASan sees any over-read. */
static enum chunked_rc ck_parse(struct chunked_decoder *c, const char *s, size_t n, size_t *used)
{
    char *buf = dup_exact(s, n);
    enum chunked_rc rc = chunked_parse(c, buf, n, used);
    free(buf);
    return rc;
}

/* Decoder edge behaviour that the table cannot express. */
static void test_chunked_api(void **state)
{
    (void)state;
    struct chunked_decoder c;
    size_t used;

    /* A chunk line over max_line (4096) is refused. */
    {
        size_t n = 2 + 4096;
        char *s = malloc(n);
        assert_non_null(s);
        s[0] = '1';
        s[1] = ';';
        memset(s + 2, 'a', n - 2);
        chunked_init(&c, 100);
        assert_int_equal(c.max_line, CHUNKED_MAX_LINE);
        assert_int_equal(ck_parse(&c, s, n, &used), CHUNKED_ERROR);
        /* 4096 bytes exactly is fine. */
        chunked_init(&c, 100);
        assert_int_equal(ck_parse(&c, s, 4096, &used), CHUNKED_AGAIN);
        assert_int_equal(ck_parse(&c, "\r\n", 2, &used), CHUNKED_DATA);
        assert_int_equal(c.data_left, 1);
        free(s);
    }
    /* Calling on with chunk data pending is a caller bug, refused. */
    chunked_init(&c, 100);
    assert_int_equal(ck_parse(&c, "5\r\n", 3, &used), CHUNKED_DATA);
    assert_int_equal(used, 3);
    assert_int_equal(c.data_left, 5);
    assert_int_equal(c.body_size, 5);
    assert_int_equal(ck_parse(&c, "hello", 5, &used), CHUNKED_ERROR);
    /* Taking more than data_left is clamped. */
    chunked_init(&c, 100);
    assert_int_equal(ck_parse(&c, "2\r\n", 3, &used), CHUNKED_DATA);
    chunked_data_taken(&c, 10);
    assert_int_equal(c.data_left, 0);
    assert_int_equal(ck_parse(&c, "\r\n0\r\n\r\n", 7, &used), CHUNKED_DONE);
    assert_int_equal(used, 7);
    /* After DONE nothing more is used; after ERROR the error sticks. */
    assert_int_equal(ck_parse(&c, "x", 1, &used), CHUNKED_DONE);
    assert_int_equal(used, 0);
    chunked_init(&c, 100);
    assert_int_equal(ck_parse(&c, "g", 1, &used), CHUNKED_ERROR);
    assert_int_equal(ck_parse(&c, "0\r\n\r\n", 5, &used), CHUNKED_ERROR);
    /* The last-chunk line followed by trailers comes back on its own (data_left 0). */
    chunked_init(&c, 100);
    assert_int_equal(ck_parse(&c, "0\r\nA: b\r\n\r\n", 11, &used), CHUNKED_DATA);
    assert_int_equal(used, 3);
    assert_int_equal(c.data_left, 0);
    assert_int_equal(ck_parse(&c, "A: b\r\n\r\n", 8, &used), CHUNKED_TRAILER);
    assert_int_equal(used, 6);
    assert_int_equal(ck_parse(&c, "\r\n", 2, &used), CHUNKED_DONE);
    assert_int_equal(used, 2);
    /* A partial trailer line is forwarded as it comes. */
    chunked_init(&c, 100);
    assert_int_equal(ck_parse(&c, "0\r\n", 3, &used), CHUNKED_AGAIN);
    assert_int_equal(ck_parse(&c, "A: ", 3, &used), CHUNKED_TRAILER);
    assert_int_equal(used, 3);
    assert_int_equal(ck_parse(&c, "b\r", 2, &used), CHUNKED_TRAILER);
    assert_int_equal(ck_parse(&c, "\n\r", 2, &used), CHUNKED_TRAILER);
    assert_int_equal(used, 1);
    assert_int_equal(ck_parse(&c, "\r", 1, &used), CHUNKED_AGAIN);
    assert_int_equal(ck_parse(&c, "\n", 1, &used), CHUNKED_DONE);
    /* The sum of chunk sizes is bounded too (2^62), not only each size. */
    chunked_init(&c, 100);
    assert_int_equal(ck_parse(&c, "4000000000000000\r\n", 18, &used), CHUNKED_DATA);
    assert_int_equal(c.body_size, UINT64_C(1) << 62);
    chunked_data_taken(&c, (size_t)c.data_left);
    assert_int_equal(ck_parse(&c, "\r\n1\r\n", 5, &used), CHUNKED_ERROR);
    /* A trailer line over max_line is refused; max_line is the caller's to lower. */
    chunked_init(&c, 100);
    c.max_line = 8;
    assert_int_equal(ck_parse(&c, "0\r\n", 3, &used), CHUNKED_AGAIN);
    assert_int_equal(ck_parse(&c, "A: 12345\r\n", 10, &used), CHUNKED_TRAILER);
    assert_int_equal(ck_parse(&c, "A: 123456\r\n", 11, &used), CHUNKED_ERROR);
    assert_string_equal(c.error, "trailer field line too long");
    /* max_trailers 0 means no trailer field at all. */
    chunked_init(&c, 0);
    assert_int_equal(ck_parse(&c, "0\r\n\r\n", 5, &used), CHUNKED_DONE);
    chunked_init(&c, 0);
    assert_int_equal(ck_parse(&c, "0\r\n", 3, &used), CHUNKED_AGAIN);
    assert_int_equal(ck_parse(&c, "A: b\r\n\r\n", 8, &used), CHUNKED_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_table),
        cmocka_unit_test(test_chunked_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
