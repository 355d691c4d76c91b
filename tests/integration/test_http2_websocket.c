/*
 * test_http2_websocket.c — WebSockets over HTTP/2 (RFC 8441 extended CONNECT) to HTTP/1.1
 * origins, end to end: tests/integration/h2_websocket.py (python3-h2) opens the streams and
 * speaks RFC 6455 on them, the echo origin of tests/support/websocket.c (or a scripted
 * fake_origin) answers the HTTP/1.1 upgrade Portico makes of each.
 *
 * Access-log lines are read once Portico has stopped (a worker writes its lines once a second
 * while it runs).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h> /* SIOCOUTQ */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "../support/websocket.h"
#include "proxy_helpers.h"

#define PY "/usr/bin/python3" /* Debian's, where python3-h2 is installed */
#define CLIENT "tests/integration/h2_websocket.py"
#define RUN_MS 30000

/* Portico with one TLS listener (ALPN h2 and http/1.1), an admin port and an access log, its
 * routes to origin port; `proxy_extra` goes into [proxy], `upstream_extra` into [upstream u]. */
static struct harness *start(const char *proxy_extra, uint16_t port, const char *upstream_extra)
{
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:tls}} tls\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "workers = 1\n"
                                          "tls_cert = %s\n"
                                          "tls_key = %s\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "%s\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n%s\n",
                                          certs->server_cert, certs->server_key,
                                          proxy_extra ? proxy_extra : "", port,
                                          upstream_extra ? upstream_extra : ""),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* h2_websocket.py MODE ARGS... (args, NULL-ended) against h's listener; its key=value lines in
 * r->out. */
