/*
 * sim.c — the built-in simulator origin: an HTTP/1.1 server on 127.0.0.1 in its own thread and
 * event_base. Requests are parsed with the project's strict parser (http1.h); each connection is
 * a small state machine driven by its bufferevent callbacks and one timer. Endpoints live in a
 * table; every response body is either tiny or streamed with back-pressure, so the memory of a
 * connection is bounded by the watermarks below whatever the client asks for.
 */
#include "portico/sim.h"

#include "portico/chunked.h"
#include "portico/http1.h"
#include "portico/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define SIM_MAX_REQUEST_LINE 8192      /* longer request line: 414 */
#define SIM_MAX_HEAD 16384             /* longer request head: 431 */
#define SIM_PULL_MAX (2 * SIM_MAX_HEAD) /* never linearize more than this looking for a head */
#define SIM_BLOCK 16384                /* /bytes generation unit; a multiple of the pattern */
#define SIM_OUT_LOW 16384              /* refill / resume reading once output drains to this */
#define SIM_OUT_HIGH 65536             /* stop producing once output is above this */
#define SIM_IN_HIGH 65536              /* libevent stops reading the socket above this */
#define SIM_MAX_INTERIM 32             /* codes accepted by /interim */
#define SIM_MAX_PARAMS 2               /* query parameters of one endpoint */
#define SIM_MAX_MS 600000ULL           /* /delay and /slow upper bound */
#define SIM_MAX_BYTES (1ULL << 40)     /* /bytes upper bound */
#define SIM_LINGER_MS 2000             /* how long a closing connection drains the client */

/* ---- connection state ---- */

enum conn_state {
    CONN_HEAD,   /* waiting for (the rest of) a request head */
    CONN_BODY,   /* reading and discarding the request body; the handler runs after it */
    CONN_WAIT,   /* the handler waits on conn->timer (/delay, /interim, /slow) */
    CONN_BYTES,  /* streaming a /bytes body, refilled at the low watermark */
    CONN_ECHO,   /* streaming the request body back as it arrives */
    CONN_FLUSH,  /* the last response is queued: write it out, then close */
    CONN_LINGER, /* write side shut: drain the client until EOF or timeout so it sees no RST */
};

static const char *const conn_state_names[] = {
    [CONN_HEAD] = "head",   [CONN_BODY] = "body",   [CONN_WAIT] = "wait",
    [CONN_BYTES] = "bytes", [CONN_ECHO] = "echo",   [CONN_FLUSH] = "flush",
    [CONN_LINGER] = "linger",
};

struct conn;

/* A documented query parameter: anything not in the endpoint's list is refused. */
struct param {
    const char *name;
    uint64_t min;        /* inclusive bounds */
    uint64_t max;
    uint64_t def;        /* value when absent */
    const char *why;     /* 400 reason when the value is not a number in range */
};

struct endpoint {
    const char *path;        /* exact path, or a prefix when it ends in '/' */
    const char *usage;       /* for the index page */
    const char *about;       /* one-line description for the index page */
    bool echo;               /* streams the request body back instead of discarding it */
    const char *(*parse)(struct conn *c, const char *arg, size_t len); /* path argument; NULL ok */
    const struct param *params; /* documented query parameters */
    size_t nparams;
    int (*start)(struct conn *c); /* runs once the request body has been read */
    int (*tick)(struct conn *c);  /* conn->timer fired in CONN_WAIT */
};

/* What one request asked for; reset for every request head. Holds no pointer into the input
 * buffer: everything needed later is copied out (parsed into numbers) before the head is
 * drained. */
struct request {
    const struct endpoint *ep;     /* borrowed (static table); NULL: no such endpoint, 404 */
    const char *bad;               /* static 400 reason for an invalid path or query, or NULL */
    bool head;                     /* HEAD: headers only */
    int minor;                     /* HTTP/1.<minor> of the request */
    bool keep_alive;               /* false: Connection: close on the response, then close */
    enum h1_framing framing;       /* request body framing; NONE once the body is fully read */
    bool echo_chunked;             /* /echo of a chunked body: the response is chunked too */
    uint64_t body_left;            /* H1_BODY_LENGTH: bytes still to read */
    struct chunked_decoder chunked; /* H1_BODY_CHUNKED decoder */
    uint64_t arg;                  /* path argument: status code, milliseconds, byte count */
    uint64_t query[SIM_MAX_PARAMS]; /* query values, in endpoint->params order */
    int codes[SIM_MAX_INTERIM];    /* /interim codes */
    size_t ncodes;
    size_t sent;                   /* interim responses or 102s sent so far */
    uint64_t left;                 /* /bytes: body bytes still to generate */
    struct timespec t0;            /* when the handler started waiting */
};

