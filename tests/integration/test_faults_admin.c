/*
 * test_faults_admin.c — the fault rules' runtime API on the admin listener (issue 8) against the
 * real `portico`: admin_token (401 without it or with a wrong one, on every admin endpoint, before
 * a body is awaited), GET /faults with hit counts, POST /faults/NAME enabled= and probability=
 * acting at once, for= reverting by itself, POST /faults adding a rule (form-encoded and INI
 * lines), refusals (400 naming the bad part, 404, 405, 409, 411, 413), DELETE; a SIGHUP reload
 * bringing the INI's rules back, and a change whose body came after the reload told to send it
 * again (503); and conf/examples/staging.ini, which `portico -t` must accept.
 */
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
#include <unistd.h>

#include <cmocka.h>

#include "portico/fault_table.h"

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "proxy_helpers.h"

#define TOKEN "t0ken-for-the-tests"
#define AUTH "Authorization: Bearer " TOKEN "\r\n"
#define STAGING "conf/examples/staging.ini"

static const char config[] =
    "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nadmin_listen = 127.0.0.1:{{port:admin}}\n"
    "admin_token = " TOKEN "\nworkers = 2\naccess_log = off\n"
    "[upstream u]\norigin = 127.0.0.1:%u\n"
    "[faults]\nseed = 1\n"
    "[fault teapot]\nprefix = /tea\nstatus = 418\n";

static struct harness *start(struct fake_origin *o)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, config, fake_origin_port(o)), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* One admin request on a new connection (head lines in extra, a body); the response in r. */
static int admin(struct harness *h, const char *method, const char *path, const char *extra,
                 const char *body, struct raw_response *r)
{
    char req[4096];
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\n"
                               "Host: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, path, extra, body ? strlen(body) : 0, body ? body : "");
    assert_int_equal(raw_send_str(c, req), 0);
    int rc = strcmp(method, "HEAD") == 0 ? raw_read_head_response(c, r, PX_IO_MS)
                                          : raw_read_response(c, r, PX_IO_MS);
    if (rc != 0)
        fail_msg("%s %s: %s", method, path, r->error);
    raw_close(c);
    return r->status;
}

/* A form-encoded POST, as curl -d sends it. */
static int post_form(struct harness *h, const char *path, const char *form, struct raw_response *r)
{
    return admin(h, "POST", path, AUTH "Content-Type: application/x-www-form-urlencoded\r\n",
                 form, r);
}

/* The status of GET path through the proxy. */
static int proxied(struct harness *h, const char *path)
{
    char req[256];
    struct raw_response r;
    struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    int status = r.status;
    raw_response_free(&r);
    raw_close(c);
    return status;
}

static void expect(int got, int want, const struct raw_response *r)
{
    if (got != want)
        fail_msg("status %d, want %d: %s", got, want, r->body);
}

/* ---- the token ---- */

