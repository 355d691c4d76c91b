/*
 * test_sim_endpoints.c — issue 8, "Simulator": each endpoint of the built-in simulator that
 * rehearses an origin's behaviour, through the real proxy (`origin = sim`), showing what
 * Portico makes of it: the status the client gets, the failure type in Portico-Error and in the
 * access log. One Portico serves every test, with short first_byte and read timeouts. The
 * access-log lines are read by the last test, once Portico has stopped: a worker writes its
 * buffered lines once a second and when it exits, so waiting for each as its case ends took a
 * second per case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "../support/harness.h"
#include "../support/oom.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define FIRST_BYTE_MS 400
#define READ_MS 400
#define SIM_LIMIT_MS 300 /* the [proxy] client timeouts of test_sim_client_timeouts */

struct sim_case {
    const char *id;          /* X-Request-Id of the request, to find its log line */
    const char *path;
    int status;              /* what the client gets */
    const char *failure;     /* Portico-Error and failure= in the log; NULL: none */
    size_t body_len;         /* exact body length of a success, 0: not checked */
    int min_ms;              /* the final head (or the whole body) takes at least this long */
};

/* One row per endpoint; why each ends the way it does is in the comment. */
static struct sim_case cases[] = { /* not const: cmocka passes rows as void * states */
    /* 6 bytes spread over 600 ms: gaps of 100 ms, below read_timeout; the body is complete */
    { "simdrip", "/drip?bytes=6&duration_ms=600", 200, NULL, 6, 600 },
    /* a delayed status is the origin's answer, not a Portico error */
    { "simstatus", "/status/503?delay_ms=200", 503, NULL, 0, 200 },
    /* FIN before any byte: the origin accepted the request and said nothing */
    { "simclose", "/close", 502, "empty_response", 0, 0 },
    /* RST before any byte */
    { "simreset", "/reset", 502, "connection_reset", 0, 0 },
    /* bytes that are no status line */
    { "simgarbage", "/garbage", 502, "invalid_response", 0, 0 },
    /* the first bytes came, the rest of the head never does */
    { "simpartial", "/partial", 504, "read_timeout", 0, READ_MS },
    /* not a byte after the request: the first-byte timer fires */
    { "simhang", "/hang", 504, "first_byte_timeout", 0, FIRST_BYTE_MS },
};

static struct harness *portico;

static int start_portico(void **state)
{
    (void)state;
    char timers[128];
    snprintf(timers, sizeof(timers), "first_byte_timeout = %dms\nread_timeout = %dms\n",
             FIRST_BYTE_MS, READ_MS);
    portico = px_start(NULL, "[upstream u]\norigin = sim\n%s", timers);
    return 0;
}

static int stop_portico(void **state)
{
    (void)state;
    px_stop(portico);
    return 0;
}

static void run_case(void **state)
{
    const struct sim_case *k = *state;
    char req[256];
    struct raw_response r;
    struct raw_conn *c = px_connect(portico);

    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: sim\r\nX-Request-Id: %s\r\n\r\n",
             k->path, k->id);
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, req), 0);
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("%s: no complete response: %s", k->path, r.error);
    int64_t done = tu_now_ms();
    if (r.status != k->status)
        fail_msg("%s: status %d, want %d; body: %s", k->path, r.status, k->status, r.body);
    const char *err = raw_header(&r, "Portico-Error");
    if (k->failure) {
        if (!err || strcmp(err, k->failure) != 0)
            fail_msg("%s: Portico-Error %s, want %s", k->path, err ? err : "(none)",
                     k->failure);
        assert_true(r.head.at_ms - t0 >= k->min_ms);
    } else {
        assert_null(err);
        assert_string_equal(raw_header(&r, "Via"), "1.1 portico");
        if (k->body_len)
            assert_int_equal(r.body_len, k->body_len);
        assert_true(done - t0 >= k->min_ms);
    }
    raw_response_free(&r);
    raw_close(c);
}

