#include "dispatch.hpp"

#include <stdexcept>

namespace pylstm {
namespace {

struct Candidate {
  const char* name;
  const KernelSet& (*kernels)();
  bool (*cpu_has)();
};

#if defined(PYLSTM_X86)
bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
}
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif
bool always() { return true; }

const std::vector<Candidate>& candidates() {
  static const std::vector<Candidate> list = {
#if defined(PYLSTM_X86)
      {"avx512", &kernels_avx512, &has_avx512},
      {"avx2", &kernels_avx2, &has_avx2},
#endif
      {"generic", &kernels_generic, &always},
  };
  return list;
}

}  // namespace

std::string isa_for_features(bool avx512, bool avx2) {
#if defined(PYLSTM_X86)
  if (avx512) return "avx512";
  if (avx2) return "avx2";
#else
  (void)avx512;
  (void)avx2;
#endif
  return "generic";
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const auto& c : candidates()) {
    if (c.cpu_has()) out.emplace_back(c.name);
  }
  return out;
}

const KernelSet& select_kernels(const std::string& requested) {
  std::string isa = requested;
#if defined(PYLSTM_X86)
  if (isa == "auto") isa = isa_for_features(has_avx512(), has_avx2());
#else
  if (isa == "auto") isa = "generic";
#endif
  for (const auto& c : candidates()) {
    if (isa == c.name) {
      if (!c.cpu_has()) throw std::runtime_error("this CPU cannot run the '" + isa + "' kernels");
      return c.kernels();
    }
  }
  std::string known;
  for (const auto& c : candidates()) known += std::string(known.empty() ? "" : ", ") + c.name;
  throw std::invalid_argument("unknown instruction set '" + requested +
                              "'; this build has: auto, " + known);
}

}  // namespace pylstm