static void run_client_args(struct harness *h, struct tu_cmd_result *r, const char *const *args)
{
    char port[16];
    snprintf(port, sizeof(port), "%u", harness_port(h, "tls"));
    const char *argv[12] = {PY, CLIENT, port};
    size_t n = 3;
    for (size_t i = 0; n < 11 && args[i] != NULL; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = tu_run_command(argv, RUN_MS, r);
    if (rc != 0 || r->exit_code != 0)
        fail_msg("h2_websocket.py %s exited %d:\n%s%s", args[0], r->exit_code, r->out, r->err);
}

/* run_client(h, &r, MODE, ARGS..., NULL) */
static void run_client(struct harness *h, struct tu_cmd_result *r, const char *mode, ...)
{
    const char *args[9] = {mode};
    size_t n = 1;
    va_list ap;
    va_start(ap, mode);
    for (const char *a; n < 8 && (a = va_arg(ap, const char *)) != NULL;)
        args[n++] = a;
    va_end(ap);
    run_client_args(h, r, args);
}

/* Whether the client printed the line key=value. */
static bool said(const struct tu_cmd_result *r, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = r->out; (p = strstr(p, line)) != NULL; p += n)
        if ((p == r->out || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* Fails unless the client said every line of the NULL-ended list; names the first it did not. */
static __attribute__((sentinel)) void want_lines(const struct tu_cmd_result *r, ...)
{
    va_list ap;
    va_start(ap, r);
    for (const char *line; (line = va_arg(ap, const char *)) != NULL;)
        if (!said(r, line)) {
            va_end(ap);
            fail_msg("h2_websocket.py did not say '%s':\n%s%s", line, r->out, r->err);
        }
    va_end(ap);
}
#define want(r, ...) want_lines((r), __VA_ARGS__, (const char *)NULL)

/* The client run with args (ARGS(MODE, ...)) says every line of the NULL-ended list. */
static __attribute__((sentinel)) void client_says(struct harness *h, const char *const *args,
                                                  ...)
{
    struct tu_cmd_result r = {0};
    run_client_args(h, &r, args);
    va_list ap;
    va_start(ap, args);
    for (const char *line; (line = va_arg(ap, const char *)) != NULL;)
        if (!said(&r, line)) {
            va_end(ap);
            fail_msg("h2_websocket.py %s did not say '%s':\n%s%s", args[0], line, r.out, r.err);
        }
    va_end(ap);
    tu_cmd_result_free(&r);
}
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define says(h, args, ...) client_says((h), (args), __VA_ARGS__, (const char *)NULL)

static double metric(struct harness *h, const char *series)
{
    return scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
}

/* The series once it reached value (polled, at most PX_IO_MS), or its value then. */
static double metric_reached(struct harness *h, const char *series, double value)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    double v = metric(h, series);
    while (v < value && tu_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a counter the admin endpoint serves */
        v = metric(h, series);
    }
    return v;
}

/* portico_tunnels_closed_total{reason} once it reached n (polled); fails when it did not, or
 * went past n. */
static void closed_reached(struct harness *h, const char *reason, double n)
{
    char series[96];
    snprintf(series, sizeof(series), "portico_tunnels_closed_total{reason=\"%s\"}", reason);
    double v = metric_reached(h, series, n);
    if (v != n)
        fail_msg("%s is %g, want %g", series, v, n);
}

/* The echo origin of websocket.c in *o, and Portico in front of it (start()'s extras). */
static struct harness *start_echo(struct ws_origin **o, const char *proxy_extra,
                                  const char *upstream_extra)
{
    *o = ws_origin_start();
    assert_non_null(*o);
    return start(proxy_extra, ws_origin_port(*o), upstream_extra);
}

/* ---- the setting ---- */

/* SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 goes with HTTP/2 (RFC 8441 3); with http2 = off there is
 * no HTTP/2 to carry it (ALPN http/1.1). */
static void test_settings_advertised(void **state)
{
    (void)state;
    struct harness *h = start(NULL, 9, NULL);
    says(h, ARGS("settings"), "alpn=h2", "enable_connect_protocol=1");
    px_stop(h);
    h = start("http2 = off", 9, NULL);
    says(h, ARGS("settings"), "alpn=http/1.1");
    px_stop(h);
}

/* ---- the echo ---- */

/* Messages of 5 B to 70 KB both ways, masked as the client sent them (the echo origin refuses
 * unmasked frames) and unmasked back, a ping, the close handshake; the origin's close ends the
 * stream, then the client's. The origin was offered an HTTP/1.1 upgrade with Portico's key;
 * the client got 200 with the origin's subprotocol and no accept. */
static void test_echo(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    says(h, ARGS("echo", "/chat?room=1", "8"), "status=200", "accept_header=False",
         "upgrade_header=False", "echoed=8", "pong=True", "close_echoed=True",
         "stream_ended=True", "reset=none");
    char *req = ws_origin_request_head(o);
    assert_non_null(req);
    assert_true(strncmp(req, "GET /chat?room=1 HTTP/1.1\r\n", 27) == 0);
    assert_non_null(strcasestr(req, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strcasestr(req, "\r\nConnection: upgrade\r\n"));
    assert_non_null(strcasestr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strcasestr(req, "\r\nSec-WebSocket-Key: "));
    assert_non_null(strcasestr(req, "\r\nsec-websocket-protocol: chat, superchat\r\n"));
    assert_non_null(strcasestr(req, "\r\nX-Forwarded-For: 127.0.0.1"));
    assert_non_null(strcasestr(req, "\r\nVia: 2 portico"));
    free(req);
    assert_int_equal(ws_origin_closes(o), 1);
    closed_reached(h, "origin_closed", 1);
    assert_true(metric(h, "portico_tunnels_total") == 1);
    assert_true(metric(h, "portico_tunnel_client_bytes_total") > 8 * 1024);
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    px_log_line_has(h, "/chat?room=1", "\"status\":200", "\"upstream_status\":101",
                    "tunnel: origin closed", "HTTP/2.0", NULL);
    harness_free(h);
    ws_origin_stop(o);
}

/* Two WebSockets and a GET on one connection: each its own stream, interleaved. */
static void test_two_websockets_and_a_get(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    says(h, ARGS("multi", "/m"), "status_a=200", "status_b=200", "echoed=6", "get_ended=True",
         "both_ended=True");
    assert_int_equal(ws_origin_handshakes(o), 2);
    closed_reached(h, "client_closed", 2);
    px_stop(h);
    ws_origin_stop(o);
}

/* ---- answers other than 101 ---- */

/* The origin's refusal is the answer: a 403 with its body, the stream ended. */
static void test_origin_refuses(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_OK, .status = 403, .body = "not you\n"};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = start(NULL, fake_origin_port(o), NULL);
    says(h, ARGS("status", "/chat"), "status=403", "ended=True", "body=not you ");
    char *up = fake_origin_request_header(o, 0, "upgrade");
    assert_non_null(up);
    assert_string_equal(up, "websocket");
    free(up);
    assert_true(metric(h, "portico_tunnels_total") == 0);
    px_stop(h);
    fake_origin_stop(o);
}

/* An origin that refuses the connection: 502 with the usual explanation. */
static void test_refused_origin(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_REFUSE);
    assert_non_null(o);
    struct harness *h = start(NULL, fake_origin_port(o), NULL);
    struct tu_cmd_result r = {0};
    run_client(h, &r, "status", "/chat", NULL);
    want(&r, "status=502", "ended=True");
    if (!tu_contains(r.out, "refused"))
        fail_msg("no explanation: %s", r.out);
    tu_cmd_result_free(&r);
    px_stop(h);
    fake_origin_stop(o);
}

/* An origin that takes the upgrade request and never answers: 504 at first_byte_timeout, as
 * any request's. */
static void test_silent_origin(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_SILENT);
    assert_non_null(o);
    struct harness *h = start(NULL, fake_origin_port(o), "first_byte_timeout = 300ms");
    says(h, ARGS("status", "/chat"), "status=504", "ended=True");
    px_stop(h);
    fake_origin_stop(o);
}

/* A fault rule answers a WebSocket's stream as it answers any request: its 503 is the answer,
 * and no origin is asked. */
static void test_fault_rule_answers(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, "[fault outage]\nprefix = /faulty\nstatus = 503\n");
    says(h, ARGS("status", "/faulty/chat"), "status=503", "ended=True");
    says(h, ARGS("echo", "/chat", "1"), "echoed=1"); /* another path goes through */
    assert_int_equal(ws_origin_handshakes(o), 1);
    px_stop(h);
    ws_origin_stop(o);
}

