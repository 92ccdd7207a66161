// Kernel launches and the few CUDA built-ins whose host emulation differs (cuda/emulation: the
// kernels compiled by a host compiler, run by threads, checked on machines without a GPU).
#pragma once

#ifdef PYLSTM_EMULATION
#include "emulation.hpp"
#define PYLSTM_LAUNCH(kernel, grid, block, smem, stream) \
  ::pylstm::emu::launch(kernel, grid, block, smem, stream)
#else
#define PYLSTM_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif
