/*
 * test_websocket.c — issue 10's upgrades and tunnels with the real binary: a WebSocket echo
 * through Portico (the opening handshake with its Upgrade forwarded both ways, frames of 13 B,
 * 200 B and 70 KB, a ping, the close handshake), the 101 logged and counted; tunnel_timeout
 * closing an idle tunnel and not a busy one; back-pressure (a client that does not read its
 * echoes stalls, Portico's memory does not grow, everything arrives once it reads); and the
 * requests that may not upgrade (a body, HTTP/1.0): their Upgrade never reaches the origin; the
 * last bytes of the side that closes first reach the other side whole, followed by a FIN (also
 * when it resets behind them and a write meets the reset first, however much of it Portico
 * holds for a slow reader); a
 * close is a half-close (the other way goes on), and what ends a half-closed tunnel; a
 * slow reader that keeps taking bytes is not idle; no 1xx of Portico's own precedes the 101;
 * how each tunnel ended and the bytes it moved are counted and (but for a close) logged, a cut
 * by a reload's drain deadline included; the access line of a switched exchange is written at
 * the tunnel's end, with the bytes each way and the tunnel's life, in both formats.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/json.h"
#include "../support/scrape.h"
#include "../support/websocket.h"
#include "proxy_helpers.h"

static struct harness *start_ws(struct ws_origin *o, const char *upstream_extra)
{
    return px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                    "[upstream ws]\norigin = 127.0.0.1:%u\n%s", ws_origin_port(o),
                    upstream_extra ? upstream_extra : "");
}

/* A client through Portico, past the opening handshake. */
static struct ws_client *open_ws(struct harness *h, const char *path)
{
    struct ws_client *c = ws_client_connect(px_port(h), PX_IO_MS);
    assert_non_null(c);
    char *head = NULL;
    int status = ws_client_handshake(c, path, &head, PX_IO_MS);
    if (status != 101)
        fail_msg("handshake through Portico: status %d, head:\n%s", status, head ? head : "");
    assert_true(ws_client_accept_ok(c, head));
    free(head);
    return c;
}

/* Sends one frame and checks the echo: same opcode and bytes, unmasked, final. */
static void echo(struct ws_client *c, enum ws_opcode op, const unsigned char *data, size_t len)
{
    assert_int_equal(ws_client_send(c, op, data, len, PX_IO_MS), 0);
    struct ws_frame f;
    assert_int_equal(ws_client_recv(c, &f, PX_IO_MS), 0);
    assert_int_equal(f.opcode, op);
    assert_true(f.fin);
    assert_false(f.masked);
    assert_int_equal(f.len, len);
    assert_memory_equal(f.data, data, len);
    ws_frame_free(&f);
}

/* ---- the echo ---- */

static void test_echo(void **state)
{
    (void)state;
    struct ws_origin *o = ws_origin_start();
    assert_non_null(o);
    struct harness *h = start_ws(o, NULL);
    struct ws_client *c = ws_client_connect(px_port(h), PX_IO_MS);
    assert_non_null(c);
    char *head = NULL;
    assert_int_equal(ws_client_handshake(c, "/chat", &head, PX_IO_MS), 101);
    /* the 101 as the client sees it: the origin's Upgrade and accept, Via (a message Portico
     * forwards, RFC 9110 7.6.3), Connection: upgrade */
    assert_true(ws_client_accept_ok(c, head));
    assert_true(strcasestr(head, "\r\nUpgrade: websocket\r\n") != NULL);
    assert_true(strcasestr(head, "\r\nVia: 1.1 portico\r\n") != NULL);
    assert_true(strcasestr(head, "\r\nConnection: upgrade\r\n") != NULL);
    assert_null(strcasestr(head, "Content-Length"));
    free(head);
    /* what the origin was offered */
    char *req = ws_origin_request_head(o);
    assert_non_null(req);
    assert_true(strcasestr(req, "\r\nUpgrade: websocket\r\n") != NULL);
    assert_true(strcasestr(req, "\r\nConnection: upgrade\r\n") != NULL);
    assert_true(strcasestr(req, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    assert_true(strcasestr(req, "\r\nSec-WebSocket-Key: ") != NULL);
    free(req);

    /* 13 B (7-bit length), 200 B (16-bit), 70 KB (64-bit) */
    static const size_t sizes[] = {13, 200, 70 * 1024};
    unsigned char *data = malloc(70 * 1024);
    assert_non_null(data);
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            data[k] = i == 0 ? (unsigned char)"hello, portico"[k]
                             : (unsigned char)((k * 7 + i) % 251);
        echo(c, i == 0 ? WS_TEXT : WS_BINARY, data, sizes[i]);
    }
    free(data);
    /* a ping is answered by the origin's pong */
    assert_int_equal(ws_client_send(c, WS_PING, "p", 1, PX_IO_MS), 0);
    struct ws_frame f;
    assert_int_equal(ws_client_recv(c, &f, PX_IO_MS), 0);
    assert_int_equal(f.opcode, WS_PONG);
    ws_frame_free(&f);
    /* the close handshake, then the origin closes and Portico closes us */
    assert_int_equal(ws_client_send(c, WS_CLOSE, "\x03\xe8" "bye", 5, PX_IO_MS), 0);
    assert_int_equal(ws_client_recv(c, &f, PX_IO_MS), 0);
    assert_int_equal(f.opcode, WS_CLOSE);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.data, "\x03\xe8" "bye", 5);
    ws_frame_free(&f);
    assert_int_equal(ws_client_wait_closed(c, PX_IO_MS), 1);
    ws_client_close(c);
    assert_int_equal(ws_origin_frames(o), 3);
    assert_int_equal(ws_origin_closes(o), 1);

    assert_true(scrape_metric(harness_port(h, "admin"), "portico_tunnels_total", PX_IO_MS) == 1);
    /* the tunnel's end and its bytes, frames and all: the client's masked (6 bytes of head,
     * 8 with a 16-bit length, 14 with a 64-bit one), the origin's not (2, 4, 10) */
    assert_true(scrape_metric(harness_port(h, "admin"),
                              "portico_tunnels_closed_total{reason=\"origin_closed\"}",
                              PX_IO_MS) == 1);
    double from_client = scrape_metric(harness_port(h, "admin"),
                                       "portico_tunnel_client_bytes_total", PX_IO_MS);
    double from_origin = scrape_metric(harness_port(h, "admin"),
                                       "portico_tunnel_origin_bytes_total", PX_IO_MS);
    print_message("  tunnel bytes: %.0f from the client, %.0f from the origin\n", from_client,
                  from_origin);
    assert_true(from_client == (6 + 13) + (8 + 200) + (14 + 70 * 1024) + (6 + 1) + (6 + 5));
    assert_true(from_origin == (2 + 13) + (4 + 200) + (10 + 70 * 1024) + (2 + 1) + (2 + 5));
    /* the access-log line, complete once Portico has stopped (a worker writes its lines once a
     * second while it runs) */
    assert_int_equal(harness_stop(h), 0);
    char *line = px_log_line(h, "target=\"/chat\"");
    assert_non_null(strstr(line, " status=101 "));
    assert_non_null(strstr(line, " upstream_status=101 "));
    free(line);
    harness_free(h);
    ws_origin_stop(o);
}

