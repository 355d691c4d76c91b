/*
 * test_body.c — the body relay: Content-Length, chunked (extensions, trailers; re-encoded
 * canonically or dechunked), close-delimited, truncation, invalid framing and out_limit
 * back-pressure. Every input is fed whole, byte by byte, split at every point, queued as many
 * chains at once, and in random pieces (fixed seed); the output must not depend on the split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "portico/body.h"
#include "alloc_fail.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_TRAILERS 512
/* Trailer names of 31, 32 (TRAILER_NAME_HOLD) and 33 bytes, and a "proxy-" one of 32. */
#define N31 "X-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define N32 "X-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define N33 "X-ccccccccccccccccccccccccccccccc"
#define P32 "Proxy-dddddddddddddddddddddddddd"
#define X64 "0123456789012345678901234567890123456789012345678901234567890123"

enum outcome {
    DONE,      /* body_move completes the body */
    EOF_OK,    /* complete only at EOF (close-delimited) */
    TRUNCATED, /* body_eof returns -1 */
    INVALID,   /* body_move returns -1 */
};

struct body_row {
    const char *why;
    enum h1_framing in;
    uint64_t content_length;
    bool out_chunked;
    const char *input;
    enum outcome outcome;
    const char *payload;  /* body bytes the receiver must see */
    const char *trailers; /* trailer lines forwarded (out_chunked only), "" for none */
    const char *whole;    /* exact output when the input comes in one piece; NULL: not checked */
    const char *rest;     /* bytes left in `in` after the body (pipelining) */
};

