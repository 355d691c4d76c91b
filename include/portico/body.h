/*
 * body.h — streaming a message body from one evbuffer to another without holding it whole:
 * Content-Length, chunked (decoded strictly, re-encoded canonically) or close-delimited in;
 * raw or chunked out. Used for request bodies (client → origin) and responses (origin → client).
 */
#ifndef PORTICO_BODY_H
#define PORTICO_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/chunked.h"
#include "portico/http1.h"
#include "portico/trailers.h"

struct evbuffer;

struct body_relay {
    enum h1_framing in;          /* how the body arrives */
    bool out_chunked;            /* re-encode as chunked; else the plain body bytes */
    uint64_t left;               /* H1_BODY_LENGTH: bytes still to come */
    struct chunked_decoder chunked; /* H1_BODY_CHUNKED decoder */
    struct trailer_filter trailers; /* the trailer fields that may cross (out_chunked) */
    bool trailers_started;       /* "0\r\n" already written before the trailer fields */
    struct evbuffer *trailers_out; /* not out_chunked: where the trailer field lines that may
                                    cross go (NULL: dropped); the owner sets it after body_init */
    uint64_t bytes;              /* body bytes moved so far (payload only) */
    uint64_t quota;              /* payload bytes that may still move (UINT64_MAX: no limit);
                                    the owner sets it to cut a body short or pace it */
    bool done;                   /* the body is complete (never set for CLOSE until eof) */
    const char *error;           /* static reason after -1 */
    bool out_of_memory;          /* the -1 was ours: no memory for what goes out (error says
                                    so), not the sender's framing */
};

/* Prepares a relay for a body of `in` framing (content_length for LENGTH). max_trailers bounds
 * a chunked trailer section. */
void body_init(struct body_relay *r, enum h1_framing in, uint64_t content_length,
               bool out_chunked, size_t max_trailers);

/* Moves what is available in `in` to `out`, stopping once `out` holds more than out_limit bytes
 * or the quota is spent (framing without payload still moves). Returns 0 (check r->done), or -1
 * on invalid framing (r->error). */
int body_move(struct body_relay *r, struct evbuffer *in, struct evbuffer *out, size_t out_limit);

/* A Content-Length body with at least this much left gets a pipe (sock_splice): a pipe costs 4
 * system calls (pipe2, fcntl, two close), and a smaller body mostly arrives in the same read
 * as its head anyway. */
#define BODY_SPLICE_MIN (64 * 1024)

/* Whether the rest of the body may bypass the buffers: a raw Content-Length body, not cut short
 * or paced by a fault (quota), with BODY_SPLICE_MIN or more to come. */
bool body_spliceable(const struct body_relay *r);

/* n payload bytes were moved outside body_move (spliced, at most r->left). */
void body_spliced(struct body_relay *r, uint64_t n);

/* Whether `in` holds all that is left of the body (r itself is left as it is): a done body,
 * the rest of a Content-Length one, or a chunked one up to the end of its last chunk and
 * trailer section (a copy of the decoder reads its framing; chunk data is skipped). Never a
 * close-delimited body, nor chunked framing found invalid: neither is whole before its end. */
bool body_rest_in(const struct body_relay *r, struct evbuffer *in);

/* The input hit EOF. For a close-delimited body this completes it (writing the last chunk when
 * re-encoding) and returns 0; for any other framing the body is truncated: -1. */
int body_eof(struct body_relay *r, struct evbuffer *out);

#endif