/* ---- tunnel_timeout ---- */

/* A frame every IDLE_PACE_MS keeps a tunnel with IDLE_TIMEOUT_MS open: a tenth of it, so that a
 * stall of the test or of Portico of up to 9 paces is still no idle tunnel. With a frame every
 * 100 ms against 300 ms, a stalled moment of a sanitized build on a loaded host closed it. */
#define IDLE_TIMEOUT_MS 500
#define IDLE_PACE_MS (IDLE_TIMEOUT_MS / 10)

static void test_idle_timeout(void **state)
{
    (void)state;
    struct ws_origin *o = ws_origin_start();
    assert_non_null(o);
    char conf[64];
    snprintf(conf, sizeof(conf), "tunnel_timeout = %dms\n", IDLE_TIMEOUT_MS);
    struct harness *h = start_ws(o, conf);
    struct ws_client *c = open_ws(h, "/idle");
    /* busy for twice the timeout: a frame every IDLE_PACE_MS keeps it open */
    for (int i = 0; i < 2 * IDLE_TIMEOUT_MS / IDLE_PACE_MS; i++) {
        if (i)
            assert_int_equal(ws_client_wait_closed(c, IDLE_PACE_MS), 0);
        echo(c, WS_TEXT, (const unsigned char *)"tick", 4);
    }
    /* then idle: closed about IDLE_TIMEOUT_MS after the last byte; timed from before that byte,
     * which Portico moved after t0 */
    int64_t t0 = tu_now_ms();
    echo(c, WS_TEXT, (const unsigned char *)"last", 4);
    assert_int_equal(ws_client_wait_closed(c, PX_IO_MS), 1);
    int64_t idle = tu_now_ms() - t0;
    print_message("  idle tunnel closed %lld ms after its last frame was sent (tunnel_timeout %d "
                  "ms)\n", (long long)idle, IDLE_TIMEOUT_MS);
    assert_true(idle >= IDLE_TIMEOUT_MS - 1 && idle < 4 * IDLE_TIMEOUT_MS); /* - 1: ms rounding */
    ws_client_close(c);
    /* counted and logged with why, how long and how much: each 4-byte frame is 10 bytes from
     * the client (masked), 6 from the origin */
    assert_int_equal(harness_wait_log(h, "tunnel to 127.0.0.1:", PX_IO_MS), 0);
    const int frames = 2 * IDLE_TIMEOUT_MS / IDLE_PACE_MS + 1;
    char said[96];
    snprintf(said, sizeof(said), ": idle for tunnel_timeout (%d bytes from the client, %d from the "
             "origin)", 10 * frames, 6 * frames);
    if (!harness_log_contains(h, said))
        fail_msg("no \"%s\" in the log", said);
    assert_true(scrape_metric(harness_port(h, "admin"),
                              "portico_tunnels_closed_total{reason=\"idle\"}", PX_IO_MS) == 1);
    px_stop(h);
    ws_origin_stop(o);
}

/* ---- a tunnel cut by a stop ---- */

/* A reload's old worker lets a tunnel live for shutdown_timeout, then cuts it: the client sees
 * the close, and the cut is logged (a line for the worker, one for the tunnel) and counted. */
static void test_cut_by_drain_deadline(void **state)
{
    (void)state;
    struct ws_origin *o = ws_origin_start();
    assert_non_null(o);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}\nshutdown_timeout = 1s",
                                 "[upstream ws]\norigin = 127.0.0.1:%u\n", ws_origin_port(o));
    struct ws_client *c = open_ws(h, "/long");
    echo(c, WS_TEXT, (const unsigned char *)"before", 6);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
    echo(c, WS_TEXT, (const unsigned char *)"draining", 8); /* the old worker still relays */
    assert_int_equal(ws_client_wait_closed(c, PX_IO_MS), 1);
    ws_client_close(c);
    assert_int_equal(harness_wait_log(h, "previous workers have finished", PX_IO_MS), 0);
    assert_true(harness_log_contains(h, "[warn] stopping: cut 1 tunnel still open"));
    assert_true(harness_log_contains(h, ": cut: Portico stopped"));
    /* its access line, written at the cut: the frames each way (see test_echo) */
    char *line = px_log_line(h, "target=\"/long\"");
    if (!strstr(line, " status=101 ") || !strstr(line, " bytes_out=18 bytes_in=26 ") ||
        !strstr(line, " detail=\"tunnel: cut: Portico stopped"))
        fail_msg("the cut tunnel's line: %s", line);
    free(line);
    uint16_t admin = harness_port(h, "admin");
    assert_true(scrape_metric(admin, "portico_tunnels_closed_total{reason=\"cut\"}", PX_IO_MS) ==
                1);
    assert_true(scrape_metric(admin, "portico_tunnel_client_bytes_total", PX_IO_MS) ==
                (6 + 6) + (6 + 8));
    px_stop(h);
    ws_origin_stop(o);
}

/* ---- back-pressure ---- */

#define BP_FRAME (64 * 1024)
#define BP_TOTAL (64u * 1024 * 1024)

struct sender {
    struct ws_client *c;
    _Atomic size_t sent;               /* payload bytes sent */
    int rc;
};

static void *send_all(void *arg)
{
    struct sender *s = arg;
    unsigned char *frame = malloc(BP_FRAME);
    s->rc = frame ? 0 : -1;
    for (size_t i = 0; s->rc == 0 && i < BP_TOTAL / BP_FRAME; i++) {
        memset(frame, (int)(i % 251), BP_FRAME);
        s->rc = ws_client_send(s->c, WS_BINARY, frame, BP_FRAME, 30000);
        if (s->rc == 0)
            atomic_fetch_add(&s->sent, BP_FRAME);
    }
    free(frame);
    return NULL;
}

/* A client that sends and does not read: the echoes fill the way back, Portico stops reading the
 * origin, the origin stops reading, Portico stops reading the client, and the sender stalls,
 * with Portico's memory bounded; once the client reads, every frame arrives, in order. */
