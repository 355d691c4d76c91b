/*
 * sim.c — the built-in simulator origin's server: an HTTP/1.1 server on 127.0.0.1 in its own
 * thread and event_base. Requests are parsed with the project's strict parser (http1.h); each
 * connection is a small state machine driven by its bufferevent callbacks and one timer. What
 * each path answers is sim_endpoints.c (the two share sim_conn.h). Every response body is
 * either tiny or streamed with back-pressure, so the memory of a connection is bounded by the
 * watermarks below whatever the client asks for. Every status line goes through h1out.
 */
#include "portico/sim.h"

#include "portico/config.h"
#include "portico/evbase.h"
#include "portico/evmem.h"
#include "portico/h1out.h"
#include "portico/http1.h"
#include "portico/sim_conn.h"
#include "portico/status.h"
#include "portico/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

/* Bytes a forwarded head may have beyond twice the client's (max_header_size): the fields
 * Portico adds that copy nothing of the client's (X-Forwarded-Proto, traceparent, Via, the
 * address it appends to X-Forwarded-For, a Host for HTTP/1.0), a few hundred bytes. */
#define SIM_HEAD_ADDED 4096
#define SIM_BLOCK 16384                /* body pattern block; a multiple of the 64-byte line */
#define SIM_PIECE (SIM_BLOCK - 64)     /* most body bytes added at once: fits from any phase */
#define SIM_OUT_LOW 16384              /* refill / resume reading once output drains to this */
#define SIM_OUT_HIGH 65536             /* stop producing once output is above this */
#define SIM_IN_HIGH 65536              /* libevent stops reading the socket above this */
/* Bytes the kernel may hold unsent for a connection before it stops being writable
 * (TCP_NOTSENT_LOWAT). Without it a client that stops reading left its socket writable until
 * the send buffer had autotuned towards tcp_wmem's max (4 MiB; 2.7 MB an unread download on
 * loopback): 999 of them took the host's TCP memory past its pressure threshold (1.6 GB) while
 * the one thread wrote 64 KiB to each a pass, and for 2 s every other request waited 0.3-0.5 s
 * behind those passes to be accepted and answered. Bytes in flight are not counted, so
 * autotuning still serves a fast reader: a 1 GiB download keeps its throughput. */
#define SIM_NOTSENT_LOWAT 65536
#define SIM_LINGER_MS 2000             /* how long a closing connection drains the client */
#define SIM_DRIP_TICK_MS 10            /* a paced body (/drip) sends at most one piece a tick */
#define SIM_ACCEPT_PAUSE_MS 100        /* accepts paused this long after accept() failed */
/* Connections the kernel queues before accept, as on Portico's own listeners (listener.c):
 * libevent's default (-1) is 128, and a burst past it had SYNs dropped, each retried by the
 * kernel after 1 s, a second the simulator added to requests that asked for none. */
#define SIM_BACKLOG 1024
/* How long a connection still waits on its timer after the client's EOF. A FIN does not say
 * whether the client half-closed and still reads or has gone (Portico closes an origin
 * connection this way when its client leaves); only a write would tell, and a delayed answer
 * writes nothing for up to SIM_MAX_MS. Answers due within this window are still given. */
#define SIM_EOF_WAIT_MS SIM_LINGER_MS

/* ---- connection state ---- */

static const char *const conn_state_names[] = {
    [CONN_HEAD] = "head",   [CONN_BODY] = "body",   [CONN_WAIT] = "wait",
    [CONN_BYTES] = "bytes", [CONN_ECHO] = "echo",   [CONN_HANG] = "hang",
    [CONN_FLUSH] = "flush", [CONN_LINGER] = "linger",
};

/* How long the simulator waits on its clients, in ms: the [proxy] client timeouts, so a
 * connection straight to it is held no longer than one to Portico's own listener. */
struct sim_timeouts {
    uint64_t header_ms;    /* client_header_timeout: a head not complete in time gets 408 */
    uint64_t body_ms;      /* client_body_timeout: a request body silent this long gets 408 */
    uint64_t send_ms;      /* client_send_timeout: a client not reading this long is dropped */
    uint64_t keepalive_ms; /* keepalive_timeout: idle between requests; 0: Connection: close */
};

static struct {
    pthread_mutex_t lock;            /* serializes sim_start, sim_stop and sim_port */
    pthread_t thread;
    struct event_base *base;         /* NULL when not running */
    struct evconnlistener *listener;
    struct event *stop;              /* activated by sim_stop from any thread */
    struct event *accept_resume;     /* re-enables the listener after a failed accept */
    bool accept_failing;             /* accept() failed since it last worked: said once */
    struct conn *conns;              /* every open connection (touched by the sim thread only) */
    uint16_t port;                   /* 0 when not running */
    bool debug;                      /* PORTICO_SIM_DEBUG set: log state changes and closes */
    struct sim_timeouts limits;      /* written by any thread (sim_set_timeouts), fields atomic */
    size_t head_max;                 /* atomic; 0: no configuration seen (sim_head_max) */
} sim = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    /* the [proxy] defaults (config.c), until a configuration says otherwise */
    .limits = { .header_ms = 10000, .body_ms = 60000, .send_ms = 60000, .keepalive_ms = 75000 },
};

/* Sets the timeouts of the connections accepted and the waits begun from now on (the newest
 * configuration's, at every reload); from any thread. */
