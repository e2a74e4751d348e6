// Host-side preconditions of the CUDA entry points (they cannot read device
// memory, so lengths are the caller's to check).
#pragma once

#include "core/require.h"
#include "fastlstm/rnn.h"

namespace fastlstm {
namespace cuda {

// check_layer's checks (without lengths) plus the cells with CUDA kernels.
void check_cuda_layer(const LayerDims& d);

// The pointers every call needs: weights, x, the two outputs every cell has
// (y / dx, h_n / dh0), the LSTM's c (c_n / dc0) and the scratch.
template <class W, class T>
void check_layer_pointers(const LayerDims& d, const W* w, const T* x, const T* out,
                          const T* h, const T* c, const T* scratch) {
  check_cuda_layer(d);
  detail::require(w && x && out && h && scratch,
                  "weights, x, the outputs and the scratch must not be null");
  detail::require(c || d.cell != Cell::lstm, "the LSTM's c state output must not be null");
  for (int64_t k = 0; k < d.D; ++k) {
    detail::require(w[k].w_ih && w[k].w_hh, "weight_ih and weight_hh must not be null");
    detail::require(w[k].w_ph || !d.peephole, "weight_ph: needed with peephole");
    detail::require(w[k].w_hr || d.P == 0, "weight_hr: needed with proj_size > 0");
  }
}

}  // namespace cuda
}  // namespace fastlstm