static void test_back_pressure(void **state)
{
    (void)state;
    struct ws_origin *o = ws_origin_start();
    assert_non_null(o);
    struct harness *h = start_ws(o, NULL);
    struct ws_client *c = open_ws(h, "/flood");
    long rss0 = px_proc_kb(harness_pid(h), "VmRSS");
    struct sender s = {.c = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all, &s), 0);
    /* wait until the sender makes no progress for 500 ms (or is done) */
    size_t last = (size_t)-1;
    for (int64_t end = tu_now_ms() + 20000; tu_now_ms() < end;) {
        size_t now = atomic_load(&s.sent);
        if (now == last || now == BP_TOTAL)
            break;
        last = now;
        poll(NULL, 0, 500); /* a stall is 500 ms without progress: measured, not synced on */
    }
    size_t stalled = atomic_load(&s.sent);
    long rss1 = px_proc_kb(harness_pid(h), "VmRSS");
    print_message("  sender stalled after %zu of %u bytes; Portico RSS %ld -> %ld kB\n", stalled,
                  BP_TOTAL, rss0, rss1);
    assert_true(stalled < BP_TOTAL);
    if (px_rss_is_portico(harness_pid(h)))
        assert_true(rss1 - rss0 < 16 * 1024);
    /* now read everything back */
    size_t got = 0;
    for (size_t i = 0; got < BP_TOTAL; i++) {
        struct ws_frame f;
        if (ws_client_recv(c, &f, 20000) != 0)
            fail_msg("frame %zu did not come back (%zu bytes so far)", i, got);
        assert_int_equal(f.len, BP_FRAME);
        assert_int_equal(f.data[0], i % 251);
        assert_int_equal(f.data[BP_FRAME - 1], i % 251);
        got += f.len;
        ws_frame_free(&f);
    }
    pthread_join(t, NULL);
    assert_int_equal(s.rc, 0);
    ws_client_close(c);
    px_stop(h);
    ws_origin_stop(o);
}

/* ---- requests that may not upgrade ---- */

static const struct {
    const char *why;
    const char *request;
} no_upgrade_rows[] = {
    /* a body would have to be read before switching: Portico does not offer the upgrade */
    {"request with a body",
     "POST /up HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello"},
    /* Upgrade is HTTP/1.1 only */
    {"HTTP/1.0",
     "GET /up HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
    /* an Upgrade field that Connection does not name is not an offer */
    {"Upgrade without Connection: upgrade",
     "GET /up HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
    /* HTTP/2 is per hop: an h2c upgrade is the client's offer to Portico, and an origin taking it
     * would talk HTTP/2 to the client through a tunnel, past every route and limit */
    {"Upgrade: h2c",
     "GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
     "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"},
    /* the same among other protocols, in any case */
    {"Upgrade: websocket, H2C",
     "GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket, H2C\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
    /* a protocol is its name and an optional version (RFC 9110 7.8): h2c/1 is h2c, and HTTP/2.0
     * is HTTP/2 too; they went to the origin, whose 101 opened the tunnel */
    {"Upgrade: h2c/1",
     "GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c/1\r\n"
     "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"},
    {"Upgrade: websocket, HTTP/2.0",
     "GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket, HTTP/2.0\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
};

static void test_no_upgrade(void **state)
{
    (void)state;
    struct ws_origin *o = ws_origin_start();
    assert_non_null(o);
    struct harness *h = start_ws(o, NULL);
    for (size_t i = 0; i < ARRAY_SIZE(no_upgrade_rows); i++) {
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, no_upgrade_rows[i].request), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        /* the origin refuses a handshake without Upgrade: its 400 comes through */
        if (r.status != 400)
            fail_msg("%s: status %d", no_upgrade_rows[i].why, r.status);
        raw_response_free(&r);
        raw_close(c);
        char *req = ws_origin_request_head(o);
        assert_non_null(req);
        if (strcasestr(req, "\r\nUpgrade:") || strcasestr(req, "Connection: upgrade"))
            fail_msg("%s: the origin was offered an upgrade:\n%s", no_upgrade_rows[i].why, req);
        free(req);
    }
    assert_int_equal(ws_origin_handshakes(o), 0);
    px_stop(h);
    ws_origin_stop(o);
}

/* A Content-Length of 0 is no body (RFC 9112 6.3): the upgrade is offered, and the tunnel
 * carries frames both ways. It was taken for a body: Upgrade removed, the origin's 400. */
static void test_upgrade_empty_length(void **state)
{
    (void)state;
    struct ws_origin *o = ws_origin_start();
    assert_non_null(o);
    struct harness *h = start_ws(o, NULL);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /empty HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     "Content-Length: 0\r\n\r\n"),
                     0);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
    if (head.status != 101)
        fail_msg("status %d:\n%s", head.status, head.text);
    raw_head_free(&head);
    /* a masked text frame "hi" (mask 1,2,3,4) comes back unmasked */
    static const unsigned char frame[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
    assert_int_equal(raw_send(c, frame, sizeof(frame)), 0);
    char echo[4];
    short rev;
    size_t got = 0;
    for (int64_t deadline = tu_now_ms() + PX_IO_MS; got < sizeof(echo);) {
        assert_int_equal(tu_poll_until(raw_fd(c), POLLIN, deadline, &rev), 1);
        ssize_t n = read(raw_fd(c), echo + got, sizeof(echo) - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(echo, "\x81\x02hi", 4);
    raw_close(c);
    px_stop(h);
    ws_origin_stop(o);
}

/* ---- a closing side's last bytes ---- */

/* An origin played by the test itself, byte by byte: a listener on 127.0.0.1 whose connections
 * take little into their receive buffer, so that what the origin does not read waits in
 * Portico's output. */
static int raw_origin_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int small = 4096; /* inherited by the accepted connection */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accepts Portico's connection, reads the request head and answers `answer` after delay_ms
 * (a slow origin). */
static int raw_origin_answer(int lfd, int delay_ms, const char *answer)
{
    short rev;
    assert_int_equal(tu_poll_until(lfd, POLLIN, tu_now_ms() + PX_IO_MS, &rev), 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(fd >= 0);
    char head[4096];
    size_t len = 0;
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    while (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
        assert_true(len < sizeof(head));
        assert_int_equal(tu_poll_until(fd, POLLIN, deadline, &rev), 1);
        ssize_t n = read(fd, head + len, 1); /* one by one: nothing past the head is taken */
        assert_int_equal(n, 1);
        len++;
    }
    if (delay_ms)
        poll(NULL, 0, delay_ms); /* the origin's slowness is the case under test */
    assert_int_equal(write(fd, answer, strlen(answer)), (ssize_t)strlen(answer));
    return fd;
}

/* The same with a 101 to websocket. */
static int raw_origin_switch(int lfd, int delay_ms)
{
    return raw_origin_answer(lfd, delay_ms,
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n");
}

/* A client asks h for an upgrade of path; the origin listening on lfd switches at once. The
 * client's connection, its 101 read; the origin's side in *ofd. */
static struct raw_conn *open_tunnel(struct harness *h, int lfd, const char *path, int *ofd)
{
    char req[160];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
             path);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, req), 0);
    *ofd = raw_origin_switch(lfd, 0);
    struct raw_head head;
    assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
    assert_int_equal(head.status, 101);
    raw_head_free(&head);
    return c;
}

/* Writes to the non-blocking fd until it has taken nothing for 200 ms (the far side stopped
 * taking bytes: measured, there is no event for it). Returns the bytes written. */
static size_t fill_until_stalled(int fd, size_t max)
{
    static char chunk[65536];
    memset(chunk, 'f', sizeof(chunk));
    size_t total = 0;
    short rev;
    while (total < max) {
        ssize_t n = write(fd, chunk, max - total < sizeof(chunk) ? max - total : sizeof(chunk));
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        if (tu_poll_until(fd, POLLOUT, tu_now_ms() + 200, &rev) == 0)
            break;
    }
    return total;
}

/* Writes len bytes of 'l' to the non-blocking fd, waiting for room (bounded). */
static void write_last(int fd, size_t len)
{
    static char chunk[65536];
    memset(chunk, 'l', sizeof(chunk));
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    short rev;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, chunk, len - done < sizeof(chunk) ? len - done : sizeof(chunk));
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        if (tu_poll_until(fd, POLLOUT, deadline, &rev) != 1)
            fail_msg("only %zu of %zu bytes written", done, len);
    }
}

/* Reads (counting, discarding) until the peer closes or ms pass. Returns 1 closed (EOF or reset:
 * *reset says which), 0 still open. */
static int read_until_closed(int fd, int ms, size_t *count, bool *reset)
{
    static char buf[65536];
    int64_t deadline = tu_now_ms() + ms;
    short rev;
    for (;;) {
        if (tu_poll_until(fd, POLLIN, deadline, &rev) != 1)
            return 0;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            *count += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        *reset = n < 0;
        return 1;
    }
}

/* One side sends its last bytes and closes while the other reads nothing and the closing side's
 * own output is full (it does not read either). The tunnel delivers those bytes, then a FIN, and
 * ends once the other side closes too. It ended as soon as the closing side's output emptied
 * (the other side's output still full), and its close, with bytes unread, sent a reset that
 * threw away what the kernel had not sent yet: the other side lost most of them. */
#define LAST_BYTES (200 * 1024) /* below the tunnel's mark: all read with the closing EOF */

static const struct {
    const char *why;
    bool client_closes;
} last_bytes_rows[] = {
    /* a client that half-closes while the origin streams to it */
    {"the client closes", true},
    /* an origin that says its last and closes while the client streams to it */
    {"the origin closes", false},
};

static void test_last_bytes_before_close(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(last_bytes_rows); i++) {
        uint16_t oport;
        int lfd = raw_origin_listen(&oport);
        struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\n", oport);
        int ofd;
        struct raw_conn *c = open_tunnel(h, lfd, "/last", &ofd);
        int cfd = raw_fd(c);
        assert_int_equal(fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK), 0);
        int closer = last_bytes_rows[i].client_closes ? cfd : ofd;
        int other = closer == cfd ? ofd : cfd;
        /* the way to the closing side is full: Portico holds output for it */
        assert_true(fill_until_stalled(other, 64u * 1024 * 1024) > 0);
        /* its last bytes and its FIN; the other side reads none of them yet */
        write_last(closer, LAST_BYTES);
        assert_int_equal(shutdown(closer, SHUT_WR), 0);
        /* the closing side reads what was queued for it; the tunnel still owes the other side
         * its bytes, so it stays open (half a second, measured: the old code ended it as soon as
         * this read emptied the closing side's output) */
        size_t drained = 0, got = 0;
        bool reset = false;
        int closed_early = read_until_closed(closer, 500, &drained, &reset);
        /* now the other side reads: every last byte, then the FIN */
        if (read_until_closed(other, PX_IO_MS, &got, &reset) != 1)
            fail_msg("%s: no close after %zu of %d bytes", last_bytes_rows[i].why, got,
                     LAST_BYTES);
        print_message("  %s: the other side got %zu of its %d last bytes, then %s\n",
                      last_bytes_rows[i].why, got, LAST_BYTES, reset ? "a reset" : "the FIN");
        assert_int_equal(got, LAST_BYTES);
        assert_false(reset);
        assert_int_equal(closed_early, 0);
        /* it closes in turn: so does the closing side's connection */
        assert_int_equal(shutdown(other, SHUT_WR), 0);
        assert_int_equal(read_until_closed(closer, PX_IO_MS, &drained, &reset), 1);
        raw_close(c);
        close(ofd);
        close(lfd);
        px_stop(h);
    }
}

