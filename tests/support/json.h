/*
 * json.h — a strict JSON (RFC 8259) reader for test assertions: the whole document becomes a
 * tree, anything that is not JSON (trailing commas, bare control bytes, leading zeros, text
 * after the value, a bad escape) is refused with the offset where it went wrong. Not fast, not
 * for the proxy: for tests that must prove a line or a document *is* JSON before looking in it.
 */
#ifndef PORTICO_TEST_JSON_H
#define PORTICO_TEST_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum tj_type { TJ_NULL, TJ_BOOL, TJ_NUMBER, TJ_STRING, TJ_ARRAY, TJ_OBJECT };

struct tj {
    enum tj_type type;
    bool boolean;
    double number;
    char *string;                      /* TJ_STRING (decoded, NUL-terminated) */
    char *key;                         /* the member name when inside an object */
    struct tj **items;                 /* TJ_ARRAY elements, TJ_OBJECT members, in order */
    size_t n;
};

/* Parses text (NUL-terminated). NULL when it is not exactly one JSON value, with a message in
 * err[errsize] ("offset 12: ',' or '}' expected"). */
struct tj *tj_parse(const char *text, char *err, size_t errsize);

/* Frees a tree (NULL is fine). */
void tj_free(struct tj *v);

/* The member `key` of an object, or NULL (also when v is not an object). */
const struct tj *tj_get(const struct tj *v, const char *key);

/* Walks "a.b.c" through objects; NULL when a step is missing. */
const struct tj *tj_path(const struct tj *v, const char *path);

/* The string of a TJ_STRING member (NULL when absent or of another type). */
const char *tj_str(const struct tj *v, const char *path);

/* The number of a TJ_NUMBER member into *out: 0, or -1 when absent or not a number. */
int tj_num(const struct tj *v, const char *path, double *out);

/* True when the member is present and JSON null. */
bool tj_is_null(const struct tj *v, const char *path);

#endif
