// The LoRA linear forward and backward as a sequence of GEMMs (and dropout) on any Backend.
#include "lora_linear.h"

namespace pl {

void loraLinearForward(Backend& be, float* y, const float* x, int M, const LinearWeights& w, float* h, float* xd,
                       bool train, uint64_t seed) {
  if (!w.A) {
    if (w.Wbf16)
      be.gemmWeightBf16(y, x, w.Wbf16, M, w.out, w.in, true, 1.0f, 0.0f);
    else
      be.gemm(y, x, w.W, M, w.out, w.in, false, true, 1.0f, 0.0f);
    return;
  }
  const float* input = x;
  if (train && w.dropout > 0.0f) {
    be.dropoutForward(xd, x, static_cast<size_t>(M) * w.in, w.dropout, seed, w.dropoutRow * w.in);
    input = xd;
  }
  be.gemm(h, input, w.A, M, w.r, w.in, false, true, 1.0f, 0.0f);
  // y = x W^T + scale h B^T (B [out, r])
  be.gemmLowRank(y, x, w.W, w.Wbf16, M, w.out, w.in, true, 0.0f, h, w.B, w.r, w.r, 1, w.scale);
}

namespace {
// dx = dxBeta * dx + dy W (W [out, in])
void baseBackward(Backend& be, float* dx, float dxBeta, const float* dy, int M, const LinearWeights& w) {
  if (w.Wbf16)
    be.gemmWeightBf16(dx, dy, w.Wbf16, M, w.in, w.out, false, 1.0f, dxBeta);
  else
    be.gemm(dx, dy, w.W, M, w.in, w.out, false, false, 1.0f, dxBeta);
}
}  // namespace

void loraLinearBackward(Backend& be, float* dx, float dxBeta, const float* dy, const float* x, int M,
                        const LinearWeights& w, const float* h, const float* xd, float* dh, float* dxl, bool train,
                        uint64_t seed) {
  if (w.dW) be.gemm(w.dW, dy, x, w.out, w.in, M, true, false, 1.0f, 1.0f);      // dW += dy^T x
  if (!w.A) {
    baseBackward(be, dx, dxBeta, dy, M, w);
    return;
  }
  const bool dropped = train && w.dropout > 0.0f;
  const float* input = x;
  if (dropped) {
    // The forward pass's dropout output: given, or drawn again from the same seed into dxl (free until dx).
    if (!xd) be.dropoutForward(dxl, x, static_cast<size_t>(M) * w.in, w.dropout, seed, w.dropoutRow * w.in);
    input = xd ? xd : dxl;
  }
  if (w.dB) be.gemm(w.dB, dy, h, w.out, w.r, M, true, false, w.scale, 1.0f);    // dB += s dy^T h
  be.gemm(dh, dy, w.B, M, w.r, w.out, false, false, w.scale, 0.0f);             // dh = s dy B
  if (w.dA) be.gemm(w.dA, dh, input, w.r, w.in, M, true, false, 1.0f, 1.0f);    // dA += dh^T xd
  if (dropped) {
    baseBackward(be, dx, dxBeta, dy, M, w);
    be.gemm(dxl, dh, w.A, M, w.in, w.r, false, false, 1.0f, 0.0f);              // dxd = dh A
    be.dropoutBackward(dx, dxl, static_cast<size_t>(M) * w.in, w.dropout, seed, w.dropoutRow * w.in);
  } else {
    // dx = dxBeta dx + dy W + dh A (A [r, in])
    be.gemmLowRank(dx, dy, w.W, w.Wbf16, M, w.in, w.out, false, dxBeta, dh, w.A, w.r, 1, w.in, 1.0f);
  }
}

}  // namespace pl
