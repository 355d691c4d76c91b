/*
 * trailers.h — which trailer fields of a chunked body cross Portico, in either direction.
 *
 * A recipient that removes the chunked coding may keep or discard each trailer field (RFC 9112
 * 7.1.2), and fields whose evaluation precedes the content (framing, routing, authentication,
 * request modifiers, response controls, content format: RFC 9110 6.5.1) have no business in a
 * trailer section. An origin that merges trailers into the header section (many frameworks do)
 * would otherwise take a client's trailer `Host`, `X-Forwarded-For` or `Portico-Fault` as if
 * Portico had vouched for it. The filter works field line by field line on trailer runs as the
 * chunked decoder hands them over: only the start of a name is held, never a whole section.
 */
#ifndef PORTICO_TRAILERS_H
#define PORTICO_TRAILERS_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/header_rules.h"

struct evbuffer;

/* Bytes of a field name held until the field can be judged: more than every refused name, so a
 * name this long is refused only for its prefix ("proxy-"). */
#define TRAILER_NAME_HOLD 32

struct trailer_filter {
    int state;                     /* private: where in a field line the next byte falls */
    size_t held;                   /* private: bytes of the name in name[] */
    char name[TRAILER_NAME_HOLD];  /* private: the start of the name being read */
    const struct hrules *rules;    /* borrowed: the route's header rules of this direction,
                                      whose names are dropped too (trailer_filter_rules) */
};

/* Prepares a filter for one trailer section (a zeroed filter is prepared too). */
void trailer_filter_init(struct trailer_filter *t);

/* Drops the fields rules name as well (a route's request_header or response_header rules,
 * NULL: none): a trailer X-User would reach an application that merges trailers as if it
 * were the head's, beside or instead of the rule's. Called after trailer_filter_init, before
 * the first trailer byte is filtered. */
void trailer_filter_rules(struct trailer_filter *t, const struct hrules *rules);

/* Appends to out the field lines of p[0..n) that may cross and drops the others. p must be
 * trailer bytes as chunked_parse returns them (CHUNKED_TRAILER: valid field lines, no final
 * CRLF); a run may begin or end anywhere in a line, the next run goes on from there. -1 when an
 * addition to out failed (out of memory): out then holds part of a line, the section is lost. */
int trailer_filter_run(struct trailer_filter *t, const char *p, size_t n, struct evbuffer *out);

/* Whether a trailer field named name[0..len) may be forwarded (case-insensitive). A name of
 * TRAILER_NAME_HOLD bytes or more may be given as its first TRAILER_NAME_HOLD. */
bool trailer_field_allowed(const char *name, size_t len);

#endif
