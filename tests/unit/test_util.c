/*
 * test_util.c — strict parsers of durations, sizes, booleans, integers and addresses, address
 * formatting, and buf_appendf truncation.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/util.h"

/* ok: expected success; ms: the value then. */
static const struct {
    const char *in;
    int ok;
    uint64_t ms;
} duration_rows[] = {
    {"250ms", 1, 250},                     /* milliseconds */
    {"2s", 1, 2000},                       /* seconds */
    {"1m", 1, 60000},                      /* minutes */
    {"1h", 1, 3600000},                    /* hours */
    {"30", 1, 30000},                      /* a bare number is seconds */
    {"0", 1, 0},                           /* zero is a duration (total_timeout = 0 is off) */
    {"0ms", 1, 0},                         /* zero with a unit */
    {"007s", 1, 7000},                     /* leading zeros are digits */
    {"", 0, 0},                            /* empty */
    {"ms", 0, 0},                          /* unit without a number */
    {"-1s", 0, 0},                         /* no sign */
    {"+1s", 0, 0},                         /* no sign */
    {" 1s", 0, 0},                         /* no leading space */
    {"1s ", 0, 0},                         /* no trailing space */
    {"1 s", 0, 0},                         /* no space before the unit */
    {"1.5s", 0, 0},                        /* no fractions */
    {"1d", 0, 0},                          /* unknown unit */
    {"1S", 0, 0},                          /* units are lowercase */
    {"1sec", 0, 0},                        /* unknown unit */
    {"1mss", 0, 0},                        /* trailing garbage */
    {"0x10", 0, 0},                        /* no hex */
    /* too long for 64 bits: UINT64_MAX, never a wrapped value (callers cap durations) */
    {"18446744073709551615ms", 1, UINT64_MAX},      /* UINT64_MAX itself */
    {"18446744073709551616", 1, UINT64_MAX},        /* digits overflow: saturated */
    {"18446744073710s", 1, 18446744073710000ull},   /* fits in ms */
    {"18446744073709552s", 1, UINT64_MAX},          /* s * 1000 overflows: saturated */
    {"99999999999999999999999999h", 1, UINT64_MAX}, /* far beyond */
    {"5124095576030h", 1, 18446744073708000000ull}, /* the largest whole hours */
    {"5124095576031h", 1, UINT64_MAX},              /* one more overflows: saturated */
    {"99999999999999999999999999x", 0, 0},          /* saturation does not excuse a bad unit */
};

/* Waits (bounded) until the monotonic clock has moved past t. */
static uint64_t clock_after(uint64_t t)
{
    uint64_t now = now_us();
    for (int i = 0; i < 10000000 && now <= t; i++)
        now = now_us();
    return now;
}

/* Inside an event the event clock stands at the time the event began, also in a nested
 * bracket; outside one it is the clock itself. */
static void test_event_clock(void **state)
{
    (void)state;
    uint64_t before = now_us();
    event_begin();
    uint64_t at = event_now_us();
    assert_true(at >= before);
    assert_true(clock_after(at) > at);
    assert_int_equal(event_now_us(), at); /* time passed, the event's time did not */
    event_begin();                          /* nested: no new read */
    assert_int_equal(event_now_us(), at);
    event_end();
    assert_int_equal(event_now_us(), at);
    event_end();
    assert_true(event_now_us() > at);        /* outside: the clock again */
}

static void test_parse_duration(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(duration_rows); i++) {
        uint64_t v = 12345;
        int rc = parse_duration_ms(duration_rows[i].in, &v);
        if (duration_rows[i].ok && (rc != 0 || v != duration_rows[i].ms))
            fail_msg("'%s': rc %d value %llu, want %llu", duration_rows[i].in, rc,
                     (unsigned long long)v, (unsigned long long)duration_rows[i].ms);
        if (!duration_rows[i].ok && rc != -1)
            fail_msg("'%s': accepted as %llu", duration_rows[i].in, (unsigned long long)v);
    }
}

static const struct {
    const char *in;
    int ok;
    uint64_t v;
} size_rows[] = {
    {"512", 1, 512},                       /* bytes */
    {"16k", 1, 16384},                     /* powers of 1024 */
    {"8m", 1, 8u << 20},                   /* mebibytes */
    {"1g", 1, 1u << 30},                   /* gibibytes */
    {"16K", 1, 16384},                     /* case-insensitive unit */
    {"1G", 1, 1u << 30},                   /* case-insensitive unit */
    {"0", 1, 0},                           /* zero is a size */
    {"", 0, 0},                            /* empty */
    {"k", 0, 0},                           /* unit only */
    {"16kb", 0, 0},                        /* two-letter units are not accepted */
    {"16 k", 0, 0},                        /* no space */
    {"-1", 0, 0},                          /* no sign */
    {"1.5m", 0, 0},                        /* no fractions */
    {"1p", 0, 0},                          /* unknown unit */
    {"1t", 1, 1ull << 40},                 /* tebibytes */
    {"17179869183g", 1, 17179869183ull << 30}, /* the largest whole gibibytes */
    {"17179869184g", 1, UINT64_MAX},       /* 2^34 g is 2^64: saturated, never wrapped */
    {"99999999999999999999", 1, UINT64_MAX}, /* overflows before the unit: saturated */
    {"99999999999999999999q", 0, 0},       /* saturation does not excuse a bad unit */
};

static void test_parse_size(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(size_rows); i++) {
        uint64_t v = 777;
        int rc = parse_size(size_rows[i].in, &v);
        if (size_rows[i].ok && (rc != 0 || v != size_rows[i].v))
            fail_msg("'%s': rc %d value %llu", size_rows[i].in, rc, (unsigned long long)v);
        if (!size_rows[i].ok && rc != -1)
            fail_msg("'%s': accepted as %llu", size_rows[i].in, (unsigned long long)v);
    }
}

static const struct {
    const char *in;
    int rc;
    bool v;
} bool_rows[] = {
    {"on", 0, true},      /* the documented spelling */
    {"off", 0, false},    /* the documented spelling */
    {"ON", 0, true},      /* case-insensitive */
    {"Off", 0, false},    /* case-insensitive */
    {"yes", 0, true},     /* accepted synonym */
    {"no", 0, false},     /* accepted synonym */
    {"true", 0, true},    /* accepted synonym */
    {"false", 0, false},  /* accepted synonym */
    {"1", 0, true},       /* accepted synonym */
    {"0", 0, false},      /* accepted synonym */
    {"", -1, false},      /* empty */
    {"onn", -1, false},   /* prefix match is not enough */
    {"o", -1, false},     /* prefix of on/off */
    {"2", -1, false},     /* other numbers */
    {" on", -1, false},   /* no spaces */
    {"enabled", -1, false}, /* unknown word */
};

static void test_parse_bool(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bool_rows); i++) {
        bool v = !bool_rows[i].v;
        int rc = parse_bool(bool_rows[i].in, &v);
        if (rc != bool_rows[i].rc || (rc == 0 && v != bool_rows[i].v))
            fail_msg("'%s': rc %d value %d", bool_rows[i].in, rc, v);
    }
}

static const struct {
    const char *in;
    uint64_t min, max;
    int rc;
    uint64_t v;
} uint_rows[] = {
    {"0", 0, 10, 0, 0},                    /* lower bound included */
    {"10", 0, 10, 0, 10},                  /* upper bound included */
    {"11", 0, 10, -1, 0},                  /* above max */
    {"0", 1, 10, -1, 0},                   /* below min */
    {"0042", 0, 100, 0, 42},               /* leading zeros */
    {"18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX}, /* the largest value */
    {"18446744073709551616", 0, UINT64_MAX, -1, 0},         /* one more overflows */
    {"", 0, 10, -1, 0},                    /* empty */
    {"-1", 0, 10, -1, 0},                  /* no sign */
    {"+1", 0, 10, -1, 0},                  /* no sign */
    {"1 ", 0, 10, -1, 0},                  /* no trailing space */
    {" 1", 0, 10, -1, 0},                  /* no leading space */
    {"1a", 0, 100, -1, 0},                 /* trailing garbage */
    {"0x1", 0, 100, -1, 0},                /* no hex */
};

static void test_parse_uint(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(uint_rows); i++) {
        uint64_t v = 99;
        int rc = parse_uint(uint_rows[i].in, uint_rows[i].min, uint_rows[i].max, &v);
        if (rc != uint_rows[i].rc || (rc == 0 && v != uint_rows[i].v))
            fail_msg("'%s' in [%llu,%llu]: rc %d value %llu", uint_rows[i].in,
                     (unsigned long long)uint_rows[i].min, (unsigned long long)uint_rows[i].max,
                     rc, (unsigned long long)v);
        if (rc != 0 && v != 99)
            fail_msg("'%s': output written on error", uint_rows[i].in);
    }
}

/* What an nginx user's habit gets: proxy_pass takes a URL, Portico a host:port. */
#define URL_WHY "expected host:port, not a URL (no scheme:// and no /path)"

/* host NULL: error expected, why is the exact reason. */
static const struct {
    const char *in;
    const char *host;
    uint16_t port;
    const char *why;
} hp_rows[] = {
    {"127.0.0.1:8080", "127.0.0.1", 8080, NULL},      /* IPv4 */
    {"[::1]:8080", "::1", 8080, NULL},                /* IPv6 in brackets, brackets dropped */
    {"[0:0:0:0:0:0:0:1]:443", "0:0:0:0:0:0:0:1", 443, NULL}, /* longer IPv6 */
    {"[::ffff:127.1.2.3]:80", "::ffff:127.1.2.3", 80, NULL}, /* IPv4-mapped IPv6 */
    {"example.com:80", "example.com", 80, NULL},      /* name */
    {"my_host-1.internal:1", "my_host-1.internal", 1, NULL}, /* '_' and '-' in names, port 1 */
    {"h:65535", "h", 65535, NULL},                    /* highest port */
    {"host", NULL, 0, "expected host:port"},          /* no port */
    {"host:", NULL, 0, "port must be 1-65535"},       /* empty port */
    {"host:0", NULL, 0, "port must be 1-65535"},      /* port 0 */
    {"host:65536", NULL, 0, "port must be 1-65535"},  /* port too large */
    {"host:-1", NULL, 0, "port must be 1-65535"},     /* signed port */
    {"host:80x", NULL, 0, "port must be 1-65535"},    /* garbage after the port */
    {":80", NULL, 0, "empty host"},                   /* empty host */
    {"[]:80", NULL, 0, "empty host"},                 /* empty brackets */
    {"::1:80", NULL, 0, "IPv6 addresses need brackets: [::1]:port"}, /* bare IPv6 */
    {"[::1]", NULL, 0, "expected [ipv6]:port"},       /* brackets without port */
    {"[::1]80", NULL, 0, "expected [ipv6]:port"},     /* no colon after ']' */
    {"[::1:80", NULL, 0, "expected [ipv6]:port"},     /* no closing bracket */
    {"[example.com]:80", NULL, 0, "expected [ipv6]:port"}, /* brackets hold IPv6 only */
    {"[127.1.2.3]:80", NULL, 0, "expected [ipv6]:port"},     /* IPv4 goes without brackets */
    {"a b:80", NULL, 0, "invalid character in host"}, /* space in host */
    {"a/b:80", NULL, 0, URL_WHY},                     /* slash in host */
    {"http://127.0.0.1:80", NULL, 0, URL_WHY},        /* a URL (nginx's proxy_pass) */
    {"https://app.internal", NULL, 0, URL_WHY},       /* a URL without a port */
    {"127.0.0.1:8080/api/", NULL, 0, URL_WHY},        /* a path after the port */
    {"[::1%eth0]:80", NULL, 0, "expected [ipv6]:port"}, /* zone ids are not supported */
};

/* The span version: digits only, no sign or blank, no overflow, bounds inclusive. */
static void test_parse_uint_span(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;           /* 0: strlen */
        uint64_t min, max;
        int rc;
        uint64_t v;
    } rows[] = {
        {"404", 0, 0, 999, 0, 404},
        {"4041", 3, 0, 999, 0, 404},                 /* only the span counts */
        {"", 0, 0, 999, -1, 0},                      /* empty */
        {"+1", 0, 0, 999, -1, 0},                    /* sign */
        {" 1", 0, 0, 999, -1, 0},                    /* blank */
        {"1000", 0, 0, 999, -1, 0},                  /* above max */
        {"5", 0, 10, 20, -1, 0},                     /* below min */
        {"18446744073709551615", 0, 0, UINT64_MAX, 0, UINT64_MAX},
        {"18446744073709551616", 0, 0, UINT64_MAX, -1, 0}, /* overflow */
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        uint64_t v = 7;
        size_t len = rows[i].len ? rows[i].len : strlen(rows[i].s);
        assert_int_equal(parse_uint_span(rows[i].s, len, rows[i].min, rows[i].max, &v),
                         rows[i].rc);
        assert_true(rows[i].rc ? v == 7 : v == rows[i].v);
    }
}

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes, English names. */
static void test_http_date(void **state)
{
    (void)state;
    const char *d = http_date_now();
    assert_int_equal(strlen(d), 29);
    assert_true(strstr("Mon Tue Wed Thu Fri Sat Sun", (char[4]){d[0], d[1], d[2], 0}) != NULL);
    assert_memory_equal(d + 3, ", ", 2);
    assert_memory_equal(d + 25, " GMT", 4);
    assert_ptr_equal(http_date_now(), d); /* the thread's own buffer */
}

