/*
 * test_client_watch.c — when Portico watches a plain HTTP/1.1 client: it reads at the accept,
 * and a request read whole there leaves its client unwatched (not in any epoll set of Portico)
 * for 5 ms of its exchange (client.c, watch_later), so that a quick answer and the close cost no
 * epoll_ctl. What must hold all the same: a client that leaves while the origin is silent is
 * seen, its origin connection closed and the exchange logged 499, whether its request was read
 * at the accept (the hit) or the read there found nothing (the miss: then it waits for its
 * request in the worker's own epoll, armed once, and a client that closes there, or whose
 * client_header_timeout passes there, leaves no descriptor behind); a second request pipelined behind the first, in the same read or later, is answered;
 * a POST whose body comes after the accept gets it through; a keep-alive request after a quick
 * answer is read and answered; a client that reset before a quick answer is logged 499, as a
 * watched one is, and the origin connection that answered is kept.
 *
 * The hit is made certain by stopping Portico (SIGSTOP) while the client connects and sends:
 * the accept then finds the bytes. Whether Portico watches the client is read from /proc: the
 * inode of Portico's side of the connection (sock_diag) among the targets that the fdinfo of
 * each of its epoll descriptors lists. The origin holds each request until the test opens its
 * gate, or until Portico closes the origin connection (the exchange cancelled), which it notes.
 */
#include <dirent.h>
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
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <cmocka.h>

#include "proxy_helpers.h"

#define IO_MS PX_IO_MS
#define WATCH_LATER_MS 5 /* client.c: a request read whole at the accept, unwatched this long */

#define GET(path, id) "GET " path " HTTP/1.1\r\nHost: a\r\nX-Request-Id: " id "\r\n\r\n"

/* ---- the origin: holds a request until the gate opens or Portico closes its connection ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate[2];       /* a byte in it opens the gate, for every request held */
    unsigned gone;     /* origin connections Portico closed while a request was held */
} org = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {-1, -1}, 0};

/* FO_CALL: waits (bounded) for the gate (0: answer) or for Portico's close (-1: the exchange
 * was cancelled; counted). */
static int hold(int fd, void *arg)
{
    (void)arg;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = org.gate[0], .events = POLLIN}};
    if (poll(p, 2, IO_MS) <= 0 || (p[1].revents & POLLIN))
        return 0;
    char b;
    if (recv(fd, &b, 1, MSG_DONTWAIT) > 0)
        return 0; /* bytes, not an end: nothing this test sends */
    pthread_mutex_lock(&org.mu);
    org.gone++;
    pthread_cond_broadcast(&org.cv);
    pthread_mutex_unlock(&org.mu);
    return -1;
}

/* Waits (bounded) until Portico closed n held origin connections. */
static int wait_gone(unsigned n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += IO_MS / 1000;
    pthread_mutex_lock(&org.mu);
    int rc = 0;
    while (org.gone < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&org.cv, &org.mu, &until);
    unsigned gone = org.gone;
    pthread_mutex_unlock(&org.mu);
    return gone >= n ? 0 : -1;
}

static void open_gate(void)
{
    assert_int_equal(write(org.gate[1], "g", 1), 1);
}

static const struct fo_step held[] = {FO_CALL(hold, NULL), FO_RESPOND(200, NULL, "held\n",
                                                                       FO_LENGTH), FO_END()};
static const struct fo_step at_once[] = {FO_RESPOND(200, NULL, "second\n", FO_LENGTH), FO_END()};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    return strstr(req->head, " /second ") ? at_once : held;
}

static struct {
    struct fake_origin *o;
    struct harness *h;
} fx;

/* Portico (one worker, keepalive = 0: a fresh origin connection per request, so the request
 * reaches the origin only after a loop turn) before the holding origin. */
static void start_pooled(unsigned keepalive)
{
    assert_int_equal(pipe(org.gate), 0);
    org.gone = 0;
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .pick_script = pick};
    fx.o = fake_origin_start(&o);
    assert_non_null(fx.o);
    /* settle_time = 0: a released origin connection serves the next client at once */
    fx.h = px_start("", "[upstream u]\norigin = 127.0.0.1:%u\nkeepalive = %u\nsettle_time = 0\n",
                    fake_origin_port(fx.o), keepalive);
}

static void start(void)
{
    start_pooled(0);
}

