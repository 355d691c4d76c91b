/*
 * test_streaming.c — issue 2, "Request and response bodies are streamed with back-pressure ...
 * no body is ever held whole in memory. A 1 GiB upload and a 1 GiB download pass with Portico's
 * RSS staying under 64 MiB", end to end with the real portico binary.
 *
 * The fake origins of tests/support record every byte, which a gigabyte does not suit, so this
 * file uses the stream origin (tests/support/stream_origin.h): it checks an upload against a
 * position-dependent byte pattern as it arrives (counting, never storing), and generates
 * downloads from the same pattern. The client side checks every byte too. Portico's peak RSS is
 * VmHWM of its process. test_buffers_reused counts its page faults: a body's buffers must serve
 * the next request rather than go back to the kernel and be faulted in again.
 *
 * Under AddressSanitizer (which this binary shares with the portico it tests) the sizes are
 * 128 MiB and the RSS limits are not asserted: ASan's shadow memory and quarantine are not
 * Portico's; every byte is still checked.
 */
#include <errno.h>
#include <poll.h>
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
#include <sys/socket.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/stream_origin.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define BIG (SANITIZED ? 128 * MiB : GiB)  /* the "1 GiB" of the issue */
#define MEDIUM (32 * MiB)                   /* framing variants */
#define RSS_LIMIT_KB (64 * 1024)
#define BLOCK SO_BLOCK
#define STREAM_MS 120000                    /* bound of one whole transfer */
#define MIN_U64(a, b) ((uint64_t)(a) < (uint64_t)(b) ? (uint64_t)(a) : (uint64_t)(b))

/* ---- Portico's memory ---- */

static void check_rss(struct harness *h, const char *what)
{
    long hwm = px_proc_kb(harness_pid(h), "VmHWM");
    assert_true(hwm > 0);
    bool own = px_rss_is_portico(harness_pid(h));
    print_message("%s: portico peak RSS %ld kB (limit %d kB%s)\n", what, hwm, RSS_LIMIT_KB,
                  own ? "" : ", not asserted under ASan or valgrind");
    if (own && hwm >= RSS_LIMIT_KB)
        fail_msg("%s: portico peak RSS %ld kB >= %d kB", what, hwm, RSS_LIMIT_KB);
}

/* Minor page faults of the whole process so far (/proc/PID/stat, the 8th field after comm). */
static unsigned long minor_faults(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *s = tu_read_file(path, NULL);
    assert_non_null(s);
    const char *p = strrchr(s, ')');
    assert_non_null(p);
    unsigned long v = 0;
    assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %lu", &v), 1);
    free(s);
    return v;
}

/* ---- the client side ---- */

/* Sends an upload of n pattern bytes through Portico, by Content-Length or chunked, and reads
 * the origin's verdict. With `held`, the origin is holding its reading: the client pushes
 * until its sends have been blocked for 300 ms, checks that the body was held back and that
 * Portico's RSS is bounded meanwhile, then releases the origin. */
