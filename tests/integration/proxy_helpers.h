/*
 * proxy_helpers.h — small helpers shared by the forwarding, parsing, streaming and CLI
 * integration tests (issue 2): start Portico in front of one origin, run curl, and check the
 * shape of a response Portico wrote itself. Header-only; every helper is static and marked
 * unused so that each test binary takes what it needs (-Wunused-function stays on).
 *
 * Include after <cmocka.h>.
 */
#ifndef PORTICO_PROXY_HELPERS_H
#define PORTICO_PROXY_HELPERS_H

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/certs.h"
#include "../support/fake_origin.h"
#include "../support/harness.h"
#include "../support/json.h"
#include "../support/raw_client.h"
#include "../support/testutil.h"

#define PX_HELPER static __attribute__((unused))

/* A socket listening on 127.0.0.1 at a port the kernel chose, its port in *port: an origin
 * the test plays itself. */
PX_HELPER int px_listen(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Built with ASan or ThreadSanitizer (SAN=thread): sizes shrink, time bounds widen and RSS
 * bounds are only printed (each sanitizer's allocator is its own, ASan's keeps freed memory). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Built with ThreadSanitizer (make tsan): 5-15x slower where ASan is ~2x, so a bound on how late
 * the scheduler runs a thread widens further (make test never runs this build). */
#if defined(__SANITIZE_THREAD__)
#define SANITIZED_THREAD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SANITIZED_THREAD 1
#endif
#endif
#ifndef SANITIZED_THREAD
#define SANITIZED_THREAD 0
#endif
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
#define PX_IO_MS 5000 /* bound of a read that must succeed; reached only when something broke */

/* A process's descriptors: all of them, its pipes (each splice has one while it runs), and
 * those open on one path (px_count_fds_on). */
struct px_fds {
    int all;
    int pipes;
    int on;
};

PX_HELPER struct px_fds px_count_fds_on(pid_t pid, const char *target)
{
    char path[64], link[640];
    struct px_fds n = {0, 0, 0};
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char fd_path[320];
        snprintf(fd_path, sizeof(fd_path), "%s/%s", path, e->d_name);
        ssize_t len = readlink(fd_path, link, sizeof(link) - 1);
        if (len < 0)
            continue; /* closed meanwhile */
        link[len] = '\0';
        n.all++;
        n.pipes += strncmp(link, "pipe:", 5) == 0;
        n.on += target && strcmp(link, target) == 0;
    }
    closedir(d);
    return n;
}

PX_HELPER struct px_fds px_count_fds(pid_t pid)
{
    return px_count_fds_on(pid, NULL);
}

/* Waits (bounded) until the process holds exactly the descriptors of base again, and returns
 * what it holds: connections that ended are closed from Portico's loop, a moment after the
 * client saw the end. Sampling /proc, as nothing else tells when a close happened. */
PX_HELPER struct px_fds px_wait_fds(pid_t pid, struct px_fds base)
{
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    struct px_fds now = px_count_fds(pid);
    while ((now.all != base.all || now.pipes != base.pipes) && tu_now_ms() < deadline) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
        now = px_count_fds(pid);
    }
    return now;
}

/* How long (ms) a client that connects to port and sends nothing waits for its 408 (a
 * deferred accept holds it a second first); fails the test when another answer, or none, comes. */
PX_HELPER int64_t px_silent_client_408_ms(uint16_t port)
{
    int64_t t0 = tu_now_ms();
    struct raw_conn *c = raw_connect(port, PX_IO_MS);
    assert_non_null(c);
    struct raw_response r;
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    int64_t ms = tu_now_ms() - t0;
    assert_int_equal(r.status, 408);
    raw_response_free(&r);
    raw_close(c);
    return ms;
}

/* Starts Portico with one worker, an access log in the temp dir, `proxy_extra` lines appended
 * to [proxy] and `rest` (upstreams and routes, printf-formatted) after it. Fails the test when
 * it does not start. */
PX_HELPER struct harness *px_start(const char *proxy_extra, const char *rest_fmt, ...)
    __attribute__((format(printf, 2, 3)));

