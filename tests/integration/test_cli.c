/*
 * test_cli.c — issue 2, "Command line" and the simulator of `make run`, with the real binary:
 * `portico -t -c FILE` (0, or 1 with one FILE:LINE: message per problem), --version, --help,
 * `portico codes` in each form (issue 9; its JSON parsed strictly), and the shipped
 * conf/portico.ini started on free ports (its listen and admin_listen lines rewritten in a copy)
 * serving every well-behaved simulator endpoint of the README through the proxy (the ones that
 * misbehave on purpose are in test_sim_endpoints.c).
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"
#include "portico/status.h"
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

/* Configs that load but surprise an nginx or HAProxy user: -t passes (exit 0) and says each
 * on stderr as FILE:LINE: warning: at the offending key's line. */
static const char surprising_config[] =
    "[proxy]\n"                                   /* 1 */
    "connect_timeout = 5000\n"                    /* 2: HAProxy's ms, 83 minutes here */
    "tls_cert = cert.pem\n"                       /* 3: no tls listen uses it */
    "error_page_dir = pages\n"                    /* 4: 502.html has {{request-id}} */
    "[upstream app]\n"                            /* 5 */
    "origin = 127.0.0.1:9\n"                      /* 6 */
    "max_fails = 3\n";                            /* 7: the lone origin marked down */

