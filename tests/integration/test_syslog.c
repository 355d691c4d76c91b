/*
 * test_syslog.c — access_log and error_log = syslog:server=...: each line one RFC 3164 datagram
 * ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG") to a fake daemon on loopback UDP or a unix
 * datagram socket in the test's directory; the text and JSON lines whole after the tag; error
 * lines with their level's severity; a daemon gone costs lines (counted, said once in a file
 * error log), never a request; a reload to another port, a refused one that keeps the old;
 * SIGUSR1 reconnects; long lines cut with a mark; the parameters' errors at FILE:LINE.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../support/fake_syslog.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

#define CONFIG_FMT                                                                                 \
    "[proxy]\n"                                                                                    \
    "listen = 127.0.0.1:{{port:listen}}\n"                                                         \
    "workers = 2\n"                                                                                \
    "admin_listen = 127.0.0.1:{{port:admin}}\n"                                                    \
    "log_level = info\n"                                                                           \
    "%s\n"                                                                                         \
    "[upstream s]\norigin = sim\n"

/* Writes the configuration with `logs` (access_log, error_log ... lines) in [proxy]. */
static void write_config(struct harness *h, const char *logs)
{
    assert_int_equal(harness_write_config(h, CONFIG_FMT, logs), 0);
}

static struct harness *start(const char *logs)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    write_config(h, logs);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* A GET of path with User-Agent agent: the status. */
static int get_path(struct harness *h, const char *path, const char *agent)
{
    struct raw_conn *c = px_connect(h);
    char req[1536];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nUser-Agent: %s\r\n\r\n", path,
             agent);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    int status = raw_read_response(c, &r, PX_IO_MS) == 0 ? r.status : -1;
    if (status > 0)
        raw_response_free(&r);
    raw_close(c);
    return status;
}

/* The sim origin's 200 for /status/200, the request marked by its User-Agent: the status. */
static int get(struct harness *h, const char *agent)
{
    return get_path(h, "/status/200", agent);
}

static struct fake_syslog *receiver(struct harness *h, const char *name)
{
    struct fake_syslog *fs = fake_syslog_udp("127.0.0.1", harness_port(h, name));
    assert_non_null(fs);
    return fs;
}

static const char *wait_datagram(struct fake_syslog *fs, const char *needle)
{
    const char *d = fake_syslog_wait(fs, needle, PX_IO_MS);
    if (!d)
        fail_msg("no datagram with %s", needle);
    return d;
}

/* "<pri>" and "Mmm dd hh:mm:ss " and then host? tag[pid]: and the message after. */
static const char *assert_header(const char *d, int pri, const char *host, const char *tag,
                                 pid_t pid)
{
    char want[128];
    int n = snprintf(want, sizeof(want), "<%d>", pri);
    if (strncmp(d, want, (size_t)n) != 0)
        fail_msg("not %s: %s", want, d);
    const char *p = d + n + 16; /* "Dec  7 20:55:32 " */
    assert_true(strlen(d) > (size_t)n + 16 && p[-1] == ' ' && d[n + 3] == ' ' && d[n + 6] == ' ' &&
                d[n + 9] == ':' && d[n + 12] == ':');
    n = snprintf(want, sizeof(want), "%s%s%s[%ld]: ", host ? host : "", host ? " " : "", tag,
                 (long)pid);
    if (strncmp(p, want, (size_t)n) != 0)
        fail_msg("no '%s' after the time: %s", want, d);
    return p + n;
}

static const char *hostname(void)
{
    static char name[80];
    gethostname(name, sizeof(name) - 1);
    return name;
}

struct format_row {
    const char *why;
    const char *format;
    const char *needle;       /* the request's, in the line */
    const char *fields[4];    /* also in it */
    char first;               /* the message's first byte */
};

/* Access lines of either format arrive whole after the tag, PRI local0.info (16 * 8 + 6), the
 * tag and pid of the process. */
