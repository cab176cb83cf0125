// bench/rings/spsc_batch1.cpp - the two-thread harness of issue 17, standalone:
// one producer and one consumer pinned to CPUs 0 and 1, capacity 1024,
// uint64_t, push_burst(buf, 1) / pop_burst(buf, 1), against rte_ring in the
// same process. What varies is where the spsc_ring object lives:
//
//   stack:OFF   on the calling (main) thread's stack, OFF bytes below the
//               frame of the function that runs the threads (OFF = 0 is the
//               issue's case; sweep OFF to move the object within a page)
//   heap        operator new (128-byte aligned)
//   static      a namespace-scope object
//   prodstack   on the producer's own stack (the calling thread produces)
//
// Usage: dkq_spsc_batch1 [--items N] [--reps R] [--try] [--pdelay N | --cdelay N] PLACEMENT...
// Prints one line per repetition and implementation: M items/s, the ratio
// to rte_ring of the same repetition, the object's address mod 4096, and how
// often each side found the ring full/empty (per 1000 items).
#include <pthread.h>
#include <sys/resource.h>
#include <sched.h>

#include <algorithm>
#include <alloca.h>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "dkq/ring.hpp"

#if defined(DKQ_BENCH_HAVE_DPDK)
#include <rte_ring.h>
#include <rte_ring_elem.h>
#endif

namespace {

using ring_t = dkq::spsc_ring<std::uint64_t>;

std::uint64_t g_items = 20'000'000;
bool g_try = false;
// Extra work per item on one side (a dependent chain of adds, no memory):
// forces the ring into its near-empty (--pdelay) or near-full (--cdelay)
// regime, so the cost of each regime can be measured on its own.
unsigned g_pdelay = 0, g_cdelay = 0;

inline void spin_work(unsigned n) {
  for (unsigned i = 0; i < n; ++i) asm volatile("" ::: "memory");
}  // try_push/try_pop instead of push_burst/pop_burst(…, 1)

void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  if (pthread_setaffinity_np(pthread_self(), sizeof(s), &s) != 0) {
    std::fprintf(stderr, "pin to CPU %d failed\n", cpu);
    std::exit(1);
  }
}

struct result {
  double mps = 0;
  std::uint64_t full = 0, empty = 0;
  // Fill level sampled by the consumer every 1024 items: near empty (< 16),
  // near full (> capacity - 16), in between.
  std::uint64_t lo = 0, mid = 0, hi = 0;
  long csw = 0;  // involuntary context switches of both threads (other load)
};

long invol_csw() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nivcsw;
}

// Producer loop: the harness (buf local to the thread).
template <class Push>
std::uint64_t produce(Push push) {
  std::uint64_t full = 0;
  std::uint64_t buf[1];
  for (std::uint64_t i = 1; i <= g_items; ++i) {
    buf[0] = i;
    spin_work(g_pdelay);
    while (!push(buf)) ++full;
  }
  return full;
}

template <class Pop, class Fill>
std::uint64_t consume(Pop pop, Fill fill, bool& bad, result& res) {
  std::uint64_t empty = 0;
  std::uint64_t buf[1];
  for (std::uint64_t i = 1; i <= g_items; ++i) {
    while (!pop(buf)) ++empty;
    if (buf[0] != i) bad = true;
    spin_work(g_cdelay);
    if ((i & 1023) == 0) {
      const std::uint32_t f = fill();
      if (f < 16)
        ++res.lo;
      else if (f > 1024 - 16)
        ++res.hi;
      else
        ++res.mid;
    }
  }
  return empty;
}

template <class Push, class Pop, class Fill>
result run_pair(Push push, Pop pop, Fill fill, bool producer_is_caller) {
  std::atomic<int> ready{0};
  std::uint64_t full = 0, empty = 0;
  long csw_c = 0, csw_p = 0;
  result r;
  bool bad = false;
  std::chrono::steady_clock::time_point t0, t1;
  auto cons = [&] {
    pin(1);
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    const long c0 = invol_csw();
    empty = consume(pop, fill, bad, r);
    t1 = std::chrono::steady_clock::now();
    csw_c = invol_csw() - c0;
  };
  auto prod = [&] {
    pin(0);
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    const long c0 = invol_csw();
    t0 = std::chrono::steady_clock::now();
    full = produce(push);
    csw_p = invol_csw() - c0;
  };
  std::thread c(cons);
  if (producer_is_caller) {
    prod();
  } else {
    std::thread p(prod);
    p.join();
  }
  c.join();
  if (bad) {
    std::fprintf(stderr, "element out of order\n");
    std::exit(1);
  }
  r.csw = csw_c + csw_p;
  r.mps = static_cast<double>(g_items) / std::chrono::duration<double>(t1 - t0).count() / 1e6;
  r.full = full;
  r.empty = empty;
  return r;
}

