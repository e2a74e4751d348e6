// std::vector with 64-byte aligned storage (one cache line, one AVX-512 vector).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace fastlstm {
namespace detail {

template <class T>
struct AlignedAlloc {
  using value_type = T;
  AlignedAlloc() = default;
  template <class U>
  AlignedAlloc(const AlignedAlloc<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const AlignedAlloc<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const AlignedAlloc<U>&) const noexcept { return false; }
};

template <class T>
using avec = std::vector<T, AlignedAlloc<T>>;

}  // namespace detail
}  // namespace fastlstm