static void sim_set_timeouts(const struct sim_timeouts *t)
{
    __atomic_store_n(&sim.limits.header_ms, t->header_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&sim.limits.body_ms, t->body_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&sim.limits.send_ms, t->send_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&sim.limits.keepalive_ms, t->keepalive_ms, __ATOMIC_RELAXED);
}

/* The longest request head taken (longer: 431): what Portico forwards of a head within
 * max_header_size (its Host copied into X-Forwarded-Host, SIM_HEAD_ADDED besides), for the
 * largest max_header_size of the configurations seen, as a draining generation still forwards
 * heads under its own; SIM_MAX_HEAD before any (the tests). A client straight to the port could
 * hold 2 MiB of head for client_header_timeout whatever the configuration: 200 such clients took
 * Portico's RSS from 22 MB to 260 MB (180 MB still held once they had gone). */
static size_t sim_head_max(void)
{
    size_t max = __atomic_load_n(&sim.head_max, __ATOMIC_RELAXED);
    return max ? max : SIM_MAX_HEAD;
}

/* Raises the head bound to what cfg's max_header_size needs (never lowers it). */
static void sim_take_head_max(const struct config *cfg)
{
    size_t want = 2 * (size_t)cfg->max_header_size + SIM_HEAD_ADDED;
    size_t had = __atomic_load_n(&sim.head_max, __ATOMIC_RELAXED);
    if (want > SIM_MAX_HEAD)
        want = SIM_MAX_HEAD;
    while (want > had && !__atomic_compare_exchange_n(&sim.head_max, &had, want, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* The most of a request head read before it is parsed: never linearize more than this. */
static size_t sim_pull_max(void)
{
    return 2 * sim_head_max();
}

/* One of the timeouts, as the newest configuration has it. */
static uint64_t limit_ms(const uint64_t *field)
{
    return __atomic_load_n(field, __ATOMIC_RELAXED);
}

/* Bodies of /bytes and /drip are this block, added by reference: streaming costs no copy and no
 * allocation beyond evbuffer chain headers. 64-byte lines, so a piece taken at the right phase
 * continues the pattern. */
static char sim_block[SIM_BLOCK];
static pthread_once_t sim_block_once = PTHREAD_ONCE_INIT;

static void sim_block_fill(void)
{
    static const char line[] = "portico-sim /bytes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n";
    _Static_assert(sizeof(line) - 1 == 64 && SIM_BLOCK % 64 == 0, "pattern must tile a block");
    for (size_t i = 0; i < SIM_BLOCK; i++)
        sim_block[i] = line[i % 64];
}

void sim_set_state(struct conn *c, enum conn_state s)
{
    if (sim.debug && c->state != s)
        fprintf(stderr, "sim: conn %d %s -> %s\n", (int)bufferevent_getfd(c->bev),
                conn_state_names[c->state], conn_state_names[s]);
    c->state = s;
}

struct evbuffer *sim_out(struct conn *c)
{
    return bufferevent_get_output(c->bev);
}

/* The one teardown: every connection ends here, with the reason it ended. */
static void conn_teardown(struct conn *c, const char *reason)
{
    if (sim.debug)
        fprintf(stderr, "sim: conn %d closed: %s\n", (int)bufferevent_getfd(c->bev), reason);
    if (c->prev)
        c->prev->next = c->next;
    else
        sim.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    event_free(c->timer);
    bufferevent_free(c->bev);
    free(c);
}

void sim_mark(struct timespec *t0)
{
    clock_gettime(CLOCK_MONOTONIC, t0);
}

uint64_t sim_elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(now.tv_sec - t0->tv_sec) * 1000000000 + (now.tv_nsec - t0->tv_nsec);
    return ns > 0 ? (uint64_t)ns / 1000000 : 0;
}

void sim_arm(struct conn *c, uint64_t ms)
{
    c->eof_cut = false;
    if (c->peer_eof) {
        uint64_t since = sim_elapsed_ms(&c->eof_t0);
        uint64_t left = since < SIM_EOF_WAIT_MS ? SIM_EOF_WAIT_MS - since : 0;
        if (ms > left) {
            ms = left;
            c->eof_cut = true;
        }
    }
    sim_mark(&c->armed_t0);
    c->armed_ms = ms;
    struct timeval tv = tv_from_ms(ms);
    evtimer_add(c->timer, &tv);
}

/* ---- responses ---- */

/* The head of every final response: Server, Date, then what h1out adds (Content-Type and
 * framing unless the status has no content, Connection as the request needs). Always HTTP/1.1
 * in the status line: it is the server's version, also towards 1.0 clients (RFC 9110 6.2). */
static void final_head(struct conn *c, struct h1out_head *h, char *fields, size_t cap, int code,
                       const char *ctype)
{
    snprintf(fields, cap, "Server: portico-sim\r\nDate: %s\r\n", http_date_now());
    *h = (struct h1out_head){
        .status = code,
        .fields = fields,
        .content_type = ctype,
        .connection = !c->req.keep_alive ? H1OUT_CONN_CLOSE
                      : c->req.minor == 0 ? H1OUT_CONN_KEEP_ALIVE
                                          : H1OUT_CONN_DEFAULT,
    };
}

int sim_put_head(struct conn *c, int code, const char *ctype, int64_t len)
{
    struct h1out_head h;
    char fields[96];
    final_head(c, &h, fields, sizeof(fields), code, ctype);
    if (h1out_head(sim_out(c), &h, len) < 0) {
        c->why = "out of memory";
        return -1;
    }
    return 0;
}

/* 1xx: never to HTTP/1.0 clients, which cannot tell them from the final response. */
int sim_put_interim(struct conn *c, int code)
{
    const struct h1out_head h = {
        .status = code,
        .fields = code == HTTP_EARLY_HINTS ? "Link: </sim/app.css>; rel=preload; as=style\r\n"
                                           : NULL,
    };
    if (c->req.minor == 0)
        return 0;
    if (h1out_head(sim_out(c), &h, 0) < 0) {
        c->why = "out of memory";
        return -1;
    }
    return 0;
}

int sim_finish(struct conn *c)
{
    /* a paced body may end on a write callback with its tick still pending: a stale tick must
     * not reach the next request's handler */
    evtimer_del(c->timer);
    c->head_wait = HEAD_WAIT_NONE; /* the wait for the next head starts from this answer */
    sim_set_state(c, c->req.keep_alive ? CONN_HEAD : CONN_FLUSH);
    return 0;
}

int sim_send_text(struct conn *c, int code, const char *fmt, ...)
{
    struct evbuffer *body = evbuffer_new();
    struct h1out_head h;
    char fields[96];
    va_list ap;
    int rc;
    if (!body) {
        c->why = "out of memory";
        return -1;
    }
    va_start(ap, fmt);
    rc = evbuffer_add_vprintf(body, fmt, ap);
    va_end(ap);
    final_head(c, &h, fields, sizeof(fields), code, "text/plain; charset=utf-8");
    if (rc < 0 || h1out_simple_buf(sim_out(c), &h, body,
                                   c->req.head ? H1OUT_PAYLOAD_OMIT : H1OUT_PAYLOAD_SEND) < 0) {
        evbuffer_free(body);
        c->why = "out of memory";
        return -1;
    }
    evbuffer_free(body);
    return sim_finish(c);
}

/* Refuses a message the parser or the semantic pass rejected. The request boundary is lost, so
 * the connection closes after the answer. */
static int send_error(struct conn *c, int code, const char *reason)
{
    c->req.keep_alive = false;
    return sim_send_text(c, code, "%d %s: %s\n", code, status_phrase(code), reason);
}

/* ---- the connection state machine. Steps return 0 when they made progress (run again), -2
 * when they wait for an event, -1 when the connection must be torn down (c->why says why). ---- */

/* A chunk of the echo could not be framed (out of memory): -1 as for broken framing, the
 * echo cut and the connection closed, never a chunk the client would misread. */
static int out_of_memory(struct conn *c)
{
    c->why = "out of memory";
    return -1;
}

/*
 * Reads one piece of request body: the data is dropped, or with copy set appended to the
 * output (re-chunked when the request was chunked). Returns 1 when the body is complete, 0 after
 * progress, -2 when more input is needed, -1 on invalid chunked framing.
 */
static int body_step(struct conn *c, bool copy)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct sim_request *r = &c->req;
    size_t avail = evbuffer_get_length(in);

    if (r->framing == H1_BODY_LENGTH) {
        if (r->body_left == 0) {
            r->framing = H1_BODY_NONE;
            return 1;
        }
        if (avail == 0)
            return -2;
        size_t n = avail < r->body_left ? avail : (size_t)r->body_left;
        if (!copy)
            evbuffer_drain(in, n);
        else if (evmem_move(in, out, n) != 0)
            return out_of_memory(c); /* a body short of its Content-Length: cut and closed */
        r->body_left -= n;
        return 0;
    }
    if (r->framing != H1_BODY_CHUNKED)
        return 1;
    if (avail == 0)
        return -2;
    if (r->chunked.data_left > 0) {
        size_t n = avail < r->chunked.data_left ? avail : (size_t)r->chunked.data_left;
        if (copy) { /* out of memory, a chunk without its size line or CRLF: cut and closed */
            if (evbuffer_add_printf(out, "%zx\r\n", n) < 0 || evmem_move(in, out, n) != 0)
                return out_of_memory(c);
            if (evbuffer_add(out, "\r\n", 2) != 0)
                return out_of_memory(c);
        } else {
            evbuffer_drain(in, n);
        }
        chunked_data_taken(&r->chunked, n);
        return 0;
    }
    /* framing is parsed in place, one evbuffer segment at a time: the decoder is incremental */
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
        v.iov_len = avail < 64 ? avail : 64;
        v.iov_base = evbuffer_pullup(in, (ev_ssize_t)v.iov_len);
    }
    size_t used = 0;
    enum chunked_rc rc = chunked_parse(&r->chunked, (const char *)v.iov_base, v.iov_len, &used);
    if (rc == CHUNKED_ERROR)
        return -1;
    evbuffer_drain(in, used); /* trailers are dropped: the echo has no trailer section */
    if (rc == CHUNKED_DONE) {
        r->framing = H1_BODY_NONE;
        return 1;
    }
    return 0;
}

