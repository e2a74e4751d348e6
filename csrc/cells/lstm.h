// The LSTM's pointwise maths, forward and backward, for one slice of units
// (see cells/common.h for V and A). Gate order i, f, g, o; peepholes p_i,
// p_f, p_o (Peep):
//   i = σ(a_i + p_i⊙c_{t-1})   f = σ(a_f + p_f⊙c_{t-1})   g = tanh(a_g)
//   c_t = f⊙c_{t-1} + i⊙g      o = σ(a_o + p_o⊙c_t)       h = o⊙tanh(c_t)
// a_* are the gate pre-activations (x W_ih^T + b + h W_hh^T). With a cell
// clip (ONNX's), each σ/tanh argument above is first clipped to [lo, hi]
// (Clip).
#pragma once

#include "cells/common.h"

namespace fastlstm {
namespace cells {

template <class V>
struct LstmGates {
  V i, f, g, o;  // activated gates (forward), or dL/d(pre-activations) (backward)
};

// a: pre-activations in, activated gates out; c: c_{t-1} in, c_t out; returns h.
template <class A, bool Peep, bool Clip, class V>
FL_CELL_FN V lstm_forward(LstmGates<V>& a, V& c, V pi, V pf, V po, V lo, V hi) {
  if (Peep) {
    a.i += pi * c;
    a.f += pf * c;
  }
  if (Clip) {
    a.i = clip(a.i, lo, hi);
    a.f = clip(a.f, lo, hi);
    a.g = clip(a.g, lo, hi);
  }
  a.i = A::sigmoid(a.i);
  a.f = A::sigmoid(a.f);
  a.g = A::tanh(a.g);
  c = a.f * c + a.i * a.g;
  if (Peep) a.o += po * c;
  if (Clip) a.o = clip(a.o, lo, hi);
  a.o = A::sigmoid(a.o);
  return a.o * A::tanh(c);
}

// The activations of the clip bounds, which tell the backward where a gate
// was clipped: σ(lo), σ(hi), tanh(lo), tanh(hi).
template <class V>
struct LstmClip {
  V s_lo, s_hi, t_lo, t_hi;
};

// s: the saved activated gates; c, cp: c_t, c_{t-1}; dh: dL/dh (before any
// projection); dc: dL/dc_t from step t+1 in, dL/dc_{t-1} out; k: see LstmClip
// (read with Clip). Returns
// dL/da.
template <class A, bool Peep, bool Clip, class S, class V>
FL_CELL_FN LstmGates<V> lstm_backward(const LstmGates<V>& s, V c, V cp, V dh, V& dc, V pi,
                                      V pf, V po, const LstmClip<V>& k) {
  const V tc = A::tanh(c);
  LstmGates<V> d;
  d.o = dh * tc * s.o * (S(1) - s.o);
  if (Clip) d.o = unclipped(d.o, s.o, k.s_lo, k.s_hi);
  V dct = dc + dh * s.o * (S(1) - tc * tc);
  if (Peep) dct += d.o * po;
  d.i = dct * s.g * s.i * (S(1) - s.i);
  d.f = dct * cp * s.f * (S(1) - s.f);
  d.g = dct * s.i * (S(1) - s.g * s.g);
  if (Clip) {
    d.i = unclipped(d.i, s.i, k.s_lo, k.s_hi);
    d.f = unclipped(d.f, s.f, k.s_lo, k.s_hi);
    d.g = unclipped(d.g, s.g, k.t_lo, k.t_hi);
  }
  dc = dct * s.f;
  if (Peep) dc += d.i * pi + d.f * pf;
  return d;
}

}  // namespace cells
}  // namespace fastlstm
