/*
 * test_backup.c — backup origins and slow_start with the real binary and fake origins on
 * loopback: a primary that dies (its connections reset, its check failing) hands its requests
 * to the backup, a retry after it failed included, and takes them back once its probe or check
 * passes; the backup is checked too, shown as such in /status and counted in
 * portico_upstream_backup_attempts_total; every origin out is 503 no_healthy_origin; an origin
 * back from its failing check under slow_start takes a share of the requests that grows over
 * the duration; a reload keeps a ramp where it was and ramps an origin it adds; and the
 * configuration errors, FILE:LINE each.
 */
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../support/json.h"
#include "../support/scrape.h"
#include "proxy_helpers.h"

/* ---- an origin that dies and comes back: its connections reset while dead, its /healthz
 * answered 500 ---- */

static const struct fo_step reset_steps[] = {FO_RST(), FO_END()};
static const struct fo_step respond_ok[] = {FO_RESPOND_OK(), FO_END()};
static const struct fo_step healthz_500[] = {FO_RESPOND(500, NULL, "sick\n", FO_LENGTH),
                                             FO_END()};

struct mortal {
    _Atomic bool dead;     /* requests reset, checks answered 500 */
    _Atomic unsigned served; /* requests answered that were not checks */
};

static bool is_check(const struct fo_request_info *req)
{
    return strncmp(req->head, "GET /healthz ", 13) == 0;
}

static const struct fo_step *pick_mortal(const struct fo_request_info *req, void *arg)
{
    struct mortal *m = arg;
    if (is_check(req))
        return atomic_load(&m->dead) ? healthz_500 : respond_ok;
    if (atomic_load(&m->dead))
        return reset_steps;
    atomic_fetch_add(&m->served, 1); /* before the answer: the test counts on it */
    return respond_ok;
}

static struct fake_origin *mortal_start(struct mortal *m)
{
    *m = (struct mortal){0};
    struct fake_origin_opts opts = {.kind = FO_SCRIPT, .pick_script = pick_mortal, .pick_arg = m};
    return px_origin_start(&opts);
}

/* Checks an origin got, among the requests it read. */
static unsigned checks_of(struct fake_origin *o)
{
    unsigned n = fake_origin_requests(o), checks = 0;
    for (unsigned i = 0; i < n; i++) {
        char *head = fake_origin_request_head(o, i);
        checks += head && strncmp(head, "GET /healthz ", 13) == 0;
        free(head);
    }
    return checks;
}

/* GET path on a fresh connection: its status. */
static int status_of(struct harness *h, const char *path)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    struct raw_conn *c = px_connect(h);
    assert_int_equal(raw_send_str(c, req), 0);
    struct raw_response r;
    if (raw_read_response(c, &r, PX_IO_MS) != 0)
        fail_msg("GET %s: no response: %s", path, r.error);
    int status = r.status;
    raw_response_free(&r);
    raw_close(c);
    return status;
}

static double backup_attempts(struct harness *h)
{
    return scrape_metric(harness_port(h, "admin"), "portico_upstream_backup_attempts_total",
                         PX_IO_MS);
}

/* /status says origin o of the first upstream is (or is not) a backup, at weight_percent. */
static void assert_status_origin(struct harness *h, int o, bool backup, int weight_percent)
{
    struct tj *doc;
    const struct tj *so = px_status_origin(h, o, &doc);
    const struct tj *b = tj_get(so, "backup");
    double w = -1;
    if (!b || b->type != TJ_BOOL)
        fail_msg("/status origin %d has no \"backup\" true or false", o);
    assert_int_equal(tj_num(so, "weight_percent", &w), 0);
    if (b->boolean != backup || (weight_percent >= 0 && (int)w != weight_percent))
        fail_msg("/status origin %d: backup %d weight %g%%, want %d %d%%", o, b->boolean, w,
                 backup, weight_percent);
    tj_free(doc);
}

/* Passive health: the primary dies; the request that finds it so is retried on the backup
 * (retry_sent: its reset came after the send), and the backup takes every request while the
 * primary is down; its probe after down_time answers once it is back, and the requests go to
 * it again at once. The binary before refused `backup` (unknown option). */
