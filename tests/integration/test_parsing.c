/*
 * test_parsing.c — issue 2, "Strict parsing, both directions", end to end through the real
 * portico binary: every bad-input row of the issue gets its exact status, a one-line text/plain
 * reason with a correct Content-Length, `Connection: close` and a closed connection, and the
 * origin receives nothing; origin responses are held to the same rules (502, Portico-Error:
 * invalid_response); request-smuggling attempts never show the origin a second request; an
 * absolute-form target is held to the Host rules and forwarded in origin-form (issue 13).
 *
 * "The origin received nothing" is proven without waiting for nothing to happen: a marker
 * request sent afterwards must be the origin's next request, on the connection it already had.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define B(s) s, sizeof(s) - 1 /* bytes and their length: rows may hold NUL */

/* One Portico in front of an OK origin, shared by the rows of a test. */
struct bench {
    struct fake_origin *o;
    struct harness *h;
    unsigned markers;     /* marker requests the origin has answered */
    unsigned connections; /* origin connections expected so far */
};

static void bench_start(struct bench *b, const char *proxy_extra)
{
    b->o = fake_origin_start_kind(FO_OK);
    assert_non_null(b->o);
    b->h = px_start_origin_pooled(fake_origin_port(b->o), proxy_extra);
    b->markers = 0;
    b->connections = 0;
}

static void bench_stop(struct bench *b)
{
    px_stop(b->h);
    fake_origin_stop(b->o);
}

