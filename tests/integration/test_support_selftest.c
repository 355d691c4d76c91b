/*
 * test_support_selftest.c — proves the integration-test support code before Portico relies on it:
 * every fake origin, the fake DNS server, the certificates, the raw client, the helpers, and the
 * process harness (driving this very binary in a "fake portico" mode, so no proxy is needed).
 *
 * Timing assertions are lower bounds measured from a time taken before the request was sent:
 * the origin's delays guarantee them; nothing asserts an upper bound.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/x509_vfy.h>

#include "../support/certs.h"
#include "../support/fake_dns.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"

#define FAKE_ENV "PORTICO_SELFTEST_FAKE_PORTICO"
#define IO_MS 3000 /* bound of reads that must succeed; only reached when something is broken */

static char self_exe[512];

/* ---- helpers ---- */

static struct raw_conn *connect_ok(uint16_t port)
{
    struct raw_conn *c = raw_connect(port, IO_MS);

    if (c == NULL) {
        fail_msg("connect 127.0.0.1:%u: %s", port, raw_last_error());
    }
    return c;
}

/* One GET on a fresh connection; returns the connection for more. */
static struct raw_conn *get(uint16_t port, struct raw_response *r, int *rc, int timeout_ms)
{
    struct raw_conn *c = connect_ok(port);

    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    *rc = raw_read_response(c, r, timeout_ms);
    return c;
}

/* ---- helpers: clock, json, run_command ---- */

static void test_json(void **state)
{
    (void)state;
    const char *json = "{\"note\": \"the \\\"error\\\" key\", \"error\" : \"upstream \\u00e9 "
                       "timeout\\n\", \"elapsed_ms\": 1503.5, \"n\": -3, \"obj\": {\"x\": 1}}";
    char *s = tu_json_get_string(json, "error");
    double d;

    assert_non_null(s);
    assert_string_equal(s, "upstream \xc3\xa9 timeout\n");
    free(s);
    assert_int_equal(tu_json_get_number(json, "elapsed_ms", &d), 0);
    assert_true(d > 1503.4 && d < 1503.6);
    assert_int_equal(tu_json_get_number(json, "n", &d), 0);
    assert_true(d < -2.9 && d > -3.1);
    assert_int_equal(tu_json_get_number(json, "x", &d), 0);
    assert_null(tu_json_get_string(json, "missing"));
    assert_null(tu_json_get_string(json, "elapsed_ms")); /* a number, not a string */
    assert_int_equal(tu_json_get_number(json, "error", &d), -1);
}

/* tj_parse: escapes decoded, and each string and key sized by itself. Each took as much as the
 * rest of the document: 12 MB for a 25 KB /status, which ASan took 300-500 ms to parse, longer
 * than test_balance's gated health checks (500 ms) could wait for the test. */
static void test_tj_strings(void **state)
{
    (void)state;
    enum { PAD = 64 * 1024 };
    static const char head[] = "{\"k\": \"a\\\"b\\u00e9\\ud83d\\ude00\", \"pad\": \"";
    char *text = malloc(sizeof(head) + PAD + 2), err[96];
    assert_non_null(text);
    memcpy(text, head, sizeof(head) - 1);
    memset(text + sizeof(head) - 1, 'x', PAD);
    strcpy(text + sizeof(head) - 1 + PAD, "\"}");
    struct tj *doc = tj_parse(text, err, sizeof(err));
    free(text);
    if (!doc)
        fail_msg("not parsed: %s", err);
    assert_string_equal(tj_str(doc, "k"), "a\"b\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(strlen(tj_str(doc, "pad")), PAD);
    /* the short key and string before the padding: their own few bytes each, not 64 KB */
    assert_true(malloc_usable_size(doc->items[0]->key) < 64);
    assert_true(malloc_usable_size(doc->items[0]->string) < 64);
    assert_true(malloc_usable_size(doc->items[1]->key) < 64);
    tj_free(doc);
    /* an escape at the very end is refused, not read past */
    assert_null(tj_parse("\"ab\\", err, sizeof(err)));
    assert_null(tj_parse("\"ab\\u12\"", err, sizeof(err)));
}

static void test_run_command(void **state)
{
    (void)state;
    const char *const ok[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
    const char *const slow[] = { "sh", "-c", "exec sleep 30", NULL };
    const char *const missing[] = { "/nonexistent/portico-test-binary", NULL };
    struct tu_cmd_result res;
    int64_t t0 = tu_now_ms();

    assert_int_equal(tu_run_command(ok, IO_MS, &res), 3);
    assert_string_equal(res.out, "out\n");
    assert_string_equal(res.err, "err\n");
    assert_false(res.timed_out);
    tu_cmd_result_free(&res);

    assert_int_equal(tu_run_command(slow, 200, &res), 128 + SIGKILL);
    assert_true(res.timed_out);
    assert_int_equal(res.term_signal, SIGKILL);
    assert_true(tu_now_ms() - t0 >= 200);
    tu_cmd_result_free(&res);

    /* -1 when the spawn reports the failed exec; 127 from the child where it cannot (valgrind
     * runs posix_spawn as a plain fork). */
    int rc = tu_run_command(missing, IO_MS, &res);

    assert_true(rc == -1 || rc == 127);
    tu_cmd_result_free(&res);
}

/* curl as a real client against the OK origin, plain and TLS. */
static void test_curl(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    struct fake_origin *plain = fake_origin_start_kind(FO_OK);
    struct fake_origin_opts o = { .kind = FO_OK, .tls_cert = certs->server_cert,
                                  .tls_key = certs->server_key };
    struct fake_origin *tls = fake_origin_start(&o);
    char url[128], tls_url[128], resolve[128];
    struct tu_cmd_result res;

    assert_non_null(plain);
    assert_non_null(tls);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hello", fake_origin_port(plain));
    snprintf(tls_url, sizeof(tls_url), "https://localhost:%u/", fake_origin_port(tls));
    snprintf(resolve, sizeof(resolve), "localhost:%u:127.0.0.1", fake_origin_port(tls));

    const char *const get_plain[] = { "curl", "-sS", "-i", "--max-time", "5", url, NULL };
    const char *const get_tls[] = { "curl", "-sS", "-i", "--max-time", "5", "--cacert",
                                    certs->ca_cert, "--resolve", resolve, tls_url, NULL };

    assert_int_equal(tu_run_command(get_plain, 10000, &res), 0);
    assert_true(tu_contains(res.out, "HTTP/1.1 200 OK\r\n"));
    assert_true(tu_contains(res.out, "\r\n\r\nok\n"));
    tu_cmd_result_free(&res);
    assert_int_equal(tu_run_command(get_tls, 10000, &res), 0);
    assert_true(tu_contains(res.out, "HTTP/1.1 200 OK\r\n"));
    tu_cmd_result_free(&res);

    char *head = fake_origin_request_head(plain, 0);

    assert_non_null(head);
    assert_true(tu_contains(head, "GET /hello HTTP/1.1\r\n"));
    free(head);
    fake_origin_stop(plain);
    fake_origin_stop(tls);
}

/* ---- origins: connection-level behaviours ---- */

static void test_refuse(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_REFUSE);

    assert_non_null(o);
    errno = 0;
    assert_null(raw_connect(fake_origin_port(o), IO_MS));
    assert_int_equal(errno, ECONNREFUSED);
    assert_int_equal(fake_origin_connections(o), 0);
    fake_origin_stop(o);
}

/* An origin stopped and started again on its port while a connection it closed first still
 * holds that port (TIME_WAIT): it binds (SO_REUSEADDR), as a test restarting an origin needs.
 * The listener had no SO_REUSEADDR, and the new bind failed with EADDRINUSE for a minute. */
static void test_restart_on_same_port(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_OK};
    assert_int_equal(tu_free_port(&opts.port), 0); /* PORTICO_TEST_PORTS' when set */
    for (int round = 0; round < 3; round++) {
        struct fake_origin *o = fake_origin_start(&opts);
        if (!o)
            fail_msg("round %d: no origin on port %u: %s", round, opts.port, strerror(errno));
        opts.port = fake_origin_port(o);
        struct raw_conn *c = connect_ok(opts.port);
        struct raw_response r;
        /* the origin closes first: its side of the connection is the one left waiting */
        assert_int_equal(
            raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), 0);
        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        raw_response_free(&r);
        assert_int_equal(raw_wait_closed(c, IO_MS), 1);
        raw_close(c);
        fake_origin_stop(o);
    }
}

