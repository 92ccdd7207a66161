// Element types of device arrays (the CUDA backend's inputs, outputs, states and compute type).
// Plain enough for nvcc and kernels: the values are part of the CUDA kernels' interface.
#pragma once

namespace pylstm {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };

inline int dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

}  // namespace pylstm
