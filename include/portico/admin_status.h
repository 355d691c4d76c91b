/*
 * admin_status.h — the admin listener's /status (JSON: the /metrics content, each upstream's
 * origins with health, pool sizes and recent failures, and the last minutes) and / (a
 * self-contained HTML page that refreshes itself from /status). Served by worker 0 like the
 * rest of admin.c; the figures of the other workers come from their metrics shards and their
 * recent-minutes shards (recent.h), never from their loops.
 */
#ifndef PORTICO_ADMIN_STATUS_H
#define PORTICO_ADMIN_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct generation;

/* Renders the answer to GET path[0..len) when it is one of ours ("/status" or "/") into body
 * and sets *content_type and *fields (header lines the answer adds, "" for none). Returns 1 when
 * served, 0 when the path is not ours (body untouched), -1 when out of memory (body holds a
 * partial answer: the caller answers 503). */
int admin_status_render(const char *path, size_t len, const struct generation *gen,
                        struct evbuffer *body, const char **content_type, const char **fields);

/* Writes the /metrics exposition for gen: the shards' counts and each origin's health now.
 * 0, or -1 out of memory (a partial exposition written). */
int admin_metrics_text(struct evbuffer *out, const struct generation *gen);

/* Writes the /status document for gen, at wall-clock now_ms. 0, or -1 out of memory. */
int admin_status_json(struct evbuffer *out, const struct generation *gen, uint64_t now_ms);

/* Converts a Prometheus text exposition (as metrics_render writes it) into a JSON array of
 * families: [{"name", "type", "help", "samples": [{"name", "labels": {...}, "value"}]}].
 * Lines it does not understand are left out. 0, or -1 out of memory. */
int admin_metrics_json(struct evbuffer *out, const char *text, size_t len);

#endif
