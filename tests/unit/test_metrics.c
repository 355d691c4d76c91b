/*
 * test_metrics.c — the Prometheus exposition: exact lines after known increments, sums across
 * shards of several configuration generations, retirement into process totals, histogram
 * buckets at their bounds, the overflow of (code, failure) pairs, label escaping, today's
 * families and call sites, scrapes while a worker writes, and a validator of the whole text
 * format (HELP/TYPE once per family, label syntax, cumulative buckets ending in +Inf = _count).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portico/metrics.h"
#include "portico/proxyproto.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The exposition, NUL-terminated, malloc'd. */
static char *render(const struct metrics_scrape *sc)
{
    struct evbuffer *out = evbuffer_new();
    assert_non_null(out);
    assert_int_equal(metrics_render(out, sc), 0);
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    assert_non_null(text);
    evbuffer_remove(out, text, n);
    text[n] = '\0';
    evbuffer_free(out);
    return text;
}

/* The sample lines of one family (name, name_bucket, _sum, _count), in order, joined. */
static char *family_lines(const char *text, const char *family)
{
    size_t cap = strlen(text) + 1, n = 0, flen = strlen(family);
    char *out = malloc(cap);
    assert_non_null(out);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (p[0] != '#' && strncmp(p, family, flen) == 0 &&
            (p[flen] == '{' || p[flen] == ' ' || strncmp(p + flen, "_bucket{", 8) == 0 ||
             strncmp(p + flen, "_sum", 4) == 0 || strncmp(p + flen, "_count", 6) == 0)) {
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
    }
    out[n] = '\0';
    return out;
}

static void assert_family(const char *text, const char *family, const char *want)
{
    char *got = family_lines(text, family);
    if (strcmp(got, want) != 0) {
        /* the first line that differs: whole families do not fit in one message */
        const char *g = got, *w = want;
        while (*g && *g == *w)
            g++, w++;
        while (g > got && g[-1] != '\n')
            g--, w--;
        fail_msg("%s:\n got  %.200s\n want %.200s", family, g, w);
    }
    free(got);
}

/* The value of the one sample line that starts with `series ` (e.g. "x{a=\"b\"}"); -1 when
 * absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* The sum of every portico_requests_total series. */
static uint64_t requests_sum(const char *text)
{
    char *lines = family_lines(text, "portico_requests_total");
    uint64_t sum = 0;
    for (const char *p = lines; *p; p = strchr(p, '\n') + 1)
        sum += strtoull(strstr(p, "} ") + 2, NULL, 10);
    free(lines);
    return sum;
}

/* ---- a validator of the text format 0.0.4 ---- */

enum { MAXF = 96, MAXS = 2048 };

/* A rule broken: the message, and a jump out of the validator. */
static jmp_buf invalid_jump;
static char invalid_why[2048];

#define INVALID(...)                                                                               \
    do {                                                                                           \
        snprintf(invalid_why, sizeof(invalid_why), __VA_ARGS__);                                   \
        longjmp(invalid_jump, 1);                                                                  \
    } while (0)

struct family_seen {
    char name[96];
    char type[16];
    bool help, has_type, samples;
};

struct hist_series {
    char family[96];
    char labels[512];                  /* without le */
    double last_le, last_count;
    int buckets;
    bool inf, sum, count;
    double inf_count, count_value;
};

struct validator {
    struct family_seen fam[MAXF];
    int nfam, current;
    char series[MAXS][1024];
    int nseries;
    struct hist_series hist[256];
    int nhist;
};

static bool name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
        return true;
    return !first && c >= '0' && c <= '9';
}

static const char *parse_name(const char *p, char *out, size_t size, bool colon)
{
    size_t n = 0;
    if (!name_char(*p, true, colon))
        return NULL;
    while (name_char(*p, n == 0, colon) && n + 1 < size)
        out[n++] = *p++;
    out[n] = '\0';
    return p;
}

static struct family_seen *family_get(struct validator *v, const char *name, bool create)
{
    for (int i = 0; i < v->nfam; i++)
        if (strcmp(v->fam[i].name, name) == 0)
            return &v->fam[i];
    if (!create || v->nfam == MAXF)
        return NULL;
    struct family_seen *f = &v->fam[v->nfam++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

static bool ends_with(const char *s, const char *suffix, char *stem, size_t size)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n <= k || strcmp(s + n - k, suffix) != 0)
        return false;
    snprintf(stem, size, "%.*s", (int)(n - k), s);
    return true;
}

static double parse_value(const char *s, const char *line)
{
    if (strcmp(s, "+Inf") == 0)
        return INFINITY;
    if (strcmp(s, "-Inf") == 0)
        return -INFINITY;
    if (strcmp(s, "NaN") == 0)
        return NAN;
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end)
        INVALID("bad value '%s' in: %s", s, line);
    return d;
}

static struct hist_series *hist_get(struct validator *v, const char *family, const char *labels)
{
    for (int i = 0; i < v->nhist; i++)
        if (strcmp(v->hist[i].family, family) == 0 && strcmp(v->hist[i].labels, labels) == 0)
            return &v->hist[i];
    if (v->nhist == (int)ARRAY_LEN(v->hist))
        INVALID("more histogram series than the validator holds");
    struct hist_series *h = &v->hist[v->nhist++];
    memset(h, 0, sizeof(*h));
    snprintf(h->family, sizeof(h->family), "%s", family);
    snprintf(h->labels, sizeof(h->labels), "%s", labels);
    h->last_le = -INFINITY;
    return h;
}

