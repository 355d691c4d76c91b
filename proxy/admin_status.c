/*
 * admin_status.c — /status and the status page. See admin_status.h.
 *
 * /status carries "the same as /metrics": rather than a second renderer over the shards, the
 * exposition metrics_render writes is read back into JSON, so the two can never disagree. Pool
 * sizes and the last minutes come from the recent-minutes shards (recent.h), which each worker
 * writes and this thread only reads.
 */
#include "portico/admin_status.h"

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/balance.h"
#include "portico/climit.h"
#include "portico/config.h"
#include "portico/fmt.h"
#include "portico/generation.h"
#include "portico/log.h"
#include "portico/metrics.h"
#include "portico/recent.h"
#include "portico/sticky.h"
#include "portico/tls.h"
#include "portico/util.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "unknown"
#endif

#define JSON_STR_MAX 1024 /* longest string value written (help texts, details, names) */

static const char *const class_names[RECENT_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx",
                                                        "other"};


/* ---- JSON pieces ---- */

/* An addition that failed (out of memory) since the writer of a whole piece (admin_metrics_json,
 * one part of a page) began: its JSON would have a hole, so that writer fails whole instead.
 * Kept aside rather than checked at each of the ~60 additions; per thread (admin and workers). */
static __thread bool json_lost;

static int jadd(struct evbuffer *out, const void *p, size_t n)
{
    int rc = evbuffer_add(out, p, n);
    json_lost |= rc != 0;
    return rc;
}

__attribute__((format(printf, 2, 3))) static void jprintf(struct evbuffer *out, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_lost |= evbuffer_add_vprintf(out, fmt, ap) < 0;
    va_end(ap);
}

/* s[n] as a JSON string (cut at JSON_STR_MAX bytes). */
static void jstr_n(struct evbuffer *out, const char *s, size_t n)
{
    char buf[JSON_STR_MAX * 6 + 2];
    struct fmt_buf b;
    fmt_init(&b, buf, sizeof(buf));
    fmt_json_str(&b, s, n, JSON_STR_MAX);
    jadd(out, buf, b.len);
}

/* A NUL-terminated string as JSON, null for NULL (and for "" when empty_null). */
static void jstr(struct evbuffer *out, const char *s, bool empty_null)
{
    if (!s || (empty_null && !s[0]))
        jadd(out, "null", 4);
    else
        jstr_n(out, s, strlen(s));
}

static void jtime(struct evbuffer *out, uint64_t wall)
{
    char buf[40];
    struct fmt_buf b;
    fmt_init(&b, buf, sizeof(buf));
    fmt_char(&b, '"');
    fmt_time(&b, wall);
    fmt_char(&b, '"');
    jadd(out, buf, b.len);
}

static void jms(struct evbuffer *out, uint64_t us)
{
    char buf[32];
    struct fmt_buf b;
    fmt_init(&b, buf, sizeof(buf));
    fmt_ms3(&b, us);
    jadd(out, buf, b.len);
}

/* ---- the exposition as JSON ---- */

static bool is_number(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789.eE+-", p[i]))
            return false;
    return !(n == 1 && (p[0] == '.' || p[0] == '-' || p[0] == '+'));
}

/* The labels of a sample, {a="x",b="y"} at p (after the brace) up to end, as a JSON object.
 * Returns where they end (after the closing brace), or NULL when malformed. */
static const char *labels_json(struct evbuffer *out, const char *p, const char *end)
{
    char value[JSON_STR_MAX];
    bool first = true;
    jadd(out, "{", 1);
    while (p < end && *p != '}') {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 >= end || eq[1] != '"')
            return NULL;
        if (!first)
            jadd(out, ",", 1);
        first = false;
        jstr_n(out, p, (size_t)(eq - p));
        jadd(out, ":", 1);
        size_t n = 0;
        for (p = eq + 2; p < end && *p != '"'; p++) { /* the exposition's escapes undone */
            char c = *p;
            if (c == '\\' && p + 1 < end) {
                c = *++p == 'n' ? '\n' : *p;
            }
            if (n < sizeof(value))
                value[n++] = c;
        }
        if (p == end)
            return NULL;
        jstr_n(out, value, n);
        p++; /* the closing quote */
        if (p < end && *p == ',')
            p++;
    }
    if (p == end)
        return NULL;
    jadd(out, "}", 1);
    return p + 1;
}

/* One sample line "name{labels} value" as a JSON object; false when it is not one. */
static bool sample_json(struct evbuffer *out, const char *p, const char *end, bool first)
{
    const char *name_end = p;
    while (name_end < end && *name_end != '{' && *name_end != ' ')
        name_end++;
    const char *v = memrchr(p, ' ', (size_t)(end - p));
    if (!v || v < name_end || !is_number(v + 1, (size_t)(end - v - 1)))
        return false;
    jprintf(out, "%s{\"name\":", first ? "" : ",");
    jstr_n(out, p, (size_t)(name_end - p));
    jadd(out, ",\"labels\":", 10);
    if (*name_end == '{') {
        if (!labels_json(out, name_end + 1, v))
            jadd(out, "{}", 2); /* never from metrics_render; keeps the JSON whole */
    } else {
        jadd(out, "{}", 2);
    }
    jadd(out, ",\"value\":", 9);
    jadd(out, v + 1, (size_t)(end - v - 1));
    jadd(out, "}", 1);
    return true;
}

/* The conversion of an exposition into JSON, fed whole lines a slice at a time. */
struct metrics_json {
    char help[JSON_STR_MAX];           /* the last HELP's text, for the TYPE line after it */
    size_t help_len;
    bool has_help;
    bool open, first_family, first_sample;
};

static int metrics_json_start(struct metrics_json *j, struct evbuffer *out)
{
    memset(j, 0, sizeof(*j));
    j->first_family = j->first_sample = true;
    return jadd(out, "[", 1);
}

