/*
 * probe.c — `portico probe`. See probe.h.
 *
 * Nothing here sends a byte itself. The probe builds what a worker has — a generation, an event
 * base with the worker's resolver (loop_dns_init), keep-alive pools, a metrics shard and a
 * recent-minutes shard — and hands one request head to exchange_start like client.c does. Its
 * downstream takes the response head and drains the body, and the exchange's report op (the
 * access record, handed over before done()) gives the outcome and the phase timings that the
 * timeline prints. So "is it DNS, TCP, TLS or the app?" is answered by the very code that
 * answers the clients.
 */
#include "portico/probe.h"

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/deadline.h"
#include "portico/downstream.h"
#include "portico/exchange.h"
#include "portico/fault.h"
#include "portico/fmt.h"
#include "portico/generation.h"
#include "portico/http1.h"
#include "portico/log.h"
#include "portico/loop.h"
#include "portico/metrics.h"
#include "portico/probe_request.h"
#include "portico/recent.h"
#include "portico/request.h"
#include "portico/route.h"
#include "portico/sim.h"
#include "portico/status.h"
#include "portico/upstream.h"
#include "portico/util.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "0.0.0"
#endif

#define PROBE_BODY_MAX (64u * 1024 * 1024) /* body bytes read before the probe stops reading */
#define PROBE_BODY_MS 30000                /* and for how long */
#define PROBE_INTERIM_MAX 64               /* 1xx listed; above the most an exchange relays */

/* How the probe ended, for the timeline and the exit status. */
#define PROBE_END_LIST(X)                                                                          \
    X(PROBE_ANSWERED, "answered")   /* the origin answered (any status) */                        \
    X(PROBE_FAILED, "failed")       /* an upstream failure, or no answer from the origin */

enum probe_end {
#define X(id, name) id,
    PROBE_END_LIST(X)
#undef X
};

static const char *const probe_end_names[] = {
#define X(id, name) [id] = name,
    PROBE_END_LIST(X)
#undef X
};

/* What the exchange reported, copied out of the access record (borrowed only for the call). */
struct probe_result {
    bool reported;
    int status;
    int upstream_status;
    enum failure_type failure;
    enum phase phase;
    struct timings timings;
    uint64_t limit_ms;
    unsigned attempts;
    bool reused;
    bool aborted;
    uint64_t bytes_out;
    char origin[300];
    char detail[256];
    char request_id[48];
    char fault[FAULT_NAME_MAX];        /* the fault rule that shaped the exchange, "" if none */
    char sticky[16];                   /* a sticky upstream's "hit", "new", "redispatched"; "" */
    uint16_t interim[PROBE_INTERIM_MAX]; /* the 1xx relayed, as the access log lists them */
    unsigned ninterim;
};

/* The downstream the probe's exchange talks to. */
struct probe_ds {
    struct event_base *base;           /* borrowed */
    struct evbuffer *out;              /* the response body lands here and is dropped */
    struct evbuffer *in;               /* request body: none */
    struct event *body_timer;          /* the wait for the head (head_ms), then PROBE_BODY_MS */
    uint64_t head_ms;                  /* longest wait for the head; 0: total_timeout bounds it */
    bool got_head;
    bool done;                         /* the exchange is over (done() came) */
    bool cut;                          /* the probe stopped reading the body itself */
    bool gave_up;                      /* ... or stopped waiting for the head (head_ms) */
    char gave_up_why[160];
    uint64_t body_bytes;
    char location[512];                /* a redirect's Location, "" for none (cut at 511) */
    const struct sticky_conf *sticky;  /* the route's upstream's, or NULL (borrowed) */
    char pin[128];                     /* the sticky cookie Portico set, "NAME=VALUE"; "" */
    struct probe_result res;
};

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* The 1xx are listed from the report (ds_report): the exchange's own list of what it relayed,
 * the one the access log prints. */
static void ds_interim(void *arg, const struct resp_head *head)
{
    (void)arg, (void)head;
}

static void ds_head(void *arg, const struct resp_head *head, struct body_sink *sink)
{
    struct probe_ds *p = arg;
    p->got_head = true;
    /* borrowed for the call: copied. A route's return redirect says where it sends the client */
    int loc = head->status / 100 == 3 ? h1_find_field(head->fields, head->nfields, "location", 0)
                                      : -1;
    if (loc >= 0)
        snprintf(p->location, sizeof(p->location), "%.*s", (int)head->fields[loc].value_len,
                 head->fields[loc].value);
    /* the pin a client would send back: the sticky cookie's NAME=VALUE, its attributes off */
    for (int i = p->sticky ? h1_find(head->fields, head->nfields, H1_F_SET_COOKIE, 0) : -1;
         i >= 0; i = h1_find(head->fields, head->nfields, H1_F_SET_COOKIE, (size_t)i + 1)) {
        const struct h1_field *f = &head->fields[i];
        size_t n = p->sticky->name_len;
        if (f->value_len > n && memcmp(f->value, p->sticky->name, n) == 0 && f->value[n] == '=') {
            const char *semi = memchr(f->value, ';', f->value_len); /* no NUL: bounded */
            snprintf(p->pin, sizeof(p->pin), "%.*s",
                     (int)(semi ? (size_t)(semi - f->value) : f->value_len), f->value);
        }
    }
    sink->out = p->out;
    sink->chunked = false;
    struct timeval tv = tv_from_ms(PROBE_BODY_MS);
    evtimer_add(p->body_timer, &tv);
}

