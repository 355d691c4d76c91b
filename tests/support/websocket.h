/*
 * websocket.h — RFC 6455 on loopback for tests: an echo origin (the server side of the opening
 * handshake, then every data frame sent back as it came, pings answered, the close handshake)
 * and a client (masked frames, the handshake with its Sec-WebSocket-Accept check).
 *
 * Plain sockets, poll() and threads like fake_origin.c: a thread per connection, every wait
 * bounded and woken by ws_origin_stop. Frames of 7-, 16- and 64-bit lengths; payloads up to
 * WS_MAX_PAYLOAD. Return vocabulary: 0 ok, -1 error.
 */
#ifndef PORTICO_TEST_WEBSOCKET_H
#define PORTICO_TEST_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_MAX_PAYLOAD (16u * 1024 * 1024)

enum ws_opcode {
    WS_CONTINUATION = 0x0,
    WS_TEXT = 0x1,
    WS_BINARY = 0x2,
    WS_CLOSE = 0x8,
    WS_PING = 0x9,
    WS_PONG = 0xa,
};

struct ws_frame {
    enum ws_opcode opcode;
    bool fin;
    bool masked;             /* as received (a client's frames must be, a server's must not) */
    unsigned char *data;     /* unmasked payload, malloc'd (NULL when empty) */
    size_t len;
};

void ws_frame_free(struct ws_frame *f);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (base64 of SHA-1 of key + the GUID). */
void ws_accept_value(const char *key, char out[29]);

/* ---- the echo origin ---- */

struct ws_origin;

/* Starts it on 127.0.0.1, a kernel-chosen port. NULL on error (message on stderr). */
struct ws_origin *ws_origin_start(void);
uint16_t ws_origin_port(const struct ws_origin *o);

/* Handshakes completed, data frames echoed, close frames answered (thread-safe). */
unsigned ws_origin_handshakes(struct ws_origin *o);
unsigned ws_origin_frames(struct ws_origin *o);
unsigned ws_origin_closes(struct ws_origin *o);

/* The head of the last opening handshake request, malloc'd; NULL when none came. */
char *ws_origin_request_head(struct ws_origin *o);

/* Stops it: wakes and joins every thread, closes every socket, frees o (NULL is fine). */
void ws_origin_stop(struct ws_origin *o);

/* ---- the client ---- */

struct ws_client;

/* A TCP connection to 127.0.0.1:port. NULL on error. */
struct ws_client *ws_client_connect(uint16_t port, int timeout_ms);

/* Sends the opening handshake for path and reads the response head into *head (malloc'd, the
 * blank line included). Returns its status, or -1 (timeout, close, not HTTP). */
int ws_client_handshake(struct ws_client *c, const char *path, char **head, int timeout_ms);

/* Whether head's Sec-WebSocket-Accept answers the key this client sent. */
bool ws_client_accept_ok(const struct ws_client *c, const char *head);

/* Sends one frame, masked with a fresh key. 0, or -1 (peer gone, timeout). */
int ws_client_send(struct ws_client *c, enum ws_opcode op, const void *data, size_t len,
                   int timeout_ms);

/* Reads one frame. 0, -1 error or timeout, 1 the peer closed before a whole frame. */
int ws_client_recv(struct ws_client *c, struct ws_frame *f, int timeout_ms);

/* Waits up to timeout_ms for the peer to close; 1 closed, 0 still open (bytes are kept). */
int ws_client_wait_closed(struct ws_client *c, int timeout_ms);

int ws_client_fd(const struct ws_client *c);

/* Closes and frees c (NULL is fine). */
void ws_client_close(struct ws_client *c);

#endif
