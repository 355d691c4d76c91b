/*
 * test_splice.c — `splice = on` end to end with the real portico binary: a Content-Length body
 * of BODY_SPLICE_MIN or more between a plain HTTP/1.1 client and a plain origin goes socket →
 * pipe → socket, both ways (request: all of it that did not come with the head; response: all
 * but its last byte), and everything else is copied as before.
 *
 * Every body is the stream origin's pattern (tests/support/stream_origin.h), checked byte by
 * byte on arrival; every test also reads portico_spliced_bytes_total, so it proves that the
 * bytes were spliced (or copied), not only that they arrived, and counts Portico's pipes, which
 * must be gone once an exchange is over. Cases: large bodies both ways with splice on and off;
 * keep-alive and pipelining across a spliced body (the splice stops exactly at the body's end,
 * the origin connection is reused); bodies around the threshold and after a 100 Continue
 * (exactly the bytes expected spliced); a spliced PUT retried after a stale pooled connection;
 * an origin that closes mid-splice, a client that leaves mid-download and mid-upload, an early
 * response (logged and counted as with copying, no descriptor left behind, Portico serves on);
 * a client that stops reading a large download (in order, small RSS, no busy loop); a TLS
 * client, chunked bodies, faults that cut or pace a body, and no pipe to be had (the
 * descriptor limit): copied, intact.
 *
 * Under AddressSanitizer (which this binary shares with the portico it tests) the sizes shrink
 * and the RSS bound is only printed; every byte is still checked.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/body.h" /* BODY_SPLICE_MIN */

#include "../support/certs.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/scrape.h"
#include "../support/stream_origin.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define BIG (SANITIZED ? 8 * MiB : 32 * MiB)    /* the large bodies of test_large_bodies */
#define SLOW (64 * MiB)  /* the slow client's download: more than the buffers on the way hold */
#define COPY_SIZE (SANITIZED ? 2 * MiB : 4 * MiB) /* test_copied's bodies */
/* What a splice may leave to the copy: the body bytes read with the head (at most one read of
 * 256 KiB), a response's last byte, and a margin. */
#define SLACK (512 * KiB)
#define RSS_LIMIT_KB (32 * 1024)
#define TRANSFER_MS 60000 /* bound of one whole transfer */
#define METRIC_SPLICED "portico_spliced_bytes_total"

/* ---- Portico and its numbers ---- */

/* Portico in front of the stream origin, with an admin listener for the metrics: proxy_extra
 * goes into [proxy], upstream_extra into [upstream u], more after it. */
static struct harness *start(struct stream_origin *o, const char *proxy_extra,
                             const char *upstream_extra, const char *more)
{
    char extra[1024];
    snprintf(extra, sizeof(extra), "admin_listen = 127.0.0.1:{{port:admin}}\n%s",
             proxy_extra ? proxy_extra : "");
    return px_start(extra, "[upstream u]\norigin = 127.0.0.1:%u\n%s%s", o->port,
                    upstream_extra ? upstream_extra : "", more ? more : "");
}

/* A counter's value; a labelled series not written yet is 0. */
static uint64_t metric(struct harness *h, const char *series)
{
    char *text = scrape_metrics(harness_port(h, "admin"), PX_IO_MS);
    if (!text)
        fail_msg("no metrics from the admin listener");
    double v = scrape_value(text, series);
    free(text);
    return v < 0 ? 0 : (uint64_t)v;
}

/* portico_spliced_bytes_total, which is always written (0 included). */
static uint64_t spliced(struct harness *h)
{
    double v = scrape_metric(harness_port(h, "admin"), METRIC_SPLICED, PX_IO_MS);
    if (v < 0)
        fail_msg("no %s in the metrics", METRIC_SPLICED);
    return (uint64_t)v;
}

/* The spliced bytes of one transfer of n bytes, from before: at least n - SLACK when splicing,
 * exactly 0 when not; never more than the body. Returns the new total. */
static uint64_t check_spliced(struct harness *h, uint64_t before, uint64_t n, bool expect,
                              const char *what)
{
    uint64_t now = spliced(h), d = now - before;
    print_message("%s: %llu of %llu bytes spliced\n", what, (unsigned long long)d,
                  (unsigned long long)n);
    if (d > n)
        fail_msg("%s: %llu bytes spliced, more than the body's %llu", what,
                 (unsigned long long)d, (unsigned long long)n);
    if (expect && d + SLACK < n)
        fail_msg("%s: only %llu of %llu bytes spliced", what, (unsigned long long)d,
                 (unsigned long long)n);
    if (!expect && d != 0)
        fail_msg("%s: %llu bytes spliced, none expected", what, (unsigned long long)d);
    return now;
}

/* Waits (bounded) until Portico holds exactly the descriptors of `base` again (px_wait_fds). */
static void wait_fds(struct harness *h, struct px_fds base, const char *what)
{
    struct px_fds now = px_wait_fds(harness_pid(h), base);
    if (now.all != base.all || now.pipes != base.pipes)
        fail_msg("%s: portico holds %d descriptors (%d pipes), %d (%d pipes) before", what,
                 now.all, now.pipes, base.all, base.pipes);
}

