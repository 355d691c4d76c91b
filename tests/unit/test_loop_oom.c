/*
 * test_exchange_oom.c — the responses Portico writes itself, out of memory: an exchange run as
 * the probe runs one (a loop set up as a worker's, a downstream that records what it is given),
 * with each libevent allocation failing in turn (alloc_fail.h). Whatever fails, a response whose
 * head said a length either carries that many bytes or ends cut short (END_ABORT: the client's
 * connection closes), never complete with fewer: a keep-alive client would read the next
 * response as the rest of this one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "alloc_fail.h"
#include "portico/config.h"
#include "portico/deadline.h"
#include "portico/downstream.h"
#include "portico/exchange.h"
#include "portico/generation.h"
#include "portico/http1.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/recent.h"
#include "portico/trace.h"
#include "portico/upstream.h"
#include "portico/util.h"

#define MAX_ALLOCS 400 /* an answer of Portico's own makes fewer allocations than this */

/* ---- a downstream that records ---- */

struct recorder {
    struct event_base *base;
    struct evbuffer *out, *in;
    bool got_head, sized, done;
    uint64_t length;                   /* the head's Content-Length, when sized */
    uint64_t body;                     /* body bytes given */
    enum exchange_end end;
};

static void ds_interim(void *arg, const struct resp_head *head)
{
    (void)arg, (void)head;
}

static void ds_head(void *arg, const struct resp_head *head, struct body_sink *sink)
{
    struct recorder *r = arg;
    r->got_head = true;
    r->sized = head->framing == H1_BODY_LENGTH;
    r->length = head->content_length;
    *sink = (struct body_sink){.out = r->out};
}

static void ds_body(void *arg)
{
    struct recorder *r = arg;
    size_t n = evbuffer_get_length(r->out);
    r->body += n;
    evbuffer_drain(r->out, n);
}

static size_t ds_pending(void *arg)
{
    (void)arg;
    return 0;
}

static struct evbuffer *ds_request_input(void *arg)
{
    return ((struct recorder *)arg)->in;
}

static void ds_request_taken(void *arg, size_t queued)
{
    (void)arg, (void)queued;
}

static void ds_request_wait(void *arg, uint64_t body_timeout_ms)
{
    (void)arg, (void)body_timeout_ms;
}

static void ds_done(void *arg, enum exchange_end end)
{
    struct recorder *r = arg;
    ds_body(r); /* the last bytes come with done() */
    r->done = true;
    r->end = end;
    event_base_loopbreak(r->base);
}

static void ds_report(void *arg, const struct access_record *rec)
{
    (void)arg, (void)rec;
}

static const struct downstream_ops recorder_ops = {
    .interim = ds_interim,
    .head = ds_head,
    .body = ds_body,
    .pending = ds_pending,
    .request_input = ds_request_input,
    .request_taken = ds_request_taken,
    .request_wait = ds_request_wait,
    .done = ds_done,
    .report = ds_report,
};

/* ---- a worker's loop, as the probe sets one up (no resolver: nothing here looks up) ---- */

static struct generation *gen;

static int gen_setup(void **state)
{
    (void)state;
    struct config *cfg = cfg_load_string("[proxy]\naccess_log = off\n"
                                         "[upstream u]\norigin = 127.0.0.1:9\n"
                                         "[fault f503]\nprefix = /fault/\nstatus = 503\n",
                                         "oom.ini", NULL, stderr, NULL);
    gen = cfg ? generation_new(cfg, 1) : NULL;
    return gen ? 0 : -1;
}

static int gen_teardown(void **state)
{
    (void)state;
    generation_free(gen);
    return 0;
}

static void loop_up(struct loop *l)
{
    *l = (struct loop){.cfg = gen->cfg, .gen = gen, .state = LOOP_RUNNING, .id_salt = 1};
    TAILQ_INIT(&l->clients);
    TAILQ_INIT(&l->idle);
    TAILQ_INIT(&l->proxy_waiting);
    l->base = event_base_new();
    assert_non_null(l->base);
    l->clock = deadline_clock_new(l->base);
    l->metrics = metrics_shard_create(NULL);
    l->recent = recent_shard_create(gen->number, 0);
    assert_non_null(l->clock);
    assert_non_null(l->metrics);
    assert_non_null(l->recent);
    assert_int_equal(upstream_pools_init(l), 0);
    trace_rng_init(&l->rng, 1);
}