PX_HELPER struct harness *px_start(const char *proxy_extra, const char *rest_fmt, ...)
{
    char rest[4096];
    va_list ap;
    va_start(ap, rest_fmt);
    vsnprintf(rest, sizeof(rest), rest_fmt, ap);
    va_end(ap);

    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{port:listen}}\n"
                                          "workers = 1\n"
                                          "access_log = {{dir}}/access.log\naccess_log_format = text\n"
                                          "%s\n%s",
                                          proxy_extra ? proxy_extra : "", rest),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* px_start's Portico on a TLS listener ({{port:tls}}, the test CA's localhost certificate) that
 * speaks HTTP/2 to curl --http2: `rest` (printf-formatted) follows [proxy]. */
PX_HELPER struct harness *px_start_tls(const char *rest_fmt, ...)
    __attribute__((format(printf, 1, 2)));

PX_HELPER struct harness *px_start_tls(const char *rest_fmt, ...)
{
    char rest[4096];
    va_list ap;
    va_start(ap, rest_fmt);
    vsnprintf(rest, sizeof(rest), rest_fmt, ap);
    va_end(ap);
    const struct test_certs *certs = certs_get();
    assert_non_null(certs);
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:tls}} tls\n"
                                          "workers = 1\ntls_cert = %s\ntls_key = %s\n"
                                          "access_log = {{dir}}/access.log\n"
                                          "access_log_format = text\n%s",
                                          certs->server_cert, certs->server_key, rest),
                     0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    return h;
}

/* Portico in front of one origin on 127.0.0.1:port, no [route]: everything goes there. */
PX_HELPER struct harness *px_start_origin(uint16_t port, const char *proxy_extra)
{
    return px_start(proxy_extra, "[upstream u]\norigin = 127.0.0.1:%u\n", port);
}

/* The same, with an origin connection reused at once by whichever request comes next
 * (settle_time = 0): for tests about pooling itself, not about stray origin bytes. */
PX_HELPER struct harness *px_start_origin_pooled(uint16_t port, const char *proxy_extra)
{
    return px_start(proxy_extra, "[upstream u]\norigin = 127.0.0.1:%u\nsettle_time = 0\n", port);
}

/* The line of <dir>/access.log that contains needle (waited for, bounded), malloc'd without
 * its newline; fails the test when none comes. */
PX_HELPER char *px_log_line(struct harness *h, const char *needle)
{
    char *line = harness_file_line(h, "access.log", needle, PX_IO_MS);
    if (!line)
        fail_msg("no access-log line with %s", needle);
    return line;
}

/* An origin of that kind (fake_origin_start_kind), or the test fails naming the kind. */
PX_HELPER struct fake_origin *px_origin(enum fo_kind kind)
{
    struct fake_origin *o = fake_origin_start_kind(kind);
    if (!o)
        fail_msg("the fake origin %s did not start", fake_origin_kind_name(kind));
    return o;
}

/* fake_origin_start(opts), or the test fails. */
PX_HELPER struct fake_origin *px_origin_start(const struct fake_origin_opts *opts)
{
    struct fake_origin *o = fake_origin_start(opts);
    if (!o)
        fail_msg("the fake origin %s did not start", fake_origin_kind_name(opts->kind));
    return o;
}

/* An origin that plays the script pick chooses for each request (FO_SCRIPT), or the test fails. */
PX_HELPER struct fake_origin *px_origin_pick(const struct fo_step *(*pick)(
    const struct fo_request_info *req, void *arg))
{
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick};
    return px_origin_start(&opts);
}

/* Fails unless the access-log line that contains needle holds every text of the NULL-ended
 * list; the message names the first text missing and shows the line. */
PX_HELPER __attribute__((sentinel)) void px_log_line_has(struct harness *h, const char *needle,
                                                         ...)
{
    char *line = px_log_line(h, needle);
    va_list ap;
    va_start(ap, needle);
    for (const char *text; (text = va_arg(ap, const char *)) != NULL;)
        if (!tu_contains(line, text)) {
            va_end(ap);
            fail_msg("access line with %s lacks '%s': %s", needle, text, line);
        }
    va_end(ap);
    free(line);
}