/* A splice's pipe goes as soon as its last byte went out, which is before the receiver could
 * answer or hold the whole response: once an exchange is over, Portico has its pipes of
 * before. */
static void check_no_pipe(struct harness *h, struct px_fds base, const char *what)
{
    struct px_fds now = px_count_fds(harness_pid(h));
    if (now.pipes != base.pipes)
        fail_msg("%s: portico holds %d pipes, %d before", what, now.pipes, base.pipes);
}

/* ---- the client side ---- */

/* Sends n pattern bytes on c in blocks. */
static void send_pattern(struct raw_conn *c, uint64_t n)
{
    unsigned char *block = malloc(SO_BLOCK);
    assert_non_null(block);
    for (uint64_t off = 0; off < n;) {
        size_t k = (size_t)(n - off < SO_BLOCK ? n - off : SO_BLOCK);
        so_pattern_fill(block, off, k);
        if (raw_send(c, block, k) != 0)
            fail_msg("upload: send failed at %llu: errno %d", (unsigned long long)off,
                     raw_last_errno(c));
        off += k;
    }
    free(block);
}

/* Sends n bytes on c that nobody checks (Portico drops them): one block over and over. */
static void send_filler(struct raw_conn *c, uint64_t n)
{
    static unsigned char block[SO_BLOCK];
    for (uint64_t off = 0; off < n; off += SO_BLOCK)
        if (raw_send(c, block, (size_t)(n - off < SO_BLOCK ? n - off : SO_BLOCK)) != 0)
            fail_msg("filler: send failed at %llu: errno %d", (unsigned long long)off,
                     raw_last_errno(c));
}

/* The origin's answer to an upload of n bytes: "received=" its total so far. */
static void check_upload_response(struct raw_conn *c, struct stream_origin *o, uint64_t total)
{
    struct raw_response r;
    char want[64];
    assert_int_equal(raw_read_response(c, &r, TRANSFER_MS), 0);
    assert_int_equal(r.status, 200);
    snprintf(want, sizeof(want), "received=%llu", (unsigned long long)total);
    assert_string_equal(r.body, want);
    raw_response_free(&r);
    assert_int_equal(atomic_load(&o->bad_offset), -1);
}

enum dir { UP, DOWN };

/* When a body follows its head. */
enum feed {
    FEED_WITH_HEAD, /* at once: Portico's first read may take some of the body with the head */
    FEED_GATED,     /* once the other side has the head: Portico read none of the body with it */
    FEED_EXPECT,    /* an upload with Expect: 100-continue, sent once the origin's 100 came */
};

/* POSTs n pattern bytes by Content-Length on a new connection, and checks that the origin got
 * them all, intact. */
static void upload(struct harness *h, struct stream_origin *o, uint64_t n, enum feed how)
{
    uint64_t before = atomic_load(&o->received), heads = atomic_load(&o->heads);
    struct raw_conn *c = px_connect(h);
    char head[160];
    raw_set_send_timeout(c, TRANSFER_MS);
    snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: s\r\n%sContent-Length: %llu\r\n\r\n",
             how == FEED_EXPECT ? "Expect: 100-continue\r\n" : "", (unsigned long long)n);
    assert_int_equal(raw_send_str(c, head), 0);
    if (how == FEED_GATED)
        assert_int_equal(so_wait_count(o, &o->heads, heads + 1, PX_IO_MS), 0);
    if (how == FEED_EXPECT) {
        struct raw_head interim;
        assert_int_equal(raw_read_one_head(c, &interim, PX_IO_MS), 0);
        assert_int_equal(interim.status, 100);
        raw_head_free(&interim);
    }
    send_pattern(c, n);
    check_upload_response(c, o, before + n);
    raw_close(c);
}

/* Reads a response head on d: the status line must be 200, the Content-Length is returned. */
static uint64_t read_head(struct so_reader *d)
{
    char line[512];
    uint64_t length = UINT64_MAX;
    assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
    if (!px_starts(line, "HTTP/1.1 200 "))
        fail_msg("status line: %s", line);
    for (;;) {
        assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
        if (line[0] == '\0')
            break;
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            length = strtoull(line + 15, NULL, 10);
    }
    assert_true(length != UINT64_MAX);
    return length;
}

/* GETs /down-length/n on a new connection and checks every byte. With `gated`, the origin
 * sends the body only once the client has the head: Portico's first read had none of it. */
static void download(struct harness *h, struct stream_origin *o, uint64_t n, bool gated)
{
    struct so_reader *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    struct raw_conn *c = px_connect(h);
    d->fd = raw_fd(c);
    char req[128];
    snprintf(req, sizeof(req), "GET /down-length/%llu HTTP/1.1\r\nHost: s\r\n\r\n",
             (unsigned long long)n);
    so_hold_sending(o, gated);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(read_head(d), n);
    so_hold_sending(o, false);
    uint64_t off = 0;
    assert_int_equal(so_read_body(d, &off, n, false), 0);
    assert_int_equal(d->pos, d->len); /* nothing after the body */
    raw_close(c);
    free(d);
}

