/*
 * test_expect.c — issue 4's `Expect: 100-continue` end to end: the real portico, a raw client
 * that sends the head, waits (bounded) for a 100 and only then sends the body, curl as a real
 * client, and fake origins that send 100, answer a final status at once, or stay silent.
 *
 * One Portico serves three routes, one per mode: /relay/ (continue_timeout = 300ms),
 * /synth/ and /ignore/. Waiting for a 100 that must not come is bounded by NO_100_MS, twice the
 * relay continue_timeout, so a relay timer wrongly applied would show.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"

#define IO_MS 5000          /* bound of reads that must succeed */
#define CONTINUE_MS 300     /* relay route's continue_timeout */
/* continue_timeout of the heartbeat test: 32 beats of 5 ms must all come before it,
 * also on a sanitized build on a loaded machine (300 ms did not, in CI) */
#define HEARTBEAT_CONTINUE_MS 2000
#define NO_100_MS 600       /* how long a 100 that must not come is waited for */
#define BODY_LEN (16 * 1024)

#define ROWS_MAX 8

static struct {
    struct fake_origin *o;
    struct harness *h;
    struct raw_conn *c;
    struct raw_conn *row_c[ROWS_MAX]; /* one connection per row, for rows side by side */
    struct fake_origin *row_o[ROWS_MAX]; /* one origin and one Portico per row, likewise */
    struct harness *row_h[ROWS_MAX];
} fx;

static char body[BODY_LEN];

static void release(void)
{
    raw_close(fx.c);
    for (size_t i = 0; i < ROWS_MAX; i++) {
        raw_close(fx.row_c[i]);
        harness_free(fx.row_h[i]);
        fake_origin_stop(fx.row_o[i]);
    }
    harness_free(fx.h);
    fake_origin_stop(fx.o);
    memset(&fx, 0, sizeof(fx));
}

static int teardown(void **state)
{
    (void)state;
    release();
    return 0;
}

/* ---- helpers ---- */

enum origin_kind {
    O_SENDS_100,   /* answers Expect: 100-continue with a 100, then echoes the body */
    O_FINAL,       /* answers 401 right after the head, then reads whatever body comes */
    O_SILENT,      /* never sends 100, echoes the body once it comes */
};

static const char *const origin_names[] = {
    [O_SENDS_100] = "origin sends 100",
    [O_FINAL] = "origin answers 401 at once",
    [O_SILENT] = "origin silent on Expect",
};

static struct fake_origin *origin_up_in(struct fake_origin **slot, enum origin_kind kind)
{
    struct fake_origin_opts opts = { .kind = FO_ECHO };
    if (kind == O_FINAL)
        opts = (struct fake_origin_opts){ .kind = FO_OK, .status = 401, .body = "denied\n",
                                          .respond_before_body = true };
    else if (kind == O_SILENT)
        opts.expect = FO_EXPECT_IGNORE;
    *slot = fake_origin_start(&opts);
    assert_non_null(*slot);
    return *slot;
}

static void origin_up(enum origin_kind kind)
{
    origin_up_in(&fx.o, kind);
}

static void origin_up_opts(const struct fake_origin_opts *opts)
{
    fx.o = fake_origin_start(opts);
    assert_non_null(fx.o);
}

/* Portico with one route per Expect mode in front of origin o, into *slot. */
static void portico_up_in(struct harness **slot, struct fake_origin *o, const char *upstream_extra)
{
    *slot = harness_new();
    assert_non_null(*slot);
    assert_int_equal(harness_write_config(*slot,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "access_log = {{dir}}/access.log\naccess_log_format = text\n"
                                          "workers = 2\n"
                                          "max_body_size = 1m\n"
                                          "[upstream u]\n"
                                          "origin = 127.0.0.1:%u\n"
                                          "%s"
                                          "[route relay]\n"
                                          "prefix = /relay/\n"
                                          "upstream = u\n"
                                          "expect = relay\n"
                                          "continue_timeout = %dms\n"
                                          /* 5 s: a 100 within 2 s is not the timer's */
                                          "[route synth]\n"
                                          "prefix = /synth/\n"
                                          "upstream = u\n"
                                          "expect = synthesize\n"
                                          "continue_timeout = 5s\n"
                                          "[route ignore]\n"
                                          "prefix = /ignore/\n"
                                          "upstream = u\n"
                                          "expect = ignore\n"
                                          "continue_timeout = %dms\n",
                                          fake_origin_port(o),
                                          upstream_extra ? upstream_extra : "", CONTINUE_MS,
                                          CONTINUE_MS),
                     0);
    assert_int_equal(harness_start(*slot), 0);
}

