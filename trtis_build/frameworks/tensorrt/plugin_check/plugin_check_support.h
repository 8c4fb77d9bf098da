// What plugin_check needs to stand in for TensorRT: data types and test cases, a minimal
// IExprBuilder for constant shapes, a logger, an error recorder and a resource context, and
// the CUDA runtime opened with dlopen (so the program builds and runs its CPU checks without
// libcudart or a GPU).
#ifndef TRTIS_PLUGIN_CHECK_SUPPORT_H_
#define TRTIS_PLUGIN_CHECK_SUPPORT_H_

#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "plugin_check_json.h"

namespace trtis_check {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::PluginTensorDesc;

// ---- Data types -----------------------------------------------------------------------------

struct TypeInfo {
  DataType type;
  char const* name;
  size_t size;
};

inline TypeInfo const* TypeTable(size_t& n) {
  static TypeInfo const table[] = {
      {DataType::kFLOAT, "float32", 4}, {DataType::kHALF, "float16", 2}, {DataType::kBF16, "bfloat16", 2},
      {DataType::kINT8, "int8", 1},     {DataType::kUINT8, "uint8", 1},  {DataType::kINT32, "int32", 4},
      {DataType::kINT64, "int64", 8},   {DataType::kBOOL, "bool", 1},    {DataType::kFP8, "fp8", 1},
  };
  n = sizeof table / sizeof table[0];
  return table;
}

inline TypeInfo const* FindType(DataType type) {
  size_t n;
  TypeInfo const* t = TypeTable(n);
  for (size_t i = 0; i < n; ++i) {
    if (t[i].type == type) return &t[i];
  }
  return nullptr;
}

// nullptr for a value outside TensorRT's DataType enum (a plugin that left a type unset).
inline char const* DataTypeName(DataType type) {
  TypeInfo const* t = FindType(type);
  if (t != nullptr) return t->name;
  int const v = static_cast<int>(type);
  static char const* const others[] = {"int4", "fp4", "e8m0"};
  return v >= 9 && v <= 11 ? others[v - 9] : nullptr;
}

inline bool TypeFromName(std::string const& name, DataType& type) {
  size_t n;
  TypeInfo const* t = TypeTable(n);
  for (size_t i = 0; i < n; ++i) {
    if (name == t[i].name && t[i].type != DataType::kFP8) {
      type = t[i].type;
      return true;
    }
  }
  return false;
}

inline size_t TypeSize(DataType type) {
  TypeInfo const* t = FindType(type);
  return t ? t->size : 0;
}

inline int64_t Volume(Dims const& dims) {
  int64_t n = 1;
  for (int32_t i = 0; i < dims.nbDims; ++i) n *= dims.d[i];
  return n;
}

// ---- Test cases: "float32[2,3,257];float32[2,3,257]" ----------------------------------------

struct TestCase {
  struct Input {
    DataType type;
    Dims dims;
  };
  std::vector<Input> inputs;
  std::string spec;
};

inline bool ParseTestCase(std::string const& spec, TestCase& tc, std::string& error) {
  tc = TestCase{};
  tc.spec = spec;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t const end = std::min(spec.find(';', pos), spec.size());
    std::string const item = spec.substr(pos, end - pos);
    size_t const open = item.find('['), close = item.rfind(']');
    TestCase::Input input{};
    if (open == std::string::npos || close != item.size() - 1 || !TypeFromName(item.substr(0, open), input.type)) {
      error = "each input is TYPE[D0,D1,...] with TYPE one of float32, float16, bfloat16, int8, uint8, int32, "
              "int64, bool; got '" + item + "'";
      return false;
    }
    std::string const dims = item.substr(open + 1, close - open - 1);
    input.dims.nbDims = 0;
    size_t d = 0;
    while (!dims.empty() && d <= dims.size()) {
      size_t const comma = std::min(dims.find(',', d), dims.size());
      char* stop = nullptr;
      std::string const number = dims.substr(d, comma - d);
      long long const value = std::strtoll(number.c_str(), &stop, 10);
      if (number.empty() || *stop != '\0' || value < 0 || input.dims.nbDims == Dims::MAX_DIMS) {
        error = "bad extent list '[" + dims + "]' (at most 8 non-negative integers)";
        return false;
      }
      input.dims.d[input.dims.nbDims++] = value;
      d = comma + 1;
    }
    tc.inputs.push_back(input);
    pos = end + 1;
  }
  return !tc.inputs.empty();
}

