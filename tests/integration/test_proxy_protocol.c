/*
 * test_proxy_protocol.c — `listen ... proxy_protocol`: connections from a layer-4 balancer that
 * begin with a PROXY header (v1 text, v2 binary), on plain, tls and h2c listeners.
 *
 * - The header's source is the client: the origin's X-Forwarded-For and the access log's client
 *   say it (IPv4 and IPv6 sources, v1 and v2; LOCAL and UNKNOWN keep the socket's address), with
 *   the header and the request in one write and byte by byte; curl's own --haproxy-protocol;
 *   trusted_proxies tests it.
 * - Every kind of bad header (missing, malformed, oversized, truncated, late) closes the
 *   connection without a byte, counted in portico_proxy_protocol_errors_total{reason} and said
 *   in the error log; a connection closed before its first byte (a TCP health check) is not.
 * - A listener without the flag is unchanged: a PROXY header there is a bad request.
 * - A reload that only turns the flag off for an address takes effect for new connections.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* Which listener a row goes to. */
enum lis { L_PLAIN, L_TLS, L_H2C };
static const char *const lis_port[] = {[L_PLAIN] = "pp", [L_TLS] = "pptls", [L_H2C] = "pph2c"};

struct good_row {
    const char *why;
    enum lis lis;
    const char *header;
    size_t hlen;
    bool bytewise;             /* the header a byte per write, then the request */
    const char *xff;           /* the X-Forwarded-For the origin gets */
    const char *client;        /* the access log's client= (a prefix: the socket's port varies) */
};

#define GOOD(why, lis, lit, bytewise, xff, client)                                                 \
    {why, lis, lit, sizeof(lit) - 1, bytewise, xff, client}

static const char v1_tcp4[] = "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n";
static const char v1_tcp6[] = "PROXY TCP6 ::1 ::1 4243 443\r\n";
#define V2_INET SIG "\x21\x11\x00\x0c" "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88" "\x00\x50"
#define V2_INET6                                                                                   \
    SIG "\x21\x21\x00\x2c" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"                                    \
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\x13\x89" "\x01\xbb" "\xea\x00\x05\x01vpce"
#define V2_LOCAL SIG "\x20\x00\x00\x00"
/* V2_INET with a PP2_TYPE_CRC32C TLV that matches */
#define V2_INET_CRC                                                                                \
    SIG "\x21\x11\x00\x13" "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88" "\x00\x50"             \
        "\x03\x00\x04\xbe\xb6\x61\x6c"

static const struct good_row good_rows[] = {
    GOOD("plain v1 TCP4", L_PLAIN, v1_tcp4, false, "127.0.113.7", "127.0.113.7:4242"),
    GOOD("plain v1 TCP6", L_PLAIN, v1_tcp6, false, "::1", "[::1]:4243"),
    GOOD("plain v2 IPv4", L_PLAIN, V2_INET, false, "127.0.100.9", "127.0.100.9:5000"),
    GOOD("plain v2 IPv6, a TLV", L_PLAIN, V2_INET6, false, "::1", "[::1]:5001"),
    GOOD("plain v2 LOCAL", L_PLAIN, V2_LOCAL, false, "127.0.0.1", "127.0.0.1:"),
    GOOD("plain v2 IPv4, its CRC32c", L_PLAIN, V2_INET_CRC, false, "127.0.100.9",
         "127.0.100.9:5000"),
    GOOD("plain v1 UNKNOWN", L_PLAIN, "PROXY UNKNOWN\r\n", false, "127.0.0.1", "127.0.0.1:"),
    GOOD("plain v1 byte by byte", L_PLAIN, v1_tcp4, true, "127.0.113.7", "127.0.113.7:4242"),
    GOOD("plain v2 byte by byte", L_PLAIN, V2_INET6, true, "::1", "[::1]:5001"),
    GOOD("tls v1 TCP4", L_TLS, v1_tcp4, false, "127.0.113.7", "127.0.113.7:4242"),
    GOOD("tls v2 IPv6", L_TLS, V2_INET6, false, "::1", "[::1]:5001"),
    GOOD("tls v2 byte by byte", L_TLS, V2_INET, true, "127.0.100.9", "127.0.100.9:5000"),
    GOOD("tls v2 LOCAL", L_TLS, V2_LOCAL, false, "127.0.0.1", "127.0.0.1:"),
    GOOD("h2c v2 IPv4", L_H2C, V2_INET, false, "127.0.100.9", "127.0.100.9:5000"),
    GOOD("h2c v1 TCP6", L_H2C, v1_tcp6, false, "::1", "[::1]:4243"),
    GOOD("h2c v1 byte by byte", L_H2C, v1_tcp4, true, "127.0.113.7", "127.0.113.7:4242"),
};

