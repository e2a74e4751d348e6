// The per-ISA kernel tables, split by concern: GEMM kernels (register tiles,
// bfloat16 panels; gemm.h uses only these), the step kernels of each cell,
// and the activations. One generic source (kernels.inc) fills them once per
// ISA; the drivers only call through them. Layout terms used below:
//   W   SIMD width in elements of T;  NR = 4*W columns per GEMM tile
//   unit block: W hidden units; its G gates side by side make one step tile
//   of G*W columns (LSTM: NR), "interleaved" rows hold [blk][gate][W]
//   Hp  H rounded up to a multiple of W (padding units are zero)
//   dgates: gate-major rows of 4 slots [4][Hp] (see StepLayout)
#pragma once

#include <cstdint>

#include "fastlstm/rnn.h"

namespace fastlstm {
namespace detail {

// One unit block of one forward step, rows [0,n): gates = gx + h W_hh^T,
// activations, state update, all while the tile is in registers.
template <class T>
struct FwdBlockArgs {
  int64_t n = 0;                  // rows
  int64_t K = 0;                  // Ho, the recurrent inner dimension
  const T* h = nullptr;           // [n,ldh] h_{t-1}, first K columns read
  int64_t ldh = 0;
  const T* hself = nullptr;       // [n,ldh] h_{t-1} of this block's units (GRU)
  const T* w = nullptr;           // [K,G*W] packed W_hh panel of this block
  const uint16_t* w16 = nullptr;  // [K,NR] the same panel in bfloat16 (bf16 kernels)
  const void* w_next = nullptr;   // the panel (w or w16) of the block run next, or
                                  // null: prefetched during this block's last slice
  T* gx = nullptr;                // [n,ldgx] x W_ih^T + b, interleaved, this block
                                  // (scratch: may hold running sums on return)
  int64_t ldgx = 0;
  T* msum = nullptr;              // [n,W] scratch for the GRU's running h W_hn^T sums
  const T* ph = nullptr;          // the block's constants: LSTM [3,W] peepholes i,f,o
                                  // or null; GRU [W] b_hn
  T* c = nullptr;                 // [n,ldc] c_{t-1} in, c_t out (LSTM)
  int64_t ldc = 0;
  T* out = nullptr;               // [n,ldo] h_t (LSTM: o*tanh(c_t), before any projection)
  int64_t ldo = 0;
  T* gsave = nullptr;             // [n,ldgs] activated gates, interleaved, or null
  int64_t ldgs = 0;
  T* csave = nullptr;             // [n,ldcs] LSTM c_t / GRU W_hn h + b_hn, or null
  int64_t ldcs = 0;
  bool split_k = true;            // a lone row may split k (see tile)
  T clip = T(0);                  // LSTM cell clip, read by [clip] kernels
  int units = 0;                  // the block's units when fewer than W (the last
                                  // block of H): its padding lanes are zeroed; 0 = W
};

// Unit blocks [0,nblk) of one backward step (pointwise part), rows [0,n);
// the pointers are at block 0, and block b is G*W further in gates, W
// further in c, cp, dh, dc and dg (3W in ph).
template <class T>
struct BwdBlockArgs {
  int64_t n = 0;
  int64_t nblk = 1;
  const T* gates = nullptr;       // [n,ldg] activated gates, interleaved, from block 0
  int64_t ldg = 0;
  const T* c = nullptr;           // [n,ldc] saved state row: LSTM c_t, GRU W_hn h + b_hn
  int64_t ldc = 0;
  const T* cp = nullptr;          // [n,ldcp] LSTM c_{t-1}, GRU h_{t-1}
  int64_t ldcp = 0;
  T* dh = nullptr;                // [n,lddh] dL/dh_t (LSTM: of o*tanh(c_t)); GRU: out
                                  // the direct part of dL/dh_{t-1}
  int64_t lddh = 0;
  T* dc = nullptr;                // [n,lddc] in dL/dc_t (from t+1), out dL/dc_{t-1} (LSTM)
  int64_t lddc = 0;
  T* dg = nullptr;                // [n,lddg] dL/dgates, slot s at dg + s*gstride
  int64_t lddg = 0, gstride = 0;
  const T* ph = nullptr;          // [3,W] peepholes of this block, or null
  T clip = T(0);                  // LSTM cell clip, read by [clip] kernels
};

// GEMM: the register-tile micro-kernels every product runs on (gemm.h).
template <class T>
struct GemmKernels {
  Isa isa = Isa::scalar;
  int W = 0, NR = 0, MR = 0;
  // C[m,0:nr] = (acc ? C[m,0:nr] : 0) + sum_k A[m*rsa + k*csa] * Bp[k*NR + 0:nr]
  // for m < mr <= MR, nr <= NR. Bp: [kc,NR] one packed panel. split_k lets a
  // lone row (mr = 1) sum k over several accumulator sets (faster, other
  // rounding); without it every row sums in plain k order whatever mr is.
  void (*tile)(int64_t kc, const T* a, int64_t rsa, int64_t csa, const T* bp,
               T* c, int64_t ldc, int mr, int nr, bool acc, bool split_k) = nullptr;
  // bfloat16 weights (float only, inference): Bp is uint16_t, tiles have MR16 rows.
  int MR16 = 0;
  void (*tile_bf16)(int64_t kc, const T* a, int64_t rsa, int64_t csa, const uint16_t* bp,
                    T* c, int64_t ldc, int mr, int nr, bool acc, bool split_k) = nullptr;
  int (*bf16_order)(int s) = nullptr;  // float index at position s of a 2W group
  // dst [rows,NR] floats = the bfloat16 panel rows src [rows,NR]
  void (*widen_bf16)(int64_t rows, const uint16_t* src, T* dst) = nullptr;
};

// One cell's step kernels: the fused forward step (GEMM tile + the cell maths
// of csrc/cells/ in registers) and the pointwise backward step. [peephole]
// and [clip] (the cell clip, read from the args) are 0 for cells without
// them; the GRU has no bfloat16 kernels.
template <class T>
struct StepKernels {
  void (*fwd_block[2][2][2])(const FwdBlockArgs<T>&) = {};  // [peephole][training][clip]
  void (*fwd_block_bf16[2][2])(const FwdBlockArgs<T>&) = {};  // [peephole][clip], w16 read
  void (*bwd_block[2][2])(const BwdBlockArgs<T>&) = {};     // [peephole][clip]
};

// One row of the layer-norm LSTM's step: its layer norms reduce over the
// whole row, so one call does a row's every unit (each row by one thread, so
// results do not depend on how rows are shared). Gate rows named
// gate-major are [4][Hp] (slot q = gate q, as dgates); padding units are
// zero in every output. ln: the packed [3*GX + 2*Hp] γ_ih, γ_hh, b_ih + b_hh
// (gate-major), γ_c, β_c. rstd: 1/sqrt(var + eps) of x W_ih^T, h W_hh^T, c_t.
template <class T>
struct LnFwdRowArgs {
  int64_t H = 0, Hp = 0;
  const T* ln = nullptr;
  const T* gx = nullptr;  // [GX] x W_ih^T, interleaved (no bias)
  const T* r = nullptr;   // [GX] h_{t-1} W_hh^T, interleaved
  T* xn = nullptr;        // [GX] out LN(x W_ih^T), gate-major
  T* rn = nullptr;        // [GX] out LN(h W_hh^T), gate-major
  T* gates = nullptr;     // [GX] out activated gates, interleaved
  T* c = nullptr;         // [Hp] c_{t-1} in, c_t out
  T* chat = nullptr;      // [Hp] out LN(c_t)
  T* h = nullptr;         // [Hp] out h_t
  T* rstd = nullptr;      // [3] out
};

template <class T>
struct LnBwdRowArgs {
  int64_t H = 0, Hp = 0;
  const T* ln = nullptr;
  const T* gates = nullptr;  // [GX] activated gates, interleaved
  const T* rn = nullptr;     // [GX] LN(h W_hh^T), gate-major
  const T* chat = nullptr;   // [Hp] LN(c_t)
  const T* cp = nullptr;     // [Hp] c_{t-1}
  const T* rstd = nullptr;   // [3]
  const T* dh = nullptr;     // [Hp] dL/dh_t
  T* dc = nullptr;           // [Hp] dL/dc_t from step t+1 in, dL/dc_{t-1} out
  T* da = nullptr;           // [GX] out dL/d(gate pre-activations), gate-major
  T* dr = nullptr;           // [GX] out dL/d(h W_hh^T), gate-major
  T* du = nullptr;           // [Hp] out dL/d(LN(c_t)⊙γ_c + β_c)
};

template <class T>
struct LnStepKernels {
  void (*fwd_row)(const LnFwdRowArgs<T>&) = nullptr;
  void (*bwd_row)(const LnBwdRowArgs<T>&) = nullptr;
  // out [GX] = dL/dv of n = LN(v) (gate-major rows [4][Hp] of 4H units),
  // given dL/d(n⊙gain) = da and the rstd of v.
  void (*norm_backward)(int64_t H, int64_t Hp, const T* gain, const T* da, const T* n, T rstd,
                        T* out) = nullptr;
};

template <class T>
struct ActivationKernels {
  void (*sigmoid)(int64_t n, const T* x, T* y) = nullptr;  // y[n] = σ(x[n])
  void (*tanh)(int64_t n, const T* x, T* y) = nullptr;     // y[n] = tanh(x[n])
};

// One ISA's table: the GEMM kernels, then the step kernels of each cell.
template <class T>
struct Kernels : GemmKernels<T> {
  StepKernels<T> lstm, gru;
  LnStepKernels<T> lnlstm;
  ActivationKernels<T> act;
};

// How a cell's step kernels lay out what the drivers move (one struct per
// cell with kernels; the drivers are templated on it). dgates rows have four
// slots of Hp: the recurrent product reads slots [0,G) (slot s is W_hh's
// gate h_gate[s]), the input side reads slots [x_slot, x_slot+G) in gate order.
struct LstmStep {
  static constexpr Cell cell = Cell::lstm;
  static constexpr int G = 4;
  static constexpr bool has_c = true;       // a second state, c
  static constexpr int h_gate[4] = {0, 1, 2, 3};
  static constexpr int x_slot = 0;
  static constexpr bool dh_direct = false;  // the backward step leaves a part of dh_{t-1}
  static constexpr bool norm = false;       // fused steps (see LnLstmStep)
  template <class T>
  static const StepKernels<T>& of(const Kernels<T>& k) { return k.lstm; }
};

// GRU dgates slots: [dL/d(W_hn h + b_hn), r, z, n]; r and z are shared by
// both sides, n differs (the x side's is before the reset gate's product).
struct GruStep {
  static constexpr Cell cell = Cell::gru;
  static constexpr int G = 3;
  static constexpr bool has_c = false;
  static constexpr int h_gate[3] = {2, 0, 1};
  static constexpr int x_slot = 1;
  static constexpr bool dh_direct = true;   // z * dh_t
  static constexpr bool norm = false;
  template <class T>
  static const StepKernels<T>& of(const Kernels<T>& k) { return k.gru; }
};

// The layer-norm LSTM: not fused (its norms need whole rows), a step is the
// product h W_hh^T, then the row kernels (LnStepKernels). Saved rows add
// LN(x W_ih^T), LN(h W_hh^T), LN(c_t) and the rstds (Geometry). The
// backward's dgates are dL/da (bias and gain gradients); the products take
// their own rows (dL/d(x W_ih^T), dL/d(h W_hh^T)).
struct LnLstmStep {
  static constexpr Cell cell = Cell::lnlstm;
  static constexpr int G = 4;
  static constexpr bool has_c = true;
  static constexpr int h_gate[4] = {0, 1, 2, 3};
  static constexpr int x_slot = 0;
  static constexpr bool dh_direct = false;
  static constexpr bool norm = true;
};

// Calls f(C{}) with the step layout C of cell c: the one dispatch on the cell.
template <class F>
decltype(auto) on_cell(Cell c, F&& f) {
  switch (c) {
    case Cell::gru: return f(GruStep{});
    case Cell::lnlstm: return f(LnLstmStep{});
    default: return f(LstmStep{});
  }
}

// The table for an ISA; throws std::invalid_argument if not built or not
// supported by this CPU. Tables are immutable after their first use.
template <class T>
const Kernels<T>& kernels_for(Isa isa);

#define FASTLSTM_DECLARE_ISA(ns)                 \
  namespace ns {                                 \
  void fill_kernels(Kernels<float>& k);          \
  void fill_kernels(Kernels<double>& k);         \
  }
FASTLSTM_DECLARE_ISA(scalar)
FASTLSTM_DECLARE_ISA(avx2)
FASTLSTM_DECLARE_ISA(avx512)
#undef FASTLSTM_DECLARE_ISA

}  // namespace detail
}  // namespace fastlstm