result run_dkq(ring_t& r, bool producer_is_caller) {
  if (!r.init(1024u).ok()) std::abort();
  if (g_try)
    return run_pair([&](const std::uint64_t* b) { return r.try_push(b[0]); },
                    [&](std::uint64_t* b) { return r.try_pop(b[0]); },
                    [&] { return r.size_approx(); }, producer_is_caller);
  return run_pair([&](const std::uint64_t* b) { return r.push_burst(b, 1) == 1; },
                  [&](std::uint64_t* b) { return r.pop_burst(b, 1) == 1; },
                  [&] { return r.size_approx(); }, producer_is_caller);
}

// The case: the ring object is a local of the function that starts
// the threads. `off` bytes of alloca below the caller's frame move it.
__attribute__((noinline)) result dkq_on_stack(bool producer_is_caller, const void** where) {
  ring_t r;
  *where = &r;
  return run_dkq(r, producer_is_caller);
}

ring_t g_static_ring;

#if defined(DKQ_BENCH_HAVE_DPDK)
result run_rte() {
  const unsigned slots = rte_align32pow2(1024 + 1);
  const ssize_t bytes = rte_ring_get_memsize_elem(sizeof(std::uint64_t), slots);
  auto* r = static_cast<rte_ring*>(::operator new(static_cast<std::size_t>(bytes), std::align_val_t{128}));
  if (rte_ring_init(r, "b1", 1024, RING_F_EXACT_SZ | RING_F_SP_ENQ | RING_F_SC_DEQ) != 0) std::abort();
  result res;
  if (g_try)
    res = run_pair([&](const std::uint64_t* b) { std::uint64_t v = b[0]; return rte_ring_sp_enqueue_elem(r, &v, 8) == 0; },
                   [&](std::uint64_t* b) { return rte_ring_sc_dequeue_elem(r, b, 8) == 0; },
                   [&] { return rte_ring_count(r); }, false);
  else
    res = run_pair([&](const std::uint64_t* b) { return rte_ring_sp_enqueue_burst_elem(r, b, 8, 1, nullptr) == 1; },
                   [&](std::uint64_t* b) { return rte_ring_sc_dequeue_burst_elem(r, b, 8, 1, nullptr) == 1; },
                   [&] { return rte_ring_count(r); }, false);
  ::operator delete(r, std::align_val_t{128});
  return res;
}
#endif

result run_placement(const std::string& p, const void** where) {
  if (p.rfind("stack:", 0) == 0) {
    const std::size_t off = std::strtoul(p.c_str() + 6, nullptr, 10);
    volatile char* pad = static_cast<char*>(alloca(off + 1));
    pad[0] = 0;
    return dkq_on_stack(false, where);
  }
  if (p == "stack") return dkq_on_stack(false, where);
  if (p == "prodstack") return dkq_on_stack(true, where);
  if (p == "heap") {
    auto* r = new ring_t;
    *where = r;
    result res = run_dkq(*r, false);
    delete r;
    return res;
  }
  if (p == "static") {
    *where = &g_static_ring;
    return run_dkq(g_static_ring, false);
  }
  std::fprintf(stderr, "unknown placement %s\n", p.c_str());
  std::exit(2);
}

// Failed calls per item on each side, the fill-level samples in percent, and
// involuntary context switches (non-zero: another process took a CPU).
std::string tail(const result& r) {
  const double n = static_cast<double>(r.lo + r.mid + r.hi);
  char b[200];
  std::snprintf(b, sizeof b, "fullcalls/item %.2f emptycalls/item %.2f fill lo/mid/hi %% %.0f/%.0f/%.0f icsw %ld",
                static_cast<double>(r.full) / static_cast<double>(g_items),
                static_cast<double>(r.empty) / static_cast<double>(g_items),
                n > 0 ? 100.0 * static_cast<double>(r.lo) / n : 0.0,
                n > 0 ? 100.0 * static_cast<double>(r.mid) / n : 0.0,
                n > 0 ? 100.0 * static_cast<double>(r.hi) / n : 0.0, r.csw);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::vector<std::string> places;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--items" && i + 1 < argc)
      g_items = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (a == "--pdelay" && i + 1 < argc)
      g_pdelay = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--cdelay" && i + 1 < argc)
      g_cdelay = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--try")
      g_try = true;
    else
      places.push_back(a);
  }
  if (places.empty()) places.push_back("stack");
  for (int rep = 0; rep < reps; ++rep) {
    double rte = 0;
#if defined(DKQ_BENCH_HAVE_DPDK)
    const result rr = run_rte();
    rte = rr.mps;
    std::printf("rep %d rte_ring %-12s %7.2f M/s ratio 1.00 obj%%4096    - %s\n", rep, "heap", rr.mps,
                tail(rr).c_str());
#endif
    for (const auto& p : places) {
      const void* where = nullptr;
      const result r = run_placement(p, &where);
      std::printf("rep %d dkq      %-12s %7.2f M/s ratio %.2f obj%%4096 %4lu %s\n", rep, p.c_str(),
                  r.mps, rte > 0 ? r.mps / rte : 0.0,
                  static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(where) % 4096),
                  tail(r).c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}