static struct harness *start(uint16_t origin, const char *extra)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:pp}} proxy_protocol\n"
                                          "listen = 127.0.0.1:{{port:pptls}} tls proxy_protocol\n"
                                          "listen = 127.0.0.1:{{port:pph2c}} h2c proxy_protocol\n"
                                          "listen = 127.0.0.1:{{port:plain}}\n"
                                          "tls_cert = {{certs}}/server.pem\n"
                                          "tls_key = {{certs}}/server.key\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n"
                                          "workers = 1\n%s"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n",
                                          extra ? extra : "", origin),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* A blocking connection to 127.0.0.1:port, every read and write bounded by PX_IO_MS. */
static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {PX_IO_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        fail_msg("connect to %u: %s", port, strerror(errno));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            fail_msg("send: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* The header: whole, or a byte per write 2 ms apart (each its own segment, read apart). */
static void send_header(int fd, const struct good_row *r)
{
    if (!r->bytewise) {
        send_all(fd, r->header, r->hlen);
        return;
    }
    for (size_t i = 0; i < r->hlen; i++) {
        send_all(fd, r->header + i, 1);
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Everything until the peer closes (bounded): malloc'd, NUL-terminated. */
static char *read_to_close(int fd, SSL *ssl, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        int got = ssl ? SSL_read(ssl, buf + n, (int)(cap - n))
                      : (int)recv(fd, buf + n, cap - n, 0);
        if (got <= 0 || (n += (size_t)got) == cap)
            break;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *request(char *buf, size_t size, const char *rid)
{
    snprintf(buf, size,
             "GET /pp HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nConnection: close\r\n\r\n", rid);
    return buf;
}

/* HTTP/1.1 over plain TCP or TLS (no ALPN: HTTP/1.1), after the header. */
static void h1_exchange(uint16_t port, const struct good_row *r, const char *rid, bool tls)
{
    int fd = tcp_connect(port);
    char req[256];
    request(req, sizeof(req), rid);
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (tls || r->bytewise)
        send_header(fd, r);
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        assert_non_null(ctx);
        ssl = SSL_new(ctx);
        assert_non_null(ssl);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1)
            fail_msg("%s: TLS handshake after the header failed", r->why);
        assert_int_equal(SSL_write(ssl, req, (int)strlen(req)), (int)strlen(req));
    } else if (!r->bytewise) { /* the header and the request in one segment */
        char both[512];
        memcpy(both, r->header, r->hlen);
        memcpy(both + r->hlen, req, strlen(req));
        send_all(fd, both, r->hlen + strlen(req));
    } else {
        send_all(fd, req, strlen(req));
    }
    size_t len;
    char *resp = read_to_close(fd, ssl, &len);
    if (!px_starts(resp, "HTTP/1.1 200 "))
        fail_msg("%s: '%.200s'", r->why, resp);
    free(resp);
    if (ssl)
        SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

/* An HPACK string literal, never Huffman-coded. */
static size_t hpack_str(unsigned char *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (unsigned char)n; /* < 127 here */
    memcpy(p + 1, s, n);
    return n + 1;
}

/* One HTTP/2 request (prior knowledge) after the header; waits for its END_STREAM. */
static void h2c_exchange(uint16_t port, const struct good_row *r, const char *rid)
{
    unsigned char out[512];
    size_t n = 0;
    memcpy(out, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    n = 24;
    static const unsigned char settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    memcpy(out + n, settings, 9);
    n += 9;
    unsigned char block[128];
    size_t b = 0;
    block[b++] = 0x82; /* :method GET */
    block[b++] = 0x86; /* :scheme http */
    block[b++] = 0x84; /* :path / */
    block[b++] = 0x01; /* :authority, literal without indexing */
    b += hpack_str(block + b, "x");
    block[b++] = 0x00; /* x-request-id, a new name without indexing */
    b += hpack_str(block + b, "x-request-id");
    b += hpack_str(block + b, rid);
    unsigned char head[9] = {0, 0, (unsigned char)b, 1, 0x5 /* END_STREAM | END_HEADERS */,
                             0, 0, 0, 1};
    memcpy(out + n, head, 9);
    n += 9;
    memcpy(out + n, block, b);
    n += b;
    int fd = tcp_connect(port);
    send_header(fd, r);
    send_all(fd, out, n);
    /* frames until stream 1 ends: a 200 HEADERS (":status 200" indexed: 0x88), then DATA */
    bool status_200 = false, ended = false;
    unsigned frames = 0;
    while (!ended && frames++ < 64) {
        unsigned char fh[9];
        if (recv(fd, fh, 9, MSG_WAITALL) != 9)
            fail_msg("%s: connection ended before the response", r->why);
        size_t flen = (size_t)fh[0] << 16 | (size_t)fh[1] << 8 | fh[2];
        unsigned char *payload = malloc(flen + 1);
        assert_non_null(payload);
        if (flen && recv(fd, payload, flen, MSG_WAITALL) != (ssize_t)flen)
            fail_msg("%s: frame cut short", r->why);
        unsigned sid = (unsigned)(fh[5] & 0x7f) << 24 | (unsigned)fh[6] << 16 |
                       (unsigned)fh[7] << 8 | fh[8];
        if (sid == 1 && fh[3] == 1 && flen > 0 && payload[0] == 0x88)
            status_200 = true;
        if (sid == 1 && (fh[3] == 0 || fh[3] == 1) && (fh[4] & 0x1))
            ended = true;
        if (fh[3] == 7) /* GOAWAY */
            fail_msg("%s: GOAWAY", r->why);
        free(payload);
    }
    assert_true(ended);
    if (!status_200)
        fail_msg("%s: no :status 200", r->why);
    close(fd);
}

static void test_sources(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = start(fake_origin_port(o), "trusted_proxies = 127.0.113.0/24\n");
    for (size_t i = 0; i < ARRAY_SIZE(good_rows); i++) {
        const struct good_row *r = &good_rows[i];
        char rid[32];
        snprintf(rid, sizeof(rid), "pp-%zu", i);
        unsigned before = fake_origin_requests(o);
        uint16_t port = harness_port(h, lis_port[r->lis]);
        if (r->lis == L_H2C)
            h2c_exchange(port, r, rid);
        else
            h1_exchange(port, r, rid, r->lis == L_TLS);
        assert_int_equal(fake_origin_wait_requests(o, before + 1, PX_IO_MS), 0);
        char *xff = fake_origin_request_header(o, before, "X-Forwarded-For");
        if (!xff || strcmp(xff, r->xff) != 0)
            fail_msg("%s: X-Forwarded-For '%s', not '%s'", r->why, xff ? xff : "(none)", r->xff);
        free(xff);
    }
    /* curl's own header (v1, its real addresses) on each kind of listener */
    char url[96], cacert[512];
    snprintf(cacert, sizeof(cacert), "%s", certs_get()->ca_cert);
    for (int k = 0; k < 3; k++) {
        const char *argv[16];
        int a = 0;
        argv[a++] = "curl";
        argv[a++] = "-sS";
        argv[a++] = "--max-time";
        argv[a++] = "10";
        argv[a++] = "--haproxy-protocol";
        argv[a++] = "-o";
        argv[a++] = "/dev/null";
        argv[a++] = "-w";
        argv[a++] = "%{http_code} %{http_version}";
        argv[a++] = "-H";
        argv[a++] = k == 0 ? "X-Request-Id: curl-plain" : k == 1 ? "X-Request-Id: curl-h2c"
                                                                : "X-Request-Id: curl-tls";
        if (k == 1)
            argv[a++] = "--http2-prior-knowledge";
        if (k == 2) {
            argv[a++] = "--cacert";
            argv[a++] = cacert;
            snprintf(url, sizeof(url), "https://localhost:%u/c", harness_port(h, "pptls"));
        } else {
            snprintf(url, sizeof(url), "http://127.0.0.1:%u/c",
                     harness_port(h, k == 0 ? "pp" : "pph2c"));
        }
        argv[a++] = url;
        argv[a] = NULL;
        unsigned before = fake_origin_requests(o);
        struct tu_cmd_result res = {0};
        px_run_ok(argv, &res);
        const char *want = k == 0 ? "200 1.1" : "200 2";
        if (strcmp(res.out, want) != 0)
            fail_msg("curl --haproxy-protocol %s: '%s', not '%s'", url, res.out, want);
        tu_cmd_result_free(&res);
        assert_int_equal(fake_origin_wait_requests(o, before + 1, PX_IO_MS), 0);
        char *xff = fake_origin_request_header(o, before, "X-Forwarded-For");
        assert_non_null(xff);
        assert_string_equal(xff, "127.0.0.1");
        free(xff);
    }
    /* trusted_proxies tests the header's source: its X-Forwarded-Proto goes on from
     * 127.0.113.7, and is Portico's own from 127.0.100.9 */
    static const struct {
        const char *header, *proto;
    } trust[] = {{"PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n", "https"},
                 {"PROXY TCP4 127.0.100.9 127.0.0.10 5000 80\r\n", "http"}};
    for (size_t i = 0; i < ARRAY_SIZE(trust); i++) {
        unsigned before = fake_origin_requests(o);
        struct raw_conn *tc = raw_connect(harness_port(h, "pp"), PX_IO_MS);
        assert_non_null(tc);
        char req[256];
        snprintf(req, sizeof(req),
                 "%sGET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n",
                 trust[i].header);
        assert_int_equal(raw_send_str(tc, req), 0);
        struct raw_response tr;
        assert_int_equal(raw_read_response(tc, &tr, PX_IO_MS), 0);
        assert_int_equal(tr.status, 200);
        raw_response_free(&tr);
        raw_close(tc);
        assert_int_equal(fake_origin_wait_requests(o, before + 1, PX_IO_MS), 0);
        char *proto = fake_origin_request_header(o, before, "X-Forwarded-Proto");
        assert_non_null(proto);
        if (strcmp(proto, trust[i].proto) != 0)
            fail_msg("from %.40s: X-Forwarded-Proto %s, not %s", trust[i].header, proto,
                     trust[i].proto);
        free(proto);
    }
    /* a listener without the flag: as ever, and a PROXY header there is no request */
    struct raw_conn *c = raw_connect(harness_port(h, "plain"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: flagless\r\n\r\n"),
                     0);
    struct raw_response resp;
    assert_int_equal(raw_read_response(c, &resp, PX_IO_MS), 0);
    assert_int_equal(resp.status, 200);
    raw_response_free(&resp);
    raw_close(c);
    c = raw_connect(harness_port(h, "plain"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n"
                                     "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    raw_read_response(c, &resp, PX_IO_MS);
    assert_int_equal(resp.status, 400);
    raw_response_free(&resp);
    raw_close(c);

    double errors = 0;
    char *text = scrape_metrics(harness_port(h, "admin"), PX_IO_MS);
    assert_non_null(text);
    for (const char *p = text; (p = strstr(p, "\nportico_proxy_protocol_errors_total{")); p++)
        errors += strtod(strchr(p, '}') + 1, NULL);
    free(text);
    assert_true(errors == 0); /* harness_start's probes closed before a byte: not errors */
    assert_int_equal(harness_stop(h), 0);

    for (size_t i = 0; i < ARRAY_SIZE(good_rows); i++) {
        char rid[32], want[80];
        snprintf(rid, sizeof(rid), "pp-%zu", i);
        char *line = px_log_line_for_id(h, rid);
        snprintf(want, sizeof(want), " client=%s", good_rows[i].client);
        if (!strstr(line, want))
            fail_msg("%s: no '%s' in %s", good_rows[i].why, want, line);
        free(line);
    }
    char *line = px_log_line_for_id(h, "flagless");
    assert_non_null(strstr(line, " client=127.0.0.1:"));
    free(line);
    harness_free(h);
    fake_origin_stop(o);
}

struct bad_row {
    const char *why;
    const char *bytes;
    size_t len;
    bool shut;                 /* then a FIN (truncated) */
    const char *reason;
};

#define BAD(why, lit, shut, reason) {why, lit, sizeof(lit) - 1, shut, reason}

static const struct bad_row bad_rows[] = {
    BAD("a request without a header", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false, "missing"),
    BAD("a TLS ClientHello without a header", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        false, "missing"),
    BAD("v1 port out of range", "PROXY TCP4 127.1.2.4 127.5.6.8 65536 80\r\nGET / HTTP/1.1\r\n\r\n",
        false, "malformed"),
    BAD("v1 without CR", "PROXY TCP4 127.1.2.4 127.5.6.8 1 80\nGET / HTTP/1.1\r\n\r\n", false,
        "malformed"),
    BAD("v1 TCP6 with an IPv4 address", "PROXY TCP6 127.1.2.4 127.5.6.8 1 80\r\n", false,
        "malformed"),
    BAD("v2 version 1", SIG "\x11\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
        false, "malformed"),
    BAD("v2 IPv4 block short", SIG "\x21\x11\x00\x04" "\x01\x02\x03\x04", false, "malformed"),
    BAD("v1 no LF in 107 bytes",
        "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        false, "oversized"),
    BAD("v2 announcing 65535 bytes", SIG "\x21\x11\xff\xff", false, "oversized"),
    /* PP2_TYPE_CRC32C over the header, its field zeroed: one bit off (it was skipped unread) */
    BAD("v2 a CRC32c that does not match",
        SIG "\x21\x11\x00\x13" "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88" "\x00\x50"
        "\x03\x00\x04\xbe\xb6\x61\x6d" "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        false, "checksum"),
    /* a TLV (PP2_TYPE_NOOP) whose length runs past the header: it was skipped unread */
    BAD("v2 a TLV past the header's end",
        SIG "\x21\x11\x00\x10" "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88" "\x00\x50"
        "\x04\x00\x09\x00" "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        false, "malformed"),
    /* 2 bytes after the addresses: too short for a TLV's type and length */
    BAD("v2 a remnant shorter than a TLV",
        SIG "\x21\x11\x00\x0e" "\x7f\x00\x64\x09" "\x7f\x00\x00\x0a" "\x13\x88" "\x00\x50"
        "\x04\x00" "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        false, "malformed"),
    BAD("v1 cut by a FIN", "PROXY TCP4 1.2", true, "truncated"),
    BAD("v2 cut by a FIN", SIG "\x21\x11\x00\x0c\x01\x02", true, "truncated"),
};

static double pp_errors(struct harness *h, const char *reason)
{
    char series[96];
    snprintf(series, sizeof(series), "portico_proxy_protocol_errors_total{reason=\"%s\"}", reason);
    return scrape_metric(harness_port(h, "admin"), series, PX_IO_MS);
}

/* Closed without a byte of answer (a reset or a FIN, as the unread bytes make it). */
static void expect_closed_silently(struct raw_conn *c, const char *why)
{
    size_t len = 0;
    char *got = raw_read_all(c, PX_IO_MS, &len);
    if (len != 0 || !raw_peer_closed(c))
        fail_msg("%s: %zu bytes ('%.80s'), %s", why, len, got ? got : "",
                 raw_peer_closed(c) ? "closed" : "still open");
    free(got);
}

static void test_refused(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = start(fake_origin_port(o), "client_header_timeout = 1s\n");
    static const char *const reasons[] = {"missing", "malformed", "oversized", "checksum",
                                          "truncated", "timeout"};
    double want[6] = {0};
    for (size_t i = 0; i < ARRAY_SIZE(bad_rows); i++) {
        const struct bad_row *r = &bad_rows[i];
        struct raw_conn *c = raw_connect(harness_port(h, i % 2 ? "pptls" : "pp"), PX_IO_MS);
        assert_non_null(c);
        assert_int_equal(raw_send(c, r->bytes, r->len), 0);
        if (r->shut)
            raw_shutdown_write(c);
        expect_closed_silently(c, r->why);
        raw_close(c);
        int k = 0;
        while (strcmp(reasons[k], r->reason) != 0)
            k++;
        want[k]++;
        double got = pp_errors(h, r->reason);
        if (got != want[k])
            fail_msg("%s: %s counted %g, not %g", r->why, r->reason, got, want[k]);
    }
    /* late: part of a header, then nothing, on each kind of listener; and nothing at all */
    int64_t t0 = tu_now_ms();
    struct raw_conn *late[4];
    for (int k = 0; k < 3; k++) {
        late[k] = raw_connect(harness_port(h, lis_port[k]), PX_IO_MS);
        assert_non_null(late[k]);
        assert_int_equal(raw_send_str(late[k], "PROXY TCP4 127.1.2.4 "), 0);
    }
    late[3] = raw_connect(harness_port(h, "pp"), PX_IO_MS);
    assert_non_null(late[3]);
    for (int k = 0; k < 4; k++) {
        expect_closed_silently(late[k], "late");
        raw_close(late[k]);
    }
    int64_t took = tu_now_ms() - t0;
    if (took < 900 || took > 4000)
        fail_msg("late headers closed after %lld ms, not client_header_timeout (1 s)",
                 (long long)took);
    assert_true(pp_errors(h, "timeout") == 4);
    /* a connection closed before its first byte (a TCP health check) is no error */
    struct raw_conn *c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
    assert_non_null(c);
    raw_close(c);
    /* and the listener still serves (the close above was taken before this one) */
    c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
    assert_int_equal(raw_send_str(c, "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n"
                                     "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                     0);
    struct raw_response resp;
    assert_int_equal(raw_read_response(c, &resp, PX_IO_MS), 0);
    assert_int_equal(resp.status, 200);
    raw_response_free(&resp);
    raw_close(c);
    for (int k = 0; k < 5; k++)
        if (pp_errors(h, reasons[k]) != want[k])
            fail_msg("%s: %g, not %g", reasons[k], pp_errors(h, reasons[k]), want[k]);
    assert_int_equal(fake_origin_requests(o), 1); /* nothing refused went on */
    /* none is left waiting for its header, in the gauge or the count of connections */
    assert_true(scrape_metric(harness_port(h, "admin"),
                              "portico_connections{side=\"client\",state=\"handshake\"}",
                              PX_IO_MS) == 0);
    /* the error log names the peer and the reason */
    assert_true(harness_log_contains(h, "[info] client 127.0.0.1:"));
    assert_true(harness_log_contains(h, "no PROXY header: the bytes begin something else"));
    assert_true(harness_log_contains(h, "malformed PROXY header"));
    assert_true(harness_log_contains(h, "PROXY header checksum (CRC32c TLV) does not match"));
    assert_true(harness_log_contains(h, "PROXY header not complete within client_header_timeout"));
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
}

/* Whether one client connection waits in its handshake (its PROXY header), polled (bounded). */
static bool one_handshaking(struct harness *h)
{
    return scrape_wait(harness_port(h, "admin"),
                       "portico_connections{side=\"client\",state=\"handshake\"}", 1,
                       PX_IO_MS) == 1;
}

/* A connection takes one of max_connections' places from its accept, its header's wait and
 * its requests alike, and gives it back at its end: three served one after another under
 * max_connections = 2 (a place kept at the hand-over held the listener from the third on).
 * Each is counted once in portico_client_connections_total, those refused or closed before
 * their header too. A stop that closes at once (shutdown_timeout = 0) closes one still
 * waiting for its header, and exits 0. */
static void test_places_and_counts(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = start(fake_origin_port(o), "max_connections = 2\nshutdown_timeout = 0\n");
    static const char total[] = "portico_client_connections_total";
    double before = scrape_metric(harness_port(h, "admin"), total, PX_IO_MS);
    for (int i = 0; i < 3; i++) {
        struct raw_conn *c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
        assert_non_null(c);
        assert_int_equal(raw_send_str(c, "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n"
                                         "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                         0);
        struct raw_response resp;
        if (raw_read_response(c, &resp, PX_IO_MS) != 0)
            fail_msg("connection %d of 3 under max_connections = 2: no response", i + 1);
        assert_int_equal(resp.status, 200);
        raw_response_free(&resp);
        raw_close(c);
    }
    struct raw_conn *c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    expect_closed_silently(c, "no header");
    raw_close(c);
    c = raw_connect(harness_port(h, "pp"), PX_IO_MS); /* closed before a byte */
    assert_non_null(c);
    raw_close(c);
    double got = scrape_wait(harness_port(h, "admin"), total, before + 5, PX_IO_MS);
    if (got != before + 5)
        fail_msg("%s: %g more, not 5 (3 served, 1 refused, 1 closed)", total, got - before);

    c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "PROXY TCP4 127.1.2.4 "), 0);
    assert_true(one_handshaking(h));
    assert_int_equal(harness_stop(h), 0);
    expect_closed_silently(c, "stopped while its header came");
    raw_close(c);
    harness_free(h);
    fake_origin_stop(o);
}

/* A balancer over IPv6 whose header is refused after a wait is named by its own address in
 * the error log, as one refused at once is. */
static void test_ipv6_balancer_named(void **state)
{
    (void)state;
    TU_SKIP_WITHOUT_IPV6_LOOPBACK();
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h =
        start(fake_origin_port(o), "listen = [::1]:{{free_port:pp6}} proxy_protocol\n");
    struct raw_conn *c = raw_connect_ip("::1", harness_port(h, "pp6"), PX_IO_MS);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "PROXY TCP4 127.1.2.4 "), 0);
    assert_true(one_handshaking(h)); /* the first piece was taken: the connection waits */
    assert_int_equal(raw_send_str(c, "127.5.6.8 1 2 3\r\n"), 0);
    expect_closed_silently(c, "a field too many");
    raw_close(c);
    assert_int_equal(harness_stop(h), 0);
    if (!harness_log_contains(h, "[info] client [::1]:"))
        fail_msg("the refusal does not name [::1]");
    assert_true(harness_log_contains(h, "malformed PROXY header"));
    harness_free(h);
    fake_origin_stop(o);
}

/* A reload that turns the flag off for an address (and on for another): new connections
 * follow the new configuration at once, on the same sockets. */
static void test_reload_flips_the_flag(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = harness_new();
    assert_non_null(h);
    static const char conf[] = "[proxy]\n"
                               "listen = 127.0.0.1:{{port:a}}%s\n"
                               "listen = 127.0.0.1:{{port:b}}%s\n"
                               "workers = 1\n"
                               "[upstream u]\norigin = 127.0.0.1:%u\n";
    assert_int_equal(harness_write_config(h, conf, " proxy_protocol", "", fake_origin_port(o)), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    static const char with[] = "PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n"
                               "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static const char without[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const char *a_sends[2] = {with, without}, *b_sends[2] = {without, with};
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            assert_int_equal(harness_write_config(h, conf, "", " proxy_protocol",
                                                  fake_origin_port(o)),
                             0);
            assert_int_equal(harness_signal(h, SIGHUP), 0);
            assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
        }
        for (int side = 0; side < 2; side++) {
            struct raw_conn *c = raw_connect(harness_port(h, side ? "b" : "a"), PX_IO_MS);
            assert_non_null(c);
            assert_int_equal(raw_send_str(c, side ? b_sends[round] : a_sends[round]), 0);
            struct raw_response resp;
            assert_int_equal(raw_read_response(c, &resp, PX_IO_MS), 0);
            if (resp.status != 200)
                fail_msg("round %d, listener %c: %d", round, side ? 'b' : 'a', resp.status);
            raw_response_free(&resp);
            raw_close(c);
        }
    }
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
}

/* real_ip applies to the header's source: the balancer that source names is trusted, so its
 * X-Forwarded-For names the client; from a source not trusted it names no one. */
static void test_real_ip_after_header(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = start(fake_origin_port(o), "trusted_proxies = 127.0.113.0/24\n"
                                                   "real_ip = x-forwarded-for\n");
    static const struct {
        const char *header, *rid, *xff, *client;
    } rows[] = {
        {"PROXY TCP4 127.0.113.7 127.0.0.10 4242 80\r\n", "rp-trusted", "127.9.9.9, 127.0.113.7",
         " client=127.9.9.9 peer=127.0.113.7:4242 "},
        {"PROXY TCP4 127.0.100.9 127.0.0.10 5000 80\r\n", "rp-other", "127.9.9.9, 127.0.100.9",
         " client=127.0.100.9:5000 "},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        unsigned before = fake_origin_requests(o);
        struct raw_conn *c = raw_connect(harness_port(h, "pp"), PX_IO_MS);
        assert_non_null(c);
        char req[256];
        snprintf(req, sizeof(req),
                 "%sGET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.9.9.9\r\n"
                 "X-Request-Id: %s\r\n\r\n", rows[i].header, rows[i].rid);
        assert_int_equal(raw_send_str(c, req), 0);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        raw_response_free(&r);
        raw_close(c);
        assert_int_equal(fake_origin_wait_requests(o, before + 1, PX_IO_MS), 0);
        char *xff = fake_origin_request_header(o, before, "X-Forwarded-For");
        if (!xff || strcmp(xff, rows[i].xff) != 0)
            fail_msg("%s: X-Forwarded-For '%s', not '%s'", rows[i].rid, xff ? xff : "(none)",
                     rows[i].xff);
        free(xff);
        char *line = px_log_line_for_id(h, rows[i].rid);
        if (!strstr(line, rows[i].client))
            fail_msg("%s: no '%s' in %s", rows[i].rid, rows[i].client, line);
        free(line);
    }
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_real_ip_after_header),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_reload_flips_the_flag),
        cmocka_unit_test(test_places_and_counts),
        cmocka_unit_test(test_ipv6_balancer_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
