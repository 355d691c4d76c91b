/*
 * test_wakebox.c — work handed to a loop (wakebox.h) over a real event base: the items posted
 * run oldest first, all of them in one turn of the loop; one cancelled runs not, wherever it
 * was in the list, and the list goes on after it; an item that ran or was cancelled may be
 * posted again; an item posted twice runs once; a post from another thread wakes a loop that
 * waits. Each turn that must run something is a pass that does not wait (EVLOOP_NONBLOCK): the
 * eventfd is readable at once after a post.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "portico/wakebox.h"

/* The order the items ran in, by their names. */
static char ran[32];

static void run_named(void *arg)
{
    strncat(ran, arg, sizeof(ran) - strlen(ran) - 1);
}

static void item_init(struct wake_item *it, const char *name)
{
    *it = (struct wake_item){.run = run_named, .arg = (void *)(uintptr_t)name};
}

/* One pass of the loop that does not wait: what ran in it. */
static const char *turn(struct event_base *base)
{
    ran[0] = '\0';
    event_base_loop(base, EVLOOP_NONBLOCK);
    return ran;
}

/* Oldest first, all in one turn; cancelled ones, in the middle or at the end, run not, and the
 * list goes on after them. */
static void test_order_and_cancel(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct wakebox *wb = wakebox_new(base);
    assert_non_null(wb);
    struct wake_item it[5];
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        item_init(&it[i], names[i]);
    for (int i = 0; i < 4; i++)
        wakebox_post(wb, &it[i]);
    wakebox_cancel(wb, &it[1]); /* the middle */
    wakebox_cancel(wb, &it[3]); /* the end */
    wakebox_post(wb, &it[4]);   /* after the new end */
    assert_string_equal(turn(base), "ace");
    assert_string_equal(turn(base), "");
    wakebox_free(wb);
    event_base_free(base);
}

/* An item that ran, or was cancelled, runs again when posted again; one posted twice before its
 * turn runs once. */
static void test_post_again(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct wakebox *wb = wakebox_new(base);
    assert_non_null(wb);
    struct wake_item a, b;
    item_init(&a, "a");
    item_init(&b, "b");
    wakebox_post(wb, &a);
    wakebox_post(wb, &a);
    assert_string_equal(turn(base), "a");
    wakebox_post(wb, &a); /* it ran: posted anew */
    assert_string_equal(turn(base), "a");
    wakebox_post(wb, &b);
    wakebox_cancel(wb, &b);
    assert_string_equal(turn(base), "");
    wakebox_post(wb, &b); /* it was cancelled: posted anew */
    assert_string_equal(turn(base), "b");
    wakebox_free(wb);
    event_base_free(base);
}

static void *post_from_thread(void *arg)
{
    void **args = arg;
    wakebox_post(args[0], args[1]);
    return NULL;
}

/* A post from another thread wakes a loop that waits (EVLOOP_ONCE); a 10 s exit bounds it. */
static void test_post_from_thread(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct wakebox *wb = wakebox_new(base);
    assert_non_null(wb);
    struct wake_item a;
    item_init(&a, "a");
    void *args[] = {wb, &a};
    ran[0] = '\0';
    struct timeval bound = {10, 0};
    event_base_loopexit(base, &bound);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, post_from_thread, args), 0);
    event_base_loop(base, EVLOOP_ONCE);
    pthread_join(t, NULL);
    assert_string_equal(ran, "a");
    wakebox_free(wb);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_cancel),
        cmocka_unit_test(test_post_again),
        cmocka_unit_test(test_post_from_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