static void test_blackhole(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_BLACKHOLE);

    assert_non_null(o);
    print_message("blackhole: %u filler connect(s), the last one left hanging\n",
                  fake_origin_blackhole_fillers(o));
    int64_t t0 = tu_now_ms();

    errno = 0;
    assert_null(raw_connect(fake_origin_port(o), 300));
    assert_int_equal(errno, ETIMEDOUT);
    assert_true(tu_now_ms() - t0 >= 300);
    fake_origin_stop(o);
}

/* Behaviours that read the request and then end the exchange without a valid response. */
struct close_row {
    enum fo_kind kind;
    bool timeout;        /* the read must time out (the origin keeps the connection) */
    int want_errno;      /* errno the reader sees, 0 if none expected */
    const char *error;   /* substring of the read error */
    const char *leftover; /* bytes the client is left with (raw_read_all), NULL for none */
};

static const struct close_row close_rows[] = {
    /* silent keeps the connection, so only the timeout ends the read */
    { FO_SILENT, true, 0, "timeout", "" },
    /* close_empty: a FIN and not one byte */
    { FO_CLOSE_EMPTY, false, 0, "closed by peer before a response head", "" },
    /* reset: the reader gets ECONNRESET */
    { FO_RESET, false, ECONNRESET, "Connection reset", "" },
    /* garbage: bytes that are not an HTTP status line */
    { FO_GARBAGE, false, 0, "not an HTTP/1.x response head", NULL },
    /* partial_head: half a head, then nothing; the half stays readable */
    { FO_PARTIAL_HEAD, true, 0, "timeout", "HTTP/1.1 200 OK\r\nContent-Le" },
};

static void test_close_behaviours(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(close_rows) / sizeof(close_rows[0]); i++) {
        const struct close_row *row = &close_rows[i];
        struct fake_origin *o = fake_origin_start_kind(row->kind);
        struct raw_response r;
        int rc;

        print_message("  %s\n", fake_origin_kind_name(row->kind));
        assert_non_null(o);
        struct raw_conn *c = get(fake_origin_port(o), &r, &rc, row->timeout ? 300 : IO_MS);

        assert_int_equal(rc, -1);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.timed_out, row->timeout);
        assert_true(tu_contains(r.error, row->error));
        if (row->want_errno != 0) {
            assert_int_equal(raw_last_errno(c), row->want_errno);
        }
        if (row->leftover != NULL) {
            size_t len;
            char *rest = raw_read_all(c, 50, &len);

            assert_string_equal(rest, row->leftover);
            free(rest);
        }
        /* The request head was read and recorded by every one of them. */
        assert_int_equal(fake_origin_wait_requests(o, 1, IO_MS), 0);
        char *head = fake_origin_request_head(o, 0);

        assert_string_equal(head, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        free(head);
        raw_response_free(&r);
        raw_close(c);
        fake_origin_stop(o);
    }
}

static void test_no_read(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_NO_READ);
    size_t big = 16 * 1024 * 1024;
    char *body = calloc(1, big);

    assert_non_null(o);
    assert_non_null(body);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    raw_set_send_timeout(c, 300);
    assert_int_equal(raw_send(c, body, big), -1);
    assert_int_equal(raw_last_errno(c), ETIMEDOUT);
    assert_int_equal(fake_origin_wait_connections(o, 1, IO_MS), 0);
    assert_int_equal(fake_origin_requests(o), 0);
    raw_close(c);
    free(body);
    fake_origin_stop(o);
}

static void test_tls_plain_failures(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    struct raw_tls_opts tls = { .ca_file = certs->ca_cert };
    struct fake_origin *garbage = fake_origin_start_kind(FO_TLS_GARBAGE);
    struct fake_origin *silent = fake_origin_start_kind(FO_TLS_SILENT);

    assert_non_null(garbage);
    assert_non_null(silent);
    errno = 0;
    assert_null(raw_connect_tls(fake_origin_port(garbage), &tls, IO_MS));
    assert_int_equal(errno, EPROTO);
    print_message("tls_garbage: %s\n", raw_last_error());
    int64_t t0 = tu_now_ms();

    errno = 0;
    assert_null(raw_connect_tls(fake_origin_port(silent), &tls, 300));
    assert_int_equal(errno, ETIMEDOUT);
    assert_true(tu_now_ms() - t0 >= 300);
    fake_origin_stop(garbage);
    fake_origin_stop(silent);
}

/* ---- origins: HTTP ---- */