static void upload(struct harness *h, struct stream_origin *o, uint64_t n, bool chunked,
                   bool held)
{
    uint64_t before = atomic_load(&o->received);
    struct raw_conn *c = px_connect(h);
    raw_set_send_timeout(c, 20000);
    char head[160];
    snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: s\r\n%s%llu\r\n\r\n",
             chunked ? "Transfer-Encoding: chunked\r\nX-Len: " : "Content-Length: ",
             (unsigned long long)n);
    assert_int_equal(raw_send_str(c, head), 0);
    unsigned char *block = malloc(BLOCK + 32);
    assert_non_null(block);
    int64_t t0 = tu_now_ms();
    for (uint64_t off = 0; off < n;) {
        /* one framed block of varying size */
        size_t k = (size_t)MIN_U64(BLOCK - (off / 4099) % 1000, n - off);
        size_t pre = chunked ? (size_t)snprintf((char *)block, 32, "%zx\r\n", k) : 0;
        so_pattern_fill(block + pre, off, k);
        size_t total = pre + k;
        if (chunked) {
            memcpy(block + total, "\r\n", 2);
            total += 2;
        }
        off += k;
        size_t done = 0;
        while (held && done < total) {
            ssize_t m = send(raw_fd(c), block + done, total - done, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (m > 0) {
                done += (size_t)m;
                continue;
            }
            assert_true(m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            struct pollfd p = { .fd = raw_fd(c), .events = POLLOUT };
            if (poll(&p, 1, 300) > 0)
                continue;
            /* blocked for 300 ms: the held origin stopped the upload */
            print_message("upload held at %llu MiB of %llu\n", (unsigned long long)(off >> 20),
                          (unsigned long long)(n >> 20));
            assert_true(off < n);
            long rss = px_proc_kb(harness_pid(h), "VmRSS");
            print_message("portico RSS while the origin holds: %ld kB\n", rss);
            if (px_rss_is_portico(harness_pid(h)))
                assert_true(rss > 0 && rss < RSS_LIMIT_KB);
            held = false;
            so_hold_reading(o, false);
        }
        if (done < total && raw_send(c, block + done, total - done) != 0)
            fail_msg("upload: send failed at %llu: errno %d", (unsigned long long)off,
                     raw_last_errno(c));
    }
    assert_false(held); /* the whole body never fitted in the buffers on the way */
    if (chunked)
        assert_int_equal(raw_send_str(c, "0\r\nX-Trailer: t\r\n\r\n"), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, STREAM_MS), 0);
    assert_int_equal(r.status, 200);
    char want[64];
    snprintf(want, sizeof(want), "received=%llu", (unsigned long long)(before + n));
    assert_string_equal(r.body, want);
    raw_response_free(&r);
    raw_close(c);
    free(block);
    assert_int_equal(atomic_load(&o->bad_offset), -1);
    print_message("upload of %llu MiB (%s) in %lld ms\n", (unsigned long long)(n >> 20),
                  chunked ? "chunked" : "Content-Length", (long long)(tu_now_ms() - t0));
}

struct dl_result {
    uint64_t bytes;
    char framing[16];        /* "length", "chunked", "close" */
    bool trailer;            /* a chunked trailer section came */
};

/* GETs path with HTTP/1.<minor>, reads and checks the body. */
static void download(struct harness *h, const char *path, int minor, uint64_t n,
                     struct dl_result *res)
{
    struct so_reader *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    struct raw_conn *c = px_connect(h);
    d->fd = raw_fd(c);
    char req[200];
    snprintf(req, sizeof(req), "GET %s HTTP/1.%d\r\nHost: s\r\n\r\n", path, minor);
    assert_int_equal(raw_send_str(c, req), 0);
    int64_t t0 = tu_now_ms();
    char line[1024];
    assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
    assert_true(px_starts(line, "HTTP/1.1 200"));
    uint64_t length = 0;
    bool has_length = false;
    snprintf(res->framing, sizeof(res->framing), "close");
    for (;;) {
        assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
        if (line[0] == '\0')
            break;
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            length = strtoull(line + 15, NULL, 10);
            has_length = true;
            snprintf(res->framing, sizeof(res->framing), "length");
        } else if (strncasecmp(line, "Transfer-Encoding: chunked", 26) == 0) {
            snprintf(res->framing, sizeof(res->framing), "chunked");
        }
    }
    uint64_t off = 0;
    res->trailer = false;
    if (has_length) {
        assert_int_equal(length, n);
        assert_int_equal(so_read_body(d, &off, length, false), 0);
    } else if (strcmp(res->framing, "chunked") == 0) {
        for (;;) {
            assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
            uint64_t size = strtoull(line, NULL, 16);
            if (size == 0)
                break;
            assert_int_equal(so_read_body(d, &off, size, false), 0);
            assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
            assert_string_equal(line, "");
        }
        for (;;) { /* trailers */
            assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
            if (line[0] == '\0')
                break;
            res->trailer = true;
        }
    } else {
        assert_int_equal(so_read_body(d, &off, 0, true), 0);
    }
    res->bytes = off;
    assert_int_equal(off, n);
    print_message("download %s: %llu MiB (%s) in %lld ms\n", path,
                  (unsigned long long)(off >> 20), res->framing,
                  (long long)(tu_now_ms() - t0));
    raw_close(c);
    free(d);
}