static void test_split_host_port(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(hp_rows); i++) {
        char host[64] = "unchanged";
        uint16_t port = 7;
        const char *why = NULL;
        int rc = split_host_port(hp_rows[i].in, host, sizeof(host), &port, &why);
        if (hp_rows[i].host) {
            if (rc != 0)
                fail_msg("'%s': refused (%s)", hp_rows[i].in, why ? why : "?");
            if (strcmp(host, hp_rows[i].host) != 0 || port != hp_rows[i].port)
                fail_msg("'%s': host '%s' port %u", hp_rows[i].in, host, port);
        } else {
            if (rc != -1)
                fail_msg("'%s': accepted as '%s' %u", hp_rows[i].in, host, port);
            if (!why || strcmp(why, hp_rows[i].why) != 0)
                fail_msg("'%s': reason '%s', want '%s'", hp_rows[i].in, why ? why : "(null)",
                         hp_rows[i].why);
        }
    }
}

/* The host buffer bounds the host: a name that does not fit is refused, never truncated. */
static void test_split_host_port_small_buffer(void **state)
{
    char host[8];
    uint16_t port;
    const char *why = NULL;
    (void)state;
    assert_int_equal(split_host_port("1234567:80", host, sizeof(host), &port, &why), 0);
    assert_string_equal(host, "1234567");
    assert_int_equal(split_host_port("12345678:80", host, sizeof(host), &port, &why), -1);
    assert_string_equal(why, "host name too long");
    assert_int_equal(split_host_port("[1:2:3:4::]:80", host, sizeof(host), &port, &why), -1);
    assert_string_equal(why, "host name too long");
}

static const struct {
    const char *host;
    uint16_t port;
    int rc;
    int family;
    const char *text; /* sockaddr_str of the result */
} sa_rows[] = {
    {"127.0.0.1", 8080, 0, AF_INET, "127.0.0.1:8080"},   /* IPv4 */
    {"0.0.0.0", 1, 0, AF_INET, "0.0.0.0:1"},             /* any address */
    {"::1", 443, 0, AF_INET6, "[::1]:443"},              /* IPv6 loopback gets brackets */
    {"0:0:0:0:0:0:0:1", 80, 0, AF_INET6, "[::1]:80"},     /* normalized by inet_ntop */
    {"127.200.3.45", 0, 0, AF_INET, "127.200.3.45:0"},   /* port 0 is still written */
    {"127.255.255.255", 65535, 0, AF_INET, "127.255.255.255:65535"}, /* the longest IPv4 */
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 0, AF_INET6,
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"}, /* eight full groups */
    {"::ffff:127.0.0.1", 8080, 0, AF_INET6, "[::ffff:127.0.0.1]:8080"}, /* v4-mapped */
    {"localhost", 80, -1, 0, NULL},                      /* names are not numeric */
    {"1.2.3", 80, -1, 0, NULL},                          /* inet_aton shorthand refused */
    {"127.1.2.256", 80, -1, 0, NULL},                      /* octet out of range */
    {"[::1]", 80, -1, 0, NULL},                          /* brackets belong to host:port */
    {"", 80, -1, 0, NULL},                               /* empty */
};

static void test_numeric_sockaddr(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(sa_rows); i++) {
        struct sockaddr_storage sa;
        socklen_t len = 0;
        char buf[64];
        int rc = numeric_sockaddr(sa_rows[i].host, sa_rows[i].port, &sa, &len);
        if (rc != sa_rows[i].rc)
            fail_msg("'%s': rc %d", sa_rows[i].host, rc);
        if (rc != 0)
            continue;
        assert_int_equal(sa.ss_family, sa_rows[i].family);
        assert_int_equal(len, sa_rows[i].family == AF_INET ? sizeof(struct sockaddr_in)
                                                           : sizeof(struct sockaddr_in6));
        assert_string_equal(sockaddr_str((struct sockaddr *)&sa, buf, sizeof(buf)),
                            sa_rows[i].text);
    }
}

