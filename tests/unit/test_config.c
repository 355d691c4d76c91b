/*
 * test_config.c — INI loading: README's defaults, every key parsed, every error reported as
 * "test.ini:LINE: message" with the right line, listen/origin forms, [errors], relative paths,
 * timer inheritance.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/config.h"
#include "portico/sock.h"
#include "portico/util.h"

#include "config_helpers.h"

/* ---- defaults ---- */

/* README's tables, for a config that only names one origin. */
static void test_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    /* [proxy] */
    assert_int_equal(cfg->nlisten, 1);
    assert_string_equal(cfg->listens[0].text, "127.0.0.1:8080");
    assert_false(cfg->listens[0].tls);
    assert_false(cfg->listens[0].proxy_protocol);
    assert_int_equal(cfg->listens[0].addr.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&cfg->listens[0].addr)->sin_port), 8080);
    assert_int_equal(cfg->workers, cores > 0 ? MIN(cores, 64) : 1); /* number of cores */
    assert_int_equal(cfg->client_header_timeout_ms, 10000);
    assert_int_equal(cfg->client_body_timeout_ms, 60000);
    assert_int_equal(cfg->client_body_min_rate, 500); /* Apache's body=20,MinRate=500 */
    assert_int_equal(cfg->client_body_rate_grace_ms, 20000);
    assert_int_equal(cfg->client_send_timeout_ms, 60000);
    assert_int_equal(cfg->keepalive_timeout_ms, 75000);
    assert_int_equal(cfg->max_header_size, 16 * 1024);
    assert_int_equal(cfg->max_request_line, 8 * 1024);
    assert_int_equal(cfg->max_body_size, UINT64_C(1) << 30);
    assert_int_equal(cfg->client_sndbuf, 0); /* the kernel autotunes client send buffers */
    assert_false(cfg->defer_accept); /* accepted at the handshake, as nginx and HAProxy */
    assert_int_equal(cfg->origin_rcvbuf, 0); /* and origin receive buffers */
    assert_int_equal(cfg->timers_ms[TIMER_DNS], 5000);
    assert_int_equal(cfg->timers_ms[TIMER_CONNECT], 5000);
    assert_int_equal(cfg->timers_ms[TIMER_TLS], 5000);
    assert_int_equal(cfg->timers_ms[TIMER_SEND], 30000);
    assert_int_equal(cfg->timers_ms[TIMER_FIRST_BYTE], 60000);
    assert_int_equal(cfg->timers_ms[TIMER_READ], 60000);
    assert_int_equal(cfg->timers_ms[TIMER_TOTAL], 0);
    assert_true(cfg->interim_resets_timer);
    assert_int_equal(cfg->profile, PROFILE_STANDARD);
    for (int t = 0; t < FAILURE_COUNT; t++)
        assert_int_equal(cfg->error_overrides[t], 0);
    assert_null(cfg->resolver); /* /etc/resolv.conf */
    assert_int_equal(cfg->ntls_pairs, 0);
    assert_false(cfg->tls_strict_sni);
    assert_null(cfg->server_ssl_ctx);
    assert_int_equal(cfg->tls_ticket_rotation_ms, 3600000); /* 1h: tickets valid 2h */
    assert_false(cfg->proxy_status);
    assert_null(cfg->error_page_dir);
    assert_string_equal(cfg->access_log, "stderr");
    assert_int_equal(cfg->access_log_format, LOG_FORMAT_JSON);
    assert_string_equal(cfg->error_log, "stderr");
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->error_detail, ERROR_DETAIL_FULL);
    assert_int_equal(cfg->client_half_close, HALF_CLOSE_ABORT); /* nginx's 499 */
    assert_null(cfg->admin_listen_text);
    assert_int_equal(cfg->nadmin_hosts, 0); /* IP addresses and localhost only */
    assert_true(cfg->http2);
    assert_int_equal(cfg->http2_max_concurrent_streams, 100);

    /* [upstream] */
    assert_int_equal(cfg->nupstreams, 1);
    const struct upstream_conf *up = &cfg->upstreams[0];
    assert_string_equal(up->name, "app");
    assert_int_equal(up->line, 1);
    assert_int_equal(up->keepalive, 256);
    assert_int_equal(up->keepalive_timeout_ms, 60000);
    for (int t = 0; t < TIMER_COUNT; t++)
        assert_int_equal(up->timers_ms[t], cfg->timers_ms[t]); /* [proxy] */
    assert_true(up->interim_resets_timer);
    assert_int_equal(up->origin_rcvbuf, 0); /* [proxy]'s: the kernel's autotuning */
    assert_int_equal(up->max_fails, 0);
    assert_int_equal(up->fail_window_ms, 10000);
    assert_int_equal(up->down_time_ms, 10000);
    assert_false(up->tls);
    assert_true(up->verify);
    assert_null(up->ca_file);
    assert_null(up->sni);
    assert_null(up->client_cert);
    assert_null(up->client_key);
    assert_null(up->ssl_ctx);

    /* one upstream and no route: an implicit route sends everything there */
    assert_int_equal(cfg->nroutes, 1);
    const struct route_conf *r = &cfg->routes[0];
    assert_null(r->host);
    assert_string_equal(r->prefix, "/");
    assert_string_equal(r->upstream_name, "app");
    assert_int_equal(r->upstream, 0);
    assert_int_equal(r->expect, EXPECT_RELAY);
    assert_int_equal(r->continue_timeout_ms, 1000);
    assert_int_equal(r->processing_interval_ms, 0);
    assert_int_equal(r->nhints, 0);
    assert_false(r->early_hints_learn);
    assert_int_equal(r->early_hints_cache, 1000);
    assert_false(r->server_timing);
    cfg_free(cfg);
}

/* Defaults of an explicit [route]. */
static void test_route_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP "[route r]\nupstream = app\n");
    assert_int_equal(cfg->nroutes, 1);
    const struct route_conf *r = &cfg->routes[0];
    assert_string_equal(r->name, "r");
    assert_int_equal(r->line, 3);
    assert_null(r->host);
    assert_string_equal(r->prefix, "/");
    assert_int_equal(r->expect, EXPECT_RELAY);
    assert_int_equal(r->continue_timeout_ms, 1000);
    assert_int_equal(r->processing_interval_ms, 0);
    assert_false(r->early_hints_learn);
    assert_int_equal(r->early_hints_cache, 1000);
    assert_false(r->server_timing);
    assert_int_equal(r->client_body_min_rate, 500); /* [proxy]'s */
    assert_int_equal(r->client_body_rate_grace_ms, 20000);
    cfg_free(cfg);
}

/* A route takes [proxy]'s body rate and grace unless it sets its own (0: off for it alone). */
static void test_route_body_rate(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[proxy]\nclient_body_min_rate = 2k\nclient_body_rate_grace = 5s\n" UP
                                 "[route a]\nprefix = /a\nupstream = app\nclient_body_min_rate = 0\n"
                                 "[route b]\nupstream = app\nclient_body_rate_grace = 1s\n");
    assert_int_equal(cfg->routes[0].client_body_min_rate, 0);
    assert_int_equal(cfg->routes[0].client_body_rate_grace_ms, 5000);
    assert_int_equal(cfg->routes[1].client_body_min_rate, 2048);
    assert_int_equal(cfg->routes[1].client_body_rate_grace_ms, 1000);
    cfg_free(cfg);
}

/* ---- every key ---- */

enum where { W_CFG, W_UP, W_RT };
enum kind { V_U64, V_INT, V_BOOL, V_ENUM, V_STR };

#define CFGF(f) W_CFG, offsetof(struct config, f)
#define UPF(f) W_UP, offsetof(struct upstream_conf, f)
#define RTF(f) W_RT, offsetof(struct route_conf, f)

/* kv goes into the section `where` names (with a valid upstream and route around it); the field
 * at offset must then hold num (numbers, booleans, enums) or str. */
