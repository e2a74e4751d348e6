// The layer-norm LSTM's pointwise maths (Ba et al. 2016, as haste's
// LayerNormLSTM), forward and backward, for one slice of units (see
// cells/common.h for V and A). With LN(v) = (v - mean v) * rstd, rstd =
// 1/sqrt(var v + eps) over a whole row (4H gate rows, or H for c):
//   a = LN(x W_ih^T)⊙γ_ih + LN(h W_hh^T)⊙γ_hh + b    (b = b_ih + b_hh)
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
//   c_t = f⊙c_{t-1} + i⊙g      h = o⊙tanh(ĉ⊙γ_c + β_c),  ĉ = LN(c_t)
// The row statistics are the caller's (a reduction over the whole row); the
// functions here are the per-unit parts between them.
#pragma once

#include "cells/common.h"
#include "cells/lstm.h"

namespace fastlstm {
namespace cells {

constexpr double kLnEps = 1e-5;  // as torch.nn.LayerNorm and haste

// The normalised value of v: (v - mean) * rstd.
template <class V>
FL_CELL_FN V ln_normalise(V v, V mean, V rstd) {
  return (v - mean) * rstd;
}

// dL/dv of n = LN(v), given dn = dL/dn, and the row means m1 = mean(dn),
// m2 = mean(dn⊙n).
template <class V>
FL_CELL_FN V ln_backward(V dn, V n, V m1, V m2, V rstd) {
  return rstd * (dn - m1 - n * m2);
}

// a: the gates' pre-activations in (from the normalised products), activated
// gates out; c: c_{t-1} in, c_t out.
template <class A, class V>
FL_CELL_FN void lnlstm_gates(LstmGates<V>& a, V& c) {
  a.i = A::sigmoid(a.i);
  a.f = A::sigmoid(a.f);
  a.g = A::tanh(a.g);
  a.o = A::sigmoid(a.o);
  c = a.f * c + a.i * a.g;
}

// h from the activated o and the normalised c_t.
template <class A, class V>
FL_CELL_FN V lnlstm_out(V o, V chat, V gc, V bc) {
  return o * A::tanh(chat * gc + bc);
}

// Backward of lnlstm_out: dh = dL/dh. Returns dL/da_o; du = dL/d(ĉ⊙γ_c + β_c).
template <class A, class S, class V>
FL_CELL_FN V lnlstm_out_backward(V dh, V o, V chat, V gc, V bc, V& du) {
  const V t = A::tanh(chat * gc + bc);
  du = dh * o * (S(1) - t * t);
  return dh * t * o * (S(1) - o);
}

// Backward of lnlstm_gates for i, f, g: s the activated gates, cp = c_{t-1},
// dc = dL/dc_t (all of it: from t+1 and through LN(c_t)). Sets d.i, d.f,
// d.g (dL/da) and returns dL/dc_{t-1}.
template <class S, class V>
FL_CELL_FN V lnlstm_gates_backward(const LstmGates<V>& s, V cp, V dc, LstmGates<V>& d) {
  d.i = dc * s.g * s.i * (S(1) - s.i);
  d.f = dc * cp * s.f * (S(1) - s.f);
  d.g = dc * s.i * (S(1) - s.g * s.g);
  return dc * s.f;
}

}  // namespace cells
}  // namespace fastlstm
