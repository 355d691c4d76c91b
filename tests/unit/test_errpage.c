/*
 * test_errpage.c — responses Portico writes itself: every response is parsed back (status line,
 * headers, body) and checked for exact framing (Content-Length, HEAD), header set and order,
 * negotiation, the JSON shape, escaping of hostile reasons in every format, and error_page_dir.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "alloc_fail.h"
#include "portico/errpage.h"
#include "portico/failure.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_HEADERS 32

static const char browser_accept[] =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
static const char nasty_reason[] = "bad \"quote\" back\\slash <script>alert(1)</script> & 'x'"
                                   "\r\nX-Injected: 1\x01\x7f end";

/* ---- a parsed response ---- */

struct header {
    char *name;
    char *value;
};

struct resp {
    char *raw;       /* the whole response, NUL-terminated (owned) */
    size_t raw_len;
    long ret;        /* errpage_write's return */
    char *status;    /* status line without CRLF */
    struct header h[MAX_HEADERS];
    size_t nh;
    char *body;      /* points into raw */
    size_t body_len;
};

/* Runs errpage_write and splits the result; fails the test on any framing error: CR or LF
 * anywhere but at line ends, a header line without ": ", a missing blank line. */
static void run(const struct errpage *e, struct resp *r)
{
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    memset(r, 0, sizeof *r);
    r->ret = errpage_write(out, e);
    assert_true(r->ret >= 0);
    r->raw_len = evbuffer_get_length(out);
    r->raw = malloc(r->raw_len + 1);
    assert_non_null(r->raw);
    assert_int_equal(evbuffer_remove(out, r->raw, r->raw_len), (int)r->raw_len);
    r->raw[r->raw_len] = '\0';
    evbuffer_free(out);

    char *end = strstr(r->raw, "\r\n\r\n");
    assert_non_null(end);
    r->body = end + 4;
    r->body_len = r->raw_len - (size_t)(r->body - r->raw);
    end[2] = '\0'; /* head is now lines, each ending in CRLF */

    char *line = r->raw;
    for (int first = 1; *line != '\0'; first = 0) {
        char *crlf = strstr(line, "\r\n");
        assert_non_null(crlf);
        *crlf = '\0';
        assert_null(strchr(line, '\r'));
        assert_null(strchr(line, '\n'));
        for (char *c = line; *c; c++) /* header bytes: printable ASCII only */
            assert_true(*c >= 0x20 && *c <= 0x7e);
        if (first) {
            r->status = line;
        } else {
            char *colon = strstr(line, ": ");
            assert_non_null(colon);
            assert_true(r->nh < MAX_HEADERS);
            *colon = '\0';
            r->h[r->nh++] = (struct header){line, colon + 2};
        }
        line = crlf + 2;
    }
}

static void resp_free(struct resp *r)
{
    free(r->raw);
    r->raw = NULL;
}

static const char *hdr(const struct resp *r, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < r->nh; i++) {
        if (strcasecmp(r->h[i].name, name) == 0) {
            assert_null(found); /* never twice */
            found = r->h[i].value;
        }
    }
    return found;
}

/* Content-Length parses and equals the body that was (or, for HEAD, would have been) sent. */
static void check_length(const struct resp *r, size_t expect)
{
    const char *cl = hdr(r, "Content-Length");
    assert_non_null(cl);
    char *end;
    unsigned long long v = strtoull(cl, &end, 10);
    assert_true(end != cl && *end == '\0');
    assert_int_equal(v, expect);
}

/* The request's fields for an errpage: one Accept line, or none for NULL. errpages borrow them,
 * so each call takes the next slot of a ring (no test holds more than a few at once). */
static const struct h1_field *accept_line(const char *accept)
{
    static struct h1_field ring[8];
    static size_t next;
    struct h1_field *f = &ring[next++ % ARRAY_LEN(ring)];

    if (accept == NULL)
        return NULL;
    *f = (struct h1_field){"Accept", 6, accept, strlen(accept), H1_F_ACCEPT};
    return f;
}

/* Sets e's Accept to one line. */
static void set_accept(struct errpage *e, const char *accept)
{
    e->fields = accept_line(accept);
    e->nfields = accept != NULL;
}

/* A typical upstream failure: connect to the origin timed out after 1000 ms. */
static struct errpage connect_timeout(int status, const char *accept)
{
    return (struct errpage){
        .status = status,
        .failure = FAIL_CONNECT_TIMEOUT,
        .phase = PHASE_CONNECT,
        .reason = "connect to 127.0.0.1:3000 exceeded 1000 ms",
        .origin = "127.0.0.1:3000",
        .upstream = "app",
        .limit_ms = 1000,
        .elapsed_ms = 1000.44,
        .request_id = "req-7f3a",
        .fields = accept_line(accept),
        .nfields = accept != NULL,
    };
}

static struct errpage client_error(int status, const char *reason, const char *accept)
{
    return (struct errpage){
        .status = status,
        .failure = FAIL_NONE,
        .phase = PHASE_CLIENT_HEADER,
        .reason = reason,
        .request_id = "req-c1",
        .fields = accept_line(accept),
        .nfields = accept != NULL,
    };
}

/* ---- a minimal strict JSON reader: one flat object of strings, numbers and null ---- */

enum jtype { J_STRING, J_NUMBER, J_NULL };

struct jfield {
    char key[32];
    enum jtype type;
    char str[512]; /* decoded string, or the number's text */
};

static const char *jws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Decodes a JSON string at p (at the opening quote) into out; \uXXXX is kept only below 0x80
 * and as '?' otherwise. Returns the position after the closing quote, NULL when malformed. */
static const char *jstring(const char *p, char *out, size_t outsz)
{
    size_t n = 0;
    if (*p++ != '"')
        return NULL;
    for (;;) {
        unsigned char c = (unsigned char)*p++;
        char d;
        if (c == '"')
            break;
        if (c < 0x20) /* raw control characters are not allowed in JSON strings */
            return NULL;
        if (c == '\\') {
            char esc = *p++;
            switch (esc) {
            case '"': d = '"'; break;
            case '\\': d = '\\'; break;
            case '/': d = '/'; break;
            case 'b': d = '\b'; break;
            case 'f': d = '\f'; break;
            case 'n': d = '\n'; break;
            case 'r': d = '\r'; break;
            case 't': d = '\t'; break;
            case 'u': {
                char hex[5] = {0};
                for (int i = 0; i < 4; i++) {
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
                        return NULL;
                    hex[i] = p[i];
                }
                p += 4;
                long v = strtol(hex, NULL, 16);
                d = v < 0x80 ? (char)v : '?';
                break;
            }
            default:
                return NULL;
            }
        } else {
            d = (char)c;
        }
        if (n + 1 >= outsz)
            return NULL;
        out[n++] = d;
    }
    out[n] = '\0';
    return p;
}