/* Portico with one route per Expect mode in front of fx.o. */
static void portico_up(const char *upstream_extra)
{
    portico_up_in(&fx.h, fx.o, upstream_extra);
}

static void reconnect(void)
{
    raw_close(fx.c);
    fx.c = raw_connect(harness_port(fx.h, "listen"), IO_MS);
    if (fx.c == NULL)
        fail_msg("connect to portico: %s", raw_last_error());
}

static long metric(const char *name)
{
    struct raw_conn *c = raw_connect(harness_port(fx.h, "admin"), IO_MS);
    struct raw_response r;
    char key[128];

    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Connection: close\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(r.body, key);
    if (p == NULL)
        fail_msg("metric %s not found", name);
    long v = strtol(p + strlen(key), NULL, 10);
    raw_response_free(&r);
    raw_close(c);
    return v;
}

/* No head arrives on c until NO_100_MS after sent_ms and the connection stays open. */
static void assert_no_head_on(struct raw_conn *c, int64_t sent_ms)
{
    struct raw_head h;
    int64_t left = sent_ms + NO_100_MS - tu_now_ms();
    int rc = raw_read_one_head(c, &h, left > 0 ? (int)left : 0);
    if (rc == 0) {
        int st = h.status;
        raw_head_free(&h);
        fail_msg("got %d where no response was due yet", st);
    }
    assert_false(raw_peer_closed(c));
}

/* No head arrives within NO_100_MS and the connection stays open. */
static void assert_no_head_yet(void)
{
    assert_no_head_on(fx.c, tu_now_ms());
}

/* A second request on the same connection works: the first left it in a clean state. */
static void assert_connection_reusable(const char *mode)
{
    char req[128];
    struct raw_response r;

    snprintf(req, sizeof(req), "GET /%s/again HTTP/1.1\r\nHost: t\r\n\r\n", mode);
    assert_int_equal(raw_send_str(fx.c, req), 0);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_true(r.status == 200 || r.status == 401);
    assert_int_equal(r.ninterim, 0);
    raw_response_free(&r);
}

/* Request `index` of the origin: its body length and whether Expect reached it. */
static void assert_origin_in_saw(struct fake_origin *o, unsigned index, size_t body_len,
                                 bool expect_forwarded)
{
    size_t len = 0;

    assert_int_equal(fake_origin_wait_requests(o, index + 1, IO_MS), 0);
    char *b = fake_origin_request_body(o, index, &len);
    char *e = fake_origin_request_header(o, index, "Expect");
    assert_non_null(b);
    assert_int_equal(len, body_len);
    if (body_len)
        assert_memory_equal(b, body, body_len);
    if (expect_forwarded) {
        assert_non_null(e);
        assert_string_equal(e, "100-continue");
    } else {
        assert_null(e);
    }
    free(b);
    free(e);
}

/* What fx.o received as request index. */
static void assert_origin_saw(unsigned index, size_t body_len, bool expect_forwarded)
{
    assert_origin_in_saw(fx.o, index, body_len, expect_forwarded);
}

/* ---- the three modes against the three origins ---- */

struct mode_row {
    const char *mode;
    enum origin_kind origin;
    bool want_100;            /* the client gets a 100 before the final response */
    int min_100_ms, max_100_ms;
    bool expect_forwarded;    /* Expect: 100-continue reaches the origin */
    int status;               /* final status */
    bool closed;              /* the client connection is closed after it (body unread) */
    long synthesized;         /* portico_continue_synthesized_total for this request */
    long relayed;             /* portico_interim_relayed_total for this request */
};

