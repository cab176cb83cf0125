// bench/rings/peers.hpp - one adapter per queue implementation.
//
// Every adapter has the same shape so the harness loops are written once:
//   queue* create(capacity) / destroy(queue*)        setup, outside timing
//   producer{queue&}: push(src, n) -> pushed         as many as fit (burst)
//                     push1(v) -> bool               single element
//   consumer{queue&}: pop(dst, n) -> popped          as many as available
//                     pop1(v) -> bool
// Each adapter uses the implementation's best native API for the job: bulk or
// burst calls where it has them (dkq, rte_ring, boost spsc_queue, moodycamel
// ConcurrentQueue with tokens), a loop of its single-element try-call where it
// has none (ReaderWriterQueue, atomic_queue, boost queue, TBB). A loop of
// single pushes stops at the first failure, which is burst semantics.
//
// Peer headers are included as system headers (see CMakeLists.txt), so their
// warnings do not trip -Werror on this code.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

#include "dkq/ring.hpp"
#include "harness.hpp"

#if __has_include(<boost/lockfree/spsc_queue.hpp>)
#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <boost/version.hpp>
#define DKQ_BENCH_HAVE_BOOST 1
#endif
#if __has_include(<readerwriterqueue/readerwriterqueue.h>)
#include <readerwriterqueue/readerwriterqueue.h>
#define DKQ_BENCH_HAVE_RWQ 1
#endif
#if __has_include(<concurrentqueue/concurrentqueue.h>)
#include <concurrentqueue/concurrentqueue.h>
#define DKQ_BENCH_HAVE_CQ 1
#endif
#if __has_include(<atomic_queue/atomic_queue.h>)
#include <atomic_queue/atomic_queue.h>
#define DKQ_BENCH_HAVE_ATOMIC_QUEUE 1
#endif
#if defined(DKQ_BENCH_HAVE_TBB)
#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/version.h>
#endif
#if defined(DKQ_BENCH_HAVE_DPDK)
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_version.h>
#endif

