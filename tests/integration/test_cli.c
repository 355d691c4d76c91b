/*
 * test_cli.c — issue 2, "Command line" and the simulator of `make run`, with the real binary:
 * `portico -t -c FILE` (0, or 1 with one FILE:LINE: message per problem), --version, --help,
 * and the shipped conf/portico.ini started on free ports (its listen and admin_listen lines
 * rewritten in a copy) serving every simulator endpoint of the README through the proxy.
 *
 * Paths are relative to the repository root, the directory the tests run from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define DEFAULT_CONF "conf/portico.ini"

static void need_repo_root(void)
{
    if (access(DEFAULT_CONF, R_OK) != 0)
        fail_msg("%s not found: run the tests from the repository root", DEFAULT_CONF);
}

/* ---- -t ---- */

static void test_check_default_config(void **state)
{
    (void)state;
    need_repo_root();
    struct harness *h = harness_new();
    assert_non_null(h);
    const char *const args[] = { "-t", "-c", DEFAULT_CONF, NULL };
    struct tu_cmd_result res;
    assert_int_equal(harness_run(h, args, &res), 0);
    assert_true(tu_contains(res.out, "configuration ok"));
    assert_string_equal(res.err, "");
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* One problem per line; the line numbers are those of this text. */
static const char bad_config[] =
    "[proxy]\n"                                   /* 1 */
    "listen = 127.0.0.1:notaport\n"               /* 2: bad port */
    "workers = many\n"                            /* 3: bad number */
    "bogus_key = 1\n"                             /* 4: unknown key */
    "client_header_timeout = 5 parsecs\n"         /* 5: bad duration */
    "max_header_size = 16q\n"                     /* 6: bad size */
    "[upstream app]\n"                            /* 7 */
    "origin = 127.0.0.1:3000\n"                   /* 8 */
    "keepalive = -1\n"                            /* 9: bad number */
    "keepalive = 2\n"                             /* 10: duplicate */
    "[route r]\n"                                 /* 11 */
    "upstream = missing\n"                        /* 12: dangling reference */
    "[nonsense]\n";                               /* 13: unknown section */

static const int bad_lines[] = { 2, 3, 4, 5, 6, 9, 10, 12, 13 };

static void test_check_bad_config(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_file(h, "portico.ini", bad_config), 0);
    struct tu_cmd_result res;
    assert_int_equal(harness_check_config(h, &res), 1);
    print_message("%s", res.err);
    const char *path = harness_config_path(h);
    /* every problem is its own FILE:LINE: line */
    for (size_t i = 0; i < ARRAY_SIZE(bad_lines); i++) {
        char want[600];
        snprintf(want, sizeof(want), "%s:%d: ", path, bad_lines[i]);
        if (!tu_contains(res.err, want))
            fail_msg("no message for line %d", bad_lines[i]);
        assert_int_equal(px_count(res.err, want), 1);
    }
    /* and every line of stderr is such a message, but for the summary at the end */
    unsigned lines = 0;
    for (char *p = res.err; *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, "portico: ", 9) != 0) {
            assert_true(strncmp(p, path, strlen(path)) == 0);
            assert_int_equal(p[strlen(path)], ':');
            lines++;
        }
        p += len + (nl ? 1 : 0);
    }
    assert_int_equal(lines, ARRAY_SIZE(bad_lines));
    assert_true(tu_contains(res.err, "9 errors"));
    assert_false(tu_contains(res.out, "configuration ok"));
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* A config that does not exist, and an empty one, are errors too. */
static void test_check_missing_and_empty(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct tu_cmd_result res;
    const char *const missing[] = { "-t", "-c", "/nonexistent/portico.ini", NULL };
    assert_int_equal(harness_run(h, missing, &res), 1);
    assert_true(tu_contains(res.err, "/nonexistent/portico.ini"));
    tu_cmd_result_free(&res);
    /* no upstream: nothing to forward to */
    assert_int_equal(harness_write_file(h, "portico.ini", "[proxy]\nworkers = 1\n"), 0);
    assert_int_equal(harness_check_config(h, &res), 1);
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* ---- --version, --help, bad usage ---- */

static void test_version_and_help(void **state)
{
    (void)state;
    need_repo_root();
    struct harness *h = harness_new();
    assert_non_null(h);
    struct tu_cmd_result res;

    char *version = tu_read_file("VERSION", NULL);
    assert_non_null(version);
    version[strcspn(version, "\n")] = '\0';
    char want[64];
    snprintf(want, sizeof(want), "portico %s ", version);
    free(version);
    const char *const v[] = { "--version", NULL };
    assert_int_equal(harness_run(h, v, &res), 0);
    if (strncmp(res.out, want, strlen(want)) != 0)
        fail_msg("--version prints \"%s\", want it to start with \"%s\" (VERSION)", res.out,
                 want);
    tu_cmd_result_free(&res);

    const char *const help[] = { "--help", NULL };
    assert_int_equal(harness_run(h, help, &res), 0);
    assert_true(tu_contains(res.out, "usage: portico"));
    assert_true(tu_contains(res.out, "-t"));
    assert_true(tu_contains(res.out, "-c FILE"));
    assert_true(tu_contains(res.out, "--version"));
    tu_cmd_result_free(&res);

    /* an unknown option: usage on stderr and a non-zero exit */
    const char *const bad[] = { "--frobnicate", NULL };
    assert_int_equal(harness_run(h, bad, &res), 2);
    assert_true(tu_contains(res.err, "usage: portico"));
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* ---- the default configuration and the simulator ---- */

/* Replaces every `from` in *text by `to` (malloc'd, frees the old text); counts replacements. */
static unsigned replace(char **text, const char *from, const char *to)
{
    unsigned n = px_count(*text, from);
    size_t len = strlen(*text) + n * strlen(to) + 1;
    char *out = malloc(len), *o = out;
    assert_non_null(out);
    for (const char *p = *text;;) {
        const char *m = strstr(p, from);
        if (!m) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(m - p));
        o += m - p;
        strcpy(o, to);
        o += strlen(to);
        p = m + strlen(from);
    }
    free(*text);
    *text = out;
    return n;
}

/* conf/portico.ini as shipped, on free ports. */
static struct harness *start_default(void)
{
    need_repo_root();
    char *conf = tu_read_file(DEFAULT_CONF, NULL);
    assert_non_null(conf);
    assert_int_equal(replace(&conf, "listen = 127.0.0.1:8080", "listen = 127.0.0.1:{{port:listen}}"),
                     1);
    assert_int_equal(replace(&conf, "admin_listen = 127.0.0.1:9901",
                             "admin_listen = 127.0.0.1:{{port:admin}}"), 1);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_file(h, "portico.ini", conf), 0);
    free(conf);
    if (harness_start(h) != 0)
        fail_msg("the default config did not start: %s", harness_error(h));
    return h;
}

