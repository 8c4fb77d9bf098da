// plugin_check: what `trtis-build ops check` runs on each TensorRT plugin library.
//
// It plays TensorRT's part without TensorRT: the plugin interfaces are header-only abstract
// classes, so this program needs the TensorRT headers (and cuda_runtime_api.h, which they
// include) but no libnvinfer. For each library: dlopen, getCreators, and for each creator:
// (name, version, namespace), create the plugin from its fields, check the capability
// interfaces, output count, data types and shapes (with a minimal IExprBuilder), clone,
// serialize (getFieldsToSerialize) and recreate from the serialized fields, attach to a
// context and run onShapeChange. With --enqueue (a GPU machine): run enqueue on device
// buffers on a stream and compare with the library's CPU reference.
//
// Output: one JSON document on stdout (or --json FILE); each failure also as one line on
// stderr. Exit status: 0 all checks passed, 1 a check failed, 2 bad usage. --expect
// NAME:VERSION:NAMESPACE (repeatable) compares what getCreators returns, over all the
// libraries given, with op.toml's declarations, both ways.
//
// Test cases come from op.toml's [[plugins.tests]] (--cases FILE: inputs, fields, expected
// outputs; see plugin_check_cases.h), else from the optional hooks a trtis-build plugin
// library exports:
//   char const* trtis_plugin_check_inputs(char const* name, char const* version);
//       "float32[2,3,257];float32[2,3,257]": the inputs' types and shapes, or NULL
//   int32_t trtis_plugin_reference(name, version, inputDesc, nbInputs, inputs,
//                                  outputDesc, nbOutputs, outputs);   // host memory, 0 = ok
// --inputs SPEC overrides the hook for every plugin without declared cases.
//
// A plugin whose creation fails on a machine without a usable GPU (its constructor asks CUDA
// for a device) is reported under "needs_gpu" instead of failing: it is checked where a GPU is.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "plugin_check_cases.h"
#include "plugin_check_enqueue.h"
#include "plugin_check_json.h"
#include "plugin_check_support.h"

