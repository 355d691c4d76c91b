/*
 * test_half_close.c — [proxy] client_half_close: an HTTP/1.1 client that sends whole requests and
 * then shuts its sending side (shutdown(SHUT_WR), `nc -N`; over TLS a close_notify, or a bare FIN).
 *
 * With `abort` (the default, nginx's) the FIN ends the exchange: logged 499, no answer. With
 * `answer` (HAProxy's) the response is relayed in full, then Portico closes: the last response
 * says Connection: close, requests pipelined before the FIN are answered in order, an origin's
 * failure still reaches the client as its gateway error. A FIN before the request is whole
 * (mid-head, mid-body) and a client that resets are what they were: 499.
 *
 * The origin answers only once Portico said (at debug level) that it took the FIN for a
 * half-close: the FIN is then certainly read while the exchange waits for the origin, the case
 * that was a 499 (a gate, opened by the test; with `abort` the test opens it once the client
 * saw its connection end).
 *
 * Beside them, the close a client asked for (Connection: close) with bytes of the client's after
 * it: the answer still goes out whole; the quiet close (no lingering) of a client that asked to
 * close and sent nothing more, its FIN sent with the answer, and the lingering of the others.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/fake_dns.h"
#include "proxy_helpers.h"

#define IO_MS PX_IO_MS
#define BIG_LEN (256 * 1024) /* the gated answer's body: more than one read of it */
#define HUGE_LEN (4 * 1024 * 1024) /* more than a client that does not read takes in */
#define SEND_TIMEOUT_MS 200
#define MID_LEN (192 * 1024) /* more than a client that does not read takes in, less than
                                Portico holds for it (256 KiB): the exchange ends meanwhile */
#define TOLD "half-closed"   /* Portico's debug line when it takes a FIN for a half-close */

/* ---- the gate: the origin's answer waits for the test ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

static void gate_set(bool open)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = open;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* FO_CALL: waits (bounded) until the test opens the gate. */
static int gate_wait(int fd, void *arg)
{
    (void)fd, (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += IO_MS / 1000;
    pthread_mutex_lock(&gate.mu);
    int rc = 0;
    while (!gate.open && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&gate.cv, &gate.mu, &until);
    pthread_mutex_unlock(&gate.mu);
    return 0;
}

/* ---- the origin: one script per path ---- */

static char big[BIG_LEN + 1];
static char huge[HUGE_LEN + 1];
static char mid[MID_LEN + 1];

static const struct fo_step gated_big[] = {
    FO_CALL(gate_wait, NULL), FO_RESPOND(200, NULL, big, FO_LENGTH), FO_END()};
static const struct fo_step huge_answer[] = {FO_RESPOND(200, NULL, huge, FO_LENGTH), FO_END()};
static const struct fo_step mid_answer[] = {FO_RESPOND(200, NULL, mid, FO_LENGTH), FO_END()};
static const struct fo_step gated_reset[] = {FO_CALL(gate_wait, NULL), FO_RST(), FO_END()};
static const struct fo_step second[] = {FO_RESPOND(200, NULL, "second\n", FO_LENGTH), FO_END()};
static const struct fo_step third[] = {FO_RESPOND(200, NULL, "third\n", FO_LENGTH), FO_END()};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strstr(req->head, " /reset "))
        return gated_reset;
    if (strstr(req->head, " /second "))
        return second;
    if (strstr(req->head, " /third "))
        return third;
    if (strstr(req->head, " /huge "))
        return huge_answer;
    if (strstr(req->head, " /mid "))
        return mid_answer;
    return gated_big;
}

static struct {
    struct fake_origin *o;
    struct harness *h;
    struct fake_dns *dns;
} fx;

static int teardown(void **state)
{
    (void)state;
    if (fx.h)
        harness_signal(fx.h, SIGCONT); /* a failed row may have left it stopped */
    harness_free(fx.h);
    fake_origin_stop(fx.o);
    fake_dns_stop(fx.dns);
    memset(&fx, 0, sizeof(fx));
    gate_set(false);
    return 0;
}

static void start_origin(void)
{
    memset(big, 'b', BIG_LEN);
    big[BIG_LEN - 1] = '\n';
    memset(huge, 'h', HUGE_LEN);
    memset(mid, 'm', MID_LEN);
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .pick_script = pick};
    fx.o = fake_origin_start(&o);
    assert_non_null(fx.o);
}