/* The access-log line of request id rid (Portico takes ids of at most 40 characters). */
PX_HELPER char *px_log_line_for_id(struct harness *h, const char *rid)
{
    char needle[96];
    snprintf(needle, sizeof(needle), " id=%.80s ", rid);
    return px_log_line(h, needle);
}

/* A field of /proc/PID/status in kB ("VmHWM", "VmRSS"), -1 if unreadable. */
PX_HELPER long px_proc_kb(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *s = tu_read_file(path, NULL);
    if (!s)
        return -1;
    long kb = -1;
    const char *p = strstr(s, field);
    if (p)
        kb = strtol(p + strlen(field) + 1, NULL, 10);
    free(s);
    return kb;
}

/* pid's RSS once it stops growing (no growth past 256 kB for a second, 20 s at most), in kB. */
PX_HELPER long px_rss_settled(pid_t pid)
{
    int64_t deadline = tu_now_ms() + 20000, since = tu_now_ms();
    long last = px_proc_kb(pid, "VmRSS");
    while (tu_now_ms() < deadline && tu_now_ms() - since < 1000) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* sampling a figure, not synchronizing on it */
        long now = px_proc_kb(pid, "VmRSS");
        if (now > last + 256) {
            last = now;
            since = tu_now_ms();
        }
    }
    return last;
}

/* Which figure (a queue, mostly) of which sockets px_queues reads. */
enum px_queue {
    /* The send queues of the sockets whose local port is one of ports: Portico's side of its
     * client connections, bytes it wrote that the client has not acknowledged (what the kernel
     * holds for it; `ss -t`'s Send-Q, /proc/net/tcp's tx_queue). */
    PX_SEND_Q,
    /* The receive queues of the sockets whose remote port is one of ports: Portico's side of
     * its connections to an origin listening there, bytes the origin sent that Portico has not
     * read (`ss -t`'s Recv-Q). */
    PX_RECV_Q,
    /* Not a queue, of the same sockets: the receive window scale their SYN offered
     * (tcp_info's tcpi_rcv_wscale), which the kernel chooses from the receive buffer the socket
     * had at connect(): 1 for a 64 KiB SO_RCVBUF on loopback, 7-10 autotuned. */
    PX_RCV_WSCALE,
};

/* The figures (which) of the established TCP/IPv4 sockets of ports. Asked of the kernel's
 * sock_diag over netlink, which picks the established sockets itself: /proc/net/tcp lists the
 * TIME_WAIT ones too, 50,000 on a host after the churn tests, 55 ms per read. Returns how many
 * (at most max). */
/* A netlink socket that has asked sock_diag about TCP/IPv4 sockets: req (its family and
 * protocol are filled in here; its states, when none is set, the established ones), with flags
 * (NLM_F_DUMP for every socket). The caller reads the answer and closes it. */
PX_HELPER int px_diag_ask(struct inet_diag_req_v2 req, uint16_t flags)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    assert_true(fd >= 0);
    req.sdiag_family = AF_INET;
    req.sdiag_protocol = IPPROTO_TCP;
    if (!req.idiag_states)
        req.idiag_states = 1 << 1; /* TCP_ESTABLISHED */
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } ask = {
        .nlh = {.nlmsg_len = sizeof(ask), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | flags},
        .req = req,
    };
    assert_true(send(fd, &ask, sizeof(ask), 0) == (ssize_t)sizeof(ask));
    return fd;
}

/* Reads the answer to px_diag_ask on fd to its end, visit called for each socket in it (h its
 * message, for attributes after m), then closes fd. */
PX_HELPER void px_diag_read(int fd,
                            void (*visit)(const struct nlmsghdr *h,
                                          const struct inet_diag_msg *m, void *ctx),
                            void *ctx)
{
    for (bool done = false; !done;) {
        static char buf[32768];
        ssize_t len = recv(fd, buf, sizeof(buf), 0);
        assert_true(len > 0);
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len);
             h = NLMSG_NEXT(h, len)) {
            assert_true(h->nlmsg_type != NLMSG_ERROR);
            if ((done = h->nlmsg_type == NLMSG_DONE))
                break;
            visit(h, NLMSG_DATA(h), ctx);
        }
    }
    close(fd);
}

