/*
 * test_ticket.c — the session ticket key ring, on a clock passed in: a key encrypts for one
 * rotation period, the keys before it still decrypt (asking for a new ticket) until every
 * ticket they made has expired (two periods after the last), then they are gone and wiped;
 * never more than three keys; a period shortened by a reload applies at once.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "portico/ticket.h"

#define P 1000 /* the rotation period of these rows, ms */

static int reset(void **state)
{
    (void)state;
    ticket_wipe_all();
    return 0;
}

/* The key a ticket made at `at` gets, and what a lookup of it says at each later time. */
static void test_lifecycle(void **state)
{
    (void)state;
    struct ticket_key k0, k, other;
    assert_int_equal(ticket_current(5000, P, &k0), 0);
    static const struct {
        uint64_t now;
        enum ticket_found found;
    } rows[] = {
        {5000, TICKET_CURRENT},
        {5999, TICKET_CURRENT},            /* still within its period */
        {6000, TICKET_RENEW},              /* past it: resume, but issue a ticket of a new key */
        {7999, TICKET_RENEW},              /* a ticket made at 5999 is valid until 7999 */
        {8000, TICKET_UNKNOWN},            /* three periods after its birth: every ticket expired */
        {5000, TICKET_UNKNOWN},            /* and gone for good, whatever the clock says next */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        memset(&k, 0, sizeof(k));
        enum ticket_found found = ticket_find(k0.name, rows[i].now, P, &k);
        print_message("  at %llu: %d\n", (unsigned long long)rows[i].now, found);
        assert_int_equal(found, rows[i].found);
        if (found != TICKET_UNKNOWN)
            assert_memory_equal(&k, &k0, sizeof(k));
    }
    assert_int_equal(ticket_count(), 0);
    /* an unknown name is not found, even with keys held */
    assert_int_equal(ticket_current(9000, P, &k), 0);
    memset(&other, 0xa5, sizeof(other));
    assert_int_equal(ticket_find(other.name, 9000, P, &k), TICKET_UNKNOWN);
}

/* Tickets made over time: one key per period (lazily: a period without tickets makes none),
 * each distinct and random, three held at most, the current one first to encrypt. */
static void test_rotation(void **state)
{
    (void)state;
    static const struct {
        uint64_t now;
        int key;      /* which key encrypts: the n-th made */
        unsigned held;
    } rows[] = {
        {0, 0, 1},
        {999, 0, 1},
        {1000, 1, 2},    /* a new key each period */
        {1500, 1, 2},
        {2000, 2, 3},
        {3000, 3, 3},    /* key 0 (born 0) dropped at 3000 */
        {3999, 3, 3},
        {9000, 4, 1},    /* idle for a while: every older key dropped, one new */
        {9001, 4, 1},
    };
    struct ticket_key made[5];
    int nmade = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct ticket_key k;
        assert_int_equal(ticket_current(rows[i].now, P, &k), 0);
        if (rows[i].key == nmade) {
            for (int j = 0; j < nmade; j++) /* new, not an old key again */
                assert_memory_not_equal(k.name, made[j].name, TICKET_NAME_LEN);
            made[nmade++] = k;
        }
        assert_memory_equal(&k, &made[rows[i].key], sizeof(k));
        assert_int_equal(ticket_count(), rows[i].held);
    }
    /* at 9001 key 3 (born 3000) is dropped, key 4 current */
    struct ticket_key k;
    assert_int_equal(ticket_find(made[3].name, 9001, P, &k), TICKET_UNKNOWN);
    assert_int_equal(ticket_find(made[4].name, 9001, P, &k), TICKET_CURRENT);
}

/* A reload that shortens the period: keys too old for the new one are refused at once, and a
 * full ring drops its oldest key rather than fail. */
static void test_period_changes(void **state)
{
    (void)state;
    struct ticket_key k[4], got;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ticket_current((uint64_t)i * 10000, 10000, &k[i]), 0);
    assert_int_equal(ticket_count(), 3);
    /* at 25000 with a 1 s period: only keys born after 22000 are kept: none of the three */
    assert_int_equal(ticket_find(k[2].name, 25000, P, &got), TICKET_UNKNOWN);
    assert_int_equal(ticket_count(), 0);
    /* a period lengthened: keys of the 1 s period are kept 30 s, so a fourth key comes, and
     * the fifth evicts the oldest */
    for (int i = 0; i < 3; i++)
        assert_int_equal(ticket_current(30000 + (uint64_t)i * 1000, P, &k[i]), 0);
    /* the key before the current one, young for the longer period, still asks for a new ticket:
     * only the current key's tickets are current */
    assert_int_equal(ticket_find(k[1].name, 32500, 10000, &got), TICKET_RENEW);
    assert_int_equal(ticket_current(42000, 10000, &k[3]), 0);
    assert_int_equal(ticket_count(), 4);
    assert_int_equal(ticket_current(52000, 10000, &got), 0);
    assert_int_equal(ticket_count(), 4);
    assert_int_equal(ticket_find(k[0].name, 52000, 10000, &got), TICKET_UNKNOWN);
    assert_int_equal(ticket_find(k[1].name, 52000, 10000, &got), TICKET_RENEW);
}

/* Workers make and read tickets at once: each key a lookup finds is the key that was handed
 * out under its name, whole (no torn copy), and no more keys are held than the ring has. A
 * shared clock that moves on by 1 ms a call makes a new key every 50 calls. */
static uint64_t shared_clock;

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        uint64_t now = __atomic_add_fetch(&shared_clock, 1, __ATOMIC_RELAXED);
        struct ticket_key made, found;
        if (ticket_current(now, 50, &made) != 0)
            return "no key";
        now = __atomic_load_n(&shared_clock, __ATOMIC_RELAXED);
        if (ticket_find(made.name, now, 50, &found) != TICKET_UNKNOWN &&
            memcmp(&made, &found, sizeof(made)) != 0)
            return "a key found under its name is not the key made";
        if (ticket_count() > 4)
            return "more keys than the ring holds";
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *why;
        assert_int_equal(pthread_join(th[i], &why), 0);
        if (why)
            fail_msg("%s", (const char *)why);
    }
}

/* Wiping drops every key: nothing decrypts after it. */
static void test_wipe(void **state)
{
    (void)state;
    struct ticket_key k, got;
    assert_int_equal(ticket_current(1, P, &k), 0);
    ticket_wipe_all();
    assert_int_equal(ticket_count(), 0);
    assert_int_equal(ticket_find(k.name, 1, P, &got), TICKET_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lifecycle, reset),
        cmocka_unit_test_setup(test_rotation, reset),
        cmocka_unit_test_setup(test_period_changes, reset),
        cmocka_unit_test_setup(test_concurrent, reset),
        cmocka_unit_test_setup(test_wipe, reset),
    };
    return cmocka_run_group_tests(tests, NULL, reset);
}