static void test_access_lines(void **state)
{
    (void)state;
    static const struct format_row rows[] = {
        {"text", "text", "user_agent=\"row-text\"",
         {" status=200", " upstream=s", " proto=HTTP/1.1", " method=\"GET\""}, '2'},
        {"json", "json", "\"user_agent\":\"row-json\"",
         {"\"status\":200", "\"upstream\":\"s\"", "\"proto\":\"HTTP/1.1\"", "\"method\":\"GET\""},
         '{'},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        struct fake_syslog *fs = receiver(h, "sys");
        char logs[512];
        snprintf(logs, sizeof(logs),
                 "access_log = syslog:server=127.0.0.1:{{free_port:sys}},facility=local0,tag=px\n"
                 "access_log_format = %s\nerror_log = {{dir}}/error.log\n",
                 rows[i].format);
        write_config(h, logs);
        assert_int_equal(harness_start(h), 0);
        char q[32];
        snprintf(q, sizeof(q), "row-%s", rows[i].format);
        assert_int_equal(get(h, q), 200);
        const char *d = wait_datagram(fs, rows[i].needle);
        const char *msg = assert_header(d, 16 * 8 + 6, hostname(), "px", harness_pid(h));
        if (msg[0] != rows[i].first || strchr(msg, '\n'))
            fail_msg("%s: the line is not whole after the tag: %s", rows[i].why, msg);
        for (size_t k = 0; k < ARRAY_SIZE(rows[i].fields); k++)
            if (!strstr(msg, rows[i].fields[k]))
                fail_msg("%s: no %s in %s", rows[i].why, rows[i].fields[k], msg);
        assert_int_equal(fake_syslog_count(fs, rows[i].needle), 1);
        assert_int_equal(harness_stop(h), 0);
        fake_syslog_free(fs);
        harness_free(h);
    }
}

/* A daemon on [::1]: IPv6 as nginx writes it, the port after the brackets. */
static void test_ipv6_server(void **state)
{
    (void)state;
    TU_SKIP_WITHOUT_IPV6_LOOPBACK();
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *fs = fake_syslog_udp("::1", harness_port(h, "sys6"));
    assert_non_null(fs);
    write_config(h, "access_log = syslog:server=[::1]:{{free_port:sys6}},facility=daemon\n"
                    "access_log_format = text\nerror_log = {{dir}}/error.log\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(get(h, "over-v6"), 200);
    const char *d = wait_datagram(fs, "user_agent=\"over-v6\"");
    assert_header(d, 3 * 8 + 6, hostname(), "portico", harness_pid(h));
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* Error-log lines: local7 (the default) and the line's level as severity: info 6 (SIGUSR1),
 * warn 4 (the access log's datagrams refused), error 3 (a reload refused). */
static void test_error_severity(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *fs = receiver(h, "sys");
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:gone}}\n"
                    "error_log = syslog:server=127.0.0.1:{{free_port:sys}}\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(harness_signal(h, SIGUSR1), 0);
    const char *d = wait_datagram(fs, "SIGUSR1: logs reopened");
    const char *msg = assert_header(d, 23 * 8 + 6, hostname(), "portico", harness_pid(h));
    assert_non_null(strstr(msg, " [info] SIGUSR1: logs reopened"));
    /* the access log's port is closed: its datagrams are refused, which a warning says */
    const char *warned = NULL;
    for (int i = 0; i < 10 && !warned; i++) {
        assert_int_equal(get(h, "gone"), 200);
        warned = fake_syslog_wait(fs, "a syslog datagram failed", 1500);
    }
    if (!warned)
        fail_msg("no warning about refused datagrams");
    assert_header(warned, 23 * 8 + 4, hostname(), "portico", harness_pid(h));
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:gone}}\n"
                    "error_log = syslog:server=127.0.0.1:{{free_port:sys}}\nworkers = many\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    d = wait_datagram(fs, "still serving the previous configuration");
    assert_header(d, 23 * 8 + 3, hostname(), "portico", harness_pid(h));
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* A daemon that is gone (its port closed: a connected UDP socket learns ECONNREFUSED) costs
 * lines, counted in portico_access_log_dropped_lines_total and said once in the file error log;
 * every request is answered as before. */