static void validate_sample(struct validator *v, const char *line)
{
    char name[96], stem[96];
    const char *p = parse_name(line, name, sizeof(name), true);
    if (!p)
        INVALID("bad metric name: %s", line);
    /* labels: {name="value",...}, escapes \\ \" \n only; le kept apart for histograms */
    char labels[512] = "", le[256] = "";
    size_t ln = 0;
    char seen_names[16][64];
    int nseen = 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            char lname[64], lvalue[256];
            size_t vn = 0;
            p = parse_name(p, lname, sizeof(lname), false);
            if (!p || *p != '=' || p[1] != '"')
                INVALID("bad label syntax: %s", line);
            for (int i = 0; i < nseen; i++)
                if (strcmp(seen_names[i], lname) == 0)
                    INVALID("label %s twice: %s", lname, line);
            if (nseen == 16)
                INVALID("too many labels: %s", line);
            snprintf(seen_names[nseen++], sizeof(seen_names[0]), "%s", lname);
            p += 2;
            while (*p != '"') {
                if (!*p || *p == '\n')
                    INVALID("unterminated label value: %s", line);
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                        INVALID("bad escape in label value: %s", line);
                    lvalue[vn++] = *p++;
                }
                lvalue[vn++] = *p++;
                if (vn >= sizeof(lvalue) - 2)
                    INVALID("label value too long: %s", line);
            }
            lvalue[vn] = '\0';
            p++;
            if (strcmp(lname, "le") == 0)
                snprintf(le, sizeof(le), "%s", lvalue);
            else
                ln += (size_t)snprintf(labels + ln, sizeof(labels) - ln, "%s=%s,", lname, lvalue);
            if (*p == ',')
                p++;
            else if (*p != '}')
                INVALID("bad label separator: %s", line);
        }
        p++;
    }
    if (*p != ' ')
        INVALID("no space before the value: %s", line);
    double value = parse_value(p + 1, line);
    /* the family: the sample's name, or its stem for histogram samples */
    const char *fname = name;
    struct family_seen *f = family_get(v, name, false);
    bool bucket = false, sum = false, count = false;
    if (!f && (((bucket = ends_with(name, "_bucket", stem, sizeof(stem)))) ||
               ((sum = ends_with(name, "_sum", stem, sizeof(stem)))) ||
               ((count = ends_with(name, "_count", stem, sizeof(stem)))))) {
        f = family_get(v, stem, false);
        fname = stem;
        if (f && strcmp(f->type, "histogram") != 0)
            INVALID("%s is not a histogram: %s", stem, line);
    }
    if (!f || !f->has_type)
        INVALID("sample before its TYPE line: %s", line);
    if (v->current < 0 || strcmp(v->fam[v->current].name, fname) != 0)
        INVALID("sample away from its family's group: %s", line);
    f->samples = true;
    if (strcmp(f->type, "histogram") == 0 && !bucket && !sum && !count)
        INVALID("histogram sample without _bucket/_sum/_count: %s", line);
    if (strcmp(f->type, "counter") == 0 && !(value >= 0))
        INVALID("negative counter: %s", line);
    /* each series once */
    char key[1024];
    snprintf(key, sizeof(key), "%s{%s%s}", name, labels, le);
    for (int i = 0; i < v->nseries; i++)
        if (strcmp(v->series[i], key) == 0)
            INVALID("series twice: %s", line);
    if (v->nseries == MAXS)
        INVALID("more series than the validator holds");
    snprintf(v->series[v->nseries++], sizeof(v->series[0]), "%s", key);
    if (strcmp(f->type, "histogram") != 0)
        return;
    struct hist_series *h = hist_get(v, fname, labels);
    if (bucket) {
        if (!le[0])
            INVALID("bucket without le: %s", line);
        if (h->inf || h->sum || h->count)
            INVALID("bucket after +Inf, _sum or _count: %s", line);
        double bound = parse_value(le, line);
        if (!(bound > h->last_le))
            INVALID("le not increasing: %s", line);
        if (value < h->last_count)
            INVALID("buckets not cumulative: %s", line);
        h->last_le = bound;
        h->last_count = value;
        h->buckets++;
        if (isinf(bound)) {
            h->inf = true;
            h->inf_count = value;
        }
    } else if (sum) {
        if (le[0] || h->sum)
            INVALID("bad _sum: %s", line);
        h->sum = true;
    } else {
        if (le[0] || h->count)
            INVALID("bad _count: %s", line);
        h->count = true;
        h->count_value = value;
    }
}

static struct validator validator;