/* The configuration: px_start's, `proxy_extra` in [proxy], debug lines on stderr, and
 * keepalive = 0: every request on a fresh origin connection, none resent after a reset. */
static void write_conf(struct harness *h, const char *proxy_extra, bool tls)
{
    assert_int_equal(
        harness_write_config(h,
                             "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nworkers = 1\n"
                             "access_log = {{dir}}/access.log\naccess_log_format = text\n"
                             "log_level = debug\n%s%s"
                             "[upstream u]\norigin = 127.0.0.1:%u\nkeepalive = 0\n",
                             proxy_extra,
                             tls ? "listen = 127.0.0.1:{{port:tls}} tls\n"
                                   "tls_cert = {{certs}}/server.pem\ntls_key = {{certs}}/server.key\n"
                                 : "",
                             fake_origin_port(fx.o)),
        0);
}

static struct harness *start(const char *proxy_extra, bool tls)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    write_conf(h, proxy_extra, tls);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* ---- rows ---- */

#define MAX_ANSWERS 3

struct row {
    const char *why;
    const char *send;                 /* the client's bytes; its FIN follows */
    bool told;                        /* Portico takes the FIN for a half-close */
    bool then_reset;                  /* once it did, the client resets the connection */
    int status[MAX_ANSWERS];          /* the answers the client reads, in order (0: no more) */
    const char *body[MAX_ANSWERS];    /* each one's body (NULL: the big one) */
    const char *ids[MAX_ANSWERS];     /* X-Request-Ids whose access line is checked ... */
    const char *logged[MAX_ANSWERS];  /* ... for this text */
    const char *origin_body;          /* the body the origin got (NULL: not checked) */
};

#define GET(path, id) "GET " path " HTTP/1.1\r\nHost: a\r\nX-Request-Id: " id "\r\n\r\n"
#define POST(id, framing) "POST /post HTTP/1.1\r\nHost: a\r\nX-Request-Id: " id "\r\n" framing

/* client_half_close = answer */
static const struct row answer_rows[] = {
    /* the case: answered whole, then closed */
    {"GET, FIN", GET("/one", "hc-get"), true, false, {200}, {NULL}, {"hc-get"},
     {" status=200 "}, NULL},
    /* a body read whole before the FIN goes to the origin whole */
    {"POST Content-Length, FIN", POST("hc-post-cl", "Content-Length: 11\r\n\r\nhello world"),
     true, false, {200}, {NULL}, {"hc-post-cl"}, {" status=200 "}, "hello world"},
    {"POST chunked, FIN",
     POST("hc-post-chunked", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
                             "0\r\n\r\n"),
     true, false, {200}, {NULL}, {"hc-post-chunked"}, {" status=200 "}, "hello world"},
    /* requests read before the FIN are all answered, in order */
    {"3 pipelined GETs, FIN",
     GET("/one", "hc-pipe-1") GET("/second", "hc-pipe-2") GET("/third", "hc-pipe-3"), true, false,
     {200, 200, 200}, {NULL, "second\n", "third\n"}, {"hc-pipe-1", "hc-pipe-2", "hc-pipe-3"},
     {" status=200 ", " status=200 ", " status=200 "}, NULL},
    /* the origin fails: the client gets the gateway's answer and its explanation */
    {"GET, FIN, origin resets", GET("/reset", "hc-reset"), true, false, {502}, {""},
     {"hc-reset"}, {" status=502 "}, NULL},
    /* a FIN before the request is whole is what it was */
    {"POST cut mid-body, FIN", POST("hc-cut-body", "Content-Length: 11\r\n\r\nhello"), false,
     false, {0}, {NULL}, {"hc-cut-body"}, {" status=499 "}, NULL},
    {"head cut, FIN", "GET /one HTTP/1.1\r\nHost: a\r\n", false, false, {0}, {NULL}, {NULL},
     {NULL}, NULL},
    /* an HTTP/1.0 tool's request */
    {"HTTP/1.0 GET, FIN", "GET /one HTTP/1.0\r\nX-Request-Id: hc-http10\r\n\r\n", true, false,
     {200}, {NULL}, {"hc-http10"}, {" status=200 "}, NULL},
};

