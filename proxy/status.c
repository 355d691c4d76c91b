/*
 * status.c — the HTTP status-code registry.
 *
 * One static table indexed by the code itself (designated rows, written in ascending order), so
 * status_lookup() is one bounds check and one load, and nothing is built at run time: worker
 * threads share read-only data with no init race. Rows that are absent have .code == 0.
 *
 * Phrases go on the wire: printable ASCII only, no CR/LF, no curly quotes (tests/unit/test_status.c
 * checks every row). Where a number has several meanings the phrase is the one Portico sends and
 * the note names the others.
 */
#include "portico/status.h"

/* A duplicated [code] row would silently replace the first one; make that a hard error whatever
 * flags the file is built with (gcc and clang both know this option name). */
#pragma GCC diagnostic error "-Woverride-init"

#define STATUS_MIN 100
#define STATUS_MAX 999

static const struct status_info registry[STATUS_MAX + 1] = {
    /* 1xx informational */
    [100] = { .code = 100, .phrase = "Continue", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "interim: head accepted, send the body (answers Expect: 100-continue)" },
    [101] = { .code = 101, .phrase = "Switching Protocols", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "the connection switches to the protocol named in Upgrade (e.g. websocket)" },
    [102] = { .code = 102, .phrase = "Processing", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 2518",
              .note = "deprecated (dropped by RFC 4918) but used in practice; multiple may be sent "
                      "before the final response" },
    [103] = { .code = 103, .phrase = "Early Hints", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 8297",
              .note = "interim: carries Link fields (preload, preconnect) before the final "
                      "response; multiple may be sent" },
    [110] = { .code = 110, .phrase = "Response is Stale", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111); a "
                      "simulator may still send it" },
    [111] = { .code = 111, .phrase = "Revalidation Failed", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111): cache "
                      "could not revalidate" },
    [112] = { .code = 112, .phrase = "Disconnected Operation", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111): cache is "
                      "offline" },
    [113] = { .code = 113, .phrase = "Heuristic Expiration", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111): "
                      "heuristic freshness over 24h" },
    [199] = { .code = 199, .phrase = "Miscellaneous Warning", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111): "
                      "arbitrary warning text" },

    /* 2xx success */
    [200] = { .code = 200, .phrase = "OK", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "the request succeeded; the content depends on the method" },
    [201] = { .code = 201, .phrase = "Created", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "a new resource was created; Location names it" },
    [202] = { .code = 202, .phrase = "Accepted", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "accepted for processing, not yet completed (and may never be)" },
    [203] = { .code = 203, .phrase = "Non-Authoritative Information", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "a transforming proxy modified the origin's 200 response" },
    [204] = { .code = 204, .phrase = "No Content", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "success with no content; the response never has a body" },
    [205] = { .code = 205, .phrase = "Reset Content", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "success; the client should reset its document view; no content" },
    [206] = { .code = 206, .phrase = "Partial Content", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "answers a Range request with Content-Range or multipart/byteranges" },
    [207] = { .code = 207, .phrase = "Multi-Status", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 4918",
              .note = "XML body carries one status per sub-request" },
    [208] = { .code = 208, .phrase = "Already Reported", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 5842",
              .note = "inside a multistatus: binding members already listed earlier are not "
                      "repeated" },
    [214] = { .code = 214, .phrase = "Transformation Applied", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111): a proxy "
                      "transformed the content" },
    [218] = { .code = 218, .phrase = "This is fine", .source = STATUS_SRC_UNOFFICIAL,
              .origin = "Apache",
              .note = "Apache with ProxyErrorOverride: lets an error body through instead of a "
                      "4xx/5xx page" },
    [226] = { .code = 226, .phrase = "IM Used", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 3229",
              .note = "delta encoding: the content is the result of the A-IM instance "
                      "manipulations" },
    [299] = { .code = 299, .phrase = "Miscellaneous Persistent Warning",
              .source = STATUS_SRC_OBSOLETE, .origin = "RFC 7234 Warning",
              .note = "Warning-header code, not a status (Warning obsoleted by RFC 9111): like 199 "
                      "but persistent" },

    /* 3xx redirection */
    [300] = { .code = 300, .phrase = "Multiple Choices", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "several representations; the client (agent-driven negotiation) picks one" },
    [301] = { .code = 301, .phrase = "Moved Permanently", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "permanent redirect to Location; clients may change POST to GET" },
    [302] = { .code = 302, .phrase = "Found", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "temporary redirect; was Moved Temporarily in RFC 1945; clients may change "
                      "POST to GET" },
    [303] = { .code = 303, .phrase = "See Other", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "fetch the result from Location with GET" },
    [304] = { .code = 304, .phrase = "Not Modified", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "conditional GET/HEAD: the cached copy is still valid; never has a body" },
    [305] = { .code = 305, .phrase = "Use Proxy", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "deprecated: use the proxy in Location; clients ignore it for security "
                      "reasons" },
    [306] = { .code = 306, .phrase = "Switch Proxy", .source = STATUS_SRC_OBSOLETE,
              .origin = "RFC 9110",
              .note = "registered as (Unused) and reserved; a draft of HTTP/1.1 meant 'use this "
                      "proxy from now on'" },
    [307] = { .code = 307, .phrase = "Temporary Redirect", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "temporary redirect; the method and content must not change" },
    [308] = { .code = 308, .phrase = "Permanent Redirect", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "permanent redirect; the method and content must not change (was RFC 7538)" },

    /* 4xx client error */
    [400] = { .code = 400, .phrase = "Bad Request", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "malformed syntax, invalid framing or otherwise unprocessable request" },
    [401] = { .code = 401, .phrase = "Unauthorized", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "authentication missing or failed; must carry WWW-Authenticate" },
    [402] = { .code = 402, .phrase = "Payment Required", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "reserved for future use; some APIs (Shopify, Stripe, Google) use it for "
                      "billing" },
    [403] = { .code = 403, .phrase = "Forbidden", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "understood but refused; repeating the request will not help" },
    [404] = { .code = 404, .phrase = "Not Found", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "no current representation for the target resource" },
    [405] = { .code = 405, .phrase = "Method Not Allowed", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "method known but not supported by this resource; must carry Allow" },
    [406] = { .code = 406, .phrase = "Not Acceptable", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "no representation matches the Accept* request fields" },
    [407] = { .code = 407, .phrase = "Proxy Authentication Required", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "like 401 for the proxy; must carry Proxy-Authenticate" },
    [408] = { .code = 408, .phrase = "Request Timeout", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "the client did not send a complete request in time; the connection closes" },
    [409] = { .code = 409, .phrase = "Conflict", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "conflicts with the current state of the resource (e.g. concurrent edits)" },
    [410] = { .code = 410, .phrase = "Gone", .source = STATUS_SRC_HTTP, .origin = "RFC 9110",
              .note = "removed on purpose and permanently; heuristically cacheable" },
    [411] = { .code = 411, .phrase = "Length Required", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "the request needs a Content-Length" },
    [412] = { .code = 412, .phrase = "Precondition Failed", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "a conditional request field (If-Match ...) evaluated to false" },
    [413] = { .code = 413, .phrase = "Content Too Large", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "request content too large; was Payload Too Large (RFC 7231), Request Entity "
                      "Too Large (RFC 2616)" },
    [414] = { .code = 414, .phrase = "URI Too Long", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "request target too long; was Request-URI Too Long (RFC 2616)" },
    [415] = { .code = 415, .phrase = "Unsupported Media Type", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "content type or encoding not supported for this method and resource" },
    [416] = { .code = 416, .phrase = "Range Not Satisfiable", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "no requested range overlaps the representation; was Requested Range Not "
                      "Satisfiable (RFC 2616)" },
    [417] = { .code = 417, .phrase = "Expectation Failed", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "the Expect request field cannot be met; retry without it" },
    [418] = { .code = 418, .phrase = "I'm a teapot", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 2324 / RFC 7168",
              .note = "HTCPCP April Fools' joke; RFC 9110 reserves 418 as (Unused) since it is "
                      "deployed; some sites use it to block" },
    [419] = { .code = 419, .phrase = "Page Expired", .source = STATUS_SRC_VENDOR,
              .origin = "Laravel",
              .note = "Laravel: the CSRF token is missing or expired" },
    [420] = { .code = 420, .phrase = "Enhance Your Calm", .source = STATUS_SRC_VENDOR,
              .origin = "Twitter",
              .note = "Twitter API v1 rate limiting (later 429); Spring Framework used 420 for its "
                      "deprecated Method Failure" },
    [421] = { .code = 421, .phrase = "Misdirected Request", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "this server cannot answer for the request's authority (e.g. reused "
                      "connection); was RFC 7540" },
    [422] = { .code = 422, .phrase = "Unprocessable Content", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "well-formed but semantically invalid; was Unprocessable Entity (WebDAV RFC "
                      "4918)" },
    [423] = { .code = 423, .phrase = "Locked", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 4918",
              .note = "the source or destination resource is locked" },
    [424] = { .code = 424, .phrase = "Failed Dependency", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 4918",
              .note = "failed because an action it depended on (e.g. in a PROPPATCH) failed" },
    [425] = { .code = 425, .phrase = "Too Early", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 8470",
              .note = "will not risk a request that may be replayed (TLS early data); the WebDAV "
                      "draft used 425 Unordered Collection" },
    [426] = { .code = 426, .phrase = "Upgrade Required", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "switch to the protocol named in Upgrade (e.g. TLS, RFC 2817)" },
    [428] = { .code = 428, .phrase = "Precondition Required", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 6585",
              .note = "the origin requires a conditional request (prevents lost updates)" },
    [429] = { .code = 429, .phrase = "Too Many Requests", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 6585",
              .note = "rate limited; may carry Retry-After" },
    [430] = { .code = 430, .phrase = "Request Header Fields Too Large",
              .source = STATUS_SRC_VENDOR, .origin = "Shopify",
              .note = "Shopify: too many URLs requested in a time frame (used instead of 429)" },
    [431] = { .code = 431, .phrase = "Request Header Fields Too Large",
              .source = STATUS_SRC_RFC_OTHER, .origin = "RFC 6585",
              .note = "one header field or the whole header section is too large" },
    [440] = { .code = 440, .phrase = "Login Time-out", .source = STATUS_SRC_VENDOR,
              .origin = "IIS",
              .note = "IIS: the client's session expired; log in again" },
    [444] = { .code = 444, .phrase = "No Response", .source = STATUS_SRC_VENDOR,
              .origin = "nginx",
              .note = "nginx internal: close the connection without sending any response" },
    [449] = { .code = 449, .phrase = "Retry With", .source = STATUS_SRC_VENDOR, .origin = "IIS",
              .note = "IIS/Microsoft: required information missing; retry after supplying it" },
    [450] = { .code = 450, .phrase = "Blocked by Windows Parental Controls",
              .source = STATUS_SRC_VENDOR, .origin = "Microsoft",
              .note = "Windows Parental Controls block the requested page" },
    [451] = { .code = 451, .phrase = "Unavailable For Legal Reasons",
              .source = STATUS_SRC_RFC_OTHER, .origin = "RFC 7725",
              .note = "denied because of a legal demand; IIS (Exchange ActiveSync) uses 451 "
                      "Redirect to another server" },
    [456] = { .code = 456, .phrase = "Unrecoverable Error", .source = STATUS_SRC_VENDOR,
              .origin = "Microsoft WebDAV",
              .note = "Microsoft WebDAV extension: processing hit unrecoverable database errors" },
    [460] = { .code = 460, .phrase = "Client Closed Connection", .source = STATUS_SRC_VENDOR,
              .origin = "AWS ELB",
              .note = "AWS load balancer: the client closed the connection before the idle timeout "
                      "elapsed" },
    [463] = { .code = 463, .phrase = "Too Many X-Forwarded-For Addresses",
              .source = STATUS_SRC_VENDOR, .origin = "AWS ELB",
              .note = "AWS load balancer: X-Forwarded-For carried more than 30 IP addresses" },
    [464] = { .code = 464, .phrase = "Incompatible Protocol Versions",
              .source = STATUS_SRC_VENDOR, .origin = "AWS ELB",
              .note = "AWS load balancer: client and target group protocol versions do not match" },
    [494] = { .code = 494, .phrase = "Request Header Too Large", .source = STATUS_SRC_VENDOR,
              .origin = "nginx",
              .note = "nginx: request header or one header line too large (the client sees 400)" },
    [495] = { .code = 495, .phrase = "SSL Certificate Error", .source = STATUS_SRC_VENDOR,
              .origin = "nginx",
              .note = "nginx: the client certificate is invalid (the client sees 400)" },
    [496] = { .code = 496, .phrase = "SSL Certificate Required", .source = STATUS_SRC_VENDOR,
              .origin = "nginx",
              .note = "nginx: a client certificate is required but was not sent (the client sees "
                      "400)" },
    [497] = { .code = 497, .phrase = "HTTP Request Sent to HTTPS Port",
              .source = STATUS_SRC_VENDOR, .origin = "nginx",
              .note = "nginx: plain HTTP on a TLS listener (the client sees 400)" },
    [498] = { .code = 498, .phrase = "Invalid Token", .source = STATUS_SRC_VENDOR,
              .origin = "Esri",
              .note = "ArcGIS Server: the token is expired or otherwise invalid" },
    [499] = { .code = 499, .phrase = "Client Closed Request", .source = STATUS_SRC_VENDOR,
              .origin = "nginx",
              .note = "nginx log code: the client closed the connection first; Esri ArcGIS uses "
                      "499 for Token Required" },

    /* 5xx server error */
    [500] = { .code = 500, .phrase = "Internal Server Error", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "unexpected condition; no more specific code applies" },
    [501] = { .code = 501, .phrase = "Not Implemented", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "the server does not support the functionality (e.g. an unknown method)" },
    [502] = { .code = 502, .phrase = "Bad Gateway", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "a gateway or proxy got an invalid response from upstream" },
    [503] = { .code = 503, .phrase = "Service Unavailable", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "temporarily overloaded or in maintenance; may carry Retry-After" },
    [504] = { .code = 504, .phrase = "Gateway Timeout", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "a gateway or proxy got no timely response from upstream" },
    [505] = { .code = 505, .phrase = "HTTP Version Not Supported", .source = STATUS_SRC_HTTP,
              .origin = "RFC 9110",
              .note = "the major version of the request is not supported" },
    [506] = { .code = 506, .phrase = "Variant Also Negotiates", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 2295",
              .note = "transparent content negotiation: the chosen variant negotiates itself "
                      "(loop)" },
    [507] = { .code = 507, .phrase = "Insufficient Storage", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 4918",
              .note = "cannot store the representation needed to complete the request" },
    [508] = { .code = 508, .phrase = "Loop Detected", .source = STATUS_SRC_WEBDAV,
              .origin = "WebDAV RFC 5842",
              .note = "infinite loop while processing a Depth: infinity request" },
    [509] = { .code = 509, .phrase = "Bandwidth Limit Exceeded", .source = STATUS_SRC_VENDOR,
              .origin = "Apache/cPanel",
              .note = "cPanel mod_bwlimited: the site exceeded its bandwidth allowance" },
    [510] = { .code = 510, .phrase = "Not Extended", .source = STATUS_SRC_RFC_OTHER,
              .origin = "RFC 2774",
              .note = "further extensions required; IANA marks it obsoleted (RFC 2774 is "
                      "historic)" },
    [511] = { .code = 511, .phrase = "Network Authentication Required",
              .source = STATUS_SRC_RFC_OTHER, .origin = "RFC 6585",
              .note = "captive portal: authenticate to gain network access" },
    [520] = { .code = 520, .phrase = "Web Server Returned an Unknown Error",
              .source = STATUS_SRC_VENDOR, .origin = "Cloudflare",
              .note = "Cloudflare: the origin returned an empty, unknown or unexpected response" },
    [521] = { .code = 521, .phrase = "Web Server Is Down", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: the origin refused the connection" },
    [522] = { .code = 522, .phrase = "Connection Timed Out", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: TCP connect to the origin timed out" },
    [523] = { .code = 523, .phrase = "Origin Is Unreachable", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: the origin cannot be reached (e.g. bad or missing DNS "
                      "records)" },
    [524] = { .code = 524, .phrase = "A Timeout Occurred", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: connected to the origin but got no timely HTTP response" },
    [525] = { .code = 525, .phrase = "SSL Handshake Failed", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: the TLS handshake with the origin failed" },
    [526] = { .code = 526, .phrase = "Invalid SSL Certificate", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: the origin certificate did not validate; also Cloud Foundry's "
                      "gorouter" },
    [527] = { .code = 527, .phrase = "Railgun Error", .source = STATUS_SRC_VENDOR,
              .origin = "Cloudflare",
              .note = "Cloudflare: the connection to the origin's Railgun server was interrupted" },
    [529] = { .code = 529, .phrase = "Site is overloaded", .source = STATUS_SRC_VENDOR,
              .origin = "Qualys",
              .note = "Qualys SSL Labs API: the service cannot take the request now" },
    [530] = { .code = 530, .phrase = "Site is frozen", .source = STATUS_SRC_VENDOR,
              .origin = "Pantheon",
              .note = "Pantheon: site frozen for inactivity; Cloudflare also sends 530 with a 1xxx "
                      "error code" },
    [561] = { .code = 561, .phrase = "Unauthorized", .source = STATUS_SRC_VENDOR,
              .origin = "AWS ELB",
              .note = "AWS load balancer: the identity provider returned an error authenticating "
                      "the user" },
    [598] = { .code = 598, .phrase = "Network Read Timeout Error",
              .source = STATUS_SRC_UNOFFICIAL, .origin = "informal proxy convention",
              .note = "a proxy timed out reading from the network behind it" },
    [599] = { .code = 599, .phrase = "Network Connect Timeout Error",
              .source = STATUS_SRC_UNOFFICIAL, .origin = "informal proxy convention",
              .note = "a proxy timed out connecting to the network behind it" },
};

/* Fallback phrases by class, indexed by code / 100; 6xx-9xx share "Unknown Status". */
static const char *const class_phrase[] = {
    [1] = "Unknown Informational",
    [2] = "Unknown Success",
    [3] = "Unknown Redirection",
    [4] = "Unknown Client Error",
    [5] = "Unknown Server Error",
};

static const char *const source_name[] = {
    [STATUS_SRC_HTTP] = "http",
    [STATUS_SRC_WEBDAV] = "webdav",
    [STATUS_SRC_RFC_OTHER] = "rfc",
    [STATUS_SRC_VENDOR] = "vendor",
    [STATUS_SRC_UNOFFICIAL] = "unofficial",
    [STATUS_SRC_OBSOLETE] = "obsolete",
};

const struct status_info *status_lookup(int code)
{
    if (code < STATUS_MIN || code > STATUS_MAX || registry[code].code == 0)
        return NULL;
    return &registry[code];
}

const char *status_phrase(int code)
{
    const struct status_info *si = status_lookup(code);

    if (si != NULL)
        return si->phrase;
    if (code >= STATUS_MIN && code < 600)
        return class_phrase[code / 100];
    return "Unknown Status";
}

/* Counting and ranking scan the 900 slots: these serve `portico codes` listings, never the
 * request path, and a scan keeps the table the single source of truth with no run-time init. */
size_t status_count(void)
{
    size_t n = 0;

    for (int c = STATUS_MIN; c <= STATUS_MAX; c++)
        n += registry[c].code != 0;
    return n;
}

const struct status_info *status_at(size_t i)
{
    for (int c = STATUS_MIN; c <= STATUS_MAX; c++) {
        if (registry[c].code == 0)
            continue;
        if (i == 0)
            return &registry[c];
        i--;
    }
    return NULL;
}

const char *status_source_name(enum status_source s)
{
    if ((unsigned)s >= sizeof(source_name) / sizeof(source_name[0]) || source_name[s] == NULL)
        return "unknown";
    return source_name[s];
}