static const struct mode_row mode_rows[] = {
    /* relay: Expect goes on, the origin's 100 comes back (relayed, not Portico's) */
    { "relay", O_SENDS_100, true, 0, 4000, true, 200, false, 0, 1 },
    /* relay: a final answer instead of 100: it goes to the client, the body is never sent */
    { "relay", O_FINAL, false, 0, 0, true, 401, true, 0, 0 },
    /* relay: no 100 from the origin: Portico's own after continue_timeout, then the body */
    { "relay", O_SILENT, true, CONTINUE_MS - 5, 2000, true, 200, false, 1, 0 },
    /* synthesize: 100 at once, Expect stripped (so the origin has nothing to answer) */
    { "synth", O_SENDS_100, true, 0, 2000, false, 200, false, 1, 0 },
    /* synthesize: the origin answers 401 before the client sent its body */
    { "synth", O_FINAL, true, 0, 2000, false, 401, true, 1, 0 },
    { "synth", O_SILENT, true, 0, 2000, false, 200, false, 1, 0 },
    /* ignore: Expect stripped, no 100 at all; the client sends its body after waiting */
    { "ignore", O_SENDS_100, false, 0, 0, false, 200, false, 0, 0 },
    { "ignore", O_FINAL, false, 0, 0, false, 401, true, 0, 0 },
    { "ignore", O_SILENT, false, 0, 0, false, 200, false, 0, 0 },
};

static void run_mode_row(const struct mode_row *row)
{
    char head[256];
    struct raw_head h;
    struct raw_response r;
    unsigned index = fake_origin_requests(fx.o);
    long synth0 = metric("portico_continue_synthesized_total");
    long relayed0 = metric("portico_interim_relayed_total");

    snprintf(head, sizeof(head), "POST /%s/upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
             "Expect: 100-continue\r\n\r\n", row->mode, BODY_LEN);
    reconnect();
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send_str(fx.c, head), 0);
    if (row->want_100) {
        assert_int_equal(raw_read_one_head(fx.c, &h, IO_MS), 0);
        assert_int_equal(h.status, 100);
        int64_t at = h.at_ms - t0;
        print_message("    100 Continue after %lld ms\n", (long long)at);
        raw_head_free(&h);
        assert_true(at >= row->min_100_ms);
        assert_true(at <= row->max_100_ms);
    } else if (row->status == 200) {
        assert_no_head_yet();
    }
    /* A final status before the body: the client never sends it (as curl does). */
    if (row->status == 200)
        assert_int_equal(raw_send(fx.c, body, sizeof(body)), 0);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.ninterim, 0); /* no second 100, nothing else */
    assert_int_equal(r.status, row->status);
    if (row->status == 200) {
        assert_int_equal(r.body_len, BODY_LEN);
        assert_memory_equal(r.body, body, BODY_LEN);
    }
    if (row->closed) {
        assert_string_equal(raw_header(&r, "Connection"), "close");
        assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    } else {
        assert_null(raw_header(&r, "Connection"));
        assert_connection_reusable(row->mode);
    }
    raw_response_free(&r);
    assert_origin_saw(index, row->status == 200 ? BODY_LEN : 0, row->expect_forwarded);
    assert_int_equal(metric("portico_continue_synthesized_total") - synth0, row->synthesized);
    assert_int_equal(metric("portico_interim_relayed_total") - relayed0, row->relayed);
}

static void test_expect_modes(void **state)
{
    (void)state;
    for (int kind = O_SENDS_100; kind <= O_SILENT; kind++) {
        origin_up((enum origin_kind)kind);
        portico_up(NULL);
        for (size_t i = 0; i < sizeof(mode_rows) / sizeof(mode_rows[0]); i++) {
            if (mode_rows[i].origin != (enum origin_kind)kind)
                continue;
            print_message("  %s, %s\n", mode_rows[i].mode, origin_names[kind]);
            run_mode_row(&mode_rows[i]);
        }
        release();
    }
}

/* relay: a client that does not wait for the 100 sends its body with the head; the origin's
 * final answer comes first: the body, held at the gate, never reaches the origin. */
static void test_relay_final_holds_eager_body(void **state)
{
    (void)state;
    char req[256 + BODY_LEN];
    struct raw_response r;

    origin_up(O_FINAL);
    portico_up(NULL);
    int n = snprintf(req, sizeof(req), "POST /relay/eager HTTP/1.1\r\nHost: t\r\n"
                     "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", BODY_LEN);
    memcpy(req + n, body, BODY_LEN);
    reconnect();
    assert_int_equal(raw_send(fx.c, req, (size_t)n + BODY_LEN), 0);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, 401);
    assert_int_equal(r.ninterim, 0);
    assert_string_equal(r.body, "denied\n");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    assert_origin_saw(0, 0, true);
}

