// Backing off to fewer threads while this process's threads are being
// preempted (a busy machine, a CPU quota): a team whose member is off the
// CPU stalls at every barrier of the recurrence, so a call on more threads
// than the machine can give is many times slower than on fewer.
//
// A call stalled when its barriers waited for preempted partners for a
// quarter of its time or more (Barrier::stalled_ns; one brief competitor in
// a long call does not count). Two stalled calls in a row (a lone one is a
// hiccup of the machine) halve the team of the calls of the next
// kMinBackoffNs (2 threads become 1; a stall of the halved team halves it
// again and restarts the back-off). Then the next call probes the full team:
// a clean call ends the back-off, a stall doubles it (up to kMaxBackoffNs).
// This is process-wide state, but a hint only: results are bitwise identical
// for every team size, so it decides speed, never values.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "core/barrier.h"

namespace fastlstm {
namespace detail {

class Contention {
 public:
  static constexpr int64_t kMinBackoffNs = 100'000'000;    // 0.1 s
  static constexpr int64_t kMaxBackoffNs = 3'200'000'000;  // 3.2 s
  static constexpr int kStreak = 2;  // stalled calls in a row that start a back-off

  // The threads a call that asked for `requested` runs with.
  int threads(int requested) const {
    if (requested <= 1 || !enabled_.load(std::memory_order_relaxed)) return requested;
    const int level = level_.load(std::memory_order_relaxed);  // 0 unless backing off
    if (level == 0 || now_ns() >= until_ns_.load(std::memory_order_relaxed)) return requested;
    return std::max(1, requested >> std::min(level, 30));
  }

  // After a call that ran a team of `used` of the `requested` threads:
  // whether it stalled.
  void report(bool stalled, int used, int requested) {
    if (!stalled) {
      if (used == requested) {  // the full team ran clean: no more back-off
        level_.store(0, std::memory_order_relaxed);
        streak_.store(0, std::memory_order_relaxed);
      }
      return;
    }
    stalls_.fetch_add(1, std::memory_order_relaxed);
    // A lone stall (a hiccup of the machine) changes nothing: two in a row do.
    if (streak_.fetch_add(1, std::memory_order_relaxed) + 1 < kStreak) return;
    const int level = level_.load(std::memory_order_relaxed);
    int64_t b = backoff_ns_.load(std::memory_order_relaxed);
    if (used == requested) {  // the full team: a first stall, or a probe (back off longer)
      b = level == 0 ? kMinBackoffNs : std::min(2 * b, kMaxBackoffNs);
      backoff_ns_.store(b, std::memory_order_relaxed);
      level_.store(std::max(1, level), std::memory_order_relaxed);
    } else {  // a halved team stalled too: halve again
      level_.store(level + 1, std::memory_order_relaxed);
    }
    until_ns_.store(now_ns() + b, std::memory_order_relaxed);
  }

  void set_enabled(bool on) {
    enabled_.store(on, std::memory_order_relaxed);
    if (!on) until_ns_.store(0, std::memory_order_relaxed);
  }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // Stalled calls seen so far, and whether calls run on fewer threads right now.
  int64_t stalls() const { return stalls_.load(std::memory_order_relaxed); }
  bool backing_off() const { return threads(2) == 1; }

 private:
  std::atomic<bool> enabled_{true};
  std::atomic<int64_t> until_ns_{0};
  std::atomic<int64_t> backoff_ns_{kMinBackoffNs};
  std::atomic<int> level_{0};   // the team is halved `level` times while backing off
  std::atomic<int> streak_{0};  // stalled calls in a row
  std::atomic<int64_t> stalls_{0};
};

// The process's one instance.
inline Contention& contention() {
  static Contention c;
  return c;
}

}  // namespace detail
}  // namespace fastlstm
