/*
 * config.h — Portico's configuration, loaded from one INI file.
 *
 * Loading is two passes: the inih handler looks each key up in a table whose rows carry the
 * key's setter and bounds (strings copied, numbers parsed strictly, every duration and size
 * capped), then a validation pass fills defaults, resolves cross-references and opens the files
 * the config names. Every problem is reported as "FILE:LINE: message"; loading never stops at
 * the first one, so `portico -t` lists them all, and an allocation failure is one more such
 * problem, never an abort. A loaded config is immutable and shared by the worker threads; what
 * changes while serving lives in its generation (generation.h).
 */
#ifndef PORTICO_CONFIG_H
#define PORTICO_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "portico/acl.h"
#include "portico/config_limits.h"
#include "portico/failure.h"
#include "portico/fault.h"
#include "portico/header_rules.h"
#include "portico/log.h"
#include "portico/route_cond.h"

#define CFG_MAX_LISTEN 16
#define CFG_MAX_WORKERS 256
#define CFG_MAX_ORIGINS 32
#define CFG_MAX_HINTS 16
#define CFG_MAX_MIRRORS 4                  /* `mirror` upstreams per route */
#define CFG_MAX_LINE 8192 /* bytes of one INI line, newline excluded */
#define CFG_MAX_HEADER_SIZE (UINT64_C(1) << 20) /* max_header_size and max_request_line: 1m */
#define CFG_MAX_SOCKBUF (UINT64_C(64) << 20) /* client_sndbuf, origin_rcvbuf: 64m (the kernel
                                               * takes up to 1g) */
#define CFG_MAX_DURATION_MS (UINT64_C(7) * 24 * 3600 * 1000) /* every duration: 7 days at most */
#define CFG_MAX_FAULTS 256 /* [fault NAME] sections */
#define CFG_MAX_TRUSTED_PROXIES 64 /* trusted_proxies blocks: Cloudflare publishes 22 */
#define CFG_MAX_TLS_CERTS 256 /* tls_cert/tls_key pairs of [proxy] */

/* Name of a timer's config key ("connect_timeout"). */
const char *timer_name(enum timer_kind t);

/* The closed sets of values a key can take: id and the name written in the INI (log.h has
 * access_log_format's and log_level's). */
#define EXPECT_LIST(X)                                                                             \
    X(EXPECT_RELAY, "relay")                                                                       \
    X(EXPECT_SYNTHESIZE, "synthesize")                                                             \
    X(EXPECT_IGNORE, "ignore")

/* `scheme` of a [route]: the scheme of the connection a request came over that the route takes
 * (a `listen ... tls` listener's is https, a plain or h2c one's http). */
#define ROUTE_SCHEME_LIST(X)                                                                       \
    X(ROUTE_SCHEME_ANY, "any")                                                                     \
    X(ROUTE_SCHEME_HTTP, "http")                                                                   \
    X(ROUTE_SCHEME_HTTPS, "https")

#define ERROR_DETAIL_LIST(X)                                                                       \
    X(ERROR_DETAIL_FULL, "full")                                                                   \
    X(ERROR_DETAIL_MINIMAL, "minimal")

/* `client_half_close`: what an HTTP/1.1 client's FIN after a whole request means. */
#define HALF_CLOSE_LIST(X)                                                                         \
    X(HALF_CLOSE_ABORT, "abort")   /* it left: the exchange ends, logged 499 (nginx) */            \
    X(HALF_CLOSE_ANSWER, "answer") /* it is done sending: answered, then closed (HAProxy) */

/* `real_ip`: the request field in which a trusted proxy names the client (realip.h). */
#define REAL_IP_LIST(X)                                                                            \
    X(REAL_IP_OFF, "off")                           /* the peer is the client */                   \
    X(REAL_IP_X_FORWARDED_FOR, "x-forwarded-for")   /* nginx, HAProxy, AWS ALB, GCP, most CDNs */  \
    X(REAL_IP_FORWARDED, "forwarded")               /* RFC 7239's for= */                          \
    X(REAL_IP_X_REAL_IP, "x-real-ip")               /* nginx's proxy_set_header habit */           \
    X(REAL_IP_CF_CONNECTING_IP, "cf-connecting-ip") /* Cloudflare */                               \
    X(REAL_IP_TRUE_CLIENT_IP, "true-client-ip")     /* Akamai, Cloudflare Enterprise */

