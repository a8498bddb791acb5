// Elementwise kernels (add, axpy, scale, SwiGLU, dropout), the deterministic sum of squares and the
// embedding gather / scatter. Grid-stride loops over flat [n] arrays, 256 threads a block; the same
// formulas as native/cpu/ops.cc (expf where the CPU uses its polynomial vexp: ~2 ulp apart).
#include "common.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void add_kernel(float* out, const float* a, const float* b, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void axpy_kernel(float* y, const float* x, float a, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] += a * x[i];
}

__global__ void scale_kernel(float* x, float a, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    x[i] *= a;
}

// Sum of squares, pass 1: block b sums (in double) the elements i = b*kThreads + t + k*stride of its
// threads, then reduces in a fixed tree into partial[b]. The grid size depends only on n, so the
// result is the same on every run and every GPU.
__global__ void sumsq_partial_kernel(double* partial, const float* x, size_t n) {
  __shared__ double scratch[kThreads / 32];
  double acc = 0.0;
  for (size_t i = blockIdx.x * size_t(kThreads) + threadIdx.x; i < n; i += size_t(gridDim.x) * kThreads) {
    const double v = x[i];
    acc += v * v;
  }
  acc = blockSum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2: one block sums the partials (thread t takes t, t + kThreads, ... in order), then a tree.
__global__ void sumsq_final_kernel(double* result, const double* partial, int blocks) {
  __shared__ double scratch[kThreads / 32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < blocks; i += kThreads) acc += partial[i];
  acc = blockSum<kThreads>(acc, scratch);
  if (threadIdx.x == 0) *result = acc;
}

unsigned sumsqBlocks(size_t n) {
  const size_t b = (n + 8 * kThreads - 1) / (8 * kThreads);  // about 8 elements a thread before striding
  return static_cast<unsigned>(b < 1 ? 1 : (b > 1024 ? 1024 : b));
}

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

__device__ __forceinline__ float swiglu(float g, float u) { return g * sigmoid(g) * u; }

__device__ __forceinline__ void swigluGrad(float& dg, float& du, float dy, float g, float u) {
  const float s = sigmoid(g);
  du = dy * (g * s);
  dg = dy * u * s * (1.0f + g * (1.0f - s));
}

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = swiglu(gate[i], up[i]);
}

// The same, four elements a thread through 16-byte accesses (more bytes in flight per thread: these
// kernels are bound by memory, and one float a thread leaves the bandwidth short).
__global__ void swiglu_forward_vec4_kernel(float4* out, const float4* gate, const float4* up, size_t n4) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n4; i += size_t(gridDim.x) * blockDim.x) {
    const float4 g = gate[i], u = up[i];
    out[i] = make_float4(swiglu(g.x, u.x), swiglu(g.y, u.y), swiglu(g.z, u.z), swiglu(g.w, u.w));
  }
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    swigluGrad(dgate[i], dup[i], dout[i], gate[i], up[i]);
}

__global__ void swiglu_backward_vec4_kernel(float4* dgate, float4* dup, const float4* dout, const float4* gate,
                                            const float4* up, size_t n4) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n4; i += size_t(gridDim.x) * blockDim.x) {
    const float4 dy = dout[i], g = gate[i], u = up[i];
    float4 dg, du;
    swigluGrad(dg.x, du.x, dy.x, g.x, u.x);
    swigluGrad(dg.y, du.y, dy.y, g.y, u.y);
    swigluGrad(dg.z, du.z, dy.z, g.z, u.z);
    swigluGrad(dg.w, du.w, dy.w, g.w, u.w);
    dgate[i] = dg;
    dup[i] = du;
  }
}


// Dropout: element i is kept iff uniform01(seed, offset + i) >= p, the CPU's mask bit for bit.
__global__ void dropout_forward_kernel(float* out, const float* inp, size_t n, float p, float keepScale,
                                       uint64_t seed, uint64_t offset) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = uniform01(seed, offset + i) >= p ? inp[i] * keepScale : 0.0f;
}

__global__ void dropout_backward_kernel(float* dinp, const float* dout, size_t n, float p, float keepScale,
                                        uint64_t seed, uint64_t offset) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    // Rounded product, then rounded sum (no fused multiply-add): the CPU's result, bit for bit.
    if (uniform01(seed, offset + i) >= p) dinp[i] = __fadd_rn(dinp[i], __fmul_rn(dout[i], keepScale));
}

// out[N,C] = wte[tokens[n]]: one thread an element, grid-stride over N*C.
__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  const size_t total = size_t(N) * C;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t n = i / C, c = i % C;
    out[i] = wte[size_t(tokens[n]) * C + c];
  }
}

// dwte[tokens[n], c] += dout[n, c]: thread c owns column c and walks the rows n = 0..N-1 in order, the
// CPU's summation order, so the result is bit-identical to it and needs no atomics. Parallel over C only
// (a few thousand threads), which is enough for an op that runs once a step when embeddings train.
__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int n = 0; n < N; ++n) dwte[size_t(tokens[n]) * C + c] += dout[size_t(n) * C + c];
}

}  // namespace