static const struct {
    const char *kv;
    enum where where;
    size_t offset;
    enum kind kind;
    uint64_t num;
    const char *str;
} key_rows[] = {
    /* [proxy] */
    {"workers = 3", CFGF(workers), V_INT, 3, NULL},                     /* threads */
    {"workers = 256", CFGF(workers), V_INT, 256, NULL},                 /* upper bound */
    {"client_header_timeout = 250ms", CFGF(client_header_timeout_ms), V_U64, 250, NULL}, /* ms */
    {"client_body_timeout = 2s", CFGF(client_body_timeout_ms), V_U64, 2000, NULL},   /* s */
    {"client_send_timeout = 1m", CFGF(client_send_timeout_ms), V_U64, 60000, NULL},  /* m */
    {"client_body_min_rate = 1k", CFGF(client_body_min_rate), V_U64, 1024, NULL},   /* a size */
    {"client_body_min_rate = 0", CFGF(client_body_min_rate), V_U64, 0, NULL},          /* off */
    {"client_body_min_rate = 1g", CFGF(client_body_min_rate), V_U64, 1 << 30, NULL}, /* max */
    {"client_body_rate_grace = 30s", CFGF(client_body_rate_grace_ms), V_U64, 30000, NULL},
    {"keepalive_timeout = 30", CFGF(keepalive_timeout_ms), V_U64, 30000, NULL}, /* bare: s */
    {"keepalive_timeout = 1h", CFGF(keepalive_timeout_ms), V_U64, 3600000, NULL}, /* h */
    {"keepalive_timeout = 0", CFGF(keepalive_timeout_ms), V_U64, 0, NULL},     /* allowed */
    {"max_header_size = 16k", CFGF(max_header_size), V_U64, 16384, NULL},      /* k = 1024 */
    {"max_header_size = 32K", CFGF(max_header_size), V_U64, 32768, NULL},      /* unit case */
    {"max_header_size = 1024", CFGF(max_header_size), V_U64, 1024, NULL},      /* bare bytes */
    {"max_header_size = 1m", CFGF(max_header_size), V_U64, 1 << 20, NULL},     /* upper bound */
    {"max_request_line = 512", CFGF(max_request_line), V_U64, 512, NULL},      /* bytes */
    {"max_body_size = 8m", CFGF(max_body_size), V_U64, 8 << 20, NULL},         /* m = 1024² */
    {"max_body_size = 2g", CFGF(max_body_size), V_U64, UINT64_C(2) << 30, NULL}, /* g */
    {"max_body_size = 0", CFGF(max_body_size), V_U64, 0, NULL},                /* no bodies */
    {"client_sndbuf = 256k", CFGF(client_sndbuf), V_U64, 256 << 10, NULL},      /* a cap */
    {"client_sndbuf = 0", CFGF(client_sndbuf), V_U64, 0, NULL},      /* the kernel's autotuning */
    {"client_sndbuf = 4k", CFGF(client_sndbuf), V_U64, 4096, NULL},            /* lower bound */
    {"defer_accept = on", CFGF(defer_accept), V_BOOL, 1, NULL},                 /* default off */
    {"defer_accept = off", CFGF(defer_accept), V_BOOL, 0, NULL},
    {"origin_rcvbuf = 64k", CFGF(origin_rcvbuf), V_U64, 64 << 10, NULL},      /* upstreams' */
    {"origin_rcvbuf = 0", CFGF(origin_rcvbuf), V_U64, 0, NULL},      /* the kernel's autotuning */
    /* [proxy] default of the upstream timer */
    {"dns_timeout = 1s", CFGF(timers_ms[TIMER_DNS]), V_U64, 1000, NULL},
    /* upstream default, in ms */
    {"connect_timeout = 250ms", CFGF(timers_ms[TIMER_CONNECT]), V_U64, 250, NULL},
    {"tls_timeout = 3s", CFGF(timers_ms[TIMER_TLS]), V_U64, 3000, NULL}, /* upstream default */
    {"send_timeout = 4s", CFGF(timers_ms[TIMER_SEND]), V_U64, 4000, NULL}, /* upstream default */
    /* in minutes */
    {"first_byte_timeout = 2m", CFGF(timers_ms[TIMER_FIRST_BYTE]), V_U64, 120000, NULL},
    {"read_timeout = 5", CFGF(timers_ms[TIMER_READ]), V_U64, 5000, NULL}, /* bare seconds */
    /* off by default, on here */
    {"total_timeout = 90s", CFGF(timers_ms[TIMER_TOTAL]), V_U64, 90000, NULL},
    {"total_timeout = 0", CFGF(timers_ms[TIMER_TOTAL]), V_U64, 0, NULL},       /* 0 is off */
    {"interim_resets_timer = off", CFGF(interim_resets_timer), V_BOOL, 0, NULL}, /* default on */
    /* profile by name */
    {"error_profile = cloudflare", CFGF(profile), V_ENUM, PROFILE_CLOUDFLARE, NULL},
    {"error_profile = proxy", CFGF(profile), V_ENUM, PROFILE_PROXY, NULL}, /* profile by name */
    /* the default, explicitly */
    {"error_profile = standard", CFGF(profile), V_ENUM, PROFILE_STANDARD, NULL},
    {"resolver = 127.0.0.1:5353", CFGF(resolver), V_STR, 0, "127.0.0.1:5353"}, /* IPv4 nameserver */
    {"tls_strict_sni = on", CFGF(tls_strict_sni), V_BOOL, 1, NULL},            /* default off */
    {"proxy_status = on", CFGF(proxy_status), V_BOOL, 1, NULL}, /* default off */
    /* session ticket keys (default 1h): a day at most, 100ms at least */
    {"tls_ticket_rotation = 15m", CFGF(tls_ticket_rotation_ms), V_U64, 900000, NULL},
    {"tls_ticket_rotation = 24h", CFGF(tls_ticket_rotation_ms), V_U64, 86400000, NULL},
    {"tls_ticket_rotation = 100ms", CFGF(tls_ticket_rotation_ms), V_U64, 100, NULL},
    /* HTTP/2 (issue 11) */
    {"http2 = off", CFGF(http2), V_BOOL, 0, NULL},                            /* default on */
    {"http2_max_concurrent_streams = 1", CFGF(http2_max_concurrent_streams), V_U64, 1, NULL},
    {"http2_max_concurrent_streams = 10000", CFGF(http2_max_concurrent_streams), V_U64, 10000,
     NULL},                                                                    /* upper bound */
    {"access_log = off", CFGF(access_log), V_STR, 0, "off"},                   /* kept as is */
    {"access_log = stdout", CFGF(access_log), V_STR, 0, "stdout"},             /* kept as is */
    {"access_log = /tmp/p.log", CFGF(access_log), V_STR, 0, "/tmp/p.log"},     /* absolute */
    /* (relative paths, which must exist, are in test_relative_paths_and_tls) */
    {"access_log_format = text", CFGF(access_log_format), V_ENUM, LOG_FORMAT_TEXT, NULL}, /* k=v */
    {"access_log_format = json", CFGF(access_log_format), V_ENUM, LOG_FORMAT_JSON, NULL}, /* dflt */
    {"error_log = stdout", CFGF(error_log), V_STR, 0, "stdout"},               /* kept as is */
    {"error_log = stderr", CFGF(error_log), V_STR, 0, "stderr"},               /* the default */
    {"error_log = /tmp/portico-e.log", CFGF(error_log), V_STR, 0, "/tmp/portico-e.log"}, /* file */
    {"log_level = error", CFGF(log_level), V_ENUM, LOG_ERROR, NULL},     /* level by name */
    {"log_level = warn", CFGF(log_level), V_ENUM, LOG_WARN, NULL},       /* level by name */
    {"log_level = info", CFGF(log_level), V_ENUM, LOG_INFO, NULL},       /* the default */
    {"log_level = debug", CFGF(log_level), V_ENUM, LOG_DEBUG, NULL},     /* level by name */
    {"error_detail = minimal", CFGF(error_detail), V_ENUM, ERROR_DETAIL_MINIMAL, NULL}, /* public */
    {"error_detail = full", CFGF(error_detail), V_ENUM, ERROR_DETAIL_FULL, NULL}, /* the default */
    /* a FIN after a whole request: answered (HAProxy), or a client that left (the default) */
    {"client_half_close = answer", CFGF(client_half_close), V_ENUM, HALF_CLOSE_ANSWER, NULL},
    {"client_half_close = abort", CFGF(client_half_close), V_ENUM, HALF_CLOSE_ABORT, NULL},
    /* numeric */
    {"admin_listen = 127.0.0.1:9901", CFGF(admin_listen_text), V_STR, 0, "127.0.0.1:9901"},
    /* [upstream] */
    {"keepalive = 0", UPF(keepalive), V_U64, 0, NULL},                          /* no pooling */
    {"keepalive = 100000", UPF(keepalive), V_U64, 100000, NULL},                /* upper bound */
    {"keepalive_timeout = 5s", UPF(keepalive_timeout_ms), V_U64, 5000, NULL}, /* pooled idle */
    {"dns_timeout = 100ms", UPF(timers_ms[TIMER_DNS]), V_U64, 100, NULL}, /* own timer */
    {"connect_timeout = 1s", UPF(timers_ms[TIMER_CONNECT]), V_U64, 1000, NULL}, /* own timer */
    {"tls_timeout = 2s", UPF(timers_ms[TIMER_TLS]), V_U64, 2000, NULL}, /* own timer */
    {"send_timeout = 3s", UPF(timers_ms[TIMER_SEND]), V_U64, 3000, NULL}, /* own timer */
    {"first_byte_timeout = 400ms", UPF(timers_ms[TIMER_FIRST_BYTE]), V_U64, 400, NULL}, /* own */
    {"read_timeout = 1m", UPF(timers_ms[TIMER_READ]), V_U64, 60000, NULL}, /* own timer */
    {"total_timeout = 10s", UPF(timers_ms[TIMER_TOTAL]), V_U64, 10000, NULL}, /* own timer */
    {"interim_resets_timer = off", UPF(interim_resets_timer), V_BOOL, 0, NULL}, /* own value */
    {"origin_rcvbuf = 256k", UPF(origin_rcvbuf), V_U64, 256 << 10, NULL},       /* own value */
    {"origin_rcvbuf = 4k", UPF(origin_rcvbuf), V_U64, 4096, NULL},              /* lower bound */
    {"max_fails = 3", UPF(max_fails), V_U64, 3, NULL}, /* passive health on */
    {"retries = 31", UPF(retries), V_U64, 31, NULL}, /* upper bound: every other origin */
    {"fail_timeout = 30s", UPF(fail_window_ms), V_U64, 30000, NULL}, /* window (and down_time) */
    {"verify = off", UPF(verify), V_BOOL, 0, NULL}, /* default on */
    /* [route] */
    {"host = api.example.com", RTF(host), V_STR, 0, "api.example.com"}, /* exact host */
    {"host = API.Example.COM", RTF(host), V_STR, 0, "api.example.com"},        /* lowercased */
    {"host = *.example.com", RTF(host), V_STR, 0, "*.example.com"},            /* wildcard */
    {"host = example.com.", RTF(host), V_STR, 0, "example.com"},               /* root dot */
    {"prefix = /api/", RTF(prefix), V_STR, 0, "/api/"}, /* path prefix */
    {"expect = synthesize", RTF(expect), V_ENUM, EXPECT_SYNTHESIZE, NULL}, /* mode by name */
    {"expect = ignore", RTF(expect), V_ENUM, EXPECT_IGNORE, NULL}, /* mode by name */
    {"expect = relay", RTF(expect), V_ENUM, EXPECT_RELAY, NULL}, /* the default */
    {"continue_timeout = 500ms", RTF(continue_timeout_ms), V_U64, 500, NULL}, /* relay wait */
    {"continue_timeout = 0", RTF(continue_timeout_ms), V_U64, 0, NULL},        /* at once */
    /* 102 heartbeats on */
    {"processing_interval = 2s", RTF(processing_interval_ms), V_U64, 2000, NULL},
    {"early_hints_learn = on", RTF(early_hints_learn), V_BOOL, 1, NULL}, /* default off */
    {"early_hints_cache = 5", RTF(early_hints_cache), V_U64, 5, NULL}, /* small LRU */
    {"early_hints_cache = 1000000", RTF(early_hints_cache), V_U64, 1000000, NULL}, /* upper bound */
    {"server_timing = on", RTF(server_timing), V_BOOL, 1, NULL}, /* default off */
    {"client_body_min_rate = 0", RTF(client_body_min_rate), V_U64, 0, NULL}, /* off here */
    {"client_body_rate_grace = 2s", RTF(client_body_rate_grace_ms), V_U64, 2000, NULL},
};

static void test_every_key(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(key_rows) / sizeof(key_rows[0]); i++) {
        char text[512];
        const char *kv = key_rows[i].kv;
        switch (key_rows[i].where) {
        case W_CFG:
            snprintf(text, sizeof(text), "[proxy]\n%s\n" UP, kv);
            break;
        case W_UP:
            snprintf(text, sizeof(text), "[upstream app]\norigin = sim\n%s\n", kv);
            break;
        case W_RT:
            snprintf(text, sizeof(text), UP "[route r]\nupstream = app\n%s\n", kv);
            break;
        }
        struct config *cfg = load_ok(text);
        const char *base = key_rows[i].where == W_CFG  ? (const char *)cfg
                           : key_rows[i].where == W_UP ? (const char *)&cfg->upstreams[0]
                                                       : (const char *)&cfg->routes[0];
        const void *field = base + key_rows[i].offset;
        uint64_t got = 0;
        switch (key_rows[i].kind) {
        case V_U64:
            memcpy(&got, field, sizeof(uint64_t));
            break;
        case V_INT:
        case V_ENUM: {
            int v;
            memcpy(&v, field, sizeof(int));
            got = (uint64_t)v;
            break;
        }
        case V_BOOL: {
            bool b;
            memcpy(&b, field, sizeof(bool));
            got = b;
            break;
        }
        case V_STR: {
            const char *s;
            memcpy(&s, field, sizeof(s));
            if (!s || strcmp(s, key_rows[i].str) != 0)
                fail_msg("'%s': '%s', want '%s'", kv, s ? s : "(null)", key_rows[i].str);
            break;
        }
        }
        if (key_rows[i].kind != V_STR && got != key_rows[i].num)
            fail_msg("'%s': %llu, want %llu", kv, (unsigned long long)got,
                     (unsigned long long)key_rows[i].num);
        cfg_free(cfg);
    }
}

/* Repeatable keys collect; everything else set once. */
static void test_repeatable_keys(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[proxy]\n"
                                 "listen = 127.0.0.1:8080\n"
                                 "listen = [::1]:8081\n"
                                 "[upstream app]\n"
                                 "origin = 127.0.0.1:3000\n"
                                 "origin = 127.0.0.1:3001\n"
                                 "[route r]\n"
                                 "upstream = app\n"
                                 "early_hints = </a.css>; rel=preload; as=style\n"
                                 "early_hints = </b.js>; rel=preload; as=script\n"
                                 /* a trailing ';' and an IRI's UTF-8, as browsers take them */
                                 "early_hints = </c.css>; rel=preload; as=style;\n"
                                 "early_hints = </caf\xc3\xa9.woff2>; rel=preload; as=font\n");
    assert_int_equal(cfg->nlisten, 2);
    assert_int_equal(cfg->upstreams[0].norigins, 2);
    assert_int_equal(cfg->routes[0].nhints, 4);
    assert_string_equal(cfg->routes[0].early_hints[0], "</a.css>; rel=preload; as=style");
    assert_string_equal(cfg->routes[0].early_hints[1], "</b.js>; rel=preload; as=script");
    cfg_free(cfg);
}

/* tls_cert and tls_key repeat: the Nth of each make pair N, whichever comes first, each path
 * resolved against the INI's directory and its line kept (the messages name it). */
static const struct {
    const char *why;
    const char *lines;
    int npairs;
    const char *cert[3], *key[3];
    int cert_line[3], key_line[3];
} tls_pair_rows[] = {
    {"one pair, absolute and relative", "tls_cert = /abs/cert.pem\ntls_key = k.pem\n", 1,
     {"/abs/cert.pem"}, {"/etc/portico/k.pem"}, {2}, {3}},
    {"one pair, key first (a config of one pair loads as before)",
     "tls_key = certs/k.pem\ntls_cert = certs/c.pem\n", 1, {"/etc/portico/certs/c.pem"},
     {"/etc/portico/certs/k.pem"}, {3}, {2}},
    {"two pairs, interleaved",
     "tls_cert = /a.pem\ntls_key = /a.key\ntls_cert = /b.pem\ntls_key = /b.key\n", 2,
     {"/a.pem", "/b.pem"}, {"/a.key", "/b.key"}, {2, 4}, {3, 5}},
    {"three pairs, certificates then keys",
     "tls_cert = /a.pem\ntls_cert = /b.pem\ntls_cert = /c.pem\n"
     "tls_key = /a.key\ntls_key = /b.key\ntls_key = /c.key\n",
     3, {"/a.pem", "/b.pem", "/c.pem"}, {"/a.key", "/b.key", "/c.key"}, {2, 3, 4}, {5, 6, 7}},
    {"a certificate without its key is kept for the check to refuse",
     "tls_cert = /a.pem\ntls_key = /a.key\ntls_cert = /b.pem\n", 2, {"/a.pem", "/b.pem"},
     {"/a.key", NULL}, {2, 4}, {3, 0}},
};

static void test_tls_pairs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(tls_pair_rows) / sizeof(tls_pair_rows[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "[proxy]\n%s" UP, tls_pair_rows[i].lines);
        struct config *cfg = cfg_load_string(text, "test.ini", "/etc/portico", NULL, NULL);
        assert_non_null(cfg);
        if (cfg->ntls_pairs != tls_pair_rows[i].npairs)
            fail_msg("%s: %d pairs, want %d", tls_pair_rows[i].why, cfg->ntls_pairs,
                     tls_pair_rows[i].npairs);
        for (int p = 0; p < cfg->ntls_pairs; p++) {
            const struct tls_pair_conf *got = &cfg->tls_pairs[p];
            const char *cert = tls_pair_rows[i].cert[p], *key = tls_pair_rows[i].key[p];
            if ((cert ? !got->cert || strcmp(got->cert, cert) : got->cert != NULL) ||
                (key ? !got->key || strcmp(got->key, key) : got->key != NULL) ||
                got->cert_line != tls_pair_rows[i].cert_line[p] ||
                got->key_line != tls_pair_rows[i].key_line[p])
                fail_msg("%s: pair %d is %s:%d %s:%d", tls_pair_rows[i].why, p,
                         got->cert ? got->cert : "(null)", got->cert_line,
                         got->key ? got->key : "(null)", got->key_line);
        }
        cfg_free(cfg);
    }
}

