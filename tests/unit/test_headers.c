/*
 * test_headers.c — what crosses Portico: hop-by-hop fields removed (and those Connection names),
 * X-Forwarded-* and Via set, Host overridden, framing fields rewritten for the next hop, interim
 * responses with and without the custom hook. Inputs are parsed with the real HTTP/1.1 parser
 * and every output must parse again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "alloc_fail.h"
#include "portico/headers.h"
#include "portico/http1.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TARGET(t) .target = t, .target_len = sizeof(t) - 1
#define HOST(h) .host = h, .host_len = sizeof(h) - 1
#define CLIENT_HOST(h) .client_host = h, .client_host_len = sizeof(h) - 1
#define BASE TARGET("/x"), .client_ip = "127.0.0.21", .request_id = "rid1"

static const struct h1_limits limits = {8192, 65536};

static char *take(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* ---- requests ---- */


/* tracestate values of the rows below: 32 members, and one member of 512 characters (with
 * its "a="), the limits of W3C Trace Context. */
#define TS_K0_TO_K31                                                                               \
    "k0=v,k1=v,k2=v,k3=v,k4=v,k5=v,k6=v,k7=v,k8=v,k9=v,k10=v,k11=v,k12=v,k13=v,k14=v,k15=v,"      \
    "k16=v,k17=v,k18=v,k19=v,k20=v,k21=v,k22=v,k23=v,k24=v,k25=v,k26=v,k27=v,k28=v,k29=v,k30=v,"  \
    "k31=v"
#define TS_X51 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define TS_A512 "a=" TS_X51 TS_X51 TS_X51 TS_X51 TS_X51 TS_X51 TS_X51 TS_X51 TS_X51 TS_X51

