// XLA FFI handlers (jax.ffi) for one recurrent layer of any cell with CPU
// kernels (attribute `cell`: 0 LSTM, 1 GRU, 2 layer-norm LSTM): forward and BPTT on the CPU,
// over the public C++ API. Built into the Python module when the XLA FFI
// headers are found (see CMakeLists.txt); fastlstm/jax.py registers them.
//
// Weights (remaining arguments) per direction: the cell spec's parameters
// that the layer has, in the spec's order (cell_spec.h; LSTM w_ih, w_hh,
// b_ih, b_hh, w_hr, w_ph). lengths is int32 [B], or [0] for none. The c
// state's buffers (c0, c_n, dc_n, dc0) are empty for cells without c.
// Zoneout and the cell clip (LayerDims::zoneout, cell_clip) are the float
// attributes `zoneout` and `cell_clip` (0 = none); zoneout_keep is the
// [T,B,D*Ho] mask of a training forward (the weight of h_{t-1}: 1 keeps it),
// of x's dtype, or [0] for none (then the weight is `zoneout`). The backward
// takes the same zoneout_keep as its forward.
#include "jax/ffi.h"

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dir_params.h"
#include "core/require.h"
#include "fastlstm/rnn.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace fastlstm {
namespace jax_ffi {

int api_major() { return XLA_FFI_API_MAJOR; }
int api_minor() { return XLA_FFI_API_MINOR; }

namespace {

struct Config {
  LayerDims d;
  bool bias = true;
  ExecConfig cfg;
  std::vector<int64_t> lengths;  // widened from int32, or empty (none)
  const int64_t* lens() const { return lengths.empty() ? nullptr : lengths.data(); }
};

using detail::require;

int64_t count(const ffi::AnyBuffer& b) { return static_cast<int64_t>(b.element_count()); }

// The checked configuration of a call; lengths is int32 [B] (jax's default
// integer) or [0] for none.
Config config(const ffi::AnyBuffer& x, const ffi::Buffer<ffi::S32>& lengths, int64_t cell,
              int64_t H, int64_t P, int64_t bidirectional, int64_t bias, int64_t peephole,
              double zoneout, double cell_clip, int64_t isa, int64_t num_threads) {
  const auto dims = x.dimensions();
  require(dims.size() == 3, "x: expected a 3-D [T,B,I] array");
  require(cell == static_cast<int64_t>(Cell::lstm) || cell == static_cast<int64_t>(Cell::gru) ||
              cell == static_cast<int64_t>(Cell::lnlstm),
          "cell: expected 0 (lstm), 1 (gru) or 2 (lnlstm)");
  Config c;
  c.d.cell = static_cast<Cell>(cell);
  c.d.T = dims[0]; c.d.B = dims[1]; c.d.I = dims[2];
  c.d.H = H; c.d.P = P; c.d.D = bidirectional ? 2 : 1; c.d.peephole = peephole != 0;
  require(zoneout >= 0.0 && zoneout <= 1.0, "zoneout: expected a probability in [0, 1]");
  require(cell_clip >= 0.0, "cell_clip: expected >= 0 (0 = none)");  // NaN fails both
  c.d.zoneout = zoneout;
  c.d.cell_clip = cell_clip;
  c.bias = bias != 0;
  require(isa >= 0 && isa <= 2 && isa_supported(static_cast<Isa>(isa)),
          "isa: not supported by this CPU or build");
  require(num_threads >= 1 && num_threads <= 4096, "num_threads: expected >= 1");
  c.cfg.isa = static_cast<Isa>(isa);
  c.cfg.num_threads = static_cast<int>(num_threads);
  check_layer(c.d, nullptr);
  if (lengths.element_count() > 0) {
    require(static_cast<int64_t>(lengths.element_count()) == c.d.B,
            "lengths: expected B values or none");
    c.lengths.assign(lengths.typed_data(), lengths.typed_data() + c.d.B);
    check_layer(c.d, c.lens());
  }
  return c;
}

// The spec parameters of the layer's cell one direction has (their indices j), in argument order.
std::vector<int> present_params(const Config& c) {
  std::vector<int> js;
  for (int j = 0; j < cell_spec(c.d.cell).n_params; ++j)
    if (detail::dir_param_present(j, c.d, c.bias)) js.push_back(j);
  return js;
}

// The expected element counts of one direction's weights, in argument order.
std::vector<int64_t> weight_counts(const Config& c) {
  std::vector<int64_t> n;
  for (int j : present_params(c)) n.push_back(detail::dir_param_size(j, c.d));
  return n;
}

// One direction's DirWeights or DirGrads from its pointers in argument order.
template <class Dir, class Ptr>
void fill_direction(const Config& c, const std::vector<Ptr>& p, Dir& out) {
  size_t i = 0;
  for (int j : present_params(c))
    out.*detail::param_field<Dir>(cell_spec(c.d.cell).params[j]) = p[i++];
}

template <class T>
std::vector<DirWeights<T>> weights(const Config& c, const ffi::RemainingArgs& args,
                                   ffi::DataType dtype) {
  const std::vector<int64_t> want = weight_counts(c);
  require(args.size() == want.size() * c.d.D,
          "weights: expected ", want.size() * c.d.D, " arrays, got ", args.size());
  std::vector<DirWeights<T>> w(static_cast<size_t>(c.d.D));
  for (int64_t k = 0; k < c.d.D; ++k) {
    std::vector<const T*> p;
    for (size_t j = 0; j < want.size(); ++j) {
      auto b = args.get<ffi::AnyBuffer>(k * want.size() + j);
      require(b.has_value(), "weights: expected arrays");
      require(b->element_type() == dtype, "weights: expected the dtype of x");
      require(count(*b) == want[j], "weights[", k * want.size() + j, "]: expected ", want[j],
              " elements, got ", count(*b));
      p.push_back(static_cast<const T*>(b->untyped_data()));
    }
    fill_direction(c, p, w[k]);
  }
  return w;
}

void check(const ffi::AnyBuffer& b, ffi::DataType dtype, int64_t n, const char* name) {
  require(b.element_type() == dtype, name, ": expected the dtype of x");
  require(count(b) == n, name, ": expected ", n, " elements");
}

// A c-state buffer: [D,B,H] for cells with c (its data), empty otherwise (null).
template <class T>
T* c_state(const Config& c, ffi::AnyBuffer b, ffi::DataType dtype, const char* name) {
  const bool has_c = cell_spec(c.d.cell).states == 2;
  check(b, dtype, has_c ? c.d.D * c.d.B * c.d.H : 0, name);
  return has_c ? static_cast<T*>(b.untyped_data()) : nullptr;
}

// The zoneout mask: [T,B,D*Ho] of x's dtype (its data), or empty (null).
template <class T>
const T* zoneout_keep(const Config& c, const ffi::AnyBuffer& b, ffi::DataType dtype) {
  if (count(b) == 0) return nullptr;
  check(b, dtype, c.d.T * c.d.B * c.d.D * c.d.hout(), "zoneout_keep");
  return static_cast<const T*>(b.untyped_data());
}

// Elements of the workspace the kernels use; ws must hold at least that many.
template <class T>
int64_t workspace_used(const Config& c, const ffi::AnyBuffer& ws, ffi::DataType dtype) {
  const int64_t need = layer_workspace_size(c.d, c.lens(), c.cfg.isa, sizeof(T));
  require(ws.element_type() == dtype && count(ws) >= need, "workspace: too small");
  return need;
}

template <class T>
void forward(const Config& c, ffi::AnyBuffer x, ffi::AnyBuffer h0, ffi::AnyBuffer c0,
             ffi::AnyBuffer keep, const ffi::RemainingArgs& wargs, ffi::AnyBuffer y,
             ffi::AnyBuffer hn, ffi::AnyBuffer cn, ffi::AnyBuffer ws, bool training) {
  const LayerDims& d = c.d;
  const ffi::DataType dt = x.element_type();
  const int64_t Ho = d.hout();
  check(h0, dt, d.D * d.B * Ho, "h0");
  const T* pc0 = c_state<T>(c, c0, dt, "c0");
  check(y, dt, d.T * d.B * d.D * Ho, "y");
  check(hn, dt, d.D * d.B * Ho, "h_n");
  T* pcn = c_state<T>(c, cn, dt, "c_n");
  const T* pkeep = zoneout_keep<T>(c, keep, dt);
  const auto w = weights<T>(c, wargs, dt);
  T* pws = nullptr;
  if (training) {
    const int64_t need = workspace_used<T>(c, ws, dt);
    pws = static_cast<T*>(ws.untyped_data());
    std::memset(pws + need, 0, sizeof(T) * (count(ws) - need));  // a defined tail
  }
  const PackedLayer<T> packed(d, w.data(), c.cfg.isa, false, c.cfg.num_threads);
  layer_forward<T>(d, packed, static_cast<const T*>(x.untyped_data()), c.lens(),
                   static_cast<const T*>(h0.untyped_data()), pc0,
                   static_cast<T*>(y.untyped_data()), static_cast<T*>(hn.untyped_data()), pcn,
                   pws, c.cfg, pkeep);
}

template <class T>
void backward(const Config& c, ffi::AnyBuffer x, ffi::AnyBuffer c0, ffi::AnyBuffer keep,
              ffi::AnyBuffer ws, ffi::AnyBuffer dy, ffi::AnyBuffer dhn, ffi::AnyBuffer dcn,
              const ffi::RemainingArgs& wargs, ffi::AnyBuffer dx, ffi::AnyBuffer dh0,
              ffi::AnyBuffer dc0, const ffi::RemainingRets& grets) {
  const LayerDims& d = c.d;
  const ffi::DataType dt = x.element_type();
  const int64_t Ho = d.hout();
  const T* pc0 = c_state<T>(c, c0, dt, "c0");
  check(dy, dt, d.T * d.B * d.D * Ho, "dy");
  check(dhn, dt, d.D * d.B * Ho, "dh_n");
  const T* pdcn = c_state<T>(c, dcn, dt, "dc_n");
  check(dx, dt, d.T * d.B * d.I, "dx");
  check(dh0, dt, d.D * d.B * Ho, "dh0");
  T* pdc0 = c_state<T>(c, dc0, dt, "dc0");
  const T* pkeep = zoneout_keep<T>(c, keep, dt);
  workspace_used<T>(c, ws, dt);
  const auto w = weights<T>(c, wargs, dt);
  const std::vector<int64_t> want = weight_counts(c);
  require(grets.size() == want.size() * d.D, "weight gradients: wrong count");
  std::vector<DirGrads<T>> g(static_cast<size_t>(d.D));
  for (int64_t k = 0; k < d.D; ++k) {
    std::vector<T*> p;
    for (size_t j = 0; j < want.size(); ++j) {
      auto r = grets.get<ffi::AnyBuffer>(k * want.size() + j);
      require(r.has_value(), "weight gradients: expected arrays");
      check(**r, dt, want[j], "weight gradient");
      T* q = static_cast<T*>((*r)->untyped_data());
      std::memset(q, 0, sizeof(T) * want[j]);  // the kernels accumulate
      p.push_back(q);
    }
    fill_direction(c, p, g[k]);
  }
  const PackedLayer<T> packed(d, w.data(), c.cfg.isa, true, c.cfg.num_threads);
  layer_backward<T>(d, packed, static_cast<const T*>(x.untyped_data()), c.lens(), pc0,
                    static_cast<const T*>(ws.untyped_data()),
                    static_cast<const T*>(dy.untyped_data()),
                    static_cast<const T*>(dhn.untyped_data()), pdcn,
                    static_cast<T*>(dx.untyped_data()), static_cast<T*>(dh0.untyped_data()), pdc0,
                    g.data(), c.cfg, pkeep);
}

// f(float{}) or f(double{}) for x's element type.
template <class F>
void by_dtype(const ffi::AnyBuffer& x, F&& f) {
  if (x.element_type() == ffi::DataType::F32)
    f(float{});
  else if (x.element_type() == ffi::DataType::F64)
    f(double{});
  else
    require(false, "x: expected float32 or float64");
}

template <class F>
ffi::Error guarded(F&& f) {
  try {
    f();
    return ffi::Error::Success();
  } catch (const std::invalid_argument& e) {
    return ffi::Error::InvalidArgument(std::string("fastlstm: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("fastlstm: ") + e.what());
  }
}

ffi::Error layer_fwd(ffi::AnyBuffer x, ffi::AnyBuffer h0, ffi::AnyBuffer c0,
                     ffi::Buffer<ffi::S32> lengths, ffi::AnyBuffer keep, ffi::RemainingArgs w,
                     ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> hn,
                     ffi::Result<ffi::AnyBuffer> cn, ffi::Result<ffi::AnyBuffer> ws,
                     int64_t cell, int64_t hidden_size, int64_t proj_size, int64_t bidirectional,
                     int64_t bias, int64_t peephole, double zoneout, double cell_clip,
                     int64_t training, int64_t isa, int64_t num_threads) {
  return guarded([&] {
    const Config c = config(x, lengths, cell, hidden_size, proj_size, bidirectional, bias,
                            peephole, zoneout, cell_clip, isa, num_threads);
    by_dtype(x, [&](auto t) {
      forward<decltype(t)>(c, x, h0, c0, keep, w, *y, *hn, *cn, *ws, training != 0);
    });
  });
}

ffi::Error layer_bwd(ffi::AnyBuffer x, ffi::AnyBuffer c0, ffi::Buffer<ffi::S32> lengths,
                     ffi::AnyBuffer keep, ffi::AnyBuffer ws, ffi::AnyBuffer dy, ffi::AnyBuffer dhn, ffi::AnyBuffer dcn,
                     ffi::RemainingArgs w, ffi::Result<ffi::AnyBuffer> dx,
                     ffi::Result<ffi::AnyBuffer> dh0, ffi::Result<ffi::AnyBuffer> dc0,
                     ffi::RemainingRets grads, int64_t cell, int64_t hidden_size,
                     int64_t proj_size, int64_t bidirectional, int64_t bias, int64_t peephole,
                     double zoneout, double cell_clip, int64_t isa, int64_t num_threads) {
  return guarded([&] {
    const Config c = config(x, lengths, cell, hidden_size, proj_size, bidirectional, bias,
                            peephole, zoneout, cell_clip, isa, num_threads);
    by_dtype(x, [&](auto t) {
      backward<decltype(t)>(c, x, c0, keep, ws, dy, dhn, dcn, w, *dx, *dh0, *dc0, grads);
    });
  });
}

}  // namespace
}  // namespace jax_ffi
}  // namespace fastlstm

XLA_FFI_DEFINE_HANDLER_SYMBOL(FastlstmRnnLayerFwd, fastlstm::jax_ffi::layer_fwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()          // x [T,B,I]
                                  .Arg<ffi::AnyBuffer>()          // h0 [D,B,Ho]
                                  .Arg<ffi::AnyBuffer>()          // c0 [D,B,H] or [0]
                                  .Arg<ffi::Buffer<ffi::S32>>()   // lengths [B] or [0]
                                  .Arg<ffi::AnyBuffer>()          // zoneout_keep [T,B,D*Ho] or [0]
                                  .RemainingArgs()                // weights
                                  .Ret<ffi::AnyBuffer>()          // y [T,B,D*Ho]
                                  .Ret<ffi::AnyBuffer>()          // h_n [D,B,Ho]
                                  .Ret<ffi::AnyBuffer>()          // c_n [D,B,H] or [0]
                                  .Ret<ffi::AnyBuffer>()          // workspace
                                  .Attr<int64_t>("cell")
                                  .Attr<int64_t>("hidden_size")
                                  .Attr<int64_t>("proj_size")
                                  .Attr<int64_t>("bidirectional")
                                  .Attr<int64_t>("bias")
                                  .Attr<int64_t>("peephole")
                                  .Attr<double>("zoneout")
                                  .Attr<double>("cell_clip")
                                  .Attr<int64_t>("training")
                                  .Attr<int64_t>("isa")
                                  .Attr<int64_t>("num_threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(FastlstmRnnLayerBwd, fastlstm::jax_ffi::layer_bwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()          // x [T,B,I]
                                  .Arg<ffi::AnyBuffer>()          // c0 [D,B,H] or [0]
                                  .Arg<ffi::Buffer<ffi::S32>>()   // lengths [B] or [0]
                                  .Arg<ffi::AnyBuffer>()          // zoneout_keep [T,B,D*Ho] or [0]
                                  .Arg<ffi::AnyBuffer>()          // workspace
                                  .Arg<ffi::AnyBuffer>()          // dy [T,B,D*Ho]
                                  .Arg<ffi::AnyBuffer>()          // dh_n [D,B,Ho]
                                  .Arg<ffi::AnyBuffer>()          // dc_n [D,B,H] or [0]
                                  .RemainingArgs()                // weights
                                  .Ret<ffi::AnyBuffer>()          // dx [T,B,I]
                                  .Ret<ffi::AnyBuffer>()          // dh0 [D,B,Ho]
                                  .Ret<ffi::AnyBuffer>()          // dc0 [D,B,H] or [0]
                                  .RemainingRets()                // weight gradients
                                  .Attr<int64_t>("cell")
                                  .Attr<int64_t>("hidden_size")
                                  .Attr<int64_t>("proj_size")
                                  .Attr<int64_t>("bidirectional")
                                  .Attr<int64_t>("bias")
                                  .Attr<int64_t>("peephole")
                                  .Attr<double>("zoneout")
                                  .Attr<double>("cell_clip")
                                  .Attr<int64_t>("isa")
                                  .Attr<int64_t>("num_threads"));
