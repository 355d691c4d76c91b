/*
 * test_mirror.c — request mirroring (mirror = UPSTREAM): the staging origin gets the request as
 * the primary got it, plus X-Portico-Mirror: 1; the client gets the primary's answer at once
 * whatever the staging origin does (stalls, refuses); bodies over 64 KiB and upgrades are not
 * mirrored; mirror_percent samples; HTTP/2 streams are mirrored; the keys are refused at their
 * lines when they name no upstream, the route's own, or a share out of range. Then the rows of
 * the mutation pass: two mirrors, the in-flight bound at the send, the mirror's own timers and
 * outcomes, one copy per request however often it is retried, the failure log's rate limit. Fake origins on
 * 127.0.0.1, at ports of PORTICO_TEST_PORTS.
 */
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define IO_MS 5000
#define ADMIN "admin_listen = 127.0.0.1:{{port:admin}}\n"

/* An origin at a port of the test's range (PORTICO_TEST_PORTS), else the kernel's. */
static struct fake_origin *origin(struct fake_origin_opts opts)
{
    uint16_t port = 0;
    if (tu_free_port(&port) == 0)
        opts.port = port;
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    return o;
}

static struct fake_origin *origin_kind(enum fo_kind kind)
{
    return origin((struct fake_origin_opts){.kind = kind});
}

/* How a row's pair differs from the plain one; every field may be left out. */
struct pair_keys {
    const char *proxy;   /* [proxy] lines after admin_listen */
    const char *staging; /* [upstream staging] lines; NULL: first_byte_timeout = 60s, long */
    const char *route;   /* [route r] lines after `mirror = staging` (and further sections) */
    void (*prod_on_head)(void *arg); /* called as prod reads each request head */
    bool no_client;      /* the row makes its own connections, or none */
};

/* Route r to upstream prod (FO_OK) mirrored to staging, Portico before them, a client in c. */
struct pair {
    struct fake_origin *prod, *staging;
    struct harness *h;
    struct raw_conn *c;
};

/* pair_start(FO_SILENT, .proxy = "..."): the keys a row sets stand in the row, named. */
#define pair_start(kind, ...) pair_start_keys(kind, (struct pair_keys){__VA_ARGS__})

static struct pair pair_start_keys(enum fo_kind staging_kind, struct pair_keys keys)
{
    struct pair p = {0};
    p.prod = origin((struct fake_origin_opts){.kind = FO_OK, .on_head = keys.prod_on_head});
    p.staging = origin_kind(staging_kind);
    char proxy[256];
    snprintf(proxy, sizeof(proxy), "%s%s", ADMIN, keys.proxy ? keys.proxy : "");
    p.h = px_start(proxy,
                   "[upstream prod]\norigin = 127.0.0.1:%u\n"
                   "[upstream staging]\norigin = 127.0.0.1:%u\n%s"
                   "[route r]\nupstream = prod\nmirror = staging\n%s",
                   fake_origin_port(p.prod), fake_origin_port(p.staging),
                   keys.staging ? keys.staging : "first_byte_timeout = 60s\n",
                   keys.route ? keys.route : "");
    if (!keys.no_client)
        p.c = px_connect(p.h);
    return p;
}

/* The client leaves before the row ends (what it tests), once. */
static void pair_hang_up(struct pair *p)
{
    raw_close(p->c);
    p->c = NULL;
}

/* Stops Portico (a clean exit) and both origins, and returns Portico's stderr (the caller's). */
static char *pair_stop_stderr(struct pair *p)
{
    if (p->c)
        pair_hang_up(p);
    assert_int_equal(harness_stop(p->h), 0);
    char *err = harness_stderr(p->h);
    harness_free(p->h);
    fake_origin_stop(p->staging);
    fake_origin_stop(p->prod);
    return err;
}

static void pair_stop(struct pair *p)
{
    free(pair_stop_stderr(p));
}

/* Closes c, stops Portico (a clean exit), then the origins named, up to NULL: for the rows
 * whose upstreams are not a pair. */
static void stop_all(struct harness *h, struct raw_conn *c, ...)
{
    raw_close(c);
    px_stop(h);
    va_list ap;
    va_start(ap, c);
    for (struct fake_origin *o; (o = va_arg(ap, struct fake_origin *)) != NULL;)
        fake_origin_stop(o);
    va_end(ap);
}