/* sockaddr_str never overflows and names what it cannot format. */
static void test_sockaddr_str_edges(void **state)
{
    struct sockaddr_storage sa;
    socklen_t len;
    char small[8];
    char buf[64];
    (void)state;
    assert_int_equal(numeric_sockaddr("127.255.255.255", 65535, &sa, &len), 0);
    assert_ptr_equal(sockaddr_str((struct sockaddr *)&sa, small, sizeof(small)), small);
    assert_string_equal(small, "127.255"); /* truncated, NUL-terminated */
    memset(&sa, 0, sizeof(sa));
    sa.ss_family = AF_UNIX;
    assert_string_equal(sockaddr_str((struct sockaddr *)&sa, buf, sizeof(buf)), "unix");
}

/* ipv4_str writes what inet_ntop writes: the edges of each octet's digit count, then a walk
 * through the address space with a stride prime to 2^32. */
static void test_ipv4_str(void **state)
{
    (void)state;
    static const uint32_t rows[] = {0x00000000, 0xffffffff, 0x7f000001, 0x0a09630c, 0x64636263,
                                    0xc0a80001, 0x01020304, 0x090a6364};
    char want[INET_ADDRSTRLEN], got[16];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct in_addr a = {htonl(rows[i])};
        inet_ntop(AF_INET, &a, want, sizeof(want));
        ipv4_str(&a, got);
        assert_string_equal(got, want);
    }
    uint32_t v = 12345;
    for (int i = 0; i < 100000; i++, v += 2654435761u) {
        struct in_addr a = {v};
        inet_ntop(AF_INET, &a, want, sizeof(want));
        ipv4_str(&a, got);
        assert_string_equal(got, want);
    }
}

/* A client's ip text: IPv4 and IPv6 as inet_ntop writes them, and an IPv4 client of a
 * dual-stack listener (v4-mapped, ::ffff:a.b.c.d) as the IPv4 address it is, not as IPv6:
 * X-Forwarded-For, the access log and header_control_clients (127.0.0.0/8) read it. */
