#include "layer_run.hpp"

#include <algorithm>

#include "kernels.hpp"

namespace pylstm {
namespace cuda {
namespace {

// A captured loop has a few nodes per step; past this many steps the loop runs without a graph
// (instantiating a graph of tens of thousands of nodes costs more than it saves).
constexpr int64_t kMaxGraphSteps = 8192;

}  // namespace

void input_projection(Cublas& cublas, const LayerCall& c, int s0, int s1, StepBuffers* S) {
  const LayerParams& L = c.layer->params;
  const int64_t B = S->B, GH = c.layer->gate_cols();
  for (int d = 0; d < L.D; ++d) {
    const int t0 = L.dir[d].reverse ? S->T - s1 : s0;
    float* xp = const_cast<float*>(S->xp) + static_cast<int64_t>(d) * c.block_steps * B * GH;
    // xp[(t - t0)*B + b][:] = x[t][b][:] · wᵀ for the block's times t.
    cublas.gemm_xwt(c.ct, static_cast<int64_t>(s1 - s0) * B, GH, L.I,
                    offset(c.x, static_cast<int64_t>(t0) * B * L.I, c.ct), L.I, 0, L.dir[d].w,
                    L.ldw, 0, xp, GH, 0, 1);
    S->xp_t0[d] = t0;
  }
}

void enqueue_step_loop(Cublas& cublas, const LayerCall& c, cudaStream_t stream) {
  const LayerParams& L = c.layer->params;
  StepBuffers S = c.S;
  const int64_t B = S.B, D = L.D, H = L.H, Hout = L.Hout, P = L.P, GH = c.layer->gate_cols();
  const bool gru_rb = L.cell == kCellGRU && !L.lbr;
  // Both directions' matrices are the same distance apart (device_layer.cpp).
  const int64_t r_stride =
      D > 1 ? (static_cast<const char*>(L.dir[1].r) - static_cast<const char*>(L.dir[0].r)) /
                  dtype_size(c.ct)
            : 0;
  const int64_t p_stride =
      D > 1 && P > 0
          ? (static_cast<const char*>(L.dir[1].proj) - static_cast<const char*>(L.dir[0].proj)) /
                dtype_size(c.ct)
          : 0;
  cublas.set_stream(stream);
  for (int s0 = 0; s0 < S.T; s0 += c.block_steps) {
    const int s1 = std::min(S.T, s0 + c.block_steps);
    input_projection(cublas, c, s0, s1, &S);
    for (int s = s0; s < s1; ++s) {
      const int par = s & 1;
      const void* hc = offset(S.hc, par * D * B * Hout, c.ct);
      // rec[d][b][:] = hc[d][b][:] · r_dᵀ (gates r, z only when the reset comes first).
      cublas.gemm_xwt(c.ct, B, gru_rb ? 2 * H : GH, Hout, hc, Hout, B * Hout, L.dir[0].r, L.ldr,
                      r_stride, S.rec, GH, B * GH, D);
      launch_phase1(c.ct, L, S, s, stream);
      if (P > 0) {
        // proj_out[d][b][:] = (o*h(c'))[d][b][:] · proj_dᵀ
        cublas.gemm_xwt(c.ct, B, P, H, S.auxc, H, B * H, L.dir[0].proj, L.ldp, p_stride, S.proj_out,
                        P, B * P, D);
        launch_proj_phase2(c.ct, L, S, s, stream);
      } else if (gru_rb) {
        // rec[d][b][2H:3H] = (r*h)[d][b][:] · r_d[2H:3H]ᵀ
        cublas.gemm_xwt(c.ct, B, H, Hout, S.rhc, Hout, B * Hout,
                        offset(L.dir[0].r, 2 * H * L.ldr, c.ct), L.ldr, r_stride, S.rec + 2 * H, GH,
                        B * GH, D);
        launch_gru_phase2(c.ct, L, S, s, stream);
      }
    }
  }
}

const char* run_step_loop_graph(Workspace& ws, const LayerCall& c, cudaStream_t stream) {
  // The graph's nodes point into the workspace: it stays valid until the arena moves, which
  // drops it (Workspace::arena).
  const GraphKey key{c.index, c.S.T, c.S.B, c.S.mask != nullptr};
  cudaGraphExec_t exec = ws.graph(key);
  if (exec == nullptr && (c.S.T > kMaxGraphSteps || ws.seen(key) < 2)) {
    enqueue_step_loop(ws.cublas(), c, stream);  // also warms cuBLAS up before any capture
    return "steps";
  }
  if (exec == nullptr) {
    cudaStream_t cs = ws.capture_stream();
    PYLSTM_CUDA_CHECK(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_step_loop(ws.cublas(), c, cs);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      (void)cudaStreamEndCapture(cs, &broken);  // ends the (invalidated) capture
      if (broken != nullptr) (void)cudaGraphDestroy(broken);
      (void)cudaGetLastError();
      throw;
    }
    cudaGraph_t graph = nullptr;
    PYLSTM_CUDA_CHECK(cudaStreamEndCapture(cs, &graph));
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    PYLSTM_CUDA_CHECK(err);
    ws.store_graph(key, exec);
  }
  PYLSTM_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  return "graph";
}

void run_persistent(Cublas& cublas, const LayerCall& c, const PersistentPlan& plan,
                    cudaStream_t stream) {
  StepBuffers S = c.S;
  cublas.set_stream(stream);
  for (int s0 = 0; s0 < S.T; s0 += c.block_steps) {
    const int s1 = std::min(S.T, s0 + c.block_steps);
    input_projection(cublas, c, s0, s1, &S);
    launch_persistent(c.ct, c.layer->params, S, plan, s0, s1, stream);
  }
}

}  // namespace cuda
}  // namespace pylstm
