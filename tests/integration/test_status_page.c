/*
 * test_status_page.c — the admin listener's page `/` in a real browser: headless Chromium (from
 * Debian, scripts/deps.sh) loads it, its script fetches /status and renders, and the DOM it
 * leaves shows the counts of the traffic this test sent, with no script error.
 *
 * The browser stays on loopback and to itself: every name resolves nowhere except 127.0.0.1
 * (--host-resolver-rules), no background networking, component updates or first-run work, a
 * fresh profile in the harness's temp dir, and a bounded run (virtual time, then a hard
 * timeout). --no-sandbox only when running as root, where Chromium refuses to start otherwise.
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

#define BROWSER_MS 60000 /* hard bound of one Chromium run */

/* The text of the element with id="id" in dom (its first text, up to '<'), or NULL. */
static char *element_text(const char *dom, const char *id)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "id=\"%s\"", id);
    const char *p = strstr(dom, needle);
    if (!p || !(p = strchr(p, '>')))
        return NULL;
    p++;
    return strndup(p, strcspn(p, "<"));
}

/* Runs Chromium on url; its DOM after the scripts ran into *dom, its stderr into *log. */
static void browse(struct harness *h, const char *url, char **dom, char **log)
{
    char profile[512], virtual_time[64];
    snprintf(profile, sizeof(profile), "--user-data-dir=%s/chromium", harness_dir(h));
    snprintf(virtual_time, sizeof(virtual_time), "--virtual-time-budget=%d", 4000);
    const char *argv[24];
    int n = 0;
    argv[n++] = "chromium";
    argv[n++] = "--headless";
    if (geteuid() == 0)
        argv[n++] = "--no-sandbox";
    argv[n++] = "--disable-gpu";
    argv[n++] = "--no-first-run";
    argv[n++] = "--no-default-browser-check";
    argv[n++] = "--disable-background-networking";
    argv[n++] = "--disable-component-update";
    argv[n++] = "--disable-sync";
    argv[n++] = "--disable-extensions";
    argv[n++] = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1";
    argv[n++] = "--proxy-server=direct://";
    argv[n++] = "--enable-logging=stderr";
    argv[n++] = profile;
    argv[n++] = virtual_time;
    argv[n++] = "--dump-dom";
    argv[n++] = url;
    argv[n] = NULL;
    struct tu_cmd_result res = {0};
    int rc = tu_run_command(argv, BROWSER_MS, &res);
    if (rc != 0)
        fail_msg("chromium exited %d%s (is it installed? scripts/deps.sh): %.2000s", rc,
                 res.timed_out ? " after the time limit" : "", res.err);
    *dom = res.out;
    *log = res.err;
    res.out = res.err = NULL;
    tu_cmd_result_free(&res);
}

static void get(uint16_t port, const char *path, int want)
{
    char req[256];
    struct raw_response r;
    struct raw_conn *c = px_connect_port(port);
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, want);
    raw_response_free(&r);
    raw_close(c);
}

struct dom_row {
    const char *why;
    const char *id;
    const char *text;
};

static const struct dom_row dom_rows[] = {
    {"every request of the window", "count-all", "6"},
    {"three successes", "count-2xx", "3"},
    {"one 404 (no route)", "count-4xx", "1"},
    {"two refused connects", "count-5xx", "2"},
    {"by failure type", "failure-connect_refused", "2"},
    {"the app's origin is healthy, nothing in flight", "health-app-127.0.0.1:", "up, 0 in flight"},
    {"a failed check short of fall 3: still up, and going", "health-flaky-127.0.0.1:",
     "up (1 failed check in a row), 0 in flight"},
};