static bool is_head(const struct h1_request *hr)
{
    return hr->method_id == METHOD_HEAD;
}

/* Resets c->req from a parsed head; the target is routed while its bytes are still valid. */
static void request_begin(struct conn *c, const struct h1_request *hr, const struct h1_info *info)
{
    struct sim_request *r = &c->req;
    memset(r, 0, sizeof(*r));
    r->head = is_head(hr);
    r->minor = hr->minor;
    /* after a half-close, requests already buffered are still answered; step_head closes once
     * the input runs dry */
    r->keep_alive = info->keep_alive && limit_ms(&sim.limits.keepalive_ms) > 0;
    r->framing = info->framing;
    r->body_left = info->framing == H1_BODY_LENGTH ? info->content_length : 0;
    chunked_init(&r->chunked, SIM_MAX_HEAD);
    sim_route(c, hr->target, hr->target_len);
}

/* Arms the deadline of the head awaited, once per kind of wait: more bytes of a head begun do
 * not push it back (slowloris), and a head begun gets client_header_timeout from its first byte,
 * as on Portico's listener. The idle wait counts from the last answer's being queued, and starts
 * again if that answer is still in the output when it ends (head_expired). */
static void head_wait(struct conn *c, enum head_wait w)
{
    if (c->head_wait == w)
        return;
    c->head_wait = w;
    sim_arm(c, limit_ms(w == HEAD_WAIT_IDLE ? &sim.limits.keepalive_ms : &sim.limits.header_ms));
}