inline PluginTensorDesc Desc(DataType type, Dims const& dims) {
  PluginTensorDesc desc{};
  desc.dims = dims;
  desc.type = type;
  desc.format = nvinfer1::TensorFormat::kLINEAR;
  desc.scale = 1.0F;
  return desc;
}

inline std::vector<PluginTensorDesc> Descs(TestCase const& tc) {
  std::vector<PluginTensorDesc> out;
  for (auto const& in : tc.inputs) out.push_back(Desc(in.type, in.dims));
  return out;
}

inline std::vector<PluginTensorDesc> Descs(std::vector<DataType> const& types, std::vector<Dims> const& shapes) {
  std::vector<PluginTensorDesc> out;
  for (size_t i = 0; i < types.size(); ++i) out.push_back(Desc(types[i], shapes[i]));
  return out;
}

// ---- Plugin fields and names ------------------------------------------------------------------

inline size_t FieldBytes(nvinfer1::PluginField const& f) {
  using T = nvinfer1::PluginFieldType;
  size_t unit = 1;
  switch (f.type) {
    case T::kFLOAT16: case T::kINT16: case T::kBF16: unit = 2; break;
    case T::kFLOAT32: case T::kINT32: unit = 4; break;
    case T::kFLOAT64: case T::kINT64: unit = 8; break;
    case T::kDIMS: unit = sizeof(Dims); break;
    case T::kINT4: case T::kFP4: return f.length > 0 ? (static_cast<size_t>(f.length) + 1) / 2 : 0;
    default: unit = 1;
  }
  return f.length > 0 ? unit * static_cast<size_t>(f.length) : 0;
}