static void test_check_surprising_config(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char pages[600], page[700];
    snprintf(pages, sizeof(pages), "%s/pages", harness_dir(h));
    snprintf(page, sizeof(page), "%s/502.html", pages);
    assert_int_equal(mkdir(pages, 0755), 0);
    static const char html[] = "<p>request {{request-id}}</p>"; /* not expanded by the harness */
    assert_int_equal(tu_write_file(page, html, sizeof(html) - 1), 0);
    assert_int_equal(harness_write_file(h, "portico.ini", surprising_config), 0);
    struct tu_cmd_result res;
    assert_int_equal(harness_check_config(h, &res), 0);
    const char *path = harness_config_path(h);
    char want[4][1200];
    snprintf(want[0], sizeof(want[0]), "%s:2: warning: connect_timeout = 5000 is 5000 s "
             "(1h23m20s); for milliseconds write 5000ms\n", path);
    snprintf(want[1], sizeof(want[1]), "%s:3: warning: tls_cert: not used, no listen line has "
             "tls", path);
    snprintf(want[2], sizeof(want[2]), "%s:4: warning: error_page_dir: %s: {{request-id}} is not "
             "a placeholder, so clients get it as written", path, page);
    snprintf(want[3], sizeof(want[3]), "%s:7: warning: max_fails = 3 with one origin: after 3 "
             "failures it is marked down", path);
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        if (!tu_contains(res.err, want[i]))
            fail_msg("no \"%s\" in:\n%s", want[i], res.err);
    assert_int_equal(px_count(res.err, ": warning: "), ARRAY_SIZE(want));
    assert_true(tu_contains(res.out, "configuration ok"));
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

/* Bytes and values a hostile or broken config holds, each written as is and checked by the real
 * binary: the message names the right line, control bytes from the file come out escaped, and
 * the check fails. One row per case (issue 13, item 4 and 6). */
#define CLI_UP "[upstream app]\norigin = sim\n"
#define CLI_BYTES(s) s, sizeof(s) - 1
static const struct {
    const char *why;
    const char *head;   /* bytes before the long run (may hold NUL) */
    size_t head_len;
    size_t run;         /* then this many 'x' (0: none) */
    const char *tail;   /* then this text */
    int line;           /* the line the message names */
    const char *message;
} hostile_rows[] = {
    /* now + limit once wrapped, and every 1xx became an immediate 504 */
    {"a timeout past 64-bit milliseconds",
     CLI_BYTES("[proxy]\nfirst_byte_timeout = 18446744073709s\n"), 0, CLI_UP, 2,
     "first_byte_timeout: must be at most 168h"},
    /* inih cut it at its buffer and reported the tail as a line of its own */
    {"a 9,000-byte line", CLI_BYTES("[proxy]\n; "), 9000, "\nbogus = 1\n" CLI_UP, 2,
     "line longer than 8192 bytes"},
    /* the NUL hid the rest of its line and the next line's section header */
    {"a NUL byte", CLI_BYTES("[proxy]\nworkers = 1\0junk\n[upstream app]\norigin = sim\n"), 0,
     "", 2, "NUL byte in line"},
    /* raw control bytes must not reach a terminal or a log */
    {"a raw 0x01 in a key", CLI_BYTES("[proxy]\nwork\x01" "ers = 2\n"), 0, CLI_UP, 2,
     "unknown key 'work\\x01ers' in [proxy]"},
};

static void test_check_hostile_bytes(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(hostile_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        size_t tail_len = strlen(hostile_rows[i].tail);
        size_t len = hostile_rows[i].head_len + hostile_rows[i].run + tail_len;
        char *bytes = malloc(len);
        assert_non_null(bytes);
        memcpy(bytes, hostile_rows[i].head, hostile_rows[i].head_len);
        memset(bytes + hostile_rows[i].head_len, 'x', hostile_rows[i].run);
        memcpy(bytes + hostile_rows[i].head_len + hostile_rows[i].run, hostile_rows[i].tail,
               tail_len);
        assert_int_equal(tu_write_file(harness_config_path(h), bytes, len), 0);
        free(bytes);
        struct tu_cmd_result res;
        int rc = harness_check_config(h, &res);
        char want[700];
        snprintf(want, sizeof(want), "%s:%d: %s\n", harness_config_path(h), hostile_rows[i].line,
                 hostile_rows[i].message);
        if (rc != 1 || !tu_contains(res.err, want))
            fail_msg("%s: exit %d, want \"%s\" in:\n%s", hostile_rows[i].why, rc, want, res.err);
        /* nothing raw: no control byte but the newlines reaches stderr */
        for (const char *p = res.err; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\n')
                fail_msg("%s: raw byte 0x%02x on stderr", hostile_rows[i].why, (unsigned char)*p);
        assert_false(tu_contains(res.out, "configuration ok"));
        tu_cmd_result_free(&res);
        harness_free(h);
    }
}

/* A FIFO nobody writes to, where the configuration or a file it names should be: `-t` answers
 * at once, FILE:LINE and exit 1, instead of waiting in open(2) for a writer (OpenSSL opens the
 * TLS files itself). A reload loads the same way on the main thread, which takes the signals: a
 * wait there left SIGTERM without effect. The binary before the fix waited until the harness's
 * 10 s timeout for every row. */
static const struct {
    const char *why;
    const char *config;     /* NULL: the configuration itself is the FIFO */
    const char *message;    /* after "portico.ini:" */
} fifo_rows[] = {
    {"the configuration", NULL, "0: no [upstream] section"},
    {"tls_cert",
     "[proxy]\nlisten = 127.0.0.1:{{free_port:l}} tls\ntls_cert = the.fifo\n"
     "tls_key = {{certs}}/server.key\n" CLI_UP,
     "3: tls_cert: "},
    {"ca_file", "[upstream app]\norigin = 127.0.0.1:1\ntls = on\nca_file = the.fifo\n",
     "4: ca_file: "},
    {"client_key",
     "[upstream app]\norigin = 127.0.0.1:1\ntls = on\nverify = off\n"
     "client_cert = {{certs}}/client.pem\nclient_key = the.fifo\n",
     "6: client_key: "},
};

static void test_check_fifo(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(fifo_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        char fifo[512];
        snprintf(fifo, sizeof(fifo), "%s/%s", harness_dir(h),
                 fifo_rows[i].config ? "the.fifo" : "portico.ini");
        if (fifo_rows[i].config) /* no printf: placeholders only */
            assert_int_equal(harness_write_file(h, "portico.ini", fifo_rows[i].config), 0);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        struct tu_cmd_result res;
        int rc = harness_check_config(h, &res);
        print_message("  %s a FIFO: exit %d%s\n", fifo_rows[i].why, rc,
                      res.timed_out ? " (timed out)" : "");
        assert_false(res.timed_out);
        assert_int_equal(rc, 1);
        char want[700];
        snprintf(want, sizeof(want), "portico.ini:%s", fifo_rows[i].message);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", fifo_rows[i].why, want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
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
    /* an installed binary has its keys in the man page; README.md is in the source tree (or
     * under /usr/share/doc) */
    assert_true(tu_contains(res.out, "portico(8)"));
    /* Every option main() accepts, short and long, is in --help and in portico(8)'s OPTIONS
     * (-h and -v worked but neither named them; --help named neither --config nor --test). */
    static const struct { const char *in_help[2], *in_man; } options[] = {
        {{"-c FILE", "--config=FILE"}, ".BI \\-c \" file\" \"\\fR, \\fP\\-\\-config=\" file\n"},
        {{"-t", "--test"}, ".BR \\-t \", \" \\-\\-test\n"},
        {{"-v", "--version"}, ".BR \\-v \", \" \\-\\-version\n"},
        {{"-h", "--help"}, ".BR \\-h \", \" \\-\\-help\n"},
    };
    char *man = tu_read_file("docs/portico.8", NULL);
    assert_non_null(man);
    char *section = strstr(man, ".SH OPTIONS\n"), *end = section ? strstr(section, ".SH ") : NULL;
    end = end ? strstr(end + 1, ".SH ") : NULL;
    assert_true(section && end);
    *end = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
        for (size_t k = 0; k < 2; k++)
            if (!tu_contains(res.out, options[i].in_help[k]))
                fail_msg("--help does not name %s:\n%s", options[i].in_help[k], res.out);
        if (!tu_contains(section, options[i].in_man))
            fail_msg("portico(8) OPTIONS lacks %s", options[i].in_man);
    }
    free(man);
    tu_cmd_result_free(&res);
    const char *const short_help[] = { "-h", NULL }, *const short_version[] = { "-v", NULL };
    assert_int_equal(harness_run(h, short_help, &res), 0);
    assert_true(tu_contains(res.out, "usage: portico"));
    tu_cmd_result_free(&res);
    assert_int_equal(harness_run(h, short_version, &res), 0);
    assert_true(strncmp(res.out, want, strlen(want)) == 0);
    tu_cmd_result_free(&res);
    /* both asked: the first one is printed, once, whichever it is */
    const char *const help_first[] = { "-h", "-v", NULL };
    assert_int_equal(harness_run(h, help_first, &res), 0);
    assert_int_equal(strncmp(res.out, "usage: portico", 14), 0);
    assert_false(tu_contains(res.out, want));
    tu_cmd_result_free(&res);
    const char *const version_first[] = { "--version", "--help", NULL };
    assert_int_equal(harness_run(h, version_first, &res), 0);
    assert_int_equal(strncmp(res.out, want, strlen(want)), 0);
    assert_false(tu_contains(res.out, "usage: portico"));
    tu_cmd_result_free(&res);

    /* an unknown option: usage on stderr and a non-zero exit */
    const char *const bad[] = { "--frobnicate", NULL };
    assert_int_equal(harness_run(h, bad, &res), 2);
    assert_true(tu_contains(res.err, "usage: portico"));
    tu_cmd_result_free(&res);
    /* an operand after --version or --help is bad usage too (it said nothing and exited 0), and
     * so is the configuration without -c (`portico portico.ini`): the line says which argument
     * (the usage alone, before, left the operator to find it) */
    const char *const extras[][3] = { { "--version", "extra", NULL }, { "--help", "extra", NULL },
                                      { "-t", "extra", NULL } };
    for (size_t i = 0; i < ARRAY_SIZE(extras); i++) {
        assert_int_equal(harness_run(h, extras[i], &res), 2);
        assert_true(tu_contains(res.err, "usage: portico"));
        assert_true(tu_contains(res.err, "unexpected argument 'extra' (the configuration file "
                                         "goes after -c)"));
        assert_string_equal(res.out, "");
        tu_cmd_result_free(&res);
    }
    harness_free(h);
}

/* ---- portico codes ---- */

/* One object of `portico codes --json`, as parsed. */
struct code_obj {
    int code;
    char phrase[256];
    char klass[256];
    char source[256];
    char kind[256];
    int wire;           /* 1 true, 0 false, -1 absent */
    int keys;           /* how many keys the object had */
};

/* A strict parser for what `portico codes --json` must be: one JSON array of flat objects whose
 * values are strings, integers, booleans or null (RFC 8259 syntax, whitespace anywhere). */
struct jp {
    const char *p;
    const char *err;    /* first error, or NULL */
};

static void jp_ws(struct jp *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static int jp_fail(struct jp *j, const char *why)
{
    if (!j->err)
        j->err = why;
    return -1;
}

/* A string into out[cap] (\u escapes of ASCII only: the registry is ASCII). */
static int jp_string(struct jp *j, char *out, size_t cap)
{
    size_t n = 0;
    if (*j->p != '"')
        return jp_fail(j, "string expected");
    for (j->p++; *j->p != '"'; j->p++) {
        char c = *j->p;
        if (c == '\0' || (unsigned char)c < 0x20)
            return jp_fail(j, "unterminated string or control character");
        if (c == '\\') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *e = strchr(from, *++j->p);
            if (*j->p == 'u') {
                unsigned v = 0;
                for (int k = 1; k <= 4; k++) {
                    char h = j->p[k];
                    if (!strchr("0123456789abcdefABCDEF", h) || h == '\0')
                        return jp_fail(j, "bad \\u escape");
                    v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                if (v > 0x7f)
                    return jp_fail(j, "non-ASCII \\u escape");
                c = (char)v;
                j->p += 4;
            } else if (e && *j->p != '\0') {
                c = to[e - from];
            } else {
                return jp_fail(j, "bad escape");
            }
        }
        if (n + 1 >= cap)
            return jp_fail(j, "string too long");
        out[n++] = c;
    }
    j->p++;
    out[n] = '\0';
    return 0;
}

static int jp_literal(struct jp *j, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(j->p, word, n) != 0)
        return jp_fail(j, "bad literal");
    j->p += n;
    return 0;
}

/* One object into *o; unknown keys must still be well-formed scalars. */
static int jp_object(struct jp *j, struct code_obj *o)
{
    memset(o, 0, sizeof(*o));
    o->code = -1;
    o->wire = -1;
    if (*j->p != '{')
        return jp_fail(j, "object expected");
    j->p++;
    jp_ws(j);
    if (*j->p == '}')
        return jp_fail(j, "empty object");
    for (;;) {
        char key[32], str[256];
        jp_ws(j);
        if (jp_string(j, key, sizeof(key)) < 0)
            return -1;
        jp_ws(j);
        if (*j->p++ != ':')
            return jp_fail(j, "':' expected");
        jp_ws(j);
        o->keys++;
        if (*j->p == '"') {
            char *dst = strcmp(key, "phrase") == 0   ? o->phrase
                        : strcmp(key, "class") == 0  ? o->klass
                        : strcmp(key, "source") == 0 ? o->source
                        : strcmp(key, "kind") == 0   ? o->kind
                                                     : str;
            if (jp_string(j, dst, sizeof(str)) < 0)
                return -1;
        } else if (*j->p == 't' || *j->p == 'f') {
            int v = *j->p == 't';
            if (jp_literal(j, v ? "true" : "false") < 0)
                return -1;
            if (strcmp(key, "wire") == 0)
                o->wire = v;
        } else if (*j->p == 'n') {
            if (jp_literal(j, "null") < 0)
                return -1;
        } else if (*j->p >= '0' && *j->p <= '9') {
            int v = 0;
            if (*j->p == '0' && j->p[1] >= '0' && j->p[1] <= '9')
                return jp_fail(j, "leading zero");
            while (*j->p >= '0' && *j->p <= '9' && v < 100000)
                v = v * 10 + (*j->p++ - '0');
            if (strcmp(key, "code") == 0)
                o->code = v;
        } else {
            return jp_fail(j, "value expected");
        }
        jp_ws(j);
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        if (*j->p++ != ',')
            return jp_fail(j, "',' or '}' expected");
    }
}

/* The whole document: an array of objects into objs[cap]; returns the count or -1. */
static int jp_document(const char *text, struct code_obj *objs, int cap, const char **err)
{
    struct jp j = { .p = text, .err = NULL };
    int n = 0;
    jp_ws(&j);
    if (*j.p++ != '[') {
        *err = "array expected";
        return -1;
    }
    jp_ws(&j);
    if (*j.p == ']') {
        j.p++;
    } else {
        for (;;) {
            jp_ws(&j);
            if (n == cap) {
                *err = "too many objects";
                return -1;
            }
            if (jp_object(&j, &objs[n++]) < 0) {
                *err = j.err;
                return -1;
            }
            jp_ws(&j);
            if (*j.p == ']') {
                j.p++;
                break;
            }
            if (*j.p++ != ',') {
                *err = "',' or ']' expected";
                return -1;
            }
        }
    }
    jp_ws(&j);
    if (*j.p != '\0') {
        *err = "text after the array";
        return -1;
    }
    return n;
}

/* The parser itself must refuse what is not JSON, or the checks below prove nothing. */
static void test_codes_json_parser(void **state)
{
    static const char *const bad[] = {
        "",                                        /* nothing */
        "[",                                       /* unterminated */
        "[{\"code\": 1,}]",                        /* trailing comma */
        "[{\"code\": 01}]",                        /* leading zero */
        "[{code: 1}]",                             /* unquoted key */
        "[{\"a\": \"x\ty\"}]",                     /* raw control character */
        "[{\"a\": \"\\q\"}]",                      /* unknown escape */
        "[{\"a\": tru}]",                          /* bad literal */
        "[{\"a\": 1}] x",                          /* trailing text */
        "[{\"a\": 1} {\"b\": 2}]",                 /* missing comma */
    };
    struct code_obj objs[4];
    const char *err = NULL;
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (jp_document(bad[i], objs, 4, &err) >= 0)
            fail_msg("parser accepted \"%s\"", bad[i]);
    }
    assert_int_equal(jp_document(" [ {\"code\": 200, \"phrase\": \"O\\u004b\", \"wire\": true,"
                                 " \"constant\": null} ] \n", objs, 4, &err), 1);
    assert_int_equal(objs[0].code, 200);
    assert_string_equal(objs[0].phrase, "OK");
    assert_int_equal(objs[0].wire, 1);
}

/* How many meanings of the registry a selector should list. */
static int expected_meanings(int klass, int code)
{
    int n = 0;
    for (size_t i = 0; i < status_meaning_count(); i++) {
        const struct status_info *m = status_meaning_at(i);
        n += (klass == 0 || m->code / 100 == klass) && (code == 0 || m->code == code);
    }
    return n;
}

struct codes_row {
    const char *why;
    const char *args[4];     /* after "codes" */
    int exit_code;
    int klass;               /* the listing is this class (0: all) */
    int code;                /* the listing is this code's meanings (0: not one code) */
    const char *out;         /* text mode: part of stdout */
    const char *err;         /* part of the one stderr line, NULL: stderr empty */
};

static const struct codes_row codes_rows[] = {
    { "whole registry", { NULL }, 0, 0, 0, "499 * Client Closed Request", NULL },
    { "a class", { "5xx" }, 0, 5, 0, "504 * Gateway Timeout", NULL },
    { "a class, upper-case X", { "4XX" }, 0, 4, 0, "418 * I'm a teapot", NULL },
    { "two meanings of 499", { "499" }, 0, 0, 499, "Token Required", NULL },
    { "former names of 413", { "413" }, 0, 0, 413, "Payload Too Large", NULL },
    { "a code with one meaning", { "200" }, 0, 0, 200, "200 OK  (the phrase Portico sends)",
      NULL },
    /* what Portico itself answers with a code, by profile: the proxy profile's 598 is a
     * send_timeout too, not only the read its phrase names */
    { "598 names Portico's failures", { "598" }, 0, 0, 598,
      "\n  proxy       send_timeout, first_byte_timeout, read_timeout, total_timeout\n", NULL },
    { "502's nine failure types, wrapped", { "502" }, 0, 0, 502,
      "\n  proxy       dns_error, connect_refused, ", NULL },
    { "503 in every profile", { "503" }, 0, 0, 503,
      "\n  standard    no_healthy_origin, queue_timeout, queue_full\n"
      "  cloudflare  no_healthy_origin, queue_timeout, queue_full\n"
      "  proxy       no_healthy_origin, queue_timeout, queue_full\n", NULL },
    /* the list follows the block at once, no blank line for a profile without the code; the
     * failure types in failure.h's order, its first (dns_error) too */
    { "598's failures after its block", { "598" }, 0, 0, 598,
      "network behind it\nPortico sends 598 for, by error_profile", NULL },
    { "502 from dns_error on", { "502" }, 0, 0, 502,
      "\n  standard    dns_error, connect_refused, ", NULL },
    { "json, whole registry", { "--json" }, 0, 0, 0, NULL, NULL },
    { "json, a class", { "--json", "1xx" }, 0, 1, 0, NULL, NULL },
    { "json after the selector", { "499", "--json" }, 0, 0, 499, NULL, NULL },
    { "help", { "--help" }, 0, -1, 0, "usage: portico codes", NULL },
    { "not a number", { "abc" }, 2, -1, 0, NULL, "\"abc\" is neither a code" },
    { "two digits", { "99" }, 2, -1, 0, NULL, "\"99\" is neither a code" },
    { "four digits", { "1000" }, 2, -1, 0, NULL, "\"1000\" is neither a code" },
    { "leading zero", { "099" }, 2, -1, 0, NULL, "\"099\" is neither a code" },
    { "class 0xx", { "0xx" }, 2, -1, 0, NULL, "\"0xx\" is neither a code" },
    { "half a class", { "4x" }, 2, -1, 0, NULL, "\"4x\" is neither a code" },
    { "a class digit, then a code digit", { "5x1" }, 2, -1, 0, NULL,
      "\"5x1\" is neither a code" },
    { "two selectors", { "4xx", "499" }, 2, -1, 0, NULL, "one code or class at a time" },
    { "unknown option", { "--frobnicate" }, 2, -1, 0, NULL, "unknown option" },
    { "json and bad usage", { "--json", "abc" }, 2, -1, 0, NULL, "neither a code" },
    { "well-formed, unregistered", { "298" }, 1, -1, 0, NULL,
      "298 is not in the registry (Portico would send \"298 Unknown Success\")" },
    { "json, unregistered", { "--json", "298" }, 1, -1, 0, NULL, "298 is not in the registry" },
    { "an empty class", { "6xx" }, 1, -1, 0, NULL, "no code in class 6xx" },
};

/* Checks a JSON listing against the registry: every meaning selected, each exactly once, in
 * order, one wire meaning per code and that one the phrase status_phrase gives. */
static void check_codes_json(const struct codes_row *row, const char *out)
{
    static struct code_obj objs[512];
    const char *err = NULL;
    int n = jp_document(out, objs, (int)ARRAY_SIZE(objs), &err);
    if (n < 0)
        fail_msg("%s: not valid JSON (%s):\n%s", row->why, err, out);
    assert_int_equal(n, expected_meanings(row->klass, row->code));
    size_t next = 0;
    for (int i = 0; i < n; i++) {
        const struct code_obj *o = &objs[i];
        char klass[16];
        while (next < status_meaning_count() &&
               ((row->klass && status_meaning_at(next)->code / 100 != row->klass) ||
                (row->code && status_meaning_at(next)->code != row->code)))
            next++;
        const struct status_info *m = status_meaning_at(next++);
        assert_non_null(m);
        assert_int_equal(o->keys, 8);
        assert_int_equal(o->code, m->code);
        assert_string_equal(o->phrase, m->phrase);
        assert_string_equal(o->source, m->origin);
        assert_string_equal(o->kind, status_source_name(m->source));
        snprintf(klass, sizeof(klass), "%dxx", m->code / 100);
        assert_string_equal(o->klass, klass);
        assert_int_equal(o->wire, m->use == STATUS_USE_WIRE);
        int wires = 0;
        for (int k = 0; k < n; k++) {
            if (objs[k].code == o->code && objs[k].wire == 1) {
                wires++;
                assert_string_equal(objs[k].phrase, status_phrase(o->code));
            }
        }
        assert_int_equal(wires, 1);
    }
}

/* Checks a text listing: a header, one line per meaning selected (each starting with its code
 * and the '*' on wire meanings only), a footer; or, for one code, a block per meaning. */
static void check_codes_text(const struct codes_row *row, const char *out)
{
    int expected = expected_meanings(row->klass, row->code);
    if (row->code) {
        assert_int_equal(px_count(out, "(the phrase Portico sends)"), 1);
        char want[160];
        snprintf(want, sizeof(want), "%d %s  (the phrase Portico sends)\n", row->code,
                 status_phrase(row->code));
        assert_true(px_starts(out, want));
        /* the meanings' blocks, before what Portico sends the code for (its wrapped lines) */
        const char *sends = strstr(out, "\nPortico sends ");
        char *blocks = strndup(out, sends ? (size_t)(sends - out) : strlen(out));
        assert_non_null(blocks);
        assert_int_equal(px_count(blocks, "\n    "), 2 * expected);
        free(blocks);
        return;
    }
    int lines = 0, wires = 0;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (p[0] >= '1' && p[0] <= '9') {
            int code = atoi(p);
            assert_true(row->klass == 0 || code / 100 == row->klass);
            assert_true(p[3] == ' ' && (p[4] == '*' || p[4] == ' ') && p[5] == ' ');
            if (p[4] == '*') {
                wires++;
                assert_int_equal(strncmp(p + 6, status_phrase(code), strlen(status_phrase(code))),
                                 0);
            }
            lines++;
        }
        p = nl + 1;
    }
    assert_int_equal(lines, expected);
    int codes = 0;
    for (size_t i = 0; i < status_count(); i++)
        codes += row->klass == 0 || status_at(i)->code / 100 == row->klass;
    assert_int_equal(wires, codes);
    assert_true(px_starts(out, "code  phrase"));
    assert_true(tu_contains(out, "* marks the phrase Portico sends"));
}

