// What every cell's maths header needs: the host/device qualifier. The maths
// in csrc/cells/ is written on a value type V (a CPU SIMD vector, or a scalar
// float/double in a CUDA thread) and an activation policy A with static
// sigmoid(V) and tanh(V): no CPU-only constructs, so both backends include
// the same formulas.
#pragma once

// Always inlined: the maths is the epilogue of a fused GEMM tile, whose
// values must stay in registers.
#if defined(__CUDACC__)
#define FL_CELL_FN __host__ __device__ __forceinline__
#define FL_HD __host__ __device__
#elif defined(__GNUC__)
#define FL_CELL_FN inline __attribute__((always_inline))
#else
#define FL_CELL_FN inline
#endif
#if !defined(__CUDACC__)
#define FL_HD  // a function the CUDA kernels and host code both call
#endif

namespace fastlstm {
namespace cells {

// v clipped to [lo, hi]; NaN stays NaN (comparisons with NaN are false).
template <class V>
FL_CELL_FN V clip(V v, V lo, V hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// d where lo < s < hi, else 0 (the gradient through a clip, from the value s
// the clipped pre-activation activated to, and the activations lo, hi of the
// clip bounds: where s sits at a bound, the gate saturated at the clip).
template <class V>
FL_CELL_FN V unclipped(V d, V s, V lo, V hi) {
  const V zero = {};
  return s > lo ? (s < hi ? d : zero) : zero;
}

}  // namespace cells
}  // namespace fastlstm