/* The head's deadline passed: an idle keep-alive connection closes quietly, a client that owes
 * a head gets 408 (Portico's listener answers the same). */
static int head_expired(struct conn *c)
{
    if (c->head_wait == HEAD_WAIT_IDLE) {
        /* not idle while the last answer is still in our output (closing would drop its tail):
         * the wait starts again, and client_send_timeout watches a client that stopped */
        if (evbuffer_get_length(sim_out(c)) > 0) {
            sim_arm(c, limit_ms(&sim.limits.keepalive_ms));
            return 0;
        }
        c->why = "idle (keepalive_timeout)";
        return -1;
    }
    memset(&c->req, 0, sizeof(c->req)); /* the last request's HEAD or HTTP/1.0 is not this one's */
    c->req.minor = 1;
    return send_error(c, HTTP_REQUEST_TIMEOUT,
                      c->head_wait == HEAD_WAIT_FIRST
                          ? "no request within client_header_timeout"
                          : "request head not complete within client_header_timeout");
}

/* Empty lines before a request line are ignored (RFC 9112 2.2): they are dropped as they come,
 * counted against the head's bound (head_skipped), so that each one does not have all those
 * before it parsed again. */
static void skip_empty_lines(struct conn *c, struct evbuffer *in)
{
    while (c->head_skipped < sim_head_max()) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < 4096 ? avail : 4096;
        if (n < 2)
            return;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        size_t skip = 0;
        while (skip + 1 < n && p[skip] == '\r' && p[skip + 1] == '\n')
            skip += 2;
        evbuffer_drain(in, skip);
        c->head_skipped += skip;
        if (skip > 0) /* counted from the bytes left */
            c->head_scanned = c->head_parsed = 0;
        if (skip + 1 < n) /* a line that is not empty starts here */
            return;
    }
}

/* Whether parsing again can tell more than the last parse, which found the head incomplete in
 * head_parsed bytes: an empty line may have ended it since (the bytes after head_scanned are
 * searched), it has doubled (a bad byte, a line or a head too long is found then, all the parses
 * of a head together costing at most twice the last one), or it reached its bound (431).
 * Parsed again at every read, a 2 MB head trickled in 300-byte pieces straight to the simulator
 * had its thread parse for 1.8 s of the 4 s it took. */
static bool head_worth_parsing(struct conn *c, struct evbuffer *in, size_t avail, size_t max)
{
    struct evbuffer_ptr from;
    size_t back = c->head_scanned < 3 ? c->head_scanned : 3; /* an end split across reads */
    if (c->head_parsed == 0 || avail / 2 >= c->head_parsed || avail >= max ||
        evbuffer_ptr_set(in, &from, c->head_scanned - back, EVBUFFER_PTR_SET) < 0)
        return true;
    bool ended = evbuffer_search(in, "\r\n\r\n", 4, &from).pos >= 0;
    c->head_scanned = avail;
    return ended;
}

/* The head is not whole yet: wait for more (client_header_timeout from its first byte), or
 * close after the client's EOF. */
static int head_more(struct conn *c, size_t avail)
{
    if (c->peer_eof) {
        sim_set_state(c, CONN_FLUSH); /* half a head and then EOF: nothing to answer */
        return 0;
    }
    head_wait(c, HEAD_WAIT_HEAD);
    /* libevent stops reading at SIM_IN_HIGH: a longer head would never complete */
    if (avail >= SIM_IN_HIGH && !c->long_head) {
        c->long_head = true;
        bufferevent_setwatermark(c->bev, EV_READ, 0, sim_pull_max());
    }
    return -2;
}