/* ---- tests ---- */

/* The 1 GiB upload and download of the issue (128 MiB under ASan), RSS under 64 MiB. */
static void test_big_upload_and_download(void **state)
{
    (void)state;
    if (SANITIZED)
        print_message("ASan build: %llu MiB instead of 1 GiB\n", (unsigned long long)(BIG >> 20));
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = px_start_origin(o->port, NULL);

    upload(h, o, BIG, false, false);
    check_rss(h, "after the upload");

    char path[64];
    struct dl_result res;
    snprintf(path, sizeof(path), "/down-length/%llu", (unsigned long long)BIG);
    download(h, path, 1, BIG, &res);
    assert_string_equal(res.framing, "length");
    check_rss(h, "after the download");

    px_stop(h);
    so_stop(o);
}

struct framing_row {
    const char *why;
    const char *kind;   /* origin framing: length, chunked, close */
    int minor;          /* client HTTP/1.<minor> */
    const char *client; /* framing the client gets */
    bool trailer;       /* trailers reach the client */
};

static const struct framing_row framing_rows[] = {
    { "chunked to 1.1", "chunked", 1, "chunked", true },
    /* close-delimited is re-chunked for a 1.1 client */
    { "close-delimited to 1.1", "close", 1, "chunked", false },
    /* chunked becomes close-delimited for a 1.0 client */
    { "chunked to 1.0", "chunked", 0, "close", false },
    { "length to 1.0", "length", 0, "length", false },
};

/* The other framings stream too, both ways, with the same memory bound. */
static void test_streamed_framings(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = px_start_origin(o->port, NULL);

    upload(h, o, MEDIUM, true, false);
    for (size_t i = 0; i < ARRAY_SIZE(framing_rows); i++) {
        const struct framing_row *row = &framing_rows[i];
        char path[64];
        struct dl_result res;
        snprintf(path, sizeof(path), "/down-%s/%llu", row->kind, (unsigned long long)MEDIUM);
        download(h, path, row->minor, MEDIUM, &res);
        assert_string_equal(res.framing, row->client);
        assert_int_equal(res.trailer, row->trailer);
    }
    check_rss(h, "after the framings");
    px_stop(h);
    so_stop(o);
}

/* Back-pressure, seen from outside: an origin that stops reading stops the client's upload;
 * a client that stops reading stops the origin's download; Portico's RSS stays bounded while
 * they are held; everything arrives once they resume. */
static void test_back_pressure(void **state)
{
    (void)state;
    uint64_t n = SANITIZED ? 128 * MiB : 256 * MiB;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = px_start_origin(o->port, NULL);

    /* upload against a held origin */
    so_hold_reading(o, true);
    upload(h, o, n, false, true);

    /* download to a client that reads nothing for a while */
    struct raw_conn *c = px_connect(h);
    assert_true(so_download_stalled(o, c, n) < n);
    long rss = px_proc_kb(harness_pid(h), "VmRSS");
    print_message("portico RSS while held: %ld kB\n", rss);
    if (px_rss_is_portico(harness_pid(h)))
        assert_true(rss < RSS_LIMIT_KB);
    /* now read it all: every byte, in order */
    struct so_reader *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->fd = raw_fd(c);
    char line[512];
    assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
    assert_true(px_starts(line, "HTTP/1.1 200"));
    do
        assert_int_equal(so_read_line(d, line, sizeof(line)), 0);
    while (line[0] != '\0');
    uint64_t off = 0;
    assert_int_equal(so_read_body(d, &off, n, false), 0);
    free(d);
    raw_close(c);
    check_rss(h, "after back-pressure");
    px_stop(h);
    so_stop(o);
}

/* A body's buffers serve the next request: freed memory is not handed back to the kernel after
 * each body and faulted in again (heap.c, heap_tune). After a warm-up, 32 uploads and 32
 * downloads of 1 MiB, copied (splice = off: every byte passes through the buffers), cost
 * Portico less than a page fault each; with glibc's default thresholds a download took ~23. */
