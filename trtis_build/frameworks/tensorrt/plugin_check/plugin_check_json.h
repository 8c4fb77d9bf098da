// A small streaming JSON writer for plugin_check: objects, arrays, strings, numbers.
#ifndef TRTIS_PLUGIN_CHECK_JSON_H_
#define TRTIS_PLUGIN_CHECK_JSON_H_

#include <NvInferRuntime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace trtis_check {

class Json {
 public:
  Json& BeginObject() { return Open('{'); }
  Json& EndObject() { return Close('}'); }
  Json& BeginArray() { return Open('['); }
  Json& EndArray() { return Close(']'); }

  Json& Key(std::string const& key) {
    Separate();
    Quote(key);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  Json& Str(std::string const& value) {
    Separate();
    Quote(value);
    return *this;
  }
  Json& Int(int64_t value) {
    Separate();
    out_ += std::to_string(value);
    return *this;
  }
  Json& Num(double value) {
    Separate();
    if (!std::isfinite(value)) {
      out_ += "null";  // JSON has no NaN or infinity
    } else {
      char buffer[64];
      std::snprintf(buffer, sizeof buffer, "%.9g", value);
      out_ += buffer;
    }
    return *this;
  }
  Json& Bool(bool value) {
    Separate();
    out_ += value ? "true" : "false";
    return *this;
  }
  Json& Null() {
    Separate();
    out_ += "null";
    return *this;
  }
  Json& Dims(nvinfer1::Dims const& dims) {
    BeginArray();
    for (int32_t i = 0; i < dims.nbDims; ++i) Int(dims.d[i]);
    return EndArray();
  }
  Json& StrArray(std::vector<std::string> const& values) {
    BeginArray();
    for (auto const& v : values) Str(v);
    return EndArray();
  }
  std::string const& str() const { return out_; }

 private:
  Json& Open(char c) {
    Separate();
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  Json& Close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }
  // A comma before every element but the first of its container; none right after a key.
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  void Quote(std::string const& s) {
    out_ += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        case '\t': out_ += "\\t"; break;
        default:
          if (c < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
            out_ += buffer;
          } else {
            out_ += static_cast<char>(c);  // UTF-8 passes through unchanged
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace trtis_check

#endif  // TRTIS_PLUGIN_CHECK_JSON_H_