/* The route's count of outcome, once it reads want (waited for: counted after the answer). */
static void wait_count(struct harness *h, const char *outcome, double want)
{
    char series[160];
    snprintf(series, sizeof(series), "portico_mirror_requests_total{route=\"r\",outcome=\"%s\"}",
             outcome);
    double got = scrape_wait(harness_port(h, "admin"), series, want, IO_MS);
    if (got != want)
        fail_msg("%s: %g, want %g", series, got, want);
}

/* Sends req on c and reads the answer: its status, and how long it took (ms) in *ms. */
static int exchange(struct raw_conn *c, const char *req, size_t len, int64_t *ms)
{
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send(c, req, len ? len : strlen(req)), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, IO_MS), 0);
    if (ms)
        *ms = tu_now_ms() - t0;
    int status = r.status;
    raw_response_free(&r);
    return status;
}

/* Sends GET path n times on c, one after the other: each is answered 200. */
static void gets_answered(struct raw_conn *c, const char *path, int n)
{
    char req[128];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    for (int i = 0; i < n; i++)
        assert_int_equal(exchange(c, req, 0, NULL), 200);
}

/* The mirror origin gets the request as the primary got it (method, rewritten path, header
 * rules' fields, body), with X-Portico-Mirror: 1 that the primary never sees; mirror_body = off
 * sends the head alone, without its framing. */
static void test_mirror_gets_request(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK,
                               .route = "prefix = /api/\nrewrite_prefix = /v1/\n"
                                        "request_header = X-Env: prod\n"
                                        "[route nobody]\nprefix = /nobody/\nupstream = prod\n"
                                        "mirror = staging\nmirror_body = off\n");
    assert_int_equal(exchange(p.c, "POST /api/items?x=1 HTTP/1.1\r\nHost: shop\r\n"
                                   "Content-Length: 5\r\n\r\nhello", 0, NULL), 200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 1, IO_MS), 0);
    char *head = fake_origin_request_head(p.staging, 0);
    print_message("mirror got:\n%s\n", head);
    assert_true(px_starts(head, "POST /v1/items?x=1 HTTP/1.1\r\n"));
    free(head);
    char *v = fake_origin_request_header(p.staging, 0, "X-Portico-Mirror");
    assert_string_equal(v, "1");
    free(v);
    v = fake_origin_request_header(p.staging, 0, "X-Env");
    assert_string_equal(v, "prod");
    free(v);
    v = fake_origin_request_header(p.staging, 0, "Host");
    assert_string_equal(v, "shop");
    free(v);
    size_t len = 0;
    char *body = fake_origin_request_body(p.staging, 0, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(body, "hello", 5);
    free(body);
    /* the primary's request carries no marker */
    assert_null(fake_origin_request_header(p.prod, 0, "X-Portico-Mirror"));
    wait_count(p.h, "answered", 1);

    /* a chunked body goes as the origin got it, last chunk included */
    static const char chunked[] = "PUT /api/c HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked"
                                  "\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_int_equal(exchange(p.c, chunked, 0, NULL), 200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 2, IO_MS), 0);
    body = fake_origin_request_body(p.staging, 1, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(body, "abcde", 5);
    free(body);

    /* mirror_body = off: the head alone, no Content-Length */
    assert_int_equal(exchange(p.c, "POST /nobody/x HTTP/1.1\r\nHost: shop\r\n"
                                   "Content-Length: 3\r\n\r\nabc", 0, NULL), 200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 3, IO_MS), 0);
    head = fake_origin_request_head(p.staging, 2);
    assert_true(px_starts(head, "POST /nobody/x HTTP/1.1\r\n"));
    assert_false(tu_contains(head, "Content-Length"));
    assert_true(tu_contains(head, "X-Portico-Mirror: 1\r\n"));
    free(head);
    pair_stop(&p);
}

/* A mirror origin that never answers: every answer of the primary comes at once on the same
 * keep-alive connection, mirror_max_in_flight of them are under way and the rest dropped,
 * counted. */
