/*
 * fault_table.h — the fault rules a configuration generation serves with, and their runtime
 * state: the INI's rules and the ones added through the admin API, each with its shared state
 * (fault.h), and the one generator their draws come from. It lives in the generation, beside the
 * immutable configuration, so a reload starts afresh with the INI's rules.
 *
 * Workers read it without a lock: entries are published with a release store of the count and
 * never move or go away before the table (a deleted rule is only marked so), so a pointer a
 * worker holds stays valid while any exchange of the generation runs. Writers (the admin API)
 * take the table's mutex. At most FAULT_TABLE_ADDED rules can be added per generation: memory
 * stays bounded whatever a client of the admin API does.
 */
#ifndef PORTICO_FAULT_TABLE_H
#define PORTICO_FAULT_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "portico/fault.h"

struct config;

#define FAULT_TABLE_ADDED 256 /* rules the admin API may add per generation */

/* Names the metrics count faults under besides the INI's rules (config.c reserves them). */
#define FAULT_LABEL_HEADER "header" /* the Portico-Fault request header */
#define FAULT_LABEL_ADMIN "admin"   /* rules added through the admin API */

struct fault_entry {
    struct fault_rule rule;            /* immutable once published */
    struct fault_state state;
    int label;                         /* its name's index among the metrics' fault labels */
    bool added;                        /* added through the admin API (gone at a reload) */
};

struct fault_table;

/* The table of cfg's rules, their state started at now_ms; the generator seeded with the
 * configured seed, or a random one. NULL when out of memory. */
struct fault_table *fault_table_new(const struct config *cfg, uint64_t now_ms);

/* Frees it (NULL is fine). No worker may use it any more. */
void fault_table_free(struct fault_table *t);

/* Entries published so far (deleted ones included), and entry i of them. */
int fault_table_count(const struct fault_table *t);
struct fault_entry *fault_table_entry(const struct fault_table *t, int i);

/* The entry named name that is not deleted, or NULL. */
struct fault_entry *fault_table_find(const struct fault_table *t, const char *name);

/* The generator every decision of the generation draws from. */
struct fault_rng *fault_table_rng(struct fault_table *t);

/* The metrics' fault labels: the INI's rule names, then FAULT_LABEL_HEADER and
 * FAULT_LABEL_ADMIN. Their number, and the index of the header's label. */
int fault_table_labels(const struct config *cfg, const char **names, int max);
int fault_table_header_label(const struct config *cfg);

/* Outcomes of the writers. */
#define FAULT_TABLE_RC_LIST(X)                                                                     \
    X(FAULT_TABLE_OK, "ok")                                                                        \
    X(FAULT_TABLE_NOT_FOUND, "no such rule")                                                       \
    X(FAULT_TABLE_EXISTS, "a rule of that name exists")                                            \
    X(FAULT_TABLE_FULL, "too many rules added since the last reload")                             \
    X(FAULT_TABLE_NO_MEMORY, "out of memory")

enum fault_table_rc {
#define X(id, text) id,
    FAULT_TABLE_RC_LIST(X)
#undef X
};

/* What an outcome means, for messages. */
const char *fault_table_rc_text(enum fault_table_rc rc);

/* Adds a checked rule (its name unused by a live rule), its state started at now_ms. */
enum fault_table_rc fault_table_add(struct fault_table *t, const struct fault_rule *r,
                                    uint64_t now_ms);

/* Deletes the live rule named name. */
enum fault_table_rc fault_table_delete(struct fault_table *t, const char *name);

/* Changes the live rule named name at now_ms (fault_state_change). */
enum fault_table_rc fault_table_change(struct fault_table *t, const char *name, uint64_t now_ms,
                                       const struct fault_change *c);

#endif
