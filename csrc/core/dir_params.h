// A layer's per-direction parameters as the C++ API holds them (DirWeights /
// DirGrads), read from its cell's spec: the bindings fill and size them from
// here, so names, order and shapes are stated only in cell_spec.h.
#pragma once

#include <cstdint>
#include <cstring>

#include "fastlstm/cell_spec.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace detail {

// The DirWeights / DirGrads member that holds spec parameter p (by its name),
// or null for a parameter the C++ API has no member for.
template <class Ptrs>
decltype(&Ptrs::w_ih) param_field(const ParamSpec& p) {
  static const struct {
    const char* name;
    decltype(&Ptrs::w_ih) field;
  } fields[] = {{"weight_ih", &Ptrs::w_ih}, {"weight_hh", &Ptrs::w_hh},
                {"bias_ih", &Ptrs::b_ih},   {"bias_hh", &Ptrs::b_hh},
                {"weight_hr", &Ptrs::w_hr}, {"weight_ph", &Ptrs::w_ph},
                {"weight_ln_ih", &Ptrs::ln_ih}, {"weight_ln_hh", &Ptrs::ln_hh},
                {"weight_ln_c", &Ptrs::ln_c}, {"bias_ln_c", &Ptrs::ln_cb}};
  for (const auto& f : fields)
    if (std::strcmp(f.name, p.name) == 0) return f.field;
  return nullptr;
}

// Whether spec parameter j of d's cell exists in a layer of dims d.
inline bool dir_param_present(int j, const LayerDims& d, bool bias) {
  return param_present(cell_spec(d.cell).params[j], bias, d.P, d.peephole);
}

// Elements of spec parameter j of d's cell in a layer of dims d.
inline int64_t dir_param_size(int j, const LayerDims& d) {
  const CellSpec& s = cell_spec(d.cell);
  const ParamSpec& p = s.params[j];
  return extent_size(p.rows, s, d.I, d.H, d.P) * extent_size(p.cols, s, d.I, d.H, d.P);
}

}  // namespace detail
}  // namespace fastlstm
