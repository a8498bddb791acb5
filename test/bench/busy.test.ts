// bench/busy.ts: the competing process of the contended rows runs (and uses CPU) during the measurement and is
// gone after it, also when the measurement throws.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withBusyProcess } from '../../bench/busy.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
/** utime + stime of a process in clock ticks (Linux /proc). */
const cpuTicks = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
};

describe('withBusyProcess', () => {
  it('spins a child during the measurement and kills it after', async () => {
    let pid = 0;
    const result = await withBusyProcess(async (busy) => {
      pid = busy;
      expect(alive(busy)).toBe(true);
      const t0 = cpuTicks(busy);
      await new Promise((r) => setTimeout(r, 400));
      expect(cpuTicks(busy) - t0).toBeGreaterThan(5); // busy: at least 50 ms of CPU in 400 ms
      return 42;
    });
    expect(result).toBe(42);
    expect(alive(pid)).toBe(false);
  });

  it('kills the child when the measurement throws', async () => {
    let pid = 0;
    await expect(withBusyProcess(async (busy) => {
      pid = busy;
      throw new Error('measurement failed');
    })).rejects.toThrow('measurement failed');
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(false);
  });
});
