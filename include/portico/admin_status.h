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

/* Renders the answer to GET path[0..len) when it is the status page ("/") into body and sets
 * *content_type and *fields (header lines the answer adds, "" for none). Returns 1 when served,
 * 0 when the path is not ours (body untouched), -1 when out of memory (body holds a partial
 * answer: the caller answers 503). /status is a page written in slices (admin_page_status). */
int admin_status_render(const char *path, size_t len, struct evbuffer *body,
                        const char **content_type, const char **fields);

/*
 * A large answer written a slice at a time: /metrics (the exposition) or /status (JSON). At a
 * thousand routes either is megabytes, whose writing in one go held worker 0's loop, and every
 * request it serves, for a quarter of a second, and took the whole page in memory. A page takes
 * the counts of every shard when it is made (metrics_cursor_new: copies, so that a worker retired
 * or a reload meanwhile frees nothing it reads) and the origins' health; the configuration it
 * reads (/status's upstreams) is the generation's, which lives as long as the loop serving the
 * admin connection. NULL when out of memory.
 */
struct admin_page;
struct admin_page *admin_page_metrics(const struct generation *gen);
struct admin_page *admin_page_status(const struct generation *gen, uint64_t now_ms);

/* Appends the next slice of the page to out: at least one row, stopping at the first row past
 * budget bytes appended. 1: more to come, 0: the page is complete, -1: out of memory (the
 * answer is cut short). */
int admin_page_next(struct admin_page *p, struct evbuffer *out, size_t budget);

/* Frees a page, complete or not. NULL is fine. */
void admin_page_free(struct admin_page *p);

/* Converts a Prometheus text exposition (as metrics_render writes it, or a whole page of it) into a JSON array of
 * families: [{"name", "type", "help", "samples": [{"name", "labels": {...}, "value"}]}].
 * Lines it does not understand are left out. 0, or -1 out of memory. */
int admin_metrics_json(struct evbuffer *out, const char *text, size_t len);

#endif
