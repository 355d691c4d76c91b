/*
 * test_syslog.c — syslog targets: nginx's parameters parsed (one row per rule), the RFC 3164
 * header (PRI = facility * 8 + severity, the time, host or none, tag and pid), and the datagrams
 * of a flush on a socketpair: one per line, no newline, a long one cut with the mark, a peer gone
 * counting every line lost.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/syslog.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *target;
    int ok;
    int family;           /* when ok */
    int facility;
    int severity;
    const char *tag;
    size_t len;
    const char *why;      /* in the reason when not ok; the row's reason otherwise */
} parse_rows[] = {
    {"syslog:server=127.0.0.1", 1, AF_INET, 23, SYSLOG_INFO, "portico", SYSLOG_LEN_DEFAULT,
     "nginx's defaults: local7, info, port 514"},
    {"syslog:server=[::1]:1514,facility=local0,severity=warn,tag=px_1,len=1024", 1, AF_INET6,
     16, SYSLOG_WARNING, "px_1", 1024, "every parameter"},
    {"syslog:tag=a,server=unix:/dev/log,nohostname", 1, AF_UNIX, 23, SYSLOG_INFO, "a",
     SYSLOG_LEN_DEFAULT, "any order; the local daemon"},
    {"syslog:server=[::1]", 1, AF_INET6, 23, SYSLOG_INFO, "portico", SYSLOG_LEN_DEFAULT,
     "IPv6 without a port"},
    {"syslog:facility=local0", 0, 0, 0, 0, NULL, 0, "needs server="},
    {"syslog:server=127.0.0.1,facility=local8", 0, 0, 0, 0, NULL, 0, "'facility=local8'"},
    {"syslog:server=127.0.0.1,severity=loud", 0, 0, 0, 0, NULL, 0, "'severity=loud'"},
    {"syslog:server=localhost", 0, 0, 0, 0, NULL, 0, "a numeric IPv4"},
    {"syslog:server=unix:dev/log", 0, 0, 0, 0, NULL, 0, "absolute path"},
    {"syslog:server=127.0.0.1,tag=", 0, 0, 0, 0, NULL, 0, "1 to 32"},
    {"syslog:server=127.0.0.1,tag=abcdefghijabcdefghijabcdefghijabc", 0, 0, 0, 0, NULL, 0,
     "1 to 32"},
    {"syslog:server=127.0.0.1,len=479", 0, 0, 0, 0, NULL, 0, "480 to 8192"},
    {"syslog:server=127.0.0.1,len=8193", 0, 0, 0, 0, NULL, 0, "480 to 8192"},
    {"syslog:server=127.0.0.1,len=1k", 0, 0, 0, 0, NULL, 0, "480 to 8192"},
    {"syslog:server=127.0.0.1,nohostname=1", 0, 0, 0, 0, NULL, 0, "takes no value"},
    {"syslog:server=127.0.0.1,tag", 0, 0, 0, 0, NULL, 0, "needs a value"},
    {"syslog:server=127.0.0.1,server=127.0.0.2", 0, 0, 0, 0, NULL, 0, "given twice"},
    {"syslog:server=127.0.0.1,format=rfc5424", 0, 0, 0, 0, NULL, 0, "unknown parameter"},
    {"syslog:server=127.0.0.1:99999", 0, 0, 0, 0, NULL, 0, "'server=127.0.0.1:99999'"},
    {"syslog:server=127.0.0.1,len= 500", 0, 0, 0, 0, NULL, 0, "480 to 8192"},
    {"syslog:server=127.0.0.1,len=+500", 0, 0, 0, 0, NULL, 0, "480 to 8192"},
    {"syslog:server=[127.0.0.1]", 0, 0, 0, 0, NULL, 0, "[IPv6]"},
    /* (mutants18) the bounds themselves taken */
    {"syslog:server=127.0.0.1,len=8192,tag=abcdefghijabcdefghijabcdefghijab", 1, AF_INET, 23,
     SYSLOG_INFO, "abcdefghijabcdefghijabcdefghijab", 8192, "len 8192, a tag of 32"},
};

