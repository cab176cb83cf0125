// The VFIO backend's monotonic clock: never goes backwards, advances, has a
// sane resolution, and sleep_us sleeps at least as long as asked.
#include "dkq/platform/vfio/clock.hpp"

#include <gtest/gtest.h>

#include <cstdint>

using dkq::vfio::monotonic_clock;

TEST(MonotonicClock, NeverGoesBackwardsAndAdvances) {
  std::uint64_t prev = monotonic_clock::now_ns();
  const std::uint64_t first = prev;
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t t = monotonic_clock::now_ns();
    ASSERT_GE(t, prev) << "at read " << i;
    prev = t;
  }
  EXPECT_GT(prev, first) << "100000 reads without the clock advancing";
  EXPECT_GT(first, 0u);
}

TEST(MonotonicClock, ResolutionIsSane) {
  const std::uint64_t res = monotonic_clock::resolution_ns();
  EXPECT_GE(res, 1u);
  // High-resolution timers give 1 ns; even a tickless-off kernel without them
  // gives one jiffy (at most 10 ms at HZ=100).
  EXPECT_LE(res, 10000000u);
  // Reads are finer than a millisecond in practice: two reads around a short
  // busy loop differ by less than a second and the clock is in nanoseconds,
  // not microseconds (a microsecond clock would make most of these deltas 0 or
  // a multiple of 1000).
  int not_multiple_of_1000 = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t a = monotonic_clock::now_ns();
    std::uint64_t b = a;
    while (b == a) b = monotonic_clock::now_ns();
    ASSERT_LT(b - a, 1000000000u);
    if ((b - a) % 1000 != 0) ++not_multiple_of_1000;
  }
  if (res == 1) {
    EXPECT_GT(not_multiple_of_1000, 0);
  }
}

TEST(MonotonicClock, SleepSleepsAtLeastAsLong) {
  const std::uint64_t t0 = monotonic_clock::now_ns();
  monotonic_clock::sleep_us(2000);
  const std::uint64_t dt = monotonic_clock::now_ns() - t0;
  EXPECT_GE(dt, 2000000u);
  EXPECT_LT(dt, 2000000000u);  // generous: a loaded CI machine, never seconds
  monotonic_clock::sleep_us(0);
}

TEST(MonotonicClock, ToNs) {
  static_assert(monotonic_clock::to_ns(timespec{2, 5}) == 2000000005u);
  EXPECT_EQ(monotonic_clock::to_ns(timespec{0, 999999999}), 999999999u);
}
