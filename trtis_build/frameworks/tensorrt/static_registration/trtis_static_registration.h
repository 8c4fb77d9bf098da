// Force-included (-include) into the adapter sources of a TensorRT plugin library that
// registers statically (REGISTER_TENSORRT_PLUGIN) instead of exporting getCreators. The macro
// then collects each creator into the list that the library's getCreators returns
// (trtis_static_registration.cc, compiled into the same library), so the library registers
// through IPluginRegistry::loadLibrary like any other, is checked like any other, and needs
// no libnvinfer at link time (TensorRT's own macro calls getPluginRegistry from a static
// initializer, which a library loaded with loadLibrary cannot reach).
#ifndef TRTIS_STATIC_REGISTRATION_H_
#define TRTIS_STATIC_REGISTRATION_H_
#ifdef __cplusplus

#include <NvInferRuntime.h>

#include <vector>

namespace trtis_static_registration {

// The creators of this library, in registration order (filled by static initializers).
std::vector<nvinfer1::IPluginCreatorInterface*>& Creators();

template <typename Creator>
class Collect {
 public:
  Collect() {
    static Creator creator{};
    Creators().push_back(&creator);
  }
};

}  // namespace trtis_static_registration

#undef REGISTER_TENSORRT_PLUGIN
#define REGISTER_TENSORRT_PLUGIN(name) static ::trtis_static_registration::Collect<name> trtisCollect##name {}

#endif  // __cplusplus
#endif  // TRTIS_STATIC_REGISTRATION_H_