/* Checks a whole exposition: NULL, or the rule it breaks. *samples gets the sample lines. */
static const char *check_format(const char *text, int *samples_out)
{
    struct validator *v = &validator;
    memset(v, 0, sizeof(*v));
    v->current = -1;
    if (setjmp(invalid_jump))
        return invalid_why;
    int samples = 0;
    size_t len = strlen(text);
    if (len == 0 || text[len - 1] != '\n')
        INVALID("the exposition must end with a newline");
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        char line[1024];
        size_t n = (size_t)(nl - p);
        if (n == 0 || n >= sizeof(line))
            INVALID("empty or overlong line at offset %zu", (size_t)(p - text));
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            char name[96];
            const char *q = parse_name(line + 7, name, sizeof(name), true);
            if (!q || *q != ' ' || !q[1])
                INVALID("bad comment line: %s", line);
            struct family_seen *f = family_get(v, name, true);
            if (!f)
                INVALID("more families than the validator holds");
            int idx = (int)(f - v->fam);
            if (f->samples || (v->current != idx && (f->help || f->has_type)))
                INVALID("family %s described twice or after its samples", name);
            v->current = idx;
            if (line[2] == 'H') {
                if (f->help)
                    INVALID("HELP twice: %s", line);
                f->help = true;
            } else {
                if (f->has_type)
                    INVALID("TYPE twice: %s", line);
                if (strcmp(q + 1, "counter") && strcmp(q + 1, "gauge") &&
                    strcmp(q + 1, "histogram") && strcmp(q + 1, "summary") &&
                    strcmp(q + 1, "untyped"))
                    INVALID("unknown type: %s", line);
                snprintf(f->type, sizeof(f->type), "%s", q + 1);
                f->has_type = true;
            }
            continue;
        }
        if (line[0] == '#')
            continue;
        validate_sample(v, line);
        samples++;
    }
    for (int i = 0; i < v->nhist; i++) {
        struct hist_series *h = &v->hist[i];
        if (!h->inf || !h->sum || !h->count)
            INVALID("%s{%s}: needs +Inf, _sum and _count", h->family, h->labels);
        if (h->inf_count != h->count_value)
            INVALID("%s{%s}: +Inf %g != _count %g", h->family, h->labels, h->inf_count,
                     h->count_value);
    }
    for (int i = 0; i < v->nfam; i++)
        if (!v->fam[i].help || !v->fam[i].has_type)
            INVALID("family %s lacks HELP or TYPE", v->fam[i].name);
    *samples_out = samples;
    return NULL;
}

/* Fails the test unless text is a valid exposition; returns its number of samples. */
static int validate(const char *text)
{
    int samples = 0;
    const char *why = check_format(text, &samples);
    if (why)
        fail_msg("invalid exposition: %s", why);
    return samples;
}

/* ---- scenarios ---- */

static const char *const routes[] = {"api", "web"};
static const char *const upstreams[] = {"app", "static"};
static const char *const faults[] = {"slow-checkout"};
static const struct metrics_labels labels = {routes, 2, upstreams, 2, faults, 1, NULL, 0};

static void request(struct metrics *m, int route, int upstream, int status, enum failure_type f,
                    const struct timings *t)
{
    struct metrics_sample s = {route, upstream, status, f, t};
    metrics_request_done(m, &s);
}

static int teardown(void **state)
{
    (void)state;
    metrics_free_all();
    return 0;
}