static void test_ok_pipelined_keepalive(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    static const char reqs[] =
        "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        "POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
        "GET /c HTTP/1.1\r\nHost: t\r\n\r\n";
    struct raw_response r;
    char *rec;
    size_t len;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    assert_int_equal(raw_send(c, reqs, sizeof(reqs) - 1), 0);
    for (int i = 0; i < 3; i++) {
        char want[16];

        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.framing, RAW_LENGTH);
        assert_string_equal(r.body, "ok\n");
        assert_string_equal(raw_header(&r, "X-Origin-Conn"), "0");
        snprintf(want, sizeof(want), "%d", i);
        assert_string_equal(raw_header(&r, "X-Origin-Request"), want);
        assert_false(r.peer_closed);
        raw_response_free(&r);
    }
    assert_int_equal(fake_origin_connections(o), 1);
    assert_int_equal(fake_origin_requests(o), 3);
    /* Exact bytes, framing included, and the de-chunked body. */
    rec = fake_origin_request(o, 1, &len);
    assert_non_null(rec);
    assert_int_equal(len, strlen(rec));
    assert_true(tu_contains(reqs, rec));
    assert_true(tu_contains(rec, "0\r\nX-Trailer: 1\r\n\r\n"));
    free(rec);
    rec = fake_origin_request_body(o, 1, &len);
    assert_string_equal(rec, "abcde");
    free(rec);
    rec = fake_origin_request_body(o, 0, &len);
    assert_string_equal(rec, "hello");
    free(rec);
    assert_null(fake_origin_request(o, 3, NULL));
    raw_close(c);
    fake_origin_stop(o);
}

static void test_echo_head_and_close(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_ECHO);
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    assert_int_equal(raw_send_str(c, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                                     "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                                     "Connection: close\r\n\r\nping"), 0);
    assert_int_equal(raw_read_head_response(c, &r, IO_MS), 0);
    assert_int_equal(r.framing, RAW_NO_BODY);
    assert_string_equal(raw_header(&r, "Content-Length"), "0"); /* echo of an empty body */
    assert_int_equal(r.body_len, 0);
    raw_response_free(&r);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_string_equal(r.body, "ping");
    assert_string_equal(raw_header(&r, "Connection"), "close");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    assert_true(raw_peer_closed(c));
    raw_close(c);
    fake_origin_stop(o);
}

static void test_recording_headers(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct raw_response r;
    int rc;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    assert_int_equal(raw_send_str(c, "GET /x HTTP/1.1\r\nHost: t\r\nVia: 1.1 portico\r\n"
                                     "x-forwarded-for:  127.0.0.1 \r\n\r\n"), 0);
    rc = raw_read_response(c, &r, IO_MS);
    assert_int_equal(rc, 0);
    char *via = fake_origin_request_header(o, 0, "via");
    char *xff = fake_origin_request_header(o, 0, "X-Forwarded-For");

    assert_string_equal(via, "1.1 portico");
    assert_string_equal(xff, "127.0.0.1");
    assert_null(fake_origin_request_header(o, 0, "Connection"));
    assert_null(fake_origin_request_header(o, 1, "Via"));
    free(via);
    free(xff);
    raw_response_free(&r);
    raw_close(c);
    fake_origin_stop(o);
}

static void test_slow_first_byte(void **state)
{
    (void)state;
    struct fake_origin_opts opts = { .kind = FO_SLOW_FIRST_BYTE, .delay_ms = 200 };
    struct fake_origin *o = fake_origin_start(&opts);
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));
    int64_t t0 = tu_now_ms();

    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.first_byte_ms - t0 >= 200);
    assert_true(r.head.at_ms >= r.first_byte_ms);
    raw_response_free(&r);
    raw_close(c);
    fake_origin_stop(o);
}

static void test_interim_sequence(void **state)
{
    (void)state;
    static const struct fo_step script[] = {
        FO_INTERIM(103, "Link: </style.css>; rel=preload\r\nLink: </app.js>; rel=preload\r\n"),
        FO_WAIT(100),
        FO_INTERIM(102, NULL),
        FO_WAIT(100),
        FO_RESPOND(200, "X-Final: yes\r\n", "final body", FO_CHUNKED),
        FO_END(),
    };
    struct fake_origin_opts opts = { .kind = FO_SCRIPT, .script = script };
    struct fake_origin *o = fake_origin_start(&opts);
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));
    int64_t t0 = tu_now_ms();

    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.ninterim, 2);
    assert_int_equal(r.interim[0].status, 103);
    assert_string_equal(r.interim[0].reason, "Early Hints");
    assert_int_equal(raw_head_field_count(&r.interim[0], "Link"), 2);
    assert_string_equal(raw_head_field(&r.interim[0], "link"), "</style.css>; rel=preload");
    assert_int_equal(r.interim[1].status, 102);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.framing, RAW_CHUNKED);
    assert_string_equal(r.body, "final body");
    assert_string_equal(raw_header(&r, "X-Final"), "yes");
    /* Order, and the origin's delays as lower bounds from before the request was sent. */
    assert_true(r.interim[0].at_ms >= t0);
    assert_true(r.interim[1].at_ms >= r.interim[0].at_ms);
    assert_true(r.head.at_ms >= r.interim[1].at_ms);
    assert_true(r.interim[1].at_ms - t0 >= 100);
    assert_true(r.head.at_ms - t0 >= 200);
    print_message("interim arrivals after send: 103 %+lld ms, 102 %+lld ms, 200 %+lld ms\n",
                  (long long)(r.interim[0].at_ms - t0), (long long)(r.interim[1].at_ms - t0),
                  (long long)(r.head.at_ms - t0));
    raw_response_free(&r);
    raw_close(c);
    fake_origin_stop(o);
}

/* Per-request scripts: the first request on each connection gets a close-delimited answer, the
 * second a response that the origin then resets. */
static const struct fo_step close_delimited[] = {
    FO_RESPOND(200, NULL, "until close", FO_CLOSE_DELIMITED),
    FO_END(),
};
static const struct fo_step then_reset[] = {
    FO_RESPOND(404, NULL, "nope", FO_LENGTH),
    FO_RST(),
    FO_END(),
};

static const struct fo_step *pick_by_index(const struct fo_request_info *req, void *arg)
{
    unsigned *calls = arg;

    (*calls)++;
    return req->index == 0 ? close_delimited : then_reset;
}

static void test_script_pick_and_framing(void **state)
{
    (void)state;
    unsigned calls = 0;
    struct fake_origin_opts opts = { .kind = FO_SCRIPT, .pick_script = pick_by_index,
                                     .pick_arg = &calls };
    struct fake_origin *o = fake_origin_start(&opts);
    struct raw_response r;
    int rc;

    assert_non_null(o);
    struct raw_conn *c = get(fake_origin_port(o), &r, &rc, IO_MS);

    assert_int_equal(rc, 0);
    assert_int_equal(r.framing, RAW_UNTIL_CLOSE);
    assert_string_equal(r.body, "until close");
    assert_true(r.peer_closed);
    raw_response_free(&r);
    raw_close(c);
    c = get(fake_origin_port(o), &r, &rc, IO_MS);
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "nope");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    assert_int_equal(raw_last_errno(c), ECONNRESET);
    raw_close(c);
    assert_int_equal(calls, 2);
    assert_int_equal(fake_origin_connections(o), 2);
    fake_origin_stop(o);
}

