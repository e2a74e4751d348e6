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
#elif defined(__GNUC__)
#define FL_CELL_FN inline __attribute__((always_inline))
#else
#define FL_CELL_FN inline
#endif