/* `balance`: how an upstream spreads requests over its origins (balance.h). */
#define BALANCE_LIST(X)                                                                            \
    X(BALANCE_ROUND_ROBIN, "round_robin")  /* smooth weighted round robin */                       \
    X(BALANCE_LEAST_CONN, "least_conn")    /* fewest requests in flight per weight */              \
    X(BALANCE_RANDOM_TWO, "random_two")    /* the less busy of two origins drawn at random */    \
    X(BALANCE_HASH, "hash")                /* a request key on a consistent-hash ring */

/* `balance = hash KEY`: what of the request the ring is keyed by (hashkey.h). The NAME of the
 * last two follows their prefix ("$http_x_user", "$cookie_sid"). */
#define HASH_KEY_LIST(X)                                                                           \
    X(HASH_KEY_CLIENT_ADDR, "$client_addr") /* the client (real_ip, PROXY), IPv6 by its /64 */     \
    X(HASH_KEY_URI, "$uri")                 /* the path as sent, without its query */              \
    X(HASH_KEY_HOST, "$host")               /* Host (or the absolute-form authority), any case */  \
    X(HASH_KEY_HTTP, "$http_")              /* a request field's value: its first */               \
    X(HASH_KEY_COOKIE, "$cookie_")          /* a cookie's value */

#define CFG_ENUM_ID(id, name) id,

/* `expect`: what a route does with Expect: 100-continue. */
enum expect_mode { EXPECT_LIST(CFG_ENUM_ID) };

/* `scheme` of a [route]. */
enum route_scheme { ROUTE_SCHEME_LIST(CFG_ENUM_ID) };

/* The scheme of a request that came over a connection: https over TLS, else http (h2c, and a
 * PROXY-protocol or trusted proxy's client alike: the connection Portico accepted, as $scheme
 * and the X-Forwarded-Proto it writes are). */
static inline enum route_scheme route_scheme_of(bool tls)
{
    return tls ? ROUTE_SCHEME_HTTPS : ROUTE_SCHEME_HTTP;
}

/* `error_detail`: what error responses tell the client about the upstream side. */
enum error_detail { ERROR_DETAIL_LIST(CFG_ENUM_ID) };

/* `real_ip` of [proxy]. */
enum real_ip_field { REAL_IP_LIST(CFG_ENUM_ID) };

/* The name real_ip is written with in the INI ("x-forwarded-for"); never NULL. */
const char *real_ip_name(enum real_ip_field f);

/* `client_half_close` of [proxy]. */
enum half_close_mode { HALF_CLOSE_LIST(CFG_ENUM_ID) };

/* `balance` of an [upstream]. */
enum balance_policy { BALANCE_LIST(CFG_ENUM_ID) };

/* The key of `balance = hash KEY`. */
enum hash_key_kind { HASH_KEY_LIST(CFG_ENUM_ID) };

#define CFG_HASH_NAME_MAX 64 /* the NAME of $http_NAME and $cookie_NAME, its NUL included */

#define CFG_MAX_WEIGHT 100 /* `origin = ... weight=N` */
#define CFG_MAX_CONNS 1000000 /* `origin = ... max_conns=N`, [upstream] max_conns, max_queue */
#define CFG_DEFAULT_MAX_QUEUE 1000 /* requests waiting per upstream when its origins are full */
#define CFG_MAX_HEALTH_COUNT 100 /* `health_check = ... rise N fall N` */
#define CFG_STICKY_VALUE_MAX 33   /* an origin's sticky cookie value, its NUL included */
#define CFG_STICKY_ATTRS_MAX 512  /* the attributes after NAME=VALUE in Set-Cookie */
#define CFG_STICKY_MAX_AGE_S (400u * 86400u) /* browsers cap a cookie's life at 400 days */

