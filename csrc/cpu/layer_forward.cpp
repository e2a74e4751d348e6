// Forward of one layer, all steps in one persistent parallel region.
//  - Directions: a bidirectional layer splits the team into two groups that
//    run their directions at the same time; with one thread they run in turn.
//  - Within a group each thread owns a slice of unit blocks (all the gates of
//    its hidden units). It computes the input projection of its own gate
//    columns for a chunk of steps (so inference memory does not grow with T,
//    and no barrier is needed), then runs the fused gate kernel per step.
//    One group barrier per step (three with a projection).
//  - The drivers are templated on the cell's step layout (kernels.h: LstmStep,
//    GruStep); its maths is in its step kernels.
//  - Rows mode (see rows_mode_for): each thread owns a slice of the rows and
//    all units instead, and no barrier is needed at all.
#include <omp.h>

#include <algorithm>
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

// Shared by every thread: the layer's problem and its step chunks.
template <class T>
struct FwdLayer {
  const LayerDims& d;
  const Geometry& g;
  const Schedule& sc;
  const Kernels<T>& kr;
  const PackedImpl<T>& pw;
  const T* x;                  // [T,B,I]
  T* y;                        // [T,B,D*Ho]
  bool train;
  bool rows_mode;              // threads split the rows, not the units (see rows_mode_for)
  const T* zoneout_keep;       // [T,B,D*Ho] or null (see Zoneout)
  std::vector<int64_t> chunk;  // step boundaries of the projection chunks
  int64_t chunk_rows = 0;      // most rows in one chunk
};

// State of one direction, shared by the threads of its group.
template <class T>
struct FwdDir {
  int dir = 0;
  const T* h0 = nullptr;  // [B,Ho]
  const T* c0 = nullptr;  // [B,H]
  T* hn = nullptr;        // [B,Ho]
  T* cn = nullptr;        // [B,H]
  T* ws = nullptr;        // [N*saved_per_row] or null
  avec<T> hbuf;           // [2][B,ldh] h double-buffered, slot order
  avec<T> c;              // [B,Hp] (cells with c)
  avec<T> r;              // [B,Hp] o*tanh(c) before the projection
  avec<T> gx;             // [chunk_rows,GX] projection of a chunk (inference; layer norm)
  avec<T> rb;             // [B,GX] h W_hh^T of a step (layer norm, threads split units)
  std::unique_ptr<Barrier> bar;
};

template <class C, class T>
void init_state(const FwdLayer<T>& L, FwdDir<T>& s) {
  const int64_t B = L.d.B, Ho = L.g.Ho, ldh = L.g.ldh, Hp = L.g.Hp;
  s.hbuf.assign(static_cast<size_t>(2 * B * ldh), T(0));
  if (C::has_c) s.c.assign(static_cast<size_t>(B * Hp), T(0));
  if (L.d.P > 0) s.r.assign(static_cast<size_t>(B * Hp), T(0));
  if ((!L.train || C::norm) && !L.rows_mode)
    s.gx.resize(static_cast<size_t>(L.chunk_rows * L.g.GX));
  if (C::norm && !L.rows_mode) s.rb.resize(static_cast<size_t>(B * L.g.GX));
  for (int64_t j = 0; j < B; ++j) {
    std::memcpy(&s.hbuf[j * ldh], s.h0 + L.sc.perm[j] * Ho, sizeof(T) * Ho);
    if (C::has_c) std::memcpy(&s.c[j * Hp], s.c0 + L.sc.perm[j] * L.d.H, sizeof(T) * L.d.H);
  }
  if (L.train)  // saved h_{t-1} of step 0 is h0 (n_at[0] = B)
    std::memcpy(s.ws + L.sc.N * (L.g.GX + Hp), s.hbuf.data(), sizeof(T) * B * ldh);
}