static void ds_body(void *arg)
{
    struct probe_ds *p = arg;
    size_t n = evbuffer_get_length(p->out);
    p->body_bytes += n;
    evbuffer_drain(p->out, n);
    if (p->body_bytes > PROBE_BODY_MAX) {
        p->cut = true;
        event_base_loopbreak(p->base); /* the exchange is cancelled once its callback returned */
    }
}

static size_t ds_pending(void *arg)
{
    (void)arg;
    return 0; /* the probe takes everything at once */
}

static struct evbuffer *ds_request_input(void *arg)
{
    return ((struct probe_ds *)arg)->in;
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
    struct probe_ds *p = arg;
    (void)end;
    ds_body(p); /* the last bytes come with done() */
    p->done = true;
    event_base_loopbreak(p->base);
}

static void ds_report(void *arg, const struct access_record *r)
{
    struct probe_ds *p = arg;
    struct probe_result *res = &p->res;
    res->reported = true;
    res->status = r->status;
    res->upstream_status = r->upstream_status;
    res->failure = r->failure;
    res->phase = r->phase;
    res->timings = r->timings;
    res->limit_ms = r->limit_ms;
    res->attempts = r->attempts;
    res->reused = r->reused;
    res->aborted = r->aborted;
    res->bytes_out = r->bytes_out;
    copy_str(res->origin, sizeof(res->origin), r->origin);
    copy_str(res->detail, sizeof(res->detail), r->detail);
    copy_str(res->request_id, sizeof(res->request_id), r->request_id);
    copy_str(res->fault, sizeof(res->fault), r->fault);
    copy_str(res->sticky, sizeof(res->sticky), r->sticky);
    res->ninterim = MIN(r->ninterim, (unsigned)ARRAY_LEN(res->interim));
    for (unsigned i = 0; i < res->ninterim; i++) /* borrowed for the call: copied */
        res->interim[i] = r->interim_codes[i];
}

static void body_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct probe_ds *p = arg;
    p->cut = true;
    if (!p->got_head) {
        p->gave_up = true;
        snprintf(p->gave_up_why, sizeof(p->gave_up_why),
                 "the probe stopped waiting after %llu ms: no whole response head yet and "
                 "total_timeout is off (--total-timeout bounds it)",
                 (unsigned long long)p->head_ms);
    }
    event_base_loopbreak(p->base);
}

static const struct downstream_ops probe_ops = {
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

/* ---- the URL ---- */

int probe_parse_url(const char *url, struct probe_url *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        rest = url + 8;
        out->tls = true;
    } else {
        *why = "the URL must start with http:// or https://";
        return -1;
    }
    size_t alen = strcspn(rest, "/?#");
    if (alen == 0 || alen >= sizeof(out->authority)) {
        *why = alen ? "the host is too long" : "the URL has no host";
        return -1;
    }
    if (memchr(rest, '@', alen)) {
        *why = "user information in the URL is not supported";
        return -1;
    }
    for (size_t i = 0; i < strlen(url); i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
            *why = "the URL has spaces or control characters (percent-encode them)";
            return -1;
        }
    memcpy(out->authority, rest, alen);
    out->authority[alen] = '\0';
    /* no length of its own: a path is as long as the configuration's max_request_line lets it
     * be, and the request's parser says when it is not (it was 2 KiB, a quarter of the default) */
    out->path = rest + alen;
    out->path_len = strcspn(out->path, "#");
    out->port = out->tls ? 443 : 80;
    char hostport[320];
    const char *colon = strrchr(out->authority, ':');
    bool has_port = colon && (out->authority[0] != '[' || colon > strchr(out->authority, ']'));
    if (has_port) {
        snprintf(hostport, sizeof(hostport), "%s", out->authority);
    } else {
        snprintf(hostport, sizeof(hostport), "%s:%u", out->authority, out->port);
    }
    const char *perr = NULL;
    if (split_host_port(hostport, out->host, sizeof(out->host), &out->port, &perr) != 0) {
        *why = perr ? perr : "bad host or port";
        return -1;
    }
    return 0;
}

/* ---- options ---- */

struct probe_opts {
    const char *config;                /* -c FILE, or NULL */
    const char *url;
    uint64_t timers_ms[TIMER_COUNT];   /* --*-timeout */
    bool timer_set[TIMER_COUNT];
    bool profile_set;
    enum error_profile profile;
    bool json;
    struct probe_request rq;           /* -X, -H, -d, --data-binary */
};

