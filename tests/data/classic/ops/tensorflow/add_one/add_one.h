#ifndef TRTIS_CLASSIC_ADD_ONE_H_
#define TRTIS_CLASSIC_ADD_ONE_H_

template <typename Device, typename T>
struct AddOneFunctor {
  void operator()(const Device& d, int size, const T* in, T* out);
};

#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#include "unsupported/Eigen/CXX11/Tensor"
template <typename T>
struct AddOneFunctor<Eigen::GpuDevice, T> {
  void operator()(const Eigen::GpuDevice& d, int size, const T* in, T* out);
};
#endif

#endif  // TRTIS_CLASSIC_ADD_ONE_H_
