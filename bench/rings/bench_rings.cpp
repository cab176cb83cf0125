// bench/rings/bench_rings.cpp - dkq's host rings against established peers,
// side by side in one binary and one run.
//
// Cases (names are what scripts/bench_report.py groups by; the `impl:` part
// names the implementation, everything else is the case):
//   spsc_stream/cap:C/batch:B/impl:X   1 producer -> 1 consumer, streaming
//   spsc_pingpong/cap:1024/impl:X      round trip over two rings
//   spsc_stack_b1/cap:1024/batch:1/impl:X   issue 17: dkq's ring object on
//       the producer's stack, init(1024), push_burst/pop_burst of 1
//   mpsc_stream/cap:1024/batch:B/impl:X   2 producers -> 1 consumer
//   mpmc_stream/cap:1024/batch:B/impl:X   2 producers -> 2 consumers
//
// One benchmark iteration moves one batch per producer (and the matching
// share per consumer); every thread runs the same number of iterations, so
// the consumers finish exactly when everything produced has arrived.
//
// Counters (consumer side, summed over consumers):
//   items_per_second  elements delivered per second of wall time
//   ns_per_item       its inverse, in nanoseconds (round trip for ping-pong)
//   full_per_kitem    times a producer found the queue full, per 1000 items
//   empty_per_kitem   times a consumer found it empty, per 1000 items
// The full/empty counts show whether small capacities really fill: a case
// whose queue never fills measures only the best-case streaming path.
//
// Every element is checked on arrival (producer id and sequence number): loss,
// duplication or reordering aborts the benchmark with SkipWithError.
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "peers.hpp"

