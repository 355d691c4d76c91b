/*
 * fuzz_chunked.c — libFuzzer target: the chunked decoder on its own (proxy/chunked.c).
 *
 * The first input byte picks the trailer limit, a short line limit and the random split
 * pattern; the rest is the body. Properties checked (fuzz_common.h): the decoder never claims
 * more bytes than it was given, body_size only grows and equals the data handed out at the end,
 * an error has a reason, and the body decoded whole, byte by byte and in random pieces gives the
 * same result, data and trailers, and the same trailer fields kept by the trailer filter
 * (proxy/trailers.c), whole lines of allowed names only. Every call gets an exact-size copy so
 * ASan sees over-reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portico/chunked.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_chunked((const char *)data + 1, size - 1, data[0]);
    return 0;
}
