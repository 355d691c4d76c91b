/*
 * test_fault.c — fault rules (fault.h): every key's spellings and refusals, whole-rule checks,
 * matcher combinations, the Portico-Fault header parser, key=value lists, CIDR blocks, and the
 * decision: probability with a seed (10,000 decisions at 0.25 → 2,500 ± 150, the same on every
 * run), first, every, after/for, max_active, weighted statuses, the delay distributions (median
 * and p99 within 10 % over 10,000 draws), and the admin changes with their auto-revert. Time is
 * passed in: nothing here sleeps. Also the [faults] and [fault NAME] sections of the INI, with
 * their FILE:LINE messages, and admin_token.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "portico/config.h"
#include "portico/fault.h"
#include "portico/route_prefix.h"

#include "config_helpers.h"

#ifndef ARRAY_LEN
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#endif
#define SEED 42
#define DIST_SEED 1 /* see test_distributions */
#define DRAWS 10000

/* ---- helpers ---- */

static int set_pair(void *arg, const char *key, const char *value, char *why, size_t size)
{
    return fault_rule_set_key(arg, key, value, why, size);
}

/* Builds a rule from "key = value" lines; returns 0, or -1 with the reason in why (set or
 * check). */
static int build(struct fault_rule *r, const char *spec, char *why, size_t size)
{
    fault_rule_init(r, "r");
    if (fault_pairs(spec, strlen(spec), false, set_pair, r, why, size) != 0)
        return -1;
    return fault_rule_check(r, why, size);
}

static struct fault_rule *must_build(const char *spec)
{
    static struct fault_rule r;
    char why[256];
    if (build(&r, spec, why, sizeof(why)) != 0)
        fail_msg("rule refused: %s\n%s", why, spec);
    return &r;
}

/* ---- keys, one row per spelling ---- */

static const struct {
    const char *key;
    const char *value;
    const char *error; /* NULL: accepted; else a part of the reason */
} key_rows[] = {
    {"status", "503", NULL},                          /* a lone status answers */
    {"status", "200:0.7, 500:0.2, 503:0.1", NULL},    /* the weighted list */
    {"status", "418", NULL},                          /* unofficial codes too */
    {"status", "599", NULL},
    {"status", "600", "not a status code"},           /* out of range */
    {"status", "103", "interim status: use interim"}, /* a 1xx is not an answer */
    {"status", "101", "101 switches protocols"},      /* not "use interim = 101": refused too */
    {"status", "199", "interim status: use interim"}, /* the last 1xx */
    {"status", "200", NULL},                          /* the first final status */
    {"status", "503:0.5, 500", "give every status a weight"}, /* mixed forms */
    {"status", "503:0.7, 500:0.6", "more than 1"},    /* weights over 1 */
    {"status", "503:0", "weight is not a number"},    /* a weight of 0 means nothing */
    {"status", "503:1.5", "weight is not a number"},
    {"status", "503:-0.5", "weight is not a number"}, /* no sign */
    {"status", "503:1e-1", "weight is not a number"}, /* no exponent */
    {"status", "503:0.5, 503:0.5", "listed twice"},
    {"status", "abc", "'abc' is not a status code"},  /* names the bad part */
    {"status", "0503", "'0503' is not a status code"}, /* three digits, not a number */
    {"failure", "read_timeout", NULL},
    {"failure", "no_healthy_origin", NULL},
    {"failure", "internal_error", "not a failure type"}, /* not in the failure table */
    {"failure", "timeout", "not a failure type"},
    {"delay", "2s", NULL},
    {"delay", "uniform(100ms,2s)", NULL},
    {"delay", "uniform( 100ms , 2s )", NULL},           /* blanks inside */
    {"delay", "lognormal(median=200ms,p99=3s)", NULL},
    {"delay", "lognormal(p99=3s, median=200ms)", NULL}, /* either order */
    {"delay", "uniform(2s,1s)", "min is above max"},
    {"delay", "uniform(1s,1s)", NULL},                  /* min at max: a fixed delay */
    {"delay", "lognormal(median=2s,p99=1s)", "p99 at least the median"},
    {"delay", "lognormal(median=2s)", "needs both"},
    {"delay", "lognormal(mean=2s,p99=3s)", "expected median=DURATION"},
    {"delay", "normal(1s,2s)", "expected uniform"},
    {"delay", "uniform(1s,2s", "expected uniform"},     /* unclosed */
    {"delay", "uniform(1s,xs)", "'xs' in"},
    {"delay", "soon", "'soon' is not a duration"},
    {"delay", "200h", "not a duration"},                /* above 168h */
    {"jitter", "500ms", NULL},
    {"response_delay", "1s", NULL},
    {"drop", "on", NULL},
    {"drop", "maybe", "not on/off"},
    {"reset", "yes", NULL},
    {"truncate", "1000", NULL},
    {"truncate", "1m", NULL},
    {"truncate", "0", NULL},                            /* the head alone */
    {"truncate", "-1", "not a size"},
    {"throttle", "16k", NULL},
    {"throttle", "0", "not a size"},                    /* zero bytes a second never ends */
    {"interim", "102,103", NULL},
    {"interim", "101", "not an interim status"},        /* switching protocols is not a hint */
    {"interim", "200", "not an interim status"},
    {"interim", "0103", "not an interim status"},
    {"interim", "102,103,103,103,103,103,103,103,103", "at most 8"},
    {"interim_interval", "1s", NULL},
    {"probability", "0.25", NULL},
    {"probability", "1", NULL},
    {"probability", "0", NULL},
    {"probability", ".5", NULL},
    {"probability", "1.5", "not a number between 0 and 1"},
    {"probability", "25%", "not a number between 0 and 1"},
    {"probability", "nan", "not a number between 0 and 1"},
    {"probability", "0x1p-2", "not a number between 0 and 1"},
    {"first", "5", NULL},
    {"first", "0", "whole number between 1"},
    {"every", "10", NULL},
    {"after", "30s", NULL},
    {"after", "0", NULL},
    {"for", "2m", NULL},
    {"for", "0", "between 1ms and 168h"},
    {"max_active", "10", NULL},
    {"route", "shop", NULL},
    {"route", "sh op", "not a route name"},
    {"host", "*.Example.com", NULL},
    {"host", "exa mple.com", "invalid character ' '"},
    {"prefix", "/checkout", NULL},
    {"prefix", "checkout", "must start with '/'"},
    {"prefix", "/a\x01b", "control character in the value"}, /* it did start with '/' */
    {"method", "POST", NULL},
    {"method", "GET, POST", NULL},
    {"method", "GE T", "'GE T' is not a method Portico knows (GET, HEAD, POST, PUT, DELETE"},
    {"method", "PURGE", "'PURGE' is not a method Portico knows"}, /* rules take known methods */
    /* answered 501 before any rule is asked (the binary before took it) */
    {"method", "GET, CONNECT", "CONNECT is answered 501 before any fault rule is asked"},
    {"method", "post", "'post' is not a method"},     /* methods are case-sensitive */
    {"header", "X-Test-User=alice", NULL},
    {"header", "X-Test-User", NULL},                    /* present, any value */
    {"header", "X Test=1", "expected a field name"},
    {"client", "127.0.0.0/8, ::1", NULL},
    {"client", "127.0.0.0/33", "not an address or CIDR"},
    {"client", "localhost", "'localhost' is not an address"},
    {"headers", "Retry-After: 120", NULL},
    {"headers", "Retry-After 120", "expected 'Name: value'"},
    {"headers", "Content-Length: 5", "set by Portico"}, /* framing is Portico's */
    {"headers", "Connection: close", "set by Portico"},
    {"headers", "Trailer: X-Checksum", "set by Portico"}, /* a trailer section is framing */
    {"headers", "TE: trailers", "set by Portico"},
    {"headers", "Transfer-Encoding: chunked", "set by Portico (framing and connection fields)"},
    /* it says which rule fired (README: Seeing what fired): a rule's own was sent in its place */
    {"headers", "Portico-Fault: none", "'Portico-Fault' is set by Portico (it names the rule"},
    {"headers", "portico-fault: none", "set by Portico (it names the rule that fired)"},
    {"reason", "Down for maintenance", NULL},
    {"body", "down for maintenance", NULL},
    {"enabled", "off", NULL},
    {"status", "", "empty value"},
};

