// Padded sizes of the internal buffers for one layer and one kernel width.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/checked.h"
#include "fastlstm/cell_spec.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace detail {

struct Geometry {
  int64_t W, NR;   // SIMD width, GEMM tile width (4W)
  int64_t G;       // gates of the cell
  int64_t Hp;      // H rounded up to W
  int64_t nblk;    // unit blocks = Hp / W
  int64_t GX;      // G*Hp: width of a row of gates (interleaved [blk][G][W])
  int64_t GD;      // 4*Hp: width of a row of dgates (gate-major slots [4][Hp])
  int64_t Ho;      // size of h
  int64_t ldh;     // leading dimension of internal h rows
  bool norm;       // layer-norm LSTM: saves the normalised rows too
  int64_t lds;     // width of a row of its saved rstds (3, padded to W)
  Geometry(const LayerDims& d, int64_t w)
      : W(w), NR(4 * w), G(cell_spec(d.cell).gates), Hp(round_up(d.H, w)), nblk(Hp / w),
        GX(G * Hp), GD(4 * Hp), Ho(d.hout()), ldh(d.P > 0 ? round_up(d.P, 4 * w) : Hp),
        norm(d.cell == Cell::lnlstm), lds(round_up(3, w)) {}
  // Saved per direction: gates [N,GX], one state-sized row [N,Hp] (LSTM c_t,
  // GRU W_hn h + b_hn), h_{t-1} [N,ldh]; the layer-norm LSTM's then adds
  // LN(x W_ih^T), LN(h W_hh^T) [N,GX] each (gate-major), LN(c_t) [N,Hp] and
  // the rstds [N,lds].
  int64_t saved_per_row() const {
    return GX + Hp + ldh + (norm ? 2 * GX + Hp + lds : 0);
  }
  // Unit blocks a thread's share is a multiple of, so that its columns of
  // the input projection are whole GEMM panels (G blocks of W = a panel).
  int64_t block_grain() const { return G == 4 ? 1 : 4; }
};

// layer_backward's scratch (elements): from 0, dgates [N,GD] of each
// direction (and the layer-norm LSTM's dL/d(h W_hh^T), as large), then one
// region for the panels of x or h_{t-1} that the weight gradients are
// products with.
struct BackwardScratch {
  int64_t per_dir = 0;  // direction k's dgates are at k * per_dir
  int64_t dr = 0;     // offset of the layer-norm rows (k * per_dir further)
  int64_t panels = 0;  // offset of the panel region
  int64_t total = 0;
};
inline BackwardScratch backward_scratch(const Geometry& g, const LayerDims& d, int64_t N) {
  BackwardScratch s;
  s.per_dir = checked_mul(N, g.GD, "scratch");
  const int64_t dgs = checked_mul(s.per_dir, d.D, "scratch");
  s.dr = dgs;
  s.panels = checked_add(dgs, g.norm ? dgs : 0, "scratch");
  const int64_t cols = round_up(std::max(d.I, g.Ho), g.NR);
  s.total = checked_add(s.panels, checked_mul(N, cols, "scratch"), "scratch");
  checked_mul(s.total, 8, "scratch");
  return s;
}

}  // namespace detail
}  // namespace fastlstm
