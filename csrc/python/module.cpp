// The one Python module: unpack arguments, check that every buffer has the
// dtype, layout and size the dims promise, release the GIL, call the core.
// Policy (defaults, layers, dropout, layouts) lives in python/fastlstm.
#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "core/checked.h"
#include "core/contention.h"
#include "core/dir_params.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "cpu/packed.h"
#include "fastlstm/cell_spec.h"
#include "fastlstm/cuda.h"
#include "fastlstm/rnn.h"
#include "python/c_api_table.h"
#include "python/cuda_entries.h"
#include "python/kernel_entries.h"
#if defined(FASTLSTM_HAVE_XLA_FFI)
#include "jax/ffi.h"
#endif

namespace py = pybind11;
using namespace fastlstm;

namespace {

using pyentry::kernel_array;
using pyentry::kernel_check;
using pyentry::kernel_span;
using pyentry::parse_isa;

Cell parse_cell(const std::string& s) {
  for (const CellSpec& c : kCellSpecs)
    if (s == c.name) return c.cell;
  throw py::value_error("cell: expected 'lstm', 'gru' or 'lnlstm', got '" + s + "'");
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
  if (reinterpret_cast<uintptr_t>(a.data()) % alignof(T) != 0)
    throw py::value_error(std::string(name) + ": expected an aligned array (copy it: " +
                          "np.require(a, requirements='CA'))");
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
T* optional_buffer(const py::object& o, const char* name, int64_t size, bool writable) {
  return o.is_none() ? nullptr : buffer<T>(o, name, size, writable);
}

// The c state's buffers: required for cells with c, None for the others.
template <class T>
T* c_buffer(const py::object& o, const char* name, const LayerDims& d, bool writable) {
  if (cell_spec(d.cell).states == 2) return buffer<T>(o, name, d.D * d.B * d.H, writable);
  if (!o.is_none())
    throw py::value_error(std::string(name) + ": the " + cell_spec(d.cell).name +
                          " cell has no c state, expected None");
  return nullptr;
}

struct Args {
  LayerDims d;
  ExecConfig cfg;
  const int64_t* lengths = nullptr;
};

Args unpack(const LayerDims& dims, const py::object& lengths, int num_threads,
            const std::string& isa) {
  Args a;
  a.d = dims;
  a.cfg.num_threads = num_threads;
  a.cfg.isa = parse_isa(isa);
  if (a.d.B >= 1) a.lengths = optional_buffer<int64_t>(lengths, "lengths", a.d.B, false);
  check_layer(a.d, a.lengths);  // sizes are valid and their products do not overflow
  return a;
}

// Weights of each direction: one entry per parameter of the layer's cell
// spec, in its order; None where the layer has no such parameter.
template <class T, class Ptrs>
std::vector<Ptrs> params(const py::sequence& seq, const LayerDims& d, bool writable,
                         const char* what) {
  using namespace detail;
  const CellSpec& spec = cell_spec(d.cell);
  if (static_cast<int64_t>(seq.size()) != d.D)
    throw py::value_error(std::string(what) + ": expected one entry per direction");
  std::vector<Ptrs> out(d.D);
  for (int64_t k = 0; k < d.D; ++k) {
    py::tuple t = seq[k].cast<py::tuple>();
    if (static_cast<int>(t.size()) != spec.n_params)
      throw py::value_error(std::string(what) + ": expected " + std::to_string(spec.n_params) +
                            " entries per direction");
    for (int j = 0; j < spec.n_params; ++j) {
      const char* name = spec.params[j].name;
      const int64_t n = dir_param_size(j, d);
      const auto field = param_field<Ptrs>(spec.params[j]);
      if (field == nullptr) throw py::value_error(std::string(what) + ": no kernel for " + name);
      // biases are optional (bias=False passes None); the others exist exactly when present
      out[k].*field = spec.params[j].when == When::bias
                          ? optional_buffer<T>(t[j], name, n, writable)
                      : dir_param_present(j, d, true) ? buffer<T>(t[j], name, n, writable)
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
    d["cell_clip"] = c.cell_clip;
    d["norm_eps"] = c.norm_eps;
    d["params"] = ps;
    out[c.name] = d;
  }
  return out;
}

// The weights of one layer packed for one kernel path (see PackedLayer).
template <class T>
std::unique_ptr<PackedLayer<T>> pack(const LayerDims& shape, py::sequence weights,
                                     const std::string& isa, bool with_backward,
                                     int num_threads, bool bf16) {
  LayerDims d = shape;  // T and B are not the packing's: any valid value
  d.T = d.B = 1;
  check_layer(d, nullptr);
  const Isa i = parse_isa(isa);
  const auto w = params<T, DirWeights<T>>(weights, d, false, "weights");
  py::gil_scoped_release nogil;
  return std::unique_ptr<PackedLayer<T>>(
      new PackedLayer<T>(d, w.data(), i, with_backward, num_threads,
                         bf16 ? WeightFormat::bfloat16 : WeightFormat::native));
}

template <class T>
void forward(const LayerDims& dims, const PackedLayer<T>& w, py::object x, py::object lengths,
             py::object h0, py::object c0, py::object y, py::object hn, py::object cn,
             py::object ws, int num_threads, const std::string& isa, py::object zoneout_keep) {
  const Args a = unpack(dims, lengths, num_threads, isa);
  const LayerDims& d = a.d;
  const int64_t Ho = d.hout();
  const T* px = buffer<T>(x, "x", d.T * d.B * d.I, false);
  const T* ph0 = buffer<T>(h0, "h0", d.D * d.B * Ho, false);
  const T* pc0 = c_buffer<T>(c0, "c0", d, false);
  T* py_ = buffer<T>(y, "y", d.T * d.B * d.D * Ho, true);
  T* phn = buffer<T>(hn, "h_n", d.D * d.B * Ho, true);
  T* pcn = c_buffer<T>(cn, "c_n", d, true);
  T* pws = optional_buffer<T>(
      ws, "workspace", layer_workspace_size(d, a.lengths, a.cfg.isa, sizeof(T)), true);
  const T* pzk = optional_buffer<T>(zoneout_keep, "zoneout_keep", d.T * d.B * d.D * Ho, false);
  py::gil_scoped_release nogil;
  layer_forward<T>(d, w, px, a.lengths, ph0, pc0, py_, phn, pcn, pws, a.cfg, pzk);
}

template <class T>
void backward(const LayerDims& dims, const PackedLayer<T>& w, py::sequence grads, py::object x,
              py::object lengths, py::object c0, py::object ws, py::object dy, py::object dhn,
              py::object dcn, py::object dx, py::object dh0, py::object dc0, int num_threads,
              const std::string& isa, py::object zoneout_keep, py::object scratch) {
  const Args a = unpack(dims, lengths, num_threads, isa);
  const LayerDims& d = a.d;
  const int64_t Ho = d.hout();
  const auto g = params<T, DirGrads<T>>(grads, d, true, "grads");
  const T* px = buffer<T>(x, "x", d.T * d.B * d.I, false);
  const T* pc0 = c_buffer<T>(c0, "c0", d, false);
  const T* pws =
      buffer<T>(ws, "workspace", layer_workspace_size(d, a.lengths, a.cfg.isa, sizeof(T)), false);
  const T* pdy = buffer<T>(dy, "dy", d.T * d.B * d.D * Ho, false);
  const T* pdhn = buffer<T>(dhn, "dh_n", d.D * d.B * Ho, false);
  const T* pdcn = c_buffer<T>(dcn, "dc_n", d, false);
  T* pdx = buffer<T>(dx, "dx", d.T * d.B * d.I, true);
  T* pdh0 = buffer<T>(dh0, "dh0", d.D * d.B * Ho, true);
  T* pdc0 = c_buffer<T>(dc0, "dc0", d, true);
  const T* pzk = optional_buffer<T>(zoneout_keep, "zoneout_keep", d.T * d.B * d.D * Ho, false);
  T* pscr = optional_buffer<T>(
      scratch, "scratch", layer_backward_scratch_size(d, a.lengths, a.cfg.isa, sizeof(T)), true);
  py::gil_scoped_release nogil;
  layer_backward<T>(d, w, px, a.lengths, pc0, pws, pdy, pdhn, pdcn, pdx, pdh0, pdc0, g.data(),
                    a.cfg, pzk, pscr);
}

// One inference step of a cell (one layer, one direction, no projection):
// x [B,I], h [B,H] (and the LSTM's c [B,H]; None for the GRU) -> h1 (, c1)
// [B,H]. The lean entry for streaming: B follows from x's size.
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
  d.cell = p.cell;
  ExecConfig cfg;
  cfg.num_threads = num_threads;
  cfg.isa = parse_isa(isa);
  const T* px = buffer<T>(x, "x", d.B * d.I, false);
  const T* ph = buffer<T>(h, "h", d.B * d.H, false);
  const T* pc = c_buffer<T>(c, "c", d, false);
  T* ph1 = buffer<T>(h1, "h_out", d.B * d.H, true);
  T* pc1 = c_buffer<T>(c1, "c_out", d, true);
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

// ---- internal: the kernel tables, one kernel call at a time -----------------
// For tests of the kernels on every ISA path (tests/test_kernels.py; the
// GRU's and the layer-norm LSTM's: kernel_cells.cpp, tests/test_kernels_cells.py);
// not an API. Every array is a C-contiguous, aligned NumPy array of the kernel's
// element type, already in the kernel's layout (cpu/kernels.h), of at least
// the elements the kernel reads or writes given the sizes and strides; each
// size is checked before the call, so no call reads or writes out of bounds.
// Outputs are written into the given arrays. W, NR = 4W, MR, MR16 and the
// bfloat16 order come from _kernel_geometry(isa, dtype).

// kernel_array, kernel_span, kernel_check: kernel_entries.h.

py::dict kernel_geometry(const std::string& isa, const std::string& dtype) {
  py::dict g;
  auto fill = [&](const auto& k) {
    g["W"] = k.W;
    g["NR"] = k.NR;
    g["MR"] = k.MR;
    g["MR16"] = k.MR16;  // 0 where there are no bfloat16 kernels (float64)
    py::list order;      // float index at position s of a group of 2W bfloat16 weights
    if (k.bf16_order)
      for (int s = 0; s < 2 * k.W; ++s) order.append(k.bf16_order(s));
    g["bf16_order"] = order;
  };
  if (dtype == "float32")
    fill(detail::kernels_for<float>(parse_isa(isa)));
  else if (dtype == "float64")
    fill(detail::kernels_for<double>(parse_isa(isa)));
  else
    throw py::value_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
  return g;
}

// GemmKernels::tile / tile_bf16 (WT = uint16_t):
//   c[m*ldc + j] = (acc ? c[m*ldc + j] : 0) + sum_k a[m*rsa + k*csa] * bp[k*NR + j]
//   m < mr (1..MR, or MR16 for bfloat16), j < nr (1..NR), k < kc;
//   a: any strides rsa, csa >= 0 (row-major [mr,lda]: rsa=lda, csa=1; packed
//   A tile [kc][mr]: rsa=1, csa=mr); bp [kc,NR] one packed panel (bfloat16:
//   uint16 [kc,NR], each group of 2W in bf16_order); c [mr,ldc], ldc >= nr.
template <class T, class WT>
void kernel_tile(const std::string& isa, int64_t kc, py::object a, int64_t rsa, int64_t csa,
                 py::object bp, py::object c, int64_t ldc, int64_t mr, int64_t nr, bool acc,
                 bool split_k) {
  using detail::checked_add;
  using detail::checked_mul;
  constexpr bool bf16 = std::is_same_v<WT, uint16_t>;
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const int64_t MR = bf16 ? k.MR16 : k.MR;
  kernel_check(kc >= 0, "kc: expected >= 0");
  kernel_check(mr >= 1 && mr <= MR, "mr: expected 1.." + std::to_string(MR));
  kernel_check(nr >= 1 && nr <= k.NR, "nr: expected 1.." + std::to_string(k.NR));
  kernel_check(rsa >= 0 && csa >= 0, "rsa, csa: expected >= 0");
  // a(m,k) for m < mr, k < kc: up to a[(mr-1)*rsa + (kc-1)*csa]
  const int64_t na = kc == 0 ? 0
                             : checked_add(checked_add(checked_mul(mr - 1, rsa, "a"),
                                                       checked_mul(kc - 1, csa, "a"), "a"),
                                           1, "a");
  const T* pa = kernel_array<T>(a, "a", na, false);
  const WT* pb = kernel_array<WT>(bp, "bp", checked_mul(kc, k.NR, "bp"), false);
  T* pc = kernel_array<T>(c, "c", kernel_span(mr, ldc, nr, "c"), true);
  const auto fn = [&] {
    if constexpr (bf16)
      return k.tile_bf16;
    else
      return k.tile;
  }();
  py::gil_scoped_release nogil;
  fn(kc, pa, rsa, csa, pb, pc, ldc, int(mr), int(nr), acc, split_k);
}

// GemmKernels::widen_bf16: dst [rows,NR] float32 = src [rows,NR] uint16 (bf16_order).
void kernel_widen_bf16(const std::string& isa, int64_t rows, py::object src, py::object dst) {
  using detail::checked_mul;
  const auto& k = detail::kernels_for<float>(parse_isa(isa));
  kernel_check(rows >= 0, "rows: expected >= 0");
  const int64_t n = checked_mul(rows, k.NR, "rows");
  const uint16_t* ps = kernel_array<uint16_t>(src, "src", n, false);
  float* pd = kernel_array<float>(dst, "dst", n, true);
  py::gil_scoped_release nogil;
  k.widen_bf16(rows, ps, pd);
}

// StepKernels::fwd_block[peephole][training][0] (fwd_block_bf16[peephole][0]
// with WT = uint16_t: inference only), one unit block (W units), rows j < n:
//   h [n,ldh] h_{t-1} (K columns read)      w [K,NR] packed W_hh panel (uint16, bf16_order)
//   gx [n,ldgx] pre-activations x W_ih^T + b, interleaved [gate i,f,g,o][W] (NR
//     columns; scratch, may hold running sums on return)
//   ph [3,W] peepholes i,f,o (iff peephole)   c [n,ldc] c_{t-1} in, c_t out (W columns)
//   out [n,ldo] o*tanh(c_t) (W columns)
//   gsave [n,ldgs] activated gates, interleaved (NR), csave [n,ldcs] c_t (W):
//     required with training, optional (must stay untouched) without.
template <class T, class WT>
void kernel_fwd_block(const std::string& isa, bool peephole, bool training, int64_t n,
                      int64_t K, py::object h, int64_t ldh, py::object w, py::object gx,
                      int64_t ldgx, py::object ph, py::object c, int64_t ldc, py::object out,
                      int64_t ldo, py::object gsave, int64_t ldgs, py::object csave,
                      int64_t ldcs, bool split_k) {
  using detail::checked_mul;
  constexpr bool bf16 = std::is_same_v<WT, uint16_t>;
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const int64_t W = k.W, NR = k.NR;
  kernel_check(n >= 0, "n: expected >= 0");
  kernel_check(K >= 0, "K: expected >= 0");
  kernel_check(!(bf16 && training), "training: the bfloat16 step is inference only");
  kernel_check(peephole != ph.is_none(), "ph: expected an array iff peephole");
  kernel_check(!training || (!gsave.is_none() && !csave.is_none()),
               "gsave, csave: required with training");
  detail::FwdBlockArgs<T> p;
  p.n = n;
  p.K = K;
  p.h = kernel_array<T>(h, "h", kernel_span(n, ldh, K, "h"), false);
  p.ldh = ldh;
  const WT* pw = kernel_array<WT>(w, "w", checked_mul(K, NR, "w"), false);
  if constexpr (bf16)
    p.w16 = pw;
  else
    p.w = pw;
  p.gx = kernel_array<T>(gx, "gx", kernel_span(n, ldgx, NR, "gx"), true);
  p.ldgx = ldgx;
  p.ph = peephole ? kernel_array<T>(ph, "ph", 3 * W, false) : nullptr;
  p.c = kernel_array<T>(c, "c", kernel_span(n, ldc, W, "c"), true);
  p.ldc = ldc;
  p.out = kernel_array<T>(out, "out", kernel_span(n, ldo, W, "out"), true);
  p.ldo = ldo;
  if (!gsave.is_none()) {
    p.gsave = kernel_array<T>(gsave, "gsave", kernel_span(n, ldgs, NR, "gsave"), true);
    p.ldgs = ldgs;
  }
  if (!csave.is_none()) {
    p.csave = kernel_array<T>(csave, "csave", kernel_span(n, ldcs, W, "csave"), true);
    p.ldcs = ldcs;
  }
  p.split_k = split_k;
  const auto fn =
      bf16 ? k.lstm.fwd_block_bf16[peephole][0] : k.lstm.fwd_block[peephole][training][0];
  py::gil_scoped_release nogil;
  fn(p);
}

// StepKernels::bwd_block[peephole][0], unit blocks b < nblk, rows j < n
// (block b is NR further in gates, W further in c, cp, dh, dc, dg; 3W in ph):
//   gates [n,ldg] saved activated gates, interleaved [blk][i,f,g,o][W] (nblk*NR)
//   c, cp [n,ldc], [n,ldcp] c_t, c_{t-1} (nblk*W)   dh [n,lddh] dL/d(o*tanh c_t)
//   dc [n,lddc] dL/dc_t in, dL/dc_{t-1} out        ph [nblk,3,W] (iff peephole)
//   dg [n,lddg] dL/d(pre-activations), gate-major: gate q of unit u at
//     q*gstride + u (gstride >= nblk*W, lddg >= 3*gstride + nblk*W)
template <class T>
void kernel_bwd_block(const std::string& isa, bool peephole, int64_t n, int64_t nblk,
                      py::object gates, int64_t ldg, py::object c, int64_t ldc, py::object cp,
                      int64_t ldcp, py::object dh, int64_t lddh, py::object dc, int64_t lddc,
                      py::object dg, int64_t lddg, int64_t gstride, py::object ph) {
  using detail::checked_add;
  using detail::checked_mul;
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const int64_t W = k.W, NR = k.NR;
  kernel_check(n >= 0, "n: expected >= 0");
  kernel_check(nblk >= 0, "nblk: expected >= 0");
  kernel_check(peephole != ph.is_none(), "ph: expected an array iff peephole");
  const int64_t bw = checked_mul(nblk, W, "nblk"), bnr = checked_mul(nblk, NR, "nblk");
  kernel_check(gstride >= bw, "gstride: expected >= nblk*W");
  detail::BwdBlockArgs<T> p;
  p.n = n;
  p.nblk = nblk;
  p.gates = kernel_array<T>(gates, "gates", kernel_span(n, ldg, bnr, "gates"), false);
  p.ldg = ldg;
  p.c = kernel_array<T>(c, "c", kernel_span(n, ldc, bw, "c"), false);
  p.ldc = ldc;
  p.cp = kernel_array<T>(cp, "cp", kernel_span(n, ldcp, bw, "cp"), false);
  p.ldcp = ldcp;
  p.dh = kernel_array<T>(dh, "dh", kernel_span(n, lddh, bw, "dh"), false);
  p.lddh = lddh;
  p.dc = kernel_array<T>(dc, "dc", kernel_span(n, lddc, bw, "dc"), true);
  p.lddc = lddc;
  const int64_t dg_row = checked_add(checked_mul(3, gstride, "gstride"), bw, "gstride");
  p.dg = kernel_array<T>(dg, "dg", kernel_span(n, lddg, dg_row, "dg"), true);
  p.lddg = lddg;
  p.gstride = gstride;
  p.ph = peephole ? kernel_array<T>(ph, "ph", checked_mul(3, bw, "ph"), false) : nullptr;
  const auto fn = k.lstm.bwd_block[peephole][0];
  py::gil_scoped_release nogil;
  fn(p);
}

// The blocked GEMM driver (cpu/gemm.h) on its own: c [M,N] = a [M,K] b [K,N]
// (row-major), b packed once into panels, then `repeats` timed calls on
// `num_threads` threads. Returns the median seconds of one call, for the
// GEMM's rate against a BLAS (bench/gemm_rate.py); c holds the product.
template <class T>
double kernel_gemm(const std::string& isa, py::object a, py::object b, py::object c, int64_t M,
                   int64_t N, int64_t K, int num_threads, int repeats) {
  using detail::checked_mul;
  kernel_check(M >= 1 && N >= 1 && K >= 1, "M, N, K: expected >= 1");
  kernel_check(num_threads >= 1 && repeats >= 1, "num_threads, repeats: expected >= 1");
  const auto& k = detail::kernels_for<T>(parse_isa(isa));
  const T* pa = kernel_array<T>(a, "a", checked_mul(M, K, "a"), false);
  const T* pb = kernel_array<T>(b, "b", checked_mul(K, N, "b"), false);
  T* pc = kernel_array<T>(c, "c", checked_mul(M, N, "c"), true);
  py::gil_scoped_release nogil;
  const detail::pvec<T> bp = detail::pack_plain(K, N, pb, N, 1, k.NR, num_threads);
  detail::Gemm<T> g;
  g.M = M; g.N = N; g.K = K;
  g.a = pa; g.rsa = K; g.csa = 1;
  g.bp = bp.data();
  g.c = pc; g.ldc = N;
  std::vector<double> secs;
  for (int r = 0; r < repeats; ++r) {
    const int64_t t0 = detail::now_ns();
    detail::gemm(k, g, num_threads);
    secs.push_back(1e-9 * static_cast<double>(detail::now_ns() - t0));
  }
  std::sort(secs.begin(), secs.end());
  return secs[secs.size() / 2];
}

template <class T>
void def_kernel_entries(py::module_& m, const char* suffix) {
  const std::string s(suffix);
  m.def(("_kernel_tile_" + s).c_str(), &kernel_tile<T, T>, py::arg("isa"), py::arg("kc"),
        py::arg("a"), py::arg("rsa"), py::arg("csa"), py::arg("bp"), py::arg("c"),
        py::arg("ldc"), py::arg("mr"), py::arg("nr"), py::arg("acc"), py::arg("split_k"));
  m.def(("_kernel_gemm_" + s).c_str(), &kernel_gemm<T>, py::arg("isa"), py::arg("a"),
        py::arg("b"), py::arg("c"), py::arg("M"), py::arg("N"), py::arg("K"),
        py::arg("num_threads"), py::arg("repeats"));
  m.def(("_kernel_fwd_block_" + s).c_str(), &kernel_fwd_block<T, T>, py::arg("isa"),
        py::arg("peephole"), py::arg("training"), py::arg("n"), py::arg("K"), py::arg("h"),
        py::arg("ldh"), py::arg("w"), py::arg("gx"), py::arg("ldgx"), py::arg("ph"),
        py::arg("c"), py::arg("ldc"), py::arg("out"), py::arg("ldo"), py::arg("gsave"),
        py::arg("ldgs"), py::arg("csave"), py::arg("ldcs"), py::arg("split_k"));
  m.def(("_kernel_bwd_block_" + s).c_str(), &kernel_bwd_block<T>, py::arg("isa"),
        py::arg("peephole"), py::arg("n"), py::arg("nblk"), py::arg("gates"), py::arg("ldg"),
        py::arg("c"), py::arg("ldc"), py::arg("cp"), py::arg("ldcp"), py::arg("dh"),
        py::arg("lddh"), py::arg("dc"), py::arg("lddc"), py::arg("dg"), py::arg("lddg"),
        py::arg("gstride"), py::arg("ph"));
}

void def_kernel_entries_bf16(py::module_& m) {
  m.def("_kernel_tile_bf16", &kernel_tile<float, uint16_t>, py::arg("isa"), py::arg("kc"),
        py::arg("a"), py::arg("rsa"), py::arg("csa"), py::arg("bp"), py::arg("c"),
        py::arg("ldc"), py::arg("mr"), py::arg("nr"), py::arg("acc"), py::arg("split_k"));
  m.def("_kernel_widen_bf16", &kernel_widen_bf16, py::arg("isa"), py::arg("rows"),
        py::arg("src"), py::arg("dst"));
  m.def("_kernel_fwd_block_bf16", &kernel_fwd_block<float, uint16_t>, py::arg("isa"),
        py::arg("peephole"), py::arg("training"), py::arg("n"), py::arg("K"), py::arg("h"),
        py::arg("ldh"), py::arg("w"), py::arg("gx"), py::arg("ldgx"), py::arg("ph"),
        py::arg("c"), py::arg("ldc"), py::arg("out"), py::arg("ldo"), py::arg("gsave"),
        py::arg("ldgs"), py::arg("csave"), py::arg("ldcs"), py::arg("split_k"));
}

py::dict build_info() {
  py::dict info;
  info["version"] = FASTLSTM_VERSION;
  info["compiler"] = FASTLSTM_COMPILER;
  info["build_type"] = FASTLSTM_BUILD_TYPE;
  info["native"] = bool(FASTLSTM_BUILD_NATIVE);
  info["openmp"] = int(_OPENMP);
  info["cuda"] = cuda_built();
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
  // One layer's configuration as the core takes it (fastlstm/rnn.h), one object
  // across the binding rather than a positional tuple.
  py::class_<LayerDims>(m, "LayerDims")
      .def(py::init([](int64_t T, int64_t B, int64_t I, int64_t H, int64_t P, int64_t D,
                       bool peephole, const std::string& cell, double zoneout,
                       double cell_clip) {
             LayerDims d;
             d.T = T; d.B = B; d.I = I; d.H = H; d.P = P; d.D = D; d.peephole = peephole;
             d.cell = parse_cell(cell);
             d.zoneout = zoneout;
             d.cell_clip = cell_clip;
             return d;
           }),
           py::kw_only(), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"),
           py::arg("P") = 0, py::arg("D") = 1, py::arg("peephole") = false,
           py::arg("cell") = "lstm", py::arg("zoneout") = 0.0, py::arg("cell_clip") = 0.0)
      .def_readonly("T", &LayerDims::T)
      .def_readonly("B", &LayerDims::B)
      .def_readonly("I", &LayerDims::I)
      .def_readonly("H", &LayerDims::H)
      .def_readonly("P", &LayerDims::P)
      .def_readonly("D", &LayerDims::D)
      .def_readonly("peephole", &LayerDims::peephole)
      .def_property_readonly("cell", [](const LayerDims& d) { return cell_spec(d.cell).name; })
      .def_readonly("zoneout", &LayerDims::zoneout)
      .def_readonly("cell_clip", &LayerDims::cell_clip)
      .def("__repr__", [](const LayerDims& d) {
        return "LayerDims(T=" + std::to_string(d.T) + ", B=" + std::to_string(d.B) +
               ", I=" + std::to_string(d.I) + ", H=" + std::to_string(d.H) +
               ", P=" + std::to_string(d.P) + ", D=" + std::to_string(d.D) +
               ", peephole=" + (d.peephole ? "True" : "False") + ", cell='" +
               cell_spec(d.cell).name + "', zoneout=" + std::to_string(d.zoneout) +
               ", cell_clip=" + std::to_string(d.cell_clip) + ")";
      });
  bind_packed<float>(m, "PackedLayerF32");
  bind_packed<double>(m, "PackedLayerF64");
  m.def("cell_forward_f32", &cell_forward<float>);
  m.def("cell_forward_f64", &cell_forward<double>);
  m.def("layer_forward_f32", &forward<float>, py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg("zoneout_keep") = py::none());
  m.def("layer_forward_f64", &forward<double>, py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg("zoneout_keep") = py::none());
  m.def("layer_backward_f32", &backward<float>, py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg(), py::arg(), py::arg(), py::arg("zoneout_keep") = py::none(),
        py::arg("scratch") = py::none());
  m.def("layer_backward_f64", &backward<double>, py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(), py::arg(),
        py::arg(), py::arg(), py::arg(), py::arg("zoneout_keep") = py::none(),
        py::arg("scratch") = py::none());
  m.def("activation_f32", &activation<float>);
  m.def("activation_f64", &activation<double>);
  // XLA FFI handlers for fastlstm.jax (empty when built without the XLA headers).
  m.def("jax_ffi_targets", [] {
    py::dict out;
#if defined(FASTLSTM_HAVE_XLA_FFI)
    out["fastlstm_rnn_layer_fwd"] = py::capsule(reinterpret_cast<void*>(&FastlstmRnnLayerFwd));
    out["fastlstm_rnn_layer_bwd"] = py::capsule(reinterpret_cast<void*>(&FastlstmRnnLayerBwd));
#endif
    return out;
  });
  // The C ABI for Cython and C extensions in this process (fastlstm_capi.h).
  m.attr("c_api") = py::capsule(static_cast<const void*>(c_api_table()), FASTLSTM_CAPI_CAPSULE);
  m.def("jax_ffi_api_version", []() -> py::object {
#if defined(FASTLSTM_HAVE_XLA_FFI)
    return py::make_tuple(fastlstm::jax_ffi::api_major(), fastlstm::jax_ffi::api_minor());
#else
    return py::none();
#endif
  });
  m.def("workspace_size",
        [](const LayerDims& dims, py::object lengths, const std::string& isa, int element_bytes) {
          const Args a = unpack(dims, lengths, 1, isa);
          return layer_workspace_size(a.d, a.lengths, a.cfg.isa, element_bytes);
        });
  m.def("backward_scratch_size",
        [](const LayerDims& dims, py::object lengths, const std::string& isa, int element_bytes) {
          const Args a = unpack(dims, lengths, 1, isa);
          return layer_backward_scratch_size(a.d, a.lengths, a.cfg.isa, element_bytes);
        });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("isa_supported", [](const std::string& s) { return isa_supported(parse_isa(s)); });
  m.def("num_procs", [] { return omp_get_num_procs(); });
  m.def("set_adaptive_threads", [](bool on) { detail::contention().set_enabled(on); });
  // A fresh policy object (not the process's) for the tests.
  py::class_<detail::Contention>(m, "_Contention")
      .def(py::init<>())
      .def("threads", &detail::Contention::threads)
      .def("report", &detail::Contention::report)
      .def("stalls", &detail::Contention::stalls);
  m.def("adaptive_threads_state", [] {
    const detail::Contention& c = detail::contention();
    py::dict d;
    d["enabled"] = c.enabled();
    d["stalls"] = c.stalls();
    d["backing_off"] = c.backing_off();
    return d;
  });
  m.def("build_info", &build_info);
  m.def("cell_specs", &cell_specs);
  m.def("cpu_features", &cpu_features);
  // Internal: one kernel of a table per call, for tests of every ISA path.
  m.def("_kernel_geometry", &kernel_geometry, py::arg("isa"), py::arg("dtype"));
  def_kernel_entries<float>(m, "f32");
  def_kernel_entries<double>(m, "f64");
  def_kernel_entries_bf16(m);
  pyentry::def_kernel_cell_entries(m);  // the GRU's and layer-norm LSTM's (kernel_cells.cpp)
  pyentry::def_cuda_entries(m);         // the CUDA backend (cuda_entries.cpp)
}