/* The access log tells the same story: case k's line (Portico has stopped). */
static void check_log_line(const struct sim_case *k)
{
    char field[64];
    char *line = px_log_line_for_id(portico, k->id);
    snprintf(field, sizeof(field), " status=%d ", k->status);
    if (!tu_contains(line, field))
        fail_msg("%s: log line lacks \"%s\": %s", k->path, field, line);
    if (k->failure) {
        snprintf(field, sizeof(field), " failure=%s ", k->failure);
        if (!tu_contains(line, field))
            fail_msg("%s: log line lacks \"%s\": %s", k->path, field, line);
    } else {
        assert_false(tu_contains(line, " failure="));
    }
    free(line);
}

/* A drip slower than read_timeout between bytes: the head went out, so the status stays 200 and
 * the body is cut short, logged as a read_timeout after the head. */
static void test_drip_too_slow(void **state)
{
    (void)state;
    struct raw_conn *c = px_connect(portico);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /drip?bytes=2&duration_ms=2000 HTTP/1.1\r\n"
                                     "Host: sim\r\nX-Request-Id: simslowdrip\r\n\r\n"),
                     0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), -1);
    assert_int_equal(r.status, 200);
    assert_true(r.truncated);
    assert_int_equal(r.body_len, 0);
    raw_response_free(&r);
    raw_close(c);
}

/* A request head Portico accepts (under its default max_header_size, 16 KiB) reaches the
 * simulator with Portico's own fields added (X-Forwarded-*, X-Request-Id, traceparent, Via:
 * ~250 bytes more), and the simulator answers it: before, it refused every head over 16 KiB, so a
 * client head of 16,300 bytes got the simulator's 431 through `origin = sim`. */
/* A GET /status/200 head of exactly `bytes` bytes, padded by one field (malloc'd). */
static char *padded_head(size_t bytes)
{
    static const char start[] = "GET /status/200 HTTP/1.1\r\nHost: sim\r\nX-Pad: ";
    char *req = malloc(bytes + 1);
    assert_non_null(req);
    size_t pad = bytes - (sizeof(start) - 1) - 4;
    memcpy(req, start, sizeof(start) - 1);
    memset(req + sizeof(start) - 1, 'p', pad);
    memcpy(req + sizeof(start) - 1 + pad, "\r\n\r\n", 5);
    assert_int_equal(strlen(req), bytes);
    return req;
}

static void test_head_portico_accepts(void **state)
{
    (void)state;
    enum { HEAD_BYTES = 16300 }; /* below max_header_size = 16k (16,384) */
    char *req = padded_head(HEAD_BYTES);

    struct raw_conn *c = px_connect(portico);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    if (r.status != 200)
        fail_msg("a %d-byte head: status %d from %s, want 200; body: %s", HEAD_BYTES, r.status,
                 raw_header(&r, "Server"), r.body);
    raw_response_free(&r);
    raw_close(c);
    free(req);
}

/* 100 fields, as many as Portico takes (H1_MAX_FIELDS), reach the simulator as 106 with
 * X-Forwarded-For/-Proto/-Host, X-Request-Id, traceparent and Via; the simulator answers them:
 * before, it stopped at 100 fields, so 95 to 100 client fields got its 431 through origin = sim. */
static void test_fields_portico_accepts(void **state)
{
    (void)state;
    enum { FIELDS = 100 }; /* Host and 99 others */
    char *req = malloc(64 + FIELDS * 16);
    assert_non_null(req);
    int n = sprintf(req, "GET /status/200 HTTP/1.1\r\nHost: sim\r\n");
    for (int i = 1; i < FIELDS; i++)
        n += sprintf(req + n, "X-F%03d: y\r\n", i);
    strcpy(req + n, "\r\n");

    struct raw_conn *c = px_connect(portico);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    if (r.status != 200)
        fail_msg("%d fields: status %d from %s, want 200; body: %s", FIELDS, r.status,
                 raw_header(&r, "Server"), r.body);
    raw_response_free(&r);
    raw_close(c);
    free(req);
}

