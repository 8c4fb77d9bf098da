// CUDA kernel, compiled by nvcc without framework headers.
//
// The op is memory-bound: per element it reads 8 bytes and writes 8, with two flops. Its
// floor is the bytes over the device's copy bandwidth, so the kernel is shaped for that:
//  - 16-byte (float4) loads and stores, coalesced across each warp;
//  - every load of a thread issued before the first use (kUnroll float4s per input; with
//    the default of 1 that is 2 independent 16-byte loads per thread, 64 KiB in flight per
//    SM at full occupancy). Measured on an H200 (benchmarks/results/): 1 float4 per input
//    per thread reached 99-100% of the device-to-device copy bandwidth, 2, 4 and 8 only
//    96-97%: many short blocks keep the memory system busier than fewer, longer threads;
//  - one launch for any size: the few elements before the first 16-byte boundary and after
//    the last are done by block 0 in the same kernel (no second launch for small tensors);
//  - 64-bit indices and a grid capped below the gridDim.x limit with a grid-stride loop, so
//    n above 2^31 elements works;
//  - views whose four pointers sit at different offsets from a 16-byte boundary cannot use
//    float4 for all of them: a scalar kernel with the same unrolling handles that case.
//
// The TRTIS_KERNEL_* macros exist so that benchmarks/kernel_bench.py can sweep variants;
// the defaults are the measured best (see benchmarks/results/).
#include <cuda_runtime.h>
#include <stdint.h>

#include "addsub_kernel.h"

#ifndef TRTIS_KERNEL_THREADS
#define TRTIS_KERNEL_THREADS 256
#endif
#ifndef TRTIS_KERNEL_VECTOR_UNROLL
#define TRTIS_KERNEL_VECTOR_UNROLL 1
#endif
// Floats per input per thread on the scalar path (pointers at different 16-byte offsets).
#ifndef TRTIS_KERNEL_SCALAR_UNROLL
#define TRTIS_KERNEL_SCALAR_UNROLL 4
#endif
// Grid size cap; the default is the gridDim.x limit (one tile per block, no loop in practice).
#ifndef TRTIS_KERNEL_MAX_BLOCKS
#define TRTIS_KERNEL_MAX_BLOCKS 0x7fffffff
#endif
// 1: stores with the evict-first ("streaming") hint. Off unless measured faster.
#ifndef TRTIS_KERNEL_STREAMING_STORES
#define TRTIS_KERNEL_STREAMING_STORES 0
#endif

namespace {

constexpr int kThreads = TRTIS_KERNEL_THREADS;
constexpr int kVectorUnroll = TRTIS_KERNEL_VECTOR_UNROLL;
constexpr int kScalarUnroll = TRTIS_KERNEL_SCALAR_UNROLL;
constexpr int64_t kMaxBlocks = TRTIS_KERNEL_MAX_BLOCKS;  // <= the gridDim.x limit 2^31-1

__device__ __forceinline__ void Store(float4* p, float4 v) {
#if TRTIS_KERNEL_STREAMING_STORES
  __stcs(p, v);
#else
  *p = v;
#endif
}

__device__ __forceinline__ void Store(float* p, float v) {
#if TRTIS_KERNEL_STREAMING_STORES
  __stcs(p, v);
#else
  *p = v;
#endif
}

__device__ __forceinline__ float4 Add(float4 x, float4 y) {
  return make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
}
__device__ __forceinline__ float4 Sub(float4 x, float4 y) {
  return make_float4(x.x - y.x, x.y - y.y, x.z - y.z, x.w - y.w);
}
__device__ __forceinline__ float Add(float x, float y) { return x + y; }
__device__ __forceinline__ float Sub(float x, float y) { return x - y; }

// One pass of a block over kThreads * kUnroll consecutive elements of type T (float4 or
// float). `full` lets the compiler drop the bounds checks for every tile but the last one.
template <typename T, int kUnroll, bool full>
__device__ __forceinline__ void Tile(const T* __restrict__ a, const T* __restrict__ b,
                                     T* __restrict__ sum, T* __restrict__ diff, int64_t first,
                                     int64_t count) {
  T x[kUnroll];
  T y[kUnroll];
  // All loads first: kUnroll * 2 independent requests in flight before any arithmetic.
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const int64_t i = first + int64_t{k} * kThreads;
    if (full || i < count) {
      x[k] = __ldg(a + i);
      y[k] = __ldg(b + i);
    }
  }
#pragma unroll
  for (int k = 0; k < kUnroll; ++k) {
    const int64_t i = first + int64_t{k} * kThreads;
    if (full || i < count) {
      Store(sum + i, Add(x[k], y[k]));
      Store(diff + i, Sub(x[k], y[k]));
    }
  }
}

