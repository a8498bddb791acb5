// The LLaMA model (Hugging Face LlamaForCausalLM semantics, optional PEFT LoRA) over the Backend interface:
// parameter/gradient/optimizer memory in a few large allocations with a name -> (offset, shape) table,
// forward, backward, AdamW and KV-cache decoding. Written once; any Backend runs it.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend.h"
#include "gradient_sink.h"
#include "lora_linear.h"

namespace pl {

struct LlamaConfig {
  int hiddenSize = 0;          // C
  int intermediateSize = 0;    // F
  int numHiddenLayers = 0;     // L
  int numAttentionHeads = 0;   // H
  int numKeyValueHeads = 0;    // Hkv
  int vocabSize = 0;           // V
  int maxPositionEmbeddings = 0;
  float rmsNormEps = 1e-6f;
  float ropeTheta = 10000.0f;
  // Hugging Face's linear RoPE scaling (rope_scaling {type: linear, factor}): inverse frequencies divided by
  // the factor. 1: plain RoPE. A huge factor (1e9) leaves no rotation within the context: no positional
  // encoding at all (NoPE), in a config.json transformers loads unchanged.
  float ropeLinearFactor = 1.0f;
  bool tieWordEmbeddings = false;
  float initializerRange = 0.02f;
  int headDim() const { return hiddenSize / numAttentionHeads; }
  // Throws pl::Error naming the first bad field.
  void validate() const;
};

// The linear modules of a layer, in PEFT target names.
enum Module { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kNumModules };
const char* moduleName(int m);

struct LoraConfig {
  int r = 0;  // 0: no LoRA (full training)
  float alpha = 0.0f;
  float dropout = 0.0f;
  bool targets[kNumModules] = {};
  bool enabled() const { return r > 0; }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  size_t numel = 0;
  size_t offset = 0;  // in floats, into the parameter buffer (and, when trainable, the gradient/m/v buffers);
                      // for a bf16 tensor, in bf16 elements into the frozen buffer
  bool trainable = false;
  bool bf16 = false;  // a frozen base weight stored as bf16 (LlamaModel's frozenBf16)
};

struct StepOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weightDecay = 0.0f;
  float maxGradNorm = 0.0f;  // <= 0: no clipping
  float gradScale = 1.0f;    // multiplies the gradients first (averaging accumulated micro-batches)
};

struct StepResult {
  double gradNorm = 0.0;  // of the gradients times gradScale, before clipping
  float clipScale = 1.0f;
  int step = 0;
  bool skipped = false;  // the gradient was not finite: nothing changed
};

// How forwardBackward() runs, beyond the batch itself.
struct BackwardOptions {
  bool accumulate = false;   // add to the gradients instead of overwriting them
  uint64_t dropoutSeed = 0;  // LoRA dropout's masks
  // The batch is rows [rowOffset, rowOffset + B*T) of a larger batch padded alike (data parallelism: one
  // rank's share of the global batch); LoRA dropout draws those rows' masks of the larger batch.
  int64_t rowOffset = 0;
  // > 0: the loss and its gradient are this batch's summed cross-entropy over lossTokens (the global
  // batch's count of targets), so that the ranks' losses and gradients add up to the global batch's;
  // otherwise over this batch's own count.
  double lossTokens = 0.0;
  GradientSink* sink = nullptr;  // told as the layers' gradients become final (data parallelism)
};

// The model's arrays, for collectives over them (data parallelism's broadcast at start).
struct ModelBuffers {
  float* params = nullptr;
  size_t paramCount = 0;  // floats
  uint16_t* frozen = nullptr;  // the bf16 frozen weights
  size_t frozenCount = 0;
  float* grads = nullptr;  // trainable prefix of params: grads, m, v each trainableCount floats
  float* adamM = nullptr;
  float* adamV = nullptr;
  size_t trainableCount = 0;
};

struct GenerateOptions {
  int maxNewTokens = 16;
  float temperature = 0.0f;  // 0: greedy
  int topK = 0;              // 0: all
  uint64_t seed = 0;
  std::vector<int32_t> stopTokens;
};

// RoPE tables [P, D/2] as Hugging Face computes them (float32 inv_freq, divided by the linear scaling factor,
// and angles).
void ropeTables(float theta, int D, int P, std::vector<float>& cosOut, std::vector<float>& sinOut,
                float linearFactor = 1.0f);