/* admin_hosts: names split on commas and blanks, stored as a Host key reads (lowercase, no
 * root dot). */
static const struct {
    const char *value;
    const char *names[4];
} admin_hosts_rows[] = {
    {"portico.internal", {"portico.internal"}},
    {"a.internal, b.internal", {"a.internal", "b.internal"}},  /* commas, like other lists */
    {"a.internal  b.internal", {"a.internal", "b.internal"}},  /* blanks */
    {"Box.Internal., metrics", {"box.internal", "metrics"}},   /* as host_key reads a Host */
    {"*", {"*"}},                                               /* any Host */
    {"_svc-1.internal ; a comment", {"_svc-1.internal"}},
};

static void test_admin_hosts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(admin_hosts_rows) / sizeof(admin_hosts_rows[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "[proxy]\nadmin_hosts = %s\n" UP, admin_hosts_rows[i].value);
        struct config *cfg = load_ok(text);
        int n = 0;
        while (n < 4 && admin_hosts_rows[i].names[n])
            n++;
        if (cfg->nadmin_hosts != n)
            fail_msg("admin_hosts = %s: %d names, want %d", admin_hosts_rows[i].value,
                     cfg->nadmin_hosts, n);
        for (int k = 0; k < n; k++)
            assert_string_equal(cfg->admin_hosts[k], admin_hosts_rows[i].names[k]);
        cfg_free(cfg);
    }
}

/* trusted_proxies: none by default; the blocks as given; a /0 loads with a warning at its line */
static void test_trusted_proxies(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP);
    assert_int_equal(cfg->ntrusted_proxies, 0);
    cfg_free(cfg);
    cfg = load_ok("[proxy]\ntrusted_proxies = 127.0.0.0/8, ::1, 127.0.2.7\n" UP);
    assert_int_equal(cfg->ntrusted_proxies, 3);
    assert_int_equal(cfg->trusted_proxies[0].bits, 8);
    assert_int_equal(cfg->trusted_proxies[2].bits, 32);
    assert_int_equal(cfg->nwarnings, 0);
    cfg_free(cfg);
    cfg = load_ok("[proxy]\ntrusted_proxies = 127.0.0.0/8, ::/0\n" UP);
    assert_int_equal(cfg->nwarnings, 1);
    assert_string_equal(cfg->warnings[0],
                        "test.ini:2: warning: trusted_proxies: a /0 block trusts every client: "
                        "any of them can tell the origin it came over https, from any address");
    cfg_free(cfg);
    /* the warning is for /0 alone: a /1 is half of all addresses, not every client */
    cfg = load_ok("[proxy]\ntrusted_proxies = 127.0.0.0/1\n" UP);
    assert_int_equal(cfg->trusted_proxies[0].bits, 1);
    assert_int_equal(cfg->nwarnings, 0);
    cfg_free(cfg);
    /* CFG_MAX_TRUSTED_PROXIES blocks load, one more is refused at its line */
    char text[2048];
    for (int n = CFG_MAX_TRUSTED_PROXIES; n <= CFG_MAX_TRUSTED_PROXIES + 1; n++) {
        size_t len = (size_t)snprintf(text, sizeof(text), "[proxy]\ntrusted_proxies = ");
        for (int i = 1; i <= n; i++)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s127.0.0.%d",
                                    i > 1 ? ", " : "", i);
        snprintf(text + len, sizeof(text) - len, "\n%s", UP);
        if (n == CFG_MAX_TRUSTED_PROXIES) {
            cfg = load_ok(text);
            assert_int_equal(cfg->ntrusted_proxies, n);
            assert_int_equal(cfg->trusted_proxies[n - 1].net.bytes[3], n);
            cfg_free(cfg);
            continue;
        }
        int nerrors;
        char *errors;
        cfg = load(text, "/etc/portico", &nerrors, &errors);
        assert_null(cfg);
        const char *const want[MAX_ERR] = {"test.ini:2: trusted_proxies: at most 64 address "
                                           "blocks"};
        check_errors("65 trusted_proxies blocks", errors, nerrors, want);
        free(errors);
    }
}

/* real_ip: off by default; each field name; with trusted_proxies before it or after */
static void test_real_ip(void **state)
{
    (void)state;
    struct config *cfg = load_ok(UP);
    assert_int_equal(cfg->real_ip, REAL_IP_OFF);
    cfg_free(cfg);
    static const struct {
        const char *name;
        enum real_ip_field want;
    } rows[] = {{"off", REAL_IP_OFF},
                {"x-forwarded-for", REAL_IP_X_FORWARDED_FOR},
                {"forwarded", REAL_IP_FORWARDED},
                {"x-real-ip", REAL_IP_X_REAL_IP},
                {"cf-connecting-ip", REAL_IP_CF_CONNECTING_IP},
                {"true-client-ip", REAL_IP_TRUE_CLIENT_IP}};
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        char ini[256];
        snprintf(ini, sizeof(ini), "[proxy]\nreal_ip = %s\ntrusted_proxies = 127.0.0.2\n" UP,
                 rows[i].name);
        cfg = load_ok(ini);
        assert_int_equal(cfg->real_ip, rows[i].want);
        assert_int_equal(cfg->nwarnings, 0);
        cfg_free(cfg);
    }
    /* off needs no trusted_proxies */
    cfg = load_ok("[proxy]\nreal_ip = off\n" UP);
    assert_int_equal(cfg->real_ip, REAL_IP_OFF);
    cfg_free(cfg);
}

/* ---- listen and origin forms ---- */

static const struct {
    const char *value;
    int family;
    uint16_t port;
    bool tls;
    const char *text;
    bool proxy_protocol;
    bool h2c;
} listen_rows[] = {
    /* value, family, port, tls, text, proxy_protocol, h2c */
    {"127.0.0.1:8080", AF_INET, 8080, false, "127.0.0.1:8080", false, false}, /* IPv4 */
    {"[::1]:8080", AF_INET6, 8080, false, "[::1]:8080", false, false},     /* IPv6 in brackets */
    {"0.0.0.0:80", AF_INET, 80, false, "0.0.0.0:80", false, false},        /* any address */
    {"[::]:443", AF_INET6, 443, false, "[::]:443", false, false},          /* any IPv6 address */
    {"127.0.0.1:8080   tls", AF_INET, 8080, true, "127.0.0.1:8080 tls", false,
     false}, /* blanks before tls */
    {"127.0.0.1:8080 proxy_protocol", AF_INET, 8080, false, "127.0.0.1:8080 proxy_protocol",
     true, false},
    {"[::1]:8080\th2c  proxy_protocol", AF_INET6, 8080, false, "[::1]:8080 h2c proxy_protocol",
     true, true},
    {"127.0.0.1:8080 proxy_protocol h2c", AF_INET, 8080, false,
     "127.0.0.1:8080 h2c proxy_protocol", true, true}, /* in either order */
    {"127.0.0.1:8443 tls proxy_protocol", AF_INET, 8443, true, "", true, false},
};

static void test_listen_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(listen_rows) / sizeof(listen_rows[0]); i++) {
        char text[256];
        int n;
        char *errors;
        /* tls listens need a certificate: a missing one is the only error allowed here */
        snprintf(text, sizeof(text), "[proxy]\nlisten = %s\n" UP, listen_rows[i].value);
        struct config *cfg = load(text, "/", &n, &errors);
        if (listen_rows[i].tls) {
            assert_null(cfg);
            assert_string_equal(errors, "test.ini:2: a 'listen ... tls' needs tls_cert and "
                                        "tls_key in [proxy]\n");
            free(errors);
            continue;
        }
        if (!cfg)
            fail_msg("listen = %s refused: %s", listen_rows[i].value, errors);
        free(errors);
        assert_int_equal(cfg->nlisten, 1);
        const struct listen_conf *l = &cfg->listens[0];
        assert_int_equal(l->addr.ss_family, listen_rows[i].family);
        uint16_t port = l->addr.ss_family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)&l->addr)->sin_port)
                            : ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
        assert_int_equal(port, listen_rows[i].port);
        assert_int_equal(l->addrlen, l->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                                  : sizeof(struct sockaddr_in6));
        assert_int_equal(l->tls, listen_rows[i].tls);
        assert_int_equal(l->h2c, listen_rows[i].h2c);
        assert_int_equal(l->proxy_protocol, listen_rows[i].proxy_protocol);
        assert_string_equal(l->text, listen_rows[i].text);
        cfg_free(cfg);
    }
}

static const struct {
    const char *value;
    const char *host;
    uint16_t port;
    bool is_sim, numeric;
    const char *text;
} origin_rows[] = {
    {"127.0.0.1:3000", "127.0.0.1", 3000, false, true, "127.0.0.1:3000"}, /* IPv4: no DNS */
    {"[::1]:80", "::1", 80, false, true, "[::1]:80"},                      /* IPv6 literal */
    {"sim", "127.0.0.1", 0, true, true, "sim"},                            /* the simulator */
    {"app.internal:8080", "app.internal", 8080, false, false, "app.internal:8080"}, /* DNS */
    {"localhost:1", "localhost", 1, false, false, "localhost:1"},          /* names resolve */
    {"app.internal.:80", "app.internal.", 80, false, false, "app.internal.:80"}, /* absolute */
    {"_svc.app-1.internal:80", "_svc.app-1.internal", 80, false, false,
     "_svc.app-1.internal:80"},                                            /* '_' and '-' */
};

static void test_origin_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(origin_rows) / sizeof(origin_rows[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "[upstream u]\norigin = %s\n", origin_rows[i].value);
        struct config *cfg = load_ok(text);
        const struct origin_conf *o = &cfg->upstreams[0].origins[0];
        assert_int_equal(cfg->upstreams[0].norigins, 1);
        assert_string_equal(o->host, origin_rows[i].host);
        assert_int_equal(o->port, origin_rows[i].port);
        assert_int_equal(o->is_sim, origin_rows[i].is_sim);
        assert_int_equal(o->numeric, origin_rows[i].numeric);
        assert_string_equal(o->text, origin_rows[i].text);
        if (o->numeric && !o->is_sim)
            assert_int_equal(o->addr.ss_family, strchr(o->host, ':') ? AF_INET6 : AF_INET);
        cfg_free(cfg);
    }
}

/* ---- errors: exact "test.ini:LINE: message" lines ---- */

