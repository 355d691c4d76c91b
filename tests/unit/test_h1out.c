/*
 * test_h1out.c — the writer of responses Portico composes itself: exact bytes of status lines,
 * heads and complete responses (framing, HEAD, statuses without content, Connection), refusal
 * of arguments that would break the message, and all-or-nothing writes under every single
 * allocation failure, whatever the state of the output buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "alloc_fail.h"
#include "portico/h1out.h"
#include "portico/status.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ALLOCS 64 /* no write here makes more allocations than this */
#define STATUS_LINE_MIN 15 /* "HTTP/1.1 NNN X\r\n": a phrase of at least one byte */

/* The whole buffer as a NUL-terminated string (copied; the caller frees). */
static char *contents(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    return s;
}

static void assert_contents(struct evbuffer *b, const char *want)
{
    char *got = contents(b);
    if (strcmp(got, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", got, want);
    free(got);
}

/* ---- status lines ---- */

static const struct {
    const char *why;
    int status;
    const char *phrase;
    size_t len;
    const char *want;
} status_rows[] = {
    { "registry phrase", 200, NULL, 0, "HTTP/1.1 200 OK\r\n" },
    { "interim", 103, NULL, 0, "HTTP/1.1 103 Early Hints\r\n" },
    { "vendor code", 499, NULL, 0, "HTTP/1.1 499 Client Closed Request\r\n" },
    { "empty phrase means the registry's", 404, "", 0, "HTTP/1.1 404 Not Found\r\n" },
    { "a phrase of its own", 503, "Down For Maintenance", 20,
      "HTTP/1.1 503 Down For Maintenance\r\n" },
    { "a span, not a C string", 200, "Fine by me, and more", 10, "HTTP/1.1 200 Fine by me\r\n" },
    { "unregistered code: class name", 299 + 1, NULL, 0, "HTTP/1.1 300 Multiple Choices\r\n" },
    { "hole in the registry", 427, NULL, 0, "HTTP/1.1 427 Unknown Client Error\r\n" },
    { "highest three-digit code", 999, NULL, 0, "HTTP/1.1 999 Unknown Status\r\n" },
    { "obs-text passes as from an origin", 200, "D\xc3\xa9j\xc3\xa0 vu", 9,
      "HTTP/1.1 200 D\xc3\xa9j\xc3\xa0 vu\r\n" },
    { "HTAB is allowed in a phrase", 200, "a\tb", 3, "HTTP/1.1 200 a\tb\r\n" },
};

static void test_status_line(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(status_rows); i++) {
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        print_message("%s\n", status_rows[i].why);
        assert_int_equal(h1out_status_line(out, status_rows[i].status, status_rows[i].phrase,
                                           status_rows[i].len),
                         0);
        assert_contents(out, status_rows[i].want);
        evbuffer_free(out);
        /* the text form writes the same bytes into a buffer, and needs all of them */
        char text[128];
        size_t want_len = strlen(status_rows[i].want);
        assert_int_equal(h1out_status_text(text, sizeof(text), status_rows[i].status,
                                           status_rows[i].phrase, status_rows[i].len),
                         want_len);
        assert_memory_equal(text, status_rows[i].want, want_len);
        assert_int_equal(h1out_status_text(text, want_len, status_rows[i].status,
                                           status_rows[i].phrase, status_rows[i].len),
                         want_len);
        assert_int_equal(h1out_status_text(text, want_len - 1, status_rows[i].status,
                                           status_rows[i].phrase, status_rows[i].len),
                         0);
    }
    /* what the evbuffer form refuses, the text form refuses too */
    char text[128];
    assert_int_equal(h1out_status_text(text, sizeof(text), 99, NULL, 0), 0);
    assert_int_equal(h1out_status_text(text, sizeof(text), 1000, NULL, 0), 0);
    assert_int_equal(h1out_status_text(text, sizeof(text), 200, "a\r\nX: y", 8), 0);
    assert_int_equal(h1out_status_text(text, 0, 200, NULL, 0), 0);
}

/* Every byte value at every offset of a 20-byte phrase (two words and a tail of the scan that
 * goes eight bytes a step): a control byte or DEL is refused wherever it is; HTAB, printable
 * bytes and obs-text pass. */
static void test_status_phrase_every_byte(void **state)
{
    (void)state;
    char phrase[20], text[64];
    for (size_t at = 0; at < sizeof(phrase); at++) {
        for (unsigned c = 0; c < 256; c++) {
            memset(phrase, 'a', sizeof(phrase));
            phrase[at] = (char)c;
            bool ok = c == '\t' || (c >= 0x20 && c != 0x7f);
            size_t got = h1out_status_text(text, sizeof(text), 503, phrase, sizeof(phrase));
            if ((got != 0) != ok)
                fail_msg("byte 0x%02x at %zu: %s", c, at, ok ? "refused" : "let through");
        }
    }
    /* the registry's phrases go unchecked: each is header-safe text */
    for (int status = 100; status <= 999; status++) {
        size_t n = h1out_status_text(text, sizeof(text), status, NULL, 0);
        assert_true(n > STATUS_LINE_MIN);
        for (size_t i = 0; i < n - 2; i++)
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
                fail_msg("status %d: byte 0x%02x at %zu", status, (unsigned char)text[i], i);
    }
}

/* ---- heads and complete responses ---- */

struct resp_row {
    const char *why;
    struct h1out_head h;
    const char *body;            /* NULL: h1out_head with length below */
    int64_t length;
    enum h1out_payload payload;
    const char *want;
};

static const struct resp_row resp_rows[] = {
    { "complete, default connection", { .status = 200, .content_type = "text/plain" }, "ok\n", 0,
      H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n" },
    { "HEAD: no body, the Content-Length of the content",
      { .status = 200, .content_type = "text/plain" }, "ok\n", 0, H1OUT_PAYLOAD_OMIT,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n" },
    { "405 with Allow and close",
      { .status = 405, .fields = "Allow: GET, HEAD\r\n", .content_type = "text/plain",
        .connection = H1OUT_CONN_CLOSE },
      "no\n", 0, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n"
      "Content-Length: 3\r\nConnection: close\r\n\r\nno\n" },
    { "keep-alive for HTTP/1.0, several fields, own phrase",
      { .status = 503, .phrase = "Back Soon", .fields = "Server: x\r\nRetry-After: 5\r\n",
        .content_type = "text/plain", .connection = H1OUT_CONN_KEEP_ALIVE },
      "", 0, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 503 Back Soon\r\nServer: x\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
      "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n" },
    { "204: no content type, no framing, body dropped",
      { .status = 204, .content_type = "text/plain" }, "ignored", 0, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 204 No Content\r\n\r\n" },
    { "304: the same", { .status = 304, .content_type = "text/plain" }, "ignored", 0,
      H1OUT_PAYLOAD_SEND, "HTTP/1.1 304 Not Modified\r\n\r\n" },
    { "no content type given", { .status = 200 }, "x", 0, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx" },
    { "head of a known length", { .status = 200, .content_type = "application/octet-stream" },
      NULL, 1099511627776LL, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
      "Content-Length: 1099511627776\r\n\r\n" },
    { "head of a chunked body", { .status = 200, .content_type = "text/plain" }, NULL,
      H1OUT_CHUNKED, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" },
    { "interim with a field: no framing even if a length is given",
      { .status = 103, .fields = "Link: </a.css>; rel=preload\r\n" }, NULL, 5,
      H1OUT_PAYLOAD_SEND, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" },
    { "head of a body that ends with the close (HTTP/1.0)",
      { .status = 200, .content_type = "text/plain", .connection = H1OUT_CONN_CLOSE }, NULL,
      H1OUT_UNTIL_CLOSE, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" },
    { "100 Continue", { .status = 100 }, NULL, 0, H1OUT_PAYLOAD_SEND,
      "HTTP/1.1 100 Continue\r\n\r\n" },
    { "interim: a chunked length is not an error", { .status = 102 }, NULL, H1OUT_CHUNKED,
      H1OUT_PAYLOAD_SEND, "HTTP/1.1 102 Processing\r\n\r\n" },
};

static int write_row(struct evbuffer *out, const struct resp_row *r)
{
    if (r->body == NULL)
        return h1out_head(out, &r->h, r->length);
    return h1out_simple(out, &r->h, r->body, strlen(r->body), r->payload);
}

static void test_responses(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(resp_rows); i++) {
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        print_message("%s\n", resp_rows[i].why);
        assert_int_equal(write_row(out, &resp_rows[i]), 0);
        assert_contents(out, resp_rows[i].want);
        evbuffer_free(out);
    }
}

/* The evbuffer variant moves the body, or leaves it when it is not sent. */
static void test_simple_buf(void **state)
{
    static const struct h1out_head h = { .status = 200, .content_type = "text/plain" };
    struct evbuffer *out = evbuffer_new();
    struct evbuffer *body = evbuffer_new();

    (void)state;
    assert_non_null(out);
    assert_non_null(body);
    evbuffer_add_printf(body, "hello\n");
    assert_int_equal(h1out_simple_buf(out, &h, body, H1OUT_PAYLOAD_OMIT), 0);
    assert_int_equal(evbuffer_get_length(body), 6); /* HEAD: untouched */
    assert_int_equal(h1out_simple_buf(out, &h, body, H1OUT_PAYLOAD_SEND), 0);
    assert_int_equal(evbuffer_get_length(body), 0); /* moved */
    assert_contents(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n"
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n"
                         "hello\n");
    evbuffer_free(body);
    evbuffer_free(out);
}

/* ---- refusals ---- */

static const struct {
    const char *why;
    struct h1out_head h;
    int64_t length;
} refused[] = {
    { "status below 100", { .status = 99 }, 0 },
    { "status above 999", { .status = 1000 }, 0 },
    { "negative status", { .status = -200 }, 0 },
    { "CRLF in the phrase: response splitting", { .status = 200, .phrase = "OK\r\nX: 1" }, 0 },
    { "bare LF in the phrase", { .status = 200, .phrase = "O\nK" }, 0 },
    { "NUL-free but DEL in the phrase", { .status = 200, .phrase = "O\x7fK" }, 0 },
    { "CRLF in the content type",
      { .status = 200, .content_type = "text/plain\r\nSet-Cookie: a=b" }, 0 },
    { "fields without the final CRLF", { .status = 200, .fields = "Allow: GET" }, 0 },
    { "fields with an empty line: the head would end early",
      { .status = 200, .fields = "A: 1\r\n\r\nB: 2\r\n" }, 0 },
    { "fields that are only an empty line", { .status = 200, .fields = "\r\n" }, 0 },
    { "fields with a bare LF", { .status = 200, .fields = "A: 1\nB: 2\r\n" }, 0 },
    { "fields with a bare CR", { .status = 200, .fields = "A: 1\rB: 2\r\n" }, 0 },
    { "connection value out of range",
      { .status = 200, .connection = (enum h1out_connection)7 }, 0 },
    { "negative length that is neither chunked nor until the close", { .status = 200 }, -3 },
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(refused); i++) {
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        print_message("%s\n", refused[i].why);
        evbuffer_add_printf(out, "before");
        assert_int_equal(h1out_head(out, &refused[i].h, refused[i].length), -1);
        if (refused[i].length >= 0)
            assert_int_equal(h1out_simple(out, &refused[i].h, "x", 1, H1OUT_PAYLOAD_SEND), -1);
        if (refused[i].h.phrase != NULL)
            assert_int_equal(h1out_status_line(out, refused[i].h.status, refused[i].h.phrase,
                                               strlen(refused[i].h.phrase)),
                             -1);
        assert_contents(out, "before"); /* untouched */
        evbuffer_free(out);
    }
}

/* ---- allocation failures ---- */

/* Output buffers in the states a connection's output can be in when a response is added. */
enum out_state {
    OUT_EMPTY,     /* a fresh buffer: no chain at all */
    OUT_SOME,      /* a few bytes queued */
    OUT_DRAINED,   /* partly written out: misaligned chain */
    OUT_REFERENCE, /* ends in an immutable reference chain (the simulator's /bytes blocks) */
    OUT_LARGE,     /* many chains, the last one full */
    OUT_STATE_COUNT,
};

static const char reference_block[] = "referenced bytes";

static struct evbuffer *out_in_state(enum out_state s)
{
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    switch (s) {
    case OUT_EMPTY:
        break;
    case OUT_SOME:
        evbuffer_add(out, "queued", 6);
        break;
    case OUT_DRAINED:
        for (int i = 0; i < 200; i++)
            evbuffer_add(out, "0123456789", 10);
        evbuffer_drain(out, 1995);
        break;
    case OUT_REFERENCE:
        evbuffer_add(out, "x", 1);
        evbuffer_add_reference(out, reference_block, sizeof(reference_block) - 1, NULL, NULL);
        break;
    case OUT_LARGE:
    default:
        for (int i = 0; i < 64; i++) {
            char block[1024];
            memset(block, 'a' + i % 26, sizeof(block));
            evbuffer_add(out, block, sizeof(block));
        }
        break;
    }
    return out;
}

/* For every buffer state and every allocation the write makes, fail that one allocation: the
 * write either succeeds completely or leaves the buffer exactly as it was. */
static void check_all_or_nothing(const char *why, const struct resp_row *row, int use_buf)
{
    for (int s = 0; s < OUT_STATE_COUNT; s++) {
        int done = 0;
        for (long n = 0; n < MAX_ALLOCS && !done; n++) {
            struct evbuffer *out = out_in_state((enum out_state)s);
            struct evbuffer *body = evbuffer_new();
            char *before = contents(out);
            char *want = malloc(strlen(before) + strlen(row->want) + 1);
            char *got;
            int rc;

            assert_non_null(body);
            assert_non_null(want);
            evbuffer_add(body, row->body, strlen(row->body));
            alloc_fail_at(n);
            rc = use_buf ? h1out_simple_buf(out, &row->h, body, row->payload)
                         : h1out_simple(out, &row->h, row->body, strlen(row->body), row->payload);
            done = alloc_fail_count <= n; /* the nth allocation never came: nothing failed */
            alloc_fail_at(-1);
            got = contents(out);
            sprintf(want, "%s%s", before, rc == 0 ? row->want : "");
            if (strcmp(got, want) != 0)
                fail_msg("%s, state %d, allocation %ld failing: rc %d and the buffer is neither "
                         "whole nor untouched (%zu bytes, want %zu)",
                         why, s, n, rc, strlen(got), strlen(want));
            if (done && rc != 0)
                fail_msg("%s, state %d: fails with no allocation failing", why, s);
            free(got);
            free(want);
            free(before);
            evbuffer_free(body);
            evbuffer_free(out);
        }
        if (!done)
            fail_msg("%s, state %d: more than %d allocations", why, s, MAX_ALLOCS);
    }
}

static void test_all_or_nothing(void **state)
{
    static char big[70000]; /* larger than any chain libevent would extend in place */
    struct resp_row big_row = {
        .why = "big body",
        .h = { .status = 200, .content_type = "application/octet-stream" },
        .payload = H1OUT_PAYLOAD_SEND,
    };
    static const char big_head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                   "Content-Length: 69999\r\n\r\n";
    char *big_want = malloc(sizeof(big_head) + sizeof(big));

    (void)state;
    assert_non_null(big_want);
    for (size_t i = 0; i < ARRAY_LEN(resp_rows); i++) {
        if (resp_rows[i].body != NULL) {
            check_all_or_nothing(resp_rows[i].why, &resp_rows[i], 0);
            check_all_or_nothing(resp_rows[i].why, &resp_rows[i], 1);
        }
    }
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sprintf(big_want, "%s%s", big_head, big);
    big_row.body = big;
    big_row.want = big_want;
    check_all_or_nothing("big body", &big_row, 0);
    check_all_or_nothing("big body, evbuffer", &big_row, 1);
    free(big_want);
}

/* Once reserved, the fallback goes out with every allocation failing, after the real response
 * could not be written; its status line is the registry's 503. */
static void test_fallback(void **state)
{
    static char big[100000];
    (void)state;
    for (int s = 0; s < OUT_STATE_COUNT; s++) {
        struct evbuffer *out = out_in_state((enum out_state)s);
        static const struct h1out_head h = { .status = 200, .content_type = "text/plain" };
        char *before = contents(out);
        char want[256];
        char *got;

        assert_int_equal(h1out_fallback_reserve(out), 0);
        alloc_fail_all();
        assert_int_equal(h1out_simple(out, &h, big, sizeof(big), H1OUT_PAYLOAD_SEND), -1);
        assert_int_equal(h1out_fallback(out), 0);
        alloc_fail_at(-1);
        got = contents(out);
        snprintf(want, sizeof(want), "HTTP/1.1 503 %s\r\n", status_phrase(503));
        assert_int_equal(strncmp(got, before, strlen(before)), 0);
        assert_int_equal(strncmp(got + strlen(before), want, strlen(want)), 0);
        assert_string_equal(got + strlen(before) + strlen(want),
                            "Content-Length: 0\r\nConnection: close\r\n\r\n");
        free(got);
        free(before);
        evbuffer_free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_status_phrase_every_byte),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_simple_buf),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_fallback),
    };

    alloc_fail_install(); /* before libevent allocates anything */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
