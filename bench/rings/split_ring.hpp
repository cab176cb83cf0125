// bench/rings/split_ring.hpp - PROBE ONLY (DKQ_BENCH_PROBES=1): a copy of
// include/dkq/ring/mpmc_ring.hpp whose head and tail sit on separate cache
// lines, to measure whether the shared head/tail line costs dkq (and
// rte_ring, which has the same layout) anything. Not used by anything else.
//
// Original header comment follows.
//
// The two-phase head/tail algorithm of DPDK's rte_ring, written for C++ atomics:
//
//   enqueue: 1. claim [old_head, old_head+n) by moving prod.head
//               (MP: one CAS for the whole batch; SP: a plain store)
//            2. copy the elements into the claimed slots
//            3. wait until prod.tail == old_head (earlier claimers published),
//               then prod.tail.store(old_head+n, release)
//   dequeue mirrors it on cons.head / cons.tail against prod.tail.
//
// Claiming n slots per read-modify-write is what keeps this fast under
// contention: a contended RMW costs about one cache-line transfer, so a shared
// counter bounds throughput near 1/L per operation regardless of thread count;
// a burst of 32 divides that cost by 32.
//
// Memory ordering, and why each is there:
//  - head load acquire, head CAS release on success / acquire on failure: two
//    producers must be ordered pairwise, otherwise the second can read an older
//    cons.tail than the first did and compute a free count that underflows.
//    This is the ordering bug fixed in DPDK in 2025 (commit a4ad0eba9d, "ring:
//    establish safe partial order in default mode"), which only shows on arm64
//    cores with RCpc acquire (LDAPR), e.g. Apple M1-class CPUs.
//  - opposing tail load acquire: pairs with the other role's release of its
//    tail, so slots are read only after they were written (and overwritten
//    only after they were read).
//  - wait-for-predecessor load acquire: the release store of our tail must
//    carry the predecessor's element writes to the consumer (a plain store by
//    another thread does not extend a release sequence).
//
// A producer preempted between steps 1 and 3 stalls later producers in step 3
// (DPDK's "lock-waiter preemption"); the wait policy yields after spinning so
// an overcommitted machine still makes progress.
#pragma once
#include "dkq/ring/mpmc_ring.hpp"  // ring_sync

#include <atomic>
#include <cstdint>
#include <span>
#include <type_traits>

#include "dkq/base/config.hpp"
#include "dkq/base/status.hpp"
#include "dkq/base/wait.hpp"
#include "dkq/ring/detail.hpp"

namespace dkq_probe {
using namespace dkq;


template <class T, ring_sync Prod, ring_sync Cons, class Wait = default_wait>
class basic_ring {
  static_assert(std::is_trivially_copyable_v<T>, "ring elements must be trivially copyable");
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

 public:
  using value_type = T;

  basic_ring() noexcept = default;
  basic_ring(const basic_ring&) = delete;
  basic_ring& operator=(const basic_ring&) = delete;

  status init(std::span<T> storage) noexcept {
    DKQ_TRY(ring_detail::check_capacity(storage.size()));
    if (storage.data() == nullptr) return {errc::invalid_argument, "ring storage is null"};
    owned_.reset();
    attach(storage.data(), static_cast<std::uint32_t>(storage.size()));
    return ok_status;
  }
  status init(std::uint32_t capacity) noexcept {
    DKQ_TRY(ring_detail::check_capacity(capacity));
    DKQ_TRY(owned_.allocate(capacity));
    attach(owned_.data(), capacity);
    return ok_status;
  }

  std::uint32_t capacity() const noexcept { return capacity_; }

  // Exactly n or nothing; returns n or 0. *free_space gets the room left.
  DKQ_ALWAYS_INLINE std::uint32_t push_bulk(const T* src, std::uint32_t n,
                                            std::uint32_t* free_space = nullptr) noexcept {
    return enqueue<true>(src, n, free_space);
  }
  // Up to n; returns how many were pushed.
  DKQ_ALWAYS_INLINE std::uint32_t push_burst(const T* src, std::uint32_t n,
                                             std::uint32_t* free_space = nullptr) noexcept {
    return enqueue<false>(src, n, free_space);
  }
  DKQ_ALWAYS_INLINE bool try_push(const T& v) noexcept { return enqueue<true>(&v, 1, nullptr) == 1; }
  bool push(const T& v) noexcept {
    if (DKQ_UNLIKELY(capacity_ == 0)) return false;
    for (std::uint32_t spins = 0; !try_push(v); ++spins) wait_(spins);
    return true;
  }

  DKQ_ALWAYS_INLINE std::uint32_t pop_bulk(T* dst, std::uint32_t n,
                                           std::uint32_t* available = nullptr) noexcept {
    return dequeue<true>(dst, n, available);
  }
  DKQ_ALWAYS_INLINE std::uint32_t pop_burst(T* dst, std::uint32_t n,
                                            std::uint32_t* available = nullptr) noexcept {
    return dequeue<false>(dst, n, available);
  }
  DKQ_ALWAYS_INLINE bool try_pop(T& out) noexcept { return dequeue<true>(&out, 1, nullptr) == 1; }
  bool pop(T& out) noexcept {
    if (DKQ_UNLIKELY(capacity_ == 0)) return false;
    for (std::uint32_t spins = 0; !try_pop(out); ++spins) wait_(spins);
    return true;
  }

