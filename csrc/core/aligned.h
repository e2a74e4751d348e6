// std::vector with 64-byte aligned storage (one cache line, one AVX-512 vector).
#pragma once

#include <cstddef>
#include <new>
#include <utility>
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

// The same, but resize() and the size constructor leave new elements
// uninitialised (pass a value to fill): scratch and packed panels are always
// written before they are read, and zeroing them cost a pass over memory.
template <class T>
struct UninitAlloc : AlignedAlloc<T> {
  using value_type = T;
  template <class U>
  struct rebind { using other = UninitAlloc<U>; };
  UninitAlloc() = default;
  template <class U>
  UninitAlloc(const UninitAlloc<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept { ::new (static_cast<void*>(p)) U; }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) { ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...); }
};

template <class T>
using avec = std::vector<T, UninitAlloc<T>>;

}  // namespace detail
}  // namespace fastlstm
