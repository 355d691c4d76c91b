/*
 * test_config_files.c — what the config names on disk (issue 10: `portico -t` opens it): TLS
 * certificates, keys and CA files, error_page_dir, the access and error logs, each problem at
 * the line of its key; relative paths; and config files that cfg_load_string cannot stand for:
 * NUL bytes, a missing file, a directory.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/config.h"
#include "portico/util.h"

#include "../../proxy/config_int.h"
#include "config_helpers.h"

/* The temp directory of the group and what setup puts in it. */
static char dir[64];

static const char *const fixture_files[] = {"cert.pem", "key.pem", "key2.pem", "file",
                                            "cut.pem", "log.txt", "unreadable", "portico.ini",
                                            "soon.pem", "soon.key", "pages/404.html",
                                            "pages/500.html", "pages/502.html", "pages/503.html",
                                            "pages/50.html", "pages/050.html",
                                            "pages/502.html~", "pages/504.html",
                                            "pages/505.html"};
static const char *const fixture_dirs[] = {"sub", "ro", "pages"};

/* The longest name read as a mistyped placeholder (PLACEHOLDER_TYPO_MAX, 64 bytes). */
#define TYPO_LONGEST "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

/* The pages of pages/ (error_page_dir) and what each tests. */
static const struct {
    const char *name;
    const char *text;
} fixture_pages[] = {
    /* known, whatever the case; "{{{{detail}}" is "{{" then a placeholder */
    {"pages/404.html", "<p>{{Status}} {{{{detail}} {{request_id}}</p>"},
    /* not a mistyped placeholder: "{{" and "}}" lines apart (a script's) are no warning */
    {"pages/500.html", "<script>a = {{\n}}</script> {{error}}"},
    /* nginx's $request_id as a guess: sent as it is */
    {"pages/502.html", "<p>{{request-id}} {{status}}</p>"},
    /* two: the first is named, the others counted */
    {"pages/503.html", "<p>{{ phase }} {{host}} {{uri}}</p>"},
    /* no page: a response for status 50 never reads it */
    {"pages/50.html", "{{nothing}}"},
    /* no pages either: a leading 0 (read as 50, it would name 50.html's), an editor's copy */
    {"pages/050.html", "{{zero}}"},
    {"pages/502.html~", "{{backup}}"},
    /* a mistyped placeholder is 64 bytes at most: the second, 65, is no typo */
    {"pages/504.html", "{{" TYPO_LONGEST "}} "
                       "{{yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy}}"},
    /* "{{a {{b}}": "a {{b" is no typo, then {{b}} is read, as a response reads it */
    {"pages/505.html", "{{a {{b}}"},
};

