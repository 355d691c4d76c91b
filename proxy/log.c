/*
 * log.c — error log and access log. See log.h.
 *
 * Access lines are logfmt (key=value, values with spaces quoted) so they are greppable and
 * machine-readable at once; each line is formatted in a stack buffer and written with one
 * write(2), which keeps lines from different workers whole (O_APPEND).
 */
#include "portico/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "portico/util.h"

/* The access log is always our own descriptor, so that a reload can swap the file under the
 * writers with one dup3() — no thread ever writes to a closed or reused descriptor. */
static _Atomic int access_fd = -1;
static _Atomic bool access_on; /* set (release) after access_fd: a reader that sees it on
                                * (acquire) sees the descriptor too */

int log_open(const char *access_log)
{
    if (!access_log || strcmp(access_log, "off") == 0) {
        atomic_store(&access_on, false);
        return 0;
    }
    int fd;
    if (strcmp(access_log, "stderr") == 0)
        fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    else if (strcmp(access_log, "stdout") == 0)
        fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        fd = open(access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (atomic_load(&access_fd) < 0) {
        atomic_store(&access_fd, fd);
    } else {
        dup3(fd, atomic_load(&access_fd), O_CLOEXEC);
        close(fd);
    }
    atomic_store_explicit(&access_on, true, memory_order_release);
    return 0;
}

void log_close(void)
{
    atomic_store(&access_on, false);
    int fd = atomic_exchange(&access_fd, -1);
    if (fd >= 0)
        close(fd);
}

bool log_enabled(void)
{
    return atomic_load_explicit(&access_on, memory_order_acquire);
}

static size_t timestamp(char *buf, size_t size)
{
    uint64_t ms = wall_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    return buf_appendf(buf, size, n, ".%03uZ", (unsigned)(ms % 1000));
}

/* Appends key="value" with quotes and backslashes escaped and control bytes dropped; the target
 * comes from the client, so nothing in it may forge a second log line. */
static size_t append_quoted(char *buf, size_t size, size_t len, const char *key, const char *v,
                            size_t vlen)
{
    len = buf_appendf(buf, size, len, " %s=\"", key);
    for (size_t i = 0; i < vlen && len + 3 < size; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f)
            continue;
        if (c == '"' || c == '\\')
            buf[len++] = '\\';
        buf[len++] = (char)c;
    }
    return buf_appendf(buf, size, len, "\"");
}

void log_access(const struct access_record *r)
{
    if (!log_enabled())
        return;
    char line[4096];
    size_t n = timestamp(line, sizeof(line));
    n = buf_appendf(line, sizeof(line), n, " id=%s client=%s", r->request_id ? r->request_id : "-",
                    r->client ? r->client : "-");
    n = append_quoted(line, sizeof(line), n, "method", r->method ? r->method : "",
                      r->method ? r->method_len : 0);
    n = append_quoted(line, sizeof(line), n, "target", r->target ? r->target : "",
                      r->target ? MIN(r->target_len, 1024) : 0);
    n = buf_appendf(line, sizeof(line), n, " proto=HTTP/1.%d status=%d bytes_out=%llu bytes_in=%llu"
                    " dur_ms=%.1f", r->minor, r->status, (unsigned long long)r->bytes_out,
                    (unsigned long long)r->bytes_in, r->duration_ms);
    if (r->route)
        n = buf_appendf(line, sizeof(line), n, " route=%s upstream=%s", r->route,
                        r->upstream ? r->upstream : "-");
    if (r->origin)
        n = buf_appendf(line, sizeof(line), n, " origin=%s reused=%s%s", r->origin,
                        r->reused ? "yes" : "no", r->retried ? " retried=yes" : "");
    if (r->failure != FAIL_NONE) {
        n = buf_appendf(line, sizeof(line), n, " failure=%s phase=%s", failure_name(r->failure),
                        phase_name(r->phase));
        if (r->limit_ms)
            n = buf_appendf(line, sizeof(line), n, " limit_ms=%llu",
                            (unsigned long long)r->limit_ms);
        if (r->aborted)
            n = buf_appendf(line, sizeof(line), n, " aborted=after_head");
    }
    if (r->detail)
        n = append_quoted(line, sizeof(line), n, "detail", r->detail, strlen(r->detail));
    if (r->interim)
        n = buf_appendf(line, sizeof(line), n, " interim=%s", r->interim);
    if (r->timing && *r->timing)
        n = buf_appendf(line, sizeof(line), n, " timing=%s", r->timing);
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(atomic_load_explicit(&access_fd, memory_order_relaxed), line, n);
    (void)w; /* a full disk must not stop the proxy */
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
    int saved = errno;
    char line[2048];
    size_t n = timestamp(line, sizeof(line));
    n = buf_appendf(line, sizeof(line), n, " [%s] ", level);
    int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (k > 0)
        n = MIN(n + (size_t)k, sizeof(line) - 2);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
    errno = saved;
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("info", fmt, ap);
    va_end(ap);
}
