/*
 * scrape.c — Prometheus text from the admin endpoint. See scrape.h.
 */
#include "scrape.h"

#include "raw_client.h"
#include "testutil.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

char *scrape_metrics(uint16_t admin_port, int timeout_ms)
{
    struct raw_conn *c = raw_connect(admin_port, timeout_ms);
    if (!c)
        return NULL;
    struct raw_response r;
    char *body = NULL;
    if (raw_send_str(c, "GET /metrics HTTP/1.1\r\n"
                        "Host: 127.0.0.1\r\nConnection: close\r\n\r\n") == 0 &&
        raw_read_response(c, &r, timeout_ms) == 0) {
        if (r.status == 200)
            body = strdup(r.body);
        raw_response_free(&r);
    }
    raw_close(c);
    return body;
}

double scrape_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

double scrape_metric(uint16_t admin_port, const char *series, int timeout_ms)
{
    char *text = scrape_metrics(admin_port, timeout_ms);
    double v = text ? scrape_value(text, series) : -1;
    free(text);
    return v;
}

double scrape_wait(uint16_t admin_port, const char *series, double want, int timeout_ms)
{
    int64_t deadline = tu_now_ms() + timeout_ms;
    double v = scrape_metric(admin_port, series, timeout_ms);
    while (v != want && tu_ms_left(deadline) > 0) {
        poll(NULL, 0, 5);
        v = scrape_metric(admin_port, series, timeout_ms);
    }
    return v;
}
