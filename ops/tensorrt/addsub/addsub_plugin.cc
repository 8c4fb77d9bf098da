// TensorRT adapter for TRTISExampleAddSub: an IPluginV3 plugin (IPluginV3OneCore, -Build and
// -Runtime capabilities) and its IPluginCreatorV3One. The math lives in the TensorFlow
// example's addsub_kernel.{cc,cu}, compiled into this library as well; this file only
// describes tensors to TensorRT and calls the CUDA launcher on TensorRT's stream.
//
// Loading: the library exports getCreators (and setLoggerFinder) and registers nothing when it
// is loaded, so IPluginRegistry::loadLibrary, `trtexec --dynamicPlugins` and engines built
// with setPluginsToSerialize all find it, and TensorRT itself refuses a second library that
// registers the same (name, version, namespace).
//
// Name, version and namespace come from op.toml through trtis_plugin_config.h, which the build
// generates per op (see trtis_build/tensorrt.py: plugin_config_header), so the library and the
// bundle manifest cannot disagree.
#include <NvInferRuntime.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "addsub_kernel.h"
#include "trtis_plugin_config.h"

// The entry points TensorRT looks up with dlsym, as C names: the build exports exactly these
// (an export map, like TensorRT's own build; TENSORRTAPI is empty outside it).
#define TRTIS_EXPORT extern "C"

namespace {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginTensorDesc;
using Severity = nvinfer1::ILogger::Severity;

constexpr char const* kName = TRTIS_PLUGIN_NAME;
constexpr char const* kVersion = TRTIS_PLUGIN_VERSION;
constexpr char const* kNamespace = TRTIS_PLUGIN_NAMESPACE;
constexpr int32_t kInputs = 2;   // x, y
constexpr int32_t kOutputs = 2;  // sum, difference

// Set by TensorRT through setLoggerFinder when it loads the library; stderr until then.
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

// Reports a failure where the caller can see it: the engine's error recorder when the plugin
// runs inside an execution context, else TensorRT's logger. Returns -1 for `return Fail(...)`.
int32_t Fail(nvinfer1::IErrorRecorder* recorder, std::string const& message) noexcept {
  try {
    std::string const text = std::string(kNamespace) + "::" + kName + ": " + message;
    if (recorder != nullptr) {
      recorder->reportError(nvinfer1::ErrorCode::kFAILED_EXECUTION, text.c_str());
    }
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    nvinfer1::ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr) {
      logger->log(Severity::kERROR, text.c_str());
    } else if (recorder == nullptr) {
      std::fprintf(stderr, "%s\n", text.c_str());
    }
  } catch (...) {
    // Out of memory while reporting: nothing more can be said.
  }
  return -1;
}

int64_t Volume(Dims const& dims) {
  int64_t n = 1;
  for (int32_t i = 0; i < dims.nbDims; ++i) n *= dims.d[i];
  return n;
}

bool SameDims(Dims const& a, Dims const& b) {
  if (a.nbDims != b.nbDims) return false;
  for (int32_t i = 0; i < a.nbDims; ++i) {
    if (a.d[i] != b.d[i]) return false;
  }
  return true;
}

std::string DimsText(Dims const& dims) {
  std::string text = "[";
  for (int32_t i = 0; i < dims.nbDims; ++i) {
    text += (i ? "," : "") + std::to_string(dims.d[i]);
  }
  return text + "]";
}