static void dir_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static void write_file(const char *name, const char *bytes, size_t len, mode_t mode)
{
    char path[128];
    dir_path(path, sizeof(path), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int group_setup(void **state)
{
    (void)state;
    char path[128];
    snprintf(dir, sizeof(dir), "/tmp/portico-test-config-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    write_test_certs(dir);
    /* the certificate cut short, as a reload may find a file being written */
    dir_path(path, sizeof(path), "cert.pem");
    char pem[200];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fread(pem, 1, sizeof(pem), f), sizeof(pem));
    fclose(f);
    write_file("cut.pem", pem, sizeof(pem), 0644);
    write_file("file", "not a certificate\n", 18, 0644);
    write_file("log.txt", "", 0, 0644);
    write_file("unreadable", "", 0, 0);
    for (size_t i = 0; i < ARRAY_LEN(fixture_dirs); i++) {
        dir_path(path, sizeof(path), fixture_dirs[i]);
        if (mkdir(path, 0755) != 0)
            return -1;
    }
    for (size_t i = 0; i < ARRAY_LEN(fixture_pages); i++)
        write_file(fixture_pages[i].name, fixture_pages[i].text, strlen(fixture_pages[i].text),
                   0644);
    dir_path(path, sizeof(path), "ro");
    return chmod(path, 0555);
}

/* Removes exactly the fixtures: a file the checks created would leave the directory non-empty
 * and fail the group. */
static int group_teardown(void **state)
{
    (void)state;
    char path[128];
    for (size_t i = 0; i < ARRAY_LEN(fixture_files); i++) {
        dir_path(path, sizeof(path), fixture_files[i]);
        unlink(path);
    }
    for (size_t i = 0; i < ARRAY_LEN(fixture_dirs); i++) {
        dir_path(path, sizeof(path), fixture_dirs[i]);
        rmdir(path);
    }
    return rmdir(dir);
}

/* Copies tmpl into buf with every '@' replaced by at. */
static const char *at_path(const char *tmpl, const char *at, char *buf, size_t size)
{
    size_t len = 0;
    for (const char *p = tmpl; *p; p++)
        len = *p == '@' ? buf_appendf(buf, size, len, "%s", at)
                        : buf_appendf(buf, size, len, "%c", *p);
    assert_true(len < size - 1);
    return buf;
}

/* Copies tmpl into buf with every '@' replaced by the temp directory. */
static const char *at_dir(const char *tmpl, char *buf, size_t size)
{
    return at_path(tmpl, dir, buf, size);
}

/* Relative paths resolve against the INI directory; TLS contexts are built from them. */
static void test_relative_paths_and_tls(void **state)
{
    (void)state;
    char want[128];
    static const char text[] = "[proxy]\n"
                               "listen = 127.0.0.1:8443 tls\n"
                               "listen = 127.0.0.1:8080\n"
                               "tls_cert = cert.pem\n"
                               "tls_key = key.pem\n"
                               "error_page_dir = .\n"
                               "access_log = access.log\n"
                               "error_log = error.log\n"
                               "[upstream app]\n"
                               "origin = 127.0.0.1:3000\n"
                               "tls = on\n"
                               "ca_file = cert.pem\n"
                               "sni = origin.test\n"
                               "client_cert = cert.pem\n"
                               "client_key = key.pem\n";
    int n;
    char *errors;
    struct config *cfg = load(text, dir, &n, &errors);
    if (!cfg)
        fail_msg("refused: %s", errors);
    free(errors);
    dir_path(want, sizeof(want), "cert.pem");
    assert_string_equal(cfg->tls_pairs[0].cert, want);
    assert_string_equal(cfg->upstreams[0].ca_file, want);
    assert_string_equal(cfg->upstreams[0].client_cert, want);
    dir_path(want, sizeof(want), "key.pem");
    assert_string_equal(cfg->tls_pairs[0].key, want);
    assert_string_equal(cfg->upstreams[0].client_key, want);
    dir_path(want, sizeof(want), ".");
    assert_string_equal(cfg->error_page_dir, want);
    dir_path(want, sizeof(want), "access.log");
    assert_string_equal(cfg->access_log, want);
    dir_path(want, sizeof(want), "error.log");
    assert_string_equal(cfg->error_log, want);
    assert_string_equal(cfg->upstreams[0].sni, "origin.test");
    assert_true(cfg->listens[0].tls);
    assert_false(cfg->listens[1].tls);
    assert_non_null(cfg->server_ssl_ctx);
    assert_non_null(cfg->upstreams[0].ssl_ctx);
    cfg_free(cfg);

    /* The same through cfg_load: the directory comes from the file's path. */
    char path[128];
    dir_path(path, sizeof(path), "portico.ini");
    write_file("portico.ini", text, strlen(text), 0644);
    cfg = cfg_load(path, stderr, &n);
    assert_non_null(cfg);
    assert_int_equal(n, 0);
    dir_path(want, sizeof(want), "cert.pem");
    assert_string_equal(cfg->tls_pairs[0].cert, want);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->dir, dir);
    cfg_free(cfg);
    /* checking the logs created neither */
    dir_path(path, sizeof(path), "access.log");
    assert_int_equal(access(path, F_OK), -1);
    dir_path(path, sizeof(path), "error.log");
    assert_int_equal(access(path, F_OK), -1);
}

#define TLS_LISTEN "[proxy]\nlisten = 127.0.0.1:8443 tls\n"
#define TLS_UP "[upstream a]\norigin = 127.0.0.1:443\ntls = on\n"

/* '@' stands for the temp directory in text and errors; no errors: the config loads. */
struct file_row {
    const char *why;
    const char *text;
    const char *errors[MAX_ERR];
};

static const struct file_row file_rows[] = {
    {"error_page_dir that does not exist",
     "[proxy]\nerror_page_dir = missing\n" UP,
     {"test.ini:2: error_page_dir: @/missing: No such file or directory"}},
    {"error_page_dir that is a file",
     "[proxy]\nerror_page_dir = file\n" UP,
     {"test.ini:2: error_page_dir: @/file: Not a directory"}},
    {"error_page_dir that is a directory", "[proxy]\nerror_page_dir = sub\n" UP, {NULL}},
    {"tls_cert and tls_key missing: each at its own line",
     TLS_LISTEN "tls_cert = nocert.pem\ntls_key = nokey.pem\n" UP,
     {"test.ini:3: tls_cert: @/nocert.pem: No such file or directory",
      "test.ini:4: tls_key: @/nokey.pem: No such file or directory"}},
    {"tls_cert that is a directory",
     TLS_LISTEN "tls_cert = sub\ntls_key = key.pem\n" UP,
     {"test.ini:3: tls_cert: @/sub: Is a directory"}},
    {"tls_cert that is not a certificate: said plainly, not OpenSSL's \"PEM lib\"",
     TLS_LISTEN "tls_cert = file\ntls_key = key.pem\n" UP,
     {"test.ini:3: tls_cert: @/file: holds no certificate (-----BEGIN CERTIFICATE-----) in PEM "
      "form"}},
    {"a certificate cut short: what is wrong with its PEM block, not OpenSSL's \"PEM lib\"",
     TLS_LISTEN "tls_cert = cut.pem\ntls_key = key.pem\n" UP,
     {"test.ini:3: tls_cert: @/cut.pem: holds a damaged or cut-short PEM block (bad end line)"}},
    {"the key given as the certificate",
     TLS_LISTEN "tls_cert = key.pem\ntls_key = key.pem\n" UP,
     {"test.ini:3: tls_cert: @/key.pem: holds no certificate (-----BEGIN CERTIFICATE-----) in "
      "PEM form"}},
    {"the certificate given as the key",
     TLS_LISTEN "tls_cert = cert.pem\ntls_key = cert.pem\n" UP,
     {"test.ini:4: tls_key: @/cert.pem: holds no private key (-----BEGIN ... PRIVATE KEY-----) "
      "in PEM form"}},
    {"tls_key of another certificate",
     TLS_LISTEN "tls_cert = cert.pem\ntls_key = key2.pem\n" UP,
     {"test.ini:4: tls_key: @/key2.pem: does not match @/cert.pem"}},
    {"the key's own line, whichever comes first",
     TLS_LISTEN "tls_key = key2.pem\ntls_cert = cert.pem\n" UP,
     {"test.ini:3: tls_key: @/key2.pem: does not match @/cert.pem"}},
    {"TLS files no listen uses are not opened", "[proxy]\ntls_cert = nocert.pem\n" UP, {NULL}},
    {"ca_file that does not exist",
     TLS_UP "ca_file = noca.pem\n",
     {"test.ini:4: ca_file: @/noca.pem: No such file or directory"}},
    {"a CA file cut short",
     TLS_UP "ca_file = cut.pem\n",
     {"test.ini:4: ca_file: @/cut.pem: holds a damaged or cut-short PEM block (bad end line)"}},
    {"ca_file that holds no certificate",
     TLS_UP "ca_file = file\n",
     {"test.ini:4: ca_file: @/file: ..."}},
    {"ca_file is not used with verify = off", TLS_UP "verify = off\nca_file = noca.pem\n", {NULL}},
    {"client_cert that does not exist",
     TLS_UP "ca_file = cert.pem\nclient_cert = nocert.pem\nclient_key = key.pem\n",
     {"test.ini:5: client_cert: @/nocert.pem: No such file or directory"}},
    {"client_key of another certificate",
     TLS_UP "ca_file = cert.pem\nclient_cert = cert.pem\nclient_key = key2.pem\n",
     {"test.ini:6: client_key: @/key2.pem: does not match @/cert.pem"}},
    {"client_cert without its key: said once, no file opened",
     TLS_UP "verify = off\nclient_cert = c.pem\n",
     {"test.ini:1: [upstream a]: client_cert and client_key go together"}},
    {"access_log in a directory that does not exist",
     "[proxy]\naccess_log = nodir/a.log\n" UP,
     {"test.ini:2: access_log: @/nodir/a.log: No such file or directory"}},
    {"access_log that is a directory",
     "[proxy]\naccess_log = sub\n" UP,
     {"test.ini:2: access_log: @/sub: Is a directory"}},
    {"access_log under a file",
     "[proxy]\naccess_log = file/a.log\n" UP,
     {"test.ini:2: access_log: @/file/a.log: Not a directory"}},
    {"access_log that exists", "[proxy]\naccess_log = log.txt\n" UP, {NULL}},
    {"access_log to be created", "[proxy]\naccess_log = sub/new.log\n" UP, {NULL}},
    {"access_log on a device: checked, never opened", "[proxy]\naccess_log = /dev/null\n" UP,
     {NULL}},
    {"error_log in the access log's file",
     "[proxy]\naccess_log = a.log\nerror_log = a.log\n" UP,
     {"test.ini:3: error_log: @/a.log is the access_log file"}},
    {"the same file under another name",
     "[proxy]\nerror_log = sub/../log.txt\naccess_log = log.txt\n" UP,
     {"test.ini:2: error_log: @/sub/../log.txt is the access_log file"}},
    {"access_log and error_log in two files", "[proxy]\naccess_log = a.log\nerror_log = e.log\n" UP,
     {NULL}},
    {"the same file under another name, before the start creates it",
     "[proxy]\nerror_log = sub/../a.log\naccess_log = a.log\n" UP,
     {"test.ini:2: error_log: @/sub/../a.log is the access_log file"}},
    {"the same name in two directories, before the start creates them",
     "[proxy]\nerror_log = sub/a.log\naccess_log = a.log\n" UP, {NULL}},
    {"error_log is checked the same way",
     "[proxy]\nerror_log = nodir/e.log\n" UP,
     {"test.ini:2: error_log: @/nodir/e.log: No such file or directory"}},
    {"every problem of a file at once, each at its line",
     "[proxy]\nerror_log = file/e.log\nworkers = 1\naccess_log = nodir/a.log\n"
     "error_page_dir = missing\n" UP,
     {"test.ini:5: error_page_dir: @/missing: No such file or directory",
      "test.ini:4: access_log: @/nodir/a.log: No such file or directory",
      "test.ini:2: error_log: @/file/e.log: Not a directory"}},
};

/* Permissions: root is not held to them, so these rows only run for other users. */
static const struct file_row permission_rows[] = {
    {"access_log in a directory we cannot write to",
     "[proxy]\naccess_log = ro/a.log\n" UP,
     {"test.ini:2: access_log: @/ro/a.log: Permission denied"}},
    {"tls_key we cannot read",
     TLS_LISTEN "tls_cert = cert.pem\ntls_key = unreadable\n" UP,
     {"test.ini:4: tls_key: @/unreadable: Permission denied"}},
};

/* Loads each row with relative paths under at (also what '@' stands for). */
static void check_file_rows_in(const struct file_row *rows, size_t nrows, const char *at)
{
    for (size_t i = 0; i < nrows; i++) {
        char text[1024], want[MAX_ERR][512];
        const char *wants[MAX_ERR] = {NULL};
        for (int e = 0; e < MAX_ERR && rows[i].errors[e]; e++)
            wants[e] = at_path(rows[i].errors[e], at, want[e], sizeof(want[e]));
        int n;
        char *errors;
        struct config *cfg = load(at_path(rows[i].text, at, text, sizeof(text)), at, &n, &errors);
        check_errors(rows[i].why, errors, n, wants);
        if ((cfg != NULL) != (wants[0] == NULL))
            fail_msg("%s: %s", rows[i].why, cfg ? "accepted" : "refused");
        cfg_free(cfg);
        free(errors);
    }
}

static void check_file_rows(const struct file_row *rows, size_t nrows)
{
    check_file_rows_in(rows, nrows, dir);
}

/* An INI named by a relative path (`portico -t -c portico.ini`) has a relative directory, and
 * so have its log paths: they are checked all the same (they were taken for stream names, and
 * -t passed where the start failed). '@' is the temp directory seen from its parent. */
static const struct file_row relative_rows[] = {
    {"access_log in a directory that does not exist",
     "[proxy]\naccess_log = nodir/a.log\n" UP,
     {"test.ini:2: access_log: @/nodir/a.log: No such file or directory"}},
    {"error_log that is a directory", "[proxy]\nerror_log = sub\n" UP,
     {"test.ini:2: error_log: @/sub: Is a directory"}},
    {"error_log in the access log's file", "[proxy]\naccess_log = a.log\nerror_log = a.log\n" UP,
     {"test.ini:3: error_log: @/a.log is the access_log file"}},
    {"access_log to be created", "[proxy]\naccess_log = sub/new.log\n" UP, {NULL}},
    {"stream names stay streams", "[proxy]\naccess_log = stdout\nerror_log = stderr\n" UP,
     {NULL}},
};

static void test_relative_config_dir(void **state)
{
    (void)state;
    char cwd[PATH_MAX], parent[64];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    const char *name = strrchr(dir, '/') + 1;
    snprintf(parent, sizeof(parent), "%.*s", (int)(name - dir), dir);
    assert_int_equal(chdir(parent), 0);
    check_file_rows_in(relative_rows, ARRAY_LEN(relative_rows), name);
    assert_int_equal(chdir(cwd), 0);
}

static void test_files_checked(void **state)
{
    (void)state;
    check_file_rows(file_rows, ARRAY_LEN(file_rows));
    char path[128];
    dir_path(path, sizeof(path), "sub/new.log");
    assert_int_equal(access(path, F_OK), -1); /* checked, not created */
}

static void test_permissions(void **state)
{
    (void)state;
    if (geteuid() == 0) {
        print_message("running as root: permission rows skipped\n");
        return;
    }
    check_file_rows(permission_rows, ARRAY_LEN(permission_rows));
}

/* Bytes a string cannot carry: each row is written to portico.ini and loaded with cfg_load. The
 * NUL once hid the rest of its line and the next line's section header. '@' in errors is the
 * directory. */
static const struct {
    const char *why;
    const char *bytes;
    size_t len;
    const char *errors[MAX_ERR];
} nul_rows[] = {
#define BYTES(s) s, sizeof(s) - 1
    {"NUL in a value: its line is refused, the next section header still opens",
     BYTES("[proxy]\nworkers = 1\0junk\n[upstream app]\norigin = sim\n"),
     {"@/portico.ini:2: NUL byte in line"}},
    {"NUL in a section header: refused, and its keys are not reported again",
     BYTES("[prox\0y]\nworkers = many\n" UP),
     {"@/portico.ini:1: NUL byte in line"}},
    {"NUL at the end of the line before a header: that header opens at its own line",
     BYTES("[upstream app]\norigin = sim\0\n[route r]\nupstream = nope\n"),
     {"@/portico.ini:2: NUL byte in line", "@/portico.ini:1: [upstream app] has no origin",
      "@/portico.ini:4: [route r]: no [upstream nope]"}},
    {"a NUL alone on a line", BYTES("\0\n" UP), {"@/portico.ini:1: NUL byte in line"}},
    {"NUL in a comment is refused too", BYTES("; a \0 comment\n" UP),
     {"@/portico.ini:1: NUL byte in line"}},
    {"control bytes other than NUL are shown escaped",
     BYTES("[proxy]\nwork\x01" "ers = 2\n" UP),
     {"@/portico.ini:2: unknown key 'work\\x01ers' in [proxy]"}},
#undef BYTES
};

static void test_nul_bytes(void **state)
{
    (void)state;
    char path[128];
    dir_path(path, sizeof(path), "portico.ini");
    for (size_t i = 0; i < ARRAY_LEN(nul_rows); i++) {
        write_file("portico.ini", nul_rows[i].bytes, nul_rows[i].len, 0644);
        char want[MAX_ERR][256];
        const char *wants[MAX_ERR] = {NULL};
        for (int e = 0; e < MAX_ERR && nul_rows[i].errors[e]; e++)
            wants[e] = at_dir(nul_rows[i].errors[e], want[e], sizeof(want[e]));
        int n;
        char *errors;
        assert_null(load_as(NULL, path, NULL, &n, &errors));
        check_errors(nul_rows[i].why, errors, n, wants);
        free(errors);
    }
}

/* A config that cannot be opened or read is one message at line 0. */
static void test_unreadable_config(void **state)
{
    (void)state;
    static const struct {
        const char *name;    /* in the temp directory */
        const char *message; /* after "PATH:0: " */
    } rows[] = {
        {"none.ini", "cannot open: No such file or directory"}, /* missing */
        {"sub", "cannot read: Is a directory"},                 /* fopen takes a directory */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char path[128], want[256];
        dir_path(path, sizeof(path), rows[i].name);
        snprintf(want, sizeof(want), "%s:0: %s\n", path, rows[i].message);
        int n;
        char *errors;
        assert_null(load_as(NULL, path, NULL, &n, &errors));
        assert_string_equal(errors, want);
        assert_int_equal(n, 1);
        free(errors);
    }
}

/* A config linked to a device: /dev/zero never ends a line, so its load (a reload's, on the
 * thread that takes the signals) read on forever; the alarm ends this test if it does. */
static void test_device_config(void **state)
{
    (void)state;
    alarm(10);
    int n;
    char *errors;
    assert_null(load_as(NULL, "/dev/zero", NULL, &n, &errors));
    alarm(0);
    assert_string_equal(errors, "/dev/zero:0: cannot read: a device, not a file or a pipe\n");
    assert_int_equal(n, 1);
    free(errors);
}

/* A pipe whose writer keeps it open (-c /dev/stdin from a generator that stays) held the load,
 * and a reload on the main thread with SIGTERM unheard, for as long as the writer lived: it has
 * read_ms (10 s in cfg_load) to send the whole file. */
static void test_pipe_writer_stays(void **state)
{
    (void)state;
    char path[128];
    dir_path(path, sizeof(path), "fifo.ini");
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    /* read and write: opening does not wait for a reader, and the pipe keeps what is written */
    int w = open(path, O_RDWR | O_CLOEXEC);
    assert_true(w >= 0);
    static const char text[] = "[proxy]\nworkers = 1\n"; /* a file that stops at line 3 */
    assert_int_equal(write(w, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    alarm(10); /* the old code waited for the writer: killed here */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    int n = -1;
    assert_null(cfg_load_within(path, f, &n, 300));
    fclose(f);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    char want[256];
    snprintf(want, sizeof(want),
             "%s:3: cannot read: no end of file after 300 ms (a pipe whose writer keeps it open)\n",
             path);
    assert_string_equal(buf, want);
    assert_int_equal(n, 1);
    assert_true(ms >= 300 && ms < 3000);
    free(buf);
    close(w);
    unlink(path);
}

/* A file that is no INI has an error on every line: 100 messages, then one that says the rest
 * is not checked. A reload held all of a 10 MB file's 400 MB of messages in memory. */
static void test_error_cap(void **state)
{
    (void)state;
    char path[128];
    dir_path(path, sizeof(path), "portico.ini");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 10000; i++)
        fputs("not an ini line\n", f);
    fclose(f);
    int n;
    char *errors;
    assert_null(load_as(NULL, path, NULL, &n, &errors));
    assert_int_equal(n, 101);
    int lines = 0;
    const char *last = errors;
    for (const char *p = errors; *p; p++)
        if (*p == '\n' && p[1]) {
            lines++;
            last = p + 1;
        }
    assert_int_equal(lines + 1, 101);
    char want[256];
    snprintf(want, sizeof(want), "%s:101: more than 100 errors; the rest is not checked\n", path);
    assert_string_equal(last, want);
    free(errors);
}

/* The cap ends the reading too, not only the messages: from a pipe whose writer stays open
 * (`portico -t -c <(yes)`), the load answers after its 101st message and leaves the rest unread,
 * instead of reading on to the pipe's deadline. */
static void test_error_cap_stops_reading(void **state)
{
    (void)state;
    char path[128];
    dir_path(path, sizeof(path), "cap.fifo");
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    int fd = open(path, O_RDWR | O_NONBLOCK); /* the writer, which stays */
    assert_true(fd >= 0);
    static const char line[] = "not an ini line\n";
    size_t wrote = 0;
    for (int i = 0; i < 4000 && write(fd, line, sizeof(line) - 1) == sizeof(line) - 1; i++)
        wrote += sizeof(line) - 1;
    assert_true(wrote >= 101 * (sizeof(line) - 1) + 8192);
    char *errors = NULL;
    size_t elen = 0;
    FILE *f = open_memstream(&errors, &elen);
    assert_non_null(f);
    int n;
    assert_null(cfg_load_within(path, f, &n, 2000));
    fclose(f);
    assert_int_equal(n, 101);
    assert_non_null(strstr(errors, ":101: more than 100 errors; the rest is not checked\n"));
    free(errors);
    size_t left = 0;
    char buf[4096];
    for (ssize_t r; (r = read(fd, buf, sizeof(buf))) > 0;)
        left += (size_t)r;
    assert_true(left >= wrote - 101 * (sizeof(line) - 1) - 8192); /* one buffer read ahead */
    close(fd);
    unlink(path);
}

/* A certificate that expires in 3 days is a warning, never an error: kept in cfg->warnings at
 * each key's line (not printed by a load that succeeds: the caller says them), and its notAfter
 * kept once for the metric although two keys name the file. A load that fails prints them after
 * its errors. */
static void test_certificate_warnings(void **state)
{
    (void)state;
    long long not_after = write_dated_cert(dir, "soon", -86400, 3 * 86400);
    char ini[1024], want[512];
    snprintf(ini, sizeof(ini),
             "[proxy]\n"                                               /* 1 */
             "listen = 127.0.0.1:8443 tls\n"                           /* 2 */
             "tls_cert = %s/soon.pem\n"                                /* 3 */
             "tls_key = %s/soon.key\n"                                 /* 4 */
             "[upstream app]\n"                                        /* 5 */
             "origin = 127.0.0.1:9\n"                                  /* 6 */
             "tls = on\n"                                              /* 7 */
             "verify = off\n"                                          /* 8 */
             "client_cert = %s/soon.pem\n"                             /* 9 */
             "client_key = %s/soon.key\n",                             /* 10 */
             dir, dir, dir, dir);
    int n;
    char *errors;
    struct config *cfg = load(ini, dir, &n, &errors);
    assert_non_null(cfg);
    assert_int_equal(n, 0);
    assert_string_equal(errors, "");
    free(errors);
    assert_int_equal(cfg->nwarnings, 2);
    snprintf(want, sizeof(want), "test.ini:3: warning: tls_cert: %s/soon.pem: the certificate "
                                 "expires in ", dir);
    assert_true(strncmp(cfg->warnings[0], want, strlen(want)) == 0);
    snprintf(want, sizeof(want), "test.ini:9: warning: client_cert: %s/soon.pem: the "
                                 "certificate expires in ", dir);
    assert_true(strncmp(cfg->warnings[1], want, strlen(want)) == 0);
    assert_null(strchr(cfg->warnings[0], '\n'));
    assert_int_equal(cfg->ncerts, 1); /* one file, one series */
    snprintf(want, sizeof(want), "%s/soon.pem", dir);
    assert_string_equal(cfg->certs[0].file, want);
    assert_true(cfg->certs[0].not_after == not_after);
    cfg_free(cfg);

    /* with an error: refused, the error first, then the warnings */
    strcat(ini, "bogus = 1\n");
    assert_null(load(ini, dir, &n, &errors));
    assert_int_equal(n, 1);
    assert_true(strncmp(errors, "test.ini:11: unknown key 'bogus'", 32) == 0);
    char *second = strchr(errors, '\n') + 1;
    assert_true(strncmp(second, "test.ini:3: warning: tls_cert: ", 31) == 0);
    assert_non_null(strstr(second, "\ntest.ini:9: warning: client_cert: "));
    free(errors);
}

/* Loads text, relative paths under the temp directory; it must load without an error. */
static struct config *load_ok_in(const char *text)
{
    int n;
    char *errors;
    struct config *cfg = load(text, dir, &n, &errors);
    if (!cfg || n != 0)
        fail_msg("refused (%d errors):\n%s", n, errors);
    free(errors);
    return cfg;
}

/* error_page_dir's pages are read at each response, and a {{name}} that is no placeholder goes
 * to clients as it is: the load warns of each page holding one, at the key's line, in order of
 * the pages' names; of files no response reads (050.html, 502.html~), nothing. */
static void test_page_placeholder_warnings(void **state)
{
    (void)state;
    char want[4][512];
    const char *placeholders = "(the placeholders: {{request_id}}, {{error}}, {{origin}}, "
                               "{{status}}, {{phase}}, {{detail}})";
    struct config *cfg = load_ok_in("[proxy]\nerror_page_dir = pages\n" UP);
    snprintf(want[0], sizeof(want[0]), "test.ini:2: warning: error_page_dir: %s/pages/502.html: "
             "{{request-id}} is not a placeholder, so clients get it as written %s", dir,
             placeholders);
    snprintf(want[1], sizeof(want[1]), "test.ini:2: warning: error_page_dir: %s/pages/503.html: "
             "{{ phase }} and 2 more are not placeholders, so clients get them as written %s", dir,
             placeholders);
    snprintf(want[2], sizeof(want[2]), "test.ini:2: warning: error_page_dir: %s/pages/504.html: "
             "{{" TYPO_LONGEST "}} is not a placeholder, so clients get it as written %s", dir,
             placeholders);
    snprintf(want[3], sizeof(want[3]), "test.ini:2: warning: error_page_dir: %s/pages/505.html: "
             "{{b}} is not a placeholder, so clients get it as written %s", dir, placeholders);
    for (int i = 0; cfg->nwarnings != 4 && i < cfg->nwarnings; i++)
        print_message("%s\n", cfg->warnings[i]);
    assert_int_equal(cfg->nwarnings, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(cfg->warnings[i], want[i]);
    cfg_free(cfg);
    /* a directory without pages: nothing to say */
    cfg = load_ok_in("[proxy]\nerror_page_dir = sub\n" UP);
    assert_int_equal(cfg->nwarnings, 0);
    cfg_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relative_paths_and_tls),
        cmocka_unit_test(test_files_checked),
        cmocka_unit_test(test_relative_config_dir),
        cmocka_unit_test(test_permissions),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_unreadable_config),
        cmocka_unit_test(test_device_config),
        cmocka_unit_test(test_pipe_writer_stays),
        cmocka_unit_test(test_error_cap),
        cmocka_unit_test(test_error_cap_stops_reading),
        cmocka_unit_test(test_certificate_warnings),
        cmocka_unit_test(test_page_placeholder_warnings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
