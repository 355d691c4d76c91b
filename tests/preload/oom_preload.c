/*
 * oom_preload.c — an LD_PRELOAD library that makes chosen allocations of a running Portico
 * fail, for the integration rows of its out-of-memory answers (tests/support/oom.h arms it).
 * Built apart (build/tests/oom_preload.so, never linked into a test), without sanitizers: under
 * an ASan Portico it forwards to ASan's allocator (RTLD_NEXT).
 *
 * An allocation is chosen by its call site: malloc, calloc or realloc called directly from the
 * code of one of the functions PORTICO_OOM_SITES names, as "START+LEN" pairs in hex (offsets in
 * the executable, as nm -S prints them; separated by commas). With PORTICO_OOM_DEPTH = N, also
 * one made below them: one of the N innermost frames of its stack (backtrace(3)) in their code
 * (an evbuffer's chain, allocated in libevent for a function of Portico's). Of the calls from
 * those sites, the first PORTICO_OOM_SKIP (default 0) go through, the next PORTICO_OOM_FAIL
 * (default 1) fail (NULL, ENOMEM), the rest go through. Without PORTICO_OOM_SITES it changes
 * nothing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SITES 8
#define MAX_DEPTH 32

static struct {
    uintptr_t lo, hi; /* absolute addresses: [lo, hi) */
} sites[MAX_SITES];
static unsigned nsites;
static long skip_first;
static long fail_count = 1;
static int depth; /* frames looked at: 0, the caller only */
/* backtrace allocates (its unwinder's first load): those calls are not looked at */
static __thread bool in_trace __attribute__((tls_model("initial-exec")));
static long seen; /* calls from the sites so far (atomic) */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);

/* What is allocated before the constructor found the real functions (the loader's, another
 * library's initialisers, ASan's start): from here, never freed. Resolving them on that first
 * call instead would call dlsym inside the loader's own dlsym (ASan's start): it crashed. */
static _Alignas(max_align_t) char boot[256 * 1024];
static size_t boot_used;

static void *boot_alloc(size_t n)
{
    size_t at = __atomic_fetch_add(&boot_used, (n + 15) & ~(size_t)15, __ATOMIC_RELAXED);
    return at + n <= sizeof(boot) ? boot + at : NULL;
}

static bool from_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof(boot);
}

/* Called once, by the constructor; until it returns, allocations come from boot. */
static void resolve(void)
{
    void *(*m)(size_t) = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    void *(*c)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    void *(*r)(void *, size_t) = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    void (*f)(void *) = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_calloc = c;
    real_realloc = r;
    real_free = f;
    __atomic_store_n(&real_malloc, m, __ATOMIC_RELEASE);
}

/* The executable's load address: the first object dl_iterate_phdr reports. */
static int first_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(uintptr_t *)data = (uintptr_t)info->dlpi_addr;
    return 1;
}

__attribute__((constructor)) static void arm(void)
{
    resolve();
    const char *text = getenv("PORTICO_OOM_SITES");
    if (!text || !*text)
        return;
    uintptr_t base = 0;
    dl_iterate_phdr(first_object, &base);
    while (*text && nsites < MAX_SITES) {
        char *end;
        unsigned long start = strtoul(text, &end, 16);
        if (*end != '+')
            break;
        unsigned long len = strtoul(end + 1, &end, 16);
        sites[nsites].lo = base + start;
        sites[nsites].hi = base + start + len;
        nsites++;
        text = *end == ',' ? end + 1 : end;
    }
    const char *s = getenv("PORTICO_OOM_SKIP");
    if (s)
        skip_first = strtol(s, NULL, 10);
    s = getenv("PORTICO_OOM_FAIL");
    if (s)
        fail_count = strtol(s, NULL, 10);
    s = getenv("PORTICO_OOM_DEPTH");
    if (s && atoi(s) > 0) {
        void *frames[1];
        in_trace = true;
        backtrace(frames, 1); /* loads the unwinder now, not inside a later allocation */
        in_trace = false;
        depth = atoi(s) < MAX_DEPTH ? atoi(s) : MAX_DEPTH;
    }
}

static bool in_sites(uintptr_t a)
{
    for (unsigned i = 0; i < nsites; i++)
        if (a >= sites[i].lo && a < sites[i].hi)
            return true;
    return false;
}

/* Whether one of the innermost depth frames is in a site's code. */
static bool below_site(void)
{
    if (in_trace)
        return false;
    in_trace = true;
    void *frames[MAX_DEPTH];
    int n = backtrace(frames, depth);
    in_trace = false;
    for (int i = 0; i < n; i++)
        if (in_sites((uintptr_t)frames[i]))
            return true;
    return false;
}

/* Whether the call returning to ra is to fail. */
static bool fails(void *ra)
{
    if (!nsites || !(in_sites((uintptr_t)ra) || (depth && below_site())))
        return false;
    long n = __atomic_fetch_add(&seen, 1, __ATOMIC_RELAXED);
    if (n < skip_first || n >= skip_first + fail_count)
        return false;
    static const char note[] = "oom_preload: an allocation made to fail\n";
    ssize_t w = write(2, note, sizeof(note) - 1);
    (void)w;
    errno = ENOMEM;
    return true;
}

void *malloc(size_t n)
{
    if (fails(__builtin_return_address(0)))
        return NULL;
    return real_malloc ? real_malloc(n) : boot_alloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (fails(__builtin_return_address(0)))
        return NULL;
    return real_calloc ? real_calloc(k, n) : boot_alloc(k * n); /* boot is zeroed */
}

void *realloc(void *p, size_t n)
{
    if (fails(__builtin_return_address(0)))
        return NULL;
    if (from_boot(p)) { /* rare enough: copy out, never freed */
        void *q = real_malloc ? real_malloc(n) : boot_alloc(n);
        if (q) {
            size_t room = (size_t)(boot + sizeof(boot) - (char *)p);
            memcpy(q, p, n < room ? n : room);
        }
        return q;
    }
    return real_realloc ? real_realloc(p, n) : NULL;
}

void free(void *p)
{
    if (!p || from_boot(p))
        return;
    if (real_free)
        real_free(p);
}
