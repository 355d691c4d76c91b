/*
 * sock.h — one non-blocking connection, plain or TLS, with its input and output evbuffers.
 *
 * Portico owns its socket I/O instead of using libevent bufferevents: a read is one readv (or
 * SSL_read) straight into reserved buffer space — no FIONREAD ioctl before it, no 4 KiB cap —
 * a write is attempted at once (no loop turn waiting for writability), and the read event stays
 * registered while the connection lives, so a keep-alive request costs its reads and writes and
 * no epoll changes (a connection read at its accept may be registered only later, or never:
 * sock_watch_later). libevent is used only through its public API (event, evbuffer).
 *
 * Each timeout is a deadline kept with one timer that is not re-armed on every byte: progress
 * only records its time, and the timer, when it fires early, moves itself to the real deadline
 * (deadline.h).
 *
 * Events reach the owner through one callback. The owner may close the sock from inside it; the
 * sock never touches itself after calling back.
 */
#ifndef PORTICO_SOCK_H
#define PORTICO_SOCK_H

#include <event2/event_struct.h>
#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "portico/deadline.h"

struct waitset;

struct evbuffer;
struct deadline_clock;
struct ssl_st;
struct sock_pipe;

#define SOCK_EVENT_LIST(X)                                                                         \
    X(SOCK_READABLE, "readable")           /* bytes were added to the input */                    \
    X(SOCK_DRAINED, "drained")             /* a write that had to wait emptied the output */      \
    X(SOCK_CONNECTED, "connected")         /* the TLS handshake completed */                      \
    X(SOCK_EOF, "eof")                     /* the peer closed its side */                         \
    X(SOCK_ERROR, "error")                 /* socket or TLS error: sock_errno / sock_ssl_error */ \
    X(SOCK_READ_TIMEOUT, "read timeout")   /* reading, and nothing came for read_timeout */       \
    X(SOCK_WRITE_TIMEOUT, "write timeout") /* output pending, none taken for write_timeout */ \
    X(SOCK_DEADLINE, "deadline")           /* the owner's deadline (sock_set_deadline) passed */

enum sock_event {
#define X(id, name) id,
    SOCK_EVENT_LIST(X)
#undef X
};

#define SOCK_STATE_LIST(X)                                                                         \
    X(SOCK_CLOSED, "closed")       /* not initialized, or closed */                               \
    X(SOCK_HANDSHAKE, "handshake") /* TLS handshake in progress */                                \
    X(SOCK_OPEN, "open")           /* data flows */                                               \
    X(SOCK_FAILED, "failed")       /* an error was seen; it is being (or was) reported */

enum sock_state {
#define X(id, name) id,
    SOCK_STATE_LIST(X)
#undef X
};

typedef void sock_cb(void *arg, enum sock_event ev);

struct sock {
    enum sock_state state;
    evutil_socket_t fd;                /* owned */
    struct ssl_st *ssl;                /* owned; NULL for a plain connection */
    struct evbuffer *in;               /* owned: bytes read, for the owner to consume */
    struct evbuffer *out;              /* owned: bytes the owner queued, written by sock_flush */
    struct sock_pipe *pipe;            /* owned: spliced bytes (sock_splice) that go out before
                                          `out`; NULL when none is spliced into this sock */
    struct event rev;                  /* EV_READ, persistent while reading */
    struct event *wev;                 /* EV_WRITE, only while a write waits; allocated the
                                          first time one does (most never wait) */
    struct deadline timer;             /* the earliest deadline */
    sock_cb *cb;                       /* borrowed */
    void *arg;
    unsigned flags;                    /* SF_* (sock.c) */
    uint32_t sent;                     /* bytes handed to the kernel, saturated (sock_all_left) */
    size_t read_limit;                 /* stop reading while the input holds this much */
    uint64_t read_timeout_us;          /* 0: none */
    uint64_t write_timeout_us;         /* 0: none */
    uint64_t read_since;               /* µs: reading (re)started or bytes arrived */
    uint64_t write_since;              /* µs: a write began waiting or made progress */
    uint64_t owner_at;                 /* µs: the owner's deadline, 0 = none */
    int err;                           /* errno of the failure, 0 if none */
    unsigned long ssl_err;             /* OpenSSL error of the failure, 0 if none */
    struct waitset *waitset;           /* borrowed: where a miss of sock_read_now waits, or NULL */
};

