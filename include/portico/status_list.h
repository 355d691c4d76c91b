/*
 * status_list.h — the rows of the status-code registry, one X-macro list read three times:
 * status.h makes `enum http_status` from it, status.c the lookup table of the codes Portico
 * sends and the list of every meaning, so a code cannot have a constant without a row or a row
 * without a constant.
 *
 * STATUS_LIST(WIRE, ALSO), in ascending code order; every code has exactly one WIRE row, and
 * its ALSO rows (if any) follow it:
 *   WIRE(code, NAME, phrase, SOURCE, origin, note)  the meaning Portico sends on the wire
 *   ALSO(code, phrase, SOURCE, origin, note)        another meaning of the same number, or a
 *                                                   former name of it (`portico codes` lists them)
 * where
 *   NAME    the constant is HTTP_##NAME; the naming rule is in status.h
 *   phrase  the reason phrase: printable ASCII, no CR/LF, no curly quotes
 *   SOURCE  suffix of an enum status_source constant (HTTP, WEBDAV, RFC_OTHER, VENDOR ...)
 *   origin  who defines it: "RFC 9110", "nginx", "Cloudflare" ...
 *   note    one line: what it means
 *
 * The meanings follow the reference text on status codes (tests/data/http-status-codes.txt);
 * tests/unit/test_status.c checks that every code and phrase of it is here.
 */
#ifndef PORTICO_STATUS_LIST_H
#define PORTICO_STATUS_LIST_H