/* The raw client's view of bodies cut short. */
struct cut_row {
    const char *name;
    const char *bytes;       /* sent by the origin before it closes */
    enum raw_framing framing;
    const char *body;        /* what was decoded before the cut */
};

static const struct cut_row cut_rows[] = {
    /* 3 of 10 Content-Length bytes */
    { "short length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", RAW_LENGTH, "abc" },
    /* a complete chunk but no last chunk */
    { "no last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
      RAW_CHUNKED, "abc" },
    /* inside a chunk */
    { "mid chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", RAW_CHUNKED,
      "ab" },
};

static void test_truncated_bodies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cut_rows) / sizeof(cut_rows[0]); i++) {
        const struct fo_step script[] = { FO_SEND(cut_rows[i].bytes), FO_CLOSE(), FO_END() };
        struct fake_origin_opts opts = { .kind = FO_SCRIPT, .script = script };
        struct fake_origin *o = fake_origin_start(&opts);
        struct raw_response r;
        int rc;

        print_message("  %s\n", cut_rows[i].name);
        assert_non_null(o);
        struct raw_conn *c = get(fake_origin_port(o), &r, &rc, IO_MS);

        assert_int_equal(rc, -1);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.framing, cut_rows[i].framing);
        assert_true(r.truncated);
        assert_true(r.peer_closed);
        assert_false(r.timed_out);
        assert_string_equal(r.body, cut_rows[i].body);
        raw_response_free(&r);
        raw_close(c);
        fake_origin_stop(o);
    }
}

static void test_expect_continue(void **state)
{
    (void)state;
    static const char head[] = "PUT /u HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                               "Expect: 100-continue\r\n\r\n";
    struct fake_origin *o = fake_origin_start_kind(FO_ECHO);
    struct raw_head h;
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    assert_int_equal(raw_send_str(c, head), 0);
    assert_int_equal(raw_read_one_head(c, &h, IO_MS), 0);
    assert_int_equal(h.status, 100);
    raw_head_free(&h);
    assert_int_equal(raw_send_str(c, "data"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.ninterim, 0);
    assert_string_equal(r.body, "data");
    raw_response_free(&r);
    raw_close(c);
    fake_origin_stop(o);
}

static void test_expect_ignored(void **state)
{
    (void)state;
    static const char head[] = "PUT /u HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                               "Expect: 100-continue\r\n\r\n";
    struct fake_origin_opts opts = { .kind = FO_ECHO, .expect = FO_EXPECT_IGNORE };
    struct fake_origin *o = fake_origin_start(&opts);
    struct raw_head h;
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    assert_int_equal(raw_send_str(c, head), 0);
    assert_int_equal(raw_read_one_head(c, &h, 200), -1); /* no 100 Continue comes */
    raw_head_free(&h);
    assert_int_equal(raw_send_str(c, "data"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.ninterim, 0);
    assert_string_equal(r.body, "data");
    raw_response_free(&r);
    raw_close(c);
    fake_origin_stop(o);
}

static void test_final_before_body(void **state)
{
    (void)state;
    static const char head[] = "PUT /u HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                               "Expect: 100-continue\r\n\r\n";
    struct fake_origin_opts opts = { .kind = FO_OK, .status = 417, .body = "no\n",
                                     .respond_before_body = true };
    struct fake_origin *o = fake_origin_start(&opts);
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));

    assert_int_equal(raw_send_str(c, head), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.ninterim, 0);
    assert_int_equal(r.status, 417);
    assert_int_equal(fake_origin_requests(o), 0); /* the body is not read yet */
    raw_response_free(&r);
    assert_int_equal(raw_send_str(c, "late"), 0);
    assert_int_equal(fake_origin_wait_requests(o, 1, IO_MS), 0);
    char *body = fake_origin_request_body(o, 0, NULL);

    assert_string_equal(body, "late");
    free(body);
    raw_close(c);
    fake_origin_stop(o);
}

static void test_slow_client(void **state)
{
    (void)state;
    static const char req[] = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct raw_response r;

    assert_non_null(o);
    struct raw_conn *c = connect_ok(fake_origin_port(o));
    int64_t t0 = tu_now_ms();

    /* 32 bytes in pieces of 12: three sends, two pauses of 50 ms. */
    assert_int_equal(raw_send_slowly(c, req, sizeof(req) - 1, 12, 50), 0);
    assert_true(raw_last_send_ms(c) - t0 >= 100);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    fake_origin_stop(o);
}

static void test_loopback_only(void **state)
{
    (void)state;
    errno = 0;
    assert_null(raw_connect_ip("localhost", 80, 100));
    assert_int_equal(errno, EINVAL);
}

/* ---- TLS ---- */

static void test_tls_valid(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    struct fake_origin_opts opts = { .kind = FO_OK, .tls_cert = certs->server_cert,
                                     .tls_key = certs->server_key };
    struct fake_origin *o = fake_origin_start(&opts);
    const char *hosts[] = { "localhost", "127.0.0.1" };
    char sni[64];

    assert_non_null(o);
    for (size_t i = 0; i < 2; i++) {
        struct raw_tls_opts tls = { .ca_file = certs->ca_cert, .host = hosts[i],
                                    .require_valid = true };
        struct raw_conn *c = raw_connect_tls(fake_origin_port(o), &tls, IO_MS);
        struct raw_response r;

        if (c == NULL) {
            fail_msg("TLS to %s: %s", hosts[i], raw_last_error());
        }
        assert_int_equal(raw_tls_verify_result(c), X509_V_OK);
        assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
    }
    fake_origin_last_sni(o, sni, sizeof(sni));
    assert_string_equal(sni, ""); /* the IP connection came last and sends no SNI */
    assert_int_equal(fake_origin_tls_handshakes(o), 2);
    fake_origin_stop(o);
}

/* Certificates that must fail verification against the test CA, and the error each gives. */
struct bad_cert_row {
    const char *name;
    size_t cert;         /* offsetof the cert path in struct test_certs */
    size_t key;
    long verify;         /* SSL_get_verify_result */
};