/* A client that stops reading while the origin streams to it: Portico's writes to it wait, and
 * client_send_timeout ends the tunnel (client_stalled) long before tunnel_timeout would. */
static void test_stalled_client_ends_tunnel(void **state)
{
    (void)state;
    uint16_t oport;
    int lfd = raw_origin_listen(&oport);
    struct harness *h =
        px_start("admin_listen = 127.0.0.1:{{port:admin}}\nclient_send_timeout = 500ms",
                 "[upstream u]\norigin = 127.0.0.1:%u\ntunnel_timeout = 60s\n", oport);
    int ofd;
    struct raw_conn *c = open_tunnel(h, lfd, "/stall", &ofd);
    assert_true(fill_until_stalled(ofd, 64u * 1024 * 1024) > 0); /* the client reads nothing */
    size_t drained = 0;
    bool reset = false;
    assert_int_equal(read_until_closed(ofd, PX_IO_MS, &drained, &reset), 1);
    free(px_log_line(h, "/stall"));
    assert_true(scrape_metric(harness_port(h, "admin"),
                              "portico_tunnels_closed_total{reason=\"client_stalled\"}",
                              PX_IO_MS) == 1);
    raw_close(c);
    close(ofd);
    close(lfd);
    px_stop(h);
}

/* ---- a side's last bytes, then its reset ---- */


/* One side says its last and resets (SO_LINGER 0: a server aborting, a client killed) while
 * the other side sends. Portico is stopped while both act, the sender first, so that it finds
 * the sender's bytes first on resuming: their write to the reset side meets the reset before the
 * reset side's own bytes, still in the kernel ahead of it, are read. The other side must get
 * them, as a direct connection would, then a FIN. They were never read: SOCK_ERROR came first
 * and ended the tunnel, and the other side got its FIN without them. */