static const struct {
    const char *why;
    const char *text;
    const char *errors[MAX_ERR]; /* every line printed, in order, without the newline */
} error_rows[] = {
    {"unknown section; its keys are not reported again",
     "[proxy]\n[bogus]\nx = 1\n" UP,
     {"test.ini:2: unknown section [bogus] (expected proxy, upstream NAME, route NAME, errors, "
      "faults, fault NAME)"}},
    {"unknown section with a name",
     UP "[rout r]\nupstream = app\n",
     {"test.ini:3: unknown section [rout r] (expected proxy, upstream NAME, route NAME, errors, "
      "faults, fault NAME)"}},
    {"unknown key in [proxy]",
     "[proxy]\nworkerz = 2\n" UP,
     {"test.ini:2: unknown key 'workerz' in [proxy]"}},
    {"nginx's 'listen ADDR:PORT', read up to its ':' as the key",
     "[proxy]\nlisten 127.0.0.1:8080\n" UP,
     {"test.ini:2: unknown key 'listen 127.0.0.1' in [proxy]: a key has no blank; write "
      "'key = value' (a ':' ends the key as '=' does)"}},
    /* a tab is a blank too */
    {"'listen<TAB>ADDR:PORT'", "[proxy]\nlisten\t127.0.0.1:8080\n" UP,
     {"test.ini:2: unknown key 'listen\\x09127.0.0.1' in [proxy]: a key has no blank; write "
      "'key = value' (a ':' ends the key as '=' does)"}},
    {"the same listen address twice, whatever the options",
     "[proxy]\nlisten = 127.0.0.1:8080\nlisten = [::1]:8080\nlisten = 127.0.0.1:8080 tls\n"
     "tls_cert = /c\ntls_key = /k\n" UP,
     {"test.ini:4: listen: 127.0.0.1:8080 is already a listen address"}},
    {"admin_listen on a listen address",
     "[proxy]\nadmin_listen = 127.0.0.1:9901\nlisten = 127.0.0.1:9901\n" UP,
     {"test.ini:2: admin_listen: 127.0.0.1:9901 is also a listen address"}},
    /* the kernel gives 127.0.0.1's connections to the IPv4 socket: the other one got none (a
     * `tls` one there never saw a handshake) */
    {"the same listen address written IPv4-mapped",
     "[proxy]\nlisten = 127.0.0.1:8080\nlisten = [::ffff:127.0.0.1]:8080 tls\n"
     "tls_cert = /c\ntls_key = /k\n" UP,
     {"test.ini:3: listen: [::ffff:127.0.0.1]:8080 is already a listen address"}},
    {"admin_listen on a listen address written IPv4-mapped",
     "[proxy]\nadmin_listen = [::ffff:127.0.0.1]:9901\nlisten = 127.0.0.1:9901\n" UP,
     {"test.ini:2: admin_listen: [::ffff:127.0.0.1]:9901 is also a listen address"}},
    {"unknown key in [upstream]",
     UP "prefix = /\n",
     {"test.ini:3: unknown key 'prefix' in [upstream]"}},
    {"unknown key in [route]",
     UP "[route r]\nupstream = app\norigin = sim\n",
     {"test.ini:5: unknown key 'origin' in [route]"}},
    {"key before any section",
     "; comment\nworkers = 2\n" UP,
     {"test.ini:2: key 'workers' outside of any section"}},
    {"bad duration: a space before the unit",
     "[proxy]\nclient_header_timeout = 10 s\n" UP,
     {"test.ini:2: client_header_timeout: '10 s' is not a duration (e.g. 250ms, 2s, 1m)"}},
    {"bad duration: unknown unit in an upstream timer",
     UP "connect_timeout = 5d\n",
     {"test.ini:3: connect_timeout: '5d' is not a duration (e.g. 250ms, 2s, 1m)"}},
    {"timers other than total_timeout cannot be 0",
     "[proxy]\nread_timeout = 0ms\n" UP,
     {"test.ini:2: read_timeout: must be greater than 0 (only total_timeout can be 0 = off)"}},
    {"duration below its minimum",
     "[proxy]\nclient_body_timeout = 0\n" UP,
     {"test.ini:2: client_body_timeout: must be at least 1ms"}},
    {"client_body_min_rate above its maximum",
     "[proxy]\nclient_body_min_rate = 2g\n" UP,
     {"test.ini:2: client_body_min_rate: must be between 0 and 1073741824 bytes"}},
    {"client_body_rate_grace below its minimum",
     "[proxy]\nclient_body_rate_grace = 0\n" UP,
     {"test.ini:2: client_body_rate_grace: must be at least 1ms"}},
    {"tls_ticket_rotation below its minimum",
     "[proxy]\ntls_ticket_rotation = 50ms\n" UP,
     {"test.ini:2: tls_ticket_rotation: must be at least 100ms"}},
    {"tls_ticket_rotation above its maximum: a key that reads days of sessions",
     "[proxy]\ntls_ticket_rotation = 25h\n" UP,
     {"test.ini:2: tls_ticket_rotation: must be at most 24h"}},
    {"fail_timeout below its minimum",
     UP "fail_timeout = 0\n",
     {"test.ini:3: fail_timeout: must be at least 1ms"}},
    {"fail_timeout beside fail_window: one would silently win",
     UP "fail_timeout = 5s\nfail_window = 2s\n",
     {"test.ini:3: fail_timeout: it sets both fail_window and down_time; use either it or them"}},
    {"[upstream] keepalive_timeout of 0: pooled connections would never expire",
     UP "keepalive_timeout = 0\n",
     {"test.ini:3: keepalive_timeout: must be at least 1ms"}},
    {"retries of as many origins as an upstream may have: one would be tried twice",
     UP "retries = 32\n",
     {"test.ini:3: retries: '32' is not a whole number between 0 and 31"}},
    {"bad size: two-letter unit",
     "[proxy]\nmax_header_size = 16kb\n" UP,
     {"test.ini:2: max_header_size: '16kb' is not a size (e.g. 512, 16k, 8m, 1g)"}},
    {"size out of range (too small)",
     "[proxy]\nmax_header_size = 512\n" UP,
     {"test.ini:2: max_header_size: must be between 1024 and 1048576 bytes"}},
    {"size out of range (too large)",
     "[proxy]\nmax_request_line = 2m\n" UP,
     {"test.ini:2: max_request_line: must be between 256 and 1048576 bytes"}},
    {"bad boolean",
     "[proxy]\nproxy_status = maybe\n" UP,
     {"test.ini:2: proxy_status: 'maybe' is not on/off"}},
    {"defer_accept takes on/off, not nginx's seconds",
     "[proxy]\ndefer_accept = 1s\n" UP,
     {"test.ini:2: defer_accept: '1s' is not on/off"}},
    {"bad boolean in an upstream's interim_resets_timer",
     UP "interim_resets_timer = sometimes\n",
     {"test.ini:3: interim_resets_timer: 'sometimes' is not on/off"}},
    {"an upstream's origin_rcvbuf under the kernel's floor",
     UP "origin_rcvbuf = 1k\n",
     {"test.ini:3: origin_rcvbuf: must be 0 (the kernel's) or between 4096 and 67108864 bytes"}},
    {"bad number",
     "[proxy]\nworkers = two\n" UP,
     {"test.ini:2: workers: 'two' is not a whole number between 1 and 256"}},
    {"number below range",
     "[proxy]\nworkers = 0\n" UP,
     {"test.ini:2: workers: '0' is not a whole number between 1 and 256"}},
    {"number above range",
     UP "keepalive = 100001\n",
     {"test.ini:3: keepalive: '100001' is not a whole number between 0 and 100000"}},
    {"early_hints_cache cannot be 0",
     UP "[route r]\nupstream = app\nearly_hints_cache = 0\n",
     {"test.ini:5: early_hints_cache: '0' is not a whole number between 1 and 1000000"}},
    {"empty string value",
     "[proxy]\naccess_log =\n" UP,
     {"test.ini:2: access_log: empty value"}},
    {"admin_hosts without a name",
     "[proxy]\nadmin_hosts =\n" UP,
     {"test.ini:2: admin_hosts: empty value"}},
    {"admin_hosts with an empty name between commas",
     "[proxy]\nadmin_hosts = a.internal,,b.internal\n" UP,
     {"test.ini:2: admin_hosts: empty name in 'a.internal,,b.internal'"}},
    {"admin_hosts ending with a comma",
     "[proxy]\nadmin_hosts = a.internal, \n" UP,
     {"test.ini:2: admin_hosts: empty name in 'a.internal,'"}},
    /* a URL, a path, a port: the Host is compared by name alone */
    {"admin_hosts with a URL",
     "[proxy]\nadmin_hosts = http://portico.internal/\n" UP,
     {"test.ini:2: admin_hosts: 'http://portico.internal/' is neither '*' nor a host name "
      "(labels of letters, digits, '-' and '_' joined by dots; no scheme, port or path)"}},
    {"admin_hosts with a path",
     "[proxy]\nadmin_hosts = ok.internal portico.internal/status\n" UP,
     {"test.ini:2: admin_hosts: 'portico.internal/status' is neither '*' nor a host name "
      "(labels of letters, digits, '-' and '_' joined by dots; no scheme, port or path)"}},
    {"admin_hosts with a port",
     "[proxy]\nadmin_hosts = portico.internal:9901\n" UP,
     {"test.ini:2: admin_hosts: 'portico.internal:9901' is neither '*' nor a host name "
      "(labels of letters, digits, '-' and '_' joined by dots; no scheme, port or path)"}},
    /* IP addresses are answered without being listed; a bracketed one is no name */
    {"admin_hosts with an IPv6 literal",
     "[proxy]\nadmin_hosts = [::1]\n" UP,
     {"test.ini:2: admin_hosts: '[::1]' is neither '*' nor a host name "
      "(labels of letters, digits, '-' and '_' joined by dots; no scheme, port or path)"}},
    {"admin_hosts with a wildcard name",
     "[proxy]\nadmin_hosts = *.internal\n" UP,
     {"test.ini:2: admin_hosts: '*.internal' is neither '*' nor a host name "
      "(labels of letters, digits, '-' and '_' joined by dots; no scheme, port or path)"}},
    {"admin_hosts with a quoted name holding a blank",
     "[proxy]\nadmin_hosts = \"portico internal\"\n" UP,
     {"test.ini:2: admin_hosts: '\"portico' is neither '*' nor a host name "
      "(labels of letters, digits, '-' and '_' joined by dots; no scheme, port or path)"}},
    {"admin_hosts set twice",
     "[proxy]\nadmin_hosts = a.internal\nadmin_hosts = b.internal\n" UP,
     {"test.ini:3: 'admin_hosts' set twice in this section"}},
    {"duplicate key in [proxy]",
     "[proxy]\nworkers = 2\nworkers = 3\n" UP,
     {"test.ini:3: 'workers' set twice in this section"}},
    {"duplicate key in [route]",
     UP "[route r]\nupstream = app\nupstream = app\n",
     {"test.ini:5: 'upstream' set twice in this section"}},
    {"the same key in two upstreams is fine, twice in one is not",
     UP "[upstream b]\norigin = sim\nkeepalive = 1\nkeepalive = 2\n[route r]\nupstream = b\n",
     {"test.ini:6: 'keepalive' set twice in this section"}},
    {"duplicate [upstream]",
     UP "[upstream app]\norigin = sim\n",
     {"test.ini:3: duplicate [upstream app] (first at line 1)"}},
    {"duplicate [route]",
     UP "[route r]\nupstream = app\n[route r]\nupstream = app\n",
     {"test.ini:5: duplicate [route r] (first at line 3)"}},
    {"duplicate [proxy] would silently override keys",
     "[proxy]\nworkers = 1\n" UP "[proxy]\nworkers = 2\n",
     {"test.ini:5: duplicate [proxy] (first at line 1)"}},
    {"duplicate [errors]",
     "[errors]\ndns_error = 500\n" UP "[errors]\ndns_timeout = 500\n",
     {"test.ini:5: duplicate [errors] (first at line 1)"}},
    {"[proxy] takes no name",
     "[proxy main]\n" UP,
     {"test.ini:1: [proxy] takes no name"}},
    {"[upstream] needs a name",
     "[upstream]\norigin = sim\n" UP,
     {"test.ini:1: [upstream] needs a name of letters, digits, '-', '_' or '.'"}},
    {"route naming a missing upstream: the line of its upstream key",
     UP "[route r]\nprefix = /x\nupstream = nope\n",
     {"test.ini:5: [route r]: no [upstream nope]"}},
    {"route without upstream: the line of its header",
     UP "[route r]\nprefix = /x\n",
     {"test.ini:3: [route r] has no upstream"}},
    /* a return line refused says what is wrong with it, and nothing more: the route answers
     * itself all the same, it is not also a route without an upstream */
    {"return with no status code: its line alone",
     UP "[route r]\nreturn = 2x0 x\n",
     {"test.ini:4: return: '2x0 x': expected a status code (200-599), then a URL or a text"}},
    {"return redirect without a URL: its line alone",
     UP "[route r]\nprefix = /x\nreturn = 301\n",
     {"test.ini:5: return: 301 is a redirect: give the URL (return = 301 "
      "https://$host$request_uri)"}},
    {"a file of return routes, one refused: no [upstream] is still needed",
     "[route a]\nreturn = 204\n[route b]\nprefix = /b/\nreturn = 302\n",
     {"test.ini:5: return: 302 is a redirect: give the URL (return = 302 "
      "https://$host$request_uri)"}},
    {"a refused return beside an origin key: both lines, no cascade",
     UP "[route r]\nreturn = 301\nrewrite_prefix = /y/\n",
     {"test.ini:4: return: 301 is a redirect: give the URL (return = 301 "
      "https://$host$request_uri)",
      "test.ini:5: [route r]: rewrite_prefix with return (line 4): the route answers itself, no "
      "origin is asked"}},
    {"upstream without origin: the line of its header",
     "[proxy]\n[upstream empty]\nkeepalive = 1\n",
     {"test.ini:2: [upstream empty] has no origin"}},
    /* none is not one: no warning of max_fails on a lone origin beside the error */
    {"upstream without origin, max_fails set",
     "[proxy]\n[upstream empty]\nmax_fails = 3\n",
     {"test.ini:2: [upstream empty] has no origin"}},
    {"no upstream at all: a whole-file problem, line 0",
     "[proxy]\nworkers = 1\n",
     {"test.ini:0: no [upstream] section: Portico needs at least one origin to forward to "
      "(or routes that all answer themselves: return)"}},
    {"two upstreams and no route: which gets what is unknown",
     UP "[upstream b]\norigin = sim\n",
     {"test.ini:0: 2 upstreams and no [route]: add routes to say which gets what"}},
    {"two routes with the same host and prefix",
     UP "[route a]\nupstream = app\n[route b]\nupstream = app\nprefix = /\n",
     {"test.ini:5: [route b] has the same host and prefix as [route a]"}},
    {"two routes whose prefixes read the same (an escape, a run of slashes)",
     UP "[route a]\nupstream = app\nprefix = /api/\n[route b]\nupstream = app\n"
        "prefix = /%61pi//\n",
     {"test.ini:6: [route b] has the same host and prefix as [route a]"}},
    {"listen tls without tls_cert/tls_key: the line of the listen",
     "[proxy]\nworkers = 1\nlisten = 127.0.0.1:8443 tls\n" UP,
     {"test.ini:3: a 'listen ... tls' needs tls_cert and tls_key in [proxy]"}},
    {"listen with a name",
     "[proxy]\nlisten = localhost:8080\n" UP,
     {"test.ini:2: listen: 'localhost' is not a numeric IPv4 or [IPv6] address"}},
    {"listen without port",
     "[proxy]\nlisten = 127.0.0.1\n" UP,
     {"test.ini:2: listen: '127.0.0.1': expected host:port"}},
    {"listen with IPv6 without brackets",
     "[proxy]\nlisten = ::1:8080\n" UP,
     {"test.ini:2: listen: '::1:8080': IPv6 addresses need brackets: [::1]:port"}},
    {"listen with port 0",
     "[proxy]\nlisten = 127.0.0.1:0\n" UP,
     {"test.ini:2: listen: '127.0.0.1:0': port must be 1-65535"}},
    {"listen option other than tls",
     "[proxy]\nlisten = 127.0.0.1:8443 ssl\n" UP,
     {"test.ini:2: listen: unknown option 'ssl' (expected 'tls', 'h2c' or 'proxy_protocol')"}},
    {"proxy_protocol misspelt, after a good option",
     "[proxy]\nlisten = 127.0.0.1:8080 h2c proxy-protocol\n" UP,
     {"test.ini:2: listen: unknown option 'proxy-protocol' (expected 'tls', 'h2c' or "
      "'proxy_protocol')"}},
    {"proxy_protocol twice",
     "[proxy]\nlisten = 127.0.0.1:8080 proxy_protocol proxy_protocol\n" UP,
     {"test.ini:2: listen: option 'proxy_protocol' given twice"}},
    {"tls and h2c on one listener",
     "[proxy]\nlisten = 127.0.0.1:8080 tls h2c\n" UP,
     {"test.ini:2: listen: 'tls' and 'h2c' exclude each other (h2 over TLS is offered by ALPN "
      "on a tls listener)"}},
    {"h2c listener with HTTP/2 off",
     "[proxy]\nlisten = 127.0.0.1:8080 h2c\nhttp2 = off\n" UP,
     {"test.ini:2: a 'listen ... h2c' needs http2 = on"}},
    {"no streams at all",
     "[proxy]\nhttp2_max_concurrent_streams = 0\n" UP,
     {"test.ini:2: http2_max_concurrent_streams: '0' is not a whole number between 1 and 10000"}},
    {"origin without port",
     "[upstream a]\norigin = app\n",
     {"test.ini:2: origin: 'app': expected host:port",
      "test.ini:1: [upstream a] has no origin"}},
    {"origin in brackets that is not IPv6",
     "[upstream a]\norigin = sim\norigin = [app]:80\n",
     {"test.ini:3: origin: '[app]:80': expected [ipv6]:port"}},
    /* names DNS cannot ask: evdns put "a..b.test" on the wire as the name "a" with a bogus
     * type (the empty label ends the name), ".lead.test" as the root name, "a.test.." as
     * "a.test" with type 0; a 64-byte label never left */
    {"origin name with an empty label",
     "[upstream a]\norigin = sim\norigin = a..b.test:80\n",
     {"test.ini:3: origin: 'a..b.test:80': 'a..b.test' is not a host name (labels of letters, "
      "digits, '-' and '_' joined by dots, each 1-63 bytes, at most 253 bytes, one final dot "
      "allowed)"}},
    {"origin name with a leading dot",
     "[upstream a]\norigin = sim\norigin = .lead.test:80\n",
     {"test.ini:3: origin: '.lead.test:80': '.lead.test' is not a host name (labels of letters, "
      "digits, '-' and '_' joined by dots, each 1-63 bytes, at most 253 bytes, one final dot "
      "allowed)"}},
    {"origin name with two final dots",
     "[upstream a]\norigin = sim\norigin = a.test..:80\n",
     {"test.ini:3: origin: 'a.test..:80': 'a.test..' is not a host name (labels of letters, "
      "digits, '-' and '_' joined by dots, each 1-63 bytes, at most 253 bytes, one final dot "
      "allowed)"}},
    {"origin name with a label of 64 bytes",
     "[upstream a]\norigin = sim\norigin = "
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.test:80\n",
     {"test.ini:3: origin: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.test:80': "
      "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.test' is not a host name "
      "(labels of letters, digits, '-' and '_' joined by dots, each 1-63 bytes, at most 253 "
      "bytes, one final dot allowed)"}},
    {"origin port out of range",
     "[upstream a]\norigin = sim\norigin = 127.0.0.9:65536\n",
     {"test.ini:3: origin: '127.0.0.9:65536': port must be 1-65535"}},
    {"origin written as a URL",
     "[upstream a]\norigin = sim\norigin = http://127.0.0.9:80\n",
     {"test.ini:3: origin: 'http://127.0.0.9:80': expected host:port, not a URL (no scheme:// "
      "and no /path)"}},
    {"[errors] with an unknown failure type",
     "[errors]\nconnect_timeot = 599\n" UP,
     {"test.ini:2: [errors]: unknown failure type 'connect_timeot'"}},
    {"[errors] cannot override none",
     "[errors]\nnone = 500\n" UP,
     {"test.ini:2: [errors]: unknown failure type 'none'"}},
    {"[errors] status below 400",
     "[errors]\nconnect_timeout = 399\n" UP,
     {"test.ini:2: [errors] connect_timeout: '399' is not a status code between 400 and 599"}},
    {"[errors] status above 599",
     "[errors]\nconnect_timeout = 600\n" UP,
     {"test.ini:2: [errors] connect_timeout: '600' is not a status code between 400 and 599"}},
    {"[errors] a status that needs a field a failure cannot give",
     "[errors]\ndns_error = 401\nconnect_refused = 405\nconnect_timeout = 407\ntls_handshake_failed = 426\n" UP,
     {"test.ini:2: [errors] dns_error: 401 must carry WWW-Authenticate, which a failure answer "
      "has nothing to put in",
      "test.ini:3: [errors] connect_refused: 405 must carry Allow, which a failure answer has "
      "nothing to put in",
      "test.ini:4: [errors] connect_timeout: 407 must carry Proxy-Authenticate, which a failure "
      "answer has nothing to put in",
      "test.ini:5: [errors] tls_handshake_failed: 426 must carry Upgrade, which a failure answer has nothing "
      "to put in"}},
    {"[errors] status not a number",
     "[errors]\ndns_error = bad\n" UP,
     {"test.ini:2: [errors] dns_error: 'bad' is not a status code between 400 and 599"}},
    {"[errors] status not three digits",
     "[errors]\ndns_error = 0599\n" UP,
     {"test.ini:2: [errors] dns_error: '0599' is not a status code between 400 and 599"}},
    {"[errors] type set twice",
     "[errors]\ndns_error = 500\ndns_error = 501\n" UP,
     {"test.ini:3: [errors]: 'dns_error' set twice"}},
    {"unknown error profile",
     "[proxy]\nerror_profile = nginx\n" UP,
     {"test.ini:2: error_profile: 'nginx' is not one of standard, cloudflare, proxy"}},
    {"unknown expect mode",
     UP "[route r]\nupstream = app\nexpect = always\n",
     {"test.ini:5: expect: 'always' is not one of relay, synthesize, ignore"}},
    {"route host with a wildcard in the middle",
     UP "[route r]\nupstream = app\nhost = a*.example.com\n",
     {"test.ini:5: host: invalid character '*' in 'a*.example.com' (exact name or *.domain)"}},
    {"route host that is only a wildcard",
     UP "[route r]\nupstream = app\nhost = *.\n",
     {"test.ini:5: host: invalid character '*' in '*.' (exact name or *.domain)"}},
    {"route host with a port",
     UP "[route r]\nupstream = app\nhost = example.com:80\n",
     {"test.ini:5: host: invalid character ':' in 'example.com:80' (exact name or *.domain)"}},
    {"route prefix not starting with /",
     UP "[route r]\nupstream = app\nprefix = api\n",
     {"test.ini:5: prefix: 'api' must start with '/'"}},
    /* no request path holds a blank or a control byte: the route would never match (an inline
     * comment after '#', which only starts a comment at the start of a line, made every request
     * of /status/ a 404) */
    {"route prefix with a '#' comment after it",
     UP "[route r]\nupstream = app\nprefix = /status/ # the status pages\n",
     {"test.ini:5: prefix: '/status/ # the status pages' holds a blank, a control or a non-ASCII "
      "byte, which no request path has (a comment after a value starts with ' ;')"}},
    {"route prefix with a control byte",
     UP "[route r]\nupstream = app\nprefix = /a\x01\n",
     {"test.ini:5: prefix: '/a\\x01' holds a blank, a control or a non-ASCII byte, which no "
      "request path has (a comment after a value starts with ' ;')"}},
    {"early_hints that is not a Link value",
     UP "[route r]\nupstream = app\nearly_hints = /app.css\n",
     {"test.ini:5: early_hints: '/app.css' is not a Link value (</path>; rel=preload)"}},
    /* a 103 sends only well-formed link-values (hint_filter): this one would never go out */
    {"early_hints with a malformed link-value after a good one",
     UP "[route r]\nupstream = app\nearly_hints = </a.css>; rel=preload, </b.js>>; rel=preload\n",
     {"test.ini:5: early_hints: '</a.css>; rel=preload, </b.js>>; rel=preload' is not a Link "
      "value (</path>; rel=preload)"}},
    {"early_hints with text after the URI",
     UP "[route r]\nupstream = app\nearly_hints = </a.css> x; rel=preload\n",
     {"test.ini:5: early_hints: '</a.css> x; rel=preload' is not a Link value (</path>; "
      "rel=preload)"}},
    {"resolver by name",
     "[proxy]\nresolver = dns.google:53\n" UP,
     {"test.ini:2: resolver: 'dns.google:53' must be a numeric address and port"}},
    {"admin_listen without port",
     "[proxy]\nadmin_listen = 127.0.0.1\n" UP,
     {"test.ini:2: admin_listen: '127.0.0.1': expected host:port"}},
    {"the simulator does not speak TLS",
     "[upstream s]\norigin = sim\ntls = on\n",
     {"test.ini:1: [upstream s]: the simulator origin does not speak TLS"}},
    {"TLS options without tls = on",
     "[upstream a]\norigin = 127.0.0.1:443\nsni = example.com\n",
     {"test.ini:1: [upstream a]: ca_file/sni/client_cert/client_key need tls = on"}},
    {"a line that is not key = value",
     "[proxy]\nworkers\n" UP,
     {"test.ini:2: syntax error (expected [section], key = value, or ; comment)"}},
    {"a section header without ]",
     "[proxy\n" UP,
     {"test.ini:1: syntax error (expected [section], key = value, or ; comment)"}},
    /* inih drops what follows a header's ']': a key written there would be lost unread */
    {"a key on the line of a section header",
     "[proxy] workers = 0\n" UP,
     {"test.ini:1: syntax error (expected [section], key = value, or ; comment)"}},
    {"text after a section header's ']'",
     UP "[route r]x]\nupstream = app\n",
     {"test.ini:3: syntax error (expected [section], key = value, or ; comment)"}},
    /* a longer one was cut to 255 bytes: the section took another name than the one written */
    {"a section header longer than 255 bytes",
     UP "[route rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
     "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
     "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr]\n"
     "upstream = app\n",
     {"test.ini:3: section header longer than 255 bytes"}},
    {"a refused section header opens nothing: its keys are not reported again",
     "[proxy\nbogus = 1\n" UP,
     {"test.ini:1: syntax error (expected [section], key = value, or ; comment)"}},
    {"unknown access log format",
     "[proxy]\naccess_log_format = xml\n" UP,
     {"test.ini:2: access_log_format: 'xml' is not one of json, text"}},
    {"unknown log level",
     "[proxy]\nlog_level = verbose\n" UP,
     {"test.ini:2: log_level: 'verbose' is not one of error, warn, info, debug"}},
    {"names are case-sensitive, like every enum value",
     "[proxy]\nlog_level = INFO\n" UP,
     {"test.ini:2: log_level: 'INFO' is not one of error, warn, info, debug"}},
    {"unknown error detail",
     "[proxy]\nerror_detail = none\n" UP,
     {"test.ini:2: error_detail: 'none' is not one of full, minimal"}},
    {"client_half_close takes its two words only", /* not a bool: "on" would not say which */
     "[proxy]\nclient_half_close = on\n" UP,
     {"test.ini:2: client_half_close: 'on' is not one of abort, answer"}},
    {"error messages cannot be switched off (not a file named off either)",
     "[proxy]\nerror_log = off\n" UP,
     {"test.ini:2: error_log: cannot be off (stderr, stdout, a file path or syslog:server=ADDR)"}},
    {"empty error_log",
     "[proxy]\nerror_log =\n" UP,
     {"test.ini:2: error_log: empty value"}},
    {"log_level set twice",
     "[proxy]\nlog_level = warn\nlog_level = info\n" UP,
     {"test.ini:3: 'log_level' set twice in this section"}},
    {"server_timing is on/off",
     UP "[route r]\nupstream = app\nserver_timing = sometimes\n",
     {"test.ini:5: server_timing: 'sometimes' is not on/off"}},
    {"server_timing belongs to routes",
     "[proxy]\nserver_timing = on\n" UP,
     {"test.ini:2: unknown key 'server_timing' in [proxy]"}},
    /* control bytes from the file are shown escaped, never written raw to a terminal or log */
    {"a control byte in a key",
     "[proxy]\nwork\x01" "ers = 2\n" UP,
     {"test.ini:2: unknown key 'work\\x01ers' in [proxy]"}},
    {"an escape sequence in a value",
     "[proxy]\nerror_profile = \x1b[31mred\n" UP,
     {"test.ini:2: error_profile: '\\x1b[31mred' is not one of standard, cloudflare, proxy"}},
    {"a C1 control (U+009B, a terminal's CSI) in a key",
     "[proxy]\nwork\xc2\x9b" "2Jers = 2\n" UP,
     {"test.ini:2: unknown key 'work\\xc2\\x9b2Jers' in [proxy]"}},
    {"bytes that are no UTF-8 are escaped, UTF-8 text is kept",
     "[proxy]\nuser\xff\xc3\xa9 = x\n" UP,
     {"test.ini:2: unknown key 'user\\xff\xc3\xa9' in [proxy]"}},
    {"DEL in a section name",
     "[bo\x7fgus]\n" UP,
     {"test.ini:1: unknown section [bo\\x7fgus] (expected proxy, upstream NAME, route NAME, "
      "errors, faults, fault NAME)"}},
    {"trusted_proxies takes CIDR blocks, not names",
     "[proxy]\ntrusted_proxies = 127.0.0.0/8, lb.internal\n" UP,
     {"test.ini:2: trusted_proxies: 'lb.internal' is not an address or CIDR block "
      "(127.0.0.0/8, ::1)"}},
    {"real_ip without trusted_proxies would change nothing (nginx says nothing)",
     "[proxy]\nreal_ip = x-forwarded-for\n" UP,
     {"test.ini:2: real_ip: needs trusted_proxies, the proxies whose x-forwarded-for is taken "
      "(without them no client's is)"}},
    {"real_ip names a field Portico knows",
     "[proxy]\ntrusted_proxies = 127.0.0.2\nreal_ip = x-client-ip\n" UP,
     {"test.ini:3: real_ip: 'x-client-ip' is not one of off, x-forwarded-for, forwarded, "
      "x-real-ip, cf-connecting-ip, true-client-ip"}},
    {"a tab inside a value",
     "[proxy]\nlog_level = in\tfo\n" UP,
     {"test.ini:2: log_level: 'in\\x09fo' is not one of error, warn, info, debug"}},
    {"a bare CR inside a value",
     "[proxy]\nlog_level = in\rfo\n" UP,
     {"test.ini:2: log_level: 'in\\x0dfo' is not one of error, warn, info, debug"}},
    /* a rule's headers: not Portico-Fault, which names the rule that fired (main sent the
     * rule's in its place), nor a framing or connection field, which would make the answer
     * lie about its framing */
    {"a fault rule's headers setting Portico's own fields",
     UP "[fault f]\nstatus = 503\nheaders = Portico-Fault: other\nheaders = Content-Length: 5\n"
     "headers = Transfer-Encoding: chunked\nheaders = Connection: close\n",
     {"test.ini:5: headers: 'Portico-Fault' is set by Portico (it names the rule that fired)",
      "test.ini:6: headers: 'Content-Length' is set by Portico (framing and connection fields)",
      "test.ini:7: headers: 'Transfer-Encoding' is set by Portico (framing and connection "
      "fields)",
      "test.ini:8: headers: 'Connection' is set by Portico (framing and connection fields)"}},
    /* after an error header_control may be the line refused: its clients are not said unused */
    {"header_control refused beside its clients",
     "[faults]\nheader_control = maybe\nheader_control_clients = 127.0.0.2/32\n" UP,
     {"test.ini:2: header_control: 'maybe' is not on/off"}},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++) {
        int n;
        char *errors;
        struct config *cfg = load(error_rows[i].text, "/etc/portico", &n, &errors);
        if (cfg)
            fail_msg("%s: accepted", error_rows[i].why);
        check_errors(error_rows[i].why, errors, n, error_rows[i].errors);
        free(errors);
    }
}