/* A 101 whose Sec-WebSocket-Accept is not for the key Portico sent: 502 invalid_response. */
static const struct fo_step wrong_accept[] = {
    FO_SEND("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
    FO_HOLD(),
    FO_END(),
};

static void test_wrong_accept(void **state)
{
    (void)state;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .script = wrong_accept};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = start(NULL, fake_origin_port(o), NULL);
    says(h, ARGS("status", "/chat"), "status=502", "ended=True");
    assert_true(metric(h, "portico_tunnels_total") == 0);
    assert_int_equal(harness_stop(h), 0);
    px_log_line_has(h, "\"path\":\"/chat\"", "invalid_response",
                    "Sec-WebSocket-Accept that does not match", NULL);
    harness_free(h);
    fake_origin_stop(o);
}

/* A plain CONNECT stays 501; so does an extended CONNECT for a protocol Portico does not
 * carry. */
static void test_other_connects_501(void **state)
{
    (void)state;
    struct harness *h = start(NULL, 9, NULL);
    says(h, ARGS("plain_connect"), "status=501");
    says(h, ARGS("protocol", "bytestream"), "status=501");
    px_stop(h);
}

/* A CONNECT has no content (RFC 9110 9.3.6): an extended one with content-length is malformed
 * (PROTOCOL_ERROR), where it went to the origin as a GET with that body and no Upgrade, the
 * client's first frames read as the body. */
static void test_content_length_malformed(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    says(h, ARGS("length", "/chat", "5"), "status=none", "reset=1");
    assert_int_equal(harness_stop(h), 0);
    px_log_line_has(h, "/chat", "\"status\":400", "content-length on an extended CONNECT", NULL);
    harness_free(h);
    ws_origin_stop(o);
}

/* ---- the tunnel's ends ---- */

/* An origin that answers the upgrade with the right accept (computed from the head it read),
 * then runs `after`. */
struct switcher {
    char script_head[512];
    struct fo_step steps[4];
    atomic_int eof;                    /* the origin read Portico's close */
};

static int wait_eof(int fd, void *arg)
{
    struct switcher *sw = arg;
    char buf[4096];
    int64_t deadline = tu_now_ms() + 20000;
    for (int i = 0; i < 10000; i++) { /* bounded: what comes is read, then the end */
        short ev = 0;
        if (tu_poll_until(fd, POLLIN, deadline, &ev) <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            atomic_store(&sw->eof, n == 0 ? 1 : 100 + errno); /* 1: a FIN */
            return 1;
        }
    }
    atomic_store(&sw->eof, 2); /* nothing within 20 s */
    return 1;
}

static const struct fo_step plain_ok[] = {FO_RESPOND_OK(), FO_END()};

static const struct fo_step *pick_switch(const struct fo_request_info *req, void *arg)
{
    struct switcher *sw = arg;
    const char *k = strcasestr(req->head, "\r\nSec-WebSocket-Key: ");
    char key[32] = "", accept[29] = "";
    if (!k)
        return plain_ok; /* a request that offered no upgrade (the client's next GET) */
    sscanf(k + 21, "%24s", key);
    ws_accept_value(key, accept);
    snprintf(sw->script_head, sizeof(sw->script_head),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             accept);
    sw->steps[0] = (struct fo_step)FO_SEND(sw->script_head);
    return sw->steps;
}

/* An origin that switches as pick_switch does, then runs the steps of `after` (FO_END() last,
 * 3 steps at most with it): SWITCH_THEN(FO_WAIT(100), FO_RST()). */
#define SWITCH_THEN(...) ((const struct fo_step[]){__VA_ARGS__, FO_END()})

static struct fake_origin *switch_origin(struct switcher *sw, const struct fo_step *after)
{
    size_t n = 0;
    do {
        assert_true(1 + n < sizeof(sw->steps) / sizeof(sw->steps[0]));
        sw->steps[1 + n] = after[n];
    } while (after[n++].kind != FO_STEP_END);
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_switch,
                                    .pick_arg = sw};
    struct fake_origin *f = fake_origin_start(&opts);
    assert_non_null(f);
    return f;
}

/* What wait_eof saw of Portico's end (1: a FIN), waited for at most PX_IO_MS. */
static int origin_eof(struct switcher *sw)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    while (atomic_load(&sw->eof) == 0 && tu_now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the origin's thread says when it read the end */
    }
    return atomic_load(&sw->eof);
}

/* The client's RST_STREAM closes the origin's connection; the connection goes on. */
static void test_client_reset_closes_origin(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    /* after_status=400: the echo origin refuses a GET without upgrade */
    says(h, ARGS("reset", "/r"), "status=200", "echoed=1", "after_status=400");
    closed_reached(h, "client_error", 1);
    px_stop(h);
    ws_origin_stop(o);

    /* the origin reads the close (it sends a text frame first, as the echo does) */
    static struct switcher sw;
    atomic_store(&sw.eof, 0);
    struct fake_origin *f =
        switch_origin(&sw, SWITCH_THEN(FO_SEND("\x81\x02hi"), FO_CALL(wait_eof, &sw)));
    h = start(NULL, fake_origin_port(f), NULL);
    says(h, ARGS("reset", "/r"), "status=200", "after_status=200");
    assert_int_equal(origin_eof(&sw), 1);
    px_stop(h);
    fake_origin_stop(f);
}

