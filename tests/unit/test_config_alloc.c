/*
 * test_config_alloc.c — an allocation failure never aborts a load (issue 7: a SIGHUP reload
 * that could not allocate killed the serving process). The binary is linked with
 * -Wl,--wrap=malloc,calloc,realloc,strdup,free (see the Makefile), so every allocation Portico's
 * own code makes goes through the wrappers below; the test makes the Nth one fail for N = 0, 1,
 * 2, ... until a load succeeds, and checks that each failing load returns NULL, says
 * "FILE:LINE: out of memory" once, and leaves no block behind (counted here, and LSan in the
 * sanitizer build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/config.h"
#include "portico/util.h"

#include "config_helpers.h"

/* ---- the allocator wrappers ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);

static bool armed;    /* count and inject only around the calls under test */
static long fail_at;  /* the allocation (from 0) that fails; -1: none */
static long count;    /* allocations attempted while armed */
static long live;     /* blocks allocated while armed and not freed yet */

/* True when this allocation is the one to fail. */
static bool inject(void)
{
    return armed && count++ == fail_at;
}

void *__wrap_malloc(size_t size)
{
    void *p = inject() ? NULL : __real_malloc(size);
    live += armed && p;
    return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
    void *p = inject() ? NULL : __real_calloc(n, size);
    live += armed && p;
    return p;
}

void *__wrap_realloc(void *old, size_t size)
{
    void *p = inject() ? NULL : __real_realloc(old, size);
    live += armed && p && !old;
    return p;
}

char *__wrap_strdup(const char *s)
{
    char *p = inject() ? NULL : __real_strdup(s);
    live += armed && p;
    return p;
}

void __wrap_free(void *p)
{
    live -= armed && p;
    __real_free(p);
}

/* ---- the test ---- */

static char dir[64];

/* Uses every kind of key and every place the loader allocates: more upstreams and routes than
 * the first array growth holds (fault rules too), TLS contexts, relative paths, the implicit
 * defaults. */
static const char text[] =
    "[proxy]\n"
    "listen = 127.0.0.1:8443 tls\n"
    "listen = [::1]:8080\n"
    "tls_cert = cert.pem\n"
    "tls_key = key.pem\n"
    "resolver = 127.0.0.1:53\n"
    "admin_listen = 127.0.0.1:9901\n"
    "admin_hosts = a.internal, B.internal. c.internal\n"
    "access_log = access.log\n"
    "error_log = error.log\n"
    "error_page_dir = .\n"
    "log_level = debug\n"
    "[upstream a]\norigin = 127.0.0.1:1\norigin = name.test:2\ntls = on\nca_file = cert.pem\n"
    "sni = origin.test\nclient_cert = cert.pem\nclient_key = key.pem\n"
    "[upstream b]\norigin = sim\n"
    "[upstream c]\norigin = sim\n"
    "[upstream d]\norigin = sim\n"
    "[upstream e]\norigin = sim\nconnect_timeout = 1s\n"
    "[route r1]\nupstream = a\nhost = *.Example.com\nprefix = /a/\n"
    "early_hints = </a.css>; rel=preload\nearly_hints = </b.js>; rel=preload\n"
    "[route r2]\nupstream = b\nprefix = /b/\nrewrite_prefix = /\n"
    "request_header = Host: b.internal\nrequest_header = X-Real-IP: $client_addr\n"
    "request_header_remove = Cookie\nresponse_header = Cache-Control: no-store\n"
    "response_header_remove = Server\n"
    "[route r3]\nupstream = c\nprefix = /c/\n"
    "[route r4]\nupstream = d\nhost = d.test\n"
    "[route r5]\nupstream = e\n"
    "[errors]\nconnect_timeout = 599\n"
    "[faults]\nheader_control = on\nheader_control_clients = ::1\nseed = 1\n"
    "[fault f1]\nstatus = 503\n[fault f2]\ndelay = 1s\n[fault f3]\nroute = r1\nreset = on\n"
    "[fault f4]\nfailure = read_timeout\n[fault f5]\nthrottle = 1k\n";

/* The same with one upstream and no route: the implicit route is allocated in validation. */
static const char text_implicit[] = "[upstream only]\norigin = sim\n";

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/portico-test-alloc-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    write_test_certs(dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    static const char *const files[] = {"cert.pem", "key.pem", "key2.pem", "portico.ini"};
    char path[128];
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    return rmdir(dir);
}

/* Loads `ini` (through cfg_load when from_file, else cfg_load_string) with allocation number
 * fail_at made to fail, until a load succeeds. Returns the number of loads that failed. */
static long fail_each_allocation(const char *ini, bool from_file)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/portico.ini", dir);
    if (from_file) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(ini, f);
        fclose(f);
    }
    int nlines = 0;
    for (const char *p = ini; *p; p++)
        nlines += *p == '\n';
    const char *name = from_file ? path : "test.ini";
    bool at_zero = false, at_line = false;
    for (long n = 0; n < 100000; n++) {
        char *errors = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&errors, &len);
        assert_non_null(f);
        int nerrors = -1;
        fail_at = n, count = 0, live = 0, armed = true;
        struct config *cfg = from_file ? cfg_load(path, f, &nerrors)
                                       : cfg_load_string(ini, name, dir, f, &nerrors);
        if (cfg)
            cfg_free(cfg); /* counted too: a config that loads gives everything back */
        armed = false;
        fclose(f);
        if (live != 0)
            fail_msg("allocation %ld failing: %ld blocks left behind", n, live);
        if (cfg) {
            assert_int_equal(nerrors, 0);
            assert_string_equal(errors, "");
            assert_true(count <= n); /* it loaded because nothing failed */
            free(errors);
            assert_true(at_zero);    /* both kinds of message were seen */
            assert_true(at_line);
            return n;
        }
        /* exactly one message: "NAME:LINE: out of memory" */
        int line = -1, used = 0;
        char want[160];
        if (sscanf(errors + strlen(name), ":%d: %n", &line, &used) != 1 ||
            strncmp(errors, name, strlen(name)) != 0 || line < 0 || line > nlines)
            fail_msg("allocation %ld failing: %s", n, errors);
        snprintf(want, sizeof(want), "%s:%d: out of memory\n", name, line);
        if (strcmp(errors, want) != 0)
            fail_msg("allocation %ld failing: %s", n, errors);
        assert_int_equal(nerrors, 1);
        at_zero |= line == 0, at_line |= line > 0;
        free(errors);
    }
    fail_msg("no load succeeded");
    return -1;
}

static void test_every_allocation_fails_cleanly(void **state)
{
    (void)state;
    static const struct {
        const char *ini;
        bool from_file;
        long min_sites; /* allocations the load makes at least: the test reached them all */
    } rows[] = {
        {text, false, 50},          /* every key kind, grown arrays, TLS contexts */
        {text, true, 50},           /* cfg_load: the same plus the file's directory */
        {text_implicit, false, 8},  /* the implicit route, made in validation */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        long failed = fail_each_allocation(rows[i].ini, rows[i].from_file);
        print_message("%s: %ld allocations, each failed once\n",
                      rows[i].from_file ? "cfg_load" : "cfg_load_string", failed);
        assert_true(failed >= rows[i].min_sites);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
