// A deliberately broken addsub launcher for the GPU tests: it processes one element past
// the view (reads a[n], b[n], writes sum[n], diff[n]). The harness's guard bands and
// compute-sanitizer memcheck must both catch it.
#include <cuda_runtime.h>
#include <stdint.h>

__global__ void Overrun(const float* a, const float* b, float* sum, float* diff, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i <= n) {  // the planted bug: <= instead of <
    sum[i] = a[i] + b[i];
    diff[i] = a[i] - b[i];
  }
}

extern "C" int trtis_addsub_cuda(const float* a, const float* b, float* sum, float* diff,
                                 int64_t n, void* stream) {
  if (n <= 0) return 0;
  Overrun<<<static_cast<unsigned>((n + 256) / 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      a, b, sum, diff, n);
  return static_cast<int>(cudaGetLastError());
}

extern "C" const char* trtis_addsub_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
