// The C ABI (fastlstm/fastlstm_c.h) over the C++ API: checks pointers and
// codes, catches every exception and turns it into a status and a message.
#include "fastlstm/fastlstm_c.h"

#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

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

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}

LayerDims to_dims(const fastlstm_dims* d) {
  require(d != nullptr, "dims: must not be NULL");
  require(d->peephole == 0 || d->peephole == 1, "dims.peephole: expected 0 or 1");
  require(d->cell == FASTLSTM_CELL_LSTM || d->cell == FASTLSTM_CELL_GRU,
          "dims.cell: expected FASTLSTM_CELL_LSTM or FASTLSTM_CELL_GRU");
  LayerDims out;
  out.T = d->T; out.B = d->B; out.I = d->I; out.H = d->H;
  out.P = d->P; out.D = d->D; out.peephole = d->peephole != 0;
  out.cell = d->cell == FASTLSTM_CELL_GRU ? Cell::gru : Cell::lstm;
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

template <class T, class CW>
fastlstm_status pack(const fastlstm_dims* dims, const CW* w, int isa, int with_backward,
                     int num_threads, fastlstm_packed** out) {
  return guarded([&] {
    require(out != nullptr, "out: must not be NULL");
    *out = nullptr;
    LayerDims d = to_dims(dims);
    require(w != nullptr, "w: must not be NULL");
    require(d.D == 1 || d.D == 2, "dims.D: expected 1 or 2");
    std::vector<DirWeights<T>> dw(static_cast<size_t>(d.D));
    for (int64_t k = 0; k < d.D; ++k)
      dw[k] = {w[k].w_ih, w[k].w_hh, w[k].b_ih, w[k].b_hh, w[k].w_ph, w[k].w_hr};
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
fastlstm_status forward(const fastlstm_dims* dims, const fastlstm_packed* p, const T* x,
                        const int64_t* lengths, const T* h0, const T* c0, T* y, T* hn, T* cn,
                        T* ws, int num_threads) {
  return guarded([&] {
    const LayerDims d = to_dims(dims);
    require(p != nullptr, "packed: must not be NULL");
    const PackedLayer<T>& w = p->get<T>();
    const bool has_c = cell_spec(d.cell).states == 2;
    require(x && h0 && y && hn, "x, h0, y, hn: must not be NULL");
    require(!has_c || (c0 && cn), "c0, cn: must not be NULL for the LSTM");
    layer_forward<T>(d, w, x, lengths, h0, c0, y, hn, cn, ws, config(w.isa(), num_threads));
  });
}

template <class T, class CG>
fastlstm_status backward(const fastlstm_dims* dims, const fastlstm_packed* p, const T* x,
                         const int64_t* lengths, const T* c0, const T* ws, const T* dy,
                         const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0, const CG* g,
                         int num_threads) {
  return guarded([&] {
    const LayerDims d = to_dims(dims);
    require(p != nullptr, "packed: must not be NULL");
    const PackedLayer<T>& w = p->get<T>();
    const bool has_c = cell_spec(d.cell).states == 2;
    require(x && ws && dy && dhn && dx && dh0 && g,
            "x, ws, dy, dhn, dx, dh0, g: must not be NULL");
    require(!has_c || (c0 && dcn && dc0), "c0, dcn, dc0: must not be NULL for the LSTM");
    require(d.D == 1 || d.D == 2, "dims.D: expected 1 or 2");
    std::vector<DirGrads<T>> dg(static_cast<size_t>(d.D));
    for (int64_t k = 0; k < d.D; ++k) {
      require(g[k].w_ih && g[k].w_hh && (!d.peephole || g[k].w_ph) && (d.P == 0 || g[k].w_hr),
              "g: a required gradient pointer is NULL");
      dg[k] = {g[k].w_ih, g[k].w_hh, g[k].b_ih, g[k].b_hh, g[k].w_ph, g[k].w_hr};
    }
    layer_backward<T>(d, w, x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, dg.data(),
                      config(w.isa(), num_threads));
  });
}

}  // namespace

extern "C" {

const char* fastlstm_version(void) { return FASTLSTM_VERSION; }
const char* fastlstm_last_error(void) { return last_error.c_str(); }
int fastlstm_best_isa(void) { return static_cast<int>(best_isa()); }

int fastlstm_isa_supported(int isa) {
  return isa >= FASTLSTM_ISA_SCALAR && isa <= FASTLSTM_ISA_AVX512 &&
         isa_supported(static_cast<Isa>(isa));
}

fastlstm_status fastlstm_workspace_size(const fastlstm_dims* dims, const int64_t* lengths,
                                        int isa, int element_bytes, int64_t* out) {
  return guarded([&] {
    require(out != nullptr, "out: must not be NULL");
    *out = layer_workspace_size(to_dims(dims), lengths, to_isa(isa), element_bytes);
  });
}

fastlstm_status fastlstm_pack_f32(const fastlstm_dims* dims, const fastlstm_weights_f32* w,
                                  int isa, int with_backward, int num_threads,
                                  fastlstm_packed** out) {
  return pack<float>(dims, w, isa, with_backward, num_threads, out);
}

fastlstm_status fastlstm_pack_f64(const fastlstm_dims* dims, const fastlstm_weights_f64* w,
                                  int isa, int with_backward, int num_threads,
                                  fastlstm_packed** out) {
  return pack<double>(dims, w, isa, with_backward, num_threads, out);
}

void fastlstm_packed_free(fastlstm_packed* p) { delete p; }

fastlstm_status fastlstm_forward_f32(const fastlstm_dims* dims, const fastlstm_packed* p,
                                     const float* x, const int64_t* lengths, const float* h0,
                                     const float* c0, float* y, float* hn, float* cn, float* ws,
                                     int num_threads) {
  return forward<float>(dims, p, x, lengths, h0, c0, y, hn, cn, ws, num_threads);
}

fastlstm_status fastlstm_forward_f64(const fastlstm_dims* dims, const fastlstm_packed* p,
                                     const double* x, const int64_t* lengths, const double* h0,
                                     const double* c0, double* y, double* hn, double* cn,
                                     double* ws, int num_threads) {
  return forward<double>(dims, p, x, lengths, h0, c0, y, hn, cn, ws, num_threads);
}

fastlstm_status fastlstm_backward_f32(const fastlstm_dims* dims, const fastlstm_packed* p,
                                      const float* x, const int64_t* lengths, const float* c0,
                                      const float* ws, const float* dy, const float* dhn,
                                      const float* dcn, float* dx, float* dh0, float* dc0,
                                      const fastlstm_grads_f32* g, int num_threads) {
  return backward<float>(dims, p, x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, g,
                         num_threads);
}

fastlstm_status fastlstm_backward_f64(const fastlstm_dims* dims, const fastlstm_packed* p,
                                      const double* x, const int64_t* lengths,
                                      const double* c0, const double* ws, const double* dy,
                                      const double* dhn, const double* dcn, double* dx,
                                      double* dh0, double* dc0, const fastlstm_grads_f64* g,
                                      int num_threads) {
  return backward<double>(dims, p, x, lengths, c0, ws, dy, dhn, dcn, dx, dh0, dc0, g,
                          num_threads);
}

}  // extern "C"
