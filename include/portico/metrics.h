/*
 * metrics.h — Prometheus metrics (text format 0.0.4). Every worker owns one shard, created for
 * its configuration generation with that configuration's route, upstream and fault names, so
 * that every labelled series is an array slot fixed at creation (no hash map, no allocation on
 * the request path). The admin endpoint sums the shards when it renders; a retired worker's
 * counts fold into process totals, so counters never go back.
 *
 * Publication rule. A shard has exactly one writer, its worker thread: a counter is updated
 * with a relaxed atomic load and a relaxed atomic store (no lock, no read-modify-write; a plain
 * `mov` on x86-64), and read by the scraping thread with relaxed loads, which may see a value a
 * few increments old but never a torn one. The one thing created at run time, the slot of a
 * (status code, failure) pair seen for the first time, is published by a release store of the
 * slot count after the slot's code and failure are written; readers load the count with
 * acquire. Process-wide values (configuration generation, reloads) are written by the main
 * thread only.
 */
#ifndef PORTICO_METRICS_H
#define PORTICO_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/failure.h"
#include "portico/mirror_outcome.h"
#include "portico/timing.h"

struct evbuffer;

/* Plain counters: id, name, help. */
#define METRIC_LIST(X)                                                                             \
    X(M_CONNECTIONS, "portico_client_connections_total", "Client connections accepted")           \
    X(M_TLS_HANDSHAKE_FAILURES, "portico_client_tls_handshake_failures_total",                    \
      "Client TLS handshakes that failed")                                                         \
    X(M_TLS_RESUMED, "portico_client_tls_resumed_total",                                           \
      "Client TLS handshakes that resumed a session (no certificate sent)")                       \
    X(M_REQUESTS, "portico_requests_started_total",                                                \
      "Requests whose head was received (portico_requests_total counts them when they end)")      \
    X(M_CLIENT_ABORTS, "portico_client_aborts_total",                                              \
      "Exchanges ended because the client went away (logged as 499)")                              \
    X(M_UPSTREAM_CONNECTS, "portico_upstream_connects_total", "New connections opened to origins") \
    X(M_UPSTREAM_REUSED, "portico_upstream_reused_total",                                          \
      "Requests sent on a pooled keep-alive connection")                                           \
    X(M_SPLICED_BYTES, "portico_spliced_bytes_total",                                              \
      "Body bytes moved socket to socket through a kernel pipe (splice), never copied by Portico") \
    X(M_UPSTREAM_UNSOLICITED, "portico_upstream_unsolicited_total",                                \
      "Pooled origin connections closed because the origin sent bytes no request asked for")      \
    X(M_UPSTREAM_SETTLED_EARLY, "portico_upstream_settled_early_total",                            \
      "Pooled origin connections settled early (half of settle_time or more): 4 x keepalive "     \
      "were settling")                                                                             \
    X(M_UPSTREAM_SETTLING_FULL, "portico_upstream_settling_full_closed_total",                     \
      "Released origin connections closed: 4 x keepalive were settling, none for half of "         \
      "settle_time")                                                                               \
    X(M_UPSTREAM_RETRIES, "portico_upstream_retries_total",                                        \
      "Requests resent on a fresh connection after a pooled one turned out closed")                \
    X(M_ABORTED_AFTER_HEAD, "portico_responses_aborted_total",                                     \
      "Responses cut short after their head was forwarded")                                        \
    X(M_UPSTREAM_NEXT_ORIGIN, "portico_upstream_next_origin_total",                                \
      "Attempts moved to another origin after a failed one (retries)")                             \
    X(M_UPSTREAM_STATUS_RETRIES, "portico_upstream_status_retries_total",                          \
      "Attempts moved to another origin because it answered a status of retry_on (counted in "     \
      "portico_upstream_next_origin_total too)")                                                   \
    X(M_UPSTREAM_STATUS_FAILURES, "portico_upstream_status_failures_total",                        \
      "Origin final statuses counted toward max_fails (fail_on, and retry_on's that count)")       \
    X(M_UPSTREAM_BACKUP_ATTEMPTS, "portico_upstream_backup_attempts_total",                        \
      "Attempts sent to a backup origin (no primary would do)")                                   \
    X(M_UPSTREAM_ADDRESS_FALLBACKS, "portico_upstream_address_fallbacks_total",                    \
      "Connects moved to the next address of an origin's name after one failed")                   \
    X(M_UPSTREAM_NO_LOCAL_PORT, "portico_upstream_no_local_port_total",                            \
      "Connects to origins that found no free local port (net.ipv4.ip_local_port_range used up)") \
    X(M_HEALTH_CHECKS, "portico_health_checks_total", "Active health checks run")                 \
    X(M_HEALTH_CHECKS_FAILED, "portico_health_checks_failed_total",                                \
      "Active health checks that failed (no answer in time, or an unexpected status)")             \
    X(M_TUNNELS, "portico_tunnels_total",                                                          \
      "Connections switched to a tunnel by 101 Switching Protocols (WebSocket)")                   \
    X(M_TUNNEL_CLIENT_BYTES, "portico_tunnel_client_bytes_total",                                  \
      "Bytes relayed through tunnels from clients to origins")                                     \
    X(M_TUNNEL_ORIGIN_BYTES, "portico_tunnel_origin_bytes_total",                                  \
      "Bytes relayed through tunnels from origins to clients")                                     \
    X(M_IDLE_RECLAIMED, "portico_client_idle_reclaimed_total",                                     \
      "Idle keep-alive client connections closed at max_connections to accept a new client")      \
    X(M_ACCEPT_PAUSES, "portico_accept_pauses_total",                                              \
      "Times a worker stopped accepting: it held max_connections client connections, none idle")   \
    X(M_H2_CONNECTIONS, "portico_http2_connections_total", "Client connections that spoke HTTP/2") \
    X(M_H2_STREAMS, "portico_http2_streams_total", "HTTP/2 request streams opened by clients")     \
    X(M_HEAP_TRIMS, "portico_heap_trims_total",                                                    \
      "Times a worker handed free heap back to the kernel after a burst of HTTP/2 streams")       \
    X(M_H2_MALFORMED, "portico_http2_malformed_requests_total",                                    \
      "HTTP/2 requests reset as malformed (PROTOCOL_ERROR)")                                       \
    X(M_H2_PROTOCOL_ERRORS, "portico_http2_protocol_errors_total",                                 \
      "HTTP/2 connections ended by a connection error of the client")                             \
    X(M_H2_FLOOD_RESET, "portico_http2_flood_rapid_reset_total",                                   \
      "HTTP/2 connections closed with GOAWAY for resetting too many streams (CVE-2023-44487)")    \
    X(M_H2_FLOOD_CONTROL, "portico_http2_flood_control_frames_total",                              \
      "HTTP/2 connections closed with GOAWAY for a SETTINGS, PING, PRIORITY or empty-frame flood") \
    X(M_H2_FLOOD_WINDOW, "portico_http2_flood_window_updates_total",                               \
      "HTTP/2 connections closed with GOAWAY for more WINDOW_UPDATE frames than their DATA needs") \
    X(M_H2_FLOOD_CLOSED, "portico_http2_flood_closed_streams_total",                               \
      "HTTP/2 connections closed with GOAWAY for resets of answered or closed streams, or "        \
      "frames on closed streams")                                                                  \
    X(M_H2_FLOOD_SMALL_DATA, "portico_http2_flood_small_data_total",                               \
      "HTTP/2 connections closed with GOAWAY for a flood of DATA frames of under 16 bytes on "     \
      "open streams")                                                                              \
    X(M_H2_FLOOD_CONTINUATION, "portico_http2_flood_continuation_total",                           \
      "HTTP/2 connections closed with GOAWAY for a CONTINUATION flood or a stalled header block")  \
    X(M_H2_FLOOD_ACKS, "portico_http2_flood_acks_total",                                           \
      "HTTP/2 connections closed for piling up SETTINGS/PING acknowledgements without reading")    \
    X(M_H2_STALLED, "portico_http2_stalled_windows_total",                                         \
      "HTTP/2 connections closed with GOAWAY for keeping a flow-control window shut too long")   \
    X(M_BODY_TOO_SLOW, "portico_request_bodies_too_slow_total",                                   \
      "Request bodies ended for coming slower than client_body_min_rate (408, or cut short)")     \
    X(M_REAL_IP_INVALID, "portico_real_ip_invalid_total",                                          \
      "Requests from trusted proxies whose real_ip element naming the client was not an address "  \
      "(the peer's kept)")

