// AdamW, PyTorch's formula exactly as native/cpu/ops.cc writes it: g = grad * gradScale,
// m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, p = p (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),
// with the bias corrections bc1 = 1 - b1^step, bc2 = 1 - b2^step computed on the host in double as the CPU
// does. One thread an element, grid-stride; fp32 throughout (IEEE sqrt and division: nvcc's defaults).
#include <cmath>

#include "common.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, size_t n, float b1, float b2,
                             float eps, float decay, float stepSize, float bc2sqrt, float gradScale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float g = grad[i] * gradScale;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2sqrt + eps;
    param[i] = param[i] * decay - stepSize * mi / denom;
  }
}

}  // namespace

void adamw(cudaStream_t stream, float* param, const float* grad, float* m, float* v, size_t n,
           const AdamWParams& hp) {
  if (n == 0) return;
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(hp.beta1), hp.step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(hp.beta2), hp.step));
  const float bc2sqrt = std::sqrt(bc2);
  const float stepSize = hp.lr / bc1;
  const float decay = 1.0f - hp.lr * hp.weightDecay;
  adamw_kernel<<<elementwiseBlocks(n, 256), 256, 0, stream>>>(param, grad, m, v, n, hp.beta1, hp.beta2, hp.eps, decay,
                                                              stepSize, bc2sqrt, hp.gradScale);
  checkLaunch("adamw_kernel");
}

}  // namespace pl::cuda
