// Submit + doorbell + reap cost per I/O, driver side only.
//
// One iteration is one round at queue depth qd: submit qd commands through
// dkq::queue_pair, let the device model (same thread, no cross-core traffic)
// fetch them and post qd completions, reap them. With batching the round
// writes one SQ tail doorbell and one CQ head doorbell (2/qd per I/O);
// without, every command and every completion writes its own (2 per I/O), the
// way a driver without post/ring separation behaves.
//
// Reported per benchmark:
//   time_per_io       seconds per I/O (Google Benchmark prints it in ns)
//   doorbells_per_io  SQ + CQ doorbell writes per I/O
// The device model's own work (reading SQEs, writing CQEs) is inside the
// loop; it is a few ns per I/O and is the same in every case.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dkq/coro.hpp"
#include "dkq/queue/queue_pair.hpp"
#include "support/fake_nvme_device.hpp"

namespace {

using dkq::nvme_cqe;
using dkq::test::fake_doorbell;
using dkq::test::fake_nvme_device;
using dkq::test::test_dma_buffer;
using qp_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, std::uint64_t>;

constexpr std::uint32_t queue_entries = 256;

struct rig {
  explicit rig(bool batched)
      : sq(64u * queue_entries), cq(16u * queue_entries, 0x20000000),
        dev(sq.region(), cq.region(), queue_entries) {
    if (!qp.init(sq.region(), cq.region(), queue_entries, dev.sq_doorbell(), dev.cq_doorbell(),
                 batched ? dkq::ring_policy::batched : dkq::ring_policy::immediate)
             .ok())
      std::abort();
    std::memset(cmd, 0, sizeof cmd);
    cmd[0] = 0x02;  // NVMe Read
  }

  // One round: qd submissions, device, qd completions.
  DKQ_ALWAYS_INLINE void round(std::uint32_t qd, bool batched) {
    for (std::uint32_t i = 0; i < qd; ++i) {
      if (DKQ_UNLIKELY(!qp.submit(cmd, ctx++).ok())) ++errors;
    }
    qp.flush();  // end of batch (a no-op under the immediate policy)
    dev.step();
    if (batched) {
      qp.process_completions(qd, [&](std::uint64_t& c, const nvme_cqe&) { sum += c; },
                             [&](dkq::status, const nvme_cqe&) { ++errors; });
    } else {
      for (std::uint32_t i = 0; i < qd; ++i)
        qp.process_completions(1, [&](std::uint64_t& c, const nvme_cqe&) { sum += c; },
                               [&](dkq::status, const nvme_cqe&) { ++errors; });
    }
  }

  std::uint64_t doorbells() const {
    return dev.sq_tail_reg.writes.load(std::memory_order_relaxed) + dev.cq_head_reg.writes.load(std::memory_order_relaxed);
  }