static const struct bad_cert_row bad_cert_rows[] = {
    { "expired", offsetof(struct test_certs, expired_cert),
      offsetof(struct test_certs, expired_key), X509_V_ERR_CERT_HAS_EXPIRED },
    { "self-signed", offsetof(struct test_certs, self_signed_cert),
      offsetof(struct test_certs, self_signed_key), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT },
    { "wrong name", offsetof(struct test_certs, wrong_name_cert),
      offsetof(struct test_certs, wrong_name_key), X509_V_ERR_HOSTNAME_MISMATCH },
};

static const char *cert_field(const struct test_certs *certs, size_t off)
{
    const char *const *p = (const char *const *)(const void *)((const char *)certs + off);

    return *p;
}

static void test_tls_bad_certs(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();

    for (size_t i = 0; i < sizeof(bad_cert_rows) / sizeof(bad_cert_rows[0]); i++) {
        const struct bad_cert_row *row = &bad_cert_rows[i];
        struct fake_origin_opts opts = { .kind = FO_OK,
                                         .tls_cert = cert_field(certs, row->cert),
                                         .tls_key = cert_field(certs, row->key) };
        struct fake_origin *o = fake_origin_start(&opts);
        struct raw_tls_opts lax = { .ca_file = certs->ca_cert };
        struct raw_tls_opts strict = { .ca_file = certs->ca_cert, .require_valid = true };

        print_message("  %s\n", row->name);
        assert_non_null(o);
        struct raw_conn *c = raw_connect_tls(fake_origin_port(o), &lax, IO_MS);

        assert_non_null(c);
        assert_int_equal(raw_tls_verify_result(c), row->verify);
        raw_close(c);
        errno = 0;
        assert_null(raw_connect_tls(fake_origin_port(o), &strict, IO_MS));
        assert_int_equal(errno, EPROTO);
        fake_origin_stop(o);
    }
}

static void test_tls_client_cert(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    struct fake_origin_opts opts = { .kind = FO_OK, .tls_cert = certs->server_cert,
                                     .tls_key = certs->server_key,
                                     .tls_client_ca = certs->ca_cert };
    struct fake_origin *o = fake_origin_start(&opts);
    struct raw_tls_opts with = { .ca_file = certs->ca_cert, .cert = certs->client_cert,
                                 .key = certs->client_key, .require_valid = true };
    struct raw_tls_opts without = { .ca_file = certs->ca_cert, .require_valid = true };
    struct raw_response r;
    char cn[64];

    assert_non_null(o);
    struct raw_conn *c = raw_connect_tls(fake_origin_port(o), &with, IO_MS);

    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    fake_origin_last_client_cn(o, cn, sizeof(cn));
    assert_string_equal(cn, "portico-test-client");

    /* TLS 1.3: the client may finish its handshake before the server rejects it; either way
     * no response comes. */
    c = raw_connect_tls(fake_origin_port(o), &without, IO_MS);
    if (c != NULL) {
        raw_send_str(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_int_equal(raw_read_response(c, &r, IO_MS), -1);
        assert_int_equal(r.status, 0);
        raw_response_free(&r);
        raw_close(c);
    }
    assert_int_equal(fake_origin_requests(o), 1);
    fake_origin_stop(o);
}

/* ---- DNS ---- */

struct dns_row {
    const char *name;
    enum fake_dns_mode mode;
    bool aaaa;
    const char *zone;     /* opts.zone: names outside it get NXDOMAIN */
    uint16_t qtype;
    int rc;               /* fake_dns_query's result */
    int rcode;
    unsigned ancount;
    const char *addr;
};

static const struct dns_row dns_rows[] = {
    { "A", FAKE_DNS_ANSWER, false, NULL, 1, 0, 0, 1, "127.0.0.1" },
    { "AAAA enabled", FAKE_DNS_ANSWER, true, NULL, 28, 0, 0, 1, "::1" },
    /* AAAA not enabled: NOERROR without answers (NODATA), so resolvers fall back to A */
    { "AAAA disabled", FAKE_DNS_ANSWER, false, NULL, 28, 0, 0, 0, "" },
    { "nxdomain", FAKE_DNS_NXDOMAIN, false, NULL, 1, 0, 3, 0, "" },
    { "servfail", FAKE_DNS_SERVFAIL, false, NULL, 1, 0, 2, 0, "" },
    /* silent: the query is counted, the client times out */
    { "silent", FAKE_DNS_SILENT, false, NULL, 1, -1, 0, 0, "" },
    /* a zone: its names (any case) are answered, others do not exist; a name that merely
     * ends in the zone's last letters is not in it */
    { "in zone", FAKE_DNS_ANSWER, false, "PORTICO.test", 1, 0, 0, 1, "127.0.0.1" },
    { "outside zone", FAKE_DNS_ANSWER, false, "other.test", 1, 0, 3, 0, "" },
    { "zone suffix only", FAKE_DNS_ANSWER, false, "ortico.test", 1, 0, 3, 0, "" },
};

static void test_dns(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(dns_rows) / sizeof(dns_rows[0]); i++) {
        const struct dns_row *row = &dns_rows[i];
        struct fake_dns_opts opts = { .mode = row->mode, .aaaa = row->aaaa, .zone = row->zone };
        struct fake_dns *d = fake_dns_start(&opts);
        struct fake_dns_reply reply;
        char name[64];

        print_message("  %s\n", row->name);
        assert_non_null(d);
        int timeout = row->rc == 0 ? IO_MS : 200;

        assert_int_equal(fake_dns_query(fake_dns_port(d), "origin.portico.test", row->qtype,
                                        timeout, &reply), row->rc);
        assert_int_equal(fake_dns_wait_queries(d, 1, IO_MS), 0);
        assert_int_equal(fake_dns_queries(d), 1);
        assert_int_equal(fake_dns_last_name(d, name, sizeof(name)), 0);
        assert_string_equal(name, "origin.portico.test");
        assert_true(fake_dns_last_client_port(d) != 0);
        if (row->rc == 0) {
            assert_int_equal(reply.rcode, row->rcode);
            assert_int_equal(reply.ancount, row->ancount);
            assert_true(reply.aa);
            assert_string_equal(reply.addr, row->addr);
        }
        fake_dns_stop(d);
    }
}

/* Long answers: over UDP, 29 A records for origin.portico.test fit 512 bytes (501) and 30 do
 * not (517: TC, the question only); over TCP the 30 come whole, after their length; with the
 * TCP side off, a connect is refused. */
