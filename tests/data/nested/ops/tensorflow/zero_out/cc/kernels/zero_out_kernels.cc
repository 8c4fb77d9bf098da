// The CPU kernel of both ops, named the way TensorFlow's guides name kernel files.
#include "tensorflow/core/framework/op_kernel.h"

namespace {

class KeepFirst : public tensorflow::OpKernel {
 public:
  explicit KeepFirst(tensorflow::OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(tensorflow::OpKernelContext* context) override {
    const tensorflow::Tensor& input = context->input(0);
    tensorflow::Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, input.shape(), &output));
    auto in = input.flat<tensorflow::int32>();
    auto out = output->flat<tensorflow::int32>();
    for (int64_t i = 0; i < in.size(); ++i) out(i) = i == 0 ? in(0) : 0;
  }
};

}  // namespace

REGISTER_KERNEL_BUILDER(Name("TRTISKeepFirst").Device(tensorflow::DEVICE_CPU), KeepFirst);
REGISTER_KERNEL_BUILDER(Name("TRTIS>ZeroOut").Device(tensorflow::DEVICE_CPU), KeepFirst);
