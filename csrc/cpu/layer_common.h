// Helpers shared by the forward and backward drivers: moving rows between
// the user's [T,B,.] layout and the packed slot order, and the small
// per-layer rearrangements of biases and peepholes.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/barrier.h"
#include "core/contention.h"
#include "core/schedule.h"
#include "cpu/gemm.h"
#include "cpu/parallel.h"
#include "cpu/geometry.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace detail {

// The threads a call runs with: cfg.num_threads, or fewer while the process
// backs off from preempted teams (core/contention.h).
inline int call_threads(int nt) {
  if (nt < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(nt));
  return contention().threads(nt);
}

// After a layer's recurrence, which took call_ns on `used` of the
// `requested` threads: tells the back-off whether it stalled, i.e. its
// groups of two or more threads waited for preempted partners for a quarter
// of that time or more (groups of one have nothing to report).
template <class Dir>
void report_stalls(const std::vector<Dir>& st, int64_t call_ns, int used, int requested) {
  bool grouped = false;
  int64_t stalled = 0;  // wall time: the waiters of a group wait for the same late partner
  for (const Dir& s : st)
    if (s.bar && s.bar->size() > 1) {
      grouped = true;
      stalled = std::max(stalled, s.bar->stalled_ns() / (s.bar->size() - 1));
    }
  if (grouped) contention().report(4 * stalled >= call_ns, used, requested);
}

// Threads for the per-step recurrence: a step is 2*B*GH*(Ho + P) flops,
// split only where each thread gets enough of them to pay for its barriers.
// The forward has one barrier a step, the backward two: measured on 2 cores
// at H = 64..512 and B = 1..32, the forward gains from 2 threads from about
// 128 kFLOP a thread (a GRU at B = 1, H = 256: 0.96 -> 0.58 ms), the backward
// only from about 256 k.
constexpr double kStepFlopsForward = 131072.0, kStepFlopsBackward = 262144.0;
inline int recurrent_threads(const LayerDims& d, int nt, double per_thread) {
  const double n = 2.0 * cell_spec(d.cell).gates * d.B * d.H * (d.hout() + d.P) / per_thread;
  return n >= nt ? nt : (n < 1.0 ? 1 : static_cast<int>(n));
}

// Whether threads split a layer's rows rather than its hidden units: with a
// batch of 16 or more and a W_hh of at most `most` bytes, every thread can
// stream the whole W_hh per step for its own rows and needs no barrier at all
// (the forward passes 2 MB; the backward, with two barriers a step to save,
// 4 MB). Chosen by the sizes alone, never the thread count, so results stay
// bitwise identical for any thread count (rows are computed alike however
// they are grouped).
inline bool rows_mode_for(const LayerDims& d, const Geometry& g, std::size_t elem,
                          int64_t most) {
  return d.B >= 16 && g.GX * g.Ho * static_cast<int64_t>(elem) <= most;
}

// Slots [j0,j1) of thread gtid of gn when rows are split: contiguous ranges
// with near-equal work (sum of lengths; slots are sorted longest first).
inline void row_range(const Schedule& sc, int gtid, int gn, int64_t& j0, int64_t& j1) {
  const int64_t B = static_cast<int64_t>(sc.len.size());
  int64_t cum = 0;
  j0 = j1 = B;
  for (int64_t j = 0; j < B; ++j) {
    if (j0 == B && cum * gn >= sc.N * gtid) j0 = j;
    if (cum * gn >= sc.N * (gtid + 1)) {
      j1 = j;
      break;
    }
    cum += sc.len[j];
  }
  if (j1 < j0) j1 = j0;
}

// What one thread of a direction's group owns: rows [j0,j1) and unit blocks
// [b0,b1), whose columns of h are [u0,u1). Units split: all rows and a slice
// of the blocks, in whole multiples of g.block_grain() (of h's P columns with
// a projection). Rows split: a slice of
// the rows and every block and column.
struct ThreadShare {
  bool rows = false;
  int64_t j0 = 0, j1 = 0, b0 = 0, b1 = 0, u0 = 0, u1 = 0;
  // this thread's active rows at step s (rows j0 .. j0 + rows_at(s))
  int64_t rows_at(const Schedule& sc, int64_t s) const {
    return std::max<int64_t>(0, std::min(j1, sc.n_at[s]) - j0);
  }
};