/* `portico -t`: every problem of a file is listed, in line order, parse and validation alike. */
static void test_every_error_reported(void **state)
{
    (void)state;
    static const char text[] = "[proxy]\n"                  /* 1 */
                               "workers = lots\n"           /* 2: bad number */
                               "bogus = 1\n"                /* 3: unknown key */
                               "this line is wrong\n"       /* 4: syntax */
                               "[upstream a]\n"             /* 5 */
                               "origin = sim\n"             /* 6 */
                               "connect_timeout = soon\n"   /* 7: bad duration */
                               "also wrong\n"               /* 8: syntax (inih stops at 4) */
                               "[route r]\n"                /* 9 */
                               "upstream = b\n"             /* 10: no such upstream */
                               "[errors]\n"                 /* 11 */
                               "dns_error = 700\n";         /* 12: status out of range */
    static const char *const want[] = {
        "test.ini:2: workers: 'lots' is not a whole number between 1 and 256",
        "test.ini:3: unknown key 'bogus' in [proxy]",
        "test.ini:4: syntax error (expected [section], key = value, or ; comment)",
        "test.ini:7: connect_timeout: 'soon' is not a duration (e.g. 250ms, 2s, 1m)",
        "test.ini:8: syntax error (expected [section], key = value, or ; comment)",
        "test.ini:12: [errors] dns_error: '700' is not a status code between 400 and 599",
        "test.ini:10: [route r]: no [upstream b]",
    };
    int n;
    char *errors;
    struct config *cfg = load(text, "/", &n, &errors);
    assert_null(cfg);
    char expect[1024] = "";
    size_t len = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        len = buf_appendf(expect, sizeof(expect), len, "%s\n", want[i]);
    assert_string_equal(errors, expect);
    assert_int_equal(n, 7);
    free(errors);

    /* a NULL errors stream still counts */
    n = -1;
    assert_null(cfg_load_string(text, "test.ini", "/", NULL, &n));
    assert_int_equal(n, 7);
}