enum metric_id {
#define X(id, name, help) id,
    METRIC_LIST(X)
#undef X
    METRIC_COUNT
};

/* Directions of portico_interim_responses_total. */
#define INTERIM_DIR_LIST(X)                                                                        \
    X(INTERIM_RELAYED, "relayed")          /* from the origin to the client */                     \
    X(INTERIM_SYNTHESIZED, "synthesized")  /* sent by Portico (100, 102, 103) */                   \
    X(INTERIM_DROPPED, "dropped")          /* from the origin, not forwarded */

enum interim_direction {
#define X(id, name) id,
    INTERIM_DIR_LIST(X)
#undef X
    INTERIM_DIR_COUNT
};

/* Labels of portico_connections{side,state}. */
#define CONN_SIDE_LIST(X)                                                                          \
    X(CONN_CLIENT, "client")                                                                       \
    X(CONN_UPSTREAM, "upstream")

enum conn_side {
#define X(id, name) id,
    CONN_SIDE_LIST(X)
#undef X
    CONN_SIDE_COUNT
};

#define CONN_STATE_LIST(X)                                                                         \
    X(CONN_HANDSHAKE, "handshake")  /* client: TLS handshake; upstream: dns, connect, tls */      \
    X(CONN_ACTIVE, "active")        /* an exchange (or a request head) is on it */                 \
    X(CONN_IDLE, "idle")            /* client: keep-alive between requests; upstream: pooled */

