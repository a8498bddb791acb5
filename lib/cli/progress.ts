// A progress bar on a terminal (redrawn in place on stderr), plain occasional lines elsewhere.
import type { Writable } from 'node:stream';

export interface Progress {
  /** Reports `done` of `total` units, with extra text (loss, rate, …) after the bar. */
  update(done: number, extra?: string): void;
  /** Ends the bar with a final line. */
  finish(message?: string): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  stream: Writable & { isTTY?: boolean; columns?: number };
  /** Seconds between plain lines when the stream is not a terminal (0: none). */
  plainEvery?: number;
  /** How `done/total` is written (default: both as counts, 1,234/5,000). */
  counts?: (done: number, total: number) => string;
}

export function createProgress(options: ProgressOptions): Progress {
  const { label, total, stream } = options;
  const tty = Boolean(stream.isTTY);
  const plainEvery = (options.plainEvery ?? 10) * 1000;
  const start = Date.now();
  let lastDraw = tty ? 0 : start;
  let lastDone = 0;

  const render = (done: number, extra: string): string => {
    const elapsed = (Date.now() - start) / 1000;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const eta = done > 0 && done < total ? formatSeconds((elapsed * (total - done)) / done) : '--';
    const counts = options.counts ? options.counts(done, total) : `${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')}`;
    const tail = `${counts} ${extra ? `${extra} ` : ''}elapsed ${formatSeconds(elapsed)} eta ${eta}`;
    if (!tty) return `${label} ${Math.round(fraction * 100)}% ${tail}`;
    const width = Math.max(10, Math.min(30, (stream.columns ?? 80) - label.length - tail.length - 6));
    const filled = Math.round(fraction * width);
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${tail}`;
  };

  return {
    update(done, extra = '') {
      lastDone = done;
      const now = Date.now();
      if (tty) {
        if (now - lastDraw < 100 && done < total) return;
        lastDraw = now;
        stream.write(`\r\x1b[2K${render(done, extra)}`);
      } else if (plainEvery > 0 && now - lastDraw >= plainEvery) {
        lastDraw = now;
        stream.write(`${render(done, extra)}\n`);
      }
    },
    finish(message) {
      if (tty) stream.write(`\r\x1b[2K`);
      stream.write(`${message ?? render(lastDone, '')}\n`);
    },
  };
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--';
  if (s < 59.5) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const whole = Math.round(s);
  const m = Math.floor(whole / 60);
  if (m < 60) return `${m}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