static void test_receiver_gone(void **state)
{
    (void)state;
    struct harness *h = start("access_log = syslog:server=127.0.0.1:{{free_port:gone}}\n"
                              "error_log = {{dir}}/error.log\n");
    bool said = false;
    for (int i = 0; i < 10 && !said; i++) {
        for (int k = 0; k < 5; k++)
            assert_int_equal(get(h, "gone"), 200);
        said = harness_wait_file(h, "error.log", "access_log: a syslog datagram failed "
                                                 "(Connection refused)", 1500) == 0;
    }
    assert_true(said);
    double lost = scrape_metric(harness_port(h, "admin"),
                                "portico_access_log_dropped_lines_total", PX_IO_MS);
    if (lost < 1)
        fail_msg("portico_access_log_dropped_lines_total is %g", lost);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
}

/* A fake daemon on the unix datagram socket `name` in h's directory; path gets its path (for a
 * restart at the same place). */
static struct fake_syslog *unix_daemon(struct harness *h, const char *name, char *path,
                                       size_t size)
{
    snprintf(path, size, "%s/%s", harness_dir(h), name);
    struct fake_syslog *fs = fake_syslog_unix(path);
    assert_non_null(fs);
    return fs;
}

/* The daemon of fs restarted: a new socket at its path, which the connected one no longer
 * reaches. Requests until one's access line comes to the new daemon (Portico connects again by
 * itself, at most once a second), which is returned. */
static struct fake_syslog *restart_until_a_line(struct harness *h, struct fake_syslog *fs,
                                                const char *path)
{
    fake_syslog_free(fs);
    fs = fake_syslog_unix(path);
    assert_non_null(fs);
    const char *d = NULL;
    for (int i = 0; i < 10 && !d; i++) {
        assert_int_equal(get(h, "again"), 200);
        d = fake_syslog_wait(fs, "user_agent=\"again\"", 1500);
    }
    if (!d)
        fail_msg("no line at %s after its daemon's restart", path);
    return fs;
}

/* The local daemon's unix datagram socket, without HOST (nohostname); the daemon gone, lines
 * are lost (ECONNREFUSED), counted; it back at the same path, SIGUSR1 connects to it. */
