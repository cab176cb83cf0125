// dkq/platform/vfio/clock.hpp - the Linux backend's monotonic clock and short sleep.
//
//   auto deadline = dkq::vfio::monotonic_clock::now_ns() + 5'000'000'000ull;
//   while (!ready() && dkq::vfio::monotonic_clock::now_ns() < deadline)
//     dkq::vfio::monotonic_clock::sleep_us(100);
//
// What a driver core's platform gives it for deadlines (controller-ready
// timeouts, per-command timeouts) and for latency measurement: nanoseconds from
// an arbitrary origin that never go backwards.
//
// Which clock (clock_gettime(2), Linux man-pages): CLOCK_MONOTONIC.
//   - Both CLOCK_MONOTONIC and CLOCK_MONOTONIC_RAW are "not affected by
//     discontinuous jumps in the system time" and do not count suspend, so
//     either is safe for deadlines; CLOCK_REALTIME is not (it can be set).
//   - CLOCK_MONOTONIC "is affected by the incremental adjustments performed by
//     adjtime(3) and NTP": its rate is corrected towards real seconds, so a
//     5 s controller timeout is 5 s. CLOCK_MONOTONIC_RAW is the uncorrected
//     hardware rate ("not subject to NTP adjustments"), which helps only when
//     comparing against another raw counter - not a driver's need.
//   - CLOCK_MONOTONIC is the clock the sleeping calls take (clock_nanosleep(2),
//     timerfd_create(2), and the relative timeouts of epoll_wait(2)), so a
//     deadline computed from now_ns() and a sleep until it agree.
//     clock_nanosleep(2) does not accept CLOCK_MONOTONIC_RAW.
//   - It is read in the vDSO without a system call on every Linux
//     architecture dkq builds for (vdso(7)), which matters when a poll loop
//     reads it per completion batch.
// CLOCK_BOOTTIME would count suspend; a suspended machine suspends the device
// too, so a command timeout should not expire during it.
#pragma once

#include <time.h>

#include <cerrno>
#include <cstdint>

namespace dkq::vfio {

struct monotonic_clock {
  static constexpr clockid_t id = CLOCK_MONOTONIC;

  // Nanoseconds since an unspecified point (on Linux: boot, minus suspend).
  // Consecutive calls never decrease; they may return equal values.
  static std::uint64_t now_ns() noexcept {
    timespec ts{};
    ::clock_gettime(id, &ts);  // cannot fail for CLOCK_MONOTONIC with a valid pointer
    return to_ns(ts);
  }

  // The clock's resolution as the kernel reports it (clock_getres(2)): 1 ns
  // with high-resolution timers, one jiffy (1-10 ms) without.
  static std::uint64_t resolution_ns() noexcept {
    timespec ts{};
    if (::clock_getres(id, &ts) != 0) return 0;
    return to_ns(ts);
  }

  // Sleeps at least `us` microseconds on this clock; a signal does not cut the
  // sleep short (the remainder is slept, as clock_nanosleep(2) returns it).
  static void sleep_us(std::uint64_t us) noexcept {
    timespec ts{static_cast<time_t>(us / 1000000u), static_cast<long>(us % 1000000u) * 1000L};
    while (::clock_nanosleep(id, 0, &ts, &ts) == EINTR) {
    }
  }

  static constexpr std::uint64_t to_ns(const timespec& ts) noexcept {
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
  }
};

}  // namespace dkq::vfio
