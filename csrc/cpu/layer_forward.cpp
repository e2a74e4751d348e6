// Forward of one layer: the input projection of all steps as one GEMM, then
// the recurrence in one persistent parallel region with one barrier per step
// (three with a projection). Each thread owns a slice of unit blocks, i.e. all
// four gates of its hidden units, and runs the fused gate kernel on it.
#include <omp.h>

#include <cstring>
#include <vector>

#include "core/schedule.h"
#include "cpu/gemm.h"
#include "cpu/geometry.h"
#include "cpu/layer_common.h"

namespace fastlstm {
namespace detail {

namespace {

template <class T>
void forward_direction(const LayerDims& d, const Geometry& g, const Schedule& sc,
                       const Kernels<T>& kr, int dir, const DirWeights<T>& w,
                       const T* x /*[T,B,I]*/, const T* h0 /*[B,Ho]*/, const T* c0 /*[B,H]*/,
                       T* y /*[T,B,D*Ho]*/, T* hn /*[B,Ho]*/, T* cn /*[B,H]*/,
                       T* ws /*[N*saved_per_row] or null*/, int nt) {
  const bool rev = dir == 1, train = ws != nullptr, peep = d.peephole;
  const int64_t B = d.B, I = d.I, H = d.H, P = d.P, Ho = g.Ho, N = sc.N;
  const int64_t W = g.W, NR = g.NR, Hp = g.Hp, G4 = g.G4, ldh = g.ldh, S = sc.S;

  // Gate pre-activations of all steps: gx [N,G4] = x_packed W_ih^T + b_ih + b_hh.
  std::vector<T> xbuf;
  const T* xp = packed_rows(sc, rev, x, B, I, xbuf, nt);  // [N,I]
  const std::vector<T> bias = interleaved_bias(w, H, Hp, W);
  std::vector<T> gx(static_cast<size_t>(N * G4));
  {
    const std::vector<T> wih = pack_gate_cols(I, H, w.w_ih, W, nt);
    Gemm<T> gm;
    gm.M = N; gm.N = G4; gm.K = I;
    gm.a = xp; gm.rsa = I; gm.csa = 1;
    gm.bp = wih.data();
    gm.c = gx.data(); gm.ldc = G4;
    gm.bias = bias.data();
    gemm(kr, gm, nt);
  }
  xbuf = std::vector<T>();

  const std::vector<T> whh = pack_gate_cols(Ho, H, w.w_hh, W, nt);  // [nblk][Ho][NR]
  const std::vector<T> ph = peep ? interleaved_peephole(w.w_ph, H, Hp, W) : std::vector<T>();
  const std::vector<T> whr =
      P > 0 ? pack_plain(H, P, w.w_hr, 1, H, NR, nt) : std::vector<T>();  // B(k=u, n=p)

  // Recurrent state in slot order, padded: h double-buffered [2][B,ldh], c [B,Hp].
  std::vector<T> hbuf(static_cast<size_t>(2 * B * ldh), T(0)), c(static_cast<size_t>(B * Hp), T(0));
  std::vector<T> r(P > 0 ? static_cast<size_t>(B * Hp) : 0, T(0));  // o*tanh(c) before projection
  for (int64_t j = 0; j < B; ++j) {
    std::memcpy(&hbuf[j * ldh], h0 + sc.perm[j] * Ho, sizeof(T) * Ho);
    std::memcpy(&c[j * Hp], c0 + sc.perm[j] * H, sizeof(T) * H);
  }
  T* gs = ws;                                     // [N,G4] activated gates
  T* cs = train ? ws + N * G4 : nullptr;          // [N,Hp] c_t
  T* hs = train ? cs + N * Hp : nullptr;          // [N,ldh] h_{t-1}
  if (train) std::memcpy(hs, hbuf.data(), sizeof(T) * B * ldh);  // step 0: h0 (n_at[0] = B)

  const int64_t ldy = d.D * Ho;
  T* const yd = y + dir * Ho;
  auto emit_h = [&](int64_t s, const T* hnext, int64_t u0, int64_t u1) {
    // y, the saved h_{t-1} of step s+1, and h_n of rows that end at step s
    const int64_t n = sc.n_at[s], nnext = s + 1 < S ? sc.n_at[s + 1] : 0;
    for (int64_t j = 0; j < n; ++j) {
      const T* hj = hnext + j * ldh;
      const int64_t b = sc.perm[j], t = sc.t_of(s, j, rev);
      std::memcpy(yd + (t * B + b) * ldy + u0, hj + u0, sizeof(T) * (u1 - u0));
      if (j >= nnext)
        std::memcpy(hn + b * Ho + u0, hj + u0, sizeof(T) * (u1 - u0));
      else if (train)
        std::memcpy(hs + (sc.off[s + 1] + j) * ldh + u0, hj + u0, sizeof(T) * (u1 - u0));
    }
  };
  const auto block_kernel = kr.fwd_block[peep][train];
  const int ntr = recurrent_threads(d, nt);

#pragma omp parallel num_threads(ntr)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t b0, b1, u0, u1;
    split(g.nblk, tid, nth, b0, b1);
    if (P > 0) {
      split(Ho, tid, nth, u0, u1);
    } else {
      u0 = std::min(b0 * W, Ho);
      u1 = std::min(b1 * W, Ho);
    }
    for (int64_t s = 0; s < S; ++s) {
      const int64_t n = sc.n_at[s], off = sc.off[s];
      const T* hprev = hbuf.data() + (s & 1) * B * ldh;
      T* hnext = hbuf.data() + ((s + 1) & 1) * B * ldh;
      for (int64_t blk = b0; blk < b1; ++blk) {
        FwdBlockArgs<T> a;
        a.n = n;
        a.K = Ho;
        a.h = hprev; a.ldh = ldh;
        a.w = whh.data() + blk * Ho * NR;
        a.gx = gx.data() + off * G4 + blk * NR; a.ldgx = G4;
        a.ph = peep ? ph.data() + blk * 3 * W : nullptr;
        a.c = c.data() + blk * W; a.ldc = Hp;
        a.out = (P > 0 ? r.data() : hnext) + blk * W;
        a.ldo = P > 0 ? Hp : ldh;
        if (train) {
          a.gsave = gs + off * G4 + blk * NR; a.ldgs = G4;
          a.csave = cs + off * Hp + blk * W; a.ldcs = Hp;
        }
        block_kernel(a);
      }
      if (P > 0) {
#pragma omp barrier
        Gemm<T> gm;  // h_t = r_t W_hr^T
        gm.M = n; gm.N = P; gm.K = H;
        gm.a = r.data(); gm.rsa = Hp; gm.csa = 1;
        gm.bp = whr.data();
        gm.c = hnext; gm.ldc = ldh;
        gemm_part(kr, gm, tid, nth);
#pragma omp barrier
      }
      emit_h(s, hnext, u0, u1);
      if (P == 0) {
#pragma omp barrier
      }
    }
  }
  for (int64_t j = 0; j < B; ++j)
    std::memcpy(cn + sc.perm[j] * H, &c[j * Hp], sizeof(T) * H);
}

}  // namespace

template <class T>
void layer_forward_impl(const LayerDims& d, const DirWeights<T>* w, const T* x,
                        const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn, T* cn,
                        T* ws, const ExecConfig& cfg) {
  check_layer(d, lengths);
  const Kernels<T>& kr = kernels_for<T>(cfg.isa);
  const int nt = checked_threads(cfg.num_threads);
  const Geometry g(d, kr.W);
  const Schedule sc(d.T, d.B, lengths);
  if (!sc.identity) std::memset(y, 0, sizeof(T) * d.T * d.B * d.D * g.Ho);
  for (int dir = 0; dir < d.D; ++dir)
    forward_direction(d, g, sc, kr, dir, w[dir], x, h0 + dir * d.B * g.Ho, c0 + dir * d.B * d.H,
                      y, hn + dir * d.B * g.Ho, cn + dir * d.B * d.H,
                      ws ? ws + dir * sc.N * g.saved_per_row() : nullptr, nt);
}

}  // namespace detail

inline namespace v1 {
template <class T>
void layer_forward(const LayerDims& d, const DirWeights<T>* w, const T* x, const int64_t* lengths,
                   const T* h0, const T* c0, T* y, T* hn, T* cn, T* ws, const ExecConfig& cfg) {
  detail::layer_forward_impl(d, w, x, lengths, h0, c0, y, hn, cn, ws, cfg);
}
template void layer_forward<float>(const LayerDims&, const DirWeights<float>*, const float*,
                                   const int64_t*, const float*, const float*, float*, float*,
                                   float*, float*, const ExecConfig&);
template void layer_forward<double>(const LayerDims&, const DirWeights<double>*, const double*,
                                    const int64_t*, const double*, const double*, double*,
                                    double*, double*, double*, const ExecConfig&);
}  // namespace v1
}  // namespace fastlstm