/* The simulator's own port, from Portico's start-up line. */
static uint16_t sim_port_of(struct harness *h)
{
    static const char needle[] = "simulator origin on 127.0.0.1:";
    assert_int_equal(harness_wait_log(h, needle, PX_IO_MS), 0);
    char *err = harness_stderr(h);
    const char *p = err ? strstr(err, needle) : NULL;
    assert_non_null(p);
    unsigned port = (unsigned)strtoul(p + sizeof(needle) - 1, NULL, 10);
    free(err);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

/* A head of `bytes` bytes straight to the simulator's port; the status it answers. */
static int sim_head_status(uint16_t port, size_t bytes)
{
    char *req = padded_head(bytes);
    struct raw_conn *c = px_connect_port(port);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_string_equal(raw_header(&r, "Server"), "portico-sim");
    int status = r.status;
    raw_response_free(&r);
    raw_close(c);
    free(req);
    return status;
}

/* The simulator takes a head as long as what Portico forwards under its max_header_size (16k:
 * twice that, the Host copied into X-Forwarded-Host, and 4 KiB for the fields it adds), no
 * longer: before, a client straight to its port could have it hold 2 MiB per connection
 * whatever the configuration (200 of them: 240 MB of Portico's RSS). */
static void test_sim_head_bound(void **state)
{
    (void)state;
    enum { BOUND = 2 * 16384 + 4096 };
    uint16_t port = sim_port_of(portico);
    assert_int_equal(sim_head_status(port, BOUND), 200);
    assert_int_equal(sim_head_status(port, BOUND + 1), 431);
    assert_int_equal(sim_head_status(port, 1000000), 431);
}

/* Waits for the simulator to close c; the milliseconds from since to the close. Fails the test
 * when c is still open after PX_IO_MS (the simulator kept it). */
static int64_t closed_after(struct raw_conn *c, int64_t since, const char *what)
{
    if (raw_wait_closed(c, PX_IO_MS) != 1)
        fail_msg("%s: the simulator kept the connection open %d ms", what, PX_IO_MS);
    return tu_now_ms() - since;
}

/* Reads c's next response (408 expected) and its close. */
static void expect_408_close(struct raw_conn *c, int64_t since, const char *what)
{
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("%s: no 408 within %d ms: %s", what, PX_IO_MS, r.error);
    if (r.status != 408)
        fail_msg("%s: status %d, want 408", what, r.status);
    assert_string_equal(raw_header(&r, "Connection"), "close");
    raw_response_free(&r);
    assert_true(closed_after(c, since, what) >= SIM_LIMIT_MS);
}

/* Connections straight to the simulator keep the [proxy] client timeouts, as Portico's own
 * listener does: a connection that sends nothing, or half a head, gets 408 after
 * client_header_timeout; one idle between requests closes after keepalive_timeout; a request
 * body that stops coming gets 408 after client_body_timeout; a client that stops reading is
 * dropped after client_send_timeout. Before, every one of them was held for as long as the
 * client stayed (a descriptor of the Portico process each, forever). */
static void test_sim_client_timeouts(void **state)
{
    (void)state;
    char extra[256];
    snprintf(extra, sizeof(extra),
             "client_header_timeout = %dms\nclient_body_timeout = %dms\n"
             "client_send_timeout = %dms\nkeepalive_timeout = %dms\n",
             SIM_LIMIT_MS, SIM_LIMIT_MS, SIM_LIMIT_MS, SIM_LIMIT_MS);
    setenv("PORTICO_SIM_DEBUG", "1", 1); /* each close of the simulator's on stderr, with why */
    struct harness *h = px_start(extra, "[upstream u]\norigin = sim\n");
    unsetenv("PORTICO_SIM_DEBUG");
    uint16_t port = sim_port_of(h);

    /* nothing at all after the accept */
    int64_t t0 = tu_now_ms();
    struct raw_conn *c = px_connect_port(port);
    expect_408_close(c, t0, "a connection that sends nothing");
    raw_close(c);

    /* half a head, never finished */
    c = px_connect_port(port);
    t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, "GET /status/200 HTTP/1.1\r\nHost: si"), 0);
    expect_408_close(c, t0, "half a head");
    raw_close(c);

    /* idle after an answer: closed quietly, no byte */
    c = px_connect_port(port);
    struct raw_response r;
    /* the idle wait starts once the answer is queued, after the request went: a lower bound
     * that a slow read of the answer (a loaded machine) cannot break */
    t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, "GET /status/201 HTTP/1.1\r\nHost: sim\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 201);
    assert_null(raw_header(&r, "Connection")); /* keep-alive: the wait is the idle one */
    raw_response_free(&r);
    assert_true(closed_after(c, t0, "an idle keep-alive connection") >= SIM_LIMIT_MS);
    size_t n = 0;
    char *rest = raw_read_all(c, PX_IO_MS, &n);
    assert_int_equal(n, 0);
    free(rest);
    raw_close(c);

    /* a body announced and never sent whole */
    c = px_connect_port(port);
    assert_int_equal(raw_send_str(c, "POST /status/200 HTTP/1.1\r\nHost: sim\r\n"
                                     "Content-Length: 10\r\n\r\nabc"),
                     0);
    t0 = tu_now_ms();
    expect_408_close(c, t0, "a body that stops coming");
    raw_close(c);

    /* a client that never reads a large body: dropped, not held. It must not read to see the
     * close, so the simulator's debug line says when it came */
    c = px_connect_port(port);
    assert_int_equal(raw_send_str(c, "GET /bytes/1000000000 HTTP/1.1\r\nHost: sim\r\n\r\n"), 0);
    t0 = tu_now_ms();
    if (harness_wait_log(h, "closed: client did not read within client_send_timeout",
                         PX_IO_MS) != 0)
        fail_msg("a client that does not read: still served after %d ms", PX_IO_MS);
    assert_true(tu_now_ms() - t0 >= SIM_LIMIT_MS);
    rest = raw_read_all(c, PX_IO_MS, &n); /* what the kernels held, then EOF */
    assert_true(raw_peer_closed(c));
    assert_true(n < 1000000000 / 10);
    free(rest);
    raw_close(c);

    /* through Portico nothing changed: the pool's connection is reused within the timeout */
    c = px_connect(h);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(raw_send_str(c, "GET /status/202 HTTP/1.1\r\nHost: sim\r\n\r\n"), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 202);
        raw_response_free(&r);
    }
    raw_close(c);
    px_stop(h);
}