/* The probe's request as a client sends it, read as a worker reads one. */
struct probe_head {
    struct evbuffer *buf;              /* the head's bytes: req's fields point into them */
    const char *head;
    size_t len;
    struct h1_request req;
    struct h1_info info;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: portico probe [-c FILE] URL [-X METHOD | -I] [-H 'Name: value']...\n"
            "                     [-d DATA | --data-binary DATA] [--dns-timeout D]\n"
            "                     [--connect-timeout D] [--tls-timeout D] [--send-timeout D]\n"
            "                     [--first-byte-timeout D] [--read-timeout D] [--total-timeout D]\n"
            "                     [--profile standard|cloudflare|proxy] [--json]\n"
            "Sends one request for URL the way Portico would (with -c: through FILE's route and\n"
            "upstream for the request's host, path, method and fields; without: straight to the\n"
            "URL's host) and prints each phase with its duration, the outcome, the failure type\n"
            "and the status of each error profile. As in curl: -X (--request) sets the method\n"
            "(-I, --head: HEAD), -H (--header) adds a field or replaces the probe's own (Host,\n"
            "User-Agent, Accept; 'Name:' drops it, 'Name;' sends it empty), -d (--data) and\n"
            "--data-binary send a body (@FILE reads FILE, @- standard input; -d drops its CR and\n"
            "LF) with POST unless -X says otherwise. Exit status: 0 the origin (or a route's\n"
            "return) answered, 1 upstream failure, 2 bad usage.\n");
}

/* How much of a -H to echo in a refusal: its leading token characters, the name (never the
 * value, nor a terminal's control bytes). */
static size_t field_name_span(const char *arg)
{
    size_t n = 0;
    while (arg[n] && h1_is_tchar((unsigned char)arg[n]))
        n++;
    return n;
}

enum { OPT_PROFILE = 256, OPT_JSON, OPT_HELP, OPT_DATA_BINARY, OPT_TIMER }; /* + timer_kind */

/* Parses argv into o. 0, 1 (--help printed), or 2 with a message on stderr. */
static int parse_args(int argc, char **argv, struct probe_opts *o)
{
    static char names[TIMER_COUNT][32];
    struct option longopts[TIMER_COUNT + 10];
    int n = 0;
    for (int t = 0; t < TIMER_COUNT; t++) { /* --connect-timeout for connect_timeout ... */
        if (t == TIMER_QUEUE) /* one exchange alone never waits for a slot (max_conns) */
            continue;
        snprintf(names[t], sizeof(names[t]), "%s", timer_name((enum timer_kind)t));
        for (char *c = names[t]; *c; c++)
            if (*c == '_')
                *c = '-';
        longopts[n++] = (struct option){names[t], required_argument, NULL, OPT_TIMER + t};
    }
    longopts[n++] = (struct option){"profile", required_argument, NULL, OPT_PROFILE};
    longopts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
    longopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    longopts[n++] = (struct option){"config", required_argument, NULL, 'c'};
    longopts[n++] = (struct option){"request", required_argument, NULL, 'X'};
    longopts[n++] = (struct option){"head", no_argument, NULL, 'I'}; /* not --header's prefix */
    longopts[n++] = (struct option){"header", required_argument, NULL, 'H'};
    longopts[n++] = (struct option){"data", required_argument, NULL, 'd'};
    longopts[n++] = (struct option){"data-binary", required_argument, NULL, OPT_DATA_BINARY};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":c:hIX:H:d:", longopts, NULL)) != -1) {
        const char *why = NULL;
        if (opt == 'c') {
            o->config = optarg;
        } else if (opt == 'I') { /* curl's -I, --head: a HEAD request */
            probe_request_set_method(&o->rq, "HEAD", &why);
        } else if (opt == 'X' || opt == 'H' || opt == 'd' || opt == OPT_DATA_BINARY) {
            int bad = opt == 'X'   ? probe_request_set_method(&o->rq, optarg, &why)
                      : opt == 'H' ? probe_request_add_field(&o->rq, optarg, &why)
                                   : probe_request_set_data(&o->rq, optarg,
                                                            opt == OPT_DATA_BINARY, &why);
            if (bad) {
                /* one line: the argument up to a CR or LF it holds; a -H's name only (its
                 * value may be a Cookie or an Authorization, and stderr goes to CI logs) */
                size_t shown = opt == 'H' ? field_name_span(optarg) : strcspn(optarg, "\r\n");
                fprintf(stderr, "portico probe: %s '%.*s%s': %s\n",
                        opt == OPT_DATA_BINARY ? "--data-binary" : opt == 'X' ? "-X"
                        : opt == 'H' ? "-H" : "-d", (int)shown, optarg,
                        optarg[shown] ? "..." : "", why);
                return 2;
            }
        } else if (opt == OPT_JSON) {
            o->json = true;
        } else if (opt == OPT_HELP || opt == 'h') {
            usage(stdout);
            return 1;
        } else if (opt == OPT_PROFILE) {
            if (profile_from_name(optarg, &o->profile) != 0) {
                fprintf(stderr, "portico probe: unknown profile \"%s\" (standard, cloudflare, "
                                "proxy)\n", optarg);
                return 2;
            }
            o->profile_set = true;
        } else if (opt >= OPT_TIMER && opt < OPT_TIMER + TIMER_COUNT) {
            int t = opt - OPT_TIMER;
            uint64_t ms;
            if (parse_duration_ms(optarg, &ms) != 0 || ms > CFG_MAX_DURATION_MS ||
                (ms == 0 && t != TIMER_TOTAL)) {
                fprintf(stderr, "portico probe: --%s: \"%s\" is not a duration from 1ms to 168h\n",
                        names[t], optarg);
                return 2;
            }
            o->timers_ms[t] = ms;
            o->timer_set[t] = true;
        } else if (opt == ':') {
            fprintf(stderr, "portico probe: %s needs a value\n", argv[optind - 1]);
            return 2;
        } else if (optopt > 0 && optopt < OPT_PROFILE) {
            /* a short one (a long one's optopt is 0 or its OPT_ value): optind moves past its
             * word only after the word's last letter, so argv[optind - 1] may be the word
             * before it */
            fprintf(stderr, "portico probe: unknown option -%c\n", optopt);
            return 2;
        } else {
            fprintf(stderr, "portico probe: unknown option %s\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind == argc ? "portico probe: which URL? (portico probe --help)\n"
                                       : "portico probe: one URL at a time\n");
        return 2;
    }
    o->url = argv[optind];
    return 0;
}

