// BPTT of one layer, templated on the cell's step layout (kernels.h). The loop
// back through time does only the sequential part: per step the pointwise
// gate backward (each thread on its unit blocks) and dh_{t-1} = dgates_t W_hh
// (plus the GRU's direct z*dh_t). The weight, bias, peephole and input
// gradients are then a few large products over all N rows, reduced in a
// fixed order.
#include <omp.h>

#include <cstring>
#include <memory>
#include <vector>

#include "core/aligned.h"
#include "core/barrier.h"
#include "core/schedule.h"
#include "cpu/gemm.h"
#include "cpu/geometry.h"
#include "cpu/layer_common.h"
#include "cpu/packed.h"

namespace fastlstm {
namespace detail {

namespace {

// grad [GH,ncols] += dG_s^T B, with dG_s the G slots [s0, s0+G) of dG [N,GD]
// (gate-major padded; slot s0+s holds gate gate[s]) in one product. Padding
// or a slot order other than the gates' goes through a [G*Hp,ncols] temp.
template <class T>
void gate_weight_grad(const Kernels<T>& kr, const Geometry& g, int64_t H, int64_t N,
                      const T* dG, int64_t s0, const int* gate, const T* bpk,
                      int64_t ncols, T* grad, int nt) {
  bool direct = g.Hp == H;
  for (int64_t s = 0; s < g.G; ++s) direct = direct && gate[s] == s;
  avec<T> tmp(direct ? 0 : static_cast<size_t>(g.GX * ncols));
  Gemm<T> gm;
  gm.M = g.GX; gm.N = ncols; gm.K = N;
  gm.a = dG + s0 * g.Hp; gm.rsa = 1; gm.csa = g.GD;
  gm.bp = bpk;
  gm.c = direct ? grad : tmp.data(); gm.ldc = ncols;
  gm.accumulate = direct;
  gemm(kr, gm, nt);
  if (direct) return;
  parallel_for(threads_for(2.0 * g.GX * ncols, nt), g.GX, [&](int64_t r) {
    if (r % g.Hp >= H) return;
    const T* src = tmp.data() + r * ncols;
    T* dst = grad + (gate[r / g.Hp] * H + r % g.Hp) * ncols;
    for (int64_t j = 0; j < ncols; ++j) dst[j] += src[j];
  });
}

// State of one direction's BPTT. The recurrence fills dG and the carried
// gradients; gradients() then turns them into weight and input gradients.
template <class T>
struct BwdDir {
  int dir = 0;
  const T* ws = nullptr;   // [N*saved_per_row]
  const T* dhn = nullptr;  // [B,Ho]
  const T* dcn = nullptr;  // [B,H]
  T* dh0 = nullptr;        // [B,Ho]
  T* dc0 = nullptr;        // [B,H]
  avec<T> dh, dc, c0p;     // [B,ldh], [B,Hp], [B,Hp] slot order, padded (dc, c0p: LSTM)
  T* dG = nullptr;         // [N,GD] dgates, gate-major slots (in the call's scratch)
  avec<T> kept;            // [B,ldh] zoneout's direct part of dL/dh_{t-1}
  avec<T> dr;              // [B,Hp] dL/dr (projection)
  avec<T> dH;              // [N,ldh] dL/dh_t, saved (projection)
  T* dR = nullptr;         // [N,GD] layer norm: dL/d(h W_hh^T), gate-major (scratch)
  avec<T> du;              // [N,Hp] layer norm: dL/d(LN(c_t)⊙γ_c + β_c)
  std::unique_ptr<Barrier> bar;
};

template <class T>
struct BwdLayer {
  const LayerDims& d;
  const Geometry& g;
  const Schedule& sc;
  const Kernels<T>& kr;
  const PackedImpl<T>& pw;
  const T* dy;  // [T,B,D*Ho]
  bool rows_mode;  // threads split the rows (see rows_mode_for)
  const T* zoneout_keep;  // [T,B,D*Ho] or null (see Zoneout)
};

template <class C, class T>
void init_state(const BwdLayer<T>& L, const T* c0 /*[B,H]*/, BwdDir<T>& st) {
  const int64_t B = L.d.B, H = L.d.H, Ho = L.g.Ho, Hp = L.g.Hp, ldh = L.g.ldh;
  st.dh.assign(static_cast<size_t>(B * ldh), T(0));
  if (C::has_c) {
    st.dc.assign(static_cast<size_t>(B * Hp), T(0));
    st.c0p.assign(static_cast<size_t>(B * Hp), T(0));
  }
  for (int64_t j = 0; j < B; ++j) {
    std::memcpy(&st.dh[j * ldh], st.dhn + L.sc.perm[j] * Ho, sizeof(T) * Ho);
    if (!C::has_c) continue;
    std::memcpy(&st.dc[j * Hp], st.dcn + L.sc.perm[j] * H, sizeof(T) * H);
    std::memcpy(&st.c0p[j * Hp], c0 + L.sc.perm[j] * H, sizeof(T) * H);
  }
  if (C::norm) st.du.resize(static_cast<size_t>(L.sc.N * Hp));
  if (L.zoneout_keep || L.d.zoneout > 0.0) st.kept.assign(static_cast<size_t>(B * ldh), T(0));
  if (L.d.P > 0) {
    st.dr.assign(static_cast<size_t>(B * Hp), T(0));
    st.dH.assign(static_cast<size_t>(L.sc.N * ldh), T(0));
  }
}

// The layer-norm LSTM's saved rows after the common ones (Geometry); all
// null for other cells.
template <class T>
struct LnSaved {
  const T* xn = nullptr;    // [N,GX] LN(x W_ih^T), gate-major
  const T* rn = nullptr;    // [N,GX] LN(h W_hh^T)
  const T* chat = nullptr;  // [N,Hp] LN(c_t)
  const T* rstd = nullptr;  // [N,lds]
  LnSaved(const T* ws, const Geometry& g, int64_t N) {
    if (!g.norm) return;
    xn = ws + N * (g.GX + g.Hp + g.ldh);
    rn = xn + N * g.GX;
    chat = rn + N * g.GX;
    rstd = chat + N * g.Hp;
  }
};

// One thread's part of the loop back through time: thread gtid of gn. A
// layer-norm step runs its row kernel on a share of the rows between two
// barriers, then dh_{t-1} = dL/d(h W_hh^T) W_hh.
template <class C, class T>
void recurrence(const BwdLayer<T>& L, BwdDir<T>& st, int gtid, int gn) {
  const LayerDims& d = L.d;
  const Geometry& g = L.g;
  const Schedule& sc = L.sc;
  const Kernels<T>& kr = L.kr;
  const PackedDir<T>& pw = L.pw.dir[st.dir];
  const bool rev = st.dir == 1, peep = d.peephole;
  const int64_t B = d.B, H = d.H, P = d.P, Ho = g.Ho, N = sc.N;
  const int64_t W = g.W, Hp = g.Hp, GX = g.GX, GD = g.GD, ldh = g.ldh, S = sc.S;
  const T* gs = st.ws;                 // [N,GX] activated gates, interleaved
  const T* cs = st.ws + N * GX;        // [N,Hp] LSTM c_t, GRU h W_hn^T + b_hn
  const T* hs = cs + N * Hp;           // [N,ldh] h_{t-1}
  const LnSaved<T> sv(st.ws, g, N);    // layer norm's saved rows
  const int64_t ldy = d.D * Ho;
  const T* const dyd = L.dy + st.dir * Ho;
  void (*block_kernel)(const BwdBlockArgs<T>&) = nullptr;
  if constexpr (!C::norm) block_kernel = C::of(kr).bwd_block[peep][d.cell_clip > 0.0];
  // as the forward: all rows and a slice of the units, or a slice of the rows
  const bool rows = L.rows_mode;
  const ThreadShare sh = thread_share(sc, g, P, rows, gtid, gn);
  const int64_t j0 = sh.j0, b0 = sh.b0, b1 = sh.b1, u0 = sh.u0, u1 = sh.u1;
  const Zoneout<T> zo(d, L.zoneout_keep, st.dir);
  Barrier::Seat seat;  // this thread at the group barrier
  avec<T> abuf = gemm_abuf(kr);
  for (int64_t s = S - 1; s >= 0; --s) {
    const int64_t n = sh.rows_at(sc, s);
    const int64_t off = sc.off[s] + j0;  // packed row of slot j0
    T* dh = st.dh.data() + j0 * ldh;
    for (int64_t j = 0; j < n; ++j) {  // dh_t += dy_t on this thread's columns
      const int64_t t = sc.t_of(s, j0 + j, rev), b = sc.perm[j0 + j];
      const T* a = dyd + (t * B + b) * ldy;
      T* o = dh + j * ldh;
      for (int64_t u = u0; u < u1; ++u) o[u] += a[u];
      if (zo.on) zo.split(t, b, B, o, st.kept.data() + (j0 + j) * ldh, u0, u1);
      if (P > 0) std::memcpy(&st.dH[(off + j) * ldh + u0], o + u0, sizeof(T) * (u1 - u0));
    }
    if (P > 0) {
      st.bar->wait(seat);
      Gemm<T> gm;  // dr = dh W_hr
      gm.M = rows ? n : sc.n_at[s]; gm.N = H; gm.K = P;
      gm.a = dh; gm.rsa = ldh; gm.csa = 1;
      gm.bp = pw.whr_t.data();
      gm.c = st.dr.data() + j0 * Hp; gm.ldc = Hp;
      step_gemm(kr, gm, sh, gtid, gn, abuf.data());
      st.bar->wait(seat);
    }
    if constexpr (C::norm) {
      st.bar->wait(seat);  // the row kernels read whole rows of dh
      int64_t ja = j0, jb = j0 + n;
      if (!rows) split(n, gtid, gn, ja, jb);
      for (int64_t j = ja; j < jb; ++j) {
        const int64_t rr = j - j0, o = off + rr;
        LnBwdRowArgs<T> a;
        a.H = H; a.Hp = Hp;
        a.ln = pw.ln.data();
        a.gates = gs + o * GX;
        a.rn = sv.rn + o * GX;
        a.chat = sv.chat + o * Hp;
        a.cp = s > 0 ? cs + (sc.off[s - 1] + j) * Hp : st.c0p.data() + j * Hp;
        a.rstd = sv.rstd + o * g.lds;
        a.dh = dh + rr * ldh;
        a.dc = st.dc.data() + j * Hp;
        a.da = st.dG + o * GD;
        a.dr = st.dR + o * GD;
        a.du = st.du.data() + o * Hp;
        kr.lnlstm.bwd_row(a);
        if (zo.on) std::memcpy(dh + rr * ldh, st.kept.data() + j * ldh, sizeof(T) * Ho);
      }
      st.bar->wait(seat);
      Gemm<T> gm;  // dh_{t-1} (+)= dL/d(h W_hh^T)_t W_hh
      gm.M = rows ? n : sc.n_at[s]; gm.N = Ho; gm.K = GX;
      gm.a = st.dR + off * GD; gm.rsa = GD; gm.csa = 1;
      gm.bp = pw.whh_t.data();
      gm.c = dh; gm.ldc = ldh;
      gm.accumulate = zo.on;
      if (!rows || n > 0) step_gemm(kr, gm, sh, gtid, gn, abuf.data());
      st.bar->wait(seat);
      continue;
    }
    if (b0 < b1 && n > 0) {
      const int64_t blk = b0;
      BwdBlockArgs<T> a;
      a.n = n;
      a.nblk = b1 - b0;
      a.gates = gs + off * GX + blk * C::G * W; a.ldg = GX;
      a.c = cs + off * Hp + blk * W; a.ldc = Hp;
      if (C::has_c) {
        a.cp = (s > 0 ? cs + (sc.off[s - 1] + j0) * Hp : st.c0p.data() + j0 * Hp) + blk * W;
        a.ldcp = Hp;
        a.dc = st.dc.data() + j0 * Hp + blk * W; a.lddc = Hp;
      } else {
        a.cp = hs + off * ldh + blk * W; a.ldcp = ldh;
      }
      a.dh = (P > 0 ? st.dr.data() + j0 * Hp : dh) + blk * W;
      a.lddh = P > 0 ? Hp : ldh;
      a.dg = st.dG + off * GD + blk * W; a.lddg = GD; a.gstride = Hp;
      a.ph = peep ? pw.ph.data() + blk * 3 * W : nullptr;
      a.clip = static_cast<T>(d.cell_clip);
      block_kernel(a);
    }
    if (zo.on)  // zoneout's direct part joins (or, without the cell's, starts) dh_{t-1}
      for (int64_t j = 0; j < n; ++j) {
        T* o = dh + j * ldh;
        const T* k = st.kept.data() + (j0 + j) * ldh;
        for (int64_t u = u0; u < u1; ++u) o[u] = C::dh_direct ? o[u] + k[u] : k[u];
      }
    st.bar->wait(seat);
    Gemm<T> gm;  // dh_{t-1} (+)= dgates_t W_hh
    gm.M = rows ? n : sc.n_at[s]; gm.N = Ho; gm.K = GX;
    gm.a = st.dG + off * GD; gm.rsa = GD; gm.csa = 1;
    gm.bp = pw.whh_t.data();
    gm.c = dh; gm.ldc = ldh;
    gm.accumulate = C::dh_direct || zo.on;
    step_gemm(kr, gm, sh, gtid, gn, abuf.data());
    st.bar->wait(seat);
  }
}

// After the loop: dh0, dc0, and the input, weight, bias and peephole
// gradients of one direction, each a large product or a fixed-order sum.
template <class C, class T>
void gradients(const BwdLayer<T>& L, BwdDir<T>& st, const T* x /*[T,B,I]*/,
               T* dx /*[T,B,I] +=*/, const DirGrads<T>& gr, int nt,
               T* panels /*[N*round_up(max(I,Ho),NR)] scratch*/) {
  const LayerDims& d = L.d;
  const Geometry& g = L.g;
  const Schedule& sc = L.sc;
  const Kernels<T>& kr = L.kr;
  const PackedDir<T>& pw = L.pw.dir[st.dir];
  const bool rev = st.dir == 1, peep = d.peephole;
  const int64_t B = d.B, I = d.I, H = d.H, P = d.P, Ho = g.Ho, N = sc.N;
  const int64_t W = g.W, NR = g.NR, Hp = g.Hp, GX = g.GX, GD = g.GD, ldh = g.ldh, S = sc.S;
  const T* gs = st.ws;
  const T* cs = st.ws + N * GX;
  const T* hs = cs + N * Hp;
  const LnSaved<T> sv(st.ws, g, N);
  for (int64_t j = 0; j < B; ++j) {
    std::memcpy(st.dh0 + sc.perm[j] * Ho, &st.dh[j * ldh], sizeof(T) * Ho);
    if (C::has_c) std::memcpy(st.dc0 + sc.perm[j] * H, &st.dc[j * Hp], sizeof(T) * H);
  }
  const T* dG = st.dG;
  static constexpr int x_gate[4] = {0, 1, 2, 3};
  const T* dGx = dG;  // rows of dL/d(x W_ih^T) (from slot x_slot)
  if constexpr (C::norm) {
    // dW_hh += dL/d(h W_hh^T)^T h_{t-1}; then, in the same rows,
    // dL/d(x W_ih^T) = LN's backward of dL/da ⊙ γ_ih
    gate_weight_grad(kr, g, H, N, st.dR, 0, C::h_gate,
                     pack_plain_into(N, Ho, hs, ldh, 1, NR, nt, panels), Ho, gr.w_hh, nt);
    T* dX = st.dR;
    const auto norm_backward = kr.lnlstm.norm_backward;
    const T* gih = pw.ln.data();
    parallel_for(threads_for(32.0 * N * GX, nt), N, [&](int64_t rw) {
      norm_backward(H, Hp, gih, dG + rw * GD, sv.xn + rw * GX, sv.rstd[rw * g.lds], dX + rw * GD);
    });
    dGx = dX;
  }
  // dx += dG_x W_ih
  {
    const bool direct = sc.identity && !rev;
    avec<T> tmp(direct ? 0 : static_cast<size_t>(N * I));
    Gemm<T> gm;
    gm.M = N; gm.N = I; gm.K = GX;
    gm.a = dGx + C::x_slot * Hp; gm.rsa = GD; gm.csa = 1;
    gm.bp = pw.wih_t.data();
    gm.c = direct ? dx : tmp.data(); gm.ldc = I;
    gm.accumulate = direct;
    gemm(kr, gm, nt);
    if (!direct) scatter_add_rows(sc, rev, tmp.data(), B, I, dx, nt);
  }
  // dW_ih += dG_x^T x, dW_hh += dG_h^T h_{t-1}
  {
    std::vector<T> xbuf;
    const T* xp = packed_rows(sc, rev, x, B, I, xbuf, nt);
    gate_weight_grad(kr, g, H, N, dGx, C::x_slot, x_gate,
                     pack_plain_into(N, I, xp, I, 1, NR, nt, panels), I, gr.w_ih, nt);
  }
  if constexpr (!C::norm)
    gate_weight_grad(kr, g, H, N, dG, 0, C::h_gate,
                     pack_plain_into(N, Ho, hs, ldh, 1, NR, nt, panels), Ho, gr.w_hh, nt);
  // Bias, peephole and layer-norm gradients: per-unit sums over rows, in row
  // order for every unit; rows are walked in memory order, each thread on
  // its units.
  const int ntr_rows = threads_for(16.0 * N * H, nt);
  const T* c0p = st.c0p.data();
  if (gr.b_ih || gr.b_hh || peep || C::norm) {
    parallel(ntr_rows, [&] {
      int64_t u0, u1;
      split(H, omp_get_thread_num(), omp_get_num_threads(), u0, u1);
      const int64_t nu = u1 - u0;
      // db[s] sums dgates slot s; b_ih's gate q is slot x_slot+q, b_hh's is its h slot
      std::vector<T> db(static_cast<size_t>(4 * nu), T(0)), dp(static_cast<size_t>(3 * nu), T(0));
      // layer norm: γ_ih [4], γ_hh [4], γ_c, β_c
      std::vector<T> dn(static_cast<size_t>(C::norm ? 10 * nu : 0), T(0));
      for (int64_t s = 0; s < S; ++s)
        for (int64_t j = 0; j < sc.n_at[s]; ++j) {
          const int64_t rw = sc.off[s] + j;
          const T* dgr = dG + rw * GD + u0;
          for (int64_t q = 0; q < 4; ++q)
            for (int64_t u = 0; u < nu; ++u) db[q * nu + u] += dgr[q * Hp + u];
          if (peep) {
            const T* cp = (s > 0 ? cs + (sc.off[s - 1] + j) * Hp : c0p + j * Hp) + u0;
            const T* ct = cs + rw * Hp + u0;
            for (int64_t u = 0; u < nu; ++u) {
              dp[u] += dgr[u] * cp[u];
              dp[nu + u] += dgr[Hp + u] * cp[u];
              dp[2 * nu + u] += dgr[3 * Hp + u] * ct[u];
            }
          }
          if constexpr (C::norm) {
            const T *xr = sv.xn + rw * GX + u0, *rr = sv.rn + rw * GX + u0;
            const T *chr = sv.chat + rw * Hp + u0, *dur = st.du.data() + rw * Hp + u0;
            for (int64_t q = 0; q < 4; ++q)
              for (int64_t u = 0; u < nu; ++u) {
                dn[q * nu + u] += dgr[q * Hp + u] * xr[q * Hp + u];
                dn[(4 + q) * nu + u] += dgr[q * Hp + u] * rr[q * Hp + u];
              }
            for (int64_t u = 0; u < nu; ++u) {
              dn[8 * nu + u] += dur[u] * chr[u];
              dn[9 * nu + u] += dur[u];
            }
          }
        }
      for (int64_t s = 0; s < C::G; ++s)
        for (int64_t u = 0; u < nu; ++u) {
          if (gr.b_ih) gr.b_ih[s * H + u0 + u] += db[(C::x_slot + s) * nu + u];
          if (gr.b_hh) gr.b_hh[C::h_gate[s] * H + u0 + u] += db[s * nu + u];
        }
      if (peep)
        for (int64_t q = 0; q < 3; ++q)
          for (int64_t u = 0; u < nu; ++u) gr.w_ph[q * H + u0 + u] += dp[q * nu + u];
      if constexpr (C::norm) {
        for (int64_t q = 0; q < 4; ++q)
          for (int64_t u = 0; u < nu; ++u) {
            gr.ln_ih[q * H + u0 + u] += dn[q * nu + u];
            gr.ln_hh[q * H + u0 + u] += dn[(4 + q) * nu + u];
          }
        for (int64_t u = 0; u < nu; ++u) {
          gr.ln_c[u0 + u] += dn[8 * nu + u];
          gr.ln_cb[u0 + u] += dn[9 * nu + u];
        }
      }
    });
  }
  // dW_hr += dh^T r, with r = o * tanh(c_t) recomputed.
  if (P > 0) {
    avec<T> rr(static_cast<size_t>(N * H));
    T* rp = rr.data();
    parallel_for(ntr_rows, N, [&](int64_t rw) {
      T* o = rp + rw * H;
      kr.act.tanh(H, cs + rw * Hp, o);
      for (int64_t u = 0; u < H; ++u) o[u] *= gs[rw * GX + (u / W) * NR + 3 * W + u % W];
    });
    Gemm<T> gm;
    gm.M = P; gm.N = H; gm.K = N;
    gm.a = st.dH.data(); gm.rsa = 1; gm.csa = ldh;
    const pvec<T> rpk = pack_plain(N, H, rp, H, 1, NR, nt);
    gm.bp = rpk.data();
    gm.c = gr.w_hr; gm.ldc = H;
    gm.accumulate = true;
    gemm(kr, gm, nt);
  }
}

template <class C, class T>
void backward_cell(const LayerDims& d, const PackedImpl<T>& pw, const T* x,
                   const int64_t* lengths, const T* c0, const T* ws, const T* dy, const T* dhn,
                   const T* dcn, T* dx, T* dh0, T* dc0, const DirGrads<T>* g,
                   const ExecConfig& cfg, const T* zoneout_keep, T* scratch) {
  const Kernels<T>& kr = kernels_for<T>(cfg.isa);
  const int nt = call_threads(cfg.num_threads);
  const Geometry geo(d, kr.W);
  const Schedule sc(d.T, d.B, lengths);
  std::memset(dx, 0, sizeof(T) * d.T * d.B * d.I);
  const BwdLayer<T> L{d,  geo, sc, kr, pw, dy, rows_mode_for(d, geo, sizeof(T), int64_t(4) << 20),
                      zoneout_keep};
  const BackwardScratch sp = backward_scratch(geo, d, sc.N);
  avec<T> own(scratch ? 0 : static_cast<size_t>(sp.total));  // the caller's, or this call's
  T* const scr = scratch ? scratch : own.data();
  std::vector<BwdDir<T>> st(static_cast<size_t>(d.D));
  for (int dir = 0; dir < d.D; ++dir) {
    BwdDir<T>& s = st[dir];
    s.dir = dir;
    s.dG = scr + dir * sp.per_dir;
    if (C::norm) s.dR = scr + sp.dr + dir * sp.per_dir;
    s.ws = ws + dir * sc.N * geo.saved_per_row();
    s.dhn = dhn + dir * d.B * geo.Ho;
    s.dh0 = dh0 + dir * d.B * geo.Ho;
    if (C::has_c) {
      s.dcn = dcn + dir * d.B * d.H;
      s.dc0 = dc0 + dir * d.B * d.H;
    }
    init_state<C>(L, C::has_c ? c0 + dir * d.B * d.H : nullptr, s);
  }
  const int64_t t0 = now_ns();
  parallel(layer_team(d, nt, L.rows_mode, kStepFlopsBackward), [&] {
    run_directions(d.D, L.rows_mode, st, [&](int dir, int gtid, int gn) {
      recurrence<C>(L, st[dir], gtid, gn);
    });
  });
  report_stalls(st, now_ns() - t0, nt, cfg.num_threads);
  for (int dir = 0; dir < d.D; ++dir) gradients<C>(L, st[dir], x, dx, g[dir], nt, scr + sp.panels);
}

}  // namespace

template <class T>
void layer_backward_packed(const LayerDims& d, const PackedImpl<T>& pw, const T* x,
                           const int64_t* lengths, const T* c0, const T* ws, const T* dy,
                           const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                           const DirGrads<T>* g, const ExecConfig& cfg, const T* zoneout_keep,
                           T* scratch) {
  check_layer(d, lengths);
  check_backend(cfg);
  pw.check(d, cfg.isa, true);
  if (d.cell == Cell::lnlstm)
    for (int64_t k = 0; k < d.D; ++k)
      if (!g[k].ln_ih || !g[k].ln_hh || !g[k].ln_c || !g[k].ln_cb)
        throw std::invalid_argument("grads: the layer-norm LSTM needs ln_ih, ln_hh, ln_c and "
                                    "ln_cb");
  const DenormalsOff daz;  // this thread; the teams' threads each set their own
  on_cell(d.cell, [&](auto c) {
    backward_cell<decltype(c)>(d, pw, x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, g, cfg,
                               zoneout_keep, scratch);
  });
}

}  // namespace detail

inline namespace v1 {
template <class T>
void layer_backward(const LayerDims& d, const PackedLayer<T>& w, const T* x,
                    const int64_t* lengths, const T* c0, const T* ws, const T* dy, const T* dhn,
                    const T* dcn, T* dx, T* dh0, T* dc0, const DirGrads<T>* g,
                    const ExecConfig& cfg, const T* zoneout_keep, T* scratch) {
  detail::layer_backward_packed(d, w.impl(), x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, g,
                                cfg, zoneout_keep, scratch);
}

template <class T>
void layer_backward(const LayerDims& d, const DirWeights<T>* w, const T* x,
                    const int64_t* lengths, const T* /*h0: saved in ws*/, const T* c0,
                    const T* ws, const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                    const DirGrads<T>* g, const ExecConfig& cfg, const T* zoneout_keep) {
  check_backend(cfg);
  check_layer(d, lengths);
  const PackedLayer<T> pw(d, w, cfg.isa, true, cfg.num_threads);
  detail::layer_backward_packed(d, pw.impl(), x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, g,
                                cfg, zoneout_keep, static_cast<T*>(nullptr));
}

#define FASTLSTM_BWD(T)                                                                      \
  template void layer_backward<T>(const LayerDims&, const PackedLayer<T>&, const T*,        \
                                  const int64_t*, const T*, const T*, const T*, const T*,    \
                                  const T*, T*, T*, T*, const DirGrads<T>*,                  \
                                  const ExecConfig&, const T*, T*);                          \
  template void layer_backward<T>(const LayerDims&, const DirWeights<T>*, const T*,         \
                                  const int64_t*, const T*, const T*, const T*, const T*,    \
                                  const T*, const T*, T*, T*, T*, const DirGrads<T>*,        \
                                  const ExecConfig&, const T*);
FASTLSTM_BWD(float)
FASTLSTM_BWD(double)
#undef FASTLSTM_BWD
}  // namespace v1
}  // namespace fastlstm