static void test_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(parse_rows); i++) {
        struct syslog_spec s;
        char why[320] = "";
        int rc = syslog_parse(parse_rows[i].target, &s, why, sizeof(why));
        if ((rc == 0) != parse_rows[i].ok)
            fail_msg("%s: rc %d (%s)", parse_rows[i].target, rc, why);
        if (!parse_rows[i].ok) {
            if (!strstr(why, parse_rows[i].why))
                fail_msg("%s: '%s' lacks '%s'", parse_rows[i].target, why, parse_rows[i].why);
            continue;
        }
        assert_int_equal(s.addr.ss_family, parse_rows[i].family);
        assert_int_equal(s.facility, parse_rows[i].facility);
        assert_int_equal(s.severity, parse_rows[i].severity);
        assert_string_equal(s.tag, parse_rows[i].tag);
        assert_int_equal(s.len, parse_rows[i].len);
    }
    assert_false(syslog_target_is("/var/log/syslog"));
    assert_true(syslog_target_is("syslog:server=127.0.0.1"));
}

/* The header: PRI, "Mmm dd hh:mm:ss" (day space-padded), HOST unless nohostname, TAG[PID]. */
static void test_header(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    struct syslog_spec s;
    char why[320];
    assert_int_equal(syslog_parse("syslog:server=127.0.0.1,facility=local0,tag=px,nohostname",
                                  &s, why, sizeof(why)), 0);
    struct syslog_dest *d = syslog_dest_new(&s);
    assert_non_null(d);
    char buf[160], want[160];
    size_t n = syslog_header(d, SYSLOG_ERR, 1796601600 /* 2026-12-07 00:00:00 UTC */, buf,
                             sizeof(buf));
    snprintf(want, sizeof(want), "<131>Dec  7 00:00:00 px[%ld]: ", (long)getpid());
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
    free(d);
    assert_int_equal(syslog_parse("syslog:server=127.0.0.1", &s, why, sizeof(why)), 0);
    d = syslog_dest_new(&s);
    char host[80] = "";
    gethostname(host, sizeof(host) - 1);
    syslog_header(d, SYSLOG_INFO, 1796601600 + 10 * 86400 + 3723, buf, sizeof(buf));
    snprintf(want, sizeof(want), "<190>Dec 17 01:02:03 %s portico[%ld]: ", host,
             (long)getpid());
    assert_string_equal(buf, want);
    free(d);
}

/* A flush on a datagram socketpair: one datagram per line, without its newline; a line past
 * len cut to len with the mark; the peer closed, every line counted lost. */
static void test_send_lines(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    struct syslog_spec s;
    char why[320];
    assert_int_equal(syslog_parse("syslog:server=unix:/x,nohostname,len=480", &s, why,
                                  sizeof(why)), 0);
    struct syslog_dest *d = syslog_dest_new(&s);
    char lines[2000];
    char longline[1000];
    memset(longline, 'y', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    int n = snprintf(lines, sizeof(lines), "one\ntwo\n%s\nfour\n", longline);
    int err = 0;
    assert_int_equal(
        syslog_send_lines(sv[0], d, SYSLOG_INFO, time(NULL), lines, (size_t)n, &err), 0);
    const char *want[] = {"one", "two", NULL, "four"};
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        char buf[4096];
        ssize_t r = recv(sv[1], buf, sizeof(buf) - 1, MSG_DONTWAIT);
        assert_true(r > 0);
        buf[r] = '\0';
        const char *msg = strstr(buf, "]: ");
        assert_non_null(msg);
        msg += 3;
        if (want[i]) {
            assert_string_equal(msg, want[i]);
        } else {
            assert_int_equal(r, 480);
            assert_string_equal(buf + 480 - strlen(SYSLOG_CUT_MARK), SYSLOG_CUT_MARK);
            assert_int_equal(msg[0], 'y');
        }
    }
    close(sv[1]);
    assert_int_equal(
        syslog_send_lines(sv[0], d, SYSLOG_INFO, time(NULL), lines, (size_t)n, &err), 4);
    assert_true(err != 0);
    close(sv[0]);
    free(d);
}

/* Whether s[0..n) ends on a whole UTF-8 character (a lead byte's continuation bytes all there). */
static bool ends_whole_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t seq = s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : s[i] >= 0xC0 ? 2 : 0;
        if (!seq || i + seq > n)
            return false;
        for (size_t k = 1; k < seq; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += seq;
    }
    return true;
}

/* A line cut where a UTF-8 character of 2, 3 or 4 bytes straddles len: the cut goes before the
 * character, never into it, and the mark still ends the datagram (at most 3 bytes short). */