/*
 * Takes ownership of a connected non-blocking socket fd and, when ssl is not NULL, of ssl (set
 * up for the accepting or connecting side; the handshake starts with sock_handshake). Reading is
 * on, with no limit and no timeouts. Returns 0, or -1 when out of memory: then fd and ssl are
 * closed and freed here, exactly once, and the sock is SOCK_CLOSED.
 */
int sock_init(struct sock *s, struct deadline_clock *clock, evutil_socket_t fd, struct ssl_st *ssl,
              sock_cb *cb, void *arg);

/* sock_init for a socket the caller reads with sock_read_now before its turn ends (a client just
 * accepted): the read event's registration is held back, not made, until the event of that
 * read ends, and not made at all when the owner withdraws it there (sock_watch_later, a read
 * that finds nothing and waits in first_wait, a close): its event_add and event_del (~650
 * instructions a connection) were libevent's bookkeeping for a change epoll never saw. */
int sock_init_read_now(struct sock *s, struct deadline_clock *clock, evutil_socket_t fd,
                       struct ssl_st *ssl, sock_cb *cb, void *arg);

/* Changes who receives the events (a pooled connection passes from one exchange to the next). */
void sock_set_cb(struct sock *s, sock_cb *cb, void *arg);

/* The owner's own deadline (µs on the now_us clock; 0: none), kept on the sock's one timer so
 * that a connection needs no other: once it passes, the owner gets SOCK_DEADLINE. Moving it
 * later costs no timer operation. */
void sock_set_deadline(struct sock *s, uint64_t at);

/* The owner's deadline is due now: SOCK_DEADLINE comes from the loop in this turn, after the
 * events already active, without the timer (a deadline set to now went into the clock's heap
 * and out again: ~800 instructions per connection closed after its answer). Clears the owner's
 * deadline. */
void sock_owner_due_now(struct sock *s);

/* Calls the owner back from the loop with SOCK_READABLE for input already buffered (a pipelined
 * request left when the previous one ended), not from inside the current callback. */
void sock_requeue(struct sock *s);

/* Starts the TLS handshake; SOCK_CONNECTED or SOCK_ERROR/SOCK_EOF follows from the loop. */
void sock_handshake(struct sock *s);

/* Reads from the loop in this turn, as if epoll had said the socket is readable (a socket just
 * accepted: HAProxy's speculative read; with defer_accept its first bytes are certainly there):
 * a TLS handshake takes its step, a plain one reads. Finding nothing costs a read that would
 * block; the sock then waits for epoll. A TLS handshake peeks first, and waits for epoll when
 * there is nothing (OpenSSL's buffers). Called in sock_init's turn, it lets the owner's
 * callback for that read hold the registration back (sock_watch_later). With first_wait (a
 * plain socket), a read that finds nothing waits there instead of in libevent's epoll: its
 * registration is withdrawn before any dispatch applies it, so that no DEL follows the close
 * (waitset.h); when first_wait reports the socket, it is read as sock_read_now reads. */
void sock_read_now(struct sock *s, struct waitset *first_wait);

/* The waitset's callback for a sock that waited there (sock_read_now's first_wait): readable,
 * hung up or failed. arg is the sock. */
void sock_first_ready(void *arg);

/* Whether the owner's callback runs for the read sock_read_now scheduled, in the same turn of
 * the loop, on a plain socket: the registration sock_init made is still in libevent's
 * changelist (or held back, sock_init_read_now), not yet in epoll, so sock_watch_later may
 * withdraw it for nothing. */
bool sock_may_watch_later(const struct sock *s);

