// Fixture: an IPluginV3 plugin (clamp to [low, high]) whose plugin object needs a GPU: it
// asks CUDA for the current device when created, and creation fails without one. Uses the
// shared helpers of ../common and exports getCreators the usual way.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <new>
#include <stdexcept>

#include "checks.h"
#include "clampKernel.h"

using namespace nvinfer1;

namespace {
char const* const kName = "GpuClamp";
char const* const kVersion = "1";
char const* const kNamespace = "fixture";

class GpuClampPlugin : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
 public:
  GpuClampPlugin(float low, float high) : mLow(low), mHigh(high) {
    if (cudaGetDevice(&mDevice) != cudaSuccess) throw std::runtime_error("no CUDA device");
    mFields[0] = PluginField("low", &mLow, PluginFieldType::kFLOAT32, 1);
    mFields[1] = PluginField("high", &mHigh, PluginFieldType::kFLOAT32, 1);
    mCollection = PluginFieldCollection{2, mFields};
  }
  GpuClampPlugin(GpuClampPlugin const& other) : GpuClampPlugin(other.mLow, other.mHigh) {}

  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    if (type == PluginCapabilityType::kCORE) return static_cast<IPluginV3OneCore*>(this);
    if (type == PluginCapabilityType::kBUILD) return static_cast<IPluginV3OneBuild*>(this);
    return static_cast<IPluginV3OneRuntime*>(this);
  }
  IPluginV3* clone() noexcept override {
    try {
      return new GpuClampPlugin(*this);
    } catch (...) {
      return nullptr;
    }
  }
  char const* getPluginName() const noexcept override { return kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return kNamespace; }

  int32_t getNbOutputs() const noexcept override { return 1; }
  int32_t getOutputDataTypes(DataType* out, int32_t nbOut, DataType const* in, int32_t nbIn) const noexcept override {
    if (!FIXTURE_CHECK(nbIn == 1 && nbOut == 1 && in[0] == DataType::kFLOAT)) return -1;
    out[0] = DataType::kFLOAT;
    return 0;
  }
  int32_t getOutputShapes(DimsExprs const* in, int32_t nbIn, DimsExprs const*, int32_t, DimsExprs* out, int32_t nbOut,
                          IExprBuilder&) noexcept override {
    if (!FIXTURE_CHECK(nbIn == 1 && nbOut == 1)) return -1;
    out[0] = in[0];
    return 0;
  }
  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t, int32_t) noexcept override {
    return inOut[pos].desc.type == DataType::kFLOAT && inOut[pos].desc.format == TensorFormat::kLINEAR;
  }
  int32_t configurePlugin(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*, int32_t) noexcept override {
    return 0;
  }
  int32_t onShapeChange(PluginTensorDesc const*, int32_t, PluginTensorDesc const*, int32_t) noexcept override { return 0; }
  int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                  void* const* outputs, void*, cudaStream_t stream) noexcept override {
    int64_t n = 1;
    for (int32_t i = 0; i < inDesc[0].dims.nbDims; ++i) n *= inDesc[0].dims.d[i];
    return launchClamp(static_cast<float const*>(inputs[0]), static_cast<float*>(outputs[0]), n, mLow, mHigh, stream);
  }
  IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }
  PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &mCollection; }

 private:
  float mLow;
  float mHigh;
  int mDevice = -1;
  PluginField mFields[2];
  PluginFieldCollection mCollection;
};

class GpuClampCreator : public IPluginCreatorV3One {
 public:
  GpuClampCreator() {
    mDeclared[0] = PluginField("low", nullptr, PluginFieldType::kFLOAT32, 1);
    mDeclared[1] = PluginField("high", nullptr, PluginFieldType::kFLOAT32, 1);
    mFieldNames = PluginFieldCollection{2, mDeclared};
  }
  char const* getPluginName() const noexcept override { return kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return kNamespace; }
  PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldNames; }
  IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
    float low = 0.0f, high = 1.0f;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
      float const value = *static_cast<float const*>(fc->fields[i].data);
      if (std::strcmp(fc->fields[i].name, "low") == 0) low = value;
      if (std::strcmp(fc->fields[i].name, "high") == 0) high = value;
    }
    try {
      return new GpuClampPlugin(low, high);
    } catch (std::exception const& e) {
      fixture::reportFailure(e.what(), __FILE__, __LINE__);
      return nullptr;
    }
  }

 private:
  PluginField mDeclared[2];
  PluginFieldCollection mFieldNames;
};
}  // namespace

extern "C" void setLoggerFinder(ILoggerFinder*) {}

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static GpuClampCreator creator;
  static IPluginCreatorInterface* const creators[] = {&creator};
  nbCreators = 1;
  return creators;
}