static void test_mirror_stalls(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_SILENT, .proxy = "mirror_max_in_flight = 2\n");
    int64_t worst = 0;
    for (int i = 0; i < 6; i++) {
        int64_t ms;
        assert_int_equal(exchange(p.c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 0, &ms), 200);
        worst = ms > worst ? ms : worst;
    }
    print_message("slowest of 6 answers with a mirror that never answers: %lld ms\n",
                  (long long)worst);
    /* the mirror's first_byte_timeout is 60 s: an answer that waited on it would show */
    assert_true(worst < (SANITIZED ? 2000 : 1000));
    assert_int_equal(fake_origin_wait_requests(p.staging, 2, IO_MS), 0);
    wait_count(p.h, "dropped", 4);
    assert_int_equal(fake_origin_requests(p.staging), 2);
    assert_int_equal(fake_origin_requests(p.prod), 6);
    pair_stop(&p);
}

/* A mirror origin that refuses connections: the client never knows; each is counted failed and
 * the error log says so once, not once per request. */
static void test_mirror_refused(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_REFUSE);
    gets_answered(p.c, "/x", 3);
    wait_count(p.h, "failed", 3);
    assert_int_equal(harness_wait_log(p.h, "mirror to [upstream staging] (route r) failed", IO_MS),
                     0);
    char *err = pair_stop_stderr(&p);
    unsigned lines = 0;
    for (const char *at = err; (at = strstr(at, "mirror to [upstream staging]")) != NULL; at++)
        lines++;
    free(err);
    if (lines != 1) /* three within a second: one line */
        fail_msg("%u error-log lines for 3 failed mirror requests", lines);
}

/* Bodies: 64 KiB is mirrored, one byte more is not (announced, or chunked past it); an upgrade
 * is never. */
static void test_mirror_body_bound(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK);
    size_t big = 64 * 1024 + 1, cap = big + 256;
    char *req = malloc(cap);
    assert_non_null(req);
    /* 64 KiB exactly: mirrored */
    int n = snprintf(req, cap, "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
                     big - 1);
    memset(req + n, 'a', big - 1);
    assert_int_equal(exchange(p.c, req, (size_t)n + big - 1, NULL), 200);
    wait_count(p.h, "answered", 1);
    size_t len = 0;
    char *body = fake_origin_request_body(p.staging, 0, &len);
    assert_int_equal(len, big - 1);
    free(body);
    /* one byte more: not */
    n = snprintf(req, cap, "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", big);
    memset(req + n, 'b', big);
    assert_int_equal(exchange(p.c, req, (size_t)n + big, NULL), 200);
    wait_count(p.h, "too_large", 1);
    /* chunked, past the bound only as it comes */
    n = snprintf(req, cap, "POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "%zx\r\n", big);
    memset(req + n, 'c', big);
    n += (int)big;
    n += snprintf(req + n, cap - (size_t)n, "\r\n0\r\n\r\n");
    assert_int_equal(exchange(p.c, req, (size_t)n, NULL), 200);
    wait_count(p.h, "too_large", 2);
    free(req);
    /* an upgrade: never */
    assert_int_equal(exchange(p.c, "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                                   "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 0, NULL),
                     200);
    wait_count(p.h, "streaming", 1);
    assert_int_equal(fake_origin_requests(p.staging), 1);
    pair_stop(&p);
}

/* mirror_percent = 25: exactly 5 of 20 requests are mirrored, 15 sampled out. */
static void test_mirror_percent(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK, .route = "mirror_percent = 25\n");
    gets_answered(p.c, "/p", 20);
    wait_count(p.h, "sampled_out", 15);
    wait_count(p.h, "answered", 5);
    assert_int_equal(fake_origin_requests(p.staging), 5);
    pair_stop(&p);
}