/* Parses body as one JSON object followed by a newline. Returns the number of fields, -1 when
 * malformed or a key repeats. */
static int json_parse(const char *body, struct jfield *f, int max)
{
    int n = 0;
    const char *p = jws(body);
    if (*p++ != '{')
        return -1;
    p = jws(p);
    if (*p == '}')
        return 0;
    for (;;) {
        if (n == max)
            return -1;
        p = jstring(jws(p), f[n].key, sizeof f[n].key);
        if (p == NULL)
            return -1;
        for (int i = 0; i < n; i++)
            if (strcmp(f[i].key, f[n].key) == 0)
                return -1;
        p = jws(p);
        if (*p++ != ':')
            return -1;
        p = jws(p);
        if (*p == '"') {
            f[n].type = J_STRING;
            p = jstring(p, f[n].str, sizeof f[n].str);
            if (p == NULL)
                return -1;
        } else if (strncmp(p, "null", 4) == 0) {
            f[n].type = J_NULL;
            f[n].str[0] = '\0';
            p += 4;
        } else {
            /* -?int(.digits)? */
            const char *s = p;
            if (*p == '-')
                p++;
            if (*p < '0' || *p > '9')
                return -1;
            if (*p == '0' && p[1] >= '0' && p[1] <= '9')
                return -1;
            while (*p >= '0' && *p <= '9')
                p++;
            if (*p == '.') {
                p++;
                if (*p < '0' || *p > '9')
                    return -1;
                while (*p >= '0' && *p <= '9')
                    p++;
            }
            if ((size_t)(p - s) >= sizeof f[n].str)
                return -1;
            f[n].type = J_NUMBER;
            memcpy(f[n].str, s, (size_t)(p - s));
            f[n].str[p - s] = '\0';
        }
        n++;
        p = jws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}')
            return -1;
        return *jws(p) == '\0' ? n : -1;
    }
}

static const struct jfield *jget(const struct jfield *f, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].key, key) == 0)
            return &f[i];
    return NULL;
}

/* ---- status lines ---- */

struct status_row {
    int status;
    enum failure_type failure;
    const char *line;
};

static const struct status_row status_rows[] = {
    {502, FAIL_CONNECT_REFUSED, "HTTP/1.1 502 Bad Gateway"},           /* standard profile */
    {504, FAIL_CONNECT_TIMEOUT, "HTTP/1.1 504 Gateway Timeout"},
    {522, FAIL_CONNECT_TIMEOUT, "HTTP/1.1 522 Connection Timed Out"},  /* cloudflare profile */
    {598, FAIL_READ_TIMEOUT, "HTTP/1.1 598 Network Read Timeout Error"}, /* proxy profile */
    {599, FAIL_CONNECT_TIMEOUT, "HTTP/1.1 599 Network Connect Timeout Error"},
    {400, FAIL_NONE, "HTTP/1.1 400 Bad Request"},                      /* client errors */
    {431, FAIL_NONE, "HTTP/1.1 431 Request Header Fields Too Large"},
    {408, FAIL_NONE, "HTTP/1.1 408 Request Timeout"},
    {0, FAIL_CONNECT_REFUSED, "HTTP/1.1 502 Bad Gateway"},    /* nonsense status: still 3 digits */
    {1000, FAIL_NONE, "HTTP/1.1 500 Internal Server Error"},
};

static void test_status_line(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(status_rows); i++) {
        const struct status_row *row = &status_rows[i];
        struct errpage e = connect_timeout(row->status, NULL);
        e.failure = row->failure;
        struct resp r;
        run(&e, &r);
        assert_string_equal(r.status, row->line);
        resp_free(&r);
    }
}

/* ---- header set and order ---- */

struct header_row {
    const char *why;
    struct errpage e;
    const char *names[14];    /* exact header names, in order */
    const char *proxy_status; /* expected Proxy-Status, or NULL when absent */
    const char *connection;   /* expected Connection, or NULL when absent */
};

static const struct header_row header_rows[] = {
    {"client error: no diagnostic headers, no Connection on 1.1 keep-alive",
     {.status = 400, .failure = FAIL_NONE, .reason = "bad request line"},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "Content-Length"},
     NULL, NULL},
    {"client error closing the connection, with request id",
     {.status = 431, .failure = FAIL_NONE, .request_id = "r1", .close = true},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "X-Request-Id", "Content-Length",
      "Connection"},
     NULL, "close"},
    {"HTTP/1.0 client kept alive must be told so",
     {.status = 408, .failure = FAIL_NONE, .http10 = true},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "Content-Length", "Connection"},
     NULL, "keep-alive"},
    {"HTTP/1.0 and close: close wins",
     {.status = 408, .failure = FAIL_NONE, .http10 = true, .close = true},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "Content-Length", "Connection"},
     NULL, "close"},
    {"upstream failure: every diagnostic header, next-hop after connect",
     {.status = 504, .failure = FAIL_CONNECT_TIMEOUT, .phase = PHASE_CONNECT,
      .reason = "connect exceeded 1000 ms", .origin = "127.0.0.1:3000", .request_id = "r2",
      .server_timing = "connect;dur=1000.2", .limit_ms = 1000},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "X-Request-Id", "Portico-Error",
      "Proxy-Status", "Server-Timing", "Content-Length"},
     "portico; error=connection_timeout; details=\"connect exceeded 1000 ms\"; "
     "next-hop=\"127.0.0.1:3000\"",
     NULL},
    {"route failure: no origin was chosen, so no next-hop even if one is passed",
     {.status = 503, .failure = FAIL_NO_HEALTHY_ORIGIN, .phase = PHASE_ROUTE,
      .reason = "all 3 origins down", .origin = "127.0.0.21:80", .close = true},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "Portico-Error", "Proxy-Status",
      "Content-Length", "Connection"},
     "portico; error=destination_unavailable; details=\"all 3 origins down\"", "close"},
    {"failure without reason nor origin: bare error type; empty strings count as absent",
     {.status = 502, .failure = FAIL_EMPTY_RESPONSE, .phase = PHASE_FIRST_BYTE, .origin = "",
      .request_id = "", .server_timing = ""},
     {"Date", "Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "Portico-Error", "Proxy-Status",
      "Content-Length"},
     "portico; error=connection_terminated", NULL},
};

/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". */
static void check_imf_fixdate(const char *d)
{
    static const char days[] = "Mon Tue Wed Thu Fri Sat Sun";
    static const char months[] = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec";
    static const char shape[] = "Www, 00 Mmm 0000 00:00:00 GMT"; /* 0: a digit */
    char day[4] = {0}, mon[4] = {0};

    assert_int_equal(strlen(d), strlen(shape));
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == '0')
            assert_true(d[i] >= '0' && d[i] <= '9');
        else if (i >= 25 || strchr(", :", shape[i]) != NULL)
            assert_int_equal(d[i], shape[i]);
    }
    memcpy(day, d, 3);
    memcpy(mon, d + 8, 3);
    assert_non_null(strstr(days, day));
    assert_non_null(strstr(months, mon));
    assert_true(d[17] <= '2' && d[20] <= '5' && d[23] <= '6');
}