  test_dma_buffer sq, cq;
  fake_nvme_device dev;
  qp_t qp;
  std::uint8_t cmd[64];
  std::uint64_t ctx = 0, sum = 0, errors = 0;
};

void BM_queue_submit_reap(benchmark::State& state) {
  const auto qd = static_cast<std::uint32_t>(state.range(0));
  const bool batched = state.range(1) != 0;
  rig r(batched);
  for (int i = 0; i < 100; ++i) r.round(qd, batched);  // warm the lines
  const std::uint64_t db0 = r.doorbells();
  std::uint64_t rounds = 0;
  for (auto _ : state) {
    r.round(qd, batched);
    ++rounds;
  }
  benchmark::DoNotOptimize(r.sum);
  const double ios = static_cast<double>(rounds) * qd;
  state.counters["time_per_io"] =
      benchmark::Counter(static_cast<double>(qd), benchmark::Counter::kIsIterationInvariantRate |
                                                      benchmark::Counter::kInvert);
  state.counters["doorbells_per_io"] = static_cast<double>(r.doorbells() - db0) / ios;
  state.SetItemsProcessed(static_cast<std::int64_t>(ios));
  if (r.errors != 0 || r.qp.tags().in_flight() != 0) state.SkipWithError("lost or bad completions");
}
BENCHMARK(BM_queue_submit_reap)->ArgsProduct({{1, 8, 32, 128}, {0, 1}})->ArgNames({"qd", "batched"});

// ---- callback vs coroutine, the same work ------------------------------------------
//
// qd commands stay in flight: each completion is followed by the next
// submission from the same place - the callback form resubmits from its
// handler, the coroutine form is qd coroutines each looping
// `co_await queue_command` (frames from a frame_arena). One round: flush
// (one SQ doorbell), the device runs, reap (one CQ doorbell). Same QD, same
// batching, same device work; the difference is what the coroutine costs.

struct resubmit_rig {
  explicit resubmit_rig(std::uint32_t depth) : qd(depth) {
    if (!qp.init(sq.region(), cq.region(), queue_entries, dev.sq_doorbell(), dev.cq_doorbell()).ok()) std::abort();
    std::memset(cmd, 0, sizeof cmd);
    cmd[0] = 0x02;
  }
  using qp_cb_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, std::uint64_t>;
  test_dma_buffer sq{64u * queue_entries}, cq{16u * queue_entries, 0x20000000};
  fake_nvme_device dev{sq.region(), cq.region(), queue_entries};
  qp_cb_t qp;
  std::uint32_t qd;
  std::uint8_t cmd[64];
  std::uint64_t ctx = 0, sum = 0, errors = 0;

  void begin() {
    for (std::uint32_t i = 0; i < qd; ++i)
      if (!qp.submit(cmd, ctx++).ok()) ++errors;
  }
  DKQ_ALWAYS_INLINE void round() {
    qp.flush();
    dev.step();
    qp.process_completions(
        qd,
        [&](std::uint64_t& c, const nvme_cqe& e) {
          sum += c + e.dw0;
          if (DKQ_UNLIKELY(!qp.submit(cmd, ctx++).ok())) ++errors;
        },
        [&](dkq::status, const nvme_cqe&) { ++errors; });
  }
  void end() {  // let every command finish, submit no more
    const std::uint32_t keep = qd;
    qd = 0;
    for (int i = 0; i < 4 && qp.tags().in_flight() != 0; ++i) {
      qp.flush();
      dev.step();
      qp.process_completions(keep, [&](std::uint64_t&, const nvme_cqe&) {}, [&](dkq::status, const nvme_cqe&) {});
    }
    qd = keep;
  }
  std::uint64_t doorbells() const {
    return dev.sq_tail_reg.writes.load(std::memory_order_relaxed) + dev.cq_head_reg.writes.load(std::memory_order_relaxed);
  }
};

// The callback form as C driver libraries have it (SPDK's spdk_nvme_cmd_cb,
// libvfn's per-request callback): a function pointer and an argument stored
// with each command and called through the pointer at completion.
struct fn_ctx {
  void (*fn)(void* arg, const nvme_cqe& e);
  void* arg;
};
struct fnptr_rig {
  explicit fnptr_rig(std::uint32_t depth) : qd(depth) {
    if (!qp.init(sq.region(), cq.region(), queue_entries, dev.sq_doorbell(), dev.cq_doorbell()).ok()) std::abort();
    std::memset(cmd, 0, sizeof cmd);
    cmd[0] = 0x02;
  }
  using qp_fn_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, fn_ctx>;
  test_dma_buffer sq{64u * queue_entries}, cq{16u * queue_entries, 0x20000000};
  fake_nvme_device dev{sq.region(), cq.region(), queue_entries};
  qp_fn_t qp;
  std::uint32_t qd;
  std::uint8_t cmd[64];
  std::uint64_t sum = 0, errors = 0;
  bool stop = false;

