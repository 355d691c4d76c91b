/*
 * test_watchdog.c — systemd's watchdog settings (watchdog.h): which WATCHDOG_USEC, WATCHDOG_PID
 * and NOTIFY_SOCKET turn it on, and the beat, staleness and check schedule drawn from the
 * interval. A loop that turns must never look stuck: its stamp may age a beat, so the staleness
 * is several beats even where the beat's 1 ms floor is most of the interval (WATCHDOG_USEC=2000
 * flapped stuck and turning every check, an error line each, 1 ms apart).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/util.h"
#include "portico/watchdog.h"

struct row {
    const char *usec;   /* WATCHDOG_USEC */
    const char *pid;    /* WATCHDOG_PID; NULL: unset, "self": ours */
    const char *notify; /* NOTIFY_SOCKET; NULL: unset */
    uint64_t beat_us;   /* 0: off */
    uint64_t stale_us;
    uint64_t check_us;  /* from the first check (at once) to the next */
};

static const struct row rows[] = {
    {"400000", NULL, "@wd", 50000, 200000, 100000},
    {"400000", "self", "@wd", 50000, 200000, 100000},
    {"30000000", "", "@wd", 3750000, 15000000, 7500000},
    /* the 1 ms floor: a turning loop's stamp is up to 1 ms old, never stale at once */
    {"8000", NULL, "@wd", 1000, 4000, 2000},
    {"2000", NULL, "@wd", 1000, 4000, 1000},
    {"1", NULL, "@wd", 1000, 4000, 1000},
    /* off: not ours, not systemd's value, nowhere to say it */
    {"400000", "1", "@wd", 0, 0, 0},
    {"400000", "abc", "@wd", 0, 0, 0},
    {"400000", "0", "@wd", 0, 0, 0},
    {"0", NULL, "@wd", 0, 0, 0},
    {" 400000", NULL, "@wd", 0, 0, 0},
    {"400000 ", NULL, "@wd", 0, 0, 0},
    {"4e5", NULL, "@wd", 0, 0, 0},
    {"", NULL, "@wd", 0, 0, 0},
    {"18446744073709551615", NULL, "@wd", 0, 0, 0},
    {"400000", NULL, NULL, 0, 0, 0},
    {"400000", NULL, "", 0, 0, 0},
};

static void test_intervals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        char self[32];
        snprintf(self, sizeof(self), "%d", (int)getpid());
        setenv("WATCHDOG_USEC", r->usec, 1);
        if (r->pid)
            setenv("WATCHDOG_PID", strcmp(r->pid, "self") == 0 ? self : r->pid, 1);
        else
            unsetenv("WATCHDOG_PID");
        if (r->notify)
            setenv("NOTIFY_SOCKET", r->notify, 1);
        else
            unsetenv("NOTIFY_SOCKET");
        watchdog_init();
        print_message("  WATCHDOG_USEC \"%s\", WATCHDOG_PID %s\n", r->usec,
                      r->pid ? r->pid : "unset");
        assert_int_equal(watchdog_beat_us(), r->beat_us);
        if (!r->beat_us) {
            assert_true(watchdog_due_us() == UINT64_MAX);
            continue;
        }
        assert_int_equal(watchdog_stale_us(), r->stale_us);
        uint64_t now = now_us();
        assert_true(watchdog_due_us() <= now); /* the first check goes with READY=1 */
        watchdog_checked(now);
        assert_int_equal(watchdog_due_us() - now, r->check_us);
    }
}

/* What watchdog_init says on stderr with WATCHDOG_USEC = usec, into out. */
static void init_said(const char *usec, char *out, size_t size)
{
    setenv("WATCHDOG_USEC", usec, 1);
    unsetenv("WATCHDOG_PID");
    setenv("NOTIFY_SOCKET", "@wd", 1);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    watchdog_init();
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, size - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
}

/* WATCHDOG_USEC=0 is WatchdogSec=0, off: said nothing of. A value that is no number is warned of
 * (systemd's watchdog is on and not told). The binary before warned of 0 that systemd "will
 * kill Portico". */
static void test_zero_is_off_quietly(void **state)
{
    (void)state;
    char said[512];
    init_said("0", said, sizeof(said));
    assert_string_equal(said, "");
    assert_int_equal(watchdog_beat_us(), 0);
    init_said("4e5", said, sizeof(said));
    assert_non_null(strstr(said, "WATCHDOG_USEC 4e5: not a number of microseconds"));
    assert_int_equal(watchdog_beat_us(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intervals),
        cmocka_unit_test(test_zero_is_off_quietly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