/* A response read with raw_read_response: 200 and n pattern bytes. */
static void check_pattern_response(const struct raw_response *r, uint64_t n)
{
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, n);
    assert_int_equal(so_pattern_check((const unsigned char *)r->body, 0, r->body_len), -1);
}

/* ---- tests ---- */

struct on_off_row {
    const char *why;
    const char *proxy;   /* [proxy] lines */
    bool spliced;
};

static const struct on_off_row on_off_rows[] = {
    /* the default: both directions go socket to socket */
    {"default (on)", "", true},
    /* switched off: the same bodies, every byte through Portico's buffers */
    {"splice = off", "splice = off\n", false},
};

/* BIG bytes up and BIG bytes down, every byte checked, with splice on and off. */
static void test_large_bodies(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(on_off_rows); i++) {
        const struct on_off_row *row = &on_off_rows[i];
        struct stream_origin *o = so_start();
        assert_non_null(o);
        struct harness *h = start(o, row->proxy, NULL, NULL);
        struct px_fds fds = px_count_fds(harness_pid(h));
        char what[96];
        uint64_t base = spliced(h);
        if (!row->spliced)
            assert_int_equal(base, 0);

        int64_t t0 = tu_now_ms();
        upload(h, o, BIG, FEED_WITH_HEAD);
        snprintf(what, sizeof(what), "%s: upload of %llu MiB in %lld ms", row->why,
                 (unsigned long long)(BIG >> 20), (long long)(tu_now_ms() - t0));
        base = check_spliced(h, base, BIG, row->spliced, what);
        check_no_pipe(h, fds, what);

        t0 = tu_now_ms();
        download(h, o, BIG, false);
        snprintf(what, sizeof(what), "%s: download of %llu MiB in %lld ms", row->why,
                 (unsigned long long)(BIG >> 20), (long long)(tu_now_ms() - t0));
        check_spliced(h, base, BIG, row->spliced, what);
        check_no_pipe(h, fds, what);
        px_stop(h);
        so_stop(o);
    }
}

/* On one client connection, in one write: a POST whose 1 MiB body is spliced, a GET and a small
 * POST right behind it; then a spliced download with a GET behind it. Every response comes, in
 * order and intact (the splice stopped exactly at each body's end), and all five requests went
 * on one origin connection. */
static void pipelined(const struct on_off_row *row)
{
    const uint64_t up = MiB, down = 2 * MiB;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    /* settle_time = 0: pipelined requests (waiting when a response ends) may take the origin
     * connection at once; by default they wait until it settled (upstream_pool.c) */
    struct harness *h = start(o, row->proxy, "settle_time = 0\n", NULL);
    struct px_fds fds = px_count_fds(harness_pid(h));
    uint64_t base = spliced(h);
    struct raw_conn *c = px_connect(h);
    raw_set_send_timeout(c, TRANSFER_MS);

    /* the POST, its body and the two requests behind it: one buffer, one send */
    static const char get[] = "GET /down-length/1000 HTTP/1.1\r\nHost: s\r\n\r\n";
    static const char post[] = "POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: 100\r\n\r\n";
    char head[128], what[96];
    int hl = snprintf(head, sizeof(head),
                      "POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: %llu\r\n\r\n",
                      (unsigned long long)up);
    size_t total = (size_t)hl + up + strlen(get) + strlen(post) + 100;
    unsigned char *buf = malloc(total), *p = buf;
    assert_non_null(buf);
    memcpy(p, head, (size_t)hl);
    p += hl;
    so_pattern_fill(p, 0, up);
    p += up;
    memcpy(p, get, strlen(get));
    p += strlen(get);
    memcpy(p, post, strlen(post));
    p += strlen(post);
    so_pattern_fill(p, 0, 100);
    assert_int_equal(raw_send(c, buf, total), 0);
    free(buf);

    check_upload_response(c, o, up);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    check_pattern_response(&r, 1000);
    raw_response_free(&r);
    check_upload_response(c, o, up + 100);
    check_no_pipe(h, fds, "after the pipelined POST");
    snprintf(what, sizeof(what), "%s: pipelined POST of 1 MiB", row->why);
    base = check_spliced(h, base, up, row->spliced, what);

    /* a spliced download and a GET behind it */
    char two[160];
    snprintf(two, sizeof(two),
             "GET /down-length/%llu HTTP/1.1\r\nHost: s\r\n\r\n"
             "GET /down-length/10 HTTP/1.1\r\nHost: s\r\n\r\n",
             (unsigned long long)down);
    assert_int_equal(raw_send_str(c, two), 0);
    assert_int_equal(raw_read_response(c, &r, TRANSFER_MS), 0);
    check_pattern_response(&r, down);
    raw_response_free(&r);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    check_pattern_response(&r, 10);
    raw_response_free(&r);
    check_no_pipe(h, fds, "after the pipelined download");
    snprintf(what, sizeof(what), "%s: pipelined download of 2 MiB", row->why);
    check_spliced(h, base, down, row->spliced, what);

    /* nothing more came, and the connection is still open */
    assert_int_equal(raw_wait_closed(c, 0), 0);
    raw_close(c);
    fds.all++; /* the origin connection stays, pooled */
    wait_fds(h, fds, "the client gone");
    print_message("%s: origin connections %u, connects %llu, reused %llu\n", row->why,
                  so_connections(o),
                  (unsigned long long)metric(h, "portico_upstream_connects_total"),
                  (unsigned long long)metric(h, "portico_upstream_reused_total"));
    assert_int_equal(so_connections(o), 1);
    assert_int_equal(metric(h, "portico_upstream_connects_total"), 1);
    assert_int_equal(metric(h, "portico_upstream_reused_total"), 4);
    px_stop(h);
    so_stop(o);
}