static int step_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct h1_request hr;
    struct h1_info info;
    struct h1_error err;
    const char *buf;
    int n;

    /* a client that pipelines without reading gets no further answers until it reads */
    if (evbuffer_get_length(out) > SIM_OUT_HIGH)
        return -2;
    skip_empty_lines(c, in);
    size_t head_max = sim_head_max(), pull_max = sim_pull_max();
    if (c->head_skipped >= head_max) {
        c->head_skipped = 0;
        return send_error(c, HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large");
    }
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) {
        if (c->head_skipped > 0) /* empty lines only, so far: a head has begun */
            return head_more(c, avail);
        if (!c->peer_eof) {
            head_wait(c, c->head_wait == HEAD_WAIT_FIRST ? HEAD_WAIT_FIRST : HEAD_WAIT_IDLE);
            return -2;
        }
        sim_set_state(c, CONN_FLUSH);
        return 0;
    }
    if (!head_worth_parsing(c, in, avail, head_max - c->head_skipped))
        return head_more(c, avail);
    const struct h1_limits lim = { SIM_MAX_REQUEST_LINE, head_max - c->head_skipped };
    size_t want = avail < 4096 ? avail : 4096;
    /* linearize only as much as the head needs: usually the first segment, no copy */
    for (;;) {
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        n = h1_parse_forwarded_request(buf, want, &lim, &hr, &err);
        if (n != -2 || want == avail || want >= pull_max)
            break;
        want = want * 4 < pull_max ? want * 4 : pull_max;
        want = want < avail ? want : avail;
    }
    if (n == -2) {
        if (want >= pull_max)
            return send_error(c, HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large");
        c->head_scanned = c->head_parsed = want;
        return head_more(c, avail);
    }
    c->head_scanned = c->head_parsed = 0;
    c->head_skipped = 0;
    if (c->long_head) { /* the head is whole: bodies are read within the usual bound again */
        c->long_head = false;
        bufferevent_setwatermark(c->bev, EV_READ, 0, SIM_IN_HIGH);
    }
    evtimer_del(c->timer); /* the head is whole: its deadline is over */
    c->head_wait = HEAD_WAIT_NONE;
    memset(&c->req, 0, sizeof(c->req));
    c->req.minor = 1;
    if (n < 0)
        return send_error(c, err.status, err.reason);
    c->req.minor = hr.minor;
    c->req.head = is_head(&hr);
    if (h1_request_info(&hr, &info, &err) < 0)
        return send_error(c, err.status, err.reason);
    if (info.expect_other)
        return send_error(c, HTTP_EXPECTATION_FAILED, "only Expect: 100-continue is supported");
    request_begin(c, &hr, &info);

    bool body_expected = h1_info_has_body(&info);
    if (info.expect_continue && hr.minor == 1 && body_expected &&
        sim_put_interim(c, HTTP_CONTINUE) < 0)
        return -1;

    if (c->req.ep && c->req.ep->echo && !c->req.bad) {
        /* the echoed head starts at the method: skipped leading empty lines are not part of it */
        size_t skip = (size_t)(hr.method - buf);
        size_t head_len = (size_t)n - skip;
        evbuffer_drain(in, skip);
        c->req.echo_chunked = info.framing == H1_BODY_CHUNKED;
        if (c->req.echo_chunked) {
            if (sim_put_head(c, HTTP_OK, "application/octet-stream", H1OUT_CHUNKED) < 0)
                return -1;
            if (!c->req.head && evbuffer_add_printf(out, "%zx\r\n", head_len) < 0) {
                c->why = "out of memory";
                return -1;
            }
        } else {
            if (sim_put_head(c, HTTP_OK, "application/octet-stream",
                             (int64_t)(head_len + c->req.body_left)) < 0)
                return -1;
        }
        if (c->req.head) {
            evbuffer_drain(in, head_len);
        } else {
            if (evmem_move(in, out, head_len) != 0 ||
                (c->req.echo_chunked && evbuffer_add(out, "\r\n", 2) != 0)) {
                c->why = "out of memory";
                return -1;
            }
        }
        sim_set_state(c, CONN_ECHO);
        return 0;
    }
    evbuffer_drain(in, (size_t)n);
    sim_set_state(c, CONN_BODY);
    return 0;
}

static int step_body(struct conn *c)
{
    int rc;
    while ((rc = body_step(c, false)) == 0)
        ;
    if (rc == -2) {
        if (!c->peer_eof) {
            sim_arm(c, limit_ms(&sim.limits.body_ms)); /* silence since the last bytes */
            return -2;
        }
        sim_set_state(c, CONN_FLUSH); /* truncated body: there is no request to answer */
        return 0;
    }
    evtimer_del(c->timer); /* the body is whole */
    if (rc == -1)
        return send_error(c, HTTP_BAD_REQUEST,
                          c->req.chunked.error ? c->req.chunked.error : "bad chunk");
    if (c->req.bad)
        return sim_send_text(c, HTTP_BAD_REQUEST, "%d %s: %s\n", HTTP_BAD_REQUEST,
                             status_phrase(HTTP_BAD_REQUEST), c->req.bad);
    if (!c->req.ep)
        return sim_send_text(c, HTTP_NOT_FOUND, "%d %s: no such endpoint (GET / lists them)\n",
                             HTTP_NOT_FOUND, status_phrase(HTTP_NOT_FOUND));
    return c->req.ep->start(c);
}

static void conn_reading(struct conn *c, bool on)
{
    if (on == !c->read_paused)
        return;
    c->read_paused = !on;
    if (on && !c->peer_eof)
        bufferevent_enable(c->bev, EV_READ);
    else if (!on)
        bufferevent_disable(c->bev, EV_READ);
}

/* Reading is on unless /echo waits on its client to read, or the input is at its high watermark
 * and the step that waits takes none of it until its event comes (requests pipelined behind a
 * /delay, a download, or answers the client does not read). libevent's watermark only suspends
 * reading, and while reading is enabled it runs the read callback again at once, for as long
 * as the input stays that full (bufferevent_inbuf_wm_check): 117 KB of requests pipelined
 * behind a /delay/5000 kept the sim thread at 97% of a core for the 5 s. */