static const struct body_row rows[] = {
    {"Content-Length body, raw", H1_BODY_LENGTH, 5, false, "hello", DONE, "hello", "", "hello",
     ""},
    {"Content-Length stops at its length: the next request stays", H1_BODY_LENGTH, 5, false,
     "helloGET / HTTP/1.1\r\n", DONE, "hello", "", "hello", "GET / HTTP/1.1\r\n"},
    {"Content-Length 0: nothing to move", H1_BODY_LENGTH, 0, false, "", DONE, "", "", "", ""},
    {"Content-Length 0 with a following request", H1_BODY_LENGTH, 0, false, "NEXT", DONE, "", "",
     "", "NEXT"},
    {"Content-Length re-encoded as chunked", H1_BODY_LENGTH, 5, true, "hello", DONE, "hello", "",
     "5\r\nhello\r\n0\r\n\r\n", ""},
    {"empty Content-Length body re-encoded as chunked still ends", H1_BODY_LENGTH, 0, true, "",
     DONE, "", "", "0\r\n\r\n", ""},
    {"Content-Length short of its length", H1_BODY_LENGTH, 10, false, "hello", TRUNCATED,
     "hello", "", "hello", ""},
    {"no body at all", H1_BODY_NONE, 0, false, "GET", DONE, "", "", "", "GET"},
    {"chunked, dechunked", H1_BODY_CHUNKED, 0, false, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     DONE, "hello world", "", "hello world", ""},
    {"chunked, re-encoded", H1_BODY_CHUNKED, 0, true, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     DONE, "hello world", "", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", ""},
    {"uppercase hex and leading zeros become canonical", H1_BODY_CHUNKED, 0, true,
     "00A\r\n0123456789\r\n000\r\n\r\n", DONE, "0123456789", "", "a\r\n0123456789\r\n0\r\n\r\n",
     ""},
    {"chunk extensions are dropped", H1_BODY_CHUNKED, 0, true,
     "5;name=value;q=\"a;b\\\"c\"\r\nhello\r\n0;last\r\n\r\n", DONE, "hello", "",
     "5\r\nhello\r\n0\r\n\r\n", ""},
    {"extensions with whitespace around ; and =", H1_BODY_CHUNKED, 0, false,
     "5 ; a = b\t;c\r\nhello\r\n0\r\n\r\n", DONE, "hello", "", "hello", ""},
    {"trailers forwarded when re-encoding", H1_BODY_CHUNKED, 0, true,
     "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n", DONE, "hello",
     "X-Sum: 1\r\nX-Other: two\r\n", "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other: two\r\n\r\n", ""},
    {"refused trailer fields are dropped line by line, the others kept", H1_BODY_CHUNKED, 0,
     true,
     "5\r\nhello\r\n0\r\nX-Digest: a\r\nhOsT: evil\r\nX-Forwarded-For: 127.6.6.6\r\n"
     "Portico-Fault: status=503\r\nContent-Digest: sha-256=:x:\r\nTransfer-Encoding: x\r\n"
     "Proxy-Authorization-With-A-Very-Long-Name: y\r\nX-Name-Longer-Than-The-Thirty-Two-Held: z\r\n"
     "Te:\r\nServer-Timing: db;dur=1\r\n\r\n",
     DONE, "hello",
     "X-Digest: a\r\nContent-Digest: sha-256=:x:\r\nX-Name-Longer-Than-The-Thirty-Two-Held: z\r\n"
     "Server-Timing: db;dur=1\r\n",
     "5\r\nhello\r\n0\r\nX-Digest: a\r\nContent-Digest: sha-256=:x:\r\n"
     "X-Name-Longer-Than-The-Thirty-Two-Held: z\r\nServer-Timing: db;dur=1\r\n\r\n",
     ""},
    {"names about the 32 bytes held: judged whole, or by their \"proxy-\" prefix", H1_BODY_CHUNKED,
     0, true,
     "0\r\n" N31 ": 1\r\n" N32 ":2\r\n" P32 ": 3\r\n" N33 ": 4\r\nProxy: 5\r\nproxy-: 6\r\n\r\n",
     DONE, "", N31 ": 1\r\n" N32 ":2\r\n" N33 ": 4\r\nProxy: 5\r\n",
     "0\r\n" N31 ": 1\r\n" N32 ":2\r\n" N33 ": 4\r\nProxy: 5\r\n\r\n", ""},
    {"a trailer section of refused fields only leaves an empty one", H1_BODY_CHUNKED, 0, true,
     "0\r\nHost: a\r\nConnection: close\r\n\r\nNEXT", DONE, "", "", "0\r\n\r\n", "NEXT"},
    {"trailers dropped when dechunking", H1_BODY_CHUNKED, 0, false,
     "5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", DONE, "hello", "", "hello", ""},
    {"empty chunked body", H1_BODY_CHUNKED, 0, true, "0\r\n\r\n", DONE, "", "", "0\r\n\r\n", ""},
    {"empty chunked body with a trailer", H1_BODY_CHUNKED, 0, true, "0\r\nA: b\r\n\r\n", DONE, "",
     "A: b\r\n", "0\r\nA: b\r\n\r\n", ""},
    {"chunked stops after the final CRLF: the next request stays", H1_BODY_CHUNKED, 0, false,
     "3\r\nabc\r\n0\r\n\r\nGET /", DONE, "abc", "", "abc", "GET /"},
    {"binary chunk data with CRLF inside", H1_BODY_CHUNKED, 0, true, "4\r\n\r\n\r\n\r\n0\r\n\r\n",
     DONE, "\r\n\r\n", "", "4\r\n\r\n\r\n\r\n0\r\n\r\n", ""},
    {"chunked without the last chunk", H1_BODY_CHUNKED, 0, true, "5\r\nhello\r\n", TRUNCATED,
     "hello", NULL, NULL, ""},
    {"chunked cut inside chunk data", H1_BODY_CHUNKED, 0, false, "5\r\nhel", TRUNCATED, "hel",
     NULL, NULL, ""},
    {"chunked cut before the final CRLF", H1_BODY_CHUNKED, 0, false, "0\r\n", TRUNCATED, "", NULL,
     NULL, ""},
    {"chunk size that is not hex", H1_BODY_CHUNKED, 0, false, "g\r\n", INVALID, NULL, NULL, NULL,
     NULL},
    {"empty chunk size", H1_BODY_CHUNKED, 0, false, "\r\nhello\r\n", INVALID, NULL, NULL, NULL,
     NULL},
    {"negative chunk size", H1_BODY_CHUNKED, 0, false, "-5\r\nhello\r\n0\r\n\r\n", INVALID, NULL,
     NULL, NULL, NULL},
    {"chunk size over 16 hex digits", H1_BODY_CHUNKED, 0, false, "00000000000000001\r\nx", INVALID,
     NULL, NULL, NULL, NULL},
    {"chunk size over 2^62", H1_BODY_CHUNKED, 0, false, "8000000000000000\r\n", INVALID, NULL,
     NULL, NULL, NULL},
    {"bare LF after the chunk size", H1_BODY_CHUNKED, 0, false, "5\nhello\r\n0\r\n\r\n", INVALID,
     NULL, NULL, NULL, NULL},
    {"data longer than its chunk size", H1_BODY_CHUNKED, 0, false, "3\r\nhello\r\n0\r\n\r\n",
     INVALID, NULL, NULL, NULL, NULL},
    {"bare LF after chunk data", H1_BODY_CHUNKED, 0, false, "5\r\nhello\n0\r\n\r\n", INVALID, NULL,
     NULL, NULL, NULL},
    {"extension without a name", H1_BODY_CHUNKED, 0, false, "5;=x\r\nhello\r\n0\r\n\r\n", INVALID,
     NULL, NULL, NULL, NULL},
    {"space inside the chunk size", H1_BODY_CHUNKED, 0, false, "5 5\r\n", INVALID, NULL, NULL,
     NULL, NULL},
    {"obs-fold in a trailer", H1_BODY_CHUNKED, 0, true, "0\r\nA: b\r\n c\r\n\r\n", INVALID, NULL,
     NULL, NULL, NULL},
    {"whitespace before the colon of a trailer", H1_BODY_CHUNKED, 0, true, "0\r\nA : b\r\n\r\n",
     INVALID, NULL, NULL, NULL, NULL},
    {"trailer without a colon", H1_BODY_CHUNKED, 0, false, "0\r\nnocolon\r\n\r\n", INVALID, NULL,
     NULL, NULL, NULL},
    {"trailer section over max_trailers", H1_BODY_CHUNKED, 0, true,
     "0\r\nX-Long: " X64 X64 X64 X64 X64 X64 X64 X64 "\r\n\r\n",
     INVALID, NULL, NULL, NULL, NULL},
    {"close-delimited, raw: complete at EOF", H1_BODY_CLOSE, 0, false, "all of it", EOF_OK,
     "all of it", "", "all of it", ""},
    {"close-delimited re-encoded: last chunk written at EOF", H1_BODY_CLOSE, 0, true, "all of it",
     EOF_OK, "all of it", "", "9\r\nall of it\r\n0\r\n\r\n", ""},
    {"close-delimited and empty", H1_BODY_CLOSE, 0, true, "", EOF_OK, "", "", "0\r\n\r\n", ""},
};

/* Dechunked with the trailer lines kept apart, as for an HTTP/2 stream (body_sink.trailers):
 * `trailers` is what must be kept, filtered as when re-encoding. */
static const struct body_row apart_rows[] = {
    {"trailers kept apart, refused ones dropped", H1_BODY_CHUNKED, 0, false,
     "5\r\nhello\r\n0\r\nX-Sum: 1\r\nHost: evil\r\nTE: trailers\r\nX-Other:  two \r\n\r\nNEXT",
     DONE, "hello", "X-Sum: 1\r\nX-Other:  two \r\n", "hello", "NEXT"},
    {"no trailers to keep apart", H1_BODY_CHUNKED, 0, false, "5\r\nhello\r\n0\r\n\r\n", DONE,
     "hello", "", "hello", ""},
    {"refused trailers only: none kept apart", H1_BODY_CHUNKED, 0, false,
     "0\r\nConnection: close\r\n\r\n", DONE, "", "", "", ""},
    {"a trailer section over max_trailers kept apart too", H1_BODY_CHUNKED, 0, false,
     "0\r\nX-Long: " X64 X64 X64 X64 X64 X64 X64 X64 "\r\n\r\n", INVALID, NULL, NULL, NULL, NULL},
};

/* ---- a strict decoder of canonical chunked output, independent of the code under test ---- */

/* Decodes out into payload and trailers; fails unless every chunk size is lowercase hex without
 * leading zeros and without extensions, with no empty data chunk, ending in "0\r\n" trailers
 * "\r\n". Returns the bytes consumed. */
static size_t decode_canonical(const char *why, const char *out, size_t len, char *payload,
                               size_t *plen, char *trailers, size_t *tlen)
{
    size_t i = 0;
    *plen = *tlen = 0;
    for (;;) {
        size_t start = i;
        uint64_t size = 0;
        while (i < len && ((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f'))) {
            size = size * 16 + (uint64_t)(out[i] <= '9' ? out[i] - '0' : out[i] - 'a' + 10);
            i++;
        }
        if (i == start || (out[start] == '0' && i - start > 1))
            fail_msg("%s: not a canonical chunk size at %zu: %.*s", why, start, (int)(len - start),
                     out + start);
        if (i + 2 > len || out[i] != '\r' || out[i + 1] != '\n')
            fail_msg("%s: chunk size line not ended by CRLF at %zu", why, i);
        i += 2;
        if (size == 0)
            break;
        if (i + size + 2 > len || out[i + size] != '\r' || out[i + size + 1] != '\n')
            fail_msg("%s: chunk data of %llu not followed by CRLF", why,
                     (unsigned long long)size);
        memcpy(payload + *plen, out + i, size);
        *plen += size;
        i += size + 2;
    }
    /* trailer lines up to the empty line */
    for (;;) {
        const char *nl = memmem(out + i, len - i, "\r\n", 2);
        if (!nl)
            fail_msg("%s: output ends inside the trailer section", why);
        size_t l = (size_t)(nl - (out + i)) + 2;
        if (l == 2)
            return i + 2;
        memcpy(trailers + *tlen, out + i, l);
        *tlen += l;
        i += l;
    }
}

/* ---- feeding ---- */

enum feed_mode { FEED_EACH, FEED_QUEUED };

struct result {
    int move_rc;   /* -1 as soon as body_move failed */
    bool done;     /* after the input, before EOF */
    int eof_rc;    /* body_eof after the input (when not done and no error) */
    char *out;     /* malloc'd output */
    size_t out_len;
    char *rest;    /* malloc'd bytes left in the input buffer */
    size_t rest_len;
    bool apart;     /* the trailer lines were to be kept apart (trailers_out) */
    char *trailers; /* malloc'd trailer lines kept apart */
    size_t trailers_len;
    uint64_t bytes;
};

static char *drain_all(struct evbuffer *b, size_t *len)
{
    *len = evbuffer_get_length(b);
    char *p = malloc(*len + 1);
    assert_non_null(p);
    evbuffer_remove(b, p, *len);
    p[*len] = '\0';
    return p;
}

/* Feeds input cut at cuts[0..ncuts) (sorted offsets). FEED_EACH moves after every piece;
 * FEED_QUEUED queues every piece as its own chain, then moves once. */
static struct result run(const struct body_row *row, const size_t *cuts, size_t ncuts,
                         enum feed_mode mode, bool apart)
{
    struct body_relay r;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    struct result res = {0};
    size_t len = strlen(row->input), prev = 0;
    body_init(&r, row->in, row->content_length, row->out_chunked, MAX_TRAILERS);
    struct evbuffer *trailers = evbuffer_new();
    r.trailers_out = apart ? trailers : NULL; /* HTTP/2's sink */
    res.apart = apart;
    for (size_t i = 0; i <= ncuts && res.move_rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end > prev) {
            if (mode == FEED_QUEUED) /* a reference is always a chain of its own */
                evbuffer_add_reference(in, row->input + prev, end - prev, NULL, NULL);
            else
                evbuffer_add(in, row->input + prev, end - prev);
        }
        prev = end;
        if (mode == FEED_EACH || i == ncuts)
            res.move_rc = body_move(&r, in, out, SIZE_MAX);
    }
    res.done = r.done;
    if (res.move_rc == 0 && !r.done)
        res.eof_rc = body_eof(&r, out);
    if ((res.move_rc != 0 || res.eof_rc != 0) && !r.error)
        fail_msg("%s: failed without a reason", row->why);
    res.bytes = r.bytes;
    res.out = drain_all(out, &res.out_len);
    res.rest = drain_all(in, &res.rest_len);
    res.trailers = drain_all(trailers, &res.trailers_len);
    evbuffer_free(trailers);
    evbuffer_free(in);
    evbuffer_free(out);
    return res;
}

/* Checks one run against its row; `whole`: the input came in one piece. */
static void check(const struct body_row *row, struct result *res, bool whole, const char *how)
{
    switch (row->outcome) {
    case INVALID:
        if (res->move_rc != -1)
            fail_msg("%s (%s): accepted", row->why, how);
        goto out;
    case DONE:
        if (res->move_rc != 0 || !res->done)
            fail_msg("%s (%s): rc %d done %d", row->why, how, res->move_rc, res->done);
        break;
    case EOF_OK:
        if (res->move_rc != 0 || res->done || res->eof_rc != 0)
            fail_msg("%s (%s): rc %d done %d eof %d", row->why, how, res->move_rc, res->done,
                     res->eof_rc);
        break;
    case TRUNCATED:
        if (res->move_rc != 0 || res->done || res->eof_rc != -1)
            fail_msg("%s (%s): rc %d done %d eof %d", row->why, how, res->move_rc, res->done,
                     res->eof_rc);
        break;
    }
    if (res->rest_len != strlen(row->rest) || memcmp(res->rest, row->rest, res->rest_len) != 0)
        fail_msg("%s (%s): left '%s', want '%s'", row->why, how, res->rest, row->rest);
    if (res->bytes != strlen(row->payload))
        fail_msg("%s (%s): %llu payload bytes", row->why, how, (unsigned long long)res->bytes);
    if (whole && row->whole &&
        (res->out_len != strlen(row->whole) || memcmp(res->out, row->whole, res->out_len) != 0))
        fail_msg("%s: output '%s', want '%s'", row->why, res->out, row->whole);
    if (row->out_chunked && row->outcome != TRUNCATED) {
        char payload[256], trailers[256];
        size_t plen, tlen;
        size_t used = decode_canonical(row->why, res->out, res->out_len, payload, &plen, trailers,
                                       &tlen);
        if (used != res->out_len)
            fail_msg("%s (%s): bytes after the last chunk", row->why, how);
        if (plen != strlen(row->payload) || memcmp(payload, row->payload, plen) != 0 ||
            tlen != strlen(row->trailers) || memcmp(trailers, row->trailers, tlen) != 0)
            fail_msg("%s (%s): decoded '%.*s' + '%.*s'", row->why, how, (int)plen, payload,
                     (int)tlen, trailers);
    } else if (!row->out_chunked) {
        if (res->out_len != strlen(row->payload) ||
            memcmp(res->out, row->payload, res->out_len) != 0)
            fail_msg("%s (%s): output '%s', want '%s'", row->why, how, res->out, row->payload);
    }
    if (res->apart && (res->trailers_len != strlen(row->trailers) ||
                              memcmp(res->trailers, row->trailers, res->trailers_len) != 0))
        fail_msg("%s (%s): trailers '%s', want '%s'", row->why, how, res->trailers,
                 row->trailers);
    if (!res->apart && res->trailers_len != 0)
        fail_msg("%s (%s): trailers kept without a place for them", row->why, how);
out:
    free(res->out);
    free(res->rest);
    free(res->trailers);
}

static void test_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct result res = run(&rows[i], NULL, 0, FEED_EACH, false);
        check(&rows[i], &res, true, "whole");
    }
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    size_t cuts[1024];
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        size_t len = strlen(rows[i].input);
        assert_true(len < ARRAY_LEN(cuts));
        for (size_t c = 0; c + 1 < len; c++)
            cuts[c] = c + 1;
        for (int mode = FEED_EACH; mode <= FEED_QUEUED; mode++) {
            struct result res = run(&rows[i], cuts, len ? len - 1 : 0, mode, false);
            check(&rows[i], &res, false, mode == FEED_EACH ? "1 byte at a time" : "1-byte chains");
        }
    }
}

