/*
 * timing.c — names of the reported phases and their exchange phases. See timing.h.
 */
#include "portico/timing.h"

static const char *const timing_names[TIMING_COUNT] = {
#define X(id, nm) [id] = nm,
    TIMING_LIST(X)
#undef X
};

const char *timing_name(enum timing_phase p)
{
    return (unsigned)p < TIMING_COUNT ? timing_names[p] : "?";
}

int timing_of_phase(enum phase p)
{
    switch (p) {
    case PHASE_QUEUE: return TIMING_QUEUE;
    case PHASE_DNS: return TIMING_DNS;
    case PHASE_CONNECT: return TIMING_CONNECT;
    case PHASE_TLS: return TIMING_TLS;
    case PHASE_SEND: return TIMING_SEND;
    case PHASE_FIRST_BYTE: return TIMING_FIRST_BYTE;
    case PHASE_READ: return TIMING_BODY;
    default: return -1;
    }
}
