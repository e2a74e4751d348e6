// The GRU's pointwise maths, forward and backward, for one slice of units
// (see cells/common.h for V and A). Gate order r, z, n, as torch.nn.GRU:
//   r = σ(a_r)   z = σ(a_z)   n = tanh(x_n + r⊙m)   h_t = (1−z)⊙n + z⊙h_{t-1}
// a_r, a_z: both sides summed (x W_i*^T + b_i* + h W_h*^T + b_h*);
// x_n = x W_in^T + b_in; m = h W_hn^T + b_hn (kept apart: r multiplies it).
#pragma once

#include "cells/common.h"

namespace fastlstm {
namespace cells {

template <class V>
struct GruGates {
  V r, z, n;  // activated gates (forward), or dL/d(pre-activations) (backward)
};

// a: a_r, a_z and m in, activated r, z, n out; hp: h_{t-1}. Returns h_t.
template <class A, class V>
FL_CELL_FN V gru_forward(GruGates<V>& a, V xn, V hp) {
  a.r = A::sigmoid(a.r);
  a.z = A::sigmoid(a.z);
  a.n = A::tanh(xn + a.r * a.n);
  return a.n + a.z * (hp - a.n);
}

// s: the saved activated gates; m: the saved h W_hn^T + b_hn; hp: h_{t-1};
// dh: dL/dh_t in, its direct part of dL/dh_{t-1} (z⊙dh_t) out; dm: dL/dm.
// Returns dL/da_r, dL/da_z and, in n, dL/dx_n.
template <class S, class V>
FL_CELL_FN GruGates<V> gru_backward(const GruGates<V>& s, V m, V hp, V& dh, V& dm) {
  GruGates<V> d;
  d.n = dh * (S(1) - s.z) * (S(1) - s.n * s.n);
  d.z = dh * (hp - s.n) * s.z * (S(1) - s.z);
  d.r = d.n * m * s.r * (S(1) - s.r);
  dm = d.n * s.r;
  dh = dh * s.z;
  return d;
}

}  // namespace cells
}  // namespace fastlstm
