// Fixture: a TensorRT IPluginV3 plugin (y = scale * x) registered the static way, with
// REGISTER_TENSORRT_PLUGIN and no getCreators or setLoggerFinder of its own. Written for
// trtis-build's tests in the style of older plugin code; CPU-only (enqueue needs no kernel
// here: it reports that it has none).
#include <NvInferRuntime.h>

#include <cstring>
#include <new>

using namespace nvinfer1;

namespace {
char const* const kName = "StaticScale";
char const* const kVersion = "1";
}  // namespace

class StaticScalePlugin : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
 public:
  explicit StaticScalePlugin(float scale) : mScale(scale) {
    mField = PluginField("scale", &mScale, PluginFieldType::kFLOAT32, 1);
    mFields = PluginFieldCollection{1, &mField};
  }
  StaticScalePlugin(StaticScalePlugin const& other) : StaticScalePlugin(other.mScale) {}

  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    if (type == PluginCapabilityType::kCORE) return static_cast<IPluginV3OneCore*>(this);
    if (type == PluginCapabilityType::kBUILD) return static_cast<IPluginV3OneBuild*>(this);
    return static_cast<IPluginV3OneRuntime*>(this);
  }
  IPluginV3* clone() noexcept override { return new (std::nothrow) StaticScalePlugin(*this); }
  char const* getPluginName() const noexcept override { return kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return ""; }

  int32_t getNbOutputs() const noexcept override { return 1; }
  int32_t getOutputDataTypes(DataType* out, int32_t nbOut, DataType const* in, int32_t nbIn) const noexcept override {
    if (nbIn != 1 || nbOut != 1 || in[0] != DataType::kFLOAT) return -1;
    out[0] = DataType::kFLOAT;
    return 0;
  }
  int32_t getOutputShapes(DimsExprs const* in, int32_t nbIn, DimsExprs const*, int32_t, DimsExprs* out, int32_t nbOut,
                          IExprBuilder&) noexcept override {
    if (nbIn != 1 || nbOut != 1) return -1;
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
  int32_t enqueue(PluginTensorDesc const*, PluginTensorDesc const*, void const* const*, void* const*, void*,
                  cudaStream_t) noexcept override {
    return -1;  // no device kernel in this fixture
  }
  IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }
  PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &mFields; }

 private:
  float mScale;
  PluginField mField;
  PluginFieldCollection mFields;
};

class StaticScalePluginCreator : public IPluginCreatorV3One {
 public:
  StaticScalePluginCreator() {
    mDeclared = PluginField("scale", nullptr, PluginFieldType::kFLOAT32, 1);
    mFieldNames = PluginFieldCollection{1, &mDeclared};
  }
  char const* getPluginName() const noexcept override { return kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return ""; }
  PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldNames; }
  IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
    float scale = 1.0f;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
      if (std::strcmp(fc->fields[i].name, "scale") == 0 && fc->fields[i].type == PluginFieldType::kFLOAT32) {
        scale = *static_cast<float const*>(fc->fields[i].data);
      }
    }
    return new (std::nothrow) StaticScalePlugin(scale);
  }

 private:
  PluginField mDeclared;
  PluginFieldCollection mFieldNames;
};

REGISTER_TENSORRT_PLUGIN(StaticScalePluginCreator);
