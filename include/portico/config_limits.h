/*
 * config_limits.h — the sizes of the names a config hands out (an [upstream] or [route] name,
 * an origin's "host:port"), for the modules that keep or write those names whole (the access
 * log, the recent failures) without reading a config. The config's own; config.h includes it.
 */
#ifndef PORTICO_CONFIG_LIMITS_H
#define PORTICO_CONFIG_LIMITS_H

#define CFG_NAME_MAX 256  /* bytes of a section header's text, so of an [upstream]/[route] name,
                           * NUL included */
#define CFG_ORIGIN_TEXT_MAX 300 /* bytes of an origin's "host:port", NUL included */

#endif
