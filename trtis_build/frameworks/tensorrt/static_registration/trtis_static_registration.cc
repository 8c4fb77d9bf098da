// getCreators for a plugin library that registers statically: see trtis_static_registration.h.
#include "trtis_static_registration.h"

#include <cstdint>

namespace trtis_static_registration {

std::vector<nvinfer1::IPluginCreatorInterface*>& Creators() {
  static std::vector<nvinfer1::IPluginCreatorInterface*> creators;
  return creators;
}

}  // namespace trtis_static_registration

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  auto& creators = trtis_static_registration::Creators();
  nbCreators = static_cast<int32_t>(creators.size());
  return creators.data();
}

// TensorRT asks loadLibrary libraries for it, and code written for static registration rarely
// has one. Weak: the library's own definition, where it has one, wins.
extern "C" __attribute__((weak)) void setLoggerFinder(nvinfer1::ILoggerFinder*) {}
