// JSONL records: round trips, integers past 2^53 as strings, and errors that name the field.
import { describe, expect, it } from 'vitest';
import { parsePuzzleLine, puzzleToJsonLine } from '../../lib/puzzle/jsonl.js';
import { parsePrompt, parseResponse, formatPrompt, formatResponse } from '../../lib/puzzle/format.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { verify } from '../../lib/puzzle/verify.js';

describe('JSONL records', () => {
  it('round-trip synthesized puzzles, prompt and response included', () => {
    for (const p of synthesize({ n: [5, 8], maxValue: 1000, count: 300, seed: 2 })) {
      const line = puzzleToJsonLine(p);
      const obj = JSON.parse(line); // valid JSON
      expect(obj.prompt).toBe(formatPrompt(p));
      const back = parsePuzzleLine(line, ['response']);
      if (!back.ok) throw new Error(back.error);
      expect(back.record.numbers).toEqual(p.numbers);
      expect(back.record.target).toBe(p.target);
      expect(parsePrompt(obj.prompt)).toEqual({ numbers: p.numbers, target: p.target });
      const steps = parseResponse(obj.response);
      expect(steps.ok && formatResponse(steps.steps)).toBe(obj.response);
    }
  });

  it('writes integers beyond 2^53 as decimal strings and verifies them exactly', () => {
    let found = 0;
    for (const p of synthesize({ n: 8, maxValue: 1000, count: 5000, seed: 23 })) {
      if (typeof p.target !== 'bigint') continue;
      found++;
      const line = puzzleToJsonLine(p);
      expect(JSON.parse(line).target).toBe(p.target.toString());
      const back = parsePuzzleLine(line, ['response']);
      if (!back.ok) throw new Error(back.error);
      expect(back.record.target).toBe(p.target);
      expect(verify(back.record, back.record.response).ok).toBe(true);
      // off by one in the last digit of the target: a double could not tell, the verifier must
      const wrong = { ...back.record, target: p.target + 1n };
      expect(verify(wrong, back.record.response).reason).toBe('final-value-differs');
    }
    expect(found).toBeGreaterThan(0);
  });

  it('names the bad field of a malformed line', () => {
    const cases: Array<[string, RegExp]> = [
      ['not json', /not valid JSON/],
      ['[1,2,3]', /JSON object/],
      ['{"target":3}', /"numbers" must be an array of integers, got nothing/],
      ['{"numbers":[1,"x"],"target":3}', /"numbers"\[1\] must be an integer/],
      ['{"numbers":[1,2.5],"target":3}', /"numbers"\[1\] must be an integer, got 2.5/],
      ['{"numbers":[1,2],"target":12345678901234567890}', /"target" = .* write it as a decimal string/],
      ['{"numbers":[1,2],"target":null}', /"target" must be an integer, got null/],
      ['{"numbers":[1,2],"target":3,"response":7}', /"response" must be a string, got 7/],
      ['{"numbers":[1],"target":3}', /at least 2 integers/],
    ];
    for (const [line, message] of cases) {
      const r = parsePuzzleLine(line);
      expect(r.ok, line).toBe(false);
      if (!r.ok) expect(r.error, line).toMatch(message);
    }
    const missing = parsePuzzleLine('{"numbers":[1,2],"target":3}', ['response']);
    expect(!missing.ok && missing.error).toMatch(/"response" is missing/);
  });

  it('keeps extra fields', () => {
    const r = parsePuzzleLine('{"numbers":[1,2],"target":"3","id":"abc"}');
    expect(r.ok && r.record.extra).toEqual({ id: 'abc' });
    expect(r.ok && r.record.target).toBe(3);
  });
});
