// Building a PackedLayer: every per-call rearrangement of the weights, done once.
#include "cpu/packed.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "cpu/gemm.h"
#include "cpu/geometry.h"
#include "cpu/layer_common.h"

namespace fastlstm {
namespace detail {

template <class T>
void PackedImpl<T>::check(const LayerDims& d, Isa call_isa, bool need_backward) const {
  if (d.cell != cell)
    throw std::invalid_argument(std::string("packed weights: packed for the ") +
                                cell_spec(cell).name + " cell, called with " +
                                cell_spec(d.cell).name);
  if (d.I != I || d.H != H || d.P != P || d.D != D || d.peephole != peephole)
    throw std::invalid_argument(
        "packed weights: packed for I=" + std::to_string(I) + " H=" + std::to_string(H) +
        " P=" + std::to_string(P) + " D=" + std::to_string(D) + " peephole=" +
        std::to_string(peephole) + ", called with I=" + std::to_string(d.I) + " H=" +
        std::to_string(d.H) + " P=" + std::to_string(d.P) + " D=" + std::to_string(d.D) +
        " peephole=" + std::to_string(d.peephole));
  if (call_isa != isa)
    throw std::invalid_argument(std::string("packed weights: packed for isa ") + isa_name(isa) +
                                ", called with " + isa_name(call_isa));
  if (need_backward && bf16)
    throw std::invalid_argument("packed weights: bfloat16 weights are for inference only");
  if (need_backward && !with_backward)
    throw std::invalid_argument("packed weights: packed for inference only, training needs "
                                "with_backward");
}

namespace {

// The layer-norm LSTM's row constants (PackedDir::ln), zero padded.
template <class T>
avec<T> ln_constants(const DirWeights<T>& w, int64_t H, int64_t Hp) {
  avec<T> out(static_cast<size_t>(14 * Hp), T(0));
  for (int64_t q = 0; q < 4; ++q)
    for (int64_t u = 0; u < H; ++u) {
      const int64_t i = q * Hp + u, k = q * H + u;
      out[i] = w.ln_ih[k];
      out[4 * Hp + i] = w.ln_hh[k];
      out[8 * Hp + i] = (w.b_ih ? w.b_ih[k] : T(0)) + (w.b_hh ? w.b_hh[k] : T(0));
    }
  for (int64_t u = 0; u < H; ++u) {
    out[12 * Hp + u] = w.ln_c[u];
    out[13 * Hp + u] = w.ln_cb[u];
  }
  return out;
}

template <class C, class T>
void pack_direction(const LayerDims& d, const Geometry& g, const DirWeights<T>& w, Isa isa,
                    bool with_backward, bool bf16, int nt, PackedDir<T>& out) {
  const int64_t I = d.I, H = d.H, P = d.P, Ho = g.Ho, W = g.W, NR = g.NR, Hp = g.Hp, G = C::G;
  // inference panels live long and are streamed every call: huge pages (see
  // HugeAlloc); training repacks every step
  const bool huge = !with_backward;
  out.wih = pack_gate_cols(I, H, G, w.w_ih, W, NR, nt, 0, huge);
  // the step tile reads one block's G*W columns; bfloat16 panels are NR wide
  out.whh = bf16 ? pack_gate_cols(Ho, H, G, w.w_hh, W, NR, nt, 4, huge)
                 : pack_gate_cols(Ho, H, G, w.w_hh, W, G * W, nt, 0, huge);
  if (bf16) {
    const auto order = kernels_for<T>(isa).bf16_order;
    out.wih16 = to_bf16(out.wih, W, order, nt);
    out.whh16 = to_bf16(out.whh, W, order, nt);
    out.wih = pvec<T>();
    out.whh = pvec<T>();
  }
  // the GRU's b_hn stays apart: r multiplies it with h W_hn^T
  out.bias = interleaved_bias(w, G, C::has_c ? G : 2, H, Hp, W);
  if (!C::has_c) out.ph = interleaved_rows(w.b_hh ? w.b_hh + 2 * H : nullptr, 1, H, Hp, W);
  if (d.peephole) out.ph = interleaved_rows(w.w_ph, 3, H, Hp, W);
  if constexpr (C::norm) out.ln = ln_constants(w, H, Hp);
  if (P > 0) out.whr = pack_plain(H, P, w.w_hr, 1, H, NR, nt, huge);
  if (with_backward) {
    static constexpr int x_gate[4] = {0, 1, 2, 3};
    out.whh_t = pack_gate_rows(H, Hp, Ho, G, C::h_gate, w.w_hh, NR, nt);
    out.wih_t = pack_gate_rows(H, Hp, I, G, x_gate, w.w_ih, NR, nt);
    if (P > 0) out.whr_t = pack_plain(P, H, w.w_hr, H, 1, NR, nt);
  }
}

}  // namespace
}  // namespace detail

inline namespace v1 {

template <class T>
PackedLayer<T>::PackedLayer(const LayerDims& d, const DirWeights<T>* w, Isa isa,
                            bool with_backward, int num_threads, WeightFormat format)
    : p_(new detail::PackedImpl<T>()) {
  const bool bf16 = format == WeightFormat::bfloat16;
  if (bf16 && !std::is_same_v<T, float>)
    throw std::invalid_argument("weights_dtype: bfloat16 weights need a float32 layer");
  if (bf16 && d.cell == Cell::lnlstm)
    throw std::invalid_argument("weights_dtype: bfloat16 weights are for the lstm and gru cells");
  if (bf16 && with_backward)
    throw std::invalid_argument("weights_dtype: bfloat16 weights are for inference only");
  LayerDims shape = d;
  shape.T = shape.B = 1;
  check_layer(shape, nullptr);
  const detail::Kernels<T>& kr = detail::kernels_for<T>(isa);
  const int nt = detail::call_threads(num_threads);
  const detail::Geometry g(shape, kr.W);
  p_->I = d.I; p_->H = d.H; p_->P = d.P; p_->D = d.D;
  p_->cell = d.cell;
  p_->peephole = d.peephole;
  p_->with_backward = with_backward;
  p_->isa = isa;
  p_->bf16 = bf16;
  for (int64_t k = 0; k < d.D; ++k) {
    if (!w[k].w_ih || !w[k].w_hh || (d.peephole && !w[k].w_ph) || (d.P > 0 && !w[k].w_hr))
      throw std::invalid_argument("weights: a required weight pointer is null");
    if (d.cell == Cell::lnlstm && (!w[k].ln_ih || !w[k].ln_hh || !w[k].ln_c || !w[k].ln_cb))
      throw std::invalid_argument("weights: the layer-norm LSTM needs ln_ih, ln_hh, ln_c and "
                                  "ln_cb");
    detail::on_cell(d.cell, [&](auto c) {
      detail::pack_direction<decltype(c)>(shape, g, w[k], isa, with_backward, bf16, nt,
                                          p_->dir[k]);
    });
  }
}

template <class T>
PackedLayer<T>::~PackedLayer() = default;
template <class T>
PackedLayer<T>::PackedLayer(PackedLayer&&) noexcept = default;
template <class T>
PackedLayer<T>& PackedLayer<T>::operator=(PackedLayer&&) noexcept = default;
template <class T>
Isa PackedLayer<T>::isa() const { return p_->isa; }
template <class T>
bool PackedLayer<T>::with_backward() const { return p_->with_backward; }
template <class T>
WeightFormat PackedLayer<T>::format() const {
  return p_->bf16 ? WeightFormat::bfloat16 : WeightFormat::native;
}

template <class T>
std::size_t PackedLayer<T>::bytes() const {
  std::size_t n = 0;
  for (const auto& dr : p_->dir) {
    for (const auto* v : {&dr.wih, &dr.whh, &dr.whr, &dr.whh_t, &dr.wih_t, &dr.whr_t})
      n += v->size() * sizeof(T);
    for (const auto* v : {&dr.bias, &dr.ph, &dr.ln}) n += v->size() * sizeof(T);
    n += (dr.wih16.size() + dr.whh16.size()) * sizeof(uint16_t);
  }
  return n;
}

template class PackedLayer<float>;
template class PackedLayer<double>;

}  // namespace v1

namespace detail {
template struct PackedImpl<float>;
template struct PackedImpl<double>;
}  // namespace detail
}  // namespace fastlstm
