// CPU feature detection and the kernel table of each ISA.
#include <stdexcept>
#include <string>

#include "cpu/kernels.h"

namespace fastlstm {
inline namespace v1 {

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
#if defined(FASTLSTM_HAVE_AVX2)
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(FASTLSTM_HAVE_AVX512)
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
    default:
      return false;
  }
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2})
    if (isa_supported(isa)) return isa;
  return Isa::scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

}  // namespace v1

namespace detail {

namespace {
template <class T>
struct Tables {
  Kernels<T> k[3];
  Tables() {
    scalar::fill_kernels(k[0]);
    // An ISA's own code may only run on a CPU that has it.
#if defined(FASTLSTM_HAVE_AVX2)
    if (isa_supported(Isa::avx2)) avx2::fill_kernels(k[1]);
#endif
#if defined(FASTLSTM_HAVE_AVX512)
    if (isa_supported(Isa::avx512)) avx512::fill_kernels(k[2]);
#endif
  }
};
}  // namespace

template <class T>
const Kernels<T>& kernels_for(Isa isa) {
  static const Tables<T> tables;  // built once, read-only afterwards
  const int i = static_cast<int>(isa);
  if (i < 0 || i > 2 || !isa_supported(isa) || tables.k[i].tile == nullptr)
    throw std::invalid_argument(std::string("isa: '") + isa_name(isa) +
                                "' is not available on this CPU or in this build");
  return tables.k[i];
}

template const Kernels<float>& kernels_for<float>(Isa);
template const Kernels<double>& kernels_for<double>(Isa);

}  // namespace detail
}  // namespace fastlstm
