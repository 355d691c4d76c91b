/*
 * admin.c — admin endpoint responses. See admin.h.
 */
#include "portico/admin.h"

#include <event2/buffer.h>
#include <string.h>

#include "portico/metrics.h"
#include "portico/status.h"
#include "portico/util.h"

static int respond(struct evbuffer *out, int status, const char *type, struct evbuffer *body,
                   bool head, bool close)
{
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nServer: portico\r\nContent-Type: %s\r\n"
                        "Content-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
                        status, status_phrase(status), type, evbuffer_get_length(body),
                        close ? "Connection: close\r\n" : "");
    if (!head)
        evbuffer_add_buffer(out, body);
    return status;
}

int admin_respond(struct evbuffer *out, const struct h1_request *req, bool close)
{
    struct evbuffer *body = evbuffer_new();
    if (!body)
        return 500;
    bool head = span_ieq(req->method, req->method_len, "HEAD");
    bool get = head || span_ieq(req->method, req->method_len, "GET");
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    int status;
    if (!get) {
        evbuffer_add_printf(body, "only GET and HEAD\n");
        status = respond(out, 405, "text/plain; charset=utf-8", body, head, close);
    } else if (span_ieq(req->target, plen, "/metrics")) {
        metrics_render(body, NULL);
        status = respond(out, 200, "text/plain; version=0.0.4; charset=utf-8", body, head, close);
    } else if (span_ieq(req->target, plen, "/healthz")) {
        evbuffer_add_printf(body, "ok\n");
        status = respond(out, 200, "text/plain; charset=utf-8", body, head, close);
    } else {
        evbuffer_add_printf(body, "admin endpoints: /metrics, /healthz\n");
        status = respond(out, 404, "text/plain; charset=utf-8", body, head, close);
    }
    evbuffer_free(body);
    return status;
}
