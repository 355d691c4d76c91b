/*
 * scrape.h — reads Portico's Prometheus metrics from its admin endpoint, for assertions.
 */
#ifndef PORTICO_TEST_SCRAPE_H
#define PORTICO_TEST_SCRAPE_H

#include <stdint.h>

/* GET /metrics from 127.0.0.1:admin_port: the body, malloc'd; NULL when it could not be read. */
char *scrape_metrics(uint16_t admin_port, int timeout_ms);

/* The value of one series, written exactly as it appears before its value
 * ("portico_tunnels_total", "portico_upstream_origin_up{upstream=\"u\",origin=\"127...\"}"),
 * in a scrape; -1 when it is absent. */
double scrape_value(const char *text, const char *series);

/* Both at once: -1 when the scrape failed or the series is absent. */
double scrape_metric(uint16_t admin_port, const char *series, int timeout_ms);

/* The series once it reads want, scraped every 5 ms for at most timeout_ms; else its value at
 * the deadline (the caller asserts it equals want). For a count made after an event the test
 * saw: an answer goes out before its exchange is counted (README.md, Counts after an answer). */
double scrape_wait(uint16_t admin_port, const char *series, double want, int timeout_ms);

#endif