static void test_unix_socket_and_sigusr1(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char path[512];
    struct fake_syslog *fs = unix_daemon(h, "log.sock", path, sizeof(path));
    write_config(h, "access_log = syslog:server=unix:{{dir}}/log.sock,nohostname\n"
                    "access_log_format = text\nerror_log = {{dir}}/error.log\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(get(h, "unix-1"), 200);
    const char *d = wait_datagram(fs, "user_agent=\"unix-1\"");
    assert_header(d, 23 * 8 + 6, NULL, "portico", harness_pid(h));
    fake_syslog_free(fs); /* gone */
    assert_int_equal(get(h, "unix-2"), 200);
    assert_int_equal(harness_wait_file(h, "error.log", "a syslog datagram failed", PX_IO_MS), 0);
    assert_true(scrape_metric(harness_port(h, "admin"), "portico_access_log_dropped_lines_total",
                              PX_IO_MS) >= 1);
    fs = fake_syslog_unix(path); /* back, a new socket at the same path */
    assert_non_null(fs);
    assert_int_equal(harness_signal(h, SIGUSR1), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "SIGUSR1: logs reopened", PX_IO_MS), 0);
    assert_int_equal(get(h, "unix-3"), 200);
    wait_datagram(fs, "user_agent=\"unix-3\"");
    assert_int_equal(fake_syslog_count(fs, "unix-2"), 0);
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* The daemon restarted (a new socket at the same path: the connected one refuses every
 * datagram): the lines come again without SIGUSR1, Portico connecting again by itself (at most
 * once a second), as nginx does; those refused meanwhile are counted. */
static void test_daemon_restart_reconnects(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char path[512];
    struct fake_syslog *fs = unix_daemon(h, "log.sock", path, sizeof(path));
    write_config(h, "access_log = syslog:server=unix:{{dir}}/log.sock\n"
                    "access_log_format = text\nerror_log = {{dir}}/error.log\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(get(h, "first"), 200);
    wait_datagram(fs, "user_agent=\"first\"");
    fs = restart_until_a_line(h, fs, path);
    assert_true(scrape_metric(harness_port(h, "admin"), "portico_access_log_dropped_lines_total",
                              PX_IO_MS) >= 1);
    assert_false(harness_file_contains(h, "error.log", "SIGUSR1"));
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* The error log's own lines lost to a daemon gone are counted in
 * portico_error_log_dropped_lines_total (it cannot say so itself); SIGUSR1, unable to connect
 * to a socket no longer there, keeps the previous one. */
static void test_error_log_lost_counted(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char path[512];
    struct fake_syslog *fs = unix_daemon(h, "err.sock", path, sizeof(path));
    write_config(h, "access_log = off\nerror_log = syslog:server=unix:{{dir}}/err.sock\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(harness_signal(h, SIGUSR1), 0);
    wait_datagram(fs, "SIGUSR1: logs reopened");
    fake_syslog_free(fs); /* gone: the next SIGUSR1 cannot connect, and says so to no one */
    uint16_t admin = harness_port(h, "admin");
    const char *series = "portico_error_log_dropped_lines_total";
    assert_true(scrape_metric(admin, series, PX_IO_MS) == 0);
    assert_int_equal(harness_signal(h, SIGUSR1), 0);
    assert_true(scrape_wait(admin, series, 1, PX_IO_MS) >= 1); /* "cannot reopen" */
    assert_int_equal(get(h, "still"), 200);
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
}

/* A reload to another port moves the lines there; one naming a unix socket that is not there
 * is refused at its FILE:LINE, and the lines stay where they went. */
static void test_reload(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *a = receiver(h, "a"), *b = receiver(h, "b");
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:a}}\n"
                    "error_log = {{dir}}/error.log\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(get(h, "agent-before"), 200);
    wait_datagram(a, "agent-before");
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:b}},tag=moved\n"
                    "error_log = {{dir}}/error.log\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "is live", PX_IO_MS), 0);
    assert_int_equal(get(h, "agent-after"), 200);
    const char *d = wait_datagram(b, "agent-after");
    assert_header(d, 23 * 8 + 6, hostname(), "moved", harness_pid(h));
    write_config(h, "error_log = {{dir}}/error.log\n"
                    "access_log = syslog:server=unix:{{dir}}/missing.sock\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    char want[700];
    snprintf(want, sizeof(want), "%s:7: access_log: syslog server: No such file or directory",
             harness_config_path(h));
    assert_int_equal(harness_wait_file(h, "error.log", want, PX_IO_MS), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "still serving the previous", PX_IO_MS),
                     0);
    assert_int_equal(get(h, "agent-kept"), 200);
    wait_datagram(b, "agent-kept");
    assert_int_equal(fake_syslog_count(a, "agent-after") + fake_syslog_count(a, "agent-kept"), 0);
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(a);
    fake_syslog_free(b);
    harness_free(h);
}

/* How many of pid's descriptors are open on path. */
static int open_on(pid_t pid, const char *path)
{
    return px_count_fds_on(pid, path).on;
}

/* How many of pid's descriptors are UDP sockets connected to 127.0.0.1:port (/proc/net/udp's
 * inodes of that remote port). */
static int udp_fds_to(pid_t pid, uint16_t port)
{
    unsigned long inodes[64];
    size_t n = 0;
    FILE *f = fopen("/proc/net/udp", "r");
    assert_non_null(f);
    char line[512];
    while (fgets(line, sizeof(line), f) && n < 64) {
        unsigned rport;
        unsigned long inode;
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %*x %*x:%*x %*x:%*x %*x %*u %*u %lu", &rport,
                   &inode) == 2 && rport == port && inode)
            inodes[n++] = inode;
    }
    fclose(f);
    int on = 0;
    for (size_t i = 0; i < n; i++) {
        char link[64];
        snprintf(link, sizeof(link), "socket:[%lu]", inodes[i]);
        on += px_count_fds_on(pid, link).on;
    }
    return on;
}

