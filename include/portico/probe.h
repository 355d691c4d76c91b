/*
 * probe.h — `portico probe`: one request the way Portico would send it, with its timeline.
 *
 *   portico probe [-c FILE] URL [-X METHOD] [-H 'Name: value']... [-d DATA | --data-binary DATA]
 *                 [--connect-timeout 1s ...] [--profile NAME] [--json]
 *
 * The request (curl's options: probe_request.h) goes through the real request path: a
 * configuration generation (FILE's, or one made from the URL), a loop with its resolver and
 * pools, and an exchange whose owner is a small downstream that records what the exchange
 * reports. The timeline shows each phase with its
 * duration, the outcome, the failure type and the status each error profile would give.
 */
#ifndef PORTICO_PROBE_H
#define PORTICO_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A URL split for the probe: http or https, authority, origin-form path (query included). */
struct probe_url {
    bool tls;                          /* https */
    char host[256];                    /* without brackets for IPv6 */
    uint16_t port;                     /* 80 / 443 when absent */
    char authority[300];               /* as written: the Host field */
    const char *path;                  /* borrowed from the URL: what follows the authority, up
                                        * to a '#' (path_len bytes, no NUL); the request's path
                                        * is "/" then that when it starts with no '/' (none, or
                                        * a query only) */
    size_t path_len;
};

/* Parses an absolute http(s) URL; out->path points into url. 0, or -1 with a one-line reason in
 * *why. */
int probe_parse_url(const char *url, struct probe_url *out, const char **why);

/* Runs the subcommand; argv[0] is "probe". Exit status: 0 when the origin answered, 1 on an
 * upstream failure (or when no answer came from the origin), 2 for bad usage. */
int probe_main(int argc, char **argv);

#endif