/* client_half_close left out (abort): the FIN ends the exchange, no answer (today's 499) */
static const struct row abort_rows[] = {
    {"GET, FIN", GET("/one", "hc-abort-get"), false, false, {0}, {NULL}, {"hc-abort-get"},
     {" status=499 "}, NULL},
    {"POST Content-Length, FIN", POST("hc-abort-post", "Content-Length: 11\r\n\r\nhello world"),
     false, false, {0}, {NULL}, {"hc-abort-post"}, {" status=499 "}, NULL},
};

/* The needle of Portico's half-close line for connection c. */
static void told_needle(struct raw_conn *c, char *buf, size_t size)
{
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    assert_int_equal(getsockname(raw_fd(c), (struct sockaddr *)&me, &len), 0);
    snprintf(buf, size, "client 127.0.0.1:%u: " TOLD, ntohs(me.sin_port));
}

/* How the client ends its sending side. */
enum fin_kind {
    FIN_TCP,          /* shutdown(SHUT_WR) */
    FIN_CLOSE_NOTIFY, /* TLS: a close_notify, the TCP side left open */
    FIN_BOTH,         /* TLS: a close_notify, then a FIN */
};

static void send_fin(struct raw_conn *c, enum fin_kind fin)
{
    if (fin != FIN_TCP)
        assert_int_equal(raw_tls_close_notify(c), 0);
    if (fin != FIN_CLOSE_NOTIFY)
        assert_int_equal(raw_shutdown_write(c), 0);
}

/* One row on a fresh connection: its bytes, its FIN, then what it reads up to Portico's end. */
static void run_row(struct harness *h, const struct row *r, struct raw_conn *c, enum fin_kind fin)
{
    int64_t t0 = tu_now_ms();
    char needle[96];
    told_needle(c, needle, sizeof(needle));
    gate_set(false);
    assert_int_equal(raw_send_str(c, r->send), 0);
    send_fin(c, fin);
    if (r->told && harness_wait_log(h, needle, IO_MS) != 0)
        fail_msg("%s: Portico did not take the FIN for a half-close", r->why);
    if (r->then_reset) {
        raw_abort(c);
        gate_set(true);
        return;
    }
    if (r->told)
        gate_set(true); /* else once the connection ended: nothing waits for the origin */
    size_t i = 0;
    for (; i < MAX_ANSWERS && r->status[i]; i++) {
        struct raw_response resp;
        if (raw_read_response(c, &resp, IO_MS) != 0)
            fail_msg("%s: answer %zu: %s", r->why, i + 1, resp.error ? resp.error : "none");
        assert_int_equal(resp.status, r->status[i]);
        bool last = i + 1 == MAX_ANSWERS || !r->status[i + 1];
        const char *conn = raw_header(&resp, "Connection");
        if (last != (conn && strcmp(conn, "close") == 0))
            fail_msg("%s: answer %zu says Connection: %s", r->why, i + 1, conn ? conn : "-");
        const char *want = r->body[i] ? r->body[i] : big;
        if (want[0]) {
            assert_int_equal(resp.body_len, strlen(want));
            assert_memory_equal(resp.body, want, resp.body_len);
        } else {
            /* Portico's own answer: the failure it explains */
            assert_non_null(strstr(resp.body, "connection_reset"));
        }
        raw_response_free(&resp);
    }
    size_t rest_len = 0;
    char *rest = raw_read_all(c, IO_MS, &rest_len); /* nothing more, then Portico's end */
    assert_int_equal(rest_len, 0);
    free(rest);
    assert_true(raw_peer_closed(c));
    if (raw_last_errno(c) != 0) /* a FIN (over TLS with its close_notify), not a reset */
        fail_msg("%s: the connection ended with %s", r->why, strerror(raw_last_errno(c)));
    gate_set(true);
    if (r->origin_body) {
        assert_int_equal(fake_origin_wait_requests(fx.o, 1, IO_MS), 0);
        size_t len = 0;
        unsigned n = fake_origin_requests(fx.o);
        char *b = fake_origin_request_body(fx.o, n - 1, &len);
        assert_int_equal(len, strlen(r->origin_body));
        assert_memory_equal(b, r->origin_body, len);
        free(b);
    }
    print_message("  %-28s %zu answer%s, then Portico's end (%lld ms)\n", r->why, i,
                  i == 1 ? "" : "s", (long long)(tu_now_ms() - t0));
}

/* The access lines of the rows, Portico stopped already. */
static void check_logged_stopped(struct harness *h, const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < MAX_ANSWERS && rows[i].ids[k]; k++) {
            char *line = px_log_line_for_id(h, rows[i].ids[k]);
            if (!strstr(line, rows[i].logged[k]))
                fail_msg("%s: %s: %s", rows[i].why, rows[i].logged[k], line);
            free(line);
        }
    }
}