struct listen_conf {
    struct sockaddr_storage addr; /* numeric address to bind */
    socklen_t addrlen;
    bool tls;                     /* `listen = ... tls`: terminate TLS here */
    bool h2c;                     /* `listen = ... h2c`: cleartext HTTP/2, prior knowledge */
    bool proxy_protocol;          /* `listen = ... proxy_protocol`: every connection begins with
                                     a PROXY header (v1 or v2) naming its client */
    char text[320];               /* as written, for logs */
    int line;                     /* of its listen key, for messages; 0: the default address */
};

struct origin_conf {
    char *host;                   /* name or numeric address; "sim" for the built-in simulator */
    uint16_t port;
    bool is_sim;                  /* forwards to the in-process simulator origin */
    bool numeric;                 /* host is a literal address: no DNS phase */
    struct sockaddr_storage addr; /* valid when numeric */
    socklen_t addrlen;
    unsigned weight;              /* `weight=N`: its share of the requests (1-CFG_MAX_WEIGHT) */
    unsigned max_conns;           /* `max_conns=N`, else the upstream's: requests in flight to
                                     it at most, all workers together; 0: no limit */
    bool backup;                  /* `backup`: takes requests only when no primary can */
    char cookie[CFG_STICKY_VALUE_MAX]; /* its value of the upstream's sticky cookie: `cookie=`,
                                     else 16 hex digits of a hash of host:port (config.c) */
    bool cookie_set;              /* `cookie=VALUE` was written */
    char text[CFG_ORIGIN_TEXT_MAX]; /* "host:port" for logs and error pages */
};

/* `health_check = GET /healthz every 5s expect 200 [timeout 2s] [rise 2] [fall 3]`;
 * interval_ms 0: none. */
struct health_check_conf {
    char *method;                          /* "GET" */
    char *path;                            /* "/healthz" */
    uint64_t interval_ms;                  /* from the start of one check to the next */
    uint64_t timeout_ms;                   /* a check not answered within it fails */
    int expect_lo, expect_hi;              /* the statuses that pass: 200-200, or 200-299 */
    unsigned rise;                         /* passed checks in a row that bring a failing origin
                                              back (1-CFG_MAX_HEALTH_COUNT; 0 counts as 1) */
    unsigned fall;                         /* failed checks in a row that mark a passing origin
                                              down (likewise) */
};

/* `sticky = cookie NAME [path=P] [domain=D] [max_age=DUR] [httponly] [secure]
 * [samesite=strict|lax|none]`: the cookie Portico inserts to pin a client to the origin that
 * answered it (sticky.h). */
struct sticky_conf {
    bool on;
    char name[CFG_HASH_NAME_MAX];          /* the cookie's name, a token */
    size_t name_len;                       /* 0 when off (headers.h reads it so) */
    char attrs[CFG_STICKY_ATTRS_MAX];      /* rendered once: "; Path=/; Max-Age=3600; ..." */
    char text[CFG_STICKY_ATTRS_MAX];       /* the setting in canonical form, for /status */
    int line;                              /* where it was set, for messages */
};

