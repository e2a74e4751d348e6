// fastlstm's CUDA backend: one recurrent layer (one or two directions) of the
// LSTM (peepholes, projection, cell clip) or the GRU, forward and BPTT, on
// device pointers. The tensor contract is rnn.h's, with these differences:
//   - every array pointer is a device pointer (lengths included, int64 [B]);
//     the caller has checked the lengths' values (in [1,T]) on the host;
//   - the saved workspace is laid out per (t, b) for all T*B rows
//     (cuda_workspace_size), and the temporaries live in a caller-owned
//     scratch (cuda_*_scratch_size), so no call allocates device memory;
//   - everything runs in order on `stream` (a cudaStream_t; null = the
//     legacy default stream). The calls return once the work is queued.
// Results are deterministic: fixed-order reductions, no atomics.
// Only built with FASTLSTM_CUDA=ON; the sizes are computed in every build.
#pragma once

#include <cstdint>
#include <string>

#include "fastlstm/rnn.h"

namespace fastlstm {
inline namespace v1 {

// Whether this build has the CUDA backend.
bool cuda_built();
// CUDART_VERSION of the runtime the backend was built with (13000 = 13.0),
// whose major version is the cuBLAS it loads; 0 without the backend.
int cuda_runtime_version();

// Elements of T of a training forward's saved workspace (all directions).
int64_t cuda_workspace_size(const LayerDims& d);
// Elements of T of the scratch of cuda_layer_forward / cuda_layer_backward.
int64_t cuda_forward_scratch_size(const LayerDims& d);
int64_t cuda_backward_scratch_size(const LayerDims& d);

// Forward of one layer. ws == nullptr is inference; otherwise ws
// [cuda_workspace_size] receives what cuda_layer_backward needs.
// zoneout_keep [T,B,D*Ho] or null, as rnn.h's layer_forward.
template <class T>
void cuda_layer_forward(const LayerDims& d, const DirWeights<T>* w /*[D], device*/,
                        const T* x /*[T,B,I]*/, const int64_t* lengths /*[B] or null*/,
                        const T* h0 /*[D,B,Ho] or null*/, const T* c0 /*[D,B,H] or null*/,
                        T* y /*[T,B,D*Ho]*/, T* hn /*[D,B,Ho]*/, T* cn /*[D,B,H]*/,
                        T* ws /*[cuda_workspace_size] or null*/,
                        T* scratch /*[cuda_forward_scratch_size]*/, void* stream,
                        const T* zoneout_keep = nullptr /*[T,B,D*Ho] or null*/);

// BPTT of one layer from the workspace of a training forward with the same d,
// w, x, lengths, h0, c0 and zoneout_keep. Weight gradients accumulate (+=);
// dx, dh0, dc0 are overwritten. dhn, dcn may be null (zeros).
template <class T>
void cuda_layer_backward(const LayerDims& d, const DirWeights<T>* w /*[D], device*/,
                         const T* x /*[T,B,I]*/, const int64_t* lengths /*[B] or null*/,
                         const T* ws /*[cuda_workspace_size]*/,
                         const T* dy /*[T,B,D*Ho]*/, const T* dhn /*[D,B,Ho] or null*/,
                         const T* dcn /*[D,B,H] or null*/,
                         T* dx /*[T,B,I]*/, T* dh0 /*[D,B,Ho]*/, T* dc0 /*[D,B,H]*/,
                         const DirGrads<T>* g /*[D], device*/,
                         T* scratch /*[cuda_backward_scratch_size]*/, void* stream,
                         const T* zoneout_keep = nullptr /*[T,B,D*Ho] or null*/);

// Loads cuBLAS (the first call wins; later calls return its result):
// `path` is a file to dlopen, or empty for the loader's search
// ("libcublas.so.<major>"). Returns "" on success, else why it failed.
std::string cuda_load_cublas(const std::string& path);
// The devices the driver sees (0 when there is no driver or no device).
int cuda_device_count();
// One line: the runtime this build links, the driver, each device (name,
// compute capability, memory); or why there is none.
std::string cuda_describe();

}  // namespace v1
}  // namespace fastlstm