/* Each test ends so: Portico stops cleanly (under ASan or valgrind, no leak or bad access). */
static void stop(void)
{
    px_stop(fx.h);
    fx.h = NULL;
}

static int teardown(void **state)
{
    (void)state;
    if (fx.h)
        harness_signal(fx.h, SIGCONT); /* a failed row may have left it stopped */
    harness_free(fx.h);
    if (org.gate[1] >= 0)
        open_gate(); /* nothing stays held */
    fake_origin_stop(fx.o);
    for (int i = 0; i < 2; i++) {
        if (org.gate[i] >= 0)
            close(org.gate[i]);
        org.gate[i] = -1;
    }
    memset(&fx, 0, sizeof(fx));
    return 0;
}

/* ---- Portico's side of a connection ---- */


/* Waits (bounded) until the client's bytes are acknowledged: in Portico's socket, whatever
 * Portico does (it may be stopped). */
static void wait_acked(struct raw_conn *c)
{
    int queued = -1;
    for (int i = 0; i < IO_MS && ioctl(raw_fd(c), SIOCOUTQ, &queued) == 0 && queued > 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    assert_int_equal(queued, 0);
}

/* Of Portico's side of c: its inode (0 while it waits in the accept queue) and the bytes it
 * received and has not read, in *queued. */
static unsigned long portico_side(struct raw_conn *c, long *queued)
{
    struct nlmsghdr *h;
    struct inet_diag_msg *m = px_peer_diag(c, 0, &h);
    *queued = (long)m->idiag_rqueue;
    return m->idiag_inode;
}

/* Waits (bounded) until Portico watches (or, with want false, no longer watches) c; returns ms
 * after t0 it was first seen so. */
static int64_t wait_watched(struct raw_conn *c, bool want, int64_t t0)
{
    long queued;
    for (int64_t end = tu_now_ms() + IO_MS; tu_now_ms() < end;) {
        unsigned long ino = portico_side(c, &queued);
        if (ino && tu_epoll_watches(harness_pid(fx.h), ino) == want)
            return tu_now_ms() - t0;
        sched_yield();
    }
    fail_msg("Portico %s the client within %d ms", want ? "never watched" : "still watches",
             IO_MS);
    return -1;
}

/* The access line of rid: its status is `status`; returns its dur_ms. */
static double logged(const char *rid, int status)
{
    char *line = px_log_line_for_id(fx.h, rid);
    char want[32];
    snprintf(want, sizeof(want), " status=%d ", status);
    if (!strstr(line, want))
        fail_msg("%s: not%s: %s", rid, want, line);
    const char *dur = strstr(line, " dur_ms=");
    assert_non_null(dur);
    double ms = strtod(dur + 8, NULL);
    print_message("  %s\n", line);
    free(line);
    return ms;
}

/* A client connected and its bytes sent while Portico is stopped: the accept finds them. */
static struct raw_conn *sent_before_the_accept(const char *bytes, bool fin)
{
    assert_int_equal(px_sigstop(fx.h), 0);
    struct raw_conn *c = px_connect(fx.h);
    assert_int_equal(raw_send_str(c, bytes), 0);
    if (fin)
        assert_int_equal(raw_shutdown_write(c), 0);
    wait_acked(c);
    return c;
}

/* ---- tests ---- */

/* The hit, and the client's FIN came with its request: the read at the accept takes the
 * request, not the FIN (a short read ends it), and the client is first watched 5 ms on. The FIN
 * is seen then: the origin connection closed, 499 after 5 ms at least. Before (a client
 * watched from the accept, as the code before this one did), the FIN was seen in the next loop
 * turn, well within 5 ms. */
static void test_abort_read_at_accept(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = sent_before_the_accept(GET("/held", "cw-hit-fin"), true);
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    assert_int_equal(wait_gone(1), 0);
    double ms = logged("cw-hit-fin", 499);
    if (ms < WATCH_LATER_MS)
        fail_msg("the FIN was seen after %.3f ms: the client was watched from the accept", ms);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    raw_close(c);
    stop();
}

/* The hit, and the client reset its connection behind its request (before the accept): the
 * read at the accept takes the request (the reset is pending in the socket, unread), and the
 * origin answers at once, most likely within the 5 ms the client is not watched. The reset is
 * found by the answer's own send (ECONNRESET), before the line is logged: 499, nothing sent,
 * as for a watched client, whose reset epoll reports first; the origin's answer came, and the
 * line says so (upstream_status=200). Before, an answer within those 5 ms was logged 200 with
 * its bytes counted; then a getsockopt(SO_ERROR) before the head found the reset, at a system
 * call per such exchange, and the line had no upstream_status (the origin's head not taken). */
static void test_reset_before_a_quick_answer(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = sent_before_the_accept(GET("/second", "cw-rst"), false);
    raw_abort(c); /* RST, Portico stopped: it finds it only by asking, or by writing */
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    double ms = logged("cw-rst", 499);
    print_message("  logged after %.3f ms\n", ms);
    if (ms < WATCH_LATER_MS) { /* unwatched throughout: the send found the reset */
        char *line = px_log_line_for_id(fx.h, "cw-rst");
        if (!strstr(line, " upstream_status=200 ") || !strstr(line, " bytes_out=0 "))
            fail_msg("a reset found by the answer's send: %s", line);
        free(line);
    }
    stop();
}

/* The same reset, the origin's connection pooled: its answer came whole, so the connection
 * serves the next client's request (one origin connection for both). Before, the reset found
 * before the head (getsockopt) ended the exchange with the answer unread, and the connection
 * was closed: a second one was opened. */
static void test_reset_before_a_quick_answer_keeps_the_origin(void **state)
{
    (void)state;
    start_pooled(4);
    struct raw_conn *c = sent_before_the_accept(GET("/second", "cw-rst-pool"), false);
    raw_abort(c);
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    double ms = logged("cw-rst-pool", 499);
    struct raw_conn *next = px_connect(fx.h);
    struct raw_response r;
    assert_int_equal(raw_send_str(next, GET("/second", "cw-rst-next")), 0);
    assert_int_equal(raw_read_response(next, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(next);
    if (ms < WATCH_LATER_MS) /* else epoll saw the reset first: the exchange was cancelled */
        assert_int_equal(fake_origin_connections(fx.o), 1);
    stop();
}

/* The hit, and the client stays: Portico does not watch it while the origin holds the request
 * (when the test looks within those 5 ms: on a loaded host it may be too late to look), watches
 * it from 5 ms after the read, and sees it leave at once from then: 499, the origin connection
 * closed. */
static void test_watched_after_5_ms(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = sent_before_the_accept(GET("/held", "cw-hit"), false);
    int64_t t0 = tu_now_ms();
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    long queued = 1;
    unsigned long ino = 0;
    for (int64_t end = t0 + IO_MS; (!ino || queued) && tu_now_ms() < end;)
        ino = portico_side(c, &queued); /* accepted, and the request read */
    assert_true(ino && !queued);
    bool watched = tu_epoll_watches(harness_pid(fx.h), ino);
    int64_t looked = tu_now_ms() - t0;
    if (looked < WATCH_LATER_MS - 1 && watched)
        fail_msg("the client read at the accept was watched %lld ms after it", (long long)looked);
    int64_t at = wait_watched(c, true, t0);
    print_message("  request read %s; watched %lld ms after the accept's turn began\n",
                  looked < WATCH_LATER_MS - 1 ? "(looked in time: not watched)"
                                              : "(too late to look)",
                  (long long)at);
    assert_true(at >= WATCH_LATER_MS);
    assert_int_equal(fake_origin_wait_requests(fx.o, 1, IO_MS), 0);
    raw_close(c);
    assert_int_equal(wait_gone(1), 0);
    logged("cw-hit", 499);
    stop();
}

/* The miss: the read at the accept found nothing, the client waits in the worker's own epoll
 * (waitset.c), whose entry stays listed once it reported the request; the request, read whole
 * there, is then treated as one read at the accept (watched 5 ms on), and the FIN is seen:
 * 499, the origin connection closed. */
static void test_abort_after_a_read_that_found_nothing(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = px_connect(fx.h);
    wait_watched(c, true, tu_now_ms()); /* accepted, read (nothing), registered */
    assert_int_equal(raw_send_str(c, GET("/held", "cw-miss")), 0);
    assert_int_equal(fake_origin_wait_requests(fx.o, 1, IO_MS), 0);
    long queued;
    assert_true(tu_epoll_watches(harness_pid(fx.h), portico_side(c, &queued))); /* throughout */
    assert_int_equal(raw_shutdown_write(c), 0);
    assert_int_equal(wait_gone(1), 0);
    logged("cw-miss", 499);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1);
    raw_close(c);
    stop();
}

/* Reads the two answers of a pipelined pair, in order. */
static void read_pair(struct raw_conn *c)
{
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "held\n");
    raw_response_free(&r);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "second\n");
    raw_response_free(&r);
}