namespace trtis_check {
namespace {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::IPluginCreatorV3One;
using nvinfer1::IPluginV3;
using nvinfer1::IPluginV3OneBuild;
using nvinfer1::IPluginV3OneCore;
using nvinfer1::IPluginV3OneRuntime;
using nvinfer1::PluginCapabilityType;
using nvinfer1::PluginTensorDesc;

using CheckInputsFn = char const* (*)(char const*, char const*);
using GetCreatorsFn = nvinfer1::IPluginCreatorInterface* const* (*)(int32_t&);
using SetLoggerFinderFn = void (*)(nvinfer1::ILoggerFinder*);

struct Options {
  std::vector<std::string> libraries;
  std::vector<std::string> expect;  // NAME:VERSION:NAMESPACE
  std::string inputs;               // overrides trtis_plugin_check_inputs
  std::string cudart;
  std::string dump_dir;
  std::string json_path;            // write the JSON here instead of stdout
  DeclaredCases cases;              // --cases FILE: op.toml's test cases per plugin
  bool enqueue = false;
  int iterations = 20;
};

std::string PluginLabel(char const* name, char const* version, char const* ns) {
  std::string label = (ns != nullptr && *ns) ? std::string(ns) + "::" : std::string();
  return label + (name ? name : "(null)") + " v" + (version ? version : "(null)");
}

bool SameTriple(IPluginV3OneCore const* core, IPluginCreatorV3One const* creator) {
  auto eq = [](char const* a, char const* b) { return a != nullptr && b != nullptr && std::strcmp(a, b) == 0; };
  return eq(core->getPluginName(), creator->getPluginName()) &&
         eq(core->getPluginVersion(), creator->getPluginVersion()) &&
         eq(core->getPluginNamespace(), creator->getPluginNamespace());
}

// The three capability interfaces of a V3One plugin, checked by their interface kind.
struct Capabilities {
  IPluginV3OneCore* core = nullptr;
  IPluginV3OneBuild* build = nullptr;
  IPluginV3OneRuntime* runtime = nullptr;
};

bool GetCapabilities(IPluginV3* plugin, std::string const& where, Report& report, Capabilities& caps) {
  struct Want {
    PluginCapabilityType type;
    char const* kind;
  };
  Want const wants[] = {{PluginCapabilityType::kCORE, "PLUGIN_V3ONE_CORE"},
                        {PluginCapabilityType::kBUILD, "PLUGIN_V3ONE_BUILD"},
                        {PluginCapabilityType::kRUNTIME, "PLUGIN_V3ONE_RUNTIME"}};
  nvinfer1::IPluginCapability* found[3] = {};
  bool ok = true;
  for (int i = 0; i < 3; ++i) {
    found[i] = plugin->getCapabilityInterface(wants[i].type);
    char const* kind = found[i] ? found[i]->getInterfaceInfo().kind : nullptr;
    if (kind == nullptr || std::strcmp(kind, wants[i].kind) != 0) {
      report.Fail(where, std::string("getCapabilityInterface does not return a ") + wants[i].kind +
                             " interface (got " + (kind ? kind : "nullptr") + ")");
      ok = false;
    }
  }
  if (!ok) return false;
  caps.core = static_cast<IPluginV3OneCore*>(found[0]);
  caps.build = static_cast<IPluginV3OneBuild*>(found[1]);
  caps.runtime = static_cast<IPluginV3OneRuntime*>(found[2]);
  return true;
}

struct OutputInfo {
  std::vector<DataType> types;
  std::vector<Dims> shapes;
};

// getOutputDataTypes and getOutputShapes for constant input shapes; then the same with every
// input extent symbolic, as TensorRT does for dynamic shapes at build time.
bool CheckOutputs(IPluginV3OneBuild* build, TestCase const& tc, std::string const& where, Report& report,
                  OutputInfo& info, Json& json) {
  int32_t const nbIn = static_cast<int32_t>(tc.inputs.size());
  int32_t const nbOut = build->getNbOutputs();
  json.Key("nb_outputs").Int(nbOut);
  if (nbOut <= 0 || nbOut > 64) {
    report.Fail(where, "getNbOutputs returned " + std::to_string(nbOut) + " (expected 1..64)");
    return false;
  }
  std::vector<DataType> inTypes;
  for (auto const& t : tc.inputs) inTypes.push_back(t.type);
  info.types.assign(nbOut, static_cast<DataType>(-1));
  if (build->getOutputDataTypes(info.types.data(), nbOut, inTypes.data(), nbIn) != 0) {
    report.Fail(where, "getOutputDataTypes failed for inputs " + tc.spec);
    return false;
  }
  for (int32_t i = 0; i < nbOut; ++i) {
    if (DataTypeName(info.types[i]) == nullptr) {
      report.Fail(where, "getOutputDataTypes left output " + std::to_string(i) + " without a valid type");
      return false;
    }
  }
  ExprBuilder exprs;
  std::vector<nvinfer1::DimsExprs> in(nbIn), out(nbOut);
  for (int32_t i = 0; i < nbIn; ++i) in[i] = exprs.Constant(tc.inputs[i].dims);
  if (build->getOutputShapes(in.data(), nbIn, nullptr, 0, out.data(), nbOut, exprs) != 0) {
    report.Fail(where, "getOutputShapes failed for inputs " + tc.spec);
    return false;
  }
  info.shapes.resize(nbOut);
  for (int32_t i = 0; i < nbOut; ++i) {
    if (!ExprBuilder::ToDims(out[i], info.shapes[i])) {
      report.Fail(where, "getOutputShapes gave output " + std::to_string(i) +
                             " a missing, symbolic or negative extent for constant inputs " + tc.spec);
      return false;
    }
  }
  json.Key("outputs").BeginArray();
  for (int32_t i = 0; i < nbOut; ++i) {
    json.BeginObject().Key("type").Str(DataTypeName(info.types[i])).Key("shape").Dims(info.shapes[i]).EndObject();
  }
  json.EndArray();
  std::vector<nvinfer1::DimsExprs> symbolic(nbIn), outSymbolic(nbOut);
  for (int32_t i = 0; i < nbIn; ++i) symbolic[i] = exprs.Symbolic(tc.inputs[i].dims.nbDims);
  if (build->getOutputShapes(symbolic.data(), nbIn, nullptr, 0, outSymbolic.data(), nbOut, exprs) != 0 ||
      !ExprBuilder::AllSet(outSymbolic)) {
    report.Fail(where, "getOutputShapes fails or leaves extents unset when the input extents are dynamic (-1)");
    return false;
  }
  return true;
}

std::vector<nvinfer1::DynamicPluginTensorDesc> DynamicDescs(std::vector<PluginTensorDesc> const& descs) {
  std::vector<nvinfer1::DynamicPluginTensorDesc> out(descs.size());
  for (size_t i = 0; i < descs.size(); ++i) {
    out[i].desc = descs[i];
    out[i].min = out[i].max = out[i].opt = descs[i].dims;
  }
  return out;
}

// supportsFormatCombination for the test case at every position, then configurePlugin.
bool CheckFormats(IPluginV3OneBuild* build, std::vector<PluginTensorDesc> const& in,
                  std::vector<PluginTensorDesc> const& out, std::string const& where, Report& report, Json& json,
                  size_t& workspace) {
  std::vector<PluginTensorDesc> all(in);
  all.insert(all.end(), out.begin(), out.end());
  auto dyn = DynamicDescs(all);
  int32_t const nbIn = static_cast<int32_t>(in.size());
  int32_t const nbOut = static_cast<int32_t>(out.size());
  for (int32_t pos = 0; pos < nbIn + nbOut; ++pos) {
    if (!build->supportsFormatCombination(pos, dyn.data(), nbIn, nbOut)) {
      report.Fail(where, "supportsFormatCombination rejects position " + std::to_string(pos) + " (" +
                             DataTypeName(all[pos].type) + ", LINEAR) of its own test case");
      return false;
    }
  }
  if (build->configurePlugin(dyn.data(), nbIn, dyn.data() + nbIn, nbOut) != 0) {
    report.Fail(where, "configurePlugin failed for its own test case");
    return false;
  }
  workspace = build->getWorkspaceSize(dyn.data(), nbIn, dyn.data() + nbIn, nbOut);
  json.Key("workspace_bytes").Int(static_cast<int64_t>(workspace));
  return true;
}

// What getFieldsToSerialize returned, copied: the plugin owns that memory.
struct FieldCopy {
  std::vector<std::string> names;
  std::vector<std::vector<char>> data;
  std::vector<nvinfer1::PluginField> fields;
  nvinfer1::PluginFieldCollection collection{0, nullptr};
};

std::unique_ptr<FieldCopy> CopyFields(nvinfer1::PluginFieldCollection const* fc) {
  auto copy = std::make_unique<FieldCopy>();
  int32_t const n = fc ? fc->nbFields : 0;
  copy->names.reserve(n);
  copy->data.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    copy->names.emplace_back(f.name ? f.name : "");
    size_t const bytes = FieldBytes(f);
    char const* src = static_cast<char const*>(f.data);
    copy->data.emplace_back(src ? src : nullptr, src ? src + bytes : nullptr);
  }
  for (int32_t i = 0; i < n; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    copy->fields.emplace_back(copy->names[i].c_str(), f.data ? copy->data[i].data() : nullptr, f.type, f.length);
  }
  copy->collection.nbFields = n;
  copy->collection.fields = copy->fields.data();
  return copy;
}

bool SameFields(FieldCopy const& a, FieldCopy const& b) {
  if (a.fields.size() != b.fields.size()) return false;
  for (size_t i = 0; i < a.fields.size(); ++i) {
    if (a.names[i] != b.names[i] || a.fields[i].type != b.fields[i].type || a.fields[i].length != b.fields[i].length ||
        a.data[i] != b.data[i]) {
      return false;
    }
  }
  return true;
}

struct PluginDeleter {
  void operator()(IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<IPluginV3, PluginDeleter>;

// Build-phase creation from the creator's own field defaults (fields that carry data), with a
// test case's fields in their place; an exception from the plugin's code becomes `error`.
PluginPtr CreateForBuild(IPluginCreatorV3One* creator, FieldValues* given, Json& json, std::string& error) {
  nvinfer1::PluginFieldCollection const* names = creator->getFieldNames();
  std::vector<nvinfer1::PluginField> defaults;
  json.Key("fields").BeginArray();
  for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i) {
    nvinfer1::PluginField const& f = names->fields[i];
    json.BeginObject().Key("name").Str(f.name ? f.name : "").Key("type").Int(static_cast<int>(f.type))
        .Key("length").Int(f.length).Key("default").Bool(f.data != nullptr).EndObject();
    if (f.data != nullptr) defaults.push_back(f);
  }
  json.EndArray();
  nvinfer1::PluginFieldCollection fc{static_cast<int32_t>(defaults.size()), defaults.data()};
  try {
    return PluginPtr(creator->createPlugin("trtis_check", given ? given->Merge(&fc) : &fc,
                                           nvinfer1::TensorRTPhase::kBUILD));
  } catch (std::exception const& e) {
    error = e.what();
  } catch (...) {
    error = "an exception that is not a std::exception";
  }
  return nullptr;
}

nvinfer1::PluginField const* FindField(nvinfer1::PluginFieldCollection const* fc, std::string const& name,
                                       std::string& known) {
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    char const* n = fc->fields[i].name;
    if (n != nullptr && name == n) return &fc->fields[i];
    known += (known.empty() ? "" : ", ") + std::string(n ? n : "(null)");
  }
  return nullptr;
}

std::string SpecOf(DataType type, Dims const& dims) {
  std::string text = std::string(DataTypeName(type) ? DataTypeName(type) : "?") + "[";
  for (int32_t i = 0; i < dims.nbDims; ++i) text += (i ? "," : "") + std::to_string(dims.d[i]);
  return text + "]";
}

// The outputs' types and shapes against what op.toml's test case expects.
bool CompareOutputs(OutputInfo const& got, std::string const& expected, std::string const& where, Report& report) {
  TestCase want;
  std::string error;
  if (!ParseTestCase(expected, want, error)) {
    report.Fail(where, "bad expected outputs '" + expected + "': " + error);
    return false;
  }
  if (want.inputs.size() != got.types.size()) {
    report.Fail(where, "the plugin has " + std::to_string(got.types.size()) + " outputs, op.toml expects " +
                           std::to_string(want.inputs.size()) + " (" + expected + ")");
    return false;
  }
  for (size_t i = 0; i < got.types.size(); ++i) {
    bool same = want.inputs[i].type == got.types[i] && want.inputs[i].dims.nbDims == got.shapes[i].nbDims;
    for (int32_t d = 0; same && d < got.shapes[i].nbDims; ++d) same = want.inputs[i].dims.d[d] == got.shapes[i].d[d];
    if (!same) {
      report.Fail(where, "output " + std::to_string(i) + " is " + SpecOf(got.types[i], got.shapes[i]) +
                             ", op.toml expects " + SpecOf(want.inputs[i].type, want.inputs[i].dims));
      return false;
    }
  }
  return true;
}

// Whether this machine has a usable GPU, asked once.
bool HaveGpu(CudaRuntime* cuda, std::string& why) {
  if (cuda != nullptr) return true;
  static CudaRuntime probe;
  static std::string reason;
  static bool const found = probe.Load("", reason);
  why = reason;
  return found;
}

// clone(), then getFieldsToSerialize() -> createPlugin(kRUNTIME) -> the same fields again.
PluginPtr CheckCloneAndRecreate(IPluginV3* plugin, Capabilities const& caps, IPluginCreatorV3One* creator,
                                std::string const& where, Report& report, Json& json) {
  PluginPtr clone(plugin->clone());
  Capabilities cloneCaps;
  if (!clone) {
    report.Fail(where, "clone() returned nullptr");
    return nullptr;
  }
  if (!GetCapabilities(clone.get(), where + " (clone)", report, cloneCaps)) return nullptr;
  if (!SameTriple(cloneCaps.core, creator) || cloneCaps.build->getNbOutputs() != caps.build->getNbOutputs()) {
    report.Fail(where, "the clone differs from the original (name, version, namespace or output count)");
    return nullptr;
  }
  auto fields = CopyFields(caps.runtime->getFieldsToSerialize());
  json.Key("serialized_fields").Int(static_cast<int64_t>(fields->fields.size()));
  PluginPtr recreated(creator->createPlugin("trtis_check", &fields->collection, nvinfer1::TensorRTPhase::kRUNTIME));
  Capabilities recCaps;
  if (!recreated) {
    report.Fail(where, "createPlugin(kRUNTIME) returned nullptr for the plugin's own getFieldsToSerialize() fields");
    return nullptr;
  }
  if (!GetCapabilities(recreated.get(), where + " (recreated)", report, recCaps)) return nullptr;
  if (!SameTriple(recCaps.core, creator)) {
    report.Fail(where, "the plugin recreated from its serialized fields reports another name, version or namespace");
    return nullptr;
  }
  auto again = CopyFields(recCaps.runtime->getFieldsToSerialize());
  if (!SameFields(*fields, *again)) {
    report.Fail(where, "serialize -> recreate -> serialize does not give the same fields back");
    return nullptr;
  }
  return recreated;
}

// attachToContext + onShapeChange, as an execution context does before the first enqueue.
PluginPtr AttachAndShape(IPluginV3* plugin, ResourceContext& context, std::vector<PluginTensorDesc> const& in,
                         std::vector<PluginTensorDesc> const& out, std::string const& where, Report& report) {
  Capabilities caps;
  if (!GetCapabilities(plugin, where, report, caps)) return nullptr;
  PluginPtr attached(caps.runtime->attachToContext(&context));
  Capabilities attachedCaps;
  if (!attached) {
    report.Fail(where, "attachToContext returned nullptr");
    return nullptr;
  }
  if (!GetCapabilities(attached.get(), where + " (attached)", report, attachedCaps)) return nullptr;
  if (attachedCaps.runtime->onShapeChange(in.data(), static_cast<int32_t>(in.size()), out.data(),
                                          static_cast<int32_t>(out.size())) != 0) {
    report.Fail(where, "onShapeChange failed for its own test case");
    return nullptr;
  }
  return attached;
}

struct LibraryHooks {
  CheckInputsFn check_inputs = nullptr;
  ReferenceFn reference = nullptr;
};

// One test case (op.toml's, else the library's hook or --inputs) of one creator.
void RunPluginChecks(IPluginCreatorV3One* creator, LibraryHooks const& hooks, DeclaredCase const* declared,
                     Options const& opts, CudaRuntime* cuda, std::string const& where, Report& report, Json& json) {
  FieldValues given;
  if (declared != nullptr) {
    json.Key("case").Int(declared->number);
    for (auto const& f : declared->fields) {
      std::string known, error;
      nvinfer1::PluginField const* field = FindField(creator->getFieldNames(), f.name, known);
      if (field == nullptr) {
        report.Fail(where, "op.toml gives field '" + f.name + "', which the creator does not declare (its fields: " +
                               (known.empty() ? "none" : known) + ")");
        return;
      }
      if (!given.Add(*field, f, error)) {
        report.Fail(where, error);
        return;
      }
    }
  }
  std::string thrown;
  PluginPtr plugin = CreateForBuild(creator, declared ? &given : nullptr, json, thrown);
  Capabilities caps;
  if (!plugin) {
    std::string const what = std::string("createPlugin(kBUILD) ") +
                             (thrown.empty() ? "returned nullptr" : "threw (" + thrown + ")") +
                             (declared ? " with the test case's fields" : " with the creator's default fields");
    std::string why;
    if (!HaveGpu(cuda, why)) {
      report.needs_gpu.push_back(where + ": " + what + " on a machine without a usable GPU (" + why + ")");
      json.Key("needs_gpu").Bool(true);
      return;
    }
    report.Fail(where, what);
    return;
  }
  if (!GetCapabilities(plugin.get(), where, report, caps)) return;
  if (!SameTriple(caps.core, creator)) {
    report.Fail(where, std::string("the plugin reports ") + PluginLabel(caps.core->getPluginName(),
                caps.core->getPluginVersion(), caps.core->getPluginNamespace()) + ", not its creator's triple");
    return;
  }
  std::string spec = declared ? declared->inputs : opts.inputs;
  if (spec.empty() && hooks.check_inputs != nullptr) {
    char const* s = hooks.check_inputs(creator->getPluginName(), creator->getPluginVersion());
    spec = s ? s : "";
  }
  json.Key("inputs").Str(spec);
  if (spec.empty()) {
    report.warnings.push_back(where + ": no test case (declare [[plugins.tests]] with inputs in op.toml): "
                                      "output types, shapes and enqueue were not checked");
    json.Key("nb_outputs").Int(caps.build->getNbOutputs());
    CheckCloneAndRecreate(plugin.get(), caps, creator, where, report, json);
    return;
  }
  TestCase tc;
  std::string error;
  if (!ParseTestCase(spec, tc, error)) {
    report.Fail(where, "bad test case '" + spec + "': " + error);
    return;
  }
  OutputInfo outputs;
  if (!CheckOutputs(caps.build, tc, where, report, outputs, json)) return;
  if (declared != nullptr && !declared->outputs.empty() && !CompareOutputs(outputs, declared->outputs, where, report)) {
    return;
  }
  std::vector<PluginTensorDesc> in = Descs(tc), out = Descs(outputs.types, outputs.shapes);
  size_t workspace = 0;
  if (!CheckFormats(caps.build, in, out, where, report, json, workspace)) return;
  PluginPtr recreated = CheckCloneAndRecreate(plugin.get(), caps, creator, where, report, json);
  if (!recreated) return;
  ResourceContext context;
  PluginPtr attached = AttachAndShape(recreated.get(), context, in, out, where, report);
  if (!attached) return;
  if (opts.enqueue) {
    Capabilities attachedCaps;
    GetCapabilities(attached.get(), where, report, attachedCaps);
    RunEnqueue(attachedCaps.runtime, creator, hooks.reference, in, out, workspace, opts.iterations, opts.dump_dir,
               *cuda, context, where, report, json);
  }
}

void CheckCreator(nvinfer1::IPluginCreatorInterface* iface, LibraryHooks const& hooks, Options const& opts,
                  CudaRuntime* cuda, std::string const& lib, Report& report, Json& json,
                  std::set<std::tuple<std::string, std::string, std::string>>& seen) {
  json.BeginObject();
  nvinfer1::InterfaceInfo const info = iface->getInterfaceInfo();
  std::string const kind = info.kind ? info.kind : "";
  json.Key("interface").Str(kind + " " + std::to_string(info.major) + "." + std::to_string(info.minor));
  if (kind != "PLUGIN CREATOR_V3ONE") {
    report.Fail(lib, "a creator implements '" + kind + "'; trtis-build builds and checks IPluginCreatorV3One creators");
    json.EndObject();
    return;
  }
  auto* creator = static_cast<IPluginCreatorV3One*>(iface);
  char const* name = creator->getPluginName();
  char const* version = creator->getPluginVersion();
  char const* ns = creator->getPluginNamespace();
  std::string const where = lib + ": " + PluginLabel(name, version, ns);
  json.Key("name").Str(name ? name : "").Key("version").Str(version ? version : "").Key("namespace").Str(ns ? ns : "");
  if (!ValidPluginString(name, false) || !ValidPluginString(version, false) || !ValidPluginString(ns, true)) {
    report.Fail(where, "name, version and namespace must be non-null strings of at most 1023 characters "
                       "(letters, digits, '_', '-', '.'); name and version non-empty");
    json.EndObject();
    return;
  }
  if (!seen.insert({name, version, ns}).second) {
    report.Fail(where, "getCreators returns this (name, version, namespace) twice");
  }
  auto declared = opts.cases.find(PluginTriple(name, version, ns));
  if (declared == opts.cases.end()) {
    RunPluginChecks(creator, hooks, nullptr, opts, cuda, where, report, json);
  } else {
    json.Key("cases").BeginArray();
    for (auto const& c : declared->second) {
      json.BeginObject();
      RunPluginChecks(creator, hooks, &c, opts, cuda, where + " (test case " + std::to_string(c.number) + ")", report,
                      json);
      json.EndObject();
    }
    json.EndArray();
  }
  json.EndObject();
}

void CheckLibrary(std::string const& path, Options const& opts, CudaRuntime* cuda, CaptureLogger& logger,
                  Report& report, Json& json, std::set<std::tuple<std::string, std::string, std::string>>& all) {
  json.BeginObject().Key("path").Str(path);
  // A path, never a name for the loader's search; RTLD_LOCAL, as IPluginRegistry::loadLibrary
  // and Triton open plugin libraries.
  std::string const file = path.find('/') == std::string::npos ? "./" + path : path;
  void* handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    char const* err = dlerror();
    report.Fail(path, std::string("cannot be loaded: ") + (err ? err : "unknown dlopen error"));
    json.Key("loaded").Bool(false).EndObject();
    return;
  }
  auto getCreators = reinterpret_cast<GetCreatorsFn>(dlsym(handle, "getCreators"));
  auto setLoggerFinder = reinterpret_cast<SetLoggerFinderFn>(dlsym(handle, "setLoggerFinder"));
  LibraryHooks hooks;
  hooks.check_inputs = reinterpret_cast<CheckInputsFn>(dlsym(handle, "trtis_plugin_check_inputs"));
  hooks.reference = reinterpret_cast<ReferenceFn>(dlsym(handle, "trtis_plugin_reference"));
  json.Key("loaded").Bool(true).Key("exports").BeginObject()
      .Key("getCreators").Bool(getCreators != nullptr).Key("setLoggerFinder").Bool(setLoggerFinder != nullptr)
      .Key("trtis_plugin_check_inputs").Bool(hooks.check_inputs != nullptr)
      .Key("trtis_plugin_reference").Bool(hooks.reference != nullptr).EndObject();
  if (setLoggerFinder == nullptr) {
    report.Fail(path, "does not export setLoggerFinder: define it as an extern \"C\" function (the library "
                      "exports TensorRT's entry points by name; a C++ name is not found)");
  } else {
    setLoggerFinder(&logger);
  }
  json.Key("plugins").BeginArray();
  if (getCreators == nullptr) {
    report.Fail(path, "does not export getCreators, so IPluginRegistry::loadLibrary cannot use it: declare "
                      "extern \"C\" IPluginCreatorInterface* const* getCreators(int32_t&) with default visibility");
  } else {
    int32_t n = -1;
    nvinfer1::IPluginCreatorInterface* const* creators = getCreators(n);
    if (creators == nullptr || n <= 0) {
      report.Fail(path, "getCreators returned no creators (count " + std::to_string(n) + ")");
    }
    for (int32_t i = 0; creators != nullptr && i < n; ++i) {
      if (creators[i] == nullptr) {
        report.Fail(path, "getCreators returned a null creator at index " + std::to_string(i));
        continue;
      }
      CheckCreator(creators[i], hooks, opts, cuda, path, report, json, all);
    }
  }
  json.EndArray().EndObject();
  // The library stays loaded: TensorRT never unloads a library whose plugins may be alive.
}