/* ---- the configuration ---- */

/* A configuration of one upstream and one route for the URL, the defaults of Portico's. */
static struct config *synthetic_config(const struct probe_url *u)
{
    char text[1024];
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(text, sizeof(text),
             "[proxy]\nworkers = 1\naccess_log = off\n"
             "[upstream probe]\norigin = %s%s%s:%u\n%s"
             "[route probe]\nupstream = probe\n",
             v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->tls ? "tls = on\n" : "");
    return cfg_load_string(text, "(probe)", ".", stderr, NULL);
}

/* ---- the timeline ---- */

static const char *phase_of_slot(int slot)
{
    return timing_name((enum timing_phase)slot);
}

/* The timing slot where the exchange ended, or -1 (route, client side, done). */
static int failed_slot(const struct probe_result *r)
{
    return r->failure == FAIL_NONE ? -1 : timing_of_phase(r->phase);
}

/* The status a client gets in profile pr: the failure's, or once the head went out (aborted),
 * the origin's in every profile: a status sent cannot be taken back, the body is cut instead. */
static int profile_status(const struct probe_result *r, const struct config *cfg, int pr)
{
    if (r->aborted)
        return r->status;
    return failure_status(r->failure, (enum error_profile)pr,
                          pr == (int)cfg->profile ? cfg->error_overrides : NULL);
}

/* An answer Portico made itself with no failure behind it (a fault rule's status): a head went,
 * none of it the origin's. A drop or reset sends no head: that is no answer. */
static bool own_answer(const struct probe_ds *p)
{
    return p->got_head && p->res.failure == FAIL_NONE && !p->res.upstream_status;
}

/* A route's return answered: Portico's own answer is the one FILE gives that route. */
static bool route_answered(const struct probe_ds *p, const struct route_conf *route)
{
    return route->answer && own_answer(p) && p->res.status == route->answer->status;
}

/* Portico answered as the final recipient, no fault, no refusal: OPTIONS with Max-Forwards: 0
 * (RFC 9110 7.6.2). It read "failed", exit 1, for a 200 where nothing failed. */
static bool final_answer(const struct probe_ds *p)
{
    return own_answer(p) && !p->res.fault[0] && p->res.status < 400;
}

/* How the probe ends: the origin's head came whole (not cut after it), the route's return, or
 * Portico's own final answer. */
static bool answered(const struct probe_ds *p, const struct route_conf *route)
{
    return (p->res.upstream_status && !p->res.aborted) || route_answered(p, route) ||
           final_answer(p);
}

/* The request line of the report: the method, the names of the fields sent (values may be
 * credentials: not printed), the body's size. */
static void print_request(const struct probe_head *ph, size_t body_len)
{
    printf("  %-11s %.*s with", "request", (int)ph->req.method_len, ph->req.method);
    for (size_t i = 0; i < ph->req.nfields; i++)
        printf("%s %.*s", i ? "," : "", (int)ph->req.fields[i].name_len,
               ph->req.fields[i].name);
    if (h1_info_has_body(&ph->info))
        printf("; a body of %zu byte%s\n", body_len, body_len == 1 ? "" : "s");
    else
        printf("; no body\n");
}