/* Every single split point, each half moved on its own and both queued as two chains. */
static void test_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        size_t len = strlen(rows[i].input);
        for (size_t cut = 0; cut <= len; cut++) {
            for (int mode = FEED_EACH; mode <= FEED_QUEUED; mode++) {
                struct result res = run(&rows[i], &cut, 1, mode, false);
                check(&rows[i], &res, false, mode == FEED_EACH ? "split" : "split chains");
            }
        }
    }
}

/* Trailer lines kept apart (HTTP/2), the input whole and cut at every split point. */
/* body_rest_in, asked of a relay that already moved the input's first `cut` bytes (every cut),
 * over every prefix of what follows, queued whole or one chain per byte (more chains than one
 * peek takes): true exactly from the prefix where the body ends (never for a body that is cut,
 * invalid or close-delimited), and the relay left as it was. */
static void test_rest_in(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        const struct body_row *row = &rows[i];
        size_t len = strlen(row->input);
        size_t end = row->outcome == DONE ? len - strlen(row->rest) : SIZE_MAX;
        for (size_t cut = 0; cut <= len; cut++) {
            struct body_relay r;
            body_init(&r, row->in, row->content_length, row->out_chunked, MAX_TRAILERS);
            struct evbuffer *first = evbuffer_new(), *out = evbuffer_new();
            evbuffer_add(first, row->input, cut);
            int rc = body_move(&r, first, out, SIZE_MAX);
            evbuffer_free(first);
            evbuffer_free(out);
            if (rc != 0)
                continue; /* invalid before the cut: nothing left to ask */
            for (size_t e = cut; e <= len; e++) {
                struct evbuffer *in = evbuffer_new();
                if ((cut + e) % 2) {
                    for (size_t k = cut; k < e; k++) /* a reference is a chain of its own */
                        evbuffer_add_reference(in, row->input + k, 1, NULL, NULL);
                } else {
                    evbuffer_add(in, row->input + cut, e - cut);
                }
                struct body_relay before = r;
                bool want = r.done || e >= end;
                if (body_rest_in(&r, in) != want)
                    fail_msg("%s: moved %zu, then %zu more: %s", row->why, cut, e - cut,
                             want ? "the rest is there" : "the rest is not all there");
                assert_memory_equal(&before, &r, sizeof(r));
                evbuffer_free(in);
                checked++;
            }
        }
    }
    print_message("checked %zu (moved, buffered) pairs\n", checked);
}