/* Converts the lines of text[len] (the last may lack its line feed). */
static void metrics_json_lines(struct metrics_json *j, struct evbuffer *out, const char *text,
                               size_t len)
{
    const char *end = text + len;
    for (const char *p = text; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le - p > 7 && memcmp(p, "# HELP ", 7) == 0) {
            const char *sp = memchr(p + 7, ' ', (size_t)(le - p - 7));
            const char *help = sp ? sp + 1 : le;
            size_t help_len = (size_t)(le - help);
            if (help_len && help[help_len - 1] == '.')
                help_len--; /* the exposition's sentence, a label's text here */
            /* cut where jstr_n would cut it anyway */
            j->help_len = MIN(help_len, sizeof(j->help));
            memcpy(j->help, help, j->help_len);
            j->has_help = true;
        } else if (le - p > 7 && memcmp(p, "# TYPE ", 7) == 0) {
            const char *name = p + 7;
            const char *sp = memchr(name, ' ', (size_t)(le - name));
            if (!sp)
                goto next;
            if (j->open)
                jadd(out, "]}", 2);
            jprintf(out, "%s{\"name\":", j->first_family ? "" : ",");
            jstr_n(out, name, (size_t)(sp - name));
            jadd(out, ",\"type\":", 8);
            jstr_n(out, sp + 1, (size_t)(le - sp - 1));
            jadd(out, ",\"help\":", 8);
            jstr_n(out, j->help, j->has_help ? j->help_len : 0);
            jadd(out, ",\"samples\":[", 12);
            j->open = true;
            j->first_family = false;
            j->first_sample = true;
            j->has_help = false;
        } else if (j->open && le > p && *p != '#' && sample_json(out, p, le, j->first_sample)) {
            j->first_sample = false;
        }
    next:
        p = nl ? nl + 1 : end;
    }
}

static int metrics_json_end(struct metrics_json *j, struct evbuffer *out)
{
    if (j->open)
        jadd(out, "]}", 2);
    return jadd(out, "]", 1);
}

int admin_metrics_json(struct evbuffer *out, const char *text, size_t len)
{
    struct metrics_json *j = malloc(sizeof(*j));
    if (!j)
        return -1;
    json_lost = false;
    metrics_json_start(j, out);
    metrics_json_lines(j, out, text, len);
    metrics_json_end(j, out);
    free(j);
    return json_lost ? -1 : 0;
}

/* ---- / ---- */

/* The status page: one self-contained document (inline CSS and script, no external asset) that
 * renders /status and fetches it again every 2 s. Its script never throws into the page: a
 * failed refresh is shown in the page and marked data-state="error" on <body>. */