namespace dkq_bench {

using elem = std::uint64_t;

enum class mode { spsc, mpsc, mpmc };

// ---- dkq ---------------------------------------------------------------------

// dkq's copying API: try_push/try_pop for single elements, push_burst /
// pop_burst for batches (one index publication per batch).
// Wait policies for the probe rows (bench_rings.cpp, DKQ_BENCH_PROBES=1) that
// explain the multi-producer/consumer results: the policy is only ever called
// inside mpmc_ring's "wait for the earlier claimer to publish" loop here (the
// harness uses try_push/try_pop), so counting its calls counts those waits.
struct wait_counts {
  std::uint64_t waits = 0;   // entries into the wait-for-predecessor loop
  std::uint64_t spins = 0;   // policy calls (spins + yields)
  std::uint64_t yields = 0;  // sched_yield calls
};
inline wait_counts& thread_wait_counts() {
  thread_local wait_counts c;
  return c;
}
template <std::uint32_t SpinLimit>
struct counting_wait {
  void operator()(std::uint32_t spins) const noexcept {
    wait_counts& c = thread_wait_counts();
    if (spins == 0) ++c.waits;
    ++c.spins;
    if (spins >= SpinLimit) ++c.yields;
    dkq::spin_then_yield<SpinLimit>{}(spins);
  }
};
struct counting_spin {
  void operator()(std::uint32_t spins) const noexcept {
    wait_counts& c = thread_wait_counts();
    if (spins == 0) ++c.waits;
    ++c.spins;
    dkq::spin_wait{}(spins);
  }
};

template <class Wait>
struct dkq_wait_name {
  static constexpr const char* value = "dkq";
};
template <>
struct dkq_wait_name<counting_wait<128>> {
  static constexpr const char* value = "dkq_counted";
};
template <>
struct dkq_wait_name<counting_spin> {
  static constexpr const char* value = "dkq_spin_only";
};
template <>
struct dkq_wait_name<counting_wait<1>> {
  static constexpr const char* value = "dkq_yield_at_once";
};

// The harness's producer / consumer interface over a dkq ring held in
// `Queue::r` (shared by every dkq row).
template <class Ring, class Queue>
struct dkq_endpoints {
  struct producer {
    Ring& r;
    explicit producer(Queue& q) : r(q.r) {}
    std::uint32_t push(const elem* s, std::uint32_t n) { return r.push_burst(s, n); }
    bool push1(elem v) { return r.try_push(v); }
  };
  struct consumer {
    Ring& r;
    explicit consumer(Queue& q) : r(q.r) {}
    std::uint32_t pop(elem* d, std::uint32_t n) { return r.pop_burst(d, n); }
    bool pop1(elem& v) { return r.try_pop(v); }
  };
};

template <mode M, class Wait = dkq::default_wait>
struct dkq_impl {
  static constexpr const char* name = dkq_wait_name<Wait>::value;
  static constexpr bool counts_waits = !std::is_same_v<Wait, dkq::default_wait>;
  using ring = std::conditional_t<
      M == mode::spsc, dkq::spsc_ring<elem, Wait>,
      std::conditional_t<M == mode::mpsc, dkq::mpsc_ring<elem, Wait>, dkq::mpmc_ring<elem, Wait>>>;
  struct queue {
    ring r;
    elem* slots = nullptr;
  };
  static queue* create(std::uint32_t cap) {
    queue* q = make_on_node<queue>();
    q->slots = static_cast<elem*>(bench_alloc(sizeof(elem) * cap));
    if (q->slots == nullptr || !q->r.init(std::span<elem>(q->slots, cap)).ok()) std::abort();
    return q;
  }
  static void destroy(queue* q) {
    if (q == nullptr) return;
    bench_free(q->slots);
    destroy_on_node(q);
  }
  using producer = typename dkq_endpoints<ring, queue>::producer;
  using consumer = typename dkq_endpoints<ring, queue>::consumer;
};

// spsc_stack_b1 (issue 17): the ring object itself, no separate slot memory:
// the case builds it on the producer's stack and init(capacity) allocates.
struct dkq_stack_impl {
  static constexpr const char* name = "dkq_on_stack";
  static constexpr bool on_stack = true;
  using ring = dkq::spsc_ring<elem>;
  struct queue {
    ring r;
  };
  static bool init(queue& q, std::uint32_t cap) { return q.r.init(cap).ok(); }
  // The shared fixture still builds one (unused) on the heap.
  static queue* create(std::uint32_t cap) {
    queue* q = make_on_node<queue>();
    if (!init(*q, cap)) std::abort();
    return q;
  }
  static void destroy(queue* q) { destroy_on_node(q); }
  using producer = typename dkq_endpoints<ring, queue>::producer;
  using consumer = typename dkq_endpoints<ring, queue>::consumer;
};

// Probe row: dkq's SPSC ring with twice the slots asked for (so capacity 2 *
// cap), the same slot memory that rte_ring's EXACT_SZ ring gets for cap.
struct dkq_2xslots_impl : dkq_impl<mode::spsc> {
  static constexpr const char* name = "dkq_2xslots";
  static queue* create(std::uint32_t cap) { return dkq_impl<mode::spsc>::create(2 * cap); }
};

// Probe row: 2 * cap slots like dkq_2xslots, but the producer keeps at most
// cap elements in the ring (it reads both indices on every call, as rte_ring
// does), i.e. rte_ring's EXACT_SZ layout: capacity cap on 2 * cap slots.
struct dkq_2xslots_capped_impl : dkq_impl<mode::spsc> {
  static constexpr const char* name = "dkq_2xslots_capped";
  struct queue : dkq_impl<mode::spsc>::queue {
    std::uint32_t limit = 0;
  };
  static queue* create(std::uint32_t cap) {
    queue* q = make_on_node<queue>();
    q->limit = cap;
    q->slots = static_cast<elem*>(bench_alloc(sizeof(elem) * 2 * cap));
    if (q->slots == nullptr || !q->r.init(std::span<elem>(q->slots, 2 * cap)).ok()) std::abort();
    return q;
  }
  static void destroy(queue* q) {
    if (q == nullptr) return;
    bench_free(q->slots);
    destroy_on_node(q);
  }
  struct producer {
    ring& r;
    std::uint32_t limit;
    explicit producer(queue& q) : r(q.r), limit(q.limit) {}
    std::uint32_t push(const elem* s, std::uint32_t n) {
      const std::uint32_t used = r.size_approx();
      const std::uint32_t room = used >= limit ? 0 : limit - used;
      return r.push_burst(s, n < room ? n : room);
    }
    bool push1(elem v) { return r.size_approx() < limit && r.try_push(v); }
  };
  using consumer = dkq_impl<mode::spsc>::consumer;
};

// dkq's zero-copy API (SPSC only): the producer writes values straight into
// the reserved slots and the consumer checks them in place, so no staging
// buffer is copied on either side. Shown next to the copying API, not used for
// the targets (peers are measured through copying APIs).
struct dkq_zc_impl {
  static constexpr const char* name = "dkq_zc";
  using base = dkq_impl<mode::spsc>;
  using queue = base::queue;
  static queue* create(std::uint32_t cap) { return base::create(cap); }
  static void destroy(queue* q) { base::destroy(q); }
  struct producer : base::producer {
    using base::producer::producer;
    // gen(i) gives the i-th value of this batch.
    template <class Gen>
    std::uint32_t push_gen(std::uint32_t n, Gen&& gen) {
      const dkq::ring_span<elem> s = r.reserve_burst(n);
      for (std::uint32_t i = 0; i < s.first_count; ++i) s.first[i] = gen(i);
      for (std::uint32_t i = 0; i < s.second_count; ++i) s.second[i] = gen(s.first_count + i);
      const std::uint32_t k = s.size();
      if (k != 0) (void)r.commit(k);
      return k;
    }
  };
  struct consumer : base::consumer {
    using base::consumer::consumer;
    // visit(first, count) is called for each contiguous run; returns false on a
    // bad element.
    template <class Visit>
    std::uint32_t pop_visit(std::uint32_t n, Visit&& visit, bool& bad) {
      const dkq::ring_span<const elem> s = r.peek_burst(n);
      if (s.first_count != 0 && !visit(s.first, s.first_count)) bad = true;
      if (s.second_count != 0 && !visit(s.second, s.second_count)) bad = true;
      const std::uint32_t k = s.size();
      if (k != 0) (void)r.consume(k);
      return k;
    }
  };
};

// dkq's answer to "many producers, one consumer" without a shared producer
// index: one spsc_ring per producer, drained by the consumer in turn (the
// NVMe/SPDK queue-pair-per-thread model). No read-modify-write and no
// producer ever waits for another. Shown next to dkq's mpsc_ring in the
// MPSC case (same total capacity); not a peer, so not used for the targets.
template <int Producers>
struct dkq_fanin_impl {
  static constexpr const char* name = "dkq_spsc_per_producer";  // dkq::fan_in_ring (name kept: pooled results)
  using ring = dkq::fan_in_ring<elem, static_cast<std::uint32_t>(Producers)>;
  struct queue {
    ring r;
    elem* slots = nullptr;
    std::atomic<std::uint32_t> next_producer{0};
  };
  static queue* create(std::uint32_t cap) {
    queue* q = make_on_node<queue>();
    q->slots = static_cast<elem*>(bench_alloc(sizeof(elem) * cap));
    if (q->slots == nullptr) std::abort();
    if (!q->r.init(static_cast<std::uint32_t>(Producers), std::span<elem>(q->slots, cap)).ok()) std::abort();
    return q;
  }
  static void destroy(queue* q) {
    if (q == nullptr) return;
    bench_free(q->slots);
    destroy_on_node(q);
  }
  struct producer {
    typename ring::lane_type& r;
    // Each producer handle takes the next lane. The harness makes new
    // handles for every run on the same queue (one per thread per run, in
    // any order), so lanes are assigned round-robin here rather than with
    // attach_producer(), which hands each lane out once for good.
    explicit producer(queue& q)
        : r(*q.r.lane(q.next_producer.fetch_add(1, std::memory_order_relaxed) % static_cast<std::uint32_t>(Producers))) {}
    std::uint32_t push(const elem* s, std::uint32_t n) { return r.push_burst(s, n); }
    bool push1(elem v) { return r.try_push(v); }
  };
  struct consumer {
    queue& q;
    explicit consumer(queue& qq) : q(qq) {}
    std::uint32_t pop(elem* d, std::uint32_t n) { return q.r.pop_burst(d, n); }
    bool pop1(elem& v) { return q.r.try_pop(v); }
  };
};

// ---- DPDK rte_ring ----------------------------------------------------------

#if defined(DKQ_BENCH_HAVE_DPDK)
// rte_ring_init() on caller memory: no EAL, no hugepages, no memzone. Exact
// size (RING_F_EXACT_SZ) so "capacity 64" holds 64 elements as dkq's does,
// rather than 63. The *_elem calls with a constant esize of 8 are what the
// classic void* API expands to, without casting our uint64_t table to void**.
//
// Exact = false (probe rows only): the classic power-of-two ring, `cap` slots
// holding cap - 1 elements - the same slot memory as dkq's ring of capacity
// cap. With EXACT_SZ a power-of-two cap gets 2 * cap slots (DPDK: "worst case,
// half the ring space will be wasted"), so its producer never writes a slot
// line the consumer is still reading; see NOTES.md, capacity 64.
template <mode M, bool Exact = true>
struct rte_impl {
  static constexpr const char* name = Exact ? "rte_ring" : "rte_ring_pow2slots";
  struct queue {
    rte_ring* r = nullptr;
  };
  static queue* create(std::uint32_t cap) {
    queue* q = make_on_node<queue>();
    unsigned flags = Exact ? RING_F_EXACT_SZ : 0u;
    if (M == mode::spsc) flags |= RING_F_SP_ENQ;
    if (M != mode::mpmc) flags |= RING_F_SC_DEQ;
    // With EXACT_SZ the ring's internal size is the next power of two above
    // cap, which is what the memory must be sized for.
    const unsigned slots = Exact ? rte_align32pow2(cap + 1) : cap;
    const ssize_t bytes = rte_ring_get_memsize_elem(sizeof(elem), slots);
    if (bytes <= 0) std::abort();
    q->r = static_cast<rte_ring*>(bench_alloc(static_cast<std::size_t>(bytes)));
    if (q->r == nullptr || rte_ring_init(q->r, "dkq-bench", cap, flags) != 0) std::abort();
    return q;
  }
  static void destroy(queue* q) {
    if (q == nullptr) return;
    bench_free(q->r);
    destroy_on_node(q);
  }
  struct producer {
    rte_ring* r;
    explicit producer(queue& q) : r(q.r) {}
    std::uint32_t push(const elem* s, std::uint32_t n) {
      if constexpr (M == mode::spsc)
        return rte_ring_sp_enqueue_burst_elem(r, s, sizeof(elem), n, nullptr);
      else
        return rte_ring_mp_enqueue_burst_elem(r, s, sizeof(elem), n, nullptr);
    }
    bool push1(elem v) {
      if constexpr (M == mode::spsc)
        return rte_ring_sp_enqueue_elem(r, &v, sizeof(elem)) == 0;
      else
        return rte_ring_mp_enqueue_elem(r, &v, sizeof(elem)) == 0;
    }
  };
  struct consumer {
    rte_ring* r;
    explicit consumer(queue& q) : r(q.r) {}
    std::uint32_t pop(elem* d, std::uint32_t n) {
      if constexpr (M == mode::mpmc)
        return rte_ring_mc_dequeue_burst_elem(r, d, sizeof(elem), n, nullptr);
      else
        return rte_ring_sc_dequeue_burst_elem(r, d, sizeof(elem), n, nullptr);
    }
    bool pop1(elem& v) {
      if constexpr (M == mode::mpmc)
        return rte_ring_mc_dequeue_elem(r, &v, sizeof(elem)) == 0;
      else
        return rte_ring_sc_dequeue_elem(r, &v, sizeof(elem)) == 0;
    }
  };
};
#endif

// ---- Boost.Lockfree -----------------------------------------------------------

#if defined(DKQ_BENCH_HAVE_BOOST)
// spsc_queue with run-time capacity; push(ptr, n) / pop(ptr, n) are its bulk
// calls (burst semantics, one index store per call).
struct boost_spsc_impl {
  static constexpr const char* name = "boost_spsc";
  using queue =
      boost::lockfree::spsc_queue<elem, boost::lockfree::allocator<node_allocator<elem>>>;
  static queue* create(std::uint32_t cap) { return make_on_node<queue>(cap); }
  static void destroy(queue* q) { destroy_on_node(q); }
  struct producer {
    queue& q;
    std::uint32_t push(const elem* s, std::uint32_t n) {
      return static_cast<std::uint32_t>(q.push(s, n));
    }
    bool push1(elem v) { return q.push(v); }
  };
  struct consumer {
    queue& q;
    std::uint32_t pop(elem* d, std::uint32_t n) { return static_cast<std::uint32_t>(q.pop(d, n)); }
    bool pop1(elem& v) { return q.pop(v); }
  };
};

// boost::lockfree::queue: Michael-Scott linked queue over a fixed node pool
// (fixed_sized: never allocates after construction, so bounded). No bulk API.
struct boost_queue_impl {
  static constexpr const char* name = "boost_queue";
  using queue = boost::lockfree::queue<elem, boost::lockfree::fixed_sized<true>,
                                       boost::lockfree::allocator<node_allocator<elem>>>;
  static queue* create(std::uint32_t cap) { return make_on_node<queue>(cap); }
  static void destroy(queue* q) { destroy_on_node(q); }
  struct producer {
    queue& q;
    std::uint32_t push(const elem* s, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.bounded_push(s[i])) ++i;
      return i;
    }
    bool push1(elem v) { return q.bounded_push(v); }
  };
  struct consumer {
    queue& q;
    std::uint32_t pop(elem* d, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.pop(d[i])) ++i;
      return i;
    }
    bool pop1(elem& v) { return q.pop(v); }
  };
};
#endif

