#!/usr/bin/env python3
"""Checks README.md's metrics table against a real scrape: starts build/portico with
conf/portico.ini (its ports moved to --port and the ones after it, plus an h2c listener, a TLS
listener when the openssl CLI is there, and a fault rule), sends requests of each kind (plain,
1xx, a refused head, origin failures, Expect: 100-continue, a fault rule and the Portico-Fault
header, HTTP/2 over h2c and TLS through curl when it speaks HTTP/2), reloads once, scrapes
/metrics and compares: every family in the scrape has its row, with that type and those labels,
and every row's family is in the scrape; each value of a closed label is named in its row.
Prints each difference; exits 1 on any, 0 otherwise. By hand, not part of make test
(tests/unit/test_manpage.c checks the same rows against the renderer in-process).

usage: scripts/metrics-scrape-check.py [--binary build/portico] [--port 18980]"""
import argparse, http.client, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
# Labels whose values are names (route, upstream, origin, file, fault), numbers (code, class,
# le), failure types (the failure table documents them) or the version: others are closed sets.
OPEN_LABELS = {'route', 'upstream', 'origin', 'file', 'fault', 'code', 'class', 'le', 'failure',
               'version'}


def readme_rows():
    text = open(os.path.join(ROOT, 'README.md'), encoding='utf-8').read()
    sec = text[text.index('## Metrics, `/status`'):]
    sec = sec[:sec.index('\n### ')]
    rows = {}
    for line in sec.splitlines():
        if line.startswith('| `portico_'):
            cells = [c.strip() for c in line.strip().strip('|').split(' | ')]
            for name in re.findall(r'`(portico_\w+)`', cells[0]):
                rows[name] = cells
    return rows


def config(port, tmp):
    ini = open(os.path.join(ROOT, 'conf', 'portico.ini'), encoding='utf-8').read()
    ini = re.sub(r'^listen = .*$', 'listen = 127.0.0.1:%d\nlisten = 127.0.0.1:%d h2c'
                 % (port, port + 2), ini, count=1, flags=re.M)
    ini = re.sub(r'^admin_listen = .*$', 'admin_listen = 127.0.0.1:%d' % (port + 1), ini,
                 count=1, flags=re.M)
    ini = re.sub(r'^access_log = .*$', 'access_log = access.log\nerror_log = error.log', ini,
                 count=1, flags=re.M)
    tls = shutil.which('openssl') and subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'key.pem',
         '-out', 'cert.pem', '-days', '30', '-subj', '/CN=localhost'], cwd=tmp,
        capture_output=True).returncode == 0
    if tls:
        ini = ini.replace('[proxy]\n', '[proxy]\nlisten = 127.0.0.1:%d tls\ntls_cert = cert.pem\n'
                          'tls_key = key.pem\n' % (port + 3), 1)
    ini += ('\n[faults]\nheader_control = on\n\n[fault doc-status]\nprefix = /doc-fault\n'
            'status = 503\n')
    path = os.path.join(tmp, 'portico.ini')
    open(path, 'w', encoding='utf-8').write(ini)
    return path, tls


def get(port, path, headers=None, body=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        c.request('POST' if body else 'GET', path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def traffic(port, tls):
    for path in ['/', '/status/418', '/status/503', '/interim/103,102', '/delay/20',
                 '/bytes/100000', '/close', '/reset', '/garbage', '/nothing', '/doc-fault']:
        get(port, path)
    get(port, '/echo', {'Expect': '100-continue'}, b'x' * 5000)
    get(port, '/', {'Portico-Fault': 'failure=connect_refused'})
    get(port, '/', {'Portico-Fault': 'delay=10ms'})
    get(port, '/', {'X-Big': 'a' * 20000})                      # 431: refused before routing
    curl = shutil.which('curl')
    if curl and 'HTTP2' in subprocess.run([curl, '-V'], capture_output=True, text=True).stdout:
        subprocess.run([curl, '-s', '-o', '/dev/null', '-m', '5', '--http2-prior-knowledge',
                        'http://127.0.0.1:%d/' % (port + 2)])
        if tls:
            subprocess.run([curl, '-sk', '-o', '/dev/null', '-m', '5', '--http2',
                            'https://127.0.0.1:%d/' % (port + 3)])


def compare(text, rows):
    problems = []
    types = dict(re.findall(r'^# TYPE (\S+) (\S+)$', text, re.M))
    for fam, t in types.items():
        if fam not in rows:
            problems.append('%s: in the scrape, no row in the table' % fam)
        elif rows[fam][1] != t:
            problems.append('%s: a %s, its row says %s' % (fam, t, rows[fam][1]))
    for fam in rows:
        if fam not in types:
            problems.append('%s: in the table, not in the scrape' % fam)
    for m in re.finditer(r'^(\w+)\{(.*)\} ', text, re.M):
        fam = m.group(1)
        if fam not in types:
            fam = re.sub(r'_(bucket|sum|count)$', '', fam)
        row = rows.get(fam)
        if not row:
            continue
        for label, value in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
            if label != 'le' and '`%s`' % label not in row[2]:
                problems.append('%s: label %s, not in its row' % (fam, label))
            if label not in OPEN_LABELS and '`%s`' % value not in row[3]:
                problems.append('%s: %s="%s", a value its row does not name' % (fam, label, value))
    return sorted(set(problems)), len(types)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary', default=os.path.join(ROOT, 'build', 'portico'))
    ap.add_argument('--port', type=int, default=18980, help='4 ports from this one')
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='metrics-scrape-')
    path, tls = config(a.port, tmp)
    proc = subprocess.Popen([os.path.abspath(a.binary), '-c', path], cwd=tmp)
    try:
        for _ in range(100):                                     # up to 10 s to serve
            if get(a.port + 1, '/healthz') == 200:
                break
            if proc.poll() is not None:
                sys.exit('portico exited with %d (see %s)' % (proc.returncode, tmp))
            time.sleep(0.1)
        traffic(a.port, tls)
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):                                     # the reload is counted
            c = http.client.HTTPConnection('127.0.0.1', a.port + 1, timeout=10)
            c.request('GET', '/metrics')
            text = c.getresponse().read().decode()
            c.close()
            if 'portico_config_reloads_total{result="ok"} 1' in text:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
    problems, families = compare(text, readme_rows())
    for p in problems:
        print(p)
    print('%d families scraped, %d differences%s' % (families, len(problems),
                                                      '' if tls else ' (no TLS listener)'))
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
