// The CUDA backend's layer drivers (csrc/cuda/driver.h) run on the host: the
// same drivers and pointwise functors, with a device whose GEMM is a naive
// column-major BLAS reached through the backend's own row-major mapping
// (cuda::col_major) and whose for_each is a loop. tests/test_cuda_host.py
// builds this as a shared library and checks it against fastlstm.reference,
// so the drivers' indexing, layouts, lengths, directions, zoneout and
// gradient products are tested without a GPU. C entry points for ctypes.
#include <cstring>
#include <exception>
#include <vector>

#include "cuda/driver.h"

namespace {
using namespace fastlstm;

struct HostDev {
  // The column-major product BLAS defines: C[m,n] = alpha op(A) op(B) + beta C.
  template <class T>
  static void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        T s = 0;
        for (int64_t p = 0; p < k; ++p)
          s += (ta ? A[p + i * lda] : A[i + p * lda]) * (tb ? B[j + p * ldb] : B[p + j * ldb]);
        T& c = C[i + j * ldc];
        c = beta == T(0) ? alpha * s : alpha * s + beta * c;
      }
  }
  template <class T>
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
            const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
    const cuda::ColMajorGemm g = cuda::col_major(ta, tb, M, N, K, lda, ldb, ldc);
    blas(g.ta, g.tb, g.m, g.n, g.k, alpha, g.a_is_B ? B : A, g.lda, g.a_is_B ? A : B, g.ldb,
         beta, C, g.ldc);
  }
  template <class F>
  void for_each(int64_t n, const F& f) {
    for (int64_t i = n - 1; i >= 0; --i) f(i);  // any order: here backwards
  }
  template <class T>
  void zero(T* p, int64_t n) { std::memset(p, 0, sizeof(T) * n); }
  template <class T>
  void copy(T* dst, const T* src, int64_t n) { std::memcpy(dst, src, sizeof(T) * n); }
};

LayerDims dims(int cell, const int64_t* s /*T,B,I,H,P,D,peephole*/, double zoneout,
               double clip) {
  LayerDims d;
  d.T = s[0]; d.B = s[1]; d.I = s[2]; d.H = s[3]; d.P = s[4]; d.D = s[5];
  d.peephole = s[6] != 0;
  d.cell = static_cast<Cell>(cell);
  d.zoneout = zoneout;
  d.cell_clip = clip;
  return d;
}

// p: per direction w_ih, w_hh, b_ih, b_hh, w_ph, w_hr (null where absent).
template <class T>
std::vector<DirWeights<T>> weights(void* const* p, int64_t D) {
  std::vector<DirWeights<T>> w(D);
  for (int64_t k = 0; k < D; ++k) {
    void* const* q = p + 6 * k;
    w[k].w_ih = static_cast<const T*>(q[0]);
    w[k].w_hh = static_cast<const T*>(q[1]);
    w[k].b_ih = static_cast<const T*>(q[2]);
    w[k].b_hh = static_cast<const T*>(q[3]);
    w[k].w_ph = static_cast<const T*>(q[4]);
    w[k].w_hr = static_cast<const T*>(q[5]);
  }
  return w;
}

template <class T>
std::vector<DirGrads<T>> grads(void* const* p, int64_t D) {
  std::vector<DirGrads<T>> g(D);
  for (int64_t k = 0; k < D; ++k) {
    void* const* q = p + 6 * k;
    g[k].w_ih = static_cast<T*>(q[0]);
    g[k].w_hh = static_cast<T*>(q[1]);
    g[k].b_ih = static_cast<T*>(q[2]);
    g[k].b_hh = static_cast<T*>(q[3]);
    g[k].w_ph = static_cast<T*>(q[4]);
    g[k].w_hr = static_cast<T*>(q[5]);
  }
  return g;
}

template <class T>
int forward(int cell, const int64_t* s, double zoneout, double clip, void* const* wp,
            const void* x, const int64_t* len, const void* h0, const void* c0, void* y,
            void* hn, void* cn, void* ws, const void* keep) {
  try {
    const LayerDims d = dims(cell, s, zoneout, clip);
    std::vector<T> scratch(cuda::fwd_scratch(d).size, T(-777));  // garbage must not leak
    HostDev dev;
    const std::vector<DirWeights<T>> w = weights<T>(wp, d.D);
    cuda::forward_layer<T>(dev, d, w.data(), static_cast<const T*>(x), len,
                           static_cast<const T*>(h0), static_cast<const T*>(c0),
                           static_cast<T*>(y), static_cast<T*>(hn), static_cast<T*>(cn),
                           static_cast<T*>(ws), scratch.data(), static_cast<const T*>(keep));
    return 0;
  } catch (const std::exception&) {
    return 1;
  }
}

template <class T>
int backward(int cell, const int64_t* s, double zoneout, double clip, void* const* wp,
             const void* x, const int64_t* len, const void* ws, const void* dy,
             const void* dhn, const void* dcn, void* dx, void* dh0, void* dc0, void* const* gp,
             const void* keep) {
  try {
    const LayerDims d = dims(cell, s, zoneout, clip);
    std::vector<T> scratch(cuda::bwd_scratch(d).size, T(-777));
    HostDev dev;
    const std::vector<DirWeights<T>> w = weights<T>(wp, d.D);
    const std::vector<DirGrads<T>> g = grads<T>(gp, d.D);
    cuda::backward_layer<T>(dev, d, w.data(), static_cast<const T*>(x), len,
                            static_cast<const T*>(ws), static_cast<const T*>(dy),
                            static_cast<const T*>(dhn), static_cast<const T*>(dcn),
                            static_cast<T*>(dx), static_cast<T*>(dh0), static_cast<T*>(dc0),
                            g.data(), scratch.data(), static_cast<const T*>(keep));
    return 0;
  } catch (const std::exception&) {
    return 1;
  }
}
}  // namespace

extern "C" {
int64_t emu_workspace_size(int cell, const int64_t* s) {
  return fastlstm::cuda::ws_layout(dims(cell, s, 0, 0)).size * s[5];
}
#define EMU(name, T)                                                                         \
  int emu_forward_##name(int cell, const int64_t* s, double z, double clip, void* const* wp, \
                         const void* x, const int64_t* len, const void* h0, const void* c0,  \
                         void* y, void* hn, void* cn, void* ws, const void* keep) {          \
    return forward<T>(cell, s, z, clip, wp, x, len, h0, c0, y, hn, cn, ws, keep);            \
  }                                                                                          \
  int emu_backward_##name(int cell, const int64_t* s, double z, double clip, void* const* wp, \
                          const void* x, const int64_t* len, const void* ws, const void* dy, \
                          const void* dhn, const void* dcn, void* dx, void* dh0, void* dc0,  \
                          void* const* gp, const void* keep) {                               \
    return backward<T>(cell, s, z, clip, wp, x, len, ws, dy, dhn, dcn, dx, dh0, dc0, gp,     \
                       keep);                                                                \
  }
EMU(f64, double)
EMU(f32, float)
}