static void test_keys(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(key_rows); i++) {
        struct fault_rule r;
        char why[256] = "";
        int k = fault_key_find(key_rows[i].key);
        assert_true(k >= 0);
        fault_rule_init(&r, "r");
        int rc = fault_rule_set(&r, (enum fault_key)k, key_rows[i].value, why, sizeof(why));
        if (key_rows[i].error == NULL && rc != 0)
            fail_msg("%s = %s refused: %s", key_rows[i].key, key_rows[i].value, why);
        if (key_rows[i].error != NULL && (rc == 0 || !strstr(why, key_rows[i].error)))
            fail_msg("%s = %s: rc %d, \"%s\" lacks \"%s\"", key_rows[i].key, key_rows[i].value, rc,
                     why, key_rows[i].error);
        /* every reason starts with the key it concerns */
        if (rc != 0 && strncmp(why, key_rows[i].key, strlen(key_rows[i].key)) != 0)
            fail_msg("reason \"%s\" does not name the key %s", why, key_rows[i].key);
    }
    assert_int_equal(fault_key_find("nope"), -1);
}

/* The parsed values behind the spellings. */
static void test_values(void **state)
{
    (void)state;
    struct fault_rule *r = must_build("status = 200:0.7, 500:0.2, 503:0.1\nhost = *.Example.COM.\n"
                                      "header = X-Test-User=alice\ndelay = lognormal(median=200ms,"
                                      "p99=3s)\nthrottle = 16k\n");
    assert_int_equal(r->nstatuses, 3);
    assert_true(r->statuses[0].pass);  /* 200 in a weighted list passes */
    assert_false(r->statuses[1].pass);
    assert_int_equal(r->statuses[2].code, 503);
    assert_string_equal(fault_text(r, r->host), "*.example.com"); /* lowercase, root dot gone */
    assert_string_equal(fault_text(r, r->match_headers[0]), "x-test-user=alice");
    assert_int_equal(r->delay.kind, FAULT_DELAY_LOGNORMAL);
    assert_int_equal(r->delay.a_ms, 200);
    assert_int_equal(r->delay.b_ms, 3000);
    assert_int_equal(r->throttle, 16384);
    assert_string_equal(fault_text(r, r->raw[FK_STATUS]), "200:0.7, 500:0.2, 503:0.1");
    assert_true(r->set & (1u << FK_THROTTLE));
}

/* ---- whole rules ---- */

static const struct {
    const char *spec;
    const char *error; /* NULL: a valid rule */
} check_rows[] = {
    {"status = 503\n", NULL},
    {"status = 503\nreason = Down\nbody = down\nheaders = Retry-After: 1\n", NULL},
    {"delay = 2s\nstatus = 429\n", NULL},                  /* a delay, then a status */
    {"failure = connect_timeout\n", NULL},
    {"delay = 1s\njitter = 200ms\n", NULL},
    {"status = 200:0.5, 503:0.5\nthrottle = 1k\n", NULL},  /* the passing half is throttled */
    {"status = 503:0.5\ntruncate = 10\n", NULL},           /* the other half passes too */
    {"interim = 103\nfailure = read_timeout\n", NULL},     /* hints, then a failure */
    {"drop = on\ndelay = 1s\n", NULL},
    {"prefix = /x\n", "no action"},                        /* matchers alone do nothing */
    {"drop = off\n", "no action"},                         /* off is no action */
    {"status = 503\nfailure = read_timeout\n", "exclude each other"},
    {"drop = on\nreset = on\n", "exclude each other"},
    {"reason = Down\n", "go with a status that answers"},
    {"body = x\ndelay = 1s\n", "go with a status that answers"},
    {"status = 200:1\nbody = x\n", "go with a status that answers"}, /* it always passes */
    /* a body these carry not was dropped without a word; their reason is the status line's */
    {"status = 204\nbody = x\n", "204, 205 and 304 answers carry no content"},
    {"status = 205\nbody = x\n", "204, 205 and 304 answers carry no content"},
    {"status = 304:0.5, 204:0.5\nbody = x\n", "204, 205 and 304 answers carry no content"},
    {"status = 204:0.5, 503:0.5\nbody = x\n", NULL},      /* the 503 carries it */
    /* the passing 200 is the origin's answer, not the rule's: the body would go with no 204 */
    {"status = 204:0.5, 200:0.5\nbody = x\n", "204, 205 and 304 answers carry no content"},
    {"status = 304\nreason = Unchanged\n", NULL},
    {"jitter = 1s\ndelay = uniform(1s,2s)\n", "jitter goes with a fixed delay"},
    {"interim_interval = 1s\nstatus = 503\n", "interim_interval goes with interim"},
    {"truncate = 10\nstatus = 503\n", "need the origin's response"},
    {"throttle = 1k\nfailure = read_timeout\n", "need the origin's response"},
    {"response_delay = 1s\nreset = on\n", "need the origin's response"},
    {"status = 503:0.5, 500:0.5\ntruncate = 1\n", "need the origin's response"}, /* sums to 1 */
};

static void test_check(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(check_rows); i++) {
        struct fault_rule r;
        char why[256] = "";
        int rc = build(&r, check_rows[i].spec, why, sizeof(why));
        if (check_rows[i].error == NULL && rc != 0)
            fail_msg("refused: %s\n%s", why, check_rows[i].spec);
        if (check_rows[i].error != NULL && (rc == 0 || !strstr(why, check_rows[i].error)))
            fail_msg("rc %d, \"%s\" lacks \"%s\" for\n%s", rc, why, check_rows[i].error,
                     check_rows[i].spec);
    }
}

/* ---- the Portico-Fault header ---- */