static void test_headers(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(header_rows); i++) {
        const struct header_row *row = &header_rows[i];
        struct resp r;
        size_t n = 0;
        print_message("  %s\n", row->why);
        run(&row->e, &r);
        while (n < ARRAY_LEN(row->names) && row->names[n] != NULL)
            n++;
        assert_int_equal(r.nh, n);
        for (size_t k = 0; k < n; k++)
            assert_string_equal(r.h[k].name, row->names[k]);
        check_imf_fixdate(hdr(&r, "Date"));
        assert_string_equal(hdr(&r, "Server"), "portico");
        assert_string_equal(hdr(&r, "Cache-Control"), "no-store");
        assert_string_equal(hdr(&r, "X-Content-Type-Options"), "nosniff");
        check_length(&r, r.body_len);
        assert_int_equal(r.ret, (long)r.body_len);
        if (row->e.request_id != NULL && row->e.request_id[0] != '\0')
            assert_string_equal(hdr(&r, "X-Request-Id"), row->e.request_id);
        if (row->e.failure != FAIL_NONE)
            assert_string_equal(hdr(&r, "Portico-Error"), failure_name(row->e.failure));
        if (row->proxy_status != NULL)
            assert_string_equal(hdr(&r, "Proxy-Status"), row->proxy_status);
        if (row->e.server_timing != NULL && row->e.server_timing[0] != '\0')
            assert_string_equal(hdr(&r, "Server-Timing"), row->e.server_timing);
        if (row->connection != NULL)
            assert_string_equal(hdr(&r, "Connection"), row->connection);
        resp_free(&r);
    }
}

/* ---- Content-Length and HEAD, in every body format ---- */

struct length_row {
    const char *why;
    const char *accept;
    enum failure_type failure;
    const char *ctype;
};

static const struct length_row length_rows[] = {
    {"json", "application/json", FAIL_CONNECT_TIMEOUT, "application/json"},
    {"built-in html", browser_accept, FAIL_CONNECT_TIMEOUT, "text/html; charset=utf-8"},
    {"plain", "*/*", FAIL_CONNECT_TIMEOUT, "text/plain; charset=utf-8"},
    {"no Accept", NULL, FAIL_TLS_CERTIFICATE_INVALID, "text/plain; charset=utf-8"},
    {"client error, one line", browser_accept, FAIL_NONE, "text/plain; charset=utf-8"},
};

static void test_content_length_and_head(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(length_rows); i++) {
        const struct length_row *row = &length_rows[i];
        struct errpage e = connect_timeout(504, row->accept);
        struct resp get, head;
        print_message("  %s\n", row->why);
        e.failure = row->failure;
        e.reason = nasty_reason; /* escaping changes lengths: the count must follow */
        run(&e, &get);
        e.head_only = true;
        run(&e, &head);
        assert_true(get.body_len > 0);
        check_length(&get, get.body_len);
        assert_int_equal(get.ret, (long)get.body_len);
        assert_string_equal(hdr(&get, "Content-Type"), row->ctype);
        /* HEAD: same head, no body, Content-Length of the body GET would have sent. */
        assert_int_equal(head.body_len, 0);
        assert_int_equal(head.ret, 0);
        check_length(&head, get.body_len);
        assert_string_equal(hdr(&head, "Content-Type"), row->ctype);
        assert_int_equal(head.nh, get.nh);
        resp_free(&get);
        resp_free(&head);
    }
}

/* ---- JSON ---- */

static void test_json_connect_timeout(void **state)
{
    static const struct {
        const char *key;
        enum jtype type;
        const char *value;
    } want[] = {
        {"status", J_NUMBER, "504"},
        {"error", J_STRING, "connect_timeout"},
        {"phase", J_STRING, "connect"},
        {"origin", J_STRING, "127.0.0.1:3000"},
        {"upstream", J_STRING, "app"},
        {"limit_ms", J_NUMBER, "1000"},
        {"elapsed_ms", J_NUMBER, "1000.4"}, /* one decimal */
        {"request_id", J_STRING, "req-7f3a"},
        {"detail", J_STRING, "connect to 127.0.0.1:3000 exceeded 1000 ms"},
        {"proxy_status", J_STRING, "connection_timeout"},
    };
    struct errpage e = connect_timeout(504, "application/json");
    struct jfield f[16];
    struct resp r;

    (void)state;
    run(&e, &r);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    int n = json_parse(r.body, f, (int)ARRAY_LEN(f));
    assert_int_equal(n, ARRAY_LEN(want)); /* exactly these fields */
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        const struct jfield *jf = jget(f, n, want[i].key);
        assert_non_null(jf);
        assert_int_equal(jf->type, want[i].type);
        assert_string_equal(jf->str, want[i].value);
    }
    resp_free(&r);

    /* Absent values: null for origin, upstream and limit_ms; strings stay strings. */
    e = (struct errpage){.status = 503, .failure = FAIL_NO_HEALTHY_ORIGIN, .phase = PHASE_ROUTE,
                         .elapsed_ms = -3};
    set_accept(&e, "application/json");
    run(&e, &r);
    n = json_parse(r.body, f, (int)ARRAY_LEN(f));
    assert_int_equal(n, ARRAY_LEN(want));
    assert_int_equal(jget(f, n, "origin")->type, J_NULL);
    assert_int_equal(jget(f, n, "upstream")->type, J_NULL);
    assert_int_equal(jget(f, n, "limit_ms")->type, J_NULL);
    assert_string_equal(jget(f, n, "elapsed_ms")->str, "0.0"); /* nonsense clamps to 0 */
    assert_int_equal(jget(f, n, "request_id")->type, J_STRING);
    assert_string_equal(jget(f, n, "request_id")->str, "");
    assert_string_equal(jget(f, n, "detail")->str, "");
    assert_string_equal(jget(f, n, "phase")->str, "route");
    resp_free(&r);
}

/* ---- error_detail = minimal ---- */

struct minimal_row {
    const char *why;
    const char *accept;
    const char *keeps;       /* must still be in the body */
};

static const struct minimal_row minimal_rows[] = {
    {"JSON keeps the fields, nulls the topology", "application/json", "\"phase\":\"connect\""},
    {"the HTML page says the origin is not disclosed", "text/html", "not disclosed"},
    {"plain text keeps the failure type", "text/plain", "error: connect_timeout"},
};

/* Neither body nor headers carry the origin address, the upstream name or the detail text,
 * while status, failure type, phase and request id stay; a client error keeps its reason. */