struct conn {
    struct conn *prev;         /* sim.conns list, so sim_stop can free every connection */
    struct conn *next;
    struct bufferevent *bev;   /* owns the socket */
    struct event *timer;       /* handler ticks in CONN_WAIT, the linger timeout in CONN_LINGER */
    enum conn_state state;
    bool peer_eof;             /* client shut its write side: finish what is queued, then close */
    bool read_paused;          /* echo back-pressure: reading off until the output drains */
    const char *why;           /* static reason given to conn_teardown when a step returns -1 */
    struct request req;
};

static struct {
    pthread_mutex_t lock;            /* serializes sim_start, sim_stop and sim_port */
    pthread_t thread;
    struct event_base *base;         /* NULL when not running */
    struct evconnlistener *listener;
    struct event *stop;              /* activated by sim_stop from any thread */
    struct conn *conns;              /* every open connection (touched by the sim thread only) */
    uint16_t port;                   /* 0 when not running */
    bool debug;                      /* PORTICO_SIM_DEBUG set: log state changes and closes */
} sim = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* /bytes bodies are this block, added by reference: streaming costs no copy and no allocation
 * beyond evbuffer chain headers. 64-byte lines, so every block continues the same pattern. */
static char sim_block[SIM_BLOCK];
static pthread_once_t sim_block_once = PTHREAD_ONCE_INIT;

static void sim_block_fill(void)
{
    static const char line[] = "portico-sim /bytes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH\n";
    _Static_assert(sizeof(line) - 1 == 64 && SIM_BLOCK % 64 == 0, "pattern must tile a block");
    for (size_t i = 0; i < SIM_BLOCK; i++)
        sim_block[i] = line[i % 64];
}

static void conn_set_state(struct conn *c, enum conn_state s)
{
    if (sim.debug && c->state != s)
        fprintf(stderr, "sim: conn %d %s -> %s\n", (int)bufferevent_getfd(c->bev),
                conn_state_names[c->state], conn_state_names[s]);
    c->state = s;
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

static uint64_t elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(now.tv_sec - t0->tv_sec) * 1000000000 + (now.tv_nsec - t0->tv_nsec);
    return ns > 0 ? (uint64_t)ns / 1000000 : 0;
}

static void conn_arm(struct conn *c, uint64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
}

/* ---- responses ---- */

/* IMF-fixdate by hand: strftime's %a and %b follow the locale. */
static void http_date(char *buf, size_t cap)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* 204 and 304 carry no content, so no Content-Type and no framing (RFC 9110 8.6, 15.4.5). */
static bool status_has_content(int code)
{
    return code != 204 && code != 304;
}

/* Writes a final response head; len < 0 means chunked. Always HTTP/1.1 in the status line: it
 * is the server's version, also towards 1.0 clients (RFC 9110 6.2). */
static void put_head(struct conn *c, int code, const char *ctype, int64_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char date[40];
    http_date(date, sizeof(date));
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nServer: portico-sim\r\nDate: %s\r\n", code,
                        status_phrase(code), date);
    if (status_has_content(code)) {
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
        if (len < 0)
            evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
        else
            evbuffer_add_printf(out, "Content-Length: %" PRId64 "\r\n", len);
    }
    if (!c->req.keep_alive)
        evbuffer_add_printf(out, "Connection: close\r\n");
    else if (c->req.minor == 0)
        evbuffer_add_printf(out, "Connection: keep-alive\r\n");
    evbuffer_add(out, "\r\n", 2);
}

/* 1xx: never to HTTP/1.0 clients, which cannot tell them from the final response. */
static void put_interim(struct conn *c, int code)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->req.minor == 0)
        return;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", code, status_phrase(code));
    if (code == 103)
        evbuffer_add_printf(out, "Link: </sim/app.css>; rel=preload; as=style\r\n");
    evbuffer_add(out, "\r\n", 2);
}

/* The request is answered: keep going on this connection, or close it once flushed. */
static int conn_finish(struct conn *c)
{
    conn_set_state(c, c->req.keep_alive ? CONN_HEAD : CONN_FLUSH);
    return 0;
}