  DKQ_NOINLINE static void on_done(void* arg, const nvme_cqe& e) {
    auto& r = *static_cast<fnptr_rig*>(arg);
    r.sum += e.dw0;
    if (!r.stop && DKQ_UNLIKELY(!r.qp.submit(r.cmd, fn_ctx{&on_done, arg}).ok())) ++r.errors;
  }
  void begin() {
    for (std::uint32_t i = 0; i < qd; ++i)
      if (!qp.submit(cmd, fn_ctx{&on_done, this}).ok()) ++errors;
  }
  DKQ_ALWAYS_INLINE void round() {
    qp.flush();
    dev.step();
    qp.process_completions(
        qd, [](fn_ctx& c, const nvme_cqe& e) { c.fn(c.arg, e); }, [&](dkq::status, const nvme_cqe&) { ++errors; });
  }
  void end() {
    stop = true;
    for (int i = 0; i < 4 && qp.tags().in_flight() != 0; ++i) round();
  }
  std::uint64_t doorbells() const {
    return dev.sq_tail_reg.writes.load(std::memory_order_relaxed) + dev.cq_head_reg.writes.load(std::memory_order_relaxed);
  }
};

namespace coro = dkq::coro;
using co_result = coro::queue_completion<nvme_cqe>;
using qp_co_t = dkq::queue_pair<dkq::nvme_queue_layout, fake_doorbell, fake_doorbell, coro::completion<co_result>*>;

struct coro_rig {
  explicit coro_rig(std::uint32_t depth) : qd(depth) {
    if (!qp.init(sq.region(), cq.region(), queue_entries, dev.sq_doorbell(), dev.cq_doorbell()).ok()) std::abort();
    if (!arena.init(qd, 256).ok()) std::abort();
    std::memset(cmd, 0, sizeof cmd);
    cmd[0] = 0x02;
  }
  coro::frame_arena& coro_frame_arena() noexcept { return arena; }
  test_dma_buffer sq{64u * queue_entries}, cq{16u * queue_entries, 0x20000000};
  fake_nvme_device dev{sq.region(), cq.region(), queue_entries};
  qp_co_t qp;
  coro::frame_arena arena;
  std::uint32_t qd;
  std::uint8_t cmd[64];
  std::uint64_t sum = 0, errors = 0;
  bool stop = false;
  std::vector<coro::task<dkq::status>> workers;

