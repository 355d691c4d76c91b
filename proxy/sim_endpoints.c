/*
 * sim_endpoints.c — what the simulator origin answers: the endpoint table, strict parsing of
 * each endpoint's path argument and query, and the handlers. The server side (sockets, request
 * reading, the connection state machine, response writing) is sim.c; the two share
 * sim_conn.h.
 *
 * Well-behaved endpoints answer with any status, delay, size, pace or 1xx sequence; the
 * misbehaving ones (/close, /reset, /garbage, /partial, /hang) fail the way broken origins do,
 * so a staging set-up can show every failure type of the proxy without a server of its own.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "portico/h1out.h"
#include "portico/sim_conn.h"
#include "portico/status.h"
#include "portico/util.h"

/* ---- arguments ---- */

/* Exactly three digits: "099" and "1000" are not status codes. */
static int parse_code(const char *s, size_t len, uint64_t *out)
{
    return len == 3 ? parse_uint_span(s, len, 0, 999, out) : -1;
}

/* Only the endpoint's documented parameters, each at most once, each a number in range. */
static const char *parse_query(struct conn *c, const struct sim_endpoint *ep, const char *q,
                               size_t len)
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
        if (parse_uint_span(val, val_len, 0, ep->params[i].max, &c->req.query[i]) < 0 ||
            c->req.query[i] < ep->params[i].min)
            return ep->params[i].why;
        if (!amp)
            return NULL;
        pos += seg_len + 1;
    }
}

static const char *arg_status(struct conn *c, const char *arg, size_t len)
{
    if (parse_code(arg, len, &c->req.arg) < 0 || c->req.arg < 200 || c->req.arg > 599)
        return "status code must be three digits in 200-599";
    return NULL;
}

static const char *arg_ms(struct conn *c, const char *arg, size_t len)
{
    if (parse_uint_span(arg, len, 0, SIM_MAX_MS, &c->req.arg) < 0)
        return "milliseconds must be a number in 0-600000";
    return NULL;
}

static const char *arg_bytes(struct conn *c, const char *arg, size_t len)
{
    if (parse_uint_span(arg, len, 0, SIM_MAX_BYTES, &c->req.arg) < 0)
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
            code < 100 || code > 199 || code == HTTP_SWITCHING_PROTOCOLS)
            return why;
        c->req.codes[c->req.ncodes++] = (int)code;
        if (!comma)
            return NULL;
        pos += n + 1;
    }
}

/* ---- well-behaved endpoints ---- */

static int ep_index(struct conn *c);

/* Waits c->req.arg ms (or the first query value for /status), then the endpoint's tick. */
static int wait_then_tick(struct conn *c, uint64_t ms)
{
    sim_mark(&c->req.t0);
    sim_set_state(c, CONN_WAIT);
    sim_arm(c, ms);
    return 0;
}

/* Whether ms have passed since the wait began; if not, the timer is armed for the rest. A timer
 * may wake a fraction of a millisecond early (libevent counts from the time it cached when its
 * loop last woke, before the wait began), and an answer promised after ms must not come
 * sooner: the elapsed time is truncated to whole milliseconds, so the rest is never 0. */
static bool waited(struct conn *c, uint64_t ms)
{
    uint64_t done = sim_elapsed_ms(&c->req.t0);
    if (done >= ms)
        return true;
    sim_arm(c, ms - done);
    return false;
}

static int tick_status(struct conn *c)
{
    int code = (int)c->req.arg;
    if (!waited(c, c->req.query[0]))
        return 0;
    if (code == HTTP_RESET_CONTENT) { /* "MUST NOT generate content" (RFC 9110 15.3.6) */
        if (sim_put_head(c, code, NULL, 0) < 0)
            return -1;
        return sim_finish(c);
    }
    return sim_send_text(c, code, "%d %s\n", code, status_phrase(code));
}

static int ep_status(struct conn *c)
{
    if (c->req.query[0] > 0)
        return wait_then_tick(c, c->req.query[0]);
    return tick_status(c);
}

static int ep_delay(struct conn *c)
{
    return wait_then_tick(c, c->req.arg);
}

static int tick_delay(struct conn *c)
{
    if (!waited(c, c->req.arg))
        return 0;
    return sim_send_text(c, HTTP_OK, "waited %" PRIu64 " ms (asked for %" PRIu64 " ms)\n",
                         sim_elapsed_ms(&c->req.t0), c->req.arg);
}

/* A body of n pattern bytes, streamed by the server (CONN_BYTES) at its own pace: as fast as
 * the client reads (pace_ms 0), or spread evenly over pace_ms. */
static int stream_pattern(struct conn *c, uint64_t n, uint64_t pace_ms)
{
    if (sim_put_head(c, HTTP_OK, "application/octet-stream", (int64_t)n) < 0)
        return -1;
    c->req.left = c->req.head ? 0 : n;
    c->req.pace_ms = pace_ms;
    sim_mark(&c->req.t0);
    sim_set_state(c, CONN_BYTES);
    return 0;
}

