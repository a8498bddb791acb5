// bench/peer.ts's choice of peer: every candidate Python is tried and the newest torch wins; versions
// compare by release, not as text; a candidate that fails is listed with why.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compareVersions, defaultCandidates, findPython, parseVersion, pickNewestTorch } from '../../bench/peer.js';

const dir = mkdtempSync(join(tmpdir(), 'peer-select-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in `python` that answers `-c 'import torch; print(torch.__version__)'` as a given torch would. */
function fakePython(name: string, script: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return path;
}

describe('torch versions', () => {
  it('parses the release and compares numerically', () => {
    expect(parseVersion('2.13.0+cpu')).toEqual([2, 13, 0]);
    expect(parseVersion('2.6.0a0+git1234')).toEqual([2, 6, 0]);
    expect(parseVersion('nightly')).toBeNull();
    expect(compareVersions('2.13.0', '2.9.1')).toBeGreaterThan(0); // not text order
    expect(compareVersions('1.13.1', '2.0')).toBeLessThan(0);
    expect(compareVersions('2.5', '2.5.0+cu121')).toBe(0);
  });

  it('picks the newest, the earliest candidate on a tie', () => {
    const found = [
      { python: 'a', torchVersion: '1.13.1' },
      { python: 'b', torchVersion: '2.13.0+cpu' },
      { python: 'c', torchVersion: '2.13.0' },
      { python: 'd', torchVersion: '2.9.0' },
    ];
    expect(pickNewestTorch(found)?.python).toBe('b');
    expect(pickNewestTorch([])).toBeNull();
  });
});

describe('findPython', () => {
  it('tries every candidate and takes the newest torch, whatever the order', async () => {
    const old = fakePython('py-old', 'echo 1.13.1');
    const broken = fakePython('py-broken', 'echo "ModuleNotFoundError: No module named torch" >&2; exit 1');
    const newest = fakePython('py-new', 'echo 2.13.0+cpu');
    const middle = fakePython('py-mid', 'echo 2.9.0');
    const r = await findPython({ candidates: [old, broken, '/nonexistent/python-for-test', newest, middle] });
    if (!('python' in r)) throw new Error(r.reason);
    expect(r.python).toBe(newest);
    expect(r.torchVersion).toBe('2.13.0+cpu');
    expect(r.tried).toEqual([
      `${old}: torch 1.13.1`,
      `${broken}: ModuleNotFoundError: No module named torch`,
      '/nonexistent/python-for-test: ENOENT',
      `${newest}: torch 2.13.0+cpu`,
      `${middle}: torch 2.9.0`,
    ]);
  });

  it('says why when none imports torch, naming each candidate', async () => {
    const junk = fakePython('py-junk', 'echo hello');
    const r = await findPython({ candidates: [junk, '/nonexistent/python-for-test'] });
    expect('reason' in r && r.reason).toMatch(new RegExp(`${junk}: printed 'hello', not a torch version; /nonexistent/python-for-test: ENOENT`));
  });
});

describe('defaultCandidates', () => {
  it('lists $PYTHON, the active virtual environment, venvs in and above the package, python3 and /usr/bin/python3', () => {
    expect(defaultCandidates({ PYTHON: '/opt/py/bin/python', VIRTUAL_ENV: '/work/venv' }, '/work/pkg')).toEqual([
      '/opt/py/bin/python', '/work/venv/bin/python', '/work/pkg/.venv/bin/python', '/work/pkg/venv/bin/python',
      '/work/.venv/bin/python', 'python3', '/usr/bin/python3',
    ]);
    expect(defaultCandidates({}, null)).toEqual(['python3', '/usr/bin/python3']);
    expect(defaultCandidates({ PYTHON: 'python3' }, null)).toEqual(['python3', '/usr/bin/python3']);
  });
});