// TensorRT takes at most 1024 bytes with the terminator; trtis-build also limits the characters
// (op.toml's rule), so names survive file names, CMake and JSON unchanged.
inline bool ValidPluginString(char const* s, bool mayBeEmpty) {
  if (s == nullptr) return false;
  size_t const n = std::strlen(s);
  if (n >= 1024 || (n == 0 && !mayBeEmpty)) return false;
  for (size_t i = 0; i < n; ++i) {
    char const c = s[i];
    bool const ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// ---- IExprBuilder for constant shapes -------------------------------------------------------
// IExprBuilder and IDimensionExpr forward to apiv::V* objects that TensorRT owns; these are
// ours. Operations on two constants are folded; anything else stays symbolic (unknown).

class Expr final : public nvinfer1::IDimensionExpr {
 public:
  Expr(bool constant, int64_t value) : impl_(constant, value) { mImpl = &impl_; }
  ~Expr() override = default;

 private:
  class Impl final : public nvinfer1::apiv::VDimensionExpr {
   public:
    Impl(bool constant, int64_t value) : constant_(constant), value_(value) {}
    bool isConstant() const override { return constant_; }
    int64_t getConstantValue() const override { return constant_ ? value_ : -1; }
    bool isSizeTensor() const override { return false; }

   private:
    bool constant_;
    int64_t value_;
  };
  Impl impl_;
};

class ExprBuilder final : public nvinfer1::IExprBuilder {
 public:
  ExprBuilder() { mImpl = &impl_; }
  ~ExprBuilder() override = default;

  nvinfer1::DimsExprs Constant(Dims const& dims) {
    nvinfer1::DimsExprs out{};
    out.nbDims = dims.nbDims;
    for (int32_t i = 0; i < dims.nbDims; ++i) out.d[i] = impl_.Make(true, dims.d[i]);
    return out;
  }
  nvinfer1::DimsExprs Symbolic(int32_t nbDims) {
    nvinfer1::DimsExprs out{};
    out.nbDims = nbDims;
    for (int32_t i = 0; i < nbDims; ++i) out.d[i] = impl_.Make(false, -1);
    return out;
  }
  static bool ToDims(nvinfer1::DimsExprs const& e, Dims& dims) {
    if (e.nbDims < 0 || e.nbDims > Dims::MAX_DIMS) return false;
    dims.nbDims = e.nbDims;
    for (int32_t i = 0; i < e.nbDims; ++i) {
      if (e.d[i] == nullptr || !e.d[i]->isConstant() || e.d[i]->getConstantValue() < 0) return false;
      dims.d[i] = e.d[i]->getConstantValue();
    }
    return true;
  }
  static bool AllSet(std::vector<nvinfer1::DimsExprs> const& all) {
    for (auto const& e : all) {
      if (e.nbDims < 0 || e.nbDims > Dims::MAX_DIMS) return false;
      for (int32_t i = 0; i < e.nbDims; ++i) {
        if (e.d[i] == nullptr) return false;
      }
    }
    return true;
  }

 private:
  class Impl final : public nvinfer1::apiv::VExprBuilder {
   public:
    Expr const* Make(bool constant, int64_t value) {
      pool_.push_back(std::make_unique<Expr>(constant, value));
      return pool_.back().get();
    }
    nvinfer1::IDimensionExpr const* constant(int64_t value) override { return Make(true, value); }
    nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op, nvinfer1::IDimensionExpr const& a,
                                              nvinfer1::IDimensionExpr const& b) override {
      if (!a.isConstant() || !b.isConstant()) return Make(false, -1);
      int64_t const x = a.getConstantValue(), y = b.getConstantValue();
      using Op = nvinfer1::DimensionOperation;
      switch (op) {
        case Op::kSUM: return Make(true, x + y);
        case Op::kPROD: return Make(true, x * y);
        case Op::kMAX: return Make(true, x > y ? x : y);
        case Op::kMIN: return Make(true, x < y ? x : y);
        case Op::kSUB: return Make(true, x - y);
        case Op::kEQUAL: return Make(true, x == y ? 1 : 0);
        case Op::kLESS: return Make(true, x < y ? 1 : 0);
        case Op::kFLOOR_DIV:
          if (y == 0) return Make(false, -1);
          return Make(true, x / y - ((x % y != 0) && ((x < 0) != (y < 0)) ? 1 : 0));
        case Op::kCEIL_DIV:
          if (y == 0) return Make(false, -1);
          return Make(true, x / y + ((x % y != 0) && ((x < 0) == (y < 0)) ? 1 : 0));
      }
      return Make(false, -1);
    }
    nvinfer1::IDimensionExpr const* declareSizeTensor(int32_t, nvinfer1::IDimensionExpr const&,
                                                      nvinfer1::IDimensionExpr const&) override {
      return Make(false, -1);  // data-dependent output sizes are unknown until enqueue
    }

   private:
    std::vector<std::unique_ptr<Expr>> pool_;
  };
  Impl impl_;
};

// ---- Logger, error recorder, resource context -----------------------------------------------

class CaptureLogger final : public nvinfer1::ILogger, public nvinfer1::ILoggerFinder {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    static char const* const names[] = {"internal_error", "error", "warning", "info", "verbose"};
    int const s = static_cast<int>(severity);
    std::lock_guard<std::mutex> lock(mutex_);
    messages_.push_back(std::string(s >= 0 && s <= 4 ? names[s] : "?") + ": " + (msg ? msg : ""));
  }
  nvinfer1::ILogger* findLogger() override { return this; }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lock(mutex_);
    return messages_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> messages_;
};