  static coro::task<dkq::status> worker(coro_rig& r) {
    while (!r.stop) {
      const co_result c = co_await coro::queue_command<qp_co_t>(r.qp, r.cmd);
      if (DKQ_UNLIKELY(!c.st.ok())) ++r.errors;
      r.sum += c.entry.dw0;
    }
    co_return dkq::ok_status;
  }
  void begin() {
    for (std::uint32_t i = 0; i < qd; ++i) {
      workers.push_back(worker(*this));
      if (!workers.back().valid()) std::abort();
      workers.back().start();
    }
  }
  DKQ_ALWAYS_INLINE void round() {
    qp.flush();
    dev.step();
    coro::resume_completions(qp, qd, &errors);
  }
  void end() {
    stop = true;
    for (int i = 0; i < 4 && qp.tags().in_flight() != 0; ++i) round();
    for (auto& w : workers)
      if (!w.done()) ++errors;
    workers.clear();
  }
  std::uint64_t doorbells() const {
    return dev.sq_tail_reg.writes.load(std::memory_order_relaxed) + dev.cq_head_reg.writes.load(std::memory_order_relaxed);
  }
};

template <class Rig>
void run_resubmit(benchmark::State& state) {
  const auto qd = static_cast<std::uint32_t>(state.range(0));
  Rig r(qd);
  r.begin();
  for (int i = 0; i < 100; ++i) r.round();
  const std::uint64_t db0 = r.doorbells();
  std::uint64_t rounds = 0;
  for (auto _ : state) {
    r.round();
    ++rounds;
  }
  const double ios = static_cast<double>(rounds) * qd;
  r.end();
  benchmark::DoNotOptimize(r.sum);
  state.counters["time_per_io"] =
      benchmark::Counter(static_cast<double>(qd), benchmark::Counter::kIsIterationInvariantRate |
                                                      benchmark::Counter::kInvert);
  state.counters["doorbells_per_io"] = static_cast<double>(r.doorbells() - db0) / ios;
  state.SetItemsProcessed(static_cast<std::int64_t>(ios));
  if (r.errors != 0) state.SkipWithError("lost or bad completions");
}
void BM_queue_resubmit_callback(benchmark::State& state) { run_resubmit<resubmit_rig>(state); }
void BM_queue_resubmit_coroutine(benchmark::State& state) { run_resubmit<coro_rig>(state); }
void BM_queue_resubmit_fnptr(benchmark::State& state) { run_resubmit<fnptr_rig>(state); }
BENCHMARK(BM_queue_resubmit_callback)->Arg(1)->Arg(32)->ArgName("qd");
BENCHMARK(BM_queue_resubmit_fnptr)->Arg(1)->Arg(32)->ArgName("qd");
BENCHMARK(BM_queue_resubmit_coroutine)->Arg(1)->Arg(32)->ArgName("qd");

// A fixed amount of work per case for instruction counting under callgrind:
//   valgrind --tool=callgrind --toggle-collect='*fixed_rounds*' queue_bench --fixed=2000 --only=qd:32/batched:1
// (scripts in docs/queue.md). The warm-up rounds are counted too; they are
// 10 of `rounds` and are subtracted by running two round counts.
DKQ_NOINLINE std::uint64_t fixed_rounds(rig& r, std::uint32_t qd, bool batched, std::uint32_t rounds) {
  for (std::uint32_t i = 0; i < rounds; ++i) r.round(qd, batched);
  return r.sum;
}

template <class Rig>
DKQ_NOINLINE std::uint64_t fixed_resubmit_rounds(Rig& r, std::uint32_t rounds) {
  for (std::uint32_t i = 0; i < rounds; ++i) r.round();
  return r.sum;
}

template <class Rig>
void run_fixed_resubmit(const char* kind, std::uint32_t rounds, const char* only) {
  for (std::uint32_t qd : {1u, 32u}) {
    const std::string name = std::string(kind) + ":qd:" + std::to_string(qd);
    if (only != nullptr && name != only) continue;
    Rig r(qd);
    r.begin();
    fixed_resubmit_rounds(r, 10);
    const std::uint64_t db0 = r.doorbells();
    fixed_resubmit_rounds(r, rounds);
    const std::uint64_t db = r.doorbells() - db0;
    r.end();
    std::printf("%s ios=%llu doorbells_per_io=%.4f errors=%llu\n", name.c_str(),
                static_cast<unsigned long long>(static_cast<std::uint64_t>(rounds) * qd),
                static_cast<double>(db) / (static_cast<double>(rounds) * qd),
                static_cast<unsigned long long>(r.errors));
  }
}

int run_fixed(std::uint32_t rounds, const char* only) {
  run_fixed_resubmit<resubmit_rig>("callback", rounds, only);
  run_fixed_resubmit<coro_rig>("coroutine", rounds, only);
  run_fixed_resubmit<fnptr_rig>("fnptr", rounds, only);
  for (std::uint32_t qd : {1u, 8u, 32u, 128u})
    for (bool batched : {false, true}) {
      const std::string name = "qd:" + std::to_string(qd) + "/batched:" + (batched ? "1" : "0");
      if (only != nullptr && name != only) continue;
      rig r(batched);
      fixed_rounds(r, qd, batched, 10);  // the same warm-up as the benchmark, outside the count
      const std::uint64_t db0 = r.doorbells();
      fixed_rounds(r, qd, batched, rounds);
      std::printf("%s ios=%llu doorbells_per_io=%.4f errors=%llu\n", name.c_str(),
                  static_cast<unsigned long long>(static_cast<std::uint64_t>(rounds) * qd),
                  static_cast<double>(r.doorbells() - db0) / (static_cast<double>(rounds) * qd),
                  static_cast<unsigned long long>(r.errors));
    }
  return 0;
}

}  // namespace

// queue_bench --fixed=ROUNDS [--only=qd:32/batched:1]: fixed work, no timing.
int main(int argc, char** argv) {
  std::uint32_t fixed = 0;
  const char* only = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--fixed=", 8) == 0) fixed = static_cast<std::uint32_t>(std::stoul(argv[i] + 8));
    if (std::strncmp(argv[i], "--only=", 7) == 0) only = argv[i] + 7;
  }
  if (fixed != 0) return run_fixed(fixed, only);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
