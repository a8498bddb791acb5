// Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) behind our Tokenizer interface, through
// @huggingface/tokenizers (pure JS, offline: files are read from disk, nothing is fetched).
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile } from '../io/json.js';
import { Tokenizer as HfJsTokenizerUntyped } from '@huggingface/tokenizers';
import { PuzzleTokenizer, type Tokenizer } from './tokenizer.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. Its 0.2.0 type declarations use extensionless
 * relative imports, which NodeNext resolution cannot follow, so the import types as `any`; this is the
 * surface as its README and sources (dist/tokenizers.mjs) define it.
 */
interface HfJsTokenizer {
  encode(text: string, options?: { text_pair?: string | null; add_special_tokens?: boolean }): { ids: number[]; tokens: string[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  get_added_tokens_decoder(): Map<number, { content: string; special: boolean }>;
}
const HfJsTokenizer = HfJsTokenizerUntyped as unknown as new (tokenizerJson: object, tokenizerConfig: object) => HfJsTokenizer;

// The query/answer separator (`ans`). Our puzzle vocabulary has a special `<ans>` token; a general Hugging
// Face tokenizer (LLaMA's SentencePiece BPE, GPT-2's byte-level BPE) has none, and there the separator is
// plain text: a newline. `ans` is resolved, in order, as
//   1. options.answerToken: a vocabulary entry (e.g. '<0x0A>', 'Ċ', '<|reserved_special_token_0|>');
//   2. the entry '<ans>' when the vocabulary has it (every tokenizer.json PuzzleTokenizer writes);
//   3. the single token a newline encodes to after other text (LLaMA: '<0x0A>' = 13; GPT-2: 'Ċ' = 198),
//      so that `<bos> prompt <ans>` is exactly the ids of the plain text "prompt\n";
// and `answerSeparator` holds the text it stands for ('<ans>' or '\n'). Without any of these, loading fails
// and says which option to pass.
//
// bos / eos / pad come from tokenizer_config.json (or special_tokens_map.json) when they name them, else
// from the usual names (<s>, <bos>, <|begin_of_text|> / </s>, <eos>, <|end_of_text|>, <|endoftext|>); pad
// falls back to eos, as transformers users usually set it for LLaMA.

export interface HfTokenizerOptions {
  /** The vocabulary entry that separates the query from the answer (see above). */
  answerToken?: string;
  /** Override the special tokens by their text. */
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  /** Let encode() map text outside the vocabulary to the unknown token instead of throwing (default false). */
  allowUnknown?: boolean;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A special token as tokenizer_config.json spells it: a string, or an AddedToken object with `content`. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

function readJson(path: string): Json {
  const json = readJsonFile(path);
  if (!isObject(json)) throw new Error(`${path}: must be a JSON object`);
  return json;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly pad: number;
  readonly bos: number;
  readonly eos: number;
  readonly ans: number;
  /** The unknown token's id, when the model has one. */
  readonly unk: number | null;
  /** The text `ans` stands for: '<ans>' for puzzle vocabularies, '\n' where a newline separates. */
  readonly answerSeparator: string;
  /** The files as read, for writing them back unchanged beside a model. */
  readonly tokenizerJson: Json;
  readonly tokenizerConfig: Json;
  readonly specialTokensMap: Json | null;
  private readonly hf: HfJsTokenizer;
  private readonly where: string;
  private readonly allowUnknown: boolean;
  private readonly specialIds: Set<number>;
  private readonly texts = new Map<number, string>();
  private readonly unkText: string | null;

  /** Loads tokenizer.json (a file, or a folder holding it and optionally tokenizer_config.json). */
  static fromFiles(path: string, options: HfTokenizerOptions = {}): HfTokenizer {
    const isDir = existsSync(path) && statSync(path).isDirectory();
    const dir = isDir ? path : join(path, '..');
    const jsonPath = isDir ? join(path, 'tokenizer.json') : path;
    if (!existsSync(jsonPath)) {
      const hint = isDir && existsSync(join(path, 'tokenizer.model'))
        ? ' (only a SentencePiece tokenizer.model is there; convert it to tokenizer.json with transformers first)'
        : '';
      throw new Error(`${jsonPath}: no such file${hint}`);
    }
    const configPath = join(dir, 'tokenizer_config.json');
    const mapPath = join(dir, 'special_tokens_map.json');
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const map = existsSync(mapPath) ? readJson(mapPath) : null;
    return new HfTokenizer(readJson(jsonPath), config, map, options, jsonPath);
  }

  /** From the parsed files; `where` names them in errors. */
  static fromJson(
    tokenizerJson: object,
    tokenizerConfig: object = {},
    options: HfTokenizerOptions = {},
    where = 'tokenizer.json',
  ): HfTokenizer {
    return new HfTokenizer(tokenizerJson as Json, tokenizerConfig as Json, null, options, where);
  }

  private constructor(tokenizerJson: Json, tokenizerConfig: Json, specialTokensMap: Json | null, options: HfTokenizerOptions, where: string) {
    this.where = where;
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
      throw new Error(`${where}: not a tokenizer.json (no "model" object)`);
    }
    const ownVocab = (tokenizerJson.model as Json).vocab;
    if ((Array.isArray(ownVocab) && ownVocab.length === 0) || (isObject(ownVocab) && Object.keys(ownVocab).length === 0)) {
      throw new Error(`${where}: model.vocab is empty (only added tokens): every character would become one id, or none`);
    }
    this.tokenizerJson = tokenizerJson;
    this.tokenizerConfig = tokenizerConfig;
    this.specialTokensMap = specialTokensMap;
    this.allowUnknown = options.allowUnknown ?? false;
    // The library's constructor wants the optional sections present (null when absent).
    const full: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tokenizerJson };
    // Special-token names go to the library too (its Legacy/WordLevel model reads unk from here).
    const named: Json = { ...(specialTokensMap ?? {}), ...tokenizerConfig };
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const c = tokenContent(named[key]);
      if (c !== null) named[key] = c;
    }
    try {
      this.hf = new HfJsTokenizer(full, named);
    } catch (err) {
      throw new Error(`${where}: @huggingface/tokenizers cannot load it: ${(err as Error).message}`);
    }
    let max = -1;
    for (const id of this.hf.get_vocab(true).values()) max = Math.max(max, id);
    if (max < 0) throw new Error(`${where}: the vocabulary is empty`);
    this.vocabSize = max + 1;
    this.specialIds = new Set([...this.hf.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));

    const idOf = (text: string | null): number | null => (text === null ? null : this.hf.token_to_id(text) ?? null);
    const find = (key: 'bos_token' | 'eos_token' | 'pad_token', given: string | undefined, usual: string[]): number | null => {
      if (given !== undefined) {
        const id = idOf(given);
        if (id === null) throw new Error(`${where}: option ${key.replace('_token', 'Token')} ${JSON.stringify(given)} is not in the vocabulary`);
        return id;
      }
      const named = tokenContent(tokenizerConfig[key]) ?? tokenContent(specialTokensMap?.[key]);
      if (named !== null) {
        const id = idOf(named);
        if (id === null) throw new Error(`${where}: ${key} ${JSON.stringify(named)} (from tokenizer_config.json) is not in the vocabulary`);
        return id;
      }
      for (const u of usual) {
        const id = idOf(u);
        if (id !== null) return id;
      }
      return null;
    };
    const bos = find('bos_token', options.bosToken, ['<s>', '<bos>', '<|begin_of_text|>', '<|endoftext|>']);
    const eos = find('eos_token', options.eosToken, ['</s>', '<eos>', '<|end_of_text|>', '<|endoftext|>', '<|eot_id|>']);
    if (bos === null) throw new Error(`${where}: no beginning-of-sequence token: set bos_token in tokenizer_config.json or pass bosToken`);
    if (eos === null) throw new Error(`${where}: no end-of-sequence token: set eos_token in tokenizer_config.json or pass eosToken`);
    this.bos = bos;
    this.eos = eos;
    this.pad = find('pad_token', options.padToken, ['<pad>', '[PAD]']) ?? eos;

    const model = tokenizerJson.model as Json;
    this.unkText = tokenContent(model.unk_token) ?? tokenContent(tokenizerConfig.unk_token) ?? tokenContent(specialTokensMap?.unk_token);
    this.unk = idOf(this.unkText);

    if (options.answerToken !== undefined) {
      const id = idOf(options.answerToken);
      if (id === null) throw new Error(`${where}: option answerToken ${JSON.stringify(options.answerToken)} is not in the vocabulary`);
      this.ans = id;
      this.answerSeparator = this.tokenText(id);
    } else if (idOf('<ans>') !== null) {
      this.ans = idOf('<ans>')!;
      this.answerSeparator = '<ans>';
    } else {
      const newline = this.newlineToken();
      if (newline === null) {
        throw new Error(
          `${where}: no '<ans>' token, and a newline does not encode to one token after text; ` +
            'pass answerToken: the vocabulary entry that separates the query from the answer',
        );
      }
      this.ans = newline;
      this.answerSeparator = '\n';
    }
  }

