// CUDA kernel, compiled by nvcc without framework headers.
//
// The op is memory-bound (8 bytes read, 8 written per element), so the kernel is shaped for
// bandwidth: 16-byte vector loads and stores, coalesced across a warp, several independent
// loads in flight per thread, and a scalar path for the unaligned head/tail.
#include <cuda_runtime.h>

#include "addsub_kernel.h"

namespace {

constexpr int kThreads = 256;
constexpr int kVectorsPerThread = 4;  // independent float4 loads in flight per input

__global__ void AddSubVector(const float4* __restrict__ a, const float4* __restrict__ b,
                             float4* __restrict__ sum, float4* __restrict__ diff,
                             int64_t vectors) {
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * kThreads * kVectorsPerThread + threadIdx.x;
  float4 x[kVectorsPerThread];
  float4 y[kVectorsPerThread];
#pragma unroll
  for (int k = 0; k < kVectorsPerThread; ++k) {
    const int64_t i = first + static_cast<int64_t>(k) * kThreads;
    if (i < vectors) {
      x[k] = __ldg(a + i);
      y[k] = __ldg(b + i);
    }
  }
#pragma unroll
  for (int k = 0; k < kVectorsPerThread; ++k) {
    const int64_t i = first + static_cast<int64_t>(k) * kThreads;
    if (i < vectors) {
      sum[i] = make_float4(x[k].x + y[k].x, x[k].y + y[k].y, x[k].z + y[k].z, x[k].w + y[k].w);
      diff[i] = make_float4(x[k].x - y[k].x, x[k].y - y[k].y, x[k].z - y[k].z, x[k].w - y[k].w);
    }
  }
}

__global__ void AddSubScalar(const float* __restrict__ a, const float* __restrict__ b,
                             float* __restrict__ sum, float* __restrict__ diff, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float x = a[i];
    const float y = b[i];
    sum[i] = x + y;
    diff[i] = x - y;
  }
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

int64_t CeilDiv(int64_t x, int64_t y) { return (x + y - 1) / y; }

}  // namespace

extern "C" int trtis_addsub_cuda(const float* a, const float* b, float* sum, float* diff,
                                 int64_t n, void* stream_handle) {
  if (n <= 0) return 0;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  int64_t head = 0;  // elements done by the vector kernel
  if (Aligned16(a) && Aligned16(b) && Aligned16(sum) && Aligned16(diff)) {
    const int64_t vectors = n / 4;
    if (vectors > 0) {
      const int64_t blocks = CeilDiv(vectors, int64_t{kThreads} * kVectorsPerThread);
      AddSubVector<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b),
          reinterpret_cast<float4*>(sum), reinterpret_cast<float4*>(diff), vectors);
      head = vectors * 4;
    }
  }
  const int64_t rest = n - head;
  if (rest > 0) {
    const int64_t blocks = CeilDiv(rest, kThreads) < 4096 ? CeilDiv(rest, kThreads) : 4096;
    AddSubScalar<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        a + head, b + head, sum + head, diff + head, rest);
  }
  return static_cast<int>(cudaGetLastError());
}

extern "C" const char* trtis_addsub_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
