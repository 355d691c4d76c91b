/*
 * header_rules.h — a route's header rules (request_header, request_header_remove,
 * response_header, response_header_remove): parsed and judged once at load, matched against
 * field names and expanded on each request of that route. Pure: strings in, no config.
 */
#ifndef PORTICO_HEADER_RULES_H
#define PORTICO_HEADER_RULES_H

#include <stdbool.h>
#include <stddef.h>

/* Which head a rule acts on. */
enum hrule_dir {
    HRULE_REQUEST,  /* what the origin receives */
    HRULE_RESPONSE, /* what the client receives of the origin's response */
};

/* What a rule does to the fields of its name. */
enum hrule_op {
    HRULE_SET,    /* the fields of that name go, one field with the rule's value is added */
    HRULE_REMOVE, /* the fields of that name go */
};

/* Rules per route and direction. */
#define HRULE_MAX 32

/* The variables a request_header value (and a route's return) may hold ($name or ${name}; $$ is
 * a '$'). */
#define HRULE_VAR_LIST(X)                                                                          \
    X(HRULE_VAR_DOLLAR, "$")                                                                       \
    X(HRULE_VAR_CLIENT_ADDR, "client_addr")                                                        \
    X(HRULE_VAR_REQUEST_ID, "request_id")                                                          \
    X(HRULE_VAR_SCHEME, "scheme")                                                                  \
    X(HRULE_VAR_HOST, "host")           /* nginx's: no port, lowercase */                          \
    X(HRULE_VAR_HTTP_HOST, "http_host") /* as the client wrote it, port included */              \
    X(HRULE_VAR_REQUEST_URI, "request_uri")

enum hrule_var {
#define X(id, name) id,
    HRULE_VAR_LIST(X)
#undef X
    HRULE_VAR_NONE, /* not a variable: refused at load */
};

struct hrule {
    enum hrule_op op;
    char *name;                  /* owned, as written */
    size_t name_len;
    char *value;                 /* owned, SET only (else NULL): as written, unexpanded */
    size_t value_len;
    bool vars;                   /* the value holds a '$': expand it (request only) */
    int line;                    /* where it was set, for messages */
};

/* The rules of one route and direction, in the file's order; at most one per name. */
struct hrules {
    int n;
    struct hrule rule[HRULE_MAX];
    int nset;                    /* of them, SET rules: fields a head gains */
    char *host;                  /* request only: Host to send (request_header = Host: ...),
                                    owned, or NULL */
    int host_line;
};

/* Parses one rule's text ("Name: value" for SET, "Name" for REMOVE) into r, the strings
 * copied; 0, or -1 with a one-line reason in why, empty when out of memory (the rule then owns
 * nothing). A name must be a
 * token that Portico does not own (framing, hop-by-hop, the fields it writes itself); a value
 * holds no control byte but HTAB, and in a request only known variables. */
int hrule_parse(enum hrule_dir dir, enum hrule_op op, const char *text, struct hrule *r,
                char *why, size_t size);

/* Adds r (from hrule_parse) to *rules, allocated on the first; 0, or -1 with why (another rule
 * of the name, too many; empty: no memory): r is then freed. A request's Host rule goes to host. */
int hrules_add(struct hrules **rules, struct hrule *r, char *why, size_t size);

/* Frees rules and everything they own. NULL is fine. */
void hrules_free(struct hrules *rules);

/* Whether a field name is one a rule names: any case, and '_' taken for '-', so that a client's
 * "X_User" cannot stand beside a set X-User for CGI-style servers (HTTP_X_USER). */
bool hrules_names(const struct hrules *rules, const char *name, size_t len);

/* hrules_names for a name of which only name[0..len) is known unless whole (a trailer's, held
 * in part): a rule whose name starts so names it, as far as can be told. */
bool hrules_names_start(const struct hrules *rules, const char *name, size_t len, bool whole);

/* The variable at v[0] == '$' (n bytes left), its text's length in *len (HRULE_VAR_NONE with
 * *len 1 when none is named there). */
enum hrule_var hrule_var_at(const char *v, size_t n, size_t *len);

/* What a value's variables stand for, in one request. */
struct hrule_values {
    const char *client_addr;     /* $client_addr: the client real_ip or the PROXY header named,
                                    else the peer, NUL-terminated */
    const char *request_id;      /* $request_id, NUL-terminated */
    bool tls;                    /* $scheme: https, else http */
    const char *host;            /* $http_host: the host the client addressed, as it wrote it
                                    (port included), or NULL (empty); $host is its name */
    size_t host_len;
    const char *request_uri;     /* $request_uri: the target's path and query as the client sent
                                    them (absolute-form: after the authority), or NULL */
    size_t request_uri_len;
};

/* Where an expansion goes: s[0..n), a variable's value (the client's words) when variable. */
typedef void hrule_put_fn(void *ctx, const char *s, size_t n, bool variable);

/* Writes the value v (n bytes, judged by hrule_check_value) through put, its variables
 * expanded from vals: the one expander of request_header rules and of return (route.h). */
void hrule_expand(const char *v, size_t n, const struct hrule_values *vals, hrule_put_fn *put,
                  void *ctx);

/* Judges a value's bytes: field-vchar, SP and HTAB only (RFC 9110 5.5), and with expand only
 * known variables ('$' is literal without); *vars says whether it holds one. 0, or -1 with a
 * one-line reason in why. */
int hrule_check_value(const char *v, size_t n, bool expand, bool *vars, char *why, size_t size);

#endif