/* A complete text/plain response with a formatted one-line-ish body. */
__attribute__((format(printf, 3, 4))) static int send_text(struct conn *c, int code,
                                                            const char *fmt, ...)
{
    struct evbuffer *body = evbuffer_new();
    va_list ap;
    if (!body) {
        c->why = "out of memory";
        return -1;
    }
    va_start(ap, fmt);
    evbuffer_add_vprintf(body, fmt, ap);
    va_end(ap);
    put_head(c, code, "text/plain; charset=utf-8", (int64_t)evbuffer_get_length(body));
    if (!c->req.head && status_has_content(code))
        evbuffer_add_buffer(bufferevent_get_output(c->bev), body);
    evbuffer_free(body);
    return conn_finish(c);
}

/* Refuses a message the parser or the semantic pass rejected. The request boundary is lost, so
 * the connection closes after the answer. */
static int send_error(struct conn *c, int code, const char *reason)
{
    c->req.keep_alive = false;
    return send_text(c, code, "%d %s: %s\n", code, status_phrase(code), reason);
}

/* ---- request parsing helpers ---- */

/* Strict decimal: 1 to 20 digits, nothing else, no overflow, at most max. */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Exactly three digits: "099" and "1000" are not status codes. */
static int parse_code(const char *s, size_t len, uint64_t *out)
{
    return len == 3 ? parse_u64(s, len, 999, out) : -1;
}

/* Only the endpoint's documented parameters, each at most once, each a number in range. */
static const char *parse_query(struct conn *c, const struct endpoint *ep, const char *q, size_t len)
{
    bool seen[SIM_MAX_PARAMS] = { false };
    for (size_t i = 0; i < ep->nparams; i++)
        c->req.query[i] = ep->params[i].def;
    if (len == 0)
        return NULL;
    if (ep->nparams == 0)
        return "this endpoint takes no query parameters";
    size_t pos = 0;
    for (;;) {
        const char *seg = q + pos;
        const char *amp = memchr(seg, '&', len - pos);
        size_t seg_len = amp ? (size_t)(amp - seg) : len - pos;
        const char *eq = memchr(seg, '=', seg_len);
        size_t i;
        if (!eq)
            return "query parameter without a value";
        for (i = 0; i < ep->nparams; i++) {
            size_t n = strlen(ep->params[i].name);
            if ((size_t)(eq - seg) == n && memcmp(seg, ep->params[i].name, n) == 0)
                break;
        }
        if (i == ep->nparams)
            return "unknown query parameter";
        if (seen[i])
            return "repeated query parameter";
        seen[i] = true;
        const char *val = eq + 1;
        size_t val_len = seg_len - (size_t)(val - seg);
        if (parse_u64(val, val_len, ep->params[i].max, &c->req.query[i]) < 0 ||
            c->req.query[i] < ep->params[i].min)
            return ep->params[i].why;
        if (!amp)
            return NULL;
        pos += seg_len + 1;
    }
}

/* ---- endpoints ---- */

static const char *arg_status(struct conn *c, const char *arg, size_t len)
{
    if (parse_code(arg, len, &c->req.arg) < 0 || c->req.arg < 200 || c->req.arg > 599)
        return "status code must be three digits in 200-599";
    return NULL;
}

static const char *arg_ms(struct conn *c, const char *arg, size_t len)
{
    if (parse_u64(arg, len, SIM_MAX_MS, &c->req.arg) < 0)
        return "milliseconds must be a number in 0-600000";
    return NULL;
}

static const char *arg_bytes(struct conn *c, const char *arg, size_t len)
{
    if (parse_u64(arg, len, SIM_MAX_BYTES, &c->req.arg) < 0)
        return "byte count must be a number in 0-1099511627776";
    return NULL;
}

static const char *arg_interim(struct conn *c, const char *arg, size_t len)
{
    static const char why[] = "interim codes must be 1 to 32 comma-separated codes in 100-199 "
                              "except 101";
    size_t pos = 0;
    for (;;) {
        const char *comma = memchr(arg + pos, ',', len - pos);
        size_t n = comma ? (size_t)(comma - (arg + pos)) : len - pos;
        uint64_t code;
        if (c->req.ncodes == SIM_MAX_INTERIM || parse_code(arg + pos, n, &code) < 0 ||
            code < 100 || code > 199 || code == 101)
            return why;
        c->req.codes[c->req.ncodes++] = (int)code;
        if (!comma)
            return NULL;
        pos += n + 1;
    }
}

