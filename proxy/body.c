/*
 * body.c — body relay between evbuffers. See body.h.
 *
 * Data moves with evbuffer_remove_buffer, which hands over whole chains without copying; only
 * chunk framing lines are looked at byte by byte.
 */
#include "portico/body.h"

#include <event2/buffer.h>

#include "portico/evmem.h"
#include "portico/util.h"

void body_init(struct body_relay *r, enum h1_framing in, uint64_t content_length,
               bool out_chunked, size_t max_trailers)
{
    *r = (struct body_relay){.in = in, .out_chunked = out_chunked, .left = content_length,
                             .quota = UINT64_MAX};
    if (in == H1_BODY_CHUNKED) {
        chunked_init(&r->chunked, max_trailers);
        trailer_filter_init(&r->trailers);
    }
    /* An empty Content-Length body re-encoded as chunked still owes its last chunk. */
    r->done = in == H1_BODY_NONE ||
              (in == H1_BODY_LENGTH && content_length == 0 && !out_chunked);
}

#define SMALL_COPY 1024 /* bytes of body copied rather than moved as a chain */

/* An addition to out that failed (out of memory): what out holds is no longer whole framing
 * (a chunk size without its data, data without its CRLF), so the body cannot go on: the one
 * reading it would take the next bytes for something else. Returns -1. */
static int out_of_memory(struct body_relay *r)
{
    r->error = "out of memory";
    r->out_of_memory = true;
    return -1;
}

/* Adds p[0..n) to out; -1 (out_of_memory) when it could not. */
static int add(struct body_relay *r, struct evbuffer *out, const char *p, size_t n)
{
    return evbuffer_add(out, p, n) == 0 ? 0 : out_of_memory(r);
}

/* Moves n payload bytes, framed as one chunk when re-encoding; -1 out of memory. */
static int move_data(struct body_relay *r, struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (r->out_chunked && evbuffer_add_printf(out, "%zx\r\n", n) < 0)
        return out_of_memory(r);
    if (n <= SMALL_COPY) {
        /* Copied behind what out already holds (the response head, mostly): one span, so one
         * send() instead of a sendmsg() of two; moving the chain would save only this copy. */
        char small[SMALL_COPY];
        evbuffer_remove(in, small, n);
        if (add(r, out, small, n) != 0)
            return -1;
    } else if (evmem_move(in, out, n) != 0) {
        return out_of_memory(r);
    }
    if (r->out_chunked && add(r, out, "\r\n", 2) != 0)
        return -1;
    r->bytes += n;
    if (r->quota != UINT64_MAX)
        r->quota -= n;
    return 0;
}

static int move_chunked(struct body_relay *r, struct evbuffer *in, struct evbuffer *out,
                        size_t out_limit)
{
    while (!r->done && evbuffer_get_length(out) <= out_limit) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return 0;
        if (r->chunked.data_left) {
            if (!r->quota)
                return 0;
            size_t n = (size_t)MIN(MIN(r->chunked.data_left, (uint64_t)avail), r->quota);
            if (move_data(r, in, out, n) != 0)
                return -1;
            chunked_data_taken(&r->chunked, n);
            continue;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return 0;
        size_t used = 0;
        enum chunked_rc rc = chunked_parse(&r->chunked, v.iov_base, v.iov_len, &used);
        switch (rc) {
        case CHUNKED_AGAIN:
        case CHUNKED_DATA:
            evbuffer_drain(in, used);
            break;
        case CHUNKED_TRAILER:
            /* Field by field: a trailer section is no way around the head's rules (trailers.h). */
            if (r->out_chunked) {
                if (!r->trailers_started && add(r, out, "0\r\n", 3) != 0)
                    return -1;
                r->trailers_started = true;
                if (trailer_filter_run(&r->trailers, v.iov_base, used, out) != 0)
                    return out_of_memory(r); /* a line cut in two: the section never ends */
            } else if (r->trailers_out &&
                       trailer_filter_run(&r->trailers, v.iov_base, used, r->trailers_out) != 0) {
                return out_of_memory(r);
            }
            evbuffer_drain(in, used);
            break;
        case CHUNKED_DONE:
            evbuffer_drain(in, used);
            if (r->out_chunked && add(r, out, r->trailers_started ? "\r\n" : "0\r\n\r\n",
                                      r->trailers_started ? 2 : 5) != 0)
                return -1;
            r->done = true;
            break;
        case CHUNKED_ERROR:
            r->error = r->chunked.error ? r->chunked.error : "invalid chunked framing";
            return -1;
        }
    }
    return 0;
}

