// Precondition checks whose message is built only when they fail: they run
// on every call, so the passing path must not format strings.
#pragma once

#include <sstream>
#include <stdexcept>

namespace fastlstm {
namespace detail {

// Throws std::invalid_argument with the parts streamed together (numbers as
// ostream prints them: doubles as %g) unless ok.
template <class... Parts>
void require(bool ok, const Parts&... parts) {
  if (ok) return;
  std::ostringstream s;
  (s << ... << parts);
  throw std::invalid_argument(s.str());
}

}  // namespace detail
}  // namespace fastlstm