static void test_trailers_apart(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(apart_rows); i++) {
        struct result res = run(&apart_rows[i], NULL, 0, FEED_EACH, true);
        check(&apart_rows[i], &res, true, "apart, whole");
        size_t len = strlen(apart_rows[i].input);
        for (size_t cut = 0; cut <= len; cut++) {
            for (int mode = FEED_EACH; mode <= FEED_QUEUED; mode++) {
                res = run(&apart_rows[i], &cut, 1, mode, true);
                check(&apart_rows[i], &res, false, "apart, split");
            }
        }
    }
}

/* xorshift32: the same pieces on every machine and every run. */
static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_random_splits(void **state)
{
    (void)state;
    uint32_t seed = 0x5eed1234;
    size_t cuts[1024];
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        size_t len = strlen(rows[i].input);
        for (int round = 0; round < 50; round++) {
            size_t n = 0;
            for (size_t at = 1 + next_rand(&seed) % 7; at < len; at += 1 + next_rand(&seed) % 7)
                cuts[n++] = at;
            enum feed_mode mode = round % 2 ? FEED_QUEUED : FEED_EACH;
            struct result res = run(&rows[i], cuts, n, mode, false);
            check(&rows[i], &res, false, "random");
        }
    }
}

/* The reasons of failures are specific. */
static void test_error_reasons(void **state)
{
    (void)state;
    static const struct {
        enum h1_framing in;
        const char *input;
        const char *reason;
    } reasons[] = {
        {H1_BODY_LENGTH, "abc", "connection closed before Content-Length bytes"}, /* at EOF */
        {H1_BODY_CHUNKED, "3\r\nabc\r\n", "connection closed before the last chunk"}, /* EOF */
        {H1_BODY_CHUNKED, "3\r\nabcd", "missing CRLF after chunk data"},          /* framing */
        {H1_BODY_CHUNKED, "3\nabc", "bare LF"},                                   /* LF alone */
        {H1_BODY_CHUNKED, "3\r\rabc", "bare CR"},                                /* CR alone */
    };
    for (size_t i = 0; i < ARRAY_LEN(reasons); i++) {
        struct body_relay r;
        struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
        body_init(&r, reasons[i].in, 10, false, MAX_TRAILERS);
        evbuffer_add(in, reasons[i].input, strlen(reasons[i].input));
        int rc = body_move(&r, in, out, SIZE_MAX);
        bool framing_error = rc != 0;
        if (rc == 0)
            rc = body_eof(&r, out);
        assert_int_equal(rc, -1);
        if (!r.error || strstr(r.error, reasons[i].reason) == NULL)
            fail_msg("'%s': reason '%s', want '%s'", reasons[i].input, r.error ? r.error : "",
                     reasons[i].reason);
        /* a framing error sticks */
        evbuffer_add(in, "0\r\n\r\n", 5);
        if (framing_error)
            assert_int_equal(body_move(&r, in, out, SIZE_MAX), -1);
        evbuffer_free(in);
        evbuffer_free(out);
    }
}

