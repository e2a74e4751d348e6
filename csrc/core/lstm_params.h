// The LSTM's parameters as the C++ API holds them (DirWeights / DirGrads),
// read from its cell spec: the bindings fill and size them from here, so the
// order and shapes are stated only in cell_spec.h.
#pragma once

#include <array>
#include <cstdint>

#include "fastlstm/cell_spec.h"
#include "fastlstm/lstm.h"

namespace fastlstm {
namespace detail {

constexpr int kLstmParams = 6;
static_assert(cell_spec(Cell::lstm).n_params == kLstmParams, "LSTM spec and DirWeights differ");

// The DirWeights / DirGrads member of each parameter, in the spec's order
// (w_ih, w_hh, b_ih, b_hh, w_hr, w_ph).
template <class Ptrs>
constexpr std::array<decltype(&Ptrs::w_ih), kLstmParams> lstm_fields() {
  return {&Ptrs::w_ih, &Ptrs::w_hh, &Ptrs::b_ih, &Ptrs::b_hh, &Ptrs::w_hr, &Ptrs::w_ph};
}

// Whether spec parameter j exists in a layer of dims d, with or without bias.
inline bool lstm_param_present(int j, const LayerDims& d, bool bias) {
  return param_present(cell_spec(Cell::lstm).params[j], bias, d.P, d.peephole);
}

// Elements of spec parameter j in a layer of dims d (its size when present).
inline int64_t lstm_param_size(int j, const LayerDims& d) {
  const CellSpec& s = cell_spec(Cell::lstm);
  const ParamSpec& p = s.params[j];
  return extent_size(p.rows, s, d.I, d.H, d.P) * extent_size(p.cols, s, d.I, d.H, d.P);
}

}  // namespace detail
}  // namespace fastlstm
