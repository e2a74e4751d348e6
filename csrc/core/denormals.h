// Denormal floats off while in scope, on the calling thread: results that
// would be denormal become 0 (FTZ) and denormal inputs read as 0 (DAZ), as
// oneDNN and XLA's CPU kernels run. x86 handles denormals in microcode, 50 to
// 150 times slower per operation, so one denormal state would slow a whole
// step that much. The thread's own mode comes back at scope exit, so NumPy
// code on the caller's thread is unaffected. Elsewhere it is a no-op.
#pragma once

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace fastlstm {
namespace detail {

class DenormalsOff {
#if defined(__SSE2__) || defined(_M_X64)
  unsigned saved_;

 public:
  DenormalsOff() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~DenormalsOff() { _mm_setcsr(saved_); }
#else
 public:
  DenormalsOff() {}
#endif
  DenormalsOff(const DenormalsOff&) = delete;
  DenormalsOff& operator=(const DenormalsOff&) = delete;
};

}  // namespace detail
}  // namespace fastlstm
