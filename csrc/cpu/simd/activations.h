// Vectorised sigmoid and tanh on the ISA's vector type (simd/vec.h), and
// the activation policy the cell maths (csrc/cells/) calls.
#pragma once

#include <cmath>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/simd/vec.h"

namespace fastlstm {
namespace detail {
namespace FASTLSTM_ISA_NAME {
namespace {

// float32: e^y by Cody-Waite reduction and a degree-7 Taylor polynomial
// (< 2 ulp) for y in [-87, 87] (callers clamp: both bounds and 2^n stay
// normal). Results below e^-86.5 flush to 0, so neither sigmoid nor tanh
// ever produces a denormal. NaN propagates; ±inf saturate. A vector of
// sigmoid is about 20 operations: the gate maths is not hidden behind a
// step's FMAs (about 15% of an H=256, B=16 step), so every one counts.

FL_INLINE vf32 exp_clamped(vf32 y) {  // y in [-87, 87] or NaN
  const vf32 n = (y * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  vf32 r = y - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf32 p = splat<vf32>(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
#if defined(__AVX512F__)
  const __m512 e = _mm512_maskz_scalef_ps(__mmask16(0xffff),  // p * 2^n (maskz: no
                                          reinterpret_cast<const __m512&>(p),  // undefined
                                          reinterpret_cast<const __m512&>(n));  // lanes)
  vf32 out;
  std::memcpy(&out, &e, sizeof out);
  return out;
#else
  const vi32 ni = __builtin_convertvector(n, vi32);
  return p * (vf32)((ni + 127) << 23);
#endif
}

// max(y, lo) and min(y, hi) that keep a NaN y (one instruction each).
FL_INLINE vf32 at_least(vf32 y, float lo) { return y < lo ? splat<vf32>(lo) : y; }
FL_INLINE vf32 at_most(vf32 y, float hi) { return y > hi ? splat<vf32>(hi) : y; }

FL_INLINE vf32 vabs(vf32 x) { return (vf32)((vi32)x & 0x7fffffff); }

// 1 / (1 + e^-x): e^-x overflows nowhere (clamped), and the result is 0
// below e^-86.5 (x < -86.5), never a denormal.
FL_INLINE vf32 vsigmoid(vf32 x) {
  const vf32 e = exp_clamped(at_most(at_least(-x, -87.0f), 87.0f));
  const vf32 s = 1.0f / (1.0f + e);
  return x < -86.5f ? splat<vf32>(0.0f) : s;
}

FL_INLINE vf32 vtanh(vf32 x) {
  const vf32 a = vabs(x);
  // |x| < 0.25: odd Taylor series to x^9 (truncation < 1e-8 relative)
  const vf32 x2 = x * x;
  vf32 p = splat<vf32>(62.0f / 2835.0f);
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const vf32 small = x + x * x2 * p;
  // otherwise (1 - e^-2|x|) / (1 + e^-2|x|) with the sign of x (e^-87 is 1
  // to within float rounding)
  const vf32 e = exp_clamped(at_least(-2.0f * a, -87.0f));
  const vf32 t = (1.0f - e) / (1.0f + e);
  const vf32 big = (vf32)((vi32)t | ((vi32)x & (int32_t)0x80000000));
  return a < 0.25f ? small : big;
}

// float64: libm per lane (accurate to ~1 ulp; float64 serves gradient checks).
FL_INLINE vf64 vsigmoid(vf64 x) {
  constexpr int W = Vec<double>::W;
  double t[W];
  store(t, x);
  for (int l = 0; l < W; ++l) t[l] = 1.0 / (1.0 + std::exp(-t[l]));
  return load<vf64>(t);
}
FL_INLINE vf64 vtanh(vf64 x) {
  constexpr int W = Vec<double>::W;
  double t[W];
  store(t, x);
  for (int l = 0; l < W; ++l) t[l] = std::tanh(t[l]);
  return load<vf64>(t);
}

template <class T, bool Tanh>
void act_array(int64_t n, const T* x, T* y) {
  typedef typename Vec<T>::type VT;
  constexpr int W = Vec<T>::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const VT v = load<VT>(x + i);
    store(y + i, Tanh ? vtanh(v) : vsigmoid(v));
  }
  if (i < n) {
    T t[W] = {};
    std::memcpy(t, x + i, sizeof(T) * (n - i));
    const VT v = load<VT>(t);
    store(t, Tanh ? vtanh(v) : vsigmoid(v));
    std::memcpy(y + i, t, sizeof(T) * (n - i));
  }
}

// The activations as csrc/cells/ calls them.
struct Act {
  template <class V>
  FL_INLINE static V sigmoid(V x) { return vsigmoid(x); }
  template <class V>
  FL_INLINE static V tanh(V x) { return vtanh(x); }
};

}  // namespace
}  // namespace FASTLSTM_ISA_NAME
}  // namespace detail
}  // namespace fastlstm
