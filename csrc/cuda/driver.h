// The CUDA backend's layer drivers, generic over the device (haste's
// structure): one GEMM for the input projection of every step, then per step
// the recurrent GEMM and one fused pointwise pass (plus, with a projection,
// its GEMM and a second pass); the backward walks the steps back with one
// pointwise pass and the dh GEMM each, then computes dW_ih, dW_hh, dW_hr and
// dx as GEMMs over all rows and the bias and peephole gradients as
// fixed-order column sums.
//
// Dev is the device seam: the CUDA backend's (cuBLAS and a grid-stride
// kernel, cuda/backend.cu) or any other that offers
//   gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)  row-major,
//       C[M,N] = alpha op(A) op(B) + beta C; beta == 0 never reads C
//   for_each(n, f)  f(i) for i in [0, n), in any order
//   zero(p, n), copy(dst, src, n)  on n elements
// in stream order. Sizes and layouts: cuda/geometry.h.
#pragma once

#include <type_traits>

#include "cuda/geometry.h"
#include "cuda/pointwise.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace cuda {

template <bool V>
using Flag = std::integral_constant<bool, V>;

// f(Flag<a>, Flag<b>): two runtime flags as template parameters, once.
template <class F>
void with_flags(bool a, bool b, F&& f) {
  if (a) {
    if (b) f(Flag<true>(), Flag<true>());
    else f(Flag<true>(), Flag<false>());
  } else {
    if (b) f(Flag<false>(), Flag<true>());
    else f(Flag<false>(), Flag<false>());
  }
}

template <class T, class Dev>
void forward_layer(Dev& dev, const LayerDims& d, const DirWeights<T>* w, const T* x,
                   const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn, T* cn, T* ws,
                   T* scratch, const T* keep) {
  const int64_t T_ = d.T, B = d.B, I = d.I, H = d.H, P = d.P, Ho = d.hout(), R = T_ * B;
  const bool lstm = d.cell == Cell::lstm;
  const int64_t GH = gate_rows(d);
  const FwdScratch sl = fwd_scratch(d);
  const WsLayout wl = ws_layout(d);
  T *xw = scratch + sl.xw, *rec = scratch + sl.rec, *h = scratch + sl.h;
  T *c = lstm ? scratch + sl.c : nullptr, *rs = scratch + sl.rs, *ht = scratch + sl.ht;
  if (ws) dev.zero(ws, d.D * wl.size);  // rows past a length stay zero
  const T clip = static_cast<T>(d.cell_clip);
  for (int64_t dir = 0; dir < d.D; ++dir) {
    const DirWeights<T>& wd = w[dir];
    T* wsd = ws ? ws + dir * wl.size : nullptr;
    dev.gemm(false, true, R, GH, I, T(1), x, I, wd.w_ih, I, T(0), xw, GH);
    if (h0) dev.copy(h, h0 + dir * B * Ho, B * Ho);
    else dev.zero(h, B * Ho);
    if (lstm) {
      if (c0) dev.copy(c, c0 + dir * B * H, B * H);
      else dev.zero(c, B * H);
    }
    const HOut<T> out{h, y, wsd ? wsd + wl.hprev : nullptr,
                      Zoneout<T>{keep, static_cast<T>(d.zoneout)}, Ho};
    for (int64_t s = 0; s < T_; ++s) {
      const StepAt at{T_, B, s, d.D, dir, lengths};
      dev.gemm(false, true, B, GH, Ho, T(1), h, Ho, wd.w_hh, Ho, T(0), rec, GH);
      if (!lstm) {
        dev.for_each(B * H, GruStep<T>{at, H, xw, rec, wd.b_ih, wd.b_hh,
                                       wsd ? wsd + wl.gates : nullptr,
                                       wsd ? wsd + wl.m : nullptr, out});
        continue;
      }
      with_flags(d.peephole, d.cell_clip > 0, [&](auto peep, auto clipped) {
        dev.for_each(B * H, LstmStep<T, decltype(peep)::value, decltype(clipped)::value>{
                                at, H, P, xw, rec, wd.b_ih, wd.b_hh, wd.w_ph, -clip, clip, c,
                                rs, wsd ? wsd + wl.gates : nullptr,
                                wsd ? wsd + wl.cprev : nullptr, wsd ? wsd + wl.c : nullptr,
                                wsd ? wsd + wl.r : nullptr, out});
      });
      if (P > 0) {
        dev.gemm(false, true, B, P, H, T(1), rs, H, wd.w_hr, H, T(0), ht, P);
        dev.for_each(B * P, ProjOut<T>{at, P, ht, out});
      }
    }
    dev.copy(hn + dir * B * Ho, h, B * Ho);
    if (lstm) dev.copy(cn + dir * B * H, c, B * H);
  }
}

