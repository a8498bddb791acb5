// The tokenizer of from-scratch puzzle models: one token per digit and per symbol of the format, plus
// the special tokens the SFT format needs. Saved as a Hugging Face tokenizer.json (WordLevel over single
// characters) so that `transformers` loads it unchanged.

/** Special tokens, in id order. `<ans>` separates the query from the answer. */
export const SPECIAL_TOKENS = ['<pad>', '<bos>', '<eos>', '<ans>', '<unk>'] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

/** Every character the prompt and response formats use. */
export const FORMAT_CHARACTERS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '+', '-', '*', '/', '=', ',', ' ', ':'] as const;

export interface Tokenizer {
  readonly vocabSize: number;
  readonly pad: number;
  readonly bos: number;
  readonly eos: number;
  /** The token that ends the query and starts the answer. */
  readonly ans: number;
  /** Token ids of a text; throws naming the first character it cannot encode. */
  encode(text: string): number[];
  /** The text of token ids; special tokens are dropped unless `keepSpecial`. */
  decode(ids: readonly number[], keepSpecial?: boolean): string;
  /** The text of one token (special tokens as their names). */
  tokenText(id: number): string;
}

export class PuzzleTokenizer implements Tokenizer {
  readonly vocab: readonly string[] = [...SPECIAL_TOKENS, ...FORMAT_CHARACTERS];
  private readonly ids = new Map<string, number>(this.vocab.map((t, i) => [t, i]));
  readonly vocabSize = this.vocab.length;
  readonly pad = 0;
  readonly bos = 1;
  readonly eos = 2;
  readonly ans = 3;
  readonly unk = 4;

  encode(text: string): number[] {
    const out = new Array<number>(text.length);
    for (let i = 0; i < text.length; i++) {
      const id = this.ids.get(text[i]);
      if (id === undefined) {
        throw new RangeError(`tokenizer: character ${JSON.stringify(text[i])} at offset ${i} is not in the puzzle vocabulary (digits and "+-*/=,: ")`);
      }
      out[i] = id;
    }
    return out;
  }

  decode(ids: readonly number[], keepSpecial = false): string {
    let text = '';
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`tokenizer: token id ${id} is outside [0, ${this.vocabSize})`);
      if (id < SPECIAL_TOKENS.length && !keepSpecial) continue;
      text += this.vocab[id];
    }
    return text;
  }

  tokenText(id: number): string {
    return this.vocab[id] ?? `<${id}>`;
  }

  /** The Hugging Face tokenizer.json for this vocabulary. */
  toHuggingFaceJson(): object {
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: SPECIAL_TOKENS.map((content, id) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      // every character is its own word
      pre_tokenizer: { type: 'Split', pattern: { Regex: '.' }, behavior: 'Isolated', invert: false },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<bos>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: '<bos>', type_id: 0 } },
          { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: '<ans>', type_id: 0 } },
          { Sequence: { id: 'B', type_id: 0 } },
        ],
        special_tokens: {
          '<bos>': { id: '<bos>', ids: [this.bos], tokens: ['<bos>'] },
          '<ans>': { id: '<ans>', ids: [this.ans], tokens: ['<ans>'] },
        },
      },
      decoder: { type: 'Fuse' },
      model: { type: 'WordLevel', vocab: Object.fromEntries(this.vocab.map((t, i) => [t, i])), unk_token: '<unk>' },
    };
  }

  /** tokenizer_config.json and special_tokens_map.json contents for `transformers`. */
  toHuggingFaceConfig(): { tokenizerConfig: object; specialTokensMap: object } {
    const specialTokensMap = { bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', unk_token: '<unk>', additional_special_tokens: ['<ans>'] };
    return {
      tokenizerConfig: { tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: 4096, padding_side: 'right', clean_up_tokenization_spaces: false, ...specialTokensMap },
      specialTokensMap,
    };
  }
}