/* Both logs moved from files to syslog by a reload: the files are closed (a rotated, deleted
 * one frees its disk), not kept open for ever behind the sockets; moved back, each file is open
 * once, and the sockets are closed (fixes19: they stayed open). */
static void test_files_closed_for_syslog(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *a = receiver(h, "a"), *e = receiver(h, "e");
    const char *files = "access_log = {{dir}}/access.log\nerror_log = {{dir}}/error.log\n";
    write_config(h, files);
    assert_int_equal(harness_start(h), 0);
    char access[600], error[600];
    snprintf(access, sizeof(access), "%s/access.log", harness_dir(h));
    snprintf(error, sizeof(error), "%s/error.log", harness_dir(h));
    assert_int_equal(open_on(harness_pid(h), access), 1);
    assert_int_equal(open_on(harness_pid(h), error), 1);
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:a}}\n"
                    "error_log = syslog:server=127.0.0.1:{{free_port:e}}\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    wait_datagram(e, "is live");
    assert_int_equal(get(h, "on-syslog"), 200);
    wait_datagram(a, "on-syslog");
    assert_int_equal(open_on(harness_pid(h), access), 0);
    assert_int_equal(open_on(harness_pid(h), error), 0);
    assert_int_equal(udp_fds_to(harness_pid(h), harness_port(h, "a")), 1);
    assert_int_equal(udp_fds_to(harness_pid(h), harness_port(h, "e")), 1);
    write_config(h, files);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "is live", PX_IO_MS), 0);
    assert_int_equal(get(h, "on-file"), 200);
    assert_int_equal(harness_wait_file(h, "access.log", "on-file", PX_IO_MS), 0);
    assert_int_equal(open_on(harness_pid(h), access), 1);
    assert_int_equal(open_on(harness_pid(h), error), 1);
    /* (fixes19) and the sockets to the daemons closed by the reload (they stayed open) */
    assert_int_equal(udp_fds_to(harness_pid(h), harness_port(h, "a")), 0);
    assert_int_equal(udp_fds_to(harness_pid(h), harness_port(h, "e")), 0);
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(a);
    fake_syslog_free(e);
    harness_free(h);
}