/* The origin's close ends the stream (END_STREAM) behind what it sent. */
static void test_origin_close_ends_stream(void **state)
{
    (void)state;
    static struct switcher sw;
    struct fake_origin *f =
        switch_origin(&sw, SWITCH_THEN(FO_SEND("\x81\x05" "adieu"), FO_CLOSE()));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    says(h, ARGS("origin_close", "/bye"), "status=200", "frame=adieu", "ended=True", "reset=none");
    closed_reached(h, "origin_closed", 1);
    px_stop(h);
    fake_origin_stop(f);
}

/* An origin's reset resets the stream (CONNECT_ERROR, RFC 9113 8.5), counted origin_error. */
static void test_origin_reset_resets_stream(void **state)
{
    (void)state;
    static struct switcher sw;
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_WAIT(100), FO_RST()));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    says(h, ARGS("origin_close", "/rst"), "status=200", "ended=False", "reset=10");
    closed_reached(h, "origin_error", 1);
    px_stop(h);
    fake_origin_stop(f);
}

/* A tunnel ended by our reset is counted and logged once, as the origin's error: the stream's
 * free that follows (the client leaves) adds no client_error; its origin's in-flight place
 * is given back. */
static void test_reset_tunnel_counted_once(void **state)
{
    (void)state;
    static struct switcher sw;
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_WAIT(100), FO_RST()));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    says(h, ARGS("origin_close", "/rst"), "reset=10");
    uint16_t admin = harness_port(h, "admin");
    /* the client left: its connection, and the stream with it, are gone */
    assert_true(scrape_wait(admin, "portico_client_connections_active", 0, PX_IO_MS) == 0);
    assert_true(metric(h, "portico_tunnels_closed_total{reason=\"origin_error\"}") == 1);
    assert_true(metric(h, "portico_tunnels_closed_total{reason=\"client_error\"}") == 0);
    assert_true(px_in_flight(h, 0) == 0);
    px_stop(h);
    fake_origin_stop(f);
}

/* An origin that reads slowly (16 KiB a millisecond) until its EOF: what it read, and how its
 * read ended (1: a FIN, 2: nothing within 20 s, 100 + errno: an error). */
struct slow_reader {
    atomic_llong got;
    atomic_int end;
};

static int read_slowly(int fd, void *arg)
{
    struct slow_reader *sr = arg;
    static char buf[16384];
    int64_t deadline = tu_now_ms() + 20000;
    for (int i = 0; i < 100000; i++) { /* bounded: 4 MiB is 256 reads */
        short ev = 0;
        if (tu_poll_until(fd, POLLIN, deadline, &ev) <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            atomic_store(&sr->end, n == 0 ? 1 : 100 + errno);
            return 0;
        }
        atomic_fetch_add(&sr->got, n);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL); /* a slow reader, on purpose: Portico's output to it backs up */
    }
    atomic_store(&sr->end, 2);
    return 0;
}

/* The client's END_STREAM is a FIN to the origin behind every byte the client sent, however
 * far behind the origin reads: 4 MiB to an origin that reads slowly, END_STREAM on the last
 * DATA; the origin reads all 4 MiB, then its EOF, and its close ends the stream. */
static void test_fin_behind_slow_origin(void **state)
{
    (void)state;
    static struct switcher sw;
    static struct slow_reader sr;
    atomic_store(&sr.got, 0);
    atomic_store(&sr.end, 0);
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_CALL(read_slowly, &sr), FO_CLOSE()));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    says(h, ARGS("upload", "/up", "4"), "status=200", "sent=True", "ended=True", "reset=none");
    assert_int_equal(atomic_load(&sr.end), 1);
    assert_int_equal(atomic_load(&sr.got), 4 << 20);
    px_stop(h);
    fake_origin_stop(f);
}

/* A download the client reads more slowly than tunnel_timeout: 1 MiB, all in Portico's hands
 * at once (the stream's share), taken by the client a window at a time for about 2 s. The
 * client taking bytes is activity: the tunnel is not cut while they move. */
static void test_slow_download_not_idle(void **state)
{
    (void)state;
    static struct switcher sw;
    static char download[1 << 20];
    memset(download, 'd', sizeof(download));
    atomic_store(&sw.eof, 0);
    struct fake_origin *f =
        switch_origin(&sw, SWITCH_THEN(FO_SEND_N(download, sizeof(download)),
                                       FO_CALL(wait_eof, &sw)));
    struct harness *h = start(NULL, fake_origin_port(f), "tunnel_timeout = 500ms");
    says(h, ARGS("slowread", "/down", "1024"), "status=200", "received=1048576",
         "reset_before_end=none", "ended=True");
    assert_true(metric(h, "portico_tunnels_closed_total{reason=\"idle\"}") == 0);
    px_stop(h);
    fake_origin_stop(f);
}

/* END_STREAM on the extended CONNECT's HEADERS, or on an empty DATA before the origin's 101: a
 * tunnel the client half-closed at once (RFC 9113 8.5: END_STREAM is the TCP FIN). The origin
 * is asked and switches as for any other; it gets its FIN right after the switch, what it sends
 * still reaches the client, and its close ends the stream. */