/* A second request in the same read as the first: the client is watched at once (bytes behind
 * the head), and both are answered in order. */
static void test_pipelined_in_the_first_read(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = sent_before_the_accept(
        GET("/held", "cw-pipe-1") GET("/second", "cw-pipe-2"), false);
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    assert_int_equal(fake_origin_wait_requests(fx.o, 1, IO_MS), 0);
    wait_watched(c, true, tu_now_ms()); /* while the first is held */
    open_gate();
    read_pair(c);
    raw_close(c);
    stop();
}

/* A second request sent while the first, read at the accept, waits on the origin (its client
 * perhaps not watched yet): it is read once the first is answered, and answered in turn. */
static void test_pipelined_after_the_first_read(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = sent_before_the_accept(GET("/held", "cw-later-1"), false);
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    assert_int_equal(fake_origin_wait_requests(fx.o, 1, IO_MS), 0);
    assert_int_equal(raw_send_str(c, GET("/second", "cw-later-2")), 0);
    wait_acked(c);
    open_gate();
    read_pair(c);
    raw_close(c);
    logged("cw-later-2", 200);
    stop();
}

/* The hit, answered at once (within the 5 ms the client is not watched, unless the host is too
 * loaded: then the timer watches it first, and the row cannot tell), then a second request on
 * the same connection: the answer's end watches the client (ds_done), the next request is read
 * and answered. Without it the client stayed out of epoll, idle, until keepalive_timeout. */
