// Classic layout: op registration and kernels in one .cc, the GPU functor in add_one.cu.cc.
#include "add_one.h"

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

using namespace tensorflow;  // the classic examples are written this way

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = Eigen::GpuDevice;

REGISTER_OP("TRTISClassicAddOne")
    .Attr("T: {float, int32}")
    .Input("input: T")
    .Output("output: T")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

template <typename T>
struct AddOneFunctor<CPUDevice, T> {
  void operator()(const CPUDevice& d, int size, const T* in, T* out) {
    for (int i = 0; i < size; ++i) out[i] = in[i] + T(1);
  }
};

template <typename Device, typename T>
class AddOneOp : public OpKernel {
 public:
  explicit AddOneOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, input.shape(), &output));
    AddOneFunctor<Device, T>()(context->eigen_device<Device>(),
                               static_cast<int>(input.NumElements()),
                               input.flat<T>().data(), output->flat<T>().data());
  }
};

#define REGISTER_CPU(T) \
  REGISTER_KERNEL_BUILDER(Name("TRTISClassicAddOne").Device(DEVICE_CPU).TypeConstraint<T>("T"), \
                          AddOneOp<CPUDevice, T>);
REGISTER_CPU(float);
REGISTER_CPU(int32);

#if GOOGLE_CUDA
#define REGISTER_GPU(T)                                                           \
  extern template struct AddOneFunctor<GPUDevice, T>;                            \
  REGISTER_KERNEL_BUILDER(                                                        \
      Name("TRTISClassicAddOne").Device(DEVICE_GPU).TypeConstraint<T>("T"),      \
      AddOneOp<GPUDevice, T>);
REGISTER_GPU(float);
REGISTER_GPU(int32);
#endif