  /** The one id "\n" adds after text, if it adds exactly one. */
  private newlineToken(): number | null {
    for (const probe of ['0', 'a', '1 + 2']) {
      let before: number[];
      let after: number[];
      try {
        before = this.hf.encode(probe, { add_special_tokens: false }).ids;
        after = this.hf.encode(`${probe}\n`, { add_special_tokens: false }).ids;
      } catch {
        continue;
      }
      if (after.length === before.length + 1 && before.every((id, i) => after[i] === id)) {
        const id = after[after.length - 1];
        if (id !== this.unk) return id;
      }
    }
    return null;
  }

  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`tokenizer: encode() needs a string, got ${typeof text}`);
    if (text.length === 0) return [];
    const { ids, tokens } = this.hf.encode(text, { add_special_tokens: false });
    const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= this.vocabSize);
    if (bad >= 0 || (ids.length === 0 && text.trim() !== '')) {
      throw new RangeError(`tokenizer ${this.where}: ${JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)} ${ids.length === 0 ? 'encodes to no token at all' : `gives token ${String(ids[bad])} (piece ${bad})`}: the vocabulary cannot represent it`);
    }
    if (!this.allowUnknown && this.unk !== null) {
      const unknown = ids.filter((id) => id === this.unk).length;
      const literal = this.unkText ? text.split(this.unkText).length - 1 : 0;
      if (unknown > literal) {
        // Some models report the unknown piece itself, others only '<unk>': find the first character that
        // encodes to the unknown token on its own, to name it.
        const i = ids.findIndex((id, k) => id === this.unk && tokens[k] !== this.unkText);
        let culprit: string | undefined = i >= 0 ? tokens[i] : undefined;
        if (culprit === undefined) {
          for (const ch of text) {
            if (this.hf.encode(ch, { add_special_tokens: false }).ids.includes(this.unk)) {
              culprit = ch;
              break;
            }
          }
        }
        const shown = JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text);
        throw new RangeError(
          `tokenizer ${this.where}: ${culprit !== undefined ? JSON.stringify(culprit) : 'a piece'} in ${shown} is not in the vocabulary: ` +
            `it would encode as the unknown token ${JSON.stringify(this.unkText)}`,
        );
      }
    }
    return ids;
  }

  decode(ids: readonly number[], keepSpecial = false): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`tokenizer: token id ${id} is outside [0, ${this.vocabSize})`);
    }
    if (ids.length === 0) return '';
    const kept = keepSpecial ? [...ids] : ids.filter((id) => !this.specialIds.has(id));
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { skip_special_tokens: !keepSpecial, clean_up_tokenization_spaces: false });
  }

  /**
   * The text of one token: a special token's own text; otherwise what the token adds after other text
   * (so SentencePiece's '▁3' is ' 3' and byte-level 'Ġ3' is ' 3', not the vocabulary spelling).
   */
  tokenText(id: number): string {
    const cached = this.texts.get(id);
    if (cached !== undefined) return cached;
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return `<${id}>`;
    let text: string;
    if (this.specialIds.has(id)) {
      text = this.hf.id_to_token(id) ?? `<${id}>`;
    } else {
      const probe = this.hf.encode('0', { add_special_tokens: false }).ids.filter((p) => !this.specialIds.has(p));
      const base = probe.length > 0 ? this.hf.decode(probe, { clean_up_tokenization_spaces: false }) : '';
      const both = probe.length > 0 ? this.hf.decode([...probe, id], { clean_up_tokenization_spaces: false }) : '';
      text = probe.length > 0 && both.startsWith(base) ? both.slice(base.length) : this.hf.decode([id], { clean_up_tokenization_spaces: false });
    }
    this.texts.set(id, text);
    return text;
  }

  /** The vocabulary entry of an id (its spelling in tokenizer.json), or undefined. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** The library's own encoding, special tokens and templates included (for checks against transformers). */
  encodeWithTemplate(text: string, pair?: string): number[] {
    return this.hf.encode(text, { text_pair: pair ?? null, add_special_tokens: true }).ids;
  }
}