/* An HTTP/2 stream is mirrored as HTTP/1.1, its body with it. */
static void test_mirror_http2(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK, .proxy = "listen = 127.0.0.1:{{port:h2c}} h2c\n",
                               .no_client = true);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/h2/post", harness_port(p.h, "h2c"));
    const char *const argv[] = {"curl", "-sS", "--max-time", "10", "--http2-prior-knowledge",
                                "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                "--data-binary", "from-h2", url, NULL};
    struct tu_cmd_result res = {0};
    px_run_ok(argv, &res);
    assert_string_equal(res.out, "2 200");
    tu_cmd_result_free(&res);
    assert_int_equal(fake_origin_wait_requests(p.staging, 1, IO_MS), 0);
    char *head = fake_origin_request_head(p.staging, 0);
    print_message("mirror got:\n%s\n", head);
    assert_true(px_starts(head, "POST /h2/post HTTP/1.1\r\n"));
    assert_true(tu_contains(head, "X-Portico-Mirror: 1\r\n"));
    free(head);
    size_t len = 0;
    char *body = fake_origin_request_body(p.staging, 0, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(body, "from-h2", 7);
    free(body);
    wait_count(p.h, "answered", 1);
    pair_stop(&p);
}

static atomic_int heads_seen; /* request heads the primary origin read */

static void head_seen(void *arg)
{
    (void)arg;
    atomic_fetch_add(&heads_seen, 1);
}

/* A client gone before its request was whole: nothing is mirrored (unsent), the copy freed
 * (ASan: no leak); one gone after it was whole does not take back its mirror request. */
static void test_mirror_client_gone(void **state)
{
    (void)state;
    atomic_store(&heads_seen, 0);
    struct pair p = pair_start(FO_OK, .prod_on_head = head_seen);
    assert_int_equal(raw_send_str(p.c, "POST /g HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
                                       "abc"),
                     0);
    /* the head reached the origin: the copy was made with it */
    for (int64_t end = tu_now_ms() + IO_MS; !atomic_load(&heads_seen) && tu_now_ms() < end;)
        sched_yield();
    assert_int_equal(atomic_load(&heads_seen), 1);
    pair_hang_up(&p);
    wait_count(p.h, "unsent", 1);
    assert_int_equal(fake_origin_requests(p.staging), 0);
    pair_stop(&p);
}

/* A reload: a mirror request under way on the old worker is cut when that worker ends, and
 * counted. */
static void test_mirror_reload_cuts(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_SILENT);
    assert_int_equal(exchange(p.c, "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 0,
                              NULL),
                     200);
    pair_hang_up(&p);
    assert_int_equal(fake_origin_wait_requests(p.staging, 1, IO_MS), 0);
    assert_int_equal(harness_signal(p.h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(p.h, "the previous workers have finished", IO_MS), 0);
    wait_count(p.h, "cut", 1);
    pair_stop(&p);
}

/* A client's own X-Portico-Mirror is removed, in the head or a trailer: the primary never sees a
 * request marked as a copy (an origin that skips side effects for copies would skip them for a
 * real one), and the mirror gets the one marker Portico writes. */
static void test_mirror_client_marker(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK);
    assert_int_equal(exchange(p.c, "GET /m HTTP/1.1\r\nHost: t\r\nX-Portico-Mirror: 1\r\n"
                                   "x_portico_mirror: yes\r\n\r\n", 0, NULL),
                     200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 1, IO_MS), 0);
    char *head = fake_origin_request_head(p.prod, 0);
    print_message("primary got:\n%s\n", head);
    assert_false(tu_contains(head, "X-Portico-Mirror"));
    assert_false(tu_contains(head, "x_portico_mirror"));
    free(head);
    head = fake_origin_request_head(p.staging, 0);
    const char *first = strstr(head, "X-Portico-Mirror");
    assert_non_null(first);
    assert_null(strstr(first + 1, "X-Portico-Mirror"));
    assert_false(tu_contains(head, "x_portico_mirror"));
    free(head);
    /* nor in a trailer, which frameworks merge into the head's fields */
    assert_int_equal(exchange(p.c, "POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                   "\r\n2\r\nab\r\n0\r\nX-Portico-Mirror: 1\r\n\r\n", 0, NULL),
                     200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 2, IO_MS), 0);
    size_t len = 0;
    char *raw = fake_origin_request(p.prod, 1, &len);
    print_message("primary got:\n%.*s\n", (int)len, raw);
    assert_null(memmem(raw, len, "Portico-Mirror", 14));
    free(raw);
    raw = fake_origin_request(p.staging, 1, &len);
    const char *at = memmem(raw, len, "X-Portico-Mirror", 16);
    assert_non_null(at);
    assert_null(memmem(at + 16, len - (size_t)(at + 16 - raw), "Portico-Mirror", 14));
    free(raw);
    pair_stop(&p);
}

/* FO_CALL: an answer that never ends, its body's bytes every *arg ms (0: as fast as the socket
 * takes them), until Portico closes (or 20 s, the test's own bound). */
