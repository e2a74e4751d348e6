// std::vector with 64-byte aligned storage (one cache line, one AVX-512 vector).
#pragma once

#if defined(__has_include)
#if __has_include(<sys/mman.h>)
#include <sys/mman.h>
#endif
#endif

#include <cstddef>
#include <new>
#include <type_traits>
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

// UninitAlloc that can give long-lived buffers read in full on every call
// (inference weight panels) transparent huge pages: with huge set, from 4 MB
// up they are 2 MB aligned and advised MADV_HUGEPAGE, so that streaming them
// does not miss the TLB every 4 KB (measured: a GRU's recurrence at H=2048,
// B=32, one core, 252 -> 223 ms). Not for buffers made per call or per
// training step: a huge page fault may compact memory first, which made
// repacking slower and less predictable.
template <class T>
struct HugeAlloc : UninitAlloc<T> {
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;
  template <class U>
  struct rebind { using other = HugeAlloc<U>; };
  bool huge = false;
  HugeAlloc() = default;
  explicit HugeAlloc(bool h) noexcept : huge(h) {}
  template <class U>
  HugeAlloc(const HugeAlloc<U>& o) noexcept : huge(o.huge) {}
  static constexpr std::size_t kPage = std::size_t(2) << 20;
  std::size_t align_for(std::size_t bytes) const { return huge && bytes >= 2 * kPage ? kPage : 64; }
  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T), al = align_for(bytes);
    void* p = ::operator new(bytes, std::align_val_t(al));
#ifdef MADV_HUGEPAGE
    if (al == kPage) madvise(p, bytes / kPage * kPage, MADV_HUGEPAGE);  // advice: errors ignored
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    ::operator delete(p, std::align_val_t(align_for(n * sizeof(T))));
  }
  template <class U>
  bool operator==(const HugeAlloc<U>& o) const noexcept { return huge == o.huge; }
  template <class U>
  bool operator!=(const HugeAlloc<U>& o) const noexcept { return huge != o.huge; }
};

// Packed weight panels.
template <class T>
using pvec = std::vector<T, HugeAlloc<T>>;

}  // namespace detail
}  // namespace fastlstm