static int ep_index(struct conn *c);

static int ep_status(struct conn *c)
{
    int code = (int)c->req.arg;
    return send_text(c, code, "%d %s\n", code, status_phrase(code));
}

static int ep_wait(struct conn *c)
{
    clock_gettime(CLOCK_MONOTONIC, &c->req.t0);
    conn_set_state(c, CONN_WAIT);
    conn_arm(c, c->req.arg);
    return 0;
}

static int tick_delay(struct conn *c)
{
    return send_text(c, 200, "waited %" PRIu64 " ms (asked for %" PRIu64 " ms)\n",
                     elapsed_ms(&c->req.t0), c->req.arg);
}

static int ep_bytes(struct conn *c)
{
    put_head(c, 200, "application/octet-stream", (int64_t)c->req.arg);
    c->req.left = c->req.head ? 0 : c->req.arg;
    conn_set_state(c, CONN_BYTES);
    return 0;
}

static int ep_interim(struct conn *c)
{
    conn_set_state(c, CONN_WAIT);
    conn_arm(c, c->req.query[0]);
    return 0;
}

static int tick_interim(struct conn *c)
{
    char list[SIM_MAX_INTERIM * 5 + 1];
    size_t n = 0;
    /* delay_ms before each interim response and before the final one, so a client sees every
     * 1xx arrive on its own */
    if (c->req.sent < c->req.ncodes) {
        put_interim(c, c->req.codes[c->req.sent++]);
        conn_arm(c, c->req.query[0]);
        return 0;
    }
    if (c->req.minor == 0)
        return send_text(c, 200, "interim responses sent: none (HTTP/1.0 client)\n");
    for (size_t i = 0; i < c->req.ncodes; i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d", i ? "," : "", c->req.codes[i]);
    return send_text(c, 200, "interim responses sent: %s\n", list);
}

static int ep_slow(struct conn *c)
{
    clock_gettime(CLOCK_MONOTONIC, &c->req.t0);
    conn_set_state(c, CONN_WAIT);
    conn_arm(c, c->req.arg < c->req.query[0] ? c->req.arg : c->req.query[0]);
    return 0;
}

static int tick_slow(struct conn *c)
{
    uint64_t done = elapsed_ms(&c->req.t0);
    /* libevent may wake a hair early; a 102 right before the final answer is just noise */
    if (done + 1 >= c->req.arg)
        return send_text(c, 200, "slow: %" PRIu64 " ms, %zu x 102 Processing sent\n", c->req.arg,
                         c->req.sent);
    put_interim(c, 102);
    if (c->req.minor == 1)
        c->req.sent++;
    uint64_t left = c->req.arg - done;
    conn_arm(c, left < c->req.query[0] ? left : c->req.query[0]);
    return 0;
}

static const struct param interim_params[] = {
    { "delay_ms", 0, 60000, 100, "delay_ms must be a number in 0-60000" },
};

static const struct param slow_params[] = {
    { "interval_ms", 10, SIM_MAX_MS, 1000, "interval_ms must be a number in 10-600000" },
};

#define PARAMS(a) (a), (sizeof(a) / sizeof((a)[0]))

/* Matched in order: the first row whose path matches the request path serves it. */
static const struct endpoint endpoints[] = {
    { "/", "/", "this list", false, NULL, NULL, 0, ep_index, NULL },
    { "/status/", "/status/{code}", "answer with status {code} (200-599) and its reason phrase",
      false, arg_status, NULL, 0, ep_status, NULL },
    { "/delay/", "/delay/{ms}", "answer 200 after {ms} milliseconds (0-600000)", false, arg_ms,
      NULL, 0, ep_wait, tick_delay },
    { "/bytes/", "/bytes/{n}", "stream {n} bytes of application/octet-stream (0-2^40)", false,
      arg_bytes, NULL, 0, ep_bytes, NULL },
    { "/echo", "/echo", "send back the request head as received, then the request body", true,
      NULL, NULL, 0, NULL, NULL },
    { "/interim/", "/interim/{codes}?delay_ms=N",
      "send each 1xx in {codes} (e.g. 103,102), then 200, N ms apart (default 100)", false,
      arg_interim, PARAMS(interim_params), ep_interim, tick_interim },
    { "/slow/", "/slow/{ms}?interval_ms=I",
      "send 102 Processing every I ms (default 1000) for {ms} ms, then 200", false, arg_ms,
      PARAMS(slow_params), ep_slow, tick_slow },
};

#define NENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

static int ep_index(struct conn *c)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        c->why = "out of memory";
        return -1;
    }
    evbuffer_add_printf(body, "portico-sim: the built-in origin simulator\n\n");
    for (size_t i = 0; i < NENDPOINTS; i++)
        evbuffer_add_printf(body, "%-30s %s\n", endpoints[i].usage, endpoints[i].about);
    evbuffer_add_printf(body, "\nAny other path answers 404. HEAD, keep-alive, pipelining, "
                              "Expect: 100-continue and chunked request bodies work everywhere.\n");
    put_head(c, 200, "text/plain; charset=utf-8", (int64_t)evbuffer_get_length(body));
    if (!c->req.head)
        evbuffer_add_buffer(bufferevent_get_output(c->bev), body);
    evbuffer_free(body);
    return conn_finish(c);
}

