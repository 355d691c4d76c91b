/*
 * oom.c — arms oom_preload.so for the next Portico started. See oom.h.
 */
#include "oom.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SITES_MAX 8 /* oom_preload.c's MAX_SITES */

static char saved_asan[1024];
static bool had_asan;
static bool armed; /* the environment is oom_arm's: oom_disarm has something to undo */

static const char *portico_bin(void)
{
    const char *bin = getenv("PORTICO_BIN");
    return bin && *bin ? bin : "build/portico"; /* as harness_new */
}

bool oom_possible(void)
{
    FILE *f = fopen(portico_bin(), "rb");
    if (!f)
        return false;
    char magic[4] = {0};
    bool elf = fread(magic, 1, 4, f) == 4 && memcmp(magic, "\177ELF", 4) == 0;
    fclose(f);
    return elf;
}

/* "START+LEN,..." of func and its clones (func.constprop.0 ...) in bin, as nm -S prints them
 * (hex). The number of functions found, -1 when nm could not run. */
static int find_sites(const char *bin, const char *func, char *out, size_t size)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "nm -S --defined-only '%s' 2>/dev/null", bin);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t flen = strlen(func), used = 0;
    int found = 0;
    char line[1024];
    out[0] = '\0';
    while (fgets(line, sizeof(line), p)) {
        char addr[32], len[32], type[4], name[512];
        if (sscanf(line, "%31s %31s %3s %511s", addr, len, type, name) != 4)
            continue; /* a symbol without a size */
        if ((type[0] != 't' && type[0] != 'T') || strncmp(name, func, flen) != 0 ||
            (name[flen] != '\0' && name[flen] != '.') || found == SITES_MAX)
            continue;
        int n = snprintf(out + used, size - used, "%s%s+%s", found ? "," : "", addr, len);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
        found++;
    }
    return pclose(p) == 0 ? found : -1;
}

/* build/tests/oom_preload.so beside this test's build/tests/integration/test_X. */
static int preload_path(char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *tests = dirname(dirname(self));
    int w = snprintf(out, size, "%s/oom_preload.so", tests);
    return w > 0 && (size_t)w < size && access(out, R_OK) == 0 ? 0 : -1;
}

int oom_arm(const char *func, int depth, long skip, long fail, char *err, size_t err_size)
{
    char sites[SITES_MAX * 48], lib[PATH_MAX];
    if (preload_path(lib, sizeof(lib)) != 0) {
        snprintf(err, err_size, "no oom_preload.so beside the test (make tests builds it)");
        return -1;
    }
    int found = find_sites(portico_bin(), func, sites, sizeof(sites));
    if (found <= 0) {
        snprintf(err, err_size, "%s: %s", portico_bin(),
                 found < 0 ? "nm could not read it" :
                 "no function of that name (inlined?): nothing to make fail");
        return -1;
    }
    char n[32];
    setenv("PORTICO_OOM_SITES", sites, 1);
    snprintf(n, sizeof(n), "%ld", skip);
    setenv("PORTICO_OOM_SKIP", n, 1);
    snprintf(n, sizeof(n), "%ld", fail);
    setenv("PORTICO_OOM_FAIL", n, 1);
    snprintf(n, sizeof(n), "%d", depth);
    setenv("PORTICO_OOM_DEPTH", n, 1);
    /* an ASan Portico: its runtime is not the first library then, which it takes as an error */
    const char *asan = getenv("ASAN_OPTIONS");
    had_asan = asan != NULL;
    snprintf(saved_asan, sizeof(saved_asan), "%s", asan ? asan : "");
    char opts[sizeof(saved_asan) + 64];
    snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", saved_asan,
             saved_asan[0] ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("LD_PRELOAD", lib, 1);
    armed = true;
    return 0;
}

void oom_disarm(void)
{
    if (!armed)
        return;
    armed = false;
    unsetenv("LD_PRELOAD");
    unsetenv("PORTICO_OOM_SITES");
    unsetenv("PORTICO_OOM_SKIP");
    unsetenv("PORTICO_OOM_FAIL");
    unsetenv("PORTICO_OOM_DEPTH");
    if (had_asan)
        setenv("ASAN_OPTIONS", saved_asan, 1);
    else
        unsetenv("ASAN_OPTIONS");
}

int oom_teardown(void **state)
{
    (void)state;
    oom_disarm();
    return 0;
}
