/*
 * test_hardening.c — hostile origins and clients (issue "Harden against hostile clients and
 * origins"), with the real binary on loopback:
 *
 *  1. stray origin bytes never answer another request: an origin sends more than its framing
 *     says 5 ms after a response (a body after HEAD, bytes after 204, bytes past
 *     Content-Length); the next request — pipelined on the same client connection, or from
 *     another client just after — must get its own response, with the pool empty or holding
 *     other idle connections, and the connection that carried the bytes is closed and counted
 *     (over plain TCP and over TLS);
 *  2. a flood of 1xx from an origin to a client that does not read grows nothing;
 *  3. pipelined requests from a client that does not read grow nothing (proxy, HEAD through
 *     the origin, the admin listener).
 * Memory is Portico's VmRSS before and after; not asserted under ASan or valgrind (their
 * memory is not Portico's).
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

#define ADMIN "admin_listen = 127.0.0.1:{{port:admin}}\n"

/* One series of the admin /metrics; fails the test when the scrape does. */
static double metric(struct harness *h, const char *series)
{
    double v = scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
    if (v < 0)
        fail_msg("no %s in /metrics", series);
    return v;
}

/* ---- 1. stray bytes ---- */

#define POISON "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED"

static const struct fo_step head_then_stray[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 84\r\n\r\n"), FO_WAIT(5), FO_SEND(POISON),
    FO_END(),
};
static const struct fo_step no_content_then_stray[] = {
    FO_SEND("HTTP/1.1 204 No Content\r\n\r\n"), FO_WAIT(5), FO_SEND(POISON), FO_END(),
};
static const struct fo_step not_modified_then_stray[] = {
    FO_SEND("HTTP/1.1 304 Not Modified\r\n\r\n"), FO_WAIT(5), FO_SEND(POISON), FO_END(),
};
static const struct fo_step past_length_then_stray[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), FO_WAIT(5), FO_SEND(POISON),
    FO_END(),
};
static const struct fo_step next_answer[] = {
    FO_SEND("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"), FO_END(),
};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strncmp(req->head, "HEAD /stray", 11) == 0)
        return head_then_stray;
    if (strncmp(req->head, "GET /204", 8) == 0)
        return no_content_then_stray;
    if (strncmp(req->head, "GET /304", 8) == 0)
        return not_modified_then_stray;
    if (strncmp(req->head, "GET /length", 11) == 0)
        return past_length_then_stray;
    return next_answer;
}

struct stray_case {
    const char *why;
    const char *first;        /* the request whose response is followed by stray bytes */
    bool head;                /* it is a HEAD: its response has no body */
    int status;
    const char *body;         /* "": a response with no body, whose connection always settles */
};

static const struct stray_case stray_cases[] = {
    {"a body after a response to HEAD", "HEAD /stray HTTP/1.1\r\nHost: t\r\n\r\n", true, 200,
     ""},
    {"bytes after a 204", "GET /204 HTTP/1.1\r\nHost: t\r\n\r\n", false, 204, ""},
    {"bytes after a 304", "GET /304 HTTP/1.1\r\nHost: t\r\n\r\n", false, 304, ""},
    {"bytes past Content-Length", "GET /length HTTP/1.1\r\nHost: t\r\n\r\n", false, 200,
     "hello"},
};

#define NEXT "GET /next HTTP/1.1\r\nHost: t\r\n\r\n"

static void expect(struct raw_conn *c, bool head, int status, const char *body, const char *why)
{
    struct raw_response r;
    int rc = head ? raw_read_head_response(c, &r, PX_IO_MS) : raw_read_response(c, &r, PX_IO_MS);
    if (rc != 0)
        fail_msg("%s: no response: %s", why, r.error);
    if (r.status != status || strcmp(r.body ? r.body : "", body) != 0)
        fail_msg("%s: %d \"%s\", want %d \"%s\"", why, r.status, r.body ? r.body : "", status,
                 body);
    raw_response_free(&r);
}