/* Case-insensitive prefix test for the scheme of an absolute-form target. */
static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

/* Finds the endpoint and parses its arguments into c->req, before the head is drained. */
static void route(struct conn *c, const char *target, size_t len)
{
    const char *path = target;
    size_t plen;

    /* absolute-form (RFC 9112 3.2.2) must be accepted too: drop scheme and authority */
    if (has_prefix_ci(target, len, "http://") || has_prefix_ci(target, len, "https://")) {
        size_t i = (size_t)((const char *)memchr(target, ':', len) - target) + 3;
        while (i < len && target[i] != '/' && target[i] != '?')
            i++;
        path = target + i;
        len -= i;
    }
    const char *qmark = memchr(path, '?', len);
    const char *query = qmark ? qmark + 1 : "";
    size_t qlen = qmark ? len - (size_t)(qmark + 1 - path) : 0;
    plen = qmark ? (size_t)(qmark - path) : len;
    if (plen == 0) { /* "http://host" and "http://host?q" name the root */
        path = "/";
        plen = 1;
    }
    for (size_t i = 0; i < NENDPOINTS; i++) {
        const struct endpoint *ep = &endpoints[i];
        size_t n = strlen(ep->path);
        bool prefix = n > 1 && ep->path[n - 1] == '/';
        if (prefix ? plen < n || memcmp(path, ep->path, n) != 0
                   : plen != n || memcmp(path, ep->path, n) != 0)
            continue;
        c->req.ep = ep;
        if (ep->parse)
            c->req.bad = ep->parse(c, path + n, plen - n);
        if (!c->req.bad)
            c->req.bad = parse_query(c, ep, query, qlen);
        return;
    }
}

/* ---- the connection state machine. Steps return 0 when they made progress (run again), -2
 * when they wait for an event, -1 when the connection must be torn down (c->why says why). ---- */

/*
 * Reads one piece of request body: the data is dropped, or with copy set appended to the
 * output (re-chunked when the request was chunked). Returns 1 when the body is complete, 0 after
 * progress, -2 when more input is needed, -1 on invalid chunked framing.
 */