static void test_pipelined_keepalive(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(on_off_rows); i++)
        pipelined(&on_off_rows[i]);
}

struct exact_row {
    const char *why;
    enum dir dir;
    uint64_t n;
    enum feed how;
    int64_t spliced;   /* exactly this many bytes spliced; -1: anything from 0 to n */
};

static const struct exact_row exact_rows[] = {
    /* one byte short of the threshold: copied */
    {"upload below", UP, BODY_SPLICE_MIN - 1, FEED_GATED, 0},
    /* at the threshold, none of the body read with the head: all of it spliced */
    {"upload at", UP, BODY_SPLICE_MIN, FEED_GATED, BODY_SPLICE_MIN},
    {"upload above", UP, BODY_SPLICE_MIN + 1, FEED_GATED, BODY_SPLICE_MIN + 1},
    /* at the threshold with the head: Portico's first read may take some or all of it */
    {"upload at, with the head", UP, BODY_SPLICE_MIN, FEED_WITH_HEAD, -1},
    /* the origin's 100 relayed: the body that follows is spliced, all of it */
    {"upload after 100 Continue", UP, 1 << 20, FEED_EXPECT, 1 << 20},
    {"download below", DOWN, BODY_SPLICE_MIN - 1, FEED_GATED, 0},
    /* a response's last byte is read and copied, to be sent with the end of the exchange */
    {"download at", DOWN, BODY_SPLICE_MIN, FEED_GATED, BODY_SPLICE_MIN - 1},
    {"download above", DOWN, BODY_SPLICE_MIN + 1, FEED_GATED, BODY_SPLICE_MIN},
    /* the body right behind the head: some of it may be read with the head */
    {"download above, with the head", DOWN, BODY_SPLICE_MIN + 1, FEED_WITH_HEAD, -1},
};

/* Bodies around BODY_SPLICE_MIN arrive intact, and exactly those at or above it are spliced;
 * a body that follows a 100 Continue too. */
static void test_spliced_exactly(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = start(o, NULL, NULL, NULL);
    struct px_fds fds = px_count_fds(harness_pid(h));
    for (size_t i = 0; i < ARRAY_SIZE(exact_rows); i++) {
        const struct exact_row *row = &exact_rows[i];
        uint64_t before = spliced(h);
        if (row->dir == UP)
            upload(h, o, row->n, row->how);
        else
            download(h, o, row->n, row->how == FEED_GATED);
        uint64_t d = spliced(h) - before;
        print_message("%-30s %6llu bytes: %llu spliced\n", row->why,
                      (unsigned long long)row->n, (unsigned long long)d);
        if (row->spliced >= 0 ? d != (uint64_t)row->spliced : d > row->n)
            fail_msg("%s: %llu bytes spliced, want %lld", row->why, (unsigned long long)d,
                     (long long)row->spliced);
        check_no_pipe(h, fds, row->why);
    }
    px_stop(h);
    so_stop(o);
}

/* A pooled origin connection that the origin dropped as a PUT with a spliceable body came on
 * it: none of the body had gone, so the request goes again on a fresh connection (retried),
 * and all of the body is spliced there. */
static void test_stale_pooled_retry(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = start(o, NULL, NULL, NULL);
    struct px_fds fds = px_count_fds(harness_pid(h));
    struct raw_conn *c = px_connect(h);
    raw_set_send_timeout(c, TRANSFER_MS);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /down-length/10 HTTP/1.1\r\nHost: s\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    check_pattern_response(&r, 10);
    raw_response_free(&r);

    /* the same client's next request takes the pooled connection back */
    uint64_t before = spliced(h), heads = atomic_load(&o->heads);
    uint64_t total = atomic_load(&o->received) + MiB;
    char req[160];
    snprintf(req, sizeof(req),
             "PUT /up-fresh HTTP/1.1\r\nHost: s\r\nX-Request-Id: stale-retry\r\n"
             "Content-Length: %llu\r\n\r\n",
             (unsigned long long)MiB);
    assert_int_equal(raw_send_str(c, req), 0);
    /* the head on the dropped connection, then again on a fresh one: the body follows */
    assert_int_equal(so_wait_count(o, &o->heads, heads + 2, PX_IO_MS), 0);
    send_pattern(c, MiB);
    check_upload_response(c, o, total);
    assert_int_equal(spliced(h) - before, MiB);
    check_no_pipe(h, fds, "the retried PUT");
    assert_int_equal(so_connections(o), 2);
    assert_int_equal(metric(h, "portico_upstream_retries_total"), 1);
    raw_close(c);
    assert_int_equal(harness_stop(h), 0);
    char *line = px_log_line_for_id(h, "stale-retry");
    if (!tu_contains(line, " status=200 ") || !tu_contains(line, " retried=yes"))
        fail_msg("the retried PUT's log line: %s", line);
    free(line);
    harness_free(h);
    so_stop(o);
}