static int endless_answer(int fd, void *arg)
{
    int every_ms = *(const int *)arg;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    char chunk[16384];
    memset(chunk, 'e', sizeof(chunk));
    if (send(fd, head, sizeof(head) - 1, MSG_NOSIGNAL) < 0)
        return 1;
    for (int64_t end = tu_now_ms() + 20000; tu_now_ms() < end;) {
        if (send(fd, chunk, every_ms ? 1 : sizeof(chunk), MSG_NOSIGNAL) < 0)
            return 1;
        if (every_ms)
            poll(NULL, 0, every_ms); /* the trickle's pace, not a wait on Portico */
    }
    return 1;
}

/* A mirror origin whose answer never ends holds its place a bounded time, not for ever: one
 * that streams it as fast as it can is closed after MIRROR_ANSWER_MAX (a production worker
 * reading staging's bytes without end), one that trickles it after read_timeout from its first
 * byte (each byte came within read_timeout of the last). */
static void test_mirror_endless_answer(void **state)
{
    (void)state;
    static int fast = 0, slow = 100;
    const struct fo_step fast_steps[] = {FO_CALL(endless_answer, &fast), FO_END()};
    const struct fo_step slow_steps[] = {FO_CALL(endless_answer, &slow), FO_END()};
    struct fake_origin *prod = origin_kind(FO_OK);
    struct fake_origin *flood = origin((struct fake_origin_opts){.kind = FO_SCRIPT,
                                                                 .script = fast_steps});
    struct fake_origin *drip = origin((struct fake_origin_opts){.kind = FO_SCRIPT,
                                                                .script = slow_steps});
    struct harness *h = px_start(ADMIN,
                                 "[upstream prod]\norigin = 127.0.0.1:%u\n"
                                 "[upstream flood]\norigin = 127.0.0.1:%u\n"
                                 "[upstream drip]\norigin = 127.0.0.1:%u\nread_timeout = 1s\n"
                                 "[route r]\nupstream = prod\nmirror = flood\n"
                                 "[route d]\nprefix = /drip/\nupstream = prod\nmirror = drip\n",
                                 fake_origin_port(prod), fake_origin_port(flood),
                                 fake_origin_port(drip));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(exchange(c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    wait_count(h, "answered", 1);
    int64_t t0 = tu_now_ms();
    assert_int_equal(exchange(c, "GET /drip/x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    double got = scrape_wait(harness_port(h, "admin"),
                             "portico_mirror_requests_total{route=\"d\",outcome=\"answered\"}",
                             1, IO_MS);
    print_message("a trickled endless answer ended after %lld ms (read_timeout 1 s)\n",
                  (long long)(tu_now_ms() - t0));
    assert_true(got == 1);
    stop_all(h, c, drip, flood, prod, NULL);
}

/* ---- refused at load ---- */

static const struct {
    const char *route;         /* [route r]'s keys from line 9 on */
    int line;
    const char *message;       /* after "FILE:LINE: " */
} refusal_rows[] = {
    {"mirror = nowhere\n", 9, "[route r]: mirror: no [upstream nowhere]"},
    {"mirror = prod\n", 9, "[route r]: mirror = prod is the route's own upstream"},
    {"mirror = staging\nmirror_percent = 101\n", 10, "mirror_percent"},
    {"mirror = staging\nmirror = staging\n", 10, "[route r]: mirror = staging named twice"},
    {"mirror = staging\nmirror = staging\nmirror = staging\nmirror = staging\nmirror = staging\n",
     13, "mirror: at most 4 per route"},
};

static void test_mirror_refused_at_load(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(refusal_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                              "[upstream prod]\norigin = sim\n"
                                              "[upstream staging]\norigin = sim\n"
                                              "[route r]\nupstream = prod\n%s",
                                              refusal_rows[i].route),
                         0);
        struct tu_cmd_result res = {0};
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[1200];
        snprintf(want, sizeof(want), "%s:%d: %s", harness_config_path(h), refusal_rows[i].line,
                 refusal_rows[i].message);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", refusal_rows[i].route, want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
    /* idle keys load, with a warning at their line */
    static const char *const idle[] = {"mirror_percent = 50", "mirror_body = off"};
    for (size_t i = 0; i < ARRAY_SIZE(idle); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h,
                                              "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                              "[upstream prod]\norigin = sim\n"
                                              "[upstream staging]\norigin = sim\n"
                                              "[route r]\nupstream = prod\n%s\n",
                                              idle[i]),
                         0);
        struct tu_cmd_result res = {0};
        assert_int_equal(harness_check_config(h, &res), 0);
        char want[1200];
        snprintf(want, sizeof(want), "%s:9: warning: [route r]: %.*s without mirror: it does "
                 "nothing", harness_config_path(h), (int)strcspn(idle[i], " "), idle[i]);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", idle[i], want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
}

/* mirror_percent = 33: none of the first 3 (the running sum reaches 99, not 100), then exactly 6
 * of 20. A sum started over at each mirrored request (5 of 20), or one taken at 99 (the 3rd
 * mirrored), is not the share asked. */
static void test_mirror_percent_not_a_divisor(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK, .route = "mirror_percent = 33\n");
    gets_answered(p.c, "/p", 3);
    wait_count(p.h, "sampled_out", 3);
    gets_answered(p.c, "/p", 17); /* the 4th to the 20th */
    wait_count(p.h, "sampled_out", 14);
    wait_count(p.h, "answered", 6);
    assert_int_equal(fake_origin_requests(p.staging), 6);
    pair_stop(&p);
}

