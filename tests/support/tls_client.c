/*
 * tls_client.c — one blocking TLS connection for the certificate tests. See tls_client.h.
 */
#include "tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#define TLS_CLIENT_BOUND_MS 5000

/* The socket's reads and writes bounded by ms, then connected; the fd, or -1. */
static int connect_bounded(uint16_t port, int ms)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval bound = {.tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)) != 0 ||
                    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound)) != 0 ||
                    connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* The client context of o; NULL with why. */
static SSL_CTX *client_ctx(const struct tls_client_opts *o, char *why, size_t size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(why, size, "SSL_CTX_new failed");
        return NULL;
    }
    if (o->version) {
        SSL_CTX_set_min_proto_version(ctx, o->version);
        SSL_CTX_set_max_proto_version(ctx, o->version);
    }
    if (o->sigalgs && SSL_CTX_set1_sigalgs_list(ctx, o->sigalgs) != 1) {
        snprintf(why, size, "sigalgs %s refused", o->sigalgs);
    } else if (o->cert && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                           SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1)) {
        snprintf(why, size, "cannot load %s", o->cert);
    } else {
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_client_open(uint16_t port, const struct tls_client_opts *o, struct tls_client *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = connect_bounded(port, o->bound_ms ? o->bound_ms : TLS_CLIENT_BOUND_MS);
    if (c->fd < 0) {
        snprintf(c->why, sizeof(c->why), "connect: %s", strerror(errno));
        return -1;
    }
    if (!(c->ctx = client_ctx(o, c->why, sizeof(c->why))))
        return -1;
    if (!(c->ssl = SSL_new(c->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1) {
        snprintf(c->why, sizeof(c->why), "SSL_new failed");
        return -1;
    }
    if (o->sni)
        SSL_set_tlsext_host_name(c->ssl, (char *)(uintptr_t)o->sni);
    if (o->session)
        SSL_set_session(c->ssl, o->session);
    if (o->ask_status)
        SSL_set_tlsext_status_type(c->ssl, TLSEXT_STATUSTYPE_ocsp);
    return 0;
}

int tls_client_connect(uint16_t port, const struct tls_client_opts *o, struct tls_client *c)
{
    if (tls_client_open(port, o, c) != 0)
        return -1;
    if (SSL_connect(c->ssl) != 1) {
        ERR_error_string_n(ERR_peek_last_error(), c->why, sizeof(c->why));
        return -1;
    }
    return 0;
}

int tls_client_exchange(struct tls_client *c, const char *req, char *buf, size_t size)
{
    int n = (int)strlen(req), r, status = 0;
    size_t got = 0;
    if (SSL_write(c->ssl, req, n) != n) {
        snprintf(c->why, sizeof(c->why), "request not sent");
        return -1;
    }
    while (got < size - 1 && (r = SSL_read(c->ssl, buf + got, (int)(size - 1 - got))) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    return status;
}

void tls_client_peer_cn(const struct tls_client *c, char *buf, size_t size)
{
    X509 *peer = c->ssl ? SSL_get1_peer_certificate(c->ssl) : NULL;
    buf[0] = '\0';
    if (peer)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, (int)size);
    X509_free(peer);
}

void tls_client_close(struct tls_client *c)
{
    ERR_clear_error();
    SSL_free(c->ssl);
    if (c->fd > 0)
        close(c->fd);
    SSL_CTX_free(c->ctx);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}