namespace dkq_bench {
namespace {

constexpr std::uint32_t max_batch = 256;

struct case_cfg {
  std::uint32_t capacity = 1024;
  std::uint32_t batch = 1;
  int producers = 1;
  int consumers = 1;
  bool probe = false;  // probe rows also report calls per 1000 items
  bool burst1 = false;  // batch 1 through the burst calls (push(buf, 1)), not push1
};

// ---- shared fixture -------------------------------------------------------------
//
// Google Benchmark starts all threads of a run together, but it offers no
// barrier before the timed loop, so the queue cannot be built by thread 0
// alone while the others wait. Instead the first thread to arrive builds it
// under a mutex and the others pick it up. The queue is kept across the runs
// of one benchmark (every run leaves it empty) and destroyed when the next
// benchmark builds its own, so only one benchmark's memory is live at a time.

struct fixture_base {
  virtual ~fixture_base() = default;
  std::atomic<bool> abort{false};      // set by the first thread that finds an error
  std::atomic<bool> poisoned{false};   // an aborted run may leave elements behind
  int arrivals = 0;                    // threads that joined so far (all runs)
  std::atomic<std::uint64_t> sum{0};   // multi-consumer checksum
  std::atomic<int> consumers_done{0};
  // spsc_stack_b1: the producer's on-stack queue, handed to the consumer.
  std::atomic<void*> stack_q{nullptr};
  std::atomic<bool> stack_done{false};
};

template <class Impl>
struct fixture : fixture_base {
  typename Impl::queue* q = nullptr;
  typename Impl::queue* back = nullptr;  // second ring for ping-pong
  ~fixture() override {
    Impl::destroy(q);
    Impl::destroy(back);
  }
};

std::mutex& fixture_mutex() {
  static std::mutex m;
  return m;
}
std::unique_ptr<fixture_base>& live_fixture() {
  static std::unique_ptr<fixture_base> f;
  return f;
}
const void*& live_owner() {
  static const void* owner = nullptr;
  return owner;
}

// `owner` identifies the registered benchmark; `node_cpu` is the consumer's
// CPU, whose NUMA node the memory goes on.
template <class Impl>
fixture<Impl>& acquire(const void* owner, std::uint32_t cap, bool two_rings, int node_cpu,
                       int threads) {
  std::lock_guard<std::mutex> lock(fixture_mutex());
  auto& live = live_fixture();
  if (live_owner() != owner || live == nullptr || live->poisoned) {
    live.reset();
    alloc_node().store(node_of_cpu(node_cpu));
    auto f = std::make_unique<fixture<Impl>>();
    f->q = Impl::create(cap);
    if (two_rings) f->back = Impl::create(cap);
    live = std::move(f);
    live_owner() = owner;
  }
  auto* f = static_cast<fixture<Impl>*>(live.get());
  // The first thread of each run resets the per-run state; runs never
  // overlap, so no thread of the previous run can still be using it.
  if (f->arrivals++ % threads == 0) {
    f->abort.store(false);
    f->sum.store(0);
    f->consumers_done.store(0);
  }
  return *f;
}

void fail(benchmark::State& st, fixture_base& f, const char* why) {
  f.abort.store(true);
  f.poisoned = true;
  st.SkipWithError(why);
}

void set_counters(benchmark::State& st, double items, double full, double empty,
                  double total_items) {
  using C = benchmark::Counter;
  st.counters["items_per_second"] = C(items, C::kIsRate);
  // kIsRate|kInvert yields seconds per item; scaling the value by 1e-9 makes
  // the inverse come out in nanoseconds, which is what the tables show.
  st.counters["ns_per_item"] = C(items * 1e-9, C::kIsRate | C::kInvert);
  const double k = total_items > 0 ? 1000.0 / total_items : 0.0;
  st.counters["full_per_kitem"] = C(full * k);
  st.counters["empty_per_kitem"] = C(empty * k);
}

// Probe rows whose ring counts its waits for an earlier claimer (peers.hpp,
// counting_wait): the counts of this thread, per 1000 items of the run.
template <class Impl>
void wait_counters_begin() {
  if constexpr (requires { Impl::counts_waits; }) thread_wait_counts() = {};
}
template <class Impl>
void wait_counters_end(benchmark::State& st, double total_items) {
  if constexpr (requires { Impl::counts_waits; }) {
    if constexpr (Impl::counts_waits) {
      const wait_counts c = thread_wait_counts();
      const double k = total_items > 0 ? 1000.0 / total_items : 0.0;
      st.counters["pred_waits_per_kitem"] = static_cast<double>(c.waits) * k;
      st.counters["pred_spins_per_kitem"] = static_cast<double>(c.spins) * k;
      st.counters["pred_yields_per_kitem"] = static_cast<double>(c.yields) * k;
    }
  }
}

// Probe rows: this thread's context switches during the timed loop, per 1000
// items (voluntary: it blocked or called sched_yield; involuntary: the
// scheduler took the CPU away, e.g. at the end of a time slice).
// Also the harness's own sched_yield calls (harness_wait) on this thread.
struct csw_snapshot {
  long vol = 0, invol = 0;
  std::uint64_t yields = 0;
  static csw_snapshot now() {
    rusage ru{};
    getrusage(RUSAGE_THREAD, &ru);
    return {ru.ru_nvcsw, ru.ru_nivcsw, harness_yields()};
  }
};
void csw_counters(benchmark::State& st, const csw_snapshot& start, double total_items) {
  const csw_snapshot end = csw_snapshot::now();
  const double k = total_items > 0 ? 1000.0 / total_items : 0.0;
  st.counters["vcsw_per_kitem"] = static_cast<double>(end.vol - start.vol) * k;
  st.counters["icsw_per_kitem"] = static_cast<double>(end.invol - start.invol) * k;
  st.counters["hyield_per_kitem"] = static_cast<double>(end.yields - start.yields) * k;
}

// Whether an implementation promises per-producer FIFO order (all but
// multi-producer atomic_queue, see peers.hpp). Loss and duplication are
// checked for every implementation.
template <class Impl>
constexpr bool promises_fifo() {
  if constexpr (requires { Impl::fifo; })
    return Impl::fifo;
  else
    return true;
}

template <class P>
concept has_push_gen = requires(P p) { p.push_gen(1u, [](std::uint32_t) { return elem{}; }); };
template <class C>
concept has_pop_visit = requires(C c, bool& b) {
  c.pop_visit(1u, [](const elem*, std::uint32_t) { return true; }, b);
};

// ---- streaming: P producers -> C consumers -----------------------------------------

template <class Impl>
void stream_producer(benchmark::State& st, fixture<Impl>& f, const case_cfg& c, int id,
                     typename Impl::queue* own = nullptr) {
  typename Impl::producer p{own != nullptr ? *own : *f.q};
  const std::uint32_t batch = c.batch;
  std::uint64_t next = 1, full = 0, calls = 0;
  elem buf[max_batch];
  wait_counters_begin<Impl>();
  const csw_snapshot csw0 = csw_snapshot::now();
  for (auto _ : st) {
    std::uint32_t done = 0, spins = 0;
    if constexpr (has_push_gen<typename Impl::producer>) {
      while (done < batch) {
        const std::uint64_t base = next + done;
        const std::uint32_t k =
            p.push_gen(batch - done, [&](std::uint32_t i) { return make_value(static_cast<std::uint64_t>(id), base + i); });
        if (k == 0) {
          if (spins == 0) ++full;
          if (harness_wait(spins, f.abort)) break;
        } else {
          done += k;
          spins = 0;
          ++calls;
        }
      }
    } else {
      for (std::uint32_t i = 0; i < batch; ++i) buf[i] = make_value(static_cast<std::uint64_t>(id), next + i);
      if (batch == 1 && !c.burst1) {
        while (!p.push1(buf[0])) {
          if (spins == 0) ++full;
          if (harness_wait(spins, f.abort)) break;
        }
        done = 1;
      } else {
        while (done < batch) {
          const std::uint32_t k = p.push(buf + done, batch - done);
          if (k == 0) {
            if (spins == 0) ++full;
            if (harness_wait(spins, f.abort)) break;
          } else {
            done += k;
            spins = 0;
            ++calls;
          }
        }
      }
    }
    if (f.abort.load(std::memory_order_relaxed)) {
      f.poisoned = true;
      st.SkipWithError("aborted: bad element or no progress for 2 s");
      break;
    }
    next += batch;
  }
  const double total = static_cast<double>(st.iterations()) * batch * c.producers;
  set_counters(st, 0, static_cast<double>(full), 0, total);
  wait_counters_end<Impl>(st, total);
  // Successful push calls per 1000 items: batch 32 pushed whole is 31.25;
  // more means the batches were split (pushed as they found room).
  if (c.probe && batch > 1 && total > 0)
    st.counters["pushes_per_kitem"] = static_cast<double>(calls) * 1000.0 / total;
  if (c.probe) csw_counters(st, csw0, total);
}

template <class Impl>
void stream_consumer(benchmark::State& st, fixture<Impl>& f, const case_cfg& c,
                     typename Impl::queue* own = nullptr) {
  typename Impl::consumer q{own != nullptr ? *own : *f.q};
  // Each iteration takes this consumer's share of one round of batches.
  const std::uint32_t share = c.batch * static_cast<std::uint32_t>(c.producers / c.consumers);
  const std::uint32_t chunk = std::min(share, max_batch);
  const bool exact = c.consumers == 1;  // one consumer sees every sequence number
  constexpr bool fifo = promises_fifo<Impl>();
  std::uint64_t last[2] = {0, 0};
  std::uint64_t sum = 0, empty = 0, calls = 0;
  bool bad = false;
  elem buf[max_batch];
  wait_counters_begin<Impl>();
  const csw_snapshot csw0 = csw_snapshot::now();

  // Per element: the producer id must exist and its sequence must be the
  // next one (one consumer) or at least increase (several consumers, each
  // sees a subsequence of every producer's FIFO order).
  auto check = [&](const elem* v, std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint64_t prod = v[i] >> seq_bits, seq = v[i] & seq_mask;
      if (prod >= static_cast<std::uint64_t>(c.producers)) return false;
      if constexpr (fifo) {
        if (exact ? seq != last[prod] + 1 : seq <= last[prod]) return false;
        last[prod] = seq;
      }
      sum += v[i];
    }
    return true;
  };