/* Two mirrors: each gets its own copy (the last the copy itself, the first a copy of it), and a
 * request sampled out is counted once per mirror, as every outcome is. An Expect: 100-continue
 * relayed to the origin (expect = relay) is not in the copy: its body follows at once. */
static void test_mirror_two_mirrors(void **state)
{
    (void)state;
    struct fake_origin *prod = origin_kind(FO_OK), *one = origin_kind(FO_OK),
                       *two = origin_kind(FO_OK);
    struct harness *h = px_start(ADMIN,
                                 "[upstream prod]\norigin = 127.0.0.1:%u\n"
                                 "[upstream one]\norigin = 127.0.0.1:%u\n"
                                 "[upstream two]\norigin = 127.0.0.1:%u\n"
                                 "[route r]\nprefix = /r/\nupstream = prod\nmirror = one\n"
                                 "mirror = two\nexpect = relay\n"
                                 "[route none]\nprefix = /none/\nupstream = prod\nmirror = one\n"
                                 "mirror = two\nmirror_percent = 0\n",
                                 fake_origin_port(prod), fake_origin_port(one),
                                 fake_origin_port(two));
    struct raw_conn *c = px_connect(h);
    assert_int_equal(exchange(c, "POST /r/x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                                 "Content-Length: 2\r\n\r\nhi", 0, NULL), 200);
    assert_int_equal(fake_origin_wait_requests(one, 1, IO_MS), 0);
    assert_int_equal(fake_origin_wait_requests(two, 1, IO_MS), 0);
    wait_count(h, "answered", 2);
    assert_int_equal(fake_origin_requests(one), 1);
    assert_int_equal(fake_origin_requests(two), 1);
    char *v = fake_origin_request_header(prod, 0, "Expect");
    assert_non_null(v); /* relayed to the origin: the copy's lack of it is the mirror's doing */
    free(v);
    for (struct fake_origin *m = one; m; m = m == one ? two : NULL) {
        assert_null(fake_origin_request_header(m, 0, "Expect"));
        size_t len = 0;
        char *body = fake_origin_request_body(m, 0, &len);
        assert_int_equal(len, 2);
        assert_memory_equal(body, "hi", 2);
        free(body);
    }
    assert_int_equal(exchange(c, "GET /none/x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    char series[160];
    snprintf(series, sizeof(series),
             "portico_mirror_requests_total{route=\"none\",outcome=\"sampled_out\"}");
    double got = scrape_wait(harness_port(h, "admin"), series, 2, IO_MS);
    if (got != 2)
        fail_msg("%s: %g, want 2 (one per mirror)", series, got);
    stop_all(h, c, two, one, prod, NULL);
}

/* A body of exactly 64 KiB (MIRROR_BODY_MAX, BODY_SPLICE_MIN) after its head: mirrored whole, so
 * it is not spliced (splice is on by default): spliced bytes would pass the copy by, and the
 * mirror would get the head and none of the body. */
static void test_mirror_body_at_splice_min(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK);
    static const char head[] = "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n";
    assert_int_equal(raw_send(p.c, head, strlen(head)), 0);
    /* the head went to the origin (its connection made) before a byte of the body came */
    assert_int_equal(fake_origin_wait_connections(p.prod, 1, IO_MS), 0);
    char *body = malloc(65536);
    assert_non_null(body);
    for (size_t i = 0; i < 65536; i++)
        body[i] = (char)('a' + i % 26);
    assert_int_equal(exchange(p.c, body, 65536, NULL), 200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 1, IO_MS), 0);
    size_t len = 0;
    char *got = fake_origin_request_body(p.staging, 0, &len);
    assert_int_equal(len, 65536);
    assert_memory_equal(got, body, 65536);
    free(got);
    free(body);
    wait_count(p.h, "answered", 1);
    pair_stop(&p);
}

/* mirror_max_in_flight is judged again when the copy goes: a body's request whose copy was made
 * (none under way) is dropped when, by the time its body is whole, another request's mirror
 * took the one place. */
static void test_mirror_bound_when_sent(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_SILENT, .proxy = "mirror_max_in_flight = 1\n");
    struct raw_conn *a = p.c, *b = px_connect(p.h);
    static const char head[] = "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhe";
    assert_int_equal(raw_send(a, head, strlen(head)), 0);
    assert_int_equal(fake_origin_wait_connections(p.prod, 1, IO_MS), 0); /* a's copy made */
    assert_int_equal(exchange(b, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    assert_int_equal(fake_origin_wait_requests(p.staging, 1, IO_MS), 0); /* b's, held */
    assert_int_equal(exchange(a, "llo", 0, NULL), 200);
    wait_count(p.h, "dropped", 1);
    assert_int_equal(fake_origin_connections(p.staging), 1);
    raw_close(b);
    pair_stop(&p);
}

/* A mirror origin that never answers is given up by its upstream's first_byte_timeout, counted
 * failed (without its timer the connection was held until the worker ended). */
static void test_mirror_times_out(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_SILENT, .staging = "first_byte_timeout = 200ms\n");
    assert_int_equal(exchange(p.c, "GET /t HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    wait_count(p.h, "failed", 1);
    pair_stop(&p);
}

/* A request retried on another origin after it was sent (retry_sent) is mirrored once: the copy
 * is made at its first send, not again at the retry's. */
static void test_mirror_once_per_retry(void **state)
{
    (void)state;
    struct fake_origin *bad = origin_kind(FO_CLOSE_EMPTY), *good = origin_kind(FO_OK),
                       *staging = origin_kind(FO_OK);
    struct harness *h = px_start(ADMIN,
                                 "[upstream prod]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\nretry_sent = on\n"
                                 "[upstream staging]\norigin = 127.0.0.1:%u\n"
                                 "[route r]\nupstream = prod\nmirror = staging\n",
                                 fake_origin_port(bad), fake_origin_port(good),
                                 fake_origin_port(staging));
    struct raw_conn *c = px_connect(h);
    /* round robin: the first request goes to bad, then to good */
    assert_int_equal(exchange(c, "GET /once HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    assert_int_equal(fake_origin_requests(bad), 1);
    wait_count(h, "answered", 1);
    /* a second copy would have started before the answer came: give it a moment to show */
    assert_int_not_equal(fake_origin_wait_requests(staging, 2, 500), 0);
    stop_all(h, c, staging, good, bad, NULL);
}

/* The failure lines of a refusing mirror, a second apart at most one: the next says how many
 * were left out since, and the one after that none (the count starts over at each line). */
static void test_mirror_log_lines_count_left_out(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_REFUSE);
    int64_t first = tu_now_ms();
    gets_answered(p.c, "/x", 3);
    wait_count(p.h, "failed", 3);
    for (int round = 0; round < 2; round++) {
        /* the rate limit is a second per line: the time passing is what is tested */
        while (tu_now_ms() < first + 1100)
            nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000}, NULL);
        first = tu_now_ms();
        assert_int_equal(exchange(p.c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
        wait_count(p.h, "failed", 4 + round);
    }
    char *err = pair_stop_stderr(&p);
    unsigned lines = 0, counted = 0;
    for (const char *at = err; (at = strstr(at, "mirror to [upstream staging]")) != NULL; at++) {
        const char *end = strchr(at, '\n');
        size_t n = end ? (size_t)(end - at) : strlen(at);
        lines++;
        bool two = memmem(at, n, "(2 more left out)", 17) != NULL;
        bool any = memmem(at, n, "more left out", 13) != NULL;
        if (any && !(lines == 2 && two))
            fail_msg("line %u says what was left out wrongly:\n%s", lines, err);
        counted += two;
    }
    if (lines != 3 || counted != 1)
        fail_msg("want 3 lines, the 2nd with \"(2 more left out)\": %u lines:\n%s", lines, err);
    free(err);
}

/* A mirror upstream of two origins: its requests go to each in turn. */
static void test_mirror_origins_in_turn(void **state)
{
    (void)state;
    struct fake_origin *prod = origin_kind(FO_OK), *one = origin_kind(FO_OK),
                       *two = origin_kind(FO_OK);
    struct harness *h = px_start(ADMIN,
                                 "[upstream prod]\norigin = 127.0.0.1:%u\n"
                                 "[upstream staging]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u\n"
                                 "[route r]\nupstream = prod\nmirror = staging\n",
                                 fake_origin_port(prod), fake_origin_port(one),
                                 fake_origin_port(two));
    struct raw_conn *c = px_connect(h);
    gets_answered(c, "/x", 4);
    wait_count(h, "answered", 4);
    assert_int_equal(fake_origin_requests(one), 2);
    assert_int_equal(fake_origin_requests(two), 2);
    stop_all(h, c, two, one, prod, NULL);
}

/* mirror_max_in_flight = 1: a mirror request that ended gives its place back, so one request
 * after another (each mirror answered before the next) is each mirrored. */
static void test_mirror_place_given_back(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_OK, .proxy = "mirror_max_in_flight = 1\n");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(exchange(p.c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
        wait_count(p.h, "answered", i + 1); /* counted once its place is free */
    }
    assert_int_equal(fake_origin_requests(p.staging), 3);
    pair_stop(&p);
}

/* A mirror origin that answers bytes that are not HTTP: failed, not answered. */
static void test_mirror_garbage_is_failed(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_GARBAGE);
    assert_int_equal(exchange(p.c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    wait_count(p.h, "failed", 1);
    assert_int_equal(harness_wait_log(p.h, "not an HTTP response", IO_MS), 0);
    pair_stop(&p);
}

/* A mirror origin that began its answer ("HTTP/1.1 200 OK...") and stalls is given up by its
 * read_timeout, the phase after the first byte, and counted answered: a response came. */
static void test_mirror_answer_stalls(void **state)
{
    (void)state;
    struct pair p = pair_start(FO_PARTIAL_HEAD, .staging = "first_byte_timeout = 60s\n"
                                                           "read_timeout = 200ms\n");
    assert_int_equal(exchange(p.c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n", 0, NULL), 200);
    wait_count(p.h, "answered", 1);
    pair_stop(&p);
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mirror_gets_request),
        cmocka_unit_test(test_mirror_stalls),
        cmocka_unit_test(test_mirror_refused),
        cmocka_unit_test(test_mirror_body_bound),
        cmocka_unit_test(test_mirror_percent),
        cmocka_unit_test(test_mirror_http2),
        cmocka_unit_test(test_mirror_client_gone),
        cmocka_unit_test(test_mirror_reload_cuts),
        cmocka_unit_test(test_mirror_client_marker),
        cmocka_unit_test(test_mirror_endless_answer),
        cmocka_unit_test(test_mirror_refused_at_load),
        cmocka_unit_test(test_mirror_percent_not_a_divisor),
        cmocka_unit_test(test_mirror_two_mirrors),
        cmocka_unit_test(test_mirror_body_at_splice_min),
        cmocka_unit_test(test_mirror_bound_when_sent),
        cmocka_unit_test(test_mirror_times_out),
        cmocka_unit_test(test_mirror_once_per_retry),
        cmocka_unit_test(test_mirror_log_lines_count_left_out),
        cmocka_unit_test(test_mirror_origins_in_turn),
        cmocka_unit_test(test_mirror_place_given_back),
        cmocka_unit_test(test_mirror_garbage_is_failed),
        cmocka_unit_test(test_mirror_answer_stalls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
