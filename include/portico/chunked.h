/*
 * chunked.h — incremental decoder of the chunked transfer coding (RFC 9112 section 7.1).
 *
 * Pure like http1.h: the caller owns the bytes and moves the chunk data itself; the decoder only
 * reads framing (chunk-size lines, extensions, the CRLF after data, trailer fields) and says where
 * each run ends. Used for request bodies, response bodies and the simulator; fuzzed on its own.
 */
#ifndef PORTICO_CHUNKED_H
#define PORTICO_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#define CHUNKED_MAX_LINE 4096 /* default limit of a chunk-size line (with extensions) and of a
                                 trailer field line */

enum chunked_rc {
    CHUNKED_AGAIN = 0, /* every byte given was framing and was used: feed more */
    CHUNKED_DATA,      /* *used framing bytes were used; chunk data follows (see data_left) */
    CHUNKED_TRAILER,   /* the *used bytes are (part of) trailer fields, valid so far: forward */
    CHUNKED_DONE,      /* *used framing bytes complete the body: the message is done */
    CHUNKED_ERROR,     /* invalid framing; see chunked_decoder.error */
};

struct chunked_decoder {
    int state;             /* private state machine position */
    uint64_t data_left;    /* bytes of chunk data the caller must take before the next call */
    uint64_t body_size;    /* total chunk data seen so far (for max_body_size) */
    uint64_t size;         /* private: the chunk-size being read */
    unsigned size_digits;  /* private: hex digits in the current size */
    size_t line_len;       /* private: bytes in the current framing or trailer line */
    size_t trailer_size;   /* private: bytes of trailer section seen */
    size_t max_line;       /* chunk-size line and trailer line limit (CHUNKED_MAX_LINE) */
    size_t max_trailers;   /* trailer section limit */
    const char *error;     /* static reason when CHUNKED_ERROR was returned */
};

/* Prepares a decoder; max_trailers bounds the trailer section (e.g. max_header_size). */
void chunked_init(struct chunked_decoder *c, size_t max_trailers);

/*
 * Consumes framing bytes from p[0..len) and stops at the first boundary: start of chunk data
 * (CHUNKED_DATA, data_left > 0), end of a run of trailer bytes (CHUNKED_TRAILER), end of the
 * body (CHUNKED_DONE) or end of input (CHUNKED_AGAIN, *used == len). Must not be called while
 * data_left > 0. Chunk sizes over 16 hex digits or H1_MAX_LENGTH (also for their sum), bare
 * LF/CR, invalid extensions, a missing CRLF after data, obs-fold or bad trailer fields are
 * CHUNKED_ERROR. The last-chunk line followed by trailer bytes in the same input comes back
 * alone as CHUNKED_DATA with data_left == 0, so that trailer runs hold trailer bytes only.
 */
enum chunked_rc chunked_parse(struct chunked_decoder *c, const char *p, size_t len, size_t *used);

/* Records that the caller took n (<= data_left) bytes of chunk data. */
void chunked_data_taken(struct chunked_decoder *c, size_t n);

#endif
