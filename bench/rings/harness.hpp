// bench/rings/harness.hpp - thread pinning, NUMA placement and waiting for the
// ring benchmarks. Everything here is shared by dkq and every peer so that the
// only thing that differs between two rows of a table is the queue itself.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#if defined(DKQ_BENCH_HAVE_NUMA)
#include <numa.h>
#endif

namespace dkq_bench {

// ---- CPUs ------------------------------------------------------------------

// The CPUs this process may run on, in order. Roles are mapped onto them
// round-robin: role 0 (first producer) on the first CPU, role 1 on the second,
// and so on. On a 2-CPU machine a 2P2C case therefore puts one producer and
// one consumer on each CPU - oversubscribed, and said so in the report.
inline const std::vector<int>& allowed_cpus() {
  static const std::vector<int> cpus = [] {
    std::vector<int> v;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) v.push_back(c);
    }
    if (v.empty()) v.push_back(0);
    return v;
  }();
  return cpus;
}

inline int cpu_for_role(int role) {
  const auto& cpus = allowed_cpus();
  return cpus[static_cast<std::size_t>(role) % cpus.size()];
}

// Google Benchmark does not pin its threads; each benchmark thread pins itself
// before the timed loop. Pinning matters more than anything else for ring
// numbers: a migrating consumer turns cache-to-cache transfers into misses.
inline bool pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

// ---- NUMA placement ----------------------------------------------------------

// True when libnuma is usable and the machine has more than one node; only then
// is placement worth anything (with one node every page is local anyway).
inline bool numa_multi_node() {
#if defined(DKQ_BENCH_HAVE_NUMA)
  static const bool multi = numa_available() >= 0 && numa_max_node() > 0;
  return multi;
#else
  return false;
#endif
}

inline int numa_node_count() {
#if defined(DKQ_BENCH_HAVE_NUMA)
  if (numa_available() >= 0) return numa_max_node() + 1;
#endif
  return 1;
}

inline int node_of_cpu(int cpu) {
#if defined(DKQ_BENCH_HAVE_NUMA)
  if (numa_multi_node()) {
    const int n = numa_node_of_cpu(cpu);
    return n < 0 ? 0 : n;
  }
#endif
  (void)cpu;
  return 0;
}

// The node that allocations made through bench_alloc() land on. Set while a
// fixture is built (under the fixture mutex, before any benchmark thread uses
// it); peers whose allocators are default-constructed (atomic_queue, TBB,
// moodycamel traits) read it from here.
inline std::atomic<int>& alloc_node() {
  static std::atomic<int> node{0};
  return node;
}

// Every ring and every peer's storage comes from here: on a multi-node machine
// bound to the consumer's node (the consumer reads every slot and most index
// lines, so it should hit local memory), otherwise 128-byte aligned heap.
// A 128-byte header records the size so the unsized free of moodycamel's
// traits can give the pages back to libnuma.
inline constexpr std::size_t alloc_header = 128;

inline void* bench_alloc(std::size_t bytes) {
  const std::size_t total = bytes + alloc_header;
  void* raw = nullptr;
#if defined(DKQ_BENCH_HAVE_NUMA)
  if (numa_multi_node()) raw = numa_alloc_onnode(total, alloc_node().load());
#endif
  if (raw == nullptr && !numa_multi_node())
    raw = ::operator new(total, std::align_val_t{alloc_header}, std::nothrow);
  if (raw == nullptr) return nullptr;
  *static_cast<std::size_t*>(raw) = total;
  return static_cast<unsigned char*>(raw) + alloc_header;
}

inline void bench_free(void* p) noexcept {
  if (p == nullptr) return;
  void* raw = static_cast<unsigned char*>(p) - alloc_header;
#if defined(DKQ_BENCH_HAVE_NUMA)
  if (numa_multi_node()) {
    numa_free(raw, *static_cast<std::size_t*>(raw));
    return;
  }
#endif
  ::operator delete(raw, std::align_val_t{alloc_header});
}

