// The launcher: torchrun's environment for each rank, output prefixed by rank (a redrawn progress bar
// included), and a failing rank stopping the others with its status as the launcher's.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { launch, linePrefixer } from '../../lib/dist/launch.js';

function sink(): Writable & { text: string } {
  const w = new Writable({
    write(chunk, _enc, done) {
      w.text += String(chunk);
      done();
    },
  }) as Writable & { text: string };
  w.text = '';
  return w;
}

describe('linePrefixer', () => {
  it('prefixes every line, across chunk boundaries', () => {
    const p = linePrefixer('[rank 1] ');
    expect(p('one\ntw') + p('o\n') + p('three')).toBe('[rank 1] one\n[rank 1] two\n[rank 1] three');
  });

  it('keeps a progress bar\'s erase-line before the prefix', () => {
    const p = linePrefixer('[rank 0] ');
    expect(p('\r\x1b[2Ktrain [#...] 1/4\r\x1b[2Ktrain [##..] 2/4\n')).toBe('\r\x1b[2K[rank 0] train [#...] 1/4\r\x1b[2K[rank 0] train [##..] 2/4\n');
  });
});

describe('launch', () => {
  const script = (body: string) => ['-e', body];

  it('gives each rank torchrun\'s environment and prefixes its output', async () => {
    const stdout = sink();
    const stderr = sink();
    const r = await launch({
      nprocPerNode: 2,
      nnodes: 2,
      nodeRank: 1,
      masterAddr: '10.1.2.3',
      masterPort: 4242,
      command: process.execPath,
      args: script('const e = process.env; console.log([e.RANK, e.WORLD_SIZE, e.LOCAL_RANK, e.LOCAL_WORLD_SIZE, e.MASTER_ADDR, e.MASTER_PORT].join(" ")); console.error("note")'),
      stdout,
      stderr,
    });
    expect(r.status).toBe(0);
    expect(stdout.text.split('\n').filter(Boolean).sort()).toEqual(['[rank 2] 2 4 0 2 10.1.2.3 4242', '[rank 3] 3 4 1 2 10.1.2.3 4242']);
    expect(stderr.text).toMatch(/\[rank 2\] note/);
  });

  it('stops the other ranks when one fails and exits with its status, naming it', async () => {
    const stdout = sink();
    const stderr = sink();
    const t0 = Date.now();
    const r = await launch({
      nprocPerNode: 3,
      nnodes: 1,
      nodeRank: 0,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
      command: process.execPath,
      // rank 1 fails; the others would run for a minute, and stop cleanly on SIGTERM
      args: script('if (process.env.RANK === "1") setTimeout(() => process.exit(3), 200); else { process.on("SIGTERM", () => { console.log("stopping"); process.exit(143); }); setTimeout(() => {}, 60000); }'),
      stdout,
      stderr,
      graceSeconds: 5,
    });
    expect(r.status).toBe(3);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(stderr.text).toMatch(/puzzle-llama launch: rank 1 \(pid \d+\) exited with status 3, the first to fail; stopping the other ranks/);
    expect(stdout.text).toMatch(/\[rank 0\] stopping/);
    expect(r.exits.map((e) => e.status).sort()).toEqual([143, 143, 3]);
  });

  it('kills a rank that ignores SIGTERM after the grace period, and reports a rank killed by a signal', async () => {
    const stderr = sink();
    const r = await launch({
      nprocPerNode: 2,
      nnodes: 1,
      nodeRank: 0,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
      command: process.execPath,
      args: script('if (process.env.RANK === "0") setTimeout(() => process.kill(process.pid, "SIGKILL"), 200); else { process.on("SIGTERM", () => {}); setTimeout(() => {}, 60000); }'),
      stdout: sink(),
      stderr,
      graceSeconds: 1,
    });
    expect(stderr.text).toMatch(/rank 0 \(pid \d+\) was killed by SIGKILL/);
    expect(r.status).toBe(137);
    expect(r.exits.find((e) => e.rank === 1)?.signal).toBe('SIGKILL');
  });
});