static void print_text(const struct probe_opts *o, const struct probe_head *ph,
                       const struct route_conf *route, const struct config *cfg,
                       const struct probe_ds *p, enum probe_end end)
{
    const struct probe_result *r = &p->res;
    printf("portico probe %s\n", o->url);
    print_request(ph, o->rq.body_len);
    if (route->answer)
        printf("  %-11s route %s, return %d (Portico answers itself, no upstream), %s profile\n",
               "via", route->name, route->answer->status, profile_name(cfg->profile));
    else
        printf("  %-11s route %s, upstream %s, origin %s%s%s, %s profile%s", "via",
               route->name, cfg->upstreams[route->upstream].name,
               r->origin[0] ? r->origin : "(none chosen)", r->sticky[0] ? ", sticky " : "",
               r->sticky, profile_name(cfg->profile), r->reused ? ", pooled connection" : "");
    if (!route->answer && r->attempts > 1) /* a retry (a failure, retry_on): stderr says why */
        printf(", attempt %u", r->attempts);
    if (!route->answer)
        printf("\n");
    if (p->pin[0])
        printf("  %-11s %s (sticky: -H 'Cookie: %s' pins the next probe)\n", "set-cookie",
               p->pin, p->pin);
    if (r->fault[0]) /* a simulated failure is the real one on the wire: only this tells */
        printf("  %-11s %s (a fault rule shaped this exchange)\n", "fault", r->fault);
    int failed = failed_slot(r);
    if (r->failure != FAIL_NONE && r->phase == PHASE_ROUTE)
        printf("  %-11s %-12s <- %s\n", "route", "failed", failure_name(r->failure));
    for (int s = 0; s < TIMING_COUNT; s++) {
        char dur[32] = "-";
        if (timings_has(&r->timings, (enum timing_phase)s)) {
            struct fmt_buf b;
            fmt_init(&b, dur, sizeof(dur) - 4);
            fmt_ms3(&b, r->timings.us[s]);
            fmt_str(&b, " ms");
            dur[b.len] = '\0';
        }
        printf("  %-11s %12s", phase_of_slot(s), dur);
        if (s == failed) {
            printf("  <- %s", failure_name(r->failure));
            if (r->limit_ms)
                printf(" (limit %llu ms)", (unsigned long long)r->limit_ms);
        }
        printf("\n");
    }
    if (r->ninterim) {
        printf("  %-11s", "interim");
        for (unsigned i = 0; i < r->ninterim; i++)
            printf(" %d", r->interim[i]);
        printf("\n");
    }
    if (route_answered(p, route)) {
        printf("  %-11s answered: Portico's own answer: %d %s, %llu body bytes (route %s's "
               "return, no origin)\n", "outcome", r->status, status_phrase(r->status),
               (unsigned long long)r->bytes_out, route->name);
        if (p->location[0])
            printf("  %-11s %s\n", "location", p->location);
        return;
    }
    if (final_answer(p)) {
        printf("  %-11s answered: Portico's own answer: %d %s, %llu body bytes (the origin was "
               "not asked)\n", "outcome", r->status, status_phrase(r->status),
               (unsigned long long)r->bytes_out);
        if (r->detail[0])
            printf("  %-11s %s\n", "detail", r->detail);
        return;
    }
    if (end == PROBE_ANSWERED) {
        printf("  %-11s answered: %d %s, %llu body bytes%s\n", "outcome", r->upstream_status,
               status_phrase(r->upstream_status), (unsigned long long)r->bytes_out,
               p->cut ? " (the probe stopped reading)" : "");
        if (r->failure != FAIL_NONE)
            printf("  %-11s then %s in phase %s: %s\n", "", failure_name(r->failure),
                   phase_name(r->phase), r->detail);
        return;
    }
    if (own_answer(p)) { /* it said "failed: no answer in phase done" for a 503 sent */
        printf("  %-11s failed: Portico's own answer: %d %s, %llu body bytes (the origin was not "
               "asked)\n", "outcome", r->status, status_phrase(r->status),
               (unsigned long long)r->bytes_out);
        if (r->detail[0])
            printf("  %-11s %s\n", "detail", r->detail);
        return;
    }
    printf("  %-11s failed: %s in phase %s", "outcome",
           r->failure != FAIL_NONE ? failure_name(r->failure) : "no answer",
           phase_name(r->phase));
    if (r->aborted)
        printf(", after the head: %d %s and %llu body bytes had gone out", r->upstream_status,
               status_phrase(r->upstream_status), (unsigned long long)r->bytes_out);
    printf("\n");
    if (r->detail[0])
        printf("  %-11s %s\n", "detail", r->detail);
    if (r->failure == FAIL_NONE)
        return;
    printf("  %-11s", "status");
    for (int pr = 0; pr < PROFILE_COUNT; pr++)
        printf("%s %s %d", pr ? "," : "", profile_name((enum error_profile)pr),
               profile_status(r, cfg, pr));
    printf("  (Portico sends %d %s here%s)\n", r->status, status_phrase(r->status),
           r->aborted ? ", then cuts the body short" : "");
}

/* s as a JSON string, whole (the URL echoes what was typed, its path up to max_request_line);
 * null for NULL. */
static void json_string(const char *s)
{
    size_t n = s ? strlen(s) : 0, size = 6 * n + 2; /* each byte escaped at worst, the quotes */
    char *buf = s ? malloc(size) : NULL;
    if (!buf) { /* NULL, or out of memory: the document stays JSON */
        fputs("null", stdout);
        return;
    }
    struct fmt_buf b;
    fmt_init(&b, buf, size);
    fmt_json_str(&b, s, n, size);
    fwrite(buf, 1, b.len, stdout);
    free(buf);
}