/* Sends a request Portico must forward on a fresh connection, and checks its 200. */
static void send_ok(struct bench *b, const char *bytes, size_t len)
{
    struct raw_conn *c = px_connect(b->h);
    struct raw_response r;
    assert_int_equal(raw_send(c, bytes, len), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
}

/* Sends a marker through Portico and checks it is the origin's next complete request. With
 * `same_connection`, it also came on the pooled connection: Portico opened no other. */
static void bench_marker(struct bench *b, bool same_connection)
{
    char req[96];
    int n = snprintf(req, sizeof(req), "GET /marker/%u HTTP/1.1\r\nHost: marker\r\n\r\n",
                     b->markers);
    send_ok(b, req, (size_t)n);
    if (fake_origin_requests(b->o) != b->markers + 1)
        fail_msg("the origin has %u requests, want %u (only markers)",
                 fake_origin_requests(b->o), b->markers + 1);
    char *head = fake_origin_request_head(b->o, b->markers);
    assert_non_null(head);
    char want[64];
    snprintf(want, sizeof(want), "GET /marker/%u HTTP/1.1\r\n", b->markers);
    if (strncmp(head, want, strlen(want)) != 0)
        fail_msg("origin request %u is not the marker:\n%s", b->markers, head);
    free(head);
    b->markers++;
    unsigned conns = fake_origin_connections(b->o);
    if (b->connections == 0 || !same_connection)
        b->connections = conns;
    else if (conns != b->connections)
        fail_msg("the origin saw %u connections, want %u", conns, b->connections);
}

/* Sends bytes on a fresh connection and checks the refusal. */
static void send_refused(struct bench *b, const char *bytes, size_t len, int status,
                         const char *reason)
{
    struct raw_conn *c = px_connect(b->h);
    struct raw_response r;
    assert_int_equal(raw_send(c, bytes, len), 0);
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("no response: %s", r.error);
    px_assert_refusal(c, &r, status, reason);
    raw_response_free(&r);
    raw_close(c);
}

/* ---- requests Portico refuses ---- */

struct bad_row {
    const char *why;
    const char *bytes;
    size_t len;
    int status;
    const char *reason;  /* part of the one-line body */
    bool body;           /* refused in the body: the head was good, an origin connection may
                          * have been opened (never a complete request) */
};

static const struct bad_row bad_rows[] = {
    /* malformed request line */
    { "two spaces after the method", B("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
      "request-target", false },
    { "HTTP/0.9 request line", B("GET /\r\n\r\n"), 400, "missing HTTP version", false },
    { "space before CRLF", B("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400, "HTTP version", false },
    { "invalid method", B("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "invalid method", false },
    { "lowercase version", B("GET / http/1.1\r\nHost: a\r\n\r\n"), 400, "HTTP version", false },
    { "control byte in the target", B("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
      "request-target", false },
    { "bare LF line ends", B("GET / HTTP/1.1\nHost: a\n\n"), 400, "bare LF", false },
    { "bare CR", B("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400, "bare CR", false },
    /* malformed header field */
    { "field without colon", B("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400, "colon",
      false },
    { "empty field name", B("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"), 400,
      "empty field name", false },
    { "bare LF after a field", B("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"), 400, "bare LF",
      false },
    /* framing */
    { "Content-Length and Transfer-Encoding",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n"), 400, "both Transfer-Encoding and Content-Length", false },
    { "differing Content-Length fields",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),
      400, "differing Content-Length", false },
    { "differing Content-Length list",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello"), 400,
      "differing Content-Length", false },
    { "negative Content-Length", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
      400, "invalid Content-Length", false },
    { "hex Content-Length", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"),
      400, "invalid Content-Length", false },
    { "Transfer-Encoding in HTTP/1.0",
      B("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400,
      "HTTP/1.0", false },
    { "chunked not last", B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
      400, "chunked is not the final", false },
    { "chunked twice",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
      400, "twice", false },
    /* chunk framing: found once the body flows */
    { "invalid chunk size",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
      400, "invalid chunk size", true },
    { "chunk size overflow",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10000000000000000\r\nx\r\n0\r\n\r\n"), 400, "chunk size too large", true },
    { "chunk data without CRLF",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
      400, "missing CRLF after chunk data", true },
    { "invalid chunk extension",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n"),
      400, "invalid chunk", true },
    { "bare LF in a chunk line",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
      400, "bare LF", true },
    /* field syntax */
    { "obs-fold", B("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n"), 400,
      "obsolete line folding", false },
    { "obs-fold with a tab", B("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\n\r\n"), 400,
      "obsolete line folding", false },
    { "whitespace before colon", B("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400,
      "whitespace before colon", false },
    { "tab before colon", B("GET / HTTP/1.1\r\nHost: a\r\nX-A\t: 1\r\n\r\n"), 400,
      "whitespace before colon", false },
    { "control character in a name", B("GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: 1\r\n\r\n"), 400,
      "field name", false },
    { "control character in a value", B("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01z\r\n\r\n"), 400,
      "field value", false },
    { "NUL in a value", B("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0z\r\n\r\n"), 400, "field value",
      false },
    { "DEL in a value", B("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fz\r\n\r\n"), 400,
      "field value", false },
    { "ESC in a value", B("GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[31m\r\n\r\n"), 400,
      "field value", false },
    /* Host */
    { "missing Host in HTTP/1.1", B("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"), 400, "missing Host",
      false },
    { "repeated Host", B("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400, "repeated Host",
      false },
    { "repeated identical Host", B("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400,
      "repeated Host", false },
    { "invalid Host", B("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400, "invalid Host", false },
    /* 413 from Content-Length, before any body byte is sent */
    { "Content-Length over max_body_size",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2147483648\r\n\r\n"), 413,
      "max_body_size", false },
    /* ... and without a 100 Continue first */
    { "Content-Length over max_body_size with Expect",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2147483648\r\n"
        "Expect: 100-continue\r\n\r\n"), 413, "max_body_size", false },
    /* 501 */
    { "unknown transfer coding", B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
      501, "unsupported transfer coding", false },
    { "unknown coding before chunked",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"), 501,
      "unsupported transfer coding", false },
    { "CONNECT", B("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"), 501,
      "CONNECT", false },
    /* in any form: forwarded, its 2xx reached the client with the origin's Content-Length and
     * without the body, so the next response on the connection was read as that body */
    { "CONNECT in origin-form", B("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"), 501, "CONNECT",
      false },
    { "CONNECT in absolute-form", B("CONNECT http://a/x HTTP/1.1\r\nHost: a\r\n\r\n"), 501,
      "CONNECT", false },
    /* 505 */
    { "HTTP/2.0", B("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505, "version", false },
    { "HTTP/1.2", B("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505, "version", false },
    { "HTTP/0.9 with a version", B("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505, "version", false },
    /* others the README lists */
    { "dot segment", B("GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "dot segments", false },
    { "encoded dot segment", B("GET /a/%2e%2E/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
      "dot segments", false },
    /* routed by /a/, but /b to origins that take a backslash for a slash (WHATWG URL: Node,
     * Deno; IIS) */
    { "dot segment before a backslash", B("GET /a/..\\b HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
      "dot segments", false },
    /* routed by /a/, but / to an origin that strips the fragment first (WHATWG URL) */
    { "dot segment before a fragment", B("GET /a/..#/b HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
      "fragment", false },
    { "fragment", B("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "fragment", false },
    { "unknown expectation",
      B("POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 2\r\n\r\nhi"), 417,
      "100-continue", false },
};

static void test_bad_requests(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, NULL);
    bench_marker(&b, true); /* the pooled connection every marker will reuse */
    for (size_t i = 0; i < ARRAY_SIZE(bad_rows); i++) {
        const struct bad_row *row = &bad_rows[i];
        print_message("%d %s\n", row->status, row->why);
        send_refused(&b, row->bytes, row->len, row->status, row->reason);
        bench_marker(&b, !row->body);
    }
    /* each refusal is in the access log with its status: complete once Portico has stopped
     * (a wait while it runs costs up to a second, the worker's once-a-second write) */
    assert_int_equal(harness_stop(b.h), 0);
    assert_true(harness_file_contains(b.h, "access.log", "status=505"));
    assert_true(harness_file_contains(b.h, "access.log", "status=413"));
    harness_free(b.h);
    fake_origin_stop(b.o);
}

/* 414 and 431 with the default limits (8k request line, 16k head), at and over the limits. */
static void test_size_limits(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, NULL);
    bench_marker(&b, true);
    size_t cap = 64 * 1024;
    char *req = malloc(cap);
    assert_non_null(req);

    /* request line of 9000 bytes: 414 */
    int n = snprintf(req, cap, "GET /");
    memset(req + n, 'a', 9000);
    n += 9000;
    n += snprintf(req + n, cap - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    print_message("414 request line of %d bytes\n", n - 21);
    send_refused(&b, req, (size_t)n, 414, "request line too long");
    bench_marker(&b, true);

    /* a request line just under 8k is fine */
    n = snprintf(req, cap, "GET /");
    memset(req + n, 'b', 8000);
    n += 8000;
    n += snprintf(req + n, cap - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    send_ok(&b, req, (size_t)n);
    b.markers++; /* that request counts among the origin's */

    /* a head of 20k in one field: 431 */
    n = snprintf(req, cap, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(req + n, 'c', 20000);
    n += 20000;
    n += snprintf(req + n, cap - (size_t)n, "\r\n\r\n");
    print_message("431 head of %d bytes\n", n);
    send_refused(&b, req, (size_t)n, 431, "header section too large");
    bench_marker(&b, true);

    /* many small fields adding up to 17k: 431 */
    n = snprintf(req, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 90; i++)
        n += snprintf(req + n, cap - (size_t)n, "X-F%02d: %0190d\r\n", i, 0);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    print_message("431 head of %d bytes in 90 fields\n", n);
    send_refused(&b, req, (size_t)n, 431, "too large");
    bench_marker(&b, true);

    /* 101 fields: 431 */
    n = snprintf(req, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 100; i++)
        n += snprintf(req + n, cap - (size_t)n, "X-%d: v\r\n", i);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    send_refused(&b, req, (size_t)n, 431, "too many header fields");
    bench_marker(&b, true);

    free(req);
    bench_stop(&b);
}

/* A HEAD refused for its head gets the status line and fields, never a body (RFC 9110 9.3.2):
 * everything until the close is the head. */
static void test_head_refusals(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, NULL);
    size_t cap = 32 * 1024;
    char *req = malloc(cap);
    assert_non_null(req);
    static const struct {
        const char *start, *fill, *end;
        size_t fill_len;
        int status;
    } rows[] = {
        {"HEAD /", "a", " HTTP/1.1\r\nHost: a\r\n\r\n", 9000, 414},
        {"HEAD / HTTP/1.1\r\nHost: a\r\nX-Big: ", "c", "\r\n\r\n", 20000, 431},
        {"\r\nHEAD / HTTP/1.1\r\nHost: a\r\nX y\r\n", "", "\r\n", 0, 400},
        {"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", "",
         "\r\n\r\n", 0, 400},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        int n = snprintf(req, cap, "%s", rows[i].start);
        for (size_t k = 0; k < rows[i].fill_len; k++)
            req[n++] = rows[i].fill[0];
        n += snprintf(req + n, cap - (size_t)n, "%s", rows[i].end);
        struct raw_conn *c = px_connect(b.h);
        assert_int_equal(raw_send(c, req, (size_t)n), 0);
        size_t len;
        char *all = raw_read_all(c, PX_IO_MS, &len);
        assert_non_null(all);
        char *end = strstr(all, "\r\n\r\n");
        assert_non_null(end);
        int status = 0;
        assert_int_equal(sscanf(all, "HTTP/1.1 %d ", &status), 1);
        print_message("  HEAD refused with %d: %zu bytes after the head\n", status,
                      len - (size_t)(end + 4 - all));
        assert_int_equal(status, rows[i].status);
        assert_int_equal(len, (size_t)(end + 4 - all));
        free(all);
        raw_close(c);
    }
    free(req);
    bench_stop(&b);
}

/* 408: the head is not complete within client_header_timeout (300 ms here). */
static void test_header_timeout(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, "client_header_timeout = 300ms\n");
    bench_marker(&b, true);

    /* a partial head, then silence */
    struct raw_conn *c = px_connect(b.h);
    struct raw_response r;
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_true(r.head.at_ms - t0 >= 295);
    px_assert_refusal(c, &r, 408, "client_header_timeout");
    raw_response_free(&r);
    raw_close(c);
    bench_marker(&b, true);

    /* a slow client: every piece arrives in time, the whole head does not */
    static const char slow[] = "GET /slow HTTP/1.1\r\nHost: a\r\nX-Filler: 0123456789\r\n\r\n";
    c = px_connect(b.h);
    t0 = tu_now_ms();
    (void)raw_send_slowly(c, slow, sizeof(slow) - 1, 2, 25); /* ~700 ms; cut off at 300 */
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_true(r.head.at_ms - t0 >= 295);
    px_assert_refusal(c, &r, 408, "client_header_timeout");
    raw_response_free(&r);
    raw_close(c);
    bench_marker(&b, true);

    /* the second request of a keep-alive connection is held to the same limit */
    c = px_connect(b.h);
    assert_int_equal(raw_send_str(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    b.markers++; /* /first reached the origin */
    t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, "GET /second HTTP/1.1\r\nHo"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_true(r.head.at_ms - t0 >= 295);
    px_assert_refusal(c, &r, 408, "client_header_timeout");
    raw_response_free(&r);
    raw_close(c);
    bench_marker(&b, true);

    /* a connection that never sends a byte: its timer starts at the accept, which can come
     * before connect() returns to us, so the clock is read before the connect */
    t0 = tu_now_ms();
    c = px_connect(b.h);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_true(r.head.at_ms - t0 >= 295);
    px_assert_refusal(c, &r, 408, "client_header_timeout");
    raw_response_free(&r);
    raw_close(c);
    bench_marker(&b, true);
    bench_stop(&b);
}

/* A request refused before its exchange gets the client's X-Request-Id back, on its answer and
 * its access-log line, when that field line was read whole and the id is well-formed (as an
 * exchange takes it): a client's trace then finds Portico's refusal. A head refused for a later
 * line (400), for its size (431: too many fields, too large), not complete within
 * client_header_timeout (408), cut short by the client's leaving (499, logged only). An invalid
 * id (a '/', 41 characters), one behind a refused request line, one an obs-fold continues, or
 * one past the limit the head was refused at (the empty lines before it count), gets a new one,
 * and is nowhere. The old code gave every refusal a new id. */
static void test_refused_request_ids(void **state)
{
    (void)state;
    enum fill { NONE, MANY_FIELDS, BIG_FIELD, AFTER_EMPTY_LINES };
    static const struct {
        const char *start; /* the head, up to what fill adds */
        enum fill fill;
        int status;
        const char *id;    /* the answer's X-Request-Id; NULL: a new one */
    } rows[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: h1-400\r\nX y\r\n\r\n", NONE, 400,
         "h1-400"},
        {"GET / HTTP/1.1\r\nX-Request-Id: h1-431-many\r\n", MANY_FIELDS, 431, "h1-431-many"},
        {"GET / HTTP/1.1\r\nX-Request-Id: h1-431-big\r\n", BIG_FIELD, 431, "h1-431-big"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: h1-408\r\nAccept: */*\r\n", NONE, 408,
         "h1-408"}, /* then nothing: client_header_timeout */
        {"GET / HTTP/1.1\r\nX-Request-Id: h1/bad\r\n", BIG_FIELD, 431, NULL},
        {"GET / HTTP/1.1\r\nX-Request-Id: h1-12345678901234567890123456789012345678\r\n"
         "X y\r\n\r\n", NONE, 400, NULL},
        {"GET /a b HTTP/1.1\r\nX-Request-Id: h1-line\r\n\r\n", NONE, 400, NULL},
        /* obs-fold: the id's value goes on to the next line ("h1-fold more", not an id) */
        {"GET / HTTP/1.1\r\nX-Request-Id: h1-fold\r\n more\r\n\r\n", NONE, 400, NULL},
        /* 100 bytes of empty lines before it count against max_header_size (16k): the head is
         * refused 100 bytes short of it, before the id's line ends, 60 bytes short */
        {"X-Request-Id: h1-skipped\r\n", AFTER_EMPTY_LINES, 431, NULL},
    };
    struct bench b;
    bench_start(&b, "client_header_timeout = 300ms\n");
    size_t cap = 32 * 1024;
    char *req = malloc(cap);
    assert_non_null(req);
    char ids[ARRAY_SIZE(rows)][48];
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        int n = snprintf(req, cap, "%s", rows[i].start);
        if (rows[i].fill == AFTER_EMPTY_LINES) { /* then 16 + 7 + 16273 + 2 + 26 = 16384 - 60 */
            n = 0;
            for (int k = 0; k < 50; k++)
                n += snprintf(req + n, cap - (size_t)n, "\r\n");
            n += snprintf(req + n, cap - (size_t)n, "GET / HTTP/1.1\r\nX-Pad: %016273d\r\n%s", 0,
                          rows[i].start);
        }
        if (rows[i].fill == MANY_FIELDS) {
            for (int k = 0; k < 100; k++) /* 101 in all: one past the limit */
                n += snprintf(req + n, cap - (size_t)n, "X-%d: v\r\n", k);
            n += snprintf(req + n, cap - (size_t)n, "\r\n");
        } else if (rows[i].fill == BIG_FIELD) {
            n += snprintf(req + n, cap - (size_t)n, "X-Big: %020000d\r\n\r\n", 0);
        }
        struct raw_conn *c = px_connect(b.h);
        struct raw_response r;
        assert_int_equal(raw_send(c, req, (size_t)n), 0);
        if (raw_read_response(c, &r, PX_IO_MS) != 0)
            fail_msg("row %zu: no response: %s", i, r.error);
        const char *id = raw_header(&r, "X-Request-Id");
        print_message("%d X-Request-Id: %s\n", r.status, id ? id : "(none)");
        assert_int_equal(r.status, rows[i].status);
        assert_non_null(id);
        if (rows[i].id ? strcmp(id, rows[i].id) != 0 : strlen(id) != 22 || strspn(id,
                "0123456789abcdef") != 22)
            fail_msg("row %zu: X-Request-Id %s, want %s", i, id,
                     rows[i].id ? rows[i].id : "a new one");
        snprintf(ids[i], sizeof(ids[i]), "%s", id);
        raw_response_free(&r);
        raw_close(c);
    }
    free(req);
    /* a client that leaves mid-head: no answer, its 499 line has its id */
    struct raw_conn *c = px_connect(b.h);
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nX-Request-Id: h1-499\r\nHo"), 0);
    assert_int_equal(raw_shutdown_write(c), 0);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    raw_close(c);
    char *left = px_log_line_for_id(b.h, "h1-499");
    if (!strstr(left, " status=499 "))
        fail_msg("wanted status=499 in %s", left);
    free(left);
    assert_int_equal(harness_stop(b.h), 0); /* then the access log is complete */
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        char *line = px_log_line_for_id(b.h, ids[i]);
        char status[32];
        snprintf(status, sizeof(status), " status=%d ", rows[i].status);
        if (!strstr(line, status))
            fail_msg("row %zu: wanted%sin %s", i, status, line);
        free(line);
    }
    assert_false(harness_file_contains(b.h, "access.log", "h1/bad"));
    assert_false(harness_file_contains(b.h, "access.log", "h1-line"));
    assert_false(harness_file_contains(b.h, "access.log", "h1-123456789"));
    assert_false(harness_file_contains(b.h, "access.log", "h1-fold"));
    assert_false(harness_file_contains(b.h, "access.log", "h1-skipped"));
    harness_free(b.h);
    fake_origin_stop(b.o);
}

/* A chunked body beyond max_body_size is refused with 413 as soon as it gets there. */
static void test_chunked_body_too_large(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, "max_body_size = 1k\n");
    bench_marker(&b, true);
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n");
    memset(req + n, 'x', 2048);
    n += 2048;
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n0\r\n\r\n");
    send_refused(&b, req, (size_t)n, 413, "max_body_size");
    bench_marker(&b, false);
    /* exactly 1k by Content-Length is within the limit */
    n = snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n");
    memset(req + n, 'y', 1024);
    n += 1024;
    send_ok(&b, req, (size_t)n);
    bench_stop(&b);
}

/* ---- request smuggling through the whole proxy ---- */

struct smuggle_row {
    const char *why;
    const char *bytes;
    size_t len;
    int status;        /* Portico's answer: a refusal, or 200 when the request is legitimate */
    const char *body;  /* 200 rows: the single body the origin must have received */
};

static const struct smuggle_row smuggle_rows[] = {
    /* CL.TE: a CL-framing hop would forward "0\r\n\r\nGET /smuggled..." as the body */
    { "CL.TE",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"), 400, NULL },
    /* TE.CL: a CL-reading origin would take "GET /smuggled" as a second request */
    { "TE.CL",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        "26\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n"), 400, NULL },
    /* TE.TE: obfuscated Transfer-Encoding */
    { "TE.TE: xchunked", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                           "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"), 400, NULL },
    { "TE.TE: space before colon", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                                     "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), 400, NULL },
    { "TE.TE: folded", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                         "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"), 400, NULL },
    { "TE.TE: vertical tab", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
                               "Transfer-Encoding:\x0b" "chunked\r\n\r\n0\r\n\r\n"), 400, NULL },
    { "TE.TE: two fields", B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                             "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n"), 400, NULL },
    { "TE.TE: quoted", B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"
                         "0\r\n\r\n"), 400, NULL },
    /* duplicate CL */
    { "CL.CL", B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 39\r\n\r\n"
                 "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"), 400, NULL },
    /* a request inside a Content-Length body stays a body */
    { "request in a CL body",
      B("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n"
        "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"), 200,
      "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n" },
    /* ... and inside a chunk */
    { "request in a chunk",
      B("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "23\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n"), 200,
      "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n" },
};

static void test_smuggling(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, NULL);
    bench_marker(&b, true);
    for (size_t i = 0; i < ARRAY_SIZE(smuggle_rows); i++) {
        const struct smuggle_row *row = &smuggle_rows[i];
        print_message("%s\n", row->why);
        if (row->status != 200) {
            send_refused(&b, row->bytes, row->len, row->status, NULL);
            bench_marker(&b, true);
            continue;
        }
        struct raw_conn *c = px_connect(b.h);
        struct raw_response r;
        assert_int_equal(raw_send(c, row->bytes, row->len), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        /* one request reached the origin, with the whole thing as its body */
        assert_int_equal(fake_origin_requests(b.o), b.markers + 1);
        size_t len = 0;
        char *body = fake_origin_request_body(b.o, b.markers, &len);
        assert_non_null(body);
        assert_int_equal(len, strlen(row->body));
        assert_memory_equal(body, row->body, len);
        free(body);
        b.markers++;
        /* nothing else is pending on the connection */
        assert_int_equal(raw_wait_closed(c, 20), 0);
        raw_close(c);
        bench_marker(&b, true);
    }
    bench_stop(&b);
}

/* ---- absolute-form targets: the authority is held to the Host rules (issue 13 section 5) ---- */

struct absolute_row {
    const char *why;
    const char *request;
    const char *line; /* the request line the origin must receive */
    const char *host; /* and its only Host */
};

static const struct absolute_row absolute_rows[] = {
    { "a query without a path is /?query, the authority without it is Host",
      "GET http://other.example?x=1 HTTP/1.1\r\nHost: front.example\r\n\r\n",
      "GET /?x=1 HTTP/1.1", "other.example" },
    { "path and query, authority with a port",
      "GET http://other.example:8080/p/q?x=1 HTTP/1.1\r\nHost: front.example\r\n\r\n",
      "GET /p/q?x=1 HTTP/1.1", "other.example:8080" },
    { "https scheme without a path", "GET https://Other.Example HTTP/1.1\r\nHost: f\r\n\r\n",
      "GET / HTTP/1.1", "Other.Example" },
    /* RFC 9112 3.2.4: the last proxy sends "*" for an OPTIONS without path or query (it sent
     * "OPTIONS /", a question about one resource instead of the server) */
    { "OPTIONS without a path asks about the server",
      "OPTIONS http://other.example HTTP/1.1\r\nHost: f\r\n\r\n", "OPTIONS * HTTP/1.1",
      "other.example" },
    { "OPTIONS with a query keeps it", "OPTIONS http://other.example?x HTTP/1.1\r\nHost: f\r\n\r\n",
      "OPTIONS /?x HTTP/1.1", "other.example" },
};

static void test_absolute_form(void **state)
{
    (void)state;
    struct bench b;
    bench_start(&b, NULL);
    bench_marker(&b, true);
    for (size_t i = 0; i < ARRAY_SIZE(absolute_rows); i++) {
        const struct absolute_row *row = &absolute_rows[i];
        print_message("%s\n", row->why);
        send_ok(&b, row->request, strlen(row->request));
        char *head = fake_origin_request_head(b.o, b.markers);
        assert_non_null(head);
        char want[128];
        snprintf(want, sizeof(want), "%s\r\nHost: %s\r\n", row->line, row->host);
        if (!px_starts(head, want))
            fail_msg("%s: the origin received\n%s", row->why, head);
        assert_int_equal(px_count(head, "\r\nHost:"), 1);
        free(head);
        b.markers++;
        bench_marker(&b, true);
    }
    /* userinfo is refused in the absolute form exactly as in a Host field: 400, origin untouched */
    send_refused(&b, B("GET http://user@evil.example/vec HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
                 "invalid host");
    bench_marker(&b, true);
    send_refused(&b, B("GET /vec HTTP/1.1\r\nHost: user@evil.example\r\n\r\n"), 400,
                 "invalid Host");
    bench_marker(&b, true);
    send_refused(&b, B("GET http://u@evil.example?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
                 "invalid host");
    bench_marker(&b, true);
    bench_stop(&b);
}

/* ---- origin responses: the same strictness, reported as 502 invalid_response ---- */

struct bad_response_row {
    const char *why;
    struct fo_step origin[3];
};

#define SEND_HOLD(s) { FO_SEND(s), FO_HOLD(), FO_END() }

static const struct bad_response_row bad_responses[] = {
    { "not HTTP", SEND_HOLD("ICY 200 OK\r\n\r\n") },
    { "four-digit status", SEND_HOLD("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n") },
    { "no status code", SEND_HOLD("HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n") },
    { "HTTP/2 status line", SEND_HOLD("HTTP/2 200\r\nContent-Length: 0\r\n\r\n") },
    { "HTTP/1.2 status line", SEND_HOLD("HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n") },
    { "bare LF status line", SEND_HOLD("HTTP/1.1 200 OK\nContent-Length: 0\n\n") },
    { "control byte in the reason", SEND_HOLD("HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n") },
    { "obs-fold", SEND_HOLD("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n") },
    { "whitespace before colon", SEND_HOLD("HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n") },
    { "control byte in a value", SEND_HOLD("HTTP/1.1 200 OK\r\nX-A: a\x7f\r\nContent-Length: 0\r\n\r\n") },
    { "CL and TE", SEND_HOLD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n0\r\n\r\n") },
    { "differing CL", SEND_HOLD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello") },
    { "invalid CL", SEND_HOLD("HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello") },
    { "TE in HTTP/1.0", SEND_HOLD("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") },
    { "chunked twice", SEND_HOLD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n") },
    /* Portico decodes chunked only: gzip would reach the client unlabelled */
    { "gzip transfer coding", SEND_HOLD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                        "5\r\nGZIPD\r\n0\r\n\r\n") },
    { "gzip transfer coding, close-delimited",
      SEND_HOLD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nGZIPD") },
    { "101 without an upgrade", SEND_HOLD("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n") },
};

/* arg: the script of /row/big, a head over max_header_size */
static const struct fo_step *pick_bad_response(const struct fo_request_info *req, void *arg)
{
    static const struct fo_step ok[] = { FO_RESPOND_OK(), FO_END() };
    const char *p = strstr(req->head, "/row/");
    if (p && px_starts(p + 5, "big"))
        return arg;
    size_t i = p ? (size_t)atoi(p + 5) : ARRAY_SIZE(bad_responses);
    return i < ARRAY_SIZE(bad_responses) ? bad_responses[i].origin : ok;
}

static void check_invalid_response(struct harness *h, const char *path, const char *why)
{
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    char req[128];
    print_message("%s\n", why);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    if (r.status != 502)
        fail_msg("%s: status %d, want 502\n%s%s", why, r.status, r.head.text, r.body);
    const char *pe = raw_header(&r, "Portico-Error");
    assert_string_equal(pe ? pe : "(none)", "invalid_response");
    assert_true(tu_contains(raw_header(&r, "Proxy-Status"), "error=http_protocol_error"));
    raw_response_free(&r);
    /* the request was read in full: the client connection goes on */
    assert_int_equal(raw_send_str(c, "GET /fine HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
}

static void test_bad_responses(void **state)
{
    (void)state;
    /* a response head of 20k (max_header_size is 16k) */
    size_t big_len = 20000;
    char *big = malloc(big_len + 200);
    assert_non_null(big);
    int n = snprintf(big, 200, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + n, 'x', big_len);
    snprintf(big + n + big_len, 200, "\r\nContent-Length: 0\r\n\r\n");

    struct fo_step big_script[] = { FO_SEND(big), FO_HOLD(), FO_END() };
    struct fake_origin_opts opts = { .kind = FO_SCRIPT, .pick_script = pick_bad_response,
                                     .pick_arg = big_script };
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), NULL);
    for (size_t i = 0; i < ARRAY_SIZE(bad_responses); i++) {
        char path[32];
        snprintf(path, sizeof(path), "/row/%zu", i);
        check_invalid_response(h, path, bad_responses[i].why);
    }
    check_invalid_response(h, "/row/big", "head over max_header_size");
    px_stop(h);
    fake_origin_stop(o);
    free(big);
}

/* Bad framing found in the body, after the head was forwarded: the status cannot change, the
 * response is cut short (no last chunk) and the client connection closed. */
static const struct fo_step bad_chunk_response[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"),
    FO_HOLD(), FO_END(),
};

static void test_bad_response_body(void **state)
{
    (void)state;
    struct fake_origin_opts opts = { .kind = FO_SCRIPT, .script = bad_chunk_response };
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = px_start_origin(fake_origin_port(o), NULL);
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), -1);
    assert_int_equal(r.status, 200);
    assert_true(r.truncated);
    assert_true(r.peer_closed);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    assert_true(harness_file_contains(h, "access.log", "aborted=after_head"));
    harness_free(h);
    fake_origin_stop(o);
}

/* The same failures seen by an HTTP/1.0 client: its body is delimited by the close, so a plain
 * close would look like the end of a complete response (the "hello" below was all a client got,
 * with a clean EOF). The connection is reset instead, once what was forwarded went out: the
 * client sees that the response failed. */
static const struct fo_step cut_chunk_response[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"), FO_CLOSE(),
    FO_END(),
};

static const struct {
    const char *why;
    const struct fo_step *script;
} http10_cut_rows[] = {
    { "bad chunk framing", bad_chunk_response },
    { "origin closed before the last chunk", cut_chunk_response },
};

static void test_bad_response_body_http10(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(http10_cut_rows); i++) {
        print_message("%s\n", http10_cut_rows[i].why);
        struct fake_origin_opts opts = { .kind = FO_SCRIPT, .script = http10_cut_rows[i].script };
        struct fake_origin *o = fake_origin_start(&opts);
        assert_non_null(o);
        struct harness *h = px_start_origin(fake_origin_port(o), NULL);
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, "GET / HTTP/1.0\r\n\r\n"), 0);
        int rc = raw_read_response(c, &r, PX_IO_MS);
        if (rc == 0)
            fail_msg("%s: a complete %d response of %zu bytes, ended by a clean close",
                     http10_cut_rows[i].why, r.status, r.body_len);
        assert_int_equal(raw_last_errno(c), ECONNRESET);
        /* what was forwarded came first: the head and "hello" */
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, 5);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
        assert_true(harness_file_contains(h, "access.log", "aborted=after_head"));
        harness_free(h);
        fake_origin_stop(o);
    }
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_head_refusals),
        cmocka_unit_test(test_header_timeout),
        cmocka_unit_test(test_refused_request_ids),
        cmocka_unit_test(test_chunked_body_too_large),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_bad_responses),
        cmocka_unit_test(test_bad_response_body),
        cmocka_unit_test(test_bad_response_body_http10),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
