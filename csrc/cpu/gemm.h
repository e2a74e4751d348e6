// Packing of B operands into NR-wide panels, and the blocked GEMM driver on
// top of the micro-kernel. Every C element is produced by one thread with a
// fixed summation order, so results do not depend on the thread count.
#pragma once

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/aligned.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/prefetch.h"

namespace fastlstm {
namespace detail {

// Static split of [0,n) into nt nearly equal parts; part tid.
inline void split(int64_t n, int tid, int nt, int64_t& lo, int64_t& hi) {
  lo = n * tid / nt;
  hi = n * (tid + 1) / nt;
}

// Threads worth using for `flops` of work split nt ways: each thread should
// get enough work (~0.25 MFLOP, a few microseconds) to pay for a barrier.
inline int threads_for(double flops, int nt) {
  const double per_thread = 262144.0;
  const double n = flops / per_thread;
  return n >= nt ? nt : (n < 1.0 ? 1 : static_cast<int>(n));
}

// Packs B(k,n) = col[n][row[k]] (0 where col[n] is null or row[k] < 0), k < K,
// n < N, into panels [ceil(N/NR)][K][NR], zero padded. The maps make every
// layout below one loop with no index arithmetic per element.
// pack_panels_into writes them to o [ceil(N/NR)*K*NR]; pack_panels returns them.
template <class T>
void pack_panels_into(const std::vector<int64_t>& row, const std::vector<const T*>& col,
                      int64_t NR, int nt, T* o) {
  const int64_t K = static_cast<int64_t>(row.size()), N = static_cast<int64_t>(col.size());
  const int64_t np = (N + NR - 1) / NR;
  // Rows contiguous in the source (row[k+1] = row[k] + 1, e.g. W[4H,K] read
  // down its columns): copy each column's run of 64 k at a time, reading in
  // order; otherwise sweep k with the columns inner (adjacent in the source).
  const bool k_runs = K > 1 && row[1] - row[0] == 1;
  parallel_for(threads_for(16.0 * np * K * NR, nt), np, [&](int64_t p) {
    const T* cp[64];  // NR <= 64 (AVX-512 float)
    const int64_t nc = std::min(NR, N - p * NR);
    for (int64_t c = 0; c < NR; ++c) cp[c] = c < nc ? col[p * NR + c] : nullptr;
    T* op = o + p * K * NR;
    // columns adjacent in the source (col[c] = col[0] + c): rows are memcpys
    bool c_runs = nc > 0;
    for (int64_t c = 0; c < nc && c_runs; ++c) c_runs = cp[c] == cp[0] + c;
    if (k_runs) {
      for (int64_t k0 = 0; k0 < K; k0 += 64) {
        const int64_t k1 = std::min(K, k0 + 64);
        bool run = row[k0] >= 0;  // row[k] = row[k0] + (k - k0) over the block
        for (int64_t k = k0 + 1; k < k1 && run; ++k) run = row[k] == row[k0] + (k - k0);
        for (int64_t c = 0; c < NR; ++c) {
          const T* src = cp[c];
          if (src == nullptr || !run) {  // padding, or not a run
            for (int64_t k = k0; k < k1; ++k)
              op[k * NR + c] = (src && row[k] >= 0) ? src[row[k]] : T(0);
          } else {
            src += row[k0];
            for (int64_t k = k0; k < k1; ++k) op[k * NR + c] = src[k - k0];
          }
        }
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t r = row[k];
        T* ok = op + k * NR;
        if (r >= 0 && c_runs) {
          std::memcpy(ok, cp[0] + r, sizeof(T) * nc);
          std::fill(ok + nc, ok + NR, T(0));
        } else {
          for (int64_t c = 0; c < NR; ++c) ok[c] = (r >= 0 && cp[c]) ? cp[c][r] : T(0);
        }
      }
    }
  });
}

template <class T>
pvec<T> pack_panels(const std::vector<int64_t>& row, const std::vector<const T*>& col,
                    int64_t NR, int nt, bool huge = false) {
  const int64_t np = (static_cast<int64_t>(col.size()) + NR - 1) / NR;
  pvec<T> out(static_cast<size_t>(np * static_cast<int64_t>(row.size()) * NR),
              HugeAlloc<T>(huge));
  pack_panels_into(row, col, NR, nt, out.data());
  return out;
}

// Round to the nearest bfloat16 (ties to even); NaN stays NaN.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Panels of floats in the bfloat16 layout the kernels read: each group of 2W
// consecutive values permuted by order(s) (see Kernels::bf16_order).
template <class T>
pvec<uint16_t> to_bf16(const pvec<T>& src, int64_t W, int (*order)(int), int nt) {
  pvec<uint16_t> out(src.size(), HugeAlloc<uint16_t>(src.get_allocator()));
  const int64_t G = 2 * W, ng = static_cast<int64_t>(src.size()) / G;
  std::vector<int> perm(static_cast<size_t>(G));
  for (int64_t s = 0; s < G; ++s) perm[s] = order(static_cast<int>(s));
  parallel_for(threads_for(8.0 * ng * G, nt), ng, [&](int64_t g) {
    for (int64_t s = 0; s < G; ++s)
      out[g * G + s] = to_bf16(static_cast<float>(src[g * G + perm[s]]));
  });
  return out;
}

inline std::vector<int64_t> strided_rows(int64_t K, int64_t stride) {
  std::vector<int64_t> row(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) row[k] = k * stride;
  return row;
}

// B(k,n) = src[k*sk + n*sn], into o [ceil(N/NR)*K*NR]; returns o.
template <class T>
const T* pack_plain_into(int64_t K, int64_t N, const T* src, int64_t sk, int64_t sn, int64_t NR,
                         int nt, T* o) {
  std::vector<const T*> col(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) col[n] = src + n * sn;
  pack_panels_into(strided_rows(K, sk), col, NR, nt, o);
  return o;
}

// The same in a new buffer.
template <class T>
pvec<T> pack_plain(int64_t K, int64_t N, const T* src, int64_t sk, int64_t sn, int64_t NR,
                   int nt, bool huge = false) {
  pvec<T> out(static_cast<size_t>((N + NR - 1) / NR * K * NR), HugeAlloc<T>(huge));
  pack_plain_into(K, N, src, sk, sn, NR, nt, out.data());
  return out;
}

// Gate-interleaved columns of G gates in blocks of S >= G slots (zero slots
// past G): B(k, blk*S*W + q*W + l) = src[(q*H + u)*K + k] with u = blk*W + l
// (0 for u >= H), in panels of NR columns. src: [G*H,K], e.g. W_ih or W_hh.
template <class T>
pvec<T> pack_gate_cols(int64_t K, int64_t H, int64_t G, const T* src, int64_t W, int64_t NR,
                       int nt, int64_t S = 0, bool huge = false) {
  const int64_t Hp = (H + W - 1) / W * W;
  if (S == 0) S = G;
  std::vector<const T*> col(static_cast<size_t>(S * Hp), nullptr);
  for (int64_t u = 0; u < Hp; ++u)
    for (int64_t q = 0; q < G; ++q)
      col[(u / W) * S * W + q * W + u % W] = u < H ? src + (q * H + u) * K : nullptr;
  return pack_panels(strided_rows(K, 1), col, NR, nt, huge);
}

// Gate-major padded rows: B(s*Hp + u, n) = src[(gate[s]*H + u)*N + n] (0 for
// u >= H), s < G. src: [G*H,N], e.g. W_hh or W_ih, for products with dgates.
template <class T>
pvec<T> pack_gate_rows(int64_t H, int64_t Hp, int64_t N, int64_t G, const int* gate,
                       const T* src, int64_t NR, int nt) {
  std::vector<int64_t> row(static_cast<size_t>(G * Hp));
  for (int64_t s = 0; s < G; ++s)
    for (int64_t u = 0; u < Hp; ++u) row[s * Hp + u] = u < H ? (gate[s] * H + u) * N : -1;
  std::vector<const T*> col(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) col[n] = src + n;
  return pack_panels(row, col, NR, nt);
}

template <class T>
struct Gemm {
  int64_t M = 0, N = 0, K = 0;
  const T* a = nullptr;          // A(m,k) = a[m*rsa + k*csa]
  int64_t rsa = 0, csa = 0;
  const T* bp = nullptr;         // packed B panels [ceil(N/NR)][K][NR]
  const uint16_t* bp16 = nullptr;  // the same in bfloat16, used instead of bp when set
  T* c = nullptr;                // [M,ldc]
  int64_t ldc = 0;
  bool accumulate = false;       // C += AB; else C = AB (+ bias)
  const T* bias = nullptr;       // [N], added when !accumulate, or null
  bool split_k = true;           // see Kernels::tile
};

// k per slice: a [KC,NR] slice of a B panel fills 32 KB (L1 on Zen 3; measured
// 5-10% faster than 16 KB on the large products here).
#ifndef FASTLSTM_KC_BYTES
#define FASTLSTM_KC_BYTES 32768
#endif
inline int64_t gemm_kc(const int64_t NR, int64_t elem) {
  return std::max<int64_t>(64, FASTLSTM_KC_BYTES / (NR * elem));
}

inline int64_t gemm_mc(int64_t MR) { return MR * 32; }

// Rows of the next tile when rem rows are left: MR, except that MR + 1 rows
// become two near-equal tiles rather than a full one and a lone row (a lone
// row has only four FMA chains per k).
inline int64_t tile_rows_for(int64_t rem, int64_t MR) {
  return rem == MR + 1 && MR > 1 ? (rem + 1) / 2 : std::min(rem, MR);
}

// at[k*MR + r] = a[r*rsa + k*csa]: one tile of A, [kc][MR]. A fixed MR keeps
// the row loop unrolled (with a run-time count it cost 10% of a large product).
template <int MR, class T>
void pack_a_fixed(int64_t kc, const T* a, int64_t rsa, int64_t csa, T* at) {
  for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) at[k * MR + r] = a[r * rsa + k * csa];
}

template <class T>
void pack_a_tile(int64_t kc, int64_t mr, const T* a /*A(r,k) = a[r*rsa + k*csa]*/, int64_t rsa,
                 int64_t csa, T* at /*[kc][mr]*/) {
  switch (mr) {
    case 1: return pack_a_fixed<1>(kc, a, rsa, csa, at);
    case 2: return pack_a_fixed<2>(kc, a, rsa, csa, at);
    case 3: return pack_a_fixed<3>(kc, a, rsa, csa, at);
    case 4: return pack_a_fixed<4>(kc, a, rsa, csa, at);
    case 5: return pack_a_fixed<5>(kc, a, rsa, csa, at);
    case 6: return pack_a_fixed<6>(kc, a, rsa, csa, at);
    default:
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < mr; ++r) at[k * mr + r] = a[r * rsa + k * csa];
  }
}

