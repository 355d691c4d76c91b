/*
 * evbase.h — a libevent event base made without risking the process.
 *
 * libevent ends the process (exit(1), from evsig_init_) when a new base cannot make its signal
 * pipe: out of descriptors (EMFILE at ulimit -n) after epoll_create1 took the last free one. A
 * reload at the limit (a flood of connections the old workers accept meanwhile) lost that race
 * once in ~1,100 reloads, and the whole proxy exited instead of refusing the reload.
 */
#ifndef PORTICO_EVBASE_H
#define PORTICO_EVBASE_H

struct event_base;

/* A new epoll base with libevent's event_config flags (EVENT_BASE_FLAG_*), or NULL (out of
 * descriptors or memory; libevent logged why) where libevent would have ended the process. Main
 * thread or any thread; a failure in the race above loses the half-made base (a few hundred
 * bytes and one descriptor), which only that failure costs. */
struct event_base *evbase_new(int flags);

#endif
