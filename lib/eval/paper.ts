// The paper's Table 2 (zero-shot pass@1 of LoRA-tuned open-llama-3B by training-set size), to print beside ours.

export const PAPER_TRAINING_SIZES = ['1M', '10M', '100M'] as const;

/** pass@1 by set id, then by N (or 'total'), then by training-set size. */
export const PAPER_TABLE2: Record<string, Record<string, [number, number, number]>> = {
  id: { '5': [0.224, 0.428, 0.471], '6': [0.208, 0.363, 0.432], '7': [0.205, 0.36, 0.425], total: [0.216, 0.383, 0.443] },
  'ood-num-100': { '5': [0.163, 0.239, 0.364], '6': [0.137, 0.199, 0.331], '7': [0.126, 0.186, 0.315], total: [0.141, 0.205, 0.326] },
  'ood-num-1000': { '5': [0.131, 0.181, 0.229], '6': [0.03, 0.051, 0.063], '7': [0.111, 0.163, 0.22], total: [0.091, 0.132, 0.17] },
  'ood-form': { '8': [0.169, 0.231, 0.352], total: [0.169, 0.231, 0.352] },
};
