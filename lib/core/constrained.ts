// Constrained decoding: the verifier's state as a mask on the next token, so that the model can only
// write well-formed steps over available numbers with correct results (the final value stays its own job).
// Works on the character-level puzzle tokenizer: one character per token.
import { intToString, parseInt10, type Int } from '../puzzle/int.js';
import { applyOp } from '../puzzle/synthesize.js';
import type { Op, Puzzle } from '../puzzle/types.js';
import type { Tokenizer } from '../model/tokenizer.js';

type Phase =
  | { kind: 'a'; text: string } // reading the first operand
  | { kind: 'b'; a: Int; op: Op; text: string } // reading the second operand
  | { kind: 'result'; expected: string; text: string } // writing the (only) correct result
  | { kind: 'space' } // after ',': ' '
  | { kind: 'done' };

const OP_CHARS: readonly Op[] = ['+', '-', '*', '/'];

export class ConstrainedState {
  private available = new Map<Int, number>();
  private phase: Phase = { kind: 'a', text: '' };
  private stepsDone = 0;
  private readonly stepsNeeded: number;
  private readonly charOf: string[];
  private readonly idOf = new Map<string, number>();

  constructor(
    private readonly tokenizer: Tokenizer,
    puzzle: Puzzle,
  ) {
    for (const x of puzzle.numbers) this.available.set(x, (this.available.get(x) ?? 0) + 1);
    this.stepsNeeded = puzzle.numbers.length - 1;
    this.charOf = Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.tokenText(id));
    this.charOf.forEach((c, id) => {
      if (c.length === 1) this.idOf.set(c, id);
    });
  }

  /** An independent copy (beam search branches the state); the tables of the tokenizer are shared. */
  clone(): ConstrainedState {
    const copy = Object.create(ConstrainedState.prototype) as ConstrainedState;
    Object.assign(copy, this);
    // phases are replaced, never changed in place, so only the pool needs its own copy
    copy.available = new Map(this.available);
    return copy;
  }

  get finished(): boolean {
    return this.phase.kind === 'done';
  }

  /** allowed[id] = 1 when token id may come next. Never all zero before `finished`. */
  allowed(): Uint8Array {
    const mask = new Uint8Array(this.tokenizer.vocabSize);
    const allow = (c: string) => {
      const id = this.idOf.get(c);
      if (id !== undefined) mask[id] = 1;
    };
    const p = this.phase;
    switch (p.kind) {
      case 'a':
      case 'b': {
        // the first operand left the pool when its operator was written, so counts are right for b
        const noZero = p.kind === 'b' && p.op === '/';
        for (const c of this.nextNumberChars(p.text, noZero)) allow(c);
        const value = p.text === '' || p.text === '-' ? null : parseInt10(p.text);
        if (value !== null && this.available.has(value)) {
          if (p.kind === 'a') {
            for (const op of OP_CHARS) if (op !== '/' || this.hasNonZeroBesides(value)) allow(op);
          }
          else if (!(p.op === '/' && value === 0)) allow('=');
        }
        break;
      }
      case 'result':
        if (p.text.length < p.expected.length) allow(p.expected[p.text.length]);
        else if (this.stepsDone >= this.stepsNeeded) mask[this.tokenizer.eos] = 1;
        else allow(',');
        break;
      case 'space':
        allow(' ');
        break;
      case 'done':
        mask[this.tokenizer.eos] = 1;
        break;
    }
    return mask;
  }

  /** Takes the chosen token; throws if the mask did not allow it. */
  advance(id: number): void {
    if (!this.allowed()[id]) throw new Error(`constrained decoding: token ${JSON.stringify(this.tokenizer.tokenText(id))} is not allowed here`);
    if (id === this.tokenizer.eos) {
      this.phase = { kind: 'done' };
      return;
    }
    const c = this.charOf[id];
    const p = this.phase;
    switch (p.kind) {
      case 'a':
        if (OP_CHARS.includes(c as Op) && p.text !== '' && p.text !== '-') {
          const a = parseInt10(p.text) as Int;
          this.take(a);
          this.phase = { kind: 'b', a, op: c as Op, text: '' };
        } else this.phase = { kind: 'a', text: p.text + c };
        break;
      case 'b':
        if (c === '=') {
          const b = parseInt10(p.text) as Int;
          this.take(b);
          const result = applyOp(p.a, p.op, b) as Int;
          this.available.set(result, (this.available.get(result) ?? 0) + 1);
          this.stepsDone++;
          this.phase = { kind: 'result', expected: intToString(result), text: '' };
        } else this.phase = { ...p, text: p.text + c };
        break;
      case 'result':
        if (p.text.length < p.expected.length) this.phase = { ...p, text: p.text + c };
        else this.phase = { kind: 'space' }; // the ',' after a complete result
        break;
      case 'space':
        this.phase = { kind: 'a', text: '' };
        break;
      case 'done':
        break;
    }
  }

  /** Whether a non-zero divisor stays available once one `value` is taken as the first operand. */
  private hasNonZeroBesides(value: Int): boolean {
    for (const [x, c] of this.available) if (x !== 0 && (x !== value || c > 1)) return true;
    return false;
  }

  private take(value: Int): void {
    const c = this.available.get(value) ?? 0;
    if (c <= 1) this.available.delete(value);
    else this.available.set(value, c - 1);
  }

  /** Characters that extend `text` towards the decimal form of some available number. */
  private nextNumberChars(text: string, noZero: boolean): Set<string> {
    const out = new Set<string>();
    for (const value of this.available.keys()) {
      if (noZero && value === 0) continue; // never a divisor
      const s = intToString(value);
      if (s.length > text.length && s.startsWith(text)) out.add(s[text.length]);
    }
    return out;
  }
}