/* What of BIG goes through before the failure. */
#define CUT_PART (4 * MiB)
#define CUT_PART_STR "4194304"
_Static_assert(CUT_PART < BIG, "a part of the body");

/* An exchange that fails mid-splice. */
enum cut_case {
    CUT_ORIGIN,        /* the origin closes after part of a Content-Length body */
    CUT_CLIENT_DOWN,   /* the client closes after reading part of a spliced download */
    CUT_CLIENT_UP,     /* the client closes after sending part of a spliced upload */
    CUT_EARLY,         /* the origin's whole response comes in the middle of a spliced upload */
};

struct cut_row {
    const char *why;
    enum cut_case how;
    const char *log[4];  /* the access-log line has these (up to a NULL) */
    const char *absent;  /* and not this */
    const char *metric;  /* this counter rose by one */
};

static const struct cut_row cut_rows[] = {
    /* as a copied body cut short (test_failures' length_cut): aborted after the head */
    {"origin closes mid-body", CUT_ORIGIN,
     {" status=200 ", " bytes_out=" CUT_PART_STR " ",
      " failure=connection_reset phase=read aborted=after_head ", NULL},
     NULL, "portico_responses_aborted_total"},
    /* the client leaves while the body is spliced to it: the status it had is logged (the
     * detail says closed or failed, as the close met our reading or our writing) */
    {"client leaves mid-download", CUT_CLIENT_DOWN, {" status=200 ", " detail=\"client ", NULL},
     " failure=", "portico_client_aborts_total"},
    /* the client leaves while its body is spliced to the origin */
    {"client leaves mid-upload", CUT_CLIENT_UP, {" status=499 ", " phase=send ", NULL}, NULL,
     "portico_client_aborts_total"},
    /* the exchange is over before the request body: the client's connection closes, and the
     * rest of the body is read and dropped (the splice ended, the connection reads again) */
    {"response before the upload's end", CUT_EARLY, {" status=200 ", NULL}, " failure=",
     "portico_requests_total{route=\"default\",code=\"200\",failure=\"\"}"},
};

/* The failing exchange of one row, on a connection of its own. */
static void provoke_cut(struct harness *h, struct stream_origin *o, const struct cut_row *row,
                        const char *rid)
{
    const uint64_t part = CUT_PART;
    struct raw_conn *c = px_connect(h);
    raw_set_send_timeout(c, TRANSFER_MS);
    char req[256];
    if (row->how == CUT_CLIENT_UP) {
        uint64_t before = atomic_load(&o->received);
        snprintf(req, sizeof(req),
                 "POST /up HTTP/1.1\r\nHost: s\r\nX-Request-Id: %s\r\nContent-Length: %llu\r\n\r\n",
                 rid, (unsigned long long)BIG);
        assert_int_equal(raw_send_str(c, req), 0);
        send_pattern(c, part);
        /* the origin has it all, so it went through the pipe before the client left */
        assert_int_equal(so_wait_count(o, &o->received, before + part, PX_IO_MS), 0);
        raw_close(c);
        return;
    }
    if (row->how == CUT_EARLY) {
        /* the origin answers once it has `part`; the rest of the body is more than the buffers
         * on the way can hold (tcp_rmem's 32 MiB and the sender's 4 MiB at most), and little
         * more: all of it must come within the 2 s Portico lingers for after its answer. Under
         * ASan its reads of 64 MiB there took 0.4-1.7 s beside another test (each chunk fresh
         * memory: the freed ones sit in ASan's quarantine), and once beside a CPU hog more than
         * 2 s: the reset came at 61.75 MiB. */
        const uint64_t rest = 40 * MiB;
        snprintf(req, sizeof(req),
                 "POST /up-early/%llu HTTP/1.1\r\nHost: s\r\nX-Request-Id: %s\r\n"
                 "Content-Length: %llu\r\n\r\n",
                 (unsigned long long)part, rid, (unsigned long long)(part + rest));
        assert_int_equal(raw_send_str(c, req), 0);
        send_pattern(c, part);
        struct raw_response r;
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "early");
        raw_response_free(&r);
        /* Portico closes its side and reads on, dropping the bytes, until the client closes
         * (no close with unread bytes: the reset could destroy the response in flight) */
        int64_t t0 = tu_now_ms();
        send_filler(c, rest);
        print_message("%s: %llu bytes dropped in %lld ms\n", row->why, (unsigned long long)rest,
                      (long long)(tu_now_ms() - t0));
        char *tail = raw_read_all(c, PX_IO_MS, NULL);
        assert_non_null(tail);
        assert_string_equal(tail, "");
        free(tail);
        assert_true(raw_peer_closed(c));
        raw_close(c);
        return;
    }
    /* A client that leaves: a body no buffers on the way can hold (the client's may grow to
     * tcp_rmem's 32 MiB), so that it cannot be all sent by then; the origin makes it as it
     * goes. */
    uint64_t n = row->how == CUT_CLIENT_DOWN ? 1024 * MiB : BIG;
    struct so_reader *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->fd = raw_fd(c);
    snprintf(req, sizeof(req),
             "GET /down-length/%llu%s HTTP/1.1\r\nHost: s\r\nX-Request-Id: %s\r\n\r\n",
             (unsigned long long)n, row->how == CUT_ORIGIN ? "/cut/" CUT_PART_STR : "", rid);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(read_head(d), n);
    uint64_t off = 0;
    if (row->how == CUT_ORIGIN) {
        /* every byte the origin sent arrives, then the connection closes, short of BIG */
        int rc = so_read_body(d, &off, BIG, false);
        print_message("%s: %llu of %llu bytes, then %s\n", row->why, (unsigned long long)off,
                      (unsigned long long)BIG, rc == -1 ? "the end" : "an error");
        assert_int_equal(rc, -1);
        assert_int_equal(off, part);
        assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    } else {
        assert_int_equal(so_read_body(d, &off, part, false), 0);
    }
    free(d);
    raw_close(c);
}