static int ep_bytes(struct conn *c)
{
    return stream_pattern(c, c->req.arg, 0);
}

static int ep_drip(struct conn *c)
{
    return stream_pattern(c, c->req.query[0], c->req.query[1]);
}

static int ep_interim(struct conn *c)
{
    /* a wait before each code and before the 200: together within SIM_MAX_MS, like every other
     * duration of the simulator (32 codes 60 s apart were 33 minutes) */
    if ((c->req.ncodes + 1) * c->req.query[0] > SIM_MAX_MS)
        return sim_send_text(c, HTTP_BAD_REQUEST, "%d %s: %s\n", HTTP_BAD_REQUEST,
                             status_phrase(HTTP_BAD_REQUEST),
                             "(codes + 1) x delay_ms must be at most 600000");
    sim_set_state(c, CONN_WAIT);
    sim_arm(c, c->req.query[0]);
    return 0;
}

static int tick_interim(struct conn *c)
{
    char list[SIM_MAX_INTERIM * 5 + 1];
    size_t n = 0;
    /* delay_ms before each interim response and before the final one, so a client sees every
     * 1xx arrive on its own */
    if (c->req.sent < c->req.ncodes) {
        if (sim_put_interim(c, c->req.codes[c->req.sent++]) < 0)
            return -1;
        sim_arm(c, c->req.query[0]);
        return 0;
    }
    if (c->req.minor == 0)
        return sim_send_text(c, HTTP_OK, "interim responses sent: none (HTTP/1.0 client)\n");
    for (size_t i = 0; i < c->req.ncodes; i++)
        n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d", i ? "," : "", c->req.codes[i]);
    return sim_send_text(c, HTTP_OK, "interim responses sent: %s\n", list);
}

static int ep_slow(struct conn *c)
{
    return wait_then_tick(c, c->req.arg < c->req.query[0] ? c->req.arg : c->req.query[0]);
}

static int tick_slow(struct conn *c)
{
    uint64_t done = sim_elapsed_ms(&c->req.t0);
    if (done >= c->req.arg)
        return sim_send_text(c, HTTP_OK, "slow: %" PRIu64 " ms, %zu x 102 Processing sent\n",
                             c->req.arg, c->req.sent);
    /* a wake a hair early (waited()) is not a beat: a 102 right before the final answer is
     * noise, and the answer must not come before its time either */
    if (done + 1 >= c->req.arg) {
        sim_arm(c, c->req.arg - done);
        return 0;
    }
    if (sim_put_interim(c, HTTP_PROCESSING) < 0)
        return -1;
    if (c->req.minor == 1)
        c->req.sent++;
    /* the next beat on the schedule from t0, after the beat this wake stands for: a wake up to
     * 5 ms early is that beat (one 2 ms early, 398 for 400, beat again at 400: test_interim's raw
     * /slow row, loaded), a late one the beat before it. Re-armed from each wake, a loaded host's
     * delays added up and put an extra 102 before the answer. (interval is 10 ms at least.) */
    uint64_t interval = c->req.query[0];
    uint64_t next = ((done + 5) / interval + 1) * interval;
    sim_arm(c, (next < c->req.arg ? next : c->req.arg) - done);
    return 0;
}

/* ---- misbehaving endpoints: each fails like a broken origin, after reading the request ---- */

/* Closes with FIN and no byte of response (a proxy sees an empty response). */
static int ep_close(struct conn *c)
{
    c->req.keep_alive = false;
    sim_set_state(c, CONN_FLUSH);
    return 0;
}

/* Closes with RST (sim.c: step_flush), after the answers to requests pipelined before it. */
static int ep_reset(struct conn *c)
{
    c->req.keep_alive = false;
    c->req.reset = true;
    sim_mark(&c->req.t0);
    sim_set_state(c, CONN_FLUSH);
    return 0;
}

/* Bytes no HTTP parser accepts as a status line (text, NUL, 0xff), then FIN. */
static int ep_garbage(struct conn *c)
{
    static const char garbage[] = "portico-sim /garbage: this is not an HTTP response\r\n"
                                  "\x00\x01\x02\xfe\xff\r\n\r\n";
    if (evbuffer_add(sim_out(c), garbage, sizeof(garbage) - 1) < 0) {
        c->why = "out of memory";
        return -1;
    }
    c->req.keep_alive = false;
    sim_set_state(c, CONN_FLUSH);
    return 0;
}

/* Half a response head (the status line and the start of a field), then silence for as long as
 * the client stays. */
static int ep_partial(struct conn *c)
{
    static const char half_field[] = "Content-Type: text/pl";
    if (h1out_status_line(sim_out(c), HTTP_OK, NULL, 0) < 0 ||
        evbuffer_add(sim_out(c), half_field, sizeof(half_field) - 1) < 0) {
        c->why = "out of memory";
        return -1;
    }
    sim_set_state(c, CONN_HANG);
    return 0;
}