/* relay: after the origin's 100 the body may take longer than first_byte_timeout to upload;
 * first_byte_timeout only starts once the request is fully sent. */
static void test_relay_slow_body_after_100(void **state)
{
    (void)state;
    struct raw_head h;
    struct raw_response r;

    origin_up(O_SENDS_100);
    portico_up("first_byte_timeout = 300ms\n");
    reconnect();
    assert_int_equal(raw_send_str(fx.c, "POST /relay/slow HTTP/1.1\r\nHost: t\r\n"
                                        "Content-Length: 16384\r\nExpect: 100-continue\r\n\r\n"),
                     0);
    assert_int_equal(raw_read_one_head(fx.c, &h, IO_MS), 0);
    assert_int_equal(h.status, 100);
    raw_head_free(&h);
    int64_t t0 = tu_now_ms();
    /* 8 pieces, 100 ms apart: ~700 ms of upload */
    assert_int_equal(raw_send_slowly(fx.c, body, BODY_LEN, BODY_LEN / 8, 100), 0);
    assert_true(tu_now_ms() - t0 >= 600);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BODY_LEN);
    raw_response_free(&r);
    assert_origin_saw(0, BODY_LEN, true);
}

/* relay: the origin's 100 opens the gate on a body the client sent eagerly, and that body is
 * broken: the client gets 400 (its body is refused while Portico still answers), the origin
 * gets no body, and nothing is relayed after the 400. */
struct bad_body_row {
    const char *name;
    const char *request;     /* head and body, sent whole */
    int status;
};

static const struct bad_body_row bad_body_rows[] = {
    { "malformed chunk size",
      "POST /relay/bad HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
      "Expect: 100-continue\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400 },
    /* chunked, so only counted while it flows: larger than max_body_size = 1m */
    { "chunked body over max_body_size", "POST /relay/big HTTP/1.1\r\nHost: t\r\n"
      "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n200000\r\n", 413 },
};

static void test_relay_gate_opens_on_bad_body(void **state)
{
    (void)state;
    origin_up(O_SENDS_100);
    portico_up(NULL);
    for (size_t i = 0; i < sizeof(bad_body_rows) / sizeof(bad_body_rows[0]); i++) {
        const struct bad_body_row *row = &bad_body_rows[i];
        struct raw_response r;

        print_message("  %s\n", row->name);
        reconnect();
        assert_int_equal(raw_send_str(fx.c, row->request), 0);
        if (row->status == 413) {
            /* the 2 MiB chunk, in pieces, until Portico stops taking it */
            static char big[64 * 1024];
            memset(big, 'x', sizeof(big));
            raw_set_send_timeout(fx.c, 2000);
            for (int k = 0; k < 32 && raw_send(fx.c, big, sizeof(big)) == 0; k++) {
            }
        }
        assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
        assert_int_equal(r.status, row->status);
        raw_response_free(&r);
        assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
    }
    assert_true(harness_running(fx.h));
}

/* synthesize: the client has its 100 already; a 100 the origin sends anyway is not repeated. */
static void test_synthesize_drops_origin_100(void **state)
{
    (void)state;
    static const struct fo_step script[] = {
        FO_INTERIM(100, NULL), FO_RESPOND(200, NULL, "stored", FO_LENGTH), FO_END(),
    };
    struct fake_origin_opts opts = { .kind = FO_SCRIPT, .script = script };
    struct raw_head h;
    struct raw_response r;

    origin_up_opts(&opts);
    portico_up(NULL);
    reconnect();
    assert_int_equal(raw_send_str(fx.c, "POST /synth/x HTTP/1.1\r\nHost: t\r\n"
                                        "Content-Length: 16384\r\nExpect: 100-continue\r\n\r\n"),
                     0);
    assert_int_equal(raw_read_one_head(fx.c, &h, IO_MS), 0);
    assert_int_equal(h.status, 100);
    raw_head_free(&h);
    assert_int_equal(raw_send(fx.c, body, BODY_LEN), 0);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.ninterim, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "stored");
    raw_response_free(&r);
    assert_int_equal(metric("portico_interim_dropped_total"), 1);
    assert_int_equal(metric("portico_continue_synthesized_total"), 1);
}

/* ---- refusals: 417 and 413, never after a 100 ---- */