struct px_queues_ctx {
    enum px_queue which;
    const uint16_t *ports;
    int nports, n, max;
    long *q;
};

static void px_queues_visit(const struct nlmsghdr *h, const struct inet_diag_msg *m, void *ctx)
{
    struct px_queues_ctx *c = ctx;
    uint16_t port = ntohs(c->which == PX_SEND_Q ? m->id.idiag_sport : m->id.idiag_dport);
    long v = c->which == PX_SEND_Q ? (long)m->idiag_wqueue : (long)m->idiag_rqueue;
    int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
    for (const struct rtattr *a = (const struct rtattr *)(m + 1);
         c->which == PX_RCV_WSCALE && RTA_OK(a, alen); a = RTA_NEXT(a, alen))
        if (a->rta_type == INET_DIAG_INFO && RTA_PAYLOAD(a) >= 8)
            v = ((const struct tcp_info *)RTA_DATA(a))->tcpi_rcv_wscale;
    for (int i = 0; i < c->nports; i++)
        if (port == c->ports[i] && c->n < c->max)
            c->q[c->n++] = v;
}

PX_HELPER int px_queues(enum px_queue which, const uint16_t *ports, int nports, long *q, int max)
{
    int fd = px_diag_ask(
        (struct inet_diag_req_v2){
            .idiag_ext = which == PX_RCV_WSCALE ? 1 << (INET_DIAG_INFO - 1) : 0},
        NLM_F_DUMP);
    struct px_queues_ctx c = {which, ports, nports, 0, max, q};
    px_diag_read(fd, px_queues_visit, &c);
    return c.n;
}

struct px_diag_conn_ctx {
    uint16_t pport, cport;
    bool found;
    struct inet_diag_msg *out;
};

static void px_diag_conn_visit(const struct nlmsghdr *h, const struct inet_diag_msg *m, void *ctx)
{
    (void)h;
    struct px_diag_conn_ctx *c = ctx;
    if (ntohs(m->id.idiag_sport) == c->pport && ntohs(m->id.idiag_dport) == c->cport) {
        c->found = true;
        *c->out = *m;
    }
}

/* The socket of Portico's port pport connected to the client's port cport, in one of states (a
 * mask of TCP states, 0 for established), into *out; false when there is none. */
PX_HELPER bool px_diag_conn(uint32_t states, uint16_t pport, uint16_t cport,
                            struct inet_diag_msg *out)
{
    int fd = px_diag_ask(
        (struct inet_diag_req_v2){
            .idiag_states = states,
            .id = {.idiag_sport = htons(pport), .idiag_dport = htons(cport)}},
        NLM_F_DUMP);
    struct px_diag_conn_ctx c = {pport, cport, false, out};
    px_diag_read(fd, px_diag_conn_visit, &c);
    return c.found;
}

#define PX_MAX_QUEUES 64

/* Waits (bounded) until the queues of ports (px_queues) are n, none empty, and the same three
 * reads in a row 5 ms apart (their clients read nothing and the senders put in all the kernel
 * takes), or until one passes bound. Nothing tells when the kernel stopped taking bytes but
 * the figures themselves. Returns the largest; the smallest in *least, how many were seen in
 * *count. */
