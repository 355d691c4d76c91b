/*
 * admin_faults.h — the fault rules' runtime API on the admin listener (issue 8):
 *
 *   GET    /faults          every live rule as JSON: its keys, state, hit counts
 *   POST   /faults          adds a rule given in the INI's key=value form (name= required)
 *   GET    /faults/NAME     one rule
 *   POST   /faults/NAME     changes it at once: enabled=0|1, probability=, for= (auto-revert)
 *   DELETE /faults/NAME     removes it
 *
 * Bodies are key=value lines, or key=value&... when sent as application/x-www-form-urlencoded
 * (curl -d). Changes last until the next reload, which brings back the INI's rules.
 */
#ifndef PORTICO_ADMIN_FAULTS_H
#define PORTICO_ADMIN_FAULTS_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/http1.h"

struct evbuffer;
struct generation;

#define ADMIN_BODY_MAX (16 * 1024) /* request bodies the admin listener reads */

/* One admin request as the endpoints see it. */
struct admin_call {
    const struct h1_request *req;
    const char *path;                  /* the target without its query */
    size_t path_len;
    const char *body;                  /* the request body (POST), may be NULL */
    size_t body_len;
    const struct generation *gen;      /* whose rules (the table is changed through it) */
};

/* What an endpoint answers. */
struct admin_reply {
    int status;
    const char *content_type;
    const char *fields;                /* extra header lines ("Allow: ...\r\n"), or NULL */
    struct evbuffer *body;             /* borrowed: the endpoint appends the content here */
};

/* An endpoint's one-line text answer, "STATUS PHRASE: message" (the admin APIs' errors and
 * acknowledgements). 0, or -1 when out of memory. */
int admin_reply_text(struct admin_reply *reply, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether path (len bytes, no query) is prefix or under it ("/faults", "/faults/NAME"). */
bool admin_path_under(const char *path, size_t len, const char *prefix);

/* Whether the path is the fault API's: /faults or /faults/NAME. */
bool admin_faults_path(const char *path, size_t len);

/* Whether the request carries a body the fault API reads (POST /faults...). */
bool admin_faults_takes_body(const struct h1_request *req);

/* Answers a request to the fault API into *reply. 0, or -1 when out of memory. */
int admin_faults_respond(const struct admin_call *call, struct admin_reply *reply);

#endif