inline ThreadShare thread_share(const Schedule& sc, const Geometry& g, int64_t P, bool rows,
                                int gtid, int gn) {
  ThreadShare t;
  t.rows = rows;
  t.j1 = static_cast<int64_t>(sc.len.size());
  t.b1 = g.nblk;
  t.u1 = g.Ho;
  if (rows) {
    row_range(sc, gtid, gn, t.j0, t.j1);
  } else {
    const int64_t gr = g.block_grain();
    split((g.nblk + gr - 1) / gr, gtid, gn, t.b0, t.b1);
    t.b0 = std::min(t.b0 * gr, g.nblk);
    t.b1 = std::min(t.b1 * gr, g.nblk);
    if (P > 0) {
      split(g.Ho, gtid, gn, t.u0, t.u1);
    } else {
      t.u0 = std::min(t.b0 * g.W, g.Ho);
      t.u1 = std::min(t.b1 * g.W, g.Ho);
    }
  }
  return t;
}

// A product inside a step: with split rows the thread computes every panel of
// its own rows (gm.M = its rows), otherwise its share of the (row block,
// panel) pairs of all rows. Lone rows sum k in plain order with split rows.
template <class T>
void step_gemm(const Kernels<T>& kr, Gemm<T> gm, const ThreadShare& sh, int gtid, int gn,
               T* abuf) {
  gm.split_k = !sh.rows;
  if (sh.rows)
    gemm_panels(kr, gm, 0, (gm.N + kr.NR - 1) / kr.NR, abuf);
  else
    gemm_part(kr, gm, gtid, gn, abuf);
}

// Inside a layer's parallel region: splits the team between the directions
// (both at once when D == 2 and the team has two or more threads, else one
// after the other), gives each direction its group barrier (one thread's, a
// no-op, where threads split rows) and calls run(dir, gtid, gn) for this
// thread's part of each direction.
template <class Dir, class Run>
void run_directions(int64_t D, bool rows_mode, std::vector<Dir>& st, Run&& run) {
  const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
  const bool both = D == 2 && nth >= 2;
  const int n0 = both ? (nth + 1) / 2 : nth;
#pragma omp single
  for (int64_t dir = 0; dir < D; ++dir) {
    const int gn = both ? (dir == 0 ? n0 : nth - n0) : nth;
    st[dir].bar.reset(new Barrier(rows_mode ? 1 : gn));
  }
  if (both) {
    if (tid < n0)
      run(0, tid, n0);
    else
      run(1, tid - n0, nth - n0);
  } else {
    for (int dir = 0; dir < D; ++dir) run(dir, tid, nth);
  }
}

// Team size for a layer's recurrence: a bidirectional layer runs its two
// directions at once on two groups when the team has two or more threads,
// unless a direction's whole run is under two threads' grain (threads_for):
// then one thread runs both, as a partner preempted on a busy machine would
// stall such a call for a time slice (50x a tiny call's time).
// Split rows go at least four to a thread.
inline int layer_team(const LayerDims& d, int nt, bool rows_mode, double per_thread) {
  if (rows_mode) return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, d.D * d.B / 4)));
  const int per_dir = recurrent_threads(d, nt, per_thread);
  if (d.D != 2) return per_dir;
  const double dir_flops =
      2.0 * cell_spec(d.cell).gates * d.T * d.B * d.H * (d.I + d.hout());
  return threads_for(dir_flops, nt) < 2 ? 1 : std::min(nt, 2 * per_dir);
}

// Rows of x [T,B,I] in packed order [N,I]; returns x itself when the orders agree.
template <class T>
const T* packed_rows(const Schedule& sc, bool rev, const T* x, int64_t B, int64_t I,
                     std::vector<T>& buf, int nt) {
  if (sc.identity && !rev) return x;
  buf.resize(static_cast<size_t>(sc.N * I));
  T* o = buf.data();
  parallel_for(threads_for(16.0 * sc.N * I, nt), sc.S, [&](int64_t s) {
    for (int64_t j = 0; j < sc.n_at[s]; ++j)
      std::memcpy(o + (sc.off[s] + j) * I, x + (sc.t_of(s, j, rev) * B + sc.perm[j]) * I,
                  sizeof(T) * I);
  });
  return o;
}

