// dkq/base/wait.hpp - wait policies for blocking ring and queue operations.
//
// A wait policy is a small object with `void operator()(std::uint32_t spins)`,
// called with the number of unsuccessful attempts so far; blocking operations
// loop "try, then wait(n++)". The core never blocks in the OS on its own: no
// futex, no <thread>. The default spins with cpu_relax() and then yields the
// CPU through a hook that the build can point at sched_yield (POSIX) or at
// nothing (a dext, or a bare-metal build).
#pragma once

#include <cstdint>

#include "dkq/base/barrier.hpp"

#if defined(DKQ_OS_LINUX) || defined(DKQ_OS_APPLE)
#if __has_include(<sched.h>)
#include <sched.h>
#define DKQ_HAVE_SCHED_YIELD 1
#endif
#endif

namespace dkq {

// Spin only. Right when every party has its own core (the usual polled
// driver), wrong when threads share a core.
struct spin_wait {
  DKQ_ALWAYS_INLINE void operator()(std::uint32_t) const noexcept { cpu_relax(); }
};

// Spin `SpinLimit` times, then give the CPU away on every further attempt.
// Wake-up after a real block costs 1-3 us against ~150 ns for a queue round
// trip (atomic_queue README), so spinning first is the right default; yielding
// afterwards keeps an overcommitted machine (a CI VM, QEMU TCG) making progress.
template <std::uint32_t SpinLimit = 128>
struct spin_then_yield {
  DKQ_ALWAYS_INLINE void operator()(std::uint32_t spins) const noexcept {
    if (spins < SpinLimit) {
      cpu_relax();
      return;
    }
#if defined(DKQ_HAVE_SCHED_YIELD)
    sched_yield();
#else
    cpu_relax();
#endif
  }
};

using default_wait = spin_then_yield<>;

}  // namespace dkq