/* A completed body ignores what follows, and EOF after completion is fine. */
static void test_done_is_final(void **state)
{
    (void)state;
    struct body_relay r;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    body_init(&r, H1_BODY_CHUNKED, 0, true, MAX_TRAILERS);
    evbuffer_add(in, "1\r\na\r\n0\r\n\r\n", 11);
    assert_int_equal(body_move(&r, in, out, SIZE_MAX), 0);
    assert_true(r.done);
    size_t n = evbuffer_get_length(out);
    evbuffer_add(in, "junk", 4);
    assert_int_equal(body_move(&r, in, out, SIZE_MAX), 0);
    assert_int_equal(body_eof(&r, out), 0);
    assert_int_equal(evbuffer_get_length(out), n);
    assert_int_equal(evbuffer_get_length(in), 4);
    evbuffer_free(in);
    evbuffer_free(out);
}

/* out_limit: once out holds more than the limit nothing moves; draining it resumes the relay,
 * and the receiver still gets every byte in order. */
static void test_back_pressure(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        enum h1_framing in;
        uint64_t cl;
        bool out_chunked;
        const char *input;
        const char *whole; /* what a relay without a limit writes */
    } bp[] = {
        {"Content-Length", H1_BODY_LENGTH, 10, false, "0123456789", "0123456789"},
        {"chunked re-encoded", H1_BODY_CHUNKED, 0, true,
         "3\r\nabc\r\n3\r\ndef\r\n0\r\nT: 1\r\n\r\n", "3\r\nabc\r\n3\r\ndef\r\n0\r\nT: 1\r\n\r\n"},
        {"chunked dechunked", H1_BODY_CHUNKED, 0, false, "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
         "abcdef"},
        {"close-delimited re-encoded", H1_BODY_CLOSE, 0, true, "abcdef", "6\r\nabcdef\r\n"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bp); i++) {
        struct body_relay r;
        struct evbuffer *in = evbuffer_new(), *out = evbuffer_new(), *client = evbuffer_new();
        body_init(&r, bp[i].in, bp[i].cl, bp[i].out_chunked, MAX_TRAILERS);
        evbuffer_add(in, bp[i].input, strlen(bp[i].input));

        /* out already over the limit: nothing moves */
        evbuffer_add(out, "XXXX", 4);
        assert_int_equal(body_move(&r, in, out, 3), 0);
        assert_int_equal(evbuffer_get_length(out), 4);
        assert_int_equal(evbuffer_get_length(in), strlen(bp[i].input));
        assert_false(r.done);
        evbuffer_drain(out, 4);

        /* limit 0: each call moves one step while out is empty, then stops */
        int calls = 0;
        while (!r.done && evbuffer_get_length(in) > 0 && calls < 100) {
            size_t before = evbuffer_get_length(in);
            assert_int_equal(body_move(&r, in, out, 0), 0);
            assert_int_equal(body_move(&r, in, out, 0), 0); /* out > 0 now: a no-op */
            if (evbuffer_get_length(out) == 0 && evbuffer_get_length(in) == before)
                fail_msg("%s: stuck with an empty out buffer", bp[i].why);
            evbuffer_add_buffer(client, out); /* the client reads */
            calls++;
        }
        if (bp[i].in == H1_BODY_CLOSE)
            assert_int_equal(body_eof(&r, client), 0);
        else
            assert_true(r.done);
        if (bp[i].in == H1_BODY_CHUNKED && calls < 2)
            fail_msg("%s: moved everything in %d call(s) despite the limit", bp[i].why, calls);
        size_t len;
        char *got = drain_all(client, &len);
        const char *want = bp[i].whole;
        if (bp[i].in == H1_BODY_CLOSE)
            want = "6\r\nabcdef\r\n0\r\n\r\n";
        if (len != strlen(want) || memcmp(got, want, len) != 0)
            fail_msg("%s: '%s', want '%s'", bp[i].why, got, want);
        free(got);
        evbuffer_free(in);
        evbuffer_free(out);
        evbuffer_free(client);
    }
}

