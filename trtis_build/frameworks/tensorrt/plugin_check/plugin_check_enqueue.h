// plugin_check's --enqueue mode: device buffers, one enqueue on a stream, the comparison with
// the library's CPU reference, an optional raw dump for NumPy, and the timing.
#ifndef TRTIS_PLUGIN_CHECK_ENQUEUE_H_
#define TRTIS_PLUGIN_CHECK_ENQUEUE_H_

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "plugin_check_json.h"
#include "plugin_check_support.h"

namespace trtis_check {

using nvinfer1::IPluginCreatorV3One;
using nvinfer1::IPluginV3OneRuntime;

// trtis_plugin_reference: the CPU result for the plugin's inputs, on host memory; 0 = ok.
using ReferenceFn = int32_t (*)(char const*, char const*, PluginTensorDesc const*, int32_t, void const* const*,
                                PluginTensorDesc const*, int32_t, void* const*);

// Everything learned about one library; failures are collected, never thrown.
struct Report {
  std::vector<std::string> failures;
  std::vector<std::string> warnings;
  // Plugins whose creation failed on a machine without a GPU: not checked, and not failed.
  std::vector<std::string> needs_gpu;
  void Fail(std::string const& where, std::string const& what) { failures.push_back(where + ": " + what); }
};

// Device memory and a stream for one enqueue check, released on every path.
class DeviceSession {
 public:
  explicit DeviceSession(CudaRuntime& cuda) : cuda_(cuda) {}
  ~DeviceSession() {
    for (void* p : buffers_) cuda_.Free(p);
    if (start_) cuda_.EventDestroy(start_);
    if (stop_) cuda_.EventDestroy(stop_);
    if (stream_) cuda_.StreamDestroy(stream_);
  }
  DeviceSession(DeviceSession const&) = delete;
  DeviceSession& operator=(DeviceSession const&) = delete;

  cudaError_t Alloc(size_t bytes, void*& ptr) {
    ptr = nullptr;
    cudaError_t const status = cuda_.Malloc(&ptr, bytes > 0 ? bytes : 1);
    if (status == cudaSuccess) buffers_.push_back(ptr);
    return status;
  }
  cudaError_t Start() {
    cudaError_t status = cuda_.StreamCreate(&stream_);
    if (status == cudaSuccess) status = cuda_.EventCreate(&start_);
    if (status == cudaSuccess) status = cuda_.EventCreate(&stop_);
    return status;
  }
  cudaStream_t stream() const { return stream_; }
  cudaEvent_t start() const { return start_; }
  cudaEvent_t stop() const { return stop_; }