static const struct {
    const char *value;
    const char *error; /* NULL: accepted */
} header_rows[] = {
    {"status=503", NULL},
    {"failure=read_timeout", NULL},
    {"delay=2s; status=429", NULL},                         /* the examples */
    {" delay = 2s ;status=429; ", NULL},                    /* blanks and a trailing ';' */
    {"delay=lognormal(median=200ms,p99=3s)", NULL},         /* ',' and '=' inside a value */
    {"status=503; probability=0.5", NULL},
    {"status=503; headers=Retry-After: 5", NULL},
    {"", "empty"},
    {";;", "empty"},
    {"status", "'status': expected key=value"},
    {"stauts=503", "unknown key 'stauts'"},                 /* a typo is named */
    {"status=5o3", "status: '5o3' is not a status code"},
    /* two statuses without weights were "the weights add up to 2, more than 1" */
    {"status=503, 500", "status: '503, 500': give every status a weight (503:0.2, 200:0.8) or "
                        "one status alone"},
    {"status=503:0.5, 500", "give every status a weight"},
    {"status=503, 500:0.5", "give every status a weight"},
    /* a value too long was "expected key=value", which it is */
    {"status=503; body=<4096 bytes>", "body: value longer than 4095 bytes"},
    {"prefix=/x; status=503", "'prefix' belongs in a [fault] rule"},
    {"first=1; status=503", "'first' belongs in a [fault] rule"},
    {"status=503; status=500", "'status' given twice"},
    {"delay=2s; jitter=uniform(1s,2s)", "jitter"},
    {"reason=Down", "go with a status that answers"},
    {"failure=dns_error; status=503", "exclude each other"},
    /* control bytes quoted from the input are shown as \xNN: the reason stays one line (found
     * by fuzz_fault) */
    {"de\nlay=2s", "unknown key 'de\\x0alay'"},
    /* a bare 1000 or more in a delay is seconds where an HAProxy user means milliseconds: with
     * no channel for a warning, refused naming both spellings; a unit, or below 1000, is taken */
    {"delay=5000; status=503", "delay: 5000 is 5000 s (1h23m20s); write 5000ms for milliseconds, "
                               "5000s for seconds"},
    {"delay=5000s; status=503", NULL},
    {"delay=5000ms; status=503", NULL},
    {"delay=999; status=503", NULL},
    {"delay=10000; status=503", "delay: 10000 is 10000 s (2h46m40s)"}, /* 5 digits too */
    {"delay=2s; jitter=1000; status=503", "jitter: 1000 is 1000 s (16m40s)"},
    {"response_delay=uniform(100ms, 3600)", "response_delay: 3600 is 3600 s (1h)"},
    {"delay=lognormal(median=200ms,p99=3000)", "delay: 3000 is 3000 s (50m)"},
    {"delay=lognormal(p99=3s,median=200ms)", NULL},           /* p99's digits are no number */
    {"interim=103; interim_interval=1000", "interim_interval: 1000 is 1000 s (16m40s)"},
    {"x\x01y", "'x\\x01y': expected key=value"},
};

static void test_header(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(header_rows); i++) {
        struct fault_rule r;
        char why[256] = "";
        static char long_body[17 + 4096 + 1] = "status=503; body=";
        memset(long_body + 17, 'x', 4096);
        const char *v = strstr(header_rows[i].value, "<4096 bytes>") ? long_body
                                                                     : header_rows[i].value;
        int rc = fault_header_parse(v, strlen(v), "header", &r, why, sizeof(why));
        if (header_rows[i].error == NULL && rc != 0)
            fail_msg("\"%s\" refused: %s", v, why);
        if (header_rows[i].error != NULL && (rc == 0 || !strstr(why, header_rows[i].error)))
            fail_msg("\"%s\": rc %d, \"%s\" lacks \"%s\"", v, rc, why, header_rows[i].error);
        if (rc == 0)
            assert_string_equal(fault_text(&r, r.name), "header");
        /* one line: a reason never spans two */
        assert_null(strchr(why, '\n'));
    }
    /* the parsed header is the rule the INI spelling gives */
    struct fault_rule h;
    char why[128];
    assert_int_equal(fault_header_parse("delay=2s; status=429", 20, "header", &h, why,
                                        sizeof(why)), 0);
    assert_int_equal(h.delay.kind, FAULT_DELAY_FIXED);
    assert_int_equal(h.delay.a_ms, 2000);
    assert_int_equal(h.statuses[0].code, 429);
    /* only len bytes are read: a value need not be NUL-terminated */
    assert_int_equal(fault_header_parse("status=503XXX", 10, "header", &h, why, sizeof(why)), 0);
    assert_int_equal(h.statuses[0].code, 503);
    /* a number at the start of the value is bare whatever lies before the value: nothing before
     * it is read (the header's value is a copy, with no byte of its own before it) */
    static const char text[] = "x5000";
    char note[64];
    const char *num;
    size_t len;
    assert_true(fault_bare_seconds(FK_DELAY, text + 1, note, sizeof(note), &num, &len));
    assert_ptr_equal(num, text + 1);
    assert_int_equal(len, 4);
}

/* ---- key=value lists (the admin API's bodies) ---- */

struct collected {
    char text[512];
    size_t len;
};

static int collect(void *arg, const char *key, const char *value, char *why, size_t size)
{
    (void)why, (void)size;
    struct collected *c = arg;
    c->len += (size_t)snprintf(c->text + c->len, sizeof(c->text) - c->len, "[%s|%s]", key, value);
    return 0;
}

static const struct {
    const char *text;
    bool url;
    const char *pairs; /* NULL: refused */
} pair_rows[] = {
    {"name = x\nstatus = 503\n", false, "[name|x][status|503]"},
    {"name=x\r\n\r\n; comment\n# too\nstatus=503", false, "[name|x][status|503]"},
    {"name=x&status=503", false, "[name|x&status=503]"},   /* '&' only splits url-encoded */
    {"name=x&status=503", true, "[name|x][status|503]"},
    {"body=down+for%20now%21&x=a%3Db", true, "[body|down for now!][x|a=b]"},
    {"enabled=1\n", true, "[enabled|1]"},                  /* curl --data-binary: newlines */
    {"body=100%", true, NULL},                             /* a bare '%' */
    {"body=%zz", true, NULL},
    {"x=%00", true, NULL},                                 /* no NUL smuggled into a value */
    {"novalue\n", false, NULL},
};

/* A NUL byte sent as it is (not %00): the value was cut there and the rest of its line dropped
 * unseen, status=503 taken from "status=503\0garbage". Refused, as %00 is. */
static const struct {
    const char *text;
    size_t len;
} nul_rows[] = {
    {"status=503\0garbage\n", 19},
    {"name=a\0b", 8},
    {"x=1\n\0", 5},
};

/* Refusals that name their cause: a key or value too long, or a bad %XX, was "expected
 * key=value", which it is. */
