/*
 * wskey.h — the WebSocket opening handshake's key and its proof (RFC 6455 4.1, 4.2.2), for an
 * HTTP/2 WebSocket (RFC 8441) that Portico carries to an HTTP/1.1 origin: the HTTP/2 side has no
 * key, so Portico makes one and checks the origin's answer to it.
 */
#ifndef PORTICO_WSKEY_H
#define PORTICO_WSKEY_H

#include <stdbool.h>
#include <stddef.h>

/* The length of a Sec-WebSocket-Key: 16 random bytes in base64. */
#define WS_KEY_LEN 24

/* A new Sec-WebSocket-Key into out (WS_KEY_LEN bytes and a NUL). False when no random bytes
 * could be had. */
bool ws_key_new(char out[WS_KEY_LEN + 1]);

/* Whether accept (a Sec-WebSocket-Accept value, surrounding whitespace allowed) is the one key
 * asks for: base64(SHA-1(key + the RFC 6455 GUID)). */
bool ws_accept_matches(const char *key, size_t key_len, const char *accept, size_t accept_len);

#endif