/* Known increments, then every new family line by line. */
static void test_exact_lines(void **state)
{
    (void)state;
    struct metrics *m = metrics_shard_create(&labels);
    assert_non_null(m);
    struct timings t = {0};
    timings_set(&t, TIMING_CONNECT, 1000);      /* on the bound: le="0.001" */
    timings_set(&t, TIMING_FIRST_BYTE, 1001);   /* just past it: le="0.0025" */
    timings_set(&t, TIMING_TOTAL, 60000001);    /* past the last bound: +Inf only */
    request(m, 0, 0, 200, FAIL_NONE, &t);
    request(m, 0, 0, 200, FAIL_NONE, NULL);
    request(m, 0, 0, 502, FAIL_CONNECT_REFUSED, NULL);
    request(m, 1, 1, 499, FAIL_NONE, NULL);
    request(m, -1, -1, 404, FAIL_NONE, NULL);
    request(m, 7, 9, 400, FAIL_NONE, &t);       /* out-of-range indices: not routed, no hist */
    metrics_interim(m, 103, INTERIM_SYNTHESIZED);
    metrics_interim(m, 103, INTERIM_RELAYED);
    metrics_interim(m, 100, INTERIM_DROPPED);
    metrics_interim(m, 199, INTERIM_RELAYED);   /* the last interim code: counted */
    metrics_interim(m, 200, INTERIM_RELAYED);   /* not an interim code: ignored */
    metrics_interim(m, 99, INTERIM_RELAYED);    /* nor this */
    metrics_fault(m, 0, FAULT_DELAY);
    metrics_fault(m, 0, FAULT_DELAY);
    metrics_fault(m, 1, FAULT_DELAY);           /* no such rule: ignored */
    metrics_conn_add(m, CONN_CLIENT, CONN_IDLE, 1);
    metrics_conn_add(m, CONN_CLIENT, CONN_IDLE, 1);
    metrics_conn_add(m, CONN_CLIENT, CONN_IDLE, -1);
    metrics_conn_add(m, CONN_CLIENT, CONN_ACTIVE, 1);
    metrics_conn_add(m, CONN_UPSTREAM, CONN_IDLE, 3);
    metrics_add(m, M_UPSTREAM_CONNECTS, 2);
    metrics_config_generation(3);
    metrics_config_reload(RELOAD_OK);
    metrics_config_reload(RELOAD_OK);
    metrics_config_reload(RELOAD_INVALID);
    struct metrics_origin origins[] = {{"app", "127.0.0.1:3000", true, .first = true},
                                       {"app", "127.0.0.1:3001", false, .in_flight = 0}};
    /* one past 2038 and one before 1970: the value is a signed Unix time, never wrapped */
    struct metrics_cert certs[] = {{"/etc/portico/cert.pem", INT64_C(4102444800)},
                                   {"/etc/portico/client.pem", -86400}};
    struct metrics_scrape sc = {origins, 2, 5, 7, certs, 2, 0, 0, 0, 0};
    char *text = render(&sc);
    validate(text);
    assert_family(text, "portico_requests_total",
                  "portico_requests_total{route=\"\",code=\"400\",failure=\"\"} 1\n"
                  "portico_requests_total{route=\"\",code=\"404\",failure=\"\"} 1\n"
                  "portico_requests_total{route=\"api\",code=\"200\",failure=\"\"} 2\n"
                  "portico_requests_total{route=\"api\",code=\"502\","
                  "failure=\"connect_refused\"} 1\n"
                  "portico_requests_total{route=\"web\",code=\"499\",failure=\"\"} 1\n");
    assert_family(text, "portico_responses_total",
                  "portico_responses_total{code=\"200\",class=\"2xx\"} 2\n"
                  "portico_responses_total{code=\"400\",class=\"4xx\"} 1\n"
                  "portico_responses_total{code=\"404\",class=\"4xx\"} 1\n"
                  "portico_responses_total{code=\"499\",class=\"4xx\"} 1\n"
                  "portico_responses_total{code=\"502\",class=\"5xx\"} 1\n");
    assert_true(strstr(text, "portico_upstream_failures_total{failure=\"connect_refused\"} 1\n"));
    assert_true(strstr(text, "portico_upstream_failures_total{failure=\"read_timeout\"} 0\n"));
    const char *h = "portico_phase_duration_seconds";
    char want[8192];
    size_t n = 0;
    static const struct {
        const char *phase;
        int first;  /* index of the first bucket that counts the observation */
        const char *sum;
    } phases[] = {{"connect", 0, "0.001000"}, {"first_byte", 1, "0.001001"},
                  {"total", 15, "60.000001"}};
    static const char *const le[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                     "0.1",   "0.25",   "0.5",   "1",    "2.5",   "5",
                                     "10",    "30",     "60",    "+Inf"};
    for (size_t p = 0; p < ARRAY_LEN(phases); p++) {
        for (size_t b = 0; b < ARRAY_LEN(le); b++)
            n += (size_t)snprintf(want + n, sizeof(want) - n,
                                  "%s_bucket{upstream=\"app\",phase=\"%s\",le=\"%s\"} %d\n", h,
                                  phases[p].phase, le[b], (int)b >= phases[p].first);
        n += (size_t)snprintf(want + n, sizeof(want) - n,
                              "%s_sum{upstream=\"app\",phase=\"%s\"} %s\n"
                              "%s_count{upstream=\"app\",phase=\"%s\"} 1\n",
                              h, phases[p].phase, phases[p].sum, h, phases[p].phase);
    }
    assert_family(text, h, want);
    assert_family(text, "portico_upstream_origin_up",
                  "portico_upstream_origin_up{upstream=\"app\",origin=\"127.0.0.1:3000\"} 1\n"
                  "portico_upstream_origin_up{upstream=\"app\",origin=\"127.0.0.1:3001\"} 0\n");
    assert_family(text, "portico_tls_certificate_expiry_seconds",
                  "portico_tls_certificate_expiry_seconds{file=\"/etc/portico/cert.pem\"} "
                  "4102444800\n"
                  "portico_tls_certificate_expiry_seconds{file=\"/etc/portico/client.pem\"} "
                  "-86400\n");
    assert_family(text, "portico_connections",
                  "portico_connections{side=\"client\",state=\"handshake\"} 0\n"
                  "portico_connections{side=\"client\",state=\"active\"} 1\n"
                  "portico_connections{side=\"client\",state=\"idle\"} 1\n"
                  "portico_connections{side=\"upstream\",state=\"handshake\"} 0\n"
                  "portico_connections{side=\"upstream\",state=\"active\"} 0\n"
                  "portico_connections{side=\"upstream\",state=\"idle\"} 3\n");
    assert_family(text, "portico_interim_responses_total",
                  "portico_interim_responses_total{code=\"100\",direction=\"dropped\"} 1\n"
                  "portico_interim_responses_total{code=\"103\",direction=\"relayed\"} 1\n"
                  "portico_interim_responses_total{code=\"103\",direction=\"synthesized\"} 1\n"
                  "portico_interim_responses_total{code=\"199\",direction=\"relayed\"} 1\n");
    assert_family(text, "portico_faults_injected_total",
                  "portico_faults_injected_total{fault=\"slow-checkout\",action=\"delay\"} 2\n");
    assert_family(text, "portico_config_generation", "portico_config_generation 3\n");
    assert_family(text, "portico_config_reloads_total",
                  "portico_config_reloads_total{result=\"ok\"} 2\n"
                  "portico_config_reloads_total{result=\"invalid\"} 1\n"
                  "portico_config_reloads_total{result=\"failed\"} 0\n");
    assert_family(text, "portico_build_info",
                  "portico_build_info{version=\"" PORTICO_VERSION "\"} 1\n");
    assert_family(text, "portico_upstream_connects_total", "portico_upstream_connects_total 2\n");
    assert_family(text, "portico_access_log_dropped_lines_total",
                  "portico_access_log_dropped_lines_total 5\n");
    assert_family(text, "portico_error_log_dropped_lines_total",
                  "portico_error_log_dropped_lines_total 7\n");
    /* today's interim families are sums of the new one */
    assert_family(text, "portico_interim_relayed_total", "portico_interim_relayed_total 2\n");
    assert_family(text, "portico_interim_dropped_total", "portico_interim_dropped_total 1\n");
    assert_family(text, "portico_early_hints_synthesized_total",
                  "portico_early_hints_synthesized_total 1\n");
    assert_true(strstr(text, "# HELP portico_requests_total ") != NULL);
    assert_true(strstr(text, "# TYPE portico_phase_duration_seconds histogram\n") != NULL);
    free(text);
}

