#include "checks.h"
#include "clampKernel.h"

namespace {
__global__ void clampKernel(float const* in, float* out, int64_t n, float low, float high) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = fminf(fmaxf(in[i], low), high);
}
}  // namespace

int launchClamp(float const* in, float* out, int64_t n, float low, float high, cudaStream_t stream) {
  if (!FIXTURE_CHECK(n >= 0 && low <= high)) return cudaErrorInvalidValue;
  int const threads = 256;
  if (n > 0) clampKernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream>>>(in, out, n, low, high);
  return static_cast<int>(cudaGetLastError());
}
