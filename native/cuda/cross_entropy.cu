// Cross-entropy fused with the softmax: one block of 256 threads a row of V logits. Three passes over the
// row (max, sum of exp(x - max), then the gradient), each reduced in a fixed tree, so a row's loss and
// gradient are deterministic. loss = log(sum) + max - x[target]; with grad the row is overwritten by
// dscale * (softmax - onehot). Negative targets (-100) give a 0 loss and a zero row. A target >= V is a
// caller bug the device cannot throw for: its loss is NaN so it cannot pass silently.
#include <cmath>

#include "common.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(float* losses, float* logits, const int32_t* targets, int V, float dscale, bool grad) {
  __shared__ float scratch[kThreads / 32];
  const int row = blockIdx.x;
  float* x = logits + size_t(row) * V;
  const int target = targets[row];
  if (target < 0 || target >= V) {
    if (grad)
      for (int i = threadIdx.x; i < V; i += kThreads) x[i] = 0.0f;
    if (threadIdx.x == 0) losses[row] = target < 0 ? 0.0f : NAN;
    return;
  }
  const float xt = x[target];  // read before any thread overwrites the row
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += kThreads) mx = fmaxf(mx, x[i]);
  mx = blockMax<kThreads>(mx, scratch);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += kThreads) sum += expf(x[i] - mx);
  sum = blockSum<kThreads>(sum, scratch);  // ends in sync: every thread has read the row
  if (threadIdx.x == 0) losses[row] = logf(sum) + mx - xt;
  if (grad) {
    const float inv = dscale / sum;
    for (int i = threadIdx.x; i < V; i += kThreads) {
      const float p = expf(x[i] - mx) * inv;
      x[i] = i == target ? p - dscale : p;
    }
  }
}

}  // namespace

void crossEntropy(cudaStream_t stream, float* losses, float* logits, const int32_t* targets, int N, int V,
                  float dscale, bool grad) {
  if (N <= 0) return;
  cross_entropy_kernel<<<N, kThreads, 0, stream>>>(losses, logits, targets, V, dscale, grad);
  checkLaunch("cross_entropy_kernel");
}

}  // namespace pl::cuda
