#ifndef FIXTURE_CLAMP_KERNEL_H_
#define FIXTURE_CLAMP_KERNEL_H_
#include <cuda_runtime_api.h>

#include <cstdint>

// Clamps n floats into [low, high] on `stream`; returns 0 or a CUDA error code.
int launchClamp(float const* in, float* out, int64_t n, float low, float high, cudaStream_t stream);
#endif