  for (auto _ : st) {
    std::uint32_t done = 0, spins = 0;
    while (done < share) {
      std::uint32_t k;
      if constexpr (has_pop_visit<typename Impl::consumer>) {
        k = q.pop_visit(std::min(chunk, share - done), check, bad);
      } else if (share == 1 && !c.burst1) {
        k = q.pop1(buf[0]) ? 1u : 0u;
        if (k != 0 && !check(buf, 1)) bad = true;
      } else {
        k = q.pop(buf, std::min(chunk, share - done));
        if (k != 0 && !check(buf, k)) bad = true;
      }
      if (k == 0) {
        if (spins == 0) ++empty;
        if (harness_wait(spins, f.abort)) break;
      } else {
        done += k;
        spins = 0;
        ++calls;
      }
      if (DKQ_UNLIKELY(bad)) break;
    }
    if (bad) {
      fail(st, f, "element lost, duplicated or out of order");
      break;
    }
    if (f.abort.load(std::memory_order_relaxed)) {
      f.poisoned = true;
      st.SkipWithError("aborted: bad element or no progress for 2 s");
      break;
    }
  }

  const auto per_producer = static_cast<std::uint64_t>(st.iterations()) * c.batch;
  if (!bad && !f.abort.load()) {
    if (exact && fifo) {
      for (int p = 0; p < c.producers; ++p)
        if (last[p] != per_producer) fail(st, f, "consumer finished with elements missing");
    }
    {
      // The sums of what each consumer took must add up to the sum of
      // everything produced (catches loss and duplication where the order
      // check cannot). The last consumer to finish checks.
      f.sum.fetch_add(sum);
      if (f.consumers_done.fetch_add(1) + 1 == c.consumers) {
        std::uint64_t want = 0;
        for (int p = 0; p < c.producers; ++p)
          want += per_producer * (static_cast<std::uint64_t>(p) << seq_bits) +
                  per_producer * (per_producer + 1) / 2;
        if (f.sum.load() != want) fail(st, f, "checksum mismatch across consumers");
      }
    }
  }
  const double items = static_cast<double>(st.iterations()) * share;
  const double total = static_cast<double>(st.iterations()) * c.batch * c.producers;
  set_counters(st, items, 0, static_cast<double>(empty), total);
  wait_counters_end<Impl>(st, total);
  if (c.probe && c.batch > 1 && total > 0)
    st.counters["pops_per_kitem"] = static_cast<double>(calls) * 1000.0 / total;
  if (c.probe) csw_counters(st, csw0, total);
}

template <class Impl>
void stream_case(benchmark::State& st, const case_cfg* c) {
  const int t = st.thread_index();
  const bool is_producer = t < c->producers;
  // Roles map round-robin onto the allowed CPUs (harness.hpp); memory goes on
  // the node of the first consumer's CPU.
  if (!pin_self(cpu_for_role(t))) {
    st.SkipWithError("pthread_setaffinity_np failed");
    return;
  }
  auto& f = acquire<Impl>(c, c->capacity, false, cpu_for_role(c->producers), st.threads());
  if (is_producer)
    stream_producer<Impl>(st, f, *c, t);
  else
    stream_consumer<Impl>(st, f, *c);
}

// ---- issue 17: the ring object on the producer's stack, burst of 1 ---------------
//
// What an application writes: the ring is a local of the thread that
// produces, init(1024) allocates its slots, and both sides move one element
// per push_burst / pop_burst call. The producer builds the ring in its own
// frame each run and hands its address to the consumer; peers without an
// on-stack form (rte_ring) use the shared heap queue, as in every other case.

template <class Impl>
void stack_case(benchmark::State& st, const case_cfg* c) {
  const int t = st.thread_index();
  if (!pin_self(cpu_for_role(t))) {
    st.SkipWithError("pthread_setaffinity_np failed");
    return;
  }
  auto& f = acquire<Impl>(c, c->capacity, false, cpu_for_role(1), st.threads());
  if constexpr (requires { Impl::on_stack; }) {
    if (t == 0) {
      typename Impl::queue local;
      if (!Impl::init(local, c->capacity)) {
        fail(st, f, "ring init failed");
        f.stack_q.store(&local);  // let the consumer start and see the abort
      } else {
        f.stack_q.store(&local);
        stream_producer<Impl>(st, f, *c, 0, &local);
      }
      // The consumer still reads `local` until it has everything.
      while (!f.stack_done.load() && !f.abort.load()) cpu_pause();
      while (!f.stack_done.load()) cpu_pause();
      f.stack_done.store(false);
      f.stack_q.store(nullptr);
    } else {
      void* q = nullptr;
      while ((q = f.stack_q.load()) == nullptr) cpu_pause();
      stream_consumer<Impl>(st, f, *c, static_cast<typename Impl::queue*>(q));
      f.stack_done.store(true);
    }
  } else {
    if (t == 0)
      stream_producer<Impl>(st, f, *c, 0);
    else
      stream_consumer<Impl>(st, f, *c);
  }
}

// ---- ping-pong: round trip over two SPSC rings -----------------------------------

template <class Impl>
void pingpong_case(benchmark::State& st, const case_cfg* c) {
  const int t = st.thread_index();
  if (!pin_self(cpu_for_role(t))) {
    st.SkipWithError("pthread_setaffinity_np failed");
    return;
  }
  auto& f = acquire<Impl>(c, c->capacity, true, cpu_for_role(1), st.threads());
  // Thread 0 sends on `q` and waits for the echo on `back`; thread 1 echoes.
  typename Impl::producer out{t == 0 ? *f.q : *f.back};
  typename Impl::consumer in{t == 0 ? *f.back : *f.q};
  std::uint64_t next = 1;
  for (auto _ : st) {
    elem v = 0;
    std::uint32_t spins = 0;
    bool aborted = false;
    if (t == 0) {
      while (!out.push1(next))
        if ((aborted = harness_wait(spins, f.abort))) break;
      spins = 0;
      while (!aborted && !in.pop1(v))
        if ((aborted = harness_wait(spins, f.abort))) break;
      if (!aborted && v != next) {
        fail(st, f, "ping-pong reply does not match");
        break;
      }
    } else {
      while (!in.pop1(v))
        if ((aborted = harness_wait(spins, f.abort))) break;
      spins = 0;
      while (!aborted && !out.push1(v))
        if ((aborted = harness_wait(spins, f.abort))) break;
    }
    if (aborted) {
      f.poisoned = true;
      st.SkipWithError("aborted: no progress for 2 s");
      break;
    }
    ++next;
  }
  // Only the initiator counts round trips, so ns_per_item is the round-trip time.
  const double rt = t == 0 ? static_cast<double>(st.iterations()) : 0.0;
  set_counters(st, rt, 0, 0, 0);
}

// ---- one thread: push a batch, pop it back -------------------------------------
//
// DPDK's ring_perf "single lcore bulk enq+deq": no second core, so no
// coherence traffic; what is left is the instruction cost of the calls and
// copies. It is the least noisy case on a shared machine and the one to
// compare when changing ring code (CPU time, not wall time).

template <class Impl>
void one_thread_case(benchmark::State& st, const case_cfg* c) {
  if (!pin_self(cpu_for_role(0))) {
    st.SkipWithError("pthread_setaffinity_np failed");
    return;
  }
  auto& f = acquire<Impl>(c, c->capacity, false, cpu_for_role(0), 1);
  typename Impl::producer p{*f.q};
  typename Impl::consumer q{*f.q};
  const std::uint32_t batch = c->batch;
  std::uint64_t next = 1;
  elem in[max_batch], out[max_batch];
  for (auto _ : st) {
    for (std::uint32_t i = 0; i < batch; ++i) in[i] = next + i;
    std::uint32_t got = 0;
    if (batch == 1) {
      if (!p.push1(in[0]) || !q.pop1(out[0])) {
        fail(st, f, "single push/pop failed on an empty ring");
        break;
      }
      got = 1;
    } else {
      // The ring is empty and larger than a batch, so both calls move all.
      if (p.push(in, batch) != batch) {
        fail(st, f, "batch did not fit an empty ring");
        break;
      }
      while (got < batch) got += q.pop(out + got, batch - got);
    }
    bool ok = true;
    for (std::uint32_t i = 0; i < got; ++i) ok &= out[i] == next + i;
    if (!ok) {
      fail(st, f, "element lost, duplicated or out of order");
      break;
    }
    next += batch;
  }
  const double items = static_cast<double>(st.iterations()) * batch;
  set_counters(st, items, 0, 0, items);
}

// ---- registration -----------------------------------------------------------------

std::vector<std::unique_ptr<case_cfg>>& configs() {
  static std::vector<std::unique_ptr<case_cfg>> v;
  return v;
}

template <class Impl>
void add_stream(const char* family, case_cfg c) {
  configs().push_back(std::make_unique<case_cfg>(c));
  const case_cfg* cfg = configs().back().get();
  std::string name = std::string(family) + "/cap:" + std::to_string(c.capacity) +
                     "/batch:" + std::to_string(c.batch) + "/impl:" + Impl::name;
  benchmark::RegisterBenchmark(name.c_str(), stream_case<Impl>, cfg)
      ->Threads(c.producers + c.consumers)
      ->UseRealTime();
}

template <class Impl>
void add_stack_b1() {
  configs().push_back(std::make_unique<case_cfg>(case_cfg{1024, 1, 1, 1, false, true}));
  const case_cfg* cfg = configs().back().get();
  std::string name = std::string("spsc_stack_b1/cap:1024/batch:1/impl:") + Impl::name;
  benchmark::RegisterBenchmark(name.c_str(), stack_case<Impl>, cfg)->Threads(2)->UseRealTime();
}

template <class Impl>
void add_pingpong() {
  configs().push_back(std::make_unique<case_cfg>(case_cfg{1024, 1, 1, 1}));
  const case_cfg* cfg = configs().back().get();
  std::string name = std::string("spsc_pingpong/cap:1024/impl:") + Impl::name;
  benchmark::RegisterBenchmark(name.c_str(), pingpong_case<Impl>, cfg)->Threads(2)->UseRealTime();
}

template <class... Impls>
void add_spsc_all(case_cfg c) {
  (add_stream<Impls>("spsc_stream", c), ...);
}

template <class Impl>
void add_one_thread(case_cfg c) {
  configs().push_back(std::make_unique<case_cfg>(c));
  const case_cfg* cfg = configs().back().get();
  std::string name = "spsc_1thread/cap:" + std::to_string(c.capacity) +
                     "/batch:" + std::to_string(c.batch) + "/impl:" + Impl::name;
  benchmark::RegisterBenchmark(name.c_str(), one_thread_case<Impl>, cfg);
}

template <class... Impls>
void add_one_thread_all(case_cfg c) {
  (add_one_thread<Impls>(c), ...);
}

template <class... Impls>
void add_pingpong_all() {
  (add_pingpong<Impls>(), ...);
}

template <mode M, class... Impls>
void add_mp_all(case_cfg c) {
  (add_stream<Impls>(M == mode::mpsc ? "mpsc_stream" : "mpmc_stream", c), ...);
}

#define DKQ_SPSC_PEERS dkq_impl<mode::spsc>, dkq_zc_impl DKQ_RTE(mode::spsc) DKQ_BOOST_SPSC DKQ_RWQ DKQ_AQ(mode::spsc)
#if defined(DKQ_BENCH_HAVE_DPDK)
#define DKQ_RTE(m) , rte_impl<m>
#else
#define DKQ_RTE(m)
#endif
#if defined(DKQ_BENCH_HAVE_BOOST)
#define DKQ_BOOST_SPSC , boost_spsc_impl
#define DKQ_BOOST_Q , boost_queue_impl
#else
#define DKQ_BOOST_SPSC
#define DKQ_BOOST_Q
#endif
#if defined(DKQ_BENCH_HAVE_RWQ)
#define DKQ_RWQ , rwq_impl
#else
#define DKQ_RWQ
#endif
#if defined(DKQ_BENCH_HAVE_ATOMIC_QUEUE)
#define DKQ_AQ(m) , aq_impl<m>
#else
#define DKQ_AQ(m)
#endif
#if defined(DKQ_BENCH_HAVE_CQ)
#define DKQ_CQ , cq_impl<2>
#else
#define DKQ_CQ
#endif
#if defined(DKQ_BENCH_HAVE_TBB)
#define DKQ_TBB , tbb_impl
#else
#define DKQ_TBB
#endif

void register_all() {
  for (std::uint32_t cap : {64u, 1024u, 65536u})
    for (std::uint32_t batch : {1u, 8u, 32u, 256u})
      add_spsc_all<DKQ_SPSC_PEERS>(case_cfg{cap, batch, 1, 1});
  for (std::uint32_t batch : {1u, 8u, 32u, 256u})
    add_one_thread_all<dkq_impl<mode::spsc> DKQ_RTE(mode::spsc) DKQ_BOOST_SPSC DKQ_RWQ
                           DKQ_AQ(mode::spsc)>(case_cfg{1024, batch, 1, 1});
  add_stack_b1<dkq_stack_impl>();
#if defined(DKQ_BENCH_HAVE_DPDK)
  add_stack_b1<rte_impl<mode::spsc>>();
#endif
  add_pingpong_all<dkq_impl<mode::spsc> DKQ_RTE(mode::spsc) DKQ_BOOST_SPSC DKQ_RWQ
                       DKQ_AQ(mode::spsc)>();
  for (std::uint32_t batch : {1u, 32u}) {
    add_mp_all<mode::mpsc, dkq_impl<mode::mpsc> DKQ_RTE(mode::mpsc) DKQ_CQ DKQ_AQ(mode::mpsc)
                               DKQ_BOOST_Q DKQ_TBB, dkq_fanin_impl<2>>(case_cfg{1024, batch, 2, 1});
    add_mp_all<mode::mpmc, dkq_impl<mode::mpmc> DKQ_RTE(mode::mpmc) DKQ_CQ DKQ_AQ(mode::mpmc)
                               DKQ_BOOST_Q DKQ_TBB>(case_cfg{1024, batch, 2, 2});
  }
}

// Probe rows, registered only with DKQ_BENCH_PROBES=1 in the environment (so
// the full suite and the committed results do not change): the experiments
// behind the explanations of two misses in NOTES.md.
//   probe_spsc_slots: capacity 64, batch 32 - dkq and rte_ring with the same
//     slot memory both ways (rte_ring_pow2slots: 64 slots holding 63;
//     dkq_2xslots: 128 slots, what rte_ring's EXACT_SZ ring has for 64).
//   probe_mpmc / probe_mpsc: batch 1 - dkq with the wait for an earlier
//     claimer counted (dkq_counted, same policy as dkq), spinning only like
//     rte_ring (dkq_spin_only), or yielding at once (dkq_yield_at_once).
//   probe_mpmc_1p1c: the MPMC rings with one producer and one consumer, i.e.
//     the same code without oversubscribing the two CPUs.
template <class... Impls>
void add_family(const char* family, case_cfg c) {
  (add_stream<Impls>(family, c), ...);
}

#if defined(DKQ_BENCH_HAVE_CQ)
#define DKQ_CQ1 , cq_impl<1>
#else
#define DKQ_CQ1
#endif

void register_probes() {
  add_family<dkq_impl<mode::spsc>, dkq_2xslots_impl, dkq_2xslots_capped_impl DKQ_RTE(mode::spsc) DKQ_BOOST_SPSC>(
      "probe_spsc_slots", case_cfg{64, 32, 1, 1, true});
#if defined(DKQ_BENCH_HAVE_DPDK)
  add_stream<rte_impl<mode::spsc, false>>("probe_spsc_slots", case_cfg{64, 32, 1, 1, true});
#endif
  add_family<dkq_impl<mode::mpmc>, dkq_impl<mode::mpmc, counting_wait<128>>,
             dkq_impl<mode::mpmc, counting_spin>,
             dkq_impl<mode::mpmc, counting_wait<1>> DKQ_RTE(mode::mpmc)
                 DKQ_CQ>(
      "probe_mpmc", case_cfg{1024, 1, 2, 2, true});
  add_family<dkq_impl<mode::mpsc>, dkq_impl<mode::mpsc, counting_wait<128>>,
             dkq_impl<mode::mpsc, counting_spin>,
             dkq_impl<mode::mpsc, counting_wait<1>> DKQ_RTE(mode::mpsc)
                 DKQ_CQ>(
      "probe_mpsc", case_cfg{1024, 1, 2, 1, true});
  add_family<dkq_impl<mode::mpmc>, dkq_impl<mode::mpmc, counting_wait<128>> DKQ_RTE(mode::mpmc)
                 DKQ_CQ1>("probe_mpmc_1p1c", case_cfg{1024, 1, 1, 1, true});
}

// Facts a reader needs to interpret the numbers, recorded in the JSON context.
void add_context() {
  std::string cpus;
  for (int c : allowed_cpus()) {
    if (!cpus.empty()) cpus += ',';
    cpus += std::to_string(c);
  }
  benchmark::AddCustomContext("dkq_allowed_cpus", cpus);
  benchmark::AddCustomContext("dkq_numa_nodes", std::to_string(numa_node_count()));
  benchmark::AddCustomContext(
      "dkq_numa_placement",
      numa_multi_node() ? "libnuma: ring memory on the first consumer's node"
                        : "single node: plain 128-byte aligned heap (placement code path unused)");
  benchmark::AddCustomContext(
      "dkq_pinning",
      "role r pinned to allowed CPU r mod N; producers are roles 0..P-1, consumers P..P+C-1");
  benchmark::AddCustomContext("dkq_element", "uint64_t (8 bytes)");
  std::string peers;
#if defined(DKQ_BENCH_HAVE_DPDK)
  peers += std::string(rte_version()) + "; ";
#endif
#if defined(DKQ_BENCH_HAVE_BOOST)
  peers += "Boost " + std::to_string(BOOST_VERSION / 100000) + "." +
           std::to_string(BOOST_VERSION / 100 % 1000) + "; ";
#endif
#if defined(DKQ_BENCH_HAVE_TBB)
  peers += std::string("oneTBB ") + TBB_VERSION_STRING + "; ";
#endif
#if defined(DKQ_BENCH_HAVE_RWQ)
  peers += "moodycamel ReaderWriterQueue; ";
#endif
#if defined(DKQ_BENCH_HAVE_CQ)
  peers += "moodycamel ConcurrentQueue; ";
#endif
#if defined(DKQ_BENCH_HAVE_ATOMIC_QUEUE)
  peers += "atomic_queue; ";
#endif
  benchmark::AddCustomContext("dkq_peers", peers);
#if defined(__clang__)
  benchmark::AddCustomContext("dkq_compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  benchmark::AddCustomContext("dkq_compiler", std::string("gcc ") + __VERSION__);
#endif
  // The CPU model and kernel, which Google Benchmark's context lacks.
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      benchmark::AddCustomContext("dkq_cpu_model", line.substr(line.find(':') + 2));
      break;
    }
  }
  utsname u{};
  if (uname(&u) == 0)
    benchmark::AddCustomContext("dkq_kernel", std::string(u.sysname) + " " + u.release);
  // A negative nice level (scripts/bench.sh BENCH_NICE) changes how much other
  // load disturbs the run; record it next to the load average.
  benchmark::AddCustomContext("dkq_nice", std::to_string(getpriority(PRIO_PROCESS, 0)));
  benchmark::AddCustomContext("dkq_hardware_concurrency",
                              std::to_string(std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace dkq_bench

int main(int argc, char** argv) {
  dkq_bench::register_all();
  if (const char* p = std::getenv("DKQ_BENCH_PROBES"); p != nullptr && p[0] == '1')
    dkq_bench::register_probes();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  dkq_bench::add_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
