/*
 * sim.h — the built-in simulator origin. A real HTTP/1.1 server on a loopback port inside the
 * Portico process (its own thread and event_base), so `origin = sim` goes through the very same
 * proxy path as any origin: DNS-free connect, pool, timers, parsing, logging.
 */
#ifndef PORTICO_SIM_H
#define PORTICO_SIM_H

#include <stdint.h>

struct config;

/* Starts the simulator on 127.0.0.1, port chosen by the kernel. Returns 0 and the bound port in
 * *port, or -1 with a message on stderr. evthread_use_pthreads() must have been called. */
int sim_start(uint16_t *port);

/* Port of the running simulator, or 0 when it is not running. */
uint16_t sim_port(void);

/* Points every `origin = sim` of cfg at the simulator's loopback address (starting it for the
 * first configuration that has one; it then serves every later one) and gives it cfg's client
 * timeouts, [proxy]'s, before any worker sees cfg: the request path never asks the
 * simulator anything. For Portico at every (re)load and for the probe. 0, or -1 with a message
 * on stderr. */
int sim_resolve(struct config *cfg);

/* Stops the simulator thread and frees everything (idempotent). */
void sim_stop(void);

#endif