static const struct {
    const char *why;
    const char *in;
    struct fwd_request fwd;
    const char *out;
} req_rows[] = {
    {"every hop-by-hop field and the fields Connection names are dropped",
     "GET /orig HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Hop\r\n"
     "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
     "Trailer: X-Sum\r\nTransfer-Encoding: chunked\r\nUpgrade: websocket\r\n"
     "Content-Length: 5\r\nX-Hop: 1\r\nAccept: */*\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"past 16 names, Connection still names fields in any case, over several Connection fields",
     "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: n1, n2, n3, n4, n5, n6, n7, n8, n9, n10\r\n"
     "X-A: 1\r\nconnection: n11, n12, n13, n14, n15, n16, n17, X-a, n18\r\nx-a: 2\r\n"
     "X-C: 3\r\nX-B: 4\r\nCONNECTION: x-b, x-b\r\nX-Ab: 5\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-C: 3\r\nX-Ab: 5\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"Connection names and field names match case-insensitively, over several Connection fields",
     "GET / HTTP/1.1\r\nhost: a.test\r\nCONNECTION: X-ONE\r\nx-one: 1\r\nconnection: x-two\r\n"
     "X-Two: 2\r\nX-Three: 3\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nhost: a.test\r\nX-Three: 3\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"the client's Content-Length is re-emitted for a Content-Length body",
     "POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
     {BASE, .framing = H1_BODY_LENGTH, .content_length = 5},
     "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\nContent-Length: 5\r\n"
     "\r\n"},
    {"a chunked body goes chunked, whatever codings the client listed",
     "POST /p HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n",
     {BASE, .framing = H1_BODY_CHUNKED},
     "POST /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"Content-Length 0 is still announced",
     "POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
     {BASE, .framing = H1_BODY_LENGTH, .content_length = 0},
     "POST /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\nContent-Length: 0\r\n\r\n"},
    {"X-Forwarded-For: the chain the client brought, then the address we saw",
     "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.1.1, 127.0.2.2\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.1.1, 127.0.2.2, 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"several X-Forwarded-For fields merge into one, in order",
     "GET / HTTP/1.1\r\nX-Forwarded-For: 127.0.1.1\r\nHost: a.test\r\nx-forwarded-for: 127.0.2.2\r\n"
     "\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.1.1, 127.0.2.2, 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"an empty X-Forwarded-For adds no empty element",
     "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For:\r\nX-Forwarded-For: 127.0.1.1\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.1.1, 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"an X-Forwarded-For named by Connection is dropped, ours is still added",
     "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: X-Forwarded-For\r\n"
     "X-Forwarded-For: 127.0.6.6\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"the client's X-Forwarded-Proto/Host and X-Request-Id are replaced by ours",
     "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"
     "X-Request-Id: theirs\r\n\r\n",
     {BASE, .client_tls = false, CLIENT_HOST("a.test")},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: a.test\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"a field Portico sets or removes, spelt with '_' for '-', is dropped: CGI-style servers read "
     "X_Forwarded_Proto as X-Forwarded-Proto, the client's value first",
     "GET / HTTP/1.1\r\nHost: a.test\r\nX_Forwarded_Proto: https\r\nx_forwarded_host: evil\r\n"
     "X_Request_Id: theirs\r\nX-Forwarded_For: 127.0.6.6\r\nTransfer_Encoding: chunked\r\n"
     "Content_Length: 5\r\nPortico_Fault: x\r\nX_Custom_Id: 7\r\n_: u\r\n\r\n",
     {BASE, CLIENT_HOST("a.test")},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX_Custom_Id: 7\r\n_: u\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"the client's Forwarded and X-Real-IP are dropped (any case, '_' twins too): origins read "
     "them before X-Forwarded-* (Rack 3: Forwarded's proto= and host=; nginx realip: X-Real-IP)",
     "GET / HTTP/1.1\r\nHost: a.test\r\nForwarded: for=127.6.6.6;proto=https;host=evil\r\n"
     "X-Real-IP: 127.6.6.6\r\nforwarded: for=\"[::6]:66\"\r\nX_Real_Ip: 127.6.6.6\r\n"
     "X-Forwarded: for=127.6.6.6\r\n\r\n",
     {BASE, CLIENT_HOST("a.test")},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded: for=127.6.6.6\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"a TLS client is https",
     "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
     {BASE, .client_tls = true},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: https\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"a Via the client brought stays, ours follows",
     "GET / HTTP/1.1\r\nHost: a.test\r\nVia: 1.0 corp\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nVia: 1.0 corp\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"Host override (absolute-form): ours first, the client's dropped",
     "GET http://origin.test/x HTTP/1.1\r\nAccept: */*\r\nHost: ignored.test\r\n\r\n",
     {BASE, HOST("origin.test"), CLIENT_HOST("origin.test")},
     "GET /x HTTP/1.1\r\nHost: origin.test\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Forwarded-Host: origin.test\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"HTTP/1.0 without Host goes out as HTTP/1.1 with one",
     "GET /old HTTP/1.0\r\nAccept: */*\r\n\r\n",
     {BASE, HOST("127.0.0.1:3000")},
     "GET /x HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nAccept: */*\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"a Host named by Connection is still sent: HTTP/1.1 requires it",
     "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: host\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"Expect is dropped unless relayed",
     "POST / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
     {BASE, .framing = H1_BODY_LENGTH, .content_length = 1},
     "POST /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\nContent-Length: 1\r\n\r\n"},
    {"Expect is kept in relay mode",
     "POST / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
     {BASE, .keep_expect = true, .framing = H1_BODY_LENGTH, .content_length = 1},
     "POST /x HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\nContent-Length: 1\r\n"
     "\r\n"},
    {"Max-Forwards: the value given once after the client's fields, the client's dropped",
     "OPTIONS / HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 5\r\nAccept: */*\r\n"
     "max-forwards: 9\r\n\r\n",
     {BASE, .max_forwards = 4 + 1},
     "OPTIONS /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nMax-Forwards: 4\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"Max-Forwards passes as it is unless set",
     "GET / HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"a tracestate of 32 members goes on as it came",
     "GET / HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     TS_K0_TO_K31 "\r\n"
     "\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     TS_K0_TO_K31 "\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"one of 512 characters too, a member over 128 among them",
     "GET / HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     TS_A512 "\r\n"
     "\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     TS_A512 "\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"one of 513 of a single member over 128: nothing left, no field",
     "GET / HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     TS_A512 "x\r\n"
     "\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"33 members over two fields, empty members and OWS: one field of the first 32",
     "GET / HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     "k0=v , ,k1=v" "\r\n"
     "tracestate: "
     "k2=v,k3=v,k4=v,k5=v,k6=v,k7=v,k8=v,k9=v,k10=v,k11=v,k12=v,k13=v,k14=v,k15=v,k16=v,k1"
     "7=v,k18=v,k19=v,k20=v,k21=v,k22=v,k23=v,k24=v,k25=v,k26=v,k27=v,k28=v,k29=v,k30=v,k3"
     "1=v,k32=v" "\r\n"
     "\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\n"
     "tracestate: "
     TS_K0_TO_K31 "\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"a cut list that Connection names is not written",
     "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: tracestate\r\n"
     "tracestate: "
     "k0=v,k1=v,k2=v,k3=v,k4=v,k5=v,k6=v,k7=v,k8=v,k9=v,k10=v,k11=v,k12=v,k13=v,k14=v,k15="
     "v,k16=v,k17=v,k18=v,k19=v,k20=v,k21=v,k22=v,k23=v,k24=v,k25=v,k26=v,k27=v,k28=v,k29="
     "v,k30=v,k31=v,k32=v" "\r\n"
     "\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"an HTTP/1.0 client's Upgrade is not offered: only an HTTP/1.1 one may switch",
     "GET / HTTP/1.0\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
     {BASE, .via = HDR_VIA_1_0},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.0 portico\r\n\r\n"},
    {"a target of a query alone, empty (\"http://h?\"), still gets its path: \"/?\"",
     "GET http://a.test? HTTP/1.1\r\nHost: a.test\r\n\r\n",
     {TARGET("?"), .client_ip = "127.0.0.21", .request_id = "rid1"},
     "GET /? HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"Via names the client's protocol",
     "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
     {BASE, .via = HDR_VIA_2},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nVia: 2 portico\r\n\r\n"},
    {"a client's Client-Cert fields never pass, in any case or with '_' (RFC 9440 4); "
     "names that merely start alike do",
     "GET / HTTP/1.1\r\nHost: a.test\r\nClient-Cert: :Zm9v:\r\nCLIENT-CERT-CHAIN: :Zm9v:\r\n"
     "client-cert-verify: SUCCESS\r\nClient_Cert: :Zm9v:\r\nClient-Certs: 1\r\n"
     "Client-Cert-Verified: 1\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nClient-Certs: 1\r\nClient-Cert-Verified: 1\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"Portico's own client-certificate word goes after X-Request-Id, the client's dropped",
     "GET / HTTP/1.1\r\nHost: a.test\r\nClient-Cert-Verify: NONE\r\n\r\n",
     {BASE, .client_cert = ":Y2VydA==:", .client_cert_chain = ":Y2E=:",
      .client_cert_verify = "SUCCESS"},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 127.0.0.21\r\n"
     "X-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\nClient-Cert-Verify: SUCCESS\r\n"
     "Client-Cert: :Y2VydA==:\r\nClient-Cert-Chain: :Y2E=:\r\nVia: 1.1 portico\r\n\r\n"},
    {"end-to-end fields pass unchanged, in order, duplicates included",
     "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: a=1\r\nAccept: text/html\r\nCookie: b=2\r\n"
     "Authorization: Bearer x\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nCookie: a=1\r\nAccept: text/html\r\nCookie: b=2\r\n"
     "Authorization: Bearer x\r\nX-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\n"
     "X-Request-Id: rid1\r\nVia: 1.1 portico\r\n\r\n"},
    {"no sticky: a nameless pair goes as it came (no cookie of Portico's to take out)",
     "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: =x; a=1\r\n\r\n",
     {BASE},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nCookie: =x; a=1\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    /* sticky: Portico's cookie never reaches the origin, the others go as they came */
    {"sticky: its cookie taken out first, middle, last, twice; a field of it alone goes; "
     "names that start alike stay; the other pairs keep their bytes",
     "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: SRV=a; x=1\r\nCookie: y=\"2 2\";  SRV=b;z=3\r\n"
     "Cookie: w=4; SRV=\"c\"\r\nCookie: SRV=d\r\ncookie: SRVX=5; SRV=e;SRV=f ;v=6\r\n"
     "Cookie: SRV\r\nCookie: \r\n\r\n",
     {BASE, .sticky_name = "SRV", .sticky_name_len = 3},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nCookie: x=1\r\nCookie: y=\"2 2\";z=3\r\n"
     "Cookie: w=4\r\ncookie: SRVX=5;v=6\r\nCookie: SRV\r\nCookie: \r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"sticky: blank pairs left beside its cookie neither make a field nor start one",
     "GET / HTTP/1.1\r\nHost: a.test\r\nCookie: SRV=a; ;\r\nCookie: SRV=b;; x=1\r\n\r\n",
     {BASE, .sticky_name = "SRV", .sticky_name_len = 3},
     "GET /x HTTP/1.1\r\nHost: a.test\r\nCookie: x=1\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"sticky: a Cookie field that Connection names goes no further (hop-by-hop), as without",
     "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: cookie\r\nCookie: SRV=a; x=1\r\n\r\n",
     {BASE, .sticky_name = "SRV", .sticky_name_len = 3},
     "GET /x HTTP/1.1\r\nHost: a.test\r\n"
     "X-Forwarded-For: 127.0.0.21\r\nX-Forwarded-Proto: http\r\nX-Request-Id: rid1\r\n"
     "Via: 1.1 portico\r\n\r\n"},
};

static void test_request(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(req_rows); i++) {
        struct h1_request req, again;
        struct h1_error err;
        const char *in = req_rows[i].in;
        if (h1_parse_request(in, strlen(in), &limits, &req, &err) <= 0)
            fail_msg("%s: input refused: %s", req_rows[i].why, err.reason);
        struct evbuffer *b = evbuffer_new();
        hdr_write_request(b, &req, &req_rows[i].fwd);
        char *out = take(b);
        evbuffer_free(b);
        if (strcmp(out, req_rows[i].out) != 0)
            fail_msg("%s:\n%s\nwant:\n%s", req_rows[i].why, out, req_rows[i].out);
        /* the origin must be able to parse it, with a single Host and the framing we chose */
        int n = h1_parse_request(out, strlen(out), &limits, &again, &err);
        if (n != (int)strlen(out))
            fail_msg("%s: output does not parse: %s", req_rows[i].why, err.reason);
        struct h1_info info;
        if (h1_request_info(&again, &info, &err) != 0)
            fail_msg("%s: output refused: %s", req_rows[i].why, err.reason);
        assert_int_equal(again.minor, 1);
        assert_non_null(info.host);
        assert_int_equal(info.framing, req_rows[i].fwd.framing);
        free(out);
    }
}

/* CPU time of this thread, in microseconds: what the work cost, whatever the machine's load. */
static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Fails when writing a head for the origin cost more than a few times reading it (the CPU of
 * each, over enough rounds that the clock's grain does not matter). */
static void assert_write_cost(uint64_t write_us, uint64_t parse_us)
{
    if (write_us > 10 * parse_us + 5000)
        fail_msg("writing the head took %llu us of CPU, reading it %llu",
                 (unsigned long long)write_us, (unsigned long long)parse_us);
}

/* Reads the head in[n] `rounds` times, then writes it for the origin as many times: the CPU
 * each took, and the last write's text (the caller frees it). */
static char *read_write_timed(const char *in, size_t n, const struct h1_limits *lim, int rounds,
                              uint64_t *parse_us, uint64_t *write_us)
{
    struct h1_request req;
    struct h1_error err;
    uint64_t t0 = thread_cpu_us();
    for (int r = 0; r < rounds; r++)
        assert_int_equal(h1_parse_request(in, n, lim, &req, &err), (int)n);
    *parse_us = thread_cpu_us() - t0;
    struct evbuffer *b = evbuffer_new();
    t0 = thread_cpu_us();
    for (int r = 0; r < rounds; r++) {
        hdr_write_request(b, &req, &(struct fwd_request){BASE});
        if (r < rounds - 1)
            evbuffer_drain(b, evbuffer_get_length(b));
    }
    *write_us = thread_cpu_us() - t0;
    char *out = take(b);
    evbuffer_free(b);
    return out;
}

/* A Connection list longer than the names kept at hand (16) is looked up token by token among
 * the fields, not walked again for each field: 90 fields and 400,000 names (a head of 900 KB,
 * max_header_size = 1m) cost 200 ms of a worker per request, and the same walk for a response's
 * fields. Held to a few times what reading that head costs (h1_request_info walks the list
 * once too); the names it lists still go. */
static void test_long_connection_list(void **state)
{
    (void)state;
    enum { NAMES = 400000, FIELDS = 90 };
    size_t cap = (size_t)NAMES * 3 + FIELDS * 16 + 256;
    char *in = malloc(cap);
    assert_non_null(in);
    size_t n = (size_t)snprintf(in, cap, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: X-3");
    for (int i = 0; i < NAMES; i++) {
        memcpy(in + n, ",x", 2); /* one name listed again and again: a field is walked per name */
        n += 2;
    }
    n += (size_t)snprintf(in + n, cap - n, ", x-7\r\n");
    for (int i = 0; i < FIELDS; i++)
        n += (size_t)snprintf(in + n, cap - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(in + n, cap - n, "\r\n");
    const struct h1_limits big = {8192, 2 * 1024 * 1024};
    struct h1_request req;
    struct h1_error err;
    struct h1_info info;
    uint64_t t0 = thread_cpu_us();
    assert_int_equal(h1_parse_request(in, n, &big, &req, &err), (int)n);
    assert_int_equal(h1_request_info(&req, &info, &err), 0); /* walks the list once */
    uint64_t parse_us = thread_cpu_us() - t0;
    struct evbuffer *b = evbuffer_new();
    t0 = thread_cpu_us();
    hdr_write_request(b, &req, &(struct fwd_request){BASE});
    uint64_t write_us = thread_cpu_us() - t0;
    char *out = take(b);
    evbuffer_free(b);
    print_message("read %llu us, write %llu us\n", (unsigned long long)parse_us,
                  (unsigned long long)write_us);
    assert_null(strstr(out, "X-3: v\r\n"));
    assert_null(strstr(out, "X-7: v\r\n"));
    assert_non_null(strstr(out, "X-8: v\r\n"));
    assert_write_cost(write_us, parse_us);
    free(out);
    free(in);
}

/* A joined trace's tracestate is judged once a head, not once for each of its fields: judged at
 * every field, 95 fields of "tracestate: ,,,,," (a 1 KB head) walked the list 95 times (by
 * callgrind 2,094,000 instructions a proxied request against 58,800 before the bound, 36
 * times; 95 fields of one member each 546,500, 9 times). Held to a few times what reading that
 * head costs, over enough rounds that the clock's grain does not matter; the cut list still
 * goes on as one field of the first 32 members. */
static void test_many_tracestate_fields(void **state)
{
    (void)state;
    enum { FIELDS = 95, ROUNDS = 500 };
    static const char *const values[] = {",,,,,", "k=v"};
    for (size_t v = 0; v < ARRAY_LEN(values); v++) {
        char in[FIELDS * 32 + 64];
        size_t n = (size_t)snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a.test\r\n");
        for (int i = 0; i < FIELDS; i++)
            n += (size_t)snprintf(in + n, sizeof(in) - n, "tracestate: %s\r\n", values[v]);
        n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\n");
        uint64_t parse_us, write_us;
        char *out = read_write_timed(in, n, &limits, ROUNDS, &parse_us, &write_us);
        print_message("\"tracestate: %s\" x %d, %d times: read %llu us, write %llu us\n",
                      values[v], FIELDS, ROUNDS, (unsigned long long)parse_us,
                      (unsigned long long)write_us);
        const char *ts = strstr(out, "tracestate: ");
        if (v == 0) { /* 569 characters of no member: nothing left to send */
            assert_null(ts);
        } else { /* 95 members: one field of the first 32 */
            assert_non_null(ts);
            assert_null(strstr(ts + 1, "tracestate: "));
            assert_non_null(strstr(ts, "k=v,k=v"));
            size_t members = 1;
            for (const char *p = ts; *p != '\r'; p++)
                members += *p == ',';
            assert_int_equal(members, 32);
        }
        assert_write_cost(write_us, parse_us);
        free(out);
    }
}

/* A tracestate of 60 KB of ',' (max_header_size takes up to 1m) is over 512 characters and
 * holds no member: nothing goes, found at a few times what reading that head costs. With a
 * memchr for each empty member the cut took 65 times the parse (94 ms against 1.4 for 200
 * heads), 470 us of a worker per request. */
static void test_tracestate_of_commas(void **state)
{
    (void)state;
    enum { COMMAS = 60000, ROUNDS = 200 };
    static const struct h1_limits big = {8192, 65536};
    size_t cap = COMMAS + 128;
    char *in = malloc(cap);
    assert_non_null(in);
    size_t n = (size_t)snprintf(in, cap, "GET / HTTP/1.1\r\nHost: a.test\r\ntracestate: ");
    memset(in + n, ',', COMMAS);
    n += COMMAS;
    n += (size_t)snprintf(in + n, cap - n, "\r\n\r\n");
    uint64_t parse_us, write_us;
    char *out = read_write_timed(in, n, &big, ROUNDS, &parse_us, &write_us);
    print_message("%d ',' in a tracestate, %d times: read %llu us, write %llu us\n", COMMAS,
                  ROUNDS, (unsigned long long)parse_us, (unsigned long long)write_us);
    assert_null(strstr(out, "tracestate"));
    assert_write_cost(write_us, parse_us);
    free(out);
    free(in);
}

/* hdr_is_hop_by_hop, field by field. */
static void test_is_hop_by_hop(void **state)
{
    (void)state;
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\n"
                             "X-A: 1\r\nX-B: 2\r\nTE: trailers\r\nKeep-Alive: 1\r\n"
                             "Upgrade: h2c\r\nProxy-Connection: x\r\nTrailer: t\r\n"
                             "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n";
    static const struct {
        const char *name;
        bool hop;
    } rows[] = {
        {"Host", false},              /* end-to-end */
        {"Connection", true},         /* RFC 9110 7.6.1 */
        {"X-A", true},                /* named by Connection */
        {"X-B", false},               /* not named */
        {"TE", true},                 /* hop-by-hop */
        {"Keep-Alive", true},         /* hop-by-hop */
        {"Upgrade", true},            /* hop-by-hop */
        {"Proxy-Connection", true},   /* old clients */
        {"Trailer", true},            /* hop-by-hop */
        {"Transfer-Encoding", true},  /* framing of this hop */
        {"Content-Length", true},     /* rewritten by Portico */
    };
    struct h1_request req;
    struct h1_error err;
    assert_true(h1_parse_request(in, sizeof(in) - 1, &limits, &req, &err) > 0);
    assert_int_equal(req.nfields, ARRAY_LEN(rows));
    for (size_t i = 0; i < req.nfields; i++) {
        assert_int_equal(req.fields[i].name_len, strlen(rows[i].name));
        assert_memory_equal(req.fields[i].name, rows[i].name, req.fields[i].name_len);
        if (hdr_is_hop_by_hop(&req.fields[i], req.fields, req.nfields) != rows[i].hop)
            fail_msg("%s: hop-by-hop %d", rows[i].name, !rows[i].hop);
    }
}

/* ---- responses ---- */

/* What one row asks of the forwarding: the client, the framing on the wire, what Portico adds. */
struct resp_case {
    int client_minor;
    enum h1_framing framing;
    uint64_t content_length;
    bool keep_alive;
    const char *request_id;
    const char *proxy_status;
    const char *server_timing;
    const char *date;
};

static const struct {
    const char *why;
    const char *in;
    struct resp_case fwd;
    const char *out;
} resp_rows[] = {
    {"Via added, hop-by-hop dropped, Content-Length re-emitted",
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n"
     "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .content_length = 5, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 portico\r\nContent-Length: 5\r\n"
     "\r\n"},
    {"chunked to a 1.1 client: Transfer-Encoding rewritten, Content-Length gone",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nTrailer: X-Sum\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_CHUNKED, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"close-delimited to a 1.0 client: no framing field and Connection: close",
     "HTTP/1.0 200 OK\r\nServer: old\r\n\r\n",
     {.client_minor = 0, .framing = H1_BODY_CLOSE, .keep_alive = false},
     /* the origin spoke 1.0: Via says the version received (RFC 9110 7.6.3) */
     "HTTP/1.1 200 OK\r\nServer: old\r\nVia: 1.0 portico\r\nConnection: close\r\n\r\n"},
    {"keep-alive with a 1.0 client is said explicitly",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
     {.client_minor = 0, .framing = H1_BODY_LENGTH, .content_length = 2, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"},
    {"keep-alive with a 1.0 client is said on a response without a body too (304)",
     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
     {.client_minor = 0, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nVia: 1.1 portico\r\nConnection: keep-alive\r\n"
     "\r\n"},
    {"the origin's Connection: close is not the client's",
     "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .content_length = 2, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nContent-Length: 2\r\n\r\n"},
    {"closing after this response: Connection: close for a 1.1 client",
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .content_length = 2, .keep_alive = false},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"},
    {"304 keeps the origin's Content-Length: it describes the representation",
     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 1234\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nVia: 1.1 portico\r\nContent-Length: 1234\r\n"
     "\r\n"},
    {"HEAD response keeps the origin's Content-Length",
     "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nContent-Length: 99\r\n\r\n"},
    /* RFC 9110 8.6: the list h1_response_info tolerates is no valid Content-Length, and a sender
     * must not forward one; Node's llhttp refuses the whole response over it */
    {"HEAD response: a Content-Length list of one value goes on as that value",
     "HTTP/1.1 200 OK\r\nContent-Length: 99, 99\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nContent-Length: 99\r\n\r\n"},
    {"304: a Content-Length list of one value goes on as that value",
     "HTTP/1.1 304 Not Modified\r\nContent-Length: 7,7 , 7\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 304 Not Modified\r\nVia: 1.1 portico\r\nContent-Length: 7\r\n\r\n"},
    {"HEAD response without Content-Length gets none",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\n\r\n"},
    {"204 never carries Content-Length (RFC 9110 8.6)",
     "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true},
     "HTTP/1.1 204 No Content\r\nVia: 1.1 portico\r\n\r\n"},
    {"an empty reason gets the registry's phrase; X-Request-Id, Proxy-Status, Server-Timing added",
     "HTTP/1.1 418 \r\nContent-Length: 0\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .keep_alive = true, .request_id = "rid",
      .proxy_status = "portico; received-status=418", .server_timing = "origin;dur=1.5"},
     "HTTP/1.1 418 I'm a teapot\r\nVia: 1.1 portico\r\nX-Request-Id: rid\r\n"
     "Proxy-Status: portico; received-status=418\r\nServer-Timing: origin;dur=1.5\r\n"
     "Content-Length: 0\r\n\r\n"},
    {"the origin's X-Request-Id wins",
     "HTTP/1.1 200 OK\r\nx-request-id: theirs\r\nContent-Length: 0\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .keep_alive = true, .request_id = "ours"},
     "HTTP/1.1 200 OK\r\nx-request-id: theirs\r\nVia: 1.1 portico\r\nContent-Length: 0\r\n\r\n"},
    {"an origin Via stays, ours follows; fields keep their order",
     "HTTP/1.1 500 Oops\r\nVia: 1.1 cdn\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
     "Content-Length: 0\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .keep_alive = true},
     "HTTP/1.1 500 Oops\r\nVia: 1.1 cdn\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
     "Via: 1.1 portico\r\nContent-Length: 0\r\n\r\n"},
    /* RFC 9110 6.6.1: a proxy with a clock adds the Date an origin left out */
    {"a response without Date gets ours",
     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .keep_alive = true,
      .date = "Sun, 06 Nov 1994 08:49:37 GMT"},
     "HTTP/1.1 200 OK\r\nVia: 1.1 portico\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
     "Content-Length: 0\r\n\r\n"},
    {"the origin's Date stays, whatever its case",
     "HTTP/1.1 200 OK\r\ndate: Mon, 07 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
     {.client_minor = 1, .framing = H1_BODY_LENGTH, .keep_alive = true,
      .date = "Sun, 06 Nov 1994 08:49:37 GMT"},
     "HTTP/1.1 200 OK\r\ndate: Mon, 07 Nov 1994 08:49:37 GMT\r\nVia: 1.1 portico\r\n"
     "Content-Length: 0\r\n\r\n"},
    {"a Date the origin's Connection names is not forwarded: ours replaces it",
     "HTTP/1.1 304 Not Modified\r\nConnection: Date\r\nDate: Mon, 07 Nov 1994 08:49:37 GMT\r\n"
     "\r\n",
     {.client_minor = 1, .framing = H1_BODY_NONE, .keep_alive = true,
      .date = "Sun, 06 Nov 1994 08:49:37 GMT"},
     "HTTP/1.1 304 Not Modified\r\nVia: 1.1 portico\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
     "\r\n"},
};

static void test_response(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(resp_rows); i++) {
        struct h1_response resp, again;
        struct h1_error err;
        const char *in = resp_rows[i].in;
        if (h1_parse_response(in, strlen(in), 65536, &resp, &err) <= 0)
            fail_msg("%s: input refused: %s", resp_rows[i].why, err.reason);
        const struct resp_case *rc = &resp_rows[i].fwd;
        struct fwd_response fwd = {.framing = rc->framing, .request_id = rc->request_id,
                                   .proxy_status = rc->proxy_status,
                                   .server_timing = rc->server_timing, .date = rc->date};
        struct h1_field fields[HDR_MAX_FIELDS];
        struct resp_head head = {
            .status = resp.status,
            .reason = resp.reason,
            .reason_len = resp.reason_len,
            .fields = fields,
            .nfields = hdr_response_fields(&resp, &fwd, fields, HDR_MAX_FIELDS),
            .framing = rc->framing,
            .content_length = rc->content_length,
        };
        struct evbuffer *b = evbuffer_new();
        hdr_write_head(b, &head, rc->framing, rc->client_minor == 0, rc->keep_alive);
        char *out = take(b);
        evbuffer_free(b);
        if (strcmp(out, resp_rows[i].out) != 0)
            fail_msg("%s:\n%s\nwant:\n%s", resp_rows[i].why, out, resp_rows[i].out);
        int n = h1_parse_response(out, strlen(out), 65536, &again, &err);
        if (n != (int)strlen(out))
            fail_msg("%s: output does not parse: %s", resp_rows[i].why, err.reason);
        assert_int_equal(again.status, resp.status);
        /* the client sees the framing we chose (HEAD / 304 / 204 have no body either way) */
        struct h1_info info;
        bool is_head = resp_rows[i].fwd.framing == H1_BODY_NONE;
        assert_int_equal(h1_response_info(&again, is_head ? METHOD_HEAD : METHOD_GET, &info,
                                          &err), 0);
        assert_int_equal(info.framing, resp_rows[i].fwd.framing);
        free(out);
    }
}

/* ---- interim responses ---- */

static const struct {
    const char *why;
    const char *in;
    const char *out;
} interim_rows[] = {
    {"103 keeps its Link fields, drops hop-by-hop ones",
     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: X-Hop\r\n"
     "X-Hop: 1\r\nLink: </b.js>; rel=preload\r\n\r\n",
     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n"
     "Via: 1.1 portico\r\n\r\n"},
    {"an empty reason gets the registry's phrase",
     "HTTP/1.1 102 \r\n\r\n", "HTTP/1.1 102 Processing\r\nVia: 1.1 portico\r\n\r\n"},
    /* Via says the version received (RFC 9110 7.6.3: each message a proxy forwards) */
    {"an HTTP/1.0 status line goes out as 1.1 (only 1.1 clients get interims)",
     "HTTP/1.0 100 Continue\r\n\r\n", "HTTP/1.1 100 Continue\r\nVia: 1.0 portico\r\n\r\n"},
    {"no framing and no Connection field on a 1xx, whatever the origin said",
     "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nKeep-Alive: 5\r\nX-Other: 1\r\n\r\n",
     "HTTP/1.1 103 Early Hints\r\nX-Other: 1\r\nVia: 1.1 portico\r\n\r\n"},
};

static void test_interim(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(interim_rows); i++) {
        struct h1_response resp, again;
        struct h1_error err;
        const char *in = interim_rows[i].in;
        if (h1_parse_response(in, strlen(in), 65536, &resp, &err) <= 0)
            fail_msg("%s: input refused: %s", interim_rows[i].why, err.reason);
        struct h1_field fields[H1_MAX_FIELDS];
        struct resp_head head = {.status = resp.status, .reason = resp.reason,
                                 .reason_len = resp.reason_len, .fields = fields,
                                 .nfields = hdr_interim_fields(&resp, NULL, fields, H1_MAX_FIELDS)};
        struct evbuffer *b = evbuffer_new();
        hdr_write_head(b, &head, H1_BODY_NONE, false, true);
        char *out = take(b);
        evbuffer_free(b);
        if (strcmp(out, interim_rows[i].out) != 0)
            fail_msg("%s:\n%s\nwant:\n%s", interim_rows[i].why, out, interim_rows[i].out);
        int n = h1_parse_response(out, strlen(out), 65536, &again, &err);
        assert_int_equal(n, (int)strlen(out));
        assert_int_equal(again.status, resp.status);
        free(out);
    }
}

/* The names of the fields hdr_response_fields keeps from in, "|"-separated, into out. */
static void kept_names(const char *in, char *out, size_t size)
{
    struct h1_response resp;
    struct h1_error err;
    if (h1_parse_response(in, strlen(in), 65536, &resp, &err) <= 0)
        fail_msg("input refused: %s: %s", err.reason, in);
    struct fwd_response fwd = {.framing = H1_BODY_LENGTH};
    struct h1_field fields[HDR_MAX_FIELDS];
    size_t n = hdr_response_fields(&resp, &fwd, fields, HDR_MAX_FIELDS);
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%.*s", i ? "|" : "",
                                (int)fields[i].name_len, fields[i].name);
}

/* "Connection: keep-alive" alone is passed over without a list walk: any other value, one
 * byte off included, still has the fields it names removed. */
static void test_connection_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        const char *kept;
    } rows[] = {
        {"keep-alive", "Keep-Alivex|X-Hop|Via"},
        {"KEEP-ALIVE", "Keep-Alivex|X-Hop|Via"},
        {"close", "Keep-Alivex|X-Hop|Via"},
        {"keep-alivex", "X-Hop|Via"},
        {"keep-aliv", "Keep-Alivex|X-Hop|Via"},
        {"keep-alive, x-hop", "Keep-Alivex|Via"},
        {"x-hop,keep-alive", "Keep-Alivex|Via"},
        {"x-hop", "Keep-Alivex|Via"},
    };
    char in[256], kept[256];
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        snprintf(in, sizeof(in),
                 "HTTP/1.1 200 OK\r\nConnection: %s\r\nKeep-Alivex: 1\r\nX-Hop: 1\r\n\r\n",
                 rows[i].value);
        kept_names(in, kept, sizeof(kept));
        if (strcmp(kept, rows[i].kept) != 0)
            fail_msg("Connection: %s kept %s, want %s", rows[i].value, kept, rows[i].kept);
    }
    /* every tchar at every position of keep-alive: the field the value names goes */
    for (size_t pos = 0; pos < 10; pos++) {
        for (unsigned c = 0; c < 256; c++) {
            if (!h1_is_tchar((unsigned char)c))
                continue;
            char v[11] = "keep-alive";
            v[pos] = (char)c;
            snprintf(in, sizeof(in), "HTTP/1.1 200 OK\r\nConnection: %s\r\n%s: 1\r\nX-Other: 1\r\n\r\n",
                     v, v);
            kept_names(in, kept, sizeof(kept));
            if (strcmp(kept, "X-Other|Via") != 0)
                fail_msg("Connection: %s kept %s", v, kept);
        }
    }
}

/* The status line as hdr_write_head writes it: the origin's reason whatever its length (one
 * longer than the head buffer takes the evbuffer path), the registry's when it is empty or
 * unsafe, and the fields follow it either way. */
static void test_status_line_reasons(void **state)
{
    (void)state;
    static char long_reason[6000];
    memset(long_reason, 'r', sizeof(long_reason));
    static const struct h1_field x = {.name = "X", .name_len = 1, .value = "1", .value_len = 1};
    const struct {
        const char *why;
        const char *reason;
        size_t reason_len;
        const char *want_line; /* NULL: "HTTP/1.1 200 " and the long reason */
    } rows[] = {
        {"the origin's reason", "Fine", 4, "HTTP/1.1 200 Fine\r\n"},
        {"empty: the registry's", "", 0, "HTTP/1.1 200 OK\r\n"},
        {"unsafe: the registry's", "a\rb", 3, "HTTP/1.1 200 OK\r\n"},
        {"longer than the head buffer", long_reason, sizeof(long_reason), NULL},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct resp_head head = {.status = 200, .reason = rows[i].reason,
                                 .reason_len = rows[i].reason_len, .fields = &x, .nfields = 1};
        struct evbuffer *b = evbuffer_new();
        assert_non_null(b);
        hdr_write_head(b, &head, H1_BODY_LENGTH, false, true);
        char *out = take(b);
        evbuffer_free(b);
        print_message("%s\n", rows[i].why);
        const char *tail = "X: 1\r\nContent-Length: 0\r\n\r\n";
        size_t line_len;
        if (rows[i].want_line) {
            line_len = strlen(rows[i].want_line);
            assert_memory_equal(out, rows[i].want_line, line_len);
        } else {
            line_len = 13 + sizeof(long_reason) + 2;
            assert_memory_equal(out, "HTTP/1.1 200 ", 13);
            assert_memory_equal(out + 13, long_reason, sizeof(long_reason));
            assert_memory_equal(out + 13 + sizeof(long_reason), "\r\n", 2);
        }
        assert_string_equal(out + line_len, tail);
        free(out);
    }
}

/* A head of many fields, larger than the 4 KiB head buffer, with its lines falling across the
 * buffer's end at every offset (a leading field grows one byte at a time): the bytes written
 * are the status line, each field as "name: value\r\n", then the framing, nothing lost. */
static void test_head_across_buffer(void **state)
{
    (void)state;
    enum { NF = 120 };
    static char values[NF][200];
    static struct h1_field fields[NF + 1];
    static char lead[80];
    static char want[64 * 1024];
    memset(lead, 'l', sizeof(lead));
    for (size_t i = 0; i < NF; i++) {
        size_t len = (i * 37) % sizeof(values[i]);
        memset(values[i], 'a' + (int)(i % 26), len);
        fields[i + 1] = (struct h1_field){.name = "X-Fields", .name_len = 7 + i % 2,
                                          .value = values[i], .value_len = len};
    }
    for (size_t shift = 0; shift < sizeof(lead); shift++) {
        fields[0] = (struct h1_field){.name = "Lead", .name_len = 4, .value = lead,
                                      .value_len = shift};
        struct resp_head head = {.status = 200, .reason = "OK", .reason_len = 2,
                                 .fields = fields, .nfields = NF + 1};
        size_t n = (size_t)snprintf(want, sizeof(want), "HTTP/1.1 200 OK\r\n");
        for (size_t i = 0; i <= NF; i++)
            n += (size_t)snprintf(want + n, sizeof(want) - n, "%.*s: %.*s\r\n",
                                  (int)fields[i].name_len, fields[i].name,
                                  (int)fields[i].value_len, fields[i].value);
        n += (size_t)snprintf(want + n, sizeof(want) - n, "Content-Length: 0\r\n\r\n");
        assert_true(n > 3 * 4096 && n < sizeof(want));
        struct evbuffer *b = evbuffer_new();
        assert_non_null(b);
        hdr_write_head(b, &head, H1_BODY_LENGTH, false, true);
        char *out = take(b);
        evbuffer_free(b);
        if (strcmp(out, want) != 0) {
            size_t at = 0;
            while (out[at] == want[at])
                at++;
            fail_msg("shift %zu: the head differs at %zu of %zu: \"%.20s\", want \"%.20s\"",
                     shift, at, n, out + at, want + at);
        }
        free(out);
    }
}

/* A head writer under test: writes one head into out, 0 or -1. */
typedef int (*head_writer)(struct evbuffer *out, const void *arg);

/* Runs write with each of its first libevent allocations failing in turn: the head is either
 * written whole, as without the failure, or not at all and said so (-1), never passed off as
 * whole with a block missing (its Content-Length line, its status line). Returns how many
 * runs failed. */
static unsigned whole_or_nothing(head_writer write, const void *arg)
{
    struct evbuffer *ref = evbuffer_new();
    assert_non_null(ref);
    assert_int_equal(write(ref, arg), 0);
    char *want = take(ref);
    evbuffer_free(ref);
    unsigned failed = 0;
    for (long k = 0; k < 8; k++) {
        struct evbuffer *b = evbuffer_new();
        assert_non_null(b);
        alloc_fail_at(k);
        int rc = write(b, arg);
        alloc_fail_at(-1);
        char *got = take(b);
        if (rc != 0) {
            assert_int_equal(rc, -1);
            assert_string_equal(got, "");
            failed++;
        } else {
            assert_string_equal(got, want);
        }
        free(got);
        evbuffer_free(b);
    }
    free(want);
    return failed;
}

struct request_case {
    struct h1_request req;
    struct fwd_request fwd;
};

static int write_request(struct evbuffer *out, const void *arg)
{
    const struct request_case *rc = arg;
    return hdr_write_request(out, &rc->req, &rc->fwd);
}

static int write_response(struct evbuffer *out, const void *arg)
{
    return hdr_write_head(out, arg, H1_BODY_LENGTH, false, true);
}

/* Out of memory anywhere in a request head for the origin, short (one block) or long
 * (several): whole or nothing (the origin would read the body as the next request). */
static void test_request_out_of_memory(void **state)
{
    (void)state;
    static char big[9000]; /* over the 4 KiB block: the head goes out in pieces */
    memset(big, 'v', sizeof(big) - 1);
    char head[sizeof(big) + 200];
    const char *values[] = {"short", big};
    unsigned failed = 0;
    for (size_t v = 0; v < ARRAY_LEN(values); v++) {
        int n = snprintf(head, sizeof(head),
                         "POST /x HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\nContent-Length: 5\r\n\r\n",
                         values[v]);
        struct h1_limits lim = {8192, 65536};
        struct h1_error err;
        struct request_case rc = {.fwd = {BASE, .framing = H1_BODY_LENGTH, .content_length = 5}};
        assert_int_equal(h1_parse_request(head, (size_t)n, &lim, &rc.req, &err), n);
        failed += whole_or_nothing(write_request, &rc);
    }
    assert_true(failed > 0);
}

/* The same for a response head to an HTTP/1.1 client (the client would read the body as the
 * rest of a head cut short). */
static void test_response_out_of_memory(void **state)
{
    (void)state;
    static char big[9000];
    memset(big, 'v', sizeof(big) - 1);
    struct h1_field fields[] = {{"X-Small", 7, "s", 1, H1_F_OTHER},
                                {"X-Big", 5, big, sizeof(big) - 1, H1_F_OTHER}};
    unsigned failed = 0;
    for (size_t nf = 1; nf <= ARRAY_LEN(fields); nf++) {
        struct resp_head head = {.status = 200, .fields = fields, .nfields = nf,
                                 .content_length = 5};
        failed += whole_or_nothing(write_response, &head);
    }
    assert_true(failed > 0);
}

/* A reason too long for the head's buffer is written in an evbuffer of its own. Out of memory
 * there, the registry's reason stands in (the head is still whole); without memory for that
 * either, nothing goes: never a head without its status line. One or two allocations failed
 * in a row, from each of the first eight. */
static void test_long_reason_out_of_memory(void **state)
{
    (void)state;
    static char reason[5000];
    memset(reason, 'r', sizeof(reason) - 1);
    struct h1_field field = {"X-Small", 7, "s", 1, H1_F_OTHER};
    struct resp_head head = {.status = 200, .reason = reason, .reason_len = sizeof(reason) - 1,
                             .fields = &field, .nfields = 1, .content_length = 5};
    struct resp_head plain = head;
    plain.reason = NULL;
    plain.reason_len = 0;
    struct evbuffer *ref = evbuffer_new();
    assert_non_null(ref);
    assert_int_equal(write_response(ref, &head), 0);
    char *want = take(ref);
    assert_int_equal(write_response(ref, &plain), 0);
    char *fallback = take(ref);
    evbuffer_free(ref);
    unsigned failed = 0, replaced = 0;
    for (long k = 0; k < 8; k++) {
        for (long span = 1; span <= 2; span++) {
            struct evbuffer *b = evbuffer_new();
            assert_non_null(b);
            alloc_fail_at(k);
            alloc_fail_last = k + span - 1;
            int rc = write_response(b, &head);
            alloc_fail_at(-1);
            char *got = take(b);
            if (rc != 0) {
                assert_int_equal(rc, -1);
                assert_string_equal(got, "");
                failed++;
            } else if (strcmp(got, fallback) == 0) {
                replaced++;
            } else if (strcmp(got, want) != 0) {
                fail_msg("allocations %ld-%ld failed: 0 with '%.60s...'", k, k + span - 1, got);
            }
            free(got);
            evbuffer_free(b);
        }
    }
    assert_true(failed > 0);
    assert_true(replaced > 0);
    free(want);
    free(fallback);
}

int main(void)
{
    alloc_fail_install(); /* before libevent allocates anything */
    (void)alloc_fail_all;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_out_of_memory),
        cmocka_unit_test(test_response_out_of_memory),
        cmocka_unit_test(test_long_reason_out_of_memory),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_is_hop_by_hop),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_interim),
        cmocka_unit_test(test_status_line_reasons),
        cmocka_unit_test(test_connection_keep_alive),
        cmocka_unit_test(test_head_across_buffer),
        cmocka_unit_test(test_long_connection_list),
        cmocka_unit_test(test_many_tracestate_fields),
        cmocka_unit_test(test_tracestate_of_commas),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