PX_HELPER long px_queues_settle(enum px_queue which, const uint16_t *ports, int nports, int n,
                                long bound, long *least, int *count)
{
    long q[PX_MAX_QUEUES], prev[PX_MAX_QUEUES] = {0}, most = 0;
    assert_true(n < PX_MAX_QUEUES);
    int same = 0, got = 0;
    *least = 0;
    for (int64_t end = tu_now_ms() + PX_IO_MS; tu_now_ms() < end && same < 3;) {
        got = px_queues(which, ports, nports, q, PX_MAX_QUEUES);
        most = 0, *least = got ? q[0] : 0;
        for (int i = 0; i < got; i++) {
            most = q[i] > most ? q[i] : most;
            *least = q[i] < *least ? q[i] : *least;
        }
        if (most > bound)
            break; /* past it already: no need to wait for the rest */
        bool settled = got == n && *least > 0 && memcmp(q, prev, sizeof(q[0]) * (size_t)got) == 0;
        same = settled ? same + 1 : 0;
        memcpy(prev, q, sizeof(q));
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    *count = got;
    return most;
}

/* CPU time (user + system, every thread) the process has used, in ms. Unlike wall-clock
 * latency, a loaded machine barely moves it: bounds on work are put on it. */
PX_HELPER long px_cpu_ms(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *stat = tu_read_file(path, NULL);
    assert_non_null(stat);
    const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    assert_non_null(p);
    /* after ")": state, then fields 4..13, then utime (14) and stime (15) */
    assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                            &stime),
                     2);
    free(stat);
    return (long)((utime + stime) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

/* Whether pid is a Portico run under valgrind (make valgrind): slower by tens of times, with
 * descriptor limits and signals of valgrind's own. */
PX_HELPER bool px_under_valgrind(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    char *comm = tu_read_file(path, NULL);
    bool valgrind = comm && strncmp(comm, "memcheck", 8) == 0;
    free(comm);
    return valgrind;
}

/* Whether pid's memory is Portico's own: not under a sanitizer (shadow memory, ASan's quarantine)
 * nor under valgrind (`make valgrind` runs Portico as memcheck, whose RSS is its own). */
PX_HELPER bool px_rss_is_portico(pid_t pid)
{
    return !SANITIZED && !px_under_valgrind(pid);
}

PX_HELPER uint16_t px_port(struct harness *h)
{
    return harness_port(h, "listen");
}

/* Stops Portico and checks it exited cleanly (0: no crash, no leak report under ASan). */
PX_HELPER void px_stop(struct harness *h)
{
    assert_int_equal(harness_stop(h), 0);
    harness_free(h);
}

/* A connection to 127.0.0.1:port, or the test fails. */
PX_HELPER struct raw_conn *px_connect_port(uint16_t port)
{
    struct raw_conn *c = raw_connect(port, PX_IO_MS);
    if (c == NULL)
        fail_msg("connect 127.0.0.1:%u: %s", port, raw_last_error());
    return c;
}

PX_HELPER struct raw_conn *px_connect(struct harness *h)
{
    return px_connect_port(px_port(h));
}

/* SIGSTOP, returning once every thread of portico has stopped (waitid: no polling). 0, or -1
 * when the signal or the wait failed or portico ended instead. */
PX_HELPER int px_sigstop(struct harness *h)
{
    siginfo_t si;
    if (harness_signal(h, SIGSTOP) != 0)
        return -1;
    memset(&si, 0, sizeof(si));
    /* WNOWAIT: the harness still reaps the child itself; WEXITED: a crash ends the wait too */
    if (waitid(P_PID, (id_t)harness_pid(h), &si, WSTOPPED | WEXITED | WNOWAIT) != 0)
        return -1;
    return si.si_code == CLD_STOPPED ? 0 : -1;
}

/* sock_diag's message on Portico's side of c (IPv4), with the extensions ext asks for (a mask
 * of 1 << (INET_DIAG_x - 1)), in a static buffer: *h its header. Asked for that one socket by its
 * addresses and ports, which the kernel looks up in its hash: a dump walks every socket of the
 * host (~5 ms a read with 26,000 in TIME_WAIT beside other tests). */
PX_HELPER struct inet_diag_msg *px_peer_diag(struct raw_conn *c, uint8_t ext,
                                             struct nlmsghdr **hp)
{
    struct sockaddr_in me, peer;
    socklen_t mlen = sizeof(me), plen = sizeof(peer);
    assert_int_equal(getsockname(raw_fd(c), (struct sockaddr *)&me, &mlen), 0);
    assert_int_equal(getpeername(raw_fd(c), (struct sockaddr *)&peer, &plen), 0);
    int fd = px_diag_ask(
        (struct inet_diag_req_v2){
            .idiag_ext = ext,
            .id = {.idiag_sport = peer.sin_port, .idiag_dport = me.sin_port,
                   .idiag_src = {peer.sin_addr.s_addr}, .idiag_dst = {me.sin_addr.s_addr},
                   .idiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE}}},
        0);
    static char buf[2048];
    ssize_t len = recv(fd, buf, sizeof(buf), 0);
    close(fd);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    assert_true(len > 0 && NLMSG_OK(h, (size_t)len) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY);
    *hp = h;
    return NLMSG_DATA(h);
}