static const char admin_status_page[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
    "<title>Portico status</title>\n"
    "<style>\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;background:#f4f5f7;color:#1f2328;font:14px/1.45 system-ui,-apple-system,"
    "'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\n"
    "main{max-width:1180px;margin:0 auto;padding:18px 20px 40px}\n"
    "header{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap;margin-bottom:14px}\n"
    "h1{margin:0;font-size:24px;font-weight:650}\n"
    "h2{margin:26px 0 8px;font-size:16px;font-weight:650}\n"
    ".meta{color:#57606a}\n"
    "#live{display:inline-block;width:10px;height:10px;border-radius:50%;background:#8c959f;"
    "margin-right:6px}\n"
    "#live.ok{background:#2da44e}#live.bad{background:#d1242f}\n"
    ".tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px}\n"
    ".tile{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px}\n"
    ".tile span{display:block;font-size:12px;color:#57606a;text-transform:uppercase;"
    "letter-spacing:.05em}\n"
    ".tile strong{font-size:26px;font-weight:650}\n"
    ".c1{color:#6e7781}.c2{color:#1a7f37}.c3{color:#0969da}.c4{color:#9a6700}.c5{"
    "color:#cf222e}.cother{color:#6e7781}\n"
    ".chart{display:flex;align-items:flex-end;gap:4px;height:130px;background:#fff;"
    "border:1px solid #d0d7de;border-radius:8px;padding:10px 10px 22px;position:relative}\n"
    ".bar{flex:1;display:flex;flex-direction:column-reverse;height:100%;position:relative}\n"
    ".bar i{display:block;width:100%}\n"
    ".bar b{position:absolute;bottom:-18px;left:0;right:0;text-align:center;font-size:10px;"
    "font-weight:400;color:#57606a}\n"
    ".b1{background:#afb8c1}.b2{background:#4ac26b}.b3{background:#54aeff}.b4{"
    "background:#d4a72c}.b5{background:#fa4549}.bother{background:#8c959f}\n"
    ".legend{font-size:12px;color:#57606a;margin:6px 0 0}\n"
    ".legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;"
    "vertical-align:-1px}\n"
    "table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #d0d7de}\n"
    "th,td{padding:6px 10px;border-top:1px solid #eaeef2;text-align:left;vertical-align:top}"
    "\n"
    "th{background:#f6f8fa;font-weight:600;color:#57606a;font-size:12px;white-space:nowrap}\n"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;"
    "overflow-wrap:anywhere}\n"
    ".up{color:#1a7f37;font-weight:600}.down{color:#cf222e;font-weight:600}\n"
    ".why{color:#57606a;font-size:12px}\n"
    ".empty{color:#57606a;font-style:italic}\n"
    "#error{display:none;background:#fff1f0;border:1px solid #d1242f;color:#82071e;"
    "padding:8px 12px;border-radius:6px;margin-bottom:12px}\n"
    "</style></head>\n"
    "<body data-state=\"loading\">\n"
    "<main>\n"
    "<header><h1>Portico</h1><span class=\"meta\"><span id=\"live\"></span><span "
    "id=\"summary\">loading /status &#8230;</span></span></header>\n"
    "<div id=\"error\"></div>\n"
    "<h2>Requests, last <span id=\"window\">15</span> minutes</h2>\n"
    "<div class=\"tiles\" id=\"tiles\"></div>\n"
    "<div class=\"chart\" id=\"chart\"></div>\n"
    "<div class=\"legend\" id=\"legend\"></div>\n"
    "<h2>Failures by type, last <span class=\"wmin\">15</span> minutes</h2>\n"
    "<table><thead><tr><th>failure type</th><th class=\"n\">count</th><th class=\"n\">last 5 "
    "min</th><th>what it means</th></tr></thead><tbody id=\"failures\"></tbody></table>\n"
    "<h2>Origins</h2>\n"
    "<table><thead><tr><th>upstream (balance)</th><th>origin</th><th>health</th><th "
    "class=\"n\">idle pooled (upstream)</th><th class=\"n\">recent failures "
    "(upstream)</th></tr></thead><tbody id=\"origins\"></tbody></table>\n"
    "<h2>Latency per phase and upstream <span class=\"meta\">(since start, from the "
    "histograms)</span></h2>\n"
    "<table><thead><tr><th>upstream</th><th>phase</th><th class=\"n\">count</th><th "
    "class=\"n\">p50 ms</th><th class=\"n\">p90 ms</th><th class=\"n\">p99 ms</th><th "
    "class=\"n\">mean ms</th></tr></thead><tbody id=\"latency\"></tbody></table>\n"
    "<h2>Most recent failures</h2>\n"
    "<table><thead><tr><th>time</th><th class=\"n\">status</th><th>failure</th><th>phase</th>"
    "<th>route / upstream / origin</th><th class=\"n\">total "
    "ms</th><th>explanation</th></tr></thead><tbody id=\"recent\"></tbody></table>\n"
    "</main>\n"
    "<script>\n"
    "'use strict';\n"
    "var REFRESH_MS = 2000;\n"
    "var CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'];\n"
    "var MEANING = {\n"
    "  dns_error: 'the origin name does not resolve (NXDOMAIN, SERVFAIL, no address)',\n"
    "  dns_timeout: 'the resolver did not answer within dns_timeout',\n"
    "  connect_refused: 'the origin refused the TCP connection (RST to the SYN): nothing "
    "listens',\n"
    "  connect_timeout: 'no SYN-ACK within connect_timeout: the origin host or its network "
    "is down or filtered',\n"
    "  connect_unreachable: 'no route to the origin (host or network unreachable)',\n"
    "  tls_handshake_failed: 'the TLS handshake with the origin failed (alert, protocol "
    "error, version mismatch)',\n"
    "  tls_handshake_timeout: 'the TLS handshake did not finish within tls_timeout',\n"
    "  tls_certificate_invalid: 'the origin certificate did not verify (untrusted, expired, "
    "wrong name)',\n"
    "  send_timeout: 'the origin took no request bytes for send_timeout',\n"
    "  send_error: 'the origin reset or closed the connection while the request was being "
    "sent',\n"
    "  first_byte_timeout: 'the origin accepted the request but sent no response byte within "
    "first_byte_timeout: the application is slow',\n"
    "  read_timeout: 'the response stalled longer than read_timeout',\n"
    "  empty_response: 'the origin closed the connection without sending a byte',\n"
    "  connection_reset: 'the origin reset or closed the connection before the response head "
    "was complete',\n"
    "  invalid_response: 'the origin answered something that is not valid HTTP',\n"
    "  total_timeout: 'the exchange took longer than total_timeout before the response head',"
    "\n"
    "  no_healthy_origin: 'every origin of the upstream is marked down (passive health or "
    "its health_check)',\n"
    "  internal_error: 'Portico itself ran short (no free local port toward the origin, no "
    "descriptor, no memory): not the origin',\n"
    "  queue_timeout: 'every usable origin was at max_conns for queue_timeout while the "
    "request waited in the queue: the origins are busy, not down',\n"
    "  queue_full: 'every usable origin at max_conns and max_queue requests waiting already: "
    "refused at once'\n"
    "};\n"
    "function el(tag, text, cls) {\n"
    "  var e = document.createElement(tag);\n"
    "  if (text !== undefined && text !== null) e.textContent = String(text);\n"
    "  if (cls) e.className = cls;\n"
    "  return e;\n"
    "}\n"
    "function row(cells) {\n"
    "  var tr = document.createElement('tr');\n"
    "  cells.forEach(function (c) { tr.appendChild(c); });\n"
    "  return tr;\n"
    "}\n"
    "function fill(id, rows, cols, emptyText) {\n"
    "  var tb = document.getElementById(id);\n"
    "  tb.textContent = '';\n"
    "  rows.forEach(function (r) { tb.appendChild(r); });\n"
    "  if (!rows.length) {\n"
    "    var td = el('td', emptyText, 'empty');\n"
    "    td.colSpan = cols;\n"
    "    tb.appendChild(row([td]));\n"
    "  }\n"
    "}\n"
    "function ms(v) { return v === null || v === undefined || isNaN(v) ? '\\u2014' : "
    "v.toFixed(1); }\n"
    "function family(status, name) {\n"
    "  for (var i = 0; i < status.metrics.length; i++)\n"
    "    if (status.metrics[i].name === name) return status.metrics[i];\n"
    "  return { samples: [] };\n"
    "}\n"
    "// A quantile from cumulative buckets, interpolated inside the bucket (as Prometheus "
    "does).\n"
    "function quantile(q, buckets, count) {\n"
    "  if (!count) return null;\n"
    "  var rank = q * count, prevLe = 0, prevN = 0;\n"
    "  for (var i = 0; i < buckets.length; i++) {\n"
    "    var b = buckets[i];\n"
    "    if (b.n >= rank) {\n"
    "      if (b.le === Infinity) return prevLe;\n"
    "      var inBucket = b.n - prevN;\n"
    "      return prevLe + (b.le - prevLe) * (inBucket ? (rank - prevN) / inBucket : 1);\n"
    "    }\n"
    "    prevLe = b.le; prevN = b.n;\n"
    "  }\n"
    "  return prevLe;\n"
    "}\n"
    "function renderTiles(s) {\n"
    "  var totals = { all: 0 }, tiles = document.getElementById('tiles');\n"
    "  CLASSES.forEach(function (c) { totals[c] = 0; });\n"
    "  s.minutes.forEach(function (m) {\n"
    "    totals.all += m.requests;\n"
    "    CLASSES.forEach(function (c) { totals[c] += m.classes[c]; });\n"
    "  });\n"
    "  tiles.textContent = '';\n"
    "  var t = el('div', null, 'tile');\n"
    "  t.appendChild(el('span', 'requests'));\n"
    "  var v = el('strong', totals.all);\n"
    "  v.id = 'count-all';\n"
    "  t.appendChild(v);\n"
    "  tiles.appendChild(t);\n"
    "  CLASSES.forEach(function (c) {\n"
    "    if (c === '1xx') return;\n"
    "    var tile = el('div', null, 'tile');\n"
    "    tile.appendChild(el('span', c === 'other' ? 'no status' : c));\n"
    "    var n = el('strong', totals[c], 'c' + (c === 'other' ? 'other' : c.charAt(0)));\n"
    "    n.id = 'count-' + c;\n"
    "    tile.appendChild(n);\n"
    "    tiles.appendChild(tile);\n"
    "  });\n"
    "}\n"
    "function renderChart(s) {\n"
    "  var chart = document.getElementById('chart'), max = 1;\n"
    "  s.minutes.forEach(function (m) { max = Math.max(max, m.requests); });\n"
    "  chart.textContent = '';\n"
    "  s.minutes.forEach(function (m) {\n"
    "    var bar = el('div', null, 'bar');\n"
    "    var d = new Date(m.start_ms);\n"
    "    bar.title = d.toLocaleTimeString() + ': ' + m.requests + ' requests';\n"
    "    CLASSES.forEach(function (c) {\n"
    "      var n = m.classes[c];\n"
    "      if (!n) return;\n"
    "      var seg = el('i', null, 'b' + (c === 'other' ? 'other' : c.charAt(0)));\n"
    "      seg.style.height = (100 * n / max) + '%';\n"
    "      seg.title = n + ' ' + c;\n"
    "      bar.appendChild(seg);\n"
    "    });\n"
    "    bar.appendChild(el('b', ('0' + d.getHours()).slice(-2) + ':' + ('0' + "
    "d.getMinutes()).slice(-2)));\n"
    "    chart.appendChild(bar);\n"
    "  });\n"
    "  var legend = document.getElementById('legend');\n"
    "  if (!legend.childNodes.length)\n"
    "    CLASSES.forEach(function (c) {\n"
    "      legend.appendChild(el('i', null, 'b' + (c === 'other' ? 'other' : c.charAt(0))));"
    "\n"
    "      legend.appendChild(document.createTextNode(c === 'other' ? 'no status' : c));\n"
    "    });\n"
    "}\n"
    "function renderFailures(s) {\n"
    "  var all = {}, last5 = {}, rows = [];\n"
    "  s.minutes.forEach(function (m, i) {\n"
    "    Object.keys(m.failures).forEach(function (f) {\n"
    "      all[f] = (all[f] || 0) + m.failures[f];\n"
    "      if (i >= s.minutes.length - 5) last5[f] = (last5[f] || 0) + m.failures[f];\n"
    "    });\n"
    "  });\n"
    "  Object.keys(all).sort(function (a, b) { return all[b] - all[a]; }).forEach(function "
    "(f) {\n"
    "    var n = el('td', all[f], 'n');\n"
    "    n.id = 'failure-' + f;\n"
    "    rows.push(row([el('td', f, 'mono'), n, el('td', last5[f] || 0, 'n'), el('td', "
    "MEANING[f] || '', 'why')]));\n"
    "  });\n"
    "  fill('failures', rows, 4, 'no upstream failure in this window');\n"
    "}\n"
    "function renderOrigins(s) {\n"
    "  var rows = [];\n"
    "  s.upstreams.forEach(function (u) {\n"
    "    u.origins.forEach(function (o, i) {\n"
    "      var passed = o.checks_passed_in_row, failed = o.checks_failed_in_row;\n"
    "      var why = o.check === 'failing' ? ' (check failing' + (passed ? ', ' + passed + "
    "' passed in a row' : '') + ')' : o.passive === 'probing' ? ' (probing)' : o.passive === "
    "'down' ? ' (' + (o.down_why || 'passive') + ')' : '';\n"
    "      var going = failed ? ' (' + failed + ' failed check' + (failed > 1 ? 's' : '') + "
    "' in a row)' : '';\n"
    "      var stopped = o.checks_stopped ? ' (checks stopped: out of memory)' : '';\n"
    "      var h = el('td', (o.up ? 'up' + going : 'down' + why) + stopped + ', ' + o.in_flight "
    "+ ' in flight' + (o.max_conns ? ' of max_conns ' + o.max_conns : '') + "
    "(o.weight_percent < 100 ? ', slow start: ' + o.weight_percent + "
    "'% of its weight' : ''), o.up ? 'up' : 'down');\n"
    "      h.id = 'health-' + u.name + '-' + o.origin;\n"
    "      var name = el('td', i ? '' : u.name + ' ');\n"
    "      if (!i) {\n"
    "        var how = el('span', u.balance + (u.hash_key ? ' ' + u.hash_key : '') + "
    "(u.max_queue !== null ? ', queue ' + u.queue_length + ' of ' + u.max_queue + ' (' + "
    "u.queued_total + ' waited, ' + u.queue_timeouts_total + ' timed out)' : ''), 'meta');\n"
    "        how.id = 'balance-' + u.name;\n"
    "        name.appendChild(how);\n"
    "      }\n"
    "      var origin = el('td', o.origin + (o.backup ? ' (backup)' : '') + (o.admin !== "
    "'ready' ? ' (' + o.admin + ')' : '') + (o.weight !== o.weight_configured ? ' (weight ' + "
    "o.weight + ', ' + o.weight_configured + ' in the file)' : '') + (o.cookie !== null ? ' "
    "cookie ' + o.cookie : ''), 'mono');\n"
    "      origin.id = 'origin-' + u.name + '-' + o.origin;\n"
    "      rows.push(row([name, origin, h,\n"
    "                     el('td', i ? '' : u.pool_idle + ' (keepalive ' + u.keepalive + ' "
    "per worker)', 'n'),\n"
    "                     el('td', i ? '' : u.recent_failures.length, 'n')]));\n"
    "    });\n"
    "  });\n"
    "  fill('origins', rows, 5, 'no upstream');\n"
    "}\n"
    "function renderLatency(s) {\n"
    "  var hist = {}, rows = [];\n"
    "  family(s, 'portico_phase_duration_seconds').samples.forEach(function (x) {\n"
    "    var key = x.labels.upstream + '\\u0000' + x.labels.phase;\n"
    "    var h = hist[key] || (hist[key] = { upstream: x.labels.upstream, phase: "
    "x.labels.phase, buckets: [], count: 0, sum: 0 });\n"
    "    if (/_bucket$/.test(x.name)) h.buckets.push({ le: x.labels.le === '+Inf' ? Infinity "
    ": parseFloat(x.labels.le), n: x.value });\n"
    "    else if (/_count$/.test(x.name)) h.count = x.value;\n"
    "    else if (/_sum$/.test(x.name)) h.sum = x.value;\n"
    "  });\n"
    "  Object.keys(hist).forEach(function (k) {\n"
    "    var h = hist[k];\n"
    "    if (!h.count) return;\n"
    "    h.buckets.sort(function (a, b) { return a.le - b.le; });\n"
    "    var q = function (p) { var v = quantile(p, h.buckets, h.count); return v === null ? "
    "null : v * 1000; };\n"
    "    var p50 = el('td', ms(q(0.5)), 'n');\n"
    "    p50.id = 'p50-' + h.upstream + '-' + h.phase;\n"
    "    rows.push(row([el('td', h.upstream), el('td', h.phase, 'mono'), el('td', h.count, "
    "'n'), p50,\n"
    "                   el('td', ms(q(0.9)), 'n'), el('td', ms(q(0.99)), 'n'), el('td', "
    "ms(h.sum * 1000 / h.count), 'n')]));\n"
    "  });\n"
    "  fill('latency', rows, 7, 'no exchange with an upstream yet');\n"
    "}\n"
    "function renderRecent(s) {\n"
    "  var rows = [];\n"
    "  s.recent_failures.forEach(function (f) {\n"
    "    var expl = el('td', null, 'why');\n"
    "    expl.appendChild(el('div', MEANING[f.failure] || ''));\n"
    "    if (f.detail) expl.appendChild(el('div', f.detail, 'mono'));\n"
    "    if (f.limit_ms) expl.appendChild(el('div', 'limit ' + f.limit_ms + ' ms'));\n"
    "    if (f.fault) expl.appendChild(el('div', 'injected by fault rule ' + f.fault));\n"
    "    var where = [f.route || '\\u2014', f.upstream || '\\u2014', f.origin || "
    "'\\u2014'].join(' / ');\n"
    "    rows.push(row([el('td', new Date(f.time_ms).toLocaleTimeString()), el('td', "
    "f.status === null ? '\\u2014' : f.status, 'n'),\n"
    "                   el('td', f.failure, 'mono'), el('td', f.phase, 'mono'), el('td', "
    "where, 'mono'),\n"
    "                   el('td', f.total_ms.toFixed(1), 'n'), expl]));\n"
    "  });\n"
    "  fill('recent', rows, 7, 'no failure recorded');\n"
    "}\n"
    "function render(s) {\n"
    "  document.getElementById('window').textContent = s.minutes.length;\n"
    "  Array.prototype.forEach.call(document.querySelectorAll('.wmin'), function (e) { "
    "e.textContent = s.minutes.length; });\n"
    "  document.getElementById('summary').textContent = 'version ' + s.version + ' \\u00b7 "
    "configuration generation ' +\n"
    "    s.generation + ' \\u00b7 ' + s.profile + ' profile \\u00b7 updated ' + new "
    "Date(s.now_ms).toLocaleTimeString();\n"
    "  renderTiles(s);\n"
    "  renderChart(s);\n"
    "  renderFailures(s);\n"
    "  renderOrigins(s);\n"
    "  renderLatency(s);\n"
    "  renderRecent(s);\n"
    "}\n"
    "function showError(text) {\n"
    "  var e = document.getElementById('error');\n"
    "  e.textContent = text;\n"
    "  e.style.display = text ? 'block' : 'none';\n"
    "  document.getElementById('live').className = text ? 'bad' : 'ok';\n"
    "}\n"
    "window.onerror = function (msg) { document.body.setAttribute('data-error', String(msg));"
    " };\n"
    "function refresh() {\n"
    "  fetch('/status', { cache: 'no-store' }).then(function (r) {\n"
    "    if (!r.ok) throw new Error('/status answered ' + r.status);\n"
    "    return r.json();\n"
    "  }).then(function (s) {\n"
    "    render(s);\n"
    "    showError('');\n"
    "    document.body.setAttribute('data-state', 'ok');\n"
    "  }).catch(function (e) {\n"
    "    showError('cannot read /status: ' + e.message);\n"
    "    document.body.setAttribute('data-state', 'error');\n"
    "  }).then(function () { setTimeout(refresh, REFRESH_MS); });\n"
    "}\n"
    "refresh();\n"
    "</script>\n"
    "</body></html>\n";

/* The page's Content-Security-Policy: its own inline style and script only (by their SHA-256),
 * fetches to this listener only, no form, no frame, no other source. Were a name or a path ever
 * to slip through escaping, it could neither run nor send anything elsewhere. Computed once. */
static char page_policy[512];
static pthread_once_t page_policy_once = PTHREAD_ONCE_INIT;

/* "'sha256-BASE64'" of what the page holds between open and close, into out. */
static void page_hash(const char *open, const char *close, char *out, size_t size)
{
    const char *from = strstr(admin_status_page, open) + strlen(open);
    const char *to = strstr(from, close);
    unsigned char md[EVP_MAX_MD_SIZE], b64[4 * EVP_MAX_MD_SIZE / 3 + 4];
    unsigned int n = 0;
    EVP_Digest(from, (size_t)(to - from), md, &n, EVP_sha256(), NULL);
    EVP_EncodeBlock(b64, md, (int)n);
    snprintf(out, size, "'sha256-%s'", (const char *)b64);
}

static void page_policy_init(void)
{
    char style[128], script[128];
    page_hash("<style>", "</style>", style, sizeof(style));
    page_hash("<script>", "</script>", script, sizeof(script));
    snprintf(page_policy, sizeof(page_policy),
             "Content-Security-Policy: default-src 'none'; style-src %s; script-src %s; "
             "connect-src 'self'; base-uri 'none'; form-action 'none'; "
             "frame-ancestors 'none'\r\n",
             style, script);
}

/* ---- /status ---- */

static void failure_json(struct evbuffer *out, const struct recent_failure *f, bool first)
{
    jprintf(out, "%s{\"time\":", first ? "" : ",");
    jtime(out, f->time_ms);
    jprintf(out, ",\"time_ms\":%llu,\"request_id\":", (unsigned long long)f->time_ms);
    jstr(out, f->request_id, true);
    if (f->status)
        jprintf(out, ",\"status\":%d", f->status);
    else
        jprintf(out, ",\"status\":null");
    /* the response's Proxy-Status said so (errpage.c): a handshake an alert refused is
     * tls_alert_received, with the alert; the admin listener shows it whatever error_detail */
    jprintf(out, ",\"failure\":\"%s\",\"phase\":\"%s\",\"proxy_status\":\"%s\"",
                        failure_name(f->failure), phase_name(f->phase),
                        f->tls_alert ? "tls_alert_received" : failure_proxy_status(f->failure));
    if (f->tls_alert)
        jprintf(out, ",\"alert_id\":%d,\"alert_message\":\"%s\"", f->tls_alert - 1,
                tls_alert_name(f->tls_alert - 1));
    else
        jprintf(out, ",\"alert_id\":null,\"alert_message\":null");
    jadd(out, ",\"route\":", 9);
    jstr(out, f->route, true);
    jadd(out, ",\"upstream\":", 12);
    jstr(out, f->upstream, true);
    jadd(out, ",\"origin\":", 10);
    jstr(out, f->origin, true);
    if (f->limit_ms)
        jprintf(out, ",\"limit_ms\":%llu", (unsigned long long)f->limit_ms);
    else
        jprintf(out, ",\"limit_ms\":null");
    jadd(out, ",\"total_ms\":", 12);
    jms(out, f->total_us);
    jadd(out, ",\"detail\":", 10);
    jstr(out, f->detail, true);
    /* a simulated failure says so here too, as in the access log: a drill is not an outage */
    jadd(out, ",\"fault\":", 9);
    jstr(out, f->fault, true);
    jadd(out, "}", 1);
}

static void minutes_json(struct evbuffer *out, const struct recent_view *v)
{
    jadd(out, ",\"minutes\":[", 12);
    for (int i = 0; i < RECENT_MINUTES; i++) {
        const struct recent_minute *m = &v->minutes[i];
        jprintf(out, "%s{\"start\":", i ? "," : "");
        jtime(out, m->minute * 60000);
        jprintf(out, ",\"start_ms\":%llu,\"requests\":%llu,\"classes\":{",
                            (unsigned long long)(m->minute * 60000),
                            (unsigned long long)m->requests);
        for (int c = 0; c < RECENT_CLASSES; c++)
            jprintf(out, "%s\"%s\":%llu", c ? "," : "", class_names[c],
                                (unsigned long long)m->classes[c]);
        jadd(out, "},\"failures\":{", 14);
        bool first = true;
        for (int f = FAIL_NONE + 1; f < FAILURE_COUNT; f++) {
            if (!m->failures[f])
                continue;
            jprintf(out, "%s\"%s\":%llu", first ? "" : ",",
                                failure_name((enum failure_type)f),
                                (unsigned long long)m->failures[f]);
            first = false;
        }
        jadd(out, "}}", 2);
    }
    jadd(out, "]", 1);
}

/* Upstream u of gen's configuration, with the origins' health now and its recent failures. */
static void upstream_json(struct evbuffer *out, const struct generation *gen,
                          const struct recent_view *v, int u)
{
    const struct upstream_conf *up = &gen->cfg->upstreams[u];
    jprintf(out, "%s{\"name\":", u ? "," : "");
    jstr(out, up->name, false);
    /* how the origins share the load, and what a hash is keyed by: the origin a client
     * reaches follows from them */
    char key[CFG_HASH_KEY_TEXT_MAX];
    jprintf(out, ",\"balance\":\"%s\",\"hash_key\":", balance_name(up->balance));
    jstr(out, up->balance == BALANCE_HASH ? hash_key_text(up, key, sizeof(key)) : NULL, false);
    /* sticky: the setting as it would be written, and each origin's value (below) */
    jadd(out, ",\"sticky\":", 10);
    jstr(out, up->sticky.on ? up->sticky.text : NULL, false);
    jprintf(out, ",\"keepalive\":%llu,\"pool_idle\":%llu,",
                        (unsigned long long)up->keepalive, (unsigned long long)v->pool_idle[u]);
    /* the queue of max_conns (the metrics' figures): null without one, no origin limited */
    const struct balancer *ub = gen->balancers[u];
    if (balancer_limited(ub))
        jprintf(out, "\"max_queue\":%llu,\"queue_length\":%u,\"queued_total\":%llu,"
                     "\"queue_timeouts_total\":%llu,",
                (unsigned long long)up->max_queue, balancer_queue_length(ub),
                (unsigned long long)balancer_queued_total(ub),
                (unsigned long long)balancer_queue_timeouts(ub));
    else
        jadd(out, "\"max_queue\":null,\"queue_length\":null,\"queued_total\":null,"
                  "\"queue_timeouts_total\":null,", 85);
    jadd(out, "\"origins\":[", 11);
    for (int o = 0; o < up->norigins; o++) {
        jprintf(out, "%s{\"origin\":", o ? "," : "");
        jstr(out, up->origins[o].text, false);
        jadd(out, ",\"cookie\":", 10); /* its sticky value, the cookie that pins to it */
        jstr(out, up->sticky.on ? up->origins[o].cookie : NULL, false);
        /* why an origin is out, and least_conn's figure: "up" alone told neither */
        const struct balancer *b = gen->balancers[u];
        enum origin_state passive = balancer_origin_state(b, o);
        jprintf(out, ",\"up\":%s,\"passive\":\"%s\",\"down_why\":",
                            balancer_origin_down(b, o) ? "false" : "true",
                            origin_state_name(passive));
        /* what marked it passively down: an answer of fail_on (or retry_on), or the network */
        int down_status = balancer_down_status(b, o);
        if (passive == ORIGIN_UP)
            jadd(out, "null", 4);
        else if (down_status)
            jprintf(out, "\"passive: answered %d\"", down_status);
        else
            jadd(out, "\"passive: network failures\"", 27);
        jadd(out, ",\"check\":", 9);
        /* the checks in a row since the last change of result: a passing origin with
         * failures short of `fall` is about to go, a failing one with passes short of
         * `rise` about to come back */
        int run = balancer_checks_in_row(b, o);
        if (up->health.interval_ms)
            jprintf(out, "\"%s\",\"checks_passed_in_row\":%d,"
                                     "\"checks_failed_in_row\":%d,\"checks_stopped\":%s",
                                check_state_name(balancer_check_state(b, o)),
                                run > 0 ? run : 0, run < 0 ? -run : 0,
                                balancer_checks_are_stopped(b, o) ? "true" : "false");
        else
            jprintf(out, "null,\"checks_passed_in_row\":null,"
                                     "\"checks_failed_in_row\":null,\"checks_stopped\":null");
        jprintf(out, ",\"in_flight\":%u,\"max_conns\":", balancer_in_flight(b, o));
        if (up->origins[o].max_conns)
            jprintf(out, "%u", up->origins[o].max_conns);
        else
            jadd(out, "null", 4);
        /* the admin API's state and weight (admin_upstreams.h): why an origin up takes none */
        jprintf(out, ",\"backup\":%s,\"weight_percent\":%u,\"admin\":\"%s\",\"weight\":%u,"
                     "\"weight_configured\":%u}",
                balancer_origin_is_backup(b, o) ? "true" : "false",
                balancer_weight_permille(b, o, event_now_us() / 1000) / 10,
                origin_admin_name(balancer_origin_admin(b, o)), balancer_weight(b, o),
                up->origins[o].weight);
    }
    jadd(out, "],\"recent_failures\":[", 21);
    bool first = true;
    for (size_t i = 0; i < v->nfailures; i++) {
        if (strcmp(v->failures[i].upstream, up->name) != 0)
            continue;
        failure_json(out, &v->failures[i], first);
        first = false;
    }
    jadd(out, "]}", 2);
}

/* The scrape of gen: its origins' health now (one row per distinct origin of an upstream),
 * its certificates' expiry, the rows of every shard. NULL when out of memory. */
static struct metrics_cursor *metrics_scrape_of(const struct generation *gen)
{
    const struct config *cfg = gen->cfg;
    size_t n = 0;
    for (int u = 0; u < cfg->nupstreams; u++)
        n += (size_t)cfg->upstreams[u].norigins;
    struct metrics_origin *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows)
        return NULL;
    size_t k = 0;
    for (int u = 0; u < cfg->nupstreams; u++) {
        size_t first = k; /* this upstream's rows */
        for (int o = 0; o < cfg->upstreams[u].norigins; o++) {
            const char *origin = cfg->upstreams[u].origins[o].text;
            bool up = !balancer_origin_down(gen->balancers[u], o);
            /* An origin listed twice is one series (the exposition allows no duplicate), up
             * only while every listing of it is. */
            size_t same = first;
            while (same < k && strcmp(rows[same].origin, origin) != 0)
                same++;
            const struct balancer *b = gen->balancers[u];
            unsigned in_flight = balancer_in_flight(b, o);
            if (same < k) {
                rows[same].up = rows[same].up && up;
                rows[same].in_flight += in_flight;
            } else {
                rows[k] = (struct metrics_origin){
                    cfg->upstreams[u].name, origin, up, in_flight, .first = k == first,
                    .queue_length = balancer_queue_length(b), .queued = balancer_queued_total(b),
                    .queue_timeouts = balancer_queue_timeouts(b),
                    .sticky = cfg->upstreams[u].sticky.on,
                    .sticky_counts = {balancer_sticky_total(b, STICKY_HIT),
                                      balancer_sticky_total(b, STICKY_NEW),
                                      balancer_sticky_total(b, STICKY_REDISPATCHED)},
                    .admin = (int)balancer_origin_admin(b, o), .weight = balancer_weight(b, o),
                    .bounded = cfg->upstreams[u].retry_budget ||
                               cfg->upstreams[u].retry_timeout_ms,
                    .budget = cfg->upstreams[u].retry_budget,
                    .retries_in_flight = balancer_retries_in_flight(b),
                    .retries_refused = {balancer_retry_refused_total(b, RETRY_REFUSED_BUDGET),
                                        balancer_retry_refused_total(b, RETRY_REFUSED_TIMEOUT)}};
                k++;
            }
        }
    }
    struct metrics_cert *certs = calloc(cfg->ncerts ? (size_t)cfg->ncerts : 1, sizeof(*certs));
    if (!certs) {
        free(rows);
        return NULL;
    }
    for (int i = 0; i < cfg->ncerts; i++)
        certs[i] = (struct metrics_cert){cfg->certs[i].file, cfg->certs[i].not_after};
    struct metrics_scrape s = {.origins = rows, .norigins = k,
                               .log_dropped_lines = log_dropped_lines(),
                               .error_log_dropped_lines = log_error_dropped_lines(),
                               .certs = certs, .ncerts = (size_t)cfg->ncerts};
    if (gen->climit) {
        s.client_limit_entries = climit_capacity(gen->climit);
        s.client_limit_connections = climit_connections(gen->climit);
        s.client_limit_evictions = climit_evictions(gen->climit);
        s.client_limit_no_place = climit_no_place(gen->climit);
    }
    struct metrics_cursor *c = metrics_cursor_new(&s); /* copies what it needs of rows */
    free(rows);
    free(certs);
    return c;
}