struct upstream_conf {
    char *name;
    int line;                              /* where the section starts, for messages */
    struct origin_conf origins[CFG_MAX_ORIGINS];
    int norigins;
    uint64_t keepalive;                    /* idle pooled connections kept per worker */
    uint64_t keepalive_timeout_ms;
    uint64_t settle_ms;                    /* a released connection waits this long before
                                              another client may take it (upstream_pool.c) */
    uint64_t timers_ms[TIMER_COUNT];       /* resolved: [proxy] default unless overridden */
    bool interim_resets_timer;             /* resolved like the timers */
    uint64_t origin_rcvbuf;                /* SO_RCVBUF of origin sockets, resolved like the
                                              timers; 0: the kernel's autotuning (upstream.c) */
    uint64_t max_fails;                    /* passive health: failures before marked down; 0 off */
    uint64_t fail_window_ms;               /* ... counted within this window */
    uint64_t down_time_ms;                 /* how long a marked-down origin is skipped */
    uint64_t slow_start_ms;                /* an origin back up ramps to its weight in it; 0: off */
    enum balance_policy balance;
    bool pick_by_request;                  /* balance = hash or sticky: the pick reads the
                                              request (exchange.c tests this one flag) */
    enum hash_key_kind hash_key;           /* balance = hash: what the ring is keyed by */
    char hash_name[CFG_HASH_NAME_MAX];     /* $http_NAME: the field name, lowercase, '_' as '-';
                                              $cookie_NAME: the cookie name as written */
    size_t hash_name_len;
    uint64_t retries;                      /* other origins tried after a failed attempt */
    uint64_t max_conns;                    /* the origins' max_conns when they set none; 0 off */
    uint64_t max_queue;                    /* requests waiting for a slot when every usable
                                              origin is at max_conns; 0: refused at once */
    bool limited;                          /* some origin has max_conns (the queue's code runs) */
    bool retry_sent;                       /* also after the request was sent (idempotent) */
    uint16_t retry_on;                     /* retry_on.h mask: final statuses an idempotent
                                              request goes to another origin after; 0: none */
    bool retry_budget;                     /* retry_budget set: retries in flight are bounded */
    uint8_t retry_budget_percent;          /* ... to this share of the requests in flight */
    uint64_t retry_budget_min;             /* ... but never below this many (retry_budget.h) */
    uint64_t retry_timeout_ms;             /* no retry starts once the request ran this long;
                                              0: off */
    struct sticky_conf sticky;             /* `sticky = cookie ...`; off unless set */
    struct health_check_conf health;       /* active health check */
    uint64_t tunnel_timeout_ms;            /* an upgraded connection idle this long closes */
    bool tls;                              /* connect to origins with TLS */
    bool verify;                           /* verify the origin certificate */
    char *ca_file;                         /* NULL: system store */
    char *sni;                             /* NULL: origin host name (none for literal IPs) */
    char *client_cert;
    char *client_key;
    void *ssl_ctx;                         /* SSL_CTX *, built at load time when tls */
};

/* The name an upstream's balance is written with in the INI ("least_conn"; "hash" for hash
 * KEY); never NULL. */
const char *balance_name(enum balance_policy b);

/* The KEY of `balance = hash KEY` as nginx spells it ("$uri", "$http_x_user", "$cookie_sid")
 * into buf of size bytes (CFG_HASH_KEY_TEXT_MAX fits any); returns buf. */
#define CFG_HASH_KEY_TEXT_MAX (16 + CFG_HASH_NAME_MAX)
const char *hash_key_text(const struct upstream_conf *up, char *buf, size_t size);

/* A per-client request rate (client_rate): `count` requests per second or minute, one admitted
 * every interval_ns; count 0: off. */
struct client_rate {
    uint64_t count;                        /* as written: 20 of "20/s" */
    char unit;                             /* 's' or 'm' */
    uint64_t interval_ns;                  /* 1e9 / count, or 60e9 / count */
};

/* return = CODE [TEXT-or-URL]: a route that answers itself, no origin asked (nginx's return,
 * HAProxy's http-request redirect and return); exchange.c sends it. */
struct route_return {
    int status;                            /* 200-599; a 3xx is a redirect with a URL */
    char *text;                            /* owned: a redirect's Location, another code's body,
                                              unexpanded; NULL: none */
    size_t text_len;
    bool vars;                             /* text holds a variable (header_rules.h) */
    int line;                              /* where it was set, for messages */
};