struct refuse_row {
    const char *name;
    const char *request;     /* sent whole */
    int status;
    bool closed;             /* unread body: the connection is closed */
};

static const struct refuse_row refuse_rows[] = {
    { "other expectation with a body",
      "POST /relay/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: something-else\r\n\r\n",
      417, true },
    { "other expectation, no body",
      "GET /synth/x HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\n\r\n", 417, false },
    { "100-continue listed with another",
      "POST /ignore/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
      "Expect: 100-continue, x-other\r\n\r\n", 417, true },
    /* too large by Content-Length: 413 at once, no 100 first, in every mode */
    { "relay, too large", "POST /relay/big HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n"
      "Expect: 100-continue\r\n\r\n", 413, true },
    { "synthesize, too large", "POST /synth/big HTTP/1.1\r\nHost: t\r\n"
      "Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n", 413, true },
    { "ignore, too large", "POST /ignore/big HTTP/1.1\r\nHost: t\r\n"
      "Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n", 413, true },
};

static void test_refusals(void **state)
{
    (void)state;
    origin_up(O_SENDS_100);
    portico_up(NULL);
    for (size_t i = 0; i < sizeof(refuse_rows) / sizeof(refuse_rows[0]); i++) {
        const struct refuse_row *row = &refuse_rows[i];
        struct raw_response r;

        print_message("  %s\n", row->name);
        reconnect();
        assert_int_equal(raw_send_str(fx.c, row->request), 0);
        assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
        assert_int_equal(r.ninterim, 0);
        assert_int_equal(r.status, row->status);
        if (row->closed) {
            assert_int_equal(raw_wait_closed(fx.c, IO_MS), 1);
        } else {
            assert_null(raw_header(&r, "Connection"));
            assert_connection_reusable("synth");
        }
        raw_response_free(&r);
    }
    /* Only the keep-alive check ever reached the origin. */
    assert_int_equal(fake_origin_requests(fx.o), 1);
    assert_int_equal(metric("portico_continue_synthesized_total"), 0);
}

/* ---- an empty body: nothing to wait for ---- */

/* Content-Length: 0 with Expect: 100-continue: the whole request came with its head, so there
 * is no body to hold at the gate; the origin answers at once and the connection goes on (it
 * was closed as if the answer had come before the body). */
static void test_empty_body_keeps_connection(void **state)
{
    (void)state;
    static const char *const modes[] = { "relay", "synth", "ignore" };
    origin_up(O_SILENT);
    portico_up(NULL);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct raw_response r;
        char req[256];

        print_message("  %s\n", modes[i]);
        snprintf(req, sizeof(req), "POST /%s/empty HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                 "Expect: 100-continue\r\n\r\n", modes[i]);
        reconnect();
        assert_int_equal(raw_send_str(fx.c, req), 0);
        assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
        assert_int_equal(r.status, 200);
        assert_null(raw_header(&r, "Connection"));
        raw_response_free(&r);
        assert_connection_reusable(modes[i]);
    }
}

/* ---- HTTP/1.0 clients: Expect is ignored ---- */

struct http10_row {
    const char *name;
    const char *mode;
    const char *expect;
};

static const struct http10_row http10_rows[] = {
    { "relay", "relay", "100-continue" },
    { "synthesize", "synth", "100-continue" },
    { "ignore", "ignore", "100-continue" },
    /* not even a 417 */
    { "relay, other expectation", "relay", "something-else" },
};

/* The 100 a client waits for is never dropped for the cap on 1xx per exchange: with
 * processing_interval = 5ms, 32 heartbeats had gone out before continue_timeout, and Portico's
 * own 100 was dropped as the 33rd; the client waited for it until client_body_timeout (408). */