bool WriteFile(std::string const& path, std::string const& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  bool const ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  return std::fclose(f) == 0 && ok;
}

int Usage(char const* message) {
  std::fprintf(stderr,
               "plugin_check: %s\n"
               "usage: plugin_check [--json FILE] [--enqueue] [--iterations N] [--cudart PATH] [--dump DIR]\n"
               "                    [--inputs 'float32[2,3];float32[2,3]'] [--cases FILE]\n"
               "                    [--expect NAME:VERSION:NAMESPACE]...\n"
               "                    LIBRARY.so...\n",
               message);
  return 2;
}

bool ParseOptions(int argc, char** argv, Options& opts, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    std::string const arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "--enqueue") {
      opts.enqueue = true;
    } else if (arg == "--iterations" && value(v)) {
      opts.iterations = std::max(1, std::atoi(v.c_str()));
    } else if (arg == "--cudart" && value(v)) {
      opts.cudart = v;
    } else if (arg == "--json" && value(v)) {
      opts.json_path = v;
    } else if (arg == "--dump" && value(v)) {
      opts.dump_dir = v;
    } else if (arg == "--inputs" && value(v)) {
      opts.inputs = v;
    } else if (arg == "--cases" && value(v)) {
      if (!ReadCasesFile(v, opts.cases, error)) return false;
    } else if (arg == "--expect" && value(v)) {
      if (std::count(v.begin(), v.end(), ':') != 2) {
        error = "--expect takes NAME:VERSION:NAMESPACE (namespace may be empty), got '" + v + "'";
        return false;
      }
      opts.expect.push_back(v);
    } else if (!arg.empty() && arg[0] == '-') {
      error = "unknown or incomplete option '" + arg + "'";
      return false;
    } else {
      opts.libraries.push_back(arg);
    }
  }
  if (opts.libraries.empty()) error = "no plugin library given";
  return error.empty();
}