class ErrorRecorder final : public nvinfer1::IErrorRecorder {
 public:
  int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(errors_.size()); }
  nvinfer1::ErrorCode getErrorCode(int32_t i) const noexcept override { return errors_.at(i).first; }
  ErrorDesc getErrorDesc(int32_t i) const noexcept override { return errors_.at(i).second.c_str(); }
  bool hasOverflowed() const noexcept override { return false; }
  void clear() noexcept override { errors_.clear(); }
  bool reportError(nvinfer1::ErrorCode code, ErrorDesc desc) noexcept override {
    try {
      errors_.emplace_back(code, desc ? desc : "");
    } catch (...) {
    }
    return true;  // keep going: the check reports the failure itself
  }
  RefCount incRefCount() noexcept override { return ++refs_; }
  RefCount decRefCount() noexcept override { return --refs_; }
  std::vector<std::string> Descriptions() const {
    std::vector<std::string> out;
    for (auto const& e : errors_) out.push_back(e.second);
    return out;
  }

 private:
  std::vector<std::pair<nvinfer1::ErrorCode, std::string>> errors_;
  std::atomic<RefCount> refs_{0};
};

class ResourceContext final : public nvinfer1::IPluginResourceContext {
 public:
  nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
  nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override {
    return const_cast<ErrorRecorder*>(&recorder_);
  }
  ErrorRecorder const& recorder() const { return recorder_; }

 private:
  ErrorRecorder recorder_;
};

// ---- CUDA runtime through dlopen --------------------------------------------------------------

class CudaRuntime {
 public:
  decltype(&::cudaGetDeviceCount) GetDeviceCount = nullptr;
  decltype(&::cudaMalloc) Malloc = nullptr;
  decltype(&::cudaFree) Free = nullptr;
  decltype(&::cudaMemcpy) Memcpy = nullptr;
  decltype(&::cudaMemset) Memset = nullptr;
  decltype(&::cudaStreamCreate) StreamCreate = nullptr;
  decltype(&::cudaStreamSynchronize) StreamSynchronize = nullptr;
  decltype(&::cudaStreamDestroy) StreamDestroy = nullptr;
  decltype(&::cudaEventCreate) EventCreate = nullptr;
  decltype(&::cudaEventRecord) EventRecord = nullptr;
  decltype(&::cudaEventSynchronize) EventSynchronize = nullptr;
  decltype(&::cudaEventElapsedTime) EventElapsedTime = nullptr;
  decltype(&::cudaEventDestroy) EventDestroy = nullptr;
  decltype(&::cudaGetErrorString) GetErrorString = nullptr;
  decltype(&::cudaRuntimeGetVersion) RuntimeGetVersion = nullptr;
  decltype(&::cudaDriverGetVersion) DriverGetVersion = nullptr;
  decltype(&::cudaDeviceGetAttribute) DeviceGetAttribute = nullptr;