enum conn_state {
#define X(id, name) id,
    CONN_STATE_LIST(X)
#undef X
    CONN_STATE_COUNT
};

/* Actions of portico_faults_injected_total (issue 8's fault rules). */
#define FAULT_ACTION_LIST(X)                                                                       \
    X(FAULT_STATUS, "status")                                                                      \
    X(FAULT_FAILURE, "failure")                                                                    \
    X(FAULT_DELAY, "delay")                                                                        \
    X(FAULT_RESPONSE_DELAY, "response_delay")                                                      \
    X(FAULT_DROP, "drop")                                                                          \
    X(FAULT_RESET, "reset")                                                                        \
    X(FAULT_TRUNCATE, "truncate")                                                                  \
    X(FAULT_THROTTLE, "throttle")                                                                  \
    X(FAULT_INTERIM, "interim")

enum fault_action {
#define X(id, name) id,
    FAULT_ACTION_LIST(X)
#undef X
    FAULT_ACTION_COUNT
};

/* Why a tunnel ended, for portico_tunnels_closed_total{reason}: the label, and the words of
 * the log line. */
#define TUNNEL_END_LIST(X)                                                                         \
    X(TUNNEL_END_CLIENT_CLOSED, "client_closed", "client closed")                                 \
    X(TUNNEL_END_ORIGIN_CLOSED, "origin_closed", "origin closed")                                 \
    X(TUNNEL_END_IDLE, "idle", "idle for tunnel_timeout")                                          \
    X(TUNNEL_END_CLIENT_ERROR, "client_error", "client connection failed")                        \
    X(TUNNEL_END_ORIGIN_ERROR, "origin_error", "origin connection failed")                        \
    X(TUNNEL_END_CLIENT_STALLED, "client_stalled", "client stopped reading")                      \
    X(TUNNEL_END_ORIGIN_STALLED, "origin_stalled", "origin stopped reading")                      \
    X(TUNNEL_END_CUT, "cut", "cut: Portico stopped (shutdown_timeout or a second stop signal)")

enum tunnel_end {
#define X(id, label, words) id,
    TUNNEL_END_LIST(X)
#undef X
    TUNNEL_END_COUNT
};

/* Why a header was refused: the label of portico_proxy_protocol_errors_total{reason}, and the
 * words of the log line. */
#define PP_ERROR_LIST(X)                                                                           \
    X(PP_ERR_MISSING, "missing", "no PROXY header: the bytes begin something else")              \
    X(PP_ERR_MALFORMED, "malformed", "malformed PROXY header")                                    \
    X(PP_ERR_OVERSIZED, "oversized", "PROXY header too long")                                     \
    X(PP_ERR_CHECKSUM, "checksum", "PROXY header checksum (CRC32c TLV) does not match")         \
    X(PP_ERR_TRUNCATED, "truncated", "connection closed within the PROXY header")                 \
    X(PP_ERR_TIMEOUT, "timeout", "PROXY header not complete within client_header_timeout")

enum pp_error {
#define X(id, label, words) id,
    PP_ERROR_LIST(X)
#undef X
    PP_ERROR_COUNT
};