/* Failures mid-splice: the client learns it as it would of a copied body (splice = off, the
 * same expectations), Portico logs and counts it as such, leaves no descriptor (pipes included)
 * behind, and serves the next request. Origin connections are not pooled here (keepalive = 0),
 * so that Portico's descriptors are exactly those of its start once an exchange is over. */
static void cut_mid_splice(const struct on_off_row *mode)
{
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = start(o, mode->proxy, "keepalive = 0\n", NULL);
    struct px_fds base = px_count_fds(harness_pid(h));
    print_message("%s: portico holds %d descriptors (%d pipes) at the start\n", mode->why,
                  base.all, base.pipes);

    for (size_t i = 0; i < ARRAY_SIZE(cut_rows); i++) {
        const struct cut_row *row = &cut_rows[i];
        char rid[32];
        snprintf(rid, sizeof(rid), "cut-%zu", i);
        uint64_t before = spliced(h), counted = metric(h, row->metric);
        provoke_cut(h, o, row, rid);
        /* Portico holds the client's connection until the exchange ended */
        wait_fds(h, base, row->why);
        assert_int_equal(metric(h, row->metric), counted + 1);
        uint64_t d = spliced(h) - before;
        print_message("%s, %s: %llu bytes spliced\n", mode->why, row->why,
                      (unsigned long long)d);
        assert_true(mode->spliced ? d > 0 : d == 0);

        /* and Portico serves on, on a new connection */
        struct raw_conn *c = px_connect(h);
        struct raw_response r;
        assert_int_equal(raw_send_str(c, "GET /down-length/100 HTTP/1.1\r\nHost: s\r\n"
                                         "Connection: close\r\n\r\n"),
                         0);
        assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
        check_pattern_response(&r, 100);
        raw_response_free(&r);
        raw_close(c);
        wait_fds(h, base, "the request after");
    }
    assert_int_equal(harness_stop(h), 0); /* no crash; the access log is complete */
    for (size_t i = 0; i < ARRAY_SIZE(cut_rows); i++) {
        const struct cut_row *row = &cut_rows[i];
        char rid[32];
        snprintf(rid, sizeof(rid), "cut-%zu", i);
        char *line = px_log_line_for_id(h, rid);
        print_message("%s, %s: %s\n", mode->why, row->why, line);
        for (size_t k = 0; row->log[k]; k++)
            if (!tu_contains(line, row->log[k]))
                fail_msg("%s: the log line lacks \"%s\": %s", row->why, row->log[k], line);
        if (row->absent && tu_contains(line, row->absent))
            fail_msg("%s: the log line has \"%s\": %s", row->why, row->absent, line);
        free(line);
    }
    harness_free(h);
    so_stop(o);
}

static void test_cut_mid_splice(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(on_off_rows); i++)
        cut_mid_splice(&on_off_rows[i]);
}

/* A client that stops reading a spliced download: the origin is held back (Portico neither
 * buffers the body nor spins on the origin's readiness meanwhile), then every byte arrives in
 * order. */
