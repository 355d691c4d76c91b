/*
 * evbase.c — event bases whose creation cannot end the process. See evbase.h.
 *
 * libevent's fatal errors go to its fatal callback, then exit(). While this thread makes a base,
 * the callback jumps back to evbase_new instead, which returns NULL. Nothing of libevent's is
 * held at that point (no lock: the base's own are made after its backend; no global state: the
 * signal base is chosen when a signal event is added), only the half-made base is lost.
 * Anywhere else the callback returns and libevent exits, as it always did.
 */
#include "portico/evbase.h"

#include <event2/event.h>
#include <pthread.h>
#include <setjmp.h>
#include <stddef.h>

static _Thread_local sigjmp_buf *escape; /* set while this thread is in event_base_new */

static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void on_fatal(int err)
{
    (void)err; /* libevent logged the cause (log callback) before calling us */
    if (escape)
        siglongjmp(*escape, 1);
}

static void install(void)
{
    event_set_fatal_callback(on_fatal);
}

struct event_base *evbase_new(int flags)
{
    struct event_config *ec = event_config_new();
    if (!ec)
        return NULL;
    event_config_set_flag(ec, flags);
    /* epoll only: when epoll_create1 fails, libevent would fall back to poll (whose init fails
     * the same way at EMFILE, and which does not scale) rather than report the failure */
    event_config_require_features(ec, EV_FEATURE_O1);
    pthread_once(&installed, install); /* once: worker threads read it on their own errors */
    struct event_base *volatile base = NULL;
    sigjmp_buf here;
    if (sigsetjmp(here, 0) == 0) {
        escape = &here;
        base = event_base_new_with_config(ec);
    }
    escape = NULL;
    event_config_free(ec);
    return base;
}