static void test_token(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    static const char *const paths[] = {"/faults", "/metrics", "/healthz", "/faults/teapot"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        expect(admin(h, "GET", paths[i], "", NULL, &r), 401, &r);
        assert_string_equal(raw_header(&r, "WWW-Authenticate"), "Bearer realm=\"portico\"");
        raw_response_free(&r);
        expect(admin(h, "GET", paths[i], "Authorization: Bearer wrong\r\n", NULL, &r), 401, &r);
        raw_response_free(&r);
        /* a prefix or an extension of the token is wrong too */
        expect(admin(h, "GET", paths[i], "Authorization: Bearer t0ken-for-the-test\r\n", NULL, &r),
               401, &r);
        raw_response_free(&r);
        expect(admin(h, "GET", paths[i], "Authorization: Bearer " TOKEN "x\r\n", NULL, &r), 401,
               &r);
        raw_response_free(&r);
        expect(admin(h, "GET", paths[i], "Authorization: Basic " TOKEN "\r\n", NULL, &r), 401, &r);
        raw_response_free(&r);
        expect(admin(h, "GET", paths[i], AUTH, NULL, &r), 200, &r);
        raw_response_free(&r);
        expect(admin(h, "GET", paths[i], "authorization: bearer " TOKEN "\r\n", NULL, &r), 200,
               &r); /* the scheme and the field name are case-insensitive */
        raw_response_free(&r);
        expect(admin(h, "GET", paths[i], "Authorization: Bearer   " TOKEN "\r\n", NULL, &r), 200,
               &r); /* 1*SP between the scheme and the token (RFC 9110 11.4) */
        raw_response_free(&r);
    }
    /* a change without the token changes nothing */
    expect(post_form(h, "/faults/teapot", "enabled=0", &r), 200, &r);
    raw_response_free(&r);
    expect(admin(h, "POST", "/faults/teapot", "", "enabled=1", &r), 401, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/tea"), 200);
    px_stop(h);
    fake_origin_stop(o);
}

/* A change without the token is refused before its body: it got 100 Continue, and its body was
 * awaited (for client_header_timeout when it never came) and read, 16 KiB of it, before the 401;
 * one over 16 KiB got 413, telling a client without the token what the API would take. */
static void test_token_before_body(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    static const char *const asks[] = {
        "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        "Content-Length: 100\r\n\r\n",
        "POST /faults/teapot HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n"
        "Content-Length: 100\r\n\r\nenabled=0",
        "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20000\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(asks); i++) {
        struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
        assert_int_equal(raw_send_str(c, asks[i]), 0);
        struct raw_response r;
        if (raw_read_response(c, &r, PX_IO_MS) != 0)
            fail_msg("request %zu: no answer: %s", i, r.error);
        expect(r.status, 401, &r);
        assert_int_equal(r.ninterim, 0); /* no 100 Continue for a body that is not read */
        raw_response_free(&r);
        assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
        raw_close(c);
    }
    assert_int_equal(proxied(h, "/tea"), 418);
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- list, change, revert ---- */

/* for= of the revert check. The POST's answer and a proxied request must both come within it
 * (the rule still off), also on a slow sanitized host: 300 ms left too little of it. */
#define REVERT_MS 1000

static void test_list_and_change(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    assert_int_equal(proxied(h, "/tea"), 418);
    assert_int_equal(proxied(h, "/tea"), 418);
    assert_int_equal(proxied(h, "/other"), 200);
    expect(admin(h, "GET", "/faults", AUTH, NULL, &r), 200, &r);
    assert_string_equal(raw_header(&r, "Content-Type"), "application/json");
    assert_true(tu_contains(r.body, "\"generation\":1,"));
    assert_true(tu_contains(r.body, "\"seed\":1,"));
    assert_true(tu_contains(r.body, "{\"name\":\"teapot\",\"source\":\"ini\",\"state\":\"armed\","
                                    "\"enabled\":true,\"probability\":1,\"revert_in_ms\":null,"
                                    "\"matched\":2,\"hits\":2,\"active\":0,"
                                    "\"rule\":{\"prefix\":\"/tea\",\"status\":\"418\"}}"));
    raw_response_free(&r);
    expect(admin(h, "HEAD", "/faults", AUTH, NULL, &r), 200, &r);
    raw_response_free(&r);

    /* off, at once, for every worker; then on */
    expect(post_form(h, "/faults/teapot", "enabled=0", &r), 200, &r);
    assert_true(tu_contains(r.body, "\"state\":\"disabled\""));
    raw_response_free(&r);
    for (int i = 0; i < 4; i++)
        assert_int_equal(proxied(h, "/tea"), 200);
    expect(post_form(h, "/faults/teapot", "enabled=1", &r), 200, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/tea"), 418);
    expect(post_form(h, "/faults/teapot", "probability=0", &r), 200, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/tea"), 200);
    expect(post_form(h, "/faults/teapot", "probability=1", &r), 200, &r);
    raw_response_free(&r);

    /* for=: disabled for REVERT_MS, then back by itself */
    int64_t t0 = tu_now_ms();
    char form[64], said[64];
    snprintf(form, sizeof(form), "enabled=0&for=%dms", REVERT_MS);
    snprintf(said, sizeof(said), "\"revert_in_ms\":%d", REVERT_MS);
    expect(post_form(h, "/faults/teapot", form, &r), 200, &r);
    assert_true(tu_contains(r.body, said));
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/tea"), 200); /* within REVERT_MS of t0: still disabled */
    int64_t back = -1;
    for (int i = 0; i < 4 * REVERT_MS / 10 && tu_now_ms() < t0 + 4 * REVERT_MS; i++) {
        if (proxied(h, "/tea") == 418) {
            back = tu_now_ms() - t0;
            break;
        }
        poll(NULL, 0, 10); /* paces the probes; the revert is a time in Portico, not an event */
    }
    print_message("  %s: the rule was back after %lld ms\n", form, (long long)back);
    assert_true(back >= REVERT_MS && back < 4 * REVERT_MS);
    expect(admin(h, "GET", "/faults/teapot", AUTH, NULL, &r), 200, &r);
    assert_true(tu_contains(r.body, "\"enabled\":true,"));
    assert_true(tu_contains(r.body, "\"revert_in_ms\":null"));
    raw_response_free(&r);

    /* refusals */
    expect(post_form(h, "/faults/teapot", "enabled=maybe", &r), 400, &r);
    assert_string_equal(r.body, "400 Bad Request: enabled=maybe: expected enabled=0|1, "
                                "probability=0..1 or for=DURATION\n");
    raw_response_free(&r);
    expect(post_form(h, "/faults/teapot", "probability=2", &r), 400, &r);
    assert_true(tu_contains(r.body, "probability: '2' is not a number between 0 and 1"));
    raw_response_free(&r);
    expect(post_form(h, "/faults/teapot", "for=1s", &r), 400, &r);
    assert_true(tu_contains(r.body, "nothing to change"));
    raw_response_free(&r);
    expect(post_form(h, "/faults/teapot", "enabled=0&for=0", &r), 400, &r); /* for= is > 0 */
    assert_true(tu_contains(r.body, "for=0: expected enabled=0|1"));
    raw_response_free(&r);
    expect(post_form(h, "/faults/nope", "enabled=1", &r), 404, &r);
    assert_string_equal(r.body, "404 Not Found: nope: no such rule\n");
    raw_response_free(&r);
    expect(admin(h, "PUT", "/faults/teapot", AUTH, NULL, &r), 405, &r);
    assert_string_equal(raw_header(&r, "Allow"), "GET, HEAD, POST, DELETE");
    raw_response_free(&r);
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- add, delete ---- */

/* A rule added may not set the fields Portico writes itself: Portico-Fault (which names the
 * rule that fired; main took it, and the answer carried "Portico-Fault: other"), nor a framing
 * or connection field, which would make the answer lie about its framing. 400, one line, as
 * the INI's words; nothing added. */
static void test_add_reserved_fields(void **state)
{
    (void)state;
    static const struct {
        const char *form;
        const char *body;
    } rows[] = {
        {"name=own&prefix=/own&status=503&headers=Portico-Fault%3A+other",
         "400 Bad Request: headers: 'Portico-Fault' is set by Portico (it names the rule that "
         "fired)\n"},
        {"name=own&prefix=/own&status=503&headers=Content-Length%3A+5",
         "400 Bad Request: headers: 'Content-Length' is set by Portico (framing and connection "
         "fields)\n"},
        {"name=own&prefix=/own&status=503&headers=Transfer-Encoding%3A+chunked",
         "400 Bad Request: headers: 'Transfer-Encoding' is set by Portico (framing and "
         "connection fields)\n"},
        {"name=own&prefix=/own&status=503&headers=Connection%3A+close",
         "400 Bad Request: headers: 'Connection' is set by Portico (framing and connection "
         "fields)\n"},
    };
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        expect(post_form(h, "/faults", rows[i].form, &r), 400, &r);
        assert_string_equal(r.body, rows[i].body);
        raw_response_free(&r);
    }
    expect(admin(h, "GET", "/faults/own", AUTH, NULL, &r), 404, &r); /* nothing was added */
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/own"), 200);
    px_stop(h);
    fake_origin_stop(o);
}

static void test_add_and_delete(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    /* curl -d name=added -d prefix=/added -d 'status=503' -d 'headers=Retry-After: 5' */
    expect(post_form(h, "/faults", "name=added&prefix=%2Fadded&status=503&headers=Retry-After%3A+5",
                     &r), 201, &r);
    assert_true(tu_contains(r.body, "\"name\":\"added\",\"source\":\"admin\""));
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/added"), 503);
    /* INI lines, as in a [fault] section */
    expect(admin(h, "POST", "/faults", AUTH "Content-Type: text/plain\r\n",
                 "; a comment\nname = lines\nprefix = /lines\nbody = 100% down\nstatus = 500\n",
                 &r), 201, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/lines"), 500);
    /* refusals: the same words as the INI's */
    expect(post_form(h, "/faults", "name=bad&status=5o3", &r), 400, &r);
    assert_string_equal(r.body, "400 Bad Request: status: '5o3' is not a status code (200-599)\n");
    raw_response_free(&r);
    /* the reason given is the one that holds (it said "must start with '/'") */
    expect(post_form(h, "/faults", "name=bad&prefix=%2Fa%01b&status=503", &r), 400, &r);
    assert_string_equal(r.body,
                        "400 Bad Request: prefix: '/a\\x01b': control character in the value\n");
    raw_response_free(&r);
    expect(post_form(h, "/faults", "status=503", &r), 400, &r);
    assert_true(tu_contains(r.body, "a rule needs name="));
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=x&prefix=/x", &r), 400, &r);
    assert_true(tu_contains(r.body, "no action"));
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=x&route=nope&status=503", &r), 400, &r);
    assert_true(tu_contains(r.body, "no [route nope]"));
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=header&status=503", &r), 400, &r);
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=admin&status=503", &r), 400, &r); /* the API's label */
    assert_true(tu_contains(r.body, "name: 'admin' is not a rule name"));
    raw_response_free(&r);
    /* a name of FAULT_NAME_MAX - 1 bytes (63) is taken, one of 64 is not */
    char form[160], name64[65];
    memset(name64, 'n', 64);
    name64[64] = '\0';
    snprintf(form, sizeof(form), "name=%.63s&prefix=/longname&status=503", name64);
    expect(post_form(h, "/faults", form, &r), 201, &r);
    raw_response_free(&r);
    snprintf(form, sizeof(form), "name=%s&prefix=/longname&status=503", name64);
    expect(post_form(h, "/faults", form, &r), 400, &r);
    assert_true(tu_contains(r.body, "is not a rule name"));
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=one&name=two&status=503", &r), 400, &r);
    assert_string_equal(r.body, "400 Bad Request: name given twice\n");
    raw_response_free(&r);
    /* /faults and /faults/NAME only: a longer word is another path */
    expect(post_form(h, "/faultsx", "name=x&status=503", &r), 405, &r); /* not a fault API path */
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=teapot&status=503", &r), 409, &r);
    raw_response_free(&r);
    /* counted under the admin label in the metrics */
    expect(admin(h, "GET", "/metrics", AUTH, NULL, &r), 200, &r);
    assert_true(tu_contains(r.body, "portico_faults_injected_total{fault=\"admin\","
                                    "action=\"status\"} 2\n"));
    raw_response_free(&r);
    /* delete, also an INI rule; a second delete finds nothing */
    expect(admin(h, "DELETE", "/faults/added", AUTH, NULL, &r), 200, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/added"), 200);
    expect(admin(h, "DELETE", "/faults/added", AUTH, NULL, &r), 404, &r);
    raw_response_free(&r);
    expect(admin(h, "DELETE", "/faults/teapot", AUTH, NULL, &r), 200, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/tea"), 200);
    expect(admin(h, "GET", "/faults", AUTH, NULL, &r), 200, &r);
    assert_false(tu_contains(r.body, "\"teapot\""));
    assert_true(tu_contains(r.body, "\"lines\""));
    raw_response_free(&r);
    /* a deleted name can be added again */
    expect(post_form(h, "/faults", "name=added&prefix=/added&status=502", &r), 201, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/added"), 502);
    /* a value is listed whole, however much JSON escapes it (3,000 quotes were listed as 2,048:
     * the escaped text was cut at the 4,096 bytes the value itself may have) */
    enum { QUOTES = 3000 };
    static char lines[QUOTES + 64];
    int n = snprintf(lines, sizeof(lines), "name = quoted\nprefix = /quoted\nstatus = 503\nbody = ");
    memset(lines + n, '"', QUOTES);
    lines[n + QUOTES] = '\0';
    expect(admin(h, "POST", "/faults", AUTH "Content-Type: text/plain\r\n", lines, &r), 201, &r);
    raw_response_free(&r);
    expect(admin(h, "GET", "/faults/quoted", AUTH, NULL, &r), 200, &r);
    char err[128];
    struct tj *rule = tj_parse(r.body, err, sizeof(err));
    if (!rule)
        fail_msg("GET /faults/quoted is not JSON: %s", err);
    const char *body = tj_str(rule, "rule.body");
    assert_non_null(body);
    if (strlen(body) != QUOTES || strspn(body, "\"") != QUOTES)
        fail_msg("the body of %d quotes is listed as %zu bytes", QUOTES, strlen(body));
    tj_free(rule);
    raw_response_free(&r);
    px_stop(h);
    fake_origin_stop(o);
}

/* Bodies are bounded: 413 past 16 KiB, 411 without a Content-Length; both close. */
static void test_bodies(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    static char big[17 * 1024];
    memset(big, 'a', sizeof(big) - 1);
    struct raw_response r;
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    char head[256];
    snprintf(head, sizeof(head), "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH
                                 "Content-Length: %zu\r\n\r\n", sizeof(big) - 1);
    assert_int_equal(raw_send_str(c, head), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(raw_header(&r, "Connection"), "close");
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    raw_close(c);
    c = px_connect_port(harness_port(h, "admin"));
    assert_int_equal(raw_send_str(c, "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH
                                     "Transfer-Encoding: chunked\r\n\r\n5\r\nname=\r\n0\r\n\r\n"),
                     0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 411);
    raw_response_free(&r);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
    raw_close(c);
    /* a body sent in two pieces is read whole; the connection is kept */
    c = px_connect_port(harness_port(h, "admin"));
    static const char body[] = "name=slowbody&prefix=/slowbody&status=504";
    snprintf(head, sizeof(head), "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH
                                 "Content-Type: application/x-www-form-urlencoded\r\n"
                                 "Content-Length: %zu\r\n\r\nname=slow", sizeof(body) - 1);
    assert_int_equal(raw_send_str(c, head), 0);
    assert_int_equal(raw_send_str(c, body + 9), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    expect(r.status, 201, &r);
    raw_response_free(&r);
    assert_int_equal(raw_send_str(c, "GET /healthz HTTP/1.1\r\n"
                                     "Host: 127.0.0.1\r\n" AUTH "\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(proxied(h, "/slowbody"), 504);
    /* A client that asks for 100 Continue before its body gets it at once (curl -H 'Expect:
     * 100-continue' waited its own 1 s, PowerShell 350 ms; a client that waits for it longer
     * waited that long) */
    c = px_connect_port(harness_port(h, "admin"));
    static const char expected[] = "name=expected&prefix=/expected&status=502";
    snprintf(head, sizeof(head), "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH
                                 "Content-Type: application/x-www-form-urlencoded\r\n"
                                 "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
                                 sizeof(expected) - 1);
    assert_int_equal(raw_send_str(c, head), 0);
    struct raw_head interim;
    if (raw_read_one_head(c, &interim, 2000) != 0)
        fail_msg("no 100 Continue within 2 s for a fault API body");
    assert_int_equal(interim.status, 100);
    raw_head_free(&interim);
    assert_int_equal(raw_send_str(c, expected), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    expect(r.status, 201, &r);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(proxied(h, "/expected"), 502);
    px_stop(h);
    fake_origin_stop(o);
}

/* A bare number of 1000 or more in a rule's delay is seconds ("delay = 5000": 83 minutes, where
 * an HAProxy user means 5 s). The INI loads it with cfgwarn's warning at its line, as on the
 * [proxy] timers, at the start and at each reload; the API, with no warning channel, refuses it
 * with the spellings that say which is meant; after and for, windows of minutes to hours, take
 * 3600 as an hour. On main: no warning, the rule added (201). */
static void test_bare_seconds(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = harness_new();
    assert_non_null(h);
    char ini[sizeof(config) + 64];
    snprintf(ini, sizeof(ini), "%s[fault slow]\nprefix = /slow\ndelay = 5000\n", config);
    assert_int_equal(harness_write_config(h, ini, fake_origin_port(o)), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    const char *warning = "warning: delay = 5000 is 5000 s (1h23m20s); for milliseconds write "
                          "5000ms";
    assert_int_equal(harness_wait_log(h, warning, PX_IO_MS), 0);
    struct raw_response r;
    expect(post_form(h, "/faults", "name=late&prefix=/late&delay=5000", &r), 400, &r);
    assert_string_equal(r.body, "400 Bad Request: delay: 5000 is 5000 s (1h23m20s); write 5000ms "
                                "for milliseconds, 5000s for seconds\n");
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=late&prefix=/late&status=503&delay=uniform(1ms%2C+1000)",
                     &r), 400, &r);
    assert_true(tu_contains(r.body, "delay: 1000 is 1000 s (16m40s); write 1000ms"));
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=late&prefix=/late&status=503&interim=103&"
                     "interim_interval=2000", &r), 400, &r);
    assert_true(tu_contains(r.body, "interim_interval: 2000 is 2000 s (33m20s)"));
    raw_response_free(&r);
    /* nothing was added by the refusals; with a unit, or a window, it is taken */
    assert_int_equal(proxied(h, "/late"), 200);
    expect(post_form(h, "/faults", "name=late&prefix=/late&status=503&for=3600&after=0&"
                     "delay=5000ms", &r), 201, &r);
    raw_response_free(&r);
    /* the reload warns again, at the new generation's load */
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
    assert_int_equal(harness_wait_log_count(h, warning, 2, PX_IO_MS), 0);
    px_stop(h);
    fake_origin_stop(o);
}

/* curl -d 'body=100% down' sends the '%' as it is, which the form's decoding refuses: the 400
 * says so, and how to send it. On main it said "expected key=value", which the pair is. */
static void test_body_percent(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    expect(post_form(h, "/faults", "name=pct&prefix=/pct&status=503&body=100% down", &r), 400, &r);
    assert_string_equal(r.body, "400 Bad Request: 'body=100% down': a '%' not followed by two hex "
                                "digits (write %25 for '%', or send it with curl "
                                "--data-urlencode)\n");
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=pct&prefix=/pct&status=503&body=a%00b", &r), 400, &r);
    assert_string_equal(r.body, "400 Bad Request: 'body=a%00b': %00 decodes to a NUL byte\n");
    raw_response_free(&r);
    /* encoded, it is the body */
    expect(post_form(h, "/faults", "name=pct&prefix=/pct&status=503&body=100%25+down", &r), 201,
           &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/pct"), 503);
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- reload ---- */

static void test_reload_restores(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    expect(post_form(h, "/faults/teapot", "enabled=0", &r), 200, &r);
    raw_response_free(&r);
    expect(post_form(h, "/faults", "name=added&prefix=/added&status=503", &r), 201, &r);
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/tea"), 200);
    assert_int_equal(proxied(h, "/added"), 503);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
    /* the INI's rules, as written: teapot on, the added rule gone */
    assert_int_equal(proxied(h, "/tea"), 418);
    assert_int_equal(proxied(h, "/added"), 200);
    expect(admin(h, "GET", "/faults", AUTH, NULL, &r), 200, &r);
    assert_true(tu_contains(r.body, "\"generation\":2,"));
    assert_true(tu_contains(r.body, "\"name\":\"teapot\",\"source\":\"ini\",\"state\":\"armed\""));
    assert_false(tu_contains(r.body, "\"added\""));
    raw_response_free(&r);
    px_stop(h);
    fake_origin_stop(o);
}

/* `seed` makes the draws of a generation the same every time: the statuses of 24 requests to a
 * rule of two weighted statuses, after a reload (the rules and their generator start again), are
 * the ones before it. Without the seed each generation drew from one of its own. */
static void test_seed_repeats(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    char seen[2][25];
    for (int gen = 0; gen < 2; gen++) {
        struct raw_response r;
        if (gen) {
            assert_int_equal(harness_signal(h, SIGHUP), 0);
            assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
        }
        /* added, as the INI's would be: the admin API's rules go with a reload */
        expect(post_form(h, "/faults", "name=coin&prefix=/coin&status=200:0.5,503:0.5", &r), 201,
               &r);
        raw_response_free(&r);
        for (int i = 0; i < 24; i++) {
            int status = proxied(h, "/coin");
            assert_true(status == 200 || status == 503);
            seen[gen][i] = status == 200 ? '2' : '5';
        }
        seen[gen][24] = '\0';
        print_message("  generation %d: %s\n", gen + 1, seen[gen]);
    }
    assert_string_equal(seen[1], seen[0]);
    assert_non_null(strchr(seen[0], '2'));
    assert_non_null(strchr(seen[0], '5'));
    px_stop(h);
    fake_origin_stop(o);
}

/* The admin API adds at most FAULT_TABLE_ADDED rules a generation: the next is refused (507),
 * and a reload makes room again. */
static void test_table_full(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    struct raw_response r;
    char form[96];
    for (int i = 0; i < FAULT_TABLE_ADDED; i++) {
        snprintf(form, sizeof(form), "name=r%d&prefix=/r%d&status=503", i, i);
        expect(post_form(h, "/faults", form, &r), 201, &r);
        raw_response_free(&r);
    }
    expect(post_form(h, "/faults", "name=over&prefix=/over&status=503", &r), 507, &r);
    assert_true(tu_contains(r.body, "too many rules added since the last reload"));
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/over"), 200);
    assert_int_equal(proxied(h, "/r255"), 503);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
    expect(post_form(h, "/faults", "name=over&prefix=/over&status=503", &r), 201, &r);
    raw_response_free(&r);
    px_stop(h);
    fake_origin_stop(o);
}

/* A change whose request began before a reload and whose body came after it reaches the rules
 * the reload replaced: it got 201 or 200 and acted on no request (the rule added was in no
 * GET /faults). It is told to send it again (503), and that reaches the new rules. */
static void test_reload_during_change(void **state)
{
    (void)state;
    struct fake_origin *o = fake_origin_start_kind(FO_OK);
    struct harness *h = start(o);
    static const char body[] = "name=late&prefix=/late&status=503";
    char head[512];
    snprintf(head, sizeof(head), "POST /faults HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH
             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n"
             "name=",
             sizeof(body) - 1);
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    px_send_read(c, head, strlen(head)); /* in the worker the reload replaces */
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2,", PX_IO_MS), 0);
    assert_int_equal(raw_send_str(c, body + 5), 0);
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("no answer: %s", r.error);
    expect(r.status, 503, &r);
    assert_true(tu_contains(r.body, "reload replaced these rules (generation 1)"));
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(proxied(h, "/late"), 200);
    expect(post_form(h, "/faults", body, &r), 201, &r); /* sent again */
    raw_response_free(&r);
    assert_int_equal(proxied(h, "/late"), 503);
    px_stop(h);
    fake_origin_stop(o);
}

/* ---- the example ---- */

static void test_staging_example(void **state)
{
    (void)state;
    if (access(STAGING, R_OK) != 0)
        fail_msg("%s not found: run the tests from the repository root", STAGING);
    struct harness *h = harness_new();
    assert_non_null(h);
    const char *const args[] = {"-t", "-c", STAGING, NULL};
    struct tu_cmd_result res;
    int rc = harness_run(h, args, &res);
    if (rc != 0)
        fail_msg("portico -t %s: exit %d\n%s%s", STAGING, rc, res.out, res.err);
    assert_true(tu_contains(res.out, "configuration ok"));
    tu_cmd_result_free(&res);
    harness_free(h);
}

/* A request on a new connection to the example's listener; the time its response took. */
static int64_t staging_request(struct harness *h, const char *req, struct raw_response *r)
{
    struct raw_conn *c = px_connect_port(harness_port(h, "listen"));
    int64_t t0 = tu_now_ms();
    assert_int_equal(raw_send_str(c, req), 0);
    int rc = raw_read_response(c, r, 3 * PX_IO_MS); /* /bytes/10000000 breaks off: -1 */
    int64_t took = tu_now_ms() - t0;
    if (rc != 0 && !r->truncated)
        fail_msg("%.40s: no response: %s", req, r->error);
    raw_close(c);
    return took;
}

/* A staging_request on a thread of its own, so that the slow rules take their time side by
 * side. No assertion there (cmocka's are the test thread's): staging_join checks what it left. */
struct staging_bg {
    uint16_t port;
    const char *req;
    pthread_t thread;
    int rc;                 /* raw_read_response's; -2: no connection, or the send failed */
    int64_t took;           /* ms from the send to the end of the response */
    struct raw_response r;
    char error[256];
};

static void *staging_main(void *arg)
{
    struct staging_bg *b = arg;
    struct raw_conn *c = raw_connect(b->port, PX_IO_MS);
    b->rc = -2;
    if (!c) {
        snprintf(b->error, sizeof(b->error), "connect: %s", raw_last_error());
        return NULL;
    }
    int64_t t0 = tu_now_ms();
    if (raw_send_str(c, b->req) == 0)
        b->rc = raw_read_response(c, &b->r, 3 * PX_IO_MS);
    else
        snprintf(b->error, sizeof(b->error), "send: %s", raw_last_error());
    b->took = tu_now_ms() - t0;
    raw_close(c);
    return NULL;
}

static void staging_start(struct harness *h, const char *req, struct staging_bg *b)
{
    memset(b, 0, sizeof(*b));
    b->port = harness_port(h, "listen");
    b->req = req;
    assert_int_equal(pthread_create(&b->thread, NULL, staging_main, b), 0);
}

/* Waits for b; its response is b->r (free it), its time the return value: staging_request's. */
static int64_t staging_join(struct staging_bg *b)
{
    assert_int_equal(pthread_join(b->thread, NULL), 0);
    if (b->rc == -2)
        fail_msg("%.40s: %s", b->req, b->error);
    if (b->rc != 0 && !b->r.truncated)
        fail_msg("%.40s: no response: %s", b->req, b->r.error);
    return b->took;
}

/* The example runs as it is: every route answers through the simulator and each rule does on
 * the wire what its comment says, with the curl the comment gives (listen and admin ports
 * moved). Before, its routes (/checkout, /payments/, /downloads/, /api/inventory, /search) were
 * paths the simulator does not serve: every answer no rule shaped was its 404 (51 bytes), so
 * the download could not break off at 1 MiB and the inventory "recovered" to a 404.
 * The two checkouts (2 s each) and the mobile download (4 s) run on threads meanwhile: no rule
 * of theirs touches the paths of the others, and their bounds are lower ones, which sharing
 * the machine can only help. The search comes last, once they are done. */
static void test_staging_example_runs(void **state)
{
    (void)state;
    char *text = tu_read_file(STAGING, NULL);
    if (!text)
        fail_msg("%s not found: run the tests from the repository root", STAGING);
    static const struct { const char *from, *to; } moves[] = {
        {"listen = 127.0.0.1:8080", "listen = 127.0.0.1:{{port:listen}}"},
        {"admin_listen = 127.0.0.1:9901", "admin_listen = 127.0.0.1:{{port:admin}}"},
        {"access_log = stderr", "access_log = off"},
    };
    size_t cap = strlen(text) + 256;
    char *conf = malloc(cap);
    assert_non_null(conf);
    snprintf(conf, cap, "%s", text);
    for (size_t i = 0; i < ARRAY_SIZE(moves); i++) {
        char *at = strstr(conf, moves[i].from);
        if (!at)
            fail_msg("%s: no \"%s\"", STAGING, moves[i].from);
        char *tail = strdup(at + strlen(moves[i].from));
        assert_non_null(tail);
        snprintf(at, cap - (size_t)(at - conf), "%s%s", moves[i].to, tail);
        free(tail);
    }
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, "%s", conf), 0);
    free(conf);
    free(text);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    struct raw_response r;
    static const char checkout[] = "POST /echo HTTP/1.1\r\nHost: shop\r\n"
                                   "Content-Length: 7\r\n\r\nitem=42";
    static struct staging_bg checkouts[2], mobile; /* not on the stack a failure unwinds */
    for (size_t i = 0; i < ARRAY_SIZE(checkouts); i++)
        staging_start(h, checkout, &checkouts[i]);
    staging_start(h, "GET /drip?bytes=262144&duration_ms=0 HTTP/1.1\r\nHost: shop\r\n"
                     "X-Client: mobile-beta\r\n\r\n", &mobile);

    /* payments: answered while the rule sleeps, connect_timeout (2 s) once it is on */
    staging_request(h, "GET /slow/100 HTTP/1.1\r\nHost: shop\r\n\r\n", &r);
    expect(r.status, 200, &r);
    raw_response_free(&r);
    expect(post_form(h, "/faults/payments-timeout", "enabled=1&for=5m", &r), 200, &r);
    raw_response_free(&r);
    int64_t took = staging_request(h, "GET /slow/100 HTTP/1.1\r\nHost: shop\r\n\r\n", &r);
    expect(r.status, 504, &r);
    assert_string_equal(raw_header(&r, "Portico-Error"), "connect_timeout");
    assert_true(took >= 1900);
    raw_response_free(&r);

    /* a download breaks off after exactly 1 MiB of its 10,000,000 bytes */
    staging_request(h, "GET /bytes/10000000 HTTP/1.1\r\nHost: shop\r\n\r\n", &r);
    expect(r.status, 200, &r);
    assert_true(r.truncated);
    assert_int_equal(r.body_len, 1048576);
    raw_response_free(&r);

    /* the inventory: five resets, then answers */
    for (int i = 0; i < 6; i++) {
        staging_request(h, "GET /status/200 HTTP/1.1\r\nHost: shop\r\n\r\n", &r);
        expect(r.status, i < 5 ? 502 : 200, &r);
        raw_response_free(&r);
    }

    /* checkout: a 503 with Retry-After, or the answer 2 s (± 0.5 s) later */
    for (size_t i = 0; i < ARRAY_SIZE(checkouts); i++) {
        struct staging_bg *b = &checkouts[i];
        took = staging_join(b);
        if (b->r.status == 503) {
            assert_string_equal(raw_header(&b->r, "Retry-After"), "30");
        } else {
            if (b->r.status != 200 || took < 1500)
                fail_msg("checkout: %d after %lld ms, want 503 or 200 after 1.5-2.5 s",
                         b->r.status, (long long)took);
            assert_non_null(strstr(b->r.body, "item=42"));
        }
        raw_response_free(&b->r);
    }

    /* a mobile beta tester: 262,144 bytes at 64 KiB/s take about 4 s, whole */
    took = staging_join(&mobile);
    expect(mobile.r.status, 200, &mobile.r);
    assert_int_equal(mobile.r.body_len, 262144);
    assert_true(took >= 3000);
    raw_response_free(&mobile.r);

    /* search: answered, or 500 / 504 now and then */
    int answered = 0;
    for (int i = 0; i < 10; i++) {
        staging_request(h, "GET /delay/1 HTTP/1.1\r\nHost: shop\r\n\r\n", &r);
        if (r.status != 200 && r.status != 500 && r.status != 504)
            fail_msg("search: status %d", r.status);
        answered += r.status == 200;
        raw_response_free(&r);
    }
    assert_true(answered >= 5);
    px_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_token_before_body),
        cmocka_unit_test(test_list_and_change),
        cmocka_unit_test(test_add_and_delete),
        cmocka_unit_test(test_add_reserved_fields),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_bare_seconds),
        cmocka_unit_test(test_body_percent),
        cmocka_unit_test(test_reload_restores),
        cmocka_unit_test(test_seed_repeats),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_reload_during_change),
        cmocka_unit_test(test_staging_example),
        cmocka_unit_test(test_staging_example_runs),
    };
    tu_ignore_sigpipe();
    /* TEST_FILTER=test_reload* runs the matching tests only */
    tu_test_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