struct route_conf {
    char *name;
    int line;
    char *host;                            /* NULL: any; "*.example.com" or exact, lowercase */
    char *prefix;                          /* path prefix, default "/" */
    size_t prefix_len;                     /* strlen(prefix): every request is matched against
                                              every route */
    bool prefix_plain;                     /* no escape, backslash or "//": it reads as itself */
    size_t prefix_read_len;                /* its length as it reads (route_prefix_read_len) */
    enum route_scheme scheme;              /* the connections it takes: any, http or https */
    bool narrowed;                         /* names a host or a scheme (route.c tests them
                                              behind this one flag) */
    struct route_conds *conds;             /* owned: method, header and cookie conditions, or
                                              NULL (none: tested only of a route that would
                                              win, route.c) */
    unsigned tie_rank;                     /* at equal prefix and host: 2 for a scheme named,
                                              + 1 for conditions; the higher wins */
    char *upstream_name;
    int upstream;                          /* index into cfg->upstreams, resolved */
    enum expect_mode expect;
    uint64_t continue_timeout_ms;
    uint64_t processing_interval_ms;       /* synthesized 102 heartbeats; 0 off */
    char *early_hints[CFG_MAX_HINTS];      /* Link field values sent in a synthesized 103 */
    int nhints;
    bool early_hints_learn;
    uint64_t early_hints_cache;            /* LRU entries for learned hints */
    bool server_timing;                    /* Server-Timing on proxied responses too */
    uint64_t client_body_min_rate;         /* [proxy]'s unless set here: 0 turns it off for the
                                              route (a streaming upload, a long poll) */
    uint64_t client_body_rate_grace_ms;    /* [proxy]'s unless set here */
    struct hrules *request_rules;          /* owned: request_header(_remove), or NULL (none:
                                              the common route costs one test a field) */
    struct hrules *response_rules;         /* owned: response_header(_remove), or NULL */
    char *rewrite_prefix;                  /* what replaces the part of the path prefix
                                              matched, or NULL */
    size_t rewrite_prefix_len;
    struct client_rate client_rate;        /* [proxy]'s unless set here (climit.h) */
    uint64_t client_rate_burst;            /* requests above the rate at once; [proxy]'s unless
                                              set here */
    struct route_return *answer;           /* owned: return = ..., or NULL (the route forwards
                                              to its upstream) */
    struct acl *acl_own;                   /* owned: its allow and deny rules, or NULL */
    const struct acl *acl;                 /* the rules it is judged by: its own, else [proxy]'s
                                              (borrowed); NULL: none, the request pays one
                                              compare (acl.h) */
    char *mirror_names[CFG_MAX_MIRRORS];   /* mirror = UPSTREAM, in file order (mirror.h) */
    int mirror_lines[CFG_MAX_MIRRORS];     /* where each was set, for messages */
    int mirrors[CFG_MAX_MIRRORS];          /* their indices into cfg->upstreams, resolved */
    int nmirrors;                          /* 0: the route mirrors nothing (one test a request) */
    uint64_t mirror_percent;               /* of the route's requests mirrored, 0-100 (100) */
    bool mirror_body;                      /* bodies go with mirror requests (on) */
};

/* [faults]: how the fault rules (issue 8) behave as a whole. */
struct faults_conf {
    bool header_control;                   /* honour the Portico-Fault request header ... */
    struct fault_cidr header_clients[FAULT_MAX_LIST]; /* ... from these clients */
    int nheader_clients;                   /* default 127.0.0.0/8, ::1 */
    bool seeded;                           /* seed was given: decisions are reproducible */
    uint64_t seed;
    bool fault_header;                     /* Portico-Fault: <rule> on responses it shaped */
};

/* [fault NAME]: one rule, and where its section starts. */
struct fault_conf {
    int line;
    bool broken;                           /* a key was refused: the rule is not checked whole */
    struct fault_rule rule;
};

/* One certificate `listen ... tls` serves and its key: the Nth tls_cert of [proxy] with its Nth
 * tls_key (as nginx pairs ssl_certificate with ssl_certificate_key). The first is the default. */
