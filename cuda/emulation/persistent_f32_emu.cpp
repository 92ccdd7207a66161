// persistent_f32.cu compiled by the host compiler for the emulation (emulation.hpp first).
// clang-format off
#include "emulation.hpp"
#include "../src/persistent_f32.cu"
// clang-format on
