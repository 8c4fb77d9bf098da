// TensorFlow adapter for TRTISExampleAddSub: op registration, shape function, and the CPU
// and GPU OpKernels. The math lives in addsub_kernel.{cc,cu}; this file only moves tensors.
#include "addsub_kernel.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#if TRTIS_WITH_CUDA
#include "xla/stream_executor/stream.h"  // Stream::platform_specific_handle()
#endif

namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("TRTISExampleAddSub")
    .Input("x: float")
    .Input("y: float")
    .Output("sum: float")
    .Output("difference: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle shape;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &shape));
      c->set_output(0, shape);
      c->set_output(1, shape);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Elementwise sum and difference of two float tensors of one shape.
sum: x + y
difference: x - y
)doc");

// Allocates both outputs; returns false (with the error set on ctx) when the inputs differ.
bool PrepareOutputs(OpKernelContext* ctx, Tensor** sum, Tensor** difference) {
  const Tensor& x = ctx->input(0);
  const Tensor& y = ctx->input(1);
  if (x.shape() != y.shape()) {
    ctx->SetStatus(absl::InvalidArgumentError(
        absl::StrCat("TRTISExampleAddSub: x and y must have one shape, got ",
                     x.shape().DebugString(), " and ", y.shape().DebugString())));
    return false;
  }
  for (int index : {0, 1}) {
    const absl::Status status = ctx->allocate_output(index, x.shape(), index == 0 ? sum : difference);
    if (!status.ok()) {
      ctx->SetStatus(status);
      return false;
    }
  }
  return true;
}

class AddsubCpuOp : public OpKernel {
 public:
  explicit AddsubCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Tensor *sum = nullptr, *difference = nullptr;
    if (!PrepareOutputs(ctx, &sum, &difference)) return;
    trtis_addsub_cpu(ctx->input(0).flat<float>().data(), ctx->input(1).flat<float>().data(),
                     sum->flat<float>().data(), difference->flat<float>().data(),
                     ctx->input(0).NumElements());
  }
};

REGISTER_KERNEL_BUILDER(Name("TRTISExampleAddSub").Device(tensorflow::DEVICE_CPU), AddsubCpuOp);

#if TRTIS_WITH_CUDA
class AddsubGpuOp : public OpKernel {
 public:
  explicit AddsubGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Tensor *sum = nullptr, *difference = nullptr;
    if (!PrepareOutputs(ctx, &sum, &difference)) return;
    // TensorFlow's compute stream for this op, as an opaque cudaStream_t.
    void* stream = ctx->op_device_context()->stream()->platform_specific_handle().stream;
    const int code = trtis_addsub_cuda(
        ctx->input(0).flat<float>().data(), ctx->input(1).flat<float>().data(),
        sum->flat<float>().data(), difference->flat<float>().data(),
        ctx->input(0).NumElements(), stream);
    OP_REQUIRES(ctx, code == 0,
                absl::InternalError(absl::StrCat("TRTISExampleAddSub CUDA launch failed: ",
                                                 trtis_addsub_cuda_error_string(code))));
  }
};

REGISTER_KERNEL_BUILDER(Name("TRTISExampleAddSub").Device(tensorflow::DEVICE_GPU), AddsubGpuOp);
#endif  // TRTIS_WITH_CUDA

}  // namespace