/* Every form of `portico codes`, with the real binary: exit status, stdout against the
 * registry, and bad usage as exactly one line on stderr with nothing on stdout. */
static void test_codes(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    for (size_t i = 0; i < ARRAY_SIZE(codes_rows); i++) {
        const struct codes_row *row = &codes_rows[i];
        const char *args[6] = { "codes" };
        int json = 0;
        for (int a = 0; a < 4 && row->args[a]; a++) {
            args[a + 1] = row->args[a];
            json |= strcmp(row->args[a], "--json") == 0;
        }
        struct tu_cmd_result res;
        print_message("%s\n", row->why);
        int rc = harness_run(h, args, &res);
        if (rc != row->exit_code)
            fail_msg("%s: exit %d, want %d; stderr: %s", row->why, rc, row->exit_code, res.err);
        if (row->err) {
            assert_string_equal(res.out, "");
            assert_true(px_starts(res.err, "portico codes: "));
            assert_int_equal(px_count(res.err, "\n"), 1);
            assert_int_equal(res.err[res.err_len - 1], '\n');
            if (!tu_contains(res.err, row->err))
                fail_msg("%s: stderr \"%s\" lacks \"%s\"", row->why, res.err, row->err);
        } else {
            assert_string_equal(res.err, "");
            if (json)
                check_codes_json(row, res.out);
            else if (row->klass >= 0)
                check_codes_text(row, res.out);
            if (row->out && !tu_contains(res.out, row->out))
                fail_msg("%s: stdout lacks \"%s\"", row->why, row->out);
            /* a code's block is read in a terminal: 502's nine failure types made 172 columns */
            for (const char *l = res.out; row->code && !json && *l;) {
                size_t len = strcspn(l, "\n");
                if (len > 100)
                    fail_msg("%s: a line of %zu columns: %.*s", row->why, len, (int)len, l);
                l += len + (l[len] == '\n');
            }
        }
        tu_cmd_result_free(&res);
    }
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
    /* the exchange went through the proxy path: logged like any other (complete once Portico
     * has stopped; a worker writes its access-log lines once a second while it runs) */
    assert_int_equal(harness_stop(h), 0);
    assert_true(harness_log_contains(h, "\"status\":418")); /* JSON */
    assert_true(harness_log_contains(h, "\"upstream\":\"sim\""));
    /* the start line names every admin endpoint, not only /metrics and /healthz */
    assert_true(harness_log_contains(h, "(/, /status, /metrics, /healthz, /faults)"));
    harness_free(h);
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
    { "status with a delay", "GET /status/202?delay_ms=150 HTTP/1.1\r\nHost: s\r\n\r\n", 202,
      "Accepted", NULL, 0, 0, 0, 150 },
    { "drip", "GET /drip?bytes=64&duration_ms=200 HTTP/1.1\r\nHost: s\r\n\r\n", 200, "OK", NULL,
      64, 0, 0, 0 },
    { "unknown path", "GET /nope HTTP/1.1\r\nHost: s\r\n\r\n", 404, "Not Found", NULL, 0, 0, 0,
      0 },
};

/* Every well-behaved simulator endpoint of the README, through the proxy, on one keep-alive
 * connection. */
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
    if (px_rss_is_portico(harness_pid(h)))
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
    assert_int_equal(harness_stop(h), 0); /* then the access log is complete */
    assert_true(harness_file_contains(h, "relative.log", "\"path\":\"/rel\""));
    assert_int_equal(access("relative.log", F_OK), -1); /* not in the working directory */
    harness_free(h);
    fake_origin_stop(o);
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_default_config),
        cmocka_unit_test(test_check_bad_config),
        cmocka_unit_test(test_check_surprising_config),
        cmocka_unit_test(test_check_missing_and_empty),
        cmocka_unit_test(test_check_hostile_bytes),
        cmocka_unit_test(test_check_fifo),
        cmocka_unit_test(test_version_and_help),
        cmocka_unit_test(test_codes_json_parser),
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_default_config_teapot),
        cmocka_unit_test(test_simulator_endpoints),
        cmocka_unit_test(test_simulator_big_download),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