static void test_keep_alive_after_a_quick_answer(void **state)
{
    (void)state;
    start();
    struct raw_conn *c = sent_before_the_accept(GET("/second", "cw-ka-1"), false);
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    double ms = logged("cw-ka-1", 200);
    print_message("  first answered in %.3f ms%s\n", ms,
                  ms < WATCH_LATER_MS ? "" : " (too slow: watched by the timer, cannot tell)");
    assert_int_equal(raw_send_str(c, GET("/second", "cw-ka-2")), 0);
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "second\n");
    raw_response_free(&r);
    raw_close(c);
    logged("cw-ka-2", 200);
    stop();
}

/* A POST whose head is read at the accept and whose body comes after: the client is watched
 * at once (a body is owed), the body reaches the origin whole. */
static void test_body_after_the_accept(void **state)
{
    (void)state;
    start();
    static const char head[] = "POST /post HTTP/1.1\r\nHost: a\r\nX-Request-Id: cw-post\r\n"
                               "Content-Length: 11\r\n\r\n";
    struct raw_conn *c = sent_before_the_accept(head, false);
    int64_t t0 = tu_now_ms();
    assert_int_equal(harness_signal(fx.h, SIGCONT), 0);
    wait_watched(c, true, t0);
    long queued;
    assert_true(portico_side(c, &queued) && queued == 0); /* the head was read */
    assert_int_equal(raw_send_str(c, "hello world"), 0);
    assert_int_equal(fake_origin_wait_requests(fx.o, 1, IO_MS), 0);
    size_t len = 0;
    char *body = fake_origin_request_body(fx.o, 0, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(body, "hello world", 11);
    free(body);
    open_gate();
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    logged("cw-post", 200);
    stop();
}

/* ---- the first wait in the worker's own epoll (waitset.c) ---- */

#define ARMED_ONCE 0x40000001u /* EPOLLONESHOT | EPOLLIN: an entry of the worker's waitset */

/* Connects a client that sends nothing and waits (bounded) until Portico's side of it is armed
 * for one report in an epoll (the read at the accept missed: it waits in the waitset, not in
 * libevent's epoll); returns that side's inode. */
static unsigned long connect_first_wait(struct raw_conn **out)
{
    struct raw_conn *c = px_connect(fx.h);
    long queued;
    unsigned long ino = 0;
    bool armed = false;
    for (int64_t end = tu_now_ms() + IO_MS; !armed && tu_now_ms() < end; sched_yield())
        armed = (ino = portico_side(c, &queued)) &&
                tu_epoll_watches_with(harness_pid(fx.h), ino, ARMED_ONCE);
    if (!armed)
        fail_msg("the silent client never waited armed once (EPOLLONESHOT) in an epoll");
    *out = c;
    return ino;
}

/* Whether Portico holds a descriptor of the socket of inode ino. */
static bool holds(unsigned long ino)
{
    char dir[64], path[400], link[64], want[40];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)harness_pid(fx.h));
    snprintf(want, sizeof(want), "socket:[%lu]", ino);
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        found = n > 0 && (link[n] = '\0', strcmp(link, want) == 0);
    }
    closedir(d);
    return found;
}

