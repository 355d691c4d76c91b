/*
 * test_http2_browser.c — issue 11's proof that Early Hints reach a real browser: headless
 * Chromium (Debian's `chromium`) loads a page through Portico's TLS listener, whose route has
 * `early_hints` for the page's stylesheet. The page reports performance.getEntriesByType
 * ('resource'); over HTTP/2 the stylesheet must have initiatorType "early-hints" and
 * nextHopProtocol "h2", and over HTTP/1.1 (--disable-http2) it must be a plain "link": Chrome
 * ignores a 103 on HTTP/1.1, which is why HTTP/2 exists in Portico.
 *
 * What it takes (learned setting it up): Chromium turns Early Hints off when the certificate
 * is in error, so the test certificate is trusted by pinning its key
 * (--ignore-certificate-errors-spki-list, a fresh --user-data-dir); on bare loopback the 103
 * can arrive before Chromium waits for the response head and is dropped, so a small relay in
 * this file adds DELAY_MS to every chunk between browser and proxy. The browser stays on
 * loopback: every name but localhost resolves to nothing, background networking is off.
 *
 * The second row is a web developer's look at a failed subresource: a page whose stylesheet and
 * script come from an origin that refuses, through Portico. Chromium must see the 502 of each
 * (Resource Timing's responseStatus, what DevTools shows): an error answer that said nosniff was
 * blocked as the wrong type, its status lost (0) and the console blaming the MIME type.
 *
 * The third is a page over HTTP/2 that opens a WebSocket: it must run on a stream of the page's
 * connection (RFC 8441), one TLS connection in all.
 *
 * Each row is skipped, saying so, where `chromium` is not installed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/scrape.h"
#include "../support/testutil.h"
#include "../support/websocket.h"
#include "proxy_helpers.h"

#define DELAY_MS 30       /* latency the relay adds to every chunk, each way */
#define RELAY_CONNS 16    /* connections the relay serves (Chromium opens a few for HTTP/1.1) */
#define BROWSER_MS 60000  /* bound of one Chromium run */

/* ---- the origin: a page that reports its resources, and its stylesheet ---- */

static const char page[] =
    "<!doctype html><html><head><title>hints</title>"
    "<link rel=\"stylesheet\" href=\"/app.css\"></head><body><p>hello</p><script>"
    "window.addEventListener('load', () => {"
    "  const r = performance.getEntriesByType('resource')"
    "    .map(e => e.name + '|' + e.initiatorType + '|' + e.nextHopProtocol);"
    "  document.body.setAttribute('data-report', r.join(' '));"
    "});</script></body></html>";

static const struct fo_step page_script[] = {
    FO_WAIT(300), /* the origin thinks: the 103 has time to be used */
    FO_RESPOND(200, "Content-Type: text/html\r\nCache-Control: no-store\r\n", page, FO_LENGTH),
    FO_END(),
};
static const struct fo_step css_script[] = {
    FO_RESPOND(200, "Content-Type: text/css\r\nCache-Control: max-age=300\r\n", "p{color:red}",
               FO_LENGTH),
    FO_END(),
};
static const struct fo_step none_script[] = {
    FO_RESPOND(404, "Content-Type: text/plain\r\n", "no", FO_LENGTH),
    FO_END(),
};

/* A page whose stylesheet and script are under /gone/, a route to an origin that refuses: it
 * reports each resource's responseStatus, the status Chromium saw (0: none). */
static const char gone_page[] =
    "<!doctype html><html><head><title>gone</title>"
    "<link rel=\"stylesheet\" href=\"/gone/app.css\"><script src=\"/gone/app.js\"></script>"
    "</head><body><p>hello</p><script>"
    "window.addEventListener('load', () => {"
    "  const r = performance.getEntriesByType('resource')"
    "    .map(e => e.name + '|' + e.initiatorType + '|' + e.responseStatus);"
    "  document.body.setAttribute('data-report', r.join(' '));"
    "});</script></body></html>";

