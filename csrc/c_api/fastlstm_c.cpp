// The C ABI (fastlstm/fastlstm_c.h) over the C++ API: checks pointers and
// codes, catches every exception and turns it into a status and a message.
// The ABI 1 entry points are the *_ex ones with default options and the six
// base weights; both generations share one implementation below.
#include "fastlstm/fastlstm_c.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/require.h"
#include "fastlstm/rnn.h"

#ifndef FASTLSTM_VERSION
#define FASTLSTM_VERSION "unknown"
#endif

namespace {

using namespace fastlstm;

thread_local std::string last_error;  // per thread: calls on other threads never see it

fastlstm_status fail(fastlstm_status s, const std::string& msg) {
  last_error = msg;
  return s;
}

// Runs f, mapping exceptions to statuses.
template <class F>
fastlstm_status guarded(F&& f) {
  try {
    last_error.clear();
    f();
    return FASTLSTM_OK;
  } catch (const std::length_error& e) {
    return fail(FASTLSTM_SIZE_OVERFLOW, e.what());
  } catch (const std::invalid_argument& e) {
    return fail(FASTLSTM_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return fail(FASTLSTM_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(FASTLSTM_INTERNAL, e.what());
  } catch (...) {
    return fail(FASTLSTM_INTERNAL, "unknown error");
  }
}

using detail::require;

// A struct's name in messages: "opts", or "w[1]" (an array's element k).
struct Name {
  const char* arr;
  int64_t k = -1;
};
std::ostream& operator<<(std::ostream& os, const Name& n) {
  os << n.arr;
  if (n.k >= 0) os << '[' << n.k << ']';
  return os;
}

LayerDims to_dims(const fastlstm_dims* d) {
  require(d != nullptr, "dims: must not be NULL");
  require(d->peephole == 0 || d->peephole == 1, "dims.peephole: expected 0 or 1");
  require(d->cell == FASTLSTM_CELL_LSTM || d->cell == FASTLSTM_CELL_GRU ||
              d->cell == FASTLSTM_CELL_LNLSTM,
          "dims.cell: expected FASTLSTM_CELL_LSTM, FASTLSTM_CELL_GRU or FASTLSTM_CELL_LNLSTM, "
          "got ", d->cell);
  LayerDims out;
  out.T = d->T; out.B = d->B; out.I = d->I; out.H = d->H;
  out.P = d->P; out.D = d->D; out.peephole = d->peephole != 0;
  out.cell = static_cast<Cell>(d->cell);
  return out;
}

// A versioned struct of the caller (its leading size_t `size`: the caller's
// sizeof) as this library's S: the fields the caller's size covers, the rest
// zero (their defaults). v1_size is the struct's size in ABI 2, the first
// version; a size beyond sizeof(S) (a newer header) must leave the bytes this
// library does not know zero. Sizes above kMaxVersioned are garbage (an
// uninitialised size), refused before anything past `size` is read.
constexpr size_t kMaxVersioned = 4096;

template <class S>
S read_versioned(const void* p, size_t v1_size, const Name& name, const char* type) {
  static_assert(offsetof(S, size) == 0, "size leads every versioned struct");
  size_t size = 0;
  std::memcpy(&size, p, sizeof size);
  require(size >= v1_size && size <= kMaxVersioned,
          name, ".size: expected sizeof(", type, ") = ", sizeof(S), ", got ", size,
          " (initialise it with the header's _INIT)");
  S out{};
  std::memcpy(&out, p, std::min(size, sizeof(S)));
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (size_t i = sizeof(S); i < size; ++i)
    require(bytes[i] == 0, name, ": sets fields that this library (C ABI ",
            FASTLSTM_C_ABI_VERSION, ", sizeof(", type, ") = ", sizeof(S), ") does not know");
  out.size = sizeof(S);
  return out;
}

// Throws naming the first NULL pointer of the list.
void not_null(std::initializer_list<std::pair<const void*, const char*>> ptrs, const char* why) {
  for (const auto& [p, name] : ptrs)
    require(p != nullptr, name, ": must not be NULL", why);
}

// dims with the options applied and checked (NULL = defaults).
LayerDims to_dims(const fastlstm_dims* dims, const fastlstm_options* opts) {
  LayerDims d = to_dims(dims);
  if (opts == nullptr) return d;
  const auto o = read_versioned<fastlstm_options>(
      opts, offsetof(fastlstm_options, cell_clip) + sizeof(double), Name{"opts"},
      "fastlstm_options");
  require(!std::isnan(o.zoneout) && o.zoneout >= 0.0 && o.zoneout <= 1.0,
          "opts.zoneout: expected a probability in [0, 1], got ", o.zoneout);
  require(!std::isnan(o.cell_clip) && o.cell_clip >= 0.0,
          "opts.cell_clip: expected >= 0 (0 = none), got ", o.cell_clip);
  require(o.cell_clip == 0.0 || cell_spec(d.cell).cell_clip,
          "opts.cell_clip: the ", cell_spec(d.cell).name, " cell has no cell clip (leave it 0)");
  d.zoneout = o.zoneout;
  d.cell_clip = o.cell_clip;
  return d;
}

// The extended weight (or gradient) struct of each direction: w is an array
// of d.D structs of w[0].size bytes each.
template <class S>
std::vector<S> read_directions(const S* w, int64_t D, const char* name, const char* type) {
  require(w != nullptr, name, ": must not be NULL");
  require(D == 1 || D == 2, "dims.D: expected 1 or 2");
  size_t stride = 0;
  std::memcpy(&stride, w, sizeof stride);
  std::vector<S> out;
  for (int64_t k = 0; k < D; ++k) {
    const auto* p = reinterpret_cast<const unsigned char*>(w) + static_cast<size_t>(k) * stride;
    const Name nk{name, k};
    if (k > 0) {
      size_t size = 0;
      std::memcpy(&size, p, sizeof size);
      require(size == stride, nk, ".size: expected ", stride, " as ", name, "[0].size, got ",
              size);
    }
    out.push_back(read_versioned<S>(p, offsetof(S, ln_cb) + sizeof(w->ln_cb), nk, type));
  }
  return out;
}

// One direction's weights (Out = DirWeights<T>) or gradients (DirGrads<T>)
// from the C struct, each required pointer checked by name: arr "w" or "g".
template <class Out, class C>
Out dir_ptrs(const C& w, const LayerDims& d, int64_t k, const char* arr, const char* what) {
  auto need = [&](const void* ptr, bool when, const char* field) {
    require(!when || ptr != nullptr, Name{arr, k}, '.', field,
            ": must not be NULL (a required ", what, " pointer)");
  };
  const bool ln = d.cell == Cell::lnlstm;
  need(w.base.w_ih, true, "w_ih");
  need(w.base.w_hh, true, "w_hh");
  need(w.base.w_ph, d.peephole, "w_ph");
  need(w.base.w_hr, d.P > 0, "w_hr");
  need(w.ln_ih, ln, "ln_ih");
  need(w.ln_hh, ln, "ln_hh");
  need(w.ln_c, ln, "ln_c");
  need(w.ln_cb, ln, "ln_cb");
  Out out;
  out.w_ih = w.base.w_ih; out.w_hh = w.base.w_hh; out.b_ih = w.base.b_ih;
  out.b_hh = w.base.b_hh; out.w_ph = w.base.w_ph; out.w_hr = w.base.w_hr;
  out.ln_ih = w.ln_ih; out.ln_hh = w.ln_hh; out.ln_c = w.ln_c; out.ln_cb = w.ln_cb;
  return out;
}

// The ABI 1 structs as their ABI 2 extensions (no layer-norm weights).
template <class EX, class B>
std::vector<EX> extend(const B* b, int64_t D, const char* name) {
  require(b != nullptr, name, ": must not be NULL");
  require(D == 1 || D == 2, "dims.D: expected 1 or 2");
  std::vector<EX> out(static_cast<size_t>(D));
  for (int64_t k = 0; k < D; ++k) {
    out[k].size = sizeof(EX);
    out[k].base = b[k];
  }
  return out;
}

Isa to_isa(int isa) {
  if (isa == FASTLSTM_ISA_BEST) return best_isa();
  require(isa >= FASTLSTM_ISA_SCALAR && isa <= FASTLSTM_ISA_AVX512,
          "isa: expected FASTLSTM_ISA_BEST, _SCALAR, _AVX2 or _AVX512");
  const Isa out = static_cast<Isa>(isa);
  require(isa_supported(out), "isa: this kernel path is not supported by this CPU or build");
  return out;
}

ExecConfig config(Isa isa, int num_threads) {
  require(num_threads >= 1, "num_threads: expected >= 1");
  ExecConfig cfg;
  cfg.isa = isa;
  cfg.num_threads = num_threads;
  return cfg;
}

}  // namespace

// One layer's packed weights; exactly one of the two is set.
struct fastlstm_packed {
  std::unique_ptr<PackedLayer<float>> f32;
  std::unique_ptr<PackedLayer<double>> f64;
  template <class T>
  const PackedLayer<T>& get() const {
    const auto& p = [this]() -> const auto& {
      if constexpr (std::is_same_v<T, float>) return f32; else return f64;
    }();
    require(p != nullptr, std::is_same_v<T, float>
                              ? "packed: packed from float64 weights, called with float32"
                              : "packed: packed from float32 weights, called with float64");
    return *p;
  }
};

namespace {

// ex: w is an array of extended structs (ABI 2); else of base ones (ABI 1).
template <class T, class CWX, bool ex, class CW>
fastlstm_status pack(const fastlstm_dims* dims, const fastlstm_options* opts, const CW* w,
                     int isa, int with_backward, int num_threads, fastlstm_packed** out) {
  return guarded([&] {
    require(out != nullptr, "out: must not be NULL");
    *out = nullptr;
    const LayerDims d = to_dims(dims, opts);
    if constexpr (!ex)
      require(d.cell != Cell::lnlstm,
              "dims.cell: the layer-norm LSTM's weights need fastlstm_pack_ex_*");
    require(d.D == 1 || d.D == 2, "dims.D: expected 1 or 2");
    LayerDims shape = d;  // the sizes first (packing reads I, H, P, D and the cell)
    shape.T = shape.B = 1;
    check_layer(shape, nullptr);
    std::vector<CWX> wx;
    if constexpr (ex) wx = read_directions(w, d.D, "w", std::is_same_v<T, float>
                                                         ? "fastlstm_weights_ex_f32"
                                                         : "fastlstm_weights_ex_f64");
    else wx = extend<CWX>(w, d.D, "w");
    std::vector<DirWeights<T>> dw;
    for (int64_t k = 0; k < d.D; ++k)
      dw.push_back(dir_ptrs<DirWeights<T>>(wx[k], d, k, "w", "weight"));
    const Isa i = to_isa(isa);
    const ExecConfig cfg = config(i, num_threads);
    auto p = std::make_unique<fastlstm_packed>();
    auto layer = std::make_unique<PackedLayer<T>>(d, dw.data(), i, with_backward != 0,
                                                  cfg.num_threads);
    if constexpr (std::is_same_v<T, float>) p->f32 = std::move(layer);
    else p->f64 = std::move(layer);
    *out = p.release();
  });
}

template <class T>
fastlstm_status forward(const fastlstm_dims* dims, const fastlstm_options* opts,
                        const fastlstm_packed* p, const T* x, const int64_t* lengths,
                        const T* h0, const T* c0, const T* zoneout_keep, T* y, T* hn, T* cn,
                        T* ws, int num_threads) {
  return guarded([&] {
    const LayerDims d = to_dims(dims, opts);
    require(p != nullptr, "packed: must not be NULL");
    const PackedLayer<T>& w = p->get<T>();
    const bool has_c = cell_spec(d.cell).states == 2;
    not_null({{x, "x"}, {h0, "h0"}, {y, "y"}, {hn, "hn"}}, "");
    if (has_c) not_null({{c0, "c0"}, {cn, "cn"}}, " (the cell has a c state)");
    layer_forward<T>(d, w, x, lengths, h0, c0, y, hn, cn, ws, config(w.isa(), num_threads),
                     zoneout_keep);
  });
}

template <class T, class CGX, bool ex, class CG>
fastlstm_status backward(const fastlstm_dims* dims, const fastlstm_options* opts,
                         const fastlstm_packed* p, const T* x, const int64_t* lengths,
                         const T* c0, const T* zoneout_keep, const T* ws, const T* dy,
                         const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0, const CG* g,
                         int num_threads) {
  return guarded([&] {
    const LayerDims d = to_dims(dims, opts);
    require(p != nullptr, "packed: must not be NULL");
    const PackedLayer<T>& w = p->get<T>();
    const bool has_c = cell_spec(d.cell).states == 2;
    not_null({{x, "x"}, {ws, "ws"}, {dy, "dy"}, {dhn, "dhn"}, {dx, "dx"}, {dh0, "dh0"}}, "");
    if (has_c) not_null({{c0, "c0"}, {dcn, "dcn"}, {dc0, "dc0"}}, " (the cell has a c state)");
    std::vector<CGX> gx;
    if constexpr (ex) gx = read_directions(g, d.D, "g", std::is_same_v<T, float>
                                                         ? "fastlstm_grads_ex_f32"
                                                         : "fastlstm_grads_ex_f64");
    else gx = extend<CGX>(g, d.D, "g");
    std::vector<DirGrads<T>> dg;
    for (int64_t k = 0; k < d.D; ++k)
      dg.push_back(dir_ptrs<DirGrads<T>>(gx[k], d, k, "g", "gradient"));
    layer_backward<T>(d, w, x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, dg.data(),
                      config(w.isa(), num_threads), zoneout_keep);
  });
}

}  // namespace

extern "C" {

const char* fastlstm_version(void) { return FASTLSTM_VERSION; }
const char* fastlstm_last_error(void) { return last_error.c_str(); }
int fastlstm_abi_version(void) { return FASTLSTM_C_ABI_VERSION; }
int fastlstm_best_isa(void) { return static_cast<int>(best_isa()); }

int fastlstm_isa_supported(int isa) {
  return isa >= FASTLSTM_ISA_SCALAR && isa <= FASTLSTM_ISA_AVX512 &&
         isa_supported(static_cast<Isa>(isa));
}

fastlstm_status fastlstm_workspace_size_ex(const fastlstm_dims* dims,
                                           const fastlstm_options* opts,
                                           const int64_t* lengths, int isa, int element_bytes,
                                           int64_t* out) {
  return guarded([&] {
    require(out != nullptr, "out: must not be NULL");
    *out = layer_workspace_size(to_dims(dims, opts), lengths, to_isa(isa), element_bytes);
  });
}

fastlstm_status fastlstm_workspace_size(const fastlstm_dims* dims, const int64_t* lengths,
                                        int isa, int element_bytes, int64_t* out) {
  return fastlstm_workspace_size_ex(dims, nullptr, lengths, isa, element_bytes, out);
}

fastlstm_status fastlstm_pack_f32(const fastlstm_dims* dims, const fastlstm_weights_f32* w,
                                  int isa, int with_backward, int num_threads,
                                  fastlstm_packed** out) {
  return pack<float, fastlstm_weights_ex_f32, false>(dims, nullptr, w, isa, with_backward,
                                                     num_threads, out);
}

fastlstm_status fastlstm_pack_f64(const fastlstm_dims* dims, const fastlstm_weights_f64* w,
                                  int isa, int with_backward, int num_threads,
                                  fastlstm_packed** out) {
  return pack<double, fastlstm_weights_ex_f64, false>(dims, nullptr, w, isa, with_backward,
                                                      num_threads, out);
}

fastlstm_status fastlstm_pack_ex_f32(const fastlstm_dims* dims, const fastlstm_options* opts,
                                     const fastlstm_weights_ex_f32* w, int isa,
                                     int with_backward, int num_threads, fastlstm_packed** out) {
  return pack<float, fastlstm_weights_ex_f32, true>(dims, opts, w, isa, with_backward,
                                                    num_threads, out);
}

fastlstm_status fastlstm_pack_ex_f64(const fastlstm_dims* dims, const fastlstm_options* opts,
                                     const fastlstm_weights_ex_f64* w, int isa,
                                     int with_backward, int num_threads, fastlstm_packed** out) {
  return pack<double, fastlstm_weights_ex_f64, true>(dims, opts, w, isa, with_backward,
                                                     num_threads, out);
}

void fastlstm_packed_free(fastlstm_packed* p) { delete p; }

fastlstm_status fastlstm_forward_f32(const fastlstm_dims* dims, const fastlstm_packed* p,
                                     const float* x, const int64_t* lengths, const float* h0,
                                     const float* c0, float* y, float* hn, float* cn, float* ws,
                                     int num_threads) {
  return forward<float>(dims, nullptr, p, x, lengths, h0, c0, nullptr, y, hn, cn, ws,
                        num_threads);
}

fastlstm_status fastlstm_forward_f64(const fastlstm_dims* dims, const fastlstm_packed* p,
                                     const double* x, const int64_t* lengths, const double* h0,
                                     const double* c0, double* y, double* hn, double* cn,
                                     double* ws, int num_threads) {
  return forward<double>(dims, nullptr, p, x, lengths, h0, c0, nullptr, y, hn, cn, ws,
                         num_threads);
}

fastlstm_status fastlstm_forward_ex_f32(const fastlstm_dims* dims, const fastlstm_options* opts,
                                        const fastlstm_packed* p, const float* x,
                                        const int64_t* lengths, const float* h0,
                                        const float* c0, const float* zoneout_keep, float* y,
                                        float* hn, float* cn, float* ws, int num_threads) {
  return forward<float>(dims, opts, p, x, lengths, h0, c0, zoneout_keep, y, hn, cn, ws,
                        num_threads);
}

fastlstm_status fastlstm_forward_ex_f64(const fastlstm_dims* dims, const fastlstm_options* opts,
                                        const fastlstm_packed* p, const double* x,
                                        const int64_t* lengths, const double* h0,
                                        const double* c0, const double* zoneout_keep,
                                        double* y, double* hn, double* cn, double* ws,
                                        int num_threads) {
  return forward<double>(dims, opts, p, x, lengths, h0, c0, zoneout_keep, y, hn, cn, ws,
                         num_threads);
}

fastlstm_status fastlstm_backward_f32(const fastlstm_dims* dims, const fastlstm_packed* p,
                                      const float* x, const int64_t* lengths, const float* c0,
                                      const float* ws, const float* dy, const float* dhn,
                                      const float* dcn, float* dx, float* dh0, float* dc0,
                                      const fastlstm_grads_f32* g, int num_threads) {
  return backward<float, fastlstm_grads_ex_f32, false>(dims, nullptr, p, x, lengths, c0,
                                                       nullptr, ws, dy, dhn, dcn, dx, dh0, dc0,
                                                       g, num_threads);
}

fastlstm_status fastlstm_backward_f64(const fastlstm_dims* dims, const fastlstm_packed* p,
                                      const double* x, const int64_t* lengths,
                                      const double* c0, const double* ws, const double* dy,
                                      const double* dhn, const double* dcn, double* dx,
                                      double* dh0, double* dc0, const fastlstm_grads_f64* g,
                                      int num_threads) {
  return backward<double, fastlstm_grads_ex_f64, false>(dims, nullptr, p, x, lengths, c0,
                                                        nullptr, ws, dy, dhn, dcn, dx, dh0,
                                                        dc0, g, num_threads);
}

fastlstm_status fastlstm_backward_ex_f32(const fastlstm_dims* dims, const fastlstm_options* opts,
                                         const fastlstm_packed* p, const float* x,
                                         const int64_t* lengths, const float* c0,
                                         const float* zoneout_keep, const float* ws,
                                         const float* dy, const float* dhn, const float* dcn,
                                         float* dx, float* dh0, float* dc0,
                                         const fastlstm_grads_ex_f32* g, int num_threads) {
  return backward<float, fastlstm_grads_ex_f32, true>(dims, opts, p, x, lengths, c0,
                                                      zoneout_keep, ws, dy, dhn, dcn, dx, dh0,
                                                      dc0, g, num_threads);
}

fastlstm_status fastlstm_backward_ex_f64(const fastlstm_dims* dims, const fastlstm_options* opts,
                                         const fastlstm_packed* p, const double* x,
                                         const int64_t* lengths, const double* c0,
                                         const double* zoneout_keep, const double* ws,
                                         const double* dy, const double* dhn, const double* dcn,
                                         double* dx, double* dh0, double* dc0,
                                         const fastlstm_grads_ex_f64* g, int num_threads) {
  return backward<double, fastlstm_grads_ex_f64, true>(dims, opts, p, x, lengths, c0,
                                                       zoneout_keep, ws, dy, dhn, dcn, dx, dh0,
                                                       dc0, g, num_threads);
}

}  // extern "C"