static void test_minimal_detail(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(minimal_rows); i++) {
        const struct minimal_row *row = &minimal_rows[i];
        struct errpage e = connect_timeout(522, row->accept);
        e.detail = ERRPAGE_DETAIL_MINIMAL;
        e.server_timing = "connect;dur=1000.4;desc=\"timeout\"";
        struct resp r;
        run(&e, &r);
        if (strstr(r.body, row->keeps) == NULL)
            fail_msg("%s: body lacks \"%s\": %s", row->why, row->keeps, r.body);
        for (size_t h = 0; h < r.nh; h++)
            if (strstr(r.h[h].value, "127.0.0.1") || strstr(r.h[h].value, "exceeded"))
                fail_msg("%s: header %s leaks: %s", row->why, r.h[h].name, r.h[h].value);
        assert_null(strstr(r.body, "127.0.0.1"));
        assert_null(strstr(r.body, "exceeded"));
        assert_null(strstr(r.body, "upstream app"));
        assert_null(strstr(r.body, "\"app\""));
        assert_non_null(strstr(r.body, "req-7f3a"));
        assert_string_equal(hdr(&r, "Portico-Error"), "connect_timeout");
        assert_string_equal(hdr(&r, "Proxy-Status"), "portico; error=connection_timeout");
        assert_string_equal(hdr(&r, "Server-Timing"), "connect;dur=1000.4;desc=\"timeout\"");
        assert_string_equal(hdr(&r, "X-Request-Id"), "req-7f3a");
        check_length(&r, r.body_len);
        resp_free(&r);
    }
    struct errpage c = client_error(400, "bad chunk size", NULL);
    c.detail = ERRPAGE_DETAIL_MINIMAL;
    struct resp r;
    run(&c, &r);
    assert_string_equal(r.body, "400 Bad Request: bad chunk size\n");
    resp_free(&r);
}

/* ---- negotiation ---- */

struct nego_row {
    const char *accept; /* NULL: no Accept header */
    const char *want;
    const char *why;
};

static const struct nego_row nego_rows[] = {
    {"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
     "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
     "text/html", "Chrome"},
    {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html", "Firefox"},
    {"*/*", "text/plain", "curl, wget, most libraries: the terminal reads it"},
    {"application/json", "application/json", "API client"},
    {"text/plain;q=0.5, application/json;q=0.9", "application/json", "higher q wins"},
    {"text/html;q=0", "text/plain", "only choice excluded: fallback"},
    {"text/html;q=0, */*", "text/plain", "q=0 on the specific range beats the wildcard"},
    {"application/json;q=0, text/html;q=0, text/plain;q=0", "text/plain", "all excluded"},
    {"garbage", "text/plain", "not a media range"},
    {"", "text/plain", "empty"},
    {NULL, "text/plain", "absent"},
    {"application/json, text/plain, */*", "application/json", "axios: first listed at equal q"},
    {"text/plain, application/json", "text/plain", "first listed at equal q"},
    {"application/json, */*", "application/json", "specific beats wildcard at equal q"},
    {"text/*", "text/plain", "one wildcard for html and plain: plain"},
    {"text/*;q=0.5, text/html;q=0.4", "text/plain", "q decides before specificity"},
    {"image/png, application/xml", "text/plain", "nothing we produce"},
    {"APPLICATION/JSON", "application/json", "types are case-insensitive"},
    {"  application/json ; q=1.000 ", "application/json", "OWS and q=1.000"},
    {"application/json;q=2, text/html", "text/html", "invalid q: range ignored"},
    {"application/json;q=1.001, text/html;q=0.1", "text/html", "just past 1: invalid"},
    {"application/json;q=0.9999, text/html;q=0.1", "text/html", "four decimals: invalid"},
    {"application/json;charset=\"a,b;q=0\";q=0.8, text/html;q=0.5", "application/json",
     "quoted parameter with comma and semicolon"},
    {"*/json, text/html;q=0.1", "text/html", "wildcard type with concrete subtype is invalid"},
    {",,, ;;, text/html", "text/html", "empty elements skipped"},
    {"text/html;level=1;q=0.3, application/json;q=0.2", "text/html", "extra parameters ignored"},
    {"application/json;q=0.5, application/json;q=0.7, text/html;q=0.6", "application/json",
     "duplicates: the higher q"},
    {"application/json;Q=0.0, */*;q=0.1", "text/plain", "Q is case-insensitive"},
};

static void test_negotiate(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(nego_rows); i++) {
        const struct nego_row *row = &nego_rows[i];
        const char *a = row->accept;
        const char *got = errpage_negotiate(a, a ? strlen(a) : 0);
        if (strcmp(got, row->want) != 0)
            fail_msg("Accept \"%s\" (%s): got %s, want %s", a ? a : "(null)", row->why, got,
                     row->want);
    }
    /* Not NUL-terminated: only len bytes count ("application/json" cut to "application/js"). */
    assert_string_equal(errpage_negotiate("application/json", 14), "text/plain");
    assert_string_equal(errpage_negotiate("text/html, application/json", 9), "text/html");
}

/* Negotiation drives errpage_write's body for upstream failures. */
static void test_body_follows_accept(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(nego_rows); i++) {
        struct errpage e = connect_timeout(502, nego_rows[i].accept);
        struct resp r;
        char want[64];
        run(&e, &r);
        snprintf(want, sizeof want, "%s%s", nego_rows[i].want,
                 strcmp(nego_rows[i].want, "application/json") ? "; charset=utf-8" : "");
        assert_string_equal(hdr(&r, "Content-Type"), want);
        resp_free(&r);
    }
}

/* Several Accept lines are one list, in order (RFC 9110 5.3), whatever fields lie between:
 * a value split over lines negotiates as the joined value does. */
static void test_negotiate_lines(void **state)
{
    static const struct {
        const char *lines[3]; /* NULL-ended */
        const char *want;
        const char *why;
    } rows[] = {
        {{"text/html;q=0.1", "application/json"}, "application/json", "the second line wins on q"},
        {{"application/json", "text/html"}, "application/json", "equal q: the first listed"},
        {{"text/html", "text/html;q=0"}, "text/html", "duplicates: the higher q"},
        {{"*/*", "application/json"}, "application/json", "specific beats wildcard"},
        {{"garbage", "text/html"}, "text/html", "a malformed line does not hide the next"},
        {{"image/png", "text/*;q=0.5", "text/html"}, "text/html", "three lines"},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct h1_field f[7];
        size_t n = 0;
        f[n++] = (struct h1_field){"Host", 4, "t", 1, H1_F_HOST};
        for (size_t k = 0; k < 3 && rows[i].lines[k] != NULL; k++) {
            const char *v = rows[i].lines[k];
            f[n++] = (struct h1_field){"Accept", 6, v, strlen(v), H1_F_ACCEPT};
            f[n++] = (struct h1_field){"X-Other", 7, "application/json", 16, H1_F_OTHER};
        }
        const char *got = errpage_negotiate_fields(f, n);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("row %zu (%s): got %s, want %s", i, rows[i].why, got, rows[i].want);

        /* the page follows them too */
        struct errpage e = connect_timeout(502, NULL);
        struct resp r;
        e.fields = f;
        e.nfields = n;
        run(&e, &r);
        assert_true(strncmp(hdr(&r, "Content-Type"), rows[i].want, strlen(rows[i].want)) == 0);
        resp_free(&r);
    }
    assert_string_equal(errpage_negotiate_fields(NULL, 0), "text/plain");
}

