// The one Python module: unpack arguments, check that every buffer has the
// dtype, layout and size the dims promise, release the GIL, call the core.
// Policy (defaults, layers, dropout, layouts) lives in python/fastlstm.
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/lstm_params.h"
#include "cpu/kernels.h"
#include "cpu/packed.h"
#include "fastlstm/cell_spec.h"
#include "fastlstm/lstm.h"
#if defined(FASTLSTM_HAVE_XLA_FFI)
#include "jax/ffi.h"
#endif

namespace py = pybind11;
using namespace fastlstm;

namespace {

Isa parse_isa(const std::string& s) {
  if (s == "scalar") return Isa::scalar;
  if (s == "avx2") return Isa::avx2;
  if (s == "avx512") return Isa::avx512;
  throw py::value_error("isa: expected 'scalar', 'avx2' or 'avx512', got '" + s + "'");
}

// A C-contiguous array of T with exactly `size` elements (writable if asked).
template <class T>
T* buffer(const py::object& o, const char* name, int64_t size, bool writable) {
  if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().equal(py::dtype::of<T>()))  // equal, not identical: unpickled dtypes differ
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (a.size() != size)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(size) +
                          " elements, got " + std::to_string(a.size()));
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
T* optional_buffer(const py::object& o, const char* name, int64_t size, bool writable) {
  return o.is_none() ? nullptr : buffer<T>(o, name, size, writable);
}

struct Args {
  LayerDims d;
  ExecConfig cfg;
  const int64_t* lengths = nullptr;
};

Args unpack(py::tuple dims, const py::object& lengths, int num_threads, const std::string& isa) {
  if (dims.size() != 7) throw py::value_error("dims: expected (T, B, I, H, P, D, peephole)");
  Args a;
  a.d.T = dims[0].cast<int64_t>();
  a.d.B = dims[1].cast<int64_t>();
  a.d.I = dims[2].cast<int64_t>();
  a.d.H = dims[3].cast<int64_t>();
  a.d.P = dims[4].cast<int64_t>();
  a.d.D = dims[5].cast<int64_t>();
  a.d.peephole = dims[6].cast<bool>();
  a.cfg.num_threads = num_threads;
  a.cfg.isa = parse_isa(isa);
  if (a.d.B >= 1) a.lengths = optional_buffer<int64_t>(lengths, "lengths", a.d.B, false);
  check_layer(a.d, a.lengths);  // sizes are valid and their products do not overflow
  return a;
}

// Weights of each direction: one entry per parameter of the LSTM's cell spec,
// in its order; None where the layer has no such parameter.
template <class T, class Ptrs>
std::vector<Ptrs> params(const py::sequence& seq, const LayerDims& d, bool writable,
                         const char* what) {
  using namespace detail;
  const CellSpec& spec = cell_spec(Cell::lstm);
  if (static_cast<int64_t>(seq.size()) != d.D)
    throw py::value_error(std::string(what) + ": expected one entry per direction");
  std::vector<Ptrs> out(d.D);
  for (int64_t k = 0; k < d.D; ++k) {
    py::tuple t = seq[k].cast<py::tuple>();
    if (static_cast<int>(t.size()) != kLstmParams)
      throw py::value_error(std::string(what) + ": expected " + std::to_string(kLstmParams) +
                            " entries per direction");
    const auto fields = lstm_fields<Ptrs>();
    for (int j = 0; j < kLstmParams; ++j) {
      const char* name = spec.params[j].name;
      const int64_t n = lstm_param_size(j, d);
      // biases are optional (bias=False passes None); the others exist exactly when present
      out[k].*fields[j] = spec.params[j].when == When::bias
                              ? optional_buffer<T>(t[j], name, n, writable)
                          : lstm_param_present(j, d, true) ? buffer<T>(t[j], name, n, writable)
                                                           : nullptr;
    }
  }
  return out;
}

py::object extent_name(Extent e) {
  static const char* names[] = {nullptr, "gh", "h", "ho", "i", "p", "three"};
  return e == Extent::none ? py::object(py::none()) : py::object(py::str(names[int(e)]));
}

// The cell specs as Python sees them (fastlstm/_spec.py).
py::dict cell_specs() {
  static const char* when[] = {"always", "bias", "proj", "peephole"};
  static const char* init[] = {"uniform", "ones", "zeros"};
  py::dict out;
  for (const CellSpec& c : kCellSpecs) {
    py::list ps;
    for (int k = 0; k < c.n_params; ++k) {
      const ParamSpec& p = c.params[k];
      py::dict d;
      d["name"] = p.name;
      d["rows"] = extent_name(p.rows);
      d["cols"] = extent_name(p.cols);
      d["when"] = when[int(p.when)];
      d["init"] = init[int(p.init)];
      d["trailing"] = p.trailing;
      ps.append(d);
    }
    py::dict d;
    d["gates"] = c.gates;
    d["gate_order"] = c.gate_order;
    d["states"] = c.states;
    d["proj"] = c.proj;
    d["peephole"] = c.peephole;
    d["params"] = ps;
    out[c.name] = d;
  }
  return out;
}

