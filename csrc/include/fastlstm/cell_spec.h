// The facts of each recurrent cell, stated once: its gates, its states, its
// parameters (names, shapes, per-direction order, when they exist). Drivers
// and bindings read them here; Python reads them through _core.cell_specs()
// (fastlstm/_spec.py); the converters, adapters and references never restate
// them.
//
// Sizes, as in rnn.h: I input features (of this layer), H hidden units,
// P projection size (0 = none), Ho = P ? P : H.
#pragma once

#include <cstdint>

namespace fastlstm {
inline namespace v1 {

enum class Cell : int { lstm = 0, gru = 1, lnlstm = 2 };

// One extent of a parameter's shape, in the layer's sizes.
enum class Extent : int {
  none = 0,  // (a vector has cols == none)
  gh,        // gates * H: one row per gate unit, gates in the cell's order
  h,         // H
  ho,        // Ho
  i,         // I
  p,         // P
  three,     // 3 (peephole rows i, f, o)
};

// When a parameter exists.
enum class When : int { always = 0, bias, proj, peephole };

// How a parameter is initialised: torch's U(-1/sqrt(H), 1/sqrt(H)), or constant.
enum class Init : int { uniform = 0, ones, zeros };

struct ParamSpec {
  const char* name;  // torch's stem: "weight_ih" -> weight_ih_l{k}, weight_ih_l{k}_reverse
  Extent rows, cols;
  When when;
  Init init;
  bool trailing;      // registered after every layer's other parameters (torch has no such
                      // parameter: torch's own order stays a prefix)
};

struct CellSpec {
  Cell cell;
  const char* name;        // "lstm", "gru", "lnlstm"
  int gates;               // rows of a gate stack = gates * H
  const char* gate_order;  // one letter a gate: "ifgo", "rzn"
  int states;              // 2: (h, c); 1: (h)
  bool proj, peephole;     // the options the cell takes
  bool cell_clip;          // takes a clip of the gate pre-activations (LayerDims::cell_clip)
  double norm_eps;         // its layer norms' epsilon; 0: no layer norm
  const ParamSpec* params; // per direction, in the order the kernels and ops take them
  int n_params;
};

namespace cell_params {
constexpr ParamSpec kLstm[] = {
    {"weight_ih", Extent::gh, Extent::i, When::always, Init::uniform, false},
    {"weight_hh", Extent::gh, Extent::ho, When::always, Init::uniform, false},
    {"bias_ih", Extent::gh, Extent::none, When::bias, Init::uniform, false},
    {"bias_hh", Extent::gh, Extent::none, When::bias, Init::uniform, false},
    {"weight_hr", Extent::p, Extent::h, When::proj, Init::uniform, false},
    {"weight_ph", Extent::three, Extent::h, When::peephole, Init::uniform, true},
};
constexpr ParamSpec kGru[] = {
    {"weight_ih", Extent::gh, Extent::i, When::always, Init::uniform, false},
    {"weight_hh", Extent::gh, Extent::h, When::always, Init::uniform, false},
    {"bias_ih", Extent::gh, Extent::none, When::bias, Init::uniform, false},
    {"bias_hh", Extent::gh, Extent::none, When::bias, Init::uniform, false},
};
constexpr ParamSpec kLnLstm[] = {
    {"weight_ih", Extent::gh, Extent::i, When::always, Init::uniform, false},
    {"weight_hh", Extent::gh, Extent::h, When::always, Init::uniform, false},
    {"bias_ih", Extent::gh, Extent::none, When::bias, Init::uniform, false},
    {"bias_hh", Extent::gh, Extent::none, When::bias, Init::uniform, false},
    {"weight_ln_ih", Extent::gh, Extent::none, When::always, Init::ones, false},
    {"weight_ln_hh", Extent::gh, Extent::none, When::always, Init::ones, false},
    {"weight_ln_c", Extent::h, Extent::none, When::always, Init::ones, false},
    {"bias_ln_c", Extent::h, Extent::none, When::always, Init::zeros, false},
};
}  // namespace cell_params

constexpr CellSpec kCellSpecs[] = {
    {Cell::lstm, "lstm", 4, "ifgo", 2, true, true, true, 0.0, cell_params::kLstm, 6},
    {Cell::gru, "gru", 3, "rzn", 1, false, false, false, 0.0, cell_params::kGru, 4},
    {Cell::lnlstm, "lnlstm", 4, "ifgo", 2, false, false, false, 1e-5, cell_params::kLnLstm, 8},
};

constexpr const CellSpec& cell_spec(Cell c) { return kCellSpecs[static_cast<int>(c)]; }

// Does parameter s exist in a layer with these options?
constexpr bool param_present(const ParamSpec& s, bool bias, int64_t P, bool peephole) {
  return s.when == When::always || (s.when == When::bias && bias) ||
         (s.when == When::proj && P > 0) || (s.when == When::peephole && peephole);
}

// The size of one extent for a layer.
constexpr int64_t extent_size(Extent e, const CellSpec& c, int64_t I, int64_t H, int64_t P) {
  switch (e) {
    case Extent::gh: return c.gates * H;
    case Extent::h: return H;
    case Extent::ho: return P > 0 ? P : H;
    case Extent::i: return I;
    case Extent::p: return P;
    case Extent::three: return 3;
    case Extent::none: return 1;
  }
  return 0;
}

}  // namespace v1
}  // namespace fastlstm