/* Never answers: the request was read, nothing will come back. */
static int ep_hang(struct conn *c)
{
    sim_set_state(c, CONN_HANG);
    return 0;
}

/* ---- the table ---- */

static const struct sim_param status_params[] = {
    { "delay_ms", 0, SIM_MAX_MS, 0, "delay_ms must be a number in 0-600000" },
};

static const struct sim_param drip_params[] = {
    { "bytes", 0, SIM_MAX_BYTES, 1024, "bytes must be a number in 0-1099511627776" },
    { "duration_ms", 0, SIM_MAX_MS, 1000, "duration_ms must be a number in 0-600000" },
};

static const struct sim_param interim_params[] = {
    { "delay_ms", 0, 60000, 100, "delay_ms must be a number in 0-60000" },
};

static const struct sim_param slow_params[] = {
    { "interval_ms", 10, SIM_MAX_MS, 1000, "interval_ms must be a number in 10-600000" },
};

#define PARAMS(a) (a), (sizeof(a) / sizeof((a)[0]))
#define NO_PARAMS NULL, 0

/* Matched in order: the first row whose path matches the request path serves it. */
static const struct sim_endpoint endpoints[] = {
    { "/", "/", "this list", false, NULL, NO_PARAMS, ep_index, NULL },
    { "/status/", "/status/{code}?delay_ms=N",
      "answer with status {code} (200-599) and its reason phrase, after N ms (default 0)", false,
      arg_status, PARAMS(status_params), ep_status, tick_status },
    { "/delay/", "/delay/{ms}", "answer 200 after {ms} milliseconds (0-600000)", false, arg_ms,
      NO_PARAMS, ep_delay, tick_delay },
    { "/bytes/", "/bytes/{n}", "stream {n} bytes of application/octet-stream (0-2^40)", false,
      arg_bytes, NO_PARAMS, ep_bytes, NULL },
    { "/drip", "/drip?bytes=N&duration_ms=D",
      "N bytes (default 1024) dripped evenly over D ms (default 1000)", false, NULL,
      PARAMS(drip_params), ep_drip, NULL },
    { "/echo", "/echo", "send back the request head as received, then the request body", true,
      NULL, NO_PARAMS, NULL, NULL },
    { "/interim/", "/interim/{codes}?delay_ms=N",
      "send each 1xx in {codes} (e.g. 103,102), then 200, N ms apart (default 100, in all at "
      "most 600000)", false,
      arg_interim, PARAMS(interim_params), ep_interim, tick_interim },
    { "/slow/", "/slow/{ms}?interval_ms=I",
      "send 102 Processing every I ms (default 1000) for {ms} ms, then 200", false, arg_ms,
      PARAMS(slow_params), ep_slow, tick_slow },
    { "/close", "/close", "read the request, close without a response (FIN)", false, NULL,
      NO_PARAMS, ep_close, NULL },
    { "/reset", "/reset", "read the request, reset the connection (RST)", false, NULL,
      NO_PARAMS, ep_reset, NULL },
    { "/garbage", "/garbage", "answer bytes that are not HTTP, then close", false, NULL,
      NO_PARAMS, ep_garbage, NULL },
    { "/partial", "/partial", "send half a response head, then nothing more", false, NULL,
      NO_PARAMS, ep_partial, NULL },
    { "/hang", "/hang", "read the request, never answer", false, NULL, NO_PARAMS, ep_hang,
      NULL },
};

#define NENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

static int ep_index(struct conn *c)
{
    struct evbuffer *body = evbuffer_new();
    int rc = 0;
    if (!body) {
        c->why = "out of memory";
        return -1;
    }
    rc |= evbuffer_add_printf(body, "portico-sim: the built-in origin simulator\n\n");
    for (size_t i = 0; i < NENDPOINTS; i++)
        rc |= evbuffer_add_printf(body, "%-30s %s\n", endpoints[i].usage, endpoints[i].about);
    rc |= evbuffer_add_printf(body, "\nAny other path answers 404. HEAD, keep-alive, pipelining, "
                                    "Expect: 100-continue and chunked request bodies work "
                                    "everywhere.\n");
    if (rc < 0 || sim_put_head(c, HTTP_OK, "text/plain; charset=utf-8",
                               (int64_t)evbuffer_get_length(body)) < 0) {
        evbuffer_free(body);
        c->why = "out of memory";
        return -1;
    }
    if (!c->req.head)
        evbuffer_add_buffer(sim_out(c), body);
    evbuffer_free(body);
    return sim_finish(c);
}

/* ---- routing ---- */

/* Case-insensitive prefix test for the scheme of an absolute-form target. */
static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

void sim_route(struct conn *c, const char *target, size_t len)
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
        const struct sim_endpoint *ep = &endpoints[i];
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