/* keepalive_timeout = 0 is no keep-alive on the simulator's connections either, said as on
 * Portico's listener: Connection: close, then the close. Before, it kept every connection. */
static void test_sim_no_keepalive(void **state)
{
    (void)state;
    struct harness *h = px_start("keepalive_timeout = 0\n", "[upstream u]\norigin = sim\n");
    struct raw_conn *c = px_connect_port(sim_port_of(h));
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /status/200 HTTP/1.1\r\nHost: sim\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    const char *conn = raw_header(&r, "Connection");
    if (!conn || strcmp(conn, "close") != 0)
        fail_msg("Connection: %s, want close", conn ? conn : "(none)");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    raw_close(c);
    px_stop(h);
}

/* Downloads whose clients never read, straight to the simulator, beside which fresh GETs go
 * through Portico. The fresh GETs clock the simulator's one loop: each is at least a turn of
 * it, and before, every turn wrote 64 KiB more into each unread download's socket, whose send
 * buffer autotuned up to tcp_wmem's max (4 MiB on loopback). */
#define UNREAD_CONNS 100
#define UNREAD_BODY "8000000"
#define FRESH_GETS 20
/* What the kernel may hold unsent for an unread download: SIM_NOTSENT_LOWAT (64 KiB) and one
 * write of up to 64 KiB after it, with room to spare; before, 1-4 MB. */
#define UNREAD_QUEUED_MAX (256 << 10)
/* A fresh GET's first byte beside them, generous for ASan and a busy machine (a few ms plain).
 * With 999 unread downloads of 8 MB, the old code made one wait 0.07-1.9 s while it filled
 * their sockets to the host's TCP memory pressure (1.5 GB), a load this test does not put on a
 * shared machine: it measures the cause instead, the bytes queued, which the old code let grow
 * by 64 KiB a connection at every turn of its loop. */
#define FRESH_FIRST_BYTE_MS 250