static void test_backup_max_fails(void **state)
{
    (void)state;
    struct mortal pm;
    struct fake_origin *primary = mortal_start(&pm);
    struct fake_origin *backup = px_origin(FO_OK);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u backup\n"
                                 "max_fails = 1\ndown_time = 300ms\nretry_sent = on\n",
                                 fake_origin_port(primary), fake_origin_port(backup));
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/up"), 200);
    assert_int_equal(atomic_load(&pm.served), 4);
    assert_int_equal(fake_origin_requests(backup), 0);
    assert_int_equal(backup_attempts(h), 0);
    assert_status_origin(h, 0, false, 100);
    assert_status_origin(h, 1, true, 100);
    /* it dies: the request that finds it so goes on to the backup */
    atomic_store(&pm.dead, true);
    assert_int_equal(status_of(h, "/dies"), 200);
    assert_int_equal(fake_origin_requests(backup), 1);
    assert_int_equal(harness_wait_log(h, "marked down for 300 ms", PX_IO_MS), 0);
    char *line = px_log_line(h, "/dies");
    char origin[64];
    snprintf(origin, sizeof(origin), "127.0.0.1:%u", fake_origin_port(backup));
    if (!strstr(line, origin))
        fail_msg("the access line does not name the backup %s: %s", origin, line);
    free(line);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/down"), 200);
    assert_int_equal(fake_origin_requests(backup), 5);
    assert_int_equal(backup_attempts(h), 5);
    /* back: the probe after down_time finds it, and it takes everything again */
    atomic_store(&pm.dead, false);
    for (int64_t end = tu_now_ms() + 5000; atomic_load(&pm.served) == 4 && tu_now_ms() < end;) {
        assert_int_equal(status_of(h, "/probe"), 200);
        poll(NULL, 0, 20); /* down_time is time: requests spread over it */
    }
    assert_int_equal(atomic_load(&pm.served), 5);
    assert_int_equal(harness_wait_log(h, "answered; back up", PX_IO_MS), 0);
    unsigned on_backup = fake_origin_requests(backup);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/back"), 200);
    assert_int_equal(atomic_load(&pm.served), 9);
    assert_int_equal(fake_origin_requests(backup), on_backup);
    px_stop(h);
    fake_origin_stop(primary);
    fake_origin_stop(backup);
}

/* Active health: the backup is checked too; the primary failing its check sends every request
 * to the backup, and its passing check brings them back; a reload meanwhile keeps the primary
 * out. Both failing: 503 no_healthy_origin. */
