/*
 * test_tls_readahead.c — TLS read-ahead (sock.c): OpenSSL reads more of the socket than the
 * record it returns, and what it read that way is invisible to epoll. Each case here is an end
 * of the peer's (close_notify) read ahead with the data before it, on a socket that will never
 * turn readable again (the peer sends no FIN), which must still be reported:
 *
 *  1. from a TLS origin, with the last bytes of a close-delimited response, while reading the
 *     origin pauses (a throttle fault): the end must be seen when reading resumes;
 *  2. from a TLS client, behind pipelined requests sent in the same write and answered from
 *     the buffer one after the other (sock_requeue): the connection must close;
 *  3. from a TLS origin, with a keep-alive response: the connection is closed already and must
 *     not go back to the pool, where a request of the same loop turn would take it.
 *
 * Peers are raw OpenSSL on blocking sockets with timeouts, so that every wait is bounded; what
 * reaches Portico in one read is made in memory BIOs and sent in one send().
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../support/certs.h"
#include "proxy_helpers.h"

#define IO_MS 3000

/* Portico with a TLS listener ("tls") in front of origin port; upstream_extra: its lines. */
static struct harness *start_tls(uint16_t origin, const char *upstream_extra)
{
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    return px_start("listen = 127.0.0.1:{{port:tls}} tls\n"
                    "tls_cert = {{certs}}/server.pem\ntls_key = {{certs}}/server.key\n",
                    "[upstream u]\norigin = 127.0.0.1:%u\n%s", origin,
                    upstream_extra ? upstream_extra : "");
}

/* A TLS client: the handshake is done on the socket, later records go through memory BIOs
 * when the test wants to choose how they are cut into writes. */
struct tls_client {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

static void tls_connect(struct tls_client *c, struct harness *h)
{
    const struct test_certs *certs = certs_get();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(harness_port(h, "tls")),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {IO_MS / 1000, 0}; /* every blocking call below is bounded */

    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, certs->ca_cert, NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    SSL_set1_host(c->ssl, "localhost");
    if (SSL_connect(c->ssl) != 1)
        fail_msg("TLS handshake with Portico failed");
}

static void tls_close(struct tls_client *c)
{
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd);
    SSL_CTX_free(c->ctx);
}

/* ---- 1. close_notify without FIN, read with the last bytes of a response ---- */

/* A TLS origin for one connection: a close-delimited response of body_len bytes, then
 * close_notify, and the socket stays open (no FIN) until the test is over. */
struct quiet_origin {
    int lfd;
    uint16_t port;
    size_t body_len;
    int stop[2];  /* the test writes a byte: the origin closes and returns */
    pthread_t thread;
};