/* The access lines of the rows, once Portico stopped (complete then). */
static void check_logged(struct harness *h, const struct row *rows, size_t n)
{
    assert_int_equal(harness_stop(h), 0);
    check_logged_stopped(h, rows, n);
}

static void run_rows(struct harness *h, const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct raw_conn *c = px_connect(h);
        run_row(h, &rows[i], c, FIN_TCP);
        raw_close(c);
    }
}

/* ---- tests ---- */

static void test_answer(void **state)
{
    (void)state;
    start_origin();
    fx.h = start("client_half_close = answer\n", false);
    run_rows(fx.h, answer_rows, ARRAY_SIZE(answer_rows));
    check_logged(fx.h, answer_rows, ARRAY_SIZE(answer_rows));
    /* the head cut by the FIN: a 499 at client_header, as a client that leaves mid-head gets */
    char *line = px_log_line(fx.h, " phase=client_header ");
    assert_non_null(strstr(line, " status=499 "));
    free(line);
}

/* The default is nginx's: the FIN is a client that left. */
static void test_abort_default(void **state)
{
    (void)state;
    start_origin();
    fx.h = start("", false);
    run_rows(fx.h, abort_rows, ARRAY_SIZE(abort_rows));
    check_logged(fx.h, abort_rows, ARRAY_SIZE(abort_rows));
}

/* A half-closed client that then resets has left: its exchange ends when its answer cannot be
 * written, logged 499 (the response head had not gone: the answer waits for the gate). */
static void test_answer_then_reset(void **state)
{
    (void)state;
    static const struct row reset_row = {
        "GET, FIN, RST", GET("/one", "hc-rst"), true, true, {0}, {NULL}, {NULL}, {NULL}, NULL};
    start_origin();
    fx.h = start("client_half_close = answer\n", false);
    struct raw_conn *c = px_connect(fx.h);
    run_row(fx.h, &reset_row, c, FIN_TCP); /* aborts c */
    /* the line is the event: the exchange ended */
    char *line = px_log_line_for_id(fx.h, "hc-rst");
    print_message("  %s\n", line);
    assert_non_null(strstr(line, " status=499 "));
    assert_non_null(strstr(line, "client connection failed"));
    free(line);
    px_stop(fx.h);
    fx.h = NULL;
}

/* An origin that cannot be reached (connection refused), found after the FIN (its name takes
 * 100 ms to resolve): the client still gets the 502 and its explanation. */
static void test_answer_connect_refused(void **state)
{
    (void)state;
    struct fake_origin_opts ro = {.kind = FO_REFUSE};
    fx.o = fake_origin_start(&ro);
    assert_non_null(fx.o);
    struct fake_dns_opts d = {.mode = FAKE_DNS_ANSWER, .delay_ms = 100};
    fx.dns = fake_dns_start(&d);
    assert_non_null(fx.dns);
    char rest[256];
    snprintf(rest, sizeof(rest), "log_level = debug\nclient_half_close = answer\n"
                                 "resolver = 127.0.0.1:%u\n",
             fake_dns_port(fx.dns));
    fx.h = px_start(rest, "[upstream u]\norigin = refused.test:%u\n", fake_origin_port(fx.o));
    struct raw_conn *c = px_connect(fx.h);
    char needle[96];
    told_needle(c, needle, sizeof(needle));
    assert_int_equal(raw_send_str(c, GET("/", "hc-refused")), 0);
    assert_int_equal(raw_shutdown_write(c), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body, "connect_refused"));
    assert_string_equal(raw_header(&r, "Connection"), "close");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    assert_int_equal(raw_last_errno(c), 0);
    raw_close(c);
    assert_true(harness_log_contains(fx.h, needle)); /* the FIN came first */
    assert_int_equal(harness_stop(fx.h), 0);
    char *line = px_log_line_for_id(fx.h, "hc-refused");
    assert_non_null(strstr(line, " status=502 "));
    free(line);
}

/* TLS: a close_notify, a close_notify and a FIN, or a bare FIN after a whole request is a
 * half-close too (sock.c reports each as the peer's end); Portico's own end comes with its
 * close_notify: the client can tell the last answer ended there. */