#define STATUS_LIST(WIRE, ALSO)                                                                    \
    /* 1xx */                                                                                      \
    WIRE(100, CONTINUE, "Continue", HTTP, "RFC 9110",                                              \
         "interim: head accepted, send the body (answers Expect: 100-continue)")                   \
    WIRE(101, SWITCHING_PROTOCOLS, "Switching Protocols", HTTP, "RFC 9110",                        \
         "the connection switches to the protocol named in Upgrade (e.g. websocket)")              \
    WIRE(102, PROCESSING, "Processing", WEBDAV, "WebDAV RFC 2518",                                 \
         "deprecated (dropped by RFC 4918) but used in practice; multiple may be sent before the " \
         "final response")                                                                         \
    WIRE(103, EARLY_HINTS, "Early Hints", RFC_OTHER, "RFC 8297",                                   \
         "interim: carries Link fields (preload, preconnect) before the final response; multiple " \
         "may be sent")                                                                            \
    WIRE(110, RESPONSE_IS_STALE, "Response is Stale", OBSOLETE, "RFC 7234 Warning",                \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111); a simulator may "     \
         "still send it")                                                                          \
    WIRE(111, REVALIDATION_FAILED, "Revalidation Failed", OBSOLETE, "RFC 7234 Warning",            \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111): cache could not "     \
         "revalidate")                                                                             \
    WIRE(112, DISCONNECTED_OPERATION, "Disconnected Operation", OBSOLETE, "RFC 7234 Warning",      \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111): cache is offline")    \
    WIRE(113, HEURISTIC_EXPIRATION, "Heuristic Expiration", OBSOLETE, "RFC 7234 Warning",          \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111): heuristic freshness " \
         "over 24h")                                                                               \
    WIRE(199, MISCELLANEOUS_WARNING, "Miscellaneous Warning", OBSOLETE, "RFC 7234 Warning",        \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111): arbitrary warning "   \
         "text")                                                                                   \
    /* 2xx */                                                                                      \
    WIRE(200, OK, "OK", HTTP, "RFC 9110",                                                          \
         "the request succeeded; the content depends on the method")                               \
    WIRE(201, CREATED, "Created", HTTP, "RFC 9110",                                                \
         "a new resource was created; Location names it")                                          \
    WIRE(202, ACCEPTED, "Accepted", HTTP, "RFC 9110",                                              \
         "accepted for processing, not yet completed (and may never be)")                          \
    WIRE(203, NON_AUTHORITATIVE_INFORMATION, "Non-Authoritative Information", HTTP, "RFC 9110",    \
         "a transforming proxy modified the origin's 200 response")                                \
    WIRE(204, NO_CONTENT, "No Content", HTTP, "RFC 9110",                                          \
         "success with no content; the response never has a body")                                 \
    WIRE(205, RESET_CONTENT, "Reset Content", HTTP, "RFC 9110",                                    \
         "success; the client should reset its document view; no content")                         \
    WIRE(206, PARTIAL_CONTENT, "Partial Content", HTTP, "RFC 9110",                                \
         "answers a Range request with Content-Range or multipart/byteranges")                     \
    WIRE(207, MULTI_STATUS, "Multi-Status", WEBDAV, "WebDAV RFC 4918",                             \
         "XML body carries one status per sub-request")                                            \
    WIRE(208, ALREADY_REPORTED, "Already Reported", WEBDAV, "WebDAV RFC 5842",                     \
         "inside a multistatus: binding members already listed earlier are not repeated")          \
    WIRE(214, TRANSFORMATION_APPLIED, "Transformation Applied", OBSOLETE, "RFC 7234 Warning",      \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111): a proxy transformed " \
         "the content")                                                                            \
    WIRE(218, THIS_IS_FINE, "This is fine", UNOFFICIAL, "Apache HTTP Server",                      \
         "Apache with ProxyErrorOverride: lets an error body through instead of a 4xx/5xx page")   \
    WIRE(226, IM_USED, "IM Used", RFC_OTHER, "RFC 3229",                                           \
         "delta encoding: the content is the result of the A-IM instance manipulations")           \
    WIRE(299, MISCELLANEOUS_PERSISTENT_WARNING, "Miscellaneous Persistent Warning", OBSOLETE,      \
         "RFC 7234 Warning",                                                                       \
         "Warning-header code, not a status (Warning obsoleted by RFC 9111): like 199 but "        \
         "persistent")                                                                             \
    /* 3xx */                                                                                      \
    WIRE(300, MULTIPLE_CHOICES, "Multiple Choices", HTTP, "RFC 9110",                              \
         "several representations; the client (agent-driven negotiation) picks one")               \
    WIRE(301, MOVED_PERMANENTLY, "Moved Permanently", HTTP, "RFC 9110",                            \
         "permanent redirect to Location; clients may change POST to GET")                         \
    WIRE(302, FOUND, "Found", HTTP, "RFC 9110",                                                    \
         "temporary redirect; clients may change POST to GET")                                     \
    ALSO(302, "Moved Temporarily", OBSOLETE, "RFC 1945",                                           \
         "the HTTP/1.0 name of 302, which asked clients to keep the method")                       \
    WIRE(303, SEE_OTHER, "See Other", HTTP, "RFC 9110",                                            \
         "fetch the result from Location with GET")                                                \
    WIRE(304, NOT_MODIFIED, "Not Modified", HTTP, "RFC 9110",                                      \
         "conditional GET/HEAD: the cached copy is still valid; never has a body")                 \
    WIRE(305, USE_PROXY, "Use Proxy", HTTP, "RFC 9110",                                            \
         "deprecated: use the proxy in Location; clients ignore it for security reasons")          \
    WIRE(306, SWITCH_PROXY, "Switch Proxy", OBSOLETE, "RFC 9110",                                  \
         "registered as (Unused) and reserved; a draft of HTTP/1.1 meant 'use this proxy from "    \
         "now on'")                                                                                \
    WIRE(307, TEMPORARY_REDIRECT, "Temporary Redirect", HTTP, "RFC 9110",                          \
         "temporary redirect; the method and content must not change")                             \
    WIRE(308, PERMANENT_REDIRECT, "Permanent Redirect", HTTP, "RFC 9110",                          \
         "permanent redirect; the method and content must not change (was RFC 7538)")              \
    /* 4xx */                                                                                      \
    WIRE(400, BAD_REQUEST, "Bad Request", HTTP, "RFC 9110",                                        \
         "malformed syntax, invalid framing or otherwise unprocessable request")                   \
    WIRE(401, UNAUTHORIZED, "Unauthorized", HTTP, "RFC 9110",                                      \
         "authentication missing or failed; must carry WWW-Authenticate")                          \
    WIRE(402, PAYMENT_REQUIRED, "Payment Required", HTTP, "RFC 9110",                              \
         "reserved for future use; some APIs (Shopify, Stripe, Google) use it for billing")        \
    WIRE(403, FORBIDDEN, "Forbidden", HTTP, "RFC 9110",                                            \
         "understood but refused; repeating the request will not help")                            \
    WIRE(404, NOT_FOUND, "Not Found", HTTP, "RFC 9110",                                            \
         "no current representation for the target resource")                                      \
    WIRE(405, METHOD_NOT_ALLOWED, "Method Not Allowed", HTTP, "RFC 9110",                          \
         "method known but not supported by this resource; must carry Allow")                      \
    WIRE(406, NOT_ACCEPTABLE, "Not Acceptable", HTTP, "RFC 9110",                                  \
         "no representation matches the Accept* request fields")                                   \
    WIRE(407, PROXY_AUTHENTICATION_REQUIRED, "Proxy Authentication Required", HTTP, "RFC 9110",    \
         "like 401 for the proxy; must carry Proxy-Authenticate")                                  \
    WIRE(408, REQUEST_TIMEOUT, "Request Timeout", HTTP, "RFC 9110",                                \
         "the client did not send a complete request in time; the connection closes")              \
    WIRE(409, CONFLICT, "Conflict", HTTP, "RFC 9110",                                              \
         "conflicts with the current state of the resource (e.g. concurrent edits)")               \
    WIRE(410, GONE, "Gone", HTTP, "RFC 9110",                                                      \
         "removed on purpose and permanently; heuristically cacheable")                            \
    WIRE(411, LENGTH_REQUIRED, "Length Required", HTTP, "RFC 9110",                                \
         "the request needs a Content-Length")                                                     \
    WIRE(412, PRECONDITION_FAILED, "Precondition Failed", HTTP, "RFC 9110",                        \
         "a conditional request field (If-Match ...) evaluated to false")                          \
    WIRE(413, CONTENT_TOO_LARGE, "Content Too Large", HTTP, "RFC 9110",                            \
         "the request content is larger than the server will process")                             \
    ALSO(413, "Payload Too Large", OBSOLETE, "RFC 7231",                                           \
         "the name of 413 from 2014 until RFC 9110")                                               \
    ALSO(413, "Request Entity Too Large", OBSOLETE, "RFC 2616",                                    \
         "the name of 413 in HTTP/1.1 until RFC 7231")                                             \
    WIRE(414, URI_TOO_LONG, "URI Too Long", HTTP, "RFC 9110",                                      \
         "the request target is longer than the server will interpret")                            \
    ALSO(414, "Request-URI Too Long", OBSOLETE, "RFC 2616",                                        \
         "the name of 414 in HTTP/1.1 until RFC 7231")                                             \
    WIRE(415, UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type", HTTP, "RFC 9110",                  \
         "content type or encoding not supported for this method and resource")                    \
    WIRE(416, RANGE_NOT_SATISFIABLE, "Range Not Satisfiable", HTTP, "RFC 9110",                    \
         "no requested range overlaps the representation")                                         \
    ALSO(416, "Requested Range Not Satisfiable", OBSOLETE, "RFC 2616",                             \
         "the name of 416 in HTTP/1.1 until RFC 7233")                                             \
    WIRE(417, EXPECTATION_FAILED, "Expectation Failed", HTTP, "RFC 9110",                          \
         "the Expect request field cannot be met; retry without it")                               \
    WIRE(418, I_M_A_TEAPOT, "I'm a teapot", RFC_OTHER, "RFC 2324 / RFC 7168",                      \
         "HTCPCP April Fools' joke; RFC 9110 reserves 418 as (Unused) since it is deployed; some " \
         "sites use it to block")                                                                  \
    WIRE(419, PAGE_EXPIRED, "Page Expired", VENDOR, "Laravel",                                     \
         "Laravel: the CSRF token is missing or expired")                                          \
    WIRE(420, ENHANCE_YOUR_CALM, "Enhance Your Calm", VENDOR, "Twitter",                           \
         "Twitter Search and Trends API v1 rate limiting (v1.1 uses 429)")                         \
    ALSO(420, "Method Failure", VENDOR, "Spring Framework",                                        \
         "deprecated Spring response: a method has failed")                                        \
    WIRE(421, MISDIRECTED_REQUEST, "Misdirected Request", HTTP, "RFC 9110",                        \
         "this server cannot answer for the request's authority (e.g. reused connection); was "    \
         "RFC 7540")                                                                               \
    WIRE(422, UNPROCESSABLE_CONTENT, "Unprocessable Content", HTTP, "RFC 9110",                    \
         "well-formed but semantically invalid")                                                   \
    ALSO(422, "Unprocessable Entity", WEBDAV, "WebDAV RFC 4918",                                   \
         "the WebDAV name of 422, until RFC 9110 made the code general")                           \
    WIRE(423, LOCKED, "Locked", WEBDAV, "WebDAV RFC 4918",                                         \
         "the source or destination resource is locked")                                           \
    WIRE(424, FAILED_DEPENDENCY, "Failed Dependency", WEBDAV, "WebDAV RFC 4918",                   \
         "failed because an action it depended on (e.g. in a PROPPATCH) failed")                   \
    WIRE(425, TOO_EARLY, "Too Early", RFC_OTHER, "RFC 8470",                                       \
         "will not risk a request that may be replayed (TLS early data)")                          \
    ALSO(425, "Unordered Collection", OBSOLETE, "WebDAV draft",                                    \
         "WebDAV Advanced Collections draft, never standardized: a position in an unordered "      \
         "collection was asked for")                                                               \
    WIRE(426, UPGRADE_REQUIRED, "Upgrade Required", HTTP, "RFC 9110",                              \
         "switch to the protocol named in Upgrade (e.g. TLS, RFC 2817)")                           \
    WIRE(428, PRECONDITION_REQUIRED, "Precondition Required", RFC_OTHER, "RFC 6585",               \
         "the origin requires a conditional request (prevents lost updates)")                      \
    WIRE(429, TOO_MANY_REQUESTS, "Too Many Requests", RFC_OTHER, "RFC 6585",                       \
         "rate limited; may carry Retry-After")                                                    \
    WIRE(430, REQUEST_HEADER_FIELDS_TOO_LARGE_430, "Request Header Fields Too Large", VENDOR,      \
         "Shopify",                                                                                \
         "Shopify: too many URLs requested in a time frame (used instead of 429)")                 \
    WIRE(431, REQUEST_HEADER_FIELDS_TOO_LARGE, "Request Header Fields Too Large", RFC_OTHER,       \
         "RFC 6585",                                                                               \
         "one header field or the whole header section is too large")                              \
    WIRE(440, LOGIN_TIME_OUT, "Login Time-out", VENDOR, "IIS",                                     \
         "IIS: the client's session expired; log in again")                                        \
    WIRE(444, NO_RESPONSE, "No Response", VENDOR, "nginx",                                         \
         "nginx internal: close the connection without sending any response")                      \
    WIRE(449, RETRY_WITH, "Retry With", VENDOR, "IIS",                                             \
         "IIS/Microsoft: required information missing; retry after supplying it")                  \
    WIRE(450, BLOCKED_BY_WINDOWS_PARENTAL_CONTROLS, "Blocked by Windows Parental Controls",        \
         VENDOR, "Microsoft",                                                                      \
         "Windows Parental Controls block the requested page")                                     \
    WIRE(451, UNAVAILABLE_FOR_LEGAL_REASONS, "Unavailable For Legal Reasons", RFC_OTHER,           \
         "RFC 7725",                                                                               \
         "denied because of a legal demand (Fahrenheit 451)")                                      \
    ALSO(451, "Redirect", VENDOR, "IIS",                                                           \
         "Exchange ActiveSync: another server is better placed or the mailbox is unreachable; "    \
         "re-run AutoDiscover")                                                                    \
    WIRE(456, UNRECOVERABLE_ERROR, "Unrecoverable Error", VENDOR, "Microsoft WebDAV",              \
         "Microsoft WebDAV extension: processing hit unrecoverable database errors")               \
    WIRE(460, CLIENT_CLOSED_CONNECTION, "Client Closed Connection", VENDOR, "AWS ELB",             \
         "AWS load balancer: the client closed the connection before the idle timeout elapsed")    \
    WIRE(463, TOO_MANY_X_FORWARDED_FOR_ADDRESSES, "Too Many X-Forwarded-For Addresses", VENDOR,    \
         "AWS ELB",                                                                                \
         "AWS load balancer: X-Forwarded-For carried more than 30 IP addresses")                   \
    WIRE(464, INCOMPATIBLE_PROTOCOL_VERSIONS, "Incompatible Protocol Versions", VENDOR, "AWS ELB", \
         "AWS load balancer: client and target group protocol versions do not match")              \
    WIRE(494, REQUEST_HEADER_TOO_LARGE, "Request Header Too Large", VENDOR, "nginx",               \
         "nginx: request header or one header line too large (the client sees 400)")               \
    WIRE(495, SSL_CERTIFICATE_ERROR, "SSL Certificate Error", VENDOR, "nginx",                     \
         "nginx: the client certificate is invalid (the client sees 400)")                         \
    WIRE(496, SSL_CERTIFICATE_REQUIRED, "SSL Certificate Required", VENDOR, "nginx",               \
         "nginx: a client certificate is required but was not sent (the client sees 400)")         \
    WIRE(497, HTTP_REQUEST_SENT_TO_HTTPS_PORT, "HTTP Request Sent to HTTPS Port", VENDOR, "nginx", \
         "nginx: plain HTTP on a TLS listener (the client sees 400)")                              \
    WIRE(498, INVALID_TOKEN, "Invalid Token", VENDOR, "Esri",                                      \
         "ArcGIS Server: the token is expired or otherwise invalid")                               \
    WIRE(499, CLIENT_CLOSED_REQUEST, "Client Closed Request", VENDOR, "nginx",                     \
         "nginx log code: the client closed the connection before the response was sent")          \
    ALSO(499, "Token Required", VENDOR, "Esri",                                                    \
         "ArcGIS for Server: a token is required but was not submitted")                           \
    /* 5xx */                                                                                      \
    WIRE(500, INTERNAL_SERVER_ERROR, "Internal Server Error", HTTP, "RFC 9110",                    \
         "unexpected condition; no more specific code applies")                                    \
    WIRE(501, NOT_IMPLEMENTED, "Not Implemented", HTTP, "RFC 9110",                                \
         "the server does not support the functionality (e.g. an unknown method)")                 \
    WIRE(502, BAD_GATEWAY, "Bad Gateway", HTTP, "RFC 9110",                                        \
         "a gateway or proxy got an invalid response from upstream")                               \
    WIRE(503, SERVICE_UNAVAILABLE, "Service Unavailable", HTTP, "RFC 9110",                        \
         "temporarily overloaded or in maintenance; may carry Retry-After")                        \
    WIRE(504, GATEWAY_TIMEOUT, "Gateway Timeout", HTTP, "RFC 9110",                                \
         "a gateway or proxy got no timely response from upstream")                                \
    WIRE(505, HTTP_VERSION_NOT_SUPPORTED, "HTTP Version Not Supported", HTTP, "RFC 9110",          \
         "the major version of the request is not supported")                                      \
    WIRE(506, VARIANT_ALSO_NEGOTIATES, "Variant Also Negotiates", RFC_OTHER, "RFC 2295",           \
         "transparent content negotiation: the chosen variant negotiates itself (loop)")           \
    WIRE(507, INSUFFICIENT_STORAGE, "Insufficient Storage", WEBDAV, "WebDAV RFC 4918",             \
         "cannot store the representation needed to complete the request")                         \
    WIRE(508, LOOP_DETECTED, "Loop Detected", WEBDAV, "WebDAV RFC 5842",                           \
         "infinite loop while processing a Depth: infinity request")                               \
    WIRE(509, BANDWIDTH_LIMIT_EXCEEDED, "Bandwidth Limit Exceeded", VENDOR,                        \
         "Apache Web Server/cPanel",                                                               \
         "cPanel mod_bwlimited: the site exceeded its bandwidth allowance")                        \
    WIRE(510, NOT_EXTENDED, "Not Extended", RFC_OTHER, "RFC 2774",                                 \
         "further extensions required; IANA marks it obsoleted (RFC 2774 is historic)")            \
    WIRE(511, NETWORK_AUTHENTICATION_REQUIRED, "Network Authentication Required", RFC_OTHER,       \
         "RFC 6585",                                                                               \
         "captive portal: authenticate to gain network access")                                    \
    WIRE(520, WEB_SERVER_RETURNED_AN_UNKNOWN_ERROR, "Web Server Returned an Unknown Error",        \
         VENDOR, "Cloudflare",                                                                     \
         "Cloudflare: the origin returned an empty, unknown or unexpected response")               \
    WIRE(521, WEB_SERVER_IS_DOWN, "Web Server Is Down", VENDOR, "Cloudflare",                      \
         "Cloudflare: the origin refused the connection")                                          \
    WIRE(522, CONNECTION_TIMED_OUT, "Connection Timed Out", VENDOR, "Cloudflare",                  \
         "Cloudflare: TCP connect to the origin timed out")                                        \
    WIRE(523, ORIGIN_IS_UNREACHABLE, "Origin Is Unreachable", VENDOR, "Cloudflare",                \
         "Cloudflare: the origin cannot be reached (e.g. bad or missing DNS records)")             \
    WIRE(524, A_TIMEOUT_OCCURRED, "A Timeout Occurred", VENDOR, "Cloudflare",                      \
         "Cloudflare: connected to the origin but got no timely HTTP response")                    \
    WIRE(525, SSL_HANDSHAKE_FAILED, "SSL Handshake Failed", VENDOR, "Cloudflare",                  \
         "Cloudflare: the TLS handshake with the origin failed")                                   \
    WIRE(526, INVALID_SSL_CERTIFICATE, "Invalid SSL Certificate", VENDOR, "Cloudflare",            \
         "Cloudflare: the origin certificate did not validate; also Cloud Foundry's gorouter")     \
    WIRE(527, RAILGUN_ERROR, "Railgun Error", VENDOR, "Cloudflare",                                \
         "Cloudflare: the connection to the origin's Railgun server was interrupted")              \
    WIRE(529, SITE_IS_OVERLOADED, "Site is overloaded", VENDOR, "Qualys",                          \
         "Qualys SSL Labs API: the service cannot take the request now")                           \
    WIRE(530, SITE_IS_FROZEN, "Site is frozen", VENDOR, "Pantheon",                                \
         "Pantheon: the site is frozen for inactivity")                                            \
    ALSO(530, "1xxx Error", VENDOR, "Cloudflare",                                                  \
         "Cloudflare: returned along with a Cloudflare 1xxx error code in the body")               \
    WIRE(561, UNAUTHORIZED_561, "Unauthorized", VENDOR, "AWS ELB",                                 \
         "AWS load balancer: the identity provider returned an error authenticating the user")     \
    WIRE(598, NETWORK_READ_TIMEOUT_ERROR, "Network Read Timeout Error", UNOFFICIAL,                \
         "informal proxy convention",                                                              \
         "a proxy timed out reading from the network behind it")                                   \
    WIRE(599, NETWORK_CONNECT_TIMEOUT_ERROR, "Network Connect Timeout Error", UNOFFICIAL,          \
         "informal proxy convention",                                                              \
         "a proxy timed out connecting to the network behind it")

#endif
