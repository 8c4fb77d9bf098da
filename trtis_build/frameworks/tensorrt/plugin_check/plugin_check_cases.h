// Test cases declared in op.toml ([[plugins.tests]]), as `trtis-build` writes them for
// plugin_check --cases FILE: tab-separated lines, one block per case:
//   case <TAB> NAME <TAB> VERSION <TAB> NAMESPACE
//   inputs <TAB> float32[2,3];float32[2,3]
//   field <TAB> NAME <TAB> VALUE [<TAB> VALUE]...     (converted by the creator's declared type)
//   outputs <TAB> float32[2,3]                          (optional: the expected types and shapes)
//   end
// Field values stay text here: only the creator's getFieldNames() says what type each one is.
#ifndef TRTIS_PLUGIN_CHECK_CASES_H_
#define TRTIS_PLUGIN_CHECK_CASES_H_

#include <NvInferRuntime.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace trtis_check {

struct DeclaredCase {
  struct Field {
    std::string name;
    std::vector<std::string> values;
  };
  std::string inputs;
  std::vector<Field> fields;
  std::string outputs;  // empty: the output types and shapes are reported, not compared
  int number = 0;       // 1-based, among the cases of its plugin
};

using PluginTriple = std::tuple<std::string, std::string, std::string>;
using DeclaredCases = std::map<PluginTriple, std::vector<DeclaredCase>>;

inline std::vector<std::string> SplitTabs(std::string const& line) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    size_t const tab = line.find('\t', pos);
    parts.push_back(line.substr(pos, tab == std::string::npos ? std::string::npos : tab - pos));
    if (tab == std::string::npos) return parts;
    pos = tab + 1;
  }
}

inline bool ReadCasesFile(std::string const& path, DeclaredCases& cases, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot read " + path;
    return false;
  }
  std::string line;
  int lineNo = 0;
  PluginTriple current;
  DeclaredCase* open = nullptr;
  while (std::getline(in, line)) {
    ++lineNo;
    std::vector<std::string> parts = SplitTabs(line);
    std::string const& kind = parts[0];
    auto bad = [&](char const* why) {
      error = path + ":" + std::to_string(lineNo) + ": " + why;
      return false;
    };
    if (kind == "case") {
      if (open != nullptr || parts.size() != 4) return bad("'case' takes NAME, VERSION and NAMESPACE");
      current = {parts[1], parts[2], parts[3]};
      auto& list = cases[current];
      list.emplace_back();
      open = &list.back();
      open->number = static_cast<int>(list.size());
    } else if (open == nullptr) {
      return bad("a line outside a case");
    } else if (kind == "inputs" && parts.size() == 2) {
      open->inputs = parts[1];
    } else if (kind == "outputs" && parts.size() == 2) {
      open->outputs = parts[1];
    } else if (kind == "field" && parts.size() >= 3) {
      open->fields.push_back({parts[1], std::vector<std::string>(parts.begin() + 2, parts.end())});
    } else if (kind == "end" && parts.size() == 1) {
      if (open->inputs.empty()) return bad("a case without inputs");
      open = nullptr;
    } else {
      return bad("unknown or malformed line");
    }
  }
  if (open != nullptr) {
    error = path + ": the last case has no 'end'";
    return false;
  }
  return true;
}

// Fields given as text, converted to what the creator declares; the storage outlives the
// PluginFieldCollection built from it.
class FieldValues {
 public:
  bool Add(nvinfer1::PluginField const& declared, DeclaredCase::Field const& given, std::string& error) {
    using T = nvinfer1::PluginFieldType;
    std::vector<char> bytes;
    int32_t length = static_cast<int32_t>(given.values.size());
    bool ok = true;
    switch (declared.type) {
      case T::kFLOAT32: ok = Numbers<float>(given, bytes, error, true); break;
      case T::kFLOAT64: ok = Numbers<double>(given, bytes, error, true); break;
      case T::kINT8: ok = Numbers<int8_t>(given, bytes, error, false); break;
      case T::kINT16: ok = Numbers<int16_t>(given, bytes, error, false); break;
      case T::kINT32: ok = Numbers<int32_t>(given, bytes, error, false); break;
      case T::kINT64: ok = Numbers<int64_t>(given, bytes, error, false); break;
      case T::kCHAR:
        if (given.values.size() != 1) {
          error = "field '" + given.name + "' is a string (kCHAR): give one string";
          return false;
        }
        bytes.assign(given.values[0].begin(), given.values[0].end());
        length = static_cast<int32_t>(bytes.size());
        bytes.push_back('\0');  // the length leaves the terminator out, as TensorRT's parsers do
        break;
      default:
        error = "field '" + given.name + "' has a type (PluginFieldType " +
                std::to_string(static_cast<int>(declared.type)) +
                ") that op.toml test cases cannot give: use float32, float64, int8-int64 or string fields";
        return false;
    }
    if (!ok) return false;
    names_.push_back(given.name);
    storage_.push_back(std::move(bytes));
    types_.push_back(declared.type);
    lengths_.push_back(length);
    return true;
  }

  // The defaults that carry data, with the given fields in their place or added.
  nvinfer1::PluginFieldCollection const* Merge(nvinfer1::PluginFieldCollection const* defaults) {
    fields_.clear();
    for (int32_t i = 0; defaults != nullptr && i < defaults->nbFields; ++i) {
      nvinfer1::PluginField const& f = defaults->fields[i];
      if (f.data != nullptr && !Has(f.name)) fields_.push_back(f);
    }
    for (size_t i = 0; i < names_.size(); ++i) {
      fields_.emplace_back(names_[i].c_str(), storage_[i].data(), types_[i], lengths_[i]);
    }
    collection_ = {static_cast<int32_t>(fields_.size()), fields_.data()};
    return &collection_;
  }

 private:
  bool Has(char const* name) const {
    for (auto const& n : names_) {
      if (name != nullptr && n == name) return true;
    }
    return false;
  }

  template <typename V>
  static bool Numbers(DeclaredCase::Field const& given, std::vector<char>& bytes, std::string& error, bool real) {
    for (auto const& text : given.values) {
      char* stop = nullptr;
      errno = 0;
      V value{};
      if (real) {
        double const d = std::strtod(text.c_str(), &stop);
        value = static_cast<V>(d);
      } else {
        long long const n = std::strtoll(text.c_str(), &stop, 10);
        if (n < static_cast<long long>(std::numeric_limits<V>::min()) ||
            n > static_cast<long long>(std::numeric_limits<V>::max())) {
          errno = ERANGE;
        }
        value = static_cast<V>(n);
      }
      if (text.empty() || *stop != '\0' || errno == ERANGE) {
        error = "field '" + given.name + "': '" + text + "' is not a " + (real ? "number" : "integer") +
                " of the field's type";
        return false;
      }
      char const* raw = reinterpret_cast<char const*>(&value);
      bytes.insert(bytes.end(), raw, raw + sizeof value);
    }
    return true;
  }

  std::vector<std::string> names_;
  std::vector<std::vector<char>> storage_;
  std::vector<nvinfer1::PluginFieldType> types_;
  std::vector<int32_t> lengths_;
  std::vector<nvinfer1::PluginField> fields_;
  nvinfer1::PluginFieldCollection collection_{0, nullptr};
};

}  // namespace trtis_check

#endif  // TRTIS_PLUGIN_CHECK_CASES_H_
