// The CUDA backend's sizes, in every build; without FASTLSTM_CUDA the entry
// points say the backend is not built.
#include <stdexcept>

#include "cuda/check.h"
#include "cuda/geometry.h"
#include "fastlstm/cuda.h"

namespace fastlstm {
namespace cuda {

void check_cuda_layer(const LayerDims& d) {
  check_layer(d, nullptr);
  detail::require(d.cell == Cell::lstm || d.cell == Cell::gru, "cell: the ",
                  cell_spec(d.cell).name, " cell has no CUDA kernels (lstm and gru have)");
}

}  // namespace cuda

inline namespace v1 {

int64_t cuda_workspace_size(const LayerDims& d) {
  cuda::check_cuda_layer(d);
  return detail::checked_mul(cuda::ws_layout(d).size, d.D, "workspace");
}

int64_t cuda_forward_scratch_size(const LayerDims& d) {
  cuda::check_cuda_layer(d);
  return cuda::fwd_scratch(d).size;
}

int64_t cuda_backward_scratch_size(const LayerDims& d) {
  cuda::check_cuda_layer(d);
  return cuda::bwd_scratch(d).size;
}

#if !defined(FASTLSTM_HAVE_CUDA)
namespace {
[[noreturn]] void not_built() {
  throw std::invalid_argument(
      "backend: 'cuda' is not built into this fastlstm (rebuild with "
      "-Ccmake.define.FASTLSTM_CUDA=ON)");
}
}  // namespace

bool cuda_built() { return false; }
int cuda_runtime_version() { return 0; }
template <class T>
void cuda_layer_forward(const LayerDims&, const DirWeights<T>*, const T*, const int64_t*,
                        const T*, const T*, T*, T*, T*, T*, T*, void*, const T*) {
  not_built();
}
template <class T>
void cuda_layer_backward(const LayerDims&, const DirWeights<T>*, const T*, const int64_t*,
                         const T*, const T*, const T*, const T*, T*, T*, T*,
                         const DirGrads<T>*, T*, void*, const T*) {
  not_built();
}
template void cuda_layer_forward<float>(const LayerDims&, const DirWeights<float>*,
                                        const float*, const int64_t*, const float*,
                                        const float*, float*, float*, float*, float*, float*,
                                        void*, const float*);
template void cuda_layer_forward<double>(const LayerDims&, const DirWeights<double>*,
                                         const double*, const int64_t*, const double*,
                                         const double*, double*, double*, double*, double*,
                                         double*, void*, const double*);
template void cuda_layer_backward<float>(const LayerDims&, const DirWeights<float>*,
                                         const float*, const int64_t*, const float*,
                                         const float*, const float*, const float*, float*,
                                         float*, float*, const DirGrads<float>*, float*, void*,
                                         const float*);
template void cuda_layer_backward<double>(const LayerDims&, const DirWeights<double>*,
                                          const double*, const int64_t*, const double*,
                                          const double*, const double*, const double*,
                                          double*, double*, double*, const DirGrads<double>*,
                                          double*, void*, const double*);
std::string cuda_load_cublas(const std::string&) { return "the CUDA backend is not built"; }
int cuda_device_count() { return 0; }
std::string cuda_describe() { return ""; }
#endif

}  // namespace v1
}  // namespace fastlstm