static void test_answer_tls(void **state)
{
    (void)state;
    static const struct {
        const char *why;
        enum fin_kind fin;
    } ends[] = {
        {"close_notify", FIN_CLOSE_NOTIFY},
        {"close_notify, FIN", FIN_BOTH},
        {"FIN alone", FIN_TCP},
    };
    const struct test_certs *certs = certs_get();
    start_origin();
    fx.h = start("client_half_close = answer\n", true);
    struct raw_tls_opts t = {.ca_file = certs->ca_cert, .host = "localhost"};
    for (size_t i = 0; i < ARRAY_SIZE(ends); i++) {
        struct raw_conn *c = raw_connect_tls(harness_port(fx.h, "tls"), &t, IO_MS);
        if (!c)
            fail_msg("TLS connect: %s", raw_last_error());
        struct row r = {ends[i].why, GET("/one", "hc-tls"), true, false, {200}, {NULL}, {NULL},
                        {NULL}, NULL};
        run_row(fx.h, &r, c, ends[i].fin);
        raw_close(c);
    }
    px_stop(fx.h);
    fx.h = NULL;
}

/* A reload's value applies to the exchanges that start after it. */
static void test_reload(void **state)
{
    (void)state;
    static const struct row before = {"abort, before the reload", GET("/one", "hc-reload-1"),
                                      false, false, {0}, {NULL}, {"hc-reload-1"},
                                      {" status=499 "}, NULL};
    static const struct row after = {"answer, after it", GET("/one", "hc-reload-2"), true, false,
                                     {200}, {NULL}, {"hc-reload-2"}, {" status=200 "}, NULL};
    start_origin();
    fx.h = start("client_half_close = abort\n", false);
    run_rows(fx.h, &before, 1);
    write_conf(fx.h, "client_half_close = answer\n", false);
    assert_int_equal(harness_signal(fx.h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(fx.h, "is live", IO_MS), 0);
    run_rows(fx.h, &after, 1);
    check_logged(fx.h, &before, 1);
    check_logged_stopped(fx.h, &after, 1);
}

/* A half-closed client that does not read its answer is still dropped after
 * client_send_timeout (its socket's buffer capped: client_sndbuf), the exchange logged with the
 * status that went and the timer's reason. */
static void test_send_timeout(void **state)
{
    (void)state;
    char extra[160];
    snprintf(extra, sizeof(extra),
             "client_half_close = answer\nclient_send_timeout = %dms\nclient_sndbuf = 4k\n",
             SEND_TIMEOUT_MS);
    start_origin();
    fx.h = start(extra, false);
    struct raw_conn *c = px_connect(fx.h);
    char needle[96];
    told_needle(c, needle, sizeof(needle));
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, GET("/huge", "hc-no-read")), 0);
    assert_int_equal(raw_shutdown_write(c), 0);
    /* the line is the event: the exchange ended (the client reads nothing) */
    char *line = px_log_line_for_id(fx.h, "hc-no-read");
    print_message("  after %lld ms: %s\n", (long long)(tu_now_ms() - t0), line);
    assert_true(harness_log_contains(fx.h, needle));
    assert_non_null(strstr(line, "client stopped reading for client_send_timeout"));
    assert_true(tu_now_ms() - t0 >= SEND_TIMEOUT_MS);
    free(line);
    raw_close(c);
    px_stop(fx.h);
    fx.h = NULL;
}

/* A FIN that comes once the exchange ended, its answer still going out (the client read none of
 * it yet): the answer goes out whole, then Portico closes, whatever client_half_close says (the
 * FIN cuts no exchange that has ended). It was cut where the client's kernel had stopped taking
 * it, and logged whole: with abort too until the fix (65,536 of 196,731 bytes). */
static void fin_while_answer_goes_out(const char *mode)
{
    start_origin();
    /* (spliced, a body moves only as the client takes it: copied, Portico holds the rest) */
    char extra[128];
    snprintf(extra, sizeof(extra), "client_half_close = %s\nclient_sndbuf = 4k\nsplice = off\n",
             mode);
    fx.h = start(extra, false);
    struct raw_conn *c = px_connect(fx.h);
    char needle[96];
    told_needle(c, needle, sizeof(needle));
    assert_int_equal(raw_send_str(c, GET("/mid", "hc-late-fin")), 0);
    char *line = px_log_line_for_id(fx.h, "hc-late-fin"); /* the exchange ended */
    assert_non_null(strstr(line, " status=200 "));
    free(line);
    assert_int_equal(raw_shutdown_write(c), 0);
    assert_int_equal(harness_wait_log(fx.h, needle, IO_MS), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, MID_LEN);
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    assert_int_equal(raw_last_errno(c), 0);
    raw_close(c);
    px_stop(fx.h);
    fx.h = NULL;
    fake_origin_stop(fx.o);
    fx.o = NULL;
}