/* Why a client certificate was refused (tls_verify_client = on): the label of
 * portico_client_cert_refusals_total{reason}, and the words of the log line. */
#define CERT_REFUSAL_LIST(X)                                                                       \
    X(CERT_REFUSED_NONE_SENT, "no_certificate", "no certificate sent")                            \
    X(CERT_REFUSED_UNKNOWN_CA, "unknown_ca", "unknown CA")                                        \
    X(CERT_REFUSED_EXPIRED, "expired", "expired")                                                 \
    X(CERT_REFUSED_NOT_YET_VALID, "not_yet_valid", "not yet valid")                               \
    X(CERT_REFUSED_REVOKED, "revoked", "revoked")                                                 \
    X(CERT_REFUSED_INVALID, "invalid", "invalid")

enum cert_refusal {
#define X(id, label, words) id,
    CERT_REFUSAL_LIST(X)
#undef X
    CERT_REFUSAL_COUNT
};

/* The key type of a certificate served on a `tls` listener, for
 * portico_tls_handshakes_total{file,key}: one per slot OpenSSL keeps a certificate in (sni.h
 * serves one of each for the same names, chosen by what the client offers). */
#define TLS_KEY_LIST(X)                                                                            \
    X(TLS_KEY_RSA, "rsa")                                                                          \
    X(TLS_KEY_RSA_PSS, "rsa_pss")     /* an RSA-PSS key (id-RSASSA-PSS), signing PSS only */      \
    X(TLS_KEY_ECDSA, "ecdsa")         /* any curve: P-256, P-384 ... are one slot */             \
    X(TLS_KEY_ED25519, "ed25519")                                                                  \
    X(TLS_KEY_ED448, "ed448")                                                                      \
    X(TLS_KEY_OTHER, "other")         /* DSA, GOST ... */

enum tls_key_type {
#define X(id, name) id,
    TLS_KEY_LIST(X)
#undef X
    TLS_KEY_COUNT
};

/* How a lookup over TCP of an origin name ended, for portico_dns_tcp_lookups_total{result}
 * (upstream.c: ASKED OVER TCP). */
#define DNS_TCP_OUTCOME_LIST(X)                                                                    \
    X(DNS_TCP_ANSWERED, "answered")   /* the nameserver answered: addresses, or its failure */     \
    X(DNS_TCP_FAILED, "failed")       /* no answer: refused, closed, a send or read error */       \
    X(DNS_TCP_TIMEOUT, "timeout")     /* none within the owner's timer (dns_timeout) */            \
    X(DNS_TCP_CANCELLED, "cancelled") /* the owner left first (the client, a stop) */              \
    X(DNS_TCP_SKIPPED, "skipped")     /* not asked: 16 under way, in vain within down_time ... */

enum dns_tcp_outcome {
#define X(id, name) id,
    DNS_TCP_OUTCOME_LIST(X)
#undef X
    DNS_TCP_OUTCOME_COUNT
};

/* How the rest of a request body ended that Portico answered before it all came (an error
 * answer, an origin that answered early): its label of
 * portico_request_body_discards_total{protocol,result}. Portico reads and drops such a rest, up
 * to DISCARD_MAX, so that the client sees the answer (client.c's CS_DISCARD, h2_int.h's enum
 * discard). */
#define DISCARD_END_LIST(X)                                                                        \
    X(DISCARD_END_READ, "read")          /* came to its end, dropped */                            \
    X(DISCARD_END_RESET, "reset")        /* HTTP/2: past DISCARD_MAX, RST_STREAM NO_ERROR */       \
    X(DISCARD_END_ANSWERED, "answered")  /* HTTP/2: RST_STREAM NO_ERROR, its answer read */        \
    X(DISCARD_END_CLOSED, "closed")      /* HTTP/1.1: closed on it unread; or a stop's cut */      \
    X(DISCARD_END_TIMEOUT, "timeout")    /* not all within client_body_timeout of the answer */   \
    X(DISCARD_END_CLIENT_CLOSED, "client_closed") /* the client closed or reset first, drains too */

enum discard_end {
#define X(id, name) id,
    DISCARD_END_LIST(X)
#undef X
    DISCARD_END_COUNT
};

/* Why an HTTP/2 stream was not processed, for portico_http2_refused_streams_total{reason}: the
 * label, and the words of the connection's error-log line (h2.c: refused_said). */
