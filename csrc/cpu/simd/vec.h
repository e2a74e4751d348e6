// The SIMD vector type of the ISA this translation unit is compiled for
// (kernels_<isa>.cpp defines FASTLSTM_ISA_NAME and the compiler flags): 64
// bytes with AVX-512, 32 with AVX2, 16 (SSE2, the x86-64 baseline)
// otherwise. GCC/Clang vector extensions keep every source the same for
// every width.
#pragma once  // (one ISA per translation unit: see kernels.inc)

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#define FL_VBYTES 64
#elif defined(__AVX2__)
#define FL_VBYTES 32
#else
#define FL_VBYTES 16
#endif

// Forced inlining for the small helpers of the hot loops: with many kernel
// instances in one translation unit, GCC's unit-growth limit otherwise
// leaves some of them as calls (measured: 20% on a batch-1 forward).
#define FL_INLINE inline __attribute__((always_inline))

namespace fastlstm {
namespace detail {
namespace FASTLSTM_ISA_NAME {
namespace {

typedef float vf32 __attribute__((vector_size(FL_VBYTES)));
typedef double vf64 __attribute__((vector_size(FL_VBYTES)));
typedef int32_t vi32 __attribute__((vector_size(FL_VBYTES)));
typedef int64_t vi64 __attribute__((vector_size(FL_VBYTES)));

template <class T> struct Vec;
template <> struct Vec<float> { typedef vf32 type; static constexpr int W = FL_VBYTES / 4; };
template <> struct Vec<double> { typedef vf64 type; static constexpr int W = FL_VBYTES / 8; };

template <class VT, class T>
FL_INLINE VT load(const T* p) { VT v; std::memcpy(&v, p, sizeof v); return v; }
template <class VT, class T>
FL_INLINE void store(T* p, VT v) { std::memcpy(p, &v, sizeof v); }
template <class VT, class T>
FL_INLINE VT splat(T s) { VT v = {}; return v + s; }

}  // namespace
}  // namespace FASTLSTM_ISA_NAME
}  // namespace detail
}  // namespace fastlstm
