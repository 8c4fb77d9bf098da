// trtis_autoload: lets loaders that only dlopen a library register a trtis-build plugin.
//
// Triton's TensorRT backend (--backend-config=tensorrt,plugins="/a.so;/b.so") and LD_PRELOAD
// only dlopen the libraries they are given; they never call getCreators. A plugin library
// built by trtis-build registers nothing when it is opened (so that loadLibrary, trtexec
// --dynamicPlugins and setPluginsToSerialize can load it and TensorRT refuses duplicates), so
// for those loaders the bundle carries this shim, one copy per plugin library:
//
//   tensorrt/libaddsub.so            the plugin library (getCreators, setLoggerFinder)
//   tensorrt/autoload/libaddsub.so   this shim: give this path to Triton's plugins=
//
// When opened, the shim finds the TensorRT library already in the process, of the major
// version it was compiled against (IPluginRegistry's virtual table differs between majors:
// calling TensorRT 11's registry through TensorRT 10's headers returns garbage and crashes),
// or, opened before any TensorRT as with LD_PRELOAD, loads libnvinfer.so.<major> itself; then
// it asks TensorRT's own registry to loadLibrary the sibling plugin library. Every message
// goes to stderr with the prefix "trtis-build autoload:"; a constructor cannot fail dlopen.
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdio>
#include <string>

namespace {

#define TRTIS_STR2(x) #x
#define TRTIS_STR(x) TRTIS_STR2(x)
constexpr char kMajor[] = TRTIS_STR(NV_TENSORRT_MAJOR);

void Say(std::string const& message) { std::fprintf(stderr, "trtis-build autoload: %s\n", message.c_str()); }

// The plugin library this shim stands for: same file name, one directory up.
std::string TargetPath() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&TargetPath), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string const self = info.dli_fname;
  size_t const slash = self.rfind('/');
  std::string const dir = slash == std::string::npos ? "." : self.substr(0, slash);
  std::string const name = slash == std::string::npos ? self : self.substr(slash + 1);
  size_t const up = dir.rfind('/');
  return (up == std::string::npos ? std::string(".") : dir.substr(0, up)) + "/" + name;
}

// A TensorRT library of this shim's major version that the process has already loaded.
void* LoadedTensorRT(std::string& found) {
  for (char const* base : {"libnvinfer.so.", "libnvinfer_lean.so.", "libnvinfer_dispatch.so."}) {
    std::string const name = std::string(base) + kMajor;
    if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
      found = name;
      return handle;
    }
  }
  return nullptr;
}

// Names the TensorRT of another major that is loaded, for the message.
std::string OtherTensorRT() {
  for (int major = 8; major <= 20; ++major) {
    for (char const* base : {"libnvinfer.so.", "libnvinfer_lean.so.", "libnvinfer_dispatch.so."}) {
      std::string const name = std::string(base) + std::to_string(major);
      if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
        dlclose(handle);  // drops only the reference RTLD_NOLOAD added
        return name;
      }
    }
  }
  return "";
}

// Opened before any TensorRT (LD_PRELOAD): load the full runtime by its soname, the same
// library that Triton's TensorRT backend links, so it later finds the plugins registered.
void* PreloadTensorRT(std::string& found) {
  std::string const name = std::string("libnvinfer.so.") + kMajor;
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle != nullptr) found = name;
  return handle;
}

__attribute__((constructor)) void RegisterSibling() {
  std::string const target = TargetPath();
  if (target.empty()) {
    Say("cannot find its own path (dladdr failed); nothing registered");
    return;
  }
  std::string found;
  void* trt = LoadedTensorRT(found);
  if (trt == nullptr) {
    std::string const other = OtherTensorRT();
    if (!other.empty()) {
      Say("the process runs " + other + " but this bundle was built against TensorRT " + kMajor +
          " headers; " + target + " was not registered: rebuild with --tensorrt-root pointing at "
          "the server's TensorRT");
      return;
    }
    trt = PreloadTensorRT(found);
    if (trt == nullptr) {
      Say(std::string("no TensorRT library is loaded in this process and libnvinfer.so.") + kMajor +
          " is not on the library path, so " + target + " was not registered: load it with "
          "IPluginRegistry::loadLibrary instead, or load this shim after TensorRT (Triton's plugins= does)");
      return;
    }
  }
  using GetRegistry = nvinfer1::IPluginRegistry* (*)();
  using GetMajor = int32_t (*)();
  auto getRegistry = reinterpret_cast<GetRegistry>(dlsym(trt, "getPluginRegistry"));
  auto getMajor = reinterpret_cast<GetMajor>(dlsym(trt, "getInferLibMajorVersion"));
  if (getRegistry == nullptr || (getMajor != nullptr && getMajor() != NV_TENSORRT_MAJOR)) {
    Say(found + " has no getPluginRegistry or reports another major version; " + target + " was not registered");
    return;
  }
  nvinfer1::IPluginRegistry* registry = getRegistry();
  if (registry == nullptr || registry->loadLibrary(target.c_str()) == nullptr) {
    Say("TensorRT (" + found + ") refused " + target +
        ": see TensorRT's log; another library may register the same (name, version, namespace)");
    return;
  }
  Say("registered the plugins of " + target + " with " + found);
}

}  // namespace
