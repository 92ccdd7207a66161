// The persistent kernel (small batches): one cooperative launch runs a block of time steps of a
// layer. Each thread block owns a slice of the hidden units of one direction (all gates of
// those units: rows g*H + j of r) and, for an LSTM with projection, a slice of the projection
// outputs; it copies those weight rows into shared memory once, when they fit (otherwise reads
// them from global memory, i.e. L2, every step), and keeps them there for every step. A step:
//
//   stage h_{t-1} (all of it, written by every block at the previous step) in shared memory,
//   products of the block's weight rows with it (a warp per row, fp32 accumulation),
//   the cell arithmetic of the block's units (cell_math.cuh),
//   [LSTM projection / GRU reset before the product: grid barrier, second product + phase]
//   grid barrier (cooperative groups: every block has written its part of h_t).
//
// Data written by other blocks during the launch is read with ld.global.cg (L2, never a stale
// L1 line); the grid barrier orders the writes before the reads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cell_math.cuh"
#include "cuda_check.hpp"
#include "kernel_params.hpp"
#include "launch.cuh"

#ifndef PYLSTM_EMULATION
#include <cooperative_groups.h>
#endif

namespace pylstm {
namespace cuda {
namespace persistent {

#ifdef PYLSTM_EMULATION
__device__ __forceinline__ unsigned char* dynamic_smem() { return emu::shared_memory(); }
__device__ __forceinline__ void grid_sync() { emu::grid_sync(); }
#else
__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char smem_[];
  return smem_;
}
// The grid-wide barrier of a cooperative launch (it also orders memory: writes before it are
// visible to reads after it, in every block).
__device__ __forceinline__ void grid_sync() { cooperative_groups::this_grid().sync(); }
#endif

// 16 bytes of CT widened to floats: 4 floats or 8 halves / bfloat16s.
template <typename CT>
struct Widen;

template <>
struct Widen<float> {
  static constexpr int V = 4;
  static __device__ __forceinline__ void run(const uint4& raw, float* w) {
    w[0] = __uint_as_float(raw.x);
    w[1] = __uint_as_float(raw.y);
    w[2] = __uint_as_float(raw.z);
    w[3] = __uint_as_float(raw.w);
  }
};

template <>
struct Widen<__half> {
  static constexpr int V = 8;
  static __device__ __forceinline__ void run(const uint4& raw, float* w) {
    const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      __half2 h2;
      memcpy(static_cast<void*>(&h2), &words[q], sizeof h2);  // the bits as they are
      const float2 f = __half22float2(h2);
      w[2 * q] = f.x;
      w[2 * q + 1] = f.y;
    }
  }
};

template <>
struct Widen<__nv_bfloat16> {
  static constexpr int V = 8;
  static __device__ __forceinline__ void run(const uint4& raw, float* w) {
    const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {  // a bfloat16 is the high half of a float
      w[2 * q] = __uint_as_float(words[q] << 16);
      w[2 * q + 1] = __uint_as_float(words[q] & 0xffff0000u);
    }
  }
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Stages rows [b0, b0 + nb) of src ([B][src_ld] CT in global memory, K valid columns) in hs as
// floats, [NB][hs_ld], zero beyond K and beyond nb rows.
template <typename CT, int NB>
__device__ __forceinline__ void stage_state(const CT* src, int src_ld, int K, int kpad, int b0,
                                            int nb, int hs_ld, float* hs) {
  for (int i = threadIdx.x; i < NB * kpad; i += blockDim.x) {
    const int bb = i / kpad;
    const int kk = i - bb * kpad;
    float v = 0.0f;
    if (bb < nb && kk < K) {
      v = Ct<CT>::from(Ct<CT>::load_cg(src + static_cast<size_t>(b0 + bb) * src_ld + kk));
    }
    hs[bb * hs_ld + kk] = v;
  }
}

// acc[bb] += w[k] * hs[bb][k] over one group of V weights (16 bytes of CT, k = group*V ...),
// for the NB staged state rows, in k order.
template <typename CT, int NB>
__device__ __forceinline__ void accumulate_group(uint4 packed, const float* hs, int hs_ld,
                                                 int group, float (&acc)[NB]) {
  constexpr int V = Widen<CT>::V;
  float w[V];
  Widen<CT>::run(packed, w);
#pragma unroll
  for (int bb = 0; bb < NB; ++bb) {
    const float4* hv = reinterpret_cast<const float4*>(hs + bb * hs_ld + group * V);
#pragma unroll
    for (int q = 0; q < V / 4; ++q) {
      const float4 h4 = hv[q];
      acc[bb] = fmaf(w[4 * q], h4.x, acc[bb]);
      acc[bb] = fmaf(w[4 * q + 1], h4.y, acc[bb]);
      acc[bb] = fmaf(w[4 * q + 2], h4.z, acc[bb]);
      acc[bb] = fmaf(w[4 * q + 3], h4.w, acc[bb]);
    }
  }
}

// Products of weight rows with the state, for weights in shared memory. The weights are stored
// k-group-major: wT[kg][row][V] holds w[row][kg*V .. kg*V + V) (V = 16 bytes of CT), `nra` rows
// per group. Thread t takes row t % n and every KS-th k-group from t / n: its weight loads are
// consecutive 16-byte words across the warp (no bank conflicts) and its state loads are shared
// with every thread of the same k-group (broadcasts). Partial sums meet in `part` and are added
// in a fixed order (deterministic).
//   pre[(r - row0) * B + b] = sum_k w[r][k] * src[b][k]   for r in [row0, row0 + nrows), b < B.
template <typename CT, int NB>
__device__ __forceinline__ void products_smem(const CT* src, int src_ld, int K, int kpad, int B,
                                              const uint4* wT, int nra, int row0, int nrows,
                                              int hs_ld, float* hs, float* part, float* pre) {
  constexpr int V = Widen<CT>::V;
  const int groups = kpad / V;
  for (int b0 = 0; b0 < B; b0 += NB) {
    const int nb = min(NB, B - b0);
    __syncthreads();  // hs, part and pre are free
    stage_state<CT, NB>(src, src_ld, K, kpad, b0, nb, hs_ld, hs);
    for (int base = 0; base < nrows; base += blockDim.x) {
      const int n = min(nrows - base, static_cast<int>(blockDim.x));
      const int KS = blockDim.x / n;
      __syncthreads();  // hs staged; part free
      if (static_cast<int>(threadIdx.x) < KS * n) {
        const int row = threadIdx.x % n;
        const int ks = threadIdx.x / n;
        const uint4* w4 = wT + row0 + base + row;
        float acc[NB];
#pragma unroll
        for (int bb = 0; bb < NB; ++bb) acc[bb] = 0.0f;
        for (int kg = ks; kg < groups; kg += KS) {
          accumulate_group<CT, NB>(w4[static_cast<size_t>(kg) * nra], hs, hs_ld, kg, acc);
        }
#pragma unroll
        for (int bb = 0; bb < NB; ++bb) part[(ks * n + row) * NB + bb] = acc[bb];
      }
      __syncthreads();
      for (int i = threadIdx.x; i < n * nb; i += blockDim.x) {
        const int row = i % n;
        const int bb = i / n;
        float sum = 0.0f;
        for (int ks = 0; ks < KS; ++ks) sum += part[(ks * n + row) * NB + bb];
        pre[static_cast<size_t>(base + row) * B + b0 + bb] = sum;
      }
    }
  }
  __syncthreads();  // pre complete
}

// The same products with the weights read from global memory (row-major, `kpad` per row): a
// warp per row, each lane 16 bytes at a time along k, reduced with shuffles. row_ptr(r) gives
// row r's weights, or null for a row this block does not have (its pre is not written).
template <typename CT, int NB, typename RowPtr>
__device__ __forceinline__ void products_global(const CT* src, int src_ld, int K, int kpad, int B,
                                                RowPtr row_ptr, int row0, int nrows, int hs_ld,
                                                float* hs, float* pre) {
  constexpr int V = Widen<CT>::V;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  const int chunks = kpad / V;
  for (int b0 = 0; b0 < B; b0 += NB) {
    const int nb = min(NB, B - b0);
    __syncthreads();  // hs and pre are free
    stage_state<CT, NB>(src, src_ld, K, kpad, b0, nb, hs_ld, hs);
    __syncthreads();
    for (int r = warp; r < nrows; r += nwarps) {
      const CT* row = row_ptr(row0 + r);
      if (row == nullptr) continue;
      const uint4* w4 = reinterpret_cast<const uint4*>(row);
      float acc[NB];
#pragma unroll
      for (int bb = 0; bb < NB; ++bb) acc[bb] = 0.0f;
      for (int c = lane; c < chunks; c += 32) {
        accumulate_group<CT, NB>(__ldg(w4 + c), hs, hs_ld, c, acc);
      }
#pragma unroll
      for (int bb = 0; bb < NB; ++bb) acc[bb] = warp_sum(acc[bb]);
      if (lane == 0) {
#pragma unroll
        for (int bb = 0; bb < NB; ++bb) {
          if (bb < nb) pre[static_cast<size_t>(r) * B + b0 + bb] = acc[bb];
        }
      }
    }
  }
  __syncthreads();  // pre complete
}

// Copies weight rows into shared memory, transposed to the k-group-major layout of
// products_smem: rows [0, nra) of the block, row r from src_row(r) (row-major, kpad elements),
// or zeros where src_row(r) is null.
template <typename CT, typename SrcRow>
__device__ __forceinline__ void load_weights_smem(uint4* wT, int nra, int kpad, SrcRow src_row) {
  constexpr int V = Widen<CT>::V;
  const int groups = kpad / V;
  for (int i = threadIdx.x; i < nra * groups; i += blockDim.x) {
    const int r = i / groups;
    const int kg = i - r * groups;  // consecutive threads read consecutive words of a row
    const CT* row = src_row(r);
    wT[static_cast<size_t>(kg) * nra + r] =
        row != nullptr ? __ldg(reinterpret_cast<const uint4*>(row) + kg) : make_uint4(0, 0, 0, 0);
  }
}

template <typename CT, int NB>
__global__ void __launch_bounds__(kPersistentThreads, 1)
    layer_kernel(LayerParams L, StepBuffers S, PersistentPlan plan, int s0, int s1) {
  unsigned char* smem = dynamic_smem();

  const int d = blockIdx.x / plan.blocks_per_dir;
  const int kb = blockIdx.x - d * plan.blocks_per_dir;
  const int H = L.H;
  const int Hout = L.Hout;
  const int B = S.B;
  const int upb = plan.upb;
  const int u0 = kb * upb;
  const int nu = max(0, min(upb, H - u0));  // units of this block (0 for a spare block)
  const int ppb = plan.ppb;
  const int p0 = kb * ppb;
  const int np = L.P > 0 ? max(0, min(ppb, L.P - p0)) : 0;
  const bool gru_rb = L.cell == kCellGRU && !L.lbr;
  const bool two_phase = gru_rb || L.P > 0;
  const int ng = gru_rb ? 2 : L.G;  // gates in the first product
  const bool w_smem = plan.weights_in_smem != 0;
  const int hs_ld = plan.hs_ld;

  const DirWeights& W = d == 0 ? L.dir[0] : L.dir[1];
  const CT* r_glob = static_cast<const CT*>(W.r);
  const CT* p_glob = static_cast<const CT*>(W.proj);
  const uint4* wT = reinterpret_cast<const uint4*>(smem + plan.off_w);
  const uint4* pT = reinterpret_cast<const uint4*>(smem + plan.off_p);
  float* hs = reinterpret_cast<float*>(smem + plan.off_hs);
  float* pre = reinterpret_cast<float*>(smem + plan.off_pre);
  float* part = reinterpret_cast<float*>(smem + plan.off_part);

  // Local row g*upb + jl of r is global row g*H + u0 + jl (null past the block's units).
  auto r_row = [&](int lr) -> const CT* {
    const int g = lr / upb;
    const int jl = lr - g * upb;
    return jl < nu ? r_glob + static_cast<size_t>(g * H + u0 + jl) * L.ldr : nullptr;
  };
  auto p_row = [&](int pl) -> const CT* {
    return pl < np ? p_glob + static_cast<size_t>(p0 + pl) * L.ldp : nullptr;
  };
  if (w_smem) {
    load_weights_smem<CT>(reinterpret_cast<uint4*>(smem + plan.off_w), L.G * upb, L.ldr, r_row);
    if (L.P > 0)
      load_weights_smem<CT>(reinterpret_cast<uint4*>(smem + plan.off_p), ppb, L.ldp, p_row);
  }

  // pre[r * B + b] = products of rows [row0, row0 + nrows) of r (or of proj) with src [B][K].
  auto products = [&](const CT* src, int K, bool proj, int row0, int nrows) {
    const int kpad = proj ? L.ldp : L.ldr;
    if (w_smem) {
      products_smem<CT, NB>(src, K, K, kpad, B, proj ? pT : wT, proj ? ppb : L.G * upb, row0, nrows,
                            hs_ld, hs, part, pre);
    } else if (proj) {
      products_global<CT, NB>(src, K, K, kpad, B, p_row, row0, nrows, hs_ld, hs, pre);
    } else {
      products_global<CT, NB>(src, K, K, kpad, B, r_row, row0, nrows, hs_ld, hs, pre);
    }
  };

  const CT* hc = static_cast<const CT*>(S.hc);
  for (int s = s0; s < s1; ++s) {
    const StepCtx k = step_ctx(L, S, d, s);
    // Phase 1: products of the block's gate rows with h_{t-1}, then the cell arithmetic.
    products(hc + state_row(L, S, k.par, d, 0), Hout, false, 0, ng * upb);
    for (int i = threadIdx.x; i < nu * B; i += blockDim.x) {
      const int jl = i % nu;
      const int b = i / nu;
      float rec[4];
#pragma unroll
      for (int g = 0; g < 4; ++g) {
        rec[g] = g < ng ? pre[static_cast<size_t>(g * upb + jl) * B + b] : 0.0f;
      }
      phase1_unit<CT>(L, S, k, b, u0 + jl, rec);
    }
    if (two_phase) {
      grid_sync();  // every unit's first phase is written
      if (L.P > 0) {
        products(static_cast<const CT*>(S.auxc) + static_cast<size_t>(d) * B * H, H, true, 0, ppb);
        for (int i = threadIdx.x; i < np * B; i += blockDim.x) {
          const int pl = i % np;
          const int b = i / np;
          phase2_proj<CT>(L, S, k, b, p0 + pl, pre[static_cast<size_t>(pl) * B + b]);
        }
      } else {
        products(static_cast<const CT*>(S.rhc) + static_cast<size_t>(d) * B * Hout, Hout, false,
                 2 * upb, upb);
        for (int i = threadIdx.x; i < nu * B; i += blockDim.x) {
          const int jl = i % nu;
          const int b = i / nu;
          phase2_gru<CT>(L, S, k, b, u0 + jl, pre[static_cast<size_t>(jl) * B + b]);
        }
      }
    }
    grid_sync();  // h_t complete before anyone reads it
  }
}

template <typename CT>
const void* kernel_for(int nb) {
  switch (nb) {
    case 1:
      return reinterpret_cast<const void*>(&layer_kernel<CT, 1>);
    case 4:
      return reinterpret_cast<const void*>(&layer_kernel<CT, 4>);
    default:
      return reinterpret_cast<const void*>(&layer_kernel<CT, 8>);
  }
}

template <typename CT>
void launch(const LayerParams& L, const StepBuffers& S, const PersistentPlan& plan, int s0, int s1,
            cudaStream_t stream) {
  if (s1 <= s0) return;
  LayerParams l = L;
  StepBuffers b = S;
  PersistentPlan p = plan;
  const dim3 grid(static_cast<unsigned>(L.D * plan.blocks_per_dir));
#ifdef PYLSTM_EMULATION
  switch (plan.nb) {
    case 1:
      emu::launch_cooperative(layer_kernel<CT, 1>, grid, dim3(kPersistentThreads), plan.smem_bytes,
                              stream)(l, b, p, s0, s1);
      break;
    case 4:
      emu::launch_cooperative(layer_kernel<CT, 4>, grid, dim3(kPersistentThreads), plan.smem_bytes,
                              stream)(l, b, p, s0, s1);
      break;
    default:
      emu::launch_cooperative(layer_kernel<CT, 8>, grid, dim3(kPersistentThreads), plan.smem_bytes,
                              stream)(l, b, p, s0, s1);
      break;
  }
#else
  void* args[] = {&l, &b, &p, &s0, &s1};
  PYLSTM_CUDA_CHECK(cudaLaunchCooperativeKernel(kernel_for<CT>(plan.nb), grid,
                                                dim3(kPersistentThreads), args,
                                                static_cast<size_t>(plan.smem_bytes), stream));
#endif
}

}  // namespace persistent
}  // namespace cuda
}  // namespace pylstm