static void conn_hold_input(struct conn *c)
{
    size_t high = SIM_IN_HIGH;
    bufferevent_getwatermark(c->bev, EV_READ, NULL, &high); /* raised for a long head */
    bool echo_blocked = c->state == CONN_ECHO && evbuffer_get_length(sim_out(c)) > SIM_OUT_HIGH;
    conn_reading(c, !echo_blocked && evbuffer_get_length(bufferevent_get_input(c->bev)) < high);
}

static int step_echo(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    for (;;) {
        /* back-pressure: stop reading the client while it does not read us */
        if (evbuffer_get_length(out) > SIM_OUT_HIGH) {
            conn_reading(c, false);
            evtimer_del(c->timer); /* waiting on the client's reading: client_send_timeout */
            return -2;
        }
        int rc = body_step(c, !c->req.head);
        if (rc == 0)
            continue;
        if (rc == -2) {
            if (!c->peer_eof) {
                sim_arm(c, limit_ms(&sim.limits.body_ms)); /* silence since the last bytes */
                return -2;
            }
            sim_set_state(c, CONN_FLUSH); /* the short echo and the close tell the story */
            return 0;
        }
        if (rc == -1) {
            /* the 200 is already out: closing is the only way left to say "broken"; the
             * teardown says why (out_of_memory's reason, else the framing's) */
            if (!c->why)
                c->why = "echo cut: invalid chunked framing";
            sim_set_state(c, CONN_FLUSH);
            return 0;
        }
        if (c->req.echo_chunked && !c->req.head && evbuffer_add(out, "0\r\n\r\n", 5) != 0) {
            sim_set_state(c, CONN_FLUSH); /* no last chunk: the close says the echo is cut */
            return 0;
        }
        return sim_finish(c); /* clears the body's deadline */
    }
}

/* How many body bytes may go now: all that are left, or of a paced body what is due by now
 * (total * elapsed / pace; at most 2^40 * 600000 < 2^63, no overflow). */
static uint64_t bytes_due(const struct sim_request *r)
{
    uint64_t total = r->offset + r->left;
    uint64_t t = sim_elapsed_ms(&r->t0);
    if (r->pace_ms == 0 || t >= r->pace_ms)
        return r->left;
    uint64_t due = total * t / r->pace_ms;
    return due > r->offset ? due - r->offset : 0;
}

/* Appends n pattern bytes continuing the body at its offset, by reference. */
static int put_pattern(struct conn *c, size_t n)
{
    if (evbuffer_add_reference(sim_out(c), sim_block + c->req.offset % 64, n, NULL, NULL) < 0) {
        c->why = "out of memory";
        return -1;
    }
    c->req.offset += n;
    c->req.left -= n;
    return 0;
}

static int step_bytes(struct conn *c)
{
    struct evbuffer *out = sim_out(c);
    struct sim_request *r = &c->req;
    /* refill only once the client drained us to the low watermark: memory stays bounded */
    if (r->left > 0 && evbuffer_get_length(out) > SIM_OUT_LOW)
        return -2;
    uint64_t due = bytes_due(r);
    while (due > 0 && evbuffer_get_length(out) < SIM_OUT_HIGH) {
        size_t n = due < SIM_PIECE ? (size_t)due : SIM_PIECE;
        if (put_pattern(c, n) < 0)
            return -1;
        due -= n;
    }
    if (r->left == 0)
        return sim_finish(c);
    if (due == 0) {
        /* paced and ahead of time: wake when the next byte is due, a tick at the finest */
        uint64_t total = r->offset + r->left;
        uint64_t next = ((r->offset + 1) * r->pace_ms + total - 1) / total;
        uint64_t now = sim_elapsed_ms(&r->t0);
        sim_arm(c, next > now + SIM_DRIP_TICK_MS ? next - now : SIM_DRIP_TICK_MS);
    }
    return -2; /* else the write callback comes back once the client read enough */
}

/* /reset: SO_LINGER with a zero timeout makes close() abort the connection, throwing away
 * whatever the kernel still holds to send. So the RST waits until earlier answers have left
 * (the send queue is empty), a tick at a time, for SIM_LINGER_MS at most: a client that does
 * not read loses them, as from any origin that resets. */
static int step_reset(struct conn *c)
{
    int fd = bufferevent_getfd(c->bev);
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
        sim_elapsed_ms(&c->req.t0) < SIM_LINGER_MS) {
        sim_arm(c, SIM_DRIP_TICK_MS);
        return -2;
    }
    struct linger lin = { .l_onoff = 1, .l_linger = 0 };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin)) < 0)
        c->why = "reset (SO_LINGER failed: closed with FIN)";
    else
        c->why = "reset (/reset)";
    return -1;
}

static int step_flush(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    conn_reading(c, true);
    if (evbuffer_get_length(out) > 0) {
        /* get the write callback only when everything is out */
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        return -2;
    }
    if (c->req.reset)
        return step_reset(c);
    /* half-close and drain rather than close: unread input would make the kernel send RST,
     * which can destroy the response before the client reads it */
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    if (c->peer_eof) {
        c->why = c->why ? c->why : "done"; /* an echo cut keeps its reason */
        return -1;
    }
    sim_set_state(c, CONN_LINGER);
    sim_arm(c, SIM_LINGER_MS);
    return -2;
}

static int step_linger(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (!c->peer_eof)
        return -2;
    c->why = c->why ? c->why : "done";
    return -1;
}