// op.toml's declarations against what getCreators returned, both ways.
void CheckExpectations(Options const& opts, std::set<std::tuple<std::string, std::string, std::string>> const& found,
                       Report& report) {
  if (opts.expect.empty()) return;
  std::set<std::tuple<std::string, std::string, std::string>> expected;
  for (auto const& e : opts.expect) {
    size_t const a = e.find(':'), b = e.find(':', a + 1);
    expected.insert({e.substr(0, a), e.substr(a + 1, b - a - 1), e.substr(b + 1)});
  }
  for (auto const& t : expected) {
    if (!found.count(t)) {
      report.Fail("expected", PluginLabel(std::get<0>(t).c_str(), std::get<1>(t).c_str(), std::get<2>(t).c_str()) +
                                  " is declared in op.toml but no library's getCreators returns it");
    }
  }
  for (auto const& t : found) {
    if (!expected.count(t)) {
      report.Fail("expected", PluginLabel(std::get<0>(t).c_str(), std::get<1>(t).c_str(), std::get<2>(t).c_str()) +
                                  " is returned by getCreators but not declared in op.toml");
    }
  }
}

int Main(int argc, char** argv) {
  Options opts;
  std::string error;
  if (!ParseOptions(argc, argv, opts, error)) return Usage(error.c_str());
  Report report;
  std::unique_ptr<CudaRuntime> cuda;
  if (opts.enqueue) {
    cuda = std::make_unique<CudaRuntime>();
    if (!cuda->Load(opts.cudart, error)) {
      // Still check everything else; the report says why enqueue did not run.
      report.Fail("--enqueue", "needs a CUDA runtime and a GPU: " + error);
      cuda.reset();
      opts.enqueue = false;
    }
  }
  CaptureLogger logger;
  Json json;
  json.BeginObject().Key("tensorrt_headers").Str(std::to_string(NV_TENSORRT_MAJOR) + "." +
                                                 std::to_string(NV_TENSORRT_MINOR) + "." +
                                                 std::to_string(NV_TENSORRT_PATCH));
  if (cuda) cuda->Describe(json.Key("device"));
  std::set<std::tuple<std::string, std::string, std::string>> found;
  json.Key("libraries").BeginArray();
  for (auto const& lib : opts.libraries) CheckLibrary(lib, opts, cuda.get(), logger, report, json, found);
  json.EndArray();
  CheckExpectations(opts, found, report);
  json.Key("log").StrArray(logger.messages()).Key("warnings").StrArray(report.warnings)
      .Key("needs_gpu").StrArray(report.needs_gpu).Key("failures").StrArray(report.failures).Key("ok").Bool(report.failures.empty()).EndObject();
  if (opts.json_path.empty()) {
    std::printf("%s\n", json.str().c_str());
  } else if (!WriteFile(opts.json_path, json.str() + "\n")) {
    std::fprintf(stderr, "plugin_check: cannot write %s\n", opts.json_path.c_str());
    return 2;
  }
  for (auto const& f : report.failures) std::fprintf(stderr, "plugin_check: FAIL %s\n", f.c_str());
  return report.failures.empty() ? 0 : 1;
}

}  // namespace
}  // namespace trtis_check

int main(int argc, char** argv) { return trtis_check::Main(argc, argv); }