static void test_buffers_reused(void **state)
{
    (void)state;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = px_start_origin(o->port, "splice = off\n");
    pid_t pid = harness_pid(h);
    char path[64];
    snprintf(path, sizeof(path), "/down-length/%llu", (unsigned long long)MiB);
    struct dl_result res;
    unsigned long faults[3];
    for (int round = 0; round < 3; round++) { /* warm-up, uploads, downloads */
        faults[round] = minor_faults(pid);
        for (int i = 0; i < 32; i++) {
            if (round != 2)
                upload(h, o, MiB, false, false);
            if (round != 1)
                download(h, path, 1, MiB, &res);
        }
    }
    unsigned long up = faults[2] - faults[1], down = minor_faults(pid) - faults[2];
    print_message("page faults for 32 uploads: %lu, for 32 downloads: %lu\n", up, down);
    if (!px_rss_is_portico(pid))
        print_message("not asserted under ASan or valgrind: their allocators are not glibc's\n");
    else if (up >= 32 || down >= 32)
        fail_msg("buffers were faulted in again: %lu faults for 32 uploads, %lu for 32 "
                 "downloads", up, down);
    px_stop(h);
    so_stop(o);
}

/* Large bodies with curl as the client: a 48 MiB file up (Content-Length and chunked) and a
 * 48 MiB download to a file, every byte compared. */
static void test_curl_large_bodies(void **state)
{
    (void)state;
    uint64_t n = 48 * MiB;
    struct stream_origin *o = so_start();
    assert_non_null(o);
    struct harness *h = px_start_origin(o->port, NULL);
    char file[512], out[512], url[128], data[600], result[64];
    snprintf(file, sizeof(file), "%s/up.bin", harness_dir(h));
    snprintf(out, sizeof(out), "%s/down.bin", harness_dir(h));
    unsigned char *buf = malloc(n);
    assert_non_null(buf);
    so_pattern_fill(buf, 0, n);
    assert_int_equal(tu_write_file(file, buf, n), 0);
    free(buf);
    snprintf(data, sizeof(data), "@%s", file);

    struct tu_cmd_result res;
    const char *const up[] = { "curl", "-sS", "--max-time", "60", "--data-binary", data,
                               px_url(h, "/up", url, sizeof(url)), NULL };
    px_run_ok(up, &res);
    snprintf(result, sizeof(result), "received=%llu", (unsigned long long)n);
    assert_string_equal(res.out, result);
    tu_cmd_result_free(&res);

    const char *const up_chunked[] = { "curl", "-sS", "--max-time", "60", "-H",
                                       "Transfer-Encoding: chunked", "--data-binary", data,
                                       px_url(h, "/up", url, sizeof(url)), NULL };
    px_run_ok(up_chunked, &res);
    snprintf(result, sizeof(result), "received=%llu", (unsigned long long)(2 * n));
    assert_string_equal(res.out, result);
    tu_cmd_result_free(&res);
    assert_int_equal(atomic_load(&o->bad_offset), -1);

    char path[64];
    snprintf(path, sizeof(path), "/down-chunked/%llu", (unsigned long long)n);
    const char *const down[] = { "curl", "-sS", "--max-time", "60", "-o", out, "-w",
                                 "%{size_download}", px_url(h, path, url, sizeof(url)), NULL };
    px_run_ok(down, &res);
    snprintf(result, sizeof(result), "%llu", (unsigned long long)n);
    assert_string_equal(res.out, result);
    tu_cmd_result_free(&res);
    size_t len = 0;
    unsigned char *got = (unsigned char *)tu_read_file(out, &len);
    assert_non_null(got);
    assert_int_equal(len, n);
    assert_int_equal(so_pattern_check(got, 0, len), -1);
    free(got);
    check_rss(h, "after curl");
    px_stop(h);
    so_stop(o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_big_upload_and_download),
        cmocka_unit_test(test_streamed_framings),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_curl_large_bodies),
        cmocka_unit_test(test_buffers_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
