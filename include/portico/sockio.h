/*
 * sockio.h — two shortcuts around libevent 2.1's bufferevent I/O on plain sockets, where it
 * costs Portico the most: evbuffer_read() never reads more than 4 KiB at a time (plus an ioctl
 * each), and a write always waits one loop turn for writability (plus two epoll_ctl). Both keep
 * the bufferevent's own state consistent, so the bufferevent stays the owner of the socket.
 */
#ifndef PORTICO_SOCKIO_H
#define PORTICO_SOCKIO_H

#include <stddef.h>

struct bufferevent;

/* The most libevent 2.1 reads per turn: an input holding less means the socket ran dry. */
#define SOCKIO_LIBEVENT_READ 4096

/* Reads what the socket has, up to the input buffer holding `limit` bytes (at most 256 KiB per
 * call). Returns bytes read, 0 when none were waiting, -1 on a socket error (errno set). An EOF
 * is left for the bufferevent to report. Plain sockets only. */
long sockio_fill(struct bufferevent *bev, size_t limit);

/* Writes the output buffer now instead of on the next loop turn; when it empties, the pending
 * write event is withdrawn so no epoll change is made at all. Errors are left to the
 * bufferevent, which meets them again and reports them. Plain sockets only. */
void sockio_flush(struct bufferevent *bev);

#endif
