/*
 * test_climit.c — the per-client table (climit.c) with time passed in: the rate's arithmetic
 * (burst + 1 at once, one per interval after, the wait of a refusal, refusals not counted),
 * keys (IPv6 by its /64, IPv4 whole and apart from IPv6, route scopes apart), connection
 * counts, eviction (of a full set the entry that owes the fewest requests, the least recent of
 * those; never an entry holding connections; a set of connections only admits uncounted),
 * threads counting in one table, scopes apart within one set, the capacity rounded up to
 * whole sets, clients holding connections spread over a key's two sets (none uncounted at
 * 3/4 of the table), and what is let through uncounted counted.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "portico/climit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MS UINT64_C(1000000) /* ns */

static struct climit_key key_of(const char *text, int32_t scope)
{
    struct fault_addr a;
    assert_int_equal(fault_addr_parse(text, &a), 0);
    struct climit_key k;
    climit_key_addr(&a, scope, &k);
    return k;
}

/* 20/s (50 ms apart), burst 2: three at t=0, the fourth waits 50 ms; one every 50 ms after. Each
 * row is one request at `at` ms; want: 0 admitted, else the wait in ms. */
static void test_rate(void **state)
{
    (void)state;
    static const struct {
        uint64_t at, want;
        const char *why;
    } rows[] = {
        {1000, 0, "first"},
        {1000, 0, "burst 1"},
        {1000, 0, "burst 2"},
        {1000, 50, "over: one interval to wait"},
        {1010, 40, "over, 10 ms on: 40 more (the refusal was not counted)"},
        {1050, 0, "one interval after: admitted"},
        {1050, 50, "and the next waits again"},
        {1200, 0, "150 ms on: three intervals given back"},
        {1200, 0, ""},
        {1200, 0, ""},
        {1200, 50, "at most burst + 1 at once"},
        {5000, 0, "long idle: the bucket is full, no more"},
        {5000, 0, ""},
        {5000, 0, ""},
        {5000, 50, ""},
    };
    struct climit *t = climit_new(1024);
    assert_non_null(t);
    struct climit_key k = key_of("127.0.0.1", 0);
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        uint64_t wait = climit_take(t, &k, 50 * MS, 2, rows[i].at * MS);
        if (wait != rows[i].want * MS)
            fail_msg("row %zu (%s): wait %llu ns, want %llu ms", i, rows[i].why,
                     (unsigned long long)wait, (unsigned long long)rows[i].want);
    }
    climit_free(t);
}

/* Keys: an IPv6 client is its /64, an IPv4 one its address, and neither meets the other; each
 * route counts apart. Burst 0: one each, the second of a key refused. */
static void test_keys(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        int32_t scope;
        bool admitted;
        const char *why;
    } rows[] = {
        {"2001:db8:1:2::1", 0, true, "first of its /64"},
        {"2001:db8:1:2:ffff::9", 0, false, "same /64"},
        {"2001:db8:1:3::1", 0, true, "next /64"},
        {"2001:db8:1:2::1", 1, true, "another route"},
        {"127.0.0.1", 0, true, "IPv4"},
        {"127.0.0.2", 0, true, "another IPv4 address"},
        {"::ffff:127.0.0.1", 0, false, "mapped: the same IPv4 client"},
        {"::", 0, true, "::/64 is not an IPv4 client"},
    };
    struct climit *t = climit_new(1024);
    assert_non_null(t);
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct climit_key k = key_of(rows[i].addr, rows[i].scope);
        bool admitted = climit_take(t, &k, 1000 * MS, 0, 1) == 0;
        if (admitted != rows[i].admitted)
            fail_msg("row %zu (%s): admitted %d", i, rows[i].why, admitted);
    }
    char buf[64];
    struct climit_key k = key_of("2001:db8:1:2::1", 0);
    assert_string_equal(climit_key_text(&k, buf, sizeof(buf)), "2001:db8:1:2::/64");
    k = key_of("127.0.0.1", 0);
    assert_string_equal(climit_key_text(&k, buf, sizeof(buf)), "127.0.0.1");
    struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.9", &sa6.sin6_addr);
    struct fault_addr a;
    assert_int_equal(climit_sockaddr_addr((struct sockaddr *)&sa6, &a), 0);
    assert_false(a.v6);
    struct sockaddr sa_unix = {.sa_family = AF_UNIX};
    assert_int_equal(climit_sockaddr_addr(&sa_unix, &a), -1);
    climit_free(t);
}

