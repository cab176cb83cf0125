// dkq/ring/fan_in.hpp - many producers, one consumer, without a shared
// producer index: one spsc_ring per producer ("lane"), drained by the single
// consumer in turn.
//
// mpsc_ring serialises its producers on one atomic read-modify-write of the
// shared tail, and each producer then waits for the one before it to publish.
// With one lane per producer nothing is shared between producers at all: a
// push is an spsc_ring push (a plain store of the tail, no RMW), and the only
// cache line that moves per batch is the lane's own index. It is the
// queue-pair-per-thread model of NVMe and SPDK, applied to host rings.
// Measured in the MPSC case of the ring benchmark (bench/rings, row
// dkq_spsc_per_producer): 2.1-3.0x mpsc_ring's throughput at batch 1 in every
// run that has it (docs/benchmarks.md).
//
// What it gives up: a global order. Each lane is FIFO, so every producer's
// elements come out in the order it pushed them, but elements of different
// producers interleave by the consumer's round-robin, not by push time. When
// the order across producers matters, use mpsc_ring.
//
//   fan_in_ring<cmd*> q;
//   q.init(4, 256);                       // 4 lanes of 256 slots, allocated here
//   auto lane = q.attach_producer();      // once per producer thread
//   (*lane)->push_burst(batch, n);        // the lane is a dkq::spsc_ring
//   q.pop_burst(out, 32);                 // consumer: up to 32, lanes in turn
//
// Threads: attach_producer() may be called concurrently (one atomic
// increment); each lane then has exactly one producer thread. All pops come
// from one consumer thread. Lanes are never taken back: a producer thread
// that ends leaves its lane idle.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "dkq/base/status.hpp"
#include "dkq/base/wait.hpp"
#include "dkq/ring/spsc_ring.hpp"

namespace dkq {

template <class T, std::uint32_t MaxLanes = 16, class Wait = default_wait>
class fan_in_ring {
  static_assert(MaxLanes >= 1, "at least one lane");

 public:
  using lane_type = spsc_ring<T, Wait>;

  fan_in_ring() noexcept = default;
  fan_in_ring(const fan_in_ring&) = delete;
  fan_in_ring& operator=(const fan_in_ring&) = delete;

  // `lanes` lanes of `capacity` slots each (a power of two), allocated here.
  status init(std::uint32_t lanes, std::uint32_t capacity) noexcept {
    DKQ_TRY(check_lanes(lanes));
    for (std::uint32_t i = 0; i < lanes; ++i) DKQ_TRY(lanes_[i].init(capacity));
    lanes_n_ = lanes;
    return ok_status;
  }

  // Caller-provided storage (memory on the consumer's NUMA node, say), split
  // evenly: storage.size() / lanes slots per lane, a power of two.
  status init(std::uint32_t lanes, std::span<T> storage) noexcept {
    DKQ_TRY(check_lanes(lanes));
    if (storage.data() == nullptr) return {errc::invalid_argument, "fan-in storage is null"};
    if (storage.size() % lanes != 0)
      return {errc::invalid_argument, "fan-in storage does not split evenly into the lanes", storage.size()};
    const std::size_t each = storage.size() / lanes;
    for (std::uint32_t i = 0; i < lanes; ++i) DKQ_TRY(lanes_[i].init(storage.subspan(i * each, each)));
    lanes_n_ = lanes;
    return ok_status;
  }

  std::uint32_t lanes() const noexcept { return lanes_n_; }

  // ---- producer side -------------------------------------------------------

  // The calling producer's own lane, for its lifetime. errc::no_space once
  // every lane has a producer; errc::not_initialized before init().
  result<lane_type*> attach_producer() noexcept {
    if (lanes_n_ == 0) return status{errc::not_initialized, "fan-in ring not initialised"};
    const std::uint32_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= lanes_n_) {
      next_.fetch_sub(1, std::memory_order_relaxed);
      return status{errc::no_space, "every fan-in lane already has a producer", lanes_n_};
    }
    return &lanes_[i];
  }

  // Lane i directly (setup code that assigns lanes itself; tests).
  lane_type* lane(std::uint32_t i) noexcept { return i < lanes_n_ ? &lanes_[i] : nullptr; }

  // ---- consumer side (one thread) ------------------------------------------

  // Up to n elements, taken lane by lane starting after the lane served first
  // last time, so a busy lane cannot starve the others. Each lane's elements
  // come out in its order. Returns how many were taken.
  std::uint32_t pop_burst(T* dst, std::uint32_t n) noexcept {
    if (DKQ_UNLIKELY(dst == nullptr || lanes_n_ == 0)) return 0;
    std::uint32_t got = 0;
    std::uint32_t l = turn_;
    for (std::uint32_t seen = 0; seen < lanes_n_ && got < n; ++seen) {
      got += lanes_[l].pop_burst(dst + got, n - got);
      l = l + 1 == lanes_n_ ? 0 : l + 1;
    }
    turn_ = turn_ + 1 == lanes_n_ ? 0 : turn_ + 1;
    return got;
  }

  // One element from the next lane that has one.
  bool try_pop(T& out) noexcept {
    for (std::uint32_t seen = 0; seen < lanes_n_; ++seen) {
      const std::uint32_t l = turn_;
      turn_ = turn_ + 1 == lanes_n_ ? 0 : turn_ + 1;
      if (lanes_[l].try_pop(out)) return true;
    }
    return false;
  }

  // Waits with the wait policy until an element arrives. Returns false only
  // on an uninitialised ring.
  bool pop(T& out) noexcept {
    if (DKQ_UNLIKELY(lanes_n_ == 0)) return false;
    for (std::uint32_t spins = 0; !try_pop(out); ++spins) wait_(spins);
    return true;
  }

  // Sum over the lanes (exact only when everyone is quiescent).
  std::uint64_t size_approx() const noexcept {
    std::uint64_t n = 0;
    for (std::uint32_t i = 0; i < lanes_n_; ++i) n += lanes_[i].size_approx();
    return n;
  }

 private:
  status check_lanes(std::uint32_t lanes) const noexcept {
    if (lanes_n_ != 0) return {errc::busy, "fan-in ring already initialised"};
    if (lanes == 0 || lanes > MaxLanes) return {errc::invalid_argument, "lane count must be 1..MaxLanes", lanes};
    return ok_status;
  }

  lane_type lanes_[MaxLanes];
  std::uint32_t lanes_n_ = 0;
  std::uint32_t turn_ = 0;  // consumer-private
  alignas(cache_line) std::atomic<std::uint32_t> next_{0};
  [[no_unique_address]] Wait wait_{};
};

}  // namespace dkq