  // `path` or $TRTIS_CUDART first, then the usual names and install locations.
  bool Load(std::string const& path, std::string& error) {
    std::vector<std::string> candidates;
    if (!path.empty()) candidates.push_back(path);
    if (char const* env = std::getenv("TRTIS_CUDART")) candidates.emplace_back(env);
    for (char const* name : {"libcudart.so", "libcudart.so.13", "libcudart.so.12"}) candidates.emplace_back(name);
    for (char const* var : {"CUDA_HOME", "CUDA_PATH"}) {
      if (char const* root = std::getenv(var)) candidates.push_back(std::string(root) + "/lib64/libcudart.so");
    }
    candidates.emplace_back("/usr/local/cuda/lib64/libcudart.so");
    for (auto const& c : candidates) {
      handle_ = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle_ != nullptr) {
        source_ = c;
        break;
      }
    }
    if (handle_ == nullptr) {
      error = "no libcudart found (tried libcudart.so, $CUDA_HOME/lib64, /usr/local/cuda/lib64); pass --cudart PATH";
      return false;
    }
    bool ok = Sym(GetDeviceCount, "cudaGetDeviceCount") && Sym(Malloc, "cudaMalloc") && Sym(Free, "cudaFree") &&
              Sym(Memcpy, "cudaMemcpy") && Sym(Memset, "cudaMemset") && Sym(StreamCreate, "cudaStreamCreate") &&
              Sym(StreamSynchronize, "cudaStreamSynchronize") && Sym(StreamDestroy, "cudaStreamDestroy") &&
              Sym(EventCreate, "cudaEventCreate") && Sym(EventRecord, "cudaEventRecord") &&
              Sym(EventSynchronize, "cudaEventSynchronize") && Sym(EventElapsedTime, "cudaEventElapsedTime") &&
              Sym(EventDestroy, "cudaEventDestroy") && Sym(GetErrorString, "cudaGetErrorString") &&
              Sym(RuntimeGetVersion, "cudaRuntimeGetVersion") && Sym(DriverGetVersion, "cudaDriverGetVersion") &&
              Sym(DeviceGetAttribute, "cudaDeviceGetAttribute");
    if (!ok) {
      error = source_ + " lacks a CUDA runtime function this check needs";
      return false;
    }
    int count = 0;
    cudaError_t const status = GetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      error = std::string("no usable CUDA device: ") + (status != cudaSuccess ? GetErrorString(status) : "0 devices");
      return false;
    }
    return true;
  }

  std::string Message(cudaError_t status) const { return GetErrorString ? GetErrorString(status) : "CUDA error"; }

  void Describe(Json& json) const {
    int runtime = 0, driver = 0, major = 0, minor = 0;
    RuntimeGetVersion(&runtime);
    DriverGetVersion(&driver);
    DeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
    DeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
    json.BeginObject().Key("cudart").Str(source_).Key("runtime_version").Int(runtime)
        .Key("driver_version").Int(driver).Key("name").Str(DeviceName())
        .Key("compute_capability").Str(std::to_string(major) + "." + std::to_string(minor)).EndObject();
  }

 private:
  template <typename F>
  bool Sym(F& fn, char const* name) {
    fn = reinterpret_cast<F>(dlsym(handle_, name));
    return fn != nullptr;
  }
  // The device's name comes from the driver API (cudaDeviceProp's layout changes between releases).
  static std::string DeviceName() {
    void* cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (cuda == nullptr) return "";
    auto init = reinterpret_cast<int (*)(unsigned)>(dlsym(cuda, "cuInit"));
    auto get = reinterpret_cast<int (*)(int*, int)>(dlsym(cuda, "cuDeviceGet"));
    auto name = reinterpret_cast<int (*)(char*, int, int)>(dlsym(cuda, "cuDeviceGetName"));
    char buffer[256] = {0};
    int device = 0;
    if (init && get && name && init(0) == 0 && get(&device, 0) == 0 && name(buffer, sizeof buffer, device) == 0) {
      return buffer;
    }
    return "";
  }

  void* handle_ = nullptr;
  std::string source_;
};

// ---- Host tensors: deterministic inputs and tolerant comparison ----------------------------

inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t const sign = (x >> 16) & 0x8000u;
  int32_t const exp = static_cast<int32_t>((x >> 23) & 0xffu) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xffu) == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    int const shift = 14 - exp;
    uint32_t h = mant >> shift;
    if ((mant >> (shift - 1)) & 1u) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  if (mant & 0x1000u) ++h;
  return static_cast<uint16_t>(h);
}