#define SEND_COUNT(u) "portico_phase_duration_seconds_count{upstream=\"" u "\",phase=\"send\"}"

/* Two configuration generations with overlapping names count the same series; retiring the
 * old workers keeps their counts (and drops their gauges); counters never go back. */
static void test_generations_and_retire(void **state)
{
    (void)state;
    const char *const r1[] = {"a", "b"}, *const r2[] = {"b", "c"};
    const char *const u1[] = {"x"}, *const u2[] = {"y", "x"};
    struct metrics_labels l1 = {r1, 2, u1, 1, NULL, 0, NULL, 0}, l2 = {r2, 2, u2, 2, NULL, 0, NULL, 0};
    struct metrics *g1 = metrics_shard_create(&l1), *g1b = metrics_shard_create(&l1);
    struct metrics *g2 = metrics_shard_create(&l2);
    assert_non_null(g1);
    assert_non_null(g1b);
    assert_non_null(g2);
    struct timings t = {0};
    timings_set(&t, TIMING_SEND, 7);
    request(g1, 1, 0, 200, FAIL_NONE, &t);  /* b, x */
    request(g1b, 1, 0, 200, FAIL_NONE, &t); /* b, x: another worker of generation 1 */
    request(g2, 0, 1, 200, FAIL_NONE, &t);  /* b, x in generation 2 */
    request(g2, 1, 0, 504, FAIL_READ_TIMEOUT, &t); /* c, y */
    request(g1, 0, -1, 200, FAIL_NONE, NULL); /* a */
    metrics_add(g1, M_CONNECTIONS, 4);
    metrics_add(g2, M_CONNECTIONS, 1);
    metrics_conn_add(g1, CONN_CLIENT, CONN_IDLE, 2);
    metrics_conn_add(g2, CONN_CLIENT, CONN_IDLE, 1);
    metrics_rate_limited(g1, 1);  /* b */
    metrics_rate_limited(g2, 0);  /* b in generation 2: one series */
    metrics_rate_limited(g2, 1);  /* c */
    metrics_rate_limited(g2, 2);  /* no such route: not counted */
    static const char *const want_limited =
        "portico_requests_rate_limited_total{route=\"b\"} 2\n"
        "portico_requests_rate_limited_total{route=\"c\"} 1\n";
    static const char *const want_req =
        "portico_requests_total{route=\"a\",code=\"200\",failure=\"\"} 1\n"
        "portico_requests_total{route=\"b\",code=\"200\",failure=\"\"} 3\n"
        "portico_requests_total{route=\"c\",code=\"504\",failure=\"read_timeout\"} 1\n";
    char *before = render(NULL);
    validate(before);
    assert_family(before, "portico_requests_total", want_req);
    assert_true(sample(before, SEND_COUNT("x")) == 3);
    assert_true(sample(before, SEND_COUNT("y")) == 1);
    assert_true(sample(before, "portico_client_connections_total") == 5);
    assert_true(sample(before, "portico_connections{side=\"client\",state=\"idle\"}") == 3);
    assert_family(before, "portico_requests_rate_limited_total", want_limited);
    assert_null(strstr(before, "portico_faults_injected_total{")); /* its rows share the list */
    free(before);
    metrics_shard_retire(g1);
    metrics_shard_retire(g1b);
    metrics_shard_retire(NULL);
    char *after = render(NULL);
    validate(after);
    assert_family(after, "portico_requests_total", want_req);
    assert_true(sample(after, SEND_COUNT("x")) == 3);
    assert_true(sample(after, "portico_client_connections_total") == 5);
    assert_true(sample(after, "portico_connections{side=\"client\",state=\"idle\"}") == 1);
    assert_family(after, "portico_requests_rate_limited_total", want_limited);
    free(after);
    /* retired totals keep adding up with later shards of the same names */
    struct metrics *g3 = metrics_shard_create(&l1);
    request(g3, 1, 0, 200, FAIL_NONE, &t);
    metrics_shard_retire(g3);
    char *later = render(NULL);
    assert_true(sample(later, "portico_requests_total{route=\"b\",code=\"200\",failure=\"\"}") ==
                4);
    assert_true(sample(later, "portico_phase_duration_seconds_sum{upstream=\"x\",phase=\"send\"}")
                == 0.000028);
    free(later);
}

/* A shard keeps PAIR_CAP distinct (code, failure) pairs apart; the rest are counted per failure
 * type with code "other", so no count is ever lost. Codes outside 100-999 too. */
static void test_pair_overflow(void **state)
{
    (void)state;
    struct metrics *m = metrics_shard_create(&labels);
    uint64_t total = 0;
    for (int code = 100; code < 400; code++, total++)
        request(m, 0, 0, code, FAIL_NONE, NULL);
    for (int i = 0; i < 5; i++, total++)
        request(m, 0, 0, 600 + i, FAIL_INVALID_RESPONSE, NULL);
    request(m, 0, 0, 0, FAIL_NONE, NULL); /* nothing sent */
    request(m, 0, 0, 1234, FAIL_NONE, NULL);
    total += 2;
    char *text = render(NULL);
    validate(text);
    assert_true(sample(text, "portico_requests_total{route=\"api\",code=\"227\",failure=\"\"}") ==
                1);
    assert_true(sample(text, "portico_requests_total{route=\"api\",code=\"228\",failure=\"\"}") ==
                -1); /* past the 128th pair */
    assert_true(sample(text, "portico_requests_total{route=\"api\",code=\"other\",failure=\"\"}") ==
                300 - 128 + 2);
    assert_true(sample(text, "portico_requests_total{route=\"api\",code=\"other\","
                             "failure=\"invalid_response\"}") == 5);
    assert_int_equal(requests_sum(text), total);
    free(text);
}