#define H2_REFUSED_LIST(X)                                                                         \
    X(H2_REFUSED_CONCURRENCY, "max_concurrent_streams",                                            \
      "refused past http2_max_concurrent_streams") /* RST_STREAM REFUSED_STREAM */                 \
    X(H2_REFUSED_GOAWAY, "goaway", "past a drain's GOAWAY") /* ignored, or REFUSED_STREAM */

enum h2_refused {
#define X(id, label, words) id,
    H2_REFUSED_LIST(X)
#undef X
    H2_REFUSED_COUNT
};

/* Reasons of portico_accept_errors_total, by errno class: what an operator does differs
 * (raise LimitNOFILE / fs.file-max, or look at memory), so they are told apart. */
#define ACCEPT_ERROR_LIST(X)                                                                       \
    X(ACCEPT_ERR_DESCRIPTORS, "descriptors") /* EMFILE, ENFILE */                                  \
    X(ACCEPT_ERR_MEMORY, "memory")           /* ENOBUFS, ENOMEM */                                 \
    X(ACCEPT_ERR_OTHER, "other")

enum accept_error {
#define X(id, name) id,
    ACCEPT_ERROR_LIST(X)
#undef X
    ACCEPT_ERROR_COUNT
};

/* Reasons of portico_client_connections_refused_total: connections closed at their accept. */
#define CONN_REFUSAL_LIST(X)                                                                       \
    X(CONN_REFUSED_PER_CLIENT, "per_client") /* max_connections_per_client */

enum conn_refusal {
#define X(id, name) id,
    CONN_REFUSAL_LIST(X)
#undef X
    CONN_REFUSAL_COUNT
};

/* Results of portico_config_reloads_total. */
#define RELOAD_RESULT_LIST(X)                                                                      \
    X(RELOAD_OK, "ok")              /* the new configuration serves */                             \
    X(RELOAD_INVALID, "invalid")    /* the file has errors */                                      \
    X(RELOAD_FAILED, "failed")      /* valid, but could not start (bind, descriptors, memory) */

enum reload_result {
#define X(id, name) id,
    RELOAD_RESULT_LIST(X)
#undef X
    RELOAD_RESULT_COUNT
};

/* The part of a shard the inline writers use; the labelled series follow it (metrics.c). */
struct metrics {
    _Atomic uint64_t counters[METRIC_COUNT];
};

/* A certificate a `tls` listener serves, a series of portico_tls_handshakes_total. */
struct metrics_served {
    const char *file;                          /* as configured (tls_cert) */
    enum tls_key_type key;
};

/* The names a shard's series are labelled with, from its configuration. Indices into these
 * arrays are what the writers pass; the strings are copied. */
struct metrics_labels {
    const char *const *routes;                 /* route names, in configuration order */
    int nroutes;
    const char *const *upstreams;              /* upstream names, in configuration order */
    int nupstreams;
    const char *const *faults;                 /* fault rule names */
    int nfaults;
    const struct metrics_served *served;       /* the tls_cert files, in configuration order */
    int nserved;
};

/* One finished exchange, for portico_requests_total and the phase histograms. */
struct metrics_sample {
    int route;                                 /* index in labels->routes, -1: not routed */
    int upstream;                              /* index in labels->upstreams, -1: none */
    int status;                                /* sent to the client; 499: the client left */
    enum failure_type failure;
    const struct timings *timings;             /* NULL: none (no histogram observation) */
};

/* Origin health at scrape time, one row per configured origin. */
struct metrics_origin {
    const char *upstream;
    const char *origin;                        /* "127.0.0.1:3000" as configured */
    bool up;                                   /* takes requests: not down by passive or active
                                                  health (balance.h) */
    unsigned in_flight;                        /* attempts in flight on it, all workers */
    bool first;                                /* the first row of its upstream: the queue's
                                                  figures below are the upstream's */
    unsigned queue_length;                     /* requests waiting for a slot (max_conns) */
    uint64_t queued;                           /* requests that ever waited */
    uint64_t queue_timeouts;                   /* ... and left at queue_timeout */
    bool sticky;                               /* the upstream has `sticky`: its counts below */
    uint64_t sticky_counts[3];                 /* requests by outcome: hit, new, redispatched */
    int admin;                                 /* enum origin_admin: the admin API's state */
    unsigned weight;                           /* its weight now (the admin API may set it) */
    bool bounded;                              /* retry_budget or retry_timeout is set */
    bool budget;                               /* retry_budget is set */
    unsigned retries_in_flight;                /* retry_budget: retries in flight now */
    uint64_t retries_refused[2];               /* retries refused: budget, retry_timeout */
};