/* Holds the read event back: the peer is not watched until the owner calls sock_watch_now (at
 * its own deadline, sock_set_deadline: the sock keeps no time for it) or sock_read, so that a
 * connection answered and closed before then costs no epoll_ctl at all (the registration and
 * its withdrawal cancel out in libevent's changelist). Then it is registered, and what the peer
 * did meanwhile (bytes, its FIN, a reset) is reported as usual. Only when sock_may_watch_later
 * says so, and for a peer from whom nothing is awaited meanwhile: no read deadline runs. false,
 * and nothing changes, otherwise (or when a report is already due from the loop through the
 * read event: an end behind the bytes, a requeue, the owner's deadline due now). */
bool sock_watch_later(struct sock *s);

/* Ends sock_watch_later's wait: the read event is registered (at the next dispatch). Nothing
 * when none was held back. */
void sock_watch_now(struct sock *s);

/* sock_watch_now, for an owner that expects nothing of the peer but its hang-up (an exchange
 * that outlived sock_watch_later's bound): the first report comes through sock_read_now's
 * first_wait, so that a close before it makes no epoll_ctl DEL; libevent watches from that
 * report on. sock_watch_now without a first_wait. */
void sock_watch_once(struct sock *s);

/* Turns reading on or off. While on, SOCK_READABLE arrives whenever bytes were read. Either
 * ends a wait of sock_watch_later: reading off then costs no epoll_ctl either. */
void sock_read(struct sock *s, bool on);

/* Reading pauses while the input holds limit bytes or more (0: no limit). After consuming input
 * the owner calls sock_consumed so that a paused read resumes. */
void sock_set_read_limit(struct sock *s, size_t limit);
void sock_consumed(struct sock *s);

/* Deadlines: no byte read for read_ms while reading (0: none), output not taken by the peer for
 * write_ms while some waits (0: none). The read deadline counts from now. */
void sock_set_timeouts(struct sock *s, uint64_t read_ms, uint64_t write_ms);

/* Writes the output now. Returns 0 when all of it went out, 1 when the rest waits for the peer
 * (SOCK_DRAINED comes when it went), -1 after a failure (SOCK_ERROR comes from the loop). */
int sock_flush(struct sock *s);

/*
 * Moves up to max bytes from src's socket to dst's peer through dst's kernel pipe (splice(2)):
 * the bytes never enter user space. Both plain TCP, src's input empty; max is what remains of
 * the body being moved. From the first call src is raw: readability comes as SOCK_READABLE
 * without a read, once, and src is watched again from the owner's next call; while dst cannot
 * take more, src is not watched until the next call (dst's SOCK_DRAINED says when). Once max
 * bytes went, src reads into its input again and dst lets its pipe go when drained. Returns
 * the bytes taken from src (0: none now), or -1 when nothing can be spliced (TLS, no pipe to
 * be had): src reads into its input again, copy instead. An EOF or error of either side is
 * reported from the loop, as for reads and writes.
 */
long sock_splice(struct sock *src, struct sock *dst, size_t max);

/* Ends a splice cut short (the exchange ended before max): s reads into its input again, and
 * its pipe, if any, goes once drained. Safe on a sock that never spliced. */
void sock_splice_end(struct sock *s);

/* After a failure (a write that met the peer's reset): reads what the peer sent before it,
 * which the kernel still holds (over TLS: decrypted), up to the read limit, and marks the sock
 * at its end. Returns the bytes read. */
long sock_read_remains(struct sock *s);

/* Whether input waits to be consumed: in the buffer, or read ahead by TLS and not yet
 * decrypted (which epoll cannot see). */
bool sock_has_input(const struct sock *s);

/* Whether the kernel already holds something from the peer that no read took yet: bytes (then
 * *bytes is set) or its end (FIN, reset). One recv with MSG_PEEK: nothing is consumed. */
bool sock_peer_pending(const struct sock *s, bool *bytes);

/* Whether input waits anywhere: as sock_has_input, or bytes in the kernel, not read yet (one
 * recv with MSG_PEEK: for rare decisions, such as which idle connection a drain may close). */