/* ---- pages written a slice at a time ---- */

/* The parts of /status, in order. */
enum page_part {
    PART_METRICS_TEXT, /* /metrics: the exposition */
    PART_HEAD,         /* /status: version, generation, time, profile */
    PART_METRICS_JSON, /* the exposition as JSON */
    PART_UPSTREAMS,    /* each upstream, from `upstream` on */
    PART_TAIL,         /* the last minutes and the recent failures */
    PART_DONE,
};

struct admin_page {
    enum page_part part;
    struct metrics_cursor *metrics;    /* owned: the rows, copied when the scrape began */
    const struct generation *gen;      /* borrowed: the generation of the connection's loop,
                                          which outlives it (freed once its workers are joined) */
    /* /status only */
    uint64_t now_ms;
    struct evbuffer *text;             /* owned: a slice of the exposition, to convert */
    struct metrics_json json;
    struct recent_view *view;          /* owned: the last minutes as the scrape began */
    int upstream;                      /* the next upstream of PART_UPSTREAMS */
};

void admin_page_free(struct admin_page *p)
{
    if (!p)
        return;
    metrics_cursor_free(p->metrics);
    if (p->text)
        evbuffer_free(p->text);
    if (p->view)
        free(p->view->pool_idle);
    free(p->view);
    free(p);
}