static void test_page_in_chromium(void **state)
{
    (void)state;
    struct fake_origin *ok = fake_origin_start_kind(FO_OK);
    struct fake_origin *refused = fake_origin_start_kind(FO_REFUSE);
    assert_non_null(ok);
    assert_non_null(refused);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
        "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nadmin_listen = 127.0.0.1:{{port:admin}}\n"
        "access_log = off\nworkers = 2\n"
        "[upstream app]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u backup\n"
        "[upstream gone]\norigin = 127.0.0.1:%u\n"
        /* the origin answers 200 to the check that expects 204: one failure at start */
        "[upstream flaky]\norigin = 127.0.0.1:%u\n"
        "health_check = GET /h every 1h expect 204 fall 3\n"
        "[route app]\nprefix = /app/\nupstream = app\n"
        "[route gone]\nprefix = /gone/\nupstream = gone\n",
        fake_origin_port(ok), fake_origin_port(refused), fake_origin_port(refused),
        fake_origin_port(ok)), 0);
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(harness_wait_log(h, "1 of 3 in a row, not marked down yet", 5000), 0);
    uint16_t port = harness_port(h, "listen");
    for (int i = 0; i < 3; i++)
        get(port, "/app/x", 200);
    get(port, "/gone/x", 502);
    get(port, "/gone/y", 502);
    get(port, "/nowhere", 404);

    /* The page allows its own inline style and script only, and no frame, form or other
     * destination: the browser must render it under that policy. */
    struct raw_conn *c = raw_connect(harness_port(h, "admin"), 5000);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, "GET / HTTP/1.1\r\n"
                                     "Host: 127.0.0.1\r\nConnection: close\r\n\r\n"),
                     0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, 5000), 0);
    const char *policy = raw_header(&r, "Content-Security-Policy");
    if (!policy)
        fail_msg("the page has no Content-Security-Policy");
    assert_non_null(strstr(policy, "default-src 'none'"));
    assert_non_null(strstr(policy, "script-src 'sha256-"));
    assert_non_null(strstr(policy, "connect-src 'self'"));
    assert_non_null(strstr(policy, "frame-ancestors 'none'"));
    assert_string_equal(raw_header(&r, "X-Content-Type-Options"), "nosniff");
    raw_response_free(&r);
    raw_close(c);

    char url[128], *dom = NULL, *log = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", harness_port(h, "admin"));
    browse(h, url, &dom, &log);
    if (!strstr(dom, "<body data-state=\"ok\">"))
        fail_msg("the page did not render from /status: %.3000s", dom);
    assert_null(strstr(dom, "data-error="));
    if (strstr(log, "Uncaught") || strstr(log, "Content Security Policy"))
        fail_msg("script error or policy violation in the browser's log: %.2000s", log);
    for (size_t i = 0; i < ARRAY_SIZE(dom_rows); i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s", dom_rows[i].id);
        if (strncmp(dom_rows[i].id, "health-", 7) == 0) /* the origin's port completes it */
            snprintf(id, sizeof(id), "%s%u", dom_rows[i].id, fake_origin_port(ok));
        char *got = element_text(dom, id);
        if (!got || strcmp(got, dom_rows[i].text) != 0)
            fail_msg("%s: #%s shows \"%s\", expected \"%s\"", dom_rows[i].why, id,
                     got ? got : "(absent)", dom_rows[i].text);
        free(got);
    }
    /* a backup says so after its address; a primary does not */
    struct fake_origin *app_origins[] = {ok, refused};
    for (size_t i = 0; i < ARRAY_SIZE(app_origins); i++) {
        uint16_t at = fake_origin_port(app_origins[i]);
        char id[64], want[64];
        snprintf(id, sizeof(id), "origin-app-127.0.0.1:%u", at);
        snprintf(want, sizeof(want), "127.0.0.1:%u%s", at, i ? " (backup)" : "");
        char *got = element_text(dom, id);
        if (!got || strcmp(got, want) != 0)
            fail_msg("#%s shows \"%s\", expected \"%s\"", id, got ? got : "(absent)", want);
        free(got);
    }
    /* each class's tile has its colour's class: "no status" is .cother (it was "coother", so
     * its count showed in the text colour) */
    static const char *const tiles[] = {"c2\" id=\"count-2xx", "c3\" id=\"count-3xx",
                                        "c4\" id=\"count-4xx", "c5\" id=\"count-5xx",
                                        "cother\" id=\"count-other"};
    for (size_t i = 0; i < ARRAY_SIZE(tiles); i++) {
        char want[64];
        snprintf(want, sizeof(want), "<strong class=\"%s\">", tiles[i]);
        if (!strstr(dom, want))
            fail_msg("no %s in the page: %.3000s", want, strstr(dom, "id=\"tiles\""));
    }
    /* the latest failures with their explanation, and latency per phase of the app upstream */
    assert_non_null(strstr(dom, "the origin refused the TCP connection"));
    assert_non_null(strstr(dom, "Connection refused"));
    char *p50 = element_text(dom, "p50-app-total");
    assert_non_null(p50);
    assert_true(strtod(p50, NULL) > 0);
    free(p50);
    free(dom);
    free(log);
    px_stop(h);
    fake_origin_stop(ok);
    fake_origin_stop(refused);
}