// The L2 cache of one core in bytes (512 KB where the system does not say).
inline int64_t l2_bytes() {
  static const int64_t bytes = [] {
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long b = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (b >= 128 * 1024 && b <= (int64_t(1) << 30)) return static_cast<int64_t>(b);
#endif
    return int64_t(512) * 1024;
  }();
  return bytes;
}

// k-range packed at a time: MC rows of A over it fill 3/8 of L2 (the rest
// holds C's rows and the B slices). Each window is one more pass over C's
// MC rows, so the larger the better while A stays in L2: 192 KB on Zen 3,
// 768 KB on Sapphire Rapids (2 MB L2; measured +6% on a 2048^3 product, +7%
// on 3200x4096x1024 against 192 KB).
template <class T>
int64_t gemm_kw(const GemmKernels<T>& kr) {
  const int64_t KC = gemm_kc(kr.NR, sizeof(T));
  const int64_t kw = (l2_bytes() * 3 / 8 / int64_t(sizeof(T))) / gemm_mc(kr.MR) / KC * KC;
  return std::max(KC, kw);
}

// Rows [m0,m1) (at most gemm_mc) by panels [p0,p1) of C = AB, on the calling
// thread. For each window of k, A's rows are packed once into abuf as
// [k-slice][tile][k][mr] (each tile then reads its broadcasts in order,
// whatever A's strides); then each panel runs the window's k-slices while its
// C block stays in cache, and each k-slice of the panel stays in L1 for every
// tile. bfloat16 panels feed the bfloat16 tile when there are few rows; with
// more, each k-slice is widened once into floats for the float tile.
template <class T>
void gemm_rows(const GemmKernels<T>& kr, const Gemm<T>& g, int64_t m0, int64_t m1, int64_t p0,
               int64_t p1, T* abuf /*[gemm_mc*gemm_kw]*/) {
  const int64_t NR = kr.NR, KC = gemm_kc(NR, sizeof(T)), KW = gemm_kw(kr);
  const bool widen = g.bp16 && m1 - m0 >= 4 * kr.MR;
  const bool tile16 = g.bp16 && !widen;
  const int64_t MR = tile16 ? kr.MR16 : kr.MR;
  const int64_t rows = m1 - m0;  // a k-slice of abuf is [rows,kc], tile by tile
  avec<T> wide(widen ? static_cast<size_t>(KC * NR) : 0);  // one widened k-slice [KC,NR]
  if (!g.accumulate && g.bias)
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t j = p0 * NR; j < std::min(g.N, p1 * NR); ++j) g.c[m * g.ldc + j] = g.bias[j];
  // Row-major A against one or two panels: packing would cost about as much
  // as it saves, so the tiles read A in place.
  const bool in_place = g.csa == 1 && p1 - p0 <= 2;
  for (int64_t w0 = 0; w0 < g.K; w0 += KW) {
    const int64_t w1 = std::min(g.K, w0 + KW);
    for (int64_t k0 = w0; k0 < w1 && !in_place; k0 += KC) {  // pack A[m0:m1, w0:w1]
      const int64_t kc = std::min(KC, w1 - k0);
      T* slice = abuf + rows * (k0 - w0);
      for (int64_t m = m0, mr; m < m1; m += mr) {
        mr = tile_rows_for(m1 - m, MR);
        pack_a_tile(kc, mr, g.a + m * g.rsa + k0 * g.csa, g.rsa, g.csa, slice + (m - m0) * kc);
      }
    }
    const int64_t tiles = (rows + MR - 1) / MR;  // at most: the prefetch shares
    const char* panels = g.bp16 ? reinterpret_cast<const char*>(g.bp16)
                                : reinterpret_cast<const char*>(g.bp);
    const int64_t elem = g.bp16 ? 2 : int64_t(sizeof(T));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * NR;
      const int nr = static_cast<int>(std::min(NR, g.N - n0));
      T* c = g.c + n0;
      for (int64_t k0 = w0; k0 < w1; k0 += KC) {
        const int64_t kc = std::min(KC, w1 - k0);
        const bool acc = g.accumulate || g.bias || k0 > 0;
        const int64_t at = p * g.K * NR + k0 * NR;  // this panel's rows k0..
        if (widen) kr.widen_bf16(kc, g.bp16 + at, wide.data());
        const T* bp = widen ? wide.data() : g.bp + at;
        // the slice after this one: the panel's next k-slice, or the next panel's first
        int64_t next = -1, next_rows = 0;
        if (tiles > 1 && k0 + KC < w1)
          next = at + kc * NR, next_rows = std::min(KC, w1 - k0 - KC);
        else if (tiles > 1 && p + 1 < p1)
          next = (p + 1) * g.K * NR + w0 * NR, next_rows = std::min(KC, w1 - w0);
        int64_t tile = 0;
        for (int64_t m = m0, mr; m < m1; m += mr, ++tile) {
          mr = tile_rows_for(m1 - m, MR);
          if (next >= 0) prefetch_share(panels + next * elem, next_rows * NR * elem, tile, tiles);
          const T* a = in_place ? g.a + m * g.rsa + k0 : abuf + rows * (k0 - w0) + (m - m0) * kc;
          const int64_t rsa = in_place ? g.rsa : 1, csa = in_place ? 1 : mr;
          if (tile16)
            kr.tile_bf16(kc, a, rsa, csa, g.bp16 + at, c + m * g.ldc, g.ldc, int(mr), nr, acc,
                         g.split_k);
          else
            kr.tile(kc, a, rsa, csa, bp, c + m * g.ldc, g.ldc, int(mr), nr, acc, g.split_k);
        }
      }
    }
  }
}

