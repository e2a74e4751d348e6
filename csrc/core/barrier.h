// A sense-reversing spin barrier for a fixed group of threads inside one
// parallel region. Groups of one thread cost nothing. Waiters spin with a
// pause, then yield, so an oversubscribed machine still makes progress.
#pragma once

#include <atomic>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FASTLSTM_PAUSE() _mm_pause()
#else
#define FASTLSTM_PAUSE() ((void)0)
#endif

namespace fastlstm {
namespace detail {

class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  SpinBarrier(const SpinBarrier&) = delete;
  SpinBarrier& operator=(const SpinBarrier&) = delete;

  // `sense` is the calling thread's own flag, false before its first wait.
  void wait(bool& sense) {
    if (n_ <= 1) return;
    sense = !sense;
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      flag_.store(sense, std::memory_order_release);
      return;
    }
    for (int spins = 0; flag_.load(std::memory_order_acquire) != sense; ++spins) {
      if (spins < 4096) {
        FASTLSTM_PAUSE();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  const int n_;
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<bool> flag_{false};
};

}  // namespace detail
}  // namespace fastlstm