static void test_end_stream_on_headers(void **state)
{
    (void)state;
    static struct switcher sw;
    atomic_store(&sw.eof, 0);
    struct fake_origin *f =
        switch_origin(&sw, SWITCH_THEN(FO_SEND("\x81\x05" "early"), FO_CALL(wait_eof, &sw)));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    const char *where[] = {"headers", "data"};
    for (int i = 0; i < 2; i++) {
        atomic_store(&sw.eof, 0);
        says(h, ARGS("headers_end", "/half", where[i]), "status=200", "frame=early", "ended=True",
             "reset=none");
        assert_int_equal(origin_eof(&sw), 1); /* a FIN, not a reset or nothing */
    }
    closed_reached(h, "client_closed", 2);
    px_stop(h);
    fake_origin_stop(f);
}

/* A client that acknowledges Portico's SETTINGS late, its WebSockets open: the acknowledgement
 * takes every stream's window down from 65,535 to Portico's floor (RFC 9113 6.9.2), below 0 for
 * one that spent more, and no byte of it may leave to bring it back: the tunnel streams' windows
 * are given back then, as other streams' are. Eight WebSockets: the first ones' grants use up
 * the connection's pool, and the last one's share is the floor. */
static void test_late_settings_ack_regrants(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    says(h, ARGS("late_ack", "/late", "8"), "status=200", "acks_held=1", "echoed_before=True",
         "echoed_after=True");
    px_stop(h);
    ws_origin_stop(o);
}

/* What the origin sends before its reset (remains_burst). */
#define REMAINS_BYTES (256 * 1024)

/* The origin's side: REMAINS_BYTES, then a wait until Portico's kernel acknowledged them all
 * (SIOCOUTQ empty): they reached Portico before the reset that follows. */
static int remains_burst(int fd, void *arg)
{
    (void)arg;
    static char chunk[16384];
    memset(chunk, 'r', sizeof(chunk));
    int64_t deadline = tu_now_ms() + 10000;
    for (size_t sent = 0; sent < REMAINS_BYTES;) {
        short ev = 0;
        if (tu_poll_until(fd, POLLOUT, deadline, &ev) <= 0)
            return -1;
        size_t want = REMAINS_BYTES - sent < sizeof(chunk) ? REMAINS_BYTES - sent : sizeof(chunk);
        ssize_t n = send(fd, chunk, want, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        sent += n > 0 ? (size_t)n : 0;
    }
    int queued = 1;
    while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 && tu_now_ms() < deadline) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL); /* polling the kernel's count of unacknowledged bytes */
    }
    return queued == 0 ? 0 : -1;
}

/* An origin that sends its last bytes and resets: they reach the client, as they would over a
 * direct TCP connection (and over an HTTP/1.1 tunnel), then the stream is reset CONNECT_ERROR;
 * they were dropped with the reset whenever the client's window had not let them all go yet.
 * With the client's window at 16 KiB that is most of them. */
static void test_origin_reset_behind_bytes(void **state)
{
    (void)state;
    static struct switcher sw;
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_CALL(remains_burst, NULL), FO_RST()));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    char received[32];
    snprintf(received, sizeof(received), "received=%d", REMAINS_BYTES);
    const char *windows[] = {"16384", "0"};
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++)
        says(h, ARGS("remains", "/remains", windows[i]), "status=200", received, "ended=False",
             "reset=10");
    closed_reached(h, "origin_error", 2);
    assert_true(metric(h, "portico_tunnels_closed_total{reason=\"client_error\"}") == 0);
    assert_true(px_in_flight(h, 0) == 0);
    px_stop(h);
    fake_origin_stop(f);
}

/* The same with a client that gives back no window: the reset waits for it no longer than
 * tunnel_timeout (CANCEL, counted idle), having sent what the window let go. */
static void test_origin_reset_window_shut(void **state)
{
    (void)state;
    static struct switcher sw;
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_CALL(remains_burst, NULL), FO_RST()));
    struct harness *h = start(NULL, fake_origin_port(f), "tunnel_timeout = 500ms");
    says(h, ARGS("remains", "/shut", "16384", "noack"), "status=200", "received=16384", "reset=8");
    closed_reached(h, "idle", 1);
    assert_true(px_in_flight(h, 0) == 0);
    px_stop(h);
    fake_origin_stop(f);
}

/* A 101 with the right Sec-WebSocket-Accept and then a second, wrong one does not prove the
 * key (the field is not a list): 502, no tunnel. */
static const struct fo_step *pick_two_accepts(const struct fo_request_info *req, void *arg)
{
    struct switcher *sw = arg;
    const char *k = strcasestr(req->head, "\r\nSec-WebSocket-Key: ");
    char key[32] = "", accept[29] = "";
    if (!k)
        return plain_ok;
    sscanf(k + 21, "%24s", key);
    ws_accept_value(key, accept);
    snprintf(sw->script_head, sizeof(sw->script_head),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
             "\r\n",
             accept);
    sw->steps[0] = (struct fo_step)FO_SEND(sw->script_head);
    sw->steps[1] = (struct fo_step)FO_HOLD();
    sw->steps[2] = (struct fo_step)FO_END();
    return sw->steps;
}

static void test_two_accepts_refused(void **state)
{
    (void)state;
    static struct switcher sw;
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_two_accepts,
                                    .pick_arg = &sw};
    struct fake_origin *f = fake_origin_start(&opts);
    assert_non_null(f);
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    says(h, ARGS("status", "/two"), "status=502");
    assert_true(metric(h, "portico_tunnels_total") == 0);
    assert_int_equal(harness_stop(h), 0);
    px_log_line_has(h, "\"path\":\"/two\"", "Sec-WebSocket-Accept that does not match", NULL);
    harness_free(h);
    fake_origin_stop(f);
}