// ---- moodycamel ---------------------------------------------------------------

#if defined(DKQ_BENCH_HAVE_RWQ)
// ReaderWriterQueue: SPSC, blocks of slots; try_enqueue never allocates, so
// it is bounded by the size given at construction (rounded up to its block
// sizes - a request for 64 gets 127 usable slots). No bulk API.
struct rwq_impl {
  static constexpr const char* name = "moodycamel_rwq";
  using queue = moodycamel::ReaderWriterQueue<elem>;
  static queue* create(std::uint32_t cap) { return make_on_node<queue>(cap); }
  static void destroy(queue* q) { destroy_on_node(q); }
  struct producer {
    queue& q;
    std::uint32_t push(const elem* s, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.try_enqueue(s[i])) ++i;
      return i;
    }
    bool push1(elem v) { return q.try_enqueue(v); }
  };
  struct consumer {
    queue& q;
    std::uint32_t pop(elem* d, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.try_dequeue(d[i])) ++i;
      return i;
    }
    bool pop1(elem& v) { return q.try_dequeue(v); }
  };
};
#endif

#if defined(DKQ_BENCH_HAVE_CQ)
// moodycamel's block storage comes from its traits; route it through the
// NUMA-aware allocator like every other queue.
struct cq_traits : moodycamel::ConcurrentQueueDefaultTraits {
  static void* malloc(std::size_t n) { return bench_alloc(n); }
  static void free(void* p) { bench_free(p); }
};