/* Label values are escaped; names with every special character still give a valid file. */
static void test_escaping(void **state)
{
    (void)state;
    const char *const r[] = {"a\"b", "back\\slash", "new\nline"};
    const char *const u[] = {"u\"1"};
    const char *const f[] = {"f\\\"\n"};
    struct metrics_labels l = {r, 3, u, 1, f, 1, NULL, 0};
    struct metrics *m = metrics_shard_create(&l);
    struct timings t = {0};
    timings_set(&t, TIMING_DNS, 5);
    for (int i = 0; i < 3; i++)
        request(m, i, 0, 200, FAIL_NONE, &t);
    metrics_fault(m, 0, FAULT_RESET);
    struct metrics_origin o = {"u\"1", "[::1]:80\n", true, .first = true};
    struct metrics_cert cert = {"/etc/a\"b\\c\nd.pem", 1};
    struct metrics_scrape sc = {&o, 1, 0, 0, &cert, 1, 0, 0, 0, 0};
    char *text = render(&sc);
    validate(text);
    assert_true(strstr(text, "{file=\"/etc/a\\\"b\\\\c\\nd.pem\"} 1\n"));
    assert_true(strstr(text, "{route=\"a\\\"b\",code=\"200\",failure=\"\"} 1\n"));
    assert_true(strstr(text, "{route=\"back\\\\slash\",code=\"200\",failure=\"\"} 1\n"));
    assert_true(strstr(text, "{route=\"new\\nline\",code=\"200\",failure=\"\"} 1\n"));
    assert_true(strstr(text, "{fault=\"f\\\\\\\"\\n\",action=\"reset\"} 1\n"));
    assert_true(strstr(text, "{upstream=\"u\\\"1\",origin=\"[::1]:80\\n\"} 1\n"));
    free(text);
}

/* The families of before issue 9 are still rendered, as sums of the labelled ones. */
static void test_older_families(void **state)
{
    (void)state;
    struct metrics *m = metrics_shard_create(NULL);
    assert_non_null(m);
    metrics_request_done(m, &(struct metrics_sample){-1, -1, 504, FAIL_CONNECT_TIMEOUT, NULL});
    metrics_interim(m, 100, INTERIM_SYNTHESIZED);
    metrics_interim(m, 102, INTERIM_SYNTHESIZED);
    metrics_interim(m, 102, INTERIM_SYNTHESIZED);
    metrics_interim(m, 103, INTERIM_SYNTHESIZED);
    metrics_interim(m, 103, INTERIM_RELAYED);
    metrics_interim(m, 100, INTERIM_RELAYED);
    metrics_interim(m, 102, INTERIM_RELAYED);
    metrics_interim(m, 102, INTERIM_DROPPED);
    metrics_conn_add(m, CONN_CLIENT, CONN_IDLE, 1);
    metrics_conn_add(m, CONN_CLIENT, CONN_ACTIVE, 1);
    metrics_conn_add(m, CONN_UPSTREAM, CONN_ACTIVE, 1); /* not a client connection */
    metrics_tunnel_end(m, TUNNEL_END_IDLE);
    metrics_tunnel_end(m, TUNNEL_END_IDLE);
    metrics_tunnel_end(m, TUNNEL_END_COUNT); /* not an end: ignored */
    char *text = render(NULL);
    validate(text);
    assert_true(sample(text, "portico_requests_total{route=\"\",code=\"504\","
                             "failure=\"connect_timeout\"}") == 1);
    assert_true(sample(text, "portico_upstream_failures_total{failure=\"connect_timeout\"}") == 1);
    assert_true(sample(text, "portico_responses_total{code=\"504\",class=\"5xx\"}") == 1);
    assert_true(sample(text, "portico_continue_synthesized_total") == 1);
    assert_true(sample(text, "portico_processing_synthesized_total") == 2);
    assert_true(sample(text, "portico_early_hints_synthesized_total") == 1);
    assert_true(sample(text, "portico_interim_relayed_total") == 3);
    assert_true(sample(text, "portico_interim_dropped_total") == 1);
    assert_true(sample(text, "portico_client_connections_active") == 2);
    assert_true(sample(text, "portico_tunnels_closed_total{reason=\"idle\"}") == 2);
    assert_true(sample(text, "portico_tunnels_closed_total{reason=\"client_closed\"}") == 0);
    free(text);
}

/* Lookups over TCP by how they ended, every result listed (0 included), a retired worker's
 * counts folded in. */