/* The origin's side of a stalled tunnel: reads nothing until the test is done (bounded). */
static atomic_int sitting_done;

static int sit(int fd, void *arg)
{
    (void)fd, (void)arg;
    for (int i = 0; i < 3000 && !atomic_load(&sitting_done); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the test says when it is done */
    }
    return -1;
}

/* An origin that reads nothing while the client sends: once Portico's writes to it stalled
 * for client_send_timeout, the stream is reset CONNECT_ERROR (RFC 9113 8.5), counted
 * origin_stalled. */
static void test_origin_stall_resets_stream(void **state)
{
    (void)state;
    static struct switcher sw;
    atomic_store(&sitting_done, 0);
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_CALL(sit, NULL)));
    struct harness *h = start("client_send_timeout = 500ms", fake_origin_port(f), NULL);
    says(h, ARGS("flood", "/flood", "64"), "status=200", "reset=10");
    closed_reached(h, "origin_stalled", 1);
    atomic_store(&sitting_done, 1);
    px_stop(h);
    fake_origin_stop(f);
}

/* More than the stream may hold, both ways: the origin is paused while the client's window is
 * shut and read again once its DATA went (check_streams), until every echo arrived. */
static void test_bulk_echo_resumes(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    struct tu_cmd_result r = {0};
    /* plain takes 1-2 s quiet, 7-11 s on a host at load 10 (2 of 7 runs missed a 10 s wait);
     * valgrind 20 s and more. A stall still fails, later. */
    run_client(h, &r, "bulk", "/bulk", "8", px_under_valgrind(harness_pid(h)) ? "60" : "30",
               NULL);
    print_message("%s", strstr(r.out, "received=") ? strstr(r.out, "received=") : r.out);
    want(&r, "status=200", "sent=128", "complete=True", "reset=none");
    tu_cmd_result_free(&r);
    px_stop(h);
    ws_origin_stop(o);
}

/* The client's END_STREAM is a FIN to the origin behind its bytes; what the origin still sends
 * goes on to the client, then its close ends the stream. */
static void test_client_half_close(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    says(h, ARGS("halfclose", "/h"), "status=200", "after_end=last words,8", "stream_ended=True",
         "reset=none");
    closed_reached(h, "client_closed", 1);
    px_stop(h);
    ws_origin_stop(o);
}

/* tunnel_timeout: a WebSocket with no byte either way is reset (CANCEL) and counted idle. */
static void test_tunnel_timeout(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, "tunnel_timeout = 400ms");
    says(h, ARGS("idle", "/i"), "status=200", "reset=8");
    closed_reached(h, "idle", 1);
    assert_int_equal(harness_stop(h), 0);
    px_log_line_has(h, "\"path\":\"/i\"", "idle for tunnel_timeout", NULL);
    harness_free(h);
    ws_origin_stop(o);
}

/* ---- a stop ---- */

/* h2_websocket.py beside the test, its FIFOs (in dir) waiting for the test's look. */
struct side_run {
    const char *argv[8];
    char port[16];
    int run_ms;
    pthread_t thread;
    struct tu_cmd_result r;
    int rc;
};

static void *side_main(void *arg)
{
    struct side_run *run = arg;
    run->rc = tu_run_command(run->argv, run->run_ms, &run->r);
    return NULL;
}

/* Starts h2_websocket.py MODE PATH [ARG] DIR against h's listener on a thread, bounded by
 * run_ms; side_join waits for it. */
static void side_start(struct side_run *run, struct harness *h, int run_ms, const char *mode,
                       const char *path, const char *arg, const char *dir)
{
    snprintf(run->port, sizeof(run->port), "%u", harness_port(h, "tls"));
    const char *argv[] = {PY, CLIENT, run->port, mode, path, arg ? arg : dir, arg ? dir : NULL,
                          NULL};
    memcpy(run->argv, argv, sizeof(argv));
    run->run_ms = run_ms;
    assert_int_equal(pthread_create(&run->thread, NULL, side_main, run), 0);
}

static void side_join(struct side_run *run)
{
    pthread_join(run->thread, NULL);
}

/* A FIFO named name in dir, its path in path. */
static void make_fifo(const char *dir, const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    assert_int_equal(mkfifo(path, 0600), 0);
}

/* Waits for the script's line in the FIFO fd (opened before the script did) and closes it; ""
 * if none came within ms. */
static void fifo_line(int fd, char *line, size_t size, int ms)
{
    int64_t deadline = tu_now_ms() + ms;
    short ev = 0;
    memset(line, 0, size); /* what is read stays a string */
    while (tu_poll_until(fd, POLLIN, deadline, &ev) > 0 && read(fd, line, size - 1) <= 0)
        ;
    close(fd);
}

static void fifo_go(const char *path)
{
    int fd = open(path, O_WRONLY | O_NONBLOCK); /* the script opened it first */
    if (fd >= 0) {
        assert_int_equal(write(fd, "go\n", 3), 3);
        close(fd);
    }
}

/* The origin's side of test_stalled_origin_reset: writes until Portico stops reading it (the
 * stream full, the client giving back no window) and its kernel takes no more, notes what
 * Portico's kernel acknowledged and what it sent, and resets. */