/* The local port of c's socket. */
static unsigned local_port(const struct raw_conn *c)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(raw_fd(c), (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* Bytes the simulator's sockets (local port sim) hold unsent or unacknowledged towards the
 * clients at the local ports `peers`, summed: tx_queue of /proc/net/tcp. */
static long sim_queued(unsigned sim, const unsigned *peers, size_t npeers)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    assert_non_null(f);
    char line[256];
    long sum = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned lport, rport, st;
        unsigned long tx;
        if (sscanf(line, " %*u: %*x:%x %*x:%x %x %lx:%*x", &lport, &rport, &st, &tx) != 4 ||
            lport != sim)
            continue;
        for (size_t i = 0; i < npeers; i++)
            if (peers[i] == rport)
                sum += (long)tx;
    }
    fclose(f);
    return sum;
}

/* A client that stops reading costs its own connection, not the simulator's others: beside
 * UNREAD_CONNS downloads of 8 MB that are never read, the simulator holds a bounded amount for
 * each (before: until its kernel send buffer, autotuning, reached 4 MiB), and FRESH_GETS
 * through Portico each get their first byte in time. */
static void test_sim_unread_downloads(void **state)
{
    (void)state;
    uint16_t sim = sim_port_of(portico);
    int64_t start = tu_now_ms();
    static struct raw_conn *unread[UNREAD_CONNS];
    static unsigned ports[UNREAD_CONNS];
    for (int i = 0; i < UNREAD_CONNS; i++) {
        unread[i] = px_connect_port(sim);
        ports[i] = local_port(unread[i]);
        assert_int_equal(raw_send_str(unread[i], "GET /bytes/" UNREAD_BODY " HTTP/1.1\r\n"
                                                 "Host: sim\r\n\r\n"),
                         0);
    }
    /* each download has begun (its head came, with what the read took of its body) */
    for (int i = 0; i < UNREAD_CONNS; i++) {
        struct raw_head hd;
        assert_int_equal(raw_read_one_head(unread[i], &hd, PX_IO_MS), 0);
        assert_int_equal(hd.status, 200);
        raw_head_free(&hd);
    }
    struct raw_conn *c = px_connect(portico);
    int64_t worst = 0;
    for (int i = 0; i < FRESH_GETS; i++) {
        struct raw_response r;
        int64_t t0 = tu_now_ms();
        assert_int_equal(raw_send_str(c, "GET /status/200 HTTP/1.1\r\nHost: sim\r\n\r\n"), 0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        if (r.first_byte_ms - t0 > worst)
            worst = r.first_byte_ms - t0;
        raw_response_free(&r);
    }
    raw_close(c);
    long queued = sim_queued(sim, ports, UNREAD_CONNS);
    print_message("%d unread downloads: the simulator holds %ld kB for them (%ld kB each); "
                  "%d fresh GETs, slowest first byte %lld ms (%lld ms in all)\n",
                  UNREAD_CONNS, queued / 1000, queued / 1000 / UNREAD_CONNS, FRESH_GETS,
                  (long long)worst, (long long)(tu_now_ms() - start));
    for (int i = 0; i < UNREAD_CONNS; i++)
        raw_abort(unread[i]);
    if (queued > (long)UNREAD_CONNS * UNREAD_QUEUED_MAX)
        fail_msg("the simulator queued %ld bytes for %d unread downloads (at most %d each)",
                 queued, UNREAD_CONNS, UNREAD_QUEUED_MAX);
    if (worst > FRESH_FIRST_BYTE_MS)
        fail_msg("a fresh GET beside %d unread downloads: first byte after %lld ms (at most %d)",
                 UNREAD_CONNS, (long long)worst, FRESH_FIRST_BYTE_MS);
}

#define OOM_CHUNKS 16
#define OOM_CHUNK 4096

/* The echo of a chunked body that finds no memory to frame a chunk (an allocation libevent
 * makes for body_step made to fail: tests/support/oom.h) is cut where it stands and its
 * connection closed: the client has a 200 whose chunked body never ends, then the close, never
 * a chunk it would misread, nor a wait. The simulator serves the next connection. */
static void test_sim_echo_out_of_memory(void **state)
{
    (void)state;
    if (!oom_possible())
        skip(); /* PORTICO_BIN is valgrind's wrapper (scripts/valgrind.sh) */
    char err[256];
    /* body_step -> evbuffer_add_printf / evbuffer_remove_buffer -> ... -> evmem -> malloc */
    if (oom_arm("body_step", 12, 0, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    struct harness *h = px_start(NULL, "[upstream u]\norigin = sim\n");
    oom_disarm();
    uint16_t port = sim_port_of(h);
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: sim\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    size_t cap = sizeof(head) + OOM_CHUNKS * (OOM_CHUNK + 16) + 8, len = 0;
    char *req = malloc(cap);
    assert_non_null(req);
    len += (size_t)snprintf(req, cap, "%s", head);
    for (int i = 0; i < OOM_CHUNKS; i++) {
        len += (size_t)snprintf(req + len, cap - len, "%x\r\n", OOM_CHUNK);
        memset(req + len, 'a' + i, OOM_CHUNK);
        len += OOM_CHUNK;
        len += (size_t)snprintf(req + len, cap - len, "\r\n");
    }
    len += (size_t)snprintf(req + len, cap - len, "0\r\n\r\n");
    struct raw_conn *c = px_connect_port(port);
    assert_int_equal(raw_send(c, req, len), 0);
    free(req);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), -1);
    if (r.status != 200 || !r.truncated || !r.peer_closed || r.timed_out ||
        r.body_len >= len)
        fail_msg("status %d, truncated %d, closed %d, timed out %d, %zu bytes of body",
                 r.status, r.truncated, r.peer_closed, r.timed_out, r.body_len);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(harness_wait_log(h, "oom_preload: an allocation made to fail", PX_IO_MS),
                     0);
    c = px_connect_port(port);
    assert_int_equal(raw_send_str(c, "GET /status/200 HTTP/1.1\r\nHost: sim\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
}

/* Last: stops Portico (the group teardown only frees it) and reads every case's line. */
static void test_access_log_lines(void **state)
{
    (void)state;
    assert_int_equal(harness_stop(portico), 0);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        check_log_line(&cases[i]);
    char *line = px_log_line_for_id(portico, "simslowdrip");
    assert_true(tu_contains(line, " failure=read_timeout "));
    assert_true(tu_contains(line, " aborted=after_head"));
    free(line);
}

int main(void)
{
    tu_test_filter();
    /* one test per endpoint, named by its path */
    struct CMUnitTest tests[ARRAY_SIZE(cases) + 9];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        tests[i] = (struct CMUnitTest)cmocka_unit_test_prestate(run_case, &cases[i]);
        tests[i].name = cases[i].path;
    }
    tests[ARRAY_SIZE(cases)] = (struct CMUnitTest)cmocka_unit_test(test_drip_too_slow);
    tests[ARRAY_SIZE(cases) + 1] = (struct CMUnitTest)cmocka_unit_test(test_head_portico_accepts);
    tests[ARRAY_SIZE(cases) + 2] = (struct CMUnitTest)cmocka_unit_test(test_fields_portico_accepts);
    tests[ARRAY_SIZE(cases) + 3] = (struct CMUnitTest)cmocka_unit_test(test_sim_client_timeouts);
    tests[ARRAY_SIZE(cases) + 4] = (struct CMUnitTest)cmocka_unit_test(test_sim_no_keepalive);
    tests[ARRAY_SIZE(cases) + 5] = (struct CMUnitTest)cmocka_unit_test(test_sim_unread_downloads);
    tests[ARRAY_SIZE(cases) + 6] = (struct CMUnitTest)cmocka_unit_test(test_sim_head_bound);
    tests[ARRAY_SIZE(cases) + 7] =
        (struct CMUnitTest)cmocka_unit_test_teardown(test_sim_echo_out_of_memory, oom_teardown);
    tests[ARRAY_SIZE(cases) + 8] = (struct CMUnitTest)cmocka_unit_test(test_access_log_lines);
    return cmocka_run_group_tests(tests, start_portico, stop_portico);
}