static void *quiet_origin_run(void *arg)
{
    struct quiet_origin *q = arg;
    const struct test_certs *certs = certs_get();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    struct pollfd p = {.fd = q->lfd, .events = POLLIN};
    int fd = -1;
    SSL *ssl = NULL;

    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, certs->server_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, certs->server_key, SSL_FILETYPE_PEM) != 1 ||
        poll(&p, 1, IO_MS) != 1 || (fd = accept(q->lfd, NULL, NULL)) < 0)
        goto out;
    struct timeval tv = {10, 0}; /* bounds every blocking call below */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1)
        goto out;
    char req[8192];
    size_t have = 0, got;
    while (have < sizeof(req) - 1 && SSL_read_ex(ssl, req + have, sizeof(req) - 1 - have, &got)) {
        have += got;
        req[have] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    /* The response and close_notify are made in memory and sent in one write: they reach
     * Portico in one read. */
    const char head[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    char *resp = malloc(strlen(head) + q->body_len);
    BIO *mem = BIO_new(BIO_s_mem());
    if (!resp || !mem) {
        free(resp);
        BIO_free(mem);
        goto out;
    }
    memcpy(resp, head, strlen(head));
    memset(resp + strlen(head), 'q', q->body_len);
    SSL_set0_wbio(ssl, mem); /* the socket stays the read BIO */
    int ok = SSL_write(ssl, resp, (int)(strlen(head) + q->body_len)) > 0;
    free(resp);
    if (!ok || SSL_shutdown(ssl) < 0) /* close_notify; the socket stays open: no FIN */
        goto out;
    char *wire;
    long wire_len = BIO_get_mem_data(mem, &wire);
    if (wire_len <= 0 || send(fd, wire, (size_t)wire_len, MSG_NOSIGNAL) != wire_len)
        goto out;
    p = (struct pollfd){.fd = q->stop[0], .events = POLLIN};
    poll(&p, 1, 20000);
out:
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    return NULL;
}

static void quiet_origin_start(struct quiet_origin *q, size_t body_len)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    *q = (struct quiet_origin){.body_len = body_len};
    q->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(q->lfd >= 0);
    assert_int_equal(bind(q->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(q->lfd, 4), 0);
    assert_int_equal(getsockname(q->lfd, (struct sockaddr *)&a, &alen), 0);
    q->port = ntohs(a.sin_port);
    assert_int_equal(pipe2(q->stop, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&q->thread, NULL, quiet_origin_run, q), 0);
}

static void quiet_origin_stop(struct quiet_origin *q)
{
    if (write(q->stop[1], "s", 1) != 1)
        fail_msg("cannot wake the origin");
    pthread_join(q->thread, NULL);
    close(q->lfd);
    close(q->stop[0]);
    close(q->stop[1]);
}

/* A throttled response (a fault: the origin is not read while each step's quota is spent) from
 * a TLS origin: its last bytes and close_notify come in one read, reading pauses after the
 * first step, and the end of the body (the close) must be seen when it resumes. */
static void test_close_notify_no_fin(void **state)
{
    (void)state;
    struct quiet_origin q;
    quiet_origin_start(&q, 5000);
    struct harness *h = start_tls(q.port, "tls = on\nca_file = {{certs}}/ca.pem\n"
                                          "[fault slow]\nprefix = /\nthrottle = 20k\n");
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    int64_t t0 = tu_now_ms();
    int rc = raw_read_response(c, &r, IO_MS);
    print_message("  %s after %lld ms\n", rc == 0 ? "the whole response" : "no end",
                  (long long)(tu_now_ms() - t0));
    if (rc != 0)
        fail_msg("the throttled response did not end: the origin's close_notify was lost");
    assert_int_equal(r.head.status, 200);
    assert_int_equal(r.body_len, 5000);
    raw_response_free(&r);
    raw_close(c);
    px_stop(h);
    quiet_origin_stop(&q);
}

/* ---- 2. pipelined requests, then close_notify, in one write ---- */

static const struct {
    int requests;
    const char *why;
} notify_rows[] = {
    /* answered at once; the end is reported on the next turn */
    {1, "one request"},
    /* the second is parsed from the buffer (sock_requeue): the end behind it must not be lost */
    {2, "two pipelined"},
    {5, "five pipelined"},
};

/* Each request answered by Portico itself (a fault's status, no origin), so that every answer
 * is complete before the next request is parsed. */
static void test_pipelined_then_close_notify(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = start_tls(fake_origin_port(o), "[fault st]\nprefix = /\nstatus = 503\n");
    for (size_t i = 0; i < ARRAY_SIZE(notify_rows); i++) {
        struct tls_client c;
        tls_connect(&c, h);
        BIO *out = BIO_new(BIO_s_mem()), *in = BIO_new(BIO_s_mem());
        assert_non_null(out);
        assert_non_null(in);
        SSL_set0_wbio(c.ssl, out); /* records gather in memory and go in one send */
        const char req[] = "GET /st HTTP/1.1\r\nHost: t\r\n\r\n";
        for (int r = 0; r < notify_rows[i].requests; r++)
            assert_int_equal(SSL_write(c.ssl, req, (int)strlen(req)), (int)strlen(req));
        assert_true(SSL_shutdown(c.ssl) >= 0);
        char *wire;
        long wire_len = BIO_get_mem_data(out, &wire);
        assert_int_equal(send(c.fd, wire, (size_t)wire_len, MSG_NOSIGNAL), wire_len);
        /* Portico answers, then closes: read the socket to its end (bounded), then decrypt. */
        bool closed = false;
        static char buf[1 << 16];
        for (int64_t end = tu_now_ms() + IO_MS; !closed && tu_now_ms() < end;) {
            struct pollfd p = {.fd = c.fd, .events = POLLIN};
            if (poll(&p, 1, (int)(end - tu_now_ms()) + 1) != 1)
                break;
            ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
            if (n <= 0)
                closed = true;
            else
                BIO_write(in, buf, (int)n);
        }
        SSL_set0_rbio(c.ssl, in);
        size_t have = 0, got;
        while (have < sizeof(buf) - 1 && SSL_read_ex(c.ssl, buf + have, sizeof(buf) - 1 - have, &got))
            have += got;
        buf[have] = '\0';
        int answers = 0;
        for (const char *p = buf; (p = strstr(p, "HTTP/1.1 503 ")) != NULL; p++)
            answers++;
        print_message("  %s: %d answers, %s\n", notify_rows[i].why, answers,
                      closed ? "then closed" : "and the connection still open");
        assert_int_equal(answers, notify_rows[i].requests);
        if (!closed)
            fail_msg("%s: the client's close_notify was not seen within %d ms",
                     notify_rows[i].why, IO_MS);
        tls_close(&c);
    }
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- 3. close_notify read with a keep-alive response ---- */

/* A TLS origin for two connections. The first: its request read, `has_request` gets a byte;
 * once `gate` gets one, a keep-alive response (Content-Length) and close_notify go in one send,
 * then `sent` gets a byte; its socket stays open (no FIN: the kernel has nothing left to tell)
 * until the origin stops. The second: answers its request and closes. Every wait is bounded. */
struct closing_origin {
    int lfd;
    uint16_t port;
    int has_request[2];
    int gate[2];
    int sent[2];
    pthread_t thread;
};

/* Reads a request head; 0, or -1. */
static int read_head(SSL *ssl)
{
    char req[8192];
    size_t have = 0, got;
    while (have < sizeof(req) - 1 && SSL_read_ex(ssl, req + have, sizeof(req) - 1 - have, &got)) {
        have += got;
        req[have] = '\0';
        if (strstr(req, "\r\n\r\n"))
            return 0;
    }
    return -1;
}

/* Sends what a memory BIO gathered in one send(): 0, or -1. */
static int send_wire(BIO *mem, int fd)
{
    char *wire;
    long len = BIO_get_mem_data(mem, &wire);
    return len > 0 && send(fd, wire, (size_t)len, MSG_NOSIGNAL) == len ? 0 : -1;
}

/* Waits until the peer's kernel acknowledged everything sent on fd: the bytes are in its socket
 * then, which a stopped Portico cannot change. Loopback delivers within send() unless softirqs
 * run late (ksoftirqd on a busy machine), and a delayed ACK takes up to ~40 ms: 1 ms steps,
 * bounded (as test_regressions.c does for SIOCOUTQNSD). true once all was acknowledged. */
static bool wait_acked(int fd)
{
    int queued = -1;
    for (int i = 0; i < 1000 && ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    return queued == 0;
}

/* A byte to the test, which waits for it (bounded): a failed write shows as that timeout. */
static void notify(int fd)
{
    ssize_t n = write(fd, "x", 1);
    (void)n;
}

static void *closing_origin_run(void *arg)
{
    struct closing_origin *o = arg;
    const struct test_certs *certs = certs_get();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, certs->server_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, certs->server_key, SSL_FILETYPE_PEM) != 1)
        goto out;
    /* No session tickets: they would come after the handshake, and Portico stopped while
     * taking them would read the answer with them, a turn before the POST. */
    SSL_CTX_set_num_tickets(ctx, 0);
    int quiet = -1; /* the first connection's socket, after its close_notify */
    for (int conn = 0; conn < 2; conn++) {
        struct pollfd p = {.fd = o->lfd, .events = POLLIN};
        int fd = poll(&p, 1, IO_MS) == 1 ? accept(o->lfd, NULL, NULL) : -1;
        if (fd < 0)
            break;
        struct timeval tv = {IO_MS / 1000, 0}; /* bounds every blocking call below */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        /* The answer leaves with its send(), not once a stopped Portico acknowledged what
         * went before it (Nagle). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SSL *ssl = SSL_new(ctx);
        BIO *mem = BIO_new(BIO_s_mem());
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1 && read_head(ssl) == 0) {
            static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
            if (conn == 0) {
                notify(o->has_request[1]);
                p = (struct pollfd){.fd = o->gate[0], .events = POLLIN};
                SSL_set0_wbio(ssl, mem); /* records gather in memory; reads stay on fd */
                if (poll(&p, 1, 10000) == 1 && SSL_write(ssl, ok, (int)strlen(ok)) > 0 &&
                    SSL_shutdown(ssl) >= 0 && send_wire(mem, fd) == 0 && wait_acked(fd))
                    notify(o->sent[1]);
                mem = NULL; /* freed with ssl */
                quiet = fd;
                fd = -1;
            } else if (SSL_write(ssl, ok, (int)strlen(ok)) > 0) {
                SSL_shutdown(ssl);
            }
        }
        BIO_free(mem);
        SSL_free(ssl);
        if (fd >= 0)
            close(fd);
    }
    if (quiet >= 0)
        close(quiet);
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static void closing_origin_start(struct closing_origin *o)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    *o = (struct closing_origin){0};
    o->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(o->lfd >= 0);
    assert_int_equal(bind(o->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(o->lfd, 4), 0);
    assert_int_equal(getsockname(o->lfd, (struct sockaddr *)&a, &alen), 0);
    o->port = ntohs(a.sin_port);
    assert_int_equal(pipe2(o->has_request, O_CLOEXEC), 0);
    assert_int_equal(pipe2(o->gate, O_CLOEXEC), 0);
    assert_int_equal(pipe2(o->sent, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&o->thread, NULL, closing_origin_run, o), 0);
}