inline float HalfToFloat(uint16_t h) {
  uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t const exp = (h >> 10) & 0x1fu;
  uint32_t const mant = h & 0x3ffu;
  if (exp == 0) {
    float const v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  uint32_t const bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112u) << 23) | (mant << 13));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct HostTensor {
  PluginTensorDesc desc;
  std::vector<unsigned char> bytes;
  explicit HostTensor(PluginTensorDesc const& d)
      : desc(d), bytes(static_cast<size_t>(Volume(d.dims)) * TypeSize(d.type)) {}
  int64_t count() const { return Volume(desc.dims); }

  double Get(int64_t i) const {
    unsigned char const* p = bytes.data() + i * TypeSize(desc.type);
    switch (desc.type) {
      case DataType::kFLOAT: { float v; std::memcpy(&v, p, 4); return v; }
      case DataType::kHALF: { uint16_t v; std::memcpy(&v, p, 2); return HalfToFloat(v); }
      case DataType::kBF16: { uint16_t v; std::memcpy(&v, p, 2); uint32_t b = uint32_t{v} << 16; float f;
                              std::memcpy(&f, &b, 4); return f; }
      case DataType::kINT8: return static_cast<int8_t>(*p);
      case DataType::kUINT8: case DataType::kBOOL: return *p;
      case DataType::kINT32: { int32_t v; std::memcpy(&v, p, 4); return v; }
      case DataType::kINT64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
      default: return std::nan("");
    }
  }

  // Values k/64 with |k| <= 255 for floating types: exact in float16 and bfloat16 too, so sums
  // and differences are exact and a correct kernel matches the reference bit for bit.
  void Fill(uint32_t seed) {
    uint64_t state = 0x9E3779B97F4A7C15ull ^ seed;
    for (int64_t i = 0; i < count(); ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      int32_t const k = static_cast<int32_t>((state >> 33) % 511) - 255;
      unsigned char* p = bytes.data() + i * TypeSize(desc.type);
      float const f = static_cast<float>(k) / 64.0F;
      switch (desc.type) {
        case DataType::kFLOAT: std::memcpy(p, &f, 4); break;
        case DataType::kHALF: { uint16_t h = FloatToHalf(f); std::memcpy(p, &h, 2); break; }
        case DataType::kBF16: { uint32_t b; std::memcpy(&b, &f, 4); uint16_t h = static_cast<uint16_t>(b >> 16);
                                std::memcpy(p, &h, 2); break; }
        case DataType::kINT8: *p = static_cast<unsigned char>(static_cast<int8_t>(k / 3)); break;
        case DataType::kUINT8: *p = static_cast<unsigned char>(k + 255) / 2; break;
        case DataType::kBOOL: *p = static_cast<unsigned char>(k & 1); break;
        case DataType::kINT32: { int32_t v = k * 1000; std::memcpy(p, &v, 4); break; }
        case DataType::kINT64: { int64_t v = int64_t{k} * 1000000; std::memcpy(p, &v, 8); break; }
        default: break;
      }
    }
  }
};

struct Comparison {
  double max_abs_error = 0.0;
  int64_t mismatches = 0;
  int64_t first_mismatch = -1;
};

inline Comparison Compare(HostTensor const& actual, HostTensor const& expected) {
  double atol = 0.0, rtol = 0.0;
  switch (expected.desc.type) {
    case DataType::kFLOAT: atol = rtol = 1e-5; break;
    case DataType::kHALF: atol = rtol = 1e-3; break;
    case DataType::kBF16: atol = rtol = 1e-2; break;
    default: break;  // integers and bool: exact
  }
  Comparison c;
  for (int64_t i = 0; i < expected.count(); ++i) {
    double const a = actual.Get(i), e = expected.Get(i);
    double const err = std::fabs(a - e);
    bool const bad = std::isnan(a) != std::isnan(e) || (!std::isnan(e) && !(err <= atol + rtol * std::fabs(e)));
    if (!std::isnan(err) && err > c.max_abs_error) c.max_abs_error = err;
    if (bad) {
      if (c.first_mismatch < 0) c.first_mismatch = i;
      ++c.mismatches;
    }
  }
  return c;
}

}  // namespace trtis_check

#endif  // TRTIS_PLUGIN_CHECK_SUPPORT_H_