 private:
  CudaRuntime& cuda_;
  std::vector<void*> buffers_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

inline bool CudaOk(cudaError_t status, CudaRuntime const& cuda, std::string const& what, std::string const& where,
            Report& report) {
  if (status == cudaSuccess) return true;
  report.Fail(where, what + ": " + cuda.Message(status));
  return false;
}

inline std::string RecorderText(ResourceContext const& context) {
  std::string text;
  for (auto const& d : context.recorder().Descriptions()) text += (text.empty() ? " (" : "; ") + d;
  return text.empty() ? text : text + ")";
}

// Raw little-endian tensors for an independent NumPy comparison; names listed in the JSON.
inline void DumpTensors(std::string const& dir, IPluginCreatorV3One* creator, std::vector<HostTensor> const& inputs,
                 std::vector<HostTensor> const& outputs, Json& json) {
  std::string base = dir + "/" + creator->getPluginNamespace() + "_" + creator->getPluginName() + "_v" +
                     creator->getPluginVersion();
  json.Key("dump").BeginArray();
  auto write = [&](HostTensor const& t, std::string const& role, size_t i) {
    std::string const file = base + "_" + role + std::to_string(i) + ".bin";
    if (FILE* f = std::fopen(file.c_str(), "wb")) {
      std::fwrite(t.bytes.data(), 1, t.bytes.size(), f);
      std::fclose(f);
      json.BeginObject().Key("file").Str(file).Key("role").Str(role).Key("type").Str(DataTypeName(t.desc.type))
          .Key("shape").Dims(t.desc.dims).EndObject();
    }
  };
  for (size_t i = 0; i < inputs.size(); ++i) write(inputs[i], "input", i);
  for (size_t i = 0; i < outputs.size(); ++i) write(outputs[i], "output", i);
  json.EndArray();
}

// Outputs against the library's CPU reference, one entry per output.
inline void CompareWithReference(ReferenceFn reference, IPluginCreatorV3One* creator, std::vector<PluginTensorDesc> const& in,
                          std::vector<PluginTensorDesc> const& out, std::vector<HostTensor> const& inputs,
                          std::vector<HostTensor> const& outputs, std::string const& where, Report& report,
                          Json& json) {
  if (reference == nullptr) {
    report.warnings.push_back(where + ": no trtis_plugin_reference: enqueue ran but was not compared");
    json.Key("reference").Null();
    return;
  }
  std::vector<HostTensor> expected;
  std::vector<void const*> inPtrs;
  std::vector<void*> refPtrs;
  for (auto const& t : inputs) inPtrs.push_back(t.bytes.data());
  for (auto const& d : out) expected.emplace_back(d);
  for (auto& t : expected) refPtrs.push_back(t.bytes.data());
  if (reference(creator->getPluginName(), creator->getPluginVersion(), in.data(), static_cast<int32_t>(in.size()),
                inPtrs.data(), out.data(), static_cast<int32_t>(out.size()), refPtrs.data()) != 0) {
    report.Fail(where, "trtis_plugin_reference failed for the plugin's own test case");
    return;
  }
  json.Key("reference").BeginArray();
  for (size_t i = 0; i < outputs.size(); ++i) {
    Comparison const c = Compare(outputs[i], expected[i]);
    json.BeginObject().Key("output").Int(static_cast<int64_t>(i)).Key("elements").Int(outputs[i].count())
        .Key("max_abs_error").Num(c.max_abs_error).Key("mismatches").Int(c.mismatches).EndObject();
    if (c.mismatches > 0) {
      int64_t const k = c.first_mismatch;
      report.Fail(where, "enqueue output " + std::to_string(i) + " differs from the CPU reference in " +
                             std::to_string(c.mismatches) + " of " + std::to_string(outputs[i].count()) +
                             " elements (first at " + std::to_string(k) + ": " + std::to_string(outputs[i].Get(k)) +
                             " vs " + std::to_string(expected[i].Get(k)) + ")");
    }
  }
  json.EndArray();
}

// enqueue on device buffers: once for the numbers, then `iterations` times for the timing.
inline void RunEnqueue(IPluginV3OneRuntime* runtime, IPluginCreatorV3One* creator, ReferenceFn reference,
                std::vector<PluginTensorDesc> const& in, std::vector<PluginTensorDesc> const& out, size_t workspace,
                int iterations, std::string const& dumpDir, CudaRuntime& cuda, ResourceContext const& context,
                std::string const& where, Report& report, Json& json) {
  json.Key("enqueue").BeginObject();
  DeviceSession session(cuda);
  std::vector<HostTensor> inputs, outputs;
  std::vector<void const*> dIn;
  std::vector<void*> dOut;
  int64_t bytes = 0;
  bool ok = CudaOk(session.Start(), cuda, "cannot create a CUDA stream", where, report);
  for (size_t i = 0; ok && i < in.size(); ++i) {
    inputs.emplace_back(in[i]);
    inputs.back().Fill(static_cast<uint32_t>(i + 1));
    void* p = nullptr;
    ok = CudaOk(session.Alloc(inputs.back().bytes.size(), p), cuda, "cudaMalloc", where, report) &&
         CudaOk(cuda.Memcpy(p, inputs.back().bytes.data(), inputs.back().bytes.size(), cudaMemcpyHostToDevice),
                cuda, "cudaMemcpy to the device", where, report);
    dIn.push_back(p);
    bytes += static_cast<int64_t>(inputs.back().bytes.size());
  }
  for (size_t i = 0; ok && i < out.size(); ++i) {
    outputs.emplace_back(out[i]);
    void* p = nullptr;
    // NaN-filled outputs: a kernel that writes nothing cannot pass the comparison.
    ok = CudaOk(session.Alloc(outputs.back().bytes.size(), p), cuda, "cudaMalloc", where, report) &&
         CudaOk(cuda.Memset(p, 0xFF, outputs.back().bytes.size()), cuda, "cudaMemset", where, report);
    dOut.push_back(p);
    bytes += static_cast<int64_t>(outputs.back().bytes.size());
  }
  void* dWorkspace = nullptr;
  ok = ok && CudaOk(session.Alloc(workspace, dWorkspace), cuda, "cudaMalloc (workspace)", where, report);
  if (ok && runtime->enqueue(in.data(), out.data(), dIn.data(), dOut.data(), dWorkspace, session.stream()) != 0) {
    report.Fail(where, "enqueue returned an error" + RecorderText(context));
    ok = false;
  }
  ok = ok && CudaOk(cuda.StreamSynchronize(session.stream()), cuda, "the enqueued kernel failed", where, report);
  for (size_t i = 0; ok && i < outputs.size(); ++i) {
    ok = CudaOk(cuda.Memcpy(outputs[i].bytes.data(), dOut[i], outputs[i].bytes.size(), cudaMemcpyDeviceToHost), cuda,
                "cudaMemcpy from the device", where, report);
  }
  if (ok) {
    CompareWithReference(reference, creator, in, out, inputs, outputs, where, report, json);
    if (!dumpDir.empty()) DumpTensors(dumpDir, creator, inputs, outputs, json);
    float ms = 0.0F;
    ok = CudaOk(cuda.EventRecord(session.start(), session.stream()), cuda, "cudaEventRecord", where, report);
    for (int k = 0; ok && k < iterations; ++k) {
      ok = runtime->enqueue(in.data(), out.data(), dIn.data(), dOut.data(), dWorkspace, session.stream()) == 0;
    }
    ok = ok && CudaOk(cuda.EventRecord(session.stop(), session.stream()), cuda, "cudaEventRecord", where, report) &&
         CudaOk(cuda.EventSynchronize(session.stop()), cuda, "timed enqueues failed", where, report) &&
         CudaOk(cuda.EventElapsedTime(&ms, session.start(), session.stop()), cuda, "cudaEventElapsedTime", where,
                report);
    if (ok) {
      double const mean_ms = static_cast<double>(ms) / iterations;
      json.Key("iterations").Int(iterations).Key("bytes_moved").Int(bytes).Key("mean_ms").Num(mean_ms)
          .Key("gb_per_s").Num(mean_ms > 0 ? bytes / (mean_ms * 1e-3) / 1e9 : 0.0);
    }
  }
  json.Key("ok").Bool(ok).EndObject();
}

}  // namespace trtis_check

#endif  // TRTIS_PLUGIN_CHECK_ENQUEUE_H_
