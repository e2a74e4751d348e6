// BPTT of one layer. The loop back through time does only the sequential part:
// per step the pointwise gate backward (each thread on its unit blocks) and
// dh_{t-1} = dgates_t W_hh. The weight, bias, peephole and input gradients
// are then a few large products over all N rows, reduced in a fixed order.
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

// grad [4H,ldc] += dG[:, gate q]^T B for each gate q; dG [N,G4] gate-major padded.
template <class T>
void gate_weight_grad(const Kernels<T>& kr, const Geometry& g, int64_t H, int64_t N,
                      const T* dG, const std::vector<T>& bpk, int64_t ncols, T* grad, int nt) {
  for (int64_t q = 0; q < 4; ++q) {
    Gemm<T> gm;
    gm.M = H; gm.N = ncols; gm.K = N;
    gm.a = dG + q * g.Hp; gm.rsa = 1; gm.csa = g.G4;
    gm.bp = bpk.data();
    gm.c = grad + q * H * ncols; gm.ldc = ncols;
    gm.accumulate = true;
    gemm(kr, gm, nt);
  }
}

template <class T>
void backward_direction(const LayerDims& d, const Geometry& g, const Schedule& sc,
                        const Kernels<T>& kr, int dir, const DirWeights<T>& w,
                        const T* x /*[T,B,I]*/, const T* c0 /*[B,H]*/,
                        const T* ws /*[N*saved_per_row]*/, const T* dy /*[T,B,D*Ho]*/,
                        const T* dhn /*[B,Ho]*/, const T* dcn /*[B,H]*/, T* dx /*[T,B,I] +=*/,
                        T* dh0 /*[B,Ho]*/, T* dc0 /*[B,H]*/, const DirGrads<T>& gr, int nt) {
  const bool rev = dir == 1, peep = d.peephole;
  const int64_t B = d.B, I = d.I, H = d.H, P = d.P, Ho = g.Ho, N = sc.N;
  const int64_t W = g.W, NR = g.NR, Hp = g.Hp, G4 = g.G4, ldh = g.ldh, S = sc.S;
  const T* gs = ws;                  // [N,G4] activated gates, interleaved
  const T* cs = ws + N * G4;         // [N,Hp] c_t
  const T* hs = cs + N * Hp;         // [N,ldh] h_{t-1}

  const std::vector<T> whh = pack_gate_rows(H, Hp, Ho, w.w_hh, NR, nt);  // [4Hp] x [Ho]
  const std::vector<T> whr =
      P > 0 ? pack_plain(P, H, w.w_hr, H, 1, NR, nt) : std::vector<T>();  // [P] x [H]
  const std::vector<T> ph = peep ? interleaved_peephole(w.w_ph, H, Hp, W) : std::vector<T>();

  // Carried gradients in slot order, padded; c0 in slot order for step 0.
  std::vector<T> dh(static_cast<size_t>(B * ldh), T(0)), dc(static_cast<size_t>(B * Hp), T(0));
  std::vector<T> c0p(static_cast<size_t>(B * Hp), T(0));
  for (int64_t j = 0; j < B; ++j) {
    std::memcpy(&dh[j * ldh], dhn + sc.perm[j] * Ho, sizeof(T) * Ho);
    std::memcpy(&dc[j * Hp], dcn + sc.perm[j] * H, sizeof(T) * H);
    std::memcpy(&c0p[j * Hp], c0 + sc.perm[j] * H, sizeof(T) * H);
  }
  std::vector<T> dG(static_cast<size_t>(N * G4));          // [N,G4] dgates, gate-major
  std::vector<T> dr(P > 0 ? static_cast<size_t>(B * Hp) : 0, T(0));      // dL/dr
  std::vector<T> dH(P > 0 ? static_cast<size_t>(N * ldh) : 0, T(0));     // dL/dh_t, saved
  const int64_t ldy = d.D * Ho;
  const T* const dyd = dy + dir * Ho;
  const auto block_kernel = kr.bwd_block[peep];
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
    for (int64_t s = S - 1; s >= 0; --s) {
      const int64_t n = sc.n_at[s], off = sc.off[s];
      for (int64_t j = 0; j < n; ++j) {  // dh_t += dy_t on this thread's columns
        const T* a = dyd + (sc.t_of(s, j, rev) * B + sc.perm[j]) * ldy;
        T* o = &dh[j * ldh];
        for (int64_t u = u0; u < u1; ++u) o[u] += a[u];
        if (P > 0) std::memcpy(&dH[(off + j) * ldh + u0], o + u0, sizeof(T) * (u1 - u0));
      }
      if (P > 0) {
#pragma omp barrier
        Gemm<T> gm;  // dr = dh W_hr
        gm.M = n; gm.N = H; gm.K = P;
        gm.a = dh.data(); gm.rsa = ldh; gm.csa = 1;
        gm.bp = whr.data();
        gm.c = dr.data(); gm.ldc = Hp;
        gemm_part(kr, gm, tid, nth);
#pragma omp barrier
      }
      for (int64_t blk = b0; blk < b1; ++blk) {
        BwdBlockArgs<T> a;
        a.n = n;
        a.gates = gs + off * G4 + blk * NR; a.ldg = G4;
        a.c = cs + off * Hp + blk * W; a.ldc = Hp;
        a.cp = (s > 0 ? cs + sc.off[s - 1] * Hp : c0p.data()) + blk * W; a.ldcp = Hp;
        a.dh = (P > 0 ? dr.data() : dh.data()) + blk * W;
        a.lddh = P > 0 ? Hp : ldh;
        a.dc = dc.data() + blk * W; a.lddc = Hp;
        a.dg = dG.data() + off * G4 + blk * W; a.lddg = G4; a.gstride = Hp;
        a.ph = peep ? ph.data() + blk * 3 * W : nullptr;
        block_kernel(a);
      }
#pragma omp barrier
      Gemm<T> gm;  // dh_{t-1} = dgates_t W_hh
      gm.M = n; gm.N = Ho; gm.K = G4;
      gm.a = dG.data() + off * G4; gm.rsa = G4; gm.csa = 1;
      gm.bp = whh.data();
      gm.c = dh.data(); gm.ldc = ldh;
      gemm_part(kr, gm, tid, nth);
#pragma omp barrier
    }
  }
  for (int64_t j = 0; j < B; ++j) {
    std::memcpy(dh0 + sc.perm[j] * Ho, &dh[j * ldh], sizeof(T) * Ho);
    std::memcpy(dc0 + sc.perm[j] * H, &dc[j * Hp], sizeof(T) * H);
  }

  // dx += dG W_ih
  {
    const std::vector<T> wih = pack_gate_rows(H, Hp, I, w.w_ih, NR, nt);
    const bool direct = sc.identity && !rev;
    std::vector<T> tmp(direct ? 0 : static_cast<size_t>(N * I));
    Gemm<T> gm;
    gm.M = N; gm.N = I; gm.K = G4;
    gm.a = dG.data(); gm.rsa = G4; gm.csa = 1;
    gm.bp = wih.data();
    gm.c = direct ? dx : tmp.data(); gm.ldc = I;
    gm.accumulate = direct;
    gemm(kr, gm, nt);
    if (!direct) scatter_add_rows(sc, rev, tmp.data(), B, I, dx, nt);
  }
  // dW_ih += dG^T x, dW_hh += dG^T h_{t-1}
  {
    std::vector<T> xbuf;
    const T* xp = packed_rows(sc, rev, x, B, I, xbuf, nt);
    gate_weight_grad(kr, g, H, N, dG.data(), pack_plain(N, I, xp, I, 1, NR, nt), I, gr.w_ih, nt);
  }
  gate_weight_grad(kr, g, H, N, dG.data(), pack_plain(N, Ho, hs, ldh, 1, NR, nt), Ho, gr.w_hh,
                   nt);
  // Bias and peephole gradients: per-unit sums over rows, in row order for
  // every unit; rows are walked in memory order, each thread on its units.
  const T* dGp = dG.data();
  const int ntr_rows = threads_for(16.0 * N * H, nt);
  if (gr.b_ih || gr.b_hh || peep) {
#pragma omp parallel num_threads(ntr_rows)
    {
      int64_t u0, u1;
      split(H, omp_get_thread_num(), omp_get_num_threads(), u0, u1);
      const int64_t nu = u1 - u0;
      std::vector<T> db(static_cast<size_t>(4 * nu), T(0)), dp(static_cast<size_t>(3 * nu), T(0));
      for (int64_t s = 0; s < S; ++s)
        for (int64_t j = 0; j < sc.n_at[s]; ++j) {
          const int64_t rw = sc.off[s] + j;
          const T* dgr = dGp + rw * G4 + u0;
          for (int64_t q = 0; q < 4; ++q)
            for (int64_t u = 0; u < nu; ++u) db[q * nu + u] += dgr[q * Hp + u];
          if (peep) {
            const T* cp = (s > 0 ? cs + (sc.off[s - 1] + j) * Hp : &c0p[j * Hp]) + u0;
            const T* ct = cs + rw * Hp + u0;
            for (int64_t u = 0; u < nu; ++u) {
              dp[u] += dgr[u] * cp[u];
              dp[nu + u] += dgr[Hp + u] * cp[u];
              dp[2 * nu + u] += dgr[3 * Hp + u] * ct[u];
            }
          }
        }
      for (int64_t q = 0; q < 4; ++q)
        for (int64_t u = 0; u < nu; ++u) {
          if (gr.b_ih) gr.b_ih[q * H + u0 + u] += db[q * nu + u];
          if (gr.b_hh) gr.b_hh[q * H + u0 + u] += db[q * nu + u];
        }
      if (peep)
        for (int64_t q = 0; q < 3; ++q)
          for (int64_t u = 0; u < nu; ++u) gr.w_ph[q * H + u0 + u] += dp[q * nu + u];
    }
  }
  // dW_hr += dh^T r, with r = o * tanh(c_t) recomputed.
  if (P > 0) {
    std::vector<T> rr(static_cast<size_t>(N * H));
    T* rp = rr.data();
#pragma omp parallel for num_threads(ntr_rows) schedule(static)
    for (int64_t rw = 0; rw < N; ++rw) {
      T* o = rp + rw * H;
      kr.tanh(H, cs + rw * Hp, o);
      for (int64_t u = 0; u < H; ++u) o[u] *= gs[rw * G4 + (u / W) * NR + 3 * W + u % W];
    }
    Gemm<T> gm;
    gm.M = P; gm.N = H; gm.K = N;
    gm.a = dH.data(); gm.rsa = 1; gm.csa = ldh;
    const std::vector<T> rpk = pack_plain(N, H, rp, H, 1, NR, nt);
    gm.bp = rpk.data();
    gm.c = gr.w_hr; gm.ldc = H;
    gm.accumulate = true;
    gemm(kr, gm, nt);
  }
}

}  // namespace

