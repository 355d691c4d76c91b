/*
 * test_route_return.c — a redirect's Location (route_return_location): the client's words
 * percent-encoded where they are no URL byte (a blank, a CR or LF, DEL, a byte >= 0x80), a run
 * of slashes or backslashes that begins it one slash, and an absolute URL whose authority came
 * out empty refused (-2). The parsers refuse most of these bytes before any route: these rows
 * hold the answer's own guard whatever a parser lets by.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "portico/route_return.h"
#include "portico/util.h"

static const struct {
    const char *why;
    const char *text;          /* the route's URL */
    const char *host;          /* $host, NULL: none */
    const char *uri;           /* $request_uri */
    int rc;
    const char *location;      /* when rc is 0 */
} rows[] = {
    {"as it came", "https://$host$request_uri", "app.test", "/a?b=1", 0, "https://app.test/a?b=1"},
    {"a blank is encoded", "https://$host$request_uri", "a b", "/x", 0, "https://a%20b/x"},
    {"DEL is encoded", "https://$host$request_uri", "a\x7f", "/x", 0, "https://a%7F/x"},
    {"CR LF are encoded", "https://$host$request_uri", "a", "/\r\nSet-Cookie: c", 0,
     "https://a/%0D%0ASet-Cookie:%20c"},
    {"a byte >= 0x80 is encoded", "https://$host$request_uri", "a", "/\xc2\x85", 0,
     "https://a/%C2%85"},
    {"the route's own words are not", "/to/x?y=1", NULL, "/p", 0, "/to/x?y=1"},
    {"two slashes are one", "/$request_uri", NULL, "/p", 0, "/p"},
    {"three slashes are one", "/$request_uri", NULL, "//evil.example/x", 0, "/evil.example/x"},
    {"a backslash in the run too", "/$request_uri", NULL, "/\\evil.example/x", 0,
     "/evil.example/x"},
    {"https:// and nothing", "https://$host", NULL, NULL, -2, NULL},
    {"https:/// and a path", "https://$host$request_uri", NULL, "/x", -2, NULL},
    {"https://\\ is no authority either", "https://$host$request_uri", "\\evil.example", "/x",
     -2, NULL},
    {"http://? is none", "http://$host?x", NULL, NULL, -2, NULL},
};

static void test_locations(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct route_return a = {.status = 302, .text = (char *)(uintptr_t)rows[i].text,
                                 .text_len = strlen(rows[i].text),
                                 .vars = strchr(rows[i].text, '$') != NULL};
        struct hrule_values v = {.client_addr = "127.0.0.1", .request_id = "id",
                                 .host = rows[i].host,
                                 .host_len = rows[i].host ? strlen(rows[i].host) : 0,
                                 .request_uri = rows[i].uri,
                                 .request_uri_len = rows[i].uri ? strlen(rows[i].uri) : 0};
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        int rc = route_return_location(&a, &v, out);
        size_t len = evbuffer_get_length(out);
        char got[256] = "";
        evbuffer_copyout(out, got, len < sizeof(got) - 1 ? len : sizeof(got) - 1);
        if (rc != rows[i].rc || (rc == 0 && strcmp(got, rows[i].location) != 0))
            fail_msg("%s: rc %d, \"%s\"; want %d, \"%s\"", rows[i].why, rc, got, rows[i].rc,
                     rows[i].location ? rows[i].location : "");
        evbuffer_free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_locations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