/* Warm connections in the pool, older than the settle time, one per client that asks. */
static void warm_pool(struct harness *h, int n)
{
    struct raw_conn *c[4];
    for (int i = 0; i < n; i++) {
        c[i] = px_connect(h);
        assert_int_equal(raw_send_str(c[i], "GET /warm HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    }
    for (int i = 0; i < n; i++) {
        expect(c[i], false, 200, "next", "warming the pool");
        raw_close(c[i]);
    }
    /* older than the 100 ms settle time: an event would be better, but the pool's age is the
     * very thing under test */
    struct timespec settle = {0, 150 * 1000000L};
    nanosleep(&settle, NULL);
}

/* Who sends the next request, and when. */
#define STRAY_NEXT_LIST(X)                                                                         \
    X(NEXT_PIPELINED, "pipelined")                                                                 \
    X(NEXT_SAME_CLIENT, "the same client after the answer")                                        \
    X(NEXT_OTHER_CLIENT, "another client")

enum stray_next {
#define X(id, name) id,
    STRAY_NEXT_LIST(X)
#undef X
};

static const char *const stray_next_names[] = {
#define X(id, name) [id] = name,
    STRAY_NEXT_LIST(X)
#undef X
};

/* One Portico per case, so that the log line about the stray bytes is this case's. The settle
 * time is 100 ms rather than the default 10 so that a loaded machine, stretching the origin's
 * 5 ms gap, does not make the test flaky: the mechanism is the same. The same client's next
 * request gets its connection back at once after a response with a body (upstream_pool.c): there,
 * bytes past Content-Length would reach that client's next request, so that row runs for the
 * responses with no body only. */
static void run_stray(enum stray_next next, int warm, bool tls)
{
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick};
    if (tls) {
        const struct test_certs *certs = certs_get();
        assert_non_null(certs);
        opts.tls_cert = certs->server_cert;
        opts.tls_key = certs->server_key;
    }
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    for (size_t i = 0; i < ARRAY_SIZE(stray_cases); i++) {
        const struct stray_case *sc = &stray_cases[i];
        if (next == NEXT_SAME_CLIENT && sc->body[0] != '\0')
            continue;
        struct harness *h = px_start(ADMIN, "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "settle_time = 100ms\n%s", fake_origin_port(o),
                                     tls ? "tls = on\nca_file = {{certs}}/ca.pem\n" : "");
        if (warm)
            warm_pool(h, warm);
        char why[160];
        snprintf(why, sizeof(why), "%s, then %s (%d warm%s)", sc->why, stray_next_names[next],
                 warm, tls ? ", TLS" : "");
        print_message("  %s\n", why);
        struct raw_conn *a = px_connect(h);
        if (next == NEXT_SAME_CLIENT) {
            assert_int_equal(raw_send_str(a, sc->first), 0);
            expect(a, sc->head, sc->status, sc->body, why);
            assert_int_equal(raw_send_str(a, NEXT), 0); /* at once, within the origin's 5 ms */
            expect(a, false, 200, "next", why);
        } else if (next == NEXT_OTHER_CLIENT) {
            assert_int_equal(raw_send_str(a, sc->first), 0);
            expect(a, sc->head, sc->status, sc->body, why);
            struct raw_conn *b = px_connect(h); /* just after the first got its answer */
            assert_int_equal(raw_send_str(b, NEXT), 0);
            expect(b, false, 200, "next", why);
            raw_close(b);
        } else {
            char both[256];
            snprintf(both, sizeof(both), "%s%s", sc->first, NEXT);
            assert_int_equal(raw_send_str(a, both), 0);
            expect(a, sc->head, sc->status, sc->body, why);
            expect(a, false, 200, "next", why);
        }
        /* the connection that carried the bytes was closed, and said so */
        assert_int_equal(harness_wait_log(h, ", which no request asked for; closed", PX_IO_MS),
                         0);
        if (metric(h, "portico_upstream_unsolicited_total") != 1)
            fail_msg("%s: portico_upstream_unsolicited_total is not 1", why);
        raw_close(a);
        px_stop(h);
    }
    fake_origin_stop(o);
}

static void test_stray_pipelined(void **state)
{
    (void)state;
    run_stray(NEXT_PIPELINED, 0, false);
}

static void test_stray_same_client(void **state)
{
    (void)state;
    run_stray(NEXT_SAME_CLIENT, 0, false);
}

static void test_stray_other_client(void **state)
{
    (void)state;
    run_stray(NEXT_OTHER_CLIENT, 0, false);
}

static void test_stray_with_idle_pool(void **state)
{
    (void)state;
    run_stray(NEXT_PIPELINED, 2, false);
    run_stray(NEXT_SAME_CLIENT, 2, false);
    run_stray(NEXT_OTHER_CLIENT, 2, false);
}

/* Over TLS the stray bytes come as records, and OpenSSL reads ahead of what it decrypts: a
 * connection holding such bytes, in the socket or in OpenSSL's buffer, is closed all the same. */
static void test_stray_tls(void **state)
{
    (void)state;
    run_stray(NEXT_PIPELINED, 0, true);
    run_stray(NEXT_SAME_CLIENT, 0, true);
    run_stray(NEXT_OTHER_CLIENT, 0, true);
}

/* ---- 2. a flood of interim responses ---- */

#define FLOOD_1XX 500000 /* 13.5 MB of "102 Processing" */
#define RSS_GROWTH_KB (4 * 1024)

static char *flood;
static size_t flood_len;

static int send_flood(int fd, void *arg)
{
    (void)arg;
    size_t off = 0;
    while (off < flood_len) {
        ssize_t n = send(fd, flood + off, flood_len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 5000) == 1)
                continue;
        }
        return -1; /* the proxy gave up on us (first_byte_timeout): fine */
    }
    return 0;
}