/* Counts the writes an unbuffered stream makes and checks each ends a line, as stderr does. */
struct write_log {
    int writes;
    int partial; /* writes that did not end in '\n' */
};

static ssize_t count_write(void *cookie, const char *buf, size_t size)
{
    struct write_log *w = cookie;
    w->writes++;
    if (size == 0 || buf[size - 1] != '\n')
        w->partial++;
    return (ssize_t)size;
}

/* Each reported error is one write: on a reload, worker threads log to the same stderr, and a
 * line written in pieces came out with an access-log line in the middle of it. */
static void test_error_line_is_one_write(void **state)
{
    (void)state;
    struct write_log w = {0};
    FILE *f = fopencookie(&w, "w", (cookie_io_functions_t){.write = count_write});
    assert_non_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    int n;
    assert_null(cfg_load_string("[proxy]\nbogus = 1\nworkers = lots\n" UP, "test.ini", "/", f, &n));
    fclose(f);
    assert_int_equal(n, 2);
    assert_int_equal(w.writes, 2);
    assert_int_equal(w.partial, 0);
}

/* Seventeen listen lines: the 17th is refused, the others kept. */
static void test_listen_limit(void **state)
{
    (void)state;
    char text[2048];
    size_t len = buf_appendf(text, sizeof(text), 0, "[proxy]\n");
    for (int i = 0; i < CFG_MAX_LISTEN + 1; i++)
        len = buf_appendf(text, sizeof(text), len, "listen = 127.0.0.1:%d\n", 9000 + i);
    len = buf_appendf(text, sizeof(text), len, UP);
    int n;
    char *errors;
    assert_null(load(text, "/", &n, &errors));
    char want[128];
    snprintf(want, sizeof(want), "test.ini:%d: listen: at most %d listen addresses\n",
             CFG_MAX_LISTEN + 2, CFG_MAX_LISTEN);
    assert_string_equal(errors, want);
    assert_int_equal(n, 1);
    free(errors);
}

/* Keys at the edges of what they take: a row loads (want NULL) or is refused with a message
 * holding want. */
static void test_key_edges(void **state)
{
    /* 253 and 254 bytes: labels of 63 joined by dots, then 61 or 62 */
    char l63[64];
    memset(l63, 'a', 63);
    l63[63] = '\0';
    char sni253[300], sni254[300], text[4096];
    snprintf(sni253, sizeof(sni253), "%s.%s.%s.%.61s", l63, l63, l63, l63);
    snprintf(sni254, sizeof(sni254), "%s.%s.%s.%.62s", l63, l63, l63, l63);
    assert_int_equal(strlen(sni253), 253);
    assert_int_equal(strlen(sni254), 254);
    struct {
        char text[1024];
        const char *want;
    } rows[] = {
        {"", NULL}, /* sni253, below */
        {"", "sni: '"}, /* sni254: no longer a name OpenSSL sends */
        {UP "[route r]\nupstream = app\nhost = _svc.example.com\n", NULL}, /* '_' in a host */
        {UP "[route r]\nupstream = app\nhost = *.a_b.example.com\n", NULL},
        {"[upstream u]\norigin = sim\nhealth_check = GET /h every 5s expect 5xx\n", NULL},
        {"[upstream u]\norigin = sim\nhealth_check = GET /h every 5s expect 6xx\n",
         "health_check: expect '6xx' is not a status"},
        {"[proxy]\nadmin_token = abc-._~+/==\n" UP, NULL},
        {"[proxy]\nadmin_token = ===\n" UP, "admin_token: expected a token"},
        {"[proxy]\nadmin_token = =\n" UP, "admin_token: expected a token"},
    };
    (void)state;
    snprintf(rows[0].text, sizeof(rows[0].text),
             "[upstream u]\norigin = 127.0.0.1:443\ntls = on\nsni = %s\n", sni253);
    snprintf(rows[1].text, sizeof(rows[1].text),
             "[upstream u]\norigin = 127.0.0.1:443\ntls = on\nsni = %s\n", sni254);
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        int n;
        char *errors;
        struct config *cfg = load(rows[i].text, "/", &n, &errors);
        if (rows[i].want ? cfg || !strstr(errors, rows[i].want) : !cfg || n != 0)
            fail_msg("row %zu: %s (%d errors):\n%s--- config:\n%s", i,
                     rows[i].want ? "not refused as wanted" : "refused", n, errors,
                     rows[i].text);
        cfg_free(cfg);
        free(errors);
    }
    /* CFG_MAX_ORIGINS origins in an upstream, and not one more */
    size_t len = 0;
    for (int extra = 0; extra < 2; extra++) {
        len = buf_appendf(text, sizeof(text), 0, "[upstream u]\n");
        for (int i = 0; i < CFG_MAX_ORIGINS + extra; i++)
            len = buf_appendf(text, sizeof(text), len, "origin = 127.0.0.1:%d\n", 9000 + i);
        int n;
        char *errors;
        struct config *cfg = load(text, "/", &n, &errors);
        if (!extra) {
            assert_non_null(cfg);
            assert_int_equal(cfg->upstreams[0].norigins, CFG_MAX_ORIGINS);
        } else {
            char want[128];
            snprintf(want, sizeof(want), "test.ini:%d: origin: at most %d origins per upstream\n",
                     CFG_MAX_ORIGINS + 2, CFG_MAX_ORIGINS);
            assert_null(cfg);
            assert_string_equal(errors, want);
        }
        cfg_free(cfg);
        free(errors);
    }
}

/* ---- limits (issue 13: values that overflowed passed `portico -t`) ---- */

/* Every duration key, in a section of its own: text is before + "KEY = VALUE\n" + after. */
#define RT UP "[route r]\nupstream = app\n"
static const struct {
    const char *before;
    const char *key;
    const char *after;
} duration_keys[] = {
    {"[proxy]\n", "client_header_timeout", UP},
    {"[proxy]\n", "client_body_timeout", UP},
    {"[proxy]\n", "client_send_timeout", UP},
    {"[proxy]\n", "keepalive_timeout", UP},
    {"[proxy]\n", "dns_timeout", UP},
    {"[proxy]\n", "connect_timeout", UP},
    {"[proxy]\n", "tls_timeout", UP},
    {"[proxy]\n", "send_timeout", UP},
    {"[proxy]\n", "first_byte_timeout", UP},
    {"[proxy]\n", "read_timeout", UP},
    {"[proxy]\n", "total_timeout", UP},
    {UP, "keepalive_timeout", ""},
    {UP, "dns_timeout", ""},
    {UP, "connect_timeout", ""},
    {UP, "tls_timeout", ""},
    {UP, "send_timeout", ""},
    {UP, "first_byte_timeout", ""},
    {UP, "read_timeout", ""},
    {UP, "total_timeout", ""},
    {UP, "fail_timeout", ""},
    {UP, "fail_window", ""},
    {UP, "down_time", ""},
    {UP, "tunnel_timeout", ""},
    {RT, "continue_timeout", ""},
    {RT, "processing_interval", ""},
};