static const struct fo_step gone_page_script[] = {
    FO_RESPOND(200, "Content-Type: text/html\r\nCache-Control: no-store\r\n", gone_page,
               FO_LENGTH),
    FO_END(),
};

/* A page that opens a WebSocket to /ws/echo, sends a message and reports the echo. Its load
 * event waits for /hold, which the origin answers once /done came: /done is asked for when the
 * echo (or an error) came, so the report is in the page when Chromium dumps it. */
static const char ws_page[] =
    "<!doctype html><html><head><title>ws</title></head><body><p>hello</p>"
    "<img src=\"/hold\"><script>"
    "function done(what) {"
    "  document.body.setAttribute('data-report', what);"
    "  const i = document.createElement('img'); i.src = '/done'; document.body.appendChild(i);"
    "}"
    "const ws = new WebSocket('wss://' + location.host + '/ws/echo');"
    "ws.onopen = () => ws.send('hello over one connection');"
    "ws.onmessage = (e) => { done('echo:' + e.data); ws.close(); };"
    "ws.onerror = () => done('error');"
    "</script></body></html>";

static atomic_bool ws_done; /* the origin saw GET /done */

static int wait_done(int fd, void *arg)
{
    (void)fd, (void)arg;
    for (int i = 0; i < 2000 && !atomic_load(&ws_done); i++) /* 20 s at most */
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    return 0;
}

static const struct fo_step ws_page_script[] = {
    FO_RESPOND(200, "Content-Type: text/html\r\nCache-Control: no-store\r\n", ws_page,
               FO_LENGTH),
    FO_END(),
};
static const struct fo_step hold_script[] = {
    FO_CALL(wait_done, NULL),
    FO_RESPOND(204, "Cache-Control: no-store\r\n", NULL, FO_NO_FRAMING),
    FO_END(),
};
static const struct fo_step done_script[] = {
    FO_RESPOND(204, "Cache-Control: no-store\r\n", NULL, FO_NO_FRAMING),
    FO_END(),
};

static const struct fo_step *pick(const struct fo_request_info *req, void *arg)
{
    (void)arg;
    if (strncmp(req->head, "GET /wspage ", 12) == 0)
        return ws_page_script;
    if (strncmp(req->head, "GET /hold ", 10) == 0)
        return hold_script;
    if (strncmp(req->head, "GET /done ", 10) == 0) {
        atomic_store(&ws_done, true);
        return done_script;
    }
    if (strncmp(req->head, "GET /page ", 10) == 0)
        return page_script;
    if (strncmp(req->head, "GET /gonepage ", 14) == 0)
        return gone_page_script;
    if (strncmp(req->head, "GET /app.css ", 13) == 0)
        return css_script;
    return none_script;
}

/* ---- the delaying relay ---- */

struct relay {
    int lfd;
    uint16_t port;                     /* where the browser connects */
    uint16_t target;                   /* Portico's TLS listener */
    atomic_bool stop;
    pthread_t accepter;
    pthread_t pumps[RELAY_CONNS * 2];
    int fds[RELAY_CONNS * 2];
    atomic_int npumps;
};