static void test_dns_truncated(void **state)
{
    (void)state;
    struct fake_dns_reply reply;
    struct fake_dns_opts fits = { .a_records = 29 };
    struct fake_dns *d = fake_dns_start(&fits);
    assert_non_null(d);
    assert_int_equal(fake_dns_query(fake_dns_port(d), "origin.portico.test", 1, IO_MS, &reply), 0);
    assert_false(reply.tc);
    assert_int_equal(reply.ancount, 29);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons(fake_dns_port(d)) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);
    fake_dns_stop(d);

    struct fake_dns_opts over = { .a_records = 30, .tcp = FAKE_DNS_TCP_ANSWER };
    d = fake_dns_start(&over);
    assert_non_null(d);
    assert_int_equal(fake_dns_query(fake_dns_port(d), "origin.portico.test", 1, IO_MS, &reply), 0);
    assert_true(reply.tc);
    assert_int_equal(reply.ancount, 0);
    assert_int_equal(reply.rcode, 0);
    /* the same question over TCP: its length, id 7, RD, one question */
    static const uint8_t query[] = { 0, 37, 0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                     6, 'o', 'r', 'i', 'g', 'i', 'n', 7, 'p', 'o', 'r', 't', 'i',
                                     'c', 'o', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1 };
    a.sin_port = htons(fake_dns_port(d));
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(write(fd, query, sizeof(query)), (ssize_t)sizeof(query));
    uint8_t answer[2 + 517];
    size_t got = 0;
    while (got < sizeof(answer)) {
        short rev;
        assert_int_equal(tu_poll_until(fd, POLLIN, tu_now_ms() + IO_MS, &rev), 1);
        ssize_t n = read(fd, answer + got, sizeof(answer) - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(answer[0] << 8 | answer[1], 517);
    assert_int_equal(answer[2 + 1], 7);                       /* the id */
    assert_int_equal(answer[2 + 2] & 0x02, 0);                /* not truncated */
    assert_int_equal(answer[2 + 6] << 8 | answer[2 + 7], 30); /* ancount */
    assert_int_equal(fake_dns_wait_tcp_queries(d, 1, IO_MS), 0);
    close(fd);
    assert_int_equal(fake_dns_wait_tcp_closed(d, IO_MS), 0);
    fake_dns_stop(d);
}

static void test_dns_mode_switch(void **state)
{
    (void)state;
    struct fake_dns *d = fake_dns_start(NULL);
    struct fake_dns_reply reply;

    assert_non_null(d);
    assert_int_equal(fake_dns_query(fake_dns_port(d), "a.test", 1, IO_MS, &reply), 0);
    assert_int_equal(reply.rcode, 0);
    fake_dns_set_mode(d, FAKE_DNS_NXDOMAIN);
    assert_int_equal(fake_dns_query(fake_dns_port(d), "a.test", 1, IO_MS, &reply), 0);
    assert_int_equal(reply.rcode, 3);
    assert_int_equal(fake_dns_queries(d), 2);
    fake_dns_stop(d);
}

/* ---- certificates ---- */

static void test_certs_files(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    struct tu_cmd_result res;

    assert_non_null(certs);
    assert_ptr_equal(certs, certs_get()); /* cached */
    const char *const verify[] = { "openssl", "verify", "-CAfile", certs->ca_cert,
                                   certs->server_cert, certs->wrong_name_cert,
                                   certs->client_cert, NULL };

    assert_int_equal(tu_run_command(verify, 10000, &res), 0);
    tu_cmd_result_free(&res);
    const char *const dates[] = { "openssl", "x509", "-noout", "-enddate", "-in",
                                  certs->expired_cert, NULL };

    assert_int_equal(tu_run_command(dates, 10000, &res), 0);
    assert_true(tu_contains(res.out, "notAfter=Jan  2 00:00:00 2020 GMT"));
    tu_cmd_result_free(&res);
}

/* ---- the process harness, on this binary in fake-portico mode ---- */

static struct harness *fake_harness(const char *extra)
{
    struct harness *h = harness_new();

    assert_non_null(h);
    harness_set_bin(h, self_exe);
    assert_int_equal(harness_write_config(h,
                                          "# fake portico\n"
                                          "listen = {{port:main}}\n"
                                          "listen = {{port:admin}}\n"
                                          "origin = 127.0.0.1:{{free_port:origin}}\n"
                                          "log = {{dir}}/fake.log\n"
                                          "%s",
                                          extra),
                     0);
    return h;
}

static void test_harness_lifecycle(void **state)
{
    (void)state;
    struct harness *h = fake_harness("");
    struct tu_cmd_result res;

    assert_int_equal(harness_check_config(h, &res), 0);
    assert_true(tu_contains(res.out, "config ok"));
    tu_cmd_result_free(&res);
    assert_int_equal(harness_start(h), 0);
    assert_true(harness_running(h));
    /* Both {{port:...}} listeners accept; the config says what the placeholders became. */
    struct raw_conn *c = connect_ok(harness_port(h, "main"));

    raw_close(c);
    c = connect_ok(harness_port(h, "admin"));
    raw_close(c);
    assert_true(harness_log_contains(h, "fake portico listening"));
    char *conf = tu_read_file(harness_config_path(h), NULL);
    char want[128];

    snprintf(want, sizeof(want), "origin = 127.0.0.1:%u\n", harness_port(h, "origin"));
    assert_true(tu_contains(conf, want));
    assert_true(tu_contains(conf, harness_dir(h)));
    free(conf);
    /* A reload-style signal, and waiting for its log line (inotify, no polling). */
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "fake portico reloaded", IO_MS), 0);
    assert_int_equal(harness_wait_file(h, "fake.log", "hup", IO_MS), 0);
    assert_int_equal(harness_stop(h), 0);
    assert_true(harness_exit_info(h)->exited);
    assert_false(harness_exit_info(h)->sigkilled);
    assert_false(harness_running(h));
    char *out = harness_stdout(h);

    assert_true(tu_contains(out, "fake portico stopping"));
    free(out);
    harness_free(h);
}

struct bytewise {
    char path[512];
    int watch; /* inotify for the waiter's reads, set before the waiter starts */
};

/* Appends a line one byte per write, each after the waiter has read the file once more (its
 * read-only close): every look of the waiter sees one more piece of the needle. */