template <class T, class Dev>
void backward_layer(Dev& dev, const LayerDims& d, const DirWeights<T>* w, const T* x,
                    const int64_t* lengths, const T* ws, const T* dy, const T* dhn,
                    const T* dcn, T* dx, T* dh0, T* dc0, const DirGrads<T>* g, T* scratch,
                    const T* keep) {
  const int64_t T_ = d.T, B = d.B, I = d.I, H = d.H, P = d.P, Ho = d.hout(), R = T_ * B;
  const bool lstm = d.cell == Cell::lstm;
  const int64_t GH = gate_rows(d);
  const BwdScratch sl = bwd_scratch(d);
  const WsLayout wl = ws_layout(d);
  T *dg = scratch + sl.dg, *dgs = scratch + sl.dgs, *dh = scratch + sl.dh;
  T *dc = lstm ? scratch + sl.dc : nullptr, *dm = scratch + sl.dm, *dht = scratch + sl.dht;
  T *dhs = scratch + sl.dhs, *dr = scratch + sl.dr;
  const T clip = static_cast<T>(d.cell_clip);
  const cells::LstmClip<T> kc{Act::sigmoid(-clip), Act::sigmoid(clip), Act::tanh(-clip),
                              Act::tanh(clip)};
  for (int64_t dir = 0; dir < d.D; ++dir) {
    const DirWeights<T>& wd = w[dir];
    const DirGrads<T>& gd = g[dir];
    const T* wsd = ws + dir * wl.size;
    if (dhn) dev.copy(dh, dhn + dir * B * Ho, B * Ho);
    else dev.zero(dh, B * Ho);
    if (lstm) {
      if (dcn) dev.copy(dc, dcn + dir * B * H, B * H);
      else dev.zero(dc, B * H);
    }
    dev.zero(dg, R * GH);  // rows past a length stay zero
    if (!lstm) dev.zero(dm, R * H);
    if (P > 0) dev.zero(dht, R * P);
    const HIn<T> in{dh, dy, Zoneout<T>{keep, static_cast<T>(d.zoneout)}, Ho};
    for (int64_t s = T_ - 1; s >= 0; --s) {
      const StepAt at{T_, B, s, d.D, dir, lengths};
      if (!lstm) {
        dev.for_each(B * H, GruBack<T>{at, H, wsd + wl.gates, wsd + wl.m, wsd + wl.hprev, dg,
                                       dgs, dm, in});
      } else {
        if (P > 0) {
          dev.for_each(B * P, ProjIn<T>{at, P, dhs, dht, in});
          dev.gemm(false, false, B, H, P, T(1), dhs, P, wd.w_hr, H, T(0), dr, H);
        }
        with_flags(d.peephole, d.cell_clip > 0, [&](auto peep, auto clipped) {
          dev.for_each(B * H, LstmBack<T, decltype(peep)::value, decltype(clipped)::value>{
                                  at, H, P, wsd + wl.gates, wsd + wl.cprev, wsd + wl.c,
                                  wd.w_ph, kc, dr, dc, dg, dgs, in});
        });
      }
      dev.gemm(false, false, B, Ho, GH, T(1), dgs, GH, wd.w_hh, Ho, T(1), dh, Ho);
    }
    dev.copy(dh0 + dir * B * Ho, dh, B * Ho);
    if (lstm) dev.copy(dc0 + dir * B * H, dc, B * H);
    // The products over all rows.
    dev.gemm(true, false, GH, I, R, T(1), dg, GH, x, I, T(1), gd.w_ih, I);
    dev.gemm(false, false, R, I, GH, T(1), dg, GH, wd.w_ih, I, dir ? T(1) : T(0), dx, I);
    const T* hprev = wsd + wl.hprev;
    if (lstm) {
      dev.gemm(true, false, GH, Ho, R, T(1), dg, GH, hprev, Ho, T(1), gd.w_hh, Ho);
    } else {  // r, z: the gates' gradients; n: dL/dm
      dev.gemm(true, false, 2 * H, H, R, T(1), dg, GH, hprev, H, T(1), gd.w_hh, H);
      dev.gemm(true, false, H, H, R, T(1), dm, H, hprev, H, T(1), gd.w_hh + 2 * H * H, H);
    }
    if (gd.b_ih) dev.for_each(GH, ColSum<T>{dg, R, GH, gd.b_ih});
    if (gd.b_hh) {
      if (lstm) {
        dev.for_each(GH, ColSum<T>{dg, R, GH, gd.b_hh});
      } else {
        dev.for_each(2 * H, ColSum<T>{dg, R, GH, gd.b_hh});
        dev.for_each(H, ColSum<T>{dm, R, H, gd.b_hh + 2 * H});
      }
    }
    if (lstm && d.peephole && gd.w_ph)
      dev.for_each(H, PeepGrad<T>{dg, wsd + wl.cprev, wsd + wl.c, R, H, gd.w_ph});
    if (P > 0 && gd.w_hr)
      dev.gemm(true, false, P, H, R, T(1), dht, P, wsd + wl.r, H, T(1), gd.w_hr, H);
  }
}

}  // namespace cuda
}  // namespace fastlstm