struct stall_origin {
    atomic_int done;
    size_t written, acked, sent;
};

static int fill_then_note(int fd, void *arg)
{
    struct stall_origin *so = arg;
    static char chunk[65536];
    memset(chunk, 's', sizeof(chunk));
    size_t total = 0;
    short rev;
    while (total < 64u * 1024 * 1024) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (tu_poll_until(fd, POLLOUT, tu_now_ms() + 200, &rev) == 0)
            break; /* stalled: nobody reads */
    }
    int unacked = 0, unsent = 0;
    if (ioctl(fd, SIOCOUTQ, &unacked) != 0 || ioctl(fd, SIOCOUTQNSD, &unsent) != 0)
        return -1;
    so->written = total;
    so->acked = total - (size_t)unacked;
    so->sent = total - (size_t)unsent;
    /* The reset, sent now (a TCP disconnect: RST, its output dropped), before the test is told */
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (connect(fd, &unspec, sizeof(unspec)) != 0)
        return -1;
    atomic_store(&so->done, 1);
    return -1; /* the connection is closed */
}

/* An origin that fills the way to a client that reads nothing (the stream's share in Portico,
 * its socket's input, the kernels' buffers), then resets; the client then sends a message, a
 * write that meets the reset before Portico read the rest, and reads again: every byte that
 * reached Portico (all its kernel acknowledged) reaches the client, then RST_STREAM
 * CONNECT_ERROR, as over an HTTP/1.1 tunnel (test_websocket's test_stream_then_reset). */
static void test_stalled_origin_reset(void **state)
{
    (void)state;
    static struct switcher sw;
    static struct stall_origin so;
    atomic_store(&so.done, 0);
    struct fake_origin *f = switch_origin(&sw, SWITCH_THEN(FO_CALL(fill_then_note, &so)));
    struct harness *h = start(NULL, fake_origin_port(f), NULL);
    char dir[256], go[300];
    assert_int_equal(tu_make_temp_dir("h2ws", dir, sizeof(dir)), 0);
    make_fifo(dir, "go", go, sizeof(go));
    struct side_run run = {0};
    side_start(&run, h, RUN_MS, "remains_go", "/stalled", NULL, dir);
    int64_t deadline = tu_now_ms() + 20000;
    while (!atomic_load(&so.done) && tu_now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the origin's thread says when it is about to reset */
    }
    assert_true(atomic_load(&so.done));
    fifo_go(go);
    side_join(&run);
    if (run.rc != 0)
        fail_msg("h2_websocket.py remains_go: rc %d\n%s%s", run.rc, run.r.out, run.r.err);
    want(&run.r, "status=200", "go=True", "reset=10");
    const char *rx = strstr(run.r.out, "\nreceived=");
    assert_non_null(rx);
    size_t got = strtoull(rx + 10, NULL, 10);
    print_message("  the origin wrote %zu bytes, %zu-%zu of them before its reset; the client "
                  "got %zu, then RST_STREAM\n",
                  so.written, so.acked, so.sent, got);
    assert_true(got >= so.acked && got <= so.sent);
    tu_cmd_result_free(&run.r);
    tu_remove_tree(dir);
    px_stop(h);
    fake_origin_stop(f);
}

/* A reload's old worker lets a WebSocket stream live for shutdown_timeout, as an HTTP/1.1
 * tunnel, then cuts it: the client has the GOAWAY, then the close; the cut is logged and
 * counted. */
static void test_cut_by_drain_deadline(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, "shutdown_timeout = 1s", NULL);
    char dir[256], opened[300], go[300];
    assert_int_equal(tu_make_temp_dir("h2ws", dir, sizeof(dir)), 0);
    make_fifo(dir, "open", opened, sizeof(opened));
    make_fifo(dir, "go", go, sizeof(go));
    int opened_fd = open(opened, O_RDONLY | O_NONBLOCK);
    assert_true(opened_fd >= 0);
    struct side_run run = {0};
    side_start(&run, h, RUN_MS, "drain", "/long", NULL, dir);
    char line[32];
    fifo_line(opened_fd, line, sizeof(line), 20000);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
    fifo_go(go);
    side_join(&run);
    if (run.rc != 0 || strncmp(line, "open", 4) != 0)
        fail_msg("h2_websocket.py drain: rc %d '%s'\n%s%s", run.rc, line, run.r.out, run.r.err);
    /* echoed_draining=1: the old worker still relays */
    want(&run.r, "status=200", "echoed_before=1", "echoed_draining=1", "closed=True",
         "goaway=True");
    tu_cmd_result_free(&run.r);
    assert_int_equal(harness_wait_log(h, "previous workers have finished", PX_IO_MS), 0);
    assert_true(harness_log_contains(h, "[warn] stopping: cut 1 tunnel still open"));
    assert_true(harness_log_contains(h, ": cut: Portico stopped"));
    closed_reached(h, "cut", 1);
    assert_int_equal(harness_stop(h), 0);
    px_log_line_has(h, "\"path\":\"/long\"", "tunnel: cut: Portico stopped", "\"status\":200",
                    NULL);
    harness_free(h);
    tu_remove_tree(dir);
    ws_origin_stop(o);
}

/* ---- flow control ---- */