// Called from the worker between units of work (layers, tokens); may be empty.
using ProgressFn = std::function<void(int done, int total)>;

class LlamaModel {
 public:
  // initBase = false leaves the base weights at zero (they are about to be loaded); LoRA tensors are
  // initialized either way. frozenBf16 (LoRA only) stores the frozen linear weights (the seven projections
  // of every layer and an untied lm_head) in bf16: half their memory, every product as gemm() computes it
  // on those weights widened; setParameter() rounds them to nearest even.
  LlamaModel(Backend& backend, const LlamaConfig& config, const LoraConfig& lora, uint64_t seed, bool initBase = true,
             bool frozenBf16 = false);
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const LlamaConfig& config() const { return config_; }
  const LoraConfig& lora() const { return lora_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The tensor by name (lm_head.weight resolves to the embedding when tied); null when unknown.
  const TensorInfo* find(const std::string& name) const;
  // Every parameter, in both buffers (the fp32 one and the frozen bf16 one).
  size_t parameterCount() const;
  size_t trainableCount() const { return trainableCount_; }
  size_t memoryBytes() const;
  // Gradient checkpointing: training keeps only each layer's input (the residual stream) and recomputes
  // the layer's forward pass, bit for bit, just before its backward pass: about one more forward pass of
  // compute for one layer's activations instead of every layer's. Takes effect at the next step.
  void setGradientCheckpointing(bool on) {
    if (on != checkpointing_) actN_ = 0;  // the next call lays the activations out again
    checkpointing_ = on;
  }
  bool gradientCheckpointing() const { return checkpointing_; }
  // The bytes of activation buffers a training step (train) or a forward pass over N rows allocates, with
  // logits for logitRows rows, with or without gradient checkpointing; the model's own arrays
  // (memoryBytes) come on top.
  size_t activationBytes(int N, bool train, int logitRows, bool checkpointing) const;
  int stepCount() const { return step_; }
  void setStepCount(int step) { step_ = step; }

  void getParameter(const TensorInfo& t, float* host);
  void setParameter(const TensorInfo& t, const float* host);
  void getGradient(const TensorInfo& t, float* host);
  // which: 0 = exp_avg (m), 1 = exp_avg_sq (v)
  void getOptimizerState(const TensorInfo& t, int which, float* host);
  void setOptimizerState(const TensorInfo& t, int which, const float* host);

  // logitsHost[B*T*V]. Evaluation mode (no dropout).
  void forward(const int32_t* tokens, int B, int T, float* logitsHost, const std::atomic<bool>* abort);
  // Mean cross-entropy over targets != -100 (see BackwardOptions::lossTokens); gradients of the trainable
  // tensors are overwritten (or added to, when accumulate). Training mode: LoRA dropout uses dropoutSeed.
  // Returns the loss; *counted receives the number of targets that counted.
  double forwardBackward(const int32_t* tokens, const int32_t* targets, int B, int T, const BackwardOptions& options,
                         const std::atomic<bool>* abort, const ProgressFn& progress, int64_t* counted);
  ModelBuffers buffers() const;
  // The sum of squares of every parameter (both buffers), deterministic: equal on ranks that hold equal weights.
  double parameterSumSquares();
  StepResult step(const StepOptions& options);
  void zeroGradients();

  // Continues each prompt; returns the new tokens of each (stop tokens excluded).
  std::vector<std::vector<int32_t>> generate(const std::vector<std::vector<int32_t>>& prompts,
                                             const GenerateOptions& options, const std::atomic<bool>* abort,
                                             const ProgressFn& progress);

  // A step-by-step decode session (constrained decoding picks each token itself): the prompts [B, P]
  // go through once, then one token per row per call; each returns the rows' next-token logits [B, V].
  void decodeStart(const int32_t* tokens, int B, int P, int maxNewTokens, float* logitsHost);
  void decodeNext(const int32_t* tokens, float* logitsHost);
  // Beam search: row b of the session continues what row rows[b] held (its KV cache is copied over); rows
  // holds B indices in [0, B), repeats allowed.
  void decodeReorder(const int32_t* rows);
  void decodeEnd() { session_ = {}; }
  bool decoding() const { return session_.B > 0; }
  int decodeBatch() const { return session_.B; }
  int decodeRemaining() const { return session_.capacity - session_.pos; }

 private:
  struct Session {
    int B = 0, pos = 0, capacity = 0;
  } session_;
  void releaseAll();
  void buildTable();
  void initParameters(uint64_t seed, bool initBase);
  void ensureActivations(int N, bool train, int logitRows);
  void ensureCache(int B, int Tcap);
  LinearWeights linearWeights(int layer, int module);
  // logits[rows, V] = x[rows, C] lm_head^T, whichever buffer holds lm_head.
  void headForward(float* logits, const float* x, int rows);
  void linearForward(float* y, const float* x, int M, int layer, int module, bool train, uint64_t seed);
  void linearBackward(float* dx, float dxBeta, const float* dy, const float* x, int M, int layer, int module,
                      uint64_t seed);
  // Runs the layers over acts for N = B*T rows; training keeps per-layer activations.
  void forwardLayers(int B, int T, bool train, uint64_t seed, const std::atomic<bool>* abort);
  // Layer l's forward pass from resid[l]; writes resid[l+1] unless recomputing (checkpointing).
  void layerForward(int l, int B, int T, bool train, uint64_t seed, bool recompute);
  void decodeStep(const int32_t* tokensHost, int B, int Tq, int pos0, float* logitsHost);

  Backend& be_;
  LlamaConfig config_;
  LoraConfig lora_;
  std::vector<TensorInfo> tensors_;
  size_t paramCount_ = 0, trainableCount_ = 0;
  float* params_ = nullptr;
  uint16_t* frozen_ = nullptr;  // bf16 base weights (frozenBf16)
  size_t frozenCount_ = 0;      // its length in bf16 elements
  bool frozenBf16_ = false;
  float* grads_ = nullptr;
  float* adamM_ = nullptr;
  float* adamV_ = nullptr;
  float* ropeCos_ = nullptr;
  float* ropeSin_ = nullptr;
  int step_ = 0;
  uint64_t dropoutRow_ = 0;  // the current forwardBackward()'s BackwardOptions::rowOffset

  // Indices into tensors_ per layer and module (-1: absent).
  // Where layer l's trainable gradients start in the gradient buffer ([L]), and those after the layers
  // (the final norm, an untied lm_head): the backward pass's GradientSink::ready() points.
  std::vector<size_t> gradStart_;
  size_t gradStartTail_ = 0;
  std::vector<int> idxNormIn_, idxNormPost_;
  std::vector<int> idxW_, idxA_, idxB_;  // [layer * kNumModules + module]
  int idxEmbed_ = -1, idxNorm_ = -1, idxHead_ = -1;

  // Activations (one allocation, carved up), for a capacity of N rows.
  float* actBuf_ = nullptr;
  size_t actFloats_ = 0;
  int actN_ = 0;
  int actLogitRows_ = 0;  // rows of logits (and final-norm output) the buffers hold
  bool actTrain_ = false;  // the buffers hold every layer's activations (training), not one layer's
  bool checkpointing_ = false;
  struct Acts {
    std::vector<float*> resid;  // [L+1] x [N,C]
    std::vector<float*> ln1r, q, k, v, att, lse, mid, ln2r, gate, up;  // [L]
    float *ln, *act;  // RMSNorm output [N,C] and SwiGLU product [N,F]: one of each, recomputed in backward
    std::vector<float*> loraH;  // [L*kNumModules]: A's output [N,r]
    float* xdrop;               // LoRA dropout's output [N,in] (training with dropout), redrawn in backward
    float *lnf, *lnfr, *logits, *losses;
    float *dres, *dtmp, *dln, *dq, *dk, *dv, *datt, *dgate, *dup, *dact, *dh, *dxl;
    float* mlpGrads;                 // the region dgate/dup/dact and datt/dq/dk/dv share
    float *tokenSlot, *targetSlot;   // where tokens and targets (int32) go
    int32_t *tokens, *targets;
  } a_{};
  using ActPlan = std::vector<std::pair<float**, size_t>>;
  void planActivations(Acts& a, int N, bool train, int logitRows, bool checkpointing, ActPlan& plan) const;

  // KV cache for decoding.
  float* cacheBuf_ = nullptr;
  int cacheB_ = 0, cacheT_ = 0;
  std::vector<float*> kCache_, vCache_;
  // decodeReorder()'s staging rows (one layer's K or V of the rows that change), grown on demand.
  float* reorderBuf_ = nullptr;
  size_t reorderFloats_ = 0;
};

}  // namespace pl