// Scratch for gemm_rows' packed A.
template <class T>
avec<T> gemm_abuf(const GemmKernels<T>& kr) {
  return avec<T>(static_cast<size_t>(gemm_mc(kr.MR) * gemm_kw(kr)));
}

// This thread's share of C = AB, called inside a parallel region of nt
// threads: a static split of the (row block, panel) pairs, row-block major.
// abuf: this thread's gemm_abuf.
template <class T>
void gemm_part(const GemmKernels<T>& kr, const Gemm<T>& g, int tid, int nt, T* abuf) {
  const int64_t MC = gemm_mc(kr.MR);
  const int64_t mb = (g.M + MC - 1) / MC, nb = (g.N + kr.NR - 1) / kr.NR;
  int64_t lo, hi;
  split(mb * nb, tid, nt, lo, hi);
  for (int64_t it = lo; it < hi;) {
    const int64_t b = it / nb, pe = std::min(hi - b * nb, nb);  // panels [it%nb, pe) of block b
    const int64_t m0 = b * MC;
    gemm_rows(kr, g, m0, std::min(g.M, m0 + MC), it % nb, pe, abuf);
    it = b * nb + pe;
  }
}

// Panels [p0,p1) of C = AB (all rows), on the calling thread; abuf from
// gemm_abuf.
template <class T>
void gemm_panels(const GemmKernels<T>& kr, const Gemm<T>& g, int64_t p0, int64_t p1, T* abuf) {
  const int64_t MC = gemm_mc(kr.MR);
  for (int64_t m0 = 0; m0 < g.M; m0 += MC)
    gemm_rows(kr, g, m0, std::min(g.M, m0 + MC), p0, p1, abuf);
}

// C = AB with its own parallel region.
template <class T>
void gemm(const GemmKernels<T>& kr, const Gemm<T>& g, int nt) {
  if (g.M <= 0 || g.N <= 0) return;
  nt = threads_for(2.0 * g.M * g.N * g.K, nt);
  parallel(nt, [&] {
    avec<T> abuf = gemm_abuf(kr);
    gemm_part(kr, g, omp_get_thread_num(), omp_get_num_threads(), abuf.data());
  });
}

}  // namespace detail
}  // namespace fastlstm