static void test_dns_tcp_lookups(void **state)
{
    (void)state;
    struct metrics *a = metrics_shard_create(NULL), *b = metrics_shard_create(NULL);
    assert_non_null(a);
    assert_non_null(b);
    metrics_dns_tcp(a, DNS_TCP_ANSWERED);
    metrics_dns_tcp(a, DNS_TCP_SKIPPED);
    metrics_dns_tcp(b, DNS_TCP_SKIPPED);
    metrics_dns_tcp(b, DNS_TCP_TIMEOUT);
    metrics_dns_tcp(b, DNS_TCP_OUTCOME_COUNT); /* not a result: ignored */
    metrics_shard_retire(b);
    char *text = render(NULL);
    validate(text);
    assert_family(text, "portico_dns_tcp_lookups_total",
                  "portico_dns_tcp_lookups_total{result=\"answered\"} 1\n"
                  "portico_dns_tcp_lookups_total{result=\"failed\"} 0\n"
                  "portico_dns_tcp_lookups_total{result=\"timeout\"} 1\n"
                  "portico_dns_tcp_lookups_total{result=\"cancelled\"} 0\n"
                  "portico_dns_tcp_lookups_total{result=\"skipped\"} 2\n");
    free(text);
}

/* HTTP/2 streams not processed by why, both reasons listed (0 included), a retired worker's
 * counts folded in; the log's words for each. */
static void test_h2_refused(void **state)
{
    (void)state;
    struct metrics *a = metrics_shard_create(NULL), *b = metrics_shard_create(NULL);
    assert_non_null(a);
    assert_non_null(b);
    metrics_h2_refused(a, H2_REFUSED_CONCURRENCY);
    metrics_h2_refused(b, H2_REFUSED_CONCURRENCY);
    metrics_h2_refused(b, H2_REFUSED_COUNT); /* not a reason: ignored */
    metrics_shard_retire(b);
    char *text = render(NULL);
    validate(text);
    assert_family(text, "portico_http2_refused_streams_total",
                  "portico_http2_refused_streams_total{reason=\"max_concurrent_streams\"} 2\n"
                  "portico_http2_refused_streams_total{reason=\"goaway\"} 0\n");
    free(text);
    assert_string_equal(h2_refused_words(H2_REFUSED_GOAWAY), "past a drain's GOAWAY");
    assert_string_equal(h2_refused_label((enum h2_refused)42), "?");
}

/* Failed accepts by errno class, every reason listed: descriptors (EMFILE, ENFILE), memory
 * (ENOBUFS, ENOMEM), anything else other. */
static void test_accept_errors(void **state)
{
    (void)state;
    struct metrics *a = metrics_shard_create(NULL);
    assert_non_null(a);
    static const int errs[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPERM};
    for (size_t i = 0; i < ARRAY_LEN(errs); i++)
        metrics_accept_error(a, accept_error_of(errs[i]));
    metrics_accept_error(a, ACCEPT_ERROR_COUNT); /* not a reason: ignored */
    char *text = render(NULL);
    validate(text);
    assert_family(text, "portico_accept_errors_total",
                  "portico_accept_errors_total{reason=\"descriptors\"} 2\n"
                  "portico_accept_errors_total{reason=\"memory\"} 2\n"
                  "portico_accept_errors_total{reason=\"other\"} 2\n");
    free(text);
}

/* Request body rests, counted once each by protocol and how they ended, every series listed;
 * their bytes summed by protocol, across shards. */
static void test_discards(void **state)
{
    (void)state;
    struct metrics *a = metrics_shard_create(NULL), *b = metrics_shard_create(NULL);
    assert_non_null(a);
    assert_non_null(b);
    metrics_discard_end(a, false, DISCARD_END_READ, 10);
    metrics_discard_end(b, false, DISCARD_END_READ, 5);
    metrics_discard_end(a, false, DISCARD_END_CLOSED, 0);
    metrics_discard_end(a, true, DISCARD_END_RESET, 1048577);
    metrics_discard_end(b, true, DISCARD_END_CLIENT_CLOSED, 3);
    metrics_discard_end(b, true, DISCARD_END_ANSWERED, 2);
    metrics_discard_end(a, true, DISCARD_END_COUNT, 7); /* not an end: ignored, its bytes too */
    char *text = render(NULL);
    validate(text);
    assert_family(text, "portico_request_body_discards_total",
                  "portico_request_body_discards_total{protocol=\"http1\",result=\"read\"} 2\n"
                  "portico_request_body_discards_total{protocol=\"http1\",result=\"reset\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http1\",result=\"answered\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http1\",result=\"closed\"} 1\n"
                  "portico_request_body_discards_total{protocol=\"http1\",result=\"timeout\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http1\","
                  "result=\"client_closed\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http2\",result=\"read\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http2\",result=\"reset\"} 1\n"
                  "portico_request_body_discards_total{protocol=\"http2\",result=\"answered\"} 1\n"
                  "portico_request_body_discards_total{protocol=\"http2\",result=\"closed\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http2\",result=\"timeout\"} 0\n"
                  "portico_request_body_discards_total{protocol=\"http2\","
                  "result=\"client_closed\"} 1\n");
    assert_family(text, "portico_request_body_discarded_bytes_total",
                  "portico_request_body_discarded_bytes_total{protocol=\"http1\"} 15\n"
                  "portico_request_body_discarded_bytes_total{protocol=\"http2\"} 1048582\n");
    free(text);
}

