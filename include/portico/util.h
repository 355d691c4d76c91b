/*
 * util.h — small helpers shared by every module: clocks, strict number parsing, strings.
 */
#ifndef PORTICO_UTIL_H
#define PORTICO_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Monotonic clock in microseconds: all phase timings and timers use it. */
uint64_t now_us(void);

/* The time (now_us) at which the event being handled on this thread was dispatched, or now_us()
 * outside one. For deadlines and phase marks: a small request takes ~15 of them, a clock read
 * costs ~25 ns in a VM, and the few µs an event takes to handle matter to none of them. */
uint64_t event_now_us(void);

/* Bracket the handling of one event (nestable; sock.c marks every socket event and timer): the
 * outermost begin reads the clock. */
void event_begin(void);
void event_end(void);

/* Wall clock in milliseconds since the epoch (log timestamps). */
uint64_t wall_ms(void);

/* Parses a duration: "250ms", "2s", "1m", "1h", or a bare number of seconds ("30"), into
 * milliseconds. Returns 0, or -1 for anything else (sign, spaces, unknown unit). A duration too
 * long for 64 bits is UINT64_MAX, never a wrapped value: callers check it against their maximum. */
int parse_duration_ms(const char *s, uint64_t *out_ms);

/* A bare number of seconds of 1000 or more ("5000": HAProxy's milliseconds, 83 minutes here) in
 * [s, s + len): "5000 is 5000 s (1h23m20s)" into buf; NULL when s has a unit or is below 1000. */
const char *duration_bare_note(const char *s, size_t len, char *buf, size_t size);

/* Parses a size: "512", "16k", "8m", "1g", "1t" (powers of 1024, case-insensitive). 0 or -1;
 * saturates at UINT64_MAX like parse_duration_ms. */
int parse_size(const char *s, uint64_t *out);

/* Parses a boolean: on/off, yes/no, true/false, 1/0. 0 or -1. */
int parse_bool(const char *s, bool *out);

/* Parses a decimal integer in [min, max], no sign, no spaces. 0 or -1. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses the decimal span s[0..len) in [min, max]: digits only, no overflow. 0 or -1. */
int parse_uint_span(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a status code in [min, max] written as one: exactly three digits ("0599" is a typo,
 * not 599). 0 or -1. */
int parse_status(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* The current time as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") for Date fields,
 * formatted at most once per second per thread (the string is the thread's own). */
const char *http_date_now(void);

/* A name of a section or a fault rule: letters, digits, '-', '_' or '.', not empty. */
bool name_valid(const char *s);

/* Case-insensitive equality of a span with a NUL-terminated string. */
bool span_ieq(const char *p, size_t n, const char *s);

/* Splits "host:port", "[v6]:port" or "v4:port" into host (without brackets) and port. Returns 0,
 * or -1 with a static reason in *why. host is written NUL-terminated into host[hostsz]. */
int split_host_port(const char *s, char *host, size_t hostsz, uint16_t *port, const char **why);

/* Fills sa with a numeric IPv4/IPv6 host and port. Returns 0, or -1 when host is not numeric. */
int numeric_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *sa,
                     socklen_t *salen);

/* An IPv4 address (4 bytes, network order) as dotted decimal into buf (at least 16 bytes), as
 * inet_ntop writes it, without its sprintf (~1,600 instructions, 6% of a connection). */
void ipv4_str(const void *addr, char *buf);

/* A client's address as its ip text into buf (at least 46 bytes: INET6_ADDRSTRLEN), "?" for
 * another family; returns its port. An IPv4 client of a dual-stack listener ("[::]", which
 * takes IPv4 too unless net.ipv6.bindv6only is set) comes as "::ffff:10.0.0.9" and is written
 * "10.0.0.9": the address X-Forwarded-For, the access log and CIDR rules mean. */
uint16_t peer_ip_str(const struct sockaddr *sa, char *buf);

/* "127.0.0.1:3000" or "[::1]:3000" from an ip text and a port (0: the ip alone) into buf.
 * Returns buf. */
const char *ip_port_str(const char *ip, unsigned port, char *buf, size_t bufsz);

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), or 0 when ill-formed
 * (overlong, surrogate, above U+10FFFF, truncated). p is NUL-terminated, so the continuation
 * checks stop at the terminator. */
size_t utf8_seq_len(const unsigned char *p);

/* Copies src into dst[size] cut to size - 1 bytes and NUL-terminated, as snprintf("%s") does
 * without parsing a format (per request on error paths). Returns the bytes copied. */
size_t str_copy(char *dst, size_t size, const char *src);

/* name without the final dot of an absolute domain name ("api.example." -> "api.example"; the
 * same name for DNS, SNI and the hosts file) into buf of size bytes; NULL when it does not fit. */
const char *name_without_root_dot(const char *name, char *buf, size_t size);

/* Formats an address as "127.0.0.1:3000" or "[::1]:3000" into buf. Returns buf. */
char *sockaddr_str(const struct sockaddr *sa, char *buf, size_t bufsz);

/* A lock that dies with the process: an abstract unix socket bound to name (no file; the kernel
 * lets one socket per network namespace have it), held until its descriptor closes. Its fd, or
 * -1 with errno (EADDRINUSE: another process holds it). */
int abstract_lock(const char *name);

/* Whether this process (its effective ids) can create and remove files in the directory of path
 * ("." for a bare name); true when that cannot be told (out of memory). */
bool dir_takes_files(const char *path);

/* The length of a Host value's name: without its port and trailing dots ("app.example.:8080" and
 * "[::1]:80" give the lengths of "app.example" and "[::1]"): what routes match, `$host` and
 * `hash $host` read, in the client's case. */
size_t host_name_len(const char *host, size_t len);

/* A Host value as a lookup key: lowercase, without port or trailing dot ("App.Example.:8080" →
 * "app.example"; "[::1]:80" → "[::1]"), NUL-terminated into buf. Returns its length, 0 when
 * empty or too long for buf. */
size_t host_key(const char *host, size_t len, char *buf, size_t bufsz);

/* Appends into a fixed buffer (snprintf semantics, never overflows); returns new length. */
size_t buf_appendf(char *buf, size_t size, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A duration as a struct timeval for libevent timers. */
struct timeval tv_from_ms(uint64_t ms);
struct timeval tv_from_us(uint64_t us);

/* calloc(1, size), for the small objects made per request, stream or connection: glibc's calloc
 * does not use the per-thread cache (tcache) that malloc and free share, so each one went to the
 * arena while its free went to the cache (~300 instructions a pair for a fault's 240 bytes).
 * NULL when out of memory. */
static inline void *zalloc(size_t size)
{
    void *p = malloc(size);
    /* GCC turns malloc and a memset of zeros into calloc, the call this avoids: the empty asm
     * hides where p came from. */
    __asm__("" : "+r"(p));
    if (p)
        memset(p, 0, size);
    return p;
}

#endif