static void test_peer_ip_str(void **state)
{
    (void)state;
    static const struct {
        int family;
        const char *addr;
        unsigned port;
        const char *want;
    } rows[] = {
        {AF_INET, "127.0.0.1", 50312, "127.0.0.1"},
        {AF_INET6, "::1", 443, "::1"},
        {AF_INET6, "::ffff:127.0.0.1", 50312, "127.0.0.1"},
        {AF_INET6, "::ffff:127.9.99.12", 1, "127.9.99.12"},
        {AF_INET6, "::ffff:0.0.0.0", 2, "0.0.0.0"},
        {AF_INET6, "::127.0.0.1", 3, "::127.0.0.1"},         /* v4-compatible: not mapped */
        {AF_INET6, "64:ff9b::7f00:1", 4, "64:ff9b::7f00:1"}, /* NAT64: an IPv6 peer */
        {AF_INET6, "::fffe:7f00:1", 5, "::fffe:7f00:1"},
        {AF_INET6, "fe80::ffff:7f00:1", 6, "fe80::ffff:7f00:1"},
        {AF_INET6, "2001:db8::1", 65535, "2001:db8::1"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sockaddr_storage ss = {0};
        if (rows[i].family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            a->sin_port = htons((uint16_t)rows[i].port);
            assert_int_equal(inet_pton(AF_INET, rows[i].addr, &a->sin_addr), 1);
        } else {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            a->sin6_port = htons((uint16_t)rows[i].port);
            assert_int_equal(inet_pton(AF_INET6, rows[i].addr, &a->sin6_addr), 1);
        }
        char ip[INET6_ADDRSTRLEN];
        assert_int_equal(peer_ip_str((struct sockaddr *)&ss, ip), rows[i].port);
        assert_string_equal(ip, rows[i].want);
    }
    struct sockaddr_storage other = {.ss_family = AF_UNIX};
    char ip[INET6_ADDRSTRLEN];
    assert_int_equal(peer_ip_str((struct sockaddr *)&other, ip), 0);
    assert_string_equal(ip, "?");
}

/* The peer as logs show it: brackets around IPv6 with a port, the ip alone without one, and a
 * buffer too small for the port gets the ip cut to fit rather than an overrun. */
static void test_ip_port_str(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        unsigned port;
        size_t size;
        const char *want;
    } rows[] = {
        {"127.0.0.1", 50312, 64, "127.0.0.1:50312"},
        {"127.0.0.2", 1, 64, "127.0.0.2:1"},
        {"::1", 8080, 64, "[::1]:8080"},
        {"0:0:0:0:0:0:0:1", 65535, 64, "[0:0:0:0:0:0:0:1]:65535"},
        {"127.0.0.1", 0, 64, "127.0.0.1"},
        {"::1", 0, 64, "::1"},
        {"127.0.0.1", 80, 12, "127.0.0.1"},
        {"127.0.0.1", 80, 6, "127.0"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char buf[64];
        memset(buf, 'x', sizeof(buf));
        assert_ptr_equal(ip_port_str(rows[i].ip, rows[i].port, buf, rows[i].size), buf);
        assert_string_equal(buf, rows[i].want);
    }
}

static void test_buf_appendf(void **state)
{
    char buf[8];
    size_t len = 0;
    (void)state;
    len = buf_appendf(buf, sizeof(buf), len, "%s", "abc");   /* fits */
    assert_int_equal(len, 3);
    assert_string_equal(buf, "abc");
    len = buf_appendf(buf, sizeof(buf), len, "%d", 1234);    /* exactly fills: 7 + NUL */
    assert_int_equal(len, 7);
    assert_string_equal(buf, "abc1234");
    len = buf_appendf(buf, sizeof(buf), len, "%s", "xyz");   /* full: nothing more fits */
    assert_int_equal(len, 7);
    assert_string_equal(buf, "abc1234");

    len = buf_appendf(buf, sizeof(buf), 0, "%s", "0123456789"); /* truncated to size - 1 */
    assert_int_equal(len, 7);
    assert_string_equal(buf, "0123456");
    len = buf_appendf(buf, sizeof(buf), 8, "%s", "x");      /* len == size: untouched */
    assert_int_equal(len, 8);
    assert_string_equal(buf, "0123456");
    len = buf_appendf(buf, sizeof(buf), 100, "%s", "x");    /* len beyond size: untouched */
    assert_int_equal(len, 100);
    assert_int_equal(buf_appendf(buf, 0, 0, "%s", "x"), 0); /* zero-size buffer */
    len = buf_appendf(buf, sizeof(buf), 0, "%s", "");       /* empty format output */
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
}

/* str_copy cuts like snprintf("%s") and always terminates. */
static void test_str_copy(void **state)
{
    static const struct {
        const char *src;
        size_t size;
        const char *want;
        size_t ret;
    } rows[] = {
        {"hello", 10, "hello", 5}, /* fits */
        {"hello", 6, "hello", 5},  /* fits exactly, with its NUL */
        {"hello", 5, "hell", 4},   /* one short: cut */
        {"hello", 1, "", 0},       /* room for the NUL only */
        {"", 4, "", 0},            /* empty */
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char buf[16];
        memset(buf, 'x', sizeof(buf));
        assert_int_equal(str_copy(buf, rows[i].size, rows[i].src), rows[i].ret);
        assert_string_equal(buf, rows[i].want);
        assert_int_equal(buf[rows[i].size], 'x'); /* nothing written past size */
    }
    char keep = 'k';
    assert_int_equal(str_copy(&keep, 0, "abc"), 0); /* size 0: nothing written */
    assert_int_equal(keep, 'k');
}

static void test_span_ieq(void **state)
{
    (void)state;
    assert_true(span_ieq("Content-Length", 14, "content-length"));   /* case-insensitive */
    assert_false(span_ieq("Content-Length", 7, "content-length"));   /* prefix is not equal */
    assert_false(span_ieq("Content", 7, "content-length"));          /* shorter */
    assert_true(span_ieq("", 0, ""));                                /* empty equals empty */
}

/* zalloc: zeroed like calloc, also when malloc hands back a block just freed with data in it
 * (the per-thread cache's, which zalloc takes and calloc does not). */
static void test_zalloc(void **state)
{
    (void)state;
    for (size_t size = 1; size <= 1024; size = size * 2 + 7) {
        unsigned char *dirty = malloc(size);
        assert_non_null(dirty);
        memset(dirty, 0xa5, size);
        free(dirty);
        unsigned char *p = zalloc(size);
        assert_non_null(p);
        for (size_t i = 0; i < size; i++)
            if (p[i] != 0)
                fail_msg("size %zu: byte %zu is %#x", size, i, p[i]);
        free(p);
    }
}

/* host_key: a Host as routes and admin_hosts read it: lowercase, without its port, and without
 * every root dot ("Example.COM..:80" is example.com), the brackets of an IPv6 literal kept. */
static void test_host_key(void **state)
{
    static const struct {
        const char *host;
        const char *want;
    } rows[] = {
        {"Example.COM", "example.com"},       /* lowercase */
        {"example.com:8080", "example.com"},  /* the port goes */
        {"example.com.", "example.com"},      /* the root dot goes */
        {"example.com..:80", "example.com"},  /* every one of them, before the port too */
        {"[::1]:80", "[::1]"},                /* brackets stay, the port goes */
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char buf[64];
        size_t n = host_key(rows[i].host, strlen(rows[i].host), buf, sizeof(buf));
        assert_string_equal(buf, rows[i].want);
        assert_int_equal(n, strlen(rows[i].want));
    }
    char small[4];
    assert_int_equal(host_key("abcd", 4, small, sizeof(small)), 0); /* no room for its NUL */
}

/* name_valid: a section or fault rule name: letters, digits, '_', '-' and '.'. */
static void test_name_valid(void **state)
{
    (void)state;
    assert_true(name_valid("api"));
    assert_true(name_valid("api.v1_b-2"));
    assert_false(name_valid(""));
    assert_false(name_valid("a b"));
    assert_false(name_valid("a/b"));
}

/* name_without_root_dot: one final dot goes ("." stays); a name without room for its NUL in
 * buf is refused, not cut or written past it. */
static void test_name_without_root_dot(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    assert_string_equal(name_without_root_dot("a.test.", buf, sizeof(buf)), "a.test");
    assert_string_equal(name_without_root_dot(".", buf, sizeof(buf)), ".");
    assert_string_equal(name_without_root_dot("abcdefg", buf, sizeof(buf)), "abcdefg");
    assert_null(name_without_root_dot("abcdefgh", buf, 8));  /* 8 bytes and a NUL: no room */
    assert_null(name_without_root_dot("abcdefgh.", buf, 8)); /* a dot less, still no room */
}

/* utf8_seq_len: well-formed UTF-8 only (RFC 3629): no overlongs, no surrogates (U+D800-DFFF,
 * ED A0-BF), nothing past U+10FFFF. */
static void test_utf8_seq_len(void **state)
{
    static const struct {
        const char *in;
        size_t want;
    } rows[] = {
        {"\xc3\xa9", 2},         /* U+00E9 */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\x9f\xbf", 0},     /* overlong */
        {"\xed\x9f\xbf", 3},     /* U+D7FF, the last before the surrogates */
        {"\xed\xa0\x80", 0},     /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 0},     /* U+DFFF, a surrogate */
        {"\xee\x80\x80", 3},     /* U+E000 */
        {"\xf4\x8f\xbf\xbf", 4}, /* U+10FFFF */
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
        {"\xe2\x82", 0},          /* cut short */
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        assert_int_equal(utf8_seq_len((const unsigned char *)rows[i].in), rows[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_clock),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_uint),
        cmocka_unit_test(test_parse_uint_span),
        cmocka_unit_test(test_http_date),
        cmocka_unit_test(test_split_host_port),
        cmocka_unit_test(test_split_host_port_small_buffer),
        cmocka_unit_test(test_numeric_sockaddr),
        cmocka_unit_test(test_sockaddr_str_edges),
        cmocka_unit_test(test_ipv4_str),
        cmocka_unit_test(test_peer_ip_str),
        cmocka_unit_test(test_ip_port_str),
        cmocka_unit_test(test_buf_appendf),
        cmocka_unit_test(test_str_copy),
        cmocka_unit_test(test_span_ieq),
        cmocka_unit_test(test_zalloc),
        cmocka_unit_test(test_host_key),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_name_without_root_dot),
        cmocka_unit_test(test_utf8_seq_len),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
