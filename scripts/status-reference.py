#!/usr/bin/env python3
"""Compares the reference text on status codes (../shared/reference/http-status-codes.txt, the
source tests/data/status-codes.txt was extracted from) with `portico codes --json`: every code it
names must be registered, every phrase it gives a code must be one of that code's meanings, and
in its English list the kind and origin must agree with the section or the parenthetical
("(WebDAV; RFC 4918)", "(Esri)"). Prints the counts and each difference; exits 1 on any.

usage: scripts/status-reference.py [REFERENCE [PORTICO_BIN]]"""
import json, os, re, subprocess, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
ref = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, '..', 'shared', 'reference',
                                                         'http-status-codes.txt')
binary = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, 'build', 'portico')
reg = json.loads(subprocess.run([binary, 'codes', '--json'], capture_output=True, check=True,
                                text=True).stdout)
by_code = {}
for m in reg:
    by_code.setdefault(m['code'], []).append(m)

# Lines that start with a code but name no meaning of it (as in tests/unit/test_status.c).
NOT_MEANINGS = {(102, 'status code example'), (201, 'Webpage Created'),
                (403, 'Access allowed only for registered users'), (404, 'error on Wikimedia'),
                (414, 'Request-URL Too Long')}
# Section headings of the English list: (kinds, origin) its codes must have; None: the
# parenthetical decides; 'end': the English list is over.
SECTIONS = [
    (r'^[1-5]xx (informational|success|redirection|client errors|server errors)', None),
    (r'^Unofficial codes', (('vendor', 'unofficial'), None)),
    (r'^Internet Information Services', (('vendor',), 'IIS')),
    (r'^The nginx web server', (('vendor',), 'nginx')),
    (r'^Cloudflare.s reverse proxy', (('vendor',), 'Cloudflare')),
    (r'^AWS Elastic Load Balancing', (('vendor',), 'AWS ELB')),
    (r'^Caching warning codes', (('obsolete',), None)),
    (r'^HTTP response status code 102 Processing is', 'end'),
]
LINE = re.compile(r'^\s*(?:\u2022\s*)?(?:\[[^\]]*\]\s*)?(\d{3})(?:\s+(.*))?$')
CUT = re.compile(r'[(\[\u0400-\u04ff]')

section, english, entries = None, True, []
for no, line in enumerate(open(ref, encoding='utf-8'), 1):
    line = line.rstrip('\n')
    for pat, sec in SECTIONS:
        if re.match(pat, line):
            english = english and sec != 'end'
            section = sec
    m = LINE.match(line)
    if m is None:
        e = re.match(r'^Error (\d{3}) ', line)      # "Error 530 is returned along with ..."
        if e:
            entries.append((no, int(e.group(1)), '', '', section, english))
        continue
    code, rest = int(m.group(1)), (m.group(2) or '').replace('\u2019', "'")
    paren = ''
    lead = re.match(r'^\(([^)]*)\)\s*(.*)$', rest)  # "598 (Informal convention) Network ..."
    if lead:
        paren, rest = lead.group(1), lead.group(2)
    phrase = CUT.split(rest)[0].strip().rstrip('.')
    tail = re.search(r'\(([^)\u0400-\u04ff]*)\)', rest)
    if tail and not paren:
        paren = tail.group(1)
    entries.append((no, code, phrase, paren, section, english))


def expected(paren, section):
    """(kinds, origin) a meaning of the English list must have."""
    if section is not None:
        kinds, origin = section
        if kinds == ('vendor', 'unofficial') and paren and paren != 'Informal convention':
            origin = paren
        return kinds, origin
    if paren.startswith('WebDAV'):
        return ('webdav',), 'WebDAV ' + paren.split(';')[1].strip()
    if paren.startswith('RFC'):
        return ('rfc', 'webdav', 'obsolete'), None
    return ('http', 'webdav', 'obsolete'), None  # RFC 9110, or a former name of one of its codes


missing_codes, missing_phrases, wrong_kind, seen = [], [], [], set()
for no, code, phrase, paren, section, english in entries:
    if code not in by_code:
        missing_codes.append(f'line {no}: {code} {phrase}')
        continue
    seen.add(code)
    if not phrase or (code, phrase) in NOT_MEANINGS:
        continue
    hit = [m for m in by_code[code] if m['phrase'].lower() == phrase.lower()]
    if not hit:
        missing_phrases.append(f'line {no}: {code} "{phrase}"')
        continue
    if not english:
        continue
    kinds, origin = expected(paren, section)
    m = hit[0]
    if m['kind'] not in kinds or (origin and origin not in m['source'] and
                                  m['source'] not in origin):
        wrong_kind.append(f'line {no}: {code} "{phrase}" ({paren}): registry {m["kind"]}, '
                          f'"{m["source"]}"; want {"/".join(kinds)}'
                          + (f', "{origin}"' if origin else ''))

print(f'reference: {len(entries)} lines naming a code, {len({e[1] for e in entries})} codes')
print(f'registry:  {len(reg)} meanings of {len(by_code)} codes '
      f'({len(set(by_code) - seen)} not in the reference: {sorted(set(by_code) - seen)})')
for title, rows in (('codes not registered', missing_codes),
                    ('phrases that are no meaning of their code', missing_phrases),
                    ('kind or origin disagreeing', wrong_kind)):
    print(f'{title}: {len(rows)}')
    for r in rows:
        print('  ' + r)
sys.exit(1 if missing_codes or missing_phrases or wrong_kind else 0)
