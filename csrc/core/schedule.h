// The step schedule of a variable-length batch: rows are visited longest
// first, so at step s the active rows are the first n_at[s] slots and every
// per-step product runs on a contiguous block of n_at[s] rows. Rows of step s
// are stored at packed offsets off[s] .. off[s]+n_at[s] (as a PackedSequence),
// so all work is proportional to N = sum(lengths). The user never sees it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace fastlstm {
namespace detail {

struct Schedule {
  int64_t S = 0;                // steps = the longest length
  int64_t N = 0;                // packed rows = sum of lengths
  bool identity = true;         // slot j is row j and every length is T
  std::vector<int64_t> perm;    // [B] slot -> batch row (stable, longest first)
  std::vector<int64_t> len;     // [B] length of each slot
  std::vector<int64_t> n_at;    // [S] active slots at step s
  std::vector<int64_t> off;     // [S+1] packed offset of step s

  Schedule(int64_t T, int64_t B, const int64_t* lengths /*[B] or null*/)
      : perm(B), len(B) {
    std::iota(perm.begin(), perm.end(), int64_t{0});
    if (lengths) {
      std::stable_sort(perm.begin(), perm.end(),
                       [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
      for (int64_t j = 0; j < B; ++j) len[j] = lengths[perm[j]];
    } else {
      std::fill(len.begin(), len.end(), T);
    }
    S = len[0];
    identity = S == T && len[B - 1] == T;
    n_at.assign(S, 0);
    off.assign(S + 1, 0);
    int64_t active = B;
    for (int64_t s = 0; s < S; ++s) {
      while (active > 0 && len[active - 1] <= s) --active;
      n_at[s] = active;
      off[s + 1] = off[s] + active;
    }
    N = off[S];
  }

  // Time index of slot j at step s.
  int64_t t_of(int64_t s, int64_t j, bool reverse) const {
    return reverse ? len[j] - 1 - s : s;
  }
};

}  // namespace detail
}  // namespace fastlstm
