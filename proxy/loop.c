/*
 * loop.c — request ids and connection counting for one worker thread. See loop.h.
 */
#include "portico/loop.h"

#include <event2/dns.h>
#include <stdio.h>
#include <string.h>

#include "portico/config.h"
#include "portico/fmt.h"
#include "portico/util.h"

static const char *const loop_state_names[] = {
#define X(id, name) [id] = name,
    LOOP_STATE_LIST(X)
#undef X
};

const char *loop_state_name(enum loop_state s)
{
    return (unsigned)s < ARRAY_LEN(loop_state_names) ? loop_state_names[s] : "unknown";
}

/* 17 hex digits: salt (8), worker (2), counter (7). Formatted by hand: one per request. */
void loop_request_id(struct loop *l, char *buf, size_t size)
{
    uint64_t hi = ((uint64_t)l->id_salt << 8) | ((unsigned)l->id & 0xff);
    /* 48 bits: at a million requests a second, a worker's counter comes round in 8.9 years */
    uint64_t lo = ++l->next_request & 0xffffffffffffull;
    char id[23];
    fmt_hex(id, hi, 5);
    fmt_hex(id + 10, lo, 6);
    id[22] = '\0';
    if (size) {
        size_t n = MIN(size - 1, sizeof(id) - 1);
        memcpy(buf, id, n);
        buf[n] = '\0';
    }
}

void loop_conn_opened(struct loop *l)
{
    if (++l->conns > l->conns_peak) /* the worker's trim after a burst (heap.h) */
        l->conns_peak = l->conns;
    if (l->on_conns)
        l->on_conns(l);
}

void loop_conn_closed(struct loop *l)
{
    if (l->conns)
        l->conns--;
    if (l->on_conns)
        l->on_conns(l);
    if (l->conns == 0 && l->state == LOOP_DRAINING && l->on_idle)
        l->on_idle(l);
}

/* Lookups of one loop in flight at once; each is bounded by its dns_timeout. evdns hashes them
 * in max/5 chains, and transaction ids are 16 bits. */
#define DNS_MAX_INFLIGHT 4096

int loop_dns_init(struct loop *l)
{
    const struct config *cfg = l->cfg;
    /* The configured nameserver, or resolv.conf; /etc/hosts either way. */
    l->dns = evdns_base_new(l->base, cfg->resolver ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!l->dns)
        return -1;
    if (cfg->resolver) {
        if (evdns_base_nameserver_ip_add(l->dns, cfg->resolver) != 0) {
            fprintf(stderr, "portico: resolver %s: cannot use it\n", cfg->resolver);
            return -1;
        }
        evdns_base_load_hosts(l->dns, NULL);
    }
    /* An origin name is asked as written (README): resolv.conf's search and domain lines (and
     * the host name's domain) would send a name that does not exist to whatever a search domain
     * answers for it, a wildcard record included, instead of failing with dns_error. */
    evdns_base_search_clear(l->dns);
    /* One attempt per lookup, which evdns ends at 9/10 of the longest dns_timeout: a nameserver
     * that never answers is then marked failed and skipped (evdns probes it until it answers),
     * and upstream.c asks again, of the next nameserver, in what dns_timeout leaves. Ended after
     * dns_timeout, every lookup sent to a dead nameserver (every other one, with two in
     * resolv.conf) was cancelled by our own timer first, and the dead one was never skipped.
     * Shorter dns_timeouts still end first; an answer in the last tenth of the longest is lost. */
    uint64_t longest = 0;
    for (int i = 0; i < cfg->nupstreams; i++)
        longest = MAX(longest, cfg->upstreams[i].timers_ms[TIMER_DNS]);
    uint64_t attempt_ms = MAX(longest - longest / 10, 1);
    l->dns_attempt_us = attempt_ms * 1000;
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%llu.%03llu", (unsigned long long)(attempt_ms / 1000),
             (unsigned long long)(attempt_ms % 1000));
    evdns_base_set_option(l->dns, "timeout:", timeout);
    evdns_base_set_option(l->dns, "attempts:", "1");
    /* evdns sends at most 64 queries at once by default and queues the rest: a name the resolver
     * leaves unanswered would hold every other upstream's lookups back until its dns_timeout
     * (504 dns_timeout for names the resolver answers at once). */
    char inflight[16];
    snprintf(inflight, sizeof(inflight), "%d", DNS_MAX_INFLIGHT);
    evdns_base_set_option(l->dns, "max-inflight:", inflight);
    evdns_base_set_option(l->dns, "randomize-case:", "0");
    return 0;
}
