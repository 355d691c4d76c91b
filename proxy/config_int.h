/*
 * config_int.h — the config module's private parts, shared by config.c (the reader, sections,
 * the validation pass) and config_keys.c (the key table, whose rows carry each key's setter and
 * what the setter needs): the parsing state and the key rows. Not a public header: nothing
 * outside those two files includes it; the rest of Portico sees config.h.
 */
#ifndef PORTICO_CONFIG_INT_H
#define PORTICO_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "portico/config.h"

#define CFG_MAX_SECTION_KEYS 64 /* rows of the largest key table */
#define CFG_MAX_ERRORS 100       /* messages of one load; the next one ends it */
#define CFG_READ_MS 10000        /* a pipe's writer has this long to send the whole file */

enum cfg_section {
    CFG_SEC_NONE,     /* before the first header */
    CFG_SEC_PROXY,
    CFG_SEC_UPSTREAM,
    CFG_SEC_ROUTE,
    CFG_SEC_ERRORS,
    CFG_SEC_FAULTS,   /* [faults] */
    CFG_SEC_FAULT,    /* [fault NAME] */
    CFG_SEC_BAD,      /* a header that was refused: its keys are not reported again */
};

/* The line each key of one section was set on (0: not set), indexed like the section's table. */
struct cfg_key_lines {
    int of[CFG_MAX_SECTION_KEYS];
};

/* Parsing state shared by the reader, the handler, the setters and the validation pass. */
struct cfg_loader {
    struct config *cfg;
    const char *name;                      /* file name for messages */
    FILE *errors;                          /* borrowed; NULL: count only */
    int nerrors;
    bool broken;                           /* out of memory or unreadable: the rest is noise */
    int line;                              /* the line read last; 0 in the validation pass */
    /* input: either a FILE or a string */
    FILE *fp;
    unsigned read_ms;                      /* a pipe's writer has this long (cfg_load_within) */
    uint64_t deadline_us;                  /* now_us: the whole file read by then (a pipe) */
    const char *text;
    size_t text_len;
    size_t text_pos;
    /* current section */
    enum cfg_section sec;
    int cur;                               /* index of the current [upstream], [route] or
                                              [fault] */
    struct cfg_key_lines proxy_lines;
    struct cfg_key_lines *upstream_lines;  /* owned, parallel to cfg->upstreams */
    struct cfg_key_lines *route_lines;     /* owned, parallel to cfg->routes */
    struct cfg_key_lines faults_lines;     /* [faults] */
    struct cfg_key_lines *fault_lines;     /* owned, parallel to cfg->fault_rules */
    int upstreams_cap;                     /* allocated entries of the arrays and their lines */
    int routes_cap;
    int fault_rules_cap;
    int proxy_line;                        /* first [proxy], [errors] and [faults]: a second is
                                              refused */
    int errors_line;
    int faults_line;
    int tls_listen_line;                   /* first `listen ... tls`: where no tls_cert is told */
    int tls_certs_seen;                    /* tls_cert and tls_key lines so far: the Nth of each
                                              make pair N (set_tls_half) */
    int tls_keys_seen;
    int h2c_listen_line;                   /* first `listen ... h2c`: where http2 = off is told */
};

/* One key of a section: its name, its setter and what the setter needs. */
struct cfg_key {
    const char *name;
    /* Parses value into the section's struct at base; 0, or -1 after reporting. */
    int (*set)(struct cfg_loader *ld, const struct cfg_key *k, void *base, const char *value);
    size_t offset;                         /* of the field in config/upstream_conf/route_conf */
    uint64_t min, max;                     /* numbers; durations in ms; sizes in bytes */
    const char *const *names;              /* enums and log targets: the names accepted */
    size_t nnames;
    bool repeatable;                       /* a list (listen, origin, early_hints) */
};

/* The row of `name` in the table of sec (proxy, upstream, route, faults or fault), or NULL. */
const struct cfg_key *cfg_key_find(enum cfg_section sec, const char *name);

/* The table of sec (proxy, upstream or route) and its length in *n: for documentation checks. */
const struct cfg_key *cfg_keys(enum cfg_section sec, size_t *n);

/* Where the line of k (a row of sec's table) is kept in lines. */
int *cfg_key_slot(struct cfg_key_lines *lines, enum cfg_section sec, const struct cfg_key *k);

/* Line where `name` was set in a section of kind sec (0: not set). */
int cfg_key_line(const struct cfg_key_lines *lines, enum cfg_section sec, const char *name);

/* cfg_load with a pipe's writer given read_ms to send the whole file (cfg_load: CFG_READ_MS);
 * tests wait less. */
struct config *cfg_load_within(const char *path, FILE *errors, int *nerrors, unsigned read_ms);

/* "proxy", "upstream", "route", "faults", "fault". */
const char *cfg_section_name(enum cfg_section sec);

/* Counts a problem and prints "NAME:LINE: message" in one write, control bytes as \xNN; the
 * problem after CFG_MAX_ERRORS is told as "more than ..." instead and ends the load (broken). */
void cfg_report(struct cfg_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps a warning, "NAME:LINE: warning: message" (escaped as cfg_report escapes), in
 * cfg->warnings: something that works today but will not for long (a certificate that expires
 * soon), or not yet (a resolver without a route); it fails nothing. */
void cfg_warn(struct cfg_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "NAME:LINE: message" (escaped as cfg_report escapes), a copy the caller frees, for a line
 * said later (`portico -t`'s list of certificates); NULL after reporting out of memory. */
char *cfg_line_text(struct cfg_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A duration as the largest unit that writes it whole ("168h", "1500ms"), into buf. */
const char *cfg_duration_text(uint64_t ms, char *buf, size_t size);

/* Reports an allocation failure (once) and stops the load. Returns -1. */
int cfg_out_of_memory(struct cfg_loader *ld);

/* A NUL-terminated copy of s[0..len) / of s, or NULL after reporting. */
char *cfg_copy_span(struct cfg_loader *ld, const char *s, size_t len);
char *cfg_copy(struct cfg_loader *ld, const char *s);

/* An IPv4-mapped IPv6 address ([::ffff:a.b.c.d]). */
bool cfg_is_v4_mapped(const struct sockaddr_storage *sa);

/* Same address and port, an IPv4-mapped IPv6 address being the IPv4 one it maps. */
bool cfg_same_sockaddr(const struct sockaddr_storage *a, socklen_t alen,
                       const struct sockaddr_storage *b, socklen_t blen);

#endif