// ConcurrentQueue with explicit producer and consumer tokens and its bulk
// calls, the configuration its author recommends for throughput. try_* never
// allocates, so the queue is bounded by the blocks preallocated for
// `capacity` and the declared producer count (it can hold somewhat more than
// `capacity`: each producer owns whole 32-slot blocks).
template <int Producers>
struct cq_impl {
  static constexpr const char* name = "moodycamel_cq";
  using queue = moodycamel::ConcurrentQueue<elem, cq_traits>;
  static queue* create(std::uint32_t cap) {
    return make_on_node<queue>(std::size_t{cap}, std::size_t{Producers}, std::size_t{0});
  }
  static void destroy(queue* q) { destroy_on_node(q); }
  struct producer {
    queue& q;
    moodycamel::ProducerToken tok;
    explicit producer(queue& qq) : q(qq), tok(qq) {}
    std::uint32_t push(const elem* s, std::uint32_t n) {
      // try_enqueue_bulk is all-or-nothing; fall back to single elements so
      // a nearly full queue still takes what fits (burst semantics).
      if (q.try_enqueue_bulk(tok, s, n)) return n;
      std::uint32_t i = 0;
      while (i < n && q.try_enqueue(tok, s[i])) ++i;
      return i;
    }
    bool push1(elem v) { return q.try_enqueue(tok, v); }
  };
  struct consumer {
    queue& q;
    moodycamel::ConsumerToken tok;
    explicit consumer(queue& qq) : q(qq), tok(qq) {}
    std::uint32_t pop(elem* d, std::uint32_t n) {
      return static_cast<std::uint32_t>(q.try_dequeue_bulk(tok, d, n));
    }
    bool pop1(elem& v) { return q.try_dequeue(tok, v); }
  };
};
#endif