static void test_last_bytes_before_reset(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(last_bytes_rows); i++) {
        uint16_t oport;
        int lfd = raw_origin_listen(&oport);
        struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                     "[upstream u]\norigin = 127.0.0.1:%u\n", oport);
        int ofd;
        struct raw_conn *c = open_tunnel(h, lfd, "/reset", &ofd);
        int cfd = raw_fd(c);
        int closer = last_bytes_rows[i].client_closes ? cfd : ofd;
        int other = closer == cfd ? ofd : cfd;
        assert_int_equal(px_sigstop(h), 0);
        assert_int_equal(write(other, "more", 4), 4); /* ready first in Portico's epoll */
        assert_int_equal(write(closer, "bye", 3), 3);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        assert_int_equal(setsockopt(closer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        /* the reset must find Portico's socket after the bytes: a loopback write is in the
         * peer's receive queue when it returns, and so is the reset after close */
        if (closer == cfd) {
            raw_close(c);
            c = NULL;
        } else {
            close(ofd);
            ofd = -1;
        }
        assert_int_equal(harness_signal(h, SIGCONT), 0);
        char got[16];
        size_t n = 0;
        bool reset = false;
        short rev;
        for (int64_t deadline = tu_now_ms() + PX_IO_MS; n < sizeof(got);) {
            if (tu_poll_until(other, POLLIN, deadline, &rev) != 1)
                break;
            ssize_t r = read(other, got + n, sizeof(got) - n);
            if (r <= 0) {
                reset = r < 0;
                break;
            }
            n += (size_t)r;
        }
        print_message("  %s: the other side got \"%.*s\", then %s\n", last_bytes_rows[i].why,
                      (int)n, got, reset ? "a reset" : "the close");
        if (n != 3 || memcmp(got, "bye", 3) != 0)
            fail_msg("%s: the other side got %zu bytes, not the closing side's \"bye\"",
                     last_bytes_rows[i].why, n);
        assert_false(reset);
        if (c)
            raw_close(c);
        if (ofd >= 0)
            close(ofd);
        /* the tunnel ended by the reset side's error, once its bytes went: that side's error,
         * counted before its access-log line is written */
        free(px_log_line(h, "/reset"));
        const char *series = last_bytes_rows[i].client_closes
                                 ? "portico_tunnels_closed_total{reason=\"client_error\"}"
                                 : "portico_tunnels_closed_total{reason=\"origin_error\"}";
        if (scrape_metric(harness_port(h, "admin"), series, PX_IO_MS) != 1)
            fail_msg("%s: %s is not 1", last_bytes_rows[i].why, series);
        close(lfd);
        px_stop(h);
    }
}

/* An origin that switches, sends its first bytes and resets at once, all read by Portico in one
 * go: 16 KiB exactly, a first read that fills its space, so that the next read finds the reset
 * behind them and leaves it to be reported on the next loop turn. The tunnel starts between the
 * two and must pass those bytes on to the client. The reset was reported to the new tunnel
 * before its first move: it ended with the bytes still in the origin's input. */
#define SWITCH_BURST (16 * 1024) /* sock.c's first read */

