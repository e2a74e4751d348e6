// The CUDA backend's entries (fastlstm/cuda.h): device arrays arrive as their
// addresses (Python ints, 0 = none) and the stream as its handle. Python
// (fastlstm/cuda.py, fastlstm/torch/_cuda.py) checks shapes, dtypes, devices
// and lengths before the call; the core checks the dims and that every
// pointer is device memory on x's device.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/dir_params.h"
#include "fastlstm/cell_spec.h"
#include "fastlstm/cuda.h"
#include "python/cuda_entries.h"

namespace py = pybind11;

namespace fastlstm {
namespace pyentry {
namespace {

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// Per direction, the cell spec's parameters in its order, as addresses (0
// where the layer has no such parameter) -> DirWeights / DirGrads.
template <class T, class Ptrs>
std::vector<Ptrs> dir_ptrs(const std::vector<std::vector<uintptr_t>>& dirs, const LayerDims& d,
                           const char* what) {
  const CellSpec& spec = cell_spec(d.cell);
  if (static_cast<int64_t>(dirs.size()) != d.D)
    throw py::value_error(std::string(what) + ": expected one entry per direction");
  std::vector<Ptrs> out(d.D);
  for (int64_t k = 0; k < d.D; ++k) {
    if (static_cast<int>(dirs[k].size()) != spec.n_params)
      throw py::value_error(std::string(what) + ": expected " + std::to_string(spec.n_params) +
                            " addresses per direction");
    for (int j = 0; j < spec.n_params; ++j) {
      const auto field = detail::param_field<Ptrs>(spec.params[j]);
      if (field == nullptr)
        throw py::value_error(std::string(what) + ": no CUDA kernel for " + spec.params[j].name);
      out[k].*field = ptr<T>(dirs[k][j]);
    }
  }
  return out;
}

using Dirs = std::vector<std::vector<uintptr_t>>;

template <class T>
void forward(const LayerDims& d, const Dirs& weights, uintptr_t x, uintptr_t lengths,
             uintptr_t h0, uintptr_t c0, uintptr_t y, uintptr_t hn, uintptr_t cn, uintptr_t ws,
             uintptr_t scratch, uintptr_t stream, uintptr_t zoneout_keep) {
  const auto w = dir_ptrs<T, DirWeights<T>>(weights, d, "weights");
  py::gil_scoped_release nogil;
  cuda_layer_forward<T>(d, w.data(), ptr<const T>(x), ptr<const int64_t>(lengths),
                        ptr<const T>(h0), ptr<const T>(c0), ptr<T>(y), ptr<T>(hn), ptr<T>(cn),
                        ptr<T>(ws), ptr<T>(scratch), reinterpret_cast<void*>(stream),
                        ptr<const T>(zoneout_keep));
}

template <class T>
void backward(const LayerDims& d, const Dirs& weights, const Dirs& grads, uintptr_t x,
              uintptr_t lengths, uintptr_t ws, uintptr_t dy, uintptr_t dhn, uintptr_t dcn,
              uintptr_t dx, uintptr_t dh0, uintptr_t dc0, uintptr_t scratch, uintptr_t stream,
              uintptr_t zoneout_keep) {
  const auto w = dir_ptrs<T, DirWeights<T>>(weights, d, "weights");
  const auto g = dir_ptrs<T, DirGrads<T>>(grads, d, "grads");
  py::gil_scoped_release nogil;
  cuda_layer_backward<T>(d, w.data(), ptr<const T>(x), ptr<const int64_t>(lengths),
                         ptr<const T>(ws), ptr<const T>(dy), ptr<const T>(dhn),
                         ptr<const T>(dcn), ptr<T>(dx), ptr<T>(dh0), ptr<T>(dc0), g.data(),
                         ptr<T>(scratch), reinterpret_cast<void*>(stream),
                         ptr<const T>(zoneout_keep));
}

template <class T>
void def_typed(py::module_& m, const std::string& s) {
  m.def(("cuda_layer_forward_" + s).c_str(), &forward<T>, py::arg("dims"), py::arg("weights"),
        py::arg("x"), py::arg("lengths"), py::arg("h0"), py::arg("c0"), py::arg("y"),
        py::arg("h_n"), py::arg("c_n"), py::arg("workspace"), py::arg("scratch"),
        py::arg("stream"), py::arg("zoneout_keep"));
  m.def(("cuda_layer_backward_" + s).c_str(), &backward<T>, py::arg("dims"),
        py::arg("weights"), py::arg("grads"), py::arg("x"), py::arg("lengths"),
        py::arg("workspace"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"),
        py::arg("dh0"), py::arg("dc0"), py::arg("scratch"), py::arg("stream"),
        py::arg("zoneout_keep"));
}

}  // namespace

void def_cuda_entries(py::module_& m) {
  m.def("cuda_built", &cuda_built);
  m.def("cuda_runtime_version", &cuda_runtime_version);
  m.def("cuda_device_count", [] {
    py::gil_scoped_release nogil;
    return cuda_device_count();
  });
  m.def("cuda_describe", [] {
    py::gil_scoped_release nogil;
    return cuda_describe();
  });
  m.def("cuda_load_cublas", [](const std::string& path) {
    py::gil_scoped_release nogil;
    return cuda_load_cublas(path);
  }, py::arg("path"));
  m.def("cuda_workspace_size", &cuda_workspace_size, py::arg("dims"));
  m.def("cuda_forward_scratch_size", &cuda_forward_scratch_size, py::arg("dims"));
  m.def("cuda_backward_scratch_size", &cuda_backward_scratch_size, py::arg("dims"));
  def_typed<float>(m, "f32");
  def_typed<double>(m, "f64");
}

}  // namespace pyentry
}  // namespace fastlstm
