// A barrier for a fixed group of threads inside one parallel region (one
// wait per step of the recurrence). Groups of one thread cost nothing.
// Waiters spin for a bounded time (kSpinNs: a partner that is a little late
// costs no system call), then sleep on a futex (Linux; elsewhere they
// yield), so a thread that the OS has preempted does not make its partners
// burn their cores, and the time slices they hand back go to it. A wait
// past the spin and far longer than the waiter's own work since its last
// wait is a stall (a partner was off the CPU); the barrier adds up the time
// stalled (core/contention.h).
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FASTLSTM_PAUSE() _mm_pause()
#else
#define FASTLSTM_PAUSE() ((void)0)
#endif

namespace fastlstm {
namespace detail {

// Monotonic time in nanoseconds.
inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Barrier {
 public:
  // One thread's place at the barrier: when it last left it.
  struct Seat {
    int64_t left_ns = now_ns();
  };

  // How long a waiter spins before it sleeps: several steps' worth of
  // imbalance at the small shapes, far below a scheduler time slice.
  static constexpr int64_t kSpinNs = 50000;
  // A stall: a wait past the spin that lasts kStallRatio times the waiter's
  // own work since its last wait; its time beyond that work is stalled time.
  static constexpr int64_t kStallRatio = 2;

  explicit Barrier(int n) : n_(n) {}
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  void wait(Seat& seat) {
    if (n_ <= 1) return;
    const int64_t arrived = now_ns();
    // The generation cannot move before this thread arrives: read it first.
    const uint32_t gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_seq_cst);
      if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all();
      seat.left_ns = arrived;
      return;
    }
    const bool slept = !spin(gen, arrived);
    if (slept) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      while (gen_.load(std::memory_order_seq_cst) == gen) sleep(gen);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    const int64_t left = now_ns(), waited = left - arrived, work = arrived - seat.left_ns;
    if (slept && waited > kStallRatio * work)  // beyond what uneven shares explain
      stalled_ns_.fetch_add(waited - work, std::memory_order_relaxed);
    seat.left_ns = left;
  }

  int size() const { return n_; }
  // The time its waiters stalled, in all (read after the parallel region).
  int64_t stalled_ns() const { return stalled_ns_.load(std::memory_order_relaxed); }

 private:
  // Spins until the generation moves (true) or kSpinNs pass (false).
  bool spin(uint32_t gen, int64_t from) const {
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (gen_.load(std::memory_order_acquire) != gen) return true;
        FASTLSTM_PAUSE();
      }
      if (now_ns() - from >= kSpinNs) return false;
    }
  }

#if defined(__linux__)
  // std::atomic<uint32_t> is a plain 32-bit word on Linux, the futex's type.
  uint32_t* word() { return reinterpret_cast<uint32_t*>(&gen_); }
  void sleep(uint32_t gen) {  // returns at once if gen_ has moved
    syscall(SYS_futex, word(), FUTEX_WAIT_PRIVATE, gen, nullptr, nullptr, 0);
  }
  void wake_all() { syscall(SYS_futex, word(), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0); }
#else
  void sleep(uint32_t) { std::this_thread::yield(); }
  void wake_all() {}
#endif

  const int n_;
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<uint32_t> gen_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int64_t> stalled_ns_{0};
};
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word");

}  // namespace detail
}  // namespace fastlstm