/* Connections: counted to max, refused past it, a close frees a place. */
static void test_connections(void **state)
{
    (void)state;
    struct climit *t = climit_new(1024);
    assert_non_null(t);
    struct climit_key k = key_of("127.0.0.1", CLIMIT_SCOPE_CONN);
    assert_int_equal(climit_conn_open(t, &k, 2, 1), 1);
    assert_int_equal(climit_conn_open(t, &k, 2, 2), 1);
    assert_int_equal(climit_conn_open(t, &k, 2, 3), 0);
    climit_conn_close(t, &k);
    assert_int_equal(climit_conn_open(t, &k, 2, 4), 1);
    assert_int_equal(climit_conn_open(t, &k, 2, 5), 0);
    /* the rate of the same address is another entry */
    struct climit_key r = key_of("127.0.0.1", 0);
    assert_int_equal(climit_take(t, &r, 1000 * MS, 0, 6), 0);
    climit_free(t);
}

/* A table of one set (8 entries): a ninth client takes the least recent entry's place; entries
 * holding connections are never taken; a set of connections only lets a client through
 * uncounted. */
static void test_eviction(void **state)
{
    (void)state;
    struct climit *t = climit_new(CLIMIT_WAYS);
    assert_non_null(t);
    assert_int_equal(climit_capacity(t), CLIMIT_WAYS);
    char addr[32];
    struct climit_key k[CLIMIT_WAYS + 1];
    for (int i = 0; i <= CLIMIT_WAYS; i++) {
        snprintf(addr, sizeof(addr), "127.0.1.%d", i);
        k[i] = key_of(addr, 0);
    }
    for (int i = 0; i < CLIMIT_WAYS; i++) /* each takes its one request: the next is refused */
        assert_int_equal(climit_take(t, &k[i], 1000 * MS, 0, (uint64_t)(10 + i)), 0);
    assert_true(climit_take(t, &k[0], 1000 * MS, 0, 20) > 0); /* 0 is now the most recent */
    assert_int_equal(climit_evictions(t), 0);
    /* a ninth client: 1 is the least recent and goes */
    assert_int_equal(climit_take(t, &k[CLIMIT_WAYS], 1000 * MS, 0, 30), 0);
    assert_int_equal(climit_evictions(t), 1);
    assert_int_equal(climit_take(t, &k[1], 1000 * MS, 0, 31), 0); /* afresh (2 gave way) */
    assert_true(climit_take(t, &k[0], 1000 * MS, 0, 32) > 0);     /* still counted */
    climit_free(t);

    /* connections hold their entries */
    t = climit_new(CLIMIT_WAYS);
    assert_non_null(t);
    struct climit_key c[CLIMIT_WAYS + 1];
    for (int i = 0; i <= CLIMIT_WAYS; i++) {
        snprintf(addr, sizeof(addr), "127.0.2.%d", i);
        c[i] = key_of(addr, CLIMIT_SCOPE_CONN);
    }
    for (int i = 0; i < CLIMIT_WAYS; i++)
        assert_int_equal(climit_conn_open(t, &c[i], 1, (uint64_t)(10 + i)), 1);
    assert_int_equal(climit_conn_open(t, &c[CLIMIT_WAYS], 1, 30), -1); /* uncounted */
    assert_int_equal(climit_take(t, &k[0], 1000 * MS, 0, 31), 0);       /* uncounted too */
    assert_int_equal(climit_take(t, &k[0], 1000 * MS, 0, 32), 0);
    assert_int_equal(climit_conn_open(t, &c[0], 1, 33), 0); /* still counted: refused */
    climit_conn_close(t, &c[3]);                             /* 3 closes: its entry may go */
    assert_int_equal(climit_conn_open(t, &c[CLIMIT_WAYS], 1, 34), 1);
    assert_int_equal(climit_conn_open(t, &c[CLIMIT_WAYS], 1, 35), 0);
    climit_free(t);
}

/* What a set of connections lets through uncounted is counted (climit_no_place: /metrics'
 * portico_client_limit_uncounted_total), connections and requests alike, and nothing else is:
 * neither a counted connection, a refusal, nor an eviction. */
