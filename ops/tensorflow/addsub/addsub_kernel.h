// Framework-agnostic API of the addsub kernels: plain pointers and sizes, no TensorFlow,
// TensorRT or PyTorch types, so one kernel serves every framework's adapter and the harness.
#ifndef TRTIS_ADDSUB_KERNEL_H_
#define TRTIS_ADDSUB_KERNEL_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// sum[i] = a[i] + b[i] and diff[i] = a[i] - b[i] for 0 <= i < n, on host memory.
void trtis_addsub_cpu(const float* a, const float* b, float* sum, float* diff, int64_t n);

// The same on device memory, enqueued on `stream` (a cudaStream_t; NULL is the default
// stream). Returns 0 on success, otherwise a cudaError_t code; never synchronizes.
int trtis_addsub_cuda(const float* a, const float* b, float* sum, float* diff, int64_t n,
                      void* stream);

// Human-readable text for a code returned by trtis_addsub_cuda.
const char* trtis_addsub_cuda_error_string(int code);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TRTIS_ADDSUB_KERNEL_H_