// The weights of one layer packed for one kernel path (see PackedLayer).
template <class T>
std::unique_ptr<PackedLayer<T>> pack(py::tuple shape, py::sequence weights,
                                     const std::string& isa, bool with_backward,
                                     int num_threads, bool bf16) {
  if (shape.size() != 5) throw py::value_error("shape: expected (I, H, P, D, peephole)");
  LayerDims d;
  d.T = d.B = 1;
  d.I = shape[0].cast<int64_t>();
  d.H = shape[1].cast<int64_t>();
  d.P = shape[2].cast<int64_t>();
  d.D = shape[3].cast<int64_t>();
  d.peephole = shape[4].cast<bool>();
  check_layer(d, nullptr);
  const Isa i = parse_isa(isa);
  const auto w = params<T, DirWeights<T>>(weights, d, false, "weights");
  py::gil_scoped_release nogil;
  return std::unique_ptr<PackedLayer<T>>(
      new PackedLayer<T>(d, w.data(), i, with_backward, num_threads,
                         bf16 ? WeightFormat::bfloat16 : WeightFormat::native));
}

template <class T>
void forward(py::tuple dims, const PackedLayer<T>& w, py::object x, py::object lengths,
             py::object h0, py::object c0, py::object y, py::object hn, py::object cn,
             py::object ws, int num_threads, const std::string& isa) {
  const Args a = unpack(dims, lengths, num_threads, isa);
  const LayerDims& d = a.d;
  const int64_t Ho = d.hout();
  const T* px = buffer<T>(x, "x", d.T * d.B * d.I, false);
  const T* ph0 = buffer<T>(h0, "h0", d.D * d.B * Ho, false);
  const T* pc0 = buffer<T>(c0, "c0", d.D * d.B * d.H, false);
  T* py_ = buffer<T>(y, "y", d.T * d.B * d.D * Ho, true);
  T* phn = buffer<T>(hn, "h_n", d.D * d.B * Ho, true);
  T* pcn = buffer<T>(cn, "c_n", d.D * d.B * d.H, true);
  T* pws = optional_buffer<T>(
      ws, "workspace", layer_workspace_size(d, a.lengths, a.cfg.isa, sizeof(T)), true);
  py::gil_scoped_release nogil;
  layer_forward<T>(d, w, px, a.lengths, ph0, pc0, py_, phn, pcn, pws, a.cfg);
}

template <class T>
void backward(py::tuple dims, const PackedLayer<T>& w, py::sequence grads, py::object x,
              py::object lengths, py::object c0, py::object ws, py::object dy, py::object dhn,
              py::object dcn, py::object dx, py::object dh0, py::object dc0, int num_threads,
              const std::string& isa) {
  const Args a = unpack(dims, lengths, num_threads, isa);
  const LayerDims& d = a.d;
  const int64_t Ho = d.hout();
  const auto g = params<T, DirGrads<T>>(grads, d, true, "grads");
  const T* px = buffer<T>(x, "x", d.T * d.B * d.I, false);
  const T* pc0 = buffer<T>(c0, "c0", d.D * d.B * d.H, false);
  const T* pws =
      buffer<T>(ws, "workspace", layer_workspace_size(d, a.lengths, a.cfg.isa, sizeof(T)), false);
  const T* pdy = buffer<T>(dy, "dy", d.T * d.B * d.D * Ho, false);
  const T* pdhn = buffer<T>(dhn, "dh_n", d.D * d.B * Ho, false);
  const T* pdcn = buffer<T>(dcn, "dc_n", d.D * d.B * d.H, false);
  T* pdx = buffer<T>(dx, "dx", d.T * d.B * d.I, true);
  T* pdh0 = buffer<T>(dh0, "dh0", d.D * d.B * Ho, true);
  T* pdc0 = buffer<T>(dc0, "dc0", d.D * d.B * d.H, true);
  py::gil_scoped_release nogil;
  layer_backward<T>(d, w, px, a.lengths, pc0, pws, pdy, pdhn, pdcn, pdx, pdh0, pdc0, g.data(),
                    a.cfg);
}

// One inference step of an LSTMCell (one layer, one direction, no
// projection): x [B,I], h, c [B,H] -> h1, c1 [B,H]. The lean entry for
// streaming: B follows from x's size.
template <class T>
void cell_forward(const PackedLayer<T>& w, py::object x, py::object h, py::object c,
                  py::object h1, py::object c1, int num_threads, const std::string& isa) {
  const auto& p = w.impl();
  if (p.D != 1 || p.P != 0) throw py::value_error("packed: expected a cell (D=1, P=0)");
  if (!py::isinstance<py::array>(x)) throw py::type_error("x: expected a numpy array");
  const int64_t n = py::reinterpret_borrow<py::array>(x).size();
  if (n < p.I || n % p.I != 0) throw py::value_error("x: expected [B,I] elements");
  LayerDims d;
  d.T = 1;
  d.B = n / p.I;
  d.I = p.I;
  d.H = p.H;
  d.peephole = p.peephole;
  ExecConfig cfg;
  cfg.num_threads = num_threads;
  cfg.isa = parse_isa(isa);
  const T* px = buffer<T>(x, "x", d.B * d.I, false);
  const T* ph = buffer<T>(h, "h", d.B * d.H, false);
  const T* pc = buffer<T>(c, "c", d.B * d.H, false);
  T* ph1 = buffer<T>(h1, "h_out", d.B * d.H, true);
  T* pc1 = buffer<T>(c1, "c_out", d.B * d.H, true);
  py::gil_scoped_release nogil;
  layer_forward<T>(d, w, px, nullptr, ph, pc, ph1, ph1, pc1, nullptr, cfg);
}