static void json_ms(uint64_t us)
{
    char buf[32];
    struct fmt_buf b;
    fmt_init(&b, buf, sizeof(buf));
    fmt_ms3(&b, us);
    fwrite(buf, 1, b.len, stdout);
}

/* n bytes of s as a JSON string. */
static void json_span(const char *s, size_t n)
{
    char *c = strndup(s, n);
    json_string(c);
    free(c);
}

static void print_json(const struct probe_opts *o, const struct probe_head *ph,
                       const struct route_conf *route, const struct config *cfg,
                       const struct probe_ds *p, enum probe_end end)
{
    const struct probe_result *r = &p->res;
    printf("{\"url\":");
    json_string(o->url);
    printf(",\"method\":");
    json_span(ph->req.method, ph->req.method_len);
    printf(",\"fields\":[");
    for (size_t i = 0; i < ph->req.nfields; i++) {
        printf("%s", i ? "," : "");
        json_span(ph->req.fields[i].name, ph->req.fields[i].name_len);
    }
    printf("],\"request_body_bytes\":%zu", h1_info_has_body(&ph->info) ? o->rq.body_len : 0);
    printf(",\"route\":");
    json_string(route->name);
    printf(",\"return\":");
    if (route->answer)
        printf("%d", route->answer->status);
    else
        printf("null");
    printf(",\"upstream\":");
    json_string(route->answer ? NULL : cfg->upstreams[route->upstream].name);
    printf(",\"origin\":");
    json_string(r->origin[0] ? r->origin : NULL);
    printf(",\"sticky\":");
    json_string(r->sticky[0] ? r->sticky : NULL);
    printf(",\"sticky_cookie\":");
    json_string(p->pin[0] ? p->pin : NULL);
    printf(",\"profile\":\"%s\",\"request_id\":", profile_name(cfg->profile));
    json_string(r->request_id);
    printf(",\"phases\":{");
    for (int s = 0; s < TIMING_COUNT; s++) {
        printf("%s\"%s\":", s ? "," : "", phase_of_slot(s));
        if (timings_has(&r->timings, (enum timing_phase)s))
            json_ms(r->timings.us[s]);
        else
            printf("null");
    }
    printf("},\"outcome\":\"%s\",\"status\":", probe_end_names[end]);
    if (r->status)
        printf("%d", r->status);
    else
        printf("null");
    printf(",\"upstream_status\":");
    if (r->upstream_status)
        printf("%d", r->upstream_status);
    else
        printf("null");
    printf(",\"failure\":");
    json_string(r->failure != FAIL_NONE ? failure_name(r->failure) : NULL);
    printf(",\"phase\":\"%s\",\"limit_ms\":", phase_name(r->phase));
    if (r->limit_ms)
        printf("%llu", (unsigned long long)r->limit_ms);
    else
        printf("null");
    printf(",\"detail\":");
    json_string(r->detail[0] ? r->detail : NULL);
    printf(",\"fault\":");
    json_string(r->fault[0] ? r->fault : NULL);
    printf(",\"location\":");
    json_string(p->location[0] ? p->location : NULL);
    printf(",\"statuses\":");
    if (r->failure == FAIL_NONE) {
        printf("null");
    } else {
        for (int pr = 0; pr < PROFILE_COUNT; pr++)
            printf("%s\"%s\":%d", pr ? "," : "{", profile_name((enum error_profile)pr),
                   profile_status(r, cfg, pr));
        printf("}");
    }
    printf(",\"interim\":[");
    for (unsigned i = 0; i < r->ninterim; i++)
        printf("%s%d", i ? "," : "", r->interim[i]);
    printf("],\"body_bytes\":%llu,\"attempts\":%u,\"reused\":%s,\"aborted\":%s}\n",
           (unsigned long long)r->bytes_out, r->attempts, r->reused ? "true" : "false",
           r->aborted ? "true" : "false");
}

/* ---- running it ---- */

/*
 * How long the probe waits for the response head when total_timeout is off: an origin that
 * sends its head a byte at a time, or 1xx after 1xx, would otherwise keep it for ever (no
 * silence for read_timeout to see). Long enough for every timer of the upstream to run out in
 * turn on each attempt, so any failure Portico would report comes first; 0 when total_timeout
 * bounds the head itself.
 */
static uint64_t head_wait_ms(const struct upstream_conf *up)
{
    uint64_t attempt = 0;
    if (up->timers_ms[TIMER_TOTAL])
        return 0;
    for (int t = 0; t < TIMER_COUNT; t++)
        if (t != TIMER_TOTAL && t != TIMER_QUEUE)
            attempt += up->timers_ms[t];
    return (up->retries + 1) * attempt;
}