/* Never answers: input is read and dropped (bounded memory) until the client leaves. */
static int step_hang(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (!c->peer_eof)
        return -2;
    c->why = "client left a hanging request";
    return -1;
}

/* Runs steps until one needs an event; returns -1 when the caller must tear down. */
static int conn_advance(struct conn *c)
{
    for (;;) {
        int rc;
        switch (c->state) {
        case CONN_HEAD: rc = step_head(c); break;
        case CONN_BODY: rc = step_body(c); break;
        case CONN_WAIT: rc = -2; break; /* conn->timer drives it */
        case CONN_BYTES: rc = step_bytes(c); break;
        case CONN_ECHO: rc = step_echo(c); break;
        case CONN_HANG: rc = step_hang(c); break;
        case CONN_FLUSH: rc = step_flush(c); break;
        case CONN_LINGER: rc = step_linger(c); break;
        default: rc = -1; c->why = "bad state"; break;
        }
        if (rc == -2) {
            conn_hold_input(c);
            return 0;
        }
        if (rc < 0)
            return -1;
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (conn_advance(c) < 0)
        conn_teardown(c, c->why);
}

/* The output fell to the write low watermark: refill, resume reading, or finish a close. */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    conn_reading(c, true);
    if (conn_advance(c) < 0)
        conn_teardown(c, c->why);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_ERROR) {
        conn_teardown(c, (what & BEV_EVENT_WRITING) ? "write error" : "read error");
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) { /* the only one set is the write timeout */
        conn_teardown(c, "client did not read within client_send_timeout");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        /* a half-close still gets every answer already asked for, if it comes soon enough: a
         * pending timer is brought forward to the end of SIM_EOF_WAIT_MS */
        c->peer_eof = true;
        sim_mark(&c->eof_t0);
        if (c->state != CONN_LINGER && evtimer_pending(c->timer, NULL)) {
            uint64_t gone = sim_elapsed_ms(&c->armed_t0);
            sim_arm(c, c->armed_ms > gone ? c->armed_ms - gone : 0);
        }
        if (conn_advance(c) < 0)
            conn_teardown(c, c->why);
    }
}

/* The timer means what the state says: a tick of the handler (CONN_WAIT), more of a paced body
 * (CONN_BYTES), another look at the send queue (/reset's CONN_FLUSH), or a deadline of the
 * client's: the head (CONN_HEAD), the request body's silence (CONN_BODY, CONN_ECHO), the linger. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int rc = 0;
    (void)fd;
    (void)what;
    if (c->eof_cut && c->state != CONN_FLUSH) { /* /reset's wait has a bound of its own */
        conn_teardown(c, "client sent EOF; its answer was not due soon enough");
        return;
    }
    /* A client's deadline is never early: libevent counts from the time it cached when its loop
     * last woke, which a busy loop (or ASan) leaves tens of ms behind when the wait began. */
    bool deadline = c->state == CONN_HEAD || c->state == CONN_BODY || c->state == CONN_ECHO;
    uint64_t gone = deadline ? sim_elapsed_ms(&c->armed_t0) : 0;
    if (deadline && gone < c->armed_ms) {
        sim_arm(c, c->armed_ms - gone);
        return;
    }
    switch (c->state) {
    case CONN_LINGER:
        conn_teardown(c, "linger timeout");
        return;
    case CONN_HANG:
        return;
    case CONN_HEAD:
        rc = head_expired(c);
        break;
    case CONN_BODY: /* a 408, as Portico's listener answers a body that stopped coming */
        rc = send_error(c, HTTP_REQUEST_TIMEOUT,
                        "request body not complete within client_body_timeout");
        break;
    case CONN_ECHO: /* the 200 is out: closing is the only way left to say "cut short" */
        sim_set_state(c, CONN_FLUSH);
        break;
    case CONN_WAIT:
        rc = c->req.ep->tick(c);
        break;
    case CONN_BYTES:
    case CONN_FLUSH:
        break;
    }
    if (rc < 0 || conn_advance(c) < 0)
        conn_teardown(c, c->why);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct event_base *base = evconnlistener_get_base(l);
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;
    (void)sa;
    (void)salen;
    (void)arg;
    sim.accept_failing = false;
    if (!c)
        goto fail;
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        goto fail;
    c->timer = evtimer_new(base, on_timer, c);
    if (!c->timer) {
        bufferevent_free(c->bev); /* closes fd */
        free(c);
        return;
    }
    /* interim responses are small writes that must leave at once */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* what a client leaves unread costs it, not the simulator's other connections */
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &(int){SIM_NOTSENT_LOWAT}, sizeof(int));
    c->state = CONN_HEAD;
    c->why = "closed";
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, SIM_IN_HIGH);
    bufferevent_setwatermark(c->bev, EV_WRITE, SIM_OUT_LOW, 0);
    bufferevent_set_max_single_write(c->bev, SIM_OUT_HIGH);
    /* libevent's write timeout is client_send_timeout's: armed while output waits, reset by
     * every write that makes progress */
    struct timeval send_tv = tv_from_ms(limit_ms(&sim.limits.send_ms));
    bufferevent_set_timeouts(c->bev, NULL, &send_tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    head_wait(c, HEAD_WAIT_FIRST);
    c->next = sim.conns;
    if (sim.conns)
        sim.conns->prev = c;
    sim.conns = c;
    return;
fail:
    evutil_closesocket(fd);
    free(c);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    evconnlistener_enable(sim.listener);
}