static void test_slow_client(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = start(o, NULL, NULL, NULL);
    pid_t pid = harness_pid(h);
    struct px_fds fds = px_count_fds(pid);
    uint64_t base = spliced(h);
    struct raw_conn *c = px_connect(h);
    uint64_t sent0 = atomic_load(&o->sent);
    uint64_t sent = so_download_stalled(o, c, SLOW);
    assert_true(sent < SLOW);

    /* held: another quiet spell, during which Portico must be idle */
    long cpu0 = px_cpu_ms(pid);
    int64_t t0 = tu_now_ms();
    uint64_t still = so_wait_stalled(&o->sent, sent0 + SLOW, 500, 20000) - sent0;
    long cpu = px_cpu_ms(pid) - cpu0;
    int64_t wall = tu_now_ms() - t0;
    long rss = px_proc_kb(pid, "VmRSS");
    print_message("held for %lld ms: portico used %ld ms of CPU, RSS %ld kB\n", (long long)wall,
                  cpu, rss);
    assert_int_equal(still, sent);
    if (cpu > wall / 4)
        fail_msg("portico used %ld ms of CPU in %lld ms while the client read nothing", cpu,
                 (long long)wall);
    if (px_rss_is_portico(pid))
        assert_true(rss > 0 && rss < RSS_LIMIT_KB);

    /* now read it all: every byte, in order */
    struct so_reader *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->fd = raw_fd(c);
    assert_int_equal(read_head(d), SLOW);
    uint64_t off = 0;
    assert_int_equal(so_read_body(d, &off, SLOW, false), 0);
    free(d);
    raw_close(c);
    check_spliced(h, base, SLOW, true, "slow client's download");
    check_no_pipe(h, fds, "slow client's download");
    long hwm = px_proc_kb(pid, "VmHWM");
    print_message("portico peak RSS %ld kB (limit %d kB%s)\n", hwm, RSS_LIMIT_KB,
                  px_rss_is_portico(pid) ? "" : ", not asserted under ASan or valgrind");
    if (px_rss_is_portico(pid))
        assert_true(hwm > 0 && hwm < RSS_LIMIT_KB);
    px_stop(h);
    so_stop(o);
}

enum client { PLAIN, TLS };
enum framing { LENGTH, CHUNKED };

struct copy_row {
    const char *why;
    enum client client;
    enum dir dir;
    enum framing framing; /* of the upload, or of the origin's response */
    const char *fault;    /* the rule a request header fires (copy_faults), NULL: none */
    uint64_t n;
    uint64_t got;         /* body bytes the client gets */
    bool spliced;
};

static const struct copy_row copy_rows[] = {
    /* control: the same download from a plain client, no fault, is spliced */
    {"control: plain, no fault", PLAIN, DOWN, LENGTH, NULL, COPY_SIZE, COPY_SIZE, true},
    /* a TLS client's bytes are encrypted in Portico: nothing to splice, either way */
    {"TLS client upload", TLS, UP, LENGTH, NULL, COPY_SIZE, COPY_SIZE, false},
    {"TLS client download", TLS, DOWN, LENGTH, NULL, COPY_SIZE, COPY_SIZE, false},
    /* chunked bodies are decoded and re-encoded */
    {"chunked upload", PLAIN, UP, CHUNKED, NULL, COPY_SIZE, COPY_SIZE, false},
    {"chunked download", PLAIN, DOWN, CHUNKED, NULL, COPY_SIZE, COPY_SIZE, false},
    /* truncate: the origin's head and the first N body bytes, then the connection aborted */
    {"fault truncate = 1m", PLAIN, DOWN, LENGTH, "cut", COPY_SIZE, MiB, false},
    /* throttle: 1 MiB at 8 MiB/s, in steps of 100 ms */
    {"fault throttle = 8m", PLAIN, DOWN, LENGTH, "slow", MiB, MiB, false},
};

static const char copy_faults[] = "[fault cut]\nheader = X-Fault=cut\ntruncate = 1m\n"
                                  "[fault slow]\nheader = X-Fault=slow\nthrottle = 8m\n";

/* Sends n pattern bytes on c as chunks of up to SO_BLOCK, then the last chunk. */
static void send_chunked(struct raw_conn *c, uint64_t n)
{
    char size[32];
    for (uint64_t off = 0; off < n;) {
        uint64_t k = n - off < SO_BLOCK ? n - off : SO_BLOCK;
        snprintf(size, sizeof(size), "%llx\r\n", (unsigned long long)k);
        assert_int_equal(raw_send_str(c, size), 0);
        unsigned char *block = malloc(k);
        assert_non_null(block);
        so_pattern_fill(block, off, k);
        assert_int_equal(raw_send(c, block, k), 0);
        free(block);
        assert_int_equal(raw_send_str(c, "\r\n"), 0);
        off += k;
    }
    assert_int_equal(raw_send_str(c, "0\r\n\r\n"), 0);
}

/* One row's exchange on c. */
static void copy_exchange(struct raw_conn *c, struct stream_origin *o, const struct copy_row *row)
{
    char req[256];
    if (row->dir == UP) {
        uint64_t total = atomic_load(&o->received) + row->n;
        if (row->framing == CHUNKED)
            snprintf(req, sizeof(req),
                     "POST /up HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n");
        else
            snprintf(req, sizeof(req),
                     "POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: %llu\r\n\r\n",
                     (unsigned long long)row->n);
        assert_int_equal(raw_send_str(c, req), 0);
        if (row->framing == CHUNKED)
            send_chunked(c, row->n);
        else
            send_pattern(c, row->n);
        check_upload_response(c, o, total);
        return;
    }
    char fault[64] = "";
    if (row->fault)
        snprintf(fault, sizeof(fault), "X-Fault: %s\r\n", row->fault);
    snprintf(req, sizeof(req), "GET /down-%s/%llu HTTP/1.1\r\nHost: s\r\n%s\r\n",
             row->framing == CHUNKED ? "chunked" : "length", (unsigned long long)row->n, fault);
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    int rc = raw_read_response(c, &r, TRANSFER_MS);
    print_message("%s: %zu bytes in %lld ms%s\n", row->why, r.body_len,
                  (long long)(tu_now_ms() - t0), r.truncated ? ", cut short" : "");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.framing, row->framing == CHUNKED ? RAW_CHUNKED : RAW_LENGTH);
    assert_int_equal(r.body_len, row->got);
    assert_int_equal(so_pattern_check((const unsigned char *)r.body, 0, r.body_len), -1);
    /* a body cut short: the connection closed before its end */
    assert_int_equal(rc, row->got < row->n ? -1 : 0);
    assert_int_equal(r.truncated, row->got < row->n);
    if (row->fault) /* the rule fired */
        assert_string_equal(raw_header(&r, "Portico-Fault"), row->fault);
    else
        assert_null(raw_header(&r, "Portico-Fault"));
    raw_response_free(&r);
}

