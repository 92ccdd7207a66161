// convert_kernels.cu compiled by the host compiler for the emulation (emulation.hpp first).
// clang-format off
#include "emulation.hpp"
#include "../src/convert_kernels.cu"
// clang-format on
