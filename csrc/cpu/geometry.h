// Padded sizes of the internal buffers for one layer and one kernel width.
#pragma once

#include <cstdint>

#include "core/checked.h"
#include "fastlstm/lstm.h"

namespace fastlstm {
namespace detail {

struct Geometry {
  int64_t W, NR;   // SIMD width, tile width (4W)
  int64_t Hp;      // H rounded up to W
  int64_t nblk;    // unit blocks = Hp / W
  int64_t G4;      // 4*Hp: width of a row of gates (interleaved or gate-major)
  int64_t Ho;      // size of h
  int64_t ldh;     // leading dimension of internal h rows
  Geometry(const LayerDims& d, int64_t w)
      : W(w), NR(4 * w), Hp(round_up(d.H, w)), nblk(Hp / w), G4(4 * Hp), Ho(d.hout()),
        ldh(d.P > 0 ? round_up(d.P, 4 * w) : Hp) {}
  // Saved per direction: gates [N,G4], c_t [N,Hp], h_{t-1} [N,ldh].
  int64_t saved_per_row() const { return G4 + Hp + ldh; }
};

}  // namespace detail
}  // namespace fastlstm