/* A certificate Portico serves or presents, one row per file. */
struct metrics_cert {
    const char *file;                          /* as configured (tls_cert, client_cert) */
    int64_t not_after;                         /* its leaf's notAfter, Unix time */
};

/* What the caller of metrics_render knows that the shards do not. */
struct metrics_scrape {
    const struct metrics_origin *origins;      /* portico_upstream_origin_up */
    size_t norigins;
    uint64_t log_dropped_lines;                /* log_dropped_lines() */
    uint64_t error_log_dropped_lines;          /* log_error_dropped_lines() */
    const struct metrics_cert *certs;          /* portico_tls_certificate_expiry_seconds */
    size_t ncerts;
    /* the serving configuration's per-client table (climit.h; 0s without one) */
    uint64_t client_limit_entries;             /* portico_client_limit_table_entries */
    uint64_t client_limit_connections;         /* portico_client_limit_connections */
    uint64_t client_limit_evictions;           /* portico_client_limit_evictions_total */
    uint64_t client_limit_no_place;            /* portico_client_limit_uncounted_total */
};

/* ---- shards (worker start and end) ---- */

/* Allocates a zeroed shard for one worker, labelled with its configuration's names (NULL: no
 * names; every request then counts as not routed), and registers it for rendering. NULL when
 * out of memory. */
struct metrics *metrics_shard_create(const struct metrics_labels *labels);


/* A worker is gone (its threads joined): folds its counts into the process totals and frees
 * its shard, so that reloads do not pile up shards. NULL is a no-op. */
void metrics_shard_retire(struct metrics *m);

/* Frees every shard and the process totals and zeroes the process-wide values (at shutdown,
 * after the workers stopped; tests start afresh with it). */
void metrics_free_all(void);

/* ---- the request path (the shard's own worker thread only) ---- */

/* Counts one finished exchange: portico_requests_total{route,code,failure} and one observation
 * per phase present in s->timings in portico_phase_duration_seconds{upstream,phase}. */
void metrics_request_done(struct metrics *m, const struct metrics_sample *s);

/* Counts one interim response (code 100-199; others are ignored). */
void metrics_interim(struct metrics *m, int code, enum interim_direction dir);

/* Counts one ended tunnel in portico_tunnels_closed_total{reason}. */
void metrics_tunnel_end(struct metrics *m, enum tunnel_end end);

/* Counts one connection of a proxy_protocol listener refused for its PROXY header in
 * portico_proxy_protocol_errors_total{reason}: reason is an enum pp_error (proxyproto.h). */
void metrics_proxy_protocol_error(struct metrics *m, int reason);

/* Counts one client handshake refused for its certificate in
 * portico_client_cert_refusals_total{reason}. */
void metrics_cert_refusal(struct metrics *m, enum cert_refusal reason);

/* The class of a failed accept's errno, a reason of portico_accept_errors_total. */
enum accept_error accept_error_of(int err);

/* Counts one request refused for client_rate: portico_requests_rate_limited_total{route}
 * (route: index in the labels' routes). */
void metrics_rate_limited(struct metrics *m, int route);

/* Counts one request refused by its route's allow/deny rules: portico_requests_denied_total
 * {route} (route: index in the labels' routes). */
void metrics_denied(struct metrics *m, int route);

/* Counts one mirror request, or one not sent, of route (index in the labels' routes):
 * portico_mirror_requests_total{route,outcome}. */
void metrics_mirror(struct metrics *m, int route, enum mirror_outcome o);

/* Counts one connection closed at its accept: portico_client_connections_refused_total. */
void metrics_conn_refused(struct metrics *m, enum conn_refusal reason);

/* Counts one failed accept in portico_accept_errors_total{reason}. */
void metrics_accept_error(struct metrics *m, enum accept_error reason);

/* Counts one HTTP/2 stream not processed in portico_http2_refused_streams_total{reason}. */
void metrics_h2_refused(struct metrics *m, enum h2_refused reason);

/* Counts one lookup over TCP in portico_dns_tcp_lookups_total{result}. */
void metrics_dns_tcp(struct metrics *m, enum dns_tcp_outcome outcome);

