/*
 * codes.h — `portico codes`: the status-code registry on the command line, as a table or JSON.
 *
 *   portico codes [--json]            every meaning of every code
 *   portico codes [--json] 5xx        one class (1xx-9xx)
 *   portico codes [--json] 499        every meaning of one code, the wire one marked; in text,
 *                                     the failure types each error profile answers with it
 */
#ifndef PORTICO_CODES_H
#define PORTICO_CODES_H

/* Runs the subcommand; argv[0] is "codes". Output on stdout; exit status 0 when something was
 * listed, 1 for a well-formed code or class the registry lacks (298, 6xx), 2 for bad usage, each
 * failure with one line on stderr. */
int codes_main(int argc, char **argv);

#endif
