/*
 * stream_origin.h — bodies too large to record: a position-dependent byte pattern, an origin
 * that checks uploads against it as they arrive and generates downloads from it, and a reader
 * that checks a download byte by byte. Nothing is stored whole, so gigabytes pass in constant
 * memory; a lost, doubled or reordered block shows as a wrong byte.
 *
 * The origin (127.0.0.1, port 0) serves each connection on a thread of its own, keep-alive and
 * pipelined requests in order:
 *   POST /up                 reads the body (Content-Length or chunked), checks it against the
 *                            pattern from offset 0, answers 200 "received=<total of every
 *                            upload so far>"; a 100 Continue first for Expect: 100-continue
 *   POST /up-fresh           as /up on a connection's first request; on a later one the origin
 *                            closes (FIN) right after the head: a keep-alive connection it had
 *                            dropped as the request came
 *   POST /up-early/N         Content-Length only: reads and checks the first N bytes of the
 *                            body, answers 200 "early", then reads the rest
 *   GET /down-KIND/N         N pattern bytes, KIND length (Content-Length), chunked, close
 *                            (close-delimited: the connection ends after the body)
 *   GET /down-KIND/N/cut/M   the same head, M < N body bytes, then the origin closes (FIN):
 *                            a body cut short
 */
#ifndef PORTICO_STREAM_ORIGIN_H
#define PORTICO_STREAM_ORIGIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SO_BLOCK (256 * 1024) /* the origin's and the reader's buffers */
#define SO_MAX_CONNS 16       /* connections one origin serves; later ones are closed */

/* Byte `i` of every body. */
static inline unsigned char so_pattern_at(uint64_t i)
{
    return (unsigned char)((i * 0x9E3779B1u) >> 13 ^ i >> 20);
}

/* Fills p[0..n) with the pattern from body offset off. */
void so_pattern_fill(unsigned char *p, uint64_t off, size_t n);

/* First offset in p[0..n) (body offset off) that breaks the pattern, or -1. */
int64_t so_pattern_check(const unsigned char *p, uint64_t off, size_t n);

struct stream_origin {
    uint16_t port;                /* on 127.0.0.1 */
    /* counters the tests read */
    _Atomic uint64_t received;    /* body bytes of uploads, checked against the pattern */
    _Atomic uint64_t sent;        /* body bytes of downloads */
    _Atomic int64_t bad_offset;   /* first upload byte that broke the pattern, -1 */
    _Atomic unsigned requests;    /* requests answered */
    _Atomic uint64_t heads;       /* request heads read (before their bodies) */
    /* the origin's own */
    int lfd;
    int stop_pipe[2];
    pthread_t accept_thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t conn_threads[SO_MAX_CONNS];
    int conn_fds[SO_MAX_CONNS];
    int nconns;                   /* connections accepted (under mu) */
    bool hold_reading;            /* uploads: stop reading bodies until released */
    bool hold_sending;            /* downloads: stop after the head until released */
};

/* Starts an origin; NULL on error (a message on stderr). */
struct stream_origin *so_start(void);

/* Wakes and joins every thread, closes, frees. */
void so_stop(struct stream_origin *o);

/* While set, uploads are not read past their head (a held origin). */
void so_hold_reading(struct stream_origin *o, bool hold);

/* While set, downloads stop after their head: a test can act between the head and the body. */
void so_hold_sending(struct stream_origin *o, bool hold);

/* Waits until *counter (o->received, o->sent or o->heads) is at least value: 0, or -1 after
 * timeout_ms. The origin signals every change, nothing is polled. */
int so_wait_count(struct stream_origin *o, _Atomic uint64_t *counter, uint64_t value,
                  int timeout_ms);

/* Connections accepted so far. */
unsigned so_connections(struct stream_origin *o);

/* Waits until *counter stops moving for quiet_ms (a transfer held back somewhere), or reaches
 * limit (nothing held it back), sampling it every 20 ms. Returns the value. Bounded by
 * timeout_ms. */
uint64_t so_wait_stalled(_Atomic uint64_t *counter, uint64_t limit, int quiet_ms, int timeout_ms);

struct raw_conn;

/* Asks for an n-byte Content-Length download on c and reads none of it: returns the bytes the
 * origin sent before it stalled (nothing more for 300 ms, bounded by 20 s), which a test
 * asserts is less than n. */
uint64_t so_download_stalled(struct stream_origin *o, struct raw_conn *c, uint64_t n);

/* ---- the reader: a blocking client socket, every body byte checked ---- */

struct so_reader {
    int fd;                       /* borrowed */
    char buf[SO_BLOCK];
    size_t len;
    size_t pos;
};

/* Reads more; 1 some, 0 EOF or error, -1 nothing within timeout_ms. */
int so_read_fill(struct so_reader *d, int timeout_ms);

/* One CRLF-terminated line (without it) into line; 0, or -1 (EOF, timeout, too long, bare LF).
 * Each read waits up to 10 s. */
int so_read_line(struct so_reader *d, char *line, size_t size);

/* Reads and checks want body bytes from offset *off (or, until_close, everything until EOF);
 * 0 ok, -1 short. A wrong byte is reported on stderr and returns -2, *off at that byte. Each
 * read waits up to 10 s. */
int so_read_body(struct so_reader *d, uint64_t *off, uint64_t want, bool until_close);

#endif