static void loop_down(struct loop *l)
{
    upstream_pools_free(l);
    for (int i = 0; i < 50 && event_base_loop(l->base, EVLOOP_NONBLOCK) == 0; i++)
        ;
    deadline_clock_free(l->clock);
    event_base_free(l->base);
    metrics_shard_retire(l->metrics);
    recent_shard_retire(l->recent);
    exchange_spare_free(l);
}

/* Runs request text through an exchange with allocation fail_at failing (-1: none); false when
 * the exchange could not even start (an allocation of its own failed). */
static bool run(const char *text, long fail_at, struct recorder *r)
{
    static const struct peer peer = {.conn_id = 1, .ip = "127.0.0.1"};
    struct loop l;
    loop_up(&l);
    *r = (struct recorder){.base = l.base, .out = evbuffer_new(), .in = evbuffer_new()};
    assert_non_null(r->out);
    assert_non_null(r->in);
    struct h1_request req;
    struct h1_error err;
    struct h1_limits lim = {8192, 16384};
    size_t n = strlen(text);
    assert_int_equal(h1_parse_request(text, n, &lim, &req, &err), (int)n);
    struct downstream ds = {.ops = &recorder_ops, .ctx = r, .peer = &peer,
                            .proto = PROTO_HTTP11};
    alloc_fail_at(fail_at);
    struct exchange *ex = exchange_start(&l, &ds, text, n, &req, now_us());
    if (ex) {
        exchange_run(ex);
        for (int turns = 0; !r->done && turns < 100; turns++) {
            struct timeval tick = {0, 20000};
            event_base_loopexit(l.base, &tick);
            event_base_dispatch(l.base);
        }
        if (!r->done)
            exchange_cancel(ex, HTTP_CLIENT_CLOSED_REQUEST, "test stopped");
    }
    alloc_fail_at(-1);
    evbuffer_free(r->out);
    evbuffer_free(r->in);
    loop_down(&l);
    return ex != NULL;
}

static const struct {
    const char *why;
    const char *request;
    int status;
} rows[] = {
    {"TRACE with Max-Forwards: 0 (answered 405 with a body)",
     "TRACE / HTTP/1.1\r\nHost: t\r\nMax-Forwards: 0\r\n\r\n", 405},
    {"a fault's 503 (an error page)", "GET /fault/x HTTP/1.1\r\nHost: t\r\n\r\n", 503},
};

static void test_own_answer_whole_or_cut(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct recorder r;
        assert_true(run(rows[i].request, -1, &r));
        assert_true(r.done && r.got_head && r.sized && r.length > 0);
        assert_int_equal(r.body, r.length);
        assert_int_equal(r.end, END_KEEP);
        unsigned cut = 0;
        bool reached = true;
        for (long n = 0; n < MAX_ALLOCS && reached; n++) {
            bool started = run(rows[i].request, n, &r);
            reached = alloc_fail_count > n; /* the nth allocation came */
            if (!started || !r.got_head || !r.sized || r.body == r.length)
                continue;
            if (r.end != END_ABORT)
                fail_msg("%s, allocation %ld failing: %llu body bytes of %llu, yet ended %d "
                         "(not cut short)", rows[i].why, n, (unsigned long long)r.body,
                         (unsigned long long)r.length, (int)r.end);
            cut++;
        }
        assert_false(reached); /* the sweep went past the last allocation */
        print_message("%s: %u of the failures cut the body short, each END_ABORT\n",
                      rows[i].why, cut);
        assert_true(cut > 0); /* the sweep did reach the body's addition */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_answer_whole_or_cut),
    };

    (void)alloc_fail_all;
    alloc_fail_install(); /* before libevent allocates anything */
    return cmocka_run_group_tests(tests, gen_setup, gen_teardown);
}