// One thread's part of one direction: thread gtid of a group of gn. It owns
// rows [j0,j1) and unit blocks [b0,b1): all rows and a slice of the units
// (one barrier per step), or, with L.rows_mode, a slice of the rows and all
// units (no barrier at all: rows are independent). A layer-norm step is
// instead the product h W_hh^T (each thread its share), a barrier, then the
// row kernels on a share of the rows, and a barrier.
template <class C, class T>
void run_direction(const FwdLayer<T>& L, FwdDir<T>& st, int gtid, int gn,
                   T* xa /*[chunk_rows,I] this thread's*/,
                   T* gxl /*[chunk_rows,GX] this thread's, rows mode*/) {
  const LayerDims& d = L.d;
  const Geometry& g = L.g;
  const Schedule& sc = L.sc;
  const Kernels<T>& kr = L.kr;
  const PackedDir<T>& pw = L.pw.dir[st.dir];
  const bool rev = st.dir == 1, train = L.train, peep = d.peephole, rows = L.rows_mode;
  const int64_t B = d.B, I = d.I, P = d.P, Ho = g.Ho, N = sc.N;
  const int64_t W = g.W, NR = g.NR, Hp = g.Hp, GX = g.GX, ldh = g.ldh, S = sc.S;
  const int64_t GW = C::G * W, nph = C::has_c ? 3 : 1;  // step tile width, constants a block
  T* gs = st.ws;                                  // [N,GX] activated gates
  T* cs = train ? st.ws + N * GX : nullptr;       // [N,Hp] LSTM c_t, GRU h W_hn^T + b_hn
  T* hs = train ? cs + N * Hp : nullptr;          // [N,ldh] h_{t-1}
  // layer norm, saved (Geometry): LN(x W_ih^T), LN(h W_hh^T) [N,GX], LN(c_t) [N,Hp], rstds
  T* xs = train && C::norm ? hs + N * ldh : nullptr;
  T* rs = xs ? xs + N * GX : nullptr;
  T* chs = rs ? rs + N * GX : nullptr;
  T* sts = chs ? chs + N * Hp : nullptr;
  const int64_t ldy = d.D * Ho;
  T* const yd = L.y + st.dir * Ho;

  const ThreadShare sh = thread_share(sc, g, P, rows, gtid, gn);
  const Zoneout<T> zo(d, L.zoneout_keep, st.dir);
  const int64_t j0 = sh.j0, b0 = sh.b0, b1 = sh.b1, u0 = sh.u0, u1 = sh.u1;
  const bool direct_x = !rows && sc.identity && !rev;  // chunk rows are contiguous in x
  const bool direct_gx = !rows && train && !C::norm;  // projection into the saved gates
  Barrier::Seat seat;  // this thread at the group barrier
  avec<T> abuf = gemm_abuf(kr);
  avec<T> msum(C::has_c ? 0 : static_cast<size_t>(B * W));  // GruRows' k-slice sums
  void (*block_kernel)(const FwdBlockArgs<T>&) = nullptr;
  if constexpr (!C::norm) {
    const StepKernels<T>& sk = C::of(kr);
    const bool clip = d.cell_clip > 0.0;
    block_kernel = L.pw.bf16 ? sk.fwd_block_bf16[peep][clip] : sk.fwd_block[peep][train][clip];
  }
  // layer norm: this thread's h W_hh^T rows (rows mode) and its rows' scratch
  avec<T> rbl(C::norm && rows ? static_cast<size_t>(B * GX) : 0);
  avec<T> lnx(C::norm && !train ? static_cast<size_t>(3 * GX + Hp + 4) : 0);

  for (size_t ci = 0; ci + 1 < L.chunk.size(); ++ci) {
    const int64_t s0 = L.chunk[ci], s1 = L.chunk[ci + 1];
    // this thread's rows of the chunk, step by step: row lo(s) of gxc is slot j0 at step s
    int64_t m = 0;
    for (int64_t s = s0; s < s1; ++s) m += sh.rows_at(sc, s);
    T* gxc = direct_gx ? gs + sc.off[s0] * GX : (rows ? gxl : st.gx.data());  // [m,GX]
    if (b0 < b1 && m > 0) {  // gx = x W_ih^T + b for this thread's rows and gate columns
      const T* a = L.x + sc.off[s0] * I;
      if (!direct_x) {
        for (int64_t s = s0, r = 0; s < s1; ++s)
          for (int64_t j = j0; j < j0 + sh.rows_at(sc, s); ++j, ++r)
            std::memcpy(xa + r * I, L.x + (sc.t_of(s, j, rev) * B + sc.perm[j]) * I,
                        sizeof(T) * I);
        a = xa;
      }
      Gemm<T> gm;
      gm.M = m; gm.N = GX; gm.K = I;
      gm.a = a; gm.rsa = I; gm.csa = 1;
      gm.bp = pw.wih.data();
      gm.bp16 = L.pw.bf16 ? pw.wih16.data() : nullptr;
      gm.c = gxc; gm.ldc = GX;
      gm.bias = C::norm ? nullptr : pw.bias.data();  // layer norm: the bias is after LN
      gm.split_k = !rows;
      // blocks [b0,b1) are GEMM panels [b0*G/4, ceil(b1*G/4)) (see block_grain)
      gemm_panels(kr, gm, b0 * C::G / 4, (b1 * C::G + 3) / 4, abuf.data());
    }
    for (int64_t s = s0, lo = 0; s < s1; lo += sh.rows_at(sc, s), ++s) {
      const int64_t n = sh.rows_at(sc, s), off = sc.off[s] + j0;  // packed row of slot j0
      const T* hprev = st.hbuf.data() + (s & 1) * B * ldh + j0 * ldh;
      T* hnext = st.hbuf.data() + ((s + 1) & 1) * B * ldh + j0 * ldh;
      // zoneout, y, the saved h_{t-1} of step s+1, and h_n of rows that end at
      // step s, for slots [ja,jb) and columns [ca,cb)
      const int64_t nnext = s + 1 < S ? sc.n_at[s + 1] : 0;
      const auto finish = [&](int64_t ja, int64_t jb, int64_t ca, int64_t cb) {
        for (int64_t j = ja; j < jb; ++j) {
          T* hj = hnext + (j - j0) * ldh;
          const int64_t b = sc.perm[j], t = sc.t_of(s, j, rev);
          if (zo.on) zo.mix(t, b, B, hprev + (j - j0) * ldh, hj, ca, cb);
          std::memcpy(yd + (t * B + b) * ldy + ca, hj + ca, sizeof(T) * (cb - ca));
          if (j >= nnext)
            std::memcpy(st.hn + b * Ho + ca, hj + ca, sizeof(T) * (cb - ca));
          else if (train)
            std::memcpy(hs + (sc.off[s + 1] + j) * ldh + ca, hj + ca, sizeof(T) * (cb - ca));
        }
      };
      if constexpr (C::norm) {
        T* rb = rows ? rbl.data() : st.rb.data();  // [rows,GX] h W_hh^T, from slot j0
        if (!rows || n > 0) {
          Gemm<T> gm;
          gm.M = rows ? n : sc.n_at[s]; gm.N = GX; gm.K = Ho;
          gm.a = hprev; gm.rsa = ldh; gm.csa = 1;
          gm.bp = pw.whh.data();
          gm.c = rb; gm.ldc = GX;
          step_gemm(kr, gm, sh, gtid, gn, abuf.data());
        }
        st.bar->wait(seat);
        int64_t ja = j0, jb = j0 + n;
        if (!rows) split(n, gtid, gn, ja, jb);
        for (int64_t j = ja; j < jb; ++j) {
          const int64_t rr = j - j0, o = off + rr;  // row in this thread's buffers, packed row
          LnFwdRowArgs<T> a;
          a.H = d.H; a.Hp = Hp;
          a.ln = pw.ln.data();
          a.gx = gxc + (lo + rr) * GX;
          a.r = rb + rr * GX;
          a.c = st.c.data() + j * Hp;
          a.h = hnext + rr * ldh;
          if (train) {
            a.xn = xs + o * GX; a.rn = rs + o * GX; a.gates = gs + o * GX;
            a.chat = chs + o * Hp; a.rstd = sts + o * g.lds;
          } else {
            a.xn = lnx.data(); a.rn = a.xn + GX; a.gates = a.rn + GX;
            a.chat = a.gates + GX; a.rstd = a.chat + Hp;
          }
          kr.lnlstm.fwd_row(a);
          if (train) std::memcpy(cs + o * Hp, a.c, sizeof(T) * Hp);
        }
        finish(ja, jb, 0, Ho);
        st.bar->wait(seat);
        continue;
      }
      for (int64_t blk = b0; blk < b1 && n > 0; ++blk) {
        FwdBlockArgs<T> a;
        a.n = n;
        a.K = Ho;
        a.h = hprev; a.ldh = ldh;
        a.hself = hprev + blk * W;
        a.msum = msum.data();
        const bool more = blk + 1 < b1;
        if (L.pw.bf16) {
          a.w16 = pw.whh16.data() + blk * Ho * NR;
          a.w_next = more ? a.w16 + Ho * NR : nullptr;
        } else {
          a.w = pw.whh.data() + blk * Ho * GW;
          a.w_next = more ? a.w + Ho * GW : nullptr;
        }
        a.gx = gxc + lo * GX + blk * GW; a.ldgx = GX;
        a.ph = pw.ph.empty() ? nullptr : pw.ph.data() + blk * nph * W;
        if (C::has_c) {
          a.c = st.c.data() + j0 * Hp + blk * W;
          a.ldc = Hp;
        }
        a.out = (P > 0 ? st.r.data() + j0 * Hp : hnext) + blk * W;
        a.ldo = P > 0 ? Hp : ldh;
        if (train) {
          a.gsave = gs + off * GX + blk * GW; a.ldgs = GX;
          a.csave = cs + off * Hp + blk * W; a.ldcs = Hp;
        }
        a.split_k = !rows;
        a.clip = static_cast<T>(d.cell_clip);
        a.units = blk == g.nblk - 1 ? static_cast<int>(d.H - blk * W) % W : 0;
        block_kernel(a);
      }
      if (P > 0) {
        st.bar->wait(seat);
        Gemm<T> gm;  // h_t = r_t W_hr^T
        gm.M = n; gm.N = P; gm.K = d.H;
        gm.a = st.r.data() + j0 * Hp; gm.rsa = Hp; gm.csa = 1;
        gm.bp = pw.whr.data();
        gm.c = hnext; gm.ldc = ldh;
        step_gemm(kr, gm, sh, gtid, gn, abuf.data());
        st.bar->wait(seat);
      }
      finish(j0, j0 + n, u0, u1);
      // the next step reads all of h: after the projection, wait for every thread's mix
      if (P == 0 || zo.on) st.bar->wait(seat);
    }
  }
}