/* accept() failed, typically out of descriptors (the simulator shares them with Portico): the
 * connection stays queued and the socket readable, so libevent would call us again at once,
 * forever. Pause the listener instead, as Portico's own listeners do, and say it once until an
 * accept works again. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct timeval pause = tv_from_ms(SIM_ACCEPT_PAUSE_MS);
    (void)arg;
    if (!sim.accept_failing)
        fprintf(stderr, "sim: accept: %s; pausing accepts for %d ms at a time until it works\n",
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), SIM_ACCEPT_PAUSE_MS);
    sim.accept_failing = true;
    if (evtimer_add(sim.accept_resume, &pause) == 0)
        evconnlistener_disable(l);
}

/* Runs in the sim thread: connections are freed by the thread that owns them. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (sim.conns)
        conn_teardown(sim.conns, "simulator stopped");
    event_base_loopbreak(sim.base);
}

static void *sim_main(void *arg)
{
    struct event_base *base = arg;
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int sim_start(uint16_t *port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
    struct sockaddr_in bound;
    socklen_t blen = sizeof(bound);
    sigset_t all, old;
    int rc;

    pthread_mutex_lock(&sim.lock);
    if (sim.base) {
        fprintf(stderr, "sim: already running on port %u\n", (unsigned)sim.port);
        pthread_mutex_unlock(&sim.lock);
        return -1;
    }
    pthread_once(&sim_block_once, sim_block_fill);
    sim.debug = getenv("PORTICO_SIM_DEBUG") != NULL;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sim.base = evbase_new(0); /* a reload that adds the first sim origin must not end us */
    if (!sim.base) {
        fprintf(stderr, "sim: event_base_new failed\n");
        goto fail;
    }
    sim.listener = evconnlistener_new_bind(sim.base, on_accept, NULL,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                               LEV_OPT_REUSEABLE,
                                           SIM_BACKLOG, (struct sockaddr *)&sin, sizeof(sin));
    if (!sim.listener) {
        fprintf(stderr, "sim: listen on 127.0.0.1: %s\n", strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(sim.listener, on_accept_error);
    if (getsockname(evconnlistener_get_fd(sim.listener), (struct sockaddr *)&bound, &blen) < 0) {
        fprintf(stderr, "sim: getsockname: %s\n", strerror(errno));
        goto fail;
    }
    sim.stop = event_new(sim.base, -1, 0, on_stop, NULL);
    sim.accept_resume = evtimer_new(sim.base, on_accept_resume, NULL);
    if (!sim.stop || !sim.accept_resume) {
        fprintf(stderr, "sim: event_new failed\n");
        goto fail;
    }
    sim.accept_failing = false;
    /* signals belong to the main thread's event loop, not to the simulator */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&sim.thread, NULL, sim_main, sim.base);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fprintf(stderr, "sim: pthread_create: %s\n", strerror(rc));
        goto fail;
    }
    sim.port = ntohs(bound.sin_port);
    *port = sim.port;
    pthread_mutex_unlock(&sim.lock);
    return 0;
fail:
    if (sim.accept_resume)
        event_free(sim.accept_resume);
    if (sim.stop)
        event_free(sim.stop);
    if (sim.listener)
        evconnlistener_free(sim.listener);
    if (sim.base)
        event_base_free(sim.base);
    sim.accept_resume = NULL;
    sim.stop = NULL;
    sim.listener = NULL;
    sim.base = NULL;
    pthread_mutex_unlock(&sim.lock);
    return -1;
}

int sim_resolve(struct config *cfg)
{
    /* the simulator holds its clients no longer than Portico's listener holds its own */
    sim_set_timeouts(&(struct sim_timeouts){
        .header_ms = cfg->client_header_timeout_ms,
        .body_ms = cfg->client_body_timeout_ms,
        .send_ms = cfg->client_send_timeout_ms,
        .keepalive_ms = cfg->keepalive_timeout_ms,
    });
    sim_take_head_max(cfg);
    for (int u = 0; u < cfg->nupstreams; u++) {
        for (int o = 0; o < cfg->upstreams[u].norigins; o++) {
            struct origin_conf *oc = &cfg->upstreams[u].origins[o];
            if (!oc->is_sim)
                continue;
            uint16_t port = sim_port();
            if (!port && sim_start(&port) != 0)
                return -1;
            oc->port = port;
            numeric_sockaddr("127.0.0.1", port, &oc->addr, &oc->addrlen);
        }
    }
    return 0;
}

uint16_t sim_port(void)
{
    pthread_mutex_lock(&sim.lock);
    uint16_t port = sim.port;
    pthread_mutex_unlock(&sim.lock);
    return port;
}

void sim_stop(void)
{
    pthread_mutex_lock(&sim.lock);
    if (!sim.base) {
        pthread_mutex_unlock(&sim.lock);
        return;
    }
    /* thread-safe: the base was created with locking, event_active wakes its loop */
    event_active(sim.stop, EV_READ, 0);
    pthread_join(sim.thread, NULL);
    evconnlistener_free(sim.listener);
    event_free(sim.accept_resume);
    event_free(sim.stop);
    event_base_free(sim.base);
    sim.listener = NULL;
    sim.accept_resume = NULL;
    sim.stop = NULL;
    sim.base = NULL;
    sim.port = 0;
    pthread_mutex_unlock(&sim.lock);
}