static void test_backup_health_check(void **state)
{
    (void)state;
    struct mortal pm, bm;
    struct fake_origin *primary = mortal_start(&pm);
    struct fake_origin *backup = mortal_start(&bm);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\norigin = 127.0.0.1:%u\n"
                                 "origin = 127.0.0.1:%u backup\n"
                                 "health_check = GET /healthz every 100ms expect 200\n",
                                 fake_origin_port(primary), fake_origin_port(backup));
    assert_int_equal(fake_origin_wait_requests(backup, 1, PX_IO_MS), 0);
    assert_true(checks_of(backup) >= 1); /* checked though it takes no request */
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/up"), 200);
    assert_int_equal(atomic_load(&pm.served), 4);
    assert_int_equal(atomic_load(&bm.served), 0);
    atomic_store(&pm.dead, true);
    assert_int_equal(harness_wait_log(h, "failed its health check (GET /healthz answered 500); "
                                         "marked down", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/checked-out"), 200);
    assert_int_equal(atomic_load(&bm.served), 4);
    /* a reload keeps the verdict: the primary stays out */
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/after-reload"), 200);
    assert_int_equal(atomic_load(&pm.served), 4);
    assert_int_equal(atomic_load(&bm.served), 8);
    /* the backup fails too: nothing is left */
    atomic_store(&bm.dead, true);
    assert_int_equal(harness_wait_log_count(h, "failed its health check (GET /healthz answered "
                                               "500); marked down", 2, PX_IO_MS), 0);
    assert_int_equal(status_of(h, "/none"), 503);
    char *line = px_log_line(h, "/none");
    assert_non_null(strstr(line, "no_healthy_origin"));
    free(line);
    /* the primary passes again: everything back to it */
    atomic_store(&pm.dead, false);
    assert_int_equal(harness_wait_log(h, "passed its health check; up", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/back"), 200);
    assert_int_equal(atomic_load(&pm.served), 8);
    assert_int_equal(atomic_load(&bm.served), 8);
    px_stop(h);
    fake_origin_stop(primary);
    fake_origin_stop(backup);
}

/* Every policy: two primaries out by their checks send every request (8 paths) to the two
 * backups, shared by the policy; one primary back takes them all. */
static const char *const policies[] = {"least_conn", "random_two", "hash $uri"};

static void test_backup_policies(void **state)
{
    (void)state;
    for (size_t p = 0; p < ARRAY_SIZE(policies); p++) {
        struct mortal m[4];
        struct fake_origin *o[4];
        for (int i = 0; i < 4; i++)
            o[i] = mortal_start(&m[i]);
        atomic_store(&m[0].dead, true);
        atomic_store(&m[1].dead, true);
        struct harness *h = px_start(
            NULL,
            "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
            "origin = 127.0.0.1:%u backup\norigin = 127.0.0.1:%u backup\nbalance = %s\n"
            "health_check = GET /healthz every 100ms expect 200\n",
            fake_origin_port(o[0]), fake_origin_port(o[1]), fake_origin_port(o[2]),
            fake_origin_port(o[3]), policies[p]);
        assert_int_equal(harness_wait_log_count(h, "answered 500); marked down", 2, PX_IO_MS), 0);
        char path[32];
        for (int k = 0; k < 8; k++) {
            snprintf(path, sizeof(path), "/down/%d", k);
            assert_int_equal(status_of(h, path), 200);
        }
        unsigned on_backups = atomic_load(&m[2].served) + atomic_load(&m[3].served);
        print_message("  %s, primaries out: the backups took %u and %u\n", policies[p],
                      atomic_load(&m[2].served), atomic_load(&m[3].served));
        assert_int_equal(on_backups, 8);
        atomic_store(&m[1].dead, false);
        assert_int_equal(harness_wait_log(h, "passed its health check; up", PX_IO_MS), 0);
        for (int k = 0; k < 8; k++) {
            snprintf(path, sizeof(path), "/back/%d", k);
            assert_int_equal(status_of(h, path), 200);
        }
        assert_int_equal(atomic_load(&m[1].served), 8);
        assert_int_equal(atomic_load(&m[2].served) + atomic_load(&m[3].served), on_backups);
        px_stop(h);
        for (int i = 0; i < 4; i++)
            fake_origin_stop(o[i]);
    }
}

/* ---- slow start ---- */

/* /status's weight_percent of origin o of the first upstream. */
static double weight_percent_of(struct harness *h, int o)
{
    struct tj *doc;
    double w = -1;
    assert_int_equal(tj_num(px_status_origin(h, o, &doc), "weight_percent", &w), 0);
    tj_free(doc);
    return w;
}

/* Requests for ms milliseconds, one at a time: how many there were and how many origin m
 * answered. */
static void share_for(struct harness *h, struct mortal *m, int64_t ms, unsigned *total,
                      unsigned *got)
{
    unsigned before = atomic_load(&m->served), n = 0;
    for (int64_t end = tu_now_ms() + ms; tu_now_ms() < end && n < 5000; n++)
        assert_int_equal(status_of(h, "/ramp"), 200);
    *total = n;
    *got = atomic_load(&m->served) - before;
}

/* An origin back from failing its check with slow_start = 1200ms takes a share that grows over
 * the ramp: a small one in its first 300 ms (~1/8 of its weight: 1 in 9), about half of the
 * requests once the ramp is over (round robin of two equal origins). The binary before refused
 * slow_start (unknown key), and the origin took half at once. */
static void test_slow_start_share(void **state)
{
    (void)state;
    struct mortal rm;
    struct fake_origin *ramped = mortal_start(&rm);
    struct fake_origin *steady = px_origin(FO_OK);
    struct harness *h = px_start("admin_listen = 127.0.0.1:{{port:admin}}",
                                 "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                                 "health_check = GET /healthz every 100ms expect 200\n"
                                 "slow_start = 1200ms\n",
                                 fake_origin_port(ramped), fake_origin_port(steady));
    assert_status_origin(h, 0, false, 100); /* at start: no ramp */
    atomic_store(&rm.dead, true);
    assert_int_equal(harness_wait_log(h, "failed its health check", PX_IO_MS), 0);
    atomic_store(&rm.dead, false);
    assert_int_equal(harness_wait_log(h, "passed its health check; up", PX_IO_MS), 0);
    unsigned n[3], got[3];
    share_for(h, &rm, 300, &n[0], &got[0]);
    assert_status_origin(h, 0, false, -1);
    share_for(h, &rm, 600, &n[1], &got[1]);
    for (int64_t end = tu_now_ms() + 5000; weight_percent_of(h, 0) < 100 && tu_now_ms() < end;)
        poll(NULL, 0, 20); /* the ramp's end, as /status says it */
    assert_true(weight_percent_of(h, 0) == 100);
    share_for(h, &rm, 300, &n[2], &got[2]);
    print_message("  the ramped origin's share: %u of %u, %u of %u, then %u of %u\n", got[0],
                  n[0], got[1], n[1], got[2], n[2]);
    assert_true(n[0] >= 10 && n[2] >= 10);
    double first = (double)got[0] / n[0], middle = (double)got[1] / n[1],
           last = (double)got[2] / n[2];
    assert_true(first < 0.25);
    assert_true(middle > first && middle < last);
    assert_true(last > 0.45 && last < 0.55);
    px_stop(h);
    fake_origin_stop(ramped);
    fake_origin_stop(steady);
}

/* A reload while an origin ramps: it goes on from where it was (not whole again, not from 0),
 * and an origin the new file adds ramps from its first request. */
static void test_slow_start_reload(void **state)
{
    (void)state;
    struct mortal rm, am;
    struct fake_origin *ramped = mortal_start(&rm);
    struct fake_origin *steady = px_origin(FO_OK);
    struct fake_origin *added = mortal_start(&am);
    const char *conf = "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\nworkers = 1\n"
                       "admin_listen = 127.0.0.1:{{port:admin}}\n"
                       "[upstream u]\norigin = 127.0.0.1:%u\norigin = 127.0.0.1:%u\n"
                       "health_check = GET /healthz every 100ms expect 200\n"
                       "slow_start = 5s\n%s";
    struct harness *h = harness_new();
    assert_non_null(h);
    assert_int_equal(harness_write_config(h, conf, fake_origin_port(ramped),
                                          fake_origin_port(steady), ""), 0);
    if (harness_start(h) != 0)
        fail_msg("portico did not start: %s", harness_error(h));
    atomic_store(&rm.dead, true);
    assert_int_equal(harness_wait_log(h, "failed its health check", PX_IO_MS), 0);
    atomic_store(&rm.dead, false);
    assert_int_equal(harness_wait_log(h, "passed its health check; up", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++) /* its ramp starts */
        assert_int_equal(status_of(h, "/ramp"), 200);
    int64_t ramp_start = tu_now_ms();
    char extra[64];
    snprintf(extra, sizeof(extra), "origin = 127.0.0.1:%u\n", fake_origin_port(added));
    assert_int_equal(harness_write_config(h, conf, fake_origin_port(ramped),
                                          fake_origin_port(steady), extra), 0);
    /* a fifth of the way (1 s): /status says so */
    double before = weight_percent_of(h, 0);
    while (before < 20 && tu_now_ms() - ramp_start < 5000) {
        poll(NULL, 0, 50);
        before = weight_percent_of(h, 0);
    }
    assert_true(before >= 20 && before < 100);
    assert_int_equal(harness_signal(h, SIGHUP), 0);
    assert_int_equal(harness_wait_log(h, "is live (generation 2", PX_IO_MS), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(status_of(h, "/after-reload"), 200);
    double kept = weight_percent_of(h, 0), new_one = weight_percent_of(h, 2);
    print_message("  %lld ms into the ramp: the kept origin at %g%% (%g%% before the reload), "
                  "the added one at %g%%\n", (long long)(tu_now_ms() - ramp_start), kept, before,
                  new_one);
    assert_true(kept >= before && kept < 100); /* went on: neither whole nor from 0 */
    assert_true(new_one < kept);
    harness_stop(h);
    harness_free(h);
    fake_origin_stop(ramped);
    fake_origin_stop(steady);
    fake_origin_stop(added);
}

/* ---- configuration errors ---- */

static const struct {
    const char *why;
    const char *upstream;   /* the [upstream u] lines after its header (line 4) */
    const char *error;      /* after FILE: */
} config_error_rows[] = {
    {"the only origin a backup", "origin = 127.0.0.1:9 backup\n",
     "3: [upstream u]: every origin is a backup"},
    {"every origin a backup", "origin = 127.0.0.1:9 backup\norigin = 127.0.0.1:10 backup\n",
     "3: [upstream u]: every origin is a backup"},
    {"backup twice", "origin = 127.0.0.1:9\norigin = 127.0.0.1:10 backup backup\n",
     "5: origin: repeated option 'backup'"},
    {"a bad slow_start", "origin = 127.0.0.1:9\nslow_start = fast\n",
     "5: slow_start: 'fast' is not a duration"},
    {"slow_start with hash", "origin = 127.0.0.1:9\nbalance = hash $uri\nslow_start = 10s\n",
     "6: slow_start: not with balance = hash"},
};

static void test_backup_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(config_error_rows); i++) {
        struct harness *h = harness_new();
        assert_non_null(h);
        assert_int_equal(harness_write_config(h, "[proxy]\nlisten = 127.0.0.1:{{port:listen}}\n"
                                                 "[upstream u]\n%s",
                                              config_error_rows[i].upstream), 0);
        struct tu_cmd_result res;
        assert_int_equal(harness_check_config(h, &res), 1);
        char want[600];
        snprintf(want, sizeof(want), "%s:%s", harness_config_path(h), config_error_rows[i].error);
        if (!tu_contains(res.err, want))
            fail_msg("%s: no \"%s\" in:\n%s", config_error_rows[i].why, want, res.err);
        tu_cmd_result_free(&res);
        harness_free(h);
    }
}

int main(void)
{
    tu_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_max_fails),
        cmocka_unit_test(test_backup_health_check),
        cmocka_unit_test(test_backup_policies),
        cmocka_unit_test(test_slow_start_share),
        cmocka_unit_test(test_slow_start_reload),
        cmocka_unit_test(test_backup_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
