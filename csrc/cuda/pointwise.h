// The CUDA backend's per-step pointwise work, as functors of one item index
// (a unit of one batch row): the drivers run them through their device's
// for_each (a CUDA grid, or a host loop). The cell maths itself is
// csrc/cells/'s, on scalars. Sizes and layouts: cuda/geometry.h.
#pragma once

#include <math.h>

#include <cstdint>

#include "cells/gru.h"
#include "cells/lstm.h"

namespace fastlstm {
namespace cuda {

// Exact activations on scalars (the device's expf/tanhf, the host's libm).
struct Act {
  static FL_CELL_FN float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
  static FL_CELL_FN double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
  static FL_CELL_FN float tanh(float x) { return tanhf(x); }
  static FL_CELL_FN double tanh(double x) { return ::tanh(x); }
};

// Where one step s of one direction is, for every row.
struct StepAt {
  int64_t T, B, s;
  int64_t D, dir;          // directions, this one
  const int64_t* lengths;  // [B] or null (all T)
  // Whether row b works at this step; if so, t is the time it works on
  // (the reverse direction walks t = lengths[b]-1 .. 0).
  FL_CELL_FN bool time(int64_t b, int64_t& t) const {
    const int64_t n = lengths ? lengths[b] : T;
    if (s >= n) return false;
    t = dir ? n - 1 - s : s;
    return true;
  }
};

// Zoneout on h: the weight of h_{t-1} in the step's h, from the training
// mask [T,B,D*Ho] where there is one, else the constant p (0 = none).
template <class T>
struct Zoneout {
  const T* keep;  // [T,B,D*Ho] or null
  T p;
  FL_CELL_FN bool on() const { return keep != nullptr || p != T(0); }
  FL_CELL_FN T at(int64_t row, int64_t col, int64_t DHo) const {
    return keep ? keep[row * DHo + col] : p;
  }
};

// The common end of a forward step for unit j of row b: h_t from the cell's
// new h (zoneout applied), saved h_{t-1}, the running h and y updated.
template <class T>
struct HOut {
  T* h;            // [B,Ho] the running h
  T* y;            // [T,B,D*Ho]
  T* hprev;        // [R,Ho] saved h_{t-1}, or null (inference)
  Zoneout<T> zo;
  int64_t Ho;
  FL_CELL_FN void put(const StepAt& at, int64_t row, int64_t b, int64_t j, T hn) const {
    const int64_t DHo = at.D * Ho, col = at.dir * Ho + j;
    const T hp = h[b * Ho + j];
    if (zo.on()) {
      const T k = zo.at(row, col, DHo);
      hn = k * hp + (T(1) - k) * hn;
    }
    if (hprev) hprev[row * Ho + j] = hp;
    h[b * Ho + j] = hn;
    y[row * DHo + col] = hn;
  }
  // y of a row past its length at step s (the time s is padding) is zero.
  FL_CELL_FN void pad(const StepAt& at, int64_t b, int64_t j) const {
    y[(at.s * at.B + b) * at.D * Ho + at.dir * Ho + j] = T(0);
  }
};

// LSTM forward step over B*H items. a = x W_ih^T (xw) + h W_hh^T (rec) +
// biases; with a projection the step's o*tanh(c) goes to rs (then ProjOut).
template <class T, bool Peep, bool Clip>
struct LstmStep {
  StepAt at;
  int64_t H, P;
  const T* xw;    // [R,4H]
  const T* rec;   // [B,4H]
  const T* b_ih;  // [4H] or null
  const T* b_hh;  // [4H] or null
  const T* w_ph;  // [3,H] (Peep)
  T lo, hi;       // the clip bounds (Clip)
  T* c;           // [B,H] the running c
  T* rs;          // [B,H] (P > 0)
  // saved (training) or null: [R,4H], [R,H], [R,H], [R,H] (P > 0)
  T *gates, *cprev, *cn, *r;
  HOut<T> out;
  FL_CELL_FN void add_bias(cells::LstmGates<T>& a, const T* bias, int64_t j) const {
    if (!bias) return;
    a.i += bias[j];
    a.f += bias[H + j];
    a.g += bias[2 * H + j];
    a.o += bias[3 * H + j];
  }
  FL_CELL_FN void operator()(int64_t i) const {
    const int64_t b = i / H, j = i % H;
    int64_t t;
    if (!at.time(b, t)) {
      if (P == 0) out.pad(at, b, j);
      return;
    }
    const int64_t row = t * at.B + b, G = 4 * H;
    const T* xr = xw + row * G;
    const T* rr = rec + b * G;
    cells::LstmGates<T> a{xr[j] + rr[j], xr[H + j] + rr[H + j], xr[2 * H + j] + rr[2 * H + j],
                          xr[3 * H + j] + rr[3 * H + j]};
    add_bias(a, b_ih, j);
    add_bias(a, b_hh, j);
    const T cp = c[b * H + j];
    T cc = cp;
    const T pi = Peep ? w_ph[j] : T(0), pf = Peep ? w_ph[H + j] : T(0),
            po = Peep ? w_ph[2 * H + j] : T(0);
    const T hn = cells::lstm_forward<Act, Peep, Clip>(a, cc, pi, pf, po, lo, hi);
    c[b * H + j] = cc;
    if (gates) {
      T* g = gates + row * G;
      g[j] = a.i;
      g[H + j] = a.f;
      g[2 * H + j] = a.g;
      g[3 * H + j] = a.o;
      cprev[row * H + j] = cp;
      cn[row * H + j] = cc;
      if (P > 0) r[row * H + j] = hn;
    }
    if (P > 0)
      rs[b * H + j] = hn;
    else
      out.put(at, row, b, j, hn);
  }
};

// The end of an LSTM step with a projection, over B*P items: ht = rs W_hr^T.
template <class T>
struct ProjOut {
  StepAt at;
  int64_t P;
  const T* ht;  // [B,P]
  HOut<T> out;
  FL_CELL_FN void operator()(int64_t i) const {
    const int64_t b = i / P, j = i % P;
    int64_t t;
    if (!at.time(b, t)) return out.pad(at, b, j);
    out.put(at, t * at.B + b, b, j, ht[b * P + j]);
  }
};

// GRU forward step over B*H items. rec = h W_hh^T (no bias).
template <class T>
struct GruStep {
  StepAt at;
  int64_t H;
  const T* xw;    // [R,3H]
  const T* rec;   // [B,3H]
  const T* b_ih;  // [3H] or null
  const T* b_hh;  // [3H] or null
  T *gates, *m;   // saved (training) [R,3H], [R,H], or null
  HOut<T> out;
  FL_CELL_FN void operator()(int64_t i) const {
    const int64_t b = i / H, j = i % H;
    int64_t t;
    if (!at.time(b, t)) return out.pad(at, b, j);
    const int64_t row = t * at.B + b, G = 3 * H;
    const T* xr = xw + row * G;
    const T* rr = rec + b * G;
    cells::GruGates<T> a{xr[j] + rr[j], xr[H + j] + rr[H + j], rr[2 * H + j]};
    T xn = xr[2 * H + j];
    if (b_ih) {
      a.r += b_ih[j];
      a.z += b_ih[H + j];
      xn += b_ih[2 * H + j];
    }
    if (b_hh) {
      a.r += b_hh[j];
      a.z += b_hh[H + j];
      a.n += b_hh[2 * H + j];
    }
    const T mv = a.n;
    const T hn = cells::gru_forward<Act>(a, xn, out.h[b * H + j]);
    if (gates) {
      T* g = gates + row * G;
      g[j] = a.r;
      g[H + j] = a.z;
      g[2 * H + j] = a.n;
      m[row * H + j] = mv;
    }
    out.put(at, row, b, j, hn);
  }
};

// The start of a backward step for unit j of row b: the gradient reaching
// the step's h (the running dh plus dy), split by zoneout into the part that
// flows straight to h_{t-1} (kept in dh) and the part through the cell's h.
template <class T>
struct HIn {
  T* dh;          // [B,Ho] the running dL/dh
  const T* dy;    // [T,B,D*Ho]
  Zoneout<T> zo;
  int64_t Ho;
  FL_CELL_FN T take(const StepAt& at, int64_t row, int64_t b, int64_t j) const {
    const int64_t DHo = at.D * Ho, col = at.dir * Ho + j;
    const T d = dh[b * Ho + j] + dy[row * DHo + col];
    if (!zo.on()) {
      dh[b * Ho + j] = T(0);
      return d;
    }
    const T k = zo.at(row, col, DHo);
    dh[b * Ho + j] = k * d;
    return (T(1) - k) * d;
  }
};

// The LSTM backward head with a projection, over B*P items: the gradient of
// the projected h, per step (dhs) and per row (dht, for dW_hr).
template <class T>
struct ProjIn {
  StepAt at;
  int64_t P;
  T* dhs;  // [B,P]
  T* dht;  // [R,P]
  HIn<T> in;
  FL_CELL_FN void operator()(int64_t i) const {
    const int64_t b = i / P, j = i % P;
    int64_t t;
    if (!at.time(b, t)) {
      dhs[b * P + j] = T(0);
      return;
    }
    const int64_t row = t * at.B + b;
    const T d = in.take(at, row, b, j);
    dhs[b * P + j] = d;
    dht[row * P + j] = d;
  }
};

// LSTM backward step over B*H items: dL/d(pre-activations) per row (dg) and
// for this step's dh GEMM (dgs); dc carried to c_{t-1}. With a projection the
// gradient of o*tanh(c) comes from dr, else from in (dh, dy, zoneout).
template <class T, bool Peep, bool Clip>
struct LstmBack {
  StepAt at;
  int64_t H, P;
  const T *gates, *cprev, *cn;  // saved [R,4H], [R,H], [R,H]
  const T* w_ph;                // [3,H] (Peep)
  cells::LstmClip<T> k;         // (Clip)
  const T* dr;                  // [B,H] (P > 0)
  T* dc;                        // [B,H] the running dL/dc
  T* dg;                        // [R,4H]
  T* dgs;                       // [B,4H]
  HIn<T> in;                    // (P == 0)
  FL_CELL_FN void operator()(int64_t i) const {
    const int64_t b = i / H, j = i % H, G = 4 * H;
    int64_t t;
    T* gs = dgs + b * G;
    if (!at.time(b, t)) {
      gs[j] = gs[H + j] = gs[2 * H + j] = gs[3 * H + j] = T(0);
      return;
    }
    const int64_t row = t * at.B + b;
    const T dhv = P > 0 ? dr[b * H + j] : in.take(at, row, b, j);
    const T* s = gates + row * G;
    const cells::LstmGates<T> sv{s[j], s[H + j], s[2 * H + j], s[3 * H + j]};
    T dcv = dc[b * H + j];
    const T pi = Peep ? w_ph[j] : T(0), pf = Peep ? w_ph[H + j] : T(0),
            po = Peep ? w_ph[2 * H + j] : T(0);
    const cells::LstmGates<T> d = cells::lstm_backward<Act, Peep, Clip, T>(
        sv, cn[row * H + j], cprev[row * H + j], dhv, dcv, pi, pf, po, k);
    dc[b * H + j] = dcv;
    T* gr = dg + row * G;
    gr[j] = gs[j] = d.i;
    gr[H + j] = gs[H + j] = d.f;
    gr[2 * H + j] = gs[2 * H + j] = d.g;
    gr[3 * H + j] = gs[3 * H + j] = d.o;
  }
};

// GRU backward step over B*H items: dg holds the input side (dL/da_r,
// dL/da_z, dL/dx_n), dgs the recurrent side of this step (n: dL/dm), dm
// dL/dm per row; dh gets z*dL/dh_t (the rest comes from the dh GEMM).
template <class T>
struct GruBack {
  StepAt at;
  int64_t H;
  const T *gates, *m, *hprev;  // saved [R,3H], [R,H], [R,H]
  T* dg;                       // [R,3H]
  T* dgs;                      // [B,3H]
  T* dm;                       // [R,H]
  HIn<T> in;
  FL_CELL_FN void operator()(int64_t i) const {
    const int64_t b = i / H, j = i % H, G = 3 * H;
    int64_t t;
    T* gs = dgs + b * G;
    if (!at.time(b, t)) {
      gs[j] = gs[H + j] = gs[2 * H + j] = T(0);
      return;
    }
    const int64_t row = t * at.B + b;
    T d = in.take(at, row, b, j);
    const T* s = gates + row * G;
    const cells::GruGates<T> sv{s[j], s[H + j], s[2 * H + j]};
    T dmv;
    const cells::GruGates<T> g =
        cells::gru_backward<T>(sv, m[row * H + j], hprev[row * H + j], d, dmv);
    in.dh[b * H + j] += d;
    T* gr = dg + row * G;
    gr[j] = gs[j] = g.r;
    gr[H + j] = gs[H + j] = g.z;
    gr[2 * H + j] = g.n;
    gs[2 * H + j] = dmv;
    dm[row * H + j] = dmv;
  }
};

// out[j] += sum over the R rows of a[r, j] (j < n), in row order.
template <class T>
struct ColSum {
  const T* a;  // [R,lda]
  int64_t R, lda;
  T* out;      // [n]
  FL_CELL_FN void operator()(int64_t j) const {
    T s = T(0);
    for (int64_t r = 0; r < R; ++r) s += a[r * lda + j];
    out[j] += s;
  }
};

// The peepholes' gradient over H items: dp_i += sum dL/da_i c_{t-1},
// dp_f += sum dL/da_f c_{t-1}, dp_o += sum dL/da_o c_t, in row order.
template <class T>
struct PeepGrad {
  const T *dg, *cprev, *cn;  // [R,4H], [R,H], [R,H]
  int64_t R, H;
  T* out;                    // [3,H]
  FL_CELL_FN void operator()(int64_t j) const {
    T si = T(0), sf = T(0), so = T(0);
    for (int64_t r = 0; r < R; ++r) {
      const T* g = dg + r * 4 * H;
      si += g[j] * cprev[r * H + j];
      sf += g[H + j] * cprev[r * H + j];
      so += g[3 * H + j] * cn[r * H + j];
    }
    out[j] += si;
    out[H + j] += sf;
    out[2 * H + j] += so;
  }
};

}  // namespace cuda
}  // namespace fastlstm
