// The HTML report holds both plots, self-contained; the schedule warms up then follows a cosine.
import { describe, expect, it } from 'vitest';
import { renderReport } from '../../lib/train/report.js';
import { learningRate } from '../../lib/train/schedule.js';

describe('report', () => {
  it('holds the loss curve and the pass@1 chart, with no external resources', () => {
    const html = renderReport({
      title: 'run <1>',
      steps: Array.from({ length: 200 }, (_, i) => ({ step: i, loss: 3 * Math.exp(-i / 50) + 0.1 })),
      scores: [
        { set: 'id', mode: 'free', pass1: 0.25, paper: 0.443 },
        { set: 'ood-form', mode: 'constrained', pass1: 0.5 },
      ],
      facts: [['preset', 'tiny']],
    });
    expect(html).toMatch(/<svg class="loss-chart"[^>]*>[\s\S]*<path d="M[\d.]+,[\d.]+L/);
    expect(html).toMatch(/<svg class="pass-chart"[\s\S]*<rect [^>]*class="bar free"[\s\S]*class="bar constrained"/);
    expect(html).toMatch(/<title>id free: 0.250<\/title>/);
    expect(html).toContain('run &lt;1&gt;');
    expect(html).not.toMatch(/<script|https?:\/\//);
  });
});

describe('learning-rate schedule', () => {
  it('warms up linearly, then decays by cosine to the floor', () => {
    const o = { lr: 1e-3, totalSteps: 110, warmupSteps: 10, minLr: 1e-4 };
    expect(learningRate(0, o)).toBeCloseTo(1e-4, 12);
    expect(learningRate(9, o)).toBeCloseTo(1e-3, 12);
    expect(learningRate(10, o)).toBeCloseTo(1e-3, 12);
    expect(learningRate(60, o)).toBeCloseTo(1e-4 + 0.5 * 9e-4, 12);
    expect(learningRate(110, o)).toBeCloseTo(1e-4, 12);
    expect(learningRate(50, { lr: 2, totalSteps: 100, warmupSteps: 0 })).toBeCloseTo(1, 12); // the paper: no warmup
  });
});

describe('progress times', () => {
  it('never writes 60 seconds into a minute', async () => {
    const { formatSeconds } = await import('../../lib/cli/progress.js');
    expect(formatSeconds(179.7)).toBe('3m00s');
    expect(formatSeconds(59.7)).toBe('1m00s');
    expect(formatSeconds(7.25)).toBe('7.3s');
    expect(formatSeconds(3725)).toBe('1h02m');
  });
});