/* Sets up l as a worker would for gen. 0, or -1. */
static int loop_up(struct loop *l, struct generation *gen)
{
    *l = (struct loop){.cfg = gen->cfg, .gen = gen, .state = LOOP_RUNNING,
                       .id_salt = (uint32_t)wall_ms()};
    TAILQ_INIT(&l->clients);
    TAILQ_INIT(&l->idle);
    TAILQ_INIT(&l->proxy_waiting);
    struct event_config *ec = event_config_new();
    if (!ec)
        return -1;
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER); /* no timer a tick (4 ms) early */
    l->base = event_base_new_with_config(ec);
    event_config_free(ec);
    l->clock = l->base ? deadline_clock_new(l->base) : NULL;
    l->metrics = metrics_shard_create(NULL);
    l->recent = recent_shard_create(gen->number, 0);
    if (!l->clock || !l->metrics || !l->recent || upstream_pools_init(l) != 0)
        return -1;
    if (trace_rng_seed(&l->rng) != 0)
        trace_rng_init(&l->rng, now_us());
    return loop_dns_init(l);
}

static void loop_down(struct loop *l)
{
    if (l->pools)
        upstream_pools_free(l);
    /* Cancelled lookups report back through the loop: they land while their resolver is
     * there. After evdns_base_free, the loop ran what the freed resolver had left (the
     * cancelled probe of a nameserver marked failed by a SERVFAIL) on freed memory (valgrind:
     * 15 invalid reads); event_base_free drops that unrun, as a worker's teardown does. */
    for (int i = 0; l->base && i < 50 && event_base_loop(l->base, EVLOOP_NONBLOCK) == 0; i++)
        ;
    if (l->dns)
        evdns_base_free(l->dns, 0);
    deadline_clock_free(l->clock);
    if (l->base)
        event_base_free(l->base);
    metrics_shard_retire(l->metrics);
    recent_shard_retire(l->recent);
    exchange_spare_free(l);
}

/* Writes o's request for u and reads it as a worker does before routing: the parser, the
 * fields' meaning (Host, framing, Expect), the target's checks (dot segments), max_body_size.
 * 0, -1 (out of memory), or -2 when Portico would refuse it itself (said on stderr): bad usage. */
static int prepare_request(const struct config *cfg, const struct probe_opts *o,
                           const struct probe_url *u, struct probe_head *ph)
{
    /* as long as the URL: the configuration's max_request_line is the limit, as for a client */
    ph->buf = evbuffer_new();
    if (!ph->buf || probe_request_head(&o->rq, u->authority, u->path, u->path_len, ph->buf) != 0)
        return -1;
    ph->len = evbuffer_get_length(ph->buf);
    ph->head = (const char *)evbuffer_pullup(ph->buf, -1);
    if (!ph->head)
        return -1;
    struct h1_error err = {0};
    struct h1_limits lim = {cfg->max_request_line, cfg->max_header_size};
    struct req_target target;
    const char *why = NULL;
    int refused = 0;
    if (h1_parse_request(ph->head, ph->len, &lim, &ph->req, &err) != (int)ph->len) {
        refused = err.status ? err.status : HTTP_BAD_REQUEST;
        why = err.reason ? err.reason : "the head does not parse";
    } else if (h1_request_info(&ph->req, &ph->info, &err) != 0) {
        refused = err.status;
        why = err.reason;
    } else if (!(refused = request_target(&ph->req, &target, &why))) {
        refused = request_refusal(&ph->req, &ph->info, cfg->max_body_size, &why);
    }
    if (refused) {
        fprintf(stderr, "portico probe: Portico would refuse this request: %d %s (%s)\n", refused,
                status_phrase(refused), why);
        return -2;
    }
    return 0;
}

/* Runs the exchange for ph (and o's body) through l; fills p. 0, or -1 (out of memory). */
static int run_exchange(struct loop *l, const struct probe_url *u, const struct probe_head *ph,
                        const struct probe_request *rq, struct probe_ds *p)
{
    /* a client of this host, over the URL's scheme: a route's `scheme`, $scheme and
     * X-Forwarded-Proto read it as the exchange's own matching does */
    static struct peer peer;
    peer = (struct peer){.conn_id = 1, .ip = "127.0.0.1", .tls = u->tls};
    if (rq->body_len && evbuffer_add(p->in, rq->body, rq->body_len) != 0)
        return -1;
    struct downstream ds = {.ops = &probe_ops, .ctx = p, .peer = &peer, .proto = PROTO_HTTP11};
    struct exchange *ex = exchange_start(l, &ds, ph->head, ph->len, &ph->req, now_us());
    if (!ex)
        return -1;
    if (p->head_ms) {
        struct timeval tv = tv_from_ms(p->head_ms);
        evtimer_add(p->body_timer, &tv);
    }
    exchange_run(ex);
    while (!p->done && !p->cut)
        if (event_base_dispatch(l->base) != 0)
            break;
    if (!p->done) /* the probe stopped reading: the exchange reports, then goes */
        exchange_cancel(ex, HTTP_CLIENT_CLOSED_REQUEST,
                        p->gave_up ? p->gave_up_why : "probe stopped reading");
    return 0;
}