static void test_fin_while_answer_goes_out(void **state)
{
    (void)state;
    fin_while_answer_goes_out("answer");
    fin_while_answer_goes_out("abort");
}

/* Portico's side of the connection from the client's local port cport has sent its FIN
 * (FIN_WAIT1 or FIN_WAIT2, through sock_diag): *sendq gets what its kernel still holds for the
 * client, sent or not, *inode its socket's inode (0: closed by Portico, the kernel's alone).
 * false while it has not (or is gone). */
static bool portico_fin_sent(uint16_t pport, uint16_t cport, long *sendq, unsigned *inode)
{
    struct inet_diag_msg m;
    if (!px_diag_conn(1 << 4 | 1 << 5 /* TCP_FIN_WAIT1, TCP_FIN_WAIT2 */, pport, cport, &m))
        return false;
    *sendq = (long)m.idiag_wqueue;
    *inode = m.idiag_inode;
    return true;
}

/* A client connected to Portico (rcvbuf: its SO_RCVBUF, 0 for the default), its reads bounded
 * by IO_MS; *cport: its local port. */
static int connect_client(int rcvbuf, uint16_t *cport)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct timeval tv = {.tv_sec = IO_MS / 1000, .tv_usec = (IO_MS % 1000) * 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(px_port(fx.h)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct sockaddr_in me;
    socklen_t melen = sizeof(me);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &melen), 0);
    *cport = ntohs(me.sin_port);
    return fd;
}

/* A client that asked to close and reads slowly, then sends a byte more (its next request,
 * which it ought not to) once Portico sent its FIN, the answer's tail still in Portico's
 * kernel: the answer arrives whole, then EOF. Portico closed at once (the quiet close, which
 * is right only when the answer has left), the stray bytes made the kernel reset, and the tail
 * was lost: ECONNRESET after 3,955 of 196,608 body bytes. */
