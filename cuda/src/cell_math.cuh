// The cell arithmetic of one hidden unit (or projection output) of one sequence at one step,
// shared by both strategies: the persistent kernel (persistent_kernel.cuh) and the step loop's
// gate kernels (gate_kernels.cu). It mirrors the CPU cells (cpp/src/kernels/*_cell.hpp) and the
// time loop's masking (time_loop.hpp): a masked step carries the state and outputs zero, or
// with `hold` the previous output of that direction (zero before the first step).
//
// Phases: every cell has a first phase fed with the recurrent products of its gates; an LSTM
// with projection and a GRU with the reset before the recurrent product have a second phase,
// fed with the projection (or Rn·(r*h)) product, after every unit of the first phase is done.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "activations.cuh"
#include "kernel_params.hpp"

namespace pylstm {
namespace cuda {

// Conversions between the compute type CT and float, and loads that bypass L1 (for data other
// blocks of the persistent kernel wrote during this launch).
template <typename CT>
struct Ct;

template <>
struct Ct<float> {
  static __device__ __forceinline__ float to(float v) { return v; }
  static __device__ __forceinline__ float from(float v) { return v; }
  static __device__ __forceinline__ float load_cg(const float* p) { return __ldcg(p); }
};

template <>
struct Ct<__half> {
  static __device__ __forceinline__ __half to(float v) { return __float2half_rn(v); }
  static __device__ __forceinline__ float from(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half load_cg(const __half* p) {
    return __ushort_as_half(__ldcg(reinterpret_cast<const unsigned short*>(p)));
  }
};

template <>
struct Ct<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 to(float v) { return __float2bfloat16_rn(v); }
  static __device__ __forceinline__ float from(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 load_cg(const __nv_bfloat16* p) {
    return __ushort_as_bfloat16(__ldcg(reinterpret_cast<const unsigned short*>(p)));
  }
};

// Where direction d is at step s (steps count in the direction's own order).
struct StepCtx {
  int d;
  int s;
  int t;       // time index of this step
  int t_prev;  // time index of the previous step of this direction, -1 at the first
  int par;     // state parity read at this step
  int xrow;    // row block of this step in S.xp (t minus the direction's first time in xp)
};

__device__ __forceinline__ StepCtx step_ctx(const LayerParams& L, const StepBuffers& S, int d,
                                            int s) {
  StepCtx k;
  k.d = d;
  k.s = s;
  const bool rev = (d == 0 ? L.dir[0].reverse : L.dir[1].reverse) != 0;
  k.t = rev ? S.T - 1 - s : s;
  k.t_prev = s == 0 ? -1 : (rev ? S.T - s : s - 1);
  k.par = s & 1;
  // Selects rather than S.xp_t0[d]: a run-time index into a kernel parameter makes the compiler
  // copy the whole struct to local memory.
  k.xrow = k.t - (d == 0 ? S.xp_t0[0] : S.xp_t0[1]);
  return k;
}

__device__ __forceinline__ bool valid_at(const StepBuffers& S, int t, int b) {
  return S.mask == nullptr || S.mask[static_cast<size_t>(t) * S.B + b] != 0;
}

// Index of row (d, b) of the state at parity `par`: [2][D][B][Hout].
__device__ __forceinline__ size_t state_row(const LayerParams& L, const StepBuffers& S, int par,
                                            int d, int b) {
  return (static_cast<size_t>(par * L.D + d) * S.B + b) * L.Hout;
}

// Input projection of column `col` (gate-major, G*H columns) for direction k.d at its time k.t.
__device__ __forceinline__ float xp_at(const LayerParams& L, const StepBuffers& S, const StepCtx& k,
                                       int b, int col) {
  const size_t row =
      (static_cast<size_t>(k.d) * S.xp_steps + k.xrow) * S.B + static_cast<size_t>(b);
  return S.xp[row * static_cast<size_t>(L.G * L.H) + col];
}

__device__ __forceinline__ size_t y_index(const LayerParams& L, const StepBuffers& S, int t, int b,
                                          int d, int col) {
  return (static_cast<size_t>(t) * S.B + b) * static_cast<size_t>(L.D * L.Hout) +
         static_cast<size_t>(d) * L.Hout + col;
}

// A valid step's new state (column `col` of h) and its output.
template <typename CT>
__device__ __forceinline__ void emit(const LayerParams& L, const StepBuffers& S, const StepCtx& k,
                                     int b, int col, float v) {
  const size_t next = state_row(L, S, k.par ^ 1, k.d, b) + col;
  S.h[next] = v;
  if constexpr (!std::is_same<CT, float>::value) static_cast<CT*>(S.hc)[next] = Ct<CT>::to(v);
  static_cast<CT*>(S.y)[y_index(L, S, k.t, b, k.d, col)] = Ct<CT>::to(v);
}

// A masked step: the state is carried over; the output is zero or repeats the previous one.
template <typename CT>
__device__ __forceinline__ void carry(const LayerParams& L, const StepBuffers& S, const StepCtx& k,
                                      int b, int col) {
  const size_t prev = state_row(L, S, k.par, k.d, b) + col;
  const size_t next = state_row(L, S, k.par ^ 1, k.d, b) + col;
  S.h[next] = __ldcg(S.h + prev);
  if constexpr (!std::is_same<CT, float>::value) {
    static_cast<CT*>(S.hc)[next] = Ct<CT>::load_cg(static_cast<const CT*>(S.hc) + prev);
  }
  CT out = Ct<CT>::to(0.0f);
  if (L.hold && k.t_prev >= 0) {
    out = Ct<CT>::load_cg(static_cast<const CT*>(S.y) + y_index(L, S, k.t_prev, b, k.d, col));
  }
  static_cast<CT*>(S.y)[y_index(L, S, k.t, b, k.d, col)] = out;
}

// First phase for unit j of sequence b. rec[g]: recurrent product of gate g (row g*H + j of r);
// for a GRU with the reset before the product only r and z (rec[0], rec[1]) are given.
template <typename CT>
__device__ __forceinline__ void phase1_unit(const LayerParams& L, const StepBuffers& S,
                                            const StepCtx& k, int b, int j, const float* rec) {
  const DirWeights& W = k.d == 0 ? L.dir[0] : L.dir[1];
  const int H = L.H;
  const bool ok = valid_at(S, k.t, b);
  const size_t unit = (static_cast<size_t>(k.d) * S.B + b) * H + j;  // [D][B][H] buffers
  if (L.cell == kCellLSTM) {
    if (!ok) {
      if (L.P > 0) {
        static_cast<CT*>(S.auxc)[unit] = Ct<CT>::to(0.0f);  // c unchanged; phase 2 carries h
      } else {
        carry<CT>(L, S, k, b, j);
      }
      return;
    }
    float pi = xp_at(L, S, k, b, j) + W.bias[j] + rec[0];
    float pf = xp_at(L, S, k, b, H + j) + W.bias[H + j] + rec[1];
    const float pg = xp_at(L, S, k, b, 2 * H + j) + W.bias[2 * H + j] + rec[2];
    float po = xp_at(L, S, k, b, 3 * H + j) + W.bias[3 * H + j] + rec[3];
    const float c_prev = S.c[unit];
    if (W.peephole != nullptr) {
      pi += W.peephole[j] * c_prev;
      pf += W.peephole[H + j] * c_prev;
    }
    const float i = activate(W.act[0], clipped(pi, L.clip));
    const float f = L.input_forget ? 1.0f - i : activate(W.act[0], clipped(pf, L.clip));
    const float g = activate(W.act[1], clipped(pg, L.clip));
    const float c_new = f * c_prev + i * g;
    if (W.peephole != nullptr) po += W.peephole[2 * H + j] * c_new;
    const float o = activate(W.act[0], clipped(po, L.clip));
    const float hv = o * activate(W.act[2], c_new);  // c' not clipped (as ONNX Runtime)
    S.c[unit] = c_new;
    if (L.P > 0) {
      static_cast<CT*>(S.auxc)[unit] = Ct<CT>::to(hv);
    } else {
      emit<CT>(L, S, k, b, j, hv);
    }
  } else if (L.cell == kCellGRU) {
    const size_t rh = (static_cast<size_t>(k.d) * S.B + b) * L.Hout + j;
    if (!ok) {
      if (L.lbr) {
        carry<CT>(L, S, k, b, j);
      } else {  // keep the second product's operand defined; its result is not used
        S.z[unit] = 0.0f;
        static_cast<CT*>(S.rhc)[rh] = Ct<CT>::to(0.0f);
      }
      return;
    }
    const float h_prev = __ldcg(S.h + state_row(L, S, k.par, k.d, b) + j);
    const float r = activate(W.act[0], clipped(xp_at(L, S, k, b, j) + W.bias[j] + rec[0], L.clip));
    const float z =
        activate(W.act[0], clipped(xp_at(L, S, k, b, H + j) + W.bias[H + j] + rec[1], L.clip));
    if (L.lbr) {
      const float pn =
          xp_at(L, S, k, b, 2 * H + j) + W.bias[2 * H + j] + r * (rec[2] + W.bias_rn[j]);
      const float n = activate(W.act[1], clipped(pn, L.clip));
      emit<CT>(L, S, k, b, j, (1.0f - z) * n + z * h_prev);
    } else {
      S.z[unit] = z;
      static_cast<CT*>(S.rhc)[rh] = Ct<CT>::to(r * h_prev);
    }
  } else {
    if (!ok) {
      carry<CT>(L, S, k, b, j);
      return;
    }
    emit<CT>(L, S, k, b, j,
             activate(W.act[0], clipped(xp_at(L, S, k, b, j) + W.bias[j] + rec[0], L.clip)));
  }
}

// Second phase, LSTM with projection: output p of sequence b is `value` (proj · o*h(c')).
template <typename CT>
__device__ __forceinline__ void phase2_proj(const LayerParams& L, const StepBuffers& S,
                                            const StepCtx& k, int b, int p, float value) {
  if (!valid_at(S, k.t, b)) {
    carry<CT>(L, S, k, b, p);
  } else {
    emit<CT>(L, S, k, b, p, value);
  }
}

// Second phase, GRU with the reset before the product: rec_n = (Rn·(r*h))_j.
template <typename CT>
__device__ __forceinline__ void phase2_gru(const LayerParams& L, const StepBuffers& S,
                                           const StepCtx& k, int b, int j, float rec_n) {
  if (!valid_at(S, k.t, b)) {
    carry<CT>(L, S, k, b, j);
    return;
  }
  const DirWeights& W = k.d == 0 ? L.dir[0] : L.dir[1];
  const int H = L.H;
  const float z = __ldcg(S.z + (static_cast<size_t>(k.d) * S.B + b) * H + j);
  const float h_prev = __ldcg(S.h + state_row(L, S, k.par, k.d, b) + j);
  const float n =
      activate(W.act[1], clipped(xp_at(L, S, k, b, 2 * H + j) + W.bias[2 * H + j] + rec_n, L.clip));
  emit<CT>(L, S, k, b, j, (1.0f - z) * n + z * h_prev);
}

}  // namespace cuda
}  // namespace pylstm