struct pump {
    struct relay *r;
    int from, to;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Copies from one side to the other, each chunk DELAY_MS late, until EOF or stop. */
static void *pump_main(void *arg)
{
    struct pump p = *(struct pump *)arg;
    free(arg);
    char buf[65536];
    while (!atomic_load(&p.r->stop)) {
        short rev = 0;
        int rc = tu_poll_until(p.from, POLLIN, tu_now_ms() + 100, &rev);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        ssize_t n = read(p.from, buf, sizeof(buf));
        if (n <= 0)
            break;
        sleep_ms(DELAY_MS);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(p.to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    shutdown(p.to, SHUT_WR);
    return NULL;
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void start_pump(struct relay *r, int from, int to)
{
    int i = atomic_fetch_add(&r->npumps, 1);
    struct pump *p = malloc(sizeof(*p));
    assert_non_null(p);
    *p = (struct pump){r, from, to};
    r->fds[i] = from;
    assert_int_equal(pthread_create(&r->pumps[i], NULL, pump_main, p), 0);
}

static void *accept_main(void *arg)
{
    struct relay *r = arg;
    while (!atomic_load(&r->stop) && atomic_load(&r->npumps) < RELAY_CONNS * 2) {
        short rev = 0;
        if (tu_poll_until(r->lfd, POLLIN, tu_now_ms() + 100, &rev) <= 0)
            continue;
        int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        int u = connect_to(r->target);
        if (u < 0) {
            close(c);
            continue;
        }
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        start_pump(r, c, u);
        start_pump(r, u, c);
    }
    return NULL;
}

static struct relay *relay_start(uint16_t target)
{
    struct relay *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->target = target;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(r->lfd, 16), 0);
    assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&sa, &len), 0);
    r->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&r->accepter, NULL, accept_main, r), 0);
    return r;
}

static void relay_stop(struct relay *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->accepter, NULL);
    int n = atomic_load(&r->npumps);
    for (int i = 0; i < n; i++)
        pthread_join(r->pumps[i], NULL);
    for (int i = 0; i < n; i += 2) {
        close(r->fds[i]);
        close(r->fds[i + 1]);
    }
    close(r->lfd);
    free(r);
}

/* ---- the browser ---- */

/* base64(sha256(SubjectPublicKeyInfo)) of the test server certificate, for the pin. */
static void spki_pin(char *out, size_t size)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der | "
             "openssl dgst -sha256 -binary | base64",
             certs_get()->server_cert);
    const char *const argv[] = {"sh", "-c", cmd, NULL};
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    snprintf(out, size, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    tu_cmd_result_free(&r);
    assert_int_equal(strlen(out), 44);
}

/* Whether `chromium` is on PATH: without it the rows are skipped, not failed. */
static bool have_chromium(void)
{
    const char *const argv[] = {"sh", "-c", "command -v chromium", NULL};
    struct tu_cmd_result r = {0};
    int rc = tu_run_command(argv, 5000, &r);
    tu_cmd_result_free(&r);
    return rc == 0;
}

#define SKIP_WITHOUT_CHROMIUM()                                                                    \
    do {                                                                                           \
        if (!have_chromium()) {                                                                    \
            print_message("  skipped: chromium is not installed (scripts/deps.sh installs it)\n"); \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Loads path from localhost:port; returns the page's data-report (malloc'd). console, when not
 * NULL, gets Chromium's log (malloc'd), where the page's console messages are ("CONSOLE"). */
static char *browse(struct harness *h, uint16_t port, const char *path, const char *profile,
                    bool http2, char **console)
{
    char pin[64], pin_flag[128], dir_flag[600], u[128];
    spki_pin(pin, sizeof(pin));
    snprintf(pin_flag, sizeof(pin_flag), "--ignore-certificate-errors-spki-list=%s", pin);
    snprintf(dir_flag, sizeof(dir_flag), "--user-data-dir=%s/%s", harness_dir(h), profile);
    snprintf(u, sizeof(u), "https://localhost:%u%s", port, path);
    const char *const argv[] = {
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", dir_flag, pin_flag,
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
        "--disable-background-networking", "--no-first-run", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--disable-default-apps",
        "--no-default-browser-check", "--disable-breakpad", "--enable-logging=stderr", "--v=0",
        http2 ? "--disable-quic" : "--disable-http2", "--dump-dom", u, NULL};
    struct tu_cmd_result res = {0};
    int rc = tu_run_command(argv, BROWSER_MS, &res);
    if (rc != 0)
        fail_msg("chromium exited %d:\n%s", rc, res.err);
    const char *p = strstr(res.out, "data-report=\"");
    if (!p)
        fail_msg("no report in the page:\n%s\n%s", res.out, res.err);
    p += 13;
    char *report = strndup(p, strcspn(p, "\""));
    if (console != NULL)
        *console = strdup(res.err);
    tu_cmd_result_free(&res);
    return report;
}