/** The tokenizer files a model folder carries (file name -> JSON), for PuzzleTokenizer or a loaded HfTokenizer. */
export function tokenizerFiles(tokenizer: PuzzleTokenizer | HfTokenizer): Record<string, object> {
  if (tokenizer instanceof PuzzleTokenizer) {
    const { tokenizerConfig, specialTokensMap } = tokenizer.toHuggingFaceConfig();
    return {
      'tokenizer.json': tokenizer.toHuggingFaceJson(),
      'tokenizer_config.json': tokenizerConfig,
      'special_tokens_map.json': specialTokensMap,
    };
  }
  if (tokenizer instanceof HfTokenizer) {
    const files: Record<string, object> = { 'tokenizer.json': tokenizer.tokenizerJson };
    if (Object.keys(tokenizer.tokenizerConfig).length > 0) files['tokenizer_config.json'] = tokenizer.tokenizerConfig;
    if (tokenizer.specialTokensMap) files['special_tokens_map.json'] = tokenizer.specialTokensMap;
    return files;
  }
  throw new TypeError(`tokenizerFiles(): expected a PuzzleTokenizer or HfTokenizer, got ${String(tokenizer)}`);
}

/** Loads a PuzzleTokenizer's tokenizer.json through @huggingface/tokenizers (what a model folder we wrote holds). */
export function puzzleTokenizerAsHf(tokenizer = new PuzzleTokenizer()): HfTokenizer {
  const files = tokenizerFiles(tokenizer);
  return HfTokenizer.fromJson(files['tokenizer.json'], files['tokenizer_config.json'], {}, 'PuzzleTokenizer.toHuggingFaceJson()');
}