struct admin_page *admin_page_metrics(const struct generation *gen)
{
    struct admin_page *p = calloc(1, sizeof(*p));
    if (!p || !(p->metrics = metrics_scrape_of(gen))) {
        admin_page_free(p);
        return NULL;
    }
    p->gen = gen;
    p->part = PART_METRICS_TEXT;
    return p;
}

struct admin_page *admin_page_status(const struct generation *gen, uint64_t now_ms)
{
    const struct config *cfg = gen->cfg;
    struct admin_page *p = calloc(1, sizeof(*p));
    if (!p || !(p->text = evbuffer_new()) || !(p->view = calloc(1, sizeof(*p->view))) ||
        !(p->view->pool_idle = calloc((size_t)cfg->nupstreams + 1, sizeof(uint64_t))) ||
        !(p->metrics = metrics_scrape_of(gen))) {
        admin_page_free(p);
        return NULL;
    }
    p->gen = gen;
    p->now_ms = now_ms;
    p->view->npools = cfg->nupstreams;
    recent_snapshot(p->view, now_ms, gen->number);
    p->part = PART_HEAD;
    return p;
}

/* Writes part p->part, or as much of it as budget allows: 0 when the part is done, 1 when it
 * stopped short, -1 out of memory. */
static int page_part(struct admin_page *p, struct evbuffer *out, size_t budget)
{
    const struct config *cfg = p->gen->cfg;
    switch (p->part) {
    case PART_METRICS_TEXT:
        return metrics_cursor_next(p->metrics, out, budget);
    case PART_HEAD:
        jprintf(out, "{\"version\":\"%s\",\"generation\":%u,\"time\":",
                            PORTICO_VERSION, p->gen->number);
        jtime(out, p->now_ms);
        jprintf(out, ",\"now_ms\":%llu,\"profile\":\"%s\",\"metrics\":",
                            (unsigned long long)p->now_ms, profile_name(cfg->profile));
        return metrics_json_start(&p->json, out) == 0 ? 0 : -1;
    case PART_METRICS_JSON: {
        /* whole lines of the exposition, converted at once: the slice of text stays small */
        int rc = metrics_cursor_next(p->metrics, p->text, budget);
        size_t len = evbuffer_get_length(p->text);
        const char *t = (const char *)evbuffer_pullup(p->text, (ev_ssize_t)len);
        if (rc < 0 || (len && !t))
            return -1;
        metrics_json_lines(&p->json, out, t, len);
        evbuffer_drain(p->text, len);
        if (rc > 0)
            return 1;
        if (metrics_json_end(&p->json, out) != 0)
            return -1;
        return jadd(out, ",\"upstreams\":[", 14) == 0 ? 0 : -1;
    }
    case PART_UPSTREAMS:
        while (p->upstream < cfg->nupstreams) {
            upstream_json(out, p->gen, p->view, p->upstream++);
            if (p->upstream < cfg->nupstreams && evbuffer_get_length(out) >= budget)
                return 1;
        }
        return jadd(out, "]", 1) == 0 ? 0 : -1;
    case PART_TAIL:
        minutes_json(out, p->view);
        jadd(out, ",\"recent_failures\":[", 20);
        for (size_t i = 0; i < p->view->nfailures; i++)
            failure_json(out, &p->view->failures[i], i == 0);
        return jadd(out, "]}\n", 3) == 0 ? 0 : -1;
    case PART_DONE:
        break;
    }
    return 0;
}

int admin_page_next(struct admin_page *p, struct evbuffer *out, size_t budget)
{
    size_t start = evbuffer_get_length(out);
    /* out may hold more than this slice: the budget counts from here */
    size_t limit = budget > SIZE_MAX - start ? SIZE_MAX : start + budget;
    while (p->part != PART_DONE) {
        json_lost = false;
        int rc = page_part(p, out, p->part == PART_UPSTREAMS ? limit : budget);
        if (json_lost) /* a hole in the part: the page fails whole (the caller closes) */
            return -1;
        if (rc != 0)
            return rc;
        p->part = p->part == PART_METRICS_TEXT ? PART_DONE : p->part + 1;
        if (p->part != PART_DONE && evbuffer_get_length(out) >= limit)
            return 1;
    }
    return 0;
}

int admin_status_render(const char *path, size_t len, struct evbuffer *body,
                        const char **content_type, const char **fields)
{
    *fields = "";
    if (len == 1 && path[0] == '/') {
        *content_type = "text/html; charset=utf-8";
        pthread_once(&page_policy_once, page_policy_init);
        *fields = page_policy;
        return evbuffer_add(body, admin_status_page, strlen(admin_status_page)) == 0 ? 1 : -1;
    }
    return 0;
}