/* An empty process still renders a valid file with every family described. */
static void test_empty(void **state)
{
    (void)state;
    char *text = render(NULL);
    assert_int_equal(validate(text), METRIC_COUNT + FAILURE_COUNT - 1 + 6 + 1 + 5 + 1 + 1 + 3 + 1 +
                                         TUNNEL_END_COUNT + PP_ERROR_COUNT + CERT_REFUSAL_COUNT +
                                         DNS_TCP_OUTCOME_COUNT + ACCEPT_ERROR_COUNT +
                                         2 * DISCARD_END_COUNT + 2 + H2_REFUSED_COUNT + 1 +
                                         CONN_REFUSAL_COUNT + 4 /* the per-client table */);
    assert_true(sample(text, "portico_tunnels_closed_total{reason=\"cut\"}") == 0);
    assert_true(strstr(text, "# TYPE portico_requests_total counter\n"));
    assert_true(strstr(text, "# TYPE portico_upstream_origin_up gauge\n"));
    assert_true(strstr(text, "# TYPE portico_faults_injected_total counter\n"));
    free(text);
}

/* The validator refuses what it must: each row breaks one rule of the format. */
static void test_validator_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "x 1\n",                                                    /* no TYPE */
        "# TYPE x counter\n# TYPE x counter\nx 1\n",                /* TYPE twice */
        "# HELP x a\n# TYPE x counter\nx{a=\"b\" 1\n",              /* unclosed labels */
        "# HELP x a\n# TYPE x counter\nx{a=\"\\q\"} 1\n",           /* bad escape */
        "# HELP x a\n# TYPE x counter\nx{1a=\"b\"} 1\n",            /* bad label name */
        "# HELP x a\n# TYPE x counter\nx -1\n",                     /* negative counter */
        "# HELP x a\n# TYPE x counter\nx 1\nx 2\n",                 /* series twice */
        "# HELP h a\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n"
        "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",            /* not cumulative */
        "# HELP h a\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
        "# HELP h a\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# HELP x a\n# TYPE x gauge\nx 1\n# HELP y a\n# TYPE y gauge\ny 1\nx{a=\"b\"} 1\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int samples;
        if (!check_format(bad[i], &samples))
            fail_msg("row %zu accepted:\n%s", i, bad[i]);
    }
}

#define WRITES 200000

static atomic_int writer_done;

static void *writer_main(void *arg)
{
    struct metrics *m = arg;
    struct timings t = {0};
    timings_set(&t, TIMING_TOTAL, 3000);
    for (int i = 0; i < WRITES; i++) {
        /* new pairs keep appearing while the scraper reads */
        request(m, i & 1, 0, 200 + (i % 64), FAIL_NONE, &t);
        metrics_add(m, M_REQUESTS, 1);
    }
    atomic_store(&writer_done, 1);
    return NULL;
}

/* Scrapes while a worker writes: every scrape is valid, values never go back, and once the
 * writer is done the totals are exact. */
static void test_scrape_while_writing(void **state)
{
    (void)state;
    struct metrics *m = metrics_shard_create(&labels);
    atomic_store(&writer_done, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, m), 0);
    uint64_t last = 0, last_count = 0;
    int scrapes = 0;
    while (!atomic_load(&writer_done) && scrapes < 10000) {
        char *text = render(NULL);
        validate(text);
        uint64_t sum = requests_sum(text);
        double count = sample(text, "portico_phase_duration_seconds_count{upstream=\"app\","
                                    "phase=\"total\"}");
        assert_true(sum >= last);
        assert_true(count < 0 || (uint64_t)count >= last_count);
        last = sum;
        last_count = count < 0 ? 0 : (uint64_t)count;
        free(text);
        scrapes++;
    }
    pthread_join(th, NULL);
    print_message("%d scrapes during the writes\n", scrapes);
    char *text = render(NULL);
    assert_int_equal(requests_sum(text), WRITES);
    assert_true(sample(text, "portico_requests_started_total") == WRITES);
    assert_true(sample(text, "portico_phase_duration_seconds_count{upstream=\"app\","
                             "phase=\"total\"}") == WRITES);
    free(text);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(interim_direction_name(INTERIM_SYNTHESIZED), "synthesized");
    assert_string_equal(conn_side_name(CONN_UPSTREAM), "upstream");
    assert_string_equal(conn_state_name(CONN_HANDSHAKE), "handshake");
    assert_string_equal(fault_action_name(FAULT_RESPONSE_DELAY), "response_delay");
    assert_string_equal(reload_result_name(RELOAD_FAILED), "failed");
    assert_string_equal(reload_result_name((enum reload_result)42), "?");
    assert_string_equal(tunnel_end_words(TUNNEL_END_IDLE), "idle for tunnel_timeout");
    assert_string_equal(tunnel_end_words((enum tunnel_end)42), "?");
    /* the buckets go from 1 ms to 60 s, increasing */
    assert_int_equal(metrics_bucket_us[0], 1000);
    assert_int_equal(metrics_bucket_us[METRICS_BUCKETS - 1], 60000000);
    for (int i = 1; i < METRICS_BUCKETS; i++)
        assert_true(metrics_bucket_us[i] > metrics_bucket_us[i - 1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_exact_lines, teardown),
        cmocka_unit_test_teardown(test_generations_and_retire, teardown),
        cmocka_unit_test_teardown(test_pair_overflow, teardown),
        cmocka_unit_test_teardown(test_escaping, teardown),
        cmocka_unit_test_teardown(test_older_families, teardown),
        cmocka_unit_test_teardown(test_dns_tcp_lookups, teardown),
        cmocka_unit_test_teardown(test_h2_refused, teardown),
        cmocka_unit_test_teardown(test_accept_errors, teardown),
        cmocka_unit_test_teardown(test_discards, teardown),
        cmocka_unit_test_teardown(test_empty, teardown),
        cmocka_unit_test(test_validator_refuses),
        cmocka_unit_test_teardown(test_scrape_while_writing, teardown),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