/* A large body moves whole and counts every byte (no copy limits inside). */
static void test_large_body(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    char *data = malloc(N);
    assert_non_null(data);
    for (size_t i = 0; i < N; i++)
        data[i] = (char)('a' + i % 26);
    struct body_relay r;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    body_init(&r, H1_BODY_LENGTH, N, false, MAX_TRAILERS);
    for (size_t off = 0; off < N; off += 4096) {
        evbuffer_add(in, data + off, 4096);
        assert_int_equal(body_move(&r, in, out, SIZE_MAX), 0);
    }
    assert_true(r.done);
    assert_int_equal(r.bytes, N);
    assert_int_equal(evbuffer_get_length(out), N);
    assert_memory_equal(evbuffer_pullup(out, -1), data, N);
    evbuffer_free(in);
    evbuffer_free(out);
    free(data);
}

/* Whichever allocation fails while a body is re-encoded as chunked, body_move either moves it
 * whole, framing and all, or says it ran out of memory: never a chunk size without its data,
 * nor data without its CRLF, which the origin would read as the start of something else (the
 * additions went unchecked: "1f4\r\n" then no data, and 0 returned). out is filled first to
 * every length around a chain's end, so that each addition in turn is the one that needs a
 * new chain. */
static void test_out_of_memory(void **state)
{
    (void)state;
    static const size_t sizes[] = {500, 3000}; /* copied; moved as chains */
    static char data[3000], fill[1200];
    memset(data, 'd', sizeof(data));
    memset(fill, 'h', sizeof(fill));
    unsigned failed = 0;
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        for (size_t pre = 900; pre <= sizeof(fill); pre++) {
            for (long k = 0; k < 4; k++) {
                struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
                assert_non_null(in);
                assert_non_null(out);
                assert_int_equal(evbuffer_add(in, data, sizes[i]), 0);
                assert_int_equal(evbuffer_add(out, fill, pre), 0);
                struct body_relay r;
                body_init(&r, H1_BODY_LENGTH, sizes[i], true, 0);
                alloc_fail_at(k);
                int rc = body_move(&r, in, out, SIZE_MAX);
                alloc_fail_at(-1);
                if (rc != 0) {
                    assert_int_equal(rc, -1);
                    assert_true(r.out_of_memory);
                    assert_string_equal(r.error, "out of memory");
                    failed++;
                } else {
                    char framing[16];
                    int n = snprintf(framing, sizeof(framing), "%zx\r\n", sizes[i]);
                    size_t want = pre + (size_t)n + sizes[i] + 2 + 5;
                    assert_true(r.done);
                    assert_int_equal(evbuffer_get_length(out), want);
                    const char *p = (const char *)evbuffer_pullup(out, -1);
                    assert_memory_equal(p + pre, framing, (size_t)n);
                    assert_memory_equal(p + pre + n, data, sizes[i]);
                    assert_memory_equal(p + pre + (size_t)n + sizes[i], "\r\n0\r\n\r\n", 7);
                }
                evbuffer_free(in);
                evbuffer_free(out);
            }
        }
    }
    assert_true(failed > 0); /* some addition did need memory, and did not get it */
}