static int body_step(struct conn *c, bool copy)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct request *r = &c->req;
    size_t avail = evbuffer_get_length(in);

    if (r->framing == H1_BODY_LENGTH) {
        if (r->body_left == 0) {
            r->framing = H1_BODY_NONE;
            return 1;
        }
        if (avail == 0)
            return -2;
        size_t n = avail < r->body_left ? avail : (size_t)r->body_left;
        if (copy)
            evbuffer_remove_buffer(in, out, n);
        else
            evbuffer_drain(in, n);
        r->body_left -= n;
        return 0;
    }
    if (r->framing != H1_BODY_CHUNKED)
        return 1;
    if (avail == 0)
        return -2;
    if (r->chunked.data_left > 0) {
        size_t n = avail < r->chunked.data_left ? avail : (size_t)r->chunked.data_left;
        if (copy) {
            evbuffer_add_printf(out, "%zx\r\n", n);
            evbuffer_remove_buffer(in, out, n);
            evbuffer_add(out, "\r\n", 2);
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
    return hr->method_len == 4 && memcmp(hr->method, "HEAD", 4) == 0;
}

/* Resets c->req from a parsed head; the target is routed while its bytes are still valid. */
static void request_begin(struct conn *c, const struct h1_request *hr, const struct h1_info *info)
{
    struct request *r = &c->req;
    memset(r, 0, sizeof(*r));
    r->head = is_head(hr);
    r->minor = hr->minor;
    /* after a half-close, requests already buffered are still answered; step_head closes once
     * the input runs dry */
    r->keep_alive = info->keep_alive;
    r->framing = info->framing;
    r->body_left = info->framing == H1_BODY_LENGTH ? info->content_length : 0;
    chunked_init(&r->chunked, SIM_MAX_HEAD);
    route(c, hr->target, hr->target_len);
}

static int step_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const struct h1_limits lim = { SIM_MAX_REQUEST_LINE, SIM_MAX_HEAD };
    struct h1_request hr;
    struct h1_info info;
    struct h1_error err;
    size_t avail = evbuffer_get_length(in);
    size_t want = avail < 4096 ? avail : 4096;
    const char *buf;
    int n;

    /* a client that pipelines without reading gets no further answers until it reads */
    if (evbuffer_get_length(out) > SIM_OUT_HIGH)
        return -2;
    if (avail == 0) {
        if (!c->peer_eof)
            return -2;
        conn_set_state(c, CONN_FLUSH);
        return 0;
    }
    /* linearize only as much as the head needs: usually the first segment, no copy */
    for (;;) {
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        n = h1_parse_request(buf, want, &lim, &hr, &err);
        if (n != -2 || want == avail || want >= SIM_PULL_MAX)
            break;
        want = want * 4 < SIM_PULL_MAX ? want * 4 : SIM_PULL_MAX;
        want = want < avail ? want : avail;
    }
    if (n == -2) {
        if (want >= SIM_PULL_MAX) /* e.g. endless leading empty lines */
            return send_error(c, 431, "request head too large");
        if (!c->peer_eof)
            return -2;
        conn_set_state(c, CONN_FLUSH); /* half a head and then EOF: nothing to answer */
        return 0;
    }
    memset(&c->req, 0, sizeof(c->req));
    c->req.minor = 1;
    if (n < 0)
        return send_error(c, err.status, err.reason);
    c->req.minor = hr.minor;
    c->req.head = is_head(&hr);
    if (h1_request_info(&hr, &info, &err) < 0)
        return send_error(c, err.status, err.reason);
    if (info.expect_other)
        return send_error(c, 417, "only Expect: 100-continue is supported");
    request_begin(c, &hr, &info);

    bool body_expected = info.framing == H1_BODY_CHUNKED ||
                         (info.framing == H1_BODY_LENGTH && info.content_length > 0);
    if (info.expect_continue && hr.minor == 1 && body_expected)
        evbuffer_add(out, "HTTP/1.1 100 Continue\r\n\r\n", 25);

    if (c->req.ep && c->req.ep->echo && !c->req.bad) {
        /* the echoed head starts at the method: skipped leading empty lines are not part of it */
        size_t skip = (size_t)(hr.method - buf);
        size_t head_len = (size_t)n - skip;
        evbuffer_drain(in, skip);
        c->req.echo_chunked = info.framing == H1_BODY_CHUNKED;
        if (c->req.echo_chunked) {
            put_head(c, 200, "application/octet-stream", -1);
            if (!c->req.head)
                evbuffer_add_printf(out, "%zx\r\n", head_len);
        } else {
            put_head(c, 200, "application/octet-stream", (int64_t)(head_len + c->req.body_left));
        }
        if (c->req.head) {
            evbuffer_drain(in, head_len);
        } else {
            evbuffer_remove_buffer(in, out, head_len);
            if (c->req.echo_chunked)
                evbuffer_add(out, "\r\n", 2);
        }
        conn_set_state(c, CONN_ECHO);
        return 0;
    }
    evbuffer_drain(in, (size_t)n);
    conn_set_state(c, CONN_BODY);
    return 0;
}