/* Values tried for each: ok says whether it is within the maximum of 7 days. */
static const struct {
    const char *value;
    bool ok;
} duration_values[] = {
    {"168h", true},                          /* the maximum */
    {"604800000ms", true},                   /* the maximum in ms */
    {"10080m", true},                        /* in minutes */
    {"604800", true},                        /* bare seconds */
    {"604800001ms", false},                  /* one ms more */
    {"169h", false},                         /* an hour more */
    {"18446744073709s", false},              /* the value: + now wrapped every deadline */
    {"18446744073709551615ms", false},       /* UINT64_MAX */
    {"99999999999999999999999999h", false},  /* beyond 64 bits: too long, not "not a duration" */
};

static void test_duration_limits(void **state)
{
    (void)state;
    for (size_t k = 0; k < ARRAY_LEN(duration_keys); k++) {
        int line = 1;
        for (const char *p = duration_keys[k].before; *p; p++)
            line += *p == '\n';
        for (size_t v = 0; v < ARRAY_LEN(duration_values); v++) {
            char text[512], want[128], why[128];
            snprintf(text, sizeof(text), "%s%s = %s\n%s", duration_keys[k].before,
                     duration_keys[k].key, duration_values[v].value, duration_keys[k].after);
            snprintf(want, sizeof(want), "test.ini:%d: %s: must be at most 168h", line,
                     duration_keys[k].key);
            snprintf(why, sizeof(why), "%s = %s", duration_keys[k].key, duration_values[v].value);
            const char *const wants[MAX_ERR] = {duration_values[v].ok ? NULL : want};
            int n;
            char *errors;
            struct config *cfg = load(text, "/", &n, &errors);
            check_errors(why, errors, n, wants);
            assert_int_equal(cfg != NULL, duration_values[v].ok);
            cfg_free(cfg);
            free(errors);
        }
    }
}

/* Configs that load but do not do what an nginx or HAProxy user means: each loads with the
 * warnings at the offending key's line, in order; the rows without one load silently. */
static const struct {
    const char *why;
    const char *text;
    const char *warnings[MAX_ERR];
} surprise_rows[] = {
    /* HAProxy's milliseconds: 83 minutes here, as in nginx */
    {"a bare 5000 on a timer", "[proxy]\nconnect_timeout = 5000\n" UP,
     {"test.ini:2: warning: connect_timeout = 5000 is 5000 s (1h23m20s); for milliseconds "
      "write 5000ms"}},
    {"a bare 1000 on an upstream's timer", UP "read_timeout = 1000\n",
     {"test.ini:3: warning: read_timeout = 1000 is 1000 s (16m40s); for milliseconds write "
      "1000ms"}},
    /* every duration key goes through the one parser: fail_timeout's own setter too */
    {"a bare number on fail_timeout", UP "fail_timeout = 3600\n",
     {"test.ini:3: warning: fail_timeout = 3600 is 3600 s (1h); for milliseconds write 3600ms"}},
    {"health_check's durations", UP "health_check = GET / every 2000 expect 200 timeout 1000\n",
     {"test.ini:3: warning: health_check: every 2000 is 2000 s (33m20s); for milliseconds write "
      "2000ms",
      "test.ini:3: warning: health_check: timeout 1000 is 1000 s (16m40s); for milliseconds "
      "write 1000ms"}},
    /* below 1000 a bare number is likely meant as seconds; with a unit it says what it is */
    {"a bare 999", "[proxy]\nconnect_timeout = 999\n" UP, {NULL}},
    {"5000ms", "[proxy]\nconnect_timeout = 5000ms\n" UP, {NULL}},
    {"5000s", "[proxy]\nconnect_timeout = 5000s\n" UP, {NULL}},
    {"2h", "[proxy]\nkeepalive_timeout = 2h\n" UP, {NULL}},
    /* keys whose usual values are hours: a bare 3600 is meant as seconds there */
    {"a bare 3600 on tunnel_timeout", UP "tunnel_timeout = 3600\n", {NULL}},
    {"a bare 7200 on tls_ticket_rotation", "[proxy]\ntls_ticket_rotation = 7200\n" UP, {NULL}},
    {"a bare 1800 on shutdown_timeout", "[proxy]\nshutdown_timeout = 1800\n" UP, {NULL}},
    /* a fault rule's timers too: "delay = 5000" meant as 5 s holds each request 83 minutes */
    {"a bare 5000 on a fault's delay", UP "[fault f]\ndelay = 5000\n",
     {"test.ini:4: warning: delay = 5000 is 5000 s (1h23m20s); for milliseconds write 5000ms"}},
    {"a bare number inside a fault's delay shape",
     UP "[fault f]\nresponse_delay = uniform(100ms, 2000)\n",
     {"test.ini:4: warning: response_delay = uniform(100ms, 2000): 2000 is 2000 s (33m20s); for "
      "milliseconds write 2000ms"}},
    {"a fault's jitter and interim_interval",
     UP "[fault f]\ndelay = 2s\njitter = 1000\ninterim = 103\ninterim_interval = 1500\n",
     {"test.ini:5: warning: jitter = 1000 is 1000 s (16m40s); for milliseconds write 1000ms",
      "test.ini:7: warning: interim_interval = 1500 is 1500 s (25m); for milliseconds write "
      "1500ms"}},
    /* a rule's window is minutes to hours: a bare 3600 is meant as an hour */
    {"a fault's after and for", UP "[fault f]\nafter = 3600\nfor = 7200\nstatus = 503\n",
     {NULL}},
    {"a fault's delay below 1000, or with a unit", UP "[fault f]\ndelay = 999\n[fault g]\n"
     "delay = lognormal(median=200ms, p99=3000s)\n", {NULL}},
    /* the header's clients without the header: it is off by default, and stays ignored */
    {"header_control_clients without header_control",
     UP "[faults]\nheader_control_clients = 127.0.0.2/32\n",
     {"test.ini:4: warning: header_control_clients: not used, header_control is off "
      "(header_control = on honours the Portico-Fault header from them)"}},
    {"header_control_clients = off said as such",
     UP "[faults]\nheader_control = off\nheader_control_clients = 127.0.0.2/32\n",
     {"test.ini:5: warning: header_control_clients: not used, header_control is off "
      "(header_control = on honours the Portico-Fault header from them)"}},
    /* the default written out, as in README's template of every key: nothing to say */
    {"the default header_control_clients written out",
     UP "[faults]\nheader_control = off\nheader_control_clients = 127.0.0.0/8, ::1\n", {NULL}},
    {"header_control_clients with header_control",
     UP "[faults]\nheader_control_clients = 127.0.0.2/32\nheader_control = on\n", {NULL}},
    /* a list of its own is one that differs from the default at all: by its length alone, or
     * by an entry past the first */
    {"a part of the default header_control_clients",
     UP "[faults]\nheader_control_clients = 127.0.0.0/8\n",
     {"test.ini:4: warning: header_control_clients: not used, header_control is off "
      "(header_control = on honours the Portico-Fault header from them)"}},
    {"the default header_control_clients with its second entry changed",
     UP "[faults]\nheader_control_clients = 127.0.0.0/8, 127.0.0.2/32\n",
     {"test.ini:4: warning: header_control_clients: not used, header_control is off "
      "(header_control = on honours the Portico-Fault header from them)"}},
    /* nginx ignores max_fails for a lone server: here it is marked down, nothing is left */
    {"max_fails on a lone origin", UP "max_fails = 3\ndown_time = 30s\n",
     {"test.ini:3: warning: max_fails = 3 with one origin: after 3 failures it is marked down "
      "and every request gets 503 no_healthy_origin for down_time (30s), even once it is back; "
      "leave max_fails out, or list more origins"}},
    /* the least that marks it down: one failure */
    {"max_fails = 1 on a lone origin", UP "max_fails = 1\ndown_time = 10s\n",
     {"test.ini:3: warning: max_fails = 1 with one origin: after 1 failure it is marked down "
      "and every request gets 503 no_healthy_origin for down_time (10s), even once it is back; "
      "leave max_fails out, or list more origins"}},
    {"max_fails on two origins", UP "origin = 127.0.0.1:3000\nmax_fails = 3\n", {NULL}},
    {"max_fails = 0 (off) on a lone origin", UP "max_fails = 0\n", {NULL}},
    /* a lone origin with a health check is out while its check fails, back when it passes */
    {"health_check on a lone origin", UP "health_check = GET / every 5s expect 200\n", {NULL}},
    /* the files are not even read without a tls listen */
    {"tls_cert and tls_key without a tls listen",
     "[proxy]\nlisten = 127.0.0.1:8080\ntls_cert = /c.pem\n\ntls_key = /k.pem\n" UP,
     {"test.ini:3: warning: tls_cert: not used, no listen line has tls (listen = ADDR:PORT tls "
      "serves HTTPS with tls_cert and tls_key)",
      "test.ini:5: warning: tls_key: not used, no listen line has tls (listen = ADDR:PORT tls "
      "serves HTTPS with tls_cert and tls_key)"}},
    {"a second pair and tls_strict_sni without a tls listen: each line",
     "[proxy]\ntls_strict_sni = on\ntls_key = /a.key\ntls_cert = /a.pem\ntls_cert = /b.pem\n"
     UP,
     {"test.ini:4: warning: tls_cert: not used, no listen line has tls (listen = ADDR:PORT tls "
      "serves HTTPS with tls_cert and tls_key)",
      "test.ini:3: warning: tls_key: not used, no listen line has tls (listen = ADDR:PORT tls "
      "serves HTTPS with tls_cert and tls_key)",
      "test.ini:5: warning: tls_cert: not used, no listen line has tls (listen = ADDR:PORT tls "
      "serves HTTPS with tls_cert and tls_key)",
      "test.ini:2: warning: tls_strict_sni: not used, no listen line has tls"}},
};

static void test_surprise_warnings(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(surprise_rows); i++) {
        struct config *cfg = load_ok(surprise_rows[i].text);
        int n = 0;
        while (n < MAX_ERR && surprise_rows[i].warnings[n])
            n++;
        bool same = cfg->nwarnings == n;
        for (int w = 0; same && w < n; w++)
            same = strcmp(cfg->warnings[w], surprise_rows[i].warnings[w]) == 0;
        for (int w = 0; !same && w < cfg->nwarnings; w++)
            print_message("%s\n", cfg->warnings[w]);
        if (!same)
            fail_msg("%s: %d warnings (above), want %d", surprise_rows[i].why, cfg->nwarnings, n);
        cfg_free(cfg);
    }
}

/* Sizes: the largest value of each key loads, one byte more is refused naming the bounds. The
 * first line of `lines` is the one tested, at line 2. */
static const struct {
    const char *lines;
    size_t offset;      /* of the uint64_t field in struct config */
    uint64_t value;     /* when loaded */
    const char *message;
} size_rows[] = {
    {"max_header_size = 1m", offsetof(struct config, max_header_size), 1 << 20, NULL}, /* max */
    {"max_header_size = 1048577", 0, 0, "max_header_size: must be between 1024 and 1048576 bytes"},
    /* the maximum (a request line longer than the head limit would be cut to it) */
    {"max_request_line = 1m\nmax_header_size = 1m", offsetof(struct config, max_request_line),
     1 << 20, NULL},
    {"max_request_line = 1g", 0, 0, "max_request_line: must be between 256 and 1048576 bytes"},
    {"max_body_size = 1t", offsetof(struct config, max_body_size), UINT64_C(1) << 40, NULL},
    {"max_body_size = 1099511627777", 0, 0,                          /* one byte more */
     "max_body_size: must be between 0 and 1099511627776 bytes"},
    {"max_body_size = 17179869184g", 0, 0,                           /* 2^64: saturates, refused */
     "max_body_size: must be between 0 and 1099511627776 bytes"},
    {"max_body_size = 99999999999999999999999t", 0, 0,               /* beyond 64 bits */
     "max_body_size: must be between 0 and 1099511627776 bytes"},
    /* 0 leaves the send buffer to the kernel; 1 to 4095 would be its floor, unsaid */
    {"client_sndbuf = 64m", offsetof(struct config, client_sndbuf), 64 << 20, NULL}, /* max */
    {"client_sndbuf = 67108865", 0, 0,                               /* one byte more */
     "client_sndbuf: must be 0 (the kernel's) or between 4096 and 67108864 bytes"},
    {"client_sndbuf = 4095", 0, 0,                                   /* one byte less */
     "client_sndbuf: must be 0 (the kernel's) or between 4096 and 67108864 bytes"},
    {"client_sndbuf = 1", 0, 0,
     "client_sndbuf: must be 0 (the kernel's) or between 4096 and 67108864 bytes"},
    {"client_sndbuf = 64 KiB", 0, 0, "client_sndbuf: '64 KiB' is not a size (e.g. 512, 16k, 8m, 1g)"},
    /* the same bounds on the origin side */
    {"origin_rcvbuf = 64m", offsetof(struct config, origin_rcvbuf), 64 << 20, NULL}, /* max */
    {"origin_rcvbuf = 67108865", 0, 0,                               /* one byte more */
     "origin_rcvbuf: must be 0 (the kernel's) or between 4096 and 67108864 bytes"},
    {"origin_rcvbuf = 4095", 0, 0,                                   /* one byte less */
     "origin_rcvbuf: must be 0 (the kernel's) or between 4096 and 67108864 bytes"},
    {"origin_rcvbuf = -1", 0, 0, "origin_rcvbuf: '-1' is not a size (e.g. 512, 16k, 8m, 1g)"},
};

