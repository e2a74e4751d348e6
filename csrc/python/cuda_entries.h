// The CUDA backend's Python entries (cuda_entries.cpp), in every build: without
// FASTLSTM_CUDA they report that the backend is not built.
#pragma once

#include <pybind11/pybind11.h>

namespace fastlstm {
namespace pyentry {

void def_cuda_entries(pybind11::module_& m);

}  // namespace pyentry
}  // namespace fastlstm