static const struct fo_step flood_script[] = {FO_CALL(send_flood, NULL), FO_HOLD(), FO_END()};

static void check_growth(struct harness *h, long before, const char *what)
{
    long after = px_proc_kb(harness_pid(h), "VmRSS");
    bool own = px_rss_is_portico(harness_pid(h));
    print_message("%s: portico RSS %ld kB -> %ld kB%s\n", what, before, after,
                  own ? "" : " (not asserted under ASan or valgrind)");
    if (own && after - before > RSS_GROWTH_KB)
        fail_msg("%s: RSS grew by %ld kB", what, after - before);
}

static void test_interim_flood(void **state)
{
    (void)state;
    static const char one[] = "HTTP/1.1 102 Processing\r\n\r\n";
    flood_len = (sizeof(one) - 1) * FLOOD_1XX;
    flood = malloc(flood_len);
    assert_non_null(flood);
    for (size_t i = 0; i < FLOOD_1XX; i++)
        memcpy(flood + i * (sizeof(one) - 1), one, sizeof(one) - 1);
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = flood_script};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    /* The exchange ends at first_byte_timeout, which waits for nothing but the flood: all of it
     * is in within 0.15 s plain (0.65 s under ASan with the machine loaded, where a flood cut
     * short is fine and RSS is not asserted) */
    struct harness *h = px_start(ADMIN, "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "first_byte_timeout = 1s\n", fake_origin_port(o));
    long before = px_proc_kb(harness_pid(h), "VmRSS");
    struct raw_conn *c = px_connect(h);
    /* a small receive buffer, and never read: the 1xx that are relayed back up at once */
    int small = 4096;
    setsockopt(raw_fd(c), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(raw_send_str(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    /* the exchange ends (the origin cannot stretch the wait with 1xx past max_interim) */
    assert_int_equal(harness_wait_file(h, "access.log", "target=\"/slow\"", 10000), 0);
    check_growth(h, before, "1xx flood");
    char *line = px_log_line(h, "target=\"/slow\"");
    print_message("%s\n", line);
    /* exactly max_interim (32) were relayed, the rest dropped and counted */
    char want[32 * 4 + 16] = " interim=102";
    for (int i = 1; i < 32; i++)
        strcat(want, ",102");
    strcat(want, " ");
    if (!tu_contains(line, want))
        fail_msg("not exactly 32 interim responses relayed: %s", line);
    free(line);
    assert_true(metric(h, "portico_interim_dropped_total") > 0);
    raw_close(c);
    px_stop(h);
    fake_origin_stop(o);
    free(flood);
}

/* ---- 3. pipelined requests from a client that never reads ---- */

/* Writes copies of req until the proxy stops taking them (the socket stays full for 300 ms)
 * or max were written. Returns how many were written. */
static long pipeline_until_full(struct raw_conn *c, const char *req, long max)
{
    int fd = raw_fd(c);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    size_t len = strlen(req), off = 0;
    long sent = 0;
    while (sent < max) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 300) <= 0)
            break; /* full for 300 ms: the proxy stopped reading us */
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
        if (off == len) {
            off = 0;
            sent++;
        }
    }
    return sent;
}

static void test_pipelining_flood(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\n",
                                 "[upstream u]\norigin = 127.0.0.1:%u\n", fake_origin_port(o));
    static const struct {
        const char *what;
        const char *req;
        bool admin;
        long max;
    } rows[] = {
        {"pipelined GET through the origin",
         "GET / HTTP/1.1\r\nHost: t\r\n\r\n", false, 100000},
        {"pipelined HEAD through the origin", "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", false,
         20000},
        {"pipelined GET /metrics on the admin listener", "GET /metrics HTTP/1.1\r\n"
                                                         "Host: 127.0.0.1\r\n\r\n",
         true, 10000},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        long before = px_proc_kb(harness_pid(h), "VmRSS");
        struct raw_conn *c = rows[i].admin ? px_connect_port(harness_port(h, "admin"))
                                           : px_connect(h);
        long sent = pipeline_until_full(c, rows[i].req, rows[i].max);
        print_message("%s: %ld requests written (the rest refused by a full socket)\n",
                      rows[i].what, sent);
        check_growth(h, before, rows[i].what);
        raw_close(c);
    }
    px_stop(h);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stray_pipelined),
        cmocka_unit_test(test_stray_same_client),
        cmocka_unit_test(test_stray_other_client),
        cmocka_unit_test(test_stray_with_idle_pool),
        cmocka_unit_test(test_stray_tls),
        cmocka_unit_test(test_interim_flood),
        cmocka_unit_test(test_pipelining_flood),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
