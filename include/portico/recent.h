/*
 * recent.h — what the status page shows of the last minutes: requests per minute by status
 * class and failure type, the most recent failures with their explanation, and the size of each
 * upstream's keep-alive pool. The metrics (metrics.h) count since start; this module keeps the
 * short window a person reads at a glance.
 *
 * Every worker owns one shard. Publication follows metrics.h: a shard has one writer, its worker
 * thread, which updates counters with relaxed atomic loads and stores (no lock, no
 * read-modify-write). A failure record or a minute that starts anew is bigger than one word:
 * its slot carries a sequence number, odd while the writer rewrites it (a seqlock), and a
 * reader that sees it change copies the slot again or leaves it out. Readers (the admin
 * endpoint) take the registry lock, which the request path never takes. A retired shard's
 * minutes and failures fold into process totals, so a reload does not empty the page.
 */
#ifndef PORTICO_RECENT_H
#define PORTICO_RECENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/config_limits.h"
#include "portico/failure.h"
#include "portico/fault.h"

#define RECENT_MINUTES 15            /* minutes of counts kept (the current one included) */
#define RECENT_FAILURES 32           /* failures kept per worker */
#define RECENT_VIEW_FAILURES 50      /* failures a snapshot lists, newest first */

/* Status classes counted per minute: 1xx … 5xx, then everything else (no status). */
#define RECENT_CLASSES 6

/* One failure as the page lists it. Names and the origin are kept whole: /status files each
 * failure under its upstream by name; the request id and the detail are cut to their size. */
struct recent_failure {
    uint64_t time_ms;                  /* wall clock, ms since the epoch */
    uint64_t total_us;                 /* the whole exchange */
    uint64_t limit_ms;                 /* the timer that expired, 0 if none */
    int status;                        /* sent to the client (0: none, the head had gone) */
    enum failure_type failure;
    enum phase phase;                  /* where it failed */
    int tls_alert;                     /* the TLS alert that refused the handshake, + 1 (0: none) */
    char request_id[48];
    char route[CFG_NAME_MAX];
    char upstream[CFG_NAME_MAX];
    char origin[CFG_ORIGIN_TEXT_MAX];
    char detail[200];
    char fault[FAULT_NAME_MAX];        /* the rule that simulated it, "" for a real failure */
};

/* One minute of counts. */
struct recent_minute {
    uint64_t minute;                   /* wall-clock minutes since the epoch */
    uint64_t requests;
    uint64_t classes[RECENT_CLASSES];  /* [0] 1xx … [4] 5xx, [5] other */
    uint64_t failures[FAILURE_COUNT];  /* [FAIL_NONE] unused */
};

/* What a scrape reads: the last RECENT_MINUTES minutes (oldest first, every minute present,
 * zero when nothing happened), the newest failures of all workers, and the idle pooled
 * connections of each upstream of one configuration generation. */
struct recent_view {
    struct recent_minute minutes[RECENT_MINUTES];
    struct recent_failure failures[RECENT_VIEW_FAILURES];
    size_t nfailures;
    uint64_t *pool_idle;               /* [npools], caller's storage */
    int npools;
};

/* One finished exchange, for recent_record. Strings are borrowed; NULL is fine. */
struct recent_sample {
    uint64_t time_ms;                  /* wall clock */
    int status;
    enum failure_type failure;
    enum phase phase;
    uint64_t total_us;
    uint64_t limit_ms;
    const char *request_id;
    const char *route;
    const char *upstream;
    const char *origin;
    const char *detail;
    const char *fault;                 /* the fault rule that shaped the exchange (the access
                                          log's fault), NULL when none */
    bool after_head;                   /* failed once the head had gone: the minute counts
                                          status, the failure keeps none (0) */
    int tls_alert;                     /* the access record's: the alert + 1 that refused the
                                          handshake, 0 when none */
};

struct recent;

/* A shard for a worker of configuration generation `generation` with nupstreams upstreams,
 * registered for reading. NULL when out of memory. */
struct recent *recent_shard_create(unsigned generation, int nupstreams);

/* The worker is gone (its thread joined): its minutes and failures fold into the process
 * totals, and the shard is freed. NULL is a no-op. */
void recent_shard_retire(struct recent *r);

/* Frees every shard and the totals (at shutdown; tests start afresh with it). */
void recent_free_all(void);

/* The request path (the shard's own worker only): counts one exchange in its minute, and keeps
 * it among the recent failures when it failed upstream. */
void recent_record(struct recent *r, const struct recent_sample *s);

/* The worker's own pool of upstream u holds idle connections now (its once-a-second tick). */
void recent_set_pool(struct recent *r, int upstream, uint64_t idle);

/* Reads every shard into v at wall-clock now_ms; pools are summed over the shards of
 * `generation` (v->pool_idle[0 .. v->npools) set by the caller, zeroed here). */
void recent_snapshot(struct recent_view *v, uint64_t now_ms, unsigned generation);

/* Index in recent_minute.classes of a status code. */
int recent_class_of(int status);

#endif