static void test_stray_bytes_after_close_asked(void **state)
{
    (void)state;
    start_origin();
    fx.h = start("splice = off\n", false);
    uint16_t cport;
    /* a slow reader: the answer waits in Portico's kernel, not in its */
    int fd = connect_client(4096, &cport);
    const char *req = "GET /mid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      "X-Request-Id: hc-stray\r\n\r\n";
    assert_true(send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
    /* read 1 KiB at a time until Portico has sent its FIN: all the answer is in its kernel */
    static char got[MID_LEN + 4096];
    size_t n = 0;
    long sendq = 0;
    unsigned inode = 0;
    while (!portico_fin_sent(px_port(fx.h), cport, &sendq, &inode)) {
        ssize_t r = recv(fd, got + n, 1024, 0);
        assert_true(r > 0); /* the FIN is behind the answer: it cannot come first */
        n += (size_t)r;
    }
    print_message("  FIN sent, %ld bytes still in Portico's kernel, %zu read\n", sendq, n);
    assert_true(sendq > 0); /* otherwise this checks nothing */
    const char *next = "GET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_true(send(fd, next, strlen(next), MSG_NOSIGNAL) == (ssize_t)strlen(next));
    ssize_t r;
    while ((r = recv(fd, got + n, sizeof(got) - n, 0)) > 0)
        n += (size_t)r;
    int err = r < 0 ? errno : 0;
    close(fd);
    const char *end = memmem(got, n, "\r\n\r\n", 4);
    assert_non_null(end);
    size_t body = n - (size_t)(end + 4 - got);
    print_message("  body %zu of %d bytes, then %s\n", body, MID_LEN, err ? strerror(err) : "EOF");
    assert_int_equal(err, 0);
    assert_int_equal(body, MID_LEN);
    px_stop(fx.h);
    fx.h = NULL;
}

/* A client that asked to close and read its whole answer, who keeps its socket open, is not
 * waited for: its answer left Portico's kernel, nothing of its is unread, so Portico sends its
 * FIN and closes (the quiet close), its socket the kernel's alone (no inode) at once. Lingered
 * for (as a client whose answer's tail is still in Portico's kernel is), the socket would stay
 * Portico's until the client's FIN or LINGER_MS (2 s): a read of its FIN and an epoll_ctl more
 * per connection. */
static void test_close_asked_not_lingered(void **state)
{
    (void)state;
    start_origin();
    fx.h = start("", false);
    uint16_t cport;
    int fd = connect_client(0, &cport);
    const char *req = "GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      "X-Request-Id: hc-quiet\r\n\r\n";
    assert_true(send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
    char got[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(got) && (r = recv(fd, got + n, sizeof(got) - n, 0)) > 0)
        n += (size_t)r;
    assert_true(n > 0 && n < sizeof(got));
    assert_non_null(memmem(got, n, "\r\n\r\nsecond\n", 11)); /* whole, then our EOF */
    /* the client's socket stays open: Portico's is closed within 1 s, half LINGER_MS */
    long sendq = 0;
    unsigned inode = 1;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long ms = 0;
    while ((!portico_fin_sent(px_port(fx.h), cport, &sendq, &inode) || inode) &&
           ms < 1000) {
        poll(NULL, 0, 1);
        clock_gettime(CLOCK_MONOTONIC, &t);
        ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    }
    print_message("  Portico's socket: inode %u after %ld ms\n", inode, ms);
    if (inode)
        fail_msg("Portico still holds the socket of a client that asked to close and read its "
                 "whole answer %ld ms later: lingered for, not closed", ms);
    close(fd);
    px_stop(fx.h);
    fx.h = NULL;
}

/* Portico answering itself (a fault rule's 204 on /own/), on one worker: an answer written in
 * the event that read its request. proxy_extra goes into [proxy]. */
static struct harness *start_own(const char *proxy_extra)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\naccess_log = off\n%s"
                                          "[upstream u]\norigin = sim\n"
                                          "[fault own]\nprefix = /own/\nstatus = 204\n",
                                          proxy_extra),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* Sends req on fd and reads its answer (a 204: its head only), or up to Portico's EOF when
 * to_eof. */
static void own_exchange(int fd, const char *req, bool to_eof)
{
    assert_true(send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
    char got[4096];
    size_t n = 0;
    ssize_t r = 1;
    while (n < sizeof(got) && (to_eof || !memmem(got, n, "\r\n\r\n", 4)) &&
           (r = recv(fd, got + n, sizeof(got) - n, 0)) > 0)
        n += (size_t)r;
    if (!memmem(got, n, "HTTP/1.1 204 ", 13) || (to_eof && r != 0))
        fail_msg("no 204%s: %.*s (%s)", to_eof ? " then EOF" : "", (int)n, got,
                 r < 0 ? strerror(errno) : "");
}

/* What Portico's kernel holds unread of the connection from the client's port cport (its
 * receive queue, through sock_diag): the bytes Portico is yet to read. */
static long portico_unread(uint16_t pport, uint16_t cport)
{
    struct inet_diag_msg m;
    return px_diag_conn(0, pport, cport, &m) ? (long)m.idiag_rqueue : -1;
}

/* A client that asked to close gets Portico's FIN with its answer, in the event that wrote it,
 * not from the loop's close() once the turn's other events ran (~0.8 ms under load): a client
 * closing first meanwhile holds the TIME_WAIT (linger()). Portico stopped, client a sends a
 * request asking to close and client b a request, both read in one turn, a's first; a's epoll
 * waits for its FIN alone (EPOLLRDHUP), b's for its answer: the kernel lists the ready in the
 * order they became so, and a's FIN must come before b's answer. Without the shutdown at once
 * it came after, whatever the turn's length. */
static void test_close_asked_fin_at_once(void **state)
{
    (void)state;
    fx.h = start_own("");
    uint16_t pa, pb;
    int a = connect_client(0, &pa), b = connect_client(0, &pb);
    /* both accepted and watched: one answer on each */
    own_exchange(a, "GET /own/first HTTP/1.1\r\nHost: a\r\n\r\n", false);
    own_exchange(b, "GET /own/first HTTP/1.1\r\nHost: a\r\n\r\n", false);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    struct epoll_event ea = {.events = EPOLLRDHUP, .data.fd = a};
    struct epoll_event eb = {.events = EPOLLIN, .data.fd = b};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, a, &ea), 0);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, b, &eb), 0);
    assert_int_equal(px_sigstop(fx.h), 0);
    const char *ra = "GET /own/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    const char *rb = "GET /own/b HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_true(send(a, ra, strlen(ra), MSG_NOSIGNAL) == (ssize_t)strlen(ra));
    assert_true(send(b, rb, strlen(rb), MSG_NOSIGNAL) == (ssize_t)strlen(rb));
    /* loopback delivers within send(): both are in Portico's kernel before it runs again */
    assert_int_equal(portico_unread(px_port(fx.h), pa), (long)strlen(ra));
    assert_int_equal(portico_unread(px_port(fx.h), pb), (long)strlen(rb));
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    int first = -1, seen = 0;
    for (int64_t end = tu_now_ms() + IO_MS; seen != 3 && tu_now_ms() < end;) {
        struct epoll_event ev[2];
        int n = epoll_wait(ep, ev, 2, 100);
        for (int i = 0; i < n; i++) {
            int bit = ev[i].data.fd == a ? 1 : 2;
            if (first < 0)
                first = bit;
            seen |= bit;
        }
    }
    close(ep);
    print_message("  first ready: %s (seen %d)\n", first == 1 ? "a's FIN" : "b's answer", seen);
    assert_int_equal(seen, 3);
    if (first != 1)
        fail_msg("b's answer came before a's FIN: Portico's FIN waited for the loop's close()");
    close(a);
    close(b);
    px_stop(fx.h);
    fx.h = NULL;
}