static void test_default_config_teapot(void **state)
{
    (void)state;
    struct harness *h = start_default();
    char url[128];
    const char *const argv[] = { "curl", "-sS", "-i", "--max-time", "10",
                                 px_url(h, "/status/418", url, sizeof(url)), NULL };
    struct tu_cmd_result res;
    px_run_ok(argv, &res);
    assert_true(px_starts(res.out, "HTTP/1.1 418 I'm a teapot\r\n"));
    assert_true(tu_contains(res.out, "\r\nVia: 1.1 portico\r\n"));
    tu_cmd_result_free(&res);
    /* the exchange went through the proxy path: logged like any other */
    assert_int_equal(harness_wait_log(h, "status=418", PX_IO_MS), 0);
    assert_true(harness_log_contains(h, "upstream=sim"));
    px_stop(h);
}

struct sim_row {
    const char *why;
    const char *request;
    int status;
    const char *reason;      /* the reason phrase of the status line */
    const char *body;        /* part of the body, NULL: not checked */
    size_t body_len;         /* exact body length when not 0 */
    int ninterim;            /* 1xx heads before the final one */
    int interim;             /* the code of the first of them */
    int min_ms;              /* the answer takes at least this long */
};

static const struct sim_row sim_rows[] = {
    { "index", "GET / HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", "/status/{code}", 0, 0, 0, 0 },
    { "status 200", "GET /status/200 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", NULL, 0, 0, 0,
      0 },
    { "status 404", "GET /status/404 HTTP/1.1\r\nHost: s\r\n\r\n", 404, "Not Found", NULL, 0, 0,
      0, 0 },
    { "status 418", "GET /status/418 HTTP/1.1\r\nHost: s\r\n\r\n", 418, "I'm a teapot", NULL, 0,
      0, 0, 0 },
    { "status 503", "GET /status/503 HTTP/1.1\r\nHost: s\r\n\r\n", 503, "Service Unavailable",
      NULL, 0, 0, 0, 0 },
    { "status 599 (unofficial)", "GET /status/599 HTTP/1.1\r\nHost: s\r\n\r\n", 599,
      "Network Connect Timeout Error", NULL, 0, 0, 0, 0 },
    { "delay", "GET /delay/200 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", NULL, 0, 0, 0, 200 },
    { "bytes", "GET /bytes/100000 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", NULL, 100000, 0, 0,
      0 },
    { "bytes 0", "GET /bytes/0 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", NULL, 0, 0, 0, 0 },
    { "echo", "POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello", 200, "OK",
      "POST /echo HTTP/1.1\r\nHost: s\r\n", 0, 0, 0, 0 },
    { "echo chunked", "POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 200, "OK", "abcde", 0, 0, 0, 0 },
    { "interim", "GET /interim/103,102?delay_ms=50 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK",
      NULL, 0, 2, 103, 100 },
    { "slow", "GET /slow/300?interval_ms=100 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", NULL, 0,
      2, 102, 300 },
    { "unknown path", "GET /nope HTTP/1.1\r\nHost: s\r\n\r\n", 404, "Not Found", NULL, 0, 0, 0,
      0 },
};

/* Every simulator endpoint of the README, through the proxy, on one keep-alive connection. */
static void test_simulator_endpoints(void **state)
{
    (void)state;
    struct harness *h = start_default();
    struct raw_conn *c = px_connect(h);
    for (size_t i = 0; i < ARRAY_SIZE(sim_rows); i++) {
        const struct sim_row *row = &sim_rows[i];
        struct raw_response r;
        print_message("%s\n", row->why);
        int64_t t0 = tu_now_ms();
        assert_int_equal(raw_send_str(c, row->request), 0);
        if (raw_read_response(c, &r, PX_IO_MS) != 0)
            fail_msg("%s: %s", row->why, r.error);
        assert_int_equal(r.status, row->status);
        assert_string_equal(r.head.reason, row->reason);
        assert_string_equal(raw_header(&r, "Via"), "1.1 portico");
        if (row->body && !tu_contains(r.body, row->body))
            fail_msg("%s: body lacks \"%s\":\n%s", row->why, row->body, r.body);
        if (row->body_len)
            assert_int_equal(r.body_len, row->body_len);
        assert_true((int)r.ninterim >= row->ninterim);
        if (row->ninterim)
            assert_int_equal(r.interim[0].status, row->interim);
        if (row->min_ms)
            assert_true(r.head.at_ms - t0 >= row->min_ms);
        raw_response_free(&r);
    }
    raw_close(c);
    px_stop(h);
}

/* The README's `curl -s localhost:8080/bytes/1073741824 -o /dev/null`: 1 GiB streamed by the
 * simulator through the proxy (128 MiB under ASan), Portico's whole process under 64 MiB. */
static void test_simulator_big_download(void **state)
{
    (void)state;
    unsigned long long n = SANITIZED ? 128ULL << 20 : 1ULL << 30;
    struct harness *h = start_default();
    char path[64], url[128];
    snprintf(path, sizeof(path), "/bytes/%llu", n);
    const char *const argv[] = { "curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w",
                                 "%{http_code} %{size_download}",
                                 px_url(h, path, url, sizeof(url)), NULL };
    struct tu_cmd_result res;
    px_run_ok(argv, &res);
    char want[64];
    snprintf(want, sizeof(want), "200 %llu", n);
    assert_string_equal(res.out, want);
    tu_cmd_result_free(&res);
    char status[64];
    snprintf(status, sizeof(status), "/proc/%d/status", (int)harness_pid(h));
    char *s = tu_read_file(status, NULL);
    assert_non_null(s);
    long hwm = strtol(strstr(s, "VmHWM:") + 6, NULL, 10);
    free(s);
    print_message("portico (with the simulator) peak RSS %ld kB\n", hwm);
    if (!SANITIZED)
        assert_true(hwm < 64 * 1024);
    px_stop(h);
}

/* Relative paths in the INI resolve against the INI's directory, not the working directory. */
static void test_relative_paths(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    assert_non_null(o);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\naccess_log = relative.log\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n",
                                          fake_origin_port(o)),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /rel HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(harness_wait_file(h, "relative.log", "target=\"/rel\"", PX_IO_MS), 0);
    assert_int_equal(access("relative.log", F_OK), -1); /* not in the working directory */
    px_stop(h);
    fake_origin_stop(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_default_config),
        cmocka_unit_test(test_check_bad_config),
        cmocka_unit_test(test_check_missing_and_empty),
        cmocka_unit_test(test_version_and_help),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_default_config_teapot),
        cmocka_unit_test(test_simulator_endpoints),
        cmocka_unit_test(test_simulator_big_download),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