static void *append_bytewise(void *arg)
{
    static const char line[] = "the needle-in-pieces\n";
    struct bytewise *b = arg;
    int fd = open(b->path, O_WRONLY | O_APPEND | O_CLOEXEC);

    for (size_t i = 0; fd >= 0 && i < sizeof(line) - 1; i++) {
        char events[4096];
        short rev;

        if (tu_poll_until(b->watch, POLLIN, tu_now_ms() + IO_MS, &rev) != 1
            || read(b->watch, events, sizeof(events)) <= 0 || write(fd, &line[i], 1) != 1) {
            break;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

/* A wait reads only what the file gained since its last look, yet finds a needle that arrives
 * in pieces across many looks. */
static void test_harness_wait_split_needle(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    struct bytewise b;
    pthread_t writer;

    assert_non_null(h);
    assert_int_equal(harness_write_file(h, "split.log", "first line\n"), 0);
    snprintf(b.path, sizeof(b.path), "%s/split.log", harness_dir(h));
    b.watch = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    assert_true(b.watch >= 0);
    assert_true(inotify_add_watch(b.watch, b.path, IN_CLOSE_NOWRITE) >= 0);
    assert_int_equal(pthread_create(&writer, NULL, append_bytewise, &b), 0);
    int rc = harness_wait_file(h, "split.log", "the needle-in-pieces", IO_MS);

    pthread_join(writer, NULL);
    close(b.watch);
    assert_int_equal(rc, 0);
    assert_int_equal(harness_wait_file(h, "split.log", "first line", IO_MS), 0);
    assert_int_equal(harness_wait_file(h, "split.log", "not there", 50), -1);
    harness_free(h);
}

/* How many inotify descriptors this process has open. */
static int inotify_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char target[64];
        ssize_t len = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);

        if (len > 0) {
            target[len] = '\0';
            n += strcmp(target, "anon_inode:inotify") == 0;
        }
    }
    closedir(d);
    return n;
}

/* The waits of one harness share one inotify watch, kept until harness_free: closing one waits
 * in the kernel for a grace period (25 ms on average and up to 300 ms on a busy machine), which
 * a watch per wait paid at every wait (3 to 5 s of each of test_reload's churn tests). */
static void test_harness_waits_keep_one_watch(void **state)
{
    (void)state;
    struct harness *h = harness_new();

    assert_non_null(h);
    int before = inotify_fds();

    assert_int_equal(harness_write_file(h, "w.log", "one\n"), 0);
    assert_int_equal(harness_wait_file(h, "w.log", "one", IO_MS), 0);
    assert_int_equal(inotify_fds(), before + 1);
    assert_int_equal(harness_write_file(h, "w.log", "one\ntwo\n"), 0);
    assert_int_equal(harness_wait_file(h, "w.log", "two", IO_MS), 0);
    assert_int_equal(harness_wait_log(h, "not there", 10), -1);
    assert_int_equal(inotify_fds(), before + 1);
    harness_free(h);
    assert_int_equal(inotify_fds(), before);
}

/* How the child ends, and what harness_start/harness_stop must report. */
struct exit_row {
    const char *name;
    const char *config;  /* extra fake-portico config lines */
    int start_ms;        /* harness_start's bound */
    int start;           /* harness_start result */
    const char *error;   /* in harness_error() after a failed start */
    int stop;            /* harness_stop result */
    bool signaled;
    bool sigkilled;
};

static const struct exit_row exit_rows[] = {
    /* non-zero exit on SIGTERM */
    { "exit 3", "on_term = exit3\n", IO_MS, 0, NULL, 3, false, false },
    /* dies of SIGABRT on SIGTERM: 128 + 6 */
    { "crash", "on_term = crash\n", IO_MS, 0, NULL, 128 + SIGABRT, true, false },
    /* ignores SIGTERM: SIGKILL after the (shortened) stop timeout */
    { "ignore", "on_term = ignore\n", IO_MS, 0, NULL, 128 + SIGKILL, true, true },
    /* exits before listening: start fails at once, stop reports the code */
    { "early exit", "start = exit2\n", IO_MS, -1, "exited before listening", 2, false, false },
    /* listens and accepts, but holds on to the probe connection: not ready (a test counting
     * its connections or descriptors could meet the probe), start fails at its deadline */
    { "probe kept open", "accepted = keep\n", 2000, -1, "had not closed it", 0, false, false },
};

static void test_harness_exits(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(exit_rows) / sizeof(exit_rows[0]); i++) {
        const struct exit_row *row = &exit_rows[i];
        struct harness *h = fake_harness(row->config);
        int64_t t0 = tu_now_ms();

        print_message("  %s\n", row->name);
        harness_set_timeouts(h, row->start_ms, 300);
        assert_int_equal(harness_start(h), row->start);
        if (row->error != NULL && !tu_contains(harness_error(h), row->error))
            fail_msg("harness_error \"%s\" lacks \"%s\"", harness_error(h), row->error);
        assert_int_equal(harness_stop(h), row->stop);
        assert_int_equal(harness_exit_info(h)->signaled, row->signaled);
        assert_int_equal(harness_exit_info(h)->sigkilled, row->sigkilled);
        /* bounded by design, not a timing claim */
        assert_true(tu_now_ms() - t0 < row->start_ms + IO_MS);
        harness_free(h);
    }
}

static void test_harness_bad_binary(void **state)
{
    (void)state;
    struct harness *h = harness_new();

    assert_non_null(h);
    harness_set_bin(h, "/nonexistent/portico");
    assert_int_equal(harness_write_config(h, "listen = {{port:main}}\n"), 0);
    assert_int_equal(harness_start(h), -1);
    assert_true(tu_contains(harness_error(h), "cannot execute"));
    assert_int_equal(harness_write_config(h, "x = {{nope}}\n"), -1);
    assert_true(tu_contains(harness_error(h), "unknown placeholder"));
    harness_free(h);
}

