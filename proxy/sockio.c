/*
 * sockio.c — direct reads and writes on a bufferevent's plain socket. See sockio.h.
 */
#include "portico/sockio.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <sys/uio.h>

#include "portico/util.h"

#define SOCKIO_MAX_READ (256 * 1024)
#define SOCKIO_MAX_WRITE (1024 * 1024)

long sockio_fill(struct bufferevent *bev, size_t limit)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t have = evbuffer_get_length(in);
    if (fd < 0 || have >= limit)
        return 0;
    size_t want = MIN(limit - have, (size_t)SOCKIO_MAX_READ);
    struct evbuffer_iovec v[2];
    /* A socket bufferevent freezes the end of its input between its own reads: thaw it for
     * ours, the way bufferevent_readcb does. */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (nv <= 0) {
        evbuffer_freeze(in, 0);
        return 0;
    }
    size_t room = 0;
    for (int i = 0; i < nv; i++) { /* reserve may offer more than asked: take only want */
        v[i].iov_len = MIN(v[i].iov_len, want - room);
        room += v[i].iov_len;
    }
    ssize_t r = readv(fd, (struct iovec *)v, nv); /* evbuffer_iovec is laid out as iovec */
    if (r <= 0) {
        evbuffer_commit_space(in, v, 0);
        evbuffer_freeze(in, 0);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        return 0; /* EOF: the bufferevent's next read sees it too and reports it */
    }
    size_t left = (size_t)r;
    int used = 0;
    for (; used < nv && left; used++) {
        v[used].iov_len = MIN(v[used].iov_len, left);
        left -= v[used].iov_len;
    }
    evbuffer_commit_space(in, v, used);
    evbuffer_freeze(in, 0);
    return (long)r;
}

void sockio_flush(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    if (fd < 0 || evbuffer_get_length(out) == 0)
        return;
    evbuffer_unfreeze(out, 1); /* frozen at the front between the bufferevent's own writes */
    int n = evbuffer_write_atmost(out, fd, SOCKIO_MAX_WRITE);
    evbuffer_freeze(out, 1);
    if (n <= 0)
        return;
    if (evbuffer_get_length(out) == 0) {
        if (event_pending(&bev->ev_write, EV_WRITE, NULL))
            event_del(&bev->ev_write);
    } else if (event_pending(&bev->ev_write, EV_WRITE, NULL)) {
        /* Progress was made: the write timeout counts from now, as libevent's own write
         * would have it. */
        event_add(&bev->ev_write, evutil_timerisset(&bev->timeout_write) ? &bev->timeout_write
                                                                          : NULL);
    }
}