static const struct {
    const char *text;
    bool url;
    const char *why;
} pair_refusals[] = {
    {"novalue", false, "'novalue': expected key=value"},
    /* a '%' that is no %XX was "expected key=value" too, puzzling after curl -d 'body=100% down' */
    {"body=%zz", true, "'body=%zz': a '%' not followed by two hex digits (write %25 for '%', or "
                       "send it with curl --data-urlencode)"},
    {"body=100% down", true, "'body=100% down': a '%' not followed by two hex digits"},
    {"x=%00", true, "'x=%00': %00 decodes to a NUL byte"},
    {"x%00=1", true, "'x%00=1': %00 decodes to a NUL byte"},
    {"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk=1", false,
     "the key is longer than 63 bytes"},
    {"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk=1", true,
     "the key is longer than 63 bytes"},
    {"body=<4096 bytes>", false, "the value is longer than 4095 bytes"},
    {"body=<4096 bytes>", true, "the value is longer than 4095 bytes"},
};

static void test_pair_refusals(void **state)
{
    (void)state;
    static char long_value[5 + 4096 + 1] = "body=";
    memset(long_value + 5, 'x', 4096);
    for (size_t i = 0; i < ARRAY_LEN(pair_refusals); i++) {
        const char *text = strstr(pair_refusals[i].text, "<4096 bytes>") ? long_value
                                                                          : pair_refusals[i].text;
        struct collected c = {.len = 0};
        char why[160] = "";
        assert_int_not_equal(fault_pairs(text, strlen(text), pair_refusals[i].url, collect, &c,
                                         why, sizeof(why)),
                             0);
        if (!strstr(why, pair_refusals[i].why))
            fail_msg("row %zu: '%s', want '%s'", i, why, pair_refusals[i].why);
    }
}

static void test_pairs(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(nul_rows); i++) {
        struct collected c = {.len = 0};
        char why[160] = "";
        if (fault_pairs(nul_rows[i].text, nul_rows[i].len, false, collect, &c, why,
                        sizeof(why)) == 0)
            fail_msg("row %zu with a NUL byte accepted: %s", i, c.text);
        assert_true(why[0] != '\0');
    }
    for (size_t i = 0; i < ARRAY_LEN(pair_rows); i++) {
        struct collected c = {.len = 0};
        char why[160] = "";
        int rc = fault_pairs(pair_rows[i].text, strlen(pair_rows[i].text), pair_rows[i].url,
                             collect, &c, why, sizeof(why));
        if (pair_rows[i].pairs == NULL) {
            if (rc == 0)
                fail_msg("\"%s\" accepted: %s", pair_rows[i].text, c.text);
            assert_true(why[0] != '\0');
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(c.text, pair_rows[i].pairs);
        }
    }
}

/* ---- addresses ---- */

static const struct {
    const char *list;
    const char *addr;
    bool in;
} cidr_rows[] = {
    {"127.0.0.0/8, ::1", "127.0.0.1", true},     /* the default header_control_clients */
    {"127.0.0.0/8, ::1", "127.255.1.2", true},
    {"127.0.0.0/8, ::1", "::1", true},
    {"127.1.0.0/16, ::1", "127.2.0.1", false},
    {"127.0.0.1", "::1", false},                  /* an IPv4 block never holds an IPv6 client */
    {"127.0.0.1/32", "127.0.0.2", false},
    {"127.0.0.0/8", "::ffff:127.0.0.1", true},    /* v4-mapped is IPv4 */
    {"127.1.2.0/23", "127.1.3.255", true},        /* a mask inside a byte */
    {"127.1.2.0/23", "127.1.4.0", false},
    {"0.0.0.0/0", "127.9.9.9", true},
    {"::/127", "::1", true},                      /* IPv6 masks */
    {"::/128", "::1", false},
};

/* fault_addr_parse reads IPv4 itself: whatever inet_pton(AF_INET) takes, it takes alike, and
 * nothing else (tricky rows, then every string of up to 4 characters of "0129.:" and 20,000
 * random ones of digits and dots). */
static void check_like_inet_pton(const char *text)
{
    uint8_t want[16] = {0};
    struct fault_addr a;
    bool v4 = inet_pton(AF_INET, text, want) == 1;
    bool v6 = !v4 && inet_pton(AF_INET6, text, want) == 1;
    int rc = fault_addr_parse(text, &a);
    if (rc != ((v4 || v6) ? 0 : -1))
        fail_msg("'%s': %d, inet_pton says %s", text, rc, v4 ? "IPv4" : v6 ? "IPv6" : "no");
    if (v4 && (a.v6 || memcmp(a.bytes, want, 4) != 0 || a.bytes[4] != 0))
        fail_msg("'%s': not the bytes inet_pton reads", text);
}

static void test_addr_parse_like_inet_pton(void **state)
{
    (void)state;
    static const char *const rows[] = {
        "127.0.0.1", "0.0.0.0", "127.255.255.255", "127.256.0.1", "127.0.0.01", "127.00.0.1",
        "127.0.0", "127.0.0.1.", ".127.0.0.1", "127..0.1", "127.0.0.1 ", " 127.0.0.1",
        "1270.0.0.1", "127.0.0.1:80", "0x7f.0.0.1", "127.1", "", ".", "...", "127.0.0.1.5",
        "127.0.0.255", "127.0.0.300", "127.999.0.1", "::1", "::ffff:127.0.0.1", "1::",
        "+127.0.0.1", "127.0.0.-1", "127.0.0.1\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        check_like_inet_pton(rows[i]);
    static const char alphabet[] = "0129.:";
    char text[8];
    for (unsigned n = 0; n <= 4; n++) {
        unsigned total = 1;
        for (unsigned k = 0; k < n; k++)
            total *= 6;
        for (unsigned v = 0; v < total; v++) {
            unsigned x = v;
            for (unsigned k = 0; k < n; k++, x /= 6)
                text[k] = alphabet[x % 6];
            text[n] = '\0';
            check_like_inet_pton(text);
        }
    }
    uint32_t seed = 12345;
    for (int i = 0; i < 20000; i++) {
        char buf[24];
        unsigned len = 0;
        seed = seed * 1103515245u + 12345u;
        unsigned n = 7 + (seed >> 16) % 10;
        for (unsigned k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) % 13;
            buf[len++] = r < 10 ? (char)('0' + r) : '.';
        }
        buf[len] = '\0';
        check_like_inet_pton(buf);
    }
}

static void test_cidr(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cidr_rows); i++) {
        struct fault_cidr list[FAULT_MAX_LIST];
        struct fault_addr a;
        char why[128];
        int n = fault_cidr_list(cidr_rows[i].list, list, FAULT_MAX_LIST, why, sizeof(why));
        assert_true(n > 0);
        assert_int_equal(fault_addr_parse(cidr_rows[i].addr, &a), 0);
        if (fault_cidr_contains(list, n, &a) != cidr_rows[i].in)
            fail_msg("%s in %s: want %d", cidr_rows[i].addr, cidr_rows[i].list, cidr_rows[i].in);
    }
    struct fault_addr a;
    assert_int_equal(fault_addr_parse("example.com", &a), -1);
    struct fault_cidr list[2];
    char why[128];
    assert_int_equal(fault_cidr_list("::1, ::2, ::3", list, 2, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "at most 2"));
}