// Step boundaries such that each chunk's projection is about `target` rows.
std::vector<int64_t> chunk_steps(const Schedule& sc, int64_t target, int64_t& most) {
  std::vector<int64_t> cut{0};
  most = 0;
  for (int64_t s = 0; s < sc.S;) {
    int64_t e = s + 1;
    while (e < sc.S && sc.off[e + 1] - sc.off[s] <= target) ++e;
    most = std::max(most, sc.off[e] - sc.off[s]);
    cut.push_back(e);
    s = e;
  }
  return cut;
}

template <class C, class T>
void forward_cell(const LayerDims& d, const PackedImpl<T>& pw, const T* x,
                  const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn, T* cn, T* ws,
                  const ExecConfig& cfg, const T* zoneout_keep) {
  const Kernels<T>& kr = kernels_for<T>(cfg.isa);
  const int nt = call_threads(cfg.num_threads);
  const Geometry g(d, kr.W);
  const Schedule sc(d.T, d.B, lengths);
  if (!sc.identity) std::memset(y, 0, sizeof(T) * d.T * d.B * d.D * g.Ho);
  if (ws != nullptr && (g.Hp != d.H || g.ldh != g.Ho))  // padding lanes: defined, not stale
    std::memset(ws, 0, sizeof(T) * sc.N * g.saved_per_row() * d.D);
  FwdLayer<T> L{d,  g, sc, kr, pw, x, y, ws != nullptr, rows_mode_for(d, g, sizeof(T), int64_t(2) << 20),
                zoneout_keep, {}, 0};
  // ~2 MB of projection per chunk (at least one step); training writes the
  // projection straight into the saved gates, so chunks only order the work.
  // Each chunk streams all of W_ih: past 32 MB (beyond the last-level cache)
  // a chunk has at least min(512, I) rows, so that the stream is amortised
  // (GRU, I = H = 2048, B = 32, 64 -> 512 rows in one run: 402 -> 365 ms on one
  // thread, 191 -> 169 on two).
  const int64_t row_bytes = g.GX * int64_t(sizeof(T));
  int64_t target = std::max<int64_t>(64, (int64_t(2) << 20) / row_bytes);
  if (d.I * row_bytes >= (int64_t(32) << 20)) target = std::max(target, std::min<int64_t>(512, d.I));
  L.chunk = chunk_steps(sc, target, L.chunk_rows);
  std::vector<FwdDir<T>> st(static_cast<size_t>(d.D));
  for (int dir = 0; dir < d.D; ++dir) {
    FwdDir<T>& s = st[dir];
    s.dir = dir;
    s.h0 = h0 + dir * d.B * g.Ho;
    if (C::has_c) {
      s.c0 = c0 + dir * d.B * d.H;
      s.cn = cn + dir * d.B * d.H;
    }
    s.hn = hn + dir * d.B * g.Ho;
    s.ws = ws ? ws + dir * sc.N * g.saved_per_row() : nullptr;
    init_state<C>(L, s);
  }
  const int team = layer_team(d, nt, L.rows_mode, kStepFlopsForward);
  const bool gather = !sc.identity || d.D == 2 || L.rows_mode;
  std::vector<avec<T>> xa(static_cast<size_t>(team)), gxl(static_cast<size_t>(team));
  for (int t = 0; t < team; ++t) {
    if (gather) xa[t].resize(static_cast<size_t>(L.chunk_rows * d.I));
    if (L.rows_mode) gxl[t].resize(static_cast<size_t>(L.chunk_rows * g.GX));
  }
  const int64_t t0 = now_ns();
  parallel(team, [&] {
    run_directions(d.D, L.rows_mode, st, [&](int dir, int gtid, int gn) {
      const int tid = omp_get_thread_num();
      run_direction<C>(L, st[dir], gtid, gn, xa[tid].data(), gxl[tid].data());
    });
  });
  report_stalls(st, now_ns() - t0, nt, cfg.num_threads);
  if (C::has_c)
    for (const FwdDir<T>& s : st)
      for (int64_t j = 0; j < d.B; ++j)
        std::memcpy(s.cn + sc.perm[j] * d.H, &s.c[j * g.Hp], sizeof(T) * d.H);
}

}  // namespace

