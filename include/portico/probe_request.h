/*
 * probe_request.h — the request `portico probe` sends, from curl's options: -X METHOD, -H 'Name:
 * value' (repeatable), -d DATA and --data-binary DATA (@FILE reads FILE), written as the head
 * and body a client would send. The probe then parses that head with the proxy's own parser
 * (probe.c), so a field Portico would refuse from a client is refused here the same way.
 */
#ifndef PORTICO_PROBE_REQUEST_H
#define PORTICO_PROBE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/http1.h"

struct evbuffer;

/* -H options at most: as many fields as Portico takes from a client, so that over them (with
 * the probe's own) is the parser's 431, as for a client (at 64, a request Portico takes could
 * not be probed) */
#define PROBE_FIELDS_MAX H1_MAX_FIELDS
#define PROBE_DATA_MAX (64u * 1024 * 1024)    /* request body bytes at most (-d, --data-binary) */

/* What the options asked for; the strings are borrowed from argv. */
struct probe_request {
    const char *method;                /* -X, or NULL: GET, or POST with a body (as curl) */
    const char *fields[PROBE_FIELDS_MAX]; /* -H as given: "Name: value", "Name:", "Name;" */
    unsigned nfields;
    const char *data;                  /* -d or --data-binary as given, NULL: no body */
    bool data_binary;                  /* --data-binary: @FILE as is (-d drops CR and LF) */
    char *body;                        /* owned: the body read (data, or FILE's bytes) */
    size_t body_len;
};

/* Takes -X's METHOD: a token, not CONNECT (Portico refuses it: 501). 0, or -1 with *why. */
int probe_request_set_method(struct probe_request *rq, const char *method, const char **why);

/* Takes one -H: "Name: value", "Name:" (a default field of the probe's not sent, as curl) or
 * "Name;" (an empty value). The name a token; no CR or LF; Content-Length and
 * Transfer-Encoding are the probe's (the body's framing). 0, or -1 with *why. */
int probe_request_add_field(struct probe_request *rq, const char *arg, const char **why);

/* Takes -d (binary false) or --data-binary: one body a probe. 0, or -1 with *why. */
int probe_request_set_data(struct probe_request *rq, const char *data, bool binary,
                           const char **why);

/* Reads the body (DATA, or @FILE's bytes, @- standard input) up to PROBE_DATA_MAX. 0, or -1
 * with a one-line reason written to why (size bytes). */
int probe_request_load(struct probe_request *rq, char *why, size_t size);

/* The method the request goes with. */
const char *probe_request_method(const struct probe_request *rq);

/* Appends the request head to out: the request line for path (path_len bytes, "/" put before
 * one that has none: a query only), Host (authority), User-Agent, Accept (each unless a -H
 * names it), the -H fields in order, Content-Type and Content-Length for a body, Connection:
 * close. 0, or -1 (out of memory). */
int probe_request_head(const struct probe_request *rq, const char *authority, const char *path,
                       size_t path_len, struct evbuffer *out);

/* Frees what probe_request_load read. */
void probe_request_free(struct probe_request *rq);

#endif