/* Of Portico's side of c (IPv4): the bytes its TCP received from c, and in *queued those not
 * read yet. */
PX_HELPER uint64_t px_peer_received(struct raw_conn *c, long *queued)
{
    struct nlmsghdr *h;
    struct inet_diag_msg *m = px_peer_diag(c, 1 << (INET_DIAG_INFO - 1), &h);
    *queued = (long)m->idiag_rqueue;
    /* tcpi_bytes_received of the kernel's struct tcp_info (linux/tcp.h, which clashes with
     * glibc's netinet/tcp.h, whose copy stops before it): after 8 one-byte fields, 24 __u32
     * and 3 __u64 */
    enum { BYTES_RECEIVED_AT = 8 + 24 * 4 + 3 * 8 };
    int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
    for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == INET_DIAG_INFO && RTA_PAYLOAD(a) >= BYTES_RECEIVED_AT + 8) {
            uint64_t got;
            memcpy(&got, (const char *)RTA_DATA(a) + BYTES_RECEIVED_AT, sizeof(got));
            return got;
        }
    }
    fail_msg("no tcp_info for Portico's side of the connection");
    return 0;
}

/* Sends bytes and returns once Portico has read them: a read for each call, without waiting
 * for an answer (there is none to a head not complete). Every earlier byte on c must have been
 * sent by this too. A send() on loopback may return before the bytes reach Portico's socket
 * (a loaded host runs the softirq in ksoftirqd): "nothing queued" alone is not "read". */
PX_HELPER void px_send_read(struct raw_conn *c, const void *p, size_t n)
{
    long queued;
    uint64_t before = px_peer_received(c, &queued);
    assert_int_equal(raw_send(c, p, n), 0);
    int64_t deadline = tu_now_ms() + PX_IO_MS;
    while (px_peer_received(c, &queued) < before + n || queued != 0) {
        assert_true(tu_now_ms() < deadline);
        sched_yield(); /* Portico's turn, on a loaded host */
    }
}

/* The CPU (ms) Portico (pid) spends reading `reads` pieces of two bytes, one read each, after
 * `lead`, on a connection to port. */
PX_HELPER long px_cpu_of_pieces(uint16_t port, pid_t pid, const char *lead, size_t lead_len,
                                const char *piece, int reads)
{
    struct raw_conn *c = px_connect_port(port);
    px_send_read(c, lead, lead_len);
    long cpu0 = px_cpu_ms(pid);
    for (int i = 0; i < reads; i++)
        px_send_read(c, piece, 2);
    long cpu = px_cpu_ms(pid) - cpu0;
    raw_close(c);
    return cpu;
}

/* "http://127.0.0.1:PORT" + path into buf. */
PX_HELPER const char *px_url(struct harness *h, const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "http://127.0.0.1:%u%s", px_port(h), path);
    return buf;
}

/* Runs a command (curl) bounded by 20 s; asserts it exits 0 and returns its output in *res. */
PX_HELPER void px_run_ok(const char *const argv[], struct tu_cmd_result *res)
{
    int rc = tu_run_command(argv, 20000, res);
    if (rc != 0)
        fail_msg("%s exited %d: %s", argv[0], rc, res->err);
}

/* Runs h2load (argv) and fails unless all of its requests (the -n given, as text) succeeded. */
PX_HELPER void px_h2load_ok(const char *const argv[], const char *requests)
{
    struct tu_cmd_result r = {0};
    px_run_ok(argv, &r);
    char want[64];
    snprintf(want, sizeof(want), "%s succeeded, 0 failed, 0 errored", requests);
    if (!tu_contains(r.out, want))
        fail_msg("h2load:\n%s", r.out);
    tu_cmd_result_free(&r);
}