// Grid-stride over tiles of `count` elements of type T starting at the given pointers.
template <typename T, int kUnroll>
__device__ __forceinline__ void Body(const T* __restrict__ a, const T* __restrict__ b,
                                     T* __restrict__ sum, T* __restrict__ diff, int64_t count) {
  constexpr int64_t kTile = int64_t{kThreads} * kUnroll;
  const int64_t full_tiles = count / kTile;
  const int64_t tiles = full_tiles + (count % kTile != 0);
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * kTile + threadIdx.x;
    if (tile < full_tiles) {
      Tile<T, kUnroll, true>(a, b, sum, diff, first, count);
    } else {
      Tile<T, kUnroll, false>(a, b, sum, diff, first, count);
    }
  }
}

// All four pointers share one offset from a 16-byte boundary: `head` (0..3) scalars up to
// that boundary, `vectors` float4s, then n - head - 4 * vectors (0..3) scalars.
__global__ void __launch_bounds__(kThreads)
    AddsubVector(const float* __restrict__ a, const float* __restrict__ b,
                 float* __restrict__ sum, float* __restrict__ diff, int64_t head,
                 int64_t vectors, int64_t n) {
  if (blockIdx.x == 0 && threadIdx.x < 8) {
    // Threads 0-3 take the head, 4-7 the tail.
    const int t = threadIdx.x;
    const int64_t i = t < 4 ? t : head + 4 * vectors + (t - 4);
    if ((t < 4 && i < head) || (t >= 4 && i < n)) {
      const float x = a[i];
      const float y = b[i];
      sum[i] = x + y;
      diff[i] = x - y;
    }
  }
  Body<float4, kVectorUnroll>(
      reinterpret_cast<const float4*>(a + head), reinterpret_cast<const float4*>(b + head),
      reinterpret_cast<float4*>(sum + head), reinterpret_cast<float4*>(diff + head), vectors);
}

// Pointers at different offsets from a 16-byte boundary: 4-byte accesses, still coalesced
// and unrolled.
__global__ void __launch_bounds__(kThreads)
    AddsubScalar(const float* __restrict__ a, const float* __restrict__ b,
                 float* __restrict__ sum, float* __restrict__ diff, int64_t n) {
  Body<float, kScalarUnroll>(a, b, sum, diff, n);
}

unsigned Blocks(int64_t work, int unroll) {
  const int64_t tile = int64_t{kThreads} * unroll;
  const int64_t tiles = (work + tile - 1) / tile;
  if (tiles < 1) return 1;
  return static_cast<unsigned>(tiles < kMaxBlocks ? tiles : kMaxBlocks);
}

int64_t MisalignedFloats(const void* p) {
  return static_cast<int64_t>((reinterpret_cast<uintptr_t>(p) & 15u) / sizeof(float));
}

}  // namespace

// The launchers stay exported when the build compiles with -fvisibility=hidden: the bundle's
// kernel library (kernels/<framework>-<op>.so) is opened with dlopen by the GPU harness,
// which looks them up by name.
#define TRTIS_KERNEL_EXPORT extern "C" __attribute__((visibility("default")))

TRTIS_KERNEL_EXPORT int trtis_addsub_cuda(const float* a, const float* b, float* sum,
                                          float* diff, int64_t n, void* stream_handle) {
  if (n == 0) return static_cast<int>(cudaSuccess);
  if (n < 0 || !a || !b || !sum || !diff) return static_cast<int>(cudaErrorInvalidValue);
  // A float pointer that is not 4-byte aligned would fault inside the kernel and poison the
  // context; refuse it here instead.
  const uintptr_t any_bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                             reinterpret_cast<uintptr_t>(sum) | reinterpret_cast<uintptr_t>(diff);
  if (any_bits & 3u) return static_cast<int>(cudaErrorMisalignedAddress);

  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t offset = MisalignedFloats(a);
  if (offset == MisalignedFloats(b) && offset == MisalignedFloats(sum) &&
      offset == MisalignedFloats(diff)) {
    const int64_t head = offset == 0 ? 0 : (4 - offset < n ? 4 - offset : n);
    const int64_t vectors = (n - head) / 4;
    AddsubVector<<<Blocks(vectors, kVectorUnroll), kThreads, 0, stream>>>(a, b, sum, diff, head,
                                                                          vectors, n);
  } else {
    AddsubScalar<<<Blocks(n, kScalarUnroll), kThreads, 0, stream>>>(a, b, sum, diff, n);
  }
  return static_cast<int>(cudaGetLastError());
}

TRTIS_KERNEL_EXPORT const char* trtis_addsub_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