/* nosniff goes on every text answer but an error to a browser's script or stylesheet fetch
 * (Sec-Fetch-Dest): under nosniff Chromium blocks such an answer as the wrong type, says in its
 * console that the MIME type ('text/plain') was refused, and reports no status to DevTools and
 * Resource Timing (responseStatus 0 for a stylesheet), where the error status alone keeps a
 * browser from running or applying the body (HTML: not an ok status). */
static void test_nosniff_by_destination(void **state)
{
    static const struct {
        int status;
        const char *dest; /* Sec-Fetch-Dest, or NULL: none */
        bool nosniff;
        const char *why;
    } rows[] = {
        {502, NULL, true, "no Sec-Fetch-Dest: curl, a script"},
        {502, "document", true, "a navigation: the page itself"},
        {502, "empty", true, "fetch() and XMLHttpRequest"},
        {502, "image", true, "an image"},
        {502, "style", false, "a stylesheet: blocked as not text/css under nosniff"},
        {502, "script", false, "a script: blocked as not JavaScript under nosniff"},
        {504, "Script", false, "the value is compared without case"},
        {502, "worker", false, "a worker's script"},
        {502, "serviceworker", false, "a service worker's script"},
        {502, "scripts", true, "a longer word is not script"},
        {200, "script", true, "a fault's 200 would be run as a script: nosniff stops it"},
        {302, "style", true, "nor is a 3xx an error"},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct h1_field f[3];
        size_t n = 0;
        f[n++] = (struct h1_field){"Host", 4, "t", 1, H1_F_HOST};
        f[n++] = (struct h1_field){"Accept", 6, "*/*", 3, H1_F_ACCEPT};
        if (rows[i].dest != NULL)
            f[n++] = (struct h1_field){"Sec-Fetch-Dest", 14, rows[i].dest, strlen(rows[i].dest),
                                       H1_F_SEC_FETCH_DEST}; /* as the parsers give it */
        struct errpage e = connect_timeout(rows[i].status, NULL);
        struct resp r;
        e.fields = f;
        e.nfields = n;
        run(&e, &r);
        const char *got = hdr(&r, "X-Content-Type-Options");
        if (rows[i].nosniff ? got == NULL || strcmp(got, "nosniff") != 0 : got != NULL)
            fail_msg("row %zu (%s): X-Content-Type-Options %s", i, rows[i].why,
                     got ? got : "(none)");
        resp_free(&r);
    }
}

/* 204 and 304 (a fault's answer) have no content: no body, no Content-Length and no
 * Content-Type, whatever Accept asks for; a cache would copy a 304's Content-Type onto the
 * response it stored (RFC 9111 4.3.4). */
static void test_no_content_statuses(void **state)
{
    static const int statuses[] = {204, 304};
    static const char *const accepts[] = {NULL, "application/json", "text/html"};
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(statuses); i++) {
        for (size_t k = 0; k < ARRAY_LEN(accepts); k++) {
            struct errpage c = client_error(statuses[i], "", accepts[k]);
            struct errpage f = connect_timeout(statuses[i], accepts[k]);
            const struct errpage *es[] = {&c, &f};
            for (size_t j = 0; j < ARRAY_LEN(es); j++) {
                struct resp r;
                run(es[j], &r);
                if (hdr(&r, "Content-Type") != NULL || hdr(&r, "Content-Length") != NULL ||
                    r.body_len != 0 || r.ret != 0)
                    fail_msg("%d (Accept %s): Content-Type %s, Content-Length %s, body %zu bytes",
                             statuses[i], accepts[k] ? accepts[k] : "-",
                             hdr(&r, "Content-Type") ? hdr(&r, "Content-Type") : "-",
                             hdr(&r, "Content-Length") ? hdr(&r, "Content-Length") : "-",
                             r.body_len);
                assert_string_equal(hdr(&r, "Cache-Control"), "no-store");
                resp_free(&r);
            }
        }
    }
}

/* ---- the built-in HTML and plain pages ---- */