static void test_size_limits(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(size_rows); i++) {
        char text[256], want[160];
        snprintf(text, sizeof(text), "[proxy]\n%s\n" UP, size_rows[i].lines);
        snprintf(want, sizeof(want), "test.ini:2: %s", size_rows[i].message);
        const char *const wants[MAX_ERR] = {size_rows[i].message ? want : NULL};
        int n;
        char *errors;
        struct config *cfg = load(text, "/", &n, &errors);
        check_errors(size_rows[i].lines, errors, n, wants);
        free(errors);
        if (!size_rows[i].message) {
            uint64_t got;
            assert_non_null(cfg);
            memcpy(&got, (const char *)cfg + size_rows[i].offset, sizeof(got));
            assert_int_equal(got, size_rows[i].value);
        }
        cfg_free(cfg);
    }
}

/* ---- lines the INI parser used to split (issue 13: diagnostics) ---- */

/* A text of `before`, a line of `len` bytes made of `head` then `fill` bytes, then `after`. */
static char *long_line(const char *before, const char *head, char fill, size_t len,
                       const char *tail, const char *after)
{
    size_t nb = strlen(before), nh = strlen(head), nt = strlen(tail), na = strlen(after);
    assert_true(len >= nh + nt);
    char *text = malloc(nb + len + 1 + na + 1);
    assert_non_null(text);
    memcpy(text, before, nb);
    memcpy(text + nb, head, nh);
    memset(text + nb + nh, fill, len - nh - nt);
    memcpy(text + nb + len - nt, tail, nt);
    text[nb + len] = '\n';
    memcpy(text + nb + len + 1, after, na + 1);
    return text;
}

static const struct {
    const char *why;
    const char *before, *head;
    size_t len;
    const char *tail, *after;
    const char *errors[MAX_ERR];
} long_rows[] = {
    {"a comment of exactly the longest line is fine",
     "[proxy]\n", "; ", CFG_MAX_LINE, "", UP, {NULL}},
    {"one byte more: one message at its line, and the line after keeps its number",
     "[proxy]\n", "; ", CFG_MAX_LINE + 1, "", "bogus = 1\n" UP,
     {"test.ini:2: line longer than 8192 bytes", "test.ini:3: unknown key 'bogus' in [proxy]"}},
    {"the longest line ends in CRLF: the CR is the line ending's, not the line's",
     "[proxy]\r\n", "; ", CFG_MAX_LINE + 1, "\r", UP, {NULL}},
    {"one byte more with CRLF: too long as with LF",
     "[proxy]\r\n", "; ", CFG_MAX_LINE + 2, "\r", "bogus = 1\r\n" UP,
     {"test.ini:2: line longer than 8192 bytes", "test.ini:3: unknown key 'bogus' in [proxy]"}},
    {"the longest line's last byte may be a CR only before its LF",
     "[proxy]\n", "; ", CFG_MAX_LINE + 1, "a", UP,
     {"test.ini:2: line longer than 8192 bytes"}},
    {"a long value: the tail is not taken for a line of its own",
     UP "[route r]\nupstream = app\n", "early_hints = </", 10000, ">; rel=preload", "bogus = 1\n",
     {"test.ini:5: line longer than 8192 bytes", "test.ini:6: unknown key 'bogus' in [route]"}},
    {"a long section header: refused, its keys are not reported",
     "", "[upstream ", 9000, "]", "origin = sim\nkeepalive = lots\n" UP,
     {"test.ini:1: line longer than 8192 bytes"}},
    {"a long last line without a newline",
     UP, "; ", 20000, "", "",
     {"test.ini:3: line longer than 8192 bytes"}},
    {"a 300-byte value, which inih's own 200-byte buffer split, loads whole",
     UP "[route r]\nupstream = app\n", "early_hints = </", 300, ">; rel=preload", "", {NULL}},
};

static void test_long_lines(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(long_rows); i++) {
        char *text = long_line(long_rows[i].before, long_rows[i].head, 'a', long_rows[i].len,
                               long_rows[i].tail, long_rows[i].after);
        int n;
        char *errors;
        struct config *cfg = load(text, "/", &n, &errors);
        check_errors(long_rows[i].why, errors, n, long_rows[i].errors);
        if ((cfg != NULL) != (long_rows[i].errors[0] == NULL))
            fail_msg("%s: %s", long_rows[i].why, cfg ? "accepted" : "refused");
        if (cfg && cfg->nroutes && cfg->routes[0].nhints) /* the value, whole */
            assert_int_equal(strlen(cfg->routes[0].early_hints[0]),
                             long_rows[i].len - strlen("early_hints = "));
        cfg_free(cfg);
        free(errors);
        free(text);
    }
}

/* ---- inheritance ---- */

/* Upstream timers, interim_resets_timer and origin_rcvbuf take [proxy]'s value unless set in
 * the section, whichever order the sections come in. */
static void test_timer_inheritance(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[upstream set]\n"
                                 "origin = sim\n"
                                 "connect_timeout = 100ms\n"
                                 "total_timeout = 0\n"
                                 "interim_resets_timer = on\n"
                                 "origin_rcvbuf = 0\n"
                                 "[upstream unset]\n"
                                 "origin = sim\n"
                                 "[upstream off]\n"
                                 "origin = sim\n"
                                 "interim_resets_timer = off\n"
                                 "origin_rcvbuf = 256k\n"
                                 "[route r]\n"
                                 "upstream = set\n"
                                 "[proxy]\n" /* after the upstreams on purpose */
                                 "connect_timeout = 2s\n"
                                 "first_byte_timeout = 7s\n"
                                 "total_timeout = 30s\n"
                                 "interim_resets_timer = off\n"
                                 "origin_rcvbuf = 64k\n");
    const struct upstream_conf *set = &cfg->upstreams[0], *unset = &cfg->upstreams[1],
                               *off = &cfg->upstreams[2];
    assert_int_equal(set->timers_ms[TIMER_CONNECT], 100);        /* own value */
    assert_int_equal(set->timers_ms[TIMER_TOTAL], 0);            /* own 0 = off beats [proxy] */
    assert_int_equal(set->timers_ms[TIMER_FIRST_BYTE], 7000);    /* [proxy] */
    assert_int_equal(set->timers_ms[TIMER_DNS], 5000);           /* built-in default */
    assert_true(set->interim_resets_timer);                      /* own on beats [proxy] off */
    assert_int_equal(unset->timers_ms[TIMER_CONNECT], 2000);     /* [proxy] */
    assert_int_equal(unset->timers_ms[TIMER_TOTAL], 30000);      /* [proxy] */
    assert_int_equal(unset->timers_ms[TIMER_READ], 60000);       /* built-in default */
    assert_false(unset->interim_resets_timer);                   /* [proxy] off */
    assert_false(off->interim_resets_timer);                     /* own off */
    assert_int_equal(set->origin_rcvbuf, 0);          /* own 0 (autotuning) beats [proxy] */
    assert_int_equal(unset->origin_rcvbuf, 64 << 10);            /* [proxy] */
    assert_int_equal(off->origin_rcvbuf, 256 << 10);             /* own value */
    cfg_free(cfg);

    /* [proxy] on (default) and an upstream off */
    cfg = load_ok("[upstream a]\norigin = sim\ninterim_resets_timer = off\n"
                  "[upstream b]\norigin = sim\n[route r]\nupstream = a\n");
    assert_false(cfg->upstreams[0].interim_resets_timer);
    assert_true(cfg->upstreams[1].interim_resets_timer);
    cfg_free(cfg);
}

/* max_request_line never exceeds max_header_size: the request line is part of the head. */
static void test_request_line_clamped(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[proxy]\nmax_header_size = 4k\nmax_request_line = 8k\n" UP);
    assert_int_equal(cfg->max_request_line, 4096);
    cfg_free(cfg);
}

/* `resolver = [::1]:53` is taken where this host can send to ::1, and refused, FILE:LINE,
 * where it cannot (IPv6 turned off): libevent would take it and leave every lookup to wait for
 * dns_timeout. Checked on this host, and, as root, also in a network namespace of its own whose
 * loopback is down (no ::1 there). */
static void check_ipv6_resolver(const char *where)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(53),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int err = sock_route_error((const struct sockaddr *)&a, sizeof(a));
    int n;
    char *errors;
    struct config *cfg = load("[proxy]\nresolver = [::1]:53\n" UP, "/", &n, &errors);
    print_message("  %s: %s", where, *errors ? errors : "taken\n");
    if (!sock_no_route(err) || err == ENETUNREACH) { /* no route yet: a warning only */
        assert_non_null(cfg);
        assert_string_equal(cfg->resolver, "[::1]:53");
        assert_int_equal(cfg->nwarnings, err == ENETUNREACH);
    } else {
        char want[300];
        snprintf(want, sizeof(want), "test.ini:2: resolver: '[::1]:53': this host cannot send to "
                 "it (%s): every lookup would wait for dns_timeout\n", strerror(err));
        assert_null(cfg);
        assert_string_equal(errors, want);
    }
    cfg_free(cfg);
    free(errors);
}

static void test_resolver_reach(void **state)
{
    (void)state;
    check_ipv6_resolver("this host");
    int old = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (old < 0 || unshare(CLONE_NEWNET) != 0) {
        print_message("  no network namespace here (needs root): that case skipped\n");
    } else {
        check_ipv6_resolver("a namespace without ::1");
        assert_int_equal(setns(old, CLONE_NEWNET), 0);
    }
    if (old >= 0)
        close(old);
}

static void test_errors_section(void **state)
{
    (void)state;
    struct config *cfg = load_ok("[errors]\nconnect_timeout = 599\ndns_error = 400\n"
                                 "no_healthy_origin = 503\n" UP);
    for (int t = 0; t < FAILURE_COUNT; t++) {
        int want = t == FAIL_CONNECT_TIMEOUT ? 599 : t == FAIL_DNS_ERROR ? 400
                   : t == FAIL_NO_HEALTHY_ORIGIN ? 503 : 0;
        assert_int_equal(cfg->error_overrides[t], want);
    }
    assert_int_equal(failure_status(FAIL_CONNECT_TIMEOUT, cfg->profile, cfg->error_overrides),
                     599);
    cfg_free(cfg);
}

/* Comments, blanks, inline comments and "name: value" are INI syntax, not errors. */
static void test_ini_syntax(void **state)
{
    (void)state;
    struct config *cfg = load_ok("; leading comment\n"
                                 "# hash comment\n"
                                 "\n"
                                 "[proxy]   ; comment after a header\n"
                                 "  workers = 2   ; inline comment\n"
                                 "\tproxy_status: on\n"
                                 "[upstream app]\r\n"
                                 "origin = sim\r\n");
    assert_int_equal(cfg->workers, 2);
    assert_true(cfg->proxy_status);
    assert_string_equal(cfg->upstreams[0].origins[0].text, "sim");
    cfg_free(cfg);

    /* the longest section header: 255 bytes between its brackets */
    char text[512];
    snprintf(text, sizeof(text), UP "[route %0249d]\nupstream = app\n", 0);
    cfg = load_ok(text);
    assert_int_equal(strlen(cfg->routes[0].name), 249);
    cfg_free(cfg);

    /* a UTF-8 byte order mark before the first section header (Windows editors) */
    cfg = load_ok("\xEF\xBB\xBF[upstream app]\norigin = sim\n");
    assert_string_equal(cfg->upstreams[0].name, "app");
    cfg_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_route_defaults),
        cmocka_unit_test(test_route_body_rate),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_repeatable_keys),
        cmocka_unit_test(test_tls_pairs),
        cmocka_unit_test(test_admin_hosts),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_real_ip),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_origin_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_every_error_reported),
        cmocka_unit_test(test_error_line_is_one_write),
        cmocka_unit_test(test_listen_limit),
        cmocka_unit_test(test_key_edges),
        cmocka_unit_test(test_duration_limits),
        cmocka_unit_test(test_surprise_warnings),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_timer_inheritance),
        cmocka_unit_test(test_request_line_clamped),
        cmocka_unit_test(test_errors_section),
        cmocka_unit_test(test_resolver_reach),
        cmocka_unit_test(test_ini_syntax),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