/* True when s starts with prefix (s may be NULL). */
PX_HELPER bool px_starts(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Number of occurrences of needle in hay. */
PX_HELPER unsigned px_count(const char *hay, const char *needle)
{
    unsigned n = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; p && (p = strstr(p, needle)) != NULL; p += nl)
        n++;
    return n;
}

/*
 * Checks a response Portico generated itself for a refused request: the status, a text/plain
 * body of exactly one line that contains `reason` (when not NULL), a Content-Length that matches
 * the body, `Connection: close`, and the connection closed afterwards.
 */
PX_HELPER void px_assert_refusal(struct raw_conn *c, const struct raw_response *r, int status,
                                 const char *reason)
{
    if (r->status != status)
        fail_msg("status %d, want %d; head:\n%s\nbody: %s", r->status, status,
                 r->head.text ? r->head.text : "(none)", r->body ? r->body : "");
    assert_int_equal(r->framing, RAW_LENGTH);
    const char *cl = raw_header(r, "Content-Length");
    assert_non_null(cl);
    assert_int_equal(strtoull(cl, NULL, 10), r->body_len);
    const char *ct = raw_header(r, "Content-Type");
    assert_non_null(ct);
    assert_true(strncmp(ct, "text/plain", 10) == 0);
    const char *conn = raw_header(r, "Connection");
    assert_non_null(conn);
    assert_string_equal(conn, "close");
    /* one line: a single newline, at the end */
    assert_true(r->body_len > 1);
    assert_int_equal(r->body[r->body_len - 1], '\n');
    assert_null(memchr(r->body, '\n', r->body_len - 1));
    char code[8];
    snprintf(code, sizeof(code), "%d ", status);
    assert_true(strncmp(r->body, code, strlen(code)) == 0);
    if (reason && !strstr(r->body, reason))
        fail_msg("body \"%s\" does not mention \"%s\"", r->body, reason);
    assert_int_equal(raw_wait_closed(c, PX_IO_MS), 1);
}

/*
 * Proves that an origin saw nothing before this point: sends a marker request through Portico
 * on a fresh connection, waits until the origin recorded it, and checks it is the origin's
 * only connection and only request. Connections are accepted in order, so anything Portico had
 * opened earlier would have been counted first.
 */
PX_HELPER void px_assert_origin_untouched(struct harness *h, struct fake_origin *o)
{
    struct raw_conn *c = px_connect(h);
    struct raw_response r;
    assert_int_equal(raw_send_str(c, "GET /marker HTTP/1.1\r\nHost: marker\r\n\r\n"), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    raw_response_free(&r);
    raw_close(c);
    assert_int_equal(fake_origin_requests(o), 1);
    assert_int_equal(fake_origin_connections(o), 1);
    char *head = fake_origin_request_head(o, 0);
    assert_non_null(head);
    assert_true(px_starts(head, "GET /marker HTTP/1.1\r\n"));
    free(head);
}

/* GET path on h's admin listener ("admin" port): the body of its 200, malloc'd. */
PX_HELPER char *px_admin_body(struct harness *h, const char *path)
{
    char req[128];
    struct raw_response r;
    struct raw_conn *c = px_connect_port(harness_port(h, "admin"));
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    assert_int_equal(raw_send_str(c, req), 0);
    assert_int_equal(raw_read_response(c, &r, PX_IO_MS), 0);
    assert_int_equal(r.status, 200);
    char *body = strdup(r.body);
    raw_response_free(&r);
    raw_close(c);
    return body;
}

/* /status's object for origin o of the first upstream (freed with *doc). */
PX_HELPER const struct tj *px_status_origin(struct harness *h, int o, struct tj **doc)
{
    char *text = px_admin_body(h, "/status"), err[128];
    *doc = tj_parse(text, err, sizeof(err));
    free(text);
    if (!*doc)
        fail_msg("/status is not JSON: %s", err);
    const struct tj *ups = tj_get(*doc, "upstreams");
    assert_true(ups && ups->n >= 1);
    const struct tj *origins = tj_get(ups->items[0], "origins");
    assert_true(origins && origins->n > (size_t)o);
    return origins->items[o];
}

/* The in-flight count /status shows for origin o of the first upstream. */
PX_HELPER int px_in_flight(struct harness *h, int o)
{
    struct tj *doc;
    double v = -1;
    assert_int_equal(tj_num(px_status_origin(h, o, &doc), "in_flight", &v), 0);
    tj_free(doc);
    return (int)v;
}

/* ---- `portico -t` of certificate lines (test_sni, test_dualcert, test_ocsp) ---- */

/* `portico -t` of a [proxy] with a TLS listen line (a free loopback port) and `lines` from line
 * 3 on (printf: %1$s is dir, the test certificates' directory), origin sim: its exit code, its
 * output in res (printed, the caller frees it). */
PX_HELPER int px_check_tls_lines(const char *lines_fmt, const char *dir, struct tu_cmd_result *res)
{
    char lines[4096];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(lines, sizeof(lines), lines_fmt, dir);
#pragma GCC diagnostic pop
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\n"
                                          "listen = 127.0.0.1:{{free_port:l}} tls\n"
                                          "%s"
                                          "[upstream app]\n"
                                          "origin = sim\n",
                                          lines),
                     0);
    int rc = harness_check_config(h, res);
    print_message("  rc %d\n%s%s", rc, res->out, res->err);
    harness_free(h);
    return rc;
}