template <class T>
void layer_forward_packed(const LayerDims& d, const PackedImpl<T>& pw, const T* x,
                          const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn,
                          T* cn, T* ws, const ExecConfig& cfg, const T* zoneout_keep) {
  check_backend(cfg);
  check_layer(d, lengths);
  pw.check(d, cfg.isa, false);  // a training forward needs no backward panels
  if (ws != nullptr && pw.bf16)
    throw std::invalid_argument("packed weights: bfloat16 weights are for inference only");
  const DenormalsOff daz;  // this thread; the teams' threads each set their own
  on_cell(d.cell, [&](auto c) {
    forward_cell<decltype(c)>(d, pw, x, lengths, h0, c0, y, hn, cn, ws, cfg, zoneout_keep);
  });
}

template void layer_forward_packed<float>(const LayerDims&, const PackedImpl<float>&,
                                          const float*, const int64_t*, const float*,
                                          const float*, float*, float*, float*, float*,
                                          const ExecConfig&, const float*);
template void layer_forward_packed<double>(const LayerDims&, const PackedImpl<double>&,
                                           const double*, const int64_t*, const double*,
                                           const double*, double*, double*, double*, double*,
                                           const ExecConfig&, const double*);

}  // namespace detail

inline namespace v1 {
template <class T>
void layer_forward(const LayerDims& d, const PackedLayer<T>& w, const T* x,
                   const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn, T* cn, T* ws,
                   const ExecConfig& cfg, const T* zoneout_keep) {
  detail::layer_forward_packed(d, w.impl(), x, lengths, h0, c0, y, hn, cn, ws, cfg,
                               zoneout_keep);
}

template <class T>
void layer_forward(const LayerDims& d, const DirWeights<T>* w, const T* x, const int64_t* lengths,
                   const T* h0, const T* c0, T* y, T* hn, T* cn, T* ws, const ExecConfig& cfg,
                   const T* zoneout_keep) {
  check_backend(cfg);
  check_layer(d, lengths);
  const PackedLayer<T> pw(d, w, cfg.isa, ws != nullptr, cfg.num_threads);
  detail::layer_forward_packed(d, pw.impl(), x, lengths, h0, c0, y, hn, cn, ws, cfg,
                               zoneout_keep);
}

#define FASTLSTM_FWD(T)                                                                       \
  template void layer_forward<T>(const LayerDims&, const PackedLayer<T>&, const T*,          \
                                 const int64_t*, const T*, const T*, T*, T*, T*, T*,           \
                                 const ExecConfig&, const T*);                               \
  template void layer_forward<T>(const LayerDims&, const DirWeights<T>*, const T*,           \
                                 const int64_t*, const T*, const T*, T*, T*, T*, T*,           \
                                 const ExecConfig&, const T*);
FASTLSTM_FWD(float)
FASTLSTM_FWD(double)
#undef FASTLSTM_FWD
}  // namespace v1
}  // namespace fastlstm