/* ---- matchers ---- */

static const struct h1_field fields[] = {
    {"X-Test-User", 11, "alice", 5, H1_F_OTHER},
    {"Accept", 6, "*/*", 3, H1_F_ACCEPT},
};

static const struct {
    const char *spec;
    const char *route, *host, *path, *method, *client;
    bool match;
} match_rows[] = {
    {"", "shop", "a.example", "/", "GET", "127.0.0.1", true},            /* no matcher: all */
    {"route=shop", "shop", NULL, "/", "GET", NULL, true},
    {"route=shop", "blog", NULL, "/", "GET", NULL, false},
    {"route=shop", NULL, NULL, "/", "GET", NULL, false},                 /* not routed */
    {"prefix=/checkout", NULL, NULL, "/checkout/pay", "GET", NULL, true},
    {"prefix=/checkout", NULL, NULL, "/check", "GET", NULL, false},
    {"prefix=/checkout", NULL, NULL, "//checkout", "GET", NULL, true},  /* as routes read it */
    {"prefix=/checkout", NULL, NULL, "/%63heckout", "GET", NULL, true},
    {"prefix=/check%6Fut", NULL, NULL, "/checkout/pay", "GET", NULL, true}, /* prefix escaped */
    {"prefix=/checkout/", NULL, NULL, "/checkout//pay", "GET", NULL, true},
    {"prefix=/checkout/p", NULL, NULL, "/checkout//pay", "GET", NULL, true},
    {"prefix=/checkout", NULL, NULL, "/checkou", "GET", NULL, false},     /* shorter path */
    {"host=shop.example", NULL, "SHOP.example:8080", "/", "GET", NULL, true}, /* like routes */
    {"host=*.example", NULL, "a.b.example", "/", "GET", NULL, true},
    {"host=*.example", NULL, "example", "/", "GET", NULL, false},
    {"host=*.example", NULL, ".example", "/", "GET", NULL, false},        /* a label, then it */
    {"host=*.example", NULL, NULL, "/", "GET", NULL, false},               /* no Host */
    {"method=POST", NULL, NULL, "/", "POST", NULL, true},
    {"method=POST", NULL, NULL, "/", "PURGE", NULL, false},                /* METHOD_OTHER */
    {"method=GET, POST", NULL, NULL, "/", "GET", NULL, true},
    {"header=X-Test-User=alice", NULL, NULL, "/", "GET", NULL, true},
    {"header=x-test-user=alice", NULL, NULL, "/", "GET", NULL, true},      /* names: any case */
    {"header=X-Test-User=Alice", NULL, NULL, "/", "GET", NULL, false},     /* values: exact */
    {"header=X-Test-User", NULL, NULL, "/", "GET", NULL, true},
    {"header=X-Other", NULL, NULL, "/", "GET", NULL, false},
    {"client=127.8.0.0/16", NULL, NULL, "/", "GET", "127.8.9.9", true},
    {"client=127.8.0.0/16", NULL, NULL, "/", "GET", "127.9.0.1", false},
    {"client=127.8.0.0/16", NULL, NULL, "/", "GET", NULL, false},          /* unknown client */
    /* all must hold: the checkout rule, and each matcher failing alone */
    {"route=shop\nprefix=/checkout\nmethod=POST\nheader=X-Test-User=alice\nclient=::1",
     "shop", NULL, "/checkout", "POST", "::1", true},
    {"route=shop\nprefix=/checkout\nmethod=POST\nheader=X-Test-User=alice\nclient=::1",
     "shop", NULL, "/checkout", "GET", "::1", false},
    {"route=shop\nprefix=/checkout\nmethod=POST\nheader=X-Test-User=alice\nclient=::1",
     "shop", NULL, "/cart", "POST", "::1", false},
    {"route=shop\nprefix=/checkout\nmethod=POST\nheader=X-Test-User=alice\nclient=::1",
     "shop", NULL, "/checkout", "POST", "127.0.0.1", false},
    {"header=X-Test-User=alice\nheader=Accept", NULL, NULL, "/", "GET", NULL, true},
    {"header=X-Test-User=alice\nheader=X-Other", NULL, NULL, "/", "GET", NULL, false},
};

static void test_match(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(match_rows); i++) {
        char spec[512];
        snprintf(spec, sizeof(spec), "%s\nstatus = 503\n", match_rows[i].spec);
        struct fault_rule *r = must_build(spec);
        struct fault_addr client;
        if (match_rows[i].client)
            assert_int_equal(fault_addr_parse(match_rows[i].client, &client), 0);
        struct fault_request q = {
            .route = match_rows[i].route,
            .host = match_rows[i].host,
            .host_len = match_rows[i].host ? strlen(match_rows[i].host) : 0,
            .path = match_rows[i].path,
            .path_len = strlen(match_rows[i].path),
            .method = h1_method_of(match_rows[i].method, strlen(match_rows[i].method)),
            .fields = fields,
            .nfields = ARRAY_LEN(fields),
            .client = match_rows[i].client ? &client : NULL,
        };
        if (fault_match(r, &q) != match_rows[i].match)
            fail_msg("row %zu (%s): want %d", i, match_rows[i].spec, match_rows[i].match);
        q.path_plain = route_plain_len(q.path, q.path_len); /* memcmp where it may: the same */
        if (fault_match(r, &q) != match_rows[i].match)
            fail_msg("row %zu (%s), path_plain %zu: want %d", i, match_rows[i].spec,
                     q.path_plain, match_rows[i].match);
    }
}

/* ---- decisions ---- */

/* Runs n decisions at now_ms with a fresh state and a generator seeded with SEED; the pattern
 * of hits into out (NULL: none). Returns the hit count. */
static unsigned run_decisions(const struct fault_rule *r, unsigned n, uint64_t now_ms,
                              unsigned char *out)
{
    struct fault_state s;
    struct fault_rng g;
    fault_state_init(&s, r, 0);
    fault_rng_init(&g, SEED);
    unsigned hits = 0;
    for (unsigned i = 0; i < n; i++) {
        struct fault_pick pick;
        bool fired = fault_decide(r, &s, now_ms, &g, &pick);
        hits += fired;
        if (fired)
            fault_release(&s);
        if (out)
            out[i] = fired;
    }
    return hits;
}

static void test_probability_seeded(void **state)
{
    (void)state;
    struct fault_rule *r = must_build("probability = 0.25\nstatus = 503\n");
    static unsigned char a[DRAWS], b[DRAWS];
    unsigned hits = run_decisions(r, DRAWS, 0, a);
    print_message("  %u of %u decisions at 0.25 fired (seed %d)\n", hits, DRAWS, SEED);
    assert_true(hits >= 2350 && hits <= 2650);
    /* the same seed, the same decisions, request by request */
    assert_int_equal(run_decisions(r, DRAWS, 0, b), hits);
    assert_memory_equal(a, b, DRAWS);
    /* the edges: 0 never, 1 always (and neither draws) */
    assert_int_equal(run_decisions(must_build("probability = 0\nstatus = 503\n"), 100, 0, NULL), 0);
    assert_int_equal(run_decisions(must_build("status = 503\n"), 100, 0, NULL), 100);
}

