/*
 * util.c — clocks, strict parsing of numbers, durations, sizes and addresses.
 */
#include "portico/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static _Thread_local struct {
    uint64_t at;
    unsigned depth;
} event_clock;

uint64_t event_now_us(void)
{
    return event_clock.depth ? event_clock.at : now_us();
}

void event_begin(void)
{
    if (event_clock.depth++ == 0)
        event_clock.at = now_us();
}

void event_end(void)
{
    event_clock.depth--;
}

uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Leading digits of s into *v, saturated at UINT64_MAX; returns the number of digits (0 = none).
 * *overflow tells a saturated value from UINT64_MAX written out. */
static size_t parse_digits(const char *s, uint64_t *v, bool *overflow)
{
    size_t i = 0;
    uint64_t acc = 0;
    *overflow = false;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (acc > (UINT64_MAX - d) / 10)
            *overflow = true;
        acc = *overflow ? UINT64_MAX : acc * 10 + d;
    }
    *v = acc;
    return i;
}

/* a * b, saturated at UINT64_MAX. */
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

int parse_uint_span(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

const char *http_date_now(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread time_t cached_sec = (time_t)-1;
    static __thread char cached[32];
    time_t now = time(NULL);
    struct tm tm;

    if (now == cached_sec)
        return cached;
    /* By hand rather than strftime: %a/%b follow the locale, HTTP wants English names. */
    if (gmtime_r(&now, &tm) == NULL || tm.tm_year + 1900 > 9999)
        return "Thu, 01 Jan 1970 00:00:00 GMT";
    snprintf(cached, sizeof cached, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    cached_sec = now;
    return cached;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    bool overflow;
    size_t n = parse_digits(s, &v, &overflow);
    if (n == 0 || s[n] != '\0' || overflow || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int parse_status(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    return strlen(s) == 3 ? parse_uint_span(s, 3, min, max, out) : -1;
}

int parse_duration_ms(const char *s, uint64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", 1000}};
    uint64_t v;
    bool overflow;
    size_t n = parse_digits(s, &v, &overflow);
    if (n == 0)
        return -1;
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(s + n, units[i].unit) == 0) {
            *out_ms = mul_sat(v, units[i].ms);
            return 0;
        }
    }
    return -1;
}

/* A duration as hours, minutes and seconds ("1h23m20s", "16m40s", "24h"); ms is whole seconds. */
static const char *duration_hms(uint64_t ms, char *buf, size_t size)
{
    uint64_t s = ms / 1000, h = s / 3600, m = s / 60 % 60;
    size_t n = 0;
    buf[0] = '\0';
    if (h)
        n += (size_t)snprintf(buf + n, size - n, "%lluh", (unsigned long long)h);
    if (m && n < size)
        n += (size_t)snprintf(buf + n, size - n, "%llum", (unsigned long long)m);
    if ((s % 60 || n == 0) && n < size)
        snprintf(buf + n, size - n, "%llus", (unsigned long long)(s % 60));
    return buf;
}

const char *duration_bare_note(const char *s, size_t len, char *buf, size_t size)
{
    uint64_t v;
    char hms[32];
    if (len == 0 || len > 20 || parse_uint_span(s, len, 1000, UINT64_MAX, &v) != 0)
        return NULL;
    snprintf(buf, size, "%.*s is %llu s (%s)", (int)len, s, (unsigned long long)v,
             duration_hms(mul_sat(v, 1000), hms, sizeof(hms)));
    return buf;
}

int parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;
    bool overflow;
    size_t n = parse_digits(s, &v, &overflow);
    if (n == 0)
        return -1;
    const char *u = s + n;
    if (*u) {
        switch (tolower((unsigned char)*u)) {
        case 'k': mult = 1ull << 10; break;
        case 'm': mult = 1ull << 20; break;
        case 'g': mult = 1ull << 30; break;
        case 't': mult = 1ull << 40; break;
        default: return -1;
        }
        if (u[1] != '\0')
            return -1;
    }
    *out = mul_sat(v, mult);
    return 0;
}

int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

bool name_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

bool span_ieq(const char *p, size_t n, const char *s)
{
    return strlen(s) == n && strncasecmp(p, s, n) == 0;
}

int split_host_port(const char *s, char *host, size_t hostsz, uint16_t *port, const char **why)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    /* A URL (an nginx proxy_pass habit) would otherwise read as a bad port or a bare IPv6. */
    if (strchr(s, '/')) {
        *why = "expected host:port, not a URL (no scheme:// and no /path)";
        return -1;
    }
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') {
            *why = "expected [ipv6]:port";
            return -1;
        }
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
        /* Brackets hold an IPv6 literal only: "[example.com]:80" is not a name. */
        if (hlen && (!memchr(h, ':', hlen) || strspn(h, "0123456789abcdefABCDEF:.") < hlen)) {
            *why = "expected [ipv6]:port";
            return -1;
        }
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            *why = "expected host:port";
            return -1;
        }
        if (memchr(s, ':', (size_t)(colon - s))) {
            *why = "IPv6 addresses need brackets: [::1]:port";
            return -1;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostsz) {
        *why = hlen == 0 ? "empty host" : "host name too long";
        return -1;
    }
    uint64_t p;
    if (parse_uint(colon + 1, 1, 65535, &p) != 0) {
        *why = "port must be 1-65535";
        return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':')) {
            *why = "invalid character in host";
            return -1;
        }
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int numeric_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *sa,
                     socklen_t *salen)
{
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *salen = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *salen = sizeof(*v6);
        return 0;
    }
    return -1;
}