template <class T>
void bind_packed(py::module_& m, const char* name) {
  py::class_<PackedLayer<T>>(m, name)
      .def(py::init(&pack<T>), py::arg("shape"), py::arg("weights"), py::arg("isa"),
           py::arg("with_backward"), py::arg("num_threads"), py::arg("bf16") = false)
      .def_property_readonly("isa", [](const PackedLayer<T>& p) { return isa_name(p.isa()); })
      .def_property_readonly("with_backward", &PackedLayer<T>::with_backward)
      .def_property_readonly("bf16",
                             [](const PackedLayer<T>& p) {
                               return p.format() == WeightFormat::bfloat16;
                             })
      .def_property_readonly("nbytes", &PackedLayer<T>::bytes);
}

template <class T>
void activation(const std::string& kind, py::object x, py::object y, const std::string& isa) {
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  if (!py::isinstance<py::array>(x)) throw py::type_error("x: expected a numpy array");
  const int64_t n = py::reinterpret_borrow<py::array>(x).size();
  const T* px = buffer<T>(x, "x", n, false);
  T* py_ = buffer<T>(y, "out", n, true);
  if (kind != "sigmoid" && kind != "tanh") throw py::value_error("kind: expected 'sigmoid' or 'tanh'");
  auto fn = kind == "sigmoid" ? k.act.sigmoid : k.act.tanh;
  py::gil_scoped_release nogil;
  fn(n, px, py_);
}

py::dict build_info() {
  py::dict info;
  info["version"] = FASTLSTM_VERSION;
  info["compiler"] = FASTLSTM_COMPILER;
  info["build_type"] = FASTLSTM_BUILD_TYPE;
  info["native"] = bool(FASTLSTM_BUILD_NATIVE);
  info["openmp"] = int(_OPENMP);
  info["cuda"] = false;
  py::list isas;
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    try {
      detail::kernels_for<float>(i);
      isas.append(isa_name(i));
    } catch (const std::invalid_argument&) {
    }
  }
  info["isas_usable"] = isas;
  return info;
}

py::dict cpu_features() {
  py::dict f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f["sse4.2"] = bool(__builtin_cpu_supports("sse4.2"));
  f["avx"] = bool(__builtin_cpu_supports("avx"));
  f["avx2"] = bool(__builtin_cpu_supports("avx2"));
  f["fma"] = bool(__builtin_cpu_supports("fma"));
  f["avx512f"] = bool(__builtin_cpu_supports("avx512f"));
  f["avx512bw"] = bool(__builtin_cpu_supports("avx512bw"));
  f["avx512vl"] = bool(__builtin_cpu_supports("avx512vl"));
  f["avx512dq"] = bool(__builtin_cpu_supports("avx512dq"));
#endif
  return f;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastlstm C++ core (internal; use the fastlstm package)";
  bind_packed<float>(m, "PackedLayerF32");
  bind_packed<double>(m, "PackedLayerF64");
  m.def("cell_forward_f32", &cell_forward<float>);
  m.def("cell_forward_f64", &cell_forward<double>);
  m.def("layer_forward_f32", &forward<float>);
  m.def("layer_forward_f64", &forward<double>);
  m.def("layer_backward_f32", &backward<float>);
  m.def("layer_backward_f64", &backward<double>);
  m.def("activation_f32", &activation<float>);
  m.def("activation_f64", &activation<double>);
  // XLA FFI handlers for fastlstm.jax (empty when built without the XLA headers).
  m.def("jax_ffi_targets", [] {
    py::dict out;
#if defined(FASTLSTM_HAVE_XLA_FFI)
    out["fastlstm_lstm_layer_fwd"] = py::capsule(reinterpret_cast<void*>(&FastlstmLstmLayerFwd));
    out["fastlstm_lstm_layer_bwd"] = py::capsule(reinterpret_cast<void*>(&FastlstmLstmLayerBwd));
#endif
    return out;
  });
  m.def("workspace_size",
        [](py::tuple dims, py::object lengths, const std::string& isa, int element_bytes) {
          const Args a = unpack(dims, lengths, 1, isa);
          return layer_workspace_size(a.d, a.lengths, a.cfg.isa, element_bytes);
        });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("isa_supported", [](const std::string& s) { return isa_supported(parse_isa(s)); });
  m.def("num_procs", [] { return omp_get_num_procs(); });
  m.def("build_info", &build_info);
  m.def("cell_specs", &cell_specs);
  m.def("cpu_features", &cpu_features);
}