/* The entry of the report for the stylesheet: "https://...:PORT/app.css|<initiator>|<proto>". */
static void expect_css(const char *report, uint16_t port, const char *initiator,
                       const char *proto)
{
    char want[200];
    snprintf(want, sizeof(want), "https://localhost:%u/app.css|%s|%s", port, initiator, proto);
    if (!tu_contains(report, want))
        fail_msg("expected %s in the resource entries: %s", want, report);
}

static void test_browser_uses_early_hints_over_h2_only(void **state)
{
    (void)state;
    SKIP_WITHOUT_CHROMIUM();
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct harness *h = harness_new();
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:tls}} tls\n"
                                          "workers = 1\n"
                                          "tls_cert = %s\ntls_key = %s\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n"
                                          "[route page]\nprefix = /page\nupstream = u\n"
                                          "early_hints = </app.css>; rel=preload; as=style\n"
                                          "[route rest]\nprefix = /\nupstream = u\n",
                                          certs->server_cert, certs->server_key,
                                          fake_origin_port(o)),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    struct relay *r = relay_start(harness_port(h, "tls"));

    char *report = browse(h, r->port, "/page", "profile-h2", true, NULL);
    print_message("HTTP/2: %s\n", report);
    expect_css(report, r->port, "early-hints", "h2");
    free(report);

    report = browse(h, r->port, "/page", "profile-h1", false, NULL);
    print_message("HTTP/1.1: %s\n", report);
    expect_css(report, r->port, "link", "http/1.1");
    free(report);

    relay_stop(r);
    assert_int_equal(harness_stop(h), 0);
    /* Read once stopped, when the worker has written out its lines (once a second while it
     * runs). One worker, the browsers one after the other: the first /page is HTTP/2's. */
    char *line = harness_file_line(h, "access.log", "\"path\":\"/page\"", 5000);
    assert_non_null(line);
    assert_true(tu_contains(line, "\"proto\":\"HTTP/2.0\""));
    assert_true(tu_contains(line, "\"interim\":[103]"));
    free(line);
    harness_free(h);
    fake_origin_stop(o);
}

/* The status of a subresource's entry in the report: "https://...:PORT/gone/NAME|<init>|<N>". */
static void expect_status(const char *report, uint16_t port, const char *name,
                          const char *initiator, int status)
{
    char want[200];
    snprintf(want, sizeof(want), "https://localhost:%u/gone/%s|%s|%d", port, name, initiator,
             status);
    if (!tu_contains(report, want))
        fail_msg("expected %s in the resource entries: %s", want, report);
}

static void test_browser_sees_the_status_of_a_failed_stylesheet(void **state)
{
    (void)state;
    SKIP_WITHOUT_CHROMIUM();
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct fake_origin_opts refuse_opts = {.kind = FO_REFUSE};
    struct fake_origin *gone = fake_origin_start(&refuse_opts);
    assert_non_null(gone);
    struct harness *h = harness_new();
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:tls}} tls\n"
                                          "workers = 1\n"
                                          "tls_cert = %s\ntls_key = %s\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n"
                                          "[upstream gone]\norigin = 127.0.0.1:%u\n"
                                          "[route gone]\nprefix = /gone/\nupstream = gone\n"
                                          "[route rest]\nprefix = /\nupstream = u\n",
                                          certs->server_cert, certs->server_key,
                                          fake_origin_port(o), fake_origin_port(gone)),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    uint16_t port = harness_port(h, "tls");

    /* Both protocols: the answer is the same error page whichever carries it. */
    static const struct {
        const char *profile;
        bool http2;
    } runs[] = {{"profile-gone-h2", true}, {"profile-gone-h1", false}};
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        char *console = NULL;
        char *report = browse(h, port, "/gonepage", runs[i].profile, runs[i].http2, &console);
        print_message("%s: %s\n", runs[i].http2 ? "HTTP/2" : "HTTP/1.1", report);
        expect_status(report, port, "app.css", "link", 502);
        expect_status(report, port, "app.js", "script", 502);
        /* "Refused to apply style ... because its MIME type ('text/plain') ...": not the fault */
        if (console == NULL || tu_contains(console, "MIME type"))
            fail_msg("the console blames the MIME type:\n%s", console ? console : "(no log)");
        free(console);
        free(report);
    }

    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
    fake_origin_stop(gone);
    fake_origin_stop(o);
}