/* Counts one request body rest that ended (enum discard_end), once, where it ended, in
 * portico_request_body_discards_total{protocol,result}, and the bytes of it read and dropped
 * after the answer in portico_request_body_discarded_bytes_total{protocol}. http2: an HTTP/2
 * stream's, else an HTTP/1.x connection's. */
void metrics_discard_end(struct metrics *m, bool http2, enum discard_end end, uint64_t bytes);

/* Counts one full client TLS handshake that sent certificate `served` (index in
 * labels->served) in portico_tls_handshakes_total{file,key}; -1 (none: a resumption, or no
 * certificate known) counts nothing. */
void metrics_tls_handshake(struct metrics *m, int served);

/* Counts one injected fault of rule `fault` (index in labels->faults). */
void metrics_fault(struct metrics *m, int fault, enum fault_action action);

/* Moves the gauge portico_connections{side,state} by delta (+1 opened or entered, -1 left or
 * closed). A connection is counted on the shard of the worker that owns it. */
void metrics_conn_add(struct metrics *m, enum conn_side side, enum conn_state state, int delta);


/* Adds n to a plain counter of shard m. */
static inline void metrics_add(struct metrics *m, enum metric_id id, uint64_t n)
{
    uint64_t v = atomic_load_explicit(&m->counters[id], memory_order_relaxed);
    atomic_store_explicit(&m->counters[id], v + n, memory_order_relaxed);
}

/* ---- process-wide (the main thread) ---- */

/* portico_config_generation: the generation now serving (1 at start, +1 per reload). */
void metrics_config_generation(unsigned generation);

/* Counts one reload attempt in portico_config_reloads_total{result}. */
void metrics_config_reload(enum reload_result result);

/* ---- the admin endpoint ---- */

/* Renders every metric, all shards and retired totals summed, in Prometheus text format
 * 0.0.4: each family once with HELP and TYPE, series in a stable order. s may be NULL.
 * 0, or -1 when out of memory (out then holds a partial exposition: answer 500). */
int metrics_render(struct evbuffer *out, const struct metrics_scrape *s);

/* A scrape written a slice at a time (admin.c streams a large page so that its worker's loop
 * is never held for the whole of it). metrics_cursor_new takes the rows of every shard and of
 * the retired totals at once, with copies of their names and of s's origins: what it holds
 * stays valid whatever retires or reloads meanwhile, and each series is written exactly once
 * (counters as they were at the snapshot, the process-wide gauges as they are when their line
 * is written). NULL when out of memory. */
struct metrics_cursor *metrics_cursor_new(const struct metrics_scrape *s);

/* Appends the next lines of the exposition to out, whole lines only, stopping at the first row
 * boundary past budget bytes (at least one row is written). 1: more to come, 0: the page is
 * complete, -1: out of memory (a partial slice appended). */
int metrics_cursor_next(struct metrics_cursor *c, struct evbuffer *out, size_t budget);

/* Frees a cursor, finished or not. NULL is fine. */
void metrics_cursor_free(struct metrics_cursor *c);

/* Names of the label values ("relayed", "client", "idle", "status", "ok"). Never NULL. */
const char *interim_direction_name(enum interim_direction d);
const char *conn_side_name(enum conn_side s);
const char *conn_state_name(enum conn_state s);
const char *fault_action_name(enum fault_action a);
const char *reload_result_name(enum reload_result r);
const char *tls_key_name(enum tls_key_type k);
/* What a tunnel's end is called in the log ("client closed", "idle for tunnel_timeout"). */
const char *tunnel_end_words(enum tunnel_end e);

/* The metric label and the log words of a refused PROXY header (proxyproto.c). */
const char *pp_error_label(enum pp_error e);
const char *pp_error_words(enum pp_error e);

/* The metric label and the log words of a refused client certificate (mtls.c). */
const char *cert_refusal_label(enum cert_refusal r);
const char *cert_refusal_words(enum cert_refusal r);

/* The metric label and the log words of an HTTP/2 stream not processed (h2.c). */
const char *h2_refused_label(enum h2_refused r);
const char *h2_refused_words(enum h2_refused r);

/* Upper bounds of the portico_phase_duration_seconds buckets in µs (+Inf not included), and
 * their number. */
extern const uint64_t metrics_bucket_us[];
#define METRICS_BUCKETS 15

#endif