// Standard allocator over bench_alloc, for peers that take one.
template <class T>
struct node_allocator {
  using value_type = T;
  node_allocator() noexcept = default;
  template <class U>
  node_allocator(const node_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    void* p = bench_alloc(n * sizeof(T));
    if (p == nullptr) std::abort();  // benchmarks run with exceptions on, but abort is clearer
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { bench_free(p); }
  template <class U>
  bool operator==(const node_allocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const node_allocator<U>&) const noexcept {
    return false;
  }
};

// Construct a queue object itself (its index lines, not only its slots) on
// the chosen node.
template <class Q, class... A>
Q* make_on_node(A&&... args) {
  void* p = bench_alloc(sizeof(Q));
  if (p == nullptr) std::abort();
  return ::new (p) Q(static_cast<A&&>(args)...);
}
template <class Q>
void destroy_on_node(Q* q) noexcept {
  if (q == nullptr) return;
  q->~Q();
  bench_free(q);
}

// ---- waiting -----------------------------------------------------------------

inline void cpu_pause() noexcept {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// The harness's own wait when a queue is full or empty, identical for every
// implementation: spin briefly (the other side is usually on another core and
// about to make room), then yield so that oversubscribed cases (2P2C on two
// CPUs) give the CPU to the thread that can make progress instead of burning
// a whole time slice. Returns true when the run was aborted - by another
// thread, or here because nothing moved for `stall_limit` (a queue that
// reports "full" to its producer and "empty" to its consumers forever would
// otherwise hang the whole suite; see moodycamel_cq in NOTES.md).
inline constexpr auto stall_limit = std::chrono::seconds(2);

// sched_yield calls made by harness_wait on this thread (reported by the
// probe rows only: how often a side waited long enough to give its CPU away).
inline std::uint64_t& harness_yields() noexcept {
  thread_local std::uint64_t n = 0;
  return n;
}

// Spins before the first sched_yield: 64 (about 2 us of PAUSE on this Zen 3
// guest). DKQ_BENCH_SPIN overrides it for probe experiments only.
inline std::uint32_t harness_spin_limit() noexcept {
  static const std::uint32_t n = [] {
    const char* e = std::getenv("DKQ_BENCH_SPIN");
    const unsigned long v = e != nullptr ? std::strtoul(e, nullptr, 10) : 0;
    return v != 0 ? static_cast<std::uint32_t>(v) : std::uint32_t{64};
  }();
  return n;
}

// Retries without PAUSE before the PAUSE phase: 0 by default. One PAUSE takes
// about 30-37 ns on this guest, a quarter of the time a 32-element batch takes
// at 250 M/s, so a waiting side notices room only that late; DKQ_BENCH_POLL=N
// (probe experiments only) retries N times back to back first.
inline std::uint32_t harness_busy_polls() noexcept {
  static const std::uint32_t n = [] {
    const char* e = std::getenv("DKQ_BENCH_POLL");
    return e != nullptr ? static_cast<std::uint32_t>(std::strtoul(e, nullptr, 10)) : 0u;
  }();
  return n;
}

inline bool harness_wait(std::uint32_t& spins, std::atomic<bool>& abort) noexcept {
  thread_local std::chrono::steady_clock::time_point since;
  const std::uint32_t polls = harness_busy_polls();
  const std::uint32_t limit = harness_spin_limit() + polls;
  if (++spins < limit) {
    if (spins > polls) cpu_pause();
    return false;
  }
  if (abort.load(std::memory_order_relaxed)) return true;
  if (spins == limit) {
    since = std::chrono::steady_clock::now();
  } else if ((spins & 255) == 0 && std::chrono::steady_clock::now() - since > stall_limit) {
    abort.store(true);
    return true;
  }
  ++harness_yields();
  sched_yield();
  return false;
}

// Producer p's n-th element (n counts from 1): producer in the top 16 bits,
// sequence in the low 48. Never 0, which atomic_queue reserves as its empty
// marker, and enough for the consumer to check loss, duplication and order.
inline constexpr unsigned seq_bits = 48;
inline constexpr std::uint64_t seq_mask = (std::uint64_t{1} << seq_bits) - 1;
inline constexpr std::uint64_t make_value(std::uint64_t producer, std::uint64_t n) noexcept {
  return (producer << seq_bits) | n;
}

}  // namespace dkq_bench
