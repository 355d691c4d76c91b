/*
 * test_slotshare.c — origins' counts shared across generations (slotshare.h), driven without
 * balancers: a listing the newest generation dropped drains into the origin's first listing
 * (its attempts in flight move there, it takes no claim of its own, frees and reads follow
 * it), a listing added back later is a count of its own, and the counts are freed with their
 * last holders (ASan's leak check sees one kept or freed twice).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "portico/slotshare.h"

#define ORIGIN "127.0.0.1:3000"

/* Generation 1 lists the origin twice at max_conns=1 and holds one attempt on each listing;
 * generation 2 lists it once at max_conns=2 and drains the second listing when it serves. */
static void test_dropped_listing_drains(void **state)
{
    (void)state;
    struct slot_share *s = slot_share_join("u", true);
    assert_non_null(s);
    struct slot_count *g1[2] = {slot_share_count(s, ORIGIN, 0, 1),
                                slot_share_count(s, ORIGIN, 1, 1)};
    assert_non_null(g1[0]);
    assert_non_null(g1[1]);
    atomic_store(&g1[0]->in_flight, 1);
    atomic_store(&g1[1]->in_flight, 1);
    struct slot_share *s2 = slot_share_join("u", true);
    assert_ptr_equal(s2, s);
    struct slot_count *g2 = slot_share_count(s, ORIGIN, 0, 2);
    assert_ptr_equal(g2, g1[0]); /* the first listing's count, shared */
    pthread_mutex_lock(slot_share_lock(s));
    atomic_store(&g2->max, 2);
    slot_share_drain(s, ORIGIN, 1, g2);
    slot_share_drain(s, ORIGIN, 1, g2); /* a second serve drains nothing more */
    pthread_mutex_unlock(slot_share_lock(s));
    assert_int_equal(atomic_load(&g2->in_flight), 2); /* both listings' attempts */
    assert_int_equal(atomic_load(&g1[1]->in_flight), SLOT_DRAINED);
    assert_ptr_equal(slot_count_live(g1[1]), g2);
    assert_int_equal(slot_count_in_flight(g1[1]), 2);
    /* the listing added back (generation 3) is a count of its own, from 0 */
    struct slot_count *g3 = slot_share_count(s, ORIGIN, 1, 1);
    assert_non_null(g3);
    assert_ptr_not_equal(g3, g1[1]);
    assert_int_equal(atomic_load(&g3->in_flight), 0);
    slot_share_put(s, g3);
    /* generation 2 ends first: the drained count still holds the one it went into */
    slot_share_put(s, g2);
    slot_share_leave(s2, NULL);
    assert_int_equal(slot_count_in_flight(g1[1]), 2);
    slot_share_put(s, g1[0]);
    slot_share_put(s, g1[1]); /* frees both */
    slot_share_leave(s, NULL);
}

/* Another origin's listings, and the origin's own listings the newest still has, stay. */
static void test_drain_leaves_others(void **state)
{
    (void)state;
    struct slot_share *s = slot_share_join("v", true);
    assert_non_null(s);
    struct slot_count *a0 = slot_share_count(s, ORIGIN, 0, 1);
    struct slot_count *a1 = slot_share_count(s, ORIGIN, 1, 1);
    struct slot_count *a2 = slot_share_count(s, ORIGIN, 2, 1);
    struct slot_count *b1 = slot_share_count(s, "127.0.0.1:3001", 1, 1);
    atomic_store(&a2->in_flight, 1);
    pthread_mutex_lock(slot_share_lock(s));
    slot_share_drain(s, ORIGIN, 2, a0); /* listed twice now: the third listing goes */
    pthread_mutex_unlock(slot_share_lock(s));
    assert_ptr_equal(slot_count_live(a1), a1);
    assert_ptr_equal(slot_count_live(b1), b1);
    assert_ptr_equal(slot_count_live(a2), a0);
    assert_int_equal(atomic_load(&a0->in_flight), 1);
    struct slot_count *all[] = {a0, a1, a2, b1};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        slot_share_put(s, all[i]);
    slot_share_leave(s, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropped_listing_drains),
        cmocka_unit_test(test_drain_leaves_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