  std::uint32_t size_approx() const noexcept {
    return prod_.tail.load(std::memory_order_acquire) - cons_.tail.load(std::memory_order_acquire);
  }
  bool empty_approx() const noexcept { return size_approx() == 0; }

 private:
  struct headtail {
    alignas(cache_line) std::atomic<std::uint32_t> head{0};
    alignas(cache_line) std::atomic<std::uint32_t> tail{0};
  };
  static_assert(sizeof(headtail) == 2 * cache_line);

  void attach(T* slots, std::uint32_t capacity) noexcept {
    slots_ = slots;
    capacity_ = capacity;
    mask_ = capacity - 1;
    for (headtail* ht : {&prod_, &cons_}) {
      ht->head.store(0, std::memory_order_relaxed);
      ht->tail.store(0, std::memory_order_relaxed);
    }
  }

  // Step 1: claim up to n entries on side `own` against `other`'s tail.
  // `room(old, other_tail)` gives how many can be claimed. Returns the count
  // claimed and sets old_head.
  template <ring_sync Sync, bool Fixed, class Room>
  DKQ_ALWAYS_INLINE std::uint32_t claim(headtail& own, const headtail& other, std::uint32_t n,
                                        std::uint32_t& old_head, std::uint32_t& left,
                                        Room room) noexcept {
    if constexpr (Sync == ring_sync::single) {
      old_head = own.head.load(std::memory_order_relaxed);
      const std::uint32_t avail = room(old_head, other.tail.load(std::memory_order_acquire));
      const std::uint32_t k = n <= avail ? n : (Fixed ? 0 : avail);
      left = avail - k;
      if (k != 0) own.head.store(old_head + k, std::memory_order_relaxed);
      return k;
    } else {
      old_head = own.head.load(std::memory_order_acquire);
      for (;;) {
        const std::uint32_t avail = room(old_head, other.tail.load(std::memory_order_acquire));
        const std::uint32_t k = n <= avail ? n : (Fixed ? 0 : avail);
        left = avail - k;
        if (k == 0) return 0;
        if (own.head.compare_exchange_weak(old_head, old_head + k, std::memory_order_release,
                                           std::memory_order_acquire))
          return k;
      }
    }
  }

  // Step 3: publish [old_head, old_head+k) after every earlier claimer did.
  template <ring_sync Sync>
  DKQ_ALWAYS_INLINE void publish(headtail& own, std::uint32_t old_head, std::uint32_t k) noexcept {
    if constexpr (Sync == ring_sync::multi) {
      // Usually no earlier claimer is still copying; the waiting loop (which
      // may call sched_yield) lives out of line so the fast path does not
      // spill registers around a call it never makes.
      if (DKQ_UNLIKELY(own.tail.load(std::memory_order_acquire) != old_head))
        wait_for_tail(own, old_head);
    }
    own.tail.store(old_head + k, std::memory_order_release);
  }
  DKQ_NOINLINE void wait_for_tail(headtail& own, std::uint32_t old_head) noexcept {
    for (std::uint32_t spins = 0; own.tail.load(std::memory_order_acquire) != old_head; ++spins)
      wait_(spins);
  }

  template <bool Fixed>
  DKQ_ALWAYS_INLINE std::uint32_t enqueue(const T* src, std::uint32_t n,
                                          std::uint32_t* free_space) noexcept {
    if (DKQ_UNLIKELY(src == nullptr)) n = 0;
    std::uint32_t old_head = 0, left = 0;
    const std::uint32_t cap = capacity_;
    const std::uint32_t k = claim<Prod, Fixed>(
        prod_, cons_, n, old_head, left,
        [cap](std::uint32_t head, std::uint32_t cons_tail) { return cap - (head - cons_tail); });
    if (free_space != nullptr) *free_space = left;
    if (k == 0) return 0;
    ring_detail::copy_in(slots_, mask_, old_head, src, k);
    publish<Prod>(prod_, old_head, k);
    return k;
  }

  template <bool Fixed>
  DKQ_ALWAYS_INLINE std::uint32_t dequeue(T* dst, std::uint32_t n, std::uint32_t* available) noexcept {
    if (DKQ_UNLIKELY(dst == nullptr)) n = 0;
    std::uint32_t old_head = 0, left = 0;
    const std::uint32_t k = claim<Cons, Fixed>(
        cons_, prod_, n, old_head, left,
        [](std::uint32_t head, std::uint32_t prod_tail) { return prod_tail - head; });
    if (available != nullptr) *available = left;
    if (k == 0) return 0;
    ring_detail::copy_out(slots_, mask_, old_head, dst, k);
    publish<Cons>(cons_, old_head, k);
    return k;
  }

  // Read-only after init; its own line.
  alignas(cache_line) T* slots_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t mask_ = 0;
  headtail prod_;
  headtail cons_;
  [[no_unique_address]] Wait wait_{};
  ring_detail::owned_slots<T> owned_;
};

template <class T, class Wait = default_wait>
using split_mpsc_ring = basic_ring<T, ring_sync::multi, ring_sync::single, Wait>;
template <class T, class Wait = default_wait>
using split_mpmc_ring = basic_ring<T, ring_sync::multi, ring_sync::multi, Wait>;

}  // namespace dkq_probe
