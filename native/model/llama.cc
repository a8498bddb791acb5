// LlamaModel: the parameter table, initialisation, forward/backward over the Backend ops, AdamW with
// global-norm clipping, and KV-cache generation with host-side sampling.
#include "llama.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>

#include "../core/bf16.h"
#include "../core/error.h"
#include "../core/rng.h"
#include "lora_linear.h"

namespace pl {

namespace {
const char* kModuleNames[kNumModules] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
const char* kModuleParent[kNumModules] = {"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

void checkAbort(const std::atomic<bool>* abort) {
  if (abort && abort->load(std::memory_order_relaxed)) throw Aborted();
}
}  // namespace

void ropeTables(float theta, int D, int P, std::vector<float>& cosT, std::vector<float>& sinT, float linearFactor) {
  const int half = D / 2;
  cosT.assign(static_cast<size_t>(P) * half, 0.0f);
  sinT.assign(cosT.size(), 0.0f);
  for (int i = 0; i < half; ++i) {
    const float invFreq = 1.0f / static_cast<float>(std::pow(static_cast<double>(theta),
                                                             static_cast<double>(static_cast<float>(2 * i) / static_cast<float>(D)))) /
                          linearFactor;
    for (int p = 0; p < P; ++p) {
      const float angle = static_cast<float>(p) * invFreq;
      cosT[static_cast<size_t>(p) * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sinT[static_cast<size_t>(p) * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

const char* moduleName(int m) { return kModuleNames[m]; }

void LlamaConfig::validate() const {
  auto positive = [](const char* field, int v) {
    if (v <= 0) throw Error(std::string("config.") + field + " must be a positive integer, got " + std::to_string(v));
  };
  positive("hidden_size", hiddenSize);
  positive("intermediate_size", intermediateSize);
  positive("num_hidden_layers", numHiddenLayers);
  positive("num_attention_heads", numAttentionHeads);
  positive("num_key_value_heads", numKeyValueHeads);
  positive("vocab_size", vocabSize);
  positive("max_position_embeddings", maxPositionEmbeddings);
  if (hiddenSize % numAttentionHeads != 0)
    throw Error("config.hidden_size (" + std::to_string(hiddenSize) + ") must be divisible by num_attention_heads (" +
                std::to_string(numAttentionHeads) + ")");
  if (numAttentionHeads % numKeyValueHeads != 0)
    throw Error("config.num_attention_heads (" + std::to_string(numAttentionHeads) +
                ") must be divisible by num_key_value_heads (" + std::to_string(numKeyValueHeads) + ")");
  const int d = headDim();
  if (d % 2 != 0 || d > 256)
    throw Error("config: head dim hidden_size/num_attention_heads must be even and at most 256, got " +
                std::to_string(d));
  if (!(rmsNormEps > 0.0f) || !std::isfinite(rmsNormEps))
    throw Error("config.rms_norm_eps must be a positive number, got " + std::to_string(rmsNormEps));
  if (!(ropeTheta > 0.0f) || !std::isfinite(ropeTheta))
    throw Error("config.rope_theta must be a positive number, got " + std::to_string(ropeTheta));
  if (!(ropeLinearFactor > 0.0f) || !std::isfinite(ropeLinearFactor))
    throw Error("config.rope_scaling.factor must be a positive number, got " + std::to_string(ropeLinearFactor));
}

LlamaModel::LlamaModel(Backend& backend, const LlamaConfig& config, const LoraConfig& lora, uint64_t seed, bool initBase,
                       bool frozenBf16)
    : be_(backend), config_(config), lora_(lora), frozenBf16_(frozenBf16) {
  config_.validate();
  if (lora_.enabled()) {
    if (!(lora_.dropout >= 0.0f && lora_.dropout < 1.0f))
      throw Error("lora.dropout must be in [0, 1), got " + std::to_string(lora_.dropout));
  }
  if (frozenBf16_ && !lora_.enabled())
    throw Error("frozen weights in bf16 need LoRA: full training updates every weight");
  buildTable();
  try {
    params_ = static_cast<float*>(be_.allocate(paramCount_ * sizeof(float)));
    if (frozenCount_ > 0) frozen_ = static_cast<uint16_t*>(be_.allocate(frozenCount_ * sizeof(uint16_t)));
    if (trainableCount_ > 0) {
      grads_ = static_cast<float*>(be_.allocate(trainableCount_ * sizeof(float)));
      adamM_ = static_cast<float*>(be_.allocate(trainableCount_ * sizeof(float)));
      adamV_ = static_cast<float*>(be_.allocate(trainableCount_ * sizeof(float)));
    }
    const int D = config_.headDim(), P = config_.maxPositionEmbeddings;
    std::vector<float> cosT, sinT;
    ropeTables(config_.ropeTheta, D, P, cosT, sinT, config_.ropeLinearFactor);
    ropeCos_ = static_cast<float*>(be_.allocate(cosT.size() * sizeof(float)));
    ropeSin_ = static_cast<float*>(be_.allocate(sinT.size() * sizeof(float)));
    be_.upload(ropeCos_, cosT.data(), cosT.size() * sizeof(float));
    be_.upload(ropeSin_, sinT.data(), sinT.size() * sizeof(float));
    initParameters(seed, initBase);
  } catch (...) {
    releaseAll();
    throw;
  }
}

LlamaModel::~LlamaModel() { releaseAll(); }

void LlamaModel::releaseAll() {
  if (frozen_) be_.release(frozen_);
  frozen_ = nullptr;
  for (float** p : {&params_, &grads_, &adamM_, &adamV_, &ropeCos_, &ropeSin_, &actBuf_, &cacheBuf_, &reorderBuf_}) {
    if (*p) be_.release(*p);
    *p = nullptr;
  }
  reorderFloats_ = 0;
}

size_t LlamaModel::memoryBytes() const {
  const int D = config_.headDim(), half = D / 2;
  return (paramCount_ + 3 * trainableCount_ + 2 * static_cast<size_t>(config_.maxPositionEmbeddings) * half +
          actFloats_) *
             sizeof(float) +
         frozenCount_ * sizeof(uint16_t) +
         (cacheB_ > 0 ? 2 * static_cast<size_t>(config_.numHiddenLayers) * cacheB_ * cacheT_ *
                            config_.numKeyValueHeads * D * sizeof(float)
                      : 0);
}

void LlamaModel::buildTable() {
  const LlamaConfig& c = config_;
  const int C = c.hiddenSize, F = c.intermediateSize, D = c.headDim();
  const int64_t qDim = static_cast<int64_t>(c.numAttentionHeads) * D, kvDim = static_cast<int64_t>(c.numKeyValueHeads) * D;
  const bool full = !lora_.enabled();
  struct Pending {
    std::string name;
    std::vector<int64_t> shape;
    bool trainable;
    int* slot;
  };
  std::vector<Pending> list;
  const int L = c.numHiddenLayers;
  idxNormIn_.assign(L, -1);
  idxNormPost_.assign(L, -1);
  idxW_.assign(static_cast<size_t>(L) * kNumModules, -1);
  idxA_.assign(idxW_.size(), -1);
  idxB_.assign(idxW_.size(), -1);
  list.push_back({"model.embed_tokens.weight", {c.vocabSize, C}, full, &idxEmbed_});
  for (int l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    list.push_back({p + "input_layernorm.weight", {C}, full, &idxNormIn_[l]});
    const int64_t outDims[kNumModules] = {qDim, kvDim, kvDim, C, F, F, C};
    const int64_t inDims[kNumModules] = {C, C, C, qDim, C, C, F};
    for (int m = 0; m < kNumModules; ++m) {
      const std::string mod = std::string(kModuleParent[m]) + "." + kModuleNames[m];
      list.push_back({p + mod + ".weight", {outDims[m], inDims[m]}, full, &idxW_[l * kNumModules + m]});
      if (m == kO) list.push_back({p + "post_attention_layernorm.weight", {C}, full, &idxNormPost_[l]});
      if (lora_.enabled() && lora_.targets[m]) {
        const std::string base = "base_model.model." + p + mod;
        list.push_back({base + ".lora_A.weight", {lora_.r, inDims[m]}, true, &idxA_[l * kNumModules + m]});
        list.push_back({base + ".lora_B.weight", {outDims[m], lora_.r}, true, &idxB_[l * kNumModules + m]});
      }
    }
  }
  list.push_back({"model.norm.weight", {C}, full, &idxNorm_});
  if (!c.tieWordEmbeddings) list.push_back({"lm_head.weight", {c.vocabSize, C}, full, &idxHead_});
  // Trainable tensors first, so gradients, m and v mirror one prefix of the parameter buffer.
  std::stable_partition(list.begin(), list.end(), [](const Pending& p) { return p.trainable; });
  size_t offset = 0;
  for (const Pending& p : list) {
    TensorInfo t;
    t.name = p.name;
    t.shape = p.shape;
    t.numel = 1;
    for (int64_t s : p.shape) t.numel *= static_cast<size_t>(s);
    t.trainable = p.trainable;
    // The frozen matrices the GEMMs read (projections, an untied lm_head) go to the bf16 buffer when asked.
    t.bf16 = frozenBf16_ && !p.trainable && p.shape.size() == 2 && p.slot != &idxEmbed_;
    if (t.bf16) {
      t.offset = frozenCount_;
      frozenCount_ += (t.numel + 31) / 32 * 32;  // 64-byte aligned tensors
    } else {
      t.offset = offset;
      offset += (t.numel + 15) / 16 * 16;  // 64-byte aligned tensors
    }
    if (p.trainable) trainableCount_ = offset;
    *p.slot = static_cast<int>(tensors_.size());
    tensors_.push_back(std::move(t));
  }
  paramCount_ = offset;
  if (c.tieWordEmbeddings) idxHead_ = idxEmbed_;
  // Trainable tensors lie in model order (embedding, layers, norm, head), so each layer's gradients are one
  // range and the backward pass finishes them from the buffer's end to its start.
  gradStart_.assign(L, trainableCount_);
  gradStartTail_ = trainableCount_;
  auto lower = [&](size_t& slot, int idx) {
    if (idx >= 0 && tensors_[idx].trainable && !tensors_[idx].bf16) slot = std::min(slot, tensors_[idx].offset);
  };
  for (int l = 0; l < L; ++l) {
    lower(gradStart_[l], idxNormIn_[l]);
    lower(gradStart_[l], idxNormPost_[l]);
    for (int m = 0; m < kNumModules; ++m) {
      lower(gradStart_[l], idxW_[l * kNumModules + m]);
      lower(gradStart_[l], idxA_[l * kNumModules + m]);
      lower(gradStart_[l], idxB_[l * kNumModules + m]);
    }
  }
  lower(gradStartTail_, idxNorm_);
  if (!c.tieWordEmbeddings) lower(gradStartTail_, idxHead_);
  for (int l = L - 1; l >= 0; --l) gradStart_[l] = std::min(gradStart_[l], l + 1 < L ? gradStart_[l + 1] : gradStartTail_);
}

const TensorInfo* LlamaModel::find(const std::string& name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return &t;
  if (name == "lm_head.weight" && config_.tieWordEmbeddings) return &tensors_[idxEmbed_];
  return nullptr;
}

void LlamaModel::initParameters(uint64_t seed, bool initBase) {
  std::vector<float> host;
  for (const TensorInfo& t : tensors_) {
    const bool isLoraA = t.name.find(".lora_A.") != std::string::npos;
    const bool isLoraB = t.name.find(".lora_B.") != std::string::npos;
    if (!initBase && !isLoraA && !isLoraB) continue;  // stays zero (allocate() zero-fills) until loaded
    host.assign(t.numel, 0.0f);
    Rng rng(mixSeed(seed, fnv1a(t.name)));
    const bool isNorm = t.shape.size() == 1;
    if (isNorm) {
      std::fill(host.begin(), host.end(), 1.0f);
    } else if (isLoraA) {
      // PEFT: kaiming_uniform_(a=sqrt(5)) => U(-1/sqrt(in), 1/sqrt(in))
      const double bound = 1.0 / std::sqrt(static_cast<double>(t.shape[1]));
      for (float& x : host) x = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
    } else if (isLoraB) {
      // zeros
    } else {
      for (float& x : host) x = static_cast<float>(rng.normal() * config_.initializerRange);
    }
    setParameter(t, host.data());
  }
}

size_t LlamaModel::parameterCount() const {
  size_t n = 0;
  for (const TensorInfo& t : tensors_) n += t.numel;
  return n;
}

void LlamaModel::getParameter(const TensorInfo& t, float* host) {
  if (!t.bf16) {
    be_.download(host, params_ + t.offset, t.numel * sizeof(float));
    return;
  }
  std::vector<uint16_t> half(t.numel);
  be_.download(half.data(), frozen_ + t.offset, t.numel * sizeof(uint16_t));
  for (size_t i = 0; i < t.numel; ++i) host[i] = fromBf16(half[i]);
}
void LlamaModel::setParameter(const TensorInfo& t, const float* host) {
  if (!t.bf16) {
    be_.upload(params_ + t.offset, host, t.numel * sizeof(float));
    return;
  }
  std::vector<uint16_t> half(t.numel);
  for (size_t i = 0; i < t.numel; ++i) half[i] = toBf16(host[i]);
  be_.upload(frozen_ + t.offset, half.data(), t.numel * sizeof(uint16_t));
}
void LlamaModel::getGradient(const TensorInfo& t, float* host) {
  if (!t.trainable) throw Error("getGradient(): '" + t.name + "' is frozen and has no gradient");
  be_.download(host, grads_ + t.offset, t.numel * sizeof(float));
}
void LlamaModel::getOptimizerState(const TensorInfo& t, int which, float* host) {
  if (!t.trainable) throw Error("getOptimizerState(): '" + t.name + "' is frozen and has no optimizer state");
  be_.download(host, (which == 0 ? adamM_ : adamV_) + t.offset, t.numel * sizeof(float));
}
void LlamaModel::setOptimizerState(const TensorInfo& t, int which, const float* host) {
  if (!t.trainable) throw Error("setOptimizerState(): '" + t.name + "' is frozen and has no optimizer state");
  be_.upload((which == 0 ? adamM_ : adamV_) + t.offset, host, t.numel * sizeof(float));
}

void LlamaModel::zeroGradients() {
  if (grads_) be_.zero(grads_, trainableCount_ * sizeof(float));
}

// ---- activations -------------------------------------------------------------------------------

namespace {
// Every activation buffer starts on a 64-byte boundary (vector loads on both backends).
size_t alignFloats(size_t floats) { return (floats + 15) / 16 * 16; }
}  // namespace

// The buffers a training step (or an inference pass) over N rows needs, as (where the pointer goes, floats)
// pairs. Training keeps what the backward pass reads, per layer: the residual stream, the RMSNorm scales,
// q/k/v (after RoPE), the attention output and its log-sum-exp, the mid-layer residual, and the MLP's gate
// and up projections. The RMSNorm outputs, the SwiGLU product and LoRA dropout's output are cheap to
// recompute from those (dropout from its seed) and are not kept: each has one buffer shared by all layers,
// which the backward pass fills again, bit for bit. With gradient checkpointing only the residual stream is
// kept per layer. Inference keeps one layer's worth of everything. Logits (and the final norm) are kept for
// logitRows rows: all N in training and forward(), the last position of each sequence when decoding.
void LlamaModel::planActivations(Acts& a, int N, bool train, int logitRows, bool checkpointing, ActPlan& plan) const {
  const LlamaConfig& c = config_;
  const size_t C = c.hiddenSize, F = c.intermediateSize, D = c.headDim(), L = c.numHiddenLayers;
  const size_t qDim = c.numAttentionHeads * D, kvDim = c.numKeyValueHeads * D, V = c.vocabSize;
  const size_t n = static_cast<size_t>(N);
  // Layers with their own activations (checkpointing keeps only the residual stream of every layer).
  const size_t kept = train && !checkpointing ? L : 1;
  a.resid.assign(L + 1, nullptr);
  for (auto* vec : {&a.ln1r, &a.q, &a.k, &a.v, &a.att, &a.lse, &a.mid, &a.ln2r, &a.gate, &a.up})
    vec->assign(L, nullptr);
  a.loraH.assign(L * kNumModules, nullptr);
  for (size_t l = 0; l < (train ? L + 1 : 1); ++l) plan.push_back({&a.resid[l], n * C});
  for (size_t l = 0; l < kept; ++l) {
    plan.push_back({&a.ln1r[l], n});
    plan.push_back({&a.q[l], n * qDim});
    plan.push_back({&a.k[l], n * kvDim});
    plan.push_back({&a.v[l], n * kvDim});
    plan.push_back({&a.att[l], n * qDim});
    plan.push_back({&a.lse[l], n * c.numAttentionHeads});
    plan.push_back({&a.mid[l], n * C});
    plan.push_back({&a.ln2r[l], n});
    plan.push_back({&a.gate[l], n * F});
    plan.push_back({&a.up[l], n * F});
    for (size_t m = 0; m < kNumModules; ++m) {
      const size_t slot = l * kNumModules + m;
      if (idxA_[slot] < 0) continue;
      plan.push_back({&a.loraH[slot], n * lora_.r});
    }
  }
  const size_t wide = std::max({C, F, qDim});
  plan.push_back({&a.ln, n * C});
  plan.push_back({&a.act, n * F});
  const size_t heads = static_cast<size_t>(logitRows);
  plan.push_back({&a.lnf, heads * C});
  plan.push_back({&a.lnfr, heads});
  plan.push_back({&a.logits, heads * V});
  plan.push_back({&a.losses, n});
  plan.push_back({&a.dtmp, n * wide});
  // LoRA dropout's output, the input of A: one buffer, since the backward pass draws the same mask again.
  if (train && lora_.enabled() && lora_.dropout > 0.0f) plan.push_back({&a.xdrop, n * wide});
  plan.push_back({&a.dln, n * C});
  if (train) {
    plan.push_back({&a.dres, n * C});
    // The MLP's gradients (dgate, dup, dact) are dead before the attention's (datt, dq, dk, dv) are
    // written: they share one region.
    plan.push_back({&a.mlpGrads, std::max(3 * alignFloats(n * F), 2 * alignFloats(n * qDim) + 2 * alignFloats(n * kvDim))});
    plan.push_back({&a.dh, n * std::max(1, lora_.r)});
  }
  plan.push_back({&a.tokenSlot, n});
  plan.push_back({&a.targetSlot, n});
}

size_t LlamaModel::activationBytes(int N, bool train, int logitRows, bool checkpointing) const {
  Acts a;
  ActPlan plan;
  planActivations(a, N, train, logitRows, checkpointing, plan);
  size_t total = 0;
  for (auto& p : plan) total += alignFloats(p.second);
  return total * sizeof(float);
}

void LlamaModel::ensureActivations(int N, bool train, int logitRows) {
  if (N <= actN_ && logitRows <= actLogitRows_ && (actTrain_ || !train)) return;
  if (actBuf_) be_.release(actBuf_);
  actBuf_ = nullptr;
  actN_ = 0;
  actLogitRows_ = 0;
  actFloats_ = 0;
  ActPlan plan;
  a_ = Acts{};
  planActivations(a_, N, train, logitRows, checkpointing_, plan);
  size_t total = 0;
  for (auto& p : plan) total += alignFloats(p.second);
  actBuf_ = static_cast<float*>(be_.allocate(total * sizeof(float)));
  size_t off = 0;
  for (auto& p : plan) {
    *p.first = actBuf_ + off;
    off += alignFloats(p.second);
  }
  const LlamaConfig& c = config_;
  const size_t F = c.intermediateSize, L = c.numHiddenLayers, n = static_cast<size_t>(N);
  const size_t qDim = static_cast<size_t>(c.numAttentionHeads) * c.headDim(),
               kvDim = static_cast<size_t>(c.numKeyValueHeads) * c.headDim();
  // Layers without their own buffers share layer 0's (inference; training with gradient checkpointing).
  for (size_t l = train && !checkpointing_ ? L : 1; l < L; ++l) {
    for (auto* vec : {&a_.ln1r, &a_.q, &a_.k, &a_.v, &a_.att, &a_.lse, &a_.mid, &a_.ln2r, &a_.gate, &a_.up})
      (*vec)[l] = (*vec)[0];
    for (size_t m = 0; m < kNumModules; ++m) a_.loraH[l * kNumModules + m] = a_.loraH[m];
  }
  if (!train)
    for (size_t l = 1; l <= L; ++l) a_.resid[l] = a_.resid[0];
  a_.dxl = a_.dtmp;  // the dropout branch's scratch in backward; dtmp is only used in forward
  const size_t nF = alignFloats(n * F), nQ = alignFloats(n * qDim), nKv = alignFloats(n * kvDim);
  float* g = a_.mlpGrads;
  a_.dgate = g;
  a_.dup = g ? g + nF : nullptr;
  a_.dact = g ? g + 2 * nF : nullptr;
  a_.datt = g;
  a_.dq = g ? g + nQ : nullptr;
  a_.dk = g ? g + 2 * nQ : nullptr;
  a_.dv = g ? g + 2 * nQ + nKv : nullptr;
  a_.tokens = reinterpret_cast<int32_t*>(a_.tokenSlot);
  a_.targets = reinterpret_cast<int32_t*>(a_.targetSlot);
  actFloats_ = total;
  actN_ = N;
  actLogitRows_ = logitRows;
  actTrain_ = train;
}

// ---- linear with LoRA ----------------------------------------------------------------------------

void LlamaModel::headForward(float* logits, const float* x, int rows) {
  const TensorInfo& head = tensors_[idxHead_];
  if (head.bf16)
    be_.gemmWeightBf16(logits, x, frozen_ + head.offset, rows, config_.vocabSize, config_.hiddenSize, true, 1.0f,
                       0.0f);
  else
    be_.gemm(logits, x, params_ + head.offset, rows, config_.vocabSize, config_.hiddenSize, false, true, 1.0f, 0.0f);
}

LinearWeights LlamaModel::linearWeights(int layer, int module) {
  LinearWeights w;
  const TensorInfo& W = tensors_[idxW_[layer * kNumModules + module]];
  w.out = static_cast<int>(W.shape[0]);
  w.in = static_cast<int>(W.shape[1]);
  if (W.bf16)
    w.Wbf16 = frozen_ + W.offset;
  else
    w.W = params_ + W.offset;
  w.dW = W.trainable ? grads_ + W.offset : nullptr;
  const int ia = idxA_[layer * kNumModules + module];
  if (ia >= 0) {
    const TensorInfo& A = tensors_[ia];
    const TensorInfo& B = tensors_[idxB_[layer * kNumModules + module]];
    w.A = params_ + A.offset;
    w.B = params_ + B.offset;
    w.dA = grads_ + A.offset;
    w.dB = grads_ + B.offset;
    w.r = lora_.r;
    w.scale = lora_.alpha / static_cast<float>(lora_.r);
    w.dropout = lora_.dropout;
    w.dropoutRow = dropoutRow_;
  }
  return w;
}

void LlamaModel::linearForward(float* y, const float* x, int M, int layer, int module, bool train, uint64_t seed) {
  const int slot = layer * kNumModules + module;
  loraLinearForward(be_, y, x, M, linearWeights(layer, module), a_.loraH[slot], a_.xdrop, train,
                    mixSeed(seed, static_cast<uint64_t>(slot)));
}

void LlamaModel::linearBackward(float* dx, float dxBeta, const float* dy, const float* x, int M, int layer,
                                int module, uint64_t seed) {
  const int slot = layer * kNumModules + module;
  loraLinearBackward(be_, dx, dxBeta, dy, x, M, linearWeights(layer, module), a_.loraH[slot], nullptr, a_.dh,
                     a_.dxl, true, mixSeed(seed, static_cast<uint64_t>(slot)));
}

// ---- forward / backward ------------------------------------------------------------------------

void LlamaModel::layerForward(int l, int B, int T, bool train, uint64_t seed, bool recompute) {
  const LlamaConfig& c = config_;
  const int N = B * T, C = c.hiddenSize, F = c.intermediateSize, H = c.numAttentionHeads,
            Hkv = c.numKeyValueHeads, D = c.headDim();
  const float* x = a_.resid[l];
  be_.rmsnormForward(a_.ln, a_.ln1r[l], x, params_ + tensors_[idxNormIn_[l]].offset, N, C, c.rmsNormEps);
  linearForward(a_.q[l], a_.ln, N, l, kQ, train, seed);
  linearForward(a_.k[l], a_.ln, N, l, kK, train, seed);
  linearForward(a_.v[l], a_.ln, N, l, kV, train, seed);
  be_.ropeForward(a_.q[l], ropeCos_, ropeSin_, B, T, H, D, 0);
  be_.ropeForward(a_.k[l], ropeCos_, ropeSin_, B, T, Hkv, D, 0);
  be_.attentionForward(a_.att[l], a_.lse[l], a_.q[l], a_.k[l], a_.v[l], B, T, T, H, Hkv, D, 0);
  linearForward(a_.dtmp, a_.att[l], N, l, kO, train, seed);
  be_.add(a_.mid[l], x, a_.dtmp, static_cast<size_t>(N) * C);
  be_.rmsnormForward(a_.ln, a_.ln2r[l], a_.mid[l], params_ + tensors_[idxNormPost_[l]].offset, N, C, c.rmsNormEps);
  linearForward(a_.gate[l], a_.ln, N, l, kGate, train, seed);
  linearForward(a_.up[l], a_.ln, N, l, kUp, train, seed);
  be_.swigluForward(a_.act, a_.gate[l], a_.up[l], static_cast<size_t>(N) * F);
  linearForward(a_.dtmp, a_.act, N, l, kDown, train, seed);  // (recomputing: for its LoRA input h only)
  if (!recompute) be_.add(a_.resid[l + 1], a_.mid[l], a_.dtmp, static_cast<size_t>(N) * C);
}

void LlamaModel::forwardLayers(int B, int T, bool train, uint64_t seed, const std::atomic<bool>* abort) {
  const LlamaConfig& c = config_;
  const int N = B * T, C = c.hiddenSize;
  be_.embeddingForward(a_.resid[0], a_.tokens, params_ + tensors_[idxEmbed_].offset, N, C);
  for (int l = 0; l < c.numHiddenLayers; ++l) {
    checkAbort(abort);
    layerForward(l, B, T, train, seed, false);
  }
  const int L = c.numHiddenLayers;
  be_.rmsnormForward(a_.lnf, a_.lnfr, a_.resid[L], params_ + tensors_[idxNorm_].offset, N, C, c.rmsNormEps);
  headForward(a_.logits, a_.lnf, N);
}

void LlamaModel::forward(const int32_t* tokens, int B, int T, float* logitsHost, const std::atomic<bool>* abort) {
  const int N = B * T;
  ensureActivations(N, false, N);
  be_.upload(a_.tokens, tokens, sizeof(int32_t) * N);
  forwardLayers(B, T, false, 0, abort);
  be_.download(logitsHost, a_.logits, sizeof(float) * static_cast<size_t>(N) * config_.vocabSize);
}

ModelBuffers LlamaModel::buffers() const {
  ModelBuffers b;
  b.params = params_;
  b.paramCount = paramCount_;
  b.frozen = frozen_;
  b.frozenCount = frozenCount_;
  b.grads = grads_;
  b.adamM = adamM_;
  b.adamV = adamV_;
  b.trainableCount = trainableCount_;
  return b;
}

double LlamaModel::parameterSumSquares() {
  double sum = be_.sumSquares(params_, paramCount_);
  if (frozenCount_ > 0) {
    // bf16 weights: widened on the host in slices (sumSquares reads fp32)
    std::vector<uint16_t> raw(std::min<size_t>(frozenCount_, size_t(1) << 22));
    std::vector<float> wide(raw.size());
    for (size_t at = 0; at < frozenCount_; at += raw.size()) {
      const size_t n = std::min(raw.size(), frozenCount_ - at);
      be_.download(raw.data(), frozen_ + at, n * sizeof(uint16_t));
      for (size_t i = 0; i < n; ++i) {
        const double x = fromBf16(raw[i]);
        sum += x * x;
      }
    }
  }
  return sum;
}

double LlamaModel::forwardBackward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                   const BackwardOptions& o, const std::atomic<bool>* abort, const ProgressFn& progress,
                                   int64_t* counted) {
  const bool accumulate = o.accumulate;
  const uint64_t dropoutSeed = o.dropoutSeed;
  GradientSink* sink = o.sink;
  const LlamaConfig& c = config_;
  const int N = B * T, C = c.hiddenSize, F = c.intermediateSize, H = c.numAttentionHeads,
            Hkv = c.numKeyValueHeads, D = c.headDim(), L = c.numHiddenLayers, V = c.vocabSize;
  int64_t count = 0;
  for (int i = 0; i < N; ++i) count += targets[i] != -100;
  if (counted) *counted = count;
  ensureActivations(N, true, N);
  be_.upload(a_.tokens, tokens, sizeof(int32_t) * N);
  be_.upload(a_.targets, targets, sizeof(int32_t) * N);
  if (!accumulate) zeroGradients();
  dropoutRow_ = static_cast<uint64_t>(o.rowOffset);
  struct RowReset {
    uint64_t& row;
    ~RowReset() { row = 0; }
  } rowReset{dropoutRow_};
  const double denominator = o.lossTokens > 0.0 ? o.lossTokens : static_cast<double>(count);
  const int total = 2 * L + 2;
  if (progress) progress(0, total);
  forwardLayers(B, T, true, dropoutSeed, abort);
  if (progress) progress(L + 1, total);
  // The loss is the sum over counted targets divided by the denominator, so is each row's gradient.
  // (1 / float(count), as the loss was always scaled: a single process's gradients stay bit for bit.)
  const float dscale = denominator > 0.0 ? 1.0f / static_cast<float>(denominator) : 0.0f;
  be_.crossEntropy(a_.losses, a_.logits, a_.targets, N, V, dscale, true);
  // The per-row losses come back after the backward pass (nothing there writes them): a download waits
  // for the device, and one here would leave it idle while the backward pass is being queued.
  auto meanLoss = [&] {
    std::vector<float> losses(N);
    be_.download(losses.data(), a_.losses, sizeof(float) * N);
    double sum = 0.0;
    for (float x : losses) sum += x;
    return denominator > 0.0 ? sum / denominator : 0.0;
  };
  if (trainableCount_ == 0) {
    if (sink) sink->finish();
    return meanLoss();
  }

  // lm_head: logits = lnf W^T  (a_.logits now holds dlogits)
  const TensorInfo& head = tensors_[idxHead_];
  if (head.bf16)
    be_.gemmWeightBf16(a_.dln, a_.logits, frozen_ + head.offset, N, C, V, false, 1.0f, 0.0f);
  else
    be_.gemm(a_.dln, a_.logits, params_ + head.offset, N, C, V, false, false, 1.0f, 0.0f);
  if (head.trainable) be_.gemm(grads_ + head.offset, a_.logits, a_.lnf, V, C, N, true, false, 1.0f, 1.0f);
  be_.zero(a_.dres, sizeof(float) * static_cast<size_t>(N) * C);
  const TensorInfo& fnorm = tensors_[idxNorm_];
  be_.rmsnormBackward(a_.dres, fnorm.trainable ? grads_ + fnorm.offset : nullptr, a_.dln, a_.resid[L],
                      params_ + fnorm.offset, a_.lnfr, N, C);
  if (sink) sink->ready(gradStartTail_);
  for (int l = L - 1; l >= 0; --l) {
    checkAbort(abort);
    if (checkpointing_) layerForward(l, B, T, true, dropoutSeed, true);
    // resid[l+1] = mid + down(act)
    const TensorInfo& n2 = tensors_[idxNormPost_[l]];
    if (!checkpointing_) be_.swigluForward(a_.act, a_.gate[l], a_.up[l], static_cast<size_t>(N) * F);  // recomputed
    linearBackward(a_.dact, 0.0f, a_.dres, a_.act, N, l, kDown, dropoutSeed);
    be_.swigluBackward(a_.dgate, a_.dup, a_.dact, a_.gate[l], a_.up[l], static_cast<size_t>(N) * F);
    if (!checkpointing_)  // (the layer's recomputed forward pass left ln2 there)
      be_.rmsnormForward(a_.ln, a_.ln2r[l], a_.mid[l], params_ + n2.offset, N, C, c.rmsNormEps);  // recomputed
    linearBackward(a_.dln, 0.0f, a_.dgate, a_.ln, N, l, kGate, dropoutSeed);
    linearBackward(a_.dln, 1.0f, a_.dup, a_.ln, N, l, kUp, dropoutSeed);
    be_.rmsnormBackward(a_.dres, n2.trainable ? grads_ + n2.offset : nullptr, a_.dln, a_.mid[l], params_ + n2.offset,
                        a_.ln2r[l], N, C);
    // mid = resid[l] + o(att)
    linearBackward(a_.datt, 0.0f, a_.dres, a_.att[l], N, l, kO, dropoutSeed);
    be_.attentionBackward(a_.dq, a_.dk, a_.dv, a_.datt, a_.q[l], a_.k[l], a_.v[l], a_.att[l], a_.lse[l], B, T, H,
                          Hkv, D);
    be_.ropeBackward(a_.dq, ropeCos_, ropeSin_, B, T, H, D, 0);
    be_.ropeBackward(a_.dk, ropeCos_, ropeSin_, B, T, Hkv, D, 0);
    const TensorInfo& n1 = tensors_[idxNormIn_[l]];
    be_.rmsnormForward(a_.ln, a_.ln1r[l], a_.resid[l], params_ + n1.offset, N, C, c.rmsNormEps);  // recomputed
    linearBackward(a_.dln, 0.0f, a_.dq, a_.ln, N, l, kQ, dropoutSeed);
    linearBackward(a_.dln, 1.0f, a_.dk, a_.ln, N, l, kK, dropoutSeed);
    linearBackward(a_.dln, 1.0f, a_.dv, a_.ln, N, l, kV, dropoutSeed);
    be_.rmsnormBackward(a_.dres, n1.trainable ? grads_ + n1.offset : nullptr, a_.dln, a_.resid[l], params_ + n1.offset,
                        a_.ln1r[l], N, C);
    if (sink) sink->ready(gradStart_[l]);
    if (progress) progress(L + 1 + (L - l), total);
  }
  const TensorInfo& emb = tensors_[idxEmbed_];
  if (emb.trainable) be_.embeddingBackward(grads_ + emb.offset, a_.dres, a_.tokens, N, C, V);
  if (sink) sink->finish();
  const double loss = meanLoss();  // (waits for the device)
  if (progress) progress(total, total);
  return loss;
}

StepResult LlamaModel::step(const StepOptions& o) {
  StepResult r;
  if (trainableCount_ == 0) return r;
  r.gradNorm = std::sqrt(be_.sumSquares(grads_, trainableCount_)) * std::fabs(static_cast<double>(o.gradScale));
  if (!std::isfinite(r.gradNorm)) {
    r.skipped = true;
    r.step = step_;
    return r;
  }
  if (o.maxGradNorm > 0.0f) {
    // torch.nn.utils.clip_grad_norm_
    const double coef = o.maxGradNorm / (r.gradNorm + 1e-6);
    r.clipScale = coef < 1.0 ? static_cast<float>(coef) : 1.0f;
  }
  ++step_;
  AdamWParams hp;
  hp.lr = o.lr;
  hp.beta1 = o.beta1;
  hp.beta2 = o.beta2;
  hp.eps = o.eps;
  hp.weightDecay = o.weightDecay;
  hp.step = step_;
  hp.gradScale = r.clipScale * o.gradScale;
  be_.adamw(params_, grads_, adamM_, adamV_, trainableCount_, hp);
  be_.synchronize();
  r.step = step_;
  return r;
}

// ---- generation ----------------------------------------------------------------------------------

void LlamaModel::ensureCache(int B, int Tcap) {
  if (cacheBuf_ && B <= cacheB_ && Tcap <= cacheT_) return;
  if (cacheBuf_) be_.release(cacheBuf_);
  cacheBuf_ = nullptr;
  const LlamaConfig& c = config_;
  const size_t per = static_cast<size_t>(B) * Tcap * c.numKeyValueHeads * c.headDim();
  cacheBuf_ = static_cast<float*>(be_.allocate(2 * c.numHiddenLayers * per * sizeof(float)));
  cacheB_ = B;
  cacheT_ = Tcap;
  kCache_.resize(c.numHiddenLayers);
  vCache_.resize(c.numHiddenLayers);
  for (int l = 0; l < c.numHiddenLayers; ++l) {
    kCache_[l] = cacheBuf_ + (2 * l) * per;
    vCache_[l] = cacheBuf_ + (2 * l + 1) * per;
  }
}

// Runs Tq new tokens per row at positions [pos0, pos0+Tq) through the model, appending to the KV cache
// (laid out [B, cacheT_, Hkv, D]); writes the last position's logits, [B, V], to logitsHost.
void LlamaModel::decodeStep(const int32_t* tokensHost, int B, int Tq, int pos0, float* logitsHost) {
  const LlamaConfig& c = config_;
  const int N = B * Tq, C = c.hiddenSize, F = c.intermediateSize, H = c.numAttentionHeads,
            Hkv = c.numKeyValueHeads, D = c.headDim(), V = c.vocabSize;
  const size_t kvDim = static_cast<size_t>(Hkv) * D;
  ensureActivations(N, false, B);
  be_.upload(a_.tokens, tokensHost, sizeof(int32_t) * N);
  float* x = a_.resid[0];
  be_.embeddingForward(x, a_.tokens, params_ + tensors_[idxEmbed_].offset, N, C);
  for (int l = 0; l < c.numHiddenLayers; ++l) {
    be_.rmsnormForward(a_.ln, a_.ln1r[0], x, params_ + tensors_[idxNormIn_[l]].offset, N, C, c.rmsNormEps);
    linearForward(a_.q[0], a_.ln, N, l, kQ, false, 0);
    linearForward(a_.k[0], a_.ln, N, l, kK, false, 0);
    linearForward(a_.v[0], a_.ln, N, l, kV, false, 0);
    be_.ropeForward(a_.q[0], ropeCos_, ropeSin_, B, Tq, H, D, pos0);
    be_.ropeForward(a_.k[0], ropeCos_, ropeSin_, B, Tq, Hkv, D, pos0);
    for (int b = 0; b < B; ++b) {
      const size_t dst = (static_cast<size_t>(b) * cacheT_ + pos0) * kvDim, src = static_cast<size_t>(b) * Tq * kvDim;
      be_.copy(kCache_[l] + dst, a_.k[0] + src, sizeof(float) * Tq * kvDim);
      be_.copy(vCache_[l] + dst, a_.v[0] + src, sizeof(float) * Tq * kvDim);
    }
    be_.attentionForward(a_.att[0], nullptr, a_.q[0], kCache_[l], vCache_[l], B, Tq, cacheT_, H, Hkv, D, pos0);
    linearForward(a_.dtmp, a_.att[0], N, l, kO, false, 0);
    be_.add(a_.mid[0], x, a_.dtmp, static_cast<size_t>(N) * C);
    be_.rmsnormForward(a_.ln, a_.ln2r[0], a_.mid[0], params_ + tensors_[idxNormPost_[l]].offset, N, C,
                       c.rmsNormEps);
    linearForward(a_.gate[0], a_.ln, N, l, kGate, false, 0);
    linearForward(a_.up[0], a_.ln, N, l, kUp, false, 0);
    be_.swigluForward(a_.act, a_.gate[0], a_.up[0], static_cast<size_t>(N) * F);
    linearForward(a_.dtmp, a_.act, N, l, kDown, false, 0);
    be_.add(x, a_.mid[0], a_.dtmp, static_cast<size_t>(N) * C);
  }
  // Only each row's last position needs logits.
  for (int b = 0; b < B; ++b)
    be_.copy(a_.dln + static_cast<size_t>(b) * C, x + (static_cast<size_t>(b) * Tq + Tq - 1) * C, sizeof(float) * C);
  be_.rmsnormForward(a_.lnf, a_.lnfr, a_.dln, params_ + tensors_[idxNorm_].offset, B, C, c.rmsNormEps);
  headForward(a_.logits, a_.lnf, B);
  be_.download(logitsHost, a_.logits, sizeof(float) * static_cast<size_t>(B) * V);
}

void LlamaModel::decodeStart(const int32_t* tokens, int B, int P, int maxNewTokens, float* logitsHost) {
  session_ = {};
  ensureCache(B, P + maxNewTokens);
  decodeStep(tokens, B, P, 0, logitsHost);
  session_ = {B, P, P + maxNewTokens};
}

void LlamaModel::decodeNext(const int32_t* tokens, float* logitsHost) {
  if (session_.B == 0) throw Error("decodeNext(): no decode session (call decodeStart() first)");
  if (session_.pos >= session_.capacity)
    throw Error("decodeNext(): the session's " + std::to_string(session_.capacity) +
                " positions are used up (raise maxNewTokens in decodeStart())");
  decodeStep(tokens, session_.B, 1, session_.pos, logitsHost);
  ++session_.pos;
}

void LlamaModel::decodeReorder(const int32_t* rows) {
  if (session_.B == 0) throw Error("decodeReorder(): no decode session (call decodeStart() first)");
  const int B = session_.B;
  for (int b = 0; b < B; ++b)
    if (rows[b] < 0 || rows[b] >= B)
      throw Error("decodeReorder(): rows[" + std::to_string(b) + "] = " + std::to_string(rows[b]) + " is outside [0, " +
                  std::to_string(B) + ")");
  std::vector<int> moved;
  for (int b = 0; b < B; ++b)
    if (rows[b] != b) moved.push_back(b);
  if (moved.empty()) return;
  const size_t rowFloats = static_cast<size_t>(session_.pos) * config_.numKeyValueHeads * config_.headDim();
  const size_t need = moved.size() * rowFloats;
  if (need > reorderFloats_) {
    if (reorderBuf_) be_.release(reorderBuf_);
    reorderBuf_ = nullptr;
    reorderBuf_ = static_cast<float*>(be_.allocate(need * sizeof(float)));
    reorderFloats_ = need;
  }
  const size_t stride = static_cast<size_t>(cacheT_) * config_.numKeyValueHeads * config_.headDim();
  // Every source row is staged before any row is overwritten, so rows may read rows that also move.
  for (int l = 0; l < config_.numHiddenLayers; ++l) {
    for (float* cache : {kCache_[l], vCache_[l]}) {
      for (size_t i = 0; i < moved.size(); ++i)
        be_.copy(reorderBuf_ + i * rowFloats, cache + rows[moved[i]] * stride, sizeof(float) * rowFloats);
      for (size_t i = 0; i < moved.size(); ++i)
        be_.copy(cache + moved[i] * stride, reorderBuf_ + i * rowFloats, sizeof(float) * rowFloats);
    }
  }
}

namespace {
int32_t sampleToken(const float* logits, int V, const GenerateOptions& o, Rng& rng) {
  if (o.temperature <= 0.0f) {
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  std::vector<int> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  int k = (o.topK > 0 && o.topK < V) ? o.topK : V;
  if (k < V) {
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    idx.resize(k);
  }
  double mx = -1e300;
  for (int i : idx) mx = std::max(mx, static_cast<double>(logits[i]));
  std::vector<double> p(idx.size());
  double sum = 0.0;
  for (size_t j = 0; j < idx.size(); ++j) sum += p[j] = std::exp((logits[idx[j]] - mx) / o.temperature);
  double u = rng.uniform() * sum;
  for (size_t j = 0; j < idx.size(); ++j) {
    u -= p[j];
    if (u <= 0.0) return idx[j];
  }
  return idx.back();
}
}  // namespace

std::vector<std::vector<int32_t>> LlamaModel::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                       const GenerateOptions& o, const std::atomic<bool>* abort,
                                                       const ProgressFn& progress) {
  const int V = config_.vocabSize;
  session_ = {};  // generate() reuses the KV cache
  std::vector<std::vector<int32_t>> results(prompts.size());
  // Prompts of equal length decode together in lockstep.
  std::vector<size_t> order(prompts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prompts[a].size() < prompts[b].size(); });
  const int totalSteps = static_cast<int>(prompts.size()) * o.maxNewTokens;
  int done = 0;
  constexpr size_t kMaxGroup = 64;
  for (size_t g0 = 0; g0 < order.size();) {
    size_t g1 = g0;
    while (g1 < order.size() && g1 - g0 < kMaxGroup && prompts[order[g1]].size() == prompts[order[g0]].size()) ++g1;
    const int B = static_cast<int>(g1 - g0);
    const int P = static_cast<int>(prompts[order[g0]].size());
    ensureCache(B, P + o.maxNewTokens);
    std::vector<int32_t> tokens(static_cast<size_t>(B) * P);
    for (int b = 0; b < B; ++b) std::copy(prompts[order[g0 + b]].begin(), prompts[order[g0 + b]].end(), tokens.begin() + b * P);
    std::vector<float> logits(static_cast<size_t>(B) * V);
    std::vector<Rng> rngs;
    for (int b = 0; b < B; ++b) rngs.emplace_back(mixSeed(o.seed, order[g0 + b]));
    std::vector<bool> finished(B, false);
    int pos = 0, Tq = P;
    for (int t = 0; t < o.maxNewTokens; ++t) {
      checkAbort(abort);
      decodeStep(tokens.data(), B, Tq, pos, logits.data());
      pos += Tq;
      Tq = 1;
      tokens.assign(B, 0);
      bool all = true;
      for (int b = 0; b < B; ++b) {
        const int32_t next = sampleToken(logits.data() + static_cast<size_t>(b) * V, V, o, rngs[b]);
        tokens[b] = next;
        if (finished[b]) continue;
        if (std::find(o.stopTokens.begin(), o.stopTokens.end(), next) != o.stopTokens.end()) finished[b] = true;
        else results[order[g0 + b]].push_back(next);
        all = all && finished[b];
      }
      done += B;
      if (progress) progress(done, totalSteps);
      if (all) break;
    }
    done = static_cast<int>(g1) * o.maxNewTokens;
    g0 = g1;
  }
  return results;
}

}  // namespace pl