static int step_body(struct conn *c)
{
    int rc;
    while ((rc = body_step(c, false)) == 0)
        ;
    if (rc == -2) {
        if (!c->peer_eof)
            return -2;
        conn_set_state(c, CONN_FLUSH); /* truncated body: there is no request to answer */
        return 0;
    }
    if (rc == -1)
        return send_error(c, 400, c->req.chunked.error ? c->req.chunked.error : "bad chunk");
    if (c->req.bad)
        return send_text(c, 400, "400 %s: %s\n", status_phrase(400), c->req.bad);
    if (!c->req.ep)
        return send_text(c, 404, "404 %s: no such endpoint (GET / lists them)\n",
                         status_phrase(404));
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

static int step_echo(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    for (;;) {
        /* back-pressure: stop reading the client while it does not read us */
        if (evbuffer_get_length(out) > SIM_OUT_HIGH) {
            conn_reading(c, false);
            return -2;
        }
        int rc = body_step(c, !c->req.head);
        if (rc == 0)
            continue;
        if (rc == -2) {
            if (!c->peer_eof)
                return -2;
            conn_set_state(c, CONN_FLUSH); /* the short echo and the close tell the story */
            return 0;
        }
        if (rc == -1) {
            /* the 200 is already out: closing is the only way left to say "broken" */
            conn_set_state(c, CONN_FLUSH);
            return 0;
        }
        if (c->req.echo_chunked && !c->req.head)
            evbuffer_add(out, "0\r\n\r\n", 5);
        return conn_finish(c);
    }
}

static int step_bytes(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    /* refill only once the client drained us to the low watermark: memory stays bounded */
    if (c->req.left > 0 && evbuffer_get_length(out) > SIM_OUT_LOW)
        return -2;
    while (c->req.left > 0 && evbuffer_get_length(out) < SIM_OUT_HIGH) {
        size_t n = c->req.left < SIM_BLOCK ? (size_t)c->req.left : SIM_BLOCK;
        if (evbuffer_add_reference(out, sim_block, n, NULL, NULL) < 0) {
            c->why = "out of memory";
            return -1;
        }
        c->req.left -= n;
    }
    if (c->req.left > 0)
        return -2;
    return conn_finish(c);
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
    /* half-close and drain rather than close: unread input would make the kernel send RST,
     * which can destroy the response before the client reads it */
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    if (c->peer_eof) {
        c->why = "done";
        return -1;
    }
    conn_set_state(c, CONN_LINGER);
    conn_arm(c, SIM_LINGER_MS);
    return -2;
}

static int step_linger(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (!c->peer_eof)
        return -2;
    c->why = "done";
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
        case CONN_WAIT: return 0; /* conn->timer drives it */
        case CONN_BYTES: rc = step_bytes(c); break;
        case CONN_ECHO: rc = step_echo(c); break;
        case CONN_FLUSH: rc = step_flush(c); break;
        case CONN_LINGER: rc = step_linger(c); break;
        default: rc = -1; c->why = "bad state"; break;
        }
        if (rc == -2)
            return 0;
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
    if (what & BEV_EVENT_EOF) {
        /* a half-close still gets every answer already asked for */
        c->peer_eof = true;
        if (conn_advance(c) < 0)
            conn_teardown(c, c->why);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == CONN_LINGER) {
        conn_teardown(c, "linger timeout");
        return;
    }
    if (c->state != CONN_WAIT)
        return;
    if (c->req.ep->tick(c) < 0 || conn_advance(c) < 0)
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
    c->state = CONN_HEAD;
    c->why = "closed";
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, SIM_IN_HIGH);
    bufferevent_setwatermark(c->bev, EV_WRITE, SIM_OUT_LOW, 0);
    bufferevent_set_max_single_write(c->bev, SIM_OUT_HIGH);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = sim.conns;
    if (sim.conns)
        sim.conns->prev = c;
    sim.conns = c;
    return;
fail:
    evutil_closesocket(fd);
    free(c);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    fprintf(stderr, "sim: accept: %s\n", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
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
    sim.base = event_base_new();
    if (!sim.base) {
        fprintf(stderr, "sim: event_base_new failed\n");
        goto fail;
    }
    sim.listener = evconnlistener_new_bind(sim.base, on_accept, NULL,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                               LEV_OPT_REUSEABLE,
                                           -1, (struct sockaddr *)&sin, sizeof(sin));
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
    if (!sim.stop) {
        fprintf(stderr, "sim: event_new failed\n");
        goto fail;
    }
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
    if (sim.stop)
        event_free(sim.stop);
    if (sim.listener)
        evconnlistener_free(sim.listener);
    if (sim.base)
        event_base_free(sim.base);
    sim.stop = NULL;
    sim.listener = NULL;
    sim.base = NULL;
    pthread_mutex_unlock(&sim.lock);
    return -1;
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
    event_free(sim.stop);
    event_base_free(sim.base);
    sim.listener = NULL;
    sim.stop = NULL;
    sim.base = NULL;
    sim.port = 0;
    pthread_mutex_unlock(&sim.lock);
}
