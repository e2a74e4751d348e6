// Precondition checks of the C++ API. Python validates first; these make the
// core safe to call on its own.
#include "core/checked.h"
#include "core/require.h"
#include "cells/lnlstm.h"
#include "cpu/geometry.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
inline namespace v1 {

using detail::require;
static_assert(cells::kLnEps == cell_spec(Cell::lnlstm).norm_eps, "the spec states the epsilon");

namespace {
int64_t vector_bytes(Isa isa) { return isa == Isa::avx512 ? 64 : isa == Isa::avx2 ? 32 : 16; }
}  // namespace

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "unknown";
}

void check_backend(const ExecConfig& cfg) {
  require(cfg.backend == Backend::cpu, "backend: '", backend_name(cfg.backend),
          "' is not built into this fastlstm (backends: cpu)");
}

int64_t check_layer(const LayerDims& d, const int64_t* lengths) {
  using detail::checked_mul;
  require(d.cell == Cell::lstm || d.cell == Cell::gru || d.cell == Cell::lnlstm,
          "cell: expected lstm, gru or lnlstm, got ", static_cast<int>(d.cell));
  const CellSpec& spec = cell_spec(d.cell);
  require(spec.proj || d.P == 0,
          "proj_size: the ", spec.name, " cell has no projection, got ", d.P);
  require(spec.peephole || !d.peephole,
          "peephole: the ", spec.name, " cell has no peepholes");
  require(d.zoneout >= 0.0 && d.zoneout <= 1.0,
          "zoneout must be in [0, 1], got ", d.zoneout);
  require(d.cell_clip >= 0.0, "cell_clip must be >= 0 (0 = none), got ", d.cell_clip);
  require(spec.cell_clip || d.cell_clip == 0.0,
          "cell_clip: the ", spec.name, " cell has no cell clip");
  require(d.T >= 1, "x: the sequence length T must be >= 1, got ", d.T);
  require(d.B >= 1, "x: the batch size B must be >= 1, got ", d.B);
  require(d.I >= 1, "input_size must be >= 1, got ", d.I);
  require(d.H >= 1, "hidden_size must be >= 1, got ", d.H);
  require(d.P >= 0 && d.P < d.H,
          "proj_size must be in [0, hidden_size), got ", d.P);
  require(d.D == 1 || d.D == 2, "directions must be 1 or 2, got ", d.D);
  const int64_t Ho = d.hout();
  const int64_t TB = checked_mul(d.T, d.B, "x");
  checked_mul(checked_mul(TB, d.I, "x"), 8, "x");
  checked_mul(checked_mul(TB, checked_mul(d.D, Ho, "y"), "y"), 8, "y");
  checked_mul(checked_mul(checked_mul(4, d.H, "weight_ih"), d.I, "weight_ih"), 8, "weight_ih");
  checked_mul(checked_mul(checked_mul(4, d.H, "weight_hh"), Ho, "weight_hh"), 8, "weight_hh");
  int64_t N = TB;
  if (lengths) {
    N = 0;
    for (int64_t b = 0; b < d.B; ++b) {
      require(lengths[b] >= 1 && lengths[b] <= d.T,
              "lengths: every value must be in [1, ", d.T, "], got ", lengths[b],
              " at index ", b);
      N += lengths[b];
    }
  }
  // Internal buffers: gates [N,4Hp] dominate; padding adds at most 64 bytes a row.
  checked_mul(checked_mul(N, detail::checked_add(4 * d.H, 64, "hidden_size"), "workspace"), 8,
              "workspace");
  return N;
}

int64_t layer_workspace_size(const LayerDims& d, const int64_t* lengths, Isa isa,
                             int element_bytes) {
  const int64_t N = check_layer(d, lengths);
  require(element_bytes == 4 || element_bytes == 8, "element_bytes must be 4 or 8");
  const detail::Geometry g(d, vector_bytes(isa) / element_bytes);
  const int64_t per_dir = detail::checked_mul(N, g.saved_per_row(), "workspace");
  const int64_t total = detail::checked_mul(per_dir, d.D, "workspace");
  detail::checked_mul(total, element_bytes, "workspace");
  return total;
}

int64_t layer_backward_scratch_size(const LayerDims& d, const int64_t* lengths, Isa isa,
                                    int element_bytes) {
  const int64_t N = check_layer(d, lengths);
  require(element_bytes == 4 || element_bytes == 8, "element_bytes must be 4 or 8");
  const detail::Geometry g(d, vector_bytes(isa) / element_bytes);
  return detail::backward_scratch(g, d, N).total;
}

}  // namespace v1
}  // namespace fastlstm
