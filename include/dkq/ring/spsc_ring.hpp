// dkq/ring/spsc_ring.hpp - single-producer single-consumer lock-free ring.
//
// Protocol (one producer thread, one consumer thread):
//   producer: fill slots [tail, tail+n), then tail.store(tail+n, release)
//   consumer: read slots [head, head+n), then head.store(head+n, release)
//   each side acquire-loads the other side's index before touching slots.
//
// Each side keeps a private copy of the other side's index and reloads it only
// when the copy says "full" (producer) or "empty" (consumer); in streaming use
// the index lines then move between cores once per many items instead of once
// per item (rigtorp: 5.5 M -> 112 M items/s from this alone). Bulk operations
// publish one index store per batch.
//
// Temporal slip (FastForward, Giacomoni et al., PPoPP 2008, "temporal
// slipping"): when the consumer has to refresh its copy of tail_ and finds the
// producer fewer than `slip_items` (256 bytes of slots) ahead, it executes one
// PAUSE before returning what it found. A consumer that is cheaper per item
// than its producer otherwise settles right behind it: every pop then reads
// the slot line and the tail_ line the producer is writing, four cache-line
// transfers per item, and its polling slows the producer further, so the pair
// stays there (bench/rings/NOTES.md, "SPSC at batch 1: the slow state"). The
// PAUSE costs only on that path (and once per hop in ping-pong use); nothing
// is withheld, so emptiness and the memory orders are unchanged.
//
// Indices are free-running uint32_t, masked on access, so all capacity slots
// are usable (no slack slot) and `tail - head` is the fill level modulo 2^32.
// Capacity is a power of two, 1 .. 2^31.
//
// Layout: read-only configuration, producer-private state, the published tail,
// the published head and consumer-private state each sit on their own 128-byte
// line (static_asserts below), so no write by one side dirties a line the other
// side reads in its fast path.
//
// Element type: trivially copyable (pointers, indices, small POD descriptors);
// slots are overwritten in place without running destructors.
//
// Misuse is defined: operations on an uninitialised ring move nothing; bulk or
// burst with a null buffer moves nothing; commit()/consume() of more than was
// reserved/peeked return an error status and change nothing.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "dkq/base/config.hpp"
#include "dkq/base/status.hpp"
#include "dkq/base/wait.hpp"
#include "dkq/ring/detail.hpp"
#include "dkq/ring/ring_span.hpp"

namespace dkq {

template <class T, class Wait = default_wait>
class spsc_ring {
  static_assert(std::is_trivially_copyable_v<T>, "ring elements must be trivially copyable");
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

 public:
  using value_type = T;

  spsc_ring() noexcept = default;
  spsc_ring(const spsc_ring&) = delete;
  spsc_ring& operator=(const spsc_ring&) = delete;

  // Use caller-provided storage (for example memory on a chosen NUMA node).
  // storage.size() is the capacity and must be a power of two <= 2^31.
  status init(std::span<T> storage) noexcept {
    DKQ_TRY(ring_detail::check_capacity(storage.size()));
    if (storage.data() == nullptr) return {errc::invalid_argument, "ring storage is null"};
    owned_.reset();
    attach(storage.data(), static_cast<std::uint32_t>(storage.size()));
    return ok_status;
  }

  // Allocate storage once, here; nothing allocates afterwards.
  status init(std::uint32_t capacity) noexcept {
    DKQ_TRY(ring_detail::check_capacity(capacity));
    DKQ_TRY(owned_.allocate(capacity));
    attach(owned_.data(), capacity);
    return ok_status;
  }

  std::uint32_t capacity() const noexcept { return cfg_.capacity; }

  // ---- producer side -------------------------------------------------------

  // Push one element; false if the ring is full.
  DKQ_ALWAYS_INLINE bool try_push(const T& v) noexcept {
    const std::uint32_t t = prod_.tail;
    if (DKQ_UNLIKELY(t - prod_.head_cache >= cfg_.capacity)) {
      prod_.head_cache = head_.v.load(std::memory_order_acquire);
      if (t - prod_.head_cache >= cfg_.capacity) return false;
    }
    cfg_.slots[t & cfg_.mask] = v;
    prod_.tail = t + 1;
    prod_.reserved = 0;
    tail_.v.store(t + 1, std::memory_order_release);
    return true;
  }