/* A configuration `portico -t` refuses: why (the row's name), the lines of px_check_tls_lines,
 * and what its stderr must say (printf: %1$s the test certificates' directory), FILE:LINE
 * first. */
struct px_refusal_row {
    const char *why;
    const char *lines;
    const char *want;
};

/* Each row refused (exit 1) with its want on stderr. */
PX_HELPER void px_expect_refused(const struct px_refusal_row *rows, size_t n, const char *dir)
{
    for (size_t i = 0; i < n; i++) {
        struct tu_cmd_result res;
        char want[2048];
        print_message("%s\n", rows[i].why);
        int rc = px_check_tls_lines(rows[i].lines, dir, &res);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(want, sizeof(want), rows[i].want, dir);
#pragma GCC diagnostic pop
        bool said = tu_contains(res.err, want);
        tu_cmd_result_free(&res);
        assert_int_equal(rc, 1);
        if (!said)
            fail_msg("%s: no \"%s\"", rows[i].why, want);
    }
}

/* `portico -t` of a file whose [route] sections (routes) start at line 5, after a plain listener
 * and `[upstream u] origin = sim`: exit rc_want, and, unless message is NULL, "FILE:LINE:
 * message" said once on stderr or stdout (a refusal with rc 1, a warning with 0) and no other
 * message at that line. */
PX_HELPER void px_check_routes(const char *routes, int rc_want, int line, const char *message)
{
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h,
                                          "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                          "[upstream u]\norigin = sim\n%s\n",
                                          routes),
                     0);
    struct tu_cmd_result res = {0};
    int rc = harness_check_config(h, &res);
    if (rc != rc_want)
        fail_msg("%s: exit %d:\n%s%s", routes, rc, res.out, res.err);
    if (message) {
        char want[1200];
        snprintf(want, sizeof(want), "%s:%d: %s", harness_config_path(h), line, message);
        const char *said_in = tu_contains(res.err, want) ? res.err
                              : tu_contains(res.out, want) ? res.out
                                                           : NULL;
        if (!said_in)
            fail_msg("%s: no \"%s\" in:\n%s", routes, want, res.err);
        /* one message for the line, none of another made of it */
        snprintf(want, sizeof(want), "%s:%d: ", harness_config_path(h), line);
        int said = 0;
        for (const char *p = strstr(said_in, want); p; p = strstr(p + 1, want))
            said++;
        if (said != 1)
            fail_msg("%s: %d messages at line %d:\n%s", routes, said, line, said_in);
    }
    tu_cmd_result_free(&res);
    harness_free(h);
}

#endif