/* first, every, after/for: which of 20 requests fire, at a given time. */
static const struct {
    const char *spec;
    uint64_t now_ms;        /* time of every decision (the state starts at 0) */
    const char *pattern;    /* 20 decisions: 'x' fired, '.' not */
} count_rows[] = {
    {"first = 5", 0, "xxxxx..............."},               /* fail the first 5, recover */
    {"every = 4", 0, "...x...x...x...x...x"},               /* exactly every 4th */
    {"first = 10\nevery = 3", 0, "..x..x..x..........."},   /* both: within 10, every 3rd */
    {"after = 30s", 29999, "...................."},          /* not yet */
    {"after = 30s", 30000, "xxxxxxxxxxxxxxxxxxxx"},          /* from 30 s on */
    {"for = 2m", 119999, "xxxxxxxxxxxxxxxxxxxx"},            /* still inside */
    {"for = 2m", 120000, "...................."},            /* over */
    {"after = 30s\nfor = 2m", 149999, "xxxxxxxxxxxxxxxxxxxx"}, /* for counts from after */
    {"after = 30s\nfor = 2m", 150000, "...................."},
    {"enabled = off", 0, "...................."},
};

static void test_counts_and_windows(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(count_rows); i++) {
        char spec[256], got[21];
        unsigned char fired[20];
        snprintf(spec, sizeof(spec), "%s\nstatus = 503\n", count_rows[i].spec);
        run_decisions(must_build(spec), 20, count_rows[i].now_ms, fired);
        for (int j = 0; j < 20; j++)
            got[j] = fired[j] ? 'x' : '.';
        got[20] = '\0';
        if (strcmp(got, count_rows[i].pattern) != 0)
            fail_msg("%s at %llu ms: %s, want %s", count_rows[i].spec,
                     (unsigned long long)count_rows[i].now_ms, got, count_rows[i].pattern);
    }
}

static void test_max_active(void **state)
{
    (void)state;
    struct fault_rule *r = must_build("max_active = 2\nstatus = 503\n");
    struct fault_state s;
    struct fault_rng g;
    struct fault_pick p;
    fault_state_init(&s, r, 0);
    fault_rng_init(&g, SEED);
    assert_true(fault_decide(r, &s, 0, &g, &p));
    assert_true(fault_decide(r, &s, 0, &g, &p));
    assert_false(fault_decide(r, &s, 0, &g, &p)); /* two are under it */
    fault_release(&s);
    assert_true(fault_decide(r, &s, 0, &g, &p)); /* one ended: room again */
    assert_int_equal(atomic_load(&s.hits), 3);
    assert_int_equal(atomic_load(&s.active), 2);
    assert_int_equal(atomic_load(&s.matched), 4);
}