/* The same for a trailer section re-encoded: a trailer line whose name went and whose value
 * did not ("0\r\nX-Sum\r\n\r\n"), or whose CRLF did not (the next line glued to it), is not the
 * trailer that came; body_move says out of memory, or moves the section whole. (The filter's
 * additions went unchecked: a section with a hole in it, and 0 returned.) A data chunk of 40 to
 * 80 bytes behind out's fill puts a chain's end in each trailer line in turn (the chunk size's
 * printf makes room for 64 bytes first). */
static void test_trailers_out_of_memory(void **state)
{
    (void)state;
    static const char trailers[] = "0\r\nX-Sum: 12345\r\nX-Other: two\r\n\r\n";
    static char fill[1100];
    memset(fill, 'h', sizeof(fill));
    unsigned failed = 0;
    for (size_t d = 40; d <= 80; d++) {
        char body[160], want[160];
        char data[81];
        memset(data, 'd', d);
        int blen = snprintf(body, sizeof(body), "%zx\r\n%.*s\r\n%s", d, (int)d, data, trailers);
        int wlen = snprintf(want, sizeof(want), "%zx\r\n%.*s\r\n%s", d, (int)d, data, trailers);
        for (size_t pre = 900; pre <= sizeof(fill); pre++) {
            for (long k = 0; k < 3; k++) {
                struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
                assert_non_null(in);
                assert_non_null(out);
                assert_int_equal(evbuffer_add(in, body, (size_t)blen), 0);
                assert_int_equal(evbuffer_add(out, fill, pre), 0);
                struct body_relay r;
                body_init(&r, H1_BODY_CHUNKED, 0, true, MAX_TRAILERS);
                alloc_fail_at(k);
                int rc = body_move(&r, in, out, SIZE_MAX);
                alloc_fail_at(-1);
                const char *p = (const char *)evbuffer_pullup(out, -1);
                size_t len = evbuffer_get_length(out);
                if (rc != 0) {
                    assert_int_equal(rc, -1);
                    if (!r.out_of_memory)
                        fail_msg("data %zu, pre %zu, allocation %ld failed: -1, '%s'", d, pre, k,
                                 r.error);
                    failed++;
                } else if (!r.done || len != pre + (size_t)wlen ||
                           memcmp(p + pre, want, (size_t)wlen) != 0) {
                    fail_msg("data %zu, pre %zu, allocation %ld failed: moved '%.*s' and said 0",
                             d, pre, k, (int)(len - pre), p + pre);
                }
                evbuffer_free(in);
                evbuffer_free(out);
            }
        }
    }
    assert_true(failed > 0);
}

/* Every other addition a body makes, each failed in turn with a chain's end anywhere before
 * it (out's fill of 0 to 2,200 bytes): the end of a body ("0\r\n\r\n" after Content-Length or
 * chunked framing, or at the close), a close-delimited body's chunk, a body moved as chains
 * whose last one it shares with the next request (a copy), and a trailer section kept apart
 * (HTTP/2's trailers_out). Whole, or -1 out of memory: never 0 with a part missing. A payload
 * of 100 bytes: the chunk size's printf makes room for 64 bytes first, so that a chain's end
 * falls after a shorter chunk's CRLF only when that room was all there was. */
