// Op definitions: an int32 tensor in, the same shape out with everything but its first value zeroed.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"

namespace {

tensorflow::Status SameShape(tensorflow::shape_inference::InferenceContext* c) {
  c->set_output(0, c->input(0));
  return tensorflow::Status();
}

}  // namespace

REGISTER_OP("TRTISKeepFirst").Input("to_zero: int32").Output("zeroed: int32").SetShapeFn(SameShape);
REGISTER_OP("TRTIS>ZeroOut").Input("to_zero: int32").Output("zeroed: int32").SetShapeFn(SameShape);