/* The page and a /status, served by a fake origin to the browser (test_page_stopped_checks). */
static struct fo_step page_steps[2], status_steps[2];
static const struct fo_step missing_steps[] = {FO_RESPOND(404, NULL, "none\n", FO_LENGTH),
                                               FO_END()};

static const struct fo_step *pick_page(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strncmp(req->head, "GET / ", 6) == 0)
        return page_steps;
    if (strncmp(req->head, "GET /status ", 12) == 0)
        return status_steps;
    return missing_steps;
}

/* The body of the admin listener's answer to GET path (200). */
static char *admin_body(struct harness *h, const char *path)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    struct raw_conn *c = raw_connect(harness_port(h, "admin"), 5000);
    assert_non_null(c);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, 5000), 0);
    assert_int_equal(r.status, 200);
    char *body = strdup(r.body);
    raw_response_free(&r);
    raw_close(c);
    return body;
}

/* An origin whose health checks stopped (no timer for the next one, out of memory: /status's
 * checks_stopped) is said so on the page: "(checks stopped: out of memory)" beside its state.
 * Such a stop cannot be made in a running Portico (test_loop_oom makes it in the loop): the
 * browser gets this Portico's own page and its own /status with that one value true, from an
 * origin of the test's (the page fetches /status from where it came). */
static void test_page_stopped_checks(void **state)
{
    (void)state;
    struct fake_origin *ok = fake_origin_start_kind(FO_OK);
    assert_non_null(ok);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
        "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nadmin_listen = 127.0.0.1:{{port:admin}}\n"
        "access_log = off\n"
        "[upstream app]\norigin = 127.0.0.1:%u\nhealth_check = GET /h every 1h expect 200\n",
        fake_origin_port(ok)), 0);
    assert_int_equal(harness_start(h), 0);
    char *page = admin_body(h, "/");
    char *status = admin_body(h, "/status");
    static const char armed[] = "\"checks_stopped\":false";
    char *at = strstr(status, armed);
    if (!at || strstr(at + 1, armed))
        fail_msg("not one origin with checks_stopped false in /status: %.2000s", status);
    char *stopped = malloc(strlen(status) + 2);
    assert_non_null(stopped);
    snprintf(stopped, strlen(status) + 2, "%.*s\"checks_stopped\":true%s", (int)(at - status),
             status, at + strlen(armed));
    page_steps[0] = (struct fo_step)FO_RESPOND(200, "Content-Type: text/html; charset=utf-8\r\n",
                                               page, FO_LENGTH);
    status_steps[0] = (struct fo_step)FO_RESPOND(200, "Content-Type: application/json\r\n",
                                                 stopped, FO_LENGTH);
    struct fake_origin *site =
        fake_origin_start(&(struct fake_origin_opts){.kind = FO_SCRIPT, .pick_script = pick_page});
    assert_non_null(site);
    char url[128], *dom = NULL, *log = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", fake_origin_port(site));
    browse(h, url, &dom, &log);
    if (!strstr(dom, "<body data-state=\"ok\">"))
        fail_msg("the page did not render from /status: %.3000s", dom);
    if (strstr(log, "Uncaught"))
        fail_msg("script error in the browser's log: %.2000s", log);
    char id[64];
    snprintf(id, sizeof(id), "health-app-127.0.0.1:%u", fake_origin_port(ok));
    char *got = element_text(dom, id);
    print_message("  #%s: %s\n", id, got ? got : "(absent)");
    if (!got || !strstr(got, " (checks stopped: out of memory), 0 in flight"))
        fail_msg("#%s shows \"%s\", not that its checks stopped", id, got ? got : "(absent)");
    free(got);
    free(dom);
    free(log);
    fake_origin_stop(site);
    free(stopped);
    free(status);
    free(page);
    px_stop(h);
    fake_origin_stop(ok);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_in_chromium),
        cmocka_unit_test(test_page_stopped_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
