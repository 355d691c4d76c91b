#!/usr/bin/env python3
"""Reports include cycles between modules: a.c (or a.h) including b.h makes a depend on b.
Exits 1 when the module graph has a cycle. Used by `make check-layers`."""
import os, re, sys
root = os.path.join(os.path.dirname(__file__), '..')
deps = {}
for d, ext in (('proxy', '.c'), ('proxy', '.h'), ('include/portico', '.h')):
    for f in os.listdir(os.path.join(root, d)):
        if not f.endswith(ext):
            continue
        mod = f[:-len(ext)]
        if mod.endswith('_int'):
            mod = mod[:-4]
        text = open(os.path.join(root, d, f)).read()
        for inc in re.findall(r'#include "(?:portico/)?([a-z0-9_]+)\.h"', text):
            if inc.endswith('_int'):
                inc = inc[:-4]
            if inc != mod:
                deps.setdefault(mod, set()).add(inc)
state, stack, cycles = {}, [], []
def visit(m):
    state[m] = 1
    stack.append(m)
    for n in sorted(deps.get(m, ())):
        if state.get(n) == 1:
            cycles.append(stack[stack.index(n):] + [n])
        elif n not in state:
            visit(n)
    stack.pop()
    state[m] = 2
for m in sorted(deps):
    if m not in state:
        visit(m)
for c in cycles:
    print('include cycle: ' + ' -> '.join(c))
sys.exit(1 if cycles else 0)