int body_move(struct body_relay *r, struct evbuffer *in, struct evbuffer *out, size_t out_limit)
{
    if (r->done)
        return 0;
    switch (r->in) {
    case H1_BODY_NONE:
        r->done = true;
        return 0;
    case H1_BODY_LENGTH: {
        size_t avail = evbuffer_get_length(in);
        size_t room = evbuffer_get_length(out) <= out_limit ? SIZE_MAX : 0;
        size_t n = (size_t)MIN(MIN(MIN(r->left, (uint64_t)avail), (uint64_t)room), r->quota);
        if (n) {
            if (move_data(r, in, out, n) != 0) /* framed as a chunk when out_chunked */
                return -1;
            r->left -= n;
        }
        r->done = r->left == 0;
        if (r->done && r->out_chunked)
            return add(r, out, "0\r\n\r\n", 5);
        return 0;
    }
    case H1_BODY_CHUNKED:
        return move_chunked(r, in, out, out_limit);
    case H1_BODY_CLOSE: {
        size_t avail = (size_t)MIN((uint64_t)evbuffer_get_length(in), r->quota);
        if (avail && evbuffer_get_length(out) <= out_limit)
            return move_data(r, in, out, avail);
        return 0;
    }
    }
    return -1;
}

bool body_spliceable(const struct body_relay *r)
{
    return r->in == H1_BODY_LENGTH && !r->out_chunked && r->quota == UINT64_MAX && !r->done &&
           r->left >= BODY_SPLICE_MIN;
}

void body_spliced(struct body_relay *r, uint64_t n)
{
    r->left -= n;
    r->bytes += n;
    r->done = r->left == 0;
}

#define REST_SPANS 16 /* evbuffer chains looked at per peek when scanning a chunked rest */

/* Whether the chunked framing of in's bytes, read with a copy of r's decoder, reaches the
 * body's end. */
static bool chunked_rest_in(const struct body_relay *r, struct evbuffer *in)
{
    struct chunked_decoder d = r->chunked; /* plain data: the original is not moved on */
    size_t total = evbuffer_get_length(in), off = 0;
    struct evbuffer_iovec v[REST_SPANS];
    while (off < total) {
        struct evbuffer_ptr at;
        if (evbuffer_ptr_set(in, &at, off, EVBUFFER_PTR_SET) != 0)
            return false;
        /* (a length, not -1: with -1 the count stops at the vectors given) */
        int n = evbuffer_peek(in, (ev_ssize_t)(total - off), &at, v, REST_SPANS);
        if (n <= 0)
            return false;
        for (int i = 0; i < MIN(n, REST_SPANS); i++) {
            const char *p = v[i].iov_base;
            size_t len = MIN(v[i].iov_len, total - off);
            off += len;
            while (len) {
                if (d.data_left) {
                    size_t skip = (size_t)MIN(d.data_left, (uint64_t)len);
                    chunked_data_taken(&d, skip);
                    p += skip, len -= skip;
                    continue;
                }
                size_t used = 0;
                enum chunked_rc rc = chunked_parse(&d, p, len, &used);
                if (rc == CHUNKED_DONE)
                    return true;
                if (rc == CHUNKED_ERROR || used == 0) /* (no progress: never loop on it) */
                    return false;
                p += used, len -= used;
            }
        }
    }
    return false;
}

bool body_rest_in(const struct body_relay *r, struct evbuffer *in)
{
    if (r->done)
        return true;
    switch (r->in) {
    case H1_BODY_LENGTH:
        return evbuffer_get_length(in) >= r->left;
    case H1_BODY_CHUNKED:
        return chunked_rest_in(r, in);
    case H1_BODY_NONE:
    case H1_BODY_CLOSE:
        break;
    }
    return false;
}

int body_eof(struct body_relay *r, struct evbuffer *out)
{
    if (r->done)
        return 0;
    if (r->in != H1_BODY_CLOSE) {
        r->error = r->in == H1_BODY_CHUNKED ? "connection closed before the last chunk"
                                            : "connection closed before Content-Length bytes";
        return -1;
    }
    if (r->out_chunked && add(r, out, "0\r\n\r\n", 5) != 0)
        return -1;
    r->done = true;
    return 0;
}