static void test_switch_then_reset(void **state)
{
    (void)state;
    static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n\r\n";
    static char burst[SWITCH_BURST];
    memset(burst, 'p', sizeof(burst));
    memcpy(burst, sw, strlen(sw));
    const size_t payload = SWITCH_BURST - strlen(sw);
    uint16_t oport;
    int lfd = raw_origin_listen(&oport);
    struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\n", oport);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, "GET /burst HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n\r\n"),
                     0);
    int ofd = raw_origin_answer(lfd, 0, ""); /* reads the request head */
    assert_int_equal(fcntl(ofd, F_SETFL, fcntl(ofd, F_GETFL) & ~O_NONBLOCK), 0); /* whole */
    assert_int_equal(px_sigstop(h), 0);
    assert_int_equal(write(ofd, burst, sizeof(burst)), (ssize_t)sizeof(burst));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(ofd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(ofd); /* RST */
    assert_int_equal(harness_signal(h, SIGCONT), 0);
    /* everything the client gets until Portico closes: the 101, then the origin's bytes */
    static char got[2 * SWITCH_BURST];
    size_t n = 0;
    short rev;
    for (int64_t deadline = tu_now_ms() + PX_IO_MS; n < sizeof(got);) {
        if (tu_poll_until(raw_fd(c), POLLIN, deadline, &rev) != 1)
            break;
        ssize_t r = read(raw_fd(c), got + n, sizeof(got) - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    const char *end = memmem(got, n, "\r\n\r\n", 4);
    assert_non_null(end);
    assert_int_equal(strncmp(got, "HTTP/1.1 101 ", 13), 0);
    size_t after = n - (size_t)(end + 4 - got);
    print_message("  the client got the 101 and %zu of the origin's %zu bytes behind it\n", after,
                  payload);
    assert_int_equal(after, payload);
    raw_close(c);
    close(lfd);
    px_stop(h);
}

/* An origin that streams to a client slower than it, then resets (a server aborting) while the
 * client sends: what the origin sent before its reset, in Portico's output to the client and in
 * Portico's kernel behind a paused read, still reaches the client, as a direct connection's
 * client would read what its kernel took before the reset. Portico is stopped while the origin
 * resets and the client sends, so that the client's bytes meet the reset first. */
static void test_stream_then_reset(void **state)
{
    (void)state;
    uint16_t oport;
    int lfd = raw_origin_listen(&oport);
    struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\n", oport);
    int ofd;
    struct raw_conn *c = open_tunnel(h, lfd, "/stream", &ofd);
    /* the way to the client fills: Portico holds output for it and stops reading the origin */
    size_t written = fill_until_stalled(ofd, 64u * 1024 * 1024);
    assert_int_equal(px_sigstop(h), 0);
    int cfd = raw_fd(c);
    assert_int_equal(write(cfd, "x", 1), 1);
    /* What reached Portico before the reset: at least what it acknowledged, at most what was
     * sent (a segment may be in, its ACK not yet back); the rest, still in the origin's kernel,
     * the reset throws away. Exactly "written - SIOCOUTQ" failed on such a segment (64 KiB
     * short, in test_forwarding's twin 2 times in 20). */
    int unacked = 0, unsent = 0;
    assert_int_equal(ioctl(ofd, SIOCOUTQ, &unacked), 0);
    assert_int_equal(ioctl(ofd, SIOCOUTQNSD, &unsent), 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(ofd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(ofd); /* RST */
    assert_int_equal(harness_signal(h, SIGCONT), 0);
    size_t got = 0;
    bool reset = false;
    assert_int_equal(fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(read_until_closed(cfd, PX_IO_MS, &got, &reset), 1);
    size_t took = written - (size_t)unacked, sent = written - (size_t)unsent;
    print_message("  the origin wrote %zu bytes, %zu-%zu of them before its reset; the client "
                  "got %zu, then %s\n", written, took, sent, got, reset ? "a reset" : "the FIN");
    assert_true(got >= took && got <= sent);
    raw_close(c);
    close(lfd);
    px_stop(h);
}

/* ---- half-close: the other way goes on ---- */

/* A side that half-closes (shutdown SHUT_WR: "I am done sending") still reads: Docker's attach
 * (Upgrade: tcp) sends stdin, half-closes and reads the output until the daemon closes. The
 * other side's answer, written after it saw the FIN, reaches the half-closed side whole, then
 * its own FIN. It was read and thrown away for 2 s, then both connections were closed: the
 * half-closed side got no byte of it, and a clean FIN as if that were all. */
#define HALF_ANSWER (300 * 1024) /* past the tunnel's mark: back-pressure still works that way */

static void test_half_close_other_way_goes_on(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(last_bytes_rows); i++) {
        uint16_t oport;
        int lfd = raw_origin_listen(&oport);
        struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\n", oport);
        struct raw_conn *c = px_connect(h);
        assert_int_equal(raw_send_str(c, "GET /attach HTTP/1.1\r\nHost: t\r\nUpgrade: tcp\r\n"
                                         "Connection: Upgrade\r\n\r\n"),
                         0);
        int ofd = raw_origin_answer(lfd, 0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp\r\n"
                                            "Connection: Upgrade\r\n\r\n");
        struct raw_head head;
        assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
        assert_int_equal(head.status, 101);
        raw_head_free(&head);
        int cfd = raw_fd(c);
        assert_int_equal(fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK), 0);
        int closer = last_bytes_rows[i].client_closes ? cfd : ofd;
        int other = closer == cfd ? ofd : cfd;
        /* the question, then the closer's FIN: the other side reads both */
        write_last(closer, 5);
        assert_int_equal(shutdown(closer, SHUT_WR), 0);
        size_t asked = 0;
        bool reset = false;
        assert_int_equal(read_until_closed(other, PX_IO_MS, &asked, &reset), 1);
        assert_int_equal(asked, 5);
        assert_false(reset);
        /* the answer, written after that FIN, then the other side's own */
        write_last(other, HALF_ANSWER);
        assert_int_equal(shutdown(other, SHUT_WR), 0);
        size_t got = 0;
        int closed = read_until_closed(closer, PX_IO_MS, &got, &reset);
        print_message("  %s: the half-closed side got %zu of the %d bytes answered after its FIN, "
                      "then %s\n", last_bytes_rows[i].why, got, HALF_ANSWER,
                      !closed ? "nothing" : reset ? "a reset" : "the FIN");
        assert_int_equal(closed, 1);
        assert_int_equal(got, HALF_ANSWER);
        assert_false(reset);
        raw_close(c);
        close(ofd);
        close(lfd);
        px_stop(h);
    }
}

/* What bounds a half-closed tunnel. A side that closed outright (close(), not shutdown) resets
 * what comes to it: the other side gets its last bytes and a FIN, and is closed at most
 * TUNNEL_LINGER_MS (2 s) later however much it keeps sending. A half-closed tunnel whose other
 * side neither sends nor closes is idle: closed after tunnel_timeout, as an open one. */
#define HALF_IDLE_MS 200 /* a tenth of the 2 s linger it must be told apart from */

static void test_half_closed_tunnel_ends(void **state)
{
    (void)state;
    uint16_t oport;
    int lfd = raw_origin_listen(&oport);
    char conf[96];
    snprintf(conf, sizeof(conf), "[upstream u]\norigin = 127.0.0.1:%%u\ntunnel_timeout = %dms\n",
             HALF_IDLE_MS);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}", conf, oport);
    for (int outright = 1; outright >= 0; outright--) {
        int ofd;
        struct raw_conn *c = open_tunnel(h, lfd, "/ends", &ofd);
        assert_int_equal(write(raw_fd(c), "bye", 3), 3);
        int64_t t0 = tu_now_ms();
        if (outright) {
            raw_close(c);
            c = NULL;
        } else {
            assert_int_equal(shutdown(raw_fd(c), SHUT_WR), 0);
        }
        /* the origin gets "bye" and the FIN */
        size_t got = 0;
        bool reset = false;
        assert_int_equal(read_until_closed(ofd, PX_IO_MS, &got, &reset), 1);
        assert_int_equal(got, 3);
        int64_t closed_ms = -1;
        if (outright) {
            /* it streams on (to a reset client) until Portico closes it */
            static char chunk[16384];
            short rev;
            for (int64_t end = t0 + 4 * PX_IO_MS; tu_now_ms() < end && closed_ms < 0;) {
                if (tu_poll_until(ofd, POLLOUT, end, &rev) != 1)
                    break;
                if (write(ofd, chunk, sizeof(chunk)) < 0 && errno != EAGAIN)
                    closed_ms = tu_now_ms() - t0;
            }
        } else {
            /* it neither sends nor closes: the client is closed after tunnel_timeout */
            got = 0;
            if (read_until_closed(raw_fd(c), 4 * PX_IO_MS, &got, &reset) == 1)
                closed_ms = tu_now_ms() - t0;
        }
        print_message("  the client closed %s: Portico closed the tunnel %lld ms later\n",
                      outright ? "outright, the origin streaming" : "its half, the origin quiet",
                      (long long)closed_ms);
        assert_true(closed_ms >= 0);
        if (outright)
            assert_true(closed_ms < 2000 + PX_IO_MS);
        else
            assert_true(closed_ms >= HALF_IDLE_MS - 1 && closed_ms < 2000); /* - 1: ms rounding */
        if (c)
            raw_close(c);
        close(ofd);
    }
    close(lfd);
    assert_true(scrape_metric(harness_port(h, "admin"),
                              "portico_tunnels_closed_total{reason=\"idle\"}", PX_IO_MS) == 1);
    px_stop(h);
}

/* ---- a slow reader is not an idle tunnel ---- */

/* Whether the origin's end of the tunnel was closed by Portico (EOF or reset), without waiting. */
static bool origin_closed(int fd)
{
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Writes to the non-blocking fd what it takes now, at most max. */
static size_t write_what_fits(int fd, size_t max)
{
    static char chunk[65536];
    memset(chunk, 's', sizeof(chunk));
    size_t total = 0;
    while (total < max) {
        size_t want = max - total < sizeof(chunk) ? max - total : sizeof(chunk);
        ssize_t n = write(fd, chunk, want);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    return total;
}

/* The origin streams faster than the client reads; the client takes 16 KiB every 50 ms (320 KB/s),
 * so bytes move all the time, but the kernel's buffers and Portico's output to it (past the 256
 * KiB mark) take longer than tunnel_timeout to empty, and meanwhile Portico reads nothing. Only
 * bytes read were counted as activity: the tunnel was closed as idle one tunnel_timeout after
 * the way to the client filled, with the client still reading. (TCP acknowledges a slow reader's
 * bytes in bursts a few hundred ms apart on loopback: tunnel_timeout is well above that.) */
#define SLOW_READ_PIECE (16 * 1024)
#define SLOW_READ_PAUSE_MS 50
#define SLOW_READ_FOR_MS 3000

static void test_slow_reader_not_idle(void **state)
{
    (void)state;
    uint16_t oport;
    int lfd = raw_origin_listen(&oport);
    struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\ntunnel_timeout = 1s\n",
                                 oport);
    int ofd;
    struct raw_conn *c = open_tunnel(h, lfd, "/slow", &ofd);
    int cfd = raw_fd(c);
    static char buf[SLOW_READ_PIECE];
    size_t sent = 0, got = 0;
    bool closed = false;
    int64_t start = tu_now_ms(), closed_at = 0;
    for (int i = 0; i < SLOW_READ_FOR_MS / SLOW_READ_PAUSE_MS && !closed; i++) {
        sent += write_what_fits(ofd, 64u * 1024 * 1024);
        short rev;
        assert_int_equal(tu_poll_until(cfd, POLLIN, tu_now_ms() + PX_IO_MS, &rev), 1);
        ssize_t n = read(cfd, buf, sizeof(buf));
        assert_true(n > 0); /* what Portico took before any close is still on its way */
        got += (size_t)n;
        if (origin_closed(ofd)) {
            closed = true;
            closed_at = tu_now_ms() - start;
        }
        poll(NULL, 0, SLOW_READ_PAUSE_MS); /* the reader's pace: the point of the test */
    }
    print_message("  origin wrote %zu bytes, the client read %zu; the tunnel %s\n", sent, got,
                  closed ? "was closed" : "stayed open");
    if (closed)
        fail_msg("closed as idle %lld ms into a steady read (tunnel_timeout 1 s)",
                 (long long)closed_at);
    assert_true(got >= (SLOW_READ_FOR_MS / SLOW_READ_PAUSE_MS) * (size_t)SLOW_READ_PIECE / 2);
    raw_close(c);
    close(ofd);
    close(lfd);
    px_stop(h);
}

/* ---- nothing but the 101 before the tunnel ---- */

/* A browser fails its WebSocket on any 1xx before the 101 (Chromium: close 1006, and the access
 * log says 499): Portico's own interim responses are not for an upgrade request. They were sent
 * to it as to any GET: a route with early_hints broke every browser WebSocket on it, and
 * processing_interval every one whose origin took longer than the interval to switch. */
static const struct {
    const char *why;
    const char *route_extra;
} no_interim_rows[] = {
    {"early_hints", "early_hints = </app.css>; rel=preload; as=style\n"},
    {"processing_interval", "processing_interval = 50ms\n"},
};

#define SLOW_SWITCH_MS 200 /* the origin's 101 comes after four heartbeat intervals */

static void test_upgrade_no_interim(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(no_interim_rows); i++) {
        uint16_t oport;
        int lfd = raw_origin_listen(&oport);
        struct harness *h = px_start(NULL,
                                     "[upstream u]\norigin = 127.0.0.1:%u\n"
                                     "[route r]\nprefix = /\nupstream = u\n%s",
                                     oport, no_interim_rows[i].route_extra);
        struct raw_conn *c = px_connect(h);
        assert_int_equal(raw_send_str(c, "GET /hinted HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                                         "Connection: Upgrade\r\n\r\n"),
                         0);
        int ofd = raw_origin_switch(lfd, SLOW_SWITCH_MS);
        struct raw_head head;
        assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
        if (head.status != 101)
            fail_msg("%s: the first head is %d, not the 101", no_interim_rows[i].why, head.status);
        raw_head_free(&head);
        /* and the tunnel works */
        assert_int_equal(write(ofd, "up", 2), 2);
        char got[2];
        short rev;
        assert_int_equal(tu_poll_until(raw_fd(c), POLLIN, tu_now_ms() + PX_IO_MS, &rev), 1);
        assert_int_equal(read(raw_fd(c), got, sizeof(got)), 2);
        assert_memory_equal(got, "up", 2);
        raw_close(c);
        close(ofd);
        close(lfd);
        px_stop(h);
    }
}

/* A 101 must name, in its Upgrade, the protocol the client offered (RFC 9110 7.8): without
 * one, or switching to another (h2c to a WebSocket request), it would open a tunnel to what the
 * client never asked for: 502 invalid_response. A name in another case is the same name. */
static const struct {
    const char *why;
    const char *answer;
    int status;
} switch_rows[] = {
    {"no Upgrade field", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", 502},
    {"h2c to a websocket request",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 502},
    {"another protocol",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/1\r\nConnection: Upgrade\r\n\r\n", 502},
    {"websocket in another case",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n",
     101},
};

static void test_switch_to_offered_only(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(switch_rows); i++) {
        uint16_t oport;
        int lfd = raw_origin_listen(&oport);
        struct harness *h = px_start(NULL, "[upstream u]\norigin = 127.0.0.1:%u\n", oport);
        struct raw_conn *c = px_connect(h);
        assert_int_equal(raw_send_str(c, "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                                         "Connection: Upgrade\r\n\r\n"),
                         0);
        int ofd = raw_origin_answer(lfd, 0, switch_rows[i].answer);
        struct raw_head head;
        assert_int_equal(raw_read_one_head(c, &head, PX_IO_MS), 0);
        if (head.status != switch_rows[i].status)
            fail_msg("%s: %d, want %d", switch_rows[i].why, head.status, switch_rows[i].status);
        raw_head_free(&head);
        raw_close(c);
        close(ofd);
        close(lfd);
        px_stop(h);
    }
}

/* ---- the tunnel's access-log line ---- */

/* The access line of an upgraded connection is written when its tunnel ends, as nginx writes
 * it when the connection closes: bytes_in and bytes_out count what crossed the tunnel each way
 * (as portico_tunnel_{client,origin}_bytes_total do), timing_ms.tunnel is how long it lived
 * and total runs to its end, in both formats. The line was the 101's, written when the tunnel
 * began: 0 bytes each way and the time to the 101, whatever the tunnel then carried. */
#define LOGGED_UP 123457       /* client to origin: below the tunnel's 256 KiB mark */
#define LOGGED_DOWN 1234567    /* origin to client: past it, back-pressure on the way */

static const struct {
    const char *format;
} logged_rows[] = {
    {"text"},
    {"json"},
};

/* Moves len bytes from the non-blocking fd `from` to `to` through the tunnel, reading them as
 * they come so that neither side's buffers bound len. Returns when the first of them arrived
 * (tu_now_ms). */
static int64_t cross(int from, int to, size_t len)
{
    int64_t first = -1;
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    size_t sent = 0, got = 0;
    int64_t deadline = tu_now_ms() + 2 * PX_IO_MS;
    while (got < len) {
        struct pollfd p[2] = {{.fd = to, .events = POLLIN},
                              {.fd = from, .events = sent < len ? POLLOUT : 0}};
        int left = (int)(deadline - tu_now_ms());
        if (left <= 0 || poll(p, 2, left) <= 0)
            fail_msg("%zu of %zu bytes sent, %zu arrived", sent, len, got);
        if (p[1].revents & POLLOUT) {
            ssize_t n = write(from, chunk, len - sent < sizeof(chunk) ? len - sent : sizeof(chunk));
            assert_true(n > 0 || errno == EAGAIN);
            sent += n > 0 ? (size_t)n : 0;
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(to, chunk, sizeof(chunk));
            if (n <= 0 && !(n < 0 && errno == EAGAIN))
                fail_msg("the tunnel closed after %zu of %zu bytes", got, len);
            got += n > 0 ? (size_t)n : 0;
            if (n > 0 && first < 0)
                first = tu_now_ms();
        }
    }
    assert_int_equal(got, len);
    return first;
}

static void test_tunnel_logged(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(logged_rows); i++) {
        const char *format = logged_rows[i].format;
        uint16_t oport;
        int lfd = raw_origin_listen(&oport);
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                              "workers = 1\nadmin_listen = 127.0.0.1:{{port:admin}}\n"
                                              "access_log = {{dir}}/access.log\n"
                                              "access_log_format = %s\n"
                                              "[upstream u]\norigin = 127.0.0.1:%u\n",
                                              format, oport),
                         0);
        if (harness_start(h) != 0)
            fail_msg("portico did not start: %s", harness_error(h));
        int64_t asked = tu_now_ms();
        int ofd;
        struct raw_conn *c = open_tunnel(h, lfd, "/logged", &ofd);
        int cfd = raw_fd(c);
        assert_int_equal(fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK), 0);
        int64_t relayed = cross(cfd, ofd, LOGGED_UP); /* the tunnel was open before this */
        cross(ofd, cfd, LOGGED_DOWN);
        /* the client closes its half, the origin sees it and closes: the tunnel's end */
        assert_int_equal(shutdown(cfd, SHUT_WR), 0);
        int64_t closing = tu_now_ms(); /* the tunnel ends after this */
        size_t extra = 0;
        bool reset = false;
        assert_int_equal(read_until_closed(ofd, PX_IO_MS, &extra, &reset), 1);
        close(ofd);
        assert_int_equal(read_until_closed(cfd, PX_IO_MS, &extra, &reset), 1);
        assert_int_equal(extra, 0);
        raw_close(c);
        uint16_t admin = harness_port(h, "admin");
        double from_client = scrape_metric(admin, "portico_tunnel_client_bytes_total", PX_IO_MS);
        double from_origin = scrape_metric(admin, "portico_tunnel_origin_bytes_total", PX_IO_MS);
        assert_true(from_client == LOGGED_UP && from_origin == LOGGED_DOWN);
        /* the line, complete once Portico has stopped (lines go out once a second) */
        assert_int_equal(harness_stop(h), 0);
        int64_t stopped = tu_now_ms();
        double bytes_in = -1, bytes_out = -1, tunnel_ms = -1, total_ms = -1;
        int status = 0;
        bool said_end = false; /* how the tunnel ended, in detail */
        char *line = px_log_line(h, "/logged");
        if (strcmp(format, "json") == 0) {
            char err[128];
            struct tj *j = tj_parse(line, err, sizeof(err));
            if (!j)
                fail_msg("not JSON (%s): %s", err, line);
            double v = 0;
            tj_num(j, "status", &v);
            status = (int)v;
            tj_num(j, "bytes_in", &bytes_in);
            tj_num(j, "bytes_out", &bytes_out);
            tj_num(j, "timing_ms.tunnel", &tunnel_ms);
            tj_num(j, "timing_ms.total", &total_ms);
            said_end = tj_str(j, "detail") && strcmp(tj_str(j, "detail"), "tunnel: client closed") == 0;
            tj_free(j);
        } else {
            const char *p;
            if ((p = strstr(line, " status=")))
                status = atoi(p + 8);
            if ((p = strstr(line, " bytes_in=")))
                bytes_in = strtod(p + 10, NULL);
            if ((p = strstr(line, " bytes_out=")))
                bytes_out = strtod(p + 11, NULL);
            if ((p = strstr(line, " dur_ms=")))
                total_ms = strtod(p + 8, NULL);
            if ((p = strstr(line, " timing=")) && (p = strstr(p, "tunnel:")))
                tunnel_ms = strtod(p + 7, NULL);
            said_end = strstr(line, " detail=\"tunnel: client closed\"") != NULL;
        }
        print_message("  %s\n", line);
        print_message("  %s: %d B up, %d B down through a tunnel of %lld..%lld ms; the line says "
                      "status %d, bytes_in %.0f, bytes_out %.0f, tunnel %.3f ms, total %.3f ms\n",
                      format, LOGGED_UP, LOGGED_DOWN, (long long)(closing - relayed),
                      (long long)(stopped - asked), status, bytes_in, bytes_out, tunnel_ms,
                      total_ms);
        if (bytes_in != LOGGED_UP || bytes_out != LOGGED_DOWN)
            fail_msg("%s: the line says %.0f bytes in, %.0f out: %s", format, bytes_in, bytes_out,
                     line);
        assert_int_equal(status, 101);
        assert_true(said_end);
        /* it lived from before its first byte reached the origin until after the client's close
         * (- 1: ms rounding), within what the test saw from its request to the stop */
        assert_true(tunnel_ms >= (double)(closing - relayed) - 1);
        assert_true(total_ms >= tunnel_ms && total_ms <= (double)(stopped - asked) + 1);
        free(line);
        harness_free(h);
        close(lfd);
    }
}

int main(void)
{
    tu_ignore_sigpipe();
    /* TEST_FILTER=test_last* runs the matching tests only */
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_cut_by_drain_deadline),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_no_upgrade),
        cmocka_unit_test(test_upgrade_empty_length),
        cmocka_unit_test(test_last_bytes_before_close),
        cmocka_unit_test(test_stalled_client_ends_tunnel),
        cmocka_unit_test(test_last_bytes_before_reset),
        cmocka_unit_test(test_switch_then_reset),
        cmocka_unit_test(test_stream_then_reset),
        cmocka_unit_test(test_half_close_other_way_goes_on),
        cmocka_unit_test(test_half_closed_tunnel_ends),
        cmocka_unit_test(test_slow_reader_not_idle),
        cmocka_unit_test(test_upgrade_no_interim),
        cmocka_unit_test(test_switch_to_offered_only),
        cmocka_unit_test(test_tunnel_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