static void closing_origin_stop(struct closing_origin *o)
{
    if (write(o->gate[1], "g", 1) != 1) /* in case the test broke off before opening it */
        fail_msg("cannot wake the origin");
    pthread_join(o->thread, NULL);
    close(o->lfd);
    for (int i = 0; i < 2; i++) {
        close(o->has_request[i]);
        close(o->gate[i]);
        close(o->sent[i]);
    }
}

/* Waits (bounded) for a byte on fd: true when it came. */
static bool wait_byte(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char b;
    return poll(&p, 1, IO_MS) == 1 && read(fd, &b, 1) == 1;
}


/* A TLS origin answers with keep-alive framing and closes (close_notify, no FIN yet) at once:
 * one read takes both, the end being reported on the next turn, and the kernel has nothing
 * more to tell (so asking it before a POST does not help). Another client's POST read in the
 * same turn (settle_time = 0: released connections are taken at once) took that connection
 * from the pool, went to a closed connection, and got 502 empty_response (a POST is not sent
 * twice). Portico is stopped while the origin answers and the POST arrives, so that one turn
 * sees both (the origin's socket first). */
static void test_close_notify_with_keepalive_response(void **state)
{
    (void)state;
    struct closing_origin o;
    closing_origin_start(&o);
    struct harness *h = start_tls(o.port, "tls = on\nca_file = {{certs}}/ca.pem\n"
                                          "settle_time = 0\n"
                                          "[fault local]\nprefix = /local\nstatus = 204\n");
    struct raw_conn *a = px_connect(h), *b = px_connect(h);
    struct raw_response r;

    /* b is accepted and idle: its next request is read in the loop turn of our choosing */
    assert_int_equal(raw_send_str(b, "GET /local HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(b, &r, IO_MS), 0);
    assert_int_equal(r.status, 204);
    raw_response_free(&r);
    assert_int_equal(raw_send_str(a, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_true(wait_byte(o.has_request[0]));
    assert_int_equal(px_sigstop(h), 0);
    assert_int_equal(write(o.gate[1], "g", 1), 1);
    assert_true(wait_byte(o.sent[0])); /* the answer and close_notify are in Portico's socket */
    assert_int_equal(raw_send_str(b, "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
                     0);
    assert_true(wait_acked(raw_fd(b))); /* behind the origin's answer: one turn, that order */
    assert_int_equal(harness_signal(h, SIGCONT), 0);
    assert_int_equal(raw_read_response(a, &r, IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    assert_int_equal(raw_read_response(b, &r, IO_MS), 0);
    print_message("  POST: %d %s\n", r.status, raw_header(&r, "Portico-Error") ?: "");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    raw_response_free(&r);
    raw_close(a);
    raw_close(b);
    px_stop(h);
    closing_origin_stop(&o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_notify_no_fin),
        cmocka_unit_test(test_pipelined_then_close_notify),
        cmocka_unit_test(test_close_notify_with_keepalive_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
