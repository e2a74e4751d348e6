// Backing off to one thread while this process's threads are being preempted
// (a busy machine, a CPU quota): a team whose member is off the CPU stalls
// at every barrier of the recurrence, so a call on more threads than the
// machine can give is many times slower than on one.
//
// A call that stalled (Barrier::stalled) makes the calls of the next
// `backoff` run on one thread; the first call after it probes the full team
// again, and each stall in a row doubles the back-off, up to kMaxBackoffNs.
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

  // The threads a call asked for `requested` runs with: 1 while backing off.
  int threads(int requested) const {
    if (requested <= 1 || !enabled_.load(std::memory_order_relaxed)) return requested;
    return now_ns() < until_ns_.load(std::memory_order_relaxed) ? 1 : requested;
  }

  // After a call that ran on more than one thread: whether it stalled.
  void report(bool stalled) {
    if (!stalled) {
      backoff_ns_.store(kMinBackoffNs, std::memory_order_relaxed);
      return;
    }
    const int64_t b = backoff_ns_.load(std::memory_order_relaxed);
    until_ns_.store(now_ns() + b, std::memory_order_relaxed);
    backoff_ns_.store(std::min(2 * b, kMaxBackoffNs), std::memory_order_relaxed);
    stalls_.fetch_add(1, std::memory_order_relaxed);
  }

  void set_enabled(bool on) {
    enabled_.store(on, std::memory_order_relaxed);
    if (!on) until_ns_.store(0, std::memory_order_relaxed);
  }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // Stalled calls seen so far, and whether calls run on one thread right now.
  int64_t stalls() const { return stalls_.load(std::memory_order_relaxed); }
  bool backing_off() const { return threads(2) == 1; }

 private:
  std::atomic<bool> enabled_{true};
  std::atomic<int64_t> until_ns_{0};
  std::atomic<int64_t> backoff_ns_{kMinBackoffNs};
  std::atomic<int64_t> stalls_{0};
};

// The process's one instance.
inline Contention& contention() {
  static Contention c;
  return c;
}

}  // namespace detail
}  // namespace fastlstm
