// Hugging Face tokenizers through @huggingface/tokenizers: PuzzleTokenizer's tokenizer.json loads there and
// encodes every puzzle exactly as PuzzleTokenizer does (the offline evidence that transformers reads it the
// same way); a LLaMA-style BPE tokenizer behind our Tokenizer interface, with the newline as separator.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';
import { HfTokenizer, puzzleTokenizerAsHf, tokenizerFiles } from '../../lib/model/hf-tokenizer.js';
import { PuzzleTokenizer, SPECIAL_TOKENS } from '../../lib/model/tokenizer.js';
import { formatPrompt, formatResponse } from '../../lib/puzzle/format.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { encodeExample } from '../../lib/core/sft.js';

const root = mkdtempSync(join(tmpdir(), 'hf-tokenizer-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const puzzle = new PuzzleTokenizer();

describe("PuzzleTokenizer's tokenizer.json in @huggingface/tokenizers", () => {
  const hf = puzzleTokenizerAsHf();

  it('has the same vocabulary and special ids', () => {
    expect(hf.vocabSize).toBe(puzzle.vocabSize);
    expect([hf.pad, hf.bos, hf.eos, hf.ans, hf.unk]).toEqual([puzzle.pad, puzzle.bos, puzzle.eos, puzzle.ans, puzzle.unk]);
    expect(hf.answerSeparator).toBe('<ans>');
    for (let id = 0; id < puzzle.vocabSize; id++) {
      expect(hf.tokenText(id), `id ${id}`).toBe(puzzle.tokenText(id));
      expect(hf.idToToken(id)).toBe(puzzle.vocab[id]);
    }
  });

  it('encodes and decodes 2000 synthesized puzzles (N 2..8, values up to 10^6) exactly as PuzzleTokenizer', () => {
    let checked = 0;
    for (const n of [2, 4, 6, 8]) {
      for (const p of synthesize({ n: [n], maxValue: 1_000_000, count: 500, seed: 40 + n })) {
        const prompt = formatPrompt(p);
        const response = formatResponse(p.steps);
        for (const text of [prompt, response, `${prompt}${response}`]) {
          const ids = hf.encode(text);
          expect(ids).toEqual(puzzle.encode(text));
          expect(hf.decode(ids)).toBe(text);
        }
        expect(encodeExample(hf, p)).toEqual(encodeExample(puzzle, p));
        // The library's own template: <bos> prompt (single) and <bos> prompt <ans> response (pair).
        expect(hf.encodeWithTemplate(prompt)).toEqual([puzzle.bos, ...puzzle.encode(prompt)]);
        expect(hf.encodeWithTemplate(prompt, response)).toEqual(encodeExample(puzzle, p).ids.slice(0, -1));
        checked++;
      }
    }
    expect(checked).toBe(2000);
  });

  it('drops or keeps special tokens on decode as PuzzleTokenizer does', () => {
    const ids = [1, ...puzzle.encode('7*6=42'), 3, ...puzzle.encode('-5'), 2, 0, 0];
    expect(hf.decode(ids)).toBe(puzzle.decode(ids));
    expect(hf.decode(ids, true)).toBe(puzzle.decode(ids, true));
    expect(hf.decode([])).toBe('');
    expect(() => hf.decode([23])).toThrow(/token id 23 is outside \[0, 23\)/);
  });

  it('refuses text outside the vocabulary, naming it, as PuzzleTokenizer does', () => {
    expect(() => puzzle.encode('1+x')).toThrow(/character "x" at offset 2/);
    expect(() => hf.encode('1+x')).toThrow(/"x" in "1\+x" is not in the vocabulary: it would encode as the unknown token "<unk>"/);
    const lenient = HfTokenizer.fromJson(puzzle.toHuggingFaceJson(), puzzle.toHuggingFaceConfig().tokenizerConfig, { allowUnknown: true });
    expect(lenient.encode('1+x')).toEqual([5 + 1, 15, 4]);
    // Special tokens typed as text stay special tokens, as in transformers.
    expect(hf.encode('1<ans>2')).toEqual([6, 3, 7]);
  });

  it('loads from the files a model folder holds, and writes them back unchanged', () => {
    const dir = join(root, 'puzzle');
    mkdirSync(dir);
    for (const [file, json] of Object.entries(tokenizerFiles(puzzle))) writeFileSync(join(dir, file), JSON.stringify(json));
    const loaded = HfTokenizer.fromFiles(dir);
    expect(loaded.encode('12, 7: 19')).toEqual(puzzle.encode('12, 7: 19'));
    expect(HfTokenizer.fromFiles(join(dir, 'tokenizer.json')).ans).toBe(3);
    expect(tokenizerFiles(loaded)).toEqual(tokenizerFiles(puzzle));
    // Straight through the library, as a user of @huggingface/tokenizers would.
    const direct = new HfJsTokenizer(puzzle.toHuggingFaceJson(), puzzle.toHuggingFaceConfig().tokenizerConfig);
    expect(direct.encode('34, 18: -110').ids).toEqual([puzzle.bos, ...puzzle.encode('34, 18: -110')]);
    expect(SPECIAL_TOKENS.map((t) => direct.token_to_id(t))).toEqual([0, 1, 2, 3, 4]);
  });
});

/** A LLaMA-style tokenizer.json: SentencePiece BPE with byte fallback, '▁' for spaces, <s> template. */
function llamaStyle(): { json: Record<string, unknown>; config: Record<string, unknown>; vocab: Record<string, number> } {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let id = 259;
  for (const t of ['▁', '1', '2', '3', '+', '=', ',', ':', '-', '▁1', '▁2', '12', '▁12']) vocab[t] = id++;
  const added = (i: number, content: string) => ({ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges: ['▁ 1', '▁ 2', '1 2', '▁1 2'] },
  };
  // tokenizer_config.json as transformers writes it for LLaMA: AddedToken objects, no pad token.
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
    eos_token: { __type: 'AddedToken', content: '</s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
    unk_token: { __type: 'AddedToken', content: '<unk>', lstrip: false, normalized: false, rstrip: false, single_word: false },
    clean_up_tokenization_spaces: false,
    model_max_length: 2048,
    tokenizer_class: 'LlamaTokenizer',
  };
  return { json, config, vocab };
}

describe('a LLaMA-style BPE tokenizer behind the Tokenizer interface', () => {
  const { json, config, vocab } = llamaStyle();
  const tok = HfTokenizer.fromJson(json, config);

  it('takes bos/eos from tokenizer_config.json, pad from eos, and a newline as the answer separator', () => {
    expect(tok.bos).toBe(1);
    expect(tok.eos).toBe(2);
    expect(tok.pad).toBe(2);
    expect(tok.ans).toBe(vocab['<0x0A>']);
    expect(tok.answerSeparator).toBe('\n');
    expect(tok.vocabSize).toBe(259 + 13);
    // The query ends in the newline token, exactly as the plain text "prompt\n" encodes.
    expect([...tok.encode('12+3'), tok.ans]).toEqual(tok.encode('12+3\n'));
  });

  it('encodes with merges and byte fallback, decodes back, and gives token texts as they read in context', () => {
    expect(tok.encode('12 + 3')).toEqual([vocab['▁12'], vocab['▁'], vocab['+'], vocab['▁'], vocab['3']]);
    expect(tok.encode('1 x')).toEqual([vocab['▁1'], vocab['▁'], vocab['<0x78>']]);
    expect(tok.decode(tok.encode('12, 2: -3'))).toBe('12, 2: -3');
    expect(tok.decode([1, ...tok.encode('12'), 2])).toBe('12');
    expect(tok.decode([1, ...tok.encode('12'), 2], true)).toBe('<s> 12</s>'); // as the Rust library: Strip only trims the start of the whole text
    expect(tok.tokenText(vocab['▁12'])).toBe(' 12');
    expect(tok.tokenText(vocab['12'])).toBe('12');
    expect(tok.tokenText(vocab['<0x0A>'])).toBe('\n');
    expect(tok.tokenText(1)).toBe('<s>');
    expect(tok.encodeWithTemplate('12')).toEqual([1, vocab['▁12']]);
  });

  it('takes options for the separator and special tokens, and refuses unknown ones by name', () => {
    expect(HfTokenizer.fromJson(json, config, { answerToken: ':' }).ans).toBe(vocab[':']);
    expect(HfTokenizer.fromJson(json, config, { padToken: '<unk>' }).pad).toBe(0);
    expect(() => HfTokenizer.fromJson(json, config, { answerToken: '<sep>' }, '/m/tokenizer.json')).toThrow(
      '/m/tokenizer.json: option answerToken "<sep>" is not in the vocabulary',
    );
    expect(() => HfTokenizer.fromJson(json, { ...config, eos_token: '<|eot|>' }, {}, '/m/tokenizer.json')).toThrow(
      '/m/tokenizer.json: eos_token "<|eot|>" (from tokenizer_config.json) is not in the vocabulary',
    );
    // Without byte fallback and without a newline token, there is no separator to find.
    const noNewline = structuredClone(json) as { model: { vocab: Record<string, number>; byte_fallback: boolean } };
    noNewline.model.byte_fallback = false;
    expect(() => HfTokenizer.fromJson(noNewline, config, {}, 'x/tokenizer.json')).toThrow(
      /x\/tokenizer\.json: no '<ans>' token, and a newline does not encode to one token after text; pass answerToken/,
    );
    expect(HfTokenizer.fromJson(noNewline, config, { answerToken: '=' }).ans).toBe(vocab['=']);
    const strict = HfTokenizer.fromJson(noNewline, config, { answerToken: '=' }, 'x/tokenizer.json');
    expect(strict.encode('1<unk>2')).toEqual([vocab['▁1'], 0, vocab['▁2']]); // the unknown token typed as text is fine (each section gets its '▁')
    expect(() => strict.encode('1 x')).toThrow(/x\/tokenizer\.json: "x" in "1 x" is not in the vocabulary: it would encode as the unknown token "<unk>"/);
  });

  it('explains missing and malformed files', () => {
    const dir = join(root, 'llama');
    mkdirSync(dir);
    expect(() => HfTokenizer.fromFiles(dir)).toThrow(`${join(dir, 'tokenizer.json')}: no such file`);
    writeFileSync(join(dir, 'tokenizer.model'), 'sentencepiece');
    expect(() => HfTokenizer.fromFiles(dir)).toThrow(/only a SentencePiece tokenizer\.model is there/);
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
    expect(() => HfTokenizer.fromFiles(dir)).toThrow(/tokenizer\.json: not valid JSON/);
    writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    expect(() => HfTokenizer.fromFiles(dir)).toThrow(/tokenizer\.json: not a tokenizer\.json \(no "model" object\)/);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const loaded = HfTokenizer.fromFiles(dir);
    expect(loaded.encode('12')).toEqual([vocab['▁12']]);
    expect(tokenizerFiles(loaded)).toEqual({ 'tokenizer.json': json, 'tokenizer_config.json': config });
  });
});
