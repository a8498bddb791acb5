// Linear layer with an optional PEFT LoRA branch, composed from Backend ops; the model and the
// `kernels.linear*` entry points share it.  y[M,out] = x[M,in] W^T + scale * (dropout(x) A^T) B^T
#pragma once
#include <cstdint>

#include "backend.h"

namespace pl {

struct LinearWeights {
  const float* W = nullptr;  // [out, in]
  const uint16_t* Wbf16 = nullptr;  // [out, in] in bf16 instead of W (a frozen base weight)
  float* dW = nullptr;       // [out, in] accumulates; null when frozen
  int in = 0, out = 0;
  // LoRA (A null: none)
  const float* A = nullptr;  // [r, in]
  const float* B = nullptr;  // [out, r]
  float* dA = nullptr;       // accumulates
  float* dB = nullptr;       // accumulates
  int r = 0;
  float scale = 0.0f;    // alpha / r
  float dropout = 0.0f;  // on the LoRA input only, in training
  // The mask's row numbering: element (row, col) of x is kept iff uniform01(seed, (dropoutRow + row) * in
  // + col) >= dropout, so a rank's rows of a global batch get the rows' masks of the whole batch.
  uint64_t dropoutRow = 0;
};

// h[M,r] keeps A's output for backward; xd[M,in] keeps the dropped-out input (needed when train and
// dropout > 0, else unused).
void loraLinearForward(Backend& be, float* y, const float* x, int M, const LinearWeights& w, float* h, float* xd,
                       bool train, uint64_t seed);

// dx[M,in] = dxBeta * dx + dL/dx; weight gradients accumulate. dh[M,r] and dxl[M,in] are scratch.
// train/seed must match the forward call. xd: the forward's dropout output, or null to draw it again
// (the same mask: dropout is a function of the seed).
void loraLinearBackward(Backend& be, float* dx, float dxBeta, const float* dy, const float* x, int M,
                        const LinearWeights& w, const float* h, const float* xd, float* dh, float* dxl, bool train,
                        uint64_t seed);

}  // namespace pl
