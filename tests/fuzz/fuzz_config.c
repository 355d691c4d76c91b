/*
 * fuzz_config.c — libFuzzer target for the INI loader: any text must give a config or a list of
 * FILE:LINE errors, never a crash, a leak or a hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portico/config.h"
#include "portico/retry_budget.h"
#include "portico/retry_on.h"
#include "portico/route.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
static void check_status_lists(const struct upstream_conf *up);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An upstream with "tls = on" makes the loader build a client SSL_CTX, which loads the system CA
 * store: ~70 ms under ASan, for nothing the config code decides. An empty store keeps the same
 * code path at a thousandth of the cost. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("SSL_CERT_FILE", "/dev/null", 1);
    setenv("SSL_CERT_DIR", "/nonexistent", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* inih reads a C string: an embedded NUL just ends the text early */
    int nerrors = 0;
    struct config *cfg = cfg_load_string(text, "fuzz.ini", "/nonexistent", NULL, &nerrors);
    if (cfg) {
        /* a loaded config must be coherent: routes point at upstreams or answer themselves
         * (return, with no upstream), upstreams have origins */
        for (int i = 0; i < cfg->nroutes; i++)
            if (cfg->routes[i].answer ? cfg->routes[i].upstream != -1
                                      : cfg->routes[i].upstream < 0 ||
                                            cfg->routes[i].upstream >= cfg->nupstreams)
                abort();
        for (int i = 0; i < cfg->nupstreams; i++) {
            if (cfg->upstreams[i].norigins < 1)
                abort();
            check_status_lists(&cfg->upstreams[i]);
        }
        /* and a request the route conditions (method, header, cookie) have fields to read in */
        static const struct h1_field fields[] = {
            {"X-Canary", 8, "1", 1, H1_F_OTHER},
            {"Cookie", 6, "a=1; canary=\"1\"; b", 18, H1_F_OTHER},
        };
        static const struct route_request rqs[] = {
            {METHOD_OTHER, "PROPFIND", 8, fields, 2},
            {METHOD_GET, "GET", 3, fields, 1},
            {METHOD_POST, "POST", 4, NULL, 0},
        };
        const struct route_conf *plain =
            route_match(cfg, ROUTE_SCHEME_HTTPS, "a.example", 9, "/x", 2, NULL);
        if (plain && plain->conds)
            abort(); /* no request to read: a route with conditions is never picked */
        for (size_t i = 0; i < sizeof(rqs) / sizeof(rqs[0]); i++) {
            const struct route_conf *r =
                route_match(cfg, ROUTE_SCHEME_HTTPS, "a.example", 9, "/x", 2, &rqs[i]);
            /* a route with conditions is picked only when they hold; one without is picked
             * exactly as without a request (the rules before conditions) */
            if (r && r->conds ? !route_conds_hold(r->conds, &rqs[i]) : r != plain)
                abort();
        }
        cfg_free(cfg);
    } else if (nerrors == 0) {
        abort(); /* refused without saying why */
    }
    free(text);
    return 0;
}

/* retry_on, fail_on and the retry bounds as the loader lets them through: every bit one a list
 * may name (fail_on's only 500 502 503 504), fail_on only where max_fails counts it, the one
 * test of a response head both lists, a budget no more than all and bounding some retry. */
static void check_status_lists(const struct upstream_conf *up)
{
    uint16_t retry_all = 0;
    static const int retry_codes[] = {401, 403, 404, 408, 425, 429, 500, 501, 502, 503, 504};
    for (size_t i = 0; i < sizeof(retry_codes) / sizeof(retry_codes[0]); i++)
        retry_all |= retry_on_bit(retry_codes[i]);
    uint16_t fail_all =
        retry_on_bit(500) | retry_on_bit(502) | retry_on_bit(503) | retry_on_bit(504);
    if (up->retry_on & ~retry_all || up->fail_on & ~fail_all)
        abort();
    if (up->fail_on && up->max_fails == 0)
        abort(); /* fail_on without max_fails counts nothing: refused */
    if (up->status_watch != (up->retry_on | up->fail_on))
        abort();
    if (up->retry_budget_percent > 100)
        abort();
    if (up->retry_budget && (up->retries == 0 ||
                             (up->retry_budget_percent == 0 && up->retry_budget_min == 0)))
        abort(); /* a budget that bounds no retry, or allows none: refused */
    if (!up->retry_budget && up->retry_budget_min != RETRY_BUDGET_MIN_DEFAULT)
        abort(); /* retry_budget_min without retry_budget: refused */
    if (up->retry_timeout_ms && up->retries == 0)
        abort();
}