/* What splicing cannot serve is copied, intact: a TLS client (its bytes are encrypted in
 * Portico), chunked bodies, a body a fault cuts short or paces. */
static void test_copied(void **state)
{
    (void)state;
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = start(o,
                              "listen = 127.0.0.1:{{port:tls}} tls\n"
                              "tls_cert = {{certs}}/server.pem\ntls_key = {{certs}}/server.key\n",
                              NULL, copy_faults);
    struct px_fds fds = px_count_fds(harness_pid(h));
    struct raw_tls_opts tls = {.ca_file = certs->ca_cert, .host = "localhost",
                               .require_valid = true};
    for (size_t i = 0; i < ARRAY_SIZE(copy_rows); i++) {
        const struct copy_row *row = &copy_rows[i];
        uint64_t before = spliced(h);
        struct raw_conn *c = row->client == TLS
                                 ? raw_connect_tls(harness_port(h, "tls"), &tls, PX_IO_MS)
                                 : px_connect(h);
        if (!c)
            fail_msg("%s: connect: %s", row->why, raw_last_error());
        raw_set_send_timeout(c, TRANSFER_MS);
        copy_exchange(c, o, row);
        raw_close(c);
        check_spliced(h, before, row->n, row->spliced, row->why);
        check_no_pipe(h, fds, row->why);
    }
    px_stop(h);
    so_stop(o);
}

/* The second lowest descriptor number free in process pid: with RLIMIT_NOFILE just above it,
 * the process can open two more descriptors and no more. */
static int second_free_fd(pid_t pid)
{
    char path[64];
    bool used[1024] = {false};
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long fd = strtol(e->d_name, NULL, 10);
        if (e->d_name[0] != '.' && fd >= 0 && fd < (long)ARRAY_SIZE(used))
            used[fd] = true;
    }
    closedir(d);
    int free_seen = 0;
    for (int fd = 0; fd < (int)ARRAY_SIZE(used); fd++)
        if (!used[fd] && ++free_seen == 2)
            return fd;
    fail_msg("no free descriptor numbers below %zu", ARRAY_SIZE(used));
    return -1;
}

/* An upload and a download on c, both of n bytes, intact. */
static void up_and_down(struct raw_conn *c, struct stream_origin *o, uint64_t n)
{
    char req[128];
    uint64_t total = atomic_load(&o->received) + n;
    snprintf(req, sizeof(req), "POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: %llu\r\n\r\n",
             (unsigned long long)n);
    assert_int_equal(raw_send_str(c, req), 0);
    send_pattern(c, n);
    check_upload_response(c, o, total);
    snprintf(req, sizeof(req), "GET /down-length/%llu HTTP/1.1\r\nHost: s\r\n\r\n",
             (unsigned long long)n);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, TRANSFER_MS), 0);
    check_pattern_response(&r, n);
    raw_response_free(&r);
}

/* No pipe to be had (the descriptor limit): the bodies are copied, and nothing fails. Portico's
 * limit is lowered from outside (prlimit) to leave room for the client's connection and the
 * origin's, and not for a pipe's two descriptors. */
static void test_no_pipe(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = start(o, NULL, NULL, NULL);
    pid_t pid = harness_pid(h);
    struct rlimit old, low;
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, NULL, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)second_free_fd(pid) + 1;
    uint64_t before = spliced(h);
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &low, NULL), 0);
    /* one client connection, one origin connection: the descriptors there are room for */
    struct raw_conn *c = px_connect(h);
    raw_set_send_timeout(c, TRANSFER_MS);
    up_and_down(c, o, COPY_SIZE);
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &old, NULL), 0);
    before = check_spliced(h, before, 2 * COPY_SIZE, false, "no pipe: up and down");
    /* the limit back: the same exchanges are spliced */
    up_and_down(c, o, COPY_SIZE);
    check_spliced(h, before, 2 * COPY_SIZE, true, "the limit back: up and down");
    raw_close(c);
    px_stop(h);
    so_stop(o);
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_bodies),
        cmocka_unit_test(test_pipelined_keepalive),
        cmocka_unit_test(test_spliced_exactly),
        cmocka_unit_test(test_stale_pooled_retry),
        cmocka_unit_test(test_cut_mid_splice),
        cmocka_unit_test(test_slow_client),
        cmocka_unit_test(test_copied),
        cmocka_unit_test(test_no_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
