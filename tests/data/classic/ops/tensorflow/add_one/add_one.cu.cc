// Classic layout GPU source: includes TensorFlow headers, compiled by nvcc as CUDA.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#include "add_one.h"
#include "tensorflow/core/util/gpu_kernel_helper.h"

using namespace tensorflow;

template <typename T>
__global__ void AddOneCudaKernel(int size, const T* in, T* out) {
  for (int i : GpuGridRangeX(size)) {
    out[i] = in[i] + T(1);
  }
}

template <typename T>
void AddOneFunctor<Eigen::GpuDevice, T>::operator()(const Eigen::GpuDevice& d, int size,
                                                    const T* in, T* out) {
  if (size == 0) return;
  GpuLaunchConfig config = GetGpuLaunchConfig(size, d);
  TF_CHECK_OK(GpuLaunchKernel(AddOneCudaKernel<T>, config.block_count,
                              config.thread_per_block, 0, d.stream(), size, in, out));
}

template struct AddOneFunctor<Eigen::GpuDevice, float>;
template struct AddOneFunctor<Eigen::GpuDevice, int32>;
#endif  // GOOGLE_CUDA