static void test_html_page(void **state)
{
    struct errpage e = connect_timeout(522, browser_accept);
    struct resp r;

    (void)state;
    run(&e, &r);
    assert_true(strncmp(r.body, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(r.body, "<title>522 Connection Timed Out"));
    /* the chain: three boxes, the Portico -> origin hop in red with the failure name */
    assert_non_null(strstr(r.body, "<span>client</span>"));
    assert_non_null(strstr(r.body, "<strong>Portico</strong>"));
    assert_non_null(strstr(r.body, "<div class=\"hop bad\"><i></i>&#10007; connect_timeout</div>"));
    assert_non_null(strstr(r.body, "<div class=\"box bad\"><span>origin</span>"
                                   "<strong>127.0.0.1:3000</strong>"));
    /* the table */
    static const char *const rows[] = {
        "<th>status</th><td>522 Connection Timed Out</td>",
        "<th>error</th><td>connect_timeout</td>",
        "<th>phase</th><td>connect</td>",
        "<th>limit</th><td>1000 ms</td>",
        "<th>elapsed</th><td>1000.4 ms</td>",
        "<th>origin</th><td>127.0.0.1:3000</td>",
        "<th>upstream</th><td>app</td>",
        "<th>request id</th><td>req-7f3a</td>",
        "<th>detail</th><td>connect to 127.0.0.1:3000 exceeded 1000 ms</td>",
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++)
        assert_non_null(strstr(r.body, rows[i]));
    /* self-contained: no scripts, no external assets */
    assert_null(strstr(r.body, "<script"));
    assert_null(strstr(r.body, "src="));
    assert_null(strstr(r.body, "href="));
    assert_null(strstr(r.body, "url("));
    assert_null(strstr(r.body, "@import"));
    resp_free(&r);
}

static void test_plain_page(void **state)
{
    struct errpage e = connect_timeout(504, "*/*");
    struct resp r;

    (void)state;
    run(&e, &r);
    assert_string_equal(r.body, "504 Gateway Timeout\n"
                                "error: connect_timeout\n"
                                "phase: connect\n"
                                "origin: 127.0.0.1:3000\n"
                                "upstream: app\n"
                                "limit: 1000 ms\n"
                                "elapsed: 1000.4 ms\n"
                                "request_id: req-7f3a\n"
                                "detail: connect to 127.0.0.1:3000 exceeded 1000 ms\n"
                                "proxy_status: connection_timeout\n");
    resp_free(&r);
}

/* ---- escaping ---- */

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_escaping(void **state)
{
    struct errpage e = connect_timeout(502, "application/json");
    struct jfield f[16];
    struct resp r;

    (void)state;
    e.reason = nasty_reason;
    e.origin = "o\"r\\i\r\ngin";
    e.request_id = "id\r\nSet-Cookie: x=1";
    e.upstream = "up<b>\x1b[31m";
    e.server_timing = "connect;dur=1\r\nX-Evil: 1";

    /* JSON: decodes back to the exact input, control bytes as \u00XX */
    run(&e, &r);
    int n = json_parse(r.body, f, (int)ARRAY_LEN(f));
    assert_int_equal(n, 10);
    assert_string_equal(jget(f, n, "detail")->str, nasty_reason);
    assert_string_equal(jget(f, n, "origin")->str, e.origin);
    assert_string_equal(jget(f, n, "upstream")->str, e.upstream);
    assert_non_null(strstr(r.body, "'x'\\u000d\\u000aX-Injected"));
    assert_non_null(strstr(r.body, "\\u0001\\u007f"));
    assert_non_null(strstr(r.body, "\\\"quote\\\" back\\\\slash"));
    /* headers: no injected field, CR/LF and control bytes dropped, sf-string escaped */
    assert_null(hdr(&r, "X-Injected"));
    assert_null(hdr(&r, "Set-Cookie"));
    assert_null(hdr(&r, "X-Evil"));
    assert_string_equal(hdr(&r, "X-Request-Id"), "idSet-Cookie: x=1");
    assert_string_equal(hdr(&r, "Server-Timing"), "connect;dur=1X-Evil: 1");
    assert_string_equal(hdr(&r, "Proxy-Status"),
                        "portico; error=connection_timeout; details=\"bad \\\"quote\\\" "
                        "back\\\\slash <script>alert(1)</script> & 'x'X-Injected: 1 end\"; "
                        "next-hop=\"o\\\"r\\\\igin\"");
    resp_free(&r);

    /* HTML: nothing of the reason survives as markup */
    set_accept(&e, browser_accept);
    run(&e, &r);
    assert_null(strstr(r.body, "<script"));
    assert_null(strstr(r.body, "<b>\x1b"));
    assert_null(strstr(r.body, "\r"));
    assert_null(strstr(r.body, "\x01"));
    assert_null(strstr(r.body, "\x1b"));
    assert_non_null(strstr(r.body, "<th>detail</th><td>bad &quot;quote&quot; back\\slash "
                                   "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;x&#39;  "
                                   "X-Injected: 1   end</td>"));
    assert_non_null(strstr(r.body, "<th>upstream</th><td>up&lt;b&gt; [31m</td>"));
    resp_free(&r);

    /* plain: every value stays on its own line, no control bytes */
    set_accept(&e, "text/plain");
    run(&e, &r);
    assert_int_equal(count_char(r.body, '\n'), 10);
    assert_null(strstr(r.body, "\r"));
    assert_non_null(strstr(r.body, "\ndetail: bad \"quote\" back\\slash <script>alert(1)</script> "
                                   "& 'x'  X-Injected: 1   end\n"));
    resp_free(&r);

    /* client error: still one line */
    struct errpage c = client_error(400, nasty_reason, "application/json");
    run(&c, &r);
    assert_int_equal(count_char(r.body, '\n'), 1);
    assert_null(strstr(r.body, "\r"));
    assert_null(strchr(r.body, '\x01'));
    resp_free(&r);
}

/* The escapers step over plain bytes eight at a time: each byte they must act on is still
 * found at every offset of a word, in every format and in Proxy-Status's sf-string. */
static void test_escaping_every_offset(void **state)
{
    static const struct {
        unsigned char c;
        const char *plain, *json, *html, *sf; /* what the byte becomes ("" in sf: left out) */
    } rows[] = {
        {0x01, " ", "\\u0001", " ", ""},
        {0x1F, " ", "\\u001f", " ", ""},
        {0x7F, " ", "\\u007f", " ", ""},
        {0x80, "\xEF\xBF\xBD", "\\ufffd", "\xEF\xBF\xBD", ""},
        {'"', "\"", "\\\"", "&quot;", "\\\""},
        {'\\', "\\", "\\\\", "\\", "\\\\"},
        {'&', "&", "&", "&amp;", "&"},
        {'<', "<", "<", "&lt;", "<"},
        {'>', ">", ">", "&gt;", ">"},
        {'\'', "'", "'", "&#39;", "'"},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        for (int k = 0; k < 20; k++) {
            char reason[25], a[32], b[32], want[128];
            memset(reason, 'a', 24);
            reason[24] = '\0';
            reason[k] = (char)rows[i].c;
            snprintf(a, sizeof(a), "%.*s", k, reason);
            snprintf(b, sizeof(b), "%s", reason + k + 1);
            struct errpage e = connect_timeout(502, "text/plain");
            e.reason = reason;
            struct resp r;

            run(&e, &r);
            snprintf(want, sizeof(want), "\ndetail: %s%s%s\n", a, rows[i].plain, b);
            if (!strstr(r.body, want))
                fail_msg("byte %#x at %d, plain: no \"%s\" in %s", rows[i].c, k, want, r.body);
            snprintf(want, sizeof(want), "details=\"%s%s%s\"", a, rows[i].sf, b);
            if (!strstr(hdr(&r, "Proxy-Status"), want))
                fail_msg("byte %#x at %d: Proxy-Status %s", rows[i].c, k, hdr(&r, "Proxy-Status"));
            resp_free(&r);

            set_accept(&e, "application/json");
            run(&e, &r);
            snprintf(want, sizeof(want), "\"detail\":\"%s%s%s\"", a, rows[i].json, b);
            if (!strstr(r.body, want))
                fail_msg("byte %#x at %d, JSON: no %s in %s", rows[i].c, k, want, r.body);
            resp_free(&r);

            set_accept(&e, browser_accept);
            run(&e, &r);
            snprintf(want, sizeof(want), "<td>%s%s%s</td>", a, rows[i].html, b);
            if (!strstr(r.body, want))
                fail_msg("byte %#x at %d, HTML: no %s", rows[i].c, k, want);
            resp_free(&r);
        }
    }
}

/* Bodies say charset=utf-8: well-formed UTF-8 passes, ill-formed bytes become U+FFFD. */
static void test_utf8(void **state)
{
    struct errpage e = connect_timeout(502, "application/json");
    struct jfield f[16];
    struct resp r;

    (void)state;
    e.reason = "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x94\xa5 bad:\xff\xc0\xaf\xed\xa0\x80|\xe2\x86";
    run(&e, &r);
    assert_int_equal(json_parse(r.body, f, (int)ARRAY_LEN(f)), 10);
    assert_non_null(strstr(r.body, "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x94\xa5 bad:"
                                   "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd"));
    /* headers are ASCII only */
    assert_non_null(strstr(hdr(&r, "Proxy-Status"), "details=\"caf   bad:|\""));
    resp_free(&r);

    set_accept(&e, "text/plain");
    run(&e, &r);
    assert_non_null(strstr(r.body, "detail: caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x94\xa5 bad:"
                                   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    resp_free(&r);
}

/* ---- error_page_dir ---- */

struct page_row {
    const char *why;
    int status;
    const char *accept;
    const char *reason;
    const char *want;       /* exact body, or NULL: the built-in page (checked by prefix) */
};

static const char page_tpl[] =
    "<h1>{{status}} {{error}}</h1><p>{{phase}} {{origin}} {{request_id}}</p><p>{{detail}}</p>"
    "{{unknown}} {{status";

static const struct page_row page_rows[] = {
    {"html chosen, file present: substituted", 504, browser_accept, "a<b>&\"c\"",
     "<h1>504 connect_timeout</h1><p>connect 127.0.0.1:3000 req-7f3a</p>"
     "<p>a&lt;b&gt;&amp;&quot;c&quot;</p>{{unknown}} {{status"},
    {"json chosen: the file is for browsers only", 504, "application/json", "x", NULL},
    {"plain chosen", 504, "*/*", "x", NULL},
    {"no NNN.html for this status: built-in", 502, browser_accept, "x", NULL},
    {"a directory named 503.html is not a page", 503, browser_accept, "x", NULL},
    {"an empty file is not a page", 524, browser_accept, "x", NULL},
    {"larger than 256 KiB: ignored rather than cut", 525, browser_accept, "x", NULL},
};

static int write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL)
        return -1;
    size_t w = fwrite(data, 1, len, fp);
    return fclose(fp) == 0 && w == len ? 0 : -1;
}

static void test_page_dir(void **state)
{
    char dir[] = "/tmp/portico-errpage-XXXXXX";
    char path[4096];
    size_t big_len = 256 * 1024 + 1;
    char *big = malloc(big_len);

    (void)state;
    assert_non_null(big);
    memset(big, 'x', big_len);
    assert_non_null(mkdtemp(dir));
    assert_int_equal(write_file(dir, "504.html", page_tpl, strlen(page_tpl)), 0);
    assert_int_equal(write_file(dir, "524.html", "", 0), 0);
    assert_int_equal(write_file(dir, "525.html", big, big_len), 0);
    snprintf(path, sizeof path, "%s/503.html", dir);
    assert_int_equal(mkdir(path, 0700), 0);

    for (size_t i = 0; i < ARRAY_LEN(page_rows); i++) {
        const struct page_row *row = &page_rows[i];
        struct errpage e = connect_timeout(row->status, row->accept);
        struct resp r, head;
        print_message("  %s\n", row->why);
        e.page_dir = dir;
        e.reason = row->reason;
        run(&e, &r);
        if (row->want != NULL) {
            assert_string_equal(r.body, row->want);
            assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
        } else {
            assert_null(strstr(r.body, "{{"));
            if (strcmp(row->accept, browser_accept) == 0)
                assert_true(strncmp(r.body, "<!DOCTYPE html>", 15) == 0);
        }
        check_length(&r, r.body_len);
        e.head_only = true; /* HEAD reads the file too: its length is the Content-Length */
        run(&e, &head);
        check_length(&head, r.body_len);
        resp_free(&r);
        resp_free(&head);
    }

    /* A page exactly at the limit is used. */
    big[0] = '<';
    assert_int_equal(write_file(dir, "525.html", big, big_len - 1), 0);
    struct errpage e = connect_timeout(525, browser_accept);
    struct resp r;
    e.page_dir = dir;
    run(&e, &r);
    assert_int_equal(r.body_len, big_len - 1);
    assert_true(memcmp(r.body, big, big_len - 1) == 0);
    resp_free(&r);

    /* Client errors never use the page. */
    assert_int_equal(write_file(dir, "400.html", page_tpl, strlen(page_tpl)), 0);
    struct errpage c = client_error(400, "bad", browser_accept);
    c.page_dir = dir;
    run(&c, &r);
    assert_string_equal(r.body, "400 Bad Request: bad\n");
    resp_free(&r);

    /* cleanup, then the directory is gone: built-in page, silently */
    static const char *const names[] = {"504.html", "524.html", "525.html", "400.html"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        assert_int_equal(unlink(path), 0);
    }
    snprintf(path, sizeof path, "%s/503.html", dir);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rmdir(dir), 0);
    e = connect_timeout(504, browser_accept);
    e.page_dir = dir;
    run(&e, &r);
    assert_true(strncmp(r.body, "<!DOCTYPE html>", 15) == 0);
    check_length(&r, r.body_len);
    resp_free(&r);
    free(big);
}