// dx [T,B,I] += rows of src [N,I] in packed order.
template <class T>
void scatter_add_rows(const Schedule& sc, bool rev, const T* src, int64_t B, int64_t I, T* dx,
                      int nt) {
  parallel_for(threads_for(16.0 * sc.N * I, nt), sc.S, [&](int64_t s) {
    for (int64_t j = 0; j < sc.n_at[s]; ++j) {
      const T* a = src + (sc.off[s] + j) * I;
      T* o = dx + (sc.t_of(s, j, rev) * B + sc.perm[j]) * I;
      for (int64_t i = 0; i < I; ++i) o[i] += a[i];
    }
  });
}

// Zoneout of one direction (LayerDims::zoneout): the weight k of h_{t-1} in
// the zoned h_t, per (t, b, unit) from the keep masks, or the constant p.
template <class T>
struct Zoneout {
  bool on = false;
  const T* keep = nullptr;  // [T,B,D*Ho] at this direction's first column, or null
  int64_t ld = 0;           // D*Ho
  T p = T(0);
  Zoneout(const LayerDims& d, const T* zoneout_keep, int dir)
      : on(zoneout_keep != nullptr || d.zoneout > 0.0),
        keep(zoneout_keep ? zoneout_keep + dir * d.hout() : nullptr), ld(d.D * d.hout()),
        p(static_cast<T>(d.zoneout)) {}
  // h[u0,u1) = k*hp + (1-k)*h for row b at time t (as the reference)
  void mix(int64_t t, int64_t b, int64_t B, const T* hp, T* h, int64_t u0, int64_t u1) const {
    const T* k = keep ? keep + (t * B + b) * ld : nullptr;
    for (int64_t u = u0; u < u1; ++u) {
      const T ku = k ? k[u] : p;
      h[u] = ku * hp[u] + (T(1) - ku) * h[u];
    }
  }
  // Splits dL/dh_t over [u0,u1): kept[u] = k*dh (the direct part of dL/dh_{t-1}),
  // dh[u] = (1-k)*dh (what reaches the cell's new h).
  void split(int64_t t, int64_t b, int64_t B, T* dh, T* kept, int64_t u0, int64_t u1) const {
    const T* k = keep ? keep + (t * B + b) * ld : nullptr;
    for (int64_t u = u0; u < u1; ++u) {
      const T ku = k ? k[u] : p;
      kept[u] = ku * dh[u];
      dh[u] = (T(1) - ku) * dh[u];
    }
  }
};

// The input side's bias [GX] in the interleaved layout [nblk][G][W]: b_ih
// plus, for the gates whose recurrent bias is added before the activation
// (all of the LSTM's; the GRU's r and z), b_hh (zeros without bias).
template <class T>
avec<T> interleaved_bias(const DirWeights<T>& w, int64_t G, int64_t folded, int64_t H,
                         int64_t Hp, int64_t W) {
  avec<T> out(static_cast<size_t>(G * Hp), T(0));
  for (int64_t q = 0; q < G; ++q)
    for (int64_t u = 0; u < H; ++u) {
      T v = T(0);
      if (w.b_ih) v += w.b_ih[q * H + u];
      if (w.b_hh && q < folded) v += w.b_hh[q * H + u];
      out[(u / W) * G * W + q * W + u % W] = v;
    }
  return out;
}

// Rows src [n,H] as [nblk][n][W], zero padded (zeros for a null src): the per-block constants of a step (peepholes, b_hn).
template <class T>
avec<T> interleaved_rows(const T* src, int64_t n, int64_t H, int64_t Hp, int64_t W) {
  avec<T> out(static_cast<size_t>(n * Hp), T(0));
  if (src)
    for (int64_t q = 0; q < n; ++q)
      for (int64_t u = 0; u < H; ++u) out[(u / W) * n * W + q * W + u % W] = src[q * H + u];
  return out;
}

}  // namespace detail
}  // namespace fastlstm
