// fastlstm public C++ API: one recurrent layer (one or two directions) of any
// cell of cell_spec.h that has CPU kernels (LSTM, GRU) on raw pointers.
//
// Tensor contract (stated once; every pointer below carries its shape):
//   T  steps (the longest sequence)       B  batch rows
//   I  input features                     H  hidden (cell) units
//   P  projection size, 0 = none          Ho = P ? P : H   (size of h)
//   D  directions (1, or 2 = bidirectional: d = 0 forward, d = 1 reverse)
//   N  = sum of lengths (= T*B without lengths): the rows that do work
// All arrays are dense, row-major (C order), element type T = float or double.
// G gates per unit (LSTM 4, GRU 3). Gate order along every GH = G*H axis is
// the cell spec's, as torch's: LSTM i, f, g, o; GRU r, z, n.
// Peephole weights (LSTM) are [3,H] with rows i, f, o.
// Cells with one state (GRU): c0, cn, dcn, dc0 are not read or written and
// may be null.
// lengths (int64 [B], every value in [1,T]) or nullptr (= all T). Row b is
// valid for t < lengths[b]; y there is written, y past it is set to zero; the
// reverse direction starts at t = lengths[b]-1. h_n/c_n are each row's last
// valid state. Work is proportional to N, not T*B.
// Outputs never alias inputs. Gradients are accumulated (+=) into DirGrads;
// dx, dh0, dc0 are overwritten.
// Results are deterministic and bitwise identical for any thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "fastlstm/cell_spec.h"

namespace fastlstm {
namespace detail {
template <class T>
struct PackedImpl;  // cpu/packed.h
}

inline namespace v1 {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2 };

// How a PackedLayer holds W_ih and W_hh. bfloat16 (float layers, inference
// only) rounds them to the nearest bfloat16 and widens them to float in the
// kernels: products and state stay float.
enum class WeightFormat : int { native = 0, bfloat16 = 1 };

struct LayerDims {
  int64_t T = 0, B = 0, I = 0, H = 0;
  int64_t P = 0;   // projection size, 0 = none
  int64_t D = 1;   // 1 or 2
  bool peephole = false;  // LSTM only
  Cell cell = Cell::lstm;  // P, peephole and cell_clip are LSTM options
  // Zoneout on h (haste's): h_t = k*h_{t-1} + (1-k)*h~_t, h~_t the cell's new
  // h, k the zoneout_keep value of (t, b, direction, unit) where the call
  // passes those (training: Bernoulli(zoneout) masks), else k = zoneout
  // (inference). 0 = none. The zoned h is the output and the next state.
  double zoneout = 0.0;
  // ONNX LSTM's clip: every gate pre-activation (peepholes added) is clipped
  // to [-cell_clip, cell_clip] before its activation; 0 = none. Gradients are
  // zero where a gate saturated at the clip value.
  double cell_clip = 0.0;
  int64_t hout() const { return P > 0 ? P : H; }
};

// Where a call runs. Every entry point dispatches on it once (the backend
// seam); this build has the cpu backend only, and any other raises.
enum class Backend : int { cpu = 0, cuda = 1 };

struct ExecConfig {
  int num_threads = 1;    // >= 1; the OpenMP team size of every parallel region
  Isa isa = Isa::scalar;  // must be supported by the CPU (see best_isa)
  Backend backend = Backend::cpu;
};

template <class T>
struct DirWeights {
  const T* w_ih = nullptr;  // [GH,I]
  const T* w_hh = nullptr;  // [GH,Ho]
  const T* b_ih = nullptr;  // [GH] or nullptr
  const T* b_hh = nullptr;  // [GH] or nullptr
  const T* w_ph = nullptr;  // [3,H] when peephole, else ignored
  const T* w_hr = nullptr;  // [P,H] when P > 0, else ignored
  // layer-norm LSTM: the gains of LN(x W_ih^T), LN(h W_hh^T), LN(c) and the
  // bias of LN(c); ignored by other cells
  const T* ln_ih = nullptr;  // [GH]
  const T* ln_hh = nullptr;  // [GH]
  const T* ln_c = nullptr;   // [H]
  const T* ln_cb = nullptr;  // [H]
};

template <class T>
struct DirGrads {  // accumulated into (+=); same shapes as DirWeights
  T* w_ih = nullptr;  // [GH,I]
  T* w_hh = nullptr;  // [GH,Ho]
  T* b_ih = nullptr;  // [GH] or nullptr
  T* b_hh = nullptr;  // [GH] or nullptr
  T* w_ph = nullptr;  // [3,H] when peephole
  T* w_hr = nullptr;  // [P,H] when P > 0
  T* ln_ih = nullptr;  // [GH] layer-norm LSTM
  T* ln_hh = nullptr;  // [GH]
  T* ln_c = nullptr;   // [H]
  T* ln_cb = nullptr;  // [H]
};

// CPU features and the best kernel path this CPU runs.
bool isa_supported(Isa isa);
Isa best_isa();
const char* isa_name(Isa isa);

const char* backend_name(Backend b);

// The backend seam: throws std::invalid_argument when cfg names a backend this
// build does not have (every entry point calls it before any work).
void check_backend(const ExecConfig& cfg);

// Checks dims and lengths (throws std::invalid_argument naming the argument,
// std::length_error when a byte count would overflow). Returns N.
int64_t check_layer(const LayerDims& d, const int64_t* lengths /*[B] or null*/);

// Elements of T that a training forward saves for backward (all directions).
int64_t layer_workspace_size(const LayerDims& d, const int64_t* lengths /*[B] or null*/,
                             Isa isa, int element_bytes);

// Elements of T of layer_backward's scratch: its largest temporaries (the
// gate gradients of every step, the packed x and h of the weight-gradient
// products). A caller that passes one and reuses it across training steps
// saves their allocation and first-touch page faults each step (measured: 5%
// of a 2-thread deepbench step); with none, layer_backward allocates them.
int64_t layer_backward_scratch_size(const LayerDims& d, const int64_t* lengths /*[B] or null*/,
                                    Isa isa, int element_bytes);

// The weights of one layer (every direction), packed once for one kernel path
// into the layouts the kernels read: gate-interleaved panels of W_ih and W_hh,
// b_ih + b_hh folded, peepholes interleaved, and (with_backward) the
// transposed panels BPTT needs. bfloat16 weights: LSTM only. The user's arrays are copied: after they
// change, build a new PackedLayer. Immutable once built, so any number of
// concurrent calls may share one. Only d.I, d.H, d.P, d.D, d.peephole and
// d.cell are read from d.
template <class T>
class PackedLayer {
 public:
  PackedLayer(const LayerDims& d, const DirWeights<T>* w /*[D]*/, Isa isa, bool with_backward,
              int num_threads = 1, WeightFormat format = WeightFormat::native);
  ~PackedLayer();
  PackedLayer(PackedLayer&&) noexcept;
  PackedLayer& operator=(PackedLayer&&) noexcept;
  Isa isa() const;
  bool with_backward() const;
  WeightFormat format() const;
  std::size_t bytes() const;  // memory held
  const detail::PackedImpl<T>& impl() const { return *p_; }

