/*
 * tunnel.h — a connection after 101 Switching Protocols (WebSocket and other upgrades): bytes
 * copied both ways between the client's sock and the origin's, unchanged, until both sides
 * closed (a close is a half-close: the other way goes on). Back-pressure as in the body relay:
 * a side is not read while the other side's output holds more than TUNNEL_HIGH, and each input
 * holds at most that much. tunnel_timeout: no byte either way for that long closes both (a
 * half-closed tunnel too); client_send_timeout: a side that takes none of the bytes waiting for
 * it for that long closes both.
 */
#ifndef PORTICO_TUNNEL_H
#define PORTICO_TUNNEL_H

#include <stdint.h>

#include "portico/metrics.h"

struct access_record;
struct balancer;
struct loop;
struct sock;
struct upconn;
struct tunnel;

/* What an exchange hands over after a 101. The tunnel keeps the origin's place in its
 * balancer's in-flight count (NULL balancer: none, a rehearsed upgrade) until it closes: an open
 * tunnel is a connection least_conn weighs, as nginx and HAProxy count it. */
struct tunnel_origin {
    struct upconn *conn;               /* owned by the tunnel */
    struct balancer *balancer;         /* the loop generation's, which outlives its tunnels */
    int index;                         /* the origin in balancer */
    uint64_t idle_ms;                  /* tunnel_timeout */
    const char *request_id;            /* of the switched request, for the log */
    struct access_record *record;      /* owned (log_record_copy): the exchange's access line,
                                          written at the tunnel's end; NULL: none (log off) */
};

#define TUNNEL_HIGH (256 * 1024)

/* The tunnel ended (why: "client closed", "idle for tunnel_timeout" ...). Called once, from one
 * of the tunnel's own events; the owner then frees the tunnel and closes the client's sock
 * (from inside the callback is fine: the tunnel touches nothing of its own after it). */
typedef void tunnel_closed_cb(void *arg, const char *why);

/* Starts relaying between client (borrowed: its owner keeps it and closes it after closed()) and
 * origin->conn (owned: closed by tunnel_free, which also gives back the in-flight place). What
 * either side sent before goes first, from the loop. Bytes are counted as they move, and the end
 * once (portico_tunnels_closed_total, a log line naming the request id), when origin->record,
 * the exchange's access line, is written with the bytes each way, the tunnel's life and how it
 * ended, as nginx writes a WebSocket's line when it closes. NULL when out of memory: the origin
 * connection is closed and its place given back then, the access line written as it was, the
 * client sock left as it was. */
struct tunnel *tunnel_open(struct loop *l, struct sock *client, const struct tunnel_origin *origin,
                           tunnel_closed_cb *closed, void *arg);

/* Closes the origin connection, gives back its in-flight place and frees the tunnel (NULL is
 * fine). The client sock is left to its owner, without the tunnel's callback. A tunnel freed
 * before it ended was cut by its owner (Portico stopping) and is counted and logged as such. */
void tunnel_free(struct tunnel *t);

/* Counts and logs how a tunnel ended (portico_tunnels_closed_total{reason}), for tunnel.c and
 * HTTP/2 WebSocket streams (h2_tunnel.c) alike: *record, the switched exchange's access line,
 * is written with bytes[0] from the client and bytes[1] from the origin, the tunnel's life
 * (lived_us) and how it ended, then freed (NULL: none); a close by either side is a debug line
 * of the error log, any other end (a timeout, an error, a cut) a rate-limited one naming the
 * request id and the origin. */
void tunnel_report_end(struct loop *l, struct access_record **record, const char *request_id,
                       const char *origin, uint64_t lived_us, const uint64_t bytes[2],
                       enum tunnel_end why);

#endif
