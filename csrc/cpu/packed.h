// What a PackedLayer holds: per direction, every weight in the layout its
// kernel reads (see gemm.h for the panel layouts; W, NR, Hp, G, GX as in
// kernels.h and geometry.h; slot s of dgates as in kernels.h's LstmStep/GruStep).
#pragma once

#include <cstdint>

#include "core/aligned.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace detail {

template <class T>
struct PackedDir {
  pvec<T> wih;    // [ceil(GX/NR)][I][NR] W_ih, gate-interleaved columns (input projection)
  pvec<T> whh;    // [nblk][Ho][G*W] W_hh, gate-interleaved columns (recurrence)
  avec<T> bias;   // [nblk][G][W] the input side's bias (interleaved_bias)
  avec<T> ph;     // the step's block constants: LSTM [nblk][3][W] peepholes i,f,o, or
                  // empty; GRU [nblk][1][W] b_hn (zeros without bias)
  pvec<T> whr;    // [ceil(P/NR)][H][NR] B(u,p) = W_hr[p,u], or empty
  avec<T> ln;     // layer-norm LSTM: [3*GX + 2*Hp] γ_ih, γ_hh, b_ih + b_hh
                  // (gate-major [4][Hp]), γ_c, β_c [Hp] (LnStepKernels), or empty
  // bfloat16 weights: wih and whh rounded, and those two left empty
  pvec<uint16_t> wih16, whh16;
  // with_backward only
  pvec<T> whh_t;  // [ceil(Ho/NR)][GX][NR] B(s*Hp+u, n) = W_hh[h_gate[s]*H+u, n]
  pvec<T> wih_t;  // [ceil(I/NR)][GX][NR] B(q*Hp+u, n) = W_ih[q*H+u, n]
  pvec<T> whr_t;  // [ceil(H/NR)][P][NR] B(p,u) = W_hr[p,u], or empty
};

template <class T>
struct PackedImpl {
  int64_t I = 0, H = 0, P = 0, D = 1;
  Cell cell = Cell::lstm;
  bool peephole = false, with_backward = false;
  bool bf16 = false;  // W_ih and W_hh held as bfloat16 (inference only)
  Isa isa = Isa::scalar;
  PackedDir<T> dir[2];
  // Throws std::invalid_argument when d or isa differ from what was packed,
  // or when training needs backward panels that were not built.
  void check(const LayerDims& d, Isa call_isa, bool need_backward) const;
};

}  // namespace detail
}  // namespace fastlstm