#define D10 "0123456789"
#define D100 D10 D10 D10 D10 D10 D10 D10 D10 D10 D10
static const struct {
    const char *why;
    enum h1_framing in;
    uint64_t length;
    const char *body;          /* NULL: BIG_BODY bytes of 'd', then NEXT */
    bool out_chunked;
    bool eof;                  /* then the connection's end (body_eof) */
    const char *want;          /* out, after the fill (NULL: the big body re-chunked) */
    const char *want_apart;    /* trailers_out (NULL: not set) */
} oom_rows[] = {
    {"Content-Length, re-chunked", H1_BODY_LENGTH, 100, D100, true, false,
     "64\r\n" D100 "\r\n0\r\n\r\n", NULL},
    {"chunked, re-chunked", H1_BODY_CHUNKED, 0, "64\r\n" D100 "\r\n0\r\n\r\n", true, false,
     "64\r\n" D100 "\r\n0\r\n\r\n", NULL},
    {"until the close, re-chunked", H1_BODY_CLOSE, 0, D100, true, true,
     "64\r\n" D100 "\r\n0\r\n\r\n", NULL},
    {"Content-Length moved, the next request behind it", H1_BODY_LENGTH, 3000, NULL, true, false,
     NULL, NULL},
    {"chunked, trailers apart", H1_BODY_CHUNKED, 0,
     "64\r\n" D100 "\r\n0\r\nX-Sum: 12345\r\nX-Other: two\r\n\r\n", false, false, D100,
     "X-Sum: 12345\r\nX-Other: two\r\n"},
};

#define BIG_BODY 3000
#define NEXT "GET /next HTTP/1.1\r\nHost: t\r\n\r\n"

static void test_every_addition_out_of_memory(void **state)
{
    (void)state;
    static char big[BIG_BODY + sizeof(NEXT)], fill[2200], want_big[BIG_BODY + 16];
    memset(big, 'd', BIG_BODY);
    memcpy(big + BIG_BODY, NEXT, sizeof(NEXT));
    memset(fill, 'h', sizeof(fill));
    int n = snprintf(want_big, sizeof(want_big), "%x\r\n", BIG_BODY);
    memset(want_big + n, 'd', BIG_BODY);
    memcpy(want_big + n + BIG_BODY, "\r\n0\r\n\r\n", 7);
    size_t want_big_len = (size_t)n + BIG_BODY + 7;
    for (size_t i = 0; i < ARRAY_LEN(oom_rows); i++) {
        const char *body = oom_rows[i].body ? oom_rows[i].body : big;
        size_t blen = strlen(body);
        const char *want = oom_rows[i].want ? oom_rows[i].want : want_big;
        size_t wlen = oom_rows[i].want ? strlen(want) : want_big_len;
        const char *apart = oom_rows[i].want_apart;
        unsigned failed = 0;
        for (size_t pre = 0; pre <= sizeof(fill); pre++) {
            for (long k = 0; k < 4; k++) {
                struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
                struct evbuffer *tr = apart ? evbuffer_new() : NULL;
                assert_non_null(in);
                assert_non_null(out);
                assert_int_equal(evbuffer_add(in, body, blen), 0);
                assert_int_equal(evbuffer_add(out, fill, pre), 0);
                struct body_relay r;
                body_init(&r, oom_rows[i].in, oom_rows[i].length, oom_rows[i].out_chunked,
                          MAX_TRAILERS);
                r.trailers_out = tr;
                alloc_fail_at(k);
                int rc = body_move(&r, in, out, SIZE_MAX);
                if (rc == 0 && oom_rows[i].eof)
                    rc = body_eof(&r, out);
                alloc_fail_at(-1);
                const char *p = (const char *)evbuffer_pullup(out, -1);
                size_t len = evbuffer_get_length(out);
                if (rc != 0) {
                    assert_int_equal(rc, -1);
                    if (!r.out_of_memory)
                        fail_msg("%s, fill %zu, allocation %ld failed: -1, '%s'",
                                 oom_rows[i].why, pre, k, r.error);
                    failed++;
                } else if (!r.done || len != pre + wlen || memcmp(p + pre, want, wlen) != 0) {
                    fail_msg("%s, fill %zu, allocation %ld failed: moved %zu bytes of %zu and "
                             "said 0", oom_rows[i].why, pre, k, len - pre, wlen);
                } else if (apart && (evbuffer_get_length(tr) != strlen(apart) ||
                                     memcmp(evbuffer_pullup(tr, -1), apart, strlen(apart)))) {
                    fail_msg("%s, allocation %ld failed: trailers '%.*s' and said 0",
                             oom_rows[i].why, k, (int)evbuffer_get_length(tr),
                             (const char *)evbuffer_pullup(tr, -1));
                } else if (!oom_rows[i].body && evbuffer_get_length(in) != sizeof(NEXT) - 1) {
                    fail_msg("%s: %zu bytes left behind, not the next request's",
                             oom_rows[i].why, evbuffer_get_length(in));
                }
                evbuffer_free(in);
                evbuffer_free(out);
                if (tr)
                    evbuffer_free(tr);
            }
        }
        if (failed == 0) /* some addition did need memory, and did not get it */
            fail_msg("%s: no allocation failed", oom_rows[i].why);
    }
}

int main(void)
{
    alloc_fail_install(); /* before libevent allocates anything */
    (void)alloc_fail_all;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_trailers_apart),
        cmocka_unit_test(test_rest_in),
        cmocka_unit_test(test_random_splits),
        cmocka_unit_test(test_error_reasons),
        cmocka_unit_test(test_done_is_final),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_trailers_out_of_memory),
        cmocka_unit_test(test_every_addition_out_of_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