  // Push one element, waiting with the wait policy while the ring is full.
  // Returns false only on an uninitialised ring.
  bool push(const T& v) noexcept {
    if (DKQ_UNLIKELY(cfg_.capacity == 0)) return false;
    for (std::uint32_t spins = 0; !try_push(v); ++spins) wait_(spins);
    return true;
  }

  // All-or-nothing: push exactly n elements and return n, or push none and
  // return 0 (also when n exceeds the capacity). *free_space, if given, gets
  // the room left afterwards as this producer sees it.
  DKQ_ALWAYS_INLINE std::uint32_t push_bulk(const T* src, std::uint32_t n,
                                            std::uint32_t* free_space = nullptr) noexcept {
    return push_n<true>(src, n, free_space);
  }
  // As many as fit, up to n; returns the number pushed.
  DKQ_ALWAYS_INLINE std::uint32_t push_burst(const T* src, std::uint32_t n,
                                             std::uint32_t* free_space = nullptr) noexcept {
    return push_n<false>(src, n, free_space);
  }

  // Zero-copy: reserve exactly n slots (or none: an empty span), fill them in
  // place, then commit(k) for k <= n to publish the first k. A new reserve
  // replaces an uncommitted one; a push cancels it.
  ring_span<T> reserve(std::uint32_t n) noexcept { return reserve_n<true>(n); }
  // Reserve up to n slots.
  ring_span<T> reserve_burst(std::uint32_t n) noexcept { return reserve_n<false>(n); }

  status commit(std::uint32_t n) noexcept {
    if (DKQ_UNLIKELY(n > prod_.reserved))
      return {errc::invalid_argument, "commit of more slots than reserved", n};
    prod_.tail += n;
    prod_.reserved = 0;
    tail_.v.store(prod_.tail, std::memory_order_release);
    return ok_status;
  }

  // ---- consumer side -------------------------------------------------------

  DKQ_ALWAYS_INLINE bool try_pop(T& out) noexcept {
    const std::uint32_t h = cons_.head;
    if (DKQ_UNLIKELY(cons_.tail_cache == h)) {
      cons_.tail_cache = tail_.v.load(std::memory_order_acquire);
      if (cons_.tail_cache - h < slip_items) cpu_relax();
      if (cons_.tail_cache == h) return false;
    }
    out = cfg_.slots[h & cfg_.mask];
    cons_.head = h + 1;
    cons_.peeked = 0;
    head_.v.store(h + 1, std::memory_order_release);
    return true;
  }

  bool pop(T& out) noexcept {
    if (DKQ_UNLIKELY(cfg_.capacity == 0)) return false;
    for (std::uint32_t spins = 0; !try_pop(out); ++spins) wait_(spins);
    return true;
  }

  DKQ_ALWAYS_INLINE std::uint32_t pop_bulk(T* dst, std::uint32_t n,
                                           std::uint32_t* available = nullptr) noexcept {
    return pop_n<true>(dst, n, available);
  }
  DKQ_ALWAYS_INLINE std::uint32_t pop_burst(T* dst, std::uint32_t n,
                                            std::uint32_t* available = nullptr) noexcept {
    return pop_n<false>(dst, n, available);
  }

  // Zero-copy consume: look at exactly n (or up to n) filled slots in place,
  // then consume(k) for k <= n to free the first k.
  ring_span<const T> peek(std::uint32_t n) noexcept { return peek_n<true>(n); }
  ring_span<const T> peek_burst(std::uint32_t n) noexcept { return peek_n<false>(n); }

  status consume(std::uint32_t n) noexcept {
    if (DKQ_UNLIKELY(n > cons_.peeked))
      return {errc::invalid_argument, "consume of more slots than peeked", n};
    cons_.head += n;
    cons_.peeked = 0;
    head_.v.store(cons_.head, std::memory_order_release);
    return ok_status;
  }

  // ---- observers (exact only when both sides are quiescent) ---------------

  std::uint32_t size_approx() const noexcept {
    return tail_.v.load(std::memory_order_acquire) - head_.v.load(std::memory_order_acquire);
  }
  bool empty_approx() const noexcept { return size_approx() == 0; }

 private:
  void attach(T* slots, std::uint32_t capacity) noexcept {
    cfg_.slots = slots;
    cfg_.capacity = capacity;
    cfg_.mask = capacity - 1;
    prod_ = {};
    cons_ = {};
    tail_.v.store(0, std::memory_order_relaxed);
    head_.v.store(0, std::memory_order_relaxed);
  }