/* What Portico may grow by while a client that reads no echo has a WebSocket send it 64 MiB:
 * the stream's share of its connection's response budget (4 MiB), what the origin's socket
 * read ahead, and the request window's worth (1 MiB at most) on its way to the origin. */
#define NOREAD_GROWTH_KB (12 * 1024)

/* A client that gives back no window for what it is sent: the origin's echoes stop in
 * Portico at the stream's share, the origin is no longer read, its own writes back up, it
 * reads no more of the client's messages, and the client's window stays shut: the client sent
 * a few MiB of its 64, and Portico's memory stayed bounded. */
static void test_client_not_reading_bounded(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    pid_t pid = harness_pid(h);
    bool own = px_rss_is_portico(pid);
    long before = own ? px_rss_settled(pid) : px_proc_kb(pid, "VmRSS");
    char dir[256], stalled[300], go[300];
    assert_int_equal(tu_make_temp_dir("h2ws", dir, sizeof(dir)), 0);
    make_fifo(dir, "stalled", stalled, sizeof(stalled));
    make_fifo(dir, "go", go, sizeof(go));
    int stalled_fd = open(stalled, O_RDONLY | O_NONBLOCK); /* before the script opens it */
    assert_true(stalled_fd >= 0);
    /* valgrind: its sending phase took over 20 s on a loaded host (27 s the row, alone) */
    int slow = px_under_valgrind(pid) ? 3 : 1;
    struct side_run run = {0};
    int64_t t0 = tu_now_ms();
    side_start(&run, h, RUN_MS * slow, "noread", "/n", "64", dir);
    char line[32];
    fifo_line(stalled_fd, line, sizeof(line), 20000 * slow);
    print_message("  stalled after %lld ms\n", (long long)(tu_now_ms() - t0));
    long after = own ? px_rss_settled(pid) : px_proc_kb(pid, "VmRSS");
    fifo_go(go);
    side_join(&run);
    if (run.rc != 0 || strncmp(line, "stalled ", 8) != 0)
        fail_msg("h2_websocket.py noread: rc %d, '%s'\n%s%s", run.rc, line, run.r.out,
                 run.r.err);
    long sent = strtol(line + 8, NULL, 10);
    print_message("  a client reading no echo: sent %ld KiB of 64 MiB; portico RSS %ld kB -> "
                  "%ld kB%s\n",
                  sent / 1024, before, after, own ? "" : " (not asserted under ASan)");
    want(&run.r, "status=200", "go=True");
    assert_true(sent < 32 * 1024 * 1024); /* the rest: the kernels' buffers on the way */
    if (own && after - before > NOREAD_GROWTH_KB)
        fail_msg("RSS grew by %ld kB (at most %d kB)", after - before, NOREAD_GROWTH_KB);
    tu_cmd_result_free(&run.r);
    tu_remove_tree(dir);
    px_stop(h);
    ws_origin_stop(o);
}

/* The bytes the origin sent are counted as the client's are: an echo of 8 KiB and more each
 * way (portico_tunnel_origin_bytes_total, from the origin's input into the stream). */
static void test_origin_bytes_counted(void **state)
{
    (void)state;
    struct ws_origin *o;
    struct harness *h = start_echo(&o, NULL, NULL);
    says(h, ARGS("echo", "/chat", "8"), "echoed=8", "stream_ended=True");
    closed_reached(h, "origin_closed", 1);
    long client = metric(h, "portico_tunnel_client_bytes_total");
    long origin = metric(h, "portico_tunnel_origin_bytes_total");
    print_message("  client %ld bytes, origin %ld bytes\n", client, origin);
    assert_true(origin > 8 * 1024);
    px_stop(h);
    ws_origin_stop(o);
}

int main(void)
{
    tu_ignore_sigpipe();
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings_advertised),
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_two_websockets_and_a_get),
        cmocka_unit_test(test_origin_refuses),
        cmocka_unit_test(test_refused_origin),
        cmocka_unit_test(test_silent_origin),
        cmocka_unit_test(test_fault_rule_answers),
        cmocka_unit_test(test_wrong_accept),
        cmocka_unit_test(test_other_connects_501),
        cmocka_unit_test(test_content_length_malformed),
        cmocka_unit_test(test_client_reset_closes_origin),
        cmocka_unit_test(test_origin_close_ends_stream),
        cmocka_unit_test(test_origin_reset_resets_stream),
        cmocka_unit_test(test_reset_tunnel_counted_once),
        cmocka_unit_test(test_origin_reset_behind_bytes),
        cmocka_unit_test(test_origin_reset_window_shut),
        cmocka_unit_test(test_stalled_origin_reset),
        cmocka_unit_test(test_late_settings_ack_regrants),
        cmocka_unit_test(test_fin_behind_slow_origin),
        cmocka_unit_test(test_slow_download_not_idle),
        cmocka_unit_test(test_end_stream_on_headers),
        cmocka_unit_test(test_two_accepts_refused),
        cmocka_unit_test(test_origin_stall_resets_stream),
        cmocka_unit_test(test_bulk_echo_resumes),
        cmocka_unit_test(test_client_half_close),
        cmocka_unit_test(test_tunnel_timeout),
        cmocka_unit_test(test_cut_by_drain_deadline),
        cmocka_unit_test(test_client_not_reading_bounded),
        cmocka_unit_test(test_origin_bytes_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