/* libevent's own messages. Its notices (evdns: "Nameserver ... has failed", "All nameservers
 * have failed" after a SERVFAIL or a silent one) tell what the outcome and its detail already
 * say, and came as raw "[msg]" lines on stderr; its warnings and errors are kept, named. */
static void probe_libevent_log(int severity, const char *msg)
{
    if (severity >= EVENT_LOG_WARN)
        fprintf(stderr, "portico probe: libevent: %s\n", msg);
}

/* The route a worker picks for ph: by the scheme, the Host field (a -H Host's, as curl sends
 * it), the path without its query, the method and the fields (conditions). */
static const struct route_conf *probe_route(const struct config *cfg, const struct probe_url *u,
                                            const struct probe_head *ph)
{
    /* routes match the path without its query (u.path runs on to the URL's '#', if any); a
     * URL with none has "/" */
    size_t path_len = strcspn(u->path, "?#");
    const char *path = path_len ? u->path : "/";
    const struct h1_field *host = ph->info.host;
    const struct route_request rq = {ph->req.method_id, ph->req.method, ph->req.method_len,
                                     ph->req.fields, ph->req.nfields};
    return route_match(cfg, route_scheme_of(u->tls), host ? host->value : u->authority,
                       host ? host->value_len : strlen(u->authority), path,
                       path_len ? path_len : 1, &rq);
}

int probe_main(int argc, char **argv)
{
    struct probe_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    struct probe_url u;
    const char *why = NULL;
    if (probe_parse_url(o.url, &u, &why) != 0) {
        fprintf(stderr, "portico probe: %s: %s\n", o.url, why);
        return 2;
    }
    char load_why[400];
    if (probe_request_load(&o.rq, load_why, sizeof(load_why)) != 0) {
        fprintf(stderr, "portico probe: %s\n", load_why);
        probe_request_free(&o.rq);
        return 2;
    }
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "portico probe: libevent without thread support\n");
        probe_request_free(&o.rq);
        return 1;
    }
    event_set_log_callback(probe_libevent_log);
    struct config *cfg = o.config ? cfg_load(o.config, stderr, NULL) : synthetic_config(&u);
    struct probe_head ph = {0};
    const struct route_conf *route = NULL;
    rc = 2;
    if (!cfg)
        goto early;
    /* as `portico -t` says them: an expired client_cert is what a refused handshake may be */
    cfg_print_warnings(cfg, stderr);
    int prepared = prepare_request(cfg, &o, &u, &ph);
    if (prepared != 0) {
        if (prepared == -1)
            fprintf(stderr, "portico probe: out of memory\n");
        rc = prepared == -1 ? 1 : 2;
        goto early;
    }
    route = probe_route(cfg, &u, &ph);
    if (!route) {
        fprintf(stderr, "portico probe: no route of %s matches %s %s\n", o.config,
                probe_request_method(&o.rq), o.url);
        goto early;
    }
    for (int i = 0; i < cfg->nupstreams; i++)
        for (int t = 0; t < TIMER_COUNT; t++)
            if (o.timer_set[t])
                cfg->upstreams[i].timers_ms[t] = o.timers_ms[t];
    if (o.profile_set)
        cfg->profile = o.profile;
    rc = 1;
    if (sim_resolve(cfg) != 0)
        goto early;
    struct generation *gen = generation_new(cfg, 1);
    cfg = NULL; /* the generation's now, or freed with it */
    if (!gen) {
        sim_stop();
        goto early;
    }
    struct loop l;
    struct probe_ds p = {0};
    enum probe_end end = PROBE_FAILED;
    if (loop_up(&l, gen) != 0 || !(p.out = evbuffer_new()) || !(p.in = evbuffer_new()) ||
        !(p.body_timer = evtimer_new(l.base, body_timer_cb, &p))) {
        fprintf(stderr, "portico probe: cannot set up the event loop\n");
        goto done;
    }
    p.base = l.base;
    /* a route that answers itself has no upstream: its answer is made at once */
    p.head_ms = route->answer ? 0 : head_wait_ms(&gen->cfg->upstreams[route->upstream]);
    if (!route->answer && gen->cfg->upstreams[route->upstream].sticky.on)
        p.sticky = &gen->cfg->upstreams[route->upstream].sticky;
    if (run_exchange(&l, &u, &ph, &o.rq, &p) != 0 || !p.res.reported)
        goto done;
    end = answered(&p, route) ? PROBE_ANSWERED : PROBE_FAILED;
    if (o.json)
        print_json(&o, &ph, route, gen->cfg, &p, end);
    else
        print_text(&o, &ph, route, gen->cfg, &p, end);
    rc = end == PROBE_ANSWERED ? 0 : 1;
done:
    if (p.body_timer)
        event_free(p.body_timer);
    if (p.out)
        evbuffer_free(p.out);
    if (p.in)
        evbuffer_free(p.in);
    loop_down(&l);
    generation_free(gen);
    sim_stop();
    metrics_free_all();
    recent_free_all();
early:
    if (cfg)
        cfg_free(cfg);
    if (ph.buf)
        evbuffer_free(ph.buf);
    probe_request_free(&o.rq);
    return rc;
}