/* A page over HTTP/2 opens a WebSocket: Chromium carries it on a stream of the page's own
 * connection (RFC 8441: SETTINGS_ENABLE_CONNECT_PROTOCOL), one TLS connection in all. Without
 * the setting, Chromium opened a second connection, HTTP/1.1, for the WebSocket. */
static void test_browser_websocket_on_the_page_connection(void **state)
{
    (void)state;
    SKIP_WITHOUT_CHROMIUM();
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    atomic_store(&ws_done, false);
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick};
    struct fake_origin *o = fake_origin_start(&opts);
    assert_non_null(o);
    struct ws_origin *ws = ws_origin_start();
    assert_non_null(ws);
    struct harness *h = harness_new();
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:tls}} tls\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "workers = 1\n"
                                          "tls_cert = %s\ntls_key = %s\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "[upstream u]\norigin = 127.0.0.1:%u\n"
                                          "[upstream ws]\norigin = 127.0.0.1:%u\n"
                                          "[route ws]\nprefix = /ws/\nupstream = ws\n"
                                          "[route rest]\nprefix = /\nupstream = u\n",
                                          certs->server_cert, certs->server_key,
                                          fake_origin_port(o), ws_origin_port(ws)),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    uint16_t port = harness_port(h, "tls"), admin = harness_port(h, "admin");
    char *report = browse(h, port, "/wspage", "profile-ws", true, NULL);
    double conns = scrape_metric(admin, "portico_client_connections_total", 5000);
    double h2conns = scrape_metric(admin, "portico_http2_connections_total", 5000);
    double tunnels = scrape_metric(admin, "portico_tunnels_total", 5000);
    print_message("HTTP/2 page and WebSocket: %s; %.0f connection(s), %.0f HTTP/2, %.0f "
                  "tunnel(s)\n",
                  report, conns, h2conns, tunnels);
    if (strcmp(report, "echo:hello over one connection") != 0)
        fail_msg("the page's WebSocket: %s", report);
    free(report);
    assert_true(tunnels == 1);
    assert_int_equal(ws_origin_handshakes(ws), 1);
    assert_int_equal(harness_stop(h), 0);
    /* the page's line and the WebSocket's name the same client address and port: one
     * connection (the counts above may include a connection Chromium opened ahead and left
     * unused, and the admin endpoint's) */
    char *page_line = harness_file_line(h, "access.log", "\"path\":\"/wspage\"", 5000);
    char *line = harness_file_line(h, "access.log", "\"path\":\"/ws/echo\"", 5000);
    assert_non_null(page_line);
    assert_non_null(line);
    const char *pc = strstr(page_line, "\"client\":\""), *wc = strstr(line, "\"client\":\"");
    assert_true(pc && wc);
    size_t pn = strcspn(pc + 10, "\""), wn = strcspn(wc + 10, "\"");
    if (!tu_contains(line, "\"proto\":\"HTTP/2.0\"") || !tu_contains(line, "\"status\":200") ||
        pn != wn || memcmp(pc + 10, wc + 10, pn) != 0)
        fail_msg("the WebSocket's line:\n%s\nthe page's:\n%s", line, page_line);
    free(page_line);
    free(line);
    harness_free(h);
    ws_origin_stop(ws);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    tu_ignore_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_browser_uses_early_hints_over_h2_only),
        cmocka_unit_test(test_browser_sees_the_status_of_a_failed_stylesheet),
        cmocka_unit_test(test_browser_websocket_on_the_page_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