/* Lingered for (linger()): the client's bytes after the answer are read and dropped until its
 * FIN, Portico's socket open meanwhile. The quiet close is for a client that asked to close and
 * sent nothing more: one whose request came with more bytes behind it (their reset-making kin
 * may follow), or one that did not ask (keepalive_timeout = 0: Portico closes, and the client
 * may have sent its next request already), or one answered before its body all came, is
 * lingered for. The client reads the answer and Portico's EOF, then a second client's answer
 * shows that Portico's loop has moved past that turn: Portico must still hold its side (an
 * inode), where a quiet close had closed it. */
static void test_lingered_unless_asked_and_read(void **state)
{
    (void)state;
    static const struct {
        const char *why, *proxy_extra, *req;
    } rows[] = {
        {"asked to close, bytes after its request", "",
         "GET /own/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /own/y HTTP/1.1\r\n"},
        {"not asked (keepalive_timeout = 0)", "keepalive_timeout = 0\n",
         "GET /own/x HTTP/1.1\r\nHost: a\r\n\r\n"},
        /* answered before its body all came: the rest, on its way, would make the reset */
        {"asked to close, its body's rest to come", "",
         "POST /own/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 10\r\n\r\n"
         "01234"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        fx.h = start_own(rows[i].proxy_extra);
        uint16_t cport, other;
        int fd = connect_client(0, &cport);
        own_exchange(fd, rows[i].req, true);
        int sync = connect_client(0, &other); /* a later turn's answer */
        own_exchange(sync, "GET /own/sync HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                     true);
        long sendq = 0;
        unsigned inode = 0;
        bool fin = portico_fin_sent(px_port(fx.h), cport, &sendq, &inode);
        print_message("  %s: Portico's FIN %s, its socket's inode %u\n", rows[i].why,
                      fin ? "sent" : "not seen", inode);
        if (!fin || !inode)
            fail_msg("%s: Portico closed its socket at once (no inode), not lingering",
                     rows[i].why);
        close(fd); /* the client's FIN: the linger ends */
        close(sync);
        px_stop(fx.h);
        fx.h = NULL;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_answer, teardown),
        cmocka_unit_test_teardown(test_abort_default, teardown),
        cmocka_unit_test_teardown(test_answer_then_reset, teardown),
        cmocka_unit_test_teardown(test_answer_connect_refused, teardown),
        cmocka_unit_test_teardown(test_answer_tls, teardown),
        cmocka_unit_test_teardown(test_reload, teardown),
        cmocka_unit_test_teardown(test_send_timeout, teardown),
        cmocka_unit_test_teardown(test_fin_while_answer_goes_out, teardown),
        cmocka_unit_test_teardown(test_stray_bytes_after_close_asked, teardown),
        cmocka_unit_test_teardown(test_close_asked_not_lingered, teardown),
        cmocka_unit_test_teardown(test_close_asked_fin_at_once, teardown),
        cmocka_unit_test_teardown(test_lingered_unless_asked_and_read, teardown),
    };
    /* TEST_FILTER=test_answer_tls runs the matching tests only */
    tu_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
