/*
 * test_addrlock.c — claiming listen addresses (addrlock.h): an address held by another set (a
 * second Portico in the same network namespace) or by any other socket is refused; a set claims
 * again what it holds without a probe (its own workers listen there); a failed claim leaves the
 * set as it was; keep_only releases what a configuration no longer names.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "portico/addrlock.h"
#include "portico/config.h"

/* A socket on 127.0.0.1 (port 0: the kernel's choice), listening or only bound. */
static int sock_on(uint16_t port, bool reuseport, bool do_listen, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    if (reuseport)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    if (bound)
        *bound = ntohs(a.sin_port);
    return fd;
}

/* A port nothing uses right now. */
static uint16_t free_port(void)
{
    uint16_t port;
    close(sock_on(0, false, false, &port));
    return port;
}

/* A configuration listening on the ports (0 ends the list), with an admin port unless 0. */
static struct config *config_on(const uint16_t *ports, uint16_t admin)
{
    char text[1024];
    size_t n = (size_t)snprintf(text, sizeof(text), "[proxy]\n");
    for (; *ports; ports++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "listen = 127.0.0.1:%u\n", *ports);
    if (admin)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "admin_listen = 127.0.0.1:%u\n", admin);
    snprintf(text + n, sizeof(text) - n, "[upstream u]\norigin = 127.0.0.1:1\n");
    struct config *cfg = cfg_load_string(text, "t.ini", "/tmp", stderr, NULL);
    assert_non_null(cfg);
    return cfg;
}

static int claim(struct addr_locks *set, const uint16_t *ports, uint16_t admin)
{
    struct config *cfg = config_on(ports, admin);
    int rc = addr_locks_claim(set, cfg);
    cfg_free(cfg);
    return rc;
}

enum other { OTHER_SET, OTHER_LISTENER, OTHER_REUSEPORT_LISTENER, OTHER_BOUND };

struct busy_row {
    const char *name;
    enum other other;
};

/* Whoever holds the address, a second claim fails. */
static const struct busy_row busy_rows[] = {
    {"another Portico (its lock)", OTHER_SET},
    {"a listening socket", OTHER_LISTENER},
    {"a listening SO_REUSEPORT socket, which a Portico socket could join", OTHER_REUSEPORT_LISTENER},
    {"a bound socket without SO_REUSEADDR (a client, or a server about to listen)", OTHER_BOUND},
};

static void test_busy_address_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(busy_rows) / sizeof(busy_rows[0]); i++) {
        print_message("  %s\n", busy_rows[i].name);
        uint16_t port = free_port(), ports[] = {port, 0};
        struct addr_locks *other = NULL;
        int fd = -1;
        switch (busy_rows[i].other) {
        case OTHER_SET:
            assert_non_null(other = addr_locks_new());
            assert_int_equal(claim(other, ports, 0), 0);
            break;
        case OTHER_LISTENER:
            fd = sock_on(port, false, true, NULL);
            break;
        case OTHER_REUSEPORT_LISTENER:
            fd = sock_on(port, true, true, NULL);
            break;
        case OTHER_BOUND: {
            fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
            break;
        }
        }
        struct addr_locks *set = addr_locks_new();
        assert_non_null(set);
        assert_int_equal(claim(set, ports, 0), -1);
        addr_locks_free(other);
        if (fd >= 0)
            close(fd);
        assert_int_equal(claim(set, ports, 0), 0); /* free again */
        addr_locks_free(set);
    }
}

/* A set holds its addresses until told otherwise, and claims them again without a probe. */
static void test_claims_and_releases(void **state)
{
    (void)state;
    uint16_t a = free_port(), b = free_port(), admin = free_port();
    uint16_t both[] = {a, b, 0}, only_a[] = {a, 0};
    struct addr_locks *set = addr_locks_new(), *other = addr_locks_new();
    assert_non_null(set);
    assert_non_null(other);
    assert_int_equal(claim(set, both, admin), 0);
    /* Our workers listen there (SO_REUSEPORT): a reload keeping the addresses still passes. */
    int w1 = sock_on(a, true, true, NULL), w2 = sock_on(b, true, true, NULL);
    assert_int_equal(claim(set, both, admin), 0);
    /* A reload dropping b and the admin address: they become free for others. */
    close(w2);
    struct config *cfg = config_on(only_a, 0);
    addr_locks_keep_only(set, cfg);
    cfg_free(cfg);
    uint16_t just_b[] = {b, 0};
    assert_int_equal(claim(other, just_b, admin), 0);
    assert_int_equal(claim(other, only_a, 0), -1);
    /* A claim that fails on one address keeps none of the others it took. */
    uint16_t c = free_port(), c_and_a[] = {c, a, 0};
    struct addr_locks *third = addr_locks_new();
    assert_int_equal(claim(third, c_and_a, 0), -1);
    uint16_t just_c[] = {c, 0};
    assert_int_equal(claim(other, just_c, 0), 0);
    close(w1);
    addr_locks_free(third);
    addr_locks_free(other);
    addr_locks_free(set);
}

/* A connection a previous process left on the address (accepted there, its listener closed)
 * does not make the address busy: the probe binds with SO_REUSEADDR, as the workers do. */
static void test_connection_left_not_busy(void **state)
{
    (void)state;
    uint16_t port = free_port(), ports[] = {port, 0};
    int lfd = sock_on(port, false, true, NULL);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    int sfd = accept(lfd, NULL, NULL); /* bound to the port, as the listener was */
    assert_true(sfd >= 0);
    close(lfd);
    struct addr_locks *set = addr_locks_new();
    assert_non_null(set);
    assert_int_equal(claim(set, ports, 0), 0);
    addr_locks_free(set);
    close(sfd);
    close(cfd);
}

/* The locks handed to a binary upgrade: as many as held when max is exactly that, -1 below. */
static void test_fds_bound(void **state)
{
    (void)state;
    uint16_t ports[] = {free_port(), free_port(), 0};
    struct addr_locks *set = addr_locks_new();
    assert_non_null(set);
    assert_int_equal(claim(set, ports, free_port()), 0);
    int out[3] = {-1, -1, -1};
    assert_int_equal(addr_locks_fds(set, out, 3), 3);
    for (int i = 0; i < 3; i++)
        assert_true(out[i] >= 0);
    assert_int_equal(addr_locks_fds(set, out, 2), -1);
    addr_locks_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_address_refused),
        cmocka_unit_test(test_claims_and_releases),
        cmocka_unit_test(test_connection_left_not_busy),
        cmocka_unit_test(test_fds_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
