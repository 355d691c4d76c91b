/*
 * oom.h — makes allocations of the next Portico started fail, at one of its functions: arms
 * build/tests/oom_preload.so (tests/preload/oom_preload.c) through the environment the harness
 * starts Portico with. For the rows of Portico's out-of-memory answers; no test hook in Portico.
 */
#ifndef PORTICO_TEST_OOM_H
#define PORTICO_TEST_OOM_H

#include <stdbool.h>
#include <stddef.h>

/* Until oom_disarm: every Portico started gets the library, and of the calls to malloc, calloc
 * or realloc made by the code of func (its LTO clones func.* too; found with nm -S in
 * $PORTICO_BIN, build/portico by default) the first `skip` go through, the next `fail` fail,
 * the rest go through again. depth 0: the calls func makes itself; N: also those with func in
 * the N innermost frames of their stack (an evbuffer's chain, allocated by libevent for it).
 * Each Portico counts its own calls; each it made fail adds a line "oom_preload: an allocation
 * made to fail" to its stderr. 0, or -1 (why in err) when there is no such function of its
 * own (inlined) or no library. */
int oom_arm(const char *func, int depth, long skip, long fail, char *err, size_t err_size);

/* Whether $PORTICO_BIN is an executable whose functions nm can find (not a script, such as
 * scripts/valgrind.sh's wrapper, whose valgrind would not take another allocator anyway). */
bool oom_possible(void);

/* The environment as before oom_arm: the Portico started next allocates as it will. */
void oom_disarm(void);

/* oom_disarm as a cmocka teardown (cmocka_unit_test_teardown): a row that failed between
 * oom_arm and its own oom_disarm leaves no armed environment to the next. 0. */
int oom_teardown(void **state);

#endif