void add(cudaStream_t stream, float* out, const float* a, const float* b, size_t n) {
  if (n == 0) return;
  add_kernel<<<elementwiseBlocks(n, kThreads), kThreads, 0, stream>>>(out, a, b, n);
  checkLaunch("add_kernel");
}

void axpy(cudaStream_t stream, float* y, const float* x, float a, size_t n) {
  if (n == 0) return;
  axpy_kernel<<<elementwiseBlocks(n, kThreads), kThreads, 0, stream>>>(y, x, a, n);
  checkLaunch("axpy_kernel");
}

void scale(cudaStream_t stream, float* x, float a, size_t n) {
  if (n == 0) return;
  scale_kernel<<<elementwiseBlocks(n, kThreads), kThreads, 0, stream>>>(x, a, n);
  checkLaunch("scale_kernel");
}

size_t sumSquaresScratchBytes(size_t n) { return sizeof(double) * sumsqBlocks(n); }

void sumSquares(cudaStream_t stream, double* result, void* scratch, const float* x, size_t n) {
  const unsigned blocks = sumsqBlocks(n);
  double* partial = static_cast<double*>(scratch);
  sumsq_partial_kernel<<<blocks, kThreads, 0, stream>>>(partial, x, n);
  checkLaunch("sumsq_partial_kernel");
  sumsq_final_kernel<<<1, kThreads, 0, stream>>>(result, partial, static_cast<int>(blocks));
  checkLaunch("sumsq_final_kernel");
}

// Aligned operands go four elements a thread, then the last n % 4 one at a time (the same results).
void swigluForward(cudaStream_t stream, float* out, const float* gate, const float* up, size_t n) {
  if (n == 0) return;
  size_t done = 0;
  if (aligned16({out, gate, up}) && n >= 4) {
    const size_t n4 = n / 4;
    swiglu_forward_vec4_kernel<<<elementwiseBlocks(n4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(out), reinterpret_cast<const float4*>(gate), reinterpret_cast<const float4*>(up), n4);
    checkLaunch("swiglu_forward_vec4_kernel");
    done = 4 * n4;
  }
  if (done == n) return;
  swiglu_forward_kernel<<<elementwiseBlocks(n - done, kThreads), kThreads, 0, stream>>>(out + done, gate + done,
                                                                                         up + done, n - done);
  checkLaunch("swiglu_forward_kernel");
}

void swigluBackward(cudaStream_t stream, float* dgate, float* dup, const float* dout, const float* gate,
                    const float* up, size_t n) {
  if (n == 0) return;
  size_t done = 0;
  if (aligned16({dgate, dup, dout, gate, up}) && n >= 4) {
    const size_t n4 = n / 4;
    swiglu_backward_vec4_kernel<<<elementwiseBlocks(n4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(dgate), reinterpret_cast<float4*>(dup), reinterpret_cast<const float4*>(dout),
        reinterpret_cast<const float4*>(gate), reinterpret_cast<const float4*>(up), n4);
    checkLaunch("swiglu_backward_vec4_kernel");
    done = 4 * n4;
  }
  if (done == n) return;
  swiglu_backward_kernel<<<elementwiseBlocks(n - done, kThreads), kThreads, 0, stream>>>(
      dgate + done, dup + done, dout + done, gate + done, up + done, n - done);
  checkLaunch("swiglu_backward_kernel");
}

void dropoutForward(cudaStream_t stream, float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  const float keepScale = 1.0f / (1.0f - p);
  dropout_forward_kernel<<<elementwiseBlocks(n, kThreads), kThreads, 0, stream>>>(out, inp, n, p, keepScale, seed,
                                                                                  offset);
  checkLaunch("dropout_forward_kernel");
}

void dropoutBackward(cudaStream_t stream, float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  const float keepScale = 1.0f / (1.0f - p);
  dropout_backward_kernel<<<elementwiseBlocks(n, kThreads), kThreads, 0, stream>>>(dinp, dout, n, p, keepScale,
                                                                                   seed, offset);
  checkLaunch("dropout_backward_kernel");
}

void embeddingForward(cudaStream_t stream, float* out, const int32_t* tokens, const float* wte, int N, int C) {
  const size_t n = size_t(N) * C;
  if (n == 0) return;
  embedding_forward_kernel<<<elementwiseBlocks(n, kThreads), kThreads, 0, stream>>>(out, tokens, wte, N, C);
  checkLaunch("embedding_forward_kernel");
}

void embeddingBackward(cudaStream_t stream, float* dwte, const float* dout, const int32_t* tokens, int N, int C,
                       int V) {
  (void)V;
  if (N <= 0 || C <= 0) return;
  constexpr int kCols = 128;
  embedding_backward_kernel<<<ceilDiv(C, kCols), kCols, 0, stream>>>(dwte, dout, tokens, N, C);
  checkLaunch("embedding_backward_kernel");
}

}  // namespace pl::cuda
