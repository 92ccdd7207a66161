// Picks the kernel set for the CPU we run on (or the one asked for by name).
#pragma once

#include <string>
#include <vector>

#include "kernels/kernel_set.hpp"

namespace pylstm {

// The set "auto" picks on a CPU with these features (AVX-512 F/BW/DQ/VL + FMA; AVX2 + FMA):
// the decision alone, testable on any machine.
std::string isa_for_features(bool avx512, bool avx2);

// Instruction sets this build has kernels for AND this CPU can run, best first.
std::vector<std::string> supported_isas();

// "auto" -> the best supported; a name -> that set. Throws std::invalid_argument for an unknown
// name, std::runtime_error when the CPU cannot run it.
const KernelSet& select_kernels(const std::string& isa);

// fp32 GFLOP/s of `threads` threads at once, each running the named set's independent FMA
// chains for about `seconds` (fma_peak.cpp): the machine's multiply-add peak; best of three.
double fma_peak_gflops(const std::string& isa, int threads, double seconds);

}  // namespace pylstm
