// Helpers shared by the binding's sources (module.cpp, kernel_cells.cpp): the
// ISA names, and the checks of the internal `_kernel_*` entry points, which
// hand NumPy arrays to one kernel of a table (csrc/cpu/kernels.h) after
// checking that each holds every element the kernel reads or writes.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "core/checked.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace pyentry {

namespace py = pybind11;

inline Isa parse_isa(const std::string& s) {
  if (s == "scalar") return Isa::scalar;
  if (s == "avx2") return Isa::avx2;
  if (s == "avx512") return Isa::avx512;
  throw py::value_error("isa: expected 'scalar', 'avx2' or 'avx512', got '" + s + "'");
}

// The data of `o` after checking that it holds at least `need` elements of E.
template <class E>
E* kernel_array(const py::object& o, const char* name, int64_t need, bool writable) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(name) + ": expected a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().equal(py::dtype::of<E>()))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<E>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style) || !a.attr("flags").attr("aligned").cast<bool>())
    throw py::value_error(std::string(name) + ": expected a C-contiguous, aligned array");
  if (a.size() < need)
    throw py::value_error(std::string(name) + ": expected at least " + std::to_string(need) +
                          " elements, got " + std::to_string(a.size()));
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return static_cast<E*>(const_cast<void*>(a.data()));
}

// Elements spanned by `rows` rows of `width` elements each, `ld` apart.
inline int64_t kernel_span(int64_t rows, int64_t ld, int64_t width, const char* name) {
  using detail::checked_add;
  using detail::checked_mul;
  if (ld < width)
    throw py::value_error(std::string(name) + ": leading dimension " + std::to_string(ld) +
                          " < row width " + std::to_string(width));
  return rows <= 0 || width <= 0 ? 0 : checked_add(checked_mul(rows - 1, ld, name), width, name);
}

inline void kernel_check(bool ok, const std::string& what) {
  if (!ok) throw py::value_error(what);
}

// kernel_cells.cpp: the GRU's step kernels and the layer-norm LSTM's row kernels.
void def_kernel_cell_entries(py::module_& m);

}  // namespace pyentry
}  // namespace fastlstm