template <class T>
void layer_backward_impl(const LayerDims& d, const DirWeights<T>* w, const T* x,
                         const int64_t* lengths, const T* c0, const T* ws, const T* dy,
                         const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0, const DirGrads<T>* g,
                         const ExecConfig& cfg) {
  check_layer(d, lengths);
  const Kernels<T>& kr = kernels_for<T>(cfg.isa);
  const int nt = checked_threads(cfg.num_threads);
  const Geometry geo(d, kr.W);
  const Schedule sc(d.T, d.B, lengths);
  std::memset(dx, 0, sizeof(T) * d.T * d.B * d.I);
  for (int dir = 0; dir < d.D; ++dir)
    backward_direction(d, geo, sc, kr, dir, w[dir], x, c0 + dir * d.B * d.H,
                       ws + dir * sc.N * geo.saved_per_row(), dy, dhn + dir * d.B * geo.Ho,
                       dcn + dir * d.B * d.H, dx, dh0 + dir * d.B * geo.Ho,
                       dc0 + dir * d.B * d.H, g[dir], nt);
}

}  // namespace detail

inline namespace v1 {
template <class T>
void layer_backward(const LayerDims& d, const DirWeights<T>* w, const T* x,
                    const int64_t* lengths, const T* /*h0: saved in ws*/, const T* c0,
                    const T* ws, const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                    const DirGrads<T>* g, const ExecConfig& cfg) {
  detail::layer_backward_impl(d, w, x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, g, cfg);
}
template void layer_backward<float>(const LayerDims&, const DirWeights<float>*, const float*,
                                    const int64_t*, const float*, const float*, const float*,
                                    const float*, const float*, const float*, float*, float*,
                                    float*, const DirGrads<float>*, const ExecConfig&);
template void layer_backward<double>(const LayerDims&, const DirWeights<double>*,
                                     const double*, const int64_t*, const double*,
                                     const double*, const double*, const double*,
                                     const double*, const double*, double*, double*, double*,
                                     const DirGrads<double>*, const ExecConfig&);
}  // namespace v1
}  // namespace fastlstm
