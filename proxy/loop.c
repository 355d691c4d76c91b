/*
 * loop.c — request ids and connection counting for one worker thread. See loop.h.
 */
#include "portico/loop.h"

#include <string.h>

#include "portico/util.h"

static const char *const loop_state_names[] = {
#define X(id, name) [id] = name,
    LOOP_STATE_LIST(X)
#undef X
};

const char *loop_state_name(enum loop_state s)
{
    return (unsigned)s < ARRAY_LEN(loop_state_names) ? loop_state_names[s] : "unknown";
}

/* 17 hex digits: salt (8), worker (2), counter (7). Formatted by hand: one per request. */
void loop_request_id(struct loop *l, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = ((uint64_t)l->id_salt << 8) | ((unsigned)l->id & 0xff);
    uint64_t lo = ++l->next_request & 0xfffffff;
    char id[18];
    for (int i = 9; i >= 0; i--, hi >>= 4)
        id[i] = hex[hi & 15];
    for (int i = 16; i >= 10; i--, lo >>= 4)
        id[i] = hex[lo & 15];
    id[17] = '\0';
    if (size) {
        size_t n = MIN(size - 1, sizeof(id) - 1);
        memcpy(buf, id, n);
        buf[n] = '\0';
    }
}

void loop_conn_opened(struct loop *l)
{
    l->conns++;
    if (l->on_conns)
        l->on_conns(l);
}

void loop_conn_closed(struct loop *l)
{
    if (l->conns)
        l->conns--;
    if (l->on_conns)
        l->on_conns(l);
    if (l->conns == 0 && l->state == LOOP_DRAINING && l->on_idle)
        l->on_idle(l);
}