bool sock_input_arrived(const struct sock *s);

/* Bytes of ours the peer has acknowledged over the connection's life (TCP_INFO
 * tcpi_bytes_acked; TLS records counted as bytes), or -1 when the kernel cannot say. It stays
 * readable after the peer's reset. */
int64_t sock_bytes_acked(const struct sock *s);

/* Whether any byte the owner queued has gone to the socket (a TLS handshake's own do not
 * count): with SOCK_FAILED, a failure before anything of the owner's was sent. */
bool sock_wrote(const struct sock *s);

/* Whether the peer's EOF was reported already. */
bool sock_at_eof(const struct sock *s);

/* Over TLS: the peer's EOF came without its close_notify, so what came before it may have been
 * cut short on the way (an EOF of a plain socket: false). */
bool sock_tls_cut(const struct sock *s);

/* Whether the peer's end was read, reported already or not: an end read behind data (a TLS
 * close_notify read ahead with the last record) is reported on the next loop turn. */
bool sock_peer_closed(const struct sock *s);

/* Bytes queued in the output (its pipe included) and not yet written. */
size_t sock_pending(const struct sock *s);

/* Whether every byte handed to the kernel surely left it without asking it (SIOCOUTQNSD): at
 * most SOCK_FIRST_FLIGHT in the connection's whole life on a plain socket. TCP sends that much at
 * once (client sockets have TCP_NODELAY from their listener: no Nagle; 10 initial segments of
 * Linux's smallest MSS, 48 bytes; a peer's first window is larger), so no close() can strand
 * it. Over TLS: false (not counted). */
#define SOCK_FIRST_FLIGHT 480u
bool sock_all_left(const struct sock *s);

/* Ends our direction: close_notify over TLS, then shutdown(SHUT_WR). Reading goes on. */
void sock_shutdown(struct sock *s);

/* Ends our direction with a FIN alone, even over TLS: the peer can tell the stream was cut, not
 * ended (relaying the end of a TLS peer that closed without close_notify). Reading goes on. */
void sock_shutdown_cut(struct sock *s);

/* Closes the socket, frees the TLS session and both buffers, cancels every event. Safe to call
 * on a closed sock and from inside its callback. */
void sock_close(struct sock *s);

/* After a TLS failure with nothing else to go on: processes what the peer sent (an alert that
 * arrived behind our own failed write) and returns its OpenSSL error, 0 if none. */
unsigned long sock_tls_alert(struct sock *s);

/* Sets fd's SO_SNDBUF or SO_RCVBUF (opt) to want bytes and returns what the kernel took, read
 * back: want, or less when net.core.wmem_max or rmem_max cut it down, which the kernel does
 * without a word (it reports twice the value, for its bookkeeping: halved here). -1 when
 * setsockopt refused. For a read-back that is said once (client_sndbuf, origin_rcvbuf): a
 * socket that only needs the value set makes the one setsockopt. */
int sock_set_buffer(evutil_socket_t fd, int opt, int want);

/* 0 when this host can send to sa, else why not: a UDP socket of sa's family connect()s to it,
 * which picks a route and a source address and sends nothing (three system calls; it takes a
 * UDP port, whose use is apart from TCP's). EAFNOSUPPORT: no such family in the kernel;
 * EADDRNOTAVAIL: no source address of it (IPv6 turned off, as in Docker without --ipv6);
 * ENETUNREACH: no route. Another errno (out of descriptors, EAGAIN: no UDP port free) says
 * nothing of sa. */
int sock_route_error(const struct sockaddr *sa, socklen_t len);

/* Whether err, from sock_route_error or a connect() that sent nothing, says this host has no use
 * for the address: EAFNOSUPPORT, EADDRNOTAVAIL or ENETUNREACH (see sock_route_error). */
bool sock_no_route(int err);

/* Name of an event or state, for logs. */
const char *sock_event_name(enum sock_event ev);

#endif