 private:
  std::unique_ptr<detail::PackedImpl<T>> p_;
};

// Forward of one layer on packed weights (see the overload below for the
// arguments). w.isa() must equal cfg.isa; a training forward (ws set) needs
// native-format weights (backward panels are only needed by layer_backward).
template <class T>
void layer_forward(const LayerDims& d, const PackedLayer<T>& w,
                   const T* x /*[T,B,I]*/, const int64_t* lengths /*[B] or null*/,
                   const T* h0 /*[D,B,Ho]*/, const T* c0 /*[D,B,H]*/,
                   T* y /*[T,B,D*Ho]*/, T* hn /*[D,B,Ho]*/, T* cn /*[D,B,H]*/,
                   T* ws /*[layer_workspace_size] or null*/, const ExecConfig& cfg,
                   const T* zoneout_keep = nullptr /*[T,B,D*Ho] or null*/);

// BPTT on packed weights (with_backward) equal to those of the forward.
template <class T>
void layer_backward(const LayerDims& d, const PackedLayer<T>& w,
                    const T* x /*[T,B,I]*/, const int64_t* lengths /*[B] or null*/,
                    const T* c0 /*[D,B,H]*/, const T* ws /*[layer_workspace_size]*/,
                    const T* dy /*[T,B,D*Ho]*/, const T* dhn /*[D,B,Ho]*/,
                    const T* dcn /*[D,B,H]*/,
                    T* dx /*[T,B,I]*/, T* dh0 /*[D,B,Ho]*/, T* dc0 /*[D,B,H]*/,
                    const DirGrads<T>* g /*[D]*/, const ExecConfig& cfg,
                    const T* zoneout_keep = nullptr /*[T,B,D*Ho] or null*/,
                    T* scratch = nullptr /*[layer_backward_scratch_size] or null*/);

// Forward of one layer. ws == nullptr is inference (nothing saved); otherwise
// ws [layer_workspace_size] receives what layer_backward needs. These two
// overloads on raw weights pack them on every call.
template <class T>
void layer_forward(const LayerDims& d, const DirWeights<T>* w /*[D]*/,
                   const T* x /*[T,B,I]*/, const int64_t* lengths /*[B] or null*/,
                   const T* h0 /*[D,B,Ho]*/, const T* c0 /*[D,B,H]*/,
                   T* y /*[T,B,D*Ho]*/, T* hn /*[D,B,Ho]*/, T* cn /*[D,B,H]*/,
                   T* ws /*[layer_workspace_size] or null*/, const ExecConfig& cfg,
                   const T* zoneout_keep = nullptr /*[T,B,D*Ho] or null*/);

// BPTT of one layer, from the workspace of a training forward with the same
// d, w, x, lengths, h0, c0, zoneout_keep and cfg.isa.
template <class T>
void layer_backward(const LayerDims& d, const DirWeights<T>* w /*[D]*/,
                    const T* x /*[T,B,I]*/, const int64_t* lengths /*[B] or null*/,
                    const T* h0 /*[D,B,Ho]*/, const T* c0 /*[D,B,H]*/,
                    const T* ws /*[layer_workspace_size]*/,
                    const T* dy /*[T,B,D*Ho]*/, const T* dhn /*[D,B,Ho]*/,
                    const T* dcn /*[D,B,H]*/,
                    T* dx /*[T,B,I]*/, T* dh0 /*[D,B,Ho]*/, T* dc0 /*[D,B,H]*/,
                    const DirGrads<T>* g /*[D]*/, const ExecConfig& cfg,
                    const T* zoneout_keep = nullptr /*[T,B,D*Ho] or null*/);

}  // namespace v1
}  // namespace fastlstm
