/*
 * admin.h — the admin endpoint (`admin_listen`): Prometheus metrics, a health check, /status and
 * the status page (admin_status.h), and the fault rules' API (admin_faults.h), served by worker 0
 * through the ordinary client connection code. With `admin_token` set, every request must carry
 * it as a Bearer token (401 otherwise).
 */
#ifndef PORTICO_ADMIN_H
#define PORTICO_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "portico/http1.h"

struct config;
struct evbuffer;
struct generation;

/* Whether the admin listener answers a request for host[len] (its Host field, or the authority
 * of an absolute-form target; NULL: an HTTP/1.0 request without Host). Without admin_token, only
 * an IP address, localhost, *.localhost or a name of admin_hosts ("*": any): a web page whose
 * name is rebound to 127.0.0.1 (DNS rebinding) sends its own name, and must not read /status.
 * With the token, any. */
bool admin_host_allowed(const struct config *cfg, const char *host, size_t len);

/* Whether the request carries `Authorization: Bearer <admin_token>`, or no token is
 * configured. */
bool admin_authorized(const struct h1_request *req, const struct config *cfg);

/* Appends the complete response to an admin request about the generation gen serves: GET
 * /metrics, GET /healthz, GET /status, GET /, /faults..., else 404, or 405 with Allow; 401
 * without the admin token; with `Connection: close` when *close is set. body[body_len]: the
 * request's body (a POST to /faults; NULL: none). Returns the status sent. When
 * memory runs out it sends a 503 and sets *close; when there is not even room for that, it
 * appends nothing, sets *close and returns -1. Whenever *close is set on return the caller
 * closes the connection after flushing out. */
int admin_respond(struct evbuffer *out, const struct h1_request *req, const char *body,
                  size_t body_len, bool *close, const struct generation *gen);

/* A page (/metrics, /status) too large for one turn of the loop, whose head and first slice
 * went out: the rest, written a slice at a time. */
struct admin_stream;

/* admin_respond, for a caller that can write a large page over several turns of its loop: when
 * *more is set on return (never with *close and 503), the head and the first slice were
 * appended, and the caller calls admin_stream_write each time out has gone, until it returns
 * 0, then admin_stream_free; *close then still says whether the connection closes after it
 * (always for an HTTP/1.0 client, whose answer ends with the close). admin_respond is this with
 * more NULL: the whole page at once. */
int admin_respond_stream(struct evbuffer *out, const struct h1_request *req, const char *body,
                         size_t body_len, bool *close, const struct generation *gen,
                         struct admin_stream **more);

/* Appends the next slice of s, framed (a chunk, or bytes until the close), to out; after the
 * last, the end of the content. 1: more to come, 0: complete, -1: out of memory (the answer is
 * cut short: close the connection). */
int admin_stream_write(struct admin_stream *s, struct evbuffer *out);

/* Frees s, written out or not. NULL is fine. */
void admin_stream_free(struct admin_stream *s);

/* The fields of every admin answer, its refusals included (a Date, RFC 9110 6.6.1; never cached;
 * nosniff), then extra (NULL: none), into buf as header lines. Their length, or -1 when buf is
 * too small. */
int admin_fields(char *buf, size_t size, const char *extra);

#endif
