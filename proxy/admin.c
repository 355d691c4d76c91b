/*
 * admin.c — admin endpoint responses. See admin.h.
 *
 * Room for the fallback response is reserved in the output before anything else is tried, so
 * that when building the real answer runs out of memory the client still gets a 503 and a
 * close instead of waiting forever for an answer that never comes.
 */
#include "portico/admin.h"
#include "portico/admin_status.h"

#include <event2/buffer.h>
#include <string.h>

#include "portico/h1out.h"
#include "portico/status.h"
#include "portico/util.h"

#define ADMIN_FIELDS "Server: portico\r\nCache-Control: no-store\r\n"
#define TEXT_PLAIN "text/plain; charset=utf-8"

int admin_respond(struct evbuffer *out, const struct h1_request *req, bool *close,
                  const struct generation *gen)
{
    struct evbuffer *body = NULL;
    bool head = req->method_id == METHOD_HEAD;
    bool get = head || req->method_id == METHOD_GET;
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    struct h1out_head h = {
        .fields = ADMIN_FIELDS,
        .content_type = TEXT_PLAIN,
        .connection = *close ? H1OUT_CONN_CLOSE : H1OUT_CONN_DEFAULT,
    };
    int rc = 0;

    if (h1out_fallback_reserve(out) < 0) {
        *close = true; /* not even room for the fallback: closing is the only answer left */
        return -1;
    }
    if (!(body = evbuffer_new()))
        goto fail;
    if (!get) {
        h.status = HTTP_METHOD_NOT_ALLOWED;
        h.fields = ADMIN_FIELDS "Allow: GET, HEAD\r\n"; /* RFC 9110 15.5.6: a 405 carries Allow */
        rc = evbuffer_add_printf(body, "only GET and HEAD\n");
    } else if (span_ieq(req->target, plen, "/metrics")) {
        h.status = HTTP_OK;
        h.content_type = "text/plain; version=0.0.4; charset=utf-8";
        rc = admin_metrics_text(body, gen); /* admin_status.c */
    } else if ((rc = admin_status_render(req->target, plen, gen, body, &h.content_type))) {
        h.status = HTTP_OK; /* /status and the page (admin_status.c) */
        rc = rc < 0 ? -1 : 0;
    } else if (span_ieq(req->target, plen, "/healthz")) {
        h.status = HTTP_OK;
        rc = evbuffer_add_printf(body, "ok\n");
    } else {
        h.status = HTTP_NOT_FOUND;
        rc = evbuffer_add_printf(body, "admin endpoints: /, /status, /metrics, /healthz\n");
    }
    if (rc < 0 ||
        h1out_simple_buf(out, &h, body, head ? H1OUT_PAYLOAD_OMIT : H1OUT_PAYLOAD_SEND) < 0)
        goto fail;
    evbuffer_free(body);
    return h.status;
fail:
    if (body)
        evbuffer_free(body);
    *close = true;
    h1out_fallback(out); /* into the room reserved above: cannot fail */
    return HTTP_SERVICE_UNAVAILABLE;
}