class AddSubPlugin final : public nvinfer1::IPluginV3,
                           public nvinfer1::IPluginV3OneCore,
                           public nvinfer1::IPluginV3OneBuild,
                           public nvinfer1::IPluginV3OneRuntime {
 public:
  AddSubPlugin() = default;
  AddSubPlugin(AddSubPlugin const&) = default;
  ~AddSubPlugin() override = default;

  // --- IPluginV3 -------------------------------------------------------------------------
  nvinfer1::IPluginCapability* getCapabilityInterface(
      nvinfer1::PluginCapabilityType type) noexcept override {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE:
        return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD:
        return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME:
        return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }

  nvinfer1::IPluginV3* clone() noexcept override { return new (std::nothrow) AddSubPlugin(*this); }

  // --- IPluginV3OneCore ------------------------------------------------------------------
  char const* getPluginName() const noexcept override { return kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return kNamespace; }

  // --- IPluginV3OneBuild -----------------------------------------------------------------
  int32_t getNbOutputs() const noexcept override { return kOutputs; }

  int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override {
    if (nbInputs != kInputs || nbOutputs != kOutputs) {
      return Fail(mRecorder, "expects 2 inputs and 2 outputs, got " + std::to_string(nbInputs) +
                                 " and " + std::to_string(nbOutputs));
    }
    if (inputTypes[0] != DataType::kFLOAT || inputTypes[1] != DataType::kFLOAT) {
      return Fail(mRecorder, "x and y must be float32");
    }
    outputTypes[0] = DataType::kFLOAT;
    outputTypes[1] = DataType::kFLOAT;
    return 0;
  }

  int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                          int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept override {
    if (nbInputs != kInputs || nbOutputs != kOutputs) {
      return Fail(mRecorder, "expects 2 inputs and 2 outputs");
    }
    DimsExprs const& x = inputs[0];
    DimsExprs const& y = inputs[1];
    if (x.nbDims != y.nbDims) {
      return Fail(mRecorder, "x and y must have one rank, got " + std::to_string(x.nbDims) +
                                 " and " + std::to_string(y.nbDims));
    }
    DimsExprs shape = x;
    for (int32_t i = 0; i < x.nbDims; ++i) {
      bool const xConst = x.d[i]->isConstant();
      bool const yConst = y.d[i]->isConstant();
      if (xConst && yConst && x.d[i]->getConstantValue() != y.d[i]->getConstantValue()) {
        return Fail(mRecorder, "x and y must have one shape (dimension " + std::to_string(i) + ": " +
                                   std::to_string(x.d[i]->getConstantValue()) + " vs " +
                                   std::to_string(y.d[i]->getConstantValue()) + ")");
      }
      // Keep the better-known extent; symbolic ones are compared again in onShapeChange.
      if (!xConst && yConst) shape.d[i] = y.d[i];
    }
    outputs[0] = shape;
    outputs[1] = shape;
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override {
    if (nbInputs != kInputs || nbOutputs != kOutputs || pos < 0 || pos >= kInputs + kOutputs) {
      return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    return desc.type == DataType::kFLOAT && desc.format == nvinfer1::TensorFormat::kLINEAR;
  }

  int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept override {
    if (nbInputs != kInputs || nbOutputs != kOutputs) {
      return Fail(mRecorder, "expects 2 inputs and 2 outputs");
    }
    if (in[0].desc.dims.nbDims != in[1].desc.dims.nbDims) {
      return Fail(mRecorder, "x and y must have one rank");
    }
    return 0;
  }

  // --- IPluginV3OneRuntime ---------------------------------------------------------------
  int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override {
    if (nbInputs != kInputs || nbOutputs != kOutputs) {
      return Fail(mRecorder, "expects 2 inputs and 2 outputs");
    }
    if (!SameDims(in[0].dims, in[1].dims)) {
      return Fail(mRecorder, "x and y must have one shape, got " + DimsText(in[0].dims) + " and " +
                                 DimsText(in[1].dims));
    }
    if (!SameDims(in[0].dims, out[0].dims) || !SameDims(in[0].dims, out[1].dims)) {
      return Fail(mRecorder, "outputs must have the shape of the inputs");
    }
    return 0;
  }

  int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                  void const* const* inputs, void* const* outputs, void* /*workspace*/,
                  cudaStream_t stream) noexcept override {
    int64_t const n = Volume(inputDesc[0].dims);
#if TRTIS_WITH_CUDA
    int const code = trtis_addsub_cuda(static_cast<float const*>(inputs[0]),
                                       static_cast<float const*>(inputs[1]),
                                       static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]),
                                       n, static_cast<void*>(stream));
    if (code != 0) {
      Fail(mRecorder, std::string("CUDA kernel launch failed: ") + trtis_addsub_cuda_error_string(code));
      return code;
    }
    return 0;
#else
    (void)n, (void)inputs, (void)outputs, (void)stream;
    return Fail(mRecorder, "this library was built without CUDA (trtis-build ops build --no-cuda); "
                           "rebuild it with CUDA to run the plugin");
#endif
  }

  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override {
    AddSubPlugin* attached = new (std::nothrow) AddSubPlugin(*this);
    if (attached != nullptr && context != nullptr) attached->mRecorder = context->getErrorRecorder();
    return attached;
  }

  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override {
    return &mSerialized;  // no attributes: an engine stores only (name, version, namespace)
  }

 private:
  nvinfer1::IErrorRecorder* mRecorder = nullptr;  // the execution context's, once attached
  nvinfer1::PluginFieldCollection mSerialized{0, nullptr};
};

class AddSubCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  char const* getPluginName() const noexcept override { return kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return kNamespace; }

  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldNames; }

  nvinfer1::IPluginV3* createPlugin(char const* /*layerName*/, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase /*phase*/) noexcept override {
    // The plugin has no attributes: a field here is a caller's mistake, not something to ignore.
    if (fc != nullptr && fc->nbFields > 0) {
      char const* field = fc->fields[0].name != nullptr ? fc->fields[0].name : "(unnamed)";
      Fail(nullptr, std::string("takes no attributes, got field '") + field + "'");
      return nullptr;
    }
    return new (std::nothrow) AddSubPlugin();
  }

 private:
  nvinfer1::PluginFieldCollection mFieldNames{0, nullptr};
};

bool IsThisPlugin(char const* name, char const* version) {
  return name != nullptr && version != nullptr && std::strcmp(name, kName) == 0 &&
         std::strcmp(version, kVersion) == 0;
}

}  // namespace

// --- Entry points TensorRT looks up (IPluginRegistry::loadLibrary) ---------------------------

TRTIS_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { gLoggerFinder.store(finder); }

TRTIS_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static AddSubCreator creator;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
  nbCreators = 1;
  return creators;
}

// --- Hooks for `trtis-build ops check` (frameworks/tensorrt/plugin_check/) ---------------
// A test case and a CPU reference, so that the check program can create the plugin with
// real shapes and, on a GPU, compare enqueue with the CPU kernel. TensorRT never calls these.

TRTIS_EXPORT char const* trtis_plugin_check_inputs(char const* name, char const* version) {
  // 1542 elements: the vector body and the scalar tail of the CUDA kernel both run.
  return IsThisPlugin(name, version) ? "float32[2,3,257];float32[2,3,257]" : nullptr;
}

TRTIS_EXPORT int32_t trtis_plugin_reference(char const* name, char const* version,
                                            PluginTensorDesc const* inputDesc, int32_t nbInputs,
                                            void const* const* inputs, PluginTensorDesc const* /*outputDesc*/,
                                            int32_t nbOutputs, void* const* outputs) {
  if (!IsThisPlugin(name, version) || nbInputs != kInputs || nbOutputs != kOutputs) return -1;
  trtis_addsub_cpu(static_cast<float const*>(inputs[0]), static_cast<float const*>(inputs[1]),
                   static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]),
                   Volume(inputDesc[0].dims));
  return 0;
}