/* A line longer than len= is cut to len bytes, header included, and ends in the mark. */
static void test_long_line_cut(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *fs = receiver(h, "sys");
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:sys}},len=480\n"
                    "access_log_format = text\nerror_log = {{dir}}/error.log\n");
    assert_int_equal(harness_start(h), 0);
    char path[1100] = "/long/";
    memset(path + 6, 'x', 1000);
    path[1006] = '\0';
    assert_true(get_path(h, path, "long") > 0); /* the sim's 404: its line is as long */
    const char *d = wait_datagram(fs, "/long/xxx");
    assert_int_equal(strlen(d), 480);
    assert_string_equal(d + 480 - 5, "[cut]");
    assert_int_equal(get(h, "short"), 200); /* the next line whole */
    d = wait_datagram(fs, "user_agent=\"short\"");
    assert_non_null(strstr(d, " status=200"));
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* The parameters' errors at FILE:LINE, under -t. */
static void test_config_errors(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    static const struct {
        const char *value;
        const char *text;
    } rows[] = {
        {"access_log = syslog:server=127.0.0.1,facility=local9",
         "access_log: syslog parameter 'facility=local9': kern, user"},
        {"access_log = syslog:server=nowhere.example:514",
         "access_log: syslog parameter 'server=nowhere.example:514': a numeric IPv4 or [IPv6] "
         "address"},
        {"access_log = syslog:server=127.0.0.1,color=red",
         "access_log: syslog parameter 'color=red': unknown parameter"},
        {"access_log = syslog:facility=local0", "access_log: syslog: needs server="},
        {"access_log = syslog:server=127.0.0.1,tag=a-b", "access_log: syslog parameter 'tag=a-b': 1 to 32"},
        {"access_log = syslog:server=127.0.0.1,len=100", "access_log: syslog parameter 'len=100': bytes"},
        {"error_log = syslog:server=127.0.0.1,severity=warn",
         "error_log: syslog severity= is the access_log's"},
        {"error_log = syslog:server=unix:{{dir}}/none.sock",
         "error_log: syslog server: No such file or directory"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        char logs[512];
        snprintf(logs, sizeof(logs), "%s\n", rows[i].value);
        write_config(h, logs);
        struct tu_cmd_result res = {0};
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[1024];
        snprintf(want, sizeof(want), "%s:6: %s", harness_config_path(h), rows[i].text);
        if (!tu_contains(res.err, want))
            fail_msg("no '%s' in:\n%s", want, res.err);
        tu_cmd_result_free(&res);
    }
    harness_free(h);
}

/* (mutants18) The access log's severity= in its PRI (local7.notice, 23 * 8 + 5); a reload that
 * moves both logs from syslog to files writes their next lines to the files, none to the
 * daemon. */
static void test_severity_and_back_to_files(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *fs = receiver(h, "sys");
    write_config(h, "access_log = syslog:server=127.0.0.1:{{free_port:sys}},severity=notice\n"
                    "access_log_format = text\n"
                    "error_log = syslog:server=127.0.0.1:{{free_port:sys}}\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(get(h, "agent-notice"), 200);
    const char *d = wait_datagram(fs, "user_agent=\"agent-notice\"");
    assert_header(d, 23 * 8 + 5, hostname(), "portico", harness_pid(h));
    write_config(h, "access_log = {{dir}}/access.log\naccess_log_format = text\n"
                    "error_log = {{dir}}/error.log\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "is live", PX_IO_MS), 0);
    assert_int_equal(get(h, "agent-filed"), 200);
    assert_int_equal(harness_wait_file(h, "access.log", "user_agent=\"agent-filed\"", PX_IO_MS),
                     0);
    assert_int_equal(fake_syslog_count(fs, "agent-filed") + fake_syslog_count(fs, "is live"), 0);
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* (mutants18) Error-log lines at debug level go as severity debug (local7.debug, 23 * 8 + 7);
 * the daemon restarted (a new socket at the path), the error log connects again by itself, as
 * the access log does: its lines come again without SIGUSR1. The lines: a health check's
 * verdict, said at debug level every 100 ms. */
static void test_error_log_debug_reconnects(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char path[512];
    struct fake_syslog *fs = unix_daemon(h, "err.sock", path, sizeof(path));
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\n"
                                          "admin_listen = 127.0.0.1:{{port:admin}}\n"
                                          "log_level = debug\n"
                                          "access_log = off\n"
                                          "error_log = syslog:server=unix:{{dir}}/err.sock\n"
                                          "[upstream s]\norigin = sim\n"
                                          "health_check = GET /status/200 every 100ms expect 200\n"),
                     0);
    assert_int_equal(harness_start(h), 0);
    const char *d = wait_datagram(fs, "health check of");
    const char *msg = assert_header(d, 23 * 8 + 7, hostname(), "portico", harness_pid(h));
    assert_non_null(strstr(msg, " [debug] health check of "));
    fake_syslog_free(fs);
    fs = fake_syslog_unix(path); /* restarted */
    assert_non_null(fs);
    wait_datagram(fs, "health check of");
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(fs);
    harness_free(h);
}

/* (mutants18) A reload to another unix socket with the same header (facility, tag, host, len):
 * the daemon there restarted, the log connects again to that socket, not the first one. */
static void test_reload_same_header_reconnects_there(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    char pa[512], pb[512];
    struct fake_syslog *a = unix_daemon(h, "a.sock", pa, sizeof(pa));
    struct fake_syslog *b = unix_daemon(h, "b.sock", pb, sizeof(pb));
    write_config(h, "access_log = syslog:server=unix:{{dir}}/a.sock\n"
                    "access_log_format = text\nerror_log = {{dir}}/error.log\n");
    assert_int_equal(harness_start(h), 0);
    assert_int_equal(get(h, "to-a"), 200);
    wait_datagram(a, "user_agent=\"to-a\"");
    write_config(h, "access_log = syslog:server=unix:{{dir}}/b.sock\n"
                    "access_log_format = text\nerror_log = {{dir}}/error.log\n");
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_file(h, "error.log", "is live", PX_IO_MS), 0);
    assert_int_equal(get(h, "to-b"), 200);
    wait_datagram(b, "user_agent=\"to-b\"");
    b = restart_until_a_line(h, b, pb);
    assert_int_equal(harness_stop(h), 0);
    fake_syslog_free(a);
    fake_syslog_free(b);
    harness_free(h);
}

/* (fixes19) The header's "Mmm dd hh:mm:ss" of an error line is its own time's second (the line
 * says it in UTC, the header in local time): one reading of the clock for both. */
static void assert_header_second_is_lines(const char *d)
{
    const char *gt = strchr(d, '>');
    assert_non_null(gt);
    const char *msg = strstr(d, "]: ");
    assert_non_null(msg);
    struct tm tm = {0};
    if (sscanf(msg + 3, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        fail_msg("no time at the line's start: %s", d);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    struct tm local;
    localtime_r(&t, &local);
    char want[32];
    strftime(want, sizeof(want), "%b %e %H:%M:%S", &local);
    if (strncmp(gt + 1, want, strlen(want)) != 0)
        fail_msg("header not at the line's second %s: %s", want, d);
}

/* (fixes19) The access log moved between syslog and off, 50 times each way: off closes the
 * socket (it was kept until the process ended, or a move back to syslog reused it), so the
 * process holds exactly its descriptors of the start after every move to off. The error log,
 * at another daemon, says each reload is live with its header at the line's own second. */
static void test_syslog_to_off_closes_socket(void **state)
{
    (void)state;
    struct harness *h = harness_new();
    assert_non_null(h);
    struct fake_syslog *a = receiver(h, "a"), *e = receiver(h, "e");
    const char *off = "access_log = off\n"
                      "error_log = syslog:server=127.0.0.1:{{free_port:e}}\n";
    const char *on = "access_log = syslog:server=127.0.0.1:{{free_port:a}}\n"
                     "error_log = syslog:server=127.0.0.1:{{free_port:e}}\n";
    write_config(h, off);
    assert_int_equal(harness_start(h), 0);
    struct px_fds base = px_count_fds(harness_pid(h));
    unsigned generation = 1;
    for (int i = 0; i < 50; i++) {
        char live[64];
        write_config(h, on);
        assert_int_equal(harness_signal(h, SIGHUP), 0);
        snprintf(live, sizeof(live), "is live (generation %u,", ++generation);
        assert_header_second_is_lines(wait_datagram(e, live));
        if (i == 0) { /* on syslog indeed */
            assert_int_equal(get(h, "on-syslog"), 200);
            wait_datagram(a, "on-syslog");
        }
        write_config(h, off);
        assert_int_equal(harness_signal(h, SIGHUP), 0);
        snprintf(live, sizeof(live), "is live (generation %u,", ++generation);
        assert_header_second_is_lines(wait_datagram(e, live));
        struct px_fds now = px_wait_fds(harness_pid(h), base);
        if (now.all != base.all)
            fail_msg("move %d to off: %d descriptors, %d at the start", i + 1, now.all,
                     base.all);
    }
    assert_int_equal(get(h, "off-again"), 200);
    assert_int_equal(harness_stop(h), 0);
    assert_int_equal(fake_syslog_count(a, "off-again"), 0);
    fake_syslog_free(a);
    fake_syslog_free(e);
    harness_free(h);
}

int main(void)
{
    tu_ignore_sigpipe();
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_lines),
        cmocka_unit_test(test_ipv6_server),
        cmocka_unit_test(test_error_severity),
        cmocka_unit_test(test_receiver_gone),
        cmocka_unit_test(test_unix_socket_and_sigusr1),
        cmocka_unit_test(test_daemon_restart_reconnects),
        cmocka_unit_test(test_error_log_lost_counted),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_long_line_cut),
        cmocka_unit_test(test_files_closed_for_syslog),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_severity_and_back_to_files),
        cmocka_unit_test(test_error_log_debug_reconnects),
        cmocka_unit_test(test_reload_same_header_reconnects_there),
        cmocka_unit_test(test_syslog_to_off_closes_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