static void test_weighted_statuses(void **state)
{
    (void)state;
    struct fault_rule *r = must_build("status = 200:0.7, 500:0.2, 503:0.1\n");
    struct fault_state s;
    struct fault_rng g;
    fault_state_init(&s, r, 0);
    fault_rng_init(&g, SEED);
    unsigned pass = 0, s500 = 0, s503 = 0;
    for (int i = 0; i < DRAWS; i++) {
        struct fault_pick p;
        /* the origin's share does not fire: nothing else of the rule applies to it */
        bool fired = fault_decide(r, &s, 0, &g, &p);
        if (fired)
            fault_release(&s);
        pass += !fired;
        s500 += fired && p.status == 500;
        s503 += fired && p.status == 503;
    }
    print_message("  weighted 200:0.7, 500:0.2, 503:0.1 over %d: pass %u, 500 %u, 503 %u\n",
                  DRAWS, pass, s500, s503);
    assert_int_equal(pass + s500 + s503, DRAWS);
    assert_int_equal(atomic_load(&s.hits), s500 + s503); /* hits: the requests it shaped */
    assert_int_equal(atomic_load(&s.matched), DRAWS);
    assert_true(pass >= 6850 && pass <= 7150);
    assert_true(s500 >= 1880 && s500 <= 2120);
    assert_true(s503 >= 910 && s503 <= 1090);
    /* weights under 1 leave the rest to the origin */
    r = must_build("status = 503:0.25\n");
    unsigned answered = 0;
    fault_rng_init(&g, SEED);
    for (int i = 0; i < DRAWS; i++) {
        struct fault_pick p;
        answered += fault_decide(r, NULL, 0, &g, &p) && p.status == 503;
    }
    assert_true(answered >= 2350 && answered <= 2650);
    /* a lone status always answers, 200 included */
    r = must_build("status = 200\n");
    struct fault_pick p;
    assert_true(fault_decide(r, NULL, 0, &g, &p));
    assert_int_equal(p.status, 200);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Draws DRAWS delays of spec's `delay` with a generator seeded with seed, sorted, into out. */
static void draw_sorted(const char *spec, uint64_t *out, uint64_t seed)
{
    struct fault_rule *r = must_build(spec);
    struct fault_rng g;
    fault_rng_init(&g, seed);
    for (int i = 0; i < DRAWS; i++) {
        struct fault_pick p;
        fault_decide(r, NULL, 0, &g, &p); /* a draw of 0 leaves it nothing to do: no fire */
        out[i] = p.delay_ms;
    }
    qsort(out, DRAWS, sizeof(*out), cmp_u64);
}

static bool within(double got, double want, double frac)
{
    return fabs(got - want) <= want * frac;
}

static void test_distributions(void **state)
{
    (void)state;
    static uint64_t d[DRAWS];
    /* lognormal: the median and the p99 asked for, within 10 %. The p99 of 10,000 draws has a
     * sampling error of about 4.5 % (sd): one seed in fifty or so lands outside 10 % (SEED, 42,
     * gives 2632 ms), so this draw uses its own seed; 100,000 draws must be within 5 % too. */
    draw_sorted("delay = lognormal(median=200ms,p99=3s)\n", d, DIST_SEED);
    double median = (double)d[DRAWS / 2], p99 = (double)d[DRAWS * 99 / 100];
    print_message("  lognormal(median=200ms,p99=3s): median %.0f ms, p99 %.0f ms, max %llu ms\n",
                  median, p99, (unsigned long long)d[DRAWS - 1]);
    assert_true(within(median, 200, 0.10));
    assert_true(within(p99, 3000, 0.10));
    assert_true(d[DRAWS - 1] <= 3000 * FAULT_DELAY_CAP);
    static uint64_t big[DRAWS * 10];
    struct fault_delay ln = {FAULT_DELAY_LOGNORMAL, 200, 3000};
    struct fault_rng g;
    fault_rng_init(&g, SEED);
    for (size_t i = 0; i < ARRAY_LEN(big); i++)
        big[i] = fault_delay_draw(&ln, &g);
    qsort(big, ARRAY_LEN(big), sizeof(*big), cmp_u64);
    print_message("  the same, 100,000 draws (seed %d): median %llu ms, p99 %llu ms\n", SEED,
                  (unsigned long long)big[ARRAY_LEN(big) / 2],
                  (unsigned long long)big[ARRAY_LEN(big) * 99 / 100]);
    assert_true(within((double)big[ARRAY_LEN(big) / 2], 200, 0.05));
    assert_true(within((double)big[ARRAY_LEN(big) * 99 / 100], 3000, 0.05));
    /* uniform: inside the bounds, median in the middle, p99 near the top */
    draw_sorted("delay = uniform(100ms,2s)\n", d, SEED);
    print_message("  uniform(100ms,2s): min %llu, median %llu, p99 %llu, max %llu ms\n",
                  (unsigned long long)d[0], (unsigned long long)d[DRAWS / 2],
                  (unsigned long long)d[DRAWS * 99 / 100], (unsigned long long)d[DRAWS - 1]);
    assert_true(d[0] >= 100 && d[DRAWS - 1] <= 2000);
    assert_true(within((double)d[DRAWS / 2], 1050, 0.10));
    assert_true(within((double)d[DRAWS * 99 / 100], 100 + 0.99 * 1900, 0.10));
    /* fixed ± jitter: inside the band, centred */
    draw_sorted("delay = 2s\njitter = 500ms\n", d, SEED);
    assert_true(d[0] >= 1500 && d[DRAWS - 1] <= 2500);
    assert_true(within((double)d[DRAWS / 2], 2000, 0.10));
    /* jitter larger than the delay: never below 0 */
    draw_sorted("delay = 100ms\njitter = 1s\n", d, SEED);
    assert_true(d[DRAWS - 1] <= 1100);
    /* fixed: exact */
    draw_sorted("delay = 250ms\n", d, SEED);
    assert_int_equal(d[0], 250);
    assert_int_equal(d[DRAWS - 1], 250);
    /* a p99 equal to the median is a fixed delay */
    draw_sorted("delay = lognormal(median=300ms,p99=300ms)\n", d, SEED);
    assert_int_equal(d[0], 300);
    assert_int_equal(d[DRAWS - 1], 300);
}

/* ---- the runtime state: admin changes, auto-revert, phases ---- */

static void test_state_changes(void **state)
{
    (void)state;
    struct fault_rule *r = must_build("enabled = off\nafter = 10s\nfirst = 2\nstatus = 503\n");
    struct fault_state s;
    struct fault_rng g;
    struct fault_pick p;
    struct fault_control c;
    fault_state_init(&s, r, 0);
    fault_rng_init(&g, SEED);
    assert_int_equal(fault_state_phase(r, &s, 0), FAULT_DISABLED);
    assert_false(fault_decide(r, &s, 50000, &g, &p));
    /* enabled at 100 s for 60 s: the window restarts at the enable */
    fault_state_change(&s, 100000, &(struct fault_change){1, -1, 60000});
    assert_int_equal(fault_state_phase(r, &s, 105000), FAULT_WAITING);
    assert_false(fault_decide(r, &s, 105000, &g, &p)); /* after = 10s from the enable */
    assert_true(fault_decide(r, &s, 110000, &g, &p));
    assert_true(fault_decide(r, &s, 110001, &g, &p));
    /* it took its two: spent already, before a third request comes */
    assert_int_equal(fault_state_phase(r, &s, 110001), FAULT_SPENT);
    assert_false(fault_decide(r, &s, 110002, &g, &p)); /* first = 2 */
    assert_int_equal(fault_state_phase(r, &s, 110003), FAULT_SPENT);
    /* at 160 s the change reverts: disabled again */
    fault_state_read(&s, 159999, &c);
    assert_true(c.enabled);
    assert_int_equal(c.revert_at_ms, 160000);
    fault_state_read(&s, 160000, &c);
    assert_false(c.enabled);
    assert_int_equal(c.revert_at_ms, 0);
    assert_int_equal(fault_state_phase(r, &s, 160000), FAULT_DISABLED);
    /* enabling again restarts first */
    fault_state_change(&s, 200000, &(struct fault_change){1, -1, 0});
    assert_true(fault_decide(r, &s, 210000, &g, &p));
    /* probability for a while, then back; overlapping changes go back to the first state */
    fault_state_change(&s, 300000, &(struct fault_change){-1, 0.0, 1000});
    fault_state_change(&s, 300500, &(struct fault_change){0, -1, 1000});
    fault_state_read(&s, 301000, &c);
    assert_false(c.enabled);
    assert_true(c.probability == 0.0);
    fault_state_read(&s, 301500, &c);
    assert_true(c.enabled);
    assert_true(c.probability == 1.0);
    /* a lasting change cancels a pending revert */
    fault_state_change(&s, 400000, &(struct fault_change){0, -1, 1000});
    fault_state_change(&s, 400100, &(struct fault_change){-1, 0.5, 0});
    fault_state_read(&s, 500000, &c);
    assert_false(c.enabled);
    assert_true(c.probability == 0.5);
    /* deleted: never fires */
    atomic_store(&s.deleted, true);
    assert_int_equal(fault_state_phase(r, &s, 500000), FAULT_DELETED);
}

/* after and for: a window [since + after, since + after + for), the phase the admin API shows
 * and the decision agreeing at both ends. */
static void test_window_ends(void **state)
{
    (void)state;
    struct fault_rule *r = must_build("after = 1s\nfor = 2s\nstatus = 503\n");
    struct fault_state s;
    struct fault_rng g;
    struct fault_pick p;
    fault_state_init(&s, r, 0);
    fault_rng_init(&g, SEED);
    assert_int_equal(fault_state_phase(r, &s, 999), FAULT_WAITING);
    assert_false(fault_decide(r, &s, 999, &g, &p));
    assert_int_equal(fault_state_phase(r, &s, 1000), FAULT_ARMED);
    assert_true(fault_decide(r, &s, 1000, &g, &p));
    assert_int_equal(fault_state_phase(r, &s, 2999), FAULT_ARMED);
    assert_true(fault_decide(r, &s, 2999, &g, &p));
    assert_int_equal(fault_state_phase(r, &s, 3000), FAULT_EXPIRED);
    assert_false(fault_decide(r, &s, 3000, &g, &p));
}

static void test_rule_text(void **state)
{
    (void)state;
    struct fault_rule r;
    char why[256], big[FAULT_TEXT_MAX];
    fault_rule_init(&r, "a-very-long-name-that-is-kept-whole");
    assert_string_equal(fault_text(&r, r.name), "a-very-long-name-that-is-kept-whole");
    assert_string_equal(fault_text(&r, 0), "");
    /* the store is bounded: a body that does not fit is refused with the limit */
    memset(big, 'b', sizeof(big) - 200);
    big[sizeof(big) - 200] = '\0';
    assert_int_equal(fault_rule_set(&r, FK_BODY, big, why, sizeof(why)), 0);
    assert_int_equal(fault_rule_set(&r, FK_HEADERS, "X-A: 1", why, sizeof(why)), 0);
    assert_int_equal(fault_rule_set(&r, FK_BODY, big, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "longer than 4096 bytes"));
    assert_true(r.used <= FAULT_TEXT_MAX);
}

/* ---- the configuration ---- */

static void test_config_faults(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[proxy]\nadmin_listen = 0.0.0.0:9901\n"
                                 "admin_token = s3cr3t-t0ken\n"
                                 "[upstream shop]\norigin = sim\ntotal_timeout = 5s\n"
                                 "[route shop]\nupstream = shop\n"
                                 "[faults]\nheader_control = on\nheader_control_clients = ::1\n"
                                 "seed = 42\nfault_header = off\n"
                                 "[fault checkout-outage]\nroute = shop\nprefix = /checkout\n"
                                 "method = POST\nheader = X-Test-User=alice\nprobability = 0.25\n"
                                 "status = 503\nreason = Service Unavailable\nbody = down\n"
                                 "headers = Retry-After: 120\nheaders = X-Why: rehearsal\n"
                                 "[fault slow]\ndelay = lognormal(median=200ms,p99=3s)\n"
                                 "[fault total]\nfailure = total_timeout\n");
    assert_string_equal(cfg->admin_token, "s3cr3t-t0ken");
    assert_true(cfg->faults.header_control);
    assert_int_equal(cfg->faults.nheader_clients, 1);
    assert_true(cfg->faults.seeded);
    assert_int_equal(cfg->faults.seed, 42);
    assert_false(cfg->faults.fault_header);
    assert_int_equal(cfg->nfault_rules, 3);
    const struct fault_rule *r = &cfg->fault_rules[0].rule;
    assert_string_equal(fault_text(r, r->name), "checkout-outage");
    assert_int_equal(cfg->fault_rules[0].line, 14);
    assert_int_equal(r->nheaders, 2); /* headers is repeatable */
    assert_true(r->probability == 0.25);
    cfg_free(cfg);
    /* the defaults: no header control, loopback clients, no seed, the header on */
    cfg = load_ok(UP);
    assert_false(cfg->faults.header_control);
    assert_int_equal(cfg->faults.nheader_clients, 2);
    assert_false(cfg->faults.seeded);
    assert_true(cfg->faults.fault_header);
    assert_int_equal(cfg->nfault_rules, 0);
    assert_null(cfg->admin_token);
    cfg_free(cfg);
}