struct tls_pair_conf {
    char *cert;                            /* NULL: a tls_key without its tls_cert (refused) */
    char *key;                             /* NULL: a tls_cert without its tls_key (refused) */
    int cert_line;                         /* where each was set, for messages */
    int key_line;
    /* known once loaded (a `tls` listener's): */
    int key_type;                          /* enum tls_key_type (metrics.h) */
    char key_desc[32];                     /* "rsa 2048", "ecdsa P-256", "ed25519" */
    int entry;                             /* the first pair of its entry: the same names
                                              with other key types (sni.h) */
    char *listing;                         /* owned, with several pairs: "FILE:LINE: tls_cert
                                              PATH: KEY, NAMES" for `portico -t` */
    char *ocsp;                            /* tls_ocsp_response of this tls_cert, or NULL */
    int ocsp_line;
    char *ocsp_listing;                    /* owned: "FILE:LINE: tls_ocsp_response PATH:
                                              stapled ... until ..." for `portico -t` */
};

/* A certificate Portico serves (tls_cert) or presents to origins (client_cert), for
 * portico_tls_certificate_expiry_seconds: each file once. */
struct cfg_cert {
    const char *file;                      /* borrowed: the config's tls_cert or client_cert */
    int64_t not_after;                     /* the leaf's notAfter, Unix time */
};

struct config {
    char *path;                            /* the INI file */
    char *dir;                             /* its directory: relative paths resolve here */
    struct listen_conf listens[CFG_MAX_LISTEN];
    int nlisten;
    int workers;
    uint64_t client_header_timeout_ms;
    uint64_t client_body_timeout_ms;
    uint64_t client_body_min_rate;         /* B/s a request body must average, after its grace
                                              (client_body_rate_grace); 0: off */
    uint64_t client_body_rate_grace_ms;    /* the body's first deadline, before any byte counts */
    uint64_t client_send_timeout_ms;       /* client not reading our response */
    uint64_t keepalive_timeout_ms;         /* idle client connection */
    bool idle_close_on_response;           /* a drain answers an idle one's next request */
    enum half_close_mode client_half_close; /* a FIN after a whole request: 499, or answered */
    uint64_t max_header_size;
    uint64_t max_request_line;
    uint64_t max_body_size;
    uint64_t max_connections;              /* client connections per worker; 0: no limit */
    uint64_t mirror_max_in_flight;         /* mirror requests under way per worker (mirror.h) */
    uint64_t max_connections_per_client;   /* of one client address (IPv6: its /64), all
                                              workers together; 0: no limit (climit.h) */
    struct client_rate client_rate;        /* the routes' default request rate per client */
    uint64_t client_rate_burst;            /* ... and its burst */
    struct acl *acl;                       /* owned: allow and deny of [proxy], the rules of
                                              every route without its own; NULL: none */
    uint64_t client_limit_table;           /* entries of the per-client table (climit.h) */
    uint64_t client_sndbuf;                /* SO_SNDBUF of client sockets; 0: the kernel's
                                              autotuning (listener.c) */
    bool defer_accept;                     /* TCP_DEFER_ACCEPT on the proxy listeners */
    uint64_t origin_rcvbuf;                /* default for upstreams */
    uint64_t timers_ms[TIMER_COUNT];       /* defaults for upstreams */
    bool interim_resets_timer;
    enum error_profile profile;
    int error_overrides[FAILURE_COUNT];    /* [errors]: 0 = profile default */
    char *resolver;                        /* "host:port" of the nameserver, NULL: resolv.conf */
    struct tls_pair_conf *tls_pairs;       /* owned: tls_cert/tls_key, in file order */
    int ntls_pairs;
    bool tls_strict_sni;                   /* a ClientHello naming no certificate's name (or
                                              none) is refused, not given the first (sni.h) */
    int tls_verify_client;                 /* enum mtls_mode: client certificates asked
                                              (optional) or required (on), mtls.h */
    char *tls_client_ca;                   /* the CAs clients' certificates chain to */
    char *tls_client_crl;                  /* their CRLs (NULL: revocation not checked) */
    int tls_verify_depth;                  /* intermediate CAs at most above the client's */
    void *server_ssl_ctx;                  /* SSL_CTX * for `listen ... tls`: the first pair's,
                                              choosing the others by SNI (sni.h) */
    uint64_t tls_ticket_rotation_ms;       /* a new session ticket key this often (ticket.h) */
    bool proxy_status;                     /* Proxy-Status on proxied responses too */
    bool splice;                           /* large plain-TCP bodies go through splice(2) */
    /* clients that are proxies: their forwarding fields go on as they came (headers.c) */
    struct fault_cidr trusted_proxies[CFG_MAX_TRUSTED_PROXIES];
    int ntrusted_proxies;
    enum real_ip_field real_ip;            /* where a trusted proxy's client is named: that
                                              address is the request's client (realip.h) */
    char *error_page_dir;
    char *access_log;                      /* absolute path, "stderr", "stdout" or "off" */
    enum log_format access_log_format;     /* log.h */
    char *error_log;                       /* absolute path, "stderr" or "stdout" */
    enum log_level log_level;              /* least severe message error_log keeps (log.h) */
    enum error_detail error_detail;        /* minimal: no origin, upstream or detail to clients */
    char *admin_listen_text;               /* "127.0.0.1:9901" or NULL */
    int admin_listen_line;                 /* of the admin_listen key, for messages */
    struct sockaddr_storage admin_addr;
    /* HTTP/2 (issue 11) */
    bool http2;                            /* ALPN offers h2 on TLS listeners; h2c allowed */
    uint64_t http2_max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
    socklen_t admin_addrlen;
    char *admin_token;                     /* Bearer token every admin request must carry */
    char **admin_hosts;                    /* Host names the admin listener answers besides
                                              IP addresses and localhost (lowercase, no root
                                              dot; "*": any); owned */
    int nadmin_hosts;
    struct faults_conf faults;
    struct fault_conf *fault_rules;        /* [fault NAME] sections, in file order */
    int nfault_rules;
    uint64_t shutdown_timeout_ms;          /* a stop or reload lets exchanges finish this long */
    char *pid_file;                        /* absolute path or NULL */
    char *user;                            /* started as root: switch to this user... */
    char *group;                           /* ...and group (NULL: the user's) after binding */
    uid_t uid;                             /* user and group resolved at load (valid with user) */
    gid_t gid;