static void test_no_place_counted(void **state)
{
    (void)state;
    struct climit *t = climit_new(CLIMIT_WAYS);
    assert_non_null(t);
    char addr[32];
    struct climit_key c[CLIMIT_WAYS + 1];
    for (int i = 0; i <= CLIMIT_WAYS; i++) {
        snprintf(addr, sizeof(addr), "127.0.3.%d", i);
        c[i] = key_of(addr, CLIMIT_SCOPE_CONN);
    }
    struct climit_key r = key_of("127.0.4.1", 0), late = key_of("127.0.4.2", 0);
    assert_int_equal(climit_take(t, &r, 1000 * MS, 0, 1), 0); /* an entry of its own ... */
    for (int i = 0; i < CLIMIT_WAYS; i++)                     /* ... evicted by the eighth */
        assert_int_equal(climit_conn_open(t, &c[i], 1, (uint64_t)(10 + i)), 1);
    assert_int_equal(climit_conn_open(t, &c[0], 1, 20), 0); /* refused: counted */
    assert_int_equal(climit_evictions(t), 1);
    assert_int_equal(climit_no_place(t), 0);
    assert_int_equal(climit_conn_open(t, &c[CLIMIT_WAYS], 1, 30), -1);
    assert_int_equal(climit_no_place(t), 1);
    assert_int_equal(climit_take(t, &late, 1000 * MS, 0, 31), 0);
    assert_int_equal(climit_take(t, &late, 1000 * MS, 0, 32), 0);
    assert_int_equal(climit_no_place(t), 3);
    climit_conn_close(t, &c[3]); /* a place again: 3's entry, evicted */
    assert_int_equal(climit_conn_open(t, &c[CLIMIT_WAYS], 1, 34), 1);
    assert_int_equal(climit_no_place(t), 3);
    assert_int_equal(climit_evictions(t), 2);
    climit_free(t);
}

/* Eviction by what an entry owes, then by age: a client held back by its rate keeps its entry
 * while newcomers churn through its set (by LRU alone it started afresh, a whole burst again,
 * each time 8 came between two of its requests: 1 + 4 more of a 1/s rate per 8 newcomers).
 * A table of one set: every key meets every other. */
static void test_eviction_keeps_debt(void **state)
{
    (void)state;
    char addr[32];
    struct climit_key flood[64];
    for (int i = 0; i < 64; i++) {
        snprintf(addr, sizeof(addr), "127.0.3.%d", i);
        flood[i] = key_of(addr, 1);
    }
    struct climit_key held = key_of("127.0.4.1", 0);

    /* at rest goes first: the held client (1/m) is the least recent, but 7 clients of a 20/s
     * route that came after it owe nothing 200 ms on */
    struct climit *t = climit_new(CLIMIT_WAYS);
    assert_non_null(t);
    assert_int_equal(climit_take(t, &held, 60000 * MS, 0, 1 * MS), 0);
    for (int i = 0; i < CLIMIT_WAYS - 1; i++)
        assert_int_equal(climit_take(t, &flood[i], 50 * MS, 0, 2 * MS), 0);
    assert_int_equal(climit_take(t, &flood[CLIMIT_WAYS], 50 * MS, 0, 200 * MS), 0);
    assert_true(climit_take(t, &held, 60000 * MS, 0, 300 * MS) > 0);
    climit_free(t);

    /* a burst owed outweighs one request owed: 1/s with a burst of 4, taken at once; 56
     * one-request clients of the same rate come past it, 8 between each two of its tries */
    t = climit_new(CLIMIT_WAYS);
    assert_non_null(t);
    for (int i = 0; i < 5; i++)
        assert_int_equal(climit_take(t, &held, 1000 * MS, 4, 1 * MS), 0);
    unsigned extra = 0;
    for (int round = 0; round < 7; round++) {
        for (int i = 0; i < 8; i++)
            assert_int_equal(climit_take(t, &flood[round * 8 + i], 1000 * MS, 4,
                                         (uint64_t)(10 + round * 10 + i) * MS), 0);
        extra += climit_take(t, &held, 1000 * MS, 4, (uint64_t)(19 + round * 10) * MS) == 0;
    }
    if (extra)
        fail_msg("the held client got %u more within 90 ms of a 1/s rate", extra);
    climit_free(t);
}

/* Threads counting one client's connections in one table: every open is matched by a close,
 * at most `max` held at once, and nothing is left over. */
#define THREADS 4
#define ROUNDS 20000
struct worker_arg {
    struct climit *t;
    unsigned refused;
};