void ipv4_str(const void *addr, char *buf)
{
    const unsigned char *b = addr;
    char *p = buf;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

/* Writes "ip:port" ("[ip]:port" for IPv6), or the ip alone without with_port, and a NUL into
 * out, which has room for n + 9 bytes. */
static void ip_port_put(char *out, const char *ip, size_t n, bool v6, bool with_port,
                        unsigned port)
{
    char *p = out;
    if (with_port && v6)
        *p++ = '[';
    memcpy(p, ip, n);
    p += n;
    if (with_port) {
        if (v6)
            *p++ = ']';
        *p++ = ':';
        char digits[8];
        int k = 0;
        do
            digits[k++] = (char)('0' + port % 10);
        while ((port /= 10) != 0);
        while (k)
            *p++ = digits[--k];
    }
    *p = '\0';
}

const char *ip_port_str(const char *ip, unsigned port, char *buf, size_t bufsz)
{
    /* By hand: once per access-log line, where snprintf cost ~1,000 instructions. */
    size_t n = strlen(ip);
    if (bufsz < n + 10) { /* brackets, colon, 5 digits, NUL: never for a real address */
        snprintf(buf, bufsz, "%s", ip);
        return buf;
    }
    ip_port_put(buf, ip, n, memchr(ip, ':', n) != NULL, port != 0, port);
    return buf;
}

size_t utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

size_t str_copy(char *dst, size_t size, const char *src)
{
    if (size == 0)
        return 0;
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

const char *name_without_root_dot(const char *name, char *buf, size_t size)
{
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '.')
        len--;
    if (len >= size)
        return NULL;
    memcpy(buf, name, len);
    buf[len] = '\0';
    return buf;
}

uint16_t peer_ip_str(const struct sockaddr *sa, char *buf)
{
    memcpy(buf, "?", 2);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        ipv4_str(&v4->sin_addr, buf);
        return ntohs(v4->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
            ipv4_str(&v6->sin6_addr.s6_addr[12], buf);
        else
            inet_ntop(AF_INET6, &v6->sin6_addr, buf, INET6_ADDRSTRLEN);
        return ntohs(v6->sin6_port);
    }
    return 0;
}

char *sockaddr_str(const struct sockaddr *sa, char *buf, size_t bufsz)
{
    /* By hand: once per origin connection, and once per request when the origin refuses, where
     * inet_ntop's sprintf and snprintf cost ~2,800 instructions. */
    char ip[INET6_ADDRSTRLEN] = "?";
    char tmp[INET6_ADDRSTRLEN + 8]; /* brackets, colon, 5 digits, NUL */
    unsigned port;
    bool v6 = sa->sa_family == AF_INET6;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        ipv4_str(&in4->sin_addr, ip);
        port = ntohs(in4->sin_port);
    } else if (v6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
    } else {
        snprintf(buf, bufsz, "unix");
        return buf;
    }
    ip_port_put(tmp, ip, strlen(ip), v6, true, port);
    str_copy(buf, bufsz, tmp);
    return buf;
}

size_t host_name_len(const char *host, size_t len)
{
    if (len && host[0] == '[') { /* [v6]:port: the brackets stay, the port goes */
        const char *end = memchr(host, ']', len);
        len = end ? (size_t)(end - host) + 1 : len;
    } else {
        const char *colon = memchr(host, ':', len);
        if (colon)
            len = (size_t)(colon - host);
    }
    while (len > 0 && host[len - 1] == '.') /* "example.com." is "example.com" */
        len--;
    return len;
}

size_t host_key(const char *host, size_t len, char *buf, size_t bufsz)
{
    len = host_name_len(host, len);
    if (len >= bufsz)
        return 0;
    for (size_t n = 0; n < len; n++)
        buf[n] = (char)tolower((unsigned char)host[n]);
    buf[len] = '\0';
    return len;
}

size_t buf_appendf(char *buf, size_t size, size_t len, const char *fmt, ...)
{
    if (len >= size)
        return len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return len;
    len += (size_t)n;
    return len < size ? len : size - 1;
}

struct timeval tv_from_ms(uint64_t ms)
{
    return tv_from_us(ms * 1000);
}

struct timeval tv_from_us(uint64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return tv;
}

bool dir_takes_files(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return true;
    bool ok = faccessat(AT_FDCWD, dirname(copy), W_OK | X_OK, AT_EACCESS) == 0;
    free(copy);
    return ok;
}

int abstract_lock(const char *name)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    if (len > sizeof(un.sun_path) - 1) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(un.sun_path + 1, name, len); /* sun_path[0] stays '\0': an abstract name */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
    if (bind(fd, (struct sockaddr *)&un, salen) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}