// ---- atomic_queue --------------------------------------------------------------

#if defined(DKQ_BENCH_HAVE_ATOMIC_QUEUE)
// AtomicQueueB: run-time capacity, atomic elements with 0 as the empty marker
// (our values are never 0), slots spread across cache lines by index
// shuffling. SPSC=true drops the CAS on head/tail. No bulk API.
//
// Not FIFO with several producers: try_push claims a slot index first and
// stores later, and a producer that claimed index k+capacity can store into
// the shared slot before a preempted producer that claimed k. On our
// oversubscribed 2-CPU runs that happens within milliseconds, so its rows are
// checked for loss and duplication (checksum) but not for per-producer order.
template <mode M>
struct aq_impl {
  static constexpr const char* name = "atomic_queue";
  static constexpr bool fifo = M == mode::spsc;
  using queue = atomic_queue::AtomicQueueB<elem, node_allocator<elem>, elem{0}, true, false,
                                           M == mode::spsc>;
  static queue* create(std::uint32_t cap) { return make_on_node<queue>(unsigned{cap}); }
  static void destroy(queue* q) { destroy_on_node(q); }
  struct producer {
    queue& q;
    std::uint32_t push(const elem* s, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.try_push(s[i])) ++i;
      return i;
    }
    bool push1(elem v) { return q.try_push(v); }
  };
  struct consumer {
    queue& q;
    std::uint32_t pop(elem* d, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.try_pop(d[i])) ++i;
      return i;
    }
    bool pop1(elem& v) { return q.try_pop(v); }
  };
};
#endif

// ---- TBB ------------------------------------------------------------------------

#if defined(DKQ_BENCH_HAVE_TBB)
// concurrent_bounded_queue with set_capacity; try_push / try_pop are its
// non-blocking calls. No bulk API.
struct tbb_impl {
  static constexpr const char* name = "tbb_bounded";
  using queue = tbb::concurrent_bounded_queue<elem, node_allocator<elem>>;
  static queue* create(std::uint32_t cap) {
    queue* q = make_on_node<queue>();
    q->set_capacity(cap);
    return q;
  }
  static void destroy(queue* q) { destroy_on_node(q); }
  struct producer {
    queue& q;
    std::uint32_t push(const elem* s, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.try_push(s[i])) ++i;
      return i;
    }
    bool push1(elem v) { return q.try_push(v); }
  };
  struct consumer {
    queue& q;
    std::uint32_t pop(elem* d, std::uint32_t n) {
      std::uint32_t i = 0;
      while (i < n && q.try_pop(d[i])) ++i;
      return i;
    }
    bool pop1(elem& v) { return q.try_pop(v); }
  };
};
#endif

}  // namespace dkq_bench