  // Room for the producer, refreshing the cached head only if needed.
  DKQ_ALWAYS_INLINE std::uint32_t producer_room(std::uint32_t want) noexcept {
    std::uint32_t room = cfg_.capacity - (prod_.tail - prod_.head_cache);
    if (room < want) {
      prod_.head_cache = head_.v.load(std::memory_order_acquire);
      room = cfg_.capacity - (prod_.tail - prod_.head_cache);
    }
    return room;
  }
  DKQ_ALWAYS_INLINE std::uint32_t consumer_avail(std::uint32_t want) noexcept {
    std::uint32_t avail = cons_.tail_cache - cons_.head;
    if (avail < want) {
      cons_.tail_cache = tail_.v.load(std::memory_order_acquire);
      avail = cons_.tail_cache - cons_.head;
      if (avail < slip_items) cpu_relax();
    }
    return avail;
  }

  template <bool Fixed>
  DKQ_ALWAYS_INLINE std::uint32_t push_n(const T* src, std::uint32_t n,
                                         std::uint32_t* free_space) noexcept {
    std::uint32_t room = producer_room(n);
    if (DKQ_UNLIKELY(src == nullptr)) n = 0;
    if (n > room) n = Fixed ? 0 : room;
    if (n != 0) {
      ring_detail::copy_in(cfg_.slots, cfg_.mask, prod_.tail, src, n);
      prod_.tail += n;
      prod_.reserved = 0;
      tail_.v.store(prod_.tail, std::memory_order_release);
    }
    if (free_space != nullptr) *free_space = room - n;
    return n;
  }

  template <bool Fixed>
  DKQ_ALWAYS_INLINE std::uint32_t pop_n(T* dst, std::uint32_t n, std::uint32_t* available) noexcept {
    std::uint32_t avail = consumer_avail(n);
    if (DKQ_UNLIKELY(dst == nullptr)) n = 0;
    if (n > avail) n = Fixed ? 0 : avail;
    if (n != 0) {
      ring_detail::copy_out(cfg_.slots, cfg_.mask, cons_.head, dst, n);
      cons_.head += n;
      cons_.peeked = 0;
      head_.v.store(cons_.head, std::memory_order_release);
    }
    if (available != nullptr) *available = avail - n;
    return n;
  }

  template <bool Fixed>
  ring_span<T> reserve_n(std::uint32_t n) noexcept {
    std::uint32_t room = producer_room(n);
    if (n > room) n = Fixed ? 0 : room;
    prod_.reserved = n;
    if (n == 0) return {};
    return ring_detail::spans_at<T, T>(cfg_.slots, cfg_.mask, prod_.tail, n);
  }

  template <bool Fixed>
  ring_span<const T> peek_n(std::uint32_t n) noexcept {
    std::uint32_t avail = consumer_avail(n);
    if (n > avail) n = Fixed ? 0 : avail;
    cons_.peeked = n;
    if (n == 0) return {};
    return ring_detail::spans_at<T, const T>(cfg_.slots, cfg_.mask, cons_.head, n);
  }

  // See "Temporal slip" above: 256 bytes of slots, at least one.
  static constexpr std::uint32_t slip_items =
      sizeof(T) >= 256 ? 1u : static_cast<std::uint32_t>(256 / sizeof(T));

  struct alignas(cache_line) config {
    T* slots = nullptr;
    std::uint32_t capacity = 0;
    std::uint32_t mask = 0;
  };
  struct alignas(cache_line) producer_state {
    std::uint32_t tail = 0;        // next slot to fill (private copy of tail_)
    std::uint32_t head_cache = 0;  // last head_ value seen
    std::uint32_t reserved = 0;    // outstanding reserve() count
  };
  struct alignas(cache_line) consumer_state {
    std::uint32_t head = 0;        // next slot to read (private copy of head_)
    std::uint32_t tail_cache = 0;  // last tail_ value seen
    std::uint32_t peeked = 0;      // outstanding peek() count
  };
  struct alignas(cache_line) shared_index {
    std::atomic<std::uint32_t> v{0};
  };
  static_assert(sizeof(config) == cache_line && sizeof(producer_state) == cache_line &&
                sizeof(consumer_state) == cache_line && sizeof(shared_index) == cache_line,
                "each part of the ring must own exactly one cache line");

  config cfg_;
  producer_state prod_;
  shared_index tail_;
  shared_index head_;
  consumer_state cons_;
  [[no_unique_address]] Wait wait_{};
  ring_detail::owned_slots<T> owned_;
};

}  // namespace dkq