static void test_harness_bad_config(void **state)
{
    (void)state;
    struct harness *h = fake_harness("bad = 1\n");
    struct tu_cmd_result res;

    assert_int_equal(harness_check_config(h, &res), 1);
    assert_true(tu_contains(res.err, "bad config"));
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* ---- fake portico: what this binary does when the harness runs it ---- */

static int fake_listen(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether 127.0.0.1:port can be bound now, without SO_REUSEADDR (as tu_free_port binds): no
 * socket holds it, TIME_WAIT included. */
static bool port_bindable(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* PORTICO_TEST_PORTS (run-tests.sh's side-by-side builds): every port from the range, none given
 * out twice, and a port some socket holds is passed over. The range is one of 64 ports below the
 * kernel's ephemeral ones (and below run-tests.sh's), whose first port this test holds; one
 * whose other 63 are all free: a port of it held by another process (another test's listener,
 * a connection, a TIME_WAIT) is passed over too, and then 63 picks from 62 ports give one twice,
 * which failed 8 of 24 runs with 8 test binaries beside it on ports 14000-15999. */
static void test_free_port_range(void **state)
{
    (void)state;
    const char *saved = getenv("PORTICO_TEST_PORTS");
    char *keep = saved != NULL ? strdup(saved) : NULL;
    bool seen[64] = { false };
    uint16_t low = 14000;
    int held = -1;
    char range[32];

    for (; held < 0 && low < 15000; low += 64) {
        int free_ports = 0;

        while (free_ports < 63 && port_bindable((uint16_t)(low + 1 + free_ports))) {
            free_ports++;
        }
        if (free_ports == 63) {
            held = fake_listen(low);
        }
    }
    assert_true(held >= 0);
    low -= 64;
    snprintf(range, sizeof(range), "%u-%u", low, low + 63);
    assert_int_equal(setenv("PORTICO_TEST_PORTS", range, 1), 0);
    for (int i = 0; i < 63; i++) {
        uint16_t p;

        assert_int_equal(tu_free_port(&p), 0);
        assert_in_range(p, low + 1, low + 63);
        assert_false(seen[p - low]);
        seen[p - low] = true;
    }
    close(held);
    if (keep != NULL) {
        setenv("PORTICO_TEST_PORTS", keep, 1);
    } else {
        unsetenv("PORTICO_TEST_PORTS");
    }
    free(keep);
}

/* Accepts what waits on listener fd: closed at once, or kept (up to 8, then closed) with
 * `accepted = keep` (a child that holds on to the harness's probe). */
static void fake_accept(int fd, bool keep, int *kept, int *nkept)
{
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

    if (c < 0) {
        return;
    }
    if (keep && *nkept < 8) {
        kept[(*nkept)++] = c;
    } else {
        close(c);
    }
}

static int fake_portico(int argc, char **argv)
{
    const char *conf = NULL;
    bool test_only = false;
    char on_term[32] = "exit0", start[32] = "ok", accepted[32] = "close", log_path[512] = "";
    unsigned ports[8];
    int fds[8], nfds = 0, bad = 0, kept[8], nkept = 0;
    sigset_t set;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0) {
            test_only = true;
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf = argv[++i];
        }
    }
    char *text = conf != NULL ? tu_read_file(conf, NULL) : NULL;

    if (text == NULL) {
        fprintf(stderr, "fake portico: no config\n");
        return 2;
    }
    /* Block the signals before listening, so none arrives before the signalfd reads it. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT); /* harness_stop sends both; either one stops the fake */
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        unsigned port;

        if (sscanf(line, "listen = %u", &port) == 1 && nfds < 8) {
            ports[nfds++] = port;
        }
        sscanf(line, "on_term = %31s", on_term);
        sscanf(line, "start = %31s", start);
        sscanf(line, "accepted = %31s", accepted);
        sscanf(line, "bad = %d", &bad);
        sscanf(line, "log = %511s", log_path);
    }
    free(text);
    if (test_only) {
        if (bad) {
            fprintf(stderr, "fake portico: bad config\n");
            return 1;
        }
        printf("fake portico: config ok\n");
        return 0;
    }
    if (strcmp(start, "exit2") == 0) {
        return 2;
    }
    struct pollfd p[9];
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);

    if (sfd < 0) {
        return 3;
    }
    p[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
    for (int i = 0; i < nfds; i++) {
        fds[i] = fake_listen((uint16_t)ports[i]);
        p[i + 1] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
    }
    fprintf(stderr, "fake portico listening\n");
    for (;;) {
        struct signalfd_siginfo si;

        if (poll(p, (nfds_t)nfds + 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return 3;
        }
        for (int i = 0; i < nfds; i++) {
            if (p[i + 1].revents & POLLIN) {
                fake_accept(fds[i], strcmp(accepted, "keep") == 0, kept, &nkept);
            }
        }
        if (!(p[0].revents & POLLIN)) {
            continue;
        }
        if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si)) {
            return 3;
        }
        if (si.ssi_signo == SIGHUP) {
            FILE *f = fopen(log_path, "a");

            if (f != NULL) {
                fprintf(f, "hup\n");
                fclose(f);
            }
            fprintf(stderr, "fake portico reloaded\n");
            continue;
        }
        if (strcmp(on_term, "ignore") == 0) {
            continue;
        }
        break;
    }
    printf("fake portico stopping\n");
    fflush(stdout);
    for (int i = 0; i < nfds; i++) {
        close(fds[i]);
    }
    for (int i = 0; i < nkept; i++) {
        close(kept[i]);
    }
    close(sfd);
    if (strcmp(on_term, "crash") == 0) {
        struct rlimit none = { 0, 0 };

        setrlimit(RLIMIT_CORE, &none); /* no core file in the test's directory */
        signal(SIGABRT, SIG_DFL);
        raise(SIGABRT);
    }
    return strcmp(on_term, "exit3") == 0 ? 3 : 0;
}

int main(int argc, char **argv)
{
    if (getenv(FAKE_ENV) != NULL) {
        return fake_portico(argc, argv);
    }
    tu_test_filter();
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);

    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self_exe[n] = '\0';
    /* Set before any thread exists; inherited by the fake portico children. */
    setenv(FAKE_ENV, "1", 1);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_tj_strings),
        cmocka_unit_test(test_run_command),
        cmocka_unit_test(test_certs_files),
        cmocka_unit_test(test_curl),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_restart_on_same_port),
        cmocka_unit_test(test_blackhole),
        cmocka_unit_test(test_close_behaviours),
        cmocka_unit_test(test_no_read),
        cmocka_unit_test(test_tls_plain_failures),
        cmocka_unit_test(test_ok_pipelined_keepalive),
        cmocka_unit_test(test_echo_head_and_close),
        cmocka_unit_test(test_recording_headers),
        cmocka_unit_test(test_slow_first_byte),
        cmocka_unit_test(test_interim_sequence),
        cmocka_unit_test(test_script_pick_and_framing),
        cmocka_unit_test(test_truncated_bodies),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_expect_ignored),
        cmocka_unit_test(test_final_before_body),
        cmocka_unit_test(test_slow_client),
        cmocka_unit_test(test_loopback_only),
        cmocka_unit_test(test_tls_valid),
        cmocka_unit_test(test_tls_bad_certs),
        cmocka_unit_test(test_tls_client_cert),
        cmocka_unit_test(test_dns),
        cmocka_unit_test(test_dns_truncated),
        cmocka_unit_test(test_dns_mode_switch),
        cmocka_unit_test(test_free_port_range),
        cmocka_unit_test(test_harness_lifecycle),
        cmocka_unit_test(test_harness_wait_split_needle),
        cmocka_unit_test(test_harness_waits_keep_one_watch),
        cmocka_unit_test(test_harness_exits),
        cmocka_unit_test(test_harness_bad_binary),
        cmocka_unit_test(test_harness_bad_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