static const struct {
    const char *why;
    const char *text;
    const char *errors[MAX_ERR];
} config_rows[] = {
    {"a bad value names the key, at its line",
     UP "[fault f]\nstatus = 5o3\n",
     {"test.ini:4: status: '5o3' is not a status code (200-599)"}},
    {"a rule that does nothing is reported at its section",
     UP "[fault f]\nprefix = /x\n",
     {"test.ini:3: [fault f]: no action: give status, failure, delay, response_delay, drop, "
      "reset, truncate, throttle or interim"}},
    {"a key twice",
     UP "[fault f]\nstatus = 503\nstatus = 500\n",
     {"test.ini:5: 'status' set twice in this section"}},
    {"an unknown key",
     UP "[fault f]\nstatus = 503\nstatuss = 500\n",
     {"test.ini:5: unknown key 'statuss' in [fault]"}},
    {"a route that does not exist",
     UP "[fault f]\nroute = nope\nstatus = 503\n",
     {"test.ini:4: [fault f]: no [route nope]"}},
    {"total_timeout needs the timer",
     UP "[fault f]\nstatus = 200:0.5\nfailure = total_timeout\n",
     {"test.ini:3: [fault f]: status, failure, drop and reset exclude each other",
      "test.ini:5: [fault f]: failure = total_timeout, but [upstream app] (route default) has no "
      "total_timeout: set one, or limit the rule with route ="}},
    {"duplicate rules",
     UP "[fault f]\nstatus = 503\n[fault f]\nstatus = 500\n",
     {"test.ini:5: duplicate [fault f] (first at line 3)"}},
    {"reserved names",
     UP "[fault header]\nstatus = 503\n",
     {"test.ini:3: [fault header]: the name is reserved (the metrics count the Portico-Fault "
      "header and admin rules under it)"}},
    {"[fault] needs a name",
     UP "[fault]\nstatus = 503\n",
     {"test.ini:3: [fault] needs a name of letters, digits, '-', '_' or '.'"}},
    {"[faults] takes none, and comes once",
     UP "[faults x]\n[faults]\n[faults]\n",
     {"test.ini:3: [faults] takes no name", "test.ini:5: duplicate [faults] (first at line 4)"}},
    {"[faults] keys",
     UP "[faults]\nheader_control = maybe\nheader_control_clients = localhost\nseed = -1\n",
     {"test.ini:4: header_control: 'maybe' is not on/off",
      "test.ini:5: header_control_clients: 'localhost' is not an address or CIDR block "
      "(127.0.0.0/8, ::1)",
      "test.ini:6: seed: '-1' is not a whole number between 0 and 18446744073709551615"}},
    {"an admin listener off loopback needs a token",
     "[proxy]\nadmin_listen = 0.0.0.0:9901\n" UP,
     {"test.ini:2: admin_listen: 0.0.0.0:9901 is not a loopback address: set admin_token"}},
    {"the same for IPv6",
     "[proxy]\nadmin_listen = [::]:9901\n" UP,
     {"test.ini:2: admin_listen: [::]:9901 is not a loopback address: set admin_token"}},
    {"a token is a Bearer token",
     "[proxy]\nadmin_token = two words\n" UP,
     {"test.ini:2: admin_token: expected a token of letters, digits and -._~+/ (a Bearer token)"}},
};

static void test_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(config_rows); i++) {
        int n;
        char *errors;
        struct config *cfg = load(config_rows[i].text, "/etc/portico", &n, &errors);
        if (cfg)
            fail_msg("%s: accepted", config_rows[i].why);
        check_errors(config_rows[i].why, errors, n, config_rows[i].errors);
        free(errors);
    }
    /* loopback admin listeners need no token */
    cfg_free(load_ok("[proxy]\nadmin_listen = [::1]:9901\n" UP));
    cfg_free(load_ok("[proxy]\nadmin_listen = 127.0.0.2:9901\n" UP));
    cfg_free(load_ok("[proxy]\nadmin_listen = [::ffff:127.0.0.1]:9901\n" UP)); /* IPv4's */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_pair_refusals),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_addr_parse_like_inet_pton),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_probability_seeded),
        cmocka_unit_test(test_counts_and_windows),
        cmocka_unit_test(test_max_active),
        cmocka_unit_test(test_weighted_statuses),
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_state_changes),
        cmocka_unit_test(test_window_ends),
        cmocka_unit_test(test_rule_text),
        cmocka_unit_test(test_config_faults),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