    struct upstream_conf *upstreams;
    int nupstreams;
    struct route_conf *routes;
    int nroutes;

    struct cfg_cert *certs;                /* owned: served and presented certificates */
    int ncerts;
    char **warnings;                       /* owned: "FILE:LINE: warning: message" lines
                                              (no newline) of problems that fail nothing, such
                                              as a certificate that expired or soon will */
    int nwarnings;
};

/*
 * Loads and validates `path`. Returns the config, or NULL after printing every problem as
 * "FILE:LINE: message" to `errors` (control bytes escaped as \xNN), then its warnings; an
 * allocation failure is reported as "FILE:LINE: out of memory" and frees everything. *nerrors
 * (if not NULL) receives the count. A loaded config's warnings are not printed: they are in
 * cfg->warnings, for the caller to say (`portico -t` on stderr, a start or reload in the log).
 */
struct config *cfg_load(const char *path, FILE *errors, int *nerrors);

/* Prints cfg's warnings to out, one line each (`portico -t`, `portico probe -c`). */
void cfg_print_warnings(const struct config *cfg, FILE *out);

/* Same as cfg_load for an INI text in memory; `name` stands for the file name in messages and
 * `dir` for the directory relative paths resolve against. */
struct config *cfg_load_string(const char *text, const char *name, const char *dir, FILE *errors,
                               int *nerrors);

/* The checks of a fault rule against cfg (its route exists; a simulated total_timeout has an
 * upstream total_timeout to wait for), for the INI's rules and those added at run time. 0, or -1
 * with a one-line reason and the key at fault in *key. */
int cfg_fault_check(const struct config *cfg, const struct fault_rule *r, enum fault_key *key,
                    char *why, size_t size);

/* Frees a config and everything it owns (SSL contexts included). NULL is fine. */
void cfg_free(struct config *cfg);

#endif
