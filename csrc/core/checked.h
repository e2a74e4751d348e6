// Overflow-checked size arithmetic.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastlstm {
namespace detail {

inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > (int64_t{1} << 60))
    throw std::length_error(std::string(what) + ": size overflows");
  return r;
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r) || r > (int64_t{1} << 60))
    throw std::length_error(std::string(what) + ": size overflows");
  return r;
}

inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

}  // namespace detail
}  // namespace fastlstm