/* ---- client errors ---- */

struct client_row {
    int status;
    const char *reason;
    const char *accept;
    const char *body;
};

static const struct client_row client_rows[] = {
    {400, "bad request line", browser_accept, "400 Bad Request: bad request line\n"},
    {400, "bad request line", "application/json", "400 Bad Request: bad request line\n"},
    {431, "header section over 16384 bytes", "*/*",
     "431 Request Header Fields Too Large: header section over 16384 bytes\n"},
    {408, NULL, "text/html", "408 Request Timeout\n"},            /* no reason: no colon */
    {413, "", NULL, "413 Content Too Large\n"},                   /* empty reason is no reason */
    {400, "tab\there", "text/plain", "400 Bad Request: tab here\n"},
};

static void test_client_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(client_rows); i++) {
        const struct client_row *row = &client_rows[i];
        struct errpage e = client_error(row->status, row->reason, row->accept);
        e.page_dir = "/nonexistent";
        struct resp r;
        run(&e, &r);
        assert_string_equal(r.body, row->body);
        assert_string_equal(hdr(&r, "Content-Type"), "text/plain; charset=utf-8");
        assert_null(hdr(&r, "Portico-Error"));
        assert_null(hdr(&r, "Proxy-Status"));
        check_length(&r, r.body_len);
        resp_free(&r);
    }
}

/* A client error with no reason takes its body from the thread's prepared page (one slot per
 * code & 15): statuses that share a slot, one after the other and again, each keep their own
 * body and Content-Length, for GET and HEAD; one with a reason is rendered as before. */