static void *worker(void *p)
{
    struct worker_arg *w = p;
    struct climit_key k = key_of("127.0.0.1", CLIMIT_SCOPE_CONN);
    for (unsigned i = 0; i < ROUNDS; i++) {
        int rc = climit_conn_open(w->t, &k, THREADS - 1, i + 1);
        if (rc == 1)
            climit_conn_close(w->t, &k);
        else
            w->refused++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct climit *t = climit_new(1024);
    assert_non_null(t);
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    /* all closed: max opens at once go through again */
    struct climit_key k = key_of("127.0.0.1", CLIMIT_SCOPE_CONN);
    for (int i = 0; i < THREADS - 1; i++)
        assert_int_equal(climit_conn_open(t, &k, THREADS - 1, 1), 1);
    assert_int_equal(climit_conn_open(t, &k, THREADS - 1, 1), 0);
    climit_free(t);
}

/* In a table of one set, every key meets every other in the same walk: one address's entries
 * of two routes and of its connections stay apart (the hash puts scopes in different sets of a
 * bigger table, where a key compared without its scope would go unnoticed). */
static void test_scopes_apart_in_one_set(void **state)
{
    (void)state;
    struct climit *t = climit_new(CLIMIT_WAYS);
    assert_non_null(t);
    assert_int_equal(climit_capacity(t), CLIMIT_WAYS);
    struct climit_key r0 = key_of("127.0.0.1", 0), r1 = key_of("127.0.0.1", 1);
    struct climit_key conn = key_of("127.0.0.1", CLIMIT_SCOPE_CONN);
    assert_int_equal(climit_take(t, &r0, 1000 * MS, 0, 10), 0);
    assert_int_equal(climit_take(t, &r1, 1000 * MS, 0, 11), 0); /* its own budget */
    assert_int_equal(climit_conn_open(t, &conn, 1, 12), 1);
    assert_true(climit_take(t, &r0, 1000 * MS, 0, 13) > 0);
    assert_true(climit_take(t, &r1, 1000 * MS, 0, 14) > 0);
    assert_int_equal(climit_conn_open(t, &conn, 1, 15), 0);
    climit_free(t);
}

/* Clients that each hold a connection (their entries never evicted) fill 3/4 of a table of
 * 1,024, ten times over (each table hashed with its own seed): all are counted but at most 1 in
 * 1,000, and a newcomer's rate finds a place in all but 1 in 200. Each key's two sets, the
 * emptier taken, keep any set from filling before the table does: with one set per key, some 5.7%
 * of those connections went uncounted and 27% of newcomers' rates unlimited. */
static void test_connections_fill_the_table_evenly(void **state)
{
    (void)state;
    enum { TABLES = 10, HELD = 768, NEWCOMERS = 1000 };
    uint64_t uncounted = 0, unlimited = 0;
    for (int n = 0; n < TABLES; n++) {
        struct climit *t = climit_new(1024);
        assert_non_null(t);
        assert_int_equal(climit_capacity(t), 1024);
        for (uint32_t i = 0; i < HELD; i++) {
            struct fault_addr a = {.v6 = true, .bytes = {0x20, 0x01, 0x0d, 0xb8}};
            memcpy(a.bytes + 4, &i, sizeof(i)); /* a /64 each */
            struct climit_key k;
            climit_key_addr(&a, CLIMIT_SCOPE_CONN, &k);
            uncounted += climit_conn_open(t, &k, 1, 1 + i) == -1;
        }
        for (uint32_t i = 0; i < NEWCOMERS; i++) {
            struct fault_addr a = {.bytes = {127, 0, (uint8_t)(i >> 8), (uint8_t)i}};
            struct climit_key k;
            climit_key_addr(&a, 0, &k);
            /* 1/s without a burst: the second at once is refused unless it went uncounted */
            climit_take(t, &k, 1000 * MS, 0, 1000 * MS);
            unlimited += climit_take(t, &k, 1000 * MS, 0, 1000 * MS + 1) == 0;
        }
        climit_free(t);
    }
    print_message("  of %d: %llu connections uncounted; of %d newcomers: %llu unlimited\n",
                  TABLES * HELD, (unsigned long long)uncounted, TABLES * NEWCOMERS,
                  (unsigned long long)unlimited);
    assert_true(uncounted <= TABLES * HELD / 1000);
    assert_true(unlimited <= TABLES * NEWCOMERS / 200);
}

/* A table holds at least the entries asked for: a part of a set is a whole set more. */
static void test_capacity_rounds_up(void **state)
{
    (void)state;
    static const uint64_t asked[] = {1, CLIMIT_WAYS - 1, CLIMIT_WAYS, CLIMIT_WAYS + 1,
                                     3 * CLIMIT_WAYS - 1, 1025};
    for (size_t i = 0; i < ARRAY_LEN(asked); i++) {
        struct climit *t = climit_new(asked[i]);
        assert_non_null(t);
        uint64_t cap = climit_capacity(t);
        if (cap < asked[i] || cap % CLIMIT_WAYS || cap >= asked[i] + CLIMIT_WAYS)
            fail_msg("asked %llu: capacity %llu", (unsigned long long)asked[i],
                     (unsigned long long)cap);
        climit_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate),        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_connections), cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_eviction_keeps_debt),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_scopes_apart_in_one_set),
        cmocka_unit_test(test_capacity_rounds_up),
        cmocka_unit_test(test_connections_fill_the_table_evenly),
        cmocka_unit_test(test_no_place_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
