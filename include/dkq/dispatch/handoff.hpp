// dkq/dispatch/handoff.hpp - hand completions to another thread through a host
// ring without ever dropping one.
//
// The interrupt (or polling) thread drains a completion queue; the request
// owners may live elsewhere (a DriverKit dispatch queue, a Linux worker). The
// drain pushes each completion into a dkq host ring. A device completion
// cannot be "un-reaped" once its head doorbell is written, so the drain budget
// is first limited to the room the ring is known to have: room only grows
// while the producer is not pushing (the consumer frees slots), so a push of
// at most `room` items always succeeds.
#pragma once

#include <concepts>
#include <cstdint>

#include "dkq/base/config.hpp"

namespace dkq {

// Any dkq host ring: capacity(), size_approx(), try_push().
template <class R>
concept handoff_ring = requires(R& r, const typename R::value_type& v) {
  { r.capacity() } noexcept -> std::convertible_to<std::uint32_t>;
  { r.size_approx() } noexcept -> std::convertible_to<std::uint32_t>;
  { r.try_push(v) } noexcept -> std::same_as<bool>;
};

template <handoff_ring Ring>
class completion_handoff {
 public:
  using value_type = typename Ring::value_type;

  constexpr completion_handoff() noexcept = default;
  constexpr explicit completion_handoff(Ring& ring) noexcept : ring_(&ring) {}

  // The budget to pass to reap(): min(budget, free room in the ring). Exact
  // for a single-producer ring (spsc, mpsc with this as the only producer).
  DKQ_ALWAYS_INLINE std::uint32_t budget(std::uint32_t want) const noexcept {
    const std::uint32_t used = ring_->size_approx();
    const std::uint32_t cap = ring_->capacity();
    const std::uint32_t room = used >= cap ? 0 : cap - used;
    return want < room ? want : room;
  }

  // Push one completion; true unless more were pushed than budget() allowed
  // (then the caller has a bug, and the item is counted in dropped()).
  DKQ_ALWAYS_INLINE bool push(const value_type& v) noexcept {
    if (DKQ_LIKELY(ring_->try_push(v))) {
      ++pushed_;
      return true;
    }
    ++dropped_;
    return false;
  }

  constexpr std::uint64_t pushed() const noexcept { return pushed_; }
  constexpr std::uint64_t dropped() const noexcept { return dropped_; }

 private:
  Ring* ring_ = nullptr;
  std::uint64_t pushed_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace dkq
