// The CUDA backend's memory layouts and launch geometry: plain host
// arithmetic, compiled in every build (the sizes are part of the API and are
// tested on hosts without a GPU).
//
// Sizes as in rnn.h; R = T*B rows, each (t, b) in time order. A direction's
// saved workspace is indexed by the row (t, b) the step worked on (the
// reverse direction walks t = lengths[b]-1 .. 0), so the weight-gradient
// products are single GEMMs over all R rows; rows past a sequence's length
// stay zero.
#pragma once

#include <cstdint>

#include "core/checked.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace cuda {

// Element offsets of the arrays of one direction; `size` is their sum.
struct WsLayout {      // saved by a training forward, per direction
  int64_t gates = 0;   // [R,GH] activated gates (GRU: r, z, n)
  int64_t cprev = 0;   // [R,H]  c_{t-1} (LSTM)
  int64_t c = 0;       // [R,H]  c_t (LSTM)
  int64_t hprev = 0;   // [R,Ho] h_{t-1}
  int64_t r = 0;       // [R,H]  o*tanh(c_t) before the projection (LSTM, P > 0)
  int64_t m = 0;       // [R,H]  h W_hn^T + b_hn (GRU)
  int64_t size = 0;
};

struct FwdScratch {    // cuda_layer_forward's temporaries (directions run in turn)
  int64_t xw = 0;      // [R,GH] x W_ih^T of every step
  int64_t rec = 0;     // [B,GH] h_{t-1} W_hh^T of one step
  int64_t h = 0;       // [B,Ho] the running h
  int64_t c = 0;       // [B,H]  the running c (LSTM)
  int64_t rs = 0;      // [B,H]  o*tanh(c_t) of one step (P > 0)
  int64_t ht = 0;      // [B,P]  its projection (P > 0)
  int64_t size = 0;
};

struct BwdScratch {    // cuda_layer_backward's temporaries
  int64_t dg = 0;      // [R,GH] dL/d(pre-activations), per row (GRU: input side)
  int64_t dgs = 0;     // [B,GH] the recurrent side of one step
  int64_t dh = 0;      // [B,Ho] the running dL/dh
  int64_t dc = 0;      // [B,H]  the running dL/dc (LSTM)
  int64_t dm = 0;      // [R,H]  dL/dm (GRU)
  int64_t dht = 0;     // [R,P]  dL/d(projected h) per row (P > 0)
  int64_t dhs = 0;     // [B,P]  the same for one step (P > 0)
  int64_t dr = 0;      // [B,H]  dL/d(o*tanh(c_t)) of one step (P > 0)
  int64_t size = 0;
};

// Appends n elements at the end of a layout: returns their offset.
inline int64_t take(int64_t& end, int64_t n, const char* what) {
  const int64_t at = end;
  end = detail::checked_add(end, n, what);
  return at;
}

inline int64_t gate_rows(const LayerDims& d) { return cell_spec(d.cell).gates * d.H; }

inline WsLayout ws_layout(const LayerDims& d) {
  using detail::checked_mul;
  const int64_t R = checked_mul(d.T, d.B, "workspace"), GH = gate_rows(d);
  const bool lstm = d.cell == Cell::lstm;
  WsLayout l;
  int64_t e = 0;
  l.gates = take(e, checked_mul(R, GH, "workspace"), "workspace");
  if (lstm) {
    l.cprev = take(e, checked_mul(R, d.H, "workspace"), "workspace");
    l.c = take(e, checked_mul(R, d.H, "workspace"), "workspace");
  }
  l.hprev = take(e, checked_mul(R, d.hout(), "workspace"), "workspace");
  if (lstm && d.P > 0) l.r = take(e, checked_mul(R, d.H, "workspace"), "workspace");
  if (!lstm) l.m = take(e, checked_mul(R, d.H, "workspace"), "workspace");
  l.size = e;
  return l;
}

inline FwdScratch fwd_scratch(const LayerDims& d) {
  using detail::checked_mul;
  const int64_t R = checked_mul(d.T, d.B, "scratch"), GH = gate_rows(d);
  FwdScratch s;
  int64_t e = 0;
  s.xw = take(e, checked_mul(R, GH, "scratch"), "scratch");
  s.rec = take(e, checked_mul(d.B, GH, "scratch"), "scratch");
  s.h = take(e, checked_mul(d.B, d.hout(), "scratch"), "scratch");
  if (d.cell == Cell::lstm) s.c = take(e, checked_mul(d.B, d.H, "scratch"), "scratch");
  if (d.P > 0) {
    s.rs = take(e, checked_mul(d.B, d.H, "scratch"), "scratch");
    s.ht = take(e, checked_mul(d.B, d.P, "scratch"), "scratch");
  }
  s.size = e;
  return s;
}

inline BwdScratch bwd_scratch(const LayerDims& d) {
  using detail::checked_mul;
  const int64_t R = checked_mul(d.T, d.B, "scratch"), GH = gate_rows(d);
  BwdScratch s;
  int64_t e = 0;
  s.dg = take(e, checked_mul(R, GH, "scratch"), "scratch");
  s.dgs = take(e, checked_mul(d.B, GH, "scratch"), "scratch");
  s.dh = take(e, checked_mul(d.B, d.hout(), "scratch"), "scratch");
  if (d.cell == Cell::lstm) s.dc = take(e, checked_mul(d.B, d.H, "scratch"), "scratch");
  if (d.cell == Cell::gru) s.dm = take(e, checked_mul(R, d.H, "scratch"), "scratch");
  if (d.P > 0) {
    s.dht = take(e, checked_mul(R, d.P, "scratch"), "scratch");
    s.dhs = take(e, checked_mul(d.B, d.P, "scratch"), "scratch");
    s.dr = take(e, checked_mul(d.B, d.H, "scratch"), "scratch");
  }
  s.size = e;
  return s;
}

// A 1-D launch over n items: blocks of kBlock threads, at most kMaxGrid
// blocks (the kernels stride by the grid past that). n >= 1.
constexpr int kBlock = 256;
constexpr int64_t kMaxGrid = int64_t{1} << 20;
inline int64_t launch_blocks(int64_t n) {
  const int64_t b = (n + kBlock - 1) / kBlock;
  return b < 1 ? 1 : (b > kMaxGrid ? kMaxGrid : b);
}

// A row-major product C[M,N] = alpha op(A) op(B) + beta C, as the column-major
// call that computes it (cuBLAS's convention): C^T = op(B)^T op(A)^T, so the
// operands swap and M, N swap. Leading dimensions are the row-major ones.
struct ColMajorGemm {
  bool ta, tb;       // transpose the first / second column-major operand
  int64_t m, n, k;
  bool a_is_B;       // the first column-major operand is the row-major B
  int64_t lda, ldb, ldc;
};
inline ColMajorGemm col_major(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda,
                              int64_t ldb, int64_t ldc) {
  return ColMajorGemm{tb, ta, N, M, K, true, ldb, lda, ldc};
}

}  // namespace cuda
}  // namespace fastlstm