static void test_continue_after_many_heartbeats(void **state)
{
    (void)state;
    struct raw_head h;
    struct raw_response r;
    char head[256];
    size_t beats = 0;

    origin_up(O_SILENT);
    fx.h = harness_new();
    assert_non_null(fx.h);
    assert_int_equal(harness_write_config(fx.h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n"
                                          "[upstream u]\n"
                                          "origin = 127.0.0.1:%u\n"
                                          "[route relay]\n"
                                          "prefix = /\n"
                                          "upstream = u\n"
                                          "continue_timeout = %dms\n"
                                          "processing_interval = 5ms\n",
                                          fake_origin_port(fx.o), HEARTBEAT_CONTINUE_MS),
                     0);
    assert_int_equal(harness_start(fx.h), 0);
    reconnect();
    snprintf(head, sizeof(head), "POST /relay/upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
             "Expect: 100-continue\r\nX-Request-Id: beats-then-100\r\n\r\n", BODY_LEN);
    assert_int_equal(raw_send_str(fx.c, head), 0);
    for (;;) {
        if (raw_read_one_head(fx.c, &h, IO_MS) != 0)
            fail_msg("no 100 Continue after %zu heartbeats", beats);
        int status = h.status;
        raw_head_free(&h);
        if (status == 100)
            break;
        assert_int_equal(status, 102);
        beats++;
    }
    print_message("    100 Continue after %zu heartbeats\n", beats);
    assert_int_equal(beats, 32);
    assert_int_equal(raw_send(fx.c, body, BODY_LEN), 0);
    assert_int_equal(raw_read_response(fx.c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    assert_origin_saw(0, BODY_LEN, true);
    /* the access log lists the 100 after the 32 heartbeats */
    assert_int_equal(harness_stop(fx.h), 0);
    char want[32 * 4 + 32] = "interim=";
    for (int i = 0; i < 32; i++)
        strcat(want, "102,");
    strcat(want, "100 ");
    assert_true(harness_file_contains(fx.h, "access.log", want));
}

/* The rows' heads go first, each on its connection, and their NO_100_MS of waiting for a head
 * that must not come run at the same time; then each row's body and answer in turn (the origin
 * records a request once its body is in: in row order). */
static void test_http10_expect_ignored(void **state)
{
    (void)state;
    enum { ROWS = sizeof(http10_rows) / sizeof(http10_rows[0]) };
    int64_t sent[ROWS];
    assert_true(ROWS <= ROWS_MAX);
    origin_up(O_SILENT);
    portico_up(NULL);
    for (size_t i = 0; i < ROWS; i++) {
        const struct http10_row *row = &http10_rows[i];
        char head[256];
        snprintf(head, sizeof(head), "POST /%s/old HTTP/1.0\r\nHost: t\r\nContent-Length: %d\r\n"
                 "Expect: %s\r\n\r\n", row->mode, BODY_LEN, row->expect);
        fx.row_c[i] = raw_connect(harness_port(fx.h, "listen"), IO_MS);
        if (fx.row_c[i] == NULL)
            fail_msg("connect to portico: %s", raw_last_error());
        sent[i] = tu_now_ms();
        assert_int_equal(raw_send_str(fx.row_c[i], head), 0);
    }
    for (size_t i = 0; i < ROWS; i++)
        assert_no_head_on(fx.row_c[i], sent[i]);
    for (size_t i = 0; i < ROWS; i++) {
        const struct http10_row *row = &http10_rows[i];
        struct raw_response r;
        unsigned index = fake_origin_requests(fx.o);

        print_message("  %s\n", row->name);
        assert_int_equal(raw_send(fx.row_c[i], body, BODY_LEN), 0);
        assert_int_equal(raw_read_response(fx.row_c[i], &r, IO_MS), 0);
        assert_int_equal(r.ninterim, 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, BODY_LEN);
        raw_response_free(&r);
        assert_origin_saw(index, BODY_LEN, false);
    }
    assert_int_equal(metric("portico_continue_synthesized_total"), 0);
}

/* ---- curl as the client ---- */

struct curl_row {
    const char *mode;
    enum origin_kind origin;
    const char *expect_timeout;  /* curl --expect100-timeout (seconds) */
    bool want_100;
    int status;
    int min_ms, max_ms;          /* curl's whole run */
};

static const struct curl_row curl_rows[] = {
    /* Portico's 100 at 300 ms spares curl its 10 s wait */
    { "relay", O_SILENT, "10", true, 200, CONTINUE_MS - 5, 8000 },
    { "relay", O_SENDS_100, "10", true, 200, 0, 8000 },
    /* the 401 comes instead of a 100: curl never sends the body */
    { "relay", O_FINAL, "10", false, 401, 0, 8000 },
    { "synth", O_SILENT, "10", true, 200, 0, 8000 },
    /* no 100: curl sends its body after its own 1 s */
    { "ignore", O_SILENT, "1", false, 200, 1000, 8000 },
};

/* One row's curl, on a thread of its own (no assertion there: the test thread checks). */
struct curl_run {
    const char *const *argv;
    struct tu_cmd_result res;
    int rc;
    int64_t took;
};

static void *curl_main(void *arg)
{
    struct curl_run *c = arg;
    int64_t t0 = tu_now_ms();
    c->rc = tu_run_command(c->argv, 30000, &c->res);
    c->took = tu_now_ms() - t0;
    return NULL;
}

/* The rows side by side, each with its origin and Portico (what the origin saw its own). */
static void test_curl(void **state)
{
    (void)state;
    enum { ROWS = sizeof(curl_rows) / sizeof(curl_rows[0]) };
    char url[ROWS][128], data[ROWS][600], out[ROWS][600];
    const char *argv[ROWS][15];
    struct curl_run run[ROWS];
    pthread_t t[ROWS];
    assert_true(ROWS <= ROWS_MAX);
    for (size_t i = 0; i < ROWS; i++) {
        const struct curl_row *row = &curl_rows[i];
        origin_up_in(&fx.row_o[i], row->origin);
        portico_up_in(&fx.row_h[i], fx.row_o[i], NULL);
        snprintf(url[i], sizeof(url[i]), "http://127.0.0.1:%u/%s/curl",
                 harness_port(fx.row_h[i], "listen"), row->mode);
        snprintf(data[i], sizeof(data[i]), "@%s/body.bin", harness_dir(fx.row_h[i]));
        snprintf(out[i], sizeof(out[i]), "%s/out.bin", harness_dir(fx.row_h[i]));
        assert_int_equal(tu_write_file(data[i] + 1, body, BODY_LEN), 0);
        const char *const a[] = { "curl", "-v", "-sS", "--max-time", "20",
                                  "--expect100-timeout", row->expect_timeout,
                                  "-H", "Expect: 100-continue", "--data-binary", data[i],
                                  "-o", out[i], url[i], NULL };
        memcpy(argv[i], a, sizeof(a));
        run[i] = (struct curl_run){ .argv = argv[i] };
    }
    for (size_t i = 0; i < ROWS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, curl_main, &run[i]), 0);
    for (size_t i = 0; i < ROWS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (size_t i = 0; i < ROWS; i++) {
        const struct curl_row *row = &curl_rows[i];
        struct tu_cmd_result res = run[i].res;
        int64_t took = run[i].took;

        print_message("  %s, %s\n", row->mode, origin_names[row->origin]);
        assert_int_equal(run[i].rc, 0);
        print_message("    curl took %lld ms\n", (long long)took);
        assert_true(tu_contains(res.err, "> Expect: 100-continue"));
        assert_int_equal(tu_contains(res.err, "< HTTP/1.1 100 Continue"), row->want_100);
        char status_line[32];
        snprintf(status_line, sizeof(status_line), "< HTTP/1.1 %d ", row->status);
        if (!tu_contains(res.err, status_line))
            fail_msg("no %s in curl -v:\n%s", status_line, res.err);
        assert_true(took >= row->min_ms);
        assert_true(took <= row->max_ms);
        tu_cmd_result_free(&res);
        size_t len = 0;
        char *got = tu_read_file(out[i], &len);
        assert_non_null(got);
        if (row->status == 200) {
            assert_int_equal(len, BODY_LEN);
            assert_memory_equal(got, body, BODY_LEN);
        }
        free(got);
        assert_origin_in_saw(fx.row_o[i], 0, row->status == 200 ? BODY_LEN : 0,
                             !strcmp(row->mode, "relay"));
    }
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_expect_modes, teardown),
        cmocka_unit_test_teardown(test_relay_final_holds_eager_body, teardown),
        cmocka_unit_test_teardown(test_relay_slow_body_after_100, teardown),
        cmocka_unit_test_teardown(test_relay_gate_opens_on_bad_body, teardown),
        cmocka_unit_test_teardown(test_synthesize_drops_origin_100, teardown),
        cmocka_unit_test_teardown(test_refusals, teardown),
        cmocka_unit_test_teardown(test_empty_body_keeps_connection, teardown),
        cmocka_unit_test_teardown(test_continue_after_many_heartbeats, teardown),
        cmocka_unit_test_teardown(test_http10_expect_ignored, teardown),
        cmocka_unit_test_teardown(test_curl, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