static void test_cut_utf8(void **state)
{
    (void)state;
    static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    struct syslog_spec s;
    char why[320];
    assert_int_equal(syslog_parse("syslog:server=unix:/x,nohostname,len=480", &s, why,
                                  sizeof(why)), 0);
    struct syslog_dest *d = syslog_dest_new(&s);
    for (size_t c = 0; c < ARRAY_LEN(chars); c++) {
        for (size_t shift = 0; shift < 4; shift++) { /* every place of the cut in a character */
            int sv[2];
            assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
            char line[1200];
            size_t n = shift;
            memset(line, 'a', shift);
            while (n + strlen(chars[c]) < 1000) {
                memcpy(line + n, chars[c], strlen(chars[c]));
                n += strlen(chars[c]);
            }
            line[n++] = '\n';
            int err = 0;
            assert_int_equal(
                syslog_send_lines(sv[0], d, SYSLOG_INFO, time(NULL), line, n, &err), 0);
            char buf[1024];
            ssize_t r = recv(sv[1], buf, sizeof(buf) - 1, MSG_DONTWAIT);
            assert_true(r >= 480 - 3 && r <= 480);
            buf[r] = '\0';
            size_t mark = strlen(SYSLOG_CUT_MARK);
            assert_string_equal(buf + r - mark, SYSLOG_CUT_MARK);
            const char *msg = strstr(buf, "]: ") + 3;
            if (!ends_whole_utf8((const unsigned char *)msg, (size_t)(buf + r - mark - msg)))
                fail_msg("char %zu shift %zu: a torn character before the mark", c, shift);
            close(sv[0]);
            close(sv[1]);
        }
    }
    free(d);
}

/* (mutants18) A line of exactly the room after the header goes whole, one byte more is cut to
 * len with the mark; a daemon not reading (EAGAIN, its queue full within the first batch of a
 * flush of 300 lines): every line not received is counted lost, those of the batch and those
 * after it. */
static void test_send_edges(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    struct syslog_spec s;
    char why[320];
    assert_int_equal(syslog_parse("syslog:server=unix:/x,nohostname,len=480", &s, why,
                                  sizeof(why)), 0);
    struct syslog_dest *d = syslog_dest_new(&s);
    char head[160];
    size_t room = 480 - syslog_header(d, SYSLOG_INFO, time(NULL), head, sizeof(head));
    char lines[1200];
    memset(lines, 'z', room);
    lines[room] = '\n';
    memset(lines + room + 1, 'w', room + 1);
    lines[2 * room + 2] = '\n';
    int err = 0;
    assert_int_equal(
        syslog_send_lines(sv[0], d, SYSLOG_INFO, time(NULL), lines, 2 * room + 3, &err), 0);
    char buf[4096];
    ssize_t r = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
    assert_int_equal(r, 480);
    assert_int_equal(buf[479], 'z'); /* whole, no mark */
    r = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
    assert_int_equal(r, 480);
    assert_memory_equal(buf + 480 - strlen(SYSLOG_CUT_MARK), SYSLOG_CUT_MARK,
                        strlen(SYSLOG_CUT_MARK));
    assert_int_equal(buf[480 - strlen(SYSLOG_CUT_MARK) - 1], 'w');
    close(sv[0]);
    close(sv[1]);

    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    int small = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    static char many[300 * 16];
    size_t n = 0;
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "line %d\n", i);
    err = 0;
    size_t lost = syslog_send_lines(sv[0], d, SYSLOG_INFO, time(NULL), many, n, &err);
    assert_true(err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS);
    size_t got = 0;
    while (recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) > 0)
        got++;
    assert_true(got > 0 && got < 64); /* the queue filled within the first batch */
    assert_int_equal(got + lost, 300);
    close(sv[0]);
    close(sv[1]);
    free(d);
}

/* (mutants18) The port: 514 when none is given, IPv4 or [IPv6], else the one written. */
static void test_parse_port(void **state)
{
    (void)state;
    static const struct {
        const char *target;
        unsigned port;
    } rows[] = {
        {"syslog:server=127.0.0.1", 514},
        {"syslog:server=[::1]", 514},
        {"syslog:server=127.0.0.1:1514", 1514},
        {"syslog:server=[::1]:1515", 1515},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct syslog_spec s;
        char why[320] = "";
        assert_int_equal(syslog_parse(rows[i].target, &s, why, sizeof(why)), 0);
        unsigned port = s.addr.ss_family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)&s.addr)->sin_port)
                            : ntohs(((const struct sockaddr_in6 *)&s.addr)->sin6_port);
        if (port != rows[i].port)
            fail_msg("%s: port %u, want %u", rows[i].target, port, rows[i].port);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_send_lines),
        cmocka_unit_test(test_send_edges),
        cmocka_unit_test(test_parse_port),
        cmocka_unit_test(test_cut_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