/* Waits (bounded) until Portico closed its side of the connection of inode ino. */
static void wait_released(unsigned long ino)
{
    bool kept = true;
    for (int64_t end = tu_now_ms() + IO_MS; kept && tu_now_ms() < end; sched_yield())
        kept = holds(ino);
    if (kept)
        fail_msg("Portico still holds the client's descriptor");
}

/* A request answered on a new connection: the loop still serves. */
static void still_serves(void)
{
    open_gate(); /* the origin answers at once */
    struct raw_conn *c = px_connect(fx.h);
    assert_int_equal(raw_send_str(c, GET("/second", "cw-after")), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
}

/* A client that connects, sends nothing and closes: it waits in the waitset (armed once), its
 * FIN is reported there, and Portico closes its side: the descriptor goes, no epoll lists it,
 * and the loop serves the next one. Before the waitset the
 * silent client waited in libevent's epoll (no EPOLLONESHOT): the row fails there. */
static void test_close_in_the_first_wait(void **state)
{
    (void)state;
    start();
    struct raw_conn *c;
    unsigned long ino = connect_first_wait(&c);
    assert_true(holds(ino));
    raw_close(c);
    wait_released(ino);
    assert_false(tu_epoll_watches(harness_pid(fx.h), ino)); /* the close took the entry */
    still_serves();
    stop();
}

/* A silent client in the waitset when client_header_timeout passes: the deadline, the sock's
 * own timer, ends it there (no report of the waitset needed: our FIN goes out, and the
 * client's, reported by the waitset, ends the linger), the descriptor goes, and the loop serves
 * the next one. Fails before the waitset as the row above does. */
static void test_header_timeout_in_the_first_wait(void **state)
{
    (void)state;
    assert_int_equal(pipe(org.gate), 0);
    org.gone = 0;
    struct fake_origin_opts o = {.kind = FO_SCRIPT, .pick_script = pick};
    fx.o = fake_origin_start(&o);
    assert_non_null(fx.o);
    fx.h = px_start("client_header_timeout = 300ms\n",
                    "[upstream u]\norigin = 127.0.0.1:%u\nsettle_time = 0\n",
                    fake_origin_port(fx.o));
    struct raw_conn *c;
    int64_t t0 = tu_now_ms();
    unsigned long ino = connect_first_wait(&c);
    assert_int_equal(raw_wait_closed(c, IO_MS), 1); /* Portico closed it: its timeout */
    int64_t after = tu_now_ms() - t0;
    print_message("  closed %lld ms after the connect\n", (long long)after);
    assert_true(after >= 250);
    raw_close(c); /* Portico lingers for it, still in the waitset (armed: the FIN reports) */
    wait_released(ino);
    assert_false(tu_epoll_watches(harness_pid(fx.h), ino));
    still_serves();
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_abort_read_at_accept, teardown),
        cmocka_unit_test_teardown(test_reset_before_a_quick_answer, teardown),
        cmocka_unit_test_teardown(test_reset_before_a_quick_answer_keeps_the_origin, teardown),
        cmocka_unit_test_teardown(test_watched_after_5_ms, teardown),
        cmocka_unit_test_teardown(test_abort_after_a_read_that_found_nothing, teardown),
        cmocka_unit_test_teardown(test_pipelined_in_the_first_read, teardown),
        cmocka_unit_test_teardown(test_pipelined_after_the_first_read, teardown),
        cmocka_unit_test_teardown(test_keep_alive_after_a_quick_answer, teardown),
        cmocka_unit_test_teardown(test_body_after_the_accept, teardown),
        cmocka_unit_test_teardown(test_close_in_the_first_wait, teardown),
        cmocka_unit_test_teardown(test_header_timeout_in_the_first_wait, teardown),
    };
    tu_test_filter(); /* TEST_FILTER=test_watched_after_5_ms runs the matching tests only */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
