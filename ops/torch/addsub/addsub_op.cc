// PyTorch adapter for trtis::add_sub, on the LibTorch stable ABI: one build loads in every
// torch from its target version on. The math lives in addsub_kernel.{cc,cu}; this file only
// checks and moves tensors.
#include "addsub_kernel.h"

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include <tuple>

#if TRTIS_WITH_CUDA
#include <dlfcn.h>
#include <torch/csrc/stable/accelerator.h>
#endif

namespace {

using torch::stable::Tensor;

// Both inputs float32, one shape, one device; returns them contiguous.
std::tuple<Tensor, Tensor> checked_inputs(const Tensor& x, const Tensor& y) {
  STD_TORCH_CHECK(x.scalar_type() == torch::headeronly::ScalarType::Float &&
                      y.scalar_type() == torch::headeronly::ScalarType::Float,
                  "trtis::add_sub: x and y must be float32");
  STD_TORCH_CHECK(x.dim() == y.dim(), "trtis::add_sub: x and y must have one shape");
  for (int64_t d = 0; d < x.dim(); ++d) {
    STD_TORCH_CHECK(x.size(d) == y.size(d), "trtis::add_sub: x and y must have one shape");
  }
  STD_TORCH_CHECK(x.get_device() == y.get_device(), "trtis::add_sub: x and y must be on one device");
  return {torch::stable::contiguous(x), torch::stable::contiguous(y)};
}

std::tuple<Tensor, Tensor> add_sub_cpu(Tensor x, Tensor y) {
  auto [a, b] = checked_inputs(x, y);
  Tensor sum = torch::stable::empty_like(a);
  Tensor difference = torch::stable::empty_like(a);
  trtis_addsub_cpu(a.const_data_ptr<float>(), b.const_data_ptr<float>(), sum.mutable_data_ptr<float>(),
                   difference.mutable_data_ptr<float>(), a.numel());
  return {sum, difference};
}

// The fake (meta) kernel: shapes only, so torch.compile and torch.export can trace models
// that call the op. It reads no sizes: under torch.export a size read here would fix a
// dynamic dimension to the example's value (the real kernels check the shapes).
std::tuple<Tensor, Tensor> add_sub_meta(Tensor x, Tensor y) {
  return {torch::stable::empty_like(x), torch::stable::empty_like(x)};
}

#if TRTIS_WITH_CUDA
// torch's current-stream getter for CUDA lives in libtorch_cuda, which CPU builds of torch
// do not have: it is looked up when a CUDA tensor arrives (torch's CUDA library is loaded
// then), so this library still loads in a CPU-only torch.
void* current_cuda_stream(int32_t device) {
  using Getter = int32_t (*)(int32_t, void**);
  static Getter getter = [] {
    void* found = dlsym(RTLD_DEFAULT, "aoti_torch_get_current_cuda_stream");
    if (found == nullptr) {
      if (void* cuda = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD)) {
        found = dlsym(cuda, "aoti_torch_get_current_cuda_stream");
      }
    }
    return reinterpret_cast<Getter>(found);
  }();
  STD_TORCH_CHECK(getter != nullptr, "trtis::add_sub: torch's CUDA stream API is not loaded");
  void* stream = nullptr;
  STD_TORCH_CHECK(getter(device, &stream) == 0, "trtis::add_sub: cannot get the current CUDA stream");
  return stream;
}

std::tuple<Tensor, Tensor> add_sub_cuda(Tensor x, Tensor y) {
  auto [a, b] = checked_inputs(x, y);
  // The inputs' device, not the current one: the stream and the launch must be on it.
  torch::stable::accelerator::DeviceGuard guard(a.get_device_index());
  Tensor sum = torch::stable::empty_like(a);
  Tensor difference = torch::stable::empty_like(a);
  const int code = trtis_addsub_cuda(a.const_data_ptr<float>(), b.const_data_ptr<float>(),
                                     sum.mutable_data_ptr<float>(), difference.mutable_data_ptr<float>(),
                                     a.numel(), current_cuda_stream(a.get_device_index()));
  STD_TORCH_CHECK(code == 0, "trtis::add_sub: CUDA kernel failed: ", trtis_addsub_cuda_error_string(code));
  return {sum, difference};
}
#endif

}  // namespace

STABLE_TORCH_LIBRARY(trtis, m) {
  m.def("add_sub(Tensor x, Tensor y) -> (Tensor sum, Tensor difference)");
}

STABLE_TORCH_LIBRARY_IMPL(trtis, CPU, m) {
  m.impl("add_sub", TORCH_BOX(&add_sub_cpu));
}

STABLE_TORCH_LIBRARY_IMPL(trtis, Meta, m) {
  m.impl("add_sub", TORCH_BOX(&add_sub_meta));
}

#if TRTIS_WITH_CUDA
STABLE_TORCH_LIBRARY_IMPL(trtis, CUDA, m) {
  m.impl("add_sub", TORCH_BOX(&add_sub_cuda));
}
#endif