static void test_client_pages_prepared(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
        const char *body;
    } rows[] = {
        {503, NULL, "503 Service Unavailable\n"},
        {487, NULL, "487 Unknown Client Error\n"}, /* 487 & 15 == 503 & 15 */
        {503, NULL, "503 Service Unavailable\n"},
        {503, "", "503 Service Unavailable\n"},
        {503, "busy", "503 Service Unavailable: busy\n"},
        {511, NULL, "511 Network Authentication Required\n"},
        {503, NULL, "503 Service Unavailable\n"},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        for (int head = 0; head < 2; head++) {
            struct errpage e = client_error(rows[i].status, rows[i].reason, NULL);
            e.head_only = head;
            struct resp r;
            run(&e, &r);
            assert_string_equal(r.body, head ? "" : rows[i].body);
            check_length(&r, strlen(rows[i].body));
            resp_free(&r);
        }
    }
}

/* The names put in pages without an escaper (put_name): failure types, phases and Proxy-Status
 * error types are lowercase letters, digits and '_' only. */
static void test_names_need_no_escaping(void **state)
{
    (void)state;
    const char *names[3 * (FAILURE_COUNT + PHASE_COUNT) + 1];
    size_t n = 0;
    for (int f = 0; f < FAILURE_COUNT; f++) {
        names[n++] = failure_name((enum failure_type)f);
        names[n++] = failure_proxy_status((enum failure_type)f);
    }
    for (int p = 0; p < PHASE_COUNT; p++)
        names[n++] = phase_name((enum phase)p);
    names[n++] = failure_name(FAILURE_COUNT); /* "unknown" */
    for (size_t i = 0; i < n; i++)
        for (const char *c = names[i]; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                fail_msg("name \"%s\" has '%c'", names[i], *c);
}

/* ---- long values: the stack buffer flushes, headers stay bounded ---- */

static void test_long_values(void **state)
{
    size_t len = 40000;
    char *reason = malloc(len + 1);
    struct resp r;

    (void)state;
    assert_non_null(reason);
    for (size_t i = 0; i < len; i++)
        reason[i] = "ab<\"\\"[i % 5];
    reason[len] = '\0';
    const char *accepts[] = {"application/json", browser_accept, "text/plain"};
    for (size_t i = 0; i < ARRAY_LEN(accepts); i++) {
        struct errpage e = connect_timeout(504, accepts[i]);
        e.reason = reason;
        run(&e, &r);
        check_length(&r, r.body_len);
        assert_true(r.body_len > len);
        assert_true(strlen(hdr(&r, "Proxy-Status")) < 2 * 1024 + 200);
        if (i == 0) /* still one object on one line */
            assert_true(r.body[0] == '{' && strcmp(r.body + r.body_len - 2, "}\n") == 0 &&
                        strchr(r.body, '\n') == r.body + r.body_len - 1);
        resp_free(&r);
    }
    free(reason);
}

/* Out of memory: errpage_write says -1 with nothing in out, or the head whole and part of its
 * body (the connection closes: a page cut short by its Content-Length), never a body without
 * its head (the client would read the page as a head); each of the first six allocations
 * failed in turn, for a page that fits its buffer and one streamed through it. */
static void test_out_of_memory(void **state)
{
    (void)state;
    static char long_reason[9000];
    memset(long_reason, 'x', sizeof(long_reason) - 1);
    const char *reasons[] = {NULL, long_reason};
    unsigned failed = 0;
    for (size_t i = 0; i < ARRAY_LEN(reasons); i++) {
        struct errpage e = connect_timeout(504, browser_accept);
        if (reasons[i])
            e.reason = reasons[i];
        for (long k = 0; k < 6; k++) {
            struct evbuffer *out = evbuffer_new();
            assert_non_null(out);
            alloc_fail_at(k);
            long ret = errpage_write(out, &e);
            alloc_fail_at(-1);
            size_t len = evbuffer_get_length(out);
            char *got = malloc(len + 1);
            assert_non_null(got);
            evbuffer_remove(out, got, len);
            got[len] = '\0';
            if (ret >= 0) {
                char *end = strstr(got, "\r\n\r\n");
                assert_non_null(end);
                assert_int_equal(strlen(end + 4), (size_t)ret);
            } else {
                failed++;
                if (len && (strncmp(got, "HTTP/1.1 504 ", 13) != 0 || !strstr(got, "\r\n\r\n")))
                    fail_msg("page %zu, allocation %ld failed: -1 with '%.60s' in out", i, k, got);
            }
            free(got);
            evbuffer_free(out);
        }
    }
    assert_true(failed > 0);
}

/* An origin that refused the handshake with an alert: Proxy-Status says RFC 9209's
 * tls_alert_received, with alert-id and alert-message (the body's proxy_status too), while the
 * failure type and its code stay tls_handshake_failed; error_detail = minimal keeps the alert's
 * parameters out, as it keeps the details. */
static void test_tls_alert_received(void **state)
{
    (void)state;
    struct errpage e = connect_timeout(502, "application/json");
    e.failure = FAIL_TLS_HANDSHAKE_FAILED;
    e.phase = PHASE_TLS;
    e.limit_ms = 0;
    e.reason = "127.0.0.1:3000 refused the TLS handshake: alert certificate_required (116)";
    e.tls_alert_name = "certificate_required";
    e.tls_alert = 116;
    struct resp r;
    run(&e, &r);
    assert_string_equal(hdr(&r, "Portico-Error"), "tls_handshake_failed");
    assert_string_equal(hdr(&r, "Proxy-Status"),
                        "portico; error=tls_alert_received; details=\"127.0.0.1:3000 refused the "
                        "TLS handshake: alert certificate_required (116)\"; alert-id=116; "
                        "alert-message=\"certificate_required\"; next-hop=\"127.0.0.1:3000\"");
    assert_non_null(strstr(r.body, "\"proxy_status\":\"tls_alert_received\""));
    resp_free(&r);
    e.detail = ERRPAGE_DETAIL_MINIMAL;
    run(&e, &r);
    assert_string_equal(hdr(&r, "Proxy-Status"), "portico; error=tls_alert_received");
    resp_free(&r);
}

int main(void)
{
    alloc_fail_install(); /* before libevent allocates anything */
    (void)alloc_fail_all;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_content_length_and_head),
        cmocka_unit_test(test_json_connect_timeout),
        cmocka_unit_test(test_minimal_detail),
        cmocka_unit_test(test_tls_alert_received),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_body_follows_accept),
        cmocka_unit_test(test_negotiate_lines),
        cmocka_unit_test(test_nosniff_by_destination),
        cmocka_unit_test(test_no_content_statuses),
        cmocka_unit_test(test_html_page),
        cmocka_unit_test(test_plain_page),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_escaping_every_offset),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_page_dir),
        cmocka_unit_test(test_client_errors),
        cmocka_unit_test(test_client_pages_prepared),
        cmocka_unit_test(test_names_need_no_escaping),
        cmocka_unit_test(test_long_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
